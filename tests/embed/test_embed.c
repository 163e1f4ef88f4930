/* test_embed.c - sentence embeddings of all-MiniLM-L6-v2 against
 * sentence-transformers (tests/fixtures/embed, made by
 * make_embed_fixtures.py): the tokenizer's ids identical to Hugging Face's
 * at max_length 256; each text's vector with cosine >= 0.9999 and max abs
 * difference <= 1e-4 to SentenceTransformer.encode (mean pooling,
 * normalised), in several batch sizes (dynamic padding must not change a
 * vector); [CLS] and max pooling without normalisation; the caller's order
 * kept; then bad folders (missing and malformed files, unsupported
 * settings, no tokenizer), each refused with a message naming the file,
 * and bad arguments. The model folder comes from tools/fetch-model; its
 * absence is a failure.
 *
 * Usage: test_embed FIXTURE_DIR MODEL_DIR */
#define _GNU_SOURCE /* mkdtemp */
#include "testutil.h"

#include "npy.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* float32 through 6 layers on another BLAS: ~1e-6 typical differences;
 * the bounds leave two orders of magnitude for devices and GEMM orders. */
#define MIN_COSINE 0.9999
#define MAX_DIFF 1e-4

static double worst_cos = 1.0, worst_diff = 0.0;        /* normalised vectors */
static double worst_cos_raw = 1.0, worst_diff_raw = 0.0; /* [CLS] and max pooling */

/* Compares rows[n, dim] with ref[n, dim]; max_diff scaled for vectors that
 * are not normalised. */
static void compare(const char *what, const float *got, const float *ref, int n, int dim,
                    double max_diff, json_t *texts)
{
    for (int i = 0; i < n; i++) {
        double dot = 0, ng = 0, nr = 0, diff = 0;
        bool finite = true;
        for (int d = 0; d < dim; d++) {
            double g = got[(size_t)i * dim + d], r = ref[(size_t)i * dim + d];
            finite = finite && isfinite(g);
            dot += g * r, ng += g * g, nr += r * r;
            diff = fmax(diff, fabs(g - r));
        }
        double cos = dot / (sqrt(ng) * sqrt(nr) + 1e-30);
        if (max_diff == MAX_DIFF) {
            worst_cos = fmin(worst_cos, cos);
            worst_diff = fmax(worst_diff, diff);
        } else {
            worst_cos_raw = fmin(worst_cos_raw, cos);
            worst_diff_raw = fmax(worst_diff_raw, diff);
        }
        const char *t = json_string_value(json_array_get(texts, (size_t)i));
        CHECK(finite && cos >= MIN_COSINE && diff <= max_diff,
              "%s: text %d \"%.40s\": cosine %.7f (>= %g), max |diff| %.3g (<= %.3g)%s", what, i,
              t ? t : "?", cos, MIN_COSINE, diff, max_diff, finite ? "" : ", NaN/Inf");
    }
}

static const char *join(const char *a, const char *b)
{
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    int n = snprintf(buf[k], sizeof buf[k], "%s/%s", a, b);
    if (n < 0 || n >= (int)sizeof buf[k]) {
        fprintf(stderr, "path too long: %s/%s\n", a, b);
        exit(1);
    }
    return buf[k];
}

/* ---- bad folders ------------------------------------------------------------ */

static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json",
                                    "vocab.txt", "tokenizer_config.json", "modules.json",
                                    "sentence_bert_config.json", NULL};

/* A fresh copy of the model folder in tmp/name: symlinks to the real files
 * except skip (left out); 1_Pooling copied. */
static const char *make_folder(const char *tmp, const char *model, const char *name,
                               const char *skip)
{
    static char dir[1024];
    if (snprintf(dir, sizeof dir, "%s/%s", tmp, name) >= (int)sizeof dir)
        exit(1);
    if (mkdir(dir, 0700) != 0 || mkdir(join(dir, "1_Pooling"), 0700) != 0) {
        perror(dir);
        exit(1);
    }
    char real[1024];
    if (!realpath(model, real)) {
        perror(model);
        exit(1);
    }
    for (const char *const *f = files; *f; f++)
        if (!skip || strcmp(*f, skip) != 0)
            if (symlink(join(real, *f), join(dir, *f)) != 0) {
                perror(*f);
                exit(1);
            }
    char *pool = test_read_text(join(real, "1_Pooling/config.json"));
    test_write_text(join(dir, "1_Pooling/config.json"), pool ? pool : "");
    free(pool);
    return dir;
}

/* Replaces "from" by "to" in the folder's file (made a real file). */
static void edit(const char *dir, const char *file, const char *from, const char *to)
{
    char *s = test_read_text(join(dir, file));
    char *at = s ? strstr(s, from) : NULL;
    if (!at) {
        fprintf(stderr, "edit: \"%s\" not in %s\n", from, file);
        exit(1);
    }
    size_t n = strlen(s) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    unlink(join(dir, file));
    test_write_text(join(dir, file), out);
    free(out);
    free(s);
}

static void expect_fail(clattn_ctx *ctx, const char *dir, clattn_status want, const char *needle1,
                        const char *needle2)
{
    clattn_embedder *e = (clattn_embedder *)1;
    clattn_status st = clattn_embedder_load(ctx, dir, &e);
    const char *msg = clattn_last_error();
    CHECK(st == want && e == NULL, "%s: got %s, want %s: %s", dir, clattn_status_str(st),
          clattn_status_str(want), msg);
    CHECK(strstr(msg, needle1) && (!needle2 || strstr(msg, needle2)),
          "%s: message should name \"%s\"%s%s: %s", dir, needle1, needle2 ? " and " : "",
          needle2 ? needle2 : "", msg);
    clattn_embedder_destroy(st == CLATTN_OK ? e : NULL);
}

static void bad_folders(clattn_ctx *ctx, const char *model)
{
    char tmp[] = "/tmp/clattn-embed-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        exit(1);
    }
    const char *d;
    d = make_folder(tmp, model, "no_config", "config.json");
    expect_fail(ctx, d, CLATTN_ERR_IO, "config.json", NULL);
    d = make_folder(tmp, model, "no_weights", "model.safetensors");
    expect_fail(ctx, d, CLATTN_ERR_IO, "model.safetensors", NULL);
    d = make_folder(tmp, model, "no_tokenizer", "tokenizer.json");
    unlink(join(d, "vocab.txt"));
    expect_fail(ctx, d, CLATTN_ERR_IO, "vocab.txt", NULL);
    d = make_folder(tmp, model, "tanh", NULL);
    edit(d, "config.json", "\"gelu\"", "\"tanh\"");
    expect_fail(ctx, d, CLATTN_ERR_UNSUPPORTED, "config.json", "hidden_act");
    d = make_folder(tmp, model, "relative", NULL);
    edit(d, "config.json", "\"absolute\"", "\"relative_key\"");
    expect_fail(ctx, d, CLATTN_ERR_UNSUPPORTED, "config.json", "relative_key");
    d = make_folder(tmp, model, "roberta", NULL);
    edit(d, "config.json", "\"bert\"", "\"roberta\"");
    expect_fail(ctx, d, CLATTN_ERR_UNSUPPORTED, "config.json", "model_type");
    d = make_folder(tmp, model, "malformed", NULL);
    edit(d, "config.json", "{", "{,");
    expect_fail(ctx, d, CLATTN_ERR_FORMAT, "config.json", "line");
    d = make_folder(tmp, model, "wrong_type", NULL);
    edit(d, "config.json", "\"hidden_size\": 384", "\"hidden_size\": \"384\"");
    expect_fail(ctx, d, CLATTN_ERR_FORMAT, "config.json", "hidden_size");
    d = make_folder(tmp, model, "misshapen", NULL);
    edit(d, "config.json", "\"intermediate_size\": 1536", "\"intermediate_size\": 1024");
    expect_fail(ctx, d, CLATTN_ERR_FORMAT, "intermediate.dense.weight", "[1024, 384]");
    d = make_folder(tmp, model, "bad_modules", NULL);
    edit(d, "modules.json", "models.Normalize", "models.Dense");
    expect_fail(ctx, d, CLATTN_ERR_UNSUPPORTED, "modules.json", "Dense");
    d = make_folder(tmp, model, "bad_pooling", NULL);
    edit(d, "1_Pooling/config.json", "\"pooling_mode_mean_sqrt_len_tokens\": false",
         "\"pooling_mode_mean_sqrt_len_tokens\": true");
    expect_fail(ctx, d, CLATTN_ERR_UNSUPPORTED, "1_Pooling/config.json", "mean_sqrt_len");
    d = make_folder(tmp, model, "bad_st_config", NULL);
    edit(d, "sentence_bert_config.json", "256", "100000");
    expect_fail(ctx, d, CLATTN_ERR_FORMAT, "sentence_bert_config.json", "max_seq_length");
    /* Without the sentence-transformers files: a plain BERT folder, mean
     * pooling, not normalised. */
    d = make_folder(tmp, model, "plain", "modules.json");
    clattn_embedder *e = NULL;
    CHECK_OK(clattn_embedder_load(ctx, d, &e));
    bool norm = true;
    clattn_embedder_defaults(e, NULL, &norm, NULL);
    CHECK(e && !norm, "a folder without modules.json does not normalise");
    clattn_embedder_destroy(e);
    char cmd[1100];
    if (snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp) >= (int)sizeof cmd || system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmp);
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_embed FIXTURE_DIR MODEL_DIR\n");
        return 2;
    }
    const char *fix = argv[1], *model = argv[2];
    struct stat sb;
    if (stat(join(model, "model.safetensors"), &sb) != 0) {
        fprintf(stderr,
                "FAIL: %s has no model.safetensors: run tools/fetch-model to put "
                "all-MiniLM-L6-v2 there\n",
                model);
        return 1;
    }
    json_error_t jerr;
    json_t *root = json_load_file(join(fix, "texts.json"), 0, &jerr);
    npy_array ref = {0}, ref2 = {0};
    char err[256];
    if (!root || !npy_read(join(fix, "default.npy"), &ref, err, sizeof err) ||
        !npy_read(join(fix, "cls_max.npy"), &ref2, err, sizeof err)) {
        fprintf(stderr, "FAIL: fixtures in %s: %s\n", fix, root ? err : jerr.text);
        return 1;
    }
    json_t *texts = json_object_get(root, "texts"), *ids = json_object_get(root, "ids");
    int n = (int)json_array_size(texts), pooled = (int)json_integer_value(
                                             json_object_get(root, "pooled_texts"));
    clattn_ctx *ctx = test_ctx();
    clattn_embedder *e = NULL;
    CHECK_OK(clattn_embedder_load(ctx, model, &e));
    if (!e)
        return test_summary("test_embed");
    int dim = clattn_embedder_dim(e);
    CHECK(dim == 384 && ref.ndim == 2 && ref.shape[0] == n && ref.shape[1] == dim,
          "dim %d, fixture [%lld, %lld] for %d texts", dim, (long long)ref.shape[0],
          (long long)ref.shape[1], n);
    clattn_pooling pooling;
    bool norm;
    int32_t max_len;
    clattn_embedder_defaults(e, &pooling, &norm, &max_len);
    CHECK(pooling == CLATTN_POOLING_MEAN && norm && max_len == 256,
          "folder defaults: pooling %d, normalize %d, max_length %d", (int)pooling, norm, max_len);

    /* Tokens. */
    const char **tx = malloc((size_t)n * sizeof *tx);
    int64_t tok[512];
    int id_mismatch = 0;
    int32_t *lens = calloc((size_t)n, sizeof *lens);
    for (int i = 0; i < n; i++) {
        tx[i] = json_string_value(json_array_get(texts, (size_t)i));
        json_t *want = json_array_get(ids, (size_t)i);
        int32_t count = 0;
        CHECK_OK(clattn_tokenizer_encode(clattn_embedder_tokenizer(e), tx[i], strlen(tx[i]), 256,
                                         tok, 512, &count));
        lens[i] = count;
        bool same = (size_t)count == json_array_size(want);
        for (int32_t j = 0; same && j < count; j++)
            same = tok[j] == json_integer_value(json_array_get(want, (size_t)j));
        id_mismatch += !same;
        CHECK(same, "text %d \"%.40s\": %d ids, Hugging Face gives %zu (or they differ)", i,
              tx[i], count, json_array_size(want));
    }
    printf("token ids: %d of %d texts identical to Hugging Face's\n", n - id_mismatch, n);

    /* CLATTN_TEST_EMBED_SHORT=1 (tools/check's Rusticl stage): embed only the
     * texts of at most 64 tokens. llvmpipe's CLBlast GEMMs run at 0.1-0.3
     * GFLOP/s, and the 256-token texts alone took ~10 minutes there; the
     * POCL stage embeds every text. Token ids are checked for all texts. */
    const char *short_env = getenv("CLATTN_TEST_EMBED_SHORT");
    if (short_env && short_env[0] == '1') {
        const char **stx = malloc((size_t)n * sizeof *stx);
        float *sref = malloc((size_t)n * dim * sizeof *sref);
        float *sgot = malloc((size_t)n * dim * sizeof *sgot);
        json_t *stexts = json_array();
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (lens[i] > 64)
                continue;
            stx[m] = tx[i];
            memcpy(sref + (size_t)m * dim, (const float *)ref.data + (size_t)i * dim,
                   (size_t)dim * sizeof *sref);
            json_array_append_new(stexts, json_string(tx[i]));
            m++;
        }
        clattn_embed_params p = clattn_embed_params_default();
        p.batch_size = 8;
        CHECK_OK(clattn_embedder_embed(e, stx, m, sgot, &p));
        compare("default, texts <= 64 tokens, batch 8", sgot, sref, m, dim, MAX_DIFF, stexts);
        printf("default (mean, normalised), %d of %d texts (<= 64 tokens): cosine >= %.8f, "
               "max |diff| <= %.3g\n",
               m, n, worst_cos, worst_diff);
        json_decref(stexts);
        free(stx), free(sref), free(sgot), free(lens), free(tx);
        clattn_embedder_destroy(e);
        clattn_ctx_destroy(ctx);
        npy_free(&ref), npy_free(&ref2);
        json_decref(root);
        return test_summary("test_embed");
    }

    /* Embeddings: every text in batches of 2, then short texts again in
     * batches of 3 and 1 (other paddings, several batches, the order
     * restored). Batches are sorted by length and padded to their longest
     * text, so a batch of 32 holding a 256-token text costs 32 x 256 tokens:
     * too much for Rusticl/llvmpipe (~0.1 GFLOP/s GEMMs), where batches of 2
     * keep the whole test to a few minutes. */
    float *got = malloc((size_t)n * dim * sizeof *got);
    const int batches[][2] = {{2, 0}, {3, 12}, {1, 4}}; /* batch size, texts (0: all) */
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
        clattn_embed_params p = clattn_embed_params_default();
        p.batch_size = batches[b][0];
        int count = batches[b][1] ? batches[b][1] : n;
        memset(got, 0, (size_t)n * dim * sizeof *got);
        CHECK_OK(clattn_embedder_embed(e, tx, count, got, &p));
        char what[64];
        snprintf(what, sizeof what, "default, batch %d", batches[b][0]);
        compare(what, got, ref.data, count, dim, MAX_DIFF, texts);
    }
    printf("default (mean, normalised), batch sizes 2/3/1: cosine >= %.8f, "
           "max |diff| <= %.3g\n",
           worst_cos, worst_diff);

    /* [CLS] and max pooling, not normalised: values up to ~10, so the
     * absolute bound scales with them. */
    clattn_pooling modes[2] = {CLATTN_POOLING_CLS, CLATTN_POOLING_MAX};
    for (int m = 0; m < 2; m++) {
        clattn_embed_params p = clattn_embed_params_default();
        p.pooling = modes[m];
        p.normalize = 0;
        p.batch_size = 5;
        CHECK_OK(clattn_embedder_embed(e, tx, pooled / 2, got, &p));
        compare(m ? "max pooling" : "cls pooling", got,
                (const float *)ref2.data + (size_t)m * pooled * dim, pooled / 2, dim, 1e-3,
                texts);
    }
    printf("[CLS] and max pooling, not normalised: cosine >= %.8f, max |diff| <= %.3g\n",
           worst_cos_raw, worst_diff_raw);

    /* Token ids (clattn_embedder_embed_ids): the tokenizer's ids of the
     * first texts give the texts' vectors, bit for bit, and so match
     * sentence-transformers as the texts do. */
    {
        const int n_ids_texts = n < 6 ? n : 6;
        const clattn_tokenizer *tok = clattn_embedder_tokenizer(e);
        int32_t max_len = 0, id_lens[6];
        clattn_embedder_defaults(e, NULL, NULL, &max_len);
        int64_t *flat = malloc((size_t)n_ids_texts * (size_t)max_len * sizeof *flat);
        size_t used = 0;
        for (int i = 0; i < n_ids_texts; i++) {
            CHECK_OK(clattn_tokenizer_encode(tok, tx[i], strlen(tx[i]), max_len, flat + used,
                                             max_len, &id_lens[i]));
            used += (size_t)id_lens[i];
        }
        float *by_text = malloc((size_t)n_ids_texts * dim * sizeof *by_text);
        clattn_embed_params p = clattn_embed_params_default();
        p.batch_size = 2;
        CHECK_OK(clattn_embedder_embed(e, tx, n_ids_texts, by_text, &p));
        CHECK_OK(clattn_embedder_embed_ids(e, flat, id_lens, n_ids_texts, got, &p));
        CHECK(memcmp(got, by_text, (size_t)n_ids_texts * dim * sizeof *got) == 0,
              "embed_ids equals embed of the same texts, bit for bit");
        compare("embed_ids", got, ref.data, n_ids_texts, dim, MAX_DIFF, texts);
        /* Bad ids and lengths are named, nothing is truncated. */
        int32_t bad_len[1] = {max_len + 1};
        CHECK_STATUS(clattn_embedder_embed_ids(e, flat, bad_len, 1, got, NULL),
                     CLATTN_ERR_INVALID_ARG);
        bad_len[0] = 0;
        CHECK_STATUS(clattn_embedder_embed_ids(e, flat, bad_len, 1, got, NULL),
                     CLATTN_ERR_INVALID_ARG);
        int64_t bad_id[2] = {101, 1 << 30};
        int32_t two[1] = {2};
        CHECK_STATUS(clattn_embedder_embed_ids(e, bad_id, two, 1, got, NULL),
                     CLATTN_ERR_INVALID_ARG);
        CHECK(strstr(clattn_last_error(), "flat index 1") != NULL, "embed_ids names the id");
        bad_id[1] = -1;
        CHECK_STATUS(clattn_embedder_embed_ids(e, bad_id, two, 1, got, NULL),
                     CLATTN_ERR_INVALID_ARG);
        CHECK_STATUS(clattn_embedder_embed_ids(e, NULL, two, 1, got, NULL),
                     CLATTN_ERR_INVALID_ARG);
        CHECK_STATUS(clattn_embedder_embed_ids(NULL, flat, two, 1, got, NULL),
                     CLATTN_ERR_INVALID_ARG);
        CHECK_OK(clattn_embedder_embed_ids(e, NULL, NULL, 0, NULL, NULL));
        free(flat);
        free(by_text);
    }

    /* Bad arguments. */
    clattn_embed_params p = clattn_embed_params_default();
    p.batch_size = 0;
    CHECK_STATUS(clattn_embedder_embed(e, tx, 1, got, &p), CLATTN_ERR_INVALID_ARG);
    p = clattn_embed_params_default();
    p.max_length = 513;
    CHECK_STATUS(clattn_embedder_embed(e, tx, 1, got, &p), CLATTN_ERR_INVALID_ARG);
    const char *null_text[1] = {NULL};
    CHECK_STATUS(clattn_embedder_embed(e, null_text, 1, got, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_embedder_embed(e, tx, -1, got, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_OK(clattn_embedder_embed(e, tx, 0, NULL, NULL));
    CHECK(clattn_embedder_dim(NULL) == 0 && clattn_embedder_tokenizer(NULL) == NULL,
          "NULL embedder accessors");
    clattn_embedder_destroy(NULL);
    clattn_embedder_destroy(e);

    bad_folders(ctx, model);
    clattn_ctx_destroy(ctx);
    free(got);
    free(tx);
    free(lens);
    npy_free(&ref);
    npy_free(&ref2);
    json_decref(root);
    return test_summary("test_embed");
}
