/* classic.c - additive (Bahdanau) and general (Luong) attention.
 *
 * Both project with CLBlast GEMMs first. Additive scores need tanh of every
 * (query, key) pair, so they are materialised [B, N, M], normalised by the
 * attention softmax kernel and multiplied by V. General attention is
 * (q W) . k, i.e. dot-product attention on projected queries, and runs
 * through the attention core (fused unless weights are requested). */
#include "attention/attention.h"

#include <string.h>

const clattn__program_spec clattn__classic_program = {{"attention/classic.cl", NULL}, NULL};

clattn_classic_params clattn_classic_params_default(void)
{
    clattn_classic_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* Checks q [B, N, Dq], k [B, M, Dk], v [B, M, Dv], out [B, N, Dv] and the
 * optional weights [B, N, M] and kv_len; fills a one-head problem. */
static clattn_status check_common(clattn_ctx *ctx, const char *fn, const clattn_tensor *q,
                                  const clattn_tensor *k, const clattn_tensor *v,
                                  const clattn_tensor *out, const clattn_classic_params *p,
                                  clattn__sdpa_problem *pr)
{
    /* One head; q's width is the projection's input, not k's. The head
     * sizes are not limited: past the attention kernels' sizes the scores
     * are computed by GEMM (clattn_general_attention). */
    static const clattn__qkv_rules CLASSIC_QKV = {3, false, 0};
    memset(pr, 0, sizeof *pr);
    clattn_status st = clattn__qkv_check(ctx, fn, q, k, v, out, &CLASSIC_QKV, pr);
    if (st != CLATTN_OK)
        return st;
    /* q is read by the projections only; general attention points pr->q
     * at its projected queries. */
    pr->q = NULL;
    pr->scale = 1.0f;
    pr->wl = pr->wr = -1;
    if (p && p->weights) {
        const int64_t *w = p->weights->shape;
        char sw[96];
        if (p->weights->ndim != 3 || w[0] != pr->B || w[1] != pr->N || w[2] != pr->M)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: weights %s must be [B, N, M] = [%d, %d, %d]", fn,
                                clattn__shape_str(w, p->weights->ndim, sw, sizeof sw), pr->B,
                                pr->N, pr->M);
        pr->weights = p->weights->mem;
    }
    if (p && p->kv_len) {
        for (int b = 0; b < pr->B; b++)
            if (p->kv_len[b] < 0 || p->kv_len[b] > pr->M)
                return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                    "%s: kv_len[%d] = %d is outside 0..M (M = %d)", fn, b,
                                    p->kv_len[b], pr->M);
    }
    return clattn__sdpa_aux_buffers(ctx, p ? p->kv_len : NULL, NULL, pr);
}

/* w [out_dim, in_dim] as PyTorch stores Linear weights. */
static bool is_matrix(const clattn_tensor *w, int64_t rows, int64_t cols)
{
    return w && w->ndim == 2 && w->shape[0] == rows && w->shape[1] == cols;
}

/* scores [B, N, M] -> softmax with kv_len masking -> out = P V. */
static clattn_status softmax_and_values(clattn_ctx *ctx, cl_mem scores,
                                        const clattn__sdpa_problem *pr)
{
    /* The softmax kernel does not depend on the head size; the prebuilt
     * D = 64 specialisation (with kv_len if needed) serves every problem. */
    clattn_status st = clattn__sdpa_softmax_any(ctx, scores, pr);
    size_t n = (size_t)pr->N, m = (size_t)pr->M, dv = (size_t)pr->Dv;
    if (st == CLATTN_OK)
        st = clattn__gemm_batched(ctx, false, false, n, dv, m, 1.0f, scores, 0, m, n * m, pr->v,
                                  0, dv, m * dv, 0.0f, pr->out, 0, dv, n * dv, (size_t)pr->B);
    return st;
}

/* The score buffer: the caller's weights tensor, else scratch. */
static clattn_status score_buffer(clattn_ctx *ctx, const clattn__sdpa_problem *pr, cl_mem *s)
{
    if (pr->weights) {
        *s = pr->weights;
        return CLATTN_OK;
    }
    return clattn__scratch(ctx, CLATTN_SCRATCH_SCORES,
                           (size_t)pr->B * (size_t)pr->N * (size_t)pr->M * sizeof(float),
                           "attention scores [B, N, M]", s);
}

clattn_status clattn_additive_attention(clattn_ctx *ctx, const clattn_tensor *q,
                                        const clattn_tensor *k, const clattn_tensor *v,
                                        const clattn_tensor *w_q, const clattn_tensor *w_k,
                                        const clattn_tensor *w, clattn_tensor *out,
                                        const clattn_classic_params *p)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "additive_attention: ctx is NULL");
    clattn__sdpa_problem pr;
    clattn_status st = check_common(ctx, "additive_attention", q, k, v, out, p, &pr);
    if (st != CLATTN_OK)
        return st;
    int64_t a = w ? w->shape[0] : 0, dq = q->shape[2], dk = k->shape[2];
    if (!w || w->ndim != 1 || !is_matrix(w_q, a, dq) || !is_matrix(w_k, a, dk)) {
        char s1[64] = "NULL", s2[64] = "NULL", s3[64] = "NULL";
        if (w_q)
            clattn__shape_str(w_q->shape, w_q->ndim, s1, sizeof s1);
        if (w_k)
            clattn__shape_str(w_k->shape, w_k->ndim, s2, sizeof s2);
        if (w)
            clattn__shape_str(w->shape, w->ndim, s3, sizeof s3);
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "additive_attention: w_q %s must be [A, Dq], w_k %s [A, Dk] and "
                            "w %s [A] (Dq = %lld, Dk = %lld)",
                            s1, s2, s3, (long long)dq, (long long)dk);
    }
    size_t bn = (size_t)pr.B * (size_t)pr.N, bm = (size_t)pr.B * (size_t)pr.M;
    cl_mem qp, kp, scores;
    st = clattn__scratch(ctx, CLATTN_SCRATCH_PROJ_Q, bn * (size_t)a * sizeof(float),
                         "projected queries [B, N, A]", &qp);
    if (st == CLATTN_OK)
        st = clattn__scratch(ctx, CLATTN_SCRATCH_PROJ_K, bm * (size_t)a * sizeof(float),
                             "projected keys [B, M, A]", &kp);
    if (st == CLATTN_OK)
        st = score_buffer(ctx, &pr, &scores);
    if (st == CLATTN_OK) /* qp = q W_q^T, kp = k W_k^T */
        st = clattn__gemm(ctx, false, true, bn, (size_t)a, (size_t)dq, 1.0f, q->mem, 0,
                          (size_t)dq, w_q->mem, 0, (size_t)dq, 0.0f, qp, 0, (size_t)a);
    if (st == CLATTN_OK)
        st = clattn__gemm(ctx, false, true, bm, (size_t)a, (size_t)dk, 1.0f, k->mem, 0,
                          (size_t)dk, w_k->mem, 0, (size_t)dk, 0.0f, kp, 0, (size_t)a);
    static const clattn__kernel_spec SCORES = {&clattn__classic_program, "additive_scores"};
    cl_kernel kern;
    cl_int n = pr.N, m = pr.M, aa = (cl_int)a;
    if (st == CLATTN_OK)
        st = clattn__kernel(ctx, &SCORES, &kern);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, kern, "additive_scores", CLATTN_KARG(qp), CLATTN_KARG(kp),
                             CLATTN_KARG(w->mem), CLATTN_KARG(scores), CLATTN_KARG(n),
                             CLATTN_KARG(m), CLATTN_KARG(aa));
    if (st != CLATTN_OK)
        return st;
    size_t global[3] = {(size_t)pr.M, (size_t)pr.N, (size_t)pr.B};
    st = clattn__enqueue(ctx, kern, 3, global, NULL, "additive_scores");
    return st == CLATTN_OK ? softmax_and_values(ctx, scores, &pr) : st;
}

clattn_status clattn_general_attention(clattn_ctx *ctx, const clattn_tensor *q,
                                       const clattn_tensor *k, const clattn_tensor *v,
                                       const clattn_tensor *w, clattn_tensor *out,
                                       const clattn_classic_params *p)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "general_attention: ctx is NULL");
    clattn__sdpa_problem pr;
    clattn_status st = check_common(ctx, "general_attention", q, k, v, out, p, &pr);
    if (st != CLATTN_OK)
        return st;
    int64_t dq = q->shape[2], dk = k->shape[2];
    if (!is_matrix(w, dq, dk)) {
        char s1[64] = "NULL";
        if (w)
            clattn__shape_str(w->shape, w->ndim, s1, sizeof s1);
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "general_attention: w %s must be [Dq, Dk] = [%lld, %lld]", s1,
                            (long long)dq, (long long)dk);
    }
    /* qw = q W: [B*N, Dq] x [Dq, Dk]; then dot-product attention, scale 1. */
    size_t bn = (size_t)pr.B * (size_t)pr.N;
    st = clattn__scratch(ctx, CLATTN_SCRATCH_PROJ_Q, bn * (size_t)dk * sizeof(float),
                         "projected queries [B, N, Dk]", &pr.q);
    if (st == CLATTN_OK)
        st = clattn__gemm(ctx, false, false, bn, (size_t)dk, (size_t)dq, 1.0f, q->mem, 0,
                          (size_t)dq, w->mem, 0, (size_t)dk, 0.0f, pr.q, 0, (size_t)dk);
    if (st != CLATTN_OK)
        return st;
    if (pr.D <= 256 && pr.Dv <= 256)
        return clattn__sdpa_run(ctx, &pr, false, CLATTN_SDPA_AUTO);
    /* Head sizes beyond the attention kernels: scores by GEMM instead. */
    cl_mem scores;
    st = score_buffer(ctx, &pr, &scores);
    if (st == CLATTN_OK)
        st = clattn__gemm_batched(ctx, false, true, (size_t)pr.N, (size_t)pr.M, (size_t)dk, 1.0f,
                                  pr.q, 0, (size_t)dk, (size_t)pr.N * (size_t)dk, pr.k, 0,
                                  (size_t)dk, (size_t)pr.M * (size_t)dk, 0.0f, scores, 0,
                                  (size_t)pr.M, (size_t)pr.N * (size_t)pr.M, (size_t)pr.B);
    return st == CLATTN_OK ? softmax_and_values(ctx, scores, &pr) : st;
}
