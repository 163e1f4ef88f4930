/*
 * gemm.cl - SGEMM for CPU devices: C = alpha * op(A) * op(B) + beta * C.
 * OpenCL C 1.2, no extensions. GPUs use CLBlast instead (src/gemm.c).
 *
 * Why clattn has its own: CLBlast's kernels are written for GPUs (local
 * memory tiles, work-groups of many threads); on POCL's CPU device its
 * best parameters reach 45-55 GFLOP/s on this project's 2-core Zen
 * machine, and below 64^3 it runs several kernels and allocates
 * temporaries per call. This is the register-blocked micro-kernel of CPU
 * BLAS libraries written in OpenCL C: a work-item owns GEMM_ROWS rows by
 * 16 columns of C, held in GEMM_ROWS float16 accumulators (12 of the 16
 * AVX2 registers at 6 rows), and walks K broadcasting one A element
 * against 16 contiguous B elements per step.
 *
 * Layouts (float32, row-major; "batch" is global dimension 2)
 *   op(A) [M, K]: element (i, k) at a[a_off + batch*a_bs + i*lda + k]
 *                 (gemm_cpu_an) or a[a_off + batch*a_bs + k*lda + i]
 *                 (gemm_cpu_at, op(A) = A^T) or, for gemm_cpu_ap, the row
 *                 blocks [ceil(M/GEMM_ROWS)][K][GEMM_ROWS] of gemm_pack_a
 *   op(B) [K, N]: 16-column panels; element (k, 16p + c) at
 *                 b[b_off + batch*b_bs + p*b_ps + k*b_ks + c]: the panels
 *                 written by gemm_pack_b (b_ks = 16, b_ps = 16*K),
 *                 zero-padded past N. (B itself would also fit, with
 *                 b_ks = ldb and b_ps = 16, when N % 16 == 0.)
 *   C     [M, N]: element (i, j) at c[c_off + batch*c_bs + i*ldc + j]
 *   beta == 0 never reads C (it may hold garbage, NaN included).
 *   Launch: global = (round_up(ceil(M/GEMM_ROWS), GEMM_LOCAL),
 *   ceil(N/16), batch), local = (GEMM_LOCAL, 1, 1).
 *   Epilogue (clattn_linear): C = act(alpha*op(A)*op(B) + beta*C + bias),
 *   bias [N] when has_bias, act = GEMM_ACT (a build option, ACT_* codes).
 *
 * Build options (tunables):
 *   GEMM_ROWS  [6] rows of C per work-item (6 x 16 is the AVX2 tile)
 *   GEMM_LOCAL [8] work-items per work-group: consecutive row blocks, so
 *                  one group reuses its B panel from L1/L2.
 *   GEMM_ACT   [ACT_NONE] the epilogue's activation (one program each).
 *   GEMM_SUPER_BYTES [256 KiB] rows of A a run of work-groups shares,
 *   GEMM_A_CACHED_BYTES [1 MiB] the A that stays in L2 without that,
 *   GEMM_B_CACHED_BYTES [3 MiB] the largest B re-read from L3 instead:
 *                  see gemm_group_order.
 */

#ifndef GEMM_ROWS
#define GEMM_ROWS 6
#endif
#ifndef GEMM_LOCAL
#define GEMM_LOCAL 8
#endif
#ifndef GEMM_ACT
#define GEMM_ACT ACT_NONE
#endif
#ifndef GEMM_SUPER_BYTES
#define GEMM_SUPER_BYTES 262144
#endif
#ifndef GEMM_A_CACHED_BYTES
#define GEMM_A_CACHED_BYTES 1048576
#endif
#ifndef GEMM_B_CACHED_BYTES
#define GEMM_B_CACHED_BYTES 3145728
#endif

/* Packs op(B) [K, N] into 16-column panels [ceil(N/16)][K][16] (pad = 0).
 * One work-item per (16-row chunk of K, panel, batch): for B^T it loads
 * 16 rows of B with 16 contiguous elements each and writes them
 * transposed, where one element per work-item (16 strided loads per
 * panel row) ran at a fifth of the speed. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_pack_b(__global const float *b, const long b_off,
                          const int ldb, const int trans_b, const long b_bs,
                          const int K, const int N, __global float *bp)
{
    const int k0 = get_global_id(0) * 16;
    const int p = get_global_id(1);
    const int bt = get_global_id(2);
    if (k0 >= K) return;
    const int np = (N + 15) / 16;
    const int kn = min(16, K - k0);            /* rows of this chunk */
    const int j0 = p * 16, jn = min(16, N - j0); /* valid columns */
    __global const float *src = b + b_off + bt * b_bs;
    __global float *dst = bp + (((long)bt * np + p) * K + k0) * 16;
    if (!trans_b) {
        for (int kk = 0; kk < kn; ++kk) {
            __global const float *row = src + (long)(k0 + kk) * ldb + j0;
            if (jn == 16) {
                vstore16(vload16(0, row), kk, dst);
            } else {
                for (int c = 0; c < 16; ++c)
                    dst[kk * 16 + c] = c < jn ? row[c] : 0.0f;
            }
        }
        return;
    }
    /* t[c][kk] = B[j0 + c, k0 + kk]: the tile as stored, read transposed */
    float t[16][16];
    for (int c = 0; c < 16; ++c) {
        __global const float *row = src + (long)(j0 + c) * ldb + k0;
        if (c < jn && kn == 16) {
            vstore16(vload16(0, row), 0, t[c]);
        } else {
            for (int kk = 0; kk < 16; ++kk)
                t[c][kk] = c < jn && kk < kn ? row[kk] : 0.0f;
        }
    }
    for (int kk = 0; kk < kn; ++kk) {
        float o[16];
        for (int c = 0; c < 16; ++c) o[c] = t[c][kk];
        vstore16(vload16(0, o), kk, dst);
    }
}

#define R_ GEMM_ROWS

/* The (row group, panel) of this work-group. POCL runs work-groups in
 * order of linear id, so the launch grid's own order (row groups fastest)
 * streams all of A through the caches once per B panel: with M = 4096,
 * K = 384, N = 1536 (a BERT feed-forward) that is 6 MiB from L3 for each
 * of 96 panels. When B is small enough to stay in L3, consecutive groups
 * instead walk every panel of a super-block of row groups whose A rows
 * (about GEMM_SUPER_BYTES) stay in L2, and B is re-read per super-block:
 * 126-146 against 153-179 GFLOP/s on that shape and its K = 1536 twin.
 * With A in L2 anyway, or a large B (n = k = 2048: 150 against 170), the
 * grid's order was as fast or faster. */
static inline void gemm_group_order(int K, int *g, int *p)
{
    const int G0 = get_num_groups(0), G1 = get_num_groups(1);
    const int L = get_group_id(0) + get_group_id(1) * G0;
    /* S = G0 is the grid's own order */
    const long group_bytes = (long)GEMM_LOCAL * R_ * 4 * max(K, 1);
    const long b_bytes = (long)G1 * 16 * 4 * max(K, 1);
    const int S = (long)G0 * group_bytes <= GEMM_A_CACHED_BYTES ||
                          b_bytes > GEMM_B_CACHED_BYTES
                      ? G0
                      : clamp((int)(GEMM_SUPER_BYTES / group_bytes), 1, G0);
    const int s = L / (S * G1);              /* super-blocks before: full */
    const int Se = min(S, G0 - s * S);       /* this one may be short */
    const int rem = L - s * S * G1;
    *p = rem / Se;
    *g = s * S + (rem - *p * Se);
}

/* The two kernels differ only in how A is addressed, and that must be a
 * compile-time constant: with a run-time k stride the A loads cannot be
 * combined and the kernel ran at 70 instead of 130 GFLOP/s (n = 1024).
 *   gemm_cpu_an: op(A) = A,   element (i, k) at row i * lda + k
 *   gemm_cpu_at: op(A) = A^T, element (i, k) at k * lda + i            */
#define GEMM_CPU_KERNEL(NAME, A_ROW, A_KS)                                    \
__kernel __attribute__((reqd_work_group_size(GEMM_LOCAL, 1, 1)))            \
void NAME(const int M, const int N, const int K, const float alpha,          \
          __global const float *a, const long a_off, const int lda,          \
          const long a_bs,                                                   \
          __global const float *b, const long b_off, const int b_ks,         \
          const long b_ps, const long b_bs,                                  \
          const float beta, __global float *c, const long c_off,             \
          const int ldc, const long c_bs,                                    \
          __global const float *bias, const int has_bias)                    \
{                                                                            \
    int g, p;                                                                \
    gemm_group_order(K, &g, &p);                                             \
    const int i0 = (g * GEMM_LOCAL + (int)get_local_id(0)) * R_;             \
    const int bt = get_global_id(2);                                         \
    if (i0 >= M) return;                                                     \
    /* Rows past M repeat row M-1 (their results are not stored), so the   \
     * inner loop needs no bounds checks. */                                 \
    __global const float *ar[R_];                                            \
    _Pragma("unroll")                                                        \
    for (int r = 0; r < R_; ++r)                                             \
        ar[r] = a + a_off + bt * a_bs + A_ROW((long)min(i0 + r, M - 1));     \
    __global const float *bq = b + b_off + bt * b_bs + p * b_ps;             \
    float16 acc[R_];                                                         \
    _Pragma("unroll")                                                        \
    for (int r = 0; r < R_; ++r) acc[r] = (float16)0.0f;                     \
    /* unroll 2: two independent B loads in flight per step */              \
    _Pragma("unroll 2")                                                      \
    for (int k = 0; k < K; ++k) {                                            \
        const float16 bv = vload16(0, bq + (long)k * b_ks);                  \
        _Pragma("unroll")                                                    \
        for (int r = 0; r < R_; ++r)                                         \
            acc[r] += (float16)ar[r][(long)k * (A_KS)] * bv;                 \
    }                                                                        \
    gemm_store(acc, M, N, i0, p * 16, alpha, beta,                           \
               c + c_off + bt * c_bs, ldc, has_bias ? bias : 0);             \
}

/* act(x + bias) on 16 lanes; the activation is a build option, so the
 * common case (none) costs nothing. */
static inline float16 gemm_epilogue(float16 y, __global const float *bias)
{
    if (bias) y += vload16(0, bias);
#if GEMM_ACT != ACT_NONE
    float t[16];
    vstore16(y, 0, t);
    for (int l = 0; l < 16; ++l) t[l] = clattn_act(t[l], GEMM_ACT);
    y = vload16(0, t);
#endif
    return y;
}

/* Writes act(alpha * acc + beta * C + bias) for the rows below M and the
 * columns below N of the block at (i0, j0) of C (row stride ldc); bias
 * (may be NULL) is indexed by the column. */
static inline void gemm_store(const float16 *acc, int M, int N, int i0, int j0,
                              float alpha, float beta, __global float *c,
                              int ldc, __global const float *bias)
{
    const int full = j0 + 16 <= N;
    __global const float *bj = 0;
    if (bias && full) bj = bias + j0;
    for (int r = 0; r < R_; ++r) {
        if (i0 + r >= M) break;
        __global float *cr = c + (long)(i0 + r) * ldc + j0;
        float16 y = alpha * acc[r];
        if (full) {
            if (beta != 0.0f) y += beta * vload16(0, cr);
            vstore16(gemm_epilogue(y, bj), 0, cr);
        } else {
            float yv[16];
            vstore16(y, 0, yv);
            for (int cc = 0; cc < 16; ++cc) {
                if (cc < N - j0) {
                    yv[cc] += beta != 0.0f ? beta * cr[cc] : 0.0f;
                    yv[cc] += bias ? bias[j0 + cc] : 0.0f;
                }
            }
            y = gemm_epilogue(vload16(0, yv), 0);
            vstore16(y, 0, yv);
            for (int cc = 0; cc < N - j0; ++cc) cr[cc] = yv[cc];
        }
    }
}

#define ROW_AN(i) ((i) * lda)
#define ROW_AT(i) (i)
#define ROW_AP(i) ((i) / R_ * R_ * K + (i) % R_)
GEMM_CPU_KERNEL(gemm_cpu_an, ROW_AN, 1)
GEMM_CPU_KERNEL(gemm_cpu_at, ROW_AT, lda)
/* A packed by gemm_pack_a: row block of R_ rows at a + blk*R_*K, element
 * (r, k) at k*R_ + r (lda unused) */
GEMM_CPU_KERNEL(gemm_cpu_ap, ROW_AP, R_)

/* Packs op(A) [M, K] into row blocks [ceil(M/R_)][K][R_] (rows past M
 * repeat row M-1). One work-item per (k, block, batch). */
__kernel void gemm_pack_a(__global const float *a, const long a_off,
                          const int lda, const int trans_a, const long a_bs,
                          const int M, const int K, __global float *ap)
{
    const int k = get_global_id(0);
    const int blk = get_global_id(1);
    const int bt = get_global_id(2);
    if (k >= K) return;
    const int nb = (M + R_ - 1) / R_;
    __global const float *src = a + a_off + bt * a_bs;
    __global float *dst = ap + (((long)bt * nb + blk) * K + k) * R_;
    for (int r = 0; r < R_; ++r) {
        const int i = min(blk * R_ + r, M - 1);
        dst[r] = trans_a ? src[(long)k * lda + i] : src[(long)i * lda + k];
    }
}
