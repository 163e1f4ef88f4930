/* dtype.c - the element types of model files: names, sizes, and exact
 * conversion of the floating-point ones to float32.
 *
 * Bytes are assembled one at a time (little-endian, as safetensors stores
 * them), so the code neither depends on the host's byte order nor reads an
 * unaligned pointer: tensor data inside a mapped file has no alignment
 * guarantee. */
#include "io/io.h"

#include <string.h>

/* Indexed by clattn_dtype; names as the safetensors header spells them. */
static const struct {
    const char *name;
    int32_t bits;
} dtypes[] = {
    [CLATTN_DTYPE_BOOL] = {"BOOL", 8},
    [CLATTN_DTYPE_U8] = {"U8", 8},
    [CLATTN_DTYPE_I8] = {"I8", 8},
    [CLATTN_DTYPE_I16] = {"I16", 16},
    [CLATTN_DTYPE_U16] = {"U16", 16},
    [CLATTN_DTYPE_I32] = {"I32", 32},
    [CLATTN_DTYPE_U32] = {"U32", 32},
    [CLATTN_DTYPE_I64] = {"I64", 64},
    [CLATTN_DTYPE_U64] = {"U64", 64},
    [CLATTN_DTYPE_F16] = {"F16", 16},
    [CLATTN_DTYPE_BF16] = {"BF16", 16},
    [CLATTN_DTYPE_F32] = {"F32", 32},
    [CLATTN_DTYPE_F64] = {"F64", 64},
    [CLATTN_DTYPE_F8_E5M2] = {"F8_E5M2", 8},
    [CLATTN_DTYPE_F8_E4M3] = {"F8_E4M3", 8},
    [CLATTN_DTYPE_F8_E8M0] = {"F8_E8M0", 8},
    [CLATTN_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [CLATTN_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [CLATTN_DTYPE_F6_E2M3] = {"F6_E2M3", 6},
    [CLATTN_DTYPE_F6_E3M2] = {"F6_E3M2", 6},
    [CLATTN_DTYPE_F4] = {"F4", 4},
    [CLATTN_DTYPE_C64] = {"C64", 64},
};
enum { N_DTYPES = (int)(sizeof dtypes / sizeof dtypes[0]) };

static bool known(clattn_dtype d) { return (int)d >= 0 && (int)d < N_DTYPES; }

const char *clattn_dtype_name(clattn_dtype dtype)
{
    return known(dtype) ? dtypes[dtype].name : "unknown";
}

int32_t clattn_dtype_bits(clattn_dtype dtype) { return known(dtype) ? dtypes[dtype].bits : 0; }

bool clattn__dtype_parse(const char *name, size_t len, clattn_dtype *out)
{
    for (int i = 0; i < N_DTYPES; i++) {
        if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, name, len) == 0) {
            *out = (clattn_dtype)i;
            return true;
        }
    }
    return false;
}

bool clattn__dtype_converts(clattn_dtype dtype)
{
    return dtype == CLATTN_DTYPE_F32 || dtype == CLATTN_DTYPE_F16 ||
           dtype == CLATTN_DTYPE_BF16 || dtype == CLATTN_DTYPE_F64;
}

static float f32_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float clattn__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24, exact in float32 (11 bits of
         * mantissa at most, and 2^-24 is a normal float). */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) /* infinity, or NaN with its payload kept */
        return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    /* Normal: rebias the exponent from 15 to 127. */
    return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

float clattn__bf16_to_f32(uint16_t b) { return f32_from_bits((uint32_t)b << 16); }

void clattn__dtype_to_f32(clattn_dtype dtype, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    switch (dtype) {
    case CLATTN_DTYPE_F32:
        for (size_t i = 0; i < n; i++, p += 4)
            dst[i] = f32_from_bits((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                   (uint32_t)p[3] << 24);
        break;
    case CLATTN_DTYPE_F16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = clattn__f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    case CLATTN_DTYPE_BF16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = clattn__bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    case CLATTN_DTYPE_F64:
        for (size_t i = 0; i < n; i++, p += 8) {
            uint64_t bits = 0;
            for (int b = 7; b >= 0; b--)
                bits = bits << 8 | p[b];
            double d;
            memcpy(&d, &bits, sizeof d);
            dst[i] = (float)d; /* round to nearest; out of range gives +-inf */
        }
        break;
    default:
        break; /* callers check clattn__dtype_converts first */
    }
}
