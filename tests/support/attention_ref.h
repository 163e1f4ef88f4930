/* attention_ref.h - a plain double-precision reference for scaled
 * dot-product attention with every option of clattn_sdpa, and for its
 * gradients (clattn_sdpa_backward), written from the definitions in
 * clattn.h and independent of the kernels. */
#ifndef CLATTN_ATTENTION_REF_H
#define CLATTN_ATTENTION_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Snippet kinds the reference knows how to evaluate (each mirrors the
 * OpenCL C text the test passes to clattn). */
typedef enum ref_mod {
    REF_MOD_NONE,
    REF_MOD_ALIBI,      /* score -= buf[h] * |i + M - N - j| */
    REF_MOD_SOFTCAP,    /* score = p0 * tanh(score / p0) */
    REF_MOD_RELPOS,     /* score += buf[h * (2R+1) + clamp(j - i, -R, R) + R], R = p0 */
    REF_MOD_CUSTOM      /* score + p1 * sin(q_idx * 3 + kv_idx) */
} ref_mod;

typedef struct ref_problem {
    int B, Hq, Hkv, N, M, D, Dv;
    double scale;
    bool cosine;
    int wl, wr;                   /* -1 unlimited; causal already folded in */
    const int32_t *kv_len;        /* [B] or NULL */
    const float *bias;            /* or NULL; element (b,h,i,j) at strides below */
    int64_t bias_sb, bias_sh, bias_sn;
    ref_mod score_mod;
    bool mask_mod;                /* (kv_idx % 3) != 1 || q_idx == kv_idx */
    const float *mod_buf;
    float p[4];
} ref_problem;

/* out [B, Hq, N, Dv]; weights [B, Hq, N, M] and lse [B, Hq, N] if not NULL.
 * Rows with no visible key: out = 0, weights = 0, lse = -inf. */
void ref_attention(const ref_problem *p, const float *q, const float *k, const float *v,
                   double *out, double *weights, double *lse);

/* Gradients of L = sum(out * dout) with out = ref_attention(p, q, k, v):
 * P in double, dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)),
 * dQ = scale dS K, dK = scale dS^T Q (for cosine scores on the normalised
 * rows, then through the normalisation x / max(|x|, 1e-12)); dK and dV
 * summed over the query heads that share a kv head. Each output may be
 * NULL; dq, dk, dv have the shapes of q, k, v. dbias (p->bias set) has
 * bias_numel elements, the bias's own layout, and receives dS summed over
 * its broadcast dimensions (p->bias_sb/sh/sn of 0); -inf entries get 0.
 * Rows with no visible key contribute nothing. Needs score_mod NONE. */
void ref_attention_backward(const ref_problem *p, const float *q, const float *k,
                            const float *v, const float *dout, double *dq, double *dk,
                            double *dv, double *dbias, size_t bias_numel);

/* Checks ref_attention_backward against central differences of
 * L = sum(ref_attention(...) * dout) over every element of q, k, v and
 * the bias (-inf entries skipped), with steps of about h. Returns the
 * largest |analytic - numeric| / max(1, |analytic|). Tiny shapes only. */
double ref_backward_fd_error(const ref_problem *p, const float *q, const float *k,
                             const float *v, const float *dout, size_t bias_numel, double h);

#endif
