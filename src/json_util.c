/* json_util.c - small helpers for the JSON files clattn reads as untrusted
 * input (config.json, tokenizer.json, ...). */
#include "internal.h"

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
