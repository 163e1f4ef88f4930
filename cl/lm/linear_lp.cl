/* linear_lp.cl - products and row gathers that read a weight matrix in the
 * precision of its file (src/lm/weights_lp.c launches them):
 *
 *   y[T, rows] (= or +=) x[T, cols] . W^T (+ bias[rows])
 *
 * W is [rows, cols] row-major (nn.Linear's [out, in]) of WDTYPE; x, y and
 * bias are float32, x and y rows contiguous (row strides cols and rows)
 * from element offsets x_off and y_off. Every product accumulates in
 * float32; weights are converted to float as they are loaded and never
 * stored converted, except by lp_pack_panels (a cache-sized panel for the
 * CPU GEMM). Stores are v = dot + bias[n] (has_bias), then v += y
 * (accumulate: a fused residual add).
 *
 * Build option WDTYPE: 0 F32, 1 F16 (vload_half: OpenCL C 1.2 needs no
 * extension for it), 2 BF16 (the high 16 bits of a float32: as_float of
 * the bits shifted up is exact). One program per dtype.
 *
 * Kernels
 *   lp_gemv_cpu_NT    decode on CPU devices: a work-item per R output rows
 *                     walks its part of cols with float8 loads
 *   lp_gemv_tiled_NT  decode on GPUs (and llvmpipe): a work-group row of
 *                     LX work-items splits each output row's reduction
 *   lp_gemm_tiled     prefill on GPUs: 64 x 64 output tiles, K staged in
 *                     local memory 16 at a time
 *   lp_pack_panels    prefill on CPU devices: rows of W as float in the
 *                     16-column panels gemm/gemm.cl's gemm_cpu_* reads
 *   lp_bias_add       y += bias after a product that had none fused
 *   lp_gather         embedding rows to float32 (= or +=)
 * The matrix-vector kernels exist for NT = 1, 2, 4, 8 token rows: each
 * weight is read once for all of them; rows t >= T re-read row T - 1 and
 * are not stored, so T <= NT needs no bounds checks in the loop.
 *
 * Loop budget (llvmpipe stops an invocation's loops after ~65535
 * iterations in all): every loop here is over at most cols / 8 / LX
 * (tiled), cols / 8 / S (cpu, S chosen by the host), cols / 16 (the tiled
 * GEMM, whose inner steps are written out) or 16 x 16 (packing). */

#ifndef WDTYPE
#define WDTYPE 0
#endif

#if WDTYPE == 0
typedef float wtype;
#define LP_LOAD1(p, c) ((p)[c])
#define LP_LOAD4(p, c) vload4(0, (p) + (c))
#define LP_LOAD8(p, c) vload8(0, (p) + (c))
#elif WDTYPE == 1
typedef half wtype;
#define LP_LOAD1(p, c) vload_half(0, (p) + (c))
#define LP_LOAD4(p, c) vload_half4(0, (p) + (c))
#define LP_LOAD8(p, c) vload_half8(0, (p) + (c))
#elif WDTYPE == 2
typedef ushort wtype;
#define LP_LOAD1(p, c) as_float((uint)(p)[c] << 16)
#define LP_LOAD4(p, c) as_float4(convert_uint4(vload4(0, (p) + (c))) << 16)
#define LP_LOAD8(p, c) as_float8(convert_uint8(vload8(0, (p) + (c))) << 16)
#else
#error "WDTYPE must be 0 (F32), 1 (F16) or 2 (BF16)"
#endif

/* Sum of the 8 lanes, pairwise. */
static inline float lp_hsum8(const float8 v)
{
    const float4 a = v.lo + v.hi;
    const float2 b = a.lo + a.hi;
    return b.x + b.y;
}

/* Stores output element i (row n of W) of a product, reading y[i] for
 * accumulate (the tiled GEMM). */
static inline void lp_store(__global float *y, const long i, float v,
                            __global const float *bias, const int n,
                            const int has_bias, const int accumulate)
{
    if (has_bias)
        v += bias[n];
    if (accumulate)
        v += y[i];
    y[i] = v;
}

/* The same with y[i]'s old value read beforehand (the matrix-vector
 * kernels read it before their barriers): the store itself does not read
 * y, so it is idempotent. POCL 3.1 runs the code after a barrier loop of
 * zero trips (a work-group width of 1) twice for one work-item; an
 * in-place y += v there added the product twice. */
static inline void lp_store_old(__global float *y, const long i, float v, const float old,
                                __global const float *bias, const int n, const int has_bias)
{
    if (has_bias)
        v += bias[n];
    y[i] = v + old;
}

/* ---- matrix-vector, CPU devices ---------------------------------------- */

/* Work-item (s, b): output rows b*R .. b*R + R - 1, columns of split s of
 * S = get_local_size(0) (the host splits rows longer than a serial sum
 * should be, see CLATTN_CPU_ITEM_SPAN). R rows x NT tokens of float8
 * accumulators (8 with the R the host pairs with each NT), so one pass
 * over cols reads R weight rows once and x's NT rows from L1. The splits
 * of a row are one work-group's dimension 0 and are summed by a pairwise
 * tree in local memory (tmp: R * NT floats per work-item), the pattern of
 * core/reduce.cl over several values at once (lp_gemv_cpu_split_NT; the
 * kernels for S = 1, lp_gemv_cpu_NT, have no barrier at all, and ignore
 * tmp). Rows past `rows` repeat row rows - 1 and are not stored. */
#define LP_REDUCE_NONE(NT, R)
#define LP_REDUCE_TREE(NT, R)                                                   \
    {                                                                           \
        __local float *mine = tmp + get_local_id(1) * ((R) * (NT)) * S;         \
        _Pragma("unroll")                                                       \
        for (int r = 0; r < (R); ++r) {                                         \
            _Pragma("unroll")                                                   \
            for (int t = 0; t < (NT); ++t)                                      \
                mine[(r * (NT) + t) * S + s] = sum[r][t];                       \
        }                                                                       \
        barrier(CLK_LOCAL_MEM_FENCE);                                           \
        for (int h = S >> 1; h > 0; h >>= 1) {                                  \
            if (s < h) {                                                        \
                _Pragma("unroll")                                               \
                for (int q = 0; q < (R) * (NT); ++q)                            \
                    mine[q * S + s] += mine[q * S + s + h];                     \
            }                                                                   \
            barrier(CLK_LOCAL_MEM_FENCE);                                       \
        }                                                                       \
        _Pragma("unroll")                                                       \
        for (int r = 0; r < (R); ++r) {                                         \
            _Pragma("unroll")                                                   \
            for (int t = 0; t < (NT); ++t)                                      \
                sum[r][t] = mine[(r * (NT) + t) * S];                           \
        }                                                                       \
    }

#define LP_GEMV_CPU(NAME, NT, R, REDUCE)                                        \
__kernel void NAME(__global const wtype *w, const int rows, const int cols,    \
                   __global const float *x, const long x_off, const int T,      \
                   __global float *y, const long y_off,                         \
                   __global const float *bias, const int has_bias,              \
                   const int accumulate, __local float *tmp)                    \
{                                                                               \
    const int s = get_local_id(0), S = get_local_size(0);                      \
    const int n0 = get_global_id(1) * (R);                                      \
    const int nvec = cols >> 3;                                                 \
    const int per = (nvec + S - 1) / S;                                         \
    const int v0 = min(nvec, s * per), v1 = min(nvec, v0 + per);               \
    __global const float *xr[NT];                                               \
    _Pragma("unroll")                                                           \
    for (int t = 0; t < (NT); ++t)                                              \
        xr[t] = x + x_off + (long)min(t, T - 1) * cols;                         \
    __global const wtype *wr[R];                                                \
    _Pragma("unroll")                                                           \
    for (int r = 0; r < (R); ++r)                                               \
        wr[r] = w + (long)min(n0 + r, rows - 1) * cols;                         \
    float old[R][NT];                                                           \
    _Pragma("unroll")                                                           \
    for (int r = 0; r < (R); ++r) {                                             \
        _Pragma("unroll")                                                       \
        for (int t = 0; t < (NT); ++t)                                          \
            old[r][t] = accumulate && s == 0 && n0 + r < rows && t < T          \
                            ? y[y_off + (long)t * rows + n0 + r] : 0.0f;        \
    }                                                                           \
    float8 acc[R][NT];                                                          \
    _Pragma("unroll")                                                           \
    for (int r = 0; r < (R); ++r) {                                             \
        _Pragma("unroll")                                                       \
        for (int t = 0; t < (NT); ++t)                                          \
            acc[r][t] = (float8)0.0f;                                           \
    }                                                                           \
    for (int v = v0; v < v1; ++v) {                                             \
        const int c = v << 3;                                                   \
        float8 xv[NT];                                                          \
        _Pragma("unroll")                                                       \
        for (int t = 0; t < (NT); ++t)                                          \
            xv[t] = vload8(0, xr[t] + c);                                       \
        _Pragma("unroll")                                                       \
        for (int r = 0; r < (R); ++r) {                                         \
            const float8 wv = LP_LOAD8(wr[r], c);                               \
            _Pragma("unroll")                                                   \
            for (int t = 0; t < (NT); ++t)                                      \
                acc[r][t] = mad(wv, xv[t], acc[r][t]);                          \
        }                                                                       \
    }                                                                           \
    float sum[R][NT];                                                           \
    _Pragma("unroll")                                                           \
    for (int r = 0; r < (R); ++r) {                                             \
        _Pragma("unroll")                                                       \
        for (int t = 0; t < (NT); ++t)                                          \
            sum[r][t] = lp_hsum8(acc[r][t]);                                    \
    }                                                                           \
    /* the last split also takes the cols % 8 tail */                           \
    if (s == S - 1) {                                                           \
        for (int c = nvec << 3; c < cols; ++c) {                                \
            _Pragma("unroll")                                                   \
            for (int r = 0; r < (R); ++r) {                                     \
                const float wv = LP_LOAD1(wr[r], c);                            \
                _Pragma("unroll")                                               \
                for (int t = 0; t < (NT); ++t)                                  \
                    sum[r][t] = mad(wv, xr[t][c], sum[r][t]);                   \
            }                                                                   \
        }                                                                       \
    }                                                                           \
    REDUCE(NT, R)                                                               \
    if (s == 0) {                                                               \
        _Pragma("unroll")                                                       \
        for (int r = 0; r < (R); ++r) {                                         \
            _Pragma("unroll")                                                   \
            for (int t = 0; t < (NT); ++t) {                                    \
                if (n0 + r < rows && t < T)                                     \
                    lp_store_old(y, y_off + (long)t * rows + n0 + r, sum[r][t], \
                                 old[r][t], bias, n0 + r, has_bias);            \
            }                                                                   \
        }                                                                       \
    }                                                                           \
}

/* R per NT: NT * R = 4 to 8 float8 accumulators, within the 16 AVX2
 * registers with the loads. Must match GEMV_CPU_ROWS in weights_lp.c. */
LP_GEMV_CPU(lp_gemv_cpu_1, 1, 4, LP_REDUCE_NONE)
LP_GEMV_CPU(lp_gemv_cpu_2, 2, 4, LP_REDUCE_NONE)
LP_GEMV_CPU(lp_gemv_cpu_4, 4, 2, LP_REDUCE_NONE)
LP_GEMV_CPU(lp_gemv_cpu_8, 8, 1, LP_REDUCE_NONE)
LP_GEMV_CPU(lp_gemv_cpu_split_1, 1, 4, LP_REDUCE_TREE)
LP_GEMV_CPU(lp_gemv_cpu_split_2, 2, 4, LP_REDUCE_TREE)
LP_GEMV_CPU(lp_gemv_cpu_split_4, 4, 2, LP_REDUCE_TREE)
LP_GEMV_CPU(lp_gemv_cpu_split_8, 8, 1, LP_REDUCE_TREE)

/* ---- matrix-vector, GPUs ------------------------------------------------- */

/* Work-group (LX, LY): LY output rows (dimension 1), each row's cols split
 * over LX = get_local_size(0) work-items that read consecutive float8
 * chunks (coalesced), then a pairwise tree over LX in local memory (tmp:
 * LX * LY * NT floats), the pattern of core/reduce.cl for NT values at
 * once. */
#define LP_GEMV_TILED(NT)                                                       \
__kernel void lp_gemv_tiled_##NT(__global const wtype *w, const int rows,       \
                                 const int cols, __global const float *x,       \
                                 const long x_off, const int T,                 \
                                 __global float *y, const long y_off,           \
                                 __global const float *bias,                    \
                                 const int has_bias, const int accumulate,      \
                                 __local float *tmp)                            \
{                                                                               \
    const int lx = get_local_id(0), LX = get_local_size(0);                    \
    const int n = get_global_id(1);                                             \
    __global const wtype *wr = w + (long)min(n, rows - 1) * cols;               \
    __global const float *xr[NT];                                               \
    _Pragma("unroll")                                                           \
    for (int t = 0; t < (NT); ++t)                                              \
        xr[t] = x + x_off + (long)min(t, T - 1) * cols;                         \
    float old[NT];                                                              \
    _Pragma("unroll")                                                           \
    for (int t = 0; t < (NT); ++t)                                              \
        old[t] = accumulate && lx == 0 && n < rows && t < T                     \
                     ? y[y_off + (long)t * rows + n] : 0.0f;                    \
    float8 acc[NT];                                                             \
    _Pragma("unroll")                                                           \
    for (int t = 0; t < (NT); ++t)                                              \
        acc[t] = (float8)0.0f;                                                  \
    const int nvec = cols >> 3;                                                 \
    for (int v = lx; v < nvec; v += LX) {                                       \
        const float8 wv = LP_LOAD8(wr, v << 3);                                 \
        _Pragma("unroll")                                                       \
        for (int t = 0; t < (NT); ++t)                                          \
            acc[t] = mad(wv, vload8(0, xr[t] + (v << 3)), acc[t]);              \
    }                                                                           \
    float sum[NT];                                                              \
    _Pragma("unroll")                                                           \
    for (int t = 0; t < (NT); ++t)                                              \
        sum[t] = lp_hsum8(acc[t]);                                              \
    for (int c = (nvec << 3) + lx; c < cols; c += LX) {                         \
        const float wv = LP_LOAD1(wr, c);                                       \
        _Pragma("unroll")                                                       \
        for (int t = 0; t < (NT); ++t)                                          \
            sum[t] = mad(wv, xr[t][c], sum[t]);                                 \
    }                                                                           \
    __local float *mine = tmp + get_local_id(1) * (NT) * LX;                    \
    _Pragma("unroll")                                                           \
    for (int t = 0; t < (NT); ++t)                                              \
        mine[t * LX + lx] = sum[t];                                             \
    barrier(CLK_LOCAL_MEM_FENCE);                                               \
    for (int h = LX >> 1; h > 0; h >>= 1) {                                     \
        if (lx < h) {                                                           \
            _Pragma("unroll")                                                   \
            for (int t = 0; t < (NT); ++t)                                      \
                mine[t * LX + lx] += mine[t * LX + lx + h];                     \
        }                                                                       \
        barrier(CLK_LOCAL_MEM_FENCE);                                           \
    }                                                                           \
    if (lx == 0 && n < rows) {                                                  \
        _Pragma("unroll")                                                       \
        for (int t = 0; t < (NT); ++t) {                                        \
            if (t < T)                                                          \
                lp_store_old(y, y_off + (long)t * rows + n, mine[t * LX],       \
                             old[t], bias, n, has_bias);                        \
        }                                                                       \
    }                                                                           \
}

LP_GEMV_TILED(1)
LP_GEMV_TILED(2)
LP_GEMV_TILED(4)
LP_GEMV_TILED(8)

/* ---- matrix-matrix, GPUs ------------------------------------------------- */

/* Tile of LP_TM token rows by LP_TN output rows per work-group of 16 x 16
 * work-items, each owning 4 x 4 outputs strided by 16 (rows ty + 16 i,
 * columns tx + 16 j: neighbouring work-items read neighbouring local
 * words). Per step of LP_TK columns each work-item loads 4 consecutive
 * elements of one x row and one W row (converted to float) into the
 * local tiles, stored k-major. Must match weights_lp.c's GEMM_TILE. */
#define LP_TM 64
#define LP_TN 64
#define LP_TK 16

/* One k of the tiles: 16 multiply-adds, written out (not a loop) so the
 * only loop of the kernel is over K / LP_TK tiles (llvmpipe's budget). */
#define LP_TILE_STEP(k)                                                         \
    do {                                                                        \
        const float4 b = (float4)(ws[k][tx], ws[k][tx + 16], ws[k][tx + 32],    \
                                  ws[k][tx + 48]);                              \
        acc0 = mad((float4)xs[k][ty], b, acc0);                                 \
        acc1 = mad((float4)xs[k][ty + 16], b, acc1);                            \
        acc2 = mad((float4)xs[k][ty + 32], b, acc2);                            \
        acc3 = mad((float4)xs[k][ty + 48], b, acc3);                            \
    } while (0)

static inline void lp_tile_store(__global float *y, const long y_off, const int rows,
                                 const int T, const int tok, const int n0, const float4 a,
                                 __global const float *bias, const int has_bias,
                                 const int accumulate)
{
    if (tok >= T)
        return;
    const long base = y_off + (long)tok * rows;
    if (n0 < rows) lp_store(y, base + n0, a.s0, bias, n0, has_bias, accumulate);
    if (n0 + 16 < rows) lp_store(y, base + n0 + 16, a.s1, bias, n0 + 16, has_bias, accumulate);
    if (n0 + 32 < rows) lp_store(y, base + n0 + 32, a.s2, bias, n0 + 32, has_bias, accumulate);
    if (n0 + 48 < rows) lp_store(y, base + n0 + 48, a.s3, bias, n0 + 48, has_bias, accumulate);
}

/* Global (ceil(rows / 64) * 16, ceil(T / 64) * 16), local (16, 16). */
__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void lp_gemm_tiled(__global const wtype *w, const int rows, const int cols,
                   __global const float *x, const long x_off, const int T,
                   __global float *y, const long y_off,
                   __global const float *bias, const int has_bias, const int accumulate)
{
    __local float xs[LP_TK][LP_TM + 1];
    __local float ws[LP_TK][LP_TN + 1];
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int n0 = get_group_id(0) * LP_TN, m0 = get_group_id(1) * LP_TM;
    /* the loader's row of the tiles and its 4 columns */
    const int l = ty * 16 + tx, lr = l >> 2, kq = (l & 3) * 4;
    __global const float *xrow = x + x_off + (long)min(m0 + lr, T - 1) * cols;
    __global const wtype *wrow = w + (long)min(n0 + lr, rows - 1) * cols;
    float4 acc0 = (float4)0.0f, acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int k0 = 0; k0 < cols; k0 += LP_TK) {
        const int kk = k0 + kq;
        float4 xv, wv;
        if (kk + 4 <= cols) {
            xv = vload4(0, xrow + kk);
            wv = LP_LOAD4(wrow, kk);
        } else {
            /* the last tile: zeros past cols (both operands, so 0 * 0);
             * kk + 3 >= cols here */
            xv = (float4)(kk < cols ? xrow[kk] : 0.0f, kk + 1 < cols ? xrow[kk + 1] : 0.0f,
                          kk + 2 < cols ? xrow[kk + 2] : 0.0f, 0.0f);
            wv = (float4)(kk < cols ? LP_LOAD1(wrow, kk) : 0.0f,
                          kk + 1 < cols ? LP_LOAD1(wrow, kk + 1) : 0.0f,
                          kk + 2 < cols ? LP_LOAD1(wrow, kk + 2) : 0.0f, 0.0f);
        }
        xs[kq][lr] = xv.s0;
        xs[kq + 1][lr] = xv.s1;
        xs[kq + 2][lr] = xv.s2;
        xs[kq + 3][lr] = xv.s3;
        ws[kq][lr] = wv.s0;
        ws[kq + 1][lr] = wv.s1;
        ws[kq + 2][lr] = wv.s2;
        ws[kq + 3][lr] = wv.s3;
        barrier(CLK_LOCAL_MEM_FENCE);
        LP_TILE_STEP(0);
        LP_TILE_STEP(1);
        LP_TILE_STEP(2);
        LP_TILE_STEP(3);
        LP_TILE_STEP(4);
        LP_TILE_STEP(5);
        LP_TILE_STEP(6);
        LP_TILE_STEP(7);
        LP_TILE_STEP(8);
        LP_TILE_STEP(9);
        LP_TILE_STEP(10);
        LP_TILE_STEP(11);
        LP_TILE_STEP(12);
        LP_TILE_STEP(13);
        LP_TILE_STEP(14);
        LP_TILE_STEP(15);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const int n = n0 + tx, m = m0 + ty;
    lp_tile_store(y, y_off, rows, T, m, n, acc0, bias, has_bias, accumulate);
    lp_tile_store(y, y_off, rows, T, m + 16, n, acc1, bias, has_bias, accumulate);
    lp_tile_store(y, y_off, rows, T, m + 32, n, acc2, bias, has_bias, accumulate);
    lp_tile_store(y, y_off, rows, T, m + 48, n, acc3, bias, has_bias, accumulate);
}

/* ---- matrix-matrix, CPU devices: panels for gemm/gemm.cl ----------------- */

/* Rows n0 .. n0 + nc - 1 of W [rows, cols] as float in gemm_cpu's op(B)
 * layout for B = W^T: panel p, element (k, c) at bp[(p * cols + k) * 16 +
 * c] = W[n0 + 16 p + c, k], zero past nc (gemm_pack_b's layout, read with
 * b_ks = 16, b_ps = 16 * cols). One work-item per (16 columns of W, panel):
 * it loads a 16 x 16 block with contiguous row loads and writes it
 * transposed; local size 1, as gemm_pack_b (its private block). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void lp_pack_panels(__global const wtype *w, const int cols, const int n0, const int nc,
                    __global float *bp)
{
    const int k0 = get_global_id(0) * 16;
    const int p = get_global_id(1);
    if (k0 >= cols)
        return;
    const int kn = min(16, cols - k0);      /* columns of this block */
    const int jn = min(16, nc - p * 16);    /* rows of W in this panel */
    float t[16][16];                        /* t[c][kk] = W[n0 + 16p + c, k0 + kk] */
    for (int c = 0; c < 16; ++c) {
        if (c < jn) {
            __global const wtype *row = w + (long)(n0 + p * 16 + c) * cols + k0;
            if (kn == 16) {
                vstore8(LP_LOAD8(row, 0), 0, t[c]);
                vstore8(LP_LOAD8(row, 8), 0, t[c] + 8);
            } else {
                for (int kk = 0; kk < 16; ++kk)
                    t[c][kk] = kk < kn ? LP_LOAD1(row, kk) : 0.0f;
            }
        } else {
            for (int kk = 0; kk < 16; ++kk)
                t[c][kk] = 0.0f;
        }
    }
    __global float *dst = bp + ((long)p * cols + k0) * 16;
    for (int kk = 0; kk < kn; ++kk) {
        float o[16];
        for (int c = 0; c < 16; ++c)
            o[c] = t[c][kk];
        vstore16(vload16(0, o), kk, dst);
    }
}

/* ---- small kernels ------------------------------------------------------- */

/* y[t, n] += bias[n] for the [T, rows] rows at y_off. Global (rows, T). */
__kernel void lp_bias_add(__global float *y, const long y_off, const int rows,
                          __global const float *bias)
{
    const int n = get_global_id(0), t = get_global_id(1);
    if (n < rows)
        y[y_off + (long)t * rows + n] += bias[n];
}

/* out[t, c] (= or += when accumulate) table[ids[t], c] as float32, for the
 * [T, cols] rows of out. Ids are checked by the caller; the clamp keeps a
 * bad one inside the table. Global (cols, T). */
__kernel void lp_gather(__global const wtype *table, const int rows, const int cols,
                        __global const int *ids, __global float *out, const int accumulate)
{
    const int c = get_global_id(0), t = get_global_id(1);
    if (c >= cols)
        return;
    const int id = clamp(ids[t], 0, rows - 1);
    const float v = LP_LOAD1(table + (long)id * cols, c);
    const long i = (long)t * cols + c;
    out[i] = accumulate ? out[i] + v : v;
}
