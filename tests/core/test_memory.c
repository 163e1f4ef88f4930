/* test_memory.c - device memory accounting and allocation faults (issue
 * #17): every buffer made through clattn__buffer_create is counted against
 * the device's global memory, and a test hook makes the Nth allocation
 * fail.
 *
 * 1. Accounting: live bytes and buffers follow tensor create / view /
 *    destroy exactly (views share, the buffer dies with its last handle).
 * 2. Limits: a tensor over the largest allocation; a tensor, an attention
 *    call's unfused scores and a GEMM past the device's total (the total
 *    lowered in this test's context to what is in use plus 1 MiB) are
 *    CLATTN_ERR_OUT_OF_MEMORY naming the bytes needed, in use and in all,
 *    and the context works afterwards.
 * 3. Faults along a module forward: a TransformerEncoderLayer fixture
 *    (tests/fixtures/modules/encoder_layer_post_relu) is loaded and run
 *    with allocation N failing, for every N until the path needs no more:
 *    each failure is a clean CLATTN_ERR_OUT_OF_MEMORY, the same module (if
 *    it loaded) then gives the reference result bit for bit, as does a
 *    fresh load, and the live buffer count (the context's scratch slots
 *    left out: a failed growth empties a slot by design) is back where it
 *    started.
 * Argument: the fixtures folder. */
#include "core/core.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Live buffers once ctx's queue is idle (queued commands hold buffers
 * too). Rusticl calls destructor callbacks on its own thread, some time
 * after the last release, so the count is given up to 1 s to come down to
 * want; a leaked buffer never does. */
/* The context's own scratch buffers are left out: a failed growth of a
 * slot releases the old buffer first and leaves the slot empty (by
 * design; the next call regrows it), which is not a leak. */
static int64_t live_non_scratch(clattn_ctx *ctx)
{
    int64_t n = clattn__live_device_buffers(ctx);
    for (int i = 0; i < CLATTN_SCRATCH_SLOTS; i++)
        n -= ctx->scratch[i] != NULL;
    return n;
}

static int64_t live_buffers_settled(clattn_ctx *ctx, int64_t want)
{
    clattn_ctx_finish(ctx);
    int64_t n = live_non_scratch(ctx);
    for (int i = 0; i < 500 && n > want; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        n = live_non_scratch(ctx);
    }
    return n;
}
#define live_buffers(ctx) live_buffers_settled((ctx), base)

#define BATCH 2
#define SEQ 5
#define EMB 32

/* Loads the model, runs it on src and reads out[BATCH * SEQ * EMB]; on
 * success keeps the module in *keep (if keep is not NULL). Returns the
 * first failing status. */
static clattn_status module_path(clattn_ctx *ctx, const char *dir, const float *src, float *out,
                                 clattn_module **keep)
{
    clattn_module *m = NULL;
    clattn_tensor *x = NULL, *y = NULL;
    int64_t shape[3] = {BATCH, SEQ, EMB};
    clattn_status st = clattn_model_load(ctx, dir, &m);
    if (st == CLATTN_OK)
        st = clattn_tensor_create(ctx, 3, shape, &x);
    if (st == CLATTN_OK)
        st = clattn_tensor_create(ctx, 3, shape, &y);
    if (st == CLATTN_OK)
        st = clattn_tensor_write(x, src);
    if (st == CLATTN_OK) {
        clattn_forward_args a = clattn_forward_args_default();
        a.src = x;
        st = clattn_module_forward(m, &a, y);
    }
    if (st == CLATTN_OK)
        st = clattn_tensor_read(y, out);
    clattn_tensor_destroy(x);
    clattn_tensor_destroy(y);
    if (keep)
        *keep = m;
    else
        clattn_module_destroy(m);
    return st;
}

/* Runs the forward of an already loaded module. */
static clattn_status forward_only(clattn_ctx *ctx, clattn_module *m, const float *src,
                                  float *out)
{
    clattn_tensor *x = NULL, *y = NULL;
    int64_t shape[3] = {BATCH, SEQ, EMB};
    clattn_status st = clattn_tensor_create(ctx, 3, shape, &x);
    if (st == CLATTN_OK)
        st = clattn_tensor_create(ctx, 3, shape, &y);
    if (st == CLATTN_OK)
        st = clattn_tensor_write(x, src);
    if (st == CLATTN_OK) {
        clattn_forward_args a = clattn_forward_args_default();
        a.src = x;
        st = clattn_module_forward(m, &a, y);
    }
    if (st == CLATTN_OK)
        st = clattn_tensor_read(y, out);
    clattn_tensor_destroy(x);
    clattn_tensor_destroy(y);
    return st;
}

int main(int argc, char **argv)
{
    const char *fixtures = argc > 1 ? argv[1] : "tests/fixtures";
    clattn_ctx *ctx = test_ctx();

    /* 1. Accounting follows create, view and destroy. */
    /* Counted after the full second, so that buffers Rusticl has yet to
     * destroy are not counted as part of the start. */
    int64_t base = live_buffers_settled(ctx, 0);
    uint64_t base_bytes = clattn__live_device_bytes(ctx);
    int64_t s1[2] = {100, 10}, s2[1] = {1000};
    clattn_tensor *a = test_tensor(ctx, 2, s1, NULL), *v = NULL;
    CHECK(live_buffers_settled(ctx, base + 1) == base + 1 && clattn__live_device_bytes(ctx) == base_bytes + 4000,
          "one tensor: %lld buffers, %llu bytes", (long long)live_buffers(ctx),
          (unsigned long long)clattn__live_device_bytes(ctx));
    CHECK_OK(clattn_tensor_view(a, 1, s2, &v));
    CHECK(live_buffers_settled(ctx, base + 1) == base + 1, "a view allocates nothing");
    clattn_tensor_destroy(a);
    CHECK(live_buffers_settled(ctx, base + 1) == base + 1, "the view keeps the buffer alive");
    clattn_tensor_destroy(v);
    CHECK(live_buffers(ctx) == base && clattn__live_device_bytes(ctx) == base_bytes,
          "all destroyed: %lld buffers", (long long)live_buffers(ctx));

    /* 2. Limits. */
    clattn_device_info info;
    CHECK_OK(clattn_ctx_device_info(ctx, &info));
    int64_t huge[2] = {(int64_t)(info.max_alloc_bytes / 4 / 1024) + 1, 1024};
    clattn_tensor *t = NULL;
    CHECK_STATUS(clattn_tensor_create(ctx, 2, huge, &t), CLATTN_ERR_OUT_OF_MEMORY);
    CHECK_MSG("largest allocation");
    uint64_t total = ctx->info.global_mem_bytes;
    CHECK(total == info.global_mem_bytes && total > 0, "global memory %llu",
          (unsigned long long)total);
    /* The device total, as this context sees it, lowered to what is in use
     * plus 1 MiB: the next allocations over it must be refused by clattn. */
    ctx->info.global_mem_bytes = clattn__live_device_bytes(ctx) + (1u << 20);
    int64_t two_mib[1] = {1 << 19};
    CHECK_STATUS(clattn_tensor_create(ctx, 1, two_mib, &t), CLATTN_ERR_OUT_OF_MEMORY);
    CHECK_MSG("in use");
    CHECK_MSG("in all");
    /* Attention whose unfused N x M scores (B * H * 512 * 512 floats, 2 MiB)
     * do not fit; the inputs (4 x 64 KiB) do. */
    int64_t qs[4] = {1, 2, 512, 16};
    clattn_tensor *q = test_tensor(ctx, 4, qs, NULL), *o = test_tensor(ctx, 4, qs, NULL);
    CHECK_OK(clattn_tensor_fill(q, 0.5f));
    clattn_sdpa_params sp = clattn_sdpa_params_default();
    sp.impl = CLATTN_SDPA_UNFUSED;
    CHECK_STATUS(clattn_sdpa(ctx, q, q, q, o, &sp), CLATTN_ERR_OUT_OF_MEMORY);
    CHECK_MSG("in use");
    /* A GEMM whose packed panels or output do not fit: [512, 512] x [512, 512]. */
    int64_t ms[2] = {512, 512};
    clattn_tensor *big = NULL;
    CHECK_STATUS(clattn_tensor_create(ctx, 2, ms, &big), CLATTN_ERR_OUT_OF_MEMORY);
    ctx->info.global_mem_bytes = total;
    /* Usable afterwards: the same attention now runs, and is right (every
     * value of v is 0.5, so every output is 0.5 exactly). */
    CHECK_OK(clattn_sdpa(ctx, q, q, q, o, &sp));
    float *got = test_fvec(512 * 32);
    CHECK_OK(clattn_tensor_read(o, got));
    int wrong = 0;
    for (int i = 0; i < 512 * 32; i++)
        wrong += got[i] != 0.5f;
    CHECK(wrong == 0, "attention after a refusal: %d wrong values", wrong);
    free(got);
    clattn_tensor_destroy(q);
    clattn_tensor_destroy(o);

    /* 3. Faults along a module forward. */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/modules/encoder_layer_post_relu", fixtures);
    float src[BATCH * SEQ * EMB], ref[BATCH * SEQ * EMB], out[BATCH * SEQ * EMB];
    test_seed(5);
    test_fill_uniform(src, BATCH * SEQ * EMB, -1.0f, 1.0f);
    CHECK_OK(module_path(ctx, dir, src, ref, NULL));
    base = live_buffers_settled(ctx, 0);
    uint64_t before = clattn__test_fail_alloc_after(ctx, -1);
    CHECK_OK(module_path(ctx, dir, src, out, NULL));
    uint64_t needed = clattn__test_fail_alloc_after(ctx, -1) - before;
    CHECK(memcmp(out, ref, sizeof out) == 0, "second run differs");
    CHECK(live_buffers(ctx) == base, "leak after a clean run");
    CHECK(needed > 3, "the path makes %llu allocations", (unsigned long long)needed);
    int failures = 0, clean = 0, bad_status = 0, leaks = 0, wrong_after = 0;
    for (int64_t n = 0; n <= (int64_t)needed + 2; n++) {
        clattn_module *m = NULL;
        clattn__test_fail_alloc_after(ctx, n);
        clattn_status st = module_path(ctx, dir, src, out, &m);
        clattn__test_fail_alloc_after(ctx, -1);
        if (st == CLATTN_OK) {
            clean++;
            wrong_after += memcmp(out, ref, sizeof out) != 0;
        } else {
            failures++;
            bool ok = st == CLATTN_ERR_OUT_OF_MEMORY && strstr(clattn_last_error(), "injected");
            bad_status += !ok;
            if (!ok)
                fprintf(stderr, "N = %lld: %s: %s\n", (long long)n, clattn_status_str(st),
                        clattn_last_error());
            /* The module, if it loaded, still works. */
            if (m) {
                memset(out, 0, sizeof out);
                st = forward_only(ctx, m, src, out);
                wrong_after += st != CLATTN_OK || memcmp(out, ref, sizeof out) != 0;
            }
        }
        clattn_module_destroy(m);
        /* And the context gives the reference again. */
        memset(out, 0, sizeof out);
        st = module_path(ctx, dir, src, out, NULL);
        wrong_after += st != CLATTN_OK || memcmp(out, ref, sizeof out) != 0;
        int64_t live = live_buffers(ctx);
        if (live != base) {
            leaks++;
            fprintf(stderr, "N = %lld: %lld live buffers, %lld at the start\n", (long long)n,
                    (long long)live, (long long)base);
        }
    }
    /* And the context itself is fine: a fresh path gives the reference. */
    CHECK_OK(module_path(ctx, dir, src, out, NULL));
    CHECK(memcmp(out, ref, sizeof out) == 0, "final run differs");
    fprintf(stderr, "module path: %llu allocations; %d injected failures, %d clean runs\n",
            (unsigned long long)needed, failures, clean);
    CHECK(failures == (int)needed && clean == 3, "%d failures for %llu allocations, %d clean",
          failures, (unsigned long long)needed, clean);
    CHECK(bad_status == 0, "%d failures without a clean OUT_OF_MEMORY status", bad_status);
    CHECK(wrong_after == 0, "%d runs gave a wrong result after a failure", wrong_after);
    CHECK(leaks == 0, "%d fault points leaked device buffers", leaks);

    clattn_ctx_destroy(ctx);
    return test_summary("test_memory");
}
