/* test_optim.c - training losses, optimisers and checkpoints.
 *
 * - Losses against double-precision C loops: rows 1, 3, 17, 1000 times
 *   classes/features 1, 2, 10, 1000, values and gradients, ignore_index
 *   (PyTorch's -100, a valid class index, every row ignored), bad targets.
 * - Optimisers against PyTorch: the fixtures of tests/fixtures/
 *   make_optim_fixtures.py (SGD plain / momentum / nesterov / weight decay
 *   / dampening, Adam, AdamW, with clipping and the warm-up + cosine
 *   schedule in some cases), every parameter compared after each of 10
 *   steps, with lr(), steps() and last_grad_norm(); clip_grad_norm
 *   against clip_grad_norm_ and a double C loop; argument checks.
 * - Checkpoints: a round trip in mid-training gives bit-identical
 *   continuations, a checkpoint written by PyTorch continues to
 *   PyTorch's values, a PyTorch state_dict loads, and broken files fail
 *   with the right status, naming the tensor, and change nothing.
 *
 * Tolerances (u = 2^-24, the float32 unit roundoff):
 * - mse loss: d = p - t, d^2, Kahan sums per work-item and two trees of
 *   at most 8 levels each: about (3 + 2 + 16) u ~ 1.3e-6 relative, so
 *   rtol 2e-6. dpred = d * (2/n): 3 roundings, rtol 4e-7.
 * - cross-entropy, per row (m - x_t) + log(l): log and exp are allowed 3
 *   ulp in OpenCL and l carries (C/wg + 12) u, so a row is off by about
 *   u (|m - x_t| + 3 log l + C/wg + 15) <= 45 u ~ 3e-6 for logits in
 *   [-4, 4] and C <= 1000; the mean adds the sum's 20 u relative: atol
 *   3e-6 + rtol 2e-6. dlogits = (p - onehot) / nvalid with p off by
 *   ~(C/wg + 20) u relative: rtol 2e-6, atol 2e-6 / nvalid (the target
 *   entry p - 1 cancels).
 * - optimisers vs PyTorch: both follow the same float32 operation
 *   sequence with the same float scalars (hyper-parameters are float32
 *   values on both sides), but ATen's vectorised loops fuse some
 *   multiply-adds where its scalar tail loops may not, and PyTorch's norm
 *   is a norm of per-tensor norms: a value may come out an ulp or two
 *   apart, and the difference carries into later steps. rtol 4e-7 +
 *   atol 1e-7 is 3 to 7 ulps at any magnitude (values reach |w| = 4.3),
 *   after each of 10 steps. Measured: 1.2e-7 at most, 0.39 of the tolerance,
 *   on POCL and Rusticl (the log prints it). Small slips fail it: eps
 *   inside the sqrt, no bias correction, even 2 eps instead of eps (each
 *   tried by hand on the kernel).
 * - norms: a tree of float sums vs PyTorch's norm of norms, rtol 1e-6.
 *
 * CLATTN_TEST_SMALL=1 drops the 1000-sized shapes (for oclgrind).
 *
 * Usage: test_optim FIXTURE_DIR (tests/fixtures/optim) */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STEPS_MAX 16
#define PARAMS_MAX 8

static const char *fixdir;
static bool small = false; /* CLATTN_TEST_SMALL=1: no 1000-sized shapes (oclgrind) */
/* Optimisers vs PyTorch (see the top), and how much of it is used. */
#define OPT_ATOL 1e-7
#define OPT_RTOL 4e-7
static double worst_used = 0, worst_abs = 0;

#define CHECK_MSG(...)                                                                  \
    CHECK(strstr(clattn_last_error(), __VA_ARGS__), "message lacks \"%s\": %s", __VA_ARGS__, \
          clattn_last_error())

/* test_close, also keeping the largest share of its tolerance used by
 * any element in *worst (printed, so the margins can be seen in the log). */
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

static double worst_mse = 0, worst_ce = 0, worst_ce_grad = 0;

static float *fvec(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }
static double *dvec(size_t n) { return malloc((n ? n : 1) * sizeof(double)); }

/* ======================================================================== */
/* Losses                                                                    */
/* ======================================================================== */

static void mse_case(clattn_ctx *ctx, int64_t rows, int64_t cols)
{
    size_t n = (size_t)(rows * cols);
    float *p = fvec(n), *t = fvec(n), *got = fvec(n);
    double *dref = dvec(n);
    test_fill_uniform(p, n, -3, 3);
    test_fill_uniform(t, n, -3, 3);
    t[0] = p[0]; /* an exact zero difference */
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)p[i] - t[i];
        s += d * d;
        dref[i] = 2 * d / (double)n;
    }
    double ref = s / (double)n;
    int64_t shape[2] = {rows, cols};
    clattn_tensor *P = test_tensor(ctx, 2, shape, p), *T = test_tensor(ctx, 2, shape, t);
    clattn_tensor *D = test_tensor(ctx, 2, shape, NULL);
    char what[96];
    float loss = NAN;
    CHECK_OK(clattn_tensor_fill(D, NAN));
    CHECK_OK(clattn_mse_loss(ctx, P, T, &loss, D));
    if (fabs(loss - ref) / (2e-6 * ref) > worst_mse)
        worst_mse = fabs(loss - ref) / (2e-6 * ref);
    CHECK(fabs(loss - ref) <= 2e-6 * ref, "mse [%lld, %lld]: loss %.9g, reference %.9g",
          (long long)rows, (long long)cols, (double)loss, ref);
    CHECK_OK(clattn_tensor_read(D, got));
    snprintf(what, sizeof what, "mse [%lld, %lld] dpred", (long long)rows, (long long)cols);
    test_close(what, got, dref, n, 1e-30, 4e-7);
    /* The loss alone, the gradient alone, and in place (dpred = pred). */
    float loss2 = NAN;
    CHECK_OK(clattn_mse_loss(ctx, P, T, &loss2, NULL));
    CHECK(loss2 == loss, "mse: the loss alone %.9g differs from %.9g", (double)loss2,
          (double)loss);
    CHECK_OK(clattn_tensor_fill(D, NAN));
    CHECK_OK(clattn_mse_loss(ctx, P, T, NULL, D));
    CHECK_OK(clattn_tensor_read(D, got));
    test_close(what, got, dref, n, 1e-30, 4e-7);
    CHECK_OK(clattn_mse_loss(ctx, P, T, NULL, P));
    CHECK_OK(clattn_tensor_read(P, got));
    snprintf(what, sizeof what, "mse [%lld, %lld] in place", (long long)rows, (long long)cols);
    test_close(what, got, dref, n, 1e-30, 4e-7);
    clattn_tensor_destroy(P);
    clattn_tensor_destroy(T);
    clattn_tensor_destroy(D);
    free(p);
    free(t);
    free(got);
    free(dref);
}

/* Cross-entropy reference in double; dref may be NULL. Returns the loss. */
static double ce_ref(const float *x, const int64_t *tg, int64_t ignore, size_t rows, size_t c,
                     double *dref)
{
    size_t valid = 0;
    for (size_t r = 0; r < rows; r++)
        valid += tg[r] != ignore;
    double total = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        double m = -INFINITY, l = 0;
        for (size_t i = 0; i < c; i++)
            m = xr[i] > m ? xr[i] : m;
        for (size_t i = 0; i < c; i++)
            l += exp(xr[i] - m);
        bool ign = tg[r] == ignore;
        if (!ign)
            total += m + log(l) - xr[tg[r]];
        for (size_t i = 0; dref && i < c; i++)
            dref[r * c + i] = ign ? 0 : (exp(xr[i] - m) / l - (i == (size_t)tg[r])) / (double)valid;
    }
    return valid ? total / (double)valid : 0;
}

static void ce_case(clattn_ctx *ctx, int32_t ndim, const int64_t *shape, int64_t ignore,
                    int ignore_every, bool offsets)
{
    size_t c = (size_t)shape[ndim - 1], n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    size_t rows = n / c;
    float *x = fvec(n), *got = fvec(n);
    double *dref = dvec(n);
    int64_t *tg = malloc(rows * sizeof *tg);
    test_fill_uniform(x, n, -4, 4);
    size_t valid = 0;
    for (size_t r = 0; r < rows; r++) {
        tg[r] = (int64_t)((r * 7 + 3) % c);
        if (ignore_every && r % (size_t)ignore_every == 0)
            tg[r] = ignore;
        valid += tg[r] != ignore;
        /* Shifted rows: softmax is shift-invariant, so these check that
         * nothing overflows or cancels (values stay within float range). */
        if (offsets && r % 3 == 1)
            for (size_t i = 0; i < c; i++)
                x[r * c + i] += (r % 2) ? 1000.0f : -1000.0f;
    }
    double ref = ce_ref(x, tg, ignore, rows, c, dref);
    clattn_tensor *X = test_tensor(ctx, ndim, shape, x), *D = test_tensor(ctx, ndim, shape, NULL);
    char what[160], sh[64];
    snprintf(sh, sizeof sh, "[%lld", (long long)shape[0]);
    for (int32_t i = 1; i < ndim; i++)
        snprintf(sh + strlen(sh), sizeof sh - strlen(sh), ", %lld", (long long)shape[i]);
    snprintf(what, sizeof what, "cross_entropy %s] ignore %lld every %d, valid %zu", sh,
             (long long)ignore, ignore_every, valid);
    float loss = NAN;
    CHECK_OK(clattn_tensor_fill(D, NAN));
    CHECK_OK(clattn_cross_entropy_loss(ctx, X, tg, ignore, &loss, D));
    if (fabs(loss - ref) / (3e-6 + 2e-6 * fabs(ref)) > worst_ce)
        worst_ce = fabs(loss - ref) / (3e-6 + 2e-6 * fabs(ref));
    CHECK(fabs(loss - ref) <= 3e-6 + 2e-6 * fabs(ref), "%s: loss %.9g, reference %.9g", what,
          (double)loss, ref);
    CHECK_OK(clattn_tensor_read(D, got));
    double nv = valid ? (double)valid : 1;
    close_tracked(what, got, dref, n, 2e-6 / nv, 2e-6, &worst_ce_grad);
    /* The loss alone; the gradient alone, in place (dlogits = logits). */
    float loss2 = NAN;
    CHECK_OK(clattn_cross_entropy_loss(ctx, X, tg, ignore, &loss2, NULL));
    CHECK(loss2 == loss, "%s: the loss alone %.9g differs from %.9g", what, (double)loss2,
          (double)loss);
    CHECK_OK(clattn_cross_entropy_loss(ctx, X, tg, ignore, NULL, X));
    CHECK_OK(clattn_tensor_read(X, got));
    test_close(what, got, dref, n, 2e-6 / nv, 2e-6);
    clattn_tensor_destroy(X);
    clattn_tensor_destroy(D);
    free(x);
    free(got);
    free(dref);
    free(tg);
}

static void test_losses(clattn_ctx *ctx)
{
    static const int64_t rows[] = {1, 3, 17, 1000}, cls[] = {1, 2, 10, 1000};
    size_t n_sizes = small ? 3 : 4;
    for (size_t i = 0; i < n_sizes; i++) {
        for (size_t j = 0; j < n_sizes; j++) {
            int64_t shape[2] = {rows[i], cls[j]};
            mse_case(ctx, rows[i], cls[j]);
            ce_case(ctx, 2, shape, -100, 0, false);
            ce_case(ctx, 2, shape, -100, 4, true);
        }
    }
    /* 4-D logits; ignore_index that is also a valid class; every row ignored. */
    int64_t s4[4] = {2, 3, 5, 7}, s2[2] = {17, 10}, s1[1] = {10};
    ce_case(ctx, 4, s4, 2, 0, false); /* targets (7r + 3) % 7 hit class 2 sometimes */
    ce_case(ctx, 2, s2, 5, 1, false); /* all ignored: loss 0, dlogits 0 */
    ce_case(ctx, 1, s1, -100, 0, false);
    int64_t s3[3] = {3, 5, 113};
    mse_case(ctx, 1, 113);
    ce_case(ctx, 3, s3, -1, 3, true);

    /* Bad targets: an error naming position and value; dlogits untouched. */
    float x[30], got[30];
    test_fill_uniform(x, 30, -1, 1);
    int64_t shape[2] = {3, 10}, tg[3] = {0, 9, 10};
    clattn_tensor *X = test_tensor(ctx, 2, shape, x), *D = test_tensor(ctx, 2, shape, NULL);
    CHECK_OK(clattn_tensor_fill(D, 7.0f));
    float loss = 42.0f;
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, tg, -100, &loss, D), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("targets[2] = 10");
    tg[2] = 0;
    tg[1] = -1;
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, tg, -100, &loss, D), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("targets[1] = -1");
    tg[1] = -100;
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, tg, -1, &loss, D), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("targets[1] = -100");
    CHECK(loss == 42.0f, "loss written on failure");
    CHECK_OK(clattn_tensor_read(D, got));
    bool untouched = true;
    for (int i = 0; i < 30; i++)
        untouched = untouched && got[i] == 7.0f;
    CHECK(untouched, "cross_entropy_loss with a bad target wrote to dlogits");
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, NULL, -100, &loss, D), CLATTN_ERR_INVALID_ARG);
    int64_t s_other[2] = {10, 3};
    clattn_tensor *O = test_tensor(ctx, 2, s_other, NULL);
    tg[1] = 1;
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, tg, -100, &loss, O), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[10, 3]");
    CHECK_STATUS(clattn_mse_loss(ctx, X, O, &loss, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[10, 3]");
    CHECK_STATUS(clattn_mse_loss(ctx, X, X, &loss, O), CLATTN_ERR_INVALID_ARG);
    fprintf(stderr, "losses: worst share of the tolerance used: mse %.2f, cross-entropy %.2f, "
            "dlogits %.2f\n", worst_mse, worst_ce, worst_ce_grad);
    CHECK_STATUS(clattn_mse_loss(NULL, X, X, &loss, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_mse_loss(ctx, NULL, X, &loss, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_OK(clattn_mse_loss(ctx, X, X, NULL, NULL)); /* nothing asked: nothing done */
    CHECK_OK(clattn_mse_loss(ctx, X, X, &loss, NULL));
    CHECK(loss == 0.0f, "mse of x with itself: %g", (double)loss);
    clattn_tensor_destroy(X);
    clattn_tensor_destroy(D);
    clattn_tensor_destroy(O);
}

/* ======================================================================== */
/* Fixtures                                                                  */
/* ======================================================================== */

typedef struct fparam {
    char name[64];
    int32_t ndim;
    int64_t shape[4];
    size_t numel;
} fparam;

typedef struct fcase {
    char name[64];
    clattn_optimizer_params p;
    int32_t steps;
    double lrs[STEPS_MAX];
    double norms[STEPS_MAX]; /* -1: not clipped */
} fcase;

static fparam fparams[PARAMS_MAX];
static int32_t n_fparams;
static int32_t n_steps;
static json_t *cases_json;
static clattn_weights *grads_file;

static double jnum(json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static bool load_fixtures(void)
{
    char path[600];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/cases.json", fixdir);
    cases_json = json_load_file(path, 0, &jerr);
    CHECK(cases_json != NULL, "%s: %s", path, jerr.text);
    if (!cases_json)
        return false;
    n_steps = (int32_t)json_integer_value(json_object_get(cases_json, "steps"));
    json_t *ps = json_object_get(cases_json, "params");
    n_fparams = (int32_t)json_array_size(ps);
    CHECK(n_steps > 0 && n_steps <= STEPS_MAX && n_fparams > 0 && n_fparams <= PARAMS_MAX,
          "cases.json: steps %d, params %d", (int)n_steps, (int)n_fparams);
    for (int32_t i = 0; i < n_fparams; i++) {
        json_t *o = json_array_get(ps, (size_t)i), *sh = json_object_get(o, "shape");
        fparam *f = &fparams[i];
        snprintf(f->name, sizeof f->name, "%s", json_string_value(json_object_get(o, "name")));
        f->ndim = (int32_t)json_array_size(sh);
        f->numel = 1;
        for (int32_t d = 0; d < f->ndim; d++) {
            f->shape[d] = json_integer_value(json_array_get(sh, (size_t)d));
            f->numel *= (size_t)f->shape[d];
        }
    }
    snprintf(path, sizeof path, "%s/grads.safetensors", fixdir);
    CHECK_OK(clattn_weights_open(path, &grads_file));
    return grads_file != NULL;
}

static void parse_case(json_t *o, fcase *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", json_string_value(json_object_get(o, "name")));
    const char *kind = json_string_value(json_object_get(o, "kind"));
    clattn_optimizer_kind k = strcmp(kind, "sgd") == 0    ? CLATTN_OPTIM_SGD
                              : strcmp(kind, "adam") == 0 ? CLATTN_OPTIM_ADAM
                                                          : CLATTN_OPTIM_ADAMW;
    clattn_optimizer_params *p = &c->p;
    *p = clattn_optimizer_params_default(k);
    p->lr = (float)jnum(o, "lr");
    p->weight_decay = (float)jnum(o, "weight_decay");
    p->momentum = (float)jnum(o, "momentum");
    p->dampening = (float)jnum(o, "dampening");
    p->nesterov = json_is_true(json_object_get(o, "nesterov"));
    p->beta1 = (float)jnum(o, "beta1");
    p->beta2 = (float)jnum(o, "beta2");
    p->eps = (float)jnum(o, "eps");
    p->max_grad_norm = (float)jnum(o, "max_grad_norm");
    p->warmup_steps = json_integer_value(json_object_get(o, "warmup_steps"));
    p->total_steps = json_integer_value(json_object_get(o, "total_steps"));
    p->min_lr = (float)jnum(o, "min_lr");
    c->steps = n_steps;
    for (int32_t s = 0; s < n_steps; s++) {
        c->lrs[s] = json_number_value(json_array_get(json_object_get(o, "lrs"), (size_t)s));
        json_t *nv = json_array_get(json_object_get(o, "norms"), (size_t)s);
        c->norms[s] = json_is_null(nv) ? -1 : json_number_value(nv);
    }
}

static bool find_case(const char *name, fcase *c)
{
    json_t *arr = json_object_get(cases_json, "cases");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        if (strcmp(json_string_value(json_object_get(o, "name")), name) == 0) {
            parse_case(o, c);
            return true;
        }
    }
    CHECK(false, "cases.json has no case '%s'", name);
    return false;
}

/* Reads tensor name of w as float32 into dst (numel floats). */
static void read_fixture(const clattn_weights *w, const char *name, float *dst, size_t numel)
{
    clattn_status st = clattn_weights_read_f32(w, name, dst, numel);
    CHECK(st == CLATTN_OK, "fixture tensor %s: %s", name, clattn_last_error());
    if (st != CLATTN_OK)
        memset(dst, 0, numel * sizeof *dst);
}

/* The fixture parameters on the device: values (from "init.*") and grads. */
typedef struct model {
    clattn_tensor *value[PARAMS_MAX], *grad[PARAMS_MAX];
    clattn_param_ref refs[PARAMS_MAX];
} model;

static void model_init(clattn_ctx *ctx, model *m, bool from_init)
{
    for (int32_t i = 0; i < n_fparams; i++) {
        fparam *f = &fparams[i];
        float *buf = fvec(f->numel);
        char name[128];
        snprintf(name, sizeof name, "init.%.63s", f->name);
        read_fixture(grads_file, name, buf, f->numel);
        m->value[i] = test_tensor(ctx, f->ndim, f->shape, NULL);
        m->grad[i] = test_tensor(ctx, f->ndim, f->shape, NULL);
        if (from_init)
            CHECK_OK(clattn_tensor_write(m->value[i], buf));
        else
            CHECK_OK(clattn_tensor_fill(m->value[i], 0.25f));
        CHECK_OK(clattn_tensor_fill(m->grad[i], 0.0f));
        m->refs[i] = (clattn_param_ref){f->name, m->value[i], m->grad[i]};
        free(buf);
    }
}

static void model_free(model *m)
{
    for (int32_t i = 0; i < n_fparams; i++) {
        clattn_tensor_destroy(m->value[i]);
        clattn_tensor_destroy(m->grad[i]);
    }
}

static void model_set_grads(model *m, int32_t step)
{
    for (int32_t i = 0; i < n_fparams; i++) {
        float *buf = fvec(fparams[i].numel);
        char name[128];
        snprintf(name, sizeof name, "grad.%d.%.63s", (int)step, fparams[i].name);
        read_fixture(grads_file, name, buf, fparams[i].numel);
        CHECK_OK(clattn_tensor_write(m->grad[i], buf));
        free(buf);
    }
}

/* All parameter values, concatenated, into a malloc'd buffer. */
static float *model_values(const model *m, size_t *total)
{
    size_t n = 0;
    for (int32_t i = 0; i < n_fparams; i++)
        n += fparams[i].numel;
    float *all = fvec(n), *at = all;
    for (int32_t i = 0; i < n_fparams; i++) {
        CHECK_OK(clattn_tensor_read(m->value[i], at));
        at += fparams[i].numel;
    }
    *total = n;
    return all;
}

/* Compares the model's values with "value.<step>.*" of a case file. */
static void compare_step(const model *m, const clattn_weights *w, const char *cname, int32_t step)
{
    for (int32_t i = 0; i < n_fparams; i++) {
        size_t n = fparams[i].numel;
        float *got = fvec(n), *want = fvec(n);
        double *ref = dvec(n);
        char name[128], what[256];
        snprintf(name, sizeof name, "value.%d.%.63s", (int)step, fparams[i].name);
        read_fixture(w, name, want, n);
        CHECK_OK(clattn_tensor_read(m->value[i], got));
        for (size_t j = 0; j < n; j++) {
            ref[j] = want[j];
            double used = fabs((double)got[j] - want[j]) / (OPT_ATOL + OPT_RTOL * fabs(want[j]));
            if (used > worst_used)
                worst_used = used;
            if (fabs((double)got[j] - want[j]) > worst_abs)
                worst_abs = fabs((double)got[j] - want[j]);
        }
        snprintf(what, sizeof what, "%.63s step %d %.63s", cname, (int)step, fparams[i].name);
        test_close(what, got, ref, n, OPT_ATOL, OPT_RTOL);
        free(got);
        free(want);
        free(ref);
    }
}

static bool close_rel(double got, double want, double rtol)
{
    return fabs(got - want) <= rtol * fabs(want);
}

/* Runs steps [from, to) of case c on m with opt, checking every step. */
static void run_steps(clattn_optimizer *opt, model *m, const fcase *c, const clattn_weights *w,
                      int32_t from, int32_t to)
{
    for (int32_t s = from; s < to; s++) {
        model_set_grads(m, s);
        /* lr: the same double formula, rounded to float: within an ulp. */
        float lr = clattn_optimizer_lr(opt);
        CHECK(close_rel(lr, c->lrs[s], 1.2e-7), "%s step %d: lr %.9g, PyTorch %.9g", c->name,
              (int)s, (double)lr, c->lrs[s]);
        CHECK_OK(clattn_optimizer_step(opt));
        CHECK(clattn_optimizer_steps(opt) == s + 1, "%s: steps() = %lld after step %d", c->name,
              (long long)clattn_optimizer_steps(opt), (int)s);
        float norm = clattn_optimizer_last_grad_norm(opt);
        if (c->norms[s] < 0)
            CHECK(norm == -1.0f, "%s step %d: last_grad_norm %g without clipping", c->name,
                  (int)s, (double)norm);
        else
            CHECK(close_rel(norm, c->norms[s], 1e-6), "%s step %d: norm %.9g, PyTorch %.9g",
                  c->name, (int)s, (double)norm, c->norms[s]);
        compare_step(m, w, c->name, s);
    }
}

static clattn_weights *open_fixture(const char *file)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", fixdir, file);
    clattn_weights *w = NULL;
    clattn_status st = clattn_weights_open(path, &w);
    CHECK(st == CLATTN_OK, "%s: %s", path, clattn_last_error());
    return w;
}

static void test_fixture_cases(clattn_ctx *ctx)
{
    json_t *arr = json_object_get(cases_json, "cases");
    CHECK(json_array_size(arr) >= 10, "cases.json: %zu cases", json_array_size(arr));
    for (size_t i = 0; i < json_array_size(arr); i++) {
        fcase c;
        parse_case(json_array_get(arr, i), &c);
        char file[128];
        snprintf(file, sizeof file, "%s.safetensors", c.name);
        clattn_weights *w = open_fixture(file);
        if (!w)
            continue;
        model m;
        model_init(ctx, &m, true);
        clattn_optimizer *opt = NULL;
        CHECK_OK(clattn_optimizer_create(ctx, &c.p, n_fparams, m.refs, &opt));
        if (opt) {
            CHECK(clattn_optimizer_steps(opt) == 0, "steps before the first step");
            CHECK(clattn_optimizer_last_grad_norm(opt) == -1.0f, "norm before the first step");
            run_steps(opt, &m, &c, w, 0, c.steps);
        }
        clattn_optimizer_destroy(opt);
        model_free(&m);
        clattn_weights_close(w);
    }
    fprintf(stderr,
            "worst optimiser difference from PyTorch: %.3g absolute, %.2f of the tolerance\n",
            worst_abs, worst_used);
}

/* ======================================================================== */
/* Clipping                                                                  */
/* ======================================================================== */

static void test_clip(clattn_ctx *ctx)
{
    /* Against clip_grad_norm_ on step 0's gradients. */
    model m;
    model_init(ctx, &m, true);
    model_set_grads(&m, 0);
    json_t *clip = json_object_get(cases_json, "clip");
    float max_norm = (float)jnum(clip, "max_norm"), norm = -1;
    double want = jnum(clip, "norm");
    CHECK_OK(clattn_clip_grad_norm(ctx, n_fparams, m.refs, max_norm, &norm));
    CHECK(close_rel(norm, want, 1e-6), "clip_grad_norm: %.9g, PyTorch %.9g", (double)norm, want);
    clattn_weights *w = open_fixture("clipped.safetensors");
    for (int32_t i = 0; w && i < n_fparams; i++) {
        size_t n = fparams[i].numel;
        float *got = fvec(n), *ref_f = fvec(n);
        double *ref = dvec(n);
        read_fixture(w, fparams[i].name, ref_f, n);
        for (size_t j = 0; j < n; j++)
            ref[j] = ref_f[j];
        CHECK_OK(clattn_tensor_read(m.grad[i], got));
        char what[128];
        snprintf(what, sizeof what, "clipped %.63s", fparams[i].name);
        /* The factor inherits the norm's 1e-6 relative difference. */
        test_close(what, got, ref, n, 1e-9, 1.5e-6);
        free(got);
        free(ref_f);
        free(ref);
    }
    clattn_weights_close(w);
    /* Below the limit, or max_norm 0: the gradients keep every bit. */
    model_set_grads(&m, 0);
    size_t total;
    float *before = NULL, *after = NULL;
    model tmp = m; /* so model_values reads the gradients */
    for (int32_t i = 0; i < n_fparams; i++)
        tmp.value[i] = m.grad[i];
    before = model_values(&tmp, &total);
    float n1 = 0, n2 = 0;
    CHECK_OK(clattn_clip_grad_norm(ctx, n_fparams, m.refs, 0.0f, &n1));
    CHECK_OK(clattn_clip_grad_norm(ctx, n_fparams, m.refs, 1e6f, &n2));
    CHECK(n1 == n2 && n1 == norm, "repeated norms differ: %.9g %.9g %.9g", (double)n1,
          (double)n2, (double)norm);
    after = model_values(&tmp, &total);
    CHECK(memcmp(before, after, total * sizeof *after) == 0, "unclipped gradients changed");
    free(before);
    free(after);
    model_free(&m);

    /* Large and odd tensors against a double loop (many work-groups). */
    const int64_t sizes[] = {small ? 5000 : 1000000, 17, 4099, 1};
    clattn_tensor *g[4];
    clattn_param_ref refs[4];
    double sumsq = 0;
    float *host[4];
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)sizes[i];
        host[i] = fvec(n);
        test_fill_uniform(host[i], n, -0.01f, 0.01f);
        for (size_t j = 0; j < n; j++)
            sumsq += (double)host[i][j] * host[i][j];
        g[i] = test_tensor(ctx, 1, &sizes[i], host[i]);
        refs[i] = (clattn_param_ref){NULL, NULL, g[i]};
    }
    double ref = sqrt(sumsq);
    float got_norm = 0, max_norm_big = (float)(ref / 3); /* clips by about 3 */
    CHECK_OK(clattn_clip_grad_norm(ctx, 4, refs, max_norm_big, &got_norm));
    CHECK(close_rel(got_norm, ref, 2e-6), "clip norm of large tensors: %.9g, reference %.9g",
          (double)got_norm, ref);
    double coef = max_norm_big / (ref + 1e-6);
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)sizes[i];
        float *got = fvec(n);
        double *r = dvec(n);
        for (size_t j = 0; j < n; j++)
            r[j] = host[i][j] * coef;
        CHECK_OK(clattn_tensor_read(g[i], got));
        test_close("clipped large", got, r, n, 1e-12, 3e-6);
        free(got);
        free(r);
    }
    /* Non-finite: INVALID_ARG, nothing scaled, *norm untouched. */
    for (int k = 0; k < 2; k++) {
        float bad = k ? NAN : INFINITY, probe[17];
        CHECK_OK(clattn_tensor_write_range(g[1], 5, 1, &bad));
        CHECK_OK(clattn_tensor_read(g[1], probe));
        float keep = 123.0f;
        CHECK_STATUS(clattn_clip_grad_norm(ctx, 4, refs, 1e-3f, &keep), CLATTN_ERR_INVALID_ARG);
        CHECK(keep == 123.0f, "norm written on failure");
        CHECK_MSG("norm");
        float after17[17];
        CHECK_OK(clattn_tensor_read(g[1], after17));
        CHECK(memcmp(probe, after17, sizeof probe) == 0, "non-finite clip scaled gradients");
    }
    CHECK_STATUS(clattn_clip_grad_norm(ctx, 4, refs, -1.0f, &got_norm), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("max_norm");
    CHECK_STATUS(clattn_clip_grad_norm(ctx, 4, refs, NAN, &got_norm), CLATTN_ERR_INVALID_ARG);
    refs[2].grad = g[1];
    CHECK_STATUS(clattn_clip_grad_norm(ctx, 4, refs, 1.0f, &got_norm), CLATTN_ERR_INVALID_ARG);
    refs[2].grad = NULL;
    CHECK_STATUS(clattn_clip_grad_norm(ctx, 4, refs, 1.0f, &got_norm), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("params[2].grad");
    float zero = -1;
    CHECK_OK(clattn_clip_grad_norm(ctx, 0, NULL, 1.0f, &zero));
    CHECK(zero == 0.0f, "norm of no gradients: %g", (double)zero);
    for (int i = 0; i < 4; i++) {
        clattn_tensor_destroy(g[i]);
        free(host[i]);
    }
}

/* ======================================================================== */
/* Optimiser arguments and edge behaviour                                    */
/* ======================================================================== */

static void test_optimizer_args(clattn_ctx *ctx)
{
    clattn_optimizer_params d = clattn_optimizer_params_default(CLATTN_OPTIM_ADAM);
    CHECK(d.lr == 1e-3f && d.beta1 == 0.9f && d.beta2 == 0.999f && d.eps == 1e-8f &&
              d.weight_decay == 0.0f && d.max_grad_norm == 0.0f && d.warmup_steps == 0 &&
              d.total_steps == 0,
          "Adam defaults");
    d = clattn_optimizer_params_default(CLATTN_OPTIM_ADAMW);
    CHECK(d.weight_decay == 1e-2f && d.kind == CLATTN_OPTIM_ADAMW, "AdamW defaults");
    d = clattn_optimizer_params_default(CLATTN_OPTIM_SGD);
    CHECK(d.lr == 1e-3f && d.momentum == 0.0f && !d.nesterov && d.kind == CLATTN_OPTIM_SGD,
          "SGD defaults");

    model m;
    model_init(ctx, &m, true);
    /* One bad field at a time; the message names it; *out stays NULL. */
    for (int k = 0; k < 15; k++) {
        clattn_optimizer_params p = clattn_optimizer_params_default(
            k < 5 ? CLATTN_OPTIM_SGD : CLATTN_OPTIM_ADAM);
        const char *field = NULL;
        switch (k) {
        case 0: p.lr = 0; field = "lr"; break;
        case 1: p.momentum = -0.5f; field = "momentum"; break;
        case 2: p.nesterov = true; field = "nesterov"; break; /* momentum 0 */
        case 3: p.momentum = 0.9f; p.dampening = 0.1f; p.nesterov = true; field = "nesterov"; break;
        case 4: p.dampening = NAN; field = "dampening"; break;
        case 5: p.lr = NAN; field = "lr"; break;
        case 6: p.weight_decay = -1e-3f; field = "weight_decay"; break;
        case 7: p.beta1 = 1.0f; field = "beta1"; break;
        case 8: p.beta2 = -0.1f; field = "beta2"; break;
        case 9: p.eps = 0.0f; field = "eps"; break;
        case 10: p.max_grad_norm = -1.0f; field = "max_grad_norm"; break;
        case 11: p.warmup_steps = -1; field = "warmup_steps"; break;
        case 12: p.total_steps = -5; field = "total_steps"; break;
        case 13: p.min_lr = INFINITY; field = "min_lr"; break;
        case 14: p.kind = (clattn_optimizer_kind)7; field = "kind"; break;
        }
        clattn_optimizer *opt = (clattn_optimizer *)&m; /* must be reset to NULL */
        CHECK_STATUS(clattn_optimizer_create(ctx, &p, n_fparams, m.refs, &opt),
                     CLATTN_ERR_INVALID_ARG);
        CHECK_MSG(field);
        CHECK(opt == NULL, "case %d: out not NULL on failure", k);
    }
    /* Parameter lists. */
    clattn_optimizer_params p = clattn_optimizer_params_default(CLATTN_OPTIM_ADAM);
    clattn_optimizer *opt = NULL;
    clattn_param_ref refs[PARAMS_MAX];
    memcpy(refs, m.refs, sizeof refs);
    CHECK_STATUS(clattn_optimizer_create(ctx, &p, 0, refs, &opt), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_optimizer_create(ctx, &p, 2, NULL, &opt), CLATTN_ERR_INVALID_ARG);
    refs[1].grad = NULL;
    CHECK_STATUS(clattn_optimizer_create(ctx, &p, 2, refs, &opt), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("params[1].grad");
    refs[1].grad = m.grad[0]; /* another shape, and shared */
    CHECK_STATUS(clattn_optimizer_create(ctx, &p, 2, refs, &opt), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("lin.bias");
    refs[1] = m.refs[1];
    refs[1].name = refs[0].name;
    CHECK_STATUS(clattn_optimizer_create(ctx, &p, 2, refs, &opt), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("appears twice");
    refs[1] = m.refs[0];
    refs[1].name = "other";
    CHECK_STATUS(clattn_optimizer_create(ctx, &p, 2, refs, &opt), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("share");
    refs[1] = m.refs[1];
    refs[1].grad = m.value[1];
    CHECK_STATUS(clattn_optimizer_create(ctx, &p, 2, refs, &opt), CLATTN_ERR_INVALID_ARG);
    refs[1] = m.refs[1];
    refs[1].name = "";
    CHECK_STATUS(clattn_optimizer_create(ctx, &p, 2, refs, &opt), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_optimizer_create(NULL, &p, 2, m.refs, &opt), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_optimizer_create(ctx, NULL, 2, m.refs, &opt), CLATTN_ERR_INVALID_ARG);
    CHECK(opt == NULL, "out set on failure");

    /* Names are copied: the caller's strings may go. */
    char name0[64];
    snprintf(name0, sizeof name0, "%s", fparams[0].name);
    refs[0] = m.refs[0];
    refs[0].name = name0;
    p.max_grad_norm = 1.0f;
    CHECK_OK(clattn_optimizer_create(ctx, &p, 1, refs, &opt));
    memset(name0, 'x', sizeof name0 - 1);

    /* A non-finite gradient with clipping: INVALID_ARG, nothing moves. */
    size_t n0 = fparams[0].numel;
    float *before = fvec(n0), *after = fvec(n0), bad_value = INFINITY;
    model_set_grads(&m, 0);
    CHECK_OK(clattn_optimizer_step(opt));
    CHECK_OK(clattn_tensor_read(m.value[0], before));
    CHECK_OK(clattn_tensor_write_range(m.grad[0], 3, 1, &bad_value));
    CHECK_STATUS(clattn_optimizer_step(opt), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("norm");
    CHECK(isinf(clattn_optimizer_last_grad_norm(opt)), "last_grad_norm %g",
          (double)clattn_optimizer_last_grad_norm(opt));
    CHECK(clattn_optimizer_steps(opt) == 1, "a refused step counted");
    CHECK_OK(clattn_tensor_read(m.value[0], after));
    CHECK(memcmp(before, after, n0 * sizeof *after) == 0, "a refused step changed values");
    /* zero_grad: every gradient 0. */
    CHECK_OK(clattn_optimizer_zero_grad(opt));
    CHECK_OK(clattn_tensor_read(m.grad[0], after));
    bool zero = true;
    for (size_t i = 0; i < n0; i++)
        zero = zero && after[i] == 0.0f;
    CHECK(zero, "zero_grad left a non-zero gradient");
    /* A zero gradient is finite: Adam steps with m, v decaying. */
    CHECK_OK(clattn_optimizer_step(opt));
    CHECK(clattn_optimizer_last_grad_norm(opt) == 0.0f, "norm of zero gradients");
    CHECK_STATUS(clattn_optimizer_step(NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_optimizer_zero_grad(NULL), CLATTN_ERR_INVALID_ARG);
    CHECK(clattn_optimizer_steps(NULL) == 0 && clattn_optimizer_last_grad_norm(NULL) == -1.0f,
          "NULL getters");
    clattn_optimizer_destroy(opt);
    clattn_optimizer_destroy(NULL);
    free(before);
    free(after);
    model_free(&m);
}

/* The schedule's edges, against the header's formula in double. */
static void test_schedule(clattn_ctx *ctx)
{
    int64_t one = 1;
    clattn_tensor *v = test_tensor(ctx, 1, &one, NULL), *g = test_tensor(ctx, 1, &one, NULL);
    CHECK_OK(clattn_tensor_fill(v, 1.0f));
    CHECK_OK(clattn_tensor_fill(g, 0.5f));
    clattn_param_ref ref = {"w", v, g};
    clattn_optimizer_params p = clattn_optimizer_params_default(CLATTN_OPTIM_SGD);
    p.lr = 0.5f;
    p.min_lr = 0.05f;
    p.warmup_steps = 4;
    p.total_steps = 4; /* no decay span: cosine jumps to min_lr right after warm-up */
    clattn_optimizer *opt = NULL;
    CHECK_OK(clattn_optimizer_create(ctx, &p, 1, &ref, &opt));
    for (int t = 0; opt && t < 7; t++) {
        double want = t < 4 ? 0.5 * (t + 1) / 4 : (t == 4 ? 0.5 : 0.05);
        /* u = (t - 4) / max(1, 0): t = 4 gives u = 0 (lr), later u = 1. */
        CHECK(close_rel(clattn_optimizer_lr(opt), want, 1.2e-7), "t %d: lr %.9g, want %.9g", t,
              (double)clattn_optimizer_lr(opt), want);
        CHECK_OK(clattn_optimizer_step(opt));
    }
    clattn_optimizer_destroy(opt);
    clattn_tensor_destroy(v);
    clattn_tensor_destroy(g);
}

/* ======================================================================== */
/* Checkpoints                                                               */
/* ======================================================================== */

static char tmpdir[] = "/tmp/clattn-test-optim-XXXXXX";

static const char *tmp_path(const char *file)
{
    static char path[32][256]; /* a few live at once */
    static int next;
    char *p = path[next++ % 32];
    snprintf(p, 256, "%s/%s", tmpdir, file);
    return p;
}

/* Writes a safetensors file from a header (JSON text) and raw data. */
static void write_raw(const char *path, const char *header, const void *data, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    size_t len = strlen(header), padded = (len + 7) / 8 * 8;
    unsigned char prefix[8];
    for (int b = 0; b < 8; b++)
        prefix[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    bool ok = f && fwrite(prefix, 1, 8, f) == 8 && fwrite(header, 1, len, f) == len;
    for (size_t i = len; ok && i < padded; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
    if (f)
        ok = fclose(f) == 0 && ok;
    if (!ok) {
        perror(path);
        exit(1);
    }
}

/* Round trip in mid-training for each kind: save after 3 steps, run 4
 * more; load into fresh tensors and a fresh optimiser, run the same 4:
 * the same bits. */
static void test_roundtrip(clattn_ctx *ctx)
{
    for (int kind = 0; kind < 3; kind++) {
        clattn_optimizer_params p = clattn_optimizer_params_default((clattn_optimizer_kind)kind);
        p.lr = 0.01f;
        p.max_grad_norm = 5.0f;
        p.warmup_steps = 2;
        p.total_steps = 9;
        p.min_lr = 1e-4f;
        if (kind == CLATTN_OPTIM_SGD) {
            p.momentum = 0.9f;
            p.nesterov = true;
            p.weight_decay = 1e-3f;
        }
        model a, b;
        model_init(ctx, &a, true);
        model_init(ctx, &b, false);
        clattn_optimizer *oa = NULL, *ob = NULL;
        CHECK_OK(clattn_optimizer_create(ctx, &p, n_fparams, a.refs, &oa));
        CHECK_OK(clattn_optimizer_create(ctx, &p, n_fparams, b.refs, &ob));
        if (!oa || !ob)
            return;
        for (int s = 0; s < 3; s++) {
            model_set_grads(&a, s);
            CHECK_OK(clattn_optimizer_step(oa));
        }
        const char *path = tmp_path("ckpt.safetensors");
        CHECK_OK(clattn_checkpoint_save(path, n_fparams, a.refs, oa));
        for (int s = 3; s < 7; s++) {
            model_set_grads(&a, s);
            CHECK_OK(clattn_optimizer_step(oa));
        }
        CHECK_OK(clattn_checkpoint_load(path, n_fparams, b.refs, ob));
        CHECK(clattn_optimizer_steps(ob) == 3, "kind %d: steps after load %lld", kind,
              (long long)clattn_optimizer_steps(ob));
        CHECK(clattn_optimizer_last_grad_norm(ob) == -1.0f, "norm after load");
        for (int s = 3; s < 7; s++) {
            model_set_grads(&b, s);
            CHECK_OK(clattn_optimizer_step(ob));
        }
        size_t na, nb;
        float *va = model_values(&a, &na), *vb = model_values(&b, &nb);
        CHECK(na == nb && memcmp(va, vb, na * sizeof *va) == 0,
              "kind %d: resumed training differs from uninterrupted training", kind);
        free(va);
        free(vb);

        /* The file: a state_dict with the state tensors and metadata. */
        clattn_weights *w = NULL;
        CHECK_OK(clattn_weights_open(path, &w));
        if (w) {
            const char *k = clattn_weights_metadata(w, "clattn.optimizer");
            const char *want = kind == 0 ? "sgd" : kind == 1 ? "adam" : "adamw";
            CHECK(k && strcmp(k, want) == 0, "clattn.optimizer: %s", k ? k : "(none)");
            const char *st = clattn_weights_metadata(w, "clattn.step");
            CHECK(st && strcmp(st, "3") == 0, "clattn.step: %s", st ? st : "(none)");
            const char *lr = clattn_weights_metadata(w, "clattn.lr");
            CHECK(lr && strtof(lr, NULL) == p.lr, "clattn.lr: %s", lr ? lr : "(none)");
            clattn_weight_info info;
            int32_t per = kind == 0 ? 1 : 2;
            CHECK(clattn_weights_count(w) == n_fparams * (1 + per), "%d tensors",
                  (int)clattn_weights_count(w));
            CHECK_OK(clattn_weights_find(w, kind == 0 ? "optimizer.lin.weight.momentum_buffer"
                                                      : "optimizer.lin.weight.exp_avg_sq",
                                         &info));
            CHECK(info.ndim == 2 && info.shape[0] == 19 && info.shape[1] == 11,
                  "state tensor shape");
            clattn_weights_close(w);
        }
        clattn_optimizer_destroy(oa);
        clattn_optimizer_destroy(ob);
        model_free(&a);
        model_free(&b);
    }
    /* Atomic save: nothing but the checkpoint in the directory. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = ckpt.safetensors", tmpdir);
    CHECK(system(cmd) == 0, "a temporary file was left in %s", tmpdir);
}

/* A checkpoint written by PyTorch (the fixture script, from its Adam's
 * state_dict) continues to PyTorch's own values. */
static void test_resume_from_pytorch(clattn_ctx *ctx)
{
    json_t *r = json_object_get(cases_json, "resume");
    const char *cname = json_string_value(json_object_get(r, "case"));
    int32_t at = (int32_t)json_integer_value(json_object_get(r, "at"));
    fcase c;
    if (!find_case(cname, &c))
        return;
    char file[128], path[600];
    snprintf(file, sizeof file, "%s.safetensors", c.name);
    clattn_weights *w = open_fixture(file);
    snprintf(path, sizeof path, "%s/resume.safetensors", fixdir);
    model m;
    model_init(ctx, &m, false);
    clattn_optimizer *opt = NULL;
    CHECK_OK(clattn_optimizer_create(ctx, &c.p, n_fparams, m.refs, &opt));
    CHECK_OK(clattn_checkpoint_load(path, n_fparams, m.refs, opt));
    CHECK(clattn_optimizer_steps(opt) == at, "steps after loading PyTorch's checkpoint: %lld",
          (long long)clattn_optimizer_steps(opt));
    if (w && opt) {
        /* The loaded values are PyTorch's after step at - 1, exactly. */
        for (int32_t i = 0; i < n_fparams; i++) {
            size_t n = fparams[i].numel;
            float *got = fvec(n);
            double *ref = dvec(n);
            float *want = fvec(n);
            char name[128];
            snprintf(name, sizeof name, "value.%d.%.63s", (int)(at - 1), fparams[i].name);
            read_fixture(w, name, want, n);
            for (size_t j = 0; j < n; j++)
                ref[j] = want[j];
            CHECK_OK(clattn_tensor_read(m.value[i], got));
            test_close("resume: loaded values", got, ref, n, 0, 0);
            free(got);
            free(ref);
            free(want);
        }
        run_steps(opt, &m, &c, w, at, c.steps);
    }
    clattn_optimizer_destroy(opt);
    model_free(&m);
    clattn_weights_close(w);
}

/* A module's state_dict saved by safetensors.torch (F32 and F64). */
static void test_pytorch_state_dict(clattn_ctx *ctx)
{
    char path[600];
    snprintf(path, sizeof path, "%s/state_dict.safetensors", fixdir);
    int64_t s_w[2] = {4, 3}, s4 = 4;
    clattn_tensor *t[4] = {test_tensor(ctx, 2, s_w, NULL), test_tensor(ctx, 1, &s4, NULL),
                           test_tensor(ctx, 1, &s4, NULL), test_tensor(ctx, 1, &s4, NULL)};
    clattn_tensor *g[4] = {test_tensor(ctx, 2, s_w, NULL), test_tensor(ctx, 1, &s4, NULL),
                           test_tensor(ctx, 1, &s4, NULL), test_tensor(ctx, 1, &s4, NULL)};
    const char *names[4] = {"proj.weight", "proj.bias", "norm.weight", "norm.bias"};
    clattn_param_ref refs[4];
    for (int i = 0; i < 4; i++)
        refs[i] = (clattn_param_ref){names[i], t[i], g[i]};
    CHECK_OK(clattn_checkpoint_load(path, 4, refs, NULL));
    float w[12], b[4], nw[4], nb[4];
    CHECK_OK(clattn_tensor_read(t[0], w));
    CHECK_OK(clattn_tensor_read(t[1], b));
    CHECK_OK(clattn_tensor_read(t[2], nw));
    CHECK_OK(clattn_tensor_read(t[3], nb));
    bool ok = true;
    for (int i = 0; i < 12; i++)
        ok = ok && w[i] == (float)(i - 6) / 8;
    for (int i = 0; i < 4; i++)
        ok = ok && b[i] == (float)(i + 1) / 4 && nw[i] == 1 + (float)i / 16 &&
             nb[i] == -(float)i / 32;
    CHECK(ok, "PyTorch state_dict values");
    /* Without optimiser state, an optimiser cannot load from it. */
    clattn_optimizer_params p = clattn_optimizer_params_default(CLATTN_OPTIM_ADAMW);
    clattn_optimizer *opt = NULL;
    CHECK_OK(clattn_optimizer_create(ctx, &p, 4, refs, &opt));
    CHECK_STATUS(clattn_checkpoint_load(path, 4, refs, opt), CLATTN_ERR_FORMAT);
    CHECK_MSG("clattn.optimizer");
    clattn_optimizer_destroy(opt);
    for (int i = 0; i < 4; i++) {
        clattn_tensor_destroy(t[i]);
        clattn_tensor_destroy(g[i]);
    }
}

/* Broken files: the right status, the tensor or key named, nothing changed. */
static void test_bad_checkpoints(clattn_ctx *ctx)
{
    model m;
    model_init(ctx, &m, true);
    clattn_optimizer_params p = clattn_optimizer_params_default(CLATTN_OPTIM_ADAM);
    clattn_optimizer *opt = NULL, *sgd = NULL;
    CHECK_OK(clattn_optimizer_create(ctx, &p, n_fparams, m.refs, &opt));
    clattn_optimizer_params ps = clattn_optimizer_params_default(CLATTN_OPTIM_SGD);
    ps.momentum = 0.5f;
    CHECK_OK(clattn_optimizer_create(ctx, &ps, n_fparams, m.refs, &sgd));
    if (!opt || !sgd)
        return;
    model_set_grads(&m, 0);
    CHECK_OK(clattn_optimizer_step(opt));
    const char *good = tmp_path("good.safetensors");
    CHECK_OK(clattn_checkpoint_save(good, n_fparams, m.refs, opt));
    size_t total;
    float *before = model_values(&m, &total);

    /* Files made with clattn_weights_write: params only; params missing
     * one; one of another shape; with bad metadata. */
    const char *names[PARAMS_MAX];
    const clattn_tensor *ts[PARAMS_MAX];
    for (int32_t i = 0; i < n_fparams; i++) {
        names[i] = fparams[i].name;
        ts[i] = m.value[i];
    }
    const char *only = tmp_path("params_only.safetensors");
    CHECK_OK(clattn_weights_write(only, n_fparams, names, ts, NULL, NULL, 0));
    int64_t wrong_shape[2] = {19, 1};
    clattn_tensor *wrong = test_tensor(ctx, 2, wrong_shape, NULL);
    CHECK_OK(clattn_tensor_fill(wrong, 1.0f));
    const clattn_tensor *ts2[PARAMS_MAX];
    memcpy(ts2, ts, sizeof ts2);
    ts2[1] = wrong; /* lin.bias [19] stored as [19, 1] */
    const char *misshaped = tmp_path("misshaped.safetensors");
    CHECK_OK(clattn_weights_write(misshaped, n_fparams, names, ts2, NULL, NULL, 0));
    const char *missing = tmp_path("missing.safetensors");
    CHECK_OK(clattn_weights_write(missing, n_fparams - 1, names, ts, NULL, NULL, 0));

    struct {
        const char *path;
        bool with_opt;
        clattn_optimizer *o;
        clattn_status want;
        const char *needle;
    } cases[] = {
        {only, true, NULL, CLATTN_ERR_FORMAT, "clattn.optimizer"},
        {misshaped, false, NULL, CLATTN_ERR_FORMAT, "'lin.bias' has shape [19, 1]"},
        {missing, false, NULL, CLATTN_ERR_FORMAT, "'scale' is missing"},
        {good, true, sgd, CLATTN_ERR_FORMAT, "'adam'"},
        {tmp_path("nonexistent.safetensors"), false, NULL, CLATTN_ERR_IO, "nonexistent"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        clattn_optimizer *o = cases[i].with_opt ? (cases[i].o ? cases[i].o : opt) : NULL;
        CHECK_STATUS(clattn_checkpoint_load(cases[i].path, n_fparams, m.refs, o), cases[i].want);
        CHECK_MSG(cases[i].needle);
    }
    CHECK_OK(clattn_checkpoint_load(only, n_fparams, m.refs, NULL)); /* params alone: fine */

    /* The optimiser state tensors: each missing one is named. Written
     * with the state of the good file minus one tensor, plus metadata. */
    clattn_weights *gw = NULL;
    CHECK_OK(clattn_weights_open(good, &gw));
    int32_t n_meta = clattn_weights_metadata_count(gw);
    const char *mk[32], *mv[32];
    for (int32_t i = 0; i < n_meta && i < 32; i++)
        CHECK_OK(clattn_weights_metadata_at(gw, i, &mk[i], &mv[i]));
    const char *state_missing = tmp_path("state_missing.safetensors");
    {
        /* params + exp_avg of every parameter, no exp_avg_sq of "scale" */
        const char *nn[3 * PARAMS_MAX];
        const clattn_tensor *tt[3 * PARAMS_MAX];
        char bufs[3 * PARAMS_MAX][96];
        int32_t k = 0;
        for (int32_t i = 0; i < n_fparams; i++) {
            nn[k] = fparams[i].name;
            tt[k++] = m.value[i];
            snprintf(bufs[k], sizeof bufs[k], "optimizer.%.63s.exp_avg", fparams[i].name);
            nn[k] = bufs[k];
            tt[k++] = m.value[i];
            if (i + 1 < n_fparams) {
                snprintf(bufs[k], sizeof bufs[k], "optimizer.%.63s.exp_avg_sq", fparams[i].name);
                nn[k] = bufs[k];
                tt[k++] = m.value[i];
            }
        }
        CHECK_OK(clattn_weights_write(state_missing, k, nn, tt, mk, mv, n_meta));
        CHECK_STATUS(clattn_checkpoint_load(state_missing, n_fparams, m.refs, opt),
                     CLATTN_ERR_FORMAT);
        CHECK_MSG("'optimizer.scale.exp_avg_sq' is missing");
        /* Bad step counts. */
        static const char *bad_steps[] = {"-3", "12x", "", "99999999999999999999", " 5"};
        int32_t step_idx = -1;
        for (int32_t i = 0; i < n_meta; i++)
            if (strcmp(mk[i], "clattn.step") == 0)
                step_idx = i;
        CHECK(step_idx >= 0, "no clattn.step in a saved checkpoint");
        for (size_t b = 0; step_idx >= 0 && b < sizeof bad_steps / sizeof *bad_steps; b++) {
            const char *saved = mv[step_idx];
            mv[step_idx] = bad_steps[b];
            const char *bad_step = tmp_path("bad_step.safetensors");
            clattn_status st = clattn_weights_write(bad_step, n_fparams, names, ts, mk, mv, n_meta);
            CHECK_OK(st);
            /* The step is checked before the state tensors, which this
             * file does not have. */
            CHECK_STATUS(clattn_checkpoint_load(bad_step, n_fparams, m.refs, opt),
                         CLATTN_ERR_FORMAT);
            CHECK_MSG("clattn.step");
            mv[step_idx] = saved;
        }
        /* No step count at all. */
        const char *mk2[32], *mv2[32];
        int32_t n2 = 0;
        for (int32_t i = 0; i < n_meta; i++)
            if (i != step_idx) {
                mk2[n2] = mk[i];
                mv2[n2++] = mv[i];
            }
        const char *no_step = tmp_path("no_step.safetensors");
        CHECK_OK(clattn_weights_write(no_step, n_fparams, names, ts, mk2, mv2, n2));
        CHECK_STATUS(clattn_checkpoint_load(no_step, n_fparams, m.refs, opt), CLATTN_ERR_FORMAT);
        CHECK_MSG("clattn.step");
    }
    clattn_weights_close(gw);

    /* Raw files: an integer tensor; truncated; not safetensors at all. */
    {
        int32_t ints[1] = {7};
        const char *int_file = tmp_path("int.safetensors");
        char header[1024];
        size_t off = 0;
        int len = snprintf(header, sizeof header, "{");
        size_t total_bytes = 0;
        for (int32_t i = 0; i < n_fparams; i++)
            total_bytes += fparams[i].numel * 4;
        unsigned char *data = calloc(1, total_bytes);
        for (int32_t i = 0; i < n_fparams; i++) {
            size_t bytes = fparams[i].numel * 4;
            char sh[64] = "";
            for (int32_t d = 0; d < fparams[i].ndim; d++)
                snprintf(sh + strlen(sh), sizeof sh - strlen(sh), "%s%lld", d ? "," : "",
                         (long long)fparams[i].shape[d]);
            bool is_int = strcmp(fparams[i].name, "scale") == 0;
            len += snprintf(header + len, sizeof header - (size_t)len,
                            "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                            i ? "," : "", fparams[i].name, is_int ? "I32" : "F32", sh, off,
                            off + bytes);
            if (is_int)
                memcpy(data + off, ints, 4);
            off += bytes;
        }
        snprintf(header + len, sizeof header - (size_t)len, "}");
        write_raw(int_file, header, data, total_bytes);
        free(data);
        CHECK_STATUS(clattn_checkpoint_load(int_file, n_fparams, m.refs, NULL),
                     CLATTN_ERR_UNSUPPORTED);
        CHECK_MSG("I32");
    }
    char *text = NULL;
    {
        FILE *f = fopen(good, "rb");
        long size = -1;
        if (f && fseek(f, 0, SEEK_END) == 0)
            size = ftell(f);
        if (f && size > 16 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)size))) {
            CHECK(fread(text, 1, (size_t)size, f) == (size_t)size, "read %s", good);
            const char *cut = tmp_path("truncated.safetensors");
            FILE *o = fopen(cut, "wb");
            CHECK(o && fwrite(text, 1, (size_t)size - 5, o) == (size_t)size - 5 && fclose(o) == 0,
                  "write %s", cut);
            CHECK_STATUS(clattn_checkpoint_load(cut, n_fparams, m.refs, opt), CLATTN_ERR_FORMAT);
            CHECK_MSG("truncated");
        }
        if (f)
            fclose(f);
        free(text);
    }
    const char *garbage = tmp_path("garbage.safetensors");
    test_write_text(garbage, "hello, this is not a safetensors file");
    CHECK_STATUS(clattn_checkpoint_load(garbage, n_fparams, m.refs, opt), CLATTN_ERR_FORMAT);

    /* None of the failures above changed a value or the step count. */
    float *after = model_values(&m, &total);
    CHECK(memcmp(before, after, total * sizeof *after) == 0, "a failed load changed parameters");
    CHECK(clattn_optimizer_steps(opt) == 1, "a failed load changed the step count");
    free(before);
    free(after);

    /* Save errors. */
    CHECK_STATUS(clattn_checkpoint_save("/nonexistent-dir/x.safetensors", n_fparams, m.refs, opt),
                 CLATTN_ERR_IO);
    CHECK_MSG("nonexistent-dir");
    CHECK_STATUS(clattn_checkpoint_save(NULL, n_fparams, m.refs, opt), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_checkpoint_load(NULL, n_fparams, m.refs, opt), CLATTN_ERR_INVALID_ARG);
    clattn_param_ref dup[2] = {m.refs[0], m.refs[1]};
    dup[1].name = dup[0].name;
    CHECK_STATUS(clattn_checkpoint_save(tmp_path("dup.safetensors"), 2, dup, NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("twice");
    dup[1].value = NULL;
    dup[1].name = "x";
    CHECK_STATUS(clattn_checkpoint_save(tmp_path("dup.safetensors"), 2, dup, NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_checkpoint_save(tmp_path("neg.safetensors"), -1, m.refs, NULL),
                 CLATTN_ERR_INVALID_ARG);

    clattn_tensor_destroy(wrong);
    clattn_optimizer_destroy(opt);
    clattn_optimizer_destroy(sgd);
    model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_optim FIXTURE_DIR\n");
        return 2;
    }
    fixdir = argv[1];
    const char *s = getenv("CLATTN_TEST_SMALL");
    small = s && *s && strcmp(s, "0") != 0;
    clattn_ctx *ctx = test_ctx();
    test_seed(23);
    test_losses(ctx);
    if (load_fixtures()) {
        test_fixture_cases(ctx);
        test_clip(ctx);
        test_optimizer_args(ctx);
        test_schedule(ctx);
        if (mkdtemp(tmpdir)) {
            test_roundtrip(ctx);
            test_resume_from_pytorch(ctx);
            test_pytorch_state_dict(ctx);
            test_bad_checkpoints(ctx);
            char cmd[512];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
            CHECK(system(cmd) == 0, "cleanup");
        } else {
            CHECK(false, "mkdtemp %s", tmpdir);
        }
    }
    clattn_weights_close(grads_file);
    json_decref(cases_json);
    CHECK_OK(clattn_ctx_finish(ctx));
    clattn_ctx_destroy(ctx);
    return test_summary("test_optim");
}
