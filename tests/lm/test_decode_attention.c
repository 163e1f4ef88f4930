/* test_decode_attention.c - clattn__lm_decode_attention (split-KV decode
 * attention over a KV cache, src/lm/decode_attention.c) against a
 * double-precision softmax(scale q.k) v over each new row's visible keys,
 * on the context's kernel family and, where the device runs both, on the
 * other one in a second context.
 *
 * Every cache position a call must not read (past len[s], other slots) is
 * NaN, so a read out of range shows up as a NaN output. A half cache is
 * compared against the reference on the half-rounded K and V (rounded on
 * the host here), so both caches get the same tolerance. */
#include "lm/lm.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Tolerance, relative to the case's largest |output| (outputs are convex
 * combinations of the values, uniform in [-1, 1)). The kernels sum up to
 * a chunk's keys (at most 4096) in float32 (unit roundoff 6e-8) and
 * exponentiate with ~1 ulp; on the long flat averages, whose outputs of
 * ~1e-2 are what is left after cancellation, that came to 2e-6 of the
 * magnitude (6.6e-6 when one chunk held all 32768 keys, which the
 * library no longer allows). 2e-5 leaves room for that, while a wrong
 * key, a missing chunk, a window off by one or a wrong max in the merge
 * moves outputs by
 * 1e-3 or more (one key of 4096 carries ~2.4e-4 of the weight, times a
 * value of order 1, on outputs of order 1e-2). */
#define TOL 2e-5

typedef struct dcase {
    const char *group;          /* the report line it counts under */
    int n_seq, rows, hq, hkv, d, cap, slots;
    int len[3], slot[3];
    int wl;                     /* window_left */
    float scale;                /* 0: 1 / sqrt(d) */
    bool f16;
    int chunks;                 /* forced chunk count; 0: the library's rule */
} dcase;

/* Worst error per report group and family. */
#define MAX_GROUPS 16
typedef struct group_stat {
    char name[48];
    int cases;
    double worst;               /* max err / magnitude */
    int max_chunks;
} group_stat;
static group_stat groups[MAX_GROUPS];
static int n_groups;

static group_stat *group_of(const char *family, const char *group)
{
    char name[48];
    snprintf(name, sizeof name, "%s/%s", family, group);
    for (int i = 0; i < n_groups; i++)
        if (strcmp(groups[i].name, name) == 0)
            return &groups[i];
    if (n_groups == MAX_GROUPS)
        return &groups[0];
    group_stat *g = &groups[n_groups++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    return g;
}

/* ---- host half rounding --------------------------------------------- */

/* float -> IEEE half bits, round to nearest even (NaN kept). */
static uint16_t to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t e = (x >> 23) & 0xffu, m = x & 0x7fffffu;
    if (e == 0xff)
        return (uint16_t)(sign | 0x7c00u | (m ? 0x200u : 0));
    int32_t he = (int32_t)e - 127 + 15;
    if (he >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (he <= 0) {
        if (he < -10)
            return (uint16_t)sign;
        m |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - he);
        uint32_t hm = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1)))
            hm++;
        return (uint16_t)(sign | hm);
    }
    uint32_t hm = m >> 13, rem = m & 0x1fffu;
    uint32_t h = sign | ((uint32_t)he << 10) | hm;
    if (rem > 0x1000u || (rem == 0x1000u && (hm & 1)))
        h++;            /* may carry into the exponent: still correct */
    return (uint16_t)h;
}

static float from_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    float f;
    if (e == 0) {
        f = ldexpf((float)m, -24);
        return sign ? -f : f;
    }
    uint32_t x = sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e - 15 + 127) << 23) | (m << 13));
    memcpy(&f, &x, 4);
    return f;
}

/* ---- one case --------------------------------------------------------- */

static cl_mem upload(clattn_ctx *ctx, const void *data, size_t bytes, const char *what)
{
    cl_mem m = NULL;
    clattn_status st = clattn__buffer_create(ctx, bytes, what, &m);
    if (st != CLATTN_OK) {
        fprintf(stderr, "FAIL: %s: %s\n", what, clattn_last_error());
        exit(1);
    }
    cl_int err = clEnqueueWriteBuffer(ctx->queue, m, CL_TRUE, 0, bytes, data, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "FAIL: writing %s: %d\n", what, err);
        exit(1);
    }
    return m;
}

static int cases_run;

/* Runs one case and returns the chunk count it ran with. */
static int32_t run_case(clattn_ctx *ctx, const char *family, const dcase *c)
{
    const int T = c->n_seq * c->rows, G = c->hq / c->hkv, D = c->d;
    const size_t qn = (size_t)T * c->hq * D;
    const size_t slot_n = (size_t)c->hkv * c->cap * D, cn = (size_t)c->slots * slot_n;
    const float scale = c->scale != 0.0f ? c->scale : 1.0f / sqrtf((float)D);
    float *q = test_fvec(qn), *out = test_fvec(qn);
    float *k = test_fvec(cn), *v = test_fvec(cn);
    uint16_t *kh = NULL, *vh = NULL;
    test_fill_uniform(q, qn, -1.0f, 1.0f);
    for (size_t i = 0; i < cn; i++)
        k[i] = v[i] = NAN;
    for (int s = 0; s < c->n_seq; s++)
        for (int h = 0; h < c->hkv; h++) {
            size_t o = (size_t)c->slot[s] * slot_n + (size_t)h * c->cap * D;
            test_fill_uniform(k + o, (size_t)c->len[s] * D, -1.0f, 1.0f);
            test_fill_uniform(v + o, (size_t)c->len[s] * D, -1.0f, 1.0f);
        }
    if (c->f16) {
        kh = malloc(cn * 2), vh = malloc(cn * 2);
        for (size_t i = 0; i < cn; i++) {
            kh[i] = to_half(k[i]), vh[i] = to_half(v[i]);
            k[i] = from_half(kh[i]), v[i] = from_half(vh[i]);
        }
    }
    for (size_t i = 0; i < qn; i++)
        out[i] = 12345.0f; /* any element left unwritten fails */

    clattn__kv_layer layer;
    size_t eb = c->f16 ? 2 : 4;
    layer.k = upload(ctx, c->f16 ? (void *)kh : (void *)k, cn * eb, "test k cache");
    layer.v = upload(ctx, c->f16 ? (void *)vh : (void *)v, cn * eb, "test v cache");
    cl_mem qm = upload(ctx, q, qn * 4, "test q"), om = upload(ctx, out, qn * 4, "test out");
    clattn__decode_args a = {c->n_seq, c->rows, c->hq, c->hkv, D, c->cap, c->f16, &layer,
                             c->slot, c->len, c->wl, scale, qm, om};
    int32_t used = 0;
    CHECK_OK(clattn__lm_decode_attention_split(ctx, &a, c->chunks, &used));
    cl_int err = clEnqueueReadBuffer(ctx->queue, om, CL_TRUE, 0, qn * 4, out, 0, NULL, NULL);
    CHECK(err == CL_SUCCESS, "reading out: %d", err);

    /* The reference: row r of sequence s at pos = len - rows + r sees
     * keys max(0, pos - wl) .. pos. */
    double worst = 0, mag = 0;
    size_t worst_i = 0;
    double *ref = test_dvec(qn), *sc = test_dvec((size_t)c->cap);
    for (int s = 0; s < c->n_seq; s++)
        for (int r = 0; r < c->rows; r++)
            for (int h = 0; h < c->hq; h++) {
                int pos = c->len[s] - c->rows + r;
                int lo = c->wl < 0 ? 0 : (pos - c->wl > 0 ? pos - c->wl : 0);
                size_t t = ((size_t)s * c->rows + r) * c->hq + h;
                const float *qp = q + t * D;
                const size_t kvo = (size_t)c->slot[s] * slot_n + (size_t)(h / G) * c->cap * D;
                double mx = -INFINITY, sum = 0;
                for (int j = lo; j <= pos; j++) {
                    double dd = 0;
                    for (int x = 0; x < D; x++)
                        dd += (double)qp[x] * k[kvo + (size_t)j * D + x];
                    sc[j] = dd * scale;
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = lo; j <= pos; j++)
                    sum += sc[j] = exp(sc[j] - mx);
                for (int x = 0; x < D; x++) {
                    double o = 0;
                    for (int j = lo; j <= pos; j++)
                        o += sc[j] * v[kvo + (size_t)j * D + x];
                    ref[t * D + x] = o / sum;
                }
            }
    bool finite = true;
    for (size_t i = 0; i < qn; i++) {
        double e = fabs((double)out[i] - ref[i]);
        if (!isfinite(out[i]))
            finite = false, worst_i = i, e = INFINITY;
        if (e > worst)
            worst = e, worst_i = finite ? i : worst_i;
        mag = fabs(ref[i]) > mag ? fabs(ref[i]) : mag;
    }
    double rel = worst / mag;
    CHECK(finite && rel <= TOL,
          "%s %s: n_seq %d rows %d Hq %d Hkv %d D %d len {%d %d %d} wl %d %s chunks %d: "
          "element %zu = %.9g, reference %.9g (error %.3g of magnitude %.3g, over %.1g)",
          family, c->group, c->n_seq, c->rows, c->hq, c->hkv, D, c->len[0],
          c->n_seq > 1 ? c->len[1] : 0, c->n_seq > 2 ? c->len[2] : 0, c->wl,
          c->f16 ? "f16" : "f32", used, worst_i, out[worst_i], ref[worst_i], worst, mag, TOL);
    group_stat *g = group_of(family, c->group);
    g->cases++;
    g->worst = rel > g->worst ? rel : g->worst;
    g->max_chunks = used > g->max_chunks ? used : g->max_chunks;
    if (c->chunks > 0)
        CHECK(used >= c->chunks, "forced %d chunks, ran %d", c->chunks, used);
    cases_run++;

    clReleaseMemObject(layer.k), clReleaseMemObject(layer.v);
    clReleaseMemObject(qm), clReleaseMemObject(om);
    free(q), free(out), free(k), free(v), free(kh), free(vh), free(ref), free(sc);
    return used;
}

/* One sequence in slot 0 of a single-slot cache with capacity len + 3. */
static dcase single(const char *group, int len, int rows, int hq, int hkv, int d, int wl,
                    bool f16)
{
    dcase c = {group, 1, rows, hq, hkv, d, len + 3, 1, {len}, {0}, wl, 0.0f, f16, 0};
    return c;
}

/* The cases are arranged to share kernel programs (one per family, head
 * size, cache type and query tile, i.e. Hq / Hkv * rows rounded to a power
 * of two): each costs 1-2 s to build on POCL, and the sweep needs about 14
 * per family. Every required value is covered by some case. */
/* CLATTN_TEST_SMALL (tools/check's oclgrind stage): a few short caches
 * reaching every kernel path (vector widths 4/8 and scalar, both cache
 * types, GQA, causal rows, windows, several and empty chunks, three
 * sequences) at sizes a simulator runs in seconds. */
static void small_sweep(clattn_ctx *ctx, const char *family)
{
    dcase c = single("small", 40, 2, 8, 2, 64, 7, false);
    c.chunks = 3;
    run_case(ctx, family, &c);
    c = single("small", 33, 1, 2, 1, 80, 5, true);
    run_case(ctx, family, &c);
    c = single("small", 20, 1, 2, 2, 3, -1, false);
    run_case(ctx, family, &c);
    c = (dcase){"small", 3, 1, 4, 2, 16, 50, 4, {45, 2, 9}, {2, 0, 3}, 10, 0.0f, true, 8};
    run_case(ctx, family, &c);
}

static void sweep(clattn_ctx *ctx, const char *family)
{
    dcase c;
    /* Cache lengths, one sequence, one new row (GQA 2, D 64). */
    static const int lens[] = {1, 2, 7, 64, 255, 1000, 4096};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        c = single("lengths", lens[i], 1, 4, 2, 64, -1, false);
        run_case(ctx, family, &c);
    }

    /* GQA ratios 1, 2, 4, 8 with Hkv 1..4 (D 64, 300 keys). */
    static const int gqa[][2] = {{2, 2}, {4, 4}, {4, 2}, {6, 3}, {8, 2}, {16, 4},
                                 {8, 1}, {24, 3}};
    for (size_t i = 0; i < sizeof gqa / sizeof gqa[0]; i++) {
        c = single("gqa", 300, 1, gqa[i][0], gqa[i][1], 64, -1, false);
        run_case(ctx, family, &c);
    }

    /* Head sizes, float and half caches, 2 new rows; 1 and 113 take the
     * scalar path of the kernels. */
    static const int dims[] = {64, 80, 128, 256, 1, 113};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        for (int f16 = 0; f16 < 2; f16++) {
            if (dims[i] % 4 != 0 && f16)
                continue;
            c = single("head sizes", dims[i] % 4 != 0 ? 100 : 513, 2, 4, 2, dims[i], -1, f16);
            run_case(ctx, family, &c);
        }

    /* New rows 1, 2, 4 (causal among them) against windows -1, 0, 5, 100,
     * GQA 4; a sharper softmax (scale 1) on some, a half cache on one. */
    static const int rows[] = {1, 2, 4}, wls[] = {-1, 0, 5, 100};
    for (size_t i = 0; i < 3; i++)
        for (size_t w = 0; w < 4; w++) {
            c = single("rows x window", 777, rows[i], 8, 2, 64, wls[w], i == 0 && w == 2);
            if (w == 1)
                c.scale = 1.0f;
            run_case(ctx, family, &c);
        }

    /* Three sequences of different lengths in slots {2, 0, 1} of a
     * 4-slot cache with spare capacity; every window, both caches, 1 or 2
     * new rows. */
    for (size_t w = 0; w < 4; w++)
        for (int f16 = 0; f16 < 2; f16++) {
            int r = w % 2 == 0 ? 2 : 1;
            c = (dcase){"3 sequences", 3, r, r == 2 ? 8 : 16, 4, w < 2 ? 64 : 80, 1100, 4,
                        {1000, 3, 77}, {2, 0, 1}, wls[w], 0.0f, f16, 0};
            run_case(ctx, family, &c);
        }

    /* Forced chunk counts: one chunk, odd splits, chunks of 1-4 keys, and
     * more chunks than a short sequence has keys (empty chunks). */
    static const int forced[] = {1, 3, 7, 300, 1500};
    for (size_t i = 0; i < sizeof forced / sizeof forced[0]; i++) {
        c = (dcase){"forced chunks", 3, 2, 4, 2, 64, 1100, 3, {1000, 2, 77}, {1, 2, 0},
                    i == 2 ? 100 : -1, 0.0f, i == 3, forced[i]};
        run_case(ctx, family, &c);
    }

    /* Long caches with few heads: D 256 at 32768 keys once (half), D 64
     * over 2 new rows, D 80 windowed. */
    c = single("32768 keys", 32768, 1, 4, 1, 256, -1, true);
    run_case(ctx, family, &c);
    c = single("32768 keys", 32768, 2, 4, 1, 64, -1, false);
    run_case(ctx, family, &c);
    c = single("32768 keys", 32768, 1, 4, 1, 80, 100, false);
    run_case(ctx, family, &c);
    /* One chunk asked for over 32768 keys: the library splits anyway,
     * into chunks of at most 4096 keys (a float sum's error grows with its
     * length) and, where the driver cuts loops short (llvmpipe), by its
     * count of every loop's iterations. (That count is an upper bound: the
     * kernels' inner loops have constant trip counts, and with the split
     * turned off this case still came out right on llvmpipe 22.3, whose
     * unrolled loops do not count. The bound stays, as unrolling is the
     * compiler's choice.) */
    c = single("32768 keys", 32768, 1, 4, 1, 64, -1, false);
    c.chunks = 1;
    int32_t used = run_case(ctx, family, &c);
    CHECK(used >= 8, "%s: one chunk asked for over 32768 keys ran as %d", family, used);
}

/* Bad arguments: each fails with CLATTN_ERR_INVALID_ARG and a message. */
static void error_cases(clattn_ctx *ctx)
{
    const int d = 64, cap = 16, hq = 4, hkv = 2;
    cl_mem k = NULL, v = NULL, q = NULL, o = NULL;
    CHECK_OK(clattn__buffer_create(ctx, (size_t)2 * hkv * cap * d * 4, "k", &k));
    CHECK_OK(clattn__buffer_create(ctx, (size_t)2 * hkv * cap * d * 4, "v", &v));
    CHECK_OK(clattn__buffer_create(ctx, (size_t)2 * hq * d * 4, "q", &q));
    CHECK_OK(clattn__buffer_create(ctx, (size_t)2 * hq * d * 4, "o", &o));
    clattn__kv_layer layer = {k, v};
    int32_t slot[2] = {1, 0}, len[2] = {5, 9};
    const clattn__decode_args good = {2, 1, hq, hkv, d, cap, false, &layer, slot, len, -1,
                                      0.125f, q, o};
    clattn__decode_args a = good;
    CHECK_OK(clattn__lm_decode_attention(ctx, &a));

    CHECK_STATUS(clattn__lm_decode_attention(NULL, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("ctx is NULL");
    CHECK_STATUS(clattn__lm_decode_attention(ctx, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("args is NULL");
    a.cache = NULL;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("cache");
    a = good, a.slot = NULL;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("slot or len is NULL");
    a = good, a.q = NULL;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("q or out is NULL");
    /* rows > len */
    a = good, a.rows = 6;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("len[0] = 5 must be in rows..capacity");
    /* len > capacity */
    int32_t long_len[2] = {5, 17};
    a = good, a.len = long_len;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("len[1] = 17");
    /* slot out of range (2 slots) */
    int32_t bad_slot[2] = {1, 2}, neg_slot[2] = {-1, 0};
    a = good, a.slot = bad_slot;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("slot[1] = 2 is outside the cache's 0..1");
    a.slot = neg_slot;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("slot[0] = -1");
    /* D > 256, D < 1 */
    a = good, a.head_dim = 257;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("head_dim 257 is outside 1..256");
    a.head_dim = 0;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("head_dim 0");
    /* GQA that does not divide, bad counts, window, scale */
    a = good, a.n_q_heads = 3;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("not a multiple of n_kv_heads");
    a = good, a.n_seq = 0;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("must all be >= 1");
    a = good, a.window_left = -2;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("window_left -2");
    a = good, a.scale = NAN;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("not finite");
    /* Buffers too small for the shapes: q for 3 rows, a cache of no slot. */
    a = good, a.n_seq = 3;
    int32_t three[3] = {0, 1, 0}, lens3[3] = {4, 4, 4};
    a.slot = three, a.len = lens3;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("q (");
    a = good, a.capacity = 64;
    CHECK_STATUS(clattn__lm_decode_attention(ctx, &a), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("outside the cache's 0..-1");
    a = good;
    CHECK_STATUS(clattn__lm_decode_attention_split(ctx, &a, -1, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("n_chunks -1");
    /* The context still works. */
    CHECK_OK(clattn__lm_decode_attention(ctx, &a));
    CHECK_OK(clattn_ctx_finish(ctx));
    clReleaseMemObject(k), clReleaseMemObject(v), clReleaseMemObject(q), clReleaseMemObject(o);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void)
{
    double t0 = now();
    test_seed(4242);
    clattn_ctx *ctx = test_ctx();
    const char *primary = clattn_ctx_attention_kernel(ctx);
    /* The other family in a second context; llvmpipe runs "tiled"
     * whatever is asked, so there it is the same family and skipped. */
    clattn_ctx_params op = clattn_ctx_params_default();
    op.attention_kernel = strcmp(primary, "tiled") == 0 ? "cpu" : "tiled";
    clattn_ctx *other = NULL;
    CHECK_OK(clattn_ctx_create(&op, &other));
    if (other && strcmp(clattn_ctx_attention_kernel(other), op.attention_kernel) != 0) {
        clattn_ctx_destroy(other);
        other = NULL;
    }
    const char *small_env = getenv("CLATTN_TEST_SMALL");
    void (*run_sweep)(clattn_ctx *, const char *) =
        small_env && small_env[0] == '1' ? small_sweep : sweep;
    run_sweep(ctx, primary);
    if (other)
        run_sweep(other, op.attention_kernel);
    error_cases(ctx);
    for (int i = 0; i < n_groups; i++)
        fprintf(stderr, "  %-28s %3d cases, max error %.2e of the output magnitude, up to %d "
                "chunks\n", groups[i].name, groups[i].cases, groups[i].worst,
                groups[i].max_chunks);
    fprintf(stderr, "%d decode attention cases in %.1f s\n", cases_run, now() - t0);
    clattn_ctx_destroy(other);
    clattn_ctx_destroy(ctx);
    return test_summary("test_decode_attention");
}
