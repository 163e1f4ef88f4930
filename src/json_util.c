/* json_util.c - small helpers for the JSON files clattn reads as untrusted
 * input (config.json, tokenizer.json, ...). */
#include "internal.h"

#include <math.h>
#include <string.h>

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
