/* test_safetensors.c - safetensors files: hand-made valid files with every
 * convertible dtype (exact F16/BF16 decoding: subnormals, infinities, NaN,
 * signed zero), scalars, empty and 6-d tensors, metadata; a file written by
 * the reference implementation (tests/fixtures, made by
 * make_safetensors_fixture.py); the writer's round trip; and crafted bad
 * files, each refused with the right status and a message naming the fact.
 *
 * Usage: test_safetensors FIXTURE   (meson passes tests/fixtures/python.safetensors) */
#define _GNU_SOURCE /* mkdtemp */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[sizeof dir + 256 + 2];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

/* Writes len_field as the 8-byte length, then header, then data. */
static void write_file(const char *path, uint64_t len_field, const char *header,
                       const void *data, size_t data_len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    unsigned char prefix[8];
    for (int b = 0; b < 8; b++)
        prefix[b] = (unsigned char)(len_field >> (8 * b));
    fwrite(prefix, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (data_len)
        fwrite(data, 1, data_len, f);
    fclose(f);
}

/* A file whose length field is right; data is data_len zero bytes. */
static const char *make(const char *header, size_t data_len)
{
    static unsigned char zeros[4096];
    const char *path = tmp_path("bad.safetensors");
    write_file(path, strlen(header), header, zeros, data_len);
    return path;
}

/* Opening path must fail with status, and the message must name the file
 * and contain fact. */
static void expect_bad(const char *what, const char *path, clattn_status status,
                       const char *fact)
{
    clattn_weights *w = (clattn_weights *)&w;
    clattn_status st = clattn_weights_open(path, &w);
    const char *msg = clattn_last_error();
    CHECK(st == status, "%s: got %s, expected %s: %s", what, clattn_status_str(st),
          clattn_status_str(status), msg);
    CHECK(w == NULL, "%s: out not cleared", what);
    CHECK(strstr(msg, path) != NULL && strstr(msg, fact) != NULL,
          "%s: message should name the file and contain \"%s\": %s", what, fact, msg);
    if (st == CLATTN_OK)
        clattn_weights_close(w);
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Exact comparison, bit for bit (so -0 != +0 and NaN payloads count). */
static void check_bits(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK(bits_of(got[i]) == bits_of(want[i]), "%s[%zu]: got %.9g (0x%08x), want %.9g (0x%08x)",
              what, i, (double)got[i], bits_of(got[i]), (double)want[i], bits_of(want[i]));
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ======================================================================== */
/* A hand-made valid file                                                   */
/* ======================================================================== */

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void test_valid(clattn_ctx *ctx)
{
    /* Data layout (offsets chosen so F32/F64 data is not 4/8-aligned):
     *   six    U8   [1,1,1,1,1,2]  [0, 2)
     *   f16    F16  [9]            [2, 20)
     *   f32    F32  [2, 3]         [20, 44)   -> file offset 8+N+20
     *   scalar F32  []             [44, 48)
     *   empty  F32  [0, 3]         [48, 48)
     *   bf16   BF16 [2, 3]         [48, 60)
     *   f64    F64  [3]            [60, 84)
     *   i64    I64  [2]            [84, 100)
     *   f4     F4   [4]            [100, 102) */
    unsigned char data[102] = {0};
    data[0] = 7;
    data[1] = 9;
    const uint16_t f16[9] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e01, 0x8000};
    const float f16_want[9] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f /* 2^-24 */,
                               6.09755516052246094e-5f /* 1023 * 2^-24 */, INFINITY, -INFINITY,
                               from_bits(0x7fc02000) /* quiet NaN, payload kept */, -0.0f};
    for (int i = 0; i < 9; i++)
        put16(data + 2 + 2 * i, f16[i]);
    const float f32[6] = {1.5f, -2.25f, 3.0e-39f /* subnormal */, 1e30f, -0.0f, 7.0f};
    for (int i = 0; i < 6; i++) {
        uint32_t u = bits_of(f32[i]);
        for (int b = 0; b < 4; b++)
            data[20 + 4 * i + b] = (unsigned char)(u >> (8 * b));
    }
    uint32_t u42 = bits_of(42.0f);
    for (int b = 0; b < 4; b++)
        data[44 + b] = (unsigned char)(u42 >> (8 * b));
    const uint16_t bf16[6] = {0x3f80, 0xc0a0, 0x0001, 0x7f80, 0x7fc1, 0x8000};
    const float bf16_want[6] = {1.0f, -5.0f, from_bits(0x00010000) /* subnormal */, INFINITY,
                                from_bits(0x7fc10000), -0.0f};
    for (int i = 0; i < 6; i++)
        put16(data + 48 + 2 * i, bf16[i]);
    const double f64[3] = {0.1, 1e300, -2.5};
    const float f64_want[3] = {0.1f, INFINITY, -2.5f};
    for (int i = 0; i < 3; i++) {
        uint64_t u;
        memcpy(&u, &f64[i], 8);
        for (int b = 0; b < 8; b++)
            data[60 + 8 * i + b] = (unsigned char)(u >> (8 * b));
    }
    data[84] = 0xff;

    /* Entries listed out of offset order, with metadata in the middle and
     * trailing padding spaces, as writers produce. */
    const char *header =
        "{\"i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[84,100]},"
        "\"f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[20,44]},"
        "\"__metadata__\":{\"format\":\"pt\",\"note\":\"gr\\u00fc\\u00dfe \\\"quoted\\\"\"},"
        "\"bf16\":{\"shape\":[2,3],\"dtype\":\"BF16\",\"data_offsets\":[48,60]},"
        "\"six\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,2],\"data_offsets\":[0,2]},"
        "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[44,48]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[48,48]},"
        "\"f64\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[60,84]},"
        "\"f4\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[100,102]},"
        "\"f16\":{\"dtype\":\"F16\",\"shape\":[9],\"data_offsets\":[2,20]}}    ";
    const char *path = tmp_path("valid.safetensors");
    write_file(path, strlen(header), header, data, sizeof data);
    size_t data_start = 8 + strlen(header);

    clattn_weights *w = NULL;
    CHECK_OK(clattn_weights_open(path, &w));
    if (!w)
        return;
    CHECK(clattn_weights_count(w) == 9, "count %d", clattn_weights_count(w));

    /* By index: file order. */
    const char *file_order[9] = {"six", "f16", "f32", "scalar", "empty", "bf16", "f64", "i64", "f4"};
    for (int32_t i = 0; i < 9; i++) {
        clattn_weight_info info;
        CHECK_OK(clattn_weights_info_at(w, i, &info));
        /* empty [48,48) and bf16 [48,60) sort by (begin, end): empty first. */
        CHECK(strcmp(info.name, file_order[i]) == 0, "index %d is '%s', want '%s'", i, info.name,
              file_order[i]);
    }
    clattn_weight_info info;
    CHECK_STATUS(clattn_weights_info_at(w, 9, &info), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_weights_info_at(w, -1, &info), CLATTN_ERR_INVALID_ARG);

    /* By name: every field. */
    CHECK_OK(clattn_weights_find(w, "f32", &info));
    CHECK(info.dtype == CLATTN_DTYPE_F32 && info.ndim == 2 && info.shape[0] == 2 &&
              info.shape[1] == 3 && info.shape[2] == 0 && info.numel == 6 && info.nbytes == 24 &&
              info.data_offset == data_start + 20,
          "f32 info: dtype %d ndim %d numel %zu nbytes %zu offset %zu", info.dtype, info.ndim,
          info.numel, info.nbytes, info.data_offset);
    CHECK(info.data != NULL && memcmp(info.data, data + 20, 24) == 0, "f32 data pointer");
    CHECK_OK(clattn_weights_find(w, "six", &info));
    CHECK(info.dtype == CLATTN_DTYPE_U8 && info.ndim == 6 && info.shape[5] == 2 &&
              info.numel == 2 && info.nbytes == 2 && info.data_offset == data_start,
          "six info");
    CHECK(((const unsigned char *)info.data)[1] == 9, "six data");
    CHECK_OK(clattn_weights_find(w, "scalar", &info));
    CHECK(info.ndim == 0 && info.numel == 1 && info.nbytes == 4, "scalar info: ndim %d numel %zu",
          info.ndim, info.numel);
    CHECK_OK(clattn_weights_find(w, "empty", &info));
    CHECK(info.ndim == 2 && info.shape[0] == 0 && info.shape[1] == 3 && info.numel == 0 &&
              info.nbytes == 0,
          "empty info");
    CHECK_OK(clattn_weights_find(w, "f4", &info));
    CHECK(info.dtype == CLATTN_DTYPE_F4 && info.numel == 4 && info.nbytes == 2, "f4 info");
    CHECK_STATUS(clattn_weights_find(w, "nope", &info), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "'nope'") != NULL, "message: %s", clattn_last_error());

    /* Conversions, bit-exact. */
    float out[9];
    CHECK_OK(clattn_weights_read_f32(w, "f16", out, 9));
    check_bits("f16", out, f16_want, 9);
    CHECK_OK(clattn_weights_read_f32(w, "f32", out, 6));
    check_bits("f32", out, f32, 6);
    CHECK_OK(clattn_weights_read_f32(w, "bf16", out, 6));
    check_bits("bf16", out, bf16_want, 6);
    CHECK_OK(clattn_weights_read_f32(w, "f64", out, 3));
    check_bits("f64", out, f64_want, 3);
    CHECK_OK(clattn_weights_read_f32(w, "scalar", out, 1));
    CHECK(out[0] == 42.0f, "scalar %g", (double)out[0]);
    CHECK_OK(clattn_weights_read_f32(w, "empty", NULL, 0));
    CHECK_STATUS(clattn_weights_read_f32(w, "f32", out, 5), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "6 elements") != NULL, "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_weights_read_f32(w, "i64", out, 2), CLATTN_ERR_UNSUPPORTED);
    CHECK(strstr(clattn_last_error(), "'i64'") && strstr(clattn_last_error(), "I64"),
          "message should name tensor and dtype: %s", clattn_last_error());
    CHECK_STATUS(clattn_weights_read_f32(w, "missing", out, 2), CLATTN_ERR_INVALID_ARG);

    /* Metadata, including JSON escapes decoded to UTF-8. */
    CHECK(clattn_weights_metadata(w, "format") && !strcmp(clattn_weights_metadata(w, "format"), "pt"),
          "metadata format");
    const char *note = clattn_weights_metadata(w, "note");
    CHECK(note && !strcmp(note, "gr\xc3\xbc\xc3\x9f" "e \"quoted\""), "metadata note: %s",
          note ? note : "(null)");
    CHECK(clattn_weights_metadata(w, "absent") == NULL, "absent metadata");
    CHECK(clattn_weights_metadata_count(w) == 2, "metadata count");
    const char *k = NULL, *v = NULL;
    CHECK_OK(clattn_weights_metadata_at(w, 1, &k, &v));
    CHECK(k && !strcmp(k, "note"), "metadata sorted by key");
    CHECK_STATUS(clattn_weights_metadata_at(w, 2, &k, &v), CLATTN_ERR_INVALID_ARG);

    /* Upload: 1..4-d float tensors only. */
    clattn_tensor *t = NULL;
    CHECK_OK(clattn_weights_upload(ctx, w, "f32", &t));
    if (t) {
        int64_t shape[4];
        CHECK(clattn_tensor_shape(t, shape) == 2 && shape[0] == 2 && shape[1] == 3, "upload shape");
        float back[6];
        CHECK_OK(clattn_tensor_read(t, back));
        check_bits("upload f32", back, f32, 6);
        clattn_tensor_destroy(t);
    }
    CHECK_OK(clattn_weights_upload(ctx, w, "f16", &t));
    if (t) {
        float back[9];
        CHECK_OK(clattn_tensor_read(t, back));
        check_bits("upload f16", back, f16_want, 9);
        clattn_tensor_destroy(t);
    }
    t = (clattn_tensor *)&t;
    CHECK_STATUS(clattn_weights_upload(ctx, w, "scalar", &t), CLATTN_ERR_UNSUPPORTED);
    CHECK(t == NULL && strstr(clattn_last_error(), "shape []"), "scalar upload: %s",
          clattn_last_error());
    CHECK_STATUS(clattn_weights_upload(ctx, w, "empty", &t), CLATTN_ERR_UNSUPPORTED);
    CHECK_STATUS(clattn_weights_upload(ctx, w, "six", &t), CLATTN_ERR_UNSUPPORTED);
    CHECK_STATUS(clattn_weights_upload(ctx, w, "nope", &t), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_ctx_last_error(ctx), "'nope'") != NULL, "ctx message: %s",
          clattn_ctx_last_error(ctx));
    clattn_weights_close(w);

    /* A 6-d F32 tensor uploads? No: more than 4 dimensions. */
    const char *h6 = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1],\"data_offsets\":[0,4]}}";
    CHECK_OK(clattn_weights_open(make(h6, 4), &w));
    CHECK_STATUS(clattn_weights_upload(ctx, w, "x", &t), CLATTN_ERR_UNSUPPORTED);
    CHECK(strstr(clattn_last_error(), "1 to 4 dimensions"), "message: %s", clattn_last_error());
    clattn_weights_close(w);

    /* No tensors at all is a valid file. */
    CHECK_OK(clattn_weights_open(make("{}      ", 0), &w));
    CHECK(clattn_weights_count(w) == 0, "empty file count");
    clattn_weights_close(w);
    clattn_weights_close(NULL);
}

/* ======================================================================== */
/* The reference implementation's file                                       */
/* ======================================================================== */

static void test_fixture(const char *path)
{
    clattn_weights *w = NULL;
    CHECK_OK(clattn_weights_open(path, &w));
    if (!w)
        return;
    CHECK(clattn_weights_count(w) == 5, "fixture count %d", clattn_weights_count(w));
    const float f32[6] = {0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f};
    const float f16[4] = {1.0f, -2.0f, 5.9604644775390625e-8f, 65504.0f};
    const float bf16[4] = {1.0f, -3.5f, 1.17549435e-38f /* 2^-126 */, 1.90147590e30f /* 1.5*2^100 */};
    float out[6];
    CHECK_OK(clattn_weights_read_f32(w, "w_f32", out, 6));
    check_bits("fixture w_f32", out, f32, 6);
    CHECK_OK(clattn_weights_read_f32(w, "w_f16", out, 4));
    check_bits("fixture w_f16", out, f16, 4);
    CHECK_OK(clattn_weights_read_f32(w, "w_bf16", out, 4));
    check_bits("fixture w_bf16", out, bf16, 4);
    CHECK_OK(clattn_weights_read_f32(w, "scale", out, 1));
    CHECK(out[0] == 0.125f, "fixture scale %g", (double)out[0]);
    clattn_weight_info info;
    CHECK_OK(clattn_weights_find(w, "scale", &info));
    CHECK(info.dtype == CLATTN_DTYPE_F64 && info.ndim == 0, "fixture scale info");
    CHECK_OK(clattn_weights_find(w, "ids", &info));
    CHECK(info.dtype == CLATTN_DTYPE_I64 && info.ndim == 1 && info.shape[0] == 3, "fixture ids");
    int64_t ids[3];
    memcpy(ids, info.data, sizeof ids); /* little-endian host assumed here */
    CHECK(ids[0] == -1 && ids[1] == 0 && ids[2] == (int64_t)1 << 40, "fixture ids values");
    const char *src = clattn_weights_metadata(w, "source");
    CHECK(src && !strcmp(src, "make_safetensors_fixture.py"), "fixture metadata");
    clattn_weights_close(w);
}

/* ======================================================================== */
/* The writer                                                                */
/* ======================================================================== */

static int count_dir_entries(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void test_write(clattn_ctx *ctx)
{
    const int64_t sa[2] = {2, 3}, sb[1] = {5}, sc[4] = {1, 2, 1, 3};
    float a[6], b[5], c[6];
    test_fill_uniform(a, 6, -2, 2);
    test_fill_uniform(b, 5, -2, 2);
    test_fill_uniform(c, 6, -2, 2);
    b[0] = -0.0f;
    b[1] = INFINITY;
    clattn_tensor *ta = test_tensor(ctx, 2, sa, a), *tb = test_tensor(ctx, 1, sb, b),
                  *tc = test_tensor(ctx, 4, sc, c);
    const clattn_tensor *tensors[3] = {ta, tb, tc};
    const char *names[3] = {"zeta", "alpha", "mid.weight"};
    const char *keys[2] = {"format", "step"}, *values[2] = {"pt", "12"};
    const char *path = tmp_path("written.safetensors");
    int before = count_dir_entries();
    CHECK_OK(clattn_weights_write(path, 3, names, tensors, keys, values, 2));
    CHECK(count_dir_entries() == before + 1, "the temporary file was not renamed away");

    /* Header padded to a multiple of 8 with spaces; data sorted by name. */
    FILE *f = fopen(path, "rb");
    unsigned char prefix[9] = {0};
    CHECK(f && fread(prefix, 1, 9, f) == 9, "read back");
    if (f)
        fclose(f);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | prefix[i];
    CHECK(n % 8 == 0 && prefix[8] == '{', "header length %llu, first byte %c",
          (unsigned long long)n, prefix[8]);

    clattn_weights *w = NULL;
    CHECK_OK(clattn_weights_open(path, &w));
    if (w) {
        clattn_weight_info info;
        CHECK_OK(clattn_weights_info_at(w, 0, &info));
        CHECK(!strcmp(info.name, "alpha") && info.data_offset == 8 + n, "first in file: %s",
              info.name);
        float out[6];
        CHECK_OK(clattn_weights_read_f32(w, "zeta", out, 6));
        check_bits("written zeta", out, a, 6);
        CHECK_OK(clattn_weights_read_f32(w, "alpha", out, 5));
        check_bits("written alpha", out, b, 5);
        CHECK_OK(clattn_weights_read_f32(w, "mid.weight", out, 6));
        check_bits("written mid", out, c, 6);
        CHECK_OK(clattn_weights_find(w, "mid.weight", &info));
        CHECK(info.ndim == 4 && info.shape[1] == 2 && info.shape[3] == 3, "written shape");
        CHECK(clattn_weights_metadata(w, "step") && !strcmp(clattn_weights_metadata(w, "step"), "12"),
              "written metadata");
        clattn_weights_close(w);
    }
    /* No tensors, no metadata: "{}" padded. */
    CHECK_OK(clattn_weights_write(path, 0, NULL, NULL, NULL, NULL, 0));
    CHECK_OK(clattn_weights_open(path, &w));
    CHECK(clattn_weights_count(w) == 0, "empty written file");
    clattn_weights_close(w);

    /* Refused arguments leave no file behind. */
    before = count_dir_entries();
    const char *dup[3] = {"x", "y", "x"};
    CHECK_STATUS(clattn_weights_write(path, 3, dup, tensors, NULL, NULL, 0), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "'x' appears twice"), "message: %s", clattn_last_error());
    const char *reserved[1] = {"__metadata__"};
    CHECK_STATUS(clattn_weights_write(path, 1, reserved, tensors, NULL, NULL, 0),
                 CLATTN_ERR_INVALID_ARG);
    const char *bad_utf8[1] = {"caf\xe9"};
    CHECK_STATUS(clattn_weights_write(path, 1, bad_utf8, tensors, NULL, NULL, 0),
                 CLATTN_ERR_INVALID_ARG);
    const char *dupkeys[2] = {"k", "k"};
    CHECK_STATUS(clattn_weights_write(path, 1, names, tensors, dupkeys, values, 2),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_weights_write("/nonexistent-dir/x.safetensors", 1, names, tensors, NULL,
                                      NULL, 0),
                 CLATTN_ERR_IO);
    CHECK(strstr(clattn_last_error(), "/nonexistent-dir/x.safetensors"), "message: %s",
          clattn_last_error());
    CHECK(count_dir_entries() == before, "refused writes left files behind");
    clattn_tensor_destroy(ta);
    clattn_tensor_destroy(tb);
    clattn_tensor_destroy(tc);
}

/* ======================================================================== */
/* Bad files                                                                 */
/* ======================================================================== */

static void test_bad(void)
{
    const char *p = tmp_path("bad.safetensors");
    FILE *f = fopen(p, "wb");
    fclose(f);
    expect_bad("empty file", p, CLATTN_ERR_FORMAT, "too small");
    f = fopen(p, "wb");
    fwrite("\x05\0\0\0\0", 1, 5, f);
    fclose(f);
    expect_bad("5-byte file", p, CLATTN_ERR_FORMAT, "5 bytes, too small");

    write_file(p, 100, "{\"a\":1}", NULL, 0);
    expect_bad("header length past EOF", p, CLATTN_ERR_FORMAT, "runs past the end");
    write_file(p, 100000001, "{}", NULL, 0);
    expect_bad("header too large", p, CLATTN_ERR_FORMAT, "100000001 is over the limit");
    write_file(p, UINT64_MAX, "{}", NULL, 0);
    expect_bad("header length 2^64-1", p, CLATTN_ERR_FORMAT, "over the limit");

    expect_bad("not JSON", make("{not json}", 0), CLATTN_ERR_FORMAT, "not valid JSON");
    expect_bad("truncated JSON", make("{\"a\":{\"dtype\":", 0), CLATTN_ERR_FORMAT,
               "not valid JSON");
    expect_bad("invalid UTF-8", make("{\"\xff\":{}}", 0), CLATTN_ERR_FORMAT, "not valid JSON");
    expect_bad("NUL in a name", make("{\"a\\u0000b\":{}}", 0), CLATTN_ERR_FORMAT,
               "not valid JSON");
    expect_bad("array header", make("[1, 2]", 0), CLATTN_ERR_FORMAT, "does not start with '{'");
    expect_bad("leading space", make(" {}", 0), CLATTN_ERR_FORMAT, "does not start with '{'");
    expect_bad("empty header", make("", 0), CLATTN_ERR_FORMAT, "does not start with '{'");
    expect_bad("two values", make("{} {}", 0), CLATTN_ERR_FORMAT, "not valid JSON");

    expect_bad("duplicate keys",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                    1),
               CLATTN_ERR_FORMAT, "duplicate");
    expect_bad("entry not an object", make("{\"a\":[1]}", 0), CLATTN_ERR_FORMAT,
               "tensor 'a': entry is not an object");
    expect_bad("unknown dtype",
               make("{\"w\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
               CLATTN_ERR_FORMAT, "tensor 'w': unknown dtype 'F12'");
    expect_bad("dtype not a string",
               make("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
               CLATTN_ERR_FORMAT, "dtype is not a string");
    expect_bad("negative extent",
               make("{\"w\":{\"dtype\":\"U8\",\"shape\":[2,-1],\"data_offsets\":[0,1]}}", 1),
               CLATTN_ERR_FORMAT, "tensor 'w': shape entry 1 is not a non-negative integer");
    expect_bad("real extent",
               make("{\"w\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1),
               CLATTN_ERR_FORMAT, "shape entry 0 is not a non-negative integer");
    expect_bad("string extent",
               make("{\"w\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1),
               CLATTN_ERR_FORMAT, "shape entry 0");
    expect_bad("shape not an array",
               make("{\"w\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1),
               CLATTN_ERR_FORMAT, "shape is not an array");
    expect_bad("missing field", make("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1),
               CLATTN_ERR_FORMAT, "missing field 'data_offsets'");
    expect_bad("extra field",
               make("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":0}}", 1),
               CLATTN_ERR_FORMAT, "unknown field 'x'");
    expect_bad("size mismatch",
               make("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 12),
               CLATTN_ERR_FORMAT,
               "tensor 'w': data_offsets [0, 12] hold 12 bytes but shape [2, 3] of F32 needs 24");
    expect_bad("overlap",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}",
                    12),
               CLATTN_ERR_FORMAT, "tensor 'b': data_offsets [4, 12] overlap tensor 'a'");
    expect_bad("same range twice",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                    4),
               CLATTN_ERR_FORMAT, "overlap");
    expect_bad("gap",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}",
                    12),
               CLATTN_ERR_FORMAT, "tensor 'b': data_offsets [8, 12] leave a gap of 4 bytes");
    expect_bad("trailing bytes",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 6),
               CLATTN_ERR_FORMAT, "2 trailing bytes");
    expect_bad("not starting at 0",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8),
               CLATTN_ERR_FORMAT, "tensor 'a': data_offsets [4, 8]: the first tensor must start at 0");
    expect_bad("begin after end",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8),
               CLATTN_ERR_FORMAT, "data_offsets [8, 4]: begin is after end");
    expect_bad("three offsets",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 4),
               CLATTN_ERR_FORMAT, "data_offsets is not [begin, end]");
    expect_bad("negative offset",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 4),
               CLATTN_ERR_FORMAT, "data_offsets is not [begin, end]");
    expect_bad("truncated data",
               make("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 10),
               CLATTN_ERR_FORMAT, "tensor 'a': data_offsets [0, 16] run past the end of the file");
    expect_bad("shape overflow",
               make("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                    "\"data_offsets\":[0,0]}}",
                    0),
               CLATTN_ERR_FORMAT, "shape [4294967296, 4294967296, 16] of F32 overflows");
    expect_bad("bytes overflow",
               make("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
                    "\"data_offsets\":[0,0]}}",
                    0),
               CLATTN_ERR_FORMAT, "overflows");
    expect_bad("integer too big for JSON parser",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],"
                    "\"data_offsets\":[0,0]}}",
                    0),
               CLATTN_ERR_FORMAT, "not valid JSON");
    expect_bad("F4 half byte",
               make("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2),
               CLATTN_ERR_FORMAT, "12 bits, not a whole number of bytes");
    expect_bad("nine dimensions",
               make("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                    "\"data_offsets\":[0,1]}}",
                    1),
               CLATTN_ERR_UNSUPPORTED, "tensor 'a' has 9 dimensions");
    expect_bad("metadata value not a string",
               make("{\"__metadata__\":{\"ok\":\"x\",\"k\":1}}", 0), CLATTN_ERR_FORMAT,
               "__metadata__ entry 'k' is not a string");
    expect_bad("metadata not an object", make("{\"__metadata__\":[\"a\"]}", 0),
               CLATTN_ERR_FORMAT, "__metadata__ is not an object");

    /* The reference reads "__metadata__": null as no metadata. */
    clattn_weights *w = NULL;
    CHECK_OK(clattn_weights_open(make("{\"__metadata__\":null}", 0), &w));
    CHECK(clattn_weights_metadata_count(w) == 0, "null metadata");
    clattn_weights_close(w);

    expect_bad("missing file", tmp_path("does-not-exist"), CLATTN_ERR_IO, "cannot open");
    expect_bad("directory", dir, CLATTN_ERR_IO, "not a regular file");
    CHECK_STATUS(clattn_weights_open(NULL, &w), CLATTN_ERR_INVALID_ARG);
}

static void test_dtypes(void)
{
    CHECK(!strcmp(clattn_dtype_name(CLATTN_DTYPE_BF16), "BF16"), "BF16 name");
    CHECK(!strcmp(clattn_dtype_name(CLATTN_DTYPE_F8_E4M3), "F8_E4M3"), "F8 name");
    CHECK(!strcmp(clattn_dtype_name((clattn_dtype)999), "unknown"), "unknown name");
    CHECK(clattn_dtype_bits(CLATTN_DTYPE_F4) == 4 && clattn_dtype_bits(CLATTN_DTYPE_F6_E2M3) == 6 &&
              clattn_dtype_bits(CLATTN_DTYPE_C64) == 64 && clattn_dtype_bits((clattn_dtype)-1) == 0,
          "bits");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s tests/fixtures/python.safetensors\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "/tmp/clattn-st-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    clattn_ctx *ctx = test_ctx();
    test_dtypes();
    test_valid(ctx);
    test_fixture(argv[1]);
    test_write(ctx);
    test_bad();
    clattn_ctx_destroy(ctx);

    /* Remove the scratch directory (its files are ours). */
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.')
            unlink(tmp_path(e->d_name));
    if (d)
        closedir(d);
    rmdir(dir);
    return test_summary("test_safetensors");
}
