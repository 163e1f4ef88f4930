/* nn/layers_backward.h - helpers that layers_backward.c shares with
 * layers_backward_gather.c; never installed. */
#ifndef CLATTN_LAYERS_BACKWARD_H
#define CLATTN_LAYERS_BACKWARD_H

#include "nn/nn.h"

/* The shape of t as "[2, 3]" into buf, or "NULL" for a NULL t. */
const char *clattn__shape_or_null(const clattn_tensor *t, char *buf, size_t size);

#endif
