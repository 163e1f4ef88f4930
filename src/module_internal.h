/* module_internal.h - the structures behind clattn_module: parameter sets,
 * attention blocks, transformer layers and stacks. */
#ifndef CLATTN_MODULE_INTERNAL_H
#define CLATTN_MODULE_INTERNAL_H

#include "attention_internal.h"

/* ---- params.c ------------------------------------------------------------ */

typedef struct clattn__param {
    char name[128];             /* full state_dict name */
    int32_t ndim;
    int64_t shape[CLATTN_MAX_DIMS];
    clattn_tensor *value;       /* owned */
} clattn__param;

typedef struct clattn__param_set {
    clattn__param *items;
    int32_t count, cap;
} clattn__param_set;

/* Appends a parameter filled with init and returns its tensor; does nothing
 * and returns NULL when *st is already an error (so a constructor can add
 * many and check once). */
clattn_tensor *clattn__params_add(clattn_ctx *ctx, clattn__param_set *set, const char *name,
                                  int32_t ndim, const int64_t *shape, float init,
                                  clattn_status *st);
clattn__param *clattn__params_find(const clattn__param_set *set, const char *name);
void clattn__params_free(clattn__param_set *set);

/* ---- model.c -------------------------------------------------------------- */

/* Loads every parameter of set from w, named prefix + its name: a missing
 * tensor or another shape is CLATTN_ERR_FORMAT naming it and the expected
 * shape; strict also refuses tensors of w that are no parameter. */
clattn_status clattn__params_load(clattn_ctx *ctx, const clattn__param_set *set,
                                  const clattn_weights *w, const char *prefix, bool strict);

/* ---- masks.c ------------------------------------------------------------- */

/* What one attention call masks, PyTorch style, before conversion. */
typedef struct clattn__mask_spec {
    const clattn_mask *attn_mask;        /* [N, M] or [B*H, N, M], or NONE */
    const clattn_mask *key_padding_mask; /* [B, M], or NONE */
    bool causal;                         /* top-left: key j visible to query i iff j <= i */
    int B, H, N, M;                      /* M: keys before the extra columns */
    int extra;                           /* add_bias_kv + add_zero_attn columns, never masked */
} clattn__mask_spec;

/* Converts the masks into one additive bias broadcastable to
 * [B, H, N, M + extra] (host floats, malloc'd into *bias with its shape),
 * or sets *bias = NULL when nothing is masked. what names the module in
 * errors. */
clattn_status clattn__masks_to_bias(clattn_ctx *ctx, const char *what,
                                    const clattn__mask_spec *spec, float **bias,
                                    int32_t *ndim, int64_t *shape);

/* ---- mha.c: attention blocks ------------------------------------------------ */

/* MultiheadAttention or the tutorial self-attention block. Projection
 * weights are [out, in] (nn.Linear); the packed in_proj_weight is also kept
 * whole so self-attention projects q, k and v in one GEMM. */
typedef struct clattn__attn_block {
    int64_t q_in, k_in, v_in;    /* input widths */
    int64_t qk_dim, v_dim;       /* projection widths (E, E for MHA) */
    int64_t out_dim;             /* output projection width; 0: none */
    int64_t heads;
    bool add_bias_kv, add_zero_attn;
    clattn_tensor *w_qkv, *b_qkv;   /* packed [3E, E], [3E]; NULL unless packed */
    clattn_tensor *w_q, *w_k, *w_v; /* [A, q_in], [A, k_in], [V, v_in] */
    clattn_tensor *b_q, *b_k, *b_v; /* [A], [A], [V] or NULL */
    clattn_tensor *bias_k, *bias_v; /* [1, 1, E] or NULL */
    clattn_tensor *w_o, *b_o;       /* [out, V], [out] or NULL */
    /* Workspace, grown on demand. */
    clattn__buffer proj, proj_k, proj_v, q, k, v, heads_out, merged, bias, weights;
} clattn__attn_block;

/* Adds an nn.MultiheadAttention's parameters under prefix ("self_attn.") */
clattn_status clattn__mha_init(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                               int64_t e, int64_t heads, int64_t kdim, int64_t vdim, bool bias,
                               bool add_bias_kv, bool add_zero_attn, clattn__attn_block *blk);

/* Names of the four projections of a block with separate q/k/v Linear
 * layers, relative to the block's prefix: "query", "key", "value", "out"
 * (the tutorial block) or "self.query", ..., "output.dense" (BERT). */
typedef struct clattn__attn_names {
    const char *query, *key, *value, *out;
} clattn__attn_names;

/* Adds a block with separate projections named by names under prefix:
 * query/key [a, in], value [v, in] (v 0: a), output [out, v] when out > 0;
 * and their biases when bias. */
clattn_status clattn__attn_proj_init(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                                    const clattn__attn_names *names, int64_t in, int64_t a,
                                    int64_t v, int64_t out, int64_t heads, bool bias,
                                    clattn__attn_block *blk);

/* Adds the tutorial self-attention block's parameters under prefix. */
clattn_status clattn__self_attention_init(clattn_ctx *ctx, clattn__param_set *set,
                                          const char *prefix, int64_t in, int64_t a, int64_t v,
                                          int64_t out, int64_t heads, bool bias,
                                          clattn__attn_block *blk);

/* Copies the packed q/k/v parameters into the separate ones (done before
 * every forward that projects q, k and v separately). */
clattn_status clattn__attn_block_sync(clattn_ctx *ctx, clattn__attn_block *blk);

/* y [B, N, out] = attention(x_q [B, N, q_in], x_kv [B, M, k_in/v_in]).
 * x_k and x_v may be the same tensor; x_q == x_k == x_v selects the fused
 * projection. weights: optional [B, H, N, M'] or averaged [B, N, M']. */
typedef struct clattn__attn_call {
    const clattn_tensor *x_q, *x_k, *x_v;
    const clattn_mask *attn_mask, *key_padding_mask;
    bool causal;
    clattn_tensor *weights;
    bool average_weights;
    /* Host [B] key counts: keys from kv_len[b] on are masked (the
     * attention kernel's own key padding, no bias materialised); padded
     * query rows are computed like any other. NULL: all keys valid. */
    const int32_t *kv_len;
} clattn__attn_call;

clattn_status clattn__attn_block_forward(clattn_ctx *ctx, clattn__attn_block *blk,
                                         const clattn__attn_call *call, clattn_tensor *y);

void clattn__attn_block_release(clattn__attn_block *blk);

/* ---- transformer.c ------------------------------------------------------------ */

typedef struct clattn__norm {
    clattn_tensor *weight, *bias;   /* [E], bias NULL without bias */
} clattn__norm;

typedef struct clattn__layer {
    bool decoder;
    bool norm_first;
    float eps;
    clattn_activation act;
    int64_t d_model, dim_ff;
    clattn__attn_block self_attn, cross_attn;
    clattn_tensor *w1, *b1, *w2, *b2;  /* linear1 [ff, E], linear2 [E, ff] */
    clattn__norm norm1, norm2, norm3;
    clattn__buffer h, ff, tmp;          /* workspace [B, N, E], [B, N, ff], [B, N, E] */
} clattn__layer;

clattn_status clattn__layer_init(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                                 const clattn_module_config *cfg, bool decoder,
                                 clattn__layer *layer);
void clattn__layer_release(clattn__layer *layer);

/* x [B, N, E] -> x, in place. Decoder layers read memory [B, S, E]. */
typedef struct clattn__layer_call {
    const clattn_mask *self_mask, *self_kpm;
    bool self_causal;
    const clattn_tensor *memory;
    const clattn_mask *memory_mask, *memory_kpm;
    bool memory_causal;
    const int32_t *self_kv_len;         /* host [B] or NULL, see clattn__attn_call */
} clattn__layer_call;

clattn_status clattn__layer_forward(clattn_ctx *ctx, clattn__layer *layer,
                                    const clattn__layer_call *call, clattn_tensor *x);

/* ---- module.c ---------------------------------------------------------------- */

struct clattn_module {
    clattn_ctx *ctx;
    clattn_module_config cfg;
    clattn__param_set params;
    clattn__attn_block attn;            /* MHA, SELF_ATTENTION */
    clattn__layer *layers;              /* layer kinds and stacks: encoder layers */
    int32_t n_layers;                   /* first, then decoder layers */
    int32_t n_encoder_layers;
    clattn__norm enc_norm, dec_norm;    /* stacks' final norms (weight NULL: none) */
    clattn__buffer x, mem;              /* workspace: running activations */
};

#endif
