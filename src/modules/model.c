/* model.c - model folders (config.json + model.safetensors) and loading a
 * module's parameters from safetensors by state_dict name.
 *
 * config.json is untrusted input: every key is checked for its type, every
 * key the module does not take is refused by name, and numbers must be
 * integers where PyTorch wants integers. */
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

/* ---- config.json ------------------------------------------------------------------ */

typedef clattn__json_reader reader;

static void fail(reader *r, clattn_status st, const char *fmt, const char *key, const char *what)
{
    if (r->st != CLATTN_OK)
        return;
    char msg[300];
    snprintf(msg, sizeof msg, fmt, key, what);
    r->st = clattn__fail(r->ctx, st, "%s: %s%s", r->file, r->where, msg);
}

static clattn_activation get_activation(reader *r, json_t *obj)
{
    json_t *v = json_object_get(obj, "activation");
    if (!v || json_is_null(v))
        return CLATTN_ACT_RELU;
    const char *s = json_string_value(v);
    if (s && strcmp(s, "relu") == 0)
        return CLATTN_ACT_RELU;
    if (s && strcmp(s, "gelu") == 0)
        return CLATTN_ACT_GELU;
    char got[96];
    if (s)
        snprintf(got, sizeof got, " (PyTorch's string choices), not \"%.60s\"", s);
    else
        snprintf(got, sizeof got, " (PyTorch's string choices), not a %s",
                 json_is_number(v) ? "number" : "non-string value");
    fail(r, CLATTN_ERR_UNSUPPORTED, "'%s' must be \"relu\" or \"gelu\"%s", "activation", got);
    return CLATTN_ACT_RELU;
}

/* Refuses every key not in allowed (NULL-terminated). */
static void check_keys(reader *r, json_t *obj, const char *const *allowed)
{
    const char *key = clattn__json_unknown_key(obj, allowed);
    if (key)
        fail(r, CLATTN_ERR_UNSUPPORTED, "unsupported setting '%s'%s", key, " for this module");
}

/* Settings every module accepts: dropout is irrelevant to inference,
 * batch_first only says how the model's own inputs are laid out. */
#define COMMON_KEYS "module", "dropout", "batch_first", "device", "dtype"

static void read_dtype(reader *r, json_t *obj)
{
    json_t *v = json_object_get(obj, "dtype");
    const char *s = v ? json_string_value(v) : NULL;
    if (v && !json_is_null(v) &&
        !(s && (strcmp(s, "float32") == 0 || strcmp(s, "torch.float32") == 0)))
        fail(r, CLATTN_ERR_UNSUPPORTED, "'%s' must be float32%s", "dtype",
             " (clattn computes in float32)");
}

static void read_layer(reader *r, json_t *obj, clattn_module_config *c)
{
    static const char *const keys[] = {COMMON_KEYS,     "d_model",    "nhead",
                                       "dim_feedforward", "activation", "layer_norm_eps",
                                       "norm_first",      "bias",       NULL};
    check_keys(r, obj, keys);
    read_dtype(r, obj);
    c->d_model = clattn__json_get_int(r, obj, "d_model", 0, 1, 1 << 20);
    c->nhead = clattn__json_get_int(r, obj, "nhead", 0, 1, 1 << 16);
    c->dim_feedforward = clattn__json_get_int(r, obj, "dim_feedforward", 2048, 1, 1 << 24);
    c->activation = get_activation(r, obj);
    c->layer_norm_eps = (float)clattn__json_get_real(r, obj, "layer_norm_eps", 1e-5);
    c->norm_first = clattn__json_get_bool(r, obj, "norm_first", false);
    c->bias = clattn__json_get_bool(r, obj, "bias", true);
    c->batch_first = clattn__json_get_bool(r, obj, "batch_first", false);
}

static void read_stack(reader *r, json_t *obj, const char *layer_key, const char *layer_module,
                       clattn_module_config *c)
{
    const char *const keys[] = {COMMON_KEYS, "num_layers", "norm", layer_key,
                                "enable_nested_tensor", "mask_check", NULL};
    check_keys(r, obj, keys);
    c->num_layers = (int32_t)clattn__json_get_int(r, obj, "num_layers", 0, 1, 4096);
    c->final_norm = clattn__json_get_bool(r, obj, "norm", false);
    json_t *layer = json_object_get(obj, layer_key);
    if (!json_is_object(layer)) {
        fail(r, CLATTN_ERR_FORMAT, "'%s' must be an object with the layer's arguments%s",
             layer_key, "");
        return;
    }
    json_t *mod = json_object_get(layer, "module");
    if (mod && (!json_is_string(mod) || strcmp(json_string_value(mod), layer_module) != 0))
        fail(r, CLATTN_ERR_FORMAT, "'%s' must describe a %s", layer_key, layer_module);
    char where[64];
    snprintf(where, sizeof where, "%s.", layer_key);
    const char *saved = r->where;
    r->where = where;
    int32_t n = c->num_layers;
    bool norm = c->final_norm;
    read_layer(r, layer, c);
    r->where = saved;
    c->num_layers = n;
    c->final_norm = norm;
}

static clattn_status parse_config(clattn_ctx *ctx, const char *file, json_t *root,
                                  clattn_module_config *c)
{
    reader r = {ctx, file, "", CLATTN_OK};
    if (!json_is_object(root))
        return clattn__fail(ctx, CLATTN_ERR_FORMAT, "%s: the top level must be an object", file);
    const char *module = json_string_value(json_object_get(root, "module"));
    if (!module)
        return clattn__fail(ctx, CLATTN_ERR_FORMAT,
                            "%s: \"module\" must name the module, e.g. "
                            "\"torch.nn.TransformerEncoderLayer\"",
                            file);
    if (strcmp(module, "torch.nn.MultiheadAttention") == 0) {
        static const char *const keys[] = {COMMON_KEYS, "embed_dim", "num_heads", "bias",
                                           "add_bias_kv", "add_zero_attn", "kdim", "vdim",
                                           NULL};
        *c = clattn_module_config_default(CLATTN_MODULE_MHA);
        check_keys(&r, root, keys);
        read_dtype(&r, root);
        c->d_model = clattn__json_get_int(&r, root, "embed_dim", 0, 1, 1 << 20);
        c->nhead = clattn__json_get_int(&r, root, "num_heads", 0, 1, 1 << 16);
        c->bias = clattn__json_get_bool(&r, root, "bias", true);
        c->add_bias_kv = clattn__json_get_bool(&r, root, "add_bias_kv", false);
        c->add_zero_attn = clattn__json_get_bool(&r, root, "add_zero_attn", false);
        c->kdim = clattn__json_get_int(&r, root, "kdim", 0, 0, 1 << 20);
        c->vdim = clattn__json_get_int(&r, root, "vdim", 0, 0, 1 << 20);
        c->batch_first = clattn__json_get_bool(&r, root, "batch_first", false);
    } else if (strcmp(module, "clattn.SelfAttention") == 0) {
        static const char *const keys[] = {COMMON_KEYS, "in_dim", "attn_dim", "value_dim",
                                           "out_dim", "num_heads", "bias", NULL};
        *c = clattn_module_config_default(CLATTN_MODULE_SELF_ATTENTION);
        check_keys(&r, root, keys);
        read_dtype(&r, root);
        c->d_model = clattn__json_get_int(&r, root, "in_dim", 0, 1, 1 << 20);
        c->attn_dim = clattn__json_get_int(&r, root, "attn_dim", 0, 1, 1 << 20);
        c->value_dim = clattn__json_get_int(&r, root, "value_dim", 0, 0, 1 << 20);
        c->out_dim = clattn__json_get_int(&r, root, "out_dim", 0, 0, 1 << 20);
        c->nhead = clattn__json_get_int(&r, root, "num_heads", 1, 1, 1 << 16);
        c->bias = clattn__json_get_bool(&r, root, "bias", true);
        c->batch_first = clattn__json_get_bool(&r, root, "batch_first", true);
    } else if (strcmp(module, "torch.nn.TransformerEncoderLayer") == 0) {
        *c = clattn_module_config_default(CLATTN_MODULE_ENCODER_LAYER);
        read_layer(&r, root, c);
    } else if (strcmp(module, "torch.nn.TransformerDecoderLayer") == 0) {
        *c = clattn_module_config_default(CLATTN_MODULE_DECODER_LAYER);
        read_layer(&r, root, c);
    } else if (strcmp(module, "torch.nn.TransformerEncoder") == 0) {
        *c = clattn_module_config_default(CLATTN_MODULE_ENCODER);
        read_stack(&r, root, "encoder_layer", "torch.nn.TransformerEncoderLayer", c);
    } else if (strcmp(module, "torch.nn.TransformerDecoder") == 0) {
        *c = clattn_module_config_default(CLATTN_MODULE_DECODER);
        read_stack(&r, root, "decoder_layer", "torch.nn.TransformerDecoderLayer", c);
    } else if (strcmp(module, "torch.nn.Transformer") == 0) {
        static const char *const keys[] = {COMMON_KEYS,        "d_model",         "nhead",
                                           "num_encoder_layers", "num_decoder_layers",
                                           "dim_feedforward",  "activation",      "layer_norm_eps",
                                           "norm_first",       "bias",            NULL};
        *c = clattn_module_config_default(CLATTN_MODULE_TRANSFORMER);
        check_keys(&r, root, keys);
        read_dtype(&r, root);
        c->d_model = clattn__json_get_int(&r, root, "d_model", 512, 1, 1 << 20);
        c->nhead = clattn__json_get_int(&r, root, "nhead", 8, 1, 1 << 16);
        c->num_encoder_layers = (int32_t)clattn__json_get_int(&r, root, "num_encoder_layers", 6, 1, 2048);
        c->num_decoder_layers = (int32_t)clattn__json_get_int(&r, root, "num_decoder_layers", 6, 1, 2048);
        c->dim_feedforward = clattn__json_get_int(&r, root, "dim_feedforward", 2048, 1, 1 << 24);
        c->activation = get_activation(&r, root);
        c->layer_norm_eps = (float)clattn__json_get_real(&r, root, "layer_norm_eps", 1e-5);
        c->norm_first = clattn__json_get_bool(&r, root, "norm_first", false);
        c->bias = clattn__json_get_bool(&r, root, "bias", true);
        c->batch_first = clattn__json_get_bool(&r, root, "batch_first", false);
    } else {
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%s: module '%s' is not supported (torch.nn.MultiheadAttention, "
                            "TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder, "
                            "TransformerDecoder, Transformer, clattn.SelfAttention)",
                            file, module);
    }
    return r.st;
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
        st = parse_config(ctx, config_path, root, &cfg);
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
