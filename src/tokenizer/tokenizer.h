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

/* A token matched on the raw text before normalization ([CLS], [SEP], ...),
 * or (BPE, normalized) on the normalized text. */
typedef struct added_token {
    uint32_t *cps;
    size_t n;
    int32_t id;
    char *content;
    bool special;               /* skipped by decode with skip_special */
    bool lstrip, rstrip;        /* the match takes the whitespace around it */
    bool normalized;            /* matched after the normalizer (BPE only) */
    bool single_word;           /* not next to a word character (BPE only) */
} added_token;

/* The split patterns of pretok.c. */
typedef enum clattn__split_re {
    CLATTN__RE_GPT2 = 0,        /* ByteLevel's own regex */
    CLATTN__RE_LLAMA3 = 1,      /* \p{N}{1,3} */
    CLATTN__RE_QWEN2 = 2        /* \p{N} */
} clattn__split_re;

typedef struct clattn__bpe clattn__bpe;

/* ---- the BPE model's settings (bpe_load.c, bpe.c, decode.c) ------------- */

enum { BPE_NORM_NFC, BPE_NORM_PREPEND, BPE_NORM_REPLACE };
typedef struct bpe_norm_op {
    int kind;
    uint32_t *from, *to;        /* Replace from -> to; Prepend to */
    size_t n_from, n_to;
} bpe_norm_op;

enum { BPE_PRE_SPLIT, BPE_PRE_BYTELEVEL, BPE_PRE_METASPACE, BPE_PRE_DIGITS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct bpe_pre_op {
    int kind;
    clattn__split_re re;        /* Split */
    bool add_prefix_space;      /* ByteLevel */
    bool use_regex;             /* ByteLevel */
    uint32_t replacement;       /* Metaspace */
    int prepend_scheme;         /* Metaspace */
    bool split;                 /* Metaspace */
    bool individual_digits;     /* Digits */
} bpe_pre_op;

enum { BPE_DEC_BYTELEVEL, BPE_DEC_REPLACE, BPE_DEC_BYTEFALLBACK, BPE_DEC_FUSE, BPE_DEC_STRIP,
       BPE_DEC_METASPACE };
typedef struct bpe_dec_op {
    int kind;
    char *from, *to;            /* Replace (UTF-8) */
    uint32_t content;           /* Strip's character, Metaspace's replacement */
    int32_t start, stop;        /* Strip */
    int prepend_scheme;         /* Metaspace */
} bpe_dec_op;

/* One merge: the pair (a, b) -> (rank, id of a + b). */
typedef struct bpe_merge {
    uint64_t key;               /* a << 32 | b; UINT64_MAX: empty slot */
    int32_t rank, id;
} bpe_merge;

enum { ID_SPECIAL = 1, ID_ADDED = 2, ID_BYTE = 4 };

struct clattn__bpe {
    char **tok;                 /* id -> token (UTF-8), NULL: no such id */
    uint32_t *tok_len;
    uint8_t *flags;             /* ID_* */
    unsigned char *byte_of;     /* the byte of an ID_BYTE token (<0xNN>) */
    int32_t n_ids;              /* highest id + 1 */
    bpe_merge *merges;          /* open addressing, power-of-two size */
    size_t n_merge_slots;
    bpe_norm_op norm[8];
    int n_norm;
    bpe_pre_op pre[8];
    int n_pre;
    bool byte_level;            /* a ByteLevel pre-tokenizer maps bytes to characters */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;             /* -1: none */
    int32_t byte_id[256];       /* <0xNN>'s id, -1: none */
    bpe_dec_op dec[8];
    int n_dec;
    bool dec_null;              /* no decoder: tokens joined by ' ' */
    uint64_t first_cp[64];      /* bit c & 4095: some added token starts with c */
};

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
    clattn__bpe *bpe;           /* NULL: WordPiece; else the BPE model (bpe.c) */
    int32_t bos_id, eos_id;     /* tokenizer_config.json's; -1: none */
};

/* A table of room for entries tokens; false when out of memory. */
bool clattn__vocab_init(clattn_tokenizer *t, size_t entries);
/* Inserts (or overwrites the id of) s[0..len); false when out of memory. */
bool clattn__vocab_put(clattn_tokenizer *t, const char *s, size_t len, int32_t id);

/* The vocabulary entry for the token s[0..len), or NULL. */
const vocab_slot *clattn__vocab_find(const clattn_tokenizer *t, const char *s, size_t len);

/* ---- BPE (bpe_load.c loads, bpe.c encodes, pretok.c splits, decode.c decodes) */

/* Reads a tokenizer.json whose model is BPE: normalizer, pre_tokenizer,
 * model, decoder and added_tokens (tokenizer.c reads the post-processor and
 * truncation), then config_path (tokenizer_config.json, may be missing) for
 * bos/eos and, for the classes whose transformers tokenizer rebuilds the
 * template, add_bos_token/add_eos_token. Failures go to r. */
void clattn__bpe_load(clattn_tokenizer *t, json_t *root, clattn__json_reader *r);
void clattn__bpe_config(clattn_tokenizer *t, const char *config_path, clattn__json_reader *r);
void clattn__bpe_free(clattn__bpe *b);

/* bpe.c's lookups, shared with bpe_load.c: the merge table's hash of
 * key (a << 32 | b), the merge of (x, y) or NULL, the id of vocabulary
 * token s[0..len) or -1, and the normalizer on s[0..n) into out (false
 * when out of memory). */
uint64_t clattn__bpe_merge_hash(uint64_t key);
const bpe_merge *clattn__bpe_merge_find(const clattn__bpe *b, int32_t x, int32_t y);
int32_t clattn__bpe_vocab_id(const clattn_tokenizer *t, const char *s, size_t len);
bool clattn__bpe_normalize(const clattn__bpe *b, const uint32_t *s, size_t n,
                           clattn__u32vec *out);

/* The BPE pieces of one text (no template) appended to *ids (*n of *cap,
 * realloc'ed); false when out of memory. */
bool clattn__bpe_encode(const clattn_tokenizer *t, const char *utf8, size_t len, int64_t **ids,
                        size_t *n, size_t *cap);

/* Decodes len bytes of UTF-8 into out (room for len code points) as Rust's
 * String::from_utf8_lossy and Python's errors="replace" do: each maximal
 * invalid subpart becomes one U+FFFD. Returns the number of code points. */
size_t clattn__utf8_decode_lossy(const unsigned char *s, size_t len, uint32_t *out);

/* True when s[0..n) is well-formed UTF-8 (false too when out of memory). */
bool clattn__utf8_valid(const unsigned char *s, size_t n);


/* The pattern string's matcher; false when pattern is none of them. */
bool clattn__split_re_lookup(const char *pattern, clattn__split_re *out);

/* The length (>= 1) of the match of re at s[i] (i < n), as Oniguruma's
 * leftmost-first alternation finds it: every position starts a match
 * for these patterns. */
size_t clattn__split_re_match(clattn__split_re re, const uint32_t *s, size_t n, size_t i);

/* Unicode classes as Oniguruma's \s, \p{L}, \p{N} (utf8proc). */
bool clattn__re_space(uint32_t c);
bool clattn__re_letter(uint32_t c);
bool clattn__re_number(uint32_t c);

/* GPT-2's byte <-> character map of ByteLevel. */
uint32_t clattn__byte_to_char(unsigned char b);
int clattn__char_to_byte(uint32_t c);  /* -1: not a byte's character */

#endif
