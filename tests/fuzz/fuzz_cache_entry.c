/* fuzz_cache_entry.c - libFuzzer target for the program binary cache's
 * entry reader (src/core/cache.c, clattn__cache_load): each input is
 * written as the entry of a fixed key in a folder of this process under
 * /dev/shm, and loaded through a context that has only a cache folder and
 * a log (no device). A hit must be exactly the entry's binary; a miss of
 * an existing entry must log one line. Then the input is stored as a
 * binary and must load back identical (clattn__cache_store's round trip). */
#include "fuzz_files.h"

#include "core/core.h"

/* A key shaped like program.c's; the seeds (make_seed_corpus.py) use it. */
static const char KEY[] = "clattn-fuzz-key\nsrc=0123456789abcdef\nopts=-cl-std=CL1.2\n";

static int log_lines;

static void count_log(void *user, clattn_log_level level, const char *msg)
{
    (void)user, (void)level, (void)msg;
    log_lines++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct clattn_ctx ctx;
    char name[32];
    snprintf(name, sizeof name, "%016llx.bin",
             (unsigned long long)clattn__hash64(KEY, strlen(KEY), 0));
    ctx.cache_dir = (char *)fuzz_dir_get();
    ctx.log = count_log;
    ctx.log_level = CLATTN_LOG_DEBUG;

    fuzz_write_file(name, data, size);
    unsigned char *bin = NULL;
    size_t n = 0;
    log_lines = 0;
    size_t at = 8 + 8 + (sizeof KEY - 1) + 8 + 32; /* magic, lengths, key, digest */
    if (clattn__cache_load(&ctx, KEY, &bin, &n)) {
        if (size < at || n != size - at || memcmp(bin, data + at, n) != 0 || log_lines != 0)
            abort();
        free(bin);
    } else if (size > 0 && log_lines != 1) {
        abort();
    }

    if (size == 0)
        return 0;
    clattn__cache_store(&ctx, KEY, data, size);
    log_lines = 0;
    if (!clattn__cache_load(&ctx, KEY, &bin, &n) || n != size || memcmp(bin, data, size) != 0)
        abort();
    free(bin);
    return 0;
}
