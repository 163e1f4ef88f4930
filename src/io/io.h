/* io/io.h - file formats: element types, safetensors files, JSON config
 * readers, and moving weights between files and device tensors. */
#ifndef CLATTN_IO_H
#define CLATTN_IO_H

#include "core/core.h"

/* ---- dtype.c: element types of model files ------------------------------ */

/* The dtype whose safetensors name is the len bytes at name; false if none. */
bool clattn__dtype_parse(const char *name, size_t len, clattn_dtype *out);

/* True for the dtypes clattn__dtype_to_f32 converts (F32, F16, BF16, F64). */
bool clattn__dtype_converts(clattn_dtype dtype);

/* Converts n little-endian elements of dtype at src (any alignment) to
 * float32 in dst. Only for dtypes where clattn__dtype_converts is true. */
void clattn__dtype_to_f32(clattn_dtype dtype, const void *src, size_t n, float *dst);

/* Exact decoders of one element, exposed for the tests. */
float clattn__f16_to_f32(uint16_t h);
float clattn__bf16_to_f32(uint16_t b);

/* ---- safetensors.c: parsed model files (no device needed) -------------- */

typedef struct clattn__weight {
    clattn_weight_info info;   /* info.name points at name */
    char *name;
    uint64_t begin, end;       /* data_offsets, relative to the data area */
} clattn__weight;

struct clattn_weights {
    char *path;                /* for messages */
    const unsigned char *map;  /* the whole file, read-only */
    size_t size;
    size_t data_start;         /* 8 + header length */
    clattn__weight *tensors;   /* sorted by data offset (file order) */
    int32_t count;
    int32_t *by_name;          /* indices into tensors, sorted by name */
    char **meta_keys;          /* sorted by key */
    char **meta_values;
    int32_t meta_count;
};

/* The tensor called name (binary search by name), or NULL; records no
 * error (multi-file models look in several files). */
const clattn__weight *clattn__weights_search(const clattn_weights *w, const char *name);

/* The tensor called name, or NULL with an INVALID_ARG error recorded on ctx
 * (may be NULL) and the thread. */
const clattn__weight *clattn__weights_lookup(clattn_ctx *ctx, const clattn_weights *w,
                                             const char *name);

/* ---- json.c ------------------------------------------------------- */

#include <jansson.h>

/* The first key of obj not in allowed (NULL-terminated), or NULL: the
 * readers refuse settings they do not know rather than ignore them. */
const char *clattn__json_unknown_key(json_t *obj, const char *const *allowed);

/* true with *out set when v is an integer, or a real with an integral value
 * (JSON writers may emit 64.0 for 64); false for anything else. */
bool clattn__json_integral(const json_t *v, int64_t *out);

/* Typed reading of a JSON config file's settings. The first failure is
 * kept in st (later ones are dropped, so a parser can read every key and
 * check once); messages read "FILE: WHERE'key' what". A missing or null key
 * gives the default without failing. */
typedef struct clattn__json_reader {
    clattn_ctx *ctx;           /* may be NULL */
    const char *file;          /* named in every message */
    const char *where;         /* "" or a prefix such as "encoder_layer."; NULL = "" */
    clattn_status st;
} clattn__json_reader;

void clattn__json_fail_key(clattn__json_reader *r, clattn_status st, const char *key,
                           const char *what);
/* A failure not about one key: "FILE: message" (kept only if the first). */
void clattn__json_fail(clattn__json_reader *r, clattn_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fails with CLATTN_ERR_UNSUPPORTED ("FILE: WHEREunsupported setting
 * 'key'") on the first key of obj not in allowed (NULL-terminated). */
void clattn__json_check_keys(clattn__json_reader *r, json_t *obj, const char *const *allowed);
/* An integer (or integral real) in [lo, hi]. */
int64_t clattn__json_get_int(clattn__json_reader *r, json_t *obj, const char *key, int64_t def,
                             int64_t lo, int64_t hi);
bool clattn__json_get_bool(clattn__json_reader *r, json_t *obj, const char *key, bool def);
double clattn__json_get_real(clattn__json_reader *r, json_t *obj, const char *key, double def);
const char *clattn__json_get_string(clattn__json_reader *r, json_t *obj, const char *key,
                                    const char *def);
/* The object or array at key: NULL (no failure) when missing or null,
 * NULL and a failure ("must be an object"/"an array") when another type. */
json_t *clattn__json_get_object(clattn__json_reader *r, json_t *obj, const char *key);
json_t *clattn__json_get_array(clattn__json_reader *r, json_t *obj, const char *key);

/* Parses the JSON file at path into *out (an object or an array at the
 * top level; duplicate keys refused). A missing file is *out = NULL and
 * CLATTN_OK when optional, else CLATTN_ERR_IO; malformed JSON is
 * CLATTN_ERR_FORMAT with the line and column. */
clattn_status clattn__json_load_file(clattn_ctx *ctx, const char *path, bool optional,
                                     json_t **out);

#endif /* CLATTN_IO_H */
