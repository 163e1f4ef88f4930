/* config.c - clattn_llama_config: its defaults, the checks every model
 * passes before anything is allocated, and the mapping from a folder's
 * config.json (parsed by lm/config.c, the reader clattn_lm_load uses, so
 * both read a folder the same way). */
#include "lm/lm.h"
#include "lm_train/lm_train.h"

#include <math.h>
#include <string.h>

clattn_llama_config clattn_llama_config_default(void)
{
    clattn_llama_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 256;
    c.hidden_size = 256;
    c.intermediate_size = 688;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 4;
    c.head_dim = 0;
    c.max_position_embeddings = 512;
    c.rope = clattn_rope_params_default();
    c.rms_norm_eps = 1e-6f;
    c.tie_word_embeddings = true;
    c.initializer_range = 0.02f;
    c.dropout = 0.0f;
    c.dropout_seed = 0;
    c.bos_token_id = c.eos_token_id = c.pad_token_id = -1;
    return c;
}

/* The largest element count of one tensor: clattn's kernels index with
 * 32-bit ints. */
#define MAX_ELEMENTS ((int64_t)1 << 31)

static clattn_status bad(clattn_ctx *ctx, const char *field, long long value, const char *rule)
{
    return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "llama config: %s = %lld %s", field, value,
                        rule);
}

/* Fails unless rows x cols elements fit in one tensor. */
static clattn_status check_matrix(clattn_ctx *ctx, const char *what, int64_t rows, int64_t cols)
{
    if (rows * cols < MAX_ELEMENTS)
        return CLATTN_OK;
    return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                        "llama config: %s would be [%lld, %lld], over 2^31 elements",
                        what, (long long)rows, (long long)cols);
}

static clattn_status check_id(clattn_ctx *ctx, const char *field, int32_t id, int32_t vocab)
{
    if (id == -1 || (id >= 0 && id < vocab))
        return CLATTN_OK;
    return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                        "llama config: %s = %d must be -1 (none) or in 0 .. %d", field, (int)id,
                        (int)vocab - 1);
}

clattn_status clattn__llama_config_check(clattn_ctx *ctx, const clattn_llama_config *cfg,
                                         clattn_llama_config *out)
{
    if (!cfg)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "llama config: NULL");
    const clattn_llama_config *c = cfg;
    if (c->vocab_size < 2)
        return bad(ctx, "vocab_size", c->vocab_size, "must be >= 2");
    if (c->hidden_size < 1)
        return bad(ctx, "hidden_size", c->hidden_size, "must be >= 1");
    if (c->intermediate_size < 1)
        return bad(ctx, "intermediate_size", c->intermediate_size, "must be >= 1");
    if (c->num_hidden_layers < 1 || c->num_hidden_layers > CLATTN_LM_MAX_LAYERS)
        return bad(ctx, "num_hidden_layers", c->num_hidden_layers, "must be in 1 .. 1024");
    if (c->num_attention_heads < 1)
        return bad(ctx, "num_attention_heads", c->num_attention_heads, "must be >= 1");
    if (c->num_key_value_heads < 1 || c->num_attention_heads % c->num_key_value_heads != 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "llama config: num_key_value_heads = %d must be >= 1 and divide "
                            "num_attention_heads = %d",
                            (int)c->num_key_value_heads, (int)c->num_attention_heads);
    int32_t d = c->head_dim;
    if (d == 0) {
        if (c->hidden_size % c->num_attention_heads != 0)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "llama config: head_dim = 0 takes hidden_size / "
                                "num_attention_heads, but %d / %d is not a whole number",
                                (int)c->hidden_size, (int)c->num_attention_heads);
        d = c->hidden_size / c->num_attention_heads;
    }
    /* clattn_sdpa's head sizes are 1 .. 256; rotary needs an even one. */
    if (d < 2 || d > 256 || d % 2 != 0)
        return bad(ctx, "head_dim", d, "must be even, in 2 .. 256");
    /* Positions must be exact in float32 (clattn_rotary). */
    if (c->max_position_embeddings < 2 || c->max_position_embeddings > (1 << 24))
        return bad(ctx, "max_position_embeddings", c->max_position_embeddings,
                   "must be in 2 .. 2^24");
    clattn_status st = clattn__rope_params_check(ctx, "llama config: rope", &c->rope);
    if (st != CLATTN_OK)
        return st;
    if (!isfinite(c->rms_norm_eps) || c->rms_norm_eps < 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "llama config: rms_norm_eps = %g must be finite and >= 0",
                            (double)c->rms_norm_eps);
    if (!isfinite(c->initializer_range) || c->initializer_range < 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "llama config: initializer_range = %g must be finite and >= 0",
                            (double)c->initializer_range);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "llama config: dropout = %g must be in [0, 1)", (double)c->dropout);
    int64_t E = c->hidden_size, q_rows = (int64_t)c->num_attention_heads * d;
    int64_t kv_rows = (int64_t)c->num_key_value_heads * d;
    st = check_matrix(ctx, "embed_tokens.weight", c->vocab_size, E);
    if (st == CLATTN_OK)
        st = check_matrix(ctx, "q_proj.weight", q_rows, E);
    if (st == CLATTN_OK)
        st = check_matrix(ctx, "k_proj.weight", kv_rows, E);
    if (st == CLATTN_OK)
        st = check_matrix(ctx, "gate_proj.weight", c->intermediate_size, E);
    if (st == CLATTN_OK)
        st = check_id(ctx, "bos_token_id", c->bos_token_id, c->vocab_size);
    if (st == CLATTN_OK)
        st = check_id(ctx, "eos_token_id", c->eos_token_id, c->vocab_size);
    if (st == CLATTN_OK)
        st = check_id(ctx, "pad_token_id", c->pad_token_id, c->vocab_size);
    if (st != CLATTN_OK)
        return st;
    *out = *c;
    out->head_dim = d;
    return CLATTN_OK;
}

clattn_status clattn__llama_config_from_dir(clattn_ctx *ctx, const char *dir,
                                            clattn_llama_config *out)
{
    clattn__lm_config lc;
    clattn_status st = clattn__lm_config_read(ctx, dir, &lc);
    if (st != CLATTN_OK)
        return st;
    const char *why = NULL;
    if (lc.family != CLATTN_LM_LLAMA)
        why = "GPT-2 layers";
    else if (lc.qkv_bias || lc.o_bias || lc.mlp_bias)
        why = "projection biases (attention_bias, mlp_bias or Qwen2's q/k/v biases)";
    for (int32_t i = 0; !why && i < lc.layers; i++)
        if (lc.window_left[i] >= 0)
            why = "sliding-window attention";
    if (why) {
        st = clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                          "%s/config.json: %s (%s) do not train in clattn_llama, which trains "
                          "Llama layers",
                          dir, why, lc.architecture);
        clattn__lm_config_free(&lc);
        return st;
    }
    clattn_llama_config c = clattn_llama_config_default();
    c.vocab_size = lc.vocab;
    c.hidden_size = lc.hidden;
    c.intermediate_size = lc.intermediate;
    c.num_hidden_layers = lc.layers;
    c.num_attention_heads = lc.heads;
    c.num_key_value_heads = lc.kv_heads;
    c.head_dim = lc.head_dim;
    c.max_position_embeddings = lc.max_pos;
    c.rope.theta = lc.rope_theta;
    c.rope.type = lc.rope_type;
    if (lc.rope_type != CLATTN_ROPE_DEFAULT)
        c.rope.factor = lc.rope_factor;
    if (lc.rope_type == CLATTN_ROPE_LLAMA3) {
        c.rope.low_freq_factor = lc.rope_low_freq;
        c.rope.high_freq_factor = lc.rope_high_freq;
        c.rope.original_max_position = lc.rope_original_max;
    }
    c.rms_norm_eps = lc.norm_eps;
    c.tie_word_embeddings = lc.tied;
    c.bos_token_id = lc.bos_id;
    c.eos_token_id = lc.n_eos > 0 ? lc.eos_ids[0] : -1;
    clattn__lm_config_free(&lc);
    return clattn__llama_config_check(ctx, &c, out);
}
