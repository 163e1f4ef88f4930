/* context.c - context creation on a chosen device or a caller's OpenCL
 * objects, and its lifetime. */
#include "attention/attention.h"
#include "gemm/gemm.h"
#include "modules/modules.h"
#include "nn/nn.h"
#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clattn_ctx_params clattn_ctx_params_default(void)
{
    clattn_ctx_params p;
    memset(&p, 0, sizeof p);
    p.log_level = CLATTN_LOG_INFO;
    p.gemm_tuning = true;
    return p;
}

/* Resolves the cache directory: explicit, $CLATTN_CACHE_DIR,
 * $XDG_CACHE_HOME/clattn, ~/.cache/clattn. NULL means disabled. */
static char *resolve_cache_dir(const char *explicit_dir)
{
    const char *dir = explicit_dir ? explicit_dir : clattn__env_cache_dir();
    if (dir)
        return strcmp(dir, "off") == 0 ? NULL : clattn__strdup(dir);
    const char *xdg = clattn__env_xdg_cache_home();
    if (xdg)
        return clattn__aprintf("%s/clattn", xdg);
    const char *home = clattn__env_home();
    if (home)
        return clattn__aprintf("%s/.cache/clattn", home);
    return NULL;
}

/* The -D tunables every program of this device is built with. Kernel files
 * keep their own defaults (#ifndef) so they build without any of these. */
static char *device_options(const clattn_device_info *info)
{
    return clattn__aprintf("-DCLATTN_DEVICE_CPU=%d -DCLATTN_LOCAL_MEM=%llu -DCLATTN_MAX_WG=%zu",
                           info->type == CLATTN_DEVICE_CPU ? 1 : 0,
                           (unsigned long long)info->local_mem_bytes, info->max_work_group_size);
}

/* Mesa's llvmpipe stops an invocation's loops after this many iterations
 * in all (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS, a compile-time constant
 * with no switch; see clattn_ctx.loop_budget). */
#define LLVMPIPE_LOOP_BUDGET 65535

/* *out = the value of the named choice: dflt when name is NULL, cpu_value
 * for "cpu", other_value for other; anything else is an error. */
static clattn_status pick_variant(clattn_ctx *ctx, const char *what, const char *name,
                                  const char *other, int dflt, int cpu_value, int other_value,
                                  int *out)
{
    if (!name)
        *out = dflt;
    else if (strcmp(name, "cpu") == 0)
        *out = cpu_value;
    else if (strcmp(name, other) == 0)
        *out = other_value;
    else
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s '%s' unknown (expected \"cpu\" or \"%s\")", what, name, other);
    return CLATTN_OK;
}

/* Builds (or loads from the cache) every program a typical session uses,
 * at context creation, so the first call of each op pays no compile. The
 * programs specialised per problem (attention's head sizes beyond 64, the
 * backward, user snippets) are built on first use. Order matters only for
 * which error a broken kernel directory reports first: common.cl, then
 * elementwise.cl (tests/core/test_cache.c relies on it). */
static clattn_status warm_up(clattn_ctx *ctx)
{
    clattn_status st = clattn__program_prebuild(ctx, &clattn__elementwise_program, NULL);
    if (st == CLATTN_OK)
        st = clattn__attention_prebuild(ctx);
    const clattn__program_spec *const fixed[] = {
        &clattn__classic_program, &clattn__layers_program, &clattn__heads_program,
        &clattn__loss_program,    &clattn__optimizer_program, &clattn__layers_backward_program,
        &clattn__dropout_program, &clattn__gemm_program,
    };
    for (size_t i = 0; st == CLATTN_OK && i < sizeof fixed / sizeof fixed[0]; i++)
        st = clattn__program_prebuild(ctx, fixed[i], NULL);
    return st;
}

/* Everything after the OpenCL objects exist: options, programs, CLBlast. */
static clattn_status finish_setup(clattn_ctx *ctx, const clattn_ctx_params *p)
{
    const char *kdir = p->kernel_dir ? p->kernel_dir : clattn__env_kernel_dir();
    ctx->kernel_dir = clattn__strdup(kdir);
    ctx->cache_dir = resolve_cache_dir(p->cache_dir);
    ctx->device_options = device_options(&ctx->info);
    if ((kdir && !ctx->kernel_dir) || !ctx->device_options)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    /* Each choice: the "cpu" option on CPU devices unless told otherwise
     * (parameter, then environment). */
    bool cpu = ctx->info.type == CLATTN_DEVICE_CPU;
    bool llvmpipe = strstr(ctx->info.device_name, "llvmpipe") != NULL;
    ctx->loop_budget = llvmpipe ? LLVMPIPE_LOOP_BUDGET : 0;
    clattn_status st = pick_variant(
        ctx, "attention kernel",
        p->attention_kernel ? p->attention_kernel : clattn__env_attention_kernel(),
        "tiled", cpu && !llvmpipe ? CLATTN_ATTN_CPU : CLATTN_ATTN_TILED, CLATTN_ATTN_CPU,
        CLATTN_ATTN_TILED, &ctx->attention_variant);
    if (st == CLATTN_OK && llvmpipe && ctx->attention_variant == CLATTN_ATTN_CPU) {
        /* A work-item of the CPU family loops over every key for dozens of
         * rows: past llvmpipe's loop budget from a few hundred keys (N = M
         * = 512, D = 64 left 480 of 512 rows unwritten). */
        clattn__log(ctx, CLATTN_LOG_WARN,
                    "attention kernel 'cpu' exceeds llvmpipe's loop limit; using 'tiled'");
        ctx->attention_variant = CLATTN_ATTN_TILED;
    }
    if (st == CLATTN_OK)
        st = pick_variant(ctx, "GEMM kernel",
                          p->gemm_kernel ? p->gemm_kernel : clattn__env_gemm_kernel(),
                          "clblast", cpu ? CLATTN_GEMM_CPU : CLATTN_GEMM_CLBLAST,
                          CLATTN_GEMM_CPU, CLATTN_GEMM_CLBLAST, &ctx->gemm_backend);
    if (st != CLATTN_OK)
        return st;
    ctx->stats.cache_enabled = ctx->cache_dir != NULL;
    snprintf(ctx->stats.cache_dir, sizeof ctx->stats.cache_dir, "%s",
             ctx->cache_dir ? ctx->cache_dir : "");

    clattn__log(ctx, CLATTN_LOG_INFO, "device: %s / %s (%s)", ctx->info.platform_name,
                ctx->info.device_name, ctx->info.driver_version);
    st = warm_up(ctx);
    if (st != CLATTN_OK)
        return st;
    if (p->gemm_tuning)
        clattn__gemm_tune_device(ctx);
    return CLATTN_OK;
}

static clattn_ctx *ctx_alloc(const clattn_ctx_params *p)
{
    clattn_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->log = p->log;
    ctx->log_user = p->log_user;
    ctx->log_level = p->log_level;
    if (!clattn__mem_account_create(ctx)) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

/* Moves the context's message into the thread slot before the context dies,
 * so a failed create still explains itself through clattn_last_error. */
static clattn_status fail_create(clattn_ctx *ctx, clattn_status st)
{
    if (ctx && ctx->last_error) {
        char *msg = clattn__strdup(ctx->last_error);
        clattn_ctx_destroy(ctx);
        clattn__fail(NULL, st, "%s", msg ? msg : "context creation failed");
        free(msg);
    } else {
        clattn_ctx_destroy(ctx);
    }
    return st;
}

clattn_status clattn_ctx_create(const clattn_ctx_params *params, clattn_ctx **out)
{
    clattn__clear_thread_error();
    if (!out)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    clattn_ctx_params p = params ? *params : clattn_ctx_params_default();

    clattn__device_ref *refs;
    int32_t count, picked;
    clattn_status st = clattn__devices_list(&refs, &count);
    if (st != CLATTN_OK)
        return st;
    st = clattn__device_pick(refs, count, p.device ? p.device : clattn__env_device(), &picked);
    if (st != CLATTN_OK) {
        free(refs);
        return st;
    }
    clattn__device_ref chosen = refs[picked];
    free(refs);

    clattn_ctx *ctx = ctx_alloc(&p);
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    ctx->platform = chosen.platform;
    ctx->device = chosen.device;
    ctx->info = chosen.info;

    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform,
                                     0};
    cl_int err;
    ctx->cl_ctx = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
    if (!ctx->cl_ctx)
        return fail_create(ctx, clattn__fail_cl(ctx, err, "clCreateContext"));
    ctx->queue = clCreateCommandQueue(ctx->cl_ctx, ctx->device, 0, &err);
    if (!ctx->queue)
        return fail_create(ctx, clattn__fail_cl(ctx, err, "clCreateCommandQueue"));

    st = finish_setup(ctx, &p);
    if (st != CLATTN_OK)
        return fail_create(ctx, st);
    *out = ctx;
    return CLATTN_OK;
}

clattn_status clattn_ctx_create_from_cl(cl_context cl_ctx, cl_command_queue queue,
                                        const clattn_ctx_params *params, clattn_ctx **out)
{
    clattn__clear_thread_error();
    if (!out || !cl_ctx || !queue)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "cl_ctx, queue and out must not be NULL");
    *out = NULL;
    clattn_ctx_params p = params ? *params : clattn_ctx_params_default();

    cl_device_id device;
    cl_context queue_ctx;
    cl_command_queue_properties qprops = 0;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof device, &device, NULL);
    err |= clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof queue_ctx, &queue_ctx, NULL);
    err |= clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qprops, &qprops, NULL);
    if (err != CL_SUCCESS)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "queue is not a valid command queue");
    if (queue_ctx != cl_ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "queue does not belong to cl_ctx");
    /* Ops rely on in-order execution (one kernel reads what the last wrote). */
    if (qprops & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "queue is out-of-order; clattn needs an in-order queue");
    cl_platform_id platform;
    if (clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL) !=
        CL_SUCCESS)
        return clattn__fail(NULL, CLATTN_ERR_OPENCL, "cannot query the queue's platform");

    clattn_ctx *ctx = ctx_alloc(&p);
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_status st = clattn__device_query(platform, device, &ctx->info);
    if (st != CLATTN_OK) {
        clattn_ctx_destroy(ctx);
        return st;
    }
    ctx->info.platform_index = ctx->info.device_index = ctx->info.flat_index = -1;
    ctx->platform = platform;
    ctx->device = device;
    clRetainContext(cl_ctx);
    clRetainCommandQueue(queue);
    ctx->cl_ctx = cl_ctx;
    ctx->queue = queue;

    st = finish_setup(ctx, &p);
    if (st != CLATTN_OK)
        return fail_create(ctx, st);
    *out = ctx;
    return CLATTN_OK;
}

void clattn_ctx_destroy(clattn_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->queue)
        clFinish(ctx->queue);
    clattn__programs_release(ctx);
    for (int i = 0; i < CLATTN_SCRATCH_SLOTS; i++)
        if (ctx->scratch[i])
            clReleaseMemObject(ctx->scratch[i]);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->cl_ctx)
        clReleaseContext(ctx->cl_ctx);
    free(ctx->kernel_dir);
    free(ctx->cache_dir);
    free(ctx->device_options);
    free(ctx->last_error);
    /* Buffers still alive (a tensor kept past its context) keep the record. */
    clattn__mem_account_release(ctx);
    free(ctx);
}

clattn_status clattn_ctx_finish(clattn_ctx *ctx)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "ctx is NULL");
    cl_int err = clFinish(ctx->queue);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, "clFinish");
}

clattn_status clattn_ctx_device_info(const clattn_ctx *ctx, clattn_device_info *info)
{
    clattn__clear_thread_error();
    if (!ctx || !info)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "ctx and info must not be NULL");
    *info = ctx->info;
    return CLATTN_OK;
}

clattn_status clattn_ctx_build_stats(const clattn_ctx *ctx, clattn_build_stats *stats)
{
    clattn__clear_thread_error();
    if (!ctx || !stats)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "ctx and stats must not be NULL");
    *stats = ctx->stats;
    return CLATTN_OK;
}

cl_context clattn_ctx_cl_context(const clattn_ctx *ctx) { return ctx ? ctx->cl_ctx : NULL; }
cl_command_queue clattn_ctx_cl_queue(const clattn_ctx *ctx) { return ctx ? ctx->queue : NULL; }
cl_device_id clattn_ctx_cl_device(const clattn_ctx *ctx) { return ctx ? ctx->device : NULL; }

const char *clattn_ctx_attention_kernel(const clattn_ctx *ctx)
{
    if (!ctx)
        return NULL;
    return ctx->attention_variant == CLATTN_ATTN_CPU ? "cpu" : "tiled";
}
