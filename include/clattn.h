/*
 * clattn.h - portable attention and transformer runtime over OpenCL.
 *
 * This header is the manual. Read it top to bottom.
 *
 *     clattn_ctx *ctx;
 *     if (clattn_ctx_create(NULL, &ctx) != CLATTN_OK) {      // first GPU, else first device
 *         fprintf(stderr, "%s\n", clattn_last_error());
 *         return 1;
 *     }
 *     int64_t shape[2] = {3, 4};
 *     clattn_tensor *t;
 *     clattn_tensor_create(ctx, 2, shape, &t);                // float32 [3, 4] on the device
 *     clattn_tensor_write(t, host_data);                      // 12 floats
 *     ...
 *     clattn_tensor_destroy(t);
 *     clattn_ctx_destroy(ctx);
 *
 * Build: cc prog.c $(pkg-config --cflags --libs clattn)
 *
 * Conventions that hold for every function below
 * -----------------------------------------------
 * - Every fallible function returns clattn_status: CLATTN_OK (0) or a negative
 *   error. Results come back through out-parameters, which are left untouched
 *   (or set to NULL for handles) on failure.
 * - On failure, a message with the details (the offending argument and its
 *   shape, the OpenCL error name and code, the compiler log) is kept in the
 *   context (clattn_ctx_last_error) and in a per-thread slot
 *   (clattn_last_error), which also serves calls that have no context yet.
 * - The library never prints, never exits or aborts, and frees everything it
 *   allocated on every error path. Destroy functions accept NULL.
 * - Tensors are float32, row-major and contiguous. Shapes are written
 *   [outermost, ..., innermost].
 * - Thread safety: different contexts may be used from different threads at
 *   the same time. One context (and the tensors made from it) must be used by
 *   one thread at a time; the caller serialises access. Functions that take no
 *   context (clattn_status_str, device enumeration) are thread-safe.
 * - Device work is enqueued on the context's in-order queue. Functions that
 *   return data to host memory block until it is there; others may return
 *   before the device is done (clattn_ctx_finish waits).
 *
 * Environment variables (read once per call that needs them, never elsewhere):
 *   CLATTN_DEVICE      device selector, see clattn_ctx_params.device
 *   CLATTN_CACHE_DIR   program binary cache directory, "off" disables it
 *   CLATTN_KERNEL_DIR  read kernel sources from this directory instead of the
 *                      copies embedded in the library (kernel development)
 *   CLATTN_ATTENTION_KERNEL  "cpu" or "tiled": force a fused attention kernel
 *                      family, see clattn_ctx_params.attention_kernel
 *   XDG_CACHE_HOME, HOME   default cache location ($XDG_CACHE_HOME/clattn,
 *                      else ~/.cache/clattn)
 */
#ifndef CLATTN_H
#define CLATTN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CLATTN_API marks the exported symbols; everything else in the shared
 * library is hidden. CLATTN_STATIC is defined by users of the static library
 * on platforms where that matters (it does not on ELF). */
#if defined(_WIN32) && !defined(CLATTN_STATIC)
#ifdef CLATTN_BUILDING
#define CLATTN_API __declspec(dllexport)
#else
#define CLATTN_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define CLATTN_API __attribute__((visibility("default")))
#else
#define CLATTN_API
#endif

#define CLATTN_VERSION_MAJOR 0
#define CLATTN_VERSION_MINOR 1
#define CLATTN_VERSION_PATCH 0
#define CLATTN_VERSION_STRING "0.1.0"

/* Version of the library actually linked (may differ from the header). */
CLATTN_API const char *clattn_version(void);

/* ======================================================================== */
/* Status codes                                                              */
/* ======================================================================== */

/* Values are only ever appended. */
typedef enum clattn_status {
    CLATTN_OK = 0,
    CLATTN_ERR_INVALID_ARG = -1,   /* NULL pointer, bad shape, bad option */
    CLATTN_ERR_NO_DEVICE = -2,     /* no OpenCL device, or none matched the selector */
    CLATTN_ERR_BUILD = -3,         /* an OpenCL program failed to compile (log in message) */
    CLATTN_ERR_OUT_OF_MEMORY = -4, /* host or device allocation failed or is over a limit */
    CLATTN_ERR_IO = -5,            /* a file could not be opened, read or written */
    CLATTN_ERR_FORMAT = -6,        /* a file is malformed */
    CLATTN_ERR_UNSUPPORTED = -7,   /* valid, but not something clattn can do (yet) */
    CLATTN_ERR_OPENCL = -8,        /* an OpenCL or CLBlast call failed (code in message) */
    CLATTN_ERR_INTERNAL = -9       /* a bug in clattn; please report the message */
} clattn_status;

/* Short constant name of a status, e.g. "CLATTN_ERR_NO_DEVICE". Never NULL. */
CLATTN_API const char *clattn_status_str(clattn_status status);

/* Detailed message of the last failed call made on this thread, "" if none.
 * Valid until the next clattn call on this thread. */
CLATTN_API const char *clattn_last_error(void);

/* ======================================================================== */
/* Devices                                                                   */
/* ======================================================================== */

typedef enum clattn_device_type {
    CLATTN_DEVICE_OTHER = 0,
    CLATTN_DEVICE_CPU = 1,
    CLATTN_DEVICE_GPU = 2,
    CLATTN_DEVICE_ACCELERATOR = 3
} clattn_device_type;

/* What clattn knows about one OpenCL device; queried once per context. */
typedef struct clattn_device_info {
    int32_t platform_index;        /* position in clGetPlatformIDs order */
    int32_t device_index;          /* position within its platform */
    int32_t flat_index;            /* position among all devices of all platforms */
    char platform_name[128];
    char platform_version[128];
    char device_name[128];
    char vendor[128];
    char device_version[128];      /* "OpenCL 3.0 ..." */
    char driver_version[128];
    char opencl_c_version[128];    /* "OpenCL C 1.2 ..." */
    clattn_device_type type;
    uint32_t compute_units;
    uint32_t max_clock_mhz;
    size_t max_work_group_size;
    uint64_t local_mem_bytes;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;      /* largest single buffer */
    bool fp16;                     /* cl_khr_fp16 */
    bool fp64;                     /* cl_khr_fp64 */
    bool subgroups;                /* cl_khr_subgroups or cl_intel_subgroups */
} clattn_device_info;

/* Number of OpenCL devices on all platforms (platforms without devices
 * contribute none). Returns CLATTN_OK with *count = 0 when the ICD loader
 * finds no platform at all. */
CLATTN_API clattn_status clattn_device_count(int32_t *count);

/* Information about device number flat_index (0 .. count-1). */
CLATTN_API clattn_status clattn_device_get_info(int32_t flat_index, clattn_device_info *info);

/* Applies the device-choice rules (see clattn_ctx_params.device) without
 * creating a context. selector NULL means: $CLATTN_DEVICE, else the default.
 * On success *flat_index is the device a context would use. Fails with
 * CLATTN_ERR_NO_DEVICE and a message listing every device when nothing
 * matches. */
CLATTN_API clattn_status clattn_device_select(const char *selector, int32_t *flat_index);

/* ======================================================================== */
/* Context                                                                   */
/* ======================================================================== */

typedef struct clattn_ctx clattn_ctx;

typedef enum clattn_log_level {
    CLATTN_LOG_DEBUG = 0,
    CLATTN_LOG_INFO = 1,
    CLATTN_LOG_WARN = 2,
    CLATTN_LOG_ERROR = 3
} clattn_log_level;

/* Called from the thread that made the clattn call; msg has no newline. */
typedef void (*clattn_log_fn)(void *user, clattn_log_level level, const char *msg);

typedef struct clattn_ctx_params {
    /* Device selector; NULL means $CLATTN_DEVICE, and if that is unset too,
     * the first GPU, else the first device of any type. A selector is
     *   "N"    the N-th device counting all devices of all platforms,
     *   "P:D"  device D of platform P (platforms numbered as clinfo -l does),
     *   text   the first device whose platform or device name contains the
     *          text, case-insensitively ("rusticl", "nvidia", "gfx1100"); if
     *          none does, the first whose platform version or vendor string
     *          contains it ("pocl" matches POCL's "OpenCL 3.0 PoCL ..."). */
    const char *device;
    /* Program binary cache directory; NULL means $CLATTN_CACHE_DIR, else
     * $XDG_CACHE_HOME/clattn, else $HOME/.cache/clattn. "off" disables the
     * cache. An unusable directory silently disables it (the log says why). */
    const char *cache_dir;
    /* Directory with the .cl kernel sources; NULL means $CLATTN_KERNEL_DIR,
     * and if unset the sources embedded in the library are used. */
    const char *kernel_dir;
    /* Fused attention kernel family: "cpu" (registers, for CPU devices) or
     * "tiled" (local-memory tiles, for GPUs). NULL means
     * $CLATTN_ATTENTION_KERNEL, else chosen from the device type. Both give
     * the same results; this exists to test and tune them anywhere. */
    const char *attention_kernel;
    /* true (the default): on devices where clattn has measured better CLBlast
     * GEMM parameters than CLBlast's database (CPU devices, POCL), apply
     * them. false leaves CLBlast's own choice (for comparisons). CLBlast
     * keeps such parameters per device for the whole process. */
    bool gemm_tuning;
    clattn_log_fn log;             /* optional; NULL logs nothing */
    void *log_user;
    clattn_log_level log_level;    /* messages below this level are dropped */
} clattn_ctx_params;

/* Defaults: every field NULL/0 except gemm_tuning = true and
 * log_level = CLATTN_LOG_INFO. */
CLATTN_API clattn_ctx_params clattn_ctx_params_default(void);

/* Creates a context on the selected device: an OpenCL context and in-order
 * queue, the device's capabilities, the kernels compiled (or loaded from the
 * binary cache), and CLBlast tuned for the device where clattn has tuned
 * parameters. params may be NULL for the defaults.
 * Errors: CLATTN_ERR_NO_DEVICE (message lists the devices found),
 * CLATTN_ERR_BUILD (message holds the compiler log), CLATTN_ERR_OPENCL,
 * CLATTN_ERR_OUT_OF_MEMORY. Destroy with clattn_ctx_destroy. */
CLATTN_API clattn_status clattn_ctx_create(const clattn_ctx_params *params, clattn_ctx **out);

/* Creates a context on a caller's OpenCL context and queue (interop). Both
 * are retained and released again by clattn_ctx_destroy; the device is the
 * queue's. The queue must be in-order. params->device is ignored. */
CLATTN_API clattn_status clattn_ctx_create_from_cl(cl_context cl_ctx, cl_command_queue queue,
                                                   const clattn_ctx_params *params,
                                                   clattn_ctx **out);

/* Waits for the queue, then frees everything. NULL is a no-op. Tensors made
 * from the context must be destroyed first. */
CLATTN_API void clattn_ctx_destroy(clattn_ctx *ctx);

/* Blocks until all work enqueued on the context has finished. */
CLATTN_API clattn_status clattn_ctx_finish(clattn_ctx *ctx);

/* Details of the last failure on this context, "" if none. Owned by the
 * context; valid until the next failing call on it. */
CLATTN_API const char *clattn_ctx_last_error(const clattn_ctx *ctx);

/* The device this context runs on. */
CLATTN_API clattn_status clattn_ctx_device_info(const clattn_ctx *ctx, clattn_device_info *info);

/* The underlying OpenCL objects (owned by the context; do not release). */
CLATTN_API cl_context clattn_ctx_cl_context(const clattn_ctx *ctx);
CLATTN_API cl_command_queue clattn_ctx_cl_queue(const clattn_ctx *ctx);
CLATTN_API cl_device_id clattn_ctx_cl_device(const clattn_ctx *ctx);

/* How this context obtained its OpenCL programs so far: compiled from source
 * or loaded from the on-disk binary cache, and the time it took. Programs
 * specialised at run time (attention head sizes, user snippets) are added as
 * they are built. */
typedef struct clattn_build_stats {
    int32_t programs_from_source;
    int32_t programs_from_cache;
    double build_ms;               /* wall time spent obtaining programs */
    bool cache_enabled;
    char cache_dir[512];           /* "" when disabled */
} clattn_build_stats;

CLATTN_API clattn_status clattn_ctx_build_stats(const clattn_ctx *ctx, clattn_build_stats *stats);

/* ======================================================================== */
/* Tensors                                                                   */
/* ======================================================================== */

#define CLATTN_MAX_DIMS 4

typedef struct clattn_tensor clattn_tensor;

/* Creates an uninitialised float32 tensor of shape[0..ndim-1] (1 <= ndim <= 4,
 * every extent >= 1) on the context's device. The byte size is checked for
 * overflow and against the device's largest allocation before allocating;
 * failures (CLATTN_ERR_INVALID_ARG, CLATTN_ERR_OUT_OF_MEMORY) name the shape,
 * the size and the limit. Destroy with clattn_tensor_destroy. */
CLATTN_API clattn_status clattn_tensor_create(clattn_ctx *ctx, int32_t ndim, const int64_t *shape,
                                              clattn_tensor **out);

/* Frees the device buffer. NULL is a no-op. */
CLATTN_API void clattn_tensor_destroy(clattn_tensor *t);

/* Copies numel(t) floats from host memory into the tensor; blocking. */
CLATTN_API clattn_status clattn_tensor_write(clattn_tensor *t, const float *src);

/* Copies numel(t) floats from the tensor into host memory; blocking. */
CLATTN_API clattn_status clattn_tensor_read(const clattn_tensor *t, float *dst);

/* Range versions: elements [offset, offset + count) of the flattened tensor.
 * A range past the end is CLATTN_ERR_INVALID_ARG. count 0 is a no-op. */
CLATTN_API clattn_status clattn_tensor_write_range(clattn_tensor *t, size_t offset, size_t count,
                                                   const float *src);
CLATTN_API clattn_status clattn_tensor_read_range(const clattn_tensor *t, size_t offset,
                                                  size_t count, float *dst);

/* Sets every element to value (on the device; non-blocking). */
CLATTN_API clattn_status clattn_tensor_fill(clattn_tensor *t, float value);

/* Number of dimensions; shape copied into shape[0..ndim-1] when not NULL. */
CLATTN_API int32_t clattn_tensor_shape(const clattn_tensor *t, int64_t *shape);

/* Number of elements. */
CLATTN_API size_t clattn_tensor_numel(const clattn_tensor *t);

/* The tensor's buffer (owned by the tensor), for use with raw OpenCL. */
CLATTN_API cl_mem clattn_tensor_cl_mem(const clattn_tensor *t);

/* ======================================================================== */
/* Matrix products                                                          */
/* ======================================================================== */

/* c = alpha * op(a) @ op(b) + beta * c, through CLBlast, where op(x) is x or
 * its transpose over the last two dimensions.
 *   a: [M, K] (or [K, M] if trans_a)      b: [K, N] (or [N, K] if trans_b)
 *   c: [M, N]
 * With 3 dimensions the leading one is a batch: a [Ba, ., .], b [Bb, ., .],
 * c [B, M, N], where Ba and Bb are B or 1 (a batch of 1 is broadcast).
 * c must not alias a or b. Errors: CLATTN_ERR_INVALID_ARG naming the shapes. */
CLATTN_API clattn_status clattn_matmul(clattn_ctx *ctx, const clattn_tensor *a, bool trans_a,
                                       const clattn_tensor *b, bool trans_b, float alpha,
                                       float beta, clattn_tensor *c);

/* ======================================================================== */
/* Scaled dot-product attention                                             */
/* ======================================================================== */

/*   q:   [B, Hq,  N, D]      k: [B, Hkv, M, D]      v: [B, Hkv, M, Dv]
 *   out: [B, Hq,  N, Dv]
 * Hq % Hkv == 0; query head h reads key/value head h / (Hq / Hkv), which
 * covers multi-head (Hq == Hkv), grouped-query and multi-query (Hkv == 1)
 * attention. D and Dv are 1..256; N, M >= 1; B >= 1.
 *
 * For query i and key j of batch b and query head h:
 *   score = scale * q_i . k_j            (CLATTN_SCORE_DOT)
 *   score = scale * q_i . k_j / (max(|q_i|, 1e-12) * max(|k_j|, 1e-12))
 *                                        (CLATTN_SCORE_COSINE; scale is the
 *                                         temperature, e.g. 1/tau)
 *   score += bias[b, h, i, j]            (if bias is given; broadcast)
 *   score = score_mod(score, ...)        (if a score_mod snippet is given)
 * Key j is visible to query i only if all of these hold:
 *   - window: i + M - N - window_left <= j <= i + M - N + window_right
 *     (aligned bottom-right as in FlashAttention; -1 leaves a side
 *     unlimited; causal sets window_right = 0);
 *   - j < kv_len[b] (key padding), if kv_len is given;
 *   - mask_mod(...) is true, if a mask_mod snippet is given;
 *   - the score is not -inf (so a bias of -inf entries is a boolean mask).
 * out_i = sum over visible j of softmax(score)_j * v_j. A query row with no
 * visible key gives out_i = 0 and lse_i = -inf, never NaN. */

typedef enum clattn_score {
    CLATTN_SCORE_DOT = 0,
    CLATTN_SCORE_COSINE = 1
} clattn_score;

/* Which implementation runs. AUTO uses the fused kernel unless weights are
 * requested; UNFUSED (GEMM, softmax kernel, GEMM) materialises the N x M
 * scores and serves as a second implementation for tests and benchmarks. */
typedef enum clattn_sdpa_impl {
    CLATTN_SDPA_AUTO = 0,
    CLATTN_SDPA_FUSED = 1,     /* weights must be NULL */
    CLATTN_SDPA_UNFUSED = 2
} clattn_sdpa_impl;

/* Which named preset filled the snippet fields (see the presets below). */
typedef enum clattn_sdpa_preset {
    CLATTN_PRESET_NONE = 0,
    CLATTN_PRESET_ALIBI = 1,
    CLATTN_PRESET_SOFTCAP = 2,
    CLATTN_PRESET_RELPOS = 3
} clattn_sdpa_preset;

typedef struct clattn_sdpa_params {
    float scale;                /* 0: 1/sqrt(D) */
    clattn_score score;
    bool causal;                /* same as window_right = 0 */
    int32_t window_left;        /* -1: unlimited */
    int32_t window_right;       /* -1: unlimited */
    /* Host array of B key counts, 0 <= kv_len[b] <= M; keys from kv_len[b]
     * on are masked. NULL: all M keys valid. Read during the call only. */
    const int32_t *kv_len;
    /* Additive bias broadcastable to [B, Hq, N, M]: 2 to 4 dimensions,
     * aligned right ([N, M], [Hq, N, M], [B, Hq, N, M]), each leading
     * extent equal to the full one or 1; the last must be M. -inf entries
     * mask keys. NULL: none. */
    const clattn_tensor *bias;
    /* Optional outputs: the attention probabilities [B, Hq, N, M] (selects
     * the unfused path) and the log-sum-exp of the scores [B, Hq, N]
     * (natural log; -inf for rows with no visible key). */
    clattn_tensor *weights;
    clattn_tensor *lse;
    /* User snippets: OpenCL C expressions compiled into a specialised kernel
     * at run time (and cached like every program). Both see
     *   int b, h, q_idx, kv_idx, n_q (= N), n_kv (= M);
     *   __global const float *buf (mod_buffer's data, or a dummy);
     *   float p0, p1, p2, p3 (mod_params);
     * score_mod also sees float score and returns the new score;
     * mask_mod returns non-zero when key kv_idx is visible to q_idx.
     * Example: score_mod = "score - buf[h] * abs(q_idx - kv_idx)".
     * A snippet that does not compile gives CLATTN_ERR_BUILD with the
     * compiler's log in the message. NULL: none. */
    const char *score_mod;
    const char *mask_mod;
    const clattn_tensor *mod_buffer;
    float mod_params[4];
    clattn_sdpa_impl impl;
    /* Set by the preset functions below so that clattn_sdpa can check their
     * buffers against the problem's shape; CLATTN_PRESET_NONE for user
     * snippets, whose buf indexing is the user's responsibility. */
    clattn_sdpa_preset preset;
} clattn_sdpa_params;

/* scale 0, dot score, no causal, windows -1, everything else NULL/0. */
CLATTN_API clattn_sdpa_params clattn_sdpa_params_default(void);

/* out = attention(q, k, v) as described above. out must not alias the
 * inputs. Non-blocking (clattn_ctx_finish or a read waits).
 * Errors: CLATTN_ERR_INVALID_ARG naming the argument and the shapes;
 * CLATTN_ERR_BUILD for snippets that do not compile; CLATTN_ERR_OUT_OF_MEMORY
 * when scratch or the unfused N x M scores do not fit on the device. */
CLATTN_API clattn_status clattn_sdpa(clattn_ctx *ctx, const clattn_tensor *q,
                                     const clattn_tensor *k, const clattn_tensor *v,
                                     clattn_tensor *out, const clattn_sdpa_params *p);

/* ---- named score_mod presets (each sets score_mod, mod_buffer, mod_params
 *      and preset; one preset per call, since they share those fields; a
 *      mask_mod may be combined with any). clattn_sdpa checks the buffers:
 *      too small a table is CLATTN_ERR_INVALID_ARG. --------------------- */

/* ALiBi: score -= slope[h] * |i + M - N - j| (the bottom-right aligned
 * distance, as FlashAttention's alibi_slopes). slopes: [Hq], borrowed. */
CLATTN_API void clattn_sdpa_preset_alibi(clattn_sdpa_params *p, const clattn_tensor *slopes);

/* The standard ALiBi slopes for n_heads heads (the geometric sequence of
 * the ALiBi paper, interleaved for non-powers of two) into slopes[n_heads]. */
CLATTN_API void clattn_alibi_slopes(int32_t n_heads, float *slopes);

/* Tanh soft-capping: score = cap * tanh(score / cap), cap > 0. */
CLATTN_API void clattn_sdpa_preset_softcap(clattn_sdpa_params *p, float cap);

/* Learned relative-position bias: score += table[h, clamp(j - i, -R, R) + R]
 * with table: [Hq, 2R + 1] (borrowed) and R = max_distance >= 0. */
CLATTN_API void clattn_sdpa_preset_relpos(clattn_sdpa_params *p, const clattn_tensor *table,
                                          int32_t max_distance);

/* ======================================================================== */
/* Classic attention scores: additive (Bahdanau) and general (Luong)         */
/* ======================================================================== */

/*   q: [B, N, Dq]    k: [B, M, Dk]    v: [B, M, Dv]    out: [B, N, Dv]
 * out_i = sum_j softmax_j(score(q_i, k_j)) v_j over keys j < kv_len[b]; a
 * row with no valid key gives zeros. */
typedef struct clattn_classic_params {
    const int32_t *kv_len;   /* host [B], as in clattn_sdpa_params; NULL: all */
    clattn_tensor *weights;  /* optional output [B, N, M] */
} clattn_classic_params;

CLATTN_API clattn_classic_params clattn_classic_params_default(void);

/* Additive: score(q, k) = w . tanh(W_q q + W_k k), with w_q [A, Dq],
 * w_k [A, Dk], w [A] (PyTorch Linear layout: [out, in]). */
CLATTN_API clattn_status clattn_additive_attention(clattn_ctx *ctx, const clattn_tensor *q,
                                                   const clattn_tensor *k,
                                                   const clattn_tensor *v,
                                                   const clattn_tensor *w_q,
                                                   const clattn_tensor *w_k,
                                                   const clattn_tensor *w, clattn_tensor *out,
                                                   const clattn_classic_params *p);

/* Multiplicative ("general"): score(q, k) = q^T W k with W [Dq, Dk]. */
CLATTN_API clattn_status clattn_general_attention(clattn_ctx *ctx, const clattn_tensor *q,
                                                  const clattn_tensor *k,
                                                  const clattn_tensor *v,
                                                  const clattn_tensor *w, clattn_tensor *out,
                                                  const clattn_classic_params *p);

/* ======================================================================== */
/* Layers                                                                    */
/* ======================================================================== */

/* Transformer building blocks with PyTorch's forward semantics (float32).
 * Common rules for this section:
 * - "[..., E]" means 1 to 4 dimensions (linear: 2 to 4) whose last extent is
 *   E; the leading ones are flattened into rows.
 * - Shapes are checked before any device work: a wrong ndim or extent, a
 *   NULL tensor, or a tensor of another context is CLATTN_ERR_INVALID_ARG
 *   with a message naming the argument and the shapes.
 * - Outputs are written by kernels enqueued on the context's queue; the
 *   calls return before the device is done (a read or clattn_ctx_finish
 *   waits). Inputs are borrowed for the call only.
 * - Thread safety: as for every context function (one thread at a time per
 *   context). */

/* Activation functions. Values are only ever appended. */
typedef enum clattn_activation {
    CLATTN_ACT_NONE = 0,
    CLATTN_ACT_RELU = 1,       /* max(x, 0); NaN stays NaN */
    CLATTN_ACT_GELU = 2,       /* 0.5 x (1 + erf(x / sqrt 2)): nn.GELU() */
    CLATTN_ACT_GELU_TANH = 3,  /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))):
                                  nn.GELU(approximate='tanh') */
    CLATTN_ACT_SILU = 4        /* x * sigmoid(x): nn.SiLU() */
} clattn_activation;

/* y = act(x W^T + b), i.e. nn.Linear followed by an activation.
 *   x: [..., in] (2 to 4 dims)   w: [out, in] (nn.Linear's weight layout)
 *   b: [out] or NULL             y: [..., out], same leading dims as x
 * The product runs on CLBlast; bias and activation are then applied in one
 * fused elementwise pass (skipped when b is NULL and act is NONE). y must
 * not alias x, w or b. Errors: CLATTN_ERR_INVALID_ARG (shapes, aliasing,
 * unknown act), CLATTN_ERR_OPENCL. */
CLATTN_API clattn_status clattn_linear(clattn_ctx *ctx, const clattn_tensor *x,
                                       const clattn_tensor *w, const clattn_tensor *b,
                                       clattn_activation act, clattn_tensor *y);

/* y = act(x) elementwise. x: any shape; y: the same shape, may be x (in
 * place). Errors: CLATTN_ERR_INVALID_ARG (shapes, unknown act). */
CLATTN_API clattn_status clattn_activation_apply(clattn_ctx *ctx, const clattn_tensor *x,
                                                 clattn_activation act, clattn_tensor *y);

/* Layer normalisation over the last dimension, as nn.LayerNorm(E):
 *   y = (x - mean) / sqrt(var + eps) * gamma + beta
 * with the biased variance (divide by E).
 *   x: [..., E] (any E >= 1)     y: same shape as x, may be x (in place)
 *   gamma: [E] or NULL (no scale: elementwise_affine=False)
 *   beta:  [E] or NULL (no shift: bias=False)
 * eps must be finite and >= 0 (PyTorch's default is 1e-5). One work-group
 * per row; a corrected two-pass algorithm keeps rows with a large mean
 * and a small spread accurate. Errors: CLATTN_ERR_INVALID_ARG. */
CLATTN_API clattn_status clattn_layer_norm(clattn_ctx *ctx, const clattn_tensor *x,
                                           const clattn_tensor *gamma, const clattn_tensor *beta,
                                           float eps, clattn_tensor *y);

/* y = a + b elementwise (residual connections). a, b, y: the same shape;
 * y may be a or b. Errors: CLATTN_ERR_INVALID_ARG. */
CLATTN_API clattn_status clattn_add(clattn_ctx *ctx, const clattn_tensor *a,
                                    const clattn_tensor *b, clattn_tensor *y);

/* y = alpha * a + beta * b elementwise (scaled residuals such as DeepNet's
 * alpha * x + f(x), or interpolation). Same shape rules as clattn_add. */
CLATTN_API clattn_status clattn_add_scaled(clattn_ctx *ctx, float alpha, const clattn_tensor *a,
                                           float beta, const clattn_tensor *b, clattn_tensor *y);

/* Embedding lookup, as nn.Embedding: y[i, :] = table[ids[i], :].
 *   table: [V, E]
 *   ids:   host array of count >= 1 token ids (int64, as PyTorch's), read
 *          during the call only; each must be in 0 .. V-1
 *   y:     any shape with count * E elements, e.g. [count, E] or [B, N, E]
 * Every id is checked on the host before any device work; an id out of
 * range is CLATTN_ERR_INVALID_ARG naming its position and value. The ids
 * are copied to a device buffer owned by the context (blocking copy).
 * Errors: CLATTN_ERR_INVALID_ARG, CLATTN_ERR_OUT_OF_MEMORY. */
CLATTN_API clattn_status clattn_embedding(clattn_ctx *ctx, const clattn_tensor *table,
                                          const int64_t *ids, size_t count, clattn_tensor *y);

/* Softmax over the last dimension, as torch.softmax(x, dim=-1):
 *   y = exp(x - max) / sum(exp(x - max)), computed stably for any length.
 *   x: [..., N]    y: same shape as x, may be x (in place)
 * As in PyTorch, a row that holds NaN or +inf, or only -inf, gives NaN.
 * Errors: CLATTN_ERR_INVALID_ARG. */
CLATTN_API clattn_status clattn_softmax(clattn_ctx *ctx, const clattn_tensor *x, clattn_tensor *y);

#ifdef __cplusplus
}
#endif

#endif /* CLATTN_H */
