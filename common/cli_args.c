/* cli_args.c - see cli_args.h. */
#include "cli_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool cli_int(const char *tool, const char *option, const char *text, int64_t lo, int64_t hi,
             int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || end == text || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        fprintf(stderr, "%s: %s: '%s' is not an integer in [%lld, %lld]\n", tool, option,
                text ? text : "(missing)", (long long)lo, (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_double(const char *tool, const char *option, const char *text, double lo, double hi,
                double *out)
{
    char *end = NULL;
    errno = 0;
    double v = text ? strtod(text, &end) : 0;
    if (!text || end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || v < lo ||
        v > hi) {
        fprintf(stderr, "%s: %s: '%s' is not a number in [%g, %g]\n", tool, option,
                text ? text : "(missing)", lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_int_list(const char *tool, const char *option, const char *text, int64_t lo,
                  int64_t hi, int32_t **out, int32_t *count)
{
    *out = NULL;
    *count = 0;
    if (!text || !*text) {
        fprintf(stderr, "%s: %s: the list is empty\n", tool, option);
        return false;
    }
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    if (n > (size_t)INT32_MAX / 2) {
        fprintf(stderr, "%s: %s: too many values\n", tool, option);
        return false;
    }
    int32_t *v = malloc(n * sizeof *v);
    char *copy = strdup(text);
    if (!v || !copy) {
        fprintf(stderr, "%s: out of memory\n", tool);
        free(v);
        free(copy);
        return false;
    }
    size_t k = 0;
    bool ok = true;
    /* strtok_r would skip empty fields ("1,,2"); walk the commas instead. */
    char *field = copy;
    for (;;) {
        char *comma = strchr(field, ',');
        if (comma)
            *comma = '\0';
        while (*field == ' ')
            field++;
        size_t len = strlen(field);
        while (len > 0 && field[len - 1] == ' ')
            field[--len] = '\0';
        int64_t x;
        if (!cli_int(tool, option, field, lo, hi, &x)) {
            ok = false;
            break;
        }
        v[k++] = (int32_t)x;
        if (!comma)
            break;
        field = comma + 1;
    }
    free(copy);
    if (!ok) {
        free(v);
        return false;
    }
    *out = v;
    *count = (int32_t)k;
    return true;
}

bool cli_output_path(const char *tool, const char *option, const char *path)
{
    const char *why = NULL;
    struct stat st;
    char *dir = path && *path ? strdup(path) : NULL;
    if (!path || !*path) {
        why = "empty path";
    } else if (!dir) {
        why = "out of memory";
    } else if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            why = "is a folder";
        else if (access(path, W_OK) != 0)
            why = strerror(errno);
    } else if (errno != ENOENT) {
        why = strerror(errno);
    } else {
        char *slash = strrchr(dir, '/');
        const char *parent = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
        if (stat(parent, &st) != 0)
            why = "its folder does not exist";
        else if (!S_ISDIR(st.st_mode))
            why = "its folder is not a folder";
        else if (access(parent, W_OK | X_OK) != 0)
            why = "its folder is not writable";
    }
    free(dir);
    if (why)
        fprintf(stderr, "%s: %s: '%s': %s\n", tool, option, path ? path : "(missing)", why);
    return why == NULL;
}

bool cli_output_dir(const char *tool, const char *option, const char *path)
{
    struct stat st;
    if (path && *path && stat(path, &st) == 0) {
        const char *why = !S_ISDIR(st.st_mode)               ? "is not a folder"
                          : access(path, W_OK | X_OK) != 0 ? "is not writable"
                                                             : NULL;
        if (why)
            fprintf(stderr, "%s: %s: '%s': %s\n", tool, option, path, why);
        return why == NULL;
    }
    /* Not there yet: what a new file of that name would need (its folder). */
    return cli_output_path(tool, option, path);
}

void cli_progress(long epoch, long epochs, long step, long steps, double loss)
{
    int width = 30, done = (int)(width * step / steps);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < done ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] epoch %ld/%ld step %ld/%ld loss %.6f ", bar, epoch, epochs, step,
            steps, loss);
    fflush(stderr);
}

void cli_json_number(FILE *f, double x, int digits)
{
    if (isfinite(x))
        fprintf(f, "%.*g", digits, x);
    else
        fputs("null", f);
}

const char *cli_folder_name(const char *path, char *buf, size_t size)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(buf, size, "%.*s", (int)(n - start), path + start);
    return buf;
}
