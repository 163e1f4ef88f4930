/* test_llama_export.c - clattn_llama_export: a Hugging Face folder that
 * clattn reads back as it was written, and that transformers reads.
 *
 * For models made with clattn_llama_create (untied with linear rope and a
 * tokenizer; tied with llama3 rope and an explicit head_dim, without one):
 * clattn_lm_load of the export gives clattn_llama_forward's logits, and
 * clattn_lm_generate's greedy ids equal a greedy loop over
 * clattn_llama_forward; clattn_llama_load gives bit-identical parameters
 * and the same configuration; config.json's reals read back exactly; the
 * tokenizer's files are copied byte for byte, or tokenizer_config.json
 * written when the folder has none. Then the committed folder
 * FIXTURE_DIR/export (an export of this program, loaded by transformers in
 * tests/fixtures/make_llama_export_fixture.py, which stored transformers'
 * float64 logits in expected_logits.safetensors): clattn_lm_load and
 * clattn_llama_load give those logits, and an export of the loaded model
 * writes the same tensors bit for bit. Last, bad arguments.
 *
 * Usage: test_llama_export FIXTURE_DIR          (tests/fixtures/llama_train)
 *        test_llama_export FIXTURE_DIR --write-fixture OUT_DIR
 * The second form only exports the fixture model (fixture_config(), seed
 * FIXTURE_SEED) with the tokenizer of FIXTURE_DIR/export_tokenizer into
 * OUT_DIR: make_llama_export_fixture.py runs it. */
#define _GNU_SOURCE /* mkdtemp, nftw */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

static clattn_ctx *ctx;

/* float32 against float32 through the same ops in another order (clattn_lm
 * reads the same weights with its own kernels), relative to each row's
 * largest logit; and float32 against transformers' float64. */
#define TOL_LOGITS 2e-5

/* ---- files ----------------------------------------------------------------- */

static char *temp_dir(void)
{
    const char *base = getenv("TMPDIR");
    char *t = malloc(4096);
    snprintf(t, 4096, "%s/clattn-export-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(t)) {
        fprintf(stderr, "test_llama_export: mkdtemp %s: %s\n", t, strerror(errno));
        exit(1);
    }
    return t;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir)
{
    if (dir)
        nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *path_of(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool file_exists(const char *dir, const char *name)
{
    char *p = path_of(dir, name);
    bool yes = access(p, F_OK) == 0;
    free(p);
    return yes;
}

/* The bytes of a file (malloc'd), or NULL; its length in *n. */
static char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* Entries of dir besides . and .. (no temporary files may be left). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return n;
}

static bool same_bytes(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = read_bytes(a, &na), *y = read_bytes(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return same;
}

/* ---- models ---------------------------------------------------------------- */

/* Untied, GQA, linear rope, head_dim E / Hq. */
static clattn_llama_config untied_config(void)
{
    clattn_llama_config c = clattn_llama_config_default();
    c.vocab_size = 21;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 48;
    c.rope.theta = 20000.0;
    c.rope.type = CLATTN_ROPE_LINEAR;
    c.rope.factor = 2.5;
    c.rms_norm_eps = 1e-6f;
    c.tie_word_embeddings = false;
    c.initializer_range = 0.2f;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    return c;
}

/* Tied, llama3 rope, head_dim 8 != E / Hq, no token ids. */
static clattn_llama_config tied_config(void)
{
    clattn_llama_config c = clattn_llama_config_default();
    c.vocab_size = 19;
    c.hidden_size = 24;
    c.intermediate_size = 40;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 1;
    c.head_dim = 8;
    c.max_position_embeddings = 40;
    c.rope.theta = 500000.0;
    c.rope.type = CLATTN_ROPE_LLAMA3;
    c.rope.factor = 8.0;
    c.rope.low_freq_factor = 1.0;
    c.rope.high_freq_factor = 4.0;
    c.rope.original_max_position = 16;
    c.rms_norm_eps = 1e-5f;
    c.tie_word_embeddings = true;
    c.initializer_range = 0.25f;
    return c;
}

/* The committed fixture's model (tests/fixtures/llama_train/export):
 * the tokenizer's 15 tokens and one id without a token, tied, GQA, llama3
 * rope, head_dim 8 != E / Hq. */
#define FIXTURE_SEED 2024
static clattn_llama_config fixture_config(void)
{
    clattn_llama_config c = tied_config();
    c.vocab_size = 16;
    c.num_hidden_layers = 2;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 64;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    c.pad_token_id = 0;
    return c;
}

static float *read_tensor(const clattn_tensor *t)
{
    float *h = test_fvec(clattn_tensor_numel(t));
    CHECK_OK(clattn_tensor_read(t, h));
    return h;
}

/* logits [T, V] of ids[0 .. T) by clattn_llama_forward (malloc'd). */
static float *llama_logits(clattn_llama *m, const int64_t *ids, int32_t T)
{
    int32_t V = clattn_llama_get_config(m).vocab_size;
    int64_t shape[3] = {1, T, V};
    clattn_tensor *t = test_tensor(ctx, 3, shape, NULL);
    CHECK_OK(clattn_llama_forward(m, ids, 1, T, t));
    float *h = read_tensor(t);
    clattn_tensor_destroy(t);
    return h;
}

/* The worst |got - ref| of any row over that row's largest |ref|; fails
 * past tol. */
static double compare_rows(const char *what, const float *got, const double *ref, int64_t rows,
                           int64_t V, double tol)
{
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double scale = 0, e = 0;
        for (int64_t v = 0; v < V; v++)
            scale = fmax(scale, fabs(ref[r * V + v]));
        for (int64_t v = 0; v < V; v++) {
            double d = isfinite(got[r * V + v]) ? fabs(got[r * V + v] - ref[r * V + v])
                                                : INFINITY;
            e = fmax(e, d / (scale > 0 ? scale : 1));
        }
        CHECK(scale > 0, "%s: row %lld is all zero", what, (long long)r);
        CHECK(e <= tol, "%s: row %lld off by %.3g of its largest logit %.4g (tolerance %.1g)",
              what, (long long)r, e, scale, tol);
        worst = fmax(worst, e);
    }
    return worst;
}

static double compare_rows_f(const char *what, const float *got, const float *ref, int64_t rows,
                             int64_t V, double tol)
{
    double *d = test_dvec((size_t)(rows * V));
    for (int64_t i = 0; i < rows * V; i++)
        d[i] = ref[i];
    double e = compare_rows(what, got, d, rows, V, tol);
    free(d);
    return e;
}

/* Every parameter of a and b has the same name, shape and bits. */
static void check_same_params(const char *what, clattn_llama *a, clattn_llama *b)
{
    int32_t na = clattn_llama_param_refs(a, NULL, 0), nb = clattn_llama_param_refs(b, NULL, 0);
    CHECK(na == nb && na > 0, "%s: %d and %d parameters", what, (int)na, (int)nb);
    if (na != nb || na <= 0)
        return;
    clattn_param_ref *ra = calloc((size_t)na, sizeof *ra), *rb = calloc((size_t)na, sizeof *rb);
    clattn_llama_param_refs(a, ra, na);
    clattn_llama_param_refs(b, rb, na);
    int differ = 0;
    for (int32_t i = 0; i < na; i++) {
        size_t n = clattn_tensor_numel(ra[i].value);
        bool same = strcmp(ra[i].name, rb[i].name) == 0 && n == clattn_tensor_numel(rb[i].value);
        if (same) {
            float *x = read_tensor(ra[i].value), *y = read_tensor(rb[i].value);
            same = memcmp(x, y, n * sizeof *x) == 0;
            free(x), free(y);
        }
        CHECK(same, "%s: parameter %d (%s) differs", what, (int)i, ra[i].name);
        differ += !same;
    }
    printf("%s: %d parameters, %d differ\n", what, (int)na, differ);
    free(ra), free(rb);
}

/* The tensors of two safetensors files: same names, dtypes, shapes, bytes. */
static void check_same_safetensors(const char *a, const char *b)
{
    clattn_weights *wa = NULL, *wb = NULL;
    CHECK_OK(clattn_weights_open(a, &wa));
    CHECK_OK(clattn_weights_open(b, &wb));
    if (!wa || !wb) {
        clattn_weights_close(wa), clattn_weights_close(wb);
        return;
    }
    int32_t n = clattn_weights_count(wa);
    CHECK(n == clattn_weights_count(wb), "%s has %d tensors, %s %d", a, (int)n, b,
          (int)clattn_weights_count(wb));
    int differ = 0;
    for (int32_t i = 0; i < n; i++) {
        clattn_weight_info x, y;
        CHECK_OK(clattn_weights_info_at(wa, i, &x));
        bool same = clattn_weights_find(wb, x.name, &y) == CLATTN_OK && x.dtype == y.dtype &&
                    x.ndim == y.ndim && x.nbytes == y.nbytes &&
                    memcmp(x.shape, y.shape, sizeof x.shape) == 0 &&
                    memcmp(x.data, y.data, x.nbytes) == 0;
        CHECK(same, "tensor %s differs between %s and %s", x.name, a, b);
        differ += !same;
    }
    printf("re-export: %d tensors, %d differ\n", (int)n, differ);
    clattn_weights_close(wa), clattn_weights_close(wb);
}

/* ---- what the folder holds ----------------------------------------------- */

static json_t *load_json(const char *dir, const char *name)
{
    char *p = path_of(dir, name);
    json_error_t e;
    json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &e);
    CHECK(j && json_is_object(j), "%s: %s", p, j ? "not an object" : e.text);
    free(p);
    return j;
}

static void check_config_json(const char *dir, const clattn_llama_config *c)
{
    json_t *j = load_json(dir, "config.json");
    if (!j)
        return;
    json_t *a = json_object_get(j, "architectures");
    CHECK(json_is_array(a) && json_array_size(a) == 1 &&
              strcmp(json_string_value(json_array_get(a, 0)), "LlamaForCausalLM") == 0,
          "config.json: architectures");
    CHECK(strcmp(json_string_value(json_object_get(j, "model_type")), "llama") == 0,
          "config.json: model_type");
    /* Reals read back exactly: float32 ones as float32, doubles as doubles. */
    json_t *eps = json_object_get(j, "rms_norm_eps");
    CHECK(json_is_real(eps) && (float)json_real_value(eps) == c->rms_norm_eps,
          "config.json: rms_norm_eps %.17g, model %.9g", json_number_value(eps),
          (double)c->rms_norm_eps);
    json_t *theta = json_object_get(j, "rope_theta");
    CHECK(json_is_real(theta) && json_real_value(theta) == c->rope.theta,
          "config.json: rope_theta %.17g, model %.17g", json_number_value(theta), c->rope.theta);
    json_t *init = json_object_get(j, "initializer_range");
    CHECK(json_is_real(init) && (float)json_real_value(init) == c->initializer_range,
          "config.json: initializer_range");
    json_t *rs = json_object_get(j, "rope_scaling");
    if (c->rope.type == CLATTN_ROPE_DEFAULT) {
        CHECK(json_is_null(rs), "config.json: rope_scaling should be null");
    } else {
        CHECK(json_is_object(rs) && json_is_real(json_object_get(rs, "factor")) &&
                  json_real_value(json_object_get(rs, "factor")) == c->rope.factor,
              "config.json: rope_scaling.factor");
        const char *type = json_string_value(json_object_get(rs, "rope_type"));
        CHECK(type && strcmp(type, c->rope.type == CLATTN_ROPE_LINEAR ? "linear" : "llama3") == 0,
              "config.json: rope_type %s", type ? type : "(none)");
        CHECK(json_object_size(rs) == (c->rope.type == CLATTN_ROPE_LINEAR ? 2u : 5u),
              "config.json: rope_scaling has %zu fields", json_object_size(rs));
    }
    const char *ids[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
    int32_t vals[] = {c->bos_token_id, c->eos_token_id, c->pad_token_id};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(j, ids[i]);
        CHECK(vals[i] < 0 ? json_is_null(v) : json_integer_value(v) == vals[i],
              "config.json: %s", ids[i]);
    }
    CHECK(json_is_false(json_object_get(j, "attention_bias")) &&
              json_is_false(json_object_get(j, "mlp_bias")),
          "config.json: biases");
    CHECK(json_boolean_value(json_object_get(j, "tie_word_embeddings")) ==
              c->tie_word_embeddings,
          "config.json: tie_word_embeddings");
    CHECK(strcmp(json_string_value(json_object_get(j, "torch_dtype")), "float32") == 0,
          "config.json: torch_dtype");
    json_decref(j);

    j = load_json(dir, "generation_config.json");
    for (int i = 0; j && i < 3; i++) {
        json_t *v = json_object_get(j, ids[i]);
        CHECK(vals[i] < 0 ? v == NULL : json_integer_value(v) == vals[i],
              "generation_config.json: %s", ids[i]);
    }
    json_decref(j);
}

static void check_safetensors(const char *dir, clattn_llama *m)
{
    char *p = path_of(dir, "model.safetensors");
    clattn_weights *w = NULL;
    CHECK_OK(clattn_weights_open(p, &w));
    free(p);
    if (!w)
        return;
    const char *format = clattn_weights_metadata(w, "format");
    CHECK(format && strcmp(format, "pt") == 0, "model.safetensors: format %s",
          format ? format : "(none)");
    int32_t n = clattn_llama_param_refs(m, NULL, 0);
    CHECK(clattn_weights_count(w) == n, "model.safetensors: %d tensors, model %d",
          (int)clattn_weights_count(w), (int)n);
    clattn_weight_info info;
    bool tied = clattn_llama_get_config(m).tie_word_embeddings;
    CHECK((clattn_weights_find(w, "lm_head.weight", &info) == CLATTN_OK) == !tied,
          "model.safetensors: lm_head.weight %s", tied ? "in a tied model" : "missing");
    clattn_param_ref *refs = calloc((size_t)n, sizeof *refs);
    clattn_llama_param_refs(m, refs, n);
    for (int32_t i = 0; i < n; i++) {
        bool ok = clattn_weights_find(w, refs[i].name, &info) == CLATTN_OK &&
                  info.dtype == CLATTN_DTYPE_F32 && info.numel == clattn_tensor_numel(refs[i].value);
        CHECK(ok, "model.safetensors: %s missing or not F32 of its size", refs[i].name);
    }
    free(refs);
    clattn_weights_close(w);
}

/* ---- round trips ----------------------------------------------------------- */

static void check_round_trip(const char *what, clattn_llama_config c, uint64_t seed,
                             const char *tokenizer_dir)
{
    clattn_llama *m = NULL;
    CHECK_OK(clattn_llama_create(ctx, &c, seed, &m));
    if (!m)
        return;
    char *tmp = temp_dir();
    char *dir = path_of(tmp, "made/by/export"); /* parents are created too */
    CHECK_OK(clattn_llama_export(m, tokenizer_dir, dir));
    c = clattn_llama_get_config(m);
    check_config_json(dir, &c);
    check_safetensors(dir, m);
    CHECK(file_exists(dir, "tokenizer.json") == (tokenizer_dir != NULL) &&
              file_exists(dir, "tokenizer_config.json") == (tokenizer_dir != NULL),
          "%s: tokenizer files %s", what, tokenizer_dir ? "missing" : "written without one");
    if (tokenizer_dir) {
        char *a = path_of(tokenizer_dir, "tokenizer.json"), *b = path_of(dir, "tokenizer.json");
        CHECK(same_bytes(a, b), "%s: tokenizer.json is not a copy of %s", what, a);
        free(a), free(b);
    }
    /* Nothing left behind but the files. */
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors",
                           "tokenizer.json", "tokenizer_config.json"};
    int expected = tokenizer_dir ? 5 : 3, found = 0;
    for (int i = 0; i < expected; i++)
        found += file_exists(dir, files[i]);
    int entries = count_entries(dir);
    CHECK(found == expected && entries == expected, "%s: %d of the %d files, %d entries", what,
          found, expected, entries);

    /* (a) clattn_lm_load's logits of every prompt position. */
    enum { P = 11, G = 8 };
    int64_t prompt[P];
    for (int i = 0; i < P; i++)
        prompt[i] = (i * 7 + 3) % c.vocab_size;
    int32_t prompt32[P];
    for (int i = 0; i < P; i++)
        prompt32[i] = (int32_t)prompt[i];
    clattn_lm *lm = NULL;
    CHECK_OK(clattn_lm_load(ctx, dir, &lm));
    clattn_lm_session *s = NULL;
    if (lm)
        CHECK_OK(clattn_lm_session_create(lm, NULL, &s));
    float *ref = llama_logits(m, prompt, P);
    if (s) {
        clattn_lm_info info;
        CHECK_OK(clattn_lm_get_info(lm, &info));
        CHECK(info.vocab_size == c.vocab_size && info.head_dim == c.head_dim &&
                  info.n_kv_heads == c.num_key_value_heads &&
                  info.tied_embeddings == c.tie_word_embeddings && info.dtype == CLATTN_DTYPE_F32 &&
                  info.bos_id == c.bos_token_id,
              "%s: clattn_lm_get_info disagrees with the config", what);
        float *got = test_fvec((size_t)P * (size_t)c.vocab_size);
        CHECK_OK(clattn_lm_prefill(s, 0, prompt32, P, got));
        double e = compare_rows_f(what, got, ref, P, c.vocab_size, TOL_LOGITS);
        printf("%s: clattn_lm_load logits vs clattn_llama_forward: worst %.2e of the row's "
               "largest\n",
               what, e);
        free(got);

        /* (b) greedy: clattn_lm_generate against a loop over the model. */
        clattn_generate_params gp = clattn_generate_params_default();
        gp.max_tokens = G;
        gp.sampling.temperature = 0;
        gp.ignore_eos = true;
        int32_t out[G];
        clattn_generate_result res;
        CHECK_OK(clattn_lm_generate(s, 0, prompt32, P, &gp, out, G, &res));
        CHECK(res.n_ids == G, "%s: generated %d ids", what, (int)res.n_ids);
        int64_t seq[P + G];
        memcpy(seq, prompt, sizeof prompt);
        double margin = INFINITY;
        int agree = 0;
        for (int g = 0; g < G; g++) {
            float *l = llama_logits(m, seq, P + g);
            const float *row = l + (size_t)(P + g - 1) * (size_t)c.vocab_size;
            int best = 0;
            for (int v = 1; v < c.vocab_size; v++)
                best = row[v] > row[best] ? v : best;
            float second = -INFINITY;
            for (int v = 0; v < c.vocab_size; v++)
                if (v != best)
                    second = fmaxf(second, row[v]);
            margin = fmin(margin, (double)(row[best] - second));
            seq[P + g] = best;
            agree += g < res.n_ids && out[g] == best;
            CHECK(g < res.n_ids && out[g] == best, "%s: greedy id %d: generate %d, forward %d "
                  "(top-2 margin %.3g)", what, g, g < res.n_ids ? (int)out[g] : -1, best,
                  (double)(row[best] - second));
            free(l);
        }
        printf("%s: greedy %d of %d ids agree (smallest top-2 margin %.3g)\n", what, agree, G,
               margin);
    }
    free(ref);
    clattn_lm_session_destroy(s);
    clattn_lm_destroy(lm);

    /* (c) clattn_llama_load: the same parameters, bit for bit, and config. */
    clattn_llama *back = NULL;
    CHECK_OK(clattn_llama_load(ctx, dir, &back));
    if (back) {
        check_same_params(what, m, back);
        clattn_llama_config b = clattn_llama_get_config(back);
        CHECK(b.vocab_size == c.vocab_size && b.hidden_size == c.hidden_size &&
                  b.intermediate_size == c.intermediate_size &&
                  b.num_hidden_layers == c.num_hidden_layers &&
                  b.num_attention_heads == c.num_attention_heads &&
                  b.num_key_value_heads == c.num_key_value_heads && b.head_dim == c.head_dim &&
                  b.max_position_embeddings == c.max_position_embeddings &&
                  b.rope.theta == c.rope.theta && b.rope.type == c.rope.type &&
                  b.rms_norm_eps == c.rms_norm_eps &&
                  b.tie_word_embeddings == c.tie_word_embeddings &&
                  b.bos_token_id == c.bos_token_id && b.eos_token_id == c.eos_token_id,
              "%s: clattn_llama_load's config differs", what);
        if (c.rope.type != CLATTN_ROPE_DEFAULT)
            CHECK(b.rope.factor == c.rope.factor, "%s: rope factor", what);
        if (c.rope.type == CLATTN_ROPE_LLAMA3)
            CHECK(b.rope.low_freq_factor == c.rope.low_freq_factor &&
                      b.rope.high_freq_factor == c.rope.high_freq_factor &&
                      b.rope.original_max_position == c.rope.original_max_position,
                  "%s: llama3 rope fields", what);
    }
    clattn_llama_destroy(back);

    /* A second export over the first replaces the files. */
    CHECK_OK(clattn_llama_export(m, NULL, dir));
    clattn_llama_destroy(m);
    remove_tree(tmp);
    free(dir);
    free(tmp);
}

/* ---- the committed folder, against transformers ---------------------------- */

/* FIXTURE_DIR/export: ids I64 [B, T] and logits [B, T, V] in
 * expected_logits.safetensors, transformers' float64 forward of the
 * folder. */
static void check_fixture(const char *fixtures)
{
    char *dir = path_of(fixtures, "export");
    char *path = path_of(dir, "expected_logits.safetensors");
    clattn_weights *w = NULL;
    CHECK_OK(clattn_weights_open(path, &w));
    free(path);
    clattn_weight_info ids_info, logits_info;
    if (!w || clattn_weights_find(w, "ids", &ids_info) != CLATTN_OK ||
        clattn_weights_find(w, "logits", &logits_info) != CLATTN_OK ||
        ids_info.dtype != CLATTN_DTYPE_I64 || ids_info.ndim != 2 || logits_info.ndim != 3) {
        CHECK(0, "%s: expected_logits.safetensors lacks ids I64 [B, T] or logits", dir);
        clattn_weights_close(w);
        free(dir);
        return;
    }
    int64_t B = ids_info.shape[0], T = ids_info.shape[1], V = logits_info.shape[2];
    int64_t *ids = malloc(ids_info.nbytes);
    memcpy(ids, ids_info.data, ids_info.nbytes);
    float *ref32 = test_fvec(logits_info.numel);
    CHECK_OK(clattn_weights_read_f32(w, "logits", ref32, logits_info.numel));
    double *ref = test_dvec(logits_info.numel);
    for (size_t i = 0; i < logits_info.numel; i++)
        ref[i] = ref32[i];
    free(ref32);
    clattn_weights_close(w);

    /* clattn_lm_load: one sequence per row. */
    clattn_lm *lm = NULL;
    CHECK_OK(clattn_lm_load(ctx, dir, &lm));
    clattn_lm_session *s = NULL;
    if (lm) {
        clattn_lm_session_params sp = clattn_lm_session_params_default();
        sp.n_seq = (int32_t)B;
        CHECK_OK(clattn_lm_session_create(lm, &sp, &s));
        CHECK(clattn_lm_tokenizer(lm) != NULL, "%s: clattn_lm_load found no tokenizer", dir);
    }
    double e_lm = 0;
    for (int64_t b = 0; s && b < B; b++) {
        int32_t *row = malloc((size_t)T * sizeof *row);
        for (int64_t t = 0; t < T; t++)
            row[t] = (int32_t)ids[b * T + t];
        float *got = test_fvec((size_t)(T * V));
        CHECK_OK(clattn_lm_prefill(s, (int32_t)b, row, (int32_t)T, got));
        e_lm = fmax(e_lm, compare_rows("clattn_lm vs transformers", got, ref + b * T * V, T, V,
                                       TOL_LOGITS));
        free(got);
        free(row);
    }
    clattn_lm_session_destroy(s);
    clattn_lm_destroy(lm);

    /* clattn_llama_load: all rows in one forward. */
    clattn_llama *m = NULL;
    CHECK_OK(clattn_llama_load(ctx, dir, &m));
    double e_llama = INFINITY;
    if (m) {
        int64_t shape[3] = {B, T, V};
        clattn_tensor *t = test_tensor(ctx, 3, shape, NULL);
        CHECK_OK(clattn_llama_forward(m, ids, (int32_t)B, (int32_t)T, t));
        float *got = read_tensor(t);
        e_llama = compare_rows("clattn_llama vs transformers", got, ref, B * T, V, TOL_LOGITS);
        free(got);
        clattn_tensor_destroy(t);

        /* Exporting what was loaded writes the same tensors, and copies
         * the tokenizer's files as they are. */
        char *tmp = temp_dir();
        CHECK_OK(clattn_llama_export(m, dir, tmp));
        char *a = path_of(dir, "model.safetensors"), *b = path_of(tmp, "model.safetensors");
        check_same_safetensors(a, b);
        free(a), free(b);
        const char *copied[] = {"tokenizer.json", "tokenizer_config.json"};
        for (int i = 0; i < 2; i++) {
            a = path_of(dir, copied[i]), b = path_of(tmp, copied[i]);
            CHECK(same_bytes(a, b), "re-export: %s is not a copy of %s", b, a);
            free(a), free(b);
        }
        remove_tree(tmp);
        free(tmp);
    }
    clattn_llama_destroy(m);
    printf("%s: transformers' logits [%lld, %lld, %lld]: clattn_lm worst %.2e, clattn_llama "
           "worst %.2e of the row's largest\n",
           dir, (long long)B, (long long)T, (long long)V, e_lm, e_llama);
    free(ref);
    free(ids);
    free(dir);
}

/* ---- bad arguments ---------------------------------------------------------- */

static void check_errors(const char *fixtures)
{
    clattn_llama_config c = untied_config();
    clattn_llama *m = NULL;
    CHECK_OK(clattn_llama_create(ctx, &c, 3, &m));
    if (!m)
        return;
    char *tmp = temp_dir();
    char *out = path_of(tmp, "out");

    CHECK_STATUS(clattn_llama_export(NULL, NULL, out), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_llama_export(m, NULL, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_llama_export(m, NULL, ""), CLATTN_ERR_INVALID_ARG);

    /* A tokenizer folder without tokenizer.json: nothing is written. */
    char *empty = path_of(tmp, "no-tokenizer");
    mkdir(empty, 0755);
    CHECK_STATUS(clattn_llama_export(m, empty, out), CLATTN_ERR_FORMAT);
    CHECK_MSG("no-tokenizer/tokenizer.json");
    printf("  message: %s\n", clattn_last_error());
    CHECK(access(out, F_OK) != 0, "a failed export created %s", out);
    /* ... or one that does not parse. */
    char *bad = path_of(empty, "tokenizer.json");
    test_write_text(bad, "{\"model\": ");
    CHECK_STATUS(clattn_llama_export(m, empty, out), CLATTN_ERR_FORMAT);
    CHECK_MSG("tokenizer.json");
    printf("  message: %s\n", clattn_last_error());
    /* ... or a tokenizer.json that is a folder. */
    remove(bad);
    mkdir(bad, 0755);
    CHECK_STATUS(clattn_llama_export(m, empty, out), CLATTN_ERR_FORMAT);
    CHECK_MSG("no-tokenizer/tokenizer.json");
    printf("  message: %s\n", clattn_last_error());
    CHECK(access(out, F_OK) != 0, "a failed export created %s", out);
    free(bad);
    free(empty);

    /* A tokenizer of more tokens than the model's vocabulary (15 > 12). */
    clattn_llama_config small = untied_config();
    small.vocab_size = 12;
    clattn_llama *ms = NULL;
    CHECK_OK(clattn_llama_create(ctx, &small, 3, &ms));
    char *tokdir = path_of(fixtures, "export_tokenizer");
    if (ms) {
        CHECK_STATUS(clattn_llama_export(ms, tokdir, out), CLATTN_ERR_INVALID_ARG);
        CHECK_MSG("vocab_size 12");
        printf("  message: %s\n", clattn_last_error());
    printf("  message: %s\n", clattn_last_error());
    }
    clattn_llama_destroy(ms);
    free(tokdir);

    /* dir is a file, or below one. */
    char *file = path_of(tmp, "a-file");
    test_write_text(file, "not a folder\n");
    CHECK_STATUS(clattn_llama_export(m, NULL, file), CLATTN_ERR_IO);
    CHECK_MSG("a-file");
    printf("  message: %s\n", clattn_last_error());
    char *below = path_of(file, "sub");
    CHECK_STATUS(clattn_llama_export(m, NULL, below), CLATTN_ERR_IO);
    CHECK_MSG("a-file/sub");
    printf("  message: %s\n", clattn_last_error());
    free(below);
    free(file);

    /* A folder the process cannot write: mode 0555, or, for root (whom
     * permissions do not stop), a sysfs folder. */
    char *ro = path_of(tmp, "read-only");
    mkdir(ro, 0755);
    chmod(ro, 0555);
    char *probe = path_of(ro, "probe");
    FILE *f = fopen(probe, "w");
    if (f) {
        fclose(f);
        remove(probe);
        free(ro);
        ro = strdup("/sys");
    }
    free(probe);
    struct stat sb;
    if (stat(ro, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        CHECK_STATUS(clattn_llama_export(m, NULL, ro), CLATTN_ERR_IO);
        CHECK_MSG(ro);
        printf("  message: %s\n", clattn_last_error());
    printf("  message: %s\n", clattn_last_error());
        CHECK(!file_exists(ro, "model.safetensors"), "%s: export wrote into it", ro);
    } else {
        printf("no unwritable folder found: that case is not checked here\n");
    }
    char *mine = path_of(tmp, "read-only");
    chmod(mine, 0755);
    free(mine);
    free(ro);

    clattn_llama_destroy(m);
    remove_tree(tmp);
    free(out);
    free(tmp);
}

int main(int argc, char **argv)
{
    if (argc != 2 && !(argc == 4 && strcmp(argv[2], "--write-fixture") == 0)) {
        fprintf(stderr, "usage: test_llama_export FIXTURE_DIR [--write-fixture OUT_DIR]\n");
        return 2;
    }
    ctx = test_ctx();
    char *tokdir = path_of(argv[1], "export_tokenizer");
    if (argc == 4) {
        clattn_llama_config c = fixture_config();
        clattn_llama *m = NULL;
        CHECK_OK(clattn_llama_create(ctx, &c, FIXTURE_SEED, &m));
        CHECK_OK(clattn_llama_export(m, tokdir, argv[3]));
        clattn_llama_destroy(m);
    } else {
        check_round_trip("untied, linear rope, tokenizer", untied_config(), 11, tokdir);
        check_round_trip("tied, llama3 rope, head_dim 8", tied_config(), 12, NULL);
        check_fixture(argv[1]);
        check_errors(argv[1]);
    }
    free(tokdir);
    clattn_ctx_destroy(ctx);
    return test_summary("test_llama_export");
}
