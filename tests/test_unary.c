/* Tests of ops/unary.c: forward against hand-worked values, backward
 * against finite differences. The pattern to copy for a new op's test. */
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

TestSuite(unary, .init = setup, .fini = teardown);

typedef yk_node *(*unary_fn)(yk_graph *, yk_node *);

/* Forward of f on x = [-2, -0.5, 0, 0.5, 3], in f64 and f32. */
static void expect_forward(unary_fn f, const double *want)
{
    double x[5] = {-2, -0.5, 0, 0.5, 3};
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_tensor *t = dt == YK_F32 ? T32(ctx, SHAPE(5), x) : T64(ctx, SHAPE(5), x);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = f(g, yk_const(g, t));
        cr_assert(y, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_node_dtype(y), dt);
        expect_close(yk_value(y), want, 5, dt == YK_F32 ? 1e-6 : 1e-15, 1e-7);
        yk_graph_end(g);
        yk_tensor_free(t);
    }
}

Test(unary, forward_values)
{
    expect_forward(yk_relu, VALS(0, 0, 0, 0.5, 3));
    /* tanh, sigmoid, exp and log values from libm's definitions worked
     * through by hand: tanh(x) = (e^2x - 1) / (e^2x + 1), etc. */
    expect_forward(yk_tanh, VALS(-0.9640275800758169, -0.46211715726000974, 0,
                                 0.46211715726000974, 0.9950547536867305));
    expect_forward(yk_sigmoid, VALS(0.11920292202211755, 0.3775406687981454,
                                    0.5, 0.6224593312018546, 0.9525741268224334));
    expect_forward(yk_exp, VALS(0.1353352832366127, 0.6065306597126334, 1,
                                1.6487212707001282, 20.085536923187668));
}

Test(unary, log_forward)
{
    yk_tensor *t = T64(ctx, SHAPE(3), VALS(1, 2.718281828459045, 0.5));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_log(g, yk_const(g, t));
    expect_close(yk_value(y), VALS(0, 1, -0.6931471805599453), 3, 1e-15, 1e-15);
    yk_graph_end(g);
    yk_tensor_free(t);
}

static yk_node *build_all(yk_graph *g, void *ud)
{
    /* Every unary op on one parameter (log on exp keeps it positive). */
    yk_node *w = yk_param_node(g, ud);
    yk_node *parts[5] = {yk_relu(g, w), yk_tanh(g, w), yk_sigmoid(g, w),
                         yk_exp(g, w), yk_log(g, yk_exp(g, w))};
    return yk_cat(g, 5, parts, 0);
}

Test(unary, backward_matches_finite_differences)
{
    /* relu is checked away from 0, where it has no derivative. */
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(2, 3),
                             VALS(-1.5, -0.2, 0.3, 0.7, 1.1, 2.0));
    expect_gradcheck(m, build_all, w);
}

Test(unary, relu_gradient_is_zero_at_zero)
{
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(3), VALS(-1, 0, 1));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_relu(g, yk_param_node(g, w));
    yk_tensor *seed = T64(ctx, SHAPE(3), VALS(5, 5, 5));
    const yk_tensor *sp = seed;
    cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK);
    expect_close(yk_param_grad(w), VALS(0, 0, 5), 3, 0, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
}

Test(unary, rejects_integer_input)
{
    yk_tensor *t = TI(ctx, SHAPE(2), IDX(1, 2));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_tanh(g, yk_const(g, t)));
    expect_error(ctx, YK_EDTYPE, "tanh: input is i64");
    yk_graph_end(g);
    yk_tensor_free(t);
}
