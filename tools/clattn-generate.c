/* clattn-generate - text generation with a decoder language model from a
 * Hugging Face folder, with llama.cpp-style flags. Text streams to stdout;
 * the timing summary goes to stderr (-q drops it).
 *
 *   clattn-generate -m DIR -p "Once upon a time" -n 64
 *   clattn-generate -m DIR --prompt-ids 1,2,3 --temp 0 --output-format json
 *
 * Exit status: 0 on success, 1 on a runtime error (the library's message
 * on stderr), 2 on a usage error. */
#include "cli_args.h"
#include "attention_map.h"
#include "npy.h"
#include "plot.h"
#include "token_labels.h"

#include <clattn.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *TOOL = "clattn-generate";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clattn-generate -m DIR (-p TEXT | -f FILE | --prompt-ids IDS) [options]\n"
            "  -m, --model DIR        Hugging Face model folder (config.json, safetensors,\n"
            "                         tokenizer.json)\n"
            "  -p, --prompt TEXT      prompt text (tokenized with the folder's tokenizer,\n"
            "                         special tokens such as BOS added as it says)\n"
            "  -f, --file FILE        prompt text from a file\n"
            "      --prompt-ids IDS   prompt as token ids, e.g. 1,2,3\n"
            "  -n, --n-predict N      tokens to generate (default 128; -1: until the context\n"
            "                         is full)\n"
            "  -c, --ctx-size N       positions of the KV cache (default: 4096, at most the\n"
            "                         model's max_position_embeddings; 0: that maximum)\n"
            "      --temp T           temperature (default 0.8; 0: greedy)\n"
            "      --top-k N          (default 40; 0: off)\n"
            "      --top-p P          (default 0.95; 1: off)\n"
            "      --min-p P          (default 0.05; 0: off)\n"
            "      --repeat-penalty R (default 1.0: off)\n"
            "      --repeat-last-n N  window of the penalties (default 64; -1: all, 0: off)\n"
            "      --presence-penalty X, --frequency-penalty X   (default 0)\n"
            "  -s, --seed N           sampling seed (default -1: from the clock, printed)\n"
            "      --stop TEXT        stop once the output contains TEXT (repeatable)\n"
            "      --ignore-eos       do not stop at the model's eos ids\n"
            "      --cache-type T     f32 (default) or f16\n"
            "      --device SEL       device selector (as CLATTN_DEVICE)\n"
            "      --output-format F  text (default: stream the text) or json (one object:\n"
            "                         prompt_ids, ids, text, prompt_tokens_per_s,\n"
            "                         gen_tokens_per_s)\n"
            "      --logits FILE.npy  write float32 logits [T, vocab]: one row per prompt\n"
            "                         position, then one per generated token but the last\n"
            "      --attention-weights FILE.npy  write float32 attention weights\n"
            "                         [layers, heads, ctx_len]: how the last generated token\n"
            "                         attends to each token of the context (prompt and\n"
            "                         generated ids, itself included), per layer and head\n"
            "      --attention-tokens FILE.json  the ctx_len tokens of those columns\n"
            "                         ({\"shape\", \"ids\", \"tokens\", \"labels\", \"query\"})\n"
            "      --attention-map FILE.png|FILE.svg  draw that row as heatmaps, one panel\n"
            "                         per layer and head (the row: the last generated\n"
            "                         token; columns: the context's tokens)\n"
            "      --layer L, --head H  with --attention-map: only layer L and/or head H\n"
            "  -q, --quiet            no timing summary\n"
            "  -h, --help             this text\n");
}

typedef struct options {
    const char *model, *prompt, *file, *device, *logits_path, *format;
    const char *attn_npy, *attn_json, *attn_map;
    int64_t layer, head;        /* --layer, --head; -1: all */
    int32_t *prompt_ids, n_prompt_ids;
    int64_t n_predict, ctx_size, seed;
    bool quiet, ignore_eos, json;
    clattn_cache_type cache;
    clattn_sampler_params sp;
    const char **stop;
    int32_t n_stop;
} options;

/* Whether argument a is the option short (e.g. "-m") or long ("--model",
 * may be NULL). */
static bool is_option(const char *a, const char *short_name, const char *long_name)
{
    return strcmp(a, short_name) == 0 || (long_name && strcmp(a, long_name) == 0);
}

/* Returns 0 when parsed, 1 for --help (exit 0), 2 on a usage error. */
static int parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->ctx_size = -1;
    o->seed = -1;
    o->layer = o->head = -1;
    o->sp = clattn_sampler_params_default();
    o->sp.temperature = 0.8, o->sp.top_k = 40, o->sp.top_p = 0.95, o->sp.min_p = 0.05;
    o->stop = calloc((size_t)argc, sizeof *o->stop);
    if (!o->stop)
        return 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        double x;
#define IS(s, l) is_option(a, s, l)
#define NEED_VALUE                                                                            \
    if (!v) {                                                                                 \
        fprintf(stderr, "%s: %s needs a value\n", TOOL, a);                                   \
        return 2;                                                                             \
    }                                                                                         \
    i++;
        if (IS("-h", "--help")) {
            usage(stdout);
            return 1;
        } else if (IS("-q", "--quiet")) {
            o->quiet = true;
        } else if (IS("--ignore-eos", NULL)) {
            o->ignore_eos = true;
        } else if (IS("-m", "--model")) {
            NEED_VALUE o->model = v;
        } else if (IS("-p", "--prompt")) {
            NEED_VALUE o->prompt = v;
        } else if (IS("-f", "--file")) {
            NEED_VALUE o->file = v;
        } else if (IS("--device", NULL)) {
            NEED_VALUE o->device = v;
        } else if (IS("--logits", NULL)) {
            NEED_VALUE o->logits_path = v;
        } else if (IS("--attention-weights", "--attention-tokens")) {
            NEED_VALUE if (!cli_output_path(TOOL, a, v)) return 2;
            *(a[12] == 'w' ? &o->attn_npy : &o->attn_json) = v;
        } else if (IS("--attention-map", NULL)) {
            char err[512];
            plot_format fmt;
            NEED_VALUE if (!cli_output_path(TOOL, a, v)) return 2;
            if (!plot_format_of(v, &fmt, err, sizeof err)) {
                fprintf(stderr, "%s: --attention-map: %s\n", TOOL, err);
                return 2;
            }
            o->attn_map = v;
        } else if (IS("--layer", "--head")) {
            NEED_VALUE if (!cli_int(TOOL, a, v, 0, 1 << 20, a[2] == 'l' ? &o->layer : &o->head))
                return 2;
        } else if (IS("--stop", NULL)) {
            NEED_VALUE o->stop[o->n_stop++] = v;
        } else if (IS("--prompt-ids", NULL)) {
            NEED_VALUE free(o->prompt_ids);
            if (!cli_int_list(TOOL, a, v, 0, INT32_MAX, &o->prompt_ids, &o->n_prompt_ids))
                return 2;
        } else if (IS("--output-format", NULL)) {
            NEED_VALUE if (strcmp(v, "json") && strcmp(v, "text"))
            {
                fprintf(stderr, "%s: --output-format: '%s' is not text or json\n", TOOL, v);
                return 2;
            }
            o->json = strcmp(v, "json") == 0;
        } else if (IS("--cache-type", NULL)) {
            NEED_VALUE if (strcmp(v, "f32") && strcmp(v, "f16"))
            {
                fprintf(stderr, "%s: --cache-type: '%s' is not f32 or f16\n", TOOL, v);
                return 2;
            }
            o->cache = strcmp(v, "f16") == 0 ? CLATTN_CACHE_F16 : CLATTN_CACHE_F32;
        } else if (IS("-n", "--n-predict")) {
            NEED_VALUE if (!cli_int(TOOL, a, v, -1, INT32_MAX, &o->n_predict)) return 2;
            if (o->n_predict == 0) {
                fprintf(stderr, "%s: %s: 0 tokens asks for nothing (-1: until full)\n", TOOL,
                        a);
                return 2;
            }
        } else if (IS("-c", "--ctx-size")) {
            NEED_VALUE if (!cli_int(TOOL, a, v, 0, INT32_MAX, &o->ctx_size)) return 2;
        } else if (IS("-s", "--seed")) {
            NEED_VALUE if (!cli_int(TOOL, a, v, -1, INT64_MAX, &o->seed)) return 2;
        } else if (IS("--top-k", NULL)) {
            NEED_VALUE if (!cli_int(TOOL, a, v, 0, INT32_MAX, &n)) return 2;
            o->sp.top_k = (int32_t)n;
        } else if (IS("--repeat-last-n", NULL)) {
            NEED_VALUE if (!cli_int(TOOL, a, v, -1, INT32_MAX, &n)) return 2;
            o->sp.repeat_last_n = (int32_t)n;
        } else if (IS("--temp", NULL)) {
            NEED_VALUE if (!cli_double(TOOL, a, v, 0, 1e6, &o->sp.temperature)) return 2;
        } else if (IS("--top-p", NULL)) {
            NEED_VALUE if (!cli_double(TOOL, a, v, 0, 1, &x)) return 2;
            /* llama.cpp treats 0 as off too; the library wants (0, 1]. */
            o->sp.top_p = x > 0 ? x : 1.0;
        } else if (IS("--min-p", NULL)) {
            NEED_VALUE if (!cli_double(TOOL, a, v, 0, 1, &o->sp.min_p)) return 2;
        } else if (IS("--repeat-penalty", NULL)) {
            NEED_VALUE if (!cli_double(TOOL, a, v, 1e-6, 1e6, &o->sp.repeat_penalty)) return 2;
        } else if (IS("--presence-penalty", NULL)) {
            NEED_VALUE if (!cli_double(TOOL, a, v, -1e6, 1e6, &o->sp.presence_penalty)) return 2;
        } else if (IS("--frequency-penalty", NULL)) {
            NEED_VALUE if (!cli_double(TOOL, a, v, -1e6, 1e6, &o->sp.frequency_penalty)) return 2;
        } else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", TOOL, a);
            return 2;
        }
#undef IS
#undef NEED_VALUE
    }
    int sources = !!o->prompt + !!o->file + !!o->prompt_ids;
    if (!o->model || sources != 1) {
        fprintf(stderr, "%s: give -m DIR and exactly one of -p, -f, --prompt-ids\n", TOOL);
        usage(stderr);
        return 2;
    }
    if ((o->layer >= 0 || o->head >= 0) && !o->attn_map) {
        fprintf(stderr, "%s: --layer and --head go with --attention-map\n", TOOL);
        return 2;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                buf = NULL;
            }
            buf = b;
        }
    }
    fclose(f);
    if (buf)
        *len = n;
    return buf;
}

/* The prompt as ids (malloc'd), from the options. */
static bool prompt_ids(const options *o, const clattn_tokenizer *tok, int32_t **ids, int32_t *n)
{
    if (o->prompt_ids) {
        *ids = o->prompt_ids, *n = o->n_prompt_ids;
        return true;
    }
    if (!tok) {
        fprintf(stderr, "%s: %s has no tokenizer.json; give --prompt-ids\n", TOOL, o->model);
        return false;
    }
    size_t len = o->prompt ? strlen(o->prompt) : 0;
    char *text = o->prompt ? (char *)o->prompt : read_file(o->file, &len);
    if (!text) {
        fprintf(stderr, "%s: cannot read %s\n", TOOL, o->file);
        return false;
    }
    int32_t count = 0;
    clattn_status st = clattn_tokenizer_encode_ex(tok, text, len, true, 0, NULL, 0, &count);
    int64_t *wide = st == CLATTN_OK ? malloc(((size_t)count + 1) * sizeof *wide) : NULL;
    if (wide)
        st = clattn_tokenizer_encode_ex(tok, text, len, true, 0, wide, count, &count);
    if (text != o->prompt)
        free(text);
    if (st != CLATTN_OK || !wide) {
        fprintf(stderr, "%s: tokenizing the prompt: %s\n", TOOL, clattn_last_error());
        free(wide);
        return false;
    }
    *ids = malloc(((size_t)count + 1) * sizeof **ids);
    for (int32_t i = 0; *ids && i < count; i++)
        (*ids)[i] = (int32_t)wide[i];
    *n = count;
    free(wide);
    if (count == 0) {
        fprintf(stderr, "%s: the prompt gives no tokens\n", TOOL);
        return false;
    }
    return *ids != NULL;
}

static bool stream_token(void *user, int32_t id, const char *text, size_t len)
{
    (void)user, (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* A rate for the JSON and the summary: null/0 rather than NaN or inf. */
static double rate(int32_t n, double seconds)
{
    return seconds > 0 && n > 0 ? n / seconds : 0.0;
}

static json_t *ids_json(const int32_t *ids, int32_t n)
{
    json_t *a = json_array();
    for (int32_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* The text of ids, *len bytes (it may hold NUL: a token can decode to
 * U+0000, so the length, not strlen, ends it). */
static char *decode_text(const clattn_tokenizer *tok, const int32_t *ids, int32_t n,
                         size_t *out_len)
{
    *out_len = 0;
    if (!tok)
        return strdup("");
    int64_t *wide = malloc(((size_t)n + 1) * sizeof *wide);
    for (int32_t i = 0; wide && i < n; i++)
        wide[i] = ids[i];
    size_t len = 0;
    char *text = NULL;
    if (wide && clattn_tokenizer_decode(tok, wide, n, true, NULL, 0, &len) == CLATTN_OK &&
        (text = malloc(len + 1)) &&
        clattn_tokenizer_decode(tok, wide, n, true, text, len + 1, &len) != CLATTN_OK) {
        free(text);
        text = NULL;
    }
    free(wide);
    if (text)
        *out_len = len;
    return text;
}

/* The heatmaps of --attention-map: one row (the last token) per panel. */
static bool draw_map(const options *o, const clattn_lm *lm, const clattn_lm_info *info,
                     const float *w, const int64_t *ids, int32_t len)
{
    const clattn_tokenizer *tok = clattn_lm_tokenizer(lm);
    char **labels = calloc((size_t)len, sizeof *labels);
    bool ok = labels != NULL;
    for (int32_t i = 0; ok && i < len; i++) {
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)ids[i]);
        /* Without a tokenizer (--prompt-ids on a bare folder) the ids are the labels. */
        ok = (labels[i] = tok ? token_label(tok, ids[i]) : strdup(id)) != NULL;
    }
    char err[1024], title[512];
    char name[256];
    snprintf(title, sizeof title, "attention of the last generated token, %s",
             cli_folder_name(o->model, name, sizeof name));
    attention_map m = {w, info->n_layers, info->n_heads, 1, len, (int32_t)o->layer,
                       (int32_t)o->head, (const char *const *)(labels ? labels + len - 1 : NULL),
                       (const char *const *)labels, title, "context token", "query"};
    if (!ok)
        snprintf(err, sizeof err, "out of memory");
    if (!ok || !attention_map_draw(o->attn_map, &m, err, sizeof err)) {
        fprintf(stderr, "%s: --attention-map: %s\n", TOOL, err);
        ok = false;
    }
    for (int32_t i = 0; labels && i < len; i++)
        free(labels[i]);
    free(labels);
    return ok;
}

/* --attention-weights / --attention-tokens: the last generated id is not
 * in the cache after generation (nothing needed its keys), so it is
 * decoded first; then its row over the ctx_len = n_prompt + n_gen
 * positions. false (message printed) on failure. */
static bool write_attention(const options *o, clattn_lm_session *s, const clattn_lm *lm,
                            const int32_t *prompt, int32_t n_prompt, const int32_t *gen,
                            int32_t n_gen)
{
    clattn_lm_info info;
    clattn_lm_get_info(lm, &info);
    int32_t seq = 0, len = 0;
    if (n_gen > 0 && clattn_lm_decode(s, 1, &seq, &gen[n_gen - 1], NULL) != CLATTN_OK) {
        fprintf(stderr, "%s: %s\n", TOOL, clattn_last_error());
        return false;
    }
    if (clattn_lm_attention_last(s, seq, NULL, 0, &len) != CLATTN_OK) {
        fprintf(stderr, "%s: %s\n", TOOL, clattn_last_error());
        return false;
    }
    const size_t n = (size_t)info.n_layers * info.n_heads * len;
    float *w = malloc(n * sizeof *w);
    int64_t *ids = malloc((size_t)len * sizeof *ids);
    bool ok = w && ids;
    if (!ok)
        fprintf(stderr, "%s: out of memory for %zu attention weights\n", TOOL, n);
    if (ok && clattn_lm_attention_last(s, seq, w, (int64_t)n, &len) != CLATTN_OK) {
        fprintf(stderr, "%s: %s\n", TOOL, clattn_last_error());
        ok = false;
    }
    const int64_t shape[3] = {info.n_layers, info.n_heads, len};
    char err[512], extra[64];
    if (ok && o->attn_npy && !npy_write_f32(o->attn_npy, 3, shape, w, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", TOOL, err);
        ok = false;
    }
    for (int32_t i = 0; ok && i < len; i++)
        ids[i] = i < n_prompt ? prompt[i] : gen[i - n_prompt];
    snprintf(extra, sizeof extra, "\"query\": %d", len - 1);
    if (ok && o->attn_json &&
        !token_labels_write(o->attn_json, clattn_lm_tokenizer(lm), 3, shape, ids, len, extra, err,
                            sizeof err)) {
        fprintf(stderr, "%s: %s\n", TOOL, err);
        ok = false;
    }
    if (ok && o->attn_map && !draw_map(o, lm, &info, w, ids, len))
        ok = false;
    free(w);
    free(ids);
    return ok;
}

int main(int argc, char **argv)
{
    options o;
    int pr = parse(argc, argv, &o);
    if (pr != 0) {
        free(o.stop);
        free(o.prompt_ids);
        return pr == 1 ? 0 : 2;
    }
    int rc = 1;
    clattn_ctx *ctx = NULL;
    clattn_lm *lm = NULL;
    clattn_lm_session *s = NULL;
    int32_t *ids = NULL, n_ids = 0, *out = NULL;
    float *logits = NULL;
    clattn_ctx_params cp = clattn_ctx_params_default();
    cp.device = o.device;
    if (clattn_ctx_create(&cp, &ctx) != CLATTN_OK || clattn_lm_load(ctx, o.model, &lm) != CLATTN_OK) {
        fprintf(stderr, "%s: %s\n", TOOL, clattn_last_error());
        goto done;
    }
    clattn_lm_info info;
    clattn_lm_get_info(lm, &info);
    if (!prompt_ids(&o, clattn_lm_tokenizer(lm), &ids, &n_ids))
        goto done;
    clattn_lm_session_params sp = clattn_lm_session_params_default();
    sp.ctx_size = o.ctx_size < 0 ? (info.max_positions < 4096 ? info.max_positions : 4096)
                                 : (int32_t)(o.ctx_size < info.max_positions ? o.ctx_size
                                                                              : info.max_positions);
    if (o.ctx_size > info.max_positions)
        fprintf(stderr, "%s: --ctx-size %lld capped at the model's %d positions\n", TOOL,
                (long long)o.ctx_size, info.max_positions);
    sp.cache_type = o.cache;
    sp.want_attention = o.attn_npy || o.attn_json || o.attn_map;
    if (clattn_lm_session_create(lm, &sp, &s) != CLATTN_OK) {
        fprintf(stderr, "%s: %s\n", TOOL, clattn_last_error());
        goto done;
    }
    const int32_t cap = sp.ctx_size ? sp.ctx_size : info.max_positions;
    int64_t max_tokens = o.n_predict < 0 ? cap - n_ids : o.n_predict;
    if (max_tokens > cap - n_ids)
        max_tokens = cap - n_ids;
    if (max_tokens < 1) {
        fprintf(stderr, "%s: the prompt's %d tokens fill the context of %d (-c)\n", TOOL, n_ids,
                cap);
        goto done;
    }
    clattn_generate_params gp = clattn_generate_params_default();
    gp.max_tokens = (int32_t)max_tokens;
    gp.sampling = o.sp;
    uint64_t seed = o.seed >= 0 ? (uint64_t)o.seed : (uint64_t)time(NULL);
    gp.sampling.seed = seed;
    gp.ignore_eos = o.ignore_eos;
    gp.stop = o.stop;
    gp.n_stop = o.n_stop;
    gp.on_token = o.json ? NULL : stream_token;
    out = malloc((size_t)max_tokens * sizeof *out);
    if (o.logits_path) {
        logits = malloc(((size_t)n_ids + (size_t)max_tokens) * (size_t)info.vocab_size *
                        sizeof(float));
        if (!logits) {
            fprintf(stderr, "%s: no memory for --logits\n", TOOL);
            goto done;
        }
        gp.logits = logits;
    }
    if (!out) {
        fprintf(stderr, "%s: out of memory\n", TOOL);
        goto done;
    }
    clattn_generate_result res;
    if (clattn_lm_generate(s, 0, ids, n_ids, &gp, out, (int32_t)max_tokens, &res) != CLATTN_OK) {
        fprintf(stderr, "%s: %s\n", TOOL, clattn_last_error());
        goto done;
    }
    const double prompt_rate = rate(n_ids, res.prompt_seconds);
    /* The first id comes from the prefill; the decode steps make the rest. */
    const double gen_rate = rate(res.n_ids - 1, res.gen_seconds);
    if (o.json) {
        size_t text_len;
        char *text = decode_text(clattn_lm_tokenizer(lm), out, res.n_ids, &text_len);
        json_t *j = json_object();
        json_object_set_new(j, "prompt_ids", ids_json(ids, n_ids));
        json_object_set_new(j, "ids", ids_json(out, res.n_ids));
        json_object_set_new(j, "text", json_stringn(text ? text : "", text ? text_len : 0));
        json_object_set_new(j, "prompt_tokens_per_s", json_real(prompt_rate));
        json_object_set_new(j, "gen_tokens_per_s", json_real(gen_rate));
        char *dump = json_dumps(j, JSON_COMPACT);
        printf("%s\n", dump ? dump : "{}");
        free(dump);
        json_decref(j);
        free(text);
    } else {
        printf("\n");
    }
    if (o.logits_path) {
        int64_t shape[2] = {n_ids + res.n_ids - 1, info.vocab_size};
        char err[256];
        if (!npy_write_f32(o.logits_path, 2, shape, logits, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", TOOL, err);
            goto done;
        }
    }
    if ((o.attn_npy || o.attn_json || o.attn_map) && !write_attention(&o, s, lm, ids, n_ids, out, res.n_ids))
        goto done;
    if (!o.quiet) {
        static const char *why[] = {"max tokens", "eos", "stop string", "callback", "context full"};
        fprintf(stderr,
                "%s: prompt %d tokens in %.3f s (%.1f tokens/s); generated %d tokens in %.3f s "
                "(%.1f tokens/s); stopped at %s; seed %llu\n",
                TOOL, n_ids, res.prompt_seconds, prompt_rate, res.n_ids, res.gen_seconds,
                gen_rate, why[res.reason], (unsigned long long)seed);
    }
    rc = 0;
done:
    if (ids != o.prompt_ids)
        free(ids);
    free(o.prompt_ids);
    free(o.stop);
    free(out);
    free(logits);
    clattn_lm_session_destroy(s);
    clattn_lm_destroy(lm);
    clattn_ctx_destroy(ctx);
    return rc;
}
