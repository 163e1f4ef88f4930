/* train_lm_eval.c - the held-out measures of clattn-train lm: the
 * teacher-forced loss, and exact match by greedy decoding in batches with
 * clattn_llama_forward (no KV cache: the whole row is run again for each
 * new token; rows are at most 3 x 9 + 5 positions, so that costs little
 * and needs nothing but the training model). */
#include "train_lm.h"

#include "lm_tokenizer.h"

#include <stdlib.h>
#include <string.h>

clattn_status lm_batch_init(lm_batch *b, clattn_ctx *ctx, int32_t B, int32_t digits)
{
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    b->B = B, b->T = lm_max_len(digits), b->V = LM_VOCAB_SIZE, b->digits = digits;
    size_t rows = (size_t)B * (size_t)b->T;
    b->ids = malloc(rows * sizeof *b->ids);
    b->labels = malloc(rows * sizeof *b->labels);
    b->host = malloc(rows * (size_t)b->V * sizeof *b->host);
    b->len = malloc((size_t)B * sizeof *b->len), b->got = malloc((size_t)B * sizeof *b->got);
    b->want = malloc((size_t)B * sizeof *b->want), b->done = malloc((size_t)B * sizeof *b->done);
    if (!b->ids || !b->labels || !b->host || !b->len || !b->got || !b->want || !b->done)
        return CLATTN_ERR_OUT_OF_MEMORY;
    int64_t shape[3] = {B, b->T, b->V};
    return clattn_tensor_create(ctx, 3, shape, &b->logits);
}

void lm_batch_free(lm_batch *b)
{
    free(b->ids), free(b->labels), free(b->host);
    free(b->len), free(b->got), free(b->want), free(b->done);
    clattn_tensor_destroy(b->logits);
    memset(b, 0, sizeof *b);
}

/* Rows rows .. B-1 of a last, short batch: all padding, no targets. */
static void pad_rows(lm_batch *b, int32_t rows)
{
    for (size_t i = (size_t)rows * b->T; i < (size_t)b->B * b->T; i++)
        b->ids[i] = LM_PAD_ID, b->labels[i] = LM_IGNORE;
}

/* The mean loss over the answer tokens of p[0..n): each batch's mean
 * weighted by its count of targets, so the result is the mean over all. */
static clattn_status heldout_loss(clattn_llama *m, lm_batch *b, const lm_problem *p, int64_t n,
                                  double *loss)
{
    double sum = 0.0;
    int64_t targets = 0;
    for (int64_t first = 0; first < n; first += b->B) {
        int32_t rows = (int32_t)(n - first < b->B ? n - first : b->B), count = 0;
        for (int32_t r = 0; r < rows; r++) {
            int64_t *ids = b->ids + (size_t)r * b->T, *labels = b->labels + (size_t)r * b->T;
            lm_row(p[first + r], b->T, ids, labels);
            for (int32_t t = 1; t < b->T; t++) /* label 0 is never a target */
                count += labels[t] != LM_IGNORE;
        }
        pad_rows(b, rows);
        float l = 0;
        clattn_status st = clattn_llama_forward(m, b->ids, b->B, b->T, b->logits);
        if (st == CLATTN_OK)
            st = clattn_causal_lm_loss(b->ctx, b->logits, b->labels, LM_IGNORE, &l, NULL);
        if (st != CLATTN_OK)
            return st;
        sum += (double)l * count;
        targets += count;
    }
    *loss = sum / (double)targets;
    return CLATTN_OK;
}

/* The largest of the V logits at row, the lowest id on a tie (as greedy
 * sampling picks). */
static int64_t argmax(const float *row, int32_t V)
{
    int32_t best = 0;
    for (int32_t v = 1; v < V; v++)
        if (row[v] > row[best])
            best = v;
    return best;
}

/* How many of p[0..rows) (rows <= B) greedy decoding answers exactly:
 * each step runs the batch, reads every unfinished row's logits at its
 * last position and appends their argmax. A row is done at its first
 * wrong token (exact match is lost) or at </s> after the right digits. */
static clattn_status decode_batch(clattn_llama *m, lm_batch *b, const lm_problem *p,
                                  int32_t rows, int64_t *correct)
{
    int32_t *len = b->len, *got = b->got;
    int64_t(*want)[LM_ANSWER_MAX] = b->want;
    bool *done = b->done;
    for (int32_t r = 0; r < b->B; r++) {
        int64_t *ids = b->ids + (size_t)r * b->T;
        len[r] = r < rows ? lm_prompt_ids(p[r], ids) : 1;
        if (r < rows)
            lm_answer_ids(p[r], want[r]);
        for (int32_t t = len[r]; t < b->T; t++)
            ids[t] = LM_PAD_ID;
        if (r >= rows)
            ids[0] = LM_PAD_ID;
        got[r] = 0, done[r] = r >= rows;
    }
    for (int32_t step = 0; step < b->digits + 2; step++) { /* the longest answer and </s> */
        bool any = false;
        for (int32_t r = 0; r < rows; r++)
            any = any || !done[r];
        if (!any)
            break;
        clattn_status st = clattn_llama_forward(m, b->ids, b->B, b->T, b->logits);
        if (st == CLATTN_OK)
            st = clattn_tensor_read(b->logits, b->host);
        if (st != CLATTN_OK)
            return st;
        for (int32_t r = 0; r < rows; r++) {
            if (done[r])
                continue;
            /* Causal attention: the padding after len[r] does not reach it. */
            const float *last = b->host + ((size_t)r * b->T + (size_t)(len[r] - 1)) * b->V;
            int64_t id = argmax(last, b->V);
            if (id != want[r][got[r]]) {
                done[r] = true;
                continue;
            }
            if (id == LM_EOS_ID) {
                done[r] = true;
                (*correct)++;
                continue;
            }
            /* Room: the prompt and the whole answer with </s> fit T. */
            b->ids[(size_t)r * b->T + (size_t)len[r]++] = id;
            got[r]++;
        }
    }
    return CLATTN_OK;
}

clattn_status lm_evaluate(clattn_llama *m, lm_batch *b, const lm_problem *p, int64_t n,
                          double *loss, double *accuracy)
{
    clattn_status st = heldout_loss(m, b, p, n, loss);
    int64_t correct = 0;
    for (int64_t first = 0; st == CLATTN_OK && first < n; first += b->B) {
        int32_t rows = (int32_t)(n - first < b->B ? n - first : b->B);
        st = decode_batch(m, b, p + first, rows, &correct);
    }
    if (st == CLATTN_OK)
        *accuracy = (double)correct / (double)n;
    return st;
}
