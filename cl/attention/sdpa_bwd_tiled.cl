/*
 * sdpa_bwd_tiled.cl - the tiled family of the attention backward (GPU
 * devices): sdpa_bwd_dq_tiled and sdpa_bwd_dkdv_tiled. Compiled after
 * sdpa_common.cl and sdpa_bwd_common.cl (the backward's contract and
 * argument list) with -DBWD_CPU=0; see sdpa_common.cl for the programs.
 * Natural score units throughout (exp).
 *
 * Tunables (defaults in brackets; the host passes them all):
 *   TPR       [4]   work-items per owned row
 *   DQ_TILE_Q [32], DQ_TILE_K [32]   sdpa_bwd_dq_tiled: owned query rows
 *                   per group; keys per local tile (multiple of TPR)
 *   KV_TILE_K [32], KV_TILE_Q [32]   sdpa_bwd_dkdv_tiled: owned key rows
 *                   per group; queries per local tile (multiple of TPR)
 * Local memory (floats): dq_tiled  DQ_TILE_K*(D+Dv+2) + DQ_TILE_Q*(DQ_TILE_K+1)
 *                        dkdv_tiled KV_TILE_Q*(D+Dv+4) + 2*KV_TILE_K*(KV_TILE_Q+1)
 * The host picks tile sizes that fit the device (src/attention/sdpa_backward.c).
 *
 * sdpa_bwd_dq_tiled   (BWD_ARGS) global (ceil(N / DQ_TILE_Q) * DQ_TILE_Q * TPR, B*Hq)
 *                     local (DQ_TILE_Q * TPR, 1)
 * sdpa_bwd_dkdv_tiled (BWD_ARGS) global (ceil(M / KV_TILE_K) * KV_TILE_K * TPR, B*Hkv)
 *                     local (KV_TILE_K * TPR, 1)
 */

#if BWD_CPU
#error "sdpa_bwd_tiled.cl is the BWD_CPU=0 family"
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

#if (DQ_TILE_K % TPR) != 0 || (KV_TILE_Q % TPR) != 0
#error "DQ_TILE_K and KV_TILE_Q must be multiples of TPR"
#endif

/* Tiled kernels (GPUs). A work-group owns a tile of rows with TPR
 * work-items per row; tiles of the other side are staged in local memory
 * and shared by all owned rows, as sdpa_fwd_tiled.cl does. */

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
    const int kvl = clattn_kv_limit(kv_len, b, M);

    int lo = 0, hi = 0;
    if (row_ok)
        clattn_row_range(i, N, M, kvl, window_left, window_right, &lo, &hi);
    /* the tile's union of visible keys (uniform over the group) */
    int glo = M, ghi = 0;
    for (int rr = 0; rr < DQ_TILE_Q && i0 + rr < N; ++rr) {
        int l, u;
        clattn_row_range(i0 + rr, N, M, kvl, window_left, window_right, &l, &u);
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
                const float s = clattn_finish_score(sacc[x] * scale, bias, bias_sb, bias_sh,
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
    const int kvl = clattn_kv_limit(kv_len, b, M);

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
                    const float s = clattn_finish_score(sacc[x] * scale, bias, bias_sb, bias_sh,
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
