/* test_plot.c - the tools' plotting module (common/plot/): nice ticks on
 * linear and log axes against hand-worked answers and against the rules the
 * ticks must obey (ascending, inside the range, labels that read back as the
 * tick), UTF-8 sanitising, and plot_lines / plot_heatmaps on awkward input
 * (invalid UTF-8 labels, NaN cells, a million points), a right-hand axis,
 * and on every error: unknown extension, missing folder, a full disk,
 * mismatched panels, too many panels, a figure that cannot fit. No device
 * needed.
 *
 * Usage: test_plot */
#include "testutil.h"
#include "plot_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

/* ---- axes ----------------------------------------------------------------- */

/* The rules every axis obeys. */
static void check_axis_rules(const char *what, const plot_axis *a, double lo, double hi,
                             bool expand, int32_t max_ticks)
{
    CHECK(a->n_ticks >= 2 && a->n_ticks <= max_ticks, "%s: %d ticks, want 2..%d", what,
          (int)a->n_ticks, (int)max_ticks);
    CHECK(a->lo < a->hi, "%s: range [%g, %g]", what, a->lo, a->hi);
    /* Rounding slack: a billionth of the range (on a log axis, of its log). */
    double span = a->log ? 0 : 1e-9 * (a->hi - a->lo), rel = a->log ? 1e-9 : 0;
    if (expand)
        CHECK(a->lo <= lo * (1 + rel) + span && a->hi >= hi * (1 - rel) - span, "%s: [%g, %g] does not cover the data [%g, %g]",
              what, a->lo, a->hi, lo, hi);
    else
        CHECK(a->lo == lo && a->hi == hi, "%s: inside mode changed the range to [%g, %g]",
              what, a->lo, a->hi);
    for (int32_t i = 0; i < a->n_ticks; i++) {
        double t = a->ticks[i];
        CHECK(t >= a->lo * (1 - rel) - span && t <= a->hi * (1 + rel) + span &&
                  (i == 0 || t > a->ticks[i - 1]),
              "%s: tick %d = %.17g out of order or outside [%g, %g]", what, (int)i, t, a->lo,
              a->hi);
        char *end;
        double back = strtod(a->labels[i], &end);
        /* A label may round the tick only below the step's precision. */
        double tol = 1e-6 * fabs(a->hi - a->lo) + 1e-12 * fabs(t);
        CHECK(*end == '\0' && fabs(back - t) <= tol, "%s: label '%s' does not read as %.17g",
              what, a->labels[i], t);
        CHECK(strcmp(a->labels[i], "-0") != 0 && strncmp(a->labels[i], "-0.0", 4) != 0 &&
                  (a->labels[i][0] != '-' || t < 0),
              "%s: label '%s' is a negative zero", what, a->labels[i]);
    }
}

/* The expected ticks as their labels, "|"-separated, and the range. */
static void check_axis(const char *what, double lo, double hi, bool log, bool expand,
                       int32_t max_ticks, const char *labels, double want_lo, double want_hi)
{
    plot_axis a;
    bool ok = plot_axis_make(lo, hi, log, expand, max_ticks, &a);
    CHECK(ok, "%s: plot_axis_make failed", what);
    if (!ok)
        return;
    check_axis_rules(what, &a, lo, hi, expand, max_ticks);
    char got[512] = "";
    for (int32_t i = 0; i < a.n_ticks; i++) {
        strcat(got, i ? "|" : "");
        strcat(got, a.labels[i]);
    }
    CHECK(strcmp(got, labels) == 0, "%s: ticks %s, want %s", what, got, labels);
    CHECK(fabs(a.lo - want_lo) <= 1e-12 * fabs(want_lo) && fabs(a.hi - want_hi) <= 1e-12 * fabs(want_hi),
          "%s: range [%.17g, %.17g], want [%g, %g]", what, a.lo, a.hi, want_lo, want_hi);
}

static void test_axes(void)
{
    /* Worked by hand: the smallest step m x 10^k (m in 1, 2, 2.5, 5) with at
     * most max_ticks multiples covering the data. */
    check_axis("linear [0, 1]", 0, 1, false, true, 6, "0.0|0.2|0.4|0.6|0.8|1.0", 0, 1);
    check_axis("linear [0.0013, 2.7]", 0.0013, 2.7, false, true, 8,
               "0.0|0.5|1.0|1.5|2.0|2.5|3.0", 0, 3);
    check_axis("linear [-3.7, -0.2]", -3.7, -0.2, false, true, 6, "-4|-3|-2|-1|0", -4, 0);
    check_axis("linear [0, 0.3] (0.1 steps)", 0, 0.3, false, true, 4, "0.0|0.1|0.2|0.3", 0,
               0.3);
    check_axis("linear [0, 10] by 2.5", 0, 10, false, true, 5, "0.0|2.5|5.0|7.5|10.0", 0, 10);
    check_axis("linear constant 5", 5, 5, false, true, 6, "2|4|6|8", 2, 8);
    check_axis("linear single point 0", 0, 0, false, true, 6, "-0.50|-0.25|0.00|0.25|0.50",
               -0.5, 0.5);
    check_axis("linear crossing 0, 2 ticks", -5, 1e6, false, true, 2, "-5|1e+06", -5, 1e6);
    check_axis("log inside one decade", 12345, 12346, true, false, 6,
               "12345.0|12345.2|12345.4|12345.6|12345.8|12346.0", 12345, 12346);
    check_axis("linear inside [0.013, 0.97]", 0.013, 0.97, false, false, 6, "0.2|0.4|0.6|0.8",
               0.013, 0.97);
    check_axis("linear steps [1, 1000]", 1, 1000, false, true, 12,
               "0|100|200|300|400|500|600|700|800|900|1000", 0, 1000);
    check_axis("log [0.0013, 2.7]", 0.0013, 2.7, true, true, 8, "0.001|0.01|0.1|1|10", 0.001,
               10);
    check_axis("log [1, 50] (2 and 5 sub-ticks)", 1, 50, true, true, 10, "1|2|5|10|20|50|100",
               1, 100);
    check_axis("log single point 0.5", 0.5, 0.5, true, true, 8, "0.01|0.1|1|10", 0.01, 10);
    check_axis("log constant 1", 1, 1, true, true, 8, "0.1|0.2|0.5|1|2|5|10", 0.1, 10);
    check_axis("log [1e-9, 1e3], every other decade", 1e-9, 1e3, true, true, 8,
               "1e-10|1e-08|1e-06|0.0001|0.01|1|100|1e+04", 1e-10, 1e4);

    /* The rules on a sweep of ranges, both modes, both scales. */
    const double ranges[][2] = {{0.0013, 2.7}, {0, 1},     {-1e-7, 3e-7}, {12345, 12346},
                                {1, 1 + 1e-9}, {-5, 1e6},  {3e-5, 3e-5},  {0.2, 0.9},
                                {7, 7},        {-2, -2},   {1e-30, 1e30}, {0.99, 1.01}};
    for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++) {
        for (int log = 0; log < 2; log++) {
            double lo = ranges[r][0], hi = ranges[r][1];
            if (log && lo <= 0)
                continue;
            for (int expand = 0; expand < 2; expand++) {
                for (int32_t m = 2; m <= 12; m += 5) {
                    char what[128];
                    snprintf(what, sizeof what, "%s [%g, %g] %s max %d", log ? "log" : "linear",
                             lo, hi, expand ? "expand" : "inside", (int)m);
                    plot_axis a;
                    bool ok = plot_axis_make(lo, hi, log, expand, m, &a);
                    CHECK(ok, "%s: failed", what);
                    if (ok)
                        check_axis_rules(what, &a, lo == hi && expand ? a.lo : lo,
                                         lo == hi && expand ? a.hi : hi, expand || lo == hi, m);
                }
            }
        }
    }

    plot_axis a;
    CHECK(!plot_axis_make(1, 0, false, true, 6, &a), "lo > hi accepted");
    CHECK(!plot_axis_make(NAN, 1, false, true, 6, &a), "NaN accepted");
    CHECK(!plot_axis_make(0, INFINITY, false, true, 6, &a), "infinity accepted");
    CHECK(!plot_axis_make(0, 1, true, true, 6, &a), "log axis from 0 accepted");
    CHECK(!plot_axis_make(0, 1, false, true, 1, &a), "1 tick accepted");
    CHECK(!plot_axis_make(0, 1, false, true, PLOT_MAX_TICKS + 1, &a), "too many ticks accepted");

    CHECK(plot_axis_make(0.001, 10, true, true, 8, &a), "log axis");
    CHECK(fabs(plot_axis_fraction(&a, 0.001)) < 1e-12 && fabs(plot_axis_fraction(&a, 10) - 1) < 1e-12 &&
              fabs(plot_axis_fraction(&a, 0.1) - 0.5) < 1e-12 && isnan(plot_axis_fraction(&a, 0)),
          "log fractions: %g %g %g", plot_axis_fraction(&a, 0.001), plot_axis_fraction(&a, 10),
          plot_axis_fraction(&a, 0.1));
}

/* ---- text ----------------------------------------------------------------- */

static void check_clean(const char *in, size_t size, const char *want)
{
    char out[64];
    plot_utf8_sanitize(in, out, size);
    CHECK(strcmp(out, want) == 0, "sanitize: got '%s', want '%s'", out, want);
}

static void test_text(void)
{
    check_clean("\xc4\xa0the", 64, "\xc4\xa0the"); /* "Ġthe" */
    check_clean("##ing", 64, "##ing");
    check_clean("[CLS]", 64, "[CLS]");
    check_clean("\xe2\x96\x81to \xf0\x9f\x98\x80", 64, "\xe2\x96\x81to \xf0\x9f\x98\x80");
    check_clean("a\xff\xfe" "b", 64, "a??b");                   /* bytes never in UTF-8 */
    check_clean("x\xe2\x80", 64, "x??");                        /* cut sequence */
    check_clean("\xc0\xaf", 64, "??");                          /* overlong '/' */
    check_clean("\xed\xa0\x80", 64, "???");                     /* a surrogate */
    check_clean("\xf4\x90\x80\x80", 64, "????");                /* past U+10FFFF */
    check_clean("\x80mid", 64, "?mid");                         /* lone continuation */
    check_clean(NULL, 64, "");
    check_clean("abcdef", 4, "abc");                            /* room for 3 */
    check_clean("ab\xc4\xa0", 4, "ab");                         /* never half a character */
}

/* ---- pictures ------------------------------------------------------------- */

static char *slurp(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)*size + 1);
    if (buf && fread(buf, 1, (size_t)*size, f) != (size_t)*size) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[*size] = '\0';
    fclose(f);
    return buf;
}

/* Width and height from a PNG's IHDR chunk, or false. */
static bool png_size(const char *path, uint32_t *w, uint32_t *h)
{
    long size;
    unsigned char *b = (unsigned char *)slurp(path, &size);
    bool ok = b && size > 24 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 &&
              memcmp(b + 12, "IHDR", 4) == 0;
    if (ok) {
        *w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
        *h = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
    }
    free(b);
    return ok;
}

static void test_lines(void)
{
    enum { N = 1000000 };
    double *y = malloc(N * sizeof *y), *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++) {
        x[i] = i;
        y[i] = 2.0 * exp(-i / 2e5) + 0.01 * (i % 7); /* a falling loss with noise */
    }
    y[10] = NAN, y[20] = -1.0; /* gaps: not finite, not positive on a log axis */
    double short_y[3] = {1.0, 0.5, 0.25}, short_x[3] = {3e5, 6e5, 9e5};
    plot_series s[2] = {
        {.name = "every step \xff", .x = x, .y = y, .n = N, .rgb = {40, 90, 200}},
        {.name = "held-out", .x = short_x, .y = short_y, .n = 3, .rgb = {200, 40, 40},
         .markers = true},
    };
    plot_line_spec spec = plot_line_spec_default();
    spec.title = "loss", spec.x_label = "step", spec.y_label = "loss", spec.log_y = true;
    char err[512] = "";
    uint32_t w = 0, h = 0;
    bool ok = plot_lines(tmp("lines.png"), s, 2, &spec, err, sizeof err);
    CHECK(ok, "plot_lines png: %s", err);
    CHECK(ok && png_size(tmp("lines.png"), &w, &h) && w == 960 && h == 540,
          "lines.png is %u x %u, want the default 960 x 540", w, h);

    ok = plot_lines(tmp("lines.svg"), s, 2, &spec, err, sizeof err);
    CHECK(ok, "plot_lines svg: %s", err);
    long size = 0;
    char *svg = ok ? slurp(tmp("lines.svg"), &size) : NULL;
    CHECK(svg && strstr(svg, "<metadata id=\"clattn\">{\"kind\":\"lines\"") &&
              strstr(svg, "\"name\":\"every step ?\"") &&
              strstr(svg, "\"points\":1000000,\"drawn\":999998") && size > 7 &&
              strcmp(svg + size - 7, "</svg>\n") == 0,
          "lines.svg metadata missing or wrong");
    /* The envelope keeps the path near 4 points per pixel column, not 10^6. */
    CHECK(svg && size < 400000, "lines.svg is %ld bytes: the long series was not reduced", size);
    free(svg);

    /* Errors. */
    ok = plot_lines(tmp("lines.bmp"), s, 2, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, "unknown picture format '.bmp'") && strstr(err, "lines.bmp"),
          "bmp: %s", err);
    ok = plot_lines(tmp("lines"), s, 2, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, ".png or .svg"), "no extension: %s", err);
    ok = plot_lines("/nonexistent/dir/l.png", s, 2, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, "/nonexistent/dir/l.png") && strstr(err, "No such file"),
          "missing folder: %s", err);
    ok = plot_lines("/nonexistent/dir/l.svg", s, 2, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, "/nonexistent/dir/l.svg") && strstr(err, "No such file"),
          "missing folder svg: %s", err);
    double bad[2] = {-1, 0};
    plot_series nothing = {.name = "x", .y = bad, .n = 2};
    ok = plot_lines(tmp("none.png"), &nothing, 1, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, "nothing to draw") && access(tmp("none.png"), F_OK) != 0,
          "non-positive on a log axis: %s", err);
    plot_line_spec tiny = spec;
    tiny.width = 10;
    ok = plot_lines(tmp("tiny.png"), s, 2, &tiny, err, sizeof err);
    CHECK(!ok && strstr(err, "200..8192"), "10 px wide: %s", err);
    /* A full disk: the system's reason, and no half-written file left. */
    if (access("/dev/full", W_OK) == 0) {
        const char *names[2] = {"full.png", "full.svg"};
        for (int i = 0; i < 2; i++) {
            char link[512];
            snprintf(link, sizeof link, "%s", tmp(names[i]));
            CHECK(symlink("/dev/full", link) == 0, "symlink %s", link);
            ok = plot_lines(link, s, 2, &spec, err, sizeof err);
            CHECK(!ok && strstr(err, "cannot write") && strstr(err, "No space left"),
                  "%s on a full disk: %s", names[i], err);
            unlink(link);
        }
    }
    free(x), free(y);
}

/* A right-hand axis: linear beside a log left axis, with its fixed range
 * and its own ticks; its series' zeros are drawn (the left axis would drop
 * them as not positive); the legend in another corner; the metadata says
 * which series is on which axis. */
static void test_right_axis(void)
{
    double loss[4] = {2.5, 0.9, 0.2, 0.05}, acc[4] = {0.0, 40.0, 90.0, 100.0};
    double x[4] = {100, 200, 300, 400};
    plot_series s[2] = {
        {.name = "loss", .x = x, .y = loss, .n = 4, .rgb = {200, 40, 40}},
        {.name = "accuracy", .x = x, .y = acc, .n = 4, .rgb = {30, 140, 60}, .markers = true,
         .right_axis = true},
    };
    plot_line_spec spec = plot_line_spec_default();
    spec.y_label = "loss", spec.log_y = true, spec.y2_label = "accuracy (%)";
    spec.y2_lo = 0, spec.y2_hi = 100, spec.legend = PLOT_LEGEND_BOTTOM_LEFT;
    char err[512] = "";
    bool ok = plot_lines(tmp("right.svg"), s, 2, &spec, err, sizeof err);
    CHECK(ok, "right axis svg: %s", err);
    long size = 0;
    char *svg = ok ? slurp(tmp("right.svg"), &size) : NULL;
    char *y2 = svg ? strstr(svg, "\"y2_axis\":{\"lo\":0,\"hi\":100,\"log\":false") : NULL;
    CHECK(y2 != NULL, "right axis: no linear y2_axis over [0, 100] in the metadata");
    CHECK(svg && strstr(svg, "\"y_axis\":{") && strstr(strstr(svg, "\"y_axis\":{"), "\"log\":true"),
          "right axis: the left axis is not log");
    CHECK(svg && strstr(svg, "\"name\":\"accuracy\",\"points\":4,\"drawn\":4,"
                             "\"rgb\":[30,140,60],\"right_axis\":true") &&
              strstr(svg, "\"name\":\"loss\",\"points\":4,\"drawn\":4,\"rgb\":[200,40,40],"
                          "\"right_axis\":false"),
          "right axis: series metadata wrong (the 0%% point must be drawn)");
    free(svg);
    ok = plot_lines(tmp("right.png"), s, 2, &spec, err, sizeof err);
    CHECK(ok, "right axis png: %s", err);
    /* Without a right-axis series the metadata says so. */
    ok = plot_lines(tmp("left.svg"), s, 1, &spec, err, sizeof err);
    svg = ok ? slurp(tmp("left.svg"), &size) : NULL;
    CHECK(svg && strstr(svg, "\"y2_axis\":null"), "no right axis: y2_axis not null");
    free(svg);
}

static void test_heatmaps(void)
{
    enum { R = 5, C = 7, P = 3 };
    float v[P][R * C];
    for (int p = 0; p < P; p++)
        for (int i = 0; i < R * C; i++)
            v[p][i] = (float)((p * 31 + i * 7) % 13) / 12.0f;
    v[1][4] = NAN;
    const char *rows[R] = {"[CLS]", "\xc4\xa0the", "##ing", "a<b&c\"d", "bad\xff"};
    const char *cols[C] = {"0", "1", "2", "3", "4", "5", "a very long label that will not fit in the margin at all, not even nearly, so it is cut"};
    plot_panel panels[P] = {{v[0], R, C, "layer 0, head 0"},
                            {v[1], R, C, "layer 0, head 1"},
                            {v[2], R, C, NULL}};
    plot_heatmap_spec spec = {.title = "attention", .row_labels = rows, .col_labels = cols,
                              .x_label = "key token", .y_label = "query token"};
    char err[512] = "";
    bool ok = plot_heatmaps(tmp("h.svg"), panels, P, &spec, err, sizeof err);
    CHECK(ok, "plot_heatmaps svg: %s", err);
    long size = 0;
    char *svg = ok ? slurp(tmp("h.svg"), &size) : NULL;
    CHECK(svg && strstr(svg, "\"kind\":\"heatmaps\"") && strstr(svg, "\"bad?\"") &&
              strstr(svg, "\"a&lt;b&amp;c\\\"d\"") && strstr(svg, "\"\xc4\xa0the\"") &&
              strstr(svg, "\"title\":\"layer 0, head 1\"") && strstr(svg, "null") &&
              strstr(svg, "\"vmin\":0,\"vmax\":1") && size > 7 &&
              strcmp(svg + size - 7, "</svg>\n") == 0,
          "h.svg metadata missing or wrong");
    free(svg);
    ok = plot_heatmaps(tmp("h.png"), panels, P, &spec, err, sizeof err);
    uint32_t w = 0, h = 0;
    CHECK(ok && png_size(tmp("h.png"), &w, &h) && w > 2 * 7 * 32 && h > 2 * 5 * 32 &&
              w <= 8192 && h <= 8192,
          "h.png: %s, %u x %u", err, w, h);

    /* Many panels: the cells shrink to stay within 8192 pixels a side. */
    enum { MANY = 1024, N = 64 };
    float *big = calloc((size_t)N * N, sizeof *big);
    plot_panel *many = calloc(MANY, sizeof *many);
    for (int i = 0; i < N * N; i++)
        big[i] = (float)(i % N) / N;
    for (int p = 0; p < MANY; p++)
        many[p] = (plot_panel){big, N, N, "p"};
    plot_heatmap_spec plain = {.vmin = 0, .vmax = 1};
    ok = plot_heatmaps(tmp("many.png"), many, MANY, &plain, err, sizeof err);
    CHECK(ok && png_size(tmp("many.png"), &w, &h) && w <= 8192 && h <= 8192 && w > 4096,
          "1024 panels: %s, %u x %u", err, w, h);

    /* Errors. */
    ok = plot_heatmaps(tmp("h.bmp"), panels, P, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, "unknown picture format"), "bmp: %s", err);
    ok = plot_heatmaps("/nonexistent/h.svg", panels, P, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, "/nonexistent/h.svg") && strstr(err, "No such file"),
          "missing folder: %s", err);
    plot_panel odd[2] = {{v[0], R, C, NULL}, {v[1], C, R, NULL}};
    ok = plot_heatmaps(tmp("odd.png"), odd, 2, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, "panel 1 is 7 x 5"), "mismatched panels: %s", err);
    ok = plot_heatmaps(tmp("zero.png"), panels, 0, &spec, err, sizeof err);
    CHECK(!ok && strstr(err, "1 to 4096 panels"), "0 panels: %s", err);
    plot_heatmap_spec backwards = spec;
    backwards.vmin = 1, backwards.vmax = 0;
    ok = plot_heatmaps(tmp("back.png"), panels, P, &backwards, err, sizeof err);
    CHECK(!ok && strstr(err, "colour range"), "vmin > vmax: %s", err);
    /* Two 5000 x 5000 panels side by side cannot fit in 8192 pixels. The
     * values are never read (fixed colour range, the layout fails first). */
    float *huge = calloc((size_t)5000 * 5000, sizeof *huge);
    plot_panel two[2] = {{huge, 5000, 5000, NULL}, {huge, 5000, 5000, NULL}};
    plot_heatmap_spec side = {.vmin = 0, .vmax = 1, .columns = 2};
    ok = plot_heatmaps(tmp("huge.png"), two, 2, &side, err, sizeof err);
    CHECK(!ok && strstr(err, "do not fit"), "too big: %s", err);
    free(huge), free(big), free(many);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clattn-test-plot-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_axes();
    test_text();
    test_lines();
    test_right_axis();
    test_heatmaps();
    const char *files[] = {"lines.png", "lines.svg", "h.svg", "h.png", "many.png",
                           "right.svg", "right.png", "left.svg"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        unlink(tmp(files[i]));
    rmdir(tmpdir);
    return test_summary("test_plot");
}
