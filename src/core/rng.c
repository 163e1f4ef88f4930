/* rng.c - the host random number generator: xoshiro256** (Blackman and
 * Vigna) seeded through splitmix64. Defined here bit for bit, so a seed
 * gives the same stream on every machine (the sampler's draws, a trainable
 * model's initial weights). */
#include "core/core.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void clattn__rng_seed(uint64_t st[4], uint64_t seed)
{
    /* splitmix64 never gives four zero words (it is a bijection of its
     * counter), so the xoshiro state is never the forbidden all-zero one. */
    for (int i = 0; i < 4; i++)
        st[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t clattn__rng_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double clattn__rng_double(uint64_t s[4]) { return (double)(clattn__rng_next(s) >> 11) * 0x1.0p-53; }
