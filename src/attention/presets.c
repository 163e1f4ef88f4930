/* presets.c - named score_mod presets built on the user-snippet
 * mechanism: ALiBi, tanh soft-capping, learned relative-position bias. */
#include "attention/attention.h"

#include <math.h>

void clattn_sdpa_preset_alibi(clattn_sdpa_params *p, const clattn_tensor *slopes)
{
    if (!p)
        return;
    /* Distance measured from the bottom-right aligned diagonal, as the
     * window is; computed in float so huge N, M cannot overflow an int. */
    p->score_mod = "score - buf[h] * fabs((float)q_idx + (float)(n_kv - n_q) - (float)kv_idx)";
    p->mod_buffer = slopes;
    p->preset = CLATTN_PRESET_ALIBI;
}

/* Slopes of the ALiBi paper: for n a power of two, 2^(-8 (i+1) / n); for
 * other n, those of the nearest lower power of two followed by every other
 * slope of twice that power. */
static void alibi_pow2(int32_t n, float *out, int32_t count, int32_t step)
{
    double base = pow(2.0, -8.0 / n);
    for (int32_t i = 0; i < count; i++)
        out[i] = (float)pow(base, (double)(1 + i * step));
}

void clattn_alibi_slopes(int32_t n_heads, float *slopes)
{
    if (n_heads <= 0 || !slopes)
        return;
    int32_t p2 = 1;
    while (p2 * 2 <= n_heads)
        p2 *= 2;
    alibi_pow2(p2, slopes, p2, 1);
    if (p2 < n_heads)
        alibi_pow2(2 * p2, slopes + p2, n_heads - p2, 2);
}

void clattn_sdpa_preset_softcap(clattn_sdpa_params *p, float cap)
{
    if (!p)
        return;
    p->score_mod = "p0 * tanh(score / p0)";
    p->mod_params[0] = cap;
    p->mod_buffer = NULL;
    p->preset = CLATTN_PRESET_SOFTCAP;
}

void clattn_sdpa_preset_relpos(clattn_sdpa_params *p, const clattn_tensor *table,
                               int32_t max_distance)
{
    if (!p)
        return;
    p->score_mod = "score + buf[h * (2 * (int)p0 + 1) + "
                   "clamp(kv_idx - q_idx, -(int)p0, (int)p0) + (int)p0]";
    p->mod_buffer = table;
    p->mod_params[0] = (float)max_distance;
    p->preset = CLATTN_PRESET_RELPOS;
}
