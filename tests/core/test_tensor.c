/* test_tensor.c - tensor creation, whole and range transfers, fill, shape
 * queries, and the size checks: overflow and over-limit allocations are
 * refused with the right status before anything is allocated. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

int main(void)
{
    clattn_ctx *ctx = test_ctx();
    clattn_device_info info;
    clattn_ctx_device_info(ctx, &info);

    /* Round trips for every rank, odd extents. */
    const int64_t shapes[4][4] = {{113, 0, 0, 0}, {3, 17, 0, 0}, {2, 3, 7, 0}, {3, 1, 5, 17}};
    for (int32_t nd = 1; nd <= 4; nd++) {
        size_t n = 1;
        for (int32_t i = 0; i < nd; i++)
            n *= (size_t)shapes[nd - 1][i];
        float *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
        test_fill_uniform(in, n, -3, 3);
        clattn_tensor *t = test_tensor(ctx, nd, shapes[nd - 1], in);
        int64_t got[4] = {0};
        CHECK(clattn_tensor_shape(t, got) == nd, "ndim");
        CHECK(memcmp(got, shapes[nd - 1], (size_t)nd * sizeof *got) == 0, "shape");
        CHECK(clattn_tensor_numel(t) == n, "numel %zu != %zu", clattn_tensor_numel(t), n);
        CHECK(clattn_tensor_cl_mem(t) != NULL, "cl_mem");
        CHECK_OK(clattn_tensor_read(t, out));
        CHECK(memcmp(in, out, n * sizeof *in) == 0, "round trip rank %d", nd);

        /* Range write in the middle, then range read around it. */
        if (n >= 10) {
            float patch[4] = {10, 20, 30, 40}, window[6];
            CHECK_OK(clattn_tensor_write_range(t, 3, 4, patch));
            CHECK_OK(clattn_tensor_read_range(t, 2, 6, window));
            CHECK(window[0] == in[2] && window[1] == 10 && window[4] == 40 && window[5] == in[7],
                  "range transfer");
            CHECK_STATUS(clattn_tensor_read_range(t, n - 2, 3, window), CLATTN_ERR_INVALID_ARG);
            CHECK_STATUS(clattn_tensor_write_range(t, n + 1, 1, patch), CLATTN_ERR_INVALID_ARG);
            CHECK_STATUS(clattn_tensor_read_range(t, SIZE_MAX, 2, window),
                         CLATTN_ERR_INVALID_ARG);
            CHECK_OK(clattn_tensor_read_range(t, n, 0, window)); /* empty is fine */
        }
        CHECK_OK(clattn_tensor_fill(t, -1.5f));
        CHECK_OK(clattn_tensor_read(t, out));
        bool all = true;
        for (size_t i = 0; i < n; i++)
            all = all && out[i] == -1.5f;
        CHECK(all, "fill rank %d", nd);
        clattn_tensor_destroy(t);
        free(in);
        free(out);
    }

    /* Invalid shapes. */
    clattn_tensor *t = (clattn_tensor *)ctx;
    int64_t bad[5] = {2, 0, 3, 1, 1};
    CHECK_STATUS(clattn_tensor_create(ctx, 0, bad, &t), CLATTN_ERR_INVALID_ARG);
    CHECK(t == NULL, "out not cleared");
    CHECK_STATUS(clattn_tensor_create(ctx, 5, bad, &t), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_tensor_create(ctx, 2, bad, &t), CLATTN_ERR_INVALID_ARG);
    int64_t neg[2] = {4, -1};
    CHECK_STATUS(clattn_tensor_create(ctx, 2, neg, &t), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_tensor_create(ctx, 2, NULL, &t), CLATTN_ERR_INVALID_ARG);

    /* Overflow: 2^31 * 2^31 * 4 bytes does not fit in size_t. */
    int64_t huge[3] = {(int64_t)1 << 31, (int64_t)1 << 31, 4};
    CHECK_STATUS(clattn_tensor_create(ctx, 3, huge, &t), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "overflow") != NULL, "message: %s", clattn_last_error());

    /* Over the device's largest allocation by one element: refused, and the
     * message names the size and the limit. */
    int64_t over[1] = {(int64_t)(info.max_alloc_bytes / 4) + 1};
    CHECK_STATUS(clattn_tensor_create(ctx, 1, over, &t), CLATTN_ERR_OUT_OF_MEMORY);
    char limit[32];
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)info.max_alloc_bytes);
    CHECK(strstr(clattn_last_error(), limit) != NULL &&
              strstr(clattn_ctx_last_error(ctx), limit) != NULL,
          "message should name the limit %s: %s", limit, clattn_last_error());

    /* Views share the data and outlive the tensor they view; copies. */
    {
        float in[24], out[24];
        for (int i = 0; i < 24; i++)
            in[i] = (float)i * 0.5f - 3.0f;
        int64_t s3[3] = {2, 3, 4}, s2[2] = {6, 4}, wrong[2] = {5, 5}, zero[2] = {0, 24};
        clattn_tensor *base = test_tensor(ctx, 3, s3, in), *view = NULL, *copy = NULL;
        CHECK_OK(clattn_tensor_view(base, 2, s2, &view));
        int64_t got[4];
        CHECK(clattn_tensor_shape(view, got) == 2 && got[0] == 6 && got[1] == 4, "view shape");
        CHECK_STATUS(clattn_tensor_view(base, 2, wrong, &copy), CLATTN_ERR_INVALID_ARG);
        CHECK(copy == NULL, "failed view must clear out");
        CHECK_STATUS(clattn_tensor_view(base, 2, zero, &copy), CLATTN_ERR_INVALID_ARG);
        CHECK_STATUS(clattn_tensor_view(base, 5, s3, &copy), CLATTN_ERR_INVALID_ARG);
        float patch[2] = {100.0f, 200.0f};
        CHECK_OK(clattn_tensor_write_range(view, 5, 2, patch));
        CHECK_OK(clattn_tensor_read(base, out));
        CHECK(out[5] == 100.0f && out[6] == 200.0f && out[4] == in[4], "write through view");
        clattn_tensor_destroy(base); /* the view keeps the data alive */
        int64_t s1[1] = {24};
        copy = test_tensor(ctx, 1, s1, NULL);
        CHECK_OK(clattn_tensor_copy(view, copy));
        CHECK_OK(clattn_tensor_read(copy, out));
        in[5] = 100.0f, in[6] = 200.0f;
        CHECK(memcmp(in, out, sizeof in) == 0, "copy of a view");
        int64_t s5[1] = {5};
        clattn_tensor *small = test_tensor(ctx, 1, s5, NULL);
        CHECK_STATUS(clattn_tensor_copy(view, small), CLATTN_ERR_INVALID_ARG);
        CHECK_STATUS(clattn_tensor_copy(NULL, small), CLATTN_ERR_INVALID_ARG);
        clattn_tensor_destroy(small);
        clattn_tensor_destroy(copy);
        clattn_tensor_destroy(view);
    }

    CHECK_STATUS(clattn_tensor_read(NULL, NULL), CLATTN_ERR_INVALID_ARG);
    clattn_tensor_destroy(NULL);
    clattn_ctx_destroy(ctx);
    return test_summary("test_tensor");
}
