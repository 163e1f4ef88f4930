/* test_modules.c - every module fixture made by tests/fixtures/
 * make_fixtures.py (PyTorch, float64 reference outputs) loaded as a model
 * folder and run through clattn, outputs and attention weights compared,
 * then (every module but nn.Transformer) trained: training forward and
 * backward, every parameter and input gradient against PyTorch autograd;
 * then bad model folders and a bad config each give the right status.
 *
 * Tolerance: atol 1e-4 + rtol 1e-4. The references are float64 PyTorch
 * runs on the same float32 weights and inputs, so the difference is
 * clattn's float32 rounding alone: GEMMs of length <= 64 (~1e-6 relative),
 * softmax, and layer norms that divide by a standard deviation of O(1);
 * through up to 4 stacked layers this stays below ~2e-5 (observed), and
 * outputs are O(1).
 *
 * Usage: test_modules FIXTURE_DIR */
#include "forward_inputs.h"
#include "testutil.h"

#include <jansson.h>

/* Gradients: float64 PyTorch autograd on the same float32 weights, inputs
 * and output gradient. clattn's float32 backward sums over the batch and
 * sequence (up to ~30 terms of O(1)) in GEMMs and reductions, so its
 * error grows a little over the forward's: atol 2e-4 + rtol 1e-3. */
#define GRAD_ATOL 2e-4
#define GRAD_RTOL 1e-3
#include <stdlib.h>
#include <string.h>

static const char *cases[] = {
    "mha_self",
    "mha_cross_kdim_vdim",
    "mha_bias_kv_zero_attn",
    "mha_nobias_causal",
    "self_attention_block",
    "self_attention_block_heads_out",
    "encoder_layer_post_relu",
    "encoder_layer_pre_gelu_nobias",
    "decoder_layer_all_masks",
    "encoder_stack_norm",
    "decoder_stack_prenorm",
    "transformer",
};

static void compare_npy(const char *dir, const char *name, const char *file, const float *got,
                        int32_t ndim, const int64_t *shape)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    npy_array ref;
    if (!npy_read(path, &ref, err, sizeof err)) {
        CHECK(false, "%s", err);
        return;
    }
    bool same_shape = ref.ndim == ndim;
    for (int32_t i = 0; same_shape && i < ndim; i++)
        same_shape = ref.shape[i] == shape[i];
    CHECK(same_shape, "%s: %s shape differs from the reference", dir, name);
    if (same_shape) {
        double *r = malloc(ref.count * sizeof *r);
        for (size_t i = 0; i < ref.count; i++)
            r[i] = ((const float *)ref.data)[i];
        char what[600];
        snprintf(what, sizeof what, "%s: %s", dir, name);
        test_close(what, got, r, ref.count, 1e-4, 1e-4);
        free(r);
    }
    npy_free(&ref);
}

/* Compares a device tensor with the float reference named ref_name in w. */
static void compare_grad(const char *dir, const clattn_weights *w, const char *ref_name,
                         const clattn_tensor *got_t, double scale)
{
    size_t n = clattn_tensor_numel(got_t);
    float *got = malloc(n * sizeof *got), *ref = malloc(n * sizeof *ref);
    double *ref64 = malloc(n * sizeof *ref64);
    clattn_weight_info info;
    CHECK_OK(clattn_tensor_read(got_t, got));
    clattn_status st = clattn_weights_find(w, ref_name, &info);
    CHECK(st == CLATTN_OK, "%s: no reference %s", dir, ref_name);
    if (st == CLATTN_OK) {
        CHECK_OK(clattn_weights_read_f32(w, ref_name, ref, n));
        for (size_t i = 0; i < n; i++)
            ref64[i] = scale * ref[i];
        char what[600];
        snprintf(what, sizeof what, "%s: %s", dir, ref_name);
        test_close(what, got, ref64, n, GRAD_ATOL, GRAD_RTOL);
    }
    free(got);
    free(ref);
    free(ref64);
}

/* The input tensors of a forward and the names of their gradients. */
static const clattn_tensor *input_of(const forward_inputs *fi, const char *name)
{
    const clattn_forward_args *a = &fi->args;
    if (!strcmp(name, "query")) return a->query;
    if (!strcmp(name, "key")) return a->key;
    if (!strcmp(name, "value")) return a->value;
    if (!strcmp(name, "src")) return a->src;
    if (!strcmp(name, "tgt")) return a->tgt;
    if (!strcmp(name, "memory")) return a->memory;
    return NULL;
}

static clattn_tensor **grad_slot(clattn_backward_args *b, const char *name)
{
    if (!strcmp(name, "query")) return &b->dquery;
    if (!strcmp(name, "key")) return &b->dkey;
    if (!strcmp(name, "value")) return &b->dvalue;
    if (!strcmp(name, "src")) return &b->dsrc;
    if (!strcmp(name, "tgt")) return &b->dtgt;
    return &b->dmemory;
}

/* After a training forward: the backward of PyTorch's dout, every
 * parameter and input gradient against PyTorch's; then a second backward
 * doubles the parameter gradients (accumulation) and zero_grad clears
 * them. */
static void check_grads(clattn_ctx *ctx, clattn_module *m, const forward_inputs *fi,
                        const char *dir, json_t *grads)
{
    static const char *const names[] = {"query", "key", "value", "src", "tgt", "memory"};
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_object_get(grads, "dout")));
    npy_array dn;
    if (!npy_read(path, &dn, err, sizeof err)) {
        CHECK(false, "%s", err);
        return;
    }
    clattn_tensor *dout = test_tensor(ctx, dn.ndim, dn.shape, (const float *)dn.data);
    npy_free(&dn);
    clattn_weights *w = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_object_get(grads, "grads")));
    CHECK_OK(clattn_weights_open(path, &w));
    clattn_backward_args b = clattn_backward_args_default();
    b.dout = dout;
    clattn_tensor *dins[6] = {NULL};
    for (int i = 0; i < 6; i++) {
        const clattn_tensor *in = input_of(fi, names[i]);
        if (!in)
            continue;
        int64_t shape[4];
        int32_t nd = clattn_tensor_shape(in, shape);
        dins[i] = test_tensor(ctx, nd, shape, NULL);
        *grad_slot(&b, names[i]) = dins[i];
    }
    CHECK_OK(clattn_module_zero_grad(m));
    CHECK_OK(clattn_module_backward(m, &b));
    int32_t np = clattn_module_param_count(m);
    char ref[200];
    for (int32_t i = 0; w && i < np; i++) {
        const char *pn = clattn_module_param_name(m, i);
        snprintf(ref, sizeof ref, "param.%s", pn);
        compare_grad(dir, w, ref, clattn_module_grad(m, pn), 1.0);
    }
    for (int i = 0; w && i < 6; i++) {
        if (!dins[i])
            continue;
        snprintf(ref, sizeof ref, "input.%s", names[i]);
        compare_grad(dir, w, ref, dins[i], 1.0);
    }
    /* Accumulation and zeroing, on the first parameter. */
    CHECK_OK(clattn_module_backward(m, &b));
    const char *p0 = clattn_module_param_name(m, 0);
    snprintf(ref, sizeof ref, "param.%s", p0);
    if (w)
        compare_grad(dir, w, ref, clattn_module_grad(m, p0), 2.0);
    CHECK_OK(clattn_module_zero_grad(m));
    clattn_tensor *g0 = clattn_module_grad(m, p0);
    size_t n0 = clattn_tensor_numel(g0);
    float *h = malloc(n0 * sizeof *h);
    CHECK_OK(clattn_tensor_read(g0, h));
    bool zero = true;
    for (size_t i = 0; i < n0; i++)
        zero = zero && h[i] == 0.0f;
    CHECK(zero, "%s: zero_grad left a non-zero gradient", dir);
    free(h);
    for (int i = 0; i < 6; i++)
        clattn_tensor_destroy(dins[i]);
    clattn_tensor_destroy(dout);
    clattn_weights_close(w);
}

static void run_fixture(clattn_ctx *ctx, const char *root, const char *name)
{
    char dir[400], path[512], err[512];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    clattn_module *m = NULL;
    clattn_status st = clattn_model_load(ctx, dir, &m);
    CHECK(st == CLATTN_OK, "%s: load: %s", name, clattn_last_error());
    if (st != CLATTN_OK)
        return;
    snprintf(path, sizeof path, "%s/case.json", dir);
    json_error_t jerr;
    json_t *c = json_load_file(path, 0, &jerr);
    CHECK(c != NULL, "%s: %s", path, jerr.text);
    if (!c) {
        clattn_module_destroy(m);
        return;
    }
    forward_inputs fi;
    forward_inputs_init(&fi, ctx, m);
    const char *key;
    json_t *value;
    bool ok = true;
    json_object_foreach(json_object_get(c, "inputs"), key, value)
    {
        npy_array arr;
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(value));
        ok = ok && npy_read(path, &arr, err, sizeof err);
        ok = ok && forward_inputs_add(&fi, key, &arr, err, sizeof err);
    }
    json_object_foreach(json_object_get(c, "flags"), key, value)
        ok = ok && forward_inputs_flag(&fi, key, json_is_true(value), err, sizeof err);
    float *out = NULL, *w = NULL;
    int32_t ond = 0, wnd = 0;
    int64_t oshape[4], wshape[4];
    ok = ok && forward_inputs_run(&fi, m, &out, &ond, oshape, &w, &wnd, wshape, err, sizeof err);
    CHECK(ok, "%s: %s", name, err);
    if (ok) {
        json_object_foreach(json_object_get(c, "outputs"), key, value)
        {
            const char *file = json_string_value(value);
            if (strcmp(key, "output") == 0)
                compare_npy(dir, key, file, out, ond, oshape);
            else if (strcmp(key, "attn_weights") == 0)
                compare_npy(dir, key, file, w, wnd, wshape);
        }
    }
    json_t *grads = json_object_get(c, "grads");
    if (ok && grads) {
        /* Training: the same forward, kept, then the backward. */
        free(out);
        free(w);
        out = w = NULL;
        fi.train = true;
        ok = forward_inputs_run(&fi, m, &out, &ond, oshape, &w, &wnd, wshape, err, sizeof err);
        CHECK(ok, "%s: training forward: %s", name, err);
        if (ok)
            check_grads(ctx, m, &fi, dir, grads);
    }
    free(out);
    free(w);
    forward_inputs_free(&fi);
    json_decref(c);
    clattn_module_destroy(m);
}

/* Bad folders: each error names the file and the offending key. */
static void bad_folders(clattn_ctx *ctx, const char *root)
{
    char tmp[] = "/tmp/clattn-test-modules-XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK(false, "mkdtemp");
        return;
    }
    char cfg[300], cmd[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    clattn_module *m = NULL;
    /* Missing folder / config. */
    CHECK_STATUS(clattn_model_load(ctx, tmp, &m), CLATTN_ERR_IO);
    CHECK(strstr(clattn_last_error(), "config.json") != NULL, "message: %s", clattn_last_error());
    struct {
        const char *json;
        clattn_status want;
        const char *needle;
    } bad[] = {
        {"{\"module\": \"torch.nn.MultiheadAttention\", \"embed_dim\": 32, \"num_heads\": 4,"
         " \"embed_dim\": 16}",
         CLATTN_ERR_FORMAT, "duplicate"},
        {"[1, 2]", CLATTN_ERR_FORMAT, "object"},
        {"{\"embed_dim\": 32}", CLATTN_ERR_FORMAT, "module"},
        {"{\"module\": \"torch.nn.LSTM\"}", CLATTN_ERR_UNSUPPORTED, "torch.nn.LSTM"},
        {"{\"module\": \"torch.nn.MultiheadAttention\", \"embed_dim\": 32, \"num_heads\": 4,"
         " \"flash\": true}",
         CLATTN_ERR_UNSUPPORTED, "flash"},
        {"{\"module\": \"torch.nn.MultiheadAttention\", \"embed_dim\": \"32\", \"num_heads\": 4}",
         CLATTN_ERR_FORMAT, "embed_dim"},
        {"{\"module\": \"torch.nn.MultiheadAttention\", \"embed_dim\": 30, \"num_heads\": 4}",
         CLATTN_ERR_FORMAT, "divisible"},
        {"{\"module\": \"torch.nn.TransformerEncoderLayer\", \"d_model\": 32, \"nhead\": 4,"
         " \"activation\": \"tanh\"}",
         CLATTN_ERR_UNSUPPORTED, "activation"},
        {"{\"module\": \"torch.nn.TransformerEncoder\", \"num_layers\": 2}", CLATTN_ERR_FORMAT,
         "encoder_layer"},
        {"{\"module\": \"torch.nn.Transformer\", \"d_model\": 32, \"nhead\": 4, \"dtype\":"
         " \"float16\"}",
         CLATTN_ERR_UNSUPPORTED, "dtype"},
        /* Found by fuzz_module_config: a negative eps passed (NaN outputs),
         * and 1e39 became an infinite float. */
        {"{\"module\": \"torch.nn.TransformerDecoderLayer\", \"d_model\": 2, \"nhead\": 2,"
         " \"layer_norm_eps\": -1e05}",
         CLATTN_ERR_FORMAT, "layer_norm_eps"},
        {"{\"module\": \"torch.nn.Transformer\", \"d_model\": 32, \"nhead\": 4,"
         " \"layer_norm_eps\": 1e39}",
         CLATTN_ERR_FORMAT, "layer_norm_eps"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        test_write_text(cfg, bad[i].json);
        CHECK_STATUS(clattn_model_load(ctx, tmp, &m), bad[i].want);
        CHECK(strstr(clattn_last_error(), bad[i].needle) != NULL &&
                  strstr(clattn_last_error(), "config.json") != NULL,
              "case %zu: message should name '%s' and the file: %s", i, bad[i].needle,
              clattn_last_error());
        CHECK(m == NULL, "module handle set on failure");
    }
    /* A good config with another module's weights: a clear mismatch. */
    snprintf(cmd, sizeof cmd, "cp '%s/mha_self/model.safetensors' '%s/'", root, tmp);
    CHECK(system(cmd) == 0, "copy fixture");
    test_write_text(cfg, "{\"module\": \"torch.nn.MultiheadAttention\", \"embed_dim\": 16, "
                    "\"num_heads\": 4}");
    CHECK_STATUS(clattn_model_load(ctx, tmp, &m), CLATTN_ERR_FORMAT);
    CHECK(strstr(clattn_last_error(), "in_proj_weight") != NULL &&
              strstr(clattn_last_error(), "[48, 16]") != NULL,
          "message should name the tensor and expected shape: %s", clattn_last_error());
    test_write_text(cfg, "{\"module\": \"torch.nn.MultiheadAttention\", \"embed_dim\": 32, "
                    "\"num_heads\": 4, \"add_bias_kv\": true}");
    CHECK_STATUS(clattn_model_load(ctx, tmp, &m), CLATTN_ERR_FORMAT);
    CHECK(strstr(clattn_last_error(), "bias_k") != NULL, "message: %s", clattn_last_error());
    test_write_text(cfg, "{\"module\": \"torch.nn.MultiheadAttention\", \"embed_dim\": 32, "
                    "\"num_heads\": 4, \"bias\": false}");
    CHECK_STATUS(clattn_model_load(ctx, tmp, &m), CLATTN_ERR_FORMAT);
    CHECK(strstr(clattn_last_error(), "unexpected tensor") != NULL, "message: %s",
          clattn_last_error());
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_modules FIXTURE_DIR\n");
        return 2;
    }
    clattn_ctx *ctx = test_ctx();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_fixture(ctx, argv[1], cases[i]);
    bad_folders(ctx, argv[1]);
    clattn_ctx_destroy(ctx);
    return test_summary("test_modules");
}
