/*
 * sdpa_fwd_cpu.cl - the CPU family of the fused attention forward
 * (CPU devices, POCL): sdpa_transpose_k and sdpa_fwd_cpu. Compiled after
 * sdpa_common.cl (the contract: layouts, semantics, hooks, the common
 * argument list) and sdpa_rows.cl; see sdpa_common.cl for the programs.
 *
 * Layout of its own
 *   kt  [B, Hkv, Mp/KEY_BLOCK, D, KEY_BLOCK]   K for sdpa_fwd_cpu only:
 *        key blocks of KEY_BLOCK keys, each a contiguous D x KEY_BLOCK
 *        panel (keys fastest); Mp = round_up(M, KEY_BLOCK); pad keys = 0.
 *        Size B*Hkv*D*Mp floats. (A plain [D, M] transpose strides 4*M
 *        bytes per d and thrashes L1 sets/TLB: 25% slower at M = 2048.)
 *
 * Tunables (defaults in brackets; the host passes them all):
 *   ROWS_PER_ITEM [6]   query rows per work-item; 6 x 16 keys = 12 AVX2
 *                       accumulators (the 6x16 GEMM tile)
 *   ROW_GROUPS    [clamp(6144 / (ROWS_PER_ITEM * (D + Dv)), 1, 8)]
 *                       row groups per work-item sharing each K/V block
 *                       (8 at D = Dv = 64, 4 at 128, 2 at 256)
 *   KEY_BLOCK     [64]  keys per step, multiple of 16; also defines the
 *                       kt padding Mp
 *   CPU_LOCAL     [2]   reqd work-group size of sdpa_fwd_cpu
 *
 * sdpa_transpose_k(k, kt, const int BHkv, const int M, const int Hkv,
 *                  const long4 k_lay)
 *   global = (Mp / 16, ceil(HEAD_DIM / 16), B*Hkv), local = (1, 1, 1).
 *   kt must hold B*Hkv*HEAD_DIM*Mp floats; run it before sdpa_fwd_cpu
 *   (whenever k changes). Built with the same KEY_BLOCK (same program).
 *
 * sdpa_fwd_cpu (the common argument list):
 *   global = (round_up(ceil(N / (ROWS_PER_ITEM * ROW_GROUPS)), CPU_LOCAL),
 *             B*Hq)
 *   local  = (CPU_LOCAL, 1)    (exactly; reqd_work_group_size)
 *   Needs kt from sdpa_transpose_k. No local memory.
 */

#ifndef ROWS_PER_ITEM
#define ROWS_PER_ITEM 6
#endif
#ifndef KEY_BLOCK
#define KEY_BLOCK 64
#endif
#ifndef ROW_GROUPS
/* keep the private q and accumulator rows of a work-item <= 24 KiB. (Wrong
 * rows once seen on llvmpipe with 5 groups at D=128, Dv=256 came from its
 * loop limit, clattn_ctx.loop_budget in src/core/core.h, not from the size;
 * llvmpipe no longer runs this kernel.) */
#define ROW_GROUPS (6144 / (ROWS_PER_ITEM * (HEAD_DIM + VALUE_DIM)) > 8 ? 8 : \
                    6144 / (ROWS_PER_ITEM * (HEAD_DIM + VALUE_DIM)) < 1 ? 1 : \
                    6144 / (ROWS_PER_ITEM * (HEAD_DIM + VALUE_DIM)))
#endif
#ifndef CPU_LOCAL
#define CPU_LOCAL 2
#endif

#if (KEY_BLOCK % 16) != 0
#error "KEY_BLOCK must be a multiple of 16"
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
/* The CPU kernel. A work-item owns ROW_GROUPS groups of ROWS_PER_ITEM
 * query rows and walks KEY_BLOCK keys at a time over the union of its
 * rows' visible ranges. Each K/V block is used by every group while it is
 * in L1/L2: with one group per work-item, a long single head (M = 65536,
 * 32 MiB of K+V) streams K and V from DRAM once per 6 rows and runs at a
 * quarter of the speed. Within a group the loop orders keep ROWS_PER_ITEM
 * float16 accumulators live (12 AVX2 registers) so the FMA units, not
 * loads/stores, bound the inner loops. No local memory or barriers: on a
 * CPU the caches do the sharing and barriers only cost. */

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
