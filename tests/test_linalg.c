/* Tests of ops/linalg.c: matmul and linear. Forward against hand-worked
 * products and a naive triple loop, backward against hand-worked values and
 * finite differences, and every error path. */
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

TestSuite(linalg, .init = setup, .fini = teardown);

static yk_tensor *make(yk_dtype dt, size_t ndim, const int64_t *shape,
                       const double *v)
{
    return dt == YK_F32 ? T32(ctx, ndim, shape, v) : T64(ctx, ndim, shape, v);
}

/* matmul(a, b) in f64 and f32 against want. */
static void expect_matmul(size_t na, const int64_t *sa, const double *va,
                          size_t nb, const int64_t *sb, const double *vb,
                          size_t no, const int64_t *so, const double *want)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_tensor *a = make(dt, na, sa, va), *b = make(dt, nb, sb, vb);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = yk_matmul(g, yk_const(g, a), yk_const(g, b));
        cr_assert(y, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_node_dtype(y), dt);
        const yk_tensor *v = yk_value(y);
        expect_shape(v, no, so);
        expect_close(v, want, yk_tensor_numel(v), dt == YK_F32 ? 1e-6 : 1e-15,
                     1e-6);
        yk_graph_end(g);
        yk_tensor_free(a);
        yk_tensor_free(b);
    }
}

/* A (2, 3) = [[1, 2, 3], [4, 5, 6]], B (3, 2) = [[7, 8], [9, 10], [11, 12]].
 * AB = [[1*7 + 2*9 + 3*11, 1*8 + 2*10 + 3*12], [4*7 + 5*9 + 6*11, ...]]
 *    = [[58, 64], [139, 154]]. */
#define A SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)
#define B SHAPE(3, 2), VALS(7, 8, 9, 10, 11, 12)

Test(linalg, matmul_2d)
{
    expect_matmul(A, B, SHAPE(2, 2), VALS(58, 64, 139, 154));
    /* B A = [[7+32, 14+40, 21+48], [9+40, 18+50, 27+60], [11+48, 22+60,
     * 33+72]] */
    expect_matmul(B, A, SHAPE(3, 3),
                  VALS(39, 54, 69, 49, 68, 87, 59, 82, 105));
}

Test(linalg, matmul_batched_folds_and_broadcasts)
{
    /* (2, 2, 3) [A, -A] @ B: each batch times B. */
    expect_matmul(SHAPE(2, 2, 3), VALS(1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6),
                  B, SHAPE(2, 2, 2),
                  VALS(58, 64, 139, 154, -58, -64, -139, -154));
    /* A @ (2, 3, 2) [B, 2B]: 2-D times N-D. */
    expect_matmul(A, SHAPE(2, 3, 2),
                  VALS(7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 22, 24),
                  SHAPE(2, 2, 2), VALS(58, 64, 139, 154, 116, 128, 278, 308));
    /* a (2, 1, 2, 2) = [I, 2I] @ b (3, 2, 2) = 1..12: batch (2, 3), with
     * out[i, j] = (i + 1) b[j]. */
    expect_matmul(SHAPE(2, 1, 2, 2), VALS(1, 0, 0, 1, 2, 0, 0, 2),
                  SHAPE(3, 2, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12),
                  SHAPE(2, 3, 2, 2),
                  VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                       2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24));
}

Test(linalg, matmul_vectors)
{
    /* [1, 2, 3] . [4, 5, 6] = 32, 0-d */
    expect_matmul(SHAPE(3), VALS(1, 2, 3), SHAPE(3), VALS(4, 5, 6), 0, NULL,
                  VALS(32));
    /* A [1, 2, 3] = [14, 32] */
    expect_matmul(A, SHAPE(3), VALS(1, 2, 3), SHAPE(2), VALS(14, 32));
    /* [1, 0, -1] B = [7 - 11, 8 - 12] */
    expect_matmul(SHAPE(3), VALS(1, 0, -1), B, SHAPE(2), VALS(-4, -4));
    /* [1, 0, -1] (2, 3, 2) [B, 2B] -> (2, 2) */
    expect_matmul(SHAPE(3), VALS(1, 0, -1), SHAPE(2, 3, 2),
                  VALS(7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 22, 24),
                  SHAPE(2, 2), VALS(-4, -4, -8, -8));
    /* (2, 2, 3) [A, -A] [1, 2, 3] -> (2, 2) */
    expect_matmul(SHAPE(2, 2, 3), VALS(1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6),
                  SHAPE(3), VALS(1, 2, 3), SHAPE(2, 2), VALS(14, 32, -14, -32));
}

Test(linalg, matmul_size_zero)
{
    /* an empty inner dim gives zeros; empty outer dims give empty results */
    expect_matmul(SHAPE(2, 0), NULL, SHAPE(0, 3), NULL, SHAPE(2, 3),
                  VALS(0, 0, 0, 0, 0, 0));
    expect_matmul(SHAPE(0, 3), NULL, B, SHAPE(0, 2), NULL);
    expect_matmul(SHAPE(0, 2, 3), NULL, B, SHAPE(0, 2, 2), NULL);
}

/* Naive C = A B for A (m x k), B (k x n), row-major. */
static void naive(const double *a, const double *b, double *c, int mm, int n,
                  int k)
{
    for (int i = 0; i < mm; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int t = 0; t < k; t++)
                s += a[i * k + t] * b[t * n + j];
            c[i * n + j] = s;
        }
}

Test(linalg, matmul_matches_naive_loop_with_threads)
{
    enum { M = 37, K = 53, N = 29 };
    static double va[M * K], vb[K * N], want[M * N];
    yk_tensor *a = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){M, K});
    yk_tensor *b = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){K, N});
    yk_tensor_fill_normal(a, 1, 0, 1);
    yk_tensor_fill_normal(b, 2, 0, 1);
    memcpy(va, yk_tensor_data(a), sizeof va);
    memcpy(vb, yk_tensor_data(b), sizeof vb);
    naive(va, vb, want, M, N, K);
    for (int threads = 1; threads <= 4; threads += 3) {
        cr_assert_eq(yk_set_threads(ctx, threads), YK_OK);
        for (int k = 0; k < 2; k++) {
            yk_dtype dt = k ? YK_F32 : YK_F64;
            yk_tensor *ta = make(dt, SHAPE(M, K), va);
            yk_tensor *tb = make(dt, SHAPE(K, N), vb);
            yk_graph *g = yk_graph_begin(ctx);
            yk_node *y = yk_matmul(g, yk_const(g, ta), yk_const(g, tb));
            cr_assert(y, "%s", yk_last_error(ctx));
            expect_close(yk_value(y), want, M * N, dt == YK_F32 ? 1e-4 : 1e-12,
                         dt == YK_F32 ? 1e-4 : 1e-12);
            yk_graph_end(g);
            yk_tensor_free(ta);
            yk_tensor_free(tb);
        }
    }
    yk_tensor_free(a);
    yk_tensor_free(b);
}

Test(linalg, matmul_backward_by_hand)
{
    /* seed ones (2, 2): dA[i, k] = sum_j B[k, j] = [15, 19, 23] per row,
     * dB[k, j] = sum_i A[i, k] = [5, 7, 9] per column. */
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_model *mm = yk_model_new(ctx);
        yk_param *a = param_with(mm, "a", dt, A), *b = param_with(mm, "b", dt, B);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = yk_matmul(g, yk_param_node(g, a), yk_param_node(g, b));
        cr_assert_eq(yk_backward(g, yk_sum(g, y, 0, NULL, false)), YK_OK, "%s",
                     yk_last_error(ctx));
        expect_close(yk_param_grad(a), VALS(15, 19, 23, 15, 19, 23), 6, 1e-6, 0);
        expect_close(yk_param_grad(b), VALS(5, 5, 7, 7, 9, 9), 6, 1e-6, 0);
        yk_graph_end(g);
        yk_model_free(mm);
    }
}

/* ---- finite differences */

typedef struct mm_case {
    yk_param *a, *b;
} mm_case;

static yk_node *build_matmul(yk_graph *g, void *ud)
{
    mm_case *c = ud;
    return yk_matmul(g, yk_param_node(g, c->a), yk_param_node(g, c->b));
}

static void gradcheck_matmul(size_t na, const int64_t *sa, size_t nb,
                             const int64_t *sb)
{
    yk_model *mm = yk_model_new(ctx);
    mm_case c = {yk_model_add(mm, "a", YK_F64, (int)na, sa),
                 yk_model_add(mm, "b", YK_F64, (int)nb, sb)};
    cr_assert(c.a && c.b, "%s", yk_last_error(ctx));
    yk_tensor_fill_normal(yk_param_value(c.a), 3, 0, 1);
    yk_tensor_fill_normal(yk_param_value(c.b), 4, 0, 1);
    expect_gradcheck(mm, build_matmul, &c);
    yk_model_free(mm);
}

Test(linalg, gradcheck_matmul_2d_and_folded)
{
    gradcheck_matmul(SHAPE(2, 3), SHAPE(3, 4));
    gradcheck_matmul(SHAPE(3, 2, 4), SHAPE(4, 2));
    gradcheck_matmul(SHAPE(2, 3), SHAPE(2, 3, 2));
}

Test(linalg, gradcheck_matmul_broadcast_batch)
{
    /* batch dims (2, 1) and (3): a broadcast along one, b along the other */
    gradcheck_matmul(SHAPE(2, 1, 2, 3), SHAPE(3, 3, 2));
    gradcheck_matmul(SHAPE(1, 2, 3), SHAPE(4, 3, 2));
}

Test(linalg, gradcheck_matmul_vectors)
{
    gradcheck_matmul(SHAPE(3), SHAPE(3));
    gradcheck_matmul(SHAPE(2, 3), SHAPE(3));
    gradcheck_matmul(SHAPE(3), SHAPE(3, 2));
    gradcheck_matmul(SHAPE(3), SHAPE(2, 3, 4));
    gradcheck_matmul(SHAPE(2, 2, 3), SHAPE(3));
}

static yk_node *build_square(yk_graph *g, void *ud)
{
    yk_node *x = yk_param_node(g, ud);
    return yk_matmul(g, x, x);
}

Test(linalg, gradcheck_matmul_same_operand)
{
    yk_param *x = yk_model_add(m, "x", YK_F64, 2, (int64_t[]){3, 3});
    yk_tensor_fill_normal(yk_param_value(x), 5, 0, 1);
    expect_gradcheck(m, build_square, x);
}

/* ---- linear */

/* x (2, 2, 3), W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1]:
 * y[r] = [x0 - x2 + 0.5, 2 x0 + x1 - 1] row by row. */
#define LX SHAPE(2, 2, 3), VALS(1, 2, 3, 4, 5, 6, 0, 1, 0, 1, 1, 1)
#define LW SHAPE(2, 3), VALS(1, 0, -1, 2, 1, 0)
#define LB SHAPE(2), VALS(0.5, -1)

Test(linalg, linear_forward)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_tensor *x = make(dt, LX), *w = make(dt, LW), *b = make(dt, LB);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *yb = yk_linear(g, yk_const(g, x), yk_const(g, w),
                                yk_const(g, b));
        yk_node *yn = yk_linear(g, yk_const(g, x), yk_const(g, w), NULL);
        cr_assert(yb && yn, "%s", yk_last_error(ctx));
        EXPECT_VALUES(yk_value(yb), SHAPE(2, 2, 2),
                      VALS(-1.5, 3, -1.5, 12, 0.5, 0, 0.5, 2), 1e-6);
        EXPECT_VALUES(yk_value(yn), SHAPE(2, 2, 2),
                      VALS(-2, 4, -2, 13, 0, 1, 0, 3), 1e-6);
        yk_graph_end(g);
        yk_tensor_free(x);
        yk_tensor_free(w);
        yk_tensor_free(b);
    }
}

Test(linalg, linear_1d_input_and_empty)
{
    /* x (3) = [1, 2, 3]: y (2) = [1 - 3 + 0.5, 2 + 2 - 1] */
    yk_tensor *x = T64(ctx, SHAPE(3), VALS(1, 2, 3));
    yk_tensor *w = T64(ctx, LW), *b = T64(ctx, LB);
    yk_tensor *e = T64(ctx, SHAPE(0, 3), NULL);
    yk_tensor *w0 = T64(ctx, SHAPE(2, 0), NULL), *x0 = T64(ctx, SHAPE(4, 0), NULL);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_linear(g, yk_const(g, x), yk_const(g, w), yk_const(g, b));
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2), VALS(-1.5, 3), 1e-15);
    /* no rows: (0, 2) */
    y = yk_linear(g, yk_const(g, e), yk_const(g, w), yk_const(g, b));
    cr_assert(y, "%s", yk_last_error(ctx));
    expect_shape(yk_value(y), SHAPE(0, 2));
    /* in = 0: every row is the bias */
    y = yk_linear(g, yk_const(g, x0), yk_const(g, w0), yk_const(g, b));
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(4, 2), VALS(0.5, -1, 0.5, -1, 0.5, -1,
                                                0.5, -1), 0);
    yk_graph_end(g);
    yk_tensor_free(x);
    yk_tensor_free(w);
    yk_tensor_free(b);
    yk_tensor_free(e);
    yk_tensor_free(w0);
    yk_tensor_free(x0);
}

Test(linalg, linear_backward_by_hand)
{
    /* seed ones on (2, 2, 3) x: dW[o, i] = sum over rows of x[r, i] =
     * [6, 9, 10] for each o; db = [4, 4] (4 rows); dx[r] = sum_o W[o] =
     * [3, 1, -1] per row. */
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_model *mm = yk_model_new(ctx);
        yk_param *x = param_with(mm, "x", dt, LX), *w = param_with(mm, "w", dt, LW),
                 *b = param_with(mm, "b", dt, LB);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = yk_linear(g, yk_param_node(g, x), yk_param_node(g, w),
                               yk_param_node(g, b));
        cr_assert_eq(yk_backward(g, yk_sum(g, y, 0, NULL, false)), YK_OK, "%s",
                     yk_last_error(ctx));
        expect_close(yk_param_grad(w), VALS(6, 9, 10, 6, 9, 10), 6, 1e-6, 0);
        expect_close(yk_param_grad(b), VALS(4, 4), 2, 1e-6, 0);
        expect_close(yk_param_grad(x),
                     VALS(3, 1, -1, 3, 1, -1, 3, 1, -1, 3, 1, -1), 12, 1e-6, 0);
        yk_graph_end(g);
        yk_model_free(mm);
    }
}

typedef struct lin_case {
    yk_param *x, *w, *b;
} lin_case;

static yk_node *build_linear(yk_graph *g, void *ud)
{
    lin_case *c = ud;
    return yk_linear(g, yk_param_node(g, c->x), yk_param_node(g, c->w),
                     c->b ? yk_param_node(g, c->b) : NULL);
}

static void gradcheck_linear(size_t nx, const int64_t *sx, bool bias)
{
    yk_model *mm = yk_model_new(ctx);
    lin_case c = {yk_model_add(mm, "x", YK_F64, (int)nx, sx),
                  yk_model_add(mm, "w", YK_F64, 2, (int64_t[]){4, 3}),
                  bias ? yk_model_add(mm, "b", YK_F64, 1, (int64_t[]){4}) : NULL};
    cr_assert(c.x && c.w && (c.b || !bias), "%s", yk_last_error(ctx));
    yk_tensor_fill_normal(yk_param_value(c.x), 6, 0, 1);
    yk_tensor_fill_normal(yk_param_value(c.w), 7, 0, 1);
    if (bias)
        yk_tensor_fill_normal(yk_param_value(c.b), 8, 0, 1);
    expect_gradcheck(mm, build_linear, &c);
    yk_model_free(mm);
}

Test(linalg, gradcheck_linear)
{
    gradcheck_linear(SHAPE(2, 5, 3), true);
    gradcheck_linear(SHAPE(2, 5, 3), false);
    gradcheck_linear(SHAPE(3), true);
    gradcheck_linear(SHAPE(6, 3), false);
}

/* ---- errors */

static void expect_matmul_error(size_t na, const int64_t *sa, yk_dtype da,
                                size_t nb, const int64_t *sb, yk_dtype db,
                                yk_status want, const char *part)
{
    yk_tensor *a = yk_tensor_zeros(ctx, da, (int)na, sa);
    yk_tensor *b = yk_tensor_zeros(ctx, db, (int)nb, sb);
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_matmul(g, yk_const(g, a), yk_const(g, b)));
    expect_error(ctx, want, part);
    cr_assert_eq(yk_graph_status(g), want);
    yk_graph_end(g);
    yk_tensor_free(a);
    yk_tensor_free(b);
}

Test(linalg, matmul_rejects_inner_mismatch)
{
    expect_matmul_error(SHAPE(2, 3), YK_F64, SHAPE(4, 5), YK_F64, YK_ESHAPE,
                        "matmul: input of shape [2, 3] and other of shape "
                        "[4, 5] cannot be multiplied: input's last dim is 3 "
                        "but other's second-to-last dim is 4");
    expect_matmul_error(SHAPE(2, 3), YK_F64, SHAPE(2), YK_F64, YK_ESHAPE,
                        "other of shape [2] cannot be multiplied: input's "
                        "last dim is 3 but other's length is 2");
}

Test(linalg, matmul_rejects_batch_mismatch)
{
    expect_matmul_error(SHAPE(2, 2, 3), YK_F64, SHAPE(3, 3, 2), YK_F64,
                        YK_ESHAPE, "input of shape [2, 2, 3] and other of "
                        "shape [3, 3, 2] have batch dims that cannot be "
                        "broadcast (batch dim -1: 2 vs 3)");
}

Test(linalg, matmul_rejects_zero_dim)
{
    expect_matmul_error(0, NULL, YK_F64, SHAPE(2, 2), YK_F64, YK_ESHAPE,
                        "input of shape [] and other of shape [2, 2] cannot "
                        "be multiplied: both need at least 1 dim");
}

Test(linalg, matmul_rejects_dtypes)
{
    expect_matmul_error(SHAPE(2, 2), YK_F32, SHAPE(2, 2), YK_F64, YK_EDTYPE,
                        "matmul: input is f32 but other is f64");
    expect_matmul_error(SHAPE(2, 2), YK_F64, SHAPE(2, 2), YK_I64, YK_EDTYPE,
                        "matmul: other is i64");
}

static void expect_linear_error(size_t nx, const int64_t *sx, size_t nw,
                                const int64_t *sw, int nb, const int64_t *sb,
                                yk_dtype db, yk_status want, const char *part)
{
    yk_tensor *x = yk_tensor_zeros(ctx, YK_F64, (int)nx, sx);
    yk_tensor *w = yk_tensor_zeros(ctx, YK_F64, (int)nw, sw);
    yk_tensor *b = nb >= 0 ? yk_tensor_zeros(ctx, db, nb, sb) : NULL;
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_linear(g, yk_const(g, x), yk_const(g, w),
                             b ? yk_const(g, b) : NULL));
    expect_error(ctx, want, part);
    yk_graph_end(g);
    yk_tensor_free(x);
    yk_tensor_free(w);
    yk_tensor_free(b);
}

Test(linalg, linear_rejects_bad_shapes)
{
    expect_linear_error(SHAPE(2, 4), SHAPE(5, 3), -1, NULL, YK_F64, YK_ESHAPE,
                        "linear: input of shape [2, 4] does not fit weight of "
                        "shape [5, 3]: input's last dim must be 3");
    expect_linear_error(SHAPE(2, 3), SHAPE(3), -1, NULL, YK_F64, YK_ESHAPE,
                        "linear: weight of shape [3] must be 2-D");
    expect_linear_error(0, NULL, SHAPE(5, 3), -1, NULL, YK_F64, YK_ESHAPE,
                        "linear: input of shape [] does not fit weight");
    expect_linear_error(SHAPE(2, 3), SHAPE(5, 3), 1, (int64_t[]){4}, YK_F64,
                        YK_ESHAPE, "linear: bias of shape [4] does not fit "
                        "weight of shape [5, 3]: it must be [5]");
}

Test(linalg, linear_rejects_dtypes)
{
    expect_linear_error(SHAPE(2, 3), SHAPE(5, 3), 1, (int64_t[]){5}, YK_F32,
                        YK_EDTYPE, "linear: input is f64 but bias is f32");
    expect_linear_error(SHAPE(2, 3), SHAPE(5, 3), 1, (int64_t[]){5}, YK_I64,
                        YK_EDTYPE, "linear: bias is i64");
}

/* ---- registry */

Test(linalg, registry_entries)
{
    const yk_op_def *mm = yk_op_find("matmul"), *lin = yk_op_find("linear");
    cr_assert(mm && lin);
    cr_assert_eq(mm->n_inputs, 2);
    cr_assert_str_eq(mm->input_names[0], "input");
    cr_assert_str_eq(mm->input_names[1], "other");
    cr_assert_eq(lin->n_inputs, 3);
    cr_assert_str_eq(lin->input_names[0], "input");
    cr_assert_str_eq(lin->input_names[1], "weight");
    cr_assert_str_eq(lin->input_names[2], "bias");
    cr_assert_eq(lin->optional_inputs, 1u << 2);
    cr_assert_eq(mm->n_attrs + lin->n_attrs, 0);

    /* build with the bias absent (NULL) */
    yk_tensor *x = T64(ctx, SHAPE(3), VALS(1, 2, 3)), *w = T64(ctx, LW);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *in[3] = {yk_const(g, x), yk_const(g, w), NULL};
    yk_node *y = lin->build(g, in, 3, NULL);
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2), VALS(-2, 4), 0);
    yk_graph_end(g);
    yk_tensor_free(x);
    yk_tensor_free(w);
}
