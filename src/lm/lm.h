/* lm/lm.h - decoder language models: what the files of src/lm share.
 *
 *   weights_lp.c      a weight matrix kept on the device in the file's
 *                     precision (F32, F16, BF16) and the products and row
 *                     gathers that read it (cl/lm/linear_lp.cl)
 *   decode_attention.c  split-KV attention of a few new rows against a
 *                     sequence's KV cache (cl/lm/decode_attention.cl)
 *   lm_kernels.c      RMSNorm, rotary embeddings, SwiGLU and KV-cache
 *                     stores (cl/lm/lm_kernels.cl)
 *   config.c          config.json / generation_config.json, both spellings
 *   model.c           loading a folder's weights (sharded or not)
 *   forward.c         one forward pass over a batch of token rows
 *   session.c         the KV cache of a session and its sequences
 *   attention_map.c   the last position's attention weights, recomputed
 *                     from the kept query and the cached keys
 *   sampling.c        the host sampler (double precision)
 *   generate.c        the generation loop
 *
 * Row-major "token rows" are the unit everywhere: a batch of T tokens is a
 * [T, width] float32 buffer whatever sequences they belong to. */
#ifndef CLATTN_LM_H
#define CLATTN_LM_H

#include "core/core.h"

/* ---- weights_lp.c: matrices in the file's precision ------------------- */

/* A 2-D weight on the device exactly as stored in the file: rows x cols
 * elements of dtype (CLATTN_DTYPE_F32, _F16 or _BF16), row-major, i.e.
 * nn.Linear's [out, in]. No float32 copy is ever made. */
typedef struct clattn__lm_matrix {
    cl_mem mem;
    clattn_dtype dtype;
    int64_t rows, cols;
} clattn__lm_matrix;

/* Uploads rows x cols elements of dtype from host bytes (unaligned is
 * fine) into m. transpose: the bytes hold the [cols, rows] matrix
 * (GPT-2's Conv1D stores [in, out]); it is transposed on the host, element
 * by element, keeping the dtype. what names the weight in errors. */
clattn_status clattn__lm_matrix_upload(clattn_ctx *ctx, const void *bytes, clattn_dtype dtype,
                                       int64_t rows, int64_t cols, bool transpose,
                                       const char *what, clattn__lm_matrix *m);
void clattn__lm_matrix_release(clattn__lm_matrix *m);

/* Device bytes of m. */
size_t clattn__lm_matrix_bytes(const clattn__lm_matrix *m);

/* y[T, w.rows] = x[T, w.cols] . w^T (+ bias[w.rows] if bias is not NULL),
 * or y += that when accumulate (a fused residual add). x, y: float32
 * buffers starting at element offsets x_off, y_off, rows contiguous
 * (row stride = width). bias: float32 [w.rows] or NULL. Non-blocking.
 * what names the call in errors. */
clattn_status clattn__lm_linear(clattn_ctx *ctx, const clattn__lm_matrix *w, cl_mem bias,
                                cl_mem x, size_t x_off, int64_t T, cl_mem y, size_t y_off,
                                bool accumulate, const char *what);

/* out[t, :] (=|+=) table[ids[t], :] as float32, t < T. ids: a device
 * int32 buffer of T ids, each already checked to be < table.rows.
 * accumulate adds into out (GPT-2's learned positions). Non-blocking. */
clattn_status clattn__lm_gather_rows(clattn_ctx *ctx, const clattn__lm_matrix *table,
                                     cl_mem ids, int64_t T, cl_mem out, bool accumulate,
                                     const char *what);

/* The kernels clattn__lm_linear can run (cl/lm/linear_lp.cl). AUTO is its
 * own choice: by T (matrix-vector up to CLATTN_LM_GEMV_MAX_T rows, tiled
 * above) and by the device (the CPU forms on CPU devices without a loop
 * budget, i.e. POCL; the GPU forms elsewhere, llvmpipe included). The
 * others force one, for the tests; each works on every device, slowly on
 * the wrong one. */
typedef enum clattn__lm_path {
    CLATTN_LM_PATH_AUTO = 0,
    CLATTN_LM_PATH_GEMV_CPU,    /* lp_gemv_cpu_*: a work-item per few rows */
    CLATTN_LM_PATH_GEMV_TILED,  /* lp_gemv_tiled_*: work-items split each row */
    CLATTN_LM_PATH_GEMM_PACKED, /* float panels + gemm/gemm.cl's CPU GEMM */
    CLATTN_LM_PATH_GEMM_TILED,  /* lp_gemm_tiled: local-memory tiles */
    CLATTN_LM_PATH_GEMM_BLAS,   /* F32 only: clattn__gemm (CLBlast or the CPU GEMM) */
    CLATTN_LM_PATH_COUNT
} clattn__lm_path;

/* Token rows up to which AUTO reads the weights with a matrix-vector
 * kernel (see weights_lp.c). */
#define CLATTN_LM_GEMV_MAX_T 8

/* clattn__lm_linear through the given path (CLATTN_LM_PATH_GEMM_BLAS with
 * a weight other than F32 is CLATTN_ERR_UNSUPPORTED). The matrix-vector
 * paths take any T, CLATTN_LM_GEMV_MAX_T rows per launch. */
clattn_status clattn__lm_linear_path(clattn_ctx *ctx, clattn__lm_path path,
                                     const clattn__lm_matrix *w, cl_mem bias, cl_mem x,
                                     size_t x_off, int64_t T, cl_mem y, size_t y_off,
                                     bool accumulate, const char *what);

/* ---- decode_attention.c: split-KV attention over a KV cache ------------- */

/* KV cache of one layer: k and v, each [slots, Hkv, capacity, D] of
 * float32 or half (f16 set), one slot per sequence. */
typedef struct clattn__kv_layer {
    cl_mem k, v;
} clattn__kv_layer;

/* A few new query rows per sequence against that sequence's cache.
 *   q:   float32 [n_seq * rows, Hq * D] token rows: element (s, r, h, d) at
 *        ((s * rows + r) * Hq + h) * D + d
 *   out: float32, the same layout
 *   slot[s]: the sequence's cache slot; len[s]: keys in the cache for it,
 *   including the rows new ones already stored (rows <= len[s] <=
 *   capacity). Host arrays, read during the call.
 * New row r of sequence s is at position len[s] - rows + r and sees keys
 * j <= that position (causal) and j >= position - window_left
 * (window_left -1: unlimited). Softmax(scale * q.k) . v in float32 with
 * a log-sum-exp merge of the key chunks. */
typedef struct clattn__decode_args {
    int32_t n_seq, rows, n_q_heads, n_kv_heads, head_dim, capacity;
    bool f16;                 /* cache elements are half */
    const clattn__kv_layer *cache;
    const int32_t *slot, *len;
    int32_t window_left;
    float scale;
    cl_mem q, out;
} clattn__decode_args;

clattn_status clattn__lm_decode_attention(clattn_ctx *ctx, const clattn__decode_args *a);


/* ---- config.c: config.json and generation_config.json ----------------- */

/* The two layer shapes clattn runs. */
typedef enum clattn__lm_family {
    CLATTN_LM_LLAMA = 0,   /* Llama, Mistral, Qwen2: RMSNorm, RoPE, SwiGLU */
    CLATTN_LM_GPT2 = 1     /* GPT-2: LayerNorm, learned positions, MLP */
} clattn__lm_family;

/* The rope scaling types: the public clattn_rope_type (clattn_rotary
 * takes the same frequencies, computed by nn/decoder_ops.c). */
typedef clattn_rope_type clattn__rope_type;

#define CLATTN_LM_MAX_LAYERS 1024

/* Everything the forward pass needs from the folder's JSON files. */
typedef struct clattn__lm_config {
    clattn__lm_family family;
    char architecture[64], model_type[32];
    int32_t vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, max_pos;
    float norm_eps;
    bool tied;
    bool qkv_bias, o_bias, mlp_bias;   /* GPT-2: all true */
    clattn_activation act;             /* GPT-2's MLP activation (Llama: SiLU) */
    /* Per layer: keys a query sees before itself (the window's left side),
     * -1 for full attention. Mistral: sliding_window - 1 everywhere; Qwen2:
     * from layer_types / use_sliding_window and max_window_layers. */
    int32_t *window_left;              /* [layers], malloc'd */
    int32_t sliding_window;            /* the config's value; 0: none */
    double rope_theta;
    clattn__rope_type rope_type;
    double rope_factor, rope_low_freq, rope_high_freq;
    int32_t rope_original_max;
    int32_t bos_id, n_eos, eos_ids[CLATTN_LM_MAX_EOS];
} clattn__lm_config;

/* Reads dir/config.json (both spellings, see clattn_lm_load) and
 * dir/generation_config.json (optional) into c. */
clattn_status clattn__lm_config_read(clattn_ctx *ctx, const char *dir, clattn__lm_config *c);
void clattn__lm_config_free(clattn__lm_config *c);

/* inv_freq[0 .. head_dim/2) of the rotary embedding, computed in float32
 * in the order transformers' rope initialisers compute it: nn's
 * clattn__rope_inv_freq, which clattn_rotary uses too. */
void clattn__lm_rope_inv_freq(const clattn__lm_config *c, float *inv_freq);


/* ---- model_files.c: the folder's safetensors files ---------------------- */

#define CLATTN_LM_MAX_SHARDS 256

typedef struct clattn__lm_files {
    clattn_weights *files[CLATTN_LM_MAX_SHARDS];
    char *names[CLATTN_LM_MAX_SHARDS];
    int32_t count;
} clattn__lm_files;

/* Opens dir/model.safetensors, or every shard of
 * dir/model.safetensors.index.json (a missing shard is CLATTN_ERR_IO
 * naming it). */
clattn_status clattn__lm_files_open(clattn_ctx *ctx, const char *dir, clattn__lm_files *f);
void clattn__lm_files_close(clattn__lm_files *f);

/* The tensor called name in any of the files, or NULL (no error set). */
const clattn_weight_info *clattn__lm_files_find(const clattn__lm_files *f, const char *name);

/* Bytes of every tensor of every file. */
uint64_t clattn__lm_files_bytes(const clattn__lm_files *f);

/* ---- model.c: the weights on the device --------------------------------- */

/* One decoder layer. Fused matrices keep their parts' rows in order:
 * qkv = [q (Hq D rows); k (Hkv D); v (Hkv D)], gate_up = [gate; up]. */
typedef struct clattn__lm_layer {
    cl_mem norm1_w, norm1_b, norm2_w, norm2_b;  /* float32 [hidden]; b GPT-2 only */
    clattn__lm_matrix qkv, o, gate_up, down;    /* GPT-2: gate_up is c_fc */
    cl_mem qkv_b, o_b, gate_up_b, down_b;       /* float32 or NULL */
} clattn__lm_layer;

struct clattn_lm {
    clattn_ctx *ctx;
    clattn__lm_config cfg;
    clattn__lm_matrix embed;                    /* [vocab, hidden] */
    clattn__lm_matrix pos_embed;                /* GPT-2: [max_pos, hidden] */
    clattn__lm_matrix head_own;                 /* untied lm_head, else unused */
    const clattn__lm_matrix *head;              /* &head_own or &embed */
    cl_mem final_w, final_b;                    /* final norm */
    cl_mem inv_freq;                            /* float32 [head_dim / 2] */
    clattn__lm_layer *layer;                    /* [layers] */
    clattn_tokenizer *tokenizer;                /* NULL without tokenizer.json */
    clattn_dtype dtype;
    uint64_t file_bytes, device_bytes;
    int32_t n_sessions;
};


/* Releases *m if set and clears it (model.c). */
void clattn__lm_release_mem(cl_mem *m);

/* ---- session.c / forward.c: the KV cache and the forward pass ----------- */

/* Rows one forward pass takes at most: longer prompts are prefilled in
 * chunks of this many positions, which bounds the work buffers. */
#define CLATTN_LM_CHUNK 512
/* Rows of logits computed at once when every position's are wanted. */
#define CLATTN_LM_LOGIT_BLOCK 32

struct clattn_lm_session {
    clattn_lm *lm;
    clattn_ctx *ctx;
    int32_t n_seq, cap;          /* sequences, positions each */
    bool f16;                    /* cache in half */
    int32_t max_rows;            /* rows of the work buffers */
    clattn__kv_layer *kv;        /* [layers]: k, v [n_seq, Hkv, cap, D] */
    int32_t *len;                /* [n_seq] positions held */
    bool *has_logits;            /* [n_seq] last_logits row is current */
    cl_mem last_logits;          /* float32 [n_seq, vocab] */
    /* Work buffers, float32 token rows [max_rows, width]. */
    cl_mem x, h, qkv, q, attn, mlp, act;
    cl_mem logits;               /* [max(CLATTN_LM_LOGIT_BLOCK, n_seq), vocab] */
    cl_mem ids, pos, slot;       /* int32 [max_rows] */
    clattn__buffer kv_f32;       /* prefill: one slot's cache in float32 */
    clattn__buffer rows_tmp;     /* prefill fallback: q of a row block */
    clattn__buffer rows_out;     /* prefill fallback: out of a row block */
    uint64_t cache_bytes;
    /* want_attention (attention_map.c): each layer's query of each
     * sequence's last position, after RoPE, float32 [n_seq, layers, Hq D],
     * kept by forward.c; NULL without want_attention. */
    cl_mem last_q;
    bool *has_last_q;            /* [n_seq] last_q rows are current */
    clattn__buffer map_q, map_out, map_w; /* attention_map.c's work buffers */
};

/* Copies row `row` of s->q (one token's queries of layer l, after RoPE)
 * into sequence slot's row of s->last_q; a no-op without want_attention. */
clattn_status clattn__lm_keep_query(clattn_lm_session *s, int32_t l, int32_t row, int32_t slot);

/* Runs T rows through the model: row t is token ids[t] at position pos[t]
 * of sequence slot[t] (host arrays, already checked). prefill: all rows
 * belong to slot[0] at consecutive positions after its cached ones; else
 * one row for each of T distinct sequences. Leaves the final-normed rows
 * in s->h. */
clattn_status clattn__lm_forward(clattn_lm_session *s, int32_t T, const int32_t *ids,
                                 const int32_t *pos, const int32_t *slot, bool prefill);

/* logits [rows, vocab] of the rows r0 .. r0 + rows of s->h into the device
 * buffer out at row out_row (rows <= CLATTN_LM_LOGIT_BLOCK, or n_seq). */
clattn_status clattn__lm_head(clattn_lm_session *s, int32_t r0, int32_t rows, cl_mem out,
                              int32_t out_row);

/* ---- lm_kernels.c: the per-token steps (cl/lm/lm_kernels.cl) ------------ */

/* y[rows, cols] = RMSNorm(x) * w; y may be x. */
clattn_status clattn__lm_rms_norm(clattn_ctx *ctx, cl_mem x, cl_mem w, cl_mem y, size_t rows,
                                  size_t cols, float eps);

/* Splits qkv [T, (Hq + 2 Hkv) D] into q [T, Hq D] and the cache at
 * (slot[t], pos[t]) (device int buffers), rotating q and k when inv_freq
 * is not NULL. */
clattn_status clattn__lm_rope_store(clattn_ctx *ctx, cl_mem qkv, cl_mem q, const clattn__kv_layer *kv,
                                    bool f16, cl_mem pos, cl_mem slot, cl_mem inv_freq, int T,
                                    int hq, int hkv, int d, int cap);

/* out [T, inter] = silu(gate) * up of gu [T, 2 inter]. */
clattn_status clattn__lm_swiglu(clattn_ctx *ctx, cl_mem gu, cl_mem out, int T, int inter);

/* out [2, Hkv, m, D] float32: positions 0 .. m-1 of slot's keys, then
 * values. */
clattn_status clattn__lm_cache_gather(clattn_ctx *ctx, const clattn__kv_layer *kv, bool f16,
                                      int slot, int hkv, int d, int cap, int m, cl_mem out);
/* The same with the number of key chunks per (sequence, kv head) forced to
 * n_chunks (0: decode_attention.c's rule; at most 4096), raised where its
 * chunk-length limits (accuracy, the device's loop budget) need more;
 * *used (may be NULL) gets the count that ran. Tests use it to reach many,
 * tiny and empty chunks. */
clattn_status clattn__lm_decode_attention_split(clattn_ctx *ctx, const clattn__decode_args *a,
                                                int32_t n_chunks, int32_t *used);

#endif /* CLATTN_LM_H */
