/* model.c - clattn_llama's parameters: the table in LlamaForCausalLM's
 * state_dict order, transformers' initialisation from a seed, loading a
 * Hugging Face folder, references for the optimiser and checkpoints, and
 * the gradients. */
#include "io/io.h"
#include "lm/lm.h"
#include "lm_train/lm_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clattn_status clattn__llama_check_shape(const clattn_llama *m, const char *what, const char *arg,
                                        const clattn_tensor *t, int32_t ndim,
                                        const int64_t *shape)
{
    clattn_status st = clattn__check_tensor(m->ctx, what, arg, t);
    if (st != CLATTN_OK)
        return st;
    if (t->ndim == ndim && memcmp(t->shape, shape, (size_t)ndim * sizeof *shape) == 0)
        return CLATTN_OK;
    char s1[96], s2[96];
    return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG, "%s: %s is %s, must be %s", what, arg,
                        clattn__shape_str(t->shape, t->ndim, s1, sizeof s1),
                        clattn__shape_str(shape, ndim, s2, sizeof s2));
}

/* Adds parameter "prefix + name" of the given shape (uninitialised: create
 * and load write every element). */
static clattn_tensor *add(clattn_llama *m, const char *prefix, const char *name, int64_t rows,
                          int64_t cols, clattn_status *st)
{
    char full[128];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[2] = {rows, cols};
    return clattn__params_add(m->ctx, &m->params, full, cols ? 2 : 1, shape, 0.0f, st);
}

clattn_status clattn__llama_alloc(clattn_llama *m)
{
    const clattn_llama_config *c = &m->cfg;
    int64_t E = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    int64_t q_rows = (int64_t)c->num_attention_heads * c->head_dim;
    int64_t kv_rows = (int64_t)c->num_key_value_heads * c->head_dim;
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers)
        return clattn__fail(m->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_status st = CLATTN_OK;
    m->embed = add(m, "", "model.embed_tokens.weight", V, E, &st);
    for (int32_t i = 0; i < c->num_hidden_layers; i++) {
        clattn__llama_layer *L = &m->layers[i];
        char p[64];
        snprintf(p, sizeof p, "model.layers.%d.", (int)i);
        L->in_norm = add(m, p, "input_layernorm.weight", E, 0, &st);
        L->wq = add(m, p, "self_attn.q_proj.weight", q_rows, E, &st);
        L->wk = add(m, p, "self_attn.k_proj.weight", kv_rows, E, &st);
        L->wv = add(m, p, "self_attn.v_proj.weight", kv_rows, E, &st);
        L->wo = add(m, p, "self_attn.o_proj.weight", E, q_rows, &st);
        L->post_norm = add(m, p, "post_attention_layernorm.weight", E, 0, &st);
        L->wgate = add(m, p, "mlp.gate_proj.weight", F, E, &st);
        L->wup = add(m, p, "mlp.up_proj.weight", F, E, &st);
        L->wdown = add(m, p, "mlp.down_proj.weight", E, F, &st);
    }
    m->final_norm = add(m, "", "model.norm.weight", E, 0, &st);
    m->head = c->tie_word_embeddings ? m->embed : add(m, "", "lm_head.weight", V, E, &st);
    return st;
}

static void release(clattn_llama *m)
{
    if (!m)
        return;
    for (int32_t i = 0; m->layers && i < m->cfg.num_hidden_layers; i++)
        clattn__llama_layer_release(&m->layers[i]);
    free(m->layers);
    clattn__params_free(&m->params);
    clattn__buffer *bufs[] = {&m->rows_q,  &m->rows_k, &m->rows_v,     &m->branch, &m->d_stream,
                              &m->d_branch, &m->d_h,   &m->d_h_part,   &m->d_merged, &m->d_q,
                              &m->d_k,     &m->d_v,    &m->d_att,      &m->d_qh,   &m->d_kh,
                              &m->d_vh,    &m->d_gate, &m->d_up,       &m->d_act,  &m->stream,
                              &m->final_h};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        clattn__buffer_release(bufs[i]);
    free(m->ids);
    free(m);
}

void clattn_llama_destroy(clattn_llama *m) { release(m); }

/* A new model with the checked configuration, its parameters allocated. */
static clattn_status make(clattn_ctx *ctx, const clattn_llama_config *cfg, clattn_llama **out)
{
    clattn_llama *m = calloc(1, sizeof *m);
    if (!m)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    m->ctx = ctx;
    m->cfg = *cfg;
    clattn_status st = clattn__llama_alloc(m);
    if (st != CLATTN_OK) {
        release(m);
        return st;
    }
    *out = m;
    return CLATTN_OK;
}

/* Elements of the largest parameter: the host staging buffer's size. */
static size_t largest_param(const clattn_llama *m)
{
    size_t largest = 0;
    for (int32_t i = 0; i < m->params.count; i++) {
        size_t n = clattn_tensor_numel(m->params.items[i].value);
        largest = n > largest ? n : largest;
    }
    return largest;
}

/* normal(0, std) into dst[n] from the RNG, by Box-Muller in double: each
 * pair of uniforms u1 in (0, 1], u2 gives r cos(2 pi u2) and r sin(2 pi
 * u2) with r = sqrt(-2 ln u1), consumed in that order. */
static void fill_normal(uint64_t rng[4], float std, float *dst, size_t n)
{
    const double two_pi = 6.283185307179586476925286766559;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - clattn__rng_double(rng), u2 = clattn__rng_double(rng);
        double r = sqrt(-2.0 * log(u1));
        dst[i] = (float)(std * r * cos(two_pi * u2));
        if (i + 1 < n)
            dst[i + 1] = (float)(std * r * sin(two_pi * u2));
    }
}

static clattn_status init_weights(clattn_llama *m, uint64_t seed)
{
    uint64_t rng[4];
    clattn__rng_seed(rng, seed);
    size_t largest = largest_param(m);
    float *host = malloc(largest * sizeof *host);
    if (!host)
        return clattn__fail(m->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_status st = CLATTN_OK;
    for (int32_t i = 0; i < m->params.count && st == CLATTN_OK; i++) {
        clattn__param *p = &m->params.items[i];
        if (p->ndim == 1) {
            st = clattn_tensor_fill(p->value, 1.0f); /* RMSNorm weights start at 1 */
            continue;
        }
        size_t n = clattn_tensor_numel(p->value);
        fill_normal(rng, m->cfg.initializer_range, host, n);
        /* transformers zeroes the padding token's embedding row. */
        if (p->value == m->embed && m->cfg.pad_token_id >= 0)
            memset(host + (size_t)m->cfg.pad_token_id * (size_t)m->cfg.hidden_size, 0,
                   (size_t)m->cfg.hidden_size * sizeof *host);
        st = clattn_tensor_write(p->value, host);
    }
    free(host);
    return st;
}

clattn_status clattn_llama_create(clattn_ctx *ctx, const clattn_llama_config *cfg,
                                  uint64_t seed, clattn_llama **out)
{
    clattn__clear_thread_error();
    if (!ctx || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "llama_create: NULL ctx or out");
    *out = NULL;
    clattn_llama_config c;
    clattn_status st = clattn__llama_config_check(ctx, cfg, &c);
    clattn_llama *m = NULL;
    if (st == CLATTN_OK)
        st = make(ctx, &c, &m);
    if (st == CLATTN_OK)
        st = init_weights(m, seed);
    if (st != CLATTN_OK) {
        release(m);
        return st;
    }
    *out = m;
    return CLATTN_OK;
}

/* Reads parameter p from the folder's files, converted to float32, and
 * uploads it. host has room for the largest parameter. */
static clattn_status load_param(clattn_llama *m, const char *dir, const clattn__lm_files *f,
                                clattn__param *p, float *host)
{
    const clattn_weight_info *w = clattn__lm_files_find(f, p->name);
    char s1[96], s2[96];
    if (!w)
        return clattn__fail(m->ctx, CLATTN_ERR_FORMAT, "%s: no tensor '%s' (shape %s)", dir,
                            p->name, clattn__shape_str(p->shape, p->ndim, s1, sizeof s1));
    if (w->ndim != p->ndim || memcmp(w->shape, p->shape, (size_t)p->ndim * sizeof *p->shape))
        return clattn__fail(m->ctx, CLATTN_ERR_FORMAT, "%s: tensor '%s' is %s, must be %s", dir,
                            p->name, clattn__shape_str(w->shape, w->ndim, s1, sizeof s1),
                            clattn__shape_str(p->shape, p->ndim, s2, sizeof s2));
    if (w->dtype != CLATTN_DTYPE_F32 && w->dtype != CLATTN_DTYPE_F16 &&
        w->dtype != CLATTN_DTYPE_BF16)
        return clattn__fail(m->ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: tensor '%s' is %s; clattn_llama reads F32, F16 and BF16", dir,
                            p->name, clattn_dtype_name(w->dtype));
    clattn__dtype_to_f32(w->dtype, w->data, w->numel, host);
    for (size_t i = 0; i < w->numel; i++)
        if (!isfinite(host[i]))
            return clattn__fail(m->ctx, CLATTN_ERR_FORMAT,
                                "%s: tensor '%s' holds %s at flat index %zu", dir, p->name,
                                isnan(host[i]) ? "NaN" : "infinity", i);
    return clattn_tensor_write(p->value, host);
}

clattn_status clattn_llama_load(clattn_ctx *ctx, const char *dir, clattn_llama **out)
{
    clattn__clear_thread_error();
    if (!ctx || !dir || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "llama_load: NULL ctx, dir or out");
    *out = NULL;
    clattn_llama_config c;
    clattn_status st = clattn__llama_config_from_dir(ctx, dir, &c);
    if (st != CLATTN_OK)
        return st;
    clattn_llama *m = NULL;
    st = make(ctx, &c, &m);
    if (st != CLATTN_OK)
        return st;
    clattn__lm_files files;
    memset(&files, 0, sizeof files);
    st = clattn__lm_files_open(ctx, dir, &files);
    size_t largest = largest_param(m);
    float *host = st == CLATTN_OK ? malloc(largest * sizeof *host) : NULL;
    if (st == CLATTN_OK && !host)
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int32_t i = 0; i < m->params.count && st == CLATTN_OK; i++)
        st = load_param(m, dir, &files, &m->params.items[i], host);
    free(host);
    clattn__lm_files_close(&files);
    if (st != CLATTN_OK) {
        release(m);
        return st;
    }
    *out = m;
    return CLATTN_OK;
}

clattn_llama_config clattn_llama_get_config(const clattn_llama *m)
{
    return m ? m->cfg : clattn_llama_config_default();
}

clattn_status clattn_llama_set_dropout(clattn_llama *m, float p, uint64_t seed)
{
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "llama_set_dropout: NULL model");
    if (!(p >= 0 && p < 1))
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG,
                            "llama_set_dropout: p = %g must be in [0, 1)", (double)p);
    m->cfg.dropout = p;
    m->cfg.dropout_seed = seed;
    m->drop_count = 0;
    return CLATTN_OK;
}

int32_t clattn_llama_param_refs(clattn_llama *m, clattn_param_ref *refs, int32_t cap)
{
    clattn__clear_thread_error();
    if (!m || cap < 0 || (cap > 0 && !refs)) {
        clattn__fail(m ? m->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                     "llama_param_refs: NULL model, or refs NULL with cap > 0");
        return -1;
    }
    return clattn__params_refs(m->ctx, &m->params, refs, cap);
}

clattn_status clattn_llama_zero_grad(clattn_llama *m)
{
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "llama_zero_grad: NULL model");
    return clattn__params_zero_grads(&m->params);
}
