/* plot_lines.c - line charts: series on shared x and y axes (y linear or
 * log10) with a grid, tick labels, axis titles, a title and a legend.
 * Long series (clattn-train's per-step loss can have millions of points)
 * are reduced to the min-max envelope of each pixel column before cairo
 * sees them: the picture is the same, the path a few thousand points. */
#include "plot_internal.h"

#include <math.h>
#include <string.h>

#define MAX_SERIES 16

static double x_of(const plot_series *s, int64_t i) { return s->x ? s->x[i] : (double)(i + 1); }

/* log_y is the left axis': a right-axis series is always linear. */
static bool drawable(const plot_series *s, int64_t i, bool log_y)
{
    double x = x_of(s, i), y = s->y[i];
    return isfinite(x) && isfinite(y) && (!log_y || s->right_axis || y > 0.0);
}

/* Everything the metadata writer needs. */
typedef struct line_meta {
    const plot_series *series;
    int32_t n_series;
    const plot_line_spec *spec;
    const plot_axis *x, *y, *y2; /* y2: NULL without a right axis */
    double box[4];       /* plot area: left, top, right, bottom */
    const int64_t *drawn; /* drawable points per series */
} line_meta;

static bool write_meta(FILE *f, const void *data)
{
    const line_meta *m = data;
    bool ok = plot_meta_raw(f, "{\"kind\":\"lines\",\"width\":") &&
              fprintf(f, "%d,\"height\":%d", (int)m->spec->width, (int)m->spec->height) > 0 &&
              plot_meta_raw(f, ",\"title\":") && plot_meta_string(f, m->spec->title) &&
              plot_meta_raw(f, ",\"x_label\":") && plot_meta_string(f, m->spec->x_label) &&
              plot_meta_raw(f, ",\"y_label\":") && plot_meta_string(f, m->spec->y_label) &&
              fprintf(f, ",\"plot\":[%g,%g,%g,%g]", m->box[0], m->box[1], m->box[2],
                      m->box[3]) > 0 &&
              plot_meta_raw(f, ",\"x_axis\":") && plot_meta_axis(f, m->x) &&
              plot_meta_raw(f, ",\"y_axis\":") && plot_meta_axis(f, m->y) &&
              plot_meta_raw(f, ",\"y2_axis\":") &&
              (m->y2 ? plot_meta_axis(f, m->y2) : plot_meta_raw(f, "null")) &&
              plot_meta_raw(f, ",\"series\":[");
    for (int32_t i = 0; ok && i < m->n_series; i++) {
        const plot_series *s = &m->series[i];
        ok = plot_meta_raw(f, i ? ",{\"name\":" : "{\"name\":") &&
             (s->name ? plot_meta_string(f, s->name) : plot_meta_raw(f, "null")) &&
             fprintf(f, ",\"points\":%lld,\"drawn\":%lld,\"rgb\":[%d,%d,%d],\"right_axis\":%s}",
                     (long long)s->n, (long long)m->drawn[i], s->rgb[0], s->rgb[1],
                     s->rgb[2], s->right_axis ? "true" : "false") > 0;
    }
    return ok && plot_meta_raw(f, "]}");
}

static void set_rgb(cairo_t *cr, const uint8_t rgb[3])
{
    cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
}

/* One series as a path, gaps at undrawable points; columns of the plot that
 * hold several points get their first, lowest, highest and last. */
static void draw_series(cairo_t *cr, const plot_series *s, const plot_axis *ax,
                        const plot_axis *ay, const double box[4], bool log_y)
{
    double w = box[2] - box[0], h = box[3] - box[1];
    bool open = false;
    long col = 0;
    double first = 0, lo = 0, hi = 0, last = 0;
    bool have = false;
#define FLUSH()                                                                  \
    do {                                                                         \
        if (have) {                                                              \
            double cx = (double)col + 0.5;                                       \
            if (!open)                                                           \
                cairo_move_to(cr, cx, first), open = true;                       \
            else                                                                 \
                cairo_line_to(cr, cx, first);                                    \
            if (lo != first || hi != first || last != first) {                   \
                cairo_line_to(cr, cx, lo), cairo_line_to(cr, cx, hi);            \
                cairo_line_to(cr, cx, last);                                     \
            }                                                                    \
            have = false;                                                        \
        }                                                                        \
    } while (0)
    bool dense = s->n > (int64_t)(2 * w);
    for (int64_t i = 0; i < s->n; i++) {
        if (!drawable(s, i, log_y)) {
            FLUSH();
            open = false;
            continue;
        }
        double px = box[0] + plot_axis_fraction(ax, x_of(s, i)) * w;
        double py = box[3] - plot_axis_fraction(ay, s->y[i]) * h;
        if (!dense) {
            if (!open)
                cairo_move_to(cr, px, py), open = true;
            else
                cairo_line_to(cr, px, py);
            continue;
        }
        long c = (long)floor(px);
        if (have && c != col)
            FLUSH();
        if (!have) {
            col = c, first = lo = hi = last = py, have = true;
        } else {
            lo = fmin(lo, py), hi = fmax(hi, py), last = py;
        }
    }
    FLUSH();
#undef FLUSH
    set_rgb(cr, s->rgb);
    cairo_set_line_width(cr, s->line_width > 0 ? s->line_width : 1.5);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_stroke(cr);
    if (s->markers && s->n <= 2000) {
        for (int64_t i = 0; i < s->n; i++) {
            if (!drawable(s, i, log_y))
                continue;
            double px = box[0] + plot_axis_fraction(ax, x_of(s, i)) * w;
            double py = box[3] - plot_axis_fraction(ay, s->y[i]) * h;
            cairo_new_sub_path(cr);
            cairo_arc(cr, px, py, 3.0, 0, 2 * PLOT_PI);
        }
        cairo_fill(cr);
    }
}

static void draw_legend(cairo_t *cr, const plot_series *series, int32_t n, const double box[4],
                        plot_legend_corner corner)
{
    double wmax = 0;
    int32_t named = 0;
    for (int32_t i = 0; i < n; i++) {
        if (series[i].name) {
            wmax = fmax(wmax, plot_text_width(cr, series[i].name));
            named++;
        }
    }
    if (!named)
        return;
    double row = 18, sample = 28, pad = 8;
    double lw = fmin(pad + sample + 6 + wmax + pad, (box[2] - box[0]) * 0.6);
    double lh = pad + row * named + pad - 4;
    bool left = corner == PLOT_LEGEND_TOP_LEFT || corner == PLOT_LEGEND_BOTTOM_LEFT;
    bool low = corner == PLOT_LEGEND_BOTTOM_LEFT || corner == PLOT_LEGEND_BOTTOM_RIGHT;
    double x0 = left ? box[0] + 10 : box[2] - lw - 10, y0 = low ? box[3] - lh - 10 : box[1] + 10;
    cairo_rectangle(cr, x0, y0, lw, lh);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.88);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    double y = y0 + pad + row / 2 - 2;
    for (int32_t i = 0; i < n; i++) {
        const plot_series *s = &series[i];
        if (!s->name)
            continue;
        set_rgb(cr, s->rgb);
        cairo_set_line_width(cr, s->line_width > 0 ? s->line_width : 1.5);
        cairo_move_to(cr, x0 + pad, y);
        cairo_line_to(cr, x0 + pad + sample, y);
        cairo_stroke(cr);
        if (s->markers) {
            cairo_arc(cr, x0 + pad + sample / 2, y, 3.0, 0, 2 * PLOT_PI);
            cairo_fill(cr);
        }
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        plot_text(cr, s->name, x0 + pad + sample + 6, y, PLOT_LEFT, 0, lw - pad * 2 - sample - 6);
        y += row;
    }
}

bool plot_lines(const char *path, const plot_series *series, int32_t n_series,
                const plot_line_spec *spec, char *err, size_t err_size)
{
    plot_format format;
    if (!plot_format_of(path, &format, err, err_size))
        return false;
    if (!series || n_series < 1 || n_series > MAX_SERIES || !spec) {
        snprintf(err, err_size, "%s: plot_lines wants 1 to %d series", path, MAX_SERIES);
        return false;
    }
    if (spec->width < 200 || spec->width > 8192 || spec->height < 200 || spec->height > 8192) {
        snprintf(err, err_size, "%s: picture size %d x %d is outside 200..8192", path,
                 (int)spec->width, (int)spec->height);
        return false;
    }
    /* The data's ranges over the points that can be drawn (y2: the right
     * axis' series). */
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    double y2lo = INFINITY, y2hi = -INFINITY;
    int64_t drawn[MAX_SERIES] = {0}, total = 0, left_total = 0;
    bool right = false;
    for (int32_t s = 0; s < n_series; s++) {
        if (series[s].n < 0 || (series[s].n > 0 && !series[s].y)) {
            snprintf(err, err_size, "%s: series %d has no values", path, (int)s);
            return false;
        }
        for (int64_t i = 0; i < series[s].n; i++) {
            if (!drawable(&series[s], i, spec->log_y))
                continue;
            double x = x_of(&series[s], i), y = series[s].y[i];
            xlo = fmin(xlo, x), xhi = fmax(xhi, x);
            if (series[s].right_axis)
                y2lo = fmin(y2lo, y), y2hi = fmax(y2hi, y);
            else
                ylo = fmin(ylo, y), yhi = fmax(yhi, y);
            drawn[s]++;
        }
        total += drawn[s];
        left_total += series[s].right_axis ? 0 : drawn[s];
        right = right || series[s].right_axis;
    }
    if (right && spec->y2_lo < spec->y2_hi)
        y2lo = spec->y2_lo, y2hi = spec->y2_hi;
    if (total > 0 && left_total == 0) { /* only right-axis points: any left axis */
        ylo = spec->log_y ? 1 : y2lo;
        yhi = spec->log_y ? 10 : y2hi;
    }
    if (right && !(y2lo <= y2hi))
        y2lo = ylo, y2hi = yhi; /* no right-axis point: it follows the left axis */
    if (total == 0) {
        snprintf(err, err_size, "%s: nothing to draw: no finite%s values", path,
                 spec->log_y ? " positive" : "");
        return false;
    }
    plot_canvas c;
    if (!plot_canvas_open(&c, path, spec->width, spec->height, err, err_size))
        return false;
    cairo_t *cr = c.cr;
    double W = spec->width, H = spec->height;

    /* Ticks first: the y labels' widths set the margins. */
    double top = spec->title ? 40 : 16, bottom = 56, margin = 24;
    plot_axis ax, ay, ay2;
    int32_t ny = (int32_t)fmax(2, fmin(12, (H - top - bottom) / 45));
    bool ok = plot_axis_make(ylo, yhi, spec->log_y, true, ny, &ay);
    ok = ok && (!right || plot_axis_make(y2lo, y2hi, false, true, ny, &ay2));
    cairo_set_font_size(cr, 12);
    double label_w = 0, label2_w = 0;
    for (int32_t i = 0; ok && i < ay.n_ticks; i++)
        label_w = fmax(label_w, plot_text_width(cr, ay.labels[i]));
    for (int32_t i = 0; ok && right && i < ay2.n_ticks; i++)
        label2_w = fmax(label2_w, plot_text_width(cr, ay2.labels[i]));
    double left = 14 + (spec->y_label ? 20 : 0) + label_w + 8;
    if (right)
        margin = 14 + (spec->y2_label ? 20 : 0) + label2_w + 8;
    double box[4] = {left, top, W - margin, H - bottom};
    int32_t nx = (int32_t)fmax(2, fmin(12, (box[2] - box[0]) / 90));
    ok = ok && plot_axis_make(xlo, xhi, false, true, nx, &ax);
    if (!ok) {
        snprintf(err, err_size, "%s: cannot make axes for x in [%g, %g], y in [%g, %g]%s", path,
                 xlo, xhi, ylo, yhi, right ? " (or the right axis)" : "");
        plot_canvas_discard(&c);
        return false;
    }
    double bw = box[2] - box[0], bh = box[3] - box[1];

    /* Grid and ticks. */
    cairo_set_line_width(cr, 1);
    for (int32_t i = 0; i < ay.n_ticks; i++) {
        double y = round(box[3] - plot_axis_fraction(&ay, ay.ticks[i]) * bh) + 0.5;
        bool major = !ay.log || fabs(log10(ay.ticks[i]) - round(log10(ay.ticks[i]))) < 1e-9;
        cairo_set_source_rgb(cr, major ? 0.85 : 0.92, major ? 0.85 : 0.92, major ? 0.85 : 0.92);
        cairo_move_to(cr, box[0], y), cairo_line_to(cr, box[2], y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        plot_text(cr, ay.labels[i], box[0] - 6, y, PLOT_RIGHT, 0, 0);
    }
    for (int32_t i = 0; right && i < ay2.n_ticks; i++) {
        double y = round(box[3] - plot_axis_fraction(&ay2, ay2.ticks[i]) * bh) + 0.5;
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        cairo_move_to(cr, box[2], y), cairo_line_to(cr, box[2] + 4, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        plot_text(cr, ay2.labels[i], box[2] + 6, y, PLOT_LEFT, 0, 0);
    }
    for (int32_t i = 0; i < ax.n_ticks; i++) {
        double x = round(box[0] + plot_axis_fraction(&ax, ax.ticks[i]) * bw) + 0.5;
        cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
        cairo_move_to(cr, x, box[1]), cairo_line_to(cr, x, box[3]);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        plot_text(cr, ax.labels[i], x, box[3] + 14, PLOT_CENTER, 0, 0);
    }

    /* The series, clipped to the plot area and a margin as wide as a dot,
     * so a point on the frame (the last epoch's) shows whole. */
    cairo_save(cr);
    cairo_rectangle(cr, box[0] - 4, box[1] - 4, bw + 8, bh + 8);
    cairo_clip(cr);
    for (int32_t s = 0; s < n_series; s++)
        draw_series(cr, &series[s], &ax, series[s].right_axis ? &ay2 : &ay, box,
                    spec->log_y && !series[s].right_axis);
    cairo_restore(cr);

    /* Frame, titles, legend. */
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, box[0] + 0.5, box[1] + 0.5, bw - 1, bh - 1);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_font_size(cr, 13);
    if (spec->x_label)
        plot_text(cr, spec->x_label, box[0] + bw / 2, H - 16, PLOT_CENTER, 0, bw);
    if (spec->y_label)
        plot_text(cr, spec->y_label, 18, box[1] + bh / 2, PLOT_CENTER, -PLOT_PI / 2, bh);
    if (right && spec->y2_label)
        plot_text(cr, spec->y2_label, W - 18, box[1] + bh / 2, PLOT_CENTER, PLOT_PI / 2, bh);
    if (spec->title) {
        cairo_set_font_size(cr, 16);
        plot_text(cr, spec->title, W / 2, 20, PLOT_CENTER, 0, W - 20);
    }
    cairo_set_font_size(cr, 12);
    draw_legend(cr, series, n_series, box, spec->legend);

    line_meta meta = {series,           n_series, spec, &ax, &ay, right ? &ay2 : NULL,
                      {box[0], box[1], box[2], box[3]}, drawn};
    return plot_canvas_close(&c, write_meta, &meta, err, err_size);
}
