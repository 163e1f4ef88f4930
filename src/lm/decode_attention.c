/* decode_attention.c - clattn__lm_decode_attention: split-KV
 * ("FlashDecoding") attention of a few new query rows per sequence against
 * that sequence's slot of a layer's KV cache (lm/lm.h has the contract,
 * cl/lm/decode_attention.cl the kernels and their NDRanges).
 *
 * Two launches. decode_partial_{cpu,tiled} splits the visible keys of each
 * (sequence, kv head) into chunks and, for every query vector of that kv
 * head (its Hq / Hkv query heads times the new rows, sharing one read of
 * each key and value), writes the chunk's running max m, sum l and
 * unnormalised output acc[D] to scratch; decode_merge combines the chunks
 * by log-sum-exp into out.
 *
 * The chunk rule (plan_chunks): NC chunks per (sequence, kv head), the same
 * NC for every sequence (each sequence's span is cut into NC equal parts,
 * so a short one gets short or empty chunks rather than idle groups):
 *   1. enough to fill the device: n_seq * Hkv * (query tiles) * NC >=
 *      GROUPS_PER_CU * compute units;
 *   2. but no chunk shorter than MIN_CHUNK_* keys where the longest span
 *      allows (a short chunk costs a group start and a merge term for
 *      little work);
 *   3. and no chunk longer than MAX_CHUNK_KEYS: a float32 sum's error
 *      grows with its length (one chunk of 32768 keys was 6.6e-6 off,
 *      relative, on a flat average; 8 of 4096 were 2e-6), while the merge
 *      of a few more chunks costs next to nothing;
 *   4. and, where the driver cuts loops short (ctx->loop_budget, Mesa's
 *      llvmpipe), enough chunks that no work-item's loop iterations, all
 *      loops counted (loop_iterations_*), exceed LOOP_TARGET_PERCENT of
 *      the budget. 3 and 4 win over 2, and over a forced count.
 * The merge's work-items loop 2 NC times, far inside any budget. */
#include "lm/lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One program per (family, head size, cache type, query tile); both
 * partial kernels and the merge come from it. */
static const clattn__program_spec DECODE_PROGRAM = {{"lm/decode_attention.cl", NULL}, NULL};
static const clattn__kernel_spec DECODE_PARTIAL[2] = {
    [CLATTN_ATTN_CPU] = {&DECODE_PROGRAM, "decode_partial_cpu"},
    [CLATTN_ATTN_TILED] = {&DECODE_PROGRAM, "decode_partial_tiled"},
};
static const clattn__kernel_spec DECODE_MERGE = {&DECODE_PROGRAM, "decode_merge"};

#define MAX_HEAD_DIM 256
#define MAX_FORCED_CHUNKS 4096

/* Chunk rule constants (see the header comment). Four groups per compute
 * unit let a device even out groups of unequal length (the last chunk of a
 * span is shorter, windows cut some) without many merge terms. The CPU
 * family's minimum is longer: one work-item per group, and POCL's cost per
 * group start is a few microseconds. */
#define GROUPS_PER_CU 4
#define MIN_CHUNK_CPU 256
#define MIN_CHUNK_TILED 128
#define MAX_CHUNK_KEYS 4096
/* Under half of llvmpipe's 65535, as the project's rule for that driver
 * (docs: "never more than ~30000"), since our counts are estimates. */
#define LOOP_TARGET_PERCENT 45

/* Family tunables. cpu: query vectors per work-item at most 8 (4 at
 * D > 128), keeping q and acc (2 * Q_TILE * D floats) within 16 KiB of
 * private memory; 16 keys per softmax step. tiled: 64 work-items, 32 keys
 * per tile (16 at D > 128), query tile of 4 to 32 vectors, halved until
 * the local memory fits. */
#define CPU_KEY_BLOCK 16
#define TILED_WG 64
#define TILED_MAX_Q_TILE 32
/* A tile of fewer than 4 query vectors leaves most of the group idle in
 * the P.V step anyway (4 * D / 4 float4 outputs = 64 work-items at D 64),
 * so 1 and 2 vectors share the program of 4: fewer builds, same speed. */
#define TILED_MIN_Q_TILE 4
/* The merge's work-group width along D (the kernel skips d >= D): one
 * fixed size, because POCL compiles a kernel anew for each local size. */
#define MERGE_WG 64

/* What the program of one launch is specialised for. */
typedef struct decode_plan {
    int family;     /* clattn__attention_variant */
    int d, vw;      /* head size, vector width the kernel uses along it */
    bool f16;
    int q_tile;     /* query vectors per work-item (cpu) or group (tiled) */
    int tile_k;     /* tiled: keys per tile */
    int n_qt;       /* query tiles per (sequence, kv head) */
    int n_chunks;
} decode_plan;

static int pow2_at_least(int x)
{
    int p = 1;
    while (p < x && p < (1 << 30))
        p *= 2;
    return p;
}

static uint64_t tiled_local_bytes(int d, int vw, int q_tile, int tile_k)
{
    uint64_t kv_ld = (uint64_t)d + (vw == 4 ? 4 : 1);
    return 4ull * ((uint64_t)q_tile * (uint64_t)d + (uint64_t)tile_k * kv_ld +
                   (uint64_t)q_tile * (uint64_t)tile_k + (uint64_t)q_tile);
}

/* Loop iterations of one work-item, every loop's trip count added up,
 * over a chunk of keys: an upper bound of what llvmpipe counts, since the
 * loops the compiler unrolls do not count there. (It is loose: the inner
 * loops have constant trip counts, and 32768 keys in one chunk at D 64,
 * estimated 151K, ran correctly on llvmpipe 22.3; only the key loop
 * counted. Unrolling is the compiler's choice, so the bound stays.) */
static int64_t loop_iterations_tiled(const decode_plan *p, int64_t keys)
{
    const int64_t dv = p->d / p->vw, wg = TILED_WG, tk = p->tile_k, qt = p->q_tile;
    const int64_t kvi = clattn__ceil_div(tk * dv, wg);
    const int64_t spi = clattn__ceil_div(qt * tk, wg);
    const int64_t opi = clattn__ceil_div(qt * dv, wg);
    const int64_t per_tile = 1 + 2 * kvi + spi * (1 + dv) + 2 * tk + opi * (1 + tk);
    return 3 * opi + clattn__ceil_div(keys, tk) * per_tile;
}

static int64_t loop_iterations_cpu(const decode_plan *p, int64_t keys)
{
    const int64_t dv = p->d / p->vw, kb = CPU_KEY_BLOCK, qt = p->q_tile;
    const int64_t per_block = 1 + kb * (1 + 2 * qt + dv * (1 + qt)) +
                              qt * (1 + 2 * kb + dv) + kb * (1 + dv * (1 + qt));
    return 2 * qt * (1 + dv) + clattn__ceil_div(keys, kb) * per_block;
}

/* Most keys one chunk may hold under the loop budget (INT32_MAX: none). */
static int64_t budget_chunk_keys(const clattn_ctx *ctx, const decode_plan *p)
{
    if (ctx->loop_budget == 0)
        return INT32_MAX;
    const int64_t target = ctx->loop_budget * LOOP_TARGET_PERCENT / 100;
    const int64_t step = p->family == CLATTN_ATTN_TILED ? p->tile_k : CPU_KEY_BLOCK;
    int64_t (*count)(const decode_plan *, int64_t) =
        p->family == CLATTN_ATTN_TILED ? loop_iterations_tiled : loop_iterations_cpu;
    /* The count is affine in the number of steps: solve, then check. */
    const int64_t fixed = count(p, 0), per_step = count(p, step) - fixed;
    int64_t steps = (target - fixed) / per_step;
    if (steps < 1)
        steps = 1;
    return steps * step;
}

/* Keys of the union of the new rows' ranges of sequence s. */
static int64_t sequence_span(const clattn__decode_args *a, int s)
{
    int64_t len = a->len[s];
    int64_t lo = a->window_left < 0 ? 0 : len - a->rows - a->window_left;
    return len - (lo > 0 ? lo : 0);
}

static void plan_kernel(const clattn_ctx *ctx, const clattn__decode_args *a, decode_plan *p)
{
    const int d = a->head_dim;
    const int r = a->rows * (a->n_q_heads / a->n_kv_heads);
    memset(p, 0, sizeof *p);
    p->family = ctx->attention_variant == CLATTN_ATTN_CPU ? CLATTN_ATTN_CPU : CLATTN_ATTN_TILED;
    p->d = d;
    p->f16 = a->f16;
    if (p->family == CLATTN_ATTN_CPU) {
        /* Must match the kernel's choice of vector width. */
        p->vw = d % 8 == 0 ? 8 : d % 4 == 0 ? 4 : 1;
        int cap = d > 128 ? 4 : 8;
        p->q_tile = pow2_at_least(r) < cap ? pow2_at_least(r) : cap;
    } else {
        p->vw = d % 4 == 0 ? 4 : 1;
        int qt = pow2_at_least(r);
        qt = qt > TILED_MIN_Q_TILE ? qt : TILED_MIN_Q_TILE;
        p->q_tile = qt < TILED_MAX_Q_TILE ? qt : TILED_MAX_Q_TILE;
        p->tile_k = d > 128 ? 16 : 32;
        while (tiled_local_bytes(d, p->vw, p->q_tile, p->tile_k) > ctx->info.local_mem_bytes) {
            if (p->q_tile > 1)
                p->q_tile /= 2;
            else if (p->tile_k > 4)
                p->tile_k /= 2;
            else
                break;   /* a device this small fails at the build or launch */
        }
    }
    p->n_qt = (int)clattn__ceil_div(r, p->q_tile);
}

/* The chunk count: the rule of the header comment, or forced (> 0). */
static void plan_chunks(const clattn_ctx *ctx, const clattn__decode_args *a, int32_t forced,
                        decode_plan *p)
{
    int64_t span = 1;
    for (int s = 0; s < a->n_seq; s++) {
        int64_t sp = sequence_span(a, s);
        span = sp > span ? sp : span;
    }
    int64_t nc;
    if (forced > 0) {
        nc = forced;
    } else {
        int64_t groups = (int64_t)a->n_seq * a->n_kv_heads * p->n_qt;
        int64_t cu = ctx->info.compute_units > 0 ? ctx->info.compute_units : 1;
        nc = clattn__ceil_div(GROUPS_PER_CU * cu, groups);
        int64_t min_keys = p->family == CLATTN_ATTN_CPU ? MIN_CHUNK_CPU : MIN_CHUNK_TILED;
        int64_t by_length = clattn__ceil_div(span, min_keys);
        nc = nc < by_length ? nc : by_length;
    }
    int64_t most_keys = budget_chunk_keys(ctx, p);
    most_keys = most_keys < MAX_CHUNK_KEYS ? most_keys : MAX_CHUNK_KEYS;
    int64_t by_limit = clattn__ceil_div(span, most_keys);
    nc = nc > by_limit ? nc : by_limit;
    p->n_chunks = (int)(nc < 1 ? 1 : nc);
}

static char *decode_options(const void *arg)
{
    const decode_plan *p = arg;
    return clattn__aprintf("-DHEAD_DIM=%d -DKV_HALF=%d -DDECODE_CPU=%d -DQ_TILE=%d "
                           "-DKEY_BLOCK=%d -DTILE_K=%d -DDECODE_WG=%d",
                           p->d, p->f16 ? 1 : 0, p->family == CLATTN_ATTN_CPU ? 1 : 0,
                           p->q_tile, CPU_KEY_BLOCK, p->tile_k > 0 ? p->tile_k : 32, TILED_WG);
}

/* clattn__kernel_variant's key: everything decode_options encodes (tile_k
 * is a function of the context and d), and bit 0 so it is never 0. */
static uint64_t decode_variant(const decode_plan *p)
{
    return (uint64_t)p->d << 24 | (uint64_t)p->q_tile << 8 | (uint64_t)p->family << 2 |
           (uint64_t)p->f16 << 1 | 1u;
}

/* ---- argument checks ------------------------------------------------- */

static clattn_status mem_bytes(clattn_ctx *ctx, cl_mem m, const char *what, size_t *bytes)
{
    cl_int err = clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof *bytes, bytes, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, what);
}

static clattn_status check_args(clattn_ctx *ctx, const clattn__decode_args *a)
{
    const char *fn = "decode_attention";
    if (!a)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: args is NULL", fn);
    if (!a->cache || !a->cache->k || !a->cache->v)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: cache (or its k or v) is NULL",
                            fn);
    if (!a->q || !a->out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: q or out is NULL", fn);
    if (!a->slot || !a->len)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: slot or len is NULL", fn);
    if (a->n_seq < 1 || a->rows < 1 || a->n_q_heads < 1 || a->n_kv_heads < 1 || a->capacity < 1)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: n_seq %d, rows %d, n_q_heads %d, n_kv_heads %d and capacity %d "
                            "must all be >= 1", fn, a->n_seq, a->rows, a->n_q_heads,
                            a->n_kv_heads, a->capacity);
    if (a->n_q_heads % a->n_kv_heads != 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: n_q_heads %d is not a multiple of n_kv_heads %d", fn,
                            a->n_q_heads, a->n_kv_heads);
    if (a->head_dim < 1 || a->head_dim > MAX_HEAD_DIM)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: head_dim %d is outside 1..%d", fn,
                            a->head_dim, MAX_HEAD_DIM);
    if (a->window_left < -1)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: window_left %d must be >= 0, or -1 for unlimited", fn,
                            a->window_left);
    if (!isfinite(a->scale))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: scale %g is not finite", fn,
                            (double)a->scale);
    for (int s = 0; s < a->n_seq; s++)
        if (a->len[s] < a->rows || a->len[s] > a->capacity)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: len[%d] = %d must be in rows..capacity = %d..%d (the new "
                                "rows are already in the cache)", fn, s, a->len[s], a->rows,
                                a->capacity);
    /* Buffer sizes: q and out [n_seq * rows, Hq * D] floats, and the cache's
     * slot count from its size (k and v alike). */
    const uint64_t row_floats = (uint64_t)a->n_q_heads * (uint64_t)a->head_dim;
    const uint64_t qbytes = (uint64_t)a->n_seq * (uint64_t)a->rows * row_floats * 4u;
    const uint64_t slot_bytes = (uint64_t)a->n_kv_heads * (uint64_t)a->capacity *
                                (uint64_t)a->head_dim * (a->f16 ? 2u : 4u);
    size_t qb, ob, kb, vb;
    clattn_status st = mem_bytes(ctx, a->q, "decode_attention: size of q", &qb);
    if (st == CLATTN_OK)
        st = mem_bytes(ctx, a->out, "decode_attention: size of out", &ob);
    if (st == CLATTN_OK)
        st = mem_bytes(ctx, a->cache->k, "decode_attention: size of cache k", &kb);
    if (st == CLATTN_OK)
        st = mem_bytes(ctx, a->cache->v, "decode_attention: size of cache v", &vb);
    if (st != CLATTN_OK)
        return st;
    if (qb < qbytes || ob < qbytes)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: q (%zu bytes) and out (%zu bytes) must hold [n_seq * rows, "
                            "Hq * D] = [%d, %llu] floats (%llu bytes)", fn, qb, ob,
                            a->n_seq * a->rows, (unsigned long long)row_floats,
                            (unsigned long long)qbytes);
    const uint64_t slots = (kb < vb ? kb : vb) / slot_bytes;
    for (int s = 0; s < a->n_seq; s++) {
        if (a->slot[s] < 0 || (uint64_t)a->slot[s] >= slots)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: slot[%d] = %d is outside the cache's 0..%lld (k %zu and "
                                "v %zu bytes, %llu bytes per slot of [Hkv, capacity, D] = "
                                "[%d, %d, %d] %s)", fn, s, a->slot[s], (long long)slots - 1,
                                kb, vb, (unsigned long long)slot_bytes, a->n_kv_heads,
                                a->capacity, a->head_dim, a->f16 ? "half" : "float");
    }
    return CLATTN_OK;
}

/* ---- launches -------------------------------------------------------- */

static void CL_CALLBACK free_host_copy(cl_event ev, cl_int status, void *user)
{
    (void)ev, (void)status;
    free(user);
}

/* (slot, len) per sequence into a device int2 array. The write is not
 * blocking, so a forward pass that calls this per layer never waits for
 * the queue: it reads a malloc'd copy, freed by the write's completion
 * callback (or after waiting, should the callback not register). */
static clattn_status upload_sequences(clattn_ctx *ctx, const clattn__decode_args *a, cl_mem *mem)
{
    const size_t bytes = (size_t)a->n_seq * 2 * sizeof(cl_int);
    clattn_status st = clattn__scratch(ctx, CLATTN_SCRATCH_DECODE_SEQ, bytes,
                                       "decode attention: (slot, len) per sequence", mem);
    if (st != CLATTN_OK)
        return st;
    cl_int *copy = malloc(bytes);
    if (!copy)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "decode_attention: out of host memory");
    for (int s = 0; s < a->n_seq; s++)
        copy[2 * s] = a->slot[s], copy[2 * s + 1] = a->len[s];
    cl_event ev;
    cl_int err = clEnqueueWriteBuffer(ctx->queue, *mem, CL_FALSE, 0, bytes, copy, 0, NULL, &ev);
    if (err != CL_SUCCESS) {
        free(copy);
        return clattn__fail_cl(ctx, err, "decode_attention: uploading (slot, len)");
    }
    if (clSetEventCallback(ev, CL_COMPLETE, free_host_copy, copy) != CL_SUCCESS) {
        err = clWaitForEvents(1, &ev);
        free(copy);
        if (err != CL_SUCCESS) {
            clReleaseEvent(ev);
            return clattn__fail_cl(ctx, err, "decode_attention: uploading (slot, len)");
        }
    }
    clReleaseEvent(ev);
    return CLATTN_OK;
}

/* A scratch slot of at least bytes, grown to the next power of two so a
 * decode loop whose chunk count creeps up does not reallocate each time. */
static clattn_status scratch_grow(clattn_ctx *ctx, int slot, uint64_t bytes, const char *what,
                                  cl_mem *out)
{
    uint64_t want = 256;
    while (want < bytes)
        want *= 2;
    if (want > ctx->info.max_alloc_bytes && bytes <= ctx->info.max_alloc_bytes)
        want = bytes;
    if ((uint64_t)(size_t)want != want)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "%s: %llu bytes overflow size_t",
                            what, (unsigned long long)bytes);
    if (ctx->scratch[slot] && ctx->scratch_bytes[slot] >= bytes) {
        *out = ctx->scratch[slot];
        return CLATTN_OK;
    }
    return clattn__scratch(ctx, slot, (size_t)want, what, out);
}

static clattn_status run_partial(clattn_ctx *ctx, const clattn__decode_args *a,
                                 const decode_plan *p, cl_mem seq, cl_mem acc, cl_mem ml)
{
    cl_kernel k;
    const char *name = DECODE_PARTIAL[p->family].name;
    clattn_status st = clattn__kernel_variant(ctx, &DECODE_PARTIAL[p->family], decode_variant(p),
                                              decode_options, p, &k);
    if (st != CLATTN_OK)
        return st;
    const cl_int nc = p->n_chunks, rows = a->rows, hq = a->n_q_heads, hkv = a->n_kv_heads;
    const cl_int cap = a->capacity, wl = a->window_left;
    const cl_float scale = a->scale;
    st = CLATTN_SET_ARGS(ctx, k, name, CLATTN_KARG(a->q), CLATTN_KARG(a->cache->k),
                         CLATTN_KARG(a->cache->v), CLATTN_KARG(acc), CLATTN_KARG(ml),
                         CLATTN_KARG(seq), CLATTN_KARG(nc), CLATTN_KARG(rows), CLATTN_KARG(hq),
                         CLATTN_KARG(hkv), CLATTN_KARG(cap), CLATTN_KARG(wl), CLATTN_KARG(scale));
    if (st != CLATTN_OK)
        return st;
    const size_t sk = (size_t)a->n_seq * (size_t)a->n_kv_heads;
    if (p->family == CLATTN_ATTN_CPU) {
        /* One work-item per group: POCL runs a group on one thread, and
         * the work-item already holds a whole query tile. */
        size_t global[3] = {(size_t)p->n_qt, (size_t)p->n_chunks, sk}, local[3] = {1, 1, 1};
        return clattn__enqueue(ctx, k, 3, global, local, name);
    }
    /* The device's limit, not the kernel's: Rusticl 22.3 reports a
     * CL_KERNEL_WORK_GROUP_SIZE of 32 for every kernel, reqd_work_group_size
     * or not, and runs them at their required size (sdpa_fwd_tiled at
     * 128 too). */
    if (ctx->info.max_work_group_size < TILED_WG)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "decode_attention: %s needs work-groups of %d, %s allows %zu", name,
                            TILED_WG, ctx->info.device_name, ctx->info.max_work_group_size);
    size_t global[3] = {(size_t)p->n_chunks * TILED_WG, (size_t)p->n_qt, sk};
    size_t local[3] = {TILED_WG, 1, 1};
    return clattn__enqueue(ctx, k, 3, global, local, name);
}

static clattn_status run_merge(clattn_ctx *ctx, const clattn__decode_args *a,
                               const decode_plan *p, cl_mem acc, cl_mem ml)
{
    cl_kernel k;
    clattn_status st =
        clattn__kernel_variant(ctx, &DECODE_MERGE, decode_variant(p), decode_options, p, &k);
    const cl_int nc = p->n_chunks;
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "decode_merge", CLATTN_KARG(acc), CLATTN_KARG(ml),
                             CLATTN_KARG(a->out), CLATTN_KARG(nc));
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {(size_t)p->d,
                        (size_t)a->n_seq * (size_t)a->rows * (size_t)a->n_q_heads};
    size_t local[2] = {MERGE_WG, 1};
    return clattn__enqueue(ctx, k, 2, global, local, "decode_merge");
}

clattn_status clattn__lm_decode_attention_split(clattn_ctx *ctx, const clattn__decode_args *a,
                                                int32_t n_chunks, int32_t *used)
{
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "decode_attention: ctx is NULL");
    clattn_status st = check_args(ctx, a);
    if (st != CLATTN_OK)
        return st;
    if (n_chunks < 0 || n_chunks > MAX_FORCED_CHUNKS)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "decode_attention: n_chunks %d is outside 0..%d", n_chunks,
                            MAX_FORCED_CHUNKS);
    decode_plan p;
    plan_kernel(ctx, a, &p);
    plan_chunks(ctx, a, n_chunks, &p);
    if (used)
        *used = p.n_chunks;
    /* Partials: [T * Hq, NC] (m, l) pairs and [T * Hq, NC, D] outputs. */
    const uint64_t vectors = (uint64_t)a->n_seq * (uint64_t)a->rows * (uint64_t)a->n_q_heads *
                             (uint64_t)p.n_chunks;
    cl_mem seq, acc, ml;
    st = scratch_grow(ctx, CLATTN_SCRATCH_DECODE_ACC, vectors * (uint64_t)p.d * 4u,
                      "decode attention: partial outputs [T * Hq, chunks, D]", &acc);
    if (st == CLATTN_OK)
        st = scratch_grow(ctx, CLATTN_SCRATCH_DECODE_ML, vectors * 8u,
                          "decode attention: (max, sum) [T * Hq, chunks]", &ml);
    if (st == CLATTN_OK)
        st = upload_sequences(ctx, a, &seq);
    if (st == CLATTN_OK)
        st = run_partial(ctx, a, &p, seq, acc, ml);
    if (st == CLATTN_OK)
        st = run_merge(ctx, a, &p, acc, ml);
    return st;
}

clattn_status clattn__lm_decode_attention(clattn_ctx *ctx, const clattn__decode_args *a)
{
    return clattn__lm_decode_attention_split(ctx, a, 0, NULL);
}
