/* common.cl - included at the top of every clattn program.
 *
 * Host-set macros (runtime/context.c): CLATTN_DEVICE_CPU, CLATTN_LOCAL_MEM,
 * CLATTN_MAX_WG. Defaults here let a file build without them. */
#ifndef CLATTN_DEVICE_CPU
#define CLATTN_DEVICE_CPU 0
#endif

/* e^x as a polynomial on the reduced argument x - n ln 2 (Cody-Waite
 * split of ln 2, degree-7 fit), scaled by 2^n built in the exponent bits.
 * POCL's exp(), erf(), erfc() and tanh() run at 30-120 M elements/s on the
 * CI's CPU because they do not vectorise; this does (~1 ulp on [-87, 88]).
 * Inputs are clamped to [-87, 88]: e^-87 ~ 1.6e-38 stands in for 0 and
 * e^88 ~ 1.7e38 for overflow, which every caller below divides by or
 * multiplies with something that makes the limit exact enough. NaN inputs
 * are the caller's to propagate (clamp would map them into range). */
static inline float clattn_expf(float x)
{
    x = clamp(x, -87.0f, 88.0f);
    /* Round x / ln 2 to the nearest integer with the 1.5 * 2^23 trick: no
     * floor() or convert_int(), which some CPU compilers scalarise. */
    const float t = x * 1.44269504088896341f + 12582912.0f;
    const float n = t - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    return y * as_float((as_int(t) - 0x4B400000 + 127) << 23);
}

/* erfc(z) for z >= 0 with fractional error below 1.2e-7 everywhere, tails
 * included (the Chebyshev fit of Numerical Recipes in C, 2nd ed., 6.2,
 * "erfcc"); relative accuracy in the tail is what GELU needs for x << 0. */
static inline float clattn_erfc_nonneg(float z)
{
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    return t * clattn_expf(p - z * z);
}

/* Activation codes: the host passes clattn_activation values. */
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_GELU 2          /* 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default */
#define ACT_GELU_TANH 3     /* PyTorch approximate='tanh' */
#define ACT_SILU 4          /* x * sigmoid(x) */

static float clattn_act(float x, int act)
{
    switch (act) {
    case ACT_RELU:
        return x < 0.0f ? 0.0f : x;     /* NaN propagates, as torch.relu */
    case ACT_GELU: {
        /* 1 + erf(t) = erfc(-t): the same function, but without the
         * cancellation of 1 + erf for x << 0, where erf is about -1; erfc
         * of a negative argument is 2 - erfc of its magnitude. */
        const float z = x * -M_SQRT1_2_F;
        const float e = clattn_erfc_nonneg(fabs(z));
        return 0.5f * x * (z >= 0.0f ? e : 2.0f - e);
    }
    case ACT_GELU_TANH: {
        /* 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), again avoiding 1 + tanh
         * cancelling for x << 0, where exp(-2u) ~ 1.7e38 makes y ~ 0. */
        const float k2 = 1.5957691216057308f; /* 2 sqrt(2 / pi) */
        return x / (1.0f + clattn_expf(-k2 * (x + 0.044715f * x * x * x)));
    }
    case ACT_SILU:
        /* For x < -88, exp(-x) ~ 1.7e38 makes x / (1 + exp(-x)) ~ 0. */
        return x / (1.0f + clattn_expf(-x));
    default:
        return x;
    }
}
