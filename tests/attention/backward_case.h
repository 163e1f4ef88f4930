/* backward_case.h - one clattn_sdpa_backward case against the
 * double-precision reference gradients of tests/support/attention_ref.c,
 * shared by the attention backward tests (test_attention_backward,
 * test_attention_backward_pytorch, test_attention_backward_memory).
 *
 * Tolerances: inputs and dout are uniform in [-1, 1]; out and lse come
 * from the reference rounded to float (or from clattn_sdpa, in the cases
 * marked so). The gradients are sums of up to N or M terms whose float32
 * rounding is relative to the size of the terms, not of the result (dS =
 * P (dP - Delta) cancels), so the absolute part of the tolerance scales
 * with the largest reference magnitude of the tensor: an element passes
 * when |got - ref| <= ATOL * max(1, max|ref|) + RTOL * |ref| with ATOL =
 * 2e-5 and RTOL = 1e-4. Observed on POCL, both families: at most 1.4e-6
 * of the scale (D = 256, where a score sums 256 products). The reference
 * itself matches central differences to < 1e-5 (4e-6 worst, cosine;
 * test_attention_backward checks it). */
#ifndef CLATTN_TEST_BACKWARD_CASE_H
#define CLATTN_TEST_BACKWARD_CASE_H

#include "attention_ref.h"
#include "testutil.h"

#define ATOL 2e-5
#define RTOL 1e-4

typedef enum mask_kind {
    MASK_NONE,
    MASK_CAUSAL,
    MASK_WINDOW_LEFT,    /* (3, 0): sliding window, causal */
    MASK_WINDOW_RIGHT,   /* (0, 3) */
    MASK_WINDOW_BOTH,    /* (5, 2) */
    MASK_KV_LEN,         /* random lengths, batch 1 has none */
    MASK_CAUSAL_KV_LEN,
    MASK_BIAS,           /* a bias of the case's shape */
    MASK_BIAS_BOOL,      /* the same with -inf entries, one fully masked row */
    MASK_WINDOW_BIAS,    /* (4, 2) + bias */
    MASK_MOD,            /* mask_mod snippet */
    MASK_KINDS
} mask_kind;

/* Bias shapes, broadcast to [B, Hq, N, M]. */
typedef enum bias_shape {
    BIAS_NM,      /* [N, M] */
    BIAS_HNM,     /* [Hq, N, M] */
    BIAS_1HNM,    /* [1, Hq, N, M] */
    BIAS_B1NM,    /* [B, 1, N, M] */
    BIAS_BHNM,    /* [B, Hq, N, M] */
    BIAS_1H1M,    /* [1, Hq, 1, M] */
    BIAS_SHAPES
} bias_shape;

/* Which gradients a case asks for. */
enum { G_DQ = 1, G_DK = 2, G_DV = 4, G_DBIAS = 8, G_ALL = 15 };

typedef struct tcase {
    int B, Hq, Hkv, N, M, D, Dv;
    mask_kind mask;
    bias_shape bshape;
    bool cosine;
    bool device_forward; /* out and lse from clattn_sdpa, not the reference */
    int grads;           /* G_* bits */
    float scale;         /* 0: default */
} tcase;

extern const char *const mask_names[MASK_KINDS];
extern const char *const bias_names[BIAS_SHAPES];
/* Cases run_case has run (printed at the end). */
extern int n_cases_run;

/* CLOCK_MONOTONIC in seconds. */
double now_s(void);
bool has_bias(mask_kind m);
/* The bias of a case: shape, strides into it for the reference; returns
 * its element count. */
size_t bias_layout(const tcase *c, int64_t *shape, int *nd, int64_t *sb, int64_t *sh,
                   int64_t *sn);
/* Compares with the magnitude-scaled tolerance described at the top:
 * ATOL * max(1, max|ref|) + RTOL * |ref|. */
void check_grad(const char *what, const char *name, const float *got, const double *ref,
                size_t n);
/* A NaN-filled gradient tensor (every element must be written), or NULL
 * when not wanted. */
clattn_tensor *grad_tensor(clattn_ctx *ctx, bool want, int nd, const int64_t *shape);
/* Runs case c on ctx (variant names the kernel family in messages):
 * forward (reference or device), backward, every asked gradient checked. */
void run_case(clattn_ctx *ctx, const tcase *c, const char *variant);

#endif
