/*
 * fuzz_safetensors -- libFuzzer target for the safetensors reader and the
 * checkpoint loaders (lib/checkpoint.c). The input is a whole file.
 *
 * Promises checked besides "no crash, no leak, no sanitizer report":
 *   - a file that cannot be opened is YK_EFORMAT (never EIO: the file is
 *     there; never anything else) with a message;
 *   - an opened file is consistent: names unique and found again, shapes of
 *     at most YK_MAX_DIMS non-negative dims, every f32/f64/i64 tensor
 *     readable, every other dtype refused with YK_EDTYPE;
 *   - a failed yk_model_load / yk_checkpoint_load leaves the model (and the
 *     optimizer's step count) exactly as it was.
 */
#include "fuzz_util.h"

#include <math.h>

static void walk_file(yk_ctx *ctx, const char *path)
{
    yk_safetensors *f = yk_safetensors_open(ctx, path);
    if (!f) {
        fuzz_expect_message(ctx, "yk_safetensors_open");
        if (yk_last_status(ctx) != YK_EFORMAT)
            fuzz_fail("yk_safetensors_open: status %s, want bad_format: %s",
                      yk_status_name(yk_last_status(ctx)),
                      yk_last_error(ctx));
        return;
    }
    int n = yk_safetensors_count(f);
    if (n < 0 || yk_safetensors_name(f, -1) || yk_safetensors_name(f, n) ||
        yk_safetensors_ndim(f, n) != -1)
        fuzz_fail("count %d or out-of-range queries are wrong", n);
    for (int i = 0; i < n; i++) {
        const char *name = yk_safetensors_name(f, i);
        const char *dt = yk_safetensors_dtype(f, i);
        int ndim = yk_safetensors_ndim(f, i);
        const int64_t *shape = yk_safetensors_shape(f, i);
        if (!name || !dt || ndim < 0 || ndim > YK_MAX_DIMS ||
            (ndim > 0 && !shape))
            fuzz_fail("tensor %d: name, dtype or shape missing", i);
        if (yk_safetensors_find(f, name) != i)
            fuzz_fail("tensor %d (\"%s\") is not found again", i, name);
        for (int k = 0; k < ndim; k++)
            if (shape[k] < 0)
                fuzz_fail("tensor \"%s\": shape[%d] = %lld", name, k,
                          (long long)shape[k]);
        bool known = !strcmp(dt, "F32") || !strcmp(dt, "F64") ||
                     !strcmp(dt, "I64");
        yk_tensor *t = yk_safetensors_get(f, name);
        if (known && !t && yk_last_status(ctx) != YK_ENOMEM)
            fuzz_fail("tensor \"%s\" (%s) was validated but cannot be read: "
                      "%s", name, dt, yk_last_error(ctx));
        if (!known && (t || yk_last_status(ctx) != YK_EDTYPE))
            fuzz_fail("tensor \"%s\" of dtype %s: want dtype_mismatch", name,
                      dt);
        if (t && (yk_tensor_ndim(t) != ndim ||
                  (ndim && memcmp(yk_tensor_shape(t), shape,
                                  (size_t)ndim * sizeof *shape))))
            fuzz_fail("tensor \"%s\" read with another shape", name);
        yk_tensor_free(t);
    }
    const char *keys[] = {"step", "config", "optimizer",
                          "yoke_format_version", "absent"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        (void)yk_safetensors_metadata(f, keys[k]);
    yk_safetensors_close(f);
}

/* Every element of every parameter equals 99. */
static bool sentinel(yk_model *m)
{
    for (int i = 0; i < yk_model_count(m); i++) {
        const yk_tensor *t = yk_param_value(yk_model_at(m, i));
        for (int64_t k = 0; k < yk_tensor_numel(t); k++)
            if (yk_tensor_get(t, k) != 99)
                return false;
    }
    return true;
}

static void fill_sentinel(yk_model *m)
{
    for (int i = 0; i < yk_model_count(m); i++)
        yk_tensor_fill(yk_param_value(yk_model_at(m, i)), 99);
}

/* The model of the seed corpus: W f32 [3, 2], b f64 [2], s f64 []. */
static yk_model *seed_model(yk_ctx *ctx)
{
    yk_model *m = yk_model_new(ctx);
    if (!m || !yk_model_add(m, "W", YK_F32, 2, (int64_t[]){3, 2}) ||
        !yk_model_add(m, "b", YK_F64, 1, (int64_t[]){2}) ||
        !yk_model_add(m, "s", YK_F64, 0, NULL)) {
        yk_model_free(m);
        return NULL;
    }
    fill_sentinel(m);
    return m;
}

static void load_model(yk_ctx *ctx, const char *path, bool partial)
{
    yk_model *m = seed_model(ctx);
    if (!m)
        return;
    yk_tensor *counts = yk_tensor_zeros(ctx, YK_I64, 1, (int64_t[]){3});
    yk_tensor_slot slots[] = {{"counts", counts}};
    yk_load_opts o = {.partial = partial, .ignore_prefix = "optim/",
                      .n_extra = 1, .extra = slots};
    yk_load_info info;
    if (yk_model_load(m, path, &o, &info) == YK_OK) {
        if (info.n_loaded < 0 || info.n_missing < 0 || info.n_unexpected < 0)
            fuzz_fail("yk_model_load: negative counts in the info");
        yk_load_info_clear(&info);
    } else {
        fuzz_expect_message(ctx, "yk_model_load");
        if (!sentinel(m))
            fuzz_fail("a failed yk_model_load changed the model: %s",
                      yk_last_error(ctx));
    }
    yk_tensor_free(counts);
    yk_model_free(m);
}

static void load_checkpoint(yk_ctx *ctx, const char *path, yk_optim_kind k)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *w = m ? yk_model_add(m, "W", YK_F32, 2, (int64_t[]){3, 2})
                    : NULL;
    yk_optim *o = w ? yk_optim_new(ctx, k, NULL) : NULL;
    if (o && yk_optim_add_model(o, m) == YK_OK) {
        fill_sentinel(m);
        yk_load_opts lo = {.partial = true};
        if (yk_checkpoint_load(m, o, path, &lo, NULL) != YK_OK) {
            fuzz_expect_message(ctx, "yk_checkpoint_load");
            if (!sentinel(m) || yk_optim_step_count(o, w) != 0)
                fuzz_fail("a failed yk_checkpoint_load changed the model or "
                          "the optimizer: %s", yk_last_error(ctx));
        } else if (yk_optim_step_count(o, w) < 0) {
            fuzz_fail("yk_checkpoint_load: negative step count");
        }
    }
    yk_optim_free(o);
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
        walk_file(ctx, path);
        load_model(ctx, path, false);
        load_model(ctx, path, true);
        load_checkpoint(ctx, path, YK_OPTIM_ADAM);
        load_checkpoint(ctx, path, YK_OPTIM_ROWWISE_ADAGRAD);
    }
    yk_ctx_free(ctx);
    close(fd);
    return 0;
}
