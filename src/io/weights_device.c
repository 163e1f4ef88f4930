/* weights_device.c - between safetensors files and device tensors: upload
 * a weight as a float32 tensor, and write tensors to a new file
 * (checkpoints). Kept apart from safetensors.c, which must not need a
 * device (the fuzzer links it alone). */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ======================================================================== */
/* Upload                                                                    */
/* ======================================================================== */

clattn_status clattn_weights_upload(clattn_ctx *ctx, const clattn_weights *w, const char *name,
                                    clattn_tensor **out)
{
    clattn__clear_thread_error();
    if (!ctx || !w || !name || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "ctx, weights, name and out must not be NULL");
    *out = NULL;
    const clattn__weight *t = clattn__weights_lookup(ctx, w, name);
    if (!t)
        return CLATTN_ERR_INVALID_ARG;
    const clattn_weight_info *info = &t->info;
    char sbuf[256];
    clattn__shape_str(info->shape, info->ndim, sbuf, sizeof sbuf);
    if (!clattn__dtype_converts(info->dtype))
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: tensor '%s' is %s; clattn converts only F32, F16, BF16 and "
                            "F64 to float32",
                            w->path, name, clattn_dtype_name(info->dtype));
    if (info->ndim < 1 || info->ndim > CLATTN_MAX_DIMS || info->numel == 0)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: tensor '%s' has shape %s; device tensors have 1 to %d "
                            "dimensions of extent >= 1",
                            w->path, name, sbuf, CLATTN_MAX_DIMS);
    if (info->numel > SIZE_MAX / sizeof(float))
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "%s: tensor '%s' %s is too large",
                            w->path, name, sbuf);
    float *host = malloc(info->numel * sizeof *host);
    if (!host)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                            "%s: tensor '%s' %s: out of host memory for %zu floats", w->path,
                            name, sbuf, info->numel);
    clattn__dtype_to_f32(info->dtype, info->data, info->numel, host);
    /* Values are kept as they are, NaN and Inf included (this uploads one
     * tensor, as clattn_weights_read_f32 reads it; tests/io relies on it).
     * The model loaders refuse non-finite weights (modules/model.c). */
    clattn_tensor *dev = NULL;
    clattn_status st = clattn_tensor_create(ctx, info->ndim, info->shape, &dev);
    if (st == CLATTN_OK)
        st = clattn_tensor_write(dev, host);
    free(host);
    if (st != CLATTN_OK) {
        clattn_tensor_destroy(dev);
        return st;
    }
    *out = dev;
    return CLATTN_OK;
}

/* ======================================================================== */
/* Writing                                                                   */
/* ======================================================================== */

/* A tensor's name and its position in the caller's arrays, for sorting. */
typedef struct named {
    const char *name;
    int32_t index;
} named;

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* The header, as the reference writer makes it: "__metadata__" first, then
 * the tensors in data order (here: by name), compact JSON. */
static clattn_status build_header(int32_t count, const char *const *names,
                                  const clattn_tensor *const *tensors, const int32_t *order,
                                  const char *const *meta_keys, const char *const *meta_values,
                                  int32_t meta_count, char **out)
{
    json_t *root = json_object();
    json_t *meta = meta_count ? json_object() : NULL;
    clattn_status st = CLATTN_OK;
    if (!root || (meta_count && !meta)) {
        st = clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        goto done;
    }
    for (int32_t i = 0; i < meta_count && st == CLATTN_OK; i++) {
        json_t *v = json_string(meta_values[i]); /* NULL for invalid UTF-8 */
        if (json_object_get(meta, meta_keys[i]))
            st = clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "metadata key '%s' appears twice",
                              meta_keys[i]);
        else if (!v || json_object_set(meta, meta_keys[i], v) != 0)
            st = clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                              "metadata entry '%s' is not valid UTF-8", meta_keys[i]);
        json_decref(v);
    }
    if (st == CLATTN_OK && meta && json_object_set(root, "__metadata__", meta) != 0)
        st = clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    uint64_t offset = 0;
    for (int32_t k = 0; k < count && st == CLATTN_OK; k++) {
        int32_t i = order[k];
        int64_t shape[CLATTN_MAX_DIMS];
        int32_t ndim = clattn_tensor_shape(tensors[i], shape);
        uint64_t bytes = (uint64_t)clattn_tensor_numel(tensors[i]) * sizeof(float);
        json_t *entry = json_pack("{s:s, s:[], s:[I, I]}", "dtype", "F32", "shape",
                                  "data_offsets", (json_int_t)offset,
                                  (json_int_t)(offset + bytes));
        json_t *jshape = entry ? json_object_get(entry, "shape") : NULL;
        for (int32_t d = 0; jshape && d < ndim; d++)
            if (json_array_append_new(jshape, json_integer(shape[d])) != 0)
                jshape = NULL;
        if (!jshape) {
            json_decref(entry);
            st = clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        } else if (json_object_set_new(root, names[i], entry) != 0) {
            st = clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "tensor name '%s' is not valid UTF-8",
                              names[i]);
        }
        offset += bytes;
    }
    if (st == CLATTN_OK) {
        *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*out)
            st = clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
done:
    json_decref(meta);
    json_decref(root);
    return st;
}

static clattn_status check_write_args(const char *path, int32_t count, const char *const *names,
                                      const clattn_tensor *const *tensors,
                                      const char *const *meta_keys,
                                      const char *const *meta_values, int32_t meta_count)
{
    if (!path || count < 0 || meta_count < 0 || (count && (!names || !tensors)) ||
        (meta_count && (!meta_keys || !meta_values)))
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "path, and the arrays for count %d and meta_count %d, must not be "
                            "NULL or negative",
                            count, meta_count);
    for (int32_t i = 0; i < count; i++) {
        if (!names[i] || !names[i][0] || !tensors[i])
            return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                                "tensor %d: name and tensor must not be NULL or empty", i);
        if (strcmp(names[i], "__metadata__") == 0)
            return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                                "tensor %d: \"__metadata__\" is reserved for the metadata", i);
    }
    for (int32_t i = 0; i < meta_count; i++)
        if (!meta_keys[i] || !meta_keys[i][0] || !meta_values[i])
            return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                                "metadata entry %d: key and value must not be NULL or empty", i);
    return CLATTN_OK;
}

/* Writes the tensors' data, in order, as little-endian float32. */
static clattn_status write_data(FILE *f, const char *tmp, int32_t count,
                                const clattn_tensor *const *tensors, const int32_t *order)
{
    size_t max = 0;
    for (int32_t i = 0; i < count; i++)
        if (clattn_tensor_numel(tensors[i]) > max)
            max = clattn_tensor_numel(tensors[i]);
    float *host = malloc(max ? max * sizeof *host : 1);
    unsigned char *bytes = malloc(max ? max * 4 : 1);
    clattn_status st = (host && bytes) ? CLATTN_OK
                                       : clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY,
                                                      "out of host memory for %zu floats", max);
    for (int32_t k = 0; k < count && st == CLATTN_OK; k++) {
        const clattn_tensor *t = tensors[order[k]];
        size_t n = clattn_tensor_numel(t);
        st = clattn_tensor_read(t, host);
        if (st != CLATTN_OK)
            break;
        for (size_t i = 0; i < n; i++) { /* little-endian whatever the host is */
            uint32_t u;
            memcpy(&u, &host[i], 4);
            for (int b = 0; b < 4; b++)
                bytes[4 * i + (size_t)b] = (unsigned char)(u >> (8 * b));
        }
        if (fwrite(bytes, 4, n, f) != n)
            st = clattn__fail(NULL, CLATTN_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    }
    free(host);
    free(bytes);
    return st;
}

clattn_status clattn_weights_write(const char *path, int32_t count, const char *const *names,
                                   const clattn_tensor *const *tensors,
                                   const char *const *meta_keys, const char *const *meta_values,
                                   int32_t meta_count)
{
    clattn__clear_thread_error();
    clattn_status st =
        check_write_args(path, count, names, tensors, meta_keys, meta_values, meta_count);
    if (st != CLATTN_OK)
        return st;
    /* The reference orders data by dtype, then name; all of ours are F32. */
    named *sorted = malloc((size_t)(count ? count : 1) * sizeof *sorted);
    int32_t *order = malloc((size_t)(count ? count : 1) * sizeof *order);
    if (!sorted || !order) {
        free(sorted);
        free(order);
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (int32_t i = 0; i < count; i++)
        sorted[i] = (named){names[i], i};
    qsort(sorted, (size_t)count, sizeof *sorted, cmp_named);
    for (int32_t k = 0; k < count; k++)
        order[k] = sorted[k].index;
    free(sorted);
    for (int32_t k = 1; k < count; k++)
        if (strcmp(names[order[k - 1]], names[order[k]]) == 0) {
            const char *twice = names[order[k]];
            free(order);
            return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "tensor name '%s' appears twice",
                                twice);
        }

    char *header = NULL;
    st = build_header(count, names, tensors, order, meta_keys, meta_values, meta_count, &header);
    static _Atomic unsigned counter; /* unique temp names within the process */
    char *tmp = st == CLATTN_OK ? clattn__aprintf("%s.tmp-%ld-%u", path, (long)getpid(),
                                                  counter++)
                                : NULL;
    if (st == CLATTN_OK && !tmp)
        st = clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    FILE *f = NULL;
    if (st == CLATTN_OK) {
        /* O_EXCL: never follow or reuse someone else's file; 0666 lets the
         * umask decide the permissions, as for any new file. */
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (!f) {
            st = clattn__fail(NULL, CLATTN_ERR_IO, "%s: cannot create: %s", tmp,
                              strerror(errno));
            if (fd >= 0) {
                close(fd);
                unlink(tmp);
            }
        }
    }
    if (st == CLATTN_OK) {
        size_t len = strlen(header);
        size_t padded = clattn__round_up(len, 8); /* data then starts 8-aligned */
        unsigned char prefix[8];
        for (int b = 0; b < 8; b++)
            prefix[b] = (unsigned char)((uint64_t)padded >> (8 * b));
        bool ok = fwrite(prefix, 1, 8, f) == 8 && fwrite(header, 1, len, f) == len;
        for (size_t i = len; ok && i < padded; i++)
            ok = fputc(' ', f) != EOF;
        st = ok ? write_data(f, tmp, count, tensors, order)
                : clattn__fail(NULL, CLATTN_ERR_IO, "%s: write failed: %s", tmp,
                               strerror(errno));
        if (st == CLATTN_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
            st = clattn__fail(NULL, CLATTN_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        if (fclose(f) != 0 && st == CLATTN_OK)
            st = clattn__fail(NULL, CLATTN_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
        if (st == CLATTN_OK && rename(tmp, path) != 0)
            st = clattn__fail(NULL, CLATTN_ERR_IO, "%s: cannot rename to %s: %s", tmp, path,
                              strerror(errno));
        if (st != CLATTN_OK)
            unlink(tmp);
    }
    free(tmp);
    free(header);
    free(order);
    return st;
}
