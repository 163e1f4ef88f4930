/* clattn-tokenize - a model folder's tokenizer from the command line:
 * text to ids (a JSON array) or ids back to text.
 *
 *   clattn-tokenize -m DIR [--no-special] TEXT
 *   clattn-tokenize -m DIR [--no-special] -f FILE
 *   clattn-tokenize -m DIR [--no-special] --decode 1,2,3
 *
 * Results go to stdout, errors to stderr (exit status 1). Needs no device. */
#include <clattn.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clattn-tokenize -m DIR [--no-special] (TEXT | -f FILE | --decode IDS)\n"
            "\n"
            "Tokenizes TEXT (or the whole of FILE, '-' for standard input) with the\n"
            "tokenizer of the model folder DIR (tokenizer.json) and prints the ids as a\n"
            "JSON array; with --decode, prints the text of the comma-separated ids.\n"
            "  -m, --model DIR   the model folder\n"
            "  -f, --file FILE   read the text from FILE ('-': standard input)\n"
            "  --decode IDS      decode IDS (e.g. 1,2,3) instead of encoding\n"
            "  --no-special      encode without the template's special tokens\n"
            "                    (add_special_tokens=False); decode without special\n"
            "                    tokens (skip_special_tokens=True)\n"
            "  -h, --help        this help\n");
}

/* The whole of path ('-': stdin), *len bytes; NULL with a message. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "clattn-tokenize: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *b = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    bool err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf || err) {
        fprintf(stderr, "clattn-tokenize: %s: %s\n", path,
                buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Parses "1,2,3" into ids (malloc'd, *n); NULL with a message. Every id
 * must be a decimal integer from 0 to INT32_MAX. */
static int64_t *parse_ids(const char *s, int32_t *n)
{
    size_t count = 1;
    for (const char *p = s; *p; p++)
        count += *p == ',';
    if (count > INT32_MAX) {
        fprintf(stderr, "clattn-tokenize: --decode: too many ids\n");
        return NULL;
    }
    int64_t *ids = malloc(count * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "clattn-tokenize: out of memory\n");
        return NULL;
    }
    const char *p = s;
    for (size_t i = 0; i < count; i++) {
        char *end;
        errno = 0;
        if (*p < '0' || *p > '9') {
            fprintf(stderr, "clattn-tokenize: --decode: id %zu ('%.*s') is not a "
                    "non-negative integer\n", i + 1, (int)strcspn(p, ","), p);
            free(ids);
            return NULL;
        }
        long long v = strtoll(p, &end, 10);
        if (errno == ERANGE || v > INT32_MAX || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "clattn-tokenize: --decode: id %zu ('%.*s') must be an integer "
                    "from 0 to %d\n", i + 1, (int)strcspn(p, ","), p, INT32_MAX);
            free(ids);
            return NULL;
        }
        ids[i] = v;
        p = *end ? end + 1 : end;
    }
    *n = (int32_t)count;
    return ids;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *decode = NULL, *text = NULL;
    bool special = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if ((strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) && has_next) {
            model = argv[++i];
        } else if ((strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) && has_next) {
            file = argv[++i];
        } else if (strcmp(a, "--decode") == 0 && has_next) {
            decode = argv[++i];
        } else if (strcmp(a, "--no-special") == 0) {
            special = false;
        } else if (a[0] == '-' && a[1] != '\0' && strcmp(a, "--") != 0) {
            fprintf(stderr, "clattn-tokenize: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 1;
        } else {
            if (strcmp(a, "--") == 0 && i + 1 < argc)
                a = argv[++i];
            if (text) {
                fprintf(stderr, "clattn-tokenize: give one TEXT (quote it)\n");
                return 1;
            }
            text = a;
        }
    }
    if (!model || ((text != NULL) + (file != NULL) + (decode != NULL)) != 1) {
        fprintf(stderr, "clattn-tokenize: need -m DIR and exactly one of TEXT, -f FILE, "
                "--decode IDS\n");
        usage(stderr);
        return 1;
    }
    clattn_tokenizer *tok = NULL;
    if (clattn_tokenizer_load(model, &tok) != CLATTN_OK) {
        fprintf(stderr, "clattn-tokenize: %s\n", clattn_last_error());
        return 1;
    }
    int rc = 1;
    if (decode) {
        int32_t n = 0;
        int64_t *ids = parse_ids(decode, &n);
        size_t len = 0;
        char *out = NULL;
        if (ids && clattn_tokenizer_decode(tok, ids, n, !special, NULL, 0, &len) == CLATTN_OK &&
            (out = malloc(len + 1)) &&
            clattn_tokenizer_decode(tok, ids, n, !special, out, len + 1, &len) == CLATTN_OK) {
            fwrite(out, 1, len, stdout);
            fputc('\n', stdout);
            rc = 0;
        } else if (ids) {
            fprintf(stderr, "clattn-tokenize: %s\n", out || len == 0 ? clattn_last_error()
                                                                    : "out of memory");
        }
        free(out);
        free(ids);
    } else {
        size_t len = text ? strlen(text) : 0;
        char *buf = file ? read_all(file, &len) : NULL;
        const char *s = file ? buf : text;
        int32_t count = 0;
        int64_t *ids = NULL;
        if (s && clattn_tokenizer_encode_ex(tok, s, len, special, 0, NULL, 0, &count) ==
                     CLATTN_OK &&
            (ids = malloc(((size_t)count + 1) * sizeof *ids)) &&
            clattn_tokenizer_encode_ex(tok, s, len, special, 0, ids, count, &count) ==
                CLATTN_OK) {
            fputc('[', stdout);
            for (int32_t i = 0; i < count; i++)
                printf("%s%lld", i ? ", " : "", (long long)ids[i]);
            printf("]\n");
            rc = 0;
        } else if (s) {
            fprintf(stderr, "clattn-tokenize: %s\n", clattn_last_error());
        }
        free(ids);
        free(buf);
    }
    clattn_tokenizer_destroy(tok);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "clattn-tokenize: cannot write the output\n");
        rc = 1;
    }
    return rc;
}
