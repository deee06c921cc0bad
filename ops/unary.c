/*
 * unary.c -- elementwise functions of one tensor: relu, tanh, sigmoid, exp,
 * log. Each op's forward and backward sit side by side; this file is the
 * simplest family and the one to copy when adding an op.
 *
 * Backward of y = f(x): dx += dy * f'(x), written with whichever of x and y
 * is cheaper (sigmoid' = y (1 - y), tanh' = 1 - y^2, exp' = y).
 */
#include "../lib/engine.h"

#include <math.h>

/* Shared forward: checks the input and makes an output of the same shape. */
static yk_node *unary_node(yk_graph *g, const yk_op_def *op, yk_node *x)
{
    if (!yk__inputs_ok(g, op->name, 1, &x))
        return NULL;
    const yk_tensor *v = yk_value(x);
    if (!v)
        return NULL;
    if (v->dtype == YK_I64)
        return yk__fail(g, YK_EDTYPE, "%s: input is i64, needs f32 or f64",
                        op->name);
    return yk__node_new(g, op, 1, &x, v->dtype, v->ndim, v->shape);
}

/* For build functions: the registry calls every unary op the same way. */
#define UNARY_BUILD(op)                                                      \
    static yk_node *build_##op(yk_graph *g, yk_node *const *in, int n,       \
                               const yk_attr_value *a)                       \
    {                                                                        \
        (void)n;                                                             \
        (void)a;                                                             \
        return yk_##op(g, in[0]);                                            \
    }

#define UNARY_DEF(op)                                                        \
    const yk_op_def yk_op_##op = {                                           \
        .name = #op, .n_inputs = 1, .input_names = {"input"},                \
        .build = build_##op, .backward = backward_##op}

/* ------------------------------------------------------------------ relu */

yk_node *yk_relu(yk_graph *g, yk_node *x)
{
    yk_node *y = unary_node(g, &yk_op_relu, x);
    if (!y)
        return NULL;
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *a = x->value.data;
        float *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = a[i] > 0 ? a[i] : 0;
    } else {
        const double *a = x->value.data;
        double *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = a[i] > 0 ? a[i] : 0;
    }
    return y;
}

static yk_status backward_relu(yk_graph *g, yk_node *y, const void *gy)
{
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *x = y->inputs[0]->value.data, *dy = gy;
        float *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += x[i] > 0 ? dy[i] : 0; /* gradient 0 at 0 */
    } else {
        const double *x = y->inputs[0]->value.data, *dy = gy;
        double *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += x[i] > 0 ? dy[i] : 0;
    }
    return YK_OK;
}

UNARY_BUILD(relu)
UNARY_DEF(relu);

/* ------------------------------------------------------------------ tanh */

yk_node *yk_tanh(yk_graph *g, yk_node *x)
{
    yk_node *y = unary_node(g, &yk_op_tanh, x);
    if (!y)
        return NULL;
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *a = x->value.data;
        float *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = tanhf(a[i]);
    } else {
        const double *a = x->value.data;
        double *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = tanh(a[i]);
    }
    return y;
}

static yk_status backward_tanh(yk_graph *g, yk_node *y, const void *gy)
{
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *v = y->value.data, *dy = gy;
        float *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * (1 - v[i] * v[i]);
    } else {
        const double *v = y->value.data, *dy = gy;
        double *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * (1 - v[i] * v[i]);
    }
    return YK_OK;
}

UNARY_BUILD(tanh)
UNARY_DEF(tanh);

/* --------------------------------------------------------------- sigmoid */

/* Stable for large |x|: never exp() of a large positive number. */
static double sigmoid_d(double x)
{
    if (x >= 0)
        return 1 / (1 + exp(-x));
    double e = exp(x);
    return e / (1 + e);
}

static float sigmoid_f(float x)
{
    if (x >= 0)
        return 1 / (1 + expf(-x));
    float e = expf(x);
    return e / (1 + e);
}

yk_node *yk_sigmoid(yk_graph *g, yk_node *x)
{
    yk_node *y = unary_node(g, &yk_op_sigmoid, x);
    if (!y)
        return NULL;
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *a = x->value.data;
        float *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = sigmoid_f(a[i]);
    } else {
        const double *a = x->value.data;
        double *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = sigmoid_d(a[i]);
    }
    return y;
}

static yk_status backward_sigmoid(yk_graph *g, yk_node *y, const void *gy)
{
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *v = y->value.data, *dy = gy;
        float *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * v[i] * (1 - v[i]);
    } else {
        const double *v = y->value.data, *dy = gy;
        double *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * v[i] * (1 - v[i]);
    }
    return YK_OK;
}

UNARY_BUILD(sigmoid)
UNARY_DEF(sigmoid);

/* ------------------------------------------------------------------- exp */

yk_node *yk_exp(yk_graph *g, yk_node *x)
{
    yk_node *y = unary_node(g, &yk_op_exp, x);
    if (!y)
        return NULL;
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *a = x->value.data;
        float *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = expf(a[i]);
    } else {
        const double *a = x->value.data;
        double *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = exp(a[i]);
    }
    return y;
}

static yk_status backward_exp(yk_graph *g, yk_node *y, const void *gy)
{
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *v = y->value.data, *dy = gy;
        float *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * v[i];
    } else {
        const double *v = y->value.data, *dy = gy;
        double *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * v[i];
    }
    return YK_OK;
}

UNARY_BUILD(exp)
UNARY_DEF(exp);

/* ------------------------------------------------------------------- log */

/* log of a negative number is NaN and of 0 is -inf, as in PyTorch. */
yk_node *yk_log(yk_graph *g, yk_node *x)
{
    yk_node *y = unary_node(g, &yk_op_log, x);
    if (!y)
        return NULL;
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *a = x->value.data;
        float *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = logf(a[i]);
    } else {
        const double *a = x->value.data;
        double *b = y->value.data;
        for (int64_t i = 0; i < n; i++)
            b[i] = log(a[i]);
    }
    return y;
}

static yk_status backward_log(yk_graph *g, yk_node *y, const void *gy)
{
    int64_t n = y->value.numel;
    if (y->value.dtype == YK_F32) {
        const float *x = y->inputs[0]->value.data, *dy = gy;
        float *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] / x[i];
    } else {
        const double *x = y->inputs[0]->value.data, *dy = gy;
        double *dx = yk__grad_dense(g, y, 0);
        if (!dx)
            return g->status;
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] / x[i];
    }
    return YK_OK;
}

UNARY_BUILD(log)
UNARY_DEF(log);
