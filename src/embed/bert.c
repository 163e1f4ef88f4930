/* bert.c - sentence embeddings with BERT-family encoders: a Hugging Face
 * BERT folder (bert_config.c reads its settings) loaded onto the device,
 * and clattn_embedder_embed: tokenize, sort by length, run the encoder on
 * dynamically padded batches with the kernel's key padding, pool, and
 * normalise; and clattn_embedder_attention: one text's per-layer attention
 * probabilities through the unfused attention path.
 *
 *   x = LayerNorm(word[ids] + token_type[0] + position[0..N))
 *   per layer (post-norm, transformer.c's layer):
 *     x = LayerNorm(x + dense(attention(query(x), key(x), value(x))))
 *     x = LayerNorm(x + output(act(intermediate(x))))
 *   vector = pool(x over the text's tokens), optionally / |vector|. */
#include "embed/embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct clattn_embedder {
    clattn_ctx *ctx;
    clattn_tokenizer *tok;
    clattn__bert_config cfg;
    int32_t max_length;          /* default tokens per text */
    int64_t pad_id;
    clattn__param_set params;    /* BERT's names, without "bert." */
    clattn_tensor *word;         /* [vocab, E] */
    clattn_tensor *pos;          /* [max_pos, E] */
    clattn_tensor *type;         /* [type_vocab, E] */
    clattn__norm emb_norm;       /* [E] */
    clattn__layer *layers;       /* [layers] */
    int32_t n_layers;            /* initialised so far */
    clattn__buffer x, tmp;       /* [B, N, E] activations */
};

/* ---- construction -------------------------------------------------------- */

static clattn_tensor *param(clattn_embedder *e, const char *prefix, const char *name,
                            int32_t ndim, int64_t d0, int64_t d1, float init, clattn_status *st)
{
    char full[160];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[2] = {d0, d1};
    return clattn__params_add(e->ctx, &e->params, full, ndim, shape, init, st);
}

static clattn_status add_layer(clattn_embedder *e, int32_t i)
{
    static const clattn__attn_names names = {"self.query", "self.key", "self.value",
                                             "output.dense"};
    const clattn__bert_config *c = &e->cfg;
    clattn__layer *l = &e->layers[i];
    int64_t E = c->hidden, I = c->intermediate;
    char pre[96], attn[128];
    snprintf(pre, sizeof pre, "encoder.layer.%d.", i);
    snprintf(attn, sizeof attn, "%sattention.", pre);
    memset(l, 0, sizeof *l);
    l->eps = c->eps;
    l->act = c->act;
    l->d_model = E;
    l->dim_ff = I;
    e->n_layers = i + 1;
    clattn_status st = clattn__attn_proj_init(e->ctx, &e->params, attn, &names, E, E, E, E,
                                              c->heads, true, &l->self_attn);
    l->norm1.weight = param(e, attn, "output.LayerNorm.weight", 1, E, 0, 1.0f, &st);
    l->norm1.bias = param(e, attn, "output.LayerNorm.bias", 1, E, 0, 0.0f, &st);
    l->w1 = param(e, pre, "intermediate.dense.weight", 2, I, E, 0.0f, &st);
    l->b1 = param(e, pre, "intermediate.dense.bias", 1, I, 0, 0.0f, &st);
    l->w2 = param(e, pre, "output.dense.weight", 2, E, I, 0.0f, &st);
    l->b2 = param(e, pre, "output.dense.bias", 1, E, 0, 0.0f, &st);
    l->norm2.weight = param(e, pre, "output.LayerNorm.weight", 1, E, 0, 1.0f, &st);
    l->norm2.bias = param(e, pre, "output.LayerNorm.bias", 1, E, 0, 0.0f, &st);
    return st;
}

static clattn_status build(clattn_embedder *e)
{
    const clattn__bert_config *c = &e->cfg;
    int64_t E = c->hidden;
    clattn_status st = CLATTN_OK;
    e->word = param(e, "", "embeddings.word_embeddings.weight", 2, c->vocab, E, 0.0f, &st);
    e->pos = param(e, "", "embeddings.position_embeddings.weight", 2, c->max_pos, E, 0.0f, &st);
    e->type = param(e, "", "embeddings.token_type_embeddings.weight", 2, c->type_vocab, E, 0.0f,
                    &st);
    e->emb_norm.weight = param(e, "", "embeddings.LayerNorm.weight", 1, E, 0, 1.0f, &st);
    e->emb_norm.bias = param(e, "", "embeddings.LayerNorm.bias", 1, E, 0, 0.0f, &st);
    if (st != CLATTN_OK)
        return st;
    e->layers = calloc((size_t)c->layers, sizeof *e->layers);
    if (!e->layers)
        return clattn__fail(e->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int32_t i = 0; i < (int32_t)c->layers && st == CLATTN_OK; i++)
        st = add_layer(e, i);
    return st;
}

static clattn_status load_weights(clattn_embedder *e, const char *dir)
{
    char *path = clattn__aprintf("%s/model.safetensors", dir);
    if (!path)
        return clattn__fail(e->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_weights *w = NULL;
    clattn_status st = clattn_weights_open(path, &w);
    if (st != CLATTN_OK) {
        clattn__fail(e->ctx, st, "%s", clattn_last_error());
    } else {
        /* BertModel saves "embeddings.*"; BertFor*-style checkpoints "bert.*". */
        clattn_weight_info info;
        const char *prefix =
            clattn_weights_find(w, "bert.embeddings.word_embeddings.weight", &info) == CLATTN_OK
                ? "bert."
                : "";
        st = clattn__params_load(e->ctx, &e->params, w, prefix, false);
        /* Some of its messages name the file already. */
        if (st != CLATTN_OK && strncmp(clattn_ctx_last_error(e->ctx), path, strlen(path)) != 0)
            clattn__fail(e->ctx, st, "%s: %s", path, clattn_ctx_last_error(e->ctx));
    }
    clattn_weights_close(w);
    free(path);
    return st;
}

/* The embedder only runs inference and nothing writes its weights after
 * loading, so each linear weight is packed once for the CPU GEMM rather
 * than on every call (a no-op on other GEMM backends): 13% of a batch of
 * short texts. */
static clattn_status pack_weights(clattn_embedder *e)
{
    clattn_status st = CLATTN_OK;
    for (int32_t i = 0; i < e->n_layers && st == CLATTN_OK; i++) {
        clattn__layer *l = &e->layers[i];
        clattn_tensor *w[] = {l->self_attn.w_q, l->self_attn.w_k, l->self_attn.w_v,
                              l->self_attn.w_o, l->w1, l->w2};
        for (size_t j = 0; j < sizeof w / sizeof *w && st == CLATTN_OK; j++)
            st = clattn__gemm_cpu_pack_weight(e->ctx, w[j]);
    }
    return st;
}

void clattn_embedder_destroy(clattn_embedder *e)
{
    if (!e)
        return;
    for (int32_t i = 0; i < e->n_layers; i++)
        clattn__layer_release(&e->layers[i]);
    free(e->layers);
    clattn__params_free(&e->params);
    clattn__buffer_release(&e->x);
    clattn__buffer_release(&e->tmp);
    clattn_tokenizer_destroy(e->tok);
    free(e);
}

clattn_status clattn_embedder_load(clattn_ctx *ctx, const char *dir, clattn_embedder **out)
{
    clattn__clear_thread_error();
    if (out)
        *out = NULL;
    if (!ctx || !dir || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "embedder_load: NULL argument");
    clattn_embedder *e = calloc(1, sizeof *e);
    if (!e)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    e->ctx = ctx;
    clattn_status st = clattn__bert_read_config(ctx, dir, &e->cfg);
    if (st == CLATTN_OK && (st = clattn_tokenizer_load(dir, &e->tok)) != CLATTN_OK)
        clattn__fail(ctx, st, "%s", clattn_last_error());
    if (st == CLATTN_OK) {
        int32_t tv = clattn_tokenizer_vocab_size(e->tok);
        if (tv > e->cfg.vocab)
            st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                              "%s: the tokenizer has %d tokens but config.json's vocab_size is "
                              "%lld",
                              dir, tv, (long long)e->cfg.vocab);
        int32_t pad = clattn_tokenizer_token_id(e->tok, "[PAD]");
        e->pad_id = pad >= 0 ? pad : 0;
        int32_t tmax = clattn_tokenizer_max_length(e->tok);
        e->max_length = e->cfg.max_seq_length;
        if (e->max_length <= 0)
            e->max_length = (int32_t)(tmax > 0 && tmax < e->cfg.max_pos ? tmax : e->cfg.max_pos);
    }
    if (st == CLATTN_OK)
        st = build(e);
    if (st == CLATTN_OK)
        st = load_weights(e, dir);
    if (st == CLATTN_OK)
        st = pack_weights(e);
    if (st != CLATTN_OK) {
        clattn_embedder_destroy(e);
        return st;
    }
    *out = e;
    return CLATTN_OK;
}

int32_t clattn_embedder_dim(const clattn_embedder *e)
{
    return e ? (int32_t)e->cfg.hidden : 0;
}

const clattn_tokenizer *clattn_embedder_tokenizer(const clattn_embedder *e)
{
    return e ? e->tok : NULL;
}

void clattn_embedder_defaults(const clattn_embedder *e, clattn_pooling *pooling, bool *normalize,
                              int32_t *max_length)
{
    if (pooling)
        *pooling = e ? e->cfg.pooling : CLATTN_POOLING_MEAN;
    if (normalize)
        *normalize = e ? e->cfg.normalize : false;
    if (max_length)
        *max_length = e ? e->max_length : 0;
}

clattn_embed_params clattn_embed_params_default(void)
{
    clattn_embed_params p;
    memset(&p, 0, sizeof p);
    p.batch_size = 32;
    p.pooling = CLATTN_POOLING_DEFAULT;
    p.normalize = -1;
    return p;
}

/* ---- forward -------------------------------------------------------------- */

/* The texts' tokens, back to back: text i is ids[off[i] .. off[i] + len[i]). */
typedef struct token_table {
    int64_t *ids;
    size_t *off;
    int32_t *len;
    int32_t *order;              /* texts by decreasing length */
    uint64_t *keys;              /* sort keys */
} token_table;

static void tokens_free(token_table *t)
{
    free(t->ids);
    free(t->off);
    free(t->len);
    free(t->order);
    free(t->keys);
}

/* Sort keys: longer first, then by position (no globals: thread-safe). */
static int by_key(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static clattn_status tokenize_all(clattn_embedder *e, const char *const *texts, int32_t n,
                                  int32_t max_len, token_table *t)
{
    memset(t, 0, sizeof *t);
    size_t cap = (size_t)n * 16 + (size_t)max_len;
    t->ids = malloc(cap * sizeof *t->ids);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->order = malloc((size_t)n * sizeof *t->order);
    t->keys = malloc((size_t)n * sizeof *t->keys);
    if (!t->ids || !t->off || !t->len || !t->order || !t->keys)
        return clattn__fail(e->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    size_t used = 0;
    for (int32_t i = 0; i < n; i++) {
        if (cap - used < (size_t)max_len) {
            int64_t *grown = realloc(t->ids, (cap * 2 + (size_t)max_len) * sizeof *grown);
            if (!grown)
                return clattn__fail(e->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
            t->ids = grown;
            cap = cap * 2 + (size_t)max_len;
        }
        int32_t count = 0;
        clattn_status st = clattn_tokenizer_encode(e->tok, texts[i], strlen(texts[i]), max_len,
                                                   t->ids + used, max_len, &count);
        if (st != CLATTN_OK)
            return clattn__fail(e->ctx, st, "text %d: %s", i, clattn_last_error());
        t->off[i] = used;
        t->len[i] = count;
        t->keys[i] = ((uint64_t)(INT32_MAX - count) << 32) | (uint32_t)i;
        used += (size_t)count;
    }
    /* Longest first: the first batch sizes the workspace for all others. */
    qsort(t->keys, (size_t)n, sizeof *t->keys, by_key);
    for (int32_t i = 0; i < n; i++)
        t->order[i] = (int32_t)(t->keys[i] & 0xffffffffu);
    return CLATTN_OK;
}

/* Runs the encoder on texts order[0..b) (padded to N tokens) and leaves the
 * last hidden states [b, N, E] in host, a float array of b * N * E. */
static clattn_status encode_batch(clattn_embedder *e, const token_table *t, const int32_t *order,
                                  int32_t b, int32_t N, int64_t *ids, int32_t *kv_len,
                                  float *host)
{
    clattn_ctx *ctx = e->ctx;
    size_t count = (size_t)b * (size_t)N;
    for (int32_t i = 0; i < b; i++) {
        int32_t k = order[i];
        kv_len[i] = t->len[k];
        for (int32_t j = 0; j < N; j++)
            ids[(size_t)i * N + j] = j < t->len[k] ? t->ids[t->off[k] + j] : e->pad_id;
    }
    clattn_tensor x, tmp;
    const int64_t shape[3] = {b, N, e->cfg.hidden};
    const char *what = "embedder activations [B, N, E]";
    clattn_status st = clattn__workspace(ctx, &e->x, 3, shape, what, &x);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &e->tmp, 3, shape, what, &tmp);
    /* BertEmbeddings: (word + token type) + position, then LayerNorm. */
    if (st == CLATTN_OK)
        st = clattn_embedding(ctx, e->word, ids, count, &x);
    int64_t *aux = ids + count; /* token types (0), then positions */
    for (size_t i = 0; i < count; i++)
        aux[i] = 0;
    if (st == CLATTN_OK)
        st = clattn_embedding(ctx, e->type, aux, count, &tmp);
    if (st == CLATTN_OK)
        st = clattn_add(ctx, &x, &tmp, &x);
    for (size_t i = 0; i < count; i++)
        aux[i] = (int64_t)(i % (size_t)N);
    if (st == CLATTN_OK)
        st = clattn_embedding(ctx, e->pos, aux, count, &tmp);
    if (st == CLATTN_OK)
        st = clattn_add(ctx, &x, &tmp, &x);
    if (st == CLATTN_OK)
        st = clattn_layer_norm(ctx, &x, e->emb_norm.weight, e->emb_norm.bias, e->cfg.eps, &x);
    clattn__layer_call call;
    memset(&call, 0, sizeof call);
    call.self_kv_len = kv_len;
    for (int32_t l = 0; l < e->n_layers && st == CLATTN_OK; l++)
        st = clattn__layer_forward(ctx, &e->layers[l], &call, &x);
    if (st == CLATTN_OK)
        st = clattn_tensor_read(&x, host);
    return st;
}

/* One text's vector from its hidden states h [len, E] (rows of the batch). */
static void pool(const float *h, int32_t len, int64_t E, clattn_pooling mode, bool normalize,
                 double *acc, float *out)
{
    for (int64_t d = 0; d < E; d++)
        acc[d] = mode == CLATTN_POOLING_MAX ? -INFINITY : 0.0;
    int32_t rows = mode == CLATTN_POOLING_CLS ? 1 : len;
    for (int32_t j = 0; j < rows; j++)
        for (int64_t d = 0; d < E; d++) {
            double v = h[(size_t)j * (size_t)E + (size_t)d];
            acc[d] = mode == CLATTN_POOLING_MAX ? (v > acc[d] ? v : acc[d]) : acc[d] + v;
        }
    double norm = 0;
    for (int64_t d = 0; d < E; d++) {
        if (mode == CLATTN_POOLING_MEAN)
            acc[d] /= rows;
        norm += acc[d] * acc[d];
    }
    /* torch.nn.functional.normalize: x / max(|x|, 1e-12). */
    double scale = normalize ? 1.0 / fmax(sqrt(norm), 1e-12) : 1.0;
    for (int64_t d = 0; d < E; d++)
        out[d] = (float)(acc[d] * scale);
}

/* Checks the parameters every embed call takes; *max_len: tokens per text. */
static clattn_status check_params(clattn_embedder *e, const clattn_embed_params *p,
                                  const char *fn, int32_t *max_len)
{
    clattn_ctx *ctx = e->ctx;
    *max_len = p->max_length ? p->max_length : e->max_length;
    /* Each bad parameter is named alone (one message listed all four, the
     * valid ones too: "batch_size 32 must be >= 1" for a bad max_length). */
    if (p->batch_size < 1)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: batch_size %d must be >= 1", fn,
                            p->batch_size);
    if (p->pooling < CLATTN_POOLING_DEFAULT || p->pooling > CLATTN_POOLING_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: pooling %d must be in 0..%d", fn,
                            (int)p->pooling, (int)CLATTN_POOLING_MAX);
    if (p->normalize < -1 || p->normalize > 1)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: normalize %d must be -1, 0 or 1", fn, p->normalize);
    if (*max_len < 2 || *max_len > e->cfg.max_pos)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: max_length %d must be in 2..%lld (the model's "
                            "max_position_embeddings; 0: the folder's default)",
                            fn, p->max_length, (long long)e->cfg.max_pos);
    return CLATTN_OK;
}

/* Runs the n texts of t (sorted by length) in batches, pools and writes
 * out[n, E] in the caller's order. */
static clattn_status embed_table(clattn_embedder *e, const token_table *t, int32_t n, float *out,
                                 const clattn_embed_params *p)
{
    clattn_ctx *ctx = e->ctx;
    clattn_pooling mode = p->pooling ? p->pooling : e->cfg.pooling;
    bool normalize = p->normalize < 0 ? e->cfg.normalize : p->normalize == 1;
    int64_t E = e->cfg.hidden;
    int32_t bs = p->batch_size < n ? p->batch_size : n;
    int32_t N0 = t->len[t->order[0]];
    size_t cells = (size_t)bs * (size_t)N0;
    int64_t *ids = malloc(2 * cells * sizeof *ids);
    int32_t *kv_len = malloc((size_t)bs * sizeof *kv_len);
    float *host = malloc(cells * (size_t)E * sizeof *host);
    double *acc = malloc((size_t)E * sizeof *acc);
    clattn_status st = CLATTN_OK;
    if (!ids || !kv_len || !host || !acc)
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                          "embedder_embed: out of host memory for a batch of %d x %d tokens", bs,
                          N0);
    for (int32_t first = 0; first < n && st == CLATTN_OK; first += bs) {
        int32_t b = n - first < bs ? n - first : bs;
        const int32_t *order = t->order + first;
        int32_t N = t->len[order[0]];
        st = encode_batch(e, t, order, b, N, ids, kv_len, host);
        for (int32_t i = 0; i < b && st == CLATTN_OK; i++)
            pool(host + (size_t)i * (size_t)N * (size_t)E, kv_len[i], E, mode, normalize, acc,
                 out + (size_t)order[i] * (size_t)E);
        if (st == CLATTN_OK && p->progress)
            p->progress(p->progress_user, first + b, n);
    }
    free(ids);
    free(kv_len);
    free(host);
    free(acc);
    return st;
}

clattn_status clattn_embedder_embed(clattn_embedder *e, const char *const *texts, int32_t n,
                                    float *out, const clattn_embed_params *p)
{
    clattn__clear_thread_error();
    clattn_embed_params def = clattn_embed_params_default();
    if (!p)
        p = &def;
    clattn_ctx *ctx = e ? e->ctx : NULL;
    if (!e || n < 0 || (n > 0 && (!texts || !out)))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "embedder_embed: NULL embedder, texts or out, or n %d < 0", n);
    for (int32_t i = 0; i < n; i++)
        if (!texts[i])
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "embedder_embed: texts[%d] is NULL",
                                i);
    int32_t max_len;
    clattn_status st = check_params(e, p, "embedder_embed", &max_len);
    if (st != CLATTN_OK || n == 0)
        return st;
    token_table t;
    st = tokenize_all(e, texts, n, max_len, &t);
    if (st == CLATTN_OK)
        st = embed_table(e, &t, n, out, p);
    tokens_free(&t);
    return st;
}

/* The caller's ids as a token table: checked, copied, sorted. */
static clattn_status table_from_ids(clattn_embedder *e, const int64_t *ids, const int32_t *lens,
                                    int32_t n, int32_t max_len, token_table *t)
{
    clattn_ctx *ctx = e->ctx;
    memset(t, 0, sizeof *t);
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > max_len)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "embedder_embed_ids: text %d has %d ids (must be 1..%d, the "
                                "max_length)",
                                i, lens[i], max_len);
        total += (size_t)lens[i];
    }
    for (size_t j = 0; j < total; j++)
        if (ids[j] < 0 || ids[j] >= e->cfg.vocab)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "embedder_embed_ids: id %lld at flat index %zu is outside the "
                                "vocabulary [0, %lld)",
                                (long long)ids[j], j, (long long)e->cfg.vocab);
    t->ids = malloc(total * sizeof *t->ids);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->order = malloc((size_t)n * sizeof *t->order);
    t->keys = malloc((size_t)n * sizeof *t->keys);
    if (!t->ids || !t->off || !t->len || !t->order || !t->keys)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    memcpy(t->ids, ids, total * sizeof *t->ids);
    size_t used = 0;
    for (int32_t i = 0; i < n; i++) {
        t->off[i] = used;
        t->len[i] = lens[i];
        t->keys[i] = ((uint64_t)(INT32_MAX - lens[i]) << 32) | (uint32_t)i;
        used += (size_t)lens[i];
    }
    qsort(t->keys, (size_t)n, sizeof *t->keys, by_key);
    for (int32_t i = 0; i < n; i++)
        t->order[i] = (int32_t)(t->keys[i] & 0xffffffffu);
    return CLATTN_OK;
}

clattn_status clattn_embedder_embed_ids(clattn_embedder *e, const int64_t *ids,
                                        const int32_t *lens, int32_t n, float *out,
                                        const clattn_embed_params *p)
{
    clattn__clear_thread_error();
    clattn_embed_params def = clattn_embed_params_default();
    if (!p)
        p = &def;
    clattn_ctx *ctx = e ? e->ctx : NULL;
    if (!e || n < 0 || (n > 0 && (!ids || !lens || !out)))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "embedder_embed_ids: NULL embedder, ids, lens or out, or n %d < 0",
                            n);
    int32_t max_len;
    clattn_status st = check_params(e, p, "embedder_embed_ids", &max_len);
    if (st != CLATTN_OK || n == 0)
        return st;
    token_table t;
    st = table_from_ids(e, ids, lens, n, max_len, &t);
    if (st == CLATTN_OK)
        st = embed_table(e, &t, n, out, p);
    tokens_free(&t);
    return st;
}

/* ---- attention weights ---------------------------------------------------- */

/* The encoder on one text's T tokens ids (no padding), each layer's
 * self-attention probabilities [1, H, T, T] read into weights[l] as
 * [H, T, T]: the unfused attention path, run only here. */
static clattn_status attention_forward(clattn_embedder *e, const int64_t *ids, int32_t T,
                                       float *weights)
{
    clattn_ctx *ctx = e->ctx;
    const int64_t E = e->cfg.hidden, H = e->cfg.heads;
    const size_t per_layer = (size_t)H * (size_t)T * (size_t)T;
    int64_t *aux = malloc((size_t)T * sizeof *aux);
    if (!aux)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_tensor x, tmp, w;
    const int64_t shape[3] = {1, T, E}, wshape[4] = {1, H, T, T};
    const char *what = "embedder activations [B, N, E]";
    clattn__buffer wbuf = {0};
    clattn_status st = clattn__workspace(ctx, &e->x, 3, shape, what, &x);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &e->tmp, 3, shape, what, &tmp);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &wbuf, 4, wshape, "attention weights [1, H, T, T]", &w);
    /* As encode_batch: (word + token type 0) + position, then LayerNorm. */
    if (st == CLATTN_OK)
        st = clattn_embedding(ctx, e->word, ids, (size_t)T, &x);
    for (int32_t i = 0; i < T; i++)
        aux[i] = 0;
    if (st == CLATTN_OK)
        st = clattn_embedding(ctx, e->type, aux, (size_t)T, &tmp);
    if (st == CLATTN_OK)
        st = clattn_add(ctx, &x, &tmp, &x);
    for (int32_t i = 0; i < T; i++)
        aux[i] = i;
    if (st == CLATTN_OK)
        st = clattn_embedding(ctx, e->pos, aux, (size_t)T, &tmp);
    if (st == CLATTN_OK)
        st = clattn_add(ctx, &x, &tmp, &x);
    if (st == CLATTN_OK)
        st = clattn_layer_norm(ctx, &x, e->emb_norm.weight, e->emb_norm.bias, e->cfg.eps, &x);
    clattn__layer_call call;
    memset(&call, 0, sizeof call);
    call.self_weights = &w;
    for (int32_t l = 0; l < e->n_layers && st == CLATTN_OK; l++) {
        st = clattn__layer_forward(ctx, &e->layers[l], &call, &x);
        if (st == CLATTN_OK)
            st = clattn_tensor_read(&w, weights + (size_t)l * per_layer);
    }
    clattn__buffer_release(&wbuf);
    free(aux);
    return st;
}

clattn_status clattn_embedder_attention(clattn_embedder *e, const char *text,
                                        const clattn_embed_params *p, float *weights,
                                        int64_t capacity, int64_t *ids, int32_t *n_tokens,
                                        int32_t *n_layers, int32_t *n_heads)
{
    clattn__clear_thread_error();
    clattn_ctx *ctx = e ? e->ctx : NULL;
    if (!e || !text || !n_tokens || !n_layers || !n_heads)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "embedder_attention: e, text, n_tokens, n_layers and n_heads must "
                            "not be NULL");
    if (capacity < 0 || (!weights && capacity != 0))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "embedder_attention: capacity %lld must be >= 0, and 0 when weights "
                            "is NULL",
                            (long long)capacity);
    int32_t max_len = p && p->max_length ? p->max_length : e->max_length;
    if (max_len < 2 || max_len > e->cfg.max_pos)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "embedder_attention: max_length %d must be in 2..%lld (the model's "
                            "max_position_embeddings; 0: the folder's default)",
                            p ? p->max_length : 0, (long long)e->cfg.max_pos);
    int64_t *tok = malloc((size_t)max_len * sizeof *tok);
    if (!tok)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    int32_t T = 0;
    clattn_status st = clattn_tokenizer_encode(e->tok, text, strlen(text), max_len, tok, max_len,
                                               &T);
    if (st != CLATTN_OK) {
        free(tok);
        return clattn__fail(ctx, st, "embedder_attention: %s", clattn_last_error());
    }
    const int64_t need = (int64_t)e->n_layers * e->cfg.heads * T * T;
    *n_tokens = T;
    *n_layers = e->n_layers;
    *n_heads = (int32_t)e->cfg.heads;
    if (weights && capacity < need)
        st = clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                          "embedder_attention: capacity %lld floats is too small for weights "
                          "[n_layers, n_heads, T, T] = [%d, %d, %d, %d]: %lld floats needed",
                          (long long)capacity, e->n_layers, (int)e->cfg.heads, T, T,
                          (long long)need);
    if (st == CLATTN_OK && weights) {
        st = attention_forward(e, tok, T, weights);
        if (st == CLATTN_OK && ids)
            memcpy(ids, tok, (size_t)T * sizeof *ids);
    }
    free(tok);
    return st;
}
