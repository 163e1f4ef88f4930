/* test_cache.c - the program binary cache: miss then hit across two
 * contexts, corrupted and truncated entries fall back to a rebuild, an
 * unusable directory is not an error, and kernel-dir overrides (missing
 * file, syntax error with the compiler log in the message). */
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static clattn_ctx *make_ctx(const char *cache_dir, const char *kernel_dir, clattn_status want)
{
    clattn_ctx_params p = clattn_ctx_params_default();
    p.cache_dir = cache_dir;
    p.kernel_dir = kernel_dir;
    clattn_ctx *ctx = NULL;
    CHECK_STATUS(clattn_ctx_create(&p, &ctx), want);
    return ctx;
}

static clattn_build_stats stats_of(clattn_ctx *ctx)
{
    clattn_build_stats s;
    memset(&s, 0, sizeof s);
    if (ctx)
        CHECK_OK(clattn_ctx_build_stats(ctx, &s));
    return s;
}

/* Applies damage(path) to every cache entry; returns how many. */
static int damage_entries(const char *dir, void (*damage)(const char *path))
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        damage(path);
        n++;
    }
    closedir(d);
    return n;
}

static void flip_last_bytes(const char *path)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return;
    fseek(f, -16, SEEK_END);
    for (int i = 0; i < 16; i++)
        fputc(0x5a ^ i, f);
    fclose(f);
}

static void truncate_half(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    if (truncate(path, n / 2) != 0)
        fprintf(stderr, "truncate failed\n");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clattn-test-cache-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "FAIL: mkdtemp\n");
        return 1;
    }
    char cache[300];
    snprintf(cache, sizeof cache, "%s/nested/cache", tmpdir); /* created on demand */

    /* Cold: everything from source. Warm: everything from cache. */
    clattn_ctx *a = make_ctx(cache, NULL, CLATTN_OK);
    clattn_build_stats sa = stats_of(a);
    CHECK(sa.programs_from_source > 0 && sa.programs_from_cache == 0,
          "cold context: %d from source, %d from cache", sa.programs_from_source,
          sa.programs_from_cache);
    CHECK(sa.cache_enabled && strcmp(sa.cache_dir, cache) == 0, "cache dir '%s'", sa.cache_dir);
    clattn_ctx_destroy(a);
    clattn_ctx *b = make_ctx(cache, NULL, CLATTN_OK);
    clattn_build_stats sb = stats_of(b);
    CHECK(sb.programs_from_source == 0 && sb.programs_from_cache == sa.programs_from_source,
          "warm context: %d from source, %d from cache", sb.programs_from_source,
          sb.programs_from_cache);
    fprintf(stderr, "cold build %.1f ms, warm %.1f ms\n", sa.build_ms, sb.build_ms);
    /* The cached programs work: fill runs a kernel from the loaded binary. */
    if (b) {
        int64_t shape[1] = {100};
        float out[100];
        clattn_tensor *t = test_tensor(b, 1, shape, NULL);
        CHECK_OK(clattn_tensor_fill(t, 2.5f));
        CHECK_OK(clattn_tensor_read(t, out));
        CHECK(out[0] == 2.5f && out[99] == 2.5f, "fill from cached binary gave %g", out[99]);
        clattn_tensor_destroy(t);
    }
    clattn_ctx_destroy(b);

    /* Corrupted and truncated entries are misses, then rewritten. */
    int n = damage_entries(cache, flip_last_bytes);
    CHECK(n == sa.programs_from_source, "expected %d cache files, found %d",
          sa.programs_from_source, n);
    clattn_ctx *c = make_ctx(cache, NULL, CLATTN_OK);
    clattn_build_stats sc = stats_of(c);
    CHECK(sc.programs_from_source == sa.programs_from_source && sc.programs_from_cache == 0,
          "corrupted: %d from source, %d from cache", sc.programs_from_source,
          sc.programs_from_cache);
    clattn_ctx_destroy(c);
    damage_entries(cache, truncate_half);
    clattn_ctx *d = make_ctx(cache, NULL, CLATTN_OK);
    CHECK(stats_of(d).programs_from_cache == 0, "truncated entries must be misses");
    clattn_ctx_destroy(d);
    clattn_ctx *e = make_ctx(cache, NULL, CLATTN_OK);
    CHECK(stats_of(e).programs_from_source == 0, "rewritten entries must hit");
    clattn_ctx_destroy(e);

    /* Disabled, and unusable (a regular file where the directory should be). */
    clattn_ctx *f = make_ctx("off", NULL, CLATTN_OK);
    CHECK(!stats_of(f).cache_enabled && stats_of(f).programs_from_cache == 0, "cache off");
    clattn_ctx_destroy(f);
    char blocker[300];
    snprintf(blocker, sizeof blocker, "%s/blocker", tmpdir);
    test_write_text(blocker, "not a directory");
    char under_file[320];
    snprintf(under_file, sizeof under_file, "%s/sub", blocker);
    clattn_ctx *g = make_ctx(under_file, NULL, CLATTN_OK);
    CHECK(g != NULL, "an unusable cache directory must not fail the context");
    clattn_ctx_destroy(g);

    /* Kernel directory: a missing file is an I/O error naming it; a syntax
     * error is a build error carrying the compiler's log. */
    char kdir[300], path[400];
    snprintf(kdir, sizeof kdir, "%s/kernels", tmpdir);
    mkdir(kdir, 0755);
    clattn_ctx *h = make_ctx("off", kdir, CLATTN_ERR_IO);
    CHECK(strstr(clattn_last_error(), "core/common.cl") != NULL, "message: %s", clattn_last_error());
    clattn_ctx_destroy(h);
    snprintf(path, sizeof path, "%s/core", kdir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/core/common.cl", kdir);
    test_write_text(path, "/* empty common */\n");
    snprintf(path, sizeof path, "%s/core/elementwise.cl", kdir);
    test_write_text(path, "__kernel void fill_f32(__global float *x) { x[0] = undeclared_name; }\n");
    clattn_ctx *k = make_ctx("off", kdir, CLATTN_ERR_BUILD);
    CHECK(strstr(clattn_last_error(), "undeclared_name") != NULL &&
              strstr(clattn_last_error(), "core/elementwise.cl") != NULL,
          "build error should carry the log: %s", clattn_last_error());
    clattn_ctx_destroy(k);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return test_summary("test_cache");
}
