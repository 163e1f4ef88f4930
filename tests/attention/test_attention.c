/* test_attention.c - clattn_sdpa against the double-precision reference in
 * attention_ref.c, sweeping shapes (odd sizes, N != M both ways, D and Dv
 * from 1 to 256, batches, GQA/MQA), every mask kind and combinations, both
 * scores, every preset and custom snippets, the weights and lse outputs,
 * the fused and unfused implementations and both fused kernel families;
 * then argument errors.
 *
 * Tolerances: inputs are uniform in [-1, 1]. Float32 scores carry a
 * rounding error of about D * 2^-24 * scale * sum|q_d k_d| (< 2e-5 at
 * D = 256); exp() turns that into the same relative error on each
 * probability, and the M-term sums add M * 2^-24 relative. Outputs are
 * bounded by max|v| <= 1, so out and weights use atol 1e-4 + rtol 1e-4
 * (observed maxima are below 2e-5), and lse atol 1e-4 + rtol 1e-5.
 *
 * CLATTN_TEST_SMALL=1 (the oclgrind run in tools/check) keeps small shapes
 * and a third of the cases, and runs the fused kernels only: the unfused
 * path's GEMMs are CLBlast's (slow under the simulator, and outside our
 * kernels), so its softmax kernel is checked on host-written scores by
 * softmax_kernel_case instead. */
#include "attention/attention.h"
#include "attention_ref.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4

typedef enum mask_kind {
    MASK_NONE,
    MASK_CAUSAL,
    MASK_WINDOW_LEFT,    /* (3, 0): sliding window, causal */
    MASK_WINDOW_RIGHT,   /* (0, 3) */
    MASK_WINDOW_BOTH,    /* (5, 5) */
    MASK_KV_LEN,         /* random lengths, one batch 0 */
    MASK_CAUSAL_KV_LEN,
    MASK_BIAS,           /* full [B, Hq, N, M] */
    MASK_BIAS_BCAST,     /* [1, Hq, 1, M] / [N, M] alternately */
    MASK_BIAS_BOOL,      /* -inf entries, one fully masked row */
    MASK_WINDOW_BIAS,    /* (4, 2) + [N, M] bias */
    MASK_MOD,            /* mask_mod snippet */
    MASK_KINDS,
    MASK_WINDOW_ANY = MASK_KINDS /* (wl, wr) of the case; random_cases only */
} mask_kind;

static const char *mask_names[] = {"none", "causal", "window(3,0)", "window(0,3)",
                                   "window(5,5)", "kv_len", "causal+kv_len", "bias",
                                   "bias-broadcast", "bool-bias", "window(4,2)+bias",
                                   "mask_mod", "window(wl,wr)"};

typedef struct tcase {
    int B, Hq, Hkv, N, M, D, Dv;
    mask_kind mask;
    ref_mod mod;
    bool cosine, weights, lse;
    clattn_sdpa_impl impl;
    float scale; /* 0: default */
    int wl, wr;  /* MASK_WINDOW_ANY only */
} tcase;

static int n_cases_run;

/* Fills a bias in the form the mask kind asks for: full [B, Hq, N, M]
 * (MASK_BIAS, MASK_BIAS_BOOL), broadcast [1, Hq, 1, M] or [N, M]
 * (MASK_BIAS_BCAST, alternating by shape), or [N, M] (MASK_WINDOW_BIAS). */
static void fill_bias(const tcase *c, mask_kind m, float *bias, int64_t *shape, int *nd,
                      int64_t *sb, int64_t *sh, int64_t *sn)
{
    int64_t B = c->B, H = c->Hq, N = c->N, M = c->M;
    if (m == MASK_BIAS || m == MASK_BIAS_BOOL) {
        *nd = 4;
        shape[0] = B, shape[1] = H, shape[2] = N, shape[3] = M;
        *sb = H * N * M, *sh = N * M, *sn = M;
    } else if (m == MASK_BIAS_BCAST && (c->N + c->M) % 2 == 0) {
        *nd = 4;
        shape[0] = 1, shape[1] = H, shape[2] = 1, shape[3] = M;
        *sb = 0, *sh = M, *sn = 0;
    } else {
        *nd = 2;
        shape[0] = N, shape[1] = M;
        *sb = 0, *sh = 0, *sn = M;
    }
    size_t n = 1;
    for (int i = 0; i < *nd; i++)
        n *= (size_t)shape[i];
    test_fill_uniform(bias, n, -2, 2);
    if (m == MASK_BIAS_BOOL) {
        for (size_t i = 0; i < n; i++)
            if (test_uniform(0, 1) < 0.3f)
                bias[i] = -INFINITY;
        for (int64_t j = 0; j < M; j++) /* query row 0 of (b 0, h 0) sees nothing */
            bias[j] = -INFINITY;
    }
}

static void run_case(clattn_ctx *ctx, const tcase *c, const char *variant)
{
    size_t nq = (size_t)c->B * c->Hq * c->N * c->D, nk = (size_t)c->B * c->Hkv * c->M * c->D;
    size_t nv = (size_t)c->B * c->Hkv * c->M * c->Dv, no = (size_t)c->B * c->Hq * c->N * c->Dv;
    size_t nw = (size_t)c->B * c->Hq * c->N * c->M, nl = (size_t)c->B * c->Hq * c->N;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nv * 4);
    float *out = malloc(no * 4), *w = malloc(nw * 4), *lse = malloc(nl * 4);
    double *ref_out = malloc(no * 8), *ref_w = malloc(nw * 8), *ref_lse = malloc(nl * 8);
    float *bias = malloc(nw * 4 + 4), *buf = malloc((size_t)c->Hq * 64 * 4);
    test_fill_uniform(q, nq, -1, 1);
    test_fill_uniform(k, nk, -1, 1);
    test_fill_uniform(v, nv, -1, 1);

    clattn_sdpa_params p = clattn_sdpa_params_default();
    ref_problem r;
    memset(&r, 0, sizeof r);
    r.B = c->B, r.Hq = c->Hq, r.Hkv = c->Hkv, r.N = c->N, r.M = c->M, r.D = c->D, r.Dv = c->Dv;
    p.scale = c->scale;
    r.scale = c->scale != 0 ? c->scale : 1.0 / sqrt((double)c->D);
    r.cosine = c->cosine;
    p.score = c->cosine ? CLATTN_SCORE_COSINE : CLATTN_SCORE_DOT;
    r.wl = r.wr = -1;
    int32_t kv_len[8];
    clattn_tensor *tbias = NULL, *tbuf = NULL;
    switch (c->mask) {
    case MASK_CAUSAL: p.causal = true, r.wr = 0; break;
    case MASK_WINDOW_LEFT: p.window_left = 3, p.window_right = 0, r.wl = 3, r.wr = 0; break;
    case MASK_WINDOW_RIGHT: p.window_left = 0, p.window_right = 3, r.wl = 0, r.wr = 3; break;
    case MASK_WINDOW_BOTH: p.window_left = p.window_right = r.wl = r.wr = 5; break;
    case MASK_WINDOW_ANY:
        p.window_left = r.wl = c->wl;
        p.window_right = r.wr = c->wr;
        break;
    case MASK_CAUSAL_KV_LEN: p.causal = true, r.wr = 0; /* fall through */
    case MASK_KV_LEN:
        for (int b = 0; b < c->B; b++)
            kv_len[b] = b == 1 ? 0 : 1 + (int32_t)(test_uniform(0, 1) * (float)c->M) % c->M;
        p.kv_len = r.kv_len = kv_len;
        break;
    case MASK_WINDOW_BIAS: p.window_left = r.wl = 4, p.window_right = r.wr = 2; /* fall through */
    case MASK_BIAS:
    case MASK_BIAS_BCAST:
    case MASK_BIAS_BOOL: {
        int64_t shape[4];
        int nd;
        fill_bias(c, c->mask, bias, shape, &nd, &r.bias_sb, &r.bias_sh, &r.bias_sn);
        tbias = test_tensor(ctx, nd, shape, bias);
        p.bias = tbias;
        r.bias = bias;
        break;
    }
    case MASK_MOD:
        p.mask_mod = "(kv_idx % 3) != 1 || q_idx == kv_idx";
        r.mask_mod = true;
        break;
    default: break;
    }

    r.score_mod = c->mod;
    int64_t bshape[1];
    switch (c->mod) {
    case REF_MOD_ALIBI:
        clattn_alibi_slopes(c->Hq, buf);
        bshape[0] = c->Hq;
        tbuf = test_tensor(ctx, 1, bshape, buf);
        clattn_sdpa_preset_alibi(&p, tbuf);
        break;
    case REF_MOD_SOFTCAP: clattn_sdpa_preset_softcap(&p, 0.5f); break;
    case REF_MOD_RELPOS: {
        const int R = 6;
        bshape[0] = (int64_t)c->Hq * (2 * R + 1);
        test_fill_uniform(buf, (size_t)bshape[0], -1, 1);
        tbuf = test_tensor(ctx, 1, bshape, buf);
        clattn_sdpa_preset_relpos(&p, tbuf, R);
        break;
    }
    case REF_MOD_CUSTOM:
        p.score_mod = "score + p1 * sin((float)(q_idx * 3 + kv_idx)) // a trailing comment";
        p.mod_params[1] = 0.75f;
        break;
    default: break;
    }
    for (int i = 0; i < 4; i++)
        r.p[i] = p.mod_params[i];
    r.mod_buf = buf;

    int64_t sq[4] = {c->B, c->Hq, c->N, c->D}, sk[4] = {c->B, c->Hkv, c->M, c->D};
    int64_t sv[4] = {c->B, c->Hkv, c->M, c->Dv}, so[4] = {c->B, c->Hq, c->N, c->Dv};
    int64_t sw[4] = {c->B, c->Hq, c->N, c->M}, sl[3] = {c->B, c->Hq, c->N};
    clattn_tensor *tq = test_tensor(ctx, 4, sq, q), *tk = test_tensor(ctx, 4, sk, k);
    clattn_tensor *tv = test_tensor(ctx, 4, sv, v), *to = test_tensor(ctx, 4, so, NULL);
    clattn_tensor *tw = c->weights ? test_tensor(ctx, 4, sw, NULL) : NULL;
    clattn_tensor *tl = c->lse ? test_tensor(ctx, 3, sl, NULL) : NULL;
    clattn_tensor_fill(to, NAN); /* every element must be written */
    p.weights = tw;
    p.lse = tl;
    p.impl = c->impl;

    char what[256];
    char win[40] = "";
    if (c->mask == MASK_WINDOW_ANY)
        snprintf(win, sizeof win, " wl=%d wr=%d", c->wl, c->wr);
    snprintf(what, sizeof what,
             "%s B=%d Hq=%d Hkv=%d N=%d M=%d D=%d Dv=%d mask=%s%s mod=%d%s%s%s impl=%d scale=%g",
             variant, c->B, c->Hq, c->Hkv, c->N, c->M, c->D, c->Dv, mask_names[c->mask], win,
             (int)c->mod, c->cosine ? " cosine" : "", c->weights ? " weights" : "",
             c->lse ? " lse" : "", (int)c->impl, (double)c->scale);
    clattn_status st = clattn_sdpa(ctx, tq, tk, tv, to, &p);
    CHECK(st == CLATTN_OK, "%s: %s: %s", what, clattn_status_str(st), clattn_last_error());
    if (st == CLATTN_OK) {
        ref_attention(&r, q, k, v, ref_out, c->weights ? ref_w : NULL, c->lse ? ref_lse : NULL);
        CHECK_OK(clattn_tensor_read(to, out));
        char label[300];
        snprintf(label, sizeof label, "%s: out", what);
        test_close(label, out, ref_out, no, ATOL, RTOL);
        if (tw) {
            CHECK_OK(clattn_tensor_read(tw, w));
            snprintf(label, sizeof label, "%s: weights", what);
            test_close(label, w, ref_w, nw, ATOL, RTOL);
        }
        if (tl) {
            CHECK_OK(clattn_tensor_read(tl, lse));
            snprintf(label, sizeof label, "%s: lse", what);
            test_close(label, lse, ref_lse, nl, ATOL, 1e-5);
        }
    }
    n_cases_run++;
    clattn_tensor_destroy(tq);
    clattn_tensor_destroy(tk);
    clattn_tensor_destroy(tv);
    clattn_tensor_destroy(to);
    clattn_tensor_destroy(tw);
    clattn_tensor_destroy(tl);
    clattn_tensor_destroy(tbias);
    clattn_tensor_destroy(tbuf);
    free(q), free(k), free(v), free(out), free(w), free(lse);
    free(ref_out), free(ref_w), free(ref_lse), free(bias), free(buf);
}

/* A covering sweep: every mask kind meets every head size, several shapes
 * and GQA ratios, both scores, both implementations and the optional
 * outputs, rather than the full cross product (hours on two cores). The
 * choice is deterministic. Snippets are swept separately (snippet_sweep)
 * at one head size: every distinct (D, Dv, bias, snippet) is a program to
 * compile, and compiling dominates this test's time on CPU devices. */
static void sweep(clattn_ctx *ctx, const char *variant, bool small, int stride)
{
    static const int dims[] = {1, 16, 32, 64, 80, 128, 256};
    static const int lens[] = {1, 7, 64, 113, 300};
    static const int ratios[][2] = {{1, 1}, {2, 1}, {4, 2}, {8, 1}, {4, 4}, {8, 2}};
    int idx = 0;
    for (int di = 0; di < 7; di++) {
        for (int mi = 0; mi < MASK_KINDS; mi++, idx++) {
            if (idx % stride || mi == MASK_MOD)
                continue;
            tcase c;
            memset(&c, 0, sizeof c);
            c.D = dims[di];
            c.Dv = (mi % 4 == 1) ? dims[(di + 2) % 7] : c.D; /* Dv != D too */
            c.N = lens[(di + mi) % 5];
            c.M = lens[(di * 3 + mi * 2 + 1) % 5];
            if (small) {
                c.N = c.N > 17 ? 17 : c.N;
                c.M = c.M > 23 ? 23 : c.M;
                c.D = c.D > 32 ? 32 : c.D;
                c.Dv = c.Dv > 16 ? 16 : c.Dv;
            }
            const int *r = ratios[(di + mi) % 6];
            c.Hq = r[0], c.Hkv = r[1];
            c.B = (idx % 2) ? 3 : 1;
            if (c.N * c.M * c.D * c.Hq * c.B > 6000000) /* keep the reference quick */
                c.Hq = c.Hkv = 1, c.B = 1;
            if ((mi == MASK_KV_LEN || mi == MASK_CAUSAL_KV_LEN) && c.B < 2)
                c.B = 2; /* batch 1 has kv_len 0: a fully masked batch */
            c.mask = (mask_kind)mi;
            c.mod = REF_MOD_NONE;
            c.cosine = idx % 7 == 3;
            c.lse = idx % 2 == 0;
            c.weights = idx % 5 == 1;
            c.impl = (idx % 4 == 2) ? CLATTN_SDPA_UNFUSED : CLATTN_SDPA_AUTO;
            c.scale = idx % 6 == 5 ? 0.3f : 0.0f;
            if (small) {
                c.impl = CLATTN_SDPA_FUSED;
                c.weights = false;
            }
            run_case(ctx, &c, variant);
        }
    }
}

/* Every score_mod preset, the custom score_mod and the mask_mod, each with
 * several mask kinds (with and without bias), GQA, odd sizes, both
 * implementations: at D = 32 and Dv = 24, so that all of it costs about a
 * dozen programs. */
static void snippet_sweep(clattn_ctx *ctx, const char *variant, bool small, int stride)
{
    static const mask_kind masks[] = {MASK_NONE, MASK_CAUSAL, MASK_WINDOW_BOTH, MASK_KV_LEN,
                                      MASK_BIAS_BOOL, MASK_WINDOW_BIAS};
    int idx = 0;
    for (int mod = REF_MOD_ALIBI; mod <= REF_MOD_CUSTOM + 1; mod++) {
        for (int mi = 0; mi < 6; mi++, idx++) {
            if (idx % stride)
                continue;
            tcase c;
            memset(&c, 0, sizeof c);
            c.D = 32, c.Dv = 24;
            c.N = small ? 9 : 40 + 13 * mi, c.M = small ? 14 : 70 - 9 * mi;
            c.Hq = (mi % 2) ? 4 : 2, c.Hkv = (mi % 3) ? 2 : 1;
            c.B = (masks[mi] == MASK_KV_LEN) ? 3 : 1 + mi % 2;
            /* mod past the presets stands for the mask_mod snippet */
            c.mod = mod <= REF_MOD_CUSTOM ? (ref_mod)mod : REF_MOD_NONE;
            c.mask = mod <= REF_MOD_CUSTOM ? masks[mi] : MASK_MOD;
            c.lse = true;
            c.weights = !small && idx % 3 == 1;
            c.impl = small ? CLATTN_SDPA_FUSED : (idx % 2 ? CLATTN_SDPA_UNFUSED : CLATTN_SDPA_AUTO);
            run_case(ctx, &c, variant);
        }
    }
}

/* The unfused path's softmax kernel on scores written from the host (no
 * GEMM involved): causal window, kv_len with a fully masked batch, a bias,
 * and lse; against softmax computed here in double. */
static void softmax_kernel_case(clattn_ctx *ctx)
{
    const int B = 2, H = 2, N = 5, M = 37;
    const size_t count = (size_t)B * H * N * M;
    float *s = malloc(count * sizeof *s), *p = malloc(count * sizeof *p);
    float *bias = malloc((size_t)N * M * sizeof *bias), lse[2 * 2 * 5];
    double *ref = malloc(count * sizeof *ref), ref_lse[2 * 2 * 5];
    test_fill_uniform(s, count, -4, 4);
    test_fill_uniform(bias, (size_t)N * M, -1, 1);
    int32_t kv_len[2] = {30, 0};
    const float scale = 0.5f;
    for (int bh = 0; bh < B * H; bh++)
        for (int i = 0; i < N; i++) {
            const float *row = s + ((size_t)bh * N + i) * M;
            double mx = -INFINITY, sum = 0;
            int hi = i + M - N; /* causal, bottom-right aligned */
            int limit = kv_len[bh / H];
            for (int j = 0; j <= hi && j < limit; j++)
                mx = fmax(mx, scale * row[j] + bias[i * M + j]);
            for (int j = 0; j <= hi && j < limit; j++)
                sum += exp(scale * row[j] + bias[i * M + j] - mx);
            for (int j = 0; j < M; j++)
                ref[((size_t)bh * N + i) * M + j] =
                    (j <= hi && j < limit) ? exp(scale * row[j] + bias[i * M + j] - mx) / sum : 0;
            ref_lse[bh * N + i] = sum > 0 ? mx + log(sum) : -INFINITY;
        }
    int64_t ss[4] = {B, H, N, M}, sb[2] = {N, M}, sl[3] = {B, H, N};
    clattn_tensor *S = test_tensor(ctx, 4, ss, s), *Bias = test_tensor(ctx, 2, sb, bias);
    clattn_tensor *L = test_tensor(ctx, 3, sl, NULL);
    clattn__sdpa_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.B = B, pr.Hq = pr.Hkv = H, pr.N = N, pr.M = M, pr.D = pr.Dv = 64;
    pr.scale = scale, pr.wl = -1, pr.wr = 0;
    pr.has_bias = true, pr.bias = Bias->mem, pr.bias_sn = M;
    pr.has_lse = true, pr.lse = L->mem;
    cl_program prog;
    CHECK_OK(clattn__sdpa_aux_buffers(ctx, kv_len, NULL, &pr));
    CHECK_OK(clattn__attention_program(ctx, 64, 64, true, NULL, NULL, &prog));
    CHECK_OK(clattn__sdpa_softmax(ctx, prog, S->mem, &pr));
    CHECK_OK(clattn_tensor_read(S, p));
    CHECK_OK(clattn_tensor_read(L, lse));
    test_close("sdpa_softmax_rows on host scores: P", p, ref, count, 1e-6, 1e-5);
    test_close("sdpa_softmax_rows on host scores: lse", lse, ref_lse, (size_t)B * H * N, 1e-5,
               1e-6);
    clattn_tensor_destroy(S);
    clattn_tensor_destroy(Bias);
    clattn_tensor_destroy(L);
    free(s), free(p), free(bias), free(ref);
}

/* Hand-picked cases the sweep might not hit. */
static void edge_cases(clattn_ctx *ctx, const char *variant)
{
    const tcase cases[] = {
        /* causal with N > M: the first N - M rows see nothing. */
        {2, 2, 1, 40, 9, 16, 16, MASK_CAUSAL, REF_MOD_NONE, false, false, true, CLATTN_SDPA_AUTO, 0, 0, 0},
        {2, 2, 1, 40, 9, 16, 16, MASK_CAUSAL, REF_MOD_NONE, false, true, true, CLATTN_SDPA_AUTO, 0, 0, 0},
        /* causal with N < M (decoding with a cache), MQA. */
        {1, 4, 1, 3, 130, 64, 64, MASK_CAUSAL, REF_MOD_NONE, false, false, true, CLATTN_SDPA_AUTO, 0, 0, 0},
        /* single query, single key. */
        {1, 1, 1, 1, 1, 1, 1, MASK_NONE, REF_MOD_NONE, false, true, true, CLATTN_SDPA_AUTO, 0, 0, 0},
        /* key blocks fully outside a narrow window are skipped. */
        {1, 1, 1, 257, 257, 64, 32, MASK_WINDOW_LEFT, REF_MOD_ALIBI, false, false, true, CLATTN_SDPA_FUSED, 0, 0, 0},
        /* every key of a batch masked by kv_len = 0, cosine score. */
        {3, 2, 2, 17, 65, 17, 3, MASK_CAUSAL_KV_LEN, REF_MOD_NONE, true, false, true, CLATTN_SDPA_FUSED, 0, 0, 0},
        /* large D and Dv together, softcap, weights. */
        {1, 2, 1, 33, 70, 256, 256, MASK_BIAS_BOOL, REF_MOD_SOFTCAP, false, true, true, CLATTN_SDPA_AUTO, 0, 0, 0},
        /* N, M not multiples of any block, custom score_mod with mask_mod. */
        {3, 6, 3, 113, 67, 80, 48, MASK_MOD, REF_MOD_CUSTOM, false, false, true, CLATTN_SDPA_FUSED, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_case(ctx, &cases[i], variant);
}

/* Pseudo-random shapes and windows from a fixed seed, beyond the grid of
 * the sweep: N and M anywhere in 1..400 (any offset against the CPU
 * kernel's 6-row groups and 64-key blocks), windows of 0..299 keys on
 * either side or unlimited (blocks skipped or cut anywhere), GQA ratios
 * of 1, 2 and 3. The head sizes are pairs the sweep compiles already
 * (each new one costs seconds of POCL compile on a fresh machine). */
static void random_cases(clattn_ctx *ctx, const char *variant)
{
    uint32_t x = 20261121u;
#define RND(n) ((uint32_t)(((x = x * 1664525u + 1013904223u) >> 8) % (uint32_t)(n)))
    static const int ratios[][2] = {{1, 1}, {2, 1}, {3, 3}, {6, 2}};
    static const int dims[][2] = {{32, 32}, {32, 80}, {80, 80}, {80, 256}};
    for (int i = 0; i < 24; i++) {
        tcase c;
        memset(&c, 0, sizeof c);
        const int *dd = dims[RND(4)];
        c.D = dd[0], c.Dv = dd[1];
        c.N = 1 + (int)RND(400);
        c.M = 1 + (int)RND(400);
        const int *r = ratios[RND(4)];
        c.Hq = r[0], c.Hkv = r[1];
        c.B = 1 + (int)RND(2);
        while ((double)c.N * c.M * (c.D + c.Dv) * c.Hq * c.B > 8e6 && c.N > 1)
            c.N /= 2; /* keep the reference quick */
        c.mask = MASK_WINDOW_ANY;
        c.wl = RND(4) ? (int)RND(300) : -1;
        c.wr = RND(4) ? (int)RND(300) : -1;
        c.cosine = RND(6) == 0;
        c.lse = true;
        c.impl = CLATTN_SDPA_AUTO;
        c.scale = RND(3) == 0 ? 0.25f + 0.05f * (float)RND(40) : 0.0f;
        run_case(ctx, &c, variant);
    }
#undef RND
}

/* Long key ranges on every device; then, on Mesa's llvmpipe, its loop
 * limit: 65535 loop iterations per kernel invocation in all, after which
 * it silently cuts loops short. The CPU family left 480 of 512 rows
 * unwritten at N = M = 512 there, so llvmpipe always runs the tiled one;
 * past what that can run, AUTO takes the unfused path and FUSED (like the
 * backward) is refused. */
static void long_key_cases(clattn_ctx *ctx, const char *variant)
{
    const tcase cases[] = {
        {1, 1, 1, 600, 600, 64, 64, MASK_BIAS, REF_MOD_NONE, false, false, true, CLATTN_SDPA_AUTO, 0, 0, 0},
        {1, 2, 1, 40, 3000, 64, 64, MASK_BIAS_BCAST, REF_MOD_NONE, false, false, true,
         CLATTN_SDPA_AUTO, 0, 0, 0},
        {1, 1, 1, 125, 316, 80, 80, MASK_BIAS, REF_MOD_NONE, false, false, true,
         CLATTN_SDPA_AUTO, 1.44f, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_case(ctx, &cases[i], variant);

    clattn_device_info info;
    CHECK_OK(clattn_ctx_device_info(ctx, &info));
    if (!strstr(info.device_name, "llvmpipe"))
        return;
    CHECK(strcmp(clattn_ctx_attention_kernel(ctx), "tiled") == 0, "llvmpipe runs %s",
          clattn_ctx_attention_kernel(ctx));
    /* 12000 keys at D = 64: past the fused kernel's budget (about 10600). */
    const tcase past = {1, 1, 1, 4, 12000, 64, 64, MASK_NONE, REF_MOD_NONE, false, false, true,
                        CLATTN_SDPA_AUTO, 0, 0, 0};
    run_case(ctx, &past, "llvmpipe-unfused");
    int64_t sq[4] = {1, 1, 4, 64}, sk[4] = {1, 1, 12000, 64}, sl[3] = {1, 1, 4};
    clattn_tensor *q = test_tensor(ctx, 4, sq, NULL), *k = test_tensor(ctx, 4, sk, NULL);
    clattn_tensor *v = test_tensor(ctx, 4, sk, NULL), *o = test_tensor(ctx, 4, sq, NULL);
    clattn_tensor *lse = test_tensor(ctx, 3, sl, NULL), *dq = test_tensor(ctx, 4, sq, NULL);
    CHECK_OK(clattn_tensor_fill(q, 0.5f));
    CHECK_OK(clattn_tensor_fill(k, 0.25f));
    CHECK_OK(clattn_tensor_fill(v, 1.0f));
    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.impl = CLATTN_SDPA_FUSED;
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_UNSUPPORTED);
    CHECK(strstr(clattn_last_error(), "loop iterations") != NULL, "message: %s",
          clattn_last_error());
    p.impl = CLATTN_SDPA_AUTO;
    p.lse = lse;
    CHECK_OK(clattn_sdpa(ctx, q, k, v, o, &p));
    p.lse = NULL;
    clattn_sdpa_grads g = {dq, NULL, NULL, NULL};
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, o, &p, &g), CLATTN_ERR_UNSUPPORTED);
    CHECK(strstr(clattn_last_error(), "loop iterations") != NULL, "message: %s",
          clattn_last_error());
    clattn_tensor_destroy(q), clattn_tensor_destroy(k), clattn_tensor_destroy(v);
    clattn_tensor_destroy(o), clattn_tensor_destroy(lse), clattn_tensor_destroy(dq);
}

static void error_cases(clattn_ctx *ctx)
{
    int64_t sq[4] = {2, 4, 5, 8}, sk[4] = {2, 3, 6, 8}, sv[4] = {2, 2, 6, 4};
    int64_t sk2[4] = {2, 2, 6, 8}, so[4] = {2, 4, 5, 4}, sbad[4] = {2, 4, 5, 5};
    int64_t sd[4] = {1, 1, 2, 257}, sw[4] = {2, 4, 5, 7}, sbias[2] = {3, 6};
    clattn_tensor *q = test_tensor(ctx, 4, sq, NULL), *k3 = test_tensor(ctx, 4, sk, NULL);
    clattn_tensor *k = test_tensor(ctx, 4, sk2, NULL), *v = test_tensor(ctx, 4, sv, NULL);
    clattn_tensor *o = test_tensor(ctx, 4, so, NULL), *obad = test_tensor(ctx, 4, sbad, NULL);
    clattn_tensor *big = test_tensor(ctx, 4, sd, NULL), *w = test_tensor(ctx, 4, sw, NULL);
    clattn_tensor *bias = test_tensor(ctx, 2, sbias, NULL);
    clattn_sdpa_params p = clattn_sdpa_params_default();

    CHECK_STATUS(clattn_sdpa(ctx, q, k3, v, o, &p), CLATTN_ERR_INVALID_ARG); /* Hkv mismatch */
    CHECK(strstr(clattn_last_error(), "[2, 3, 6, 8]") != NULL, "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, obad, &p), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "out") != NULL, "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_sdpa(ctx, big, big, big, big, &p), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, NULL, &p), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, q, &p), CLATTN_ERR_INVALID_ARG);
    p.weights = w; /* wrong M */
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "weights") != NULL, "message: %s", clattn_last_error());
    p = clattn_sdpa_params_default();
    p.bias = bias; /* [3, 6] is not broadcastable to [.., 5, 6] */
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "bias [3, 6]") != NULL, "message: %s", clattn_last_error());
    p = clattn_sdpa_params_default();
    int32_t kv_bad[2] = {3, 7};
    p.kv_len = kv_bad;
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "kv_len[1] = 7") != NULL, "message: %s", clattn_last_error());
    p = clattn_sdpa_params_default();
    p.window_left = -2;
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);
    p = clattn_sdpa_params_default();
    p.scale = NAN;
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);
    p = clattn_sdpa_params_default();
    clattn_sdpa_preset_softcap(&p, -1.0f);
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);
    p = clattn_sdpa_params_default();
    clattn_sdpa_preset_alibi(&p, bias); /* 18 entries >= Hq = 4: fine */
    CHECK_OK(clattn_sdpa(ctx, q, k, v, o, &p));
    clattn_sdpa_preset_relpos(&p, bias, 8); /* needs 4 * 17 entries */
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);
    clattn_sdpa_preset_alibi(&p, NULL);
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);

    /* A snippet that does not compile: a build error with the log. */
    p = clattn_sdpa_params_default();
    p.score_mod = "score * no_such_variable";
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_BUILD);
    CHECK(strstr(clattn_last_error(), "no_such_variable") != NULL, "message: %s",
          clattn_last_error());
    p.score_mod = NULL;
    p.mask_mod = "q_idx >";
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_BUILD);
    /* The context still works after a failed build. */
    p.mask_mod = NULL;
    CHECK_OK(clattn_sdpa(ctx, q, k, v, o, &p));
    p.impl = CLATTN_SDPA_FUSED;
    int64_t sw_ok[4] = {2, 4, 5, 6};
    clattn_tensor *w_ok = test_tensor(ctx, 4, sw_ok, NULL);
    p.weights = w_ok;
    CHECK_STATUS(clattn_sdpa(ctx, q, k, v, o, &p), CLATTN_ERR_INVALID_ARG);
    CHECK_OK(clattn_ctx_finish(ctx));

    clattn_tensor_destroy(q), clattn_tensor_destroy(k3), clattn_tensor_destroy(k);
    clattn_tensor_destroy(v), clattn_tensor_destroy(o), clattn_tensor_destroy(obad);
    clattn_tensor_destroy(big), clattn_tensor_destroy(w), clattn_tensor_destroy(bias);
    clattn_tensor_destroy(w_ok);
}

int main(void)
{
    const char *small_env = getenv("CLATTN_TEST_SMALL");
    bool small = small_env && small_env[0] == '1';
    test_seed(2024);
    clattn_ctx *ctx = test_ctx();
    /* The other fused family too, on a subset: both must agree everywhere. */
    clattn_ctx_params op = clattn_ctx_params_default();
    bool primary_tiled = strcmp(clattn_ctx_attention_kernel(ctx), "tiled") == 0;
    op.attention_kernel = primary_tiled ? "cpu" : "tiled";
    clattn_ctx *other = NULL;
    CHECK_OK(clattn_ctx_create(&op, &other));
    /* llvmpipe runs "tiled" whatever is asked: no second family there. */
    if (other && strcmp(clattn_ctx_attention_kernel(other), op.attention_kernel) != 0) {
        clattn_ctx_destroy(other);
        other = NULL;
    }

    sweep(ctx, primary_tiled ? "tiled" : "cpu", small, small ? 3 : 1);
    snippet_sweep(ctx, primary_tiled ? "tiled" : "cpu", small, small ? 2 : 1);
    softmax_kernel_case(ctx);
    if (!small) {
        edge_cases(ctx, primary_tiled ? "tiled" : "cpu");
        long_key_cases(ctx, primary_tiled ? "tiled" : "cpu");
        random_cases(ctx, primary_tiled ? "tiled" : "cpu");
    }
    if (other) {
        sweep(other, op.attention_kernel, small, small ? 7 : 3);
        snippet_sweep(other, op.attention_kernel, small, small ? 5 : 3);
        if (!small)
            edge_cases(other, op.attention_kernel);
    }
    error_cases(ctx);
    fprintf(stderr, "%d attention cases\n", n_cases_run);
    clattn_ctx_destroy(other);
    clattn_ctx_destroy(ctx);
    return test_summary("test_attention");
}
