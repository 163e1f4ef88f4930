/* lm_train/lm_train.h - the trainable Llama (clattn_llama): what the files
 * of src/lm_train share.
 *
 *   config.c    clattn_llama_config: defaults, checks, and the mapping
 *               from a folder's config.json (lm/config.c reads it)
 *   model.c     parameters: creation with transformers' initialisation,
 *               loading a Hugging Face folder, references, gradients
 *   block.c     one decoder layer: training forward and backward
 *   forward.c   the whole model: embedding, layers, final norm, head
 *   export.c    clattn_llama_export: the Hugging Face folder
 *
 * Every product and norm is a public op (clattn_linear, clattn_rms_norm,
 * clattn_sdpa, ...) on float32 tensors; only the head splits use the
 * modules' internal kernels. R = B * T token rows throughout. */
#ifndef CLATTN_LM_TRAIN_H
#define CLATTN_LM_TRAIN_H

#include "modules/modules.h"

/* One decoder layer: its parameters (owned by the model's parameter set)
 * and what its last training forward kept for the backward. */
typedef struct clattn__llama_layer {
    clattn_tensor *in_norm, *post_norm;          /* [E] */
    clattn_tensor *wq, *wk, *wv, *wo;            /* [Hq D, E], [Hkv D, E] x2, [E, Hq D] */
    clattn_tensor *wgate, *wup, *wdown;          /* [F, E], [F, E], [E, F] */
    /* Kept activations ([B, T, ...] of the last forward). */
    clattn__buffer x_in;      /* [B, T, E] the layer's input */
    clattn__buffer h1;        /* [B, T, E] input_layernorm(x_in) */
    clattn__buffer qh, kh, vh; /* [B, Hq, T, D], [B, Hkv, T, D]: rotated q, k; v */
    clattn__buffer att, lse;  /* [B, Hq, T, D] attention output, [B, Hq, T] */
    clattn__buffer merged;    /* [B, T, Hq D] att with the heads merged */
    clattn__buffer x_mid;     /* [B, T, E] x_in + the attention branch */
    clattn__buffer h2;        /* [B, T, E] post_attention_layernorm(x_mid) */
    clattn__buffer gate, up, act; /* [B, T, F]: the projections, silu(gate) * up */
    uint64_t drop_offset[2];  /* the two dropout masks' offsets (attention, MLP) */
    bool dropped;             /* the forward applied dropout */
    bool saved;               /* the buffers hold a training forward */
    int32_t B, T;
} clattn__llama_layer;

struct clattn_llama {
    clattn_ctx *ctx;
    clattn_llama_config cfg;      /* head_dim resolved (never 0) */
    clattn__param_set params;     /* in the header's order */
    clattn_tensor *embed;         /* [V, E] */
    clattn_tensor *final_norm;    /* [E] */
    clattn_tensor *head;          /* [V, E]: lm_head, or embed when tied */
    clattn__llama_layer *layers;  /* [num_hidden_layers] */
    /* Forward scratch shared by the layers: token rows of q, k, v before
     * the head split, and a branch's output before its residual add. */
    clattn__buffer rows_q, rows_k, rows_v; /* [B, T, Hq D], [B, T, Hkv D] x2 */
    clattn__buffer branch;                 /* [B, T, E] */
    /* Backward scratch shared by the layers. */
    clattn__buffer d_stream, d_branch, d_h, d_h_part;  /* [B, T, E] */
    clattn__buffer d_merged, d_q, d_k, d_v;            /* token rows */
    clattn__buffer d_att, d_qh, d_kh, d_vh;            /* heads */
    clattn__buffer d_gate, d_up, d_act;                /* [B, T, F] */
    /* The whole model's kept forward: the residual stream after the last
     * layer, its final norm, and the ids (for the embedding's gradient). */
    clattn__buffer stream, final_h;   /* [B, T, E] */
    int64_t *ids;                     /* host [B * T] */
    size_t ids_cap;
    int32_t B, T;
    bool saved;
    uint64_t drop_count;              /* dropout masks drawn so far */
};

/* ---- config.c ------------------------------------------------------------ */

/* Checks cfg as clattn_llama_create documents (CLATTN_ERR_INVALID_ARG
 * naming the field, recorded on ctx) and writes it with head_dim resolved
 * into *out. */
clattn_status clattn__llama_config_check(clattn_ctx *ctx, const clattn_llama_config *cfg,
                                         clattn_llama_config *out);

/* The configuration of the folder dir (config.json, read by lm/config.c):
 * Llama-family layers without biases or windows, else
 * CLATTN_ERR_UNSUPPORTED naming the setting. */
clattn_status clattn__llama_config_from_dir(clattn_ctx *ctx, const char *dir,
                                            clattn_llama_config *out);

/* ---- model.c ------------------------------------------------------------- */

/* Allocates m's parameters (values uninitialised) in the header's order
 * and the layer table; m->ctx and m->cfg must be set. */
clattn_status clattn__llama_alloc(clattn_llama *m);

/* ---- block.c ------------------------------------------------------------- */

/* y [B, T, E] = layer l of m (x [B, T, E]; y may be x). train: dropout
 * when configured. The activations are kept either way (the layer's
 * buffers serve the evaluation forward too); saved says whether they are
 * a training forward's. */
clattn_status clattn__llama_block_forward(clattn_llama *m, int32_t l, const clattn_tensor *x,
                                          bool train, clattn_tensor *y);

/* Backward of layer l's kept forward: dx [B, T, E] from dy (dx may be dy);
 * the layer's parameter gradients are added to. */
clattn_status clattn__llama_block_backward(clattn_llama *m, int32_t l, const clattn_tensor *dy,
                                           clattn_tensor *dx);

/* Releases the layer's kept buffers. */
void clattn__llama_layer_release(clattn__llama_layer *layer);

/* ---- forward.c / model.c ------------------------------------------------- */

/* Fails with CLATTN_ERR_INVALID_ARG unless t is [dims...] of m's context;
 * what names the call, arg the argument. */
clattn_status clattn__llama_check_shape(const clattn_llama *m, const char *what, const char *arg,
                                        const clattn_tensor *t, int32_t ndim,
                                        const int64_t *shape);

#endif /* CLATTN_LM_TRAIN_H */
