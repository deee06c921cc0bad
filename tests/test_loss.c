/* Tests of ops/loss.c (cross_entropy, mse_loss): forward and backward
 * against hand-worked values, backward against finite differences,
 * finiteness at +-1e4, empty batches, every error path, and the registry
 * entries against case-format.md. */
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

TestSuite(loss, .init = setup, .fini = teardown);

static double tol(yk_dtype dt) { return dt == YK_F32 ? 1e-6 : 1e-15; }

/* A parameter named after its dtype and a counter, so loops can make many. */
static yk_param *param(yk_dtype dt, size_t ndim, const int64_t *shape,
                       const double *v)
{
    static int count;
    char name[32];
    snprintf(name, sizeof name, "p%d_%s", count++, yk_dtype_name(dt));
    return param_with(m, name, dt, ndim, shape, v);
}

/* ---------------------------------------------------------- cross_entropy */

/*
 * logits [[0, ln 2, ln 3], [ln 4, 0, 0]], targets [2, 0]:
 * softmax rows [1, 2, 3] / 6 and [4, 1, 1] / 6, so
 * loss_0 = -ln(3/6) = ln 2, loss_1 = -ln(4/6) = ln(3/2);
 * sum = ln 3, mean = ln(3) / 2.
 * Gradient (seed 1): (softmax - onehot(target)) per row, / 2 for mean:
 * [[1/6, 2/6, 3/6 - 1], [4/6 - 1, 1/6, 1/6]].
 */
#define LOGITS VALS(0, log(2), log(3), log(4), 0, 0)

Test(loss, cross_entropy_hand_worked)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        for (int r = 0; r < 2; r++) {
            yk_reduction red = r ? YK_REDUCE_SUM : YK_REDUCE_MEAN;
            double scale = r ? 1 : 0.5;
            yk_param *w = param(dt, SHAPE(2, 3), LOGITS);
            yk_tensor *t = TI(ctx, SHAPE(2), IDX(2, 0));
            yk_graph *g = yk_graph_begin(ctx);
            yk_node *l = yk_cross_entropy(g, yk_param_node(g, w),
                                          yk_const(g, t), red);
            cr_assert(l, "%s", yk_last_error(ctx));
            cr_assert_eq(yk_node_ndim(l), 0);
            cr_assert_eq(yk_node_dtype(l), dt);
            expect_close(yk_value(l), VALS(log(3) * scale), 1, tol(dt),
                         tol(dt));
            cr_assert_eq(yk_backward(g, l), YK_OK, "%s", yk_last_error(ctx));
            double want[6] = {1 / 6., 2 / 6., 3 / 6. - 1,
                              4 / 6. - 1, 1 / 6., 1 / 6.};
            for (int i = 0; i < 6; i++)
                want[i] *= scale;
            expect_close(yk_param_grad(w), want, 6, tol(dt), tol(dt));
            yk_graph_end(g);
            yk_tensor_free(t);
        }
    }
}

Test(loss, cross_entropy_finite_for_logits_of_1e4)
{
    /* row [1e4, -1e4, 0]: lse = 1e4 (exp(-1e4) and exp(-2e4) underflow),
     * so target 0 costs 0, target 1 costs 2e4; row [1e4, 1e4, -1e4] with
     * target 2 costs 2e4 + ln 2. Sum: 4e4 + ln 2. Gradients are softmax
     * minus one-hot: finite. */
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *w = param(dt, SHAPE(3, 3),
                            VALS(1e4, -1e4, 0, 1e4, -1e4, 0, 1e4, 1e4, -1e4));
        yk_tensor *t = TI(ctx, SHAPE(3), IDX(0, 1, 2));
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *l = yk_cross_entropy(g, yk_param_node(g, w), yk_const(g, t),
                                      YK_REDUCE_SUM);
        cr_assert(l, "%s", yk_last_error(ctx));
        /* one ulp of 1e4 is 2e-12 in f64 and 1e-3 in f32 */
        expect_close(yk_value(l), VALS(4e4 + log(2)), 1, 0,
                     dt == YK_F32 ? 4e-3 : 1e-11);
        cr_assert_eq(yk_backward(g, l), YK_OK, "%s", yk_last_error(ctx));
        /* exact to rounding: (x - max) comes first, so no 1e4 is lost */
        expect_close(yk_param_grad(w), VALS(0, 0, 0, 1, -1, 0, 0.5, 0.5, -1),
                     9, tol(dt), tol(dt));
        yk_graph_end(g);
        yk_tensor_free(t);
    }
}

Test(loss, cross_entropy_of_empty_batch)
{
    /* N = 0: the mean is 0 / 0 = NaN and the sum 0, as in PyTorch; the
     * logits get an empty gradient */
    yk_param *w = param(YK_F64, SHAPE(0, 3), VALS(0));
    yk_tensor *t = yk_tensor_zeros(ctx, YK_I64, 1, (int64_t[]){0});
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *x = yk_param_node(g, w), *tn = yk_const(g, t);
    yk_node *mean = yk_cross_entropy(g, x, tn, YK_REDUCE_MEAN);
    yk_node *sum = yk_cross_entropy(g, x, tn, YK_REDUCE_SUM);
    cr_assert(mean && sum, "%s", yk_last_error(ctx));
    cr_assert(isnan(yk_tensor_get(yk_value(mean), 0)));
    expect_close(yk_value(sum), VALS(0), 1, 0, 0);
    cr_assert_eq(yk_backward(g, sum), YK_OK, "%s", yk_last_error(ctx));
    yk_graph_end(g);
    yk_tensor_free(t);
}

struct ce_case {
    yk_param *w;
    yk_tensor *target;
    yk_reduction red;
};

static yk_node *build_cross_entropy(yk_graph *g, void *ud)
{
    struct ce_case *c = ud;
    return yk_cross_entropy(g, yk_param_node(g, c->w), yk_const(g, c->target),
                            c->red);
}

Test(loss, cross_entropy_backward_matches_finite_differences)
{
    for (int r = 0; r < 2; r++) {
        yk_model *mm = yk_model_new(ctx);
        struct ce_case c = {
            .w = param_with(mm, "w", YK_F64, SHAPE(3, 4),
                            VALS(0.1, -1.2, 0.7, 2.0, -0.4, 0.3, 0.9, -2.2,
                                 1.5, 0.0, -0.8, 0.6)),
            .target = TI(ctx, SHAPE(3), IDX(3, 0, 3)),
            .red = r ? YK_REDUCE_SUM : YK_REDUCE_MEAN};
        expect_gradcheck(mm, build_cross_entropy, &c);
        yk_tensor_free(c.target);
        yk_model_free(mm);
    }
}

struct ce_cat_case {
    yk_param *a, *b;
    yk_tensor *target;
};

static yk_node *build_ce_of_lazy_cat(yk_graph *g, void *ud)
{
    /* logits = [a | b], a lazy column cat */
    struct ce_cat_case *c = ud;
    yk_node *parts[2] = {yk_param_node(g, c->a), yk_param_node(g, c->b)};
    return yk_cross_entropy(g, yk_cat(g, 2, parts, 1),
                            yk_const(g, c->target), YK_REDUCE_MEAN);
}

Test(loss, cross_entropy_of_lazy_cat_matches_finite_differences)
{
    struct ce_cat_case c = {
        .a = param(YK_F64, SHAPE(2, 2), VALS(0.5, -1, 2, 0.1)),
        .b = param(YK_F64, SHAPE(2, 1), VALS(-0.3, 1.5)),
        .target = TI(ctx, SHAPE(2), IDX(2, 1))};
    expect_gradcheck(m, build_ce_of_lazy_cat, &c);
    yk_tensor_free(c.target);
}

/* Runs cross_entropy on the given tensors and expects an error. */
static void expect_ce_error(const yk_tensor *x, const yk_tensor *t,
                            yk_reduction red, yk_status want,
                            const char *part)
{
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_cross_entropy(g, yk_const(g, x), yk_const(g, t), red));
    expect_error(ctx, want, part);
    yk_graph_end(g);
}

Test(loss, cross_entropy_errors)
{
    yk_tensor *x = T64(ctx, SHAPE(2, 3), LOGITS);
    yk_tensor *x1 = T64(ctx, SHAPE(3), VALS(1, 2, 3));
    yk_tensor *xi = TI(ctx, SHAPE(2, 3), IDX(1, 2, 3, 4, 5, 6));
    yk_tensor *too_big = TI(ctx, SHAPE(2), IDX(0, 3));
    yk_tensor *negative = TI(ctx, SHAPE(2), IDX(-1, 0));
    yk_tensor *three = TI(ctx, SHAPE(3), IDX(0, 1, 2));
    yk_tensor *t2d = TI(ctx, SHAPE(2, 1), IDX(0, 1));
    yk_tensor *tf = T64(ctx, SHAPE(2), VALS(0, 1));
    yk_tensor *ok = TI(ctx, SHAPE(2), IDX(0, 1));

    expect_ce_error(x, too_big, YK_REDUCE_MEAN, YK_ERANGE,
                    "cross_entropy: target[1] = 3 is out of range for 3 "
                    "classes");
    expect_ce_error(x, negative, YK_REDUCE_SUM, YK_ERANGE,
                    "target[0] = -1");
    expect_ce_error(x, tf, YK_REDUCE_MEAN, YK_EDTYPE,
                    "cross_entropy: target is f64, needs i64");
    expect_ce_error(xi, ok, YK_REDUCE_MEAN, YK_EDTYPE,
                    "cross_entropy: input is i64");
    expect_ce_error(x1, ok, YK_REDUCE_MEAN, YK_ESHAPE,
                    "cross_entropy: input has shape [3], needs (N, C)");
    expect_ce_error(x, three, YK_REDUCE_MEAN, YK_ESHAPE,
                    "target has shape [3], needs [2] for input of shape "
                    "[2, 3]");
    expect_ce_error(x, t2d, YK_REDUCE_MEAN, YK_ESHAPE,
                    "target has shape [2, 1]");
    expect_ce_error(x, ok, (yk_reduction)7, YK_EINVAL,
                    "cross_entropy: reduction = 7");

    yk_tensor *all[] = {x, x1, xi, too_big, negative, three, t2d, tf, ok};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        yk_tensor_free(all[i]);
}

/* --------------------------------------------------------------- mse_loss */

/*
 * input [1, 2, 3], target [0, 2, 5]: differences [1, 0, -2], squares
 * [1, 0, 4]; sum 5, mean 5/3. Gradient (seed 1) of the input: 2 (x - t)
 * = [2, 0, -4] (sum) or [2/3, 0, -4/3] (mean); the target's is its
 * negation.
 */
Test(loss, mse_hand_worked)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        for (int r = 0; r < 2; r++) {
            yk_reduction red = r ? YK_REDUCE_SUM : YK_REDUCE_MEAN;
            double scale = r ? 1 : 1 / 3.;
            yk_param *x = param(dt, SHAPE(3), VALS(1, 2, 3));
            yk_param *t = param(dt, SHAPE(3), VALS(0, 2, 5));
            yk_graph *g = yk_graph_begin(ctx);
            yk_node *l = yk_mse_loss(g, yk_param_node(g, x),
                                     yk_param_node(g, t), red);
            cr_assert(l, "%s", yk_last_error(ctx));
            cr_assert_eq(yk_node_ndim(l), 0);
            cr_assert_eq(yk_node_dtype(l), dt);
            expect_close(yk_value(l), VALS(5 * scale), 1, tol(dt), tol(dt));
            cr_assert_eq(yk_backward(g, l), YK_OK, "%s", yk_last_error(ctx));
            expect_close(yk_param_grad(x),
                         VALS(2 * scale, 0, -4 * scale), 3, tol(dt), tol(dt));
            expect_close(yk_param_grad(t),
                         VALS(-2 * scale, 0, 4 * scale), 3, tol(dt), tol(dt));
            yk_graph_end(g);
        }
    }
}

Test(loss, mse_constant_target_gets_nothing)
{
    /* the target needs no gradient: only the input's is computed */
    yk_param *x = param(YK_F64, SHAPE(2, 2), VALS(1, 2, 3, 4));
    yk_tensor *t = T64(ctx, SHAPE(2, 2), VALS(1, 1, 1, 1));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *tn = yk_const(g, t);
    yk_node *l = yk_mse_loss(g, yk_param_node(g, x), tn, YK_REDUCE_SUM);
    cr_assert_eq(yk_backward(g, l), YK_OK, "%s", yk_last_error(ctx));
    expect_close(yk_param_grad(x), VALS(0, 2, 4, 6), 4, 0, 0);
    cr_assert_null(yk_node_grad(tn));
    yk_graph_end(g);
    yk_tensor_free(t);
}

Test(loss, mse_of_empty_input)
{
    yk_tensor *x = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){0, 3});
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *xn = yk_const(g, x);
    cr_assert(isnan(yk_tensor_get(
        yk_value(yk_mse_loss(g, xn, xn, YK_REDUCE_MEAN)), 0)));
    expect_close(yk_value(yk_mse_loss(g, xn, xn, YK_REDUCE_SUM)), VALS(0), 1,
                 0, 0);
    yk_graph_end(g);
    yk_tensor_free(x);
}

struct mse_case {
    yk_param *x, *t;
    yk_reduction red;
};

static yk_node *build_mse(yk_graph *g, void *ud)
{
    struct mse_case *c = ud;
    return yk_mse_loss(g, yk_param_node(g, c->x), yk_param_node(g, c->t),
                       c->red);
}

Test(loss, mse_backward_matches_finite_differences)
{
    for (int r = 0; r < 2; r++) {
        yk_model *mm = yk_model_new(ctx);
        struct mse_case c = {
            .x = param_with(mm, "x", YK_F64, SHAPE(2, 3),
                            VALS(0.1, -1.2, 0.7, 2.0, -0.4, 0.3)),
            .t = param_with(mm, "t", YK_F64, SHAPE(2, 3),
                            VALS(0.5, 0.5, -0.5, 1.0, 0.0, -1.0)),
            .red = r ? YK_REDUCE_SUM : YK_REDUCE_MEAN};
        expect_gradcheck(mm, build_mse, &c);
        yk_model_free(mm);
    }
}

static yk_node *build_mse_same(yk_graph *g, void *ud)
{
    /* mse(w, 2w) = mean(w^2): both uses of w add up */
    yk_node *w = yk_param_node(g, ud);
    return yk_mse_loss(g, w, yk_add(g, w, w), YK_REDUCE_MEAN);
}

Test(loss, mse_same_param_both_sides_matches_finite_differences)
{
    yk_param *w = param(YK_F64, SHAPE(3), VALS(0.5, -1.5, 2.5));
    expect_gradcheck(m, build_mse_same, w);
}

static void expect_mse_error(const yk_tensor *x, const yk_tensor *t,
                             yk_reduction red, yk_status want,
                             const char *part)
{
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_mse_loss(g, yk_const(g, x), yk_const(g, t), red));
    expect_error(ctx, want, part);
    yk_graph_end(g);
}

Test(loss, mse_errors)
{
    yk_tensor *x = T64(ctx, SHAPE(2, 2), VALS(1, 2, 3, 4));
    yk_tensor *flat = T64(ctx, SHAPE(4), VALS(1, 2, 3, 4));
    yk_tensor *row = T64(ctx, SHAPE(2), VALS(1, 2));
    yk_tensor *x32 = T32(ctx, SHAPE(2, 2), VALS(1, 2, 3, 4));
    yk_tensor *xi = TI(ctx, SHAPE(2, 2), IDX(1, 2, 3, 4));

    expect_mse_error(x, flat, YK_REDUCE_MEAN, YK_ESHAPE,
                     "mse_loss: target has shape [4] but input has shape "
                     "[2, 2]");
    /* no broadcasting: PyTorch would broadcast [2] with a warning */
    expect_mse_error(x, row, YK_REDUCE_SUM, YK_ESHAPE,
                     "target has shape [2]");
    expect_mse_error(x, x32, YK_REDUCE_MEAN, YK_EDTYPE,
                     "mse_loss: target is f32 but input is f64");
    expect_mse_error(xi, xi, YK_REDUCE_MEAN, YK_EDTYPE,
                     "mse_loss: input is i64");
    expect_mse_error(x, x, (yk_reduction)-1, YK_EINVAL,
                     "mse_loss: reduction = -1");

    yk_tensor *all[] = {x, flat, row, x32, xi};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        yk_tensor_free(all[i]);
}

/* --------------------------------------------------------------- registry */

Test(loss, registry_entries_follow_the_case_format)
{
    const char *ops[2] = {"cross_entropy", "mse_loss"};
    for (int k = 0; k < 2; k++) {
        const yk_op_def *d = yk_op_find(ops[k]);
        cr_assert(d, "%s", ops[k]);
        cr_assert_eq(d->n_inputs, 2);
        cr_assert_str_eq(d->input_names[0], "input");
        cr_assert_str_eq(d->input_names[1], "target");
        cr_assert_eq(d->optional_inputs, 0u);
        /* cross_entropy's target is indices; mse_loss's may need grad */
        cr_assert_eq(d->index_inputs, k == 0 ? 2u : 0u, "%s", ops[k]);
        cr_assert_eq(d->n_attrs, 1);
        cr_assert_str_eq(d->attrs[0].name, "reduction");
        cr_assert_eq(d->attrs[0].type, YK_ATTR_STRING);
        cr_assert(!d->attrs[0].required);
        cr_assert_str_eq(d->attrs[0].def_string, "mean");
    }
}

Test(loss, registry_build_maps_reduction_strings)
{
    yk_tensor *x = T64(ctx, SHAPE(2, 3), LOGITS);
    yk_tensor *t = TI(ctx, SHAPE(2), IDX(2, 0));
    yk_tensor *y = T64(ctx, SHAPE(2, 3), VALS(0, 0, 0, 0, 0, 0));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *ce_in[2] = {yk_const(g, x), yk_const(g, t)};
    yk_node *mse_in[2] = {yk_const(g, x), yk_const(g, y)};
    const yk_op_def *ce = yk_op_find("cross_entropy");
    const yk_op_def *mse = yk_op_find("mse_loss");
    yk_attr_value sum = {.s = "sum"}, mean = {.s = "mean"}, absent = {0};
    /* values from cross_entropy_hand_worked: sum ln 3, mean ln(3) / 2 */
    expect_close(yk_value(ce->build(g, ce_in, 2, &sum)), VALS(log(3)), 1,
                 1e-15, 0);
    expect_close(yk_value(ce->build(g, ce_in, 2, &mean)), VALS(log(3) / 2),
                 1, 1e-15, 0);
    expect_close(yk_value(ce->build(g, ce_in, 2, &absent)), VALS(log(3) / 2),
                 1, 1e-15, 0);
    /* mse against zeros: sum of squares of the logits, ln2^2 + ln3^2 +
     * ln4^2 */
    double ss = log(2) * log(2) + log(3) * log(3) + log(4) * log(4);
    expect_close(yk_value(mse->build(g, mse_in, 2, &sum)), VALS(ss), 1,
                 1e-15, 0);
    expect_close(yk_value(mse->build(g, mse_in, 2, &absent)), VALS(ss / 6), 1,
                 1e-15, 0);
    yk_graph_end(g);

    yk_attr_value bad = {.s = "avg"}, none = {.s = "none"};
    g = yk_graph_begin(ctx);
    ce_in[0] = yk_const(g, x);
    ce_in[1] = yk_const(g, t);
    cr_assert_null(ce->build(g, ce_in, 2, &bad));
    expect_error(ctx, YK_EINVAL, "cross_entropy: reduction = \"avg\"");
    yk_graph_end(g);
    g = yk_graph_begin(ctx);
    mse_in[0] = yk_const(g, x);
    mse_in[1] = yk_const(g, y);
    cr_assert_null(mse->build(g, mse_in, 2, &none));
    expect_error(ctx, YK_EINVAL, "mse_loss: reduction = \"none\"");
    yk_graph_end(g);

    yk_tensor_free(x);
    yk_tensor_free(t);
    yk_tensor_free(y);
}
