/* bpe_load.c - loading the BPE parts of tokenizer.json (normalizer,
 * pre_tokenizer, model, decoder, added_tokens) and tokenizer_config.json's
 * bos/eos and add_bos_token/add_eos_token, for bpe.c (encoding) and
 * decode.c. Files are untrusted input: every setting is checked by key,
 * and anything clattn would not reproduce exactly is refused by name. */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Loading                                                                  */
/* ======================================================================== */

void clattn__bpe_free(clattn__bpe *b)
{
    if (!b)
        return;
    for (int32_t i = 0; i < b->n_ids; i++)
        free(b->tok[i]);
    free(b->tok);
    free(b->tok_len);
    free(b->flags);
    free(b->byte_of);
    free(b->merges);
    for (int i = 0; i < b->n_norm; i++) {
        free(b->norm[i].from);
        free(b->norm[i].to);
    }
    for (int i = 0; i < b->n_dec; i++) {
        free(b->dec[i].from);
        free(b->dec[i].to);
    }
    free(b);
}

static void oom(clattn__json_reader *r)
{
    clattn__json_fail(r, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
}

/* s as code points (malloc'ed; *n of them); NULL when out of memory. */
static uint32_t *to_cps(const char *s, size_t *n)
{
    size_t len = strlen(s);
    uint32_t *c = malloc((len + 1) * sizeof *c);
    if (c)
        *n = clattn__utf8_decode_lossy((const unsigned char *)s, len, c);
    return c;
}

/* The one character of a setting such as Metaspace's replacement. */
static uint32_t one_char(clattn__json_reader *r, json_t *o, const char *key, const char *def)
{
    const char *s = clattn__json_get_string(r, o, key, def);
    uint32_t c[8];
    size_t len = s ? strlen(s) : 0;
    if (r->st != CLATTN_OK)
        return 0;
    if (len == 0 || len > 4 || clattn__utf8_decode_lossy((const unsigned char *)s, len, c) != 1) {
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, key, "must be one character");
        return 0;
    }
    return c[0];
}

/* A Replace's pattern: {"String": s}; a Regex pattern is refused. */
static const char *string_pattern(clattn__json_reader *r, json_t *o)
{
    json_t *p = json_object_get(o, "pattern");
    json_t *str = json_object_get(p, "String");
    if (!json_is_object(p) || !json_is_string(str) || json_object_size(p) != 1) {
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                          "%s'pattern' must be {\"String\": ...} (regex patterns are not "
                          "supported here)", r->where);
        return NULL;
    }
    return json_string_value(str);
}

static int prepend_scheme(clattn__json_reader *r, json_t *o)
{
    const char *s = clattn__json_get_string(r, o, "prepend_scheme", NULL);
    if (!s) /* older files: add_prefix_space */
        return clattn__json_get_bool(r, o, "add_prefix_space", true) ? PREPEND_ALWAYS
                                                                     : PREPEND_NEVER;
    if (strcmp(s, "always") == 0)
        return PREPEND_ALWAYS;
    if (strcmp(s, "first") == 0)
        return PREPEND_FIRST;
    if (strcmp(s, "never") == 0)
        return PREPEND_NEVER;
    clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "%sprepend_scheme '%s' is not supported",
                      r->where, s);
    return PREPEND_NEVER;
}

static void read_norm_one(clattn__bpe *b, clattn__json_reader *r, json_t *n)
{
    const char *type = json_is_object(n) ? clattn__json_get_string(r, n, "type", "") : "";
    if (r->st != CLATTN_OK)
        return;
    if (strcmp(type, "Sequence") == 0) {
        static const char *const keys[] = {"type", "normalizers", NULL};
        clattn__json_check_keys(r, n, keys);
        json_t *list = clattn__json_get_array(r, n, "normalizers");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) read_norm_one(b, r, e);
        return;
    }
    if (b->n_norm == 8) {
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "normalizer: more than 8 steps");
        return;
    }
    bpe_norm_op *op = &b->norm[b->n_norm];
    *op = (bpe_norm_op){0};
    if (strcmp(type, "NFC") == 0) {
        static const char *const keys[] = {"type", NULL};
        clattn__json_check_keys(r, n, keys);
        op->kind = BPE_NORM_NFC;
    } else if (strcmp(type, "Prepend") == 0) {
        static const char *const keys[] = {"type", "prepend", NULL};
        clattn__json_check_keys(r, n, keys);
        const char *s = clattn__json_get_string(r, n, "prepend", "");
        op->kind = BPE_NORM_PREPEND;
        if (r->st == CLATTN_OK && !(op->to = to_cps(s, &op->n_to)))
            oom(r);
    } else if (strcmp(type, "Replace") == 0) {
        static const char *const keys[] = {"type", "pattern", "content", NULL};
        clattn__json_check_keys(r, n, keys);
        const char *from = string_pattern(r, n);
        const char *to = clattn__json_get_string(r, n, "content", "");
        op->kind = BPE_NORM_REPLACE;
        if (r->st != CLATTN_OK)
            return;
        if (!*from) {
            clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "normalizer: Replace of ''");
            return;
        }
        op->from = to_cps(from, &op->n_from);
        op->to = to_cps(to, &op->n_to);
        if (!op->from || !op->to) {
            free(op->from);
            free(op->to);
            oom(r);
            return;
        }
    } else {
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                          "normalizer '%s' is not supported (BPE: NFC, Prepend, Replace, "
                          "Sequence of them)", type);
        return;
    }
    if (r->st == CLATTN_OK)
        b->n_norm++;
    else {
        free(op->from);
        free(op->to);
    }
}

static void read_pre_one(clattn__bpe *b, clattn__json_reader *r, json_t *p, bool top)
{
    const char *type = json_is_object(p) ? clattn__json_get_string(r, p, "type", "") : "";
    if (r->st != CLATTN_OK)
        return;
    if (top && strcmp(type, "Sequence") == 0) {
        static const char *const keys[] = {"type", "pretokenizers", NULL};
        clattn__json_check_keys(r, p, keys);
        json_t *list = clattn__json_get_array(r, p, "pretokenizers");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) read_pre_one(b, r, e, false);
        return;
    }
    if (b->n_pre == 8) {
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "pre_tokenizer: more than 8 steps");
        return;
    }
    if (b->byte_level) {
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                          "pre_tokenizer: '%s' after ByteLevel is not supported", type);
        return;
    }
    bpe_pre_op *op = &b->pre[b->n_pre];
    *op = (bpe_pre_op){0};
    if (strcmp(type, "ByteLevel") == 0) {
        static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets",
                                           "use_regex", NULL};
        clattn__json_check_keys(r, p, keys);
        op->kind = BPE_PRE_BYTELEVEL;
        op->add_prefix_space = clattn__json_get_bool(r, p, "add_prefix_space", true);
        op->use_regex = clattn__json_get_bool(r, p, "use_regex", true);
        b->byte_level = true;  /* trim_offsets: offsets only */
    } else if (strcmp(type, "Split") == 0) {
        static const char *const keys[] = {"type", "pattern", "behavior", "invert", NULL};
        clattn__json_check_keys(r, p, keys);
        op->kind = BPE_PRE_SPLIT;
        json_t *pat = json_object_get(p, "pattern");
        json_t *re = json_object_get(pat, "Regex");
        const char *behavior = clattn__json_get_string(r, p, "behavior", "");
        bool invert = clattn__json_get_bool(r, p, "invert", false);
        if (r->st != CLATTN_OK)
            return;
        if (!json_is_string(re)) {
            clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                              "pre_tokenizer: Split: only {\"Regex\": ...} patterns are "
                              "supported");
            return;
        }
        if (!clattn__split_re_lookup(json_string_value(re), &op->re)) {
            clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                              "pre_tokenizer: Split pattern '%s' is not supported (only the "
                              "GPT-2, Llama 3 and Qwen2 patterns)", json_string_value(re));
            return;
        }
        if (strcmp(behavior, "Isolated") != 0 || invert) {
            clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                              "pre_tokenizer: Split with behavior '%s'%s is not supported "
                              "(only Isolated, invert false)", behavior,
                              invert ? ", invert true" : "");
            return;
        }
    } else if (strcmp(type, "Digits") == 0) {
        /* SmolLM: Sequence[Digits, ByteLevel] */
        static const char *const keys[] = {"type", "individual_digits", NULL};
        clattn__json_check_keys(r, p, keys);
        op->kind = BPE_PRE_DIGITS;
        op->individual_digits = clattn__json_get_bool(r, p, "individual_digits", false);
    } else if (strcmp(type, "Metaspace") == 0) {
        static const char *const keys[] = {"type", "replacement", "prepend_scheme", "split",
                                           "add_prefix_space", "str_rep", NULL};
        clattn__json_check_keys(r, p, keys);
        op->kind = BPE_PRE_METASPACE;
        op->replacement = one_char(r, p, "replacement", "\xe2\x96\x81");
        op->prepend_scheme = prepend_scheme(r, p);
        op->split = clattn__json_get_bool(r, p, "split", true);
    } else {
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                          "pre_tokenizer '%s' is not supported (BPE: ByteLevel, Split, "
                          "Metaspace, Digits, Sequence of them)", type);
        return;
    }
    if (r->st == CLATTN_OK)
        b->n_pre++;
}

static void read_dec_one(clattn__bpe *b, clattn__json_reader *r, json_t *d, bool top)
{
    const char *type = json_is_object(d) ? clattn__json_get_string(r, d, "type", "") : "";
    if (r->st != CLATTN_OK)
        return;
    if (top && strcmp(type, "Sequence") == 0) {
        static const char *const keys[] = {"type", "decoders", NULL};
        clattn__json_check_keys(r, d, keys);
        json_t *list = clattn__json_get_array(r, d, "decoders");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) read_dec_one(b, r, e, false);
        return;
    }
    if (b->n_dec == 8) {
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "decoder: more than 8 steps");
        return;
    }
    bpe_dec_op *op = &b->dec[b->n_dec];
    *op = (bpe_dec_op){0};
    if (strcmp(type, "ByteLevel") == 0) {
        static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets",
                                           "use_regex", NULL};
        clattn__json_check_keys(r, d, keys);
        op->kind = BPE_DEC_BYTELEVEL;
    } else if (strcmp(type, "Replace") == 0) {
        static const char *const keys[] = {"type", "pattern", "content", NULL};
        clattn__json_check_keys(r, d, keys);
        const char *from = string_pattern(r, d);
        const char *to = clattn__json_get_string(r, d, "content", "");
        if (r->st != CLATTN_OK)
            return;
        if (!*from) {
            clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "decoder: Replace of ''");
            return;
        }
        op->kind = BPE_DEC_REPLACE;
        op->from = clattn__strdup(from);
        op->to = clattn__strdup(to);
        if (!op->from || !op->to) {
            free(op->from);
            free(op->to);
            oom(r);
            return;
        }
    } else if (strcmp(type, "ByteFallback") == 0 || strcmp(type, "Fuse") == 0) {
        static const char *const keys[] = {"type", NULL};
        clattn__json_check_keys(r, d, keys);
        op->kind = type[0] == 'B' ? BPE_DEC_BYTEFALLBACK : BPE_DEC_FUSE;
    } else if (strcmp(type, "Strip") == 0) {
        static const char *const keys[] = {"type", "content", "start", "stop", NULL};
        clattn__json_check_keys(r, d, keys);
        op->kind = BPE_DEC_STRIP;
        op->content = one_char(r, d, "content", " ");
        op->start = (int32_t)clattn__json_get_int(r, d, "start", 0, 0, 1000);
        op->stop = (int32_t)clattn__json_get_int(r, d, "stop", 0, 0, 1000);
    } else if (strcmp(type, "Metaspace") == 0) {
        static const char *const keys[] = {"type", "replacement", "prepend_scheme", "split",
                                           "add_prefix_space", "str_rep", NULL};
        clattn__json_check_keys(r, d, keys);
        op->kind = BPE_DEC_METASPACE;
        op->content = one_char(r, d, "replacement", "\xe2\x96\x81");
        op->prepend_scheme = prepend_scheme(r, d);
    } else {
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                          "decoder '%s' is not supported (BPE: ByteLevel, Metaspace, Replace, "
                          "ByteFallback, Fuse, Strip, Sequence of them)", type);
        return;
    }
    if (r->st == CLATTN_OK)
        b->n_dec++;
}

static void read_merges(clattn_tokenizer *t, clattn__json_reader *r, json_t *list)
{
    clattn__bpe *b = t->bpe;
    size_t n = json_array_size(list), slots = 64;
    while (slots < 2 * n + 1)
        slots *= 2;
    b->merges = malloc(slots * sizeof *b->merges);
    if (!b->merges) {
        oom(r);
        return;
    }
    b->n_merge_slots = slots;
    for (size_t i = 0; i < slots; i++)
        b->merges[i].key = UINT64_MAX;
    char *joined = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m)
    {
        /* "a b" (the first space splits) or ["a", "b"] */
        const char *a = NULL, *c = NULL;
        size_t na = 0, nc = 0;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (sp) {
                na = (size_t)(sp - a);
                c = sp + 1;
                nc = strlen(c);
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            c = json_string_value(json_array_get(m, 1));
            na = strlen(a);
            nc = strlen(c);
        }
        if (!c || i >= INT32_MAX) {
            clattn__json_fail(r, CLATTN_ERR_FORMAT,
                              "model: merges[%zu] must be \"a b\" or [\"a\", \"b\"]", i);
            break;
        }
        char *j = realloc(joined, na + nc + 1);
        if (!j) {
            oom(r);
            break;
        }
        joined = j;
        memcpy(joined, a, na);
        memcpy(joined + na, c, nc);
        int32_t x = clattn__bpe_vocab_id(t, a, na), y = clattn__bpe_vocab_id(t, c, nc);
        int32_t z = clattn__bpe_vocab_id(t, joined, na + nc);
        if (x < 0 || y < 0 || z < 0) {
            joined[na + nc] = '\0';
            clattn__json_fail(r, CLATTN_ERR_FORMAT,
                              "model: merges[%zu]: '%s' is not in the vocabulary", i,
                              x < 0 ? a : y < 0 ? c : joined);
            break;
        }
        uint64_t key = (uint64_t)(uint32_t)x << 32 | (uint32_t)y;
        size_t mask = slots - 1, s = (size_t)clattn__bpe_merge_hash(key) & mask;
        while (b->merges[s].key != UINT64_MAX && b->merges[s].key != key)
            s = (s + 1) & mask;
        if (b->merges[s].key == key)
            continue;           /* a repeated merge keeps its first rank, as the crate */
        b->merges[s] = (bpe_merge){key, (int32_t)i, z};
    }
    free(joined);
}

static void read_model(clattn_tokenizer *t, clattn__json_reader *r, json_t *m)
{
    clattn__bpe *b = t->bpe;
    r->where = "model: ";
    static const char *const keys[] = {"type", "dropout", "unk_token", "continuing_subword_prefix",
                                       "end_of_word_suffix", "fuse_unk", "byte_fallback",
                                       "ignore_merges", "vocab", "merges", NULL};
    clattn__json_check_keys(r, m, keys);
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout))
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "model: dropout is not supported");
    static const char *const nulls[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(m, nulls[k]);
        if (v && !json_is_null(v) && !(json_is_string(v) && !*json_string_value(v)))
            clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "model: %s is not supported",
                              nulls[k]);
    }
    b->fuse_unk = clattn__json_get_bool(r, m, "fuse_unk", false);
    b->byte_fallback = clattn__json_get_bool(r, m, "byte_fallback", false);
    b->ignore_merges = clattn__json_get_bool(r, m, "ignore_merges", false);
    const char *unk = clattn__json_get_string(r, m, "unk_token", NULL);
    json_t *vocab = clattn__json_get_object(r, m, "vocab");
    json_t *merges = clattn__json_get_array(r, m, "merges");
    if (r->st != CLATTN_OK)
        return;
    if (!vocab) {
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "vocab", "must be an object of token: id");
        return;
    }
    if (!clattn__vocab_init(t, json_object_size(vocab))) {
        oom(r);
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(vocab, key, value)
    {
        if (!json_is_integer(value) || json_integer_value(value) < 0 ||
            json_integer_value(value) >= INT32_MAX) {
            clattn__json_fail(r, CLATTN_ERR_FORMAT,
                              "model: vocab: the id of '%s' must be an integer from 0 to "
                              "2147483646", key);
            return;
        }
        if (!clattn__vocab_put(t, key, strlen(key), (int32_t)json_integer_value(value))) {
            oom(r);
            return;
        }
    }
    b->unk_id = -1;
    if (unk) {
        b->unk_id = clattn__bpe_vocab_id(t, unk, strlen(unk));
        if (b->unk_id < 0) {
            clattn__json_fail(r, CLATTN_ERR_FORMAT, "model: unk_token '%s' is not in the vocab",
                              unk);
            return;
        }
    }
    for (int k = 0; k < 256; k++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", k);
        b->byte_id[k] = clattn__bpe_vocab_id(t, name, 6);
    }
    read_merges(t, r, merges);
}

static void read_added(clattn_tokenizer *t, clattn__json_reader *r, json_t *root)
{
    r->where = "";
    json_t *arr = clattn__json_get_array(r, root, "added_tokens");
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a)
    {
        if (r->st != CLATTN_OK)
            return;
        if (!json_is_object(a)) {
            clattn__json_fail(r, CLATTN_ERR_FORMAT, "added_tokens[%zu] must be an object", i);
            return;
        }
        static const char *const keys[] = {"id",     "content",    "single_word", "lstrip",
                                           "rstrip", "normalized", "special",     NULL};
        char w[64];
        snprintf(w, sizeof w, "added_tokens[%zu]: ", i);
        r->where = w;
        clattn__json_check_keys(r, a, keys);
        const char *content = clattn__json_get_string(r, a, "content", NULL);
        int64_t id = clattn__json_get_int(r, a, "id", -1, 0, INT32_MAX - 1);
        bool single = clattn__json_get_bool(r, a, "single_word", false);
        bool special = clattn__json_get_bool(r, a, "special", false);
        added_token tok = {
            .id = (int32_t)id,
            .special = special,
            .lstrip = clattn__json_get_bool(r, a, "lstrip", false),
            .rstrip = clattn__json_get_bool(r, a, "rstrip", false),
            /* The crate's default: normalized unless special. */
            .normalized = clattn__json_get_bool(r, a, "normalized", !special),
            .single_word = single,
        };
        if (r->st == CLATTN_OK && (!content || !*content || id < 0))
            clattn__json_fail(r, CLATTN_ERR_FORMAT, "%s'content' (not empty) and 'id' are "
                              "required", w);
        r->where = "";
        if (r->st != CLATTN_OK)
            return;
        added_token *grown = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *grown);
        if (!grown) {
            oom(r);
            return;
        }
        t->added = grown;
        tok.content = clattn__strdup(content);
        tok.cps = to_cps(content, &tok.n);
        if (!tok.content || !tok.cps) {
            free(tok.content);
            free(tok.cps);
            oom(r);
            return;
        }
        if (tok.normalized && t->bpe->n_norm) {
            /* The crate matches the normalized content on the normalized
             * text (Llama 2's Prepend makes "<x>" "▁<x>"). */
            clattn__u32vec v = {0};
            bool done = clattn__bpe_normalize(t->bpe, tok.cps, tok.n, &v);
            if (!done || v.len == 0) {
                free(v.data);
                free(tok.content);
                free(tok.cps);
                if (done)
                    clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "added_tokens[%zu]: '%s' "
                                      "normalizes to nothing", i, content);
                else
                    oom(r);
                return;
            }
            free(tok.cps);
            tok.cps = v.data;
            tok.n = v.len;
        }
        t->bpe->first_cp[(tok.cps[0] & 4095) >> 6] |= 1ull << (tok.cps[0] & 63);
        t->added[t->n_added++] = tok;
    }
}

/* The id -> token table (added tokens over the vocabulary, as the crate's
 * id_to_token looks) and each id's flags. */
static void build_ids(clattn_tokenizer *t, clattn__json_reader *r)
{
    clattn__bpe *b = t->bpe;
    int32_t top = -1;
    for (size_t i = 0; i < t->n_slots; i++)
        if (t->slots[i].token && t->slots[i].id > top)
            top = t->slots[i].id;
    for (int32_t i = 0; i < t->n_added; i++)
        if (t->added[i].id > top)
            top = t->added[i].id;
    /* The table is indexed by id, so an id far past the token count would
     * allocate gigabytes for a few tokens (found by fuzz_tokenizer_load:
     * 3 GB). Real vocabularies are dense; allow generous gaps only. */
    size_t count = 0;
    for (size_t i = 0; i < t->n_slots; i++)
        count += t->slots[i].token != NULL;
    count += (size_t)t->n_added;
    if ((size_t)top >= 16 * count + 65536) {
        clattn__json_fail(r, CLATTN_ERR_FORMAT,
                          "model: id %d is far past the %zu tokens (ids must be nearly dense)",
                          (int)top, count);
        return;
    }
    b->n_ids = top + 1;
    size_t n = (size_t)b->n_ids + 1;
    b->tok = calloc(n, sizeof *b->tok);
    b->tok_len = calloc(n, sizeof *b->tok_len);
    b->flags = calloc(n, 1);
    b->byte_of = calloc(n, 1);
    if (!b->tok || !b->tok_len || !b->flags || !b->byte_of) {
        oom(r);
        return;
    }
    for (size_t i = 0; i < t->n_slots; i++) {
        const vocab_slot *v = &t->slots[i];
        if (!v->token || b->tok[v->id])
            continue;           /* two tokens with one id: the first one found */
        if (!(b->tok[v->id] = clattn__strdup(v->token))) {
            oom(r);
            return;
        }
        b->tok_len[v->id] = (uint32_t)v->len;
    }
    for (int32_t i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        free(b->tok[a->id]);
        if (!(b->tok[a->id] = clattn__strdup(a->content))) {
            oom(r);
            return;
        }
        b->tok_len[a->id] = (uint32_t)strlen(a->content);
        b->flags[a->id] |= ID_ADDED | (a->special ? ID_SPECIAL : 0);
    }
    /* The ByteFallback decoder's byte tokens: any token spelt <0xNN>. */
    for (int32_t i = 0; i < b->n_ids; i++) {
        const char *s = b->tok[i];
        unsigned v;
        char tail;
        if (s && b->tok_len[i] == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' &&
            s[5] == '>' && sscanf(s + 3, "%2x%c", &v, &tail) == 2 && tail == '>' &&
            strchr("0123456789ABCDEFabcdef", s[3]) && strchr("0123456789ABCDEFabcdef", s[4])) {
            b->flags[i] |= ID_BYTE;
            b->byte_of[i] = (unsigned char)v;
        }
    }
    int32_t total = 0;
    for (int32_t i = 0; i < b->n_ids; i++)
        total += b->tok[i] != NULL;
    t->vocab_size = total;
}

void clattn__bpe_load(clattn_tokenizer *t, json_t *root, clattn__json_reader *r)
{
    clattn__bpe *b = calloc(1, sizeof *b);
    if (!b) {
        oom(r);
        return;
    }
    t->bpe = b;
    t->bos_id = t->eos_id = -1;
    t->unk_id = -1;
    json_t *n = json_object_get(root, "normalizer");
    r->where = "normalizer: ";
    if (n && !json_is_null(n))
        read_norm_one(b, r, n);
    json_t *p = json_object_get(root, "pre_tokenizer");
    r->where = "pre_tokenizer: ";
    if (p && !json_is_null(p))
        read_pre_one(b, r, p, true);
    json_t *d = json_object_get(root, "decoder");
    r->where = "decoder: ";
    b->dec_null = !d || json_is_null(d);
    if (!b->dec_null)
        read_dec_one(b, r, d, true);
    if (r->st != CLATTN_OK)
        return;
    read_model(t, r, json_object_get(root, "model"));
    t->unk_id = b->unk_id;
    if (r->st != CLATTN_OK)
        return;
    read_added(t, r, root);
    if (r->st == CLATTN_OK)
        build_ids(t, r);
    r->where = "";
}

/* A special token of tokenizer_config.json: a string, an AddedToken
 * object ({"content": ...}) or null. */
static const char *config_token(clattn__json_reader *r, json_t *cfg, const char *key,
                                const char *def)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!v)
        return def;
    if (json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, key, "must be a string, an object with "
                              "'content', or null");
        return NULL;
    }
    return json_string_value(v);
}

/* The id of token s: added tokens first, then the vocabulary; -1. */
static int32_t token_id(const clattn_tokenizer *t, const char *s)
{
    for (int32_t i = 0; i < t->n_added; i++)
        if (strcmp(t->added[i].content, s) == 0)
            return t->added[i].id;
    return clattn__bpe_vocab_id(t, s, strlen(s));
}

void clattn__bpe_config(clattn_tokenizer *t, const char *config_path, clattn__json_reader *outer)
{
    FILE *f = fopen(config_path, "rb");
    if (!f)
        return;                 /* no tokenizer_config.json: tokenizer.json decides */
    fclose(f);
    clattn__json_reader rr = {NULL, config_path, "", CLATTN_OK}, *r = &rr;
    json_error_t jerr;
    json_t *cfg = json_load_file(config_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!cfg)
        clattn__json_fail(r, CLATTN_ERR_FORMAT, "line %d: %s", jerr.line, jerr.text);
    else if (!json_is_object(cfg))
        clattn__json_fail(r, CLATTN_ERR_FORMAT, "the top level must be an object");
    if (r->st != CLATTN_OK) {
        json_decref(cfg);
        outer->st = r->st;
        return;
    }
    const char *cls = clattn__json_get_string(r, cfg, "tokenizer_class", "");
    /* The transformers classes whose __init__ rebuilds the post-processor
     * from add_bos_token / add_eos_token (update_post_processor), and
     * their defaults; for every other class tokenizer.json's post-processor
     * decides and these keys do nothing. */
    static const struct {
        const char *name;
        bool bos, eos;                  /* add_bos_token, add_eos_token defaults */
        const char *bos_tok, *eos_tok;  /* bos_token, eos_token defaults */
    } rebuild[] = {
        {"LlamaTokenizer", true, false, "<s>", "</s>"},
        {"LlamaTokenizerFast", true, false, "<s>", "</s>"},
        {"CodeLlamaTokenizer", true, false, "<s>", "</s>"},
        {"CodeLlamaTokenizerFast", true, false, "<s>", "</s>"},
        {"GemmaTokenizer", true, false, "<bos>", "<eos>"},
        {"GemmaTokenizerFast", true, false, "<bos>", "<eos>"},
        {"GPTNeoXTokenizer", false, false, "<|endoftext|>", "<|endoftext|>"},
        {"GPTNeoXTokenizerFast", false, false, "<|endoftext|>", "<|endoftext|>"}};
    int which = -1;
    for (int i = 0; i < (int)(sizeof rebuild / sizeof rebuild[0]); i++)
        if (strcmp(cls, rebuild[i].name) == 0)
            which = i;
    const char *bos = config_token(r, cfg, "bos_token", which >= 0 ? rebuild[which].bos_tok : NULL);
    const char *eos = config_token(r, cfg, "eos_token", which >= 0 ? rebuild[which].eos_tok : NULL);
    if (bos)
        t->bos_id = token_id(t, bos);
    if (eos)
        t->eos_id = token_id(t, eos);
    if (which >= 0 && r->st == CLATTN_OK) {
        bool add_bos = clattn__json_get_bool(r, cfg, "add_bos_token", rebuild[which].bos);
        bool add_eos = clattn__json_get_bool(r, cfg, "add_eos_token", rebuild[which].eos);
        if ((add_bos && t->bos_id < 0) || (add_eos && t->eos_id < 0))
            clattn__json_fail(r, CLATTN_ERR_FORMAT, "add_%s_token is true but %s_token '%s' "
                              "is not a token", add_bos && t->bos_id < 0 ? "bos" : "eos",
                              add_bos && t->bos_id < 0 ? "bos" : "eos",
                              add_bos && t->bos_id < 0 ? (bos ? bos : "null")
                                                       : (eos ? eos : "null"));
        t->n_pre = t->n_post = 0;
        if (add_bos)
            t->pre[t->n_pre++] = t->bos_id;
        if (add_eos)
            t->post[t->n_post++] = t->eos_id;
    }
    json_t *mml = json_object_get(cfg, "model_max_length");
    (void)mml;  /* transformers does not truncate by default: neither does clattn */
    json_decref(cfg);
    if (r->st != CLATTN_OK)
        outer->st = r->st;
}

