/* plot_spec.c - what the tools check before any work, with or without
 * cairo: a picture file's format from its extension, and the line chart's
 * defaults. */
#include "plot.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

bool plot_format_of(const char *path, plot_format *format, char *err, size_t err_size)
{
    /* Without cairo every picture would fail after the work: refuse it now. */
    if (!plot_have_cairo) {
        snprintf(err, err_size, "%s: this clattn was built without cairo, so it draws no "
                 "pictures (install libcairo2-dev, then meson setup --reconfigure)",
                 path ? path : "(null)");
        return false;
    }
    const char *slash = path ? strrchr(path, '/') : NULL;
    const char *base = slash ? slash + 1 : path;
    const char *dot = base ? strrchr(base, '.') : NULL;
    if (dot && strcasecmp(dot, ".png") == 0) {
        *format = PLOT_PNG;
        return true;
    }
    if (dot && strcasecmp(dot, ".svg") == 0) {
        *format = PLOT_SVG;
        return true;
    }
    if (dot && dot != base)
        snprintf(err, err_size, "%s: unknown picture format '%s' (use .png or .svg)",
                 path ? path : "(null)", dot);
    else
        snprintf(err, err_size, "%s: no picture format: name the file .png or .svg",
                 path ? path : "(null)");
    return false;
}

plot_line_spec plot_line_spec_default(void)
{
    plot_line_spec s;
    memset(&s, 0, sizeof s);
    s.width = 960, s.height = 540;
    return s;
}
