/* optim_fixtures.c - the optimiser fixtures and the device model shared by
 * test_optimizers and test_checkpoint (see optim_fixtures.h). */
#include "optim_fixtures.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *fixdir;
double worst_used = 0, worst_abs = 0;

fparam fparams[PARAMS_MAX];
int32_t n_fparams;
int32_t n_steps;
json_t *cases_json;
clattn_weights *grads_file;

double jnum(json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

bool load_fixtures(void)
{
    char path[600];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/cases.json", fixdir);
    cases_json = json_load_file(path, 0, &jerr);
    CHECK(cases_json != NULL, "%s: %s", path, jerr.text);
    if (!cases_json)
        return false;
    n_steps = (int32_t)json_integer_value(json_object_get(cases_json, "steps"));
    json_t *ps = json_object_get(cases_json, "params");
    n_fparams = (int32_t)json_array_size(ps);
    CHECK(n_steps > 0 && n_steps <= STEPS_MAX && n_fparams > 0 && n_fparams <= PARAMS_MAX,
          "cases.json: steps %d, params %d", (int)n_steps, (int)n_fparams);
    for (int32_t i = 0; i < n_fparams; i++) {
        json_t *o = json_array_get(ps, (size_t)i), *sh = json_object_get(o, "shape");
        fparam *f = &fparams[i];
        snprintf(f->name, sizeof f->name, "%s", json_string_value(json_object_get(o, "name")));
        f->ndim = (int32_t)json_array_size(sh);
        f->numel = 1;
        for (int32_t d = 0; d < f->ndim; d++) {
            f->shape[d] = json_integer_value(json_array_get(sh, (size_t)d));
            f->numel *= (size_t)f->shape[d];
        }
    }
    snprintf(path, sizeof path, "%s/grads.safetensors", fixdir);
    CHECK_OK(clattn_weights_open(path, &grads_file));
    return grads_file != NULL;
}

void parse_case(json_t *o, fcase *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", json_string_value(json_object_get(o, "name")));
    const char *kind = json_string_value(json_object_get(o, "kind"));
    clattn_optimizer_kind k = strcmp(kind, "sgd") == 0    ? CLATTN_OPTIM_SGD
                              : strcmp(kind, "adam") == 0 ? CLATTN_OPTIM_ADAM
                                                          : CLATTN_OPTIM_ADAMW;
    clattn_optimizer_params *p = &c->p;
    *p = clattn_optimizer_params_default(k);
    p->lr = (float)jnum(o, "lr");
    p->weight_decay = (float)jnum(o, "weight_decay");
    p->momentum = (float)jnum(o, "momentum");
    p->dampening = (float)jnum(o, "dampening");
    p->nesterov = json_is_true(json_object_get(o, "nesterov"));
    p->beta1 = (float)jnum(o, "beta1");
    p->beta2 = (float)jnum(o, "beta2");
    p->eps = (float)jnum(o, "eps");
    p->max_grad_norm = (float)jnum(o, "max_grad_norm");
    p->warmup_steps = json_integer_value(json_object_get(o, "warmup_steps"));
    p->total_steps = json_integer_value(json_object_get(o, "total_steps"));
    p->min_lr = (float)jnum(o, "min_lr");
    c->steps = n_steps;
    for (int32_t s = 0; s < n_steps; s++) {
        c->lrs[s] = json_number_value(json_array_get(json_object_get(o, "lrs"), (size_t)s));
        json_t *nv = json_array_get(json_object_get(o, "norms"), (size_t)s);
        c->norms[s] = json_is_null(nv) ? -1 : json_number_value(nv);
    }
}

bool find_case(const char *name, fcase *c)
{
    json_t *arr = json_object_get(cases_json, "cases");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        if (strcmp(json_string_value(json_object_get(o, "name")), name) == 0) {
            parse_case(o, c);
            return true;
        }
    }
    CHECK(false, "cases.json has no case '%s'", name);
    return false;
}

/* Reads tensor name of w as float32 into dst (numel floats). */
void read_fixture(const clattn_weights *w, const char *name, float *dst, size_t numel)
{
    clattn_status st = clattn_weights_read_f32(w, name, dst, numel);
    CHECK(st == CLATTN_OK, "fixture tensor %s: %s", name, clattn_last_error());
    if (st != CLATTN_OK)
        memset(dst, 0, numel * sizeof *dst);
}

void model_init(clattn_ctx *ctx, model *m, bool from_init)
{
    for (int32_t i = 0; i < n_fparams; i++) {
        fparam *f = &fparams[i];
        float *buf = test_fvec(f->numel);
        char name[128];
        snprintf(name, sizeof name, "init.%.63s", f->name);
        read_fixture(grads_file, name, buf, f->numel);
        m->value[i] = test_tensor(ctx, f->ndim, f->shape, NULL);
        m->grad[i] = test_tensor(ctx, f->ndim, f->shape, NULL);
        if (from_init)
            CHECK_OK(clattn_tensor_write(m->value[i], buf));
        else
            CHECK_OK(clattn_tensor_fill(m->value[i], 0.25f));
        CHECK_OK(clattn_tensor_fill(m->grad[i], 0.0f));
        m->refs[i] = (clattn_param_ref){f->name, m->value[i], m->grad[i]};
        free(buf);
    }
}

void model_free(model *m)
{
    for (int32_t i = 0; i < n_fparams; i++) {
        clattn_tensor_destroy(m->value[i]);
        clattn_tensor_destroy(m->grad[i]);
    }
}

void model_set_grads(model *m, int32_t step)
{
    for (int32_t i = 0; i < n_fparams; i++) {
        float *buf = test_fvec(fparams[i].numel);
        char name[128];
        snprintf(name, sizeof name, "grad.%d.%.63s", (int)step, fparams[i].name);
        read_fixture(grads_file, name, buf, fparams[i].numel);
        CHECK_OK(clattn_tensor_write(m->grad[i], buf));
        free(buf);
    }
}

/* All parameter values, concatenated, into a malloc'd buffer. */
float *model_values(const model *m, size_t *total)
{
    size_t n = 0;
    for (int32_t i = 0; i < n_fparams; i++)
        n += fparams[i].numel;
    float *all = test_fvec(n), *at = all;
    for (int32_t i = 0; i < n_fparams; i++) {
        CHECK_OK(clattn_tensor_read(m->value[i], at));
        at += fparams[i].numel;
    }
    *total = n;
    return all;
}

/* Compares the model's values with "value.<step>.*" of a case file. */
void compare_step(const model *m, const clattn_weights *w, const char *cname, int32_t step)
{
    for (int32_t i = 0; i < n_fparams; i++) {
        size_t n = fparams[i].numel;
        float *got = test_fvec(n), *want = test_fvec(n);
        double *ref = test_dvec(n);
        char name[128], what[256];
        snprintf(name, sizeof name, "value.%d.%.63s", (int)step, fparams[i].name);
        read_fixture(w, name, want, n);
        CHECK_OK(clattn_tensor_read(m->value[i], got));
        for (size_t j = 0; j < n; j++) {
            ref[j] = want[j];
            double used = fabs((double)got[j] - want[j]) / (OPT_ATOL + OPT_RTOL * fabs(want[j]));
            if (used > worst_used)
                worst_used = used;
            if (fabs((double)got[j] - want[j]) > worst_abs)
                worst_abs = fabs((double)got[j] - want[j]);
        }
        snprintf(what, sizeof what, "%.63s step %d %.63s", cname, (int)step, fparams[i].name);
        test_close(what, got, ref, n, OPT_ATOL, OPT_RTOL);
        free(got);
        free(want);
        free(ref);
    }
}

bool close_rel(double got, double want, double rtol)
{
    return fabs(got - want) <= rtol * fabs(want);
}

/* Runs steps [from, to) of case c on m with opt, checking every step. */
void run_steps(clattn_optimizer *opt, model *m, const fcase *c, const clattn_weights *w,
               int32_t from, int32_t to)
{
    for (int32_t s = from; s < to; s++) {
        model_set_grads(m, s);
        /* lr: the same double formula, rounded to float: within an ulp. */
        float lr = clattn_optimizer_lr(opt);
        CHECK(close_rel(lr, c->lrs[s], 1.2e-7), "%s step %d: lr %.9g, PyTorch %.9g", c->name,
              (int)s, (double)lr, c->lrs[s]);
        CHECK_OK(clattn_optimizer_step(opt));
        CHECK(clattn_optimizer_steps(opt) == s + 1, "%s: steps() = %lld after step %d", c->name,
              (long long)clattn_optimizer_steps(opt), (int)s);
        float norm = clattn_optimizer_last_grad_norm(opt);
        if (c->norms[s] < 0)
            CHECK(norm == -1.0f, "%s step %d: last_grad_norm %g without clipping", c->name,
                  (int)s, (double)norm);
        else
            CHECK(close_rel(norm, c->norms[s], 1e-6), "%s step %d: norm %.9g, PyTorch %.9g",
                  c->name, (int)s, (double)norm, c->norms[s]);
        compare_step(m, w, c->name, s);
    }
}

clattn_weights *open_fixture(const char *file)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", fixdir, file);
    clattn_weights *w = NULL;
    clattn_status st = clattn_weights_open(path, &w);
    CHECK(st == CLATTN_OK, "%s: %s", path, clattn_last_error());
    return w;
}

void close_fixtures(void)
{
    clattn_weights_close(grads_file);
    grads_file = NULL;
    json_decref(cases_json);
    cases_json = NULL;
}
