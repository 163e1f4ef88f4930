#include "testutil.h"

#include <math.h>
#include <stdlib.h>

int test_failures = 0;
int test_checks = 0;

static uint64_t rng_state = 0x853c49e6748fea9bull;

void test_seed(uint64_t seed) { rng_state = seed * 0x9e3779b97f4a7c15ull + 1; }

static uint64_t next_u64(void)
{
    /* splitmix64: independent of libc's rand, so fixtures are portable */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float test_uniform(float lo, float hi)
{
    double u = (double)(next_u64() >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}

void test_fill_uniform(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = test_uniform(lo, hi);
}

float *test_fvec(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }
double *test_dvec(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

clattn_ctx *test_ctx(void)
{
    clattn_ctx *ctx = NULL;
    clattn_status st = clattn_ctx_create(NULL, &ctx);
    if (st != CLATTN_OK) {
        fprintf(stderr, "FAIL: cannot create a context: %s: %s\n", clattn_status_str(st),
                clattn_last_error());
        exit(1);
    }
    clattn_device_info info;
    clattn_ctx_device_info(ctx, &info);
    fprintf(stderr, "device: %s / %s\n", info.platform_name, info.device_name);
    return ctx;
}

bool test_close(const char *what, const float *got, const double *ref, size_t n, double atol,
                double rtol)
{
    size_t worst = 0;
    double worst_excess = 0;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i];
        bool fin_g = isfinite(g), fin_r = isfinite(r);
        double excess;
        if (!fin_g || !fin_r) {
            /* -inf == -inf is a pass (e.g. lse of a fully masked row); any
             * other non-finite value, or a mismatch, fails. */
            bool same = !isnan(g) && !isnan(r) && g == r;
            excess = same ? 0 : INFINITY;
        } else {
            excess = fabs(g - r) - (atol + rtol * fabs(r));
        }
        if (excess > 0 && (ok || excess > worst_excess)) {
            ok = false;
            worst = i;
            worst_excess = excess;
        }
    }
    test_checks++;
    if (!ok) {
        test_failures++;
        fprintf(stderr, "FAIL %s: element %zu of %zu: got %.9g, reference %.9g (atol %g, rtol %g)\n",
                what, worst, n, (double)got[worst], ref[worst], atol, rtol);
    }
    return ok;
}

clattn_tensor *test_tensor(clattn_ctx *ctx, int32_t ndim, const int64_t *shape,
                           const float *data)
{
    clattn_tensor *t = NULL;
    clattn_status st = clattn_tensor_create(ctx, ndim, shape, &t);
    if (st == CLATTN_OK && data)
        st = clattn_tensor_write(t, data);
    if (st != CLATTN_OK) {
        fprintf(stderr, "FAIL: tensor setup: %s: %s\n", clattn_status_str(st),
                clattn_last_error());
        exit(1);
    }
    return t;
}

void test_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

char *test_read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (s = malloc((size_t)n + 1)) != NULL) {
        if (fread(s, 1, (size_t)n, f) != (size_t)n)
            n = 0;
        s[n] = '\0';
    }
    fclose(f);
    return s;
}

int test_summary(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}
