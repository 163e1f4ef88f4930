/*
 * decode_attention.cl - split-KV ("FlashDecoding") attention of a few new
 * query rows per sequence against that sequence's KV cache; launched by
 * src/lm/decode_attention.c (its header comment gives the chunk rule).
 *
 * Shapes (T = n_seq * rows token rows, G = Hq / Hkv query heads per kv
 * head, R = rows * G query vectors per (sequence, kv head), NC chunks):
 *   q      float [T, Hq * D]            (s, r, h, d) at ((s*rows + r)*Hq + h)*D + d
 *   kc, vc KV_T  [slots, Hkv, cap, D]   KV_T = half (KV_HALF 1) or float
 *   seq    int2  [n_seq]                (slot, len) of each sequence
 *   acc    float [T * Hq, NC, D]        per chunk: sum_j e^(s_j - m) v_j
 *   ml     float2 [T * Hq, NC]          per chunk: (m, l = sum_j e^(s_j - m))
 *   out    float [T, Hq * D]            the same layout as q
 * The partial and output rows are indexed by t = (s*rows + r)*Hq + h, the
 * token-row position of query vector (s, r, h), so the merge writes out
 * at t*D with no index arithmetic of its own.
 *
 * Visibility: new row r of sequence s is at position pos = len - rows + r
 * and sees keys max(0, pos - window_left) <= j <= pos (window_left -1: no
 * lower edge). The chunks split the union of the rows' ranges,
 * [lo_u, len) with lo_u = lo of row 0, into NC equal parts (the last
 * shorter, some empty when NC > len - lo_u).
 *
 * Kernels (one program per family, head size, cache type and Q_TILE):
 *   decode_partial_cpu   (DECODE_CPU 1) global (ceil(R / Q_TILE), NC,
 *                        n_seq*Hkv), local (1, 1, 1): one work-item owns
 *                        Q_TILE query vectors of one chunk in registers
 *                        (float8/float4 over D) and streams the chunk's
 *                        keys once for all of them, KEY_BLOCK at a time.
 *   decode_partial_tiled (DECODE_CPU 0) global (NC * DECODE_WG,
 *                        ceil(R / Q_TILE), n_seq*Hkv), local (DECODE_WG, 1,
 *                        1): a work-group owns Q_TILE query vectors of one
 *                        chunk, stages TILE_K keys (then values) at a time
 *                        in local memory and spreads scores and outputs
 *                        over its work-items. Local memory:
 *                        4 * (Q_TILE*D + TILE_K*KV_LD + Q_TILE*TILE_K +
 *                        Q_TILE) bytes.
 *   decode_merge         global (D rounded up to the local width, T*Hq),
 *                        local (any width, 1): out = sum_c e^(m_c - M) acc_c /
 *                        sum_c e^(m_c - M) l_c over the chunks with l_c > 0
 *                        (M their largest m); no such chunk gives 0.
 * Everything is float32; scores are scaled before the softmax and every
 * exponent is of s - m <= 0 (or of m_old - m_new <= 0).
 */

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef KV_HALF
#define KV_HALF 0
#endif
#ifndef DECODE_CPU
#define DECODE_CPU 1
#endif
#ifndef Q_TILE
#define Q_TILE 1
#endif
#ifndef KEY_BLOCK
#define KEY_BLOCK 16          /* cpu: keys per online-softmax step */
#endif
#ifndef TILE_K
#define TILE_K 32             /* tiled: keys per local-memory tile */
#endif
#ifndef DECODE_WG
#define DECODE_WG 64          /* tiled: work-items per group */
#endif

/* A masked score: large, finite and negative (no infinities reach the
 * arithmetic, see docs/ARCHITECTURE.md "Numerics"); any score below
 * DEC_MASKED is treated as masked. */
#define DEC_NEG_BIG (-1.0e30f)
#define DEC_MASKED (-5.0e29f)

/* ---- vectors over D -------------------------------------------------- */

/* The cpu family runs along D in float8 where D allows (AVX2 lanes on
 * POCL), the tiled one in float4 (local memory rows stay 16-byte aligned
 * with KV_LD = D + 4); odd head sizes fall back to scalars. */
#if DECODE_CPU && (HEAD_DIM % 8) == 0
#define VW 8
#elif (HEAD_DIM % 4) == 0
#define VW 4
#else
#define VW 1
#endif
#define DV (HEAD_DIM / VW)

#if VW == 8
typedef float8 floatv;
#define LOADF(p) vload8(0, (p))
#define STOREF(x, p) vstore8((x), 0, (p))
#define LOADH(p) vload_half8(0, (p))
#define VSUM(x) dec_sum4((x).lo + (x).hi)
#elif VW == 4
typedef float4 floatv;
#define LOADF(p) vload4(0, (p))
#define STOREF(x, p) vstore4((x), 0, (p))
#define LOADH(p) vload_half4(0, (p))
#define VSUM(x) dec_sum4(x)
#else
typedef float floatv;
#define LOADF(p) (*(p))
#define STOREF(x, p) (*(p) = (x))
#define LOADH(p) vload_half(0, (p))
#define VSUM(x) (x)
#endif

static inline float dec_sum4(float4 x) { return (x.x + x.y) + (x.z + x.w); }

#if KV_HALF
#define KV_T half
#define LOADKV(p) LOADH(p)
#else
#define KV_T float
#define LOADKV(p) LOADF(p)
#endif

/* ---- shared index helpers ------------------------------------------- */

/* Key range [*j0, *j1) of chunk c of n_chunks for a sequence of len keys
 * whose rows new rows see what the header says. Uniform over the group. */
static inline void dec_chunk(int len, int rows, int window_left, int n_chunks, int c, int *j0,
                             int *j1)
{
    const int lo_u = window_left < 0 ? 0 : max(0, len - rows - window_left);
    const int span = max(len - lo_u, 0);
    const int cs = (span + n_chunks - 1) / n_chunks;
    const long a = (long)lo_u + (long)c * cs;
    *j0 = (int)min(a, (long)len);
    *j1 = (int)min(a + cs, (long)len);
}

/* Query vector qi (0 .. R) of kv head kvh in sequence s: its token-row
 * index t and its visible keys [*lo, *hi). */
static inline long dec_query(int qi, int s, int kvh, int rows, int Hq, int G, int len,
                             int window_left, int *lo, int *hi)
{
    const int r = qi / G, g = qi - r * G;
    const int pos = len - rows + r;
    *hi = pos + 1;
    *lo = window_left < 0 ? 0 : max(0, pos - window_left);
    return ((long)s * rows + r) * Hq + (long)kvh * G + g;
}

#if DECODE_CPU
/* ---- cpu family ------------------------------------------------------ */

__kernel void decode_partial_cpu(__global const float *q, __global const KV_T *kc,
                                 __global const KV_T *vc, __global float *acc_out,
                                 __global float2 *ml_out, __global const int2 *seq,
                                 const int n_chunks, const int rows, const int Hq,
                                 const int Hkv, const int cap, const int window_left,
                                 const float scale)
{
    const int qb = get_global_id(0), c = get_global_id(1), sk = get_global_id(2);
    const int s = sk / Hkv, kvh = sk - s * Hkv;
    const int G = Hq / Hkv, R = rows * G;
    if (qb * Q_TILE >= R)
        return;
    const int2 sl = seq[s];
    int j0, j1;
    dec_chunk(sl.y, rows, window_left, n_chunks, c, &j0, &j1);
    const long base = ((long)sl.x * Hkv + kvh) * cap * HEAD_DIM;
    __global const KV_T *kb = kc + base;
    __global const KV_T *vb = vc + base;

    /* The tile's query vectors, pre-scaled, and their running state.
     * Vectors past R are zero with an empty range: they add nothing. */
    floatv qv[Q_TILE][DV], acc[Q_TILE][DV];
    float m[Q_TILE], l[Q_TILE];
    int lo[Q_TILE], hi[Q_TILE];
    long t[Q_TILE];
    for (int i = 0; i < Q_TILE; ++i) {
        const int qi = qb * Q_TILE + i;
        const bool ok = qi < R;
        t[i] = dec_query(ok ? qi : 0, s, kvh, rows, Hq, G, sl.y, window_left, &lo[i], &hi[i]);
        if (!ok)
            lo[i] = hi[i] = 0;
        __global const float *qp = q + t[i] * HEAD_DIM;
        for (int x = 0; x < DV; ++x) {
            qv[i][x] = ok ? LOADF(qp + x * VW) * scale : (floatv)(0.0f);
            acc[i][x] = (floatv)(0.0f);
        }
        m[i] = DEC_NEG_BIG;
        l[i] = 0.0f;
    }

    for (int jb = j0; jb < j1; jb += KEY_BLOCK) {
        const int nk = min(KEY_BLOCK, j1 - jb);
        float p[Q_TILE][KEY_BLOCK];
        /* Scores of the block: each key row is read once for all vectors. */
        for (int kk = 0; kk < KEY_BLOCK; ++kk) {
            floatv sv[Q_TILE];
            for (int i = 0; i < Q_TILE; ++i)
                sv[i] = (floatv)(0.0f);
            if (kk < nk) {
                __global const KV_T *kp = kb + (long)(jb + kk) * HEAD_DIM;
                for (int x = 0; x < DV; ++x) {
                    const floatv kx = LOADKV(kp + x * VW);
                    for (int i = 0; i < Q_TILE; ++i)
                        sv[i] += qv[i][x] * kx;
                }
            }
            const int j = jb + kk;
            for (int i = 0; i < Q_TILE; ++i)
                p[i][kk] = (kk < nk && j >= lo[i] && j < hi[i]) ? VSUM(sv[i]) : DEC_NEG_BIG;
        }
        /* Online softmax: rescale each vector's state to the new maximum. */
        for (int i = 0; i < Q_TILE; ++i) {
            float bm = DEC_NEG_BIG;
            for (int kk = 0; kk < KEY_BLOCK; ++kk)
                bm = fmax(bm, p[i][kk]);
            const float mnew = fmax(m[i], bm);
            float sum = 0.0f;
            for (int kk = 0; kk < KEY_BLOCK; ++kk) {
                const float e = p[i][kk] < DEC_MASKED ? 0.0f : clattn_expf(p[i][kk] - mnew);
                p[i][kk] = e;
                sum += e;
            }
            const float alpha = clattn_expf(m[i] - mnew);
            l[i] = l[i] * alpha + sum;
            m[i] = mnew;
            for (int x = 0; x < DV; ++x)
                acc[i][x] *= alpha;
        }
        /* P.V: each value row is read once for all vectors. */
        for (int kk = 0; kk < nk; ++kk) {
            __global const KV_T *vp = vb + (long)(jb + kk) * HEAD_DIM;
            for (int x = 0; x < DV; ++x) {
                const floatv vx = LOADKV(vp + x * VW);
                for (int i = 0; i < Q_TILE; ++i)
                    acc[i][x] += p[i][kk] * vx;
            }
        }
    }

    for (int i = 0; i < Q_TILE; ++i) {
        if (qb * Q_TILE + i >= R)
            break;
        const long pc = t[i] * n_chunks + c;
        ml_out[pc] = (float2)(m[i], l[i]);
        __global float *ap = acc_out + pc * HEAD_DIM;
        for (int x = 0; x < DV; ++x)
            STOREF(acc[i][x], ap + x * VW);
    }
}

#else
/* ---- tiled family ---------------------------------------------------- */

#define KV_LD (VW == 4 ? HEAD_DIM + 4 : HEAD_DIM + 1)  /* shifts banks per key */
#define SPI ((Q_TILE * TILE_K + DECODE_WG - 1) / DECODE_WG) /* scores per item */
#define OPI ((Q_TILE * DV + DECODE_WG - 1) / DECODE_WG)     /* output vectors per item */
#define KVI ((TILE_K * DV + DECODE_WG - 1) / DECODE_WG)     /* tile loads per item */

/* Stages keys (or values) jb .. jb + TILE_K of the chunk into tile; keys
 * at or past j1 are zero (their probabilities are 0, and 0 * 0 stays 0:
 * nothing past the sequence's length is ever read). */
static inline void dec_load_tile(__local float *tile, __global const KV_T *src, int jb, int j1,
                                 int lid)
{
    for (int y = 0; y < KVI; ++y) {
        const int x = lid + DECODE_WG * y;
        if (x < TILE_K * DV) {
            const int kk = x / DV, xx = x - kk * DV;
            const int j = jb + kk;
            const floatv v = j < j1 ? LOADKV(src + (long)j * HEAD_DIM + xx * VW)
                                    : (floatv)(0.0f);
            STOREF(v, tile + kk * KV_LD + xx * VW);
        }
    }
}

__kernel __attribute__((reqd_work_group_size(DECODE_WG, 1, 1)))
void decode_partial_tiled(__global const float *q, __global const KV_T *kc,
                          __global const KV_T *vc, __global float *acc_out,
                          __global float2 *ml_out, __global const int2 *seq,
                          const int n_chunks, const int rows, const int Hq, const int Hkv,
                          const int cap, const int window_left, const float scale)
{
    __local float q_tile[Q_TILE * HEAD_DIM];
    __local float kv_tile[TILE_K * KV_LD];
    __local float p_tile[Q_TILE * TILE_K];
    __local float a_tile[Q_TILE];

    const int lid = get_local_id(0);
    const int c = get_group_id(0), qt = get_global_id(1), sk = get_global_id(2);
    const int s = sk / Hkv, kvh = sk - s * Hkv;
    const int G = Hq / Hkv, R = rows * G;
    const int2 sl = seq[s];
    int j0, j1;
    dec_chunk(sl.y, rows, window_left, n_chunks, c, &j0, &j1);
    const long base = ((long)sl.x * Hkv + kvh) * cap * HEAD_DIM;
    __global const KV_T *kb = kc + base;
    __global const KV_T *vb = vc + base;
    const int q0 = qt * Q_TILE;

    /* The group's query vectors, pre-scaled (zero past R). */
    for (int y = 0; y < OPI; ++y) {
        const int x = lid + DECODE_WG * y;
        if (x < Q_TILE * DV) {
            const int il = x / DV, xx = x - il * DV;
            const int qi = q0 + il;
            int lo, hi;
            const long t = dec_query(qi < R ? qi : 0, s, kvh, rows, Hq, G, sl.y, window_left,
                                     &lo, &hi);
            const floatv v = qi < R ? LOADF(q + t * HEAD_DIM + xx * VW) * scale
                                    : (floatv)(0.0f);
            STOREF(v, q_tile + il * HEAD_DIM + xx * VW);
        }
    }

    floatv acc[OPI];
    for (int y = 0; y < OPI; ++y)
        acc[y] = (floatv)(0.0f);
    /* Row state, kept by work-item lid < Q_TILE for vector q0 + lid. */
    float mrow = DEC_NEG_BIG, lrow = 0.0f;

    for (int jb = j0; jb < j1; jb += TILE_K) {
        barrier(CLK_LOCAL_MEM_FENCE);        /* q staged / previous V tile used */
        dec_load_tile(kv_tile, kb, jb, j1, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int y = 0; y < SPI; ++y) {
            const int x = lid + DECODE_WG * y;
            if (x < Q_TILE * TILE_K) {
                const int il = x / TILE_K, kk = x - il * TILE_K;
                const int qi = q0 + il, j = jb + kk;
                int lo = 0, hi = 0;
                if (qi < R)
                    dec_query(qi, s, kvh, rows, Hq, G, sl.y, window_left, &lo, &hi);
                floatv sv = (floatv)(0.0f);
                __local const float *qp = q_tile + il * HEAD_DIM;
                __local const float *kp = kv_tile + kk * KV_LD;
                for (int d = 0; d < DV; ++d)
                    sv += LOADF(qp + d * VW) * LOADF(kp + d * VW);
                p_tile[x] = (j < j1 && j >= lo && j < hi) ? VSUM(sv) : DEC_NEG_BIG;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);        /* K tile read, scores written */
        dec_load_tile(kv_tile, vb, jb, j1, lid);
        if (lid < Q_TILE) {
            __local float *pr = p_tile + lid * TILE_K;
            float bm = DEC_NEG_BIG;
            for (int kk = 0; kk < TILE_K; ++kk)
                bm = fmax(bm, pr[kk]);
            const float mnew = fmax(mrow, bm);
            float sum = 0.0f;
            for (int kk = 0; kk < TILE_K; ++kk) {
                const float e = pr[kk] < DEC_MASKED ? 0.0f : clattn_expf(pr[kk] - mnew);
                pr[kk] = e;
                sum += e;
            }
            const float alpha = clattn_expf(mrow - mnew);
            lrow = lrow * alpha + sum;
            mrow = mnew;
            a_tile[lid] = alpha;
        }
        barrier(CLK_LOCAL_MEM_FENCE);        /* V tile, probabilities ready */
        for (int y = 0; y < OPI; ++y) {
            const int x = lid + DECODE_WG * y;
            if (x < Q_TILE * DV) {
                const int il = x / DV, xx = x - il * DV;
                __local const float *pr = p_tile + il * TILE_K;
                floatv a = acc[y] * a_tile[il];
                for (int kk = 0; kk < TILE_K; ++kk)
                    a += pr[kk] * LOADF(kv_tile + kk * KV_LD + xx * VW);
                acc[y] = a;
            }
        }
    }

    if (lid < Q_TILE && q0 + lid < R) {
        int lo, hi;
        const long t = dec_query(q0 + lid, s, kvh, rows, Hq, G, sl.y, window_left, &lo, &hi);
        ml_out[t * n_chunks + c] = (float2)(mrow, lrow);
    }
    for (int y = 0; y < OPI; ++y) {
        const int x = lid + DECODE_WG * y;
        if (x < Q_TILE * DV && q0 + x / DV < R) {
            const int il = x / DV, xx = x - il * DV;
            int lo, hi;
            const long t = dec_query(q0 + il, s, kvh, rows, Hq, G, sl.y, window_left, &lo, &hi);
            STOREF(acc[y], acc_out + (t * n_chunks + c) * HEAD_DIM + xx * VW);
        }
    }
}
#endif /* DECODE_CPU */

/* ---- the log-sum-exp merge (both families) -------------------------- */

__kernel void decode_merge(__global const float *acc, __global const float2 *ml,
                           __global float *out, const int n_chunks)
{
    const int d = get_global_id(0);
    const long t = get_global_id(1);
    if (d >= HEAD_DIM)
        return;
    __global const float2 *mt = ml + t * n_chunks;
    float mx = DEC_NEG_BIG;
    for (int c = 0; c < n_chunks; ++c) {
        const float2 e = mt[c];
        if (e.y > 0.0f)
            mx = fmax(mx, e.x);
    }
    float num = 0.0f, den = 0.0f;
    __global const float *at = acc + t * n_chunks * HEAD_DIM + d;
    for (int c = 0; c < n_chunks; ++c) {
        const float2 e = mt[c];
        if (e.y > 0.0f) {
            const float w = clattn_expf(e.x - mx);
            num += w * at[(long)c * HEAD_DIM];
            den += w * e.y;
        }
    }
    out[t * HEAD_DIM + d] = den > 0.0f ? num / den : 0.0f;
}
