/* train_lm_export.c - clattn-train lm --export DIR: the trained model as a
 * Hugging Face LlamaForCausalLM folder. The task's tokenizer files
 * (common/lm_tokenizer.h) are written into a private temporary folder,
 * and clattn_llama_export copies them into DIR with config.json,
 * generation_config.json and model.safetensors, each file whole or not at
 * all. clattn_lm_load (clattn-generate, clattn-server) and transformers'
 * AutoModelForCausalLM / AutoTokenizer read the folder. */
#include "train_lm.h"

#include "lm_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Removes the temporary tokenizer folder and what lm_tokenizer_write put in it. */
static void remove_tokenizer_dir(const char *dir)
{
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json"};
    char path[4200];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
}

int lm_export(const lm_options *o, clattn_llama *m)
{
    const char *base = getenv("TMPDIR");
    char tok_dir[4096], err[512];
    snprintf(tok_dir, sizeof tok_dir, "%s/clattn-train-lm-XXXXXX",
             base && *base ? base : "/tmp");
    if (!mkdtemp(tok_dir)) { /* mode 0700: nobody else can put files in it */
        fprintf(stderr, LM_TOOL ": --export: a temporary folder in %s: %s\n",
                base && *base ? base : "/tmp", strerror(errno));
        return 1;
    }
    clattn_llama_config c = clattn_llama_get_config(m);
    if (!lm_tokenizer_write(tok_dir, c.max_position_embeddings, err, sizeof err)) {
        fprintf(stderr, LM_TOOL ": --export: %s\n", err);
        remove_tokenizer_dir(tok_dir);
        return 1;
    }
    clattn_status st = clattn_llama_export(m, tok_dir, o->export_dir);
    remove_tokenizer_dir(tok_dir);
    if (st != CLATTN_OK) {
        fprintf(stderr, LM_TOOL ": --export: %s: %s\n", clattn_status_str(st),
                clattn_last_error());
        return 1;
    }
    if (!o->json) /* an example problem of the task's size: "12+98=" at 2 digits */
        printf("exported: %s (clattn-generate -m %s --temp 0 -p \"%.*s+%.*s=\")\n",
               o->export_dir, o->export_dir, (int)o->digits, "123456789", (int)o->digits,
               "987654321");
    return 0;
}
