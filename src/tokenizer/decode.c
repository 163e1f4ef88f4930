/* decode.c - ids back to text for the BPE tokenizers, as the tokenizers
 * crate's decode: the tokens of the ids (added tokens included, special
 * ones left out when asked; ids without a token skipped), then the
 * decoder chain (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
 * or none: tokens joined by ' '), concatenated. And the stream decoder,
 * which gives the same text piece by piece as ids arrive. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* ---- growable strings ------------------------------------------------- */

typedef struct str {
    char *s;
    size_t len, cap;
} str;

static bool str_add(str *v, const char *s, size_t n)
{
    if (v->len + n + 1 > v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->len + n + 1)
            cap *= 2;
        char *p = realloc(v->s, cap);
        if (!p)
            return false;
        v->s = p;
        v->cap = cap;
    }
    memcpy(v->s + v->len, s, n);
    v->len += n;
    v->s[v->len] = '\0';
    return true;
}

/* A list of tokens being decoded. */
typedef struct toks {
    str *t;
    size_t n, cap;
} toks;

static void toks_free(toks *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->t[i].s);
    free(l->t);
    *l = (toks){0};
}

static bool toks_add(toks *l, const char *s, size_t n)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        str *p = realloc(l->t, cap * sizeof *p);
        if (!p)
            return false;
        l->t = p;
        l->cap = cap;
    }
    l->t[l->n] = (str){0};
    if (!str_add(&l->t[l->n], s, n)) {
        free(l->t[l->n].s);
        return false;
    }
    l->n++;
    return true;
}

static const char FFFD[] = "\xEF\xBF\xBD";

/* <0xNN>: the byte, or -1. */
static int byte_token(const str *t)
{
    static const char hex[] = "0123456789ABCDEF0123456789abcdef";
    if (t->len != 6 || memcmp(t->s, "<0x", 3) != 0 || t->s[5] != '>')
        return -1;
    const char *a = memchr(hex, t->s[3], 32), *b = memchr(hex, t->s[4], 32);
    if (!a || !b || !t->s[3] || !t->s[4])
        return -1;
    return (int)(((a - hex) & 15) << 4 | ((b - hex) & 15));
}

/* Replaces every from with to in t. */
static bool replace(str *t, const char *from, const char *to)
{
    size_t nf = strlen(from), nt = strlen(to);
    str o = {0};
    bool ok = str_add(&o, "", 0);
    for (size_t i = 0; ok && i < t->len;) {
        if (i + nf <= t->len && memcmp(t->s + i, from, nf) == 0) {
            ok = str_add(&o, to, nt);
            i += nf;
        } else {
            ok = str_add(&o, t->s + i, 1);
            i++;
        }
    }
    if (!ok) {
        free(o.s);
        return false;
    }
    free(t->s);
    *t = o;
    return true;
}

/* The UTF-8 length of the character at s (valid UTF-8). */
static size_t char_len(const char *s)
{
    unsigned c = (unsigned char)*s;
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static uint32_t char_at(const char *s, size_t *len)
{
    uint32_t c[4];
    *len = char_len(s);
    clattn__utf8_decode_lossy((const unsigned char *)s, *len, c);
    return c[0];
}

/* One decoder step over l. first: l starts the text (Strip's start and
 * Metaspace's first token are only at the start); *fused: Fuse has run. */
static bool dec_step(const bpe_dec_op *op, toks *l, bool first, bool *fused)
{
    toks o = {0};
    bool ok = true;
    switch (op->kind) {
    case BPE_DEC_REPLACE:
        for (size_t i = 0; i < l->n && ok; i++)
            ok = replace(&l->t[i], op->from, op->to);
        return ok;
    case BPE_DEC_FUSE: {
        str all = {0};
        ok = str_add(&all, "", 0);
        for (size_t i = 0; i < l->n && ok; i++)
            ok = str_add(&all, l->t[i].s, l->t[i].len);
        ok = ok && toks_add(&o, all.s, all.len);
        free(all.s);
        *fused = true;
        break;
    }
    case BPE_DEC_BYTELEVEL: {
        str bytes = {0};
        ok = str_add(&bytes, "", 0);
        for (size_t i = 0; i < l->n && ok; i++) {
            const str *t = &l->t[i];
            size_t start = bytes.len;
            bool all = true;
            for (size_t j = 0; j < t->len && all && ok;) {
                size_t n;
                int b = clattn__char_to_byte(char_at(t->s + j, &n));
                if (b < 0) {
                    all = false;
                    break;
                }
                char c = (char)b;
                ok = str_add(&bytes, &c, 1);
                j += n;
            }
            if (ok && !all) {   /* not byte-level characters: as they are */
                bytes.len = start;
                ok = str_add(&bytes, t->s, t->len);
            }
        }
        /* String::from_utf8_lossy over all of it. */
        uint32_t *cps = ok ? malloc((bytes.len + 1) * sizeof *cps) : NULL;
        str text = {0};
        ok = cps && str_add(&text, "", 0);
        size_t m = ok ? clattn__utf8_decode_lossy((unsigned char *)bytes.s, bytes.len, cps) : 0;
        for (size_t i = 0; i < m && ok; i++) {
            char u[4];
            ok = str_add(&text, u, clattn__utf8_encode(cps[i], u));
        }
        ok = ok && toks_add(&o, text.s, text.len);
        free(cps);
        free(text.s);
        free(bytes.s);
        *fused = true;
        break;
    }
    case BPE_DEC_BYTEFALLBACK: {
        /* A run of <0xNN> tokens becomes its text when it is valid UTF-8,
         * else one U+FFFD per byte. */
        str run = {0};
        size_t nrun = 0;
        ok = str_add(&run, "", 0);
        for (size_t i = 0; i <= l->n && ok; i++) {
            int b = i < l->n ? byte_token(&l->t[i]) : -1;
            if (b >= 0) {
                char c = (char)b;
                ok = str_add(&run, &c, 1);
                nrun++;
                continue;
            }
            if (nrun) {
                if (clattn__utf8_valid((unsigned char *)run.s, run.len))
                    ok = toks_add(&o, run.s, run.len);
                else
                    for (size_t k = 0; k < nrun && ok; k++)
                        ok = toks_add(&o, FFFD, 3);
                run.len = 0;
                nrun = 0;
            }
            if (ok && i < l->n)
                ok = toks_add(&o, l->t[i].s, l->t[i].len);
        }
        free(run.s);
        break;
    }
    case BPE_DEC_STRIP:
        for (size_t i = 0; i < l->n; i++) {
            str *t = &l->t[i];
            size_t a = 0, e = t->len;
            char u[4];
            size_t cl = clattn__utf8_encode(op->content, u);
            /* After Fuse the token is the text: its start is the text's
             * start only when this window starts the text. */
            int32_t start = (*fused && !first) ? 0 : op->start;
            for (int32_t k = 0; k < start && a + cl <= e && memcmp(t->s + a, u, cl) == 0; k++)
                a += cl;
            for (int32_t k = 0; k < op->stop && e >= a + cl && memcmp(t->s + e - cl, u, cl) == 0;
                 k++)
                e -= cl;
            memmove(t->s, t->s + a, e - a);
            t->len = e - a;
            t->s[t->len] = '\0';
        }
        return true;
    case BPE_DEC_METASPACE: {
        char u[4];
        size_t cl = clattn__utf8_encode(op->content, u);
        for (size_t i = 0; i < l->n && ok; i++) {
            const char *to = (i == 0 && first && op->prepend_scheme != PREPEND_NEVER) ? "" : " ";
            char from[5];
            memcpy(from, u, cl);
            from[cl] = '\0';
            ok = replace(&l->t[i], from, to);
        }
        return ok;
    }
    }
    if (!ok) {
        toks_free(&o);
        return false;
    }
    toks_free(l);
    *l = o;
    return true;
}

/* Decodes ids[0..n) (all with tokens, the skipped ones left out) into out. */
static bool decode_list(const clattn__bpe *b, const int64_t *ids, size_t n, bool first, str *out)
{
    toks l = {0};
    bool ok = str_add(out, "", 0);
    for (size_t i = 0; i < n && ok; i++)
        ok = toks_add(&l, b->tok[ids[i]], b->tok_len[ids[i]]);
    if (ok && b->dec_null) {
        for (size_t i = 0; i < l.n && ok; i++)
            ok = (i == 0 && first ? true : str_add(out, " ", 1)) &&
                 str_add(out, l.t[i].s, l.t[i].len);
        toks_free(&l);
        return ok;
    }
    bool fused = false;
    for (int k = 0; k < b->n_dec && ok; k++)
        ok = dec_step(&b->dec[k], &l, first, &fused);
    for (size_t i = 0; i < l.n && ok; i++)
        ok = str_add(out, l.t[i].s, l.t[i].len);
    toks_free(&l);
    return ok;
}

/* Whether id takes part in the decode. */
static bool kept(const clattn__bpe *b, int64_t id, bool skip_special)
{
    return id < b->n_ids && b->tok[id] && !(skip_special && (b->flags[id] & ID_SPECIAL));
}

/* Gives p[0..n) to the caller: text (capacity bytes) and a NUL, *len. */
static clattn_status put_text(const char *fn, const char *p, size_t n, char *text,
                              size_t capacity, size_t *len)
{
    *len = n;
    if (!text && capacity == 0)
        return CLATTN_OK;
    if (capacity < n + 1)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "%s: the text needs %zu bytes with its NUL, capacity is %zu", fn,
                            n + 1, capacity);
    if (n)
        memcpy(text, p, n);
    text[n] = '\0';
    return CLATTN_OK;
}

clattn_status clattn_tokenizer_decode(const clattn_tokenizer *t, const int64_t *ids, int32_t n,
                                      bool skip_special, char *text, size_t capacity,
                                      size_t *len)
{
    clattn__clear_thread_error();
    if (!t || !len || n < 0 || (!ids && n > 0) || (!text && capacity > 0))
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "tokenizer_decode: tokenizer, len and (for n > 0) ids must not be "
                            "NULL, n >= 0; text may be NULL only with capacity 0");
    if (!t->bpe)
        return clattn__fail(NULL, CLATTN_ERR_UNSUPPORTED,
                            "tokenizer_decode: only BPE tokenizers decode (this is WordPiece)");
    int64_t *keep = malloc(((size_t)n + 1) * sizeof *keep);
    if (!keep)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "tokenizer_decode: out of memory");
    size_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] < 0) {
            free(keep);
            return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                                "tokenizer_decode: ids[%d] = %lld is negative", (int)i,
                                (long long)ids[i]);
        }
        if (kept(t->bpe, ids[i], skip_special))
            keep[m++] = ids[i];
    }
    str s = {0};
    bool ok = decode_list(t->bpe, keep, m, true, &s);
    free(keep);
    clattn_status st = ok ? put_text("tokenizer_decode", s.s, s.len, text, capacity, len)
                          : clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY,
                                         "tokenizer_decode: out of host memory");
    free(s.s);
    return st;
}

/* ---- the stream decoder ------------------------------------------------ */

/* It decodes a window of the latest ids and gives what is new since the
 * last call, holding back what later ids could still change: trailing
 * U+FFFD of a ByteLevel decoder (an incomplete UTF-8 sequence), and a
 * trailing run of byte tokens of a ByteFallback decoder (the whole run
 * becomes U+FFFDs if any of it is invalid). When nothing is held back the
 * window starts afresh (first false from then on), so a push costs the
 * window, not the whole text. */
struct clattn_detokenizer {
    const clattn_tokenizer *t;
    bool skip_special;
    bool first;                 /* the window starts the text */
    bool byte_level, byte_fallback, never_reset;
    int64_t *win;
    size_t n, cap;
    size_t emitted;             /* bytes of the window's text given out */
};

clattn_status clattn_detokenizer_create(const clattn_tokenizer *t, bool skip_special,
                                        clattn_detokenizer **out)
{
    clattn__clear_thread_error();
    if (out)
        *out = NULL;
    if (!t || !out)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "detokenizer_create: tokenizer and out must not be NULL");
    if (!t->bpe)
        return clattn__fail(NULL, CLATTN_ERR_UNSUPPORTED,
                            "detokenizer_create: only BPE tokenizers decode (this is WordPiece)");
    clattn_detokenizer *d = calloc(1, sizeof *d);
    if (!d)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "detokenizer_create: out of memory");
    d->t = t;
    d->skip_special = skip_special;
    d->first = true;
    for (int k = 0; k < t->bpe->n_dec; k++) {
        const bpe_dec_op *op = &t->bpe->dec[k];
        d->byte_level |= op->kind == BPE_DEC_BYTELEVEL;
        d->byte_fallback |= op->kind == BPE_DEC_BYTEFALLBACK;
        /* A Strip of the end changes with every id: keep the whole text. */
        d->never_reset |= op->kind == BPE_DEC_STRIP && op->stop > 0;
    }
    *out = d;
    return CLATTN_OK;
}

void clattn_detokenizer_destroy(clattn_detokenizer *d)
{
    if (!d)
        return;
    free(d->win);
    free(d);
}

/* The new text of the window: into out; final: give everything. */
static clattn_status emit(clattn_detokenizer *d, bool final, const char *fn, char *text,
                          size_t capacity, size_t *len)
{
    const clattn__bpe *b = d->t->bpe;
    size_t stable = d->n;
    if (!final && d->byte_fallback)
        while (stable > 0 && (b->flags[d->win[stable - 1]] & ID_BYTE))
            stable--;
    str s = {0};
    if (!decode_list(b, d->win, stable, d->first, &s)) {
        free(s.s);
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    }
    size_t end = s.len;
    if (!final && d->byte_level)
        while (end >= d->emitted + 3 && memcmp(s.s + end - 3, FFFD, 3) == 0)
            end -= 3;
    if (end < d->emitted)
        end = d->emitted;   /* cannot happen: the held-back part only grows */
    clattn_status st = put_text(fn, s.s + d->emitted, end - d->emitted, text, capacity, len);
    size_t total = s.len;
    free(s.s);
    if (st != CLATTN_OK || !text)
        return st;          /* measured only, or no room: nothing changes */
    d->emitted = end;
    if (final || (stable == d->n && end == total && !d->never_reset)) {
        /* After a flush the next id starts a new text. */
        d->first = final || (d->first && d->n == 0);
        d->n = 0;
        d->emitted = 0;
    }
    return CLATTN_OK;
}

clattn_status clattn_detokenizer_push(clattn_detokenizer *d, int64_t id, char *text,
                                      size_t capacity, size_t *len)
{
    clattn__clear_thread_error();
    if (!d || !len || (!text && capacity > 0))
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "detokenizer_push: detokenizer and len must not be NULL");
    if (id < 0)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "detokenizer_push: id %lld is "
                            "negative", (long long)id);
    if (!kept(d->t->bpe, id, d->skip_special)) {
        *len = 0;
        if (text && capacity)
            text[0] = '\0';
        return CLATTN_OK;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 32;
        int64_t *w = realloc(d->win, cap * sizeof *w);
        if (!w)
            return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "detokenizer_push: out of memory");
        d->win = w;
        d->cap = cap;
    }
    d->win[d->n++] = id;
    clattn_status st = emit(d, false, "detokenizer_push", text, capacity, len);
    if (st != CLATTN_OK || !text)
        d->n--;             /* as if never pushed: the caller may retry */
    return st;
}

clattn_status clattn_detokenizer_flush(clattn_detokenizer *d, char *text, size_t capacity,
                                       size_t *len)
{
    clattn__clear_thread_error();
    if (!d || !len || (!text && capacity > 0))
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "detokenizer_flush: detokenizer and len must not be NULL");
    return emit(d, true, "detokenizer_flush", text, capacity, len);
}
