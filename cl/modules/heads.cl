/* heads.cl - moving between the [B, N, E] layout of projections and the
 * [B, H, N, Dh] layout of the attention kernels (E = H * Dh).
 *
 * split_heads: out[b, h, n, d] for n < Mt, from
 *   n < N:               in[(b * N + n) * in_stride + col0 + h * Dh + d]
 *   n == N (extra >= 1, has_bias_row): bias_row[h * Dh + d]  (add_bias_kv)
 *   any other n >= N:    0                                      (add_zero_attn)
 * with Mt = N + extra. in_stride and col0 let one fused QKV projection
 * [B, N, 3E] feed q, k and v without copies.
 *   global = (Dh, Mt, B * H), any local size. */
__kernel void split_heads(__global const float *in, __global float *out,
                          __global const float *bias_row, const int B, const int H,
                          const int N, const int Dh, const int in_stride, const int col0,
                          const int extra, const int has_bias_row)
{
    const int d = (int)get_global_id(0);
    const int n = (int)get_global_id(1);
    const int bh = (int)get_global_id(2);
    const int mt = N + extra;
    if (d >= Dh || n >= mt || bh >= B * H)
        return;
    const int b = bh / H, h = bh % H;
    float x = 0.0f;
    if (n < N)
        x = in[((long)b * N + n) * in_stride + col0 + (long)h * Dh + d];
    else if (n == N && has_bias_row)
        x = bias_row[h * Dh + d];
    out[((long)bh * mt + n) * Dh + d] = x;
}

/* merge_heads: out[b, n, h * Dh + d] = in[b, h, n, d].
 *   global = (Dh, N, B * H), any local size. */
__kernel void merge_heads(__global const float *in, __global float *out, const int B,
                          const int H, const int N, const int Dh)
{
    const int d = (int)get_global_id(0);
    const int n = (int)get_global_id(1);
    const int bh = (int)get_global_id(2);
    if (d >= Dh || n >= N || bh >= B * H)
        return;
    const int b = bh / H, h = bh % H;
    out[((long)b * N + n) * ((long)H * Dh) + (long)h * Dh + d] = in[((long)bh * N + n) * Dh + d];
}

/* mean_heads: out[b, i, j] = mean over h of w[b, h, i, j] (PyTorch's
 * average_attn_weights). global = (M, N, B). */
__kernel void mean_heads(__global const float *w, __global float *out, const int H, const int N,
                         const int M)
{
    const int j = (int)get_global_id(0);
    const int i = (int)get_global_id(1);
    const int b = (int)get_global_id(2);
    if (j >= M || i >= N)
        return;
    float s = 0.0f;
    for (int h = 0; h < H; h++)
        s += w[(((long)b * H + h) * N + i) * M + j];
    out[((long)b * N + i) * M + j] = s / (float)H;
}

/* merge_heads_into: the first N of the Mt rows of in [B, H, Mt, Dh] into
 * columns col0 .. col0 + H * Dh of out [B, N, out_stride]:
 *   out[(b * N + n) * out_stride + col0 + h * Dh + d] = in[b, h, n, d].
 * The backward's inverse of split_heads (which may have appended extra
 * rows and read a column range of a fused projection).
 *   global = (Dh, N, B * H), any local size. */
__kernel void merge_heads_into(__global const float *in, __global float *out, const int B,
                               const int H, const int N, const int Mt, const int Dh,
                               const int out_stride, const int col0)
{
    const int d = (int)get_global_id(0);
    const int n = (int)get_global_id(1);
    const int bh = (int)get_global_id(2);
    if (d >= Dh || n >= N || bh >= B * H)
        return;
    const int b = bh / H, h = bh % H;
    out[((long)b * N + n) * out_stride + col0 + (long)h * Dh + d] =
        in[((long)bh * Mt + n) * Dh + d];
}

/* head_row_grad: out[h * Dh + d] += sum over b of in[b, h, row, d], the
 * gradient of an add_bias_kv row shared by the whole batch.
 *   in: [B, H, Mt, Dh]   out: [H * Dh]   global = (Dh, H), any local size. */
__kernel void head_row_grad(__global const float *in, __global float *out, const int B,
                            const int H, const int Mt, const int row, const int Dh)
{
    const int d = (int)get_global_id(0);
    const int h = (int)get_global_id(1);
    if (d >= Dh || h >= H)
        return;
    float s = 0.0f;
    for (int b = 0; b < B; b++)
        s += in[(((long)b * H + h) * Mt + row) * Dh + d];
    out[h * Dh + d] += s;
}
