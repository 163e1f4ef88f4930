/* test_attention_backward.c - clattn_sdpa_backward against the
 * double-precision reference gradients in attention_ref.c (which are first
 * checked against central differences of the forward reference), sweeping
 * shapes (N, M in 1..200 both ways round, D and Dv from 1 to 256, batches,
 * GQA/MQA), every mask kind, every bias broadcast shape with -inf entries,
 * mask_mod, cosine scores, custom scales, gradient subsets, and both fused
 * kernel families (CLATTN_TEST_SMALL=1: small shapes and a third of the
 * cases, for oclgrind). The tolerance is backward_case.h's. Argument
 * errors: test_attention_backward_errors; PyTorch's autograd:
 * test_attention_backward_pytorch; peak memory:
 * test_attention_backward_memory. */
#include "backward_case.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    const char *small_env = getenv("CLATTN_TEST_SMALL");
    bool small = small_env && small_env[0] == '1';
    test_seed(2025);
    clattn_ctx *ctx = test_ctx();

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
    sweep(ctx, name, small, small ? 3 : 1, 0, false);
    edge_cases(ctx, name, small);
    zero_row_case(ctx);
    if (other) {
        sweep(other, op.attention_kernel, small, small ? 7 : 3, 1, true);
        if (!small)
            edge_cases(other, op.attention_kernel, small);
    }
    fprintf(stderr, "%d attention backward cases\n", n_cases_run);
    clattn_ctx_destroy(other);
    clattn_ctx_destroy(ctx);
    return test_summary("test_attention_backward");
}
