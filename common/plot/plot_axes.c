/* plot_axes.c - nice tick values for linear and log10 axes, and their
 * labels. Linear ticks are whole multiples of a step m x 10^k with m in
 * {1, 2, 2.5, 5}: people read such ticks at a glance, and computing each tick
 * as i x m x 10^k (never by adding steps) keeps 0.30000000000000004 out of
 * the labels. Log ticks are powers of ten, with 2 and 5 times them when the
 * range is short enough that powers alone would leave the axis bare. */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Slack for values that sit on a tick up to rounding (0.3 / 0.1), as a
 * fraction of the range: relative to the range, not to the step, so that a
 * value 5 below zero on a range of 10^6 is never taken for zero. */
#define EPS 1e-9

static const double MANTISSAS[] = {1.0, 2.0, 2.5, 5.0};

/* Significant digits for labels of ticks i x m x 10^k up to magnitude top. */
static void format_linear(double v, double m, int k, double top, char *out, size_t size)
{
    int frac = m == 2.5 ? 1 : 0; /* 2.5 x 10^k has a digit at 10^(k-1) */
    if (fabs(v) < 1e-300)
        v = 0.0; /* no "-0" */
    if (top < 1e6 && k - frac >= -6) {
        int decimals = k - frac < 0 ? frac - k : 0;
        snprintf(out, size, "%.*f", decimals, v);
    } else {
        int digits = (int)floor(log10(top)) - (k - frac) + 1;
        digits = digits < 1 ? 1 : digits > 15 ? 15 : digits;
        snprintf(out, size, "%.*g", digits, v);
    }
}

/* The tick value i x m x 10^k, divided rather than multiplied for k < 0 so
 * that 3 x 0.1 comes out as the double nearest 0.3. */
static double tick_value(int64_t i, double m, int k)
{
    return k >= 0 ? (double)i * m * pow(10.0, k) : (double)i * m / pow(10.0, -k);
}

static bool make_linear(double lo, double hi, bool expand, int32_t max_ticks, plot_axis *a)
{
    if (lo == hi) {
        double w = 0.5 * (fabs(lo) > 1.0 ? fabs(lo) : 1.0);
        lo -= w, hi += w;
    }
    double span = hi - lo;
    int k = (int)floor(log10(span / (double)(max_ticks - 1))) - 1;
    for (int tries = 0; tries < 8; tries++, k++) {
        for (size_t j = 0; j < sizeof MANTISSAS / sizeof *MANTISSAS; j++) {
            double m = MANTISSAS[j], step = tick_value(1, m, k), slack = EPS * span / step;
            double first = expand ? floor(lo / step + slack) : ceil(lo / step - slack);
            double last = expand ? ceil(hi / step - slack) : floor(hi / step + slack);
            double count = last - first + 1.0;
            if (count > (double)max_ticks || count < 2.0)
                continue;
            double top = fmax(fabs(first), fabs(last)) * step;
            a->n_ticks = (int32_t)count;
            for (int32_t t = 0; t < a->n_ticks; t++) {
                a->ticks[t] = tick_value((int64_t)first + t, m, k);
                format_linear(a->ticks[t], m, k, top, a->labels[t], sizeof a->labels[t]);
            }
            a->lo = expand ? a->ticks[0] : lo;
            a->hi = expand ? a->ticks[a->n_ticks - 1] : hi;
            return true;
        }
    }
    /* A range too short for two nice ticks inside it: its two ends. */
    a->lo = lo, a->hi = hi, a->n_ticks = 2;
    a->ticks[0] = lo, a->ticks[1] = hi;
    snprintf(a->labels[0], sizeof a->labels[0], "%.6g", lo);
    snprintf(a->labels[1], sizeof a->labels[1], "%.6g", hi);
    return true;
}

static void add_log_tick(plot_axis *a, double v)
{
    a->ticks[a->n_ticks] = v;
    snprintf(a->labels[a->n_ticks], sizeof a->labels[0], "%.3g", v);
    a->n_ticks++;
}

static bool make_log(double lo, double hi, bool expand, int32_t max_ticks, plot_axis *a)
{
    if (lo == hi)
        lo /= 10.0, hi *= 10.0;
    int elo = (int)floor(log10(lo) + EPS), ehi = (int)ceil(log10(hi) - EPS);
    if (ehi <= elo)
        ehi = elo + 1;
    int decades = ehi - elo;
    int per = (decades + max_ticks - 2) / (max_ticks - 1); /* decades per tick */
    int first = (int)floor((double)elo / per) * per, last = (int)ceil((double)ehi / per) * per;
    if (expand)
        lo = pow(10.0, first), hi = pow(10.0, last);
    a->lo = lo, a->hi = hi, a->n_ticks = 0;
    bool subticks = per == 1 && 3 * (last - first) + 1 <= max_ticks && last - first <= 2;
    for (int e = first; e <= last; e += per) {
        static const double SUB[] = {1.0, 2.0, 5.0};
        for (int s = 0; s < (subticks && e < last ? 3 : 1); s++) {
            double v = SUB[s] * pow(10.0, e);
            if (v >= lo * (1 - EPS) && v <= hi * (1 + EPS) && a->n_ticks < max_ticks)
                add_log_tick(a, v);
        }
    }
    if (a->n_ticks < 2) {
        /* Inside a decade with no power of ten in it (a colour bar over
         * [12345, 12346]): linear nice ticks, still placed on the log scale. */
        plot_axis lin;
        make_linear(lo, hi, false, max_ticks, &lin);
        a->n_ticks = 0;
        for (int32_t i = 0; i < lin.n_ticks; i++) {
            if (lin.ticks[i] > 0 && lin.ticks[i] >= lo * (1 - EPS)) { /* never 0 on a log axis */
                a->ticks[a->n_ticks] = lin.ticks[i];
                memcpy(a->labels[a->n_ticks++], lin.labels[i], sizeof lin.labels[i]);
            }
        }
    }
    if (a->n_ticks < 2) { /* nothing nice fits: the ends */
        a->n_ticks = 2;
        a->ticks[0] = lo, a->ticks[1] = hi;
        snprintf(a->labels[0], sizeof a->labels[0], "%.6g", lo);
        snprintf(a->labels[1], sizeof a->labels[1], "%.6g", hi);
    }
    return true;
}

bool plot_axis_make(double data_lo, double data_hi, bool log, bool expand, int32_t max_ticks,
                    plot_axis *axis)
{
    memset(axis, 0, sizeof *axis);
    axis->log = log;
    if (!isfinite(data_lo) || !isfinite(data_hi) || data_lo > data_hi || max_ticks < 2 ||
        max_ticks > PLOT_MAX_TICKS || (log && data_lo <= 0.0))
        return false;
    /* Ranges near the ends of double would overflow the span or 10^k. */
    if (fabs(data_lo) > 1e300 || fabs(data_hi) > 1e300 || (log && data_lo < 1e-300))
        return false;
    return log ? make_log(data_lo, data_hi, expand, max_ticks, axis)
               : make_linear(data_lo, data_hi, expand, max_ticks, axis);
}

double plot_axis_fraction(const plot_axis *a, double v)
{
    if (a->log) {
        if (!(v > 0.0))
            return NAN;
        return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    }
    return (v - a->lo) / (a->hi - a->lo);
}
