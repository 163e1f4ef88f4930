/* fuzz_npy.c - libFuzzer target for the .npy reader the tools use
 * (common/npy.c, npy_parse on the bytes in memory). An accepted array must
 * have a shape whose product is its count and data of that many elements
 * (every byte is read; ASan checks the bounds), booleans must be 0 or 1;
 * a refused one must come with a message and nothing allocated. */
#include "npy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_array a;
    char err[256];
    err[0] = '\0';
    if (!npy_parse("fuzz.npy", data, size, &a, err, sizeof err)) {
        if (err[0] == '\0' || strlen(err) >= sizeof err)
            abort();
        return 0;
    }
    if (a.ndim < 0 || a.ndim > NPY_MAX_DIMS)
        abort();
    size_t count = 1;
    for (int32_t d = 0; d < a.ndim; d++) {
        if (a.shape[d] < 0)
            abort();
        count *= (size_t)a.shape[d];
    }
    if (count != a.count || (a.count > 0 && !a.data))
        abort();
    size_t elem = a.kind == NPY_FLOAT32 ? 4 : a.kind == NPY_INT64 ? 8 : 1;
    const unsigned char *p = a.data;
    unsigned sum = 0;
    for (size_t i = 0; i < a.count * elem; i++)
        sum += p[i];
    if (a.kind == NPY_BOOL)
        for (size_t i = 0; i < a.count; i++)
            if (p[i] > 1)
                abort();
    (void)sum;
    npy_free(&a);
    return 0;
}
