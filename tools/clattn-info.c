/* clattn-info - lists OpenCL devices, says which one clattn picks, and with
 * --build compiles the kernels there and reports the time and cache use. */
#include <clattn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clattn-info [--json] [--build] [--device SEL]\n"
            "  Lists every OpenCL platform and device with its capabilities and\n"
            "  the device clattn would use (--device, else $CLATTN_DEVICE, else\n"
            "  the first GPU, else the first device).\n"
            "  --build   create a context on that device: build or load the\n"
            "            kernels and report time and cache hits\n"
            "  --json    machine-readable output\n");
}

static const char *type_name(clattn_device_type t)
{
    switch (t) {
    case CLATTN_DEVICE_CPU: return "cpu";
    case CLATTN_DEVICE_GPU: return "gpu";
    case CLATTN_DEVICE_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

/* Prints s as a JSON string literal. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_device_text(const clattn_device_info *d, bool chosen)
{
    printf("%s device %d (platform %d, device %d)%s\n", chosen ? "*" : " ", d->flat_index,
           d->platform_index, d->device_index, chosen ? "  <- selected" : "");
    printf("    platform        %s (%s)\n", d->platform_name, d->platform_version);
    printf("    name            %s\n", d->device_name);
    printf("    vendor          %s\n", d->vendor);
    printf("    type            %s\n", type_name(d->type));
    printf("    version         %s\n", d->device_version);
    printf("    driver          %s\n", d->driver_version);
    printf("    OpenCL C        %s\n", d->opencl_c_version);
    printf("    compute units   %u @ %u MHz\n", d->compute_units, d->max_clock_mhz);
    printf("    max work-group  %zu\n", d->max_work_group_size);
    printf("    local memory    %llu KiB\n", (unsigned long long)(d->local_mem_bytes >> 10));
    printf("    global memory   %llu MiB\n", (unsigned long long)(d->global_mem_bytes >> 20));
    printf("    max allocation  %llu MiB\n", (unsigned long long)(d->max_alloc_bytes >> 20));
    printf("    fp16 %s, fp64 %s, subgroups %s\n", d->fp16 ? "yes" : "no", d->fp64 ? "yes" : "no",
           d->subgroups ? "yes" : "no");
}

static void print_device_json(const clattn_device_info *d, bool chosen)
{
    printf("    {\"index\": %d, \"platform_index\": %d, \"device_index\": %d, \"selected\": %s,\n",
           d->flat_index, d->platform_index, d->device_index, chosen ? "true" : "false");
    printf("     \"platform\": ");
    json_str(d->platform_name);
    printf(", \"platform_version\": ");
    json_str(d->platform_version);
    printf(",\n     \"name\": ");
    json_str(d->device_name);
    printf(", \"vendor\": ");
    json_str(d->vendor);
    printf(", \"type\": \"%s\",\n     \"version\": ", type_name(d->type));
    json_str(d->device_version);
    printf(", \"driver\": ");
    json_str(d->driver_version);
    printf(", \"opencl_c\": ");
    json_str(d->opencl_c_version);
    printf(",\n     \"compute_units\": %u, \"max_clock_mhz\": %u, \"max_work_group_size\": %zu,\n",
           d->compute_units, d->max_clock_mhz, d->max_work_group_size);
    printf("     \"local_mem_bytes\": %llu, \"global_mem_bytes\": %llu, \"max_alloc_bytes\": %llu,\n",
           (unsigned long long)d->local_mem_bytes, (unsigned long long)d->global_mem_bytes,
           (unsigned long long)d->max_alloc_bytes);
    printf("     \"fp16\": %s, \"fp64\": %s, \"subgroups\": %s}", d->fp16 ? "true" : "false",
           d->fp64 ? "true" : "false", d->subgroups ? "true" : "false");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    bool json = false, build = false;
    const char *selector = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--build") == 0)
            build = true;
        else if (strcmp(argv[i], "--device") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "clattn-info: --device needs a value\n");
                return 2;
            }
            selector = argv[++i];
        }
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "clattn-info: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    int32_t count = 0;
    if (clattn_device_count(&count) != CLATTN_OK) {
        fprintf(stderr, "clattn-info: %s\n", clattn_last_error());
        return 1;
    }
    int32_t chosen = -1;
    clattn_status sel = clattn_device_select(selector, &chosen);
    char sel_error[4096];
    snprintf(sel_error, sizeof sel_error, "%s", clattn_last_error());

    if (json)
        printf("{\n  \"clattn_version\": \"%s\",\n  \"devices\": [\n", clattn_version());
    else
        printf("clattn %s: %d OpenCL device%s\n", clattn_version(), count, count == 1 ? "" : "s");
    for (int32_t i = 0; i < count; i++) {
        clattn_device_info d;
        if (clattn_device_get_info(i, &d) != CLATTN_OK)
            continue;
        if (json) {
            print_device_json(&d, i == chosen);
            printf("%s\n", i + 1 < count ? "," : "");
        } else {
            print_device_text(&d, i == chosen);
        }
    }
    if (json) {
        printf("  ],\n  \"selected\": %d", sel == CLATTN_OK ? chosen : -1);
        if (sel != CLATTN_OK) {
            printf(",\n  \"selection_error\": ");
            json_str(sel_error);
        }
    }
    /* The failure goes to stderr in both formats (a script sees why). */
    if (sel != CLATTN_OK)
        fprintf(stderr, "clattn-info: no device selected: %s\n", sel_error);

    int rc = sel == CLATTN_OK ? 0 : 1;
    if (build && sel == CLATTN_OK) {
        clattn_ctx_params p = clattn_ctx_params_default();
        char index[16];
        snprintf(index, sizeof index, "%d", chosen);
        p.device = index;
        double t0 = now_ms();
        clattn_ctx *ctx = NULL;
        clattn_status st = clattn_ctx_create(&p, &ctx);
        double ms = now_ms() - t0;
        clattn_build_stats bs;
        memset(&bs, 0, sizeof bs);
        if (st == CLATTN_OK)
            clattn_ctx_build_stats(ctx, &bs);
        if (json) {
            printf(",\n  \"build\": {\"status\": \"%s\", \"context_ms\": %.1f, \"build_ms\": %.1f, "
                   "\"programs_from_source\": %d, \"programs_from_cache\": %d, "
                   "\"attention_kernel\": \"%s\", \"cache_dir\": ",
                   clattn_status_str(st), ms, bs.build_ms, bs.programs_from_source,
                   bs.programs_from_cache, st == CLATTN_OK ? clattn_ctx_attention_kernel(ctx) : "");
            json_str(bs.cache_dir);
            if (st != CLATTN_OK) {
                printf(", \"error\": ");
                json_str(clattn_last_error());
            }
            printf("}");
        } else if (st == CLATTN_OK) {
            printf("build: context created in %.1f ms (programs: %.1f ms); %d from source, "
                   "%d from cache (%s); cache %s\n",
                   ms, bs.build_ms, bs.programs_from_source, bs.programs_from_cache,
                   bs.programs_from_cache && !bs.programs_from_source ? "cache hit"
                   : bs.programs_from_cache                           ? "partial hit"
                                                                      : "cache miss",
                   bs.cache_enabled ? bs.cache_dir : "disabled");
            printf("attention kernels: %s\n", clattn_ctx_attention_kernel(ctx));
        } else {
            printf("build failed: %s: %s\n", clattn_status_str(st), clattn_last_error());
        }
        if (st != CLATTN_OK)
            rc = 1;
        clattn_ctx_destroy(ctx);
    }
    if (json)
        printf("\n}\n");
    return rc;
}
