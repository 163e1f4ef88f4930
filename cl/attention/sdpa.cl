/*
 * attention.cl - fused scaled-dot-product attention (forward) for clattn.
 * OpenCL C 1.2, no extensions, must be built WITHOUT fast-math options.
 *
 * ===================================================================
 * Layouts (float32)
 *   q   [B, Hq,  N, D]        D  = HEAD_DIM
 *   k   [B, Hkv, M, D]        Dv = VALUE_DIM
 *   v   [B, Hkv, M, Dv]
 *   out [B, Hq,  N, Dv]
 *        The fused kernels and sdpa_transpose_k take each of q, k, v, out
 *        as a long4 layout (off, sb, sh, sn): element (b, h, i, d) lives at
 *        off + b*sb + h*sh + i*sn + d, so rows may be strided (multi-head
 *        attention reads heads straight out of a [B, N, H*D] projection
 *        and writes them merged). Contiguous is (0, H*rows*D, rows*D, D).
 *        Everything else here (lse, bias, the unfused path) is contiguous.
 *   lse [B, Hq,  N]           (log-sum-exp of the visible scores)
 *   kt  [B, Hkv, Mp/KEY_BLOCK, D, KEY_BLOCK]   K for sdpa_fwd_cpu only:
 *        key blocks of KEY_BLOCK keys, each a contiguous D x KEY_BLOCK
 *        panel (keys fastest); Mp = round_up(M, KEY_BLOCK); pad keys = 0.
 *        Size B*Hkv*D*Mp floats. (A plain [D, M] transpose strides 4*M
 *        bytes per d and thrashes L1 sets/TLB: 25% slower at M = 2048.)
 *   Hq % Hkv == 0; query head h reads kv head h / (Hq / Hkv).
 *
 * Semantics
 *   score(i,j) = scale * dot(q_i, k_j) [+ bias(b,h,i,j)]
 *                [then score = clattn_score_mod(score, b,h,i,j,N,M,mod_buf,p0..p3)]
 *   key j visible to query i iff all of
 *     - lo <= j <= hi with lo = i+M-N-window_left, hi = i+M-N+window_right
 *       (bottom-right aligned; -1 = unlimited on that side; causal = (-1, 0))
 *     - HAS_KV_LEN: j < kv_len[b]
 *     - CLATTN_HAS_MASK_MOD: clattn_mask_mod(b,h,i,j,N,M,mod_buf,p0..p3) != 0
 *     - final score is not < -3.0e38f (a -inf bias entry masks; NaN does not)
 *   out_i = softmax over visible j of score, times v; lse_i = log(sum exp).
 *   A row with no visible key gets out = 0 and lse = -INFINITY.
 *
 * Optional user hooks: the host prepends source defining
 *   #define CLATTN_HAS_SCORE_MOD 1
 *   float clattn_score_mod(float score, int b, int h, int q_idx, int kv_idx,
 *                          int n_q, int n_kv, __global const float *buf,
 *                          float p0, float p1, float p2, float p3);
 *   #define CLATTN_HAS_MASK_MOD 1
 *   int   clattn_mask_mod(int b, int h, int q_idx, int kv_idx, int n_q,
 *                         int n_kv, __global const float *buf,
 *                         float p0, float p1, float p2, float p3);
 *
 * Build options (one program per (D, Dv, flags); all kernels live in it):
 *   -cl-std=CL1.2 -DHEAD_DIM=D -DVALUE_DIM=Dv (1..256, any value)
 *   -DHAS_BIAS=0|1 -DHAS_KV_LEN=0|1 -DHAS_LSE=0|1
 *   tunables (defaults in brackets):
 *     ROWS_PER_ITEM [6]   sdpa_fwd_cpu: query rows per work-item; 6 x 16
 *                         keys = 12 AVX2 accumulators (the 6x16 GEMM tile)
 *     ROW_GROUPS    [clamp(6144 / (ROWS_PER_ITEM * (D + Dv)), 1, 8)]
 *                         sdpa_fwd_cpu: row groups per work-item sharing
 *                         each K/V block (8 at D = Dv = 64, 4 at 128, 2 at 256)
 *     KEY_BLOCK     [64]  sdpa_fwd_cpu: keys per step, multiple of 16;
 *                         also defines the kt padding Mp
 *     CPU_LOCAL     [2]   sdpa_fwd_cpu: reqd work-group size (see below)
 *     TILE_Q        [32]  sdpa_fwd_tiled: query rows per work-group
 *     TPR           [4]   sdpa_fwd_tiled: work-items per query row
 *     TILE_K        [32 if max(D,Dv) <= 128 else 16]
 *                         sdpa_fwd_tiled: keys per local-memory tile,
 *                         must be a multiple of TPR
 *     SOFTMAX_WG    [128] sdpa_softmax_rows: work-group size, power of 2
 *
 * ===================================================================
 * Common argument list of the fused kernels (sdpa_fwd_cpu, sdpa_fwd_tiled)
 *   0  __global const float *q
 *   1  __global const float *k_or_kt   (kt for sdpa_fwd_cpu, k for tiled)
 *   2  __global const float *v
 *   3  __global float *out
 *   4  __global float *lse             written only if HAS_LSE
 *   5  __global const float *bias      read only if HAS_BIAS; element
 *        (b,h,i,j) at b*bias_sb + h*bias_sh + i*bias_sn + j (64-bit math,
 *        strides may be 0 to broadcast; h is the QUERY head)
 *   6  const long bias_sb   7 const long bias_sh   8 const long bias_sn
 *   9  __global const int *kv_len      [B], read only if HAS_KV_LEN
 *   10 __global const float *mod_buf   passed to the mod hooks only
 *   11..14 const float p0, p1, p2, p3
 *   15 const int B  16 const int Hq  17 const int Hkv  18 const int N
 *   19 const int M  20 const float scale
 *   21 const int window_left  22 const int window_right
 *   23 const long4 q_lay  24 const long4 k_lay  25 const long4 v_lay
 *   26 const long4 out_lay   (layouts above; k_lay is unused by
 *      sdpa_fwd_cpu, whose kt sdpa_transpose_k made contiguous)
 * Unused buffer arguments may be any valid buffer (never dereferenced).
 *
 * sdpa_transpose_k(k, kt, const int BHkv, const int M, const int Hkv,
 *                  const long4 k_lay)
 *   global = (Mp / 16, ceil(HEAD_DIM / 16), B*Hkv), local = (1, 1, 1).
 *   kt must hold B*Hkv*HEAD_DIM*Mp floats; run it before sdpa_fwd_cpu
 *   (whenever k changes). Build it with the same KEY_BLOCK.
 *
 * sdpa_fwd_cpu (CPU devices, POCL):
 *   global = (round_up(ceil(N / (ROWS_PER_ITEM * ROW_GROUPS)), CPU_LOCAL),
 *             B*Hq)
 *   local  = (CPU_LOCAL, 1)    (exactly; reqd_work_group_size)
 *   Needs kt from sdpa_transpose_k (same KEY_BLOCK). No local memory.
 *
 * sdpa_fwd_tiled (GPU devices):
 *   global = (ceil(N / TILE_Q) * TILE_Q * TPR, B*Hq)
 *   local  = (TILE_Q * TPR, 1)        (128 with the defaults)
 *   Local memory: 4*(TILE_K*(max(D,Dv)+1) + TILE_Q*(TILE_K+1) + TILE_Q)
 *   bytes: <= 20.4 KiB with the defaults for every D, Dv <= 256 (worst
 *   case max(D,Dv) = 128 with TILE_K = 32). The required work-group size
 *   is fixed; if CL_KERNEL_WORK_GROUP_SIZE is below it, rebuild with a
 *   smaller TILE_Q (or TPR, keeping TILE_K % TPR == 0).
 *
 * sdpa_softmax_rows (unfused path, S = q.k^T unscaled from a GEMM):
 *   args: __global float *s [B,Hq,N,M] (in place -> P), __global float *lse,
 *         bias, bias_sb, bias_sh, bias_sn, kv_len, mod_buf, p0..p3,
 *         B, Hq, Hkv, N, M, scale, window_left, window_right
 *         (i.e. the common list with q,k,v,out replaced by s).
 *   global = (SOFTMAX_WG, N, B*Hq), local = (SOFTMAX_WG, 1, 1).
 *   Fully masked rows give P = 0 and lse = -inf. Any M (64-bit offsets).
 *
 * sdpa_l2_normalize_rows(__global const float *x, __global float *y,
 *                        const int rows, const int D)
 *   y = x / max(||x||_2, 1e-12); in place (x == y) allowed.
 *   global = round_up(rows, L) for any L (e.g. 64), local = L or NULL.
 * ===================================================================
 */

#ifndef HEAD_DIM
#error "HEAD_DIM must be defined"
#endif
#ifndef VALUE_DIM
#define VALUE_DIM HEAD_DIM
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0
#endif
#ifndef HAS_KV_LEN
#define HAS_KV_LEN 0
#endif
#ifndef HAS_LSE
#define HAS_LSE 0
#endif

#ifndef ROWS_PER_ITEM
#define ROWS_PER_ITEM 6
#endif
#ifndef KEY_BLOCK
#define KEY_BLOCK 64
#endif
#ifndef ROW_GROUPS
/* keep the private q and accumulator rows of a work-item <= 24 KiB. (Wrong
 * rows once seen on llvmpipe with 5 groups at D=128, Dv=256 came from its
 * loop limit, clattn_ctx.loop_budget in src/internal.h, not from the size;
 * llvmpipe no longer runs this kernel.) */
#define ROW_GROUPS (6144 / (ROWS_PER_ITEM * (HEAD_DIM + VALUE_DIM)) > 8 ? 8 : \
                    6144 / (ROWS_PER_ITEM * (HEAD_DIM + VALUE_DIM)) < 1 ? 1 : \
                    6144 / (ROWS_PER_ITEM * (HEAD_DIM + VALUE_DIM)))
#endif
#ifndef CPU_LOCAL
#define CPU_LOCAL 2
#endif
#ifndef TILE_Q
#define TILE_Q 32
#endif
#ifndef TPR
#define TPR 4
#endif
#define CLATTN_MAXD (HEAD_DIM > VALUE_DIM ? HEAD_DIM : VALUE_DIM)
#ifndef TILE_K
#if CLATTN_MAXD > 128
#define TILE_K 16
#else
#define TILE_K 32
#endif
#endif
#ifndef SOFTMAX_WG
#define SOFTMAX_WG 128
#endif

#if (KEY_BLOCK % 16) != 0
#error "KEY_BLOCK must be a multiple of 16"
#endif
#if (TILE_K % TPR) != 0
#error "TILE_K must be a multiple of TPR"
#endif

/* Scores below this are masked: a -inf bias (boolean mask) lands here, and
 * it stays clear of any real score so NaN and finite values pass through. */
#define CLATTN_MASK_THRESH (-3.0e38f)
/* Masked / initial value. Finite on purpose: -inf - -inf would be NaN. */
#define CLATTN_NEG_BIG (-FLT_MAX)

#define CLATTN_ARGS                                                         \
    __global const float *q, __global const float *k_or_kt,                \
    __global const float *v, __global float *out, __global float *lse,     \
    __global const float *bias, const long bias_sb, const long bias_sh,    \
    const long bias_sn, __global const int *kv_len,                        \
    __global const float *mod_buf, const float p0, const float p1,         \
    const float p2, const float p3, const int B, const int Hq,             \
    const int Hkv, const int N, const int M, const float scale,            \
    const int window_left, const int window_right

/* Strided q, k, v, out of the fused kernels (see Layouts). */
#define CLATTN_LAYOUT_ARGS                                                  \
    const long4 q_lay, const long4 k_lay, const long4 v_lay,               \
    const long4 out_lay

/* Offset of row i of head h of batch b under layout lay. */
static inline long clattn_row_at(long4 lay, int b, int h, int i)
{
    return lay.s0 + (long)b * lay.s1 + (long)h * lay.s2 + (long)i * lay.s3;
}

/* Number of keys a batch may see: kv_len clamped to [0, M]. */
static inline int clattn_kv_limit(__global const int *kv_len, int b, int M)
{
#if HAS_KV_LEN
    return clamp(kv_len[b], 0, M);
#else
    return M;
#endif
}

/* Visible key interval [*lo, *hi) of query row i from window and kv_len.
 * 64-bit so that huge window values cannot overflow; empty -> [0, 0). */
static inline void clattn_row_range(int i, int N, int M, int kvl, int wl,
                                    int wr, int *lo, int *hi)
{
    const long base = (long)i + (long)M - (long)N;
    long l = 0, h = kvl;
    if (wl >= 0) l = max(l, base - (long)wl);
    if (wr >= 0) h = min(h, base + (long)wr + 1);
    if (l >= h) { l = 0; h = 0; }
    *lo = (int)l;
    *hi = (int)h;
}

/* Bias, score_mod and mask_mod for one in-range (i, j). The result is
 * CLATTN_NEG_BIG when mask_mod rejects, so a single threshold test later
 * covers both a -inf bias and the mask hook. */
static inline float clattn_finish_score(float s, __global const float *bias,
        long bias_sb, long bias_sh, long bias_sn,
        __global const float *mod_buf, float p0, float p1, float p2,
        float p3, int b, int h, int i, int j, int N, int M)
{
#if HAS_BIAS
    s += bias[(long)b * bias_sb + (long)h * bias_sh + (long)i * bias_sn + j];
#endif
#ifdef CLATTN_HAS_SCORE_MOD
    s = clattn_score_mod(s, b, h, i, j, N, M, mod_buf, p0, p1, p2, p3);
#endif
#ifdef CLATTN_HAS_MASK_MOD
    if (!clattn_mask_mod(b, h, i, j, N, M, mod_buf, p0, p1, p2, p3))
        s = CLATTN_NEG_BIG;
#endif
    return s;
}

#if HAS_BIAS || defined(CLATTN_HAS_SCORE_MOD) || defined(CLATTN_HAS_MASK_MOD)
#define CLATTN_NEEDS_FINISH 1
#else
#define CLATTN_NEEDS_FINISH 0
#endif

#define CLATTN_LOG2E 1.44269504088896341f
#define CLATTN_LN2 0.693147180559945309f

/* Score units of sdpa_fwd_cpu. Without hooks, q is pre-scaled by
 * scale*log2(e) so scores (and the running max) are in log2 units and
 * each probability is a bare exp2. Hooks and the -3e38 mask threshold are
 * defined on natural scores, so with hooks scores stay natural and the
 * conversion is one multiply inside the exponent. */
#if CLATTN_NEEDS_FINISH
#define CLATTN_QSCALE 1.0f
#define CLATTN_EXP2_ARG(x) ((x) * CLATTN_LOG2E)
#define CLATTN_LSE(m, l) ((m) + log(l))
#else
#define CLATTN_QSCALE CLATTN_LOG2E
#define CLATTN_EXP2_ARG(x) (x)
#define CLATTN_LSE(m, l) (((m) + log2(l)) * CLATTN_LN2)
#endif

/* Lazy running max: a block only raises a row's max, and so pays for the
 * horizontal max, the scalar exp2 and the accumulator rescale, when one
 * of its scores exceeds the current max by more than this (5.5 natural or
 * 8 log2 units, i.e. a factor <= 256). Otherwise probabilities are
 * exp(s - m) <= 256: no overflow short of M * 256 * max|v| ~ FLT_MAX, and
 * the same relative rounding. After a row's first block this is the rare
 * path for any realistic score distribution; the result is the same
 * softmax (m cancels between the sum and the accumulators). */
#define CLATTN_MAX_SLACK (CLATTN_NEEDS_FINISH ? 5.5f : 8.0f)

/* Horizontal reductions, written on scalar components: once per row per
 * block, so cost is irrelevant, and oclgrind's uninitialised-value checker
 * misreports the .lo/.hi shuffles. */
#define CLATTN_HRED16(F, x)                                                 \
    F(F(F(F((x).s0, (x).s1), F((x).s2, (x).s3)),                            \
          F(F((x).s4, (x).s5), F((x).s6, (x).s7))),                         \
      F(F(F((x).s8, (x).s9), F((x).sa, (x).sb)),                            \
        F(F((x).sc, (x).sd), F((x).se, (x).sf))))
#define CLATTN_ADD(a, b) ((a) + (b))
#define CLATTN_OR(a, b) ((a) | (b))

static inline float clattn_hmax16(float16 x) { return CLATTN_HRED16(fmax, x); }
static inline float clattn_hsum16(float16 x) { return CLATTN_HRED16(CLATTN_ADD, x); }

#define CLATTN_LOG2E 1.44269504088896341f
#define CLATTN_LN2 0.693147180559945309f

/* 2^x for x < 127 (or NaN), 16 lanes: round-to-nearest split x = n + f,
 * |f| <= 1/2, degree-6 minimax polynomial for 2^f (relative error 1.8e-8
 * in exact arithmetic, ~1 ulp in float), times 2^n built in the exponent
 * bits. x < -127 is clamped to -127, where 2^n's exponent field is 0, so
 * the result is exactly 0 without a final select (weight < 6e-39 of the
 * row max). NaN passes the clamp (isless is false) and gives NaN, so NaN
 * scores still propagate. About 12 vector ops, vs ~20 for the natural exp
 * with its own log2(e) multiply and two selects. */
static inline float16 clattn_exp2_16(float16 x)
{
    x = select(x, (float16)-127.0f, isless(x, (float16)-127.0f));
    /* Round to nearest via the 1.5*2^23 trick: no floor()/convert calls,
     * which POCL scalarises; n's integer sits in t's low mantissa bits. */
    const float16 t = x + 12582912.0f;
    const float16 n = t - 12582912.0f;
    const float16 f = x - n;                       /* exact */
    float16 y = 1.554085874e-4f;
    y = y * f + 1.338582340e-3f;
    y = y * f + 9.617941404e-3f;
    y = y * f + 5.550367853e-2f;
    y = y * f + 2.402265099e-1f;
    y = y * f + 6.931471855e-1f;
    y = y * f + 1.0f;
    const float16 two_n = as_float16((as_int16(t) - 0x4B400000 + 127) << 23);
    return y * two_n;
}

/* ------------------------------------------------------------------ */
/* K transpose for sdpa_fwd_cpu: keys become the contiguous axis so that
 * one q element can be broadcast against 16 keys with one vector load.
 * Padding keys are zero so whole KEY_BLOCKs can be loaded without bounds
 * checks (they are masked anyway). A work-item moves a tile of 16 keys by
 * 16 of d: 16 vector loads along d, 16 vector stores along keys. One
 * element per work-item cost more than the attention itself for short
 * texts (a BERT batch of 12-token sentences, padded to 64 keys). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void sdpa_transpose_k(__global const float *k, __global float *kt,
                      const int BHkv, const int M, const int Hkv,
                      const long4 k_lay)
{
    const int j0 = get_global_id(0) * 16;
    const int d0 = get_global_id(1) * 16;
    const int bh = get_global_id(2);
    const int Mp = (M + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    if (j0 >= Mp || d0 >= HEAD_DIM || bh >= BHkv) return;
    const int dn = min(16, HEAD_DIM - d0);
    /* t[jj][dd] = k[j0 + jj][d0 + dd], 0 past M or HEAD_DIM */
    float t[16][16];
    for (int jj = 0; jj < 16; ++jj) {
        const int j = j0 + jj;
        __global const float *src =
            k + clattn_row_at(k_lay, bh / Hkv, bh % Hkv, min(j, M - 1)) + d0;
        if (j < M && dn == 16) {
            vstore16(vload16(0, src), 0, t[jj]);
        } else {
            for (int dd = 0; dd < 16; ++dd)
                t[jj][dd] = (j < M && dd < dn) ? src[dd] : 0.0f;
        }
    }
    const int jb = j0 / KEY_BLOCK;
    __global float *dst = kt + (((long)bh * (Mp / KEY_BLOCK) + jb) * HEAD_DIM + d0) * KEY_BLOCK
                             + (j0 - jb * KEY_BLOCK);
    for (int dd = 0; dd < dn; ++dd) {
        float col[16];
        for (int jj = 0; jj < 16; ++jj) col[jj] = t[jj][dd];
        vstore16(vload16(0, col), 0, dst + (long)dd * KEY_BLOCK);
    }
}

/* ------------------------------------------------------------------ */
/* A. CPU kernel. A work-item owns ROW_GROUPS groups of ROWS_PER_ITEM
 * query rows and walks KEY_BLOCK keys at a time over the union of its
 * rows' visible ranges. Each K/V block is used by every group while it is
 * in L1/L2: with one group per work-item, a long single head (M = 65536,
 * 32 MiB of K+V) streams K and V from DRAM once per 6 rows and runs at a
 * quarter of the speed. Within a group the loop orders keep ROWS_PER_ITEM
 * float16 accumulators live (12 AVX2 registers) so the FMA units, not
 * loads/stores, bound the inner loops. No local memory or barriers: on a
 * CPU the caches do the sharing and barriers only cost. */
/* Position mask of an edge block: keys outside [mlo, mhi) (relative to
 * the block start; c0 = first key of this 16-key chunk) become
 * CLATTN_NEG_BIG. Interior blocks skip it. */
static inline float16 clattn_edge_mask(float16 sv, int edge, int c0, int mlo,
                                       int mhi)
{
    if (edge) {
        const int16 jv = (int16)c0 + (int16)(0, 1, 2, 3, 4, 5, 6, 7,
                                             8, 9, 10, 11, 12, 13, 14, 15);
        sv = select(sv, (float16)CLATTN_NEG_BIG,
                    (jv < (int16)mlo) | (jv >= (int16)mhi));
    }
    return sv;
}

/* One softmax pass over a row's block of KEY_BLOCK scores sr with max mu
 * (>= CLATTN_MASK_THRESH): pr = exp(s - mu), returns the per-lane sums.
 * *big gets the lanes whose score exceeds mu + CLATTN_MAX_SLACK, in which
 * case the caller redoes the row with the exact max. One pass per chunk
 * keeps register pressure low (no spills around the polynomial). NaN
 * scores give NaN probabilities and so poison the row, as required. */
static inline float16 clattn_probs(const float *sr, float *pr, float mu,
                                   int edge, int mlo, int mhi, int16 *big)
{
    float16 psum = (float16)0.0f;
    float16 smax = (float16)CLATTN_NEG_BIG;
#pragma unroll
    for (int c = 0; c < KEY_BLOCK / 16; ++c) {
        const float16 sv = clattn_edge_mask(vload16(c, sr), edge, 16 * c,
                                            mlo, mhi);
        /* plain compare-select max (one instruction; NaN handling is not
         * needed here, NaN reaches the sums through p) */
        smax = select(smax, sv, isgreater(sv, smax));
        const float16 p = clattn_exp2_16(CLATTN_EXP2_ARG(sv - mu));
        psum += p;
        vstore16(p, c, pr);
    }
    *big = isgreater(smax, (float16)(mu + CLATTN_MAX_SLACK));
    return psum;
}

#define R_ ROWS_PER_ITEM
#define G_ ROW_GROUPS
#define KB16 (KEY_BLOCK / 16)
#define DV16 (VALUE_DIM / 16)

__kernel __attribute__((reqd_work_group_size(CPU_LOCAL, 1, 1)))
void sdpa_fwd_cpu(CLATTN_ARGS, CLATTN_LAYOUT_ARGS)
{
    __global const float *kt = k_or_kt;
    const int bh = get_global_id(1);
    const int i0 = get_global_id(0) * (G_ * R_);
    if (i0 >= N || bh >= B * Hq) return;
    const int b = bh / Hq, h = bh - b * Hq;
    const int hkv = h / (Hq / Hkv), bhkv = b * Hkv + hkv;
    const int Mp = (M + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    const int kvl = clattn_kv_limit(kv_len, b, M);
    const long v_sn = v_lay.s3;

    __global const float *ktp = kt + (long)bhkv * HEAD_DIM * Mp;  /* panels */
    __global const float *vp = v + clattn_row_at(v_lay, b, hkv, 0);

    float qr[G_ * R_][HEAD_DIM];   /* pre-scaled query rows */
    float acc[G_ * R_][VALUE_DIM];
    /* running max (see CLATTN_QSCALE for its units) and per-lane partial
     * row sums: the sums are reduced once at the end, not once per block */
    float m[G_ * R_], lv[G_ * R_][16];
    int lo[G_ * R_], hi[G_ * R_];
    /* per group: union of visible ranges, and the range every row sees */
    int glo[G_], ghi[G_], gmaxlo[G_], gminhi[G_];
    float sc[R_][KEY_BLOCK];  /* scores of a block */
    float pb[R_][KEY_BLOCK];  /* probabilities (kept apart so that the rare
                               * slow softmax path can redo a row) */
    float alpha[R_];
    int jlo = M, jhi = 0;
    const float qscale = scale * CLATTN_QSCALE;

    for (int g = 0; g < G_; ++g) {
        glo[g] = M; ghi[g] = 0; gmaxlo[g] = 0; gminhi[g] = M;
        for (int r = g * R_; r < (g + 1) * R_; ++r) {
            const int i = i0 + r;
            lo[r] = 0; hi[r] = 0;
            if (i < N) {
                clattn_row_range(i, N, M, kvl, window_left, window_right,
                                 &lo[r], &hi[r]);
                __global const float *qp = q + clattn_row_at(q_lay, b, h, i);
                for (int d = 0; d < HEAD_DIM; ++d) qr[r][d] = qp[d] * qscale;
            } else {
                for (int d = 0; d < HEAD_DIM; ++d) qr[r][d] = 0.0f;
            }
            if (lo[r] < hi[r]) {
                glo[g] = min(glo[g], lo[r]);
                ghi[g] = max(ghi[g], hi[r]);
            }
            gmaxlo[g] = max(gmaxlo[g], lo[r]);
            gminhi[g] = min(gminhi[g], hi[r]);
            m[r] = CLATTN_NEG_BIG;
            vstore16((float16)0.0f, 0, lv[r]);
            for (int d = 0; d < VALUE_DIM; ++d) acc[r][d] = 0.0f;
        }
        jlo = min(jlo, glo[g]);
        jhi = max(jhi, ghi[g]);
    }


    /* Blocks start KEY_BLOCK-aligned so whole blocks stay inside padded kt;
     * a group skips every block outside its rows' visible union. */
    for (int j0 = jlo / KEY_BLOCK * KEY_BLOCK; j0 < jhi; j0 += KEY_BLOCK) {
      for (int g = 0; g < G_; ++g) {
        if (j0 >= ghi[g] || j0 + KEY_BLOCK <= glo[g]) continue;
        const int rb = g * R_;

        /* S = Q K^T for the block, 16 keys x R_ rows at a time. */
        for (int c = 0; c < KB16; ++c) {
            float16 a[R_];
#pragma unroll
            for (int r = 0; r < R_; ++r) a[r] = (float16)0.0f;
            __global const float *kp = ktp + (long)j0 * HEAD_DIM + 16 * c;
            /* unroll 2 (here and in P.V): ~5% faster on Zen 3 in
             * interleaved A/B runs; no unroll or 4 were both slower */
#pragma unroll 2
            for (int d = 0; d < HEAD_DIM; ++d) {
                const float16 kv = vload16(0, kp + d * KEY_BLOCK);
#pragma unroll
                for (int r = 0; r < R_; ++r)
                    a[r] += (float16)qr[rb + r][d] * kv;
            }
#pragma unroll
            for (int r = 0; r < R_; ++r) vstore16(a[r], c, sc[r]);
        }

#if CLATTN_NEEDS_FINISH
        {
            const int jend = min(j0 + KEY_BLOCK, ghi[g]);
            for (int r = 0; r < R_; ++r) {
                const int jb = max(j0, lo[rb + r]), je = min(jend, hi[rb + r]);
                for (int j = jb; j < je; ++j)
                    sc[r][j - j0] = clattn_finish_score(sc[r][j - j0], bias,
                        bias_sb, bias_sh, bias_sn, mod_buf, p0, p1, p2, p3,
                        b, h, i0 + rb + r, j, N, M);
            }
        }
#endif

        /* Online softmax. Position masks are needed only on blocks that
         * are not inside every row's range. Scores below
         * CLATTN_MASK_THRESH (-inf bias, mask_mod) need no explicit mask:
         * they sit >= 2e31 below any unmasked max, so exp2 flushes them to
         * 0; a row whose max is itself below the threshold is "all masked
         * so far" and gets P = 0 with its max left at CLATTN_NEG_BIG.
         * (Without hooks scores are in log2 units, so there a row whose
         * every dot-product score is below -2.1e38 counts as masked, not
         * only below -3e38: unreachable with finite |q|,|k| < 1e19.) */
        const int edge = (j0 < gmaxlo[g]) || (j0 + KEY_BLOCK > gminhi[g]);
        int resc = 0;
        for (int r = 0; r < R_; ++r) {
            const float mold = m[rb + r];
            const int mlo = lo[rb + r] - j0, mhi = hi[rb + r] - j0;
            float16 psum;
            alpha[r] = 1.0f;
            /* Fast path: one pass with the current max. */
            int slow = mold < CLATTN_MASK_THRESH;
            if (!slow) {
                int16 big;
                psum = clattn_probs(sc[r], pb[r], mold, edge, mlo, mhi, &big);
                slow = CLATTN_HRED16(CLATTN_OR, big) != 0;
            }
            if (slow) {
                /* exact new max over the visible scores (fmax skips NaN) */
                float16 bmv = (float16)CLATTN_NEG_BIG;
#pragma unroll
                for (int c = 0; c < KB16; ++c)
                    bmv = fmax(bmv, clattn_edge_mask(vload16(c, sc[r]), edge,
                                                     16 * c, mlo, mhi));
                const float mnew = fmax(mold, clattn_hmax16(bmv));
                if (mnew < CLATTN_MASK_THRESH) {
                    /* nothing visible yet: P = 0, except that NaN scores
                     * (skipped by fmax) must still poison the row */
                    psum = (float16)0.0f;
#pragma unroll
                    for (int c = 0; c < KB16; ++c) {
                        const float16 sv = clattn_edge_mask(vload16(c, sc[r]),
                                                            edge, 16 * c, mlo, mhi);
                        const float16 p = select((float16)0.0f, sv, isnan(sv));
                        psum += p;
                        vstore16(p, c, pb[r]);
                    }
                } else {
                    int16 big;
                    psum = clattn_probs(sc[r], pb[r], mnew, edge, mlo, mhi, &big);
                    if (mnew != mold) {
                        alpha[r] = exp2(CLATTN_EXP2_ARG(mold - mnew));
                        resc = 1;
                    }
                    m[rb + r] = mnew;
                }
            }
            vstore16(vload16(0, lv[rb + r]) * alpha[r] + psum, 0, lv[rb + r]);
        }

        /* O = alpha * O + P V, vectorised along Dv; keys outside the
         * group's union have P = 0 and may lie past M, so they are skipped. */
        const int jb = max(glo[g] - j0, 0), je = min(KEY_BLOCK, ghi[g] - j0);
        __global const float *vb = vp + (long)j0 * v_sn;
        for (int c = 0; c < DV16; ++c) {
            float16 o[R_];
#pragma unroll
            for (int r = 0; r < R_; ++r) o[r] = vload16(c, acc[rb + r]);
            if (resc) {
#pragma unroll
                for (int r = 0; r < R_; ++r) o[r] *= alpha[r];
            }
#pragma unroll 2
            for (int j = jb; j < je; ++j) {
                const float16 vv = vload16(c, vb + (long)j * v_sn);
#pragma unroll
                for (int r = 0; r < R_; ++r) o[r] += (float16)pb[r][j] * vv;
            }
#pragma unroll
            for (int r = 0; r < R_; ++r) vstore16(o[r], c, acc[rb + r]);
        }
#if (VALUE_DIM % 16) != 0
        for (int d = DV16 * 16; d < VALUE_DIM; ++d) {
            float o[R_];
#pragma unroll
            for (int r = 0; r < R_; ++r) o[r] = acc[rb + r][d] * alpha[r];
            for (int j = jb; j < je; ++j) {
                const float vv = vb[(long)j * v_sn + d];
#pragma unroll
                for (int r = 0; r < R_; ++r) o[r] += pb[r][j] * vv;
            }
#pragma unroll
            for (int r = 0; r < R_; ++r) acc[rb + r][d] = o[r];
        }
#endif
      }
    }

    for (int r = 0; r < G_ * R_; ++r) {
        const int i = i0 + r;
        if (i >= N) break;
        const float l = clattn_hsum16(vload16(0, lv[r]));
        __global float *op = out + clattn_row_at(out_lay, b, h, i);
        /* l == 0 only when nothing was visible (the row max contributes
         * 2^0 = 1); a NaN l falls through and propagates. */
        if (l == 0.0f) {
            for (int d = 0; d < VALUE_DIM; ++d) op[d] = 0.0f;
        } else {
            const float inv = 1.0f / l;
            for (int d = 0; d < VALUE_DIM; ++d) op[d] = acc[r][d] * inv;
        }
#if HAS_LSE
        lse[(long)bh * N + i] = (l == 0.0f) ? -INFINITY : CLATTN_LSE(m[r], l);
#endif
    }
}
#undef R_
#undef G_

/* ------------------------------------------------------------------ */
/* B. GPU kernel. A work-group owns TILE_Q query rows with TPR work-items
 * per row. Each K tile, then V tile, of TILE_K keys is staged once in
 * local memory (one buffer reused for both, which is what keeps D = Dv =
 * 256 inside 32 KiB) and shared by all TILE_Q rows. */
#define TILED_WG (TILE_Q * TPR)
#define KPT (TILE_K / TPR)                      /* scores per work-item  */
#define DPT ((VALUE_DIM + TPR - 1) / TPR)       /* outputs per work-item */
#define KV_LD (CLATTN_MAXD + 1)   /* +1: rows of K apart by a bank shift */
#define S_LD (TILE_K + 1)

__kernel __attribute__((reqd_work_group_size(TILED_WG, 1, 1)))
void sdpa_fwd_tiled(CLATTN_ARGS, CLATTN_LAYOUT_ARGS)
{
    __local float kv_tile[TILE_K * KV_LD];
    __local float s_tile[TILE_Q * S_LD];
    __local float row_tile[TILE_Q];

    __global const float *k = k_or_kt;
    const int lid = get_local_id(0);
    const int r = lid / TPR, t = lid - r * TPR;
    const int bh = get_global_id(1);
    const int b = bh / Hq, h = bh - b * Hq;
    const int hkv = h / (Hq / Hkv);
    const int i0 = get_group_id(0) * TILE_Q;
    const int i = i0 + r;
    const int row_ok = i < N;
    const int kvl = clattn_kv_limit(kv_len, b, M);

    int lo = 0, hi = 0;
    if (row_ok)
        clattn_row_range(i, N, M, kvl, window_left, window_right, &lo, &hi);

    /* Group-uniform key range: window edges grow with i, so the union of
     * the rows' ranges lies inside [lo(first row), hi(last row)) computed
     * without the empty-range clamp. */
    long glo = 0, ghi = kvl;
    {
        const int ilast = min(i0 + TILE_Q, N) - 1;
        if (window_left >= 0)
            glo = max(glo, (long)i0 + M - N - window_left);
        if (window_right >= 0)
            ghi = min(ghi, (long)ilast + M - N + window_right + 1);
    }

    __global const float *qp = q + clattn_row_at(q_lay, b, h, row_ok ? i : 0);
    __global const float *kb = k + clattn_row_at(k_lay, b, hkv, 0);
    __global const float *vb = v + clattn_row_at(v_lay, b, hkv, 0);
    const long k_sn = k_lay.s3, v_sn = v_lay.s3;

    float acc[DPT];
    for (int y = 0; y < DPT; ++y) acc[y] = 0.0f;
    float mrow = CLATTN_NEG_BIG, lrow = 0.0f;   /* kept by t == 0 */

    for (long j0l = glo; j0l < ghi; j0l += TILE_K) {
        const int j0 = (int)j0l;
        barrier(CLK_LOCAL_MEM_FENCE);           /* previous V tile done */
        for (int x = lid; x < TILE_K * HEAD_DIM; x += TILED_WG) {
            const int kk = x / HEAD_DIM, d = x - kk * HEAD_DIM;
            const int j = j0 + kk;
            kv_tile[kk * KV_LD + d] =
                (j < M) ? kb[(long)j * k_sn + d] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        float sacc[KPT];
        for (int x = 0; x < KPT; ++x) sacc[x] = 0.0f;
        for (int d = 0; d < HEAD_DIM; ++d) {
            const float qd = row_ok ? qp[d] : 0.0f;
            for (int x = 0; x < KPT; ++x)
                sacc[x] += qd * kv_tile[(t + TPR * x) * KV_LD + d];
        }
        for (int x = 0; x < KPT; ++x) {
            const int kk = t + TPR * x, j = j0 + kk;
            float s = CLATTN_NEG_BIG;
            if (j >= lo && j < hi) {
                s = clattn_finish_score(sacc[x] * scale, bias, bias_sb,
                        bias_sh, bias_sn, mod_buf, p0, p1, p2, p3,
                        b, h, i, j, N, M);
                if (s < CLATTN_MASK_THRESH) s = CLATTN_NEG_BIG;
            }
            s_tile[r * S_LD + kk] = s;
        }
        barrier(CLK_LOCAL_MEM_FENCE);           /* K reads + S writes done */

        for (int x = lid; x < TILE_K * VALUE_DIM; x += TILED_WG) {
            const int kk = x / VALUE_DIM, d = x - kk * VALUE_DIM;
            const int j = j0 + kk;
            kv_tile[kk * KV_LD + d] =
                (j < M) ? vb[(long)j * v_sn + d] : 0.0f;
        }
        if (t == 0) {
            __local float *sr = s_tile + r * S_LD;
            float bm = CLATTN_NEG_BIG;
            for (int kk = 0; kk < TILE_K; ++kk) bm = fmax(bm, sr[kk]);
            const float mnew = fmax(mrow, bm);
            float bsum = 0.0f;
            for (int kk = 0; kk < TILE_K; ++kk) {
                const float s = sr[kk];
                const float p = (s < CLATTN_MASK_THRESH) ? 0.0f : exp(s - mnew);
                sr[kk] = p;
                bsum += p;
            }
            const float a = exp(mrow - mnew);
            lrow = lrow * a + bsum;
            mrow = mnew;
            row_tile[r] = a;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        const float a = row_tile[r];
        __local const float *pr = s_tile + r * S_LD;
        for (int y = 0; y < DPT; ++y) {
            const int d = t + TPR * y;
            if (d < VALUE_DIM) {
                float o = acc[y] * a;
                for (int kk = 0; kk < TILE_K; ++kk)
                    o += pr[kk] * kv_tile[kk * KV_LD + d];
                acc[y] = o;
            }
        }
    }

    /* Share the row sum with the row's other work-items. */
    barrier(CLK_LOCAL_MEM_FENCE);
    if (t == 0) row_tile[r] = lrow;
    barrier(CLK_LOCAL_MEM_FENCE);
    const float lsum = row_tile[r];
    if (!row_ok) return;

    __global float *op = out + clattn_row_at(out_lay, b, h, i);
    const float inv = (lsum == 0.0f) ? 0.0f : 1.0f / lsum;
    for (int y = 0; y < DPT; ++y) {
        const int d = t + TPR * y;
        if (d < VALUE_DIM) op[d] = (lsum == 0.0f) ? 0.0f : acc[y] * inv;
    }
#if HAS_LSE
    if (t == 0)
        lse[(long)bh * N + i] = (lsum == 0.0f) ? -INFINITY : mrow + log(lsum);
#endif
}

/* ------------------------------------------------------------------ */
/* C. Row softmax for the unfused path. One work-group per row, so M can
 * be anything: pass 1 writes final scores in place while each work-item
 * keeps its own online (max, sum); a tree reduction merges them; pass 2
 * turns scores into probabilities. */
__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1)))
void sdpa_softmax_rows(__global float *s, __global float *lse,
        __global const float *bias, const long bias_sb, const long bias_sh,
        const long bias_sn, __global const int *kv_len,
        __global const float *mod_buf, const float p0, const float p1,
        const float p2, const float p3, const int B, const int Hq,
        const int Hkv, const int N, const int M, const float scale,
        const int window_left, const int window_right)
{
    __local float red_m[SOFTMAX_WG];
    __local float red_l[SOFTMAX_WG];

    const int lid = get_local_id(0);
    const int i = get_global_id(1);
    const int bh = get_global_id(2);
    const int b = bh / Hq, h = bh - b * Hq;
    const int kvl = clattn_kv_limit(kv_len, b, M);
    int lo, hi;
    clattn_row_range(i, N, M, kvl, window_left, window_right, &lo, &hi);
    __global float *row = s + ((long)bh * N + i) * M;

    float mt = CLATTN_NEG_BIG, lt = 0.0f;
    for (int j = lo + lid; j < hi; j += SOFTMAX_WG) {
        float x = clattn_finish_score(row[j] * scale, bias, bias_sb, bias_sh,
                bias_sn, mod_buf, p0, p1, p2, p3, b, h, i, j, N, M);
        if (x < CLATTN_MASK_THRESH) {
            x = CLATTN_NEG_BIG;
        } else if (x > mt) {
            lt = lt * exp(mt - x) + 1.0f;
            mt = x;
        } else {
            lt += exp(x - mt);                  /* NaN x propagates here */
        }
        row[j] = x;
    }
    red_m[lid] = mt;
    red_l[lid] = lt;
    for (int st = SOFTMAX_WG / 2; st > 0; st >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < st) {
            const float m1 = red_m[lid], m2 = red_m[lid + st];
            const float mm = fmax(m1, m2);
            red_l[lid] = red_l[lid] * exp(m1 - mm) + red_l[lid + st] * exp(m2 - mm);
            red_m[lid] = mm;
        }
    }
    /* Global fence too: pass 2 reads scores other work-items wrote. */
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    const float mr = red_m[0], lr = red_l[0];

    for (int j = lid; j < M; j += SOFTMAX_WG) {
        float p = 0.0f;
        if (lr != 0.0f && j >= lo && j < hi) {
            const float x = row[j];
            if (!(x < CLATTN_MASK_THRESH)) p = exp(x - mr) / lr;
        }
        row[j] = p;
    }
#if HAS_LSE
    if (lid == 0)
        lse[(long)bh * N + i] = (lr == 0.0f) ? -INFINITY : mr + log(lr);
#endif
}

/* ------------------------------------------------------------------ */
/* D. Row L2 normalisation (cosine-similarity scores). */
__kernel void sdpa_l2_normalize_rows(__global const float *x, __global float *y,
                                     const int rows, const int D)
{
    const int r = get_global_id(0);
    if (r >= rows) return;
    __global const float *xp = x + (long)r * D;
    __global float *yp = y + (long)r * D;
    float ss = 0.0f;
    for (int d = 0; d < D; ++d) ss += xp[d] * xp[d];
    const float inv = 1.0f / fmax(sqrt(ss), 1e-12f);
    for (int d = 0; d < D; ++d) yp[d] = xp[d] * inv;
}
