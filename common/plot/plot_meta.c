/* plot_meta.c - the JSON object an SVG picture carries in its
 * <metadata id="clattn"> element (see plot.h): written piece by piece
 * straight to the file, because a heatmap's values can be millions of
 * numbers, and XML-escaped, because it is the text of an XML element. */
#include "plot_internal.h"

#include <math.h>

bool plot_meta_raw(FILE *f, const char *text) { return fputs(text, f) >= 0; }

bool plot_meta_string(FILE *f, const char *s)
{
    char clean[1024];
    plot_utf8_sanitize(s, clean, sizeof clean);
    bool ok = fputc('"', f) != EOF;
    for (const unsigned char *p = (const unsigned char *)clean; ok && *p; p++) {
        switch (*p) {
        case '"': ok = fputs("\\\"", f) >= 0; break;
        case '\\': ok = fputs("\\\\", f) >= 0; break;
        case '&': ok = fputs("&amp;", f) >= 0; break;
        case '<': ok = fputs("&lt;", f) >= 0; break;
        case '>': ok = fputs("&gt;", f) >= 0; break;
        default:
            /* Control characters are not allowed raw in JSON strings (nor,
             * most of them, in XML). */
            ok = *p < 0x20 ? fprintf(f, "\\u%04x", *p) > 0 : fputc(*p, f) != EOF;
        }
    }
    return ok && fputc('"', f) != EOF;
}

bool plot_meta_number(FILE *f, double v)
{
    return isfinite(v) ? fprintf(f, "%.9g", v) > 0 : fputs("null", f) >= 0;
}

bool plot_meta_axis(FILE *f, const plot_axis *a)
{
    bool ok = plot_meta_raw(f, "{\"lo\":") && plot_meta_number(f, a->lo) &&
              plot_meta_raw(f, ",\"hi\":") && plot_meta_number(f, a->hi) &&
              plot_meta_raw(f, a->log ? ",\"log\":true,\"ticks\":[" : ",\"log\":false,\"ticks\":[");
    for (int32_t i = 0; ok && i < a->n_ticks; i++)
        ok = (i == 0 || plot_meta_raw(f, ",")) && plot_meta_number(f, a->ticks[i]);
    ok = ok && plot_meta_raw(f, "],\"labels\":[");
    for (int32_t i = 0; ok && i < a->n_ticks; i++)
        ok = (i == 0 || plot_meta_raw(f, ",")) && plot_meta_string(f, a->labels[i]);
    return ok && plot_meta_raw(f, "]}");
}
