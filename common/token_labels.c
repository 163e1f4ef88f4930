/* token_labels.c - see token_labels.h. */
#include "token_labels.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

char *token_label(const clattn_tokenizer *tok, int64_t id)
{
    size_t len = 0;
    char *text = NULL;
    /* BPE decodes one id to its text; WordPiece cannot decode (UNSUPPORTED):
     * its token string is the label. */
    if (clattn_tokenizer_decode(tok, &id, 1, false, NULL, 0, &len) == CLATTN_OK) {
        if (!(text = malloc(len + 1)))
            return NULL;
        if (clattn_tokenizer_decode(tok, &id, 1, false, text, len + 1, &len) == CLATTN_OK)
            return text;
        free(text);
    }
    const char *t = clattn_tokenizer_id_to_token(tok, id);
    return strdup(t ? t : "");
}

void token_labels_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

bool token_labels_write(const char *path, const clattn_tokenizer *tok, int32_t ndim,
                        const int64_t *shape, const int64_t *ids, int32_t n, const char *extra,
                        char *err, size_t err_size)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return false;
    }
    bool ok = true;
    fprintf(f, "{\n  \"shape\": [");
    for (int32_t i = 0; i < ndim; i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)shape[i]);
    fprintf(f, "],\n  \"ids\": [");
    for (int32_t i = 0; i < n; i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)ids[i]);
    fprintf(f, "]");
    if (tok) {
        fprintf(f, ",\n  \"tokens\": [");
        for (int32_t i = 0; i < n; i++) {
            const char *t = clattn_tokenizer_id_to_token(tok, ids[i]);
            fputs(i ? ", " : "", f);
            token_labels_json_string(f, t ? t : "");
        }
        fprintf(f, "],\n  \"labels\": [");
        for (int32_t i = 0; ok && i < n; i++) {
            char *label = token_label(tok, ids[i]);
            ok = label != NULL;
            fputs(i ? ", " : "", f);
            token_labels_json_string(f, label ? label : "");
            free(label);
        }
        fprintf(f, "]");
    }
    if (extra)
        fprintf(f, ",\n  %s", extra);
    fprintf(f, "\n}\n");
    if (!ok)
        snprintf(err, err_size, "%s: out of memory", path);
    if (ferror(f) && ok) {
        snprintf(err, err_size, "%s: write error", path);
        ok = false;
    }
    if (fclose(f) != 0 && ok) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        ok = false;
    }
    return ok;
}
