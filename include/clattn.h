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
    CLATTN_ERR_INTERNAL = -9,      /* a bug in clattn; please report the message */
    CLATTN_ERR_CONTEXT_FULL = -10  /* a sequence's KV cache has no room for the positions */
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
    /* Directory with the .cl kernel sources, laid out as the repository's
     * cl/ (core/common.cl, attention/..., nn/...); NULL means
     * $CLATTN_KERNEL_DIR, and if unset the sources embedded in the library
     * are used. */
    const char *kernel_dir;
    /* Fused attention kernel family: "cpu" (registers, for CPU devices) or
     * "tiled" (local-memory tiles, for GPUs). NULL means
     * $CLATTN_ATTENTION_KERNEL, else chosen from the device type. Both give
     * the same results; this exists to test and tune them anywhere. One
     * exception: Mesa's llvmpipe (Rusticl) always gets "tiled", with a
     * warning in the log if "cpu" was asked for, because llvmpipe cuts
     * short the loops of a kernel invocation after 65535 iterations in all
     * and the "cpu" family passes that from a few hundred keys. See
     * clattn_ctx_attention_kernel, clattn_sdpa and clattn_sdpa_backward for
     * what this limit means on llvmpipe. */
    const char *attention_kernel;
    /* true (the default): on devices where clattn has measured better CLBlast
     * GEMM parameters than CLBlast's database (POCL's CPU devices), apply
     * them. false leaves CLBlast's own choice (for comparisons). CLBlast
     * keeps such parameters per device for the whole process. Only matters
     * where CLBlast runs the products (see gemm_kernel). */
    bool gemm_tuning;
    clattn_log_fn log;             /* optional; NULL logs nothing */
    void *log_user;
    clattn_log_level log_level;    /* messages below this level are dropped */
    /* Who runs matrix products: "cpu" (clattn's register-blocked kernel,
     * cl/gemm/gemm.cl, written for CPU devices) or "clblast". NULL means
     * $CLATTN_GEMM_KERNEL, else "cpu" on CPU devices and "clblast" on
     * GPUs. Both give the same results to float rounding. */
    const char *gemm_kernel;
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

/* The fused attention kernel family the context runs: "cpu" or "tiled"
 * (see clattn_ctx_params.attention_kernel); NULL for a NULL ctx. The
 * string is static (never freed by the caller, valid for the process) and
 * fixed at context creation, so any thread may read it. */
CLATTN_API const char *clattn_ctx_attention_kernel(const clattn_ctx *ctx);

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

/* Copies the context's statistics so far into *stats. Errors:
 * CLATTN_ERR_INVALID_ARG for NULL arguments. */
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

/* A new handle on t's data with another shape of the same element count
 * (e.g. [B, N, E] seen as [B * N, E]): writes through either are seen by
 * both. The data lives until both handles are destroyed. Errors:
 * CLATTN_ERR_INVALID_ARG (element counts differ, bad shape). */
CLATTN_API clattn_status clattn_tensor_view(const clattn_tensor *t, int32_t ndim,
                                            const int64_t *shape, clattn_tensor **out);

/* dst = src elementwise (same element count; the shapes may differ).
 * Non-blocking. */
CLATTN_API clattn_status clattn_tensor_copy(const clattn_tensor *src, clattn_tensor *dst);

/* ======================================================================== */
/* Matrix products                                                          */
/* ======================================================================== */

/* c = alpha * op(a) @ op(b) + beta * c, where op(x) is x or its transpose
 * over the last two dimensions. Runs on the context's GEMM backend
 * (clattn_ctx_params.gemm_kernel: clattn's own kernel on CPU devices,
 * CLBlast on GPUs).
 *   a: [M, K] (or [K, M] if trans_a)      b: [K, N] (or [N, K] if trans_b)
 *   c: [M, N]
 * With 3 dimensions the leading one is a batch: a [Ba, ., .], b [Bb, ., .],
 * c [B, M, N], where Ba and Bb are B or 1 (a batch of 1 is broadcast).
 * c must not alias a or b. Errors: CLATTN_ERR_INVALID_ARG naming the shapes;
 * CLATTN_ERR_UNSUPPORTED for k > 65023 with the CPU GEMM on Mesa's llvmpipe
 * (its loop limit, see clattn_ctx_params.attention_kernel). */
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
 * when scratch or the unfused N x M scores do not fit on the device;
 * CLATTN_ERR_UNSUPPORTED for impl = CLATTN_SDPA_FUSED on Mesa's llvmpipe
 * when M is past what its loop limit lets the fused kernel run (about
 * 10600 keys at D = 64, 6500 at 128, 2250 at 256; AUTO then takes the
 * unfused path, which has no such limit). */
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

/* Every field NULL: all keys valid, no weights output. */
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
 * The product runs on the context's GEMM backend. With clattn's CPU GEMM
 * the bias (and ReLU) are added as y is stored; otherwise, and for the
 * other activations, one fused elementwise pass follows (none when b is
 * NULL and act is NONE). y must
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

/* ---- decoder-LM blocks (Llama, Mistral, Qwen2): RMSNorm, rotary
 * embeddings, SwiGLU. clattn_lm_* runs the same kernels and frequencies. */

/* Root-mean-square normalisation over the last dimension, as
 * transformers' LlamaRMSNorm (in float32):
 *   y = x / sqrt(mean(x^2) + eps) * weight
 *   x: [..., E] (any E >= 1)   y: same shape as x, may be x (in place)
 *   weight: [E] or NULL (no scale: y = x / sqrt(mean(x^2) + eps))
 * eps finite and >= 0 (Llama's configs: 1e-5 or 1e-6). A row of zeros
 * with eps = 0 gives NaN (0 / 0), as in PyTorch; a row holding +-inf
 * gives 0 but NaN at the inf (x * rsqrt(inf)), NaN a NaN row. One
 * work-group per row (on CPU devices, for rows up to 8192, one work-item
 * per row, the row walked in 8 lanes).
 * Errors: CLATTN_ERR_INVALID_ARG (shapes, eps, y aliasing weight). */
CLATTN_API clattn_status clattn_rms_norm(clattn_ctx *ctx, const clattn_tensor *x,
                                         const clattn_tensor *weight, float eps,
                                         clattn_tensor *y);

/* How the rotary embedding's frequencies are scaled (config.json's
 * rope_scaling rope_type). Values are only ever appended. */
typedef enum clattn_rope_type {
    CLATTN_ROPE_DEFAULT = 0,   /* inv_freq[i] = theta^(-2i / D) */
    CLATTN_ROPE_LINEAR = 1,    /* inv_freq[i] / factor */
    CLATTN_ROPE_LLAMA3 = 2     /* Llama 3.1's wavelength bands (factor,
                                  low_freq_factor, high_freq_factor,
                                  original_max_position_embeddings) */
} clattn_rope_type;

/* The rotary embedding's frequencies, as transformers' rope initialisers
 * compute them in float32:
 *   inv_freq[i] = 1 / theta^((2i) / D), i < D/2, then scaled by type. */
typedef struct clattn_rope_params {
    double theta;                  /* rope_theta, finite and > 0 */
    clattn_rope_type type;
    double factor;                 /* LINEAR, LLAMA3: > 0 */
    double low_freq_factor;        /* LLAMA3: > 0 */
    double high_freq_factor;       /* LLAMA3: > low_freq_factor */
    int32_t original_max_position; /* LLAMA3: > 0 */
} clattn_rope_params;

/* theta 10000, DEFAULT; factor 1, low 1, high 4, original 8192 (Llama
 * 3.1's values, used only with the types that read them). */
CLATTN_API clattn_rope_params clattn_rope_params_default(void);

/* Rotary position embedding in transformers' half-split layout
 * (apply_rotary_pos_emb with rotate_half): for every head vector v of
 * length D, with a = v[i], b = v[i + D/2], i < D/2, and the angle
 *   angle = (float)position * inv_freq[i]   (one float32 product)
 *   y[i] = a cos(angle) - b sin(angle),  y[i + D/2] = b cos(angle) + a sin(angle).
 *   x, y: [B, N, H, D] or [N, H, D] (B = 1): token-major, as the linear
 *         projections give them (q or k of a decoder, before the
 *         transpose to [B, H, N, D]); D even, >= 2. y may be x (in place).
 *   positions: host int64[B * N], the position of token (b, n) at b * N + n,
 *         each >= 0 and below 2^24 (exact in float32); NULL: n (0 .. N-1
 *         in every sequence). Read during the call only: the positions
 *         and the frequencies go into device buffers made for the call
 *         (4 (B N + D/2) bytes, copied when created).
 *   p: the frequencies; NULL for clattn_rope_params_default().
 * Errors: CLATTN_ERR_INVALID_ARG (shapes, D odd, a bad position naming
 * its index, p's fields naming the field), CLATTN_ERR_OUT_OF_MEMORY. */
CLATTN_API clattn_status clattn_rotary(clattn_ctx *ctx, const clattn_tensor *x,
                                       const int64_t *positions, const clattn_rope_params *p,
                                       clattn_tensor *y);

/* SwiGLU, as LlamaMLP's act_fn(gate_proj(x)) * up_proj(x):
 *   out = silu(gate) * up = gate / (1 + exp(-gate)) * up, elementwise.
 *   gate, up, out: the same shape ([..., I], any); out may be gate or up.
 * Errors: CLATTN_ERR_INVALID_ARG. */
CLATTN_API clattn_status clattn_swiglu(clattn_ctx *ctx, const clattn_tensor *gate,
                                       const clattn_tensor *up, clattn_tensor *out);


/* ======================================================================== */
/* Weights (safetensors files)                                               */
/* ======================================================================== */

/* Element types of the safetensors format: every dtype the reference
 * implementation (huggingface/safetensors 0.8) accepts. clattn computes in
 * float32; clattn_weights_read_f32 converts F32, F16, BF16 and F64, and the
 * others can be read raw through clattn_weight_info.data. Values are only
 * ever appended. */
typedef enum clattn_dtype {
    CLATTN_DTYPE_BOOL = 0,         /* 1 byte, 0 or 1 */
    CLATTN_DTYPE_U8 = 1,
    CLATTN_DTYPE_I8 = 2,
    CLATTN_DTYPE_I16 = 3,
    CLATTN_DTYPE_U16 = 4,
    CLATTN_DTYPE_I32 = 5,
    CLATTN_DTYPE_U32 = 6,
    CLATTN_DTYPE_I64 = 7,
    CLATTN_DTYPE_U64 = 8,
    CLATTN_DTYPE_F16 = 9,          /* IEEE 754 binary16 */
    CLATTN_DTYPE_BF16 = 10,        /* bfloat16: the top half of a float32 */
    CLATTN_DTYPE_F32 = 11,
    CLATTN_DTYPE_F64 = 12,
    CLATTN_DTYPE_F8_E5M2 = 13,     /* OCP FP8 */
    CLATTN_DTYPE_F8_E4M3 = 14,     /* OCP FP8 (E4M3FN) */
    CLATTN_DTYPE_F8_E8M0 = 15,     /* OCP MX scale: a power of two */
    CLATTN_DTYPE_F8_E4M3FNUZ = 16, /* FP8 without negative zero (AMD) */
    CLATTN_DTYPE_F8_E5M2FNUZ = 17,
    CLATTN_DTYPE_F6_E2M3 = 18,     /* OCP MXFP6, 6 bits, packed */
    CLATTN_DTYPE_F6_E3M2 = 19,
    CLATTN_DTYPE_F4 = 20,          /* OCP MXFP4 (E2M1), 4 bits, packed */
    CLATTN_DTYPE_C64 = 21          /* complex64: two float32 */
} clattn_dtype;

/* The dtype's name as the safetensors header spells it ("BF16",
 * "F8_E4M3"); "unknown" for a value outside the enum. Thread-safe. */
CLATTN_API const char *clattn_dtype_name(clattn_dtype dtype);

/* Bits per element (4 for F4, 6 for F6_*, 64 for C64); 0 for a value outside
 * the enum. Thread-safe. */
CLATTN_API int32_t clattn_dtype_bits(clattn_dtype dtype);

/* An open safetensors file (read-only memory map plus the parsed header). */
typedef struct clattn_weights clattn_weights;

/* The most dimensions a weight may have: the format itself has no limit;
 * a file with more is refused with CLATTN_ERR_UNSUPPORTED. */
#define CLATTN_WEIGHTS_MAX_DIMS 8

/* One tensor of a file, exactly as the header describes it. ndim may be 0
 * (a scalar: numel 1) and extents may be 0 (numel 0). Every pointer is owned
 * by the clattn_weights and valid until clattn_weights_close. */
typedef struct clattn_weight_info {
    const char *name;              /* UTF-8, NUL-terminated */
    clattn_dtype dtype;
    int32_t ndim;                  /* 0 .. CLATTN_WEIGHTS_MAX_DIMS */
    int64_t shape[CLATTN_WEIGHTS_MAX_DIMS]; /* shape[0..ndim-1]; the rest 0 */
    size_t numel;                  /* product of the shape (1 for ndim 0) */
    size_t nbytes;                 /* numel * bits / 8 */
    size_t data_offset;            /* where the bytes start, from the start of the file */
    const void *data;              /* the bytes in the read-only mapping: little-endian,
                                      C order, NOT aligned (memcpy before use) */
} clattn_weight_info;

/* Opens and validates a safetensors file (model files are untrusted input)
 * and memory-maps it read-only; no tensor data is copied. Every rule of the
 * format is checked before *out is returned: the 8-byte little-endian header
 * length N (at most 100,000,000, checked before anything is allocated, and
 * 8 + N <= file size); the header is UTF-8 JSON starting with '{' (trailing
 * whitespace is allowed: writers pad with spaces) without duplicate keys,
 * whose top level is an object; "__metadata__", if present, is an object of
 * strings (or null); every other entry is an object with exactly "dtype" (a
 * name above), "shape" (non-negative integers) and "data_offsets" ([begin,
 * end], begin <= end); end - begin equals the element count times the dtype
 * size (a whole number of bytes for sub-byte types), with overflow checks;
 * sorted by offset, the tensors are contiguous from 0 and end exactly at the
 * end of the file.
 * Errors: CLATTN_ERR_IO (open, stat or mmap failed), CLATTN_ERR_FORMAT (a
 * broken rule; the message names the file, the tensor and the fact, e.g.
 * "m.safetensors: tensor 'w': data_offsets [0, 12] hold 12 bytes but shape
 * [2, 3] of F32 needs 24"), CLATTN_ERR_UNSUPPORTED (more than
 * CLATTN_WEIGHTS_MAX_DIMS dimensions), CLATTN_ERR_OUT_OF_MEMORY.
 * *out is NULL on failure. Close with clattn_weights_close. The file must not
 * be truncated while it is open (reading a truncated mapping raises SIGBUS).
 * Thread safety: an open clattn_weights is immutable; every function below
 * that takes a const clattn_weights may be called from several threads. */
CLATTN_API clattn_status clattn_weights_open(const char *path, clattn_weights **out);

/* Unmaps the file and frees everything. NULL is a no-op. */
CLATTN_API void clattn_weights_close(clattn_weights *w);

/* Number of tensors (0 for NULL). */
CLATTN_API int32_t clattn_weights_count(const clattn_weights *w);

/* Tensor number index (0 .. count-1), in file order (by data offset). */
CLATTN_API clattn_status clattn_weights_info_at(const clattn_weights *w, int32_t index,
                                                clattn_weight_info *info);

/* The tensor called name (exact byte comparison; binary search).
 * CLATTN_ERR_INVALID_ARG naming the file and the name when there is none. */
CLATTN_API clattn_status clattn_weights_find(const clattn_weights *w, const char *name,
                                             clattn_weight_info *info);

/* The value of key in the header's "__metadata__", or NULL when the file has
 * no such key. The string is owned by w. */
CLATTN_API const char *clattn_weights_metadata(const clattn_weights *w, const char *key);

/* Number of "__metadata__" entries, and entry index (0 .. count-1, sorted by
 * key) as two strings owned by w. */
CLATTN_API int32_t clattn_weights_metadata_count(const clattn_weights *w);
CLATTN_API clattn_status clattn_weights_metadata_at(const clattn_weights *w, int32_t index,
                                                    const char **key, const char **value);

/* Converts the tensor called name to float32 into dst[count], where count
 * must equal the tensor's element count (CLATTN_ERR_INVALID_ARG otherwise).
 * F32, F16, BF16 and F64 are converted exactly as IEEE 754 specifies
 * (F64 rounds to nearest; subnormals, infinities and NaN are kept); any other
 * dtype is CLATTN_ERR_UNSUPPORTED naming the tensor and the dtype. */
CLATTN_API clattn_status clattn_weights_read_f32(const clattn_weights *w, const char *name,
                                                 float *dst, size_t count);

/* Creates a float32 device tensor with the shape and converted values of
 * the tensor called name (as clattn_weights_read_f32). Device tensors have
 * 1 to 4 dimensions of extent >= 1: a scalar, a tensor with more dimensions
 * or an empty one is CLATTN_ERR_UNSUPPORTED. Blocking. *out is NULL on
 * failure; destroy it with clattn_tensor_destroy. Uses ctx as any tensor
 * function does (one thread at a time). Values are uploaded as they are,
 * NaN and Inf included, as clattn_weights_read_f32 reads them; the model
 * loaders (clattn_module_load, clattn_model_load, clattn_embedder_load)
 * are the ones that refuse non-finite weights. */
CLATTN_API clattn_status clattn_weights_upload(clattn_ctx *ctx, const clattn_weights *w,
                                               const char *name, clattn_tensor **out);

/* Writes tensors[0..count-1] (read back from the device) as F32 into a new
 * safetensors file at path, named names[i], with meta_count metadata
 * entries meta_keys[i] = meta_values[i] (0 and NULLs for none). As the
 * reference writer does, tensors are stored sorted by name and the header
 * is padded with spaces to a multiple of 8 bytes. Names and keys must be
 * non-empty, unique, valid UTF-8, and names must not be "__metadata__"
 * (CLATTN_ERR_INVALID_ARG). The file is written to a temporary file in the
 * same directory and renamed over path only when complete, so readers never
 * see a partial file. Errors: CLATTN_ERR_INVALID_ARG, CLATTN_ERR_IO (the
 * message has the OS error), CLATTN_ERR_OUT_OF_MEMORY, errors of
 * clattn_tensor_read. The tensors' contexts are used one thread at a time. */
CLATTN_API clattn_status clattn_weights_write(const char *path, int32_t count,
                                              const char *const *names,
                                              const clattn_tensor *const *tensors,
                                              const char *const *meta_keys,
                                              const char *const *meta_values,
                                              int32_t meta_count);
/* Modules: PyTorch's attention and transformer modules                      */
/* ======================================================================== */

/* A module is one of PyTorch's attention or transformer modules with its
 * parameters on the device, named exactly as its state_dict names them
 * ("self_attn.in_proj_weight", "layers.0.linear1.bias", ...), so a
 * state_dict saved as safetensors loads as is. Tensors are batch-first:
 * [B, N, E], as with batch_first=True in PyTorch.
 *
 * Kinds and their state_dict names:
 *   CLATTN_MODULE_MHA              torch.nn.MultiheadAttention:
 *       in_proj_weight [3E, E] and in_proj_bias [3E] when kdim = vdim = E,
 *       else q_proj_weight [E, E], k_proj_weight [E, kdim],
 *       v_proj_weight [E, vdim] (and in_proj_bias); out_proj.weight [E, E],
 *       out_proj.bias [E]; bias_k, bias_v [1, 1, E] with add_bias_kv.
 *   CLATTN_MODULE_SELF_ATTENTION   the block most tutorials write: separate
 *       query, key and value nn.Linear layers (query.weight [A, in],
 *       key.weight [A, in], value.weight [V, in], and .bias), attention with
 *       num_heads heads of A / num_heads, and an optional output projection
 *       out.weight [out_dim, V], out.bias (out_dim > 0).
 *   CLATTN_MODULE_ENCODER_LAYER    torch.nn.TransformerEncoderLayer
 *       (self_attn.*, linear1.*, linear2.*, norm1.*, norm2.*).
 *   CLATTN_MODULE_DECODER_LAYER    torch.nn.TransformerDecoderLayer
 *       (self_attn.*, multihead_attn.*, linear1/2.*, norm1/2/3.*).
 *   CLATTN_MODULE_ENCODER          torch.nn.TransformerEncoder
 *       (layers.{i}.*, and norm.* when final_norm).
 *   CLATTN_MODULE_DECODER          torch.nn.TransformerDecoder
 *       (layers.{i}.*, norm.* when final_norm).
 *   CLATTN_MODULE_TRANSFORMER      torch.nn.Transformer (encoder.layers.{i}.*,
 *       encoder.norm.*, decoder.layers.{i}.*, decoder.norm.*).
 *
 * Differences from PyTorch, all deliberate: dropout is not applied
 * (inference); a query row whose every key is masked gives zeros where
 * PyTorch gives NaN; padded positions are computed like any other (PyTorch's
 * nested-tensor fast path returns zeros there). */

typedef enum clattn_module_kind {
    CLATTN_MODULE_MHA = 0,
    CLATTN_MODULE_SELF_ATTENTION = 1,
    CLATTN_MODULE_ENCODER_LAYER = 2,
    CLATTN_MODULE_DECODER_LAYER = 3,
    CLATTN_MODULE_ENCODER = 4,
    CLATTN_MODULE_DECODER = 5,
    CLATTN_MODULE_TRANSFORMER = 6
} clattn_module_kind;

/* Constructor arguments, named as PyTorch's. Fields a kind does not use are
 * ignored. */
typedef struct clattn_module_config {
    clattn_module_kind kind;
    int64_t d_model;           /* embed_dim (MHA) / d_model; the self-attention
                                  block's input width */
    int64_t nhead;             /* num_heads */
    int64_t kdim, vdim;        /* MHA key/value input widths; 0 = d_model */
    bool bias;                 /* biases in linear layers and norms (default true) */
    bool add_bias_kv, add_zero_attn;   /* MHA */
    int64_t dim_feedforward;   /* transformer layers (default 2048) */
    clattn_activation activation;      /* CLATTN_ACT_RELU (default) or _GELU */
    float layer_norm_eps;      /* default 1e-5 */
    bool norm_first;           /* pre-norm layers (default false) */
    int32_t num_layers;        /* encoder / decoder stacks */
    int32_t num_encoder_layers, num_decoder_layers; /* transformer (default 6) */
    bool final_norm;           /* encoder / decoder stacks: a final norm.* */
    int64_t attn_dim;          /* self-attention block: A (query/key width) */
    int64_t value_dim;         /* self-attention block: V; 0 = attn_dim */
    int64_t out_dim;           /* self-attention block: output projection, 0 = none */
    bool batch_first;          /* how the model's own inputs are laid out (config.json);
                                  informational: clattn always takes [B, N, E] */
} clattn_module_config;

/* PyTorch's defaults for the kind: bias true, kdim = vdim = 0, ReLU,
 * dim_feedforward 2048, eps 1e-5, 6 + 6 transformer layers, final_norm true
 * for the Transformer's stacks, batch_first true. d_model and nhead are
 * left 0 to be set. */
CLATTN_API clattn_module_config clattn_module_config_default(clattn_module_kind kind);

typedef struct clattn_module clattn_module;

/* Creates a module with every parameter allocated on the device and filled
 * with zeros (LayerNorm weights with ones). Errors: CLATTN_ERR_INVALID_ARG
 * for configurations PyTorch would refuse (d_model not divisible by nhead,
 * ...), naming the field. Destroy with clattn_module_destroy. */
CLATTN_API clattn_status clattn_module_create(clattn_ctx *ctx, const clattn_module_config *cfg,
                                              clattn_module **out);
CLATTN_API void clattn_module_destroy(clattn_module *m);

/* The module's parameters, in state_dict order: count, and the name, tensor
 * (owned by the module; write into it to set a parameter) of number i. */
CLATTN_API int32_t clattn_module_param_count(const clattn_module *m);
CLATTN_API const char *clattn_module_param_name(const clattn_module *m, int32_t i);
CLATTN_API clattn_tensor *clattn_module_param(const clattn_module *m, const char *name);

/* A mask as PyTorch's modules take it, in host memory (row-major): BOOL
 * masks are bytes where non-zero means "masked" (not allowed to attend, as
 * in torch.nn.MultiheadAttention), FLOAT masks are added to the scores
 * (-inf masks). Borrowed during the call only. */
typedef enum clattn_mask_kind {
    CLATTN_MASK_NONE = 0,
    CLATTN_MASK_BOOL = 1,
    CLATTN_MASK_FLOAT = 2
} clattn_mask_kind;

typedef struct clattn_mask {
    clattn_mask_kind kind;
    const void *data;          /* uint8_t[] for BOOL, float[] for FLOAT */
    int32_t ndim;
    int64_t shape[3];
} clattn_mask;

/* Forward inputs by the names of PyTorch's forward arguments. Each kind
 * reads the ones it has:
 *   MHA:            query [B, N, E], key [B, M, kdim], value [B, M, vdim],
 *                   key_padding_mask [B, M], attn_mask [N, M] or
 *                   [B*nhead, N, M], is_causal, attn_weights
 *   SELF_ATTENTION: query [B, N, in], attn_mask, key_padding_mask,
 *                   is_causal, attn_weights
 *   ENCODER_LAYER, ENCODER: src [B, N, E], src_mask [N, N] or [B*nhead, N, N]
 *                   (TransformerEncoder calls it mask),
 *                   src_key_padding_mask [B, N], is_causal (= src_is_causal)
 *   DECODER_LAYER, DECODER: tgt [B, T, E], memory [B, S, E], tgt_mask,
 *                   memory_mask [T, S], tgt_key_padding_mask [B, T],
 *                   memory_key_padding_mask [B, S], tgt_is_causal,
 *                   memory_is_causal
 *   TRANSFORMER:    src, tgt and every mask above, src_is_causal,
 *                   tgt_is_causal, memory_is_causal
 * is_causal flags apply the causal mask (query i sees keys j <= i) on top of
 * any mask given (PyTorch treats them as a hint that the given mask is
 * causal; the result is the same). */
typedef struct clattn_forward_args {
    const clattn_tensor *query, *key, *value;
    const clattn_tensor *src, *tgt, *memory;
    clattn_mask attn_mask, key_padding_mask;
    clattn_mask src_mask, tgt_mask, memory_mask;
    clattn_mask src_key_padding_mask, tgt_key_padding_mask, memory_key_padding_mask;
    bool is_causal, src_is_causal, tgt_is_causal, memory_is_causal;
    /* MHA and SELF_ATTENTION: optional attention weights output,
     * [B, N, M'] averaged over heads when average_attn_weights, else
     * [B, nhead, N, M'] (M' = M + add_bias_kv + add_zero_attn). */
    clattn_tensor *attn_weights;
    bool average_attn_weights;
} clattn_forward_args;

/* Every field empty; average_attn_weights true (PyTorch's default). */
CLATTN_API clattn_forward_args clattn_forward_args_default(void);

/* out = module(inputs): [B, N, E] (MHA: E = embed_dim; SELF_ATTENTION:
 * out_dim or V; decoders and the transformer: [B, T, E]). Errors:
 * CLATTN_ERR_INVALID_ARG naming the input and its expected shape. The
 * module keeps workspace buffers between calls; one thread at a time. */
CLATTN_API clattn_status clattn_module_forward(clattn_module *m, const clattn_forward_args *a,
                                               clattn_tensor *out);

/* Loads every parameter from w, named prefix + its state_dict name ("" for
 * a file saved from this very module, "encoder." for a submodule of a
 * larger model). Strict, as PyTorch's load_state_dict: a missing tensor, a
 * shape other than the parameter's, or (when prefix is "") a tensor in the
 * file that is no parameter of the module fails with CLATTN_ERR_FORMAT
 * naming the tensor and both shapes; F16/BF16/F32/F64 are converted, other
 * dtypes are CLATTN_ERR_UNSUPPORTED. A weight holding NaN or +-Inf is
 * CLATTN_ERR_FORMAT naming the tensor and the first bad flat index (a NaN
 * weight would otherwise make every output NaN without an error). On
 * failure the parameters are partly loaded. */
CLATTN_API clattn_status clattn_module_load(clattn_module *m, const clattn_weights *w,
                                            const char *prefix);

/* Loads a model folder: config.json naming the module and its constructor
 * arguments, e.g. {"module": "torch.nn.TransformerEncoderLayer",
 * "d_model": 64, "nhead": 4, "dim_feedforward": 256, "activation": "gelu"},
 * and model.safetensors with its state_dict. Modules: torch.nn.
 * MultiheadAttention, TransformerEncoderLayer, TransformerDecoderLayer,
 * TransformerEncoder ({"num_layers", "norm": bool, "encoder_layer": {...}}),
 * TransformerDecoder (likewise with "decoder_layer"), Transformer, and
 * clattn.SelfAttention (in_dim, attn_dim, value_dim, out_dim, num_heads,
 * bias). Argument names and defaults are PyTorch's; "dropout" is accepted
 * and ignored (inference), "batch_first" is recorded in the config (clattn
 * always computes batch-first; clattn-forward transposes). Any other key, a
 * wrong type, or a value clattn cannot honour is refused by name
 * (CLATTN_ERR_FORMAT / CLATTN_ERR_UNSUPPORTED); errors name the file.
 * Weights holding NaN or +-Inf are refused as clattn_module_load does. */
CLATTN_API clattn_status clattn_model_load(clattn_ctx *ctx, const char *dir, clattn_module **out);

/* The configuration a module was created with. */
CLATTN_API clattn_module_config clattn_module_get_config(const clattn_module *m);

/* ======================================================================== */
/* Tokenizer (WordPiece and BPE)                                             */
/* ======================================================================== */

/* Hugging Face fast tokenizers (tokenizer.json), giving exactly the ids of
 * the tokenizers crate and of transformers' AutoTokenizer(...)(text)
 * ["input_ids"] (checked on corpora of texts in tests/tokenizer/
 * test_tokenizer.c and test_bpe.c). They need no device. Two families, by
 * tokenizer.json's model type:
 *
 * WordPiece (BERT), per text:
 *   - the added tokens of the file ("[CLS]", "[SEP]", "[PAD]", ...) are
 *     found in the raw text (leftmost, longest) and kept as they are;
 *   - the rest is normalized (BertNormalizer): U+0000, U+FFFD and control
 *     characters (Unicode Cc, Cf, Co) are removed, whitespace becomes ' ';
 *     CJK ideographs are surrounded by spaces; accents are stripped (NFD,
 *     then nonspacing marks removed); text is lowercased (Rust's
 *     char::to_lowercase: "İ" gives "i" + U+0307);
 *   - split on whitespace and around punctuation (ASCII punctuation and the
 *     Unicode P* categories), as BertPreTokenizer;
 *   - WordPiece: greedy longest match first, continuations prefixed "##";
 *     a word with an unmatched piece, or longer than max_input_chars_per_word
 *     characters (100), becomes one [UNK];
 *   - truncated, then wrapped in the template's special tokens: [CLS] ... [SEP].
 *
 * BPE (decoder LMs: GPT-2, Llama 2 and 3, TinyLlama, Mistral, Qwen2,
 * SmolLM, ...), per text:
 *   - invalid UTF-8: each maximal invalid subpart becomes U+FFFD (Python's
 *     bytes.decode(errors="replace"), Rust's from_utf8_lossy; the crate
 *     takes only str, so this is what a Python caller gets), then tokenized;
 *   - added tokens with normalized false are found in the raw text
 *     (leftmost, longest); lstrip / rstrip make the match take the
 *     whitespace (Unicode White_Space) before / after the token;
 *     single_word drops a match next to a word character (letters, marks,
 *     Nd, Nl, Pc, ZWJ/ZWNJ: Rust's \w but for the few Alphabetic symbols);
 *   - each piece between them is normalized: null, NFC, Prepend, Replace
 *     (string patterns) or a Sequence of them (Llama 2's
 *     Sequence[Prepend("▁"), Replace(" ", "▁")]); Prepend only touches a
 *     non-empty piece; added tokens with normalized true are then found in
 *     the normalized text, spelt as the normalizer makes their content
 *     (Llama 2: "<x>" is matched as "▁<x>");
 *   - pre-tokenized: ByteLevel (add_prefix_space, use_regex: GPT-2's regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+),
 *     Split with behavior Isolated, invert false and one of the known
 *     patterns (GPT-2's, Llama 3's with \p{N}{1,3}, Qwen2's with \p{N};
 *     any other pattern is CLATTN_ERR_UNSUPPORTED naming it; the matchers
 *     are hand-written, classes from utf8proc: \s = White_Space, \p{L} = L*,
 *     \p{N} = N*, (?i:) folds ASCII and long s), Metaspace (replacement,
 *     prepend_scheme always / first (only the piece at offset 0 of the
 *     text) / never, split), Digits (individual_digits; SmolLM), or a
 *     Sequence of these with ByteLevel last;
 *   - BPE on each word: with ignore_merges a word that is a vocabulary
 *     token is that token; else one symbol per character (byte-level:
 *     per byte, GPT-2's byte-to-character map), an unknown character
 *     becomes its bytes' <0xNN> tokens (byte_fallback) or the unk token
 *     (consecutive ones fused into one with fuse_unk; dropped when there
 *     is no unk_token), then merges are applied lowest rank first
 *     (leftmost on ties). merges may be "a b" strings or ["a", "b"] lists;
 *     continuing_subword_prefix and end_of_word_suffix must be null or "",
 *     dropout null;
 *   - truncated (max_len), then the template: post_processor
 *     TemplateProcessing (e.g. Llama 3's "<|begin_of_text|> $A"), ByteLevel
 *     (no ids), a Sequence of them, or null; except that when
 *     tokenizer_config.json's tokenizer_class is LlamaTokenizer(Fast),
 *     CodeLlamaTokenizer(Fast) or GemmaTokenizer(Fast) (defaults: add bos,
 *     no eos) or GPTNeoXTokenizer(Fast) (defaults: neither), the template
 *     is "[bos] $A [eos]" from its add_bos_token / add_eos_token and
 *     bos_token / eos_token (defaults "<s>"/"</s>", "<bos>"/"<eos>",
 *     "<|endoftext|>"), as transformers' update_post_processor rebuilds it
 *     (replacing tokenizer.json's post_processor). For any other class add_bos_token / add_eos_token are
 *     ignored, as transformers ignores them (GPT2TokenizerFast,
 *     Qwen2TokenizerFast, PreTrainedTokenizerFast).
 * Not supported (refused by name at load): other models (Unigram,
 * WordLevel), normalizers (NFKC, Lowercase, ...), pre-tokenizers
 * (Whitespace, Punctuation, ...), other Split patterns, regex Replace
 * patterns, BPE dropout. Known gap: NFC is
 * utf8proc's (Unicode 15); the regex classes follow the crate's Unicode 16
 * (a table adds the letters and numbers new in 16).
 * Unicode data (categories, decompositions, case) comes from utf8proc. */
typedef struct clattn_tokenizer clattn_tokenizer;

/* Loads the tokenizer of a Hugging Face model folder: dir/tokenizer.json,
 * dispatching on its model type:
 *   WordPiece: normalizer BertNormalizer {clean_text, handle_chinese_chars,
 *   strip_accents (null: as lowercase), lowercase} or null, pre_tokenizer
 *   BertPreTokenizer, model WordPiece {vocab, unk_token,
 *   continuing_subword_prefix, max_input_chars_per_word}, post_processor
 *   TemplateProcessing or BertProcessing (or null: no special tokens);
 *   BPE: as described above, plus dir/tokenizer_config.json if present
 *   (tokenizer_class, bos_token, eos_token, add_bos_token, add_eos_token);
 * both: truncation (its max_length becomes the default limit), padding
 * (ignored: encode never pads), added_tokens. Or, when there is no
 * tokenizer.json, dir/vocab.txt (WordPiece; one token per line, id = line
 * number) with the settings of dir/tokenizer_config.json if present
 * (do_lower_case, strip_accents, tokenize_chinese_chars, model_max_length,
 * the special tokens; what transformers' BertTokenizerFast builds).
 * Errors (the message names the file and the setting): CLATTN_ERR_IO (no
 * tokenizer.json or vocab.txt in dir, or unreadable), CLATTN_ERR_FORMAT
 * (malformed JSON, a wrong type, a vocabulary without its unk token, a
 * merge of tokens not in the vocabulary), CLATTN_ERR_UNSUPPORTED (another
 * model, normalizer, pre-tokenizer, decoder or post-processor, an unknown
 * key in one of them, an unknown Split pattern, a WordPiece added token
 * with single_word, lstrip, rstrip or normalized set, a template with a
 * type_id other than 0), CLATTN_ERR_INVALID_ARG (NULL
 * arguments), CLATTN_ERR_OUT_OF_MEMORY. *out is NULL on failure; free it
 * with clattn_tokenizer_destroy. Thread safety: a loaded tokenizer is
 * immutable: every function below may be called on it from several
 * threads at once (a clattn_detokenizer is one thread's at a time). */
CLATTN_API clattn_status clattn_tokenizer_load(const char *dir, clattn_tokenizer **out);

/* Frees the tokenizer. NULL is a no-op. */
CLATTN_API void clattn_tokenizer_destroy(clattn_tokenizer *tok);

/* Tokenizes one text: the len bytes at utf8 (NUL bytes included: the length
 * decides) become ids[0..*count): the template's leading special tokens,
 * the pieces, its trailing ones ([CLS] pieces... [SEP] for BERT,
 * <|begin_of_text|> pieces... for Llama 3). add_special false leaves the
 * template out (Hugging Face's add_special_tokens=False); added tokens
 * written in the text are found either way. Invalid UTF-8 is not an
 * error: WordPiece turns each byte that does not start a well-formed
 * sequence into U+FFFD, which its cleaner removes; BPE turns each maximal
 * invalid subpart into U+FFFD and tokenizes it; both give the tokens
 * Python gives after bytes.decode(errors="replace").
 * Truncation: at most max_len ids in all; pieces are removed from the end,
 * before the trailing special tokens (Hugging Face's "longest_first" with
 * one sequence). max_len 0 uses the tokenizer's own limit
 * (clattn_tokenizer_max_length; none if that is 0). Padding is the
 * caller's (BERT: clattn_tokenizer_token_id(tok, "[PAD]") and an attention
 * mask of 0). The token type ids of one sequence are all 0, so none are
 * returned. ids has room for capacity ids; ids NULL with capacity 0 only
 * counts. Errors: CLATTN_ERR_INVALID_ARG (NULL arguments, max_len < 0 or
 * smaller than the number of special tokens, capacity too small: the
 * message gives the count needed), CLATTN_ERR_OUT_OF_MEMORY; *count and ids
 * are untouched then. Thread-safe; allocates only temporary memory. */
CLATTN_API clattn_status clattn_tokenizer_encode_ex(const clattn_tokenizer *tok, const char *utf8,
                                                    size_t len, bool add_special, int32_t max_len,
                                                    int64_t *ids, int32_t capacity,
                                                    int32_t *count);

/* clattn_tokenizer_encode_ex with add_special true. */
CLATTN_API clattn_status clattn_tokenizer_encode(const clattn_tokenizer *tok, const char *utf8,
                                                 size_t len, int32_t max_len, int64_t *ids,
                                                 int32_t capacity, int32_t *count);

/* Decodes ids[0..n) to UTF-8 text as the tokenizers crate's
 * decode(ids, skip_special_tokens) (transformers' decode with
 * clean_up_tokenization_spaces false): the token of each id (an added
 * token's content; ids without a token, such as the padding rows of an
 * LM head past the vocabulary, are skipped as the crate skips them;
 * special tokens are left out when skip_special), then the decoder of
 * tokenizer.json: ByteLevel (characters back to bytes, then the bytes as
 * UTF-8 with each maximal invalid subpart as U+FFFD, as Rust's
 * from_utf8_lossy), Metaspace ("▁" -> " ", removed in the first token
 * unless prepend_scheme never), Replace, ByteFallback (a run of <0xNN>
 * tokens becomes its bytes when they are valid UTF-8, else one U+FFFD per
 * byte), Fuse, Strip, a Sequence of them, or null (tokens joined by ' ').
 * BPE tokenizers only (WordPiece: CLATTN_ERR_UNSUPPORTED).
 * *len receives the text's length in bytes (no NUL); text (room for
 * capacity bytes) receives the text and a NUL; text NULL with capacity 0
 * only measures. Errors: CLATTN_ERR_INVALID_ARG (NULL arguments, n < 0, a
 * negative id, capacity < *len + 1: *len is set), CLATTN_ERR_OUT_OF_MEMORY.
 * Thread-safe. */
CLATTN_API clattn_status clattn_tokenizer_decode(const clattn_tokenizer *tok, const int64_t *ids,
                                                 int32_t n, bool skip_special, char *text,
                                                 size_t capacity, size_t *len);

/* An incremental decoder for generated ids: each push gives the text that
 * the new id adds, only whole UTF-8 characters, and the concatenation of
 * all pushes and the final flush equals clattn_tokenizer_decode of all the
 * ids. It holds back what a later id could still change: an incomplete
 * UTF-8 sequence at the end (ByteLevel), a run of <0xNN> byte tokens not
 * yet closed by another token (ByteFallback: the whole run is U+FFFDs if
 * any of it is invalid). A push costs the ids since the last point where
 * nothing was held back, not the whole text. Not thread-safe: one thread
 * at a time per detokenizer; several may share one tokenizer, which must
 * outlive them. BPE tokenizers only (WordPiece: CLATTN_ERR_UNSUPPORTED). */
typedef struct clattn_detokenizer clattn_detokenizer;

CLATTN_API clattn_status clattn_detokenizer_create(const clattn_tokenizer *tok, bool skip_special,
                                                   clattn_detokenizer **out);

/* Pushes one id; text (capacity bytes) receives the new text and a NUL,
 * *len its length (often 0). An id without a token, or a special one with
 * skip_special, adds nothing. text NULL with capacity 0 only measures (the
 * id is not taken). Errors: CLATTN_ERR_INVALID_ARG (NULL arguments, a
 * negative id, capacity < *len + 1: *len is set and the id is not taken,
 * so the call can be repeated with more room), CLATTN_ERR_OUT_OF_MEMORY. */
CLATTN_API clattn_status clattn_detokenizer_push(clattn_detokenizer *d, int64_t id, char *text,
                                                 size_t capacity, size_t *len);

/* Gives what was held back (at the end of generation) and starts over
 * (a new text: the next push is the first token again). Same conventions
 * as clattn_detokenizer_push. */
CLATTN_API clattn_status clattn_detokenizer_flush(clattn_detokenizer *d, char *text,
                                                  size_t capacity, size_t *len);

/* Frees the detokenizer. NULL is a no-op. */
CLATTN_API void clattn_detokenizer_destroy(clattn_detokenizer *d);

/* The id of a token given as its exact UTF-8 string ("[PAD]", "##ing",
 * "<|eot_id|>"), added tokens first; -1 when there is none or an argument
 * is NULL. */
CLATTN_API int32_t clattn_tokenizer_token_id(const clattn_tokenizer *tok, const char *token);

/* The token string of id, as the vocabulary spells it (transformers'
 * convert_ids_to_tokens: "[CLS]", "##ing", byte-level BPE's "Ġthe"), for
 * labels; owned by the tokenizer, valid until clattn_tokenizer_destroy.
 * NULL for an id without a token, a negative id, or a NULL tokenizer.
 * BPE: a table lookup; WordPiece: a scan of the vocabulary (about 0.1 ms
 * for BERT's 30522 tokens). Thread-safe. */
CLATTN_API const char *clattn_tokenizer_id_to_token(const clattn_tokenizer *tok, int64_t id);

/* Whether id is a special token (an added token marked special; for
 * WordPiece every added token); false for NULL or an unknown id. */
CLATTN_API bool clattn_tokenizer_is_special(const clattn_tokenizer *tok, int64_t id);

/* The ids of tokenizer_config.json's bos_token and eos_token (BPE; for
 * Llama-class tokenizers "<s>" / "</s>" when the file does not name them);
 * -1 when there is none (WordPiece: always -1) or for NULL. */
CLATTN_API int32_t clattn_tokenizer_bos_id(const clattn_tokenizer *tok);
CLATTN_API int32_t clattn_tokenizer_eos_id(const clattn_tokenizer *tok);

/* Number of tokens: the vocabulary plus added tokens outside it (30522 for
 * BERT base uncased; BPE: the ids that have a token); 0 for NULL. */
CLATTN_API int32_t clattn_tokenizer_vocab_size(const clattn_tokenizer *tok);

/* The tokenizer's own length limit (tokenizer.json's truncation max_length,
 * or, WordPiece from vocab.txt, tokenizer_config.json's model_max_length
 * when it is a real limit); 0 when it has none, or for NULL. */
CLATTN_API int32_t clattn_tokenizer_max_length(const clattn_tokenizer *tok);

/* ======================================================================== */
/* Sentence embeddings (BERT-family models)                                  */
/* ======================================================================== */

/* A sentence-embedding model: a Hugging Face BERT folder, as
 * sentence-transformers saves it (all-MiniLM-L6-v2, bge-small, e5-small,
 * ...), with its tokenizer, pooling and normalisation. Texts in, one float
 * vector per text out, equal to SentenceTransformer(dir).encode(texts)
 * (checked in tests/embed/test_embed.c to cosine >= 0.9999).
 *
 *     clattn_embedder *e;
 *     if (clattn_embedder_load(ctx, "models/all-MiniLM-L6-v2", &e) != CLATTN_OK)
 *         return fprintf(stderr, "%s\n", clattn_last_error()), 1;
 *     const char *texts[2] = {"A man is eating food.", "Someone is having a meal."};
 *     float *out = malloc(2 * (size_t)clattn_embedder_dim(e) * sizeof *out);
 *     clattn_embedder_embed(e, texts, 2, out, NULL);   // out: [2, 384]
 *     ...
 *     clattn_embedder_destroy(e);                      // before clattn_ctx_destroy
 *
 * What one call does: tokenizes every text ([CLS] ... [SEP], truncated to
 * max_length tokens), sorts the texts by token count and cuts them into
 * batches of batch_size, each padded only to its longest text; runs the
 * encoder (embeddings word + position + token type 0, LayerNorm, then
 * post-norm layers whose attention masks the padded keys); pools each
 * text's valid tokens (mean, [CLS] or max); L2-normalises when asked; and
 * writes the rows in the caller's order. Dropout is not applied. */

/* How token vectors become one vector. Values are only ever appended. */
typedef enum clattn_pooling {
    CLATTN_POOLING_DEFAULT = 0,    /* the folder's choice (1_Pooling/config.json) */
    CLATTN_POOLING_MEAN = 1,       /* mean over the text's tokens, [CLS] and [SEP] included */
    CLATTN_POOLING_CLS = 2,        /* the [CLS] token's vector */
    CLATTN_POOLING_MAX = 3         /* elementwise maximum over the text's tokens */
} clattn_pooling;

/* Called after each batch with the number of texts done so far and the
 * total; from the calling thread. */
typedef void (*clattn_progress_fn)(void *user, int32_t done, int32_t total);

typedef struct clattn_embed_params {
    int32_t batch_size;            /* texts per forward pass, >= 1 (default 32) */
    clattn_pooling pooling;        /* DEFAULT: the folder's */
    int32_t normalize;             /* -1: the folder's (a Normalize module in
                                      modules.json), 0: no, 1: L2-normalise */
    int32_t max_length;            /* tokens per text including [CLS] and [SEP];
                                      0: the folder's max_seq_length; at most
                                      max_position_embeddings */
    clattn_progress_fn progress;   /* optional */
    void *progress_user;
} clattn_embed_params;

/* batch_size 32, pooling DEFAULT, normalize -1, max_length 0, no progress. */
CLATTN_API clattn_embed_params clattn_embed_params_default(void);

typedef struct clattn_embedder clattn_embedder;

/* Loads a model folder for ctx (which must outlive the embedder):
 *   config.json         model_type "bert"; hidden_size, num_hidden_layers,
 *                       num_attention_heads, intermediate_size, hidden_act
 *                       ("gelu", "gelu_new" / "gelu_pytorch_tanh": the tanh
 *                       form, "relu"), layer_norm_eps, max_position_embeddings,
 *                       type_vocab_size, vocab_size; position_embedding_type
 *                       must be "absolute"; is_decoder and
 *                       add_cross_attention must be false. Other keys
 *                       (dropout, architectures, ...) are ignored.
 *   model.safetensors   BERT's tensors, with or without the "bert." prefix:
 *                       embeddings.{word,position,token_type}_embeddings.weight,
 *                       embeddings.LayerNorm.{weight,bias},
 *                       encoder.layer.{i}.attention.self.{query,key,value}.*,
 *                       .attention.output.dense.*, .attention.output.LayerNorm.*,
 *                       .intermediate.dense.*, .output.dense.*, .output.LayerNorm.*
 *                       (pooler.* and any other tensor ignored); F32/F16/BF16/F64.
 *   tokenizer.json or vocab.txt (+ tokenizer_config.json): clattn_tokenizer_load.
 *   modules.json        optional (sentence-transformers): a Transformer, a
 *                       Pooling module (its path holds config.json with
 *                       pooling_mode_mean_tokens / _cls_token / _max_tokens:
 *                       exactly one true), optionally a Normalize module;
 *                       any other module (Dense, ...) is refused. Without
 *                       it: mean pooling, no normalisation.
 *   sentence_bert_config.json  optional: max_seq_length (default: the
 *                       smaller of the tokenizer's limit and
 *                       max_position_embeddings).
 * Errors, each naming the file (and the key or tensor): CLATTN_ERR_IO (a
 * required file is missing or unreadable), CLATTN_ERR_FORMAT (malformed
 * JSON, a wrong type, a missing tensor or one of another shape, with the
 * expected shape, or a weight holding NaN or +-Inf, with the tensor's name
 * and the first bad flat index), CLATTN_ERR_UNSUPPORTED (another model type, activation,
 * position embedding type, pooling mode or module), CLATTN_ERR_INVALID_ARG,
 * CLATTN_ERR_OUT_OF_MEMORY, and the device's errors. *out is NULL on
 * failure. Weights are uploaded once (all-MiniLM-L6-v2: 90 MB on the
 * device; on a context whose GEMM is clattn's CPU kernel, a further 42 MB
 * keeps the linear layers' weights packed for it, so they are not
 * re-packed on every call). Destroy with clattn_embedder_destroy. Thread safety: as its
 * context (one thread at a time). */
CLATTN_API clattn_status clattn_embedder_load(clattn_ctx *ctx, const char *dir,
                                              clattn_embedder **out);

/* Frees the embedder (its tokenizer included). NULL is a no-op. */
CLATTN_API void clattn_embedder_destroy(clattn_embedder *e);

/* Length of the vectors (hidden_size: 384 for all-MiniLM-L6-v2); 0 for NULL. */
CLATTN_API int32_t clattn_embedder_dim(const clattn_embedder *e);

/* The tokenizer the embedder uses (owned by it; valid until
 * clattn_embedder_destroy), e.g. to look at a text's tokens. */
CLATTN_API const clattn_tokenizer *clattn_embedder_tokenizer(const clattn_embedder *e);

/* The folder's defaults: pooling (MEAN, CLS or MAX), whether it normalises,
 * and max_length (tokens per text). Any pointer may be NULL. */
CLATTN_API void clattn_embedder_defaults(const clattn_embedder *e, clattn_pooling *pooling,
                                         bool *normalize, int32_t *max_length);

/* Embeds texts[0..n) (NUL-terminated UTF-8; "" is a valid text) into
 * out[n * dim], row i for text i. p may be NULL for the defaults. Blocking:
 * the vectors are in out on return.
 * Errors: CLATTN_ERR_INVALID_ARG (NULL e, texts, a NULL text, or out with
 * n > 0; n < 0; batch_size < 1; pooling or normalize out of range;
 * max_length < 0, below 2 or over max_position_embeddings),
 * CLATTN_ERR_OUT_OF_MEMORY, device errors; out is then partly written. */
CLATTN_API clattn_status clattn_embedder_embed(clattn_embedder *e, const char *const *texts,
                                               int32_t n, float *out,
                                               const clattn_embed_params *p);

/* As clattn_embedder_embed, from token ids instead of texts: text i is
 * ids[off_i .. off_i + lens[i]), where off_i is the sum of lens[0 .. i),
 * taken exactly as given (nothing added: pass what clattn_tokenizer_encode
 * gives, [CLS] and [SEP] included, for the same vector as the text's).
 * Errors: as clattn_embedder_embed, plus CLATTN_ERR_INVALID_ARG for NULL
 * ids or lens with n > 0, a length outside 1..max_length (naming the text;
 * ids are never truncated), or an id outside [0, vocab_size) (naming its
 * flat index). ids and lens are only read during the call; out[n * dim] is
 * written row i for text i. Blocking; thread safety as the embedder's
 * context (one thread at a time). */
CLATTN_API clattn_status clattn_embedder_embed_ids(clattn_embedder *e, const int64_t *ids,
                                                   const int32_t *lens, int32_t n, float *out,
                                                   const clattn_embed_params *p);

/* The self-attention probabilities of every layer and head for one text,
 * for looking at (heatmaps): weights [n_layers, n_heads, T, T], row-major,
 * where T is the text's token count ([CLS] pieces... [SEP], truncated to
 * max_length) and weights[l, h, i, j] is how much token i attends to token
 * j in layer l, head h: transformers' BertModel(..., output_attentions=True)
 * attentions[l][0, h] with eager attention, for the text alone (no
 * padding; each row sums to 1). p may be NULL; only p->max_length is read
 * (0: the folder's). *n_tokens, *n_layers, *n_heads receive T and the
 * model's sizes. weights NULL with capacity 0 only tokenizes and sets the
 * three counts, so a caller can size the buffer: n_layers * n_heads * T * T
 * floats. Otherwise capacity (floats) must be at least that, and ids, if
 * not NULL, receives the T token ids (labels with
 * clattn_tokenizer_id_to_token on clattn_embedder_tokenizer(e)).
 * Cost: one encoder pass of the text on the unfused attention path (the
 * T x T scores materialised per layer and read back after each layer);
 * clattn_embedder_embed is not affected (it never asks for weights).
 * Blocking. Errors: CLATTN_ERR_INVALID_ARG (NULL e, text or count
 * pointer; capacity < 0, or not 0 with weights NULL; max_length outside
 * 2..max_position_embeddings; capacity too small: the message gives the
 * shape and the floats needed, and the three counts are set),
 * CLATTN_ERR_OUT_OF_MEMORY, device errors (weights then partly written).
 * Thread safety: as its context (one thread at a time). */
CLATTN_API clattn_status clattn_embedder_attention(clattn_embedder *e, const char *text,
                                                   const clattn_embed_params *p, float *weights,
                                                   int64_t capacity, int64_t *ids,
                                                   int32_t *n_tokens, int32_t *n_layers,
                                                   int32_t *n_heads);

/* ======================================================================== */
/* Training: backward passes                                                */
/* ======================================================================== */

/* The training API is explicit: each forward op above has a backward op
 * that takes what the forward took (its inputs, and its output where that
 * is cheaper) plus dy, the gradient of the loss with respect to the
 * forward's output, and writes the gradients with respect to the inputs
 * and parameters. Modules (below) keep what their backward needs
 * themselves. An optimiser then updates parameters from their gradients.
 *
 * Rules for this section, on top of the Layers rules:
 * - Every gradient output may be NULL: it is then not computed.
 * - Gradient outputs have the shape of what they are the gradient of.
 * - Parameter gradients (dw, db, dgamma, dbeta, dtable) are overwritten,
 *   or added to when accumulate is true (PyTorch's .grad accumulation,
 *   e.g. for a weight used twice). Input gradients (dx) are overwritten.
 * - float32 throughout; everything runs on the device, non-blocking.
 *
 * One step of y = linear(x) -> act -> loss, by hand:
 *
 *     clattn_linear(ctx, x, w, b, CLATTN_ACT_NONE, z);        // z [R, out]
 *     clattn_activation_apply(ctx, z, CLATTN_ACT_GELU, y);    // y [R, out]
 *     clattn_mse_loss(ctx, y, target, &loss, dy);             // dy [R, out]
 *     clattn_activation_backward(ctx, z, CLATTN_ACT_GELU, dy, dz);
 *     clattn_linear_backward(ctx, x, w, dz, NULL, dw, db, false);
 *     clattn_optimizer_step(opt);                             // w -= ...
 *
 * Residual connections y = a + b pass dy unchanged to both a and b; two
 * gradient streams meeting at a tensor are summed with clattn_add. */

/* Gradients of y = x W^T + b (clattn_linear with CLATTN_ACT_NONE; put
 * clattn_activation_backward in front for a fused activation).
 *   x: [..., in]   w: [out, in]   dy: [..., out] (same leading dims as x)
 *   dx: [..., in] = dy W         dw: [out, in] = dy^T x (summed over rows)
 *   db: [out] = dy summed over rows
 * The products run on the context's GEMM backend (dw with beta = 1 when
 * accumulating); db is
 * a column sum of fixed order (bit-identical from run to run). No output
 * may alias an input or another output. */
CLATTN_API clattn_status clattn_linear_backward(clattn_ctx *ctx, const clattn_tensor *x,
                                                const clattn_tensor *w, const clattn_tensor *dy,
                                                clattn_tensor *dx, clattn_tensor *dw,
                                                clattn_tensor *db, bool accumulate);

/* dx = dy * act'(x) elementwise, x being the activation's input (the
 * pre-activation). x, dy, dx: the same shape; dx may be dy (in place), not
 * x. CLATTN_ACT_NONE copies dy. ReLU's derivative at 0 is 0 and a NaN x
 * passes dy through (both as PyTorch's threshold_backward); for the other
 * activations a NaN x gives NaN. Exact derivatives, GELU_TANH's included. */
CLATTN_API clattn_status clattn_activation_backward(clattn_ctx *ctx, const clattn_tensor *x,
                                                    clattn_activation act,
                                                    const clattn_tensor *dy, clattn_tensor *dx);

/* Gradients of clattn_layer_norm(x, gamma, beta, eps) -> y. The mean and
 * variance are recomputed from x.
 *   x, dy, dx: [..., E]   gamma: [E] or NULL (as in the forward)
 *   dgamma: [E] (only with gamma)   dbeta: [E]
 * eps as in the forward (finite, >= 0). The statistics are recomputed
 * with the forward's corrected two-pass algorithm (one work-group per
 * row); dx = rstd (g - mean(g) - xhat mean(g xhat)) with g = dy * gamma
 * (g = dy without gamma). dx may be dy (in place), not x or gamma; dgamma
 * and dbeta alias nothing. dgamma and dbeta are column sums of fixed
 * order (no atomics); dgamma needs a temporary of 12 bytes per row. */
CLATTN_API clattn_status clattn_layer_norm_backward(clattn_ctx *ctx, const clattn_tensor *x,
                                                    const clattn_tensor *gamma, float eps,
                                                    const clattn_tensor *dy, clattn_tensor *dx,
                                                    clattn_tensor *dgamma, clattn_tensor *dbeta,
                                                    bool accumulate);

/* Gradient of y = softmax(x) over the last dimension, from y:
 *   dx = y * (dy - sum(dy * y)) per row.
 * y, dy, dx: [..., N]; dx may be dy (in place), not y. */
CLATTN_API clattn_status clattn_softmax_backward(clattn_ctx *ctx, const clattn_tensor *y,
                                                 const clattn_tensor *dy, clattn_tensor *dx);

/* Gradient of clattn_embedding(table, ids, count) -> y with respect to the
 * table: dtable[v, :] = sum of dy[i, :] over the i with ids[i] == v; rows
 * of the table that no id uses get 0 (or keep their value when
 * accumulating). Summed in ascending i (a position list built on the
 * host, copied to a temporary device buffer, blocking), so the result is
 * the same on every run and device.
 *   ids: host int64[count], count >= 1, each in 0 .. V-1 (all checked
 *        before any device work, as clattn_embedding does)
 *   dy: count * E elements     dtable: [V, E], not dy */
CLATTN_API clattn_status clattn_embedding_backward(clattn_ctx *ctx, const int64_t *ids,
                                                   size_t count, const clattn_tensor *dy,
                                                   clattn_tensor *dtable, bool accumulate);

/* Inverted dropout, as nn.Dropout in training mode: y = x * keep / (1 - p)
 * with keep drawn for every element from a counter-based generator
 * (Philox4x32-10), so a (seed, offset) pair always gives the same mask on
 * every device and needs no state:
 *   element i (flattened) is dropped iff
 *   philox4x32_10(counter = {lo(i + offset), hi(i + offset), 0, 0},
 *                 key = {lo(seed), hi(seed)})[0] < p * 2^32
 * (the first of the four 32-bit outputs). Use a new offset (e.g. the
 * number of elements drawn so far) or seed for every call that needs a new
 * mask. i + offset wraps modulo 2^64. p in [0, 1] (else, NaN included,
 * CLATTN_ERR_INVALID_ARG); the comparison is exact (integer r against
 * ceil(p * 2^32)), so p = 0 copies and p = 1 gives zeros. Kept elements
 * are x * s with s = 1 / (1 - p) rounded once to float; dropped elements
 * are exactly 0, also where x is NaN or infinite (PyTorch's x * 0 would
 * give NaN there). x, y: the same shape; y may be x (in place). */
CLATTN_API clattn_status clattn_dropout(clattn_ctx *ctx, const clattn_tensor *x, float p,
                                        uint64_t seed, uint64_t offset, clattn_tensor *y);

/* Backward of clattn_dropout with the same p, seed and offset: dx = dy *
 * keep / (1 - p) (the same mask). dy, dx: the same shape; dx may be dy. */
CLATTN_API clattn_status clattn_dropout_backward(clattn_ctx *ctx, const clattn_tensor *dy,
                                                 float p, uint64_t seed, uint64_t offset,
                                                 clattn_tensor *dx);

/* Mean over the sequence: y[b, :] = mean of x[b, n, :] over n (pooling for
 * a sequence-level head): the sum in order of n, then divided by N, as
 * torch.mean. x: [B, N, E]   y: [B, E], not x. */
CLATTN_API clattn_status clattn_sequence_mean(clattn_ctx *ctx, const clattn_tensor *x,
                                              clattn_tensor *y);

/* Backward of clattn_sequence_mean: dx[b, n, :] = dy[b, :] / N.
 * dy: [B, E]   dx: [B, N, E], not dy. */
CLATTN_API clattn_status clattn_sequence_mean_backward(clattn_ctx *ctx, const clattn_tensor *dy,
                                                       clattn_tensor *dx);

/* Gradients of clattn_rms_norm(x, weight, eps) -> y; r = 1 / sqrt(mean(x^2)
 * + eps) is recomputed from x in float32 (one work-group per row),
 * xhat = x r, g = dy * weight (g = dy without weight):
 *   dx = r (g - xhat mean(g xhat))      dweight = sum over rows of dy xhat
 *   x, dy, dx: [..., E]   weight: [E] or NULL   dweight: [E] (only with weight)
 * dx may be dy (in place), not x or weight; dweight aliases nothing. dweight
 * is a column sum of fixed order (no atomics) and needs a temporary of 4
 * bytes per row. Errors: CLATTN_ERR_INVALID_ARG (shapes, eps, dweight
 * without weight, aliasing), CLATTN_ERR_OUT_OF_MEMORY. */
CLATTN_API clattn_status clattn_rms_norm_backward(clattn_ctx *ctx, const clattn_tensor *x,
                                                  const clattn_tensor *weight, float eps,
                                                  const clattn_tensor *dy, clattn_tensor *dx,
                                                  clattn_tensor *dweight, bool accumulate);

/* Gradient of clattn_rotary: the rotation is orthogonal, so dx is dy
 * turned by -angle (the same angles, the same positions and p):
 *   dx[i] = da cos + db sin,  dx[i + D/2] = db cos - da sin.
 *   dy, dx: [B, N, H, D] or [N, H, D]; dx may be dy (in place).
 * Errors: as clattn_rotary. */
CLATTN_API clattn_status clattn_rotary_backward(clattn_ctx *ctx, const clattn_tensor *dy,
                                                const int64_t *positions,
                                                const clattn_rope_params *p, clattn_tensor *dx);

/* Gradients of out = clattn_swiglu(gate, up), with s = sigmoid(gate):
 *   dgate = dout * up * s (1 + gate (1 - s))   (silu's derivative, as
 *           clattn_activation_backward's CLATTN_ACT_SILU computes it)
 *   dup   = dout * silu(gate)                  (as the forward computes it)
 *   gate, up, dout, dgate, dup: the same shape; either gradient may be
 *   NULL. dgate or dup (not both) may be dout (in place); neither may be
 *   gate or up. Errors: CLATTN_ERR_INVALID_ARG. */
CLATTN_API clattn_status clattn_swiglu_backward(clattn_ctx *ctx, const clattn_tensor *gate,
                                                const clattn_tensor *up, const clattn_tensor *dout,
                                                clattn_tensor *dgate, clattn_tensor *dup);

/* Tied input and output embeddings (tie_word_embeddings, GPT-2, small
 * Llamas): the table E [V, E] is both the embedding and the output head,
 * logits = h E^T (clattn_linear(h, E, NULL, CLATTN_ACT_NONE, logits)).
 * Its gradient is the sum of the head's and the gather's, written into one
 * dE by the two backward ops with accumulate (either order):
 *
 *     clattn_linear_backward(ctx, h, E, dlogits, dh, dE, NULL, false); // dE = dlogits^T h
 *     ...                                          // back through the layers to demb
 *     clattn_embedding_backward(ctx, ids, count, demb, dE, true);      // dE += gathered demb
 *
 * (tests/nn/test_tied_embedding.c checks the sum against a double one.) */

/* Gradients of clattn_sdpa, written by clattn_sdpa_backward. */
typedef struct clattn_sdpa_grads {
    clattn_tensor *dq;      /* [B, Hq, N, D] or NULL */
    clattn_tensor *dk;      /* [B, Hkv, M, D] or NULL; summed over the query
                               heads sharing a kv head (GQA, MQA) */
    clattn_tensor *dv;      /* [B, Hkv, M, Dv] or NULL; likewise */
    clattn_tensor *dbias;   /* the shape of p->bias (summed over its broadcast
                               dimensions) or NULL; -inf entries get 0 */
} clattn_sdpa_grads;

/* Fused, flash-style backward of out = clattn_sdpa(q, k, v, p).
 *   q, k, v, p: exactly as given to the forward (p->weights, p->lse and
 *               p->impl are ignored here);
 *   out: [B, Hq, N, Dv] the forward's output;
 *   lse: [B, Hq, N] the log-sum-exp the forward wrote through p->lse
 *        (required: run the forward with p->lse set);
 *   dout: [B, Hq, N, Dv] the gradient of the loss with respect to out.
 * With P = exp(score - lse) (0 where masked), Delta_i = dout_i . out_i and
 * dS = P * (dout v^T - Delta), the results are dv = P^T dout, dq = scale
 * dS k, dk = scale dS^T q (for CLATTN_SCORE_COSINE taken on the normalised
 * rows and carried through x / max(|x|, 1e-12), as PyTorch's F.normalize),
 * and dbias = dS summed over the bias's broadcast dimensions.
 * The probabilities are recomputed block by block from q, k and lse; no
 * N x M matrix is stored (except, for dbias with a broadcast bias, one of
 * dS as scratch), and blocks that no visible pair reaches are skipped
 * (causal costs about half). Every option of the forward is supported
 * (both scores, causal, windows, kv_len, bias, mask_mod, GQA/MQA) except
 * score_mod, whose derivative clattn cannot know: CLATTN_ERR_UNSUPPORTED
 * (also for the presets, which are score_mod snippets). Rows with no
 * visible key (lse = -inf) get zero gradients, and keys no query sees get
 * zero dk and dv; no NaN arises from masking. The result is the same on
 * every run (no atomics; fixed summation order).
 * Gradients are overwritten (there is no accumulate flag: add a dbias
 * into a parameter gradient with clattn_add). None may alias an input or
 * another gradient. All four NULL: checks only, nothing is computed.
 * Scratch (device memory the context keeps for reuse): O(B*Hq*N) rows;
 * on CPU devices copies of q and dout and up to 64 MiB of partial dq;
 * normalised q and k for cosine scores; B*Hq*N*M floats of dS for dbias
 * with a broadcast bias. Non-blocking.
 * Errors: CLATTN_ERR_INVALID_ARG (the forward's checks; lse, dout or a
 * gradient NULL where required, of another context or of the wrong shape;
 * dbias without p->bias; aliasing), CLATTN_ERR_UNSUPPORTED (score_mod;
 * and on Mesa's llvmpipe, N or M past what its loop limit lets the
 * kernels run: about 9200 at D = 64, 2600 at 128, 680 at 256, for N = M),
 * CLATTN_ERR_BUILD (a mask_mod that does not compile),
 * CLATTN_ERR_OUT_OF_MEMORY (scratch). */
CLATTN_API clattn_status clattn_sdpa_backward(clattn_ctx *ctx, const clattn_tensor *q,
                                              const clattn_tensor *k, const clattn_tensor *v,
                                              const clattn_tensor *out, const clattn_tensor *lse,
                                              const clattn_tensor *dout,
                                              const clattn_sdpa_params *p,
                                              const clattn_sdpa_grads *grads);

/* ======================================================================== */
/* Training: losses                                                         */
/* ======================================================================== */

/* Losses reduce to a mean, as PyTorch's default reduction='mean'. Each
 * writes the loss to *loss (when loss is not NULL: a blocking read of one
 * float) and its gradient with respect to the prediction into dpred /
 * dlogits (when not NULL, overwritten; without loss the call may return
 * before the device is done). With both NULL only the arguments are
 * checked. The sums are deterministic (fixed trees over Kahan-compensated
 * runs, no atomics): the same inputs give the same bits on a device, with
 * about 1e-6 relative accuracy whatever the size. Errors:
 * CLATTN_ERR_INVALID_ARG naming the argument and its shape (*loss and the
 * gradient are untouched then), CLATTN_ERR_OUT_OF_MEMORY. */

/* Mean squared error: mean((pred - target)^2) over all elements.
 * pred, target, dpred: the same shape; dpred = 2 (pred - target) / numel.
 * dpred may be pred or target (in place). */
CLATTN_API clattn_status clattn_mse_loss(clattn_ctx *ctx, const clattn_tensor *pred,
                                         const clattn_tensor *target, float *loss,
                                         clattn_tensor *dpred);

/* Cross-entropy of logits against class indices, as
 * nn.CrossEntropyLoss(ignore_index=ignore_index):
 *   loss = mean over rows r with targets[r] != ignore_index of
 *          logsumexp(logits[r, :]) - logits[r, targets[r]]
 *   logits, dlogits: [..., C] (rows = the leading dims flattened)
 *   targets: host int64[rows], each in 0 .. C-1 or ignore_index (checked)
 * dlogits = (softmax(logits) - onehot(target)) / valid rows, 0 on ignored
 * rows. When every row is ignored the loss is 0 and dlogits 0 (PyTorch
 * gives NaN). Pass -100, PyTorch's default, when nothing is ignored; as
 * in PyTorch, an ignore_index inside 0 .. C-1 ignores that class's rows.
 * Every target is checked before any device work: a bad one is
 * CLATTN_ERR_INVALID_ARG naming its position and value. targets is read
 * during the call only (copied to the device, blocking). dlogits may be
 * logits (in place). Stable for any logits (max subtracted); a row with
 * NaN or +inf gives NaN. */
CLATTN_API clattn_status clattn_cross_entropy_loss(clattn_ctx *ctx, const clattn_tensor *logits,
                                                   const int64_t *targets, int64_t ignore_index,
                                                   float *loss, clattn_tensor *dlogits);

/* The causal-LM loss, as transformers' LlamaForCausalLM computes it from
 * labels: position t predicts label t + 1 (the labels are shifted left by
 * one, the last position of each sequence predicts nothing), then
 * F.cross_entropy(reduction="mean", ignore_index=ignore_index) on the
 * shifted pairs:
 *   loss = mean over (b, t < T-1) with labels[b, t+1] != ignore_index of
 *          logsumexp(logits[b, t, :]) - logits[b, t, labels[b, t+1]]
 *   logits, dlogits: [B, T, V] (or [T, V]: B = 1)
 *   labels: host int64[B * T], labels[b * T + t]; each used one
 *           (t >= 1) in 0 .. V-1 or ignore_index (checked before any
 *           device work); labels[b * T] is never a target and is not read
 * dlogits = (softmax(logits[b, t]) - onehot(labels[b, t+1])) / valid, 0 at
 * t = T-1 and at ignored targets. Pass -100 (PyTorch's default) for
 * ignore_index. No valid target at all (every used label ignored, or
 * T = 1) is CLATTN_ERR_INVALID_ARG: PyTorch's mean over zero tokens is
 * NaN, and no loss is defined (*loss and dlogits untouched). Otherwise as
 * clattn_cross_entropy_loss (the same kernel and sums, the same
 * accuracy; dlogits may be logits). */
CLATTN_API clattn_status clattn_causal_lm_loss(clattn_ctx *ctx, const clattn_tensor *logits,
                                               const int64_t *labels, int64_t ignore_index,
                                               float *loss, clattn_tensor *dlogits);

/* ======================================================================== */
/* Training: optimisers and checkpoints                                     */
/* ======================================================================== */

/* A trainable parameter: its name (the state_dict name), value and
 * gradient tensors (the same shape, borrowed). clattn_clip_grad_norm
 * reads only grad; the checkpoint functions only name and value. */
typedef struct clattn_param_ref {
    const char *name;
    clattn_tensor *value;
    clattn_tensor *grad;
} clattn_param_ref;

typedef enum clattn_optimizer_kind {
    CLATTN_OPTIM_SGD = 0,      /* torch.optim.SGD */
    CLATTN_OPTIM_ADAM = 1,     /* torch.optim.Adam (weight decay added to the gradient) */
    CLATTN_OPTIM_ADAMW = 2     /* torch.optim.AdamW (decoupled weight decay) */
} clattn_optimizer_kind;

/* Hyper-parameters, named and defaulted as PyTorch's; fields the kind
 * does not use are ignored (and not checked). The learning rate of
 * step t (t = 0, 1, ... counts the steps taken before it) is
 *   lr * (t + 1) / warmup_steps                          for t < warmup_steps,
 *   min_lr + (lr - min_lr) * (1 + cos(pi * u)) / 2       after, when
 *       total_steps > 0, with u = min(1, (t - warmup_steps) /
 *       max(1, total_steps - warmup_steps)) (cosine decay),
 *   lr                                                   otherwise. */
typedef struct clattn_optimizer_params {
    clattn_optimizer_kind kind;
    float lr;                  /* base learning rate (> 0) */
    float weight_decay;        /* >= 0; SGD/Adam: L2 (grad += wd * w), AdamW: decoupled */
    float momentum;            /* SGD, >= 0 */
    float dampening;           /* SGD */
    bool nesterov;             /* SGD; needs momentum > 0 and dampening 0 */
    float beta1, beta2;        /* Adam/AdamW, in [0, 1) */
    float eps;                 /* Adam/AdamW, > 0 */
    float max_grad_norm;       /* > 0: clip the global L2 norm of all gradients
                                  to this before each step (clip_grad_norm_); 0: off */
    int64_t warmup_steps;      /* >= 0; 0: no warm-up */
    int64_t total_steps;       /* > 0: cosine decay until this step; 0: constant */
    float min_lr;              /* the cosine schedule's floor */
} clattn_optimizer_params;

/* PyTorch's defaults for kind: SGD lr 1e-3 (PyTorch has no default),
 * momentum 0, dampening 0, weight_decay 0, no nesterov; Adam lr 1e-3,
 * betas (0.9, 0.999), eps 1e-8, weight_decay 0; AdamW the same with
 * weight_decay 1e-2 (every kind gets the betas and eps; SGD ignores
 * them). No clipping, no schedule (max_grad_norm, warmup_steps,
 * total_steps and min_lr 0). */
CLATTN_API clattn_optimizer_params clattn_optimizer_params_default(clattn_optimizer_kind kind);

typedef struct clattn_optimizer clattn_optimizer;

/* Creates an optimiser over params[0..count), count >= 1 (names copied,
 * tensors borrowed: they must outlive it). Moment and momentum buffers
 * (the parameters' shapes; none for SGD without momentum) are allocated
 * on the device, zeroed. Errors: CLATTN_ERR_INVALID_ARG (a hyper-parameter
 * out of range, naming it: lr > 0, weight_decay >= 0, momentum >= 0,
 * nesterov with momentum > 0 and dampening 0, betas in [0, 1), eps > 0,
 * max_grad_norm >= 0, warmup_steps and total_steps >= 0, min_lr >= 0, all
 * finite; a NULL, empty or duplicate name; a NULL tensor, one of another
 * context, value and grad of different shapes, or a tensor used twice),
 * CLATTN_ERR_OUT_OF_MEMORY. *out is NULL on failure. Destroy with
 * clattn_optimizer_destroy (NULL is a no-op) before the tensors. */
CLATTN_API clattn_status clattn_optimizer_create(clattn_ctx *ctx, const clattn_optimizer_params *p,
                                                 int32_t count, const clattn_param_ref *params,
                                                 clattn_optimizer **out);
CLATTN_API void clattn_optimizer_destroy(clattn_optimizer *opt);

/* One update of every parameter from its gradient: clipping (if set),
 * the scheduled learning rate, then the update rule, exactly as PyTorch's
 * clip_grad_norm_ + step() + LambdaLR (checked against PyTorch to about
 * an ulp per step): SGD's momentum buffer starts as the first gradient;
 * Adam's denominator is sqrt(v) / sqrt(1 - beta2^t) + eps and its step
 * lr / (1 - beta1^t); AdamW first multiplies w by 1 - lr * weight_decay.
 * One fused kernel per parameter. Clipping scales the gradient inside
 * that kernel: unlike clip_grad_norm_, the gradient tensors themselves
 * are left unchanged. A non-finite gradient norm is
 * CLATTN_ERR_INVALID_ARG and leaves every parameter, the state and the
 * step count unchanged (clipping reads the norm, a blocking read; without
 * clipping the step does not check, and is non-blocking). */
CLATTN_API clattn_status clattn_optimizer_step(clattn_optimizer *opt);

/* Sets every gradient to zero (optimizer.zero_grad(set_to_none=False)). */
CLATTN_API clattn_status clattn_optimizer_zero_grad(clattn_optimizer *opt);

/* Steps taken so far; the learning rate the next step will use; the global
 * gradient norm measured by the last step (before clipping, also when it
 * was non-finite and the step refused; -1 if the last step did not measure
 * it). For NULL: 0, 0 and -1. */
CLATTN_API int64_t clattn_optimizer_steps(const clattn_optimizer *opt);
CLATTN_API float clattn_optimizer_lr(const clattn_optimizer *opt);
CLATTN_API float clattn_optimizer_last_grad_norm(const clattn_optimizer *opt);

/* Global L2 norm of the gradients of params[0..count) into *norm
 * (blocking; norm may be NULL), and, when max_norm > 0, scales them by
 * max_norm / (norm + 1e-6) if that is below 1, as
 * torch.nn.utils.clip_grad_norm_ (in its float32 arithmetic). Only the
 * grad fields are read; count 0 gives 0. The sum of squares is
 * deterministic (per-tensor partial sums on the device, combined in a
 * fixed order). Errors: CLATTN_ERR_INVALID_ARG for a NULL or shared
 * gradient, max_norm negative or non-finite, or a non-finite norm (then
 * nothing is scaled and *norm is untouched). */
CLATTN_API clattn_status clattn_clip_grad_norm(clattn_ctx *ctx, int32_t count,
                                               const clattn_param_ref *params, float max_norm,
                                               float *norm);

/* Saves the parameters (values, under their names: a PyTorch state_dict
 * that load_state_dict takes) and, with opt, the optimiser's state as
 * "optimizer.<name>.exp_avg", ".exp_avg_sq" (Adam/AdamW) or
 * ".momentum_buffer" (SGD with momentum) tensors for each of opt's
 * parameters, plus in the metadata "clattn.optimizer" ("sgd", "adam",
 * "adamw"), "clattn.step" (a decimal integer) and every hyper-parameter
 * as "clattn.<field>" (floats printed with 9 digits, so they read back
 * exactly; "true"/"false"), and "format": "pt", to a safetensors file of
 * F32 tensors (clattn_weights_write: written to a temporary file and
 * renamed, so path is never left half-written). Blocking. Errors:
 * CLATTN_ERR_INVALID_ARG (NULL path, a NULL or empty name or NULL value,
 * names that repeat), CLATTN_ERR_IO, CLATTN_ERR_OUT_OF_MEMORY. */
CLATTN_API clattn_status clattn_checkpoint_save(const char *path, int32_t count,
                                                const clattn_param_ref *params,
                                                const clattn_optimizer *opt);

/* Loads what clattn_checkpoint_save wrote (or a PyTorch state_dict saved
 * with safetensors, without optimiser state): every parameter must be in
 * the file with its shape (CLATTN_ERR_FORMAT naming it otherwise;
 * F16/BF16/F64 are converted, other dtypes are CLATTN_ERR_UNSUPPORTED);
 * other tensors in the file are ignored. With opt, its state and step
 * count too: the file must name the same optimiser kind and hold a valid
 * "clattn.step" and every state tensor of opt's parameters with their
 * shapes (CLATTN_ERR_FORMAT naming the key or tensor otherwise). The
 * hyper-parameters stay opt's own (the file's are for reference): create
 * opt with the same ones to continue a run exactly. The file is untrusted
 * input (clattn_weights_open checks it; CLATTN_ERR_IO if it cannot be
 * read). Everything is checked before anything is written, so a bad file
 * leaves the tensors and opt unchanged; only a device failure during the
 * copy may leave values partly loaded. Blocking. */
CLATTN_API clattn_status clattn_checkpoint_load(const char *path, int32_t count,
                                                const clattn_param_ref *params,
                                                clattn_optimizer *opt);

/* ======================================================================== */
/* Training: modules                                                        */
/* ======================================================================== */

/* MHA, SELF_ATTENTION, ENCODER_LAYER, DECODER_LAYER, ENCODER and DECODER
 * modules train: clattn_module_train_forward computes what
 * clattn_module_forward does and keeps the activations its backward needs
 * (one saved forward at a time, replaced by the next); then
 * clattn_module_backward takes the output gradient, adds the parameter
 * gradients into the module's gradient tensors and writes the input
 * gradients. Attention runs the fused forward and backward kernels, so
 * nothing N x M is kept unless attention weights are requested.
 * TRANSFORMER is CLATTN_ERR_UNSUPPORTED (train its encoder and decoder as
 * two modules). Training uses no dropout. The forward's input tensors
 * (query, key, value, memory) are borrowed until the backward: do not
 * change or destroy them in between. Any clattn_module_forward in between
 * discards the saved activations. */

CLATTN_API clattn_status clattn_module_train_forward(clattn_module *m,
                                                     const clattn_forward_args *a,
                                                     clattn_tensor *out);

/* Input gradients, by the forward's argument names (each NULL: not wanted):
 *   MHA: dquery, dkey, dvalue, each the shape of its input. When query,
 *        key and value were the same tensor (self-attention), dquery
 *        receives the whole gradient and dkey, dvalue must be NULL; when
 *        key and value were, dkey and dvalue may be the same tensor, which
 *        then receives the sum;
 *   SELF_ATTENTION: dquery;
 *   ENCODER_LAYER, ENCODER: dsrc;
 *   DECODER_LAYER, DECODER: dtgt, dmemory. */
typedef struct clattn_backward_args {
    const clattn_tensor *dout;     /* [shape of out] */
    clattn_tensor *dquery, *dkey, *dvalue;
    clattn_tensor *dsrc, *dtgt, *dmemory;
} clattn_backward_args;

/* Backward of the last clattn_module_train_forward: parameter gradients
 * are added to the module's gradients (zero them with
 * clattn_module_zero_grad between steps). CLATTN_ERR_INVALID_ARG when no
 * forward was saved or dout has the wrong shape. The saved activations
 * stay, so a second backward adds the same gradients again. */
CLATTN_API clattn_status clattn_module_backward(clattn_module *m, const clattn_backward_args *a);

/* Every field NULL. */
CLATTN_API clattn_backward_args clattn_backward_args_default(void);

/* The gradient of parameter name (the shape of the parameter, owned by the
 * module, zero when first asked for), NULL for an unknown name. */
CLATTN_API clattn_tensor *clattn_module_grad(clattn_module *m, const char *name);

/* Sets every gradient of the module to zero. */
CLATTN_API clattn_status clattn_module_zero_grad(clattn_module *m);

/* Fills refs[0..min(count, cap)) with the module's parameters (name, value,
 * gradient; gradients allocated on first use) and returns count (the
 * number of parameters, as clattn_module_param_count), or -1 on an
 * allocation failure (message in clattn_ctx_last_error). refs may be NULL
 * with cap 0 to ask for the count. Names and tensors stay valid until the
 * module is destroyed. */
CLATTN_API int32_t clattn_module_param_refs(clattn_module *m, clattn_param_ref *refs,
                                            int32_t cap);

/* ======================================================================== */
/* Sampling (host, double precision)                                         */
/* ======================================================================== */

/* A sampler turns a row of logits into a token id. It runs on the host in
 * double precision, so the same logits and seed give the same ids on every
 * device. The steps, in the order of Hugging Face's generate with
 * do_sample (transformers 4.57, generation/logits_process.py, with its
 * min_tokens_to_keep = 1), each on the output of the one before:
 *   1. repetition penalty (RepetitionPenaltyLogitsProcessor): for every id
 *      in the window (below), each id once, a logit l < 0 becomes
 *      l * repeat_penalty and any other l / repeat_penalty;
 *   2. presence and frequency penalties (OpenAI's definition; transformers
 *      has none): l = l - c * frequency_penalty - (c > 0) *
 *      presence_penalty, c the id's count in the window;
 *   3. temperature 0: greedy, the lowest id of the largest logit (top_k,
 *      top_p and min_p are ignored and the RNG is not advanced); else
 *      l / temperature (TemperatureLogitsWarper);
 *   4. top-k (TopKLogitsWarper): the ids whose logit is below the top_k-th
 *      largest are removed, so ids tied with it all stay (more than top_k
 *      may remain; top_k 1 keeps every id tied for the largest, and is
 *      greedy only when there is no tie); top_k >= the ids of finite
 *      logit, vocab included, removes nothing;
 *   5. top-p (TopPLogitsWarper): with the ids in the draw's order (below)
 *      and their softmax probabilities, an id stays while the probability
 *      of the ids before it is < top_p: the shortest prefix that reaches
 *      top_p (transformers removes the ids whose ascending cumulative
 *      probability is <= 1 - top_p: the same set in exact arithmetic);
 *      the most probable id
 *      always stays. Ties at the cut: the lower ids stay. transformers
 *      keeps as many ids there, but which of the tied ones depends on
 *      torch.sort, which is not stable (on short rows it keeps the higher
 *      ids);
 *   6. min-p (MinPLogitsWarper): with the probabilities of what top-p
 *      left, the ids of probability < min_p * the largest are removed;
 *   7. softmax over what is left, and one draw.
 * The penalties apply to ids of finite logit; -inf stays -inf and is never
 * picked. The window of the penalties is the last repeat_last_n ids given
 * to clattn_sampler_accept (all of them for -1; none for 0, which turns
 * the penalties off).
 * The draw: the kept ids sorted by probability (descending, then id
 * ascending); u = the RNG's next double in [0, 1); the first id whose
 * cumulative probability exceeds u * total (the sum of the kept
 * probabilities, added in that order), or the last id of nonzero
 * probability when rounding leaves none. Every draw that is not greedy
 * takes exactly one double from the RNG, even with one id kept. The RNG
 * is xoshiro256** seeded by splitmix64(seed) (the four words are
 * splitmix64's first four outputs); a double is (next() >> 11) * 2^-53.
 * Cost: clattn_sampler_accept is O(1); a sample is O(vocab) for the
 * penalties and the temperature, then, with top_k set, O(vocab log top_k)
 * to select the top-k and O(m log m) to sort the m >= top_k ids kept, else
 * O(n log n) to sort the n ids of finite logit. Memory: 32 bytes per
 * vocabulary entry, 24 per top_k (at most vocab) and 4 per id of the
 * window (allocated as ids arrive). */
typedef struct clattn_sampler_params {
    double temperature;        /* 0: greedy; default 1.0 */
    int32_t top_k;             /* 0: off; default 0 */
    double top_p;              /* 1.0: off; default 1.0 */
    double min_p;              /* 0: off; default 0 */
    double repeat_penalty;     /* 1.0: off; default 1.0 */
    int32_t repeat_last_n;     /* window of the penalties: the last N
                                  accepted ids; -1: every accepted id (the
                                  prompt's too, once accepted); 0: the
                                  penalties off; default 64 */
    double presence_penalty;   /* 0: off */
    double frequency_penalty;  /* 0: off */
    uint64_t seed;             /* default 0 */
} clattn_sampler_params;

/* The defaults above. */
CLATTN_API clattn_sampler_params clattn_sampler_params_default(void);

typedef struct clattn_sampler clattn_sampler;

/* Checks the parameters (temperature >= 0 and finite, top_k >= 0, top_p in
 * (0, 1], min_p in [0, 1], repeat_penalty > 0 and finite, repeat_last_n >=
 * -1, penalties finite; CLATTN_ERR_INVALID_ARG naming the field; p NULL:
 * the defaults) and makes a sampler for logits rows of vocab >= 1
 * entries. Free with clattn_sampler_destroy (NULL: no-op). A sampler is
 * used by one thread at a time. */
CLATTN_API clattn_status clattn_sampler_create(const clattn_sampler_params *p, int32_t vocab,
                                               clattn_sampler **out);
CLATTN_API void clattn_sampler_destroy(clattn_sampler *s);

/* Records id as seen (the prompt's ids and every sampled one), for the
 * penalties. CLATTN_ERR_INVALID_ARG for an id outside [0, vocab). */
CLATTN_API clattn_status clattn_sampler_accept(clattn_sampler *s, int32_t id);

/* Forgets the ids seen and reseeds the RNG with seed: the sampler then
 * behaves as a new one made with that seed. */
CLATTN_API void clattn_sampler_reset(clattn_sampler *s, uint64_t seed);

/* Picks the next id from logits[0 .. vocab) (not modified) as described
 * above; does not accept it. CLATTN_ERR_INVALID_ARG (nothing drawn) for a
 * NaN or +inf logit, naming the id, for penalties that overflow a logit to
 * +inf, and when every logit is -inf (after the penalties). */
CLATTN_API clattn_status clattn_sampler_sample(clattn_sampler *s, const float *logits,
                                               int32_t *id);

/* The probabilities step 7 would draw from, into probs[0 .. vocab) (0 for
 * removed ids), for inspection and tests; the RNG is not used. Errors as
 * clattn_sampler_sample. Greedy gives a one-hot row. */
CLATTN_API clattn_status clattn_sampler_probs(clattn_sampler *s, const float *logits,
                                              double *probs);

/* ======================================================================== */
/* Decoder language models                                                   */
/* ======================================================================== */

/* A causal decoder language model from a Hugging Face folder:
 *   config.json                 architectures[0] and model_type, see below
 *   model.safetensors, or model-0000N-of-0000M.safetensors listed by
 *                               model.safetensors.index.json ("weight_map")
 *   generation_config.json      optional: eos_token_id (an id or a list),
 *                               bos_token_id
 *   tokenizer.json, tokenizer_config.json   optional (clattn_lm_tokenizer)
 * Architectures (the forward pass is transformers' eager one):
 *   LlamaForCausalLM (model_type "llama"): RMSNorm, rotary embeddings in
 *     the half-split layout (rope_theta; rope_scaling "default", "linear",
 *     "llama3"), SwiGLU MLP, num_key_value_heads (GQA/MQA), head_dim,
 *     attention_bias, mlp_bias, tie_word_embeddings;
 *   MistralForCausalLM ("mistral"): Llama with sliding_window (a key j is
 *     seen by query i when i - sliding_window < j <= i);
 *   Qwen2ForCausalLM ("qwen2"): Llama with biases on q, k and v only, and
 *     the window of use_sliding_window on the layers that max_window_layers
 *     or layer_types name;
 *   GPT2LMHeadModel ("gpt2"): LayerNorm, learned positions, Conv1D weights
 *     stored [in, out], activation_function gelu_new (also gelu, relu,
 *     silu), the head tied to wte unless tie_word_embeddings is false;
 *     tensor names with or without "transformer.".
 * Both config spellings are read: transformers 4.x (rope_theta,
 * rope_scaling {rope_type or type}, torch_dtype) and 5.x (rope_parameters
 * {rope_theta, rope_type, factor, ...}, dtype). A missing setting takes
 * the default of transformers' config class for the model type. Anything
 * else (another architecture or model_type, rope type or activation,
 * partial_rotary_factor, GPT-2's scale_attn_by_inverse_layer_idx, a value
 * of the wrong type or out of range) is CLATTN_ERR_UNSUPPORTED or
 * CLATTN_ERR_FORMAT naming config.json and the field.
 * Weights stay in the file's precision: 2-D tensors of F32, F16 or BF16 go
 * to the device as stored (GPT-2's Conv1D transposed, still in its dtype)
 * and are read by clattn's kernels, which compute in float32; 1-D tensors
 * (norm weights, biases: well under 1% of the bytes) are converted to
 * float32. A tied head uses the embedding matrix (stored once). */
typedef struct clattn_lm clattn_lm;

/* Fills *out from dir (see above). The config is read first; each tensor's
 * name, dtype, shape and values are checked against it before that tensor
 * is uploaded, and on any failure everything is freed. Errors:
 * CLATTN_ERR_IO (a missing file or shard, naming it), CLATTN_ERR_FORMAT
 * (malformed JSON or safetensors, a tensor missing or of the wrong shape,
 * naming it and both shapes; a weight holding NaN or infinity, naming the
 * tensor and the first bad index), CLATTN_ERR_UNSUPPORTED (see above, and
 * tensors of another dtype), CLATTN_ERR_OUT_OF_MEMORY. The model uses ctx
 * (one thread at a time, as always); destroy it before ctx. */
CLATTN_API clattn_status clattn_lm_load(clattn_ctx *ctx, const char *dir, clattn_lm **out);

/* Frees the model (its sessions must be destroyed first). NULL: no-op. */
CLATTN_API void clattn_lm_destroy(clattn_lm *lm);

#define CLATTN_LM_MAX_EOS 8

/* What was loaded. */
typedef struct clattn_lm_info {
    char architecture[64];       /* "LlamaForCausalLM" */
    char model_type[32];         /* "llama" */
    int32_t n_layers, hidden, intermediate, n_heads, n_kv_heads, head_dim;
    int32_t vocab_size;
    int32_t max_positions;       /* max_position_embeddings (n_positions) */
    int32_t sliding_window;      /* 0: none */
    bool tied_embeddings;
    clattn_dtype dtype;          /* of the large matrices (F32, F16, BF16) */
    int32_t bos_id;              /* -1: none */
    int32_t n_eos;               /* generation_config's eos ids, else config's */
    int32_t eos_ids[CLATTN_LM_MAX_EOS];
    uint64_t file_bytes;         /* bytes of the tensors in the files */
    uint64_t device_bytes;       /* bytes of the weights on the device */
} clattn_lm_info;

CLATTN_API clattn_status clattn_lm_get_info(const clattn_lm *lm, clattn_lm_info *info);

/* The folder's tokenizer (owned by the model), or NULL when the folder had
 * no tokenizer.json. */
CLATTN_API const clattn_tokenizer *clattn_lm_tokenizer(const clattn_lm *lm);

/* KV-cache storage. */
typedef enum clattn_cache_type {
    CLATTN_CACHE_F32 = 0,
    CLATTN_CACHE_F16 = 1    /* half the memory; keys and values rounded to half */
} clattn_cache_type;

typedef struct clattn_lm_session_params {
    /* Positions each sequence can hold. 0: the model's max_positions;
     * larger than max_positions is CLATTN_ERR_INVALID_ARG. */
    int32_t ctx_size;
    int32_t n_seq;              /* sequences (cache slots); default 1 */
    clattn_cache_type cache_type;
    /* Keep what clattn_lm_attention_last needs: each layer's query of each
     * sequence's last position, n_seq * n_layers * n_heads * head_dim
     * floats on the device, and one small device copy per layer and
     * sequence in every prefill and decode. Default false. */
    bool want_attention;
} clattn_lm_session_params;

/* ctx_size 0, n_seq 1, CLATTN_CACHE_F32, want_attention false. */
CLATTN_API clattn_lm_session_params clattn_lm_session_params_default(void);

/* A session: the device KV cache of n_seq sequences, numbered 0 .. n_seq-1,
 * each holding up to ctx_size positions, plus the buffers of the forward
 * pass. Each sequence starts empty. Sessions of one model share its
 * context: one thread at a time. */
typedef struct clattn_lm_session clattn_lm_session;

CLATTN_API clattn_status clattn_lm_session_create(clattn_lm *lm,
                                                  const clattn_lm_session_params *p,
                                                  clattn_lm_session **out);
CLATTN_API void clattn_lm_session_destroy(clattn_lm_session *s);

/* Positions held by sequence seq (0 .. ctx_size). */
CLATTN_API int32_t clattn_lm_session_length(const clattn_lm_session *s, int32_t seq);

/* Forgets everything from position n_pos on in sequence seq (0 empties
 * it), so a caller can keep a prompt prefix and continue differently.
 * n_pos greater than the length is CLATTN_ERR_INVALID_ARG. The logits of
 * the last position are unavailable until the next prefill or decode. */
CLATTN_API clattn_status clattn_lm_session_truncate(clattn_lm_session *s, int32_t seq,
                                                    int32_t n_pos);

/* Appends n >= 1 ids to sequence seq and runs them through the model
 * (fused causal attention over the cache). logits: NULL, or [n, vocab]
 * floats receiving the logits of every new position (blocking). Either
 * way the last position's logits are kept for clattn_lm_logits.
 * Errors: CLATTN_ERR_INVALID_ARG (an id outside the vocabulary, naming
 * its index; seq out of range), CLATTN_ERR_CONTEXT_FULL (the positions
 * would pass ctx_size: nothing is appended). */
CLATTN_API clattn_status clattn_lm_prefill(clattn_lm_session *s, int32_t seq,
                                           const int32_t *ids, int32_t n, float *logits);

/* One decode step for n distinct sequences at once: ids[i] is appended to
 * sequence seqs[i]. The sequences may have different lengths (an empty one
 * starts at position 0). logits: NULL, or [n, vocab] floats, row i for
 * seqs[i]. The batch runs as one forward pass with the split-KV decode
 * attention. Errors as prefill, plus CLATTN_ERR_INVALID_ARG for a sequence
 * listed twice; CLATTN_ERR_CONTEXT_FULL when one of them is full (nothing
 * is appended to any). */
CLATTN_API clattn_status clattn_lm_decode(clattn_lm_session *s, int32_t n, const int32_t *seqs,
                                          const int32_t *ids, float *logits);

/* The logits of sequence seq's last position into logits[0 .. vocab);
 * blocking. CLATTN_ERR_INVALID_ARG when there are none (empty or just
 * truncated). */
CLATTN_API clattn_status clattn_lm_logits(clattn_lm_session *s, int32_t seq, float *logits);

/* The attention weights of sequence seq's last position over its whole
 * context, for looking at (heatmaps): weights [n_layers, n_heads,
 * ctx_len], row-major, ctx_len = clattn_lm_session_length(s, seq), one
 * row per query head (GQA/MQA included), each summing to 1, with exact
 * zeros where the position does not look (keys outside the layer's
 * sliding window). Equal to the last row of transformers'
 * output_attentions=True with eager attention on the whole sequence:
 * attentions[l][0, h, ctx_len - 1, :]. The session must have been created
 * with want_attention; the row is recomputed from the query kept at the
 * last prefill or decode and the keys in the cache (as stored: a half
 * cache gives the weights of the rounded keys). weights NULL with
 * capacity 0 only sets *ctx_len, so a caller can size the buffer:
 * n_layers * n_heads * ctx_len floats (clattn_lm_get_info gives the
 * first two). Cost per call: per layer, one gather of the sequence's keys
 * to float32 (n_kv_heads * ctx_len * head_dim floats, twice for the
 * values' room), one unfused attention row per head, one blocking read.
 * Errors: CLATTN_ERR_INVALID_ARG (s or ctx_len NULL; seq out of range;
 * capacity < 0, or not 0 with weights NULL; a session without
 * want_attention; a sequence with no last position: empty, just
 * truncated, or its last call failed; capacity too small: the message
 * gives the shape and the floats needed, and *ctx_len is set),
 * CLATTN_ERR_OUT_OF_MEMORY, device errors. Thread safety: as the session
 * (one thread at a time for the model's context). */
CLATTN_API clattn_status clattn_lm_attention_last(clattn_lm_session *s, int32_t seq,
                                                  float *weights, int64_t capacity,
                                                  int32_t *ctx_len);

/* Attention of a few new query rows per sequence against a KV cache kept
 * by the caller, with the split-KV kernel pair (FlashDecoding) that
 * clattn_lm_decode runs: the cache is cut into chunks attended in
 * parallel (the chunk count follows the cache length and the device's
 * compute units), every query head of one KV head shares one read of each
 * chunk, and a second kernel merges the chunks by log-sum-exp.
 *   q:    [B, R, Hq, D]   R new rows of each sequence, token-major
 *   k, v: [B, Hkv, C, D]  the cache; sequence b's first kv_len[b] positions
 *                         are valid, the new rows' keys and values included
 *   out:  [B, R, Hq, D]   (must not alias q)
 * Row r of sequence b is position kv_len[b] - R + r; it sees key j when
 * j <= that position and j >= position - window_left (window_left -1:
 * unlimited). kv_len: host array of B values in [R, C], read during the
 * call. scale 0: 1 / sqrt(D). D 1..256; Hq a multiple of Hkv.
 * Errors: CLATTN_ERR_INVALID_ARG naming the argument. Non-blocking. */
CLATTN_API clattn_status clattn_sdpa_decode(clattn_ctx *ctx, const clattn_tensor *q,
                                            const clattn_tensor *k, const clattn_tensor *v,
                                            clattn_tensor *out, const int32_t *kv_len,
                                            int32_t window_left, float scale);

/* Called once per generated token: id, and the text it completes (valid
 * UTF-8, possibly empty while a character or a run of byte tokens is
 * incomplete; not NUL-terminated). Return false to stop. When generation
 * ends with text still held back, one last call brings it with id -1 (its
 * return value is ignored). The texts of all calls concatenated equal
 * clattn_tokenizer_decode of the generated ids (special tokens skipped). */
typedef bool (*clattn_token_fn)(void *user, int32_t id, const char *text, size_t len);

typedef struct clattn_generate_params {
    int32_t max_tokens;         /* new tokens at most; default 128 */
    clattn_sampler_params sampling;
    bool ignore_eos;            /* default false: stop at the model's eos ids */
    const char *const *stop;    /* n_stop stop strings: generation stops once
                                   the text contains one (it is kept) */
    int32_t n_stop;
    clattn_token_fn on_token;   /* NULL: none */
    void *user;
    /* NULL, or room for [n_prompt + max_tokens - 1, vocab] floats: row i <
     * n_prompt holds the logits of prompt position i (row n_prompt - 1
     * picked the first generated id), and row n_prompt - 1 + j those that
     * picked generated id j + 1, so n_prompt + n_ids - 1 rows are written */
    float *logits;
} clattn_generate_params;

CLATTN_API clattn_generate_params clattn_generate_params_default(void);

/* Why generation stopped. */
typedef enum clattn_stop_reason {
    CLATTN_STOP_MAX_TOKENS = 0,
    CLATTN_STOP_EOS = 1,        /* the eos id is included in ids */
    CLATTN_STOP_STRING = 2,
    CLATTN_STOP_CALLBACK = 3,
    CLATTN_STOP_CONTEXT = 4     /* the sequence reached ctx_size */
} clattn_stop_reason;

typedef struct clattn_generate_result {
    int32_t n_ids;              /* ids written to out_ids */
    clattn_stop_reason reason;
    double prompt_seconds, gen_seconds; /* prefill, and the decode steps */
} clattn_generate_result;

/* Empties sequence seq, prefills prompt[0 .. n_prompt) (n_prompt >= 1),
 * then samples and decodes up to max_tokens ids into out_ids (capacity
 * >= max_tokens). The sampler is fresh, seeded with sampling.seed, and
 * has accepted the prompt. Errors as clattn_lm_prefill and
 * clattn_sampler_create; a prompt that fills ctx_size is
 * CLATTN_ERR_CONTEXT_FULL. */
CLATTN_API clattn_status clattn_lm_generate(clattn_lm_session *s, int32_t seq,
                                            const int32_t *prompt, int32_t n_prompt,
                                            const clattn_generate_params *p, int32_t *out_ids,
                                            int32_t capacity, clattn_generate_result *res);

/* ======================================================================== */
/* Training: decoder language models (Llama)                                 */
/* ======================================================================== */

/* A clattn_llama is transformers' LlamaForCausalLM with every parameter a
 * float32 tensor that trains (clattn_lm, above, is the inference engine:
 * weights in the file's precision, a KV cache). Train one from scratch or
 * from a Hugging Face folder; clattn_checkpoint_save writes the
 * parameters under the state_dict names, so transformers'
 * LlamaForCausalLM.load_state_dict takes them, and clattn_llama_export
 * (below) writes a whole Hugging Face folder that transformers and
 * clattn_lm_load both read.
 *
 * The architecture, per layer (x: the residual stream, [B, T, E]):
 *   h = RMSNorm(x) * input_layernorm.weight
 *   q, k, v = h Wq^T, h Wk^T, h Wv^T     [B, T, Hq D], [B, T, Hkv D] (no bias)
 *   q, k = rotary(q, k) at positions 0 .. T-1 (half-split, rope_theta)
 *   a = causal softmax(q k^T / sqrt(D)) v, kv head = q head / (Hq / Hkv)
 *   x = x + dropout(a Wo^T)
 *   h = RMSNorm(x) * post_attention_layernorm.weight
 *   x = x + dropout((silu(h Wgate^T) * h Wup^T) Wdown^T)
 * then logits = (RMSNorm(x) * norm.weight) W_head^T, W_head being
 * lm_head.weight or, tied, embed_tokens.weight. Dropout (training only)
 * is clattn_dropout on the two residual branches, GPT-2's resid_pdrop:
 * transformers' Llama has no such dropout, so a model trained with it
 * runs as an ordinary Llama (dropout is off at inference).
 *
 * Parameters, named as LlamaForCausalLM's state_dict and in this order:
 *   model.embed_tokens.weight                        [V, E]
 *   model.layers.{i}.input_layernorm.weight          [E]
 *   model.layers.{i}.self_attn.q_proj.weight         [Hq D, E]
 *   model.layers.{i}.self_attn.k_proj.weight         [Hkv D, E]
 *   model.layers.{i}.self_attn.v_proj.weight         [Hkv D, E]
 *   model.layers.{i}.self_attn.o_proj.weight         [E, Hq D]
 *   model.layers.{i}.post_attention_layernorm.weight [E]
 *   model.layers.{i}.mlp.gate_proj.weight            [F, E]
 *   model.layers.{i}.mlp.up_proj.weight              [F, E]
 *   model.layers.{i}.mlp.down_proj.weight            [E, F]
 *   model.norm.weight                                [E]
 *   lm_head.weight                                   [V, E] (untied only)
 * so clattn_checkpoint_save/_load and clattn_optimizer_create take
 * clattn_llama_param_refs as they are.
 *
 * Sequences of different lengths train in one batch padded on the right:
 * attention is causal, so padding never changes an earlier position, and
 * padded labels are ignore_index in clattn_causal_lm_loss.
 *
 * Ownership and threads: the model owns its parameters, gradients and
 * work buffers (destroy it before its context); tensors passed in are
 * borrowed for the call; host arrays (ids) are read during the call. A
 * model is used by one thread at a time, as its context. Create and load
 * block; the forwards and the backward copy the ids (and the rotary
 * positions) to the device with blocking writes and otherwise only
 * enqueue work (read the logits or call clattn_ctx_finish to wait). */
typedef struct clattn_llama clattn_llama;

typedef struct clattn_llama_config {
    int32_t vocab_size;              /* V >= 2 */
    int32_t hidden_size;             /* E >= 1 */
    int32_t intermediate_size;       /* F >= 1 */
    int32_t num_hidden_layers;       /* 1 .. 1024 */
    int32_t num_attention_heads;     /* Hq >= 1 */
    int32_t num_key_value_heads;     /* Hkv >= 1, dividing Hq (GQA, MQA) */
    int32_t head_dim;                /* D, even, >= 2; 0: E / Hq (then E % Hq == 0) */
    int32_t max_position_embeddings; /* the longest sequence, >= 2 */
    clattn_rope_params rope;         /* rope_theta and rope_scaling */
    float rms_norm_eps;              /* finite, >= 0 */
    bool tie_word_embeddings;        /* the head is the embedding table */
    float initializer_range;         /* clattn_llama_create: std of the normal init */
    float dropout;                   /* residual dropout in training, [0, 1) */
    uint64_t dropout_seed;           /* the dropout masks' seed (see below) */
    int32_t bos_token_id, eos_token_id, pad_token_id; /* -1: none; else < V */
} clattn_llama_config;

/* A small Llama: V 256, E 256, F 688, 4 layers, 4 heads, 4 kv heads,
 * head_dim 0, 512 positions, rope theta 10000, eps 1e-6, tied, init 0.02,
 * no dropout, ids -1. transformers' LlamaConfig defaults are those of
 * Llama 2 7B; set every size. */
CLATTN_API clattn_llama_config clattn_llama_config_default(void);

/* A new model with cfg (checked: CLATTN_ERR_INVALID_ARG naming the first
 * bad field and its value, also for sizes whose parameters or activations
 * could never fit: any tensor over 2^31 elements), initialised as
 * transformers' _init_weights does: every Linear and the embedding
 * normal(0, initializer_range), the norm weights 1. The normal draws come
 * from seed alone (splitmix64 -> xoshiro256** -> Box-Muller in double,
 * tensor by tensor in the order above, each row-major), so a seed gives
 * the same weights on every device. Errors also CLATTN_ERR_OUT_OF_MEMORY. */
CLATTN_API clattn_status clattn_llama_create(clattn_ctx *ctx, const clattn_llama_config *cfg,
                                             uint64_t seed, clattn_llama **out);

/* A model from a Hugging Face LlamaForCausalLM folder (config.json as
 * clattn_lm_load reads it, model.safetensors or its shards in F32, F16 or
 * BF16, converted to float32). Mistral and Qwen2 folders load when
 * nothing but the architecture name differs (no biases, no sliding
 * window); GPT-2, biases and windows are CLATTN_ERR_UNSUPPORTED. Missing
 * or misshapen tensors, NaN or infinite weights: CLATTN_ERR_FORMAT naming
 * the tensor. dropout is 0 and dropout_seed 0 (set them with
 * clattn_llama_set_dropout). */
CLATTN_API clattn_status clattn_llama_load(clattn_ctx *ctx, const char *dir, clattn_llama **out);

/* Frees the model and its gradients. NULL: no-op. */
CLATTN_API void clattn_llama_destroy(clattn_llama *m);

/* The model's configuration. */
CLATTN_API clattn_llama_config clattn_llama_get_config(const clattn_llama *m);

/* Sets the training dropout p in [0, 1) and the masks' seed. Mask number
 * c (c = 0, 1, ... counts the dropouts applied since the model was made
 * or this was called; two per layer per training forward) is
 * clattn_dropout's with (seed, offset c * 2^40), so a run is repeatable. */
CLATTN_API clattn_status clattn_llama_set_dropout(clattn_llama *m, float p, uint64_t seed);

/* Fills refs[0..min(count, cap)) with the parameters (names above; the
 * gradients allocated, zeroed, on first use) and returns count, or -1 on
 * an allocation failure. refs may be NULL with cap 0 for the count. */
CLATTN_API int32_t clattn_llama_param_refs(clattn_llama *m, clattn_param_ref *refs,
                                           int32_t cap);

/* Sets every gradient to zero. */
CLATTN_API clattn_status clattn_llama_zero_grad(clattn_llama *m);

/* logits [B, T, V] of ids (host int64[B * T], row b at b * T, each in
 * 0 .. V-1), B >= 1, 1 <= T <= max_position_embeddings: the model in
 * evaluation mode (no dropout, nothing kept). Errors:
 * CLATTN_ERR_INVALID_ARG (an id out of range naming its index, B or T,
 * logits of the wrong shape or context), CLATTN_ERR_OUT_OF_MEMORY. */
CLATTN_API clattn_status clattn_llama_forward(clattn_llama *m, const int64_t *ids, int32_t B,
                                              int32_t T, clattn_tensor *logits);

/* The same in training mode (dropout when set), keeping every activation
 * clattn_llama_backward needs (one forward at a time: the next replaces
 * it; clattn_llama_forward and the block calls below discard it). */
CLATTN_API clattn_status clattn_llama_train_forward(clattn_llama *m, const int64_t *ids,
                                                    int32_t B, int32_t T,
                                                    clattn_tensor *logits);

/* Backward of the last clattn_llama_train_forward from dlogits [B, T, V]
 * (e.g. clattn_causal_lm_loss's): every parameter's gradient is added to
 * (zero them between steps). A tied table gets the head's and the
 * embedding's parts. CLATTN_ERR_INVALID_ARG when no forward was kept or
 * dlogits has another shape. The activations stay: a second backward adds
 * the same gradients again. */
CLATTN_API clattn_status clattn_llama_backward(clattn_llama *m, const clattn_tensor *dlogits);

/* One decoder layer alone (LlamaDecoderLayer with positions 0 .. T-1 in
 * every row): y [B, T, E] = layer(x [B, T, E]), keeping what
 * clattn_llama_block_backward needs; then dx [B, T, E] from dy, the
 * layer's parameter gradients added to. layer in 0 .. layers-1; y and dx
 * may not alias x or dy. */
CLATTN_API clattn_status clattn_llama_block_train_forward(clattn_llama *m, int32_t layer,
                                                          const clattn_tensor *x,
                                                          clattn_tensor *y);
CLATTN_API clattn_status clattn_llama_block_backward(clattn_llama *m, int32_t layer,
                                                     const clattn_tensor *dy, clattn_tensor *dx);

/* Writes the model as a Hugging Face folder dir (created if missing, with
 * its missing parents, mode 0755 less the umask; files in it are
 * replaced, each written whole or not at all):
 *   config.json             LlamaForCausalLM, model_type "llama", the sizes,
 *                           rope_theta (and rope_scaling), rms_norm_eps,
 *                           tie_word_embeddings, the token ids,
 *                           torch_dtype "float32", attention_bias and
 *                           mlp_bias false
 *   model.safetensors       the parameters above, F32, "format": "pt"
 *   generation_config.json  bos, eos and pad ids
 *   tokenizer.json, tokenizer_config.json  copied from tokenizer_dir
 *                           (NULL: none are written; a tokenizer_config.json
 *                           is written when the folder has none)
 * transformers.AutoModelForCausalLM.from_pretrained(dir) loads it without
 * missing or unexpected keys, and clattn_lm_load too. Errors:
 * CLATTN_ERR_INVALID_ARG, CLATTN_ERR_IO (naming the file and the OS error),
 * CLATTN_ERR_FORMAT (tokenizer_dir has no tokenizer.json that
 * clattn_tokenizer_load reads; checked, as the tokenizer having at most
 * vocab_size tokens (CLATTN_ERR_INVALID_ARG), before anything is
 * written), CLATTN_ERR_OUT_OF_MEMORY, device errors reading the
 * parameters. Uses m's context (one thread at a time). */
CLATTN_API clattn_status clattn_llama_export(clattn_llama *m, const char *tokenizer_dir,
                                             const char *dir);

#ifdef __cplusplus
}
#endif

#endif /* CLATTN_H */
