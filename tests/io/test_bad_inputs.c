/* test_bad_inputs.c - the bad-input catalogue of the public loaders (issue
 * #17): one table of cases, each a small change to a valid fixture made on
 * the fly in a temporary folder, the loader it goes to, the exact status
 * expected and a fragment of the message. The classes: missing, empty and
 * truncated files; wrong dtypes and shapes; NaN and Inf weights; unknown
 * keys and values; huge, zero and negative sizes; invalid UTF-8 in JSON
 * strings and in texts; over-long texts; bogus device selectors.
 *
 * Loaders: clattn_weights_open, clattn_model_load, clattn_module_load,
 * clattn_embedder_load (a copy of all-MiniLM-L6-v2, when models/ has it),
 * clattn_tokenizer_load (WordPiece tokenizer.json and vocab.txt, BPE),
 * clattn_lm_load, clattn_ctx_create (params.device and CLATTN_DEVICE) and
 * clattn_device_select; then clattn_tokenizer_encode on texts, and an
 * embedder batch too large for the device (with the model). Every
 * failing case must also leave the out-pointer NULL. The CLIs' catalogue,
 * the .npy reader included, is tests/tools/test_bad_inputs.py.
 *
 * A copy is made of symbolic links to the fixture's files, except the one
 * file the case changes, which is copied first. Nothing runs a forward
 * pass, so this is quick on every device.
 * Arguments: the fixtures folder, the models folder. */
#define _GNU_SOURCE /* memmem, mkdtemp, realpath, symlink */
#include "core/core.h" /* the device-memory total and live-buffer count */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the table ----------------------------------------------------------- */

typedef enum loader {
    L_WEIGHTS,                     /* clattn_weights_open(folder/file) */
    L_MODEL,                       /* clattn_model_load(folder) */
    L_MODULE,                      /* clattn_module_load(module of the intact folder, file) */
    L_EMBEDDER,                    /* clattn_embedder_load(folder) */
    L_TOKENIZER,                   /* clattn_tokenizer_load(folder) */
    L_LM,                          /* clattn_lm_load(folder) */
    L_CTX,                         /* clattn_ctx_create, params.device = from */
    L_CTX_ENV,                     /* clattn_ctx_create(NULL), CLATTN_DEVICE = from */
    L_SELECT                       /* clattn_device_select(from) */
} loader;

typedef enum mutation {
    M_NONE,
    M_DELETE,                      /* the file is removed */
    M_EMPTY,                       /* cut to 0 bytes */
    M_TRUNCATE,                    /* n bytes kept (n < 0: -n bytes removed from the end) */
    M_REPLACE,                     /* the first `from` becomes `to` (a safetensors
                                      header's length follows the change) */
    M_HEADER_LEN,                  /* a safetensors file's 8-byte header length set to n */
    M_POKE                         /* F32 tensor `from`, flat index n, set to strtof(to) */
} mutation;

typedef struct bad_case {
    loader loader;
    const char *folder;            /* below the fixtures folder; "MINILM": the model */
    const char *file;              /* the file changed, relative to the folder */
    mutation mut;
    const char *from, *to;
    int64_t n;
    clattn_status want;
    const char *fragment;          /* in clattn_last_error() */
} bad_case;

#define ENC "modules/encoder_layer_post_relu"
#define STACK "modules/encoder_stack_norm"
#define LLAMA "lm/llama_gqa_f32"
#define GPT2 "lm/gpt2_f32"
#define WP "tokenizer/tiny"
#define VOCAB "tokenizer/tiny_vocab"
#define BPE "bpe/gpt2"
#define MINILM "MINILM"
#define ST "model.safetensors"
#define CFG "config.json"
#define TOK "tokenizer.json"
#define E_IO CLATTN_ERR_IO
#define E_FMT CLATTN_ERR_FORMAT
#define E_UNS CLATTN_ERR_UNSUPPORTED
#define E_ARG CLATTN_ERR_INVALID_ARG
#define E_DEV CLATTN_ERR_NO_DEVICE
#define E_OOM CLATTN_ERR_OUT_OF_MEMORY

static const bad_case cases[] = {
    /* safetensors files */
    {L_WEIGHTS, ENC, ST, M_DELETE, 0, 0, 0, E_IO, "model.safetensors"},
    {L_WEIGHTS, ENC, ST, M_EMPTY, 0, 0, 0, E_FMT, "model.safetensors"},
    {L_WEIGHTS, ENC, ST, M_TRUNCATE, 0, 0, 5, E_FMT, "model.safetensors"},
    {L_WEIGHTS, ENC, ST, M_TRUNCATE, 0, 0, 500, E_FMT, "model.safetensors"},
    {L_WEIGHTS, ENC, ST, M_TRUNCATE, 0, 0, -1, E_FMT, "model.safetensors"},
    {L_WEIGHTS, ENC, ST, M_HEADER_LEN, 0, 0, 1000000000000000LL, E_FMT, "header"},
    {L_WEIGHTS, ENC, ST, M_HEADER_LEN, 0, 0, 0, E_FMT, "header"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "{", "[", 0, E_FMT, "model.safetensors"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "\"dtype\":\"F32\"", "\"dtype\":\"X99\"", 0, E_FMT, "X99"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "\"shape\":[48]", "\"shape\":[49]", 0, E_FMT, "linear1.bias"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "\"shape\":[48]", "\"shape\":[-48]", 0, E_FMT, "linear1.bias"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "\"shape\":[48]", "\"shape\":[1,1,1,1,1,1,1,1,48]", 0, E_UNS,
     "linear1.bias"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "[0,192]", "[0,1000000000000000]", 0, E_FMT, "linear1.bias"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "[0,192]", "[-1,192]", 0, E_FMT, "linear1.bias"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "[0,192]", "[0,192],\"extra\":1", 0, E_FMT, "extra"},
    {L_WEIGHTS, ENC, ST, M_REPLACE, "linear1.bias", "linear1.\xff\xfe\xfd\xfc", 0, E_FMT,
     "unable to decode byte 0xff"},
    {L_WEIGHTS, LLAMA, ST, M_REPLACE, "{\"format\":\"pt\"}", "{\"format\":1}", 0, E_FMT,
     "__metadata__"},

    /* module folders: clattn_model_load, clattn_module_load */
    {L_MODEL, ENC, CFG, M_DELETE, 0, 0, 0, E_IO, "config.json"},
    {L_MODEL, ENC, ST, M_DELETE, 0, 0, 0, E_IO, "model.safetensors"},
    {L_MODEL, ENC, CFG, M_EMPTY, 0, 0, 0, E_FMT, "config.json"},
    {L_MODEL, ENC, CFG, M_TRUNCATE, 0, 0, 40, E_FMT, "config.json"},
    {L_MODEL, ENC, ST, M_TRUNCATE, 0, 0, -4, E_FMT, "model.safetensors"},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"d_model\": 32", "\"d_model\": 0", 0, E_FMT, "d_model"},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"d_model\": 32", "\"d_model\": -1", 0, E_FMT, "d_model"},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"d_model\": 32", "\"d_model\": 1000000000", 0, E_FMT,
     "d_model"},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"dim_feedforward\": 48", "\"dim_feedforward\": -48", 0,
     E_FMT, "dim_feedforward"},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"nhead\": 4", "\"nhead\": 5", 0, E_FMT, "nhead 5"},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"relu\"", "\"swish\"", 0, E_UNS, "not \"swish\""},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"relu\"", "\"rel\xff\"", 0, E_FMT, "config.json"},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"bias\": true", "\"bias\": true, \"flash\": 1", 0, E_UNS,
     "'flash'"},
    {L_MODEL, ENC, CFG, M_REPLACE, "\"norm_first\": false", "\"norm_first\": \"no\"", 0, E_FMT,
     "norm_first"},
    {L_MODEL, ENC, CFG, M_REPLACE, "torch.nn.TransformerEncoderLayer", "torch.nn.Mamba", 0,
     E_UNS, "torch.nn.Mamba"},
    {L_MODEL, STACK, CFG, M_REPLACE, "\"num_layers\": 3", "\"num_layers\": 100000", 0, E_FMT,
     "num_layers"},
    {L_MODEL, ENC, ST, M_REPLACE, "\"shape\":[48,32]", "\"shape\":[32,48]", 0, E_FMT,
     "linear1.weight"},
    {L_MODEL, ENC, ST, M_REPLACE, "\"dtype\":\"F32\"", "\"dtype\":\"I32\"", 0, E_UNS,
     "linear1.bias"},
    {L_MODEL, ENC, ST, M_POKE, "linear1.weight", "nan", 7, E_FMT, "linear1.weight"},
    {L_MODULE, ENC, ST, M_POKE, "linear2.weight", "inf", 0, E_FMT, "linear2.weight"},
    {L_MODULE, ENC, ST, M_POKE, "norm1.bias", "-inf", 31, E_FMT, "norm1.bias"},
    {L_MODULE, ENC, ST, M_REPLACE, "\"linear2.bias\"", "\"linear2.bxas\"", 0, E_FMT,
     "linear2.b"},
    {L_MODULE, ENC, ST, M_REPLACE, "\"shape\":[48,32]", "\"shape\":[48,2,16]", 0, E_FMT,
     "expects [48, 32]"},

    /* BERT folders (a copy of all-MiniLM-L6-v2) */
    {L_EMBEDDER, MINILM, CFG, M_DELETE, 0, 0, 0, E_IO, "config.json"},
    {L_EMBEDDER, MINILM, ST, M_DELETE, 0, 0, 0, E_IO, "model.safetensors"},
    {L_EMBEDDER, MINILM, CFG, M_EMPTY, 0, 0, 0, E_FMT, "config.json"},
    {L_EMBEDDER, MINILM, CFG, M_TRUNCATE, 0, 0, 100, E_FMT, "config.json"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"hidden_size\": 384", "\"hidden_size\": 0", 0, E_FMT,
     "hidden_size"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"hidden_size\": 384", "\"hidden_size\": -1", 0, E_FMT,
     "hidden_size"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"hidden_size\": 384", "\"hidden_size\": 1000000000",
     0, E_FMT, "hidden_size"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"num_hidden_layers\": 6",
     "\"num_hidden_layers\": 100000", 0, E_FMT, "num_hidden_layers"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"num_attention_heads\": 12",
     "\"num_attention_heads\": 7", 0, E_FMT, "num_attention_heads"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"intermediate_size\": 1536",
     "\"intermediate_size\": -1536", 0, E_FMT, "intermediate_size"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"max_position_embeddings\": 512",
     "\"max_position_embeddings\": 1000000000", 0, E_FMT, "max_position_embeddings"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"vocab_size\": 30522", "\"vocab_size\": -1", 0,
     E_FMT, "vocab_size"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"model_type\": \"bert\"",
     "\"model_type\": \"roberta\"", 0, E_UNS, "roberta"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"hidden_act\": \"gelu\"",
     "\"hidden_act\": \"swish\"", 0, E_UNS, "swish"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"absolute\"", "\"relative_key\"", 0, E_UNS,
     "relative_key"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"hidden_act\": \"gelu\"",
     "\"hidden_act\": \"g\xc3\x28lu\"", 0, E_FMT, "config.json"},
    {L_EMBEDDER, MINILM, CFG, M_REPLACE, "\"hidden_size\": 384", "\"hidden_size\": \"384\"", 0,
     E_FMT, "hidden_size"},
    {L_EMBEDDER, MINILM, "1_Pooling/config.json", M_REPLACE, "\"pooling_mode_cls_token\": false",
     "\"pooling_mode_cls_token\": true", 0, E_UNS, "pooling"},
    {L_EMBEDDER, MINILM, "modules.json", M_REPLACE, "sentence_transformers.models.Normalize",
     "sentence_transformers.models.Dense", 0, E_UNS, "Dense"},
    {L_EMBEDDER, MINILM, "modules.json", M_TRUNCATE, 0, 0, 30, E_FMT, "modules.json"},
    {L_EMBEDDER, MINILM, TOK, M_TRUNCATE, 0, 0, 5000, E_FMT, "tokenizer.json"},
    {L_EMBEDDER, MINILM, "sentence_bert_config.json", M_REPLACE, "\"max_seq_length\": 256",
     "\"max_seq_length\": 100000", 0, E_FMT, "max_seq_length"},
    {L_EMBEDDER, MINILM, ST, M_TRUNCATE, 0, 0, -100, E_FMT, "model.safetensors"},
    {L_EMBEDDER, MINILM, ST, M_REPLACE, "\"shape\":[384,384]", "\"shape\":[192,768]", 0, E_FMT,
     "[384, 384]"},
    {L_EMBEDDER, MINILM, ST, M_REPLACE, "\"dtype\":\"F32\"", "\"dtype\":\"I32\"", 0, E_UNS,
     "I32"},
    {L_EMBEDDER, MINILM, ST, M_POKE, "embeddings.word_embeddings.weight", "nan", 1000, E_FMT,
     "embeddings.word_embeddings.weight"},

    /* tokenizers */
    {L_TOKENIZER, WP, TOK, M_DELETE, 0, 0, 0, E_IO, "tokenizer"},
    {L_TOKENIZER, WP, TOK, M_EMPTY, 0, 0, 0, E_FMT, "tokenizer.json"},
    {L_TOKENIZER, WP, TOK, M_TRUNCATE, 0, 0, 300, E_FMT, "tokenizer.json"},
    {L_TOKENIZER, WP, TOK, M_REPLACE, "\"WordPiece\"", "\"Unigram\"", 0, E_UNS, "Unigram"},
    {L_TOKENIZER, WP, TOK, M_REPLACE, "\"[MASK]\"", "\"[MA\xed\xa0\x80]\"", 0, E_FMT,
     "tokenizer.json"},
    {L_TOKENIZER, WP, TOK, M_REPLACE, "\"max_length\": 16", "\"max_length\": -5", 0, E_FMT,
     "max_length"},
    {L_TOKENIZER, WP, TOK, M_REPLACE, "\"max_length\": 16", "\"max_length\": 10000000000", 0,
     E_FMT, "max_length"},
    {L_TOKENIZER, VOCAB, "vocab.txt", M_DELETE, 0, 0, 0, E_IO, "vocab.txt"},
    {L_TOKENIZER, VOCAB, "vocab.txt", M_EMPTY, 0, 0, 0, E_FMT, "vocab.txt"},
    {L_TOKENIZER, VOCAB, "vocab.txt", M_REPLACE, "[MASK]", "[MA\xc0\xaf]", 0, E_FMT,
     "vocab.txt: line 5 is not valid UTF-8"},
    {L_TOKENIZER, VOCAB, "tokenizer_config.json", M_REPLACE, "\"do_lower_case\": true",
     "\"do_lower_case\": 7", 0, E_FMT, "do_lower_case"},
    {L_TOKENIZER, BPE, TOK, M_REPLACE, "\"type\":\"BPE\"", "\"type\":\"BPX\"", 0, E_UNS, "BPX"},
    {L_TOKENIZER, BPE, TOK, M_TRUNCATE, 0, 0, -2, E_FMT, "tokenizer.json"},
    {L_TOKENIZER, BPE, TOK, M_REPLACE, "\"<|endoftext|>\"", "\"<|endoftext|>\xff\"", 0, E_FMT,
     "tokenizer.json"},

    /* decoder model folders */
    {L_LM, LLAMA, CFG, M_DELETE, 0, 0, 0, E_IO, "config.json"},
    {L_LM, LLAMA, ST, M_DELETE, 0, 0, 0, E_IO, "safetensors"},
    {L_LM, LLAMA, TOK, M_TRUNCATE, 0, 0, 200, E_FMT, "tokenizer.json"},
    {L_LM, LLAMA, CFG, M_EMPTY, 0, 0, 0, E_FMT, "config.json"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"hidden_size\": 32", "\"hidden_size\": 0", 0, E_FMT,
     "hidden_size"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"hidden_size\": 32", "\"hidden_size\": -1", 0, E_FMT,
     "hidden_size"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"hidden_size\": 32", "\"hidden_size\": 1000000000", 0,
     E_FMT, "hidden_size"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 100000",
     0, E_FMT, "num_hidden_layers"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"vocab_size\": 320", "\"vocab_size\": 1000000000", 0, E_FMT,
     "config.json gives [1000000000, 32]"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", 0,
     E_FMT, "num_key_value_heads"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"rope_theta\": 10000.0", "\"rope_theta\": -1", 0, E_FMT,
     "rope_theta"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"model_type\": \"llama\"", "\"model_type\": \"mamba\"", 0,
     E_UNS, "mamba"},
    {L_LM, LLAMA, CFG, M_REPLACE, "\"silu\"", "\"si\xf0\x9f\"", 0, E_FMT, "config.json"},
    {L_LM, LLAMA, ST, M_TRUNCATE, 0, 0, -8, E_FMT, "model.safetensors"},
    {L_LM, LLAMA, ST, M_REPLACE, "[0,40960]", "[0,1000000000000000]", 0, E_FMT,
     "lm_head.weight"},
    {L_LM, LLAMA, ST, M_REPLACE, "\"dtype\":\"F32\"", "\"dtype\":\"I32\"", 0, E_UNS,
     "lm_head.weight"},
    {L_LM, LLAMA, ST, M_POKE, "model.embed_tokens.weight", "inf", 99, E_FMT,
     "model.embed_tokens.weight"},
    {L_LM, GPT2, CFG, M_REPLACE, "\"n_embd\": 32", "\"n_embd\": -32", 0, E_FMT, "n_embd"},

    /* device selectors */
    {L_CTX, "no-such-device-xyz", 0, M_NONE, 0, 0, 0, E_DEV, "no-such-device-xyz"},
    {L_CTX, "99999", 0, M_NONE, 0, 0, 0, E_DEV, "99999"},
    {L_CTX, "-1", 0, M_NONE, 0, 0, 0, E_DEV, "-1"},
    {L_CTX, "7:99", 0, M_NONE, 0, 0, 0, E_DEV, "7:99"},
    {L_CTX, "0:99999999999999999999", 0, M_NONE, 0, 0, 0, E_DEV, "0:99999999999999999999"},
    {L_CTX, "\xff\xfe", 0, M_NONE, 0, 0, 0, E_DEV, "\xff\xfe"},
    {L_CTX_ENV, "no-such-device-xyz", 0, M_NONE, 0, 0, 0, E_DEV, "no-such-device-xyz"},
    {L_CTX_ENV, "1:2:3", 0, M_NONE, 0, 0, 0, E_DEV, "1:2:3"},
    {L_SELECT, "no-such-device-xyz", 0, M_NONE, 0, 0, 0, E_DEV, "no-such-device-xyz"},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- files --------------------------------------------------------------- */

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static bool write_file(const char *path, const unsigned char *b, size_t n)
{
    unlink(path); /* a link to the fixture is replaced, never written through */
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* dst gets a link to each entry of src; the entry on the path of rel (the
 * file to change) is copied instead (a folder on the way: made, and
 * filled the same way). */
static bool copy_tree(const char *src, const char *dst, const char *rel)
{
    if (mkdir(dst, 0700) != 0)
        return false;
    DIR *d = opendir(src);
    if (!d)
        return false;
    bool ok = true;
    struct dirent *ent;
    while (ok && (ent = readdir(d))) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
            continue;
        char s[4096], t[4096];
        snprintf(s, sizeof s, "%s/%s", src, ent->d_name);
        snprintf(t, sizeof t, "%s/%s", dst, ent->d_name);
        size_t k = strlen(ent->d_name);
        if (rel && !strcmp(rel, ent->d_name)) {
            size_t n;
            unsigned char *b = read_file(s, &n);
            ok = b && write_file(t, b, n);
            free(b);
        } else if (rel && !strncmp(rel, ent->d_name, k) && rel[k] == '/') {
            ok = copy_tree(s, t, rel + k + 1);
        } else {
            char abs[4096];
            ok = realpath(s, abs) && symlink(abs, t) == 0;
        }
    }
    closedir(d);
    return ok;
}

static void remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *ent;
        while (d && (ent = readdir(d))) {
            if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
                continue;
            char s[4096];
            snprintf(s, sizeof s, "%s/%s", path, ent->d_name);
            remove_tree(s);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static bool is_safetensors(const char *path)
{
    size_t n = strlen(path);
    return n > 12 && !strcmp(path + n - 12, ".safetensors");
}

/* Applies the case's change to path; false (with a note) if the fixture
 * does not hold what the case changes, so the table stays honest. */
static bool mutate(const bad_case *c, const char *path)
{
    size_t n = 0;
    unsigned char *b = NULL;
    bool ok = false;
    switch (c->mut) {
    case M_NONE:
        return true;
    case M_DELETE:
        return unlink(path) == 0;
    case M_EMPTY:
        return write_file(path, (const unsigned char *)"", 0);
    case M_TRUNCATE:
        if (!(b = read_file(path, &n)))
            return false;
        ok = write_file(path, b, c->n >= 0 ? (size_t)c->n : n - (size_t)(-c->n));
        break;
    case M_HEADER_LEN:
        if (!(b = read_file(path, &n)) || n < 8)
            break;
        put_le64(b, (uint64_t)c->n);
        ok = write_file(path, b, n);
        break;
    case M_REPLACE: {
        if (!(b = read_file(path, &n)))
            return false;
        size_t lf = strlen(c->from), lt = strlen(c->to);
        unsigned char *at = memmem(b, n, c->from, lf);
        if (!at)
            break;
        size_t pos = (size_t)(at - b);
        unsigned char *o = malloc(n - lf + lt);
        memcpy(o, b, pos);
        memcpy(o + pos, c->to, lt);
        memcpy(o + pos + lt, b + pos + lf, n - pos - lf);
        if (is_safetensors(path) && pos >= 8 && pos < 8 + le64(b))
            put_le64(o, le64(b) + lt - lf);
        ok = write_file(path, o, n - lf + lt);
        free(o);
        break;
    }
    case M_POKE: {
        if (!(b = read_file(path, &n)) || n < 8)
            break;
        uint64_t hl = le64(b);
        json_error_t err;
        json_t *h = json_loadb((const char *)b + 8, hl, 0, &err);
        json_t *t = json_object_get(h, c->from);
        json_t *offs = json_object_get(t, "data_offsets");
        const char *dt = json_string_value(json_object_get(t, "dtype"));
        if (offs && dt && !strcmp(dt, "F32")) {
            size_t at = 8 + hl + (size_t)json_integer_value(json_array_get(offs, 0)) +
                        4 * (size_t)c->n;
            float v = strtof(c->to, NULL);
            memcpy(b + at, &v, 4);
            ok = write_file(path, b, n);
        }
        json_decref(h);
        break;
    }
    }
    free(b);
    if (!ok)
        fprintf(stderr, "note: cannot apply the change to %s\n", path);
    return ok;
}

/* ---- running a case ------------------------------------------------------ */

static const char *loader_name(loader l)
{
    static const char *names[] = {"clattn_weights_open", "clattn_model_load",
                                  "clattn_module_load", "clattn_embedder_load",
                                  "clattn_tokenizer_load", "clattn_lm_load",
                                  "clattn_ctx_create", "clattn_ctx_create($CLATTN_DEVICE)",
                                  "clattn_device_select"};
    return names[l];
}

/* Calls the case's loader on dir (or the selector); *leftover: the out
 * pointer was set although the call failed. */
static clattn_status run_loader(clattn_ctx *ctx, const bad_case *c, const char *src,
                                const char dir[2048], bool *leftover)
{
    char path[8192];
    clattn_status st = CLATTN_ERR_INTERNAL;
    *leftover = false;
    switch (c->loader) {
    case L_WEIGHTS: {
        clattn_weights *w = (clattn_weights *)1;
        snprintf(path, sizeof path, "%s/%s", dir, c->file);
        st = clattn_weights_open(path, &w);
        *leftover = st != CLATTN_OK && w != NULL;
        if (st == CLATTN_OK)
            clattn_weights_close(w);
        break;
    }
    case L_MODEL: {
        clattn_module *m = (clattn_module *)1;
        st = clattn_model_load(ctx, dir, &m);
        *leftover = st != CLATTN_OK && m != NULL;
        if (st == CLATTN_OK)
            clattn_module_destroy(m);
        break;
    }
    case L_MODULE: {
        clattn_module *m = NULL;
        clattn_weights *w = NULL;
        snprintf(path, sizeof path, "%s/%s", dir, c->file);
        if (clattn_model_load(ctx, src, &m) != CLATTN_OK ||
            clattn_weights_open(path, &w) != CLATTN_OK) {
            fprintf(stderr, "note: set-up failed: %s\n", clattn_last_error());
        } else {
            st = clattn_module_load(m, w, "");
        }
        clattn_weights_close(w);
        clattn_module_destroy(m);
        break;
    }
    case L_EMBEDDER: {
        clattn_embedder *e = (clattn_embedder *)1;
        st = clattn_embedder_load(ctx, dir, &e);
        *leftover = st != CLATTN_OK && e != NULL;
        if (st == CLATTN_OK)
            clattn_embedder_destroy(e);
        break;
    }
    case L_TOKENIZER: {
        clattn_tokenizer *t = (clattn_tokenizer *)1;
        st = clattn_tokenizer_load(dir, &t);
        *leftover = st != CLATTN_OK && t != NULL;
        if (st == CLATTN_OK)
            clattn_tokenizer_destroy(t);
        break;
    }
    case L_LM: {
        clattn_lm *lm = (clattn_lm *)1;
        st = clattn_lm_load(ctx, dir, &lm);
        *leftover = st != CLATTN_OK && lm != NULL;
        if (st == CLATTN_OK)
            clattn_lm_destroy(lm);
        break;
    }
    case L_CTX:
    case L_CTX_ENV: {
        clattn_ctx_params p = clattn_ctx_params_default();
        p.device = c->folder;
        clattn_ctx *other = (clattn_ctx *)1;
        char *saved = getenv("CLATTN_DEVICE") ? strdup(getenv("CLATTN_DEVICE")) : NULL;
        if (c->loader == L_CTX_ENV)
            setenv("CLATTN_DEVICE", c->folder, 1);
        st = clattn_ctx_create(c->loader == L_CTX ? &p : NULL, &other);
        if (saved)
            setenv("CLATTN_DEVICE", saved, 1);
        else
            unsetenv("CLATTN_DEVICE");
        free(saved);
        *leftover = st != CLATTN_OK && other != NULL;
        if (st == CLATTN_OK)
            clattn_ctx_destroy(other);
        break;
    }
    case L_SELECT: {
        int32_t idx = -1;
        st = clattn_device_select(c->folder, &idx);
        break;
    }
    }
    return st;
}

/* ---- texts --------------------------------------------------------------- */

/* Invalid UTF-8 is no error (clattn.h: the bytes become U+FFFD), and an
 * over-long text is truncated to the tokenizer's limit or refused when
 * the caller's room is too small. */
static void texts(const char *fixtures, const char *models)
{
    static const char bad[] = "caf\xc3 \xff\xfe ab\xed\xa0\x80 \xf4\x90\x80\x80 x\xc0\xaf";
    size_t big_n = 1500 * 1000;
    char *big = malloc(big_n + 1);
    for (size_t i = 0; i < big_n; i++)
        big[i] = "hello world "[i % 12];
    big[big_n] = 0;
    const char *dirs[] = {WP, VOCAB, BPE, MINILM};
    for (int d = 0; d < 4; d++) {
        char dir[4096];
        if (!strcmp(dirs[d], MINILM))
            snprintf(dir, sizeof dir, "%s/all-MiniLM-L6-v2", models);
        else
            snprintf(dir, sizeof dir, "%s/%s", fixtures, dirs[d]);
        clattn_tokenizer *tok = NULL;
        if (access(dir, F_OK) != 0)
            continue;
        CHECK_OK(clattn_tokenizer_load(dir, &tok));
        if (!tok)
            continue;
        int32_t count = -1;
        int64_t ids[64];
        CHECK_OK(clattn_tokenizer_encode(tok, bad, sizeof bad - 1, 64, ids, 64, &count));
        CHECK(count > 0, "%s: invalid UTF-8 gave %d ids", dirs[d], count);
        /* 1.5 MB in one line, cut at 32 tokens. */
        CHECK_OK(clattn_tokenizer_encode(tok, big, big_n, 32, ids, 64, &count));
        CHECK(count == 32, "%s: 1.5 MB text, max_len 32: %d ids", dirs[d], count);
        /* The same with no limit but too little room: the count needed. */
        int32_t before = count;
        CHECK_STATUS(clattn_tokenizer_encode_ex(tok, big, big_n, true,
                                                !strcmp(dirs[d], BPE) ? 0 : 100000, ids, 64, &count),
                     E_ARG);
        CHECK_MSG("capacity");
        CHECK(count == before, "%s: count untouched on failure (%d)", dirs[d], count);
        clattn_tokenizer_destroy(tok);
    }
    free(big);
}

/* ---- a batch too large for the device --------------------------------- */

/* Live device buffers once the queue is idle, the context's scratch slots
 * left out (a failed growth empties a slot by design); Rusticl releases
 * buffers on its own thread, so the count is given up to 1 s to come down. */
static int64_t live_buffers(clattn_ctx *ctx, int64_t want)
{
    int64_t n = 0;
    for (int tries = 0; tries < 500; tries++) {
        clattn_ctx_finish(ctx);
        n = clattn__live_device_buffers(ctx);
        for (int i = 0; i < CLATTN_SCRATCH_SLOTS; i++)
            n -= ctx->scratch[i] != NULL;
        if (n <= want)
            break;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return n;
}

/* 64 texts of 256 tokens need 25 MB for each [B, N, E] activation and
 * 200 MB of attention scores. The context's device total is lowered to
 * what is in use plus 4 MiB (the first activation does not fit) and plus
 * 64 MiB (the activations fit, the layer's projections do not): each call
 * is CLATTN_ERR_OUT_OF_MEMORY with the bytes in its message, then two
 * short texts under the same limit give the vectors they gave before, bit
 * for bit, and no device buffer is left behind. */
static void batch_too_large(clattn_ctx *ctx, const char *minilm)
{
    clattn_embedder *e = NULL;
    CHECK_OK(clattn_embedder_load(ctx, minilm, &e));
    if (!e)
        return;
    int32_t dim = clattn_embedder_dim(e);
    const char *two[2] = {"A man is eating food.", "Someone is having a meal."};
    float *ref = test_fvec(2 * (size_t)dim), *got = test_fvec(2 * (size_t)dim);
    float *out = test_fvec(64 * (size_t)dim);
    CHECK_OK(clattn_embedder_embed(e, two, 2, ref, NULL));
    int64_t base = live_buffers(ctx, 0);
    char *text = malloc(5 * 300 + 1);
    for (int i = 0; i < 300; i++)
        memcpy(text + 5 * i, "word ", 5);
    text[5 * 300] = 0;
    const char *texts[64];
    for (int i = 0; i < 64; i++)
        texts[i] = text;
    clattn_embed_params p = clattn_embed_params_default();
    p.batch_size = 64;
    uint64_t total = ctx->info.global_mem_bytes;
    const uint64_t extra[2] = {4u << 20, 64u << 20};
    for (int k = 0; k < 2; k++) {
        ctx->info.global_mem_bytes = clattn__live_device_bytes(ctx) + extra[k];
        CHECK_STATUS(clattn_embedder_embed(e, texts, 64, out, &p), E_OOM);
        CHECK_MSG("in use");
        if (getenv("CLATTN_TEST_VERBOSE"))
            fprintf(stderr, "batch too large, %llu MiB free: %s\n",
                    (unsigned long long)(extra[k] >> 20), clattn_last_error());
        if (k == 0)
            CHECK_MSG("embedder activations");
        memset(got, 0, 2 * (size_t)dim * sizeof *got);
        CHECK_OK(clattn_embedder_embed(e, two, 2, got, NULL));
        CHECK(memcmp(got, ref, 2 * (size_t)dim * sizeof *got) == 0,
              "headroom %llu MiB: the vectors after the failure differ (%g vs %g)",
              (unsigned long long)(extra[k] >> 20), got[0], ref[0]);
        int64_t now = live_buffers(ctx, base);
        CHECK(now == base, "headroom %llu MiB: %lld live buffers, %lld before",
              (unsigned long long)(extra[k] >> 20), (long long)now, (long long)base);
    }
    ctx->info.global_mem_bytes = total;
    free(text);
    free(ref);
    free(got);
    free(out);
    clattn_embedder_destroy(e);
}

int main(int argc, char **argv)
{
    const char *fixtures = argc > 1 ? argv[1] : "tests/fixtures";
    const char *models = argc > 2 ? argv[2] : "models";
    char minilm[2048];
    snprintf(minilm, sizeof minilm, "%s/all-MiniLM-L6-v2", models);
    bool have_minilm = access(minilm, F_OK) == 0;
    if (!have_minilm)
        fprintf(stderr, "note: %s absent, its cases not run (tools/check fetches it)\n",
                minilm);
    clattn_ctx *ctx = test_ctx();
    char tmp[] = "/tmp/clattn-bad-inputs-XXXXXX";
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    int run = 0;
    for (int i = 0; i < N_CASES; i++) {
        const bad_case *c = &cases[i];
        bool is_dev = c->loader >= L_CTX;
        bool is_minilm = !is_dev && !strcmp(c->folder, MINILM);
        if (is_minilm && !have_minilm)
            continue;
        char src[2048], dir[2048];
        if (is_minilm)
            snprintf(src, sizeof src, "%s", minilm);
        else if (!is_dev)
            snprintf(src, sizeof src, "%s/%s", fixtures, c->folder);
        snprintf(dir, sizeof dir, "%s/case%d", tmp, i);
        if (!is_dev) {
            char target[4096];
            snprintf(target, sizeof target, "%s/%s", dir, c->file);
            bool made = copy_tree(src, dir, c->file) && mutate(c, target);
            CHECK(made, "case %d: cannot make the input from %s (%s)", i, src, c->file);
            if (!made)
                continue;
        }
        bool leftover = false;
        clattn_status st = run_loader(ctx, c, src, dir, &leftover);
        const char *msg = clattn_last_error();
        run++;
        CHECK(st == c->want && strstr(msg, c->fragment) && !leftover,
              "case %d: %s on %s %s (change %d \"%s\" -> \"%s\", %lld): %s (want %s), "
              "message %s (want \"%s\")%s",
              i, loader_name(c->loader), c->folder, c->file ? c->file : "", (int)c->mut,
              c->from ? c->from : "", c->to ? c->to : "", (long long)c->n,
              clattn_status_str(st), clattn_status_str(c->want), msg, c->fragment,
              leftover ? "; the out-pointer was set" : "");
        if (getenv("CLATTN_TEST_VERBOSE"))
            fprintf(stderr, "case %d: %s: %s\n", i, clattn_status_str(st), msg);
        if (!is_dev)
            remove_tree(dir);
    }
    texts(fixtures, models);
    if (have_minilm)
        batch_too_large(ctx, minilm);
    /* The context still works after all that. */
    int64_t shape[1] = {4};
    clattn_tensor *t = NULL;
    CHECK_OK(clattn_tensor_create(ctx, 1, shape, &t));
    clattn_tensor_destroy(t);
    remove_tree(tmp);
    clattn_ctx_destroy(ctx);
    fprintf(stderr, "%d of %d table cases run\n", run, N_CASES);
    return test_summary("test_bad_inputs");
}
