/* elementwise.cl - simple elementwise kernels over flat float buffers. */

/* x[i] = value for i < n. global >= n (rounded up by the host). */
__kernel void fill_f32(__global float *x, const ulong n, const float value)
{
    size_t i = get_global_id(0);
    if (i < n)
        x[i] = value;
}
