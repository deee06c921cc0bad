/* Tests of lib/tensor.c, lib/ctx.c and lib/model.c: tensors, random
 * numbers, printing, the parameter store. */
#include "check.h"

#include <stdlib.h>

static yk_ctx *ctx;

static void setup(void) { ctx = yk_ctx_new(); }
static void teardown(void) { yk_ctx_free(ctx); }

TestSuite(tensor, .init = setup, .fini = teardown);

Test(tensor, creators)
{
    yk_tensor *z = yk_tensor_zeros(ctx, YK_F32, 2, (int64_t[]){2, 3});
    yk_tensor *o = yk_tensor_ones(ctx, YK_F64, 1, (int64_t[]){4});
    yk_tensor *f = yk_tensor_full(ctx, YK_I64, 1, (int64_t[]){2}, 7);
    expect_shape(z, SHAPE(2, 3));
    expect_close(z, VALS(0, 0, 0, 0, 0, 0), 6, 0, 0);
    expect_close(o, VALS(1, 1, 1, 1), 4, 0, 0);
    expect_close(f, VALS(7, 7), 2, 0, 0);
    cr_assert_eq(yk_tensor_nbytes(z), 24);
    cr_assert_eq(yk_tensor_nbytes(f), 16);
    cr_assert_eq(yk_tensor_dim(z, -1), 3);
    cr_assert_eq(yk_tensor_dim(z, 2), -1);
    yk_tensor_free(z);
    yk_tensor_free(o);
    yk_tensor_free(f);
}

Test(tensor, scalar_and_empty)
{
    yk_tensor *s = yk_tensor_full(ctx, YK_F64, 0, NULL, 2.5);
    cr_assert_eq(yk_tensor_ndim(s), 0);
    cr_assert_eq(yk_tensor_numel(s), 1);
    expect_close(s, VALS(2.5), 1, 0, 0);
    yk_tensor *e = yk_tensor_zeros(ctx, YK_F32, 3, (int64_t[]){2, 0, 4});
    cr_assert_eq(yk_tensor_numel(e), 0);
    cr_assert_eq(yk_tensor_nbytes(e), 0);
    yk_tensor *e2 = yk_tensor_from(ctx, YK_F64, 1, (int64_t[]){0}, NULL);
    cr_assert_not_null(e2);
    yk_tensor *eight = yk_tensor_zeros(ctx, YK_F32, 8,
                                       (int64_t[]){1, 2, 1, 2, 1, 2, 1, 2});
    cr_assert_eq(yk_tensor_numel(eight), 16);
    yk_tensor_free(s);
    yk_tensor_free(e);
    yk_tensor_free(e2);
    yk_tensor_free(eight);
}

Test(tensor, bad_shapes_are_errors)
{
    cr_assert_null(yk_tensor_zeros(ctx, YK_F32, 9,
                                   (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}));
    expect_error(ctx, YK_EINVAL, "ndim = 9");
    cr_assert_null(yk_tensor_zeros(ctx, YK_F32, 2, (int64_t[]){3, -2}));
    expect_error(ctx, YK_ESHAPE, "shape[1] = -2");
    cr_assert_null(yk_tensor_zeros(ctx, YK_F32, 2,
                                   (int64_t[]){INT64_C(1) << 30, INT64_C(1) << 30}));
    expect_error(ctx, YK_ESHAPE, "shape[1]");
    cr_assert_null(yk_tensor_zeros(ctx, (yk_dtype)7, 1, (int64_t[]){1}));
    expect_error(ctx, YK_EDTYPE, "dtype 7");
    cr_assert_null(yk_tensor_from(ctx, YK_F64, 1, (int64_t[]){3}, NULL));
    expect_error(ctx, YK_EINVAL, "data is NULL");
}

Test(tensor, from_copies_and_wrap_borrows)
{
    double buf[3] = {1, 2, 3};
    yk_tensor *c = yk_tensor_from(ctx, YK_F64, 1, (int64_t[]){3}, buf);
    yk_tensor *w = yk_tensor_wrap(ctx, YK_F64, 1, (int64_t[]){3}, buf);
    buf[0] = 10;
    cr_assert_eq(yk_tensor_get(c, 0), 1);  /* a copy */
    cr_assert_eq(yk_tensor_get(w, 0), 10); /* the caller's buffer */
    cr_assert_eq(yk_tensor_data(w), buf);
    yk_tensor *k = yk_tensor_clone(w);
    cr_assert_neq(yk_tensor_data(k), buf);
    expect_close(k, VALS(10, 2, 3), 3, 0, 0);
    yk_tensor_free(c);
    yk_tensor_free(w); /* must not free buf (ASan would catch it) */
    yk_tensor_free(k);
    yk_tensor_free(NULL);
    cr_assert(isnan(yk_tensor_get(NULL, 0)));
}

Test(tensor, copy_checks_dtype_and_size)
{
    yk_tensor *a = yk_tensor_zeros(ctx, YK_F64, 1, (int64_t[]){3});
    yk_tensor *b = yk_tensor_zeros(ctx, YK_F32, 1, (int64_t[]){3});
    yk_tensor *c = yk_tensor_full(ctx, YK_F64, 2, (int64_t[]){1, 3}, 4);
    yk_tensor *d = yk_tensor_zeros(ctx, YK_F64, 1, (int64_t[]){2});
    cr_assert_eq(yk_tensor_copy(a, b), YK_EDTYPE);
    expect_error(ctx, YK_EDTYPE, "src is f32");
    cr_assert_eq(yk_tensor_copy(a, d), YK_ESHAPE);
    expect_error(ctx, YK_ESHAPE, "src 2");
    cr_assert_eq(yk_tensor_copy(a, c), YK_OK);
    expect_close(a, VALS(4, 4, 4), 3, 0, 0);
    yk_tensor_free(a);
    yk_tensor_free(b);
    yk_tensor_free(c);
    yk_tensor_free(d);
}

Test(tensor, random_is_counter_based)
{
    /* Element i depends only on (seed, i): a longer fill starts with the
     * shorter one, and another seed differs. */
    yk_tensor *a = yk_tensor_zeros(ctx, YK_F64, 1, (int64_t[]){10});
    yk_tensor *b = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){5, 7});
    yk_tensor *c = yk_tensor_zeros(ctx, YK_F64, 1, (int64_t[]){10});
    yk_tensor_fill_normal(a, 42, 0, 1);
    yk_tensor_fill_normal(b, 42, 0, 1);
    yk_tensor_fill_normal(c, 43, 0, 1);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(yk_tensor_get(a, i), yk_tensor_get(b, i));
        cr_assert_neq(yk_tensor_get(a, i), yk_tensor_get(c, i));
    }
    yk_tensor_free(a);
    yk_tensor_free(b);
    yk_tensor_free(c);
}

Test(tensor, random_moments)
{
    /* 200000 samples: the standard error of the mean is 0.0022 (normal) and
     * 0.0006 (uniform on [2, 3]); the bounds are several times wider. */
    int64_t n = 200000;
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F64, 1, &n);
    cr_assert_eq(yk_tensor_fill_normal(t, 7, 1.0, 2.0), YK_OK);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = yk_tensor_get(t, i);
        s += v;
        s2 += v * v;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    cr_assert(fabs(mean - 1.0) < 0.015, "mean %g", mean);
    cr_assert(fabs(sqrt(var) - 2.0) < 0.015, "std %g", sqrt(var));
    cr_assert_eq(yk_tensor_fill_uniform(t, 7, 2.0, 3.0), YK_OK);
    s = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = yk_tensor_get(t, i);
        cr_assert(v >= 2.0 && v <= 3.0);
        s += v;
    }
    cr_assert(fabs(s / n - 2.5) < 0.005, "uniform mean %g", s / n);
    yk_tensor_free(t);
}

Test(tensor, randint_covers_the_range)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_I64, 1, (int64_t[]){10000});
    cr_assert_eq(yk_tensor_fill_randint(t, 3, -2, 3), YK_OK);
    int seen[5] = {0};
    for (int64_t i = 0; i < 10000; i++) {
        int64_t v = (int64_t)yk_tensor_get(t, i);
        cr_assert(v >= -2 && v < 3, "value %lld", (long long)v);
        seen[v + 2]++;
    }
    /* 2000 expected per value; sd about 40 */
    for (int k = 0; k < 5; k++)
        cr_assert(seen[k] > 1800 && seen[k] < 2200, "value %d seen %d", k - 2,
                  seen[k]);
    cr_assert_eq(yk_tensor_fill_randint(t, 3, 3, 3), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "lo = 3");
    yk_tensor *f = yk_tensor_zeros(ctx, YK_F32, 1, (int64_t[]){2});
    cr_assert_eq(yk_tensor_fill_randint(f, 3, 0, 3), YK_EDTYPE);
    expect_error(ctx, YK_EDTYPE, "f32");
    yk_tensor_free(t);
    yk_tensor_free(f);
}

Test(tensor, random_errors)
{
    yk_tensor *i = yk_tensor_zeros(ctx, YK_I64, 1, (int64_t[]){3});
    yk_tensor *f = yk_tensor_zeros(ctx, YK_F32, 1, (int64_t[]){3});
    cr_assert_eq(yk_tensor_fill_normal(i, 1, 0, 1), YK_EDTYPE);
    expect_error(ctx, YK_EDTYPE, "i64");
    cr_assert_eq(yk_tensor_fill_normal(f, 1, 0, -1), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "std = -1");
    cr_assert_eq(yk_tensor_fill_uniform(f, 1, 3, 2), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "lo = 3");
    yk_tensor_free(i);
    yk_tensor_free(f);
}

static char *print_to_string(const yk_tensor *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    yk_tensor_print(f, t);
    fclose(f);
    return buf;
}

Test(tensor, shape_and_print_like_pytorch)
{
    char buf[64];
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F32, 3, (int64_t[]){5, 10, 128});
    cr_assert_str_eq(yk_shape_format(t, buf, sizeof buf), "[5, 10, 128]");
    yk_tensor *s = yk_tensor_full(ctx, YK_F64, 0, NULL, 1.5);
    cr_assert_str_eq(yk_shape_format(s, buf, sizeof buf), "[]");

    /* PyTorch's layout: "tensor(", rows aligned under the first, a dtype
     * suffix for non-default dtypes. Floats always get PyTorch's default 4
     * decimals (PyTorch itself shortens whole numbers to "1."). */
    yk_tensor *m = yk_tensor_from(ctx, YK_F32, 2, (int64_t[]){2, 2},
                                  (float[]){1, 2, 3, 4});
    char *p = print_to_string(m);
    cr_assert_str_eq(p, "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]])\n");
    free(p);
    yk_tensor *i = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){3},
                                  (int64_t[]){1, 2, 3});
    p = print_to_string(i);
    cr_assert_str_eq(p, "tensor([1, 2, 3], dtype=torch.int64)\n");
    free(p);
    yk_tensor_free(t);
    yk_tensor_free(s);
    yk_tensor_free(m);
    yk_tensor_free(i);
}

Test(tensor, status_names_are_case_categories)
{
    cr_assert_str_eq(yk_status_name(YK_ERANGE), "index_out_of_range");
    cr_assert_str_eq(yk_status_name(YK_EOFFSETS), "bad_offsets");
    cr_assert_str_eq(yk_status_name(YK_ESHAPE), "shape_mismatch");
    cr_assert_str_eq(yk_status_name(YK_EDTYPE), "dtype_mismatch");
    cr_assert_str_eq(yk_status_name(YK_EINVAL), "invalid_argument");
    cr_assert_str_eq(yk_version(), YOKE_VERSION_STRING);
}

Test(tensor, threads)
{
    cr_assert_eq(yk_threads(ctx), 1);
    cr_assert_eq(yk_set_threads(ctx, 0), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "n = 0");
    cr_assert_eq(yk_set_threads(ctx, 2), YK_OK);
    cr_assert_eq(yk_threads(ctx), 2);
    yk_clear_error(ctx);
    cr_assert_str_eq(yk_last_error(ctx), "");
}

/* ------------------------------------------------------------- the model */

Test(tensor, model_store)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *a = yk_model_add(m, "a", YK_F32, 2, (int64_t[]){3, 2});
    yk_param *b = yk_model_add(m, "b", YK_F64, 0, NULL);
    cr_assert(a && b);
    cr_assert_eq(yk_model_count(m), 2);
    cr_assert_eq(yk_model_at(m, 0), a); /* insertion order */
    cr_assert_eq(yk_model_at(m, 1), b);
    cr_assert_null(yk_model_at(m, 2));
    cr_assert_eq(yk_model_find(m, "b"), b);
    cr_assert_null(yk_model_find(m, "c"));
    cr_assert_str_eq(yk_param_name(a), "a");
    cr_assert(yk_param_requires_grad(a));
    expect_close(yk_param_value(a), VALS(0, 0, 0, 0, 0, 0), 6, 0, 0);
    cr_assert(yk_param_same(a, yk_model_find(m, "a")));
    cr_assert(!yk_param_same(a, b));
    cr_assert_eq(yk_param_grad_kind(a), YK_GRAD_NONE);
    cr_assert_null(yk_param_grad(a));

    cr_assert_null(yk_model_add(m, "a", YK_F32, 1, (int64_t[]){1}));
    expect_error(ctx, YK_EINVAL, "\"a\" already exists");
    cr_assert_null(yk_model_add(m, "", YK_F32, 1, (int64_t[]){1}));
    expect_error(ctx, YK_EINVAL, "name is empty");
    cr_assert_null(yk_model_add(m, "idx", YK_I64, 1, (int64_t[]){1}));
    expect_error(ctx, YK_EDTYPE, "\"idx\"");
    cr_assert_null(yk_model_add(m, "neg", YK_F32, 1, (int64_t[]){-1}));
    expect_error(ctx, YK_ESHAPE, "shape[0] = -1");
    yk_model_free(m);
    yk_model_free(NULL);
}
