/* fuzz_lm_config.c - libFuzzer target for a decoder folder's settings
 * (clattn__lm_config_read, no context): the input's NUL-separated parts
 * are config.json and generation_config.json (an empty part: the file is
 * absent; see fuzz_files.h). An accepted config must hold the invariants
 * the model loader relies on, and its rotary frequencies are computed; a
 * refused one must come with a message and leave nothing allocated. */
#include "fuzz_files.h"

#include "lm/lm.h"

#include <math.h>

static const char *const names[] = {"config.json", "generation_config.json"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_write_parts(data, size, names, 2);
    clattn__clear_thread_error();
    clattn__lm_config c;
    clattn_status st = clattn__lm_config_read(NULL, dir, &c);
    if (st != CLATTN_OK) {
        if (clattn_last_error()[0] == '\0' || c.window_left != NULL)
            abort();
        return 0;
    }
    if (c.vocab < 1 || c.hidden < 1 || c.layers < 1 || c.layers > CLATTN_LM_MAX_LAYERS ||
        c.heads < 1 || c.kv_heads < 1 || c.heads % c.kv_heads != 0 || c.head_dim < 1 ||
        c.max_pos < 1 || !c.window_left || c.n_eos < 0 || c.n_eos > CLATTN_LM_MAX_EOS ||
        c.bos_id < -1 || c.bos_id >= c.vocab)
        abort();
    /* The settings the model computes with in float32 are finite there. */
    if (!isfinite(c.norm_eps) || !(c.norm_eps >= 0) || !isfinite((float)c.rope_theta) ||
        (c.rope_type != CLATTN_ROPE_DEFAULT &&
         (!isfinite((float)c.rope_factor) || !isfinite((float)c.rope_low_freq) ||
          !isfinite((float)c.rope_high_freq))))
        abort();
    for (int32_t i = 0; i < c.n_eos; i++)
        if (c.eos_ids[i] < 0 || c.eos_ids[i] >= c.vocab)
            abort();
    for (int32_t l = 0; l < c.layers; l++)
        if (c.window_left[l] < -1)
            abort();
    if (c.family == CLATTN_LM_LLAMA && c.head_dim <= 4096) {
        float inv[2048];
        clattn__lm_rope_inv_freq(&c, inv);
    }
    clattn__lm_config_free(&c);
    return 0;
}
