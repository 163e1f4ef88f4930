/* checkpoint.c - parameters and optimiser state to and from a safetensors
 * file (clattn_weights_write / clattn_weights_open do the format).
 *
 * Layout: the parameters under their own names (a state_dict PyTorch's
 * load_state_dict takes), the optimiser's state as
 * "optimizer.<name>.exp_avg", ".exp_avg_sq" (Adam, AdamW) or
 * ".momentum_buffer" (SGD with momentum), and in "__metadata__":
 *   format            "pt"
 *   clattn.optimizer  "sgd", "adam" or "adamw"
 *   clattn.step       steps taken, a decimal integer
 *   clattn.<field>    every clattn_optimizer_params field ("%.9g" floats,
 *                     which read back to the same float; "true"/"false")
 * Loading checks everything in the file before it writes anything, so a
 * malformed file leaves the parameters and the optimiser as they were. */
#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_MAX 16

/* The context messages go to: the optimiser's, else the first tensor's. */
static clattn_ctx *some_ctx(int32_t count, const clattn_param_ref *params,
                            const clattn_optimizer *opt)
{
    if (opt)
        return opt->ctx;
    for (int32_t i = 0; params && i < count; i++)
        if (params[i].value)
            return params[i].value->ctx;
    return NULL;
}

static clattn_status check_args(clattn_ctx *ctx, const char *fn, const char *path, int32_t count,
                                const clattn_param_ref *params)
{
    if (!path)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: path is NULL", fn);
    if (count < 0 || (count > 0 && !params))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: params must not be NULL and count (%d) must be >= 0", fn,
                            (int)count);
    for (int32_t i = 0; i < count; i++) {
        if (!params[i].name || !params[i].name[0])
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: params[%d].name is NULL or empty",
                                fn, (int)i);
        if (!params[i].value)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: parameter '%s': value is NULL",
                                fn, params[i].name);
    }
    return CLATTN_OK;
}

/* ======================================================================== */
/* Save                                                                      */
/* ======================================================================== */

/* The metadata entries for opt into keys/values (values malloc'd). */
static int32_t optimizer_metadata(const clattn_optimizer *opt, const char **keys, char **values)
{
    const clattn_optimizer_params *p = &opt->p;
    int32_t n = 0;
#define META(key, ...) (keys[n] = (key), values[n++] = clattn__aprintf(__VA_ARGS__))
    META("format", "pt");
    META("clattn.optimizer", "%s", clattn__optimizer_kind_name(p->kind));
    META("clattn.step", "%lld", (long long)opt->steps);
    META("clattn.lr", "%.9g", (double)p->lr);
    META("clattn.weight_decay", "%.9g", (double)p->weight_decay);
    META("clattn.momentum", "%.9g", (double)p->momentum);
    META("clattn.dampening", "%.9g", (double)p->dampening);
    META("clattn.nesterov", "%s", p->nesterov ? "true" : "false");
    META("clattn.beta1", "%.9g", (double)p->beta1);
    META("clattn.beta2", "%.9g", (double)p->beta2);
    META("clattn.eps", "%.9g", (double)p->eps);
    META("clattn.max_grad_norm", "%.9g", (double)p->max_grad_norm);
    META("clattn.warmup_steps", "%lld", (long long)p->warmup_steps);
    META("clattn.total_steps", "%lld", (long long)p->total_steps);
    META("clattn.min_lr", "%.9g", (double)p->min_lr);
#undef META
    return n;
}

clattn_status clattn_checkpoint_save(const char *path, int32_t count,
                                     const clattn_param_ref *params,
                                     const clattn_optimizer *opt)
{
    clattn__clear_thread_error();
    clattn_ctx *ctx = some_ctx(count, params, opt);
    clattn_status st = check_args(ctx, "checkpoint_save", path, count, params);
    if (st != CLATTN_OK)
        return st;
    int32_t slots = 0;
    if (opt)
        slots = (clattn__optimizer_state_name(opt, 1) != NULL) +
                (clattn__optimizer_state_name(opt, 2) != NULL);
    int32_t total = count + slots * (opt ? opt->count : 0);
    const char **names = calloc((size_t)(total ? total : 1), sizeof *names);
    char **owned = calloc((size_t)(total ? total : 1), sizeof *owned);
    const clattn_tensor **tensors = calloc((size_t)(total ? total : 1), sizeof *tensors);
    const char *meta_keys[META_MAX];
    char *meta_values[META_MAX] = {NULL};
    int32_t meta_count = 0;
    if (!names || !owned || !tensors)
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    int32_t n = 0;
    for (int32_t i = 0; st == CLATTN_OK && i < count; i++, n++) {
        names[n] = params[i].name;
        tensors[n] = params[i].value;
    }
    for (int32_t i = 0; st == CLATTN_OK && opt && i < opt->count; i++) {
        for (int slot = 1; slot <= 2 && st == CLATTN_OK; slot++) {
            const char *state = clattn__optimizer_state_name(opt, slot);
            if (!state)
                continue;
            owned[n] = clattn__aprintf("optimizer.%s.%s", opt->names[i], state);
            names[n] = owned[n];
            tensors[n] = slot == 1 ? opt->state1[i] : opt->state2[i];
            if (!owned[n])
                st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
            n++;
        }
    }
    if (st == CLATTN_OK && opt) {
        meta_count = optimizer_metadata(opt, meta_keys, meta_values);
        for (int32_t i = 0; i < meta_count; i++)
            if (!meta_values[i])
                st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    if (st == CLATTN_OK) {
        st = clattn_weights_write(path, n, names, tensors, meta_keys,
                                  (const char *const *)meta_values, meta_count);
        if (st != CLATTN_OK && ctx) /* the writer has no context: copy its message */
            clattn__fail(ctx, st, "checkpoint_save: %s", clattn_last_error());
    }
    for (int32_t i = 0; owned && i < total; i++)
        free(owned[i]);
    for (int32_t i = 0; i < meta_count; i++)
        free(meta_values[i]);
    free(names);
    free(owned);
    free(tensors);
    return st;
}

/* ======================================================================== */
/* Load                                                                      */
/* ======================================================================== */

/* Checks that the file holds tensor name, convertible to float32, with
 * the shape of t, the value of parameter param (named in messages). */
static clattn_status check_tensor_in_file(clattn_ctx *ctx, const clattn_weights *w,
                                          const char *name, const clattn_tensor *t,
                                          const char *param)
{
    char sp[128];
    clattn__shape_str(t->shape, t->ndim, sp, sizeof sp);
    clattn_weight_info info;
    if (clattn_weights_find(w, name, &info) != CLATTN_OK)
        return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s' is missing (parameter '%s' %s)", w->path, name,
                            param, sp);
    char sf[256];
    clattn__shape_str(info.shape, info.ndim, sf, sizeof sf);
    bool same = info.ndim == t->ndim;
    for (int32_t d = 0; same && d < t->ndim; d++)
        same = info.shape[d] == t->shape[d];
    if (!same)
        return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s' has shape %s; parameter '%s' is %s", w->path, name,
                            sf, param, sp);
    if (!clattn__dtype_converts(info.dtype))
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: tensor '%s' is %s; clattn converts only F32, F16, BF16 and F64",
                            w->path, name, clattn_dtype_name(info.dtype));
    return CLATTN_OK;
}

/* Parses a step count: decimal digits only, at most INT64_MAX. */
static bool parse_step(const char *s, int64_t *out)
{
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        unsigned d = (unsigned)(*c - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = (int64_t)v;
    return true;
}

/* Reads tensor name (checked before) into t through host. */
static clattn_status load_tensor(const clattn_weights *w, const char *name, clattn_tensor *t,
                                 float *host)
{
    clattn_status st = clattn_weights_read_f32(w, name, host, t->numel);
    return st == CLATTN_OK ? clattn_tensor_write(t, host) : st;
}

clattn_status clattn_checkpoint_load(const char *path, int32_t count,
                                     const clattn_param_ref *params, clattn_optimizer *opt)
{
    clattn__clear_thread_error();
    clattn_ctx *ctx = some_ctx(count, params, opt);
    clattn_status st = check_args(ctx, "checkpoint_load", path, count, params);
    if (st != CLATTN_OK)
        return st;
    clattn_weights *w = NULL;
    st = clattn_weights_open(path, &w);
    if (st != CLATTN_OK) {
        if (ctx) /* opening has no context: copy its message */
            clattn__fail(ctx, st, "checkpoint_load: %s", clattn_last_error());
        return st;
    }

    /* Everything is checked first, so a bad file changes nothing. */
    size_t max_numel = 0;
    for (int32_t i = 0; i < count && st == CLATTN_OK; i++) {
        st = check_tensor_in_file(ctx, w, params[i].name, params[i].value, params[i].name);
        if (params[i].value->numel > max_numel)
            max_numel = params[i].value->numel;
    }
    int64_t step = 0;
    char **state_names = NULL;
    int32_t n_state = 0;
    if (st == CLATTN_OK && opt) {
        const char *kind = clattn_weights_metadata(w, "clattn.optimizer");
        const char *want = clattn__optimizer_kind_name(opt->p.kind);
        const char *steps = clattn_weights_metadata(w, "clattn.step");
        if (!kind)
            st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                              "%s: no optimiser state (no 'clattn.optimizer' in the metadata)",
                              path);
        else if (strcmp(kind, want) != 0)
            st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                              "%s: 'clattn.optimizer' is '%s'; this optimiser is '%s'", path,
                              kind, want);
        else if (!steps)
            st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                              "%s: no step count (no 'clattn.step' in the metadata)", path);
        else if (!parse_step(steps, &step))
            st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                              "%s: 'clattn.step' is '%s', not an integer in 0 .. 2^63 - 1", path,
                              steps);
        state_names = calloc((size_t)opt->count * 2, sizeof *state_names);
        if (st == CLATTN_OK && !state_names)
            st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        for (int32_t i = 0; i < opt->count && st == CLATTN_OK; i++) {
            for (int slot = 1; slot <= 2 && st == CLATTN_OK; slot++) {
                const char *state = clattn__optimizer_state_name(opt, slot);
                if (!state)
                    continue;
                char *name = clattn__aprintf("optimizer.%s.%s", opt->names[i], state);
                state_names[2 * i + slot - 1] = name;
                if (!name) {
                    st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
                    break;
                }
                st = check_tensor_in_file(ctx, w, name, opt->values[i], opt->names[i]);
                n_state++;
            }
            if (opt->values[i]->numel > max_numel)
                max_numel = opt->values[i]->numel;
        }
    }

    float *host = NULL;
    if (st == CLATTN_OK && (count > 0 || n_state > 0)) {
        host = malloc(max_numel * sizeof *host);
        if (!host)
            st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                              "checkpoint_load: out of host memory for %zu floats", max_numel);
    }
    for (int32_t i = 0; i < count && st == CLATTN_OK; i++)
        st = load_tensor(w, params[i].name, params[i].value, host);
    for (int32_t i = 0; opt && state_names && i < opt->count && st == CLATTN_OK; i++) {
        if (state_names[2 * i])
            st = load_tensor(w, state_names[2 * i], opt->state1[i], host);
        if (st == CLATTN_OK && state_names[2 * i + 1])
            st = load_tensor(w, state_names[2 * i + 1], opt->state2[i], host);
    }
    if (st == CLATTN_OK && opt) {
        opt->steps = step;
        opt->last_grad_norm = -1.0f;
    }
    free(host);
    for (int32_t i = 0; state_names && i < 2 * opt->count; i++)
        free(state_names[i]);
    free(state_names);
    clattn_weights_close(w);
    return st;
}
