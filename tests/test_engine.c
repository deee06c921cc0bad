/* Tests of lib/graph.c: shared parameter nodes, gradient accumulation,
 * diamonds, cat slices, sticky errors, backward rules, no-grad, detach.
 * Expected gradients are worked out by hand from the chain rule (with libm
 * for exp/tanh) and cross-checked by finite differences. */
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

TestSuite(engine, .init = setup, .fini = teardown);

static yk_status backward_with(yk_graph *g, yk_node *y, const yk_tensor *seed)
{
    return yk_backward_seeded(g, 1, &y, &seed);
}

Test(engine, param_node_is_memoized)
{
    yk_param *w = yk_model_add(m, "w", YK_F64, 1, (int64_t[]){3});
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *a = yk_param_node(g, w), *b = yk_param_node(g, w);
    cr_assert_eq(a, b, "two asks for one parameter must give one node");
    cr_assert_str_eq(yk_node_op_name(a), "param");
    cr_assert(yk_node_requires_grad(a));
    /* the node shares the parameter's storage */
    cr_assert_eq(yk_tensor_data(yk_value(a)), yk_tensor_data(yk_param_value(w)));
    yk_graph_end(g);
}

/* y = cat([exp(w), tanh(w), w]): the parameter is read by three ops. */
static yk_node *build_three_uses(yk_graph *g, void *ud)
{
    yk_node *parts[3] = {yk_exp(g, yk_param_node(g, ud)),
                         yk_tanh(g, yk_param_node(g, ud)),
                         yk_param_node(g, ud)};
    return yk_cat(g, 3, parts, 0);
}

Test(engine, parameter_used_three_times_gets_the_sum)
{
    double w0[2] = {0.3, -0.8};
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(2), w0);
    yk_tensor *seed = T64(ctx, SHAPE(6), VALS(1, 2, 3, 4, 5, 6));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = build_three_uses(g, w);
    cr_assert_eq(backward_with(g, y, seed), YK_OK, "%s", yk_last_error(ctx));
    double want[2];
    for (int i = 0; i < 2; i++) {
        double t = tanh(w0[i]);
        /* d/dw: exp'(w) * s_exp + tanh'(w) * s_tanh + 1 * s_id */
        want[i] = exp(w0[i]) * (1 + i) + (1 - t * t) * (3 + i) + (5 + i);
    }
    expect_close(yk_param_grad(w), want, 2, 1e-14, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
    expect_gradcheck(m, build_three_uses, w);
}

/* Diamond: a = exp(w) feeds both tanh(a) and sigmoid(a). */
static yk_node *build_diamond(yk_graph *g, void *ud)
{
    yk_node *a = yk_exp(g, yk_param_node(g, ud));
    yk_node *parts[2] = {yk_tanh(g, a), yk_sigmoid(g, a)};
    return yk_cat(g, 2, parts, 0);
}

Test(engine, diamond_adds_both_paths)
{
    double w0 = 0.4;
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(1), &w0);
    yk_tensor *seed = T64(ctx, SHAPE(2), VALS(2, -3));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_eq(backward_with(g, build_diamond(g, w), seed), YK_OK);
    double a = exp(w0), t = tanh(a), s = 1 / (1 + exp(-a));
    double want = (2 * (1 - t * t) - 3 * s * (1 - s)) * a;
    expect_close(yk_param_grad(w), &want, 1, 1e-14, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
    expect_gradcheck(m, build_diamond, w);
}

/* cat(constant, param) and cat(param, constant) along rows and columns:
 * the parameter gets exactly its own slice of the gradient. */
static void check_cat_slice(int dim, bool param_first)
{
    yk_param *p = yk_model_find(m, "p");
    if (!p)
        p = param_with(m, "p", YK_F64, SHAPE(2, 2), VALS(1, 2, 3, 4));
    yk_model_zero_grad(m);
    yk_tensor *c = T64(ctx, SHAPE(2, 2), VALS(9, 9, 9, 9));
    /* seed = 0..7 laid out over the [4, 2] or [2, 4] result */
    int64_t shape[2] = {dim == 0 ? 4 : 2, dim == 0 ? 2 : 4};
    yk_tensor *seed = yk_tensor_zeros(ctx, YK_F64, 2, shape);
    for (int i = 0; i < 8; i++)
        ((double *)yk_tensor_data(seed))[i] = i;
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *pn = yk_param_node(g, p), *cn = yk_const(g, c);
    yk_node *parts[2] = {param_first ? pn : cn, param_first ? cn : pn};
    yk_node *y = yk_cat(g, 2, parts, dim);
    cr_assert_eq(backward_with(g, y, seed), YK_OK, "%s", yk_last_error(ctx));
    double want[4];
    if (dim == 0) { /* rows 0-1 or rows 2-3 */
        for (int i = 0; i < 4; i++)
            want[i] = param_first ? i : 4 + i;
    } else { /* columns 0-1 or columns 2-3 of each row */
        int off = param_first ? 0 : 2;
        for (int r = 0; r < 2; r++)
            for (int k = 0; k < 2; k++)
                want[r * 2 + k] = r * 4 + off + k;
    }
    expect_close(yk_param_grad(p), want, 4, 0, 0);
    yk_graph_end(g);
    yk_tensor_free(c);
    yk_tensor_free(seed);
}

Test(engine, cat_constant_and_param_slices)
{
    check_cat_slice(0, true);
    check_cat_slice(0, false);
    check_cat_slice(1, true);  /* lazy column cat, dense gradient path */
    check_cat_slice(1, false);
}

Test(engine, column_cat_value_is_made_on_demand)
{
    yk_param *a = param_with(m, "a", YK_F64, SHAPE(2, 1), VALS(1, 2));
    yk_param *b = param_with(m, "b", YK_F64, SHAPE(2, 2), VALS(3, 4, 5, 6));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *parts[2] = {yk_param_node(g, a), yk_param_node(g, b)};
    yk_node *c = yk_cat(g, 2, parts, -1);
    cr_assert_not_null(c);
    int64_t *shape = (int64_t *)yk_node_shape(c);
    cr_assert(shape[0] == 2 && shape[1] == 3);
    expect_close(yk_value(c), VALS(1, 3, 4, 2, 5, 6), 6, 0, 0);
    /* an op reading it sees the same numbers */
    expect_close(yk_value(yk_exp(g, c)),
                 VALS(exp(1), exp(3), exp(4), exp(2), exp(5), exp(6)), 6,
                 1e-15, 0);
    yk_graph_end(g);
}

Test(engine, cat_errors)
{
    yk_param *a = yk_model_add(m, "a", YK_F64, 2, (int64_t[]){2, 3});
    yk_param *b = yk_model_add(m, "b", YK_F64, 2, (int64_t[]){3, 3});
    yk_param *f = yk_model_add(m, "f", YK_F32, 2, (int64_t[]){2, 3});
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *ab[2] = {yk_param_node(g, a), yk_param_node(g, b)};
    cr_assert_null(yk_cat(g, 2, ab, 1));
    expect_error(ctx, YK_ESHAPE, "cat: tensor 1 has size 3 in dim 0");
    yk_graph_end(g);

    g = yk_graph_begin(ctx);
    yk_node *af[2] = {yk_param_node(g, a), yk_param_node(g, f)};
    cr_assert_null(yk_cat(g, 2, af, 0));
    expect_error(ctx, YK_EDTYPE, "cat: tensor 1 is f32");
    yk_graph_end(g);

    g = yk_graph_begin(ctx);
    yk_node *aa[2] = {yk_param_node(g, a), yk_param_node(g, a)};
    cr_assert_null(yk_cat(g, 2, aa, 2));
    expect_error(ctx, YK_EINVAL, "cat: dim = 2");
    yk_graph_end(g);

    g = yk_graph_begin(ctx);
    cr_assert_null(yk_cat(g, 0, aa, 0));
    expect_error(ctx, YK_EINVAL, "at least one");
    yk_graph_end(g);
}

Test(engine, errors_are_sticky)
{
    yk_tensor *idx = TI(ctx, SHAPE(2), IDX(1, 2));
    yk_param *w = yk_model_add(m, "w", YK_F64, 1, (int64_t[]){2});
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *bad = yk_tanh(g, yk_const(g, idx));
    cr_assert_null(bad);
    /* later ops return NULL and keep the first message */
    cr_assert_null(yk_exp(g, bad));
    cr_assert_null(yk_exp(g, yk_param_node(g, w)));
    expect_error(ctx, YK_EDTYPE, "tanh: input is i64");
    cr_assert_eq(yk_graph_status(g), YK_EDTYPE);
    cr_assert_eq(yk_backward(g, bad), YK_EDTYPE);
    yk_graph_end(g);
    yk_tensor_free(idx);
}

Test(engine, null_input_is_an_error)
{
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_relu(g, NULL));
    expect_error(ctx, YK_EINVAL, "relu: input 0 is NULL");
    yk_graph_end(g);
    cr_assert_null(yk_relu(NULL, NULL));
    yk_graph_end(NULL);
}

Test(engine, node_from_another_graph_is_an_error)
{
    yk_param *w = yk_model_add(m, "w", YK_F64, 1, (int64_t[]){2});
    yk_graph *g1 = yk_graph_begin(ctx), *g2 = yk_graph_begin(ctx);
    yk_node *x = yk_param_node(g1, w);
    cr_assert_null(yk_exp(g2, x));
    expect_error(ctx, YK_EINVAL, "exp: input 0 belongs to another graph");
    yk_graph_end(g1);
    yk_graph_end(g2);
}

Test(engine, backward_rules)
{
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(2), VALS(0.5, 1));
    yk_tensor *c = T64(ctx, SHAPE(1), VALS(2));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_exp(g, yk_param_node(g, w));
    cr_assert_eq(yk_backward(g, y), YK_ESHAPE);
    expect_error(ctx, YK_ESHAPE, "one element");
    yk_node *k = yk_exp(g, yk_const(g, c));
    cr_assert_eq(yk_backward(g, k), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "does not depend on any parameter");
    yk_tensor *bad_seed = T64(ctx, SHAPE(3), VALS(1, 1, 1));
    yk_tensor *f32_seed = T32(ctx, SHAPE(2), VALS(1, 1));
    cr_assert_eq(backward_with(g, y, bad_seed), YK_ESHAPE);
    expect_error(ctx, YK_ESHAPE, "seed 0 has shape [3] but node 0 (exp) has shape [2]");
    cr_assert_eq(backward_with(g, y, f32_seed), YK_EDTYPE);
    expect_error(ctx, YK_EDTYPE, "seed 0 is f32");
    /* failed calls ran nothing: a good backward still works, once */
    yk_tensor *seed = T64(ctx, SHAPE(2), VALS(1, 1));
    cr_assert_eq(backward_with(g, y, seed), YK_OK);
    expect_close(yk_param_grad(w), VALS(exp(0.5), exp(1)), 2, 1e-15, 0);
    cr_assert_eq(backward_with(g, y, seed), YK_ESTATE);
    expect_error(ctx, YK_ESTATE, "already ran backward");
    expect_close(yk_param_grad(w), VALS(exp(0.5), exp(1)), 2, 1e-15, 0);
    yk_graph_end(g);
    yk_tensor_free(c);
    yk_tensor_free(seed);
    yk_tensor_free(bad_seed);
    yk_tensor_free(f32_seed);
}

Test(engine, gradients_accumulate_until_zero_grad)
{
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(1), VALS(0));
    yk_tensor *seed = T64(ctx, SHAPE(1), VALS(3));
    for (int step = 1; step <= 2; step++) {
        yk_graph *g = yk_graph_begin(ctx);
        cr_assert_eq(backward_with(g, yk_exp(g, yk_param_node(g, w)), seed),
                     YK_OK);
        yk_graph_end(g);
        expect_close(yk_param_grad(w), VALS(3.0 * step), 1, 1e-15, 0);
    }
    yk_model_zero_grad(m);
    cr_assert_eq(yk_param_grad_kind(w), YK_GRAD_NONE);
    yk_tensor_free(seed);
}

Test(engine, no_grad_and_detach)
{
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(1), VALS(0.25));
    yk_graph *g = yk_graph_begin(ctx);
    yk_graph_set_grad_enabled(g, false);
    yk_node *y = yk_exp(g, yk_param_node(g, w));
    cr_assert(!yk_node_requires_grad(y));
    cr_assert_eq(yk_backward(g, y), YK_EINVAL);
    yk_graph_end(g);

    /* y = cat(exp(w), detach(exp(w))): only the first use sends gradient */
    g = yk_graph_begin(ctx);
    yk_node *e = yk_exp(g, yk_param_node(g, w));
    yk_node *d = yk_detach(g, e);
    cr_assert(!yk_node_requires_grad(d));
    expect_close(yk_value(d), VALS(exp(0.25)), 1, 0, 0);
    yk_node *parts[2] = {e, d};
    yk_tensor *seed = T64(ctx, SHAPE(2), VALS(1, 100));
    cr_assert_eq(backward_with(g, yk_cat(g, 2, parts, 0), seed), YK_OK);
    expect_close(yk_param_grad(w), VALS(exp(0.25)), 1, 1e-15, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
}

Test(engine, frozen_parameter_gets_no_gradient)
{
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(1), VALS(0.5));
    yk_param *v = param_with(m, "v", YK_F64, SHAPE(1), VALS(0.5));
    cr_assert_eq(yk_param_set_requires_grad(v, false), YK_OK);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *parts[2] = {yk_exp(g, yk_param_node(g, w)),
                         yk_exp(g, yk_param_node(g, v))};
    yk_tensor *seed = T64(ctx, SHAPE(2), VALS(1, 1));
    cr_assert_eq(backward_with(g, yk_cat(g, 2, parts, 0), seed), YK_OK);
    cr_assert_eq(yk_param_grad_kind(v), YK_GRAD_NONE);
    cr_assert_eq(yk_param_grad_kind(w), YK_GRAD_DENSE);
    yk_graph_end(g);
    yk_tensor_free(seed);
}

Test(engine, node_grad_of_an_intermediate)
{
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(1), VALS(0.5));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *a = yk_exp(g, yk_param_node(g, w));
    yk_node *y = yk_tanh(g, a);
    cr_assert_null(yk_node_grad(a)); /* before backward */
    yk_tensor *seed = T64(ctx, SHAPE(1), VALS(2));
    cr_assert_eq(backward_with(g, y, seed), YK_OK);
    double t = tanh(exp(0.5));
    expect_close(yk_node_grad(a), VALS(2 * (1 - t * t)), 1, 1e-14, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
}

Test(engine, f32_graph)
{
    yk_param *w = param_with(m, "w", YK_F32, SHAPE(2), VALS(0.5, -1));
    yk_tensor *seed = T32(ctx, SHAPE(2), VALS(1, 1));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_sigmoid(g, yk_param_node(g, w));
    cr_assert_eq(yk_node_dtype(y), YK_F32);
    cr_assert_eq(backward_with(g, y, seed), YK_OK);
    double s0 = 1 / (1 + exp(-0.5)), s1 = 1 / (1 + exp(1.0));
    expect_close(yk_param_grad(w), VALS(s0 * (1 - s0), s1 * (1 - s1)), 2,
                 1e-6, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
}

Test(engine, arena_grows_past_one_chunk)
{
    /* 3 MB of activations: several arena chunks, one big block */
    yk_param *w = yk_model_add(m, "w", YK_F64, 1, (int64_t[]){400000});
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_param_node(g, w);
    for (int i = 0; i < 3; i++)
        y = yk_tanh(g, y);
    cr_assert_not_null(y);
    cr_assert(yk_graph_bytes(g) >= 3 * 400000 * 8);
    cr_assert_eq(yk_tensor_get(yk_value(y), 399999), 0.0);
    yk_graph_end(g);
}
