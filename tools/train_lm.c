/* train_lm.c - clattn-train lm: the run. Builds the Llama, trains it
 * with AdamW on batches of addition problems, evaluates after each epoch,
 * and writes the checkpoint, the picture and the exported folder
 * (train_lm_export.c).
 *
 * Each step: zero_grad -> clattn_llama_train_forward (ids [B, T], right
 * padded) -> clattn_causal_lm_loss (labels: the answer and </s>, -100
 * elsewhere) -> clattn_llama_backward -> clattn_optimizer_step.
 *
 * Exit status: 0 done, 1 the work failed (the library's message on
 * stderr), 2 a usage error, including sizes the model cannot have. */
#include "train_lm.h"

#include "cli_args.h"
#include "lm_tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Everything the run allocates, freed in one place on every path. */
typedef struct lm_run {
    clattn_ctx *ctx;
    clattn_llama *m;
    clattn_optimizer *opt;
    clattn_param_ref *refs;
    int32_t n_refs;
    lm_batch batch;
    lm_problem *held;           /* [heldout] */
    lm_problem_set *held_set;
    double *step_loss;          /* [epochs * steps] */
    double *held_loss, *held_acc; /* [epochs] */
} lm_run;

static int finish(lm_run *r, int rc)
{
    lm_batch_free(&r->batch);
    free(r->held), free(r->refs), free(r->step_loss), free(r->held_loss), free(r->held_acc);
    lm_set_destroy(r->held_set);
    clattn_optimizer_destroy(r->opt);
    clattn_llama_destroy(r->m);
    clattn_ctx_destroy(r->ctx);
    return rc;
}

static int fail(clattn_ctx *ctx, const char *what, clattn_status st)
{
    fprintf(stderr, "\n" LM_TOOL ": %s: %s: %s\n", what, clattn_status_str(st),
            ctx ? clattn_ctx_last_error(ctx) : clattn_last_error());
    return 1;
}

/* The device memory training needs, roughly: each parameter four times
 * (value, gradient, AdamW's two moments) and the activations the backward
 * keeps (a generous count per layer, the attention scores, the logits). A
 * run that cannot fit is a usage error, found before allocating. */
static double training_bytes(const clattn_llama_config *c, int64_t B)
{
    double E = c->hidden_size, F = c->intermediate_size, L = c->num_hidden_layers;
    double Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, D = E / Hq;
    double V = c->vocab_size, T = c->max_position_embeddings;
    double params = V * E + E + L * (2 * E + 2 * Hq * D * E + 2 * Hkv * D * E + 3 * F * E);
    double acts = (double)B * T * (L * (12 * E + 4 * F + 2 * Hq * T) + 3 * V);
    return 4.0 * (4 * params + acts);
}

/* The model, its parameters and the optimiser; 0, or the exit status. */
static int build(lm_run *r, const lm_options *o)
{
    clattn_llama_config cfg = lm_options_config(o);
    clattn_device_info dev;
    clattn_ctx_device_info(r->ctx, &dev);
    double need = training_bytes(&cfg, o->batch);
    if (dev.global_mem_bytes > 0 && need > (double)dev.global_mem_bytes) {
        fprintf(stderr, LM_TOOL ": these sizes (--layers, --hidden, --ff, --heads, --batch) "
                "need about %.0f MiB of device memory to train; %s has %.0f MiB\n",
                need / 1048576.0, dev.device_name, (double)dev.global_mem_bytes / 1048576.0);
        return 2;
    }
    clattn_status st = clattn_llama_create(r->ctx, &cfg, (uint64_t)o->seed, &r->m);
    if (st == CLATTN_ERR_INVALID_ARG) { /* sizes the library refuses (tensors over 2^31) */
        fprintf(stderr, LM_TOOL ": the model's sizes: %s\n", clattn_ctx_last_error(r->ctx));
        return 2;
    }
    if (st != CLATTN_OK)
        return fail(r->ctx, "building the model", st);
    r->n_refs = clattn_llama_param_refs(r->m, NULL, 0);
    r->refs = r->n_refs > 0 ? calloc((size_t)r->n_refs, sizeof *r->refs) : NULL;
    if (!r->refs || clattn_llama_param_refs(r->m, r->refs, r->n_refs) != r->n_refs) {
        fprintf(stderr, LM_TOOL ": out of memory for the parameters\n");
        return 1;
    }
    /* Before the optimiser and any training: a checkpoint of other sizes
     * fails here, naming the tensor, and nothing has been spent. */
    if (o->init && (st = clattn_checkpoint_load(o->init, r->n_refs, r->refs, NULL)) != CLATTN_OK)
        return fail(r->ctx, o->init, st);
    clattn_optimizer_params op = clattn_optimizer_params_default(CLATTN_OPTIM_ADAMW);
    op.lr = (float)o->lr, op.min_lr = (float)o->min_lr;
    op.weight_decay = (float)o->weight_decay;
    op.max_grad_norm = (float)o->clip;
    op.warmup_steps = o->warmup;
    op.total_steps = o->epochs * o->steps; /* cosine decay over the whole run */
    st = clattn_optimizer_create(r->ctx, &op, r->n_refs, r->refs, &r->opt);
    return st == CLATTN_OK ? 0 : fail(r->ctx, "creating the optimiser", st);
}

/* One training step on a fresh batch of problems from *state; the loss. */
static clattn_status train_step(lm_run *r, uint64_t *state, float *loss)
{
    lm_batch *b = &r->batch;
    for (int32_t row = 0; row < b->B; row++)
        lm_row(lm_draw_train(b->digits, state, r->held_set), b->T, b->ids + (size_t)row * b->T,
               b->labels + (size_t)row * b->T);
    clattn_status st = clattn_optimizer_zero_grad(r->opt);
    if (st == CLATTN_OK)
        st = clattn_llama_train_forward(r->m, b->ids, b->B, b->T, b->logits);
    /* dlogits in place of the logits: they are not needed after the loss. */
    if (st == CLATTN_OK)
        st = clattn_causal_lm_loss(r->ctx, b->logits, b->labels, LM_IGNORE, loss, b->logits);
    if (st == CLATTN_OK)
        st = clattn_llama_backward(r->m, b->logits);
    if (st == CLATTN_OK)
        st = clattn_optimizer_step(r->opt);
    return st;
}

static void report(const lm_options *o, long e, double train_loss, double hl, double acc,
                   float lr, double secs)
{
    if (o->json) {
        /* Numbers that are not finite are written as null (JSON has no NaN). */
        printf("{\"model\": \"lm\", \"epoch\": %ld, \"epochs\": %lld, \"steps\": %lld, "
               "\"train_loss\": ", e + 1, (long long)o->epochs, (long long)((e + 1) * o->steps));
        cli_json_number(stdout, train_loss, 7);
        printf(", \"heldout_loss\": ");
        cli_json_number(stdout, hl, 7);
        printf(", \"heldout_accuracy\": ");
        cli_json_number(stdout, acc, 7);
        printf(", \"lr\": ");
        cli_json_number(stdout, lr, 7);
        printf(", \"seconds\": %.3f}\n", secs);
    } else {
        printf("epoch %3ld/%lld  train loss %.6f  held-out loss %.6f  exact match %5.1f%%  "
               "(%.2f s)\n", e + 1, (long long)o->epochs, train_loss, hl, 100.0 * acc, secs);
    }
    fflush(stdout);
}

/* --write-heldout: "a+b=sum" lines; 0 or 1. */
static int write_heldout(const lm_options *o, const lm_problem *p, int64_t n)
{
    FILE *f = fopen(o->heldout_file, "w");
    bool ok = f != NULL;
    for (int64_t i = 0; ok && i < n; i++) {
        char text[3 * LM_MAX_DIGITS + 8];
        int32_t len = lm_prompt_text(p[i], text);
        lm_answer_text(p[i], text + len);
        ok = fprintf(f, "%s\n", text) > 0;
    }
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, LM_TOOL ": --write-heldout: %s: %s\n", o->heldout_file, strerror(errno));
    return ok ? 0 : 1;
}

int train_lm_main(int argc, char **argv)
{
    lm_options o;
    int rc = lm_options_parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    lm_run r;
    memset(&r, 0, sizeof r);
    clattn_ctx_params cp = clattn_ctx_params_default();
    cp.device = o.device;
    clattn_status st = clattn_ctx_create(&cp, &r.ctx);
    if (st != CLATTN_OK)
        return finish(&r, fail(NULL, "creating the context", st));
    if ((rc = build(&r, &o)) != 0)
        return finish(&r, rc);

    /* Held-out problems from a stream of their own; training skips them. */
    uint64_t held_state = (uint64_t)o.seed * 2 + 0x5eed, train_state = (uint64_t)o.seed * 2 + 1;
    int64_t total = o.epochs * o.steps; /* <= 10^8 (lm_options_parse) */
    r.held = malloc((size_t)o.heldout * sizeof *r.held);
    r.step_loss = malloc((size_t)total * sizeof *r.step_loss);
    r.held_loss = malloc((size_t)o.epochs * sizeof *r.held_loss);
    r.held_acc = malloc((size_t)o.epochs * sizeof *r.held_acc);
    if (!r.held || !r.step_loss || !r.held_loss || !r.held_acc ||
        !(r.held_set = lm_heldout_draw((int32_t)o.digits, &held_state, o.heldout, r.held))) {
        fprintf(stderr, LM_TOOL ": out of memory\n");
        return finish(&r, 1);
    }
    if (o.heldout_file && write_heldout(&o, r.held, o.heldout) != 0)
        return finish(&r, 1);
    if ((st = lm_batch_init(&r.batch, r.ctx, (int32_t)o.batch, (int32_t)o.digits)) != CLATTN_OK)
        return finish(&r, fail(r.ctx, "allocating the batch", st));

    if (!o.json) {
        clattn_device_info dev;
        clattn_ctx_device_info(r.ctx, &dev);
        int64_t n_values = 0;
        for (int32_t i = 0; i < r.n_refs; i++)
            n_values += (int64_t)clattn_tensor_numel(r.refs[i].value);
        printf("clattn-train lm on %s: %lld-digit addition; Llama %lld layers, hidden %lld, "
               "%lld heads (%lld kv), ff %lld, %lld parameters; %lld epochs x %lld steps, "
               "batch %lld, AdamW lr %g\n",
               dev.device_name, (long long)o.digits, (long long)o.layers, (long long)o.hidden,
               (long long)o.heads, (long long)o.kv_heads, (long long)o.ff, (long long)n_values,
               (long long)o.epochs, (long long)o.steps, (long long)o.batch, o.lr);
        fflush(stdout);
    }
    double t0 = now_s();
    for (long e = 0; e < o.epochs; e++) {
        double te = now_s(), sum = 0.0;
        for (long s = 0; s < o.steps; s++) {
            float loss = 0;
            if ((st = train_step(&r, &train_state, &loss)) != CLATTN_OK)
                return finish(&r, fail(r.ctx, "training step", st));
            if (!isfinite(loss)) {
                fprintf(stderr, "\n" LM_TOOL ": the loss is %f at epoch %ld step %ld; lower --lr "
                        "or set --clip\n", loss, e + 1, s + 1);
                return finish(&r, 1);
            }
            r.step_loss[e * o.steps + s] = loss;
            sum += loss;
            if (!o.quiet)
                cli_progress(e + 1, (long)o.epochs, s + 1, (long)o.steps, loss);
        }
        double hl = 0, acc = 0;
        if ((st = lm_evaluate(r.m, &r.batch, r.held, o.heldout, &hl, &acc)) != CLATTN_OK)
            return finish(&r, fail(r.ctx, "held-out evaluation", st));
        r.held_loss[e] = hl, r.held_acc[e] = acc;
        if (!o.quiet)
            fprintf(stderr, "\r%*s\r", 78, "");
        report(&o, e, sum / (double)o.steps, hl, acc, clattn_optimizer_lr(r.opt), now_s() - te);
    }
    double secs = now_s() - t0;
    if ((st = clattn_checkpoint_save(o.checkpoint, r.n_refs, r.refs, r.opt)) != CLATTN_OK)
        return finish(&r, fail(r.ctx, o.checkpoint, st));
    if (!o.json)
        printf("%lld steps in %.2f s (%.1f steps/s); held-out exact match %.1f%%; checkpoint: "
               "%s\n", (long long)total, secs, (double)total / secs,
               100.0 * r.held_acc[o.epochs - 1], o.checkpoint);
    lm_history h = {r.step_loss, r.held_loss, r.held_acc, o.epochs, o.steps};
    if (o.plot && !lm_plot(&o, &h))
        return finish(&r, 1);
    if (o.export_dir && (rc = lm_export(&o, r.m)) != 0)
        return finish(&r, rc);
    return finish(&r, 0);
}
