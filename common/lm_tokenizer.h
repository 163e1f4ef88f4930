/* lm_tokenizer.h - the character-level vocabulary of clattn-train lm, and
 * the Hugging Face tokenizer files that spell it.
 *
 *   id 0 "<pad>", 1 "<s>", 2 "</s>", then one token per character of
 *   "0123456789+=" (ids 3 .. 14)
 *
 * The files are a BPE model with an empty merge list (so every character
 * is its own token), no normalizer and no pre-tokenizer, the three
 * specials as added tokens, a TemplateProcessing post-processor "<s> $A"
 * and a Fuse decoder (the tokens' text joined with nothing between). The
 * Hugging Face tokenizers crate, transformers' PreTrainedTokenizerFast and
 * clattn_tokenizer_load read them alike: encoding "483+1290=" with the
 * special tokens gives <s> and the characters' ids, the ids this file's
 * lm_char_id gives the training rows, and decoding (special tokens
 * skipped) gives the text back. Characters outside the vocabulary (a
 * space typed into a prompt) have no token and are dropped, as BPE
 * without an unk token drops them. */
#ifndef CLATTN_LM_TOKENIZER_H
#define CLATTN_LM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_PAD_ID 0
#define LM_BOS_ID 1
#define LM_EOS_ID 2
#define LM_VOCAB_SIZE 15 /* V: 3 specials + 10 digits + '+' + '=' */

/* The token of id (0 .. LM_VOCAB_SIZE-1), or NULL. */
const char *lm_token(int32_t id);

/* The id of character c, or -1 when it has no token. */
int32_t lm_char_id(char c);

/* Writes dir/tokenizer.json and dir/tokenizer_config.json (model_max_length
 * max_len), each to a temporary file renamed into place, so neither is
 * left half-written. dir must exist. false with err set on failure. */
bool lm_tokenizer_write(const char *dir, int32_t max_len, char *err, size_t err_size);

#endif
