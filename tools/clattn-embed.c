/* clattn-embed - sentence embeddings from the command line: texts in (the
 * arguments, a file with one text per line, or standard input), one vector
 * per text out, as text or JSON (with the cosine similarity matrix).
 *
 *   clattn-embed [options] [TEXT ...]
 *
 * Results go to stdout; progress and messages to stderr (-q silences them).
 * The model folder is --model, else $CLATTN_MODEL, else
 * models/all-MiniLM-L6-v2 of the source tree (found from the executable's
 * path, then from the current directory); tools/fetch-model fetches it. */
#define _DEFAULT_SOURCE /* readlink */
#include "cli_args.h"
#include "attention_map.h"
#include "npy.h"
#include "plot.h"
#include "token_labels.h"

#include <clattn.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "models/all-MiniLM-L6-v2"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clattn-embed [options] [TEXT ...]\n"
            "\n"
            "Embeds each TEXT (or each line of --file, or of standard input when no text is\n"
            "given) with a sentence-transformers BERT model and prints the vectors.\n"
            "  --model DIR           model folder (default: $CLATTN_MODEL, else\n"
            "                        " DEFAULT_MODEL " of the source tree)\n"
            "  --file F              one text per line ('-': standard input)\n"
            "  --pooling P           mean, cls or max (default: the model's)\n"
            "  --normalize yes|no    L2-normalise (default: the model's)\n"
            "  --batch N             texts per forward pass (default 32)\n"
            "  --max-length N        tokens per text, [CLS] and [SEP] included\n"
            "                        (default: the model's max_seq_length)\n"
            "  --output-format F     text (default): the first values of each vector;\n"
            "                        json: {\"model\", \"dim\", \"embeddings\"};\n"
            "                        json+: json with \"similarity\", the cosine matrix\n"
            "                        (JSON has no NaN: a value that is not finite is null)\n"
            "  --attention-weights F.npy   with one TEXT: write its self-attention\n"
            "                        probabilities, float32 [layers, heads, T, T] (row i:\n"
            "                        how token i attends to each token j)\n"
            "  --attention-tokens F.json   with one TEXT: the T tokens of those rows and\n"
            "                        columns ({\"shape\", \"ids\", \"tokens\", \"labels\",\n"
            "                        \"text\"})\n"
            "  --attention-map F.png|F.svg   with one TEXT: draw those weights as heatmaps,\n"
            "                        one panel per layer and head (rows: the query token,\n"
            "                        columns: the key token)\n"
            "  --layer L, --head H   with --attention-map: only layer L and/or head H\n"
            "  --device SEL          device selector (index, platform:device, or name)\n"
            "  -q                    no progress or messages on stderr\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool is_dir_with_model(const char *dir)
{
    char path[PATH_MAX];
    struct stat sb;
    return snprintf(path, sizeof path, "%s/config.json", dir) < (int)sizeof path &&
           stat(path, &sb) == 0;
}

/* The default model folder: $CLATTN_MODEL, else next to the source tree of
 * this executable (build/tools/clattn-embed -> ../../models/...), else
 * ./models/...; the first candidate is returned when none exists. */
static const char *default_model(char *buf, size_t size)
{
    const char *env = getenv("CLATTN_MODEL");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char guess[PATH_MAX + 8], root[PATH_MAX];
            snprintf(guess, sizeof guess, "%s/../..", exe);
            if (realpath(guess, root) &&
                snprintf(buf, size, "%s/%s", root, DEFAULT_MODEL) < (int)size &&
                is_dir_with_model(buf))
                return buf;
        }
    }
    return DEFAULT_MODEL;
}

/* ---- input -------------------------------------------------------------------- */

typedef struct text_list {
    char **items;
    int32_t count, cap;
} text_list;

static bool push(text_list *l, const char *s, size_t len)
{
    if (l->count == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 64;
        char **grown = realloc(l->items, (size_t)cap * sizeof *grown);
        if (!grown)
            return false;
        l->items = grown, l->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, s, len);
    copy[len] = '\0';
    l->items[l->count++] = copy;
    return true;
}

static bool read_lines(FILE *f, text_list *l)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool ok = true;
    while (ok && (n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        ok = push(l, line, (size_t)n);
    }
    free(line);
    return ok && !ferror(f);
}

static void free_texts(text_list *l)
{
    for (int32_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* ---- progress ------------------------------------------------------------------ */

typedef struct progress {
    bool tty;
    double start;
    int last_tenth;
} progress;

static void on_progress(void *user, int32_t done, int32_t total)
{
    progress *p = user;
    double t = now_s() - p->start, rate = t > 0 ? done / t : 0;
    if (p->tty) {
        int width = 30, fill = (int)((double)width * done / total);
        fprintf(stderr, "\r[%.*s%*s] %d/%d texts, %.1f/s", fill,
                "==============================", width - fill, "", done, total, rate);
        if (done == total)
            fputc('\n', stderr);
    } else {
        int tenth = (int)(10.0 * done / total);
        if (tenth > p->last_tenth || done == total)
            fprintf(stderr, "clattn-embed: %d/%d texts, %.1f/s\n", done, total, rate);
        p->last_tenth = tenth;
    }
}

/* ---- output -------------------------------------------------------------------- */

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20)
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

static void print_json(const char *model, const float *v, int32_t n, int32_t dim, bool sim)
{
    printf("{\n  \"model\": ");
    json_string(model);
    printf(",\n  \"dim\": %d,\n  \"embeddings\": [", dim);
    for (int32_t i = 0; i < n; i++) {
        printf("%s\n    [", i ? "," : "");
        for (int32_t d = 0; d < dim; d++)
        {
            fputs(d ? ", " : "", stdout);
            cli_json_number(stdout, (double)v[(size_t)i * dim + d], 8); /* null if not finite */
        }
        putchar(']');
    }
    printf("%s]", n ? "\n  " : "");
    if (sim) {
        printf(",\n  \"similarity\": [");
        for (int32_t i = 0; i < n; i++) {
            printf("%s\n    [", i ? "," : "");
            for (int32_t j = 0; j < n; j++) {
                double dot = 0, a = 0, b = 0;
                for (int32_t d = 0; d < dim; d++) {
                    double x = v[(size_t)i * dim + d], y = v[(size_t)j * dim + d];
                    dot += x * y, a += x * x, b += y * y;
                }
                fputs(j ? ", " : "", stdout);
                cli_json_number(stdout, a > 0 && b > 0 ? dot / sqrt(a * b) : 0.0, 6);
            }
            putchar(']');
        }
        printf("%s]", n ? "\n  " : "");
    }
    printf("\n}\n");
}

static void print_text(text_list *l, const float *v, int32_t dim)
{
    for (int32_t i = 0; i < l->count; i++) {
        const float *r = v + (size_t)i * dim;
        printf("%d\t[", i);
        for (int32_t d = 0; d < dim && d < 4; d++)
            printf("%s%.5f", d ? ", " : "", (double)r[d]);
        printf("%s] (dim %d)\t%.60s%s\n", dim > 4 ? ", ..." : "", dim, l->items[i],
               strlen(l->items[i]) > 60 ? "..." : "");
    }
}

/* ---- main ---------------------------------------------------------------------- */

static int fail(const char *what, clattn_status st)
{
    fprintf(stderr, "clattn-embed: %s: %s: %s\n", what, clattn_status_str(st),
            clattn_last_error());
    return 1;
}

typedef struct attention_out {
    const char *npy, *json, *map;   /* any may be NULL */
    int32_t layer, head;            /* --layer, --head; -1: all */
} attention_out;

/* The heatmaps of --attention-map, tokens as labels on both axes. */
static bool draw_map(clattn_embedder *e, const char *model, const attention_out *a,
                     const float *w, const int64_t *ids, int32_t L, int32_t H, int32_t T)
{
    const clattn_tokenizer *tok = clattn_embedder_tokenizer(e);
    char **labels = calloc((size_t)T, sizeof *labels);
    bool ok = labels != NULL;
    for (int32_t i = 0; ok && i < T; i++)
        ok = (labels[i] = token_label(tok, ids[i])) != NULL;
    char err[1024], title[512];
    char name[256];
    snprintf(title, sizeof title, "attention weights of %s",
             cli_folder_name(model, name, sizeof name));
    attention_map m = {w, L, H, T, T, a->layer, a->head, (const char *const *)labels,
                       (const char *const *)labels, title, "key token", "query token"};
    if (!ok)
        snprintf(err, sizeof err, "out of memory");
    if (!ok || !attention_map_draw(a->map, &m, err, sizeof err)) {
        fprintf(stderr, "clattn-embed: --attention-map: %s\n", err);
        ok = false;
    }
    for (int32_t i = 0; labels && i < T; i++)
        free(labels[i]);
    free(labels);
    return ok;
}

/* --attention-weights / --attention-tokens / --attention-map for one text:
 * 0, or 1 on error. */
static int write_attention(clattn_embedder *e, const char *model, const char *text,
                           const clattn_embed_params *p, const attention_out *a)
{
    const char *npy_path = a->npy, *json_path = a->json;
    int32_t T = 0, L = 0, H = 0;
    clattn_status st = clattn_embedder_attention(e, text, p, NULL, 0, NULL, &T, &L, &H);
    if (st != CLATTN_OK)
        return fail("attention weights", st);
    const size_t n = (size_t)L * H * T * T;
    float *w = malloc(n * sizeof *w);
    int64_t *ids = malloc((size_t)T * sizeof *ids);
    int rc = 0;
    if (!w || !ids) {
        fprintf(stderr, "clattn-embed: out of memory for %zu attention weights\n", n);
        rc = 1;
    } else if ((st = clattn_embedder_attention(e, text, p, w, (int64_t)n, ids, &T, &L, &H)) !=
               CLATTN_OK) {
        rc = fail("attention weights", st);
    }
    const int64_t shape[4] = {L, H, T, T};
    char err[512];
    if (rc == 0 && npy_path && !npy_write_f32(npy_path, 4, shape, w, err, sizeof err)) {
        fprintf(stderr, "clattn-embed: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && json_path) {
        size_t len = strlen(text);
        char *extra = malloc(6 * len + 16);
        if (extra) {
            /* "text": the input, escaped as JSON (at most 6 bytes a byte). */
            char *o = extra + sprintf(extra, "\"text\": \"");
            for (const unsigned char *c = (const unsigned char *)text; *c; c++)
                o += *c == '"' || *c == '\\' ? sprintf(o, "\\%c", *c)
                     : *c < 0x20              ? sprintf(o, "\\u%04x", *c)
                                              : sprintf(o, "%c", *c);
            strcpy(o, "\"");
        }
        if (!extra || !token_labels_write(json_path, clattn_embedder_tokenizer(e), 4, shape, ids,
                                          T, extra, err, sizeof err)) {
            fprintf(stderr, "clattn-embed: %s\n", extra ? err : "out of memory");
            rc = 1;
        }
        free(extra);
    }
    if (rc == 0 && a->map && !draw_map(e, model, a, w, ids, L, H, T))
        rc = 1;
    free(w);
    free(ids);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *device = NULL, *format = "text";
    attention_out attn = {NULL, NULL, NULL, -1, -1};
    clattn_embed_params p = clattn_embed_params_default();
    bool quiet = false;
    text_list texts = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strncmp(a, "--", 2) == 0 && strcmp(a, "--help") != 0 && strcmp(a, "--") != 0;
        if (takes && !val) {
            fprintf(stderr, "clattn-embed: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-q") == 0) {
            quiet = true;
        } else if (strcmp(a, "--model") == 0) {
            model = argv[++i];
        } else if (strcmp(a, "--file") == 0) {
            file = argv[++i];
        } else if (strcmp(a, "--device") == 0) {
            device = argv[++i];
        } else if (strcmp(a, "--attention-weights") == 0 ||
                   strcmp(a, "--attention-tokens") == 0) {
            if (!cli_output_path("clattn-embed", a, val))
                return 2;
            *(a[12] == 'w' ? &attn.npy : &attn.json) = argv[++i];
        } else if (strcmp(a, "--attention-map") == 0) {
            char err[512];
            plot_format fmt;
            if (!cli_output_path("clattn-embed", a, val))
                return 2;
            if (!plot_format_of(val, &fmt, err, sizeof err)) {
                fprintf(stderr, "clattn-embed: --attention-map: %s\n", err);
                return 2;
            }
            attn.map = argv[++i];
        } else if (strcmp(a, "--layer") == 0 || strcmp(a, "--head") == 0) {
            int64_t v;
            if (!cli_int("clattn-embed", a, argv[++i], 0, 1 << 20, &v))
                return 2;
            *(a[2] == 'l' ? &attn.layer : &attn.head) = (int32_t)v;
        } else if (strcmp(a, "--output-format") == 0) {
            format = argv[++i];
            if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "json+")) {
                fprintf(stderr, "clattn-embed: --output-format is text, json or json+\n");
                return 2;
            }
        } else if (strcmp(a, "--pooling") == 0) {
            const char *v = argv[++i];
            p.pooling = strcmp(v, "mean") == 0  ? CLATTN_POOLING_MEAN
                        : strcmp(v, "cls") == 0 ? CLATTN_POOLING_CLS
                        : strcmp(v, "max") == 0 ? CLATTN_POOLING_MAX
                                                : (clattn_pooling)-1;
            if ((int)p.pooling < 0) {
                fprintf(stderr, "clattn-embed: --pooling is mean, cls or max\n");
                return 2;
            }
        } else if (strcmp(a, "--normalize") == 0) {
            const char *v = argv[++i];
            p.normalize = strcmp(v, "yes") == 0 ? 1 : strcmp(v, "no") == 0 ? 0 : -2;
            if (p.normalize < -1) {
                fprintf(stderr, "clattn-embed: --normalize is yes or no\n");
                return 2;
            }
        } else if (strcmp(a, "--batch") == 0 || strcmp(a, "--max-length") == 0) {
            int64_t v;
            if (!cli_int("clattn-embed", a, argv[++i], a[2] == 'b' ? 1 : 2, 1 << 20, &v))
                return 2;
            *(a[2] == 'b' ? &p.batch_size : &p.max_length) = (int32_t)v;
        } else if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++)
                push(&texts, argv[i], strlen(argv[i]));
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "clattn-embed: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else if (!push(&texts, a, strlen(a))) {
            fprintf(stderr, "clattn-embed: out of memory\n");
            return 1;
        }
    }
    if (file || texts.count == 0) {
        FILE *f = !file || strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
        if (!f) {
            perror(file);
            return 1;
        }
        if (!quiet && f == stdin && isatty(0))
            fprintf(stderr, "clattn-embed: reading texts from standard input, one per line\n");
        bool ok = read_lines(f, &texts);
        if (f != stdin)
            fclose(f);
        if (!ok) {
            fprintf(stderr, "clattn-embed: cannot read %s\n", file ? file : "standard input");
            free_texts(&texts);
            return 1;
        }
    }
    const bool want_attn = attn.npy || attn.json || attn.map;
    if ((want_attn && texts.count != 1) || ((attn.layer >= 0 || attn.head >= 0) && !attn.map)) {
        if (want_attn && texts.count != 1)
            fprintf(stderr, "clattn-embed: --attention-weights, --attention-tokens and "
                            "--attention-map take exactly one text (got %d)\n",
                    texts.count);
        else
            fprintf(stderr, "clattn-embed: --layer and --head go with --attention-map\n");
        free_texts(&texts);
        return 2;
    }
    char found[PATH_MAX];
    if (!model)
        model = default_model(found, sizeof found);
    if (!is_dir_with_model(model)) {
        fprintf(stderr,
                "clattn-embed: no model at %s (no config.json).\n"
                "  Fetch all-MiniLM-L6-v2 with: tools/fetch-model\n"
                "  or pass --model DIR (or set CLATTN_MODEL) for another folder.\n",
                model);
        free_texts(&texts);
        return 1;
    }

    clattn_ctx_params cp = clattn_ctx_params_default();
    cp.device = device;
    clattn_ctx *ctx = NULL;
    clattn_embedder *e = NULL;
    clattn_status st = clattn_ctx_create(&cp, &ctx);
    if (st != CLATTN_OK) {
        free_texts(&texts);
        return fail("creating the context", st);
    }
    double t0 = now_s();
    if ((st = clattn_embedder_load(ctx, model, &e)) != CLATTN_OK) {
        int rc = fail(model, st);
        clattn_ctx_destroy(ctx);
        free_texts(&texts);
        return rc;
    }
    int32_t dim = clattn_embedder_dim(e);
    clattn_pooling pooling;
    bool normalize;
    int32_t max_len;
    clattn_embedder_defaults(e, &pooling, &normalize, &max_len);
    if (p.pooling)
        pooling = p.pooling;
    if (p.normalize >= 0)
        normalize = p.normalize == 1;
    if (!quiet) {
        clattn_device_info info;
        clattn_ctx_device_info(ctx, &info);
        static const char *const names[] = {"", "mean", "cls", "max"};
        fprintf(stderr,
                "clattn-embed: %s: dim %d, %s pooling, %snormalised, max %d tokens; "
                "loaded in %.2f s on %s\n",
                model, dim, names[pooling], normalize ? "" : "not ",
                p.max_length ? p.max_length : max_len, now_s() - t0, info.device_name);
    }
    float *out = malloc((size_t)(texts.count ? texts.count : 1) * (size_t)dim * sizeof *out);
    progress prog = {isatty(2) != 0, now_s(), -1};
    if (!quiet && texts.count > 64) {
        p.progress = on_progress;
        p.progress_user = &prog;
    }
    t0 = now_s();
    st = out ? clattn_embedder_embed(e, (const char *const *)texts.items, texts.count, out, &p)
             : CLATTN_ERR_OUT_OF_MEMORY;
    double secs = now_s() - t0;
    int rc = 0;
    if (st != CLATTN_OK) {
        rc = fail("embedding", st);
    } else {
        if (!quiet)
            fprintf(stderr, "clattn-embed: %d texts in %.3f s (%.1f texts/s)\n", texts.count,
                    secs, secs > 0 ? texts.count / secs : 0.0);
        if (strcmp(format, "text") == 0)
            print_text(&texts, out, dim);
        else
            print_json(model, out, texts.count, dim, strcmp(format, "json+") == 0);
        if (want_attn)
            rc = write_attention(e, model, texts.items[0], &p, &attn);
    }
    free(out);
    free_texts(&texts);
    clattn_embedder_destroy(e);
    clattn_ctx_destroy(ctx);
    return rc;
}
