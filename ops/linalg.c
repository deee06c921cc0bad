/*
 * linalg.c -- matmul (torch.matmul) and linear (torch.nn.functional.linear).
 *
 * Every matrix product goes through BLIS's typed expert API
 * (bli_?gemm_ex), with the context's thread count given per call in a
 * rntm_t. Operands are row-major; a transpose is only a swap of the row and
 * column strides, so backward makes no transposed copies:
 *
 *   Y = A B      dA += dY B^T      dB += A^T dY
 *
 * each a gemm that adds into the gradient buffer (beta = 1).
 *
 * matmul follows torch.matmul: 2-D x 2-D; batched operands whose batch dims
 * (all but the last two) broadcast as in add; a 1-D first operand is a row
 * (1 x k) and a 1-D second operand a column (k x 1), that dim dropped from
 * the result (so 1-D x 1-D is a dot product, 0-d). When the second operand
 * has no batch dims, the first operand's batch dims fold into its rows: one
 * gemm of (batch * m) x k by k x n, which is what linear layers on 3-D
 * input need.
 */
#include "../lib/engine.h"

#include <blis.h>
#include <string.h>

/* A matrix operand for gemm: its first element and strides (elements). */
typedef struct mat {
    const void *p;
    int64_t rs, cs;
} mat;

/* A row-major stored matrix with `cols` columns, used as it is. */
static mat as_stored(const void *p, int64_t cols)
{
    return (mat){p, cols, 1};
}

/* A row-major stored matrix with `cols` columns, used transposed. */
static mat transposed(const void *p, int64_t cols)
{
    return (mat){p, 1, cols};
}

/*
 * C (m x n, row-major, ldc columns apart) = A (m x k) B (k x n), or
 * C += A B when accumulate. Nothing happens when a dim is 0: callers pass a
 * zeroed C for a fresh product. (The strides given are always ones BLIS's
 * stride checks accept: unit column stride with row stride >= cols, or the
 * transpose, or both 1 only for a vector.)
 */
static void gemm(const yk_ctx *ctx, yk_dtype dt, int64_t m, int64_t n,
                 int64_t k, mat a, mat b, bool accumulate, void *c,
                 int64_t ldc)
{
    if (m == 0 || n == 0 || k == 0)
        return;
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(ctx->threads, &rntm);
    if (dt == YK_F32) {
        float one = 1, beta = accumulate ? 1 : 0;
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &one,
                     (float *)a.p, a.rs, a.cs, (float *)b.p, b.rs, b.cs, &beta,
                     c, ldc, 1, NULL, &rntm);
    } else {
        double one = 1, beta = accumulate ? 1 : 0;
        bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &one,
                     (double *)a.p, a.rs, a.cs, (double *)b.p, b.rs, b.cs,
                     &beta, c, ldc, 1, NULL, &rntm);
    }
}

/* p advanced by i elements of dtype dt. */
static const void *at(const void *p, int64_t i, yk_dtype dt)
{
    return (const char *)p + (size_t)i * yk_dtype_size(dt);
}

static void *at_mut(void *p, int64_t i, yk_dtype dt)
{
    return (char *)p + (size_t)i * yk_dtype_size(dt);
}

/* Both operands float, of one dtype. names[i] names operand i. */
static bool check_dtypes(yk_graph *g, const char *op, int n,
                         const yk_tensor *const *t, const char *const *names)
{
    for (int i = 0; i < n; i++)
        if (t[i]->dtype == YK_I64) {
            yk__fail(g, YK_EDTYPE, "%s: %s is i64, needs f32 or f64", op,
                     names[i]);
            return false;
        }
    for (int i = 1; i < n; i++)
        if (t[i]->dtype != t[0]->dtype) {
            yk__fail(g, YK_EDTYPE, "%s: %s is %s but %s is %s", op, names[0],
                     yk_dtype_name(t[0]->dtype), names[i],
                     yk_dtype_name(t[i]->dtype));
            return false;
        }
    return true;
}

/* --------------------------------------------------------------- matmul */

/* The products of a matmul: nbatch products (m x k)(k x n), batch t at
 * element offsets oa, ob of the operands (walked over the batch dims with
 * strides sa, sb, 0 where an operand is broadcast) and t m n of the output. */
typedef struct mm_plan {
    int64_t m, k, n;
    int nb;
    int64_t batch[YK_MAX_DIMS];
    int64_t sa[YK_MAX_DIMS], sb[YK_MAX_DIMS];
    int64_t nbatch;
} mm_plan;

typedef struct mm_walk {
    int64_t idx[YK_MAX_DIMS];
    int64_t oa, ob;
} mm_walk;

static void mm_walk_next(const mm_plan *p, mm_walk *w)
{
    for (int k = p->nb - 1; k >= 0; k--) {
        w->oa += p->sa[k];
        w->ob += p->sb[k];
        if (++w->idx[k] < p->batch[k])
            return;
        w->oa -= p->sa[k] * p->batch[k];
        w->ob -= p->sb[k] * p->batch[k];
        w->idx[k] = 0;
    }
}

/* Size of t's batch dim lined up with batch dim j of an nb-dim batch (t has
 * tb batch dims). */
static int64_t batch_size(const yk_tensor *t, int tb, int nb, int j)
{
    int i = j - (nb - tb);
    return i < 0 ? 1 : t->shape[i];
}

/* Element strides of t's batch dims, lined up with the nb batch dims; 0 where
 * t has size 1 (broadcast). Each of t's matrices holds mat_size elements. */
static void batch_strides(const yk_tensor *t, int tb, int nb, int64_t mat_size,
                          int64_t *s)
{
    int64_t stride = mat_size;
    for (int j = nb - 1; j >= 0; j--) {
        int64_t n = batch_size(t, tb, nb, j);
        s[j] = n == 1 ? 0 : stride;
        stride *= n;
    }
}

static bool mm_shape_error(yk_graph *g, const yk_tensor *a,
                           const yk_tensor *b, const char *why)
{
    char sa[96], sb[96];
    yk__fail(g, YK_ESHAPE, "matmul: input of shape %s and other of shape %s %s",
             yk_shape_format(a, sa, sizeof sa),
             yk_shape_format(b, sb, sizeof sb), why);
    return false;
}

/* Checks the shapes, fills the plan and the output shape. */
static bool mm_plan_make(yk_graph *g, const yk_tensor *a, const yk_tensor *b,
                         mm_plan *p, int *out_ndim, int64_t *out_shape)
{
    if (a->ndim == 0 || b->ndim == 0)
        return mm_shape_error(g, a, b, "cannot be multiplied: both need at "
                              "least 1 dim, as in torch.matmul");
    p->m = a->ndim >= 2 ? a->shape[a->ndim - 2] : 1;
    p->k = a->shape[a->ndim - 1];
    int64_t kb = b->ndim >= 2 ? b->shape[b->ndim - 2] : b->shape[0];
    p->n = b->ndim >= 2 ? b->shape[b->ndim - 1] : 1;
    if (p->k != kb) {
        char why[160];
        snprintf(why, sizeof why, "cannot be multiplied: input's last dim is "
                 "%lld but other's %s is %lld", (long long)p->k,
                 b->ndim >= 2 ? "second-to-last dim" : "length",
                 (long long)kb);
        return mm_shape_error(g, a, b, why);
    }
    int ta = a->ndim > 2 ? a->ndim - 2 : 0, tb = b->ndim > 2 ? b->ndim - 2 : 0;
    p->nb = ta > tb ? ta : tb;
    p->nbatch = 1;
    for (int j = 0; j < p->nb; j++) {
        int64_t x = batch_size(a, ta, p->nb, j), y = batch_size(b, tb, p->nb, j);
        if (x != y && x != 1 && y != 1) {
            char why[160];
            snprintf(why, sizeof why, "have batch dims that cannot be "
                     "broadcast (batch dim %d: %lld vs %lld)", j - p->nb,
                     (long long)x, (long long)y);
            return mm_shape_error(g, a, b, why);
        }
        p->batch[j] = x == 1 ? y : x;
        out_shape[j] = p->batch[j];
        p->nbatch *= p->batch[j];
    }
    *out_ndim = p->nb;
    if (a->ndim >= 2)
        out_shape[(*out_ndim)++] = p->m;
    if (b->ndim >= 2)
        out_shape[(*out_ndim)++] = p->n;
    if (tb == 0) {
        /* The batch of a is contiguous rows: fold it into one product. */
        p->m *= p->nbatch;
        p->nb = 0;
        p->nbatch = 1;
    }
    batch_strides(a, ta, p->nb, p->m * p->k, p->sa);
    batch_strides(b, tb, p->nb, p->k * p->n, p->sb);
    return true;
}

yk_node *yk_matmul(yk_graph *g, yk_node *a, yk_node *b)
{
    yk_node *in[2] = {a, b};
    if (!yk__inputs_ok(g, "matmul", 2, in))
        return NULL;
    const yk_tensor *v[2] = {yk_value(a), yk_value(b)};
    if (!v[0] || !v[1])
        return NULL;
    static const char *const names[2] = {"input", "other"};
    if (!check_dtypes(g, "matmul", 2, v, names))
        return NULL;
    mm_plan p;
    int nd;
    int64_t shape[YK_MAX_DIMS];
    if (!mm_plan_make(g, v[0], v[1], &p, &nd, shape))
        return NULL;
    yk_dtype dt = v[0]->dtype;
    yk_node *y = yk__node_new(g, &yk_op_matmul, 2, in, dt, nd, shape);
    if (!y)
        return NULL;
    mm_walk w = {{0}, 0, 0};
    for (int64_t t = 0; t < p.nbatch; t++) {
        gemm(g->ctx, dt, p.m, p.n, p.k, as_stored(at(v[0]->data, w.oa, dt), p.k),
             as_stored(at(v[1]->data, w.ob, dt), p.n), false,
             at_mut(yk__data(y), t * p.m * p.n, dt), p.n);
        mm_walk_next(&p, &w);
    }
    return y;
}

static yk_status backward_matmul(yk_graph *g, yk_node *y, const void *gy)
{
    const yk_tensor *a = &y->inputs[0]->value, *b = &y->inputs[1]->value;
    yk_dtype dt = y->value.dtype;
    mm_plan p;
    int nd;
    int64_t shape[YK_MAX_DIMS];
    mm_plan_make(g, a, b, &p, &nd, shape); /* succeeded in forward */
    void *da = yk__grad_dense(g, y, 0);
    void *db = yk__grad_dense(g, y, 1);
    if (g->status != YK_OK)
        return g->status;
    mm_walk w = {{0}, 0, 0};
    for (int64_t t = 0; t < p.nbatch; t++) {
        const void *dy = at(gy, t * p.m * p.n, dt);
        if (da) /* dA (m x k) += dY (m x n) B^T (n x k) */
            gemm(g->ctx, dt, p.m, p.k, p.n, as_stored(dy, p.n),
                 transposed(at(b->data, w.ob, dt), p.n), true,
                 at_mut(da, w.oa, dt), p.k);
        if (db) /* dB (k x n) += A^T (k x m) dY (m x n) */
            gemm(g->ctx, dt, p.k, p.n, p.m,
                 transposed(at(a->data, w.oa, dt), p.k), as_stored(dy, p.n),
                 true, at_mut(db, w.ob, dt), p.n);
        mm_walk_next(&p, &w);
    }
    return YK_OK;
}

/* --------------------------------------------------------------- linear */

static bool linear_check(yk_graph *g, const yk_tensor *x, const yk_tensor *w,
                         const yk_tensor *b)
{
    const yk_tensor *v[3] = {x, w, b};
    static const char *const names[3] = {"input", "weight", "bias"};
    if (!check_dtypes(g, "linear", b ? 3 : 2, v, names))
        return false;
    char sx[96], sw[96], sb[96];
    if (w->ndim != 2) {
        yk__fail(g, YK_ESHAPE, "linear: weight of shape %s must be 2-D "
                 "(out, in)", yk_shape_format(w, sw, sizeof sw));
        return false;
    }
    if (x->ndim == 0 || x->shape[x->ndim - 1] != w->shape[1]) {
        yk__fail(g, YK_ESHAPE, "linear: input of shape %s does not fit weight "
                 "of shape %s: input's last dim must be %lld",
                 yk_shape_format(x, sx, sizeof sx),
                 yk_shape_format(w, sw, sizeof sw), (long long)w->shape[1]);
        return false;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        yk__fail(g, YK_ESHAPE, "linear: bias of shape %s does not fit weight "
                 "of shape %s: it must be [%lld]",
                 yk_shape_format(b, sb, sizeof sb),
                 yk_shape_format(w, sw, sizeof sw), (long long)w->shape[0]);
        return false;
    }
    return true;
}

/* Copies the bias into every row of y (rows x out). */
static void fill_rows(yk_dtype dt, void *y, const void *bias, int64_t rows,
                      int64_t out)
{
    size_t bytes = (size_t)out * yk_dtype_size(dt);
    for (int64_t r = 0; r < rows; r++)
        memcpy(at_mut(y, r * out, dt), bias, bytes);
}

yk_node *yk_linear(yk_graph *g, yk_node *x, yk_node *w, yk_node *b)
{
    yk_node *in[3] = {x, w, b};
    int n = b ? 3 : 2;
    if (!yk__inputs_ok(g, "linear", n, in))
        return NULL;
    const yk_tensor *vx = yk_value(x), *vw = yk_value(w);
    const yk_tensor *vb = b ? yk_value(b) : NULL;
    if (!vx || !vw || (b && !vb))
        return NULL;
    if (!linear_check(g, vx, vw, vb))
        return NULL;
    int64_t shape[YK_MAX_DIMS];
    memcpy(shape, vx->shape, sizeof shape);
    int64_t out = vw->shape[0], inner = vw->shape[1];
    shape[vx->ndim - 1] = out;
    yk_node *y = yk__node_new(g, &yk_op_linear, n, in, vx->dtype, vx->ndim,
                              shape);
    if (!y)
        return NULL;
    int64_t rows = y->value.numel / (out ? out : 1);
    if (out == 0)
        return y;
    if (vb)
        fill_rows(vx->dtype, yk__data(y), vb->data, rows, out);
    /* Y (rows x out) = X (rows x in) W^T (in x out) [+ Y holding the bias] */
    gemm(g->ctx, vx->dtype, rows, out, inner, as_stored(vx->data, inner),
         transposed(vw->data, inner), vb != NULL, yk__data(y), out);
    return y;
}

/* db[j] += sum over rows of dy[r, j]. */
static void column_sums(yk_dtype dt, void *db, const void *dy, int64_t rows,
                        int64_t out)
{
    for (int64_t r = 0; r < rows; r++) {
        if (dt == YK_F32) {
            const float *src = (const float *)dy + r * out;
            for (int64_t j = 0; j < out; j++)
                ((float *)db)[j] += src[j];
        } else {
            const double *src = (const double *)dy + r * out;
            for (int64_t j = 0; j < out; j++)
                ((double *)db)[j] += src[j];
        }
    }
}

static yk_status backward_linear(yk_graph *g, yk_node *y, const void *gy)
{
    const yk_tensor *x = &y->inputs[0]->value, *w = &y->inputs[1]->value;
    yk_dtype dt = y->value.dtype;
    int64_t out = w->shape[0], inner = w->shape[1];
    int64_t rows = x->numel / (inner ? inner : 1);
    if (inner == 0) /* rows from the output's shape instead */
        rows = y->value.numel / (out ? out : 1);
    void *dx = yk__grad_dense(g, y, 0);
    void *dw = yk__grad_dense(g, y, 1);
    void *db = y->n_inputs > 2 ? yk__grad_dense(g, y, 2) : NULL;
    if (g->status != YK_OK)
        return g->status;
    if (dx) /* dX (rows x in) += dY (rows x out) W (out x in) */
        gemm(g->ctx, dt, rows, inner, out, as_stored(gy, out),
             as_stored(w->data, inner), true, dx, inner);
    if (dw) /* dW (out x in) += dY^T (out x rows) X (rows x in) */
        gemm(g->ctx, dt, out, inner, rows, transposed(gy, out),
             as_stored(x->data, inner), true, dw, inner);
    if (db)
        column_sums(dt, db, gy, rows, out);
    return YK_OK;
}

/* ------------------------------------------------------------ registry */

static yk_node *build_matmul(yk_graph *g, yk_node *const *in, int n,
                             const yk_attr_value *a)
{
    (void)n;
    (void)a;
    return yk_matmul(g, in[0], in[1]);
}

static yk_node *build_linear(yk_graph *g, yk_node *const *in, int n,
                             const yk_attr_value *a)
{
    (void)a;
    return yk_linear(g, in[0], in[1], n > 2 ? in[2] : NULL);
}

const yk_op_def yk_op_matmul = {
    .name = "matmul", .n_inputs = 2, .input_names = {"input", "other"},
    .build = build_matmul, .backward = backward_matmul};

const yk_op_def yk_op_linear = {
    .name = "linear", .n_inputs = 3,
    .input_names = {"input", "weight", "bias"},
    .optional_inputs = 1u << 2,
    .build = build_linear, .backward = backward_linear};
