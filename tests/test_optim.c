/*
 * Tests of lib/optim.c. Expected numbers come from PyTorch 1.13's
 * torch.optim through tests/ref_optim.h (written by tools/ref_optim.py,
 * which says how each case is made), or are worked by hand where PyTorch
 * has no counterpart (row-wise Adagrad, row freezing's bookkeeping) -- each
 * such test says how.
 *
 * Gradients reach the model the way training makes them: a dense one by
 * seeding backward at the parameter's node, a row-sparse one through
 * yk_embedding(..., sparse = true) seeded with one gradient row per index.
 */
#include "check.h"
#include <criterion/parameterized.h>
#include "ref_optim.h"

#include <stdlib.h>

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

TestSuite(optim, .init = setup, .fini = teardown);

/* ------------------------------------------------------------ helpers */

/* A tensor of p's dtype holding n values. */
static yk_tensor *tensor_like(yk_dtype dt, int ndim, const int64_t *shape,
                              const double *v)
{
    yk_tensor *t = yk_tensor_zeros(ctx, dt, ndim, shape);
    cr_assert(t, "%s", yk_last_error(ctx));
    for (int64_t i = 0; i < yk_tensor_numel(t); i++) {
        if (dt == YK_F32)
            ((float *)yk_tensor_data(t))[i] = (float)v[i];
        else
            ((double *)yk_tensor_data(t))[i] = v[i];
    }
    return t;
}

/* Adds the dense gradient g (p's shape) into the model. */
static void give_dense(yk_param *p, const double *g)
{
    yk_tensor *v = yk_param_value(p);
    yk_tensor *seed = tensor_like(yk_tensor_dtype(v), yk_tensor_ndim(v),
                                  yk_tensor_shape(v), g);
    yk_graph *gr = yk_graph_begin(ctx);
    yk_node *x = yk_param_node(gr, p);
    const yk_tensor *sp = seed;
    cr_assert_eq(yk_backward_seeded(gr, 1, &x, &sp), YK_OK, "%s",
                 yk_last_error(ctx));
    yk_graph_end(gr);
    yk_tensor_free(seed);
}

/* Adds the gradient of a lookup: rows idx[0..n) (may repeat; n may be 0)
 * of the 2-D parameter p get seed rows (n x cols), row-sparse or dense. */
static void give_lookup(yk_param *p, int64_t n, const int64_t *idx,
                        const double *seed, bool sparse)
{
    yk_tensor *v = yk_param_value(p);
    int64_t cols = yk_tensor_dim(v, 1);
    yk_tensor *it = yk_tensor_from(ctx, YK_I64, 1, &n, idx);
    yk_tensor *st = tensor_like(yk_tensor_dtype(v), 2, (int64_t[]){n, cols},
                                seed);
    yk_graph *gr = yk_graph_begin(ctx);
    yk_node *e = yk_embedding(gr, yk_const(gr, it), yk_param_node(gr, p),
                              YK_NO_PADDING, false, sparse);
    cr_assert(e, "%s", yk_last_error(ctx));
    const yk_tensor *sp = st;
    cr_assert_eq(yk_backward_seeded(gr, 1, &e, &sp), YK_OK, "%s",
                 yk_last_error(ctx));
    cr_assert_eq(yk_param_grad_kind(p), sparse ? YK_GRAD_ROWS : YK_GRAD_DENSE);
    yk_graph_end(gr);
    yk_tensor_free(it);
    yk_tensor_free(st);
}

/* Adds a row-sparse gradient (see give_lookup). */
static void give_rows(yk_param *p, int64_t n, const int64_t *idx,
                      const double *seed)
{
    give_lookup(p, n, idx, seed, true);
}

static void expect_near(const char *what, int step, const yk_tensor *t,
                        const double *want, bool f32)
{
    double rtol = f32 ? 1e-5 : 1e-10, atol = f32 ? 1e-6 : 1e-12;
    cr_assert(t, "%s: tensor is NULL", what);
    for (int64_t i = 0; i < yk_tensor_numel(t); i++) {
        double a = yk_tensor_get(t, i);
        cr_assert(fabs(a - want[i]) <= atol + rtol * fabs(want[i]),
                  "%s, step %d, element %lld: got %.17g, want %.17g", what,
                  step, (long long)i, a, want[i]);
    }
}

static yk_optim *optim_for(const ref_case *c)
{
    yk_optim_kind kind;
    cr_assert(yk_optim_kind_from_name(c->kind, &kind), "kind %s", c->kind);
    yk_optim_opts o = yk_optim_defaults(kind);
    for (int i = 0; i < c->n_opts; i++)
        cr_assert_eq(yk_optim_opts_set(ctx, kind, &o, c->opts[i].name,
                                       c->opts[i].value), YK_OK, "%s: %s",
                     c->name, yk_last_error(ctx));
    yk_optim *opt = yk_optim_new(ctx, kind, &o);
    cr_assert(opt, "%s: %s", c->name, yk_last_error(ctx));
    return opt;
}

/* Runs a reference case: every step's parameter, then step count and
 * state against PyTorch. */
static void run_case(const ref_case *c)
{
    yk_dtype dt = c->f32 ? YK_F32 : YK_F64;
    yk_param *p = param_with(m, "p", dt, SHAPE(c->rows, c->cols), c->init);
    yk_optim *opt = optim_for(c);
    cr_assert_eq(yk_optim_add(opt, p), YK_OK);
    cr_assert_eq(yk_optim_freeze_rows(opt, p, c->n_frozen, c->frozen), YK_OK);
    for (int k = 0; k < c->n_steps; k++) {
        const ref_step *s = &c->steps[k];
        yk_model_zero_grad(m);
        if (s->grad == REF_DENSE)
            give_dense(p, s->dense);
        else if (s->grad == REF_ROWS)
            give_rows(p, s->n_idx, s->idx, s->seed);
        cr_assert_eq(yk_optim_step(opt), YK_OK, "%s step %d: %s", c->name,
                     k + 1, yk_last_error(ctx));
        expect_near(c->name, k + 1, yk_param_value(p), s->after, c->f32);
    }
    cr_assert_eq(yk_optim_step_count(opt, p), c->step_count,
                 "%s: step count %lld, want %lld", c->name,
                 (long long)yk_optim_step_count(opt, p),
                 (long long)c->step_count);
    cr_assert_eq(yk_optim_state_count(opt), c->n_states, "%s", c->name);
    for (int i = 0; i < c->n_states; i++) {
        cr_assert_str_eq(yk_optim_state_name(opt, i), c->states[i].name);
        yk_tensor *st;
        cr_assert_eq(yk_optim_state(opt, p, c->states[i].name, &st), YK_OK);
        char what[160];
        snprintf(what, sizeof what, "%s state %s", c->name,
                 c->states[i].name);
        expect_near(what, c->n_steps, st, c->states[i].data, c->f32);
    }
    yk_optim_free(opt);
}

/* One test per reference case (each in its own process). */
ParameterizedTestParameters(optim, matches_torch)
{
    static int idx[N_REF_CASES];
    for (int i = 0; i < N_REF_CASES; i++)
        idx[i] = i;
    return cr_make_param_array(int, idx, N_REF_CASES);
}

ParameterizedTest(int *i, optim, matches_torch)
{
    run_case(&ref_cases[*i]);
}

static const ref_case *find_case(const char *name)
{
    for (int i = 0; i < N_REF_CASES; i++)
        if (strcmp(ref_cases[i].name, name) == 0)
            return &ref_cases[i];
    cr_assert_fail("no reference case %s", name);
    return NULL;
}

/* ------------------------------------------------ options and defaults */

Test(optim, defaults_are_torch_optims)
{
    /* torch.optim's defaults, as case-format.md lists them. */
    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_SGD);
    cr_assert(isnan(o.lr), "sgd's lr has no default");
    cr_assert(o.momentum == 0 && o.dampening == 0 && !o.nesterov &&
              o.weight_decay == 0);
    o = yk_optim_defaults(YK_OPTIM_ADAM);
    cr_assert(o.lr == 1e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 &&
              o.eps == 1e-8 && o.weight_decay == 0 && !o.amsgrad);
    o = yk_optim_defaults(YK_OPTIM_ADAMW);
    cr_assert(o.lr == 1e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 &&
              o.eps == 1e-8 && o.weight_decay == 0.01 && !o.amsgrad);
    o = yk_optim_defaults(YK_OPTIM_ADAGRAD);
    cr_assert(o.lr == 1e-2 && o.lr_decay == 0 && o.weight_decay == 0 &&
              o.initial_accumulator_value == 0 && o.eps == 1e-10);
    o = yk_optim_defaults(YK_OPTIM_SPARSE_ADAM);
    cr_assert(o.lr == 1e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 &&
              o.eps == 1e-8);
    o = yk_optim_defaults(YK_OPTIM_ROWWISE_ADAGRAD);
    cr_assert(o.lr == 1e-2 && o.eps == 1e-10);
}

Test(optim, kind_names_round_trip)
{
    const char *names[] = {"sgd", "adam", "adamw", "adagrad", "sparse_adam",
                           "rowwise_adagrad"};
    for (int k = 0; k < 6; k++) {
        yk_optim_kind kind;
        cr_assert(yk_optim_kind_from_name(names[k], &kind));
        cr_assert_eq((int)kind, k);
        cr_assert_str_eq(yk_optim_kind_name(kind), names[k]);
    }
    yk_optim_kind kind;
    cr_assert_not(yk_optim_kind_from_name("lbfgs", &kind));
    cr_assert_not(yk_optim_kind_from_name(NULL, &kind));
    cr_assert_str_eq(yk_optim_kind_name((yk_optim_kind)42), "?");
}

/* yk_optim_new(kind, o) fails with EINVAL and a message containing part. */
static void expect_bad_opts(yk_optim_kind kind, yk_optim_opts o,
                            const char *part)
{
    yk_clear_error(ctx);
    cr_assert_null(yk_optim_new(ctx, kind, &o));
    expect_error(ctx, YK_EINVAL, part);
}

Test(optim, rejects_invalid_options)
{
    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_SGD);
    expect_bad_opts(YK_OPTIM_SGD, o, "sgd: lr is required");
    o.lr = -0.1;
    expect_bad_opts(YK_OPTIM_SGD, o, "sgd: lr = -0.1");
    o.lr = 0.1;
    o.nesterov = true;
    expect_bad_opts(YK_OPTIM_SGD, o, "nesterov needs momentum > 0");
    o.momentum = 0.9;
    o.dampening = 0.1;
    expect_bad_opts(YK_OPTIM_SGD, o, "dampening = 0.1");
    o = yk_optim_defaults(YK_OPTIM_SGD);
    o.lr = 0.1;
    o.momentum = -0.5;
    expect_bad_opts(YK_OPTIM_SGD, o, "sgd: momentum = -0.5");
    o.momentum = 0;
    o.weight_decay = -0.01;
    expect_bad_opts(YK_OPTIM_SGD, o, "sgd: weight_decay = -0.01");

    o = yk_optim_defaults(YK_OPTIM_ADAM);
    o.beta1 = 1.0;
    expect_bad_opts(YK_OPTIM_ADAM, o, "adam: beta1 (betas[0]) = 1 is not in");
    o.beta1 = 0.9;
    o.beta2 = -0.1;
    expect_bad_opts(YK_OPTIM_ADAM, o, "adam: beta2 (betas[1]) = -0.1");
    o.beta2 = 0.999;
    o.eps = -1e-8;
    expect_bad_opts(YK_OPTIM_ADAM, o, "adam: eps = -1e-08");
    o.eps = NAN;
    expect_bad_opts(YK_OPTIM_ADAM, o, "adam: eps = nan");
    o.eps = 1e-8;
    o.momentum = 0.9;
    expect_bad_opts(YK_OPTIM_ADAM, o, "adam: momentum = 0.9 is not an option");

    o = yk_optim_defaults(YK_OPTIM_ADAMW);
    o.weight_decay = -1;
    expect_bad_opts(YK_OPTIM_ADAMW, o, "adamw: weight_decay = -1");
    o = yk_optim_defaults(YK_OPTIM_ADAGRAD);
    o.lr_decay = -0.5;
    expect_bad_opts(YK_OPTIM_ADAGRAD, o, "adagrad: lr_decay = -0.5");
    o.lr_decay = 0;
    o.initial_accumulator_value = -2;
    expect_bad_opts(YK_OPTIM_ADAGRAD, o, "initial_accumulator_value = -2");
    o = yk_optim_defaults(YK_OPTIM_SPARSE_ADAM);
    o.amsgrad = true;
    expect_bad_opts(YK_OPTIM_SPARSE_ADAM, o, "sparse_adam: amsgrad = 1 is "
                    "not an option");
    o = yk_optim_defaults(YK_OPTIM_ROWWISE_ADAGRAD);
    o.weight_decay = 0.1;
    expect_bad_opts(YK_OPTIM_ROWWISE_ADAGRAD, o, "rowwise_adagrad: "
                    "weight_decay = 0.1 is not an option");

    cr_assert_null(yk_optim_new(ctx, (yk_optim_kind)9, NULL));
    expect_error(ctx, YK_EINVAL, "kind 9");
}

Test(optim, opts_set_by_torch_names)
{
    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_ADAM);
    cr_assert_eq(yk_optim_opts_set(ctx, YK_OPTIM_ADAM, &o, "lr", 0.5), YK_OK);
    cr_assert_eq(yk_optim_opts_set(ctx, YK_OPTIM_ADAM, &o, "beta2", 0.9),
                 YK_OK);
    cr_assert_eq(yk_optim_opts_set(ctx, YK_OPTIM_ADAM, &o, "amsgrad", 1),
                 YK_OK);
    cr_assert(o.lr == 0.5 && o.beta2 == 0.9 && o.amsgrad);
    cr_assert_eq(yk_optim_opts_set(ctx, YK_OPTIM_ADAM, &o, "momentum", 0.9),
                 YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "adam: unknown option \"momentum\"");
    cr_assert_eq(yk_optim_opts_set(ctx, YK_OPTIM_SPARSE_ADAM, &o,
                                   "weight_decay", 0.1), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "sparse_adam: unknown option "
                 "\"weight_decay\"");
}

Test(optim, null_options_take_the_defaults)
{
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAMW, NULL);
    cr_assert(o, "%s", yk_last_error(ctx));
    cr_assert(yk_optim_options(o).weight_decay == 0.01);
    cr_assert(yk_optim_lr(o) == 1e-3);
    cr_assert_eq(yk_optim_kind_of(o), YK_OPTIM_ADAMW);
    yk_optim_free(o);
    yk_optim_free(NULL);
    /* sgd has no default lr, so no default options either */
    cr_assert_null(yk_optim_new(ctx, YK_OPTIM_SGD, NULL));
    expect_error(ctx, YK_EINVAL, "lr is required");
}

/* ------------------------------------------------------ the parameter set */

Test(optim, add_twice_or_from_another_context_is_invalid)
{
    yk_param *a = yk_model_add(m, "a", YK_F64, 1, (int64_t[]){3});
    yk_param *b = yk_model_add(m, "b", YK_F64, 1, (int64_t[]){3});
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAM, NULL);
    cr_assert_eq(yk_optim_add(o, a), YK_OK);
    cr_assert_eq(yk_optim_add(o, a), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "parameter \"a\" is already in");
    cr_assert_eq(yk_optim_add(o, NULL), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "yk_optim_add: parameter is NULL");

    /* all or nothing: a is in already, so b is not added either */
    cr_assert_eq(yk_optim_add_model(o, m), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "yk_optim_add_model: parameter \"a\"");
    cr_assert_eq(yk_optim_count(o), 1);
    cr_assert_not(yk_optim_has(o, b));

    yk_ctx *ctx2 = yk_ctx_new();
    yk_model *m2 = yk_model_new(ctx2);
    yk_param *c = yk_model_add(m2, "c", YK_F64, 1, (int64_t[]){3});
    cr_assert_eq(yk_optim_add(o, c), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "parameter \"c\" belongs to a model of "
                 "another context");
    cr_assert_eq(yk_optim_add_model(o, m2), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "another context");
    yk_optim_free(o);
    yk_model_free(m2);
    yk_ctx_free(ctx2);
}

Test(optim, add_model_adds_every_parameter_in_order)
{
    yk_model_add(m, "a", YK_F64, 1, (int64_t[]){3});
    yk_model_add(m, "b", YK_F32, 2, (int64_t[]){2, 2});
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAGRAD, NULL);
    cr_assert_eq(yk_optim_add_model(o, m), YK_OK);
    cr_assert_eq(yk_optim_count(o), 2);
    cr_assert_str_eq(yk_param_name(yk_optim_param_at(o, 0)), "a");
    cr_assert_str_eq(yk_param_name(yk_optim_param_at(o, 1)), "b");
    cr_assert_null(yk_optim_param_at(o, 2));
    yk_optim_free(o);
}

/* ------------------------------------------------------------ skipping */

Test(optim, parameter_without_gradient_is_skipped)
{
    /* Two parameters, only a gets gradients: b keeps its value, has no
     * state and its step count stays 0, even with weight decay (torch
     * skips a parameter whose .grad is None). */
    yk_param *a = param_with(m, "a", YK_F64, SHAPE(2), VALS(1, 2));
    yk_param *b = param_with(m, "b", YK_F64, SHAPE(2), VALS(3, 4));
    yk_optim_opts op = yk_optim_defaults(YK_OPTIM_ADAMW);
    op.weight_decay = 0.5;
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAMW, &op);
    yk_optim_add_model(o, m);
    for (int k = 0; k < 3; k++) {
        yk_model_zero_grad(m);
        give_dense(a, VALS(0.5, -0.5));
        cr_assert_eq(yk_optim_step(o), YK_OK);
    }
    cr_assert_eq(yk_optim_step_count(o, a), 3);
    cr_assert_eq(yk_optim_step_count(o, b), 0);
    expect_close(yk_param_value(b), VALS(3, 4), 2, 0, 0);
    yk_tensor *st;
    cr_assert_eq(yk_optim_state(o, b, "exp_avg", &st), YK_OK);
    cr_assert_null(st);
    yk_optim_free(o);
}

Test(optim, frozen_parameter_is_skipped_and_its_state_freed)
{
    yk_param *a = param_with(m, "a", YK_F64, SHAPE(2), VALS(1, 2));
    yk_param *b = param_with(m, "b", YK_F64, SHAPE(2), VALS(3, 4));
    cr_assert_eq(yk_param_set_requires_grad(b, false), YK_OK);
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAM, NULL);
    yk_optim_add_model(o, m);
    give_dense(a, VALS(1, 1));
    cr_assert_eq(yk_optim_step(o), YK_OK);
    yk_tensor *st;
    cr_assert_eq(yk_optim_state(o, b, "exp_avg", &st), YK_OK);
    cr_assert_null(st, "a frozen parameter gets no state");
    expect_close(yk_param_value(b), VALS(3, 4), 2, 0, 0);

    /* freezing a trained one frees its state and restarts its count */
    cr_assert_eq(yk_optim_state(o, a, "exp_avg", &st), YK_OK);
    cr_assert_not_null(st);
    cr_assert_eq(yk_param_set_requires_grad(a, false), YK_OK);
    double before[2] = {yk_tensor_get(yk_param_value(a), 0),
                        yk_tensor_get(yk_param_value(a), 1)};
    cr_assert_eq(yk_optim_step(o), YK_OK);
    cr_assert_eq(yk_optim_state(o, a, "exp_avg", &st), YK_OK);
    cr_assert_null(st);
    cr_assert_eq(yk_optim_step_count(o, a), 0);
    expect_close(yk_param_value(a), before, 2, 0, 0);
    yk_optim_free(o);
}

/* ------------------------------------------------------- sparse paths */

Test(optim, sparse_adam_needs_a_row_sparse_gradient)
{
    yk_param *a = param_with(m, "a", YK_F64, SHAPE(2, 2), VALS(1, 2, 3, 4));
    yk_param *w = param_with(m, "emb", YK_F64, SHAPE(3, 2),
                             VALS(1, 2, 3, 4, 5, 6));
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_SPARSE_ADAM, NULL);
    yk_optim_add(o, w);
    yk_optim_add(o, a);
    give_rows(w, 1, IDX(1), VALS(1, 1));
    give_dense(a, VALS(1, 1, 1, 1));
    cr_assert_eq(yk_optim_step(o), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "sparse_adam: parameter \"a\" has a dense "
                 "gradient");
    /* nothing moved, not even w, listed before a */
    expect_close(yk_param_value(w), VALS(1, 2, 3, 4, 5, 6), 6, 0, 0);
    cr_assert_eq(yk_optim_step_count(o, w), 0);
    yk_optim_free(o);
}

Test(optim, sparse_adam_is_lazy)
{
    /* Rows not looked up in a step keep their values and moments bit for
     * bit (PyTorch's SparseAdam), while t counts the parameter's steps. */
    const ref_case *c = find_case("rows_sparse_adam_f64");
    yk_param *p = param_with(m, "p", YK_F64, SHAPE(8, 3), c->init);
    yk_optim *o = optim_for(c);
    yk_optim_add(o, p);
    give_rows(p, 2, IDX(1, 4), VALS(1, 2, 3, 4, 5, 6));
    cr_assert_eq(yk_optim_step(o), YK_OK);
    yk_tensor *m1, *v1;
    yk_optim_state(o, p, "exp_avg", &m1);
    yk_optim_state(o, p, "exp_avg_sq", &v1);
    yk_tensor *p0 = yk_tensor_clone(yk_param_value(p));
    yk_tensor *m0 = yk_tensor_clone(m1), *v0 = yk_tensor_clone(v1);
    yk_model_zero_grad(m);
    give_rows(p, 1, IDX(4), VALS(-1, 0, 1));
    cr_assert_eq(yk_optim_step(o), YK_OK);
    cr_assert_eq(yk_optim_step_count(o, p), 2);
    for (int64_t r = 0; r < 8; r++) {
        for (int64_t j = 0; j < 3; j++) {
            int64_t i = r * 3 + j;
            bool same = yk_tensor_get(yk_param_value(p), i) ==
                            yk_tensor_get(p0, i) &&
                        yk_tensor_get(m1, i) == yk_tensor_get(m0, i) &&
                        yk_tensor_get(v1, i) == yk_tensor_get(v0, i);
            cr_assert_eq(same, r != 4, "row %lld element %lld", (long long)r,
                         (long long)j);
        }
    }
    yk_tensor_free(p0);
    yk_tensor_free(m0);
    yk_tensor_free(v0);
    yk_optim_free(o);
}

Test(optim, step_with_zero_rows_advances_t_and_changes_nothing)
{
    yk_param *p = param_with(m, "p", YK_F32, SHAPE(3, 2),
                             VALS(1, 2, 3, 4, 5, 6));
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_SPARSE_ADAM, NULL);
    yk_optim_add(o, p);
    give_rows(p, 0, NULL, NULL);
    cr_assert_eq(yk_optim_step(o), YK_OK, "%s", yk_last_error(ctx));
    cr_assert_eq(yk_optim_step_count(o, p), 1);
    expect_close(yk_param_value(p), VALS(1, 2, 3, 4, 5, 6), 6, 0, 0);
    yk_optim_free(o);
}

/* Runs the steps of c twice, once as given (row-sparse) and once through
 * the dense route, and asserts the same numbers after every step. */
static void expect_sparse_equals_dense(const char *name)
{
    const ref_case *c = find_case(name);
    yk_dtype dt = c->f32 ? YK_F32 : YK_F64;
    yk_param *ps = param_with(m, "sparse", dt, SHAPE(c->rows, c->cols),
                              c->init);
    yk_param *pd = param_with(m, "dense", dt, SHAPE(c->rows, c->cols),
                              c->init);
    yk_optim *os = optim_for(c), *od = optim_for(c);
    yk_optim_add(os, ps);
    yk_optim_add(od, pd);
    yk_tensor *g = yk_tensor_zeros(ctx, dt, 2, (int64_t[]){c->rows, c->cols});
    for (int k = 0; k < c->n_steps; k++) {
        const ref_step *s = &c->steps[k];
        yk_model_zero_grad(m);
        if (s->grad == REF_ROWS) {
            give_rows(ps, s->n_idx, s->idx, s->seed);
            cr_assert_eq(yk_param_grad_to_dense(ps, g), YK_OK);
            double *gd = malloc((size_t)(c->rows * c->cols) * sizeof *gd);
            for (int64_t i = 0; i < c->rows * c->cols; i++)
                gd[i] = yk_tensor_get(g, i);
            give_dense(pd, gd);
            free(gd);
        }
        cr_assert_eq(yk_optim_step(os), YK_OK);
        cr_assert_eq(yk_optim_step(od), YK_OK);
        for (int64_t i = 0; i < c->rows * c->cols; i++)
            cr_assert(yk_tensor_get(yk_param_value(ps), i) ==
                          yk_tensor_get(yk_param_value(pd), i),
                      "%s step %d element %lld: sparse %.17g, dense %.17g",
                      name, k + 1, (long long)i,
                      yk_tensor_get(yk_param_value(ps), i),
                      yk_tensor_get(yk_param_value(pd), i));
    }
    cr_assert_eq(yk_optim_step_count(os, ps), yk_optim_step_count(od, pd));
    yk_tensor_free(g);
    yk_optim_free(os);
    yk_optim_free(od);
}

Test(optim, row_sparse_gives_the_dense_numbers)
{
    /* case-format.md: sgd, adagrad, adam and adamw on a row-sparse
     * gradient give exactly the dense results (missing rows are zeros) --
     * the same bits here, since both run the same kernel on the same
     * gradient rows. Lazy (sgd, adagrad) and exact paths alike. */
    const char *names[] = {
        "rows_sgd_f64", "rows_adagrad_f64", "rows_adam_f64",
        "rows_adam_amsgrad_wd_f32", "rows_adamw_f64", "rows_adamw_f32",
        "rows_sgd_momentum_wd_f64", "rows_sgd_nesterov_f32",
        "rows_adagrad_wd_f64", "rows_sgd_f32", "rows_adagrad_f32",
        "rows_sgd_wd_f64"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        yk_model_free(m);
        m = yk_model_new(ctx);
        expect_sparse_equals_dense(names[i]);
    }
}

/* A dense gradient made by lookups (sparse = false) is visited only at
 * the rows looked up when a zero row changes nothing (sgd without momentum
 * or weight decay, adagrad without weight decay, rowwise_adagrad). Checked
 * against the full dense walk, which the PyTorch cases above check: A gets
 * its gradient from a dense lookup, B the same numbers seeded densely at
 * its node (every row written), so A's step takes the short path and B's
 * the full one; both must end with the same bits. Rows repeat within a
 * step, and one row is frozen. */
Test(optim, dense_lookup_gradient_visits_only_its_rows)
{
    /* Step 2 writes 20 distinct rows, past a quarter of the 64: the whole
     * gradient then counts as written, and the steps after must find the
     * row list empty again. */
    const char *kinds[] = {"sgd", "adagrad", "rowwise_adagrad"};
    enum { STEPS = 4, MAX_N = 20 };
    const int n_of[STEPS] = {4, 20, 4, 4};
    int64_t idx[STEPS][MAX_N] = {{2, 7, 2, 40}, {0}, {7, 9, 9, 63},
                                 {0, 2, 5, 6}};
    for (int i = 0; i < MAX_N; i++)
        idx[1][i] = 3 * i;
    for (int k = 0; k < 3; k++) {
        double init[64 * 3], seed[MAX_N * 3], dense[64 * 3];
        for (int i = 0; i < 64 * 3; i++)
            init[i] = sin(i + 1.0);
        yk_model_free(m);
        m = yk_model_new(ctx);
        yk_param *A = param_with(m, "A", YK_F64, SHAPE(64, 3), init);
        yk_param *B = param_with(m, "B", YK_F64, SHAPE(64, 3), init);
        yk_optim_kind kind;
        cr_assert(yk_optim_kind_from_name(kinds[k], &kind));
        yk_optim_opts o = yk_optim_defaults(kind);
        o.lr = 0.1;
        if (kind == YK_OPTIM_ADAGRAD)
            o.lr_decay = 0.01;
        yk_optim *opt = yk_optim_new(ctx, kind, &o);
        cr_assert_eq(yk_optim_add(opt, A), YK_OK);
        cr_assert_eq(yk_optim_add(opt, B), YK_OK);
        const int64_t frozen = 9;
        cr_assert_eq(yk_optim_freeze_rows(opt, A, 1, &frozen), YK_OK);
        cr_assert_eq(yk_optim_freeze_rows(opt, B, 1, &frozen), YK_OK);
        for (int step = 0; step < STEPS; step++) {
            yk_model_zero_grad(m);
            memset(dense, 0, sizeof dense);
            for (int i = 0; i < n_of[step]; i++)
                for (int c = 0; c < 3; c++) {
                    seed[i * 3 + c] = cos(step * 12 + i * 3 + c);
                    dense[idx[step][i] * 3 + c] += seed[i * 3 + c];
                }
            give_lookup(A, n_of[step], idx[step], seed, false);
            give_dense(B, dense);
            cr_assert_eq(yk_optim_step(opt), YK_OK, "%s", yk_last_error(ctx));
            const double *a = yk_tensor_data(yk_param_value(A));
            const double *b = yk_tensor_data(yk_param_value(B));
            for (int i = 0; i < 64 * 3; i++)
                cr_assert_eq(a[i], b[i], "%s step %d element %d: %.17g vs "
                             "%.17g", kinds[k], step + 1, i, a[i], b[i]);
        }
        yk_optim_free(opt);
    }
}

/* A step big enough to be split over threads (a few thousand rows of 64
 * floats: over yk__run_split's threshold) gives the bits of one thread, for
 * every kind, with row-sparse and dense lookup gradients and a frozen row. */
Test(optim, step_split_over_threads_gives_the_one_thread_bits)
{
    const char *kinds[] = {"sgd", "adagrad", "sparse_adam", "rowwise_adagrad",
                           "adam"};
    const int64_t V = 4096, D = 64, n = 6000;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    double *seed = malloc((size_t)(n * D) * sizeof *seed);
    cr_assert(idx && seed);
    for (int k = 0; k < 5; k++)
        for (int sparse = 0; sparse < 2; sparse++) {
            if (!sparse && strcmp(kinds[k], "sparse_adam") == 0)
                continue;
            yk_model_free(m);
            m = yk_model_new(ctx);
            yk_param *p[2];
            yk_optim *opt[2];
            yk_optim_kind kind;
            cr_assert(yk_optim_kind_from_name(kinds[k], &kind));
            yk_optim_opts o = yk_optim_defaults(kind);
            o.lr = 0.01;
            for (int t = 0; t < 2; t++) {
                p[t] = yk_model_add(m, t ? "two" : "one", YK_F32, 2,
                                    (int64_t[]){V, D});
                cr_assert_eq(yk_tensor_fill_normal(yk_param_value(p[t]), 5,
                                                   0, 1), YK_OK);
                opt[t] = yk_optim_new(ctx, kind, &o);
                cr_assert_eq(yk_optim_add(opt[t], p[t]), YK_OK, "%s",
                             yk_last_error(ctx));
                const int64_t frozen = 17;
                cr_assert_eq(yk_optim_freeze_rows(opt[t], p[t], 1, &frozen),
                             YK_OK);
            }
            for (int step = 0; step < 3; step++) {
                for (int64_t i = 0; i < n; i++)
                    idx[i] = (i * 7919 + step * 104729) % V;
                for (int64_t i = 0; i < n * D; i++)
                    seed[i] = sin((double)(i + step));
                yk_model_zero_grad(m);
                for (int t = 0; t < 2; t++) {
                    give_lookup(p[t], n, idx, seed, sparse);
                    cr_assert_eq(yk_set_threads(ctx, t + 1), YK_OK);
                    cr_assert_eq(yk_optim_step(opt[t]), YK_OK, "%s",
                                 yk_last_error(ctx));
                }
                cr_assert_eq(yk_set_threads(ctx, 1), YK_OK);
                cr_assert(memcmp(yk_tensor_data(yk_param_value(p[0])),
                                 yk_tensor_data(yk_param_value(p[1])),
                                 (size_t)(V * D) * sizeof(float)) == 0,
                          "%s (%s), step %d: 2 threads changed the bits",
                          kinds[k], sparse ? "sparse" : "dense", step + 1);
            }
            yk_optim_free(opt[0]);
            yk_optim_free(opt[1]);
        }
    free(seed);
    free(idx);
}

/* Gradient rows of over 1 MiB move between the step arena and the
 * parameter (no copy: engine.h, yk__arena_take_block); several steps with
 * and without zero_grad between backward passes must still give the
 * numbers of sgd on the summed rows, worked out here. */
Test(optim, big_row_gradients_survive_steps_and_accumulation)
{
    const int64_t V = 8192, D = 64, n = 10000;
    const double lr = 0.5;
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){V, D});
    cr_assert_eq(yk_tensor_fill_normal(yk_param_value(W), 9, 0, 1), YK_OK);
    double *want = malloc((size_t)(V * D) * sizeof *want);
    double *grad = malloc((size_t)(V * D) * sizeof *grad);
    double *seed = malloc((size_t)(n * D) * sizeof *seed);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    cr_assert(want && grad && seed && idx);
    memcpy(want, yk_tensor_data(yk_param_value(W)),
           (size_t)(V * D) * sizeof *want);
    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_SGD);
    o.lr = lr;
    yk_optim *opt = yk_optim_new(ctx, YK_OPTIM_SGD, &o);
    cr_assert_eq(yk_optim_add(opt, W), YK_OK);
    /* backward passes per step: step 2 accumulates two before stepping */
    const int passes[4] = {1, 1, 2, 1};
    for (int step = 0; step < 4; step++) {
        yk_model_zero_grad(m);
        memset(grad, 0, (size_t)(V * D) * sizeof *grad);
        for (int pass = 0; pass < passes[step]; pass++) {
            for (int64_t i = 0; i < n; i++) {
                idx[i] = (i * 7919 + (step * 3 + pass) * 104729) % V;
                for (int64_t c = 0; c < D; c++) {
                    seed[i * D + c] = cos((double)(i * D + c + step + pass));
                    grad[idx[i] * D + c] += seed[i * D + c];
                }
            }
            give_rows(W, n, idx, seed);
        }
        cr_assert_eq(yk_optim_step(opt), YK_OK, "%s", yk_last_error(ctx));
        for (int64_t k = 0; k < V * D; k++)
            want[k] -= lr * grad[k];
        const double *w = yk_tensor_data(yk_param_value(W));
        for (int64_t k = 0; k < V * D; k++)
            cr_assert(fabs(w[k] - want[k]) <= 1e-12 * (1 + fabs(want[k])),
                      "step %d, element %lld: %.17g, want %.17g", step + 1,
                      (long long)k, w[k], want[k]);
    }
    yk_optim_free(opt);
    free(idx);
    free(seed);
    free(grad);
    free(want);
}

/* ------------------------------------------------------------ tying */

static yk_node *exp_tanh(yk_graph *g, yk_param *p)
{
    yk_node *x = yk_param_node(g, p);
    yk_node *parts[2] = {yk_exp(g, x), yk_tanh(g, x)};
    return yk_cat(g, 2, parts, 0);
}

Test(optim, parameter_read_by_two_ops_takes_one_step)
{
    /* p feeds exp and tanh: each step is ONE Adam step of the summed
     * gradient with one state (torch.optim.Adam over the same graph). */
    yk_param *p = param_with(m, "p", YK_F64, SHAPE(2, 3), ref_tie_unary_init);
    yk_tensor *seed = T64(ctx, SHAPE(4, 3), ref_tie_unary_seed);
    yk_optim_opts op = yk_optim_defaults(YK_OPTIM_ADAM);
    op.lr = 0.1;
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAM, &op);
    yk_optim_add_model(o, m);
    for (int k = 0; k < 3; k++) {
        yk_model_zero_grad(m);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = exp_tanh(g, p);
        const yk_tensor *sp = seed;
        cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK, "%s",
                     yk_last_error(ctx));
        yk_graph_end(g);
        cr_assert_eq(yk_optim_step(o), YK_OK);
        expect_near("tie exp/tanh", k + 1, yk_param_value(p),
                    ref_tie_unary_after[k], false);
    }
    cr_assert_eq(yk_optim_step_count(o, p), 3);
    yk_tensor_free(seed);
    yk_optim_free(o);
}

/* W read by an embedding and a mean embedding_bag (sparse or not). */
static void tied_embedding_step(yk_param *w, bool sparse)
{
    yk_tensor *idx = TI(ctx, SHAPE(2, 2), ref_tie_emb_idx);
    yk_tensor *bidx = TI(ctx, SHAPE(5), ref_tie_emb_bidx);
    yk_tensor *offs = TI(ctx, SHAPE(2), ref_tie_emb_offsets);
    yk_tensor *se = T64(ctx, SHAPE(2, 2, 3), ref_tie_emb_seed_e);
    yk_tensor *sb = T64(ctx, SHAPE(2, 3), ref_tie_emb_seed_b);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *wn = yk_param_node(g, w);
    yk_bag_opts bo = yk_bag_defaults();
    bo.sparse = sparse;
    yk_node *nodes[2] = {
        yk_embedding(g, yk_const(g, idx), wn, YK_NO_PADDING, false, sparse),
        yk_embedding_bag(g, yk_const(g, bidx), wn, yk_const(g, offs), NULL,
                         &bo)};
    const yk_tensor *seeds[2] = {se, sb};
    cr_assert_eq(yk_backward_seeded(g, 2, nodes, seeds), YK_OK, "%s",
                 yk_last_error(ctx));
    cr_assert_eq(yk_param_grad_kind(w), sparse ? YK_GRAD_ROWS : YK_GRAD_DENSE);
    yk_graph_end(g);
    yk_tensor_free(idx);
    yk_tensor_free(bidx);
    yk_tensor_free(offs);
    yk_tensor_free(se);
    yk_tensor_free(sb);
}

static void expect_tied_embedding(yk_optim_kind kind, bool sparse,
                                  const double (*after)[18])
{
    /* One state, one step of the summed gradient a step, where PyTorch's
     * _weight= route (two Parameters over one storage) would step twice. */
    yk_param *w = param_with(m, "W", YK_F64, SHAPE(6, 3), ref_tie_emb_init);
    yk_optim_opts op = yk_optim_defaults(kind);
    op.lr = 0.1;
    yk_optim *o = yk_optim_new(ctx, kind, &op);
    yk_optim_add_model(o, m);
    for (int k = 0; k < 3; k++) {
        yk_model_zero_grad(m);
        tied_embedding_step(w, sparse);
        cr_assert_eq(yk_optim_step(o), YK_OK, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_optim_step_count(o, w), k + 1);
        expect_near(yk_optim_kind_name(kind), k + 1, yk_param_value(w),
                    after[k], false);
    }
    yk_optim_free(o);
}

Test(optim, tied_embedding_and_bag_adam)
{
    expect_tied_embedding(YK_OPTIM_ADAM, false, ref_tie_emb_adam_after);
}

Test(optim, tied_embedding_and_bag_sparse_adam)
{
    expect_tied_embedding(YK_OPTIM_SPARSE_ADAM, true,
                          ref_tie_emb_sparse_adam_after);
}

/* ------------------------------------------------------ row-wise Adagrad */

Test(optim, rowwise_adagrad_hand_worked)
{
    /* W = [[1, 2], [3, 4], [5, 6]], lr 0.5, s0 = 0, eps 1e-300 (nothing
     * next to sqrt(s) > 0; keeps row 1's 0 / sqrt(0) from being 0 / 0).
     * Step 1, dense g = [[3, 4], [0, 0], [1, -1]]:
     *   s = [mean(9, 16), mean(0, 0), mean(1, 1)] = [12.5, 0, 1]
     *   row 0: p -= 0.5 [3, 4] / sqrt(12.5) = [1 - 1.5/sqrt(12.5),
     *          2 - 2/sqrt(12.5)]
     *   row 1: gradient 0, unchanged: [3, 4]
     *   row 2: p -= 0.5 [1, -1] / 1 = [4.5, 6.5]
     * Step 2, row-sparse: row 2 looked up twice with [1, 1] and [1, 3], so
     * g_2 = [2, 4]: s_2 = 1 + mean(4, 16) = 11, p_2 -= 0.5 [2, 4] / sqrt(11)
     *   = [4.5 - 1/3.3166247903554, 6.5 - 2/3.3166247903554]
     *   = [4.1984886554222, 5.8969773108445]; rows 0 and 1 untouched. */
    yk_param *p = param_with(m, "W", YK_F64, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6));
    yk_optim_opts op = yk_optim_defaults(YK_OPTIM_ROWWISE_ADAGRAD);
    op.lr = 0.5;
    op.eps = 1e-300;
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ROWWISE_ADAGRAD, &op);
    yk_optim_add(o, p);
    give_dense(p, VALS(3, 4, 0, 0, 1, -1));
    cr_assert_eq(yk_optim_step(o), YK_OK);
    expect_close(yk_param_value(p),
                 VALS(1 - 1.5 / sqrt(12.5), 2 - 2 / sqrt(12.5), 3, 4, 4.5,
                      6.5), 6, 1e-15, 1e-15);
    yk_tensor *s;
    cr_assert_eq(yk_optim_state(o, p, "sum", &s), YK_OK);
    expect_shape(s, SHAPE(3));
    expect_close(s, VALS(12.5, 0, 1), 3, 1e-15, 0);

    yk_model_zero_grad(m);
    give_rows(p, 2, IDX(2, 2), VALS(1, 1, 1, 3));
    cr_assert_eq(yk_optim_step(o), YK_OK);
    expect_close(yk_param_value(p),
                 VALS(1 - 1.5 / sqrt(12.5), 2 - 2 / sqrt(12.5), 3, 4,
                      4.1984886554222, 5.8969773108445), 6, 1e-12, 0);
    expect_close(s, VALS(12.5, 0, 11), 3, 1e-15, 0);
    cr_assert_eq(yk_optim_step_count(o, p), 2);
    yk_optim_free(o);
}

Test(optim, rowwise_adagrad_f32_lr_decay_and_initial_value)
{
    /* One row [2, 0], f32, lr 1, lr_decay 1, s0 = 1, eps 0.
     * Step 1 (t = 1, clr = 1): g = [2, 0], s = 1 + 2 = 3,
     *   p = [0, 0] - [2, 0] / sqrt(3) = [-1.1547005, 0].
     * Step 2 (t = 2, clr = 1 / 2): g = [1, 1], s = 3 + 1 = 4,
     *   p -= 0.5 * [1, 1] / 2 = [-1.4047005, -0.25]. */
    yk_param *p = param_with(m, "W", YK_F32, SHAPE(1, 2), VALS(0, 0));
    yk_optim_opts op = yk_optim_defaults(YK_OPTIM_ROWWISE_ADAGRAD);
    op.lr = 1;
    op.lr_decay = 1;
    op.initial_accumulator_value = 1;
    op.eps = 0;
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ROWWISE_ADAGRAD, &op);
    yk_optim_add(o, p);
    give_dense(p, VALS(2, 0));
    yk_optim_step(o);
    expect_close(yk_param_value(p), VALS(-2 / sqrt(3), 0), 2, 1e-6, 1e-7);
    yk_model_zero_grad(m);
    give_rows(p, 1, IDX(0), VALS(1, 1));
    yk_optim_step(o);
    expect_close(yk_param_value(p), VALS(-2 / sqrt(3) - 0.25, -0.25), 2, 1e-6,
                 1e-7);
    yk_optim_free(o);
}

Test(optim, empty_and_scalar_parameters)
{
    /* Parameters with no element step cleanly; a 0-d parameter has one
     * row. Adam's first step moves each element by -lr * sign(g) (m / sqrt(v)
     * = g / |g| after bias correction, eps aside). */
    yk_param *e0 = yk_model_add(m, "rows0", YK_F64, 2, (int64_t[]){0, 3});
    yk_param *e1 = yk_model_add(m, "cols0", YK_F32, 2, (int64_t[]){3, 0});
    yk_param *s = param_with(m, "scalar", YK_F64, 0, NULL, VALS(2));
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAM, NULL);
    cr_assert_eq(yk_optim_add_model(o, m), YK_OK);
    cr_assert_eq(yk_optim_freeze_rows(o, e0, 0, NULL), YK_OK);
    give_dense(e0, NULL);
    give_dense(e1, NULL);
    give_dense(s, VALS(-3));
    cr_assert_eq(yk_optim_step(o), YK_OK, "%s", yk_last_error(ctx));
    cr_assert_eq(yk_optim_step_count(o, e0), 1);
    expect_close(yk_param_value(s), VALS(2.001), 1, 1e-9, 0);
    cr_assert_eq(yk_optim_freeze_rows(o, s, 1, IDX(0)), YK_OK);
    cr_assert(yk_optim_row_frozen(o, s, 0));
    cr_assert_eq(yk_optim_step(o), YK_OK);
    expect_close(yk_param_value(s), VALS(2.001), 1, 1e-9, 0);
    yk_optim_free(o);
}

/* --------------------------------------------------------- row freezing */

Test(optim, freezing_rows_after_training_resets_their_state)
{
    /* Adam moments of rows frozen mid-training go back to 0 and stay
     * there; the rows do not move any more. */
    yk_param *p = param_with(m, "W", YK_F64, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6));
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAM, NULL);
    yk_optim_add(o, p);
    give_dense(p, VALS(1, 1, 1, 1, 1, 1));
    yk_optim_step(o);
    cr_assert_eq(yk_optim_freeze_row_range(o, p, 1, 3), YK_OK);
    cr_assert(yk_optim_row_frozen(o, p, 1) && yk_optim_row_frozen(o, p, 2));
    cr_assert_not(yk_optim_row_frozen(o, p, 0));
    cr_assert_not(yk_optim_row_frozen(o, p, 3));
    yk_tensor *ma, *va;
    yk_optim_state(o, p, "exp_avg", &ma);
    yk_optim_state(o, p, "exp_avg_sq", &va);
    for (int64_t i = 2; i < 6; i++)
        cr_assert(yk_tensor_get(ma, i) == 0 && yk_tensor_get(va, i) == 0);
    cr_assert(yk_tensor_get(ma, 0) != 0);
    double r1 = yk_tensor_get(yk_param_value(p), 2);
    yk_optim_step(o); /* same gradient, still in the model */
    cr_assert(yk_tensor_get(yk_param_value(p), 2) == r1);
    for (int64_t i = 2; i < 6; i++)
        cr_assert(yk_tensor_get(ma, i) == 0 && yk_tensor_get(va, i) == 0);

    /* unfrozen rows move again */
    cr_assert_eq(yk_optim_unfreeze_rows(o, p), YK_OK);
    yk_optim_step(o);
    cr_assert(yk_tensor_get(yk_param_value(p), 2) != r1);
    yk_optim_free(o);
}

Test(optim, freeze_rows_errors)
{
    yk_param *p = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){4, 2});
    yk_param *q = yk_model_add(m, "Q", YK_F64, 2, (int64_t[]){4, 2});
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAM, NULL);
    yk_optim_add(o, p);
    cr_assert_eq(yk_optim_freeze_rows(o, p, 3, IDX(0, 4, 1)), YK_ERANGE);
    expect_error(ctx, YK_ERANGE, "rows[1] = 4 is out of range for parameter "
                 "\"W\" with 4 rows");
    cr_assert_not(yk_optim_row_frozen(o, p, 0), "all or nothing");
    cr_assert_eq(yk_optim_freeze_rows(o, p, 1, IDX(-1)), YK_ERANGE);
    expect_error(ctx, YK_ERANGE, "rows[0] = -1");
    cr_assert_eq(yk_optim_freeze_row_range(o, p, 2, 5), YK_ERANGE);
    expect_error(ctx, YK_ERANGE, "rows [2, 5)");
    cr_assert_eq(yk_optim_freeze_row_range(o, p, 3, 2), YK_ERANGE);
    expect_error(ctx, YK_ERANGE, "rows [3, 2)");
    cr_assert_eq(yk_optim_freeze_rows(o, q, 1, IDX(0)), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "parameter \"Q\" is not in this optimizer");
    cr_assert_eq(yk_optim_freeze_rows(o, p, 2, NULL), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "n = 2 with rows NULL");
    cr_assert_eq(yk_optim_unfreeze_rows(o, q), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "\"Q\"");
    yk_optim_free(o);
}

/* ------------------------------------------------ learning rate */

Test(optim, schedules_match_torch)
{
    for (int s = 0; s < 10; s++)
        cr_assert_float_eq(yk_lr_step(0.1, s, 3, 0.5), ref_lr_step[s], 1e-15,
                           "step %d", s);
    for (int s = 0; s < 9; s++)
        cr_assert_float_eq(yk_lr_cosine(0.1, s, 8, 0.001), ref_lr_cosine[s],
                           1e-14, "step %d", s);
    for (int s = 0; s < 7; s++)
        cr_assert_float_eq(yk_lr_warmup(0.1, s, 4, 0.25), ref_lr_linear[s],
                           1e-15, "step %d", s);
    /* past the end, cosine stays at its minimum */
    cr_assert_float_eq(yk_lr_cosine(0.1, 20, 8, 0.001), 0.001, 1e-15);
    /* composition: warm-up of a cosine = product of their factors */
    double lr = yk_lr_warmup(yk_lr_cosine(0.1, 2, 8, 0.0), 2, 4, 0.0);
    cr_assert_float_eq(lr, 0.5 * 0.1 * (1 + cos(M_PI * 2 / 8)) / 2, 1e-15);
}

Test(optim, set_lr_changes_the_next_step)
{
    /* sgd, p = 1, g = 2: lr 0.1 gives 0.8, then lr 0.5 gives -0.2. */
    yk_param *p = param_with(m, "p", YK_F64, SHAPE(1), VALS(1));
    yk_optim_opts op = yk_optim_defaults(YK_OPTIM_SGD);
    op.lr = 0.1;
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_SGD, &op);
    yk_optim_add(o, p);
    give_dense(p, VALS(2));
    yk_optim_step(o);
    expect_close(yk_param_value(p), VALS(0.8), 1, 1e-15, 0);
    cr_assert_eq(yk_optim_set_lr(o, 0.5), YK_OK);
    cr_assert(yk_optim_lr(o) == 0.5);
    yk_optim_step(o);
    expect_close(yk_param_value(p), VALS(-0.2), 1, 1e-14, 1e-15);
    cr_assert_eq(yk_optim_set_lr(o, -1), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "yk_optim_set_lr: lr = -1");
    cr_assert(yk_optim_lr(o) == 0.5);
    yk_optim_free(o);
}

/* ------------------------------------------------------- clipping */

/* A (3 x 2) with a dense gradient, B (5 x 2) with a row-sparse one whose
 * row 4 is looked up twice. */
static void clip_setup(yk_param **a, yk_param **b)
{
    *a = yk_model_add(m, "A", YK_F64, 2, (int64_t[]){3, 2});
    *b = yk_model_add(m, "B", YK_F64, 2, (int64_t[]){5, 2});
    give_dense(*a, ref_clip_grad_a);
    give_rows(*b, 3, ref_clip_idx_b, ref_clip_seed_b);
}

static void expect_grad(yk_param *p, const double *want, int64_t n)
{
    yk_tensor *g = yk_tensor_zeros(ctx, YK_F64, 2,
                                   yk_tensor_shape(yk_param_value(p)));
    cr_assert_eq(yk_param_grad_to_dense(p, g), YK_OK);
    expect_close(g, want, n, 1e-12, 1e-14);
    yk_tensor_free(g);
}

Test(optim, clip_grad_norm_matches_torch)
{
    for (size_t k = 0; k < sizeof ref_clip_norm / sizeof ref_clip_norm[0];
         k++) {
        yk_model_free(m);
        m = yk_model_new(ctx);
        yk_param *a, *b;
        clip_setup(&a, &b);
        yk_param *ps[2] = {a, b};
        double total = -1;
        cr_assert_eq(yk_clip_grad_norm(2, ps, ref_clip_norm[k].max_norm,
                                       ref_clip_norm[k].norm_type, &total),
                     YK_OK, "%s", yk_last_error(ctx));
        cr_assert_float_eq(total, ref_clip_norm[k].total,
                           1e-12 * ref_clip_norm[k].total, "case %zu", k);
        expect_grad(a, ref_clip_norm[k].a, 6);
        expect_grad(b, ref_clip_norm[k].b, 10);
        cr_assert_eq(yk_param_grad_kind(b), YK_GRAD_ROWS);
    }
}

Test(optim, optim_clip_grad_norm_uses_its_parameters)
{
    yk_param *a, *b;
    clip_setup(&a, &b);
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAM, NULL);
    yk_optim_add_model(o, m);
    double total;
    cr_assert_eq(yk_optim_clip_grad_norm(o, ref_clip_norm[0].max_norm,
                                         ref_clip_norm[0].norm_type, &total),
                 YK_OK);
    cr_assert_float_eq(total, ref_clip_norm[0].total, 1e-12);
    expect_grad(a, ref_clip_norm[0].a, 6);
    expect_grad(b, ref_clip_norm[0].b, 10);
    yk_optim_free(o);
}

Test(optim, clip_grad_value_matches_torch)
{
    yk_param *a, *b;
    clip_setup(&a, &b);
    yk_param *ps[2] = {a, b};
    cr_assert_eq(yk_clip_grad_value(2, ps, 0.5), YK_OK);
    expect_grad(a, ref_clip_value_a, 6);
    expect_grad(b, ref_clip_value_b, 10);
}

Test(optim, clip_errors)
{
    yk_param *a, *b;
    clip_setup(&a, &b);
    yk_param *ps[2] = {a, b}, *withnull[2] = {a, NULL};
    cr_assert_eq(yk_clip_grad_norm(2, ps, -1, 2, NULL), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "max_norm = -1");
    cr_assert_eq(yk_clip_grad_norm(2, ps, 1, 0, NULL), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "norm_type = 0");
    cr_assert_eq(yk_clip_grad_norm(2, withnull, 1, 2, NULL), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "params[1] is NULL");
    cr_assert_eq(yk_clip_grad_value(2, ps, -0.5), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "clip_value = -0.5");
    double total = 5;
    cr_assert_eq(yk_clip_grad_norm(0, NULL, 1, 2, &total), YK_OK);
    cr_assert(total == 0);
}

/* ------------------------------------------------------- state access */

Test(optim, state_names_per_kind)
{
    struct {
        yk_optim_kind kind;
        double momentum;
        bool amsgrad;
        int n;
        const char *names[3];
    } want[] = {
        {YK_OPTIM_SGD, 0, false, 0, {NULL}},
        {YK_OPTIM_SGD, 0.9, false, 1, {"momentum_buffer"}},
        {YK_OPTIM_ADAM, 0, false, 2, {"exp_avg", "exp_avg_sq"}},
        {YK_OPTIM_ADAMW, 0, true, 3, {"exp_avg", "exp_avg_sq",
                                      "max_exp_avg_sq"}},
        {YK_OPTIM_ADAGRAD, 0, false, 1, {"sum"}},
        {YK_OPTIM_SPARSE_ADAM, 0, false, 2, {"exp_avg", "exp_avg_sq"}},
        {YK_OPTIM_ROWWISE_ADAGRAD, 0, false, 1, {"sum"}},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        yk_optim_opts op = yk_optim_defaults(want[k].kind);
        if (want[k].kind == YK_OPTIM_SGD)
            op.lr = 0.1;
        op.momentum = want[k].momentum;
        op.amsgrad = want[k].amsgrad;
        yk_optim *o = yk_optim_new(ctx, want[k].kind, &op);
        cr_assert(o, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_optim_state_count(o), want[k].n);
        for (int i = 0; i < want[k].n; i++)
            cr_assert_str_eq(yk_optim_state_name(o, i), want[k].names[i]);
        cr_assert_null(yk_optim_state_name(o, want[k].n));
        yk_optim_free(o);
    }
}

Test(optim, state_round_trip_resumes_training)
{
    /* A checkpoint's view: copy step count and state of a trained Adam to
     * a fresh one; both then take the same next step, bit for bit. */
    const ref_case *c = find_case("dense_adam_amsgrad_f64");
    yk_param *p = param_with(m, "p", YK_F64, SHAPE(4, 3), c->init);
    yk_param *q = param_with(m, "q", YK_F64, SHAPE(4, 3), c->init);
    yk_optim *o1 = optim_for(c), *o2 = optim_for(c);
    yk_optim_add(o1, p);
    yk_optim_add(o2, q);
    for (int k = 0; k < 2; k++) {
        yk_model_zero_grad(m);
        give_dense(p, c->steps[k].dense);
        yk_optim_step(o1);
    }
    yk_tensor_copy(yk_param_value(q), yk_param_value(p));
    cr_assert_eq(yk_optim_set_step_count(o2, q, yk_optim_step_count(o1, p)),
                 YK_OK);
    for (int i = 0; i < yk_optim_state_count(o1); i++) {
        const char *name = yk_optim_state_name(o1, i);
        yk_tensor *t;
        cr_assert_eq(yk_optim_state(o1, p, name, &t), YK_OK);
        cr_assert_eq(yk_optim_set_state(o2, q, name, t), YK_OK, "%s",
                     yk_last_error(ctx));
    }
    yk_model_zero_grad(m);
    give_dense(p, c->steps[3].dense);
    give_dense(q, c->steps[3].dense);
    yk_optim_step(o1);
    yk_optim_step(o2);
    for (int64_t i = 0; i < 12; i++)
        cr_assert(yk_tensor_get(yk_param_value(p), i) ==
                  yk_tensor_get(yk_param_value(q), i), "element %lld",
                  (long long)i);
    cr_assert_eq(yk_optim_step_count(o2, q), 3);
    yk_optim_free(o1);
    yk_optim_free(o2);
}

Test(optim, state_access_errors)
{
    yk_param *p = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){2, 2});
    yk_param *q = yk_model_add(m, "Q", YK_F64, 2, (int64_t[]){2, 2});
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAGRAD, NULL);
    yk_optim_add(o, p);
    yk_tensor *t = (yk_tensor *)1;
    cr_assert_eq(yk_optim_state(o, p, "exp_avg", &t), YK_EINVAL);
    cr_assert_null(t);
    expect_error(ctx, YK_EINVAL, "adagrad keeps no state named \"exp_avg\"");
    cr_assert_eq(yk_optim_state(o, q, "sum", &t), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "parameter \"Q\" is not in this optimizer");
    cr_assert_eq(yk_optim_step_count(o, q), -1);
    cr_assert_eq(yk_optim_set_step_count(o, p, -3), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "step = -3");

    yk_tensor *bad = yk_tensor_zeros(ctx, YK_F32, 2, (int64_t[]){2, 2});
    cr_assert_eq(yk_optim_set_state(o, p, "sum", bad), YK_EDTYPE);
    expect_error(ctx, YK_EDTYPE, "src is f32, state \"sum\" of parameter "
                 "\"W\" is f64");
    yk_tensor_free(bad);
    bad = yk_tensor_zeros(ctx, YK_F64, 1, (int64_t[]){4});
    cr_assert_eq(yk_optim_set_state(o, p, "sum", bad), YK_ESHAPE);
    expect_error(ctx, YK_ESHAPE, "src has shape [4], state \"sum\" of "
                 "parameter \"W\" has shape [2, 2]");
    yk_tensor_free(bad);
    yk_optim_free(o);
}

Test(optim, set_state_before_the_first_step_makes_it)
{
    /* adagrad's "sum" would start at initial_accumulator_value (0.5); set
     * to 3 before any step, g = 1: s = 3 + 1 = 4, p = 0 - 1 * 1 / (sqrt(4)
     * + 0) = -0.5 (lr 1, eps 0). From 0.5 it would be -1/sqrt(1.5). */
    yk_param *p = yk_model_add(m, "W", YK_F64, 1, (int64_t[]){1});
    yk_optim_opts op = yk_optim_defaults(YK_OPTIM_ADAGRAD);
    op.lr = 1;
    op.eps = 0;
    op.initial_accumulator_value = 0.5;
    yk_optim *o = yk_optim_new(ctx, YK_OPTIM_ADAGRAD, &op);
    yk_optim_add(o, p);
    yk_tensor *t;
    yk_optim_state(o, p, "sum", &t);
    cr_assert_null(t, "no state before the first step");
    yk_tensor *three = T64(ctx, SHAPE(1), VALS(3));
    cr_assert_eq(yk_optim_set_state(o, p, "sum", three), YK_OK);
    give_dense(p, VALS(1));
    yk_optim_step(o);
    expect_close(yk_param_value(p), VALS(-0.5), 1, 1e-15, 0);
    yk_tensor_free(three);
    yk_optim_free(o);
}

/* ------------------------------------------------ allocation failure */

typedef struct fail_alloc {
    long countdown; /* allocations left before failing; < 0: never */
    bool hit;       /* an allocation was refused */
} fail_alloc;

static void *failing(void *ud, void *ptr, size_t old_size, size_t new_size)
{
    (void)old_size;
    fail_alloc *f = ud;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    if (f->countdown == 0) {
        f->hit = true;
        return NULL;
    }
    if (f->countdown > 0)
        f->countdown--;
    return realloc(ptr, new_size);
}

Test(optim, out_of_memory_in_a_step_changes_nothing)
{
    /* Fails the n-th allocation of a step (state tensors, coalescing the
     * rows, the zero row) for every n: a clean YK_ENOMEM, the parameters
     * and step counts untouched; then a step with memory succeeds. The
     * sanitizer build checks that nothing leaks. */
    for (long n = 0;; n++) {
        fail_alloc f = {-1, false};
        yk_ctx *c2 = yk_ctx_new_with_alloc(failing, &f);
        yk_model *m2 = yk_model_new(c2);
        yk_param *w = yk_model_add(m2, "W", YK_F64, 2, (int64_t[]){4, 2});
        yk_param *b = yk_model_add(m2, "b", YK_F64, 1, (int64_t[]){2});
        yk_tensor_fill(yk_param_value(w), 1);
        yk_optim *o = yk_optim_new(c2, YK_OPTIM_ADAM, NULL);
        cr_assert_eq(yk_optim_add_model(o, m2), YK_OK);
        yk_tensor *idx = yk_tensor_from(c2, YK_I64, 1, (int64_t[]){3},
                                        (int64_t[]){3, 1, 3});
        yk_graph *g = yk_graph_begin(c2);
        yk_node *e = yk_embedding(g, yk_const(g, idx), yk_param_node(g, w),
                                  YK_NO_PADDING, false, true);
        yk_node *loss = yk_add(g, yk_sum(g, e, 0, NULL, false),
                               yk_sum(g, yk_param_node(g, b), 0, NULL, false));
        cr_assert_eq(yk_backward(g, loss), YK_OK, "%s", yk_last_error(c2));
        yk_graph_end(g);
        f.countdown = n;
        yk_status s = yk_optim_step(o);
        bool failed = f.hit;
        f.countdown = -1;
        if (!failed) {
            cr_assert_eq(s, YK_OK);
        } else {
            cr_assert_eq(s, YK_ENOMEM, "allocation %ld: %s", n,
                         yk_last_error(c2));
            cr_assert_eq(yk_optim_step_count(o, w), 0);
            cr_assert_eq(yk_optim_step_count(o, b), 0);
            for (int64_t i = 0; i < 8; i++)
                cr_assert(yk_tensor_get(yk_param_value(w), i) == 1);
            cr_assert_eq(yk_optim_step(o), YK_OK, "%s", yk_last_error(c2));
            cr_assert_eq(yk_optim_step_count(o, w), 1);
        }
        yk_tensor_free(idx);
        yk_optim_free(o);
        yk_model_free(m2);
        yk_ctx_free(c2);
        if (!failed)
            break;
    }
}
