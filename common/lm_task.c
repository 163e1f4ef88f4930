/* lm_task.c - see lm_task.h. */
#include "lm_task.h"

#include "lm_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>

int32_t lm_max_len(int32_t digits)
{
    return 3 * digits + 5;
}

static uint64_t pow10u(int32_t k)
{
    uint64_t v = 1;
    while (k-- > 0)
        v *= 10;
    return v;
}

uint64_t lm_problem_count(int32_t digits)
{
    return pow10u(2 * digits); /* at most 10^18 < 2^64 */
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n <= 2^32, by multiply-and-shift (Lemire): the bias
 * is below n / 2^32, immaterial here, and there is no division. */
static uint32_t below(uint64_t *state, uint64_t n)
{
    return (uint32_t)(((splitmix64(state) >> 32) * n) >> 32);
}

/* Uniform in [0, 10^digits): the standard setup, in which most operands
 * have all the digits (a row's digits then line up from problem to
 * problem, which the model learns fastest), and the held-out draws take a
 * negligible share of any one operand length. */
static uint32_t operand(int32_t digits, uint64_t *state)
{
    return below(state, pow10u(digits));
}

lm_problem lm_draw(int32_t digits, uint64_t *state)
{
    lm_problem p;
    p.a = operand(digits, state);
    p.b = operand(digits, state);
    return p;
}

int32_t lm_prompt_text(lm_problem p, char *buf)
{
    return (int32_t)sprintf(buf, "%u+%u=", (unsigned)p.a, (unsigned)p.b);
}

int32_t lm_answer_text(lm_problem p, char *buf)
{
    return (int32_t)sprintf(buf, "%lu", (unsigned long)p.a + (unsigned long)p.b);
}

/* The ids of text's characters (all in the vocabulary) after ids[0..n). */
static int32_t put_text(const char *text, int64_t *ids, int32_t n)
{
    for (const char *c = text; *c; c++)
        ids[n++] = lm_char_id(*c);
    return n;
}

int32_t lm_prompt_ids(lm_problem p, int64_t *ids)
{
    char text[2 * LM_MAX_DIGITS + 3];
    lm_prompt_text(p, text);
    ids[0] = LM_BOS_ID;
    return put_text(text, ids, 1);
}

int32_t lm_answer_ids(lm_problem p, int64_t *ids)
{
    char text[LM_MAX_DIGITS + 2];
    lm_answer_text(p, text);
    int32_t n = put_text(text, ids, 0);
    ids[n++] = LM_EOS_ID;
    return n;
}

int32_t lm_row(lm_problem p, int32_t T, int64_t *ids, int64_t *labels)
{
    int32_t np = lm_prompt_ids(p, ids);
    int32_t n = np + lm_answer_ids(p, ids + np);
    for (int32_t t = 0; t < T; t++) {
        if (t >= n)
            ids[t] = LM_PAD_ID;
        /* The loss is on the answer and eos only: the prompt is random,
         * nothing to learn there. */
        labels[t] = t >= np && t < n ? ids[t] : LM_IGNORE;
    }
    return n;
}

/* ---- the held-out set: open addressing over (a << 32 | b) ------------------ */

/* a and b are below 10^9, so a key is never EMPTY. */
#define EMPTY UINT64_MAX

struct lm_problem_set {
    uint64_t *keys;
    size_t mask;                /* capacity - 1, the capacity a power of two */
};

static uint64_t key_of(lm_problem p)
{
    return (uint64_t)p.a << 32 | p.b;
}

static size_t slot(const lm_problem_set *s, uint64_t key)
{
    uint64_t h = key;
    size_t i = (size_t)splitmix64(&h) & s->mask;
    while (s->keys[i] != EMPTY && s->keys[i] != key)
        i = (i + 1) & s->mask;
    return i;
}

bool lm_set_contains(const lm_problem_set *s, lm_problem p)
{
    return s && s->keys[slot(s, key_of(p))] != EMPTY;
}

void lm_set_destroy(lm_problem_set *s)
{
    if (s)
        free(s->keys);
    free(s);
}

lm_problem_set *lm_heldout_draw(int32_t digits, uint64_t *state, int64_t n, lm_problem *out)
{
    lm_problem_set *s = calloc(1, sizeof *s);
    size_t cap = 16;
    while (s && cap < 2 * (size_t)n) /* at most half full: short probes */
        cap *= 2;
    if (s)
        s->keys = malloc(cap * sizeof *s->keys);
    if (!s || !s->keys) {
        lm_set_destroy(s);
        return NULL;
    }
    s->mask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        s->keys[i] = EMPTY;
    for (int64_t k = 0; k < n;) {
        lm_problem p = lm_draw(digits, state);
        size_t i = slot(s, key_of(p));
        if (s->keys[i] != EMPTY)
            continue;           /* drawn before: held-out problems are distinct */
        s->keys[i] = key_of(p);
        out[k++] = p;
    }
    return s;
}

lm_problem lm_draw_train(int32_t digits, uint64_t *state, const lm_problem_set *heldout)
{
    for (;;) {
        lm_problem p = lm_draw(digits, state);
        if (!lm_set_contains(heldout, p))
            return p;
    }
}
