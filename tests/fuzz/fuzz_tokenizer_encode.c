/* fuzz_tokenizer_encode.c - libFuzzer target for encoding arbitrary bytes
 * and decoding arbitrary ids with valid tokenizers, loaded once from the
 * committed fixtures: WordPiece (tests/fixtures/tokenizer/tiny_vocab,
 * vocab.txt), byte-level BPE (tests/fixtures/lm/gpt2_f32) and BPE with
 * Metaspace and byte fallback (tests/fixtures/bpe/llama2).
 *
 * Input: byte 0 picks the tokenizer (bits 0-1), add_special (bit 2) and
 * skip_special (bit 3); byte 1 is max_len (0: the tokenizer's own); the
 * rest is the text, and, read as little-endian 16-bit numbers, the ids.
 * Invariants (abort() on violation): counting and encoding give the same
 * ids, no more than max_len, each of which has a token; byte-level BPE gives valid UTF-8 back
 * exactly; decoded text is valid UTF-8; the stream detokenizer's pushes
 * and flush concatenate to clattn_tokenizer_decode of the same ids. */
#include <clattn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clattn_tokenizer *toks[3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static const char *const dirs[3] = {"tokenizer/tiny_vocab", "lm/gpt2_f32", "bpe/llama2"};
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FUZZ_FIXTURES, dirs[i]);
        if (clattn_tokenizer_load(path, &toks[i]) != CLATTN_OK) {
            fprintf(stderr, "fuzz_tokenizer_encode: %s\n", clattn_last_error());
            abort();
        }
    }
    return 0;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n)
            return false;
        unsigned cp = k == 1 ? c : c & (0x7f >> k);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k;
    }
    return true;
}

/* clattn_tokenizer_decode into a malloc'd string (measured first). */
static char *decode(const clattn_tokenizer *tok, const int64_t *ids, int32_t n, bool skip,
                    size_t *len)
{
    if (clattn_tokenizer_decode(tok, ids, n, skip, NULL, 0, len) != CLATTN_OK)
        abort(); /* measuring (text NULL, capacity 0) cannot fail */
    char *text = malloc(*len + 1);
    size_t again = 0;
    if (!text || clattn_tokenizer_decode(tok, ids, n, skip, text, *len + 1, &again) != CLATTN_OK ||
        again != *len || text[again] != '\0')
        abort();
    return text;
}

static void check_encode(const clattn_tokenizer *tok, bool byte_level, const char *text,
                         size_t len, bool special, int32_t max_len)
{
    int32_t n = -1;
    clattn_status st = clattn_tokenizer_encode_ex(tok, text, len, special, max_len, NULL, 0, &n);
    if (st != CLATTN_OK)
        return; /* max_len below the template's special tokens */
    int64_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    int32_t n2 = -1;
    if (!ids || clattn_tokenizer_encode_ex(tok, text, len, special, max_len, ids, n, &n2) !=
                    CLATTN_OK || n2 != n || (max_len > 0 && n > max_len))
        abort();
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || !clattn_tokenizer_id_to_token(tok, ids[i]))
            abort();
    if (byte_level && !special && max_len == 0 && valid_utf8((const unsigned char *)text, len)) {
        size_t out_len;
        char *out = decode(tok, ids, n, false, &out_len);
        if (out_len != len || memcmp(out, text, len) != 0)
            abort(); /* byte-level BPE loses nothing */
        free(out);
    }
    free(ids);
}

static void check_decode(const clattn_tokenizer *tok, const int64_t *ids, int32_t n, bool skip)
{
    size_t len;
    char *whole = decode(tok, ids, n, skip, &len);
    if (!valid_utf8((const unsigned char *)whole, len))
        abort();
    clattn_detokenizer *d;
    if (clattn_detokenizer_create(tok, skip, &d) != CLATTN_OK)
        abort();
    char *cat = malloc(len + 1);
    size_t at = 0;
    for (int32_t i = 0; i <= n && cat; i++) {
        char piece[64], *big = NULL, *buf = piece;
        size_t got = 0;
        clattn_status st = i < n ? clattn_detokenizer_push(d, ids[i], piece, sizeof piece, &got)
                                 : clattn_detokenizer_flush(d, piece, sizeof piece, &got);
        if (st == CLATTN_ERR_INVALID_ARG && got + 1 > sizeof piece) {
            /* Not taken: again with the room it asked for. */
            size_t want = got;
            big = malloc(want + 1);
            if (!big)
                abort();
            buf = big;
            st = i < n ? clattn_detokenizer_push(d, ids[i], big, want + 1, &got)
                       : clattn_detokenizer_flush(d, big, want + 1, &got);
            if (got != want)
                abort();
        }
        if (st != CLATTN_OK || buf[got] != '\0' || at + got > len ||
            memcmp(whole + at, buf, got) != 0)
            abort();
        at += got;
        free(big);
    }
    if (at != len)
        abort();
    free(cat);
    free(whole);
    clattn_detokenizer_destroy(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int which = data[0] & 3;
    if (which == 3)
        which = 1;
    const clattn_tokenizer *tok = toks[which];
    bool special = data[0] & 4, skip = data[0] & 8;
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    check_encode(tok, which == 1, text, len, special, data[1]);
    if (which == 0)
        return 0; /* WordPiece has no decoder */
    int32_t n = (int32_t)(len / 2);
    int64_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids)
        abort();
    int64_t bound = (int64_t)clattn_tokenizer_vocab_size(tok) + 16; /* and some without a token */
    for (int32_t i = 0; i < n; i++)
        ids[i] = (int64_t)(data[2 + 2 * i] | data[3 + 2 * i] << 8) % bound;
    check_decode(tok, ids, n, skip);
    free(ids);
    return 0;
}
