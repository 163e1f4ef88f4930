/* train_models.c - see train_models.h. Each model is a clattn_module (the
 * attention or the encoder) between small Linear layers the model owns;
 * the forward and backward are written out op by op with the public API. */
#include "train_models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 64

struct train_model {
    clattn_ctx *ctx;
    train_config cfg;
    clattn_module *body;            /* SELF_ATTENTION or ENCODER */
    /* Own Linear layers: head [1, width] + [1]; classifier's embed [d, 2] + [d]. */
    clattn_tensor *head_w, *head_b, *embed_w, *embed_b;
    clattn_tensor *head_gw, *head_gb, *embed_gw, *embed_gb;
    clattn_param_ref refs[MAX_PARAMS];
    char names[MAX_PARAMS][160];
    int32_t n_refs;
    /* Activations and gradients, sized for the batch:
     *   x       [B, L, in] (classifier: in = 2)
     *   e       [B, N, d]           classifier: embedded positions
     *   body    [B, L, hidden] / [B, N, d]
     *   pooled  [B, hidden]         regression: mean over L
     *   pred    [B, 1] / [B, N, 1]
     *   target  [B, 1]              regression
     * and d_* the gradients of the same shapes. */
    clattn_tensor *x, *e, *body_out, *pooled, *pred, *target;
    clattn_tensor *d_pred, *d_pooled, *d_body, *d_e;
};

train_config train_config_default(train_task task)
{
    train_config c;
    memset(&c, 0, sizeof c);
    c.task = task;
    c.batch = 32;
    if (task == TRAIN_REGRESSION) {
        c.seq_len = 8, c.in_dim = 10, c.hidden = 5;
    } else {
        c.seq_len = 10, c.in_dim = 2, c.d_model = 32, c.nhead = 4, c.dim_ff = 64;
        c.num_layers = 2;
    }
    return c;
}

/* Adds a parameter reference under name. */
static void add_ref(train_model *m, const char *name, clattn_tensor *value, clattn_tensor *grad)
{
    int32_t i = m->n_refs++;
    snprintf(m->names[i], sizeof m->names[i], "%s", name);
    m->refs[i] = (clattn_param_ref){m->names[i], value, grad};
}

static clattn_status tensor(clattn_ctx *ctx, int32_t ndim, int64_t d0, int64_t d1, int64_t d2,
                            clattn_tensor **out, clattn_status st)
{
    if (st != CLATTN_OK)
        return st;
    int64_t shape[3] = {d0, d1, d2};
    return clattn_tensor_create(ctx, ndim, shape, out);
}

/* A Linear layer's weight [out, in], bias [out] and their gradients,
 * registered as prefix.weight / prefix.bias. */
static clattn_status linear(train_model *m, const char *prefix, int64_t out, int64_t in,
                            clattn_tensor **w, clattn_tensor **b, clattn_tensor **gw,
                            clattn_tensor **gb, clattn_status st)
{
    st = tensor(m->ctx, 2, out, in, 0, w, st);
    st = tensor(m->ctx, 1, out, 0, 0, b, st);
    st = tensor(m->ctx, 2, out, in, 0, gw, st);
    st = tensor(m->ctx, 1, out, 0, 0, gb, st);
    if (st == CLATTN_OK) {
        char name[160];
        snprintf(name, sizeof name, "%s.weight", prefix);
        add_ref(m, name, *w, *gw);
        snprintf(name, sizeof name, "%s.bias", prefix);
        add_ref(m, name, *b, *gb);
    }
    return st;
}

clattn_status train_model_create(clattn_ctx *ctx, const train_config *cfg, train_model **out)
{
    *out = NULL;
    train_model *m = calloc(1, sizeof *m);
    if (!m)
        return CLATTN_ERR_OUT_OF_MEMORY;
    m->ctx = ctx;
    m->cfg = *cfg;
    bool reg = cfg->task == TRAIN_REGRESSION;
    int64_t B = cfg->batch, L = cfg->seq_len;
    int64_t width = reg ? cfg->hidden : cfg->d_model;
    clattn_module_config mc;
    if (reg) {
        mc = clattn_module_config_default(CLATTN_MODULE_SELF_ATTENTION);
        mc.d_model = cfg->in_dim;
        mc.attn_dim = cfg->hidden;
        mc.nhead = 1;
    } else {
        mc = clattn_module_config_default(CLATTN_MODULE_ENCODER);
        mc.d_model = cfg->d_model;
        mc.nhead = cfg->nhead;
        mc.dim_feedforward = cfg->dim_ff;
        mc.num_layers = cfg->num_layers;
        mc.final_norm = false;
    }
    clattn_status st = clattn_module_create(ctx, &mc, &m->body);
    if (st == CLATTN_OK && !reg)
        st = linear(m, "embed", width, cfg->in_dim, &m->embed_w, &m->embed_b, &m->embed_gw, &m->embed_gb,
                    st);
    if (st == CLATTN_OK) {
        /* The module's parameters under the model's prefix, in state_dict
         * order (embed, encoder/attn, head as PyTorch lists them). */
        int32_t n = clattn_module_param_refs(m->body, NULL, 0);
        clattn_param_ref *body = n > 0 ? calloc((size_t)n, sizeof *body) : NULL;
        if (n < 0 || n + m->n_refs + 2 > MAX_PARAMS || !body ||
            clattn_module_param_refs(m->body, body, n) != n) {
            st = CLATTN_ERR_OUT_OF_MEMORY;
        } else {
            char name[160];
            for (int32_t i = 0; i < n; i++) {
                snprintf(name, sizeof name, "%s.%s", reg ? "attn" : "encoder", body[i].name);
                add_ref(m, name, body[i].value, body[i].grad);
            }
        }
        free(body);
    }
    st = linear(m, "head", 1, width, &m->head_w, &m->head_b, &m->head_gw, &m->head_gb, st);
    st = tensor(ctx, 3, B, L, cfg->in_dim, &m->x, st);
    st = tensor(ctx, 3, B, L, width, &m->body_out, st);
    st = tensor(ctx, 3, B, L, width, &m->d_body, st);
    if (reg) {
        st = tensor(ctx, 2, B, width, 0, &m->pooled, st);
        st = tensor(ctx, 2, B, width, 0, &m->d_pooled, st);
        st = tensor(ctx, 2, B, 1, 0, &m->pred, st);
        st = tensor(ctx, 2, B, 1, 0, &m->d_pred, st);
        st = tensor(ctx, 2, B, 1, 0, &m->target, st);
    } else {
        st = tensor(ctx, 3, B, L, width, &m->e, st);
        st = tensor(ctx, 3, B, L, width, &m->d_e, st);
        st = tensor(ctx, 3, B, L, 1, &m->pred, st);
        st = tensor(ctx, 3, B, L, 1, &m->d_pred, st);
    }
    if (st != CLATTN_OK) {
        train_model_destroy(m);
        return st;
    }
    *out = m;
    return CLATTN_OK;
}

void train_model_destroy(train_model *m)
{
    if (!m)
        return;
    clattn_tensor *own[] = {m->head_w,  m->head_b,  m->embed_w,  m->embed_b,  m->head_gw,
                            m->head_gb, m->embed_gw, m->embed_gb, m->x,       m->e,
                            m->body_out, m->pooled, m->pred,     m->target,   m->d_pred,
                            m->d_pooled, m->d_body, m->d_e};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        clattn_tensor_destroy(own[i]);
    clattn_module_destroy(m->body);
    free(m);
}

int32_t train_model_params(train_model *m, const clattn_param_ref **refs)
{
    *refs = m->refs;
    return m->n_refs;
}

/* ---- initialisation ------------------------------------------------------- */

/* splitmix64: the data and the initial weights come from this one small
 * generator, seeded by the user. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

static double normal(uint64_t *s)
{
    double u = uniform01(s), v = uniform01(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

/* fan_in of the weight matching a bias name ("x.bias" -> "x.weight"). */
static int64_t fan_in_of(const train_model *m, const char *bias_name)
{
    char name[160];
    snprintf(name, sizeof name, "%.*sweight", (int)(strlen(bias_name) - 4), bias_name);
    for (int32_t i = 0; i < m->n_refs; i++) {
        if (strcmp(m->refs[i].name, name) != 0)
            continue;
        int64_t shape[4];
        return clattn_tensor_shape(m->refs[i].value, shape) == 2 ? shape[1] : 1;
    }
    return 1;
}

clattn_status train_model_init(train_model *m, uint64_t seed)
{
    uint64_t state = seed;
    clattn_status st = CLATTN_OK;
    for (int32_t i = 0; i < m->n_refs && st == CLATTN_OK; i++) {
        const char *name = m->refs[i].name;
        int64_t shape[4];
        int32_t nd = clattn_tensor_shape(m->refs[i].value, shape);
        size_t n = clattn_tensor_numel(m->refs[i].value);
        float *h = malloc(n * sizeof *h);
        if (!h)
            return CLATTN_ERR_OUT_OF_MEMORY;
        double bound = 0.0, fill = 0.0;
        if (strstr(name, "norm")) {
            fill = ends_with(name, ".weight") ? 1.0 : 0.0;
        } else if (ends_with(name, "in_proj_weight")) {
            bound = sqrt(6.0 / (double)(shape[0] + shape[1])); /* Xavier uniform */
        } else if (ends_with(name, "in_proj_bias") || ends_with(name, "out_proj.bias")) {
            fill = 0.0;
        } else if (ends_with(name, ".weight") && nd == 2) {
            bound = 1.0 / sqrt((double)shape[1]);
        } else if (ends_with(name, ".bias")) {
            bound = 1.0 / sqrt((double)fan_in_of(m, name));
        }
        for (size_t j = 0; j < n; j++)
            h[j] = bound > 0.0 ? (float)((2.0 * uniform01(&state) - 1.0) * bound) : (float)fill;
        st = clattn_tensor_write(m->refs[i].value, h);
        free(h);
    }
    return st;
}

void train_data_batch(const train_config *cfg, uint64_t *state, float *x, float *y_reg,
                      int64_t *y_cls)
{
    int32_t B = cfg->batch, L = cfg->seq_len;
    if (cfg->task == TRAIN_REGRESSION) {
        /* y = softmax over positions of 2 x[., 1] weighting x[., 0]: what
         * one attention head computes. */
        int32_t in = cfg->in_dim;
        for (int32_t b = 0; b < B; b++) {
            float *xb = x + (size_t)b * L * in;
            double mx = -INFINITY, z = 0.0, acc = 0.0;
            for (int32_t i = 0; i < L * in; i++)
                xb[i] = (float)normal(state);
            for (int32_t l = 0; l < L; l++)
                mx = fmax(mx, 2.0 * xb[l * in + 1]);
            for (int32_t l = 0; l < L; l++) {
                double w = exp(2.0 * xb[l * in + 1] - mx);
                z += w;
                acc += w * xb[l * in];
            }
            y_reg[b] = (float)(acc / z);
        }
        return;
    }
    /* Per position (value, is-query flag); the target is the position
     * 1 .. L-1 whose value is nearest the query's (position 0). */
    for (int32_t b = 0; b < B; b++) {
        float *xb = x + (size_t)b * L * 2;
        for (int32_t l = 0; l < L; l++) {
            xb[2 * l] = (float)uniform01(state);
            xb[2 * l + 1] = l == 0 ? 1.0f : 0.0f;
        }
        int32_t best = 1;
        for (int32_t l = 2; l < L; l++)
            if (fabsf(xb[2 * l] - xb[0]) < fabsf(xb[2 * best] - xb[0]))
                best = l;
        y_cls[b] = best;
    }
}

/* ---- forward and backward ------------------------------------------------- */

static clattn_status regression_batch(train_model *m, const float *y, bool train, float *loss)
{
    clattn_ctx *ctx = m->ctx;
    clattn_forward_args a = clattn_forward_args_default();
    a.query = m->x;
    clattn_status st = clattn_tensor_write(m->target, y);
    if (st == CLATTN_OK)
        st = train ? clattn_module_train_forward(m->body, &a, m->body_out)
                   : clattn_module_forward(m->body, &a, m->body_out);
    if (st == CLATTN_OK)
        st = clattn_sequence_mean(ctx, m->body_out, m->pooled);
    if (st == CLATTN_OK)
        st = clattn_linear(ctx, m->pooled, m->head_w, m->head_b, CLATTN_ACT_NONE, m->pred);
    if (st == CLATTN_OK)
        st = clattn_mse_loss(ctx, m->pred, m->target, loss, train ? m->d_pred : NULL);
    if (st != CLATTN_OK || !train)
        return st;
    st = clattn_linear_backward(ctx, m->pooled, m->head_w, m->d_pred, m->d_pooled, m->head_gw,
                                m->head_gb, true);
    if (st == CLATTN_OK)
        st = clattn_sequence_mean_backward(ctx, m->d_pooled, m->d_body);
    clattn_backward_args b = clattn_backward_args_default();
    b.dout = m->d_body;
    return st == CLATTN_OK ? clattn_module_backward(m->body, &b) : st;
}

static clattn_status classifier_batch(train_model *m, const int64_t *y, bool train, float *loss,
                                      int32_t *correct)
{
    clattn_ctx *ctx = m->ctx;
    int32_t B = m->cfg.batch, N = m->cfg.seq_len;
    int64_t s2[2] = {B, N};
    clattn_tensor *logits = NULL, *dlogits = NULL;
    clattn_status st = clattn_linear(ctx, m->x, m->embed_w, m->embed_b, CLATTN_ACT_NONE, m->e);
    clattn_forward_args a = clattn_forward_args_default();
    a.src = m->e;
    if (st == CLATTN_OK)
        st = train ? clattn_module_train_forward(m->body, &a, m->body_out)
                   : clattn_module_forward(m->body, &a, m->body_out);
    if (st == CLATTN_OK)
        st = clattn_linear(ctx, m->body_out, m->head_w, m->head_b, CLATTN_ACT_NONE, m->pred);
    /* [B, N, 1] logits seen as [B, N] rows of N classes. */
    if (st == CLATTN_OK)
        st = clattn_tensor_view(m->pred, 2, s2, &logits);
    if (st == CLATTN_OK)
        st = clattn_tensor_view(m->d_pred, 2, s2, &dlogits);
    if (st == CLATTN_OK)
        st = clattn_cross_entropy_loss(ctx, logits, y, -100, loss, train ? dlogits : NULL);
    if (st == CLATTN_OK && correct) {
        float *h = malloc((size_t)B * N * sizeof *h);
        st = h ? clattn_tensor_read(logits, h) : CLATTN_ERR_OUT_OF_MEMORY;
        *correct = 0;
        for (int32_t b = 0; st == CLATTN_OK && b < B; b++) {
            int32_t best = 0;
            for (int32_t i = 1; i < N; i++)
                if (h[b * N + i] > h[b * N + best])
                    best = i;
            *correct += best == y[b];
        }
        free(h);
    }
    clattn_tensor_destroy(logits);
    clattn_tensor_destroy(dlogits);
    if (st != CLATTN_OK || !train)
        return st;
    st = clattn_linear_backward(ctx, m->body_out, m->head_w, m->d_pred, m->d_body, m->head_gw,
                                m->head_gb, true);
    clattn_backward_args b = clattn_backward_args_default();
    b.dout = m->d_body;
    b.dsrc = m->d_e;
    if (st == CLATTN_OK)
        st = clattn_module_backward(m->body, &b);
    return st == CLATTN_OK ? clattn_linear_backward(ctx, m->x, m->embed_w, m->d_e, NULL,
                                                    m->embed_gw, m->embed_gb, true)
                           : st;
}

clattn_status train_model_batch(train_model *m, const float *x, const float *y_reg,
                                const int64_t *y_cls, bool train, float *loss, int32_t *correct)
{
    clattn_status st = clattn_tensor_write(m->x, x);
    if (st != CLATTN_OK)
        return st;
    if (m->cfg.task == TRAIN_REGRESSION) {
        if (correct)
            *correct = 0;
        return regression_batch(m, y_reg, train, loss);
    }
    return classifier_batch(m, y_cls, train, loss, correct);
}
