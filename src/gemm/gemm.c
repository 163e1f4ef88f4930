/* gemm.c - the only file that talks to CLBlast: SGEMM (plain, transposed,
 * strided-batched) and per-device CLBlast tuning. Products on a context
 * whose GEMM backend is clattn's CPU kernel go to gemm_cpu.c instead. */
#include "gemm/gemm.h"

#include <clblast_c.h>
#include <string.h>

static const char *clblast_status_name(CLBlastStatusCode s)
{
    switch (s) {
    case CLBlastNotImplemented: return "CLBlastNotImplemented";
    case CLBlastInvalidMatrixA: return "CLBlastInvalidMatrixA";
    case CLBlastInvalidMatrixB: return "CLBlastInvalidMatrixB";
    case CLBlastInvalidMatrixC: return "CLBlastInvalidMatrixC";
    case CLBlastInsufficientMemoryA: return "CLBlastInsufficientMemoryA";
    case CLBlastInsufficientMemoryB: return "CLBlastInsufficientMemoryB";
    case CLBlastInsufficientMemoryC: return "CLBlastInsufficientMemoryC";
    case CLBlastInvalidBatchCount: return "CLBlastInvalidBatchCount";
    case CLBlastInvalidLocalMemUsage: return "CLBlastInvalidLocalMemUsage";
    case CLBlastNoHalfPrecision: return "CLBlastNoHalfPrecision";
    case CLBlastInvalidOverrideKernel: return "CLBlastInvalidOverrideKernel";
    case CLBlastMissingOverrideParameter: return "CLBlastMissingOverrideParameter";
    case CLBlastDatabaseError: return "CLBlastDatabaseError";
    case CLBlastUnknownError: return "CLBlastUnknownError";
    default: return (int)s > -1000 ? clattn__cl_error_name((cl_int)s) : "CLBlast error";
    }
}

static clattn_status check(clattn_ctx *ctx, CLBlastStatusCode s, const char *what, size_t m,
                           size_t n, size_t k)
{
    if (s == CLBlastSuccess)
        return CLATTN_OK;
    clattn_status st = (s == CLBlastInsufficientMemoryA || s == CLBlastInsufficientMemoryB ||
                        s == CLBlastInsufficientMemoryC)
                           ? CLATTN_ERR_INVALID_ARG
                           : ((int)s > -1000 ? clattn__status_from_cl((cl_int)s)
                                             : CLATTN_ERR_OPENCL);
    return clattn__fail(ctx, st, "%s (m=%zu n=%zu k=%zu) failed: %s (%d)", what, m, n, k,
                        clblast_status_name(s), (int)s);
}

clattn_status clattn__gemm(clattn_ctx *ctx, bool trans_a, bool trans_b, size_t m, size_t n,
                           size_t k, float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                           size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                           size_t ldc)
{
    if (m == 0 || n == 0)
        return CLATTN_OK;
    if (ctx->gemm_backend == CLATTN_GEMM_CPU)
        return clattn__gemm_cpu(ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, 0, b,
                                b_off, ldb, 0, beta, c, c_off, ldc, 0, 1);
    CLBlastStatusCode s = CLBlastSgemm(
        CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
        trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a, a_off, lda, b,
        b_off, ldb, beta, c, c_off, ldc, &ctx->queue, NULL);
    return check(ctx, s, "CLBlastSgemm", m, n, k);
}

clattn_status clattn__gemm_batched(clattn_ctx *ctx, bool trans_a, bool trans_b, size_t m,
                                   size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                                   size_t lda, size_t a_stride, cl_mem b, size_t b_off, size_t ldb,
                                   size_t b_stride, float beta, cl_mem c, size_t c_off,
                                   size_t ldc, size_t c_stride, size_t batch_count)
{
    if (m == 0 || n == 0 || batch_count == 0)
        return CLATTN_OK;
    if (ctx->gemm_backend == CLATTN_GEMM_CPU)
        return clattn__gemm_cpu(ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, a_stride,
                                b, b_off, ldb, b_stride, beta, c, c_off, ldc, c_stride,
                                batch_count);
    if (batch_count == 1)
        return clattn__gemm(ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb,
                            beta, c, c_off, ldc);
    CLBlastStatusCode s = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
        trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a, a_off, lda,
        a_stride, b, b_off, ldb, b_stride, beta, c, c_off, ldc, c_stride, batch_count,
        &ctx->queue, NULL);
    return check(ctx, s, "CLBlastSgemmStridedBatched", m, n, k);
}

/* ---- tuning ------------------------------------------------------------- */

/* CLBlast's database has no entry for POCL's CPU device; its generic
 * defaults ran at 8-21 GFLOP/s there. These parameters (4x4 work-items,
 * each a 16x16 tile of float8 vectors, no local memory: caches do that job
 * on a CPU) were searched on a 2-core AMD EPYC under POCL 3.1 and verified
 * on odd shapes for every transpose and the strided-batched routine (README,
 * "GEMM"). Faster sets with GEMMK=1 were rejected: CLBlast 1.5.3 returns
 * wrong results with them in the batched routine when padding is needed. */
static const char *const xgemm_names[] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC",
                                          "MWG",   "NDIMB", "NDIMC", "NWG", "SA",   "SB",
                                          "STRM",  "STRN",  "VWM",   "VWN"};
static const size_t xgemm_cpu[] = {0, 1, 16, 2, 4, 4, 64, 4, 4, 64, 0, 0, 0, 0, 8, 8};

/* Above this size CLBlast uses the tuned indirect kernel; its generic 704
 * left every product below 704^3 on the untuned direct kernel, 3-7x slower
 * from 128^3 up. */
static const char *const routine_names[] = {"XGEMM_MIN_INDIRECT_SIZE"};
static const size_t routine_cpu[] = {64};

void clattn__gemm_tune_device(clattn_ctx *ctx)
{
    /* The parameters were measured on POCL's CPU device; on Mesa's
     * llvmpipe (also a CPU device) they ran 3x slower than CLBlast's own
     * (0.1 vs 0.3 GFLOP/s at n = 256), and GPUs have CLBlast's tuning
     * database. So: POCL's CPU devices only, where they were measured. */
    if (ctx->info.type != CLATTN_DEVICE_CPU ||
        !strstr(ctx->info.platform_name, "Portable Computing Language"))
        return;
    CLBlastStatusCode s = CLBlastOverrideParameters(
        ctx->device, "Xgemm", CLBlastPrecisionSingle,
        sizeof xgemm_names / sizeof *xgemm_names, (const char **)xgemm_names, xgemm_cpu);
    if (s == CLBlastSuccess)
        s = CLBlastOverrideParameters(ctx->device, "GemmRoutine", CLBlastPrecisionSingle,
                                      sizeof routine_names / sizeof *routine_names,
                                      (const char **)routine_names, routine_cpu);
    if (s != CLBlastSuccess)
        clattn__log(ctx, CLATTN_LOG_WARN, "CLBlast tuning not applied: %s (%d)",
                    clblast_status_name(s), (int)s);
}
