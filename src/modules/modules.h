/* modules/modules.h - the structures behind clattn_module: parameter sets,
 * attention blocks, transformer layers and stacks. */
#ifndef CLATTN_MODULE_INTERNAL_H
#define CLATTN_MODULE_INTERNAL_H

#include "attention/attention.h"
#include "io/io.h"
#include "nn/nn.h"

/* ---- params.c ------------------------------------------------------------ */

typedef struct clattn__param {
    char name[128];             /* full state_dict name */
    int32_t ndim;
    int64_t shape[CLATTN_MAX_DIMS];
    clattn_tensor *value;       /* owned */
    clattn_tensor *grad;        /* owned; NULL until training asks for it */
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

/* The gradient tensor of the parameter whose value is value (allocated and
 * zeroed on first use), or NULL with *st set when value is no parameter of
 * set or allocation fails. Does nothing when *st is already an error. */
clattn_tensor *clattn__params_grad(clattn_ctx *ctx, clattn__param_set *set,
                                   const clattn_tensor *value, clattn_status *st);

/* Allocates (zeroed) every gradient not yet allocated. */
clattn_status clattn__params_alloc_grads(clattn_ctx *ctx, clattn__param_set *set);
/* Sets every allocated gradient of set to zero. */
clattn_status clattn__params_zero_grads(clattn__param_set *set);

/* Fills refs[0..min(count, cap)) with set's parameters (gradients
 * allocated first when cap > 0) and returns count, or -1 when an
 * allocation fails. The caller checks refs and cap. */
int32_t clattn__params_refs(clattn_ctx *ctx, clattn__param_set *set, clattn_param_ref *refs,
                            int32_t cap);
void clattn__params_free(clattn__param_set *set);

/* ---- model.c -------------------------------------------------------------- */

/* Loads every parameter of set from w, named prefix + its name: a missing
 * tensor or another shape is CLATTN_ERR_FORMAT naming it and the expected
 * shape; strict also refuses tensors of w that are no parameter. */
clattn_status clattn__params_load(clattn_ctx *ctx, const clattn__param_set *set,
                                  const clattn_weights *w, const char *prefix, bool strict);

/* ---- model_config.c: clattn_module_config_default and config.json ------- */

/* Reads the parsed config.json root (named file in messages) into *cfg:
 * CLATTN_ERR_FORMAT for a wrong type or shape, CLATTN_ERR_UNSUPPORTED for
 * a module or setting clattn does not run; the first failure is returned
 * and recorded on ctx (may be NULL) and the thread. Needs no device. */
clattn_status clattn__module_parse_config(clattn_ctx *ctx, const char *file, json_t *root,
                                         clattn_module_config *cfg);

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
    /* Training: what a forward with call->train saves for the backward
     * (q, k, v, heads_out and merged above stay as that forward left them). */
    struct {
        bool valid;
        bool packed;                /* one fused q/k/v projection */
        bool causal;                /* the kernel's own causal mode */
        clattn_tensor x_q, x_k, x_v; /* the inputs, borrowed: must not change */
        int64_t B, N, M;            /* M without the extra columns */
        int32_t bias_ndim;          /* 0: no mask bias (else in bias above) */
        int64_t bias_shape[4];
        int32_t *kv_len;            /* host [B] copy, or NULL */
    } saved;
    clattn__buffer lse;             /* [B, H, N] */
    /* Backward workspace. */
    clattn__buffer d_merged, d_heads, dq, dk, dv, d_proj, d_proj_k, d_proj_v, g_tmp, g_tmp2;
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
    bool train;                 /* save what clattn__attn_block_backward needs */
    /* y += the block's output instead of y = it (a residual add done by
     * the output projection's GEMM; not with train) */
    bool accumulate;
} clattn__attn_call;

/* view [B, heads, n + extra, dh] (in the workspace out) of the columns
 * col0 .. col0 + heads * dh of in [B, n, stride]; the extra rows are
 * bias_row (add_bias_kv, when given) and zeros (add_zero_attn). */
clattn_status clattn__split_heads(clattn_ctx *ctx, const clattn_tensor *in, int64_t col0,
                                  int64_t stride, int64_t b, int64_t heads, int64_t n,
                                  int64_t dh, int extra, const clattn_tensor *bias_row,
                                  clattn__buffer *out, clattn_tensor *view);

/* Runs kernel spec of heads.cl with arguments (in, out, ints[0..nints)),
 * nints at most CLATTN_HEADS_MAX_INTS. */
#define CLATTN_HEADS_MAX_INTS 8
clattn_status clattn__heads_kernel(clattn_ctx *ctx, const clattn__kernel_spec *spec, cl_mem in,
                                  cl_mem out, int nints, const cl_int *ints, cl_uint dims,
                                  const size_t *global);

clattn_status clattn__attn_block_forward(clattn_ctx *ctx, clattn__attn_block *blk,
                                         const clattn__attn_call *call, clattn_tensor *y);

void clattn__attn_block_release(clattn__attn_block *blk);

/* ---- mha_backward.c ----------------------------------------------------------- */

/* Backward of the block's last training forward: parameter gradients are
 * added into set's gradients; input gradients written to dx_q [B, N, q_in],
 * dx_k [B, M, k_in], dx_v [B, M, v_in] (each may be NULL; dx_k == dx_v
 * receives the sum, and in a packed self-attention forward dx_q receives
 * the whole input gradient and dx_k, dx_v must be NULL). dy: [B, N, out]. */
clattn_status clattn__attn_block_backward(clattn_ctx *ctx, clattn__attn_block *blk,
                                          clattn__param_set *set, const clattn_tensor *dy,
                                          clattn_tensor *dx_q, clattn_tensor *dx_k,
                                          clattn_tensor *dx_v);

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
    clattn__buffer h, ff, tmp;          /* workspace [B, N, E], [B, N, ff], [B, N, E]
                                         * (tmp: training's sub-block outputs) */
    /* Training (transformer_train.c): the residual stream at the sub-block
     * boundaries stream[0..3] [B, N, E], each sub-block's norm input (post-
     * norm) or normalised input (pre-norm) aux[0..2] [B, N, E], the feed-
     * forward pre-activation and activation [B, N, ff], and the backward's
     * workspace. */
    clattn__buffer stream[4], aux[3], ff_pre, ff_act;
    clattn__buffer d_a, d_b, d_c, d_ff, d_mem;
    bool saved;
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
    /* Inference forward only: when set, receives the self-attention
     * probabilities [B, H, N, N] (selects the unfused attention path). */
    clattn_tensor *self_weights;
} clattn__layer_call;

clattn_status clattn__layer_forward(clattn_ctx *ctx, clattn__layer *layer,
                                    const clattn__layer_call *call, clattn_tensor *x);

/* ---- transformer_train.c ------------------------------------------------------ */

/* Training forward: y = layer(x) like clattn__layer_forward (x is not
 * changed; y may be x), keeping every activation the backward needs. */
clattn_status clattn__layer_train_forward(clattn_ctx *ctx, clattn__layer *layer,
                                          const clattn__layer_call *call,
                                          const clattn_tensor *x, clattn_tensor *y);

/* Backward of the last training forward: dy [B, N, E] -> dx [B, N, E]
 * (may be dy); parameter gradients added into set; decoder layers add the
 * memory's gradient into dmemory [B, S, E] when not NULL. */
clattn_status clattn__layer_backward(clattn_ctx *ctx, clattn__layer *layer,
                                     clattn__param_set *set, const clattn_tensor *dy,
                                     clattn_tensor *dx, clattn_tensor *dmemory);

void clattn__layer_train_release(clattn__layer *layer);

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
    /* Training: the stack's gradient workspace, and whether the last
     * forward was a training forward (its activations are saved). The
     * stack's output before its final norm stays in x. */
    clattn__buffer d_x;
    bool train_saved;
    int64_t train_shape[3];             /* the stack's saved input/output shape */
};

/* ---- module_train.c ----------------------------------------------------------- */

/* Training forward of layers [first, first + count) and the stack's final
 * norm (norm->weight NULL: none): y = stack(x). */
clattn_status clattn__stack_train_forward(clattn_module *m, int32_t first, int32_t count,
                                          const clattn__layer_call *call,
                                          const clattn__norm *norm, const clattn_tensor *x,
                                          clattn_tensor *y);

/* modules/heads.cl: splitting and merging attention heads. */
extern const clattn__program_spec clattn__heads_program;

#endif
