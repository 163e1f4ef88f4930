/* optimizer.c - SGD, Adam and AdamW as PyTorch's torch.optim does them, a
 * warm-up + cosine learning-rate schedule, and global gradient-norm
 * clipping (torch.nn.utils.clip_grad_norm_). Kernels: cl/train/optimizer.cl
 * (updates), cl/train/loss.cl (the norm's deterministic sums). */
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const clattn__program_spec clattn__optimizer_program = {{"train/optimizer.cl", NULL}, NULL};

#define PI 3.14159265358979323846

/* ======================================================================== */
/* Parameters                                                                */
/* ======================================================================== */

clattn_optimizer_params clattn_optimizer_params_default(clattn_optimizer_kind kind)
{
    clattn_optimizer_params p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.lr = 1e-3f;
    p.beta1 = 0.9f;
    p.beta2 = 0.999f;
    p.eps = 1e-8f;
    p.weight_decay = kind == CLATTN_OPTIM_ADAMW ? 1e-2f : 0.0f;
    return p;
}

const char *clattn__optimizer_kind_name(clattn_optimizer_kind kind)
{
    switch (kind) {
    case CLATTN_OPTIM_SGD: return "sgd";
    case CLATTN_OPTIM_ADAM: return "adam";
    case CLATTN_OPTIM_ADAMW: return "adamw";
    }
    return "unknown";
}

const char *clattn__optimizer_state_name(const clattn_optimizer *opt, int slot)
{
    if (opt->p.kind == CLATTN_OPTIM_SGD)
        return slot == 1 && opt->p.momentum != 0.0f ? "momentum_buffer" : NULL;
    return slot == 1 ? "exp_avg" : "exp_avg_sq";
}

/* The checks PyTorch's constructors make, plus finiteness; the message
 * names the field. Fields the kind does not use are not checked. */
static clattn_status check_params(clattn_ctx *ctx, const clattn_optimizer_params *p)
{
    const char *fn = "optimizer_create";
#define BAD(field, value, rule)                                                        \
    clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s = %g %s", fn, field, (double)(value), \
                 rule)
    if (p->kind != CLATTN_OPTIM_SGD && p->kind != CLATTN_OPTIM_ADAM &&
        p->kind != CLATTN_OPTIM_ADAMW)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: kind = %d is not an optimiser kind",
                            fn, (int)p->kind);
    if (!isfinite(p->lr) || p->lr <= 0.0f)
        return BAD("lr", p->lr, "must be finite and > 0");
    if (!isfinite(p->weight_decay) || p->weight_decay < 0.0f)
        return BAD("weight_decay", p->weight_decay, "must be finite and >= 0");
    if (p->kind == CLATTN_OPTIM_SGD) {
        if (!isfinite(p->momentum) || p->momentum < 0.0f)
            return BAD("momentum", p->momentum, "must be finite and >= 0");
        if (!isfinite(p->dampening))
            return BAD("dampening", p->dampening, "must be finite");
        if (p->nesterov && (p->momentum <= 0.0f || p->dampening != 0.0f))
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: nesterov needs momentum > 0 and dampening 0 (momentum = "
                                "%g, dampening = %g)",
                                fn, (double)p->momentum, (double)p->dampening);
    } else {
        if (!(p->beta1 >= 0.0f && p->beta1 < 1.0f))
            return BAD("beta1", p->beta1, "must be in [0, 1)");
        if (!(p->beta2 >= 0.0f && p->beta2 < 1.0f))
            return BAD("beta2", p->beta2, "must be in [0, 1)");
        if (!isfinite(p->eps) || p->eps <= 0.0f)
            return BAD("eps", p->eps, "must be finite and > 0");
    }
    if (!isfinite(p->max_grad_norm) || p->max_grad_norm < 0.0f)
        return BAD("max_grad_norm", p->max_grad_norm, "must be finite and >= 0 (0: no clipping)");
    if (p->warmup_steps < 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: warmup_steps = %lld must be >= 0",
                            fn, (long long)p->warmup_steps);
    if (p->total_steps < 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: total_steps = %lld must be >= 0 (0: no decay)", fn,
                            (long long)p->total_steps);
    if (!isfinite(p->min_lr) || p->min_lr < 0.0f)
        return BAD("min_lr", p->min_lr, "must be finite and >= 0");
#undef BAD
    return CLATTN_OK;
}

/* The learning rate of step t (steps taken before it), in double as
 * Python computes LambdaLR's base_lr * factor. */
static double scheduled_lr(const clattn_optimizer_params *p, int64_t t)
{
    double lr = p->lr;
    if (t < p->warmup_steps)
        return lr * (double)(t + 1) / (double)p->warmup_steps;
    if (p->total_steps > 0) {
        double span = (double)(p->total_steps - p->warmup_steps);
        double u = (double)(t - p->warmup_steps) / (span > 1.0 ? span : 1.0);
        if (u > 1.0)
            u = 1.0;
        double min_lr = p->min_lr;
        return min_lr + (lr - min_lr) * (1.0 + cos(PI * u)) / 2.0;
    }
    return lr;
}

/* ======================================================================== */
/* Create and destroy                                                        */
/* ======================================================================== */

/* Checks params[0..count) for an optimiser or for clipping: names (when
 * need_names), tensors of ctx, value and grad of one shape (when
 * need_values), and no tensor used twice. */
static clattn_status check_refs(clattn_ctx *ctx, const char *fn, int32_t count,
                                const clattn_param_ref *params, bool need_values)
{
    if (count < 0 || (count > 0 && !params))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: params must not be NULL and count (%d) must be >= 0", fn,
                            (int)count);
    for (int32_t i = 0; i < count; i++) {
        const clattn_param_ref *r = &params[i];
        char what[64];
        snprintf(what, sizeof what, "params[%d].grad", (int)i);
        clattn_status st = clattn__check_tensor(ctx, fn, what, r->grad);
        if (st != CLATTN_OK)
            return st;
        if (!need_values)
            continue;
        if (!r->name || !r->name[0])
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: params[%d].name is NULL or empty",
                                fn, (int)i);
        snprintf(what, sizeof what, "params[%d].value ('%s')", (int)i, r->name);
        st = clattn__check_tensor(ctx, fn, what, r->value);
        if (st != CLATTN_OK)
            return st;
        if (!clattn__same_shape(r->value, r->grad)) {
            char sv[96], sg[96];
            clattn__shape_str(r->value->shape, r->value->ndim, sv, sizeof sv);
            clattn__shape_str(r->grad->shape, r->grad->ndim, sg, sizeof sg);
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: parameter '%s': value %s and grad %s differ in shape", fn,
                                r->name, sv, sg);
        }
    }
    /* Quadratic, but optimisers have hundreds of tensors, not millions. */
    for (int32_t i = 0; i < count; i++) {
        for (int32_t j = 0; j < i; j++) {
            const clattn_param_ref *a = &params[i], *b = &params[j];
            if (a->grad->mem == b->grad->mem ||
                (need_values && (a->value->mem == b->value->mem || a->value->mem == b->grad->mem ||
                                 a->grad->mem == b->value->mem)))
                return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                    "%s: params[%d] and params[%d] share a tensor", fn, (int)j,
                                    (int)i);
            if (need_values && strcmp(a->name, b->name) == 0)
                return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                    "%s: parameter name '%s' appears twice (params[%d] and [%d])",
                                    fn, a->name, (int)j, (int)i);
        }
        if (need_values && params[i].value->mem == params[i].grad->mem)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: parameter '%s': value and grad are the same tensor", fn,
                                params[i].name);
    }
    return CLATTN_OK;
}

void clattn_optimizer_destroy(clattn_optimizer *opt)
{
    if (!opt)
        return;
    for (int32_t i = 0; i < opt->count; i++) {
        if (opt->names)
            free(opt->names[i]);
        if (opt->state1)
            clattn_tensor_destroy(opt->state1[i]);
        if (opt->state2)
            clattn_tensor_destroy(opt->state2[i]);
    }
    free(opt->names);
    free(opt->values);
    free(opt->grads);
    free(opt->state1);
    free(opt->state2);
    clattn__buffer_release(&opt->norm_scratch);
    free(opt);
}

/* A zeroed state tensor of the parameter's shape. */
static clattn_status zero_state(clattn_ctx *ctx, const clattn_tensor *like, clattn_tensor **out)
{
    clattn_status st = clattn_tensor_create(ctx, like->ndim, like->shape, out);
    if (st == CLATTN_OK)
        st = clattn_tensor_fill(*out, 0.0f);
    return st;
}

clattn_status clattn_optimizer_create(clattn_ctx *ctx, const clattn_optimizer_params *p,
                                      int32_t count, const clattn_param_ref *params,
                                      clattn_optimizer **out)
{
    clattn__clear_thread_error();
    if (!ctx || !p || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "optimizer_create: ctx, p and out must not be NULL");
    *out = NULL;
    clattn_status st = check_params(ctx, p);
    if (st == CLATTN_OK && count < 1)
        st = clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                          "optimizer_create: count = %d; an optimiser needs parameters",
                          (int)count);
    if (st == CLATTN_OK)
        st = check_refs(ctx, "optimizer_create", count, params, true);
    if (st != CLATTN_OK)
        return st;

    clattn_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    opt->ctx = ctx;
    opt->p = *p;
    opt->last_grad_norm = -1.0f;
    size_t n = (size_t)count;
    opt->names = calloc(n, sizeof *opt->names);
    opt->values = calloc(n, sizeof *opt->values);
    opt->grads = calloc(n, sizeof *opt->grads);
    opt->state1 = calloc(n, sizeof *opt->state1);
    opt->state2 = calloc(n, sizeof *opt->state2);
    if (!opt->names || !opt->values || !opt->grads || !opt->state1 || !opt->state2) {
        clattn_optimizer_destroy(opt);
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    opt->count = count; /* from here destroy frees what is set */
    for (int32_t i = 0; i < count && st == CLATTN_OK; i++) {
        opt->values[i] = params[i].value;
        opt->grads[i] = params[i].grad;
        opt->names[i] = clattn__strdup(params[i].name);
        if (!opt->names[i])
            st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        if (st == CLATTN_OK && clattn__optimizer_state_name(opt, 1))
            st = zero_state(ctx, params[i].value, &opt->state1[i]);
        if (st == CLATTN_OK && clattn__optimizer_state_name(opt, 2))
            st = zero_state(ctx, params[i].value, &opt->state2[i]);
    }
    if (st != CLATTN_OK) {
        clattn_optimizer_destroy(opt);
        return st;
    }
    *out = opt;
    return CLATTN_OK;
}

/* ======================================================================== */
/* Steps                                                                     */
/* ======================================================================== */

/* The kernels of cl/train/optimizer.cl. */
static const clattn__kernel_spec SCALE_F32 = {&clattn__optimizer_program, "scale_f32"};
static const clattn__kernel_spec SGD_STEP = {&clattn__optimizer_program, "sgd_step"};
static const clattn__kernel_spec ADAM_STEP = {&clattn__optimizer_program, "adam_step"};

clattn_status clattn__scale(clattn_ctx *ctx, clattn_tensor *x, float s)
{
    cl_kernel k;
    cl_ulong n = x->numel;
    clattn_status st = clattn__kernel(ctx, &SCALE_F32, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "scale_f32", CLATTN_KARG(x->mem), CLATTN_KARG(n),
                             CLATTN_KARG(s));
    if (st != CLATTN_OK)
        return st;
    size_t global = x->numel, local = 64;
    return clattn__enqueue(ctx, k, 1, &global, &local, "scale_f32");
}

/* The global L2 norm of grads[0..count) (blocking). Non-finite norms are
 * returned as they are; the callers refuse them. */
static clattn_status global_norm(clattn_ctx *ctx, int32_t count, const clattn_tensor *const *grads,
                                 clattn__buffer *scratch, float *norm)
{
    float sumsq;
    clattn_status st = clattn__grad_sumsq(ctx, count, grads, scratch, &sumsq);
    if (st == CLATTN_OK)
        *norm = (float)sqrt((double)sumsq);
    return st;
}

/* clip_grad_norm_'s factor, computed as PyTorch does in float32:
 * clip_coef = max_norm / (total_norm + 1e-6), where Tensor.__rtruediv__
 * is reciprocal() * max_norm; applied only when it is below 1 (PyTorch
 * multiplies by min(coef, 1), and a product with 1 is exact). */
static float clip_factor(float norm, float max_norm)
{
    float coef = (1.0f / (norm + 1e-6f)) * max_norm;
    return coef < 1.0f ? coef : 1.0f;
}

static clattn_status sgd_update(clattn_optimizer *opt, int32_t i, float gscale, double lr)
{
    clattn_ctx *ctx = opt->ctx;
    cl_kernel k;
    clattn_status st = clattn__kernel(ctx, &SGD_STEP, &k);
    if (st != CLATTN_OK)
        return st;
    const clattn_optimizer_params *p = &opt->p;
    cl_mem buf = opt->state1[i] ? opt->state1[i]->mem : opt->grads[i]->mem; /* unused without */
    cl_ulong n = opt->values[i]->numel;
    cl_float flr = (float)lr, wd = p->weight_decay, momentum = p->momentum;
    cl_float one_minus_damp = (float)(1.0 - (double)p->dampening);
    cl_int flags = (p->momentum != 0.0f ? 1 : 0) | (opt->steps == 0 ? 2 : 0) |
                   (p->nesterov ? 4 : 0);
    st = CLATTN_SET_ARGS(ctx, k, "sgd_step", CLATTN_KARG(opt->values[i]->mem),
                         CLATTN_KARG(opt->grads[i]->mem), CLATTN_KARG(buf), CLATTN_KARG(n),
                         CLATTN_KARG(gscale), CLATTN_KARG(flr), CLATTN_KARG(wd),
                         CLATTN_KARG(momentum), CLATTN_KARG(one_minus_damp), CLATTN_KARG(flags));
    if (st != CLATTN_OK)
        return st;
    size_t global = (size_t)n, local = 64;
    return clattn__enqueue(ctx, k, 1, &global, &local, "sgd_step");
}

static clattn_status adam_update(clattn_optimizer *opt, int32_t i, float gscale, double lr)
{
    clattn_ctx *ctx = opt->ctx;
    cl_kernel k;
    clattn_status st = clattn__kernel(ctx, &ADAM_STEP, &k);
    if (st != CLATTN_OK)
        return st;
    const clattn_optimizer_params *p = &opt->p;
    /* The scalars as torch/optim/adam.py computes them (Python floats:
     * double), then rounded to float where ATen takes them. */
    double t = (double)(opt->steps + 1), beta1 = p->beta1, beta2 = p->beta2;
    double wd = p->weight_decay;
    double bc1 = 1.0 - pow(beta1, t), bc2 = 1.0 - pow(beta2, t);
    double step_size = lr / bc1;
    bool decoupled = p->kind == CLATTN_OPTIM_ADAMW;
    cl_float decay = decoupled ? (float)(1.0 - lr * wd) : 1.0f;
    cl_float wd_l2 = decoupled ? 0.0f : (float)wd;
    cl_float w1 = (float)(1.0 - beta1), fb2 = p->beta2, w2 = (float)(1.0 - beta2);
    cl_float bc2_sqrt = (float)pow(bc2, 0.5), eps = p->eps, neg_step = (float)-step_size;
    cl_ulong n = opt->values[i]->numel;
    st = CLATTN_SET_ARGS(ctx, k, "adam_step", CLATTN_KARG(opt->values[i]->mem),
                         CLATTN_KARG(opt->grads[i]->mem), CLATTN_KARG(opt->state1[i]->mem),
                         CLATTN_KARG(opt->state2[i]->mem), CLATTN_KARG(n), CLATTN_KARG(gscale),
                         CLATTN_KARG(decay), CLATTN_KARG(wd_l2), CLATTN_KARG(w1),
                         CLATTN_KARG(fb2), CLATTN_KARG(w2), CLATTN_KARG(bc2_sqrt),
                         CLATTN_KARG(eps), CLATTN_KARG(neg_step));
    if (st != CLATTN_OK)
        return st;
    size_t global = (size_t)n, local = 64;
    return clattn__enqueue(ctx, k, 1, &global, &local, "adam_step");
}

clattn_status clattn_optimizer_step(clattn_optimizer *opt)
{
    clattn__clear_thread_error();
    if (!opt)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "optimizer_step: opt is NULL");
    clattn_ctx *ctx = opt->ctx;
    float gscale = 1.0f;
    opt->last_grad_norm = -1.0f;
    if (opt->p.max_grad_norm > 0.0f) {
        float norm;
        clattn_status st = global_norm(ctx, opt->count, (const clattn_tensor *const *)opt->grads,
                                       &opt->norm_scratch, &norm);
        if (st != CLATTN_OK)
            return st;
        opt->last_grad_norm = norm;
        if (!isfinite(norm))
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "optimizer_step: the gradient norm is %g; no parameter was "
                                "updated (step %lld)",
                                (double)norm, (long long)opt->steps);
        gscale = clip_factor(norm, opt->p.max_grad_norm);
    }
    double lr = scheduled_lr(&opt->p, opt->steps);
    for (int32_t i = 0; i < opt->count; i++) {
        clattn_status st = opt->p.kind == CLATTN_OPTIM_SGD ? sgd_update(opt, i, gscale, lr)
                                                           : adam_update(opt, i, gscale, lr);
        if (st != CLATTN_OK)
            return st; /* a device failure: the parameters are in an unknown state */
    }
    opt->steps++;
    return CLATTN_OK;
}

clattn_status clattn_optimizer_zero_grad(clattn_optimizer *opt)
{
    clattn__clear_thread_error();
    if (!opt)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "optimizer_zero_grad: opt is NULL");
    for (int32_t i = 0; i < opt->count; i++) {
        clattn_status st = clattn_tensor_fill(opt->grads[i], 0.0f);
        if (st != CLATTN_OK)
            return st;
    }
    return CLATTN_OK;
}

int64_t clattn_optimizer_steps(const clattn_optimizer *opt) { return opt ? opt->steps : 0; }

float clattn_optimizer_lr(const clattn_optimizer *opt)
{
    return opt ? (float)scheduled_lr(&opt->p, opt->steps) : 0.0f;
}

float clattn_optimizer_last_grad_norm(const clattn_optimizer *opt)
{
    return opt ? opt->last_grad_norm : -1.0f;
}

/* ======================================================================== */
/* Clipping on its own                                                       */
/* ======================================================================== */

clattn_status clattn_clip_grad_norm(clattn_ctx *ctx, int32_t count,
                                    const clattn_param_ref *params, float max_norm, float *norm)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "clip_grad_norm: ctx is NULL");
    if (!isfinite(max_norm) || max_norm < 0.0f)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "clip_grad_norm: max_norm = %g must be finite and >= 0 (0: only "
                            "measure)",
                            (double)max_norm);
    clattn_status st = check_refs(ctx, "clip_grad_norm", count, params, false);
    if (st != CLATTN_OK)
        return st;
    const clattn_tensor **grads = malloc((size_t)(count ? count : 1) * sizeof *grads);
    if (!grads)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int32_t i = 0; i < count; i++)
        grads[i] = params[i].grad;
    clattn__buffer scratch = {NULL, 0};
    float n = 0.0f;
    st = global_norm(ctx, count, grads, &scratch, &n);
    free(grads);
    clattn__buffer_release(&scratch);
    if (st != CLATTN_OK)
        return st;
    if (!isfinite(n))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "clip_grad_norm: the gradient norm is %g; nothing was scaled",
                            (double)n);
    float coef = max_norm > 0.0f ? clip_factor(n, max_norm) : 1.0f;
    for (int32_t i = 0; i < count && coef < 1.0f; i++) {
        st = clattn__scale(ctx, params[i].grad, coef);
        if (st != CLATTN_OK)
            return st;
    }
    if (norm)
        *norm = n;
    return CLATTN_OK;
}
