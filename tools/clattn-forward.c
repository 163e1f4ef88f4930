/* clattn-forward - runs one forward pass of a model folder (config.json +
 * model.safetensors) on NumPy .npy inputs and writes the output as .npy:
 * the way to check clattn against PyTorch on a model of your own.
 *
 *   clattn-forward --model DIR --input NAME=FILE.npy ... --output OUT.npy
 *                  [--weights W.npy] [--flag NAME[=true|false]] ...
 *                  [--per-head-weights] [--device SEL] [-q]
 *
 * Input names are those of the PyTorch module's forward arguments (query,
 * key, value, src, tgt, memory, attn_mask, key_padding_mask, src_mask or
 * mask, tgt_mask, memory_mask, *_key_padding_mask); flags are is_causal,
 * src_is_causal, tgt_is_causal, memory_is_causal. */
#include <clattn.h>

#include "cli_args.h"
#include "forward_inputs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clattn-forward --model DIR --input NAME=FILE.npy [--input ...]\n"
            "                      --output OUT.npy [--weights W.npy] [--per-head-weights]\n"
            "                      [--flag NAME[=true|false]]... [--device SEL] [-q]\n"
            "\n"
            "Runs the module in DIR (config.json + model.safetensors, a PyTorch state_dict)\n"
            "on the inputs and writes its output (float32 .npy, the model's own layout).\n"
            "  --input NAME=FILE   a forward argument by its PyTorch name: query, key, value,\n"
            "                      src, tgt, memory (float arrays), attn_mask,\n"
            "                      key_padding_mask, src_mask (or mask), tgt_mask, memory_mask,\n"
            "                      src/tgt/memory_key_padding_mask (bool: true = masked, or\n"
            "                      float: added to the scores)\n"
            "  --flag NAME         is_causal, src_is_causal, tgt_is_causal, memory_is_causal\n"
            "  --weights FILE      also write the attention weights (MultiheadAttention,\n"
            "                      SelfAttention), averaged over heads unless\n"
            "                      --per-head-weights\n"
            "  --device SEL        device selector (index, platform:device, or name), as\n"
            "                      CLATTN_DEVICE\n"
            "  -q                  no progress messages on stderr\n");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct named_file {
    char name[64];
    const char *path;
} named_file;

int main(int argc, char **argv)
{
    const char *model = NULL, *output = NULL, *weights_path = NULL, *device = NULL;
    named_file inputs[FORWARD_MAX_INPUTS];
    named_file flags[8];
    bool flag_values[8];
    int n_inputs = 0, n_flags = 0;
    bool quiet = false, per_head = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "--model") == 0 || strcmp(a, "--output") == 0 ||
             strcmp(a, "--weights") == 0 || strcmp(a, "--device") == 0 ||
             strcmp(a, "--input") == 0 || strcmp(a, "--flag") == 0) &&
            !val) {
            fprintf(stderr, "clattn-forward: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--model") == 0) {
            model = argv[++i];
        } else if (strcmp(a, "--output") == 0) {
            output = argv[++i];
        } else if (strcmp(a, "--weights") == 0) {
            weights_path = argv[++i];
        } else if (strcmp(a, "--device") == 0) {
            device = argv[++i];
        } else if (strcmp(a, "--per-head-weights") == 0) {
            per_head = true;
        } else if (strcmp(a, "-q") == 0) {
            quiet = true;
        } else if (strcmp(a, "--input") == 0) {
            const char *spec = argv[++i], *eq = strchr(spec, '=');
            if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof inputs[0].name ||
                n_inputs == FORWARD_MAX_INPUTS) {
                fprintf(stderr, "clattn-forward: --input wants NAME=FILE.npy, got '%s'\n", spec);
                return 2;
            }
            snprintf(inputs[n_inputs].name, sizeof inputs[0].name, "%.*s", (int)(eq - spec),
                     spec);
            inputs[n_inputs++].path = eq + 1;
        } else if (strcmp(a, "--flag") == 0) {
            const char *spec = argv[++i], *eq = strchr(spec, '=');
            size_t len = eq ? (size_t)(eq - spec) : strlen(spec);
            bool v = true;
            if (eq && strcmp(eq + 1, "true") != 0 && strcmp(eq + 1, "1") != 0) {
                if (strcmp(eq + 1, "false") != 0 && strcmp(eq + 1, "0") != 0) {
                    fprintf(stderr, "clattn-forward: --flag %s: value must be true or false\n",
                            spec);
                    return 2;
                }
                v = false;
            }
            if (len == 0 || len >= sizeof flags[0].name || n_flags == 8) {
                fprintf(stderr, "clattn-forward: bad --flag '%s'\n", spec);
                return 2;
            }
            snprintf(flags[n_flags].name, sizeof flags[0].name, "%.*s", (int)len, spec);
            flag_values[n_flags++] = v;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "clattn-forward: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !output || n_inputs == 0) {
        fprintf(stderr, "clattn-forward: --model, --output and at least one --input are "
                        "required\n");
        usage(stderr);
        return 2;
    }

    /* Output paths first: a bad one is found before the model runs. */
    if (!cli_output_path("clattn-forward", "--output", output) ||
        (weights_path && !cli_output_path("clattn-forward", "--weights", weights_path)))
        return 2;

    clattn_ctx_params p = clattn_ctx_params_default();
    p.device = device;
    clattn_ctx *ctx = NULL;
    clattn_module *m = NULL;
    clattn_status st = clattn_ctx_create(&p, &ctx);
    if (st != CLATTN_OK) {
        fprintf(stderr, "clattn-forward: %s\n", clattn_last_error());
        return 1;
    }
    if (!quiet) {
        clattn_device_info info;
        clattn_ctx_device_info(ctx, &info);
        fprintf(stderr, "device: %s / %s\n", info.platform_name, info.device_name);
    }
    double t0 = now_ms();
    if ((st = clattn_model_load(ctx, model, &m)) != CLATTN_OK) {
        fprintf(stderr, "clattn-forward: %s\n", clattn_last_error());
        clattn_ctx_destroy(ctx);
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "model: %s (%d parameter tensors) loaded in %.0f ms\n", model,
                clattn_module_param_count(m), now_ms() - t0);

    forward_inputs fi;
    forward_inputs_init(&fi, ctx, m);
    char err[1024];
    bool ok = true;
    for (int i = 0; i < n_inputs && ok; i++) {
        npy_array arr;
        ok = npy_read(inputs[i].path, &arr, err, sizeof err) &&
             forward_inputs_add(&fi, inputs[i].name, &arr, err, sizeof err);
        if (!ok)
            npy_free(&arr);
    }
    for (int i = 0; i < n_flags && ok; i++)
        ok = forward_inputs_flag(&fi, flags[i].name, flag_values[i], err, sizeof err);
    if (ok && weights_path) {
        ok = forward_inputs_flag(&fi, "need_weights", true, err, sizeof err) &&
             forward_inputs_flag(&fi, "average_attn_weights", !per_head, err, sizeof err);
    }
    float *out = NULL, *w = NULL;
    int32_t ond = 0, wnd = 0;
    int64_t oshape[4], wshape[4];
    double t1 = now_ms();
    ok = ok && forward_inputs_run(&fi, m, &out, &ond, oshape, &w, &wnd, wshape, err, sizeof err);
    double t2 = now_ms();
    ok = ok && npy_write_f32(output, ond, oshape, out, err, sizeof err);
    if (ok && weights_path)
        ok = npy_write_f32(weights_path, wnd, wshape, w, err, sizeof err);
    if (ok && !quiet)
        fprintf(stderr, "forward: %.1f ms; wrote %s [%lld, %lld, %lld]%s%s\n", t2 - t1, output,
                (long long)oshape[0], (long long)oshape[1], (long long)oshape[2],
                weights_path ? " and " : "", weights_path ? weights_path : "");
    if (!ok)
        fprintf(stderr, "clattn-forward: %s\n", err);
    free(out);
    free(w);
    forward_inputs_free(&fi);
    clattn_module_destroy(m);
    clattn_ctx_destroy(ctx);
    return ok ? 0 : 1;
}
