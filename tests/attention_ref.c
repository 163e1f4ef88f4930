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
