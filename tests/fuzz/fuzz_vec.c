/*
 * fuzz_vec -- libFuzzer target for the .vec (word2vec text) loader
 * (lib/vectors.c). The input is a whole file.
 *
 * Promises checked besides "no crash, no leak, no sanitizer report":
 *   - a refused file is YK_EFORMAT with a message naming the file;
 *   - a loaded matrix is [5, dim] with dim the header's, every value finite
 *     (the loader refuses nan, inf and out-of-range numbers, and random rows
 *     are normal draws), and found + unknown = 5 <= file words + unknown;
 *   - a failed yk_param_load_vec leaves the parameter as it was.
 */
#include "fuzz_util.h"

#include <math.h>

static const char *const vocab[] = {"<pad>", "the", "cat", "zebra",
                                    "unicorn"};
enum { N_WORDS = 5 };

static void load_matrix(yk_ctx *ctx, const char *path, yk_dtype dt)
{
    yk_vec_info info;
    yk_tensor *t = yk_vec_load(ctx, path, dt, N_WORDS, vocab, NULL, &info);
    if (!t) {
        fuzz_expect_message(ctx, "yk_vec_load");
        if (yk_last_status(ctx) != YK_EFORMAT ||
            !strstr(yk_last_error(ctx), path))
            fuzz_fail("yk_vec_load: %s: %s (want bad_format naming the file)",
                      yk_status_name(yk_last_status(ctx)),
                      yk_last_error(ctx));
        return;
    }
    if (yk_tensor_ndim(t) != 2 || yk_tensor_dim(t, 0) != N_WORDS ||
        yk_tensor_dim(t, 1) != info.dim || info.dim < 1)
        fuzz_fail("yk_vec_load: a matrix of the wrong shape (dim %lld)",
                  (long long)info.dim);
    if (info.found + info.unknown != N_WORDS || info.found < 0 ||
        info.found > info.file_words)
        fuzz_fail("yk_vec_load: found %lld, unknown %lld, file words %lld",
                  (long long)info.found, (long long)info.unknown,
                  (long long)info.file_words);
    for (int64_t i = 0; i < yk_tensor_numel(t); i++)
        if (!isfinite(yk_tensor_get(t, i)))
            fuzz_fail("yk_vec_load: element %lld is %g", (long long)i,
                      yk_tensor_get(t, i));
    yk_tensor_free(t);
}

static void load_param(yk_ctx *ctx, const char *path)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *p = m ? yk_model_add(m, "E", YK_F32, 2,
                                   (int64_t[]){N_WORDS, 3}) : NULL;
    if (p) {
        yk_tensor_fill(yk_param_value(p), 99);
        yk_vec_opts o = yk_vec_defaults();
        o.freeze = true;
        if (yk_param_load_vec(p, path, vocab, &o, NULL) != YK_OK) {
            fuzz_expect_message(ctx, "yk_param_load_vec");
            const yk_tensor *v = yk_param_value(p);
            for (int64_t i = 0; i < yk_tensor_numel(v); i++)
                if (yk_tensor_get(v, i) != 99)
                    fuzz_fail("a failed yk_param_load_vec changed the "
                              "parameter: %s", yk_last_error(ctx));
            if (!yk_param_requires_grad(p))
                fuzz_fail("a failed yk_param_load_vec froze the parameter");
        } else if (yk_param_requires_grad(p)) {
            fuzz_fail("yk_param_load_vec with freeze left requires_grad on");
        }
    }
    yk_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    yk_ctx *ctx = yk_ctx_new();
    if (ctx) {
        load_matrix(ctx, path, YK_F32);
        load_matrix(ctx, path, YK_F64);
        load_param(ctx, path);
    }
    yk_ctx_free(ctx);
    close(fd);
    return 0;
}
