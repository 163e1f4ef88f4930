/* tensor.c - float32 device tensors with a shape, and host transfers. */
#include "core/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const clattn__program_spec clattn__elementwise_program = {{"core/elementwise.cl", NULL}, NULL};

clattn_status clattn__alloc_check(clattn_ctx *ctx, size_t bytes, const char *what)
{
    if (bytes <= ctx->info.max_alloc_bytes)
        return CLATTN_OK;
    return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                        "%s needs %zu bytes, over the device's largest allocation of %llu "
                        "bytes (%s)",
                        what, bytes, (unsigned long long)ctx->info.max_alloc_bytes,
                        ctx->info.device_name);
}

int64_t clattn__first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(x[i] - x[i] == 0.0f)) /* NaN - NaN and Inf - Inf are NaN */
            return (int64_t)i;
    return -1;
}

/* ---- device memory accounting (core.h, hardening section) ------------ */

bool clattn__mem_account_create(clattn_ctx *ctx)
{
    clattn__mem_account *a = calloc(1, sizeof *a);
    if (!a)
        return false;
    atomic_init(&a->live_bytes, 0);
    atomic_init(&a->live_buffers, 0);
    atomic_init(&a->refs, 1);
    atomic_init(&a->fail_after, -1);
    atomic_init(&a->allocations, 0);
    ctx->mem = a;
    return true;
}

static void account_unref(clattn__mem_account *a)
{
    if (atomic_fetch_sub(&a->refs, 1) == 1)
        free(a);
}

void clattn__mem_account_release(clattn_ctx *ctx)
{
    if (ctx->mem)
        account_unref(ctx->mem);
    ctx->mem = NULL;
}

/* What one counted buffer gives back when OpenCL frees it. */
typedef struct counted_buffer {
    clattn__mem_account *account;
    size_t bytes;
} counted_buffer;

/* The buffer's destructor callback: it runs when the last reference (the
 * handle, views, queued commands) is gone, which may be on a driver thread,
 * hence the atomics. */
static void CL_CALLBACK buffer_freed(cl_mem mem, void *user)
{
    (void)mem;
    counted_buffer *c = user;
    atomic_fetch_sub(&c->account->live_bytes, (uint64_t)c->bytes);
    atomic_fetch_sub(&c->account->live_buffers, 1);
    account_unref(c->account);
    free(c);
}

uint64_t clattn__live_device_bytes(const clattn_ctx *ctx)
{
    return ctx && ctx->mem ? atomic_load(&ctx->mem->live_bytes) : 0;
}

int64_t clattn__live_device_buffers(const clattn_ctx *ctx)
{
    return ctx && ctx->mem ? atomic_load(&ctx->mem->live_buffers) : 0;
}

uint64_t clattn__test_fail_alloc_after(clattn_ctx *ctx, int64_t n)
{
    if (!ctx || !ctx->mem)
        return 0;
    atomic_store(&ctx->mem->fail_after, n < 0 ? -1 : n);
    return atomic_load(&ctx->mem->allocations);
}

clattn_status clattn__buffer_create(clattn_ctx *ctx, size_t bytes, const char *what, cl_mem *out)
{
    *out = NULL;
    if (bytes == 0)
        bytes = 4; /* OpenCL refuses empty buffers; a dummy keeps callers simple */
    clattn_status st = clattn__alloc_check(ctx, bytes, what);
    if (st != CLATTN_OK)
        return st;
    clattn__mem_account *a = ctx->mem;
    if (a) {
        /* The test hook first, so a walk over N reaches every allocation. */
        int64_t left = atomic_load(&a->fail_after);
        if (left >= 0) {
            atomic_store(&a->fail_after, left - 1 >= 0 ? left - 1 : -1);
            if (left == 0)
                return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                                    "allocating %zu bytes for %s failed: injected failure "
                                    "(test hook)",
                                    bytes, what);
        }
        /* The context's total against the device's: past it the driver may
         * abort (POCL asserts when a fill cannot be backed) rather than
         * report CL_MEM_OBJECT_ALLOCATION_FAILURE. */
        uint64_t used = atomic_load(&a->live_bytes), total = ctx->info.global_mem_bytes;
        if (total > 0 && (bytes > total || used > total - bytes))
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                                "%s needs %zu bytes, but this context has %llu bytes of device "
                                "memory in use and the device has %llu in all (%s)",
                                what, bytes, (unsigned long long)used,
                                (unsigned long long)total, ctx->info.device_name);
    }
    counted_buffer *c = a ? malloc(sizeof *c) : NULL;
    if (a && !c)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    cl_int err;
    *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!*out) {
        free(c);
        return clattn__fail(ctx, clattn__status_from_cl(err),
                            "allocating %zu bytes for %s failed: %s (%d)", bytes, what,
                            clattn__cl_error_name(err), (int)err);
    }
    if (c) {
        c->account = a;
        c->bytes = bytes;
        atomic_fetch_add(&a->refs, 1);
        atomic_fetch_add(&a->live_bytes, (uint64_t)bytes);
        atomic_fetch_add(&a->live_buffers, 1);
        atomic_fetch_add(&a->allocations, 1);
        if (clSetMemObjectDestructorCallback(*out, buffer_freed, c) != CL_SUCCESS) {
            /* Not counted then: undo, keep the buffer. */
            atomic_fetch_sub(&a->live_bytes, (uint64_t)bytes);
            atomic_fetch_sub(&a->live_buffers, 1);
            account_unref(a);
            free(c);
        }
    }
    return CLATTN_OK;
}

clattn_tensor clattn__tensor_view(clattn_ctx *ctx, cl_mem mem, int32_t ndim,
                                  const int64_t *shape)
{
    clattn_tensor t;
    memset(&t, 0, sizeof t);
    t.ctx = ctx;
    t.mem = mem;
    t.ndim = ndim;
    t.numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        t.shape[i] = shape[i];
        t.numel *= (size_t)shape[i];
    }
    return t;
}

clattn_status clattn__buffer_reserve(clattn_ctx *ctx, clattn__buffer *buf, size_t bytes,
                                     const char *what)
{
    if (buf->mem && buf->bytes >= bytes)
        return CLATTN_OK;
    clattn__buffer_release(buf);
    clattn_status st = clattn__buffer_create(ctx, bytes, what, &buf->mem);
    if (st == CLATTN_OK)
        buf->bytes = bytes;
    return st;
}

void clattn__buffer_release(clattn__buffer *buf)
{
    if (buf->mem)
        clReleaseMemObject(buf->mem);
    buf->mem = NULL;
    buf->bytes = 0;
}

clattn_status clattn__workspace(clattn_ctx *ctx, clattn__buffer *buf, int32_t ndim,
                                const int64_t *shape, const char *what, clattn_tensor *view)
{
    size_t n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    clattn_status st = clattn__buffer_reserve(ctx, buf, n * sizeof(float), what);
    if (st == CLATTN_OK)
        *view = clattn__tensor_view(ctx, buf->mem, ndim, shape);
    return st;
}

clattn_status clattn__scratch(clattn_ctx *ctx, int slot, size_t bytes, const char *what,
                              cl_mem *out)
{
    clattn__buffer buf = {ctx->scratch[slot], ctx->scratch_bytes[slot]};
    clattn_status st = clattn__buffer_reserve(ctx, &buf, bytes, what);
    ctx->scratch[slot] = buf.mem;
    ctx->scratch_bytes[slot] = buf.bytes;
    *out = buf.mem;
    return st;
}

clattn_status clattn_tensor_create(clattn_ctx *ctx, int32_t ndim, const int64_t *shape,
                                   clattn_tensor **out)
{
    clattn__clear_thread_error();
    if (!ctx || !shape || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "ctx, shape and out must not be NULL");
    *out = NULL;
    if (ndim < 1 || ndim > CLATTN_MAX_DIMS)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "tensor: ndim %d out of range 1..%d", ndim, CLATTN_MAX_DIMS);
    char sbuf[128];
    clattn__shape_str(shape, ndim, sbuf, sizeof sbuf);
    /* Overflow-checked element and byte count before anything is allocated. */
    size_t numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "tensor %s: every dimension must be >= 1", sbuf);
        if ((uint64_t)shape[i] > SIZE_MAX / sizeof(float) / numel)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "tensor %s: size overflows (more than %zu bytes)", sbuf,
                                (size_t)SIZE_MAX);
        numel *= (size_t)shape[i];
    }
    size_t bytes = numel * sizeof(float);
    /* Checked before the host struct is allocated; the message names the
     * tensor by its shape. */
    char what[136];
    snprintf(what, sizeof what, "tensor %s", sbuf);
    clattn_status st = clattn__alloc_check(ctx, bytes, what);
    if (st != CLATTN_OK)
        return st;

    clattn_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    st = clattn__buffer_create(ctx, bytes, sbuf, &t->mem);
    if (st != CLATTN_OK) {
        free(t);
        return st;
    }
    t->ctx = ctx;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    *out = t;
    return CLATTN_OK;
}

void clattn_tensor_destroy(clattn_tensor *t)
{
    if (!t)
        return;
    if (t->mem)
        clReleaseMemObject(t->mem);
    if (t->gemm_packed)
        clReleaseMemObject(t->gemm_packed);
    free(t);
}

static clattn_status transfer(const clattn_tensor *t, bool write, size_t offset, size_t count,
                              void *host)
{
    clattn__clear_thread_error();
    if (!t)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "tensor is NULL");
    if (count == 0)
        return CLATTN_OK;
    if (!host)
        return clattn__fail(t->ctx, CLATTN_ERR_INVALID_ARG, "host pointer is NULL");
    if (offset > t->numel || count > t->numel - offset) {
        char sbuf[128];
        return clattn__fail(t->ctx, CLATTN_ERR_INVALID_ARG,
                            "range [%zu, %zu + %zu) is outside tensor %s of %zu elements",
                            offset, offset, count,
                            clattn__shape_str(t->shape, t->ndim, sbuf, sizeof sbuf), t->numel);
    }
    cl_int err = write ? clEnqueueWriteBuffer(t->ctx->queue, t->mem, CL_TRUE,
                                              offset * sizeof(float), count * sizeof(float), host,
                                              0, NULL, NULL)
                       : clEnqueueReadBuffer(t->ctx->queue, t->mem, CL_TRUE,
                                             offset * sizeof(float), count * sizeof(float), host,
                                             0, NULL, NULL);
    return err == CL_SUCCESS
               ? CLATTN_OK
               : clattn__fail_cl(t->ctx, err, write ? "clEnqueueWriteBuffer" : "clEnqueueReadBuffer");
}

clattn_status clattn_tensor_write(clattn_tensor *t, const float *src)
{
    return transfer(t, true, 0, t ? t->numel : 0, (void *)src);
}

clattn_status clattn_tensor_read(const clattn_tensor *t, float *dst)
{
    return transfer(t, false, 0, t ? t->numel : 0, dst);
}

clattn_status clattn_tensor_write_range(clattn_tensor *t, size_t offset, size_t count,
                                        const float *src)
{
    return transfer(t, true, offset, count, (void *)src);
}

clattn_status clattn_tensor_read_range(const clattn_tensor *t, size_t offset, size_t count,
                                       float *dst)
{
    return transfer(t, false, offset, count, dst);
}

clattn_status clattn_tensor_fill(clattn_tensor *t, float value)
{
    clattn__clear_thread_error();
    if (!t)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "tensor is NULL");
    clattn_ctx *ctx = t->ctx;
    static const clattn__kernel_spec FILL = {&clattn__elementwise_program, "fill_f32"};
    cl_kernel k;
    cl_ulong n = t->numel;
    clattn_status st = clattn__kernel(ctx, &FILL, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "fill_f32", CLATTN_KARG(t->mem), CLATTN_KARG(n),
                             CLATTN_KARG(value));
    if (st != CLATTN_OK)
        return st;
    size_t global = t->numel, local = 64;
    return clattn__enqueue(ctx, k, 1, &global, &local, "fill_f32");
}

int32_t clattn_tensor_shape(const clattn_tensor *t, int64_t *shape)
{
    if (!t)
        return 0;
    if (shape)
        memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
    return t->ndim;
}

size_t clattn_tensor_numel(const clattn_tensor *t) { return t ? t->numel : 0; }

cl_mem clattn_tensor_cl_mem(const clattn_tensor *t) { return t ? t->mem : NULL; }

clattn_status clattn_tensor_view(const clattn_tensor *t, int32_t ndim, const int64_t *shape,
                                 clattn_tensor **out)
{
    clattn__clear_thread_error();
    if (!t || !shape || !out)
        return clattn__fail(t ? t->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "tensor_view: t, shape and out must not be NULL");
    *out = NULL;
    char from[128], to[128];
    clattn__shape_str(t->shape, t->ndim, from, sizeof from);
    if (ndim < 1 || ndim > CLATTN_MAX_DIMS)
        return clattn__fail(t->ctx, CLATTN_ERR_INVALID_ARG,
                            "tensor_view of %s: ndim %d out of range 1..%d", from, ndim,
                            CLATTN_MAX_DIMS);
    clattn__shape_str(shape, ndim, to, sizeof to);
    /* Counted with an overflow check: a huge shape must not wrap to numel. */
    size_t numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 1 || (uint64_t)shape[i] > t->numel / numel)
            return clattn__fail(t->ctx, CLATTN_ERR_INVALID_ARG,
                                "tensor_view: %s is not a shape of the %zu elements of %s", to,
                                t->numel, from);
        numel *= (size_t)shape[i];
    }
    if (numel != t->numel)
        return clattn__fail(t->ctx, CLATTN_ERR_INVALID_ARG,
                            "tensor_view: %s has %zu elements, %s has %zu", to, numel, from,
                            t->numel);
    clattn_tensor *v = calloc(1, sizeof *v);
    if (!v)
        return clattn__fail(t->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    *v = clattn__tensor_view(t->ctx, t->mem, ndim, shape);
    /* The view holds its own reference, so either handle may go first. */
    clRetainMemObject(t->mem);
    *out = v;
    return CLATTN_OK;
}

clattn_status clattn_tensor_copy(const clattn_tensor *src, clattn_tensor *dst)
{
    clattn__clear_thread_error();
    if (!src || !dst)
        return clattn__fail(src ? src->ctx : dst ? dst->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "tensor_copy: src and dst must not be NULL");
    if (src->ctx != dst->ctx || src->numel != dst->numel) {
        char a[128], b[128];
        return clattn__fail(dst->ctx, CLATTN_ERR_INVALID_ARG,
                            "tensor_copy: src %s and dst %s must have the same element count "
                            "and context",
                            clattn__shape_str(src->shape, src->ndim, a, sizeof a),
                            clattn__shape_str(dst->shape, dst->ndim, b, sizeof b));
    }
    if (src->mem == dst->mem)
        return CLATTN_OK;
    cl_int err = clEnqueueCopyBuffer(dst->ctx->queue, src->mem, dst->mem, 0, 0,
                                     src->numel * sizeof(float), 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(dst->ctx, err, "clEnqueueCopyBuffer");
}
