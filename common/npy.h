/* npy.h - NumPy .npy files for the command-line tools (inputs such as
 * token ids, masks and activations; outputs as float32).
 *
 * Reads format versions 1.0, 2.0 and 3.0 with the dtypes '<f4' and '<f8'
 * (returned as float32), '<i4' and '<i8' (returned as int64) and '|b1'
 * (returned as bytes 0/1), in C order. Fortran order, big-endian data,
 * object arrays, structured and every other dtype are refused with a
 * message that says so. Files are untrusted input: the header is parsed as
 * the small Python dict literal it is, with every length and count
 * bounds-checked, and the data size must match the shape exactly.
 *
 * Not part of libclattn: the tools compile this file in. Functions return
 * true on success; on failure they write a one-line message (naming the
 * file) into err[err_size] and leave nothing allocated. Thread-safe. */
#ifndef CLATTN_TOOLS_NPY_H
#define CLATTN_TOOLS_NPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NumPy's own limit on dimensions (NPY_MAXDIMS before NumPy 2). */
#define NPY_MAX_DIMS 32

typedef enum npy_kind {
    NPY_FLOAT32 = 0, /* data is float[count]   (from '<f4' or '<f8') */
    NPY_INT64 = 1,   /* data is int64_t[count] (from '<i4' or '<i8') */
    NPY_BOOL = 2     /* data is uint8_t[count], each 0 or 1 (from '|b1') */
} npy_kind;

typedef struct npy_array {
    npy_kind kind;
    char descr[8];                 /* the file's dtype, e.g. "<f8" */
    int32_t ndim;                  /* 0 for a scalar */
    int64_t shape[NPY_MAX_DIMS];   /* shape[0..ndim-1] */
    size_t count;                  /* product of the shape (1 for a scalar) */
    void *data;                    /* malloc'd; free with npy_free */
} npy_array;

/* Reads the .npy file at path into *out. */
bool npy_read(const char *path, npy_array *out, char *err, size_t err_size);

/* The same from size bytes in memory; name is used in messages. */
bool npy_parse(const char *name, const void *bytes, size_t size, npy_array *out, char *err,
               size_t err_size);

/* Frees a->data and clears *a. NULL is a no-op. */
void npy_free(npy_array *a);

/* Writes data (float32, C order, shape[0..ndim-1], 0 <= ndim <= NPY_MAX_DIMS)
 * as a version 1.0 .npy file with dtype '<f4', through a temporary file
 * renamed over path. */
bool npy_write_f32(const char *path, int32_t ndim, const int64_t *shape, const float *data,
                   char *err, size_t err_size);

#endif
