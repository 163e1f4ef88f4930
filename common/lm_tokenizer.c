/* lm_tokenizer.c - see lm_tokenizer.h. The JSON is built with jansson
 * (keys in insertion order, the order Hugging Face writes them). */
#include "lm_tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The specials first, at the ids Llama tokenizers give them. */
static const char *const SPECIALS[3] = {"<pad>", "<s>", "</s>"};
static const char CHARS[] = "0123456789+=";

const char *lm_token(int32_t id)
{
    /* One static string per character token: lm_token returns pointers. */
    static const char *const chars[12] = {"0", "1", "2", "3", "4", "5",
                                          "6", "7", "8", "9", "+", "="};
    if (id >= 0 && id < 3)
        return SPECIALS[id];
    if (id >= 3 && id < LM_VOCAB_SIZE)
        return chars[id - 3];
    return NULL;
}

int32_t lm_char_id(char c)
{
    const char *p = c ? strchr(CHARS, c) : NULL;
    return p ? (int32_t)(p - CHARS) + 3 : -1;
}

/* {"SpecialToken": {"id": "<s>", "type_id": 0}} or a Sequence piece. */
static json_t *piece(const char *kind, const char *id, int type_id)
{
    return json_pack("{s:{s:s, s:i}}", kind, "id", id, "type_id", type_id);
}

static json_t *tokenizer_json(void)
{
    json_t *added = json_array();
    for (int32_t i = 0; i < 3; i++)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i,
                                               "content", SPECIALS[i], "single_word", 0,
                                               "lstrip", 0, "rstrip", 0, "normalized", 0,
                                               "special", 1));
    json_t *vocab = json_object();
    for (int32_t i = 0; i < LM_VOCAB_SIZE; i++)
        json_object_set_new(vocab, lm_token(i), json_integer(i));
    /* "<s> $A" for one sequence; the pair template is the crate's usual
     * (clattn reads only "single"; the crate wants both). */
    json_t *single = json_pack("[o, o]", piece("SpecialToken", "<s>", 0), piece("Sequence", "A", 0));
    json_t *pair = json_pack("[o, o, o]", piece("SpecialToken", "<s>", 0),
                             piece("Sequence", "A", 0), piece("Sequence", "B", 1));
    json_t *post = json_pack("{s:s, s:o, s:o, s:{s:{s:s, s:[i], s:[s]}}}", "type",
                             "TemplateProcessing", "single", single, "pair", pair,
                             "special_tokens", "<s>", "id", "<s>", "ids", LM_BOS_ID, "tokens",
                             "<s>");
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:[]}", "type", "BPE",
                              "dropout", "unk_token", "continuing_subword_prefix",
                              "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                              "ignore_merges", 0, "vocab", vocab, "merges");
    /* No normalizer or pre-tokenizer: the whole text is one word, which
     * BPE without merges splits into its characters. */
    return json_pack("{s:s, s:n, s:n, s:o, s:n, s:n, s:o, s:{s:s}, s:o}", "version", "1.0",
                     "truncation", "padding", "added_tokens", added, "normalizer",
                     "pre_tokenizer", "post_processor", post, "decoder", "type", "Fuse",
                     "model", model);
}

/* PreTrainedTokenizerFast: transformers then takes tokenizer.json's
 * post-processor as it is (the Llama classes would rebuild it from
 * add_bos_token, which clattn follows too, but the plain class keeps one
 * source of truth). */
static json_t *config_json(int32_t max_len)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:b, s:[s, s]}", "tokenizer_class",
                     "PreTrainedTokenizerFast", "bos_token", "<s>", "eos_token", "</s>",
                     "pad_token", "<pad>", "model_max_length", max_len,
                     "clean_up_tokenization_spaces", 0, "model_input_names", "input_ids",
                     "attention_mask");
}

/* j (taken) as dir/name, through a temporary file and a rename. */
static bool write_json(const char *dir, const char *name, json_t *j, char *err, size_t err_size)
{
    char path[4096], tmp[4200];
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) {
        snprintf(err, err_size, "%s: out of memory", name);
        return false;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    int saved = errno;
    if (f && fclose(f) != 0 && ok)
        ok = false, saved = errno;
    if (ok && rename(tmp, path) != 0)
        ok = false, saved = errno;
    if (!ok) {
        snprintf(err, err_size, "%s: %s", f ? path : tmp, strerror(saved));
        remove(tmp);
    }
    free(text);
    return ok;
}

bool lm_tokenizer_write(const char *dir, int32_t max_len, char *err, size_t err_size)
{
    return write_json(dir, "tokenizer.json", tokenizer_json(), err, err_size) &&
           write_json(dir, "tokenizer_config.json", config_json(max_len), err, err_size);
}
