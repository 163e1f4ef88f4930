/* model.c - clattn_lm_load: a decoder's weights from its folder to the
 * device, in the file's precision. Every tensor's presence, dtype and
 * shape is checked against the config before it is uploaded; matrices
 * that one product reads together (q, k, v; gate, up) are stored as one
 * fused matrix, rows in order, so a decode step reads them in one pass. */
#include "io/io.h"
#include "lm/lm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct loader {
    clattn_ctx *ctx;
    const char *dir;
    clattn__lm_files files;
    clattn_lm *lm;
    const char *prefix;   /* GPT-2: "transformer." or "" (the original files) */
} loader;

/* The index of the first element of t that is NaN or +-Inf (all exponent
 * bits set, read from the raw bits of F32, F16 or BF16), or -1. */
static int64_t first_nonfinite(const clattn_weight_info *t)
{
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->numel; i++) {
        if (t->dtype == CLATTN_DTYPE_F32) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            if ((u & 0x7f800000u) == 0x7f800000u)
                return (int64_t)i;
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint16_t mask = t->dtype == CLATTN_DTYPE_F16 ? 0x7c00u : 0x7f80u;
            if ((h & mask) == mask)
                return (int64_t)i;
        }
    }
    return -1;
}

/* The tensor called name with shape [d0] (d1 < 0) or [d0, d1]; a missing
 * tensor or another shape is CLATTN_ERR_FORMAT naming both. */
static clattn_status need(loader *L, const char *name, int64_t d0, int64_t d1,
                          const clattn_weight_info **out)
{
    const clattn_weight_info *t = clattn__lm_files_find(&L->files, name);
    if (!t)
        return clattn__fail(L->ctx, CLATTN_ERR_FORMAT,
                            "%s: the weights have no tensor '%s' (config.json's %s model "
                            "needs it)",
                            L->dir, name, L->lm->cfg.architecture);
    int32_t nd = d1 < 0 ? 1 : 2;
    int64_t want[2] = {d0, d1};
    if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        char got[96], exp[96];
        return clattn__fail(L->ctx, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s' has shape %s; config.json gives %s", L->dir, name,
                            clattn__shape_str(t->shape, t->ndim, got, sizeof got),
                            clattn__shape_str(want, nd, exp, sizeof exp));
    }
    if (t->dtype != CLATTN_DTYPE_F32 && t->dtype != CLATTN_DTYPE_F16 &&
        t->dtype != CLATTN_DTYPE_BF16)
        return clattn__fail(L->ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: tensor '%s' is %s; clattn reads F32, F16 and BF16 weights",
                            L->dir, name, clattn_dtype_name(t->dtype));
    /* A NaN or infinity in a weight would come out as NaN logits passed
     * off as a result: refused, as the other model loaders do. */
    int64_t bad = first_nonfinite(t);
    if (bad >= 0)
        return clattn__fail(L->ctx, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s' holds a NaN or infinity at flat index %lld", L->dir,
                            name, (long long)bad);
    *out = t;
    return CLATTN_OK;
}

/* Several 1-D tensors concatenated into one float32 device buffer (the
 * fused q/k/v biases). */
static clattn_status upload_vectors(loader *L, int n, const char *const *names,
                                    const int64_t *sizes, cl_mem *out)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += sizes[i];
    float *host = malloc((size_t)total * sizeof(float));
    if (!host)
        return clattn__fail(L->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_status st = CLATTN_OK;
    int64_t at = 0;
    for (int i = 0; i < n && st == CLATTN_OK; i++) {
        const clattn_weight_info *t = NULL;
        st = need(L, names[i], sizes[i], -1, &t);
        if (st == CLATTN_OK)
            clattn__dtype_to_f32(t->dtype, t->data, (size_t)sizes[i], host + at);
        at += sizes[i];
    }
    if (st == CLATTN_OK)
        st = clattn__buffer_create(L->ctx, (size_t)total * sizeof(float), names[0], out);
    if (st == CLATTN_OK) {
        cl_int err = clEnqueueWriteBuffer(L->ctx->queue, *out, CL_TRUE, 0,
                                          (size_t)total * sizeof(float), host, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            st = clattn__fail_cl(L->ctx, err, names[0]);
        L->lm->device_bytes += (uint64_t)total * sizeof(float);
    }
    free(host);
    return st;
}

/* A 1-D tensor (norm weight, bias) as a float32 device buffer. */
static clattn_status upload_vector(loader *L, const char *name, int64_t n, cl_mem *out)
{
    const char *names[1] = {name};
    return upload_vectors(L, 1, names, &n, out);
}

/* Matrices names[0 .. n) of [rows[i], cols] stacked by rows into one
 * device matrix in their common dtype (conv1d: each is stored
 * [cols, rows[i]], GPT-2's Conv1D, and n must be 1). */
static clattn_status upload_matrix(loader *L, int n, const char *const *names,
                                   const int64_t *rows, int64_t cols, bool conv1d,
                                   clattn__lm_matrix *m)
{
    const clattn_weight_info *parts[4];
    int64_t total = 0;
    clattn_status st = CLATTN_OK;
    for (int i = 0; i < n && st == CLATTN_OK; i++) {
        st = conv1d ? need(L, names[i], cols, rows[i], &parts[i])
                    : need(L, names[i], rows[i], cols, &parts[i]);
        total += rows[i];
        if (st == CLATTN_OK && parts[i]->dtype != parts[0]->dtype)
            st = clattn__fail(L->ctx, CLATTN_ERR_UNSUPPORTED,
                              "%s: tensors '%s' (%s) and '%s' (%s) are read as one matrix and "
                              "must have one dtype",
                              L->dir, names[0], clattn_dtype_name(parts[0]->dtype), names[i],
                              clattn_dtype_name(parts[i]->dtype));
    }
    if (st != CLATTN_OK)
        return st;
    const void *bytes = parts[0]->data;
    unsigned char *joined = NULL;
    if (n > 1) {
        size_t esize = (size_t)clattn_dtype_bits(parts[0]->dtype) / 8;
        joined = malloc((size_t)total * (size_t)cols * esize);
        if (!joined)
            return clattn__fail(L->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            memcpy(joined + at, parts[i]->data, parts[i]->nbytes);
            at += parts[i]->nbytes;
        }
        bytes = joined;
    }
    st = clattn__lm_matrix_upload(L->ctx, bytes, parts[0]->dtype, total, cols, conv1d, names[0],
                                  m);
    free(joined);
    if (st == CLATTN_OK)
        L->lm->device_bytes += clattn__lm_matrix_bytes(m);
    return st;
}

static clattn_status load_llama_layer(loader *L, int32_t l, clattn__lm_layer *y)
{
    const clattn__lm_config *c = &L->lm->cfg;
    const int64_t E = c->hidden, I = c->intermediate;
    const int64_t qd = (int64_t)c->heads * c->head_dim, kd = (int64_t)c->kv_heads * c->head_dim;
    char n[8][160];
#define NAME(i, fmt) snprintf(n[i], sizeof n[i], "model.layers.%d." fmt, l)
    NAME(0, "input_layernorm.weight");
    NAME(1, "post_attention_layernorm.weight");
    clattn_status st = upload_vector(L, n[0], E, &y->norm1_w);
    if (st == CLATTN_OK)
        st = upload_vector(L, n[1], E, &y->norm2_w);
    NAME(0, "self_attn.q_proj.weight");
    NAME(1, "self_attn.k_proj.weight");
    NAME(2, "self_attn.v_proj.weight");
    NAME(3, "self_attn.o_proj.weight");
    const char *qkv[3] = {n[0], n[1], n[2]};
    int64_t qkv_rows[3] = {qd, kd, kd};
    if (st == CLATTN_OK)
        st = upload_matrix(L, 3, qkv, qkv_rows, E, false, &y->qkv);
    const char *o[1] = {n[3]};
    if (st == CLATTN_OK)
        st = upload_matrix(L, 1, o, &E, qd, false, &y->o);
    if (st == CLATTN_OK && c->qkv_bias) {
        NAME(0, "self_attn.q_proj.bias");
        NAME(1, "self_attn.k_proj.bias");
        NAME(2, "self_attn.v_proj.bias");
        st = upload_vectors(L, 3, qkv, qkv_rows, &y->qkv_b);
    }
    if (st == CLATTN_OK && c->o_bias) {
        NAME(3, "self_attn.o_proj.bias");
        st = upload_vector(L, n[3], E, &y->o_b);
    }
    NAME(4, "mlp.gate_proj.weight");
    NAME(5, "mlp.up_proj.weight");
    NAME(6, "mlp.down_proj.weight");
    const char *gu[2] = {n[4], n[5]}, *down[1] = {n[6]};
    int64_t gu_rows[2] = {I, I};
    if (st == CLATTN_OK)
        st = upload_matrix(L, 2, gu, gu_rows, E, false, &y->gate_up);
    if (st == CLATTN_OK)
        st = upload_matrix(L, 1, down, &E, I, false, &y->down);
    if (st == CLATTN_OK && c->mlp_bias) {
        NAME(4, "mlp.gate_proj.bias");
        NAME(5, "mlp.up_proj.bias");
        NAME(6, "mlp.down_proj.bias");
        st = upload_vectors(L, 2, gu, gu_rows, &y->gate_up_b);
        if (st == CLATTN_OK)
            st = upload_vector(L, n[6], E, &y->down_b);
    }
#undef NAME
    return st;
}

static clattn_status load_gpt2_layer(loader *L, int32_t l, clattn__lm_layer *y)
{
    const clattn__lm_config *c = &L->lm->cfg;
    const int64_t E = c->hidden, I = c->intermediate, E3 = 3 * E;
    char n[160];
    clattn_status st = CLATTN_OK;
    const char *one[1] = {n};
#define LOAD_VEC(fmt, len, dst)                                                                \
    if (st == CLATTN_OK) {                                                                     \
        snprintf(n, sizeof n, "%sh.%d." fmt, L->prefix, l);                                    \
        st = upload_vector(L, n, (len), (dst));                                                \
    }
#define LOAD_MAT(fmt, rows, cols, dst)                                                         \
    if (st == CLATTN_OK) {                                                                     \
        int64_t r_ = (rows);                                                                   \
        snprintf(n, sizeof n, "%sh.%d." fmt, L->prefix, l);                                    \
        st = upload_matrix(L, 1, one, &r_, (cols), true, (dst));                               \
    }
    LOAD_VEC("ln_1.weight", E, &y->norm1_w);
    LOAD_VEC("ln_1.bias", E, &y->norm1_b);
    LOAD_VEC("ln_2.weight", E, &y->norm2_w);
    LOAD_VEC("ln_2.bias", E, &y->norm2_b);
    /* Conv1D stores [in, out]: c_attn [E, 3E] holds q, k, v side by side,
     * which become rows 0..E, E..2E, 2E..3E once transposed. */
    LOAD_MAT("attn.c_attn.weight", E3, E, &y->qkv);
    LOAD_VEC("attn.c_attn.bias", E3, &y->qkv_b);
    LOAD_MAT("attn.c_proj.weight", E, E, &y->o);
    LOAD_VEC("attn.c_proj.bias", E, &y->o_b);
    LOAD_MAT("mlp.c_fc.weight", I, E, &y->gate_up);
    LOAD_VEC("mlp.c_fc.bias", I, &y->gate_up_b);
    LOAD_MAT("mlp.c_proj.weight", E, I, &y->down);
    LOAD_VEC("mlp.c_proj.bias", E, &y->down_b);
#undef LOAD_VEC
#undef LOAD_MAT
    return st;
}

static clattn_status load_embeddings(loader *L)
{
    clattn_lm *lm = L->lm;
    const clattn__lm_config *c = &lm->cfg;
    const int64_t V = c->vocab, E = c->hidden;
    clattn_status st;
    char n[160];
    const char *one[1] = {n};
    if (c->family == CLATTN_LM_GPT2) {
        /* The original GPT-2 files name tensors without "transformer.". */
        L->prefix = clattn__lm_files_find(&L->files, "transformer.wte.weight") ? "transformer."
                                                                              : "";
        snprintf(n, sizeof n, "%swte.weight", L->prefix);
        st = upload_matrix(L, 1, one, &V, E, false, &lm->embed);
        int64_t P = c->max_pos;
        snprintf(n, sizeof n, "%swpe.weight", L->prefix);
        if (st == CLATTN_OK)
            st = upload_matrix(L, 1, one, &P, E, false, &lm->pos_embed);
        snprintf(n, sizeof n, "%sln_f.weight", L->prefix);
        if (st == CLATTN_OK)
            st = upload_vector(L, n, E, &lm->final_w);
        snprintf(n, sizeof n, "%sln_f.bias", L->prefix);
        if (st == CLATTN_OK)
            st = upload_vector(L, n, E, &lm->final_b);
    } else {
        snprintf(n, sizeof n, "model.embed_tokens.weight");
        st = upload_matrix(L, 1, one, &V, E, false, &lm->embed);
        if (st == CLATTN_OK)
            st = upload_vector(L, "model.norm.weight", E, &lm->final_w);
    }
    lm->head = &lm->embed;
    if (st == CLATTN_OK && !c->tied) {
        snprintf(n, sizeof n, "lm_head.weight");
        st = upload_matrix(L, 1, one, &V, E, false, &lm->head_own);
        lm->head = &lm->head_own;
    }
    return st;
}

static clattn_status load_rope(loader *L)
{
    clattn_lm *lm = L->lm;
    if (lm->cfg.family != CLATTN_LM_LLAMA)
        return CLATTN_OK;
    size_t n = (size_t)lm->cfg.head_dim / 2;
    float *f = malloc(n * sizeof(float));
    if (!f)
        return clattn__fail(L->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn__lm_rope_inv_freq(&lm->cfg, f);
    clattn_status st = clattn__buffer_create(L->ctx, n * sizeof(float), "rope inv_freq",
                                             &lm->inv_freq);
    if (st == CLATTN_OK) {
        cl_int err = clEnqueueWriteBuffer(L->ctx->queue, lm->inv_freq, CL_TRUE, 0,
                                          n * sizeof(float), f, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            st = clattn__fail_cl(L->ctx, err, "rope inv_freq");
    }
    free(f);
    return st;
}

static clattn_status load_tokenizer(loader *L)
{
    char *path = clattn__aprintf("%s/tokenizer.json", L->dir);
    if (!path)
        return clattn__fail(L->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    struct stat sb;
    bool present = stat(path, &sb) == 0;
    free(path);
    if (!present)
        return CLATTN_OK;
    clattn_status st = clattn_tokenizer_load(L->dir, &L->lm->tokenizer);
    if (st != CLATTN_OK)
        return clattn__fail(L->ctx, st, "%s", clattn_last_error());
    return st;
}

clattn_status clattn_lm_load(clattn_ctx *ctx, const char *dir, clattn_lm **out)
{
    clattn__clear_thread_error();
    if (!ctx || !dir || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_load: ctx, dir and out must not be NULL");
    *out = NULL;
    clattn_lm *lm = calloc(1, sizeof *lm);
    if (!lm)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    lm->ctx = ctx;
    loader L;
    memset(&L, 0, sizeof L);
    L.ctx = ctx, L.dir = dir, L.lm = lm, L.prefix = "";
    clattn_status st = clattn__lm_config_read(ctx, dir, &lm->cfg);
    if (st == CLATTN_OK)
        st = clattn__lm_files_open(ctx, dir, &L.files);
    if (st == CLATTN_OK) {
        lm->layer = calloc((size_t)lm->cfg.layers, sizeof *lm->layer);
        if (!lm->layer)
            st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    if (st == CLATTN_OK)
        st = load_embeddings(&L);
    for (int32_t l = 0; st == CLATTN_OK && l < lm->cfg.layers; l++)
        st = lm->cfg.family == CLATTN_LM_GPT2 ? load_gpt2_layer(&L, l, &lm->layer[l])
                                              : load_llama_layer(&L, l, &lm->layer[l]);
    if (st == CLATTN_OK)
        st = load_rope(&L);
    if (st == CLATTN_OK)
        st = load_tokenizer(&L);
    if (st == CLATTN_OK) {
        lm->dtype = lm->embed.dtype;
        lm->file_bytes = clattn__lm_files_bytes(&L.files);
    }
    clattn__lm_files_close(&L.files);
    if (st != CLATTN_OK) {
        clattn_lm_destroy(lm);
        return st;
    }
    *out = lm;
    return CLATTN_OK;
}

void clattn__lm_release_mem(cl_mem *m)
{
    if (*m)
        clReleaseMemObject(*m);
    *m = NULL;
}

void clattn_lm_destroy(clattn_lm *lm)
{
    if (!lm)
        return;
    for (int32_t l = 0; lm->layer && l < lm->cfg.layers; l++) {
        clattn__lm_layer *y = &lm->layer[l];
        cl_mem *vecs[] = {&y->norm1_w, &y->norm1_b, &y->norm2_w,   &y->norm2_b,
                          &y->qkv_b,   &y->o_b,     &y->gate_up_b, &y->down_b};
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++)
            clattn__lm_release_mem(vecs[i]);
        clattn__lm_matrix_release(&y->qkv);
        clattn__lm_matrix_release(&y->o);
        clattn__lm_matrix_release(&y->gate_up);
        clattn__lm_matrix_release(&y->down);
    }
    free(lm->layer);
    clattn__lm_matrix_release(&lm->embed);
    clattn__lm_matrix_release(&lm->pos_embed);
    clattn__lm_matrix_release(&lm->head_own);
    clattn__lm_release_mem(&lm->final_w);
    clattn__lm_release_mem(&lm->final_b);
    clattn__lm_release_mem(&lm->inv_freq);
    clattn_tokenizer_destroy(lm->tokenizer);
    clattn__lm_config_free(&lm->cfg);
    free(lm);
}

clattn_status clattn_lm_get_info(const clattn_lm *lm, clattn_lm_info *info)
{
    if (!lm || !info)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "lm_get_info: NULL argument");
    const clattn__lm_config *c = &lm->cfg;
    memset(info, 0, sizeof *info);
    snprintf(info->architecture, sizeof info->architecture, "%s", c->architecture);
    snprintf(info->model_type, sizeof info->model_type, "%s", c->model_type);
    info->n_layers = c->layers;
    info->hidden = c->hidden;
    info->intermediate = c->intermediate;
    info->n_heads = c->heads;
    info->n_kv_heads = c->kv_heads;
    info->head_dim = c->head_dim;
    info->vocab_size = c->vocab;
    info->max_positions = c->max_pos;
    info->sliding_window = c->sliding_window;
    info->tied_embeddings = c->tied;
    info->dtype = lm->dtype;
    info->bos_id = c->bos_id;
    info->n_eos = c->n_eos;
    memcpy(info->eos_ids, c->eos_ids, sizeof info->eos_ids);
    info->file_bytes = lm->file_bytes;
    info->device_bytes = lm->device_bytes;
    return CLATTN_OK;
}

const clattn_tokenizer *clattn_lm_tokenizer(const clattn_lm *lm)
{
    return lm ? lm->tokenizer : NULL;
}
