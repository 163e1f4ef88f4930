/* test_lm_attention.c - clattn_lm_attention_last against transformers.
 *
 * Fixtures (tests/fixtures/make_attention_fixtures.py) in the folders of
 * tests/fixtures/make_lm_fixtures.py: the last row of every layer's and
 * head's attentions (output_attentions=True, eager attention, float64)
 * for the prompt alone (attn_prompt.npy [L, H, P]) and for the prompt and
 * its continuation (attn_full.npy [L, H, P + G]).
 *
 * Checks, per model (Llama with GQA, Llama with bias and llama3 rope,
 * Qwen2 MQA, Mistral with a sliding window shorter than the sequence,
 * GPT-2):
 *   - after a prefill of the prompt: every weight within ATTN_TOL of the
 *     reference, every row summing to 1 within SUM_TOL, exact zeros where
 *     the reference has them and outside the sliding window;
 *   - the same for the full sequence reached three ways: one prefill;
 *     prefill then decode step by step; and a batched decode of two
 *     sequences at once for the last token;
 *   - a float16 cache stays within F16_TOL;
 * then the errors: NULL arguments, seq out of range, capacity too small
 * (the message gives the floats needed), a session without
 * want_attention, an empty or just truncated sequence. */
#include "npy.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Probabilities in [0, 1] from a float32 forward against float64: errors
 * measured below 1e-6; 1e-5 is the tolerance the library promises. */
#define ATTN_TOL 1e-5
#define SUM_TOL 1e-5
/* Keys rounded to half in the cache: relative 2^-11 per element, scores
 * move by about that times |q||k|. */
#define F16_TOL 5e-3

static const char *fixtures;
static double worst_err, worst_sum;

typedef struct lm_case {
    char dir[512];
    int32_t ids[128], n_prompt, n_all;
    npy_array prompt_ref, full_ref;
} lm_case;

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
    c->n_all = c->n_prompt + (int32_t)json_array_size(g);
    for (int32_t i = 0; i < c->n_prompt; i++)
        c->ids[i] = (int32_t)json_integer_value(json_array_get(p, (size_t)i));
    for (int32_t i = c->n_prompt; i < c->n_all; i++)
        c->ids[i] = (int32_t)json_integer_value(json_array_get(g, (size_t)(i - c->n_prompt)));
    json_decref(root);
    snprintf(path, sizeof path, "%s/attn_prompt.npy", c->dir);
    bool ok = npy_read(path, &c->prompt_ref, err, sizeof err);
    CHECK(ok, "%s: %s", path, err);
    snprintf(path, sizeof path, "%s/attn_full.npy", c->dir);
    bool ok2 = ok && npy_read(path, &c->full_ref, err, sizeof err);
    CHECK(!ok || ok2, "%s: %s", path, err);
    return ok && ok2;
}

/* Fetches seq's row [L, H, len] and compares it with ref. */
static void compare(clattn_lm_session *s, int32_t seq, const clattn_lm_info *info,
                    const npy_array *ref, double tol, const char *what)
{
    int32_t len = -1;
    CHECK_OK(clattn_lm_attention_last(s, seq, NULL, 0, &len));
    const int32_t L = info->n_layers, H = info->n_heads;
    CHECK(ref->ndim == 3 && ref->shape[0] == L && ref->shape[1] == H && ref->shape[2] == len,
          "%s: reference shape [%lld, %lld, %lld], ctx_len %d", what, (long long)ref->shape[0],
          (long long)ref->shape[1], (long long)ref->shape[2], len);
    if (len <= 0 || ref->shape[2] != len)
        return;
    const size_t n = (size_t)L * H * len;
    float *got = test_fvec(n);
    int32_t len2 = -1;
    CHECK_OK(clattn_lm_attention_last(s, seq, got, (int64_t)n, &len2));
    CHECK(len2 == len, "%s: ctx_len %d then %d", what, len, len2);
    const float *r = ref->data;
    double err = 0, sum_err = 0;
    size_t bad_zero = 0, nonfinite = 0;
    for (int32_t l = 0; l < L; l++)
        for (int32_t h = 0; h < H; h++) {
            const size_t row = ((size_t)l * H + h) * (size_t)len;
            double sum = 0;
            for (int32_t j = 0; j < len; j++) {
                float g = got[row + j];
                if (!isfinite(g))
                    nonfinite++;
                double d = fabs((double)g - r[row + j]);
                err = d > err ? d : err;
                /* Outside the window: keys j <= last - sliding_window. */
                bool outside = info->sliding_window > 0 && j <= len - 1 - info->sliding_window;
                if ((r[row + j] == 0.0f || outside) && g != 0.0f)
                    bad_zero++;
                sum += g;
            }
            sum_err = fabs(sum - 1) > sum_err ? fabs(sum - 1) : sum_err;
        }
    printf("%-44s max error %.2e, row sums within %.2e\n", what, err, sum_err);
    CHECK(nonfinite == 0, "%s: %zu NaN or Inf weights", what, nonfinite);
    CHECK(err <= tol, "%s: max error %.3e > %.1e", what, err, tol);
    CHECK(sum_err <= SUM_TOL, "%s: a row sums to 1 +- %.3e", what, sum_err);
    CHECK(bad_zero == 0, "%s: %zu masked weights are not exactly 0", what, bad_zero);
    if (tol == ATTN_TOL) {
        worst_err = err > worst_err ? err : worst_err;
        worst_sum = sum_err > worst_sum ? sum_err : worst_sum;
    }
    free(got);
}

static void test_model(clattn_ctx *ctx, const char *name)
{
    lm_case c;
    if (!read_case(name, &c))
        goto out;
    clattn_lm *lm = NULL;
    CHECK_OK(clattn_lm_load(ctx, c.dir, &lm));
    if (!lm)
        goto out;
    clattn_lm_info info;
    CHECK_OK(clattn_lm_get_info(lm, &info));
    char what[128];
    clattn_lm_session_params sp = clattn_lm_session_params_default();
    sp.ctx_size = 64;
    sp.n_seq = 2;
    sp.want_attention = true;
    clattn_lm_session *s = NULL;
    CHECK_OK(clattn_lm_session_create(lm, &sp, &s));
    if (!s)
        goto done;

    /* The prompt, prefilled. */
    CHECK_OK(clattn_lm_prefill(s, 0, c.ids, c.n_prompt, NULL));
    snprintf(what, sizeof what, "%s: prompt (prefill)", name);
    compare(s, 0, &info, &c.prompt_ref, ATTN_TOL, what);

    /* The whole sequence in one prefill. */
    CHECK_OK(clattn_lm_session_truncate(s, 0, 0));
    CHECK_OK(clattn_lm_prefill(s, 0, c.ids, c.n_all, NULL));
    snprintf(what, sizeof what, "%s: full (prefill)", name);
    compare(s, 0, &info, &c.full_ref, ATTN_TOL, what);

    /* Prefill of the prompt, then a decode step per id. */
    CHECK_OK(clattn_lm_prefill(s, 1, c.ids, c.n_prompt, NULL));
    for (int32_t i = c.n_prompt; i < c.n_all; i++)
        CHECK_OK(clattn_lm_decode(s, 1, (int32_t[]){1}, &c.ids[i], NULL));
    snprintf(what, sizeof what, "%s: full (decode steps)", name);
    compare(s, 1, &info, &c.full_ref, ATTN_TOL, what);

    /* The last id of both sequences in one batched decode step. */
    CHECK_OK(clattn_lm_session_truncate(s, 0, c.n_all - 1));
    CHECK_OK(clattn_lm_session_truncate(s, 1, c.n_all - 1));
    CHECK_OK(clattn_lm_decode(s, 2, (int32_t[]){1, 0},
                              (int32_t[]){c.ids[c.n_all - 1], c.ids[c.n_all - 1]}, NULL));
    snprintf(what, sizeof what, "%s: full (batched decode, seq 0)", name);
    compare(s, 0, &info, &c.full_ref, ATTN_TOL, what);
    snprintf(what, sizeof what, "%s: full (batched decode, seq 1)", name);
    compare(s, 1, &info, &c.full_ref, ATTN_TOL, what);
    clattn_lm_session_destroy(s);

    /* A half cache. */
    sp.cache_type = CLATTN_CACHE_F16;
    sp.n_seq = 1;
    s = NULL;
    CHECK_OK(clattn_lm_session_create(lm, &sp, &s));
    if (s) {
        CHECK_OK(clattn_lm_prefill(s, 0, c.ids, c.n_all, NULL));
        snprintf(what, sizeof what, "%s: full (f16 cache)", name);
        compare(s, 0, &info, &c.full_ref, F16_TOL, what);
        clattn_lm_session_destroy(s);
    }
done:
    clattn_lm_destroy(lm);
out:
    npy_free(&c.prompt_ref);
    npy_free(&c.full_ref);
}

static void test_errors(clattn_ctx *ctx)
{
    lm_case c;
    if (!read_case("llama_gqa_f32", &c))
        goto out;
    clattn_lm *lm = NULL;
    CHECK_OK(clattn_lm_load(ctx, c.dir, &lm));
    if (!lm)
        goto out;
    clattn_lm_info info;
    CHECK_OK(clattn_lm_get_info(lm, &info));
    clattn_lm_session_params sp = clattn_lm_session_params_default();
    sp.ctx_size = 32;
    sp.n_seq = 2;
    clattn_lm_session *plain = NULL, *s = NULL;
    CHECK(!clattn_lm_session_params_default().want_attention, "want_attention defaults to true");
    CHECK_OK(clattn_lm_session_create(lm, &sp, &plain));
    sp.want_attention = true;
    CHECK_OK(clattn_lm_session_create(lm, &sp, &s));
    if (!plain || !s)
        goto done;
    int32_t len = -7;
    float w[4];
    CHECK_OK(clattn_lm_prefill(plain, 0, c.ids, 5, NULL));
    CHECK_STATUS(clattn_lm_attention_last(plain, 0, NULL, 0, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("want_attention");
    CHECK_STATUS(clattn_lm_attention_last(NULL, 0, NULL, 0, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("must not be NULL");
    CHECK_STATUS(clattn_lm_attention_last(s, 0, NULL, 0, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("ctx_len");
    /* Empty sequence. */
    CHECK_STATUS(clattn_lm_attention_last(s, 0, NULL, 0, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("sequence 0 has no last position");
    CHECK_STATUS(clattn_lm_attention_last(s, 2, NULL, 0, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("sequence 2 is outside [0, 2)");
    CHECK_STATUS(clattn_lm_attention_last(s, -1, NULL, 0, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_OK(clattn_lm_prefill(s, 0, c.ids, 5, NULL));
    CHECK_STATUS(clattn_lm_attention_last(s, 0, NULL, 4, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("capacity 4");
    CHECK_STATUS(clattn_lm_attention_last(s, 0, w, -1, &len), CLATTN_ERR_INVALID_ARG);
    /* Too small: the message names the shape and the count needed. */
    char need[64];
    snprintf(need, sizeof need, "[%d, %d, 5]: %d floats needed", info.n_layers, info.n_heads,
             info.n_layers * info.n_heads * 5);
    len = -7;
    CHECK_STATUS(clattn_lm_attention_last(s, 0, w, 4, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG(need);
    CHECK(len == 5, "ctx_len %d after a too small capacity (want 5)", len);
    /* The other sequence is still empty; truncation forgets the query. */
    CHECK_STATUS(clattn_lm_attention_last(s, 1, NULL, 0, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_OK(clattn_lm_session_truncate(s, 0, 3));
    CHECK_STATUS(clattn_lm_attention_last(s, 0, NULL, 0, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("truncated");
    /* A failed prefill (an id outside the vocabulary) leaves none either. */
    CHECK_STATUS(clattn_lm_prefill(s, 0, (int32_t[]){1, 999999}, 2, NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_lm_attention_last(s, 0, NULL, 0, &len), CLATTN_ERR_INVALID_ARG);
    CHECK_OK(clattn_lm_decode(s, 1, (int32_t[]){0}, &c.ids[3], NULL));
    CHECK_OK(clattn_lm_attention_last(s, 0, NULL, 0, &len));
    CHECK(len == 4, "ctx_len %d after truncate to 3 and one decode (want 4)", len);
done:
    clattn_lm_session_destroy(plain);
    clattn_lm_session_destroy(s);
    clattn_lm_destroy(lm);
out:
    npy_free(&c.prompt_ref);
    npy_free(&c.full_ref);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_lm_attention FIXTURES_DIR\n");
        return 2;
    }
    fixtures = argv[1];
    clattn_ctx *ctx = test_ctx();
    const char *models[] = {"llama_gqa_f32", "llama_bias_tied_llama3_bf16", "qwen2_mqa_bf16",
                            "mistral_window_f16", "gpt2_f32"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        test_model(ctx, models[i]);
    printf("worst of all models: max error %.2e, row sums within %.2e\n", worst_err, worst_sum);
    test_errors(ctx);
    clattn_ctx_destroy(ctx);
    return test_summary("test_lm_attention");
}
