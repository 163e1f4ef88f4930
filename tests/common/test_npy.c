/* test_npy.c - the tools' .npy reader and writer (common/npy.c): files made
 * by NumPy (tests/fixtures/npy, from make_npy_fixtures.py) read exactly or
 * refused with the right message, crafted broken headers, and the float32
 * writer's round trip. No device needed.
 *
 * Usage: test_npy FIXTURE_DIR   (meson passes tests/fixtures/npy) */
#include "testutil.h"
#include "npy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *fixture_dir;

static const char *fixture(const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", fixture_dir, name);
    return buf;
}

static bool read_ok(const char *name, npy_array *a)
{
    char err[256] = "";
    bool ok = npy_read(fixture(name), a, err, sizeof err);
    CHECK(ok, "%s: %s", name, err);
    return ok;
}

static void expect_refused(const char *what, const char *path, const char *fact)
{
    char err[256] = "";
    npy_array a;
    bool ok = npy_read(path, &a, err, sizeof err);
    CHECK(!ok && strstr(err, fact) && strstr(err, path),
          "%s: should fail naming the file and \"%s\": %s", what, fact, err);
    CHECK(a.data == NULL, "%s: data left allocated", what);
}

/* Parses a crafted header (version 1.0) followed by data_len zero bytes. */
static void expect_bad_header(const char *what, const char *header, size_t data_len,
                              const char *fact)
{
    unsigned char buf[1024] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    size_t n = strlen(header);
    buf[8] = (unsigned char)n;
    buf[9] = (unsigned char)(n >> 8);
    memcpy(buf + 10, header, n);
    char err[256] = "";
    npy_array a;
    bool ok = npy_parse("crafted.npy", buf, 10 + n + data_len, &a, err, sizeof err);
    CHECK(!ok && strstr(err, fact), "%s: should fail with \"%s\": %s", what, fact, err);
}

static void test_numpy_files(void)
{
    npy_array a;
    if (read_ok("f4_2x3.npy", &a)) {
        const float want[6] = {0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f};
        CHECK(a.kind == NPY_FLOAT32 && a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3 &&
                  a.count == 6 && !strcmp(a.descr, "<f4"),
              "f4 header");
        CHECK(memcmp(a.data, want, sizeof want) == 0, "f4 values");
        npy_free(&a);
    }
    if (read_ok("f8_3.npy", &a)) {
        const float *f = a.data;
        CHECK(a.kind == NPY_FLOAT32 && a.count == 3 && f[0] == 0.1f && f[1] == -2.5f &&
                  isinf(f[2]) && f[2] > 0,
              "f8 values %g %g %g", (double)f[0], (double)f[1], (double)f[2]);
        npy_free(&a);
    }
    if (read_ok("i8_2x2.npy", &a)) {
        const int64_t *v = a.data;
        CHECK(a.kind == NPY_INT64 && a.count == 4 && v[0] == -1 && v[1] == 0 &&
                  v[2] == (int64_t)1 << 40 && v[3] == 7,
              "i8 values");
        npy_free(&a);
    }
    if (read_ok("i4_4.npy", &a)) {
        const int64_t *v = a.data;
        CHECK(a.kind == NPY_INT64 && a.count == 4 && v[0] == INT32_MIN && v[1] == -1 &&
                  v[2] == 0 && v[3] == INT32_MAX,
              "i4 values (sign extension)");
        npy_free(&a);
    }
    if (read_ok("b1_2x3.npy", &a)) {
        const uint8_t want[6] = {1, 0, 1, 0, 0, 1};
        CHECK(a.kind == NPY_BOOL && a.count == 6 && !memcmp(a.data, want, 6), "b1 values");
        npy_free(&a);
    }
    if (read_ok("f4_scalar.npy", &a)) {
        CHECK(a.ndim == 0 && a.count == 1 && ((float *)a.data)[0] == 42.0f, "scalar");
        npy_free(&a);
    }
    if (read_ok("f4_empty.npy", &a)) {
        CHECK(a.ndim == 2 && a.shape[0] == 0 && a.shape[1] == 3 && a.count == 0, "empty");
        npy_free(&a);
    }
    if (read_ok("f4_v2.npy", &a)) {
        CHECK(a.count == 2 && ((float *)a.data)[1] == 2.0f, "version 2.0");
        npy_free(&a);
    }
    if (read_ok("f4_v3.npy", &a)) {
        CHECK(a.count == 1 && ((float *)a.data)[0] == 3.0f, "version 3.0");
        npy_free(&a);
    }
    char path[1100];
    snprintf(path, sizeof path, "%s", fixture("fortran.npy"));
    expect_refused("fortran", path, "Fortran-order");
    snprintf(path, sizeof path, "%s", fixture("bigendian.npy"));
    expect_refused("big-endian", path, "big-endian dtype '>f4'");
    snprintf(path, sizeof path, "%s", fixture("object.npy"));
    expect_refused("object", path, "object arrays");
    snprintf(path, sizeof path, "%s", fixture("u2.npy"));
    expect_refused("uint16", path, "dtype '<u2' is not supported");
    expect_refused("missing file", "/nonexistent/x.npy", "cannot open");
}

static void test_crafted(void)
{
    const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
    npy_array a;
    char err[256];
    {
        unsigned char buf[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
        size_t n = strlen(good);
        buf[8] = (unsigned char)n;
        memcpy(buf + 10, good, n);
        CHECK(npy_parse("ok.npy", buf, 10 + n + 8, &a, err, sizeof err), "good header: %s", err);
        npy_free(&a);
        CHECK(!npy_parse("short.npy", buf, 9, &a, err, sizeof err) && strstr(err, "not a .npy"),
              "9 bytes: %s", err);
        buf[6] = 4;
        CHECK(!npy_parse("v4.npy", buf, 10 + n + 8, &a, err, sizeof err) &&
                  strstr(err, "version 4.0"),
              "version 4: %s", err);
        buf[6] = 1;
        buf[8] = 0xff;
        buf[9] = 0xff;
        CHECK(!npy_parse("len.npy", buf, 10 + n + 8, &a, err, sizeof err) &&
                  strstr(err, "runs past the end"),
              "header length past EOF: %s", err);
        CHECK(!npy_parse("magic.npy", "\x93NUMPZ\x01\x00\x00\x00", 10, &a, err, sizeof err) &&
                  strstr(err, "magic"),
              "bad magic: %s", err);
    }
    expect_bad_header("truncated data", good, 7, "truncated: the data holds 7 bytes");
    expect_bad_header("trailing data", good, 9, "1 trailing bytes");
    expect_bad_header("not a dict", "['descr']", 0, "not a Python dict");
    expect_bad_header("unterminated string", "{'descr", 0, "expected a quoted key");
    expect_bad_header("unterminated dict", "{'descr': '<f4', ", 0, "expected a quoted key");
    expect_bad_header("missing colon", "{'descr' '<f4'}", 0, "expected ':'");
    expect_bad_header("missing comma", "{'descr': '<f4' 'shape': (1,)}", 0, "missing ','");
    expect_bad_header("unknown key",
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8,
                      "unknown header key 'x'");
    expect_bad_header("duplicate key",
                      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                      8, "'descr' appears twice");
    expect_bad_header("missing key", "{'descr': '<f4', 'fortran_order': False}", 8,
                      "lacks 'shape'");
    expect_bad_header("shape not a tuple",
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", 8,
                      "'shape' is not a tuple");
    expect_bad_header("shape list", "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", 8,
                      "'shape' is not a tuple");
    expect_bad_header("negative extent",
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", 8,
                      "'shape' entry 0 is not a non-negative integer");
    expect_bad_header("huge extent",
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                      0, "'shape' entry 0");
    expect_bad_header("size overflow",
                      "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (4294967296, 4294967296)}",
                      0, "overflows");
    expect_bad_header("bad fortran flag",
                      "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8,
                      "'fortran_order' is not True or False");
    expect_bad_header("structured", "{'descr': [('a', '<f4')], 'fortran_order': False}", 0,
                      "structured dtypes");
    expect_bad_header("long descr", "{'descr': '<f4aaaaaaaaaaaaaaaa', 'shape': (2,)}", 0,
                      "'descr' is not a short dtype string");
    expect_bad_header("text after dict",
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8,
                      "unexpected text after");
    expect_bad_header("escape in string", "{'de\\scr': '<f4'}", 0, "expected a quoted key");
    /* A Python 2 file: long integers with an 'L' suffix are fine. */
    const char *py2 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }";
    unsigned char buf[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)strlen(py2), 0};
    memcpy(buf + 10, py2, strlen(py2));
    CHECK(npy_parse("py2.npy", buf, 10 + strlen(py2) + 8, &a, err, sizeof err), "py2: %s", err);
    npy_free(&a);
}

static void test_write(void)
{
    char path[] = "/tmp/clattn-npy-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    char err[256] = "";
    const int64_t shapes[4][3] = {{0}, {5}, {2, 3}, {1, 2, 2}};
    const float data[6] = {1.5f, -0.0f, INFINITY, 3e-39f, 7.0f, -8.25f};
    for (int32_t nd = 0; nd <= 3; nd++) {
        CHECK(npy_write_f32(path, nd, shapes[nd], data, err, sizeof err), "write: %s", err);
        npy_array a;
        CHECK(npy_read(path, &a, err, sizeof err), "read back: %s", err);
        size_t count = 1;
        for (int32_t i = 0; i < nd; i++)
            count *= (size_t)shapes[nd][i];
        CHECK(a.ndim == nd && a.count == count && a.kind == NPY_FLOAT32 &&
                  memcmp(a.data, data, count * 4) == 0,
              "round trip ndim %d", nd);
        /* NumPy aligns the data to 64 bytes. */
        FILE *f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        CHECK((ftell(f) - (long)count * 4) % 64 == 0, "data offset not 64-aligned");
        fclose(f);
        npy_free(&a);
    }
    unlink(path);
    CHECK(!npy_write_f32("/nonexistent/x.npy", 1, shapes[1], data, err, sizeof err) &&
              strstr(err, "/nonexistent/x.npy"),
          "unwritable: %s", err);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s tests/fixtures/npy\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    test_numpy_files();
    test_crafted();
    test_write();
    return test_summary("test_npy");
}
