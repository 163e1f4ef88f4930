/* fuzz_files.h - for the targets whose parser reads a folder: one input is
 * split at its NUL bytes into parts (JSON and vocab.txt hold none), and
 * part i becomes the file names[i] in a folder of this process under
 * /dev/shm; an empty or missing part means the file is absent. The folder
 * is made once (mkdtemp) and removed at exit (or, after a crash, by the
 * next target that starts), so nothing is written outside /dev/shm and
 * every input sees only its own files. */
#ifndef CLATTN_FUZZ_FILES_H
#define CLATTN_FUZZ_FILES_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir[64];

static int fuzz_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void fuzz_dir_remove(void)
{
    if (fuzz_dir[0])
        nftw(fuzz_dir, fuzz_remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* A crash ends the process without atexit: the folders of processes that
 * are gone are removed when the next one starts. */
static void fuzz_remove_stale(void)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        int pid;
        char path[300];
        if (sscanf(e->d_name, "clattn-fuzz-%d-", &pid) == 1 && pid > 0 &&
            kill(pid, 0) != 0 && errno == ESRCH) {
            snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
            nftw(path, fuzz_remove_one, 8, FTW_DEPTH | FTW_PHYS);
        }
    }
    if (d)
        closedir(d);
}

/* The folder (made on first use; abort() if /dev/shm is unusable). */
static inline const char *fuzz_dir_get(void)
{
    if (!fuzz_dir[0]) {
        fuzz_remove_stale();
        snprintf(fuzz_dir, sizeof fuzz_dir, "/dev/shm/clattn-fuzz-%d-XXXXXX", (int)getpid());
        if (!mkdtemp(fuzz_dir))
            abort();
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir;
}

static inline void fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir_get(), name);
    const char *slash = strrchr(name, '/');
    if (slash) { /* one level of subfolder, e.g. 1_Pooling/config.json */
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%.*s", fuzz_dir_get(), (int)(slash - name), name);
        mkdir(sub, 0700);
    }
    if (size == 0) {
        unlink(path);
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);
}

/* Writes the parts of data[0..size) as names[0..n); returns the folder. */
static inline const char *fuzz_write_parts(const uint8_t *data, size_t size, const char *const *names,
                                    int n)
{
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t end = at;
        while (end < size && data[end] != 0)
            end++;
        fuzz_write_file(names[i], data + (at < size ? at : size), at < size ? end - at : 0);
        at = end + 1;
    }
    return fuzz_dir_get();
}

#endif
