/* layers_backward.h - helpers that layers_backward.c shares with
 * layers_backward_gather.c; never installed. */
#ifndef CLATTN_LAYERS_BACKWARD_H
#define CLATTN_LAYERS_BACKWARD_H

#include "nn/nn.h"

/* Returns the named kernel of cl/layers_backward.cl (built once per
 * context). */
clattn_status clattn__bwd_kernel(clattn_ctx *ctx, const char *name, cl_kernel *out);

/* clattn__check_tensor for an optional argument: NULL passes. */
clattn_status clattn__check_opt_tensor(clattn_ctx *ctx, const char *fn, const char *arg,
                                       const clattn_tensor *t);

/* The shape of t as "[2, 3]" into buf, or "NULL" for a NULL t. */
const char *clattn__shape_or_null(const clattn_tensor *t, char *buf, size_t size);

#endif
