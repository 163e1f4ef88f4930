/* clattn-train - trains one of three small attention models on generated
 * data, on any OpenCL device:
 *
 *   clattn-train regression   one attention head regressing a softmax-
 *                             weighted average (MSE, Adam lr 1e-3, input 10,
 *                             hidden 5, batch 32)
 *   clattn-train classifier   a 2-layer transformer encoder finding, among
 *                             9 values, the one nearest a query value
 *                             (cross-entropy; chance accuracy is 11%)
 *   clattn-train lm           a Llama decoder learning multi-digit addition
 *                             as text (train_lm.c; its own options)
 *
 * A progress bar on stderr, a loss line per epoch on stdout (or JSON lines
 * with --json), held-out loss (and accuracy) on batches never trained on,
 * a checkpoint (safetensors, PyTorch state_dict names plus the Adam state)
 * at the end, and --plot FILE.png|FILE.svg with the loss curves (common/plot/). */
#include "cli_args.h"
#include "plot.h"
#include "train_lm.h"
#include "train_models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clattn-train regression|classifier [options]\n"
            "       clattn-train lm [options]   (see clattn-train lm --help)\n"
            "\n"
            "Trains a small attention model on generated data and reports its loss.\n"
            "  --epochs N          epochs (default 10)\n"
            "  --steps N           Adam steps per epoch (default 100)\n"
            "  --batch N           batch size (default 32)\n"
            "  --lr X              learning rate (default 1e-3)\n"
            "  --warmup N          linear warm-up steps, then cosine decay to 0 over\n"
            "                      the run (default 0: constant learning rate)\n"
            "  --clip X            clip the gradients' global norm to X (default off)\n"
            "  --seed N            seed of the data and the initial weights (default 1)\n"
            "  --heldout N         held-out batches evaluated after each epoch (default 20)\n"
            "  --init FILE         start from this checkpoint (safetensors) instead\n"
            "  --checkpoint FILE   write the trained weights and Adam state here\n"
            "                      (default: clattn-train-TASK.safetensors)\n"
            "  --plot FILE         draw the loss curves (log loss against step, with the\n"
            "                      held-out loss per epoch) into FILE.png or FILE.svg\n"
            "  --json              one JSON object per epoch on stdout\n"
            "  --device SEL        device selector (index, platform:device, or name)\n"
            "  -q                  no progress bar\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct options {
    train_task task;
    int64_t epochs, steps, batch, warmup, heldout, seed;
    double lr, clip;
    const char *init, *checkpoint, *plot, *device;
    bool json, quiet;
} options;

/* Limits: every number is range-checked (never clamped). The run's steps,
 * epochs x steps, are kept under MAX_TOTAL_STEPS: one double of loss
 * history each (800 MB at the limit), so the product cannot overflow the
 * allocation (--epochs 2 --steps 2^62 once gave malloc 0 bytes and a heap
 * overflow). */
#define MAX_EPOCHS 1000000
#define MAX_STEPS 1000000000
#define MAX_TOTAL_STEPS 100000000
#define T "clattn-train"

static int parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 10, o->steps = 100, o->batch = 32, o->heldout = 20;
    o->lr = 1e-3, o->seed = 1;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 1;
    }
    if (!strcmp(argv[1], "regression"))
        o->task = TRAIN_REGRESSION;
    else if (!strcmp(argv[1], "classifier"))
        o->task = TRAIN_CLASSIFIER;
    else {
        fprintf(stderr, T ": unknown model '%s' (regression, classifier or lm)\n", argv[1]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true, path = false;
        if (!strcmp(a, "--epochs")) ok = cli_int(T, a, v, 1, MAX_EPOCHS, &o->epochs);
        else if (!strcmp(a, "--steps")) ok = cli_int(T, a, v, 1, MAX_STEPS, &o->steps);
        else if (!strcmp(a, "--batch")) ok = cli_int(T, a, v, 1, 65536, &o->batch);
        else if (!strcmp(a, "--warmup")) ok = cli_int(T, a, v, 0, MAX_TOTAL_STEPS, &o->warmup);
        else if (!strcmp(a, "--heldout")) ok = cli_int(T, a, v, 1, 1000000, &o->heldout);
        else if (!strcmp(a, "--lr")) ok = cli_double(T, a, v, 1e-30, 1e6, &o->lr);
        else if (!strcmp(a, "--clip")) ok = cli_double(T, a, v, 1e-30, 1e30, &o->clip);
        else if (!strcmp(a, "--seed")) ok = cli_int(T, a, v, 0, INT64_MAX, &o->seed);
        else if (!strcmp(a, "--init")) o->init = v, path = true;
        else if (!strcmp(a, "--checkpoint")) o->checkpoint = v, path = true;
        else if (!strcmp(a, "--plot")) o->plot = v, path = true;
        else if (!strcmp(a, "--device")) o->device = v, path = true;
        else if (!strcmp(a, "--json")) o->json = true, takes = false;
        else if (!strcmp(a, "-q")) o->quiet = true, takes = false;
        else {
            fprintf(stderr, T ": unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (path && !v) {
            fprintf(stderr, T ": %s needs a value\n", a);
            return 2;
        }
        if (!ok)
            return 2; /* cli_* said why */
        i += takes;
    }
    if (o->epochs > MAX_TOTAL_STEPS / o->steps) {
        fprintf(stderr,
                T ": --epochs %lld x --steps %lld is over %d steps in all; train in "
                "several runs (--init)\n",
                (long long)o->epochs, (long long)o->steps, MAX_TOTAL_STEPS);
        return 2;
    }
    if (o->warmup > o->epochs * o->steps) {
        fprintf(stderr, T ": --warmup %lld is longer than the run (%lld steps)\n",
                (long long)o->warmup, (long long)(o->epochs * o->steps));
        return 2;
    }
    return 0;
}

/* Mean loss (and accuracy) over the held-out batches. */
static clattn_status evaluate(train_model *m, const train_config *c, float *const *hx,
                              float *const *hy, int64_t *const *hc, long n, double *loss,
                              double *accuracy)
{
    double sum = 0.0;
    long correct = 0;
    for (long i = 0; i < n; i++) {
        float l;
        int32_t ok_rows = 0;
        clattn_status st = train_model_batch(m, hx[i], hy[i], hc[i], false, &l, &ok_rows);
        if (st != CLATTN_OK)
            return st;
        sum += l;
        correct += ok_rows;
    }
    *loss = sum / (double)n;
    *accuracy = (double)correct / ((double)n * c->batch);
    return CLATTN_OK;
}

static int fail(clattn_ctx *ctx, const char *what, clattn_status st)
{
    fprintf(stderr, "\nclattn-train: %s: %s: %s\n", what, clattn_status_str(st),
            ctx ? clattn_ctx_last_error(ctx) : clattn_last_error());
    return 1;
}

/* Everything main allocates, freed in one place on every path. */
typedef struct run {
    clattn_ctx *ctx;
    train_model *m;
    clattn_optimizer *opt;
    float *x, *y, **hx, **hy;
    int64_t *yc, **hc;
    double *step_loss, *held_loss, *held_x;
    int64_t heldout;
} run;

static int finish(run *r, int rc)
{
    for (int64_t i = 0; r->hx && i < r->heldout; i++)
        free(r->hx[i]);
    for (int64_t i = 0; r->hy && i < r->heldout; i++)
        free(r->hy[i]);
    for (int64_t i = 0; r->hc && i < r->heldout; i++)
        free(r->hc[i]);
    free(r->hx), free(r->hy), free(r->hc), free(r->x), free(r->y), free(r->yc);
    free(r->step_loss), free(r->held_loss), free(r->held_x);
    clattn_optimizer_destroy(r->opt);
    train_model_destroy(r->m);
    clattn_ctx_destroy(r->ctx);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "lm"))
        return train_lm_main(argc, argv);
    options o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    const char *task_name = o.task == TRAIN_REGRESSION ? "regression" : "classifier";
    char default_ckpt[64];
    snprintf(default_ckpt, sizeof default_ckpt, "clattn-train-%s.safetensors", task_name);
    if (!o.checkpoint)
        o.checkpoint = default_ckpt;
    /* Every output path is checked before any work: a bad --checkpoint
     * used to be found only after training, throwing the weights away. */
    if (!cli_output_path(T, "--checkpoint", o.checkpoint) ||
        (o.plot && !cli_output_path(T, "--plot", o.plot)))
        return 2;
    plot_format plot_fmt;
    char plot_err[256];
    if (o.plot && !plot_format_of(o.plot, &plot_fmt, plot_err, sizeof plot_err)) {
        fprintf(stderr, T ": --plot: %s\n", plot_err);
        return 2;
    }
    run r;
    memset(&r, 0, sizeof r);

    clattn_ctx_params cp = clattn_ctx_params_default();
    cp.device = o.device;
    clattn_status st = clattn_ctx_create(&cp, &r.ctx);
    clattn_ctx *ctx = r.ctx;
    if (st != CLATTN_OK)
        return finish(&r, fail(NULL, "creating the context", st));
    clattn_device_info dev;
    clattn_ctx_device_info(ctx, &dev);

    train_config c = train_config_default(o.task);
    c.batch = (int32_t)o.batch;
    st = train_model_create(ctx, &c, &r.m);
    train_model *m = r.m;
    if (st != CLATTN_OK)
        return finish(&r, fail(ctx, "building the model", st));
    const clattn_param_ref *refs;
    int32_t n_params = train_model_params(m, &refs);
    st = o.init ? clattn_checkpoint_load(o.init, n_params, refs, NULL)
                : train_model_init(m, (uint64_t)o.seed);
    if (st != CLATTN_OK)
        return finish(&r, fail(ctx, o.init ? o.init : "initialising", st));

    int64_t total = o.epochs * o.steps; /* <= MAX_TOTAL_STEPS (parse) */
    clattn_optimizer_params op = clattn_optimizer_params_default(CLATTN_OPTIM_ADAM);
    op.lr = (float)o.lr;
    op.max_grad_norm = (float)o.clip;
    if (o.warmup > 0) {
        op.warmup_steps = o.warmup;
        op.total_steps = total;
    }
    st = clattn_optimizer_create(ctx, &op, n_params, refs, &r.opt);
    clattn_optimizer *opt = r.opt;
    if (st != CLATTN_OK)
        return finish(&r, fail(ctx, "creating the optimiser", st));

    /* Training batches from the seed's stream, held-out ones from another. */
    size_t nx = (size_t)c.batch * c.seq_len * c.in_dim;
    uint64_t train_state = (uint64_t)o.seed * 2 + 1, held_state = (uint64_t)o.seed * 2 + 0x5eed;
    r.heldout = o.heldout;
    r.x = malloc(nx * sizeof *r.x), r.y = malloc((size_t)c.batch * sizeof *r.y);
    r.yc = malloc((size_t)c.batch * sizeof *r.yc);
    r.hx = calloc((size_t)o.heldout, sizeof *r.hx), r.hy = calloc((size_t)o.heldout, sizeof *r.hy);
    r.hc = calloc((size_t)o.heldout, sizeof *r.hc);
    r.step_loss = malloc((size_t)total * sizeof *r.step_loss);
    r.held_loss = malloc((size_t)o.epochs * sizeof *r.held_loss);
    r.held_x = malloc((size_t)o.epochs * sizeof *r.held_x);
    float *x = r.x, *y = r.y, **hx = r.hx, **hy = r.hy;
    int64_t *yc = r.yc, **hc = r.hc;
    double *step_loss = r.step_loss, *held_loss = r.held_loss;
    if (!x || !y || !yc || !hx || !hy || !hc || !step_loss || !held_loss || !r.held_x) {
        fprintf(stderr, "clattn-train: out of memory\n");
        return finish(&r, 1);
    }
    for (int64_t i = 0; i < o.heldout; i++) {
        hx[i] = malloc(nx * sizeof **hx);
        hy[i] = malloc((size_t)c.batch * sizeof **hy);
        hc[i] = malloc((size_t)c.batch * sizeof **hc);
        if (!hx[i] || !hy[i] || !hc[i]) {
            fprintf(stderr, "clattn-train: out of memory\n");
            return finish(&r, 1);
        }
        train_data_batch(&c, &held_state, hx[i], hy[i], hc[i]);
    }
    if (!o.json)
        printf("clattn-train %s on %s: %d parameter tensors, %ld epochs x %ld steps, batch "
               "%ld, Adam lr %g\n",
               task_name, dev.device_name, n_params, (long)o.epochs, (long)o.steps,
               (long)o.batch, o.lr);

    double t0 = now_s();
    for (long e = 0; e < o.epochs; e++) {
        double te = now_s(), sum = 0.0;
        long correct = 0;
        for (long s = 0; s < o.steps; s++) {
            train_data_batch(&c, &train_state, x, y, yc);
            float loss;
            int32_t ok_rows = 0;
            st = clattn_optimizer_zero_grad(opt);
            if (st == CLATTN_OK)
                st = train_model_batch(m, x, y, yc, true, &loss, &ok_rows);
            if (st == CLATTN_OK)
                st = clattn_optimizer_step(opt);
            if (st != CLATTN_OK)
                return finish(&r, fail(ctx, "training step", st));
            if (!isfinite(loss)) {
                fprintf(stderr, "\nclattn-train: the loss is %f at epoch %ld step %ld; lower "
                        "--lr or set --clip\n", loss, e + 1, s + 1);
                return finish(&r, 1);
            }
            step_loss[e * o.steps + s] = loss;
            sum += loss;
            correct += ok_rows;
            if (!o.quiet)
                cli_progress(e + 1, (long)o.epochs, s + 1, (long)o.steps, loss);
        }
        double hl, hacc;
        st = evaluate(m, &c, hx, hy, hc, o.heldout, &hl, &hacc);
        if (st != CLATTN_OK)
            return finish(&r, fail(ctx, "held-out evaluation", st));
        held_loss[e] = hl;
        double secs = now_s() - te, train_loss = sum / (double)o.steps;
        double train_acc = (double)correct / ((double)o.steps * c.batch);
        if (!o.quiet)
            fprintf(stderr, "\r%*s\r", 78, "");
        if (o.json) {
            /* Numbers that are not finite are written as null (JSON has no NaN). */
            printf("{\"model\": \"%s\", \"epoch\": %ld, \"epochs\": %ld, \"steps\": %ld, "
                   "\"train_loss\": ",
                   task_name, (long)(e + 1), (long)o.epochs, (long)((e + 1) * o.steps));
            cli_json_number(stdout, train_loss, 7);
            printf(", \"heldout_loss\": ");
            cli_json_number(stdout, hl, 7);
            if (o.task == TRAIN_CLASSIFIER)
                printf(", \"train_accuracy\": %.5f, \"heldout_accuracy\": %.5f", train_acc, hacc);
            printf(", \"lr\": ");
            cli_json_number(stdout, clattn_optimizer_lr(opt), 7);
            printf(", \"seconds\": %.3f}\n", secs);
        } else {
            printf("epoch %3ld/%ld  train loss %.6f  held-out loss %.6f", (long)(e + 1),
                   (long)o.epochs,
                   train_loss, hl);
            if (o.task == TRAIN_CLASSIFIER)
                printf("  accuracy train %5.1f%% held-out %5.1f%%", 100.0 * train_acc,
                       100.0 * hacc);
            printf("  (%.2f s)\n", secs);
        }
        fflush(stdout);
    }
    double secs = now_s() - t0;
    st = clattn_checkpoint_save(o.checkpoint, n_params, refs, opt);
    if (st != CLATTN_OK)
        return finish(&r, fail(ctx, o.checkpoint, st));
    if (!o.json)
        printf("%ld steps in %.2f s (%.1f steps/s); checkpoint: %s\n", (long)total, secs,
               (double)total / secs, o.checkpoint);
    if (o.plot) {
        /* Per-step training loss (thin, light) and per-epoch held-out loss
         * (thick, dark, dotted: one point per epoch), against the step, on a
         * log axis: losses fall over orders of magnitude. */
        double *held_x = r.held_x;
        for (long e = 0; e < o.epochs; e++) /* at the end of their epoch */
            held_x[e] = (double)((e + 1) * o.steps);
        const char *loss_name = o.task == TRAIN_REGRESSION ? "loss (MSE, log scale)"
                                                           : "loss (cross-entropy, log scale)";
        plot_series series[2] = {
            {.name = "training loss, every step", .y = step_loss, .n = total,
             .rgb = {120, 160, 230}, .line_width = 1.0},
            {.name = "held-out loss, after each epoch", .x = held_x, .y = held_loss,
             .n = o.epochs, .rgb = {200, 40, 40}, .line_width = 2.0, .markers = true},
        };
        char title[160];
        snprintf(title, sizeof title, "clattn-train %s: %ld epochs x %ld steps, batch %ld, lr %g",
                 task_name, (long)o.epochs, (long)o.steps, (long)o.batch, o.lr);
        plot_line_spec spec = plot_line_spec_default();
        spec.title = title, spec.x_label = "step", spec.y_label = loss_name, spec.log_y = true;
        char err[512];
        if (!plot_lines(o.plot, series, 2, &spec, err, sizeof err)) {
            fprintf(stderr, "clattn-train: --plot: %s\n", err);
            return finish(&r, 1);
        }
        if (!o.json)
            printf("loss curves: %s (%d x %d)\n", o.plot, (int)spec.width, (int)spec.height);
    }
    return finish(&r, 0);
}
