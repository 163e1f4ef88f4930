/* bench_generate.h - clattn-bench generate: prefill and decode speed of a
 * decoder model folder, the decode's effective bandwidth against a
 * STREAM-style device copy, and decode attention alone (split-KV against
 * the fused kernel on one row) at cache lengths 1k to 32k. */
#ifndef CLATTN_TOOLS_BENCH_GENERATE_H
#define CLATTN_TOOLS_BENCH_GENERATE_H

#include <clattn.h>

#include <stdbool.h>

typedef struct bench_generate_options {
    const char *model;     /* the folder */
    int prompt, gen;       /* prompt length (default 512), decode steps (128) */
    int batches[8], n_batches; /* decode batch sizes (default 1 and 8; at most 64) */
    bool cache_f16, attention, json;
    int reps;              /* best of reps runs (default 2) */
} bench_generate_options;

/* Runs the benchmark and prints text or one JSON object. */
clattn_status bench_generate(clattn_ctx *ctx, const bench_generate_options *o);

#endif
