/* status.c - status names, error messages and logging. */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The per-thread slot serves calls that have no context (context creation,
 * device enumeration) and mirrors the context's message otherwise. A fixed
 * buffer: a thread-local malloc'd string would leak at thread exit. */
static _Thread_local char thread_error[8192];

const char *clattn_version(void) { return CLATTN_VERSION_STRING; }

const char *clattn_status_str(clattn_status status)
{
    switch (status) {
    case CLATTN_OK: return "CLATTN_OK";
    case CLATTN_ERR_INVALID_ARG: return "CLATTN_ERR_INVALID_ARG";
    case CLATTN_ERR_NO_DEVICE: return "CLATTN_ERR_NO_DEVICE";
    case CLATTN_ERR_BUILD: return "CLATTN_ERR_BUILD";
    case CLATTN_ERR_OUT_OF_MEMORY: return "CLATTN_ERR_OUT_OF_MEMORY";
    case CLATTN_ERR_IO: return "CLATTN_ERR_IO";
    case CLATTN_ERR_FORMAT: return "CLATTN_ERR_FORMAT";
    case CLATTN_ERR_UNSUPPORTED: return "CLATTN_ERR_UNSUPPORTED";
    case CLATTN_ERR_OPENCL: return "CLATTN_ERR_OPENCL";
    case CLATTN_ERR_INTERNAL: return "CLATTN_ERR_INTERNAL";
    case CLATTN_ERR_CONTEXT_FULL: return "CLATTN_ERR_CONTEXT_FULL";
    }
    return "CLATTN_ERR_UNKNOWN";
}

const char *clattn_last_error(void) { return thread_error; }

void clattn__clear_thread_error(void) { thread_error[0] = '\0'; }

const char *clattn_ctx_last_error(const clattn_ctx *ctx)
{
    return (ctx && ctx->last_error) ? ctx->last_error : "";
}

static void set_message(clattn_ctx *ctx, const char *msg)
{
    snprintf(thread_error, sizeof thread_error, "%s", msg);
    if (ctx) {
        /* The context keeps the untruncated message (build logs can be long). */
        char *copy = clattn__strdup(msg);
        if (copy) {
            free(ctx->last_error);
            ctx->last_error = copy;
        }
    }
}

/* printf into a fresh malloc'd string; NULL on allocation failure. */
static char *vaprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

clattn_status clattn__fail(clattn_ctx *ctx, clattn_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vaprintf(fmt, ap);
    va_end(ap);
    if (msg) {
        set_message(ctx, msg);
        clattn__log(ctx, CLATTN_LOG_ERROR, "%s", msg);
        free(msg);
    } else {
        set_message(ctx, "out of host memory while formatting an error message");
    }
    return status;
}

const char *clattn__cl_error_name(cl_int err)
{
    switch (err) {
#define CASE(x) case x: return #x
    CASE(CL_SUCCESS);
    CASE(CL_DEVICE_NOT_FOUND);
    CASE(CL_DEVICE_NOT_AVAILABLE);
    CASE(CL_COMPILER_NOT_AVAILABLE);
    CASE(CL_MEM_OBJECT_ALLOCATION_FAILURE);
    CASE(CL_OUT_OF_RESOURCES);
    CASE(CL_OUT_OF_HOST_MEMORY);
    CASE(CL_PROFILING_INFO_NOT_AVAILABLE);
    CASE(CL_MEM_COPY_OVERLAP);
    CASE(CL_IMAGE_FORMAT_MISMATCH);
    CASE(CL_IMAGE_FORMAT_NOT_SUPPORTED);
    CASE(CL_BUILD_PROGRAM_FAILURE);
    CASE(CL_MAP_FAILURE);
    CASE(CL_MISALIGNED_SUB_BUFFER_OFFSET);
    CASE(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
    CASE(CL_COMPILE_PROGRAM_FAILURE);
    CASE(CL_LINKER_NOT_AVAILABLE);
    CASE(CL_LINK_PROGRAM_FAILURE);
    CASE(CL_DEVICE_PARTITION_FAILED);
    CASE(CL_KERNEL_ARG_INFO_NOT_AVAILABLE);
    CASE(CL_INVALID_VALUE);
    CASE(CL_INVALID_DEVICE_TYPE);
    CASE(CL_INVALID_PLATFORM);
    CASE(CL_INVALID_DEVICE);
    CASE(CL_INVALID_CONTEXT);
    CASE(CL_INVALID_QUEUE_PROPERTIES);
    CASE(CL_INVALID_COMMAND_QUEUE);
    CASE(CL_INVALID_HOST_PTR);
    CASE(CL_INVALID_MEM_OBJECT);
    CASE(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
    CASE(CL_INVALID_IMAGE_SIZE);
    CASE(CL_INVALID_SAMPLER);
    CASE(CL_INVALID_BINARY);
    CASE(CL_INVALID_BUILD_OPTIONS);
    CASE(CL_INVALID_PROGRAM);
    CASE(CL_INVALID_PROGRAM_EXECUTABLE);
    CASE(CL_INVALID_KERNEL_NAME);
    CASE(CL_INVALID_KERNEL_DEFINITION);
    CASE(CL_INVALID_KERNEL);
    CASE(CL_INVALID_ARG_INDEX);
    CASE(CL_INVALID_ARG_VALUE);
    CASE(CL_INVALID_ARG_SIZE);
    CASE(CL_INVALID_KERNEL_ARGS);
    CASE(CL_INVALID_WORK_DIMENSION);
    CASE(CL_INVALID_WORK_GROUP_SIZE);
    CASE(CL_INVALID_WORK_ITEM_SIZE);
    CASE(CL_INVALID_GLOBAL_OFFSET);
    CASE(CL_INVALID_EVENT_WAIT_LIST);
    CASE(CL_INVALID_EVENT);
    CASE(CL_INVALID_OPERATION);
    CASE(CL_INVALID_GL_OBJECT);
    CASE(CL_INVALID_BUFFER_SIZE);
    CASE(CL_INVALID_MIP_LEVEL);
    CASE(CL_INVALID_GLOBAL_WORK_SIZE);
    CASE(CL_INVALID_PROPERTY);
    CASE(CL_INVALID_IMAGE_DESCRIPTOR);
    CASE(CL_INVALID_COMPILER_OPTIONS);
    CASE(CL_INVALID_LINKER_OPTIONS);
    CASE(CL_INVALID_DEVICE_PARTITION_COUNT);
#undef CASE
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "unknown OpenCL error";
}

clattn_status clattn__status_from_cl(cl_int err)
{
    switch (err) {
    case CL_SUCCESS: return CLATTN_OK;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_OUT_OF_HOST_MEMORY:
    case CL_OUT_OF_RESOURCES:
    case CL_INVALID_BUFFER_SIZE: return CLATTN_ERR_OUT_OF_MEMORY;
    case CL_BUILD_PROGRAM_FAILURE:
    case CL_COMPILE_PROGRAM_FAILURE:
    case CL_LINK_PROGRAM_FAILURE:
    case CL_COMPILER_NOT_AVAILABLE: return CLATTN_ERR_BUILD;
    case CL_DEVICE_NOT_FOUND:
    case -1001: return CLATTN_ERR_NO_DEVICE;
    default: return CLATTN_ERR_OPENCL;
    }
}

clattn_status clattn__fail_cl(clattn_ctx *ctx, cl_int err, const char *what)
{
    return clattn__fail(ctx, clattn__status_from_cl(err), "%s failed: %s (%d)", what,
                        clattn__cl_error_name(err), (int)err);
}

void clattn__log(const clattn_ctx *ctx, clattn_log_level level, const char *fmt, ...)
{
    if (!ctx || !ctx->log || level < ctx->log_level)
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, level, buf);
}

const char *clattn__shape_str(const int64_t *shape, int32_t ndim, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < ndim && used < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%lld", i ? ", " : "[", (long long)shape[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (used < size)
        snprintf(buf + used, size - used, "%s", ndim ? "]" : "[]");
    return buf;
}

char *clattn__strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *clattn__aprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vaprintf(fmt, ap);
    va_end(ap);
    return s;
}
