/* bpe.c - the BPE tokenizers of decoder language models (GPT-2, Llama 2
 * and 3, Qwen2, Mistral, SmolLM, ...), id for id as Hugging Face's
 * tokenizers crate computes them: encoding one text.
 *
 * The pipeline of one text, as the crate runs it: decode UTF-8 (invalid
 * bytes as String::from_utf8_lossy) -> split out the added tokens that are
 * not "normalized" (leftmost, longest; lstrip/rstrip take the whitespace
 * beside them) -> per remaining piece: normalizer (NFC, Prepend, Replace)
 * -> split out the "normalized" added tokens -> pre-tokenizer (Split with
 * a known regex, ByteLevel, Metaspace, Digits) -> BPE on each word (ignore_merges,
 * merges by rank, byte_fallback, unk with fuse_unk). The template and
 * truncation are encode.c's; loading is bpe_load.c's. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ======================================================================== */
/* Lookups shared with bpe_load.c                                          */
/* ======================================================================== */

uint64_t clattn__bpe_merge_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return key;
}

const bpe_merge *clattn__bpe_merge_find(const clattn__bpe *b, int32_t x, int32_t y)
{
    if (!b->n_merge_slots)
        return NULL;
    uint64_t key = (uint64_t)(uint32_t)x << 32 | (uint32_t)y;
    size_t mask = b->n_merge_slots - 1;
    for (size_t i = (size_t)clattn__bpe_merge_hash(key) & mask;; i = (i + 1) & mask) {
        if (b->merges[i].key == UINT64_MAX)
            return NULL;
        if (b->merges[i].key == key)
            return &b->merges[i];
    }
}

int32_t clattn__bpe_vocab_id(const clattn_tokenizer *t, const char *s, size_t len)
{
    const vocab_slot *v = clattn__vocab_find(t, s, len);
    return v ? v->id : -1;
}

/* ======================================================================== */
/* Encoding                                                                 */
/* ======================================================================== */

typedef struct piece {
    size_t off, len;            /* in the pool */
    bool at_start;              /* begins at offset 0 of the original text */
} piece;

typedef struct pieces {
    piece *p;
    size_t n, cap;
} pieces;

typedef struct enc {
    const clattn_tokenizer *t;
    const clattn__bpe *b;
    int64_t **ids;
    size_t *n_ids, *cap_ids;
    clattn__u32vec pool;        /* code points of all pieces */
    pieces cur, next;
    char *word;                 /* the word being encoded, UTF-8 */
    size_t word_cap;
    size_t *cstart;             /* byte offset of each character of word */
    size_t cstart_cap;
    /* merge scratch */
    int32_t *sym;               /* symbol ids */
    int32_t *prev, *nxt;        /* the list */
    uint64_t *heap;             /* (rank << 32 | pos) */
    int32_t *heap_id;           /* the merged id of each heap entry */
    size_t sym_cap;
} enc;

static bool push_id(enc *e, int64_t id)
{
    if (*e->n_ids == *e->cap_ids) {
        size_t cap = *e->cap_ids ? *e->cap_ids * 2 : 64;
        int64_t *p = realloc(*e->ids, cap * sizeof *p);
        if (!p)
            return false;
        *e->ids = p;
        *e->cap_ids = cap;
    }
    (*e->ids)[(*e->n_ids)++] = id;
    return true;
}

static bool piece_push(pieces *v, piece p)
{
    if (p.len == 0)
        return true;            /* the crate drops empty splits */
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        piece *q = realloc(v->p, cap * sizeof *q);
        if (!q)
            return false;
        v->p = q;
        v->cap = cap;
    }
    v->p[v->n++] = p;
    return true;
}

/* Appends c[0..n) to the pool; its offset in *off. */
static bool pool_add(enc *e, const uint32_t *c, size_t n, size_t *off)
{
    if (!clattn__u32_reserve(&e->pool, n + 1))
        return false;
    *off = e->pool.len;
    memcpy(e->pool.data + e->pool.len, c, n * sizeof *c);
    e->pool.len += n;
    return true;
}

static bool grow_word(enc *e, size_t bytes, size_t chars)
{
    if (bytes > e->word_cap) {
        char *w = realloc(e->word, bytes);
        if (!w)
            return false;
        e->word = w;
        e->word_cap = bytes;
    }
    if (chars + 1 > e->cstart_cap) {
        size_t *c = realloc(e->cstart, (chars + 1) * sizeof *c);
        if (!c)
            return false;
        e->cstart = c;
        e->cstart_cap = chars + 1;
    }
    if (chars > e->sym_cap) {
        size_t n = chars * 2;
        int32_t *s = realloc(e->sym, n * sizeof *s);
        if (s)
            e->sym = s;
        int32_t *p = realloc(e->prev, n * sizeof *p);
        if (p)
            e->prev = p;
        int32_t *q = realloc(e->nxt, n * sizeof *q);
        if (q)
            e->nxt = q;
        uint64_t *h = realloc(e->heap, n * sizeof *h);
        if (h)
            e->heap = h;
        int32_t *hi = realloc(e->heap_id, n * sizeof *hi);
        if (hi)
            e->heap_id = hi;
        if (!s || !p || !q || !h || !hi)
            return false;
        e->sym_cap = n;
    }
    return true;
}

/* ---- the merge heap: (rank, position) smallest first ---- */

static void heap_push(enc *e, size_t *n, uint64_t key, int32_t id)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (e->heap[up] <= key)
            break;
        e->heap[i] = e->heap[up];
        e->heap_id[i] = e->heap_id[up];
        i = up;
    }
    e->heap[i] = key;
    e->heap_id[i] = id;
}

static void heap_pop(enc *e, size_t *n)
{
    uint64_t key = e->heap[--*n];
    int32_t id = e->heap_id[*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && e->heap[c + 1] < e->heap[c])
            c++;
        if (e->heap[c] >= key)
            break;
        e->heap[i] = e->heap[c];
        e->heap_id[i] = e->heap_id[c];
        i = c;
    }
    e->heap[i] = key;
    e->heap_id[i] = id;
}

static void heap_add_pair(enc *e, size_t *hn, int32_t pos)
{
    int32_t q = e->nxt[pos];
    if (q < 0)
        return;
    const bpe_merge *m = clattn__bpe_merge_find(e->b, e->sym[pos], e->sym[q]);
    if (m)
        heap_push(e, hn, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)pos, m->id);
}

/* BPE on the word e->word (nc characters at e->cstart): the crate's
 * merge_word then merge_all. */
static bool bpe_word(enc *e, size_t nc)
{
    const clattn__bpe *b = e->b;
    size_t bytes = e->cstart[nc];
    if (b->ignore_merges) {
        int32_t id = clattn__bpe_vocab_id(e->t, e->word, bytes);
        if (id >= 0)
            return push_id(e, id);
    }
    /* At most one symbol per byte; the heap holds at most ns - 1 pairs
     * plus one per merge: 2 * bytes entries. */
    if (!grow_word(e, e->word_cap, 2 * bytes + 2))
        return false;
    /* One symbol per character; byte_fallback gives the bytes of an
     * unknown character; else unk (consecutive ones fused when fuse_unk). */
    size_t ns = 0;
    bool unk_open = false;
    for (size_t i = 0; i < nc; i++) {
        size_t len = e->cstart[i + 1] - e->cstart[i];
        const char *c = e->word + e->cstart[i];
        int32_t id = clattn__bpe_vocab_id(e->t, c, len);
        if (id >= 0) {
            e->sym[ns++] = id;
            unk_open = false;
            continue;
        }
        if (b->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < len; k++)
                all = all && b->byte_id[(unsigned char)c[k]] >= 0;
            if (all) {
                for (size_t k = 0; k < len; k++)
                    e->sym[ns++] = b->byte_id[(unsigned char)c[k]];
                unk_open = false;
                continue;
            }
        }
        if (b->unk_id < 0)
            continue;           /* no unk token: the character is dropped */
        if (!(unk_open && b->fuse_unk))
            e->sym[ns++] = b->unk_id;
        unk_open = true;
    }
    if (ns == 0)
        return true;
    for (size_t i = 0; i < ns; i++) {
        e->prev[i] = (int32_t)i - 1;
        e->nxt[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        heap_add_pair(e, &hn, (int32_t)i);
    while (hn) {
        uint64_t top = e->heap[0];
        int32_t id = e->heap_id[0];
        heap_pop(e, &hn);
        int32_t pos = (int32_t)(uint32_t)top;
        int32_t q = e->sym[pos] < 0 ? -1 : e->nxt[pos];
        if (q < 0)
            continue;           /* merged away, or now last */
        const bpe_merge *m = clattn__bpe_merge_find(b, e->sym[pos], e->sym[q]);
        if (!m || m->id != id)
            continue;           /* stale: the pair changed since */
        e->sym[pos] = id;
        e->sym[q] = -1;
        e->nxt[pos] = e->nxt[q];
        if (e->nxt[q] >= 0)
            e->prev[e->nxt[q]] = pos;
        if (e->prev[pos] >= 0)
            heap_add_pair(e, &hn, e->prev[pos]);
        heap_add_pair(e, &hn, pos);
    }
    for (int32_t i = 0; i >= 0; i = e->nxt[i])
        if (!push_id(e, e->sym[i]))
            return false;
    return true;
}

/* The model on one pre-tokenized word (code points). */
static bool model_word(enc *e, const uint32_t *w, size_t n)
{
    size_t most = e->b->byte_level ? 8 * n : 4 * n;
    if (!grow_word(e, most + 1, e->b->byte_level ? 4 * n : n))
        return false;
    size_t bytes = 0, nc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!e->b->byte_level) {
            e->cstart[nc++] = bytes;
            bytes += clattn__utf8_encode(w[i], e->word + bytes);
            continue;
        }
        char u[4];
        size_t k = clattn__utf8_encode(w[i], u);
        for (size_t j = 0; j < k; j++) {
            e->cstart[nc++] = bytes;
            bytes += clattn__utf8_encode(clattn__byte_to_char((unsigned char)u[j]),
                                         e->word + bytes);
        }
    }
    e->cstart[nc] = bytes;
    return bpe_word(e, nc);
}

/* One pre-tokenizer step over e->cur into e->next. */
static bool pre_step(enc *e, const bpe_pre_op *op)
{
    e->next.n = 0;
    for (size_t k = 0; k < e->cur.n; k++) {
        piece p = e->cur.p[k];
        if (op->kind == BPE_PRE_BYTELEVEL && op->add_prefix_space &&
            e->pool.data[p.off] != ' ') {
            size_t off;
            uint32_t sp = ' ';
            if (!pool_add(e, &sp, 1, &off) || !clattn__u32_reserve(&e->pool, p.len))
                return false;
            memcpy(e->pool.data + e->pool.len, e->pool.data + p.off, p.len * sizeof(uint32_t));
            e->pool.len += p.len;
            p.off = off;
            p.len++;
        }
        if (op->kind == BPE_PRE_METASPACE) {
            uint32_t r = op->replacement;
            bool prepend = (op->prepend_scheme == PREPEND_ALWAYS ||
                            (op->prepend_scheme == PREPEND_FIRST && p.at_start));
            size_t off;
            if (!clattn__u32_reserve(&e->pool, p.len + 1))
                return false;
            off = e->pool.len;
            const uint32_t *src = e->pool.data + p.off;
            uint32_t *dst = e->pool.data + off;
            size_t m = 0;
            if (prepend && !(src[0] == ' ' || src[0] == r))
                dst[m++] = r;
            for (size_t i = 0; i < p.len; i++)
                dst[m++] = src[i] == ' ' ? r : src[i];
            e->pool.len += m;
            p.off = off;
            p.len = m;
        }
        const uint32_t *s = e->pool.data + p.off;
        if (op->kind == BPE_PRE_SPLIT || (op->kind == BPE_PRE_BYTELEVEL && op->use_regex)) {
            clattn__split_re re = op->kind == BPE_PRE_SPLIT ? op->re : CLATTN__RE_GPT2;
            for (size_t i = 0; i < p.len;) {
                size_t m = clattn__split_re_match(re, s, p.len, i);
                if (!piece_push(&e->next, (piece){p.off + i, m, p.at_start && i == 0}))
                    return false;
                i += m;
            }
        } else if (op->kind == BPE_PRE_DIGITS) {
            /* Rust's char::is_numeric (N*): each digit alone (individual),
             * or runs of them, and the stretches between. */
            for (size_t i = 0; i < p.len;) {
                bool num = clattn__re_number(s[i]);
                size_t j = i + 1;
                if (!num || !op->individual_digits)
                    while (j < p.len && clattn__re_number(s[j]) == num)
                        j++;
                if (!piece_push(&e->next, (piece){p.off + i, j - i, p.at_start && i == 0}))
                    return false;
                i = j;
            }
        } else if (op->kind == BPE_PRE_METASPACE && op->split) {
            /* MergedWithNext: each replacement starts a word. */
            size_t start = 0;
            for (size_t i = 1; i <= p.len; i++)
                if (i == p.len || s[i] == op->replacement) {
                    if (!piece_push(&e->next,
                                    (piece){p.off + start, i - start, p.at_start && start == 0}))
                        return false;
                    start = i;
                }
        } else if (!piece_push(&e->next, p)) {
            return false;
        }
    }
    pieces tmp = e->cur;
    e->cur = e->next;
    e->next = tmp;
    return true;
}

/* Pre-tokenizes and encodes s[0..n) (normalized). */
static bool encode_words(enc *e, const uint32_t *s, size_t n, bool at_start)
{
    size_t off;
    e->pool.len = 0;
    e->cur.n = 0;
    if (!pool_add(e, s, n, &off) || !piece_push(&e->cur, (piece){off, n, at_start}))
        return false;
    for (int k = 0; k < e->b->n_pre; k++)
        if (!pre_step(e, &e->b->pre[k]))
            return false;
    for (size_t k = 0; k < e->cur.n; k++)
        if (!model_word(e, e->pool.data + e->cur.p[k].off, e->cur.p[k].len))
            return false;
    return true;
}

static bool is_ws(uint32_t c)
{
    return clattn__re_space(c);  /* Rust's char::is_whitespace: White_Space */
}

/* Rust regex's \w, for single_word: letters, marks, decimal and letter
 * numbers, connector punctuation, ZWNJ and ZWJ. (Approximately: \w is
 * Alphabetic, which also holds a few symbols such as the circled letters.) */
static bool is_word_char(uint32_t c)
{
    if (c == 0x200C || c == 0x200D)
        return true;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return clattn__re_letter(c) || k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC ||
           k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL ||
           k == UTF8PROC_CATEGORY_PC;
}

/* The added token (of the kind normalized) matching leftmost-longest in
 * s[from..n), as the crate's Aho-Corasick search: its index, with the span
 * it takes (lstrip/rstrip spread it over the whitespace beside it, not
 * before from); -1 when none. A single_word match next to a word character
 * is dropped and the search goes on after it. */
static int32_t find_added(const clattn_tokenizer *t, bool normalized, const uint32_t *s,
                          size_t from, size_t n, size_t *start, size_t *end)
{
    const uint64_t *first = t->bpe->first_cp;
    for (size_t i = from; i < n; i++) {
        /* Most characters start no added token: one bit tells. */
        if (!(first[(s[i] & 4095) >> 6] >> (s[i] & 63) & 1))
            continue;
        int32_t best = -1;
        for (int32_t k = 0; k < t->n_added; k++) {
            const added_token *a = &t->added[k];
            if (a->normalized != normalized || a->n > n - i || a->cps[0] != s[i] ||
                (best >= 0 && a->n <= t->added[best].n))
                continue;
            if (memcmp(a->cps, s + i, a->n * sizeof *s) == 0)
                best = k;
        }
        if (best < 0)
            continue;
        const added_token *a = &t->added[best];
        size_t b = i, e = i + a->n;
        if (a->single_word && ((b > 0 && is_word_char(s[b - 1])) ||
                               (e < n && is_word_char(s[e])))) {
            i = e - 1;          /* the loop steps to e */
            continue;
        }
        if (a->lstrip)
            while (b > from && is_ws(s[b - 1]))
                b--;
        if (a->rstrip)
            while (e < n && is_ws(s[e]))
                e++;
        *start = b;
        *end = e;
        return best;
    }
    return -1;
}

bool clattn__bpe_normalize(const clattn__bpe *b, const uint32_t *s, size_t n,
                           clattn__u32vec *out)
{
    out->len = 0;
    if (!clattn__u32_reserve(out, n + 1))
        return false;
    memcpy(out->data, s, n * sizeof *s);
    out->len = n;
    clattn__u32vec tmp = {0};
    for (int k = 0; k < b->n_norm; k++) {
        const bpe_norm_op *op = &b->norm[k];
        if (op->kind == BPE_NORM_PREPEND) {
            if (out->len == 0)
                continue;       /* the crate prepends to non-empty text only */
            if (!clattn__u32_reserve(out, op->n_to))
                goto fail;
            memmove(out->data + op->n_to, out->data, out->len * sizeof *s);
            memcpy(out->data, op->to, op->n_to * sizeof *s);
            out->len += op->n_to;
        } else if (op->kind == BPE_NORM_REPLACE) {
            tmp.len = 0;
            for (size_t i = 0; i < out->len;) {
                if (i + op->n_from <= out->len &&
                    memcmp(out->data + i, op->from, op->n_from * sizeof *s) == 0) {
                    if (!clattn__u32_reserve(&tmp, op->n_to))
                        goto fail;
                    memcpy(tmp.data + tmp.len, op->to, op->n_to * sizeof *s);
                    tmp.len += op->n_to;
                    i += op->n_from;
                } else {
                    if (!clattn__u32_push(&tmp, out->data[i]))
                        goto fail;
                    i++;
                }
            }
            clattn__u32vec sw = *out;
            *out = tmp;
            tmp = sw;
        } else {  /* NFC, through utf8proc on UTF-8 */
            if (out->len == 0)
                continue;
            char *u = malloc(4 * out->len + 1);
            if (!u)
                goto fail;
            size_t m = 0;
            for (size_t i = 0; i < out->len; i++)
                m += clattn__utf8_encode(out->data[i], u + m);
            utf8proc_uint8_t *r = NULL;
            utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)u, (utf8proc_ssize_t)m,
                                               &r, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            free(u);
            if (rl < 0) {
                free(r);
                goto fail;
            }
            out->len = 0;
            if (!clattn__u32_reserve(out, (size_t)rl + 1)) {
                free(r);
                goto fail;
            }
            out->len = clattn__utf8_decode_lossy(r, (size_t)rl, out->data);
            free(r);
        }
    }
    free(tmp.data);
    return true;
fail:
    free(tmp.data);
    return false;
}

/* A stretch of raw text between the non-normalized added tokens. */
static bool encode_segment(enc *e, const uint32_t *s, size_t n, bool at_start,
                           clattn__u32vec *norm)
{
    if (n == 0)
        return true;
    if (!clattn__bpe_normalize(e->b, s, n, norm))
        return false;
    const uint32_t *c = norm->data;
    size_t m = norm->len, seg = 0, from = 0, a0, a1;
    int32_t k;
    /* The normalized added tokens, on the normalized text. */
    uint32_t *copy = NULL;
    if (e->t->n_added) {
        copy = malloc((m + 1) * sizeof *copy);
        if (!copy)
            return false;
        memcpy(copy, c, m * sizeof *c);
        c = copy;
    }
    bool ok = true;
    while (ok && e->t->n_added && (k = find_added(e->t, true, c, from, m, &a0, &a1)) >= 0) {
        ok = (a0 == seg || encode_words(e, c + seg, a0 - seg, at_start && seg == 0)) &&
             push_id(e, e->t->added[k].id);
        seg = from = a1;
    }
    if (ok && seg < m)
        ok = encode_words(e, c + seg, m - seg, at_start && seg == 0);
    free(copy);
    return ok;
}

bool clattn__bpe_encode(const clattn_tokenizer *t, const char *utf8, size_t len, int64_t **ids,
                        size_t *n_ids, size_t *cap)
{
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    if (!cps)
        return false;
    size_t n = clattn__utf8_decode_lossy((const unsigned char *)utf8, len, cps);
    enc e = {.t = t, .b = t->bpe, .ids = ids, .n_ids = n_ids, .cap_ids = cap};
    clattn__u32vec norm = {0};
    bool ok = true;
    size_t seg = 0, from = 0, a0, a1;
    int32_t k;
    while (ok && t->n_added && (k = find_added(t, false, cps, from, n, &a0, &a1)) >= 0) {
        ok = encode_segment(&e, cps + seg, a0 - seg, seg == 0, &norm) &&
             push_id(&e, t->added[k].id);
        seg = from = a1;
    }
    if (ok)
        ok = encode_segment(&e, cps + seg, n - seg, seg == 0, &norm);
    free(cps);
    free(norm.data);
    free(e.pool.data);
    free(e.cur.p);
    free(e.next.p);
    free(e.word);
    free(e.cstart);
    free(e.sym);
    free(e.prev);
    free(e.nxt);
    free(e.heap);
    free(e.heap_id);
    return ok;
}
