/* test_embed_attention.c - clattn_embedder_attention against transformers.
 *
 * Fixture (tests/fixtures/make_attention_fixtures.py): a tiny BertModel
 * with random weights (2 layers, 4 heads, hidden 32) and a WordPiece
 * vocabulary, in embed/tiny_bert/, with BertModel(ids,
 * output_attentions=True).attentions (eager attention, float64) of each
 * text alone: attn_<i>.npy [layers, heads, T, T].
 *
 * Checks, per text ("" and one truncated to max_length among them): the
 * sizes query, the ids and their token strings (clattn_tokenizer_id_to_
 * token) against transformers' tokenizer, every weight within ATTN_TOL,
 * every row summing to 1 within SUM_TOL; that embedding still gives the
 * same vectors before and after (the weights path leaves the embed path
 * alone); then the errors: NULL arguments, capacity without weights,
 * capacity too small (the message gives the floats needed), a bad
 * max_length. */
#include "npy.h"
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Probabilities in [0, 1] from a float32 forward against float64. */
#define ATTN_TOL 1e-5
#define SUM_TOL 1e-5

static const char *dir;

static void test_text(clattn_embedder *e, int i, json_t *cs, double *worst, double *worst_sum)
{
    const char *text = json_string_value(json_object_get(cs, "text"));
    json_t *ids = json_object_get(cs, "ids"), *toks = json_object_get(cs, "tokens");
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/attn_%d.npy", dir, i);
    npy_array ref = {0};
    bool ok = npy_read(path, &ref, err, sizeof err);
    CHECK(ok, "%s: %s", path, err);
    if (!ok)
        return;
    int32_t T = -1, L = -1, H = -1;
    CHECK_OK(clattn_embedder_attention(e, text, NULL, NULL, 0, NULL, &T, &L, &H));
    CHECK(T == (int32_t)json_array_size(ids), "text %d: %d tokens, transformers %zu", i, T,
          json_array_size(ids));
    CHECK(ref.ndim == 4 && ref.shape[0] == L && ref.shape[1] == H && ref.shape[2] == T &&
              ref.shape[3] == T,
          "text %d: fixture shape vs [%d, %d, %d, %d]", i, L, H, T, T);
    if (T <= 0 || ref.ndim != 4 || ref.shape[2] != T) {
        npy_free(&ref);
        return;
    }
    const size_t n = (size_t)L * H * T * T;
    float *got = test_fvec(n);
    int64_t *got_ids = calloc((size_t)T, sizeof *got_ids);
    int32_t T2 = -1, L2 = -1, H2 = -1;
    CHECK_OK(clattn_embedder_attention(e, text, NULL, got, (int64_t)n, got_ids, &T2, &L2, &H2));
    CHECK(T2 == T && L2 == L && H2 == H, "text %d: sizes changed between calls", i);
    const clattn_tokenizer *tok = clattn_embedder_tokenizer(e);
    for (int32_t t = 0; t < T; t++) {
        int64_t want = json_integer_value(json_array_get(ids, (size_t)t));
        CHECK(got_ids[t] == want, "text %d: id %d is %lld, transformers %lld", i, t,
              (long long)got_ids[t], (long long)want);
        const char *label = clattn_tokenizer_id_to_token(tok, got_ids[t]);
        const char *want_label = json_string_value(json_array_get(toks, (size_t)t));
        CHECK(label && strcmp(label, want_label) == 0, "text %d: token %d is \"%s\", want \"%s\"",
              i, t, label ? label : "(null)", want_label);
    }
    const float *r = ref.data;
    double e_max = 0, s_max = 0;
    size_t nonfinite = 0;
    for (size_t row = 0; row < n / (size_t)T; row++) {
        double sum = 0;
        for (int32_t j = 0; j < T; j++) {
            float g = got[row * T + j];
            nonfinite += !isfinite(g);
            double d = fabs((double)g - r[row * T + j]);
            e_max = d > e_max ? d : e_max;
            sum += g;
        }
        s_max = fabs(sum - 1) > s_max ? fabs(sum - 1) : s_max;
    }
    printf("text %d (%2d tokens): max error %.2e, row sums within %.2e\n", i, T, e_max, s_max);
    CHECK(nonfinite == 0, "text %d: %zu NaN or Inf weights", i, nonfinite);
    CHECK(e_max <= ATTN_TOL, "text %d: max error %.3e > %.1e", i, e_max, ATTN_TOL);
    CHECK(s_max <= SUM_TOL, "text %d: a row sums to 1 +- %.3e", i, s_max);
    *worst = e_max > *worst ? e_max : *worst;
    *worst_sum = s_max > *worst_sum ? s_max : *worst_sum;
    free(got);
    free(got_ids);
    npy_free(&ref);
}

static void test_errors(clattn_embedder *e)
{
    int32_t T = -1, L = -1, H = -1;
    float w[8];
    CHECK_STATUS(clattn_embedder_attention(NULL, "hello", NULL, NULL, 0, NULL, &T, &L, &H),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("must not be NULL");
    CHECK_STATUS(clattn_embedder_attention(e, NULL, NULL, NULL, 0, NULL, &T, &L, &H),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("text");
    CHECK_STATUS(clattn_embedder_attention(e, "hello", NULL, NULL, 0, NULL, NULL, &L, &H),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_embedder_attention(e, "hello", NULL, NULL, 8, NULL, &T, &L, &H),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("capacity 8");
    CHECK_STATUS(clattn_embedder_attention(e, "hello", NULL, w, -1, NULL, &T, &L, &H),
                 CLATTN_ERR_INVALID_ARG);
    /* "hello world": [CLS] hello world [SEP], 2 layers of 4 heads. */
    T = L = H = -1;
    CHECK_STATUS(clattn_embedder_attention(e, "hello world", NULL, w, 8, NULL, &T, &L, &H),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[n_layers, n_heads, T, T] = [2, 4, 4, 4]: 128 floats needed");
    CHECK(T == 4 && L == 2 && H == 4, "sizes after a too small capacity: %d %d %d", T, L, H);
    clattn_embed_params p = clattn_embed_params_default();
    p.max_length = 1;
    CHECK_STATUS(clattn_embedder_attention(e, "hello", &p, NULL, 0, NULL, &T, &L, &H),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("max_length 1");
    p.max_length = 65;
    CHECK_STATUS(clattn_embedder_attention(e, "hello", &p, NULL, 0, NULL, &T, &L, &H),
                 CLATTN_ERR_INVALID_ARG);
    /* A shorter max_length truncates: [CLS] hello [SEP]. */
    p.max_length = 3;
    CHECK_OK(clattn_embedder_attention(e, "hello world", &p, NULL, 0, NULL, &T, &L, &H));
    CHECK(T == 3, "max_length 3 gives %d tokens", T);
    CHECK(clattn_tokenizer_id_to_token(clattn_embedder_tokenizer(e), -1) == NULL,
          "id_to_token(-1) is not NULL");
    CHECK(clattn_tokenizer_id_to_token(clattn_embedder_tokenizer(e), 1 << 20) == NULL,
          "id_to_token of an id past the vocabulary is not NULL");
    CHECK(clattn_tokenizer_id_to_token(NULL, 0) == NULL, "id_to_token(NULL) is not NULL");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_embed_attention TINY_BERT_DIR\n");
        return 2;
    }
    dir = argv[1];
    char path[600];
    snprintf(path, sizeof path, "%s/texts.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        fprintf(stderr, "FAIL: %s: %s\n", path, jerr.text);
        return 1;
    }
    clattn_ctx *ctx = test_ctx();
    clattn_embedder *e = NULL;
    CHECK_OK(clattn_embedder_load(ctx, dir, &e));
    if (e) {
        const char *texts[2] = {"hello world", "the example sentence is unaffable"};
        const int32_t dim = clattn_embedder_dim(e);
        float *before = test_fvec(2 * (size_t)dim), *after = test_fvec(2 * (size_t)dim);
        CHECK_OK(clattn_embedder_embed(e, texts, 2, before, NULL));
        json_t *cases = json_object_get(root, "cases");
        double worst = 0, worst_sum = 0;
        for (size_t i = 0; i < json_array_size(cases); i++)
            test_text(e, (int)i, json_array_get(cases, i), &worst, &worst_sum);
        printf("worst of all texts: max error %.2e, row sums within %.2e\n", worst, worst_sum);
        CHECK_OK(clattn_embedder_embed(e, texts, 2, after, NULL));
        CHECK(memcmp(before, after, 2 * (size_t)dim * sizeof *before) == 0,
              "embedding changed after attention calls");
        test_errors(e);
        free(before);
        free(after);
    }
    clattn_embedder_destroy(e);
    clattn_ctx_destroy(ctx);
    json_decref(root);
    return test_summary("test_embed_attention");
}
