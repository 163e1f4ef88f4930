/* clattn-bench - performance of clattn's kernels, as ratios measured in one
 * run on one device plus absolute figures.
 *
 *   clattn-bench attention [--b B --hq H --hkv H --n N --m M --d D --dv DV
 *                           --causal --window L,R --no-unfused] [--json]
 *   clattn-bench train [--b B --hq H --hkv H --n N --m M --d D --dv DV
 *                       --causal --window L,R] [--json]
 *                       (attention forward + backward; default (B*H, N, D)
 *                       = (8, 2048, 64) without and with the causal mask)
 *   clattn-bench gemm [--n N ...] [--no-tuning] [--json]
 *   clattn-bench embed [--model DIR] [--b BATCH] [--json]
 *   clattn-bench generate --model DIR [--prompt N] [--gen N] [--batch 1,8]
 *                         [--cache-type f32|f16] [--no-attention] [--json]
 *
 * Without shape options each runs its default sweep. --device SEL picks the
 * device, --reps R the timed repetitions (default: enough for ~0.5 s, at
 * least 3); times are the best of those repetitions. */
#define _DEFAULT_SOURCE /* readlink */
#include <clattn.h>

#include "bench_dispatch.h"
#include "bench_generate.h"
#include "cli_args.h"
#include "bench_train.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct options {
    const char *device, *model;
    bool json, no_unfused, no_tuning, causal, shape_given, norm_first;
    int reps;
    int b, hq, hkv, n, m, d, dv, wl, wr;
    int d_model, nhead, ff; /* layer */
    int calls;              /* dispatch */
    bench_generate_options gen; /* generate */
} options;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Peak resident memory of this process so far, in MiB. On CPU devices the
 * device buffers live in it too. */
static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static void die(const char *what, clattn_status st)
{
    fprintf(stderr, "clattn-bench: %s: %s: %s\n", what, clattn_status_str(st),
            clattn_last_error());
    exit(1);
}

static clattn_tensor *tensor(clattn_ctx *ctx, int ndim, int64_t a, int64_t b, int64_t c,
                             int64_t d, bool random)
{
    int64_t shape[4] = {a, b, c, d};
    clattn_tensor *t;
    clattn_status st = clattn_tensor_create(ctx, ndim, shape, &t);
    if (st != CLATTN_OK)
        die("tensor", st);
    if (random) {
        size_t n = clattn_tensor_numel(t);
        float *x = malloc(n * sizeof *x);
        uint64_t s = 88172645463325252ull ^ n;
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        }
        if ((st = clattn_tensor_write(t, x)) != CLATTN_OK)
            die("write", st);
        free(x);
    } else if ((st = clattn_tensor_fill(t, 0.0f)) != CLATTN_OK) {
        die("fill", st);
    }
    return t;
}

/* Runs fn once to warm up (compiles, allocates scratch), then times it
 * the given repetitions, or as many as fit in about half a second (at
 * least 3), and returns the fastest single run. The best, not the mean:
 * this machine type's speed swings by 20-40% within minutes (other
 * tenants of the host), which only ever adds time, and the peers in
 * tools/bench-peers.py are timed the same way. */
typedef clattn_status (*bench_fn)(void *arg);
static double time_it(clattn_ctx *ctx, bench_fn fn, void *arg, int reps)
{
    clattn_status st = fn(arg);
    if (st == CLATTN_OK)
        st = clattn_ctx_finish(ctx);
    if (st != CLATTN_OK)
        die("warm-up", st);
    double t0 = now_s(), best = INFINITY;
    int done = 0;
    do {
        double t1 = now_s();
        if ((st = fn(arg)) != CLATTN_OK)
            die("run", st);
        if ((st = clattn_ctx_finish(ctx)) != CLATTN_OK)
            die("finish", st);
        best = fmin(best, now_s() - t1);
        done++;
    } while (reps > 0 ? done < reps : ((now_s() - t0 < 0.5 || done < 3) && done < 1000));
    return best;
}

/* ---- attention ------------------------------------------------------------ */

typedef struct attn_case {
    clattn_ctx *ctx;
    clattn_tensor *q, *k, *v, *out;
    clattn_sdpa_params p;
} attn_case;

static clattn_status run_sdpa(void *arg)
{
    attn_case *c = arg;
    return clattn_sdpa(c->ctx, c->q, c->k, c->v, c->out, &c->p);
}

typedef struct gemm_case {
    clattn_ctx *ctx;
    clattn_tensor *a, *b, *c;
} gemm_case;

static clattn_status run_gemm(void *arg)
{
    gemm_case *g = arg;
    return clattn_matmul(g->ctx, g->a, false, g->b, false, 1.0f, 0.0f, g->c);
}

/* SGEMM GFLOP/s for square n on this device (the reference point). */
static double sgemm_gflops(clattn_ctx *ctx, int n, int reps)
{
    gemm_case g = {ctx, tensor(ctx, 2, n, n, 1, 1, true), tensor(ctx, 2, n, n, 1, 1, true),
                   tensor(ctx, 2, n, n, 1, 1, false)};
    double t = time_it(ctx, run_gemm, &g, reps);
    clattn_tensor_destroy(g.a);
    clattn_tensor_destroy(g.b);
    clattn_tensor_destroy(g.c);
    return 2.0 * n * (double)n * n / t * 1e-9;
}

/* A second context on the same device whose GEMM backend is CLBlast: the
 * reference the ratios name, also where the main context runs
 * clattn's own CPU GEMM. */
static clattn_ctx *clblast_ctx(const options *o)
{
    clattn_ctx_params p = clattn_ctx_params_default();
    p.device = o->device;
    p.gemm_tuning = !o->no_tuning;
    p.gemm_kernel = "clblast";
    clattn_ctx *ctx;
    clattn_status st = clattn_ctx_create(&p, &ctx);
    if (st != CLATTN_OK)
        die("CLBlast reference context", st);
    return ctx;
}

/* Number of (query, key) pairs the window lets through: the FLOP count
 * covers only visible pairs. */
static double visible_pairs(int n, int m, int wl, int wr)
{
    double total = 0;
    for (long i = 0; i < n; i++) {
        long lo = wl < 0 ? 0 : i + m - n - wl, hi = wr < 0 ? m - 1 : i + m - n + wr;
        lo = lo < 0 ? 0 : lo;
        hi = hi > m - 1 ? m - 1 : hi;
        if (hi >= lo)
            total += (double)(hi - lo + 1);
    }
    return total;
}

static bool first_row = true;

static void attention_case(clattn_ctx *ctx, const options *o, int b, int hq, int hkv, int n,
                           int m, int d, int dv, bool causal, int wl, int wr, double sgemm)
{
    attn_case c = {ctx, tensor(ctx, 4, b, hq, n, d, true), tensor(ctx, 4, b, hkv, m, d, true),
                   tensor(ctx, 4, b, hkv, m, dv, true), tensor(ctx, 4, b, hq, n, dv, false),
                   clattn_sdpa_params_default()};
    c.p.causal = causal;
    c.p.window_left = wl;
    c.p.window_right = wr;
    c.p.impl = CLATTN_SDPA_FUSED;
    int wr_eff = causal ? 0 : wr;
    double flops = 2.0 * (d + dv) * visible_pairs(n, m, wl, wr_eff) * b * hq;
    double t_fused = time_it(ctx, run_sdpa, &c, o->reps);
    double rss = peak_rss_mib();
    double t_unfused = NAN;
    /* The unfused path needs B*Hq*N*M floats of scores; skip it past 1 GiB. */
    if (!o->no_unfused && (double)b * hq * n * m * 4 <= 1073741824.0) {
        c.p.impl = CLATTN_SDPA_UNFUSED;
        t_unfused = time_it(ctx, run_sdpa, &c, o->reps);
    }
    double gf = flops / t_fused * 1e-9;
    char mask[32];
    if (causal)
        snprintf(mask, sizeof mask, wl >= 0 ? "causal,L=%d" : "causal", wl);
    else if (wl >= 0 || wr >= 0)
        snprintf(mask, sizeof mask, "window(%d,%d)", wl, wr);
    else
        snprintf(mask, sizeof mask, "none");
    if (o->json) {
        char unf_ms[32] = "null", speedup[32] = "null"; /* not run: JSON null */
        if (!isnan(t_unfused)) {
            snprintf(unf_ms, sizeof unf_ms, "%.3f", t_unfused * 1e3);
            snprintf(speedup, sizeof speedup, "%.2f", t_unfused / t_fused);
        }
        printf("%s{\"b\": %d, \"hq\": %d, \"hkv\": %d, \"n\": %d, \"m\": %d, \"d\": %d, "
               "\"dv\": %d, \"mask\": \"%s\", \"fused_ms\": %.3f, \"gflops\": %.2f, "
               "\"unfused_ms\": %s, \"fused_speedup\": %s, \"sgemm_gflops\": %.2f, "
               "\"vs_sgemm\": %.3f, \"peak_rss_mib\": %.1f}",
               first_row ? "" : ",\n  ", b, hq, hkv, n, m, d, dv, mask, t_fused * 1e3, gf,
               unf_ms, speedup, sgemm, gf / sgemm, rss);
    } else {
        char unf[48] = "       -        -";
        if (!isnan(t_unfused))
            snprintf(unf, sizeof unf, "%8.2f %7.2fx", t_unfused * 1e3, t_unfused / t_fused);
        printf("%3d %3d %3d %6d %6d %4d %4d %-14s %9.2f %8.1f %s %7.2f %8.0f\n", b, hq, hkv, n,
               m, d, dv, mask, t_fused * 1e3, gf, unf, gf / sgemm, rss);
    }
    first_row = false;
    clattn_tensor_destroy(c.q);
    clattn_tensor_destroy(c.k);
    clattn_tensor_destroy(c.v);
    clattn_tensor_destroy(c.out);
}

static void bench_attention(clattn_ctx *ctx, const options *o)
{
    int sgemm_n = 2048;
    clattn_ctx *cb_ctx = clblast_ctx(o);
    double sgemm = sgemm_gflops(cb_ctx, sgemm_n, o->reps);
    clattn_ctx_destroy(cb_ctx);
    double own = sgemm_gflops(ctx, sgemm_n, o->reps);
    clattn_device_info info;
    clattn_ctx_device_info(ctx, &info);
    if (o->json) {
        printf("{\"device\": \"%s\", \"platform\": \"%s\", \"sgemm_n\": %d, \"sgemm_gflops\": %.2f,\n"
               " \"clattn_gemm_gflops\": %.2f, \"cases\": [\n  ",
               info.device_name, info.platform_name, sgemm_n, sgemm, own);
    } else {
        printf("device: %s / %s\n", info.platform_name, info.device_name);
        printf("CLBlast SGEMM n=%d: %.1f GFLOP/s (the vs-sgemm reference); clattn's GEMM: %.1f\n",
               sgemm_n, sgemm, own);
        printf("times: the best of the timed runs (%s)\n",
               o->reps > 0 ? "--reps" : "as many as fit in 0.5 s, at least 3");
        printf("  B  Hq Hkv      N      M    D   Dv mask            fused ms   GFLOP/s "
               "unfused ms speedup vs-sgemm peak-MiB\n");
    }
    if (o->shape_given) {
        attention_case(ctx, o, o->b, o->hq, o->hkv, o->n, o->m, o->d, o->dv, o->causal, o->wl,
                       o->wr, sgemm);
    } else {
        /* The reference points: (B*H, N, D) = (8, 2048, 64), causal
         * at 4096, GQA, a sliding window, a long single head, large D. */
        attention_case(ctx, o, 1, 8, 8, 2048, 2048, 64, 64, false, -1, -1, sgemm);
        attention_case(ctx, o, 1, 8, 8, 2048, 2048, 64, 64, true, -1, -1, sgemm);
        attention_case(ctx, o, 1, 1, 1, 4096, 4096, 64, 64, false, -1, -1, sgemm);
        attention_case(ctx, o, 1, 1, 1, 4096, 4096, 64, 64, true, -1, -1, sgemm);
        attention_case(ctx, o, 2, 8, 2, 1024, 1024, 128, 128, false, -1, -1, sgemm);
        attention_case(ctx, o, 1, 4, 4, 4096, 4096, 64, 64, true, 256, 0, sgemm);
        attention_case(ctx, o, 4, 4, 4, 512, 512, 32, 32, false, -1, -1, sgemm);
        attention_case(ctx, o, 1, 2, 2, 1024, 1024, 256, 256, false, -1, -1, sgemm);
    }
    if (o->json)
        printf("\n ]}\n");
}

static double once(clattn_ctx *ctx, bench_fn fn, void *arg);

/* ---- train: attention forward + backward ---------------------------------------- */

typedef struct train_case {
    clattn_ctx *ctx;
    clattn_tensor *q, *k, *v, *out, *lse, *dout;
    clattn_sdpa_grads g;
    clattn_sdpa_params p;
} train_case;

static clattn_status run_train_forward(void *arg)
{
    train_case *c = arg;
    return clattn_sdpa(c->ctx, c->q, c->k, c->v, c->out, &c->p);
}

static clattn_status run_train_backward(void *arg)
{
    train_case *c = arg;
    return clattn_sdpa_backward(c->ctx, c->q, c->k, c->v, c->out, c->lse, c->dout, &c->p, &c->g);
}

/* Forward (with lse) and backward (dq, dk, dv) of fused attention.
 * FLOPs as FlashAttention counts them: forward 2 (D + Dv) per visible
 * (query, key) pair (4 N M D without masks), backward 2.5 times that
 * (five N x M products to the forward's two; the recomputation of S and
 * dP for dQ is not counted). */
static void train_case_run(clattn_ctx *ctx, const options *o, int b, int hq, int hkv, int n,
                           int m, int d, int dv, bool causal, int wl, int wr, bool *first)
{
    train_case c = {ctx, tensor(ctx, 4, b, hq, n, d, true), tensor(ctx, 4, b, hkv, m, d, true),
                    tensor(ctx, 4, b, hkv, m, dv, true), tensor(ctx, 4, b, hq, n, dv, false),
                    tensor(ctx, 3, b, hq, n, 1, false), tensor(ctx, 4, b, hq, n, dv, true),
                    {NULL, NULL, NULL, NULL}, clattn_sdpa_params_default()};
    c.g.dq = tensor(ctx, 4, b, hq, n, d, false);
    c.g.dk = tensor(ctx, 4, b, hkv, m, d, false);
    c.g.dv = tensor(ctx, 4, b, hkv, m, dv, false);
    c.p.causal = causal;
    c.p.window_left = wl;
    c.p.window_right = wr;
    c.p.impl = CLATTN_SDPA_FUSED;
    c.p.lse = c.lse;
    int reps = o->reps > 0 ? o->reps : 5;
    /* Interleave forward and backward runs so that load from other
     * processes hits both alike; keep the best of each. */
    time_it(ctx, run_train_forward, &c, 1);
    time_it(ctx, run_train_backward, &c, 1);
    double t_fwd = 1e30, t_bwd = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = once(ctx, run_train_forward, &c);
        t_fwd = t < t_fwd ? t : t_fwd;
        t = once(ctx, run_train_backward, &c);
        t_bwd = t < t_bwd ? t : t_bwd;
    }
    double rss = peak_rss_mib();
    int wr_eff = causal ? 0 : wr;
    double fwd_flops = 2.0 * (d + dv) * visible_pairs(n, m, wl, wr_eff) * b * hq;
    double gf_fwd = fwd_flops / t_fwd * 1e-9, gf_bwd = 2.5 * fwd_flops / t_bwd * 1e-9;
    char mask[32];
    if (causal)
        snprintf(mask, sizeof mask, wl >= 0 ? "causal,L=%d" : "causal", wl);
    else if (wl >= 0 || wr >= 0)
        snprintf(mask, sizeof mask, "window(%d,%d)", wl, wr);
    else
        snprintf(mask, sizeof mask, "none");
    if (o->json)
        printf("%s{\"b\": %d, \"hq\": %d, \"hkv\": %d, \"n\": %d, \"m\": %d, \"d\": %d, "
               "\"dv\": %d, \"mask\": \"%s\", \"forward_ms\": %.3f, \"backward_ms\": %.3f, "
               "\"forward_gflops\": %.2f, \"backward_gflops\": %.2f, \"ratio\": %.3f, "
               "\"reps\": %d, \"peak_rss_mib\": %.1f}",
               *first ? "" : ",\n  ", b, hq, hkv, n, m, d, dv, mask, t_fwd * 1e3, t_bwd * 1e3,
               gf_fwd, gf_bwd, gf_bwd / gf_fwd, reps, rss);
    else
        printf("%3d %3d %3d %6d %6d %4d %4d %-14s %9.2f %9.2f %8.1f %8.1f %6.3f %8.0f\n", b, hq,
               hkv, n, m, d, dv, mask, t_fwd * 1e3, t_bwd * 1e3, gf_fwd, gf_bwd, gf_bwd / gf_fwd,
               rss);
    *first = false;
    clattn_tensor *all[9] = {c.q, c.k, c.v, c.out, c.lse, c.dout, c.g.dq, c.g.dk, c.g.dv};
    for (int i = 0; i < 9; i++)
        clattn_tensor_destroy(all[i]);
}

/* One training step of a Llama decoder at the size (hidden 256,
 * 4 layers of 4 heads, ff 1024, a 256-token vocabulary, B 16, T 256);
 * tools/bench-peers.py train times transformers' LlamaForCausalLM on the
 * same. Closes the JSON object bench_train opened. */
static void bench_train_lm(clattn_ctx *ctx, const options *o, int reps)
{
    clattn_llama_config c = clattn_llama_config_default();
    c.vocab_size = 256, c.hidden_size = 256, c.intermediate_size = 1024;
    c.num_hidden_layers = 4, c.num_attention_heads = 4, c.num_key_value_heads = 4;
    c.max_position_embeddings = 256, c.tie_word_embeddings = false;
    int32_t B = 16, T = 256;
    double ms;
    clattn_status st = bench_train_lm_step(ctx, &c, B, T, reps, &ms);
    if (st != CLATTN_OK)
        die("LM training step", st);
    if (o->json)
        printf("\n ],\n \"lm_steps\": [\n  {\"name\": \"lm\", \"batch\": %d, \"seq\": %d, "
               "\"hidden\": %d, \"layers\": %d, \"heads\": %d, \"ff\": %d, \"vocab\": %d, "
               "\"ms\": %.3f, \"reps\": %d}\n ]}\n",
               B, T, c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
               c.intermediate_size, c.vocab_size, ms, reps);
    else
        printf("\ntraining step of a Llama decoder (zero_grad, forward, causal LM loss, "
               "backward, AdamW), best of %d:\nB %d, T %d, hidden %d, %d layers, %d heads, "
               "ff %d, vocab %d: %.2f ms/step\n",
               reps, B, T, c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
               c.intermediate_size, c.vocab_size, ms);
}

static void bench_train(clattn_ctx *ctx, const options *o)
{
    clattn_device_info info;
    clattn_ctx_device_info(ctx, &info);
    int reps = o->reps > 0 ? o->reps : 5;
    if (o->json) {
        printf("{\"device\": \"%s\", \"platform\": \"%s\", \"cases\": [\n  ",
               info.device_name, info.platform_name);
    } else {
        printf("device: %s / %s\n", info.platform_name, info.device_name);
        printf("forward (with lse) and backward (dq, dk, dv); best of %d runs each, "
               "interleaved;\nGFLOP/s: forward 4NMD per head (visible pairs), backward 2.5x "
               "that; ratio = backward / forward GFLOP/s\n",
               reps);
        printf("  B  Hq Hkv      N      M    D   Dv mask              fwd ms    bwd ms  fwd GF/s "
               " bwd GF/s  ratio peak-MiB\n");
    }
    bool first = true;
    if (o->shape_given) {
        train_case_run(ctx, o, o->b, o->hq, o->hkv, o->n, o->m, o->d, o->dv, o->causal, o->wl,
                       o->wr, &first);
    } else {
        /* (B*H, N, D) = (8, 2048, 64), without and with the causal mask. */
        train_case_run(ctx, o, 1, 8, 8, 2048, 2048, 64, 64, false, -1, -1, &first);
        train_case_run(ctx, o, 1, 8, 8, 2048, 2048, 64, 64, true, -1, -1, &first);
    }
    /* One whole training step of clattn-train's encoder classifier: the
     * tutorial size, and a larger one where the GEMMs and attention
     * dominate rather than launch overheads. tools/bench-peers.py train
     * times the same steps in PyTorch. */
    train_config steps[2] = {train_config_default(TRAIN_CLASSIFIER),
                             train_config_default(TRAIN_CLASSIFIER)};
    const char *names[2] = {"classifier", "classifier-large"};
    steps[1].seq_len = 128, steps[1].d_model = 128, steps[1].dim_ff = 512;
    printf(o->json ? "\n ],\n \"train_steps\": [\n  "
                   : "\ntraining step of the encoder classifier (zero_grad, forward, loss, "
                     "backward, Adam), best of %d:\nstep                B    N    d heads   ff "
                     "layers   ms/step\n",
           reps);
    for (int i = 0; i < 2; i++) {
        const train_config *c = &steps[i];
        double ms;
        clattn_status st = bench_train_step(ctx, c, reps, &ms);
        if (st != CLATTN_OK)
            die("training step", st);
        if (o->json)
            printf("%s{\"name\": \"%s\", \"batch\": %d, \"seq\": %d, \"d_model\": %d, "
                   "\"nhead\": %d, \"dim_ff\": %d, \"layers\": %d, \"ms\": %.3f, "
                   "\"reps\": %d}",
                   i ? ",\n  " : "", names[i], c->batch, c->seq_len, c->d_model, c->nhead,
                   c->dim_ff, c->num_layers, ms, reps);
        else
            printf("%-18s %3d %4d %4d %5d %4d %6d %9.2f\n", names[i], c->batch, c->seq_len,
                   c->d_model, c->nhead, c->dim_ff, c->num_layers, ms);
    }
    bench_train_lm(ctx, o, reps);
}

/* ---- gemm ------------------------------------------------------------------ */

static void bench_gemm(clattn_ctx *ctx, const options *o)
{
    static const int sizes[] = {128, 256, 512, 1024, 2048};
    clattn_device_info info;
    clattn_ctx_device_info(ctx, &info);
    if (o->json)
        printf("{\"device\": \"%s\", \"tuning\": %s, \"cases\": [", info.device_name,
               o->no_tuning ? "false" : "true");
    else
        printf("device: %s / %s, CLBlast parameters: %s\n"
               "GFLOP/s of clattn_matmul (the context's GEMM: $CLATTN_GEMM_KERNEL or the\n"
               "device's default) and of CLBlast on the same device, one run, best of the\n"
               "timed runs of each\n"
               "     n   clattn  CLBlast    ratio\n",
               info.platform_name, info.device_name,
               o->no_tuning ? "CLBlast's own" : "clattn's tuned (CPU)");
    int count = o->shape_given ? 1 : (int)(sizeof sizes / sizeof *sizes);
    clattn_ctx *cb_ctx = clblast_ctx(o);
    for (int i = 0; i < count; i++) {
        int n = o->shape_given ? o->n : sizes[i];
        double gf = sgemm_gflops(ctx, n, o->reps);
        double cb = sgemm_gflops(cb_ctx, n, o->reps);
        if (o->json)
            printf("%s{\"n\": %d, \"gflops\": %.2f, \"clblast_gflops\": %.2f}", i ? ", " : "",
                   n, gf, cb);
        else
            printf("%6d %8.1f %8.1f %8.2f\n", n, gf, cb, gf / cb);
    }
    clattn_ctx_destroy(cb_ctx);
    if (o->json)
        printf("]}\n");
}

/* ---- layer -------------------------------------------------------------------- */

typedef struct layer_case {
    clattn_module *m;
    clattn_forward_args a;
    clattn_tensor *out;
} layer_case;

static clattn_status run_layer(void *arg)
{
    layer_case *l = arg;
    return clattn_module_forward(l->m, &l->a, l->out);
}

typedef struct linear_case {
    clattn_ctx *ctx;
    clattn_tensor *x, *w, *y;
} linear_case;

static clattn_status run_linear_gemm(void *arg)
{
    linear_case *g = arg;
    return clattn_matmul(g->ctx, g->x, false, g->w, true, 1.0f, 0.0f, g->y);
}

/* One [rows, in] x [out, in]^T product, as the layer's Linear layers
 * issue it. */
static linear_case linear_make(clattn_ctx *ctx, int64_t rows, int64_t in, int64_t out)
{
    linear_case g = {ctx, tensor(ctx, 2, rows, in, 1, 1, true),
                     tensor(ctx, 2, out, in, 1, 1, true), tensor(ctx, 2, rows, out, 1, 1, false)};
    return g;
}

static void linear_free(linear_case *g)
{
    clattn_tensor_destroy(g->x);
    clattn_tensor_destroy(g->w);
    clattn_tensor_destroy(g->y);
}

/* Seconds for one call of fn (after the warm-up done by the caller). */
static double once(clattn_ctx *ctx, bench_fn fn, void *arg)
{
    double t0 = now_s();
    clattn_status st = fn(arg);
    if (st == CLATTN_OK)
        st = clattn_ctx_finish(ctx);
    if (st != CLATTN_OK)
        die("run", st);
    return now_s() - t0;
}

/* One TransformerEncoderLayer forward, and the share of its time outside
 * the four GEMMs (packed QKV, output projection, two feed-forward), which
 * are timed alone at the same shapes. */
static void bench_layer(clattn_ctx *ctx, const options *o)
{
    int b = o->shape_given ? o->b : 8, n = o->shape_given ? o->n : 256;
    int e = o->d_model, heads = o->nhead, ff = o->ff;
    clattn_module_config cfg = clattn_module_config_default(CLATTN_MODULE_ENCODER_LAYER);
    cfg.d_model = e;
    cfg.nhead = heads;
    cfg.dim_feedforward = ff;
    cfg.activation = CLATTN_ACT_GELU;
    cfg.norm_first = o->norm_first;
    layer_case l;
    clattn_status st = clattn_module_create(ctx, &cfg, &l.m);
    if (st != CLATTN_OK)
        die("module", st);
    /* Random parameters: the timing does not depend on the values, but
     * zeros could hit special cases. */
    for (int32_t i = 0; i < clattn_module_param_count(l.m); i++) {
        clattn_tensor *p = clattn_module_param(l.m, clattn_module_param_name(l.m, i));
        size_t count = clattn_tensor_numel(p);
        float *x = malloc(count * sizeof *x);
        for (size_t j = 0; j < count; j++)
            x[j] = (float)((j * 2654435761u) % 1000) / 1000.0f * 0.1f - 0.05f;
        clattn_tensor_write(p, x);
        free(x);
    }
    l.a = clattn_forward_args_default();
    clattn_tensor *src = tensor(ctx, 3, b, n, e, 1, true);
    l.a.src = src;
    l.out = tensor(ctx, 3, b, n, e, 1, false);
    int64_t rows = (int64_t)b * n;
    linear_case g[4] = {linear_make(ctx, rows, e, 3 * e), linear_make(ctx, rows, e, e),
                        linear_make(ctx, rows, e, ff), linear_make(ctx, rows, ff, e)};
    /* Warm up everything, then alternate layer and GEMM runs and keep the
     * best of each, so that load from other processes hits both alike. */
    time_it(ctx, run_layer, &l, 1);
    for (int i = 0; i < 4; i++)
        time_it(ctx, run_linear_gemm, &g[i], 1);
    int reps = o->reps > 0 ? o->reps : 7;
    double t_layer = 1e30, t_g[4] = {1e30, 1e30, 1e30, 1e30};
    for (int r = 0; r < reps; r++) {
        double t = once(ctx, run_layer, &l);
        t_layer = t < t_layer ? t : t_layer;
        for (int i = 0; i < 4; i++) {
            t = once(ctx, run_linear_gemm, &g[i]);
            t_g[i] = t < t_g[i] ? t : t_g[i];
        }
    }
    for (int i = 0; i < 4; i++)
        linear_free(&g[i]);
    double t_qkv = t_g[0], t_out = t_g[1], t_ff1 = t_g[2], t_ff2 = t_g[3];
    double t_gemm = t_qkv + t_out + t_ff1 + t_ff2;
    double gemm_flops = 2.0 * rows * e * (3.0 * e + e + 2.0 * ff);
    double attn_flops = 4.0 * b * (double)n * n * e;
    clattn_device_info info;
    clattn_ctx_device_info(ctx, &info);
    if (o->json) {
        printf("{\"device\": \"%s\", \"b\": %d, \"n\": %d, \"d_model\": %d, \"nhead\": %d, "
               "\"ff\": %d, \"norm_first\": %s, \"layer_ms\": %.3f, \"gemm_ms\": %.3f, "
               "\"non_gemm_share\": %.4f, \"layer_gflops\": %.2f}\n",
               info.device_name, b, n, e, heads, ff, o->norm_first ? "true" : "false",
               t_layer * 1e3, t_gemm * 1e3, 1.0 - t_gemm / t_layer,
               (gemm_flops + attn_flops) / t_layer * 1e-9);
    } else {
        printf("device: %s / %s\n", info.platform_name, info.device_name);
        printf("TransformerEncoderLayer B=%d N=%d d_model=%d nhead=%d ff=%d (%s, GELU)\n", b, n,
               e, heads, ff, o->norm_first ? "pre-norm" : "post-norm");
        printf("  layer forward      %9.2f ms  (%.1f GFLOP/s overall)\n", t_layer * 1e3,
               (gemm_flops + attn_flops) / t_layer * 1e-9);
        printf("  GEMMs alone        %9.2f ms  (qkv %.2f, out %.2f, ff1 %.2f, ff2 %.2f; "
               "%.1f GFLOP/s)\n",
               t_gemm * 1e3, t_qkv * 1e3, t_out * 1e3, t_ff1 * 1e3, t_ff2 * 1e3,
               gemm_flops / t_gemm * 1e-9);
        printf("  outside GEMMs      %9.2f ms  = %.1f%% of the layer (attention, norms, "
               "residuals, bias+activation, head reshapes)\n",
               (t_layer - t_gemm) * 1e3, 100.0 * (1.0 - t_gemm / t_layer));
    }
    clattn_tensor_destroy(src);
    clattn_tensor_destroy(l.out);
    clattn_module_destroy(l.m);
}

/* ---- embed ---------------------------------------------------------------------- */

/* Deterministic texts of words drawn from a fixed list by a 64-bit LCG
 * (tools/bench-peers.py embed makes the same ones). */
static const char *const bench_words[] = {
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "a", "man", "is",
    "eating", "food", "in", "park", "while", "children", "play", "with", "ball", "near",
    "river", "city", "market", "opens", "early", "every", "morning", "people", "buy",
    "fresh", "bread", "and", "fruit", "from", "local", "farmers", "who", "travel", "long",
    "way", "to", "sell", "their", "goods", "music", "plays", "softly", "on", "radio"};

static char **bench_texts(int count, int words, uint64_t seed)
{
    int nw = (int)(sizeof bench_words / sizeof *bench_words);
    char **t = malloc((size_t)count * sizeof *t);
    uint64_t x = seed;
    for (int i = 0; i < count; i++) {
        t[i] = malloc((size_t)words * 16 + 1);
        size_t len = 0;
        for (int w = 0; w < words; w++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            len += (size_t)sprintf(t[i] + len, "%s%s", w ? " " : "",
                                   bench_words[(x >> 33) % (uint64_t)nw]);
        }
    }
    return t;
}

static const char *bench_model(const options *o)
{
    static char buf[4096];
    const char *env = getenv("CLATTN_MODEL");
    if (o->model)
        return o->model;
    if (env && *env)
        return env;
    char exe[1500], up[1600], root[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(up, sizeof up, "%s/../..", exe);
            if (realpath(up, root) &&
                snprintf(buf, sizeof buf, "%s/models/all-MiniLM-L6-v2", root) < (int)sizeof buf)
                return buf;
        }
    }
    return "models/all-MiniLM-L6-v2";
}

static void bench_embed(clattn_ctx *ctx, const options *o)
{
    const char *model = bench_model(o);
    clattn_embedder *e;
    clattn_status st = clattn_embedder_load(ctx, model, &e);
    if (st != CLATTN_OK) {
        fprintf(stderr, "clattn-bench: %s (run tools/fetch-model, or pass --model DIR)\n", model);
        die("loading the model", st);
    }
    struct { const char *name; int count, words; uint64_t seed; } sets[2] = {
        {"short", 256, 10, 1}, {"long", 64, 126, 2}};
    int batch = o->b > 1 ? o->b : 32, reps = o->reps > 0 ? o->reps : 3;
    clattn_device_info info;
    clattn_ctx_device_info(ctx, &info);
    if (o->json)
        printf("{\"platform\": \"%s\", \"device\": \"%s\", \"batch\": %d, \"sets\": [",
               info.platform_name, info.device_name, batch);
    else
        printf("device: %s / %s\nmodel: %s, batch %d, best of %d runs\n", info.platform_name,
               info.device_name, model, batch, reps);
    for (int s = 0; s < 2; s++) {
        char **texts = bench_texts(sets[s].count, sets[s].words, sets[s].seed);
        float *out = malloc((size_t)sets[s].count * (size_t)clattn_embedder_dim(e) * sizeof *out);
        long tokens = 0;
        int64_t ids[512];
        for (int i = 0; i < sets[s].count; i++) {
            int32_t c = 0;
            clattn_tokenizer_encode(clattn_embedder_tokenizer(e), texts[i], strlen(texts[i]), 0,
                                    ids, 512, &c);
            tokens += c;
        }
        clattn_embed_params p = clattn_embed_params_default();
        p.batch_size = batch;
        double best = 1e30;
        for (int r = 0; r <= reps; r++) { /* run 0 warms up */
            double t0 = now_s();
            if ((st = clattn_embedder_embed(e, (const char *const *)texts, sets[s].count, out,
                                            &p)) != CLATTN_OK)
                die("embed", st);
            double dt = now_s() - t0;
            if (r > 0 && dt < best)
                best = dt;
        }
        double rate = sets[s].count / best;
        if (o->json)
            printf("%s{\"name\": \"%s\", \"texts\": %d, \"words\": %d, \"seed\": %d, "
                   "\"mean_tokens\": %.1f, \"seconds\": %.4f, \"texts_per_s\": %.2f}",
                   s ? ", " : "", sets[s].name, sets[s].count, sets[s].words, (int)sets[s].seed,
                   (double)tokens / sets[s].count, best, rate);
        else
            printf("%-5s %3d texts x %5.1f tokens: %8.3f s  %8.1f sentences/s\n", sets[s].name,
                   sets[s].count, (double)tokens / sets[s].count, best, rate);
        for (int i = 0; i < sets[s].count; i++)
            free(texts[i]);
        free(texts);
        free(out);
    }
    if (o->json)
        printf("]}\n");
    clattn_embedder_destroy(e);
}

/* ---- command line ------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: clattn-bench attention [--b B] [--hq H] [--hkv H] [--n N] [--m M] [--d D]\n"
               "                              [--dv DV] [--causal] [--window L,R] [--no-unfused]\n"
               "       clattn-bench train [--b B] [--hq H] [--hkv H] [--n N] [--m M] [--d D]\n"
               "                          [--dv DV] [--causal] [--window L,R]   (attention\n"
               "                          forward + backward, GFLOP/s and their ratio)\n"
               "       clattn-bench gemm [--n N] [--no-tuning]\n"
               "       clattn-bench layer [--b B] [--n N] [--d-model E] [--nhead H] [--ff F]\n"
               "                          [--norm-first]\n"
               "       clattn-bench embed [--model DIR] [--b BATCH]   (sentences/s: 256 texts\n"
               "                          of ~12 tokens, 64 of ~128; all-MiniLM-L6-v2)\n"
               "       clattn-bench dispatch [--calls C]   (host cost of one op call on\n"
               "                          [1, 8] tensors, microseconds; default 2000 calls)\n"
               "       clattn-bench generate --model DIR [--prompt N] [--gen N] [--batch 1,8]\n"
               "                          [--cache-type f32|f16] [--no-attention]   (prefill and\n"
               "                          decode tokens/s, decode GB/s against a device copy,\n"
               "                          decode attention alone at 1k..32k keys)\n"
               "common: [--json] [--device SEL] [--reps R]\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    options o = {.b = 1, .hq = 1, .hkv = -1, .n = 1024, .m = -1, .d = 64, .dv = -1, .wl = -1,
                 .wr = -1, .d_model = 512, .nhead = 8, .ff = 2048, .calls = 2000,
                 .gen = {.prompt = 512, .gen = 128, .batches = {1, 8}, .n_batches = 2,
                         .attention = true, .reps = 2}};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int *target = NULL;
        int64_t num;
        if (strcmp(a, "--json") == 0) o.json = true;
        else if (strcmp(a, "--no-attention") == 0) o.gen.attention = false;
        else if (strcmp(a, "--prompt") == 0) {
            if (!cli_int("clattn-bench", a, val, 1, 1 << 20, &num)) return 2;
            o.gen.prompt = (int)num, i++;
        } else if (strcmp(a, "--gen") == 0) {
            if (!cli_int("clattn-bench", a, val, 1, 1 << 20, &num)) return 2;
            o.gen.gen = (int)num, i++;
        } else if (strcmp(a, "--batch") == 0) {
            int32_t *list, n;
            if (!cli_int_list("clattn-bench", a, val, 1, 64, &list, &n)) return 2;
            if (n > 8) {
                fprintf(stderr, "clattn-bench: --batch takes at most 8 sizes\n");
                free(list);
                return 2;
            }
            for (int32_t j = 0; j < n; j++)
                o.gen.batches[j] = list[j];
            o.gen.n_batches = n, i++;
            free(list);
        } else if (strcmp(a, "--cache-type") == 0 && val) {
            if (strcmp(val, "f16") && strcmp(val, "f32")) {
                fprintf(stderr, "clattn-bench: --cache-type: '%s' is not f32 or f16\n", val);
                return 2;
            }
            o.gen.cache_f16 = strcmp(val, "f16") == 0, i++;
        }
        else if (strcmp(a, "--causal") == 0) o.causal = o.shape_given = true;
        else if (strcmp(a, "--no-unfused") == 0) o.no_unfused = true;
        else if (strcmp(a, "--no-tuning") == 0) o.no_tuning = true;
        else if (strcmp(a, "--norm-first") == 0) o.norm_first = true;
        else if (strcmp(a, "--d-model") == 0) target = &o.d_model;
        else if (strcmp(a, "--nhead") == 0) target = &o.nhead;
        else if (strcmp(a, "--ff") == 0) target = &o.ff;
        else if (strcmp(a, "--calls") == 0) target = &o.calls;
        else if (strcmp(a, "--device") == 0 && val) o.device = argv[++i];
        else if (strcmp(a, "--model") == 0 && val) o.model = argv[++i];
        else if (strcmp(a, "--reps") == 0 && val) o.reps = atoi(argv[++i]);
        else if (strcmp(a, "--window") == 0 && val) {
            if (sscanf(argv[++i], "%d,%d", &o.wl, &o.wr) != 2) {
                fprintf(stderr, "clattn-bench: --window wants L,R (e.g. 256,0; -1 = unlimited)\n");
                return 2;
            }
            o.shape_given = true;
        }
        else if (strcmp(a, "--b") == 0) target = &o.b;
        else if (strcmp(a, "--hq") == 0) target = &o.hq;
        else if (strcmp(a, "--hkv") == 0) target = &o.hkv;
        else if (strcmp(a, "--n") == 0) target = &o.n;
        else if (strcmp(a, "--m") == 0) target = &o.m;
        else if (strcmp(a, "--d") == 0) target = &o.d;
        else if (strcmp(a, "--dv") == 0) target = &o.dv;
        else {
            fprintf(stderr, "clattn-bench: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (target) {
            if (!val || (*target = atoi(val)) <= 0) {
                fprintf(stderr, "clattn-bench: %s wants a positive integer\n", a);
                return 2;
            }
            i++;
            o.shape_given = true;
        }
    }
    if (o.hkv < 0) o.hkv = o.hq;
    if (o.m < 0) o.m = o.n;
    if (o.dv < 0) o.dv = o.d;

    clattn_ctx_params p = clattn_ctx_params_default();
    p.device = o.device;
    p.gemm_tuning = !o.no_tuning;
    clattn_ctx *ctx;
    clattn_status st = clattn_ctx_create(&p, &ctx);
    if (st != CLATTN_OK)
        die("context", st);
    if (strcmp(what, "attention") == 0)
        bench_attention(ctx, &o);
    else if (strcmp(what, "train") == 0)
        bench_train(ctx, &o);
    else if (strcmp(what, "gemm") == 0)
        bench_gemm(ctx, &o);
    else if (strcmp(what, "layer") == 0)
        bench_layer(ctx, &o);
    else if (strcmp(what, "embed") == 0)
        bench_embed(ctx, &o);
    else if (strcmp(what, "generate") == 0) {
        o.gen.model = o.model;
        o.gen.json = o.json;
        if (o.reps > 0)
            o.gen.reps = o.reps;
        if (!o.model) {
            fprintf(stderr, "clattn-bench generate: give --model DIR\n");
            clattn_ctx_destroy(ctx);
            return 2;
        }
        if ((st = bench_generate(ctx, &o.gen)) != CLATTN_OK)
            die("generate", st);
    }
    else if (strcmp(what, "dispatch") == 0) {
        if ((st = bench_dispatch(ctx, o.calls, o.reps > 0 ? o.reps : 5, o.json)) != CLATTN_OK)
            die("dispatch", st);
    }
    else {
        fprintf(stderr, "clattn-bench: unknown benchmark '%s'\n", what);
        usage(stderr);
        clattn_ctx_destroy(ctx);
        return 2;
    }
    clattn_ctx_destroy(ctx);
    return 0;
}
