/* json.c - small helpers for the JSON files clattn reads as untrusted
 * input (config.json, tokenizer.json, ...). */
#include "io/io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const char *clattn__json_unknown_key(json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        (void)value;
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(*a, key) == 0;
        if (!known)
            return key;
    }
    return NULL;
}

bool clattn__json_integral(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    /* JSON writers may emit 64.0 for 64: accept integral reals that fit. */
    double d = json_is_real(v) ? json_real_value(v) : NAN;
    if (d == floor(d) && fabs(d) < 9.0e18) {
        *out = (int64_t)d;
        return true;
    }
    return false;
}

void clattn__json_fail_key(clattn__json_reader *r, clattn_status st, const char *key,
                           const char *what)
{
    if (r->st == CLATTN_OK)
        r->st = clattn__fail(r->ctx, st, "%s: %s'%s' %s", r->file, r->where ? r->where : "",
                             key, what);
}

void clattn__json_fail(clattn__json_reader *r, clattn_status st, const char *fmt, ...)
{
    if (r->st != CLATTN_OK)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->st = clattn__fail(r->ctx, st, "%s: %s", r->file, msg);
}

void clattn__json_check_keys(clattn__json_reader *r, json_t *obj, const char *const *allowed)
{
    const char *key = clattn__json_unknown_key(obj, allowed);
    if (key)
        clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED, "%sunsupported setting '%s'",
                          r->where ? r->where : "", key);
}

int64_t clattn__json_get_int(clattn__json_reader *r, json_t *obj, const char *key, int64_t def,
                             int64_t lo, int64_t hi)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return def;
    int64_t x;
    if (clattn__json_integral(v, &x) && x >= lo && x <= hi)
        return x;
    char what[80];
    snprintf(what, sizeof what, "must be an integer from %lld to %lld", (long long)lo,
             (long long)hi);
    clattn__json_fail_key(r, CLATTN_ERR_FORMAT, key, what);
    return def;
}

bool clattn__json_get_bool(clattn__json_reader *r, json_t *obj, const char *key, bool def)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_boolean(v)) {
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, key, "must be true or false");
        return def;
    }
    return json_is_true(v);
}

double clattn__json_get_real(clattn__json_reader *r, json_t *obj, const char *key, double def)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_number(v)) {
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, key, "must be a number");
        return def;
    }
    return json_number_value(v);
}

const char *clattn__json_get_string(clattn__json_reader *r, json_t *obj, const char *key,
                                    const char *def)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_string(v)) {
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, key, "must be a string");
        return def;
    }
    return json_string_value(v);
}

/* Missing or null: NULL, no failure; another type fails with what. */
static json_t *get_typed(clattn__json_reader *r, json_t *obj, const char *key, json_type type,
                         const char *what)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (json_typeof(v) != type) {
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, key, what);
        return NULL;
    }
    return v;
}

json_t *clattn__json_get_object(clattn__json_reader *r, json_t *obj, const char *key)
{
    return get_typed(r, obj, key, JSON_OBJECT, "must be an object");
}

json_t *clattn__json_get_array(clattn__json_reader *r, json_t *obj, const char *key)
{
    return get_typed(r, obj, key, JSON_ARRAY, "must be an array");
}

/* Parses path into *out; a missing file is *out = NULL when optional, else
 * CLATTN_ERR_IO. */
clattn_status clattn__json_load_file(clattn_ctx *ctx, const char *path, bool optional, json_t **out)
{
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (optional && errno == ENOENT)
            return CLATTN_OK;
        return clattn__fail(ctx, CLATTN_ERR_IO, "%s: %s", path, strerror(errno));
    }
    json_error_t jerr;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out && jerr.line < 0)
        return clattn__fail(ctx, CLATTN_ERR_IO, "%s: %s", path, jerr.text);
    if (!*out)
        return clattn__fail(ctx, CLATTN_ERR_FORMAT, "%s: %s (line %d, column %d)", path,
                            jerr.text, jerr.line, jerr.column);
    if (!json_is_object(*out) && !json_is_array(*out)) {
        json_decref(*out);
        *out = NULL;
        return clattn__fail(ctx, CLATTN_ERR_FORMAT, "%s: the top level must be an object", path);
    }
    return CLATTN_OK;
}
