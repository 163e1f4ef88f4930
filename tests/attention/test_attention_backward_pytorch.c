/* test_attention_backward_pytorch.c - clattn_sdpa_backward against
 * PyTorch's autograd: the fixtures made by
 * tests/fixtures/make_grad_fixtures.py, compared with backward_case.h's
 * tolerance.
 *
 *   test_attention_backward_pytorch [DIR]   the fixtures in DIR (default:
 *                                           the source tree's
 *                                           tests/fixtures/grad) */
#include "backward_case.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef GRAD_FIXTURES /* set by tests/attention/meson.build */
#define GRAD_FIXTURES "tests/fixtures/grad"
#endif

/* Reads tensor name of w as a host array (malloc'd) and, if want, a
 * device tensor; NULL (no failure) when the file has no such tensor. */
static float *fixture_tensor(clattn_ctx *ctx, const clattn_weights *w, const char *file,
                             const char *name, clattn_tensor **dev, size_t *count)
{
    clattn_weight_info info;
    if (dev)
        *dev = NULL;
    if (clattn_weights_find(w, name, &info) != CLATTN_OK)
        return NULL;
    size_t n = 1;
    for (int i = 0; i < info.ndim; i++)
        n *= (size_t)info.shape[i];
    float *x = malloc(n * sizeof *x);
    CHECK_OK(clattn_weights_read_f32(w, name, x, n));
    if (dev) {
        clattn_status st = clattn_weights_upload(ctx, w, name, dev);
        CHECK(st == CLATTN_OK, "%s: %s: %s", file, name, clattn_last_error());
    }
    if (count)
        *count = n;
    return x;
}

static const char *fixture_meta(const clattn_weights *w, const char *key, const char *def)
{
    const char *value = clattn_weights_metadata(w, key);
    return value ? value : def;
}

static void fixture_close(const char *file, const char *name, const float *got,
                          const float *want, size_t n)
{
    double *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++)
        ref[i] = want[i];
    check_grad(file, name, got, ref, n);
    free(ref);
}

/* One kind "sdpa" fixture of make_grad_fixtures.py: the forward (checked
 * against PyTorch's out, lse kept) and then the backward on the device,
 * against PyTorch's autograd gradients, with the same tolerance as the
 * sweep (the fixtures are float64 results rounded to float32). */
static void sdpa_fixture(clattn_ctx *ctx, const char *dir, const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    clattn_weights *w = NULL;
    clattn_status st = clattn_weights_open(path, &w);
    CHECK(st == CLATTN_OK, "%s: %s", path, clattn_last_error());
    if (st != CLATTN_OK)
        return;
    clattn_tensor *tq, *tk, *tv, *tdo, *tbias;
    size_t nq, nk, nv, no, nb = 0;
    float *q = fixture_tensor(ctx, w, file, "q", &tq, &nq);
    float *k = fixture_tensor(ctx, w, file, "k", &tk, &nk);
    float *v = fixture_tensor(ctx, w, file, "v", &tv, &nv);
    float *dout = fixture_tensor(ctx, w, file, "dout", &tdo, &no);
    float *want_out = fixture_tensor(ctx, w, file, "out", NULL, NULL);
    float *want_dq = fixture_tensor(ctx, w, file, "dq", NULL, NULL);
    float *want_dk = fixture_tensor(ctx, w, file, "dk", NULL, NULL);
    float *want_dv = fixture_tensor(ctx, w, file, "dv", NULL, NULL);
    float *bias = fixture_tensor(ctx, w, file, "bias", &tbias, &nb);
    float *want_db = fixture_tensor(ctx, w, file, "dbias", NULL, NULL);
    CHECK(q && k && v && dout && want_out && want_dq && want_dk && want_dv,
          "%s: a tensor is missing", file);
    if (!(q && k && v && dout && want_out && want_dq && want_dk && want_dv))
        goto done;

    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.scale = strtof(fixture_meta(w, "scale", "0"), NULL);
    p.causal = strcmp(fixture_meta(w, "causal", "0"), "1") == 0;
    p.window_left = atoi(fixture_meta(w, "window_left", "-1"));
    p.window_right = atoi(fixture_meta(w, "window_right", "-1"));
    p.score = strcmp(fixture_meta(w, "score", "dot"), "cosine") == 0 ? CLATTN_SCORE_COSINE
                                                                     : CLATTN_SCORE_DOT;
    int32_t kv_len[16];
    const char *kl = fixture_meta(w, "kv_len", "");
    if (*kl) {
        int nkl = 0;
        for (char *e; *kl && nkl < 16; kl = *e ? e + 1 : e)
            kv_len[nkl++] = (int32_t)strtol(kl, &e, 10);
        p.kv_len = kv_len;
    }
    p.bias = tbias;

    int64_t so[4], sl[3];
    clattn_tensor_shape(tdo, so);
    sl[0] = so[0], sl[1] = so[1], sl[2] = so[2];
    clattn_tensor *to = test_tensor(ctx, 4, so, NULL), *tl = test_tensor(ctx, 3, sl, NULL);
    int64_t shape[4];
    clattn_sdpa_grads g;
    g.dq = grad_tensor(ctx, true, clattn_tensor_shape(tq, shape), shape);
    g.dk = grad_tensor(ctx, true, clattn_tensor_shape(tk, shape), shape);
    g.dv = grad_tensor(ctx, true, clattn_tensor_shape(tv, shape), shape);
    g.dbias = want_db ? grad_tensor(ctx, true, clattn_tensor_shape(tbias, shape), shape) : NULL;
    p.lse = tl;
    st = clattn_sdpa(ctx, tq, tk, tv, to, &p);
    CHECK(st == CLATTN_OK, "%s: forward: %s", file, clattn_last_error());
    if (st == CLATTN_OK) {
        st = clattn_sdpa_backward(ctx, tq, tk, tv, to, tl, tdo, &p, &g);
        CHECK(st == CLATTN_OK, "%s: backward: %s", file, clattn_last_error());
    }
    if (st == CLATTN_OK) {
        float *got = malloc((nq > no ? (nq > nk ? nq : nk) : (no > nk ? no : nk)) *
                                sizeof *got + nb * sizeof *got);
        CHECK_OK(clattn_tensor_read(to, got));
        fixture_close(file, "out (forward)", got, want_out, no);
        CHECK_OK(clattn_tensor_read(g.dq, got));
        fixture_close(file, "dq", got, want_dq, nq);
        CHECK_OK(clattn_tensor_read(g.dk, got));
        fixture_close(file, "dk", got, want_dk, nk);
        CHECK_OK(clattn_tensor_read(g.dv, got));
        fixture_close(file, "dv", got, want_dv, nv);
        if (g.dbias) {
            CHECK_OK(clattn_tensor_read(g.dbias, got));
            fixture_close(file, "dbias", got, want_db, nb);
        }
        free(got);
    }
    n_cases_run++;
    clattn_tensor_destroy(to), clattn_tensor_destroy(tl), clattn_tensor_destroy(g.dq);
    clattn_tensor_destroy(g.dk), clattn_tensor_destroy(g.dv), clattn_tensor_destroy(g.dbias);
done:
    clattn_tensor_destroy(tq), clattn_tensor_destroy(tk), clattn_tensor_destroy(tv);
    clattn_tensor_destroy(tdo), clattn_tensor_destroy(tbias);
    free(q), free(k), free(v), free(dout), free(want_out), free(want_dq), free(want_dk);
    free(want_dv), free(bias), free(want_db);
    clattn_weights_close(w);
}

/* Every case of dir/index.txt whose kind this test knows ("sdpa"). */
static void pytorch_fixtures(clattn_ctx *ctx, const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/index.txt", dir);
    char *index = test_read_text(path);
    CHECK(index != NULL, "cannot read %s (made by tests/fixtures/make_grad_fixtures.py)", path);
    if (!index)
        return;
    int found = 0;
    for (char *line = strtok(index, "\n"); line; line = strtok(NULL, "\n")) {
        char kind[32], file[256];
        if (sscanf(line, "%31s %255s", kind, file) != 2)
            continue;
        if (strcmp(kind, "sdpa") == 0) {
            sdpa_fixture(ctx, dir, file);
            found++;
        }
    }
    CHECK(found > 0, "%s lists no sdpa fixture", path);
    free(index);
}

int main(int argc, char **argv)
{
    test_seed(2025);
    clattn_ctx *ctx = test_ctx();
    pytorch_fixtures(ctx, argc > 1 ? argv[1] : GRAD_FIXTURES);
    clattn_ctx_destroy(ctx);
    return test_summary("test_attention_backward_pytorch");
}
