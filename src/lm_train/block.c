/* block.c - one Llama decoder layer of clattn_llama: the forward, which
 * keeps what the backward needs, and the backward. The order of the steps
 * is LlamaDecoderLayer's (see the header's "Training: decoder language
 * models"); every step is a public op on views of the layer's buffers. */
#include "lm_train/lm_train.h"

#include <string.h>

/* The merge of [B, H, T, D] heads into [B, T, H D] token rows
 * (cl/modules/heads.cl). */
static const clattn__kernel_spec MERGE_HEADS = {&clattn__heads_program, "merge_heads"};

/* Each dropout mask's offset: mask c starts at element c * 2^40, so masks
 * of up to 2^40 elements never overlap. */
#define DROP_STRIDE ((uint64_t)1 << 40)

void clattn__llama_layer_release(clattn__llama_layer *L)
{
    clattn__buffer *bufs[] = {&L->x_in, &L->h1,     &L->qh,    &L->kh,   &L->vh,
                              &L->att,  &L->lse,    &L->merged, &L->x_mid, &L->h2,
                              &L->gate, &L->up,     &L->act};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        clattn__buffer_release(bufs[i]);
    L->saved = false;
}

/* out [B, T, H D] = in [B, H, T, D] with the heads merged. */
static clattn_status merge_heads(clattn_ctx *ctx, const clattn_tensor *in, clattn_tensor *out)
{
    const int64_t *s = in->shape;
    size_t global[3] = {(size_t)s[3], (size_t)s[2], (size_t)(s[0] * s[1])};
    cl_int ints[4] = {(cl_int)s[0], (cl_int)s[1], (cl_int)s[2], (cl_int)s[3]};
    return clattn__heads_kernel(ctx, &MERGE_HEADS, in->mem, out->mem, 4, ints, 3, global);
}

/* The sizes one layer call works with. */
typedef struct dims {
    int64_t B, T, E, F, Hq, Hkv, D;
} dims;

static dims dims_of(const clattn_llama *m, int64_t B, int64_t T)
{
    const clattn_llama_config *c = &m->cfg;
    dims d = {B, T, c->hidden_size, c->intermediate_size, c->num_attention_heads,
              c->num_key_value_heads, c->head_dim};
    return d;
}

/* A [B, T, cols] workspace view of buf. */
static clattn_status rows(clattn_ctx *ctx, clattn__buffer *buf, const dims *d, int64_t cols,
                          const char *what, clattn_tensor *view)
{
    int64_t shape[3] = {d->B, d->T, cols};
    return clattn__workspace(ctx, buf, 3, shape, what, view);
}

/* The [B, T, H, D] view rotary embeddings take of token rows t. */
static clattn_tensor as_heads(clattn_ctx *ctx, const clattn_tensor *t, const dims *d, int64_t H)
{
    int64_t shape[4] = {d->B, d->T, H, d->D};
    return clattn__tensor_view(ctx, t->mem, 4, shape);
}

static clattn_tensor view4(clattn_ctx *ctx, cl_mem mem, int64_t a, int64_t b, int64_t c,
                           int64_t e)
{
    int64_t shape[4] = {a, b, c, e};
    return clattn__tensor_view(ctx, mem, 4, shape);
}

/* y = x + dropout(x_branch W^T): the branch's output projection and its
 * residual add. Without dropout the GEMM adds into y (y = copy of x). */
static clattn_status project_residual(clattn_llama *m, const clattn_tensor *x,
                                      const clattn_tensor *in, const clattn_tensor *w,
                                      const dims *d, bool drop, uint64_t offset,
                                      clattn_tensor *y)
{
    clattn_ctx *ctx = m->ctx;
    if (!drop) {
        clattn_status st = x->mem == y->mem ? CLATTN_OK : clattn_tensor_copy(x, y);
        return st == CLATTN_OK ? clattn__linear_acc(ctx, in, w, NULL, y) : st;
    }
    clattn_tensor branch;
    clattn_status st = rows(ctx, &m->branch, d, d->E, "branch output [B, T, E]", &branch);
    if (st == CLATTN_OK)
        st = clattn_linear(ctx, in, w, NULL, CLATTN_ACT_NONE, &branch);
    if (st == CLATTN_OK)
        st = clattn_dropout(ctx, &branch, m->cfg.dropout, m->cfg.dropout_seed, offset, &branch);
    return st == CLATTN_OK ? clattn_add(ctx, x, &branch, y) : st;
}

/* q or k: token rows = h W^T, rotated in place (positions 0 .. T-1), then
 * split into heads [B, H, T, D] in heads_buf. */
static clattn_status project_heads(clattn_llama *m, const clattn_tensor *h,
                                   const clattn_tensor *w, clattn__buffer *rows_buf, int64_t H,
                                   bool rotate, const dims *d, clattn__buffer *heads_buf,
                                   clattn_tensor *heads)
{
    clattn_ctx *ctx = m->ctx;
    clattn_tensor r;
    clattn_status st = rows(ctx, rows_buf, d, H * d->D, "projection rows [B, T, H D]", &r);
    if (st == CLATTN_OK)
        st = clattn_linear(ctx, h, w, NULL, CLATTN_ACT_NONE, &r);
    if (st == CLATTN_OK && rotate) {
        clattn_tensor r4 = as_heads(ctx, &r, d, H);
        st = clattn_rotary(ctx, &r4, NULL, &m->cfg.rope, &r4);
    }
    if (st == CLATTN_OK)
        st = clattn__split_heads(ctx, &r, 0, H * d->D, d->B, H, d->T, d->D, 0, NULL, heads_buf,
                                 heads);
    return st;
}

clattn_status clattn__llama_block_forward(clattn_llama *m, int32_t l, const clattn_tensor *x,
                                          bool train, clattn_tensor *y)
{
    clattn_ctx *ctx = m->ctx;
    clattn__llama_layer *L = &m->layers[l];
    dims d = dims_of(m, x->shape[0], x->shape[1]);
    float eps = m->cfg.rms_norm_eps;
    L->saved = false;
    clattn_tensor x_in, h1, qh, kh, vh, att, merged, x_mid, h2, gate, up, act;
    clattn_status st = rows(ctx, &L->x_in, &d, d.E, "layer input [B, T, E]", &x_in);
    if (st == CLATTN_OK)
        st = clattn_tensor_copy(x, &x_in);
    if (st == CLATTN_OK)
        st = rows(ctx, &L->h1, &d, d.E, "normalised input [B, T, E]", &h1);
    if (st == CLATTN_OK)
        st = clattn_rms_norm(ctx, &x_in, L->in_norm, eps, &h1);
    /* Attention: q, k rotated; v as projected. */
    if (st == CLATTN_OK)
        st = project_heads(m, &h1, L->wq, &m->rows_q, d.Hq, true, &d, &L->qh, &qh);
    if (st == CLATTN_OK)
        st = project_heads(m, &h1, L->wk, &m->rows_k, d.Hkv, true, &d, &L->kh, &kh);
    if (st == CLATTN_OK)
        st = project_heads(m, &h1, L->wv, &m->rows_v, d.Hkv, false, &d, &L->vh, &vh);
    int64_t att_shape[4] = {d.B, d.Hq, d.T, d.D}, lse_shape[3] = {d.B, d.Hq, d.T};
    clattn_tensor lse;
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &L->att, 4, att_shape, "attention output [B, Hq, T, D]",
                               &att);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &L->lse, 3, lse_shape, "attention lse [B, Hq, T]", &lse);
    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.causal = true;
    p.lse = &lse;
    if (st == CLATTN_OK)
        st = clattn_sdpa(ctx, &qh, &kh, &vh, &att, &p);
    if (st == CLATTN_OK)
        st = rows(ctx, &L->merged, &d, d.Hq * d.D, "merged heads [B, T, Hq D]", &merged);
    if (st == CLATTN_OK)
        st = merge_heads(ctx, &att, &merged);
    bool drop = train && m->cfg.dropout > 0;
    L->dropped = drop;
    if (drop) {
        L->drop_offset[0] = m->drop_count++ * DROP_STRIDE;
        L->drop_offset[1] = m->drop_count++ * DROP_STRIDE;
    }
    if (st == CLATTN_OK)
        st = rows(ctx, &L->x_mid, &d, d.E, "residual after attention [B, T, E]", &x_mid);
    if (st == CLATTN_OK)
        st = project_residual(m, &x_in, &merged, L->wo, &d, drop, L->drop_offset[0], &x_mid);
    /* The MLP. */
    if (st == CLATTN_OK)
        st = rows(ctx, &L->h2, &d, d.E, "normalised residual [B, T, E]", &h2);
    if (st == CLATTN_OK)
        st = clattn_rms_norm(ctx, &x_mid, L->post_norm, eps, &h2);
    if (st == CLATTN_OK)
        st = rows(ctx, &L->gate, &d, d.F, "gate projection [B, T, F]", &gate);
    if (st == CLATTN_OK)
        st = rows(ctx, &L->up, &d, d.F, "up projection [B, T, F]", &up);
    if (st == CLATTN_OK)
        st = rows(ctx, &L->act, &d, d.F, "SwiGLU output [B, T, F]", &act);
    if (st == CLATTN_OK)
        st = clattn_linear(ctx, &h2, L->wgate, NULL, CLATTN_ACT_NONE, &gate);
    if (st == CLATTN_OK)
        st = clattn_linear(ctx, &h2, L->wup, NULL, CLATTN_ACT_NONE, &up);
    if (st == CLATTN_OK)
        st = clattn_swiglu(ctx, &gate, &up, &act);
    if (st == CLATTN_OK)
        st = project_residual(m, &x_mid, &act, L->wdown, &d, drop, L->drop_offset[1], y);
    if (st != CLATTN_OK)
        return st;
    L->B = (int32_t)d.B;
    L->T = (int32_t)d.T;
    L->saved = train;
    return CLATTN_OK;
}

/* dx (+)= dy W: the input gradient of one more projection of the same
 * input, accumulated by the GEMM (beta = 1).
 *   dy: [R, out]   w: [out, in]   dx: [R, in] */
static clattn_status add_input_grad(clattn_ctx *ctx, const clattn_tensor *dy,
                                    const clattn_tensor *w, clattn_tensor *dx)
{
    size_t out = (size_t)w->shape[0], in = (size_t)w->shape[1];
    size_t R = clattn_tensor_numel(dy) / out;
    return clattn__gemm(ctx, false, false, R, in, out, 1.0f, dy->mem, 0, out, w->mem, 0, in,
                        1.0f, dx->mem, 0, in);
}

/* The gradient tensor of parameter w (allocated on first use). */
static clattn_tensor *grad_of(clattn_llama *m, const clattn_tensor *w, clattn_status *st)
{
    return clattn__params_grad(m->ctx, &m->params, w, st);
}

/* Backward through x_out = x + dropout(in W^T) for the branch: dx holds
 * d x_out on entry (the residual passes it on unchanged); d_in [R, in]
 * gets the branch input's gradient, W's gradient is added to. */
static clattn_status branch_backward(clattn_llama *m, clattn_tensor *dx, const clattn_tensor *in,
                                     const clattn_tensor *w, const dims *d, bool dropped,
                                     uint64_t offset, clattn_tensor *d_in)
{
    clattn_ctx *ctx = m->ctx;
    clattn_status st = CLATTN_OK;
    const clattn_tensor *d_branch = dx;
    clattn_tensor masked;
    if (dropped) {
        st = rows(ctx, &m->d_branch, d, d->E, "branch gradient [B, T, E]", &masked);
        if (st == CLATTN_OK)
            st = clattn_dropout_backward(ctx, dx, m->cfg.dropout, m->cfg.dropout_seed, offset,
                                         &masked);
        d_branch = &masked;
    }
    clattn_tensor *gw = grad_of(m, w, &st);
    return st == CLATTN_OK ? clattn_linear_backward(ctx, in, w, d_branch, d_in, gw, NULL, true)
                           : st;
}

/* dx += RMSNorm's input gradient from d_h (the norm of x with weight w),
 * the weight's gradient added to. */
static clattn_status norm_backward(clattn_llama *m, const clattn_tensor *x,
                                   const clattn_tensor *w, const clattn_tensor *d_h,
                                   const dims *d, clattn_tensor *dx)
{
    clattn_ctx *ctx = m->ctx;
    clattn_tensor part;
    clattn_status st = rows(ctx, &m->d_h_part, d, d->E, "norm input gradient [B, T, E]", &part);
    clattn_tensor *gw = grad_of(m, w, &st);
    if (st == CLATTN_OK)
        st = clattn_rms_norm_backward(ctx, x, w, m->cfg.rms_norm_eps, d_h, &part, gw, true);
    return st == CLATTN_OK ? clattn_add(ctx, dx, &part, dx) : st;
}

/* The attention's backward from d_merged [B, T, Hq D] to d_h [B, T, E]
 * (the normalised input's gradient), the q/k/v weights' gradients added. */
static clattn_status attention_backward(clattn_llama *m, clattn__llama_layer *L, const dims *d,
                                        const clattn_tensor *d_merged, clattn_tensor *d_h)
{
    clattn_ctx *ctx = m->ctx;
    int64_t qd = d->Hq * d->D, kvd = d->Hkv * d->D;
    clattn_tensor qh = view4(ctx, L->qh.mem, d->B, d->Hq, d->T, d->D);
    clattn_tensor kh = view4(ctx, L->kh.mem, d->B, d->Hkv, d->T, d->D);
    clattn_tensor vh = view4(ctx, L->vh.mem, d->B, d->Hkv, d->T, d->D);
    clattn_tensor att = view4(ctx, L->att.mem, d->B, d->Hq, d->T, d->D);
    int64_t lse_shape[3] = {d->B, d->Hq, d->T};
    clattn_tensor lse = clattn__tensor_view(ctx, L->lse.mem, 3, lse_shape);
    clattn_tensor d_att, d_qh, d_kh, d_vh, d_q, d_k, d_v;
    clattn_status st = clattn__split_heads(ctx, d_merged, 0, qd, d->B, d->Hq, d->T, d->D, 0,
                                           NULL, &m->d_att, &d_att);
    int64_t q_shape[4] = {d->B, d->Hq, d->T, d->D}, kv_shape[4] = {d->B, d->Hkv, d->T, d->D};
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &m->d_qh, 4, q_shape, "dq heads [B, Hq, T, D]", &d_qh);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &m->d_kh, 4, kv_shape, "dk heads [B, Hkv, T, D]", &d_kh);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &m->d_vh, 4, kv_shape, "dv heads [B, Hkv, T, D]", &d_vh);
    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.causal = true;
    clattn_sdpa_grads g = {&d_qh, &d_kh, &d_vh, NULL};
    if (st == CLATTN_OK)
        st = clattn_sdpa_backward(ctx, &qh, &kh, &vh, &att, &lse, &d_att, &p, &g);
    if (st == CLATTN_OK)
        st = rows(ctx, &m->d_q, d, qd, "dq rows [B, T, Hq D]", &d_q);
    if (st == CLATTN_OK)
        st = rows(ctx, &m->d_k, d, kvd, "dk rows [B, T, Hkv D]", &d_k);
    if (st == CLATTN_OK)
        st = rows(ctx, &m->d_v, d, kvd, "dv rows [B, T, Hkv D]", &d_v);
    if (st == CLATTN_OK)
        st = merge_heads(ctx, &d_qh, &d_q);
    if (st == CLATTN_OK)
        st = merge_heads(ctx, &d_kh, &d_k);
    if (st == CLATTN_OK)
        st = merge_heads(ctx, &d_vh, &d_v);
    /* The rotation is undone on the gradients (clattn_rotary_backward). */
    clattn_tensor dq4 = as_heads(ctx, &d_q, d, d->Hq), dk4 = as_heads(ctx, &d_k, d, d->Hkv);
    if (st == CLATTN_OK)
        st = clattn_rotary_backward(ctx, &dq4, NULL, &m->cfg.rope, &dq4);
    if (st == CLATTN_OK)
        st = clattn_rotary_backward(ctx, &dk4, NULL, &m->cfg.rope, &dk4);
    int64_t h_shape[3] = {d->B, d->T, d->E};
    clattn_tensor h1 = clattn__tensor_view(ctx, L->h1.mem, 3, h_shape);
    clattn_tensor *gq = grad_of(m, L->wq, &st), *gk = grad_of(m, L->wk, &st);
    clattn_tensor *gv = grad_of(m, L->wv, &st);
    if (st == CLATTN_OK)
        st = clattn_linear_backward(ctx, &h1, L->wq, &d_q, d_h, gq, NULL, true);
    if (st == CLATTN_OK)
        st = clattn_linear_backward(ctx, &h1, L->wk, &d_k, NULL, gk, NULL, true);
    if (st == CLATTN_OK)
        st = add_input_grad(ctx, &d_k, L->wk, d_h);
    if (st == CLATTN_OK)
        st = clattn_linear_backward(ctx, &h1, L->wv, &d_v, NULL, gv, NULL, true);
    if (st == CLATTN_OK)
        st = add_input_grad(ctx, &d_v, L->wv, d_h);
    return st;
}

/* The MLP's backward from d_act [B, T, F] to d_h [B, T, E]. */
static clattn_status mlp_backward(clattn_llama *m, clattn__llama_layer *L, const dims *d,
                                  const clattn_tensor *d_act, clattn_tensor *d_h)
{
    clattn_ctx *ctx = m->ctx;
    int64_t f_shape[3] = {d->B, d->T, d->F}, h_shape[3] = {d->B, d->T, d->E};
    clattn_tensor gate = clattn__tensor_view(ctx, L->gate.mem, 3, f_shape);
    clattn_tensor up = clattn__tensor_view(ctx, L->up.mem, 3, f_shape);
    clattn_tensor h2 = clattn__tensor_view(ctx, L->h2.mem, 3, h_shape);
    clattn_tensor d_gate, d_up;
    clattn_status st = rows(ctx, &m->d_gate, d, d->F, "gate gradient [B, T, F]", &d_gate);
    if (st == CLATTN_OK)
        st = rows(ctx, &m->d_up, d, d->F, "up gradient [B, T, F]", &d_up);
    if (st == CLATTN_OK)
        st = clattn_swiglu_backward(ctx, &gate, &up, d_act, &d_gate, &d_up);
    clattn_tensor *gg = grad_of(m, L->wgate, &st), *gu = grad_of(m, L->wup, &st);
    if (st == CLATTN_OK)
        st = clattn_linear_backward(ctx, &h2, L->wgate, &d_gate, d_h, gg, NULL, true);
    if (st == CLATTN_OK)
        st = clattn_linear_backward(ctx, &h2, L->wup, &d_up, NULL, gu, NULL, true);
    if (st == CLATTN_OK)
        st = add_input_grad(ctx, &d_up, L->wup, d_h);
    return st;
}

clattn_status clattn__llama_block_backward(clattn_llama *m, int32_t l, const clattn_tensor *dy,
                                           clattn_tensor *dx)
{
    clattn_ctx *ctx = m->ctx;
    clattn__llama_layer *L = &m->layers[l];
    dims d = dims_of(m, L->B, L->T);
    int64_t e_shape[3] = {d.B, d.T, d.E}, f_shape[3] = {d.B, d.T, d.F};
    int64_t m_shape[3] = {d.B, d.T, d.Hq * d.D};
    clattn_tensor x_in = clattn__tensor_view(ctx, L->x_in.mem, 3, e_shape);
    clattn_tensor x_mid = clattn__tensor_view(ctx, L->x_mid.mem, 3, e_shape);
    clattn_tensor act = clattn__tensor_view(ctx, L->act.mem, 3, f_shape);
    clattn_tensor merged = clattn__tensor_view(ctx, L->merged.mem, 3, m_shape);
    /* dx carries the residual stream's gradient from here on. */
    clattn_status st = dx->mem == dy->mem ? CLATTN_OK : clattn_tensor_copy(dy, dx);
    clattn_tensor d_act, d_h, d_merged;
    if (st == CLATTN_OK)
        st = rows(ctx, &m->d_act, &d, d.F, "SwiGLU gradient [B, T, F]", &d_act);
    if (st == CLATTN_OK)
        st = rows(ctx, &m->d_h, &d, d.E, "normalised gradient [B, T, E]", &d_h);
    if (st == CLATTN_OK)
        st = branch_backward(m, dx, &act, L->wdown, &d, L->dropped, L->drop_offset[1], &d_act);
    if (st == CLATTN_OK)
        st = mlp_backward(m, L, &d, &d_act, &d_h);
    if (st == CLATTN_OK)
        st = norm_backward(m, &x_mid, L->post_norm, &d_h, &d, dx);
    /* dx is now the gradient of x_mid. */
    if (st == CLATTN_OK)
        st = rows(ctx, &m->d_merged, &d, d.Hq * d.D, "merged heads gradient [B, T, Hq D]",
                  &d_merged);
    if (st == CLATTN_OK)
        st = branch_backward(m, dx, &merged, L->wo, &d, L->dropped, L->drop_offset[0],
                             &d_merged);
    if (st == CLATTN_OK)
        st = attention_backward(m, L, &d, &d_merged, &d_h);
    if (st == CLATTN_OK)
        st = norm_backward(m, &x_in, L->in_norm, &d_h, &d, dx);
    return st;
}
