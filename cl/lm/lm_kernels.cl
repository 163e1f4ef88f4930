/* lm_kernels.cl - the small per-token steps of a decoder layer (RMSNorm
 * is nn/layers.cl's rms_norm_rows): rotary embeddings fused with the
 * KV-cache store, SwiGLU, and the gather of one sequence's cache into
 * float32 for the prefill attention. Token rows: a batch of T tokens is
 * [T, width] floats whatever sequences they are of. */

/* One cache element in the cache's type. */
#ifdef LM_CACHE_F16
#define CACHE_T half
#define CACHE_STORE(v, i, p) vstore_half((v), (i), (p))
#define CACHE_LOAD(i, p) vload_half((i), (p))
#else
#define CACHE_T float
#define CACHE_STORE(v, i, p) ((p)[i] = (v))
#define CACHE_LOAD(i, p) ((p)[i])
#endif

/* Splits the fused projection rows qkv [T, (Hq + 2 Hkv) D] (q heads, then
 * k heads, then v heads) into q_out [T, Hq D] and the KV cache
 * k, v [slots, Hkv, C, D] at (slot[t], pos[t]), applying the rotary
 * embedding to q and k when ROTARY is set: transformers' rotate_half
 * layout, the pair (i, i + D/2) turned by the angle pos * inv_freq[i]
 * computed as one float32 product, as transformers computes it.
 * Global size [D/2, Hq + 2 Hkv, T]: work-item (i, head, t) does one pair. */
__kernel void rope_store(__global const float *qkv, __global float *q_out,
                         __global CACHE_T *k_cache, __global CACHE_T *v_cache,
                         __global const int *pos, __global const int *slot,
                         __global const float *inv_freq, const int hq, const int hkv,
                         const int d, const int cap)
{
    const int i = get_global_id(0), head = get_global_id(1), t = get_global_id(2);
    const int half_d = d / 2;
    if (i >= half_d)
        return;
    const int width = (hq + 2 * hkv) * d;
    __global const float *src = qkv + (size_t)t * width + (size_t)head * d;
    float a = src[i], b = src[i + half_d];
    const bool is_v = head >= hq + hkv;
#ifdef ROTARY
    if (!is_v) {
        const float angle = (float)pos[t] * inv_freq[i];
        const float c = cos(angle), s = sin(angle);
        const float ra = a * c - b * s, rb = b * c + a * s;
        a = ra, b = rb;
    }
#endif
    if (head < hq) {
        __global float *dst = q_out + (size_t)t * hq * d + (size_t)head * d;
        dst[i] = a;
        dst[i + half_d] = b;
        return;
    }
    const int h = is_v ? head - hq - hkv : head - hq;
    const size_t off = (((size_t)slot[t] * hkv + h) * cap + pos[t]) * d;
    __global CACHE_T *dst = (is_v ? v_cache : k_cache);
    CACHE_STORE(a, off + i, dst);
    CACHE_STORE(b, off + i + half_d, dst);
}

/* out[t, j] = silu(gu[t, j]) * gu[t, inter + j]: the SwiGLU of the fused
 * gate/up rows gu [T, 2 inter] (gate first), as LlamaMLP's
 * act_fn(gate_proj(x)) * up_proj(x). Global size [inter, T]. */
__kernel void swiglu(__global const float *gu, __global float *out, const int inter)
{
    const int j = get_global_id(0), t = get_global_id(1);
    if (j >= inter)
        return;
    const float g = gu[(size_t)t * 2 * inter + j], u = gu[(size_t)t * 2 * inter + inter + j];
    out[(size_t)t * inter + j] = g / (1.0f + exp(-g)) * u;
}

/* out [2, Hkv, M, D] float32 = keys then values of positions 0 .. M-1 of
 * cache slot slot, for the fused prefill attention when the cache is half
 * or must be contiguous. Global size [D, M, Hkv]. */
__kernel void cache_gather(__global const CACHE_T *k_cache, __global const CACHE_T *v_cache,
                           __global float *out, const int slot, const int hkv, const int d,
                           const int cap, const int m)
{
    const int e = get_global_id(0), j = get_global_id(1), h = get_global_id(2);
    if (e >= d || j >= m)
        return;
    const size_t src = (((size_t)slot * hkv + h) * cap + j) * d + e;
    const size_t dst = ((size_t)h * m + j) * d + e;
    out[dst] = CACHE_LOAD(src, k_cache);
    out[(size_t)hkv * m * d + dst] = CACHE_LOAD(src, v_cache);
}
