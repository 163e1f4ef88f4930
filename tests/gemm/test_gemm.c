/* test_gemm.c - every GEMM variant (plain, each transpose, strided batch,
 * broadcast batch, alpha/beta) against a double-precision reference on odd
 * shapes, through both the internal gemm.c entry points and clattn_matmul,
 * for both GEMM backends (clattn's CPU kernel and CLBlast).
 *
 * Tolerance: the standard forward error bound of a float32 dot product of
 * length k is k * u * sum|a_i b_i| with u = 2^-24; we allow twice that plus
 * the rounding of alpha/beta terms, per element. */
#define _GNU_SOURCE /* setenv */
#include "gemm/gemm.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const size_t sizes[] = {1, 3, 17, 113, 257};
#define NS (sizeof sizes / sizeof *sizes)

/* Reference C = alpha op(A) op(B) + beta C0, plus the error bound. */
static void reference(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha,
                      const float *a, const float *b, float beta, const float *c0, double *ref,
                      double *bound)
{
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (size_t p = 0; p < k; p++) {
                double av = ta ? a[p * m + i] : a[i * k + p];
                double bv = tb ? b[j * k + p] : b[p * n + j];
                s += av * bv;
                mag += fabs(av * bv);
            }
            ref[i * n + j] = alpha * s + beta * c0[i * n + j];
            bound[i * n + j] = 2.0 * (double)(k + 2) * 5.96e-8 *
                               (fabs(alpha) * mag + fabs(beta * c0[i * n + j]));
        }
    }
}

static int check_bound(const char *what, const float *got, const double *ref,
                       const double *bound, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || fabs(got[i] - ref[i]) > bound[i] + 1e-30) {
            fprintf(stderr, "FAIL %s: element %zu: got %.9g, reference %.9g, bound %.3g\n",
                    what, i, (double)got[i], ref[i], bound[i]);
            return 0;
        }
    }
    return 1;
}

static void one_case(clattn_ctx *ctx, bool ta, bool tb, size_t m, size_t n, size_t k,
                     size_t batch, bool broadcast_b, float alpha, float beta)
{
    size_t na = m * k, nb = k * n, nc = m * n;
    size_t nb_total = broadcast_b ? nb : nb * batch;
    float *a = malloc(na * batch * sizeof *a), *b = malloc(nb_total * sizeof *b);
    float *c = malloc(nc * batch * sizeof *c), *got = malloc(nc * batch * sizeof *got);
    double *ref = malloc(nc * batch * sizeof *ref), *bound = malloc(nc * batch * sizeof *bound);
    test_fill_uniform(a, na * batch, -1, 1);
    test_fill_uniform(b, nb_total, -1, 1);
    test_fill_uniform(c, nc * batch, -1, 1);
    for (size_t i = 0; i < batch; i++)
        reference(ta, tb, m, n, k, alpha, a + i * na, b + (broadcast_b ? 0 : i * nb), beta,
                  c + i * nc, ref + i * nc, bound + i * nc);

    int64_t sa[3] = {(int64_t)batch, ta ? (int64_t)k : (int64_t)m, ta ? (int64_t)m : (int64_t)k};
    int64_t sb[3] = {broadcast_b ? 1 : (int64_t)batch, tb ? (int64_t)n : (int64_t)k,
                     tb ? (int64_t)k : (int64_t)n};
    int64_t sc[3] = {(int64_t)batch, (int64_t)m, (int64_t)n};
    bool three_d = batch > 1 || broadcast_b;
    int32_t nd = three_d ? 3 : 2;
    clattn_tensor *A = test_tensor(ctx, nd, three_d ? sa : sa + 1, a);
    clattn_tensor *B = test_tensor(ctx, nd, three_d ? sb : sb + 1, b);
    clattn_tensor *C = test_tensor(ctx, nd, three_d ? sc : sc + 1, c);
    CHECK_OK(clattn_matmul(ctx, A, ta, B, tb, alpha, beta, C));
    CHECK_OK(clattn_tensor_read(C, got));
    char what[128];
    snprintf(what, sizeof what, "matmul%s%s m=%zu n=%zu k=%zu batch=%zu%s", ta ? " Aᵀ" : "",
             tb ? " Bᵀ" : "", m, n, k, batch, broadcast_b ? " (B broadcast)" : "");
    test_checks++;
    if (!check_bound(what, got, ref, bound, nc * batch))
        test_failures++;

    /* The internal entry point with offsets and a larger leading dimension:
     * the first product written into the middle of a wider C. */
    if (batch == 1 && !broadcast_b) {
        size_t ldc = n + 3, off = 2;
        float *wide = calloc(m * ldc + off, sizeof *wide);
        int64_t sw[1] = {(int64_t)(m * ldc + off)};
        clattn_tensor *W = test_tensor(ctx, 1, sw, wide);
        CHECK_OK(clattn__gemm(ctx, ta, tb, m, n, k, alpha, A->mem, 0, ta ? m : k, B->mem, 0,
                              tb ? k : n, 0.0f, W->mem, off, ldc));
        CHECK_OK(clattn_tensor_read(W, wide));
        double *ref0 = malloc(nc * sizeof *ref0), *bound0 = malloc(nc * sizeof *bound0);
        float *zero = calloc(nc, sizeof *zero), *packed = malloc(nc * sizeof *packed);
        reference(ta, tb, m, n, k, alpha, a, b, 0.0f, zero, ref0, bound0);
        for (size_t i = 0; i < m; i++)
            memcpy(packed + i * n, wide + off + i * ldc, n * sizeof *packed);
        snprintf(what, sizeof what, "gemm ldc=%zu off=%zu m=%zu n=%zu k=%zu", ldc, off, m, n, k);
        test_checks++;
        if (!check_bound(what, packed, ref0, bound0, nc))
            test_failures++;
        CHECK(wide[0] == 0 && wide[1] == 0, "gemm wrote before its offset");
        free(ref0);
        free(bound0);
        free(zero);
        free(packed);
        free(wide);
        clattn_tensor_destroy(W);
    }
    clattn_tensor_destroy(A);
    clattn_tensor_destroy(B);
    clattn_tensor_destroy(C);
    free(a);
    free(b);
    free(c);
    free(got);
    free(ref);
    free(bound);
}

/* All cases on one context, whose GEMM backend the caller chose. */
static void all_cases(clattn_ctx *ctx)
{
    /* Every transpose combination on a covering set of odd shapes: each
     * size appears in every role (m, n, k) for every variant. */
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        for (size_t i = 0; i < NS; i++)
            for (size_t j = 0; j < NS; j++)
                one_case(ctx, ta, tb, sizes[i], sizes[j], sizes[(i + j + (size_t)t) % NS], 1,
                         false, 1.0f, 0.0f);
    }
    /* Long k, which the CPU GEMM runs as k blocks of 512 adding to C:
     * every transpose combination, a remainder block (1100 = 512 + 588;
     * 2049 = 3 x 512 + 513), beta != 0 (only the first block scales C),
     * a strided batch and a broadcast B. */
    for (int t = 0; t < 4; t++)
        one_case(ctx, t & 1, t & 2, 17, 33, 1100, 1, false, 0.5f, -1.5f);
    one_case(ctx, true, false, 67, 257, 2049, 1, false, 1.0f, 0.0f);
    one_case(ctx, true, false, 13, 19, 1536, 3, false, 1.0f, 1.0f);
    one_case(ctx, false, true, 13, 19, 1300, 2, true, -1.0f, 0.5f);
    /* alpha/beta, strided batch, and a broadcast operand. */
    one_case(ctx, false, false, 17, 113, 3, 1, false, -0.5f, 2.0f);
    one_case(ctx, false, true, 113, 17, 257, 1, false, 0.25f, -1.0f);
    one_case(ctx, false, false, 17, 3, 113, 5, false, 1.0f, 0.0f);
    one_case(ctx, true, true, 3, 17, 1, 4, false, 1.5f, 0.5f);
    one_case(ctx, false, true, 113, 64, 17, 3, true, 1.0f, 1.0f);
    /* clattn's CPU GEMM packs a transposed A when n >= 256 and k >= 512:
     * alone, batched, and with a broadcast B. */
    one_case(ctx, true, false, 37, 300, 600, 1, false, 1.0f, 0.0f);
    one_case(ctx, true, true, 13, 257, 513, 3, false, 0.5f, 1.0f);
    one_case(ctx, true, false, 7, 259, 520, 2, true, 1.0f, 0.0f);
    /* Over 1 MiB of A with a small B: the CPU GEMM's work-groups walk
     * super-blocks of rows (gemm_group_order), the last one short. */
    one_case(ctx, false, true, 1100, 100, 300, 1, false, 1.0f, 0.0f);
    one_case(ctx, true, false, 760, 40, 400, 2, true, 1.0f, 0.5f);
}

int main(void)
{
    test_seed(7);
    /* Both GEMM backends on this device: clattn's CPU kernel (cl/gemm/gemm.cl)
     * and CLBlast. */
    static const char *const backends[] = {"cpu", "clblast"};
    clattn_ctx *ctx = NULL;
    for (int i = 0; i < 2; i++) {
        setenv("CLATTN_GEMM_KERNEL", backends[i], 1);
        ctx = test_ctx();
        fprintf(stderr, "GEMM backend: %s\n", backends[i]);
        all_cases(ctx);
        if (i == 0)
            clattn_ctx_destroy(ctx);
    }
    unsetenv("CLATTN_GEMM_KERNEL");

    /* Shape errors name the shapes. */
    int64_t s1[2] = {3, 4}, s2[2] = {5, 6}, s3[2] = {3, 6};
    clattn_tensor *A = test_tensor(ctx, 2, s1, NULL), *B = test_tensor(ctx, 2, s2, NULL);
    clattn_tensor *C = test_tensor(ctx, 2, s3, NULL);
    CHECK_STATUS(clattn_matmul(ctx, A, false, B, false, 1, 0, C), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "[3, 4]") && strstr(clattn_last_error(), "[5, 6]"),
          "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_matmul(ctx, A, false, A, true, 1, 0, A), CLATTN_ERR_INVALID_ARG);
    clattn_tensor_destroy(A);
    clattn_tensor_destroy(B);
    clattn_tensor_destroy(C);
    clattn_ctx_destroy(ctx);
    return test_summary("test_gemm");
}
