/* layer_check.c - shared helpers and references of the layer backward
 * tests (see layer_check.h). */
#include "layer_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool small = false;
bool on_oclgrind = false;

static const char *const worst_names[W_COUNT] = {"linear", "activation", "layer norm dx",
                                                 "column sums", "softmax", "embedding",
                                                 "sequence mean", "finite differences",
                                                 "forward", "rms norm", "rotary"};
static double worst[W_COUNT];
static bool worst_used[W_COUNT];

clattn_ctx *layer_test_init(void)
{
    const char *s = getenv("CLATTN_TEST_SMALL");
    small = s && *s && strcmp(s, "0") != 0;
    clattn_ctx *ctx = test_ctx();
    test_seed(23);
    clattn_device_info info;
    CHECK_OK(clattn_ctx_device_info(ctx, &info));
    on_oclgrind = strstr(info.platform_name, "Oclgrind") != NULL;
    return ctx;
}

int layer_test_finish(clattn_ctx *ctx, const char *name)
{
    CHECK_OK(clattn_ctx_finish(ctx));
    clattn_ctx_destroy(ctx);
    for (int i = 0; i < W_COUNT; i++)
        if (worst_used[i])
            fprintf(stderr, "worst error / bound, %s: %.3f\n", worst_names[i], worst[i]);
    return test_summary(name);
}

bool close_bound(int family, const char *what, const float *got, const double *ref,
                        const double *bound, size_t n)
{
    size_t bad = n;
    double bad_ratio = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i], ratio;
        if (!isfinite(g) || !isfinite(r))
            ratio = (!isnan(g) && !isnan(r) && g == r) ? 0 : INFINITY;
        else
            ratio = fabs(g - r) / (bound[i] > 0 ? bound[i] : 1e-300);
        if (ratio > worst[family] && isfinite(ratio))
            worst[family] = ratio;
        if (ratio > 1 && (bad == n || ratio > bad_ratio)) {
            bad = i;
            bad_ratio = ratio;
        }
    }
    worst_used[family] = true;
    test_checks++;
    if (bad < n) {
        test_failures++;
        fprintf(stderr, "FAIL %s: element %zu of %zu: got %.9g, reference %.9g, bound %.3g\n",
                what, bad, n, (double)got[bad], ref[bad], bound[bad]);
        return false;
    }
    return true;
}

/* Bitwise equality of two float arrays (NaN == NaN with the same bits). */
bool same_bits(const char *what, const float *a, const float *b, size_t n)
{
    test_checks++;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            test_failures++;
            fprintf(stderr, "FAIL %s: element %zu of %zu: %.9g vs %.9g\n", what, i, n,
                    (double)a[i], (double)b[i]);
            return false;
        }
    }
    return true;
}

void read_into(const clattn_tensor *t, float *dst) { CHECK_OK(clattn_tensor_read(t, dst)); }

/* Central finite differences of loss(user) with respect to p[0..n):
 * p is perturbed in place and restored. */
void fd_grad(loss_fn loss, void *user, double *p, size_t n, double h, double *grad)
{
    for (size_t i = 0; i < n; i++) {
        double t = p[i];
        p[i] = t + h;
        double lp = loss(user);
        p[i] = t - h;
        double lm = loss(user);
        p[i] = t;
        grad[i] = (lp - lm) / (2 * h);
    }
}

/* FD check: got against the FD gradient fd with bound[i] + FD_ABS * scale. */
void check_fd(const char *what, const float *got, const double *fd, const double *bound,
              size_t n, double scale)
{
    double *b = test_dvec(n);
    for (size_t i = 0; i < n; i++)
        b[i] = bound[i] + FD_ABS * scale;
    close_bound(W_FD, what, got, fd, b, n);
    free(b);
}

void to_double(const float *f, double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
}

/* A tensor struct that claims another context (for the ctx-mismatch
 * checks, without building a second context). */
clattn_tensor foreign(const clattn_tensor *t)
{
    static char other; /* any address that is not the context */
    clattn_tensor f = *t;
    f.ctx = (clattn_ctx *)&other;
    return f;
}
const char *act_name(int a)
{
    static const char *names[] = {"none", "relu", "gelu", "gelu_tanh", "silu"};
    return names[a];
}

double act_ref(double x, int a)
{
    switch (a) {
    case CLATTN_ACT_RELU: return x > 0 ? x : 0;
    case CLATTN_ACT_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));
    case CLATTN_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / PI) * (x + 0.044715 * x * x * x)));
    case CLATTN_ACT_SILU: return x / (1.0 + exp(-x));
    default: return x;
    }
}

/* act'(x), written independently of the kernels' forms. */
double act_grad_ref(double x, int a)
{
    switch (a) {
    case CLATTN_ACT_RELU: return x > 0 ? 1 : 0;
    case CLATTN_ACT_GELU: return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2 * PI);
    case CLATTN_ACT_GELU_TANH: {
        double k = sqrt(2.0 / PI), t = tanh(k * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
    }
    case CLATTN_ACT_SILU: {
        double s = 1 / (1 + exp(-x));
        return s * (1 + x * (1 - s));
    }
    default: return 1;
    }
}
void ln_fwd(const double *x, const double *g, const double *b, size_t rows, size_t e,
            double eps, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * e;
        double m = 0, v = 0;
        for (size_t i = 0; i < e; i++)
            m += xr[i];
        m /= (double)e;
        for (size_t i = 0; i < e; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= (double)e;
        double rs = 1 / sqrt(v + eps);
        for (size_t i = 0; i < e; i++)
            y[r * e + i] = (xr[i] - m) * rs * (g ? g[i] : 1) + (b ? b[i] : 0);
    }
}

/* Analytic reference and per-element bounds (layer_check.h). */
void ln_ref(const float *x, const float *gamma, const float *dy, size_t rows, size_t e,
            double eps, const float *dg0, const float *db0, double *dx, double *bdx, double *dg,
            double *bdg, double *db, double *bdb)
{
    for (size_t i = 0; i < e; i++) {
        dg[i] = dg0 ? dg0[i] : 0;
        bdg[i] = fabs(dg[i]);
        db[i] = db0 ? db0[i] : 0;
        bdb[i] = fabs(db[i]);
    }
    double *xh = test_dvec(e), *g = test_dvec(e);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * e, *dyr = dy + r * e;
        double m = 0, v = 0;
        for (size_t i = 0; i < e; i++)
            m += xr[i];
        m /= (double)e;
        for (size_t i = 0; i < e; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= (double)e;
        double rs = 1 / sqrt(v + eps), mg = 0, mgx = 0, ag = 0, agx = 0;
        for (size_t i = 0; i < e; i++) {
            xh[i] = (xr[i] - m) * rs;
            g[i] = (double)dyr[i] * (gamma ? gamma[i] : 1);
            mg += g[i];
            mgx += g[i] * xh[i];
            ag += fabs(g[i]);
            agx += fabs(g[i] * xh[i]);
            dg[i] += dyr[i] * xh[i];
            /* xhat has unit RMS: its rounding errors are relative to 1,
             * not to |xhat| (which is tiny where x is near the mean). */
            bdg[i] += fabs(dyr[i]) * (fabs(xh[i]) + 1);
            db[i] += dyr[i];
            bdb[i] += fabs(dyr[i]);
        }
        mg /= (double)e;
        mgx /= (double)e;
        ag /= (double)e;
        agx /= (double)e;
        for (size_t i = 0; i < e; i++) {
            dx[r * e + i] = rs * (g[i] - mg - xh[i] * mgx);
            bdx[r * e + i] = TOL_LN * rs * (fabs(g[i]) + ag + fabs(xh[i]) * agx) + 1e-30;
        }
    }
    for (size_t i = 0; i < e; i++) {
        bdg[i] = TOL_COL * bdg[i] + 1e-30;
        bdb[i] = TOL_COL * bdb[i] + 1e-30;
    }
    free(xh);
    free(g);
}

/* Double softmax of rows x n. */
void softmax_d(const double *x, size_t rows, size_t n, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0;
        for (size_t i = 0; i < n; i++)
            m = fmax(m, x[r * n + i]);
        for (size_t i = 0; i < n; i++)
            s += exp(x[r * n + i] - m);
        for (size_t i = 0; i < n; i++)
            y[r * n + i] = exp(x[r * n + i] - m) / s;
    }
}
/* Philox4x32-10 on the host, from the Random123 paper's description:
 * 10 rounds, the key bumped by the Weyl constants before every round but
 * the first. */
void philox_host(const uint32_t in[4], const uint32_t key_in[2], uint32_t out[4])
{
    uint32_t c[4] = {in[0], in[1], in[2], in[3]}, k[2] = {key_in[0], key_in[1]};
    for (int r = 0; r < 10; r++) {
        if (r) {
            k[0] += 0x9E3779B9u;
            k[1] += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n[4] = {(uint32_t)(p1 >> 32) ^ c[1] ^ k[0], (uint32_t)p1,
                         (uint32_t)(p0 >> 32) ^ c[3] ^ k[1], (uint32_t)p0};
        memcpy(c, n, sizeof c);
    }
    memcpy(out, c, sizeof c);
}

bool host_dropped(size_t i, float p, uint64_t seed, uint64_t offset)
{
    uint64_t c = offset + i;
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, out[4];
    philox_host(ctr, key, out);
    return (double)out[0] < (double)p * 4294967296.0;
}
