/* test_optimizers.c - the optimisers against PyTorch: the fixtures of
 * tests/fixtures/make_optim_fixtures.py (SGD plain / momentum / nesterov /
 * weight decay / dampening, Adam, AdamW, with clipping and the warm-up +
 * cosine schedule in some cases), every parameter compared after each of
 * 10 steps, with lr(), steps() and last_grad_norm(); clip_grad_norm
 * against clip_grad_norm_ and a double C loop; argument checks; the
 * schedule's edges.
 *
 * Tolerances (u = 2^-24, the float32 unit roundoff):
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
 * CLATTN_TEST_SMALL=1 shrinks the large clipping tensor (for oclgrind).
 *
 * Usage: test_optimizers FIXTURE_DIR (tests/fixtures/optim) */
#include "optim_fixtures.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool small = false; /* CLATTN_TEST_SMALL=1: smaller tensors (oclgrind) */

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
        float *got = test_fvec(n), *ref_f = test_fvec(n);
        double *ref = test_dvec(n);
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
        host[i] = test_fvec(n);
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
        float *got = test_fvec(n);
        double *r = test_dvec(n);
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
    float *before = test_fvec(n0), *after = test_fvec(n0), bad_value = INFINITY;
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_optimizers FIXTURE_DIR\n");
        return 2;
    }
    fixdir = argv[1];
    const char *s = getenv("CLATTN_TEST_SMALL");
    small = s && *s && strcmp(s, "0") != 0;
    clattn_ctx *ctx = test_ctx();
    test_seed(23);
    if (load_fixtures()) {
        test_fixture_cases(ctx);
        test_clip(ctx);
        test_optimizer_args(ctx);
        test_schedule(ctx);
    }
    close_fixtures();
    CHECK_OK(clattn_ctx_finish(ctx));
    clattn_ctx_destroy(ctx);
    return test_summary("test_optimizers");
}
