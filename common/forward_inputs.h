/* forward_inputs.h - named .npy inputs for clattn_module_forward, as the
 * tools and tests take them: "query", "src", "tgt_mask", ... (PyTorch's
 * forward argument names) and flags such as "is_causal". Not part of
 * libclattn; compiled into clattn-forward and the module tests. */
#ifndef CLATTN_TOOLS_FORWARD_INPUTS_H
#define CLATTN_TOOLS_FORWARD_INPUTS_H

#include <clattn.h>

#include "npy.h"

#define FORWARD_MAX_INPUTS 16

typedef struct forward_inputs {
    clattn_ctx *ctx;
    clattn_module_config cfg;
    clattn_forward_args args;
    bool need_weights;
    bool train;                                 /* run clattn_module_train_forward */
    clattn_tensor *tensors[FORWARD_MAX_INPUTS]; /* owned device inputs */
    int n_tensors;
    npy_array arrays[FORWARD_MAX_INPUTS];       /* owned mask data */
    int n_arrays;
} forward_inputs;

/* Starts an empty set for module m (its config says which inputs exist and
 * whether they are batch-first). */
void forward_inputs_init(forward_inputs *fi, clattn_ctx *ctx, const clattn_module *m);

/* Adds the array under a PyTorch argument name, taking ownership of arr's
 * data. Float tensors (query, key, value, src, tgt, memory) are uploaded,
 * transposed to batch-first when the model's config says batch_first is
 * false. Masks must be bool or float; int masks are refused because their
 * meaning is ambiguous (PyTorch: true = masked; Hugging Face: 1 = keep). */
bool forward_inputs_add(forward_inputs *fi, const char *name, npy_array *arr, char *err,
                        size_t err_size);

/* Sets a flag: is_causal, src_is_causal, tgt_is_causal, memory_is_causal,
 * need_weights, average_attn_weights. */
bool forward_inputs_flag(forward_inputs *fi, const char *name, bool value, char *err,
                         size_t err_size);

/* Runs the module (its training forward when fi->train). Writes the output (in the model's own layout) to
 * *out/out_shape (malloc'd) and, when need_weights, the attention weights. */
bool forward_inputs_run(forward_inputs *fi, clattn_module *m, float **out, int32_t *out_ndim,
                        int64_t *out_shape, float **weights, int32_t *w_ndim,
                        int64_t *w_shape, char *err, size_t err_size);

void forward_inputs_free(forward_inputs *fi);

#endif
