/* plot_surface.c - the canvas of every picture: a cairo image surface
 * written as PNG, or a cairo SVG surface, chosen by the file's extension.
 * Both write through our own FILE stream rather than cairo's filename
 * functions, so a failed write reports the system's reason (errno), not
 * just "error while writing to output stream"; the SVG file is then
 * reopened at its end to insert the metadata element before </svg>. */
#include "plot_internal.h"

#include <cairo-svg.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

const bool plot_have_cairo = true;

static cairo_status_t write_stream(void *closure, const unsigned char *data, unsigned int length)
{
    plot_canvas *c = closure;
    if (c->write_errno)
        return CAIRO_STATUS_WRITE_ERROR;
    if (fwrite(data, 1, length, c->file) != length) {
        c->write_errno = errno ? errno : EIO;
        return CAIRO_STATUS_WRITE_ERROR;
    }
    return CAIRO_STATUS_SUCCESS;
}

bool plot_canvas_ok(plot_canvas *c, char *err, size_t err_size)
{
    cairo_status_t st = c->cr ? cairo_status(c->cr) : CAIRO_STATUS_NULL_POINTER;
    if (st == CAIRO_STATUS_SUCCESS && c->surface)
        st = cairo_surface_status(c->surface);
    if (st == CAIRO_STATUS_SUCCESS)
        return true;
    if (st == CAIRO_STATUS_WRITE_ERROR && c->write_errno)
        snprintf(err, err_size, "%s: cannot write: %s", c->path, strerror(c->write_errno));
    else
        snprintf(err, err_size, "%s: cairo: %s", c->path, cairo_status_to_string(st));
    return false;
}

bool plot_canvas_open(plot_canvas *c, const char *path, int32_t width, int32_t height,
                      char *err, size_t err_size)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->width = width, c->height = height;
    if (!plot_format_of(path, &c->format, err, err_size))
        return false;
    if (width < 1 || height < 1 || width > 32767 || height > 32767) {
        snprintf(err, err_size, "%s: picture size %d x %d out of range", path, (int)width,
                 (int)height);
        return false;
    }
    if (c->format == PLOT_SVG) {
        /* w+: the metadata is inserted after cairo has written </svg>. */
        c->file = fopen(path, "w+b");
        if (!c->file) {
            snprintf(err, err_size, "%s: cannot write: %s", path, strerror(errno));
            return false;
        }
        c->surface = cairo_svg_surface_create_for_stream(write_stream, c, width, height);
    } else {
        /* RGB24: no alpha channel, a white page. The file is opened only
         * when the picture is written (plot_canvas_close). */
        c->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    }
    c->cr = cairo_create(c->surface);
    if (!plot_canvas_ok(c, err, err_size)) {
        plot_canvas_discard(c);
        return false;
    }
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    cairo_select_font_face(c->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(c->cr, 12);
    return true;
}

/* Moves the file position to the start of the last "</svg>" in the file. */
static bool seek_svg_end(FILE *f)
{
    char tail[256];
    if (fseek(f, 0, SEEK_END) != 0)
        return false;
    long size = ftell(f);
    long start = size > (long)sizeof tail ? size - (long)sizeof tail : 0;
    if (size < 0 || fseek(f, start, SEEK_SET) != 0)
        return false;
    size_t got = fread(tail, 1, (size_t)(size - start), f);
    for (size_t i = got; i >= 6; i--) {
        if (memcmp(tail + i - 6, "</svg>", 6) == 0)
            return fseek(f, start + (long)(i - 6), SEEK_SET) == 0;
    }
    return false;
}

static bool insert_metadata(plot_canvas *c, plot_meta_fn meta, const void *data, char *err,
                            size_t err_size)
{
    FILE *f = c->file;
    if (!seek_svg_end(f)) {
        snprintf(err, err_size, "%s: cairo's SVG has no </svg> to put the metadata before",
                 c->path);
        return false;
    }
    errno = 0;
    bool ok = plot_meta_raw(f, "<metadata id=\"clattn\">") && meta(f, data) &&
              plot_meta_raw(f, "</metadata>\n</svg>\n");
    if (!ok)
        snprintf(err, err_size, "%s: cannot write: %s", c->path,
                 strerror(errno ? errno : EIO));
    return ok;
}

bool plot_canvas_close(plot_canvas *c, plot_meta_fn meta, const void *meta_data, char *err,
                       size_t err_size)
{
    char scratch[8];
    if (!err)
        err = scratch, err_size = sizeof scratch;
    bool ok = c->surface != NULL && plot_canvas_ok(c, err, err_size);
    if (ok && c->format == PLOT_PNG) {
        c->file = fopen(c->path, "wb");
        if (!c->file) {
            snprintf(err, err_size, "%s: cannot write: %s", c->path, strerror(errno));
            ok = false;
        } else {
            cairo_surface_flush(c->surface);
            cairo_status_t st = cairo_surface_write_to_png_stream(c->surface, write_stream, c);
            if (st != CAIRO_STATUS_SUCCESS) {
                if (c->write_errno)
                    snprintf(err, err_size, "%s: cannot write: %s", c->path,
                             strerror(c->write_errno));
                else
                    snprintf(err, err_size, "%s: cairo: %s", c->path,
                             cairo_status_to_string(st));
                ok = false;
            }
        }
    }
    if (c->cr)
        cairo_destroy(c->cr);
    c->cr = NULL;
    if (c->surface) {
        /* Finishing an SVG surface writes the rest of the document. */
        cairo_surface_finish(c->surface);
        if (ok && c->format == PLOT_SVG) {
            cairo_status_t st = cairo_surface_status(c->surface);
            if (st != CAIRO_STATUS_SUCCESS) {
                snprintf(err, err_size, "%s: %s%s", c->path,
                         c->write_errno ? "cannot write: " : "cairo: ",
                         c->write_errno ? strerror(c->write_errno) : cairo_status_to_string(st));
                ok = false;
            }
        }
        cairo_surface_destroy(c->surface);
        c->surface = NULL;
    }
    if (ok && c->format == PLOT_SVG && meta)
        ok = insert_metadata(c, meta, meta_data, err, err_size);
    if (c->file) {
        if (fclose(c->file) != 0 && ok) {
            snprintf(err, err_size, "%s: cannot write: %s", c->path, strerror(errno));
            ok = false;
        }
        c->file = NULL;
        if (!ok)
            remove(c->path); /* never leave half a picture behind */
    }
    return ok;
}

void plot_canvas_discard(plot_canvas *c)
{
    if (c->cr)
        cairo_destroy(c->cr);
    if (c->surface) {
        cairo_surface_finish(c->surface);
        cairo_surface_destroy(c->surface);
    }
    c->cr = NULL, c->surface = NULL;
    if (c->file) {
        fclose(c->file);
        remove(c->path);
    }
    c->file = NULL;
}
