/* Tests of ops/arith.c: add, sub, mul, div with broadcasting. Forward
 * against hand-worked values, backward against hand-worked sums and finite
 * differences, and every error path. */
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

TestSuite(arith, .init = setup, .fini = teardown);

typedef yk_node *(*binary_fn)(yk_graph *, yk_node *, yk_node *);

static yk_tensor *make(yk_dtype dt, size_t ndim, const int64_t *shape,
                       const double *v)
{
    return dt == YK_F32 ? T32(ctx, ndim, shape, v) : T64(ctx, ndim, shape, v);
}

/* f(a, b) in f64 and f32 against want (out_ndim, out_shape). */
static void expect_binary(binary_fn f, size_t na, const int64_t *sa,
                          const double *va, size_t nb, const int64_t *sb,
                          const double *vb, size_t no, const int64_t *so,
                          const double *want)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_tensor *a = make(dt, na, sa, va), *b = make(dt, nb, sb, vb);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = f(g, yk_const(g, a), yk_const(g, b));
        cr_assert(y, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_node_dtype(y), dt);
        const yk_tensor *v = yk_value(y);
        expect_shape(v, no, so);
        expect_close(v, want, yk_tensor_numel(v), dt == YK_F32 ? 1e-6 : 1e-15,
                     1e-6);
        yk_graph_end(g);
        yk_tensor_free(a);
        yk_tensor_free(b);
    }
}

/* a (2, 3) = [1..6] and b (3) = [10, 20, 30]: b repeats down the rows. */
#define A23 SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)
#define B3 SHAPE(3), VALS(10, 20, 30)

Test(arith, row_broadcast_values)
{
    expect_binary(yk_add, A23, B3, SHAPE(2, 3), VALS(11, 22, 33, 14, 25, 36));
    expect_binary(yk_sub, A23, B3, SHAPE(2, 3),
                  VALS(-9, -18, -27, -6, -15, -24));
    expect_binary(yk_mul, A23, B3, SHAPE(2, 3),
                  VALS(10, 40, 90, 40, 100, 180));
    expect_binary(yk_div, A23, B3, SHAPE(2, 3),
                  VALS(0.1, 0.1, 0.1, 0.4, 0.25, 0.2));
    /* operand order matters: b - a */
    expect_binary(yk_sub, B3, A23, SHAPE(2, 3), VALS(9, 18, 27, 6, 15, 24));
}

Test(arith, same_shape_values)
{
    expect_binary(yk_mul, A23, A23, SHAPE(2, 3), VALS(1, 4, 9, 16, 25, 36));
    expect_binary(yk_div, A23, A23, SHAPE(2, 3), VALS(1, 1, 1, 1, 1, 1));
}

Test(arith, both_sides_stretch)
{
    /* (2, 1, 3) * (4, 1) -> (2, 4, 3): out[i, j, k] = a[i, 0, k] * b[j]. */
    expect_binary(yk_mul, SHAPE(2, 1, 3), VALS(1, 2, 3, 4, 5, 6), SHAPE(4, 1),
                  VALS(1, 2, 3, 4), SHAPE(2, 4, 3),
                  VALS(1, 2, 3, 2, 4, 6, 3, 6, 9, 4, 8, 12,
                       4, 5, 6, 8, 10, 12, 12, 15, 18, 16, 20, 24));
    /* column (2, 1) + row (1, 3): an outer sum. */
    expect_binary(yk_add, SHAPE(2, 1), VALS(10, 20), SHAPE(1, 3),
                  VALS(1, 2, 3), SHAPE(2, 3), VALS(11, 12, 13, 21, 22, 23));
}

Test(arith, zero_dim_operands)
{
    /* 2 - x and x / 2 for x = [[1, 2], [3, 4]]. */
    expect_binary(yk_sub, 0, NULL, VALS(2), SHAPE(2, 2), VALS(1, 2, 3, 4),
                  SHAPE(2, 2), VALS(1, 0, -1, -2));
    expect_binary(yk_div, SHAPE(2, 2), VALS(1, 2, 3, 4), 0, NULL, VALS(2),
                  SHAPE(2, 2), VALS(0.5, 1, 1.5, 2));
    /* 0-d with 0-d stays 0-d; (1, 1) with 0-d keeps (1, 1). */
    expect_binary(yk_mul, 0, NULL, VALS(3), 0, NULL, VALS(-2), 0, NULL,
                  VALS(-6));
    expect_binary(yk_add, SHAPE(1, 1), VALS(3), 0, NULL, VALS(4), SHAPE(1, 1),
                  VALS(7));
}

Test(arith, size_zero_dims)
{
    /* (0, 3) + (3) is (0, 3); (2, 0) * (2, 1) is (2, 0); (1) with (0) is (0). */
    expect_binary(yk_add, SHAPE(0, 3), NULL, B3, SHAPE(0, 3), NULL);
    expect_binary(yk_mul, SHAPE(2, 0), NULL, SHAPE(2, 1), VALS(1, 2),
                  SHAPE(2, 0), NULL);
    expect_binary(yk_sub, SHAPE(1), VALS(5), SHAPE(0), NULL, SHAPE(0), NULL);
}

Test(arith, empty_output_gives_zero_gradients)
{
    /* (0, 3) + b (3): b gets a gradient of zeros, not none. */
    yk_param *b = param_with(m, "b", YK_F64, B3);
    yk_tensor *a = T64(ctx, SHAPE(0, 3), NULL);
    yk_tensor *seed = T64(ctx, SHAPE(0, 3), NULL);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_add(g, yk_const(g, a), yk_param_node(g, b));
    const yk_tensor *sp = seed;
    cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK, "%s",
                 yk_last_error(ctx));
    cr_assert_eq(yk_param_grad_kind(b), YK_GRAD_DENSE);
    expect_close(yk_param_grad(b), VALS(0, 0, 0), 3, 0, 0);
    yk_graph_end(g);
    yk_tensor_free(a);
    yk_tensor_free(seed);
}

/* Backward with seed 1 everywhere: the gradient of a broadcast operand is the
 * sum over the dims it was stretched along (worked by hand). */
Test(arith, broadcast_gradients_sum_by_hand)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_model *mm = yk_model_new(ctx);
        yk_param *a = param_with(mm, "a", dt, SHAPE(2, 1, 3),
                                 VALS(1, 2, 3, 4, 5, 6));
        yk_param *b = param_with(mm, "b", dt, SHAPE(4, 1), VALS(1, 2, 3, 4));
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = yk_mul(g, yk_param_node(g, a), yk_param_node(g, b));
        yk_tensor *seed = yk_tensor_ones(ctx, dt, 3, yk_node_shape(y));
        const yk_tensor *sp = seed;
        cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK);
        /* da[i, 0, k] = sum_j b[j] = 10; db[j] = sum_{i,k} a[i, 0, k] = 21 */
        expect_close(yk_param_grad(a), VALS(10, 10, 10, 10, 10, 10), 6, 0, 0);
        expect_close(yk_param_grad(b), VALS(21, 21, 21, 21), 4, 0, 0);
        yk_graph_end(g);
        yk_tensor_free(seed);
        yk_model_free(mm);
    }
}

Test(arith, sub_and_div_gradients_by_hand)
{
    /* y = a - b, y = a / b for a = [6], b = [2, 3] (a broadcast), seed 1:
     * sub: da = 2, db = [-1, -1]; div: da = 1/2 + 1/3, db = -a / b^2 =
     * [-1.5, -2/3]. */
    yk_param *a = param_with(m, "a", YK_F64, SHAPE(1), VALS(6));
    yk_param *b = param_with(m, "b", YK_F64, SHAPE(2), VALS(2, 3));
    binary_fn fs[2] = {yk_sub, yk_div};
    const double want_a[2][1] = {{2}, {1.0 / 2 + 1.0 / 3}};
    const double want_b[2][2] = {{-1, -1}, {-1.5, -2.0 / 3}};
    for (int k = 0; k < 2; k++) {
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = fs[k](g, yk_param_node(g, a), yk_param_node(g, b));
        yk_node *loss = yk_sum(g, y, 0, NULL, false);
        cr_assert_eq(yk_backward(g, loss), YK_OK, "%s", yk_last_error(ctx));
        expect_close(yk_param_grad(a), want_a[k], 1, 1e-15, 0);
        expect_close(yk_param_grad(b), want_b[k], 2, 1e-15, 0);
        yk_graph_end(g);
        yk_model_zero_grad(m);
    }
}

Test(arith, same_node_twice)
{
    /* y = x * x: dy/dx = 2x, both uses add into one gradient. */
    yk_param *x = param_with(m, "x", YK_F64, SHAPE(3), VALS(1, -2, 3));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *xn = yk_param_node(g, x);
    yk_node *loss = yk_sum(g, yk_mul(g, xn, xn), 0, NULL, false);
    cr_assert_eq(yk_backward(g, loss), YK_OK, "%s", yk_last_error(ctx));
    expect_close(yk_param_grad(x), VALS(2, -4, 6), 3, 0, 0);
    yk_graph_end(g);
}

/* ---- finite differences over broadcasting shapes */

typedef struct pair {
    binary_fn f;
    yk_param *a, *b;
} pair;

static yk_node *build_pair(yk_graph *g, void *ud)
{
    pair *p = ud;
    return p->f(g, yk_param_node(g, p->a), yk_param_node(g, p->b));
}

/* Every op on a pair of shapes; values in [0.5, 2] keep div smooth. */
static void gradcheck_shapes(size_t na, const int64_t *sa, size_t nb,
                             const int64_t *sb)
{
    binary_fn fs[4] = {yk_add, yk_sub, yk_mul, yk_div};
    for (int k = 0; k < 4; k++) {
        yk_model *mm = yk_model_new(ctx);
        pair p = {fs[k], yk_model_add(mm, "a", YK_F64, (int)na, sa),
                  yk_model_add(mm, "b", YK_F64, (int)nb, sb)};
        cr_assert(p.a && p.b, "%s", yk_last_error(ctx));
        yk_tensor_fill_uniform(yk_param_value(p.a), 1, 0.5, 2);
        yk_tensor_fill_uniform(yk_param_value(p.b), 2, 0.5, 2);
        expect_gradcheck(mm, build_pair, &p);
        yk_model_free(mm);
    }
}

Test(arith, gradcheck_row_broadcast)
{
    gradcheck_shapes(SHAPE(2, 3), SHAPE(3));
    gradcheck_shapes(SHAPE(3), SHAPE(2, 3));
}

Test(arith, gradcheck_both_stretch)
{
    gradcheck_shapes(SHAPE(2, 1, 3), SHAPE(4, 1));
    gradcheck_shapes(SHAPE(1, 4, 1), SHAPE(3, 1, 2));
}

Test(arith, gradcheck_zero_dim_and_same_shape)
{
    gradcheck_shapes(0, NULL, SHAPE(2, 2));
    gradcheck_shapes(SHAPE(2, 2), 0, NULL);
    gradcheck_shapes(SHAPE(2, 3), SHAPE(2, 3));
    gradcheck_shapes(SHAPE(2, 3), SHAPE(1, 1));
}

Test(arith, gradcheck_middle_dim_broadcast)
{
    /* (2, 3, 4) with (2, 1, 4): b stretches in the middle only. */
    gradcheck_shapes(SHAPE(2, 3, 4), SHAPE(2, 1, 4));
}

/* ---- errors */

Test(arith, rejects_shapes_that_do_not_broadcast)
{
    yk_tensor *a = T64(ctx, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    yk_tensor *b = T64(ctx, SHAPE(4), VALS(1, 2, 3, 4));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_add(g, yk_const(g, a), yk_const(g, b)));
    expect_error(ctx, YK_ESHAPE, "add: input of shape [2, 3] and other of "
                 "shape [4] cannot be broadcast");
    expect_error(ctx, YK_ESHAPE, "3 vs 4");
    cr_assert_eq(yk_graph_status(g), YK_ESHAPE);
    yk_graph_end(g);

    /* a size-0 dim does not stretch to 3 */
    yk_tensor *c = T64(ctx, SHAPE(0), NULL);
    g = yk_graph_begin(ctx);
    cr_assert_null(yk_div(g, yk_const(g, a), yk_const(g, c)));
    expect_error(ctx, YK_ESHAPE, "div: input of shape [2, 3] and other of "
                 "shape [0]");
    yk_graph_end(g);
    yk_tensor_free(a);
    yk_tensor_free(b);
    yk_tensor_free(c);
}

Test(arith, rejects_mixed_float_dtypes)
{
    yk_tensor *a = T64(ctx, SHAPE(2), VALS(1, 2));
    yk_tensor *b = T32(ctx, SHAPE(2), VALS(1, 2));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_mul(g, yk_const(g, a), yk_const(g, b)));
    expect_error(ctx, YK_EDTYPE, "mul: input is f64 but other is f32");
    yk_graph_end(g);
    yk_tensor_free(a);
    yk_tensor_free(b);
}

Test(arith, rejects_integer_operands)
{
    yk_tensor *a = T64(ctx, SHAPE(2), VALS(1, 2));
    yk_tensor *i = TI(ctx, SHAPE(2), IDX(1, 2));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_sub(g, yk_const(g, a), yk_const(g, i)));
    expect_error(ctx, YK_EDTYPE, "sub: other is i64");
    yk_graph_end(g);
    g = yk_graph_begin(ctx);
    cr_assert_null(yk_add(g, yk_const(g, i), yk_const(g, a)));
    expect_error(ctx, YK_EDTYPE, "add: input is i64");
    yk_graph_end(g);
    yk_tensor_free(a);
    yk_tensor_free(i);
}

Test(arith, null_input_is_sticky)
{
    yk_tensor *a = T64(ctx, SHAPE(2), VALS(1, 2));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_add(g, yk_const(g, a), NULL));
    expect_error(ctx, YK_EINVAL, "add: input 1 is NULL");
    /* a later op on the failed graph keeps the first message */
    cr_assert_null(yk_mul(g, yk_const(g, a), yk_const(g, a)));
    expect_error(ctx, YK_EINVAL, "add: input 1 is NULL");
    yk_graph_end(g);
    yk_tensor_free(a);
}

Test(arith, registry_entries)
{
    const char *ops[4] = {"add", "sub", "mul", "div"};
    for (int k = 0; k < 4; k++) {
        const yk_op_def *d = yk_op_find(ops[k]);
        cr_assert(d, "%s missing", ops[k]);
        cr_assert_eq(d->n_inputs, 2);
        cr_assert_str_eq(d->input_names[0], "input");
        cr_assert_str_eq(d->input_names[1], "other");
        cr_assert_eq(d->n_attrs, 0);
    }
    /* build calls the public function */
    yk_tensor *a = T64(ctx, SHAPE(2), VALS(1, 2));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *in[2] = {yk_const(g, a), yk_const(g, a)};
    yk_node *y = yk_op_find("div")->build(g, in, 2, NULL);
    cr_assert(y, "%s", yk_last_error(ctx));
    cr_assert_str_eq(yk_node_op_name(y), "div");
    expect_close(yk_value(y), VALS(1, 1), 2, 0, 0);
    yk_graph_end(g);
    yk_tensor_free(a);
}
