/* plot_heatmap.c - grids of heatmap panels (attention weights: one panel per
 * batch entry and head) with token labels on both axes of each panel, panel
 * titles, axis titles and one shared colour bar. In a PNG each panel's cells
 * are an image of rows x cols pixels scaled up by the cell size with
 * nearest-pixel filtering: one drawing operation per panel however many
 * cells, and crisp cell edges. In an SVG that image would be blurred by
 * viewers (cairo 1.16 writes no image-rendering hint), so cells are
 * rectangles there, up to SVG_RECTS_MAX cells in all; larger grids fall
 * back to the image. The layout arithmetic is in one place (compute_layout()) so that the
 * size documented in plot.h is the size drawn. */
#include "plot_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAX_SIDE = 8192,         /* pixels, per side of the whole figure */
    MAX_PANELS = 4096,
    LABEL_PITCH = 13,        /* pixels one label needs along its axis */
    MAX_LABEL_W = 160,       /* labels longer than this are cut with "…" */
    META_VALUES_MAX = 1 << 20, /* cells above which the metadata omits values */
    SVG_RECTS_MAX = 1 << 18    /* cells above which an SVG gets images, not rectangles */
};

/* Viridis (matplotlib's default colour map: ordered in lightness, readable
 * in grey and by most colour-blind readers), sampled at 9 points. */
static const uint8_t VIRIDIS[9][3] = {
    {68, 1, 84},    {71, 44, 122},  {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
    {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37},
};

void plot_viridis(double t, uint8_t rgb[3])
{
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double p = t * 8.0;
    int i = (int)p;
    if (i > 7)
        i = 7;
    double f = p - i;
    for (int k = 0; k < 3; k++)
        rgb[k] = (uint8_t)lround(VIRIDIS[i][k] + f * (VIRIDIS[i + 1][k] - VIRIDIS[i][k]));
}

/* Where everything goes, for one cell size. */
typedef struct layout {
    int32_t cell, stride;          /* stride: every stride-th label; 0: no labels */
    int32_t grid_cols, grid_rows;
    double row_label_w, col_label_h, panel_title_h;
    double panel_w, panel_h;       /* one grid slot, gaps included */
    double left, top;              /* the grid's top-left corner */
    double bar_x, bar_w, bar_label_w;
    int32_t width, height;
} layout;

static double max_label_width(cairo_t *cr, const char *const *labels, int32_t n)
{
    double w = 0;
    for (int32_t i = 0; labels && i < n; i++)
        w = fmax(w, plot_text_width(cr, labels[i]));
    return fmin(w, MAX_LABEL_W);
}

static void layout_for(layout *L, int32_t cell, bool labels, double rlw, double clh,
                       int32_t rows, int32_t cols, const plot_heatmap_spec *spec,
                       bool panel_titles, double bar_label_w)
{
    L->cell = cell;
    L->stride = labels ? (LABEL_PITCH + cell - 1) / cell : 0;
    L->row_label_w = labels && spec->row_labels ? rlw + 6 : 0;
    L->col_label_h = labels && spec->col_labels ? clh + 6 : 0;
    L->panel_title_h = panel_titles ? 20 : 4;
    L->panel_w = L->row_label_w + (double)cols * cell + 16;
    L->panel_h = L->panel_title_h + (double)rows * cell + L->col_label_h + 12;
    L->left = 12 + (spec->y_label ? 22 : 0);
    L->top = 12 + (spec->title ? 30 : 0);
    double grid_w = L->grid_cols * L->panel_w, grid_h = fmax(L->grid_rows * L->panel_h, 160);
    L->bar_label_w = bar_label_w;
    L->bar_x = L->left + grid_w + 8;
    L->bar_w = 16;
    L->width = (int32_t)ceil(L->bar_x + L->bar_w + 6 + bar_label_w + 12);
    L->height = (int32_t)ceil(L->top + grid_h + (spec->x_label ? 24 : 0) + 8);
}

/* The largest cell size (and labels if they fit) within MAX_SIDE. */
static bool compute_layout(cairo_t *cr, layout *L, int32_t n, int32_t rows, int32_t cols,
                   const plot_heatmap_spec *spec, bool panel_titles, double bar_label_w)
{
    L->grid_cols = spec->columns > 0 ? spec->columns : (int32_t)ceil(sqrt((double)n));
    if (L->grid_cols > n)
        L->grid_cols = n;
    L->grid_rows = (n + L->grid_cols - 1) / L->grid_cols;
    int32_t side = rows > cols ? rows : cols;
    int32_t cell = 480 / side;
    cell = cell < 1 ? 1 : cell > 32 ? 32 : cell;
    cairo_set_font_size(cr, 11);
    double rlw = max_label_width(cr, spec->row_labels, rows);
    double clh = max_label_width(cr, spec->col_labels, cols);
    for (int labels = 1; labels >= 0; labels--) {
        for (int32_t c = cell; c >= 1; c--) {
            layout_for(L, c, labels, rlw, clh, rows, cols, spec, panel_titles, bar_label_w);
            if (L->width <= MAX_SIDE && L->height <= MAX_SIDE)
                return true;
        }
    }
    return false;
}

/* The panel's cell rectangle (x, y, w, h) in the figure. */
static void panel_box(const layout *L, int32_t p, int32_t rows, int32_t cols, double box[4])
{
    int32_t gr = p / L->grid_cols, gc = p % L->grid_cols;
    box[0] = L->left + gc * L->panel_w + L->row_label_w;
    box[1] = L->top + gr * L->panel_h + L->panel_title_h;
    box[2] = (double)cols * L->cell;
    box[3] = (double)rows * L->cell;
}

typedef struct heat_meta {
    const plot_panel *panels;
    int32_t n;
    const plot_heatmap_spec *spec;
    const layout *L;
    double vmin, vmax;
    const plot_axis *bar;
    double bar_box[4];
} heat_meta;

static bool meta_labels(FILE *f, const char *const *labels, int32_t n)
{
    if (!labels)
        return plot_meta_raw(f, "null");
    bool ok = plot_meta_raw(f, "[");
    for (int32_t i = 0; ok && i < n; i++)
        ok = (i == 0 || plot_meta_raw(f, ",")) && plot_meta_string(f, labels[i]);
    return ok && plot_meta_raw(f, "]");
}

static bool write_meta(FILE *f, const void *data)
{
    const heat_meta *m = data;
    const layout *L = m->L;
    int32_t rows = m->panels[0].rows, cols = m->panels[0].cols;
    bool values = (int64_t)rows * cols * m->n <= META_VALUES_MAX;
    bool ok = fprintf(f, "{\"kind\":\"heatmaps\",\"width\":%d,\"height\":%d,\"rows\":%d,"
                         "\"cols\":%d,\"grid_columns\":%d,\"cell\":%d,\"label_stride\":%d",
                      (int)L->width, (int)L->height, (int)rows, (int)cols, (int)L->grid_cols,
                      (int)L->cell, (int)L->stride) > 0 &&
              plot_meta_raw(f, ",\"title\":") && plot_meta_string(f, m->spec->title) &&
              plot_meta_raw(f, ",\"x_label\":") && plot_meta_string(f, m->spec->x_label) &&
              plot_meta_raw(f, ",\"y_label\":") && plot_meta_string(f, m->spec->y_label) &&
              plot_meta_raw(f, ",\"vmin\":") && plot_meta_number(f, m->vmin) &&
              plot_meta_raw(f, ",\"vmax\":") && plot_meta_number(f, m->vmax) &&
              plot_meta_raw(f, ",\"row_labels\":") &&
              meta_labels(f, m->spec->row_labels, rows) &&
              plot_meta_raw(f, ",\"col_labels\":") &&
              meta_labels(f, m->spec->col_labels, cols) &&
              fprintf(f, ",\"colorbar\":{\"box\":[%g,%g,%g,%g],\"axis\":", m->bar_box[0],
                      m->bar_box[1], m->bar_box[2], m->bar_box[3]) > 0 &&
              plot_meta_axis(f, m->bar) && plot_meta_raw(f, "},\"panels\":[");
    for (int32_t p = 0; ok && p < m->n; p++) {
        double box[4];
        panel_box(L, p, rows, cols, box);
        ok = plot_meta_raw(f, p ? ",{\"title\":" : "{\"title\":") &&
             plot_meta_string(f, m->panels[p].title) &&
             fprintf(f, ",\"box\":[%g,%g,%g,%g],\"values\":", box[0], box[1], box[2], box[3]) >
                 0;
        if (ok && !values)
            ok = plot_meta_raw(f, "null");
        for (int32_t r = 0; ok && values && r < rows; r++) {
            ok = plot_meta_raw(f, r ? ",[" : "[[");
            const float *v = m->panels[p].values + (size_t)r * cols;
            for (int32_t c = 0; ok && c < cols; c++)
                ok = (c == 0 || plot_meta_raw(f, ",")) && plot_meta_number(f, v[c]);
            ok = ok && plot_meta_raw(f, r == rows - 1 ? "]]" : "]");
        }
        ok = ok && plot_meta_raw(f, "}");
    }
    return ok && plot_meta_raw(f, "]}");
}

static void cell_rgb(float value, double vmin, double vmax, uint8_t rgb[3])
{
    if (isnan(value)) /* grey, outside the colour map */
        rgb[0] = rgb[1] = rgb[2] = 128;
    else
        plot_viridis((value - vmin) / (vmax - vmin), rgb);
}

/* One panel's cells as rectangles (SVG). */
static void draw_cell_rects(cairo_t *cr, const plot_panel *p, double vmin, double vmax,
                            const double box[4], int32_t cell)
{
    for (int32_t r = 0; r < p->rows; r++) {
        for (int32_t c = 0; c < p->cols; c++) {
            uint8_t rgb[3];
            cell_rgb(p->values[(size_t)r * p->cols + c], vmin, vmax, rgb);
            cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
            cairo_rectangle(cr, box[0] + (double)c * cell, box[1] + (double)r * cell, cell, cell);
            cairo_fill(cr);
        }
    }
}

/* One panel's cells: an rows x cols image, one pixel per cell. */
static bool draw_cells(cairo_t *cr, const plot_panel *p, double vmin, double vmax,
                       const double box[4], int32_t cell)
{
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, p->cols, p->rows);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(img);
        return false;
    }
    cairo_surface_flush(img);
    unsigned char *data = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    for (int32_t r = 0; r < p->rows; r++) {
        uint32_t *row = (uint32_t *)(void *)(data + (size_t)r * stride);
        for (int32_t c = 0; c < p->cols; c++) {
            uint8_t rgb[3];
            cell_rgb(p->values[(size_t)r * p->cols + c], vmin, vmax, rgb);
            row[c] = (uint32_t)rgb[0] << 16 | (uint32_t)rgb[1] << 8 | rgb[2];
        }
    }
    cairo_surface_mark_dirty(img);
    cairo_save(cr);
    cairo_translate(cr, box[0], box[1]);
    cairo_scale(cr, cell, cell);
    cairo_set_source_surface(cr, img, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_rectangle(cr, 0, 0, p->cols, p->rows);
    cairo_fill(cr);
    cairo_restore(cr);
    cairo_surface_destroy(img); /* the context holds its own reference while needed */
    return true;
}

static void draw_labels(cairo_t *cr, const layout *L, const plot_heatmap_spec *spec,
                        const double box[4], int32_t rows, int32_t cols)
{
    if (!L->stride)
        return;
    cairo_set_font_size(cr, 11);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    for (int32_t r = 0; spec->row_labels && r < rows; r += L->stride)
        plot_text(cr, spec->row_labels[r], box[0] - 4, box[1] + (r + 0.5) * L->cell, PLOT_RIGHT,
                  0, MAX_LABEL_W);
    /* Rotated a quarter turn, reading upwards, ending just below the cells. */
    for (int32_t c = 0; spec->col_labels && c < cols; c += L->stride)
        plot_text(cr, spec->col_labels[c], box[0] + (c + 0.5) * L->cell, box[1] + box[3] + 4,
                  PLOT_RIGHT, -PLOT_PI / 2, MAX_LABEL_W);
}

static void draw_colorbar(cairo_t *cr, const layout *L, const plot_axis *bar, double vmin,
                          double vmax, double bb[4])
{
    bb[0] = L->bar_x, bb[1] = L->top + 4, bb[2] = L->bar_w;
    bb[3] = fmax(L->grid_rows * L->panel_h, 160) - 20;
    cairo_pattern_t *g = cairo_pattern_create_linear(0, bb[1] + bb[3], 0, bb[1]);
    for (int i = 0; i <= 16; i++) {
        uint8_t rgb[3];
        plot_viridis(i / 16.0, rgb);
        cairo_pattern_add_color_stop_rgb(g, i / 16.0, rgb[0] / 255.0, rgb[1] / 255.0,
                                         rgb[2] / 255.0);
    }
    cairo_rectangle(cr, bb[0], bb[1], bb[2], bb[3]);
    cairo_set_source(cr, g);
    cairo_fill(cr);
    cairo_pattern_destroy(g);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, bb[0] + 0.5, bb[1] + 0.5, bb[2] - 1, bb[3] - 1);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 11);
    for (int32_t i = 0; i < bar->n_ticks; i++) {
        double y = bb[1] + bb[3] - (bar->ticks[i] - vmin) / (vmax - vmin) * bb[3];
        y = round(y) + 0.5;
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        cairo_move_to(cr, bb[0] + bb[2], y), cairo_line_to(cr, bb[0] + bb[2] + 4, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
        plot_text(cr, bar->labels[i], bb[0] + bb[2] + 6, y, PLOT_LEFT, 0, 0);
    }
}

bool plot_heatmaps(const char *path, const plot_panel *panels, int32_t n,
                   const plot_heatmap_spec *spec, char *err, size_t err_size)
{
    plot_format format;
    if (!plot_format_of(path, &format, err, err_size))
        return false;
    if (!panels || !spec || n < 1 || n > MAX_PANELS) {
        snprintf(err, err_size, "%s: plot_heatmaps wants 1 to %d panels, got %d", path,
                 MAX_PANELS, (int)n);
        return false;
    }
    int32_t rows = panels[0].rows, cols = panels[0].cols;
    bool titles = false;
    for (int32_t p = 0; p < n; p++) {
        if (panels[p].rows != rows || panels[p].cols != cols || rows < 1 || cols < 1 ||
            rows > MAX_SIDE || cols > MAX_SIDE || !panels[p].values) {
            snprintf(err, err_size,
                     "%s: panel %d is %d x %d%s; every panel must hold values and be %d x %d "
                     "(1 to %d each)",
                     path, (int)p, (int)panels[p].rows, (int)panels[p].cols,
                     panels[p].values ? "" : " without values", (int)rows, (int)cols,
                     MAX_SIDE);
            return false;
        }
        titles |= panels[p].title != NULL;
    }
    /* The colour range. */
    double vmin = spec->vmin, vmax = spec->vmax;
    if (!isfinite(vmin) || !isfinite(vmax) || vmin > vmax) {
        snprintf(err, err_size, "%s: colour range [%g, %g] is not a finite range", path, vmin,
                 vmax);
        return false;
    }
    if (vmin == vmax) {
        vmin = INFINITY, vmax = -INFINITY;
        for (int32_t p = 0; p < n; p++) {
            for (size_t i = 0; i < (size_t)rows * cols; i++) {
                double v = panels[p].values[i];
                if (isfinite(v))
                    vmin = fmin(vmin, v), vmax = fmax(vmax, v);
            }
        }
        if (vmin > vmax) /* nothing finite: every cell is grey anyway */
            vmin = 0, vmax = 1;
        if (vmin == vmax) { /* one value: put it mid-scale */
            double w = 0.5 * (fabs(vmin) > 1 ? fabs(vmin) : 1);
            vmin -= w, vmax += w;
        }
    }
    plot_axis bar;
    if (!plot_axis_make(vmin, vmax, false, false, 6, &bar)) {
        snprintf(err, err_size, "%s: cannot make colour bar ticks for [%g, %g]", path, vmin,
                 vmax);
        return false;
    }

    /* Text is measured on a scratch context: the size comes first. */
    cairo_surface_t *scratch = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *mcr = cairo_create(scratch);
    cairo_select_font_face(mcr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(mcr, 11);
    double bar_label_w = 0;
    for (int32_t i = 0; i < bar.n_ticks; i++)
        bar_label_w = fmax(bar_label_w, plot_text_width(mcr, bar.labels[i]));
    layout L;
    bool fits = compute_layout(mcr, &L, n, rows, cols, spec, titles, bar_label_w);
    bool measured = cairo_status(mcr) == CAIRO_STATUS_SUCCESS;
    cairo_destroy(mcr);
    cairo_surface_destroy(scratch);
    if (!measured) {
        snprintf(err, err_size, "%s: cairo cannot measure text", path);
        return false;
    }
    if (!fits) {
        snprintf(err, err_size,
                 "%s: %d panels of %d x %d do not fit in %d x %d pixels even with 1-pixel cells "
                 "(draw fewer panels)",
                 path, (int)n, (int)rows, (int)cols, MAX_SIDE, MAX_SIDE);
        return false;
    }

    plot_canvas c;
    if (!plot_canvas_open(&c, path, L.width, L.height, err, err_size))
        return false;
    cairo_t *cr = c.cr;
    bool rects = format == PLOT_SVG && (int64_t)rows * cols * n <= SVG_RECTS_MAX;
    for (int32_t p = 0; p < n; p++) {
        double box[4];
        panel_box(&L, p, rows, cols, box);
        bool drawn = true;
        cairo_save(cr);
        /* Rectangles edge to edge: anti-aliasing would show hairline seams. */
        cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
        if (rects)
            draw_cell_rects(cr, &panels[p], vmin, vmax, box, L.cell);
        else
            drawn = draw_cells(cr, &panels[p], vmin, vmax, box, L.cell);
        cairo_restore(cr);
        if (!drawn) {
            snprintf(err, err_size, "%s: out of memory for a %d x %d panel", path, (int)cols,
                     (int)rows);
            plot_canvas_discard(&c);
            return false;
        }
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        cairo_set_line_width(cr, 1);
        cairo_rectangle(cr, box[0] - 0.5, box[1] - 0.5, box[2] + 1, box[3] + 1);
        cairo_stroke(cr);
        draw_labels(cr, &L, spec, box, rows, cols);
        if (panels[p].title) {
            cairo_set_font_size(cr, 12);
            cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
            plot_text(cr, panels[p].title, box[0] + box[2] / 2, box[1] - 11, PLOT_CENTER, 0,
                      fmax(L.panel_w - 8, 24));
        }
    }
    double bb[4];
    draw_colorbar(cr, &L, &bar, vmin, vmax, bb);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_font_size(cr, 13);
    double grid_w = L.grid_cols * L.panel_w, grid_h = fmax(L.grid_rows * L.panel_h, 160);
    if (spec->x_label)
        plot_text(cr, spec->x_label, L.left + grid_w / 2, L.top + grid_h + 10, PLOT_CENTER, 0,
                  grid_w);
    if (spec->y_label)
        plot_text(cr, spec->y_label, 20, L.top + grid_h / 2, PLOT_CENTER, -PLOT_PI / 2, grid_h);
    if (spec->title) {
        cairo_set_font_size(cr, 16);
        plot_text(cr, spec->title, L.width / 2.0, 24, PLOT_CENTER, 0, L.width - 20);
    }
    heat_meta meta = {panels, n, spec, &L, vmin, vmax, &bar, {bb[0], bb[1], bb[2], bb[3]}};
    return plot_canvas_close(&c, write_meta, &meta, err, err_size);
}
