/* hash.c - a non-cryptographic 64-bit hash (FNV-1a) for hash tables and
 * file names: the kernel cache's entry names, the tokenizer's vocabulary. */
#include "core/core.h"

uint64_t clattn__hash64(const void *data, size_t size, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < size; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
