/* forward_inputs.c - see forward_inputs.h. */
#include "forward_inputs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void forward_inputs_init(forward_inputs *fi, clattn_ctx *ctx, const clattn_module *m)
{
    memset(fi, 0, sizeof *fi);
    fi->ctx = ctx;
    fi->cfg = clattn_module_get_config(m);
    fi->args = clattn_forward_args_default();
}

void forward_inputs_free(forward_inputs *fi)
{
    for (int i = 0; i < fi->n_tensors; i++)
        clattn_tensor_destroy(fi->tensors[i]);
    for (int i = 0; i < fi->n_arrays; i++)
        npy_free(&fi->arrays[i]);
    fi->n_tensors = fi->n_arrays = 0;
}

/* [A, B, E] -> [B, A, E] (seq-first <-> batch-first). */
static float *swap01(const float *x, int64_t a, int64_t b, int64_t e)
{
    float *y = malloc((size_t)(a * b * e) * sizeof *y);
    if (!y)
        return NULL;
    for (int64_t i = 0; i < a; i++)
        for (int64_t j = 0; j < b; j++)
            memcpy(y + (j * a + i) * e, x + (i * b + j) * e, (size_t)e * sizeof *y);
    return y;
}

static bool add_tensor(forward_inputs *fi, const char *name, npy_array *arr,
                       const clattn_tensor **slot, char *err, size_t n)
{
    if (arr->kind != NPY_FLOAT32 || arr->ndim != 3) {
        snprintf(err, n, "input '%s' must be a 3-D float array ([B, N, E]%s), got %d-D %s",
                 name, fi->cfg.batch_first ? "" : " or, for this seq-first model, [N, B, E]",
                 arr->ndim, arr->descr);
        return false;
    }
    if (fi->n_tensors >= FORWARD_MAX_INPUTS) {
        snprintf(err, n, "too many inputs");
        return false;
    }
    int64_t shape[3] = {arr->shape[0], arr->shape[1], arr->shape[2]};
    const float *data = arr->data;
    float *swapped = NULL;
    if (!fi->cfg.batch_first) {
        swapped = swap01(data, shape[0], shape[1], shape[2]);
        if (!swapped) {
            snprintf(err, n, "out of memory");
            return false;
        }
        data = swapped;
        int64_t t = shape[0];
        shape[0] = shape[1];
        shape[1] = t;
    }
    clattn_tensor *t = NULL;
    clattn_status st = clattn_tensor_create(fi->ctx, 3, shape, &t);
    if (st == CLATTN_OK)
        st = clattn_tensor_write(t, data);
    free(swapped);
    if (st != CLATTN_OK) {
        snprintf(err, n, "input '%s': %s", name, clattn_last_error());
        clattn_tensor_destroy(t);
        return false;
    }
    fi->tensors[fi->n_tensors++] = t;
    *slot = t;
    npy_free(arr);
    return true;
}

static bool add_mask(forward_inputs *fi, const char *name, npy_array *arr, clattn_mask *slot,
                     char *err, size_t n)
{
    if (arr->kind == NPY_INT64) {
        snprintf(err, n,
                 "mask '%s' is an integer array: its meaning is ambiguous (PyTorch: true = "
                 "masked; Hugging Face attention_mask: 1 = keep); pass bool or float",
                 name);
        return false;
    }
    if (arr->ndim < 2 || arr->ndim > 3) {
        snprintf(err, n, "mask '%s' must have 2 or 3 dimensions, got %d", name, arr->ndim);
        return false;
    }
    if (fi->n_arrays >= FORWARD_MAX_INPUTS) {
        snprintf(err, n, "too many inputs");
        return false;
    }
    fi->arrays[fi->n_arrays] = *arr;
    memset(arr, 0, sizeof *arr); /* ownership moves to fi */
    npy_array *kept = &fi->arrays[fi->n_arrays++];
    slot->kind = kept->kind == NPY_BOOL ? CLATTN_MASK_BOOL : CLATTN_MASK_FLOAT;
    slot->data = kept->data;
    slot->ndim = kept->ndim;
    for (int i = 0; i < kept->ndim; i++)
        slot->shape[i] = kept->shape[i];
    return true;
}

bool forward_inputs_add(forward_inputs *fi, const char *name, npy_array *arr, char *err,
                        size_t n)
{
    clattn_forward_args *a = &fi->args;
    static const char *const tensor_names[] = {"query", "key", "value", "src", "tgt", "memory"};
    const clattn_tensor **tensor_slots[] = {&a->query, &a->key, &a->value,
                                            &a->src,   &a->tgt, &a->memory};
    for (size_t i = 0; i < 6; i++)
        if (strcmp(name, tensor_names[i]) == 0)
            return add_tensor(fi, name, arr, tensor_slots[i], err, n);
    /* TransformerEncoder.forward calls its mask "mask", the layer "src_mask". */
    static const char *const mask_names[] = {"attn_mask",
                                             "key_padding_mask",
                                             "src_mask",
                                             "mask",
                                             "tgt_mask",
                                             "memory_mask",
                                             "src_key_padding_mask",
                                             "tgt_key_padding_mask",
                                             "memory_key_padding_mask"};
    clattn_mask *mask_slots[] = {&a->attn_mask,
                                 &a->key_padding_mask,
                                 &a->src_mask,
                                 &a->src_mask,
                                 &a->tgt_mask,
                                 &a->memory_mask,
                                 &a->src_key_padding_mask,
                                 &a->tgt_key_padding_mask,
                                 &a->memory_key_padding_mask};
    for (size_t i = 0; i < sizeof mask_names / sizeof *mask_names; i++)
        if (strcmp(name, mask_names[i]) == 0)
            return add_mask(fi, name, arr, mask_slots[i], err, n);
    snprintf(err, n,
             "unknown input '%s' (inputs: query, key, value, src, tgt, memory, attn_mask, "
             "key_padding_mask, src_mask (or mask), tgt_mask, memory_mask, "
             "src_key_padding_mask, tgt_key_padding_mask, memory_key_padding_mask)",
             name);
    return false;
}

bool forward_inputs_flag(forward_inputs *fi, const char *name, bool value, char *err, size_t n)
{
    clattn_forward_args *a = &fi->args;
    if (strcmp(name, "is_causal") == 0)
        a->is_causal = value;
    else if (strcmp(name, "src_is_causal") == 0)
        a->src_is_causal = value;
    else if (strcmp(name, "tgt_is_causal") == 0)
        a->tgt_is_causal = value;
    else if (strcmp(name, "memory_is_causal") == 0)
        a->memory_is_causal = value;
    else if (strcmp(name, "need_weights") == 0)
        fi->need_weights = value;
    else if (strcmp(name, "average_attn_weights") == 0)
        a->average_attn_weights = value;
    else {
        snprintf(err, n,
                 "unknown flag '%s' (flags: is_causal, src_is_causal, tgt_is_causal, "
                 "memory_is_causal, need_weights, average_attn_weights)",
                 name);
        return false;
    }
    return true;
}

/* Reads a device tensor back, converting [B, N, E] to the model's layout. */
static float *read_back(const clattn_tensor *t, bool to_seq_first, int64_t *shape)
{
    int32_t nd = clattn_tensor_shape(t, shape);
    size_t count = clattn_tensor_numel(t);
    float *host = malloc(count * sizeof *host);
    if (!host || clattn_tensor_read(t, host) != CLATTN_OK) {
        free(host);
        return NULL;
    }
    if (to_seq_first && nd == 3) {
        float *swapped = swap01(host, shape[0], shape[1], shape[2]);
        free(host);
        int64_t s0 = shape[0];
        shape[0] = shape[1];
        shape[1] = s0;
        return swapped;
    }
    return host;
}

bool forward_inputs_run(forward_inputs *fi, clattn_module *m, float **out, int32_t *out_ndim,
                        int64_t *out_shape, float **weights, int32_t *w_ndim, int64_t *w_shape,
                        char *err, size_t n)
{
    clattn_forward_args *a = &fi->args;
    const clattn_module_config *c = &fi->cfg;
    *out = NULL;
    *weights = NULL;
    /* The output has the query's / tgt's / src's batch and length. */
    const clattn_tensor *lead = a->tgt ? a->tgt : a->src ? a->src : a->query;
    if (!lead) {
        snprintf(err, n, "no input tensor given (query, src or tgt)");
        return false;
    }
    int64_t ls[4];
    clattn_tensor_shape(lead, ls);
    int64_t width = c->d_model;
    if (c->kind == CLATTN_MODULE_SELF_ATTENTION)
        width = c->out_dim > 0 ? c->out_dim : (c->value_dim > 0 ? c->value_dim : c->attn_dim);
    int64_t so[3] = {ls[0], ls[1], width};
    clattn_tensor *y = NULL, *w = NULL;
    clattn_status st = clattn_tensor_create(fi->ctx, 3, so, &y);
    bool attn_kind = c->kind == CLATTN_MODULE_MHA || c->kind == CLATTN_MODULE_SELF_ATTENTION;
    if (st == CLATTN_OK && fi->need_weights && !attn_kind) {
        snprintf(err, n, "need_weights: only MultiheadAttention and SelfAttention return weights");
        clattn_tensor_destroy(y);
        return false;
    }
    if (st == CLATTN_OK && fi->need_weights) {
        const clattn_tensor *kt = c->kind == CLATTN_MODULE_MHA ? a->key : a->query;
        int64_t ks[4] = {0, 0, 0, 0};
        if (kt)
            clattn_tensor_shape(kt, ks);
        int64_t mt = ks[1] + (c->add_bias_kv ? 1 : 0) + (c->add_zero_attn ? 1 : 0);
        int64_t h = c->nhead > 0 ? c->nhead : 1;
        int64_t sw4[4] = {ls[0], h, ls[1], mt}, sw3[3] = {ls[0], ls[1], mt};
        st = a->average_attn_weights ? clattn_tensor_create(fi->ctx, 3, sw3, &w)
                                     : clattn_tensor_create(fi->ctx, 4, sw4, &w);
        a->attn_weights = w;
    }
    if (st == CLATTN_OK)
        st = fi->train ? clattn_module_train_forward(m, a, y) : clattn_module_forward(m, a, y);
    if (st == CLATTN_OK) {
        *out = read_back(y, !c->batch_first, out_shape);
        *out_ndim = 3;
        if (w) {
            *weights = read_back(w, false, w_shape);
            *w_ndim = clattn_tensor_shape(w, NULL);
        }
        if (!*out || (w && !*weights))
            st = CLATTN_ERR_OUT_OF_MEMORY;
    }
    if (st != CLATTN_OK) {
        snprintf(err, n, "%s: %s", clattn_status_str(st), clattn_last_error());
        free(*out);
        free(*weights);
        *out = *weights = NULL;
    }
    a->attn_weights = NULL;
    clattn_tensor_destroy(y);
    clattn_tensor_destroy(w);
    return st == CLATTN_OK;
}
