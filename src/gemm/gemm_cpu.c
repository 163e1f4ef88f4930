/* gemm_cpu.c - SGEMM on CPU devices with clattn's own register-blocked
 * kernel (cl/gemm/gemm.cl); gemm.c sends products here when the context's GEMM
 * backend is CLATTN_GEMM_CPU. */
#include "gemm/gemm.h"

const clattn__program_spec clattn__gemm_program = {{"gemm/gemm.cl", NULL}, NULL};

/* Must match GEMM_ROWS / GEMM_LOCAL in cl/gemm/gemm.cl (the defaults it is
 * built with): the host sizes the launch from them. */
enum { GEMM_ROWS = 6, GEMM_LOCAL = 8, GEMM_PANEL = 16 };

/* The k block of long products (see clattn__gemm_cpu_epilogue). */
#ifndef GEMM_K_BLOCK
#define GEMM_K_BLOCK 512
#endif

/* The kernels of cl/gemm/gemm.cl launched here. */
static const clattn__kernel_spec PACK_A = {&clattn__gemm_program, "gemm_pack_a"};
static const clattn__kernel_spec PACK_B = {&clattn__gemm_program, "gemm_pack_b"};
static const clattn__kernel_spec GEMM_AN = {&clattn__gemm_program, "gemm_cpu_an"};
static const clattn__kernel_spec GEMM_AT = {&clattn__gemm_program, "gemm_cpu_at"};
static const clattn__kernel_spec GEMM_AP = {&clattn__gemm_program, "gemm_cpu_ap"};

/* clattn__kernel_variant's options for epilogue activation *(const int *)arg. */
static char *act_options(const void *arg)
{
    return clattn__aprintf("-DGEMM_ACT=%d", *(const int *)arg);
}

/* spec's kernel built with epilogue activation act: one program per
 * activation, since it must be a compile-time constant to vectorise. NONE
 * is the program without options; any other act is variant act + 1 (never
 * 0, the unspecialised kernel). */
static clattn_status kernel(clattn_ctx *ctx, const clattn__kernel_spec *spec, int act,
                            cl_kernel *out)
{
    if (act == CLATTN_ACT_NONE)
        return clattn__kernel(ctx, spec, out);
    return clattn__kernel_variant(ctx, spec, (uint64_t)act + 1, act_options, &act, out);
}

/* One operand of what the product reads, the packing kernels' common
 * arguments: (src, off, ld, trans, batch stride, dim0, dim1, dst). */
typedef struct pack_src {
    cl_mem mem;
    size_t off, ld, stride;
    bool trans;
} pack_src;

/* Runs packing kernel spec of gemm.cl from src into packed over global,
 * with local (NULL: the implementation's choice). */
static clattn_status run_pack(clattn_ctx *ctx, const clattn__kernel_spec *spec,
                              const pack_src *src, size_t dim0, size_t dim1,
                              const size_t *global, const size_t *local, cl_mem packed)
{
    const char *kname = spec->name;
    cl_kernel kp;
    cl_long off = (cl_long)src->off, bs = (cl_long)src->stride;
    cl_int ld = (cl_int)src->ld, tr = src->trans, d0 = (cl_int)dim0, d1 = (cl_int)dim1;
    clattn_status st = clattn__kernel(ctx, spec, &kp);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, kp, kname, CLATTN_KARG(src->mem), CLATTN_KARG(off),
                             CLATTN_KARG(ld), CLATTN_KARG(tr), CLATTN_KARG(bs), CLATTN_KARG(d0),
                             CLATTN_KARG(d1), CLATTN_KARG(packed));
    if (st != CLATTN_OK)
        return st;
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, kp, 3, NULL, global, local, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, kname);
}

/* Bytes of op(B) [k, n] x batch packed into 16-column panels. */
static size_t packed_b_bytes(size_t n, size_t k, size_t batch)
{
    return batch * ((n + GEMM_PANEL - 1) / GEMM_PANEL) * k * GEMM_PANEL * sizeof(float);
}

/* Packs op(B) [k, n] of every batch into 16-column panels in packed:
 * [batch][ceil(n/16)][k][16]. One work-item per 16 x 16 tile; local size
 * 1 (see the kernel). */
static clattn_status pack_b(clattn_ctx *ctx, const pack_src *b, size_t n, size_t k,
                            size_t batch, cl_mem packed)
{
    size_t panels = (n + GEMM_PANEL - 1) / GEMM_PANEL;
    size_t global[3] = {(k + GEMM_PANEL - 1) / GEMM_PANEL, panels, batch}, local[3] = {1, 1, 1};
    return run_pack(ctx, &PACK_B, b, k, n, global, local, packed);
}

/* Packs op(A) [m, k] of every batch into row blocks in the
 * CLATTN_SCRATCH_GEMM_A slot: [batch][ceil(m/6)][k][6]. */
static clattn_status pack_a(clattn_ctx *ctx, const pack_src *a, size_t m, size_t k,
                            size_t batch, cl_mem *packed)
{
    size_t blocks = (m + GEMM_ROWS - 1) / GEMM_ROWS;
    size_t global[3] = {k, blocks, batch};
    clattn_status st =
        clattn__scratch(ctx, CLATTN_SCRATCH_GEMM_A, batch * blocks * k * GEMM_ROWS * sizeof(float),
                        "gemm_pack_a", packed);
    return st != CLATTN_OK ? st : run_pack(ctx, &PACK_A, a, m, k, global, NULL, *packed);
}

clattn_status clattn__gemm_cpu_pack_weight(clattn_ctx *ctx, clattn_tensor *w)
{
    if (!w || ctx->gemm_backend != CLATTN_GEMM_CPU || w->gemm_packed || w->ndim != 2)
        return CLATTN_OK;
    size_t n = (size_t)w->shape[0], k = (size_t)w->shape[1];
    if (n == 0 || k == 0 || n > INT32_MAX || k > INT32_MAX)
        return CLATTN_OK;
    cl_mem packed;
    clattn_status st = clattn__buffer_create(ctx, packed_b_bytes(n, k, 1),
                                             "a weight packed for the CPU GEMM", &packed);
    if (st != CLATTN_OK)
        return st;
    /* clattn_linear's op(B) = w^T: w [n, k] read transposed, ld = k */
    pack_src src = {w->mem, 0, k, 0, true};
    st = pack_b(ctx, &src, n, k, 1, packed);
    if (st != CLATTN_OK) {
        clReleaseMemObject(packed);
        return st;
    }
    w->gemm_packed = packed;
    return CLATTN_OK;
}

clattn_status clattn__gemm_cpu(clattn_ctx *ctx, bool trans_a, bool trans_b, size_t m, size_t n,
                               size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                               size_t a_stride, cl_mem b, size_t b_off, size_t ldb,
                               size_t b_stride, float beta, cl_mem c, size_t c_off, size_t ldc,
                               size_t c_stride, size_t batch)
{
    return clattn__gemm_cpu_epilogue(ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda,
                                     a_stride, b, b_off, ldb, b_stride, beta, c, c_off, ldc,
                                     c_stride, batch, NULL, CLATTN_ACT_NONE, NULL);
}

clattn_status clattn__gemm_cpu_epilogue(clattn_ctx *ctx, bool trans_a, bool trans_b, size_t m,
                                        size_t n, size_t k, float alpha, cl_mem a,
                                        size_t a_off, size_t lda, size_t a_stride, cl_mem b,
                                        size_t b_off, size_t ldb, size_t b_stride, float beta,
                                        cl_mem c, size_t c_off, size_t ldc, size_t c_stride,
                                        size_t batch, cl_mem bias, clattn_activation act,
                                        cl_mem packed_b)
{
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX ||
        ldb > INT32_MAX || ldc > INT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "GEMM dimensions m=%zu n=%zu k=%zu exceed 2^31", m, n, k);
    /* A work-item loops once per k (and a few dozen times besides): under a
     * driver loop limit (llvmpipe) a longer k comes back unwritten without
     * an error (k = 65000 ran there, 70000 did not). */
    if (ctx->loop_budget > 0 && (int64_t)k > ctx->loop_budget - 512)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "GEMM k=%zu is past what the CPU GEMM kernel can run on %s (it "
                            "stops every kernel invocation after %lld loop iterations); "
                            "use gemm_kernel = \"clblast\"",
                            k, ctx->info.device_name, (long long)ctx->loop_budget);
    /* A long k is run as consecutive k blocks, each adding to C (the
     * first with the caller's beta): a work-item streams its 6 x k A block
     * and 16 x k B panel once per tile, and past a few hundred k those no
     * longer stay in L2 between the tiles that share them. The weight
     * gradients dW = dY^T X with k = B * T token rows hit this (R 4096,
     * 256 x 1024: 124 GFLOP/s against the forward's 211). Only plain
     * products: the epilogue (bias, activation) must see the whole sum. */
    if (k > GEMM_K_BLOCK * 3 / 2 && !packed_b && !bias && act == CLATTN_ACT_NONE) {
        for (size_t kb = 0; kb < k; kb += GEMM_K_BLOCK) {
            size_t kc = k - kb < GEMM_K_BLOCK * 3 / 2 ? k - kb : GEMM_K_BLOCK;
            /* op(A) [m, k] column kb, op(B) [k, n] row kb in the stored layouts */
            size_t a_at = a_off + (trans_a ? kb * lda : kb);
            size_t b_at = b_off + (trans_b ? kb : kb * ldb);
            clattn_status st = clattn__gemm_cpu_epilogue(
                ctx, trans_a, trans_b, m, n, kc, alpha, a, a_at, lda, a_stride, b, b_at, ldb,
                b_stride, kb == 0 ? beta : 1.0f, c, c_off, ldc, c_stride, batch, NULL,
                CLATTN_ACT_NONE, NULL);
            if (st != CLATTN_OK)
                return st;
            if (kc != GEMM_K_BLOCK)
                break; /* the last block took the remainder */
        }
        return CLATTN_OK;
    }
    /* op(B) is always packed into 16-column panels (the kernel could
     * read a row-major B in place, but with n = 2048 its 8 KiB row stride
     * hit the same L1 sets on every step: 30 against 89 GFLOP/s packed),
     * and packing costs k*n against the product's m*n*k. */
    cl_mem bsrc = b;
    cl_int b_ks = (cl_int)ldb;
    cl_long b_ps = GEMM_PANEL, b_bs = (cl_long)b_stride;
    cl_long boff = (cl_long)b_off;
    if (k > 0) {
        /* a broadcast B (stride 0) is packed once and stays broadcast */
        size_t pack_batch = b_stride == 0 ? 1 : batch;
        clattn_status st = CLATTN_OK;
        if (packed_b && batch == 1) {
            bsrc = packed_b;
        } else {
            pack_src src = {b, b_off, ldb, b_stride, trans_b};
            st = clattn__scratch(ctx, CLATTN_SCRATCH_GEMM_B, packed_b_bytes(n, k, pack_batch),
                                 "gemm_pack_b", &bsrc);
            if (st == CLATTN_OK)
                st = pack_b(ctx, &src, n, k, pack_batch, bsrc);
        }
        if (st != CLATTN_OK)
            return st;
        size_t panels = (n + GEMM_PANEL - 1) / GEMM_PANEL;
        b_ks = GEMM_PANEL;
        b_ps = (cl_long)(k * GEMM_PANEL);
        b_bs = b_stride == 0 ? 0 : (cl_long)(panels * k * GEMM_PANEL);
        boff = 0;
    }
    const clattn__kernel_spec *spec = trans_a ? &GEMM_AT : &GEMM_AN;
    cl_mem asrc = a;
    size_t a_bs_sz = a_stride;
    /* A transposed A is read a column of 6 rows per step, each step a new
     * cache line; with long k those lines fall out of L2 before the next
     * panel's work-items reuse them (m = 128, n = 512, k = 4096: 58
     * GFLOP/s). Packing it into row blocks wins once n gives the packed
     * copy enough reuse (97 GFLOP/s there; at n = 128 it lost). */
    if (trans_a && n >= 256 && k >= 512) {
        size_t pack_batch = a_stride == 0 ? 1 : batch;
        pack_src src = {a, a_off, lda, a_stride, trans_a};
        clattn_status st = pack_a(ctx, &src, m, k, pack_batch, &asrc);
        if (st != CLATTN_OK)
            return st;
        spec = &GEMM_AP;
        a_off = 0;
        a_bs_sz = a_stride == 0 ? 0 : (m + GEMM_ROWS - 1) / GEMM_ROWS * GEMM_ROWS * k;
    }
    const char *name = spec->name;
    cl_kernel kg;
    cl_int mm = (cl_int)m, nn = (cl_int)n, kk = (cl_int)k, ldc_i = (cl_int)ldc;
    cl_int lda_i = (cl_int)lda;
    cl_long aoff = (cl_long)a_off, a_bs = (cl_long)a_bs_sz;
    cl_long coff = (cl_long)c_off, c_bs = (cl_long)c_stride;
    cl_mem bias_arg = bias ? bias : c; /* any valid buffer when unused */
    cl_int has_bias = bias != NULL;
    clattn_status st = kernel(ctx, spec, (int)act, &kg);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, kg, name, CLATTN_KARG(mm), CLATTN_KARG(nn), CLATTN_KARG(kk),
                             CLATTN_KARG(alpha), CLATTN_KARG(asrc), CLATTN_KARG(aoff),
                             CLATTN_KARG(lda_i), CLATTN_KARG(a_bs), CLATTN_KARG(bsrc),
                             CLATTN_KARG(boff), CLATTN_KARG(b_ks), CLATTN_KARG(b_ps),
                             CLATTN_KARG(b_bs), CLATTN_KARG(beta), CLATTN_KARG(c),
                             CLATTN_KARG(coff), CLATTN_KARG(ldc_i), CLATTN_KARG(c_bs),
                             CLATTN_KARG(bias_arg), CLATTN_KARG(has_bias));
    if (st != CLATTN_OK)
        return st;
    size_t row_blocks = (m + GEMM_ROWS - 1) / GEMM_ROWS;
    size_t global[3] = {(row_blocks + GEMM_LOCAL - 1) / GEMM_LOCAL * GEMM_LOCAL,
                        (n + GEMM_PANEL - 1) / GEMM_PANEL, batch};
    size_t local[3] = {GEMM_LOCAL, 1, 1};
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, kg, 3, NULL, global, local, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, name);
}
