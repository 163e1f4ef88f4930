/* test_tied_embedding.c - the gradient of a table tied between the input
 * embedding and the output head (include/clattn.h, "Tied input and output
 * embeddings"): with emb = embedding(E, ids) and logits = emb E^T, and
 * L = sum(G * logits) for a given G = dL/dlogits,
 *   dL/dE[v] = sum_r G[r, v] emb[r]               (the head: dlogits^T h)
 *            + sum_{r: ids[r] = v} (G E)[r]        (the gather of dh = G E)
 * written into one dE by clattn_linear_backward and
 * clattn_embedding_backward with accumulate, in both orders, against the
 * double sum of both parts and against central finite differences of the
 * double L (a quadratic in E).
 *
 * Bound per element (u = 2^-24): the head's GEMM 2 (count + 3) u A_head
 * (A_head = sum_r |G[r, v] emb[r, e]|, the bound of layer_check.h for
 * dw), dh's GEMM 2 (V + 3) u and the gather's (uses + 1) u on A_emb =
 * sum_{r: ids[r] = v} sum_w |G[r, w] E[w, e]|, and one rounding of the
 * final add, u |ref|. */
#include "layer_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct tied {
    size_t v, e, count;
    const int64_t *ids;
    const double *g; /* [count, v] */
} tied;

/* L(E) = sum_{r, w} G[r, w] (E[ids[r]] . E[w]) in double. */
static double tied_loss(void *user, const double *table)
{
    const tied *t = user;
    double l = 0;
    for (size_t r = 0; r < t->count; r++)
        for (size_t w = 0; w < t->v; w++) {
            double dot = 0;
            for (size_t k = 0; k < t->e; k++)
                dot += table[(size_t)t->ids[r] * t->e + k] * table[w * t->e + k];
            l += t->g[r * t->v + w] * dot;
        }
    return l;
}

typedef struct tied_fd {
    tied t;
    double *table;
} tied_fd;

static double tied_fd_loss(void *user)
{
    tied_fd *p = user;
    return tied_loss(&p->t, p->table);
}

static void tied_case(clattn_ctx *ctx, size_t v, size_t e, size_t count, bool fd)
{
    size_t nt = v * e;
    int64_t *ids = malloc(count * sizeof *ids);
    for (size_t i = 0; i < count; i++) /* repeats and unused rows */
        ids[i] = (int64_t)((i * i * 5 + 1) % (v / 2 + 1)) % (int64_t)v;
    ids[0] = (int64_t)v - 1;
    float *table = test_fvec(nt), *g = test_fvec(count * v), *emb = test_fvec(count * e);
    test_fill_uniform(table, nt, -1, 1);
    test_fill_uniform(g, count * v, -1, 1);
    int64_t st[2] = {(int64_t)v, (int64_t)e}, se[2] = {(int64_t)count, (int64_t)e};
    int64_t sl[2] = {(int64_t)count, (int64_t)v};
    clattn_tensor *T = test_tensor(ctx, 2, st, table), *EMB = test_tensor(ctx, 2, se, NULL);
    clattn_tensor *LOG = test_tensor(ctx, 2, sl, NULL), *G = test_tensor(ctx, 2, sl, g);
    clattn_tensor *DEMB = test_tensor(ctx, 2, se, NULL), *DT = test_tensor(ctx, 2, st, NULL);
    clattn_tensor *DT2 = test_tensor(ctx, 2, st, NULL);
    CHECK_OK(clattn_tensor_fill(DT, NAN));
    CHECK_OK(clattn_tensor_fill(DT2, NAN));

    /* Forward through the tied table, then both orders of the backward. */
    CHECK_OK(clattn_embedding(ctx, T, ids, count, EMB));
    CHECK_OK(clattn_linear(ctx, EMB, T, NULL, CLATTN_ACT_NONE, LOG));
    CHECK_OK(clattn_linear_backward(ctx, EMB, T, G, DEMB, DT, NULL, false));
    CHECK_OK(clattn_embedding_backward(ctx, ids, count, DEMB, DT, true));
    CHECK_OK(clattn_embedding_backward(ctx, ids, count, DEMB, DT2, false));
    CHECK_OK(clattn_linear_backward(ctx, EMB, T, G, NULL, DT2, NULL, true));
    float *got = test_fvec(nt), *got2 = test_fvec(nt);
    read_into(DT, got);
    read_into(DT2, got2);
    read_into(EMB, emb);

    /* The double reference: the head's part plus the gather's. */
    double *ref = test_dvec(nt), *bd = test_dvec(nt), *a_head = test_dvec(nt);
    double *a_emb = test_dvec(nt);
    size_t *uses = calloc(v, sizeof *uses);
    for (size_t r = 0; r < count; r++)
        uses[ids[r]]++;
    for (size_t w = 0; w < v; w++)
        for (size_t k = 0; k < e; k++) {
            double s = 0, a = 0;
            for (size_t r = 0; r < count; r++) {
                double term = (double)g[r * v + w] * table[(size_t)ids[r] * e + k];
                s += term;
                a += fabs(term);
            }
            ref[w * e + k] = s;
            a_head[w * e + k] = a;
        }
    for (size_t r = 0; r < count; r++)
        for (size_t k = 0; k < e; k++) {
            double s = 0, a = 0;
            for (size_t w = 0; w < v; w++) {
                double term = (double)g[r * v + w] * table[w * e + k];
                s += term;
                a += fabs(term);
            }
            ref[(size_t)ids[r] * e + k] += s;
            a_emb[(size_t)ids[r] * e + k] += a;
        }
    for (size_t j = 0; j < nt; j++)
        bd[j] = 2.0 * (double)(count + 3) * U * a_head[j] +
                (2.0 * (double)(v + 3) + (double)uses[j / e] + 1) * U * a_emb[j] +
                U * fabs(ref[j]) + 1e-38;
    char what[160];
    snprintf(what, sizeof what, "tied dE [%zu, %zu] count=%zu: head then gather", v, e, count);
    close_bound(W_LIN, what, got, ref, bd, nt);
    snprintf(what, sizeof what, "tied dE [%zu, %zu] count=%zu: gather then head", v, e, count);
    close_bound(W_LIN, what, got2, ref, bd, nt);
    /* The gather itself is exact: emb is table rows. */
    bool exact = true;
    for (size_t r = 0; r < count; r++)
        exact = exact && !memcmp(emb + r * e, table + (size_t)ids[r] * e, e * sizeof *emb);
    CHECK(exact, "tied: embedding rows are not the table's");

    if (fd) {
        double *gd = test_dvec(count * v), *td = test_dvec(nt), *fdg = test_dvec(nt);
        to_double(g, gd, count * v);
        to_double(table, td, nt);
        tied_fd p = {{v, e, count, ids, gd}, td};
        fd_grad(tied_fd_loss, &p, td, nt, FD_H, fdg);
        snprintf(what, sizeof what, "tied dE [%zu, %zu] count=%zu vs finite differences", v, e,
                 count);
        check_fd(what, got, fdg, bd, nt, (double)count);
        free(gd), free(td), free(fdg);
    }
    clattn_tensor *all[] = {T, EMB, LOG, G, DEMB, DT, DT2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
    free(ids), free(table), free(g), free(emb), free(got), free(got2), free(ref), free(bd);
    free(a_head), free(a_emb), free(uses);
}

int main(void)
{
    clattn_ctx *ctx = layer_test_init();
    if (on_oclgrind) { /* the head runs CLBlast (as the op table's linear row) */
        fprintf(stderr, "oclgrind: skipping test_tied_embedding (CLBlast)\n");
        return layer_test_finish(ctx, "test_tied_embedding");
    }
    tied_case(ctx, 7, 5, 9, true);
    tied_case(ctx, 3, 1, 17, true);
    tied_case(ctx, 50, 16, 33, false);
    tied_case(ctx, 113, 64, 17, false);
    tied_case(ctx, 1000, 64, 130, false);
    return layer_test_finish(ctx, "test_tied_embedding");
}
