/* params.c - named parameter sets: the device tensors of a module, keyed
 * by their PyTorch state_dict names ("layers.0.self_attn.in_proj_weight"),
 * with the shape each must have. Loading, setting from the host, listing,
 * gradients and checkpoints all go through this one table. */
#include "modules/modules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clattn_tensor *clattn__params_add(clattn_ctx *ctx, clattn__param_set *set, const char *name,
                                  int32_t ndim, const int64_t *shape, float init,
                                  clattn_status *st)
{
    if (*st != CLATTN_OK)
        return NULL;
    if (set->count == set->cap) {
        int32_t cap = set->cap ? set->cap * 2 : 32;
        clattn__param *grown = realloc(set->items, (size_t)cap * sizeof *grown);
        if (!grown) {
            *st = clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
            return NULL;
        }
        set->items = grown;
        set->cap = cap;
    }
    clattn__param *p = &set->items[set->count];
    memset(p, 0, sizeof *p);
    if (snprintf(p->name, sizeof p->name, "%s", name) >= (int)sizeof p->name) {
        *st = clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "parameter name too long: %s", name);
        return NULL;
    }
    p->ndim = ndim;
    memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
    *st = clattn_tensor_create(ctx, ndim, shape, &p->value);
    if (*st == CLATTN_OK)
        *st = clattn_tensor_fill(p->value, init);
    if (*st != CLATTN_OK) {
        clattn_tensor_destroy(p->value);
        return NULL;
    }
    set->count++;
    return p->value;
}

clattn__param *clattn__params_find(const clattn__param_set *set, const char *name)
{
    for (int32_t i = 0; i < set->count; i++)
        if (strcmp(set->items[i].name, name) == 0)
            return &set->items[i];
    return NULL;
}

static clattn_status ensure_grad(clattn_ctx *ctx, clattn__param *p)
{
    if (p->grad)
        return CLATTN_OK;
    clattn_status st = clattn_tensor_create(ctx, p->ndim, p->shape, &p->grad);
    if (st == CLATTN_OK)
        st = clattn_tensor_fill(p->grad, 0.0f);
    if (st != CLATTN_OK) {
        clattn_tensor_destroy(p->grad);
        p->grad = NULL;
    }
    return st;
}

clattn_tensor *clattn__params_grad(clattn_ctx *ctx, clattn__param_set *set,
                                   const clattn_tensor *value, clattn_status *st)
{
    if (*st != CLATTN_OK)
        return NULL;
    for (int32_t i = 0; i < set->count; i++) {
        if (set->items[i].value != value)
            continue;
        *st = ensure_grad(ctx, &set->items[i]);
        return *st == CLATTN_OK ? set->items[i].grad : NULL;
    }
    *st = clattn__fail(ctx, CLATTN_ERR_INTERNAL, "gradient asked for a tensor that is no parameter");
    return NULL;
}

clattn_status clattn__params_alloc_grads(clattn_ctx *ctx, clattn__param_set *set)
{
    clattn_status st = CLATTN_OK;
    for (int32_t i = 0; i < set->count && st == CLATTN_OK; i++)
        st = ensure_grad(ctx, &set->items[i]);
    return st;
}

clattn_status clattn__params_zero_grads(clattn__param_set *set)
{
    clattn_status st = CLATTN_OK;
    for (int32_t i = 0; i < set->count && st == CLATTN_OK; i++)
        if (set->items[i].grad)
            st = clattn_tensor_fill(set->items[i].grad, 0.0f);
    return st;
}

int32_t clattn__params_refs(clattn_ctx *ctx, clattn__param_set *set, clattn_param_ref *refs,
                            int32_t cap)
{
    if (cap > 0 && clattn__params_alloc_grads(ctx, set) != CLATTN_OK)
        return -1;
    for (int32_t i = 0; i < set->count && i < cap; i++) {
        refs[i].name = set->items[i].name;
        refs[i].value = set->items[i].value;
        refs[i].grad = set->items[i].grad;
    }
    return set->count;
}

void clattn__params_free(clattn__param_set *set)
{
    for (int32_t i = 0; i < set->count; i++) {
        clattn_tensor_destroy(set->items[i].value);
        clattn_tensor_destroy(set->items[i].grad);
    }
    free(set->items);
    memset(set, 0, sizeof *set);
}
