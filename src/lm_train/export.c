/* export.c - clattn_llama_export: the model as a Hugging Face
 * LlamaForCausalLM folder that transformers and clattn_lm_load read:
 * config.json, model.safetensors, generation_config.json, and the
 * tokenizer's files. Every file is written to a temporary file in the
 * folder and renamed over its name, so a reader sees the old file or the
 * new one, never a part. Everything that can be checked (the tokenizer,
 * its files read into memory) is checked before the first file is
 * written. */
#include "io/io.h"
#include "lm_train/lm_train.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_VERSION "4.57.3" /* the transformers version whose files these mirror */

/* ======================================================================== */
/* Files                                                                     */
/* ======================================================================== */

/* mkdir -p dir: each missing folder is made with mode 0755 (less the
 * umask); dir must end up a folder. */
static clattn_status make_dirs(clattn_ctx *ctx, const char *dir)
{
    char *p = clattn__strdup(dir);
    if (!p)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_status st = CLATTN_OK;
    for (char *s = p + 1; st == CLATTN_OK; s++) {
        bool end = *s == '\0';
        if (!end && *s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int err = errno;
            /* A folder that exists may still refuse mkdir (read-only mounts). */
            struct stat sb;
            if (!(stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)))
                st = clattn__fail(ctx, CLATTN_ERR_IO, "llama_export: %s: cannot create: %s", p,
                                  strerror(err));
        }
        if (end)
            break;
        *s = '/';
    }
    free(p);
    struct stat sb;
    if (st == CLATTN_OK && stat(dir, &sb) != 0)
        st = clattn__fail(ctx, CLATTN_ERR_IO, "llama_export: %s: %s", dir, strerror(errno));
    else if (st == CLATTN_OK && !S_ISDIR(sb.st_mode))
        st = clattn__fail(ctx, CLATTN_ERR_IO, "llama_export: %s: %s", dir, strerror(ENOTDIR));
    return st;
}

/* Writes bytes[0 .. n) as dir/name: a temporary file in dir, then rename. */
static clattn_status write_file(clattn_ctx *ctx, const char *dir, const char *name,
                                const char *bytes, size_t n)
{
    static _Atomic unsigned counter; /* unique temporary names within the process */
    char *path = clattn__aprintf("%s/%s", dir, name);
    char *tmp = path ? clattn__aprintf("%s.tmp-%ld-%u", path, (long)getpid(), counter++) : NULL;
    if (!tmp) {
        free(path);
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    clattn_status st = CLATTN_OK;
    /* O_EXCL: never follow or reuse someone else's file; 0666 lets the
     * umask decide the permissions. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        st = clattn__fail(ctx, CLATTN_ERR_IO, "llama_export: %s: cannot create: %s", tmp,
                          strerror(errno));
    } else {
        for (size_t done = 0; done < n && st == CLATTN_OK;) {
            ssize_t w = write(fd, bytes + done, n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                st = clattn__fail(ctx, CLATTN_ERR_IO, "llama_export: %s: write failed: %s", tmp,
                                  w < 0 ? strerror(errno) : "no progress");
            else
                done += (size_t)w;
        }
        if (st == CLATTN_OK && fsync(fd) != 0)
            st = clattn__fail(ctx, CLATTN_ERR_IO, "llama_export: %s: write failed: %s", tmp,
                              strerror(errno));
        if (close(fd) != 0 && st == CLATTN_OK)
            st = clattn__fail(ctx, CLATTN_ERR_IO, "llama_export: %s: close failed: %s", tmp,
                              strerror(errno));
        if (st == CLATTN_OK && rename(tmp, path) != 0)
            st = clattn__fail(ctx, CLATTN_ERR_IO, "llama_export: %s: cannot rename to %s: %s",
                              tmp, path, strerror(errno));
        if (st != CLATTN_OK)
            unlink(tmp);
    }
    free(tmp);
    free(path);
    return st;
}

/* The whole of dir/name into *bytes (malloc'd), its length in *n.
 * *bytes is NULL and the call succeeds when the file does not exist and
 * optional is set. Any other failure is CLATTN_ERR_FORMAT: the files are
 * the tokenizer's, and a tokenizer folder without a readable one is a
 * bad tokenizer folder. */
static clattn_status read_file(clattn_ctx *ctx, const char *dir, const char *name, bool optional,
                               char **bytes, size_t *n)
{
    *bytes = NULL;
    *n = 0;
    char *path = clattn__aprintf("%s/%s", dir, name);
    if (!path)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_status st = CLATTN_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        if (!(optional && errno == ENOENT))
            st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                              "llama_export: tokenizer_dir: %s: cannot read: %s", path,
                              strerror(errno));
    } else if (fstat(fd, &sb) != 0) {
        st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                          "llama_export: tokenizer_dir: %s: cannot read: %s", path,
                          strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                          "llama_export: tokenizer_dir: %s: cannot read: %s", path,
                          S_ISDIR(sb.st_mode) ? strerror(EISDIR) : "not a regular file");
    } else {
        size_t size = (size_t)sb.st_size;
        char *buf = malloc(size ? size : 1);
        if (!buf)
            st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                              "llama_export: out of host memory for %s (%zu bytes)", path, size);
        for (size_t done = 0; buf && done < size && st == CLATTN_OK;) {
            ssize_t r = read(fd, buf + done, size - done);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                                  "llama_export: tokenizer_dir: %s: cannot read: %s", path,
                                  r < 0 ? strerror(errno) : "shorter than its size");
            else
                done += (size_t)r;
        }
        if (st == CLATTN_OK) {
            *bytes = buf;
            *n = size;
        } else {
            free(buf);
        }
    }
    if (fd >= 0)
        close(fd);
    free(path);
    return st;
}

/* json as text (2-space indent, sorted keys, as transformers writes its
 * files, and a final newline) into dir/name. real_digits: the %g
 * precision of every real in json (0: none). */
static clattn_status write_json(clattn_ctx *ctx, const char *dir, const char *name, json_t *json,
                                int real_digits)
{
    if (!json)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    size_t flags = JSON_INDENT(2) | JSON_SORT_KEYS;
    if (real_digits > 0)
        flags |= JSON_REAL_PRECISION(real_digits);
    char *text = json_dumps(json, flags);
    char *full = text ? clattn__aprintf("%s\n", text) : NULL;
    free(text);
    if (!full)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_status st = write_file(ctx, dir, name, full, strlen(full));
    free(full);
    return st;
}

/* ======================================================================== */
/* config.json and generation_config.json                                    */
/* ======================================================================== */

/* Reals are printed with one %g precision for the whole file (jansson's
 * JSON_REAL_PRECISION): the fewest digits with which every real reads back
 * exactly, so 1e-06 and 10000.0 stay as a person writes them. */
typedef struct reals {
    int digits;            /* the precision every real so far needs */
} reals;

/* The double nearest to the shortest decimal that reads back as f in
 * float32 (1e-6f -> 1e-06, not 9.99999997e-07): what the user meant, and
 * what a float32 reader gets back exactly. */
static double float_decimal(float f)
{
    char buf[48];
    for (int p = 1; p <= 9; p++) { /* 9 significant digits always suffice */
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if ((float)strtod(buf, NULL) == f || p == 9)
            break;
    }
    return strtod(buf, NULL);
}

/* A JSON real for d, widening r->digits to what d needs: the fewest %g
 * digits that read back as d, and for an integer below 1e17 at least its
 * digit count, so that it prints as 500000.0 rather than 5e5. */
static json_t *real(reals *r, double d)
{
    char buf[48];
    int p = 1;
    for (; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (d == floor(d) && fabs(d) < 1e17) {
        int n = snprintf(buf, sizeof buf, "%.0f", fabs(d));
        p = n > p ? n : p;
    }
    r->digits = p > r->digits ? p : r->digits;
    return json_real(d);
}

/* A token id, or null for -1. */
static json_t *id_or_null(int32_t id) { return id >= 0 ? json_integer(id) : json_null(); }

/* Sets key in obj, taking value; false when out of memory (value NULL or
 * the set failed). */
static bool set(json_t *obj, const char *key, json_t *value)
{
    return value && json_object_set_new(obj, key, value) == 0;
}

static json_t *rope_scaling(reals *r, const clattn_rope_params *rope)
{
    if (rope->type == CLATTN_ROPE_DEFAULT)
        return json_null();
    json_t *o = json_object();
    bool ok = o != NULL;
    if (rope->type == CLATTN_ROPE_LINEAR) {
        ok = ok && set(o, "rope_type", json_string("linear")) &&
             set(o, "factor", real(r, rope->factor));
    } else {
        ok = ok && set(o, "rope_type", json_string("llama3")) &&
             set(o, "factor", real(r, rope->factor)) &&
             set(o, "low_freq_factor", real(r, rope->low_freq_factor)) &&
             set(o, "high_freq_factor", real(r, rope->high_freq_factor)) &&
             set(o, "original_max_position_embeddings",
                 json_integer(rope->original_max_position));
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* config.json's object (NULL when out of memory) and its reals' digits. */
static json_t *config_json(const clattn_llama_config *c, int *digits)
{
    reals r = {0};
    json_t *o = json_object();
    json_t *archs = json_array();
    bool ok = o && archs && json_array_append_new(archs, json_string("LlamaForCausalLM")) == 0;
    ok = ok && set(o, "architectures", archs);
    if (!ok)
        json_decref(archs);
    int32_t head_dim = c->head_dim ? c->head_dim : c->hidden_size / c->num_attention_heads;
    ok = ok && set(o, "model_type", json_string("llama")) &&
         set(o, "vocab_size", json_integer(c->vocab_size)) &&
         set(o, "hidden_size", json_integer(c->hidden_size)) &&
         set(o, "intermediate_size", json_integer(c->intermediate_size)) &&
         set(o, "num_hidden_layers", json_integer(c->num_hidden_layers)) &&
         set(o, "num_attention_heads", json_integer(c->num_attention_heads)) &&
         set(o, "num_key_value_heads", json_integer(c->num_key_value_heads)) &&
         set(o, "head_dim", json_integer(head_dim)) &&
         set(o, "max_position_embeddings", json_integer(c->max_position_embeddings)) &&
         set(o, "rope_theta", real(&r, c->rope.theta)) &&
         set(o, "rope_scaling", rope_scaling(&r, &c->rope)) &&
         set(o, "rms_norm_eps", real(&r, float_decimal(c->rms_norm_eps))) &&
         set(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings)) &&
         set(o, "bos_token_id", id_or_null(c->bos_token_id)) &&
         set(o, "eos_token_id", id_or_null(c->eos_token_id)) &&
         set(o, "pad_token_id", id_or_null(c->pad_token_id)) &&
         set(o, "torch_dtype", json_string("float32")) &&
         set(o, "attention_bias", json_false()) && set(o, "mlp_bias", json_false()) &&
         set(o, "hidden_act", json_string("silu")) &&
         set(o, "initializer_range", real(&r, float_decimal(c->initializer_range))) &&
         set(o, "attention_dropout", real(&r, 0.0)) &&
         set(o, "pretraining_tp", json_integer(1)) && set(o, "use_cache", json_true()) &&
         set(o, "transformers_version", json_string(HF_VERSION));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    *digits = r.digits;
    return o;
}

/* generation_config.json: the ids that are set. */
static json_t *generation_json(const clattn_llama_config *c)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    if (ok && c->bos_token_id >= 0)
        ok = set(o, "bos_token_id", json_integer(c->bos_token_id));
    if (ok && c->eos_token_id >= 0)
        ok = set(o, "eos_token_id", json_integer(c->eos_token_id));
    if (ok && c->pad_token_id >= 0)
        ok = set(o, "pad_token_id", json_integer(c->pad_token_id));
    ok = ok && set(o, "transformers_version", json_string(HF_VERSION));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ======================================================================== */
/* The tokenizer                                                             */
/* ======================================================================== */

/* What is copied from tokenizer_dir, read before anything is written. */
typedef struct tokenizer_files {
    char *json;            /* tokenizer.json's bytes */
    size_t json_len;
    char *config;          /* tokenizer_config.json's, or NULL: written by us */
    size_t config_len;
    json_t *made_config;   /* the one written when the folder has none */
} tokenizer_files;

static void tokenizer_files_free(tokenizer_files *t)
{
    free(t->json);
    free(t->config);
    json_decref(t->made_config);
}

/* Adds key = the token string of id, when id is set and has a token. */
static bool set_token(json_t *o, const char *key, const clattn_tokenizer *tok, int32_t id)
{
    const char *s = id >= 0 ? clattn_tokenizer_id_to_token(tok, id) : NULL;
    return !s || set(o, key, json_string(s));
}

/* The minimal tokenizer_config.json for a folder that has only
 * tokenizer.json: transformers' fast tokenizer class, the model's length,
 * and the special tokens of the model's ids. */
static json_t *minimal_tokenizer_config(const clattn_llama_config *c,
                                        const clattn_tokenizer *tok)
{
    json_t *o = json_object();
    bool ok = o && set(o, "tokenizer_class", json_string("PreTrainedTokenizerFast")) &&
              set(o, "model_max_length", json_integer(c->max_position_embeddings)) &&
              /* clattn_tokenizer_decode's convention (and the crate's) */
              set(o, "clean_up_tokenization_spaces", json_false()) &&
              set_token(o, "bos_token", tok, c->bos_token_id) &&
              set_token(o, "eos_token", tok, c->eos_token_id) &&
              set_token(o, "pad_token", tok, c->pad_token_id);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Reads and checks tokenizer_dir: its tokenizer.json must parse as
 * clattn_tokenizer_load reads it, and fit the model's vocabulary. */
static clattn_status read_tokenizer(clattn_ctx *ctx, const char *tokenizer_dir,
                                    const clattn_llama_config *c, tokenizer_files *t)
{
    clattn_status st = read_file(ctx, tokenizer_dir, "tokenizer.json", false, &t->json,
                                 &t->json_len);
    if (st == CLATTN_OK)
        st = read_file(ctx, tokenizer_dir, "tokenizer_config.json", true, &t->config,
                       &t->config_len);
    if (st != CLATTN_OK)
        return st;
    clattn_tokenizer *tok = NULL;
    st = clattn_tokenizer_load(tokenizer_dir, &tok);
    if (st == CLATTN_ERR_OUT_OF_MEMORY)
        return clattn__fail(ctx, st, "llama_export: tokenizer_dir: %s", clattn_last_error());
    if (st != CLATTN_OK)
        return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                            "llama_export: tokenizer_dir %s: its tokenizer.json does not load "
                            "(%s): %s",
                            tokenizer_dir, clattn_status_str(st), clattn_last_error());
    int32_t n = clattn_tokenizer_vocab_size(tok);
    if (n > c->vocab_size)
        st = clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                          "llama_export: the tokenizer of %s has %d tokens, more than the "
                          "model's vocab_size %d",
                          tokenizer_dir, (int)n, (int)c->vocab_size);
    if (st == CLATTN_OK && !t->config) {
        t->made_config = minimal_tokenizer_config(c, tok);
        if (!t->made_config)
            st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    clattn_tokenizer_destroy(tok);
    return st;
}

/* ======================================================================== */
/* The folder                                                                */
/* ======================================================================== */

/* model.safetensors: the parameters under their state_dict names. The
 * parameter set is read directly, not through clattn_llama_param_refs,
 * which would allocate every gradient of a model that may never train. */
static clattn_status write_weights(clattn_llama *m, const char *dir)
{
    int32_t n = m->params.count;
    const char **names = malloc((size_t)n * sizeof *names);
    const clattn_tensor **values = malloc((size_t)n * sizeof *values);
    char *path = clattn__aprintf("%s/model.safetensors", dir);
    clattn_status st = CLATTN_OK;
    if (!names || !values || !path) {
        st = clattn__fail(m->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    } else {
        for (int32_t i = 0; i < n; i++) {
            names[i] = m->params.items[i].name;
            values[i] = m->params.items[i].value;
        }
        static const char *const keys[] = {"format"}, *const vals[] = {"pt"};
        st = clattn_weights_write(path, n, names, values, keys, vals, 1);
        /* clattn_weights_write records its message on the thread only. */
        if (st != CLATTN_OK)
            st = clattn__fail(m->ctx, st, "llama_export: %s", clattn_last_error());
    }
    free(path);
    free(values);
    free(names);
    return st;
}

clattn_status clattn_llama_export(clattn_llama *m, const char *tokenizer_dir, const char *dir)
{
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "llama_export: NULL model");
    clattn_ctx *ctx = m->ctx;
    if (!dir || !*dir)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "llama_export: dir is NULL or empty");
    if (tokenizer_dir && !*tokenizer_dir)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "llama_export: tokenizer_dir is empty (NULL: no tokenizer)");
    const clattn_llama_config *c = &m->cfg;
    tokenizer_files tok = {0};
    clattn_status st = tokenizer_dir ? read_tokenizer(ctx, tokenizer_dir, c, &tok) : CLATTN_OK;
    int digits = 0;
    json_t *config = st == CLATTN_OK ? config_json(c, &digits) : NULL;
    json_t *generation = st == CLATTN_OK ? generation_json(c) : NULL;
    if (st == CLATTN_OK && (!config || !generation))
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    if (st == CLATTN_OK)
        st = make_dirs(ctx, dir);
    /* The weights first: the largest file, the likeliest to fail. */
    if (st == CLATTN_OK)
        st = write_weights(m, dir);
    if (st == CLATTN_OK)
        st = write_json(ctx, dir, "config.json", config, digits);
    if (st == CLATTN_OK)
        st = write_json(ctx, dir, "generation_config.json", generation, 0);
    if (st == CLATTN_OK && tokenizer_dir)
        st = write_file(ctx, dir, "tokenizer.json", tok.json, tok.json_len);
    if (st == CLATTN_OK && tok.config)
        st = write_file(ctx, dir, "tokenizer_config.json", tok.config, tok.config_len);
    else if (st == CLATTN_OK && tok.made_config)
        st = write_json(ctx, dir, "tokenizer_config.json", tok.made_config, 0);
    json_decref(config);
    json_decref(generation);
    tokenizer_files_free(&tok);
    return st;
}
