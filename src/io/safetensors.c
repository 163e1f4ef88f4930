/* safetensors.c - opening, validating and reading safetensors files.
 *
 * Format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * (the header), then the data area, which runs to the end of the file. The
 * header maps each tensor name to {dtype, shape, data_offsets: [begin, end]}
 * (offsets relative to the data area), plus an optional "__metadata__"
 * object of strings.
 *
 * Model files are untrusted input: everything the header says is checked
 * against the file before any pointer into the data is formed, with the
 * rules of the reference implementation (huggingface/safetensors), so a file
 * clattn accepts is one the reference accepts. Two rules are stricter, as
 * the format's description asks: the header must start with '{', and a
 * tensor entry may hold no fields but its three.
 *
 * Nothing here touches a device (upload and writing live in
 * weights_device.c), so the fuzzer links this file without OpenCL. */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference refuses larger headers; checking before parsing keeps a
 * hostile length from making us allocate. */
#define MAX_HEADER_BYTES 100000000ull

/* ======================================================================== */
/* Freeing                                                                   */
/* ======================================================================== */

static void weights_free(clattn_weights *w)
{
    if (!w)
        return;
    if (w->map)
        munmap((void *)w->map, w->size);
    for (int32_t i = 0; i < w->count; i++)
        free(w->tensors[i].name);
    for (int32_t i = 0; i < w->meta_count; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->tensors);
    free(w->by_name);
    free(w->meta_keys);
    free(w->meta_values);
    free(w->path);
    free(w);
}

void clattn_weights_close(clattn_weights *w) { weights_free(w); }

/* ======================================================================== */
/* One tensor entry of the header                                            */
/* ======================================================================== */

/* A JSON integer in [0, INT64_MAX] (jansson refuses larger numbers). */
static bool get_count(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Checks one "name": {dtype, shape, data_offsets} entry and fills t. */
static clattn_status parse_tensor(const clattn_weights *w, const char *name, json_t *entry,
                                  clattn__weight *t)
{
    const char *path = w->path;
    if (!json_is_object(entry))
        return clattn__fail(NULL, CLATTN_ERR_FORMAT, "%s: tensor '%s': entry is not an object",
                            path, name);
    const char *field;
    json_t *value;
    json_object_foreach(entry, field, value) {
        if (strcmp(field, "dtype") && strcmp(field, "shape") && strcmp(field, "data_offsets"))
            return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                                "%s: tensor '%s': unknown field '%s' (a tensor has exactly "
                                "dtype, shape and data_offsets)",
                                path, name, field);
    }
    json_t *dtype = json_object_get(entry, "dtype");
    json_t *shape = json_object_get(entry, "shape");
    json_t *offsets = json_object_get(entry, "data_offsets");
    if (!dtype || !shape || !offsets)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT, "%s: tensor '%s': missing field '%s'", path,
                            name, !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    clattn_weight_info *info = &t->info;
    if (!json_is_string(dtype))
        return clattn__fail(NULL, CLATTN_ERR_FORMAT, "%s: tensor '%s': dtype is not a string",
                            path, name);
    if (!clattn__dtype_parse(json_string_value(dtype), json_string_length(dtype), &info->dtype))
        return clattn__fail(NULL, CLATTN_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'",
                            path, name, json_string_value(dtype));

    if (!json_is_array(shape))
        return clattn__fail(NULL, CLATTN_ERR_FORMAT, "%s: tensor '%s': shape is not an array",
                            path, name);
    size_t ndim = json_array_size(shape);
    if (ndim > CLATTN_WEIGHTS_MAX_DIMS)
        return clattn__fail(NULL, CLATTN_ERR_UNSUPPORTED,
                            "%s: tensor '%s' has %zu dimensions; clattn reads at most %d", path,
                            name, ndim, CLATTN_WEIGHTS_MAX_DIMS);
    info->ndim = (int32_t)ndim;
    /* The element count, folded left to right with overflow checks, as the
     * reference does (so [big, big, 0] overflows there and here). */
    size_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t extent;
        if (!get_count(json_array_get(shape, i), &extent))
            return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                                "%s: tensor '%s': shape entry %zu is not a non-negative integer",
                                path, name, i);
        info->shape[i] = (int64_t)extent;
        if (extent != 0 && numel > SIZE_MAX / extent)
            overflow = true;
        else
            numel *= (size_t)extent;
    }
    char sbuf[256];
    clattn__shape_str(info->shape, info->ndim, sbuf, sizeof sbuf);
    const char *dname = clattn_dtype_name(info->dtype);
    size_t bits = (size_t)clattn_dtype_bits(info->dtype);
    if (overflow || numel > SIZE_MAX / bits)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s': shape %s of %s overflows: its size does not fit "
                            "in %zu bits",
                            path, name, sbuf, dname, sizeof(size_t) * 8);
    if (numel * bits % 8 != 0)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s': shape %s of %s is %zu bits, not a whole number "
                            "of bytes",
                            path, name, sbuf, dname, numel * bits);
    info->numel = numel;
    info->nbytes = numel * bits / 8;

    if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
        !get_count(json_array_get(offsets, 0), &t->begin) ||
        !get_count(json_array_get(offsets, 1), &t->end))
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets is not [begin, end] of two "
                            "non-negative integers",
                            path, name);
    if (t->begin > t->end)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu]: begin is after end",
                            path, name, (unsigned long long)t->begin,
                            (unsigned long long)t->end);
    if (t->end - t->begin != info->nbytes)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but "
                            "shape %s of %s needs %zu",
                            path, name, (unsigned long long)t->begin,
                            (unsigned long long)t->end,
                            (unsigned long long)(t->end - t->begin), sbuf, dname, info->nbytes);
    t->name = clattn__strdup(name);
    if (!t->name)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    info->name = t->name;
    return CLATTN_OK;
}

/* ======================================================================== */
/* __metadata__                                                              */
/* ======================================================================== */

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static clattn_status parse_metadata(clattn_weights *w, json_t *meta)
{
    if (json_is_null(meta)) /* the reference reads null as "no metadata" */
        return CLATTN_OK;
    if (!json_is_object(meta))
        return clattn__fail(NULL, CLATTN_ERR_FORMAT, "%s: __metadata__ is not an object",
                            w->path);
    size_t n = json_object_size(meta);
    if (n == 0)
        return CLATTN_OK;
    w->meta_keys = calloc(n, sizeof *w->meta_keys);
    w->meta_values = calloc(n, sizeof *w->meta_values);
    if (!w->meta_keys || !w->meta_values)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value))
            return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                                "%s: __metadata__ entry '%s' is not a string", w->path, key);
        /* Values may hold "\u0000": jansson refuses it without
         * JSON_ALLOW_NUL, so strlen is the whole value. */
        char *k = clattn__strdup(key), *v = clattn__strdup(json_string_value(value));
        if (!k || !v) {
            free(k);
            free(v);
            return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        }
        /* Keys and values are kept in pairs; sort them together below. */
        w->meta_keys[w->meta_count] = k;
        w->meta_values[w->meta_count] = v;
        w->meta_count++;
    }
    /* Sort key/value pairs by key: pack each pair as [key, value] rows. */
    char **pairs = malloc((size_t)w->meta_count * 2 * sizeof *pairs);
    if (!pairs)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int32_t i = 0; i < w->meta_count; i++) {
        pairs[2 * i] = w->meta_keys[i];
        pairs[2 * i + 1] = w->meta_values[i];
    }
    qsort(pairs, (size_t)w->meta_count, 2 * sizeof *pairs, cmp_meta);
    for (int32_t i = 0; i < w->meta_count; i++) {
        w->meta_keys[i] = pairs[2 * i];
        w->meta_values[i] = pairs[2 * i + 1];
    }
    free(pairs);
    return CLATTN_OK;
}

/* ======================================================================== */
/* The whole header                                                          */
/* ======================================================================== */

static int cmp_offsets(const void *a, const void *b)
{
    const clattn__weight *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* qsort has no context argument; the names are reached through the
 * tensors array, so sort pointers-to-index pairs instead. */
typedef struct name_index {
    const char *name;
    int32_t index;
} name_index;

static int cmp_names(const void *a, const void *b)
{
    return strcmp(((const name_index *)a)->name, ((const name_index *)b)->name);
}

/* Sorted by offset, the tensors must tile [0, data size) exactly. */
static clattn_status check_layout(const clattn_weights *w)
{
    uint64_t pos = 0;
    for (int32_t i = 0; i < w->count; i++) {
        const clattn__weight *t = &w->tensors[i];
        if (t->begin != pos) {
            unsigned long long b = t->begin, e = t->end;
            if (i == 0)
                return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                                    "%s: tensor '%s': data_offsets [%llu, %llu]: the first "
                                    "tensor must start at 0",
                                    w->path, t->name, b, e);
            const clattn__weight *p = &w->tensors[i - 1];
            if (t->begin < pos)
                return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                                    "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor "
                                    "'%s' at [%llu, %llu]",
                                    w->path, t->name, b, e, p->name,
                                    (unsigned long long)p->begin, (unsigned long long)p->end);
            return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                                "%s: tensor '%s': data_offsets [%llu, %llu] leave a gap of %llu "
                                "bytes after tensor '%s', which ends at %llu",
                                w->path, t->name, b, e, (unsigned long long)(t->begin - pos),
                                p->name, (unsigned long long)pos);
        }
        pos = t->end;
    }
    uint64_t data_size = w->size - w->data_start;
    if (pos < data_size)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: the tensors cover %llu bytes but the data area holds %llu: "
                            "%llu trailing bytes belong to no tensor",
                            w->path, (unsigned long long)pos, (unsigned long long)data_size,
                            (unsigned long long)(data_size - pos));
    if (pos > data_size) {
        const clattn__weight *t = &w->tensors[w->count - 1];
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the "
                            "file: the data area holds %llu bytes (the file is truncated?)",
                            w->path, t->name, (unsigned long long)t->begin,
                            (unsigned long long)t->end, (unsigned long long)data_size);
    }
    return CLATTN_OK;
}

static clattn_status parse_header(clattn_weights *w, json_t *root)
{
    size_t n = json_object_size(root);
    w->tensors = calloc(n ? n : 1, sizeof *w->tensors);
    if (!w->tensors)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        clattn_status st;
        if (strcmp(key, "__metadata__") == 0) {
            st = parse_metadata(w, value);
        } else {
            st = parse_tensor(w, key, value, &w->tensors[w->count]);
            if (w->tensors[w->count].name)
                w->count++;
        }
        if (st != CLATTN_OK)
            return st;
    }
    qsort(w->tensors, (size_t)w->count, sizeof *w->tensors, cmp_offsets);
    clattn_status st = check_layout(w);
    if (st != CLATTN_OK)
        return st;

    name_index *order = malloc((size_t)(w->count ? w->count : 1) * sizeof *order);
    w->by_name = malloc((size_t)(w->count ? w->count : 1) * sizeof *w->by_name);
    if (!order || !w->by_name) {
        free(order);
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (int32_t i = 0; i < w->count; i++) {
        clattn__weight *t = &w->tensors[i];
        t->info.data_offset = w->data_start + (size_t)t->begin;
        t->info.data = w->map + t->info.data_offset;
        order[i] = (name_index){t->name, i};
    }
    qsort(order, (size_t)w->count, sizeof *order, cmp_names);
    for (int32_t i = 0; i < w->count; i++)
        w->by_name[i] = order[i].index;
    free(order);
    return CLATTN_OK;
}

/* Checks the length prefix and parses the JSON of the mapped file. */
static clattn_status parse_file(clattn_weights *w)
{
    const unsigned char *p = w->map;
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--)
        n = n << 8 | p[b];
    if (n > MAX_HEADER_BYTES)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: header length %llu is over the limit of %llu bytes", w->path,
                            (unsigned long long)n, MAX_HEADER_BYTES);
    if (n > w->size - 8)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: header length %llu runs past the end of the file (%zu bytes "
                            "follow the 8-byte length)",
                            w->path, (unsigned long long)n, w->size - 8);
    w->data_start = 8 + (size_t)n;
    const char *text = (const char *)p + 8;
    if (n == 0 || text[0] != '{')
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: header does not start with '{' (not a safetensors file?)",
                            w->path);
    /* jansson checks UTF-8, refuses "\u0000" in strings and, with this flag,
     * duplicate keys, which would make a name mean two tensors. Trailing
     * whitespace (writers pad the header with spaces) is accepted. */
    json_error_t err;
    json_t *root = json_loadb(text, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: header is not valid JSON: %s (at byte %d of the header)",
                            w->path, err.text, err.position);
    clattn_status st = json_is_object(root)
                           ? parse_header(w, root)
                           : clattn__fail(NULL, CLATTN_ERR_FORMAT,
                                          "%s: header is not a JSON object", w->path);
    json_decref(root);
    return st;
}

/* ======================================================================== */
/* Opening                                                                   */
/* ======================================================================== */

clattn_status clattn_weights_open(const char *path, clattn_weights **out)
{
    clattn__clear_thread_error();
    if (!path || !out)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "path and out must not be NULL");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return clattn__fail(NULL, CLATTN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return clattn__fail(NULL, CLATTN_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return clattn__fail(NULL, CLATTN_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return clattn__fail(NULL, CLATTN_ERR_FORMAT,
                            "%s: file is %lld bytes, too small for the 8-byte header length",
                            path, (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return clattn__fail(NULL, CLATTN_ERR_UNSUPPORTED,
                            "%s: file of %lld bytes does not fit in the address space", path,
                            (long long)sb.st_size);
    }
    clattn_weights *w = calloc(1, sizeof *w);
    char *copy = clattn__strdup(path);
    if (!w || !copy) {
        free(w);
        free(copy);
        close(fd);
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    w->path = copy;
    w->size = (size_t)sb.st_size;
    /* MAP_PRIVATE + PROT_READ: the data is never written through the map. */
    void *map = mmap(NULL, w->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) {
        weights_free(w);
        return clattn__fail(NULL, CLATTN_ERR_IO, "%s: cannot mmap %lld bytes: %s", path,
                            (long long)sb.st_size, strerror(map_errno));
    }
    w->map = map;
    clattn_status st = parse_file(w);
    if (st != CLATTN_OK) {
        weights_free(w);
        return st;
    }
    *out = w;
    return CLATTN_OK;
}

/* ======================================================================== */
/* Lookup and reading                                                        */
/* ======================================================================== */

int32_t clattn_weights_count(const clattn_weights *w) { return w ? w->count : 0; }

clattn_status clattn_weights_info_at(const clattn_weights *w, int32_t index,
                                     clattn_weight_info *info)
{
    clattn__clear_thread_error();
    if (!w || !info)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "weights and info must not be NULL");
    if (index < 0 || index >= w->count)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "%s: tensor index %d out of range 0..%d", w->path, index,
                            w->count - 1);
    *info = w->tensors[index].info;
    return CLATTN_OK;
}

const clattn__weight *clattn__weights_search(const clattn_weights *w, const char *name)
{
    int32_t lo = 0, hi = w->count - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        const clattn__weight *t = &w->tensors[w->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const clattn__weight *clattn__weights_lookup(clattn_ctx *ctx, const clattn_weights *w,
                                             const char *name)
{
    const clattn__weight *t = clattn__weights_search(w, name);
    if (t)
        return t;
    clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: no tensor called '%s' (the file has %d)",
                 w->path, name, w->count);
    return NULL;
}

clattn_status clattn_weights_find(const clattn_weights *w, const char *name,
                                  clattn_weight_info *info)
{
    clattn__clear_thread_error();
    if (!w || !name || !info)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "weights, name and info must not be NULL");
    const clattn__weight *t = clattn__weights_lookup(NULL, w, name);
    if (!t)
        return CLATTN_ERR_INVALID_ARG;
    *info = t->info;
    return CLATTN_OK;
}

const char *clattn_weights_metadata(const clattn_weights *w, const char *key)
{
    if (!w || !key)
        return NULL;
    int32_t lo = 0, hi = w->meta_count - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, w->meta_keys[mid]);
        if (c == 0)
            return w->meta_values[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

int32_t clattn_weights_metadata_count(const clattn_weights *w) { return w ? w->meta_count : 0; }

clattn_status clattn_weights_metadata_at(const clattn_weights *w, int32_t index,
                                         const char **key, const char **value)
{
    clattn__clear_thread_error();
    if (!w || !key || !value)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "weights, key and value must not be NULL");
    if (index < 0 || index >= w->meta_count)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "%s: metadata index %d out of range 0..%d", w->path, index,
                            w->meta_count - 1);
    *key = w->meta_keys[index];
    *value = w->meta_values[index];
    return CLATTN_OK;
}

clattn_status clattn_weights_read_f32(const clattn_weights *w, const char *name, float *dst,
                                      size_t count)
{
    clattn__clear_thread_error();
    if (!w || !name || (!dst && count))
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "weights, name and dst must not be NULL");
    const clattn__weight *t = clattn__weights_lookup(NULL, w, name);
    if (!t)
        return CLATTN_ERR_INVALID_ARG;
    if (!clattn__dtype_converts(t->info.dtype))
        return clattn__fail(NULL, CLATTN_ERR_UNSUPPORTED,
                            "%s: tensor '%s' is %s; clattn converts only F32, F16, BF16 and "
                            "F64 to float32",
                            w->path, name, clattn_dtype_name(t->info.dtype));
    if (count != t->info.numel)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "%s: tensor '%s' has %zu elements, but count is %zu", w->path, name,
                            t->info.numel, count);
    clattn__dtype_to_f32(t->info.dtype, t->info.data, count, dst);
    return CLATTN_OK;
}
