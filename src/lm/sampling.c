/* sampling.c - the host sampler: penalties, temperature, top-k, top-p,
 * min-p, softmax and one draw, in double precision, in the order and with
 * the definitions of Hugging Face's generate (transformers 4.57,
 * generation/logits_process.py); see the Sampling section of clattn.h,
 * which is the specification this file implements.
 *
 * Cost: accept is O(1) (a ring buffer of the window plus a count per id);
 * a sample is O(vocab) for the penalties and the temperature, then
 * O(vocab log top_k + m log m) with top_k set (a heap selects the
 * threshold, m >= top_k ids tie with or beat it and are sorted), else
 * O(n log n) over the n ids of finite logit. */
#include "lm/lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One candidate id: its scaled logit v = (l - l_max) / temperature (<= 0;
 * the shift by the largest logit changes no probability and keeps v from
 * overflowing for a tiny temperature) and its weight w = exp(v). */
typedef struct cand {
    double v, w;
    int32_t id;
} cand;

struct clattn_sampler {
    clattn_sampler_params p;
    int32_t vocab;
    bool penalties; /* repeat_last_n != 0 and some penalty is not neutral */
    int64_t *count; /* [vocab] occurrences of each id in the window */
    /* The window when repeat_last_n > 0: ring[(head + j) % cap], j < len,
     * oldest first. cap grows by doubling up to repeat_last_n, so a large
     * window costs memory only as ids arrive; the oldest id leaves once
     * len == repeat_last_n (then cap == repeat_last_n). */
    int32_t *ring;
    int32_t cap, head, len;
    uint64_t rng[4]; /* xoshiro256** state */
    cand *cand;      /* [vocab] scratch of one sample */
    cand *heap;      /* [min(top_k, vocab)] scratch of top-k, or NULL */
};

/* ======================================================================== */
/* Parameters, create, destroy                                               */
/* ======================================================================== */

clattn_sampler_params clattn_sampler_params_default(void)
{
    clattn_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 1.0;
    p.top_k = 0;
    p.top_p = 1.0;
    p.min_p = 0.0;
    p.repeat_penalty = 1.0;
    p.repeat_last_n = 64;
    p.presence_penalty = 0.0;
    p.frequency_penalty = 0.0;
    p.seed = 0;
    return p;
}

static clattn_status check_params(const clattn_sampler_params *p, int32_t vocab)
{
    const char *fn = "clattn_sampler_create";
#define BAD(field, value, rule)                                                                    \
    clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: %s = %g %s", fn, field, (double)(value), rule)
    if (vocab < 1)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: vocab = %d must be >= 1", fn,
                            (int)vocab);
    if (!(p->temperature >= 0.0) || !isfinite(p->temperature))
        return BAD("temperature", p->temperature, "must be finite and >= 0 (0: greedy)");
    if (p->top_k < 0)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: top_k = %d must be >= 0 (0: off)",
                            fn, (int)p->top_k);
    if (!(p->top_p > 0.0 && p->top_p <= 1.0))
        return BAD("top_p", p->top_p, "must be in (0, 1] (1: off)");
    if (!(p->min_p >= 0.0 && p->min_p <= 1.0))
        return BAD("min_p", p->min_p, "must be in [0, 1] (0: off)");
    if (!(p->repeat_penalty > 0.0) || !isfinite(p->repeat_penalty))
        return BAD("repeat_penalty", p->repeat_penalty, "must be finite and > 0 (1: off)");
    if (p->repeat_last_n < -1)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "%s: repeat_last_n = %d must be >= -1 (-1: every id, 0: off)", fn,
                            (int)p->repeat_last_n);
    if (!isfinite(p->presence_penalty))
        return BAD("presence_penalty", p->presence_penalty, "must be finite (0: off)");
    if (!isfinite(p->frequency_penalty))
        return BAD("frequency_penalty", p->frequency_penalty, "must be finite (0: off)");
#undef BAD
    return CLATTN_OK;
}

void clattn_sampler_destroy(clattn_sampler *s)
{
    if (!s)
        return;
    free(s->count);
    free(s->ring);
    free(s->cand);
    free(s->heap);
    free(s);
}

clattn_status clattn_sampler_create(const clattn_sampler_params *p, int32_t vocab,
                                    clattn_sampler **out)
{
    clattn__clear_thread_error();
    if (!out)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "clattn_sampler_create: out is NULL");
    *out = NULL;
    clattn_sampler_params def = clattn_sampler_params_default();
    if (!p)
        p = &def;
    clattn_status st = check_params(p, vocab);
    if (st != CLATTN_OK)
        return st;

    clattn_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "clattn_sampler_create: no memory");
    s->p = *p;
    s->vocab = vocab;
    s->penalties =
        p->repeat_last_n != 0 &&
        (p->repeat_penalty != 1.0 || p->presence_penalty != 0.0 || p->frequency_penalty != 0.0);
    s->count = calloc((size_t)vocab, sizeof *s->count);
    s->cand = malloc((size_t)vocab * sizeof *s->cand);
    int32_t heap_n = p->top_k > 0 && p->top_k < vocab ? p->top_k : 0;
    if (heap_n > 0)
        s->heap = malloc((size_t)heap_n * sizeof *s->heap);
    if (!s->count || !s->cand || (heap_n > 0 && !s->heap)) {
        clattn_sampler_destroy(s);
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY,
                            "clattn_sampler_create: no memory for a vocabulary of %d", (int)vocab);
    }
    clattn__rng_seed(s->rng, p->seed);
    *out = s;
    return CLATTN_OK;
}

/* ======================================================================== */
/* The window of accepted ids                                                */
/* ======================================================================== */

clattn_status clattn_sampler_accept(clattn_sampler *s, int32_t id)
{
    clattn__clear_thread_error();
    if (!s)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "clattn_sampler_accept: NULL sampler");
    if (id < 0 || id >= s->vocab)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "clattn_sampler_accept: id %d is outside the vocabulary [0, %d)",
                            (int)id, (int)s->vocab);
    int32_t n = s->p.repeat_last_n;
    if (n == 0)
        return CLATTN_OK; /* penalties off: nothing to remember */
    if (n > 0) {
        if (s->len < n) {
            if (s->len == s->cap) {
                /* Grow (head is 0 until the window is full: nothing has left). */
                int64_t want = s->cap > 0 ? 2 * (int64_t)s->cap : 64;
                int32_t cap = want < n ? (int32_t)want : n;
                int32_t *r = realloc(s->ring, (size_t)cap * sizeof *r);
                if (!r)
                    return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY,
                                        "clattn_sampler_accept: no memory for a window of %d ids",
                                        (int)cap);
                s->ring = r;
                s->cap = cap;
            }
            s->ring[s->len++] = id;
        } else {
            /* Full (cap == n): the oldest id leaves, the new one takes its slot. */
            s->count[s->ring[s->head]]--;
            s->ring[s->head] = id;
            s->head = s->head + 1 == s->cap ? 0 : s->head + 1;
        }
    }
    s->count[id]++;
    return CLATTN_OK;
}

void clattn_sampler_reset(clattn_sampler *s, uint64_t seed)
{
    if (!s)
        return;
    if (s->p.repeat_last_n > 0) {
        for (int32_t j = 0; j < s->len; j++)
            s->count[s->ring[(s->head + j) % s->cap]] = 0;
    } else if (s->p.repeat_last_n < 0) {
        memset(s->count, 0, (size_t)s->vocab * sizeof *s->count);
    }
    s->head = 0;
    s->len = 0;
    clattn__rng_seed(s->rng, seed);
}

/* ======================================================================== */
/* One row of logits to the kept ids and their probabilities                 */
/* ======================================================================== */

/* The candidates' order: larger v first, then the lower id (a strict total
 * order, so qsort's instability does not matter). */
static bool before(const cand *a, const cand *b)
{
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static int cmp_id(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

/* From here on the order is by probability, then id: exp can round two
 * different v to one w, so runs of equal w > 0 (rare beyond exact ties,
 * which are in id order already) are put in id order. Runs of w = 0 (exp
 * underflowed) are left alone: they are never drawn and their
 * probability is 0 wherever they stand. */
static void order_equal_weights(cand *c, int32_t n)
{
    for (int32_t a = 0; a < n;) {
        int32_t b = a + 1;
        while (b < n && c[b].w == c[a].w)
            b++;
        if (b - a > 1 && c[a].w > 0.0 && c[a].v != c[b - 1].v)
            qsort(c + a, (size_t)(b - a), sizeof *c, cmp_id);
        a = b;
    }
}

/* Min-heap of k candidates under before(): heap[0] is the last of the k
 * best seen so far. */
static void sift_down(cand *h, int32_t k, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && before(&h[m], &h[l]))
            m = l;
        if (r < k && before(&h[m], &h[r]))
            m = r;
        if (m == i)
            return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* The k-th largest v of c[0 .. n), 0 < k < n, in O(n log k). */
static double kth_largest(cand *heap, const cand *c, int32_t n, int32_t k)
{
    memcpy(heap, c, (size_t)k * sizeof *heap);
    for (int32_t i = k / 2 - 1; i >= 0; i--)
        sift_down(heap, k, i);
    for (int32_t i = k; i < n; i++) {
        if (before(&c[i], &heap[0])) {
            heap[0] = c[i];
            sift_down(heap, k, 0);
        }
    }
    return heap[0].v;
}

/* Runs steps 1-7 of the header (all but the draw) on logits. Greedy
 * (temperature 0): *greedy is the id and *n_out 0. Otherwise *greedy is -1 and s->cand[0 .. *n_out)
 * holds the kept ids in the draw's order, w their probability. */
static clattn_status prepare(clattn_sampler *s, const char *fn, const float *logits,
                             int32_t *greedy, int32_t *n_out)
{
    if (!s)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: NULL sampler", fn);
    if (!logits)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: logits is NULL", fn);
    const clattn_sampler_params *p = &s->p;
    cand *c = s->cand;

    /* Steps 1-2: the penalties, and the largest logit (the lowest id of it). */
    int32_t n = 0, arg = -1;
    double lmax = -INFINITY;
    for (int32_t i = 0; i < s->vocab; i++) {
        float x = logits[i];
        if (isnan(x))
            return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: logits[%d] is NaN", fn, (int)i);
        if (x == INFINITY)
            return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: logits[%d] is +inf", fn, (int)i);
        if (x == -INFINITY)
            continue; /* never picked; every penalty keeps it -inf */
        double l = x;
        int64_t cnt = s->penalties ? s->count[i] : 0;
        if (cnt > 0) {
            l = l < 0.0 ? l * p->repeat_penalty : l / p->repeat_penalty;
            l = l - (double)cnt * p->frequency_penalty - p->presence_penalty;
            if (l == INFINITY)
                return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                                    "%s: the penalties make logits[%d] = %g overflow to +inf", fn,
                                    (int)i, (double)x);
            if (l == -INFINITY)
                continue;
        }
        c[n].v = l;
        c[n].id = i;
        n++;
        if (l > lmax) {
            lmax = l;
            arg = i;
        }
    }
    if (n == 0)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "%s: every logit is -inf (after the penalties), nothing can be picked",
                            fn);

    /* Step 3: greedy, or the temperature. */
    *greedy = -1;
    *n_out = 0;
    if (p->temperature == 0.0) {
        *greedy = arg;
        return CLATTN_OK;
    }
    int32_t m = 0;
    for (int32_t j = 0; j < n; j++) {
        double v = (c[j].v - lmax) / p->temperature;
        if (v == -INFINITY)
            continue; /* a weight of exactly 0 either way (exp underflows long before) */
        c[m].v = v;
        c[m].id = c[j].id;
        m++;
    }
    n = m; /* the argmax (v = 0) is always among them */

    /* Step 4: top-k keeps every id whose v is >= the k-th largest (ties
     * with it included, as TopKLogitsWarper's "scores < kth" removal). */
    if (p->top_k > 0 && p->top_k < n) {
        double t = kth_largest(s->heap, c, n, p->top_k);
        m = 0;
        for (int32_t j = 0; j < n; j++)
            if (c[j].v >= t)
                c[m++] = c[j];
        n = m;
    }
    qsort(c, (size_t)n, sizeof *c, cmp_cand);
    for (int32_t j = 0; j < n; j++)
        c[j].w = exp(c[j].v); /* c[0].w = 1 */
    order_equal_weights(c, n);

    /* Step 5: top-p keeps c[j] while the probability of c[0 .. j) is <
     * top_p: the shortest prefix reaching top_p. */
    if (p->top_p < 1.0) {
        double z = 0.0;
        for (int32_t j = 0; j < n; j++)
            z += c[j].w;
        double mass = 0.0; /* of c[0 .. j) */
        int32_t j = 0;
        while (j < n && mass / z < p->top_p)
            mass += c[j++].w;
        n = j; /* >= 1: c[0] always stays (min_tokens_to_keep = 1) */
    }

    /* Step 6: min-p removes the ids of probability < min_p * the largest;
     * the probabilities' common normaliser cancels, leaving w < min_p * w0. */
    if (p->min_p > 0.0) {
        double cut = p->min_p * c[0].w;
        int32_t j = 1;
        while (j < n && !(c[j].w < cut))
            j++;
        n = j;
    }

    /* Step 7: softmax over what is left. */
    double z = 0.0;
    for (int32_t j = 0; j < n; j++)
        z += c[j].w;
    for (int32_t j = 0; j < n; j++)
        c[j].w /= z;
    *n_out = n;
    return CLATTN_OK;
}

clattn_status clattn_sampler_sample(clattn_sampler *s, const float *logits, int32_t *id)
{
    clattn__clear_thread_error();
    const char *fn = "clattn_sampler_sample";
    if (!id)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: id is NULL", fn);
    int32_t greedy, n;
    clattn_status st = prepare(s, fn, logits, &greedy, &n);
    if (st != CLATTN_OK)
        return st;
    if (greedy >= 0) {
        *id = greedy; /* the RNG is not advanced */
        return CLATTN_OK;
    }
    const cand *c = s->cand;
    double total = 0.0;
    for (int32_t j = 0; j < n; j++)
        total += c[j].w;
    double target = clattn__rng_double(s->rng) * total;
    /* The last id of nonzero probability, should rounding leave the final
     * cumulative sum <= target. */
    int32_t pick = 0;
    double cum = 0.0;
    for (int32_t j = 0; j < n; j++) {
        if (c[j].w > 0.0)
            pick = j;
        cum += c[j].w;
        if (cum > target) {
            pick = j;
            break;
        }
    }
    *id = c[pick].id;
    return CLATTN_OK;
}

clattn_status clattn_sampler_probs(clattn_sampler *s, const float *logits, double *probs)
{
    clattn__clear_thread_error();
    const char *fn = "clattn_sampler_probs";
    if (!probs)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: probs is NULL", fn);
    int32_t greedy, n;
    clattn_status st = prepare(s, fn, logits, &greedy, &n);
    if (st != CLATTN_OK)
        return st;
    memset(probs, 0, (size_t)s->vocab * sizeof *probs);
    if (greedy >= 0) {
        probs[greedy] = 1.0;
        return CLATTN_OK;
    }
    for (int32_t j = 0; j < n; j++)
        probs[s->cand[j].id] = s->cand[j].w;
    return CLATTN_OK;
}
