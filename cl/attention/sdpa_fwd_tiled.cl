/*
 * sdpa_fwd_tiled.cl - the tiled family of the fused attention forward
 * (GPU devices): sdpa_fwd_tiled. Compiled after sdpa_common.cl (the
 * contract: layouts, semantics, hooks, the common argument list) and
 * sdpa_rows.cl; see sdpa_common.cl for the programs. Natural score units
 * throughout (exp), unlike the CPU family.
 *
 * Tunables (defaults in brackets; the host passes them all):
 *   TILE_Q [32]   query rows per work-group
 *   TPR    [4]    work-items per query row
 *   TILE_K [32 if max(D,Dv) <= 128 else 16]
 *                 keys per local-memory tile, must be a multiple of TPR
 *
 * sdpa_fwd_tiled (the common argument list):
 *   global = (ceil(N / TILE_Q) * TILE_Q * TPR, B*Hq)
 *   local  = (TILE_Q * TPR, 1)        (128 with the defaults)
 *   Local memory: 4*(TILE_K*(max(D,Dv)+1) + TILE_Q*(TILE_K+1) + TILE_Q)
 *   bytes: <= 20.4 KiB with the defaults for every D, Dv <= 256 (worst
 *   case max(D,Dv) = 128 with TILE_K = 32). The required work-group size
 *   is fixed; if CL_KERNEL_WORK_GROUP_SIZE is below it, rebuild with a
 *   smaller TILE_Q (or TPR, keeping TILE_K % TPR == 0).
 */

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

#if (TILE_K % TPR) != 0
#error "TILE_K must be a multiple of TPR"
#endif

/* A work-group owns TILE_Q query rows with TPR work-items
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

