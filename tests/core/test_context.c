/* test_context.c - context creation, device selection rules, interop
 * creation on caller's OpenCL objects, status names and error messages. */
#include "testutil.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static void log_to_counter(void *user, clattn_log_level level, const char *msg)
{
    (void)level;
    (void)msg;
    (*(int *)user)++;
}

static void test_selection(void)
{
    int32_t count = -1;
    CHECK_OK(clattn_device_count(&count));
    CHECK(count >= 1, "expected at least one OpenCL device, found %d", count);
    if (count < 1)
        return;

    /* The default ($CLATTN_DEVICE or first GPU/first device) is selectable. */
    int32_t def = -1;
    CHECK_OK(clattn_device_select(NULL, &def));
    CHECK(def >= 0 && def < count, "default selection %d out of range", def);
    clattn_device_info info;
    CHECK_OK(clattn_device_get_info(def, &info));
    CHECK(info.flat_index == def, "flat_index %d != %d", info.flat_index, def);
    CHECK(info.device_name[0] != '\0', "device has no name");
    CHECK(info.max_work_group_size >= 1 && info.max_alloc_bytes > 0 && info.compute_units > 0,
          "capabilities not filled in");

    /* By flat index, by platform:device, and by case-insensitive substring. */
    char sel[64];
    int32_t got = -1;
    snprintf(sel, sizeof sel, "%d", def);
    CHECK_OK(clattn_device_select(sel, &got));
    CHECK(got == def, "select '%s' gave %d", sel, got);
    snprintf(sel, sizeof sel, "%d:%d", info.platform_index, info.device_index);
    CHECK_OK(clattn_device_select(sel, &got));
    CHECK(got == def, "select '%s' gave %d", sel, got);
    char upper[64];
    snprintf(upper, sizeof upper, "%.8s", info.device_name);
    for (char *p = upper; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    CHECK_OK(clattn_device_select(upper, &got));
    clattn_device_info picked;
    CHECK_OK(clattn_device_get_info(got, &picked));
    CHECK(strncmp(picked.device_name, info.device_name, strlen(upper)) == 0 ||
              strstr(picked.platform_name, upper) != NULL || got <= def,
          "substring '%s' picked '%s'", upper, picked.device_name);

    /* No match: a clear NO_DEVICE error listing what exists. */
    CHECK_STATUS(clattn_device_select("no-such-device-xyz", &got), CLATTN_ERR_NO_DEVICE);
    CHECK(strstr(clattn_last_error(), "no-such-device-xyz") != NULL &&
              strstr(clattn_last_error(), info.device_name) != NULL,
          "message should name the selector and list devices: %s", clattn_last_error());
    snprintf(sel, sizeof sel, "%d", count + 5);
    CHECK_STATUS(clattn_device_select(sel, &got), CLATTN_ERR_NO_DEVICE);
    CHECK_STATUS(clattn_device_select("99:0", &got), CLATTN_ERR_NO_DEVICE);
    CHECK_STATUS(clattn_device_get_info(count, &info), CLATTN_ERR_INVALID_ARG);

    clattn_ctx_params p = clattn_ctx_params_default();
    p.device = "no-such-device-xyz";
    p.cache_dir = "off";
    clattn_ctx *ctx = (clattn_ctx *)&p; /* must be reset to NULL on failure */
    CHECK_STATUS(clattn_ctx_create(&p, &ctx), CLATTN_ERR_NO_DEVICE);
    CHECK(ctx == NULL, "out handle not cleared on failure");

    /* Unknown kernel-family names are refused by name. */
    p = clattn_ctx_params_default();
    p.cache_dir = "off";
    p.attention_kernel = "fast";
    CHECK_STATUS(clattn_ctx_create(&p, &ctx), CLATTN_ERR_INVALID_ARG);
    CHECK(ctx == NULL && strstr(clattn_last_error(), "attention kernel 'fast' unknown"),
          "message: %s", clattn_last_error());
    p.attention_kernel = NULL;
    p.gemm_kernel = "openblas";
    CHECK_STATUS(clattn_ctx_create(&p, &ctx), CLATTN_ERR_INVALID_ARG);
    CHECK(ctx == NULL && strstr(clattn_last_error(), "GEMM kernel 'openblas' unknown"),
          "message: %s", clattn_last_error());

    /* The family actually run: as asked, except that llvmpipe always runs
     * "tiled" (its loop limit, see clattn_ctx_params.attention_kernel). */
    CHECK(clattn_ctx_attention_kernel(NULL) == NULL, "NULL ctx has a kernel family");
    static const char *const families[] = {"cpu", "tiled"};
    for (int f = 0; f < 2; f++) {
        p = clattn_ctx_params_default();
        p.cache_dir = "off";
        p.attention_kernel = families[f];
        CHECK_OK(clattn_ctx_create(&p, &ctx));
        if (!ctx)
            continue;
        clattn_device_info info;
        CHECK_OK(clattn_ctx_device_info(ctx, &info));
        const char *want = strstr(info.device_name, "llvmpipe") ? "tiled" : families[f];
        CHECK(strcmp(clattn_ctx_attention_kernel(ctx), want) == 0, "asked %s, runs %s",
              families[f], clattn_ctx_attention_kernel(ctx));
        clattn_ctx_destroy(ctx);
    }
}

static void test_create_and_interop(void)
{
    int logged = 0;
    clattn_ctx_params p = clattn_ctx_params_default();
    p.log = log_to_counter;
    p.log_user = &logged;
    p.log_level = CLATTN_LOG_DEBUG;
    clattn_ctx *ctx = NULL;
    CHECK_OK(clattn_ctx_create(&p, &ctx));
    if (!ctx)
        return;
    CHECK(logged > 0, "log callback never called at DEBUG level");
    CHECK(strcmp(clattn_ctx_last_error(ctx), "") == 0, "fresh context has an error");
    CHECK_OK(clattn_ctx_finish(ctx));

    /* A second context on the caller's own OpenCL objects. */
    cl_context cl_ctx = clattn_ctx_cl_context(ctx);
    cl_command_queue queue = clattn_ctx_cl_queue(ctx);
    CHECK(cl_ctx && queue && clattn_ctx_cl_device(ctx), "OpenCL handles missing");
    clattn_ctx *ctx2 = NULL;
    CHECK_OK(clattn_ctx_create_from_cl(cl_ctx, queue, NULL, &ctx2));
    if (ctx2) {
        /* Works on its own: a tensor round trip through the shared queue. */
        int64_t shape[1] = {5};
        float in[5] = {1, 2, 3, 4, 5}, out[5] = {0};
        clattn_tensor *t = test_tensor(ctx2, 1, shape, in);
        CHECK_OK(clattn_tensor_read(t, out));
        CHECK(memcmp(in, out, sizeof in) == 0, "interop context round trip");
        clattn_tensor_destroy(t);
        clattn_device_info a, b;
        clattn_ctx_device_info(ctx, &a);
        clattn_ctx_device_info(ctx2, &b);
        CHECK(strcmp(a.device_name, b.device_name) == 0, "interop device differs");
    }
    clattn_ctx_destroy(ctx);  /* the interop context retained what it uses */
    if (ctx2)
        CHECK_OK(clattn_ctx_finish(ctx2));
    clattn_ctx_destroy(ctx2);

    CHECK_STATUS(clattn_ctx_create_from_cl(NULL, NULL, NULL, &ctx2), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_ctx_create(NULL, NULL), CLATTN_ERR_INVALID_ARG);
    clattn_ctx_destroy(NULL); /* accepted */
}

static void test_status_names(void)
{
    const clattn_status all[] = {CLATTN_OK, CLATTN_ERR_INVALID_ARG, CLATTN_ERR_NO_DEVICE,
                                 CLATTN_ERR_BUILD, CLATTN_ERR_OUT_OF_MEMORY, CLATTN_ERR_IO,
                                 CLATTN_ERR_FORMAT, CLATTN_ERR_UNSUPPORTED, CLATTN_ERR_OPENCL,
                                 CLATTN_ERR_INTERNAL, CLATTN_ERR_CONTEXT_FULL};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        const char *s = clattn_status_str(all[i]);
        CHECK(s && strncmp(s, "CLATTN_", 7) == 0, "status %d has name %s", all[i], s);
        CHECK(i == 0 || all[i] < 0, "error codes are negative");
    }
    CHECK(strcmp(clattn_status_str((clattn_status)-999), "CLATTN_ERR_UNKNOWN") == 0,
          "unknown status name");
    CHECK(strcmp(clattn_version(), CLATTN_VERSION_STRING) == 0, "version mismatch");
}

int main(void)
{
    test_selection();
    test_create_and_interop();
    test_status_names();
    return test_summary("test_context");
}
