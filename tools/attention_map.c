/* attention_map.c - see attention_map.h. */
#include "attention_map.h"

#include "plot.h"

#include <stdio.h>
#include <stdlib.h>

bool attention_map_draw(const char *path, const attention_map *m, char *err, size_t err_size)
{
    if (m->layer >= m->layers || m->head >= m->heads) {
        snprintf(err, err_size, "--%s %d is outside [0, %d)",
                 m->layer >= m->layers ? "layer" : "head", m->layer >= m->layers ? m->layer : m->head,
                 m->layer >= m->layers ? m->layers : m->heads);
        return false;
    }
    const int32_t n_l = m->layer < 0 ? m->layers : 1, n_h = m->head < 0 ? m->heads : 1;
    const int32_t n = n_l * n_h;
    plot_panel *panels = calloc((size_t)n, sizeof *panels);
    char (*titles)[48] = calloc((size_t)n, sizeof *titles);
    if (!panels || !titles) {
        free(panels), free(titles);
        snprintf(err, err_size, "out of memory");
        return false;
    }
    const size_t cells = (size_t)m->rows * (size_t)m->cols;
    for (int32_t i = 0; i < n; i++) {
        int32_t l = m->layer < 0 ? i / n_h : m->layer, h = m->head < 0 ? i % n_h : m->head;
        panels[i].values = m->weights + ((size_t)l * (size_t)m->heads + (size_t)h) * cells;
        panels[i].rows = m->rows, panels[i].cols = m->cols;
        snprintf(titles[i], sizeof titles[i], "layer %d, head %d", l, h);
        panels[i].title = titles[i];
    }
    plot_heatmap_spec spec = {
        .title = m->title, .row_labels = m->row_labels, .col_labels = m->col_labels,
        .x_label = m->x_label, .y_label = m->y_label,
        .vmin = 0.0f, .vmax = 1.0f, /* probabilities */
        /* One row per layer; one layer's heads as a near-square grid. */
        .columns = n_l > 1 ? n_h : 0,
    };
    bool ok = plot_heatmaps(path, panels, n, &spec, err, err_size);
    free(panels), free(titles);
    return ok;
}
