/*
 * cat.c -- concatenation along one dim.
 *
 * A column concatenation of 2-D tensors, cat([shared, extra], dim=1), is the
 * seed's extended EmbeddingBag table. It is made LAZY: no [V, D1 + D2]
 * buffer is allocated; embedding ops read its rows with yk__row(), which
 * gathers from the parts, and send their gradient back as rows, which
 * backward_rows splits by columns into row gradients of each part. Its value
 * is only made if something else asks for it (yk_value).
 *
 * Offsets are computed over every input, also those that need no gradient:
 * cat(constant, param) must hand the param its own slice.
 */
#include "../lib/engine.h"

#include <string.h>

typedef struct cat_saved {
    int dim;
} cat_saved;

static yk_node *check_and_shape(yk_graph *g, int n, yk_node *const *xs,
                                int dim, int *ndim_out, int64_t *shape)
{
    if (n < 1)
        return yk__fail(g, YK_EINVAL, "cat: needs at least one tensor, got %d",
                        n);
    if (!yk__inputs_ok(g, "cat", n, xs))
        return NULL;
    const yk_tensor *first = &xs[0]->value;
    if (first->ndim == 0)
        return yk__fail(g, YK_EINVAL, "cat: tensor 0 is 0-d and cannot be "
                        "concatenated");
    int d = yk__norm_dim(dim, first->ndim);
    if (d < 0)
        return yk__fail(g, YK_EINVAL, "cat: dim = %d is out of range for %d-d "
                        "tensors", dim, first->ndim);
    if (first->dtype == YK_I64)
        return yk__fail(g, YK_EDTYPE, "cat: tensor 0 is i64, needs f32 or f64");
    memcpy(shape, first->shape, sizeof first->shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const yk_tensor *t = &xs[i]->value;
        if (t->dtype != first->dtype)
            return yk__fail(g, YK_EDTYPE, "cat: tensor %d is %s but tensor 0 "
                            "is %s", i, yk_dtype_name(t->dtype),
                            yk_dtype_name(first->dtype));
        if (t->ndim != first->ndim)
            return yk__fail(g, YK_ESHAPE, "cat: tensor %d has %d dims but "
                            "tensor 0 has %d", i, t->ndim, first->ndim);
        for (int k = 0; k < t->ndim; k++)
            if (k != d && t->shape[k] != first->shape[k])
                return yk__fail(g, YK_ESHAPE, "cat: tensor %d has size %lld in "
                                "dim %d but tensor 0 has %lld", i,
                                (long long)t->shape[k], k,
                                (long long)first->shape[k]);
        shape[d] += t->shape[d];
    }
    *ndim_out = first->ndim;
    return xs[0];
}

/* Product of shape[from..to). */
static int64_t span(const int64_t *shape, int from, int to)
{
    int64_t p = 1;
    for (int k = from; k < to; k++)
        p *= shape[k];
    return p;
}

/* Copies each input's block into the output (eager cat). */
static void cat_forward(yk_node *y, int d)
{
    const yk_tensor *out = &y->value;
    size_t es = yk_dtype_size(out->dtype);
    int64_t outer = span(out->shape, 0, d);
    int64_t inner = span(out->shape, d + 1, out->ndim);
    int64_t out_row = out->shape[d] * inner; /* elements per outer index */
    int64_t off = 0;
    for (int i = 0; i < y->n_inputs; i++) {
        const yk_tensor *t = &y->inputs[i]->value;
        int64_t blk = t->shape[d] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out->data + (size_t)(o * out_row + off) * es,
                   (const char *)t->data + (size_t)(o * blk) * es,
                   (size_t)blk * es);
        off += blk;
    }
}

yk_node *yk_cat(yk_graph *g, int n, yk_node *const *xs, int dim)
{
    int ndim = 0;
    int64_t shape[YK_MAX_DIMS];
    if (!check_and_shape(g, n, xs, dim, &ndim, shape))
        return NULL;
    int d = yk__norm_dim(dim, ndim);
    bool column_cat = ndim == 2 && d == 1;
    yk_node *y;
    if (column_cat) {
        y = yk__node_new_lazy(g, &yk_op_cat, n, xs, xs[0]->value.dtype, ndim,
                              shape);
    } else {
        for (int i = 0; i < n; i++)
            if (!yk_value(xs[i])) /* make lazy inputs */
                return NULL;
        y = yk__node_new(g, &yk_op_cat, n, xs, xs[0]->value.dtype, ndim,
                         shape);
        if (y)
            cat_forward(y, d);
    }
    if (!y)
        return NULL;
    cat_saved *s = yk__save(y, sizeof *s);
    if (!s)
        return NULL;
    s->dim = d;
    return y;
}

/* Dense backward: input i gets its slice of the output gradient. */
static yk_status backward_cat(yk_graph *g, yk_node *y, const void *gy)
{
    const cat_saved *s = y->saved;
    const yk_tensor *out = &y->value;
    size_t es = yk_dtype_size(out->dtype);
    int64_t outer = span(out->shape, 0, s->dim);
    int64_t inner = span(out->shape, s->dim + 1, out->ndim);
    int64_t out_row = out->shape[s->dim] * inner;
    int64_t off = 0;
    for (int i = 0; i < y->n_inputs; i++) {
        int64_t blk = y->inputs[i]->value.shape[s->dim] * inner;
        if (yk__needs_grad(y, i)) {
            char *dx = yk__grad_dense(g, y, i);
            if (!dx)
                return g->status;
            for (int64_t o = 0; o < outer; o++)
                yk__add_into(out->dtype, dx + (size_t)(o * blk) * es,
                          (const char *)gy + (size_t)(o * out_row + off) * es,
                          blk);
        }
        off += blk; /* every input moves the offset */
    }
    return YK_OK;
}

/* Row-sparse backward of a column cat: each chunk of gradient rows is split
 * by columns into a chunk of the same rows for every part, which keeps the
 * chunk's sparse flag (so sparse = false uses still give the parts dense
 * gradients, without a [V, D1 + D2] buffer on the way). */
static yk_status backward_rows_cat(yk_graph *g, yk_node *y, const void *rows)
{
    size_t es = yk_dtype_size(y->value.dtype);
    int64_t cols = y->value.shape[1];
    for (const yk__rowchunk *c = rows; c; c = c->next) {
        int64_t off = 0;
        for (int i = 0; i < y->n_inputs; i++) {
            int64_t w = y->inputs[i]->value.shape[1];
            if (yk__needs_grad(y, i)) {
                char *dst = yk__grad_rows(g, y, i, c->n, c->rows, c->sparse);
                if (!dst)
                    return g->status;
                for (int64_t k = 0; k < c->n; k++)
                    memcpy(dst + (size_t)(k * w) * es,
                           (const char *)c->values + (size_t)(k * cols + off) * es,
                           (size_t)w * es);
            }
            off += w;
        }
    }
    return YK_OK;
}

static yk_node *build_cat(yk_graph *g, yk_node *const *in, int n,
                          const yk_attr_value *a)
{
    return yk_cat(g, n, in, (int)a[0].i);
}

const yk_op_def yk_op_cat = {
    .name = "cat",
    .n_inputs = 1,
    .input_names = {"tensors"},
    .variadic = true,
    .n_attrs = 1,
    .attrs = {{.name = "dim", .type = YK_ATTR_INT, .def_int = 0}},
    .build = build_cat,
    .backward = backward_cat,
    .backward_rows = backward_rows_cat,
};
