/* route_embed.c - POST /v1/embeddings (OpenAI's format) and POST /embed
 * (text-embeddings-inference's). Inputs are tokenized here, in the
 * connection's thread, then batched by embed_queue.c.
 *
 * Length: /v1/embeddings truncates a text to the model's max_length tokens
 * (as sentence-transformers does); token-id inputs longer than that are
 * refused. /embed refuses a text over the limit unless "truncate": true. */
#include "server.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The request's inputs as token ids. */
typedef struct inputs {
    int64_t *ids;
    int32_t *lens;
    int32_t n;
    size_t used, cap;
    int32_t tokens;              /* sum of lens: usage.prompt_tokens */
} inputs;

static void inputs_free(inputs *in)
{
    free(in->ids);
    free(in->lens);
}

static bool reserve(inputs *in, size_t more)
{
    if (in->used + more <= in->cap)
        return true;
    size_t cap = (in->used + more) * 2;
    int64_t *ids = realloc(in->ids, cap * sizeof *ids);
    if (!ids)
        return false;
    in->ids = ids, in->cap = cap;
    return true;
}

/* Tokenizes text i; truncate false refuses it when over max_length. */
static bool add_text(server *srv, inputs *in, int32_t i, const char *text, size_t len,
                     bool truncate, http_reply *r)
{
    const clattn_tokenizer *tok = embed_queue_tokenizer(srv->embed);
    int32_t max_len = embed_queue_max_length(srv->embed);
    /* One id over the limit is enough to know the text is too long. */
    int32_t limit = truncate ? max_len : max_len + 1, count = 0;
    if (!reserve(in, (size_t)limit)) {
        reply_error(r, 500, "out_of_memory", "out of memory");
        return false;
    }
    if (clattn_tokenizer_encode(tok, text, len, limit, in->ids + in->used, limit, &count) !=
        CLATTN_OK) {
        reply_error(r, 400, "invalid_input", "input %d: %s", i, clattn_last_error());
        return false;
    }
    if (count > max_len) {
        reply_error(r, 400, "input_too_long", "input %d is longer than the model's %d tokens "
                    "(send \"truncate\": true to cut it)", i, max_len);
        return false;
    }
    in->lens[i] = count;
    in->used += (size_t)count;
    in->tokens += count;
    return true;
}

/* An array of token ids, taken as given. */
static bool add_ids(server *srv, inputs *in, int32_t i, json_t *arr, http_reply *r)
{
    int32_t max_len = embed_queue_max_length(srv->embed), vocab = embed_queue_vocab(srv->embed);
    size_t n = json_array_size(arr);
    if (n < 1 || n > (size_t)max_len) {
        reply_error(r, 400, n ? "input_too_long" : "invalid_input",
                    "input %d has %zu token ids (must be 1..%d)", i, n, max_len);
        return false;
    }
    if (!reserve(in, n)) {
        reply_error(r, 500, "out_of_memory", "out of memory");
        return false;
    }
    for (size_t k = 0; k < n; k++) {
        json_t *v = json_array_get(arr, k);
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= vocab) {
            reply_error(r, 400, "invalid_input",
                        "input %d, token %zu: not a token id in [0, %d)", i, k, vocab);
            return false;
        }
        in->ids[in->used + k] = id;
    }
    in->lens[i] = (int32_t)n;
    in->used += n;
    in->tokens += (int32_t)n;
    return true;
}

/* input: a string, an array of strings, an array of ids, or an array of
 * arrays of ids. */
static bool read_inputs(server *srv, json_t *input, bool truncate, inputs *in, http_reply *r)
{
    memset(in, 0, sizeof *in);
    bool one = json_is_string(input) ||
               (json_is_array(input) && json_array_size(input) > 0 &&
                json_is_integer(json_array_get(input, 0)));
    if (!one && !json_is_array(input)) {
        reply_error(r, 400, "invalid_input",
                    "input must be a string, an array of strings or an array of token ids");
        return false;
    }
    size_t n = one ? 1 : json_array_size(input);
    if (n == 0) {
        reply_error(r, 400, "invalid_input", "input is an empty array");
        return false;
    }
    if (n > (size_t)srv->opt.max_inputs) {
        reply_error(r, 400, "too_many_inputs", "%zu inputs is over the limit of %d "
                    "(--max-inputs)", n, srv->opt.max_inputs);
        return false;
    }
    in->n = (int32_t)n;
    in->lens = malloc(n * sizeof *in->lens);
    if (!in->lens) {
        reply_error(r, 500, "out_of_memory", "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = one ? input : json_array_get(input, i);
        bool ok;
        if (json_is_string(item))
            ok = add_text(srv, in, (int32_t)i, json_string_value(item), json_string_length(item),
                          truncate, r);
        else if (json_is_array(item) && !one)
            ok = add_ids(srv, in, (int32_t)i, item, r);
        else if (one)
            ok = add_ids(srv, in, 0, input, r);
        else {
            reply_error(r, 400, "invalid_input", "input[%zu] must be a string or an array of "
                        "token ids", i);
            ok = false;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* Runs the inputs through the batcher; *out gets [n, dim] floats. */
static bool embed_inputs(server *srv, const inputs *in, int32_t normalize, float **out,
                         http_reply *r)
{
    int32_t dim = embed_queue_dim(srv->embed);
    embed_job job;
    memset(&job, 0, sizeof job);
    job.ids = in->ids, job.lens = in->lens, job.n = in->n, job.normalize = normalize;
    job.out = malloc((size_t)in->n * (size_t)dim * sizeof *job.out);
    if (!job.out) {
        reply_error(r, 500, "out_of_memory", "out of memory");
        return false;
    }
    if (!embed_queue_run(srv->embed, &job)) {
        free(job.out);
        r->retry_after = 1;
        reply_error(r, 503, "queue_full", "the embedding queue is full (--max-queue %d); retry "
                    "later", srv->opt.max_queue);
        return false;
    }
    if (job.status != CLATTN_OK) {
        free(job.out);
        reply_error(r, 500, "embedding_failed", "%s", job.error);
        return false;
    }
    *out = job.out;
    return true;
}

/* OpenAI's base64 form: the float32 values' little-endian bytes. */
static char *base64_floats(const float *v, int32_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (size_t)n * 4;
    unsigned char *b = malloc(len ? len : 1);
    char *s = malloc(4 * ((len + 2) / 3) + 1);
    if (!b || !s) {
        free(b);
        free(s);
        return NULL;
    }
    for (int32_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            b[4 * (size_t)i + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)b[i] << 16 | (i + 1 < len ? (uint32_t)b[i + 1] << 8 : 0) |
                     (i + 2 < len ? b[i + 2] : 0);
        s[o++] = A[w >> 18 & 63];
        s[o++] = A[w >> 12 & 63];
        s[o++] = i + 1 < len ? A[w >> 6 & 63] : '=';
        s[o++] = i + 2 < len ? A[w & 63] : '=';
    }
    s[o] = '\0';
    free(b);
    return s;
}

static json_t *float_array(const float *v, int32_t n)
{
    json_t *a = json_array();
    for (int32_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

void route_embeddings(server *srv, const char *body, size_t len, http_reply *r)
{
    json_t *req;
    if (!parse_json_object(body, len, r, &req))
        return;
    json_t *input = json_object_get(req, "input");
    json_t *fmt = json_object_get(req, "encoding_format");
    json_t *dims = json_object_get(req, "dimensions");
    int32_t dim = embed_queue_dim(srv->embed);
    bool b64 = false;
    inputs in;
    memset(&in, 0, sizeof in);
    float *vec = NULL;
    if (!input) {
        reply_error(r, 400, "invalid_input", "the request has no \"input\"");
    } else if (fmt && !json_is_null(fmt) &&
               (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") &&
                                         strcmp(json_string_value(fmt), "base64")))) {
        reply_error(r, 400, "invalid_encoding_format",
                    "encoding_format must be \"float\" or \"base64\"");
    } else if (dims && !json_is_null(dims) &&
               (!json_is_integer(dims) || json_integer_value(dims) != dim)) {
        reply_error(r, 400, "invalid_dimensions",
                    "dimensions must be the model's %d (vectors are not shortened)", dim);
    } else if (read_inputs(srv, input, true, &in, r) && embed_inputs(srv, &in, -1, &vec, r)) {
        b64 = fmt && json_is_string(fmt) && !strcmp(json_string_value(fmt), "base64");
        json_t *data = json_array();
        bool ok = data != NULL;
        for (int32_t i = 0; ok && i < in.n; i++) {
            const float *v = vec + (size_t)i * (size_t)dim;
            char *s = b64 ? base64_floats(v, dim) : NULL;
            json_t *e = b64 ? (s ? json_string(s) : NULL) : float_array(v, dim);
            free(s);
            ok = e && json_array_append_new(
                          data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i,
                                          "embedding", e)) == 0;
        }
        r->items = in.n;
        if (ok)
            reply_json(r, 200,
                       json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data,
                                 "model", embed_queue_model_name(srv->embed), "usage",
                                 "prompt_tokens", in.tokens, "total_tokens", in.tokens));
        else {
            json_decref(data);
            reply_error(r, 500, "out_of_memory", "out of memory");
        }
    }
    free(vec);
    inputs_free(&in);
    json_decref(req);
}

static bool optional_bool(json_t *req, const char *key, bool def, bool *out, http_reply *r)
{
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_boolean(v)) {
        reply_error(r, 400, "invalid_type", "%s must be true or false", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* text-embeddings-inference: {"inputs": "text" | ["a", "b"], "normalize":
 * true, "truncate": false} -> [[...], ...]. */
void route_tei_embed(server *srv, const char *body, size_t len, http_reply *r)
{
    json_t *req;
    if (!parse_json_object(body, len, r, &req))
        return;
    json_t *input = json_object_get(req, "inputs");
    bool normalize, truncate;
    inputs in;
    memset(&in, 0, sizeof in);
    float *vec = NULL;
    int32_t dim = embed_queue_dim(srv->embed);
    if (!input) {
        reply_error(r, 400, "invalid_input", "the request has no \"inputs\"");
    } else if (!json_is_string(input) && !json_is_array(input)) {
        reply_error(r, 400, "invalid_input", "inputs must be a string or an array of strings");
    } else if (optional_bool(req, "normalize", true, &normalize, r) &&
               optional_bool(req, "truncate", false, &truncate, r) &&
               read_inputs(srv, input, truncate, &in, r) &&
               embed_inputs(srv, &in, normalize ? 1 : 0, &vec, r)) {
        json_t *out = json_array();
        bool ok = out != NULL;
        for (int32_t i = 0; ok && i < in.n; i++) {
            json_t *e = float_array(vec + (size_t)i * (size_t)dim, dim);
            ok = e && json_array_append_new(out, e) == 0;
        }
        r->items = in.n;
        if (ok)
            reply_json(r, 200, out);
        else {
            json_decref(out);
            reply_error(r, 500, "out_of_memory", "out of memory");
        }
    }
    free(vec);
    inputs_free(&in);
    json_decref(req);
}
