/* program.c - kernel sources (embedded or from CLATTN_KERNEL_DIR), program
 * builds with per-device options, and the context's table of built programs.
 *
 * Every program is common.cl + an optional generated prefix + one kernel
 * file. Builds go through the binary cache (cache.c): a hit skips the
 * compiler, a miss compiles from source and stores the binary. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Reads a whole file into a NUL-terminated malloc'd string. */
static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)) != NULL) {
            if (fread(text, 1, (size_t)n, f) != (size_t)n) {
                free(text);
                text = NULL;
            } else {
                text[n] = '\0';
            }
        }
    }
    fclose(f);
    return text;
}

/* The text of kernel file name: from the kernel directory if the context has
 * one, else embedded. malloc'd; NULL with the error recorded on failure. */
static char *kernel_text(clattn_ctx *ctx, const char *name)
{
    if (ctx->kernel_dir) {
        char *path = clattn__aprintf("%s/%s", ctx->kernel_dir, name);
        char *text = path ? read_text_file(path) : NULL;
        if (!text)
            clattn__fail(ctx, CLATTN_ERR_IO, "cannot read kernel file '%s' (CLATTN_KERNEL_DIR)",
                         path ? path : name);
        free(path);
        return text;
    }
    for (int i = 0; i < clattn__kernel_source_count; i++)
        if (strcmp(clattn__kernel_sources[i].name, name) == 0)
            return clattn__strdup(clattn__kernel_sources[i].text);
    clattn__fail(ctx, CLATTN_ERR_INTERNAL, "no embedded kernel file named '%s'", name);
    return NULL;
}

/* Compiles source with options; on failure the message carries the log. */
static clattn_status build_from_source(clattn_ctx *ctx, const char *file, const char *source,
                                       const char *options, cl_program *out)
{
    cl_int err;
    cl_program prog = clCreateProgramWithSource(ctx->cl_ctx, 1, &source, NULL, &err);
    if (!prog)
        return clattn__fail_cl(ctx, err, "clCreateProgramWithSource");
    err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        size_t log_size = 0;
        clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
        char *log = calloc(log_size + 1, 1);
        if (log)
            clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL);
        clattn_status st = clattn__fail(ctx, CLATTN_ERR_BUILD,
                                        "building %s failed: %s (%d)\noptions: %s\nbuild log:\n%s",
                                        file, clattn__cl_error_name(err), (int)err, options,
                                        log ? log : "(unavailable)");
        free(log);
        clReleaseProgram(prog);
        return st;
    }
    *out = prog;
    return CLATTN_OK;
}

static clattn_status build_from_binary(clattn_ctx *ctx, const unsigned char *binary,
                                       size_t size, const char *options, cl_program *out)
{
    cl_int err, bin_status;
    cl_program prog = clCreateProgramWithBinary(ctx->cl_ctx, 1, &ctx->device, &size, &binary,
                                                &bin_status, &err);
    if (!prog)
        return CLATTN_ERR_OPENCL;
    if (bin_status != CL_SUCCESS ||
        clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return CLATTN_ERR_OPENCL;
    }
    *out = prog;
    return CLATTN_OK;
}

/* Fetches the program's binary for the cache; NULL if the driver will not. */
static unsigned char *program_binary(cl_program prog, size_t *size)
{
    size_t n = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) != CL_SUCCESS ||
        n == 0)
        return NULL;
    unsigned char *bin = malloc(n);
    if (bin && clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        free(bin);
        return NULL;
    }
    *size = n;
    return bin;
}

/* The cache key: everything that can change the binary (DESIGN.md). The
 * source enters as two independent 64-bit hashes; the rest verbatim. */
static char *cache_key(const clattn_ctx *ctx, const char *source, const char *options)
{
    size_t n = strlen(source);
    return clattn__aprintf("clattn %s\nplatform: %s | %s\ndevice: %s | %s | %s\n"
                           "options: %s\nsource: %016llx%016llx %zu\n",
                           CLATTN_VERSION_STRING, ctx->info.platform_name,
                           ctx->info.platform_version, ctx->info.device_name,
                           ctx->info.device_version, ctx->info.driver_version, options,
                           (unsigned long long)clattn__hash64(source, n, 0),
                           (unsigned long long)clattn__hash64(source, n, 0x9e3779b97f4a7c15ull),
                           n);
}

static clattn_status obtain_program(clattn_ctx *ctx, const char *file, const char *source,
                                    const char *options, cl_program *out)
{
    double t0 = now_ms();
    char *key = ctx->cache_dir ? cache_key(ctx, source, options) : NULL;
    unsigned char *binary = NULL;
    size_t size = 0;
    if (key && clattn__cache_load(ctx, key, &binary, &size) &&
        build_from_binary(ctx, binary, size, options, out) == CLATTN_OK) {
        free(binary);
        free(key);
        ctx->stats.programs_from_cache++;
        ctx->stats.build_ms += now_ms() - t0;
        clattn__log(ctx, CLATTN_LOG_DEBUG, "%s: loaded from cache", file);
        return CLATTN_OK;
    }
    free(binary);
    /* A failed load is just a miss: fall through to the compiler. */
    clattn_status st = build_from_source(ctx, file, source, options, out);
    if (st == CLATTN_OK) {
        ctx->stats.programs_from_source++;
        if (key && (binary = program_binary(*out, &size)) != NULL)
            clattn__cache_store(ctx, key, binary, size);
        free(binary);
    }
    free(key);
    ctx->stats.build_ms += now_ms() - t0;
    clattn__log(ctx, CLATTN_LOG_DEBUG, "%s: built from source in %.0f ms", file,
                now_ms() - t0);
    return st;
}

clattn_status clattn__program_get(clattn_ctx *ctx, const char *file, const char *options,
                                  const char *prefix, cl_program *out)
{
    if (!options)
        options = "";
    char *key = clattn__aprintf("%s\n%s\n%s", file, options, prefix ? prefix : "");
    if (!key)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int32_t i = 0; i < ctx->n_programs; i++) {
        if (strcmp(ctx->programs[i].key, key) == 0) {
            free(key);
            *out = ctx->programs[i].program;
            return CLATTN_OK;
        }
    }
    if (ctx->n_programs == ctx->cap_programs) {
        int32_t cap = ctx->cap_programs ? ctx->cap_programs * 2 : 16;
        clattn__program *grown = realloc(ctx->programs, (size_t)cap * sizeof *grown);
        if (!grown) {
            free(key);
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        }
        ctx->programs = grown;
        ctx->cap_programs = cap;
    }

    char *common = kernel_text(ctx, "common.cl");
    char *body = common ? kernel_text(ctx, file) : NULL;
    char *source = body ? clattn__aprintf("%s\n%s\n%s", common, prefix ? prefix : "", body) : NULL;
    /* -w: some compilers (POCL's) print their warnings to the process's
     * stderr, and a library must not print; the kernels are kept clean of
     * warnings with clang (tools/check-kernels). */
    char *full_options =
        clattn__aprintf("-cl-std=CL1.2 -w %s %s", ctx->device_options, options);
    clattn_status st;
    if (!common || !body)
        st = clattn__fail(ctx, CLATTN_ERR_IO, "%s", clattn_ctx_last_error(ctx));
    else if (!source || !full_options)
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    else
        st = obtain_program(ctx, file, source, full_options, out);
    free(common);
    free(body);
    free(source);
    free(full_options);
    if (st != CLATTN_OK) {
        free(key);
        return st;
    }
    ctx->programs[ctx->n_programs].key = key;
    ctx->programs[ctx->n_programs].program = *out;
    ctx->n_programs++;
    return CLATTN_OK;
}

clattn_status clattn__kernel_create(clattn_ctx *ctx, cl_program program, const char *name,
                                    cl_kernel *out)
{
    cl_int err;
    *out = clCreateKernel(program, name, &err);
    if (!*out)
        return clattn__fail(ctx, clattn__status_from_cl(err),
                            "clCreateKernel(%s) failed: %s (%d)", name,
                            clattn__cl_error_name(err), (int)err);
    return CLATTN_OK;
}

clattn_status clattn__kernel_get(clattn_ctx *ctx, cl_program program, const char *name,
                                 cl_kernel *out)
{
    for (int32_t i = 0; i < ctx->n_kernels; i++) {
        if (ctx->kernels[i].program == program && strcmp(ctx->kernels[i].name, name) == 0) {
            *out = ctx->kernels[i].kernel;
            return CLATTN_OK;
        }
    }
    if (strlen(name) >= sizeof ctx->kernels[0].name)
        return clattn__fail(ctx, CLATTN_ERR_INTERNAL, "kernel name too long: %s", name);
    if (ctx->n_kernels == ctx->cap_kernels) {
        int32_t cap = ctx->cap_kernels ? ctx->cap_kernels * 2 : 16;
        clattn__kernel_entry *grown = realloc(ctx->kernels, (size_t)cap * sizeof *grown);
        if (!grown)
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        ctx->kernels = grown;
        ctx->cap_kernels = cap;
    }
    cl_kernel k;
    clattn_status st = clattn__kernel_create(ctx, program, name, &k);
    if (st != CLATTN_OK)
        return st;
    clattn__kernel_entry *e = &ctx->kernels[ctx->n_kernels++];
    e->program = program;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->kernel = k;
    *out = k;
    return CLATTN_OK;
}

clattn_status clattn__programs_build_default(clattn_ctx *ctx)
{
    for (int i = 0; i < clattn__kernel_source_count; i++) {
        const char *name = clattn__kernel_sources[i].name;
        if (strcmp(name, "common.cl") == 0)
            continue; /* included in every program, not built alone */
        if (strcmp(name, "attention_backward.cl") == 0)
            continue; /* specialised per problem, built on first use */
        cl_program prog;
        /* attention.cl is specialised per head size at run time; its most
         * common form (D = Dv = 64, no options) is built here so a fresh
         * context has it ready. */
        clattn_status st = strcmp(name, "attention.cl") == 0
                               ? clattn__attention_prebuild(ctx)
                               : clattn__program_get(ctx, name, NULL, NULL, &prog);
        if (st != CLATTN_OK)
            return st;
    }
    return CLATTN_OK;
}

void clattn__programs_release(clattn_ctx *ctx)
{
    for (int32_t i = 0; i < ctx->n_kernels; i++)
        clReleaseKernel(ctx->kernels[i].kernel);
    free(ctx->kernels);
    ctx->kernels = NULL;
    ctx->n_kernels = ctx->cap_kernels = 0;
    for (int32_t i = 0; i < ctx->n_programs; i++) {
        clReleaseProgram(ctx->programs[i].program);
        free(ctx->programs[i].key);
    }
    free(ctx->programs);
    ctx->programs = NULL;
    ctx->n_programs = ctx->cap_programs = 0;
}
