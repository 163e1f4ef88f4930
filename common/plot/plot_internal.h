/* plot_internal.h - what the files of common/plot/ share and the tools do
 * not see: the canvas (a cairo surface on a file, plot_surface.c), text
 * drawing (plot_text.c) and the SVG metadata writer (plot_meta.c). */
#ifndef CLATTN_PLOT_INTERNAL_H
#define CLATTN_PLOT_INTERNAL_H

#include "plot.h"

#include <cairo.h>
#include <stdio.h>

/* M_PI is not in strict C11. */
#define PLOT_PI 3.14159265358979323846

/* ---- the canvas (plot_surface.c) ------------------------------------------ */

/* Writes the figure's metadata JSON object (plot_meta_* below) to f; returns
 * false when a write fails. */
typedef bool (*plot_meta_fn)(FILE *f, const void *data);

typedef struct plot_canvas {
    plot_format format;
    const char *path;
    int32_t width, height;
    FILE *file;                 /* SVG: written by cairo as it draws */
    cairo_surface_t *surface;
    cairo_t *cr;
    int write_errno;            /* first failed write of the stream callback */
} plot_canvas;

/* Opens a width x height canvas (white background, a sans-serif font) for
 * path in the format of its extension. On failure nothing is left open. */
bool plot_canvas_open(plot_canvas *c, const char *path, int32_t width, int32_t height,
                      char *err, size_t err_size);

/* Finishes the picture and writes it (PNG: now; SVG: completes the file and
 * inserts <metadata id="clattn"> from meta, when not NULL, before </svg>),
 * then destroys every cairo object and closes the file, also on failure.
 * Safe on a canvas that failed to open. A failed picture is removed. */
bool plot_canvas_close(plot_canvas *c, plot_meta_fn meta, const void *meta_data, char *err,
                       size_t err_size);

/* Destroys everything and removes the file, writing nothing: for a picture
 * abandoned halfway. */
void plot_canvas_discard(plot_canvas *c);

/* The drawing's own status as an error ("PATH: cairo: ..."), or true. */
bool plot_canvas_ok(plot_canvas *c, char *err, size_t err_size);

/* ---- text (plot_text.c) --------------------------------------------------- */

/* Copies s into out (out_size >= 4) with each invalid UTF-8 byte replaced by
 * '?', cut at a character boundary when too long; NULL gives "". */
void plot_utf8_sanitize(const char *s, char *out, size_t out_size);

typedef enum plot_align { PLOT_LEFT, PLOT_CENTER, PLOT_RIGHT } plot_align;

/* Width of s in the current font, in pixels (s sanitised first). */
double plot_text_width(cairo_t *cr, const char *s);

/* Draws s (sanitised) anchored at (x, y): halign puts the text's left end,
 * middle or right end there, and the font's x-height is centred on y. angle rotates about the anchor (radians; -pi/2 reads
 * upwards). max_width > 0 cuts the text with an ellipsis to fit. */
void plot_text(cairo_t *cr, const char *s, double x, double y, plot_align halign, double angle,
               double max_width);

/* ---- SVG metadata (plot_meta.c) ------------------------------------------- */

/* JSON pieces, XML-escaped (& < > become entities), so the JSON object can be
 * the text of an XML element. Each returns false when the write fails. */
bool plot_meta_raw(FILE *f, const char *text);      /* text is trusted ASCII */
bool plot_meta_string(FILE *f, const char *s);      /* a JSON string, sanitised */
bool plot_meta_number(FILE *f, double v);           /* %.9g, or null when not finite */
bool plot_meta_axis(FILE *f, const plot_axis *a);   /* {"lo":..,"hi":..,"log":..,"ticks":[..],"labels":[..]} */

/* ---- colours (plot_heatmap.c) --------------------------------------------- */

/* The viridis colour of t in [0, 1] (clamped), as 8-bit r, g, b. */
void plot_viridis(double t, uint8_t rgb[3]);

#endif
