#include "attention_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double norm_or_eps(const float *x, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)x[i] * x[i];
    s = sqrt(s);
    return s > 1e-12 ? s : 1e-12;
}

static bool visible(const ref_problem *p, int b, int i, int j)
{
    long long shift = (long long)p->M - p->N;
    if (p->wl >= 0 && j < i + shift - p->wl)
        return false;
    if (p->wr >= 0 && j > i + shift + p->wr)
        return false;
    if (p->kv_len && j >= p->kv_len[b])
        return false;
    if (p->mask_mod && !((j % 3) != 1 || i == j))
        return false;
    return true;
}

static double apply_score_mod(const ref_problem *p, double s, int h, int i, int j)
{
    switch (p->score_mod) {
    case REF_MOD_NONE: return s;
    case REF_MOD_ALIBI: return s - p->mod_buf[h] * fabs((double)i + p->M - p->N - j);
    case REF_MOD_SOFTCAP: return p->p[0] * tanh(s / p->p[0]);
    case REF_MOD_RELPOS: {
        int r = (int)p->p[0], rel = j - i;
        rel = rel < -r ? -r : rel > r ? r : rel;
        return s + p->mod_buf[h * (2 * r + 1) + rel + r];
    }
    case REF_MOD_CUSTOM: return s + p->p[1] * sin((double)(i * 3 + j));
    }
    return s;
}

void ref_attention(const ref_problem *p, const float *q, const float *k, const float *v,
                   double *out, double *weights, double *lse)
{
    int g = p->Hq / p->Hkv;
    double *s = malloc((size_t)p->M * sizeof *s);
    bool *vis = malloc((size_t)p->M * sizeof *vis);
    for (int b = 0; b < p->B; b++) {
        for (int h = 0; h < p->Hq; h++) {
            int hk = h / g;
            for (int i = 0; i < p->N; i++) {
                const float *qi = q + (((size_t)b * p->Hq + h) * p->N + i) * p->D;
                double qn = p->cosine ? norm_or_eps(qi, p->D) : 1.0;
                double mx = -INFINITY;
                for (int j = 0; j < p->M; j++) {
                    const float *kj = k + (((size_t)b * p->Hkv + hk) * p->M + j) * p->D;
                    double kn = p->cosine ? norm_or_eps(kj, p->D) : 1.0;
                    double dot = 0;
                    for (int d = 0; d < p->D; d++)
                        dot += (double)qi[d] * kj[d];
                    double sc = p->scale * dot / (qn * kn);
                    if (p->bias)
                        sc += p->bias[b * p->bias_sb + h * p->bias_sh + i * p->bias_sn + j];
                    sc = apply_score_mod(p, sc, h, i, j);
                    vis[j] = visible(p, b, i, j) && !(isinf(sc) && sc < 0);
                    s[j] = sc;
                    if (vis[j] && sc > mx)
                        mx = sc;
                }
                double sum = 0;
                for (int j = 0; j < p->M; j++)
                    sum += vis[j] ? exp(s[j] - mx) : 0.0;
                size_t row = ((size_t)b * p->Hq + h) * p->N + i;
                double *o = out + row * p->Dv;
                memset(o, 0, (size_t)p->Dv * sizeof *o);
                for (int j = 0; j < p->M; j++) {
                    double w = (vis[j] && sum > 0) ? exp(s[j] - mx) / sum : 0.0;
                    if (weights)
                        weights[row * p->M + j] = w;
                    if (w == 0)
                        continue;
                    const float *vj = v + (((size_t)b * p->Hkv + hk) * p->M + j) * p->Dv;
                    for (int d = 0; d < p->Dv; d++)
                        o[d] += w * vj[d];
                }
                if (lse)
                    lse[row] = sum > 0 ? mx + log(sum) : -INFINITY;
            }
        }
    }
    free(s);
    free(vis);
}

/* ---- gradients ------------------------------------------------------------ */

/* Rows of x [rows, d] divided by max(|row|, 1e-12), and the norms. */
static void normalize_rows(const float *x, size_t rows, int d, double *y, double *norms)
{
    for (size_t r = 0; r < rows; r++) {
        double s = 0;
        for (int i = 0; i < d; i++)
            s += (double)x[r * d + i] * x[r * d + i];
        s = sqrt(s);
        norms[r] = s;
        double n = s > 1e-12 ? s : 1e-12;
        for (int i = 0; i < d; i++)
            y[r * d + i] = x[r * d + i] / n;
    }
}

/* dx from dy = dL/dy through y = x / max(|x|, eps), in place on g. */
static void normalize_backward(const double *y, const double *norms, size_t rows, int d,
                               double *g)
{
    for (size_t r = 0; r < rows; r++) {
        double *gr = g + r * d;
        const double *yr = y + r * d;
        if (norms[r] > 1e-12) {
            double dot = 0;
            for (int i = 0; i < d; i++)
                dot += yr[i] * gr[i];
            for (int i = 0; i < d; i++)
                gr[i] = (gr[i] - yr[i] * dot) / norms[r];
        } else {
            for (int i = 0; i < d; i++)
                gr[i] /= 1e-12;
        }
    }
}

void ref_attention_backward(const ref_problem *p, const float *q, const float *k,
                            const float *v, const float *dout, double *dq, double *dk,
                            double *dv, double *dbias, size_t bias_numel)
{
    const int g = p->Hq / p->Hkv;
    const size_t nq = (size_t)p->B * p->Hq * p->N, nk = (size_t)p->B * p->Hkv * p->M;
    /* q and k as used in the dot product: as given, or normalised */
    double *qd = malloc(nq * p->D * sizeof *qd), *kd = malloc(nk * p->D * sizeof *kd);
    double *qn = malloc(nq * sizeof *qn), *kn = malloc(nk * sizeof *kn);
    double *gq = calloc(nq * p->D, sizeof *gq), *gk = calloc(nk * p->D, sizeof *gk);
    double *gv = calloc(nk * p->Dv, sizeof *gv);
    double *s = malloc((size_t)p->M * sizeof *s), *pr = malloc((size_t)p->M * sizeof *pr);
    double *dp = malloc((size_t)p->M * sizeof *dp);
    bool *vis = malloc((size_t)p->M * sizeof *vis);
    if (p->cosine) {
        normalize_rows(q, nq, p->D, qd, qn);
        normalize_rows(k, nk, p->D, kd, kn);
    } else {
        for (size_t i = 0; i < nq * p->D; i++)
            qd[i] = q[i];
        for (size_t i = 0; i < nk * p->D; i++)
            kd[i] = k[i];
    }
    if (dbias)
        memset(dbias, 0, bias_numel * sizeof *dbias);
    for (int b = 0; b < p->B; b++) {
        for (int h = 0; h < p->Hq; h++) {
            const size_t kvh = (size_t)b * p->Hkv + h / g;
            for (int i = 0; i < p->N; i++) {
                const size_t row = ((size_t)b * p->Hq + h) * p->N + i;
                const double *qi = qd + row * p->D;
                const float *gi = dout + row * p->Dv;
                double mx = -INFINITY;
                for (int j = 0; j < p->M; j++) {
                    const double *kj = kd + (kvh * p->M + j) * p->D;
                    double dot = 0;
                    for (int d = 0; d < p->D; d++)
                        dot += qi[d] * kj[d];
                    double sc = p->scale * dot;
                    if (p->bias)
                        sc += p->bias[b * p->bias_sb + h * p->bias_sh + i * p->bias_sn + j];
                    vis[j] = visible(p, b, i, j) && !(isinf(sc) && sc < 0);
                    s[j] = sc;
                    if (vis[j] && sc > mx)
                        mx = sc;
                }
                double sum = 0;
                for (int j = 0; j < p->M; j++)
                    sum += vis[j] ? exp(s[j] - mx) : 0.0;
                if (sum == 0)
                    continue; /* no visible key: nothing flows back */
                double delta = 0;
                for (int j = 0; j < p->M; j++) {
                    pr[j] = vis[j] ? exp(s[j] - mx) / sum : 0.0;
                    const float *vj = v + (kvh * p->M + j) * p->Dv;
                    double x = 0;
                    for (int d = 0; d < p->Dv; d++)
                        x += (double)gi[d] * vj[d];
                    dp[j] = x;
                    delta += pr[j] * x;
                }
                for (int j = 0; j < p->M; j++) {
                    if (pr[j] == 0)
                        continue;
                    const double ds = pr[j] * (dp[j] - delta);
                    const double *kj = kd + (kvh * p->M + j) * p->D;
                    double *gkj = gk + (kvh * p->M + j) * p->D;
                    double *gvj = gv + (kvh * p->M + j) * p->Dv;
                    for (int d = 0; d < p->D; d++) {
                        gq[row * p->D + d] += p->scale * ds * kj[d];
                        gkj[d] += p->scale * ds * qi[d];
                    }
                    for (int d = 0; d < p->Dv; d++)
                        gvj[d] += pr[j] * gi[d];
                    if (dbias)
                        dbias[b * p->bias_sb + h * p->bias_sh + i * p->bias_sn + j] += ds;
                }
            }
        }
    }
    if (p->cosine) {
        normalize_backward(qd, qn, nq, p->D, gq);
        normalize_backward(kd, kn, nk, p->D, gk);
    }
    if (dq)
        memcpy(dq, gq, nq * p->D * sizeof *dq);
    if (dk)
        memcpy(dk, gk, nk * p->D * sizeof *dk);
    if (dv)
        memcpy(dv, gv, nk * p->Dv * sizeof *dv);
    free(qd), free(kd), free(qn), free(kn), free(gq), free(gk), free(gv);
    free(s), free(pr), free(dp), free(vis);
}

/* L = sum(out * dout) by the forward reference. */
static double fd_loss(const ref_problem *p, const float *q, const float *k, const float *v,
                      const float *dout, double *out)
{
    ref_attention(p, q, k, v, out, NULL, NULL);
    size_t n = (size_t)p->B * p->Hq * p->N * p->Dv;
    double l = 0;
    for (size_t i = 0; i < n; i++)
        l += out[i] * dout[i];
    return l;
}

/* Central difference of the loss in element x[idx] (x is one of the
 * problem's inputs, modified and restored in place). The step is the
 * exact float difference, so rounding the step adds no error. */
static double fd_one(const ref_problem *p, float *x, size_t idx, const float *q, const float *k,
                     const float *v, const float *dout, double *out, double h)
{
    const float x0 = x[idx];
    const float xp = (float)(x0 + h), xm = (float)(x0 - h);
    x[idx] = xp;
    double lp = fd_loss(p, q, k, v, dout, out);
    x[idx] = xm;
    double lm = fd_loss(p, q, k, v, dout, out);
    x[idx] = x0;
    return (lp - lm) / ((double)xp - (double)xm);
}

static double worse(double err, double analytic, double numeric)
{
    double a = fabs(analytic);
    double e = fabs(analytic - numeric) / (a > 1 ? a : 1);
    return e > err ? e : err;
}

double ref_backward_fd_error(const ref_problem *p, const float *q, const float *k,
                             const float *v, const float *dout, size_t bias_numel, double h)
{
    const size_t nq = (size_t)p->B * p->Hq * p->N * p->D, nk = (size_t)p->B * p->Hkv * p->M * p->D;
    const size_t nv = (size_t)p->B * p->Hkv * p->M * p->Dv;
    float *qc = malloc(nq * sizeof *qc), *kc = malloc(nk * sizeof *kc);
    float *vc = malloc(nv * sizeof *vc);
    float *bc = p->bias ? malloc(bias_numel * sizeof *bc) : NULL;
    double *dq = malloc(nq * sizeof *dq), *dk = malloc(nk * sizeof *dk);
    double *dv = malloc(nv * sizeof *dv);
    double *db = p->bias ? malloc(bias_numel * sizeof *db) : NULL;
    double *out = malloc((size_t)p->B * p->Hq * p->N * p->Dv * sizeof *out);
    memcpy(qc, q, nq * sizeof *qc);
    memcpy(kc, k, nk * sizeof *kc);
    memcpy(vc, v, nv * sizeof *vc);
    ref_problem pc = *p;
    if (bc) {
        memcpy(bc, p->bias, bias_numel * sizeof *bc);
        pc.bias = bc;
    }
    ref_attention_backward(&pc, qc, kc, vc, dout, dq, dk, dv, db, bias_numel);
    double err = 0;
    for (size_t i = 0; i < nq; i++)
        err = worse(err, dq[i], fd_one(&pc, qc, i, qc, kc, vc, dout, out, h));
    for (size_t i = 0; i < nk; i++)
        err = worse(err, dk[i], fd_one(&pc, kc, i, qc, kc, vc, dout, out, h));
    for (size_t i = 0; i < nv; i++)
        err = worse(err, dv[i], fd_one(&pc, vc, i, qc, kc, vc, dout, out, h));
    for (size_t i = 0; bc && i < bias_numel; i++)
        if (!isinf(bc[i]))
            err = worse(err, db[i], fd_one(&pc, bc, i, qc, kc, vc, dout, out, h));
    free(qc), free(kc), free(vc), free(bc), free(dq), free(dk), free(dv), free(db), free(out);
    return err;
}
