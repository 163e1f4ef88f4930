/* test_sampling.c - the host sampler (clattn_sampler_*, src/lm/sampling.c)
 * against:
 *   - its parameter and input checks (every field, NaN, +inf, all -inf);
 *   - a brute-force reference written here from the header's definitions
 *     (quadratic loops: a count of the window per id, top-k by counting
 *     the ids of larger logit, top-p by the mass of the ids before each
 *     one), on every vocabulary size 1..12 with random logits full of ties
 *     and -inf, over random combinations of every parameter, to 1e-12;
 *   - the empirical distribution of 200000 draws on V = 6 (5 sigma);
 *   - greedy (temperature 0) = the lowest id of the largest logit;
 *   - transformers' own logits processors and a numpy reimplementation of
 *     the documented RNG and draw (tests/fixtures/sampling/sampling.json,
 *     made by tests/fixtures/make_sampling_fixtures.py).
 * No device is needed.
 *
 * usage: test_sampling FIXTURE_DIR */
#include "../support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

/* A local RNG for the test's own choices (independent of the sampler's). */
static uint64_t trng = 88172645463325252ull;
static uint64_t tnext(void)
{
    trng ^= trng << 13;
    trng ^= trng >> 7;
    trng ^= trng << 17;
    return trng;
}
static int irand(int n) { return (int)(tnext() % (uint64_t)n); }
static double drand(void) { return (double)(tnext() >> 11) * 0x1.0p-53; }

/* ======================================================================== */
/* Parameter and input checks                                                */
/* ======================================================================== */

static void expect_bad(clattn_sampler_params p, const char *field)
{
    clattn_sampler *s = (clattn_sampler *)1;
    CHECK_STATUS(clattn_sampler_create(&p, 10, &s), CLATTN_ERR_INVALID_ARG);
    CHECK(s == NULL, "%s: *out not cleared on error", field);
    CHECK_MSG(field);
}

static void test_params(void)
{
    clattn_sampler_params d = clattn_sampler_params_default();
    CHECK(d.temperature == 1.0 && d.top_k == 0 && d.top_p == 1.0 && d.min_p == 0.0 &&
              d.repeat_penalty == 1.0 && d.repeat_last_n == 64 && d.presence_penalty == 0.0 &&
              d.frequency_penalty == 0.0 && d.seed == 0,
          "defaults differ from the header");

    clattn_sampler_params p;
    p = d;
    p.temperature = -0.1;
    expect_bad(p, "temperature");
    p = d;
    p.temperature = INFINITY;
    expect_bad(p, "temperature");
    p = d;
    p.temperature = NAN;
    expect_bad(p, "temperature");
    p = d;
    p.top_k = -1;
    expect_bad(p, "top_k");
    p = d;
    p.top_p = 0.0;
    expect_bad(p, "top_p");
    p = d;
    p.top_p = 1.0000001;
    expect_bad(p, "top_p");
    p = d;
    p.top_p = NAN;
    expect_bad(p, "top_p");
    p = d;
    p.min_p = -1e-9;
    expect_bad(p, "min_p");
    p = d;
    p.min_p = 1.5;
    expect_bad(p, "min_p");
    p = d;
    p.min_p = NAN;
    expect_bad(p, "min_p");
    p = d;
    p.repeat_penalty = 0.0;
    expect_bad(p, "repeat_penalty");
    p = d;
    p.repeat_penalty = -1.0;
    expect_bad(p, "repeat_penalty");
    p = d;
    p.repeat_penalty = INFINITY;
    expect_bad(p, "repeat_penalty");
    p = d;
    p.repeat_penalty = NAN;
    expect_bad(p, "repeat_penalty");
    p = d;
    p.repeat_last_n = -2;
    expect_bad(p, "repeat_last_n");
    p = d;
    p.presence_penalty = INFINITY;
    expect_bad(p, "presence_penalty");
    p = d;
    p.presence_penalty = NAN;
    expect_bad(p, "presence_penalty");
    p = d;
    p.frequency_penalty = -INFINITY;
    expect_bad(p, "frequency_penalty");
    p = d;
    p.frequency_penalty = NAN;
    expect_bad(p, "frequency_penalty");

    clattn_sampler *s = NULL;
    CHECK_STATUS(clattn_sampler_create(&d, 0, &s), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("vocab");
    CHECK_STATUS(clattn_sampler_create(&d, 4, NULL), CLATTN_ERR_INVALID_ARG);
    /* The edges that are allowed. */
    p = d;
    p.temperature = 0.0;
    p.top_p = 1.0;
    p.min_p = 1.0;
    p.repeat_last_n = -1;
    p.repeat_penalty = 1e-3;
    p.top_k = 1000000;
    CHECK_OK(clattn_sampler_create(&p, 4, &s));
    clattn_sampler_destroy(s);
    s = NULL;
    CHECK_OK(clattn_sampler_create(NULL, 4, &s)); /* NULL: the defaults */

    CHECK_STATUS(clattn_sampler_accept(s, -1), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("-1");
    CHECK_STATUS(clattn_sampler_accept(s, 4), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("4");
    CHECK_STATUS(clattn_sampler_accept(NULL, 0), CLATTN_ERR_INVALID_ARG);
    CHECK_OK(clattn_sampler_accept(s, 3));

    float l[4] = {0.5f, NAN, 1.0f, 2.0f};
    double probs[4];
    int32_t id = -7;
    CHECK_STATUS(clattn_sampler_sample(s, l, &id), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("logits[1] is NaN");
    CHECK(id == -7, "id written on error");
    CHECK_STATUS(clattn_sampler_probs(s, l, probs), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("logits[1] is NaN");
    l[1] = INFINITY;
    CHECK_STATUS(clattn_sampler_sample(s, l, &id), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("logits[1] is +inf");
    for (int i = 0; i < 4; i++)
        l[i] = -INFINITY;
    CHECK_STATUS(clattn_sampler_sample(s, l, &id), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("-inf");
    CHECK_STATUS(clattn_sampler_probs(s, l, probs), CLATTN_ERR_INVALID_ARG);
    l[2] = -1e30f; /* one finite logit: always that id */
    CHECK_OK(clattn_sampler_sample(s, l, &id));
    CHECK(id == 2, "the only finite logit not picked (%d)", (int)id);
    CHECK_STATUS(clattn_sampler_sample(s, NULL, &id), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sampler_sample(s, l, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sampler_probs(s, l, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sampler_sample(NULL, l, &id), CLATTN_ERR_INVALID_ARG);
    clattn_sampler_destroy(s);
    clattn_sampler_destroy(NULL);
    clattn_sampler_reset(NULL, 1);

    /* Penalties that overflow a finite logit to +inf are an error. */
    p = d;
    p.frequency_penalty = -1e308;
    CHECK_OK(clattn_sampler_create(&p, 4, &s));
    float l2[4] = {0.0f, 1.0f, 2.0f, 3.0f};
    CHECK_OK(clattn_sampler_sample(s, l2, &id));
    CHECK_OK(clattn_sampler_accept(s, 1));
    CHECK_OK(clattn_sampler_accept(s, 1));
    CHECK_STATUS(clattn_sampler_sample(s, l2, &id), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("logits[1]");
    clattn_sampler_destroy(s);
}

/* ======================================================================== */
/* The brute-force reference                                                 */
/* ======================================================================== */

/* The header's definition, written as directly as possible: probs[0 .. V). */
static void reference(const clattn_sampler_params *p, int V, const float *logits,
                      const int32_t *hist, int n_hist, double *probs)
{
    double l[16], z[16], q[16];
    bool keep[16];
    int from = 0;
    if (p->repeat_last_n == 0)
        from = n_hist;
    else if (p->repeat_last_n > 0 && n_hist > p->repeat_last_n)
        from = n_hist - p->repeat_last_n;
    for (int i = 0; i < V; i++) {
        int c = 0;
        for (int h = from; h < n_hist; h++)
            c += hist[h] == i;
        l[i] = logits[i];
        if (c > 0 && isfinite(l[i])) {
            l[i] = l[i] < 0 ? l[i] * p->repeat_penalty : l[i] / p->repeat_penalty;
            l[i] = l[i] - c * p->frequency_penalty - p->presence_penalty;
        }
    }
    for (int i = 0; i < V; i++)
        probs[i] = 0.0;
    if (p->temperature == 0.0) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best])
                best = i;
        probs[best] = 1.0;
        return;
    }
    for (int i = 0; i < V; i++)
        z[i] = l[i] / p->temperature;
    /* top-k: the ids with fewer than k ids of larger logit. */
    for (int i = 0; i < V; i++) {
        int larger = 0;
        for (int j = 0; j < V; j++)
            larger += z[j] > z[i];
        keep[i] = z[i] > -INFINITY && (p->top_k == 0 || larger < p->top_k);
    }
    /* softmax over the kept */
#define SOFTMAX()                                                                                  \
    do {                                                                                           \
        double zmax = -INFINITY, sum = 0.0;                                                        \
        for (int i = 0; i < V; i++)                                                                \
            if (keep[i] && z[i] > zmax)                                                            \
                zmax = z[i];                                                                       \
        for (int i = 0; i < V; i++)                                                                \
            sum += keep[i] ? exp(z[i] - zmax) : 0.0;                                               \
        for (int i = 0; i < V; i++)                                                                \
            q[i] = keep[i] ? exp(z[i] - zmax) / sum : 0.0;                                         \
    } while (0)
    SOFTMAX();
    /* top-p: an id stays when the ids before it (more probable, or as
     * probable and of lower id) hold less than top_p. */
    if (p->top_p < 1.0) {
        bool k2[16];
        for (int i = 0; i < V; i++) {
            double mass = 0.0;
            for (int j = 0; j < V; j++)
                if (keep[j] && (q[j] > q[i] || (q[j] == q[i] && j < i)))
                    mass += q[j];
            k2[i] = keep[i] && mass < p->top_p;
        }
        for (int i = 0; i < V; i++)
            keep[i] = k2[i];
        SOFTMAX();
    }
    /* min-p */
    if (p->min_p > 0.0) {
        double qmax = 0.0;
        for (int i = 0; i < V; i++)
            qmax = q[i] > qmax ? q[i] : qmax;
        for (int i = 0; i < V; i++)
            keep[i] = keep[i] && q[i] >= p->min_p * qmax;
        SOFTMAX();
    }
#undef SOFTMAX
    for (int i = 0; i < V; i++)
        probs[i] = q[i];
}

static const double TEMPS[] = {0.0, 0.05, 0.3, 0.7, 1.0, 1.0, 1.6, 4.0};
static const double TOP_PS[] = {1.0, 1.0, 1.0, 1.0, 0.3, 0.55, 0.72, 0.9, 0.97, 0.05};
static const double MIN_PS[] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.15, 0.4, 0.8, 1.0};
static const double REP_PS[] = {1.0, 1.0, 1.3, 2.5, 0.7};
static const double PENS[] = {0.0, 0.0, 0.5, -0.3, 1.7};
/* logit values: a small set (ties are frequent) plus random ones */
static const float VALUES[] = {-3.0f, -1.0f, -0.5f, 0.0f, 0.25f, 1.0f, 2.0f, 2.0f};

static void test_bruteforce(void)
{
    const int TRIALS_PER_V = 4000;
    int cases = 0;
    long kept_total = 0, cut_cases = 0;
    double max_err = 0.0;
    for (int V = 1; V <= 12; V++) {
        for (int t = 0; t < TRIALS_PER_V; t++) {
            clattn_sampler_params p = clattn_sampler_params_default();
            p.temperature = TEMPS[irand(8)];
            int kc = irand(8);
            p.top_k = kc < 4 ? 0 : kc == 4 ? 1 : kc == 5 ? 1 + irand(V) : kc == 6 ? V : V + 5;
            p.top_p = irand(8) == 0 ? 0.01 + 0.98 * drand() : TOP_PS[irand(10)];
            p.min_p = irand(8) == 0 ? drand() : MIN_PS[irand(10)];
            p.repeat_penalty = REP_PS[irand(5)];
            p.presence_penalty = PENS[irand(5)];
            p.frequency_penalty = PENS[irand(5)];
            int wc = irand(6);
            p.repeat_last_n = wc == 0   ? -1
                              : wc == 1 ? 0
                              : wc == 2 ? 1
                              : wc == 3 ? 3
                              : wc == 4 ? 7
                                        : 100;
            p.seed = tnext();
            float logits[16];
            bool any = false;
            for (int i = 0; i < V; i++) {
                int c = irand(10);
                logits[i] = c < 6   ? VALUES[irand(8)]
                            : c < 9 ? (float)(6.0 * drand() - 3.0)
                                    : -INFINITY;
                any = any || logits[i] > -INFINITY;
            }
            if (!any)
                logits[irand(V)] = (float)(drand() - 0.5);
            /* Mostly short histories; some long ones make the ring grow
             * past its first 64 slots and wrap many times. */
            int32_t hist[600];
            int n_hist = irand(8) == 0 ? irand(600) : irand(20);
            for (int h = 0; h < n_hist; h++)
                hist[h] = irand(V);

            clattn_sampler *s = NULL;
            CHECK_OK(clattn_sampler_create(&p, V, &s));
            if (!s)
                continue;
            for (int h = 0; h < n_hist; h++)
                CHECK_OK(clattn_sampler_accept(s, hist[h]));
            double got[16], ref[16];
            CHECK_OK(clattn_sampler_probs(s, logits, got));
            reference(&p, V, logits, hist, n_hist, ref);
            int nk = 0;
            bool bad = false;
            for (int i = 0; i < V; i++) {
                double e = fabs(got[i] - ref[i]);
                max_err = e > max_err ? e : max_err;
                /* 1e-12: both compute in double from the same inputs; the
                 * only differences are rounding (shifted vs unshifted
                 * logits, summation order), ~1e-16. A wrong kept set
                 * moves a probability by far more. */
                if (!(e <= 1e-12) || ((got[i] == 0.0) != (ref[i] == 0.0)))
                    bad = true;
                nk += ref[i] > 0.0;
            }
            kept_total += nk;
            int finite = 0;
            for (int i = 0; i < V; i++)
                finite += logits[i] > -INFINITY;
            cut_cases += nk < finite;
            CHECK(!bad,
                  "V=%d trial %d (T=%g k=%d p=%g minp=%g rep=%g pres=%g freq=%g last_n=%d "
                  "hist=%d): probs differ from the reference",
                  V, t, p.temperature, (int)p.top_k, p.top_p, p.min_p, p.repeat_penalty,
                  p.presence_penalty, p.frequency_penalty, (int)p.repeat_last_n, n_hist);
            if (bad) {
                for (int i = 0; i < V; i++)
                    fprintf(stderr, "  id %d logit %g: got %.17g ref %.17g\n", i, (double)logits[i],
                            got[i], ref[i]);
            }
            /* A draw never picks a removed id. */
            int32_t id = -1;
            CHECK_OK(clattn_sampler_sample(s, logits, &id));
            CHECK(id >= 0 && id < V && ref[id] > 0.0, "V=%d trial %d: drew id %d of prob 0", V, t,
                  (int)id);
            clattn_sampler_destroy(s);
            cases++;
        }
    }
    printf("brute force: %d cases (V = 1..12), %ld with ids cut, mean kept %.2f, "
           "max |probs - reference| = %.3g\n",
           cases, cut_cases, (double)kept_total / cases, max_err);
}

/* ======================================================================== */
/* Greedy, reset, the empirical distribution                                 */
/* ======================================================================== */

static void test_greedy(void)
{
    int n = 0;
    for (int t = 0; t < 2000; t++) {
        int V = 1 + irand(40);
        float l[40];
        for (int i = 0; i < V; i++)
            l[i] = irand(5) == 0 ? -INFINITY : VALUES[irand(8)];
        l[irand(V)] = 2.0f; /* the largest value of VALUES: ties are common */
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best])
                best = i;
        clattn_sampler_params p = clattn_sampler_params_default();
        p.temperature = 0.0;
        p.top_k = irand(3);
        p.top_p = irand(2) ? 1.0 : 0.5;
        p.seed = tnext();
        clattn_sampler *s = NULL;
        CHECK_OK(clattn_sampler_create(&p, V, &s));
        int32_t id = -1;
        double probs[40];
        CHECK_OK(clattn_sampler_sample(s, l, &id));
        CHECK(id == best, "greedy V=%d: %d, expected %d (the lowest id of the max)", V, (int)id,
              best);
        CHECK_OK(clattn_sampler_probs(s, l, probs));
        for (int i = 0; i < V; i++)
            CHECK(probs[i] == (i == best ? 1.0 : 0.0), "greedy probs not one-hot at %d", i);
        clattn_sampler_destroy(s);
        n++;
    }
    printf("greedy: %d rows\n", n);
}

/* Cuts that land exactly on their threshold (binary fractions, so no
 * rounding): transformers' TopPLogitsWarper removes the ids whose
 * ascending cumulative probability is <= 1 - top_p, i.e. keeps an id while
 * the mass before it is strictly < top_p; TopKLogitsWarper keeps every id
 * tied with the k-th; MinPLogitsWarper removes probability < min_p * max. */
static void expect_probs(const char *what, clattn_sampler_params p, int V, const float *l,
                         const double *want)
{
    clattn_sampler *s = NULL;
    double got[8];
    CHECK_OK(clattn_sampler_create(&p, V, &s));
    CHECK_OK(clattn_sampler_probs(s, l, got));
    for (int i = 0; i < V; i++)
        CHECK(fabs(got[i] - want[i]) <= 1e-15, "%s: probs[%d] = %.17g, expected %.17g", what, i,
              got[i], want[i]);
    clattn_sampler_destroy(s);
}

static void test_exact_cuts(void)
{
    clattn_sampler_params d = clattn_sampler_params_default(), p;
    const float eq4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    p = d;
    p.top_p = 0.5;
    expect_probs("4 ties, top_p 0.5", p, 4, eq4, (const double[]){0.5, 0.5, 0, 0});
    p = d;
    p.top_p = 0.25;
    expect_probs("4 ties, top_p 0.25", p, 4, eq4, (const double[]){1, 0, 0, 0});
    p = d;
    p.top_p = 0.2500001;
    expect_probs("4 ties, top_p 0.2500001", p, 4, eq4, (const double[]){0.5, 0.5, 0, 0});
    p = d;
    p.top_p = 0.75;
    expect_probs("4 ties, top_p 0.75", p, 4, eq4, (const double[]){1.0 / 3, 1.0 / 3, 1.0 / 3, 0});
    /* ln 3: probabilities 3/4, 1/4 up to exp's rounding */
    const float two[2] = {1.0986123f, 0.0f};
    p = d;
    p.top_p = 0.7;
    expect_probs("top_p 0.7 < 3/4", p, 2, two, (const double[]){1, 0});
    const float k4[4] = {1.0f, 3.0f, 3.0f, 3.0f};
    p = d;
    p.top_k = 2;
    expect_probs("top_k 2 of 3 ties", p, 4, k4, (const double[]){0, 1.0 / 3, 1.0 / 3, 1.0 / 3});
    p = d;
    p.top_k = 1;
    expect_probs("top_k 1 of 3 ties", p, 4, k4, (const double[]){0, 1.0 / 3, 1.0 / 3, 1.0 / 3});
    p = d;
    p.top_k = 9;
    double e1 = exp(-2.0), z = 3.0 + e1;
    expect_probs("top_k 9 > vocab 4", p, 4, k4, (const double[]){e1 / z, 1 / z, 1 / z, 1 / z});
    /* min_p = exactly the ratio exp(-ln 2) = 1/2: kept (not < min_p * max) */
    const float m3[3] = {0.0f, -0.6931472f, -0.6931472f};
    double r = exp((double)-0.6931472f);
    p = d;
    p.min_p = r;
    expect_probs("min_p on the ratio", p, 3, m3,
                 (const double[]){1 / (1 + 2 * r), r / (1 + 2 * r), r / (1 + 2 * r)});
    p = d;
    p.min_p = nextafter(r, 1.0);
    expect_probs("min_p just above the ratio", p, 3, m3, (const double[]){1, 0, 0});
}

static void test_reset(void)
{
    /* reset(seed) = a fresh sampler made with that seed: same draws, and
     * the penalties forgotten. */
    clattn_sampler_params p = clattn_sampler_params_default();
    p.repeat_penalty = 3.0;
    p.repeat_last_n = 5;
    p.seed = 99;
    float l[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    for (int mode = 0; mode < 2; mode++) {
        p.repeat_last_n = mode ? -1 : 5;
        clattn_sampler *a = NULL, *b = NULL;
        CHECK_OK(clattn_sampler_create(&p, 8, &a));
        clattn_sampler_params q = p;
        q.seed = 1234;
        CHECK_OK(clattn_sampler_create(&q, 8, &b));
        for (int i = 0; i < 50; i++) {
            int32_t id;
            CHECK_OK(clattn_sampler_sample(a, l, &id));
            CHECK_OK(clattn_sampler_accept(a, id));
        }
        clattn_sampler_reset(a, 1234);
        int same = 0;
        for (int i = 0; i < 200; i++) {
            int32_t ia, ib;
            CHECK_OK(clattn_sampler_sample(a, l, &ia));
            CHECK_OK(clattn_sampler_sample(b, l, &ib));
            same += ia == ib;
            CHECK_OK(clattn_sampler_accept(a, ia));
            CHECK_OK(clattn_sampler_accept(b, ib));
        }
        CHECK(same == 200, "after reset: %d of 200 draws as a fresh sampler's", same);
        clattn_sampler_destroy(a);
        clattn_sampler_destroy(b);
    }
}

static void empirical(const char *what, clattn_sampler_params p, const float *l)
{
    enum {
        V = 6,
        N = 200000
    };
    clattn_sampler *s = NULL;
    CHECK_OK(clattn_sampler_create(&p, V, &s));
    if (!s)
        return;
    double probs[V];
    CHECK_OK(clattn_sampler_probs(s, l, probs));
    long count[V] = {0};
    for (int n = 0; n < N; n++) {
        int32_t id = -1;
        CHECK_OK(clattn_sampler_sample(s, l, &id));
        if (id >= 0 && id < V)
            count[id]++;
    }
    double worst = 0.0, chi2 = 0.0;
    int df = -1;
    for (int i = 0; i < V; i++) {
        double e = N * probs[i];
        if (probs[i] == 0.0) {
            CHECK(count[i] == 0, "%s: id %d of probability 0 drawn %ld times", what, i, count[i]);
            continue;
        }
        double sigma = sqrt(N * probs[i] * (1.0 - probs[i]));
        double dev = sigma > 0 ? fabs(count[i] - e) / sigma : 0.0;
        worst = dev > worst ? dev : worst;
        chi2 += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    /* 5 sigma per id: a false failure about once in 10^6 runs; a wrong
     * cumulative or off-by-one in the draw moves a count by far more. */
    CHECK(worst < 5.0, "%s: a count is %.2f sigma off", what, worst);
    printf("empirical %s: %d draws, max deviation %.2f sigma, chi2 %.2f (df %d)\n", what, N, worst,
           chi2, df);
    clattn_sampler_destroy(s);
}

static void test_empirical(void)
{
    float l[6] = {1.0f, 0.2f, 1.0f, -0.7f, -INFINITY, 2.1f};
    clattn_sampler_params p = clattn_sampler_params_default();
    p.seed = 42;
    empirical("plain", p, l);
    p.temperature = 0.8;
    p.top_k = 4;
    p.top_p = 0.97;
    p.seed = 0xFFFFFFFFFFFFFFFFull;
    empirical("T=0.8 top_k=4 top_p=0.97 (a tie kept)", p, l);
}

/* ======================================================================== */
/* transformers' fixture                                                     */
/* ======================================================================== */

static clattn_sampler_params json_params(json_t *o)
{
    clattn_sampler_params p = clattn_sampler_params_default();
    p.temperature = json_number_value(json_object_get(o, "temperature"));
    p.top_k = (int32_t)json_integer_value(json_object_get(o, "top_k"));
    p.top_p = json_number_value(json_object_get(o, "top_p"));
    p.min_p = json_number_value(json_object_get(o, "min_p"));
    p.repeat_penalty = json_number_value(json_object_get(o, "repeat_penalty"));
    p.repeat_last_n = (int32_t)json_integer_value(json_object_get(o, "repeat_last_n"));
    p.presence_penalty = json_number_value(json_object_get(o, "presence_penalty"));
    p.frequency_penalty = json_number_value(json_object_get(o, "frequency_penalty"));
    const char *seed = json_string_value(json_object_get(o, "seed"));
    p.seed = seed ? strtoull(seed, NULL, 10) : 0;
    return p;
}

static float *json_row(json_t *rows, int r, int *V)
{
    json_t *row = json_array_get(rows, (size_t)r);
    json_t *lg = json_object_get(row, "logits");
    *V = (int)json_array_size(lg);
    float *l = test_fvec((size_t)*V);
    for (int i = 0; i < *V; i++) {
        json_t *x = json_array_get(lg, (size_t)i);
        l[i] = json_is_null(x) ? -INFINITY : (float)json_number_value(x);
    }
    return l;
}

static void test_fixture(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/sampling.json", dir);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    CHECK(doc != NULL, "%s: %s (line %d)", path, jerr.text, jerr.line);
    if (!doc)
        return;
    json_t *rows = json_object_get(doc, "rows");
    json_t *cases = json_object_get(doc, "cases");
    json_t *seqs = json_object_get(doc, "sequences");
    double err32 = 0.0, err64 = 0.0;
    size_t n_cases = json_array_size(cases);
    CHECK(n_cases >= 40, "fixture: %zu cases", n_cases);
    for (size_t c = 0; c < n_cases; c++) {
        json_t *cs = json_array_get(cases, c);
        int V;
        float *l = json_row(rows, (int)json_integer_value(json_object_get(cs, "row")), &V);
        clattn_sampler_params p = json_params(json_object_get(cs, "params"));
        clattn_sampler *s = NULL;
        CHECK_OK(clattn_sampler_create(&p, V, &s));
        json_t *hist = json_object_get(cs, "history");
        for (size_t h = 0; h < json_array_size(hist); h++)
            CHECK_OK(
                clattn_sampler_accept(s, (int32_t)json_integer_value(json_array_get(hist, h))));
        double *got = test_dvec((size_t)V);
        double *want32 = test_dvec((size_t)V), *want64 = test_dvec((size_t)V);
        CHECK_OK(clattn_sampler_probs(s, l, got));
        json_t *kept = json_object_get(cs, "kept");
        json_t *p32 = json_object_get(cs, "probs_f32"), *p64 = json_object_get(cs, "probs_f64");
        for (size_t j = 0; j < json_array_size(kept); j++) {
            int id = (int)json_integer_value(json_array_get(kept, j));
            want32[id] = json_number_value(json_array_get(p32, j));
            want64[id] = json_number_value(json_array_get(p64, j));
        }
        int wrong_set = 0;
        double e32 = 0.0, e64 = 0.0;
        for (int i = 0; i < V; i++) {
            bool in = false;
            for (size_t j = 0; j < json_array_size(kept); j++)
                in = in || json_integer_value(json_array_get(kept, j)) == i;
            wrong_set += in != (got[i] > 0.0);
            e32 = fmax(e32, fabs(got[i] - want32[i]));
            e64 = fmax(e64, fabs(got[i] - want64[i]));
        }
        CHECK(wrong_set == 0, "fixture case %zu: %d ids kept differently from transformers", c,
              wrong_set);
        /* 1e-6 against transformers in float32 (as generate runs on float32
         * logits: softmax and cumulative sums round at ~6e-8 relative);
         * 1e-12 against the same classes on float64 tensors. */
        CHECK(e32 <= 1e-6, "fixture case %zu: probs differ from transformers (float32) by %.3g", c,
              e32);
        CHECK(e64 <= 1e-12, "fixture case %zu: probs differ from transformers (float64) by %.3g", c,
              e64);
        err32 = fmax(err32, e32);
        err64 = fmax(err64, e64);
        free(got);
        free(want32);
        free(want64);
        free(l);
        clattn_sampler_destroy(s);
    }
    printf("transformers: %zu cases, max |probs - HF float32| = %.3g, - HF float64| = %.3g\n",
           n_cases, err32, err64);

    size_t n_seq = json_array_size(seqs), draws = 0, matched = 0;
    CHECK(n_seq >= 4, "fixture: %zu sequences", n_seq);
    for (size_t q = 0; q < n_seq; q++) {
        json_t *sq = json_array_get(seqs, q);
        json_t *rr = json_object_get(sq, "rows");
        size_t n_rows = json_array_size(rr);
        float *lr[4] = {0};
        int V = 0;
        for (size_t r = 0; r < n_rows && r < 4; r++)
            lr[r] = json_row(rows, (int)json_integer_value(json_array_get(rr, r)), &V);
        clattn_sampler_params p = json_params(json_object_get(sq, "params"));
        clattn_sampler *s = NULL;
        CHECK_OK(clattn_sampler_create(&p, V, &s));
        json_t *prompt = json_object_get(sq, "prompt");
        for (size_t h = 0; h < json_array_size(prompt); h++)
            CHECK_OK(
                clattn_sampler_accept(s, (int32_t)json_integer_value(json_array_get(prompt, h))));
        json_t *ids = json_object_get(sq, "ids");
        size_t first_bad = (size_t)-1;
        for (size_t t = 0; t < json_array_size(ids); t++) {
            int32_t want = (int32_t)json_integer_value(json_array_get(ids, t)), got = -1;
            CHECK_OK(clattn_sampler_sample(s, lr[t % n_rows], &got));
            draws++;
            if (got == want)
                matched++;
            else if (first_bad == (size_t)-1)
                first_bad = t;
            CHECK_OK(clattn_sampler_accept(s, want)); /* stay on the fixture's path */
        }
        CHECK(first_bad == (size_t)-1, "fixture sequence %zu (seed %llu): first differing draw %zu",
              q, (unsigned long long)p.seed, first_bad);
        for (size_t r = 0; r < 4; r++)
            free(lr[r]);
        clattn_sampler_destroy(s);
    }
    printf("transformers + documented draw: %zu sequences, %zu of %zu ids equal\n", n_seq, matched,
           draws);
    json_decref(doc);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 1;
    }
    test_params();
    test_bruteforce();
    test_exact_cuts();
    test_greedy();
    test_reset();
    test_empirical();
    test_fixture(argv[1]);
    return test_summary("test_sampling");
}
