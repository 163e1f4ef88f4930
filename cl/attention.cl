/*
 * attention.cl - fused scaled-dot-product attention (forward) for clattn.
 * OpenCL C 1.2, no extensions, must be built WITHOUT fast-math options.
 *
 * ===================================================================
 * Layouts (float32, row-major, contiguous)
 *   q   [B, Hq,  N, D]        D  = HEAD_DIM
 *   k   [B, Hkv, M, D]        Dv = VALUE_DIM
 *   v   [B, Hkv, M, Dv]
 *   out [B, Hq,  N, Dv]
 *   lse [B, Hq,  N]           (log-sum-exp of the visible scores)
 *   kt  [B, Hkv, D, Mp]       transposed K for sdpa_fwd_cpu only,
 *                             Mp = round_up(M, KEY_BLOCK), pad columns = 0
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
 *     ROWS_PER_ITEM [4]   sdpa_fwd_cpu: query rows per work-item (1..8)
 *     KEY_BLOCK     [64]  sdpa_fwd_cpu: keys per step, multiple of 16;
 *                         also defines the kt padding Mp
 *     CPU_LOCAL     [8]   sdpa_fwd_cpu: reqd work-group size (see below)
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
 * Unused buffer arguments may be any valid buffer (never dereferenced).
 *
 * sdpa_transpose_k(k, kt, const int BHkv, const int M)
 *   global = (Mp, HEAD_DIM, B*Hkv), local = (KEY_BLOCK, 1, 1) or NULL.
 *   kt must hold B*Hkv*HEAD_DIM*Mp floats; run it before sdpa_fwd_cpu
 *   (whenever k changes).
 *
 * sdpa_fwd_cpu (CPU devices, POCL):
 *   global = (round_up(ceil(N / ROWS_PER_ITEM), CPU_LOCAL), B*Hq)
 *   local  = (CPU_LOCAL, 1)
 *   Needs kt from sdpa_transpose_k (same KEY_BLOCK). No local memory.
 *
 * sdpa_fwd_tiled (GPU devices):
 *   global = (ceil(N / TILE_Q) * TILE_Q * TPR, B*Hq)
 *   local  = (TILE_Q * TPR, 1)        (128 with the defaults)
 *   Local memory: 4*(TILE_K*(max(D,Dv)+1) + TILE_Q*(TILE_K+1) + TILE_Q)
 *   bytes: <= 18.7 KiB with the defaults for every D, Dv <= 256.
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
#define ROWS_PER_ITEM 4
#endif
#ifndef KEY_BLOCK
#define KEY_BLOCK 64
#endif
#ifndef CPU_LOCAL
#define CPU_LOCAL 8
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

static inline float clattn_hmax16(float16 x)
{
    float8 a = fmax(x.lo, x.hi);
    float4 b = fmax(a.lo, a.hi);
    float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

static inline float clattn_hsum16(float16 x)
{
    float8 a = x.lo + x.hi;
    float4 b = a.lo + a.hi;
    float2 c = b.lo + b.hi;
    return c.x + c.y;
}

/* ------------------------------------------------------------------ */
/* K transpose for sdpa_fwd_cpu: keys become the contiguous axis so that
 * one q element can be broadcast against 16 keys with one vector load.
 * Padding keys are zero so whole KEY_BLOCKs can be loaded without bounds
 * checks (they are masked anyway). */
__kernel void sdpa_transpose_k(__global const float *k, __global float *kt,
                               const int BHkv, const int M)
{
    const int j = get_global_id(0);
    const int d = get_global_id(1);
    const int bh = get_global_id(2);
    const int Mp = (M + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    if (j >= Mp || d >= HEAD_DIM || bh >= BHkv) return;
    float x = 0.0f;
    if (j < M) x = k[((long)bh * M + j) * HEAD_DIM + d];
    const long panel = (long)bh * (Mp / KEY_BLOCK) + j / KEY_BLOCK;
    kt[(panel * HEAD_DIM + d) * KEY_BLOCK + j % KEY_BLOCK] = x;
}

/* ------------------------------------------------------------------ */
/* A. CPU kernel. One work-item owns ROWS_PER_ITEM query rows and walks
 * KEY_BLOCK keys at a time over the union of its rows' visible ranges.
 * Loop orders keep ROWS_PER_ITEM float16 accumulators live (8 AVX2
 * registers at the default) so the FMA units, not loads/stores, bound
 * the inner loops. No local memory or barriers: on a CPU the caches do
 * the sharing and barriers only cost. */
#define R_ ROWS_PER_ITEM
#define KB16 (KEY_BLOCK / 16)
#define DV16 (VALUE_DIM / 16)

__kernel __attribute__((reqd_work_group_size(CPU_LOCAL, 1, 1)))
void sdpa_fwd_cpu(CLATTN_ARGS)
{
    __global const float *kt = k_or_kt;
    const int bh = get_global_id(1);
    const int i0 = get_global_id(0) * R_;
    if (i0 >= N || bh >= B * Hq) return;
    const int b = bh / Hq, h = bh % Hq;
    const int bhkv = b * Hkv + h / (Hq / Hkv);
    const int Mp = (M + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    const int kvl = clattn_kv_limit(kv_len, b, M);

    __global const float *ktp = kt + (long)bhkv * HEAD_DIM * Mp;  /* panels */
    __global const float *vp = v + (long)bhkv * M * VALUE_DIM;

    float qr[R_][HEAD_DIM];   /* pre-scaled query rows */
    float acc[R_][VALUE_DIM];
    float sc[R_][KEY_BLOCK];  /* scores, then probabilities, of a block */
    float m[R_], l[R_], alpha[R_];
    int lo[R_], hi[R_];
    int jlo = M, jhi = 0, maxlo = 0, minhi = M;

    for (int r = 0; r < R_; ++r) {
        const int i = i0 + r;
        lo[r] = 0; hi[r] = 0;
        if (i < N) {
            clattn_row_range(i, N, M, kvl, window_left, window_right,
                             &lo[r], &hi[r]);
            __global const float *qp = q + ((long)bh * N + i) * HEAD_DIM;
            for (int d = 0; d < HEAD_DIM; ++d) qr[r][d] = qp[d] * scale;
        } else {
            for (int d = 0; d < HEAD_DIM; ++d) qr[r][d] = 0.0f;
        }
        if (lo[r] < hi[r]) { jlo = min(jlo, lo[r]); jhi = max(jhi, hi[r]); }
        maxlo = max(maxlo, lo[r]);
        minhi = min(minhi, hi[r]);
        m[r] = CLATTN_NEG_BIG;
        l[r] = 0.0f;
        for (int d = 0; d < VALUE_DIM; ++d) acc[r][d] = 0.0f;
    }

    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7,
                               8, 9, 10, 11, 12, 13, 14, 15);

    /* Blocks start KEY_BLOCK-aligned so whole blocks stay inside padded kt;
     * everything outside [jlo, jhi) is never touched. */
    for (int j0 = jlo / KEY_BLOCK * KEY_BLOCK; j0 < jhi; j0 += KEY_BLOCK) {
        /* S = Q K^T for the block, 16 keys x R_ rows at a time. */
        for (int c = 0; c < KB16; ++c) {
            float16 a[R_];
#pragma unroll
            for (int r = 0; r < R_; ++r) a[r] = (float16)0.0f;
            __global const float *kp = ktp + (long)j0 * HEAD_DIM + 16 * c;
            for (int d = 0; d < HEAD_DIM; ++d) {
                const float16 kv = vload16(0, kp + d * KEY_BLOCK);
#pragma unroll
                for (int r = 0; r < R_; ++r) a[r] += (float16)qr[r][d] * kv;
            }
#pragma unroll
            for (int r = 0; r < R_; ++r) vstore16(a[r], c, sc[r]);
        }

#if CLATTN_NEEDS_FINISH
        {
            const int jend = min(j0 + KEY_BLOCK, jhi);
            for (int r = 0; r < R_; ++r) {
                const int jb = max(j0, lo[r]), je = min(jend, hi[r]);
                for (int j = jb; j < je; ++j)
                    sc[r][j - j0] = clattn_finish_score(sc[r][j - j0], bias,
                        bias_sb, bias_sh, bias_sn, mod_buf, p0, p1, p2, p3,
                        b, h, i0 + r, j, N, M);
            }
        }
#endif

        /* Online softmax. Position masks are needed only on blocks that
         * are not inside every row's range. */
        const int edge = (j0 < maxlo) || (j0 + KEY_BLOCK > minhi);
        for (int r = 0; r < R_; ++r) {
            float16 bmv = (float16)CLATTN_NEG_BIG;
            for (int c = 0; c < KB16; ++c) {
                float16 s = vload16(c, sc[r]);
                int16 msk = isless(s, (float16)CLATTN_MASK_THRESH);
                if (edge) {
                    const int16 jv = (int16)(j0 + 16 * c) + lane;
                    msk |= (jv < (int16)lo[r]) | (jv >= (int16)hi[r]);
                }
                s = select(s, (float16)CLATTN_NEG_BIG, msk);
                bmv = fmax(bmv, s);             /* fmax skips NaN */
                vstore16(s, c, sc[r]);
            }
            const float mnew = fmax(m[r], clattn_hmax16(bmv));
            float16 psum = (float16)0.0f;
            for (int c = 0; c < KB16; ++c) {
                const float16 s = vload16(c, sc[r]);
                const float16 p = select(exp(s - mnew), (float16)0.0f,
                                         isless(s, (float16)CLATTN_MASK_THRESH));
                psum += p;
                vstore16(p, c, sc[r]);
            }
            alpha[r] = exp(m[r] - mnew);
            l[r] = l[r] * alpha[r] + clattn_hsum16(psum);
            m[r] = mnew;
        }

        /* O = alpha * O + P V, vectorised along Dv; keys outside
         * [jlo, jhi) have P = 0 and may lie past M, so they are skipped. */
        const int jb = max(jlo - j0, 0), je = min(KEY_BLOCK, jhi - j0);
        __global const float *vb = vp + (long)j0 * VALUE_DIM;
        for (int c = 0; c < DV16; ++c) {
            float16 o[R_];
#pragma unroll
            for (int r = 0; r < R_; ++r) o[r] = vload16(c, acc[r]) * alpha[r];
            for (int j = jb; j < je; ++j) {
                const float16 vv = vload16(c, vb + (long)j * VALUE_DIM);
#pragma unroll
                for (int r = 0; r < R_; ++r) o[r] += (float16)sc[r][j] * vv;
            }
#pragma unroll
            for (int r = 0; r < R_; ++r) vstore16(o[r], c, acc[r]);
        }
#if (VALUE_DIM % 16) != 0
        for (int d = DV16 * 16; d < VALUE_DIM; ++d) {
            float o[R_];
#pragma unroll
            for (int r = 0; r < R_; ++r) o[r] = acc[r][d] * alpha[r];
            for (int j = jb; j < je; ++j) {
                const float vv = vb[(long)j * VALUE_DIM + d];
#pragma unroll
                for (int r = 0; r < R_; ++r) o[r] += sc[r][j] * vv;
            }
#pragma unroll
            for (int r = 0; r < R_; ++r) acc[r][d] = o[r];
        }
#endif
    }

    for (int r = 0; r < R_; ++r) {
        const int i = i0 + r;
        if (i >= N) break;
        __global float *op = out + ((long)bh * N + i) * VALUE_DIM;
        /* l == 0 only when nothing was visible (the row max contributes
         * exp(0) = 1); a NaN l falls through and propagates. */
        if (l[r] == 0.0f) {
            for (int d = 0; d < VALUE_DIM; ++d) op[d] = 0.0f;
        } else {
            const float inv = 1.0f / l[r];
            for (int d = 0; d < VALUE_DIM; ++d) op[d] = acc[r][d] * inv;
        }
#if HAS_LSE
        lse[(long)bh * N + i] = (l[r] == 0.0f) ? -INFINITY : m[r] + log(l[r]);
#endif
    }
}
#undef R_

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
void sdpa_fwd_tiled(CLATTN_ARGS)
{
    __local float kv_tile[TILE_K * KV_LD];
    __local float s_tile[TILE_Q * S_LD];
    __local float row_tile[TILE_Q];

    __global const float *k = k_or_kt;
    const int lid = get_local_id(0);
    const int r = lid / TPR, t = lid % TPR;
    const int bh = get_global_id(1);
    const int b = bh / Hq, h = bh % Hq;
    const int bhkv = b * Hkv + h / (Hq / Hkv);
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

    __global const float *qp = q + ((long)bh * N + (row_ok ? i : 0)) * HEAD_DIM;
    __global const float *kb = k + (long)bhkv * M * HEAD_DIM;
    __global const float *vb = v + (long)bhkv * M * VALUE_DIM;

    float acc[DPT];
    for (int y = 0; y < DPT; ++y) acc[y] = 0.0f;
    float mrow = CLATTN_NEG_BIG, lrow = 0.0f;   /* kept by t == 0 */

    for (long j0l = glo; j0l < ghi; j0l += TILE_K) {
        const int j0 = (int)j0l;
        barrier(CLK_LOCAL_MEM_FENCE);           /* previous V tile done */
        for (int x = lid; x < TILE_K * HEAD_DIM; x += TILED_WG) {
            const int kk = x / HEAD_DIM, d = x % HEAD_DIM;
            const int j = j0 + kk;
            kv_tile[kk * KV_LD + d] =
                (j < M) ? kb[(long)j * HEAD_DIM + d] : 0.0f;
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
            const int kk = x / VALUE_DIM, d = x % VALUE_DIM;
            const int j = j0 + kk;
            kv_tile[kk * KV_LD + d] =
                (j < M) ? vb[(long)j * VALUE_DIM + d] : 0.0f;
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

    __global float *op = out + ((long)bh * N + i) * VALUE_DIM;
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
    const int b = bh / Hq, h = bh % Hq;
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
