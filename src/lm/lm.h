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

#endif /* CLATTN_LM_H */
