/* plot_png.c - see plot_png.h. A plain raster: white page, grey frame and
 * grid, the series drawn as anti-aliasing-free polylines (Bresenham) in
 * their colours, values on a linear or log y axis. */
#include "plot_png.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WIDTH = 800, HEIGHT = 480, LEFT = 60, RIGHT = 20, TOP = 20, BOTTOM = 40 };

typedef struct canvas {
    uint8_t px[HEIGHT][WIDTH][3];
} canvas;

static void put(canvas *c, int x, int y, const uint8_t rgb[3])
{
    if (x >= 0 && x < WIDTH && y >= 0 && y < HEIGHT)
        memcpy(c->px[y][x], rgb, 3);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3], int thick)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        for (int t = 0; t < thick; t++) {
            put(c, x0, y0 + t, rgb);
            put(c, x0 + t, y0, rgb);
        }
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * err;
        if (e2 >= dy)
            err += dy, x0 += sx;
        if (e2 <= dx)
            err += dx, y0 += sy;
    }
}

static double transform(double v, bool log_y) { return log_y ? log10(v) : v; }

bool plot_png(const char *path, const plot_series *series, int n_series, bool log_y, char *err,
              size_t err_size)
{
    /* y range over every finite (and, on a log axis, positive) value. */
    double lo = INFINITY, hi = -INFINITY;
    int max_n = 0;
    for (int s = 0; s < n_series; s++) {
        for (int i = 0; i < series[s].n; i++) {
            double v = series[s].y[i];
            if (!isfinite(v) || (log_y && v <= 0.0))
                continue;
            lo = fmin(lo, transform(v, log_y));
            hi = fmax(hi, transform(v, log_y));
        }
        max_n = series[s].n > max_n ? series[s].n : max_n;
    }
    if (!(lo <= hi) || max_n < 1) {
        snprintf(err, err_size, "%s: nothing to plot (no finite values)", path);
        return false;
    }
    if (hi - lo < 1e-12)
        lo -= 0.5, hi += 0.5;
    double pad = 0.05 * (hi - lo);
    lo -= pad, hi += pad;

    canvas *c = malloc(sizeof *c);
    if (!c) {
        snprintf(err, err_size, "out of memory");
        return false;
    }
    memset(c, 255, sizeof *c);
    static const uint8_t grid[3] = {225, 225, 225}, frame[3] = {90, 90, 90};
    int pw = WIDTH - LEFT - RIGHT, ph = HEIGHT - TOP - BOTTOM;
    for (int g = 1; g < 10; g++) {
        int gy = TOP + ph * g / 10, gx = LEFT + pw * g / 10;
        line(c, LEFT, gy, LEFT + pw, gy, grid, 1);
        line(c, gx, TOP, gx, TOP + ph, grid, 1);
    }
    if (log_y) /* a darker line at every power of ten */
        for (double d = ceil(lo); d <= hi; d += 1.0) {
            int gy = TOP + (int)((hi - d) / (hi - lo) * ph);
            line(c, LEFT, gy, LEFT + pw, gy, frame, 1);
        }
    line(c, LEFT, TOP, LEFT + pw, TOP, frame, 1);
    line(c, LEFT, TOP + ph, LEFT + pw, TOP + ph, frame, 1);
    line(c, LEFT, TOP, LEFT, TOP + ph, frame, 1);
    line(c, LEFT + pw, TOP, LEFT + pw, TOP + ph, frame, 1);
    for (int s = 0; s < n_series; s++) {
        int px = -1, py = -1;
        for (int i = 0; i < series[s].n; i++) {
            double v = series[s].y[i];
            if (!isfinite(v) || (log_y && v <= 0.0))
                continue;
            /* x in [0, 1] of the plot's width: given, or spread evenly. */
            double fx = series[s].x ? fmin(1.0, fmax(0.0, series[s].x[i]))
                        : series[s].n > 1 ? (double)i / (series[s].n - 1)
                                          : 0.5;
            int x = LEFT + (int)(fx * pw);
            int y = TOP + (int)((hi - transform(v, log_y)) / (hi - lo) * ph);
            if (px >= 0)
                line(c, px, py, x, y, series[s].rgb, series[s].thick);
            else
                line(c, x, y, x, y, series[s].rgb, series[s].thick);
            px = x, py = y;
        }
    }

    FILE *f = fopen(path, "wb");
    png_structp png = f ? png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL) : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    bool ok = info != NULL;
    if (ok && setjmp(png_jmpbuf(png))) {
        ok = false;
    } else if (ok) {
        png_init_io(png, f);
        png_set_IHDR(png, info, WIDTH, HEIGHT, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < HEIGHT; y++)
            png_write_row(png, (png_const_bytep)c->px[y]);
        png_write_end(png, NULL);
    }
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        snprintf(err, err_size, "%s: cannot write the PNG file", path);
    free(c);
    return ok;
}
