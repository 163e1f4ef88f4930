/* module.c - clattn_module: construction per kind with PyTorch's
 * state_dict names, parameter access, and the forward dispatch. */
#include "modules/modules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clattn_forward_args clattn_forward_args_default(void)
{
    clattn_forward_args a;
    memset(&a, 0, sizeof a);
    a.average_attn_weights = true;
    return a;
}

static const char *kind_name(clattn_module_kind k)
{
    switch (k) {
    case CLATTN_MODULE_MHA: return "MultiheadAttention";
    case CLATTN_MODULE_SELF_ATTENTION: return "self-attention block";
    case CLATTN_MODULE_ENCODER_LAYER: return "TransformerEncoderLayer";
    case CLATTN_MODULE_DECODER_LAYER: return "TransformerDecoderLayer";
    case CLATTN_MODULE_ENCODER: return "TransformerEncoder";
    case CLATTN_MODULE_DECODER: return "TransformerDecoder";
    case CLATTN_MODULE_TRANSFORMER: return "Transformer";
    }
    return "unknown module";
}

/* Adds count layers named prefix + "layers.{i}." and the optional final
 * norm prefix + "norm.". */
static clattn_status add_stack(clattn_module *m, const char *prefix, int32_t count, bool decoder,
                               bool final_norm, int32_t first, clattn__norm *norm)
{
    clattn_status st = CLATTN_OK;
    char name[96];
    for (int32_t i = 0; i < count && st == CLATTN_OK; i++) {
        snprintf(name, sizeof name, "%slayers.%d.", prefix, i);
        st = clattn__layer_init(m->ctx, &m->params, name, &m->cfg, decoder, &m->layers[first + i]);
        m->n_layers = first + i + 1;
    }
    if (st == CLATTN_OK && final_norm) {
        int64_t e = m->cfg.d_model;
        snprintf(name, sizeof name, "%snorm.weight", prefix);
        norm->weight = clattn__params_add(m->ctx, &m->params, name, 1, &e, 1.0f, &st);
        if (m->cfg.bias) {
            snprintf(name, sizeof name, "%snorm.bias", prefix);
            norm->bias = clattn__params_add(m->ctx, &m->params, name, 1, &e, 0.0f, &st);
        }
    }
    return st;
}

static clattn_status build(clattn_module *m)
{
    const clattn_module_config *c = &m->cfg;
    const char *what = kind_name(c->kind);
    if (c->kind == CLATTN_MODULE_SELF_ATTENTION)
        return clattn__self_attention_init(m->ctx, &m->params, "", c->d_model, c->attn_dim,
                                           c->value_dim, c->out_dim, c->nhead > 0 ? c->nhead : 1,
                                           c->bias, &m->attn);
    if (c->d_model <= 0 || c->nhead <= 0 || c->d_model % c->nhead != 0)
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: d_model %lld must be positive and divisible by nhead %lld", what,
                            (long long)c->d_model, (long long)c->nhead);
    if (c->kind == CLATTN_MODULE_MHA)
        return clattn__mha_init(m->ctx, &m->params, "", c->d_model, c->nhead, c->kdim, c->vdim,
                                c->bias, c->add_bias_kv, c->add_zero_attn, &m->attn);
    int32_t enc = 0, dec = 0;
    switch (c->kind) {
    case CLATTN_MODULE_ENCODER_LAYER: enc = 1; break;
    case CLATTN_MODULE_DECODER_LAYER: dec = 1; break;
    case CLATTN_MODULE_ENCODER: enc = c->num_layers; break;
    case CLATTN_MODULE_DECODER: dec = c->num_layers; break;
    case CLATTN_MODULE_TRANSFORMER:
        enc = c->num_encoder_layers;
        dec = c->num_decoder_layers;
        break;
    default:
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG, "unknown module kind %d",
                            (int)c->kind);
    }
    bool stack = c->kind != CLATTN_MODULE_ENCODER_LAYER && c->kind != CLATTN_MODULE_DECODER_LAYER;
    if (enc + dec < 1 || enc < 0 || dec < 0 || enc + dec > 4096)
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG, "%s: layer count %d out of range",
                            what, enc + dec);
    m->layers = calloc((size_t)(enc + dec), sizeof *m->layers);
    if (!m->layers)
        return clattn__fail(m->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    m->n_encoder_layers = enc;
    clattn_status st = CLATTN_OK;
    if (!stack) {
        st = clattn__layer_init(m->ctx, &m->params, "", c, dec > 0, &m->layers[0]);
        m->n_layers = 1;
    } else if (c->kind == CLATTN_MODULE_TRANSFORMER) {
        st = add_stack(m, "encoder.", enc, false, c->final_norm, 0, &m->enc_norm);
        if (st == CLATTN_OK)
            st = add_stack(m, "decoder.", dec, true, c->final_norm, enc, &m->dec_norm);
    } else {
        st = add_stack(m, "", enc + dec, dec > 0, c->final_norm, 0,
                       dec > 0 ? &m->dec_norm : &m->enc_norm);
    }
    return st;
}

clattn_status clattn_module_create(clattn_ctx *ctx, const clattn_module_config *cfg,
                                   clattn_module **out)
{
    clattn__clear_thread_error();
    if (!ctx || !cfg || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "module_create: NULL argument");
    *out = NULL;
    clattn_module *m = calloc(1, sizeof *m);
    if (!m)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    m->ctx = ctx;
    m->cfg = *cfg;
    clattn_status st = build(m);
    if (st != CLATTN_OK) {
        clattn_module_destroy(m);
        return st;
    }
    *out = m;
    return CLATTN_OK;
}

void clattn_module_destroy(clattn_module *m)
{
    if (!m)
        return;
    clattn__attn_block_release(&m->attn);
    for (int32_t i = 0; i < m->n_layers; i++)
        clattn__layer_release(&m->layers[i]);
    free(m->layers);
    clattn__params_free(&m->params);
    clattn__buffer_release(&m->x);
    clattn__buffer_release(&m->mem);
    clattn__buffer_release(&m->d_x);
    free(m);
}

clattn_module_config clattn_module_get_config(const clattn_module *m)
{
    return m ? m->cfg : clattn_module_config_default(CLATTN_MODULE_MHA);
}

int32_t clattn_module_param_count(const clattn_module *m) { return m ? m->params.count : 0; }

const char *clattn_module_param_name(const clattn_module *m, int32_t i)
{
    return (m && i >= 0 && i < m->params.count) ? m->params.items[i].name : NULL;
}

clattn_tensor *clattn_module_param(const clattn_module *m, const char *name)
{
    clattn__param *p = (m && name) ? clattn__params_find(&m->params, name) : NULL;
    return p ? p->value : NULL;
}

/* ---- forward ------------------------------------------------------------------- */

/* out = copy of in (no-op when they are the same buffer). */
static clattn_status copy_into(clattn_ctx *ctx, const clattn_tensor *in, const clattn_tensor *out)
{
    if (in->mem == out->mem)
        return CLATTN_OK;
    cl_int err = clEnqueueCopyBuffer(ctx->queue, in->mem, out->mem, 0, 0,
                                     in->numel * sizeof(float), 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, "copying module input");
}

static bool is_bnE(const clattn_tensor *t, int64_t e)
{
    return t && t->ndim == 3 && t->shape[2] == e;
}

/* Runs layers [first, first + count) in place on x, then the norm. */
static clattn_status run_stack(clattn_module *m, int32_t first, int32_t count,
                               const clattn__layer_call *call, const clattn__norm *norm,
                               clattn_tensor *x)
{
    clattn_status st = CLATTN_OK;
    for (int32_t i = first; i < first + count && st == CLATTN_OK; i++)
        st = clattn__layer_forward(m->ctx, &m->layers[i], call, x);
    if (st == CLATTN_OK && norm->weight)
        st = clattn_layer_norm(m->ctx, x, norm->weight, norm->bias, m->cfg.layer_norm_eps, x);
    return st;
}

static clattn_status forward_encoder(clattn_module *m, const clattn_forward_args *a,
                                     const clattn_tensor *src, clattn_tensor *x, int32_t count,
                                     bool train)
{
    clattn__layer_call call;
    memset(&call, 0, sizeof call);
    call.self_mask = &a->src_mask;
    call.self_kpm = &a->src_key_padding_mask;
    call.self_causal = a->is_causal || a->src_is_causal;
    if (train)
        return clattn__stack_train_forward(m, 0, count, &call, &m->enc_norm, src, x);
    clattn_status st = copy_into(m->ctx, src, x);
    return st == CLATTN_OK ? run_stack(m, 0, count, &call, &m->enc_norm, x) : st;
}

static clattn_status forward_decoder(clattn_module *m, const clattn_forward_args *a,
                                     const clattn_tensor *memory, clattn_tensor *x,
                                     int32_t first, int32_t count, bool train)
{
    clattn__layer_call call = {.self_mask = &a->tgt_mask,
                               .self_kpm = &a->tgt_key_padding_mask,
                               .self_causal = a->tgt_is_causal,
                               .memory = memory,
                               .memory_mask = &a->memory_mask,
                               .memory_kpm = &a->memory_key_padding_mask,
                               .memory_causal = a->memory_is_causal};
    if (train)
        return clattn__stack_train_forward(m, first, count, &call, &m->dec_norm, a->tgt, x);
    clattn_status st = copy_into(m->ctx, a->tgt, x);
    return st == CLATTN_OK ? run_stack(m, first, count, &call, &m->dec_norm, x) : st;
}

/* The forward of every kind; train keeps what clattn_module_backward needs. */
static clattn_status run(clattn_module *m, const clattn_forward_args *a, clattn_tensor *out,
                         bool train)
{
    clattn__clear_thread_error();
    if (!m || !a || !out)
        return clattn__fail(m ? m->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "module_forward: NULL argument");
    /* Any forward overwrites the activations a training forward saved. */
    m->train_saved = false;
    clattn_ctx *ctx = m->ctx;
    const clattn_module_config *c = &m->cfg;
    const char *what = kind_name(c->kind);
    char s1[96], s2[96];
    if (train && c->kind == CLATTN_MODULE_TRANSFORMER)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "Transformer: training runs on its encoder and decoder as two "
                            "modules, not on the whole nn.Transformer");
    if (c->kind == CLATTN_MODULE_MHA || c->kind == CLATTN_MODULE_SELF_ATTENTION) {
        bool self = c->kind == CLATTN_MODULE_SELF_ATTENTION;
        clattn__attn_call call = {a->query, self ? a->query : a->key, self ? a->query : a->value,
                                  &a->attn_mask, &a->key_padding_mask, a->is_causal,
                                  a->attn_weights, a->average_attn_weights, NULL, train,
                                  false};
        if (!a->query || (!self && (!a->key || !a->value)))
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: query%s must be given", what,
                                self ? "" : ", key and value");
        clattn_status st = clattn__attn_block_forward(ctx, &m->attn, &call, out);
        m->train_saved = train && st == CLATTN_OK;
        return st;
    }
    int64_t e = c->d_model;
    bool has_encoder = c->kind == CLATTN_MODULE_ENCODER_LAYER ||
                       c->kind == CLATTN_MODULE_ENCODER || c->kind == CLATTN_MODULE_TRANSFORMER;
    bool has_decoder = !has_encoder || c->kind == CLATTN_MODULE_TRANSFORMER;
    if (has_encoder && !is_bnE(a->src, e))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: src %s must be [B, N, %lld]", what,
                            a->src ? clattn__shape_str(a->src->shape, a->src->ndim, s1, sizeof s1)
                                   : "NULL",
                            (long long)e);
    if (has_decoder && (!is_bnE(a->tgt, e) ||
                        (c->kind != CLATTN_MODULE_TRANSFORMER && !is_bnE(a->memory, e))))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: tgt %s%s%s must be [B, T, %lld]%s", what,
                            a->tgt ? clattn__shape_str(a->tgt->shape, a->tgt->ndim, s1, sizeof s1)
                                   : "NULL",
                            c->kind == CLATTN_MODULE_TRANSFORMER ? "" : " and memory ",
                            c->kind == CLATTN_MODULE_TRANSFORMER
                                ? ""
                                : (a->memory ? clattn__shape_str(a->memory->shape,
                                                                 a->memory->ndim, s2, sizeof s2)
                                             : "NULL"),
                            (long long)e,
                            c->kind == CLATTN_MODULE_TRANSFORMER ? "" : " and [B, S, E]");
    const clattn_tensor *shaped = has_decoder ? a->tgt : a->src;
    if (out->ndim != 3 || memcmp(out->shape, shaped->shape, 3 * sizeof(int64_t)) != 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: output %s must be %s", what,
                            clattn__shape_str(out->shape, out->ndim, s1, sizeof s1),
                            clattn__shape_str(shaped->shape, 3, s2, sizeof s2));
    if (has_decoder && a->src && a->tgt && c->kind == CLATTN_MODULE_TRANSFORMER &&
        a->src->shape[0] != a->tgt->shape[0])
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: src and tgt batch sizes differ",
                            what);
    clattn_status st;
    if (!has_decoder || !has_encoder) {
        st = has_decoder ? forward_decoder(m, a, a->memory, out, 0, m->n_layers, train)
                         : forward_encoder(m, a, a->src, out, m->n_layers, train);
        m->train_saved = train && st == CLATTN_OK;
        return st;
    }

    /* Transformer: encode src into the memory workspace, then decode. */
    clattn_tensor memory;
    st = clattn__workspace(ctx, &m->mem, 3, a->src->shape, "encoder memory [B, S, E]", &memory);
    if (st != CLATTN_OK)
        return st;
    st = forward_encoder(m, a, a->src, &memory, m->n_encoder_layers, false);
    return st == CLATTN_OK ? forward_decoder(m, a, &memory, out, m->n_encoder_layers,
                                             m->n_layers - m->n_encoder_layers, false)
                           : st;
}

clattn_status clattn_module_forward(clattn_module *m, const clattn_forward_args *a,
                                    clattn_tensor *out)
{
    return run(m, a, out, false);
}

clattn_status clattn_module_train_forward(clattn_module *m, const clattn_forward_args *a,
                                          clattn_tensor *out)
{
    return run(m, a, out, true);
}
