/* attention_map.h - clattn-embed's and clattn-generate's --attention-map:
 * attention weights [layers, heads, rows, cols] drawn as a grid of
 * heatmaps (common/plot/plot.h), one panel per layer and head, or only the
 * chosen layer and/or head, with tokens as the axis labels. */
#ifndef CLATTN_TOOLS_ATTENTION_MAP_H
#define CLATTN_TOOLS_ATTENTION_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct attention_map {
    const float *weights;             /* [layers, heads, rows, cols] */
    int32_t layers, heads, rows, cols;
    int32_t layer, head;              /* -1: all; else only that one */
    const char *const *row_labels;    /* [rows] */
    const char *const *col_labels;    /* [cols] */
    const char *title;
    const char *x_label, *y_label;
} attention_map;

/* Draws m into path (PNG or SVG by extension): panels titled "layer L,
 * head H", a grid with one row per layer and one column per head, colours
 * over 0..1 (probabilities). false with err filled on failure (a layer or
 * head out of range is named). */
bool attention_map_draw(const char *path, const attention_map *m, char *err, size_t err_size);

#endif
