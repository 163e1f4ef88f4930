/* plot.h - pictures for the command-line tools: line charts (clattn-train's
 * loss curves) and grids of heatmaps (attention weights), drawn with cairo
 * into PNG or SVG files chosen by the file's extension. Not part of
 * libclattn, which never depends on cairo; the tools link common/plot/.
 *
 *   plot_series s = {.name = "loss", .y = loss, .n = n, .rgb = {40, 90, 200}};
 *   plot_line_spec spec = plot_line_spec_default();
 *   spec.title = "training", spec.x_label = "step", spec.y_label = "loss", spec.log_y = true;
 *   char err[256];
 *   if (!plot_lines("loss.svg", &s, 1, &spec, err, sizeof err)) fprintf(stderr, "%s\n", err);
 *
 * Every entry point returns false with a message in err (never a crash, never
 * an exit) on a bad argument, an unknown extension or a failed write; every
 * cairo object is destroyed on every path. Text is UTF-8, drawn as given, with
 * invalid bytes shown as '?'. The functions keep no state of their own, but
 * cairo's fonts come from process-wide caches (fontconfig); the tools draw
 * from one thread, and other callers should too.
 *
 * SVG files carry, just before </svg>, a <metadata id="clattn"> element whose
 * text is one JSON object describing what was drawn (the figure's size, panel
 * rectangles, titles, labels, tick labels and the exact values drawn, %.9g;
 * NaN as null), so tests and scripts can check a picture without reading
 * glyph outlines. Characters <, > and & in it are XML-escaped. */
#ifndef CLATTN_PLOT_H
#define CLATTN_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- files ---------------------------------------------------------------- */

typedef enum plot_format { PLOT_PNG, PLOT_SVG } plot_format;

/* The format of path from its extension: ".png" or ".svg" (any case). Anything
 * else: false with "PATH: unknown picture format '.EXT' (use .png or .svg)".
 * Tools call it while parsing options, before any work. */
bool plot_format_of(const char *path, plot_format *format, char *err, size_t err_size);

/* false in a build without cairo (plot_unavailable.c): then plot_format_of
 * refuses every path, saying so, and the drawing calls fail. */
extern const bool plot_have_cairo;

/* ---- axes ----------------------------------------------------------------- */

#define PLOT_MAX_TICKS 32

/* One axis: its drawn range and its ticks with their labels. */
typedef struct plot_axis {
    double lo, hi;                      /* drawn range, lo < hi (on a log axis,
                                           the values, both > 0) */
    bool log;                           /* log10 scale */
    int32_t n_ticks;                    /* 2..PLOT_MAX_TICKS */
    double ticks[PLOT_MAX_TICKS];       /* ascending, within [lo, hi] */
    char labels[PLOT_MAX_TICKS][24];    /* "0.5", "1e-05", ... */
} plot_axis;

/* Nice ticks for data in [data_lo, data_hi] (data_lo <= data_hi, finite; on a
 * log axis both > 0), at most max_ticks of them (2..PLOT_MAX_TICKS).
 * Linear ticks are the multiples of one step from {1, 2, 2.5, 5} x 10^k, the
 * smallest step giving at most max_ticks ticks. Log ticks are powers of ten
 * (every k-th decade when there are too many), plus 2 and 5 times them when
 * the range spans at most two decades. With expand, [lo, hi] grows to the
 * outer ticks so the data fits inside; without, [lo, hi] is the data range
 * and only ticks inside it are kept (colour bars). A constant range (a single
 * point) is widened around its value first: by +-0.5 x max(|v|, 1) linear,
 * by a decade either side log. */
bool plot_axis_make(double data_lo, double data_hi, bool log, bool expand, int32_t max_ticks,
                    plot_axis *axis);

/* Where v lies along the axis: 0 at lo, 1 at hi (outside for values
 * outside; NaN for v <= 0 on a log axis). */
double plot_axis_fraction(const plot_axis *axis, double v);

/* ---- line charts ---------------------------------------------------------- */

typedef struct plot_series {
    const char *name;       /* legend entry; NULL: not in the legend */
    const double *x;        /* n x values (e.g. steps), or NULL: 1, 2, ..., n */
    const double *y;        /* n y values; non-finite ones (and, on a log axis,
                               those <= 0) are gaps */
    int64_t n;
    uint8_t rgb[3];
    double line_width;      /* pixels; 0: 1.5 */
    bool markers;           /* a dot at each point (series of up to 2000 points) */
    bool right_axis;        /* on the right-hand y axis (always linear), e.g. an
                               accuracy next to log losses */
} plot_series;

/* Where the legend goes inside the plot area: the corner the curves leave
 * free. */
typedef enum plot_legend_corner {
    PLOT_LEGEND_TOP_RIGHT = 0,
    PLOT_LEGEND_TOP_LEFT,
    PLOT_LEGEND_BOTTOM_LEFT,
    PLOT_LEGEND_BOTTOM_RIGHT
} plot_legend_corner;

typedef struct plot_line_spec {
    const char *title;      /* above the chart; may be NULL */
    const char *x_label;    /* axis titles with units, e.g. "step", "loss (MSE)" */
    const char *y_label;
    bool log_y;             /* log10 y axis */
    int32_t width, height;  /* pixels, 200..8192 each */
    /* The right-hand axis, drawn when a series is on it: its title, and its
     * range [y2_lo, y2_hi] when y2_lo < y2_hi (else the range of its
     * series). */
    const char *y2_label;
    double y2_lo, y2_hi;
    plot_legend_corner legend;
} plot_line_spec;

/* Defaults: no titles, linear axes, 960 x 540 pixels, no right axis, the
 * legend top right. */
plot_line_spec plot_line_spec_default(void);

/* Draws the series (n_series in 1..16) as lines on shared axes, with tick
 * labels, axis titles, a grid and a legend, into a spec->width x
 * spec->height picture at path (PNG or SVG by extension). A series longer
 * than the plot is wide is drawn as the min-max envelope of each pixel
 * column, so its spikes stay visible. Fails when no series has a drawable
 * point. The SVG metadata holds "kind": "lines", "width", "height", the
 * titles, "plot" (the plot area: left, top, right, bottom), "x_axis",
 * "y_axis" and "y2_axis" (range, ticks, tick labels; y2 null without a
 * right axis) and "series" [{"name", "points", "drawn", "rgb",
 * "right_axis"}]. The right axis has tick labels but no grid lines of its
 * own, so the grid stays the left axis'. */
bool plot_lines(const char *path, const plot_series *series, int32_t n_series,
                const plot_line_spec *spec, char *err, size_t err_size);

/* ---- heatmaps ------------------------------------------------------------- */

/* One heatmap panel: values row-major [rows, cols], drawn with colours from
 * vmin..vmax (NaN cells drawn grey); title e.g. "layer 0, head 3". */
typedef struct plot_panel {
    const float *values;
    int32_t rows, cols;
    const char *title;
} plot_panel;

typedef struct plot_heatmap_spec {
    const char *title;                  /* whole figure, may be NULL */
    const char *const *row_labels;      /* rows labels (e.g. query tokens), may be NULL */
    const char *const *col_labels;      /* cols labels (key tokens), may be NULL */
    const char *x_label, *y_label;      /* axis titles, e.g. "key token", "query token" */
    float vmin, vmax;                   /* colour range; vmin == vmax: from the data */
    int32_t columns;                    /* panels per row of the grid; 0: automatic */
} plot_heatmap_spec;

/* Draws n panels (1..4096, all of the same rows x cols) in a grid with token
 * labels on both axes of each panel (rotated labels on x; only every k-th
 * label when they are too many to fit: labels need 13 pixels each), and ONE
 * colour bar (viridis) with tick values. PNG or SVG by extension.
 *
 * Size: each cell is clamp(480 / max(rows, cols), 1, 32) pixels square (so a
 * panel is about 480 pixels across), plus room for the labels (as wide as the
 * longest label, at most 160 pixels), the panel titles, the figure title,
 * the axis titles and the colour bar. The grid has spec->columns panels per
 * row, or ceil(sqrt(n)). When that would exceed 8192 pixels on a side, the
 * cells shrink (down to 1 pixel), then the labels are dropped; a grid that
 * still does not fit fails. The SVG metadata holds "kind": "heatmaps",
 * "width", "height", "rows", "cols", "grid_columns", "cell" (pixels),
 * "label_stride" (every k-th label drawn; 0: none), the titles, "vmin",
 * "vmax", "row_labels", "col_labels", "colorbar" {"box", "axis"} and
 * "panels" [{"title", "box": [x, y, w, h] of its cells, "values": rows of
 * the values drawn, or null past 2^20 cells in all}].
 * Returns false with err filled on any failure. */
bool plot_heatmaps(const char *path, const plot_panel *panels, int32_t n,
                   const plot_heatmap_spec *spec, char *err, size_t err_size);

#endif
