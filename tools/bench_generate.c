/* bench_generate.c - clattn-bench generate: a decoder model's prompt and
 * decode speed, the decode's effective memory bandwidth against the
 * device's own (a STREAM-style copy), and decode attention alone at long
 * cache lengths (split-KV against the fused kernel on one row). */
#include "bench_generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define TRY(call)                                                                             \
    do {                                                                                      \
        clattn_status st_ = (call);                                                           \
        if (st_ != CLATTN_OK) {                                                               \
            fprintf(stderr, "clattn-bench generate: %s: %s\n", #call, clattn_last_error());   \
            return st_;                                                                       \
        }                                                                                     \
    } while (0)

/* Device copy bandwidth (GB/s, read + write counted) on two buffers of
 * bytes: clEnqueueCopyBuffer is the driver's own fastest copy. */
static double copy_bandwidth(clattn_ctx *ctx, size_t bytes, int reps)
{
    cl_int err;
    cl_context c = clattn_ctx_cl_context(ctx);
    cl_command_queue q = clattn_ctx_cl_queue(ctx);
    cl_mem a = clCreateBuffer(c, CL_MEM_READ_WRITE, bytes, NULL, &err);
    cl_mem b = err == CL_SUCCESS ? clCreateBuffer(c, CL_MEM_READ_WRITE, bytes, NULL, &err) : NULL;
    double best = INFINITY;
    if (err == CL_SUCCESS) {
        const float zero = 0.0f;
        clEnqueueFillBuffer(q, a, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
        clEnqueueFillBuffer(q, b, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
        clFinish(q);
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now_s();
            clEnqueueCopyBuffer(q, a, b, 0, 0, bytes, 0, NULL, NULL);
            clFinish(q);
            if (r > 0) /* the first copy pays for page faults */
                best = fmin(best, now_s() - t0);
        }
    }
    if (a)
        clReleaseMemObject(a);
    if (b)
        clReleaseMemObject(b);
    return isfinite(best) ? 2.0 * (double)bytes / best / 1e9 : 0.0;
}

static void random_ids(int32_t *ids, int32_t n, int32_t vocab, uint64_t seed)
{
    for (int32_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((seed >> 33) % (uint64_t)vocab);
    }
}

/* Best seconds of reps prefills of n ids into sequence 0. */
static clattn_status time_prefill(clattn_ctx *ctx, clattn_lm_session *s, const int32_t *ids,
                                  int32_t n, int reps, double *best)
{
    *best = INFINITY;
    for (int r = 0; r < reps; r++) {
        TRY(clattn_lm_session_truncate(s, 0, 0));
        double t0 = now_s();
        TRY(clattn_lm_prefill(s, 0, ids, n, NULL));
        TRY(clattn_ctx_finish(ctx));
        *best = fmin(*best, now_s() - t0);
    }
    return CLATTN_OK;
}

/* Best seconds per decode step of `steps` steps of `batch` sequences,
 * each first prefilled with n_prompt ids. */
static clattn_status time_decode(clattn_ctx *ctx, clattn_lm_session *s, const int32_t *ids,
                                 int32_t n_prompt, int32_t batch, int32_t steps, int reps,
                                 int32_t vocab, float *logits, double *per_step)
{
    int32_t seqs[64], tok[64];
    *per_step = INFINITY;
    for (int r = 0; r < reps; r++) {
        for (int32_t b = 0; b < batch; b++) {
            seqs[b] = b;
            TRY(clattn_lm_session_truncate(s, b, 0));
            TRY(clattn_lm_prefill(s, b, ids, n_prompt, NULL));
        }
        TRY(clattn_ctx_finish(ctx));
        double t0 = now_s();
        for (int32_t i = 0; i < steps; i++) {
            random_ids(tok, batch, vocab, (uint64_t)(i + 1));
            /* logits back to the host each step, as generation needs them */
            TRY(clattn_lm_decode(s, batch, seqs, tok, logits));
        }
        TRY(clattn_ctx_finish(ctx));
        *per_step = fmin(*per_step, (now_s() - t0) / steps);
    }
    return CLATTN_OK;
}

/* Decode attention alone: B = 1, one new row, a model's heads, cache
 * lengths 1k .. 32k; clattn_sdpa_decode against clattn_sdpa (fused, one
 * query row, causal). */
static clattn_status attention_sweep(clattn_ctx *ctx, int32_t hq, int32_t hkv, int32_t d,
                                     int reps, bool json)
{
    const int32_t lens[] = {1024, 2048, 4096, 8192, 16384, 32768};
    if (!json)
        printf("\ndecode attention alone (Hq %d, Hkv %d, D %d, one new row), microseconds:\n"
               "%8s %12s %12s %8s\n",
               hq, hkv, d, "keys", "split-KV", "fused 1 row", "speedup");
    else
        printf(", \"attention\": [");
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        const int32_t m = lens[i];
        int64_t qs[4] = {1, 1, hq, d}, ks[4] = {1, hkv, m, d}, q4[4] = {1, hq, 1, d};
        clattn_tensor *q, *k, *v, *o, *qf, *of;
        TRY(clattn_tensor_create(ctx, 4, qs, &q));
        TRY(clattn_tensor_create(ctx, 4, qs, &o));
        TRY(clattn_tensor_create(ctx, 4, ks, &k));
        TRY(clattn_tensor_create(ctx, 4, ks, &v));
        TRY(clattn_tensor_create(ctx, 4, q4, &qf));
        TRY(clattn_tensor_create(ctx, 4, q4, &of));
        TRY(clattn_tensor_fill(q, 0.01f));
        TRY(clattn_tensor_fill(qf, 0.01f));
        TRY(clattn_tensor_fill(k, 0.02f));
        TRY(clattn_tensor_fill(v, 0.03f));
        clattn_sdpa_params p = clattn_sdpa_params_default();
        p.causal = true;
        p.impl = CLATTN_SDPA_FUSED;
        double best_split = INFINITY, best_fused = INFINITY;
        bool fused_ok = true;
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now_s();
            TRY(clattn_sdpa_decode(ctx, q, k, v, o, &m, -1, 0.0f));
            TRY(clattn_ctx_finish(ctx));
            double t1 = now_s();
            clattn_status st = clattn_sdpa(ctx, qf, k, v, of, &p);
            fused_ok = fused_ok && st == CLATTN_OK;
            TRY(clattn_ctx_finish(ctx));
            double t2 = now_s();
            if (r > 0) /* the first call builds the programs */
                best_split = fmin(best_split, t1 - t0), best_fused = fmin(best_fused, t2 - t1);
        }
        if (json)
            printf("%s{\"keys\": %d, \"split_us\": %.1f, \"fused_us\": %.1f}", i ? ", " : "", m,
                   best_split * 1e6, fused_ok ? best_fused * 1e6 : 0.0);
        else if (fused_ok)
            printf("%8d %12.1f %12.1f %7.1fx\n", m, best_split * 1e6, best_fused * 1e6,
                   best_fused / best_split);
        else
            printf("%8d %12.1f %12s\n", m, best_split * 1e6, "(refused)");
        clattn_tensor *all[] = {q, k, v, o, qf, of};
        for (size_t j = 0; j < 6; j++)
            clattn_tensor_destroy(all[j]);
    }
    if (json)
        printf("]");
    return CLATTN_OK;
}

clattn_status bench_generate(clattn_ctx *ctx, const bench_generate_options *o)
{
    clattn_lm *lm;
    TRY(clattn_lm_load(ctx, o->model, &lm));
    clattn_lm_info info;
    clattn_lm_get_info(lm, &info);
    const int32_t n_prompt = o->prompt, steps = o->gen;
    int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
    float *logits = malloc((size_t)64 * info.vocab_size * sizeof *logits);
    random_ids(ids, n_prompt, info.vocab_size, 42);
    int32_t max_batch = 1;
    for (int i = 0; i < o->n_batches; i++)
        max_batch = o->batches[i] > max_batch ? o->batches[i] : max_batch;
    clattn_lm_session_params sp = clattn_lm_session_params_default();
    sp.ctx_size = n_prompt + steps + 1;
    sp.n_seq = max_batch;
    sp.cache_type = o->cache_f16 ? CLATTN_CACHE_F16 : CLATTN_CACHE_F32;
    clattn_lm_session *s;
    clattn_status st = clattn_lm_session_create(lm, &sp, &s);
    if (st != CLATTN_OK) {
        fprintf(stderr, "clattn-bench generate: %s\n", clattn_last_error());
        clattn_lm_destroy(lm);
        free(ids);
        free(logits);
        return st;
    }
    const double bw = copy_bandwidth(ctx, (size_t)256 << 20, 5);
    double prefill_s;
    st = time_prefill(ctx, s, ids, n_prompt, o->reps, &prefill_s);
    if (!o->json)
        printf("model %s (%s, %s): %d layers, hidden %d, vocab %d; weights %.1f MB in the file, "
               "%.1f MB on the device\n"
               "device copy bandwidth %.1f GB/s (read + write)\n"
               "prefill %d tokens: %.3f s, %.1f tokens/s\n",
               o->model, info.architecture, clattn_dtype_name(info.dtype), info.n_layers,
               info.hidden, info.vocab_size, info.file_bytes / 1e6, info.device_bytes / 1e6,
               bw, n_prompt, prefill_s, n_prompt / prefill_s);
    else
        printf("{\"model\": \"%s\", \"dtype\": \"%s\", \"file_bytes\": %llu, "
               "\"device_bytes\": %llu, \"copy_gb_s\": %.2f, \"prompt_tokens\": %d, "
               "\"prefill_tokens_per_s\": %.2f, \"decode\": [",
               o->model, clattn_dtype_name(info.dtype), (unsigned long long)info.file_bytes,
               (unsigned long long)info.device_bytes, bw, n_prompt, n_prompt / prefill_s);
    for (int i = 0; st == CLATTN_OK && i < o->n_batches; i++) {
        const int32_t batch = o->batches[i];
        double per_step;
        st = time_decode(ctx, s, ids, n_prompt, batch, steps, o->reps, info.vocab_size, logits,
                         &per_step);
        if (st != CLATTN_OK)
            break;
        /* Bytes one step must read: every weight once, plus each
         * sequence's cache (mean length over the steps). */
        const double kv_elem = o->cache_f16 ? 2.0 : 4.0;
        const double kv = 2.0 * info.n_layers * info.n_kv_heads * info.head_dim * kv_elem *
                          (n_prompt + steps / 2.0) * batch;
        const double gbs = (info.device_bytes + kv) / per_step / 1e9;
        if (!o->json)
            printf("decode batch %d, %d steps: %.2f ms/step, %.1f tokens/s, %.1f GB/s "
                   "effective (%.0f%% of the copy bandwidth)\n",
                   batch, steps, per_step * 1e3, batch / per_step, gbs, 100.0 * gbs / bw);
        else
            printf("%s{\"batch\": %d, \"steps\": %d, \"tokens_per_s\": %.2f, \"gb_s\": %.2f}",
                   i ? ", " : "", batch, steps, batch / per_step, gbs);
    }
    if (o->json)
        printf("]");
    if (st == CLATTN_OK && o->attention)
        st = attention_sweep(ctx, info.n_heads, info.n_kv_heads, info.head_dim, o->reps, o->json);
    if (o->json)
        printf("}\n");
    clattn_lm_session_destroy(s);
    clattn_lm_destroy(lm);
    free(ids);
    free(logits);
    return st;
}
