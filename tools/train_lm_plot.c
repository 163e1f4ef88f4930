/* train_lm_plot.c - clattn-train lm --plot: one chart, the losses on a log
 * axis on the left (they fall over orders of magnitude) and the held-out
 * exact match on a linear 0..100% axis on the right (it rises to the top
 * right). The legend goes bottom left, the corner both leave free: the
 * loss starts high, and the accuracy's first point is at the end of
 * epoch 1. */
#include "train_lm.h"

#include "plot.h"

#include <stdio.h>
#include <stdlib.h>

bool lm_plot(const lm_options *o, const lm_history *h)
{
    int64_t total = h->epochs * h->steps;
    double *x = malloc((size_t)h->epochs * sizeof *x), *pct = malloc((size_t)h->epochs * sizeof *pct);
    if (!x || !pct) {
        fprintf(stderr, LM_TOOL ": --plot: out of memory\n");
        free(x), free(pct);
        return false;
    }
    for (int64_t e = 0; e < h->epochs; e++) {
        x[e] = (double)((e + 1) * h->steps); /* measured at the end of its epoch */
        pct[e] = 100.0 * h->held_acc[e];
    }
    plot_series series[3] = {
        {.name = "training loss, every step", .y = h->step_loss, .n = total,
         .rgb = {120, 160, 230}, .line_width = 1.0},
        {.name = "held-out loss, after each epoch", .x = x, .y = h->held_loss, .n = h->epochs,
         .rgb = {200, 40, 40}, .line_width = 2.0, .markers = true},
        {.name = "held-out exact match (right axis)", .x = x, .y = pct, .n = h->epochs,
         .rgb = {30, 140, 60}, .line_width = 2.0, .markers = true, .right_axis = true},
    };
    char title[200];
    snprintf(title, sizeof title,
             "clattn-train lm: %lld-digit addition, %lld layers x %lld hidden, %lld x %lld steps, "
             "batch %lld, lr %g", (long long)o->digits, (long long)o->layers,
             (long long)o->hidden, (long long)h->epochs, (long long)h->steps,
             (long long)o->batch, o->lr);
    plot_line_spec spec = plot_line_spec_default();
    spec.title = title, spec.x_label = "step";
    spec.y_label = "loss (cross-entropy on the answer, log scale)", spec.log_y = true;
    spec.y2_label = "held-out exact match (%)", spec.y2_lo = 0, spec.y2_hi = 100;
    spec.legend = PLOT_LEGEND_BOTTOM_LEFT;
    char err[512];
    bool ok = plot_lines(o->plot, series, 3, &spec, err, sizeof err);
    if (!ok)
        fprintf(stderr, LM_TOOL ": --plot: %s\n", err);
    else if (!o->json)
        printf("loss and accuracy curves: %s (%d x %d)\n", o->plot, (int)spec.width,
               (int)spec.height);
    free(x), free(pct);
    return ok;
}
