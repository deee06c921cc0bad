/*
 * reduce.c -- sum and mean over all dims, one dim or several, as
 * torch.sum / torch.mean with dim and keepdim.
 *
 * Both walk a REDUCTION PLAN over the input in memory order: its dims with
 * size-1 dims dropped and adjacent dims merged when they are both reduced or
 * both kept, with the output's stride on each (0 on reduced dims). The last
 * plan dim is then either reduced (each row of the input sums into one output
 * element) or kept (each row adds elementwise into a row of the output), so
 * both cases are plain loops. Reducing every dim is one row.
 *
 * Backward sends dy (divided by the number of reduced elements for mean)
 * back to every input element that was reduced into it: the same walk with
 * the roles of input and output swapped.
 *
 * As PyTorch: dims may be negative; a 0-d input takes dim 0 or -1; the mean
 * of zero elements is NaN (0 / 0) and their sum is 0; ndims == 0 (or dims
 * NULL) reduces every dim.
 */
#include "../lib/engine.h"

#include <limits.h>

typedef struct reduce_saved {
    bool reduced[YK_MAX_DIMS]; /* per input dim */
    int64_t count;             /* elements reduced into each output one */
} reduce_saved;

/* ------------------------------------------------------------ the plan */

typedef struct rplan {
    int ndim;                  /* >= 1 */
    int64_t size[YK_MAX_DIMS];
    int64_t sy[YK_MAX_DIMS];   /* output strides; 0 on reduced dims */
} rplan;

static void plan_make(const yk_tensor *x, const bool *reduced, rplan *p)
{
    /* Output strides of the kept dims, in the input's dim order. */
    int64_t sy[YK_MAX_DIMS], stride = 1;
    for (int k = x->ndim - 1; k >= 0; k--) {
        sy[k] = reduced[k] ? 0 : stride;
        if (!reduced[k])
            stride *= x->shape[k];
    }
    p->ndim = 0;
    for (int k = 0; k < x->ndim; k++) {
        int64_t n = x->shape[k];
        if (n == 1)
            continue;
        int last = p->ndim - 1;
        /* The input is contiguous, so only the output decides a merge. */
        if (last >= 0 && p->sy[last] == sy[k] * n) {
            p->size[last] *= n;
            p->sy[last] = sy[k];
            continue;
        }
        p->size[p->ndim] = n;
        p->sy[p->ndim] = sy[k];
        p->ndim++;
    }
    if (p->ndim == 0) { /* one element */
        p->ndim = 1;
        p->size[0] = 1;
        p->sy[0] = 0;
    }
}

/* Output offset at the start of the current input row. */
typedef struct walk {
    int64_t idx[YK_MAX_DIMS];
    int64_t oy;
} walk;

static void walk_next(const rplan *p, walk *w)
{
    for (int k = p->ndim - 2; k >= 0; k--) {
        w->oy += p->sy[k];
        if (++w->idx[k] < p->size[k])
            return;
        w->oy -= p->sy[k] * p->size[k];
        w->idx[k] = 0;
    }
}

/* ------------------------------------------------------------- forward */

static void sum_f64(const rplan *p, const double *x, double *y, int64_t numel)
{
    int64_t n = p->size[p->ndim - 1], rows = numel / n;
    bool row_reduced = p->sy[p->ndim - 1] == 0;
    walk w = {{0}, 0};
    for (int64_t r = 0; r < rows; r++, x += n) {
        if (row_reduced) {
            double s = 0;
            for (int64_t i = 0; i < n; i++)
                s += x[i];
            y[w.oy] += s;
        } else {
            double *dst = y + w.oy;
            for (int64_t i = 0; i < n; i++)
                dst[i] += x[i];
        }
        walk_next(p, &w);
    }
}

/* Rows summed into one element add up in double. */
static void sum_f32(const rplan *p, const float *x, float *y, int64_t numel)
{
    int64_t n = p->size[p->ndim - 1], rows = numel / n;
    bool row_reduced = p->sy[p->ndim - 1] == 0;
    walk w = {{0}, 0};
    for (int64_t r = 0; r < rows; r++, x += n) {
        if (row_reduced) {
            double s = 0;
            for (int64_t i = 0; i < n; i++)
                s += x[i];
            y[w.oy] += (float)s;
        } else {
            float *dst = y + w.oy;
            for (int64_t i = 0; i < n; i++)
                dst[i] += x[i];
        }
        walk_next(p, &w);
    }
}

/* Which input dims dims[0..ndims) name; every dim when there are none. A
 * 0-d input takes dim 0 or -1, as PyTorch, and reduces its one element. */
static bool dims_to_mask(yk_graph *g, const char *op, const yk_tensor *x,
                         int ndims, const int *dims, bool *reduced)
{
    bool all = ndims == 0 || !dims;
    for (int k = 0; k < YK_MAX_DIMS; k++)
        reduced[k] = all && k < x->ndim;
    if (all)
        return true;
    int wrap = x->ndim > 0 ? x->ndim : 1;
    bool seen[YK_MAX_DIMS] = {false};
    for (int i = 0; i < ndims; i++) {
        int d = yk__norm_dim(dims[i], wrap);
        if (d < 0) {
            yk__fail(g, YK_EINVAL, "%s: dim = %d is out of range for a %d-d "
                     "input (expected [%d, %d])", op, dims[i], x->ndim,
                     -wrap, wrap - 1);
            return false;
        }
        if (seen[d]) {
            yk__fail(g, YK_EINVAL, "%s: dim %d appears more than once in dims "
                     "(dims[%d] = %d)", op, d, i, dims[i]);
            return false;
        }
        seen[d] = true;
        if (x->ndim > 0)
            reduced[d] = true;
    }
    return true;
}

static yk_node *reduce(yk_graph *g, const yk_op_def *op, yk_node *x,
                       int ndims, const int *dims, bool keepdim, bool mean)
{
    if (!yk__inputs_ok(g, op->name, 1, &x))
        return NULL;
    const yk_tensor *v = yk_value(x);
    if (!v)
        return NULL;
    if (v->dtype == YK_I64)
        return yk__fail(g, YK_EDTYPE, "%s: input is i64, needs f32 or f64",
                        op->name);
    if (ndims < 0)
        return yk__fail(g, YK_EINVAL, "%s: ndims = %d is negative", op->name,
                        ndims);
    reduce_saved r;
    if (!dims_to_mask(g, op->name, v, ndims, dims, r.reduced))
        return NULL;
    int out_ndim = 0;
    int64_t shape[YK_MAX_DIMS];
    r.count = 1;
    for (int k = 0; k < v->ndim; k++) {
        if (r.reduced[k])
            r.count *= v->shape[k];
        if (!r.reduced[k] || keepdim)
            shape[out_ndim++] = r.reduced[k] ? 1 : v->shape[k];
    }
    yk_node *y = yk__node_new(g, op, 1, &x, v->dtype, out_ndim, shape);
    reduce_saved *s = y ? yk__save(y, sizeof *s) : NULL;
    if (!s)
        return NULL;
    *s = r;
    rplan p;
    plan_make(v, r.reduced, &p);
    int64_t n_out = y->value.numel;
    if (v->dtype == YK_F32) {
        float *out = yk__data(y);
        if (v->numel > 0)
            sum_f32(&p, v->data, out, v->numel);
        for (int64_t i = 0; mean && i < n_out; i++)
            out[i] /= (float)r.count; /* 0 / 0 = NaN when count is 0 */
    } else {
        double *out = yk__data(y);
        if (v->numel > 0)
            sum_f64(&p, v->data, out, v->numel);
        for (int64_t i = 0; mean && i < n_out; i++)
            out[i] /= (double)r.count;
    }
    return y;
}

yk_node *yk_sum(yk_graph *g, yk_node *x, int ndims, const int *dims,
                bool keepdim)
{
    return reduce(g, &yk_op_sum, x, ndims, dims, keepdim, false);
}

yk_node *yk_mean(yk_graph *g, yk_node *x, int ndims, const int *dims,
                 bool keepdim)
{
    return reduce(g, &yk_op_mean, x, ndims, dims, keepdim, true);
}

/* ------------------------------------------------------------ backward */

/* dx[i] += dy[j] / count for every input element i reduced into j. */
static void spread_f64(const rplan *p, const double *dy, double *dx,
                       int64_t numel, double count)
{
    int64_t n = p->size[p->ndim - 1], rows = numel / n;
    bool row_reduced = p->sy[p->ndim - 1] == 0;
    walk w = {{0}, 0};
    for (int64_t r = 0; r < rows; r++, dx += n) {
        if (row_reduced) {
            const double v = dy[w.oy] / count;
            for (int64_t i = 0; i < n; i++)
                dx[i] += v;
        } else {
            const double *src = dy + w.oy;
            for (int64_t i = 0; i < n; i++)
                dx[i] += src[i] / count;
        }
        walk_next(p, &w);
    }
}

static void spread_f32(const rplan *p, const float *dy, float *dx,
                       int64_t numel, float count)
{
    int64_t n = p->size[p->ndim - 1], rows = numel / n;
    bool row_reduced = p->sy[p->ndim - 1] == 0;
    walk w = {{0}, 0};
    for (int64_t r = 0; r < rows; r++, dx += n) {
        if (row_reduced) {
            const float v = dy[w.oy] / count;
            for (int64_t i = 0; i < n; i++)
                dx[i] += v;
        } else {
            const float *src = dy + w.oy;
            for (int64_t i = 0; i < n; i++)
                dx[i] += src[i] / count;
        }
        walk_next(p, &w);
    }
}

static yk_status reduce_backward(yk_graph *g, yk_node *y, const void *gy,
                                 bool mean)
{
    const reduce_saved *s = y->saved;
    const yk_tensor *x = &y->inputs[0]->value;
    void *dx = yk__grad_dense(g, y, 0);
    if (!dx)
        return g->status;
    if (x->numel == 0)
        return YK_OK;
    rplan p;
    plan_make(x, s->reduced, &p);
    /* Dividing by 1 is exact: sum shares mean's kernel. */
    int64_t count = mean ? s->count : 1;
    if (x->dtype == YK_F32)
        spread_f32(&p, gy, dx, x->numel, (float)count);
    else
        spread_f64(&p, gy, dx, x->numel, (double)count);
    return YK_OK;
}

static yk_status backward_sum(yk_graph *g, yk_node *y, const void *gy)
{
    return reduce_backward(g, y, gy, false);
}

static yk_status backward_mean(yk_graph *g, yk_node *y, const void *gy)
{
    return reduce_backward(g, y, gy, true);
}

/* ------------------------------------------------------------ registry */

/* attrs: dim (null, an int or a list), keepdim. */
static yk_node *build_reduce(yk_graph *g, const yk_op_def *op, yk_node *x,
                             const yk_attr_value *a)
{
    if (!yk__inputs_ok(g, op->name, 1, &x))
        return NULL;
    int dims[YK_MAX_DIMS];
    int n = a[0].is_null ? 0 : a[0].n;
    for (int i = 0; i < n; i++) {
        if (a[0].list[i] < INT_MIN || a[0].list[i] > INT_MAX)
            return yk__fail(g, YK_EINVAL, "%s: dim = %lld is out of range",
                            op->name, (long long)a[0].list[i]);
        dims[i] = (int)a[0].list[i];
    }
    bool keepdim = a[1].i != 0;
    if (op == &yk_op_mean)
        return yk_mean(g, x, n, n ? dims : NULL, keepdim);
    return yk_sum(g, x, n, n ? dims : NULL, keepdim);
}

static yk_node *build_sum(yk_graph *g, yk_node *const *in, int n,
                          const yk_attr_value *a)
{
    (void)n;
    return build_reduce(g, &yk_op_sum, in[0], a);
}

static yk_node *build_mean(yk_graph *g, yk_node *const *in, int n,
                           const yk_attr_value *a)
{
    (void)n;
    return build_reduce(g, &yk_op_mean, in[0], a);
}

#define REDUCE_ATTRS                                                         \
    .n_attrs = 2,                                                            \
    .attrs = {{.name = "dim", .type = YK_ATTR_DIMS, .nullable = true},       \
              {.name = "keepdim", .type = YK_ATTR_BOOL, .def_int = 0}}

const yk_op_def yk_op_sum = {
    .name = "sum", .n_inputs = 1, .input_names = {"input"}, REDUCE_ATTRS,
    .build = build_sum, .backward = backward_sum};

const yk_op_def yk_op_mean = {
    .name = "mean", .n_inputs = 1, .input_names = {"input"}, REDUCE_ATTRS,
    .build = build_mean, .backward = backward_mean};
