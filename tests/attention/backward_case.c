/* backward_case.c - one attention backward case against the reference
 * (see backward_case.h for the tolerance). */
#include "backward_case.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const mask_names[] = {"none", "causal", "window(3,0)", "window(0,3)",
                                   "window(5,2)", "kv_len", "causal+kv_len", "bias",
                                   "bool-bias", "window(4,2)+bias", "mask_mod"};


const char *const bias_names[] = {"[N,M]", "[Hq,N,M]", "[1,Hq,N,M]", "[B,1,N,M]",
                                   "[B,Hq,N,M]", "[1,Hq,1,M]"};


int n_cases_run;
double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool has_bias(mask_kind m)
{
    return m == MASK_BIAS || m == MASK_BIAS_BOOL || m == MASK_WINDOW_BIAS;
}

/* The bias of a case: shape, strides into it for the reference. */
size_t bias_layout(const tcase *c, int64_t *shape, int *nd, int64_t *sb, int64_t *sh,
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
void check_grad(const char *what, const char *name, const float *got, const double *ref,
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

clattn_tensor *grad_tensor(clattn_ctx *ctx, bool want, int nd, const int64_t *shape)
{
    if (!want)
        return NULL;
    clattn_tensor *t = test_tensor(ctx, nd, shape, NULL);
    clattn_tensor_fill(t, NAN); /* every element must be written */
    return t;
}

void run_case(clattn_ctx *ctx, const tcase *c, const char *variant)
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
