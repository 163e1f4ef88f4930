/* clattn-attention-demo - shows attention working on the default device:
 * the weights of a small causal self-attention with ALiBi, printed as a
 * grid a person can read, and the fused kernel checked against the unfused
 * path on a larger problem, with both timings. */
#include <clattn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECKED(call)                                                                   \
    do {                                                                                \
        clattn_status st_ = (call);                                                     \
        if (st_ != CLATTN_OK) {                                                         \
            fprintf(stderr, "%s failed: %s: %s\n", #call, clattn_status_str(st_),      \
                    clattn_last_error());                                              \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static clattn_tensor *random_tensor(clattn_ctx *ctx, int64_t b, int64_t h, int64_t n,
                                    int64_t d, unsigned seed)
{
    int64_t shape[4] = {b, h, n, d};
    clattn_tensor *t;
    CHECKED(clattn_tensor_create(ctx, 4, shape, &t));
    size_t count = clattn_tensor_numel(t);
    float *x = malloc(count * sizeof *x);
    for (size_t i = 0; i < count; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
    CHECKED(clattn_tensor_write(t, x));
    free(x);
    return t;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    /* It takes no options; anything given is a mistake, not something to ignore. */
    if (argc > 1) {
        fprintf(stderr, "clattn-attention-demo: takes no arguments (got '%s'); the device is "
                        "chosen by CLATTN_DEVICE\n", argv[1]);
        return 2;
    }
    clattn_ctx *ctx;
    CHECKED(clattn_ctx_create(NULL, &ctx));
    clattn_device_info info;
    CHECKED(clattn_ctx_device_info(ctx, &info));
    printf("device: %s / %s\n\n", info.platform_name, info.device_name);

    /* 1. Weights of causal self-attention over 12 tokens, 2 heads, ALiBi. */
    const int n = 12, heads = 2, d = 16;
    clattn_tensor *q = random_tensor(ctx, 1, heads, n, d, 1), *k = random_tensor(ctx, 1, heads, n, d, 2);
    clattn_tensor *v = random_tensor(ctx, 1, heads, n, d, 3), *out, *w, *slopes;
    int64_t so[4] = {1, heads, n, d}, sw[4] = {1, heads, n, n}, ss[1] = {heads};
    CHECKED(clattn_tensor_create(ctx, 4, so, &out));
    CHECKED(clattn_tensor_create(ctx, 4, sw, &w));
    CHECKED(clattn_tensor_create(ctx, 1, ss, &slopes));
    float slope_values[2];
    clattn_alibi_slopes(heads, slope_values);
    CHECKED(clattn_tensor_write(slopes, slope_values));
    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.causal = true;
    p.weights = w;
    clattn_sdpa_preset_alibi(&p, slopes);
    CHECKED(clattn_sdpa(ctx, q, k, v, out, &p));
    float weights[2 * 12 * 12];
    CHECKED(clattn_tensor_read(w, weights));
    const char *shades = " .:-=+*#%@";
    printf("causal self-attention with ALiBi, head 0 (row = query, column = key;\n"
           "darker = more weight; ALiBi favours recent keys):\n");
    for (int i = 0; i < n; i++) {
        printf("  q%-2d |", i);
        double row_sum = 0;
        for (int j = 0; j < n; j++) {
            float x = weights[i * n + j];
            row_sum += x;
            int s = (int)(x * 9.999f);
            putchar(shades[s < 0 ? 0 : s > 9 ? 9 : s]);
            putchar(shades[s < 0 ? 0 : s > 9 ? 9 : s]);
        }
        printf("|  row sum %.4f\n", row_sum);
    }

    /* 2. Fused vs unfused on (B, H, N, D) = (1, 8, 1024, 64), causal. */
    const int bn = 1024, bh = 8, bd = 64;
    clattn_tensor *Q = random_tensor(ctx, 1, bh, bn, bd, 4), *K = random_tensor(ctx, 1, bh, bn, bd, 5);
    clattn_tensor *V = random_tensor(ctx, 1, bh, bn, bd, 6), *O1, *O2;
    int64_t sO[4] = {1, bh, bn, bd};
    CHECKED(clattn_tensor_create(ctx, 4, sO, &O1));
    CHECKED(clattn_tensor_create(ctx, 4, sO, &O2));
    clattn_sdpa_params pf = clattn_sdpa_params_default(), pu = pf;
    pf.causal = pu.causal = true;
    pf.impl = CLATTN_SDPA_FUSED;
    pu.impl = CLATTN_SDPA_UNFUSED;
    double t_f = 0, t_u = 0;
    for (int rep = 0; rep < 2; rep++) { /* the first run compiles and allocates */
        double t0 = now_ms();
        CHECKED(clattn_sdpa(ctx, Q, K, V, O1, &pf));
        CHECKED(clattn_ctx_finish(ctx));
        double t1 = now_ms();
        CHECKED(clattn_sdpa(ctx, Q, K, V, O2, &pu));
        CHECKED(clattn_ctx_finish(ctx));
        t_f = t1 - t0;
        t_u = now_ms() - t1;
    }
    size_t count = (size_t)bh * bn * bd;
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
    CHECKED(clattn_tensor_read(O1, a));
    CHECKED(clattn_tensor_read(O2, b));
    double max_diff = 0;
    for (size_t i = 0; i < count; i++)
        max_diff = fmax(max_diff, fabs((double)a[i] - b[i]));
    double gflop = 2.0 * 2 * bd * (bn * (bn + 1.0) / 2) * bh * 1e-9;
    printf("\ncausal attention (B, H, N, D) = (1, %d, %d, %d):\n", bh, bn, bd);
    printf("  fused   %8.2f ms  %6.1f GFLOP/s\n", t_f, gflop / (t_f * 1e-3));
    printf("  unfused %8.2f ms  %6.1f GFLOP/s  (GEMM, softmax, GEMM)\n", t_u,
           gflop / (t_u * 1e-3));
    printf("  max |fused - unfused| = %.2e %s\n", max_diff, max_diff < 1e-4 ? "(agree)" : "(DISAGREE)");
    free(a);
    free(b);
    clattn_tensor *all[] = {q, k, v, out, w, slopes, Q, K, V, O1, O2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
    clattn_ctx_destroy(ctx);
    return max_diff < 1e-4 ? 0 : 1;
}
