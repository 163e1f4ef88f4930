/* tokenizer.c - BERT's WordPiece tokenizer, token for token as Hugging
 * Face's fast tokenizer (the tokenizers crate) computes it.
 *
 * The pipeline of one text: decode UTF-8 -> split out the added (special)
 * tokens, matched on the raw text -> for each piece between them:
 * BertNormalizer -> BertPreTokenizer (whitespace, punctuation) -> WordPiece
 * (greedy longest match first, "##" continuations) -> truncation -> the
 * post-processor's template ([CLS] ... [SEP]).
 *
 * Files are untrusted input: tokenizer.json (or vocab.txt with
 * tokenizer_config.json) is checked key by key, and anything clattn would
 * not reproduce exactly is refused by name rather than approximated. The
 * character-level half lives in unicode.c, encoding in
 * encode.c; this file loads the files. A tokenizer.json whose model is BPE
 * (the decoder LMs' tokenizers) goes to bpe_load.c for its own parts; the
 * post-processor and truncation are read here for both. */
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* The tokenizer                                                            */
/* ======================================================================== */


static uint64_t hash_bytes(const char *s, size_t len)
{
    return clattn__hash64(s, len, 0);
}

const vocab_slot *clattn__vocab_find(const clattn_tokenizer *t, const char *s, size_t len)
{
    if (!t->n_slots)
        return NULL;
    size_t mask = t->n_slots - 1;
    for (size_t i = (size_t)hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        const vocab_slot *v = &t->slots[i];
        if (!v->token)
            return NULL;
        if (v->len == len && memcmp(v->token, s, len) == 0)
            return v;
    }
}

/* Inserts or (a later duplicate line of vocab.txt, as the crate does)
 * overwrites; false when out of memory. */
bool clattn__vocab_put(clattn_tokenizer *t, const char *s, size_t len, int32_t id)
{
    size_t mask = t->n_slots - 1;
    size_t i = (size_t)hash_bytes(s, len) & mask;
    while (t->slots[i].token) {
        if (t->slots[i].len == len && memcmp(t->slots[i].token, s, len) == 0) {
            t->slots[i].id = id;
            return true;
        }
        i = (i + 1) & mask;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, s, len);
    copy[len] = '\0';
    t->slots[i] = (vocab_slot){copy, len, id};
    t->n_vocab++;
    return true;
}

bool clattn__vocab_init(clattn_tokenizer *t, size_t entries)
{
    size_t n = 64;
    while (n < entries * 2 + 1)
        n *= 2;
    t->slots = calloc(n, sizeof *t->slots);
    t->n_slots = t->slots ? n : 0;
    return t->slots != NULL;
}

void clattn_tokenizer_destroy(clattn_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_slots; i++)
        free(t->slots[i].token);
    free(t->slots);
    for (int32_t i = 0; i < t->n_added; i++) {
        free(t->added[i].cps);
        free(t->added[i].content);
    }
    free(t->added);
    free(t->prefix);
    clattn__bpe_free(t->bpe);
    free(t);
}

/* ======================================================================== */
/* Loading: shared pieces                                                   */
/* ======================================================================== */

/* A file being loaded: its JSON is read through io/json.c's reader, which
 * names the file in every message and keeps the first failure. where
 * holds a formatted prefix ("added_tokens[3]: ") that r.where points at. */
typedef struct loader {
    clattn_tokenizer *t;
    clattn__json_reader r;
    char where[64];
} loader;

/* A loader of file, reading with prefix "" and no failure yet. */
static void loader_init(loader *l, clattn_tokenizer *t, const char *file)
{
    *l = (loader){.t = t, .r = {NULL, file, "", CLATTN_OK}};
}

/* The id of a token by content: added tokens first, as the crate looks. */
static bool lookup_id(const clattn_tokenizer *t, const char *s, int32_t *id)
{
    for (int32_t i = 0; i < t->n_added; i++)
        if (strcmp(t->added[i].content, s) == 0) {
            *id = t->added[i].id;
            return true;
        }
    const vocab_slot *v = clattn__vocab_find(t, s, strlen(s));
    if (v)
        *id = v->id;
    return v != NULL;
}

static void add_token(loader *l, const char *content, int32_t id)
{
    if (l->r.st != CLATTN_OK)
        return;
    clattn_tokenizer *t = l->t;
    size_t len = strlen(content);
    if (len == 0) {
        clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "an added token is empty");
        return;
    }
    added_token *a = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *a);
    if (!a) {
        clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        return;
    }
    t->added = a;
    a = &t->added[t->n_added];
    *a = (added_token){0};
    a->cps = malloc(len * sizeof *a->cps);
    a->content = clattn__strdup(content);
    if (!a->cps || !a->content) {
        free(a->cps);
        free(a->content);
        clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        return;
    }
    a->n = clattn__utf8_decode((const unsigned char *)content, len, a->cps);
    a->id = id;
    t->n_added++;
}

static void set_template(loader *l, const int32_t *pre, int32_t n_pre, const int32_t *post,
                         int32_t n_post)
{
    clattn_tokenizer *t = l->t;
    memcpy(t->pre, pre, (size_t)n_pre * sizeof *pre);
    memcpy(t->post, post, (size_t)n_post * sizeof *post);
    t->n_pre = n_pre;
    t->n_post = n_post;
}

/* Resolves the unk token and counts the vocabulary size. */
static void finish(loader *l, const char *unk)
{
    clattn_tokenizer *t = l->t;
    if (l->r.st != CLATTN_OK)
        return;
    const vocab_slot *u = clattn__vocab_find(t, unk, strlen(unk));
    if (!u) {
        clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "the vocabulary has no unk token '%s'", unk);
        return;
    }
    t->unk_id = u->id;
    t->vocab_size = t->n_vocab;
    for (int32_t i = 0; i < t->n_added; i++)
        if (!clattn__vocab_find(t, t->added[i].content, strlen(t->added[i].content)))
            t->vocab_size++;
}

/* ======================================================================== */
/* tokenizer.json                                                           */
/* ======================================================================== */

static void read_normalizer(loader *l, json_t *n)
{
    clattn__bert_norm *o = &l->t->norm;
    if (!n || json_is_null(n)) {
        *o = (clattn__bert_norm){0};
        return;
    }
    l->r.where = "normalizer: ";
    const char *type = json_is_object(n) ? clattn__json_get_string(&l->r, n, "type", "") : "";
    if (strcmp(type, "BertNormalizer") != 0) {
        clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                          "normalizer '%s' is not supported (only BertNormalizer)", type);
        return;
    }
    static const char *const keys[] = {"type", "clean_text", "handle_chinese_chars",
                                       "strip_accents", "lowercase", NULL};
    clattn__json_check_keys(&l->r, n, keys);
    o->clean_text = clattn__json_get_bool(&l->r, n, "clean_text", true);
    o->handle_chinese_chars = clattn__json_get_bool(&l->r, n, "handle_chinese_chars", true);
    o->lowercase = clattn__json_get_bool(&l->r, n, "lowercase", true);
    /* null: strip accents when lowercasing, as BERT's uncased models do. */
    o->strip_accents = clattn__json_get_bool(&l->r, n, "strip_accents", o->lowercase);
}

static void read_model(loader *l, json_t *m, const char **unk)
{
    clattn_tokenizer *t = l->t;
    if (!json_is_object(m)) {
        clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "'model' must be an object");
        return;
    }
    l->r.where = "model: ";
    const char *type = clattn__json_get_string(&l->r, m, "type", "");
    if (strcmp(type, "WordPiece") != 0) {
        clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                          "model '%s' is not supported (only WordPiece)", type);
        return;
    }
    static const char *const keys[] = {"type", "vocab", "unk_token", "continuing_subword_prefix",
                                       "max_input_chars_per_word", NULL};
    clattn__json_check_keys(&l->r, m, keys);
    *unk = clattn__json_get_string(&l->r, m, "unk_token", "[UNK]");
    t->prefix =
        clattn__strdup(clattn__json_get_string(&l->r, m, "continuing_subword_prefix", "##"));
    t->prefix_len = t->prefix ? strlen(t->prefix) : 0;
    t->max_chars =
        (int32_t)clattn__json_get_int(&l->r, m, "max_input_chars_per_word", 100, 0, INT32_MAX);
    if (!t->prefix)
        clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    json_t *vocab = clattn__json_get_object(&l->r, m, "vocab");
    if (!vocab) {
        clattn__json_fail_key(&l->r, CLATTN_ERR_FORMAT, "vocab", "must be an object of token: id");
        return;
    }
    if (l->r.st != CLATTN_OK)
        return;
    if (!clattn__vocab_init(t, json_object_size(vocab))) {
        clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(vocab, key, value)
    {
        if (!json_is_integer(value) || json_integer_value(value) < 0 ||
            json_integer_value(value) > INT32_MAX) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT,
                              "model: vocab: the id of '%s' must be an integer from 0 "
                              "to 2147483647", key);
            return;
        }
        if (!clattn__vocab_put(t, key, strlen(key), (int32_t)json_integer_value(value))) {
            clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
            return;
        }
    }
}

static void read_added_tokens(loader *l, json_t *root)
{
    l->r.where = "";
    json_t *arr = clattn__json_get_array(&l->r, root, "added_tokens");
    if (!arr)
        return;
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a)
    {
        if (!json_is_object(a)) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "added_tokens[%zu] must be an object", i);
            return;
        }
        static const char *const keys[] = {"id",     "content",    "single_word", "lstrip",
                                           "rstrip", "normalized", "special",     NULL};
        snprintf(l->where, sizeof l->where, "added_tokens[%zu]: ", i);
        l->r.where = l->where;
        clattn__json_check_keys(&l->r, a, keys);
        const char *content = clattn__json_get_string(&l->r, a, "content", NULL);
        int64_t id = clattn__json_get_int(&l->r, a, "id", -1, 0, INT32_MAX);
        if (l->r.st != CLATTN_OK)
            return;
        if (!content || id < 0) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "%s'content' and 'id' are required",
                              l->where);
            return;
        }
        /* Matching options other than the plain one would need word
         * boundaries or matching on normalized text: refused, not guessed. */
        static const char *const flags[] = {"single_word", "lstrip", "rstrip", "normalized"};
        for (int f = 0; f < 4; f++)
            if (clattn__json_get_bool(&l->r, a, flags[f], false))
                clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                                  "%stoken '%s': \"%s\": true is not supported",
                                  l->where, content, flags[f]);
        add_token(l, content, (int32_t)id);
    }
}

/* The ids of a special token named in the template: the post-processor's
 * own table first, then the vocabulary. */
static int32_t special_ids(loader *l, json_t *table, const char *name, int32_t *ids, int32_t room)
{
    json_t *e = json_object_get(table, name);
    if (e) {
        json_t *list = json_object_get(e, "ids");
        size_t n = json_array_size(list);
        if (!json_is_array(list) || n == 0 || n > (size_t)room) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT,
                              "post_processor: special token '%s' needs 1 to %d ids",
                              name, room);
            return 0;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(list, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > INT32_MAX) {
                clattn__json_fail(&l->r, CLATTN_ERR_FORMAT,
                                  "post_processor: special token '%s': bad id", name);
                return 0;
            }
            ids[i] = (int32_t)json_integer_value(v);
        }
        return (int32_t)n;
    }
    if (room < 1 || !lookup_id(l->t, name, &ids[0])) {
        clattn__json_fail(&l->r, CLATTN_ERR_FORMAT,
                          "post_processor: unknown special token '%s'", name);
        return 0;
    }
    return 1;
}

static void read_post_processor(loader *l, json_t *p)
{
    if (!p || json_is_null(p))
        return;                 /* no special tokens at all */
    l->r.where = "post_processor: ";
    const char *type = json_is_object(p) ? clattn__json_get_string(&l->r, p, "type", "") : "";
    int32_t pre[8], post[8], n_pre = 0, n_post = 0;
    if (l->t->bpe && strcmp(type, "Sequence") == 0) {
        /* Llama 3: Sequence[ByteLevel, TemplateProcessing] */
        static const char *const keys[] = {"type", "processors", NULL};
        clattn__json_check_keys(&l->r, p, keys);
        json_t *list = clattn__json_get_array(&l->r, p, "processors");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
        {
            if (json_is_object(e) &&
                strcmp(clattn__json_get_string(&l->r, e, "type", ""), "Sequence") == 0) {
                clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                                  "post_processor: nested Sequence is not supported");
                return;
            }
            read_post_processor(l, e);
        }
        return;
    }
    if (l->t->bpe && strcmp(type, "ByteLevel") == 0) {
        /* Offsets only (trim_offsets): the ids stay as they are. */
        static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets",
                                           "use_regex", NULL};
        clattn__json_check_keys(&l->r, p, keys);
        return;
    }
    if (strcmp(type, "BertProcessing") == 0) {
        static const char *const keys[] = {"type", "sep", "cls", NULL};
        clattn__json_check_keys(&l->r, p, keys);
        json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");
        json_t *ci = json_array_get(cls, 1), *si = json_array_get(sep, 1);
        if (!json_is_integer(ci) || !json_is_integer(si) || json_integer_value(ci) < 0 ||
            json_integer_value(ci) > INT32_MAX || json_integer_value(si) < 0 ||
            json_integer_value(si) > INT32_MAX) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT,
                              "post_processor: 'cls' and 'sep' must be [token, id]");
            return;
        }
        pre[n_pre++] = (int32_t)json_integer_value(ci);
        post[n_post++] = (int32_t)json_integer_value(si);
    } else if (strcmp(type, "TemplateProcessing") == 0) {
        static const char *const keys[] = {"type", "single", "pair", "special_tokens", NULL};
        clattn__json_check_keys(&l->r, p, keys);
        json_t *single = json_object_get(p, "single");
        json_t *table = json_object_get(p, "special_tokens");
        if (!json_is_array(single)) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT,
                              "post_processor: 'single' must be an array");
            return;
        }
        bool seen_seq = false;
        size_t i;
        json_t *item;
        json_array_foreach(single, i, item)
        {
            json_t *sp = json_object_get(item, "SpecialToken");
            json_t *sq = json_object_get(item, "Sequence");
            json_t *one = sp ? sp : sq;
            json_t *type_id = json_object_get(one, "type_id");
            if ((sp != NULL) == (sq != NULL) || !json_is_object(one) ||
                !json_is_string(json_object_get(one, "id"))) {
                clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "post_processor: single[%zu] must be "
                                  "{\"SpecialToken\": {...}} or {\"Sequence\": {...}}", i);
                return;
            }
            if (type_id && !(json_is_integer(type_id) && json_integer_value(type_id) == 0)) {
                clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                                  "post_processor: single[%zu]: type_id other "
                                  "than 0 is not supported (token_type_ids are all 0)", i);
                return;
            }
            const char *id = json_string_value(json_object_get(one, "id"));
            if (sq) {
                if (seen_seq || strcmp(id, "A") != 0) {
                    clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                                      "post_processor: 'single' must hold the sequence \"A\" once");
                    return;
                }
                seen_seq = true;
            } else if (!seen_seq) {
                n_pre += special_ids(l, table, id, pre + n_pre, 8 - n_pre);
            } else {
                n_post += special_ids(l, table, id, post + n_post, 8 - n_post);
            }
            if (l->r.st != CLATTN_OK)
                return;
        }
        if (!seen_seq) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "post_processor: 'single' has no Sequence");
            return;
        }
    } else {
        clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED, "post_processor '%s' is not supported "
                          "(only TemplateProcessing and BertProcessing; for BPE also "
                          "ByteLevel and Sequence)", type);
        return;
    }
    /* Every id the template adds must be a token: an id outside the
     * vocabulary would reach the model, and nothing could decode it
     * (found by fuzz_tokenizer_load: BertProcessing's sep ["[SEP]", 6]
     * in a vocabulary without id 6). */
    for (int32_t i = 0; i < n_pre + n_post; i++) {
        int32_t id = i < n_pre ? pre[i] : post[i - n_pre];
        if (!clattn_tokenizer_id_to_token(l->t, id)) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT,
                              "post_processor: id %d is no token of the vocabulary", (int)id);
            return;
        }
    }
    set_template(l, pre, n_pre, post, n_post);
}

static void read_truncation(loader *l, json_t *root)
{
    l->r.where = "";
    json_t *tr = clattn__json_get_object(&l->r, root, "truncation");
    if (!tr)
        return;
    static const char *const keys[] = {"max_length", "strategy", "stride", "direction", NULL};
    l->r.where = "truncation: ";
    clattn__json_check_keys(&l->r, tr, keys);
    const char *dir = clattn__json_get_string(&l->r, tr, "direction", "Right");
    if (strcmp(dir, "Right") != 0)
        clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                          "truncation: direction '%s' is not supported", dir);
    /* The strategy only matters for pairs; one sequence is cut at the end. */
    l->t->max_length = (int32_t)clattn__json_get_int(&l->r, tr, "max_length", 0, 0, INT32_MAX);
}

static void load_json(loader *l)
{
    json_error_t jerr;
    json_t *root = json_load_file(l->r.file, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "line %d: %s", jerr.line, jerr.text);
        return;
    }
    if (!json_is_object(root)) {
        clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "the top level must be an object");
    } else {
        static const char *const keys[] = {"version",     "truncation",   "padding",
                                           "added_tokens", "normalizer",  "pre_tokenizer",
                                           "post_processor", "decoder",   "model", NULL};
        clattn__json_check_keys(&l->r, root, keys);
        json_t *model = json_object_get(root, "model");
        l->r.where = "model: ";
        const char *mt =
            json_is_object(model) ? clattn__json_get_string(&l->r, model, "type", "") : "";
        if (l->r.st == CLATTN_OK && !json_is_object(model)) {
            clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "'model' must be an object");
        } else if (l->r.st == CLATTN_OK && strcmp(mt, "BPE") == 0) {
            /* The decoder LMs' byte-level and SentencePiece-style BPE. */
            clattn__bpe_load(l->t, root, &l->r);
            if (l->r.st == CLATTN_OK)
                read_post_processor(l, json_object_get(root, "post_processor"));
            if (l->r.st == CLATTN_OK)
                read_truncation(l, root);
            if (l->r.st == CLATTN_OK) {
                /* tokenizer_config.json beside tokenizer.json */
                size_t n = strlen(l->r.file);
                char *cfg = clattn__aprintf("%.*s_config.json", (int)(n >= 5 ? n - 5 : n),
                                            l->r.file);
                if (!cfg)
                    clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
                else
                    clattn__bpe_config(l->t, cfg, &l->r);
                free(cfg);
            }
            json_decref(root);
            return;
        } else if (l->r.st == CLATTN_OK && strcmp(mt, "WordPiece") != 0) {
            clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                              "model '%s' is not supported (only WordPiece and BPE)", mt);
        }
        json_t *pre = json_object_get(root, "pre_tokenizer");
        l->r.where = "pre_tokenizer: ";
        const char *pt =
            json_is_object(pre) ? clattn__json_get_string(&l->r, pre, "type", "") : "null";
        if (strcmp(pt, "BertPreTokenizer") != 0)
            clattn__json_fail(&l->r, CLATTN_ERR_UNSUPPORTED,
                              "pre_tokenizer '%s' is not supported (only BertPreTokenizer)", pt);
        const char *unk = "[UNK]";
        read_normalizer(l, json_object_get(root, "normalizer"));
        read_model(l, json_object_get(root, "model"), &unk);
        read_added_tokens(l, root);
        read_post_processor(l, json_object_get(root, "post_processor"));
        read_truncation(l, root);
        /* "padding" is parsed by callers who want it: encode never pads. */
        finish(l, unk);
    }
    json_decref(root);
}

/* ======================================================================== */
/* vocab.txt + tokenizer_config.json (what transformers converts)           */
/* ======================================================================== */

/* A special token in tokenizer_config.json: a string, or an AddedToken
 * object with "content". */
static const char *config_token(loader *l, json_t *cfg, const char *key, const char *def)
{
    json_t *v = json_object_get(cfg, key);
    /* An object's messages name it by key (where), the string's by itself. */
    l->r.where = json_is_object(v) ? key : "";
    const char *s = json_is_object(v) ? clattn__json_get_string(&l->r, v, "content", def)
                                      : clattn__json_get_string(&l->r, cfg, key, def);
    l->r.where = "";
    return s;
}

static void load_vocab_txt(loader *l, const char *vocab_path, const char *config_path)
{
    clattn_tokenizer *t = l->t;
    json_t *cfg = NULL;
    FILE *cf = fopen(config_path, "rb");
    if (cf) {
        fclose(cf);
        loader cl;
        loader_init(&cl, t, config_path);
        json_error_t jerr;
        cfg = json_load_file(config_path, JSON_REJECT_DUPLICATES, &jerr);
        if (!cfg)
            clattn__json_fail(&cl.r, CLATTN_ERR_FORMAT, "line %d: %s", jerr.line, jerr.text);
        else if (!json_is_object(cfg))
            clattn__json_fail(&cl.r, CLATTN_ERR_FORMAT, "the top level must be an object");
        if (cl.r.st == CLATTN_OK) {
            const char *cls =
                clattn__json_get_string(&cl.r, cfg, "tokenizer_class", "BertTokenizer");
            if (strcmp(cls, "BertTokenizer") != 0 && strcmp(cls, "BertTokenizerFast") != 0 &&
                strcmp(cls, "DistilBertTokenizer") != 0 &&
                strcmp(cls, "DistilBertTokenizerFast") != 0)
                clattn__json_fail(&cl.r, CLATTN_ERR_UNSUPPORTED,
                                  "tokenizer_class '%s' is not supported "
                                  "(only BERT's WordPiece tokenizers)", cls);
        }
        if (cl.r.st != CLATTN_OK) {
            l->r.st = cl.r.st;
            json_decref(cfg);
            return;
        }
    }
    json_t *c = cfg ? cfg : json_object();
    loader cl;
    loader_init(&cl, t, config_path);
    t->norm.clean_text = true;
    t->norm.handle_chinese_chars = clattn__json_get_bool(&cl.r, c, "tokenize_chinese_chars", true);
    t->norm.lowercase = clattn__json_get_bool(&cl.r, c, "do_lower_case", true);
    t->norm.strip_accents = clattn__json_get_bool(&cl.r, c, "strip_accents", t->norm.lowercase);
    /* transformers writes a huge sentinel for "no limit". */
    json_t *mml = json_object_get(c, "model_max_length");
    if (json_is_integer(mml) && json_integer_value(mml) > 0 &&
        json_integer_value(mml) <= 1000000)
        t->max_length = (int32_t)json_integer_value(mml);
    const char *names[5] = {config_token(&cl, c, "unk_token", "[UNK]"),
                            config_token(&cl, c, "sep_token", "[SEP]"),
                            config_token(&cl, c, "pad_token", "[PAD]"),
                            config_token(&cl, c, "cls_token", "[CLS]"),
                            config_token(&cl, c, "mask_token", "[MASK]")};
    char *unk = clattn__strdup(names[0]), *sep = clattn__strdup(names[1]);
    char *spec[5];
    for (int i = 0; i < 5; i++)
        spec[i] = clattn__strdup(names[i]);
    json_decref(c);
    if (cl.r.st != CLATTN_OK)
        l->r.st = cl.r.st;
    t->max_chars = 100;
    t->prefix = clattn__strdup("##");
    t->prefix_len = 2;

    FILE *f = l->r.st == CLATTN_OK ? fopen(vocab_path, "rb") : NULL;
    if (l->r.st == CLATTN_OK && !f)
        clattn__json_fail(&l->r, CLATTN_ERR_IO, "cannot open: %s", strerror(errno));
    size_t size = 0;
    char *text = NULL;
    if (f) {
        if (fseek(f, 0, SEEK_END) == 0) {
            long sz = ftell(f);
            if (sz >= 0 && fseek(f, 0, SEEK_SET) == 0) {
                size = (size_t)sz;
                text = malloc(size + 1);
                if (text && fread(text, 1, size, f) != size) {
                    free(text);
                    text = NULL;
                    clattn__json_fail(&l->r, CLATTN_ERR_IO, "read failed");
                }
            }
        }
        fclose(f);
        if (!text)
            clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "cannot read the file into memory");
    }
    if (l->r.st == CLATTN_OK) {
        size_t lines = 1;
        for (size_t i = 0; i < size; i++)
            lines += text[i] == '\n';
        if (!clattn__vocab_init(t, lines) || !t->prefix || !unk || !sep)
            clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        /* Python reads vocab.txt as UTF-8 and fails on a bad byte; a line
         * that is not UTF-8 could never match a piece (texts are cleaned
         * to valid UTF-8), so it is refused, naming the line. */
        bool valid = clattn__utf8_valid((const unsigned char *)text, size);
        size_t line = 1;
        for (size_t i = 0; !valid && i < size && l->r.st == CLATTN_OK; line++) {
            size_t e = i;
            while (e < size && text[e] != '\n')
                e++;
            if (!clattn__utf8_valid((const unsigned char *)text + i, e - i))
                clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "line %zu is not valid UTF-8",
                                  line);
            i = e + 1;
        }
        int32_t id = 0;
        for (size_t i = 0; i < size && l->r.st == CLATTN_OK; id++) {
            size_t e = i;
            while (e < size && text[e] != '\n')
                e++;
            size_t n = e - i;
            /* The crate trims trailing whitespace of each line (\r too). */
            while (n > 0 && (text[i + n - 1] == ' ' || text[i + n - 1] == '\t' ||
                             text[i + n - 1] == '\r'))
                n--;
            if (id == INT32_MAX)
                clattn__json_fail(&l->r, CLATTN_ERR_FORMAT, "too many lines");
            else if (!clattn__vocab_put(t, text + i, n, id))
                clattn__json_fail(&l->r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
            i = e + 1;
        }
    }
    free(text);
    /* The special tokens become added tokens; one the vocabulary lacks gets
     * the next free id, as transformers adds it. */
    int32_t next = t->n_vocab;
    for (int i = 0; i < 5 && l->r.st == CLATTN_OK; i++) {
        int32_t id;
        if (!spec[i] || !*spec[i])
            continue;
        bool dup = false;
        for (int32_t k = 0; k < t->n_added; k++)
            dup = dup || strcmp(t->added[k].content, spec[i]) == 0;
        if (dup)
            continue;
        if (i == 0 && !clattn__vocab_find(t, spec[i], strlen(spec[i])))
            break;              /* finish() reports the missing unk token */
        if (!lookup_id(t, spec[i], &id))
            id = next++;
        add_token(l, spec[i], id);
    }
    if (l->r.st == CLATTN_OK) {
        int32_t pre, post;
        loader vl;
        loader_init(&vl, t, vocab_path);
        finish(&vl, unk ? unk : "[UNK]");
        l->r.st = vl.r.st;
        if (l->r.st == CLATTN_OK && lookup_id(t, spec[3] ? spec[3] : "[CLS]", &pre) &&
            lookup_id(t, sep, &post))
            set_template(l, &pre, 1, &post, 1);
    }
    free(unk);
    free(sep);
    for (int i = 0; i < 5; i++)
        free(spec[i]);
}

/* ======================================================================== */
/* Public: loading and queries                                              */
/* ======================================================================== */

static bool file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

clattn_status clattn_tokenizer_load(const char *dir, clattn_tokenizer **out)
{
    clattn__clear_thread_error();
    if (out)
        *out = NULL;
    if (!dir || !out)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "tokenizer_load: dir and out must not be NULL");
    char *json_path = clattn__aprintf("%s/tokenizer.json", dir);
    char *vocab_path = clattn__aprintf("%s/vocab.txt", dir);
    char *config_path = clattn__aprintf("%s/tokenizer_config.json", dir);
    clattn_tokenizer *t = calloc(1, sizeof *t);
    clattn_status st = CLATTN_OK;
    if (t)
        t->bos_id = t->eos_id = -1;
    if (!json_path || !vocab_path || !config_path || !t) {
        st = clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    } else if (file_exists(json_path)) {
        loader l;
        loader_init(&l, t, json_path);
        load_json(&l);
        st = l.r.st;
    } else if (file_exists(vocab_path)) {
        loader l;
        loader_init(&l, t, vocab_path);
        load_vocab_txt(&l, vocab_path, config_path);
        st = l.r.st;
    } else {
        st = clattn__fail(NULL, CLATTN_ERR_IO,
                          "%s: no tokenizer: neither tokenizer.json nor vocab.txt can be opened",
                          dir);
    }
    free(json_path);
    free(vocab_path);
    free(config_path);
    if (st != CLATTN_OK) {
        clattn_tokenizer_destroy(t);
        return st;
    }
    *out = t;
    return CLATTN_OK;
}

int32_t clattn_tokenizer_token_id(const clattn_tokenizer *t, const char *token)
{
    int32_t id;
    if (!t || !token || !lookup_id(t, token, &id))
        return -1;
    return id;
}

int32_t clattn_tokenizer_vocab_size(const clattn_tokenizer *t)
{
    return t ? t->vocab_size : 0;
}

int32_t clattn_tokenizer_max_length(const clattn_tokenizer *t)
{
    return t ? t->max_length : 0;
}


bool clattn_tokenizer_is_special(const clattn_tokenizer *t, int64_t id)
{
    if (!t || id < 0)
        return false;
    if (t->bpe)
        return id < t->bpe->n_ids && (t->bpe->flags[id] & ID_SPECIAL);
    for (int32_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id)
            return true;        /* WordPiece's added tokens are all special */
    return false;
}

int32_t clattn_tokenizer_bos_id(const clattn_tokenizer *t)
{
    return t ? t->bos_id : -1;
}

int32_t clattn_tokenizer_eos_id(const clattn_tokenizer *t)
{
    return t ? t->eos_id : -1;
}

const char *clattn_tokenizer_id_to_token(const clattn_tokenizer *t, int64_t id)
{
    if (!t || id < 0)
        return NULL;
    if (t->bpe)
        return id < t->bpe->n_ids ? t->bpe->tok[id] : NULL;
    for (int32_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id)
            return t->added[i].content;
    /* WordPiece keeps its vocabulary by string only: a scan of the table
     * (labels for a few tokens, not a hot path). */
    for (size_t i = 0; i < t->n_slots; i++)
        if (t->slots[i].token && t->slots[i].id == id)
            return t->slots[i].token;
    return NULL;
}
