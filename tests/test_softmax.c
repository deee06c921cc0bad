/* Tests of ops/softmax.c: forward against hand-worked values (logits that
 * are logs of small integers, so softmax is a ratio of integers), backward
 * against finite differences and hand-worked seeds, finiteness at +-1e4,
 * and every error path. */
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

TestSuite(softmax, .init = setup, .fini = teardown);

static yk_tensor *make(yk_dtype dt, size_t ndim, const int64_t *shape,
                       const double *v)
{
    return dt == YK_F32 ? T32(ctx, ndim, shape, v) : T64(ctx, ndim, shape, v);
}

static double tol(yk_dtype dt) { return dt == YK_F32 ? 1e-6 : 1e-15; }

/* Expects op(x, dim) of x (shape, xv) to be want, in f64 and f32, within
 * an absolute tolerance per dtype (logits of 1e4 carry a rounding of one
 * ulp of 1e4: about 2e-12 in f64, 1e-3 in f32). */
static void expect_op_tol(yk_node *(*op)(yk_graph *, yk_node *, int),
                          size_t ndim, const int64_t *shape,
                          const double *xv, int dim, const double *want,
                          double atol64, double atol32)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_tensor *t = make(dt, ndim, shape, xv);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = op(g, yk_const(g, t), dim);
        cr_assert(y, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_node_dtype(y), dt);
        expect_shape(yk_value(y), ndim, shape);
        expect_close(yk_value(y), want, yk_tensor_numel(t), tol(dt),
                     dt == YK_F32 ? atol32 : atol64);
        yk_graph_end(g);
        yk_tensor_free(t);
    }
}

static void expect_op(yk_node *(*op)(yk_graph *, yk_node *, int),
                      size_t ndim, const int64_t *shape, const double *xv,
                      int dim, const double *want)
{
    expect_op_tol(op, ndim, shape, xv, dim, want, tol(YK_F64), tol(YK_F32));
}

/*
 * x = [[0, ln 2, ln 3], [ln 4, 0, 0]]: exp(x) = [[1, 2, 3], [4, 1, 1]].
 * Rows (dim 1 / -1): [1, 2, 3] / 6 and [4, 1, 1] / 6.
 * Columns (dim 0 / -2): [1, 4] / 5, [2, 1] / 3, [3, 1] / 4.
 */
#define X23 VALS(0, log(2), log(3), log(4), 0, 0)

Test(softmax, softmax_rows_and_columns)
{
    double rows[6] = {1 / 6., 2 / 6., 3 / 6., 4 / 6., 1 / 6., 1 / 6.};
    double cols[6] = {1 / 5., 2 / 3., 3 / 4., 4 / 5., 1 / 3., 1 / 4.};
    expect_op(yk_softmax, SHAPE(2, 3), X23, 1, rows);
    expect_op(yk_softmax, SHAPE(2, 3), X23, -1, rows);
    expect_op(yk_softmax, SHAPE(2, 3), X23, 0, cols);
    expect_op(yk_softmax, SHAPE(2, 3), X23, -2, cols);
}

Test(softmax, log_softmax_rows_and_columns)
{
    double rows[6] = {log(1 / 6.), log(2 / 6.), log(3 / 6.),
                      log(4 / 6.), log(1 / 6.), log(1 / 6.)};
    double cols[6] = {log(1 / 5.), log(2 / 3.), log(3 / 4.),
                      log(4 / 5.), log(1 / 3.), log(1 / 4.)};
    expect_op(yk_log_softmax, SHAPE(2, 3), X23, -1, rows);
    expect_op(yk_log_softmax, SHAPE(2, 3), X23, 0, cols);
}

Test(softmax, middle_dim_with_strided_vectors)
{
    /* x (1, 3, 2): column 0 along dim 1 is [0, ln 2, ln 3] -> [1, 2, 3] / 6,
     * column 1 is [ln 4, 0, 0] -> [4, 1, 1] / 6, stored interleaved. */
    double x[6] = {0, log(4), log(2), 0, log(3), 0};
    double want[6] = {1 / 6., 4 / 6., 2 / 6., 1 / 6., 3 / 6., 1 / 6.};
    expect_op(yk_softmax, SHAPE(1, 3, 2), x, 1, want);
    double wlog[6];
    for (int i = 0; i < 6; i++)
        wlog[i] = log(want[i]);
    expect_op(yk_log_softmax, SHAPE(1, 3, 2), x, -2, wlog);
}

Test(softmax, zero_dim_input_is_one_element)
{
    /* PyTorch: softmax(tensor(3.), 0) = 1, log_softmax = 0. */
    for (int k = 0; k < 2; k++) {
        yk_tensor *t = make(k ? YK_F32 : YK_F64, 0, NULL, VALS(3));
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *s = yk_softmax(g, yk_const(g, t), 0);
        yk_node *l = yk_log_softmax(g, yk_const(g, t), -1);
        cr_assert(s && l, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_node_ndim(s), 0);
        expect_close(yk_value(s), VALS(1), 1, 0, 0);
        expect_close(yk_value(l), VALS(0), 1, 0, 0);
        yk_graph_end(g);
        yk_tensor_free(t);
    }
}

Test(softmax, empty_dims)
{
    /* (2, 0) along dim 1: no element; along dim 0: no vector */
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){2, 0});
    yk_graph *g = yk_graph_begin(ctx);
    expect_shape(yk_value(yk_softmax(g, yk_const(g, t), 1)), SHAPE(2, 0));
    expect_shape(yk_value(yk_log_softmax(g, yk_const(g, t), 0)), SHAPE(2, 0));
    /* (2, 0, 3) along the empty dim: strided vectors of no element */
    yk_tensor *e = yk_tensor_zeros(ctx, YK_F32, 3, (int64_t[]){2, 0, 3});
    expect_shape(yk_value(yk_softmax(g, yk_const(g, e), 1)), SHAPE(2, 0, 3));
    cr_assert_eq(yk_graph_status(g), YK_OK, "%s", yk_last_error(ctx));
    yk_graph_end(g);
    yk_tensor_free(t);
    yk_tensor_free(e);
}

/* ------------------------------------------------------- large logits */

Test(softmax, finite_for_logits_of_1e4)
{
    /* exp(1e4) overflows; with the max subtracted:
     * [1e4, -1e4, 0] -> softmax [1, 0, 0] (exp(-1e4) underflows to 0),
     *                   log_softmax [0, -2e4, -1e4];
     * [1e4, 1e4, -1e4] -> [1/2, 1/2, 0], log [-ln 2, -ln 2, -2e4 - ln 2]. */
    double x[6] = {1e4, -1e4, 0, 1e4, 1e4, -1e4};
    expect_op(yk_softmax, SHAPE(2, 3), x, 1, VALS(1, 0, 0, 0.5, 0.5, 0));
    expect_op_tol(yk_log_softmax, SHAPE(2, 3), x, 1,
                  VALS(0, -2e4, -1e4, -log(2), -log(2), -2e4 - log(2)), 1e-11,
                  2e-3);
    /* and the gradients are finite too */
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *w = param_with(m, k ? "w32" : "w64", dt, SHAPE(2, 3), x);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *ys[2] = {yk_softmax(g, yk_param_node(g, w), 1),
                          yk_log_softmax(g, yk_param_node(g, w), 1)};
        yk_tensor *seed = make(dt, SHAPE(2, 3), VALS(1, -2, 3, 0.5, 1, -1));
        const yk_tensor *seeds[2] = {seed, seed};
        cr_assert_eq(yk_backward_seeded(g, 2, ys, seeds), YK_OK, "%s",
                     yk_last_error(ctx));
        const yk_tensor *gw = yk_param_grad(w);
        for (int i = 0; i < 6; i++)
            cr_assert(isfinite(yk_tensor_get(gw, i)), "grad[%d] = %g", i,
                      yk_tensor_get(gw, i));
        yk_graph_end(g);
        yk_tensor_free(seed);
    }
}

/* ------------------------------------------------------------ backward */

Test(softmax, backward_hand_worked)
{
    /* x = [0, 0]: y = [1/2, 1/2]; seed dy = [1, 0].
     * softmax:     dx = y (dy - sum(dy y)) = [1/2 (1 - 1/2), 1/2 (0 - 1/2)]
     *                 = [1/4, -1/4]
     * log_softmax: dx = dy - softmax(x) sum(dy) = [1 - 1/2, 0 - 1/2]
     *                 = [1/2, -1/2] */
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        for (int lg = 0; lg < 2; lg++) {
            char name[4] = {'w', (char)('0' + k), (char)('0' + lg), 0};
            yk_param *w = param_with(m, name, dt, SHAPE(2), VALS(0, 0));
            yk_graph *g = yk_graph_begin(ctx);
            yk_node *x = yk_param_node(g, w);
            yk_node *y = lg ? yk_log_softmax(g, x, 0) : yk_softmax(g, x, 0);
            yk_tensor *seed = make(dt, SHAPE(2), VALS(1, 0));
            const yk_tensor *sp = seed;
            cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK);
            expect_close(yk_param_grad(w), lg ? VALS(0.5, -0.5)
                                              : VALS(0.25, -0.25),
                         2, tol(dt), tol(dt));
            yk_graph_end(g);
            yk_tensor_free(seed);
        }
    }
}

static yk_node *build_all_dims(yk_graph *g, void *ud)
{
    /* softmax and log_softmax of w (2, 3, 4) along every dim, negative
     * too, stacked along dim 0 */
    yk_node *w = yk_param_node(g, ud);
    yk_node *parts[6] = {yk_softmax(g, w, 0),     yk_softmax(g, w, 1),
                         yk_softmax(g, w, -1),    yk_log_softmax(g, w, -3),
                         yk_log_softmax(g, w, 1), yk_log_softmax(g, w, 2)};
    return yk_cat(g, 6, parts, 0);
}

Test(softmax, backward_matches_finite_differences)
{
    double v[24];
    for (int i = 0; i < 24; i++)
        v[i] = sin(1.3 * i) * 2; /* distinct values in [-2, 2] */
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(2, 3, 4), v);
    expect_gradcheck(m, build_all_dims, w);
}

static yk_node *build_of_lazy_cat(yk_graph *g, void *ud)
{
    /* softmax over the rows of a lazy column cat [a | b] */
    yk_param **p = ud;
    yk_node *parts[2] = {yk_param_node(g, p[0]), yk_param_node(g, p[1])};
    yk_node *c = yk_cat(g, 2, parts, 1);
    yk_node *outs[2] = {yk_softmax(g, c, 1), yk_log_softmax(g, c, 0)};
    return yk_cat(g, 2, outs, 0);
}

Test(softmax, backward_through_lazy_cat_matches_finite_differences)
{
    yk_param *p[2] = {
        param_with(m, "a", YK_F64, SHAPE(2, 2), VALS(0.5, -1, 2, 0.1)),
        param_with(m, "b", YK_F64, SHAPE(2, 1), VALS(-0.3, 1.5))};
    expect_gradcheck(m, build_of_lazy_cat, p);
}

/* ------------------------------------------------------------- errors */

Test(softmax, rejects_integer_input)
{
    yk_tensor *t = TI(ctx, SHAPE(2), IDX(1, 2));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_softmax(g, yk_const(g, t), 0));
    expect_error(ctx, YK_EDTYPE, "softmax: input is i64");
    yk_graph_end(g);
    g = yk_graph_begin(ctx);
    cr_assert_null(yk_log_softmax(g, yk_const(g, t), 0));
    expect_error(ctx, YK_EDTYPE, "log_softmax: input is i64");
    yk_graph_end(g);
    yk_tensor_free(t);
}

Test(softmax, rejects_dim_out_of_range)
{
    yk_tensor *t = T64(ctx, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    yk_tensor *s = T64(ctx, 0, NULL, VALS(1));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_softmax(g, yk_const(g, t), 2));
    expect_error(ctx, YK_EINVAL, "softmax: dim = 2 is out of range for a 2-d");
    yk_graph_end(g);
    g = yk_graph_begin(ctx);
    cr_assert_null(yk_log_softmax(g, yk_const(g, t), -3));
    expect_error(ctx, YK_EINVAL, "log_softmax: dim = -3");
    yk_graph_end(g);
    g = yk_graph_begin(ctx);
    cr_assert_null(yk_softmax(g, yk_const(g, s), 1));
    expect_error(ctx, YK_EINVAL, "dim = 1 is out of range for a 0-d");
    yk_graph_end(g);
    yk_tensor_free(t);
    yk_tensor_free(s);
}

Test(softmax, null_input_is_invalid)
{
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_softmax(g, NULL, 0));
    expect_error(ctx, YK_EINVAL, "softmax: input 0 is NULL");
    yk_graph_end(g);
}

/* ----------------------------------------------------------- registry */

Test(softmax, registry_entries_follow_the_case_format)
{
    const char *ops[2] = {"softmax", "log_softmax"};
    for (int k = 0; k < 2; k++) {
        const yk_op_def *d = yk_op_find(ops[k]);
        cr_assert(d, "%s", ops[k]);
        cr_assert_eq(d->n_inputs, 1);
        cr_assert_str_eq(d->input_names[0], "input");
        cr_assert_eq(d->n_attrs, 1);
        cr_assert_str_eq(d->attrs[0].name, "dim");
        cr_assert_eq(d->attrs[0].type, YK_ATTR_INT);
        cr_assert(d->attrs[0].required, "%s: dim has no default", ops[k]);
    }
}

Test(softmax, registry_build)
{
    yk_tensor *t = T64(ctx, SHAPE(2, 3), X23);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *x = yk_const(g, t);
    yk_attr_value dim = {.i = 0};
    yk_node *y = yk_op_find("softmax")->build(g, &x, 1, &dim);
    expect_close(yk_value(y), VALS(1 / 5., 2 / 3., 3 / 4., 4 / 5., 1 / 3.,
                                   1 / 4.), 6, 1e-15, 1e-15);
    yk_attr_value huge = {.i = INT64_C(1) << 33};
    cr_assert_null(yk_op_find("log_softmax")->build(g, &x, 1, &huge));
    expect_error(ctx, YK_EINVAL, "log_softmax: dim = 8589934592");
    yk_graph_end(g);
    yk_tensor_free(t);
}
