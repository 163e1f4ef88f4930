/* fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * Each input is written to an in-memory file (memfd) and opened through
 * /proc/self/fd/N, so the real clattn_weights_open path runs: stat, mmap,
 * header parsing and validation. An accepted file then has every tensor's
 * info read, every data byte touched and every float tensor converted, and
 * the invariants the reader promises are checked (abort() on violation is
 * what tells libFuzzer). A refused file must come with a message.
 *
 * Built by tests/fuzz/meson.build with clang only; run with tools/fuzz. */
#define _GNU_SOURCE /* memfd_create */
#include <clattn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int memfd = -1;
static char path[64];

/* Reads every byte of the tensor's data (ASan checks the bounds). */
static unsigned touch(const clattn_weight_info *info)
{
    unsigned sum = 0;
    const unsigned char *p = info->data;
    for (size_t i = 0; i < info->nbytes; i++)
        sum += p[i];
    return sum;
}

static void check_tensor(const clattn_weights *w, int32_t index, size_t size, size_t *covered)
{
    clattn_weight_info info;
    if (clattn_weights_info_at(w, index, &info) != CLATTN_OK)
        abort();
    if (info.ndim < 0 || info.ndim > CLATTN_WEIGHTS_MAX_DIMS || !info.name)
        abort();
    size_t numel = 1;
    for (int32_t d = 0; d < info.ndim; d++) {
        if (info.shape[d] < 0)
            abort();
        numel *= (size_t)info.shape[d];
    }
    if (numel != info.numel || info.data_offset > size || info.nbytes > size - info.data_offset)
        abort();
    *covered += info.nbytes;
    (void)touch(&info);

    /* Lookup by name finds the same tensor. */
    clattn_weight_info again;
    if (clattn_weights_find(w, info.name, &again) != CLATTN_OK || again.data != info.data)
        abort();

    /* Conversion of small float tensors (large shapes would only cost time). */
    if (info.numel <= (1u << 16)) {
        float *dst = malloc(info.numel ? info.numel * sizeof *dst : 1);
        if (!dst)
            return;
        clattn_status st = clattn_weights_read_f32(w, info.name, dst, info.numel);
        bool floaty = info.dtype == CLATTN_DTYPE_F32 || info.dtype == CLATTN_DTYPE_F16 ||
                      info.dtype == CLATTN_DTYPE_BF16 || info.dtype == CLATTN_DTYPE_F64;
        if ((st == CLATTN_OK) != floaty)
            abort();
        free(dst);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
        if (memfd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
        abort();

    clattn_weights *w = NULL;
    clattn_status st = clattn_weights_open(path, &w);
    if (st != CLATTN_OK) {
        if (w != NULL || clattn_last_error()[0] == '\0')
            abort(); /* a refusal must clear out and say why */
        return 0;
    }
    size_t covered = 0;
    for (int32_t i = 0; i < clattn_weights_count(w); i++)
        check_tensor(w, i, size, &covered);
    /* The tensors tile the data area exactly, which ends at the file's end. */
    if (clattn_weights_count(w) > 0) {
        clattn_weight_info first;
        clattn_weights_info_at(w, 0, &first);
        if (first.data_offset + covered != size)
            abort();
    }
    for (int32_t i = 0; i < clattn_weights_metadata_count(w); i++) {
        const char *k, *v;
        if (clattn_weights_metadata_at(w, i, &k, &v) != CLATTN_OK ||
            clattn_weights_metadata(w, k) != v)
            abort();
    }
    clattn_weights_close(w);
    return 0;
}
