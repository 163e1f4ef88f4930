/* fuzz_tokenizer_load.c - libFuzzer target for loading a tokenizer folder
 * (clattn_tokenizer_load): the input's NUL-separated parts are
 * tokenizer.json, tokenizer_config.json and vocab.txt (an empty part: the
 * file is absent, so an input with no tokenizer.json loads vocab.txt; see
 * fuzz_files.h). Both WordPiece and BPE files are reached. A loaded
 * tokenizer then encodes a fixed text and the input's bytes, and BPE ones
 * decode what they encoded; every id must have its token. A refusal must
 * leave *out NULL and say why. */
#include "fuzz_files.h"

#include <clattn.h>

static const char *const names[] = {"tokenizer.json", "tokenizer_config.json", "vocab.txt"};

static void encode_check(const clattn_tokenizer *tok, const char *text, size_t len)
{
    int64_t ids[256];
    int32_t n = 0;
    if (clattn_tokenizer_encode(tok, text, len, 256, ids, 256, &n) != CLATTN_OK)
        return; /* e.g. a template longer than 256 */
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || !clattn_tokenizer_id_to_token(tok, ids[i]))
            abort();
    size_t out_len = 0;
    char out[4096];
    clattn_status st = clattn_tokenizer_decode(tok, ids, n, false, out, sizeof out, &out_len);
    if (st == CLATTN_OK && (out_len >= sizeof out || out[out_len] != '\0'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_write_parts(data, size, names, 3);
    clattn_tokenizer *tok = (clattn_tokenizer *)1;
    clattn_status st = clattn_tokenizer_load(dir, &tok);
    if (st != CLATTN_OK) {
        if (tok != NULL || clattn_last_error()[0] == '\0')
            abort();
        return 0;
    }
    static const char text[] = "Hello, world! The quick brown fox isn't 42 caf\xc3\xa9s. [CLS] <s>";
    encode_check(tok, text, sizeof text - 1);
    encode_check(tok, (const char *)data, size < 512 ? size : 512);
    if (clattn_tokenizer_vocab_size(tok) < 0 || clattn_tokenizer_max_length(tok) < 0)
        abort();
    clattn_tokenizer_destroy(tok);
    return 0;
}
