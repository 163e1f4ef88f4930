/* plot_png.h - line plots as PNG files (libpng), for clattn-train's loss
 * curves. Not part of libclattn. */
#ifndef CLATTN_TOOLS_PLOT_PNG_H
#define CLATTN_TOOLS_PLOT_PNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct plot_series {
    const double *y;        /* n values */
    const double *x;        /* their places in [0, 1] along the x axis, or
                               NULL: spread evenly from 0 to 1 */
    int n;
    uint8_t rgb[3];
    int thick;              /* line width in pixels */
} plot_series;

/* Draws the series into an 800 x 480 RGB PNG at path; log_y plots log10(y)
 * (non-positive values skipped). Non-finite values are skipped. Returns
 * false with a message in err when nothing is finite or the file cannot
 * be written. */
bool plot_png(const char *path, const plot_series *series, int n_series, bool log_y, char *err,
              size_t err_size);

#endif
