/* bert_config.c - the settings of a BERT model folder: config.json (as
 * transformers' BertConfig reads it: missing keys take BertConfig's
 * defaults) and the sentence-transformers files (modules.json, the pooling
 * module's config.json, sentence_bert_config.json).
 *
 * These files are untrusted input: every value used is type-checked, and
 * every setting clattn cannot honour is refused by name, with the file. */
#include "embed/embed.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef clattn__json_reader reader;

static void read_model(reader *r, json_t *root, clattn__bert_config *c)
{
    const char *type = clattn__json_get_string(r, root, "model_type", NULL);
    if (r->st == CLATTN_OK && (!type || strcmp(type, "bert") != 0)) {
        r->st = clattn__fail(r->ctx, CLATTN_ERR_UNSUPPORTED,
                             "%s: 'model_type' is %s%s%s; clattn reads BERT models (\"bert\")",
                             r->file, type ? "\"" : "", type ? type : "missing",
                             type ? "\"" : "");
        return;
    }
    /* BertConfig's defaults for what the file leaves out. */
    c->hidden = clattn__json_get_int(r, root, "hidden_size", 768, 1, 1 << 16);
    c->layers = clattn__json_get_int(r, root, "num_hidden_layers", 12, 1, 1024);
    c->heads = clattn__json_get_int(r, root, "num_attention_heads", 12, 1, 1 << 12);
    c->intermediate = clattn__json_get_int(r, root, "intermediate_size", 3072, 1, 1 << 20);
    c->max_pos = clattn__json_get_int(r, root, "max_position_embeddings", 512, 2, 1 << 20);
    c->type_vocab = clattn__json_get_int(r, root, "type_vocab_size", 2, 1, 1 << 16);
    c->vocab = clattn__json_get_int(r, root, "vocab_size", 30522, 1, 1 << 24);
    json_t *eps = json_object_get(root, "layer_norm_eps");
    c->eps = 1e-12f;
    if (eps && !json_is_number(eps))
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "layer_norm_eps", "must be a number");
    else if (eps && !(json_number_value(eps) >= 0 && json_number_value(eps) < 1))
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "layer_norm_eps", "must be in [0, 1)");
    else if (eps)
        c->eps = (float)json_number_value(eps);
    const char *act = clattn__json_get_string(r, root, "hidden_act", "gelu");
    if (r->st != CLATTN_OK)
        return;
    if (strcmp(act, "gelu") == 0)
        c->act = CLATTN_ACT_GELU;
    else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0)
        c->act = CLATTN_ACT_GELU_TANH;
    else if (strcmp(act, "relu") == 0)
        c->act = CLATTN_ACT_RELU;
    else
        r->st = clattn__fail(r->ctx, CLATTN_ERR_UNSUPPORTED,
                             "%s: 'hidden_act' \"%s\" is not supported (gelu, gelu_new, "
                             "gelu_pytorch_tanh, relu)",
                             r->file, act);
    const char *pos = clattn__json_get_string(r, root, "position_embedding_type", "absolute");
    if (r->st == CLATTN_OK && strcmp(pos, "absolute") != 0)
        r->st = clattn__fail(r->ctx, CLATTN_ERR_UNSUPPORTED,
                             "%s: 'position_embedding_type' \"%s\" is not supported (absolute)",
                             r->file, pos);
    if (clattn__json_get_bool(r, root, "is_decoder", false))
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "is_decoder", "is true: clattn embeds with encoders");
    if (clattn__json_get_bool(r, root, "add_cross_attention", false))
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "add_cross_attention", "is true: not supported");
    if (r->st == CLATTN_OK && c->hidden % c->heads != 0)
        r->st = clattn__fail(r->ctx, CLATTN_ERR_FORMAT,
                             "%s: 'hidden_size' %lld is not divisible by "
                             "'num_attention_heads' %lld",
                             r->file, (long long)c->hidden, (long long)c->heads);
}

static void read_pooling(reader *r, json_t *root, clattn__bert_config *c)
{
    static const char *const unsupported[] = {"pooling_mode_mean_sqrt_len_tokens",
                                              "pooling_mode_weightedmean_tokens",
                                              "pooling_mode_lasttoken", NULL};
    int count = 0;
    if (clattn__json_get_bool(r, root, "pooling_mode_mean_tokens", false))
        c->pooling = CLATTN_POOLING_MEAN, count++;
    if (clattn__json_get_bool(r, root, "pooling_mode_cls_token", false))
        c->pooling = CLATTN_POOLING_CLS, count++;
    if (clattn__json_get_bool(r, root, "pooling_mode_max_tokens", false))
        c->pooling = CLATTN_POOLING_MAX, count++;
    for (const char *const *u = unsupported; *u; u++)
        if (clattn__json_get_bool(r, root, *u, false))
            clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, *u, "is true: not supported (mean, cls, max)");
    const char *mode = clattn__json_get_string(r, root, "pooling_mode", NULL);
    if (mode && count == 0) { /* newer files may name the mode instead */
        if (strcmp(mode, "mean") == 0)
            c->pooling = CLATTN_POOLING_MEAN, count++;
        else if (strcmp(mode, "cls") == 0)
            c->pooling = CLATTN_POOLING_CLS, count++;
        else if (strcmp(mode, "max") == 0)
            c->pooling = CLATTN_POOLING_MAX, count++;
    }
    int64_t dim = clattn__json_get_int(r, root, "word_embedding_dimension", c->hidden, 1, 1 << 16);
    if (r->st != CLATTN_OK)
        return;
    if (count != 1)
        r->st = clattn__fail(r->ctx, CLATTN_ERR_UNSUPPORTED,
                             "%s: exactly one of pooling_mode_mean_tokens, "
                             "pooling_mode_cls_token and pooling_mode_max_tokens must be true "
                             "(%d are)",
                             r->file, count);
    else if (dim != c->hidden)
        r->st = clattn__fail(r->ctx, CLATTN_ERR_FORMAT,
                             "%s: 'word_embedding_dimension' %lld differs from hidden_size %lld",
                             r->file, (long long)dim, (long long)c->hidden);
}

/* modules.json: [Transformer, Pooling, (Normalize)]; returns the pooling
 * module's folder (relative, inside dir) in pool_path. */
static void read_modules(reader *r, json_t *root, clattn__bert_config *c, const char **pool_path)
{
    if (!json_is_array(root)) {
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "(top level)", "must be an array of modules");
        return;
    }
    size_t i;
    json_t *m;
    bool transformer = false;
    json_array_foreach(root, i, m)
    {
        const char *type = json_is_object(m) ? clattn__json_get_string(r, m, "type", NULL) : NULL;
        const char *path = json_is_object(m) ? clattn__json_get_string(r, m, "path", "") : NULL;
        if (r->st != CLATTN_OK)
            return;
        if (!type || !path) {
            r->st = clattn__fail(r->ctx, CLATTN_ERR_FORMAT,
                                 "%s: module %zu must be an object with a \"type\" string",
                                 r->file, i);
            return;
        }
        if (strcmp(type, "sentence_transformers.models.Transformer") == 0 && i == 0) {
            transformer = true;
        } else if (strcmp(type, "sentence_transformers.models.Pooling") == 0 && transformer &&
                   !*pool_path) {
            if (path[0] == '/' || strstr(path, "..")) {
                r->st = clattn__fail(r->ctx, CLATTN_ERR_FORMAT,
                                     "%s: module %zu: path \"%s\" must stay inside the folder",
                                     r->file, i, path);
                return;
            }
            *pool_path = path;
        } else if (strcmp(type, "sentence_transformers.models.Normalize") == 0 && *pool_path) {
            c->normalize = true;
        } else {
            r->st = clattn__fail(r->ctx, CLATTN_ERR_UNSUPPORTED,
                                 "%s: module %zu \"%s\" is not supported here (clattn runs "
                                 "Transformer, then Pooling, then optionally Normalize)",
                                 r->file, i, type);
            return;
        }
    }
    if (!*pool_path)
        r->st = clattn__fail(r->ctx, CLATTN_ERR_FORMAT,
                             "%s: no sentence_transformers.models.Pooling module after the "
                             "Transformer",
                             r->file);
}

clattn_status clattn__bert_read_config(clattn_ctx *ctx, const char *dir, clattn__bert_config *c)
{
    memset(c, 0, sizeof *c);
    c->pooling = CLATTN_POOLING_MEAN;
    const char *names[4] = {"config.json", "modules.json", NULL, "sentence_bert_config.json"};
    json_t *roots[4] = {NULL, NULL, NULL, NULL};
    char *paths[4] = {NULL, NULL, NULL, NULL};
    clattn_status st = CLATTN_OK;
    const char *pool_path = NULL;
    for (int f = 0; f < 4 && st == CLATTN_OK; f++) {
        if (f == 2 && !pool_path)
            continue;
        paths[f] = f == 2 ? clattn__aprintf("%s/%s%sconfig.json", dir, pool_path,
                                            pool_path[0] ? "/" : "")
                          : clattn__aprintf("%s/%s", dir, names[f]);
        if (!paths[f]) {
            st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
            break;
        }
        st = clattn__json_load_file(ctx, paths[f], f == 1 || f == 3, &roots[f]);
        if (st != CLATTN_OK || !roots[f])
            continue;
        reader r = {ctx, paths[f], "", CLATTN_OK};
        if (f != 1 && !json_is_object(roots[f]))
            clattn__json_fail_key(&r, CLATTN_ERR_FORMAT, "(top level)", "must be an object");
        else if (f == 0)
            read_model(&r, roots[0], c);
        else if (f == 1)
            read_modules(&r, roots[1], c, &pool_path);
        else if (f == 2)
            read_pooling(&r, roots[2], c);
        else
            c->max_seq_length = (int32_t)clattn__json_get_int(&r, roots[3], "max_seq_length",
                                                              0, 2, c->max_pos);
        st = r.st;
    }
    for (int f = 0; f < 4; f++) {
        json_decref(roots[f]);
        free(paths[f]);
    }
    return st;
}
