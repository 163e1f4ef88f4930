/* test_bpe.c - the BPE tokenizers against Hugging Face: five small
 * tokenizers trained by tests/fixtures/make_bpe_fixtures.py (GPT-2 style,
 * Llama 3, Qwen2, Llama 2 / SentencePiece-style, Metaspace) and the ids
 * transformers' AutoTokenizer gives for every text of a corpus, with and
 * without special tokens; decode (skip_special false and true) of those
 * ids and of arbitrary id sequences against the crate's decode; the
 * stream decoder (each piece whole UTF-8 characters, the pieces together
 * the full decode); bad files, each refused with a clear status and
 * message. Exact equality everywhere: tokenization has no tolerance.
 * Needs no device.
 *
 * Usage: test_bpe FIXTURE_DIR (tests/fixtures/bpe) */
#define _GNU_SOURCE /* mkdtemp */
#include "testutil.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t unhex(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    return n;
}

/* The fixture's text as bytes (malloc'd, *n of them). */
static unsigned char *text_bytes(json_t *e, size_t *n)
{
    json_t *t = json_object_get(e, "text");
    if (t) {
        *n = json_string_length(t);
        unsigned char *b = malloc(*n + 1);
        memcpy(b, json_string_value(t), *n);
        return b;
    }
    const char *hex = json_string_value(json_object_get(e, "hex"));
    unsigned char *b = malloc(strlen(hex) / 2 + 1);
    *n = unhex(hex, b);
    return b;
}

/* bytes.decode(errors="replace") of b, as UTF-8 (malloc'd). */
static char *replaced_n(const unsigned char *b, size_t n, size_t *out_len)
{
    uint32_t *c = malloc((n + 1) * sizeof *c);
    size_t m = clattn__utf8_decode_lossy(b, n, c);
    char *s = malloc(4 * m + 1), *p = s;
    for (size_t i = 0; i < m; i++)
        p += clattn__utf8_encode(c[i], p);
    *p = '\0';
    *out_len = (size_t)(p - s);
    free(c);
    return s;
}



static bool utf8_ok(const char *s, size_t n)
{
    size_t m;
    char *r = replaced_n((const unsigned char *)s, n, &m);
    /* Well-formed: the lossy round trip gives the same bytes (a U+FFFD in
     * the input survives as itself). */
    bool ok = m == n && memcmp(r, s, n) == 0;
    free(r);
    return ok;
}

static int64_t *json_ids(json_t *a, size_t *n)
{
    *n = json_array_size(a);
    int64_t *v = malloc((*n + 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++)
        v[i] = json_integer_value(json_array_get(a, i));
    return v;
}

static bool same_ids(const int64_t *a, size_t na, const int64_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *what, const int64_t *v, size_t n)
{
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %lld", (long long)v[i]);
    fprintf(stderr, "\n");
}

/* The full decode of ids (malloc'd), or NULL on failure. */
static char *decode(const clattn_tokenizer *tok, const int64_t *ids, size_t n, bool skip,
                    size_t *out_len)
{
    size_t len = 0;
    clattn_status st = clattn_tokenizer_decode(tok, ids, (int32_t)n, skip, NULL, 0, &len);
    if (st != CLATTN_OK)
        return NULL;
    char *s = malloc(len + 1);
    size_t len2 = 0;
    st = clattn_tokenizer_decode(tok, ids, (int32_t)n, skip, s, len + 1, &len2);
    if (st != CLATTN_OK || len2 != len) {
        free(s);
        return NULL;
    }
    *out_len = len;
    return s;
}

static int stream_pieces;

/* Decodes ids through the stream decoder, one push each (and a flush), and
 * checks every piece is whole UTF-8 and all of them are want. */
static void check_stream(const char *what, const clattn_tokenizer *tok, const int64_t *ids,
                         size_t n, bool skip, const char *want, size_t want_len)
{
    clattn_detokenizer *d = NULL;
    CHECK_OK(clattn_detokenizer_create(tok, skip, &d));
    if (!d)
        return;
    size_t cap = want_len + 64, used = 0;
    char *all = malloc(cap), piece[4096];
    bool whole = true;
    for (size_t i = 0; i <= n; i++) {
        size_t len = 0;
        clattn_status st = i < n ? clattn_detokenizer_push(d, ids[i], piece, sizeof piece, &len)
                                 : clattn_detokenizer_flush(d, piece, sizeof piece, &len);
        CHECK(st == CLATTN_OK, "%s: stream: %s", what, clattn_last_error());
        if (st != CLATTN_OK)
            break;
        whole = whole && utf8_ok(piece, len) && piece[len] == '\0';
        stream_pieces += len > 0;
        if (used + len + 1 > cap) {
            cap = 2 * (used + len + 1);
            all = realloc(all, cap);
        }
        memcpy(all + used, piece, len);
        used += len;
    }
    all[used] = '\0';
    CHECK(whole, "%s: stream (skip %d): a piece is not whole UTF-8", what, skip);
    CHECK(used == want_len && memcmp(all, want, used) == 0,
          "%s: stream (skip %d) gives \"%s\", decode \"%s\"", what, skip, all, want);
    free(all);
    clattn_detokenizer_destroy(d);
}

static int texts_checked, texts_failed;

static void check_tokenizer(const char *fixtures, json_t *spec, json_t *texts)
{
    const char *name = json_string_value(json_object_get(spec, "name"));
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", fixtures, name);
    clattn_tokenizer *tok = NULL;
    CHECK_OK(clattn_tokenizer_load(dir, &tok));
    if (!tok)
        return;
    size_t npre, npost;
    int64_t *pre = json_ids(json_object_get(spec, "pre"), &npre);
    int64_t *post = json_ids(json_object_get(spec, "post"), &npost);
    int failed = 0;
    size_t i;
    json_t *e;
    json_array_foreach(texts, i, e)
    {
        const char *tname = json_string_value(json_object_get(e, "name"));
        size_t nb, nwant;
        unsigned char *b = text_bytes(e, &nb);
        int64_t *want = json_ids(json_object_get(json_object_get(e, "ids"), name), &nwant);
        char what[128];
        snprintf(what, sizeof what, "%s/%s", name, tname);
        int before = test_failures;
        /* Without special tokens. */
        int32_t count = -1;
        CHECK_OK(clattn_tokenizer_encode_ex(tok, (const char *)b, nb, false, 0, NULL, 0, &count));
        int64_t *got = malloc(((size_t)(count > 0 ? count : 0) + npre + npost + 1) * sizeof *got);
        int32_t c2 = -1;
        CHECK_OK(clattn_tokenizer_encode_ex(tok, (const char *)b, nb, false, 0, got, count, &c2));
        bool ok = c2 == count && same_ids(got, (size_t)count, want, nwant);
        CHECK(ok, "%s: ids differ", what);
        if (!ok) {
            print_ids("got ", got, count > 0 ? (size_t)count : 0);
            print_ids("want", want, nwant);
        }
        /* With them: the template around the same ids. */
        size_t nfull = npre + nwant + npost;
        int64_t *full = malloc((nfull + 1) * sizeof *full);
        memcpy(full, pre, npre * sizeof *pre);
        memcpy(full + npre, want, nwant * sizeof *want);
        memcpy(full + npre + nwant, post, npost * sizeof *post);
        int64_t *got_full = malloc((nfull + 1) * sizeof *got_full);
        int32_t c3 = -1;
        CHECK_OK(clattn_tokenizer_encode_ex(tok, (const char *)b, nb, true, 0, got_full,
                                            (int32_t)nfull, &c3));
        CHECK(c3 == (int32_t)nfull && same_ids(got_full, nfull, full, nfull),
              "%s: ids with special tokens differ", what);
        /* Decode, both ways, and the stream decoder. */
        size_t plain_len;
        char *plain = replaced_n(b, nb, &plain_len);
        for (int skip = 0; skip < 2; skip++) {
            json_t *alt = json_object_get(json_object_get(e, skip ? "decode_skip" : "decode"),
                                          name);
            const char *w = alt ? json_string_value(alt) : plain;
            size_t wl = alt ? json_string_length(alt) : plain_len, dl = 0;
            char *dec = decode(tok, full, nfull, skip, &dl);
            CHECK(dec && dl == wl && memcmp(dec, w, wl) == 0,
                  "%s: decode (skip %d) \"%s\", want \"%s\": %s", what, skip,
                  dec ? dec : "(failed)", w, dec ? "" : clattn_last_error());
            check_stream(what, tok, full, nfull, skip, w, wl);
            free(dec);
        }
        free(plain);
        free(full);
        free(got_full);
        free(got);
        free(want);
        free(b);
        texts_checked++;
        failed += test_failures != before;
    }
    /* Arbitrary id sequences: invalid byte runs, specials, unknown ids. */
    json_t *cases = json_object_get(spec, "decode_cases");
    json_array_foreach(cases, i, e)
    {
        size_t n;
        int64_t *ids = json_ids(json_object_get(e, "ids"), &n);
        for (int skip = 0; skip < 2; skip++) {
            json_t *jw = json_object_get(e, skip ? "dec_skip" : "dec");
            const char *w = json_string_value(jw);
            size_t wl = json_string_length(jw), dl = 0;
            char *dec = decode(tok, ids, n, skip, &dl);
            char what[64];
            snprintf(what, sizeof what, "%s/decode_cases[%zu]", name, i);
            bool same = dec && dl == wl && memcmp(dec, w, wl) == 0;
            CHECK(same, "%s (skip %d): \"%s\", want \"%s\"", what, skip,
                  dec ? dec : "(failed)", w);
            if (!same)
                print_ids("ids", ids, n);
            check_stream(what, tok, ids, n, skip, w, wl);
            free(dec);
        }
        free(ids);
    }
    /* Truncation: the pieces are cut, the template kept. */
    json_t *e0 = json_array_get(texts, 40);
    size_t n0, nw0;
    unsigned char *b0 = text_bytes(e0, &n0);
    int64_t *w0 = json_ids(json_object_get(json_object_get(e0, "ids"), name), &nw0);
    int64_t got0[64];
    int32_t c0 = 0, lim = (int32_t)(npre + npost + 2);
    CHECK_OK(clattn_tokenizer_encode_ex(tok, (const char *)b0, n0, true, lim, got0, 64, &c0));
    CHECK(nw0 >= 2 && c0 == lim && same_ids(got0, npre, pre, npre) &&
              same_ids(got0 + npre, 2, w0, 2) && same_ids(got0 + npre + 2, npost, post, npost),
          "%s: truncation to %d", name, (int)lim);
    free(b0);
    free(w0);
    /* The special flags: the template's tokens are special, a piece is not. */
    if (npre)
        CHECK(clattn_tokenizer_is_special(tok, pre[0]), "%s: bos not special", name);
    CHECK(!clattn_tokenizer_is_special(tok, 100) && !clattn_tokenizer_is_special(tok, -1) &&
              !clattn_tokenizer_is_special(tok, 1 << 30),
          "%s: is_special of a piece / bad id", name);
    texts_failed += failed;
    printf("%-10s %zu texts, %d failed; %zu decode cases; vocab %d, bos %d, eos %d\n", name,
           json_array_size(texts), failed, json_array_size(cases),
           (int)clattn_tokenizer_vocab_size(tok), (int)clattn_tokenizer_bos_id(tok),
           (int)clattn_tokenizer_eos_id(tok));
    free(pre);
    free(post);
    clattn_tokenizer_destroy(tok);
}

/* ---- variants: other settings on a fixture's vocabulary ---------------------- */

/* Writes the base tokenizer.json with the variant's changes into a temporary
 * folder and checks its ids and decodes of the first texts. */
static void test_variant(const char *fixtures, json_t *v, json_t *texts)
{
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *base = json_string_value(json_object_get(v, "base"));
    char path[1024], dir[64];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", fixtures, base);
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    CHECK(j != NULL, "%s: %s", path, jerr.text);
    snprintf(dir, sizeof dir, "/tmp/clattn-bpev-XXXXXX");
    if (!j || !mkdtemp(dir)) {
        json_decref(j);
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(json_object_get(v, "change"), key, value)
        json_object_set(j, key, value);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(json_dump_file(j, path, 0) == 0, "%s: cannot write %s", name, path);
    json_decref(j);
    clattn_tokenizer *tok = NULL;
    CHECK_OK(clattn_tokenizer_load(dir, &tok));
    unlink(path);
    rmdir(dir);
    if (!tok)
        return;
    json_t *ids = json_object_get(v, "ids"), *decs = json_object_get(v, "decode");
    int failed = 0;
    for (size_t i = 0; i < json_array_size(ids); i++) {
        size_t nb, nw;
        unsigned char *b = text_bytes(json_array_get(texts, i), &nb);
        int64_t *want = json_ids(json_array_get(ids, i), &nw);
        int64_t *got = malloc((nw + 64) * sizeof *got);
        int32_t count = -1;
        clattn_status st = clattn_tokenizer_encode_ex(tok, (const char *)b, nb, false, 0, got,
                                                      (int32_t)nw + 64, &count);
        char what[128];
        snprintf(what, sizeof what, "%s/%s", name,
                 json_string_value(json_object_get(json_array_get(texts, i), "name")));
        bool ok = st == CLATTN_OK && same_ids(got, (size_t)count, want, nw);
        CHECK(ok, "%s: ids differ", what);
        if (!ok) {
            print_ids("got ", got, count > 0 ? (size_t)count : 0);
            print_ids("want", want, nw);
        }
        json_t *jd = json_array_get(decs, i);
        size_t dl = 0;
        char *dec = decode(tok, want, nw, false, &dl);
        bool same = dec && dl == json_string_length(jd) &&
                    memcmp(dec, json_string_value(jd), dl) == 0;
        CHECK(same, "%s: decode \"%s\", want \"%s\"", what, dec ? dec : "(failed)",
              json_string_value(jd));
        check_stream(what, tok, want, nw, false, json_string_value(jd), json_string_length(jd));
        failed += !ok || !same;
        free(dec);
        free(got);
        free(want);
        free(b);
    }
    printf("variant %-26s %zu texts, %d failed\n", name, json_array_size(ids), failed);
    clattn_tokenizer_destroy(tok);
}

/* ---- the regex classes of every code point ----------------------------------- */

static void test_classes(json_t *root)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c <= 0xDFFF)
            continue;
        unsigned b = (clattn__re_letter(c) ? 1 : 0) | (clattn__re_number(c) ? 2 : 0) |
                     (clattn__re_space(c) ? 4 : 0);
        h = (h ^ b) * 0x100000001b3ull;
    }
    char got[17];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)h);
    const char *want = json_string_value(json_object_get(root, "classes_fnv1a"));
    CHECK(want && strcmp(got, want) == 0,
          "\\p{L} \\p{N} \\s of all code points: hash %s, the crate's %s", got,
          want ? want : "(missing)");
}

/* ---- round trips on random text --------------------------------------------- */

/* Byte-level (and byte-fallback) tokenizers lose nothing: decode(encode(t))
 * is t after U+FFFD replacement, for any bytes; checked on random strings
 * of ASCII, multi-byte characters and invalid bytes, with the stream
 * decoder too. (Not qwen2: NFC changes text; not metaspace: it has <unk>.) */
static void test_round_trip(const char *fixtures)
{
    static const char *const names[] = {"gpt2", "llama3", "smollm", "llama2"};
    static const char *const atoms[] = {"a", "Z", " ", "  ", "\n", "\t", "7", "'s", ".", "é",
                                        "ß", "中", "😀", "\u0301", "\xff", "\xe2\x82",
                                        "\xf0\x9f", "\xc3", "\x80", "\r\n", "ﬁ", "!?"};
    test_seed(7);
    for (int k = 0; k < 4; k++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", fixtures, names[k]);
        clattn_tokenizer *tok = NULL;
        CHECK_OK(clattn_tokenizer_load(dir, &tok));
        if (!tok)
            continue;
        int bad = 0;
        for (int r = 0; r < 300; r++) {
            char text[512];
            size_t n = 0;
            int atoms_n = 1 + (int)test_uniform(0, 40);
            for (int a = 0; a < atoms_n; a++) {
                const char *s = atoms[(int)test_uniform(0, sizeof atoms / sizeof atoms[0])];
                memcpy(text + n, s, strlen(s));
                n += strlen(s);
            }
            int64_t ids[1024];
            int32_t count = 0;
            CHECK_OK(clattn_tokenizer_encode_ex(tok, text, n, true, 0, ids, 1024, &count));
            size_t wl, dl = 0;
            char *want = replaced_n((const unsigned char *)text, n, &wl);
            char *dec = decode(tok, ids, (size_t)count, true, &dl);
            bool ok = dec && dl == wl && memcmp(dec, want, wl) == 0;
            if (!ok && bad++ < 3)
                fprintf(stderr, "  %s round trip: \"%s\" -> \"%s\"\n", names[k], want,
                        dec ? dec : "(failed)");
            check_stream(names[k], tok, ids, (size_t)count, true, want, wl);
            free(want);
            free(dec);
        }
        CHECK(bad == 0, "%s: %d of 300 random texts do not round trip", names[k], bad);
        clattn_tokenizer_destroy(tok);
    }
}

/* ---- bad input ------------------------------------------------------------ */

static char tmp[64];

/* Writes text as tmp/tokenizer.json and expects load to fail with st and a
 * message holding msg. */
static void expect_bad(const char *what, const char *text, clattn_status st, const char *msg)
{
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    test_write_text(path, text);
    clattn_tokenizer *tok = (clattn_tokenizer *)1;
    clattn_status got = clattn_tokenizer_load(tmp, &tok);
    CHECK(got == st, "%s: status %s, want %s (%s)", what, clattn_status_str(got),
          clattn_status_str(st), clattn_last_error());
    CHECK(tok == NULL, "%s: *out not NULL on failure", what);
    CHECK(strstr(clattn_last_error(), msg) && strstr(clattn_last_error(), "tokenizer.json"),
          "%s: message \"%s\" lacks \"%s\" or the file", what, clattn_last_error(), msg);
    clattn_tokenizer_destroy(tok);
}

static void test_bad(const char *fixtures)
{
    snprintf(tmp, sizeof tmp, "/tmp/clattn-bpe-XXXXXX");
    if (!mkdtemp(tmp)) {
        CHECK(false, "mkdtemp failed");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/gpt2/tokenizer.json", fixtures);
    char *good = test_read_text(path);
    CHECK(good != NULL, "cannot read %s", path);
    if (!good)
        return;
    /* Truncated at many points: always a clean failure. */
    size_t n = strlen(good);
    int bad_trunc = 0;
    for (size_t cut = 0; cut < n; cut += n / 23 + 1) {
        char *t = strndup(good, cut);
        snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
        test_write_text(path, t);
        clattn_tokenizer *tok = NULL;
        clattn_status st = clattn_tokenizer_load(tmp, &tok);
        bad_trunc += st != CLATTN_ERR_FORMAT || tok != NULL || !*clattn_last_error();
        clattn_tokenizer_destroy(tok);
        free(t);
    }
    CHECK(bad_trunc == 0, "%d truncated files not refused as FORMAT", bad_trunc);
    free(good);

    const char *model = "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                        "\"merges\":[\"a b\"]}";
    char buf[2048];
    snprintf(buf, sizeof buf, "{%s}", model);
    /* A minimal valid one first: the cases below differ from it in one thing. */
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    test_write_text(path, buf);
    clattn_tokenizer *tok = NULL;
    CHECK_OK(clattn_tokenizer_load(tmp, &tok));
    if (tok) {
        int64_t ids[4];
        int32_t count = 0;
        CHECK_OK(clattn_tokenizer_encode_ex(tok, "abab", 4, true, 0, ids, 4, &count));
        CHECK(count == 2 && ids[0] == 2 && ids[1] == 2, "minimal: \"abab\" -> %d ids", count);
        /* Decoder null: tokens joined by ' '. */
        char text[16];
        size_t len;
        CHECK_OK(clattn_tokenizer_decode(tok, ids, 2, false, text, sizeof text, &len));
        CHECK(strcmp(text, "ab ab") == 0, "minimal decode \"%s\"", text);
        CHECK_STATUS(clattn_tokenizer_decode(tok, ids, 2, false, text, 3, &len),
                     CLATTN_ERR_INVALID_ARG);
        CHECK(len == 5, "needed length %zu", len);
        int64_t neg = -1;
        CHECK_STATUS(clattn_tokenizer_decode(tok, &neg, 1, false, text, sizeof text, &len),
                     CLATTN_ERR_INVALID_ARG);
        CHECK_STATUS(clattn_tokenizer_encode_ex(tok, "abab", 4, true, 0, ids, 1, &count),
                     CLATTN_ERR_INVALID_ARG);
        CHECK(clattn_tokenizer_bos_id(tok) == -1 && clattn_tokenizer_eos_id(tok) == -1,
              "minimal: no bos/eos");
        /* The stream decoder: too little room leaves it as it was. */
        clattn_detokenizer *d = NULL;
        CHECK_OK(clattn_detokenizer_create(tok, false, &d));
        if (d) {
            CHECK_OK(clattn_detokenizer_push(d, 2, text, sizeof text, &len));
            CHECK(strcmp(text, "ab") == 0, "stream: first \"%s\"", text);
            CHECK_OK(clattn_detokenizer_push(d, 2, NULL, 0, &len));
            CHECK(len == 3, "stream: measured %zu, want 3", len);
            CHECK_STATUS(clattn_detokenizer_push(d, 2, text, 3, &len), CLATTN_ERR_INVALID_ARG);
            CHECK(len == 3, "stream: needed %zu", len);
            CHECK_OK(clattn_detokenizer_push(d, 2, text, sizeof text, &len));
            CHECK(strcmp(text, " ab") == 0 && len == 3, "stream: second \"%s\"", text);
            CHECK_OK(clattn_detokenizer_push(d, 77, text, sizeof text, &len));
            CHECK(len == 0 && text[0] == '\0', "stream: an id without a token adds nothing");
            CHECK_STATUS(clattn_detokenizer_push(d, -5, text, sizeof text, &len),
                         CLATTN_ERR_INVALID_ARG);
            CHECK_OK(clattn_detokenizer_flush(d, text, sizeof text, &len));
            CHECK(len == 0, "stream: flush gave %zu bytes", len);
            CHECK_OK(clattn_detokenizer_push(d, 2, text, sizeof text, &len));
            CHECK(strcmp(text, "ab") == 0, "stream: after flush \"%s\" (a new text)", text);
            clattn_detokenizer_destroy(d);
        }
        clattn_detokenizer_destroy(NULL);
        clattn_tokenizer_destroy(tok);
    }
    expect_bad("wrong type", "{\"model\":{\"type\":\"BPE\",\"vocab\":[1,2],\"merges\":[]}}",
               CLATTN_ERR_FORMAT, "vocab");
    expect_bad("id type", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}",
               CLATTN_ERR_FORMAT, "'a'");
    expect_bad("merges type", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}",
               CLATTN_ERR_FORMAT, "merges");
    expect_bad("merge form",
               "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}",
               CLATTN_ERR_FORMAT, "merges[0]");
    expect_bad("merge token",
               "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\",\"a\"]]}}",
               CLATTN_ERR_FORMAT, "'aa' is not in the vocabulary");
    expect_bad("unk", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
               "\"unk_token\":\"<unk>\"}}", CLATTN_ERR_FORMAT, "<unk>");
    expect_bad("model type", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}",
               CLATTN_ERR_UNSUPPORTED, "Unigram");
    expect_bad("model not object", "{\"model\":3}", CLATTN_ERR_FORMAT, "model");
    snprintf(buf, sizeof buf, "{%s,\"pre_tokenizer\":{\"type\":\"Whitespace\"}}", model);
    expect_bad("pre-tokenizer", buf, CLATTN_ERR_UNSUPPORTED, "Whitespace");
    snprintf(buf, sizeof buf, "{%s,\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":"
             "{\"Regex\":\"\\\\d+\"},\"behavior\":\"Isolated\",\"invert\":false}}", model);
    expect_bad("split pattern", buf, CLATTN_ERR_UNSUPPORTED, "\\d+");
    snprintf(buf, sizeof buf, "{%s,\"normalizer\":{\"type\":\"NFKC\"}}", model);
    expect_bad("normalizer", buf, CLATTN_ERR_UNSUPPORTED, "NFKC");
    snprintf(buf, sizeof buf, "{%s,\"decoder\":{\"type\":\"WordPiece\"}}", model);
    expect_bad("decoder", buf, CLATTN_ERR_UNSUPPORTED, "WordPiece");
    snprintf(buf, sizeof buf, "{%s,\"decoder\":7}", model);
    expect_bad("decoder type", buf, CLATTN_ERR_UNSUPPORTED, "decoder");
    snprintf(buf, sizeof buf, "{%s,\"normalizer\":{\"type\":\"Replace\",\"pattern\":"
             "{\"Regex\":\" +\"},\"content\":\" \"}}", model);
    expect_bad("regex Replace", buf, CLATTN_ERR_UNSUPPORTED, "regex patterns");
    snprintf(buf, sizeof buf, "{%s,\"added_tokens\":[{\"id\":\"5\",\"content\":\"x\"}]}", model);
    expect_bad("added id", buf, CLATTN_ERR_FORMAT, "id");
    snprintf(buf, sizeof buf, "{%s,\"post_processor\":{\"type\":\"RobertaProcessing\"}}", model);
    expect_bad("post-processor", buf, CLATTN_ERR_UNSUPPORTED, "RobertaProcessing");
    snprintf(buf, sizeof buf, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
             "\"dropout\":0.1}}");
    expect_bad("dropout", buf, CLATTN_ERR_UNSUPPORTED, "dropout");
    snprintf(buf, sizeof buf, "{%s,\"extra\":1}", model);
    expect_bad("unknown key", buf, CLATTN_ERR_UNSUPPORTED, "extra");
    /* A bad tokenizer_config.json beside a good tokenizer.json. */
    snprintf(buf, sizeof buf, "{%s}", model);
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    test_write_text(path, buf);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tmp);
    test_write_text(path, "{\"tokenizer_class\":\"LlamaTokenizer\"}");
    tok = (clattn_tokenizer *)1;
    CHECK_STATUS(clattn_tokenizer_load(tmp, &tok), CLATTN_ERR_FORMAT);
    CHECK_MSG("bos_token '<s>' is not a token");
    test_write_text(path, "{\"bos_token\": 3");
    CHECK_STATUS(clattn_tokenizer_load(tmp, &tok), CLATTN_ERR_FORMAT);
    CHECK_MSG("tokenizer_config.json");
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    unlink(path);
    rmdir(tmp);

    /* WordPiece decoding is not there: said so. */
    CHECK_STATUS(clattn_tokenizer_decode(NULL, NULL, 0, false, NULL, 0, NULL),
                 CLATTN_ERR_INVALID_ARG);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_bpe FIXTURE_DIR\n");
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/expected.json", argv[1]);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!root) {
        fprintf(stderr, "%s: %s (run tests/fixtures/make_bpe_fixtures.py)\n", path, jerr.text);
        return 1;
    }
    json_t *texts = json_object_get(root, "texts");
    size_t i;
    json_t *spec;
    json_array_foreach(json_object_get(root, "tokenizers"), i, spec)
        check_tokenizer(argv[1], spec, texts);
    json_array_foreach(json_object_get(root, "variants"), i, spec)
        test_variant(argv[1], spec, texts);
    printf("%d text encodings checked, %d failed; %d stream pieces\n", texts_checked,
           texts_failed, stream_pieces);
    test_classes(root);
    json_decref(root);
    test_round_trip(argv[1]);
    test_bad(argv[1]);
    return test_summary("test_bpe");
}
