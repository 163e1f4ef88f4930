/* rope_freq.c - the rotary embedding's frequencies (clattn_rotary and the
 * decoder LM share them, so inference and training use the same ones),
 * and the default parameters. Pure host arithmetic, no device: the config
 * fuzz target links it alone. */
#include "nn/nn.h"

#include <math.h>

clattn_rope_params clattn_rope_params_default(void)
{
    clattn_rope_params p = {10000.0, CLATTN_ROPE_DEFAULT, 1.0, 1.0, 4.0, 8192};
    return p;
}

void clattn__rope_inv_freq(const clattn_rope_params *p, int32_t head_dim, float *inv_freq)
{
    const int half = head_dim / 2;
    const float base = (float)p->theta;
    for (int i = 0; i < half; i++) {
        /* transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)),
         * float32 throughout. */
        float e = (float)(2 * i) / (float)head_dim;
        float f = 1.0f / (float)pow((double)base, (double)e);
        if (p->type == CLATTN_ROPE_LINEAR) {
            f = f / (float)p->factor;
        } else if (p->type == CLATTN_ROPE_LLAMA3) {
            /* _compute_llama3_parameters: wavelengths longer than
             * original / low_freq_factor are scaled down by factor, shorter
             * than original / high_freq_factor kept, and the band between
             * interpolated smoothly. */
            const float factor = (float)p->factor, lo = (float)p->low_freq_factor;
            const float hi = (float)p->high_freq_factor, old = (float)p->original_max_position;
            const float low_wavelen = old / lo, high_wavelen = old / hi;
            const float wavelen = 2.0f * 3.14159265358979323846f / f;
            float g = wavelen > low_wavelen ? f / factor : f;
            const float smooth = (old / wavelen - lo) / (hi - lo);
            const float smoothed = (1.0f - smooth) * g / factor + smooth * g;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen))
                g = smoothed;
            f = g;
        }
        inv_freq[i] = f;
    }
}
