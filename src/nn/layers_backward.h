/* nn/layers_backward.h - helpers that layers_backward.c shares with
 * layers_backward_gather.c; never installed. */
#ifndef CLATTN_LAYERS_BACKWARD_H
#define CLATTN_LAYERS_BACKWARD_H

#include "nn/nn.h"

/* The shape of t as "[2, 3]" into buf, or "NULL" for a NULL t. */
const char *clattn__shape_or_null(const clattn_tensor *t, char *buf, size_t size);

/* out[c] (+)= the column sums of column-sum kernel k of
 * cl/nn/layers_backward.cl, whose inputs (arguments 0 .. first-1) are
 * set; from argument first on follow rows, cols, out and the __local
 * scratch. The order depends on rows, cols and the device only. */
clattn_status clattn__col_reduce(clattn_ctx *ctx, cl_kernel k, cl_uint first, const char *kname,
                                 size_t rows, size_t cols, cl_mem out);

/* A device buffer of bytes holding zeros, written when it is created (no
 * queue command), for a temporary one kernel writes and another reads
 * (row statistics): see layers_backward.c. */
clattn_status clattn__zeroed_buffer(clattn_ctx *ctx, size_t bytes, const char *what, cl_mem *out);

#endif
