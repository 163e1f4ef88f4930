/* model.c - model folders (config.json + model.safetensors) and loading a
 * module's parameters from safetensors by state_dict name. config.json is
 * read by model_config.c. */
#include "modules/modules.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading parameters ------------------------------------------------------- */

clattn_status clattn__params_load(clattn_ctx *ctx, const clattn__param_set *set,
                                  const clattn_weights *w, const char *prefix, bool strict)
{
    char full[300], s1[96], s2[96];
    clattn_status st = CLATTN_OK;
    for (int32_t i = 0; i < set->count && st == CLATTN_OK; i++) {
        const clattn__param *p = &set->items[i];
        snprintf(full, sizeof full, "%s%s", prefix, p->name);
        clattn_weight_info info;
        if (clattn_weights_find(w, full, &info) != CLATTN_OK)
            return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                                "weights: missing tensor '%s' (expected shape %s)", full,
                                clattn__shape_str(p->shape, p->ndim, s1, sizeof s1));
        bool same = info.ndim == p->ndim;
        for (int32_t d = 0; same && d < p->ndim; d++)
            same = info.shape[d] == p->shape[d];
        if (!same)
            return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                                "weights: tensor '%s' has shape %s, the module expects %s", full,
                                clattn__shape_str(info.shape, info.ndim > 4 ? 4 : info.ndim, s1,
                                                  sizeof s1),
                                clattn__shape_str(p->shape, p->ndim, s2, sizeof s2));
        float *host = malloc(p->value->numel * sizeof *host);
        if (!host)
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        st = clattn_weights_read_f32(w, full, host, p->value->numel);
        /* A NaN or Inf weight would pass off NaN outputs as results (a
         * model folder with NaN weights printed 384 bare "nan"s). */
        int64_t bad = st == CLATTN_OK ? clattn__first_nonfinite(host, p->value->numel) : -1;
        if (bad >= 0) {
            float x = host[bad];
            free(host);
            return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                                "weights: tensor '%s' holds %s at flat index %lld; weights "
                                "must be finite",
                                full, x != x ? "NaN" : x > 0 ? "+Inf" : "-Inf", (long long)bad);
        }
        if (st == CLATTN_OK)
            st = clattn_tensor_write(p->value, host);
        free(host);
        if (st != CLATTN_OK)
            return clattn__fail(ctx, st, "%s", clattn_last_error());
    }
    if (strict) {
        int32_t n = clattn_weights_count(w);
        for (int32_t i = 0; i < n; i++) {
            clattn_weight_info info;
            if (clattn_weights_info_at(w, i, &info) == CLATTN_OK &&
                !clattn__params_find(set, info.name))
                return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                                    "weights: unexpected tensor '%s' (not a parameter of this "
                                    "module; %d expected)",
                                    info.name, set->count);
        }
    }
    return CLATTN_OK;
}

clattn_status clattn_module_load(clattn_module *m, const clattn_weights *w, const char *prefix)
{
    clattn__clear_thread_error();
    if (!m || !w)
        return clattn__fail(m ? m->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "module_load: module and weights must not be NULL");
    if (!prefix)
        prefix = "";
    /* Strict, like load_state_dict: with no prefix the file must hold
     * exactly this module's parameters. */
    return clattn__params_load(m->ctx, &m->params, w, prefix, prefix[0] == '\0');
}

clattn_status clattn_model_load(clattn_ctx *ctx, const char *dir, clattn_module **out)
{
    clattn__clear_thread_error();
    if (!ctx || !dir || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "model_load: NULL argument");
    *out = NULL;
    char *config_path = clattn__aprintf("%s/config.json", dir);
    char *weights_path = clattn__aprintf("%s/model.safetensors", dir);
    if (!config_path || !weights_path) {
        free(config_path);
        free(weights_path);
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    json_error_t jerr;
    json_t *root = json_load_file(config_path, JSON_REJECT_DUPLICATES, &jerr);
    clattn_status st = CLATTN_OK;
    clattn_module_config cfg;
    clattn_module *m = NULL;
    clattn_weights *w = NULL;
    if (!root && jerr.line < 0) /* jansson's way of saying it could not read the file */
        st = clattn__fail(ctx, CLATTN_ERR_IO, "%s: %s", config_path, jerr.text);
    else if (!root)
        st = clattn__fail(ctx, CLATTN_ERR_FORMAT, "%s: %s (line %d, column %d)", config_path,
                          jerr.text, jerr.line, jerr.column);
    if (st == CLATTN_OK)
        st = clattn__module_parse_config(ctx, config_path, root, &cfg);
    /* The arguments came from the file: one module_create refuses (nhead
     * not dividing d_model) is a malformed config.json, not a bad call. */
    if (st == CLATTN_OK && (st = clattn_module_create(ctx, &cfg, &m)) != CLATTN_OK) {
        if (st == CLATTN_ERR_INVALID_ARG)
            st = CLATTN_ERR_FORMAT;
        clattn__fail(ctx, st, "%s: %s", config_path, clattn_ctx_last_error(ctx));
    }
    if (st == CLATTN_OK && (st = clattn_weights_open(weights_path, &w)) != CLATTN_OK)
        clattn__fail(ctx, st, "%s", clattn_last_error());
    /* Some of module_load's messages name the file already. */
    if (st == CLATTN_OK && (st = clattn_module_load(m, w, "")) != CLATTN_OK &&
        strncmp(clattn_ctx_last_error(ctx), weights_path, strlen(weights_path)) != 0)
        clattn__fail(ctx, st, "%s: %s", weights_path, clattn_ctx_last_error(ctx));
    json_decref(root);
    clattn_weights_close(w);
    free(config_path);
    free(weights_path);
    if (st != CLATTN_OK) {
        clattn_module_destroy(m);
        return st;
    }
    *out = m;
    return CLATTN_OK;
}
