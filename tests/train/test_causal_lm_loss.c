/* test_causal_lm_loss.c - clattn_causal_lm_loss against PyTorch (the
 * fixture made by tests/fixtures/make_causal_lm_fixtures.py: logits,
 * labels with -100 positions, and transformers' loss and dlogits, in
 * float64) and against a double-precision C loop over a sweep of shapes
 * (B 1 and 3, T 2, 3 and 17, V 1, 10 and 1000, ignored labels, an
 * ignore_index that is a class); then NaN and Inf logits, and every
 * argument error (bad labels by index and value, nothing to predict,
 * shapes), with *loss and dlogits untouched on failure.
 *
 * Tolerances: the loss runs clattn_cross_entropy_loss's kernel and sums,
 * so test_loss.c's reasoning holds: a row is off by about
 * u (|m - x_t| + 3 log l + C/wg + 15), the mean adds 20 u relative: atol
 * 3e-6 + rtol 2e-6 for logits in [-4, 4]. The fixture's logits reach
 * |m - x_t| ~ 60 (scale 8): 60 u = 3.6e-6 per row, inside rtol 2e-6 of
 * losses that are themselves about mean |m - x_t|. The fixture's own
 * rounding of the float64 values to float32 adds u / 2 relative: rtol
 * 2.1e-6 against it. dlogits = (p - onehot) / valid with p off by
 * ~(C/wg + 20) u relative: rtol 2e-6 (2.1e-6 against the fixture), atol
 * 2e-6 / valid (the target entry p - 1 cancels). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define IGNORE (-100)

static double worst_loss = 0, worst_grad = 0;

/* test_close, keeping the largest share of the tolerance used. */
static void close_tracked(const char *what, const float *got, const double *ref, size_t n,
                          double atol, double rtol, double *worst)
{
    for (size_t i = 0; i < n; i++) {
        double used = fabs((double)got[i] - ref[i]) / (atol + rtol * fabs(ref[i]));
        if (used > *worst)
            *worst = used;
    }
    test_close(what, got, ref, n, atol, rtol);
}

/* The double reference of the header's definition; returns the valid count. */
static size_t reference(const float *logits, const int64_t *labels, size_t b, size_t t,
                        size_t v, int64_t ignore, double *loss, double *dlogits)
{
    size_t valid = 0;
    for (size_t r = 0; r < b * t; r++)
        if ((r + 1) % t != 0 && labels[r + 1] != ignore)
            valid++;
    double sum = 0;
    for (size_t r = 0; r < b * t; r++) {
        const float *x = logits + r * v;
        bool used = (r + 1) % t != 0 && labels[r + 1] != ignore;
        double m = -INFINITY, l = 0;
        for (size_t c = 0; c < v; c++)
            m = x[c] > m ? x[c] : m;
        for (size_t c = 0; c < v; c++)
            l += exp(x[c] - m);
        for (size_t c = 0; c < v; c++)
            dlogits[r * v + c] =
                used ? (exp(x[c] - m) / l - ((int64_t)c == labels[r + 1] ? 1.0 : 0.0)) / (double)valid
                     : 0.0;
        if (used)
            sum += m + log(l) - x[labels[r + 1]];
    }
    *loss = valid ? sum / (double)valid : NAN;
    return valid;
}

/* One call against the given reference (loss, dlogits [numel]). */
static void compare(clattn_ctx *ctx, const char *what, const float *logits, const int64_t *labels,
                    int32_t ndim, const int64_t *shape, size_t valid, double ref_loss,
                    const double *ref_d, double rtol)
{
    size_t numel = 1;
    for (int32_t i = 0; i < ndim; i++)
        numel *= (size_t)shape[i];
    clattn_tensor *L = test_tensor(ctx, ndim, shape, logits), *D = test_tensor(ctx, ndim, shape, NULL);
    CHECK_OK(clattn_tensor_fill(D, NAN)); /* every element must be written */
    float loss = NAN, *got = test_fvec(numel);
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss, D));
    CHECK_OK(clattn_tensor_read(D, got));
    char w[200];
    snprintf(w, sizeof w, "%s: loss", what);
    close_tracked(w, &loss, &ref_loss, 1, 3e-6, rtol, &worst_loss);
    snprintf(w, sizeof w, "%s: dlogits", what);
    close_tracked(w, got, ref_d, numel, 2e-6 / (double)valid, rtol, &worst_grad);
    /* loss alone, dlogits alone, and dlogits over logits: the same bits. */
    float loss2 = NAN, *got2 = test_fvec(numel);
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss2, NULL));
    CHECK(memcmp(&loss, &loss2, sizeof loss) == 0, "%s: loss alone %g vs %g", what,
          (double)loss2, (double)loss);
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, IGNORE, NULL, L));
    CHECK_OK(clattn_tensor_read(L, got2));
    CHECK(memcmp(got, got2, numel * sizeof *got) == 0, "%s: dlogits in place differs", what);
    clattn_tensor_destroy(L);
    clattn_tensor_destroy(D);
    free(got);
    free(got2);
}

/* ======================================================================== */
/* Against PyTorch                                                           */
/* ======================================================================== */

static void fixture_cases(clattn_ctx *ctx, const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/causal_lm.safetensors", dir);
    clattn_weights *w = NULL;
    CHECK_OK(clattn_weights_open(path, &w));
    if (!w)
        return;
    int cases = 0;
    for (int i = 0;; i++) {
        char name[64];
        clattn_weight_info info;
        snprintf(name, sizeof name, "logits.%d", i);
        if (clattn_weights_find(w, name, &info) != CLATTN_OK)
            break;
        int64_t shape[3] = {info.shape[0], info.shape[1], info.shape[2]};
        size_t bt = (size_t)(shape[0] * shape[1]), numel = bt * (size_t)shape[2];
        float *logits = test_fvec(numel), *lab = test_fvec(bt), *d = test_fvec(numel), loss;
        CHECK_OK(clattn_weights_read_f32(w, name, logits, numel));
        snprintf(name, sizeof name, "labels.%d", i);
        CHECK_OK(clattn_weights_read_f32(w, name, lab, bt));
        snprintf(name, sizeof name, "loss.%d", i);
        CHECK_OK(clattn_weights_read_f32(w, name, &loss, 1));
        snprintf(name, sizeof name, "dlogits.%d", i);
        CHECK_OK(clattn_weights_read_f32(w, name, d, numel));
        int64_t *labels = malloc(bt * sizeof *labels);
        size_t valid = 0;
        for (size_t r = 0; r < bt; r++) {
            labels[r] = (int64_t)lab[r];
            if (r % (size_t)shape[1] != 0 && labels[r] != IGNORE)
                valid++;
        }
        double *dd = test_dvec(numel);
        for (size_t j = 0; j < numel; j++)
            dd[j] = d[j];
        char what[128];
        snprintf(what, sizeof what, "torch case %d [%lld, %lld, %lld]", i, (long long)shape[0],
                 (long long)shape[1], (long long)shape[2]);
        compare(ctx, what, logits, labels, 3, shape, valid, (double)loss, dd, 2.1e-6);
        free(logits), free(lab), free(d), free(labels), free(dd);
        cases++;
    }
    CHECK(cases == 5, "the fixture has %d cases, expected 5", cases);
    clattn_weights_close(w);
}

/* ======================================================================== */
/* Against a double loop                                                     */
/* ======================================================================== */

static void sweep(clattn_ctx *ctx)
{
    static const size_t bs[] = {1, 3}, ts[] = {2, 3, 17}, vs[] = {1, 10, 1000};
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 3; j++)
            for (size_t k = 0; k < 3; k++) {
                size_t b = bs[i], t = ts[j], v = vs[k], n = b * t * v;
                float *x = test_fvec(n);
                test_fill_uniform(x, n, -4, 4);
                int64_t *labels = malloc(b * t * sizeof *labels);
                for (size_t r = 0; r < b * t; r++)
                    labels[r] = r % 4 == 2 ? IGNORE : (int64_t)((r * 7 + 3) % v);
                labels[1] = (int64_t)v - 1; /* at least one valid target */
                labels[0] = 12345;          /* never a target: not read */
                double loss, *d = test_dvec(n);
                size_t valid = reference(x, labels, b, t, v, IGNORE, &loss, d);
                int64_t shape[3] = {(int64_t)b, (int64_t)t, (int64_t)v};
                char what[128];
                snprintf(what, sizeof what, "sweep [%zu, %zu, %zu]", b, t, v);
                if (b == 1) /* [T, V] is B = 1 */
                    compare(ctx, what, x, labels, 2, shape + 1, valid, loss, d, 2e-6);
                else
                    compare(ctx, what, x, labels, 3, shape, valid, loss, d, 2e-6);
                free(x), free(labels), free(d);
            }
}

/* ignore_index that is a valid class: its targets are ignored, and so is
 * the shifted-out last position (which gets ignore_index). */
static void ignore_class(clattn_ctx *ctx)
{
    int64_t shape[3] = {2, 4, 6};
    float x[48];
    test_fill_uniform(x, 48, -4, 4);
    int64_t labels[8] = {0, 2, 3, 2, 5, 1, 2, 0};
    double ref, d[48];
    size_t valid = reference(x, labels, 2, 4, 6, 2, &ref, d);
    clattn_tensor *L = test_tensor(ctx, 3, shape, x), *D = test_tensor(ctx, 3, shape, NULL);
    float loss, got[48];
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, 2, &loss, D));
    CHECK_OK(clattn_tensor_read(D, got));
    CHECK(valid == 3, "ignore_index 2: %zu valid targets, expected 3", valid);
    close_tracked("ignore_index = class 2: loss", &loss, &ref, 1, 3e-6, 2e-6, &worst_loss);
    close_tracked("ignore_index = class 2: dlogits", got, d, 48, 2e-6 / 3, 2e-6, &worst_grad);
    clattn_tensor_destroy(L);
    clattn_tensor_destroy(D);
}

/* NaN or Inf logits: in a row that predicts a label the loss is NaN; in the
 * last position (which predicts nothing) or an ignored one, they change
 * nothing and that row's dlogits are 0. */
static void non_finite(clattn_ctx *ctx)
{
    enum { T = 4, V = 5 };
    int64_t shape[2] = {T, V};
    float x[T * V], got[T * V];
    test_fill_uniform(x, T * V, -2, 2);
    int64_t labels[T] = {0, 1, IGNORE, 3}; /* row 1 predicts nothing (label 2 ignored) */
    double ref, d[T * V];
    reference(x, labels, 1, T, V, IGNORE, &ref, d);
    x[1 * V + 2] = NAN;      /* ignored row */
    x[3 * V + 0] = INFINITY; /* the last row */
    clattn_tensor *L = test_tensor(ctx, 2, shape, x), *D = test_tensor(ctx, 2, shape, NULL);
    float loss;
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss, D));
    CHECK_OK(clattn_tensor_read(D, got));
    close_tracked("NaN / Inf in rows that predict nothing: loss", &loss, &ref, 1, 3e-6, 2e-6,
                  &worst_loss);
    close_tracked("NaN / Inf in rows that predict nothing: dlogits", got, d, T * V, 1e-6, 2e-6,
                  &worst_grad);
    x[0 * V + 4] = NAN; /* row 0 predicts label 1 */
    CHECK_OK(clattn_tensor_write(L, x));
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss, NULL));
    CHECK(isnan(loss), "NaN logit in a predicting row: loss %g, expected NaN", (double)loss);
    x[0 * V + 4] = INFINITY;
    CHECK_OK(clattn_tensor_write(L, x));
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss, NULL));
    CHECK(isnan(loss), "+inf logit in a predicting row: loss %g, expected NaN", (double)loss);
    clattn_tensor_destroy(L);
    clattn_tensor_destroy(D);
}

static void errors(clattn_ctx *ctx)
{
    const clattn_status E = CLATTN_ERR_INVALID_ARG;
    int64_t shape[3] = {2, 3, 4}, s1[1] = {4}, s_one[3] = {2, 1, 4}, s_other[3] = {2, 4, 3};
    int64_t s4[4] = {1, 2, 3, 4};
    clattn_tensor *L = test_tensor(ctx, 3, shape, NULL), *D = test_tensor(ctx, 3, shape, NULL);
    clattn_tensor *V1 = test_tensor(ctx, 1, s1, NULL), *L1 = test_tensor(ctx, 3, s_one, NULL);
    clattn_tensor *O = test_tensor(ctx, 3, s_other, NULL), *L4 = test_tensor(ctx, 4, s4, NULL);
    clattn_tensor *all[] = {L, D, V1, L1, O, L4};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        CHECK_OK(clattn_tensor_fill(all[i], 0.5f));
    CHECK_OK(clattn_tensor_fill(D, 7.0f));
    int64_t labels[6] = {9, 1, 2, 9, 3, 0}; /* labels[0] and labels[3] (t = 0) are not read */
    int64_t all_ignored[6] = {1, IGNORE, IGNORE, 2, IGNORE, IGNORE};
    float loss = 42.0f;
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss, NULL));
    CHECK(fabsf(loss - logf(4.0f)) <= 4e-7f, "uniform logits: loss %g, expected log 4",
          (double)loss);
    loss = 42.0f;
    CHECK_STATUS(clattn_causal_lm_loss(NULL, L, labels, IGNORE, &loss, D), E);
    CHECK_STATUS(clattn_causal_lm_loss(ctx, NULL, labels, IGNORE, &loss, D), E);
    CHECK_MSG("logits is NULL");
    CHECK_STATUS(clattn_causal_lm_loss(ctx, L, NULL, IGNORE, &loss, D), E);
    CHECK_MSG("labels is NULL");
    CHECK_STATUS(clattn_causal_lm_loss(ctx, V1, labels, IGNORE, &loss, NULL), E);
    CHECK_MSG("logits [4] must be [B, T, V] or [T, V]");
    CHECK_STATUS(clattn_causal_lm_loss(ctx, L4, labels, IGNORE, &loss, NULL), E);
    CHECK_STATUS(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss, O), E);
    CHECK_MSG("dlogits [2, 4, 3] must have the shape of logits [2, 3, 4]");
    labels[4] = 4;
    CHECK_STATUS(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss, D), E);
    CHECK_MSG("labels[4] = 4 is outside 0 .. 3");
    labels[4] = -1;
    CHECK_STATUS(clattn_causal_lm_loss(ctx, L, labels, IGNORE, &loss, D), E);
    CHECK_MSG("labels[4] = -1");
    labels[4] = 3;
    CHECK_STATUS(clattn_causal_lm_loss(ctx, L, all_ignored, IGNORE, &loss, D), E);
    CHECK_MSG("no label to predict");
    CHECK_STATUS(clattn_causal_lm_loss(ctx, L1, labels, IGNORE, &loss, NULL), E); /* T = 1 */
    CHECK_MSG("T = 1");
    CHECK(loss == 42.0f, "loss written on failure: %g", (double)loss);
    float got[24];
    CHECK_OK(clattn_tensor_read(D, got));
    bool untouched = true;
    for (int i = 0; i < 24; i++)
        untouched = untouched && got[i] == 7.0f;
    CHECK(untouched, "causal_lm_loss wrote to dlogits on failure");
    CHECK_OK(clattn_causal_lm_loss(ctx, L, labels, IGNORE, NULL, NULL)); /* checks only */
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_causal_lm_loss FIXTURE_DIR\n");
        return 1;
    }
    clattn_ctx *ctx = test_ctx();
    test_seed(15);
    fixture_cases(ctx, argv[1]);
    sweep(ctx);
    ignore_class(ctx);
    non_finite(ctx);
    errors(ctx);
    fprintf(stderr, "causal_lm_loss: worst share of the tolerance used: loss %.2f, dlogits %.2f\n",
            worst_loss, worst_grad);
    CHECK_OK(clattn_ctx_finish(ctx));
    clattn_ctx_destroy(ctx);
    return test_summary("test_causal_lm_loss");
}
