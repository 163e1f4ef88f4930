/* classic.cl - kernels for the classic attention scores of the literature.
 *
 * additive_scores: Bahdanau's score s[b, i, j] = sum_a w[a] tanh(qp[b, i, a]
 * + kp[b, j, a]), where qp = q W_q^T and kp = k W_k^T were computed by GEMMs.
 *   qp [B, N, A], kp [B, M, A], w [A], s [B, N, M]
 *   global = (M, N, B), any local size. */
__kernel void additive_scores(__global const float *qp, __global const float *kp,
                              __global const float *w, __global float *s, const int N,
                              const int M, const int A)
{
    const int j = (int)get_global_id(0);
    const int i = (int)get_global_id(1);
    const int b = (int)get_global_id(2);
    if (j >= M || i >= N)
        return;
    __global const float *qrow = qp + ((long)b * N + i) * A;
    __global const float *krow = kp + ((long)b * M + j) * A;
    float acc = 0.0f;
    for (int a = 0; a < A; a++)
        acc += w[a] * tanh(qrow[a] + krow[a]);
    s[((long)b * N + i) * M + j] = acc;
}
