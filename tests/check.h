/*
 * check.h -- helpers shared by the Criterion tests.
 *
 * Numbers in tests come from somewhere else: hand-worked examples, PyTorch
 * (through case files written by tools/make_cases.py), or central finite
 * differences (expect_gradcheck, which calls the library's yk_gradcheck).
 */
#ifndef YOKE_TEST_CHECK_H
#define YOKE_TEST_CHECK_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yoke.h"

/* Tensors from literals: T64(ctx, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)). */
#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
#define VALS(...) (double[]){__VA_ARGS__}
#define IDX(...) (int64_t[]){__VA_ARGS__}

static inline yk_tensor *T64(yk_ctx *ctx, size_t ndim, const int64_t *shape,
                             const double *v)
{
    yk_tensor *t = yk_tensor_from(ctx, YK_F64, (int)ndim, shape, v);
    cr_assert(t != NULL, "tensor: %s", yk_last_error(ctx));
    return t;
}

static inline yk_tensor *T32(yk_ctx *ctx, size_t ndim, const int64_t *shape,
                             const double *v)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F32, (int)ndim, shape);
    cr_assert(t != NULL, "tensor: %s", yk_last_error(ctx));
    for (int64_t i = 0; i < yk_tensor_numel(t); i++)
        ((float *)yk_tensor_data(t))[i] = (float)v[i];
    return t;
}

static inline yk_tensor *TI(yk_ctx *ctx, size_t ndim, const int64_t *shape,
                            const int64_t *v)
{
    yk_tensor *t = yk_tensor_from(ctx, YK_I64, (int)ndim, shape, v);
    cr_assert(t != NULL, "tensor: %s", yk_last_error(ctx));
    return t;
}

/* A parameter with the given values (f64 or f32 per dt). */
static inline yk_param *param_with(yk_model *m, const char *name, yk_dtype dt,
                                   size_t ndim, const int64_t *shape,
                                   const double *v)
{
    yk_param *p = yk_model_add(m, name, dt, (int)ndim, shape);
    cr_assert(p != NULL, "param %s: %s", name,
              yk_last_error(yk_model_ctx(m)));
    yk_tensor *t = yk_param_value(p);
    for (int64_t i = 0; i < yk_tensor_numel(t); i++) {
        if (dt == YK_F32)
            ((float *)yk_tensor_data(t))[i] = (float)v[i];
        else
            ((double *)yk_tensor_data(t))[i] = v[i];
    }
    return p;
}

/* Asserts t's shape. */
static inline void expect_shape(const yk_tensor *t, size_t ndim,
                                const int64_t *shape)
{
    cr_assert(t != NULL, "tensor is NULL");
    cr_assert_eq(yk_tensor_ndim(t), (int)ndim, "ndim %d, want %zu",
                 yk_tensor_ndim(t), ndim);
    for (size_t i = 0; i < ndim; i++)
        cr_assert_eq(yk_tensor_shape(t)[i], shape[i],
                     "shape[%zu] = %lld, want %lld", i,
                     (long long)yk_tensor_shape(t)[i], (long long)shape[i]);
}

/* Asserts |t[i] - want[i]| <= atol + rtol |want[i]| for every i. */
static inline void expect_close(const yk_tensor *t, const double *want,
                                int64_t n, double rtol, double atol)
{
    cr_assert(t != NULL, "tensor is NULL");
    cr_assert_eq(yk_tensor_numel(t), n, "numel %lld, want %lld",
                 (long long)yk_tensor_numel(t), (long long)n);
    for (int64_t i = 0; i < n; i++) {
        double a = yk_tensor_get(t, i);
        cr_assert(fabs(a - want[i]) <= atol + rtol * fabs(want[i]),
                  "element %lld: got %.17g, want %.17g", (long long)i, a,
                  want[i]);
    }
}

#define EXPECT_VALUES(t, shape_macro, vals_macro, tol)                       \
    do {                                                                     \
        const double *w_ = vals_macro;                                       \
        expect_shape((t), shape_macro);                                      \
        expect_close((t), w_, yk_tensor_numel(t), (tol), (tol));             \
    } while (0)

/* The default bag options with another mode. */
static inline yk_bag_opts opts_mode(yk_bag_mode mode)
{
    yk_bag_opts o = yk_bag_defaults();
    o.mode = mode;
    return o;
}

/* The parameter's gradient, whatever its kind, as a dense tensor (the
 * caller frees it). */
static inline yk_tensor *dense_grad(yk_ctx *ctx, yk_param *p)
{
    const yk_tensor *v = yk_param_value(p);
    yk_tensor *t = yk_tensor_zeros(ctx, yk_tensor_dtype(v), yk_tensor_ndim(v),
                                   yk_tensor_shape(v));
    cr_assert_eq(yk_param_grad_to_dense(p, t), YK_OK);
    return t;
}

/* Asserts the context's last error: status and a substring of the message
 * (which must name the culprit). */
static inline void expect_error(yk_ctx *ctx, yk_status want, const char *part)
{
    cr_assert_eq(yk_last_status(ctx), want, "status %s, want %s: %s",
                 yk_status_name(yk_last_status(ctx)), yk_status_name(want),
                 yk_last_error(ctx));
    cr_assert(strstr(yk_last_error(ctx), part) != NULL,
              "message \"%s\" does not mention \"%s\"", yk_last_error(ctx),
              part);
}

/* Gradient-checks every f64 parameter of m through yk_gradcheck. */
static inline void expect_gradcheck(yk_model *m, yk_build_fn build, void *ud)
{
    yk_gradcheck_report r;
    yk_status s = yk_gradcheck(m, build, ud, NULL, &r);
    cr_assert_eq(s, YK_OK, "gradcheck could not run: %s",
                 yk_last_error(yk_model_ctx(m)));
    cr_assert(r.passed,
              "gradcheck failed: %s; worst element %s[%lld]: analytic %.10g, "
              "numeric %.10g", r.what, r.param, (long long)r.index, r.analytic,
              r.numeric);
    cr_assert(r.checked > 0, "gradcheck compared no element");
}

/* An allocator hook for yk_ctx_new_with_alloc that counts allocations,
 * fails the one numbered fail_at (1-based; 0: never) and tracks the bytes
 * live, so a test can check that every failure leaks nothing and that
 * every free names the size that was allocated. */
typedef struct counting_alloc {
    long calls;     /* allocations so far                   */
    long fail_at;   /* fail the allocation with this number */
    long long live; /* bytes allocated and not freed         */
    bool failed;
} counting_alloc;

static inline void *counting_hook(void *ud, void *ptr, size_t old_size,
                                  size_t new_size)
{
    counting_alloc *a = ud;
    if (new_size == 0) {
        if (ptr)
            a->live -= (long long)old_size;
        free(ptr);
        return NULL;
    }
    if (++a->calls == a->fail_at) {
        a->failed = true;
        return NULL;
    }
    void *q = realloc(ptr, new_size);
    if (q)
        a->live += (long long)new_size - (ptr ? (long long)old_size : 0);
    return q;
}

/* ------------------------------------------------- files of a test */

/* dir/name (one of four rotating buffers, so a call can take two). */
static inline const char *path_in(const char *dir, const char *name)
{
    static char bufs[4][256];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, 256, "%s/%s", dir, name);
    return b;
}

/* Entries of folder dir, "." and ".." left out. */
static inline int entries_in(const char *dir)
{
    DIR *h = opendir(dir);
    cr_assert(h, "opendir %s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(h)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(h);
    return n;
}

/* The whole file (the caller frees it); *size its length. */
static inline unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    cr_assert(b && fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* Writes n bytes of data as the file path. */
static inline void spit(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "create %s: %s", path, strerror(errno));
    cr_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

#endif
