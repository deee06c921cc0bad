/*
 * softmax.c -- softmax and log_softmax along one dim.
 *
 * The dim splits the input into outer x n x inner: each of the outer * inner
 * vectors of n elements (stride inner) is normalized on its own. Both ops
 * subtract the vector's max before exp, so logits of +-1e4 stay finite:
 *
 *   softmax:     y = exp(x - m) / s,        s = sum exp(x - m)
 *   log_softmax: y = (x - m) - log(s)   (x - m first: exact near the max)
 *
 * Backward uses the saved output y, per vector:
 *
 *   softmax:     dx = y * (dy - sum(dy * y))
 *   log_softmax: dx = dy - exp(y) * sum(dy)
 *
 * A 0-d input is a vector of one element, as in PyTorch (dim 0 or -1).
 */
#include "../lib/engine.h"

#include <limits.h>
#include <math.h>

/* The vectors of one softmax: outer blocks of n * inner elements. */
typedef struct softmax_plan {
    int64_t outer, n, inner;
} softmax_plan;

/* Checks the input and the dim and makes the output node, or NULL. */
static yk_node *softmax_node(yk_graph *g, const yk_op_def *op, yk_node *x,
                             int dim)
{
    if (!yk__inputs_ok(g, op->name, 1, &x))
        return NULL;
    const yk_tensor *in = yk_value(x);
    if (!in)
        return NULL;
    if (in->dtype == YK_I64)
        return yk__fail(g, YK_EDTYPE, "%s: input is i64, needs f32 or f64",
                        op->name);
    int ndim = in->ndim ? in->ndim : 1; /* 0-d: one vector of one element */
    int d = yk__norm_dim(dim, ndim);
    if (d < 0)
        return yk__fail(g, YK_EINVAL, "%s: dim = %d is out of range for a "
                        "%d-d input (expected [%d, %d])", op->name, dim,
                        in->ndim, -ndim, ndim - 1);
    softmax_plan p = {1, 1, 1};
    for (int k = 0; k < in->ndim; k++) {
        if (k < d)
            p.outer *= in->shape[k];
        else if (k == d)
            p.n = in->shape[k];
        else
            p.inner *= in->shape[k];
    }
    yk_node *y = yk__node_new(g, op, 1, &x, in->dtype, in->ndim, in->shape);
    if (!y)
        return NULL;
    softmax_plan *s = yk__save(y, sizeof *s);
    if (!s)
        return NULL;
    *s = p;
    return y;
}

/* ------------------------------------------------------------- kernels */

/* One vector x[0], x[st], ..., x[(n-1) st] into y (same strides). */
static void softmax_vec_d(const double *x, double *y, int64_t n, int64_t st,
                          bool log_out)
{
    double m = -INFINITY;
    for (int64_t k = 0; k < n; k++)
        m = x[k * st] > m ? x[k * st] : m;
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        s += exp(x[k * st] - m);
    if (log_out) {
        double ls = log(s);
        for (int64_t k = 0; k < n; k++)
            y[k * st] = (x[k * st] - m) - ls;
    } else {
        for (int64_t k = 0; k < n; k++)
            y[k * st] = exp(x[k * st] - m) / s;
    }
}

static void softmax_vec_f(const float *x, float *y, int64_t n, int64_t st,
                          bool log_out)
{
    float m = -INFINITY;
    for (int64_t k = 0; k < n; k++)
        m = x[k * st] > m ? x[k * st] : m;
    float s = 0;
    for (int64_t k = 0; k < n; k++)
        s += expf(x[k * st] - m);
    if (log_out) {
        float ls = logf(s);
        for (int64_t k = 0; k < n; k++)
            y[k * st] = (x[k * st] - m) - ls;
    } else {
        for (int64_t k = 0; k < n; k++)
            y[k * st] = expf(x[k * st] - m) / s;
    }
}

/* Runs the vector kernel over every vector of the plan. */
static void softmax_forward(yk_node *y, const yk_tensor *in, bool log_out)
{
    const softmax_plan *p = y->saved;
    if (y->value.numel == 0)
        return; /* the input's data may be NULL */
    for (int64_t o = 0; o < p->outer; o++) {
        for (int64_t i = 0; i < p->inner; i++) {
            int64_t base = o * p->n * p->inner + i;
            if (in->dtype == YK_F32)
                softmax_vec_f((const float *)in->data + base,
                              (float *)y->value.data + base, p->n, p->inner,
                              log_out);
            else
                softmax_vec_d((const double *)in->data + base,
                              (double *)y->value.data + base, p->n, p->inner,
                              log_out);
        }
    }
}

/* dx += y * (dy - sum(dy * y)) along one vector. */
static void softmax_grad_d(const double *y, const double *dy, double *dx,
                           int64_t n, int64_t st)
{
    double dot = 0;
    for (int64_t k = 0; k < n; k++)
        dot += dy[k * st] * y[k * st];
    for (int64_t k = 0; k < n; k++)
        dx[k * st] += y[k * st] * (dy[k * st] - dot);
}

static void softmax_grad_f(const float *y, const float *dy, float *dx,
                           int64_t n, int64_t st)
{
    float dot = 0;
    for (int64_t k = 0; k < n; k++)
        dot += dy[k * st] * y[k * st];
    for (int64_t k = 0; k < n; k++)
        dx[k * st] += y[k * st] * (dy[k * st] - dot);
}

/* dx += dy - exp(y) * sum(dy) along one vector (y = log_softmax). */
static void log_softmax_grad_d(const double *y, const double *dy, double *dx,
                               int64_t n, int64_t st)
{
    double sum = 0;
    for (int64_t k = 0; k < n; k++)
        sum += dy[k * st];
    for (int64_t k = 0; k < n; k++)
        dx[k * st] += dy[k * st] - exp(y[k * st]) * sum;
}

static void log_softmax_grad_f(const float *y, const float *dy, float *dx,
                               int64_t n, int64_t st)
{
    float sum = 0;
    for (int64_t k = 0; k < n; k++)
        sum += dy[k * st];
    for (int64_t k = 0; k < n; k++)
        dx[k * st] += dy[k * st] - expf(y[k * st]) * sum;
}

/* Runs the matching gradient kernel over every vector. */
static yk_status softmax_backward(yk_graph *g, yk_node *y, const void *gy,
                                  bool log_out)
{
    const softmax_plan *p = y->saved;
    void *dx = yk__grad_dense(g, y, 0);
    if (!dx)
        return g->status;
    for (int64_t o = 0; o < p->outer; o++) {
        for (int64_t i = 0; i < p->inner; i++) {
            int64_t b = o * p->n * p->inner + i;
            if (y->value.dtype == YK_F32) {
                const float *yv = (const float *)y->value.data + b;
                const float *d = (const float *)gy + b;
                float *out = (float *)dx + b;
                if (log_out)
                    log_softmax_grad_f(yv, d, out, p->n, p->inner);
                else
                    softmax_grad_f(yv, d, out, p->n, p->inner);
            } else {
                const double *yv = (const double *)y->value.data + b;
                const double *d = (const double *)gy + b;
                double *out = (double *)dx + b;
                if (log_out)
                    log_softmax_grad_d(yv, d, out, p->n, p->inner);
                else
                    softmax_grad_d(yv, d, out, p->n, p->inner);
            }
        }
    }
    return YK_OK;
}

/* dim must fit an int before the op sees it. */
static bool dim_attr_ok(yk_graph *g, const char *op, const yk_attr_value *a)
{
    if (a->i >= INT_MIN && a->i <= INT_MAX)
        return true;
    yk__fail(g, YK_EINVAL, "%s: dim = %lld is out of range", op,
             (long long)a->i);
    return false;
}

/* --------------------------------------------------------------- softmax */

yk_node *yk_softmax(yk_graph *g, yk_node *x, int dim)
{
    yk_node *y = softmax_node(g, &yk_op_softmax, x, dim);
    if (y)
        softmax_forward(y, &x->value, false);
    return y;
}

static yk_status backward_softmax(yk_graph *g, yk_node *y, const void *gy)
{
    return softmax_backward(g, y, gy, false);
}

static yk_node *build_softmax(yk_graph *g, yk_node *const *in, int n,
                              const yk_attr_value *a)
{
    (void)n;
    if (!dim_attr_ok(g, "softmax", &a[0]))
        return NULL;
    return yk_softmax(g, in[0], (int)a[0].i);
}

const yk_op_def yk_op_softmax = {
    .name = "softmax",
    .n_inputs = 1,
    .input_names = {"input"},
    .n_attrs = 1,
    .attrs = {{.name = "dim", .type = YK_ATTR_INT, .required = true}},
    .build = build_softmax,
    .backward = backward_softmax,
};

/* ----------------------------------------------------------- log_softmax */

yk_node *yk_log_softmax(yk_graph *g, yk_node *x, int dim)
{
    yk_node *y = softmax_node(g, &yk_op_log_softmax, x, dim);
    if (y)
        softmax_forward(y, &x->value, true);
    return y;
}

static yk_status backward_log_softmax(yk_graph *g, yk_node *y, const void *gy)
{
    return softmax_backward(g, y, gy, true);
}

static yk_node *build_log_softmax(yk_graph *g, yk_node *const *in, int n,
                                  const yk_attr_value *a)
{
    (void)n;
    if (!dim_attr_ok(g, "log_softmax", &a[0]))
        return NULL;
    return yk_log_softmax(g, in[0], (int)a[0].i);
}

const yk_op_def yk_op_log_softmax = {
    .name = "log_softmax",
    .n_inputs = 1,
    .input_names = {"input"},
    .n_attrs = 1,
    .attrs = {{.name = "dim", .type = YK_ATTR_INT, .required = true}},
    .build = build_log_softmax,
    .backward = backward_log_softmax,
};
