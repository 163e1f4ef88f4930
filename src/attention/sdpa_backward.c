/* sdpa_backward.c - clattn_sdpa_backward: argument checks (shared with
 * the forward through clattn__sdpa_check), kernel specialisation, and the
 * sequence of kernels of the flash-style backward.
 *
 * The kernels live in cl/attention/: sdpa_bwd_common.cl's header comment is
 * the contract for the argument lists used here, and the family files
 * (sdpa_bwd_cpu.cl, sdpa_bwd_tiled.cl) give their NDRanges. One call runs:
 *   [cosine] normalise q and k rows (keeping the norms)
 *   prep     Delta = rowsum(dO * O), lse in score units, padded rows
 *   tiled family (GPUs):
 *     dkdv   parallel over key rows: dK, dV
 *     dq     parallel over query rows: dQ, and dS for dbias
 *   cpu family:
 *     panels q and dO transposed into query panels
 *     cpu    parallel over key rows and key chunks: dK, dV, a partial dQ
 *            per chunk, dS for dbias
 *     reduce the partial dQ summed into dq
 *   [dbias]  dS summed over the bias's broadcast dimensions
 *   [cosine] dq, dk through the normalisation */
#include "attention/attention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One backward program per kernel family (indexed by clattn_ctx.
 * attention_variant), so a context compiles only its own. BWD_CPU tells
 * sdpa_bwd_common.cl which family follows it (the units of the lse rows it
 * writes); the backward always reads kv_len (clattn__sdpa_aux_buffers fills
 * it), hence HAS_KV_LEN=1 for sdpa_common.cl's clattn_kv_limit. */
static const clattn__program_spec BWD_PROGRAMS[2] = {
    [CLATTN_ATTN_CPU] = {{"attention/sdpa_common.cl", "attention/sdpa_bwd_common.cl",
                          "attention/sdpa_bwd_cpu.cl", NULL},
                         "-DBWD_CPU=1 -DHAS_KV_LEN=1"},
    [CLATTN_ATTN_TILED] = {{"attention/sdpa_common.cl", "attention/sdpa_bwd_common.cl",
                            "attention/sdpa_bwd_tiled.cl", NULL},
                           "-DBWD_CPU=0 -DHAS_KV_LEN=1"},
};

/* The kernels this file launches; the first four are in both programs. */
enum {
    BWD_K_PREP, BWD_K_L2, BWD_K_L2_BACKWARD, BWD_K_DBIAS,
    BWD_K_PANELS, BWD_K_CPU, BWD_K_DQ_REDUCE, /* CPU family only */
    BWD_K_DKDV, BWD_K_DQ,                     /* tiled family only */
    BWD_K_COUNT
};

#define CPU_PROG (&BWD_PROGRAMS[CLATTN_ATTN_CPU])
#define TILED_PROG (&BWD_PROGRAMS[CLATTN_ATTN_TILED])
static const clattn__kernel_spec BWD_KERNELS[2][BWD_K_COUNT] = {
    [CLATTN_ATTN_CPU] = {[BWD_K_PREP] = {CPU_PROG, "sdpa_bwd_prep"},
                         [BWD_K_L2] = {CPU_PROG, "sdpa_bwd_l2_normalize"},
                         [BWD_K_L2_BACKWARD] = {CPU_PROG, "sdpa_bwd_l2_backward"},
                         [BWD_K_DBIAS] = {CPU_PROG, "sdpa_bwd_dbias_reduce"},
                         [BWD_K_PANELS] = {CPU_PROG, "sdpa_bwd_panels"},
                         [BWD_K_CPU] = {CPU_PROG, "sdpa_bwd_cpu"},
                         [BWD_K_DQ_REDUCE] = {CPU_PROG, "sdpa_bwd_dq_reduce"},
                         [BWD_K_DKDV] = {NULL, NULL},
                         [BWD_K_DQ] = {NULL, NULL}},
    [CLATTN_ATTN_TILED] = {[BWD_K_PREP] = {TILED_PROG, "sdpa_bwd_prep"},
                           [BWD_K_L2] = {TILED_PROG, "sdpa_bwd_l2_normalize"},
                           [BWD_K_L2_BACKWARD] = {TILED_PROG, "sdpa_bwd_l2_backward"},
                           [BWD_K_DBIAS] = {TILED_PROG, "sdpa_bwd_dbias_reduce"},
                           [BWD_K_PANELS] = {NULL, NULL},
                           [BWD_K_CPU] = {NULL, NULL},
                           [BWD_K_DQ_REDUCE] = {NULL, NULL},
                           [BWD_K_DKDV] = {TILED_PROG, "sdpa_bwd_dkdv_tiled"},
                           [BWD_K_DQ] = {TILED_PROG, "sdpa_bwd_dq_tiled"}},
};
#undef CPU_PROG
#undef TILED_PROG

/* ---- tunables ------------------------------------------------------------ */

/* CPU kernel: groups of 6 key rows (12 AVX2 accumulators, as the
 * forward), 64 queries per block, one work-item per work-group (each is a
 * long task; POCL spreads work-groups over its threads). */
#define CPU_ROWS 6
#define CPU_BLOCK 64
#define CPU_LOCAL 1

/* Row groups per work-item, kept so that its private rows stay within
 * 6144 floats (24 KiB, the forward's budget).
 * Must match the defaults in the kernel file; passed explicitly. */
static int cpu_groups(int width)
{
    int g = 6144 / (CPU_ROWS * width);
    return g > 8 ? 8 : g < 1 ? 1 : g;
}

typedef struct tiles {
    int tpr;               /* work-items per owned row */
    int dq_q, dq_k;        /* dq: owned query rows, keys per local tile */
    int kv_k, kv_q;        /* dkdv: owned key rows, queries per local tile */
} tiles;

/* Tiled kernels: 32-row tiles with 4 work-items per row, shrunk until the
 * local arrays (see cl/attention/sdpa_bwd_tiled.cl) fit the device. */
static tiles tiled_tunables(const clattn_ctx *ctx, int d, int dv)
{
    tiles t = {4, 32, 32, 32, 32};
    size_t wg = ctx->info.max_work_group_size;
    uint64_t local = ctx->info.local_mem_bytes;
    while ((size_t)(t.dq_q * t.tpr) > wg && t.dq_q > 1)
        t.dq_q /= 2;
    while ((size_t)(t.kv_k * t.tpr) > wg && t.kv_k > 1)
        t.kv_k /= 2;
    for (;;) {
        uint64_t bytes = 4ull * ((uint64_t)t.dq_k * (uint64_t)(d + dv + 2) +
                                 (uint64_t)t.dq_q * (uint64_t)(t.dq_k + 1));
        if (bytes <= local || (t.dq_k <= t.tpr && t.dq_q <= 1))
            break;
        if (t.dq_k > t.tpr)
            t.dq_k /= 2;
        else
            t.dq_q /= 2;
    }
    for (;;) {
        uint64_t bytes = 4ull * ((uint64_t)t.kv_q * (uint64_t)(d + dv + 4) +
                                 2ull * (uint64_t)t.kv_k * (uint64_t)(t.kv_q + 1));
        if (bytes <= local || (t.kv_q <= t.tpr && t.kv_k <= 1))
            break;
        if (t.kv_q > t.tpr)
            t.kv_q /= 2;
        else
            t.kv_k /= 2;
    }
    return t;
}

static bool cpu_family(const clattn_ctx *ctx)
{
    return ctx->attention_variant == CLATTN_ATTN_CPU;
}

/* What selects the backward's kernels for one problem: the
 * specialisation (head sizes, bias) and, with a mask_mod snippet, the
 * program built for it. */
typedef struct bwd_kernels {
    const clattn_ctx *ctx;  /* for the tunables in bwd_options */
    int d, dv;
    bool bias;
    cl_program snippets;    /* NULL without mask_mod */
} bwd_kernels;

/* Compiler options of the context's family for head sizes d, dv, with or
 * without bias (the family itself is in the program spec). malloc'd. */
static char *bwd_options(const clattn_ctx *ctx, int d, int dv, bool bias)
{
    if (cpu_family(ctx))
        return clattn__aprintf("-DHEAD_DIM=%d -DVALUE_DIM=%d -DHAS_BIAS=%d "
                               "-DROWS_PER_ITEM=%d -DKV_GROUPS=%d -DQUERY_BLOCK=%d "
                               "-DCPU_LOCAL=%d",
                               d, dv, bias, CPU_ROWS, cpu_groups(2 * (d + dv)), CPU_BLOCK,
                               CPU_LOCAL);
    tiles t = tiled_tunables(ctx, d, dv);
    return clattn__aprintf("-DHEAD_DIM=%d -DVALUE_DIM=%d -DHAS_BIAS=%d "
                           "-DTPR=%d -DDQ_TILE_Q=%d -DDQ_TILE_K=%d -DKV_TILE_K=%d "
                           "-DKV_TILE_Q=%d",
                           d, dv, bias, t.tpr, t.dq_q, t.dq_k, t.kv_k, t.kv_q);
}

/* make_options of clattn__kernel_variant, called only on a miss. */
static char *bwd_make_options(const void *arg)
{
    const bwd_kernels *bk = arg;
    return bwd_options(bk->ctx, bk->d, bk->dv, bk->bias);
}

/* clattn__kernel_variant's key: what bwd_options encodes (the tunables
 * follow from the context and the head sizes), the family, and bit 0 so
 * that the key is never 0. */
static uint64_t bwd_variant(const clattn_ctx *ctx, int d, int dv, bool bias)
{
    return (uint64_t)d << 32 | (uint64_t)dv << 16 | (uint64_t)ctx->attention_variant << 4 |
           (uint64_t)bias << 1 | 1u;
}

/* The kernels for problem pr. With mask_mod its program (specialised
 * like the others, plus the snippet, built or loaded once per context and
 * snippet) is fetched now; without, nothing happens until a kernel is
 * asked for. */
static clattn_status bwd_kernels_init(clattn_ctx *ctx, const clattn__sdpa_problem *pr,
                                      bwd_kernels *bk)
{
    *bk = (bwd_kernels){ctx, pr->D, pr->Dv, pr->has_bias, NULL};
    if (!pr->mask_mod)
        return CLATTN_OK;
    char *options = bwd_options(ctx, pr->D, pr->Dv, pr->has_bias);
    char *prefix = clattn__sdpa_snippet_prefix(NULL, pr->mask_mod);
    clattn_status st;
    if (!options || !prefix)
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    else
        st = clattn__program_get(ctx, &BWD_PROGRAMS[ctx->attention_variant], options, prefix,
                                 &bk->snippets);
    free(options);
    free(prefix);
    return st;
}

/* Kernel `which` (BWD_K_*) of the context's family: resolved once per
 * context and specialisation without a snippet, so a repeated call formats
 * no options; with one, from the snippet program's kernel table. */
static clattn_status bwd_kernel(clattn_ctx *ctx, const bwd_kernels *bk, int which, cl_kernel *k)
{
    const clattn__kernel_spec *spec = &BWD_KERNELS[ctx->attention_variant][which];
    if (bk->snippets)
        return clattn__kernel_get(ctx, bk->snippets, spec->name, k);
    return clattn__kernel_variant(ctx, spec, bwd_variant(ctx, bk->d, bk->dv, bk->bias),
                                  bwd_make_options, bk, k);
}

/* ---- argument checks ------------------------------------------------------ */

static const char *FN = "sdpa_backward";

static bool shape_is(const clattn_tensor *t, int nd, const int64_t *shape)
{
    if (t->ndim != nd)
        return false;
    for (int i = 0; i < nd; i++)
        if (t->shape[i] != shape[i])
            return false;
    return true;
}

/* t (name) must be non-NULL (unless optional), of ctx, and of the shape. */
static clattn_status check_shape(clattn_ctx *ctx, const char *name, const clattn_tensor *t,
                                 int nd, const int64_t *shape, const char *layout)
{
    if (!t)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s is NULL", FN, name);
    if (t->ctx != ctx)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s belongs to another context",
                            FN, name);
    if (!shape_is(t, nd, shape)) {
        char got[96], want[96];
        clattn__shape_str(t->shape, t->ndim, got, sizeof got);
        clattn__shape_str(shape, nd, want, sizeof want);
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s %s must be %s = %s", FN, name,
                            got, layout, want);
    }
    return CLATTN_OK;
}

/* Every gradient output must differ from every input and from the other
 * outputs (they are written while the inputs are still read). */
static clattn_status check_aliasing(clattn_ctx *ctx, const clattn_tensor *const *in,
                                    const char *const *in_names, int n_in,
                                    const clattn_tensor *const *grads,
                                    const char *const *grad_names)
{
    for (int g = 0; g < 4; g++) {
        if (!grads[g])
            continue;
        for (int i = 0; i < n_in; i++)
            if (in[i] && in[i]->mem == grads[g]->mem)
                return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                    "%s: grads->%s must not alias %s", FN, grad_names[g],
                                    in_names[i]);
        for (int h = g + 1; h < 4; h++)
            if (grads[h] && grads[h]->mem == grads[g]->mem)
                return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                    "%s: grads->%s and grads->%s must be different tensors",
                                    FN, grad_names[g], grad_names[h]);
    }
    return CLATTN_OK;
}

static clattn_status check_args(clattn_ctx *ctx, const clattn_tensor *q, const clattn_tensor *k,
                                const clattn_tensor *v, const clattn_tensor *out,
                                const clattn_tensor *lse, const clattn_tensor *dout,
                                const clattn_sdpa_params *p, const clattn_sdpa_grads *g,
                                clattn__sdpa_problem *pr)
{
    if (!g)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: grads is NULL", FN);
    if (p->score_mod)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: score_mod (also set by the ALiBi, soft-capping and "
                            "relative-position presets) is not supported: clattn cannot "
                            "differentiate a user snippet; express a fixed additive score "
                            "change as a bias tensor instead",
                            FN);
    clattn_status st = clattn__sdpa_check(ctx, FN, q, k, v, out, p, pr);
    if (st != CLATTN_OK)
        return st;
    const clattn_tensor *in4[4] = {q, k, v, out};
    const char *in4_names[4] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; i++)
        if (in4[i]->ctx != ctx)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s belongs to another context",
                                FN, in4_names[i]);
    const int64_t sl[3] = {pr->B, pr->Hq, pr->N};
    const int64_t so[4] = {pr->B, pr->Hq, pr->N, pr->Dv};
    const int64_t sq[4] = {pr->B, pr->Hq, pr->N, pr->D};
    const int64_t sk[4] = {pr->B, pr->Hkv, pr->M, pr->D};
    const int64_t sv[4] = {pr->B, pr->Hkv, pr->M, pr->Dv};
    st = check_shape(ctx, "lse", lse, 3, sl, "[B, Hq, N] (the forward's p->lse output)");
    if (st == CLATTN_OK)
        st = check_shape(ctx, "dout", dout, 4, so, "[B, Hq, N, Dv]");
    if (st == CLATTN_OK && g->dq)
        st = check_shape(ctx, "grads->dq", g->dq, 4, sq, "[B, Hq, N, D] (the shape of q)");
    if (st == CLATTN_OK && g->dk)
        st = check_shape(ctx, "grads->dk", g->dk, 4, sk, "[B, Hkv, M, D] (the shape of k)");
    if (st == CLATTN_OK && g->dv)
        st = check_shape(ctx, "grads->dv", g->dv, 4, sv, "[B, Hkv, M, Dv] (the shape of v)");
    if (st == CLATTN_OK && g->dbias) {
        if (!p->bias)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: grads->dbias is given but p->bias is NULL", FN);
        st = check_shape(ctx, "grads->dbias", g->dbias, p->bias->ndim, p->bias->shape,
                         "the shape of p->bias");
    }
    if (st != CLATTN_OK)
        return st;
    const clattn_tensor *in[8] = {q, k, v, out, lse, dout, p->bias, p->mod_buffer};
    const char *in_names[8] = {"q", "k", "v", "out", "lse", "dout", "p->bias", "p->mod_buffer"};
    const clattn_tensor *grads[4] = {g->dq, g->dk, g->dv, g->dbias};
    const char *grad_names[4] = {"dq", "dk", "dv", "dbias"};
    return check_aliasing(ctx, in, in_names, 8, grads, grad_names);
}

/* ---- kernels ------------------------------------------------------------------ */

/* Everything the gradient kernels take (BWD_ARGS in the kernel file). */
typedef struct bwd_buffers {
    cl_mem q, qt, k, v, dout, dot, dl;
} bwd_buffers;

/* The outputs of one gradient kernel (g1..g4 of BWD_ARGS; NULL: not
 * written, a dummy is passed). */
typedef struct bwd_outputs {
    cl_mem g[4];
    int chunks;
} bwd_outputs;

static clattn_status set_bwd_args(clattn_ctx *ctx, cl_kernel k, const bwd_buffers *b,
                                  const bwd_outputs *o, cl_mem dummy, int np,
                                  const clattn__sdpa_problem *pr)
{
    cl_mem g[4];
    cl_int flags = 0;
    for (int i = 0; i < 4; i++) {
        g[i] = o->g[i] ? o->g[i] : dummy;
        flags |= o->g[i] ? 1 << i : 0;
    }
    const cl_long sb = pr->bias_sb, sh = pr->bias_sh, sn = pr->bias_sn;
    const cl_int bb = pr->B, hq = pr->Hq, hkv = pr->Hkv, n = pr->N, m = pr->M, a_np = np;
    const cl_int wl = pr->wl, wr = pr->wr, chunks = o->chunks;
    const cl_float scale = pr->scale;
    return CLATTN_SET_ARGS(
        ctx, k, "attention backward", CLATTN_KARG(b->q), CLATTN_KARG(b->qt), CLATTN_KARG(b->k),
        CLATTN_KARG(b->v), CLATTN_KARG(b->dout), CLATTN_KARG(b->dot), CLATTN_KARG(b->dl),
        CLATTN_KARG(g[0]), CLATTN_KARG(g[1]), CLATTN_KARG(g[2]), CLATTN_KARG(g[3]),
        CLATTN_KARG(pr->bias), CLATTN_KARG(sb), CLATTN_KARG(sh), CLATTN_KARG(sn),
        CLATTN_KARG(pr->kv_len), CLATTN_KARG(pr->mod_buf), CLATTN_KARG(pr->p[0]),
        CLATTN_KARG(pr->p[1]), CLATTN_KARG(pr->p[2]), CLATTN_KARG(pr->p[3]), CLATTN_KARG(bb),
        CLATTN_KARG(hq), CLATTN_KARG(hkv), CLATTN_KARG(n), CLATTN_KARG(m), CLATTN_KARG(a_np),
        CLATTN_KARG(scale), CLATTN_KARG(wl), CLATTN_KARG(wr), CLATTN_KARG(flags),
        CLATTN_KARG(chunks));
}

/* Runs kernel `which` with the n plain arguments args (CLATTN_KARG). */
static clattn_status run_kernel(clattn_ctx *ctx, const bwd_kernels *bk, int which,
                                const clattn__karg *args, size_t n, cl_uint dims,
                                const size_t *global, const size_t *local)
{
    const char *name = BWD_KERNELS[ctx->attention_variant][which].name;
    cl_kernel k;
    clattn_status st = bwd_kernel(ctx, bk, which, &k);
    if (st == CLATTN_OK)
        st = clattn__set_args(ctx, k, 0, args, n, name);
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, dims, global, local, name) : st;
}

/* x [bh, rows, width] -> panels of pb rows in a scratch slot. */
static clattn_status make_panels(clattn_ctx *ctx, const bwd_kernels *bk, cl_mem x, int bh, int rows,
                                 int width, int pb, int slot, const char *what, cl_mem *out)
{
    size_t rp = clattn__round_up((size_t)rows, (size_t)pb);
    clattn_status st = clattn__scratch(ctx, slot, (size_t)bh * rp * (size_t)width * sizeof(float),
                                       what, out);
    if (st != CLATTN_OK)
        return st;
    cl_int a_bh = bh, a_rows = rows, a_w = width, a_pb = pb;
    const clattn__karg args[6] = {CLATTN_KARG(x), CLATTN_KARG(*out), CLATTN_KARG(a_bh),
                                  CLATTN_KARG(a_rows), CLATTN_KARG(a_w), CLATTN_KARG(a_pb)};
    size_t global[3] = {rp, (size_t)width, (size_t)bh};
    return run_kernel(ctx, bk, BWD_K_PANELS, args, 6, 3, global, NULL);
}

/* Cosine score: y = x / max(|x|, 1e-12) into slot, norms into norm_slot. */
static clattn_status normalize(clattn_ctx *ctx, const bwd_kernels *bk, cl_mem x, size_t rows, int d,
                               int slot, int norm_slot, cl_mem *y, cl_mem *norms)
{
    clattn_status st = clattn__scratch(ctx, slot, rows * (size_t)d * sizeof(float),
                                       "cosine attention: normalised copy", y);
    if (st == CLATTN_OK)
        st = clattn__scratch(ctx, norm_slot, rows * sizeof(float),
                             "cosine attention backward: row norms", norms);
    if (st != CLATTN_OK)
        return st;
    cl_int r = (cl_int)rows;
    const clattn__karg args[4] = {CLATTN_KARG(x), CLATTN_KARG(*y), CLATTN_KARG(*norms),
                                  CLATTN_KARG(r)};
    size_t local = 64;
    return run_kernel(ctx, bk, BWD_K_L2, args, 4, 1, &rows, &local);
}

/* In place: dx = the gradient through the normalisation of dy (= dx). */
static clattn_status normalize_backward(clattn_ctx *ctx, const bwd_kernels *bk, cl_mem y,
                                        cl_mem norms, cl_mem dx, size_t rows)
{
    cl_int r = (cl_int)rows;
    const clattn__karg args[5] = {CLATTN_KARG(y), CLATTN_KARG(norms), CLATTN_KARG(dx),
                                  CLATTN_KARG(dx), CLATTN_KARG(r)};
    size_t local = 64;
    return run_kernel(ctx, bk, BWD_K_L2_BACKWARD, args, 5, 1, &rows, &local);
}

static clattn_status zero_fill(clattn_ctx *ctx, cl_mem buf, size_t bytes)
{
    const cl_float zero = 0.0f;
    cl_int err = clEnqueueFillBuffer(ctx->queue, buf, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, "clEnqueueFillBuffer");
}

static clattn_status run_bwd_kernel(clattn_ctx *ctx, const bwd_kernels *bk, int which,
                                    const bwd_buffers *b, const bwd_outputs *o, cl_mem dummy,
                                    int np, const clattn__sdpa_problem *pr, const size_t *global,
                                    const size_t *local)
{
    const char *name = BWD_KERNELS[ctx->attention_variant][which].name;
    cl_kernel k;
    clattn_status st = bwd_kernel(ctx, bk, which, &k);
    if (st == CLATTN_OK)
        st = set_bwd_args(ctx, k, b, o, dummy, np, pr);
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, 2, global, local, name) : st;
}

/* Loop iterations of one invocation of each tiled gradient kernel, for
 * drivers with a loop budget (clattn_ctx.loop_budget, Mesa's llvmpipe).
 * Per tile of the other side: the two local-tile loads, the d loops of S
 * and dP (D + Dv), the per-row output loops (the loops over one tile's
 * rows inside them are unrolled there); dkdv runs over the queries of
 * every query head sharing its kv head. On llvmpipe this bounds the real
 * count from above: D = 64 ran correctly at N = M = 8192 (dq 47.9K,
 * dkdv 52.2K) and failed at N = 16384 (dkdv 104K) and M = 16384 (dq
 * 95.7K); D = 256 ran at N = M = 512 (39.2K, 43.4K) and failed at 1024
 * (78.5K, 86.8K). */
static bool tiled_fits_budget(const clattn_ctx *ctx, const clattn__sdpa_problem *pr)
{
    if (ctx->loop_budget == 0)
        return true;
    tiles t = tiled_tunables(ctx, pr->D, pr->Dv);
    int64_t d = pr->D, dv = pr->Dv, dpt = clattn__ceil_div(d, t.tpr), vpt = clattn__ceil_div(dv, t.tpr);
    int64_t dq_wg = (int64_t)t.dq_q * t.tpr, kv_wg = (int64_t)t.kv_k * t.tpr;
    int64_t dq_tile = clattn__ceil_div((int64_t)t.dq_k * d, dq_wg) + clattn__ceil_div((int64_t)t.dq_k * dv, dq_wg) +
                      d + dv + t.dq_k / t.tpr + dpt + 3;
    int64_t kv_tile = clattn__ceil_div((int64_t)t.kv_q * d, kv_wg) + clattn__ceil_div((int64_t)t.kv_q * dv, kv_wg) +
                      clattn__ceil_div(t.kv_q, kv_wg) + d + dv + t.kv_q / t.tpr + vpt + dpt + 3;
    int64_t dq_iters = clattn__ceil_div(pr->M, t.dq_k) * dq_tile;
    int64_t kv_iters = (int64_t)(pr->Hq / pr->Hkv) * clattn__ceil_div(pr->N, t.kv_q) * kv_tile;
    int64_t limit = ctx->loop_budget / 10 * 9; /* as the forward's margin */
    return dq_iters <= limit && kv_iters <= limit;
}

/* One tiled gradient kernel: `tile` owned rows of `rows` per work-group,
 * tpr work-items per row, one grid row per (batch, head). */
static clattn_status run_tiled_kernel(clattn_ctx *ctx, const bwd_kernels *bk, int which,
                                      const bwd_buffers *b, cl_mem g1, cl_mem g2, cl_mem dummy,
                                      int np, const clattn__sdpa_problem *pr, int rows, int tile,
                                      int tpr, int heads)
{
    bwd_outputs o = {{g1, g2, NULL, NULL}, 1};
    size_t global[2] = {clattn__round_up((size_t)rows, (size_t)tile) * (size_t)tpr,
                        (size_t)pr->B * (size_t)heads};
    size_t local[2] = {(size_t)tile * (size_t)tpr, 1};
    return run_bwd_kernel(ctx, bk, which, b, &o, dummy, np, pr, global, local);
}

/* Tiled family: the dkdv kernel (key-parallel) and the dq kernel
 * (query-parallel, also writing dS for dbias). */
static clattn_status run_tiled(clattn_ctx *ctx, const bwd_kernels *bk, const bwd_buffers *b, int np,
                               const clattn__sdpa_problem *pr, cl_mem dq, cl_mem dk, cl_mem dv,
                               cl_mem ds, cl_mem dummy)
{
    tiles t = tiled_tunables(ctx, pr->D, pr->Dv);
    clattn_status st = CLATTN_OK;
    if (dk || dv)
        st = run_tiled_kernel(ctx, bk, BWD_K_DKDV, b, dk, dv, dummy, np, pr, pr->M,
                              t.kv_k, t.tpr, pr->Hkv);
    if (st == CLATTN_OK && (dq || ds))
        st = run_tiled_kernel(ctx, bk, BWD_K_DQ, b, dq, ds, dummy, np, pr, pr->N,
                              t.dq_q, t.tpr, pr->Hq);
    return st;
}

/* Key chunks per (batch, kv head) of the CPU kernel, each with its own
 * partial dQ [B, Hq, N, D]: enough work-items to keep every core busy
 * (8 per compute unit, at least 16, over all heads; more only add partials
 * to zero and sum), at most the number of key blocks, and at most 64 MiB
 * of partials (or one chunk, which accumulates in dq directly). */
static int cpu_chunks(const clattn_ctx *ctx, const clattn__sdpa_problem *pr)
{
    size_t rows = (size_t)CPU_ROWS * (size_t)cpu_groups(2 * (pr->D + pr->Dv));
    size_t blocks = ((size_t)pr->M + rows - 1) / rows;
    size_t heads = (size_t)pr->B * (size_t)pr->Hkv;
    size_t tasks = 8 * (size_t)ctx->info.compute_units;
    tasks = tasks < 16 ? 16 : tasks;
    size_t chunks = (tasks + heads - 1) / heads;
    size_t slice = (size_t)pr->B * (size_t)pr->Hq * (size_t)pr->N * (size_t)pr->D * sizeof(float);
    if (chunks > blocks)
        chunks = blocks;
    while (chunks > 1 && chunks * slice > ((size_t)64 << 20))
        chunks /= 2;
    return chunks < 1 ? 1 : (int)chunks;
}

/* CPU family: one key-parallel kernel for dK, dV, partial dQ and dS, then
 * the partial dQ summed into dq. */
static clattn_status run_cpu(clattn_ctx *ctx, const bwd_kernels *bk, const bwd_buffers *b, int np,
                             const clattn__sdpa_problem *pr, cl_mem dq, cl_mem dk, cl_mem dv,
                             cl_mem ds, cl_mem dummy)
{
    bwd_outputs o = {{dk, dv, NULL, ds}, cpu_chunks(ctx, pr)};
    const size_t total = (size_t)pr->B * (size_t)pr->Hq * (size_t)pr->N * (size_t)pr->D;
    clattn_status st = CLATTN_OK;
    if (dq && o.chunks > 1)
        st = clattn__scratch(ctx, CLATTN_SCRATCH_BWD_DQP,
                             (size_t)o.chunks * total * sizeof(float),
                             "attention backward: partial dq [chunks, B, Hq, N, D]", &o.g[2]);
    else
        o.g[2] = dq;
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {(size_t)o.chunks, (size_t)pr->B * (size_t)pr->Hkv};
    size_t local[2] = {CPU_LOCAL, 1};
    st = run_bwd_kernel(ctx, bk, BWD_K_CPU, b, &o, dummy, np, pr, global, local);
    if (st == CLATTN_OK && dq) {
        cl_int chunks = o.chunks;
        cl_long n = (cl_long)total;
        const clattn__karg args[4] = {CLATTN_KARG(o.g[2]), CLATTN_KARG(dq), CLATTN_KARG(chunks),
                                      CLATTN_KARG(n)};
        size_t lr = 64;
        st = run_kernel(ctx, bk, BWD_K_DQ_REDUCE, args, 4, 1, &total, &lr);
    }
    return st;
}

/* ---- the call ----------------------------------------------------------------- */

clattn_status clattn_sdpa_backward(clattn_ctx *ctx, const clattn_tensor *q, const clattn_tensor *k,
                                   const clattn_tensor *v, const clattn_tensor *out,
                                   const clattn_tensor *lse, const clattn_tensor *dout,
                                   const clattn_sdpa_params *p, const clattn_sdpa_grads *grads)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", FN);
    /* The forward's parameters, without the outputs this call ignores. */
    clattn_sdpa_params pp = p ? *p : clattn_sdpa_params_default();
    pp.weights = NULL;
    pp.lse = NULL;
    clattn__sdpa_problem pr;
    clattn_status st = check_args(ctx, q, k, v, out, lse, dout, &pp, grads, &pr);
    if (st != CLATTN_OK)
        return st;
    cl_mem dq = grads->dq ? grads->dq->mem : NULL, dk = grads->dk ? grads->dk->mem : NULL;
    cl_mem dv = grads->dv ? grads->dv->mem : NULL;
    if (!dq && !dk && !dv && !grads->dbias)
        return CLATTN_OK; /* nothing asked for */
    /* Past the driver's loop limit the kernels would return wrong
     * gradients without an error (runtime/context.c picks the tiled family on
     * such drivers). */
    if (!cpu_family(ctx) && !tiled_fits_budget(ctx, &pr))
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: N = %d queries, M = %d keys at D = %d, Dv = %d are past what "
                            "the backward kernels can run on %s (it stops every kernel "
                            "invocation after %lld loop iterations)",
                            FN, pr.N, pr.M, pr.D, pr.Dv, ctx->info.device_name,
                            (long long)ctx->loop_budget);

    pr.has_lse = true;
    pr.lse = lse->mem;
    st = clattn__sdpa_aux_buffers(ctx, pp.kv_len, pp.mod_buffer, &pr);
    bwd_kernels bk;
    if (st == CLATTN_OK)
        st = bwd_kernels_init(ctx, &pr, &bk);
    cl_mem dummy;
    if (st == CLATTN_OK)
        st = clattn__scratch(ctx, CLATTN_SCRATCH_DUMMY, 64, "dummy buffer", &dummy);
    if (st != CLATTN_OK)
        return st;

    const bool cosine = pp.score == CLATTN_SCORE_COSINE;
    const size_t q_rows = (size_t)pr.B * (size_t)pr.Hq * (size_t)pr.N;
    const size_t k_rows = (size_t)pr.B * (size_t)pr.Hkv * (size_t)pr.M;
    cl_mem q_norms = NULL, k_norms = NULL;
    if (cosine) {
        st = normalize(ctx, &bk, pr.q, q_rows, pr.D, CLATTN_SCRATCH_QNORM,
                       CLATTN_SCRATCH_BWD_QNORMS, &pr.q, &q_norms);
        if (st == CLATTN_OK)
            st = normalize(ctx, &bk, pr.k, k_rows, pr.D, CLATTN_SCRATCH_KNORM,
                           CLATTN_SCRATCH_BWD_KNORMS, &pr.k, &k_norms);
        if (st != CLATTN_OK)
            return st;
    }

    /* Delta and lse rows, padded to whole query blocks. */
    const bool cpu = cpu_family(ctx);
    const int np = cpu ? (int)clattn__round_up((size_t)pr.N, CPU_BLOCK) : pr.N;
    const int bhq = pr.B * pr.Hq;
    bwd_buffers b = {pr.q, dummy, pr.k, pr.v, dout->mem, dummy, NULL};
    st = clattn__scratch(ctx, CLATTN_SCRATCH_BWD_DL, 2 * (size_t)bhq * (size_t)np * sizeof(float),
                         "attention backward: Delta and lse [2, B, Hq, N]", &b.dl);
    if (st == CLATTN_OK) {
        cl_int a_bhq = bhq, a_n = pr.N, a_np = np;
        const clattn__karg args[7] = {CLATTN_KARG(pr.out), CLATTN_KARG(b.dout), CLATTN_KARG(pr.lse),
                                      CLATTN_KARG(b.dl), CLATTN_KARG(a_bhq), CLATTN_KARG(a_n),
                                      CLATTN_KARG(a_np)};
        size_t global[2] = {(size_t)np, (size_t)bhq};
        st = run_kernel(ctx, &bk, BWD_K_PREP, args, 7, 2, global, NULL);
    }
    if (cpu && st == CLATTN_OK) {
        st = make_panels(ctx, &bk, pr.q, bhq, pr.N, pr.D, CPU_BLOCK, CLATTN_SCRATCH_BWD_QT,
                         "attention backward: q panels", &b.qt);
        if (st == CLATTN_OK)
            st = make_panels(ctx, &bk, b.dout, bhq, pr.N, pr.Dv, CPU_BLOCK,
                             CLATTN_SCRATCH_BWD_DOT, "attention backward: dout panels", &b.dot);
    }
    if (st != CLATTN_OK)
        return st;

    /* dS for dbias: straight into dbias when the bias is not broadcast,
     * else into scratch and reduced below. Unvisited entries stay 0. */
    cl_mem ds = NULL;
    bool reduce = false;
    const size_t full = q_rows * (size_t)pr.M;
    if (grads->dbias) {
        reduce = grads->dbias->numel != full;
        if (reduce)
            st = clattn__scratch(ctx, CLATTN_SCRATCH_BWD_DS, full * sizeof(float),
                                 "attention backward: dS [B, Hq, N, M] for a broadcast dbias",
                                 &ds);
        else
            ds = grads->dbias->mem;
        if (st == CLATTN_OK)
            st = zero_fill(ctx, ds, full * sizeof(float));
    }
    if (st == CLATTN_OK)
        st = cpu ? run_cpu(ctx, &bk, &b, np, &pr, dq, dk, dv, ds, dummy)
                 : run_tiled(ctx, &bk, &b, np, &pr, dq, dk, dv, ds, dummy);
    if (st == CLATTN_OK && reduce) {
        const clattn_tensor *bias = pp.bias;
        int nd = bias->ndim;
        cl_int Bb = nd >= 4 ? (cl_int)bias->shape[nd - 4] : 1;
        cl_int Hb = nd >= 3 ? (cl_int)bias->shape[nd - 3] : 1;
        cl_int Nb = (cl_int)bias->shape[nd - 2];
        cl_int a_b = pr.B, a_h = pr.Hq, a_n = pr.N, a_m = pr.M;
        const clattn__karg args[9] = {CLATTN_KARG(ds), CLATTN_KARG(grads->dbias->mem),
                                      CLATTN_KARG(a_b), CLATTN_KARG(a_h), CLATTN_KARG(a_n),
                                      CLATTN_KARG(a_m), CLATTN_KARG(Bb), CLATTN_KARG(Hb),
                                      CLATTN_KARG(Nb)};
        size_t global[3] = {(size_t)pr.M, (size_t)Nb, (size_t)Bb * (size_t)Hb};
        st = run_kernel(ctx, &bk, BWD_K_DBIAS, args, 9, 3, global, NULL);
    }
    if (st == CLATTN_OK && cosine && dq)
        st = normalize_backward(ctx, &bk, pr.q, q_norms, dq, q_rows);
    if (st == CLATTN_OK && cosine && dk)
        st = normalize_backward(ctx, &bk, pr.k, k_norms, dk, k_rows);
    return st;
}
