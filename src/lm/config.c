/* config.c - the settings of a decoder model folder: config.json in the
 * spelling of transformers 4.x (rope_theta, rope_scaling, torch_dtype) or
 * 5.x (rope_parameters, dtype), and generation_config.json's eos and bos
 * ids. Missing keys take the defaults of transformers' config class for
 * the model type. These files are untrusted input: every value used is
 * type- and range-checked, and every setting that would change the
 * numbers in a way clattn does not implement is refused by name. */
#include "io/io.h"
#include "lm/lm.h"
#include "nn/nn.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef clattn__json_reader reader;

/* The architectures clattn runs: config.json's architectures[0], its
 * model_type, the family, and the config class's defaults. */
typedef struct arch_row {
    const char *architecture, *model_type;
    clattn__lm_family family;
    int32_t max_pos;       /* max_position_embeddings default */
    double rope_theta;
    bool tied;             /* tie_word_embeddings default */
    bool qkv_bias;         /* biases on q, k, v by design (Qwen2) */
} arch_row;

static const arch_row ARCHS[] = {
    {"LlamaForCausalLM", "llama", CLATTN_LM_LLAMA, 2048, 10000.0, false, false},
    {"MistralForCausalLM", "mistral", CLATTN_LM_LLAMA, 4096 * 32, 10000.0, false, false},
    {"Qwen2ForCausalLM", "qwen2", CLATTN_LM_LLAMA, 32768, 10000.0, false, true},
    {"GPT2LMHeadModel", "gpt2", CLATTN_LM_GPT2, 1024, 0.0, true, false},
};

static const arch_row *find_arch(reader *r, json_t *root)
{
    const char *type = clattn__json_get_string(r, root, "model_type", NULL);
    json_t *archs = clattn__json_get_array(r, root, "architectures");
    if (r->st != CLATTN_OK)
        return NULL;
    const char *arch = NULL;
    if (archs && json_array_size(archs) > 0) {
        if (!json_is_string(json_array_get(archs, 0))) {
            clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "architectures", "must hold strings");
            return NULL;
        }
        arch = json_string_value(json_array_get(archs, 0));
    }
    if (!type) {
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "model_type", "is missing");
        return NULL;
    }
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++) {
        if (strcmp(type, ARCHS[i].model_type) != 0)
            continue;
        if (arch && strcmp(arch, ARCHS[i].architecture) != 0) {
            clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                              "'architectures' is \"%s\"; clattn runs \"%s\" for model_type "
                              "\"%s\"",
                              arch, ARCHS[i].architecture, type);
            return NULL;
        }
        return &ARCHS[i];
    }
    clattn__json_fail(r, CLATTN_ERR_UNSUPPORTED,
                      "'model_type' is \"%s\"%s%s%s; clattn runs llama, mistral, qwen2 and gpt2 "
                      "(LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                      "GPT2LMHeadModel)",
                      type, arch ? " (architectures: \"" : "", arch ? arch : "",
                      arch ? "\")" : "");
    return NULL;
}

/* A positive float setting (norm epsilons, factors, rope_theta). The model
 * computes with them in float32, so they must be finite there: 1e306
 * passed as finite and became an infinite rms_norm_eps. */
static double get_positive(reader *r, json_t *obj, const char *key, double def)
{
    double v = clattn__json_get_real(r, obj, key, def);
    if (v > 0 && v <= FLT_MAX)
        return v;
    clattn__json_fail_key(r, CLATTN_ERR_FORMAT, key,
                          "must be a positive number that float32 holds (at most 3.4e38)");
    return def;
}

/* One id or a list of ids (eos_token_id) into c->eos_ids; true if the key
 * was there. */
static bool read_ids(reader *r, json_t *obj, const char *key, int32_t vocab, clattn__lm_config *c)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return false;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n > CLATTN_LM_MAX_EOS) {
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, key,
                              "lists more than CLATTN_LM_MAX_EOS (8) ids");
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        int64_t id;
        if (!clattn__json_integral(e, &id) || id < 0 || id >= vocab) {
            char what[96];
            snprintf(what, sizeof what, "must be an id or a list of ids in [0, %d)", vocab);
            clattn__json_fail_key(r, CLATTN_ERR_FORMAT, key, what);
            return true;
        }
        c->eos_ids[i] = (int32_t)id;
    }
    c->n_eos = (int32_t)n;
    return true;
}

static void read_bos(reader *r, json_t *obj, clattn__lm_config *c)
{
    json_t *v = json_object_get(obj, "bos_token_id");
    if (v && !json_is_null(v))
        c->bos_id = (int32_t)clattn__json_get_int(r, obj, "bos_token_id", -1, 0, c->vocab - 1);
}

/* rope_scaling (4.x, "type" or "rope_type") or rope_parameters (5.x, which
 * also holds rope_theta). where names the object in messages. */
static void read_rope(reader *r, json_t *root, clattn__lm_config *c, double theta_default)
{
    json_t *params = clattn__json_get_object(r, root, "rope_parameters");
    json_t *scaling = clattn__json_get_object(r, root, "rope_scaling");
    if (r->st != CLATTN_OK)
        return;
    json_t *obj = params ? params : scaling;
    const char *where = params ? "rope_parameters." : "rope_scaling.";
    c->rope_theta = get_positive(r, root, "rope_theta", theta_default);
    if (params)
        c->rope_theta = get_positive(r, params, "rope_theta", c->rope_theta);
    c->rope_type = CLATTN_ROPE_DEFAULT;
    json_t *pf = json_object_get(root, "partial_rotary_factor");
    if (pf && !json_is_null(pf) && !(json_is_number(pf) && json_number_value(pf) == 1.0))
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "partial_rotary_factor",
                              "other than 1 is not supported");
    if (!obj || r->st != CLATTN_OK)
        return;
    reader sub = *r;
    sub.where = where;
    const char *type = clattn__json_get_string(&sub, obj, "rope_type", NULL);
    if (!type)
        type = clattn__json_get_string(&sub, obj, "type", "default");
    if (sub.st == CLATTN_OK && strcmp(type, "default") == 0) {
        c->rope_type = CLATTN_ROPE_DEFAULT;
    } else if (sub.st == CLATTN_OK && strcmp(type, "linear") == 0) {
        c->rope_type = CLATTN_ROPE_LINEAR;
        c->rope_factor = get_positive(&sub, obj, "factor", 0.0);
    } else if (sub.st == CLATTN_OK && strcmp(type, "llama3") == 0) {
        c->rope_type = CLATTN_ROPE_LLAMA3;
        c->rope_factor = get_positive(&sub, obj, "factor", 0.0);
        c->rope_low_freq = get_positive(&sub, obj, "low_freq_factor", 0.0);
        c->rope_high_freq = get_positive(&sub, obj, "high_freq_factor", 0.0);
        c->rope_original_max = (int32_t)clattn__json_get_int(
            &sub, obj, "original_max_position_embeddings", 0, 1, INT32_MAX);
        if (sub.st == CLATTN_OK && !(c->rope_high_freq > c->rope_low_freq))
            clattn__json_fail_key(&sub, CLATTN_ERR_FORMAT, "high_freq_factor",
                                  "must be greater than low_freq_factor");
        if (sub.st == CLATTN_OK && c->rope_original_max == 0)
            clattn__json_fail_key(&sub, CLATTN_ERR_FORMAT, "original_max_position_embeddings",
                                  "is missing");
    } else if (sub.st == CLATTN_OK) {
        char what[128];
        snprintf(what, sizeof what,
                 "\"%s\" is not supported (clattn: default, linear, llama3)", type);
        clattn__json_fail_key(&sub, CLATTN_ERR_UNSUPPORTED, "rope_type", what);
    }
    r->st = sub.st;
}

/* Per-layer attention windows (see clattn__lm_config.window_left). */
static void read_windows(reader *r, json_t *root, const arch_row *a, clattn__lm_config *c)
{
    for (int32_t l = 0; l < c->layers; l++)
        c->window_left[l] = -1;
    json_t *sw = json_object_get(root, "sliding_window");
    bool has_window = sw && !json_is_null(sw);
    if (has_window)
        c->sliding_window =
            (int32_t)clattn__json_get_int(r, root, "sliding_window", 0, 1, INT32_MAX);
    if (strcmp(a->model_type, "qwen2") == 0) {
        /* Qwen2Config: the window applies only when use_sliding_window, to
         * the layers from max_window_layers on (or as layer_types says). */
        bool use = clattn__json_get_bool(r, root, "use_sliding_window", false);
        if (!use)
            c->sliding_window = 0;
        int64_t from = clattn__json_get_int(r, root, "max_window_layers", 28, 0, INT32_MAX);
        json_t *types = clattn__json_get_array(r, root, "layer_types");
        if (r->st != CLATTN_OK)
            return;
        if (types && (int64_t)json_array_size(types) != c->layers) {
            clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "layer_types",
                                  "must list one type per layer");
            return;
        }
        for (int32_t l = 0; l < c->layers; l++) {
            bool sliding = use && has_window && l >= from;
            if (types) {
                const char *t = json_string_value(json_array_get(types, (size_t)l));
                if (!t || (strcmp(t, "sliding_attention") && strcmp(t, "full_attention"))) {
                    clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "layer_types",
                                          "holds a type other than full_attention and "
                                          "sliding_attention");
                    return;
                }
                sliding = strcmp(t, "sliding_attention") == 0 && c->sliding_window > 0;
            }
            if (sliding)
                c->window_left[l] = c->sliding_window - 1;
        }
        return;
    }
    if (strcmp(a->model_type, "llama") == 0) {
        c->sliding_window = 0; /* LlamaConfig has no window */
        return;
    }
    /* Mistral: key j is visible to query i when i - window < j <= i. */
    for (int32_t l = 0; l < c->layers && c->sliding_window > 0; l++)
        c->window_left[l] = c->sliding_window - 1;
}

static void read_llama(reader *r, json_t *root, const arch_row *a, clattn__lm_config *c)
{
    c->vocab = (int32_t)clattn__json_get_int(r, root, "vocab_size", 32000, 1, INT32_MAX / 2);
    c->hidden = (int32_t)clattn__json_get_int(r, root, "hidden_size", 4096, 1, 1 << 16);
    c->intermediate =
        (int32_t)clattn__json_get_int(r, root, "intermediate_size", 11008, 1, 1 << 20);
    c->layers = (int32_t)clattn__json_get_int(r, root, "num_hidden_layers", 32, 1,
                                              CLATTN_LM_MAX_LAYERS);
    c->heads = (int32_t)clattn__json_get_int(r, root, "num_attention_heads", 32, 1, 1 << 12);
    c->kv_heads =
        (int32_t)clattn__json_get_int(r, root, "num_key_value_heads", c->heads, 1, 1 << 12);
    c->head_dim = (int32_t)clattn__json_get_int(r, root, "head_dim",
                                                c->heads ? c->hidden / c->heads : 0, 1, 256);
    /* Without head_dim it is hidden_size / num_attention_heads, which the
     * bounds above do not see (hidden_size 3 with 32 heads gave 0). */
    if (r->st == CLATTN_OK && (c->head_dim < 1 || c->head_dim > 256)) {
        char what[128];
        snprintf(what, sizeof what,
                 "is missing, and hidden_size / num_attention_heads = %d is not in [1, 256]",
                 (int)c->head_dim);
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "head_dim", what);
    }
    c->max_pos = (int32_t)clattn__json_get_int(r, root, "max_position_embeddings", a->max_pos,
                                               1, INT32_MAX);
    c->norm_eps = (float)get_positive(r, root, "rms_norm_eps", 1e-6);
    c->tied = clattn__json_get_bool(r, root, "tie_word_embeddings", a->tied);
    bool attention_bias = clattn__json_get_bool(r, root, "attention_bias", false);
    c->qkv_bias = a->qkv_bias || attention_bias;
    c->o_bias = attention_bias;
    c->mlp_bias = clattn__json_get_bool(r, root, "mlp_bias", false);
    const char *act = clattn__json_get_string(r, root, "hidden_act", "silu");
    if (r->st == CLATTN_OK && strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0)
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "hidden_act",
                              "other than silu is not supported for this architecture");
    c->act = CLATTN_ACT_SILU;
    if (r->st == CLATTN_OK && c->heads % c->kv_heads != 0)
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "num_key_value_heads",
                              "must divide num_attention_heads");
    if (r->st == CLATTN_OK && c->head_dim % 2 != 0)
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "head_dim",
                              "must be even for rotary embeddings");
    if (r->st == CLATTN_OK && c->window_left)
        read_windows(r, root, a, c);
    if (r->st == CLATTN_OK)
        read_rope(r, root, c, a->rope_theta);
}

static void read_gpt2(reader *r, json_t *root, clattn__lm_config *c)
{
    c->vocab = (int32_t)clattn__json_get_int(r, root, "vocab_size", 50257, 1, INT32_MAX / 2);
    c->hidden = (int32_t)clattn__json_get_int(r, root, "n_embd", 768, 1, 1 << 16);
    c->layers =
        (int32_t)clattn__json_get_int(r, root, "n_layer", 12, 1, CLATTN_LM_MAX_LAYERS);
    c->heads = (int32_t)clattn__json_get_int(r, root, "n_head", 12, 1, 1 << 12);
    c->kv_heads = c->heads;
    c->max_pos = (int32_t)clattn__json_get_int(r, root, "n_positions", 1024, 1, 1 << 24);
    c->intermediate = 4 * c->hidden;
    json_t *inner = json_object_get(root, "n_inner");
    if (inner && !json_is_null(inner))
        c->intermediate = (int32_t)clattn__json_get_int(r, root, "n_inner", 0, 1, 1 << 20);
    c->norm_eps = (float)get_positive(r, root, "layer_norm_epsilon", 1e-5);
    c->tied = clattn__json_get_bool(r, root, "tie_word_embeddings", true);
    c->qkv_bias = c->o_bias = c->mlp_bias = true;
    const char *act = clattn__json_get_string(r, root, "activation_function", "gelu_new");
    if (r->st != CLATTN_OK)
        return;
    if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0)
        c->act = CLATTN_ACT_GELU_TANH;
    else if (strcmp(act, "gelu") == 0)
        c->act = CLATTN_ACT_GELU;
    else if (strcmp(act, "relu") == 0)
        c->act = CLATTN_ACT_RELU;
    else if (strcmp(act, "silu") == 0 || strcmp(act, "swish") == 0)
        c->act = CLATTN_ACT_SILU;
    else
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "activation_function",
                              "is not one of gelu_new, gelu_pytorch_tanh, gelu, relu, silu");
    if (r->st == CLATTN_OK && c->hidden % c->heads != 0)
        clattn__json_fail_key(r, CLATTN_ERR_FORMAT, "n_head", "must divide n_embd");
    c->head_dim = c->hidden / c->heads;
    if (r->st == CLATTN_OK && (c->head_dim % 2 != 0 || c->head_dim > 256))
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "n_head",
                              "gives a head size that is odd or over 256");
    /* Settings that change the attention's numbers. */
    if (r->st == CLATTN_OK && !clattn__json_get_bool(r, root, "scale_attn_weights", true))
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "scale_attn_weights",
                              "false is not supported");
    if (r->st == CLATTN_OK &&
        clattn__json_get_bool(r, root, "scale_attn_by_inverse_layer_idx", false))
        clattn__json_fail_key(r, CLATTN_ERR_UNSUPPORTED, "scale_attn_by_inverse_layer_idx",
                              "true is not supported");
    for (int32_t l = 0; c->window_left && l < c->layers; l++)
        c->window_left[l] = -1;
}

static clattn_status read_generation_config(clattn_ctx *ctx, const char *dir,
                                            clattn__lm_config *c)
{
    char *path = clattn__aprintf("%s/generation_config.json", dir);
    if (!path)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    json_t *root = NULL;
    clattn_status st = clattn__json_load_file(ctx, path, true, &root);
    if (st == CLATTN_OK && root && !json_is_object(root))
        st = clattn__fail(ctx, CLATTN_ERR_FORMAT, "%s: the top level must be an object", path);
    if (st == CLATTN_OK && root) {
        reader r = {ctx, path, "", CLATTN_OK};
        read_ids(&r, root, "eos_token_id", c->vocab, c);
        read_bos(&r, root, c);
        st = r.st;
    }
    json_decref(root);
    free(path);
    return st;
}

clattn_status clattn__lm_config_read(clattn_ctx *ctx, const char *dir, clattn__lm_config *c)
{
    memset(c, 0, sizeof *c);
    c->bos_id = -1;
    char *path = clattn__aprintf("%s/config.json", dir);
    if (!path)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    json_t *root = NULL;
    clattn_status st = clattn__json_load_file(ctx, path, false, &root);
    if (st == CLATTN_OK && !json_is_object(root))
        st = clattn__fail(ctx, CLATTN_ERR_FORMAT, "%s: the top level must be an object", path);
    if (st != CLATTN_OK) {
        json_decref(root);
        free(path);
        return st;
    }
    reader r = {ctx, path, "", CLATTN_OK};
    const arch_row *a = find_arch(&r, root);
    if (a) {
        c->family = a->family;
        snprintf(c->architecture, sizeof c->architecture, "%s", a->architecture);
        snprintf(c->model_type, sizeof c->model_type, "%s", a->model_type);
        /* The layer count is read first so the windows have room. */
        int64_t layers = clattn__json_get_int(&r, root,
                                              a->family == CLATTN_LM_GPT2 ? "n_layer"
                                                                          : "num_hidden_layers",
                                              a->family == CLATTN_LM_GPT2 ? 12 : 32, 1,
                                              CLATTN_LM_MAX_LAYERS);
        c->window_left = r.st == CLATTN_OK ? calloc((size_t)layers, sizeof(int32_t)) : NULL;
        if (r.st == CLATTN_OK && !c->window_left)
            r.st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        if (r.st == CLATTN_OK && a->family == CLATTN_LM_GPT2)
            read_gpt2(&r, root, c);
        else if (r.st == CLATTN_OK)
            read_llama(&r, root, a, c);
        if (r.st == CLATTN_OK)
            read_bos(&r, root, c);
        if (r.st == CLATTN_OK)
            read_ids(&r, root, "eos_token_id", c->vocab, c);
    }
    st = r.st;
    json_decref(root);
    free(path);
    /* generation_config.json's ids, when present, take precedence, as in
     * transformers' generate. */
    if (st == CLATTN_OK)
        st = read_generation_config(ctx, dir, c);
    if (st != CLATTN_OK)
        clattn__lm_config_free(c);
    return st;
}

void clattn__lm_config_free(clattn__lm_config *c)
{
    free(c->window_left);
    c->window_left = NULL;
}

void clattn__lm_rope_inv_freq(const clattn__lm_config *c, float *inv_freq)
{
    clattn_rope_params p = {c->rope_theta,    c->rope_type,     c->rope_factor,
                            c->rope_low_freq, c->rope_high_freq, c->rope_original_max};
    clattn__rope_inv_freq(&p, c->head_dim, inv_freq);
}
