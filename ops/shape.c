/*
 * shape.c -- ops that move elements without changing them: reshape and
 * narrow (cat lives in cat.c).
 *
 * Both copy into a new value rather than alias their input, so that every
 * node owns its buffer and backward is a plain add of the output gradient
 * into the matching input positions.
 *
 * Inputs may be lazy (a column cat): their value is always read through
 * yk_value(), which makes it.
 */
#include "../lib/engine.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Writes dims as PyTorch prints a size, "[2, -1, 3]", into buf. */
static const char *format_dims(char *buf, size_t size, int n,
                               const int64_t *dims)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld",
                                 i ? ", " : "", (long long)dims[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

/* --------------------------------------------------------------- reshape */

/*
 * Checks shape against numel and writes the final shape (the -1 entry
 * inferred) into out. Returns false after failing the graph.
 */
static bool infer_shape(yk_graph *g, const yk_tensor *in, int ndim,
                        const int64_t *shape, int64_t *out)
{
    char want[160], have[160];
    if (ndim < 0 || ndim > YK_MAX_DIMS) {
        yk__fail(g, YK_EINVAL, "reshape: ndim = %d, must be in [0, %d]", ndim,
                 YK_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) {
        yk__fail(g, YK_EINVAL, "reshape: shape is NULL with ndim = %d", ndim);
        return false;
    }
    format_dims(want, sizeof want, ndim, shape);
    int infer = -1;
    bool has_zero = false, too_big = false;
    int64_t known = 1; /* product of the given sizes, while it stays small */
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) {
                yk__fail(g, YK_EINVAL, "reshape: shape %s has more than one "
                         "-1 (entries %d and %d); only one size can be "
                         "inferred", want, infer, i);
                return false;
            }
            infer = i;
        } else if (shape[i] < 0) {
            yk__fail(g, YK_EINVAL, "reshape: shape[%d] = %lld in %s is "
                     "negative (only -1 may be)", i, (long long)shape[i], want);
            return false;
        } else if (shape[i] == 0) {
            has_zero = true;
        } else if (known > INT64_MAX / shape[i]) {
            too_big = true; /* far more elements than any tensor holds */
        } else {
            known *= shape[i];
        }
    }
    if (has_zero)
        known = 0;
    format_dims(have, sizeof have, in->ndim, in->shape);
    if (infer >= 0 && known == 0 && in->numel == 0 && !too_big) {
        yk__fail(g, YK_EINVAL, "reshape: cannot reshape input of shape %s (0 "
                 "elements) into %s: the -1 size could be anything", have,
                 want);
        return false;
    }
    bool fits = !too_big && (infer >= 0 ? known != 0 && in->numel % known == 0
                                        : known == in->numel);
    if (!fits) {
        yk__fail(g, YK_ESHAPE, "reshape: shape %s does not fit input of "
                 "shape %s (%lld elements)", want, have,
                 (long long)in->numel);
        return false;
    }
    for (int i = 0; i < ndim; i++)
        out[i] = i == infer ? in->numel / known : shape[i];
    return true;
}

yk_node *yk_reshape(yk_graph *g, yk_node *x, int ndim, const int64_t *shape)
{
    if (!yk__inputs_ok(g, "reshape", 1, &x))
        return NULL;
    const yk_tensor *in = yk_value(x);
    if (!in)
        return NULL;
    int64_t out_shape[YK_MAX_DIMS];
    if (!infer_shape(g, in, ndim, shape, out_shape))
        return NULL;
    yk_node *y = yk__node_new(g, &yk_op_reshape, 1, &x, in->dtype, ndim,
                              out_shape);
    if (!y)
        return NULL;
    if (in->numel)
        memcpy(y->value.data, in->data, yk_tensor_nbytes(in));
    return y;
}

/* Same elements in the same order: the gradient passes through. */
static yk_status backward_reshape(yk_graph *g, yk_node *y, const void *gy)
{
    void *dx = yk__grad_dense(g, y, 0);
    if (!dx)
        return g->status;
    yk__add_into(y->value.dtype, dx, gy, y->value.numel);
    return YK_OK;
}

static yk_node *build_reshape(yk_graph *g, yk_node *const *in, int n,
                              const yk_attr_value *a)
{
    (void)n;
    return yk_reshape(g, in[0], a[0].n, a[0].list);
}

const yk_op_def yk_op_reshape = {
    .name = "reshape",
    .n_inputs = 1,
    .input_names = {"input"},
    .n_attrs = 1,
    .attrs = {{.name = "shape", .type = YK_ATTR_INT_LIST, .required = true}},
    .build = build_reshape,
    .backward = backward_reshape,
};

/* ---------------------------------------------------------------- narrow */

/* The slice as blocks: outer blocks of in_blk input elements, each giving
 * out_blk output elements starting at element off of the block. */
typedef struct narrow_saved {
    int64_t outer, in_blk, out_blk, off;
} narrow_saved;

/* Checks dim, start and length as torch.narrow does (start may be negative
 * and count from the end) and fills the output shape and the blocks. */
static bool narrow_plan(yk_graph *g, const yk_tensor *in, int dim,
                        int64_t start, int64_t length, int64_t *shape,
                        narrow_saved *p)
{
    if (in->ndim == 0) {
        yk__fail(g, YK_EINVAL, "narrow: input is 0-d and has no dim %d", dim);
        return false;
    }
    int d = yk__norm_dim(dim, in->ndim);
    if (d < 0) {
        yk__fail(g, YK_EINVAL, "narrow: dim = %d is out of range for a %d-d "
                 "input (expected [%d, %d])", dim, in->ndim, -in->ndim,
                 in->ndim - 1);
        return false;
    }
    int64_t size = in->shape[d];
    if (start < -size || start > size) {
        yk__fail(g, YK_EINVAL, "narrow: start = %lld is out of range for dim "
                 "%d of size %lld (expected [%lld, %lld])", (long long)start,
                 dim, (long long)size, (long long)-size, (long long)size);
        return false;
    }
    if (start < 0)
        start += size;
    if (length < 0 || length > size - start) {
        yk__fail(g, YK_EINVAL, "narrow: start = %lld + length = %lld exceeds "
                 "size %lld of dim %d", (long long)start, (long long)length,
                 (long long)size, dim);
        return false;
    }
    int64_t inner = 1;
    p->outer = 1;
    for (int k = 0; k < in->ndim; k++) {
        shape[k] = k == d ? length : in->shape[k];
        if (k < d)
            p->outer *= in->shape[k];
        else if (k > d)
            inner *= in->shape[k];
    }
    p->in_blk = size * inner;
    p->out_blk = length * inner;
    p->off = start * inner;
    return true;
}

yk_node *yk_narrow(yk_graph *g, yk_node *x, int dim, int64_t start,
                   int64_t length)
{
    if (!yk__inputs_ok(g, "narrow", 1, &x))
        return NULL;
    const yk_tensor *in = yk_value(x);
    if (!in)
        return NULL;
    int64_t shape[YK_MAX_DIMS];
    narrow_saved plan;
    if (!narrow_plan(g, in, dim, start, length, shape, &plan))
        return NULL;
    yk_node *y = yk__node_new(g, &yk_op_narrow, 1, &x, in->dtype, in->ndim,
                              shape);
    if (!y)
        return NULL;
    narrow_saved *s = yk__save(y, sizeof *s);
    if (!s)
        return NULL;
    *s = plan;
    if (y->value.numel == 0)
        return y; /* the input's data may be NULL */
    size_t es = yk_dtype_size(in->dtype);
    const char *src = (const char *)in->data + (size_t)plan.off * es;
    char *dst = y->value.data;
    for (int64_t o = 0; o < plan.outer; o++)
        memcpy(dst + (size_t)(o * plan.out_blk) * es,
               src + (size_t)(o * plan.in_blk) * es, (size_t)plan.out_blk * es);
    return y;
}

/* Each output block's gradient goes back to the slice it came from. */
static yk_status backward_narrow(yk_graph *g, yk_node *y, const void *gy)
{
    const narrow_saved *s = y->saved;
    char *dx = yk__grad_dense(g, y, 0);
    if (!dx)
        return g->status;
    size_t es = yk_dtype_size(y->value.dtype);
    for (int64_t o = 0; o < s->outer; o++)
        yk__add_into(y->value.dtype, dx + (size_t)(o * s->in_blk + s->off) * es,
                 (const char *)gy + (size_t)(o * s->out_blk) * es, s->out_blk);
    return YK_OK;
}

/* attrs: dim, start, length. dim must fit an int before yk_narrow sees it. */
static yk_node *build_narrow(yk_graph *g, yk_node *const *in, int n,
                             const yk_attr_value *a)
{
    (void)n;
    if (a[0].i < INT_MIN || a[0].i > INT_MAX)
        return yk__fail(g, YK_EINVAL, "narrow: dim = %lld is out of range",
                        (long long)a[0].i);
    return yk_narrow(g, in[0], (int)a[0].i, a[1].i, a[2].i);
}

const yk_op_def yk_op_narrow = {
    .name = "narrow",
    .n_inputs = 1,
    .input_names = {"input"},
    .n_attrs = 3,
    .attrs = {{.name = "dim", .type = YK_ATTR_INT, .required = true},
              {.name = "start", .type = YK_ATTR_INT, .required = true},
              {.name = "length", .type = YK_ATTR_INT, .required = true}},
    .build = build_narrow,
    .backward = backward_narrow,
};
