/* test_attention_backward.c - clattn_sdpa_backward against the
 * double-precision reference gradients in attention_ref.c (which are first
 * checked against central differences of the forward reference), sweeping
 * shapes (N, M in 1..200 both ways round, D and Dv from 1 to 256, batches,
 * GQA/MQA), every mask kind, every bias broadcast shape with -inf entries,
 * mask_mod, cosine scores, custom scales, gradient subsets, and both fused
 * kernel families; then argument errors.
 *
 *   test_attention_backward [DIR]     the sweep (CLATTN_TEST_SMALL=1: small
 *                                     shapes and a third of the cases, for
 *                                     oclgrind), then the PyTorch autograd
 *                                     fixtures in DIR (default: the source
 *                                     tree's tests/fixtures/grad, made by
 *                                     make_grad_fixtures.py)
 *   test_attention_backward memory    N = M = 16384, D = 64, one head:
 *                                     forward + backward with peak RSS
 *                                     < 500 MB (POCL only; skipped under
 *                                     CLATTN_TEST_SMALL)
 *
 * Tolerances: inputs and dout are uniform in [-1, 1]; out and lse come
 * from the reference rounded to float (or from clattn_sdpa, in the cases
 * marked so). The gradients are sums of up to N or M terms whose float32
 * rounding is relative to the size of the terms, not of the result (dS =
 * P (dP - Delta) cancels), so the absolute part of the tolerance scales
 * with the largest reference magnitude of the tensor: an element passes
 * when |got - ref| <= ATOL * max(1, max|ref|) + RTOL * |ref| with ATOL =
 * 2e-5 and RTOL = 1e-4. Observed on POCL, both families: at most 1.4e-6
 * of the scale (D = 256, where a score sums 256 products). The reference
 * itself matches central differences to < 1e-5 (4e-6 worst, cosine). */
#include "attention_ref.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define ATOL 2e-5
#define RTOL 1e-4

#ifndef GRAD_FIXTURES /* set by tests/meson.build */
#define GRAD_FIXTURES "tests/fixtures/grad"
#endif

typedef enum mask_kind {
    MASK_NONE,
    MASK_CAUSAL,
    MASK_WINDOW_LEFT,    /* (3, 0): sliding window, causal */
    MASK_WINDOW_RIGHT,   /* (0, 3) */
    MASK_WINDOW_BOTH,    /* (5, 2) */
    MASK_KV_LEN,         /* random lengths, batch 1 has none */
    MASK_CAUSAL_KV_LEN,
    MASK_BIAS,           /* a bias of the case's shape */
    MASK_BIAS_BOOL,      /* the same with -inf entries, one fully masked row */
    MASK_WINDOW_BIAS,    /* (4, 2) + bias */
    MASK_MOD,            /* mask_mod snippet */
    MASK_KINDS
} mask_kind;

static const char *mask_names[] = {"none", "causal", "window(3,0)", "window(0,3)",
                                   "window(5,2)", "kv_len", "causal+kv_len", "bias",
                                   "bool-bias", "window(4,2)+bias", "mask_mod"};

/* Bias shapes, broadcast to [B, Hq, N, M]. */
typedef enum bias_shape {
    BIAS_NM,      /* [N, M] */
    BIAS_HNM,     /* [Hq, N, M] */
    BIAS_1HNM,    /* [1, Hq, N, M] */
    BIAS_B1NM,    /* [B, 1, N, M] */
    BIAS_BHNM,    /* [B, Hq, N, M] */
    BIAS_1H1M,    /* [1, Hq, 1, M] */
    BIAS_SHAPES
} bias_shape;

static const char *bias_names[] = {"[N,M]", "[Hq,N,M]", "[1,Hq,N,M]", "[B,1,N,M]",
                                   "[B,Hq,N,M]", "[1,Hq,1,M]"};

/* Which gradients a case asks for. */
enum { G_DQ = 1, G_DK = 2, G_DV = 4, G_DBIAS = 8, G_ALL = 15 };

typedef struct tcase {
    int B, Hq, Hkv, N, M, D, Dv;
    mask_kind mask;
    bias_shape bshape;
    bool cosine;
    bool device_forward; /* out and lse from clattn_sdpa, not the reference */
    int grads;           /* G_* bits */
    float scale;         /* 0: default */
} tcase;

static int n_cases_run;
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


static bool has_bias(mask_kind m)
{
    return m == MASK_BIAS || m == MASK_BIAS_BOOL || m == MASK_WINDOW_BIAS;
}

/* The bias of a case: shape, strides into it for the reference. */
static size_t bias_layout(const tcase *c, int64_t *shape, int *nd, int64_t *sb, int64_t *sh,
                          int64_t *sn)
{
    int64_t B = c->B, H = c->Hq, N = c->N, M = c->M;
    switch (c->bshape) {
    case BIAS_NM: *nd = 2, shape[0] = N, shape[1] = M, *sb = 0, *sh = 0, *sn = M; break;
    case BIAS_HNM:
        *nd = 3, shape[0] = H, shape[1] = N, shape[2] = M, *sb = 0, *sh = N * M, *sn = M;
        break;
    case BIAS_1HNM:
        *nd = 4, shape[0] = 1, shape[1] = H, shape[2] = N, shape[3] = M;
        *sb = 0, *sh = N * M, *sn = M;
        break;
    case BIAS_B1NM:
        *nd = 4, shape[0] = B, shape[1] = 1, shape[2] = N, shape[3] = M;
        *sb = N * M, *sh = 0, *sn = M;
        break;
    case BIAS_1H1M:
        *nd = 4, shape[0] = 1, shape[1] = H, shape[2] = 1, shape[3] = M;
        *sb = 0, *sh = M, *sn = 0;
        break;
    default:
        *nd = 4, shape[0] = B, shape[1] = H, shape[2] = N, shape[3] = M;
        *sb = H * N * M, *sh = N * M, *sn = M;
        break;
    }
    size_t n = 1;
    for (int i = 0; i < *nd; i++)
        n *= (size_t)shape[i];
    return n;
}

/* Compares with the magnitude-scaled tolerance described at the top. */
static void check_grad(const char *what, const char *name, const float *got, const double *ref,
                       size_t n)
{
    double scale = 1.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > scale)
            scale = fabs(ref[i]);
    char label[400];
    snprintf(label, sizeof label, "%s: %s", what, name);
    test_close(label, got, ref, n, ATOL * scale, RTOL);
}

static clattn_tensor *grad_tensor(clattn_ctx *ctx, bool want, int nd, const int64_t *shape)
{
    if (!want)
        return NULL;
    clattn_tensor *t = test_tensor(ctx, nd, shape, NULL);
    clattn_tensor_fill(t, NAN); /* every element must be written */
    return t;
}

static void run_case(clattn_ctx *ctx, const tcase *c, const char *variant)
{
    const size_t nq = (size_t)c->B * c->Hq * c->N * c->D;
    const size_t nk = (size_t)c->B * c->Hkv * c->M * c->D;
    const size_t nv = (size_t)c->B * c->Hkv * c->M * c->Dv;
    const size_t no = (size_t)c->B * c->Hq * c->N * c->Dv, nl = (size_t)c->B * c->Hq * c->N;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nv * 4), *dout = malloc(no * 4);
    float *out = malloc(no * 4), *lse = malloc(nl * 4);
    float *gq = malloc(nq * 4), *gk = malloc(nk * 4), *gv = malloc(nv * 4);
    double *ref_out = malloc(no * 8), *ref_lse = malloc(nl * 8);
    double *rq = malloc(nq * 8), *rk = malloc(nk * 8), *rv = malloc(nv * 8);
    test_fill_uniform(q, nq, -1, 1);
    test_fill_uniform(k, nk, -1, 1);
    test_fill_uniform(v, nv, -1, 1);
    test_fill_uniform(dout, no, -1, 1);

    clattn_sdpa_params p = clattn_sdpa_params_default();
    ref_problem r;
    memset(&r, 0, sizeof r);
    r.B = c->B, r.Hq = c->Hq, r.Hkv = c->Hkv, r.N = c->N, r.M = c->M, r.D = c->D, r.Dv = c->Dv;
    p.scale = c->scale;
    r.scale = c->scale != 0 ? c->scale : 1.0 / sqrt((double)c->D);
    r.cosine = c->cosine;
    p.score = c->cosine ? CLATTN_SCORE_COSINE : CLATTN_SCORE_DOT;
    r.wl = r.wr = -1;
    int32_t kv_len[8];
    switch (c->mask) {
    case MASK_CAUSAL: p.causal = true, r.wr = 0; break;
    case MASK_WINDOW_LEFT: p.window_left = r.wl = 3, p.window_right = r.wr = 0; break;
    case MASK_WINDOW_RIGHT: p.window_left = r.wl = 0, p.window_right = r.wr = 3; break;
    case MASK_WINDOW_BOTH: p.window_left = r.wl = 5, p.window_right = r.wr = 2; break;
    case MASK_CAUSAL_KV_LEN: p.causal = true, r.wr = 0; /* fall through */
    case MASK_KV_LEN:
        for (int b = 0; b < c->B; b++)
            kv_len[b] = b == 1 ? 0 : 1 + (int32_t)(test_uniform(0, 1) * (float)c->M) % c->M;
        p.kv_len = r.kv_len = kv_len;
        break;
    case MASK_WINDOW_BIAS: p.window_left = r.wl = 4, p.window_right = r.wr = 2; break;
    case MASK_MOD:
        p.mask_mod = "(kv_idx % 3) != 1 || q_idx == kv_idx";
        r.mask_mod = true;
        break;
    default: break;
    }
    float *bias = NULL;
    size_t nb = 0;
    clattn_tensor *tbias = NULL;
    int64_t shape[4];
    int nd = 0;
    if (has_bias(c->mask)) {
        nb = bias_layout(c, shape, &nd, &r.bias_sb, &r.bias_sh, &r.bias_sn);
        bias = malloc(nb * 4);
        test_fill_uniform(bias, nb, -2, 2);
        if (c->mask == MASK_BIAS_BOOL) {
            for (size_t i = 0; i < nb; i++)
                if (test_uniform(0, 1) < 0.3f)
                    bias[i] = -INFINITY;
            for (int64_t j = 0; j < c->M; j++) /* query row 0 sees nothing */
                bias[j] = -INFINITY;
        }
        tbias = test_tensor(ctx, nd, shape, bias);
        p.bias = tbias;
        r.bias = bias;
    }

    int64_t sq[4] = {c->B, c->Hq, c->N, c->D}, sk[4] = {c->B, c->Hkv, c->M, c->D};
    int64_t sv[4] = {c->B, c->Hkv, c->M, c->Dv}, so[4] = {c->B, c->Hq, c->N, c->Dv};
    int64_t sl[3] = {c->B, c->Hq, c->N};
    clattn_tensor *tq = test_tensor(ctx, 4, sq, q), *tk = test_tensor(ctx, 4, sk, k);
    clattn_tensor *tv = test_tensor(ctx, 4, sv, v), *tdo = test_tensor(ctx, 4, so, dout);
    clattn_tensor *to = test_tensor(ctx, 4, so, NULL), *tl = test_tensor(ctx, 3, sl, NULL);
    ref_attention(&r, q, k, v, ref_out, NULL, ref_lse);

    char what[300];
    snprintf(what, sizeof what,
             "%s B=%d Hq=%d Hkv=%d N=%d M=%d D=%d Dv=%d mask=%s%s%s%s%s grads=%d scale=%g",
             variant, c->B, c->Hq, c->Hkv, c->N, c->M, c->D, c->Dv, mask_names[c->mask],
             has_bias(c->mask) ? " bias=" : "", has_bias(c->mask) ? bias_names[c->bshape] : "",
             c->cosine ? " cosine" : "", c->device_forward ? " device-forward" : "", c->grads,
             (double)c->scale);
    clattn_status st = CLATTN_OK;
    if (c->device_forward) {
        p.lse = tl;
        st = clattn_sdpa(ctx, tq, tk, tv, to, &p);
        CHECK(st == CLATTN_OK, "%s: forward: %s: %s", what, clattn_status_str(st),
              clattn_last_error());
        p.lse = NULL;
    } else {
        for (size_t i = 0; i < no; i++)
            out[i] = (float)ref_out[i];
        for (size_t i = 0; i < nl; i++)
            lse[i] = (float)ref_lse[i];
        CHECK_OK(clattn_tensor_write(to, out));
        CHECK_OK(clattn_tensor_write(tl, lse));
    }

    clattn_sdpa_grads g;
    g.dq = grad_tensor(ctx, c->grads & G_DQ, 4, sq);
    g.dk = grad_tensor(ctx, c->grads & G_DK, 4, sk);
    g.dv = grad_tensor(ctx, c->grads & G_DV, 4, sv);
    g.dbias = tbias && (c->grads & G_DBIAS)
                  ? grad_tensor(ctx, true, nd, shape) : NULL;
    if (st == CLATTN_OK) {
        st = clattn_sdpa_backward(ctx, tq, tk, tv, to, tl, tdo, &p, &g);
        CHECK(st == CLATTN_OK, "%s: %s: %s", what, clattn_status_str(st), clattn_last_error());
    }
    if (st == CLATTN_OK) {
        double *rb = nb ? malloc(nb * 8) : NULL;
        float *gb = nb ? malloc(nb * 4) : NULL;
        ref_attention_backward(&r, q, k, v, dout, rq, rk, rv, rb, nb);
        if (g.dq) {
            CHECK_OK(clattn_tensor_read(g.dq, gq));
            check_grad(what, "dq", gq, rq, nq);
        }
        if (g.dk) {
            CHECK_OK(clattn_tensor_read(g.dk, gk));
            check_grad(what, "dk", gk, rk, nk);
        }
        if (g.dv) {
            CHECK_OK(clattn_tensor_read(g.dv, gv));
            check_grad(what, "dv", gv, rv, nv);
        }
        if (g.dbias) {
            CHECK_OK(clattn_tensor_read(g.dbias, gb));
            check_grad(what, "dbias", gb, rb, nb);
            /* -inf entries get exactly 0 */
            size_t bad = nb;
            for (size_t i = 0; i < nb && bad == nb; i++)
                if (isinf(bias[i]) && gb[i] != 0.0f)
                    bad = i;
            CHECK(bad == nb, "%s: dbias[%zu] = %g at a -inf bias entry", what, bad,
                  bad < nb ? (double)gb[bad] : 0.0);
        }
        free(rb), free(gb);
    }
    n_cases_run++;
    clattn_tensor_destroy(tq), clattn_tensor_destroy(tk), clattn_tensor_destroy(tv);
    clattn_tensor_destroy(tdo), clattn_tensor_destroy(to), clattn_tensor_destroy(tl);
    clattn_tensor_destroy(tbias), clattn_tensor_destroy(g.dq), clattn_tensor_destroy(g.dk);
    clattn_tensor_destroy(g.dv), clattn_tensor_destroy(g.dbias);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(gq), free(gk), free(gv);
    free(ref_out), free(ref_lse), free(rq), free(rk), free(rv), free(bias);
}

/* ---- the reference against finite differences ------------------------------ */

/* The analytic reference gradients against central differences of the
 * forward reference, on tiny shapes covering every option it has. The
 * difference quotient's error is O(h^2) ~ 1e-6 here. */
static void reference_fd_check(void)
{
    struct {
        int B, Hq, Hkv, N, M, D, Dv, wl, wr;
        bool kv, cosine, mask_mod;
        int bias; /* -1 none, else a bias_shape */
    } cases[] = {
        {1, 1, 1, 3, 4, 3, 2, -1, -1, false, false, false, -1},
        {2, 2, 1, 3, 5, 2, 3, -1, 0, false, false, false, -1},     /* causal, GQA */
        {2, 4, 2, 4, 3, 3, 2, 1, 1, true, false, false, -1},       /* window, kv_len */
        {2, 2, 2, 3, 4, 3, 3, -1, -1, false, true, false, -1},     /* cosine */
        {2, 2, 1, 3, 4, 2, 2, -1, -1, false, false, false, BIAS_NM},
        {2, 2, 2, 3, 4, 2, 2, -1, 0, false, false, false, BIAS_B1NM},
        {2, 2, 1, 3, 4, 2, 2, -1, -1, false, false, true, BIAS_1H1M},
        {2, 2, 2, 2, 3, 2, 2, -1, -1, false, true, false, BIAS_BHNM},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        ref_problem r;
        memset(&r, 0, sizeof r);
        r.B = cases[ci].B, r.Hq = cases[ci].Hq, r.Hkv = cases[ci].Hkv, r.N = cases[ci].N;
        r.M = cases[ci].M, r.D = cases[ci].D, r.Dv = cases[ci].Dv;
        r.scale = 0.8, r.wl = cases[ci].wl, r.wr = cases[ci].wr, r.cosine = cases[ci].cosine;
        r.mask_mod = cases[ci].mask_mod;
        int32_t kv_len[2] = {2, 0};
        if (cases[ci].kv)
            r.kv_len = kv_len;
        size_t nq = (size_t)r.B * r.Hq * r.N * r.D, nk = (size_t)r.B * r.Hkv * r.M * r.D;
        size_t nv = (size_t)r.B * r.Hkv * r.M * r.Dv, no = (size_t)r.B * r.Hq * r.N * r.Dv;
        float q[96], k[96], v[96], dout[96], bias[96];
        test_fill_uniform(q, nq, -1, 1);
        test_fill_uniform(k, nk, -1, 1);
        test_fill_uniform(v, nv, -1, 1);
        test_fill_uniform(dout, no, -1, 1);
        size_t nb = 0;
        if (cases[ci].bias >= 0) {
            tcase c = {r.B, r.Hq, r.Hkv, r.N, r.M, r.D, r.Dv, MASK_BIAS,
                       (bias_shape)cases[ci].bias, false, false, 0, 0};
            int64_t shape[4];
            int nd;
            nb = bias_layout(&c, shape, &nd, &r.bias_sb, &r.bias_sh, &r.bias_sn);
            test_fill_uniform(bias, nb, -1, 1);
            bias[1] = -INFINITY;
            r.bias = bias;
        }
        double err = ref_backward_fd_error(&r, q, k, v, dout, nb, 1e-3);
        CHECK(err < 1e-5, "reference gradients vs finite differences, case %zu: error %g", ci,
              err);
    }
}

/* ---- sweeps ------------------------------------------------------------------ */

/* A covering sweep rather than the full product: every mask kind meets
 * several head sizes, the lengths and GQA ratios rotate, and the bias shape,
 * cosine, scale, gradient subsets and device forward vary by index.
 * Deterministic. Every (D, Dv, bias, mask_mod) is a program to compile,
 * which dominates the time on CPU devices (seconds each on POCL), so Dv
 * differs from D in three programs, bias and mask_mod programs are made
 * for two or three head sizes, and the second family (few_programs) uses
 * only D = Dv in {8, 64, 256}. */
static void sweep(clattn_ctx *ctx, const char *variant, bool small, int stride, int offset,
                  bool few_programs)
{
    static const int dims[] = {1, 8, 64, 128, 256};
    static const int lens[] = {1, 3, 17, 64, 113, 200};
    static const int ratios[][2] = {{1, 1}, {2, 1}, {4, 2}, {4, 1}, {2, 2}, {4, 4}};
    int idx = 0;
    for (int di = 0; di < 5; di++) {
        for (int mi = 0; mi < MASK_KINDS; mi++, idx++) {
            if ((idx + offset) % stride)
                continue;
            tcase c;
            memset(&c, 0, sizeof c);
            c.D = dims[di];
            c.Dv = c.D;
            if (mi == MASK_CAUSAL && di % 2 == 0) /* Dv != D: (1, 64), (64, 256), (256, 8) */
                c.Dv = dims[(di + 2) % 5];
            if (mi == MASK_MOD) /* the snippet does not depend on D: two programs */
                c.D = c.Dv = di < 2 ? 8 : 64;
            /* bias programs for D = 8, 64, 256 only; the second family
             * (few_programs) uses only those head sizes */
            if (has_bias((mask_kind)mi) || few_programs)
                c.D = c.Dv = di < 2 ? 8 : di < 4 ? 64 : 256;
            c.N = lens[(di + mi) % 6];
            c.M = lens[(di * 3 + mi * 2 + 1) % 6];
            if (small) {
                c.N = c.N > 17 ? 17 : c.N;
                c.M = c.M > 23 ? 23 : c.M;
                c.D = c.D > 16 ? 16 : c.D;
                c.Dv = c.Dv > 8 ? 8 : c.Dv;
            }
            const int *r = ratios[(di + mi) % 6];
            c.Hq = r[0], c.Hkv = r[1];
            c.B = (idx % 2) ? 3 : 1;
            if (c.N * c.M * (c.D + c.Dv) * c.Hq * c.B > 8000000) /* keep the reference quick */
                c.Hq = c.Hkv = 1, c.B = 1;
            if ((mi == MASK_KV_LEN || mi == MASK_CAUSAL_KV_LEN) && c.B < 2)
                c.B = 2; /* batch 1 has kv_len 0: a fully masked batch */
            c.mask = (mask_kind)mi;
            c.bshape = (bias_shape)((idx / 2) % BIAS_SHAPES);
            c.cosine = idx % 7 == 3;
            c.scale = idx % 6 == 5 ? 0.3f : 0.0f;
            /* some from the device's forward (only where it is compiled anyway) */
            c.device_forward = idx % 3 == 2 && c.D == c.Dv && (c.D == 8 || c.D == 64) &&
                               !has_bias(c.mask) && c.mask != MASK_MOD;
            c.grads = idx % 9 == 4 ? (G_DK | G_DV) : idx % 9 == 7 ? (G_DQ | G_DBIAS) : G_ALL;
            run_case(ctx, &c, variant);
        }
    }
}

/* Hand-picked cases the sweep might not hit. */
static void edge_cases(clattn_ctx *ctx, const char *variant, bool small)
{
    const tcase cases[] = {
        /* causal, N > M: the first N - M rows see nothing; N < M, MQA. */
        {2, 2, 1, 40, 9, 8, 8, MASK_CAUSAL, 0, false, true, G_ALL, 0},
        {1, 4, 1, 3, 130, 64, 64, MASK_CAUSAL, 0, false, true, G_ALL, 0},
        /* single query, single key. */
        {1, 1, 1, 1, 1, 1, 1, MASK_NONE, 0, false, false, G_ALL, 0},
        /* every bias shape with -inf entries, GQA, batches. */
        {2, 4, 2, 17, 23, 8, 8, MASK_BIAS_BOOL, BIAS_NM, false, false, G_ALL, 0},
        {2, 4, 2, 17, 23, 8, 8, MASK_BIAS_BOOL, BIAS_HNM, false, false, G_ALL, 0},
        {2, 4, 2, 17, 23, 8, 8, MASK_BIAS_BOOL, BIAS_1HNM, false, true, G_ALL, 0},
        {2, 4, 2, 17, 23, 8, 8, MASK_BIAS_BOOL, BIAS_B1NM, false, false, G_ALL, 0},
        {2, 4, 2, 17, 23, 8, 8, MASK_BIAS_BOOL, BIAS_BHNM, false, false, G_ALL, 0},
        {2, 4, 2, 17, 23, 8, 8, MASK_BIAS_BOOL, BIAS_1H1M, true, false, G_ALL, 0},
        /* only dbias, only dv, only dq. */
        {3, 2, 1, 9, 14, 8, 8, MASK_WINDOW_BIAS, BIAS_B1NM, false, false, G_DBIAS, 0},
        {3, 2, 1, 9, 14, 8, 8, MASK_KV_LEN, 0, false, false, G_DV, 0},
        {3, 2, 1, 9, 14, 8, 8, MASK_MOD, 0, true, false, G_DQ, 0.5f},
        /* key blocks fully outside a narrow window are skipped. */
        {1, 2, 1, 257, 257, 64, 64, MASK_WINDOW_LEFT, 0, false, true, G_ALL, 0},
        /* every key of a batch masked by kv_len = 0, cosine score, odd D, Dv. */
        {3, 2, 2, 17, 65, 17, 3, MASK_CAUSAL_KV_LEN, 0, true, false, G_ALL, 0},
        /* mask_mod with GQA, N and M past a block. */
        {2, 4, 2, 70, 131, 64, 64, MASK_MOD, 0, false, true, G_ALL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tcase c = cases[i];
        if (small) {
            c.N = c.N > 20 ? 20 : c.N;
            c.M = c.M > 24 ? 24 : c.M;
        }
        run_case(ctx, &c, variant);
    }
}

/* Cosine scores with all-zero q and k rows: the normalisation's floor
 * (x / max(|x|, 1e-12)) applies there, and its gradient is dy / 1e-12. */
static void zero_row_case(clattn_ctx *ctx)
{
    const int N = 5, M = 6, D = 8;
    float q[5 * 8], k[6 * 8], v[6 * 8], dout[5 * 8], out[5 * 8], lse[5], got[6 * 8];
    double ro[5 * 8], rl[5], rq[5 * 8], rk[6 * 8], rv[6 * 8];
    test_fill_uniform(q, N * D, -1, 1);
    test_fill_uniform(k, M * D, -1, 1);
    test_fill_uniform(v, M * D, -1, 1);
    test_fill_uniform(dout, N * D, -1, 1);
    memset(q + 2 * D, 0, D * sizeof *q);
    memset(k + 4 * D, 0, D * sizeof *k);
    ref_problem r;
    memset(&r, 0, sizeof r);
    r.B = r.Hq = r.Hkv = 1, r.N = N, r.M = M, r.D = r.Dv = D, r.scale = 2.0, r.cosine = true;
    r.wl = r.wr = -1;
    ref_attention(&r, q, k, v, ro, NULL, rl);
    ref_attention_backward(&r, q, k, v, dout, rq, rk, rv, NULL, 0);
    for (int i = 0; i < N * D; i++)
        out[i] = (float)ro[i];
    for (int i = 0; i < N; i++)
        lse[i] = (float)rl[i];
    int64_t sq[4] = {1, 1, N, D}, sk[4] = {1, 1, M, D}, sl[3] = {1, 1, N};
    clattn_tensor *tq = test_tensor(ctx, 4, sq, q), *tk = test_tensor(ctx, 4, sk, k);
    clattn_tensor *tv = test_tensor(ctx, 4, sk, v), *to = test_tensor(ctx, 4, sq, out);
    clattn_tensor *tl = test_tensor(ctx, 3, sl, lse), *tdo = test_tensor(ctx, 4, sq, dout);
    clattn_sdpa_grads g = {test_tensor(ctx, 4, sq, NULL), test_tensor(ctx, 4, sk, NULL),
                           test_tensor(ctx, 4, sk, NULL), NULL};
    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.score = CLATTN_SCORE_COSINE;
    p.scale = 2.0f;
    CHECK_OK(clattn_sdpa_backward(ctx, tq, tk, tv, to, tl, tdo, &p, &g));
    CHECK_OK(clattn_tensor_read(g.dq, got));
    check_grad("cosine with zero rows", "dq", got, rq, (size_t)N * D);
    CHECK_OK(clattn_tensor_read(g.dk, got));
    check_grad("cosine with zero rows", "dk", got, rk, (size_t)M * D);
    CHECK_OK(clattn_tensor_read(g.dv, got));
    check_grad("cosine with zero rows", "dv", got, rv, (size_t)M * D);
    n_cases_run++;
    clattn_tensor_destroy(tq), clattn_tensor_destroy(tk), clattn_tensor_destroy(tv);
    clattn_tensor_destroy(to), clattn_tensor_destroy(tl), clattn_tensor_destroy(tdo);
    clattn_tensor_destroy(g.dq), clattn_tensor_destroy(g.dk), clattn_tensor_destroy(g.dv);
}

static void error_cases(clattn_ctx *ctx)
{
    int64_t sq[4] = {2, 4, 5, 8}, sk[4] = {2, 2, 6, 8}, sv[4] = {2, 2, 6, 4};
    int64_t so[4] = {2, 4, 5, 4}, sl[3] = {2, 4, 5}, sbad[4] = {2, 4, 5, 5}, sl_bad[3] = {2, 4, 6};
    int64_t sbias[2] = {5, 6}, sbias_bad[2] = {1, 6};
    clattn_tensor *q = test_tensor(ctx, 4, sq, NULL), *k = test_tensor(ctx, 4, sk, NULL);
    clattn_tensor *v = test_tensor(ctx, 4, sv, NULL), *o = test_tensor(ctx, 4, so, NULL);
    clattn_tensor *lse = test_tensor(ctx, 3, sl, NULL), *dout = test_tensor(ctx, 4, so, NULL);
    clattn_tensor *dq = test_tensor(ctx, 4, sq, NULL), *dk = test_tensor(ctx, 4, sk, NULL);
    clattn_tensor *dv = test_tensor(ctx, 4, sv, NULL), *bad = test_tensor(ctx, 4, sbad, NULL);
    clattn_tensor *lse_bad = test_tensor(ctx, 3, sl_bad, NULL);
    clattn_tensor *bias = test_tensor(ctx, 2, sbias, NULL);
    clattn_tensor *db = test_tensor(ctx, 2, sbias, NULL);
    clattn_tensor *db_bad = test_tensor(ctx, 2, sbias_bad, NULL);
    clattn_tensor_fill(o, 0.0f);
    clattn_tensor_fill(lse, 0.0f);
    clattn_tensor_fill(dout, 0.0f);
    clattn_tensor_fill(q, 0.5f);
    clattn_tensor_fill(k, 0.5f);
    clattn_tensor_fill(v, 0.5f);
    clattn_tensor_fill(bias, 0.0f);
    clattn_sdpa_params p = clattn_sdpa_params_default();
    clattn_sdpa_grads g = {dq, dk, dv, NULL};

    /* score_mod has no derivative: refused, also through a preset. */
    p.score_mod = "score * 2.0f";
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_UNSUPPORTED);
    CHECK(strstr(clattn_last_error(), "score_mod") != NULL, "message: %s", clattn_last_error());
    p = clattn_sdpa_params_default();
    clattn_sdpa_preset_softcap(&p, 5.0f);
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_UNSUPPORTED);
    p = clattn_sdpa_params_default();

    /* Missing or misshapen arguments. */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, NULL, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "lse") != NULL, "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse_bad, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "lse [2, 4, 6]") != NULL, "message: %s",
          clattn_last_error());
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, NULL, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, bad, &p, &g), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "dout") != NULL, "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, bad, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "sdpa_backward: out") != NULL, "message: %s",
          clattn_last_error());
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, q, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sdpa_backward(NULL, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    clattn_sdpa_grads gb = {bad, NULL, NULL, NULL}; /* dq of the wrong shape */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "grads->dq [2, 4, 5, 5]") != NULL, "message: %s",
          clattn_last_error());
    gb = (clattn_sdpa_grads){NULL, dv, NULL, NULL}; /* dk with v's shape */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    gb = (clattn_sdpa_grads){NULL, NULL, NULL, db}; /* dbias without a bias */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "dbias") != NULL, "message: %s", clattn_last_error());
    p.bias = bias;
    gb = (clattn_sdpa_grads){NULL, NULL, NULL, db_bad}; /* dbias not the bias's shape */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    gb = (clattn_sdpa_grads){NULL, NULL, NULL, db};
    CHECK_OK(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb));
    p = clattn_sdpa_params_default();

    /* Aliasing: a gradient over an input, or two gradients in one tensor. */
    gb = (clattn_sdpa_grads){q, NULL, NULL, NULL};
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "alias") != NULL, "message: %s", clattn_last_error());
    gb = (clattn_sdpa_grads){NULL, dk, dk, NULL};
    int64_t sv8[4] = {2, 2, 6, 8};
    clattn_tensor *v8 = test_tensor(ctx, 4, sv8, NULL);
    int64_t so8[4] = {2, 4, 5, 8};
    clattn_tensor *o8 = test_tensor(ctx, 4, so8, NULL), *do8 = test_tensor(ctx, 4, so8, NULL);
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v8, o8, lse, do8, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);

    /* The forward's parameter checks apply. */
    p.window_left = -2;
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    p = clattn_sdpa_params_default();
    int32_t kv_bad[2] = {3, 7};
    p.kv_len = kv_bad;
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "kv_len[1] = 7") != NULL, "message: %s",
          clattn_last_error());
    p = clattn_sdpa_params_default();
    p.mask_mod = "q_idx >";
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g), CLATTN_ERR_BUILD);

    /* Nothing asked for: fine, nothing done; the context still works. */
    p = clattn_sdpa_params_default();
    gb = (clattn_sdpa_grads){NULL, NULL, NULL, NULL};
    CHECK_OK(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb));
    CHECK_OK(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, NULL, &g));
    CHECK_OK(clattn_ctx_finish(ctx));

    clattn_tensor *all[] = {q, k, v, o, lse, dout, dq, dk, dv, bad, lse_bad, bias, db, db_bad,
                            v8, o8, do8};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
}

/* ---- PyTorch fixtures --------------------------------------------------------- */

/* Reads tensor name of w as a host array (malloc'd) and, if want, a
 * device tensor; NULL (no failure) when the file has no such tensor. */
static float *fixture_tensor(clattn_ctx *ctx, const clattn_weights *w, const char *file,
                             const char *name, clattn_tensor **dev, size_t *count)
{
    clattn_weight_info info;
    if (dev)
        *dev = NULL;
    if (clattn_weights_find(w, name, &info) != CLATTN_OK)
        return NULL;
    size_t n = 1;
    for (int i = 0; i < info.ndim; i++)
        n *= (size_t)info.shape[i];
    float *x = malloc(n * sizeof *x);
    CHECK_OK(clattn_weights_read_f32(w, name, x, n));
    if (dev) {
        clattn_status st = clattn_weights_upload(ctx, w, name, dev);
        CHECK(st == CLATTN_OK, "%s: %s: %s", file, name, clattn_last_error());
    }
    if (count)
        *count = n;
    return x;
}

static const char *fixture_meta(const clattn_weights *w, const char *key, const char *def)
{
    const char *value = clattn_weights_metadata(w, key);
    return value ? value : def;
}

static void fixture_close(const char *file, const char *name, const float *got,
                          const float *want, size_t n)
{
    double *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++)
        ref[i] = want[i];
    check_grad(file, name, got, ref, n);
    free(ref);
}

/* One kind "sdpa" fixture of make_grad_fixtures.py: the forward (checked
 * against PyTorch's out, lse kept) and then the backward on the device,
 * against PyTorch's autograd gradients, with the same tolerance as the
 * sweep (the fixtures are float64 results rounded to float32). */
static void sdpa_fixture(clattn_ctx *ctx, const char *dir, const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    clattn_weights *w = NULL;
    clattn_status st = clattn_weights_open(path, &w);
    CHECK(st == CLATTN_OK, "%s: %s", path, clattn_last_error());
    if (st != CLATTN_OK)
        return;
    clattn_tensor *tq, *tk, *tv, *tdo, *tbias;
    size_t nq, nk, nv, no, nb = 0;
    float *q = fixture_tensor(ctx, w, file, "q", &tq, &nq);
    float *k = fixture_tensor(ctx, w, file, "k", &tk, &nk);
    float *v = fixture_tensor(ctx, w, file, "v", &tv, &nv);
    float *dout = fixture_tensor(ctx, w, file, "dout", &tdo, &no);
    float *want_out = fixture_tensor(ctx, w, file, "out", NULL, NULL);
    float *want_dq = fixture_tensor(ctx, w, file, "dq", NULL, NULL);
    float *want_dk = fixture_tensor(ctx, w, file, "dk", NULL, NULL);
    float *want_dv = fixture_tensor(ctx, w, file, "dv", NULL, NULL);
    float *bias = fixture_tensor(ctx, w, file, "bias", &tbias, &nb);
    float *want_db = fixture_tensor(ctx, w, file, "dbias", NULL, NULL);
    CHECK(q && k && v && dout && want_out && want_dq && want_dk && want_dv,
          "%s: a tensor is missing", file);
    if (!(q && k && v && dout && want_out && want_dq && want_dk && want_dv))
        goto done;

    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.scale = strtof(fixture_meta(w, "scale", "0"), NULL);
    p.causal = strcmp(fixture_meta(w, "causal", "0"), "1") == 0;
    p.window_left = atoi(fixture_meta(w, "window_left", "-1"));
    p.window_right = atoi(fixture_meta(w, "window_right", "-1"));
    p.score = strcmp(fixture_meta(w, "score", "dot"), "cosine") == 0 ? CLATTN_SCORE_COSINE
                                                                     : CLATTN_SCORE_DOT;
    int32_t kv_len[16];
    const char *kl = fixture_meta(w, "kv_len", "");
    if (*kl) {
        int nkl = 0;
        for (char *e; *kl && nkl < 16; kl = *e ? e + 1 : e)
            kv_len[nkl++] = (int32_t)strtol(kl, &e, 10);
        p.kv_len = kv_len;
    }
    p.bias = tbias;

    int64_t so[4], sl[3];
    clattn_tensor_shape(tdo, so);
    sl[0] = so[0], sl[1] = so[1], sl[2] = so[2];
    clattn_tensor *to = test_tensor(ctx, 4, so, NULL), *tl = test_tensor(ctx, 3, sl, NULL);
    int64_t shape[4];
    clattn_sdpa_grads g;
    g.dq = grad_tensor(ctx, true, clattn_tensor_shape(tq, shape), shape);
    g.dk = grad_tensor(ctx, true, clattn_tensor_shape(tk, shape), shape);
    g.dv = grad_tensor(ctx, true, clattn_tensor_shape(tv, shape), shape);
    g.dbias = want_db ? grad_tensor(ctx, true, clattn_tensor_shape(tbias, shape), shape) : NULL;
    p.lse = tl;
    st = clattn_sdpa(ctx, tq, tk, tv, to, &p);
    CHECK(st == CLATTN_OK, "%s: forward: %s", file, clattn_last_error());
    if (st == CLATTN_OK) {
        st = clattn_sdpa_backward(ctx, tq, tk, tv, to, tl, tdo, &p, &g);
        CHECK(st == CLATTN_OK, "%s: backward: %s", file, clattn_last_error());
    }
    if (st == CLATTN_OK) {
        float *got = malloc((nq > no ? (nq > nk ? nq : nk) : (no > nk ? no : nk)) *
                                sizeof *got + nb * sizeof *got);
        CHECK_OK(clattn_tensor_read(to, got));
        fixture_close(file, "out (forward)", got, want_out, no);
        CHECK_OK(clattn_tensor_read(g.dq, got));
        fixture_close(file, "dq", got, want_dq, nq);
        CHECK_OK(clattn_tensor_read(g.dk, got));
        fixture_close(file, "dk", got, want_dk, nk);
        CHECK_OK(clattn_tensor_read(g.dv, got));
        fixture_close(file, "dv", got, want_dv, nv);
        if (g.dbias) {
            CHECK_OK(clattn_tensor_read(g.dbias, got));
            fixture_close(file, "dbias", got, want_db, nb);
        }
        free(got);
    }
    n_cases_run++;
    clattn_tensor_destroy(to), clattn_tensor_destroy(tl), clattn_tensor_destroy(g.dq);
    clattn_tensor_destroy(g.dk), clattn_tensor_destroy(g.dv), clattn_tensor_destroy(g.dbias);
done:
    clattn_tensor_destroy(tq), clattn_tensor_destroy(tk), clattn_tensor_destroy(tv);
    clattn_tensor_destroy(tdo), clattn_tensor_destroy(tbias);
    free(q), free(k), free(v), free(dout), free(want_out), free(want_dq), free(want_dk);
    free(want_dv), free(bias), free(want_db);
    clattn_weights_close(w);
}

/* Every case of dir/index.txt whose kind this test knows ("sdpa"). */
static void pytorch_fixtures(clattn_ctx *ctx, const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/index.txt", dir);
    char *index = test_read_text(path);
    CHECK(index != NULL, "cannot read %s (made by tests/fixtures/make_grad_fixtures.py)", path);
    if (!index)
        return;
    int found = 0;
    for (char *line = strtok(index, "\n"); line; line = strtok(NULL, "\n")) {
        char kind[32], file[256];
        if (sscanf(line, "%31s %255s", kind, file) != 2)
            continue;
        if (strcmp(kind, "sdpa") == 0) {
            sdpa_fixture(ctx, dir, file);
            found++;
        }
    }
    CHECK(found > 0, "%s lists no sdpa fixture", path);
    free(index);
}

/* ---- memory ------------------------------------------------------------------ */


/* N = M = 16384, D = 64, one head: forward with lse, then backward, in
 * far less memory than the 1 GiB of one N x M float matrix. On a CPU
 * device the device buffers are this process's memory, so the peak RSS
 * measures the whole of it. A few rows and keys are checked against the
 * reference (dq rows exactly; dk and dv rows against P recomputed from
 * the returned lse and Delta from the returned out, the contract's own
 * formulas, since a full reference would take minutes). */
static int memory_test(clattn_ctx *ctx)
{
    const int N = 16384, D = 64;
    const size_t n = (size_t)N * D;
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *dout = malloc(n * 4);
    float *out = malloc(n * 4), *lse = malloc((size_t)N * 4);
    float *dq = malloc(n * 4), *dk = malloc(n * 4), *dv = malloc(n * 4);
    test_fill_uniform(q, n, -1, 1);
    test_fill_uniform(k, n, -1, 1);
    test_fill_uniform(v, n, -1, 1);
    test_fill_uniform(dout, n, -1, 1);
    int64_t s4[4] = {1, 1, N, D}, s3[3] = {1, 1, N};
    clattn_tensor *tq = test_tensor(ctx, 4, s4, q), *tk = test_tensor(ctx, 4, s4, k);
    clattn_tensor *tv = test_tensor(ctx, 4, s4, v), *tdo = test_tensor(ctx, 4, s4, dout);
    clattn_tensor *to = test_tensor(ctx, 4, s4, NULL), *tl = test_tensor(ctx, 3, s3, NULL);
    clattn_sdpa_grads g = {test_tensor(ctx, 4, s4, NULL), test_tensor(ctx, 4, s4, NULL),
                           test_tensor(ctx, 4, s4, NULL), NULL};
    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.lse = tl;
    double t0 = now_s();
    CHECK_OK(clattn_sdpa(ctx, tq, tk, tv, to, &p));
    CHECK_OK(clattn_ctx_finish(ctx));
    double t1 = now_s();
    CHECK_OK(clattn_sdpa_backward(ctx, tq, tk, tv, to, tl, tdo, &p, &g));
    CHECK_OK(clattn_ctx_finish(ctx));
    double t2 = now_s();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_mb = (double)ru.ru_maxrss / 1024.0;
    fprintf(stderr,
            "memory: N = M = %d, D = %d: forward %.2f s, backward %.2f s, peak RSS %.0f MB\n",
            N, D, t1 - t0, t2 - t1, peak_mb);
    CHECK(peak_mb < 500.0, "peak RSS %.0f MB, expected < 500 MB", peak_mb);
    CHECK_OK(clattn_tensor_read(to, out));
    CHECK_OK(clattn_tensor_read(tl, lse));
    CHECK_OK(clattn_tensor_read(g.dq, dq));
    CHECK_OK(clattn_tensor_read(g.dk, dk));
    CHECK_OK(clattn_tensor_read(g.dv, dv));
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (!isfinite(dq[i]) || !isfinite(dk[i]) || !isfinite(dv[i]))
            bad = i;
    CHECK(bad == n, "memory: non-finite gradient at element %zu", bad);

    const double scale = 1.0 / sqrt((double)D);
    const int rows[4] = {0, 1, 8191, N - 1};
    double *s = malloc((size_t)N * sizeof *s), *delta = malloc((size_t)N * sizeof *delta);
    for (int i = 0; i < N; i++) {
        double x = 0;
        for (int d = 0; d < D; d++)
            x += (double)dout[(size_t)i * D + d] * out[(size_t)i * D + d];
        delta[i] = x;
    }
    for (int ri = 0; ri < 4; ri++) {
        /* dq row i: the full reference for one query. */
        const int i = rows[ri];
        double mx = -INFINITY, sum = 0, dl = 0, ref[64] = {0}, dp;
        for (int j = 0; j < N; j++) {
            double x = 0;
            for (int d = 0; d < D; d++)
                x += (double)q[(size_t)i * D + d] * k[(size_t)j * D + d];
            s[j] = scale * x;
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < N; j++)
            sum += exp(s[j] - mx);
        for (int j = 0; j < N; j++) {
            dp = 0;
            for (int d = 0; d < D; d++)
                dp += (double)dout[(size_t)i * D + d] * v[(size_t)j * D + d];
            dl += exp(s[j] - mx) / sum * dp;
        }
        for (int j = 0; j < N; j++) {
            dp = 0;
            for (int d = 0; d < D; d++)
                dp += (double)dout[(size_t)i * D + d] * v[(size_t)j * D + d];
            const double ds = exp(s[j] - mx) / sum * (dp - dl);
            for (int d = 0; d < D; d++)
                ref[d] += scale * ds * k[(size_t)j * D + d];
        }
        check_grad("memory test", "dq row", dq + (size_t)i * D, ref, D);
        /* dk and dv row j = i: P_ij = exp(s_ij - lse_i) over every query */
        const int j = i;
        double rk[64] = {0}, rv[64] = {0};
        for (int qi = 0; qi < N; qi++) {
            double x = 0;
            dp = 0;
            for (int d = 0; d < D; d++) {
                x += (double)q[(size_t)qi * D + d] * k[(size_t)j * D + d];
                dp += (double)dout[(size_t)qi * D + d] * v[(size_t)j * D + d];
            }
            const double pij = exp(scale * x - lse[qi]);
            const double ds = pij * (dp - delta[qi]);
            for (int d = 0; d < D; d++) {
                rk[d] += scale * ds * q[(size_t)qi * D + d];
                rv[d] += pij * dout[(size_t)qi * D + d];
            }
        }
        check_grad("memory test", "dk row", dk + (size_t)j * D, rk, D);
        check_grad("memory test", "dv row", dv + (size_t)j * D, rv, D);
    }
    free(s), free(delta);
    clattn_tensor_destroy(tq), clattn_tensor_destroy(tk), clattn_tensor_destroy(tv);
    clattn_tensor_destroy(tdo), clattn_tensor_destroy(to), clattn_tensor_destroy(tl);
    clattn_tensor_destroy(g.dq), clattn_tensor_destroy(g.dk), clattn_tensor_destroy(g.dv);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(dq), free(dk), free(dv);
    return 0;
}

int main(int argc, char **argv)
{
    const char *small_env = getenv("CLATTN_TEST_SMALL");
    bool small = small_env && small_env[0] == '1';
    bool memory = argc > 1 && strcmp(argv[1], "memory") == 0;
    test_seed(2025);
    clattn_ctx *ctx = test_ctx();
    clattn_device_info info;
    clattn_ctx_device_info(ctx, &info);

    if (memory) {
        /* RSS measures device memory only where the device is this
         * process (POCL); elsewhere, and under oclgrind, skip. */
        if (small || !strstr(info.platform_name, "Portable Computing Language"))
            fprintf(stderr, "memory test skipped (needs POCL, not CLATTN_TEST_SMALL)\n");
        else
            memory_test(ctx);
        clattn_ctx_destroy(ctx);
        return test_summary("test_attention_backward memory");
    }

    /* The other fused family too, on a subset: both must agree. */
    clattn_ctx_params op = clattn_ctx_params_default();
    bool primary_tiled = strcmp(clattn_ctx_attention_kernel(ctx), "tiled") == 0;
    const char *name = primary_tiled ? "tiled" : "cpu";
    op.attention_kernel = primary_tiled ? "cpu" : "tiled";
    clattn_ctx *other = NULL;
    CHECK_OK(clattn_ctx_create(&op, &other));
    /* llvmpipe runs "tiled" whatever is asked: no second family there. */
    if (other && strcmp(clattn_ctx_attention_kernel(other), op.attention_kernel) != 0) {
        clattn_ctx_destroy(other);
        other = NULL;
    }

    reference_fd_check();
    pytorch_fixtures(ctx, argc > 1 ? argv[1] : GRAD_FIXTURES);
    sweep(ctx, name, small, small ? 3 : 1, 0, false);
    edge_cases(ctx, name, small);
    zero_row_case(ctx);
    if (other) {
        sweep(other, op.attention_kernel, small, small ? 7 : 3, 1, true);
        if (!small)
            edge_cases(other, op.attention_kernel, small);
    }
    error_cases(ctx);
    fprintf(stderr, "%d attention backward cases\n", n_cases_run);
    clattn_ctx_destroy(other);
    clattn_ctx_destroy(ctx);
    return test_summary("test_attention_backward");
}
