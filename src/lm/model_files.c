/* model_files.c - the safetensors files of a model folder: one
 * model.safetensors, or the shards that model.safetensors.index.json's
 * weight_map names. Shard names are untrusted: only plain file names in
 * the folder are accepted. */
#include "io/io.h"
#include "lm/lm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Adds file name of dir to the list unless it is there. */
static clattn_status add_shard(clattn_ctx *ctx, clattn__lm_files *f, const char *dir,
                               const char *name, const char *index)
{
    for (int32_t i = 0; i < f->count; i++)
        if (strcmp(f->names[i], name) == 0)
            return CLATTN_OK;
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                            "%s: weight_map names the file \"%s\", which is not a plain file "
                            "name in the model folder",
                            index, name);
    if (f->count == CLATTN_LM_MAX_SHARDS)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED, "%s: more than %d shards", index,
                            CLATTN_LM_MAX_SHARDS);
    char *path = clattn__aprintf("%s/%s", dir, name);
    f->names[f->count] = clattn__strdup(name);
    if (!path || !f->names[f->count]) {
        free(path);
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    struct stat sb;
    clattn_status st = CLATTN_OK;
    if (stat(path, &sb) != 0)
        st = clattn__fail(ctx, CLATTN_ERR_IO, "%s: shard %s (listed in %s): %s", dir, name,
                          index, strerror(errno));
    else if ((st = clattn_weights_open(path, &f->files[f->count])) != CLATTN_OK)
        clattn__fail(ctx, st, "%s", clattn_last_error());
    free(path);
    f->count++;
    return st;
}

clattn_status clattn__lm_files_open(clattn_ctx *ctx, const char *dir, clattn__lm_files *f)
{
    memset(f, 0, sizeof *f);
    char *single = clattn__aprintf("%s/model.safetensors", dir);
    char *index = clattn__aprintf("%s/model.safetensors.index.json", dir);
    clattn_status st = CLATTN_OK;
    struct stat sb;
    if (!single || !index) {
        st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    } else if (stat(single, &sb) == 0) {
        f->names[0] = clattn__strdup("model.safetensors");
        f->count = 1;
        st = f->names[0] ? clattn_weights_open(single, &f->files[0])
                         : clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        if (st != CLATTN_OK)
            clattn__fail(ctx, st, "%s", clattn_last_error());
    } else if (stat(index, &sb) != 0) {
        st = clattn__fail(ctx, CLATTN_ERR_IO,
                          "%s: neither model.safetensors nor model.safetensors.index.json is "
                          "there",
                          dir);
    } else {
        json_t *root = NULL;
        st = clattn__json_load_file(ctx, index, false, &root);
        json_t *map = st == CLATTN_OK ? json_object_get(root, "weight_map") : NULL;
        if (st == CLATTN_OK && !json_is_object(map))
            st = clattn__fail(ctx, CLATTN_ERR_FORMAT, "%s: 'weight_map' must be an object",
                              index);
        const char *key;
        json_t *value;
        if (st == CLATTN_OK) {
            json_object_foreach(map, key, value)
            {
                if (!json_is_string(value)) {
                    st = clattn__fail(ctx, CLATTN_ERR_FORMAT,
                                      "%s: weight_map['%s'] must be a file name", index, key);
                    break;
                }
                st = add_shard(ctx, f, dir, json_string_value(value), index);
                if (st != CLATTN_OK)
                    break;
            }
        }
        json_decref(root);
    }
    free(single);
    free(index);
    if (st != CLATTN_OK)
        clattn__lm_files_close(f);
    return st;
}

void clattn__lm_files_close(clattn__lm_files *f)
{
    for (int32_t i = 0; i < f->count; i++) {
        clattn_weights_close(f->files[i]);
        free(f->names[i]);
    }
    memset(f, 0, sizeof *f);
}

const clattn_weight_info *clattn__lm_files_find(const clattn__lm_files *f, const char *name)
{
    for (int32_t i = 0; i < f->count; i++) {
        const clattn__weight *t = f->files[i] ? clattn__weights_search(f->files[i], name) : NULL;
        if (t)
            return &t->info;
    }
    return NULL;
}

uint64_t clattn__lm_files_bytes(const clattn__lm_files *f)
{
    uint64_t n = 0;
    for (int32_t i = 0; i < f->count; i++)
        for (int32_t j = 0; f->files[i] && j < f->files[i]->count; j++)
            n += f->files[i]->tensors[j].info.nbytes;
    return n;
}
