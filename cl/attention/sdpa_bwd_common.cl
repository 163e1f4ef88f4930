/*
 * sdpa_bwd_common.cl - the contract and the shared kernels of the fused,
 * flash-style backward of scaled dot-product attention (FlashAttention-2's
 * algorithm) for clattn. Compiled after sdpa_common.cl (layouts, masking
 * rules, helpers) and before the family file; see sdpa_common.cl for the
 * programs. OpenCL C 1.2, no extensions, must be built WITHOUT fast-math
 * options.
 *
 * ===================================================================
 * What is computed (natural units; s = score, P = softmax probabilities)
 *   s_ij  = scale * q_i . k_j [+ bias(b,h,i,j)], masks as in sdpa_common.cl
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
 * Two kernel families, one program each (the program's spec sets
 * -DBWD_CPU=1 or 0 to match the family file it lists):
 *   tiled (GPUs, sdpa_bwd_tiled.cl), FlashAttention-2's split:
 *     sdpa_bwd_dkdv_tiled owns key rows and loops over every query of the
 *     group's query heads (dK, dV); sdpa_bwd_dq_tiled owns query rows and
 *     loops over every key (dQ, and dS for dbias); tiles of the other
 *     side in local memory.
 *   cpu (sdpa_bwd_cpu.cl): sdpa_bwd_cpu owns key rows as the tiled dkdv
 *     kernel does, in registers and private memory, and also adds each
 *     key block's share of dQ into a partial dQ of its own (one per key
 *     chunk), which sdpa_bwd_dq_reduce sums: S and dP are computed once
 *     rather than twice (10 N x M x D products instead of 14), for chunks
 *     x B x Hq x N x D floats of scratch (the host caps it at 64 MiB, or
 *     uses dq itself with one chunk).
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
 * Masking rules are sdpa_common.cl's (clattn_row_range there, and its
 * transpose bwd_col_range below): key j is visible to query i iff
 * i+M-N-wl <= j <= i+M-N+wr (bottom-right aligned, -1 = unlimited),
 * j < kv_len[b], mask_mod(...) != 0 and the score is not below -3e38 (a
 * -inf bias entry). score_mod is not supported (the host refuses it;
 * defining CLATTN_HAS_SCORE_MOD is an error here).
 *
 * Build options: -cl-std=CL1.2 -DHEAD_DIM=D -DVALUE_DIM=Dv (1..256)
 *   -DHAS_BIAS=0|1, and from the program spec -DBWD_CPU=0|1 (the family)
 *   and -DHAS_KV_LEN=1 (kv_len is always read). Each family file lists
 *   its tunables and local memory.
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
 * ds is written at the visible (i, j) of the blocks visited; the host
 * zero-fills it first.
 *
 * The kernels of both programs, here:
 * sdpa_bwd_prep(out, dout, lse, dl, BHq, N, Np): global (Np, BHq).
 * sdpa_bwd_l2_normalize(x, y, norms, rows): y = x / max(|x|, 1e-12) over
 *   HEAD_DIM, norms[r] = |x| (sdpa_rows.cl's sdpa_l2_normalize_rows plus
 *   the norms the backward needs); global (rows).
 * sdpa_bwd_l2_backward(y, norms, dy, dx, rows): backward of that
 *   normalisation, dx = (dy - y (y . dy)) / |x| (dy / 1e-12 where the
 *   floor applied); global (rows). dx may be dy.
 * sdpa_bwd_dbias_reduce(ds, dbias, B, Hq, N, M, Bb, Hb, Nb): dbias
 *   [Bb, Hb, Nb, M] (each extent full or 1) = ds summed over the extents
 *   of 1, in a fixed order; global (M, Nb, Bb*Hb).
 * ===================================================================
 */

#ifndef BWD_CPU
#error "BWD_CPU (the kernel family) must be defined by the program"
#endif
#ifdef CLATTN_HAS_SCORE_MOD
#error "score_mod has no backward"
#endif

#define BWD_WRITE_G1 1
#define BWD_WRITE_G2 2
#define BWD_WRITE_G3 4
#define BWD_WRITE_G4 8

/* Units of the lse row of dl: the CPU family's score units (CLATTN_QSCALE
 * of sdpa_common.cl, log2 units without hooks), natural for the tiled
 * family. */
#if BWD_CPU
#define LSE_UNITS CLATTN_QSCALE
#else
#define LSE_UNITS 1.0f
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

/* The transpose of clattn_row_range (sdpa_common.cl): queries [*lo, *hi)
 * that see key j; empty -> [0, 0). */
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

