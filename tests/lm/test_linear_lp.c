/* test_linear_lp.c - the decoder's weight matrices in the file's precision
 * (src/lm/weights_lp.c): uploads (plain and transposed), every product
 * path forced in turn (the matrix-vector kernels of both device families,
 * the CPU GEMM on float panels, the tiled GEMM, the BLAS path for F32) and
 * the automatic choice, row gathers, and bad arguments.
 *
 * References are double-precision loops over the values the device holds,
 * decoded here from the stored bits by the test's own converters (F16 full
 * IEEE 754 binary16 with subnormals, BF16 the top half of a float32).
 *
 * Two kinds of data:
 *   random  x, bias, y uniform in [-1, 1); F32 weights uniform, BF16 the
 *           top 16 bits of uniform floats, F16 random bit patterns of
 *           exponents 0 (subnormal) to 15 (below 2). Tolerance per output:
 *           |got - ref| <= (cols + 2) * 2^-24 * (sum_k |x_k w_k| + |bias|
 *           + |y|): the first-order bound of float32 summation of cols
 *           products in any order (gamma_cols), plus the bias and residual
 *           adds. The worst observed ratio is printed per dtype.
 *   exact   every value a small integer (|x|, |w| <= 4, |bias|, |y| <= 8),
 *           so every partial sum is an integer below 2^24 and exact in
 *           float32 in any order: results must equal the reference bit for
 *           bit, which catches a dropped or doubled term on every shape,
 *           however long its rows. */
#include "lm/lm.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static clattn_ctx *ctx;

/* ---- host converters --------------------------------------------------- */

static double f16_decode(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return h >> 15 ? -v : v;
}

static double bf16_decode(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* binary16 of a small integer |v| <= 2048 (exact). */
static uint16_t f16_of_int(int v)
{
    if (v == 0)
        return 0;
    uint16_t s = v < 0 ? 0x8000 : 0;
    int a = abs(v), e = 0;
    while ((a >> e) > 1)
        e++;
    return s | (uint16_t)((e + 15) << 10) | (uint16_t)(((a << (10 - e)) - 1024) & 1023);
}

static uint16_t bf16_of_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

static size_t esize(clattn_dtype dt)
{
    return dt == CLATTN_DTYPE_F32 ? 4 : 2;
}

/* Value number i of a host weight array of dtype dt. */
static double decode(clattn_dtype dt, const unsigned char *bytes, size_t i)
{
    if (dt == CLATTN_DTYPE_F32) {
        float f;
        memcpy(&f, bytes + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, bytes + 2 * i, 2);
    return dt == CLATTN_DTYPE_F16 ? f16_decode(h) : bf16_decode(h);
}

static int rand_int(int lo, int hi)
{
    int v = (int)floorf(test_uniform((float)lo, (float)hi + 1.0f));
    return v > hi ? hi : v;
}

/* n weights of dtype dt into bytes (n * esize), their values into val. */
static void make_weights(clattn_dtype dt, size_t n, bool exact, unsigned char *bytes,
                         double *val)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == CLATTN_DTYPE_F32) {
            float f = exact ? (float)rand_int(-4, 4) : test_uniform(-1, 1);
            memcpy(bytes + 4 * i, &f, 4);
        } else {
            uint16_t h;
            if (dt == CLATTN_DTYPE_BF16)
                h = bf16_of_float(exact ? (float)rand_int(-4, 4) : test_uniform(-1, 1));
            else if (exact)
                h = f16_of_int(rand_int(-4, 4));
            else
                h = (uint16_t)((rand_int(0, 1) << 15) | (rand_int(0, 15) << 10) |
                               rand_int(0, 1023));
            memcpy(bytes + 2 * i, &h, 2);
        }
        val[i] = decode(dt, bytes, i);
    }
}

static void fill(float *v, size_t n, bool exact, int range)
{
    for (size_t i = 0; i < n; i++)
        v[i] = exact ? (float)rand_int(-range, range) : test_uniform(-1, 1);
}

/* ---- device buffers ---------------------------------------------------- */

static cl_mem dev_buffer(size_t floats, const float *data)
{
    cl_int err;
    cl_mem m = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, (floats ? floats : 1) * 4, NULL,
                              &err);
    if (!m) {
        fprintf(stderr, "clCreateBuffer: %d\n", err);
        exit(1);
    }
    if (data && floats)
        clEnqueueWriteBuffer(ctx->queue, m, CL_TRUE, 0, floats * 4, data, 0, NULL, NULL);
    return m;
}

static void dev_write(cl_mem m, size_t off, size_t floats, const float *data)
{
    cl_int err = clEnqueueWriteBuffer(ctx->queue, m, CL_TRUE, off * 4, floats * 4, data, 0, NULL,
                                      NULL);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "clEnqueueWriteBuffer: %d\n", err);
        exit(1);
    }
}

static void dev_read(cl_mem m, size_t off, size_t bytes, void *data)
{
    cl_int err = clEnqueueReadBuffer(ctx->queue, m, CL_TRUE, off, bytes, data, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "clEnqueueReadBuffer: %d\n", err);
        exit(1);
    }
}

/* ---- products ------------------------------------------------------------ */

static const char *const PATH_NAME[CLATTN_LM_PATH_COUNT] = {
    "auto", "gemv_cpu", "gemv_tiled", "gemm_packed", "gemm_tiled", "gemm_blas",
};

static int dtype_index(clattn_dtype dt)
{
    return dt == CLATTN_DTYPE_F32 ? 0 : dt == CLATTN_DTYPE_F16 ? 1 : 2;
}

/* Worst |err| / bound-magnitude per dtype (random data), in units of 2^-24. */
static double worst_ulps[3];
static const char *worst_where[3];
static char worst_buf[3][160];
static int products;

/* One weight matrix under test with its values. */
typedef struct wcase {
    clattn_dtype dt;
    int rows, cols;
    bool exact;
    double *val;           /* [rows, cols] */
    clattn__lm_matrix m;
} wcase;

/* Runs one product through path and checks it against dot/mag (the
 * [T, rows] dot products and sums of |x w|). */
static void check_product(const wcase *w, clattn__lm_path path, int T, cl_mem xd, size_t x_off,
                          const double *dot, const double *mag, const float *bias, cl_mem bd,
                          bool acc, const float *y0, cl_mem yd, size_t y_off, float *got)
{
    size_t ny = (size_t)T * w->rows;
    dev_write(yd, y_off, ny, y0);
    char what[160];
    snprintf(what, sizeof what, "%s %s [%d x %d] T=%d bias=%d acc=%d %s", PATH_NAME[path],
             clattn_dtype_name(w->dt), w->rows, w->cols, T, bias != NULL, acc,
             w->exact ? "exact" : "random");
    clattn_status st = clattn__lm_linear_path(ctx, path, &w->m, bias ? bd : NULL, xd, x_off, T,
                                              yd, y_off, acc, what);
    CHECK(st == CLATTN_OK, "%s: %s", what, clattn_last_error());
    if (st != CLATTN_OK)
        return;
    products++;
    dev_read(yd, y_off * 4, ny * 4, got);
    int di = dtype_index(w->dt);
    for (int t = 0; t < T; t++) {
        for (int n = 0; n < w->rows; n++) {
            size_t i = (size_t)t * w->rows + n;
            double ref = dot[i], m = mag[i];
            if (bias) {
                ref += bias[n];
                m += fabs(bias[n]);
            }
            if (acc) {
                ref += y0[i];
                m += fabs(y0[i]);
            }
            double err = fabs((double)got[i] - ref);
            bool ok;
            if (w->exact) {
                ok = (double)got[i] == ref;
            } else {
                double bound = (w->cols + 2) * ldexp(1.0, -24) * m;
                ok = isfinite(got[i]) && err <= bound;
                double ulps = m > 0 ? err / m / ldexp(1.0, -24) : 0;
                if (ulps > worst_ulps[di]) {
                    worst_ulps[di] = ulps;
                    snprintf(worst_buf[di], sizeof worst_buf[di], "%s", what);
                    worst_where[di] = worst_buf[di];
                }
            }
            if (!ok) {
                CHECK(false, "%s: y[%d, %d] = %.9g, reference %.9g (|x||w| sum %.3g)", what, t,
                      n, (double)got[i], ref, m);
                return;
            }
        }
    }
    test_checks++;
}

/* The [T, rows] dot products of x [T, cols] with w's rows, and sum |x w|. */
static void reference(const wcase *w, int T, const float *x, double *dot, double *mag)
{
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * w->cols;
        for (int n = 0; n < w->rows; n++) {
            const double *wr = w->val + (size_t)n * w->cols;
            double s = 0, a = 0;
            for (int k = 0; k < w->cols; k++) {
                double p = (double)xr[k] * wr[k];
                s += p;
                a += fabs(p);
            }
            dot[(size_t)t * w->rows + n] = s;
            mag[(size_t)t * w->rows + n] = a;
        }
    }
}

/* Which paths to run at T: all (mask bits by clattn__lm_path). */
#define ALL_PATHS 0x3f

/* Uploads a rows x cols matrix of dt and checks the products at each T of
 * Ts through the paths in gemv_mask (T <= 17) or gemm_mask (others);
 * flags: every combination of bias and accumulate when all_flags, else
 * one per (path, T), in turn. */
static void product_cases(clattn_dtype dt, int rows, int cols, bool exact, const int *Ts,
                          int nT, unsigned gemv_mask, unsigned gemm_mask, bool all_flags)
{
    wcase w = {dt, rows, cols, exact, NULL, {0}};
    size_t nw = (size_t)rows * cols;
    unsigned char *bytes = malloc(nw * esize(dt));
    w.val = malloc(nw * sizeof(double));
    make_weights(dt, nw, exact, bytes, w.val);
    CHECK_OK(clattn__lm_matrix_upload(ctx, bytes, dt, rows, cols, false, "w", &w.m));
    free(bytes);
    int maxT = 0;
    for (int i = 0; i < nT; i++)
        maxT = Ts[i] > maxT ? Ts[i] : maxT;
    float *bias = test_fvec((size_t)rows);
    fill(bias, (size_t)rows, exact, 8);
    cl_mem bd = dev_buffer((size_t)rows, bias);
    /* offsets into x and y so the kernels' own offsets are exercised */
    size_t x_off = 3, y_off = 5;
    cl_mem xd = dev_buffer(x_off + (size_t)maxT * cols, NULL);
    cl_mem yd = dev_buffer(y_off + (size_t)maxT * rows, NULL);
    float *x = test_fvec((size_t)maxT * cols), *y0 = test_fvec((size_t)maxT * rows);
    float *got = test_fvec((size_t)maxT * rows);
    double *dot = test_dvec((size_t)maxT * rows), *mag = test_dvec((size_t)maxT * rows);
    int turn = 0;
    for (int ti = 0; ti < nT; ti++) {
        int T = Ts[ti];
        fill(x, (size_t)T * cols, exact, 4);
        fill(y0, (size_t)T * rows, exact, 8);
        dev_write(xd, x_off, (size_t)T * cols, x);
        reference(&w, T, x, dot, mag);
        unsigned mask = T <= 17 ? gemv_mask : gemm_mask;
        for (int p = 0; p < CLATTN_LM_PATH_COUNT; p++) {
            if (!(mask >> p & 1) || (p == CLATTN_LM_PATH_GEMM_BLAS && dt != CLATTN_DTYPE_F32))
                continue;
            for (int f = 0; f < 4; f++) {
                if (!all_flags && f != turn % 4)
                    continue;
                check_product(&w, (clattn__lm_path)p, T, xd, x_off, dot, mag,
                              (f & 1) ? bias : NULL, bd, (f & 2) != 0, y0, yd, y_off, got);
            }
            turn++;
        }
    }
    clReleaseMemObject(bd);
    clReleaseMemObject(xd);
    clReleaseMemObject(yd);
    free(bias);
    free(x);
    free(y0);
    free(got);
    free(dot);
    free(mag);
    free(w.val);
    clattn__lm_matrix_release(&w.m);
}

static const clattn_dtype DTYPES[3] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};

static void print_worst(void)
{
    for (int d = 0; d < 3; d++)
        printf("%s: worst random-data error %.3g x 2^-24 x sum|x||w| (%s)\n",
               clattn_dtype_name(DTYPES[d]), worst_ulps[d],
               worst_where[d] ? worst_where[d] : "-");
    printf("%d products checked\n", products);
}

/* Small and odd shapes: every T and every path. The two smallest get both
 * kinds of data and every flag combination; the others one kind per
 * dtype, in turn (the run time stays within a minute on llvmpipe). */
static void test_products_small(void)
{
    static const int all_T[] = {1, 2, 3, 8, 17, 64, 130};
    static const struct { int rows, cols; } small[] = {
        {1, 1}, {3, 5}, {64, 64}, {17, 33}, {113, 7}, {576, 576}, {7, 9000},
    };
    for (int d = 0; d < 3; d++) {
        for (size_t s = 0; s < sizeof small / sizeof *small; s++) {
            bool tiny = s < 2;
            for (int exact = 0; exact < 2; exact++)
                if (tiny || exact == (int)((d + s) % 2))
                    product_cases(DTYPES[d], small[s].rows, small[s].cols, exact, all_T, 7,
                                  ALL_PATHS, ALL_PATHS, tiny);
        }
    }
}

/* Model-sized matrices (Qwen2.5-0.5B's q/o and MLP, a tall vocabulary of
 * 8-wide rows): the matrix-vector paths at decode sizes, the GEMMs at
 * prefill sizes, the automatic choice at both. Each shape gets every path
 * in one dtype (in turn) and the automatic choice in the other two. */
static void test_products_large(void)
{
    static const int Ts[] = {1, 8, 64};
    static const struct { int rows, cols; } large[] = {{1536, 576}, {896, 4864}, {151936, 8}};
    unsigned gemv = 1u << CLATTN_LM_PATH_AUTO | 1u << CLATTN_LM_PATH_GEMV_CPU |
                    1u << CLATTN_LM_PATH_GEMV_TILED;
    unsigned gemm = ALL_PATHS & ~(gemv & ~1u);
    for (size_t s = 0; s < sizeof large / sizeof *large; s++) {
        for (int d = 0; d < 3; d++) {
            bool all = (size_t)d == s % 3;
            product_cases(DTYPES[d], large[s].rows, large[s].cols, (d + s) % 2 == 1,
                          Ts, 3, all ? gemv : 1u,
                          all ? gemm : 1u, false);
        }
    }
}

/* ---- uploads ------------------------------------------------------------- */

/* transpose = true of the [cols, rows] array equals the plain upload of
 * the [rows, cols] array, byte for byte, from an unaligned host pointer. */
static void test_transpose(void)
{
    static const struct { int rows, cols; } shapes[] = {{1, 1}, {3, 5}, {64, 33}, {577, 130}};
    for (int d = 0; d < 3; d++) {
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            clattn_dtype dt = DTYPES[d];
            int rows = shapes[s].rows, cols = shapes[s].cols;
            size_t es = esize(dt), n = (size_t)rows * cols;
            unsigned char *a = malloc(n * es), *at = malloc(n * es + 1);
            double *val = malloc(n * sizeof(double));
            make_weights(dt, n, false, a, val);
            for (int i = 0; i < cols; i++)
                for (int j = 0; j < rows; j++)
                    memcpy(at + 1 + ((size_t)i * rows + j) * es, a + ((size_t)j * cols + i) * es,
                           es);
            clattn__lm_matrix m1, m2;
            CHECK_OK(clattn__lm_matrix_upload(ctx, a, dt, rows, cols, false, "plain", &m1));
            CHECK_OK(clattn__lm_matrix_upload(ctx, at + 1, dt, rows, cols, true, "conv1d", &m2));
            CHECK(m2.rows == rows && m2.cols == cols && m2.dtype == dt,
                  "transposed upload: rows %lld cols %lld dtype %d", (long long)m2.rows,
                  (long long)m2.cols, (int)m2.dtype);
            CHECK(clattn__lm_matrix_bytes(&m2) == n * es, "matrix_bytes %zu, expected %zu",
                  clattn__lm_matrix_bytes(&m2), n * es);
            unsigned char *b1 = malloc(n * es), *b2 = malloc(n * es);
            dev_read(m1.mem, 0, n * es, b1);
            dev_read(m2.mem, 0, n * es, b2);
            CHECK(memcmp(b1, a, n * es) == 0, "%s [%d, %d]: plain upload differs",
                  clattn_dtype_name(dt), rows, cols);
            CHECK(memcmp(b1, b2, n * es) == 0, "%s [%d, %d]: transposed upload differs",
                  clattn_dtype_name(dt), rows, cols);
            clattn__lm_matrix_release(&m1);
            clattn__lm_matrix_release(&m2);
            CHECK(m2.mem == NULL && clattn__lm_matrix_bytes(&m2) == 0, "release left a buffer");
            clattn__lm_matrix_release(&m2); /* twice is harmless */
            free(a);
            free(at);
            free(val);
            free(b1);
            free(b2);
        }
    }
}

/* ---- gathers ------------------------------------------------------------- */

static void test_gather(void)
{
    static const struct { int rows, cols; } shapes[] = {{1, 1}, {37, 19}, {1000, 64}};
    static const int Ts[] = {1, 7, 17};
    for (int d = 0; d < 3; d++) {
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            clattn_dtype dt = DTYPES[d];
            int rows = shapes[s].rows, cols = shapes[s].cols;
            size_t n = (size_t)rows * cols;
            unsigned char *bytes = malloc(n * esize(dt));
            double *val = malloc(n * sizeof(double));
            make_weights(dt, n, false, bytes, val);
            clattn__lm_matrix m;
            CHECK_OK(clattn__lm_matrix_upload(ctx, bytes, dt, rows, cols, false, "table", &m));
            for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
                int T = Ts[ti];
                int ids[17];
                /* first, last, repeats */
                for (int t = 0; t < T; t++)
                    ids[t] = t % 4 == 0 ? 0 : t % 4 == 1 ? rows - 1 : rand_int(0, rows - 1);
                if (T > 3)
                    ids[3] = ids[2];
                cl_int err;
                cl_mem idd = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                            sizeof(int) * T, ids, &err);
                float *out0 = test_fvec((size_t)T * cols), *got = test_fvec((size_t)T * cols);
                fill(out0, (size_t)T * cols, false, 0);
                cl_mem od = dev_buffer((size_t)T * cols, out0);
                for (int acc = 0; acc < 2; acc++) {
                    dev_write(od, 0, (size_t)T * cols, out0);
                    CHECK_OK(clattn__lm_gather_rows(ctx, &m, idd, T, od, acc, "gather"));
                    dev_read(od, 0, (size_t)T * cols * 4, got);
                    int bad = 0;
                    for (int t = 0; t < T && !bad; t++) {
                        for (int c = 0; c < cols && !bad; c++) {
                            size_t i = (size_t)t * cols + c;
                            float v = (float)val[(size_t)ids[t] * cols + c];
                            float ref = acc ? out0[i] + v : v; /* one float32 add */
                            if (memcmp(&ref, &got[i], 4) != 0) {
                                CHECK(false, "gather %s [%d x %d] T=%d acc=%d: out[%d, %d] = "
                                      "%.9g, expected %.9g", clattn_dtype_name(dt), rows, cols,
                                      T, acc, t, c, (double)got[i], (double)ref);
                                bad = 1;
                            }
                        }
                    }
                    if (!bad)
                        test_checks++;
                }
                clReleaseMemObject(idd);
                clReleaseMemObject(od);
                free(out0);
                free(got);
            }
            clattn__lm_matrix_release(&m);
            free(bytes);
            free(val);
        }
    }
}

/* ---- bad arguments ------------------------------------------------------- */

static void test_errors(void)
{
    float data[64] = {0};
    clattn__lm_matrix m;
    CHECK_STATUS(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_I32, 4, 4, false, "emb", &m),
                 CLATTN_ERR_UNSUPPORTED);
    CHECK_MSG("emb");
    CHECK_MSG("I32");
    CHECK(m.mem == NULL, "failed upload left a buffer");
    CHECK_STATUS(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_F8_E4M3, 4, 4, false, "q", &m),
                 CLATTN_ERR_UNSUPPORTED);
    CHECK_MSG("F8_E4M3");
    CHECK_STATUS(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_F32, 0, 4, false, "w", &m),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_F16, 4, -1, false, "w", &m),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_matrix_upload(ctx, NULL, CLATTN_DTYPE_F16, 4, 4, false, "w", &m),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_F32, 4, 4, false, "w", NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_matrix_upload(NULL, data, CLATTN_DTYPE_F32, 4, 4, false, "w", &m),
                 CLATTN_ERR_INVALID_ARG);
    /* over the device's largest allocation: refused before reading bytes */
    CHECK_STATUS(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_F32, 1 << 20, 1 << 20, false,
                                          "huge", &m),
                 CLATTN_ERR_OUT_OF_MEMORY);
    CHECK_MSG("huge");
    /* size_t overflow */
    CHECK_STATUS(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_F32, INT32_MAX, INT32_MAX,
                                          false, "w", &m),
                 sizeof(size_t) == 8 ? CLATTN_ERR_OUT_OF_MEMORY : CLATTN_ERR_INVALID_ARG);

    CHECK_OK(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_F32, 4, 4, false, "w", &m));
    cl_mem x = dev_buffer(16, data), y = dev_buffer(16, NULL), small = dev_buffer(3, NULL);
    CHECK_OK(clattn__lm_linear(ctx, &m, NULL, x, 0, 0, y, 0, false, "empty"));
    CHECK_STATUS(clattn__lm_linear(ctx, &m, NULL, x, 0, -1, y, 0, false, "neg"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_linear(ctx, &m, NULL, NULL, 0, 1, y, 0, false, "nullx"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("nullx");
    CHECK_STATUS(clattn__lm_linear(ctx, &m, NULL, x, 0, 1, NULL, 0, false, "nully"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_linear(NULL, &m, NULL, x, 0, 1, y, 0, false, "w"),
                 CLATTN_ERR_INVALID_ARG);
    /* x holds 16 floats: 4 rows of 4, not 5 */
    CHECK_STATUS(clattn__lm_linear(ctx, &m, NULL, x, 0, 5, y, 0, false, "big"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("x holds");
    CHECK_STATUS(clattn__lm_linear(ctx, &m, NULL, x, 1, 4, y, 0, false, "off"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_linear(ctx, &m, small, x, 0, 1, y, 0, false, "bias"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("bias");
    CHECK_STATUS(clattn__lm_linear(ctx, &m, NULL, x, 0, 2, x, 4, false, "alias"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("overlaps");
    /* disjoint parts of one buffer are fine */
    CHECK_OK(clattn__lm_linear(ctx, &m, NULL, x, 0, 2, x, 8, false, "disjoint"));
    CHECK_STATUS(clattn__lm_linear_path(ctx, CLATTN_LM_PATH_COUNT, &m, NULL, x, 0, 1, y, 0,
                                        false, "path"),
                 CLATTN_ERR_INVALID_ARG);
    clattn__lm_matrix none = {0};
    CHECK_STATUS(clattn__lm_linear(ctx, &none, NULL, x, 0, 1, y, 0, false, "nomem"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_linear(ctx, NULL, NULL, x, 0, 1, y, 0, false, "nomat"),
                 CLATTN_ERR_INVALID_ARG);
    clattn__lm_matrix odd = m;
    odd.dtype = CLATTN_DTYPE_I32;
    CHECK_STATUS(clattn__lm_linear(ctx, &odd, NULL, x, 0, 1, y, 0, false, "i32"),
                 CLATTN_ERR_UNSUPPORTED);
    CHECK_MSG("I32");

    clattn__lm_matrix h;
    CHECK_OK(clattn__lm_matrix_upload(ctx, data, CLATTN_DTYPE_F16, 4, 4, false, "h", &h));
    CHECK_STATUS(clattn__lm_linear_path(ctx, CLATTN_LM_PATH_GEMM_BLAS, &h, NULL, x, 0, 1, y, 0,
                                        false, "blas"),
                 CLATTN_ERR_UNSUPPORTED);
    CHECK_MSG("F16");

    int ids[2] = {0, 3};
    cl_int err;
    cl_mem idd = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                sizeof ids, ids, &err);
    CHECK_OK(clattn__lm_gather_rows(ctx, &h, idd, 2, y, false, "gather"));
    CHECK_OK(clattn__lm_gather_rows(ctx, &h, idd, 0, y, false, "gather0"));
    CHECK_STATUS(clattn__lm_gather_rows(ctx, &h, NULL, 2, y, false, "gnull"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_gather_rows(ctx, &h, idd, 2, NULL, false, "gnull"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_gather_rows(ctx, &h, idd, 3, y, false, "gids"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("ids holds");
    CHECK_STATUS(clattn__lm_gather_rows(ctx, &h, idd, 2, small, false, "gout"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_gather_rows(ctx, &none, idd, 2, y, false, "gnone"),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn__lm_gather_rows(ctx, &h, idd, -1, y, false, "gneg"),
                 CLATTN_ERR_INVALID_ARG);
    clReleaseMemObject(idd);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
    clReleaseMemObject(small);
    clattn__lm_matrix_release(&m);
    clattn__lm_matrix_release(&h);
    clattn__lm_matrix_release(NULL);
}

/* "small" (the default): bad arguments, uploads, gathers and the small
 * shapes; "large": the model-sized shapes (meson runs both, as two tests,
 * each within a minute per device). */
int main(int argc, char **argv)
{
    bool large = argc > 1 && strcmp(argv[1], "large") == 0;
    ctx = test_ctx();
    test_seed(large ? 20261204 : 20261203);
    if (large) {
        test_products_large();
    } else {
        test_errors();
        test_transpose();
        test_gather();
        test_products_small();
    }
    print_worst();
    CHECK_OK(clattn_ctx_finish(ctx));
    clattn_ctx_destroy(ctx);
    return test_summary("test_linear_lp");
}
