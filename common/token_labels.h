/* token_labels.h - the JSON sidecar of the tools' attention-weights files:
 * which token each row and column of a weights array is, so a plotting
 * tool can label its axes.
 *
 *   {"shape": [...], "ids": [...], "tokens": [...], "labels": [...], ...}
 *
 * tokens: the vocabulary's strings (clattn_tokenizer_id_to_token: "##ing",
 * "Ġthe"); labels: the text each id decodes to on its own where the
 * tokenizer can decode (BPE: " the"), else the token string. */
#ifndef CLATTN_TOKEN_LABELS_H
#define CLATTN_TOKEN_LABELS_H

#include <clattn.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* One id's label (malloc'd; "" for an id without a token); NULL when out
 * of memory. */
char *token_label(const clattn_tokenizer *tok, int64_t id);

/* Writes the sidecar to path: shape[0..ndim), ids[0..n) with their tokens
 * and labels (tok may be NULL: ids only), then `extra` verbatim if not
 * NULL (further members, e.g. "\"text\": \"...\""; JSON written by the
 * caller). false with err set on failure. */
bool token_labels_write(const char *path, const clattn_tokenizer *tok, int32_t ndim,
                        const int64_t *shape, const int64_t *ids, int32_t n, const char *extra,
                        char *err, size_t err_size);

/* s as a JSON string literal (quotes included) to f. */
void token_labels_json_string(FILE *f, const char *s);

#endif
