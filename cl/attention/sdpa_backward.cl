/*
 * attention_backward.cl - fused, flash-style backward of scaled dot-product
 * attention (FlashAttention-2's algorithm) for clattn.
 * OpenCL C 1.2, no extensions, must be built WITHOUT fast-math options.
 *
 * ===================================================================
 * What is computed (natural units; s = score, P = softmax probabilities)
 *   s_ij  = scale * q_i . k_j [+ bias(b,h,i,j)], masks as in attention.cl
 *   P_ij  = exp(s_ij - lse_i)            (lse from the forward; P = 0 for
 *                                         masked pairs and lse = -inf rows)
 *   dV_j  = sum_i P_ij dO_i              dP_ij = dO_i . v_j
 *   Delta_i = dO_i . O_i  (= sum_j P_ij dP_ij)
 *   dS_ij = P_ij (dP_ij - Delta_i)       (= dLoss / ds_ij, also dbias)
 *   dQ_i  = scale * sum_j dS_ij k_j      dK_j = scale * sum_i dS_ij q_i
 * dK and dV of a kv head sum over the query heads that share it (GQA).
 * Nothing of size N x M is stored (but dS for dbias) and no float atomics
 * are used; P is recomputed from lse. Blocks outside every owned row's
 * visible range (causal, windows, kv_len) are skipped.
 *
 * Two kernel families (BWD_CPU selects which one is compiled):
 *   tiled (GPUs), FlashAttention-2's split: sdpa_bwd_dkdv_tiled owns key
 *     rows and loops over every query of the group's query heads (dK,
 *     dV); sdpa_bwd_dq_tiled owns query rows and loops over every key
 *     (dQ, and dS for dbias); tiles of the other side in local memory.
 *   cpu: sdpa_bwd_cpu owns key rows as the tiled dkdv kernel does, in
 *     registers and private memory, and also adds each key block's share
 *     of dQ into a partial dQ of its own (one per key chunk), which
 *     sdpa_bwd_dq_reduce sums: S and dP are computed once rather than
 *     twice (10 N x M x D products instead of 14), for chunks x B x Hq x
 *     N x D floats of scratch (the host caps it at 64 MiB, or uses dq
 *     itself with one chunk).
 *
 * Layouts (float32, row-major, contiguous)
 *   q, dq   [B, Hq, N, D]      k, dk  [B, Hkv, M, D]    D  = HEAD_DIM
 *   dout    [B, Hq, N, Dv]     v, dv  [B, Hkv, M, Dv]   Dv = VALUE_DIM
 *   dl      [2, B, Hq, Np]     Delta, then lse in score units (LSE_UNITS)
 *                              with +FLT_MAX for rows of lse = -inf and
 *                              for the padding rows N..Np-1 (so P = 0)
 *   ds      [B, Hq, N, M]      dS (for dbias), optional
 *   dqp     [chunks, B, Hq, N, D]  partial dQ of sdpa_bwd_cpu, in units
 *                              of 1 / (scale * CLATTN_QSCALE)
 *   qt, dot [B, Hq, Np/QUERY_BLOCK, D (Dv), QUERY_BLOCK]  q and dout in
 *     panels for sdpa_bwd_cpu (made by sdpa_bwd_panels); Np =
 *     round_up(N, QUERY_BLOCK) for the cpu family, N for the tiled one;
 *     padding rows are zero.
 *
 * Masking rules are attention.cl's (clattn_row_range there): key j is
 * visible to query i iff i+M-N-wl <= j <= i+M-N+wr (bottom-right aligned,
 * -1 = unlimited), j < kv_len[b], mask_mod(...) != 0 and the score is not
 * below -3e38 (a -inf bias entry). score_mod is not supported (the host
 * refuses it; defining CLATTN_HAS_SCORE_MOD is an error here).
 *
 * Build options: -cl-std=CL1.2 -DHEAD_DIM=D -DVALUE_DIM=Dv (1..256)
 *   -DHAS_BIAS=0|1 -DBWD_CPU=0|1 (which kernel family is compiled)
 *   tunables (defaults in brackets):
 *     ROWS_PER_ITEM [6]  sdpa_bwd_cpu: key rows per group (6 x 16 lanes =
 *                        12 AVX2 accumulators, as attention.cl)
 *     KV_GROUPS     [clamp(6144 / (ROWS_PER_ITEM * 2(D + Dv)), 1, 8)]
 *                        sdpa_bwd_cpu: row groups per key block (private
 *                        rows <= 24 KiB); KV_ROWS = groups * rows
 *     QUERY_BLOCK   [64] sdpa_bwd_cpu: queries per step (multiple of 16)
 *     CPU_LOCAL     [1]  sdpa_bwd_cpu: reqd work-group size
 *     TPR           [4]  tiled kernels: work-items per owned row
 *     DQ_TILE_Q [32], DQ_TILE_K [32]     sdpa_bwd_dq_tiled: owned query
 *                        rows per group; keys per local tile (mult. of TPR)
 *     KV_TILE_K [32], KV_TILE_Q [32]     sdpa_bwd_dkdv_tiled: owned key
 *                        rows per group; queries per local tile (mult. TPR)
 *   Local memory (floats): dq_tiled  DQ_TILE_K*(D+Dv+2) + DQ_TILE_Q*(DQ_TILE_K+1)
 *                          dkdv_tiled KV_TILE_Q*(D+Dv+4) + 2*KV_TILE_K*(KV_TILE_Q+1)
 *   The host picks tile sizes that fit the device (attention_backward.c).
 *
 * ===================================================================
 * Argument list of the gradient kernels (BWD_ARGS)
 *   0 q   1 qt   2 k   3 v   4 dout   5 dot   6 dl
 *   7..10 outputs g1..g4:
 *     sdpa_bwd_cpu         dk, dv, dqp, ds
 *     sdpa_bwd_dkdv_tiled  dk, dv, -, -
 *     sdpa_bwd_dq_tiled    dq, ds, -, -
 *   11 bias  12 bias_sb  13 bias_sh  14 bias_sn (longs, 0 broadcasts)
 *   15 kv_len (int [B])  16 mod_buf  17..20 p0..p3
 *   21 B  22 Hq  23 Hkv  24 N  25 M  26 Np  27 scale  28 wl  29 wr
 *   30 flags: BWD_WRITE_G1 | .. | BWD_WRITE_G4, the outputs written
 *   31 chunks (sdpa_bwd_cpu: key chunks per (b, kv head), >= 1)
 * Unused buffers may be any valid buffer. Only sdpa_bwd_cpu reads qt, dot.
 *
 * sdpa_bwd_cpu        global (round_up(chunks, CPU_LOCAL), B*Hkv),
 *                     local (CPU_LOCAL, 1)
 * sdpa_bwd_dq_tiled   global (ceil(N / DQ_TILE_Q) * DQ_TILE_Q * TPR, B*Hq)
 *                     local (DQ_TILE_Q * TPR, 1)
 * sdpa_bwd_dkdv_tiled global (ceil(M / KV_TILE_K) * KV_TILE_K * TPR, B*Hkv)
 *                     local (KV_TILE_K * TPR, 1)
 * ds is written at the visible (i, j) of the blocks visited; the host
 * zero-fills it first.
 *
 * sdpa_bwd_prep(out, dout, lse, dl, BHq, N, Np): global (Np, BHq).
 * sdpa_bwd_panels(x, xt, BH, rows, C, PB): x [BH, rows, C] ->
 *   xt [BH, ceil(rows/PB), C, PB]; global (round_up(rows, PB), C, BH).
 * sdpa_bwd_dq_reduce(dqp, dq, chunks, total): dq = sum over chunks of
 *   dqp / CLATTN_QSCALE; dq may be dqp when chunks = 1; global (total).
 * sdpa_bwd_l2_normalize(x, y, norms, rows): y = x / max(|x|, 1e-12) over
 *   HEAD_DIM, norms[r] = |x| (attention.cl's sdpa_l2_normalize_rows plus
 *   the norms the backward needs); global (rows).
 * sdpa_bwd_l2_backward(y, norms, dy, dx, rows): backward of that
 *   normalisation, dx = (dy - y (y . dy)) / |x| (dy / 1e-12 where the
 *   floor applied); global (rows). dx may be dy.
 * sdpa_bwd_dbias_reduce(ds, dbias, B, Hq, N, M, Bb, Hb, Nb): dbias
 *   [Bb, Hb, Nb, M] (each extent full or 1) = ds summed over the extents
 *   of 1, in a fixed order; global (M, Nb, Bb*Hb).
 * ===================================================================
 */

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef VALUE_DIM
#define VALUE_DIM HEAD_DIM
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0
#endif
#ifndef BWD_CPU
#define BWD_CPU CLATTN_DEVICE_CPU
#endif
#ifdef CLATTN_HAS_SCORE_MOD
#error "score_mod has no backward"
#endif

#ifndef ROWS_PER_ITEM
#define ROWS_PER_ITEM 6
#endif
#define CLATTN_GROUPS(W) (6144 / (ROWS_PER_ITEM * (W)) > 8 ? 8 : \
                          6144 / (ROWS_PER_ITEM * (W)) < 1 ? 1 : \
                          6144 / (ROWS_PER_ITEM * (W)))
#ifndef KV_GROUPS
#define KV_GROUPS CLATTN_GROUPS(2 * (HEAD_DIM + VALUE_DIM))
#endif
#ifndef QUERY_BLOCK
#define QUERY_BLOCK 64
#endif
#ifndef CPU_LOCAL
#define CPU_LOCAL 1
#endif
#ifndef TPR
#define TPR 4
#endif
#ifndef DQ_TILE_Q
#define DQ_TILE_Q 32
#endif
#ifndef DQ_TILE_K
#define DQ_TILE_K 32
#endif
#ifndef KV_TILE_K
#define KV_TILE_K 32
#endif
#ifndef KV_TILE_Q
#define KV_TILE_Q 32
#endif

#if (QUERY_BLOCK % 16) != 0
#error "QUERY_BLOCK must be a multiple of 16"
#endif
#if (DQ_TILE_K % TPR) != 0 || (KV_TILE_Q % TPR) != 0
#error "DQ_TILE_K and KV_TILE_Q must be multiples of TPR"
#endif

#define BWD_WRITE_G1 1
#define BWD_WRITE_G2 2
#define BWD_WRITE_G3 4
#define BWD_WRITE_G4 8

/* As attention.cl: scores below the threshold are masked (a -inf bias, or
 * mask_mod's rejection, which sets CLATTN_NEG_BIG). */
#define CLATTN_MASK_THRESH (-3.0e38f)
#define CLATTN_NEG_BIG (-FLT_MAX)
#define CLATTN_LOG2E 1.44269504088896341f

#if HAS_BIAS || defined(CLATTN_HAS_MASK_MOD)
#define CLATTN_NEEDS_FINISH 1
#else
#define CLATTN_NEEDS_FINISH 0
#endif

/* Score units of the CPU kernels, as attention.cl's sdpa_fwd_cpu: without
 * hooks the owned rows are pre-scaled by scale*log2(e), so scores and lse
 * are in log2 units and P is a bare exp2; with hooks (defined on natural
 * scores) the conversion is one multiply inside the exponent. The tiled
 * kernels work in natural units. */
#if BWD_CPU && !CLATTN_NEEDS_FINISH
#define LSE_UNITS CLATTN_LOG2E
#define CLATTN_QSCALE CLATTN_LOG2E
#define CLATTN_EXP2_ARG(x) (x)
#else
#define LSE_UNITS 1.0f
#define CLATTN_QSCALE 1.0f
#define CLATTN_EXP2_ARG(x) ((x) * CLATTN_LOG2E)
#endif

#define BWD_ARGS                                                            \
    __global const float *q, __global const float *qt,                    \
    __global const float *k, __global const float *v,                     \
    __global const float *dout, __global const float *dot,                \
    __global const float *dl, __global float *g1, __global float *g2,     \
    __global float *g3, __global float *g4,                                \
    __global const float *bias, const long bias_sb, const long bias_sh,    \
    const long bias_sn, __global const int *kv_len,                        \
    __global const float *mod_buf, const float p0, const float p1,         \
    const float p2, const float p3, const int B, const int Hq,             \
    const int Hkv, const int N, const int M, const int Np,                 \
    const float scale, const int window_left, const int window_right,      \
    const int flags, const int chunks

/* ---- masking (the rules of attention.cl) ------------------------------ */

/* Visible key interval [*lo, *hi) of query row i; empty -> [0, 0). */
static inline void bwd_row_range(int i, int N, int M, int kvl, int wl, int wr,
                                 int *lo, int *hi)
{
    const long base = (long)i + (long)M - (long)N;
    long l = 0, h = kvl;
    if (wl >= 0) l = max(l, base - (long)wl);
    if (wr >= 0) h = min(h, base + (long)wr + 1);
    if (l >= h) { l = 0; h = 0; }
    *lo = (int)l;
    *hi = (int)h;
}

/* The transpose: queries [*lo, *hi) that see key j; empty -> [0, 0). */
static inline void bwd_col_range(int j, int N, int M, int kvl, int wl, int wr,
                                 int *lo, int *hi)
{
    const long base = (long)j - (long)M + (long)N;
    long l = 0, h = (j < kvl) ? N : 0;
    if (wr >= 0) l = max(l, base - (long)wr);
    if (wl >= 0) h = min(h, base + (long)wl + 1);
    if (l >= h) { l = 0; h = 0; }
    *lo = (int)l;
    *hi = (int)h;
}

/* Bias and mask_mod for one in-range (i, j) of query head h. */
static inline float bwd_finish(float s, __global const float *bias,
        long bias_sb, long bias_sh, long bias_sn,
        __global const float *mod_buf, float p0, float p1, float p2,
        float p3, int b, int h, int i, int j, int N, int M)
{
#if HAS_BIAS
    s += bias[(long)b * bias_sb + (long)h * bias_sh + (long)i * bias_sn + j];
#endif
#ifdef CLATTN_HAS_MASK_MOD
    if (!clattn_mask_mod(b, h, i, j, N, M, mod_buf, p0, p1, p2, p3))
        s = CLATTN_NEG_BIG;
#endif
    return s;
}

/* ---- small kernels ------------------------------------------------------- */

/* Delta_i = dO_i . O_i and the lse in score units, padded to Np rows. */
__kernel void sdpa_bwd_prep(__global const float *out, __global const float *dout,
                            __global const float *lse, __global float *dl,
                            const int BHq, const int N, const int Np)
{
    const int i = get_global_id(0);
    const int bh = get_global_id(1);
    if (i >= Np || bh >= BHq) return;
    float delta = 0.0f, l = FLT_MAX;
    if (i < N) {
        const long row = (long)bh * N + i;
        __global const float *o = out + row * VALUE_DIM;
        __global const float *g = dout + row * VALUE_DIM;
        for (int d = 0; d < VALUE_DIM; ++d) delta += o[d] * g[d];
        const float x = lse[row];
        /* -inf: no visible key, so P = 0 everywhere (exp(s - FLT_MAX)) */
        l = (x == -INFINITY) ? FLT_MAX : x * LSE_UNITS;
    }
    dl[(long)bh * Np + i] = delta;
    dl[(long)BHq * Np + (long)bh * Np + i] = l;
}

/* Blocked transpose into panels of PB rows: element (r, c) of matrix bh
 * goes to panel r / PB at [c][r % PB]; rows past the end are zero. */
__kernel void sdpa_bwd_panels(__global const float *x, __global float *xt,
                              const int BH, const int rows, const int C, const int PB)
{
    const int r = get_global_id(0);
    const int c = get_global_id(1);
    const int bh = get_global_id(2);
    const int rp = (rows + PB - 1) / PB * PB;
    if (r >= rp || c >= C || bh >= BH) return;
    const float val = (r < rows) ? x[((long)bh * rows + r) * C + c] : 0.0f;
    const int pb = r / PB;
    xt[(((long)bh * (rp / PB) + pb) * C + c) * PB + (r - pb * PB)] = val;
}

/* The forward's cosine normalisation (sdpa_l2_normalize_rows, same float
 * operations), keeping each row's norm for the backward. */
__kernel void sdpa_bwd_l2_normalize(__global const float *x, __global float *y,
                                    __global float *norms, const int rows)
{
    const int r = get_global_id(0);
    if (r >= rows) return;
    __global const float *xp = x + (long)r * HEAD_DIM;
    __global float *yp = y + (long)r * HEAD_DIM;
    float ss = 0.0f;
    for (int d = 0; d < HEAD_DIM; ++d) ss += xp[d] * xp[d];
    const float n = sqrt(ss);
    const float inv = 1.0f / fmax(n, 1e-12f);
    for (int d = 0; d < HEAD_DIM; ++d) yp[d] = xp[d] * inv;
    norms[r] = n;
}

/* y = x / max(n, eps): dx = (dy - y (y . dy)) / n where n > eps; where the
 * floor applied y = x / eps is linear, so dx = dy / eps (PyTorch's
 * F.normalize gives the same). */
__kernel void sdpa_bwd_l2_backward(__global const float *y, __global const float *norms,
                                   __global const float *dy, __global float *dx,
                                   const int rows)
{
    const int r = get_global_id(0);
    if (r >= rows) return;
    __global const float *yp = y + (long)r * HEAD_DIM;
    __global const float *gp = dy + (long)r * HEAD_DIM;
    __global float *xp = dx + (long)r * HEAD_DIM;
    const float n = norms[r];
    if (n > 1e-12f) {
        float dot = 0.0f;
        for (int d = 0; d < HEAD_DIM; ++d) dot += yp[d] * gp[d];
        const float inv = 1.0f / n;
        for (int d = 0; d < HEAD_DIM; ++d) xp[d] = (gp[d] - yp[d] * dot) * inv;
    } else {
        for (int d = 0; d < HEAD_DIM; ++d) xp[d] = gp[d] * 1e12f;
    }
}

/* dbias [Bb, Hb, Nb, M] from ds [B, Hq, N, M]: sums over the broadcast
 * extents (those of 1) in a fixed order, so every run gives the same. */
__kernel void sdpa_bwd_dbias_reduce(__global const float *ds, __global float *dbias,
                                    const int B, const int Hq, const int N, const int M,
                                    const int Bb, const int Hb, const int Nb)
{
    const int j = get_global_id(0);
    const int ii = get_global_id(1);
    const int bhb = get_global_id(2);
    if (j >= M || ii >= Nb || bhb >= Bb * Hb) return;
    const int bb = bhb / Hb, hb = bhb - bb * Hb;
    const int b0 = (Bb == 1) ? 0 : bb, b1 = (Bb == 1) ? B : bb + 1;
    const int h0 = (Hb == 1) ? 0 : hb, h1 = (Hb == 1) ? Hq : hb + 1;
    const int i0 = (Nb == 1) ? 0 : ii, i1 = (Nb == 1) ? N : ii + 1;
    float acc = 0.0f;
    for (int b = b0; b < b1; ++b)
        for (int h = h0; h < h1; ++h)
            for (int i = i0; i < i1; ++i)
                acc += ds[(((long)b * Hq + h) * N + i) * M + j];
    dbias[((long)bhb * Nb + ii) * M + j] = acc;
}

#if BWD_CPU
/* ------------------------------------------------------------------ */
/* A. CPU kernels. As attention.cl's sdpa_fwd_cpu: a work-item owns
 * groups of ROWS_PER_ITEM rows and walks blocks of the other side; the
 * products against the block are R x 16 register tiles over transposed
 * panels (S, dP), and the accumulations (dQ, dK, dV) are vectorised along
 * the head dimension with R accumulators over the block. No local memory,
 * no barriers. */

/* 2^x, 16 lanes (attention.cl's clattn_exp2_16: x < -127 gives exactly 0,
 * NaN propagates). */
static inline float16 bwd_exp2_16(float16 x)
{
    x = select(x, (float16)-127.0f, isless(x, (float16)-127.0f));
    const float16 t = x + 12582912.0f;
    const float16 n = t - 12582912.0f;
    const float16 f = x - n;
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

/* Lanes c0.. c0+15 of a block outside [mlo, mhi) become CLATTN_NEG_BIG. */
static inline float16 bwd_edge_mask(float16 sv, int edge, int c0, int mlo, int mhi)
{
    if (edge) {
        const int16 jv = (int16)c0 + (int16)(0, 1, 2, 3, 4, 5, 6, 7,
                                             8, 9, 10, 11, 12, 13, 14, 15);
        sv = select(sv, (float16)CLATTN_NEG_BIG, (jv < (int16)mlo) | (jv >= (int16)mhi));
    }
    return sv;
}

#define R_ ROWS_PER_ITEM

/* acc[r][:] += sum_{x in [xb, xe)} w[r][x] * src[x][:] for R_ rows: the
 * block product of the accumulation side, vectorised along the width W
 * with R_ float16 accumulators kept over the whole x loop. */
#define BWD_ACCUMULATE(acc, w, src, W, xb, xe)                              \
    do {                                                                    \
        for (int c_ = 0; c_ < (W) / 16; ++c_) {                             \
            float16 o_[R_];                                                 \
            _Pragma("unroll")                                               \
            for (int r_ = 0; r_ < R_; ++r_) o_[r_] = vload16(c_, acc[r_]);  \
            _Pragma("unroll 2")                                             \
            for (int x_ = (xb); x_ < (xe); ++x_) {                          \
                const float16 s_ = vload16(c_, (src) + (long)x_ * (W));     \
                _Pragma("unroll")                                           \
                for (int r_ = 0; r_ < R_; ++r_)                             \
                    o_[r_] += (float16)w[r_][x_] * s_;                      \
            }                                                               \
            _Pragma("unroll")                                               \
            for (int r_ = 0; r_ < R_; ++r_) vstore16(o_[r_], c_, acc[r_]);  \
        }                                                                   \
        for (int d_ = (W) / 16 * 16; d_ < (W); ++d_) {                      \
            float o_[R_];                                                   \
            _Pragma("unroll")                                               \
            for (int r_ = 0; r_ < R_; ++r_) o_[r_] = acc[r_][d_];           \
            for (int x_ = (xb); x_ < (xe); ++x_) {                          \
                const float s_ = (src)[(long)x_ * (W) + d_];                \
                _Pragma("unroll")                                           \
                for (int r_ = 0; r_ < R_; ++r_) o_[r_] += w[r_][x_] * s_;   \
            }                                                               \
            _Pragma("unroll")                                               \
            for (int r_ = 0; r_ < R_; ++r_) acc[r_][d_] = o_[r_];           \
        }                                                                   \
    } while (0)

/* out[r][:] = rows[r] . panel block (W deep, BLK wide), 16 lanes at a
 * time: the register-tiled product of the score side. */
#define BWD_PANEL_PRODUCT(out, rows, panel, W, BLK)                         \
    do {                                                                    \
        for (int c_ = 0; c_ < (BLK) / 16; ++c_) {                           \
            float16 a_[R_];                                                 \
            _Pragma("unroll")                                               \
            for (int r_ = 0; r_ < R_; ++r_) a_[r_] = (float16)0.0f;         \
            __global const float *pp_ = (panel) + 16 * c_;                  \
            _Pragma("unroll 2")                                             \
            for (int d_ = 0; d_ < (W); ++d_) {                              \
                const float16 kv_ = vload16(0, pp_ + d_ * (BLK));           \
                _Pragma("unroll")                                           \
                for (int r_ = 0; r_ < R_; ++r_)                             \
                    a_[r_] += (float16)rows[r_][d_] * kv_;                  \
            }                                                               \
            _Pragma("unroll")                                               \
            for (int r_ = 0; r_ < R_; ++r_) vstore16(a_[r_], c_, out[r_]);  \
        }                                                                   \
    } while (0)

#define GK_ KV_GROUPS
#define KV_ROWS (KV_GROUPS * ROWS_PER_ITEM)

/* dK, dV and partial dQ. Work-item w of (b, kv head) owns the key blocks
 * w, w + chunks, w + 2 chunks, ... (KV_ROWS keys each, interleaved so that
 * causal work spreads evenly) and walks every query of every query head
 * of the group for each. dK and dV of its keys are complete when it is
 * done; dQ gets its share sum_j dS_ij kr_j into its own slice g3[w] (kr
 * = k * scale * CLATTN_QSCALE), summed over the chunks afterwards by
 * sdpa_bwd_dq_reduce. That reuses S and dP for dQ instead of recomputing
 * them in a query-parallel kernel (10 rather than 14 N x M x D products),
 * for chunks x B x Hq x N x D floats of scratch. */
__kernel __attribute__((reqd_work_group_size(CPU_LOCAL, 1, 1)))
void sdpa_bwd_cpu(BWD_ARGS)
{
    const int w = get_global_id(0);
    const int bhkv = get_global_id(1);
    if (w >= chunks || bhkv >= B * Hkv) return;
    const int b = bhkv / Hkv, hk = bhkv - b * Hkv;
    const int G = Hq / Hkv;
    const int kvl = clamp(kv_len[b], 0, M);
    const int nblocks = (M + KV_ROWS - 1) / KV_ROWS;
    __global float *dqw = g3 + (long)w * B * Hq * N * HEAD_DIM;
    const int want_dk = (flags & BWD_WRITE_G1) != 0, want_dv = (flags & BWD_WRITE_G2) != 0;
    const int want_dq = (flags & BWD_WRITE_G3) != 0;

    float kr[KV_ROWS][HEAD_DIM];    /* pre-scaled key rows */
    float vr[KV_ROWS][VALUE_DIM];
    float dka[KV_ROWS][HEAD_DIM];   /* sum_i dS_ij q_i */
    float dva[KV_ROWS][VALUE_DIM];  /* sum_i P_ij dO_i */
    float dst[KV_ROWS][QUERY_BLOCK]; /* dS^T of a query block, all groups */
    float sc[R_][QUERY_BLOCK];      /* S^T, then P^T of a group */
    float dp[R_][QUERY_BLOCK];      /* dP^T of a group */
    int lo[KV_ROWS], hi[KV_ROWS];   /* queries that see each key */
    int glo[GK_], ghi[GK_], gmaxlo[GK_], gminhi[GK_];
    const float kscale = scale * CLATTN_QSCALE;

    if (want_dq) {
        for (int hh = 0; hh < G; ++hh) {
            __global float *z = dqw + (long)(b * Hq + hk * G + hh) * N * HEAD_DIM;
            for (long x = 0; x < (long)N * HEAD_DIM; ++x) z[x] = 0.0f;
        }
    }

    for (int kb = w; kb < nblocks; kb += chunks) {
      const int j0 = kb * KV_ROWS;
      int ilo = N, ihi = 0;
      for (int g = 0; g < GK_; ++g) {
          glo[g] = N; ghi[g] = 0; gmaxlo[g] = 0; gminhi[g] = N;
          for (int r = g * R_; r < (g + 1) * R_; ++r) {
              const int j = j0 + r;
              lo[r] = 0; hi[r] = 0;
              if (j < M) {
                  bwd_col_range(j, N, M, kvl, window_left, window_right, &lo[r], &hi[r]);
                  __global const float *kp = k + ((long)bhkv * M + j) * HEAD_DIM;
                  __global const float *vp = v + ((long)bhkv * M + j) * VALUE_DIM;
                  for (int d = 0; d < HEAD_DIM; ++d) kr[r][d] = kp[d] * kscale;
                  for (int d = 0; d < VALUE_DIM; ++d) vr[r][d] = vp[d];
              } else {
                  for (int d = 0; d < HEAD_DIM; ++d) kr[r][d] = 0.0f;
                  for (int d = 0; d < VALUE_DIM; ++d) vr[r][d] = 0.0f;
              }
              if (lo[r] < hi[r]) {
                  glo[g] = min(glo[g], lo[r]);
                  ghi[g] = max(ghi[g], hi[r]);
              }
              gmaxlo[g] = max(gmaxlo[g], lo[r]);
              gminhi[g] = min(gminhi[g], hi[r]);
              for (int d = 0; d < HEAD_DIM; ++d) dka[r][d] = 0.0f;
              for (int d = 0; d < VALUE_DIM; ++d) dva[r][d] = 0.0f;
          }
          ilo = min(ilo, glo[g]);
          ihi = max(ihi, ghi[g]);
      }

      for (int hh = 0; hh < G; ++hh) {
        const int h = hk * G + hh;
        const int bh = b * Hq + h;
        __global const float *qtp = qt + (long)bh * HEAD_DIM * Np;
        __global const float *gtp = dot + (long)bh * VALUE_DIM * Np;
        __global const float *qp = q + (long)bh * N * HEAD_DIM;
        __global const float *gp = dout + (long)bh * N * VALUE_DIM;
        __global const float *delta = dl + (long)bh * Np;
        __global const float *lsea = dl + (long)B * Hq * Np + (long)bh * Np;
        __global float *dqp = dqw + (long)bh * N * HEAD_DIM;

        for (int i0 = ilo / QUERY_BLOCK * QUERY_BLOCK; i0 < ihi; i0 += QUERY_BLOCK) {
          for (int g = 0; g < GK_; ++g) {
            const int rb = g * R_;
            if (i0 >= ghi[g] || i0 + QUERY_BLOCK <= glo[g]) {
                for (int r = rb; r < rb + R_; ++r)
                    for (int x = 0; x < QUERY_BLOCK; ++x) dst[r][x] = 0.0f;
                continue;
            }
            float (*kg)[HEAD_DIM] = kr + rb;
            float (*vg)[VALUE_DIM] = vr + rb;
            float (*dkg)[HEAD_DIM] = dka + rb;
            float (*dvg)[VALUE_DIM] = dva + rb;
            float (*dsg)[QUERY_BLOCK] = dst + rb;

            BWD_PANEL_PRODUCT(sc, kg, qtp + (long)i0 * HEAD_DIM, HEAD_DIM, QUERY_BLOCK);
            BWD_PANEL_PRODUCT(dp, vg, gtp + (long)i0 * VALUE_DIM, VALUE_DIM, QUERY_BLOCK);

#if CLATTN_NEEDS_FINISH
            {
                const int iend = min(i0 + QUERY_BLOCK, ghi[g]);
                for (int r = 0; r < R_; ++r) {
                    const int ib = max(i0, lo[rb + r]), ie = min(iend, hi[rb + r]);
                    for (int i = ib; i < ie; ++i)
                        sc[r][i - i0] = bwd_finish(sc[r][i - i0], bias, bias_sb, bias_sh,
                            bias_sn, mod_buf, p0, p1, p2, p3, b, h, i, j0 + rb + r, N, M);
                }
            }
#endif
            /* P = exp(s - lse), dS = P (dP - Delta); position masks only
             * on blocks not inside every row's range. Masked scores and
             * lse = FLT_MAX rows give P = 0 exactly. */
            const int edge = (i0 < gmaxlo[g]) || (i0 + QUERY_BLOCK > gminhi[g]);
            for (int r = 0; r < R_; ++r) {
                const int mlo = lo[rb + r] - i0, mhi = hi[rb + r] - i0;
#pragma unroll
                for (int c = 0; c < QUERY_BLOCK / 16; ++c) {
                    const float16 s = bwd_edge_mask(vload16(c, sc[r]), edge, 16 * c, mlo, mhi);
                    const float16 l = vload16(c, lsea + i0);
                    const float16 dd = vload16(c, delta + i0);
                    const float16 p = bwd_exp2_16(CLATTN_EXP2_ARG(s - l));
                    vstore16(p, c, sc[r]);
                    vstore16(p * (vload16(c, dp[r]) - dd), c, dsg[r]);
                }
            }
#if HAS_BIAS
            if (flags & BWD_WRITE_G4) {
                for (int r = 0; r < R_; ++r) {
                    const int j = j0 + rb + r;
                    const int ib = max(i0, lo[rb + r]), ie = min(i0 + QUERY_BLOCK, hi[rb + r]);
                    for (int i = ib; i < ie; ++i)
                        g4[((long)bh * N + i) * M + j] = dsg[r][i - i0];
                }
            }
#endif
            /* dV += P^T dO and dK += dS^T Q over the group's queries here. */
            const int ib = max(glo[g] - i0, 0), ie = min(QUERY_BLOCK, ghi[g] - i0);
            if (want_dv)
                BWD_ACCUMULATE(dvg, sc, gp + (long)i0 * VALUE_DIM, VALUE_DIM, ib, ie);
            if (want_dk)
                BWD_ACCUMULATE(dkg, dsg, qp + (long)i0 * HEAD_DIM, HEAD_DIM, ib, ie);
          }
          /* dQ share of these keys: rows i of the block += sum_r dS^T[r][i]
           * kr[r], four rows at a time against each 16-wide slice of kr. */
          if (want_dq) {
            const int ib = max(ilo - i0, 0), ie = min(QUERY_BLOCK, ihi - i0);
            __global float *dqb = dqp + (long)i0 * HEAD_DIM;
            for (int i = ib; i < ie; i += 4) {
                const int n4 = min(4, ie - i);
#if HEAD_DIM >= 16
                for (int c = 0; c < HEAD_DIM / 16; ++c) {
                    float16 a0 = vload16(c, dqb + (long)i * HEAD_DIM);
                    float16 a1 = n4 > 1 ? vload16(c, dqb + (long)(i + 1) * HEAD_DIM) : 0.0f;
                    float16 a2 = n4 > 2 ? vload16(c, dqb + (long)(i + 2) * HEAD_DIM) : 0.0f;
                    float16 a3 = n4 > 3 ? vload16(c, dqb + (long)(i + 3) * HEAD_DIM) : 0.0f;
#pragma unroll 2
                    for (int r = 0; r < KV_ROWS; ++r) {
                        const float16 kv = vload16(c, kr[r]);
                        a0 += (float16)dst[r][i] * kv;
                        a1 += (float16)dst[r][min(i + 1, QUERY_BLOCK - 1)] * kv;
                        a2 += (float16)dst[r][min(i + 2, QUERY_BLOCK - 1)] * kv;
                        a3 += (float16)dst[r][min(i + 3, QUERY_BLOCK - 1)] * kv;
                    }
                    vstore16(a0, c, dqb + (long)i * HEAD_DIM);
                    if (n4 > 1) vstore16(a1, c, dqb + (long)(i + 1) * HEAD_DIM);
                    if (n4 > 2) vstore16(a2, c, dqb + (long)(i + 2) * HEAD_DIM);
                    if (n4 > 3) vstore16(a3, c, dqb + (long)(i + 3) * HEAD_DIM);
                }
#endif
#if (HEAD_DIM % 16) != 0
                /* the last HEAD_DIM % 16 columns, rows outermost. (d
                 * outermost made llvmpipe drop the kernel's later dK/dV
                 * stores at HEAD_DIM = 8 and 24, most likely through its
                 * loop limit, clattn_ctx.loop_budget in src/internal.h;
                 * llvmpipe no longer runs this family.) */
#define DQ_TAIL (HEAD_DIM % 16)
                for (int x = 0; x < n4; ++x) {
                    __global float *row = dqb + (long)(i + x) * HEAD_DIM + (HEAD_DIM - DQ_TAIL);
                    float a[DQ_TAIL];
                    for (int t = 0; t < DQ_TAIL; ++t) a[t] = row[t];
                    for (int r = 0; r < KV_ROWS; ++r) {
                        const float wgt = dst[r][i + x];
                        for (int t = 0; t < DQ_TAIL; ++t)
                            a[t] += wgt * kr[r][HEAD_DIM - DQ_TAIL + t];
                    }
                    for (int t = 0; t < DQ_TAIL; ++t) row[t] = a[t];
                }
#undef DQ_TAIL
#endif
            }
          }
        }
      }

      const int nrows = min(KV_ROWS, M - j0);
      if (want_dk) {
          __global float *op = g1 + ((long)bhkv * M + j0) * HEAD_DIM;
          for (int r = 0; r < nrows; ++r)
              for (int d = 0; d < HEAD_DIM; ++d) op[r * HEAD_DIM + d] = dka[r][d] * scale;
      }
      if (want_dv) {
          __global float *op = g2 + ((long)bhkv * M + j0) * VALUE_DIM;
          for (int r = 0; r < nrows; ++r)
              for (int d = 0; d < VALUE_DIM; ++d) op[r * VALUE_DIM + d] = dva[r][d];
      }
    }
}

/* dq = sum of the chunks' partial dQ, times 1 / CLATTN_QSCALE (the
 * partials hold dS kr with kr = k * scale * CLATTN_QSCALE). dq may be
 * dqp itself when chunks is 1. */
__kernel void sdpa_bwd_dq_reduce(__global const float *dqp, __global float *dq,
                                 const int chunks, const long total)
{
    const long e = get_global_id(0);
    if (e >= total) return;
    float acc = 0.0f;
    for (int c = 0; c < chunks; ++c) acc += dqp[(long)c * total + e];
    dq[e] = acc * (1.0f / CLATTN_QSCALE);
}
#undef GK_
#undef R_

#else /* !BWD_CPU */
/* ------------------------------------------------------------------ */
/* B. Tiled kernels (GPUs). A work-group owns a tile of rows with TPR
 * work-items per row; tiles of the other side are staged in local memory
 * and shared by all owned rows, as attention.cl's sdpa_fwd_tiled. */

#define DQ_WG (DQ_TILE_Q * TPR)
#define DQ_KPT (DQ_TILE_K / TPR)              /* keys per work-item     */
#define DQ_DPT ((HEAD_DIM + TPR - 1) / TPR)   /* dq outputs per item    */
#define K_LD (HEAD_DIM + 1)                   /* +1: bank shift per row */
#define V_LD (VALUE_DIM + 1)
#define DS_LD (DQ_TILE_K + 1)

__kernel __attribute__((reqd_work_group_size(DQ_WG, 1, 1)))
void sdpa_bwd_dq_tiled(BWD_ARGS)
{
    __local float k_tile[DQ_TILE_K * K_LD];
    __local float v_tile[DQ_TILE_K * V_LD];
    __local float ds_tile[DQ_TILE_Q * DS_LD];

    const int lid = get_local_id(0);
    const int r = lid / TPR, t = lid - r * TPR;
    const int bh = get_global_id(1);
    const int b = bh / Hq, h = bh - b * Hq;
    const int bhkv = b * Hkv + h / (Hq / Hkv);
    const int i0 = get_group_id(0) * DQ_TILE_Q;
    const int i = i0 + r;
    const int row_ok = i < N;
    const int kvl = clamp(kv_len[b], 0, M);

    int lo = 0, hi = 0;
    if (row_ok)
        bwd_row_range(i, N, M, kvl, window_left, window_right, &lo, &hi);
    /* the tile's union of visible keys (uniform over the group) */
    int glo = M, ghi = 0;
    for (int rr = 0; rr < DQ_TILE_Q && i0 + rr < N; ++rr) {
        int l, u;
        bwd_row_range(i0 + rr, N, M, kvl, window_left, window_right, &l, &u);
        if (l < u) { glo = min(glo, l); ghi = max(ghi, u); }
    }

    __global const float *qp = q + ((long)bh * N + (row_ok ? i : 0)) * HEAD_DIM;
    __global const float *gp = dout + ((long)bh * N + (row_ok ? i : 0)) * VALUE_DIM;
    __global const float *kb = k + (long)bhkv * M * HEAD_DIM;
    __global const float *vb = v + (long)bhkv * M * VALUE_DIM;
    const float lsev = row_ok ? dl[(long)B * Hq * Np + (long)bh * Np + i] : FLT_MAX;
    const float dd = row_ok ? dl[(long)bh * Np + i] : 0.0f;

    float acc[DQ_DPT];
    for (int y = 0; y < DQ_DPT; ++y) acc[y] = 0.0f;

    for (int j0 = glo; j0 < ghi; j0 += DQ_TILE_K) {
        barrier(CLK_LOCAL_MEM_FENCE);           /* previous tile consumed */
        for (int x = lid; x < DQ_TILE_K * HEAD_DIM; x += DQ_WG) {
            const int kk = x / HEAD_DIM, d = x - kk * HEAD_DIM, j = j0 + kk;
            k_tile[kk * K_LD + d] = (j < M) ? kb[(long)j * HEAD_DIM + d] : 0.0f;
        }
        for (int x = lid; x < DQ_TILE_K * VALUE_DIM; x += DQ_WG) {
            const int kk = x / VALUE_DIM, d = x - kk * VALUE_DIM, j = j0 + kk;
            v_tile[kk * V_LD + d] = (j < M) ? vb[(long)j * VALUE_DIM + d] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        float sacc[DQ_KPT], pacc[DQ_KPT];
        for (int x = 0; x < DQ_KPT; ++x) { sacc[x] = 0.0f; pacc[x] = 0.0f; }
        for (int d = 0; d < HEAD_DIM; ++d) {
            const float qd = row_ok ? qp[d] : 0.0f;
            for (int x = 0; x < DQ_KPT; ++x)
                sacc[x] += qd * k_tile[(t + TPR * x) * K_LD + d];
        }
        for (int d = 0; d < VALUE_DIM; ++d) {
            const float gd = row_ok ? gp[d] : 0.0f;
            for (int x = 0; x < DQ_KPT; ++x)
                pacc[x] += gd * v_tile[(t + TPR * x) * V_LD + d];
        }
        for (int x = 0; x < DQ_KPT; ++x) {
            const int kk = t + TPR * x, j = j0 + kk;
            float ds = 0.0f;
            if (j >= lo && j < hi) {
                const float s = bwd_finish(sacc[x] * scale, bias, bias_sb, bias_sh,
                        bias_sn, mod_buf, p0, p1, p2, p3, b, h, i, j, N, M);
                const float p = (s < CLATTN_MASK_THRESH) ? 0.0f : exp(s - lsev);
                ds = p * (pacc[x] - dd);
#if HAS_BIAS
                if (flags & BWD_WRITE_G2)
                    g2[((long)bh * N + i) * M + j] = ds;
#endif
            }
            ds_tile[r * DS_LD + kk] = ds;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        __local const float *dsr = ds_tile + r * DS_LD;
        for (int y = 0; y < DQ_DPT; ++y) {
            const int d = t + TPR * y;
            if (d < HEAD_DIM) {
                float o = acc[y];
                for (int kk = 0; kk < DQ_TILE_K; ++kk)
                    o += dsr[kk] * k_tile[kk * K_LD + d];
                acc[y] = o;
            }
        }
    }

    if (!row_ok || !(flags & BWD_WRITE_G1)) return;
    __global float *op = g1 + ((long)bh * N + i) * HEAD_DIM;
    for (int y = 0; y < DQ_DPT; ++y) {
        const int d = t + TPR * y;
        if (d < HEAD_DIM) op[d] = acc[y] * scale;
    }
}

#define KV_WG (KV_TILE_K * TPR)
#define KV_QPT (KV_TILE_Q / TPR)              /* queries per work-item  */
#define KV_DPT ((HEAD_DIM + TPR - 1) / TPR)   /* dk outputs per item    */
#define KV_VPT ((VALUE_DIM + TPR - 1) / TPR)  /* dv outputs per item    */
#define P_LD (KV_TILE_Q + 1)

__kernel __attribute__((reqd_work_group_size(KV_WG, 1, 1)))
void sdpa_bwd_dkdv_tiled(BWD_ARGS)
{
    __local float q_tile[KV_TILE_Q * K_LD];
    __local float g_tile[KV_TILE_Q * V_LD];
    __local float p_tile[KV_TILE_K * P_LD];
    __local float ds_tile[KV_TILE_K * P_LD];
    __local float l_tile[KV_TILE_Q];
    __local float d_tile[KV_TILE_Q];

    const int lid = get_local_id(0);
    const int r = lid / TPR, t = lid - r * TPR;
    const int bhkv = get_global_id(1);
    const int b = bhkv / Hkv, hk = bhkv - b * Hkv;
    const int G = Hq / Hkv;
    const int j0 = get_group_id(0) * KV_TILE_K;
    const int j = j0 + r;
    const int key_ok = j < M;
    const int kvl = clamp(kv_len[b], 0, M);

    int lo = 0, hi = 0;
    if (key_ok)
        bwd_col_range(j, N, M, kvl, window_left, window_right, &lo, &hi);
    int glo = N, ghi = 0;
    for (int rr = 0; rr < KV_TILE_K && j0 + rr < M; ++rr) {
        int l, u;
        bwd_col_range(j0 + rr, N, M, kvl, window_left, window_right, &l, &u);
        if (l < u) { glo = min(glo, l); ghi = max(ghi, u); }
    }

    __global const float *kp = k + ((long)bhkv * M + (key_ok ? j : 0)) * HEAD_DIM;
    __global const float *vp = v + ((long)bhkv * M + (key_ok ? j : 0)) * VALUE_DIM;

    float dka[KV_DPT], dva[KV_VPT];
    for (int y = 0; y < KV_DPT; ++y) dka[y] = 0.0f;
    for (int y = 0; y < KV_VPT; ++y) dva[y] = 0.0f;

    for (int hh = 0; hh < G; ++hh) {
        const int h = hk * G + hh;
        const int bh = b * Hq + h;
        __global const float *qb = q + (long)bh * N * HEAD_DIM;
        __global const float *gb = dout + (long)bh * N * VALUE_DIM;
        __global const float *delta = dl + (long)bh * Np;
        __global const float *lsea = dl + (long)B * Hq * Np + (long)bh * Np;

        for (int i0 = glo; i0 < ghi; i0 += KV_TILE_Q) {
            barrier(CLK_LOCAL_MEM_FENCE);       /* previous tile consumed */
            for (int x = lid; x < KV_TILE_Q * HEAD_DIM; x += KV_WG) {
                const int qq = x / HEAD_DIM, d = x - qq * HEAD_DIM, i = i0 + qq;
                q_tile[qq * K_LD + d] = (i < N) ? qb[(long)i * HEAD_DIM + d] : 0.0f;
            }
            for (int x = lid; x < KV_TILE_Q * VALUE_DIM; x += KV_WG) {
                const int qq = x / VALUE_DIM, d = x - qq * VALUE_DIM, i = i0 + qq;
                g_tile[qq * V_LD + d] = (i < N) ? gb[(long)i * VALUE_DIM + d] : 0.0f;
            }
            for (int x = lid; x < KV_TILE_Q; x += KV_WG) {
                const int i = i0 + x;
                l_tile[x] = (i < N) ? lsea[i] : FLT_MAX;
                d_tile[x] = (i < N) ? delta[i] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            float sacc[KV_QPT], pacc[KV_QPT];
            for (int x = 0; x < KV_QPT; ++x) { sacc[x] = 0.0f; pacc[x] = 0.0f; }
            for (int d = 0; d < HEAD_DIM; ++d) {
                const float kd = key_ok ? kp[d] : 0.0f;
                for (int x = 0; x < KV_QPT; ++x)
                    sacc[x] += kd * q_tile[(t + TPR * x) * K_LD + d];
            }
            for (int d = 0; d < VALUE_DIM; ++d) {
                const float vd = key_ok ? vp[d] : 0.0f;
                for (int x = 0; x < KV_QPT; ++x)
                    pacc[x] += vd * g_tile[(t + TPR * x) * V_LD + d];
            }
            for (int x = 0; x < KV_QPT; ++x) {
                const int qq = t + TPR * x, i = i0 + qq;
                float p = 0.0f, ds = 0.0f;
                if (i >= lo && i < hi) {
                    const float s = bwd_finish(sacc[x] * scale, bias, bias_sb, bias_sh,
                            bias_sn, mod_buf, p0, p1, p2, p3, b, h, i, j, N, M);
                    p = (s < CLATTN_MASK_THRESH) ? 0.0f : exp(s - l_tile[qq]);
                    ds = p * (pacc[x] - d_tile[qq]);
                }
                p_tile[r * P_LD + qq] = p;
                ds_tile[r * P_LD + qq] = ds;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            __local const float *pr = p_tile + r * P_LD;
            __local const float *dsr = ds_tile + r * P_LD;
            for (int y = 0; y < KV_VPT; ++y) {
                const int d = t + TPR * y;
                if (d < VALUE_DIM) {
                    float o = dva[y];
                    for (int qq = 0; qq < KV_TILE_Q; ++qq)
                        o += pr[qq] * g_tile[qq * V_LD + d];
                    dva[y] = o;
                }
            }
            for (int y = 0; y < KV_DPT; ++y) {
                const int d = t + TPR * y;
                if (d < HEAD_DIM) {
                    float o = dka[y];
                    for (int qq = 0; qq < KV_TILE_Q; ++qq)
                        o += dsr[qq] * q_tile[qq * K_LD + d];
                    dka[y] = o;
                }
            }
        }
    }

    if (!key_ok) return;
    if (flags & BWD_WRITE_G1) {
        __global float *op = g1 + ((long)bhkv * M + j) * HEAD_DIM;
        for (int y = 0; y < KV_DPT; ++y) {
            const int d = t + TPR * y;
            if (d < HEAD_DIM) op[d] = dka[y] * scale;
        }
    }
    if (flags & BWD_WRITE_G2) {
        __global float *op = g2 + ((long)bhkv * M + j) * VALUE_DIM;
        for (int y = 0; y < KV_VPT; ++y) {
            const int d = t + TPR * y;
            if (d < VALUE_DIM) op[d] = dva[y];
        }
    }
}
#endif /* BWD_CPU */
