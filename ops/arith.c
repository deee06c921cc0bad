/*
 * arith.c -- add, sub, mul, div with PyTorch broadcasting.
 *
 * Shapes are aligned from the right; a dim of size 1 (or a missing leading
 * dim) stretches to the other operand's size. Forward and backward both walk
 * a BROADCAST PLAN: the output's dims with size-1 dims dropped and adjacent
 * dims merged wherever both operands stay contiguous across them, with one
 * stride per operand (0 where it is broadcast). So two tensors of the same
 * shape become one row with strides 1 and 1 (a plain loop), a tensor and a
 * one-element operand one row with strides 1 and 0 (the scalar path), and
 * only real broadcasting takes the row-by-row index walk.
 *
 * Backward: with y = f(a, b), da += dy * df/da summed over the dims where a
 * was broadcast (its stride is 0 there, so the walk adds every output element
 * into the one element of a it came from), and likewise for b.
 *
 * The row kernels are written once per dtype with the op as an argument;
 * each is inlined into a switch with a constant op, so the compiler makes one
 * loop per op and no function pointer or switch runs per element.
 */
#include "../lib/engine.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV } binop;

/* ------------------------------------------------------------ the plan */

typedef struct bcast {
    int ndim;                   /* >= 1 */
    int64_t size[YK_MAX_DIMS];
    int64_t sa[YK_MAX_DIMS];    /* element strides of a; 0: broadcast */
    int64_t sb[YK_MAX_DIMS];    /* element strides of b               */
} bcast;

/* Size of t's dim that lines up with output dim k of an nd-dim output. */
static int64_t aligned_size(const yk_tensor *t, int nd, int k)
{
    int j = k - (nd - t->ndim);
    return j < 0 ? 1 : t->shape[j];
}

/* The broadcast shape of a and b, or a shape_mismatch naming both. */
static bool broadcast_shape(yk_graph *g, const char *op, const yk_tensor *a,
                            const yk_tensor *b, int *ndim, int64_t *shape)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int k = 0; k < nd; k++) {
        int64_t x = aligned_size(a, nd, k), y = aligned_size(b, nd, k);
        if (x != y && x != 1 && y != 1) {
            char sa[96], sb[96];
            yk__fail(g, YK_ESHAPE, "%s: input of shape %s and other of shape "
                     "%s cannot be broadcast (dim %d: %lld vs %lld)", op,
                     yk_shape_format(a, sa, sizeof sa),
                     yk_shape_format(b, sb, sizeof sb), k - nd, (long long)x,
                     (long long)y);
            return false;
        }
        shape[k] = x == 1 ? y : x;
    }
    *ndim = nd;
    return true;
}

/* Row-major strides of t, lined up with the output's nd dims; 0 on every
 * dim where t has size 1 (it is broadcast or the dim is dropped). */
static void aligned_strides(const yk_tensor *t, int nd, int64_t *s)
{
    int64_t stride = 1;
    for (int k = nd - 1; k >= 0; k--) {
        int64_t n = aligned_size(t, nd, k);
        s[k] = n == 1 ? 0 : stride;
        stride *= n;
    }
}

/* Drops size-1 dims and merges dim k into k + 1 when both operands step
 * through them as through one dim. */
static void plan_make(const yk_tensor *a, const yk_tensor *b,
                      const yk_tensor *out, bcast *p)
{
    int64_t sa[YK_MAX_DIMS], sb[YK_MAX_DIMS];
    aligned_strides(a, out->ndim, sa);
    aligned_strides(b, out->ndim, sb);
    p->ndim = 0;
    for (int k = 0; k < out->ndim; k++) {
        int64_t n = out->shape[k];
        if (n == 1)
            continue;
        int last = p->ndim - 1;
        if (last >= 0 && p->sa[last] == sa[k] * n && p->sb[last] == sb[k] * n) {
            p->size[last] *= n;
            p->sa[last] = sa[k];
            p->sb[last] = sb[k];
            continue;
        }
        p->size[p->ndim] = n;
        p->sa[p->ndim] = sa[k];
        p->sb[p->ndim] = sb[k];
        p->ndim++;
    }
    if (p->ndim == 0) { /* one element */
        p->ndim = 1;
        p->size[0] = 1;
        p->sa[0] = p->sb[0] = 0;
    }
}

/* Offsets of a and b at the start of the current row. */
typedef struct walk {
    int64_t idx[YK_MAX_DIMS];
    int64_t oa, ob;
} walk;

/* Moves to the next row: an odometer over every dim but the last. */
static void walk_next(const bcast *p, walk *w)
{
    for (int k = p->ndim - 2; k >= 0; k--) {
        w->oa += p->sa[k];
        w->ob += p->sb[k];
        if (++w->idx[k] < p->size[k])
            return;
        w->oa -= p->sa[k] * p->size[k];
        w->ob -= p->sb[k] * p->size[k];
        w->idx[k] = 0;
    }
}

static int64_t plan_rows(const bcast *p, int64_t numel)
{
    return numel / p->size[p->ndim - 1];
}

/* ------------------------------------------------------------- forward */

ALWAYS_INLINE double apply_f64(binop op, double x, double y)
{
    switch (op) {
    case OP_ADD: return x + y;
    case OP_SUB: return x - y;
    case OP_MUL: return x * y;
    default: return x / y;
    }
}

ALWAYS_INLINE float apply_f32(binop op, float x, float y)
{
    switch (op) {
    case OP_ADD: return x + y;
    case OP_SUB: return x - y;
    case OP_MUL: return x * y;
    default: return x / y;
    }
}

/* y[i] = a[i sa] op b[i sb] for i < n, with the common stride patterns as
 * their own loops so that they vectorize. */
ALWAYS_INLINE void row_op_f64(binop op, const double *a, int64_t sa,
                              const double *b, int64_t sb, double *y,
                              int64_t n)
{
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++)
            y[i] = apply_f64(op, a[i], b[i]);
    } else if (sa == 1 && sb == 0) {
        const double s = *b;
        for (int64_t i = 0; i < n; i++)
            y[i] = apply_f64(op, a[i], s);
    } else if (sa == 0 && sb == 1) {
        const double s = *a;
        for (int64_t i = 0; i < n; i++)
            y[i] = apply_f64(op, s, b[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            y[i] = apply_f64(op, a[i * sa], b[i * sb]);
    }
}

ALWAYS_INLINE void row_op_f32(binop op, const float *a, int64_t sa,
                              const float *b, int64_t sb, float *y, int64_t n)
{
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++)
            y[i] = apply_f32(op, a[i], b[i]);
    } else if (sa == 1 && sb == 0) {
        const float s = *b;
        for (int64_t i = 0; i < n; i++)
            y[i] = apply_f32(op, a[i], s);
    } else if (sa == 0 && sb == 1) {
        const float s = *a;
        for (int64_t i = 0; i < n; i++)
            y[i] = apply_f32(op, s, b[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            y[i] = apply_f32(op, a[i * sa], b[i * sb]);
    }
}

ALWAYS_INLINE void forward_op_f64(binop op, const bcast *p, const double *a,
                                  const double *b, double *y, int64_t numel)
{
    int last = p->ndim - 1;
    int64_t n = p->size[last], rows = plan_rows(p, numel);
    walk w = {{0}, 0, 0};
    for (int64_t r = 0; r < rows; r++) {
        row_op_f64(op, a + w.oa, p->sa[last], b + w.ob, p->sb[last], y + r * n,
                   n);
        walk_next(p, &w);
    }
}

ALWAYS_INLINE void forward_op_f32(binop op, const bcast *p, const float *a,
                                  const float *b, float *y, int64_t numel)
{
    int last = p->ndim - 1;
    int64_t n = p->size[last], rows = plan_rows(p, numel);
    walk w = {{0}, 0, 0};
    for (int64_t r = 0; r < rows; r++) {
        row_op_f32(op, a + w.oa, p->sa[last], b + w.ob, p->sb[last], y + r * n,
                   n);
        walk_next(p, &w);
    }
}

static void forward_f64(binop op, const bcast *p, const double *a,
                        const double *b, double *y, int64_t numel)
{
    switch (op) {
    case OP_ADD: forward_op_f64(OP_ADD, p, a, b, y, numel); break;
    case OP_SUB: forward_op_f64(OP_SUB, p, a, b, y, numel); break;
    case OP_MUL: forward_op_f64(OP_MUL, p, a, b, y, numel); break;
    case OP_DIV: forward_op_f64(OP_DIV, p, a, b, y, numel); break;
    }
}

static void forward_f32(binop op, const bcast *p, const float *a,
                        const float *b, float *y, int64_t numel)
{
    switch (op) {
    case OP_ADD: forward_op_f32(OP_ADD, p, a, b, y, numel); break;
    case OP_SUB: forward_op_f32(OP_SUB, p, a, b, y, numel); break;
    case OP_MUL: forward_op_f32(OP_MUL, p, a, b, y, numel); break;
    case OP_DIV: forward_op_f32(OP_DIV, p, a, b, y, numel); break;
    }
}

static const yk_op_def *const op_defs[] = {&yk_op_add, &yk_op_sub,
                                           &yk_op_mul, &yk_op_div};

static bool check_dtypes(yk_graph *g, const char *op, const yk_tensor *a,
                         const yk_tensor *b)
{
    if (a->dtype == YK_I64 || b->dtype == YK_I64) {
        yk__fail(g, YK_EDTYPE, "%s: %s is i64, needs f32 or f64", op,
                 a->dtype == YK_I64 ? "input" : "other");
        return false;
    }
    if (a->dtype != b->dtype) {
        yk__fail(g, YK_EDTYPE, "%s: input is %s but other is %s", op,
                 yk_dtype_name(a->dtype), yk_dtype_name(b->dtype));
        return false;
    }
    return true;
}

static yk_node *binary(yk_graph *g, binop op, yk_node *a, yk_node *b)
{
    const yk_op_def *def = op_defs[op];
    yk_node *in[2] = {a, b};
    if (!yk__inputs_ok(g, def->name, 2, in))
        return NULL;
    const yk_tensor *va = yk_value(a), *vb = yk_value(b);
    if (!va || !vb)
        return NULL;
    if (!check_dtypes(g, def->name, va, vb))
        return NULL;
    int nd;
    int64_t shape[YK_MAX_DIMS];
    if (!broadcast_shape(g, def->name, va, vb, &nd, shape))
        return NULL;
    yk_node *y = yk__node_new(g, def, 2, in, va->dtype, nd, shape);
    if (!y || y->value.numel == 0)
        return y;
    bcast p;
    plan_make(va, vb, &y->value, &p);
    if (va->dtype == YK_F32)
        forward_f32(op, &p, va->data, vb->data, yk__data(y), y->value.numel);
    else
        forward_f64(op, &p, va->data, vb->data, yk__data(y), y->value.numel);
    return y;
}

yk_node *yk_add(yk_graph *g, yk_node *a, yk_node *b)
{
    return binary(g, OP_ADD, a, b);
}

yk_node *yk_sub(yk_graph *g, yk_node *a, yk_node *b)
{
    return binary(g, OP_SUB, a, b);
}

yk_node *yk_mul(yk_graph *g, yk_node *a, yk_node *b)
{
    return binary(g, OP_MUL, a, b);
}

yk_node *yk_div(yk_graph *g, yk_node *a, yk_node *b)
{
    return binary(g, OP_DIV, a, b);
}

/* ------------------------------------------------------------ backward */

/* The gradient one output element sends to an operand, given dy, a, b. */
typedef enum gradkind {
    G_DY,          /* add (both), sub (input): dy           */
    G_NEG_DY,      /* sub (other): -dy                      */
    G_DY_B,        /* mul (input): dy b                     */
    G_DY_A,        /* mul (other): dy a                     */
    G_DY_OVER_B,   /* div (input): dy / b                   */
    G_DIV_OTHER    /* div (other): -dy a / b^2, as PyTorch  */
} gradkind;

static const gradkind grad_of_input[] = {G_DY, G_DY, G_DY_B, G_DY_OVER_B};
static const gradkind grad_of_other[] = {G_DY, G_NEG_DY, G_DY_A, G_DIV_OTHER};

ALWAYS_INLINE double grad_f64(gradkind k, double dy, double a, double b)
{
    switch (k) {
    case G_DY: return dy;
    case G_NEG_DY: return -dy;
    case G_DY_B: return dy * b;
    case G_DY_A: return dy * a;
    case G_DY_OVER_B: return dy / b;
    default: return -dy * a / (b * b);
    }
}

ALWAYS_INLINE float grad_f32(gradkind k, float dy, float a, float b)
{
    switch (k) {
    case G_DY: return dy;
    case G_NEG_DY: return -dy;
    case G_DY_B: return dy * b;
    case G_DY_A: return dy * a;
    case G_DY_OVER_B: return dy / b;
    default: return -dy * a / (b * b);
    }
}

/* d[i sd] += grad(dy[i], a[i sa], b[i sb]) for i < n. sd is 0 when the
 * operand is broadcast along the row: the row is summed into one element. */
ALWAYS_INLINE void grad_row_f64(gradkind k, const double *dy, const double *a,
                                int64_t sa, const double *b, int64_t sb,
                                double *d, int64_t sd, int64_t n)
{
    if (sd == 0) {
        double s = 0;
        for (int64_t i = 0; i < n; i++)
            s += grad_f64(k, dy[i], a[i * sa], b[i * sb]);
        *d += s;
    } else if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++)
            d[i] += grad_f64(k, dy[i], a[i], b[i]);
    } else if (sa == 1 && sb == 0) {
        const double s = *b;
        for (int64_t i = 0; i < n; i++)
            d[i] += grad_f64(k, dy[i], a[i], s);
    } else if (sa == 0 && sb == 1) {
        const double s = *a;
        for (int64_t i = 0; i < n; i++)
            d[i] += grad_f64(k, dy[i], s, b[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            d[i * sd] += grad_f64(k, dy[i], a[i * sa], b[i * sb]);
    }
}

/* As grad_row_f64; a row summed into one element adds up in double. */
ALWAYS_INLINE void grad_row_f32(gradkind k, const float *dy, const float *a,
                                int64_t sa, const float *b, int64_t sb,
                                float *d, int64_t sd, int64_t n)
{
    if (sd == 0) {
        double s = 0;
        for (int64_t i = 0; i < n; i++)
            s += grad_f32(k, dy[i], a[i * sa], b[i * sb]);
        *d += (float)s;
    } else if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++)
            d[i] += grad_f32(k, dy[i], a[i], b[i]);
    } else if (sa == 1 && sb == 0) {
        const float s = *b;
        for (int64_t i = 0; i < n; i++)
            d[i] += grad_f32(k, dy[i], a[i], s);
    } else if (sa == 0 && sb == 1) {
        const float s = *a;
        for (int64_t i = 0; i < n; i++)
            d[i] += grad_f32(k, dy[i], s, b[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            d[i * sd] += grad_f32(k, dy[i], a[i * sa], b[i * sb]);
    }
}

/* Adds the gradient of operand `side` (0: input, 1: other) into d. */
ALWAYS_INLINE void grad_walk_f64(gradkind k, int side, const bcast *p,
                                 const double *dy, const double *a,
                                 const double *b, double *d, int64_t numel)
{
    int last = p->ndim - 1;
    int64_t n = p->size[last], rows = plan_rows(p, numel);
    int64_t sd = side ? p->sb[last] : p->sa[last];
    walk w = {{0}, 0, 0};
    for (int64_t r = 0; r < rows; r++) {
        grad_row_f64(k, dy + r * n, a + w.oa, p->sa[last], b + w.ob,
                     p->sb[last], d + (side ? w.ob : w.oa), sd, n);
        walk_next(p, &w);
    }
}

ALWAYS_INLINE void grad_walk_f32(gradkind k, int side, const bcast *p,
                                 const float *dy, const float *a,
                                 const float *b, float *d, int64_t numel)
{
    int last = p->ndim - 1;
    int64_t n = p->size[last], rows = plan_rows(p, numel);
    int64_t sd = side ? p->sb[last] : p->sa[last];
    walk w = {{0}, 0, 0};
    for (int64_t r = 0; r < rows; r++) {
        grad_row_f32(k, dy + r * n, a + w.oa, p->sa[last], b + w.ob,
                     p->sb[last], d + (side ? w.ob : w.oa), sd, n);
        walk_next(p, &w);
    }
}

static void grad_f64_any(gradkind k, int side, const bcast *p,
                         const double *dy, const double *a, const double *b,
                         double *d, int64_t numel)
{
    switch (k) {
    case G_DY: grad_walk_f64(G_DY, side, p, dy, a, b, d, numel); break;
    case G_NEG_DY: grad_walk_f64(G_NEG_DY, side, p, dy, a, b, d, numel); break;
    case G_DY_B: grad_walk_f64(G_DY_B, side, p, dy, a, b, d, numel); break;
    case G_DY_A: grad_walk_f64(G_DY_A, side, p, dy, a, b, d, numel); break;
    case G_DY_OVER_B:
        grad_walk_f64(G_DY_OVER_B, side, p, dy, a, b, d, numel);
        break;
    case G_DIV_OTHER:
        grad_walk_f64(G_DIV_OTHER, side, p, dy, a, b, d, numel);
        break;
    }
}

static void grad_f32_any(gradkind k, int side, const bcast *p,
                         const float *dy, const float *a, const float *b,
                         float *d, int64_t numel)
{
    switch (k) {
    case G_DY: grad_walk_f32(G_DY, side, p, dy, a, b, d, numel); break;
    case G_NEG_DY: grad_walk_f32(G_NEG_DY, side, p, dy, a, b, d, numel); break;
    case G_DY_B: grad_walk_f32(G_DY_B, side, p, dy, a, b, d, numel); break;
    case G_DY_A: grad_walk_f32(G_DY_A, side, p, dy, a, b, d, numel); break;
    case G_DY_OVER_B:
        grad_walk_f32(G_DY_OVER_B, side, p, dy, a, b, d, numel);
        break;
    case G_DIV_OTHER:
        grad_walk_f32(G_DIV_OTHER, side, p, dy, a, b, d, numel);
        break;
    }
}

static yk_status binary_backward(yk_graph *g, yk_node *y, const void *gy,
                                 binop op)
{
    const yk_tensor *a = &y->inputs[0]->value, *b = &y->inputs[1]->value;
    bcast p;
    plan_make(a, b, &y->value, &p);
    for (int side = 0; side < 2; side++) {
        if (!yk__needs_grad(y, side))
            continue;
        /* Asked for even when y is empty: the operand's gradient is then
         * zeros, not missing. */
        void *d = yk__grad_dense(g, y, side);
        if (!d)
            return g->status;
        if (y->value.numel == 0)
            continue;
        gradkind k = side ? grad_of_other[op] : grad_of_input[op];
        if (y->value.dtype == YK_F32)
            grad_f32_any(k, side, &p, gy, a->data, b->data, d, y->value.numel);
        else
            grad_f64_any(k, side, &p, gy, a->data, b->data, d, y->value.numel);
    }
    return YK_OK;
}

static yk_status backward_add(yk_graph *g, yk_node *y, const void *gy)
{
    return binary_backward(g, y, gy, OP_ADD);
}

static yk_status backward_sub(yk_graph *g, yk_node *y, const void *gy)
{
    return binary_backward(g, y, gy, OP_SUB);
}

static yk_status backward_mul(yk_graph *g, yk_node *y, const void *gy)
{
    return binary_backward(g, y, gy, OP_MUL);
}

static yk_status backward_div(yk_graph *g, yk_node *y, const void *gy)
{
    return binary_backward(g, y, gy, OP_DIV);
}

/* ------------------------------------------------------------ registry */

static yk_node *build_add(yk_graph *g, yk_node *const *in, int n,
                          const yk_attr_value *a)
{
    (void)n;
    (void)a;
    return yk_add(g, in[0], in[1]);
}

static yk_node *build_sub(yk_graph *g, yk_node *const *in, int n,
                          const yk_attr_value *a)
{
    (void)n;
    (void)a;
    return yk_sub(g, in[0], in[1]);
}

static yk_node *build_mul(yk_graph *g, yk_node *const *in, int n,
                          const yk_attr_value *a)
{
    (void)n;
    (void)a;
    return yk_mul(g, in[0], in[1]);
}

static yk_node *build_div(yk_graph *g, yk_node *const *in, int n,
                          const yk_attr_value *a)
{
    (void)n;
    (void)a;
    return yk_div(g, in[0], in[1]);
}

const yk_op_def yk_op_add = {
    .name = "add", .n_inputs = 2, .input_names = {"input", "other"},
    .build = build_add, .backward = backward_add};

const yk_op_def yk_op_sub = {
    .name = "sub", .n_inputs = 2, .input_names = {"input", "other"},
    .build = build_sub, .backward = backward_sub};

const yk_op_def yk_op_mul = {
    .name = "mul", .n_inputs = 2, .input_names = {"input", "other"},
    .build = build_mul, .backward = backward_mul};

const yk_op_def yk_op_div = {
    .name = "div", .n_inputs = 2, .input_names = {"input", "other"},
    .build = build_div, .backward = backward_div};
