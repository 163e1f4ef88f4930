/* test_sha256.c - clattn__sha256 (src/core/sha256.c, the kernel cache's
 * content hash) against the FIPS 180-4 / NIST CSHS example vectors, and
 * against Python's hashlib on lengths around the padding boundaries (55/56
 * bytes: the length field fits in the last block or needs another),
 * hashed whole and in every two-part split. No device needed. */
#include "core/core.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void hex(const unsigned char d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check_vector(const char *what, const void *data, size_t n, const char *want)
{
    unsigned char d[32];
    char got[65];
    clattn__sha256(data, n, d);
    hex(d, got);
    CHECK(strcmp(got, want) == 0, "%s: got %s, want %s", what, got, want);
    /* Every split into two updates gives the same digest. */
    int bad = 0;
    for (size_t cut = 0; cut <= n && n <= 1000; cut += (n > 200 ? 37 : 1)) {
        clattn__sha256_state s;
        clattn__sha256_init(&s);
        clattn__sha256_update(&s, data, cut);
        clattn__sha256_update(&s, (const unsigned char *)data + cut, n - cut);
        clattn__sha256_final(&s, d);
        hex(d, got);
        bad += strcmp(got, want) != 0;
    }
    CHECK(bad == 0, "%s: %d two-part splits disagree", what, bad);
}

int main(void)
{
    /* FIPS 180-4 examples (NIST CSRC "Examples with Intermediate Values"). */
    check_vector("\"\"", "", 0,
                 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_vector("abc", "abc", 3,
                 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_vector("448-bit message", m448, strlen(m448),
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_vector("896-bit message", m896, strlen(m896),
                 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* One million 'a', fed in uneven pieces. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    check_vector("10^6 x 'a'", a, 1000000,
                 "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    clattn__sha256_state s;
    clattn__sha256_init(&s);
    for (size_t at = 0, step = 1; at < 1000000; at += step, step = step * 3 % 1021 + 1)
        clattn__sha256_update(&s, a + at, at + step <= 1000000 ? step : 1000000 - at);
    unsigned char d[32];
    char got[65];
    clattn__sha256_final(&s, d);
    hex(d, got);
    CHECK(strcmp(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
          "10^6 x 'a' in uneven updates: %s", got);
    free(a);

    /* hashlib.sha256(bytes((i * 7 + 3) & 255 for i in range(n))). */
    unsigned char pat[1000];
    for (int i = 0; i < 1000; i++)
        pat[i] = (unsigned char)((i * 7 + 3) & 255);
    static const struct { size_t n; const char *hex; } py[] = {
        {55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
        {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
        {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
        {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
        {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
        {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
        {120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
        {1000, "1e9bc38cbf860b9ec31918b065f9b52476c549a782e0e7990bed8ce3868d2371"},
    };
    for (size_t i = 0; i < sizeof py / sizeof py[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "pattern[%zu]", py[i].n);
        check_vector(what, pat, py[i].n, py[i].hex);
    }
    return test_summary("test_sha256");
}
