/* train_lm_options.c - clattn-train lm's command line. Every number is
 * range-checked, never clamped, and every message names only the option
 * at fault; sizes the model cannot have (heads not dividing the width, an
 * odd head dim) are refused here, before any device work. */
#include "train_lm.h"

#include "cli_args.h"
#include "lm_tokenizer.h"
#include "plot.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clattn-train lm [options]\n"
            "\n"
            "Trains a Llama decoder (clattn_llama) on multi-digit addition written as\n"
            "text, \"483+129=\" -> \"612\" then </s>, with a character-level tokenizer, and\n"
            "reports held-out loss and exact-match accuracy (greedy decoding).\n"
            "The task:\n"
            "  --digits N          digits of each operand, at most (1..9, default 2)\n"
            "  --heldout N         held-out problems, never trained on (default 500)\n"
            "The model (LlamaForCausalLM, tied embeddings, %d tokens, --digits x 3 + 5\n"
            "positions):\n"
            "  --layers N          decoder layers (default 2)\n"
            "  --hidden N          hidden size (default 128)\n"
            "  --heads N           attention heads, dividing --hidden (default 4)\n"
            "  --kv-heads N        key/value heads, dividing --heads (default: --heads)\n"
            "  --ff N              MLP intermediate size (default: 4 x --hidden)\n"
            "  --dropout P         residual dropout while training, [0, 0.9] (default 0)\n"
            "Training (AdamW, linear warm-up then cosine decay to --min-lr):\n"
            "  --epochs N          epochs (default 8)\n"
            "  --steps N           steps per epoch (default 100)\n"
            "  --batch N           problems per step (default 128)\n"
            "  --lr X              peak learning rate (default 3e-3)\n"
            "  --min-lr X          the schedule's floor (default: --lr / 10)\n"
            "  --warmup N          warm-up steps (default 50)\n"
            "  --weight-decay X    AdamW's decoupled weight decay (default 0.01)\n"
            "  --clip X            clip the gradients' global norm to X; 0: off (default 1)\n"
            "  --seed N            seed of the problems, the weights and dropout (default 1)\n"
            "Files:\n"
            "  --init FILE         start from this checkpoint (same sizes) instead\n"
            "  --checkpoint FILE   write the trained weights and AdamW state here\n"
            "                      (default: clattn-train-lm.safetensors)\n"
            "  --export DIR        write a Hugging Face folder (config.json,\n"
            "                      model.safetensors, tokenizer.json, ...) for\n"
            "                      clattn-generate and transformers\n"
            "  --write-heldout FILE  the held-out problems with their answers, one a line\n"
            "                      (\"483+129=612\"), to score the model on elsewhere\n"
            "  --plot FILE         draw the loss curves and the held-out accuracy into\n"
            "                      FILE.png or FILE.svg\n"
            "Output:\n"
            "  --json              one JSON object per epoch on stdout\n"
            "  --device SEL        device selector (index, platform:device, or name)\n"
            "  -q                  no progress bar\n",
            LM_VOCAB_SIZE);
}

/* The run's steps are kept under MAX_TOTAL_STEPS: one double of loss
 * history each, so epochs x steps cannot overflow the allocation. */
#define MAX_EPOCHS 1000000
#define MAX_STEPS 1000000000
#define MAX_TOTAL_STEPS 100000000

static void defaults(lm_options *o)
{
    memset(o, 0, sizeof *o);
    o->digits = 2, o->heldout = 500;
    o->layers = 2, o->hidden = 128, o->heads = 4, o->kv_heads = 0, o->ff = 0;
    o->epochs = 8, o->steps = 100, o->batch = 128, o->warmup = 50, o->seed = 1;
    o->lr = 3e-3, o->min_lr = -1, o->weight_decay = 0.01, o->clip = 1.0;
}

/* The checks that involve several options; 0 or 2. */
static int check_sizes(lm_options *o)
{
    if (o->kv_heads == 0)
        o->kv_heads = o->heads;
    if (o->ff == 0)
        o->ff = 4 * o->hidden;
    if (o->hidden % o->heads != 0) {
        fprintf(stderr, LM_TOOL ": --heads %lld does not divide --hidden %lld\n",
                (long long)o->heads, (long long)o->hidden);
        return 2;
    }
    if ((o->hidden / o->heads) % 2 != 0) {
        fprintf(stderr, LM_TOOL ": --hidden %lld / --heads %lld is a head size of %lld; rotary "
                "position embeddings need an even one\n", (long long)o->hidden,
                (long long)o->heads, (long long)(o->hidden / o->heads));
        return 2;
    }
    if (o->heads % o->kv_heads != 0) {
        fprintf(stderr, LM_TOOL ": --kv-heads %lld does not divide --heads %lld\n",
                (long long)o->kv_heads, (long long)o->heads);
        return 2;
    }
    /* Distinct held-out problems must exist, and most problems must stay
     * for training. */
    uint64_t count = lm_problem_count((int32_t)o->digits);
    if ((uint64_t)o->heldout > count / 2) {
        fprintf(stderr, LM_TOOL ": --heldout %lld is more than half of the %llu problems of "
                "--digits %lld\n", (long long)o->heldout, (unsigned long long)count,
                (long long)o->digits);
        return 2;
    }
    if (o->epochs > MAX_TOTAL_STEPS / o->steps) {
        fprintf(stderr, LM_TOOL ": --epochs %lld x --steps %lld is over %d steps in all; train "
                "in several runs (--init)\n", (long long)o->epochs, (long long)o->steps,
                MAX_TOTAL_STEPS);
        return 2;
    }
    if (o->warmup > o->epochs * o->steps) {
        fprintf(stderr, LM_TOOL ": --warmup %lld is longer than the run (%lld steps)\n",
                (long long)o->warmup, (long long)(o->epochs * o->steps));
        return 2;
    }
    if (o->min_lr < 0)
        o->min_lr = o->lr / 10;
    else if (o->min_lr > o->lr) {
        fprintf(stderr, LM_TOOL ": --min-lr %g is above --lr %g\n", o->min_lr, o->lr);
        return 2;
    }
    return 0;
}

/* Every output is checked before any work, so a bad path does not throw
 * a trained model away; 0 or 2. */
static int check_paths(const lm_options *o)
{
    if (!cli_output_path(LM_TOOL, "--checkpoint", o->checkpoint) ||
        (o->plot && !cli_output_path(LM_TOOL, "--plot", o->plot)) ||
        (o->export_dir && !cli_output_dir(LM_TOOL, "--export", o->export_dir)) ||
        (o->heldout_file && !cli_output_path(LM_TOOL, "--write-heldout", o->heldout_file)))
        return 2;
    plot_format fmt;
    char err[256];
    if (o->plot && !plot_format_of(o->plot, &fmt, err, sizeof err)) {
        fprintf(stderr, LM_TOOL ": --plot: %s\n", err);
        return 2;
    }
    return 0;
}

int lm_options_parse(int argc, char **argv, lm_options *o)
{
    defaults(o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true, path = false;
#define INT(name, lo, hi, field) else if (!strcmp(a, name)) ok = cli_int(LM_TOOL, a, v, lo, hi, &o->field)
#define NUM(name, lo, hi, field) else if (!strcmp(a, name)) ok = cli_double(LM_TOOL, a, v, lo, hi, &o->field)
#define PATH(name, field) else if (!strcmp(a, name)) o->field = v, path = true
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        INT("--digits", 1, LM_MAX_DIGITS, digits);
        INT("--heldout", 1, 1000000, heldout);
        INT("--layers", 1, 1024, layers);
        INT("--hidden", 2, 65536, hidden);
        INT("--heads", 1, 4096, heads);
        INT("--kv-heads", 1, 4096, kv_heads);
        INT("--ff", 1, 1 << 20, ff);
        NUM("--dropout", 0, 0.9, dropout);
        INT("--epochs", 1, MAX_EPOCHS, epochs);
        INT("--steps", 1, MAX_STEPS, steps);
        INT("--batch", 1, 65536, batch);
        INT("--warmup", 0, MAX_TOTAL_STEPS, warmup);
        INT("--seed", 0, INT64_MAX, seed);
        NUM("--lr", 1e-30, 1e6, lr);
        NUM("--min-lr", 0, 1e6, min_lr);
        NUM("--weight-decay", 0, 1e3, weight_decay);
        NUM("--clip", 0, 1e30, clip);
        PATH("--init", init);
        PATH("--checkpoint", checkpoint);
        PATH("--plot", plot);
        PATH("--export", export_dir);
        PATH("--write-heldout", heldout_file);
        PATH("--device", device);
        else if (!strcmp(a, "--json")) o->json = true, takes = false;
        else if (!strcmp(a, "-q")) o->quiet = true, takes = false;
        else {
            fprintf(stderr, LM_TOOL ": unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
#undef INT
#undef NUM
#undef PATH
        if (path && !v) {
            fprintf(stderr, LM_TOOL ": %s needs a value\n", a);
            return 2;
        }
        if (!ok)
            return 2; /* cli_* said why */
        i += takes;
    }
    if (!o->checkpoint)
        o->checkpoint = "clattn-train-lm.safetensors";
    int rc = check_sizes(o);
    return rc ? rc : check_paths(o);
}

clattn_llama_config lm_options_config(const lm_options *o)
{
    clattn_llama_config c = clattn_llama_config_default();
    c.vocab_size = LM_VOCAB_SIZE;
    c.hidden_size = (int32_t)o->hidden;
    c.intermediate_size = (int32_t)o->ff;
    c.num_hidden_layers = (int32_t)o->layers;
    c.num_attention_heads = (int32_t)o->heads;
    c.num_key_value_heads = (int32_t)o->kv_heads;
    c.head_dim = 0; /* hidden / heads, checked even */
    c.max_position_embeddings = lm_max_len((int32_t)o->digits);
    c.tie_word_embeddings = true; /* V is tiny: a separate head buys nothing */
    c.dropout = (float)o->dropout;
    c.dropout_seed = (uint64_t)o->seed;
    c.bos_token_id = LM_BOS_ID, c.eos_token_id = LM_EOS_ID, c.pad_token_id = LM_PAD_ID;
    return c;
}
