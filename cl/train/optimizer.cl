/*
 * optimizer.cl - one fused kernel per parameter and step for each update
 * rule (read the gradient, update the state and the value in one pass),
 * and the scaling of gradient clipping. OpenCL C 1.2, no fast-math.
 *
 * The formulas follow PyTorch's single-tensor implementations
 * (torch/optim/sgd.py, adam.py) operation by operation, in float32, with
 * the scalars (bias corrections, step size, 1 - beta, ...) computed on
 * the host in double as Python does and rounded to float as ATen does.
 * Where ATen's vectorised CPU kernels use a fused multiply-add (add with
 * alpha, lerp), so does this file (fma); FP_CONTRACT is off so that
 * nothing else is fused. The results then agree with PyTorch's to about
 * an ulp per operation.
 *
 * global >= n (rounded up by the host); one work-item per element.
 */
#pragma OPENCL FP_CONTRACT OFF

/* Flags of sgd_step. */
#define SGD_MOMENTUM 1      /* momentum != 0: keep a buffer */
#define SGD_FIRST 2         /* first step: the buffer starts as the gradient */
#define SGD_NESTEROV 4

/* torch.optim.SGD:
 *   g = grad * gscale                       (gradient clipping; 1 = off)
 *   g = g + wd * w                          (grad.add(param, alpha=wd))
 *   momentum: buf = g on the first step, else
 *             buf = buf * momentum + (1 - dampening) * g
 *             g = nesterov ? g + momentum * buf : buf
 *   w = w - lr * g                          (param.add_(g, alpha=-lr)) */
__kernel void sgd_step(__global float *w, __global const float *grad, __global float *buf,
                       const ulong n, const float gscale, const float lr, const float wd,
                       const float momentum, const float one_minus_dampening, const int flags)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    const float p = w[i];
    float g = grad[i] * gscale;
    if (wd != 0.0f)
        g = fma(wd, p, g);
    if (flags & SGD_MOMENTUM) {
        const float b = (flags & SGD_FIRST) ? g : fma(one_minus_dampening, g, buf[i] * momentum);
        buf[i] = b;
        g = (flags & SGD_NESTEROV) ? fma(momentum, b, g) : b;
    }
    w[i] = fma(-lr, g, p);
}

/* torch.optim.Adam / AdamW:
 *   w = w * decay                           (AdamW: 1 - lr * wd; else 1)
 *   g = grad * gscale
 *   g = g + wd_l2 * w                       (Adam's L2 term; 0 for AdamW)
 *   m = lerp(m, g, 1 - beta1)               (exp_avg.lerp_)
 *   v = v * beta2 + (1 - beta2) * g * g     (mul_, addcmul_)
 *   w = w + (-step_size * m) / (sqrt(v) / sqrt(bc2) + eps)   (addcdiv_)
 * with step_size = lr / (1 - beta1^t), bc2 = 1 - beta2^t from the host. */
__kernel void adam_step(__global float *w, __global const float *grad, __global float *m,
                        __global float *v, const ulong n, const float gscale,
                        const float decay, const float wd_l2, const float one_minus_beta1,
                        const float beta2, const float one_minus_beta2,
                        const float bc2_sqrt, const float eps, const float neg_step_size)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    float p = w[i] * decay;
    float g = grad[i] * gscale;
    if (wd_l2 != 0.0f)
        g = fma(wd_l2, p, g);
    /* ATen's lerp: start + wt * (end - start) for small weights, else
     * end - (1 - wt) * (end - start), both as one fma. */
    const float mo = m[i], diff = g - mo;
    const float mn = one_minus_beta1 < 0.5f ? fma(one_minus_beta1, diff, mo)
                                            : fma(one_minus_beta1 - 1.0f, diff, g);
    const float vn = v[i] * beta2 + one_minus_beta2 * g * g;
    const float denom = sqrt(vn) / bc2_sqrt + eps;
    m[i] = mn;
    v[i] = vn;
    w[i] = p + neg_step_size * mn / denom;
}

/* x[i] *= s for i < n (gradient clipping). */
__kernel void scale_f32(__global float *x, const ulong n, const float s)
{
    const size_t i = get_global_id(0);
    if (i < n)
        x[i] *= s;
}
