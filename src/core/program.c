/* program.c - kernel sources (embedded or from CLATTN_KERNEL_DIR), program
 * builds with per-device options, the context's table of built programs and
 * its map of resolved kernels.
 *
 * Every program is core/common.cl + an optional generated prefix + the list
 * of files its clattn__program_spec names. Builds go through the binary
 * cache (cache.c): a hit skips the compiler, a miss compiles from source and
 * stores the binary. Nothing here knows any op: subsystems declare their
 * programs and kernels, and context creation (runtime/) warms them up. */
#include "core/core.h"

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

/* The cache key: everything that can change the binary (docs/ARCHITECTURE.md,
 * "Kernels, programs and the cache"). The full source (every file of the
 * program) enters as two independent 64-bit hashes; the rest verbatim. */
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

/* spec's file names separated by spaces (the program's name in keys,
 * logs and build errors); malloc'd, NULL when out of memory. */
static char *spec_files(const clattn__program_spec *spec)
{
    size_t n = 1;
    for (int i = 0; i < CLATTN_PROGRAM_MAX_SOURCES && spec->sources[i]; i++)
        n += strlen(spec->sources[i]) + 1;
    char *s = malloc(n), *p = s;
    if (!s)
        return NULL;
    for (int i = 0; i < CLATTN_PROGRAM_MAX_SOURCES && spec->sources[i]; i++)
        p += sprintf(p, "%s%s", i ? " " : "", spec->sources[i]);
    *p = '\0';
    return s;
}

/* The program's full source: common.cl, prefix, then spec's files. The
 * prefix comes before the files so that they can test the macros it
 * defines and call what it declares (the attention snippets'
 * CLATTN_HAS_MASK_MOD and clattn_mask_mod, which the helpers of
 * cl/attention/sdpa_common.cl use); in turn it sees only common.cl. */
static char *program_source(clattn_ctx *ctx, const clattn__program_spec *spec,
                            const char *prefix)
{
    char *source = kernel_text(ctx, "core/common.cl");
    if (source && prefix) {
        char *s = clattn__aprintf("%s\n%s\n", source, prefix);
        free(source);
        source = s;
        if (!source)
            clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (int i = 0; source && i < CLATTN_PROGRAM_MAX_SOURCES && spec->sources[i]; i++) {
        char *body = kernel_text(ctx, spec->sources[i]);
        char *s = body ? clattn__aprintf("%s\n%s", source, body) : NULL;
        if (body && !s)
            clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        free(body);
        free(source);
        source = s;
    }
    return source;
}

clattn_status clattn__program_get(clattn_ctx *ctx, const clattn__program_spec *spec,
                                  const char *options, const char *prefix, cl_program *out)
{
    char *files = spec_files(spec);
    char *key = files ? clattn__aprintf("%s\n%s %s\n%s", files, spec->options ? spec->options : "",
                                        options ? options : "", prefix ? prefix : "")
                      : NULL;
    if (!key) {
        free(files);
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (int32_t i = 0; i < ctx->n_programs; i++) {
        if (strcmp(ctx->programs[i].key, key) == 0) {
            free(key);
            free(files);
            *out = ctx->programs[i].program;
            return CLATTN_OK;
        }
    }
    if (ctx->n_programs == ctx->cap_programs) {
        int32_t cap = ctx->cap_programs ? ctx->cap_programs * 2 : 16;
        clattn__program *grown = realloc(ctx->programs, (size_t)cap * sizeof *grown);
        if (!grown) {
            free(key);
            free(files);
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        }
        ctx->programs = grown;
        ctx->cap_programs = cap;
    }

    char *source = program_source(ctx, spec, prefix);
    /* -w: some compilers (POCL's) print their warnings to the process's
     * stderr, and a library must not print; the kernels are kept clean of
     * warnings with clang (tools/check-kernels). */
    char *full_options = clattn__aprintf("-cl-std=CL1.2 -w %s %s %s", ctx->device_options,
                                         spec->options ? spec->options : "",
                                         options ? options : "");
    clattn_status st;
    if (!source)
        st = clattn__fail(ctx, CLATTN_ERR_IO, "%s", clattn_ctx_last_error(ctx));
    else if (!full_options)
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    else
        st = obtain_program(ctx, files, source, full_options, out);
    free(source);
    free(full_options);
    free(files);
    if (st != CLATTN_OK) {
        free(key);
        return st;
    }
    ctx->programs[ctx->n_programs].key = key;
    ctx->programs[ctx->n_programs].program = *out;
    ctx->n_programs++;
    return CLATTN_OK;
}

clattn_status clattn__program_prebuild(clattn_ctx *ctx, const clattn__program_spec *spec,
                                       const char *options)
{
    cl_program prog;
    return clattn__program_get(ctx, spec, options, NULL, &prog);
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

/* ---- the kernel map: (spec, variant) -> kernel, resolved once ---------- */

static size_t map_hash(const clattn__kernel_spec *spec, uint64_t variant)
{
    uint64_t h = (uint64_t)(uintptr_t)spec * 0x9e3779b97f4a7c15ull ^ variant * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ (h >> 29));
}

static cl_kernel map_find(const clattn_ctx *ctx, const clattn__kernel_spec *spec,
                          uint64_t variant)
{
    if (!ctx->cap_map)
        return NULL;
    size_t mask = (size_t)ctx->cap_map - 1;
    for (size_t i = map_hash(spec, variant) & mask;; i = (i + 1) & mask) {
        const clattn__kernel_slot *s = &ctx->kernel_map[i];
        if (!s->spec)
            return NULL;
        if (s->spec == spec && s->variant == variant)
            return s->kernel;
    }
}

static clattn_status map_insert(clattn_ctx *ctx, const clattn__kernel_spec *spec,
                                uint64_t variant, cl_kernel kernel)
{
    /* Kept at most half full, so probes stay short and always end. */
    if (2 * (ctx->n_map + 1) > ctx->cap_map) {
        int32_t cap = ctx->cap_map ? ctx->cap_map * 2 : 64;
        clattn__kernel_slot *grown = calloc((size_t)cap, sizeof *grown);
        if (!grown)
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        clattn__kernel_slot *old = ctx->kernel_map;
        int32_t old_cap = ctx->cap_map;
        ctx->kernel_map = grown;
        ctx->cap_map = cap;
        ctx->n_map = 0;
        for (int32_t i = 0; i < old_cap; i++)
            if (old[i].spec)
                map_insert(ctx, old[i].spec, old[i].variant, old[i].kernel);
        free(old);
    }
    size_t mask = (size_t)ctx->cap_map - 1;
    size_t i = map_hash(spec, variant) & mask;
    while (ctx->kernel_map[i].spec)
        i = (i + 1) & mask;
    ctx->kernel_map[i] = (clattn__kernel_slot){spec, variant, kernel};
    ctx->n_map++;
    return CLATTN_OK;
}

clattn_status clattn__kernel(clattn_ctx *ctx, const clattn__kernel_spec *spec, cl_kernel *out)
{
    if ((*out = map_find(ctx, spec, 0)) != NULL)
        return CLATTN_OK;
    cl_program prog;
    clattn_status st = clattn__program_get(ctx, spec->program, NULL, NULL, &prog);
    if (st == CLATTN_OK)
        st = clattn__kernel_get(ctx, prog, spec->name, out);
    return st == CLATTN_OK ? map_insert(ctx, spec, 0, *out) : st;
}

clattn_status clattn__kernel_variant(clattn_ctx *ctx, const clattn__kernel_spec *spec,
                                     uint64_t variant, char *(*make_options)(const void *arg),
                                     const void *arg, cl_kernel *out)
{
    if ((*out = map_find(ctx, spec, variant)) != NULL)
        return CLATTN_OK;
    char *options = make_options(arg);
    if (!options)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    cl_program prog;
    clattn_status st = clattn__program_get(ctx, spec->program, options, NULL, &prog);
    free(options);
    if (st == CLATTN_OK)
        st = clattn__kernel_get(ctx, prog, spec->name, out);
    return st == CLATTN_OK ? map_insert(ctx, spec, variant, *out) : st;
}

void clattn__programs_release(clattn_ctx *ctx)
{
    for (int32_t i = 0; i < ctx->n_kernels; i++)
        clReleaseKernel(ctx->kernels[i].kernel);
    free(ctx->kernels);
    ctx->kernels = NULL;
    ctx->n_kernels = ctx->cap_kernels = 0;
    free(ctx->kernel_map);
    ctx->kernel_map = NULL;
    ctx->n_map = ctx->cap_map = 0;
    for (int32_t i = 0; i < ctx->n_programs; i++) {
        clReleaseProgram(ctx->programs[i].program);
        free(ctx->programs[i].key);
    }
    free(ctx->programs);
    ctx->programs = NULL;
    ctx->n_programs = ctx->cap_programs = 0;
}
