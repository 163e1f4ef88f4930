/* fuzz_bert_config.c - libFuzzer target for the settings of a BERT model
 * folder (clattn__bert_read_config, no context): the input's NUL-separated
 * parts are config.json, modules.json, 1_Pooling/config.json and
 * sentence_bert_config.json (an empty part: the file is absent; see
 * fuzz_files.h). An accepted folder must hold the invariants the embedder
 * relies on; a refused one must come with a message. */
#include "fuzz_files.h"

#include "embed/embed.h"

static const char *const names[] = {"config.json", "modules.json", "1_Pooling/config.json",
                                    "sentence_bert_config.json"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_write_parts(data, size, names, 4);
    clattn__clear_thread_error();
    clattn__bert_config c;
    clattn_status st = clattn__bert_read_config(NULL, dir, &c);
    if (st != CLATTN_OK) {
        if (clattn_last_error()[0] == '\0')
            abort();
        return 0;
    }
    if (c.hidden < 1 || c.heads < 1 || c.hidden % c.heads != 0 || c.layers < 1 ||
        c.intermediate < 1 || c.max_pos < 2 || c.type_vocab < 1 || c.vocab < 1 ||
        !(c.eps >= 0 && c.eps < 1) || c.max_seq_length < 0 || c.max_seq_length > c.max_pos ||
        (c.pooling != CLATTN_POOLING_MEAN && c.pooling != CLATTN_POOLING_CLS &&
         c.pooling != CLATTN_POOLING_MAX))
        abort();
    return 0;
}
