/* encode.c - encoding one text with a loaded tokenizer: added
 * tokens matched on the raw text, then BertNormalizer, BertPreTokenizer and
 * WordPiece for the pieces between them (BPE: bpe.c instead), truncation
 * and the template. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Encoding                                                                 */
/* ======================================================================== */

typedef struct idvec {
    int64_t *data;
    size_t len, cap;
} idvec;

static bool id_push(idvec *v, int64_t id)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        int64_t *p = realloc(v->data, cap * sizeof *p);
        if (!p)
            return false;
        v->data = p;
        v->cap = cap;
    }
    v->data[v->len++] = id;
    return true;
}

/* Scratch of one encode call. */
typedef struct encoder {
    const clattn_tokenizer *t;
    idvec ids;
    clattn__u32vec norm;
    char *buf;                  /* prefix + the word in UTF-8 */
    size_t *offs;               /* byte offset of each char of the word */
    size_t buf_cap;
} encoder;

/* WordPiece on one word (n code points): greedy longest match first; a
 * word with a piece that matches nothing, or longer than max_chars, is one
 * unk token. */
static bool wordpiece(encoder *e, const uint32_t *w, size_t n)
{
    const clattn_tokenizer *t = e->t;
    if (n > (size_t)t->max_chars)
        return id_push(&e->ids, t->unk_id);
    size_t need = 4 * n;
    if (need > e->buf_cap) {
        char *b = realloc(e->buf, 2 * need + t->prefix_len);
        if (b)
            e->buf = b;
        size_t *o = realloc(e->offs, (n + 1) * sizeof *o);
        if (o)
            e->offs = o;
        if (!b || !o)
            return false;
        e->buf_cap = need;
    }
    /* buf: the word in UTF-8, then room for prefix + piece. */
    char *word = e->buf, *key = e->buf + need;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        e->offs[i] = bytes;
        bytes += clattn__utf8_encode(w[i], word + bytes);
    }
    e->offs[n] = bytes;
    memcpy(key, t->prefix, t->prefix_len);
    size_t first = e->ids.len;
    for (size_t start = 0; start < n;) {
        const vocab_slot *hit = NULL;
        size_t end = n;
        for (; end > start && !hit; end--) {
            size_t len = e->offs[end] - e->offs[start];
            if (start == 0) {
                hit = clattn__vocab_find(t, word, len);
            } else {
                memcpy(key + t->prefix_len, word + e->offs[start], len);
                hit = clattn__vocab_find(t, key, t->prefix_len + len);
            }
        }
        if (!hit) {
            e->ids.len = first;
            return id_push(&e->ids, t->unk_id);
        }
        if (!id_push(&e->ids, hit->id))
            return false;
        start = end + 1;        /* the loop decremented end past the match */
    }
    return true;
}

/* Normalizes and pre-tokenizes one stretch of text between added tokens. */
static bool encode_segment(encoder *e, const uint32_t *s, size_t n)
{
    e->norm.len = 0;
    if (!clattn__bert_normalize(&e->t->norm, s, n, &e->norm))
        return false;
    const uint32_t *c = e->norm.data;
    size_t m = e->norm.len, word = 0;
    for (size_t i = 0; i <= m; i++) {
        bool end = i == m;
        bool ws = !end && clattn__is_bert_whitespace(c[i]);
        bool punct = !end && !ws && clattn__is_bert_punct(c[i]);
        if (end || ws || punct) {
            if (i > word && !wordpiece(e, c + word, i - word))
                return false;
            if (punct && !wordpiece(e, c + i, 1))
                return false;
            word = i + 1;
        }
    }
    return true;
}

/* The longest added token matching at s[0..n) (leftmost-longest, as the
 * crate's Aho-Corasick matcher); NULL when none. */
static const added_token *match_added(const clattn_tokenizer *t, const uint32_t *s, size_t n)
{
    const added_token *best = NULL;
    for (int32_t k = 0; k < t->n_added; k++) {
        const added_token *a = &t->added[k];
        if (a->n <= n && (!best || a->n > best->n) && memcmp(a->cps, s, a->n * sizeof *s) == 0)
            best = a;
    }
    return best;
}

/* Truncates the pieces to limit (0: none) less the specials, wraps them in
 * the template and writes them out; frees v. */
static clattn_status finish_ids(const clattn_tokenizer *t, idvec *v, int32_t limit, int32_t n_pre,
                                int32_t n_post, int64_t *ids, int32_t capacity, int32_t *count)
{
    int32_t specials = n_pre + n_post;
    size_t pieces = v->len;
    if (limit > 0 && pieces > (size_t)(limit - specials))
        pieces = (size_t)(limit - specials);
    if (pieces > (size_t)(INT32_MAX - specials)) {
        free(v->data);
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "tokenizer_encode: %zu tokens do not fit an int32_t count", pieces);
    }
    int32_t total = (int32_t)pieces + specials;
    if (ids && total > capacity) {
        free(v->data);
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "tokenizer_encode: %d ids do not fit capacity %d", (int)total,
                            (int)capacity);
    }
    if (ids) {
        int32_t k = 0;
        for (int32_t i = 0; i < n_pre; i++)
            ids[k++] = t->pre[i];
        for (size_t i = 0; i < pieces; i++)
            ids[k++] = v->data[i];
        for (int32_t i = 0; i < n_post; i++)
            ids[k++] = t->post[i];
    }
    *count = total;
    free(v->data);
    return CLATTN_OK;
}

clattn_status clattn_tokenizer_encode(const clattn_tokenizer *t, const char *utf8, size_t len,
                                      int32_t max_len, int64_t *ids, int32_t capacity,
                                      int32_t *count)
{
    return clattn_tokenizer_encode_ex(t, utf8, len, true, max_len, ids, capacity, count);
}

clattn_status clattn_tokenizer_encode_ex(const clattn_tokenizer *t, const char *utf8, size_t len,
                                         bool add_special, int32_t max_len, int64_t *ids,
                                         int32_t capacity, int32_t *count)
{
    clattn__clear_thread_error();
    if (!t || !count || (!utf8 && len > 0) || capacity < 0 || (!ids && capacity > 0))
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "tokenizer_encode: tokenizer, count and (for len > 0) utf8 must not "
                            "be NULL; ids may be NULL only with capacity 0");
    if (max_len < 0)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "tokenizer_encode: max_len %d is negative", (int)max_len);
    int32_t limit = max_len > 0 ? max_len : t->max_length;
    int32_t n_pre = add_special ? t->n_pre : 0, n_post = add_special ? t->n_post : 0;
    int32_t specials = n_pre + n_post;
    if (limit > 0 && limit < specials)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "tokenizer_encode: max_len %d cannot hold the %d special tokens",
                            (int)limit, (int)specials);
    if (len > SIZE_MAX / sizeof(uint32_t) - 1)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "tokenizer_encode: text too long");
    encoder e = {.t = t};
    if (t->bpe) {
        /* BPE: its own pipeline (bpe.c); truncation and template below. */
        if (!clattn__bpe_encode(t, utf8 ? utf8 : "", len, &e.ids.data, &e.ids.len, &e.ids.cap)) {
            free(e.ids.data);
            return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY,
                                "tokenizer_encode: out of host memory");
        }
        return finish_ids(t, &e.ids, limit, n_pre, n_post, ids, capacity, count);
    }
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    bool ok = cps != NULL;
    size_t n = ok ? clattn__utf8_decode((const unsigned char *)utf8, len, cps) : 0;
    size_t seg = 0;
    for (size_t i = 0; ok && i < n;) {
        const added_token *a = t->n_added ? match_added(t, cps + i, n - i) : NULL;
        if (!a) {
            i++;
            continue;
        }
        ok = encode_segment(&e, cps + seg, i - seg) && id_push(&e.ids, a->id);
        i += a->n;
        seg = i;
    }
    if (ok)
        ok = encode_segment(&e, cps + seg, n - seg);
    free(cps);
    free(e.norm.data);
    free(e.buf);
    free(e.offs);
    if (!ok) {
        free(e.ids.data);
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "tokenizer_encode: out of host memory");
    }
    return finish_ids(t, &e.ids, limit, n_pre, n_post, ids, capacity, count);
}
