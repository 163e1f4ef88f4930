/* train_lm_export.c - clattn-train lm --export DIR: the trained model as a
 * Hugging Face LlamaForCausalLM folder, written from the public API:
 *
 *   config.json             the sizes, rope theta, eps, tied embeddings and
 *                           the token ids, float32
 *   generation_config.json  bos, eos and pad ids (generation stops at eos)
 *   model.safetensors       clattn_checkpoint_save of the parameters
 *                           without optimiser state: the state_dict names,
 *                           F32, "format": "pt" (tied: no lm_head.weight,
 *                           which transformers and clattn_lm_load take
 *                           from the embedding)
 *   tokenizer.json, tokenizer_config.json   the task's tokenizer
 *
 * clattn_lm_load (clattn-generate, clattn-server) and transformers'
 * AutoModelForCausalLM / AutoTokenizer read the folder. Each file is
 * written whole or not at all. */
#include "train_lm.h"

#include "json_file.h"
#include "lm_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static json_t *config_json(const clattn_llama_config *c)
{
    int32_t head_dim = c->head_dim ? c->head_dim : c->hidden_size / c->num_attention_heads;
    json_t *j = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:o, s:o, s:n, s:b, s:b,"
        " s:f, s:b, s:o, s:i, s:i, s:i, s:s, s:b}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "vocab_size", c->vocab_size,
        "hidden_size", c->hidden_size, "intermediate_size", c->intermediate_size,
        "num_hidden_layers", c->num_hidden_layers, "num_attention_heads",
        c->num_attention_heads, "num_key_value_heads", c->num_key_value_heads, "head_dim",
        head_dim, "max_position_embeddings", c->max_position_embeddings, "hidden_act", "silu",
        "rms_norm_eps", json_file_float(c->rms_norm_eps), "rope_theta",
        json_real(c->rope.theta), "rope_scaling", "attention_bias", 0, "mlp_bias", 0,
        "attention_dropout", 0.0, "tie_word_embeddings", c->tie_word_embeddings,
        "initializer_range", json_file_float(c->initializer_range), "bos_token_id",
        c->bos_token_id, "eos_token_id", c->eos_token_id, "pad_token_id", c->pad_token_id,
        "torch_dtype", "float32", "use_cache", 1);
    return j;
}

static json_t *generation_json(const clattn_llama_config *c)
{
    return json_pack("{s:i, s:i, s:i}", "bos_token_id", c->bos_token_id, "eos_token_id",
                     c->eos_token_id, "pad_token_id", c->pad_token_id);
}

int lm_export(const lm_options *o, clattn_llama *m, const clattn_param_ref *refs, int32_t n)
{
    const char *dir = o->export_dir;
    /* One level, as the option's check allows: DIR itself may be new. */
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, LM_TOOL ": --export: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    clattn_llama_config c = clattn_llama_get_config(m);
    char err[4400], path[4200];
    if (!json_file_write(dir, "config.json", config_json(&c), err, sizeof err) ||
        !json_file_write(dir, "generation_config.json", generation_json(&c), err, sizeof err) ||
        !lm_tokenizer_write(dir, c.max_position_embeddings, err, sizeof err)) {
        fprintf(stderr, LM_TOOL ": --export: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    clattn_status st = clattn_checkpoint_save(path, n, refs, NULL);
    if (st != CLATTN_OK) {
        fprintf(stderr, LM_TOOL ": --export: %s: %s: %s\n", path, clattn_status_str(st),
                clattn_last_error());
        return 1;
    }
    if (!o->json)
        printf("exported: %s (clattn-generate -m %s --temp 0 -p \"483+129=\")\n", dir, dir);
    return 0;
}
