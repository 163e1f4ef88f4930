/* npy.c - NumPy .npy reading and float32 writing (see npy.h).
 *
 * Layout: "\x93NUMPY", major, minor, then the header length (2 bytes
 * little-endian for 1.0, 4 bytes for 2.0 and 3.0), the header (a Python
 * dict literal such as {'descr': '<f4', 'fortran_order': False,
 * 'shape': (2, 3), } padded with spaces and ending in '\n'; Latin-1 for
 * 1.0/2.0, UTF-8 for 3.0), then the raw data to the end of the file. */
#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool fail(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(char *err, size_t err_size, const char *fmt, ...)
{
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* ======================================================================== */
/* The header dict                                                          */
/* ======================================================================== */

/* A cursor over the header text; every read checks p < end. */
typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool eat_word(cursor *c, const char *word)
{
    skip_ws(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

/* A '...' or "..." string without escapes (NumPy never writes any) into
 * buf[size]; false if malformed or longer than size - 1. */
static bool parse_str(cursor *c, char *buf, size_t size)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || *c->p == '\n' || n + 1 >= size)
            return false;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return false;
    c->p++;
    buf[n] = '\0';
    return true;
}

/* A non-negative decimal integer that fits in int64 (Python 2's 'L'
 * suffix, found in old files, is accepted). */
static bool parse_int(cursor *c, int64_t *out)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return false;
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int d = *c->p++ - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    *out = v;
    return true;
}

/* A tuple of integers: (), (3,), (2, 3) or (2, 3,). "(3)" is an int in
 * Python, not a tuple, and NumPy refuses it, so it is refused here too. */
static bool parse_shape(cursor *c, npy_array *a, const char *name, char *err, size_t err_size)
{
    if (!eat(c, '('))
        return fail(err, err_size, "%s: 'shape' is not a tuple", name);
    a->ndim = 0;
    bool comma = false;
    while (!eat(c, ')')) {
        if (a->ndim > 0 && !comma)
            return fail(err, err_size, "%s: malformed 'shape' tuple", name);
        if (a->ndim == NPY_MAX_DIMS)
            return fail(err, err_size, "%s: more than %d dimensions", name, NPY_MAX_DIMS);
        if (!parse_int(c, &a->shape[a->ndim]))
            return fail(err, err_size,
                        "%s: 'shape' entry %d is not a non-negative integer that fits in 64 "
                        "bits",
                        name, a->ndim);
        a->ndim++;
        comma = eat(c, ',');
    }
    if (a->ndim == 1 && !comma)
        return fail(err, err_size, "%s: 'shape' is not a tuple (a 1-d shape is written (n,))",
                    name);
    return true;
}

/* Parses the dict into a's descr, shape and the fortran flag. */
static bool parse_header(cursor *c, npy_array *a, bool *fortran, const char *name, char *err,
                         size_t err_size)
{
    if (!eat(c, '{'))
        return fail(err, err_size, "%s: header is not a Python dict", name);
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    bool comma = true;
    while (!eat(c, '}')) {
        char key[32];
        if (!comma)
            return fail(err, err_size, "%s: malformed header dict (missing ',')", name);
        if (!parse_str(c, key, sizeof key))
            return fail(err, err_size, "%s: malformed header dict (expected a quoted key)", name);
        if (!eat(c, ':'))
            return fail(err, err_size, "%s: malformed header dict (expected ':' after '%s')",
                        name, key);
        bool *seen = !strcmp(key, "descr")           ? &seen_descr
                     : !strcmp(key, "fortran_order") ? &seen_fortran
                     : !strcmp(key, "shape")         ? &seen_shape
                                                     : NULL;
        if (!seen)
            return fail(err, err_size,
                        "%s: unknown header key '%s' (expected descr, fortran_order, shape)",
                        name, key);
        if (*seen)
            return fail(err, err_size, "%s: header key '%s' appears twice", name, key);
        *seen = true;
        if (seen == &seen_descr) {
            skip_ws(c);
            if (c->p < c->end && *c->p == '[')
                return fail(err, err_size,
                            "%s: structured dtypes are not supported (plain arrays only)", name);
            if (!parse_str(c, a->descr, sizeof a->descr))
                return fail(err, err_size, "%s: 'descr' is not a short dtype string", name);
        } else if (seen == &seen_fortran) {
            if (eat_word(c, "True"))
                *fortran = true;
            else if (eat_word(c, "False"))
                *fortran = false;
            else
                return fail(err, err_size, "%s: 'fortran_order' is not True or False", name);
        } else if (!parse_shape(c, a, name, err, err_size)) {
            return false;
        }
        comma = eat(c, ',');
    }
    skip_ws(c);
    if (c->p != c->end)
        return fail(err, err_size, "%s: unexpected text after the header dict", name);
    if (!seen_descr || !seen_fortran || !seen_shape)
        return fail(err, err_size, "%s: header lacks '%s'", name,
                    !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    return true;
}

/* ======================================================================== */
/* Reading                                                                   */
/* ======================================================================== */

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The supported dtypes: what they hold in the file and what they become. */
static bool lookup_descr(const char *descr, npy_kind *kind, size_t *itemsize)
{
    static const struct {
        const char *descr;
        npy_kind kind;
        size_t itemsize;
    } table[] = {
        {"<f4", NPY_FLOAT32, 4}, {"<f8", NPY_FLOAT32, 8}, {"<i4", NPY_INT64, 4},
        {"<i8", NPY_INT64, 8},   {"|b1", NPY_BOOL, 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(descr, table[i].descr)) {
            *kind = table[i].kind;
            *itemsize = table[i].itemsize;
            return true;
        }
    return false;
}

static void convert(const npy_array *a, size_t itemsize, const unsigned char *src)
{
    for (size_t i = 0; i < a->count; i++, src += itemsize) {
        uint64_t bits = le(src, (int)itemsize);
        if (a->kind == NPY_FLOAT32) {
            float *dst = a->data;
            if (itemsize == 4) {
                uint32_t u = (uint32_t)bits;
                memcpy(&dst[i], &u, 4);
            } else {
                double d;
                memcpy(&d, &bits, 8);
                dst[i] = (float)d;
            }
        } else if (a->kind == NPY_INT64) {
            int64_t *dst = a->data;
            /* Sign-extend 32-bit values through int32_t. */
            dst[i] = itemsize == 4 ? (int64_t)(int32_t)(uint32_t)bits : (int64_t)bits;
        } else {
            ((uint8_t *)a->data)[i] = bits != 0;
        }
    }
}

bool npy_parse(const char *name, const void *bytes, size_t size, npy_array *out, char *err,
               size_t err_size)
{
    const unsigned char *b = bytes;
    if (!out)
        return fail(err, err_size, "%s: out is NULL", name);
    memset(out, 0, sizeof *out);
    if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return fail(err, err_size, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    int major = b[6], minor = b[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        return fail(err, err_size, "%s: .npy format version %d.%d is not supported (1.0, 2.0, 3.0)",
                    name, major, minor);
    size_t len_bytes = major == 1 ? 2 : 4;
    if (size < 8 + len_bytes)
        return fail(err, err_size, "%s: truncated before the header length", name);
    uint64_t hlen = le(b + 8, (int)len_bytes);
    size_t start = 8 + len_bytes;
    if (hlen > size - start)
        return fail(err, err_size,
                    "%s: header length %llu runs past the end of the file (%zu bytes)", name,
                    (unsigned long long)hlen, size);
    npy_array a = {0};
    bool fortran = false;
    cursor c = {(const char *)b + start, (const char *)b + start + hlen};
    if (!parse_header(&c, &a, &fortran, name, err, err_size))
        return false;

    size_t itemsize;
    if (!lookup_descr(a.descr, &a.kind, &itemsize)) {
        if (a.descr[0] == '>')
            return fail(err, err_size,
                        "%s: big-endian dtype '%s' is not supported (save it as '<%s')", name,
                        a.descr, a.descr + 1);
        if (strchr(a.descr, 'O'))
            return fail(err, err_size, "%s: object arrays ('%s') are not supported", name,
                        a.descr);
        return fail(err, err_size,
                    "%s: dtype '%s' is not supported (float32, float64, int32, int64, bool)",
                    name, a.descr);
    }
    if (fortran)
        return fail(err, err_size,
                    "%s: Fortran-order arrays are not supported (save a C-order array)", name);
    /* Overflow-checked element and byte counts. */
    size_t count = 1;
    for (int32_t i = 0; i < a.ndim; i++) {
        uint64_t e = (uint64_t)a.shape[i];
        if (e != 0 && count > SIZE_MAX / 8 / e)
            return fail(err, err_size, "%s: shape is too large (the size overflows)", name);
        count *= (size_t)e;
    }
    a.count = count;
    size_t have = size - start - (size_t)hlen, need = count * itemsize;
    if (have < need)
        return fail(err, err_size, "%s: truncated: the data holds %zu bytes, the shape needs %zu",
                    name, have, need);
    if (have > need)
        return fail(err, err_size, "%s: %zu trailing bytes after the data", name, have - need);
    size_t out_item = a.kind == NPY_FLOAT32 ? 4 : a.kind == NPY_INT64 ? 8 : 1;
    a.data = malloc(count ? count * out_item : 1);
    if (!a.data)
        return fail(err, err_size, "%s: out of memory for %zu elements", name, count);
    convert(&a, itemsize, b + start + hlen);
    *out = a;
    return true;
}

bool npy_read(const char *path, npy_array *out, char *err, size_t err_size)
{
    if (out)
        memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, err_size, "%s: cannot open: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            unsigned char *nb = ncap > cap ? realloc(buf, ncap) : NULL;
            if (!nb) {
                free(buf);
                fclose(f);
                return fail(err, err_size, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + size, 1, cap - size, f);
        size += n;
        if (n == 0)
            break;
    }
    bool read_error = ferror(f);
    fclose(f);
    bool ok = read_error ? fail(err, err_size, "%s: read error", path)
                         : npy_parse(path, buf, size, out, err, err_size);
    free(buf);
    return ok;
}

void npy_free(npy_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ======================================================================== */
/* Writing                                                                   */
/* ======================================================================== */

bool npy_write_f32(const char *path, int32_t ndim, const int64_t *shape, const float *data,
                   char *err, size_t err_size)
{
    if (ndim < 0 || ndim > NPY_MAX_DIMS || (ndim && !shape))
        return fail(err, err_size, "%s: ndim %d out of range 0..%d", path, ndim, NPY_MAX_DIMS);
    char header[64 + NPY_MAX_DIMS * 22];
    int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return fail(err, err_size, "%s: negative extent %lld", path, (long long)shape[i]);
        n += snprintf(header + n, sizeof header - (size_t)n, "%lld,%s", (long long)shape[i],
                      i + 1 < ndim ? " " : "");
        count *= (size_t)shape[i];
    }
    /* "(3,)" keeps its comma; "(2, 3,)" becomes "(2, 3)" as NumPy writes. */
    if (ndim > 1)
        n--;
    n += snprintf(header + n, sizeof header - (size_t)n, "), }");
    /* Pad so that magic + version + length + header + '\n' is a multiple of
     * 64, as NumPy does (aligned data for memory mapping). */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    if (count && !data)
        return fail(err, err_size, "%s: data is NULL", path);
    char *tmp = malloc(strlen(path) + 32);
    if (!tmp)
        return fail(err, err_size, "%s: out of memory", path);
    sprintf(tmp, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        bool r = fail(err, err_size, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return r;
    }
    size_t hlen = (size_t)n + pad + 1;
    unsigned char prefix[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hlen,
                                (unsigned char)(hlen >> 8)};
    bool ok = fwrite(prefix, 1, 10, f) == 10 && fwrite(header, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    for (size_t i = 0; ok && i < count; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        unsigned char le4[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                                (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
        ok = fwrite(le4, 1, 4, f) == 4;
    }
    ok = (fclose(f) == 0) && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        fail(err, err_size, "%s: write failed: %s", path, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    return ok;
}
