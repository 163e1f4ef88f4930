/* test_embedding_backward.c - clattn_embedding_backward beyond the op
 * table's plain sweep (test_layer_ops): accumulation, bit-identity with
 * a float loop summing in ascending position order (the documented
 * order), finite differences, and bad ids (named by position and value,
 * dtable unchanged) and arguments. Tolerances: layer_check.h. */
#include "layer_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void embedding_case(clattn_ctx *ctx, int64_t v, int64_t e, size_t count, bool acc,
                           bool fd)
{
    size_t ne = (size_t)e, nt = (size_t)v * ne, nd = count * ne;
    int64_t *ids = malloc(count * sizeof *ids);
    float *dy = test_fvec(nd), *t0 = test_fvec(nt), *got = test_fvec(nt), *fsum = test_fvec(nt);
    double *ref = test_dvec(nt), *bound = test_dvec(nt);
    for (size_t i = 0; i < count; i++) /* skewed, with repeats and unused rows */
        ids[i] = (int64_t)((i * i * 7 + 3) % (size_t)((v + 1) / 2 + 1)) % v;
    ids[0] = v - 1;
    test_fill_uniform(dy, nd, -1, 1);
    test_fill_uniform(t0, nt, -1, 1);
    for (size_t j = 0; j < nt; j++) {
        ref[j] = acc ? t0[j] : 0;
        bound[j] = fabs(ref[j]);
        fsum[j] = 0.0f;
    }
    size_t *uses = calloc((size_t)v, sizeof *uses);
    for (size_t i = 0; i < count; i++) {
        uses[ids[i]]++;
        for (size_t c = 0; c < ne; c++) {
            size_t j = (size_t)ids[i] * ne + c;
            ref[j] += dy[i * ne + c];
            bound[j] += fabs(dy[i * ne + c]);
            fsum[j] += dy[i * ne + c]; /* the documented order: ascending i */
        }
    }
    for (size_t j = 0; j < nt; j++) {
        size_t k = uses[j / ne] + 1;
        bound[j] = (double)k * U * bound[j] + 1e-38;
        if (acc)
            fsum[j] = uses[j / ne] ? t0[j] + fsum[j] : t0[j];
    }
    int64_t ts[2] = {v, e}, ds[2] = {(int64_t)count, e};
    clattn_tensor *DY = test_tensor(ctx, 2, ds, dy);
    clattn_tensor *DT = test_tensor(ctx, 2, ts, acc ? t0 : NULL);
    if (!acc)
        CHECK_OK(clattn_tensor_fill(DT, NAN));
    CHECK_OK(clattn_embedding_backward(ctx, ids, count, DY, DT, acc));
    read_into(DT, got);
    char what[160];
    snprintf(what, sizeof what, "embedding_backward V=%lld E=%lld count=%zu%s", (long long)v,
             (long long)e, count, acc ? " accumulate" : "");
    close_bound(W_EMB, what, got, ref, bound, nt);
    char w2[200];
    snprintf(w2, sizeof w2, "%s: bits of the ordered float sum", what);
    same_bits(w2, got, fsum, nt);
    if (fd && !acc) {
        /* L = sum dy * table[ids]: linear in the table. */
        double *td = test_dvec(nt), *g = test_dvec(nt);
        to_double(t0, td, nt);
        for (size_t j = 0; j < nt; j++) {
            double s = 0;
            for (int sign = -1; sign <= 1; sign += 2) {
                double l = 0, keep = td[j];
                td[j] = keep + sign * FD_H;
                for (size_t i = 0; i < count; i++)
                    for (size_t c = 0; c < ne; c++)
                        l += (double)dy[i * ne + c] * td[(size_t)ids[i] * ne + c];
                td[j] = keep;
                s += sign * l;
            }
            g[j] = s / (2 * FD_H);
        }
        snprintf(w2, sizeof w2, "%s vs finite differences", what);
        check_fd(w2, got, g, bound, nt, 1.0);
        free(td);
        free(g);
    }
    clattn_tensor_destroy(DY);
    clattn_tensor_destroy(DT);
    free(ids);
    free(dy);
    free(t0);
    free(got);
    free(fsum);
    free(ref);
    free(bound);
    free(uses);
}

static void test_embedding(clattn_ctx *ctx)
{
    embedding_case(ctx, 1, 5, 1, false, true);
    embedding_case(ctx, 7, 1, 17, false, true);
    embedding_case(ctx, 7, 5, 17, true, false);
    embedding_case(ctx, 7, 5, 17, false, true);
    embedding_case(ctx, 113, 130, small ? 60 : 300, false, false);
    embedding_case(ctx, 113, 64, small ? 60 : 300, true, false);
    if (!small)
        embedding_case(ctx, 1000, 64, 5000, false, false);

    /* Bad ids: the error names position and value; dtable unchanged. */
    int64_t ts[2] = {7, 5}, ds[2] = {3, 5};
    clattn_tensor *DT = test_tensor(ctx, 2, ts, NULL), *DY = test_tensor(ctx, 2, ds, NULL);
    CHECK_OK(clattn_tensor_fill(DT, 7.0f));
    CHECK_OK(clattn_tensor_fill(DY, 1.0f));
    int64_t bad[3] = {0, 7, 1};
    CHECK_STATUS(clattn_embedding_backward(ctx, bad, 3, DY, DT, false), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("ids[1] = 7");
    bad[1] = -1;
    CHECK_STATUS(clattn_embedding_backward(ctx, bad, 3, DY, DT, true), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("ids[1] = -1");
    float got[35];
    read_into(DT, got);
    bool untouched = true;
    for (size_t i = 0; i < 35; i++)
        untouched = untouched && got[i] == 7.0f;
    CHECK(untouched, "embedding_backward with a bad id wrote to dtable");
    int64_t ok[3] = {0, 1, 2};
    CHECK_STATUS(clattn_embedding_backward(ctx, ok, 2, DY, DT, false), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[3, 5]");
    CHECK_STATUS(clattn_embedding_backward(ctx, NULL, 3, DY, DT, false), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_embedding_backward(ctx, ok, 0, DY, DT, false), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_embedding_backward(ctx, ok, 3, DY, DY, false), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("must not alias"); /* [3, 5] fits as a table: only the aliasing is wrong */
    CHECK_OK(clattn_embedding_backward(ctx, ok, 3, DY, NULL, false));
    int64_t s15 = 15;
    clattn_tensor *T1 = test_tensor(ctx, 1, &s15, NULL);
    CHECK_STATUS(clattn_embedding_backward(ctx, ok, 3, DY, T1, false), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[V, E]");
    clattn_tensor_destroy(T1);
    clattn_tensor_destroy(DT);
    clattn_tensor_destroy(DY);
}

int main(void)
{
    clattn_ctx *ctx = layer_test_init();
    test_embedding(ctx);
    return layer_test_finish(ctx, "test_embedding_backward");
}
