/* tokenizer/tokenizer.h - what tokenizer.c, encode.c and
 * unicode.c share;
 * also reached by tests/tokenizer/test_tokenizer.c (static library). */
#ifndef CLATTN_TOKENIZER_INTERNAL_H
#define CLATTN_TOKENIZER_INTERNAL_H

#include "core/core.h"
#include "io/io.h"

/* A growable array of code points. */
typedef struct clattn__u32vec {
    uint32_t *data;
    size_t len, cap;
} clattn__u32vec;

/* Both return false when memory runs out (v is left as it was). */
bool clattn__u32_reserve(clattn__u32vec *v, size_t extra);
bool clattn__u32_push(clattn__u32vec *v, uint32_t c);

/* Decodes len bytes of UTF-8 into out (room for len code points); each byte
 * that does not start a well-formed sequence becomes U+FFFD. Returns the
 * number of code points. */
size_t clattn__utf8_decode(const unsigned char *s, size_t len, uint32_t *out);

/* Writes the UTF-8 form of c (a scalar value) to out[0..4); returns its length. */
size_t clattn__utf8_encode(uint32_t c, char *out);

/* BertNormalizer's settings (strip_accents already resolved from null). */
typedef struct clattn__bert_norm {
    bool clean_text;
    bool handle_chinese_chars;
    bool strip_accents;
    bool lowercase;
    bool utf8proc_only;         /* tests: leave out unicode_table.h */
} clattn__bert_norm;

/* Appends the normalized form of in[0..n) to out; false when out of memory. */
bool clattn__bert_normalize(const clattn__bert_norm *opt, const uint32_t *in, size_t n,
                            clattn__u32vec *out);

/* BertPreTokenizer's classes: whitespace splits and is removed,
 * punctuation splits and stays as a word of its own. */
bool clattn__is_bert_whitespace(uint32_t c);
bool clattn__is_bert_punct(uint32_t c);
bool clattn__is_bert_punct_raw(uint32_t c);  /* utf8proc only (tests) */
bool clattn__is_bert_cjk(uint32_t c);

/* ---- the loaded tokenizer (tokenizer.c loads, encode.c uses) -- */

typedef struct vocab_slot {
    char *token;   /* NULL: empty slot */
    size_t len;
    int32_t id;
} vocab_slot;

/* A token matched on the raw text before normalization ([CLS], [SEP], ...). */
typedef struct added_token {
    uint32_t *cps;
    size_t n;
    int32_t id;
    char *content;
} added_token;

struct clattn_tokenizer {
    vocab_slot *slots;          /* open addressing, power-of-two size */
    size_t n_slots;
    int32_t n_vocab;            /* model vocabulary entries */
    int32_t vocab_size;         /* plus added tokens outside it */
    int32_t unk_id;
    char *prefix;               /* continuing_subword_prefix, "##" */
    size_t prefix_len;
    int32_t max_chars;          /* max_input_chars_per_word */
    clattn__bert_norm norm;
    added_token *added;
    int32_t n_added;
    int32_t pre[8], n_pre;      /* template ids before the sequence */
    int32_t post[8], n_post;    /* and after it */
    int32_t max_length;         /* default truncation; 0: none */
};

/* The vocabulary entry for the token s[0..len), or NULL. */
const vocab_slot *clattn__vocab_find(const clattn_tokenizer *t, const char *s, size_t len);

#endif
