/* reduce.cl - work-group reductions shared by the row kernels (layer norm
 * and its backward in nn/, the losses in train/). A program that calls
 * them lists core/reduce.cl in its clattn__program_spec, before the file
 * that uses them.
 *
 * Both are the same pairwise tree (halving strides over the work-group),
 * so a statistic recomputed by a backward kernel with the same
 * work-group width is the forward's bit for bit (nn/layers_backward.cl
 * relies on it). wg = get_local_size(0) must be a power of two; tmp holds
 * wg elements of __local scratch. */

/* Sum over the work-group of v (component-wise); every work-item gets the
 * result. tmp is reused by the next call, hence the barrier after the
 * result is read. */
static float2 wg_sum2(float2 v, __local float2 *tmp)
{
    const uint lid = get_local_id(0);
    tmp[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s)
            tmp[lid] += tmp[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float2 r = tmp[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* Sum over the work-group of v; the result is valid in work-item 0 only
 * (no barrier after the read, so the next call may overwrite tmp[0] before
 * the other work-items have read it). */
static float wg_sum(float v, __local float *tmp)
{
    const uint lid = get_local_id(0);
    tmp[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s)
            tmp[lid] += tmp[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return tmp[0];
}
