/* testutil.h - tiny helpers shared by the test programs: a failure counter,
 * seeded random data, and comparisons that print both values and catch NaN
 * and Inf explicitly. Each test ends with test_summary(), whose exit code
 * meson reads. */
#ifndef CLATTN_TESTUTIL_H
#define CLATTN_TESTUTIL_H

#include <clattn.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern int test_failures;
extern int test_checks;

/* CHECK(cond, fmt, ...) counts a check and prints a FAIL line if it fails. */
#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        test_checks++;                                                    \
        if (!(cond)) {                                                    \
            test_failures++;                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
    } while (0)

/* Asserts a clattn call returned the expected status; prints the message. */
#define CHECK_STATUS(call, expected)                                               \
    do {                                                                           \
        clattn_status st_ = (call);                                                \
        CHECK(st_ == (expected), "%s returned %s, expected %s: %s", #call,        \
              clattn_status_str(st_), clattn_status_str(expected),                \
              clattn_last_error());                                                \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, CLATTN_OK)

/* Checks that clattn_last_error() contains the given text. */
#define CHECK_MSG(...)                                                                  \
    CHECK(strstr(clattn_last_error(), __VA_ARGS__), "message lacks \"%s\": %s", __VA_ARGS__, \
          clattn_last_error())

/* Creates a context on the default device ($CLATTN_DEVICE); a missing
 * device is a failure, never a skip (docs/ARCHITECTURE.md, "Numerics and
 * tests"). Exits the test on failure. */
clattn_ctx *test_ctx(void);

/* Deterministic uniform random numbers in [lo, hi). */
void test_seed(uint64_t seed);
float test_uniform(float lo, float hi);
void test_fill_uniform(float *x, size_t n, float lo, float hi);

/* A malloc'd float array of n elements (at least one), uninitialised, and
 * a zeroed double array; the tests do not check them for NULL. */
float *test_fvec(size_t n);
double *test_dvec(size_t n);

/* Compares got against the double reference: passes when every element is
 * finite (or both are the same non-finite value) and
 * |got - ref| <= atol + rtol * |ref|. Prints the worst element on failure.
 * Returns true on pass and counts one check. */
bool test_close(const char *what, const float *got, const double *ref, size_t n, double atol,
                double rtol);

/* Makes a tensor of the given shape holding data (or uninitialised if data
 * is NULL); exits the test on failure. */
clattn_tensor *test_tensor(clattn_ctx *ctx, int32_t ndim, const int64_t *shape,
                           const float *data);

/* Writes text to path; a test that cannot write its own setup files stops
 * there (exit 1), rather than failing later on a misleading check. */
void test_write_text(const char *path, const char *text);

/* The whole file as a NUL-terminated malloc'd string, or NULL. */
char *test_read_text(const char *path);

/* Prints "N checks, N failed" and returns the exit code. */
int test_summary(const char *name);

#endif
