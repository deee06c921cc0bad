/* Tests of yk_embedding_bag (ops/embedding.c); tying it to an embedding is
 * tested in test_tie.c.
 *
 * Hand-worked numbers use W[r][c] = 10 r + c (a looked-up row shows which
 * row it is) and integer seeds; each expected number is worked out in the
 * comment next to it. Backward is also checked against finite differences
 * for every mode and option (expect_gradcheck). */
#include "check.h"

#include <stdlib.h>

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

TestSuite(embedding_bag, .init = setup, .fini = teardown);

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

/* One bag call and its backward. */
typedef struct bag_call {
    yk_param *w;
    yk_tensor *input, *offsets; /* offsets may be NULL               */
    yk_param *psw;              /* per_sample_weights, may be NULL   */
    yk_bag_opts o;
    yk_tensor *seed;            /* NULL: forward only                */
} bag_call;

static yk_node *build_bag(yk_graph *g, void *ud)
{
    bag_call *c = ud;
    return yk_embedding_bag(g, yk_const(g, c->input), yk_param_node(g, c->w),
                            c->offsets ? yk_const(g, c->offsets) : NULL,
                            c->psw ? yk_param_node(g, c->psw) : NULL, &c->o);
}

/* Runs c; checks the output against want_value (shape [B, D]) and, with a
 * seed, W's gradient against want_grad (V x D values). Gradients are left
 * in the model. */
static void expect_bag(bag_call *c, int64_t B, const double *want_value,
                       const double *want_grad, double tol)
{
    yk_model_zero_grad(m);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = build_bag(g, c);
    cr_assert(y, "%s", yk_last_error(ctx));
    const yk_tensor *wv = yk_param_value(c->w);
    int64_t D = yk_tensor_dim(wv, 1);
    expect_shape(yk_value(y), SHAPE(B, D));
    expect_close(yk_value(y), want_value, B * D, tol, tol);
    if (c->seed) {
        const yk_tensor *sp = c->seed;
        cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK, "%s",
                     yk_last_error(ctx));
        yk_tensor *d = dense_grad(ctx, c->w);
        expect_close(d, want_grad, yk_tensor_numel(wv), tol, tol);
        yk_tensor_free(d);
    }
    yk_graph_end(g);
}

/* ------------------------------------------------- modes and layouts */

/* input [1, 3, 1, 5, 0, 2], offsets [0, 3, 3, 5]: bags [1, 3, 1], [] (empty),
 * [5, 0], [2]; W[r] = [10 r, 10 r + 1]; seed rows [1, 2], [3, 4], [5, 6],
 * [7, 8]. */
Test(embedding_bag, sum_mean_max_with_offsets_f64_and_f32)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *W = ten_r_plus_c(k ? "W32" : "W64", dt, 6, 2);
        yk_tensor *input = TI(ctx, SHAPE(6), IDX(1, 3, 1, 5, 0, 2));
        yk_tensor *offsets = TI(ctx, SHAPE(4), IDX(0, 3, 3, 5));
        yk_tensor *seed = (k ? T32 : T64)(ctx, SHAPE(4, 2),
                                          VALS(1, 2, 3, 4, 5, 6, 7, 8));
        double tol = k ? 1e-6 : 1e-14;
        bag_call c = {W, input, offsets, NULL, opts_mode(YK_BAG_SUM), seed};
        /* sum: [10+30+10, 11+31+11], 0, [50+0, 51+1], [20, 21];
         * grad: row 1 twice [1, 2]; row 3 [1, 2]; rows 5, 0 [5, 6]; row 2
         * [7, 8]; the empty bag's seed [3, 4] goes nowhere */
        expect_bag(&c, 4, VALS(50, 53, 0, 0, 50, 52, 20, 21),
                   VALS(5, 6, 2, 4, 7, 8, 1, 2, 0, 0, 5, 6), tol);
        /* mean: bag 0 / 3, bag 2 / 2; grad: row 1 2 [1, 2] / 3, row 3
         * [1, 2] / 3, rows 5 and 0 [5, 6] / 2 */
        c.o = opts_mode(YK_BAG_MEAN);
        expect_bag(&c, 4, VALS(50.0 / 3, 53.0 / 3, 0, 0, 25, 26, 20, 21),
                   VALS(2.5, 3, 2.0 / 3, 4.0 / 3, 7, 8, 1.0 / 3, 2.0 / 3, 0,
                        0, 2.5, 3), tol);
        /* max: row 3 in bag 0, row 5 in bag 2, row 2 in bag 3 */
        c.o = opts_mode(YK_BAG_MAX);
        expect_bag(&c, 4, VALS(30, 31, 0, 0, 50, 51, 20, 21),
                   VALS(0, 0, 0, 0, 7, 8, 1, 2, 0, 0, 5, 6), tol);
        yk_tensor_free(seed);
        yk_tensor_free(offsets);
        yk_tensor_free(input);
    }
}

/* The same bags [1, 3, 1], [], [5, 0], [2] with include_last_offset:
 * offsets [0, 3, 3, 5, 6] (one bag fewer than offsets). */
Test(embedding_bag, include_last_offset)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 6, 2);
    yk_tensor *input = TI(ctx, SHAPE(6), IDX(1, 3, 1, 5, 0, 2));
    yk_tensor *offsets = TI(ctx, SHAPE(5), IDX(0, 3, 3, 5, 6));
    yk_tensor *seed = T64(ctx, SHAPE(4, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8));
    bag_call c = {W, input, offsets, NULL, opts_mode(YK_BAG_SUM), seed};
    c.o.include_last_offset = true;
    expect_bag(&c, 4, VALS(50, 53, 0, 0, 50, 52, 20, 21),
               VALS(5, 6, 2, 4, 7, 8, 1, 2, 0, 0, 5, 6), 0);
    /* offsets [0, 3]: without include_last_offset two bags [1, 3, 1] and
     * [5, 0, 2]; with it one bag, which must then end at len(input) -- so
     * [0, 6]: one bag of everything. */
    yk_tensor *o2 = TI(ctx, SHAPE(2), IDX(0, 6));
    c.offsets = o2;
    c.seed = NULL;
    expect_bag(&c, 1, VALS(120, 126), NULL, 0); /* 10+30+10+50+0+20, +6 */
    yk_tensor_free(o2);
    yk_tensor_free(seed);
    yk_tensor_free(offsets);
    yk_tensor_free(input);
}

/* offsets [0] over an empty input: one empty bag, or zero bags with
 * include_last_offset. */
Test(embedding_bag, empty_input)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 3, 2);
    yk_tensor *input = TI(ctx, SHAPE(0), NULL);
    yk_tensor *offsets = TI(ctx, SHAPE(1), IDX(0));
    yk_tensor *seed = T64(ctx, SHAPE(1, 2), VALS(1, 1));
    for (int mode = 0; mode < 3; mode++) {
        bag_call c = {W, input, offsets, NULL, opts_mode((yk_bag_mode)mode),
                      seed};
        expect_bag(&c, 1, VALS(0, 0), VALS(0, 0, 0, 0, 0, 0), 0);
        c.o.include_last_offset = true;
        c.seed = NULL;
        expect_bag(&c, 0, NULL, NULL, 0);
    }
    yk_tensor_free(seed);
    yk_tensor_free(offsets);
    yk_tensor_free(input);
}

/* 2-D input [[1, 3], [5, 0]]: one bag a row; seed [1, 2], [3, 4]. */
Test(embedding_bag, two_d_input_is_one_bag_a_row)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *W = ten_r_plus_c(k ? "W32" : "W64", dt, 6, 2);
        yk_tensor *input = TI(ctx, SHAPE(2, 2), IDX(1, 3, 5, 0));
        yk_tensor *seed = (k ? T32 : T64)(ctx, SHAPE(2, 2), VALS(1, 2, 3, 4));
        bag_call c = {W, input, NULL, NULL, opts_mode(YK_BAG_SUM), seed};
        expect_bag(&c, 2, VALS(40, 42, 50, 52),
                   VALS(3, 4, 1, 2, 0, 0, 1, 2, 0, 0, 3, 4), 0);
        c.o = opts_mode(YK_BAG_MEAN);
        expect_bag(&c, 2, VALS(20, 21, 25, 26),
                   VALS(1.5, 2, 0.5, 1, 0, 0, 0.5, 1, 0, 0, 1.5, 2), 0);
        c.o = opts_mode(YK_BAG_MAX);
        expect_bag(&c, 2, VALS(30, 31, 50, 51),
                   VALS(0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4), 0);
        /* [B, 0]: every bag empty */
        yk_tensor *none = TI(ctx, SHAPE(2, 0), NULL);
        c.input = none;
        expect_bag(&c, 2, VALS(0, 0, 0, 0), VALS(0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                  0, 0), 0);
        yk_tensor_free(none);
        yk_tensor_free(seed);
        yk_tensor_free(input);
    }
}

Test(embedding_bag, null_opts_mean_the_defaults)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 4, 2);
    yk_tensor *input = TI(ctx, SHAPE(1, 2), IDX(1, 3));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding_bag(g, yk_const(g, input), yk_param_node(g, W),
                                  NULL, NULL, NULL);
    cr_assert(y, "%s", yk_last_error(ctx));
    /* mean of rows 1 and 3 */
    EXPECT_VALUES(yk_value(y), SHAPE(1, 2), VALS(20, 21), 0);
    yk_graph_end(g);
    yk_tensor_free(input);
}

/* ------------------------------------------------------------ padding */

/* padding_idx -1 (row 5 of 6): input [1, 3, 5, 5, 0, 5], offsets [0, 2, 4]:
 * bags [1, 3], [5, 5] (only padding: an empty bag), [0, 5] (= [0]). Row 5
 * holds the largest values, so max mode shows it takes no part. Seed [1, 2],
 * [3, 4], [5, 6]. */
/* The f32 kernels for the common widths (16, 64: registers, AVX2 where
 * the CPU has it) against the definition written out here: each output
 * element is 0 + row + row ... in entry order, divided by the count for a
 * mean of several rows; bit for bit, with padding and empty bags, for
 * every width around the special ones. */
Test(embedding_bag, f32_sum_and_mean_are_the_in_order_sums_bit_for_bit)
{
    const int64_t V = 50, n = 23, bags = 6;
    const int64_t offs[6] = {0, 5, 5, 12, 13, 15}; /* bag 1 empty */
    int64_t idx[23];
    for (int64_t i = 0; i < n; i++)
        idx[i] = (i * 17 + 3) % V;
    idx[7] = idx[8] = 4; /* padding: bag 3 holds two */
    yk_tensor *input = TI(ctx, SHAPE(23), idx);
    yk_tensor *offsets = TI(ctx, SHAPE(6), offs);
    const int64_t widths[] = {1, 15, 16, 17, 63, 64, 65, 130};
    for (int k = 0; k < 8; k++) {
        int64_t D = widths[k];
        yk_tensor *W = yk_tensor_zeros(ctx, YK_F32, 2, (int64_t[]){V, D});
        cr_assert_eq(yk_tensor_fill_normal(W, 7 + k, 0, 1), YK_OK);
        const float *w = yk_tensor_data(W);
        for (int k2 = 0; k2 < 2; k2++) {
            yk_bag_mode mode = k2 ? YK_BAG_MEAN : YK_BAG_SUM;
            yk_bag_opts o = opts_mode(mode);
            o.padding_idx = 4;
            yk_graph *g = yk_graph_begin(ctx);
            yk_node *y = yk_embedding_bag(g, yk_const(g, input), yk_const(g, W),
                                          yk_const(g, offsets), NULL, &o);
            cr_assert(y, "%s", yk_last_error(ctx));
            const float *out = yk_tensor_data(yk_value(y));
            for (int64_t b = 0; b < bags; b++) {
                int64_t lo = offs[b], hi = b + 1 < bags ? offs[b + 1] : n;
                for (int64_t c = 0; c < D; c++) {
                    float acc = 0;
                    int count = 0;
                    for (int64_t i = lo; i < hi; i++)
                        if (idx[i] != 4) {
                            acc += w[idx[i] * D + c];
                            count++;
                        }
                    if (mode == YK_BAG_MEAN && count > 1)
                        acc /= (float)count;
                    cr_assert(memcmp(&acc, &out[b * D + c], sizeof acc) == 0,
                              "D %lld %s bag %lld column %lld: %.9g, want "
                              "%.9g", (long long)D,
                              mode == YK_BAG_MEAN ? "mean" : "sum",
                              (long long)b, (long long)c, out[b * D + c], acc);
                }
            }
            yk_graph_end(g);
        }
        yk_tensor_free(W);
    }
    yk_tensor_free(offsets);
    yk_tensor_free(input);
}

Test(embedding_bag, padding_entries_are_skipped_in_every_mode)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 6, 2);
    yk_tensor *input = TI(ctx, SHAPE(6), IDX(1, 3, 5, 5, 0, 5));
    yk_tensor *offsets = TI(ctx, SHAPE(3), IDX(0, 2, 4));
    yk_tensor *seed = T64(ctx, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6));
    int64_t pads[2] = {-1, 5};
    for (int p = 0; p < 2; p++) {
        bag_call c = {W, input, offsets, NULL, opts_mode(YK_BAG_SUM), seed};
        c.o.padding_idx = pads[p];
        /* sum: [10+30, 11+31], 0, [0, 1]; rows 1, 3 get [1, 2], row 0 [5, 6] */
        expect_bag(&c, 3, VALS(40, 42, 0, 0, 0, 1),
                   VALS(5, 6, 1, 2, 0, 0, 1, 2, 0, 0, 0, 0), 0);
        /* mean: the divisor counts no padding: bag 2 is [0, 1] / 1 */
        c.o.mode = YK_BAG_MEAN;
        expect_bag(&c, 3, VALS(20, 21, 0, 0, 0, 1),
                   VALS(5, 6, 0.5, 1, 0, 0, 0.5, 1, 0, 0, 0, 0), 0);
        /* max: row 5 never wins */
        c.o.mode = YK_BAG_MAX;
        expect_bag(&c, 3, VALS(30, 31, 0, 0, 0, 1),
                   VALS(5, 6, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0), 0);
    }
    yk_tensor_free(seed);
    yk_tensor_free(offsets);
    yk_tensor_free(input);
}

/* ---------------------------------------------------------- max ties */

/* W rows: 0 [1, 5, 0], 1 [3, 5, 2], 2 [3, 1, 2]. Bag [0, 1, 2]: column 0's
 * max 3 is held by rows 1 and 2, column 1's 5 by rows 0 and 1, column 2's 2
 * by rows 1 and 2; the first entry in input order wins each. Bag [2, 1, 0]
 * (reversed) picks rows 2, 1, 2. Seed [10, 20, 30]. */
Test(embedding_bag, max_gradient_goes_to_first_entry_holding_the_max)
{
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *W = param_with(m, k ? "W32" : "W64", dt, SHAPE(3, 3),
                                 VALS(1, 5, 0, 3, 5, 2, 3, 1, 2));
        yk_tensor *fwd = TI(ctx, SHAPE(1, 3), IDX(0, 1, 2));
        yk_tensor *rev = TI(ctx, SHAPE(1, 3), IDX(2, 1, 0));
        yk_tensor *seed = (k ? T32 : T64)(ctx, SHAPE(1, 3), VALS(10, 20, 30));
        bag_call c = {W, fwd, NULL, NULL, opts_mode(YK_BAG_MAX), seed};
        /* col 0 -> row 1, col 1 -> row 0, col 2 -> row 1 */
        expect_bag(&c, 1, VALS(3, 5, 2), VALS(0, 20, 0, 10, 0, 30, 0, 0, 0),
                   0);
        c.input = rev;
        /* col 0 -> row 2, col 1 -> row 1, col 2 -> row 2 */
        expect_bag(&c, 1, VALS(3, 5, 2), VALS(0, 0, 0, 0, 20, 0, 10, 0, 30),
                   0);
        /* a row repeated in a bag: its first entry takes the gradient, once */
        yk_tensor *rep = TI(ctx, SHAPE(1, 2), IDX(1, 1));
        c.input = rep;
        expect_bag(&c, 1, VALS(3, 5, 2), VALS(0, 0, 0, 10, 20, 30, 0, 0, 0),
                   0);
        yk_tensor_free(rep);
        yk_tensor_free(seed);
        yk_tensor_free(rev);
        yk_tensor_free(fwd);
    }
}

/* ------------------------------------------------- per_sample_weights */

/* input [1, 3, 1, 5, 0, 2], offsets [0, 3, 3, 5], psw [1, 2, 4, 0.5, 3, 2],
 * seed [1, 2], [3, 4], [5, 6], [7, 8].
 * Bag 0: 1 [10, 11] + 2 [30, 31] + 4 [10, 11] = [110, 117]; bag 2:
 * 0.5 [50, 51] + 3 [0, 1] = [25, 28.5]; bag 3: 2 [20, 21] = [40, 42].
 * dW: row 1 (1 + 4) [1, 2]; row 3 2 [1, 2]; row 5 0.5 [5, 6]; row 0
 * 3 [5, 6]; row 2 2 [7, 8]. d psw[i] = W[input[i]] . seed[bag]: 10 + 22,
 * 30 + 62, 32, 250 + 306, 0 + 6, 140 + 168. */
Test(embedding_bag, per_sample_weights_and_their_gradient)
{
    for (int k = 0; k < 2; k++) {
        yk_model_free(m);
        m = yk_model_new(ctx);
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *W = ten_r_plus_c("W", dt, 6, 2);
        yk_param *psw = param_with(m, "psw", dt, SHAPE(6),
                                   VALS(1, 2, 4, 0.5, 3, 2));
        yk_tensor *input = TI(ctx, SHAPE(6), IDX(1, 3, 1, 5, 0, 2));
        yk_tensor *offsets = TI(ctx, SHAPE(4), IDX(0, 3, 3, 5));
        yk_tensor *seed = (k ? T32 : T64)(ctx, SHAPE(4, 2),
                                          VALS(1, 2, 3, 4, 5, 6, 7, 8));
        bag_call c = {W, input, offsets, psw, opts_mode(YK_BAG_SUM), seed};
        expect_bag(&c, 4, VALS(110, 117, 0, 0, 25, 28.5, 40, 42),
                   VALS(15, 18, 5, 10, 14, 16, 2, 4, 0, 0, 2.5, 3), 0);
        expect_close(yk_param_grad(psw), VALS(32, 92, 32, 556, 6, 308), 6, 0,
                     0);
        /* padding_idx 1: entries 0 and 2 are skipped and their weights get
         * gradient 0; bag 0 is 2 [30, 31] */
        c.o.padding_idx = 1;
        expect_bag(&c, 4, VALS(60, 62, 0, 0, 25, 28.5, 40, 42),
                   VALS(15, 18, 0, 0, 14, 16, 2, 4, 0, 0, 2.5, 3), 0);
        expect_close(yk_param_grad(psw), VALS(0, 92, 0, 556, 6, 308), 6, 0, 0);
        /* scale_grad_by_freq: row 1 occurs twice, so dW[1] = 5 [1, 2] / 2;
         * psw's gradient is not scaled */
        c.o.padding_idx = YK_NO_PADDING;
        c.o.scale_grad_by_freq = true;
        expect_bag(&c, 4, VALS(110, 117, 0, 0, 25, 28.5, 40, 42),
                   VALS(15, 18, 2.5, 5, 14, 16, 2, 4, 0, 0, 2.5, 3), 0);
        expect_close(yk_param_grad(psw), VALS(32, 92, 32, 556, 6, 308), 6, 0,
                     0);
        yk_tensor_free(seed);
        yk_tensor_free(offsets);
        yk_tensor_free(input);
    }
}

/* psw as a constant: only W gets a gradient; psw as the only parameter:
 * only psw does. */
Test(embedding_bag, per_sample_weights_alone_or_constant)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 4, 2);
    yk_param *P = param_with(m, "P", YK_F64, SHAPE(1, 2), VALS(2, -1));
    yk_tensor *input = TI(ctx, SHAPE(1, 2), IDX(3, 1));
    yk_tensor *pconst = T64(ctx, SHAPE(1, 2), VALS(2, -1));
    yk_tensor *seed = T64(ctx, SHAPE(1, 2), VALS(1, 3));
    yk_bag_opts o = opts_mode(YK_BAG_SUM);
    /* W frozen, psw a parameter: d P = [30 + 93, 10 + 33] */
    yk_param_set_requires_grad(W, false);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding_bag(g, yk_const(g, input), yk_param_node(g, W),
                                  NULL, yk_param_node(g, P), &o);
    const yk_tensor *sp = seed;
    cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK, "%s",
                 yk_last_error(ctx));
    yk_graph_end(g);
    expect_close(yk_param_grad(P), VALS(123, 43), 2, 0, 0);
    /* psw constant: dW[3] = 2 [1, 3], dW[1] = -[1, 3] */
    yk_param_set_requires_grad(W, true);
    yk_model_zero_grad(m);
    g = yk_graph_begin(ctx);
    y = yk_embedding_bag(g, yk_const(g, input), yk_param_node(g, W), NULL,
                         yk_const(g, pconst), &o);
    cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK, "%s",
                 yk_last_error(ctx));
    yk_graph_end(g);
    expect_close(yk_param_grad(W), VALS(0, 0, -1, -3, 0, 0, 2, 6), 8, 0, 0);
    cr_assert_eq(yk_param_grad_kind(P), YK_GRAD_NONE);
    yk_tensor_free(seed);
    yk_tensor_free(pconst);
    yk_tensor_free(input);
}

/* ------------------------------------------------- scale_grad_by_freq */

/* input [1, 3, 1, 5, 1, 2], offsets [0, 3, 3, 5]: row 1 occurs 3 times in
 * the whole input (twice in bag 0, once in bag 2), the others once. Seed
 * [1, 2], [3, 4], [5, 6], [7, 8]. */
Test(embedding_bag, scale_grad_by_freq_counts_over_all_bags)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 6, 2);
    yk_tensor *input = TI(ctx, SHAPE(6), IDX(1, 3, 1, 5, 1, 2));
    yk_tensor *offsets = TI(ctx, SHAPE(4), IDX(0, 3, 3, 5));
    yk_tensor *seed = T64(ctx, SHAPE(4, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8));
    bag_call c = {W, input, offsets, NULL, opts_mode(YK_BAG_SUM), seed};
    c.o.scale_grad_by_freq = true;
    /* sum: row 1 (2 [1, 2] + [5, 6]) / 3 = [7/3, 10/3]; row 3 [1, 2];
     * row 5 [5, 6]; row 2 [7, 8] */
    expect_bag(&c, 4, VALS(50, 53, 0, 0, 60, 62, 20, 21),
               VALS(0, 0, 7.0 / 3, 10.0 / 3, 7, 8, 1, 2, 0, 0, 5, 6), 1e-14);
    /* mean: seed / bag size / count: row 1 (2 [1, 2] / 3 + [5, 6] / 2) / 3
     * = [19/18, 13/9]; row 3 [1, 2] / 3; row 5 [5, 6] / 2 */
    c.o.mode = YK_BAG_MEAN;
    expect_bag(&c, 4, VALS(50.0 / 3, 53.0 / 3, 0, 0, 30, 31, 20, 21),
               VALS(0, 0, 19.0 / 18, 13.0 / 9, 7, 8, 1.0 / 3, 2.0 / 3, 0, 0,
                    2.5, 3), 1e-14);
    /* padding 1: row 1 gets nothing; the others are still counted once */
    c.o.padding_idx = 1;
    expect_bag(&c, 4, VALS(30, 31, 0, 0, 50, 51, 20, 21),
               VALS(0, 0, 0, 0, 7, 8, 1, 2, 0, 0, 5, 6), 1e-14);
    yk_tensor_free(seed);
    yk_tensor_free(offsets);
    yk_tensor_free(input);
}

/* Only the bag's contribution is scaled: a tied embedding use is not. */
Test(embedding_bag, scale_grad_by_freq_leaves_other_uses_alone)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 3, 2);
    yk_tensor *bidx = TI(ctx, SHAPE(1, 2), IDX(2, 2));
    yk_tensor *eidx = TI(ctx, SHAPE(2), IDX(2, 2));
    yk_tensor *bs = T64(ctx, SHAPE(1, 2), VALS(1, 2));
    yk_tensor *es = T64(ctx, SHAPE(2, 2), VALS(10, 20, 30, 40));
    yk_bag_opts o = opts_mode(YK_BAG_SUM);
    o.scale_grad_by_freq = true;
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *w = yk_param_node(g, W);
    yk_node *ys[2] = {
        yk_embedding_bag(g, yk_const(g, bidx), w, NULL, NULL, &o),
        yk_embedding(g, yk_const(g, eidx), w, YK_NO_PADDING, false, false)};
    const yk_tensor *seeds[2] = {bs, es};
    cr_assert_eq(yk_backward_seeded(g, 2, ys, seeds), YK_OK, "%s",
                 yk_last_error(ctx));
    yk_graph_end(g);
    /* row 2: bag 2 [1, 2] / 2 + embedding [10, 20] + [30, 40] */
    expect_close(yk_param_grad(W), VALS(0, 0, 0, 0, 41, 62), 6, 0, 0);
    yk_tensor_free(es);
    yk_tensor_free(bs);
    yk_tensor_free(eidx);
    yk_tensor_free(bidx);
}

/* ---------------------------------------------------- sparse and dense */

Test(embedding_bag, sparse_gives_the_dense_numbers_as_rows)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){7, 3});
    yk_tensor_fill_normal(yk_param_value(W), 11, 0, 1);
    yk_tensor *input = TI(ctx, SHAPE(7), IDX(6, 2, 6, 0, 4, 2, 3));
    yk_tensor *offsets = TI(ctx, SHAPE(4), IDX(0, 3, 3, 5));
    yk_tensor *seed = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){4, 3});
    yk_tensor_fill_normal(seed, 12, 0, 1);
    for (int mode = 0; mode < 2; mode++) {
        for (int pad = 0; pad < 2; pad++) {
            yk_tensor *dense = NULL;
            for (int sparse = 0; sparse < 2; sparse++) {
                bag_call c = {W, input, offsets, NULL,
                              opts_mode((yk_bag_mode)mode), seed};
                c.o.padding_idx = pad ? 2 : YK_NO_PADDING;
                c.o.sparse = sparse;
                yk_model_zero_grad(m);
                yk_graph *g = yk_graph_begin(ctx);
                yk_node *y = build_bag(g, &c);
                const yk_tensor *sp = seed;
                cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK);
                yk_graph_end(g);
                cr_assert_eq(yk_param_grad_kind(W),
                             sparse ? YK_GRAD_ROWS : YK_GRAD_DENSE);
                yk_tensor *d = dense_grad(ctx, W);
                if (!sparse) {
                    dense = d;
                    continue;
                }
                expect_close(d, (const double *)yk_tensor_data(dense), 21,
                             1e-15, 0);
                /* rows: every looked-up row but padding, sorted */
                int64_t n;
                const int64_t *rows;
                const yk_tensor *vals;
                cr_assert_eq(yk_param_grad_rows(W, &n, &rows, &vals), YK_OK);
                int64_t want_pad[4] = {0, 3, 4, 6}, want[5] = {0, 2, 3, 4, 6};
                const int64_t *w = pad ? want_pad : want;
                cr_assert_eq(n, pad ? 4 : 5);
                for (int64_t i = 0; i < n; i++)
                    cr_assert_eq(rows[i], w[i], "rows[%lld] = %lld",
                                 (long long)i, (long long)rows[i]);
                yk_tensor_free(d);
            }
            yk_tensor_free(dense);
        }
    }
    yk_tensor_free(seed);
    yk_tensor_free(offsets);
    yk_tensor_free(input);
}

/* Empty bags and bags of only padding still make a (row-sparse, no rows)
 * gradient: the lookup happened. */
Test(embedding_bag, sparse_lookup_of_no_row_still_counts)
{
    yk_param *W = ten_r_plus_c("W", YK_F64, 3, 2);
    yk_tensor *input = TI(ctx, SHAPE(2), IDX(1, 1));
    yk_tensor *offsets = TI(ctx, SHAPE(2), IDX(0, 0));
    yk_tensor *seed = T64(ctx, SHAPE(2, 2), VALS(1, 1, 1, 1));
    bag_call c = {W, input, offsets, NULL, opts_mode(YK_BAG_SUM), seed};
    c.o.sparse = true;
    c.o.padding_idx = 1;
    expect_bag(&c, 2, VALS(0, 0, 0, 0), VALS(0, 0, 0, 0, 0, 0), 0);
    cr_assert_eq(yk_param_grad_kind(W), YK_GRAD_ROWS);
    yk_tensor_free(seed);
    yk_tensor_free(offsets);
    yk_tensor_free(input);
}

/* -------------------------------------------------- finite differences */

Test(embedding_bag, every_mode_and_option_matches_finite_differences)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){6, 3});
    /* normal values: no two rows tie in a column, so max is smooth */
    yk_tensor_fill_normal(yk_param_value(W), 5, 0, 1);
    yk_tensor *flat = TI(ctx, SHAPE(7), IDX(1, 4, 1, 5, 0, 2, 5));
    yk_tensor *offs = TI(ctx, SHAPE(4), IDX(0, 3, 3, 5));      /* empty bag */
    yk_tensor *offs_last = TI(ctx, SHAPE(4), IDX(0, 2, 2, 7)); /* include_last */
    yk_tensor *rows = TI(ctx, SHAPE(3, 2), IDX(5, 2, 2, 3, 0, 5));
    yk_param *psw_flat = yk_model_add(m, "psw_flat", YK_F64, 1, (int64_t[]){7});
    yk_param *psw_rows = yk_model_add(m, "psw_rows", YK_F64, 2,
                                      (int64_t[]){3, 2});
    yk_tensor_fill_normal(yk_param_value(psw_flat), 6, 0, 1);
    yk_tensor_fill_normal(yk_param_value(psw_rows), 7, 0, 1);
    struct { yk_tensor *input, *offsets; bool last; yk_param *psw; } lay[3] = {
        {flat, offs, false, psw_flat},
        {flat, offs_last, true, psw_flat},
        {rows, NULL, false, psw_rows},
    };
    int64_t pads[3] = {YK_NO_PADDING, 5, -4}; /* -4: row 2 */
    for (int mode = 0; mode < 3; mode++)
        for (int l = 0; l < 3; l++)
            for (int p = 0; p < 3; p++)
                for (int sparse = 0; sparse < 2; sparse++)
                    for (int w = 0; w < 2; w++) {
                        if ((mode == YK_BAG_MAX && sparse) ||
                            (mode != YK_BAG_SUM && w))
                            continue;
                        bag_call c = {W, lay[l].input, lay[l].offsets,
                                      w ? lay[l].psw : NULL,
                                      opts_mode((yk_bag_mode)mode), NULL};
                        c.o.include_last_offset = lay[l].last;
                        c.o.padding_idx = pads[p];
                        c.o.sparse = sparse;
                        expect_gradcheck(m, build_bag, &c);
                    }
    yk_tensor_free(rows);
    yk_tensor_free(offs_last);
    yk_tensor_free(offs);
    yk_tensor_free(flat);
}

/* scale_grad_by_freq's gradient is not a derivative: it is the
 * finite-difference-checked unscaled gradient with row r divided by r's
 * count in the input; with distinct indices it must be the derivative. */
Test(embedding_bag, scale_grad_by_freq_is_unscaled_gradient_over_count)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){5, 2});
    yk_param *P = yk_model_add(m, "P", YK_F64, 1, (int64_t[]){7});
    yk_tensor_fill_normal(yk_param_value(W), 21, 0, 1);
    yk_tensor_fill_normal(yk_param_value(P), 22, 0, 1);
    /* counts: row 0: 1, row 1: 3, row 2: 0, row 3: 2, row 4: 1 */
    yk_tensor *input = TI(ctx, SHAPE(7), IDX(1, 3, 1, 4, 0, 3, 1));
    yk_tensor *offsets = TI(ctx, SHAPE(3), IDX(0, 2, 5));
    double count[5] = {1, 3, 1, 2, 1};
    yk_tensor *seed = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){3, 2});
    yk_tensor_fill_normal(seed, 23, 0, 1);
    for (int mode = 0; mode < 2; mode++)
        for (int w = 0; w < 2; w++)
            for (int sparse = 0; sparse < 2; sparse++) {
                if (mode == YK_BAG_MEAN && w)
                    continue;
                bag_call c = {W, input, offsets, w ? P : NULL,
                              opts_mode((yk_bag_mode)mode), seed};
                c.o.sparse = sparse;
                expect_gradcheck(m, build_bag, &c); /* the unscaled one */
                yk_model_zero_grad(m);
                yk_graph *g = yk_graph_begin(ctx);
                yk_node *y = build_bag(g, &c);
                const yk_tensor *sp = seed;
                cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK);
                yk_graph_end(g);
                yk_tensor *plain = dense_grad(ctx, W);
                yk_tensor *plain_p = w ? dense_grad(ctx, P) : NULL;
                c.o.scale_grad_by_freq = true;
                yk_model_zero_grad(m);
                g = yk_graph_begin(ctx);
                y = build_bag(g, &c);
                cr_assert_eq(yk_backward_seeded(g, 1, &y, &sp), YK_OK);
                yk_graph_end(g);
                yk_tensor *scaled = dense_grad(ctx, W);
                double want[10];
                for (int k = 0; k < 10; k++)
                    want[k] = yk_tensor_get(plain, k) / count[k / 2];
                expect_close(scaled, want, 10, 1e-15, 0);
                if (w) /* psw's gradient is not scaled */
                    expect_close(yk_param_grad(P),
                                 (const double *)yk_tensor_data(plain_p), 7,
                                 0, 0);
                yk_tensor_free(scaled);
                yk_tensor_free(plain_p);
                yk_tensor_free(plain);
            }
    /* distinct indices: count 1 everywhere, so the scaled gradient is the
     * derivative */
    yk_tensor *distinct = TI(ctx, SHAPE(2, 2), IDX(4, 1, 0, 3));
    for (int mode = 0; mode < 2; mode++) {
        bag_call c = {W, distinct, NULL, NULL, opts_mode((yk_bag_mode)mode),
                      NULL};
        c.o.scale_grad_by_freq = true;
        expect_gradcheck(m, build_bag, &c);
    }
    yk_tensor_free(distinct);
    yk_tensor_free(seed);
    yk_tensor_free(offsets);
    yk_tensor_free(input);
}

/* ------------------------------------------------------------- errors */

typedef struct bad_bag {
    yk_tensor *weight, *input, *offsets, *psw;
    yk_bag_opts o;
} bad_bag;

static void expect_bag_error(const bad_bag *b, yk_status want,
                             const char *part)
{
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *y = yk_embedding_bag(g, yk_const(g, b->input),
                                  yk_const(g, b->weight),
                                  b->offsets ? yk_const(g, b->offsets) : NULL,
                                  b->psw ? yk_const(g, b->psw) : NULL, &b->o);
    cr_assert_null(y, "expected an error mentioning \"%s\"", part);
    expect_error(ctx, want, part);
    cr_assert_eq(yk_graph_status(g), want);
    yk_graph_end(g);
    yk_clear_error(ctx);
}

Test(embedding_bag, argument_errors_name_the_culprit)
{
    yk_tensor *W = T64(ctx, SHAPE(4, 2), VALS(0, 1, 2, 3, 4, 5, 6, 7));
    yk_tensor *Wi = TI(ctx, SHAPE(4, 2), IDX(0, 1, 2, 3, 4, 5, 6, 7));
    yk_tensor *W1 = T64(ctx, SHAPE(8), VALS(0, 1, 2, 3, 4, 5, 6, 7));
    yk_tensor *in1 = TI(ctx, SHAPE(4), IDX(0, 1, 2, 3));
    yk_tensor *in2 = TI(ctx, SHAPE(2, 2), IDX(0, 1, 2, 3));
    yk_tensor *in3 = TI(ctx, SHAPE(1, 2, 2), IDX(0, 1, 2, 3));
    yk_tensor *in0 = TI(ctx, 0, NULL, IDX(1));
    yk_tensor *fin = T64(ctx, SHAPE(4), VALS(0, 1, 2, 3));
    yk_tensor *off = TI(ctx, SHAPE(2), IDX(0, 2));
    yk_tensor *psw = T64(ctx, SHAPE(4), VALS(1, 1, 1, 1));
    yk_tensor *psw32 = T32(ctx, SHAPE(4), VALS(1, 1, 1, 1));
    yk_tensor *pswi = TI(ctx, SHAPE(4), IDX(1, 1, 1, 1));
    yk_tensor *psw3 = T64(ctx, SHAPE(3), VALS(1, 1, 1));
    yk_bag_opts sum = opts_mode(YK_BAG_SUM), mean = opts_mode(YK_BAG_MEAN),
                max = opts_mode(YK_BAG_MAX);

    expect_bag_error(&(bad_bag){Wi, in1, off, NULL, sum}, YK_EDTYPE,
                     "embedding_bag: weight is i64");
    expect_bag_error(&(bad_bag){W1, in1, off, NULL, sum}, YK_ESHAPE,
                     "embedding_bag: weight must be 2-D [V, D], got shape [8]");
    expect_bag_error(&(bad_bag){W, fin, off, NULL, sum}, YK_EDTYPE,
                     "embedding_bag: input is f64, needs i64");
    expect_bag_error(&(bad_bag){W, in3, NULL, NULL, sum}, YK_ESHAPE,
                     "embedding_bag: input must be 1-D (with offsets) or 2-D "
                     "(one bag a row), got shape [1, 2, 2]");
    expect_bag_error(&(bad_bag){W, in0, NULL, NULL, sum}, YK_ESHAPE,
                     "got shape []");

    yk_bag_opts o = sum;
    o.padding_idx = 4;
    expect_bag_error(&(bad_bag){W, in1, off, NULL, o}, YK_EINVAL,
                     "embedding_bag: padding_idx = 4 is out of range");
    o.padding_idx = -5;
    expect_bag_error(&(bad_bag){W, in1, off, NULL, o}, YK_EINVAL,
                     "embedding_bag: padding_idx = -5 is out of range");

    o = max;
    o.scale_grad_by_freq = true;
    expect_bag_error(&(bad_bag){W, in1, off, NULL, o}, YK_EINVAL,
                     "embedding_bag: scale_grad_by_freq is not supported with "
                     "mode max");
    o = max;
    o.sparse = true;
    expect_bag_error(&(bad_bag){W, in1, off, NULL, o}, YK_EINVAL,
                     "embedding_bag: sparse is not supported with mode max");
    o.mode = (yk_bag_mode)7;
    expect_bag_error(&(bad_bag){W, in1, off, NULL, o}, YK_EINVAL,
                     "embedding_bag: mode = 7 is not a bag mode");

    expect_bag_error(&(bad_bag){W, in1, off, psw, mean}, YK_EINVAL,
                     "embedding_bag: per_sample_weights are only supported "
                     "with mode sum, not mean");
    expect_bag_error(&(bad_bag){W, in1, off, psw, max}, YK_EINVAL,
                     "per_sample_weights are only supported with mode sum, "
                     "not max");
    expect_bag_error(&(bad_bag){W, in1, off, psw3, sum}, YK_ESHAPE,
                     "embedding_bag: per_sample_weights have shape [3] but "
                     "input has shape [4]");
    expect_bag_error(&(bad_bag){W, in2, NULL, psw, sum}, YK_ESHAPE,
                     "per_sample_weights have shape [4] but input has shape "
                     "[2, 2]");
    expect_bag_error(&(bad_bag){W, in1, off, psw32, sum}, YK_EDTYPE,
                     "embedding_bag: per_sample_weights are f32 but weight "
                     "is f64");
    expect_bag_error(&(bad_bag){W, in1, off, pswi, sum}, YK_EDTYPE,
                     "per_sample_weights are i64 but weight is f64");

    /* NULL weight, then stickiness: a valid call on a failed graph. */
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_null(yk_embedding_bag(g, yk_const(g, in2), NULL, NULL, NULL,
                                    &sum));
    expect_error(ctx, YK_EINVAL, "embedding_bag: input 1 is NULL");
    cr_assert_null(yk_embedding_bag(g, yk_const(g, in2), yk_const(g, W), NULL,
                                    NULL, &sum));
    expect_error(ctx, YK_EINVAL, "embedding_bag: input 1 is NULL");
    yk_graph_end(g);

    yk_tensor *all[] = {W, Wi, W1, in1, in2, in3, in0, fin, off, psw, psw32,
                        pswi, psw3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        yk_tensor_free(all[i]);
}

Test(embedding_bag, offsets_errors_name_the_culprit)
{
    yk_tensor *W = T64(ctx, SHAPE(4, 2), VALS(0, 1, 2, 3, 4, 5, 6, 7));
    yk_tensor *in1 = TI(ctx, SHAPE(4), IDX(0, 1, 2, 3));
    yk_tensor *in2 = TI(ctx, SHAPE(2, 2), IDX(0, 1, 2, 3));
    yk_tensor *ok = TI(ctx, SHAPE(2), IDX(0, 2));
    yk_tensor *foff = T64(ctx, SHAPE(2), VALS(0, 2));
    yk_tensor *off2d = TI(ctx, SHAPE(2, 1), IDX(0, 2));
    yk_tensor *empty = TI(ctx, SHAPE(0), NULL);
    yk_tensor *nonzero = TI(ctx, SHAPE(2), IDX(1, 3));
    yk_tensor *decr = TI(ctx, SHAPE(3), IDX(0, 3, 2));
    yk_tensor *past = TI(ctx, SHAPE(3), IDX(0, 2, 5));
    yk_tensor *short_last = TI(ctx, SHAPE(3), IDX(0, 1, 3));
    yk_bag_opts sum = opts_mode(YK_BAG_SUM), last = sum;
    last.include_last_offset = true;

    expect_bag_error(&(bad_bag){W, in1, NULL, NULL, sum}, YK_EOFFSETS,
                     "embedding_bag: offsets are missing; a 1-D input needs "
                     "offsets");
    expect_bag_error(&(bad_bag){W, in2, ok, NULL, sum}, YK_EOFFSETS,
                     "embedding_bag: offsets given with a 2-D input [2, 2]");
    expect_bag_error(&(bad_bag){W, in1, foff, NULL, sum}, YK_EDTYPE,
                     "embedding_bag: offsets is f64, needs i64");
    expect_bag_error(&(bad_bag){W, in1, off2d, NULL, sum}, YK_EOFFSETS,
                     "embedding_bag: offsets must be 1-D, got shape [2, 1]");
    expect_bag_error(&(bad_bag){W, in1, empty, NULL, sum}, YK_EOFFSETS,
                     "embedding_bag: offsets are empty");
    expect_bag_error(&(bad_bag){W, in1, nonzero, NULL, sum}, YK_EOFFSETS,
                     "embedding_bag: offsets[0] = 1, must be 0");
    expect_bag_error(&(bad_bag){W, in1, decr, NULL, sum}, YK_EOFFSETS,
                     "embedding_bag: offsets[2] = 2 is less than offsets[1] "
                     "= 3");
    expect_bag_error(&(bad_bag){W, in1, past, NULL, sum}, YK_EOFFSETS,
                     "embedding_bag: offsets[2] = 5 is past the end of input "
                     "(length 4)");
    expect_bag_error(&(bad_bag){W, in1, short_last, NULL, last}, YK_EOFFSETS,
                     "embedding_bag: with include_last_offset, offsets[2] = 3 "
                     "must equal the length of input (4)");
    /* the same offsets are fine without include_last_offset (last bag
     * [3, 4)), and offsets [0, 4] are fine with it */
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert(yk_embedding_bag(g, yk_const(g, in1), yk_const(g, W),
                               yk_const(g, short_last), NULL, &sum),
              "%s", yk_last_error(ctx));
    yk_graph_end(g);

    yk_tensor *all[] = {W, in1, in2, ok, foff, off2d, empty, nonzero, decr,
                        past, short_last};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        yk_tensor_free(all[i]);
}

Test(embedding_bag, index_out_of_range_names_position_and_value)
{
    /* the design's example message, word for word */
    int64_t idx[18];
    for (int i = 0; i < 18; i++)
        idx[i] = i * 50;
    idx[17] = 1000;
    yk_tensor *W = yk_tensor_zeros(ctx, YK_F32, 2, (int64_t[]){1000, 2});
    yk_tensor *in = TI(ctx, SHAPE(18), idx);
    yk_tensor *off = TI(ctx, SHAPE(2), IDX(0, 9));
    yk_tensor *neg = TI(ctx, SHAPE(2, 3), IDX(0, 1, 2, 3, -7, 5));
    yk_bag_opts o = yk_bag_defaults();
    expect_bag_error(&(bad_bag){W, in, off, NULL, o}, YK_ERANGE,
                     "embedding_bag: input[17] = 1000 is out of range for a "
                     "weight with 1000 rows");
    expect_bag_error(&(bad_bag){W, neg, NULL, NULL, o}, YK_ERANGE,
                     "embedding_bag: input[1, 1] = -7 is out of range for a "
                     "weight with 1000 rows");
    yk_tensor_free(neg);
    yk_tensor_free(off);
    yk_tensor_free(in);
    yk_tensor_free(W);
}

/* ----------------------------------------------------------- registry */

Test(embedding_bag, registry_entry_matches_the_case_format)
{
    const yk_op_def *d = yk_op_find("embedding_bag");
    cr_assert(d);
    cr_assert_eq(d->n_inputs, 4);
    const char *names[4] = {"input", "weight", "offsets",
                            "per_sample_weights"};
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(d->input_names[i], names[i]);
    cr_assert_eq(d->optional_inputs, (1u << 2) | (1u << 3));
    cr_assert_eq(d->index_inputs, (1u << 0) | (1u << 2));
    cr_assert_eq(d->n_attrs, 5);
    const char *attrs[5] = {"mode", "include_last_offset", "padding_idx",
                            "scale_grad_by_freq", "sparse"};
    yk_attr_type types[5] = {YK_ATTR_STRING, YK_ATTR_BOOL, YK_ATTR_INT,
                             YK_ATTR_BOOL, YK_ATTR_BOOL};
    for (int i = 0; i < 5; i++) {
        cr_assert_str_eq(d->attrs[i].name, attrs[i]);
        cr_assert_eq(d->attrs[i].type, types[i]);
        cr_assert_eq(d->attrs[i].nullable, i == 2);
        cr_assert(!d->attrs[i].required);
        cr_assert_eq(d->attrs[i].def_int, 0);
    }
    cr_assert_str_eq(d->attrs[0].def_string, "mean");

    yk_param *W = ten_r_plus_c("W", YK_F64, 4, 2);
    yk_tensor *input = TI(ctx, SHAPE(3), IDX(1, 3, 2));
    yk_tensor *offs = TI(ctx, SHAPE(2), IDX(0, 2));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *in[4] = {yk_const(g, input), yk_param_node(g, W),
                      yk_const(g, offs), NULL};
    /* mode sum, padding_idx null: [10 + 30, 11 + 31], [20, 21] */
    yk_attr_value a[5] = {{.s = "sum"}, {.i = 0}, {.is_null = true}, {.i = 0},
                          {.i = 0}};
    yk_node *y = d->build(g, in, 4, a);
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2, 2), VALS(40, 42, 20, 21), 0);
    /* padding_idx -1 (row 3), mode max: [10, 11], [20, 21] */
    yk_attr_value b[5] = {{.s = "max"}, {.i = 0}, {.i = -1}, {.i = 0}, {.i = 0}};
    y = d->build(g, in, 4, b);
    cr_assert(y, "%s", yk_last_error(ctx));
    EXPECT_VALUES(yk_value(y), SHAPE(2, 2), VALS(10, 11, 20, 21), 0);
    /* unknown mode */
    yk_attr_value c[5] = {{.s = "median"}, {.i = 0}, {.is_null = true},
                          {.i = 0}, {.i = 0}};
    cr_assert_null(d->build(g, in, 4, c));
    expect_error(ctx, YK_EINVAL, "embedding_bag: mode = \"median\" is not one "
                 "of \"sum\", \"mean\", \"max\"");
    yk_graph_end(g);
    yk_tensor_free(offs);
    yk_tensor_free(input);
}

/* ------------------------------------------------- allocation failure */


/* A tied step: renorm, an embedding of W, a sparse bag of cat([W, S], 1)
 * with per_sample_weights and scale_grad_by_freq, a max bag of W; backward;
 * gradient queries. Returns the first error. */
static yk_status tied_step(yk_ctx *c)
{
    yk_status s = YK_ENOMEM;
    yk_model *mm = yk_model_new(c);
    yk_param *W = mm ? yk_model_add(mm, "W", YK_F32, 2, (int64_t[]){9, 4})
                     : NULL;
    yk_param *S = W ? yk_model_add(mm, "S", YK_F32, 2, (int64_t[]){9, 2})
                    : NULL;
    yk_param *P = S ? yk_model_add(mm, "P", YK_F32, 1, (int64_t[]){5}) : NULL;
    yk_tensor *eidx = yk_tensor_from(c, YK_I64, 2, (int64_t[]){2, 2},
                                     (int64_t[]){8, 1, 1, 0});
    yk_tensor *bidx = yk_tensor_from(c, YK_I64, 1, (int64_t[]){5},
                                     (int64_t[]){3, 1, 3, 0, 7});
    yk_tensor *offs = yk_tensor_from(c, YK_I64, 1, (int64_t[]){3},
                                     (int64_t[]){0, 2, 2});
    yk_tensor *s1 = yk_tensor_ones(c, YK_F32, 3, (int64_t[]){2, 2, 4});
    yk_tensor *s2 = yk_tensor_ones(c, YK_F32, 2, (int64_t[]){3, 6});
    yk_tensor *s3 = yk_tensor_ones(c, YK_F32, 2, (int64_t[]){3, 4});
    yk_graph *g = NULL;
    if (!P || !eidx || !bidx || !offs || !s1 || !s2 || !s3)
        goto out;
    yk_tensor_fill_normal(yk_param_value(W), 1, 0, 1);
    yk_tensor_fill_normal(yk_param_value(S), 2, 0, 1);
    yk_tensor_fill_normal(yk_param_value(P), 3, 0, 1);
    s = yk_embedding_renorm(yk_param_value(W), bidx, 1.0, 2.0);
    if (s != YK_OK || !(g = yk_graph_begin(c))) {
        s = s != YK_OK ? s : YK_ENOMEM;
        goto out;
    }
    yk_node *w = yk_param_node(g, W);
    yk_node *parts[2] = {w, yk_param_node(g, S)};
    yk_bag_opts o = yk_bag_defaults(), mx = yk_bag_defaults();
    o.mode = YK_BAG_SUM;
    o.sparse = o.scale_grad_by_freq = true;
    mx.mode = YK_BAG_MAX;
    yk_node *ys[3] = {
        yk_embedding(g, yk_const(g, eidx), w, 1, true, true),
        yk_embedding_bag(g, yk_const(g, bidx), yk_cat(g, 2, parts, 1),
                         yk_const(g, offs), yk_param_node(g, P), &o),
        yk_embedding_bag(g, yk_const(g, bidx), w, yk_const(g, offs), NULL,
                         &mx)};
    const yk_tensor *seeds[3] = {s1, s2, s3};
    s = ys[2] ? yk_backward_seeded(g, 3, ys, seeds) : yk_graph_status(g);
    if (s == YK_OK) {
        int64_t n;
        const int64_t *rows;
        const yk_tensor *vals;
        s = yk_param_grad_rows(S, &n, &rows, &vals);
    }
out:
    yk_graph_end(g);
    yk_tensor_free(s3);
    yk_tensor_free(s2);
    yk_tensor_free(s1);
    yk_tensor_free(offs);
    yk_tensor_free(bidx);
    yk_tensor_free(eidx);
    yk_model_free(mm);
    return s;
}

Test(embedding_bag, fails_cleanly_at_every_allocation)
{
    long total = 0;
    for (long k = 1;; k++) {
        counting_alloc a = {.fail_at = k};
        yk_ctx *c = yk_ctx_new_with_alloc(counting_hook, &a);
        if (!c) {
            cr_assert_eq(a.live, 0);
            continue;
        }
        yk_status s = tied_step(c);
        yk_ctx_free(c);
        cr_assert_eq(a.live, 0, "allocation %ld failed: %lld bytes leaked", k,
                     a.live);
        if (a.calls < k) { /* no allocation failed: the step is complete */
            cr_assert_eq(s, YK_OK, "%ld: status %s", k, yk_status_name(s));
            total = a.calls;
            break;
        }
        cr_assert(s == YK_ENOMEM, "allocation %ld failed but the step "
                  "returned %s", k, yk_status_name(s));
    }
    cr_assert_gt(total, 10);
}
