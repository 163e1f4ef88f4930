/*
 * sdpa_rows.cl - the row kernels of the forward's unfused path and of the
 * cosine score, in both forward programs (after sdpa_common.cl, whose
 * contract and helpers they use; see its header for the programs).
 *
 * Tunable (default in brackets):
 *   SOFTMAX_WG [128] sdpa_softmax_rows: work-group size, power of 2
 *
 * sdpa_softmax_rows (unfused path, S = q.k^T unscaled from a GEMM):
 *   args: __global float *s [B,Hq,N,M] (in place -> P), __global float *lse,
 *         bias, bias_sb, bias_sh, bias_sn, kv_len, mod_buf, p0..p3,
 *         B, Hq, Hkv, N, M, scale, window_left, window_right
 *         (i.e. the common list of sdpa_common.cl with q,k,v,out replaced
 *         by s, and no layouts).
 *   global = (SOFTMAX_WG, N, B*Hq), local = (SOFTMAX_WG, 1, 1).
 *   Fully masked rows give P = 0 and lse = -inf. Any M (64-bit offsets).
 *
 * sdpa_l2_normalize_rows(__global const float *x, __global float *y,
 *                        const int rows, const int D)
 *   y = x / max(||x||_2, 1e-12); in place (x == y) allowed.
 *   global = round_up(rows, L) for any L (e.g. 64), local = L or NULL.
 */

#ifndef SOFTMAX_WG
#define SOFTMAX_WG 128
#endif

/* Row softmax for the unfused path. One work-group per row, so M can
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
/* Row L2 normalisation (cosine-similarity scores). */
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
