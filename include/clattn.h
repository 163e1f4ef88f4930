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
    clattn_log_fn log;             /* optional; NULL logs nothing */
    void *log_user;
    clattn_log_level log_level;    /* messages below this level are dropped */
} clattn_ctx_params;

/* Defaults: every field NULL/0 except log_level = CLATTN_LOG_INFO. */
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

#ifdef __cplusplus
}
#endif

#endif /* CLATTN_H */
