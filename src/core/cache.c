/* cache.c - the on-disk program binary cache.
 *
 * One file per program, named by a hash of its key. The file holds the key
 * text itself, so a load compares the whole key (a hash collision or an
 * entry for another device or driver is a miss), and a checksum of the
 * binary (a truncated or corrupted file is a miss). Writes go to a
 * temporary file in the same directory and are renamed into place, so a
 * reader never sees half a file. Nothing here can fail the caller.
 *
 * File layout (integers little-endian uint64):
 *   "CLATTNB1" | key length | key bytes | binary length | binary checksum |
 *   binary bytes */
#include "core/core.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = {'C', 'L', 'A', 'T', 'T', 'N', 'B', '1'};
/* Binaries beyond this are surely not ours; refuse before allocating. */
#define MAX_BINARY_BYTES ((uint64_t)1 << 30)

static char *entry_path(const clattn_ctx *ctx, const char *key)
{
    return clattn__aprintf("%s/%016llx.bin", ctx->cache_dir,
                           (unsigned long long)clattn__hash64(key, strlen(key), 0));
}

static bool read_u64(FILE *f, uint64_t *v)
{
    unsigned char b[8];
    if (fread(b, 1, 8, f) != 8)
        return false;
    *v = 0;
    for (int i = 7; i >= 0; i--)
        *v = (*v << 8) | b[i];
    return true;
}

static bool write_u64(FILE *f, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return fwrite(b, 1, 8, f) == 8;
}

bool clattn__cache_load(const clattn_ctx *ctx, const char *key, unsigned char **binary,
                        size_t *size)
{
    char *path = entry_path(ctx, key);
    FILE *f = path ? fopen(path, "rb") : NULL;
    free(path);
    if (!f)
        return false;
    bool ok = false;
    char magic[8];
    uint64_t key_len, bin_len, checksum;
    size_t want = strlen(key);
    char *stored_key = NULL;
    unsigned char *bin = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, MAGIC, 8) != 0)
        goto done;
    if (!read_u64(f, &key_len) || key_len != want)
        goto done;
    if (!(stored_key = malloc(want + 1)) || fread(stored_key, 1, want, f) != want ||
        memcmp(stored_key, key, want) != 0)
        goto done;
    if (!read_u64(f, &bin_len) || !read_u64(f, &checksum) || bin_len == 0 ||
        bin_len > MAX_BINARY_BYTES)
        goto done;
    if (!(bin = malloc((size_t)bin_len)) || fread(bin, 1, (size_t)bin_len, f) != bin_len)
        goto done;
    if (fgetc(f) != EOF || clattn__hash64(bin, (size_t)bin_len, 0) != checksum)
        goto done;
    ok = true;
done:
    fclose(f);
    free(stored_key);
    if (ok) {
        *binary = bin;
        *size = (size_t)bin_len;
    } else {
        free(bin);
        clattn__log(ctx, CLATTN_LOG_DEBUG, "cache: entry unusable, treating as a miss");
    }
    return ok;
}

/* mkdir -p; true if the directory exists afterwards. */
static bool make_dirs(const char *dir)
{
    char *p = clattn__strdup(dir);
    if (!p)
        return false;
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                free(p);
                return false;
            }
            *s = '/';
        }
    }
    bool ok = mkdir(p, 0755) == 0 || errno == EEXIST;
    free(p);
    struct stat st;
    return ok && stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

void clattn__cache_store(const clattn_ctx *ctx, const char *key, const unsigned char *binary,
                         size_t size)
{
    if (!make_dirs(ctx->cache_dir)) {
        clattn__log(ctx, CLATTN_LOG_WARN, "cache: cannot create directory %s: %s",
                    ctx->cache_dir, strerror(errno));
        return;
    }
    static _Atomic unsigned counter; /* threads may share a cache directory */
    char *path = entry_path(ctx, key);
    char *tmp = clattn__aprintf("%s/.tmp-%ld-%u-%p", ctx->cache_dir, (long)getpid(), counter++,
                                (const void *)ctx);
    FILE *f = (path && tmp) ? fopen(tmp, "wb") : NULL;
    bool ok = false;
    if (f) {
        size_t n = strlen(key);
        ok = fwrite(MAGIC, 1, 8, f) == 8 && write_u64(f, n) && fwrite(key, 1, n, f) == n &&
             write_u64(f, size) && write_u64(f, clattn__hash64(binary, size, 0)) &&
             fwrite(binary, 1, size, f) == size;
        ok = (fclose(f) == 0) && ok;
        ok = ok && rename(tmp, path) == 0;
        if (!ok)
            remove(tmp);
    }
    if (!ok)
        clattn__log(ctx, CLATTN_LOG_WARN, "cache: cannot write %s", path ? path : "entry");
    free(path);
    free(tmp);
}
