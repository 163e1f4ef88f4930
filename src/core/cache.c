/* cache.c - the on-disk program binary cache.
 *
 * One file per program, named by a hash of its key. The file holds the key
 * text itself, so a load compares the whole key (a hash collision or an
 * entry for another device or driver is a miss), and a SHA-256 of the key
 * and the binary together, so a truncated or corrupted file, or a binary
 * copied in from another entry, is a miss. Writes go to a temporary file in
 * the same directory and are renamed into place, so a reader never sees
 * half a file. Nothing here can fail the caller: every problem is a miss
 * (load) or no entry (store) and a line in the log.
 *
 * Trust: POCL runs a cached binary as native code inside the process, so
 * whoever can write the cache can run code as the user. Like ssh and pip,
 * the cache is used only when the directory and each entry are owned by
 * the effective user and not writable by group or others; directories it
 * creates are mode 0700, entries 0600. The hash cannot stop someone who can
 * write there (they can recompute it); the ownership rules do, and the
 * hash catches accidents (a truncated write, a copied file, bit rot).
 * Entries are opened O_NONBLOCK | O_NOFOLLOW and checked with fstat to be
 * regular files, so a FIFO or a symlink planted under an entry's name is a
 * miss, never a hang.
 *
 * File layout (integers little-endian uint64):
 *   "CLATTNB2" | key length | key bytes | binary length |
 *   SHA-256(key length | key bytes | binary length | binary bytes) (32 bytes) |
 *   binary bytes */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_NOFOLLOW
#define O_NOFOLLOW 0
#endif
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

static const char MAGIC[8] = {'C', 'L', 'A', 'T', 'T', 'N', 'B', '2'};
#define DIGEST_BYTES 32
/* Binaries beyond this are surely not ours; refuse before allocating. */
#define MAX_BINARY_BYTES ((uint64_t)1 << 30)
/* Keys are a few hundred bytes (program.c, cache_key). */
#define MAX_KEY_BYTES ((uint64_t)1 << 20)
#define HEADER_BYTES (8 + 8) /* magic, key length */

static char *entry_path(const clattn_ctx *ctx, const char *key)
{
    return clattn__aprintf("%s/%016llx.bin", ctx->cache_dir,
                           (unsigned long long)clattn__hash64(key, strlen(key), 0));
}

static uint64_t get_u64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

static void put_u64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

/* The entry's digest: the key and the binary with their lengths, so two
 * entries' digests differ even when their binaries are the same bytes. */
static void entry_digest(const char *key, size_t key_len, const unsigned char *bin,
                         size_t bin_len, unsigned char digest[DIGEST_BYTES])
{
    unsigned char n[8];
    clattn__sha256_state s;
    clattn__sha256_init(&s);
    put_u64(n, key_len);
    clattn__sha256_update(&s, n, 8);
    clattn__sha256_update(&s, key, key_len);
    put_u64(n, bin_len);
    clattn__sha256_update(&s, n, 8);
    clattn__sha256_update(&s, bin, bin_len);
    clattn__sha256_final(&s, digest);
}

/* Why st (of something at path) must not be trusted, or NULL when it may. */
static const char *untrusted(const struct stat *st)
{
    if (st->st_uid != geteuid())
        return "owned by another user";
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return "writable by group or others";
    return NULL;
}

/* true when the cache directory exists and may be used; logs why not
 * (a missing directory is silent: it is simply empty). */
static bool dir_trusted(const clattn_ctx *ctx)
{
    struct stat st;
    if (stat(ctx->cache_dir, &st) != 0)
        return false;
    const char *why = S_ISDIR(st.st_mode) ? untrusted(&st) : "not a directory";
    if (why) {
        clattn__log(ctx, CLATTN_LOG_WARN, "cache: not using %s: %s (mode %03o, uid %ld)",
                    ctx->cache_dir, why, (unsigned)(st.st_mode & 0777), (long)st.st_uid);
        return false;
    }
    return true;
}

/* Reads exactly size bytes; false on a short read or an error. */
static bool read_all(int fd, unsigned char *p, size_t size)
{
    while (size > 0) {
        ssize_t r = read(fd, p, size);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r, size -= (size_t)r;
    }
    return true;
}

/* Test hook (clattn__test_cache_write_limit): bytes one entry may write
 * before its writes fail with ENOSPC; negative: no limit. */
static _Atomic long long write_limit = -1;

void clattn__test_cache_write_limit(long long bytes) { atomic_store(&write_limit, bytes); }

static bool write_all(int fd, const void *data, size_t size, long long *budget)
{
    const unsigned char *p = data;
    while (size > 0) {
        if (*budget >= 0 && (long long)size > *budget) {
            /* As a full disk would: what fits is written, then ENOSPC. */
            if (*budget > 0 && write(fd, p, (size_t)*budget) > 0)
                *budget = 0;
            errno = ENOSPC;
            return false;
        }
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w, size -= (size_t)w;
        if (*budget >= 0)
            *budget -= w;
    }
    return true;
}

/* Opens the entry at path for reading if it is a trusted regular file;
 * returns the descriptor and its size, or -1 with *why set (NULL: no
 * entry, which is an ordinary miss). */
static int open_entry(const char *path, off_t *size, const char **why)
{
    *why = NULL;
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            *why = errno == ELOOP ? "a symbolic link" : strerror(errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0)
        *why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        *why = "not a regular file";
    else
        *why = untrusted(&st);
    if (*why) {
        close(fd);
        return -1;
    }
    *size = st.st_size;
    return fd;
}

bool clattn__cache_load(const clattn_ctx *ctx, const char *key, unsigned char **binary,
                        size_t *size)
{
    if (!dir_trusted(ctx))
        return false;
    char *path = entry_path(ctx, key);
    if (!path)
        return false;
    const char *why = NULL;
    off_t file_size = 0;
    int fd = open_entry(path, &file_size, &why);
    unsigned char *file = NULL, *bin = NULL;
    size_t want = strlen(key);
    bool ok = false;
    if (fd < 0)
        goto done;
    /* The whole entry is read at once: its size is known and bounded. */
    uint64_t max = HEADER_BYTES + MAX_KEY_BYTES + 8 + DIGEST_BYTES + MAX_BINARY_BYTES;
    if (file_size < HEADER_BYTES || (uint64_t)file_size > max) {
        why = "wrong size";
        goto done;
    }
    size_t n = (size_t)file_size;
    if (!(file = malloc(n)) || !read_all(fd, file, n)) {
        why = file ? "short read" : "out of host memory";
        goto done;
    }
    why = "malformed or for another key";
    if (memcmp(file, MAGIC, 8) != 0 || get_u64(file + 8) != want)
        goto done;
    size_t at = HEADER_BYTES;
    if (n - at < want + 8 + DIGEST_BYTES || memcmp(file + at, key, want) != 0)
        goto done;
    at += want;
    uint64_t bin_len = get_u64(file + at);
    at += 8;
    const unsigned char *stored = file + at;
    at += DIGEST_BYTES;
    if (bin_len == 0 || bin_len != n - at) {
        why = "truncated or padded";
        goto done;
    }
    unsigned char digest[DIGEST_BYTES];
    entry_digest(key, want, file + at, (size_t)bin_len, digest);
    if (memcmp(digest, stored, DIGEST_BYTES) != 0) {
        why = "content hash mismatch";
        goto done;
    }
    if (!(bin = malloc((size_t)bin_len))) {
        why = "out of host memory";
        goto done;
    }
    memcpy(bin, file + at, (size_t)bin_len);
    *binary = bin;
    *size = (size_t)bin_len;
    ok = true;
done:
    if (fd >= 0)
        close(fd);
    if (!ok && why)
        clattn__log(ctx, CLATTN_LOG_WARN, "cache: entry %s unusable (%s), rebuilding", path,
                    why);
    free(file);
    free(path);
    return ok;
}

/* mkdir -p with mode 0700 for each directory it creates (existing ones are
 * left as they are); true if the directory exists afterwards. */
static bool make_dirs(const char *dir)
{
    char *p = clattn__strdup(dir);
    if (!p)
        return false;
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                free(p);
                return false;
            }
            *s = '/';
        }
    }
    bool ok = mkdir(p, 0700) == 0 || errno == EEXIST;
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
    if (!dir_trusted(ctx))
        return;
    static _Atomic unsigned counter; /* threads may share a cache directory */
    char *path = entry_path(ctx, key);
    char *tmp = clattn__aprintf("%s/.tmp-%ld-%u-%p", ctx->cache_dir, (long)getpid(), counter++,
                                (const void *)ctx);
    /* O_EXCL | O_NOFOLLOW: never write through something planted there. */
    int fd = (path && tmp) ? open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                  0600)
                           : -1;
    int err = fd < 0 ? errno : 0;
    bool ok = false;
    if (fd >= 0) {
        size_t n = strlen(key);
        unsigned char head[HEADER_BYTES], mid[8 + DIGEST_BYTES];
        memcpy(head, MAGIC, 8);
        put_u64(head + 8, n);
        put_u64(mid, size);
        entry_digest(key, n, binary, size, mid + 8);
        long long budget = atomic_load(&write_limit);
        ok = write_all(fd, head, sizeof head, &budget) && write_all(fd, key, n, &budget) &&
             write_all(fd, mid, sizeof mid, &budget) && write_all(fd, binary, size, &budget);
        if (!ok)
            err = errno;
        ok = (close(fd) == 0) && ok;
        /* rename is atomic: two processes storing the same entry leave one
         * whole file, either one (they are the same program). */
        if (ok && rename(tmp, path) != 0) {
            err = errno;
            ok = false;
        }
        if (!ok)
            unlink(tmp);
    }
    if (!ok)
        clattn__log(ctx, CLATTN_LOG_WARN, "cache: cannot write %s: %s", path ? path : "entry",
                    err ? strerror(err) : "write failed");
    free(path);
    free(tmp);
}
