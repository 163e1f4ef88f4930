/*
 * dropout.cl - inverted dropout with a counter-based generator, forward
 * and backward (the same kernel: the mask is a function of the element
 * index, seed and offset alone, so nothing is stored between the two).
 *
 * The generator is Philox4x32-10 (Salmon et al., "Parallel random numbers:
 * as easy as 1, 2, 3", SC 2011), bit-exact with Random123's philox4x32
 * with 10 rounds, which PyTorch and JAX also use; tests/nn/test_dropout.c
 * checks it against Random123's known-answer vectors. Integer arithmetic
 * only, so every OpenCL device gives the same mask.
 */

#define PHILOX_M0 0xD2511F53u /* round multipliers */
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* key schedule: golden ratio, sqrt(3) - 1 */
#define PHILOX_W1 0xBB67AE85u

/* Philox4x32 with 10 rounds: the key is bumped before every round but the
 * first, as Random123's philox4x32_R(10, ctr, key). */
static uint4 philox4x32_10(uint4 ctr, uint2 key)
{
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            key.x += PHILOX_W0;
            key.y += PHILOX_W1;
        }
        const uint hi0 = mul_hi(PHILOX_M0, ctr.x), lo0 = PHILOX_M0 * ctr.x;
        const uint hi1 = mul_hi(PHILOX_M1, ctr.z), lo1 = PHILOX_M1 * ctr.z;
        ctr = (uint4)(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
    }
    return ctr;
}

/* y[i] = keep ? x[i] * scale : 0 for i < n, where element i is dropped iff
 * the first word of philox4x32_10({lo(i + offset), hi(i + offset), 0, 0},
 * {key0, key1}) is < threshold (the host's ceil(p * 2^32), up to 2^32 for
 * p = 1; i + offset wraps modulo 2^64). A dropped element is exactly 0,
 * whatever x holds (no 0 * inf or NaN). global >= n. y may be x. */
__kernel void dropout_apply(__global const float *x, __global float *y, const ulong n,
                            const ulong offset, const uint key0, const uint key1,
                            const ulong threshold, const float scale)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    const ulong c = offset + i;
    const uint r = philox4x32_10((uint4)((uint)c, (uint)(c >> 32), 0u, 0u),
                                 (uint2)(key0, key1)).x;
    y[i] = (ulong)r < threshold ? 0.0f : x[i] * scale;
}

/* The generator itself, for the known-answer tests: record j of in holds
 * a counter and a key (6 words: ctr[0..3], key[0..1]); out[4 j .. 4 j + 4)
 * gets the 4 output words. global = (records). */
__kernel void philox_test(__global const uint *in, __global uint *out)
{
    const size_t j = get_global_id(0);
    __global const uint *r = in + 6 * j;
    const uint4 o = philox4x32_10((uint4)(r[0], r[1], r[2], r[3]), (uint2)(r[4], r[5]));
    out[4 * j] = o.x;
    out[4 * j + 1] = o.y;
    out[4 * j + 2] = o.z;
    out[4 * j + 3] = o.w;
}
