/*
 * loss.c -- losses with a reduction: cross_entropy and mse_loss. Both give
 * a 0-d output; mean over no elements is 0 / 0 = NaN, as in PyTorch.
 *
 * cross_entropy of logits x (N, C) and targets t (N):
 *
 *   loss_i = lse_i - x[i, t_i],   lse_i = m_i + log sum_j exp(x[i, j] - m_i)
 *
 * with m_i the row's max, so logits of +-1e4 stay finite; it is computed as
 * log(sum) - (x[i, t_i] - m_i), exact when the target holds the max.
 * Forward saves m_i and log sum_i per row (2N numbers, not the N x C
 * softmax); backward recomputes
 *
 *   dx[i, j] = w * (exp((x[i, j] - m_i) - log sum_i) - [j == t_i]),
 *   w = dy (/ N)
 *
 * (x - m first again: exp(x - lse) would lose lse's rounding, about 1e-4
 * relative in f32 for logits of 1e4.)
 *
 * mse_loss of input x and target t (same shape): sum (x - t)^2 (/ numel);
 * dx = 2 w (x - t) and dt = -dx, so a target that requires grad gets one.
 */
#include "../lib/engine.h"

#include <math.h>
#include <string.h>

static bool reduction_ok(yk_graph *g, const char *op, yk_reduction r)
{
    if (r == YK_REDUCE_MEAN || r == YK_REDUCE_SUM)
        return true;
    yk__fail(g, YK_EINVAL, "%s: reduction = %d is not YK_REDUCE_MEAN or "
             "YK_REDUCE_SUM", op, (int)r);
    return false;
}

/* Maps a case file's reduction string; fails the graph on another name. */
static bool parse_reduction(yk_graph *g, const char *op, const char *s,
                            yk_reduction *out)
{
    if (!s || strcmp(s, "mean") == 0) { /* absent: the default */
        *out = YK_REDUCE_MEAN;
        return true;
    }
    if (strcmp(s, "sum") == 0) {
        *out = YK_REDUCE_SUM;
        return true;
    }
    yk__fail(g, YK_EINVAL, "%s: reduction = \"%s\" is not one of \"mean\", "
             "\"sum\"", op, s);
    return false;
}

/* The scale of the output gradient: 1 for sum, 1 / count for mean. */
static double reduction_scale(yk_reduction r, int64_t count)
{
    return r == YK_REDUCE_SUM ? 1.0 : 1.0 / (double)count;
}

typedef struct loss_saved {
    yk_reduction red;
    void *stats; /* cross_entropy: per row max and log sum, input's dtype */
} loss_saved;

/* --------------------------------------------------------- cross_entropy */

/* Dtypes, shapes and target range; false after failing the graph. */
static bool cross_entropy_check(yk_graph *g, const yk_tensor *x,
                                const yk_tensor *t, yk_reduction red)
{
    char xs[96], ts[96];
    if (!reduction_ok(g, "cross_entropy", red))
        return false;
    if (x->dtype == YK_I64) {
        yk__fail(g, YK_EDTYPE, "cross_entropy: input is i64, needs f32 or "
                 "f64 logits");
        return false;
    }
    if (t->dtype != YK_I64) {
        yk__fail(g, YK_EDTYPE, "cross_entropy: target is %s, needs i64 class "
                 "indices", yk_dtype_name(t->dtype));
        return false;
    }
    if (x->ndim != 2) {
        yk__fail(g, YK_ESHAPE, "cross_entropy: input has shape %s, needs "
                 "(N, C) logits", yk_shape_format(x, xs, sizeof xs));
        return false;
    }
    if (t->ndim != 1 || t->shape[0] != x->shape[0]) {
        yk__fail(g, YK_ESHAPE, "cross_entropy: target has shape %s, needs "
                 "[%lld] for input of shape %s",
                 yk_shape_format(t, ts, sizeof ts), (long long)x->shape[0],
                 yk_shape_format(x, xs, sizeof xs));
        return false;
    }
    const int64_t *tv = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        if (tv[i] < 0 || tv[i] >= x->shape[1]) {
            yk__fail(g, YK_ERANGE, "cross_entropy: target[%lld] = %lld is out "
                     "of range for %lld classes (expected [0, %lld))",
                     (long long)i, (long long)tv[i], (long long)x->shape[1],
                     (long long)x->shape[1]);
            return false;
        }
    }
    return true;
}

/* Each row's max and log sum into stats[2i], stats[2i + 1]; returns the
 * summed losses. f64. */
static double cross_entropy_rows_d(const double *x, const int64_t *t,
                                   double *stats, int64_t n, int64_t c)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const double *row = x + i * c;
        double m = -INFINITY;
        for (int64_t j = 0; j < c; j++)
            m = row[j] > m ? row[j] : m;
        double s = 0;
        for (int64_t j = 0; j < c; j++)
            s += exp(row[j] - m);
        double ls = log(s);
        stats[2 * i] = m;
        stats[2 * i + 1] = ls;
        total += ls - (row[t[i]] - m);
    }
    return total;
}

/* f32: rows in float as PyTorch does; the total in double, as it is one
 * number and may sum many rows. */
static double cross_entropy_rows_f(const float *x, const int64_t *t,
                                   float *stats, int64_t n, int64_t c)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = x + i * c;
        float m = -INFINITY;
        for (int64_t j = 0; j < c; j++)
            m = row[j] > m ? row[j] : m;
        float s = 0;
        for (int64_t j = 0; j < c; j++)
            s += expf(row[j] - m);
        float ls = logf(s);
        stats[2 * i] = m;
        stats[2 * i + 1] = ls;
        total += (double)(ls - (row[t[i]] - m));
    }
    return total;
}

yk_node *yk_cross_entropy(yk_graph *g, yk_node *logits, yk_node *target,
                          yk_reduction red)
{
    yk_node *in[2] = {logits, target};
    if (!yk__inputs_ok(g, "cross_entropy", 2, in))
        return NULL;
    const yk_tensor *x = yk_value(logits), *t = yk_value(target);
    if (!x || !t || !cross_entropy_check(g, x, t, red))
        return NULL;
    yk_node *y = yk__node_new(g, &yk_op_cross_entropy, 2, in, x->dtype, 0,
                              NULL);
    if (!y)
        return NULL;
    loss_saved *s = yk__save(y, sizeof *s);
    int64_t n = x->shape[0], c = x->shape[1];
    void *stats = yk__arena_alloc(g, (size_t)(2 * n) *
                                         yk_dtype_size(x->dtype));
    if (!s || !stats)
        return NULL;
    s->red = red;
    s->stats = stats;
    double total = x->dtype == YK_F32
        ? cross_entropy_rows_f(x->data, t->data, stats, n, c)
        : cross_entropy_rows_d(x->data, t->data, stats, n, c);
    if (red == YK_REDUCE_MEAN)
        total /= (double)n; /* N = 0: NaN, as PyTorch */
    if (x->dtype == YK_F32)
        *(float *)y->value.data = (float)total;
    else
        *(double *)y->value.data = total;
    return y;
}

static void cross_entropy_grad_d(const double *x, const int64_t *t,
                                 const double *stats, double w, double *dx,
                                 int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < c; j++)
            dx[i * c + j] += w * exp((x[i * c + j] - stats[2 * i]) -
                                     stats[2 * i + 1]);
        dx[i * c + t[i]] -= w;
    }
}

static void cross_entropy_grad_f(const float *x, const int64_t *t,
                                 const float *stats, float w, float *dx,
                                 int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < c; j++)
            dx[i * c + j] += w * expf((x[i * c + j] - stats[2 * i]) -
                                      stats[2 * i + 1]);
        dx[i * c + t[i]] -= w;
    }
}

/* Only the logits get a gradient: the target is an index input. */
static yk_status backward_cross_entropy(yk_graph *g, yk_node *y,
                                        const void *gy)
{
    const loss_saved *s = y->saved;
    const yk_tensor *x = &y->inputs[0]->value, *t = &y->inputs[1]->value;
    void *dx = yk__grad_dense(g, y, 0);
    if (!dx)
        return g->status;
    int64_t n = x->shape[0], c = x->shape[1];
    if (n == 0)
        return YK_OK;
    double scale = reduction_scale(s->red, n);
    if (x->dtype == YK_F32)
        cross_entropy_grad_f(x->data, t->data, s->stats,
                             (float)(*(const float *)gy * scale), dx, n, c);
    else
        cross_entropy_grad_d(x->data, t->data, s->stats,
                             *(const double *)gy * scale, dx, n, c);
    return YK_OK;
}

/* attrs: reduction. */
static yk_node *build_cross_entropy(yk_graph *g, yk_node *const *in, int n,
                                    const yk_attr_value *a)
{
    (void)n;
    yk_reduction red;
    if (!parse_reduction(g, "cross_entropy", a[0].s, &red))
        return NULL;
    return yk_cross_entropy(g, in[0], in[1], red);
}

const yk_op_def yk_op_cross_entropy = {
    .name = "cross_entropy",
    .n_inputs = 2,
    .input_names = {"input", "target"},
    .index_inputs = 1u << 1,
    .n_attrs = 1,
    .attrs = {{.name = "reduction", .type = YK_ATTR_STRING,
               .def_string = "mean"}},
    .build = build_cross_entropy,
    .backward = backward_cross_entropy,
};

/* -------------------------------------------------------------- mse_loss */

static bool mse_check(yk_graph *g, const yk_tensor *x, const yk_tensor *t,
                      yk_reduction red)
{
    char xs[96], ts[96];
    if (!reduction_ok(g, "mse_loss", red))
        return false;
    if (x->dtype == YK_I64) {
        yk__fail(g, YK_EDTYPE, "mse_loss: input is i64, needs f32 or f64");
        return false;
    }
    if (t->dtype != x->dtype) {
        yk__fail(g, YK_EDTYPE, "mse_loss: target is %s but input is %s",
                 yk_dtype_name(t->dtype), yk_dtype_name(x->dtype));
        return false;
    }
    if (!yk__same_shape(x, t)) {
        yk__fail(g, YK_ESHAPE, "mse_loss: target has shape %s but input has "
                 "shape %s", yk_shape_format(t, ts, sizeof ts),
                 yk_shape_format(x, xs, sizeof xs));
        return false;
    }
    return true;
}

static double squared_error_d(const double *x, const double *t, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (x[i] - t[i]) * (x[i] - t[i]);
    return s;
}

/* f32 differences, a double total (one number, possibly many terms). */
static double squared_error_f(const float *x, const float *t, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        float d = x[i] - t[i];
        s += (double)(d * d);
    }
    return s;
}

yk_node *yk_mse_loss(yk_graph *g, yk_node *input, yk_node *target,
                     yk_reduction red)
{
    yk_node *in[2] = {input, target};
    if (!yk__inputs_ok(g, "mse_loss", 2, in))
        return NULL;
    const yk_tensor *x = yk_value(input), *t = yk_value(target);
    if (!x || !t || !mse_check(g, x, t, red))
        return NULL;
    yk_node *y = yk__node_new(g, &yk_op_mse_loss, 2, in, x->dtype, 0, NULL);
    loss_saved *s = y ? yk__save(y, sizeof *s) : NULL;
    if (!s)
        return NULL;
    s->red = red;
    double total = x->dtype == YK_F32
        ? squared_error_f(x->data, t->data, x->numel)
        : squared_error_d(x->data, t->data, x->numel);
    if (red == YK_REDUCE_MEAN)
        total /= (double)x->numel; /* no elements: NaN, as PyTorch */
    if (x->dtype == YK_F32)
        *(float *)y->value.data = (float)total;
    else
        *(double *)y->value.data = total;
    return y;
}

/* dst += sign * w * (x - t); dst may be NULL (that side needs no grad). */
static void mse_grad_d(const double *x, const double *t, double w,
                       double *dx, double *dt, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double d = w * (x[i] - t[i]);
        if (dx)
            dx[i] += d;
        if (dt)
            dt[i] -= d;
    }
}

static void mse_grad_f(const float *x, const float *t, float w, float *dx,
                       float *dt, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float d = w * (x[i] - t[i]);
        if (dx)
            dx[i] += d;
        if (dt)
            dt[i] -= d;
    }
}

static yk_status backward_mse_loss(yk_graph *g, yk_node *y, const void *gy)
{
    const loss_saved *s = y->saved;
    const yk_tensor *x = &y->inputs[0]->value, *t = &y->inputs[1]->value;
    void *dx = yk__grad_dense(g, y, 0);
    void *dt = yk__grad_dense(g, y, 1);
    if (g->status != YK_OK)
        return g->status;
    if (x->numel == 0)
        return YK_OK;
    double w = 2 * reduction_scale(s->red, x->numel);
    if (x->dtype == YK_F32)
        mse_grad_f(x->data, t->data, (float)(*(const float *)gy * w), dx, dt,
                   x->numel);
    else
        mse_grad_d(x->data, t->data, *(const double *)gy * w, dx, dt,
                   x->numel);
    return YK_OK;
}

/* attrs: reduction. */
static yk_node *build_mse_loss(yk_graph *g, yk_node *const *in, int n,
                               const yk_attr_value *a)
{
    (void)n;
    yk_reduction red;
    if (!parse_reduction(g, "mse_loss", a[0].s, &red))
        return NULL;
    return yk_mse_loss(g, in[0], in[1], red);
}

const yk_op_def yk_op_mse_loss = {
    .name = "mse_loss",
    .n_inputs = 2,
    .input_names = {"input", "target"},
    .n_attrs = 1,
    .attrs = {{.name = "reduction", .type = YK_ATTR_STRING,
               .def_string = "mean"}},
    .build = build_mse_loss,
    .backward = backward_mse_loss,
};
