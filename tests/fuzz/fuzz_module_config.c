/* fuzz_module_config.c - libFuzzer target for the config.json of a module
 * folder (clattn_model_load's reader): each input is parsed in memory with
 * the flags clattn_model_load uses, then read by
 * clattn__module_parse_config with no context (the device-free layer).
 * An accepted config must hold the ranges the reader promises; a refused
 * one must come with a message. */
#include "modules/modules.h"

#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t e;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
    if (!root)
        return 0;
    clattn__clear_thread_error();
    clattn_module_config c;
    clattn_status st = clattn__module_parse_config(NULL, "config.json", root, &c);
    json_decref(root);
    if (st != CLATTN_OK) {
        if (clattn_last_error()[0] == '\0')
            abort(); /* a refusal must say why */
        return 0;
    }
    /* Missing sizes stay 0 (clattn_module_create refuses them); every
     * size read is within its bounds. */
    if ((int)c.kind < 0 || c.kind > CLATTN_MODULE_TRANSFORMER || c.d_model < 0 ||
        c.d_model > (1 << 20) || c.nhead < 0 || c.nhead > (1 << 16) || c.num_layers < 0 ||
        c.num_layers > 4096 || c.dim_feedforward < 1 || c.dim_feedforward > (1 << 24) ||
        c.kdim < 0 || c.vdim < 0 || c.attn_dim < 0 || c.value_dim < 0 || c.out_dim < 0 ||
        c.num_encoder_layers < 1 || c.num_encoder_layers > 2048 || c.num_decoder_layers < 1 ||
        c.num_decoder_layers > 2048 || !isfinite(c.layer_norm_eps) || !(c.layer_norm_eps >= 0))
        abort();
    return 0;
}
