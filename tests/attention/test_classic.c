/* test_classic.c - additive (Bahdanau) and general (Luong) attention against
 * double-precision loops, with kv_len masking (including a batch with no
 * valid key), the weights output, odd sizes, head sizes past the attention
 * kernels' 256, and argument errors.
 *
 * Tolerance: scores are sums of A (additive) or Dq*Dk (general) float32
 * products of values in [-1, 1]; their rounding is below 1e-5 relative to
 * the score scale here, so probabilities and outputs (|v| <= 1) are held to
 * atol 1e-4 + rtol 1e-4. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* softmax over j < len of s, then out = P v; len 0 gives zeros. */
static void ref_softmax_pv(const double *s, int M, int len, const float *v, int Dv, double *p,
                           double *out)
{
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < len; j++)
        mx = s[j] > mx ? s[j] : mx;
    for (int j = 0; j < len; j++)
        sum += exp(s[j] - mx);
    for (int d = 0; d < Dv; d++)
        out[d] = 0;
    for (int j = 0; j < M; j++) {
        p[j] = j < len ? exp(s[j] - mx) / sum : 0.0;
        for (int d = 0; d < Dv; d++)
            out[d] += p[j] * v[(size_t)j * Dv + d];
    }
}

static void run(clattn_ctx *ctx, bool additive, int B, int N, int M, int Dq, int Dk, int Dv,
                int A, bool use_kv_len, bool weights)
{
    size_t nq = (size_t)B * N * Dq, nk = (size_t)B * M * Dk, nv = (size_t)B * M * Dv;
    size_t no = (size_t)B * N * Dv, nw = (size_t)B * N * M;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nv * 4);
    float *wq = malloc((size_t)A * Dq * 4), *wk = malloc((size_t)A * Dk * 4), *w = malloc((size_t)A * 4);
    float *W = malloc((size_t)Dq * Dk * 4), *out = malloc(no * 4), *pw = malloc(nw * 4);
    double *ref = malloc(no * 8), *refw = malloc(nw * 8), *s = malloc((size_t)M * 8);
    test_fill_uniform(q, nq, -1, 1);
    test_fill_uniform(k, nk, -1, 1);
    test_fill_uniform(v, nv, -1, 1);
    test_fill_uniform(wq, (size_t)A * Dq, -0.5f, 0.5f);
    test_fill_uniform(wk, (size_t)A * Dk, -0.5f, 0.5f);
    test_fill_uniform(w, (size_t)A, -1, 1);
    /* Scaled so general scores stay O(1): W entries ~ 1/sqrt(Dq*Dk). */
    float wscale = 2.0f / sqrtf((float)Dq * (float)Dk) * 3.0f;
    test_fill_uniform(W, (size_t)Dq * Dk, -wscale, wscale);
    int32_t kv_len[4];
    for (int b = 0; b < B; b++)
        kv_len[b] = !use_kv_len ? M : b == 1 ? 0 : 1 + (b * 7 + 3) % M;

    for (int b = 0; b < B; b++) {
        for (int i = 0; i < N; i++) {
            const float *qi = q + ((size_t)b * N + i) * Dq;
            for (int j = 0; j < M; j++) {
                const float *kj = k + ((size_t)b * M + j) * Dk;
                double sc = 0;
                if (additive) {
                    for (int a = 0; a < A; a++) {
                        double x = 0;
                        for (int d = 0; d < Dq; d++)
                            x += (double)wq[(size_t)a * Dq + d] * qi[d];
                        for (int d = 0; d < Dk; d++)
                            x += (double)wk[(size_t)a * Dk + d] * kj[d];
                        sc += w[a] * tanh(x);
                    }
                } else {
                    for (int d = 0; d < Dq; d++)
                        for (int e = 0; e < Dk; e++)
                            sc += (double)qi[d] * W[(size_t)d * Dk + e] * kj[e];
                }
                s[j] = sc;
            }
            size_t row = (size_t)b * N + i;
            ref_softmax_pv(s, M, kv_len[b], v + (size_t)b * M * Dv, Dv, refw + row * M,
                           ref + row * Dv);
        }
    }

    int64_t sq[3] = {B, N, Dq}, sk[3] = {B, M, Dk}, sv[3] = {B, M, Dv}, so[3] = {B, N, Dv};
    int64_t sw[3] = {B, N, M}, swq[2] = {A, Dq}, swk[2] = {A, Dk}, sa[1] = {A}, sW[2] = {Dq, Dk};
    clattn_tensor *tq = test_tensor(ctx, 3, sq, q), *tk = test_tensor(ctx, 3, sk, k);
    clattn_tensor *tv = test_tensor(ctx, 3, sv, v), *to = test_tensor(ctx, 3, so, NULL);
    clattn_tensor *tw = weights ? test_tensor(ctx, 3, sw, NULL) : NULL;
    clattn_tensor *twq = test_tensor(ctx, 2, swq, wq), *twk = test_tensor(ctx, 2, swk, wk);
    clattn_tensor *ta = test_tensor(ctx, 1, sa, w), *tW = test_tensor(ctx, 2, sW, W);
    clattn_classic_params p = clattn_classic_params_default();
    p.kv_len = use_kv_len ? kv_len : NULL;
    p.weights = tw;
    clattn_status st = additive ? clattn_additive_attention(ctx, tq, tk, tv, twq, twk, ta, to, &p)
                                : clattn_general_attention(ctx, tq, tk, tv, tW, to, &p);
    char what[160];
    snprintf(what, sizeof what, "%s B=%d N=%d M=%d Dq=%d Dk=%d Dv=%d A=%d%s%s",
             additive ? "additive" : "general", B, N, M, Dq, Dk, Dv, A,
             use_kv_len ? " kv_len" : "", weights ? " weights" : "");
    CHECK(st == CLATTN_OK, "%s: %s", what, clattn_last_error());
    if (st == CLATTN_OK) {
        CHECK_OK(clattn_tensor_read(to, out));
        test_close(what, out, ref, no, 1e-4, 1e-4);
        if (tw) {
            CHECK_OK(clattn_tensor_read(tw, pw));
            test_close(what, pw, refw, nw, 1e-4, 1e-4);
        }
    }
    clattn_tensor *all[] = {tq, tk, tv, to, tw, twq, twk, ta, tW};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
    free(q), free(k), free(v), free(wq), free(wk), free(w), free(W), free(out), free(pw);
    free(ref), free(refw), free(s);
}

int main(void)
{
    clattn_ctx *ctx = test_ctx();
    test_seed(99);
    run(ctx, true, 1, 1, 1, 1, 1, 1, 1, false, true);
    run(ctx, true, 3, 7, 17, 5, 9, 3, 11, true, true);
    run(ctx, true, 2, 33, 65, 16, 24, 40, 32, false, false);
    run(ctx, false, 1, 1, 1, 1, 1, 1, 1, false, true);
    run(ctx, false, 3, 9, 30, 7, 12, 5, 1, true, true);
    run(ctx, false, 2, 40, 113, 32, 64, 64, 1, true, false);
    run(ctx, false, 2, 5, 9, 3, 300, 260, 1, true, true); /* Dk, Dv > 256: GEMM path */

    int64_t s3[3] = {2, 3, 4}, s3b[3] = {2, 5, 4}, sbad[2] = {4, 5}, sa[1] = {6};
    clattn_tensor *q = test_tensor(ctx, 3, s3, NULL), *k = test_tensor(ctx, 3, s3b, NULL);
    clattn_tensor *o = test_tensor(ctx, 3, s3, NULL), *W = test_tensor(ctx, 2, sbad, NULL);
    clattn_tensor *a = test_tensor(ctx, 1, sa, NULL);
    CHECK_STATUS(clattn_general_attention(ctx, q, k, k, W, o, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "w [4, 5]") != NULL, "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_additive_attention(ctx, q, k, k, W, W, a, o, NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_general_attention(ctx, q, q, k, W, o, NULL), CLATTN_ERR_INVALID_ARG);
    int32_t bad_len[2] = {1, 9};
    clattn_classic_params p = clattn_classic_params_default();
    p.kv_len = bad_len;
    int64_t sWok[2] = {4, 4};
    clattn_tensor *Wok = test_tensor(ctx, 2, sWok, NULL);
    CHECK_STATUS(clattn_general_attention(ctx, q, k, k, Wok, o, &p), CLATTN_ERR_INVALID_ARG);
    clattn_tensor_destroy(q), clattn_tensor_destroy(k), clattn_tensor_destroy(o);
    clattn_tensor_destroy(W), clattn_tensor_destroy(a), clattn_tensor_destroy(Wok);
    clattn_ctx_destroy(ctx);
    return test_summary("test_classic");
}
