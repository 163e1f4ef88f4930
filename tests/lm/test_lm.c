/* test_lm.c - decoder language models against transformers.
 *
 * Fixtures (tests/fixtures/make_lm_fixtures.py): tiny Llama, Qwen2,
 * Mistral and GPT-2 folders with random weights saved by save_pretrained
 * (f32, bf16, f16; sharded; both config spellings), and transformers'
 * float64 logits of every position and greedy continuation for each.
 *
 * Checks, per model:
 *   - the logits of the prompt (prefill) and of every decode step match
 *     the reference within LOGIT_TOL of the row's largest |logit|;
 *   - greedy generation (clattn_lm_generate, temperature 0) gives exactly
 *     transformers' ids, stopping where it stopped (GPT-2's eos list);
 *   - seeded sampling with every sampler option gives the ids the fixture
 *     drew from transformers' processors with the documented RNG (so the
 *     same on POCL and Rusticl);
 *   - the KV-cache path equals a full recompute: the whole sequence
 *     prefilled at once gives the step-by-step logits;
 *   - three sequences of different lengths decoded in one batch give what
 *     each gives decoded alone;
 *   - truncating to the prompt and decoding again repeats the logits;
 *   - a float16 cache stays within F16_TOL of the reference.
 * Then bad input: ids out of the vocabulary, a prompt longer than the
 * context, a full cache, a missing shard, a wrong shape, an unknown
 * architecture, an unsupported rope type, a corrupt tokenizer.json. */
#define _GNU_SOURCE /* memmem */
#include "core/core.h" /* ctx->loop_budget, for the fallback test */
#include "npy.h"
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* float32 forward against a float64 reference on the same weights: the
 * error is a few float32 roundings per layer (measured up to ~2e-6 of the
 * largest logit); 2e-5 leaves room across devices and still fails any
 * real mistake (a wrong rope angle or a missed bias moves logits by 1e-2
 * and more). */
#define LOGIT_TOL 2e-5
/* Keys and values rounded to half: relative error 2^-11 per element. */
#define F16_TOL 5e-3
/* Two float32 computations of the same sum in different orders. */
#define SAME_TOL 2e-6

static const char *fixtures;

typedef struct lm_case {
    char dir[512];
    int32_t prompt[64], n_prompt;
    int32_t ids[64], n_ids;
    npy_array logits;        /* [n_prompt + n_ids - 1, vocab] */
    /* A seeded sampled continuation (when the case has one): transformers'
     * processors and clattn's documented RNG, made by the fixture script. */
    clattn_sampler_params sampling;
    int32_t sampled[64], n_sampled;
} lm_case;

/* The text a generation's callback received, concatenated. */
typedef struct streamed {
    char text[4096];
    size_t len;
    int calls;
} streamed;

static bool collect(void *user, int32_t id, const char *text, size_t len)
{
    streamed *st = user;
    (void)id;
    if (st->len + len < sizeof st->text) {
        memcpy(st->text + st->len, text, len);
        st->len += len;
        st->text[st->len] = '\0';
    }
    st->calls++;
    return true;
}

/* Streamed text equals the full decode, and a stop string taken from the
 * middle of that text stops generation right after it appears. */
static void test_text(clattn_lm_session *s, const clattn_tokenizer *tok, const lm_case *c,
                      const char *name)
{
    clattn_generate_params gp = clattn_generate_params_default();
    gp.max_tokens = 32;
    gp.sampling.temperature = 0;
    streamed got = {{0}, 0, 0};
    gp.on_token = collect;
    gp.user = &got;
    int32_t out[32];
    clattn_generate_result res;
    CHECK_OK(clattn_lm_generate(s, 0, c->prompt, c->n_prompt, &gp, out, 32, &res));
    int64_t wide[32];
    for (int32_t i = 0; i < res.n_ids; i++)
        wide[i] = out[i];
    char full[4096];
    size_t len = 0;
    CHECK_OK(clattn_tokenizer_decode(tok, wide, res.n_ids, true, full, sizeof full, &len));
    CHECK(len == got.len && memcmp(full, got.text, len) == 0,
          "%s: streamed text (%zu bytes) differs from the decode (%zu bytes)", name, got.len,
          len);
    if (len < 6)
        return;
    /* A stop string of up to 3 bytes from the middle of the text (random
     * models emit byte tokens, NUL included: the string ends there). */
    char stop[4];
    memcpy(stop, full + len / 2, 3);
    stop[3] = '\0';
    if (!stop[0])
        return;
    const char *stops[1] = {stop};
    gp.stop = stops;
    gp.n_stop = 1;
    got.len = 0;
    got.text[0] = '\0';
    CHECK_OK(clattn_lm_generate(s, 0, c->prompt, c->n_prompt, &gp, out, 32, &res));
    CHECK(res.reason == CLATTN_STOP_STRING || res.reason == CLATTN_STOP_EOS,
          "%s: stop string \"%s\" did not stop generation (reason %d)", name, stop,
          (int)res.reason);
    CHECK(memmem(got.text, got.len, stop, strlen(stop)) != NULL,
          "%s: the text lacks the stop string \"%s\" (reason %d)", name, stop,
          (int)res.reason);
}

static bool read_case(const char *name, lm_case *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s/%s", fixtures, name);
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/case.json", c->dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    CHECK(root != NULL, "%s: %s", path, jerr.text);
    if (!root)
        return false;
    json_t *p = json_object_get(root, "prompt_ids"), *g = json_object_get(root, "ids");
    c->n_prompt = (int32_t)json_array_size(p);
    c->n_ids = (int32_t)json_array_size(g);
    for (int32_t i = 0; i < c->n_prompt; i++)
        c->prompt[i] = (int32_t)json_integer_value(json_array_get(p, (size_t)i));
    for (int32_t i = 0; i < c->n_ids; i++)
        c->ids[i] = (int32_t)json_integer_value(json_array_get(g, (size_t)i));
    json_t *smp = json_object_get(root, "sampled");
    if (smp) {
        json_t *prm = json_object_get(smp, "params"), *sid = json_object_get(smp, "ids");
        c->sampling = clattn_sampler_params_default();
        c->sampling.temperature = json_number_value(json_object_get(prm, "temperature"));
        c->sampling.top_k = (int32_t)json_integer_value(json_object_get(prm, "top_k"));
        c->sampling.top_p = json_number_value(json_object_get(prm, "top_p"));
        c->sampling.min_p = json_number_value(json_object_get(prm, "min_p"));
        c->sampling.repeat_penalty = json_number_value(json_object_get(prm, "repeat_penalty"));
        c->sampling.repeat_last_n =
            (int32_t)json_integer_value(json_object_get(prm, "repeat_last_n"));
        c->sampling.presence_penalty =
            json_number_value(json_object_get(prm, "presence_penalty"));
        c->sampling.frequency_penalty =
            json_number_value(json_object_get(prm, "frequency_penalty"));
        c->sampling.seed = (uint64_t)json_integer_value(json_object_get(prm, "seed"));
        c->n_sampled = (int32_t)json_array_size(sid);
        for (int32_t i = 0; i < c->n_sampled; i++)
            c->sampled[i] = (int32_t)json_integer_value(json_array_get(sid, (size_t)i));
    }
    json_decref(root);
    snprintf(path, sizeof path, "%s/logits.npy", c->dir);
    bool ok = npy_read(path, &c->logits, err, sizeof err);
    CHECK(ok, "%s", err);
    return ok;
}

/* Worst |got - ref| over rows, each relative to its row's largest |ref|. */
static double row_error(const float *got, const float *ref, int32_t rows, int32_t V)
{
    double worst = 0;
    for (int32_t r = 0; r < rows; r++) {
        double scale = 1e-30, e = 0;
        for (int32_t j = 0; j < V; j++) {
            const double g = got[(size_t)r * V + j], f = ref[(size_t)r * V + j];
            scale = fmax(scale, fabs(f));
            e = isfinite(g) ? fmax(e, fabs(g - f)) : INFINITY;
        }
        worst = fmax(worst, e / scale);
    }
    return worst;
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Prefill + step-by-step decode of the reference sequence; logits of
 * every row into out [n_prompt + n_ids - 1, V]. */
static void run_steps(clattn_lm_session *s, int32_t seq, const lm_case *c, int32_t V, float *out)
{
    CHECK_OK(clattn_lm_session_truncate(s, seq, 0));
    CHECK_OK(clattn_lm_prefill(s, seq, c->prompt, c->n_prompt, out));
    for (int32_t i = 0; i + 1 < c->n_ids; i++)
        CHECK_OK(clattn_lm_decode(s, 1, &seq, &c->ids[i],
                                  out + (size_t)(c->n_prompt + i) * V));
}

static void test_model(clattn_ctx *ctx, const char *name)
{
    lm_case c;
    if (!read_case(name, &c))
        return;
    clattn_lm *lm = NULL;
    CHECK_OK(clattn_lm_load(ctx, c.dir, &lm));
    if (!lm)
        return;
    clattn_lm_info info;
    CHECK_OK(clattn_lm_get_info(lm, &info));
    const int32_t V = info.vocab_size, rows = c.n_prompt + c.n_ids - 1;
    CHECK(c.logits.ndim == 2 && c.logits.shape[0] == rows && c.logits.shape[1] == V,
          "%s: logits.npy shape", name);
    CHECK(info.device_bytes <= info.file_bytes + (uint64_t)info.hidden * 4 * 64,
          "%s: device bytes %llu exceed the file's %llu (weights inflated?)", name,
          (unsigned long long)info.device_bytes, (unsigned long long)info.file_bytes);
    const float *ref = c.logits.data;
    float *got = test_fvec((size_t)rows * V), *again = test_fvec((size_t)rows * V);

    /* Step by step against transformers. */
    clattn_lm_session_params sp = clattn_lm_session_params_default();
    sp.ctx_size = 64;
    sp.n_seq = 3;
    clattn_lm_session *s = NULL;
    CHECK_OK(clattn_lm_session_create(lm, &sp, &s));
    if (!s)
        goto done;
    run_steps(s, 1, &c, V, got);
    double e = row_error(got, ref, rows, V);
    printf("%-30s %s: logits vs transformers: max error %.2e of the row scale\n", name,
           clattn_dtype_name(info.dtype), e);
    CHECK(e <= LOGIT_TOL, "%s: logits error %.3e > %.1e", name, e, LOGIT_TOL);
    for (int32_t i = 0; i < c.n_ids; i++)
        CHECK(argmax(got + (size_t)(c.n_prompt - 1 + i) * V, V) == c.ids[i],
              "%s: greedy id %d differs", name, i);

    /* Greedy generation through the public loop. */
    clattn_generate_params gp = clattn_generate_params_default();
    gp.max_tokens = 32;
    gp.sampling.temperature = 0;
    int32_t out_ids[32];
    clattn_generate_result res;
    CHECK_OK(clattn_lm_generate(s, 0, c.prompt, c.n_prompt, &gp, out_ids, 32, &res));
    bool same = res.n_ids == c.n_ids;
    for (int32_t i = 0; same && i < c.n_ids; i++)
        same = out_ids[i] == c.ids[i];
    CHECK(same, "%s: greedy continuation differs from transformers (%d vs %d ids)", name,
          res.n_ids, c.n_ids);
    CHECK(res.reason == (c.n_ids < 32 ? CLATTN_STOP_EOS : CLATTN_STOP_MAX_TOKENS),
          "%s: stop reason %d", name, (int)res.reason);

    if (clattn_lm_tokenizer(lm))
        test_text(s, clattn_lm_tokenizer(lm), &c, name);

    /* Seeded sampling: the same ids as the reference on every device. */
    if (c.n_sampled > 0) {
        gp = clattn_generate_params_default();
        gp.max_tokens = c.n_sampled;
        gp.sampling = c.sampling;
        CHECK_OK(clattn_lm_generate(s, 0, c.prompt, c.n_prompt, &gp, out_ids, 32, &res));
        same = res.n_ids == c.n_sampled;
        for (int32_t i = 0; same && i < c.n_sampled; i++)
            same = out_ids[i] == c.sampled[i];
        CHECK(same, "%s: seeded sampled continuation differs from the reference", name);
    }

    /* A full recompute: the whole sequence in one prefill. */
    int32_t all[128];
    memcpy(all, c.prompt, sizeof(int32_t) * (size_t)c.n_prompt);
    memcpy(all + c.n_prompt, c.ids, sizeof(int32_t) * (size_t)(c.n_ids - 1));
    CHECK_OK(clattn_lm_session_truncate(s, 2, 0));
    CHECK_OK(clattn_lm_prefill(s, 2, all, rows, again));
    e = row_error(got, again, rows, V);
    CHECK(e <= SAME_TOL, "%s: KV-cache steps differ from a full recompute by %.3e", name, e);

    /* Truncate to the prompt and decode the same ids again. */
    CHECK_OK(clattn_lm_session_truncate(s, 1, c.n_prompt));
    CHECK(clattn_lm_session_length(s, 1) == c.n_prompt, "%s: length after truncate", name);
    for (int32_t i = 0; i + 1 < c.n_ids; i++)
        CHECK_OK(clattn_lm_decode(s, 1, (int32_t[]){1}, &c.ids[i],
                                  again + (size_t)(c.n_prompt + i) * V));
    e = row_error(got + (size_t)c.n_prompt * V, again + (size_t)c.n_prompt * V,
                  rows - c.n_prompt, V);
    CHECK(e <= SAME_TOL, "%s: decoding after truncate differs by %.3e", name, e);

    /* Batched decode of three sequences of different lengths against each
     * alone (sequence 1 holds the full reference run from above). */
    const int32_t lens[3] = {c.n_prompt, 5, 9}, steps = 6;
    float *batch = test_fvec((size_t)3 * V), *alone = test_fvec((size_t)3 * steps * V);
    for (int32_t q = 0; q < 3; q++) {
        CHECK_OK(clattn_lm_session_truncate(s, q, 0));
        CHECK_OK(clattn_lm_prefill(s, q, c.prompt, lens[q], NULL));
        for (int32_t i = 0; i < steps; i++)
            CHECK_OK(clattn_lm_decode(s, 1, &q, &c.ids[i], alone + ((size_t)q * steps + i) * V));
        CHECK_OK(clattn_lm_session_truncate(s, q, lens[q]));
    }
    double eb = 0;
    for (int32_t i = 0; i < steps; i++) {
        const int32_t seqs[3] = {2, 0, 1}, tok[3] = {c.ids[i], c.ids[i], c.ids[i]};
        CHECK_OK(clattn_lm_decode(s, 3, seqs, tok, batch));
        for (int32_t j = 0; j < 3; j++)
            eb = fmax(eb, row_error(batch + (size_t)j * V,
                                    alone + ((size_t)seqs[j] * steps + i) * V, 1, V));
    }
    CHECK(eb <= SAME_TOL, "%s: batched decode differs from decoding alone by %.3e", name, eb);
    free(batch);
    free(alone);
    clattn_lm_session_destroy(s);
    s = NULL;

    /* A float16 cache. */
    sp.cache_type = CLATTN_CACHE_F16;
    sp.n_seq = 1;
    CHECK_OK(clattn_lm_session_create(lm, &sp, &s));
    if (s) {
        run_steps(s, 0, &c, V, got);
        e = row_error(got, ref, rows, V);
        printf("%-30s f16 cache: max error %.2e\n", name, e);
        CHECK(e <= F16_TOL, "%s: f16-cache logits error %.3e > %.1e", name, e, F16_TOL);
    }
done:
    clattn_lm_session_destroy(s);
    clattn_lm_destroy(lm);
    free(got);
    free(again);
    npy_free(&c.logits);
}

/* The prefill path for a driver with a loop limit (Mesa llvmpipe), where
 * the fused kernel cannot take the key range: forced on any device by a
 * tiny loop budget, which also makes the decode kernel cut the cache into
 * the shortest chunks. Same logits as transformers. */
static void test_loop_limit_fallback(clattn_ctx *ctx, const char *name)
{
    lm_case c;
    if (!read_case(name, &c))
        return;
    const int64_t saved = ctx->loop_budget;
    ctx->loop_budget = 50;
    clattn_lm *lm = NULL;
    clattn_lm_session *s = NULL;
    CHECK_OK(clattn_lm_load(ctx, c.dir, &lm));
    clattn_lm_session_params sp = clattn_lm_session_params_default();
    sp.ctx_size = 64;
    if (lm)
        CHECK_OK(clattn_lm_session_create(lm, &sp, &s));
    if (s) {
        clattn_lm_info info;
        clattn_lm_get_info(lm, &info);
        const int32_t rows = c.n_prompt + c.n_ids - 1;
        float *got = test_fvec((size_t)rows * info.vocab_size);
        run_steps(s, 0, &c, info.vocab_size, got);
        double e = row_error(got, c.logits.data, rows, info.vocab_size);
        printf("%-30s loop-limit fallback: max error %.2e\n", name, e);
        CHECK(e <= LOGIT_TOL, "%s: fallback logits error %.3e", name, e);
        free(got);
    }
    clattn_lm_session_destroy(s);
    clattn_lm_destroy(lm);
    ctx->loop_budget = saved;
    npy_free(&c.logits);
}

/* ---- bad input ------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    CHECK(in && out, "copy %s -> %s", from, to);
    char buf[65536];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    if (in)
        fclose(in);
    if (out)
        fclose(out);
}

/* A copy of fixture folder name in a fresh temporary folder. */
static char *copy_case(const char *name)
{
    char tmpl[] = "/tmp/clattn-lm-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir)
        return NULL;
    char src[600], a[1000], b[1000];
    snprintf(src, sizeof src, "%s/%s", fixtures, name);
    DIR *d = opendir(src);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(a, sizeof a, "%s/%s", src, e->d_name);
            snprintf(b, sizeof b, "%s/%s", dir, e->d_name);
            copy_file(a, b);
        }
    if (d)
        closedir(d);
    return strdup(dir);
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1000];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

/* Replaces the first `from` in dir/file by `to`. */
static void edit(const char *dir, const char *file, const char *from, const char *to)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    char *text = test_read_text(p);
    char *at = text ? strstr(text, from) : NULL;
    CHECK(at != NULL, "%s has no \"%s\"", p, from);
    if (!at) {
        free(text);
        return;
    }
    size_t n = strlen(text) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    test_write_text(p, out);
    free(out);
    free(text);
}

/* Loading a broken copy of name fails with want and a message holding msg. */
static void load_fails(clattn_ctx *ctx, const char *name, const char *file, const char *from,
                       const char *to, clattn_status want, const char *msg)
{
    char *dir = copy_case(name);
    CHECK(dir != NULL, "mkdtemp");
    if (!dir)
        return;
    if (from) {
        edit(dir, file, from, to);
    } else {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, file);
        unlink(p);
    }
    clattn_lm *lm = (clattn_lm *)1;
    CHECK_STATUS(clattn_lm_load(ctx, dir, &lm), want);
    CHECK(lm == NULL, "out is NULL on failure");
    CHECK_MSG(msg);
    remove_dir(dir);
}

/* A copy of name whose model.safetensors has a NaN as its first weight
 * element: refused, naming the tensor. */
static void nan_weight_refused(clattn_ctx *ctx, const char *name)
{
    char *dir = copy_case(name);
    CHECK(dir != NULL, "mkdtemp");
    if (!dir)
        return;
    char p[1000];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "r+b");
    uint64_t n = 0;
    const uint32_t nan_bits = 0x7fc00000u;
    CHECK(f && fread(&n, 8, 1, f) == 1 && fseek(f, (long)(8 + n), SEEK_SET) == 0 &&
              fwrite(&nan_bits, 4, 1, f) == 1,
          "writing a NaN into %s", p);
    if (f)
        fclose(f);
    clattn_lm *lm = NULL;
    CHECK_STATUS(clattn_lm_load(ctx, dir, &lm), CLATTN_ERR_FORMAT);
    CHECK_MSG("NaN or infinity at flat index 0");
    clattn_lm_destroy(lm);
    remove_dir(dir);
}

static void test_bad_input(clattn_ctx *ctx)
{
    nan_weight_refused(ctx, "llama_gqa_f32");
    load_fails(ctx, "llama_linear_v5_sharded", "model-00003-of-00005.safetensors", NULL, NULL,
               CLATTN_ERR_IO, "model-00003-of-00005.safetensors");
    load_fails(ctx, "llama_gqa_f32", "config.json", "\"intermediate_size\": 64",
               "\"intermediate_size\": 65", CLATTN_ERR_FORMAT, "gate_proj.weight");
    load_fails(ctx, "llama_gqa_f32", "config.json", "\"LlamaForCausalLM\"",
               "\"LlamaForSequenceClassification\"", CLATTN_ERR_UNSUPPORTED,
               "LlamaForSequenceClassification");
    load_fails(ctx, "qwen2_mqa_bf16", "config.json", "\"model_type\": \"qwen2\"",
               "\"model_type\": \"qwen3\"", CLATTN_ERR_UNSUPPORTED, "qwen3");
    load_fails(ctx, "llama_linear_v5_sharded", "config.json", "\"rope_type\": \"linear\"",
               "\"rope_type\": \"yarn\"", CLATTN_ERR_UNSUPPORTED, "yarn");
    /* Found by fuzz_lm_config: without head_dim, hidden_size 3 with 4
     * heads gave a head size of 0 that passed. */
    load_fails(ctx, "llama_gqa_f32", "config.json",
               "\"head_dim\": 8,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": 32,",
               "\"head_dim\": null,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": 3,",
               CLATTN_ERR_FORMAT, "hidden_size / num_attention_heads = 0");
    /* Also fuzz_lm_config's: a finite double past float32 became an
     * infinite epsilon. */
    load_fails(ctx, "llama_gqa_f32", "config.json", "\"rms_norm_eps\": 1e-06",
               "\"rms_norm_eps\": 1e306", CLATTN_ERR_FORMAT, "rms_norm_eps");
    load_fails(ctx, "gpt2_f32", "config.json", "\"activation_function\": \"gelu_new\"",
               "\"activation_function\": \"mish\"", CLATTN_ERR_UNSUPPORTED,
               "activation_function");
    load_fails(ctx, "llama_gqa_f32", "config.json", "\"num_hidden_layers\": 2",
               "\"num_hidden_layers\": 3", CLATTN_ERR_FORMAT, "model.layers.2.");
    load_fails(ctx, "llama_gqa_f32", "config.json", "{", "{{", CLATTN_ERR_FORMAT,
               "config.json");
    load_fails(ctx, "llama_gqa_f32", "tokenizer.json", "{", "{{", CLATTN_ERR_FORMAT,
               "tokenizer.json");
    load_fails(ctx, "llama_gqa_f32", "tokenizer.json", "\"model\"", "\"mod\"",
               CLATTN_ERR_UNSUPPORTED, "'mod'");
    load_fails(ctx, "llama_gqa_f32", "model.safetensors", NULL, NULL, CLATTN_ERR_IO,
               "model.safetensors");

    lm_case c;
    if (!read_case("llama_gqa_f32", &c))
        return;
    clattn_lm *lm = NULL;
    CHECK_OK(clattn_lm_load(ctx, c.dir, &lm));
    if (!lm)
        return;
    clattn_lm_session_params sp = clattn_lm_session_params_default();
    clattn_lm_session *s = NULL;
    sp.ctx_size = 100000;
    CHECK_STATUS(clattn_lm_session_create(lm, &sp, &s), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("ctx_size");
    sp.ctx_size = 16;
    sp.n_seq = 0;
    CHECK_STATUS(clattn_lm_session_create(lm, &sp, &s), CLATTN_ERR_INVALID_ARG);
    sp.n_seq = 2;
    CHECK_OK(clattn_lm_session_create(lm, &sp, &s));
    if (s) {
        int32_t bad[3] = {1, 320, 2};
        CHECK_STATUS(clattn_lm_prefill(s, 0, bad, 3, NULL), CLATTN_ERR_INVALID_ARG);
        CHECK_MSG("index 1");
        bad[1] = -1;
        CHECK_STATUS(clattn_lm_prefill(s, 0, bad, 3, NULL), CLATTN_ERR_INVALID_ARG);
        CHECK_STATUS(clattn_lm_prefill(s, 2, c.prompt, 3, NULL), CLATTN_ERR_INVALID_ARG);
        int32_t long_prompt[17] = {0};
        CHECK_STATUS(clattn_lm_prefill(s, 0, long_prompt, 17, NULL), CLATTN_ERR_CONTEXT_FULL);
        CHECK(clattn_lm_session_length(s, 0) == 0, "nothing appended on overflow");
        float *row = test_fvec(320);
        CHECK_STATUS(clattn_lm_logits(s, 0, row), CLATTN_ERR_INVALID_ARG);
        CHECK_OK(clattn_lm_prefill(s, 0, long_prompt, 16, NULL));
        CHECK_OK(clattn_lm_logits(s, 0, row));
        int32_t seq = 0, id = 5;
        CHECK_STATUS(clattn_lm_decode(s, 1, &seq, &id, NULL), CLATTN_ERR_CONTEXT_FULL);
        CHECK(clattn_lm_session_length(s, 0) == 16, "nothing appended on a full cache");
        int32_t twice[2] = {1, 1}, ids2[2] = {3, 4};
        CHECK_OK(clattn_lm_prefill(s, 1, c.prompt, 2, NULL));
        CHECK_STATUS(clattn_lm_decode(s, 2, twice, ids2, NULL), CLATTN_ERR_INVALID_ARG);
        CHECK_STATUS(clattn_lm_session_truncate(s, 1, 3), CLATTN_ERR_INVALID_ARG);
        clattn_generate_params gp = clattn_generate_params_default();
        int32_t out[128];
        clattn_generate_result res;
        CHECK_STATUS(clattn_lm_generate(s, 0, long_prompt, 16, &gp, out, 128, &res),
                     CLATTN_ERR_CONTEXT_FULL);
        gp.max_tokens = 4;
        gp.sampling.top_p = 0;
        CHECK_STATUS(clattn_lm_generate(s, 0, c.prompt, 4, &gp, out, 4, &res),
                     CLATTN_ERR_INVALID_ARG);
        /* Stops at the context's end with what fits. */
        gp = clattn_generate_params_default();
        gp.max_tokens = 100;
        gp.sampling.temperature = 0;
        gp.ignore_eos = true;
        CHECK_OK(clattn_lm_generate(s, 0, c.prompt, 12, &gp, out, 128, &res));
        CHECK(res.reason == CLATTN_STOP_CONTEXT && res.n_ids == 5,
              "stop at the end of the context: reason %d, %d ids", (int)res.reason, res.n_ids);
        free(row);
    }
    clattn_lm_session_destroy(s);
    clattn_lm_destroy(lm);
    npy_free(&c.logits);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_lm FIXTURES_DIR\n");
        return 2;
    }
    fixtures = argv[1];
    clattn_ctx *ctx = test_ctx();
    const char *models[] = {"llama_gqa_f32",  "llama_bias_tied_llama3_bf16",
                            "llama_linear_v5_sharded", "qwen2_mqa_bf16",
                            "mistral_window_f16", "gpt2_f32"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        test_model(ctx, models[i]);
    test_loop_limit_fallback(ctx, "mistral_window_f16");
    test_bad_input(ctx);
    clattn_ctx_destroy(ctx);
    return test_summary("test_lm");
}
