/* Tests of ops/reduce.c: sum and mean over all dims, one dim, several dims,
 * keepdim, negative dims. Forward against hand-worked sums, backward against
 * hand-worked values and finite differences, and every error path. */
#include "check.h"

static yk_ctx *ctx;
static yk_model *m;

static void setup(void)
{
    ctx = yk_ctx_new();
    m = yk_model_new(ctx);
}

static void teardown(void)
{
    yk_model_free(m);
    yk_ctx_free(ctx);
}

TestSuite(reduce, .init = setup, .fini = teardown);

typedef yk_node *(*reduce_fn)(yk_graph *, yk_node *, int, const int *, bool);

#define DIMS(...) (sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__}

/* f(x, dims, keepdim) in f64 and f32 against want. */
static void expect_reduce(reduce_fn f, size_t nx, const int64_t *sx,
                          const double *vx, size_t nd, const int *dims,
                          bool keepdim, size_t no, const int64_t *so,
                          const double *want)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_tensor *x = dt == YK_F32 ? T32(ctx, nx, sx, vx) : T64(ctx, nx, sx, vx);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = f(g, yk_const(g, x), (int)nd, dims, keepdim);
        cr_assert(y, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_node_dtype(y), dt);
        const yk_tensor *v = yk_value(y);
        expect_shape(v, no, so);
        expect_close(v, want, yk_tensor_numel(v), dt == YK_F32 ? 1e-6 : 1e-15,
                     1e-6);
        yk_graph_end(g);
        yk_tensor_free(x);
    }
}

/* x (2, 3) = [[1, 2, 3], [4, 5, 6]]: row sums 6, 15; column sums 5, 7, 9. */
#define X23 SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)
/* x (2, 3, 2) = 1..12: x[i, j, :] = (6i + 2j + 1, 6i + 2j + 2). */
#define X232 SHAPE(2, 3, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)

Test(reduce, all_dims)
{
    expect_reduce(yk_sum, X23, 0, NULL, false, 0, NULL, VALS(21));
    expect_reduce(yk_mean, X23, 0, NULL, false, 0, NULL, VALS(3.5));
    /* keepdim over all dims keeps every dim as 1 */
    expect_reduce(yk_sum, X23, 0, NULL, true, SHAPE(1, 1), VALS(21));
    /* the sum of 1..12 is 78 */
    expect_reduce(yk_sum, X232, 0, NULL, false, 0, NULL, VALS(78));
    expect_reduce(yk_mean, X232, 0, NULL, false, 0, NULL, VALS(6.5));
}

Test(reduce, one_dim)
{
    expect_reduce(yk_sum, X23, DIMS(0), false, SHAPE(3), VALS(5, 7, 9));
    expect_reduce(yk_sum, X23, DIMS(1), false, SHAPE(2), VALS(6, 15));
    expect_reduce(yk_mean, X23, DIMS(0), false, SHAPE(3), VALS(2.5, 3.5, 4.5));
    expect_reduce(yk_mean, X23, DIMS(-1), false, SHAPE(2), VALS(2, 5));
    expect_reduce(yk_sum, X23, DIMS(-1), true, SHAPE(2, 1), VALS(6, 15));
    expect_reduce(yk_mean, X23, DIMS(-2), true, SHAPE(1, 3),
                  VALS(2.5, 3.5, 4.5));
    /* the middle dim of (2, 3, 2): x[i, 0, k] + x[i, 1, k] + x[i, 2, k] */
    expect_reduce(yk_sum, X232, DIMS(1), false, SHAPE(2, 2),
                  VALS(9, 12, 27, 30));
}

Test(reduce, several_dims)
{
    /* dims 0 and 2 of (2, 3, 2): sum over i, k = (4j + 3) + (4j + 15). */
    expect_reduce(yk_sum, X232, DIMS(0, 2), false, SHAPE(3), VALS(18, 26, 34));
    expect_reduce(yk_sum, X232, DIMS(-1, 0), true, SHAPE(1, 3, 1),
                  VALS(18, 26, 34));
    expect_reduce(yk_mean, X232, DIMS(2, -3), false, SHAPE(3),
                  VALS(4.5, 6.5, 8.5));
    /* every dim listed is every dim */
    expect_reduce(yk_sum, X232, DIMS(0, 1, 2), false, 0, NULL, VALS(78));
    /* dims 1, 2: per i, the sum of 6 numbers from 6i + 1 to 6i + 6 */
    expect_reduce(yk_mean, X232, DIMS(1, 2), false, SHAPE(2), VALS(3.5, 9.5));
}

Test(reduce, zero_dim_input)
{
    /* A 0-d input takes dim 0 or -1 (as PyTorch) and stays 0-d. */
    expect_reduce(yk_sum, 0, NULL, VALS(5), DIMS(0), false, 0, NULL, VALS(5));
    expect_reduce(yk_mean, 0, NULL, VALS(5), DIMS(-1), true, 0, NULL, VALS(5));
    expect_reduce(yk_mean, 0, NULL, VALS(5), 0, NULL, false, 0, NULL, VALS(5));
}

Test(reduce, size_one_dims)
{
    expect_reduce(yk_sum, SHAPE(1, 3, 1), VALS(1, 2, 3), DIMS(1), false,
                  SHAPE(1, 1), VALS(6));
    expect_reduce(yk_sum, SHAPE(1, 3, 1), VALS(1, 2, 3), DIMS(0), false,
                  SHAPE(3, 1), VALS(1, 2, 3));
}

Test(reduce, empty_input)
{
    /* Sums of no elements are 0; means of no elements are NaN, as PyTorch. */
    expect_reduce(yk_sum, SHAPE(0, 3), NULL, DIMS(0), false, SHAPE(3),
                  VALS(0, 0, 0));
    expect_reduce(yk_sum, SHAPE(0, 3), NULL, DIMS(1), false, SHAPE(0), NULL);
    yk_tensor *x = T64(ctx, SHAPE(0, 3), NULL);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *all = yk_mean(g, yk_const(g, x), 0, NULL, false);
    yk_node *col = yk_mean(g, yk_const(g, x), DIMS(0), false);
    cr_assert(all && col, "%s", yk_last_error(ctx));
    cr_assert(isnan(yk_tensor_get(yk_value(all), 0)));
    expect_shape(yk_value(col), SHAPE(3));
    for (int i = 0; i < 3; i++)
        cr_assert(isnan(yk_tensor_get(yk_value(col), i)));
    yk_graph_end(g);
    yk_tensor_free(x);
}

Test(reduce, backward_by_hand)
{
    /* mean over dim 1 of (2, 3) with seed [1, 2]: each element gets its
     * row's seed / 3; sum over dim 0 with seed [1, 2, 3]: each row gets it. */
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_model *mm = yk_model_new(ctx);
        yk_param *x = param_with(mm, "x", dt, X23);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *xn = yk_param_node(g, x);
        yk_node *ys[2] = {yk_mean(g, xn, DIMS(1), false),
                          yk_sum(g, xn, DIMS(0), false)};
        double s0[2] = {1, 2}, s1[3] = {1, 2, 3};
        yk_tensor *seeds[2] = {dt == YK_F32 ? T32(ctx, SHAPE(2), s0)
                                            : T64(ctx, SHAPE(2), s0),
                               dt == YK_F32 ? T32(ctx, SHAPE(3), s1)
                                            : T64(ctx, SHAPE(3), s1)};
        const yk_tensor *sp[2] = {seeds[0], seeds[1]};
        cr_assert_eq(yk_backward_seeded(g, 2, ys, sp), YK_OK, "%s",
                     yk_last_error(ctx));
        double t = 1.0 / 3;
        expect_close(yk_param_grad(x),
                     VALS(t + 1, t + 2, t + 3, 2 * t + 1, 2 * t + 2, 2 * t + 3),
                     6, 1e-6, 1e-7);
        yk_graph_end(g);
        yk_tensor_free(seeds[0]);
        yk_tensor_free(seeds[1]);
        yk_model_free(mm);
    }
}

/* ---- finite differences */

typedef struct red {
    reduce_fn f;
    yk_param *x;
    int ndims;
    const int *dims;
    bool keepdim;
} red;

static yk_node *build_red(yk_graph *g, void *ud)
{
    red *r = ud;
    return r->f(g, yk_param_node(g, r->x), r->ndims, r->dims, r->keepdim);
}

static void gradcheck_dims(int ndims, const int *dims, bool keepdim)
{
    reduce_fn fs[2] = {yk_sum, yk_mean};
    for (int k = 0; k < 2; k++) {
        yk_model *mm = yk_model_new(ctx);
        red r = {fs[k], yk_model_add(mm, "x", YK_F64, 3, (int64_t[]){2, 3, 4}),
                 ndims, dims, keepdim};
        cr_assert(r.x, "%s", yk_last_error(ctx));
        yk_tensor_fill_normal(yk_param_value(r.x), 7, 0, 1);
        expect_gradcheck(mm, build_red, &r);
        yk_model_free(mm);
    }
}

Test(reduce, gradcheck_all_and_one_dim)
{
    gradcheck_dims(0, NULL, false);
    gradcheck_dims(0, NULL, true);
    gradcheck_dims(DIMS(1), false);
    gradcheck_dims(DIMS(-1), true);
    gradcheck_dims(DIMS(0), false);
}

Test(reduce, gradcheck_several_dims)
{
    gradcheck_dims(DIMS(0, 2), false);
    gradcheck_dims(DIMS(-1, -3), true);
    gradcheck_dims(DIMS(1, 2), false);
    gradcheck_dims(DIMS(0, 1), true);
}

/* ---- errors */

static void expect_reduce_error(reduce_fn f, size_t nx, const int64_t *sx,
                                int ndims, const int *dims, yk_status want,
                                const char *part)
{
    yk_tensor *x = yk_tensor_zeros(ctx, YK_F64, (int)nx, sx);
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(f(g, yk_const(g, x), ndims, dims, false));
    expect_error(ctx, want, part);
    cr_assert_eq(yk_graph_status(g), want);
    yk_graph_end(g);
    yk_tensor_free(x);
}

Test(reduce, rejects_out_of_range_dims)
{
    expect_reduce_error(yk_sum, SHAPE(2, 3), DIMS(2), YK_EINVAL,
                        "sum: dim = 2 is out of range for a 2-d input");
    expect_reduce_error(yk_mean, SHAPE(2, 3), DIMS(0, -3), YK_EINVAL,
                        "mean: dim = -3 is out of range");
    expect_reduce_error(yk_sum, 0, NULL, DIMS(1), YK_EINVAL,
                        "sum: dim = 1 is out of range for a 0-d input");
}

Test(reduce, rejects_repeated_dims)
{
    expect_reduce_error(yk_sum, SHAPE(2, 3), DIMS(0, 0), YK_EINVAL,
                        "sum: dim 0 appears more than once");
    /* -1 and 1 are the same dim of a 2-d input */
    expect_reduce_error(yk_mean, SHAPE(2, 3), DIMS(1, -1), YK_EINVAL,
                        "mean: dim 1 appears more than once in dims "
                        "(dims[1] = -1)");
}

Test(reduce, rejects_negative_ndims)
{
    expect_reduce_error(yk_sum, SHAPE(2, 3), -1, (int[]){0}, YK_EINVAL,
                        "sum: ndims = -1 is negative");
}

Test(reduce, rejects_integer_input)
{
    yk_tensor *x = TI(ctx, SHAPE(2), IDX(1, 2));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_sum(g, yk_const(g, x), 0, NULL, false));
    expect_error(ctx, YK_EDTYPE, "sum: input is i64");
    yk_graph_end(g);
    yk_tensor_free(x);
}

/* ---- registry */

Test(reduce, registry_entries)
{
    const char *ops[2] = {"sum", "mean"};
    for (int k = 0; k < 2; k++) {
        const yk_op_def *d = yk_op_find(ops[k]);
        cr_assert(d, "%s missing", ops[k]);
        cr_assert_eq(d->n_inputs, 1);
        cr_assert_str_eq(d->input_names[0], "input");
        cr_assert_eq(d->n_attrs, 2);
        cr_assert_str_eq(d->attrs[0].name, "dim");
        cr_assert_eq(d->attrs[0].type, YK_ATTR_DIMS);
        cr_assert(d->attrs[0].nullable);
        cr_assert(!d->attrs[0].required);
        cr_assert_str_eq(d->attrs[1].name, "keepdim");
        cr_assert_eq(d->attrs[1].type, YK_ATTR_BOOL);
        cr_assert_eq(d->attrs[1].def_int, 0);
    }
}

Test(reduce, build_maps_attrs)
{
    yk_tensor *x = T64(ctx, X23);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *in = yk_const(g, x);
    /* dim = null: every dim */
    yk_attr_value all[2] = {{.is_null = true}, {.i = 0}};
    yk_node *y = yk_op_find("sum")->build(g, &in, 1, all);
    cr_assert(y, "%s", yk_last_error(ctx));
    expect_close(yk_value(y), VALS(21), 1, 0, 0);
    /* dim = [-1], keepdim = true */
    yk_attr_value last[2] = {{.n = 1, .list = {-1}}, {.i = 1}};
    y = yk_op_find("mean")->build(g, &in, 1, last);
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2, 1), VALS(2, 5), 1e-15);
    /* a dim beyond int is out of range, named */
    yk_attr_value huge[2] = {{.n = 1, .list = {INT64_C(1) << 40}}, {.i = 0}};
    cr_assert_null(yk_op_find("sum")->build(g, &in, 1, huge));
    expect_error(ctx, YK_EINVAL, "sum: dim = 1099511627776 is out of range");
    yk_graph_end(g);
    yk_tensor_free(x);
}
