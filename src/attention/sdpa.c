/* sdpa.c - clattn_sdpa: argument checks, kernel specialisation (head
 * sizes, optional inputs, user snippets), and the fused and unfused paths.
 *
 * The kernels live in cl/attention/: sdpa_common.cl's header comment is the
 * contract for the argument lists used here, and each family file
 * (sdpa_fwd_cpu.cl, sdpa_fwd_tiled.cl, sdpa_rows.cl) gives its NDRanges. */
#include "attention/attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One forward program per kernel family, so a context compiles only the
 * family it runs (clattn_ctx.attention_variant indexes these). Both hold
 * the row kernels of sdpa_rows.cl, which the unfused path and the cosine
 * score need on either family. */
static const clattn__program_spec SDPA_PROGRAMS[2] = {
    [CLATTN_ATTN_CPU] = {{"attention/sdpa_common.cl", "attention/sdpa_rows.cl",
                          "attention/sdpa_fwd_cpu.cl", NULL},
                         NULL},
    [CLATTN_ATTN_TILED] = {{"attention/sdpa_common.cl", "attention/sdpa_rows.cl",
                            "attention/sdpa_fwd_tiled.cl", NULL},
                           NULL},
};

/* The kernels this file launches, by family. */
enum { SDPA_K_FUSED, SDPA_K_SOFTMAX, SDPA_K_L2, SDPA_K_TRANSPOSE, SDPA_K_COUNT };

#define CPU_PROG (&SDPA_PROGRAMS[CLATTN_ATTN_CPU])
#define TILED_PROG (&SDPA_PROGRAMS[CLATTN_ATTN_TILED])
static const clattn__kernel_spec SDPA_KERNELS[2][SDPA_K_COUNT] = {
    [CLATTN_ATTN_CPU] = {[SDPA_K_FUSED] = {CPU_PROG, "sdpa_fwd_cpu"},
                         [SDPA_K_SOFTMAX] = {CPU_PROG, "sdpa_softmax_rows"},
                         [SDPA_K_L2] = {CPU_PROG, "sdpa_l2_normalize_rows"},
                         [SDPA_K_TRANSPOSE] = {CPU_PROG, "sdpa_transpose_k"}},
    /* The tiled kernel reads k as it is: no transpose in that family. */
    [CLATTN_ATTN_TILED] = {[SDPA_K_FUSED] = {TILED_PROG, "sdpa_fwd_tiled"},
                           [SDPA_K_SOFTMAX] = {TILED_PROG, "sdpa_softmax_rows"},
                           [SDPA_K_L2] = {TILED_PROG, "sdpa_l2_normalize_rows"},
                           [SDPA_K_TRANSPOSE] = {NULL, NULL}},
};
#undef CPU_PROG
#undef TILED_PROG

/* The largest head size the kernels are specialised for (register and
 * local-memory budgets in the family files are sized for it). */
#define MAX_HEAD_DIM 256

/* ---- tunables ------------------------------------------------------------ */

/* CPU variant: 6 query rows per row group (6 x 16 keys fill twelve AVX2
 * accumulators, the shape of a GEMM micro-kernel), 64 keys per step, 2
 * work-items per group. POCL hands whole work-groups to its threads, so
 * small groups even out the two threads' shares: against 8, interleaved
 * runs were 4-9% faster at (8, 2048, 64), causal N = 4096, D = 32 and
 * D = 128, and never slower (1 was within noise of 2; README
 * "Attention"). */
#define CPU_ROWS_PER_ITEM 6
#define CPU_KEY_BLOCK 64
#define CPU_LOCAL 2
#define SOFTMAX_WG 128

/* Row groups per work-item share each K/V block loaded from memory; sized
 * so a work-item's private q rows and accumulators stay near 24 KiB. (The
 * rows llvmpipe once left unwritten with 46 KiB were its loop limit, see
 * clattn_ctx.loop_budget; llvmpipe no longer runs this family.) Must match
 * the default in cl/attention/sdpa_fwd_cpu.cl, so it is passed explicitly. */
static int cpu_row_groups(int d, int dv)
{
    int g = 6144 / (CPU_ROWS_PER_ITEM * (d + dv));
    return g > 8 ? 8 : g < 1 ? 1 : g;
}

/* Tiled variant: TILE_Q query rows per work-group, TPR work-items per row,
 * TILE_K keys per local-memory tile. Shrinks the tile until it fits the
 * device's local memory and work-group limits. */
static void tiled_tunables(const clattn_ctx *ctx, int d, int dv, int *tile_q, int *tpr,
                           int *tile_k)
{
    int maxd = d > dv ? d : dv;
    *tile_q = 32;
    *tpr = 4;
    *tile_k = maxd > 128 ? 16 : 32;
    while ((size_t)(*tile_q * *tpr) > ctx->info.max_work_group_size && *tile_q > 1)
        *tile_q /= 2;
    while ((size_t)(*tile_q * *tpr) > ctx->info.max_work_group_size && *tpr > 1)
        *tpr /= 2;
    for (;;) {
        uint64_t bytes = 4ull * ((uint64_t)*tile_k * (uint64_t)(maxd + 1) +
                                 (uint64_t)*tile_q * (uint64_t)(*tile_k + 1) +
                                 (uint64_t)*tile_q);
        if (bytes <= ctx->info.local_mem_bytes || (*tile_k <= *tpr && *tile_q <= 1))
            break;
        if (*tile_k > *tpr)
            *tile_k /= 2;
        else
            *tile_q /= 2;
    }
}

/* Loop iterations of one sdpa_fwd_tiled invocation over M keys, counted
 * from its loops: per tile of TILE_K keys, the d loop of S (D), the K and
 * V tile loads (TILE_K * D / WG and TILE_K * Dv / WG per work-item), the
 * row softmax (2 TILE_K) and the output loop of P.V (Dv / TPR). On
 * llvmpipe it bounds the real count from above: D = 64 ran correctly at
 * M = 12288 (estimate 68.0K) and failed at 16384 (90.6K); D = 128 ran at
 * 4096 (37.0K) and failed at 8192 (74.0K); D = 256 ran at 2048 (53.4K) and
 * failed at 4096 (107K). With the 10% margin the limits are 10656 keys at
 * D = 64, 6528 at 128 and 2256 at 256, each checked correct there. */
static int64_t tiled_fwd_loop_iterations(const clattn_ctx *ctx, int d, int dv, int m)
{
    int tq, tpr, tk;
    tiled_tunables(ctx, d, dv, &tq, &tpr, &tk);
    int64_t wg = (int64_t)tq * tpr;
    int64_t per_tile = d + clattn__ceil_div((int64_t)tk * d, wg) +
                       clattn__ceil_div((int64_t)tk * dv, wg) + 2 * (int64_t)tk +
                       clattn__ceil_div(dv, tpr) + 1;
    return clattn__ceil_div(m, tk) * per_tile;
}

bool clattn__sdpa_fused_fits(const clattn_ctx *ctx, int d, int dv, int m)
{
    if (ctx->loop_budget == 0)
        return true;
    /* 10% below the limit: the count above leaves out a few short loops
     * outside the tile loop. The CPU family never runs under a budget
     * (runtime/context.c picks tiled there). */
    return ctx->attention_variant == CLATTN_ATTN_TILED &&
           tiled_fwd_loop_iterations(ctx, d, dv, m) <= ctx->loop_budget / 10 * 9;
}

/* Compiler options that specialise a forward program for one problem shape.
 * kv_len and lse are always compiled in (a default kv_len of M and a
 * scratch lse cost O(B*H*N) memory traffic, nothing in the inner loop) so
 * that a head size needs at most two programs (with and without bias)
 * rather than eight: each program costs seconds to compile on POCL. */
static char *sdpa_options(const clattn_ctx *ctx, int d, int dv, bool bias)
{
    const bool kv_len = true, lse = true;
    if (ctx->attention_variant == CLATTN_ATTN_CPU)
        return clattn__aprintf("-DHEAD_DIM=%d -DVALUE_DIM=%d -DHAS_BIAS=%d -DHAS_KV_LEN=%d "
                               "-DHAS_LSE=%d -DROWS_PER_ITEM=%d -DROW_GROUPS=%d -DKEY_BLOCK=%d "
                               "-DCPU_LOCAL=%d -DSOFTMAX_WG=%d",
                               d, dv, bias, kv_len, lse, CPU_ROWS_PER_ITEM, cpu_row_groups(d, dv),
                               CPU_KEY_BLOCK, CPU_LOCAL, SOFTMAX_WG);
    int tq, tpr, tk;
    tiled_tunables(ctx, d, dv, &tq, &tpr, &tk);
    return clattn__aprintf("-DHEAD_DIM=%d -DVALUE_DIM=%d -DHAS_BIAS=%d -DHAS_KV_LEN=%d "
                           "-DHAS_LSE=%d -DTILE_Q=%d -DTPR=%d -DTILE_K=%d -DSOFTMAX_WG=%d",
                           d, dv, bias, kv_len, lse, tq, tpr, tk, SOFTMAX_WG);
}

/* Source text that defines the user's snippets as the functions the
 * kernels call. Each snippet sits on its own lines so that a trailing
 * // comment in it cannot swallow the closing parenthesis. */
char *clattn__sdpa_snippet_prefix(const char *score_mod, const char *mask_mod)
{
    const char *params = "int b, int h, int q_idx, int kv_idx, int n_q, int n_kv, "
                         "__global const float *buf, float p0, float p1, float p2, float p3";
    char *score = score_mod ? clattn__aprintf("#define CLATTN_HAS_SCORE_MOD 1\n"
                                              "float clattn_score_mod(float score, %s)\n"
                                              "{\n    return (float)(\n%s\n    );\n}\n",
                                              params, score_mod)
                            : clattn__strdup("");
    char *mask = mask_mod ? clattn__aprintf("#define CLATTN_HAS_MASK_MOD 1\n"
                                            "int clattn_mask_mod(%s)\n"
                                            "{\n    return (int)(\n%s\n    ) ? 1 : 0;\n}\n",
                                            params, mask_mod)
                          : clattn__strdup("");
    char *prefix = (score && mask) ? clattn__aprintf("%s%s", score, mask) : NULL;
    free(score);
    free(mask);
    return prefix;
}

clattn_status clattn__attention_program(clattn_ctx *ctx, int d, int dv, bool bias,
                                        const char *score_mod, const char *mask_mod,
                                        cl_program *out)
{
    char *options = sdpa_options(ctx, d, dv, bias);
    char *prefix =
        (score_mod || mask_mod) ? clattn__sdpa_snippet_prefix(score_mod, mask_mod) : NULL;
    clattn_status st;
    if (!options || ((score_mod || mask_mod) && !prefix))
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    else
        st = clattn__program_get(ctx, &SDPA_PROGRAMS[ctx->attention_variant], options, prefix,
                                 out);
    free(options);
    free(prefix);
    return st;
}

clattn_status clattn__attention_prebuild(clattn_ctx *ctx)
{
    cl_program prog;
    return clattn__attention_program(ctx, 64, 64, false, NULL, NULL, &prog);
}

/* What selects the forward's kernels for one problem: the specialisation
 * (head sizes, bias) and, with user snippets, the program built for them. */
typedef struct sdpa_kernels {
    const clattn_ctx *ctx;  /* for the tunables in sdpa_options */
    int d, dv;
    bool bias;
    cl_program snippets;    /* NULL without score_mod / mask_mod */
} sdpa_kernels;

/* clattn__kernel_variant's key for a specialisation: everything
 * sdpa_options encodes (the tunables are functions of the context and the
 * head sizes, so they need no bits of their own; kv_len and lse are always
 * compiled in), the family, and bit 0 so that the key is never 0. */
static uint64_t sdpa_variant(const clattn_ctx *ctx, int d, int dv, bool bias)
{
    const uint64_t kv_len = 1, lse = 1;
    return (uint64_t)d << 32 | (uint64_t)dv << 16 | (uint64_t)ctx->attention_variant << 4 |
           lse << 3 | kv_len << 2 | (uint64_t)bias << 1 | 1u;
}

/* make_options of clattn__kernel_variant, called only on a miss. */
static char *sdpa_make_options(const void *arg)
{
    const sdpa_kernels *sk = arg;
    return sdpa_options(sk->ctx, sk->d, sk->dv, sk->bias);
}

/* The kernels for problem pr: with user snippets their program is built
 * (or found by its source) now, once per call; without, nothing is done
 * until a kernel is asked for. */
static clattn_status sdpa_kernels_init(clattn_ctx *ctx, const clattn__sdpa_problem *pr,
                                       sdpa_kernels *sk)
{
    *sk = (sdpa_kernels){ctx, pr->D, pr->Dv, pr->has_bias, NULL};
    if (!pr->score_mod && !pr->mask_mod)
        return CLATTN_OK;
    return clattn__attention_program(ctx, pr->D, pr->Dv, pr->has_bias, pr->score_mod,
                                     pr->mask_mod, &sk->snippets);
}

/* Kernel `which` (SDPA_K_*) of the context's family. Without snippets it
 * is resolved once per context and specialisation, so a repeated call
 * formats no options and searches no strings. Snippets (user code, keyed
 * by its text) take the program's kernel table instead. */
static clattn_status sdpa_kernel(clattn_ctx *ctx, const sdpa_kernels *sk, int which,
                                 cl_kernel *k)
{
    const clattn__kernel_spec *spec = &SDPA_KERNELS[ctx->attention_variant][which];
    if (sk->snippets)
        return clattn__kernel_get(ctx, sk->snippets, spec->name, k);
    return clattn__kernel_variant(ctx, spec, sdpa_variant(ctx, sk->d, sk->dv, sk->bias),
                                  sdpa_make_options, sk, k);
}

/* ---- argument checks ------------------------------------------------------ */

clattn_sdpa_params clattn_sdpa_params_default(void)
{
    clattn_sdpa_params p;
    memset(&p, 0, sizeof p);
    p.score = CLATTN_SCORE_DOT;
    p.window_left = -1;
    p.window_right = -1;
    p.impl = CLATTN_SDPA_AUTO;
    return p;
}

static bool same_buffer(const clattn_tensor *a, const clattn_tensor *b)
{
    return a && b && a->mem == b->mem;
}

/* Strides of a bias broadcastable to [B, Hq, N, M] (aligned right). */
static clattn_status check_bias(clattn_ctx *ctx, const char *fn, const clattn_tensor *bias,
                                clattn__sdpa_problem *pr)
{
    char sb[96];
    clattn__shape_str(bias->shape, bias->ndim, sb, sizeof sb);
    const int64_t full[4] = {pr->B, pr->Hq, pr->N, pr->M};
    int nd = bias->ndim;
    bool ok = nd >= 2 && bias->shape[nd - 1] == pr->M;
    int64_t stride[4] = {0, 0, 0, 1};
    int64_t running = pr->M;
    for (int i = nd - 2; ok && i >= 0; i--) {
        int dim = 4 - nd + i; /* which of B, Hq, N this bias dimension is */
        int64_t e = bias->shape[i];
        ok = e == full[dim] || e == 1;
        stride[dim] = e == 1 ? 0 : running;
        running *= e;
    }
    if (!ok)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: bias %s is not broadcastable to [B, Hq, N, M] = "
                            "[%d, %d, %d, %d] (2 to 4 dimensions aligned right, last = M, "
                            "others full or 1)", fn,
                            sb, pr->B, pr->Hq, pr->N, pr->M);
    pr->has_bias = true;
    pr->bias = bias->mem;
    pr->bias_sb = stride[0];
    pr->bias_sh = stride[1];
    pr->bias_sn = stride[2];
    return CLATTN_OK;
}

static clattn_status check_outputs(clattn_ctx *ctx, const clattn_sdpa_params *p,
                                   clattn__sdpa_problem *pr)
{
    char s[96];
    if (p->weights) {
        const int64_t *w = p->weights->shape;
        if (p->weights->ndim != 4 || w[0] != pr->B || w[1] != pr->Hq || w[2] != pr->N ||
            w[3] != pr->M)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "sdpa: weights %s must be [B, Hq, N, M] = [%d, %d, %d, %d]",
                                clattn__shape_str(w, p->weights->ndim, s, sizeof s), pr->B,
                                pr->Hq, pr->N, pr->M);
        pr->weights = p->weights->mem;
    }
    if (p->lse) {
        const int64_t *l = p->lse->shape;
        if (p->lse->ndim != 3 || l[0] != pr->B || l[1] != pr->Hq || l[2] != pr->N)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "sdpa: lse %s must be [B, Hq, N] = [%d, %d, %d]",
                                clattn__shape_str(l, p->lse->ndim, s, sizeof s), pr->B, pr->Hq,
                                pr->N);
        pr->has_lse = true;
        pr->lse = p->lse->mem;
    }
    return CLATTN_OK;
}

static clattn_status check_params(clattn_ctx *ctx, const char *fn, const clattn_sdpa_params *p,
                                  clattn__sdpa_problem *pr)
{
    if (p->score != CLATTN_SCORE_DOT && p->score != CLATTN_SCORE_COSINE)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: unknown score kind %d", fn,
                            (int)p->score);
    if (p->impl != CLATTN_SDPA_AUTO && p->impl != CLATTN_SDPA_FUSED &&
        p->impl != CLATTN_SDPA_UNFUSED)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: unknown impl %d", fn, (int)p->impl);
    if (!isfinite(p->scale))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: scale %g is not finite", fn,
                            (double)p->scale);
    if (p->window_left < -1 || p->window_right < -1)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: window_left %d / window_right %d must be >= 0, or -1 for "
                            "unlimited", fn,
                            p->window_left, p->window_right);
    if (p->weights && p->impl == CLATTN_SDPA_FUSED)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: weights need the unfused path; use impl AUTO or UNFUSED", fn);
    for (int i = 0; i < 4; i++)
        pr->p[i] = p->mod_params[i];
    pr->scale = p->scale != 0.0f ? p->scale : (float)(1.0 / sqrt((double)pr->D));
    pr->wl = p->window_left;
    /* causal is window_right = 0, intersected with any window given. */
    pr->wr = p->causal ? 0 : p->window_right;
    pr->score_mod = p->score_mod;
    pr->mask_mod = p->mask_mod;
    size_t buf_numel = p->mod_buffer ? p->mod_buffer->numel : 0;
    float r = p->mod_params[0];
    switch (p->preset) {
    case CLATTN_PRESET_NONE: break;
    case CLATTN_PRESET_ALIBI:
        if (buf_numel < (size_t)pr->Hq)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: ALiBi slopes need %d entries (one per query head), "
                                "mod_buffer has %zu", fn,
                                pr->Hq, buf_numel);
        break;
    case CLATTN_PRESET_SOFTCAP:
        if (!(r > 0) || !isfinite(r))
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: soft-capping needs a cap > 0, got %g", fn, (double)r);
        break;
    case CLATTN_PRESET_RELPOS:
        if (!(r >= 0 && r <= 1e6f) || buf_numel < (size_t)pr->Hq * (size_t)(2 * (int)r + 1))
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: relative-position table needs [Hq, 2R + 1] = [%d, %d] "
                                "entries (R = %g), mod_buffer has %zu", fn,
                                pr->Hq, 2 * (int)r + 1, (double)r, buf_numel);
        break;
    default:
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: unknown preset %d", fn,
                            (int)p->preset);
    }
    if (p->kv_len) {
        for (int b = 0; b < pr->B; b++)
            if (p->kv_len[b] < 0 || p->kv_len[b] > pr->M)
                return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                    "%s: kv_len[%d] = %d is outside 0..M (M = %d)", fn, b,
                                    p->kv_len[b], pr->M);
    }
    return CLATTN_OK;
}

clattn_status clattn__sdpa_check(clattn_ctx *ctx, const char *fn, const clattn_tensor *q,
                                const clattn_tensor *k, const clattn_tensor *v,
                                const clattn_tensor *out, const clattn_sdpa_params *p,
                                clattn__sdpa_problem *pr)
{
    memset(pr, 0, sizeof *pr);
    static const clattn__qkv_rules SDPA_QKV = {4, true, MAX_HEAD_DIM};
    clattn_status st = clattn__qkv_check(ctx, fn, q, k, v, out, &SDPA_QKV, pr);
    if (st == CLATTN_OK)
        st = check_params(ctx, fn, p, pr);
    if (st == CLATTN_OK && p->bias)
        st = check_bias(ctx, fn, p->bias, pr);
    return st;
}

/* ---- the two paths ---------------------------------------------------------- */

/* Sets arguments first.. of the common tail (lse onwards) shared by every
 * attention kernel: lse, bias and strides, kv_len, mod_buf, p0..p3, sizes,
 * scale, window. */
clattn_status clattn__sdpa_set_tail_args(clattn_ctx *ctx, cl_kernel k, cl_uint first,
                                         const clattn__sdpa_problem *pr)
{
    const cl_long sb = pr->bias_sb, sh = pr->bias_sh, sn = pr->bias_sn;
    const cl_int b = pr->B, hq = pr->Hq, hkv = pr->Hkv, n = pr->N, m = pr->M;
    const cl_int wl = pr->wl, wr = pr->wr;
    const cl_float scale = pr->scale;
    return CLATTN_SET_ARGS_FROM(ctx, k, first, "attention", CLATTN_KARG(pr->lse),
                                CLATTN_KARG(pr->bias), CLATTN_KARG(sb), CLATTN_KARG(sh),
                                CLATTN_KARG(sn), CLATTN_KARG(pr->kv_len), CLATTN_KARG(pr->mod_buf),
                                CLATTN_KARG(pr->p[0]), CLATTN_KARG(pr->p[1]),
                                CLATTN_KARG(pr->p[2]), CLATTN_KARG(pr->p[3]), CLATTN_KARG(b),
                                CLATTN_KARG(hq), CLATTN_KARG(hkv), CLATTN_KARG(n), CLATTN_KARG(m),
                                CLATTN_KARG(scale), CLATTN_KARG(wl), CLATTN_KARG(wr));
}

/* The kernels' long4 layout of a tensor with heads h, rows and width:
 * the problem's own when strided, else contiguous [B, h, rows, width]. */
static cl_long4 kernel_layout(const clattn__sdpa_problem *pr, const clattn__sdpa_layout *l,
                              int heads, int rows, int width)
{
    cl_long4 v;
    if (pr->strided) {
        v.s[0] = l->off, v.s[1] = l->sb, v.s[2] = l->sh, v.s[3] = l->sn;
    } else {
        v.s[0] = 0, v.s[3] = width;
        v.s[2] = (cl_long)rows * width;
        v.s[1] = (cl_long)heads * v.s[2];
    }
    return v;
}

static clattn_status run_fused(clattn_ctx *ctx, const sdpa_kernels *sk,
                               const clattn__sdpa_problem *pr)
{
    cl_kernel k;
    clattn_status st;
    cl_mem keys = pr->k;
    const char *name;
    size_t global[2], local[2];
    const cl_long4 lq = kernel_layout(pr, &pr->lq, pr->Hq, pr->N, pr->D);
    const cl_long4 lk = kernel_layout(pr, &pr->lk, pr->Hkv, pr->M, pr->D);
    const cl_long4 lv = kernel_layout(pr, &pr->lv, pr->Hkv, pr->M, pr->Dv);
    const cl_long4 lo = kernel_layout(pr, &pr->lo, pr->Hq, pr->N, pr->Dv);
    if (ctx->attention_variant == CLATTN_ATTN_CPU) {
        /* K transposed to [B, Hkv, D, Mp] so each q element meets 16 keys
         * in one vector; padding keys are zero and never visible. */
        size_t mp = clattn__round_up((size_t)pr->M, CPU_KEY_BLOCK);
        size_t bhkv = (size_t)pr->B * (size_t)pr->Hkv;
        cl_kernel tk;
        st = clattn__scratch(ctx, CLATTN_SCRATCH_KT, bhkv * (size_t)pr->D * mp * sizeof(float),
                             "attention scratch: transposed k [B, Hkv, D, M]", &keys);
        if (st == CLATTN_OK)
            st = sdpa_kernel(ctx, sk, SDPA_K_TRANSPOSE, &tk);
        const cl_int bh = (cl_int)bhkv, m = pr->M, hkv = pr->Hkv;
        if (st == CLATTN_OK)
            st = CLATTN_SET_ARGS(ctx, tk, "sdpa_transpose_k", CLATTN_KARG(pr->k),
                                 CLATTN_KARG(keys), CLATTN_KARG(bh), CLATTN_KARG(m),
                                 CLATTN_KARG(hkv), CLATTN_KARG(lk));
        if (st != CLATTN_OK)
            return st;
        size_t tg[3] = {mp / 16, ((size_t)pr->D + 15) / 16, bhkv}, tl[3] = {1, 1, 1};
        st = clattn__enqueue(ctx, tk, 3, tg, tl, "sdpa_transpose_k");
        if (st != CLATTN_OK)
            return st;
        name = "sdpa_fwd_cpu";
        size_t rows = (size_t)CPU_ROWS_PER_ITEM * (size_t)cpu_row_groups(pr->D, pr->Dv);
        global[0] = ((size_t)pr->N + rows - 1) / rows;
        local[0] = CPU_LOCAL;
    } else {
        int tq, tpr, tkk;
        tiled_tunables(ctx, pr->D, pr->Dv, &tq, &tpr, &tkk);
        name = "sdpa_fwd_tiled";
        global[0] = ((size_t)pr->N + (size_t)tq - 1) / (size_t)tq * (size_t)(tq * tpr);
        local[0] = (size_t)(tq * tpr);
    }
    global[1] = (size_t)pr->B * (size_t)pr->Hq;
    local[1] = 1;
    /* Arguments 0..3, the common tail 4..22, the layouts 23..26. */
    st = sdpa_kernel(ctx, sk, SDPA_K_FUSED, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, name, CLATTN_KARG(pr->q), CLATTN_KARG(keys),
                             CLATTN_KARG(pr->v), CLATTN_KARG(pr->out));
    if (st == CLATTN_OK)
        st = clattn__sdpa_set_tail_args(ctx, k, 4, pr);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS_FROM(ctx, k, 23, name, CLATTN_KARG(lq), CLATTN_KARG(lk),
                                  CLATTN_KARG(lv), CLATTN_KARG(lo));
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, 2, global, local, name) : st;
}

/* Runs sdpa_softmax_rows (kernel k of a forward program) on scores. */
static clattn_status softmax_rows(clattn_ctx *ctx, cl_kernel k, cl_mem scores,
                                  const clattn__sdpa_problem *pr)
{
    clattn_status st = CLATTN_SET_ARGS(ctx, k, "sdpa_softmax_rows", CLATTN_KARG(scores));
    if (st == CLATTN_OK)
        st = clattn__sdpa_set_tail_args(ctx, k, 1, pr);
    size_t global[3] = {SOFTMAX_WG, (size_t)pr->N, (size_t)pr->B * (size_t)pr->Hq};
    size_t local[3] = {SOFTMAX_WG, 1, 1};
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, 3, global, local, "sdpa_softmax_rows") : st;
}

clattn_status clattn__sdpa_softmax(clattn_ctx *ctx, cl_program prog, cl_mem scores,
                                   const clattn__sdpa_problem *pr)
{
    cl_kernel k;
    clattn_status st = clattn__kernel_get(ctx, prog, "sdpa_softmax_rows", &k);
    return st == CLATTN_OK ? softmax_rows(ctx, k, scores, pr) : st;
}

clattn_status clattn__sdpa_softmax_any(clattn_ctx *ctx, cl_mem scores,
                                       const clattn__sdpa_problem *pr)
{
    const sdpa_kernels sk = {ctx, 64, 64, false, NULL};
    cl_kernel k;
    clattn_status st = sdpa_kernel(ctx, &sk, SDPA_K_SOFTMAX, &k);
    return st == CLATTN_OK ? softmax_rows(ctx, k, scores, pr) : st;
}

/* GEMM -> softmax -> GEMM. The g = Hq / Hkv query heads that share a kv
 * head are contiguous in q ([g*N, D] rows), so one strided-batched GEMM
 * per (batch, kv head) covers GQA without copying. */
static clattn_status run_unfused(clattn_ctx *ctx, const sdpa_kernels *sk,
                                 const clattn__sdpa_problem *pr)
{
    size_t g = (size_t)(pr->Hq / pr->Hkv), n = (size_t)pr->N, m = (size_t)pr->M;
    size_t d = (size_t)pr->D, dv = (size_t)pr->Dv, batches = (size_t)pr->B * (size_t)pr->Hkv;
    cl_mem scores = pr->weights;
    clattn_status st = CLATTN_OK;
    if (!scores) {
        size_t count = (size_t)pr->B * (size_t)pr->Hq * n;
        if (count > SIZE_MAX / sizeof(float) / m)
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                                "sdpa: unfused scores [%d, %d, %d, %d] overflow size_t", pr->B,
                                pr->Hq, pr->N, pr->M);
        st = clattn__scratch(ctx, CLATTN_SCRATCH_SCORES, count * m * sizeof(float),
                             "unfused attention scores [B, Hq, N, M]", &scores);
        if (st != CLATTN_OK)
            return st;
    }
    st = clattn__gemm_batched(ctx, false, true, g * n, m, d, 1.0f, pr->q, 0, d, g * n * d, pr->k,
                              0, d, m * d, 0.0f, scores, 0, m, g * n * m, batches);
    cl_kernel k;
    if (st == CLATTN_OK)
        st = sdpa_kernel(ctx, sk, SDPA_K_SOFTMAX, &k);
    if (st == CLATTN_OK)
        st = softmax_rows(ctx, k, scores, pr);
    if (st == CLATTN_OK)
        st = clattn__gemm_batched(ctx, false, false, g * n, dv, m, 1.0f, scores, 0, m, g * n * m,
                                  pr->v, 0, dv, m * dv, 0.0f, pr->out, 0, dv, g * n * dv,
                                  batches);
    return st;
}

/* Writes x / max(|x|, 1e-12) row by row into the scratch slot. */
static clattn_status normalize_rows(clattn_ctx *ctx, const sdpa_kernels *sk, cl_mem x,
                                    size_t rows, int d, int slot, cl_mem *y)
{
    cl_kernel k;
    clattn_status st = clattn__scratch(ctx, slot, rows * (size_t)d * sizeof(float),
                                       "cosine attention: normalised copy", y);
    if (st == CLATTN_OK)
        st = sdpa_kernel(ctx, sk, SDPA_K_L2, &k);
    const cl_int r = (cl_int)rows, dd = d;
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "sdpa_l2_normalize_rows", CLATTN_KARG(x), CLATTN_KARG(*y),
                             CLATTN_KARG(r), CLATTN_KARG(dd));
    if (st != CLATTN_OK)
        return st;
    size_t global = rows, local = 64;
    return clattn__enqueue(ctx, k, 1, &global, &local, "sdpa_l2_normalize_rows");
}

/* Small device buffers the kernels read: kv_len, and a dummy for unused
 * buffer arguments (OpenCL wants a valid cl_mem). */
clattn_status clattn__sdpa_aux_buffers(clattn_ctx *ctx, const int32_t *kv_len,
                                       const clattn_tensor *mod_buffer, clattn__sdpa_problem *pr)
{
    cl_mem dummy;
    clattn_status st = clattn__scratch(ctx, CLATTN_SCRATCH_DUMMY, 64, "dummy buffer", &dummy);
    if (st != CLATTN_OK)
        return st;
    if (!pr->has_bias)
        pr->bias = dummy;
    pr->mod_buf = mod_buffer ? mod_buffer->mem : dummy;
    /* The kernels always write lse and read kv_len (see sdpa_options). */
    if (!pr->has_lse) {
        st = clattn__scratch(ctx, CLATTN_SCRATCH_LSE,
                             (size_t)pr->B * (size_t)pr->Hq * (size_t)pr->N * sizeof(float),
                             "attention scratch: log-sum-exp [B, Hq, N]", &pr->lse);
        if (st != CLATTN_OK)
            return st;
    }
    st = clattn__scratch(ctx, CLATTN_SCRATCH_KV_LEN, (size_t)pr->B * sizeof(cl_int), "kv_len",
                         &pr->kv_len);
    if (st != CLATTN_OK)
        return st;
    if (kv_len) {
        /* Blocking: the caller's array need only live during the call. */
        cl_int err = clEnqueueWriteBuffer(ctx->queue, pr->kv_len, CL_TRUE, 0,
                                          (size_t)pr->B * sizeof(cl_int), kv_len, 0, NULL, NULL);
        return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, "uploading kv_len");
    }
    /* No key padding: every batch has M keys, filled on the device so no
     * host memory has to outlive the call. */
    static const clattn__kernel_spec FILL_I32 = {&clattn__elementwise_program, "fill_i32"};
    cl_kernel k;
    st = clattn__kernel(ctx, &FILL_I32, &k);
    const cl_ulong n = (cl_ulong)pr->B;
    const cl_int m = pr->M;
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "fill_i32", CLATTN_KARG(pr->kv_len), CLATTN_KARG(n),
                             CLATTN_KARG(m));
    if (st != CLATTN_OK)
        return st;
    size_t global = (size_t)pr->B;
    return clattn__enqueue(ctx, k, 1, &global, NULL, "fill_i32");
}

clattn_status clattn__sdpa_run(clattn_ctx *ctx, clattn__sdpa_problem *pr, bool cosine,
                               clattn_sdpa_impl impl)
{
    if (pr->strided && (impl == CLATTN_SDPA_UNFUSED || pr->weights || cosine))
        return clattn__fail(ctx, CLATTN_ERR_INTERNAL,
                            "strided attention inputs reach only the fused kernels");
    sdpa_kernels sk;
    clattn_status st = sdpa_kernels_init(ctx, pr, &sk);
    if (st != CLATTN_OK)
        return st;
    if (cosine) {
        st = normalize_rows(ctx, &sk, pr->q, (size_t)pr->B * (size_t)pr->Hq * (size_t)pr->N,
                            pr->D, CLATTN_SCRATCH_QNORM, &pr->q);
        if (st == CLATTN_OK)
            st = normalize_rows(ctx, &sk, pr->k,
                                (size_t)pr->B * (size_t)pr->Hkv * (size_t)pr->M, pr->D,
                                CLATTN_SCRATCH_KNORM, &pr->k);
        if (st != CLATTN_OK)
            return st;
    }
    bool unfused = impl == CLATTN_SDPA_UNFUSED || pr->weights;
    if (!unfused && !clattn__sdpa_fused_fits(ctx, pr->D, pr->Dv, pr->M)) {
        /* The fused kernel would run past the driver's loop limit and
         * return wrong rows without an error. The unfused path's loops are
         * short (a GEMM over D, a softmax row split over a work-group). */
        if (impl == CLATTN_SDPA_FUSED || pr->strided)
            return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                                "sdpa: M = %d keys at D = %d, Dv = %d is past what the fused "
                                "kernel can run on %s (it stops every kernel invocation after "
                                "%lld loop iterations); use impl = CLATTN_SDPA_UNFUSED or AUTO",
                                pr->M, pr->D, pr->Dv, ctx->info.device_name,
                                (long long)ctx->loop_budget);
        unfused = true;
    }
    return unfused ? run_unfused(ctx, &sk, pr) : run_fused(ctx, &sk, pr);
}

clattn_status clattn_sdpa(clattn_ctx *ctx, const clattn_tensor *q, const clattn_tensor *k,
                          const clattn_tensor *v, clattn_tensor *out, const clattn_sdpa_params *p)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "sdpa: ctx is NULL");
    clattn_sdpa_params defaults = clattn_sdpa_params_default();
    if (!p)
        p = &defaults;
    clattn__sdpa_problem pr;
    clattn_status st = clattn__sdpa_check(ctx, "sdpa", q, k, v, out, p, &pr);
    if (st == CLATTN_OK)
        st = check_outputs(ctx, p, &pr);
    if (st == CLATTN_OK && (same_buffer(p->weights, q) || same_buffer(p->weights, k) ||
                            same_buffer(p->weights, v) || same_buffer(p->weights, out) ||
                            same_buffer(p->lse, out)))
        st = clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                          "sdpa: weights and lse must not alias q, k, v or out");
    if (st == CLATTN_OK)
        st = clattn__sdpa_aux_buffers(ctx, p->kv_len, p->mod_buffer, &pr);
    if (st != CLATTN_OK)
        return st;
    return clattn__sdpa_run(ctx, &pr, p->score == CLATTN_SCORE_COSINE, p->impl);
}
