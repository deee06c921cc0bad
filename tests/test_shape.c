/* Tests of ops/shape.c (reshape, narrow): forward against hand-worked
 * values, backward against finite differences and hand-placed seeds,
 * every error path, and the registry entries against case-format.md. */
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

TestSuite(shape, .init = setup, .fini = teardown);

/* x = [[1, 2, 3], [4, 5, 6]] in dtype dt. */
static yk_tensor *x23(yk_dtype dt)
{
    return dt == YK_F32 ? T32(ctx, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6))
                        : T64(ctx, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
}

/* ------------------------------------------------------------- reshape */

Test(shape, reshape_keeps_row_major_order)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_tensor *t = x23(dt);
        yk_graph *g = yk_graph_begin(ctx);
        /* (2, 3) -> (3, -1): -1 is 6 / 3 = 2, elements in the same order */
        yk_node *y = yk_reshape(g, yk_const(g, t), 2, (int64_t[]){3, -1});
        cr_assert(y, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_node_dtype(y), dt);
        EXPECT_VALUES(yk_value(y), SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6), 0);
        /* (2, 3) -> (-1): flat */
        y = yk_reshape(g, yk_const(g, t), 1, (int64_t[]){-1});
        EXPECT_VALUES(yk_value(y), SHAPE(6), VALS(1, 2, 3, 4, 5, 6), 0);
        yk_graph_end(g);
        yk_tensor_free(t);
    }
}

Test(shape, reshape_to_and_from_0d)
{
    yk_tensor *t = T64(ctx, SHAPE(1, 1), VALS(7));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *s = yk_reshape(g, yk_const(g, t), 0, NULL);
    cr_assert(s, "%s", yk_last_error(ctx));
    cr_assert_eq(yk_node_ndim(s), 0);
    expect_close(yk_value(s), VALS(7), 1, 0, 0);
    yk_node *back = yk_reshape(g, s, 3, (int64_t[]){1, -1, 1});
    EXPECT_VALUES(yk_value(back), SHAPE(1, 1, 1), VALS(7), 0);
    yk_graph_end(g);
    yk_tensor_free(t);
}

Test(shape, reshape_empty_tensor)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){0, 3});
    yk_graph *g = yk_graph_begin(ctx);
    /* 0 elements into (-1, 5): -1 is 0 (torch gives [0, 5] too) */
    yk_node *y = yk_reshape(g, yk_const(g, t), 2, (int64_t[]){-1, 5});
    cr_assert(y, "%s", yk_last_error(ctx));
    expect_shape(yk_value(y), SHAPE(0, 5));
    /* narrow of an empty tensor along its non-empty dim */
    y = yk_narrow(g, yk_const(g, t), 1, 1, 2);
    cr_assert(y, "%s", yk_last_error(ctx));
    expect_shape(yk_value(y), SHAPE(0, 2));
    yk_graph_end(g);
    yk_tensor_free(t);
}

Test(shape, reshape_of_lazy_column_cat)
{
    /* cat([[1], [2]], [[3, 4], [5, 6]], dim 1) = [[1, 3, 4], [2, 5, 6]] */
    yk_param *a = param_with(m, "a", YK_F64, SHAPE(2, 1), VALS(1, 2));
    yk_param *b = param_with(m, "b", YK_F64, SHAPE(2, 2), VALS(3, 4, 5, 6));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *parts[2] = {yk_param_node(g, a), yk_param_node(g, b)};
    yk_node *c = yk_cat(g, 2, parts, 1);
    yk_node *y = yk_reshape(g, c, 1, (int64_t[]){6});
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(6), VALS(1, 3, 4, 2, 5, 6), 0);
    yk_graph_end(g);
}

/* -------------------------------------------------------------- narrow */

Test(shape, narrow_values)
{
    for (int k = 0; k < 2; k++) {
        yk_tensor *t = x23(k ? YK_F32 : YK_F64);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *x = yk_const(g, t);
        /* columns 1..2 */
        EXPECT_VALUES(yk_value(yk_narrow(g, x, 1, 1, 2)), SHAPE(2, 2),
                      VALS(2, 3, 5, 6), 0);
        /* negative dim and start: dim -2 is 0, start -1 is 1 */
        EXPECT_VALUES(yk_value(yk_narrow(g, x, -2, -1, 1)), SHAPE(1, 3),
                      VALS(4, 5, 6), 0);
        /* start -3 is column 0 */
        EXPECT_VALUES(yk_value(yk_narrow(g, x, -1, -3, 1)), SHAPE(2, 1),
                      VALS(1, 4), 0);
        /* length 0, also at the very end (start == size) */
        expect_shape(yk_value(yk_narrow(g, x, 1, 3, 0)), SHAPE(2, 0));
        cr_assert_eq(yk_graph_status(g), YK_OK, "%s", yk_last_error(ctx));
        yk_graph_end(g);
        yk_tensor_free(t);
    }
}

Test(shape, narrow_of_lazy_column_cat)
{
    /* cat = [[1, 3, 4], [2, 5, 6]]; columns 1..2 are b itself */
    yk_param *a = param_with(m, "a", YK_F64, SHAPE(2, 1), VALS(1, 2));
    yk_param *b = param_with(m, "b", YK_F64, SHAPE(2, 2), VALS(3, 4, 5, 6));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *parts[2] = {yk_param_node(g, a), yk_param_node(g, b)};
    yk_node *y = yk_narrow(g, yk_cat(g, 2, parts, 1), 1, 1, 2);
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2, 2), VALS(3, 4, 5, 6), 0);
    /* the seed goes back to b only: a's column is not in the slice */
    yk_tensor *seed = T64(ctx, SHAPE(2, 2), VALS(1, 2, 3, 4));
    const yk_tensor *sp = seed;
    cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK, "%s",
                 yk_last_error(ctx));
    expect_close(yk_param_grad(b), VALS(1, 2, 3, 4), 4, 0, 0);
    expect_close(yk_param_grad(a), VALS(0, 0), 2, 0, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
}

Test(shape, narrow_backward_places_the_seed)
{
    /* f32 and f64: the seed of narrow(x, 1, 1, 2) lands in columns 1..2,
     * column 0 gets nothing; reshape passes its seed through in order. */
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        char name[8] = "w0";
        name[1] = (char)('0' + k);
        yk_param *w = param_with(m, name, dt, SHAPE(2, 3),
                                 VALS(1, 2, 3, 4, 5, 6));
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *x = yk_param_node(g, w);
        yk_node *y = yk_reshape(g, yk_narrow(g, x, 1, 1, 2), 1,
                                (int64_t[]){4});
        yk_tensor *seed = dt == YK_F32 ? T32(ctx, SHAPE(4), VALS(1, 2, 3, 4))
                                       : T64(ctx, SHAPE(4), VALS(1, 2, 3, 4));
        const yk_tensor *sp = seed;
        cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK, "%s",
                     yk_last_error(ctx));
        expect_close(yk_param_grad(w), VALS(0, 1, 2, 0, 3, 4), 6, 0, 0);
        yk_graph_end(g);
        yk_tensor_free(seed);
    }
}

/* --------------------------------------------------------- gradcheck */

static yk_node *build_mixed(yk_graph *g, void *ud)
{
    /* w (2, 3, 2) -> (3, 4) -> columns 1..3 -> rows 1..2, and the whole
     * flattened: two uses of w whose gradients add. */
    yk_node *w = yk_param_node(g, ud);
    yk_node *r = yk_reshape(g, w, 2, (int64_t[]){3, -1});
    yk_node *n = yk_narrow(g, yk_narrow(g, r, -1, 1, 3), 0, 1, 2);
    yk_node *parts[2] = {yk_reshape(g, n, 1, (int64_t[]){-1}),
                         yk_reshape(g, w, 1, (int64_t[]){12})};
    return yk_cat(g, 2, parts, 0);
}

Test(shape, backward_matches_finite_differences)
{
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(2, 3, 2),
                             VALS(0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8,
                                  -0.9, 1.0, 1.1, -1.2));
    expect_gradcheck(m, build_mixed, w);
}

static yk_node *build_through_cat(yk_graph *g, void *ud)
{
    /* narrow and reshape of a lazy column cat of two parameters */
    yk_param **p = ud;
    yk_node *parts[2] = {yk_param_node(g, p[0]), yk_param_node(g, p[1])};
    yk_node *c = yk_cat(g, 2, parts, 1);
    yk_node *n = yk_narrow(g, c, 1, 1, 2);
    return yk_reshape(g, n, 2, (int64_t[]){2, -1});
}

Test(shape, backward_through_lazy_cat_matches_finite_differences)
{
    yk_param *p[2] = {
        param_with(m, "a", YK_F64, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6)),
        param_with(m, "b", YK_F64, SHAPE(3, 1), VALS(-1, -2, -3))};
    expect_gradcheck(m, build_through_cat, p);
}

/* ------------------------------------------------------------- errors */

/* Runs reshape of a (2, 3) constant to shape and expects an error. */
static void expect_reshape_error(int ndim, const int64_t *shape,
                                 yk_status want, const char *part)
{
    yk_tensor *t = x23(YK_F64);
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_reshape(g, yk_const(g, t), ndim, shape));
    expect_error(ctx, want, part);
    cr_assert_eq(yk_graph_status(g), want);
    yk_graph_end(g);
    yk_tensor_free(t);
}

Test(shape, reshape_errors)
{
    expect_reshape_error(1, (int64_t[]){4}, YK_ESHAPE,
                         "shape [4] does not fit input of shape [2, 3]");
    expect_reshape_error(2, (int64_t[]){4, -1}, YK_ESHAPE,
                         "shape [4, -1] does not fit input of shape [2, 3]");
    expect_reshape_error(2, (int64_t[]){0, -1}, YK_ESHAPE, "[0, -1]");
    expect_reshape_error(3, (int64_t[]){-1, 3, -1}, YK_EINVAL,
                         "more than one -1 (entries 0 and 2)");
    expect_reshape_error(2, (int64_t[]){-2, -3}, YK_EINVAL,
                         "shape[0] = -2");
    expect_reshape_error(9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 6},
                         YK_EINVAL, "ndim = 9");
    expect_reshape_error(-1, NULL, YK_EINVAL, "ndim = -1");
    expect_reshape_error(2, NULL, YK_EINVAL, "shape is NULL");
    /* a product that would overflow int64 is a mismatch, not a wrap */
    expect_reshape_error(3, (int64_t[]){INT64_C(1) << 40, INT64_C(1) << 40, 8},
                         YK_ESHAPE, "1099511627776");
}

Test(shape, reshape_of_empty_with_minus_one_and_zero_is_ambiguous)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){0, 3});
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_reshape(g, yk_const(g, t), 2, (int64_t[]){0, -1}));
    expect_error(ctx, YK_EINVAL, "into [0, -1]");
    yk_graph_end(g);
    yk_tensor_free(t);
}

static void expect_narrow_error(int dim, int64_t start, int64_t length,
                                const char *part)
{
    yk_tensor *t = x23(YK_F64);
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_narrow(g, yk_const(g, t), dim, start, length));
    expect_error(ctx, YK_EINVAL, part);
    yk_graph_end(g);
    yk_tensor_free(t);
}

Test(shape, narrow_errors)
{
    expect_narrow_error(2, 0, 1, "dim = 2 is out of range for a 2-d input");
    expect_narrow_error(-3, 0, 1, "dim = -3");
    expect_narrow_error(1, 4, 0, "start = 4 is out of range for dim 1 of "
                                 "size 3");
    expect_narrow_error(1, -4, 1, "start = -4");
    expect_narrow_error(1, 2, 2, "start = 2 + length = 2 exceeds size 3 of "
                                 "dim 1");
    expect_narrow_error(0, 0, -1, "length = -1");
    expect_narrow_error(0, 1, INT64_MAX, "length = 9223372036854775807");
}

Test(shape, narrow_of_0d_is_invalid)
{
    yk_tensor *t = T64(ctx, SHAPE(1), VALS(1));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *s = yk_reshape(g, yk_const(g, t), 0, NULL);
    cr_assert_null(yk_narrow(g, s, 0, 0, 1));
    expect_error(ctx, YK_EINVAL, "narrow: input is 0-d");
    yk_graph_end(g);
    yk_tensor_free(t);
}

Test(shape, errors_are_sticky)
{
    yk_tensor *t = x23(YK_F64);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *bad = yk_narrow(g, yk_const(g, t), 5, 0, 1);
    cr_assert_null(yk_reshape(g, bad, 1, (int64_t[]){-1}));
    expect_error(ctx, YK_EINVAL, "narrow: dim = 5"); /* the first error */
    yk_graph_end(g);
    yk_tensor_free(t);
}

/* ----------------------------------------------------------- registry */

Test(shape, registry_entries_follow_the_case_format)
{
    const yk_op_def *r = yk_op_find("reshape");
    cr_assert(r);
    cr_assert_eq(r->n_inputs, 1);
    cr_assert_str_eq(r->input_names[0], "input");
    cr_assert_eq(r->n_attrs, 1);
    cr_assert_str_eq(r->attrs[0].name, "shape");
    cr_assert_eq(r->attrs[0].type, YK_ATTR_INT_LIST);
    cr_assert(r->attrs[0].required);

    const yk_op_def *n = yk_op_find("narrow");
    cr_assert(n);
    cr_assert_eq(n->n_inputs, 1);
    cr_assert_str_eq(n->input_names[0], "input");
    cr_assert_eq(n->n_attrs, 3);
    const char *names[3] = {"dim", "start", "length"};
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(n->attrs[i].name, names[i]);
        cr_assert_eq(n->attrs[i].type, YK_ATTR_INT);
        cr_assert(n->attrs[i].required);
    }
}

Test(shape, registry_build_calls_the_ops)
{
    yk_tensor *t = x23(YK_F64);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *x = yk_const(g, t);
    yk_attr_value shape = {.n = 2, .list = {-1, 2}};
    yk_node *y = yk_op_find("reshape")->build(g, &x, 1, &shape);
    EXPECT_VALUES(yk_value(y), SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6), 0);
    yk_attr_value nar[3] = {{.i = 1}, {.i = 2}, {.i = 1}};
    y = yk_op_find("narrow")->build(g, &x, 1, nar);
    EXPECT_VALUES(yk_value(y), SHAPE(2, 1), VALS(3, 6), 0);
    /* a dim that does not fit an int is rejected, not truncated */
    yk_attr_value huge[3] = {{.i = INT64_C(1) << 32}, {.i = 0}, {.i = 1}};
    cr_assert_null(yk_op_find("narrow")->build(g, &x, 1, huge));
    expect_error(ctx, YK_EINVAL, "dim = 4294967296");
    yk_graph_end(g);
    yk_tensor_free(t);
}
