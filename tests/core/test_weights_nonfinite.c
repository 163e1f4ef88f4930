/* test_weights_nonfinite.c - NaN and Inf weights are refused by default
 * (issue #17): a model folder whose weights held NaN loaded without
 * complaint, and clattn-embed then printed bare "nan"s as its result.
 * A copy of a module fixture (and of all-MiniLM-L6-v2 when models/ has
 * it) gets one NaN, +Inf or -Inf written into one F32 tensor's bytes;
 * clattn_model_load (and so clattn_module_load) and clattn_embedder_load
 * must fail with CLATTN_ERR_FORMAT naming the tensor and the flat index,
 * the untouched copy must still load, and clattn_weights_upload, which
 * uploads values as they are, must deliver the bad value unchanged.
 * Arguments: the fixtures folder, the models folder. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

/* Writes value at flat index of tensor name (F32) in the safetensors file
 * path, in place. false if the tensor is missing or not F32. */
static bool poke(const char *path, const char *name, size_t index, float value)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return false;
    unsigned char n8[8];
    bool ok = fread(n8, 1, 8, f) == 8;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | n8[i];
    char *head = ok && n < (1u << 26) ? malloc(n + 1) : NULL;
    ok = head && fread(head, 1, n, f) == n;
    json_t *root = NULL, *t = NULL;
    if (ok) {
        head[n] = '\0';
        root = json_loads(head, 0, NULL);
        t = root ? json_object_get(root, name) : NULL;
        ok = t && strcmp(json_string_value(json_object_get(t, "dtype")), "F32") == 0;
    }
    if (ok) {
        json_int_t begin = json_integer_value(json_array_get(json_object_get(t, "data_offsets"), 0));
        ok = fseek(f, (long)(8 + n + (uint64_t)begin + index * 4), SEEK_SET) == 0 &&
             fwrite(&value, 4, 1, f) == 1;
    }
    json_decref(root);
    free(head);
    return fclose(f) == 0 && ok;
}

static void sh(const char *cmd)
{
    if (system(cmd) != 0) {
        fprintf(stderr, "FAIL: %s\n", cmd);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    const char *fixtures = argc > 1 ? argv[1] : "tests/fixtures";
    const char *models = argc > 2 ? argv[2] : "models";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clattn-test-nonfinite-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    clattn_ctx *ctx = test_ctx();
    char cmd[2048], dir[512], file[600];
    const float values[3] = {NAN, INFINITY, -INFINITY};
    const char *names[3] = {"NaN", "+Inf", "-Inf"};

    /* A module folder: TransformerEncoderLayer, linear1.weight [48, 32]. */
    snprintf(dir, sizeof dir, "%s/module", tmpdir);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    for (int c = 0; c < 3; c++) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -rL '%s/modules/encoder_layer_post_relu' '%s'",
                 dir, fixtures, dir);
        sh(cmd);
        clattn_module *m = NULL;
        CHECK_OK(clattn_model_load(ctx, dir, &m)); /* the clean copy loads */
        clattn_module_destroy(m);
        m = NULL;
        size_t index = 17 + (size_t)c * 100;
        CHECK(poke(file, "linear1.weight", index, values[c]), "cannot poke %s", file);
        CHECK_STATUS(clattn_model_load(ctx, dir, &m), CLATTN_ERR_FORMAT);
        char want[96];
        snprintf(want, sizeof want, "'linear1.weight' holds %s at flat index %zu", names[c],
                 index);
        CHECK_MSG(want);
        CHECK(m == NULL, "no module on failure");
        /* clattn_weights_upload keeps values as they are (documented): the
         * bad value arrives on the device unchanged, the loaders refuse. */
        clattn_weights *w = NULL;
        CHECK_OK(clattn_weights_open(file, &w));
        clattn_tensor *t = NULL;
        CHECK_OK(clattn_weights_upload(ctx, w, "linear1.weight", &t));
        float got[48 * 32];
        memset(got, 0, sizeof got);
        if (t)
            CHECK_OK(clattn_tensor_read(t, got));
        CHECK(c == 0 ? isnan(got[index]) : got[index] == values[c],
              "upload of %s: got %g", names[c], got[index]);
        clattn_tensor_destroy(t);
        clattn_weights_close(w);
    }

    /* The embedder, when the model is there (tools/check fetches it). */
    char model[600];
    snprintf(model, sizeof model, "%s/all-MiniLM-L6-v2", models);
    struct stat st;
    if (stat(model, &st) == 0) {
        snprintf(dir, sizeof dir, "%s/bert", tmpdir);
        /* -L: models/all-MiniLM-L6-v2 may be a link to a shared copy, and
         * -r alone copies the link, so the poke below wrote the NaN into
         * that copy (it happened). */
        snprintf(cmd, sizeof cmd, "cp -rL '%s' '%s'", model, dir);
        sh(cmd);
        snprintf(file, sizeof file, "%s/model.safetensors", dir);
        const char *tensor = poke(file, "encoder.layer.3.output.dense.weight", 1000, NAN)
                                 ? "encoder.layer.3.output.dense.weight"
                             : poke(file, "bert.encoder.layer.3.output.dense.weight", 1000, NAN)
                                 ? "bert.encoder.layer.3.output.dense.weight"
                                 : NULL;
        CHECK(tensor != NULL, "no F32 dense weight found to poke in %s", file);
        clattn_embedder *e = NULL;
        CHECK_STATUS(clattn_embedder_load(ctx, dir, &e), CLATTN_ERR_FORMAT);
        CHECK_MSG("holds NaN at flat index 1000");
        CHECK(e == NULL, "no embedder on failure");
    } else {
        fprintf(stderr, "note: %s absent, embedder case not run (tools/check fetches it)\n",
                model);
    }

    clattn_ctx_destroy(ctx);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    sh(cmd);
    return test_summary("test_weights_nonfinite");
}
