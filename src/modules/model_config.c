/* model_config.c - a module's configuration: its defaults and config.json.
 *
 * config.json is untrusted input: every key is checked for its type, every
 * key the module does not take is refused by name, and numbers must be
 * integers where PyTorch wants integers. No device is needed (the fuzzer,
 * tests/fuzz/fuzz_module_config.c, links this file alone). */
#include "modules/modules.h"

#include <float.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

clattn_module_config clattn_module_config_default(clattn_module_kind kind)
{
    clattn_module_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.bias = true;
    c.dim_feedforward = 2048;
    c.activation = CLATTN_ACT_RELU;
    c.layer_norm_eps = 1e-5f;
    c.num_layers = 1;
    c.num_encoder_layers = 6;
    c.num_decoder_layers = 6;
    c.final_norm = kind == CLATTN_MODULE_TRANSFORMER;
    c.batch_first = true;
    return c;
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

/* layer_norm_eps: LayerNorm computes with it in float32, so it must be
 * finite there, and not negative (-1e5 passed, and then rsqrt of a
 * negative variance gives NaN). */
static float read_eps(reader *r, json_t *obj)
{
    double v = clattn__json_get_real(r, obj, "layer_norm_eps", 1e-5);
    if (r->st == CLATTN_OK && !(v >= 0 && v <= FLT_MAX)) {
        fail(r, CLATTN_ERR_FORMAT, "'%s' must be a number in [0, 3.4e38]%s", "layer_norm_eps",
             " (float32)");
        return 1e-5f;
    }
    return (float)v;
}

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
    c->layer_norm_eps = read_eps(r, obj);
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

clattn_status clattn__module_parse_config(clattn_ctx *ctx, const char *file, json_t *root,
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
        c->layer_norm_eps = read_eps(&r, root);
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

