/* plot_unavailable.c - the pictures of a clattn built without cairo
 * (meson -Dpictures=disabled, or libcairo2-dev missing when configured):
 * every drawing call fails with a message that says how to get them, so
 * --plot and --attention-map are refused cleanly instead of the tools not
 * building. The format and tick logic (plot_spec.c, plot_axes.c) stay. */
#include "plot.h"

#include <stdio.h>

const bool plot_have_cairo = false;

static bool unavailable(const char *path, char *err, size_t err_size)
{
    snprintf(err, err_size, "%s: this clattn was built without cairo, so it draws no "
             "pictures (install libcairo2-dev, then meson setup --reconfigure)",
             path ? path : "(null)");
    return false;
}

bool plot_lines(const char *path, const plot_series *series, int32_t n_series,
                const plot_line_spec *spec, char *err, size_t err_size)
{
    (void)series, (void)n_series, (void)spec;
    return unavailable(path, err, err_size);
}

bool plot_heatmaps(const char *path, const plot_panel *panels, int32_t n,
                   const plot_heatmap_spec *spec, char *err, size_t err_size)
{
    (void)panels, (void)n, (void)spec;
    return unavailable(path, err, err_size);
}
