/* weights_lp.c - weight matrices kept on the device in the file's
 * precision (F32, F16, BF16) and the products and row gathers that read
 * them: y[T, rows] (= or +=) x[T, cols] . W^T + bias. These are nearly all
 * of a decoder's time, so the kernel follows the work:
 *
 *   decode (T <= CLATTN_LM_GEMV_MAX_T): memory-bound; a matrix-vector
 *     kernel reads each weight once for all T rows. CPU devices: a
 *     work-item per few output rows with a serial float8 loop (what POCL
 *     compiles to plain AVX loops); GPUs: work-items split each row's
 *     reduction and sum it in local memory.
 *   prefill (larger T): compute-bound; on CPU devices W is converted in
 *     cache-sized chunks of rows to the float panels of clattn's
 *     register-blocked CPU GEMM (gemm/gemm_cpu.c) and multiplied there; on
 *     GPUs an F32 weight goes to CLBlast and the others to a tiled kernel
 *     that converts as it stages W in local memory.
 *
 * Kernels: cl/lm/linear_lp.cl, one program per weight dtype. */
#include "lm/lm.h"

#include "gemm/gemm.h"

#include <stdlib.h>
#include <string.h>

static const clattn__program_spec LP_PROGRAM = {{"lm/linear_lp.cl", NULL}, NULL};

/* Up to this many token rows a matrix-vector kernel reads each weight once
 * for all of them (8 rows: 8 float8 accumulators on a CPU, 8 partial sums
 * per work-item on a GPU). Past it, x's loads per weight grow with T while
 * a tiled product reuses each weight across a 64-row tile (or the CPU
 * GEMM's 6-row blocks from cache), so prefill goes there. A matrix-vector
 * path given more rows runs them CLATTN_LM_GEMV_MAX_T at a time. The
 * kernels exist for 1, 2, 4 and 8 rows (cl/lm/linear_lp.cl). */
#define GEMV_VARIANTS 4
static const int GEMV_NT[GEMV_VARIANTS] = {1, 2, 4, 8};

/* Rows of W per work-item of lp_gemv_cpu_NT, by NT: must match the
 * LP_GEMV_CPU(NT, R) lines of cl/lm/linear_lp.cl. */
static const int GEMV_CPU_ROWS[GEMV_VARIANTS] = {4, 4, 2, 1};

/* lp_gemv_cpu: each work-item's 8 lanes sum at most CLATTN_CPU_ITEM_SPAN
 * elements serially (the house rule for a float sum's length); longer
 * rows are split over that many work-items of one work-group. */
#define GEMV_CPU_SPAN (8 * CLATTN_CPU_ITEM_SPAN)

/* lp_gemv_cpu work-items per work-group (splits x row blocks): enough
 * rows per group that POCL's per-group cost stays small against them. */
#define GEMV_CPU_GROUP 8

/* lp_gemv_tiled: at most this many work-items per work-group, and per row
 * (rows of 64 float8 chunks, 512 elements a pass); short matrices (few
 * rows) may use up to 256 work-items per row to keep more of them busy. */
#define GEMV_TILED_GROUP 256
#define GEMV_TILED_ROW 64

/* lp_gemm_tiled's tile and work-group: 64 x 64 outputs by 16 x 16
 * work-items (LP_TM, LP_TN in cl/lm/linear_lp.cl). */
#define GEMM_TILE 64
#define GEMM_TILE_ITEMS 16

/* The CPU prefill converts W a chunk of rows at a time into at most this
 * many bytes of float panels (the CLATTN_SCRATCH_GEMM_B slot): a few MiB
 * stay in L3 while the GEMM re-reads them per block of token rows, and an
 * lm_head of 151936 x 896 never needs its 545 MB float copy. */
#define PACK_CHUNK_BYTES (8u << 20)
#define GEMM_PANEL 16 /* gemm/gemm.cl's panel width */

/* ---- kernels ------------------------------------------------------------- */

static const clattn__kernel_spec GEMV_CPU[GEMV_VARIANTS] = {
    {&LP_PROGRAM, "lp_gemv_cpu_1"},
    {&LP_PROGRAM, "lp_gemv_cpu_2"},
    {&LP_PROGRAM, "lp_gemv_cpu_4"},
    {&LP_PROGRAM, "lp_gemv_cpu_8"},
};
static const clattn__kernel_spec GEMV_CPU_SPLIT[GEMV_VARIANTS] = {
    {&LP_PROGRAM, "lp_gemv_cpu_split_1"},
    {&LP_PROGRAM, "lp_gemv_cpu_split_2"},
    {&LP_PROGRAM, "lp_gemv_cpu_split_4"},
    {&LP_PROGRAM, "lp_gemv_cpu_split_8"},
};
static const clattn__kernel_spec GEMV_TILED[GEMV_VARIANTS] = {
    {&LP_PROGRAM, "lp_gemv_tiled_1"},
    {&LP_PROGRAM, "lp_gemv_tiled_2"},
    {&LP_PROGRAM, "lp_gemv_tiled_4"},
    {&LP_PROGRAM, "lp_gemv_tiled_8"},
};
static const clattn__kernel_spec GEMM_TILED = {&LP_PROGRAM, "lp_gemm_tiled"};
static const clattn__kernel_spec PACK = {&LP_PROGRAM, "lp_pack_panels"};
static const clattn__kernel_spec BIAS_ADD = {&LP_PROGRAM, "lp_bias_add"};
static const clattn__kernel_spec GATHER = {&LP_PROGRAM, "lp_gather"};

/* WDTYPE of cl/lm/linear_lp.cl, or -1 for a dtype it does not read. */
static int wdtype_code(clattn_dtype dtype)
{
    switch (dtype) {
    case CLATTN_DTYPE_F32:
        return 0;
    case CLATTN_DTYPE_F16:
        return 1;
    case CLATTN_DTYPE_BF16:
        return 2;
    default:
        return -1;
    }
}

static size_t elem_size(clattn_dtype dtype)
{
    return dtype == CLATTN_DTYPE_F32 ? 4 : 2;
}

static char *dtype_options(const void *arg)
{
    return clattn__aprintf("-DWDTYPE=%d", *(const int *)arg);
}

/* spec's kernel in the program for w's dtype (variant code + 1: never 0). */
static clattn_status lp_kernel(clattn_ctx *ctx, const clattn__kernel_spec *spec,
                               clattn_dtype dtype, cl_kernel *k)
{
    int code = wdtype_code(dtype);
    return clattn__kernel_variant(ctx, spec, (uint64_t)code + 1, dtype_options, &code, k);
}

/* ---- matrices ------------------------------------------------------------ */

/* dst [rows, cols] = the [cols, rows] matrix at src, es-byte elements, in
 * 32 x 32 blocks so both sides stay in cache. */
static void transpose_bytes(const unsigned char *src, unsigned char *dst, size_t rows,
                            size_t cols, size_t es)
{
    enum { B = 32 };
    for (size_t i0 = 0; i0 < cols; i0 += B) {
        size_t i1 = i0 + B < cols ? i0 + B : cols;
        for (size_t j0 = 0; j0 < rows; j0 += B) {
            size_t j1 = j0 + B < rows ? j0 + B : rows;
            for (size_t i = i0; i < i1; i++)
                for (size_t j = j0; j < j1; j++)
                    memcpy(dst + (j * cols + i) * es, src + (i * rows + j) * es, es);
        }
    }
}

clattn_status clattn__lm_matrix_upload(clattn_ctx *ctx, const void *bytes, clattn_dtype dtype,
                                       int64_t rows, int64_t cols, bool transpose,
                                       const char *what, clattn__lm_matrix *m)
{
    if (!what)
        what = "weight";
    if (!ctx || !m)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: ctx and m must not be NULL", what);
    *m = (clattn__lm_matrix){0};
    if (!bytes)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: bytes is NULL", what);
    if (wdtype_code(dtype) < 0)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: dtype %s is not supported for a device matrix (F32, F16 or "
                            "BF16)",
                            what, clattn_dtype_name(dtype));
    /* The kernels index rows and columns with int, elements with long. */
    if (rows <= 0 || cols <= 0 || rows > INT32_MAX || cols > INT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: shape [%lld, %lld]: rows and cols must be 1 .. 2^31 - 1", what,
                            (long long)rows, (long long)cols);
    size_t es = elem_size(dtype);
    if ((uint64_t)rows > SIZE_MAX / es / (uint64_t)cols)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: shape [%lld, %lld] of %s overflows size_t", what,
                            (long long)rows, (long long)cols, clattn_dtype_name(dtype));
    size_t n = (size_t)rows * (size_t)cols * es;
    clattn_status st = clattn__alloc_check(ctx, n, what);
    if (st != CLATTN_OK)
        return st;
    unsigned char *tmp = NULL;
    if (transpose) {
        tmp = malloc(n);
        if (!tmp)
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                                "%s: %zu bytes of host memory to transpose it", what, n);
        transpose_bytes(bytes, tmp, (size_t)rows, (size_t)cols, es);
    }
    /* COPY_HOST_PTR reads any alignment (a memory-mapped file's tensors
     * start wherever the header put them). */
    cl_int err;
    cl_mem mem = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, n,
                                tmp ? tmp : (void *)bytes, &err);
    free(tmp);
    if (!mem)
        return clattn__fail(ctx, clattn__status_from_cl(err),
                            "%s: allocating %zu bytes on the device: %s (%d)", what, n,
                            clattn__cl_error_name(err), (int)err);
    *m = (clattn__lm_matrix){mem, dtype, rows, cols};
    return CLATTN_OK;
}

void clattn__lm_matrix_release(clattn__lm_matrix *m)
{
    if (!m)
        return;
    if (m->mem)
        clReleaseMemObject(m->mem);
    *m = (clattn__lm_matrix){0};
}

size_t clattn__lm_matrix_bytes(const clattn__lm_matrix *m)
{
    if (!m || !m->mem || wdtype_code(m->dtype) < 0)
        return 0;
    return (size_t)m->rows * (size_t)m->cols * elem_size(m->dtype);
}

/* ---- argument checks ----------------------------------------------------- */

/* Fails unless buf (named arg) holds at least need bytes. */
static clattn_status check_size(clattn_ctx *ctx, const char *what, const char *arg, cl_mem buf,
                                size_t need)
{
    size_t have = 0;
    cl_int err = clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof have, &have, NULL);
    if (err != CL_SUCCESS)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s is not a valid buffer: %s (%d)",
                            what, arg, clattn__cl_error_name(err), (int)err);
    if (have < need)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: %s holds %zu bytes, the call needs %zu", what, arg, have, need);
    return CLATTN_OK;
}

/* true when [a, a + na) and [b, b + nb) overlap (element ranges). */
static bool overlap(size_t a, size_t na, size_t b, size_t nb)
{
    return a < b + nb && b < a + na;
}

/* Checks a matrix argument (named arg) of a call. */
static clattn_status check_matrix(clattn_ctx *ctx, const char *what, const char *arg,
                                  const clattn__lm_matrix *w)
{
    if (!w || !w->mem)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s has no device buffer", what,
                            arg);
    if (wdtype_code(w->dtype) < 0)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED, "%s: %s has dtype %s (F32, F16 or BF16)",
                            what, arg, clattn_dtype_name(w->dtype));
    if (w->rows <= 0 || w->cols <= 0 || w->rows > INT32_MAX || w->cols > INT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s has shape [%lld, %lld]", what,
                            arg, (long long)w->rows, (long long)w->cols);
    return CLATTN_OK;
}

/* Everything clattn__lm_linear's arguments must satisfy (T > 0). */
static clattn_status check_linear(clattn_ctx *ctx, const char *what, const clattn__lm_matrix *w,
                                  cl_mem bias, cl_mem x, size_t x_off, int64_t T, cl_mem y,
                                  size_t y_off)
{
    clattn_status st = check_matrix(ctx, what, "w", w);
    if (st != CLATTN_OK)
        return st;
    if (!x || !y)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: x and y must not be NULL", what);
    if (T > INT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: T = %lld rows over 2^31 - 1", what,
                            (long long)T);
    size_t rows = (size_t)w->rows, cols = (size_t)w->cols, t = (size_t)T;
    /* x_off + T * cols floats (and y's) must fit size_t bytes */
    size_t lim = SIZE_MAX / sizeof(float);
    if (x_off > lim || y_off > lim || t > (lim - x_off) / cols || t > (lim - y_off) / rows)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: offsets %zu, %zu with %lld rows overflow size_t", what, x_off,
                            y_off, (long long)T);
    st = check_size(ctx, what, "x", x, (x_off + t * cols) * sizeof(float));
    if (st == CLATTN_OK)
        st = check_size(ctx, what, "y", y, (y_off + t * rows) * sizeof(float));
    if (st == CLATTN_OK && bias)
        st = check_size(ctx, what, "bias", bias, rows * sizeof(float));
    if (st != CLATTN_OK)
        return st;
    /* the kernels read x and bias while they write y */
    if (x == y && overlap(x_off, t * cols, y_off, t * rows))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: y (from element %zu) overlaps x (from element %zu)", what,
                            y_off, x_off);
    if (bias == y && overlap(0, rows, y_off, t * rows))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: y overlaps bias", what);
    return CLATTN_OK;
}

/* ---- the paths ----------------------------------------------------------- */

/* One product's arguments, resolved. */
typedef struct lp_call {
    const clattn__lm_matrix *w;
    cl_mem bias, x, y;
    cl_long x_off, y_off;
    cl_int rows, cols, T;
    cl_int has_bias, accumulate;
    const char *what;
} lp_call;

/* Sets the arguments every product kernel shares, in lp_gemv_*'s order;
 * the kernel's own follow from index 11. */
static clattn_status set_product_args(clattn_ctx *ctx, cl_kernel k, const lp_call *c)
{
    cl_mem bias = c->bias ? c->bias : c->y; /* never read without has_bias */
    return CLATTN_SET_ARGS(ctx, k, c->what, CLATTN_KARG(c->w->mem), CLATTN_KARG(c->rows),
                           CLATTN_KARG(c->cols), CLATTN_KARG(c->x), CLATTN_KARG(c->x_off),
                           CLATTN_KARG(c->T), CLATTN_KARG(c->y), CLATTN_KARG(c->y_off),
                           CLATTN_KARG(bias), CLATTN_KARG(c->has_bias),
                           CLATTN_KARG(c->accumulate));
}

/* Index of the smallest matrix-vector variant that takes T (<= 8) rows. */
static int gemv_variant(int T)
{
    int v = 0;
    while (v < GEMV_VARIANTS - 1 && GEMV_NT[v] < T)
        v++;
    return v;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p *= 2;
    return p;
}

/* lp_gemv_cpu_NT, or lp_gemv_cpu_split_NT for rows longer than
 * GEMV_CPU_SPAN, for c->T <= 8 rows. */
static clattn_status gemv_cpu(clattn_ctx *ctx, const lp_call *c)
{
    int v = gemv_variant(c->T), nt = GEMV_NT[v], r = GEMV_CPU_ROWS[v];
    bool split = (size_t)c->cols > GEMV_CPU_SPAN;
    cl_kernel k;
    clattn_status st = lp_kernel(ctx, split ? &GEMV_CPU_SPLIT[v] : &GEMV_CPU[v], c->w->dtype, &k);
    clattn__group_limits lim;
    if (st == CLATTN_OK)
        st = clattn__group_limits_get(ctx, k, c->what, &lim);
    if (st != CLATTN_OK)
        return st;
    size_t limit = lim.group_max;
    if (lim.item_max[0] && lim.item_max[0] < limit)
        limit = lim.item_max[0];
    /* splits of each row: a power of two (the tree), at least 2 in the
     * split kernel, whose tree must run (see lp_store_old) */
    size_t splits = 1;
    while (split && (splits < 2 || splits * GEMV_CPU_SPAN < (size_t)c->cols) &&
           splits * 2 <= limit)
        splits *= 2;
    size_t group = splits >= GEMV_CPU_GROUP ? 1 : GEMV_CPU_GROUP / splits;
    if (lim.item_max[1] && group > lim.item_max[1])
        group = lim.item_max[1];
    while (group > 1 && splits * group > limit)
        group /= 2;
    size_t tmp = split ? splits * group * (size_t)(r * nt) * sizeof(float) : sizeof(float);
    st = set_product_args(ctx, k, c);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS_FROM(ctx, k, 11, c->what, CLATTN_KLOCAL(tmp));
    if (st != CLATTN_OK)
        return st;
    size_t blocks = (size_t)clattn__ceil_div(c->rows, r);
    size_t global[2] = {splits, blocks}, local[2] = {splits, group};
    return clattn__enqueue(ctx, k, 2, global, local, c->what);
}

/* lp_gemv_tiled_NT for c->T <= 8 rows. */
static clattn_status gemv_tiled(clattn_ctx *ctx, const lp_call *c)
{
    int v = gemv_variant(c->T), nt = GEMV_NT[v];
    cl_kernel k;
    clattn_status st = lp_kernel(ctx, &GEMV_TILED[v], c->w->dtype, &k);
    clattn__group_limits lim;
    if (st == CLATTN_OK)
        st = clattn__group_limits_get(ctx, k, c->what, &lim);
    if (st != CLATTN_OK)
        return st;
    size_t limit = lim.group_max < GEMV_TILED_GROUP ? lim.group_max : GEMV_TILED_GROUP;
    size_t row_max = c->rows <= GEMV_TILED_ROW ? GEMV_TILED_GROUP : GEMV_TILED_ROW;
    /* at least 2, so the tree's barrier loop runs (see lp_store_old) */
    size_t lx = pow2_at_least((size_t)clattn__ceil_div(c->cols, 8));
    if (lx < 2)
        lx = 2;
    if (lx > row_max)
        lx = row_max;
    if (lim.item_max[0] && lx > lim.item_max[0])
        lx = lim.item_max[0];
    while (lx > 2 && lx > limit)
        lx /= 2;
    size_t ly = limit / lx > 0 ? limit / lx : 1;
    if (ly > (size_t)c->rows)
        ly = pow2_at_least((size_t)c->rows);
    if (lim.item_max[1] && ly > lim.item_max[1])
        ly = lim.item_max[1];
    /* the tree's scratch must fit next to the kernel's own local memory */
    while (lx * ly > 2 &&
           lim.kernel_local + lx * ly * (size_t)nt * sizeof(float) > ctx->info.local_mem_bytes) {
        if (ly > 1)
            ly /= 2;
        else
            lx /= 2;
    }
    st = set_product_args(ctx, k, c);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS_FROM(ctx, k, 11, c->what,
                                  CLATTN_KLOCAL(lx * ly * (size_t)nt * sizeof(float)));
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {lx, (size_t)c->rows}, local[2] = {lx, ly};
    return clattn__enqueue(ctx, k, 2, global, local, c->what);
}

/* A matrix-vector kernel over any T, CLATTN_LM_GEMV_MAX_T rows a launch. */
static clattn_status gemv(clattn_ctx *ctx, const lp_call *call, bool cpu)
{
    clattn_status st = CLATTN_OK;
    for (cl_int t0 = 0; st == CLATTN_OK && t0 < call->T; t0 += CLATTN_LM_GEMV_MAX_T) {
        lp_call c = *call;
        c.T = call->T - t0 < CLATTN_LM_GEMV_MAX_T ? call->T - t0 : CLATTN_LM_GEMV_MAX_T;
        c.x_off += (cl_long)t0 * call->cols;
        c.y_off += (cl_long)t0 * call->rows;
        st = cpu ? gemv_cpu(ctx, &c) : gemv_tiled(ctx, &c);
    }
    return st;
}

/* y[T, rows] += bias over the product's rows of y. */
static clattn_status bias_add(clattn_ctx *ctx, const lp_call *c)
{
    cl_kernel k;
    clattn_status st = lp_kernel(ctx, &BIAS_ADD, c->w->dtype, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, c->what, CLATTN_KARG(c->y), CLATTN_KARG(c->y_off),
                             CLATTN_KARG(c->rows), CLATTN_KARG(c->bias));
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {(size_t)c->rows, (size_t)c->T};
    return clattn__enqueue(ctx, k, 2, global, NULL, c->what);
}

/* lp_gemm_tiled; needs a 256-wide work-group, else runs the tiled
 * matrix-vector kernel (any device has that). */
static clattn_status gemm_tiled(clattn_ctx *ctx, const lp_call *c)
{
    cl_kernel k;
    clattn_status st = lp_kernel(ctx, &GEMM_TILED, c->w->dtype, &k);
    clattn__group_limits lim;
    if (st == CLATTN_OK)
        st = clattn__group_limits_get(ctx, k, c->what, &lim);
    if (st != CLATTN_OK)
        return st;
    if (lim.group_max < GEMM_TILE_ITEMS * GEMM_TILE_ITEMS ||
        (lim.item_max[1] && lim.item_max[1] < GEMM_TILE_ITEMS))
        return gemv(ctx, c, false);
    st = set_product_args(ctx, k, c);
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {
        (size_t)clattn__ceil_div(c->rows, GEMM_TILE) * GEMM_TILE_ITEMS,
        (size_t)clattn__ceil_div(c->T, GEMM_TILE) * GEMM_TILE_ITEMS,
    };
    size_t local[2] = {GEMM_TILE_ITEMS, GEMM_TILE_ITEMS};
    return clattn__enqueue(ctx, k, 2, global, local, c->what);
}

/* W converted chunk by chunk of rows into float panels (lp_pack_panels,
 * in the CLATTN_SCRATCH_GEMM_B slot: gemm_cpu's own place for op(B)
 * panels, which it does not touch when handed packed panels) and
 * multiplied by clattn's CPU GEMM into the chunk's columns of y. The bias
 * is fused when W is one chunk, else added after. */
static clattn_status gemm_packed(clattn_ctx *ctx, const lp_call *c)
{
    size_t rows = (size_t)c->rows, cols = (size_t)c->cols;
    size_t chunk = PACK_CHUNK_BYTES / (cols * sizeof(float)) / GEMM_PANEL * GEMM_PANEL;
    if (chunk < GEMM_PANEL)
        chunk = GEMM_PANEL;
    if (chunk > rows)
        chunk = rows;
    size_t panels = (chunk + GEMM_PANEL - 1) / GEMM_PANEL;
    cl_mem bp;
    cl_kernel kp;
    clattn_status st = clattn__scratch(ctx, CLATTN_SCRATCH_GEMM_B,
                                       panels * GEMM_PANEL * cols * sizeof(float),
                                       "float panels of a weight", &bp);
    if (st == CLATTN_OK)
        st = lp_kernel(ctx, &PACK, c->w->dtype, &kp);
    bool fuse_bias = chunk == rows;
    float beta = c->accumulate ? 1.0f : 0.0f;
    for (size_t n0 = 0; st == CLATTN_OK && n0 < rows; n0 += chunk) {
        size_t nc = rows - n0 < chunk ? rows - n0 : chunk;
        cl_int n0_i = (cl_int)n0, nc_i = (cl_int)nc;
        st = CLATTN_SET_ARGS(ctx, kp, c->what, CLATTN_KARG(c->w->mem), CLATTN_KARG(c->cols),
                             CLATTN_KARG(n0_i), CLATTN_KARG(nc_i), CLATTN_KARG(bp));
        size_t global[2] = {(cols + 15) / 16, (nc + GEMM_PANEL - 1) / GEMM_PANEL};
        size_t local[2] = {1, 1};
        if (st == CLATTN_OK)
            st = clattn__enqueue(ctx, kp, 2, global, local, c->what);
        /* y[:, n0 .. n0 + nc] = x . (panels) (+ beta y): op(B) = W^T's
         * columns n0 .. n0 + nc, b itself not read */
        if (st == CLATTN_OK)
            st = clattn__gemm_cpu_epilogue(
                ctx, false, true, (size_t)c->T, nc, cols, 1.0f, c->x, (size_t)c->x_off, cols, 0,
                bp, 0, cols, 0, beta, c->y, (size_t)c->y_off + n0, rows, 0, 1,
                fuse_bias ? c->bias : NULL, CLATTN_ACT_NONE, bp);
    }
    if (st == CLATTN_OK && c->bias && !fuse_bias)
        st = bias_add(ctx, c);
    return st;
}

/* F32 through clattn__gemm (CLBlast, or the CPU GEMM packing W itself). */
static clattn_status gemm_blas(clattn_ctx *ctx, const lp_call *c)
{
    if (c->w->dtype != CLATTN_DTYPE_F32)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: the BLAS path reads F32 weights only, not %s", c->what,
                            clattn_dtype_name(c->w->dtype));
    size_t rows = (size_t)c->rows, cols = (size_t)c->cols;
    clattn_status st =
        clattn__gemm(ctx, false, true, (size_t)c->T, rows, cols, 1.0f, c->x, (size_t)c->x_off,
                     cols, c->w->mem, 0, cols, c->accumulate ? 1.0f : 0.0f, c->y,
                     (size_t)c->y_off, rows);
    if (st == CLATTN_OK && c->bias)
        st = bias_add(ctx, c);
    return st;
}

/* AUTO's choice (see clattn__lm_path). The CPU forms want a device that
 * runs a work-item's long serial loop as compiled loops: POCL. llvmpipe,
 * also a CPU device, runs work-items in SIMD lanes as a GPU does and has
 * a loop budget, so it gets the GPU forms. */
static clattn__lm_path auto_path(const clattn_ctx *ctx, const clattn__lm_matrix *w, int64_t T)
{
    bool cpu = ctx->info.type == CLATTN_DEVICE_CPU && ctx->loop_budget == 0;
    if (T <= CLATTN_LM_GEMV_MAX_T)
        return cpu ? CLATTN_LM_PATH_GEMV_CPU : CLATTN_LM_PATH_GEMV_TILED;
    if (cpu)
        return CLATTN_LM_PATH_GEMM_PACKED;
    return w->dtype == CLATTN_DTYPE_F32 && ctx->gemm_backend == CLATTN_GEMM_CLBLAST
               ? CLATTN_LM_PATH_GEMM_BLAS
               : CLATTN_LM_PATH_GEMM_TILED;
}

clattn_status clattn__lm_linear_path(clattn_ctx *ctx, clattn__lm_path path,
                                     const clattn__lm_matrix *w, cl_mem bias, cl_mem x,
                                     size_t x_off, int64_t T, cl_mem y, size_t y_off,
                                     bool accumulate, const char *what)
{
    if (!what)
        what = "lm_linear";
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", what);
    if (T < 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: T = %lld rows", what,
                            (long long)T);
    if (path < CLATTN_LM_PATH_AUTO || path >= CLATTN_LM_PATH_COUNT)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: unknown path %d", what, (int)path);
    clattn_status st = check_linear(ctx, what, w, bias, x, x_off, T, y, y_off);
    if (st != CLATTN_OK || T == 0)
        return st;
    if (x_off > (size_t)INT64_MAX || y_off > (size_t)INT64_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: offsets over 2^63", what);
    lp_call c = {.w = w,
                 .bias = bias,
                 .x = x,
                 .y = y,
                 .x_off = (cl_long)x_off,
                 .y_off = (cl_long)y_off,
                 .rows = (cl_int)w->rows,
                 .cols = (cl_int)w->cols,
                 .T = (cl_int)T,
                 .has_bias = bias != NULL,
                 .accumulate = accumulate,
                 .what = what};
    if (path == CLATTN_LM_PATH_AUTO)
        path = auto_path(ctx, w, T);
    switch (path) {
    case CLATTN_LM_PATH_GEMV_CPU:
        return gemv(ctx, &c, true);
    case CLATTN_LM_PATH_GEMV_TILED:
        return gemv(ctx, &c, false);
    case CLATTN_LM_PATH_GEMM_PACKED:
        return gemm_packed(ctx, &c);
    case CLATTN_LM_PATH_GEMM_TILED:
        return gemm_tiled(ctx, &c);
    default:
        return gemm_blas(ctx, &c);
    }
}

clattn_status clattn__lm_linear(clattn_ctx *ctx, const clattn__lm_matrix *w, cl_mem bias,
                                cl_mem x, size_t x_off, int64_t T, cl_mem y, size_t y_off,
                                bool accumulate, const char *what)
{
    return clattn__lm_linear_path(ctx, CLATTN_LM_PATH_AUTO, w, bias, x, x_off, T, y, y_off,
                                  accumulate, what);
}

/* ---- row gathers --------------------------------------------------------- */

clattn_status clattn__lm_gather_rows(clattn_ctx *ctx, const clattn__lm_matrix *table,
                                     cl_mem ids, int64_t T, cl_mem out, bool accumulate,
                                     const char *what)
{
    if (!what)
        what = "lm_gather_rows";
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", what);
    clattn_status st = check_matrix(ctx, what, "table", table);
    if (st != CLATTN_OK)
        return st;
    if (!ids || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: ids and out must not be NULL",
                            what);
    if (T < 0 || T > INT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: T = %lld rows", what,
                            (long long)T);
    if (T == 0)
        return CLATTN_OK;
    size_t t = (size_t)T, cols = (size_t)table->cols;
    if (t > SIZE_MAX / sizeof(float) / cols)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %lld rows overflow size_t", what,
                            (long long)T);
    st = check_size(ctx, what, "ids", ids, t * sizeof(cl_int));
    if (st == CLATTN_OK)
        st = check_size(ctx, what, "out", out, t * cols * sizeof(float));
    cl_kernel k;
    if (st == CLATTN_OK)
        st = lp_kernel(ctx, &GATHER, table->dtype, &k);
    cl_int rows = (cl_int)table->rows, cols_i = (cl_int)cols, acc = accumulate;
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, what, CLATTN_KARG(table->mem), CLATTN_KARG(rows),
                             CLATTN_KARG(cols_i), CLATTN_KARG(ids), CLATTN_KARG(out),
                             CLATTN_KARG(acc));
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {cols, t};
    return clattn__enqueue(ctx, k, 2, global, NULL, what);
}
