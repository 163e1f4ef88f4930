/* bench_dispatch.h - clattn-bench dispatch: the host cost of one op call
 * on tiny tensors, where launching is all there is to time. */
#ifndef CLATTN_TOOLS_BENCH_DISPATCH_H
#define CLATTN_TOOLS_BENCH_DISPATCH_H

#include <clattn.h>

#include <stdbool.h>

/* Times batches of `calls` calls of each op on tensors of a few elements
 * (finished on the device once per batch), reps batches each, and prints
 * the best microseconds per call (text, or one JSON object with json).
 * Returns the first failing status. */
clattn_status bench_dispatch(clattn_ctx *ctx, int calls, int reps, bool json);

#endif
