/* clattn-forward - runs one forward pass of a model folder (config.json +
 * model.safetensors) on NumPy .npy inputs and writes the output as .npy:
 * the way to check clattn against PyTorch on a model of your own.
 *
 *   clattn-forward --model DIR --input NAME=FILE.npy ... --output OUT.npy
 *                  [--weights W.npy] [--attention-map MAP.png|MAP.svg]
 *                  [--flag NAME[=true|false]] ... [--per-head-weights] [--device SEL] [-q]
 *
 * Input names are those of the PyTorch module's forward arguments (query,
 * key, value, src, tgt, memory, attn_mask, key_padding_mask, src_mask or
 * mask, tgt_mask, memory_mask, *_key_padding_mask); flags are is_causal,
 * src_is_causal, tgt_is_causal, memory_is_causal. --attention-map draws the
 * attention weights that --weights writes as heatmaps (common/plot/). */
#include <clattn.h>

#include "cli_args.h"
#include "forward_inputs.h"
#include "plot.h"

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
            "  --attention-map FILE  draw those attention weights as heatmaps into FILE.png or\n"
            "                      FILE.svg: one panel per batch entry (and head, with\n"
            "                      --per-head-weights), query positions down, key positions\n"
            "                      across\n"
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

/* The attention weights w ([B, L, S] averaged over heads, or [B, H, L, S]
 * per head) as heatmaps: one panel per batch entry and head, H panels to a
 * row, labelled by position (the inputs are arrays, not tokens). */
static bool draw_attention_map(const char *path, const char *model, const float *w, int32_t wnd,
                               const int64_t *shape, bool per_head, char *err, size_t err_size)
{
    if (!w || (wnd != 3 && wnd != 4)) {
        snprintf(err, err_size, "--attention-map: the model gave no attention weights");
        return false;
    }
    int64_t batch = shape[0], heads = wnd == 4 ? shape[1] : 1;
    int64_t rows = shape[wnd - 2], cols = shape[wnd - 1];
    if (batch * heads > 4096 || rows > 8192 || cols > 8192) {
        snprintf(err, err_size,
                 "--attention-map: %lld panels of %lld x %lld are too many to draw (at most "
                 "4096 panels, 8192 positions)",
                 (long long)(batch * heads), (long long)rows, (long long)cols);
        return false;
    }
    int32_t n = (int32_t)(batch * heads);
    int64_t longest = rows > cols ? rows : cols;
    plot_panel *panels = calloc((size_t)n, sizeof *panels);
    char (*titles)[48] = calloc((size_t)n, sizeof *titles);
    char (*names)[24] = calloc((size_t)longest, sizeof *names);
    const char **labels = calloc((size_t)longest, sizeof *labels);
    bool ok = panels && titles && names && labels;
    if (!ok)
        snprintf(err, err_size, "--attention-map: out of memory");
    for (int64_t i = 0; ok && i < longest; i++) {
        snprintf(names[i], sizeof names[i], "%lld", (long long)i);
        labels[i] = names[i];
    }
    for (int32_t p = 0; ok && p < n; p++) {
        panels[p].values = w + (size_t)p * (size_t)(rows * cols);
        panels[p].rows = (int32_t)rows, panels[p].cols = (int32_t)cols;
        if (wnd == 4)
            snprintf(titles[p], sizeof titles[p], "batch %lld, head %lld",
                     (long long)(p / heads), (long long)(p % heads));
        else
            snprintf(titles[p], sizeof titles[p], "batch %d, mean of heads", (int)p);
        panels[p].title = titles[p];
    }
    if (ok) {
        char title[256];
        snprintf(title, sizeof title, "attention weights of %s%s", model,
                 per_head ? ", per head" : "");
        plot_heatmap_spec spec = {
            .title = title, .row_labels = labels, .col_labels = labels,
            .x_label = "key position", .y_label = "query position",
            .vmin = 0.0f, .vmax = 1.0f, /* weights are probabilities */
            .columns = (int32_t)heads,
        };
        ok = plot_heatmaps(path, panels, n, &spec, err, err_size);
    }
    free(panels), free(titles), free(names), free(labels);
    return ok;
}

typedef struct named_file {
    char name[64];
    const char *path;
} named_file;

int main(int argc, char **argv)
{
    const char *model = NULL, *output = NULL, *weights_path = NULL, *device = NULL;
    const char *map_path = NULL;
    named_file inputs[FORWARD_MAX_INPUTS];
    named_file flags[8];
    bool flag_values[8];
    int n_inputs = 0, n_flags = 0;
    bool quiet = false, per_head = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "--model") == 0 || strcmp(a, "--output") == 0 ||
             strcmp(a, "--weights") == 0 || strcmp(a, "--device") == 0 ||
             strcmp(a, "--attention-map") == 0 ||
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
        } else if (strcmp(a, "--attention-map") == 0) {
            map_path = argv[++i];
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
        (weights_path && !cli_output_path("clattn-forward", "--weights", weights_path)) ||
        (map_path && !cli_output_path("clattn-forward", "--attention-map", map_path)))
        return 2;
    char err[1024];
    plot_format map_format;
    if (map_path && !plot_format_of(map_path, &map_format, err, sizeof err)) {
        fprintf(stderr, "clattn-forward: --attention-map: %s\n", err);
        return 2;
    }

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
    if (ok && (weights_path || map_path)) {
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
    if (ok && map_path)
        ok = draw_attention_map(map_path, model, w, wnd, wshape, per_head, err, sizeof err);
    if (ok && !quiet)
        fprintf(stderr, "forward: %.1f ms; wrote %s [%lld, %lld, %lld]%s%s\n", t2 - t1, output,
                (long long)oshape[0], (long long)oshape[1], (long long)oshape[2],
                weights_path ? " and " : "", weights_path ? weights_path : "");
    if (ok && map_path && !quiet)
        fprintf(stderr, "attention map: %s\n", map_path);
    if (!ok)
        fprintf(stderr, "clattn-forward: %s\n", err);
    free(out);
    free(w);
    forward_inputs_free(&fi);
    clattn_module_destroy(m);
    clattn_ctx_destroy(ctx);
    return ok ? 0 : 1;
}
