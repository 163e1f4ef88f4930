/* test_train.c - training trajectories against PyTorch: for both models of
 * tools/clattn-train, start from the initial weights and feed the batches
 * of a committed PyTorch run (tests/fixtures/make_train_fixtures.py), take
 * 20 Adam steps at the run's learning rate, and compare the loss of every
 * step with PyTorch's (float64) losses.
 *
 * Tolerance: |loss - ref| <= 1e-4 + 1e-3 |ref|. The models' forward and
 * backward are float32 (relative error ~1e-6 per op), but Adam divides by
 * sqrt(v) + 1e-8: gradients near zero make a float32 rounding difference
 * in g turn into up to lr = 1e-3 of difference in a weight, which the
 * later losses see at the 1e-4 level. A wrong gradient of any parameter
 * shows up as a loss difference of 1e-2 or more within a few steps.
 *
 * Also: a checkpoint written mid-run and loaded into a fresh model and
 * optimiser continues the run exactly.
 *
 * Usage: test_train FIXTURE_DIR (tests/fixtures/train) */
#include "train_models.h"
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOSS_ATOL 1e-4
#define LOSS_RTOL 1e-3

static void read_batch(const clattn_weights *w, const train_config *c, int i, float *x,
                       float *y_reg, int64_t *y_cls)
{
    char name[32];
    size_t nx = (size_t)c->batch * c->seq_len * c->in_dim;
    snprintf(name, sizeof name, "x.%d", i);
    CHECK_OK(clattn_weights_read_f32(w, name, x, nx));
    snprintf(name, sizeof name, "y.%d", i);
    CHECK_OK(clattn_weights_read_f32(w, name, y_reg, (size_t)c->batch));
    for (int32_t b = 0; b < c->batch; b++)
        y_cls[b] = (int64_t)y_reg[b];
}

/* Runs steps [first, last) of the fixture's batches; losses into got. */
static void run_steps(train_model *m, clattn_optimizer *opt, const clattn_weights *batches,
                      const train_config *c, int first, int last, double *got)
{
    size_t nx = (size_t)c->batch * c->seq_len * c->in_dim;
    float *x = malloc(nx * sizeof *x), *y = malloc((size_t)c->batch * sizeof *y);
    int64_t *yc = malloc((size_t)c->batch * sizeof *yc);
    for (int i = first; i < last; i++) {
        read_batch(batches, c, i, x, y, yc);
        float loss = NAN;
        CHECK_OK(clattn_optimizer_zero_grad(opt));
        CHECK_OK(train_model_batch(m, x, y, yc, true, &loss, NULL));
        CHECK_OK(clattn_optimizer_step(opt));
        got[i] = loss;
    }
    free(x);
    free(y);
    free(yc);
}

static void trajectory(clattn_ctx *ctx, const char *root, const char *name, train_task task)
{
    char dir[400], path[512];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    snprintf(path, sizeof path, "%s/losses.json", dir);
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    CHECK(j != NULL, "%s: %s", path, jerr.text);
    if (!j)
        return;
    json_t *jl = json_object_get(j, "losses");
    int steps = (int)json_array_size(jl);
    double lr = json_real_value(json_object_get(j, "lr"));
    double *ref = calloc((size_t)steps, sizeof *ref), *got = calloc((size_t)steps, sizeof *got);
    for (int i = 0; i < steps; i++)
        ref[i] = json_real_value(json_array_get(jl, (size_t)i));

    train_config c = train_config_default(task);
    train_model *m = NULL;
    CHECK_OK(train_model_create(ctx, &c, &m));
    const clattn_param_ref *refs;
    int32_t n = train_model_params(m, &refs);
    snprintf(path, sizeof path, "%s/init.safetensors", dir);
    CHECK_OK(clattn_checkpoint_load(path, n, refs, NULL));
    clattn_optimizer_params op = clattn_optimizer_params_default(CLATTN_OPTIM_ADAM);
    op.lr = (float)lr;
    clattn_optimizer *opt = NULL;
    CHECK_OK(clattn_optimizer_create(ctx, &op, n, refs, &opt));
    clattn_weights *batches = NULL;
    snprintf(path, sizeof path, "%s/batches.safetensors", dir);
    CHECK_OK(clattn_weights_open(path, &batches));

    /* Half the run, a checkpoint, the other half. */
    int half = steps / 2;
    char ckpt[] = "/tmp/clattn-test-train-XXXXXX";
    int fd = mkstemp(ckpt);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    run_steps(m, opt, batches, &c, 0, half, got);
    CHECK_OK(clattn_checkpoint_save(ckpt, n, refs, opt));
    run_steps(m, opt, batches, &c, half, steps, got);
    char what[600];
    snprintf(what, sizeof what, "%s: loss of each Adam step", name);
    float *gotf = malloc((size_t)steps * sizeof *gotf);
    for (int i = 0; i < steps; i++)
        gotf[i] = (float)got[i];
    test_close(what, gotf, ref, (size_t)steps, LOSS_ATOL, LOSS_RTOL);
    printf("%s: step 0 loss %.6f (PyTorch %.6f), step %d loss %.6f (PyTorch %.6f)\n", name,
           got[0], ref[0], steps - 1, got[steps - 1], ref[steps - 1]);

    /* Resume from the checkpoint in a fresh model and optimiser: the same
     * second half, to float32 round-off of identical work (bit-exact on
     * one device, but GEMM order may vary with buffer placement). */
    train_model *m2 = NULL;
    clattn_optimizer *opt2 = NULL;
    CHECK_OK(train_model_create(ctx, &c, &m2));
    const clattn_param_ref *refs2;
    train_model_params(m2, &refs2);
    CHECK_OK(clattn_optimizer_create(ctx, &op, n, refs2, &opt2));
    CHECK_OK(clattn_checkpoint_load(ckpt, n, refs2, opt2));
    CHECK(clattn_optimizer_steps(opt2) == half, "resumed step count %lld",
          (long long)clattn_optimizer_steps(opt2));
    double *resumed = calloc((size_t)steps, sizeof *resumed);
    run_steps(m2, opt2, batches, &c, half, steps, resumed);
    for (int i = half; i < steps; i++)
        CHECK(fabs(resumed[i] - got[i]) <= 1e-6 * (1.0 + fabs(got[i])),
              "%s: step %d after resuming: %.9f, uninterrupted %.9f", name, i, resumed[i],
              got[i]);
    unlink(ckpt);
    free(resumed);
    clattn_optimizer_destroy(opt2);
    train_model_destroy(m2);
    free(gotf);
    clattn_weights_close(batches);
    clattn_optimizer_destroy(opt);
    train_model_destroy(m);
    free(ref);
    free(got);
    json_decref(j);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_train FIXTURE_DIR\n");
        return 2;
    }
    clattn_ctx *ctx = test_ctx();
    trajectory(ctx, argv[1], "regression", TRAIN_REGRESSION);
    trajectory(ctx, argv[1], "classifier", TRAIN_CLASSIFIER);
    clattn_ctx_destroy(ctx);
    return test_summary("test_train");
}
