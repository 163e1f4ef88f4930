/* gemm/gemm.h - matrix products: CLBlast (gemm.c, its only user) and
 * clattn's own CPU kernel (gemm_cpu.c); callers use clattn__gemm*, which
 * picks the context's backend. */
#ifndef CLATTN_GEMM_H
#define CLATTN_GEMM_H

#include "core/core.h"

/* ---- gemm.c: the only user of CLBlast ----------------------------------- */

/* Row-major C[m, n] = alpha * op(A) op(B) + beta * C on buffers with element
 * offsets and leading dimensions (CLBlast conventions). */
clattn_status clattn__gemm(clattn_ctx *ctx, bool trans_a, bool trans_b, size_t m, size_t n,
                           size_t k, float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                           size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                           size_t ldc);

/* The same over batch_count products, operand i starting at off + i*stride
 * (a stride of 0 broadcasts that operand). */
clattn_status clattn__gemm_batched(clattn_ctx *ctx, bool trans_a, bool trans_b, size_t m,
                                   size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                                   size_t lda, size_t a_stride, cl_mem b, size_t b_off, size_t ldb,
                                   size_t b_stride, float beta, cl_mem c, size_t c_off,
                                   size_t ldc, size_t c_stride, size_t batch_count);

/* Applies clattn's tuned CLBlast parameters for this device, if it has any
 * (CPU devices). Failures are logged, never fatal. */
void clattn__gemm_tune_device(clattn_ctx *ctx);

/* ---- gemm_cpu.c: clattn's own SGEMM for CPU devices --------------------- */

/* The strided-batched product of clattn__gemm_batched (same arguments),
 * run by cl/gemm/gemm.cl. Callers go through clattn__gemm*, which picks it. */
clattn_status clattn__gemm_cpu(clattn_ctx *ctx, bool trans_a, bool trans_b, size_t m, size_t n,
                               size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                               size_t a_stride, cl_mem b, size_t b_off, size_t ldb,
                               size_t b_stride, float beta, cl_mem c, size_t c_off, size_t ldc,
                               size_t c_stride, size_t batch);

/* The same with an epilogue: C = act(alpha op(A) op(B) + beta C + bias),
 * bias a [n] buffer or NULL (clattn_linear's fused path). packed_b: op(B)
 * already in panels (a tensor's gemm_packed; b is then not read, and
 * batch must be 1), or NULL to pack b now. */
clattn_status clattn__gemm_cpu_epilogue(clattn_ctx *ctx, bool trans_a, bool trans_b, size_t m,
                                        size_t n, size_t k, float alpha, cl_mem a,
                                        size_t a_off, size_t lda, size_t a_stride, cl_mem b,
                                        size_t b_off, size_t ldb, size_t b_stride, float beta,
                                        cl_mem c, size_t c_off, size_t ldc, size_t c_stride,
                                        size_t batch, cl_mem bias, clattn_activation act,
                                        cl_mem packed_b);

/* Sets w->gemm_packed: w [out, in] packed as clattn_linear's op(B) = w^T,
 * for a weight that will not be written again. A no-op unless the
 * context's GEMM backend is the CPU kernel, or when already packed. */
clattn_status clattn__gemm_cpu_pack_weight(clattn_ctx *ctx, clattn_tensor *w);

/* gemm/gemm.cl, specialised by -DGEMM_ACT for the fused epilogue. */
extern const clattn__program_spec clattn__gemm_program;

#endif /* CLATTN_GEMM_H */
