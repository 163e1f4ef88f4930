/* plot_text.c - text on a canvas: labels are tokens from tokenizers
 * ("Ġthe", "##ing", "[CLS]") and user titles, drawn as given with cairo's
 * toy text API, which wants valid UTF-8: an invalid byte would stop cairo
 * with CAIRO_STATUS_INVALID_STRING and blank the rest of the picture, so
 * every string is sanitised first (each invalid byte becomes '?'). */
#include "plot_internal.h"

#include <math.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when s does not start
 * one: overlong forms, surrogates and code points past U+10FFFF are invalid,
 * as in RFC 3629. */
static size_t utf8_sequence(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void plot_utf8_sanitize(const char *s, char *out, size_t out_size)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        size_t len = utf8_sequence(p);
        size_t emit = len ? len : 1;
        if (o + emit >= out_size)
            break;
        if (len)
            memcpy(out + o, p, len);
        else
            out[o] = '?';
        o += emit;
        p += emit;
    }
    out[o] = '\0';
}

double plot_text_width(cairo_t *cr, const char *s)
{
    char clean[512];
    plot_utf8_sanitize(s, clean, sizeof clean);
    cairo_text_extents_t ext;
    cairo_text_extents(cr, clean, &ext);
    return ext.x_advance;
}

/* Cuts clean (sanitised) at character boundaries and appends "…" until it
 * fits in max_width. */
static void ellipsize(cairo_t *cr, char *clean, double max_width)
{
    if (plot_text_width(cr, clean) <= max_width)
        return;
    size_t len = strlen(clean);
    while (len > 0) {
        do
            len--; /* back to the start of a character */
        while (len > 0 && ((unsigned char)clean[len] & 0xc0) == 0x80);
        char buf[520];
        memcpy(buf, clean, len);
        memcpy(buf + len, "\xe2\x80\xa6", 4); /* U+2026, with its NUL */
        if (plot_text_width(cr, buf) <= max_width || len == 0) {
            memcpy(clean, buf, len + 4);
            return;
        }
    }
}

void plot_text(cairo_t *cr, const char *s, double x, double y, plot_align halign, double angle,
               double max_width)
{
    char clean[520];
    plot_utf8_sanitize(s, clean, 512);
    if (!clean[0])
        return;
    if (max_width > 0)
        ellipsize(cr, clean, max_width);
    cairo_text_extents_t ext, xh;
    cairo_text_extents(cr, clean, &ext);
    cairo_text_extents(cr, "x", &xh); /* centring on the x-height keeps a row of
                                         labels on one line whatever their letters */
    double dx = halign == PLOT_LEFT ? 0.0 : halign == PLOT_CENTER ? -ext.x_advance / 2
                                                                   : -ext.x_advance;
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, angle);
    cairo_move_to(cr, dx, -xh.y_bearing / 2.0);
    cairo_show_text(cr, clean);
    cairo_restore(cr);
    cairo_new_path(cr);
}
