/* optim_fixtures.h - what test_optimizers and test_checkpoint share: the
 * optimiser fixtures of tests/fixtures/make_optim_fixtures.py (cases.json
 * and grads.safetensors in FIXTURE_DIR), a model holding the fixture
 * parameters on the device, and stepping it against PyTorch's values.
 *
 * Tolerance of the optimiser comparisons (u = 2^-24): both sides follow
 * the same float32 operation sequence with the same float scalars, but
 * ATen's vectorised loops fuse some multiply-adds where its scalar tail
 * loops may not, and PyTorch's norm is a norm of per-tensor norms: a value
 * may come out an ulp or two apart, and the difference carries into later
 * steps. OPT_RTOL 4e-7 + OPT_ATOL 1e-7 is 3 to 7 ulps at any magnitude
 * (values reach |w| = 4.3), after each of 10 steps (full reasoning at the
 * top of test_optimizers.c). */
#ifndef CLATTN_OPTIM_FIXTURES_H
#define CLATTN_OPTIM_FIXTURES_H

#include "testutil.h"

#include <jansson.h>

#define STEPS_MAX 16
#define PARAMS_MAX 8
#define OPT_ATOL 1e-7
#define OPT_RTOL 4e-7

/* FIXTURE_DIR, set by main from argv[1]. */
extern const char *fixdir;
/* Largest share of the optimiser tolerance used, and absolute difference,
 * over all compare_step calls (printed by the tests). */
extern double worst_used, worst_abs;

typedef struct fparam {
    char name[64];
    int32_t ndim;
    int64_t shape[4];
    size_t numel;
} fparam;

typedef struct fcase {
    char name[64];
    clattn_optimizer_params p;
    int32_t steps;
    double lrs[STEPS_MAX];
    double norms[STEPS_MAX]; /* -1: not clipped */
} fcase;

extern fparam fparams[PARAMS_MAX];
extern int32_t n_fparams;
extern int32_t n_steps;
extern json_t *cases_json;
extern clattn_weights *grads_file;

/* The number o[key] of a JSON object (0 if absent). */
double jnum(json_t *o, const char *key);
/* Loads cases.json and grads.safetensors from fixdir (three checks). */
bool load_fixtures(void);
/* Releases what load_fixtures loaded. */
void close_fixtures(void);
void parse_case(json_t *o, fcase *c);
bool find_case(const char *name, fcase *c);
/* Reads tensor name of w as float32 into dst (numel floats). */
void read_fixture(const clattn_weights *w, const char *name, float *dst, size_t numel);

/* The fixture parameters on the device: values (from "init.*") and grads. */
typedef struct model {
    clattn_tensor *value[PARAMS_MAX], *grad[PARAMS_MAX];
    clattn_param_ref refs[PARAMS_MAX];
} model;

void model_init(clattn_ctx *ctx, model *m, bool from_init);
void model_free(model *m);
void model_set_grads(model *m, int32_t step);
/* All parameter values, concatenated, into a malloc'd buffer. */
float *model_values(const model *m, size_t *total);
/* Compares the model's values with "value.<step>.*" of a case file. */
void compare_step(const model *m, const clattn_weights *w, const char *cname, int32_t step);
bool close_rel(double got, double want, double rtol);
/* Runs steps [from, to) of case c on m with opt, checking every step. */
void run_steps(clattn_optimizer *opt, model *m, const fcase *c, const clattn_weights *w,
               int32_t from, int32_t to);
/* Opens fixdir/file; a failure is a failed check (returns NULL). */
clattn_weights *open_fixture(const char *file);

#endif
