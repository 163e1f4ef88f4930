/*
 * sdpa_common.cl - the contract and the shared helpers of every scaled
 * dot-product attention kernel (forward and backward) of clattn.
 * OpenCL C 1.2, no extensions, must be built WITHOUT fast-math options.
 *
 * ===================================================================
 * Programs (declared in src/attention/sdpa.c and sdpa_backward.c; each
 * is core/common.cl, then the generated snippet prefix if any, then):
 *   forward, CPU family    sdpa_common.cl sdpa_rows.cl sdpa_fwd_cpu.cl
 *   forward, tiled family  sdpa_common.cl sdpa_rows.cl sdpa_fwd_tiled.cl
 *   backward, CPU family   sdpa_common.cl sdpa_bwd_common.cl sdpa_bwd_cpu.cl
 *   backward, tiled family sdpa_common.cl sdpa_bwd_common.cl sdpa_bwd_tiled.cl
 * A context compiles only its own family (clattn_ctx.attention_variant).
 * The row kernels of sdpa_rows.cl (the unfused path's softmax, the cosine
 * normalisation) are in both forward programs, which are specialised the
 * same way, so either family serves the unfused path.
 *
 * Layouts (float32)
 *   q   [B, Hq,  N, D]        D  = HEAD_DIM
 *   k   [B, Hkv, M, D]        Dv = VALUE_DIM
 *   v   [B, Hkv, M, Dv]
 *   out [B, Hq,  N, Dv]
 *        The fused forward kernels and sdpa_transpose_k take each of q, k,
 *        v, out as a long4 layout (off, sb, sh, sn): element (b, h, i, d)
 *        lives at off + b*sb + h*sh + i*sn + d, so rows may be strided
 *        (multi-head attention reads heads straight out of a [B, N, H*D]
 *        projection and writes them merged). Contiguous is
 *        (0, H*rows*D, rows*D, D). Everything else (lse, bias, the
 *        unfused path, the backward) is contiguous.
 *   lse [B, Hq,  N]           (log-sum-exp of the visible scores)
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
 * Optional user hooks: the host's generated prefix defines
 *   #define CLATTN_HAS_SCORE_MOD 1
 *   float clattn_score_mod(float score, int b, int h, int q_idx, int kv_idx,
 *                          int n_q, int n_kv, __global const float *buf,
 *                          float p0, float p1, float p2, float p3);
 *   #define CLATTN_HAS_MASK_MOD 1
 *   int   clattn_mask_mod(int b, int h, int q_idx, int kv_idx, int n_q,
 *                         int n_kv, __global const float *buf,
 *                         float p0, float p1, float p2, float p3);
 *   Where the prefix goes: clattn__program_get puts it right after
 *   core/common.cl, i.e. BEFORE this file. That order is required: the
 *   helpers below test CLATTN_HAS_*_MOD with #ifdef and call the hooks,
 *   so both must be defined first. In turn a snippet sees only
 *   core/common.cl and OpenCL's built-ins, never these helpers (none of
 *   the presets of src/attention/presets.c needs more). The backward
 *   takes mask_mod only (score_mod has no derivative it could know).
 *
 * Build options shared by every program (one program per (D, Dv, flags)):
 *   -cl-std=CL1.2 -DHEAD_DIM=D -DVALUE_DIM=Dv (1..256, any value)
 *   -DHAS_BIAS=0|1 -DHAS_KV_LEN=0|1 -DHAS_LSE=0|1 (the forward; the host
 *   always sets kv_len and lse to 1, see sdpa_options in
 *   src/attention/sdpa.c; the backward programs always read kv_len and
 *   set HAS_KV_LEN=1 in their program spec). Each family file lists its
 *   own tunables.
 *
 * ===================================================================
 * Common argument list of the fused forward kernels (sdpa_fwd_cpu,
 * sdpa_fwd_tiled; CLATTN_ARGS, CLATTN_LAYOUT_ARGS)
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
 * The backward's list is in sdpa_bwd_common.cl.
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

/* Score units of the CPU families (sdpa_fwd_cpu, sdpa_bwd_cpu). Without
 * hooks, the rows that meet a block (q in the forward, k in the backward)
 * are pre-scaled by scale*log2(e), so scores (the forward's running max,
 * the backward's lse) are in log2 units and each probability is a bare
 * exp2. Hooks and the -3e38 mask threshold are defined on natural scores,
 * so with hooks scores stay natural and the conversion is one multiply
 * inside the exponent. The tiled families work in natural units and use
 * none of these. */
#if CLATTN_NEEDS_FINISH
#define CLATTN_QSCALE 1.0f
#define CLATTN_EXP2_ARG(x) ((x) * CLATTN_LOG2E)
#define CLATTN_LSE(m, l) ((m) + log(l))
#else
#define CLATTN_QSCALE CLATTN_LOG2E
#define CLATTN_EXP2_ARG(x) (x)
#define CLATTN_LSE(m, l) (((m) + log2(l)) * CLATTN_LN2)
#endif

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

/* Position mask of an edge block of the CPU families: lanes outside
 * [mlo, mhi) (relative to the block start; c0 = first position of this
 * 16-wide chunk) become CLATTN_NEG_BIG. Interior blocks skip it. */
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
