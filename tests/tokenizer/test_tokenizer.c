/* test_tokenizer.c - the BERT tokenizer against Hugging Face's fast
 * tokenizer: ids identical for every text of a corpus (tests/fixtures/
 * tokenizer, made by make_tokenizer_fixtures.py), with two tiny tokenizers
 * made by the script (tokenizer.json and vocab.txt), always, and with
 * all-MiniLM-L6-v2 (models/, fetched by tools/fetch-model), whose absence
 * is a failure; every code point's normalization and pre-tokenization
 * against a hash of the crate's answers; bad files, each refused with the
 * right status and a message naming the file; invalid UTF-8 and odd calls.
 * Needs no device.
 *
 * Usage: test_tokenizer FIXTURE_DIR MODEL_DIR
 *        test_tokenizer --dump-classes [raw]   (for make_tokenizer_unicode_table.py) */
#define _GNU_SOURCE /* mkdtemp */
#include "testutil.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <utf8proc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the per-code-point dump -------------------------------------------- */

typedef struct sink {
    FILE *out;                  /* print, or ... */
    uint64_t hash;              /* ... hash (FNV-1a 64) */
} sink;

static void emit(sink *s, const char *text)
{
    if (s->out) {
        fputs(text, s->out);
        return;
    }
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        s->hash ^= *p;
        s->hash *= 0x100000001b3ull;
    }
}

/* One line per scalar value: the three normalizations, then how many words
 * BertPreTokenizer makes of "a" c "a" (2: whitespace, 3: punctuation). */
static void dump_classes(sink *s, bool raw)
{
    clattn__bert_norm o[3] = {{true, true, true, true, raw},
                              {true, true, false, true, raw},
                              {false, false, true, false, raw}};
    char line[256];
    clattn__u32vec v = {0};
    for (uint32_t c = 0; c <= 0x10FFFF; c++) {
        if (c >= 0xD800 && c <= 0xDFFF)
            continue;
        int n = snprintf(line, sizeof line, "%X", c);
        for (int k = 0; k < 3; k++) {
            v.len = 0;
            if (!clattn__bert_normalize(&o[k], &c, 1, &v))
                abort();
            n += snprintf(line + n, sizeof line - (size_t)n, " ");
            for (size_t i = 0; i < v.len; i++)
                n += snprintf(line + n, sizeof line - (size_t)n, "%s%X", i ? "," : "", v.data[i]);
            if (!v.len)
                n += snprintf(line + n, sizeof line - (size_t)n, "-");
        }
        bool punct = raw ? clattn__is_bert_punct_raw(c) : clattn__is_bert_punct(c);
        snprintf(line + n, sizeof line - (size_t)n, " %d\n",
                 clattn__is_bert_whitespace(c) ? 2 : punct ? 3 : 1);
        emit(s, line);
    }
    free(v.data);
}

/* ---- helpers -------------------------------------------------------------- */

static char tmp[64];

static const char *path_in(const char *dir, const char *name)
{
    static char buf[4][1024];
    static int k;
    char joined[sizeof buf[0]];
    snprintf(joined, sizeof joined, "%s/%s", dir, name); /* dir may be an earlier buf */
    k = (k + 1) % 4;
    memcpy(buf[k], joined, sizeof joined);
    return buf[k];
}

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

/* Encodes every text of a fixture and compares with the ids under key. */
static void check_corpus(const char *what, const clattn_tokenizer *tok, json_t *texts,
                         const char *key)
{
    int matched = 0, total = 0;
    size_t i;
    json_t *e;
    json_array_foreach(texts, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *hex = json_string_value(json_object_get(e, "hex"));
        json_t *want = json_object_get(e, key);
        int32_t max_len = (int32_t)json_integer_value(json_object_get(e, "max_len"));
        unsigned char *bytes = malloc(strlen(hex) / 2 + 1);
        size_t len = unhex(hex, bytes);
        int32_t need = -1;
        total++;
        CHECK_OK(clattn_tokenizer_encode(tok, (const char *)bytes, len, max_len, NULL, 0, &need));
        int64_t *ids = malloc(((size_t)(need > 0 ? need : 1)) * sizeof *ids);
        int32_t count = -1;
        CHECK_OK(clattn_tokenizer_encode(tok, (const char *)bytes, len, max_len, ids, need,
                                         &count));
        bool same = count == (int32_t)json_array_size(want);
        for (int32_t k = 0; same && k < count; k++)
            same = ids[k] == json_integer_value(json_array_get(want, (size_t)k));
        CHECK(same, "%s: '%s': ids differ from Hugging Face's (%d ids, expected %zu)", what, name,
              count, json_array_size(want));
        if (!same) {
            fprintf(stderr, "   got:     ");
            for (int32_t k = 0; k < count && k < 40; k++)
                fprintf(stderr, " %lld", (long long)ids[k]);
            fprintf(stderr, "\n   expected:");
            for (size_t k = 0; k < json_array_size(want) && k < 40; k++)
                fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(want, k)));
            fprintf(stderr, "\n");
        }
        matched += same;
        free(ids);
        free(bytes);
    }
    printf("%s: %d of %d texts identical to Hugging Face\n", what, matched, total);
}

static json_t *load_fixture(const char *path)
{
    json_error_t err;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!j) {
        fprintf(stderr, "FAIL %s: %s\n", path, err.text);
        exit(1);
    }
    return j;
}

/* ---- the corpora ------------------------------------------------------------- */

static void test_tiny(const char *fixtures)
{
    json_t *fx = load_fixture(path_in(fixtures, "tiny.json"));
    json_t *texts = json_object_get(fx, "texts");
    int32_t vs = (int32_t)json_integer_value(json_object_get(fx, "vocab_size"));
    clattn_tokenizer *tok = NULL;
    CHECK_OK(clattn_tokenizer_load(path_in(fixtures, "tiny"), &tok));
    if (tok) {
        CHECK(clattn_tokenizer_vocab_size(tok) == vs, "tiny vocab size %d, want %d",
              clattn_tokenizer_vocab_size(tok), vs);
        CHECK(clattn_tokenizer_max_length(tok) == 16, "tiny max_length %d",
              clattn_tokenizer_max_length(tok));
        CHECK(clattn_tokenizer_token_id(tok, "[SEP]") == 3, "[SEP] id");
        CHECK(clattn_tokenizer_token_id(tok, "##able") > 0, "##able id");
        CHECK(clattn_tokenizer_token_id(tok, "nonexistent") == -1, "missing token id");
        check_corpus("tiny tokenizer.json", tok, texts, "ids");
    }
    clattn_tokenizer_destroy(tok);
    tok = NULL;
    CHECK_OK(clattn_tokenizer_load(path_in(fixtures, "tiny_vocab"), &tok));
    if (tok) {
        CHECK(clattn_tokenizer_vocab_size(tok) == vs, "tiny vocab.txt size");
        CHECK(clattn_tokenizer_max_length(tok) == 24, "tiny vocab.txt max_length %d",
              clattn_tokenizer_max_length(tok));
        check_corpus("tiny vocab.txt", tok, texts, "ids_vocab_txt");
    }
    clattn_tokenizer_destroy(tok);
    json_decref(fx);
}

static void test_model(const char *fixtures, const char *model)
{
    struct stat sb;
    if (stat(path_in(model, "tokenizer.json"), &sb) != 0) {
        CHECK(false, "%s/tokenizer.json is missing: run tools/fetch-model to fetch "
              "all-MiniLM-L6-v2 (tools/check does this first)", model);
        return;
    }
    json_t *fx = load_fixture(path_in(fixtures, "minilm.json"));
    json_t *texts = json_object_get(fx, "texts");
    clattn_tokenizer *tok = NULL;
    CHECK_OK(clattn_tokenizer_load(model, &tok));
    if (tok) {
        CHECK(clattn_tokenizer_vocab_size(tok) == 30522, "vocab size %d",
              clattn_tokenizer_vocab_size(tok));
        CHECK(clattn_tokenizer_token_id(tok, "[PAD]") == 0 &&
                  clattn_tokenizer_token_id(tok, "[UNK]") == 100 &&
                  clattn_tokenizer_token_id(tok, "[CLS]") == 101 &&
                  clattn_tokenizer_token_id(tok, "[SEP]") == 102,
              "special ids");
        CHECK(clattn_tokenizer_max_length(tok) ==
                  (int32_t)json_integer_value(json_object_get(fx, "default_max_length")),
              "max_length %d", clattn_tokenizer_max_length(tok));
        check_corpus("all-MiniLM-L6-v2 tokenizer.json", tok, texts, "ids");
    }
    clattn_tokenizer_destroy(tok);

    /* The vocab.txt path on the same model. */
    char *vocab = test_read_text(path_in(model, "vocab.txt"));
    char *config = test_read_text(path_in(model, "tokenizer_config.json"));
    CHECK(vocab && config, "model vocab.txt / tokenizer_config.json unreadable");
    if (vocab && config) {
        char d[1024];
        snprintf(d, sizeof d, "%s/minilm_vocab", tmp);
        mkdir(d, 0700);
        test_write_text(path_in(d, "vocab.txt"), vocab);
        test_write_text(path_in(d, "tokenizer_config.json"), config);
        tok = NULL;
        CHECK_OK(clattn_tokenizer_load(d, &tok));
        if (tok)
            check_corpus("all-MiniLM-L6-v2 vocab.txt", tok, texts, "ids_vocab_txt");
        clattn_tokenizer_destroy(tok);
        unlink(path_in(d, "vocab.txt"));
        unlink(path_in(d, "tokenizer_config.json"));
        rmdir(d);
    }
    free(vocab);
    free(config);
    json_decref(fx);
}

static void test_unicode(const char *fixtures)
{
    json_t *fx = load_fixture(path_in(fixtures, "unicode.json"));
    const char *want = json_string_value(json_object_get(fx, "fnv1a64"));
    sink s = {NULL, 0xcbf29ce484222325ull};
    dump_classes(&s, false);
    char got[32];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)s.hash);
    CHECK(want && strcmp(got, want) == 0,
          "normalization or pre-tokenization of some code point differs from the tokenizers "
          "crate (hash %s, expected %s; utf8proc %s): regenerate the table with "
          "tests/fixtures/make_tokenizer_unicode_table.py to see which",
          got, want ? want : "?", utf8proc_version());
    json_decref(fx);
}

/* ---- bad files and calls ------------------------------------------------------ */

static const char *TINY_JSON_HEAD =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],";

static void expect_bad(const char *what, const char *dir, clattn_status status,
                       const char *file, const char *fact)
{
    clattn_tokenizer *tok = (clattn_tokenizer *)&tok;
    clattn_status st = clattn_tokenizer_load(dir, &tok);
    const char *msg = clattn_last_error();
    CHECK(st == status, "%s: got %s, expected %s: %s", what, clattn_status_str(st),
          clattn_status_str(status), msg);
    if (status == CLATTN_OK) {
        if (st == CLATTN_OK)
            clattn_tokenizer_destroy(tok);
        return;
    }
    CHECK(tok == NULL, "%s: out not cleared", what);
    CHECK(strstr(msg, file) != NULL && strstr(msg, fact) != NULL,
          "%s: message should name %s and contain \"%s\": %s", what, file, fact, msg);
    if (st == CLATTN_OK)
        clattn_tokenizer_destroy(tok);
}

static void bad_json(const char *what, const char *body, clattn_status status, const char *fact)
{
    char d[1024];
    snprintf(d, sizeof d, "%s/bad", tmp);
    mkdir(d, 0700);
    char text[4096];
    snprintf(text, sizeof text, "%s%s", TINY_JSON_HEAD, body);
    test_write_text(path_in(d, "tokenizer.json"), text);
    expect_bad(what, d, status, "bad/tokenizer.json", fact);
    unlink(path_in(d, "tokenizer.json"));
}

#define NORM "\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true," \
             "\"handle_chinese_chars\":true,\"strip_accents\":null,\"lowercase\":true},"
#define PRE "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
#define POST "\"post_processor\":null,\"decoder\":null,"
#define MODEL(type, vocab) "\"model\":{\"type\":\"" type "\",\"unk_token\":\"[UNK]\"," \
             "\"continuing_subword_prefix\":\"##\",\"max_input_chars_per_word\":100," \
             "\"vocab\":{" vocab "}}}"

static void test_bad_files(void)
{
    char d[1024];
    snprintf(d, sizeof d, "%s/empty", tmp);
    mkdir(d, 0700);
    expect_bad("empty folder", d, CLATTN_ERR_IO, "empty", "neither tokenizer.json nor vocab.txt");
    rmdir(d);
    expect_bad("missing folder", "/nonexistent/clattn", CLATTN_ERR_IO, "/nonexistent/clattn",
               "tokenizer.json");

    /* A valid minimal file first, so the bad ones differ in one thing. */
    bad_json("minimal valid", NORM PRE POST MODEL("WordPiece", "\"[UNK]\":0,\"a\":1"),
             CLATTN_OK, "");
    bad_json("malformed JSON", NORM PRE "\"model\": {", CLATTN_ERR_FORMAT, "line");
    bad_json("duplicate key", NORM NORM PRE POST MODEL("WordPiece", "\"[UNK]\":0"),
             CLATTN_ERR_FORMAT, "duplicate");
    bad_json("no unk", NORM PRE POST MODEL("WordPiece", "\"[PAD]\":0,\"a\":1"),
             CLATTN_ERR_FORMAT, "no unk token '[UNK]'");
    /* BPE loads (test_bpe.c), but not with BERT's normalizer; Unigram not at all. */
    bad_json("BPE model", NORM PRE POST MODEL("BPE", "\"[UNK]\":0"), CLATTN_ERR_UNSUPPORTED,
             "normalizer 'BertNormalizer'");
    bad_json("Unigram model", NORM PRE POST MODEL("Unigram", "\"[UNK]\":0"),
             CLATTN_ERR_UNSUPPORTED, "model 'Unigram'");
    bad_json("NFKC normalizer", "\"normalizer\":{\"type\":\"NFKC\"}," PRE POST
             MODEL("WordPiece", "\"[UNK]\":0"), CLATTN_ERR_UNSUPPORTED, "normalizer 'NFKC'");
    bad_json("unknown normalizer key", "\"normalizer\":{\"type\":\"BertNormalizer\","
             "\"lowercase\":true,\"fancy\":1}," PRE POST MODEL("WordPiece", "\"[UNK]\":0"),
             CLATTN_ERR_UNSUPPORTED, "'fancy'");
    bad_json("Whitespace pre-tokenizer", NORM "\"pre_tokenizer\":{\"type\":\"Whitespace\"},"
             POST MODEL("WordPiece", "\"[UNK]\":0"), CLATTN_ERR_UNSUPPORTED,
             "pre_tokenizer 'Whitespace'");
    bad_json("Roberta post-processor", NORM PRE "\"post_processor\":{\"type\":"
             "\"RobertaProcessing\"}," MODEL("WordPiece", "\"[UNK]\":0"), CLATTN_ERR_UNSUPPORTED,
             "post_processor 'RobertaProcessing'");
    /* Found by fuzz_tokenizer_load: a template id with no token. */
    bad_json("template id outside the vocabulary", NORM PRE "\"post_processor\":{\"type\":"
             "\"BertProcessing\",\"sep\":[\"[SEP]\",6],\"cls\":[\"[CLS]\",2]},"
             MODEL("WordPiece", "\"[UNK]\":0,\"[CLS]\":2,\"[SEP]\":3"), CLATTN_ERR_FORMAT,
             "id 6 is no token");
    bad_json("string id", NORM PRE POST MODEL("WordPiece", "\"[UNK]\":\"0\""),
             CLATTN_ERR_FORMAT, "the id of '[UNK]'");
    bad_json("lowercase not bool", "\"normalizer\":{\"type\":\"BertNormalizer\","
             "\"lowercase\":1}," PRE POST MODEL("WordPiece", "\"[UNK]\":0"),
             CLATTN_ERR_FORMAT, "'lowercase'");

    /* vocab.txt without [UNK], and a config naming another tokenizer. */
    snprintf(d, sizeof d, "%s/vocab", tmp);
    mkdir(d, 0700);
    test_write_text(path_in(d, "vocab.txt"), "[PAD]\n[CLS]\n[SEP]\nhello\n");
    expect_bad("vocab.txt without [UNK]", d, CLATTN_ERR_FORMAT, "vocab/vocab.txt",
               "no unk token");
    test_write_text(path_in(d, "vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n");
    test_write_text(path_in(d, "tokenizer_config.json"), "{\"tokenizer_class\": \"XLNetTokenizer\"}");
    expect_bad("other tokenizer_class", d, CLATTN_ERR_UNSUPPORTED,
               "vocab/tokenizer_config.json", "XLNetTokenizer");
    test_write_text(path_in(d, "tokenizer_config.json"), "{\"do_lower_case\": tru");
    expect_bad("malformed config", d, CLATTN_ERR_FORMAT, "vocab/tokenizer_config.json", "line");
    test_write_text(path_in(d, "tokenizer_config.json"), "{\"do_lower_case\": false}");
    clattn_tokenizer *tok = NULL;
    CHECK_OK(clattn_tokenizer_load(d, &tok));
    if (tok) {
        int64_t ids[8];
        int32_t n = 0;
        CHECK_OK(clattn_tokenizer_encode(tok, "hello Hello", 11, 0, ids, 8, &n));
        CHECK(n == 4 && ids[0] == 2 && ids[1] == 4 && ids[2] == 1 && ids[3] == 3,
              "cased vocab.txt: %d ids", n);
    }
    clattn_tokenizer_destroy(tok);
    unlink(path_in(d, "vocab.txt"));
    unlink(path_in(d, "tokenizer_config.json"));
    rmdir(d);
    rmdir(path_in(tmp, "bad"));
}

static void test_calls(const char *fixtures)
{
    clattn_tokenizer *tok = NULL;
    CHECK_STATUS(clattn_tokenizer_load(NULL, &tok), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_tokenizer_load(fixtures, NULL), CLATTN_ERR_INVALID_ARG);
    clattn_tokenizer_destroy(NULL);
    CHECK(clattn_tokenizer_vocab_size(NULL) == 0 && clattn_tokenizer_token_id(NULL, "a") == -1,
          "NULL queries");
    CHECK_OK(clattn_tokenizer_load(path_in(fixtures, "tiny"), &tok));
    if (!tok)
        return;
    int64_t ids[64];
    int32_t n = 99;
    CHECK_STATUS(clattn_tokenizer_encode(tok, NULL, 3, 0, ids, 64, &n), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_tokenizer_encode(tok, "a", 1, -1, ids, 64, &n), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_tokenizer_encode(tok, "a", 1, 1, ids, 64, &n), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_tokenizer_encode(tok, "a b c", 5, 0, ids, 3, &n), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "5 ids") != NULL, "capacity message: %s",
          clattn_last_error());
    CHECK(n == 99, "count touched on failure");
    CHECK_OK(clattn_tokenizer_encode(tok, NULL, 0, 0, ids, 64, &n));
    CHECK(n == 2 && ids[0] == 2 && ids[1] == 3, "NULL empty text: %d ids", n);

    /* Random bytes never crash, and give [CLS] ... [SEP]. */
    test_seed(7);
    unsigned char junk[300];
    for (int round = 0; round < 300; round++) {
        size_t len = (size_t)(test_uniform(0, 300));
        for (size_t i = 0; i < len; i++)
            junk[i] = (unsigned char)test_uniform(0, 256);
        int32_t need = 0;
        clattn_status st = clattn_tokenizer_encode(tok, (const char *)junk, len, 10000, NULL, 0,
                                                   &need);
        test_checks++;
        if (st != CLATTN_OK || need < 2) {
            test_failures++;
            fprintf(stderr, "FAIL random bytes round %d: %s\n", round, clattn_last_error());
            continue;
        }
        int64_t *out = malloc((size_t)need * sizeof *out);
        CHECK_OK(clattn_tokenizer_encode(tok, (const char *)junk, len, 10000, out, need, &n));
        CHECK(n == need && out[0] == 2 && out[n - 1] == 3, "random bytes round %d", round);
        free(out);
    }
    clattn_tokenizer_destroy(tok);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--dump-classes") == 0) {
        sink s = {stdout, 0};
        dump_classes(&s, argc >= 3 && strcmp(argv[2], "raw") == 0);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: test_tokenizer FIXTURE_DIR MODEL_DIR\n");
        return 2;
    }
    snprintf(tmp, sizeof tmp, "/tmp/clattn-tok-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_tiny(argv[1]);
    test_calls(argv[1]);
    test_bad_files();
    test_unicode(argv[1]);
    test_model(argv[1], argv[2]);
    rmdir(tmp);
    return test_summary("test_tokenizer");
}
