/*
 * sdpa_bwd_cpu.cl - the CPU family of the attention backward (CPU
 * devices, POCL): sdpa_bwd_panels, sdpa_bwd_cpu, sdpa_bwd_dq_reduce.
 * Compiled after sdpa_common.cl and sdpa_bwd_common.cl (the backward's
 * contract and argument list) with -DBWD_CPU=1; see sdpa_common.cl for the
 * programs.
 *
 * Tunables (defaults in brackets; the host passes them all):
 *   ROWS_PER_ITEM [6]  key rows per group (6 x 16 lanes = 12 AVX2
 *                      accumulators, as sdpa_fwd_cpu.cl)
 *   KV_GROUPS     [clamp(6144 / (ROWS_PER_ITEM * 2(D + Dv)), 1, 8)]
 *                      row groups per key block (private rows <= 24 KiB);
 *                      KV_ROWS = groups * rows
 *   QUERY_BLOCK   [64] queries per step (multiple of 16)
 *   CPU_LOCAL     [1]  reqd work-group size of sdpa_bwd_cpu
 *
 * sdpa_bwd_panels(x, xt, BH, rows, C, PB): x [BH, rows, C] ->
 *   xt [BH, ceil(rows/PB), C, PB]; global (round_up(rows, PB), C, BH).
 * sdpa_bwd_cpu (BWD_ARGS): global (round_up(chunks, CPU_LOCAL), B*Hkv),
 *   local (CPU_LOCAL, 1).
 * sdpa_bwd_dq_reduce(dqp, dq, chunks, total): dq = sum over chunks of
 *   dqp / CLATTN_QSCALE; dq may be dqp when chunks = 1; global (total).
 */

#if !BWD_CPU
#error "sdpa_bwd_cpu.cl is the BWD_CPU=1 family"
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

#if (QUERY_BLOCK % 16) != 0
#error "QUERY_BLOCK must be a multiple of 16"
#endif

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

/* ------------------------------------------------------------------ */
/* The CPU kernels. As sdpa_fwd_cpu.cl: a work-item owns
 * groups of ROWS_PER_ITEM rows and walks blocks of the other side; the
 * products against the block are R x 16 register tiles over transposed
 * panels (S, dP), and the accumulations (dQ, dK, dV) are vectorised along
 * the head dimension with R accumulators over the block. No local memory,
 * no barriers. */

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
    const int kvl = clattn_kv_limit(kv_len, b, M);
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
                        sc[r][i - i0] = clattn_finish_score(sc[r][i - i0], bias, bias_sb, bias_sh,
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
                    const float16 s = clattn_edge_mask(vload16(c, sc[r]), edge, 16 * c, mlo, mhi);
                    const float16 l = vload16(c, lsea + i0);
                    const float16 dd = vload16(c, delta + i0);
                    const float16 p = clattn_exp2_16(CLATTN_EXP2_ARG(s - l));
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
                 * loop limit, clattn_ctx.loop_budget in src/core/core.h;
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
