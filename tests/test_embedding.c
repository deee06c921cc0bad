/* Tests of yk_embedding and yk_embedding_renorm (ops/embedding.c).
 *
 * Hand-worked numbers use W[r][c] = 10 r + c, so a looked-up row shows
 * which row it is, and integer seeds, so every expected gradient is an
 * exact sum worked out in the comment next to it. Backward is also checked
 * against finite differences (expect_gradcheck) for every option. */
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

TestSuite(embedding, .init = setup, .fini = teardown);

/* W [V, D] with W[r][c] = 10 r + c. */
static yk_param *ten_r_plus_c(const char *name, yk_dtype dt, int64_t V,
                              int64_t D)
{
    double v[64];
    cr_assert(V * D <= 64);
    for (int64_t r = 0; r < V; r++)
        for (int64_t c = 0; c < D; c++)
            v[r * D + c] = 10.0 * (double)r + (double)c;
    return param_with(m, name, dt, SHAPE(V, D), v);
}

static void backward_with(yk_graph *g, yk_node *y, const yk_tensor *seed)
{
    cr_assert(y != NULL, "forward failed: %s", yk_last_error(ctx));
    cr_assert_eq(yk_backward_seeded(g, 1, &y, &seed), YK_OK, "%s",
                 yk_last_error(ctx));
}

/* ------------------------------------------------------------ forward */

Test(embedding, forward_1d_f64_and_f32)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *W = ten_r_plus_c(k ? "W32" : "W64", dt, 4, 3);
        yk_tensor *idx = TI(ctx, SHAPE(3), IDX(2, 0, 2));
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                                  YK_NO_PADDING, false, false);
        cr_assert(y, "%s", yk_last_error(ctx));
        cr_assert_eq(yk_node_dtype(y), dt);
        cr_assert_str_eq(yk_node_op_name(y), "embedding");
        /* rows 2, 0, 2 of W */
        EXPECT_VALUES(yk_value(y), SHAPE(3, 3),
                      VALS(20, 21, 22, 0, 1, 2, 20, 21, 22), 0);
        yk_graph_end(g);
        yk_tensor_free(idx);
    }
}

Test(embedding, forward_0d_index_gives_a_row)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 4, 2);
    yk_tensor *idx = TI(ctx, 0, NULL, IDX(3));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                              YK_NO_PADDING, false, false);
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2), VALS(30, 31), 0);
    /* seed [5, 7] goes to row 3 */
    yk_tensor *seed = T64(ctx, SHAPE(2), VALS(5, 7));
    backward_with(g, y, seed);
    expect_close(yk_param_grad(W), VALS(0, 0, 0, 0, 0, 0, 5, 7), 8, 0, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

Test(embedding, forward_2d_input_appends_d)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 5, 2);
    yk_tensor *idx = TI(ctx, SHAPE(2, 3), IDX(4, 1, 1, 0, 3, 4));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                              YK_NO_PADDING, false, false);
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2, 3, 2),
                  VALS(40, 41, 10, 11, 10, 11, 0, 1, 30, 31, 40, 41), 0);
    yk_graph_end(g);
    yk_tensor_free(idx);
}

Test(embedding, empty_input_gives_empty_output)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 3, 2);
    yk_tensor *idx = TI(ctx, SHAPE(0), NULL);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                              YK_NO_PADDING, false, true);
    cr_assert(y, "%s", yk_last_error(ctx));
    expect_shape(yk_value(y), SHAPE(0, 2));
    /* A lookup of no row is still a sparse use: the gradient is
     * row-sparse with no rows (what sparse_adam counts as a step). */
    yk_tensor *seed = T64(ctx, SHAPE(0, 2), NULL);
    backward_with(g, y, seed);
    cr_assert_eq(yk_param_grad_kind(W), YK_GRAD_ROWS);
    int64_t n = -1;
    const int64_t *rows;
    const yk_tensor *vals;
    cr_assert_eq(yk_param_grad_rows(W, &n, &rows, &vals), YK_OK);
    cr_assert_eq(n, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

/* ----------------------------------------------------------- backward */

Test(embedding, backward_sums_repeated_rows)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *W = ten_r_plus_c(k ? "W32" : "W64", dt, 4, 2);
        yk_tensor *idx = TI(ctx, SHAPE(3), IDX(1, 3, 1));
        yk_tensor *seed = (k ? T32 : T64)(ctx, SHAPE(3, 2),
                                          VALS(1, 2, 3, 4, 5, 6));
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                                  YK_NO_PADDING, false, false);
        backward_with(g, y, seed);
        cr_assert_eq(yk_param_grad_kind(W), YK_GRAD_DENSE);
        /* row 1: [1, 2] + [5, 6]; row 3: [3, 4] */
        expect_close(yk_param_grad(W), VALS(0, 0, 6, 8, 0, 0, 3, 4), 8, 0, 0);
        yk_graph_end(g);
        yk_tensor_free(seed);
        yk_tensor_free(idx);
    }
}

/* padding_idx p and p - V name the same row: output as is, no gradient. */
Test(embedding, padding_row_is_output_but_gets_no_gradient)
{
    int64_t pads[2] = {2, -2}; /* V = 4: -2 means row 2 */
    for (int k = 0; k < 2; k++) {
        yk_model_zero_grad(m);
        yk_param *W = k ? yk_model_find(m, "W")
                        : ten_r_plus_c("W", YK_F64, 4, 2);
        yk_tensor *idx = TI(ctx, SHAPE(4), IDX(2, 1, 2, 3));
        yk_tensor *seed = T64(ctx, SHAPE(4, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8));
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                                  pads[k], false, false);
        cr_assert(y, "%s", yk_last_error(ctx));
        EXPECT_VALUES(yk_value(y), SHAPE(4, 2),
                      VALS(20, 21, 10, 11, 20, 21, 30, 31), 0);
        backward_with(g, y, seed);
        /* row 1 gets [3, 4], row 3 [7, 8], row 2 nothing */
        expect_close(yk_param_grad(W), VALS(0, 0, 3, 4, 0, 0, 7, 8), 8, 0, 0);
        yk_graph_end(g);
        yk_tensor_free(seed);
        yk_tensor_free(idx);
    }
}

Test(embedding, scale_grad_by_freq_divides_by_count_in_input)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 4, 2);
    /* counts: row 1 three times, row 0 once, row 3 twice (padding) */
    yk_tensor *idx = TI(ctx, SHAPE(2, 3), IDX(1, 0, 1, 3, 1, 3));
    yk_tensor *seed = T64(ctx, SHAPE(2, 3, 2),
                          VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W), 3,
                              true, false);
    backward_with(g, y, seed);
    /* row 1: ([1, 2] + [5, 6] + [9, 10]) / 3 = [5, 6]; row 0: [3, 4] / 1;
     * row 3 is padding */
    expect_close(yk_param_grad(W), VALS(3, 4, 5, 6, 0, 0, 0, 0), 8, 1e-15, 0);
    yk_graph_end(g);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

Test(embedding, sparse_gives_coalesced_rows_with_dense_numbers)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 5, 2);
    yk_tensor *idx = TI(ctx, SHAPE(4), IDX(4, 1, 4, 0));
    yk_tensor *seed = T64(ctx, SHAPE(4, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8));
    yk_tensor *dense = NULL;
    for (int sparse = 0; sparse < 2; sparse++) {
        yk_model_zero_grad(m);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                                  1, false, sparse);
        backward_with(g, y, seed);
        yk_graph_end(g);
        cr_assert_eq(yk_param_grad_kind(W),
                     sparse ? YK_GRAD_ROWS : YK_GRAD_DENSE);
        yk_tensor *d = dense_grad(ctx, W);
        if (!sparse) {
            dense = d;
            continue;
        }
        /* Same numbers; rows 0 and 4 only (1 is padding), sorted. */
        expect_close(d, (const double *)yk_tensor_data(dense), 10, 0, 0);
        int64_t n;
        const int64_t *rows;
        const yk_tensor *vals;
        cr_assert_eq(yk_param_grad_rows(W, &n, &rows, &vals), YK_OK);
        cr_assert_eq(n, 2);
        cr_assert(rows[0] == 0 && rows[1] == 4);
        /* row 0: [7, 8]; row 4: [1, 2] + [5, 6] */
        EXPECT_VALUES(vals, SHAPE(2, 2), VALS(7, 8, 6, 8), 0);
        yk_tensor_free(d);
    }
    yk_tensor_free(dense);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

Test(embedding, only_padding_looked_up_still_counts_as_sparse_use)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 3, 2);
    yk_tensor *idx = TI(ctx, SHAPE(2), IDX(0, 0));
    yk_tensor *seed = T64(ctx, SHAPE(2, 2), VALS(1, 1, 1, 1));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W), 0,
                              false, true);
    backward_with(g, y, seed);
    yk_graph_end(g);
    cr_assert_eq(yk_param_grad_kind(W), YK_GRAD_ROWS);
    int64_t n = -1;
    const int64_t *rows;
    const yk_tensor *vals;
    cr_assert_eq(yk_param_grad_rows(W, &n, &rows, &vals), YK_OK);
    cr_assert_eq(n, 0);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

Test(embedding, sparse_and_dense_uses_make_a_dense_gradient)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 3, 2);
    yk_tensor *i1 = TI(ctx, SHAPE(2), IDX(0, 2));
    yk_tensor *i2 = TI(ctx, SHAPE(1), IDX(2));
    yk_tensor *s1 = T64(ctx, SHAPE(2, 2), VALS(1, 2, 3, 4));
    yk_tensor *s2 = T64(ctx, SHAPE(1, 2), VALS(10, 20));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *w = yk_param_node(g, W);
    yk_node *ys[2] = {
        yk_embedding(g, yk_const(g, i1), w, YK_NO_PADDING, false, true),
        yk_embedding(g, yk_const(g, i2), w, YK_NO_PADDING, false, false)};
    const yk_tensor *seeds[2] = {s1, s2};
    cr_assert_eq(yk_backward_seeded(g, 2, ys, seeds), YK_OK, "%s",
                 yk_last_error(ctx));
    yk_graph_end(g);
    cr_assert_eq(yk_param_grad_kind(W), YK_GRAD_DENSE);
    /* row 0: [1, 2]; row 2: [3, 4] + [10, 20] */
    expect_close(yk_param_grad(W), VALS(1, 2, 0, 0, 13, 24), 6, 0, 0);
    yk_tensor_free(s1);
    yk_tensor_free(s2);
    yk_tensor_free(i1);
    yk_tensor_free(i2);
}

/* One step over W [64, 1]: zero_grad, then lookups of n rows (sparse or
 * dense) seeded with 1, 2, 3, ...; returns W's gradient as a dense
 * [64] array in out. */
static void step_rows(yk_param *W, int n, const int64_t *rows, bool sparse,
                      double *out)
{
    yk_model_zero_grad(m);
    double ones_up[16];
    cr_assert(n <= 16);
    for (int i = 0; i < n; i++)
        ones_up[i] = i + 1;
    yk_tensor *idx = yk_tensor_from(ctx, YK_I64, SHAPE(n), rows);
    yk_tensor *seed = yk_tensor_from(ctx, YK_F64, SHAPE(n, 1), ones_up);
    yk_graph *g = yk_graph_begin(ctx);
    backward_with(g, yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                                  YK_NO_PADDING, false, sparse), seed);
    yk_graph_end(g);
    yk_tensor *d = dense_grad(ctx, W);
    for (int r = 0; r < 64; r++)
        out[r] = yk_tensor_get(d, r);
    yk_tensor_free(d);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

/* zero_grad clears only the rows a dense gradient was written at (a
 * sixteenth of the table at most, here 4 rows; past that all of it):
 * whatever the previous step touched, the next step's gradient holds its
 * own rows only. */
Test(embedding, zero_grad_clears_every_row_the_last_step_wrote)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 64, 1);
    double want[64], got[64];
    const int64_t few[] = {1, 2, 1}, one[] = {3},
                  many[] = {10, 11, 12, 13, 14, 15}, first[] = {0},
                  mixed[] = {5, 6}, last[] = {9};
    struct { int n; const int64_t *rows; bool sparse; } steps[] = {
        {3, few, false},   /* rows 1 (1 + 3) and 2 (2): listed        */
        {1, one, false},   /* row 3 only                              */
        {6, many, false},  /* 6 rows > 4: the whole buffer is cleared  */
        {1, first, false}, /* row 0 only                              */
        {2, mixed, true},  /* row-sparse: rows 5, 6                   */
        {1, last, false},  /* dense again: row 9 only                 */
    };
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        step_rows(W, steps[k].n, steps[k].rows, steps[k].sparse, got);
        memset(want, 0, sizeof want);
        for (int i = 0; i < steps[k].n; i++)
            want[steps[k].rows[i]] += i + 1;
        for (int r = 0; r < 64; r++)
            cr_assert_eq(got[r], want[r], "step %zu, row %d: %g, want %g",
                         k, r, got[r], want[r]);
    }
}

/* A row-sparse gradient made dense by a dense use in the same step keeps
 * its rows listed: the next step starts clean. */
Test(embedding, zero_grad_after_sparse_made_dense)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 64, 1);
    yk_tensor *i1 = TI(ctx, SHAPE(2), IDX(5, 6));
    yk_tensor *i2 = TI(ctx, SHAPE(1), IDX(7));
    yk_tensor *s1 = T64(ctx, SHAPE(2, 1), VALS(1, 2));
    yk_tensor *s2 = T64(ctx, SHAPE(1, 1), VALS(3));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *w = yk_param_node(g, W);
    yk_node *ys[2] = {
        yk_embedding(g, yk_const(g, i1), w, YK_NO_PADDING, false, true),
        yk_embedding(g, yk_const(g, i2), w, YK_NO_PADDING, false, false)};
    const yk_tensor *seeds[2] = {s1, s2};
    cr_assert_eq(yk_backward_seeded(g, 2, ys, seeds), YK_OK);
    yk_graph_end(g);
    cr_assert_eq(yk_param_grad_kind(W), YK_GRAD_DENSE);
    double got[64];
    const int64_t row8[] = {8};
    step_rows(W, 1, row8, false, got);
    for (int r = 0; r < 64; r++)
        cr_assert_eq(got[r], r == 8 ? 1.0 : 0.0, "row %d: %g", r, got[r]);
    yk_tensor_free(s1);
    yk_tensor_free(s2);
    yk_tensor_free(i1);
    yk_tensor_free(i2);
}

/* The weight as a lazy column concatenation: rows are gathered from the
 * parts and the gradient is split back into them. */
Test(embedding, lazy_cat_weight_reads_and_splits_rows)
{
    yk_param *A = ten_r_plus_c("A", YK_F64, 3, 2);
    yk_param *B = param_with(m, "B", YK_F64, SHAPE(3, 1), VALS(-1, -2, -3));
    yk_tensor *idx = TI(ctx, SHAPE(2), IDX(2, 0));
    yk_tensor *seed = T64(ctx, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *parts[2] = {yk_param_node(g, A), yk_param_node(g, B)};
    yk_node *c = yk_cat(g, 2, parts, 1);
    yk_node *y = yk_embedding(g, yk_const(g, idx), c, YK_NO_PADDING, false,
                              false);
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2, 3), VALS(20, 21, -3, 0, 1, -1), 0);
    backward_with(g, y, seed);
    yk_graph_end(g);
    /* row 2 of the cat gets [1, 2, 3], row 0 gets [4, 5, 6] */
    expect_close(yk_param_grad(A), VALS(4, 5, 0, 0, 1, 2), 6, 0, 0);
    expect_close(yk_param_grad(B), VALS(6, 0, 3), 3, 0, 0);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

/* -------------------------------------------------- finite differences */

typedef struct emb_check {
    yk_param *w, *extra; /* extra: a second part of a cat([w, extra], 1) */
    yk_tensor *idx;
    int64_t padding;
    bool scale, sparse;
} emb_check;

static yk_node *build_emb(yk_graph *g, void *ud)
{
    emb_check *c = ud;
    yk_node *w = yk_param_node(g, c->w);
    if (c->extra) {
        yk_node *parts[2] = {w, yk_param_node(g, c->extra)};
        w = yk_cat(g, 2, parts, 1);
    }
    return yk_embedding(g, yk_const(g, c->idx), w, c->padding, c->scale,
                        c->sparse);
}

Test(embedding, backward_matches_finite_differences)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){6, 3});
    yk_tensor_fill_normal(yk_param_value(W), 7, 0, 1);
    yk_tensor *inputs[3] = {
        TI(ctx, SHAPE(5), IDX(1, 4, 1, 0, 5)),
        TI(ctx, SHAPE(2, 3), IDX(5, 2, 2, 3, 0, 2)),
        TI(ctx, 0, NULL, IDX(4)),
    };
    for (int i = 0; i < 3; i++) {
        for (int sparse = 0; sparse < 2; sparse++) {
            emb_check c = {W, NULL, inputs[i], YK_NO_PADDING, false, sparse};
            expect_gradcheck(m, build_emb, &c);
        }
        yk_tensor_free(inputs[i]);
    }
}

/* A padding row's output depends on it but gets no gradient (by design, so
 * finite differences do not apply to it): the gradient with padding_idx p
 * is the finite-difference-checked gradient without it, row p zeroed. */
Test(embedding, padding_gradient_is_plain_gradient_without_that_row)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){6, 3});
    yk_tensor_fill_normal(yk_param_value(W), 7, 0, 1);
    yk_tensor *idx = TI(ctx, SHAPE(2, 3), IDX(5, 2, 2, 3, 0, 2));
    yk_tensor *seed = yk_tensor_zeros(ctx, YK_F64, 3, (int64_t[]){2, 3, 3});
    yk_tensor_fill_normal(seed, 8, 0, 1);
    emb_check plain_check = {W, NULL, idx, YK_NO_PADDING, false, false};
    expect_gradcheck(m, build_emb, &plain_check);
    int64_t pads[3] = {YK_NO_PADDING, 2, -1}; /* -1: row 5 */
    int64_t pad_row[3] = {-1, 2, 5};
    yk_tensor *plain = NULL;
    for (int p = 0; p < 3; p++)
        for (int sparse = 0; sparse < 2; sparse++) {
            yk_model_zero_grad(m);
            emb_check c = {W, NULL, idx, pads[p], false, sparse};
            yk_graph *g = yk_graph_begin(ctx);
            backward_with(g, build_emb(g, &c), seed);
            yk_graph_end(g);
            yk_tensor *d = dense_grad(ctx, W);
            if (!plain) {
                plain = d;
                continue;
            }
            double want[18];
            for (int k = 0; k < 18; k++)
                want[k] = k / 3 == pad_row[p] ? 0 : yk_tensor_get(plain, k);
            expect_close(d, want, 18, 0, 0);
            yk_tensor_free(d);
        }
    yk_tensor_free(plain);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

Test(embedding, backward_through_lazy_cat_matches_finite_differences)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){5, 2});
    yk_param *S = yk_model_add(m, "S", YK_F64, 2, (int64_t[]){5, 3});
    yk_tensor_fill_normal(yk_param_value(W), 1, 0, 1);
    yk_tensor_fill_normal(yk_param_value(S), 2, 0, 1);
    yk_tensor *idx = TI(ctx, SHAPE(2, 2), IDX(4, 0, 4, 2));
    for (int sparse = 0; sparse < 2; sparse++) {
        emb_check c = {W, S, idx, YK_NO_PADDING, false, sparse};
        expect_gradcheck(m, build_emb, &c);
    }
    yk_tensor_free(idx);
}

/* scale_grad_by_freq's gradient is not a derivative, so it is checked
 * against the finite-difference-checked unscaled gradient divided by each
 * row's count; with every index distinct it must equal the derivative. */
Test(embedding, scale_grad_by_freq_is_unscaled_gradient_over_count)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){4, 2});
    yk_tensor_fill_normal(yk_param_value(W), 3, 0, 1);
    /* counts: row 0 once, row 1 twice, row 3 three times, row 2 never */
    yk_tensor *idx = TI(ctx, SHAPE(6), IDX(3, 1, 3, 0, 1, 3));
    double count[4] = {1, 2, 1, 3};
    yk_tensor *seed = T64(ctx, SHAPE(6, 2),
                          VALS(0.5, -1, 2, 0.25, 3, 1, -2, 4, 1.5, 0.5, -1, 2));
    yk_tensor *plain = NULL;
    for (int scale = 0; scale < 2; scale++) {
        for (int sparse = 0; sparse < 2; sparse++) {
            yk_model_zero_grad(m);
            yk_graph *g = yk_graph_begin(ctx);
            yk_node *y = yk_embedding(g, yk_const(g, idx),
                                      yk_param_node(g, W), YK_NO_PADDING,
                                      scale, sparse);
            backward_with(g, y, seed);
            yk_graph_end(g);
            yk_tensor *d = dense_grad(ctx, W);
            if (!plain) {
                plain = d;
                continue;
            }
            double want[8];
            for (int r = 0; r < 8; r++)
                want[r] = yk_tensor_get(plain, r) / (scale ? count[r / 2] : 1);
            expect_close(d, want, 8, 1e-15, 0);
            yk_tensor_free(d);
        }
    }
    yk_tensor_free(plain);
    yk_tensor *distinct = TI(ctx, SHAPE(3), IDX(2, 0, 3));
    emb_check c = {W, NULL, distinct, YK_NO_PADDING, true, false};
    expect_gradcheck(m, build_emb, &c);
    yk_tensor_free(distinct);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

/* ------------------------------------------------------------- errors */

/* Runs yk_embedding on W [V=4, D=2] and the given input; expects failure. */
static void expect_embedding_error(yk_tensor *weight, yk_tensor *idx,
                                   int64_t padding, yk_status want,
                                   const char *part)
{
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding(g, yk_const(g, idx), yk_const(g, weight),
                              padding, false, false);
    cr_assert_null(y, "expected %s", part);
    expect_error(ctx, want, part);
    cr_assert_eq(yk_graph_status(g), want);
    yk_graph_end(g);
    yk_clear_error(ctx);
}

Test(embedding, errors_name_the_culprit)
{
    yk_tensor *W = T64(ctx, SHAPE(4, 2), VALS(0, 1, 2, 3, 4, 5, 6, 7));
    yk_tensor *ok = TI(ctx, SHAPE(2), IDX(0, 3));
    yk_tensor *Wi = TI(ctx, SHAPE(4, 2), IDX(0, 1, 2, 3, 4, 5, 6, 7));
    yk_tensor *W1 = T64(ctx, SHAPE(4), VALS(0, 1, 2, 3));
    yk_tensor *W3 = T64(ctx, SHAPE(1, 2, 2), VALS(0, 1, 2, 3));
    yk_tensor *fidx = T64(ctx, SHAPE(2), VALS(0, 1));
    yk_tensor *big = TI(ctx, SHAPE(3), IDX(0, 1, 4));
    yk_tensor *neg = TI(ctx, SHAPE(2, 2), IDX(0, 1, 2, -1));
    int64_t shape8[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    yk_tensor *idx8 = yk_tensor_zeros(ctx, YK_I64, 8, shape8);

    expect_embedding_error(Wi, ok, YK_NO_PADDING, YK_EDTYPE,
                           "embedding: weight is i64");
    expect_embedding_error(W1, ok, YK_NO_PADDING, YK_ESHAPE,
                           "embedding: weight must be 2-D [V, D], got shape [4]");
    expect_embedding_error(W3, ok, YK_NO_PADDING, YK_ESHAPE,
                           "got shape [1, 2, 2]");
    expect_embedding_error(W, fidx, YK_NO_PADDING, YK_EDTYPE,
                           "embedding: input is f64, needs i64");
    expect_embedding_error(W, big, YK_NO_PADDING, YK_ERANGE,
                           "embedding: input[2] = 4 is out of range for a "
                           "weight with 4 rows");
    expect_embedding_error(W, neg, YK_NO_PADDING, YK_ERANGE,
                           "embedding: input[1, 1] = -1 is out of range");
    expect_embedding_error(W, ok, 4, YK_EINVAL,
                           "embedding: padding_idx = 4 is out of range");
    expect_embedding_error(W, ok, -5, YK_EINVAL,
                           "embedding: padding_idx = -5 is out of range");
    expect_embedding_error(W, idx8, YK_NO_PADDING, YK_ESHAPE,
                           "the output would have 9 dims");

    /* -4 is the lowest valid padding_idx for V = 4 (row 0). */
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert(yk_embedding(g, yk_const(g, ok), yk_const(g, W), -4, false,
                           false), "%s", yk_last_error(ctx));
    /* NULL input: EINVAL, and the graph stays failed (sticky). */
    cr_assert_null(yk_embedding(g, NULL, yk_const(g, W), YK_NO_PADDING,
                                false, false));
    expect_error(ctx, YK_EINVAL, "embedding: input 0 is NULL");
    cr_assert_null(yk_embedding(g, yk_const(g, ok), yk_const(g, W),
                                YK_NO_PADDING, false, false));
    yk_graph_end(g);

    yk_tensor *all[] = {W, ok, Wi, W1, W3, fidx, big, neg, idx8};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        yk_tensor_free(all[i]);
}

/* ----------------------------------------------------------- registry */

Test(embedding, registry_entry_matches_the_case_format)
{
    const yk_op_def *d = yk_op_find("embedding");
    cr_assert(d);
    cr_assert_eq(d->n_inputs, 2);
    cr_assert_str_eq(d->input_names[0], "input");
    cr_assert_str_eq(d->input_names[1], "weight");
    cr_assert_eq(d->index_inputs, 1u);
    cr_assert_eq(d->optional_inputs, 0u);
    cr_assert_eq(d->n_attrs, 3);
    cr_assert_str_eq(d->attrs[0].name, "padding_idx");
    cr_assert_eq(d->attrs[0].type, YK_ATTR_INT);
    cr_assert(d->attrs[0].nullable);
    cr_assert_str_eq(d->attrs[1].name, "scale_grad_by_freq");
    cr_assert_eq(d->attrs[1].type, YK_ATTR_BOOL);
    cr_assert_eq(d->attrs[1].def_int, 0);
    cr_assert_str_eq(d->attrs[2].name, "sparse");
    cr_assert_eq(d->attrs[2].type, YK_ATTR_BOOL);
    cr_assert_eq(d->attrs[2].def_int, 0);

    /* build: padding_idx = -1 (row 2 of 3), sparse */
    yk_param *W = ten_r_plus_c("W", YK_F64, 3, 2);
    yk_tensor *idx = TI(ctx, SHAPE(2), IDX(2, 1));
    yk_tensor *seed = T64(ctx, SHAPE(2, 2), VALS(1, 2, 3, 4));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *in[2] = {yk_const(g, idx), yk_param_node(g, W)};
    yk_attr_value a[3] = {{.i = -1}, {.i = 0}, {.i = 1}};
    yk_node *y = d->build(g, in, 2, a);
    backward_with(g, y, seed);
    yk_graph_end(g);
    cr_assert_eq(yk_param_grad_kind(W), YK_GRAD_ROWS);
    yk_tensor *dg = dense_grad(ctx, W);
    expect_close(dg, VALS(0, 0, 3, 4, 0, 0), 6, 0, 0);
    yk_tensor_free(dg);
    yk_tensor_free(seed);
    yk_tensor_free(idx);
}

/* ------------------------------------------------------------- renorm */

Test(embedding, renorm_rescales_looked_up_rows_once)
{
    for (int k = 0; k < 2; k++) {
        /* row norms (2-norm): 5, 0.5, 10, 13 */
        double v[8] = {3, 4, 0.3, 0.4, 6, 8, 5, 12};
        yk_tensor *W = (k ? T32 : T64)(ctx, SHAPE(4, 2), v);
        yk_tensor *idx = TI(ctx, SHAPE(2, 2), IDX(0, 1, 0, 3));
        cr_assert_eq(yk_embedding_renorm(W, idx, 1.0, 2.0), YK_OK, "%s",
                     yk_last_error(ctx));
        /* Rows 0 and 3 exceed 1: scaled by 1 / (norm + 1e-7), once even
         * though row 0 is looked up twice. Row 1 is under 1, row 2 is not
         * looked up: both unchanged. */
        double s0 = 1 / (5 + 1e-7), s3 = 1 / (13 + 1e-7);
        expect_close(W, VALS(3 * s0, 4 * s0, 0.3, 0.4, 6, 8, 5 * s3, 12 * s3),
                     8, k ? 1e-6 : 1e-15, 0);
        yk_tensor_free(W);
        yk_tensor_free(idx);
    }
}

Test(embedding, renorm_other_norms)
{
    yk_tensor *W = T64(ctx, SHAPE(2, 3), VALS(1, -2, 3, -4, 1, 1));
    yk_tensor *idx = TI(ctx, SHAPE(2), IDX(0, 1));
    /* 1-norms: 6 and 6 -> scaled to 3 */
    cr_assert_eq(yk_embedding_renorm(W, idx, 3.0, 1.0), YK_OK);
    double s = 3 / (6 + 1e-7);
    expect_close(W, VALS(s, -2 * s, 3 * s, -4 * s, s, s), 6, 1e-15, 0);
    /* inf-norms of the result: 3 s and 4 s (about 1.5 and 2); with max
     * 1.8 only row 1 is scaled, by 1.8 / (4 s + 1e-7) */
    cr_assert_eq(yk_embedding_renorm(W, idx, 1.8, INFINITY), YK_OK);
    double t1 = 1.8 / (4 * s + 1e-7);
    expect_close(W, VALS(s, -2 * s, 3 * s, -4 * s * t1, s * t1, s * t1), 6,
                 1e-14, 0);
    /* 3-norm of [1, 2]: 9^(1/3) */
    yk_tensor *V = T64(ctx, SHAPE(1, 2), VALS(1, 2));
    yk_tensor *i0 = TI(ctx, 0, NULL, IDX(0));
    cr_assert_eq(yk_embedding_renorm(V, i0, 1.0, 3.0), YK_OK);
    double u = 1 / (cbrt(9) + 1e-7);
    expect_close(V, VALS(u, 2 * u), 2, 1e-14, 0);
    yk_tensor_free(V);
    yk_tensor_free(i0);
    yk_tensor_free(W);
    yk_tensor_free(idx);
}

Test(embedding, renorm_errors)
{
    yk_tensor *W = T64(ctx, SHAPE(2, 2), VALS(3, 4, 5, 12));
    yk_tensor *W1 = T64(ctx, SHAPE(4), VALS(3, 4, 5, 12));
    yk_tensor *Wi = TI(ctx, SHAPE(2, 2), IDX(3, 4, 5, 12));
    yk_tensor *bad = TI(ctx, SHAPE(3), IDX(0, 1, 2));
    yk_tensor *fidx = T64(ctx, SHAPE(1), VALS(0));
    yk_tensor *ok = TI(ctx, SHAPE(1), IDX(1));
    cr_assert_eq(yk_embedding_renorm(W, bad, 1, 2), YK_ERANGE);
    expect_error(ctx, YK_ERANGE, "embedding_renorm: input[2] = 2 is out of "
                 "range for a weight with 2 rows");
    cr_assert_eq(yk_embedding_renorm(W, fidx, 1, 2), YK_EDTYPE);
    expect_error(ctx, YK_EDTYPE, "embedding_renorm: input is f64");
    cr_assert_eq(yk_embedding_renorm(W1, ok, 1, 2), YK_ESHAPE);
    expect_error(ctx, YK_ESHAPE, "embedding_renorm: weight must be 2-D");
    cr_assert_eq(yk_embedding_renorm(Wi, ok, 1, 2), YK_EDTYPE);
    expect_error(ctx, YK_EDTYPE, "embedding_renorm: weight is i64");
    cr_assert_eq(yk_embedding_renorm(W, ok, -1, 2), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "embedding_renorm: max_norm = -1");
    cr_assert_eq(yk_embedding_renorm(W, ok, 1, 0), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "embedding_renorm: norm_type = 0");
    cr_assert_eq(yk_embedding_renorm(W, NULL, 1, 2), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "embedding_renorm: input is NULL");
    cr_assert_eq(yk_embedding_renorm(NULL, ok, 1, 2), YK_EINVAL);
    /* Nothing was changed by the failed calls. */
    expect_close(W, VALS(3, 4, 5, 12), 4, 0, 0);
    yk_tensor *all[] = {W, W1, Wi, bad, fidx, ok};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        yk_tensor_free(all[i]);
}
