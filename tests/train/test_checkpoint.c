/* test_checkpoint.c - optimiser checkpoints: a round trip in mid-training
 * gives bit-identical continuations, a checkpoint written by PyTorch
 * continues to PyTorch's values (the fixtures of
 * tests/fixtures/make_optim_fixtures.py, compared with optim_fixtures.h's
 * OPT_ATOL / OPT_RTOL, reasoned in test_optimizers.c), a PyTorch
 * state_dict loads, and broken files fail with the right status, naming
 * the tensor, and change nothing.
 *
 * Usage: test_checkpoint FIXTURE_DIR (tests/fixtures/optim) */
#include "optim_fixtures.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char tmpdir[] = "/tmp/clattn-test-optim-XXXXXX";

static const char *tmp_path(const char *file)
{
    static char path[32][256]; /* a few live at once */
    static int next;
    char *p = path[next++ % 32];
    snprintf(p, 256, "%s/%s", tmpdir, file);
    return p;
}

/* Writes a safetensors file from a header (JSON text) and raw data. */
static void write_raw(const char *path, const char *header, const void *data, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    size_t len = strlen(header), padded = (len + 7) / 8 * 8;
    unsigned char prefix[8];
    for (int b = 0; b < 8; b++)
        prefix[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    bool ok = f && fwrite(prefix, 1, 8, f) == 8 && fwrite(header, 1, len, f) == len;
    for (size_t i = len; ok && i < padded; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
    if (f)
        ok = fclose(f) == 0 && ok;
    if (!ok) {
        perror(path);
        exit(1);
    }
}

/* Round trip in mid-training for each kind: save after 3 steps, run 4
 * more; load into fresh tensors and a fresh optimiser, run the same 4:
 * the same bits. */
static void test_roundtrip(clattn_ctx *ctx)
{
    for (int kind = 0; kind < 3; kind++) {
        clattn_optimizer_params p = clattn_optimizer_params_default((clattn_optimizer_kind)kind);
        p.lr = 0.01f;
        p.max_grad_norm = 5.0f;
        p.warmup_steps = 2;
        p.total_steps = 9;
        p.min_lr = 1e-4f;
        if (kind == CLATTN_OPTIM_SGD) {
            p.momentum = 0.9f;
            p.nesterov = true;
            p.weight_decay = 1e-3f;
        }
        model a, b;
        model_init(ctx, &a, true);
        model_init(ctx, &b, false);
        clattn_optimizer *oa = NULL, *ob = NULL;
        CHECK_OK(clattn_optimizer_create(ctx, &p, n_fparams, a.refs, &oa));
        CHECK_OK(clattn_optimizer_create(ctx, &p, n_fparams, b.refs, &ob));
        if (!oa || !ob)
            return;
        for (int s = 0; s < 3; s++) {
            model_set_grads(&a, s);
            CHECK_OK(clattn_optimizer_step(oa));
        }
        const char *path = tmp_path("ckpt.safetensors");
        CHECK_OK(clattn_checkpoint_save(path, n_fparams, a.refs, oa));
        for (int s = 3; s < 7; s++) {
            model_set_grads(&a, s);
            CHECK_OK(clattn_optimizer_step(oa));
        }
        CHECK_OK(clattn_checkpoint_load(path, n_fparams, b.refs, ob));
        CHECK(clattn_optimizer_steps(ob) == 3, "kind %d: steps after load %lld", kind,
              (long long)clattn_optimizer_steps(ob));
        CHECK(clattn_optimizer_last_grad_norm(ob) == -1.0f, "norm after load");
        for (int s = 3; s < 7; s++) {
            model_set_grads(&b, s);
            CHECK_OK(clattn_optimizer_step(ob));
        }
        size_t na, nb;
        float *va = model_values(&a, &na), *vb = model_values(&b, &nb);
        CHECK(na == nb && memcmp(va, vb, na * sizeof *va) == 0,
              "kind %d: resumed training differs from uninterrupted training", kind);
        free(va);
        free(vb);

        /* The file: a state_dict with the state tensors and metadata. */
        clattn_weights *w = NULL;
        CHECK_OK(clattn_weights_open(path, &w));
        if (w) {
            const char *k = clattn_weights_metadata(w, "clattn.optimizer");
            const char *want = kind == 0 ? "sgd" : kind == 1 ? "adam" : "adamw";
            CHECK(k && strcmp(k, want) == 0, "clattn.optimizer: %s", k ? k : "(none)");
            const char *st = clattn_weights_metadata(w, "clattn.step");
            CHECK(st && strcmp(st, "3") == 0, "clattn.step: %s", st ? st : "(none)");
            const char *lr = clattn_weights_metadata(w, "clattn.lr");
            CHECK(lr && strtof(lr, NULL) == p.lr, "clattn.lr: %s", lr ? lr : "(none)");
            clattn_weight_info info;
            int32_t per = kind == 0 ? 1 : 2;
            CHECK(clattn_weights_count(w) == n_fparams * (1 + per), "%d tensors",
                  (int)clattn_weights_count(w));
            CHECK_OK(clattn_weights_find(w, kind == 0 ? "optimizer.lin.weight.momentum_buffer"
                                                      : "optimizer.lin.weight.exp_avg_sq",
                                         &info));
            CHECK(info.ndim == 2 && info.shape[0] == 19 && info.shape[1] == 11,
                  "state tensor shape");
            clattn_weights_close(w);
        }
        clattn_optimizer_destroy(oa);
        clattn_optimizer_destroy(ob);
        model_free(&a);
        model_free(&b);
    }
    /* Atomic save: nothing but the checkpoint in the directory. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = ckpt.safetensors", tmpdir);
    CHECK(system(cmd) == 0, "a temporary file was left in %s", tmpdir);
}

/* A checkpoint written by PyTorch (the fixture script, from its Adam's
 * state_dict) continues to PyTorch's own values. */
static void test_resume_from_pytorch(clattn_ctx *ctx)
{
    json_t *r = json_object_get(cases_json, "resume");
    const char *cname = json_string_value(json_object_get(r, "case"));
    int32_t at = (int32_t)json_integer_value(json_object_get(r, "at"));
    fcase c;
    if (!find_case(cname, &c))
        return;
    char file[128], path[600];
    snprintf(file, sizeof file, "%s.safetensors", c.name);
    clattn_weights *w = open_fixture(file);
    snprintf(path, sizeof path, "%s/resume.safetensors", fixdir);
    model m;
    model_init(ctx, &m, false);
    clattn_optimizer *opt = NULL;
    CHECK_OK(clattn_optimizer_create(ctx, &c.p, n_fparams, m.refs, &opt));
    CHECK_OK(clattn_checkpoint_load(path, n_fparams, m.refs, opt));
    CHECK(clattn_optimizer_steps(opt) == at, "steps after loading PyTorch's checkpoint: %lld",
          (long long)clattn_optimizer_steps(opt));
    if (w && opt) {
        /* The loaded values are PyTorch's after step at - 1, exactly. */
        for (int32_t i = 0; i < n_fparams; i++) {
            size_t n = fparams[i].numel;
            float *got = test_fvec(n);
            double *ref = test_dvec(n);
            float *want = test_fvec(n);
            char name[128];
            snprintf(name, sizeof name, "value.%d.%.63s", (int)(at - 1), fparams[i].name);
            read_fixture(w, name, want, n);
            for (size_t j = 0; j < n; j++)
                ref[j] = want[j];
            CHECK_OK(clattn_tensor_read(m.value[i], got));
            test_close("resume: loaded values", got, ref, n, 0, 0);
            free(got);
            free(ref);
            free(want);
        }
        run_steps(opt, &m, &c, w, at, c.steps);
    }
    clattn_optimizer_destroy(opt);
    model_free(&m);
    clattn_weights_close(w);
}

/* A module's state_dict saved by safetensors.torch (F32 and F64). */
static void test_pytorch_state_dict(clattn_ctx *ctx)
{
    char path[600];
    snprintf(path, sizeof path, "%s/state_dict.safetensors", fixdir);
    int64_t s_w[2] = {4, 3}, s4 = 4;
    clattn_tensor *t[4] = {test_tensor(ctx, 2, s_w, NULL), test_tensor(ctx, 1, &s4, NULL),
                           test_tensor(ctx, 1, &s4, NULL), test_tensor(ctx, 1, &s4, NULL)};
    clattn_tensor *g[4] = {test_tensor(ctx, 2, s_w, NULL), test_tensor(ctx, 1, &s4, NULL),
                           test_tensor(ctx, 1, &s4, NULL), test_tensor(ctx, 1, &s4, NULL)};
    const char *names[4] = {"proj.weight", "proj.bias", "norm.weight", "norm.bias"};
    clattn_param_ref refs[4];
    for (int i = 0; i < 4; i++)
        refs[i] = (clattn_param_ref){names[i], t[i], g[i]};
    CHECK_OK(clattn_checkpoint_load(path, 4, refs, NULL));
    float w[12], b[4], nw[4], nb[4];
    CHECK_OK(clattn_tensor_read(t[0], w));
    CHECK_OK(clattn_tensor_read(t[1], b));
    CHECK_OK(clattn_tensor_read(t[2], nw));
    CHECK_OK(clattn_tensor_read(t[3], nb));
    bool ok = true;
    for (int i = 0; i < 12; i++)
        ok = ok && w[i] == (float)(i - 6) / 8;
    for (int i = 0; i < 4; i++)
        ok = ok && b[i] == (float)(i + 1) / 4 && nw[i] == 1 + (float)i / 16 &&
             nb[i] == -(float)i / 32;
    CHECK(ok, "PyTorch state_dict values");
    /* Without optimiser state, an optimiser cannot load from it. */
    clattn_optimizer_params p = clattn_optimizer_params_default(CLATTN_OPTIM_ADAMW);
    clattn_optimizer *opt = NULL;
    CHECK_OK(clattn_optimizer_create(ctx, &p, 4, refs, &opt));
    CHECK_STATUS(clattn_checkpoint_load(path, 4, refs, opt), CLATTN_ERR_FORMAT);
    CHECK_MSG("clattn.optimizer");
    clattn_optimizer_destroy(opt);
    for (int i = 0; i < 4; i++) {
        clattn_tensor_destroy(t[i]);
        clattn_tensor_destroy(g[i]);
    }
}

/* Broken files: the right status, the tensor or key named, nothing changed. */
static void test_bad_checkpoints(clattn_ctx *ctx)
{
    model m;
    model_init(ctx, &m, true);
    clattn_optimizer_params p = clattn_optimizer_params_default(CLATTN_OPTIM_ADAM);
    clattn_optimizer *opt = NULL, *sgd = NULL;
    CHECK_OK(clattn_optimizer_create(ctx, &p, n_fparams, m.refs, &opt));
    clattn_optimizer_params ps = clattn_optimizer_params_default(CLATTN_OPTIM_SGD);
    ps.momentum = 0.5f;
    CHECK_OK(clattn_optimizer_create(ctx, &ps, n_fparams, m.refs, &sgd));
    if (!opt || !sgd)
        return;
    model_set_grads(&m, 0);
    CHECK_OK(clattn_optimizer_step(opt));
    const char *good = tmp_path("good.safetensors");
    CHECK_OK(clattn_checkpoint_save(good, n_fparams, m.refs, opt));
    size_t total;
    float *before = model_values(&m, &total);

    /* Files made with clattn_weights_write: params only; params missing
     * one; one of another shape; with bad metadata. */
    const char *names[PARAMS_MAX];
    const clattn_tensor *ts[PARAMS_MAX];
    for (int32_t i = 0; i < n_fparams; i++) {
        names[i] = fparams[i].name;
        ts[i] = m.value[i];
    }
    const char *only = tmp_path("params_only.safetensors");
    CHECK_OK(clattn_weights_write(only, n_fparams, names, ts, NULL, NULL, 0));
    int64_t wrong_shape[2] = {19, 1};
    clattn_tensor *wrong = test_tensor(ctx, 2, wrong_shape, NULL);
    CHECK_OK(clattn_tensor_fill(wrong, 1.0f));
    const clattn_tensor *ts2[PARAMS_MAX];
    memcpy(ts2, ts, sizeof ts2);
    ts2[1] = wrong; /* lin.bias [19] stored as [19, 1] */
    const char *misshaped = tmp_path("misshaped.safetensors");
    CHECK_OK(clattn_weights_write(misshaped, n_fparams, names, ts2, NULL, NULL, 0));
    const char *missing = tmp_path("missing.safetensors");
    CHECK_OK(clattn_weights_write(missing, n_fparams - 1, names, ts, NULL, NULL, 0));

    struct {
        const char *path;
        bool with_opt;
        clattn_optimizer *o;
        clattn_status want;
        const char *needle;
    } cases[] = {
        {only, true, NULL, CLATTN_ERR_FORMAT, "clattn.optimizer"},
        {misshaped, false, NULL, CLATTN_ERR_FORMAT, "'lin.bias' has shape [19, 1]"},
        {missing, false, NULL, CLATTN_ERR_FORMAT, "'scale' is missing"},
        {good, true, sgd, CLATTN_ERR_FORMAT, "'adam'"},
        {tmp_path("nonexistent.safetensors"), false, NULL, CLATTN_ERR_IO, "nonexistent"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        clattn_optimizer *o = cases[i].with_opt ? (cases[i].o ? cases[i].o : opt) : NULL;
        CHECK_STATUS(clattn_checkpoint_load(cases[i].path, n_fparams, m.refs, o), cases[i].want);
        CHECK_MSG(cases[i].needle);
    }
    CHECK_OK(clattn_checkpoint_load(only, n_fparams, m.refs, NULL)); /* params alone: fine */

    /* The optimiser state tensors: each missing one is named. Written
     * with the state of the good file minus one tensor, plus metadata. */
    clattn_weights *gw = NULL;
    CHECK_OK(clattn_weights_open(good, &gw));
    int32_t n_meta = clattn_weights_metadata_count(gw);
    const char *mk[32], *mv[32];
    for (int32_t i = 0; i < n_meta && i < 32; i++)
        CHECK_OK(clattn_weights_metadata_at(gw, i, &mk[i], &mv[i]));
    const char *state_missing = tmp_path("state_missing.safetensors");
    {
        /* params + exp_avg of every parameter, no exp_avg_sq of "scale" */
        const char *nn[3 * PARAMS_MAX];
        const clattn_tensor *tt[3 * PARAMS_MAX];
        char bufs[3 * PARAMS_MAX][96];
        int32_t k = 0;
        for (int32_t i = 0; i < n_fparams; i++) {
            nn[k] = fparams[i].name;
            tt[k++] = m.value[i];
            snprintf(bufs[k], sizeof bufs[k], "optimizer.%.63s.exp_avg", fparams[i].name);
            nn[k] = bufs[k];
            tt[k++] = m.value[i];
            if (i + 1 < n_fparams) {
                snprintf(bufs[k], sizeof bufs[k], "optimizer.%.63s.exp_avg_sq", fparams[i].name);
                nn[k] = bufs[k];
                tt[k++] = m.value[i];
            }
        }
        CHECK_OK(clattn_weights_write(state_missing, k, nn, tt, mk, mv, n_meta));
        CHECK_STATUS(clattn_checkpoint_load(state_missing, n_fparams, m.refs, opt),
                     CLATTN_ERR_FORMAT);
        CHECK_MSG("'optimizer.scale.exp_avg_sq' is missing");
        /* Bad step counts. */
        static const char *bad_steps[] = {"-3", "12x", "", "99999999999999999999", " 5"};
        int32_t step_idx = -1;
        for (int32_t i = 0; i < n_meta; i++)
            if (strcmp(mk[i], "clattn.step") == 0)
                step_idx = i;
        CHECK(step_idx >= 0, "no clattn.step in a saved checkpoint");
        for (size_t b = 0; step_idx >= 0 && b < sizeof bad_steps / sizeof *bad_steps; b++) {
            const char *saved = mv[step_idx];
            mv[step_idx] = bad_steps[b];
            const char *bad_step = tmp_path("bad_step.safetensors");
            clattn_status st = clattn_weights_write(bad_step, n_fparams, names, ts, mk, mv, n_meta);
            CHECK_OK(st);
            /* The step is checked before the state tensors, which this
             * file does not have. */
            CHECK_STATUS(clattn_checkpoint_load(bad_step, n_fparams, m.refs, opt),
                         CLATTN_ERR_FORMAT);
            CHECK_MSG("clattn.step");
            mv[step_idx] = saved;
        }
        /* No step count at all. */
        const char *mk2[32], *mv2[32];
        int32_t n2 = 0;
        for (int32_t i = 0; i < n_meta; i++)
            if (i != step_idx) {
                mk2[n2] = mk[i];
                mv2[n2++] = mv[i];
            }
        const char *no_step = tmp_path("no_step.safetensors");
        CHECK_OK(clattn_weights_write(no_step, n_fparams, names, ts, mk2, mv2, n2));
        CHECK_STATUS(clattn_checkpoint_load(no_step, n_fparams, m.refs, opt), CLATTN_ERR_FORMAT);
        CHECK_MSG("clattn.step");
    }
    clattn_weights_close(gw);

    /* Raw files: an integer tensor; truncated; not safetensors at all. */
    {
        int32_t ints[1] = {7};
        const char *int_file = tmp_path("int.safetensors");
        char header[1024];
        size_t off = 0;
        int len = snprintf(header, sizeof header, "{");
        size_t total_bytes = 0;
        for (int32_t i = 0; i < n_fparams; i++)
            total_bytes += fparams[i].numel * 4;
        unsigned char *data = calloc(1, total_bytes);
        for (int32_t i = 0; i < n_fparams; i++) {
            size_t bytes = fparams[i].numel * 4;
            char sh[64] = "";
            for (int32_t d = 0; d < fparams[i].ndim; d++)
                snprintf(sh + strlen(sh), sizeof sh - strlen(sh), "%s%lld", d ? "," : "",
                         (long long)fparams[i].shape[d]);
            bool is_int = strcmp(fparams[i].name, "scale") == 0;
            len += snprintf(header + len, sizeof header - (size_t)len,
                            "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                            i ? "," : "", fparams[i].name, is_int ? "I32" : "F32", sh, off,
                            off + bytes);
            if (is_int)
                memcpy(data + off, ints, 4);
            off += bytes;
        }
        snprintf(header + len, sizeof header - (size_t)len, "}");
        write_raw(int_file, header, data, total_bytes);
        free(data);
        CHECK_STATUS(clattn_checkpoint_load(int_file, n_fparams, m.refs, NULL),
                     CLATTN_ERR_UNSUPPORTED);
        CHECK_MSG("I32");
    }
    char *text = NULL;
    {
        FILE *f = fopen(good, "rb");
        long size = -1;
        if (f && fseek(f, 0, SEEK_END) == 0)
            size = ftell(f);
        if (f && size > 16 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)size))) {
            CHECK(fread(text, 1, (size_t)size, f) == (size_t)size, "read %s", good);
            const char *cut = tmp_path("truncated.safetensors");
            FILE *o = fopen(cut, "wb");
            CHECK(o && fwrite(text, 1, (size_t)size - 5, o) == (size_t)size - 5 && fclose(o) == 0,
                  "write %s", cut);
            CHECK_STATUS(clattn_checkpoint_load(cut, n_fparams, m.refs, opt), CLATTN_ERR_FORMAT);
            CHECK_MSG("truncated");
        }
        if (f)
            fclose(f);
        free(text);
    }
    const char *garbage = tmp_path("garbage.safetensors");
    test_write_text(garbage, "hello, this is not a safetensors file");
    CHECK_STATUS(clattn_checkpoint_load(garbage, n_fparams, m.refs, opt), CLATTN_ERR_FORMAT);

    /* None of the failures above changed a value or the step count. */
    float *after = model_values(&m, &total);
    CHECK(memcmp(before, after, total * sizeof *after) == 0, "a failed load changed parameters");
    CHECK(clattn_optimizer_steps(opt) == 1, "a failed load changed the step count");
    free(before);
    free(after);

    /* Save errors. */
    CHECK_STATUS(clattn_checkpoint_save("/nonexistent-dir/x.safetensors", n_fparams, m.refs, opt),
                 CLATTN_ERR_IO);
    CHECK_MSG("nonexistent-dir");
    CHECK_STATUS(clattn_checkpoint_save(NULL, n_fparams, m.refs, opt), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_checkpoint_load(NULL, n_fparams, m.refs, opt), CLATTN_ERR_INVALID_ARG);
    clattn_param_ref dup[2] = {m.refs[0], m.refs[1]};
    dup[1].name = dup[0].name;
    CHECK_STATUS(clattn_checkpoint_save(tmp_path("dup.safetensors"), 2, dup, NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("twice");
    dup[1].value = NULL;
    dup[1].name = "x";
    CHECK_STATUS(clattn_checkpoint_save(tmp_path("dup.safetensors"), 2, dup, NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_checkpoint_save(tmp_path("neg.safetensors"), -1, m.refs, NULL),
                 CLATTN_ERR_INVALID_ARG);

    clattn_tensor_destroy(wrong);
    clattn_optimizer_destroy(opt);
    clattn_optimizer_destroy(sgd);
    model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_checkpoint FIXTURE_DIR\n");
        return 2;
    }
    fixdir = argv[1];
    clattn_ctx *ctx = test_ctx();
    test_seed(23);
    if (load_fixtures()) {
        if (mkdtemp(tmpdir)) {
            test_roundtrip(ctx);
            test_resume_from_pytorch(ctx);
            test_pytorch_state_dict(ctx);
            test_bad_checkpoints(ctx);
            char cmd[512];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
            CHECK(system(cmd) == 0, "cleanup");
        } else {
            CHECK(false, "mkdtemp %s", tmpdir);
        }
    }
    close_fixtures();
    CHECK_OK(clattn_ctx_finish(ctx));
    clattn_ctx_destroy(ctx);
    return test_summary("test_checkpoint");
}
