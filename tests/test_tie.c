/* Weight tying: one parameter read by an embedding and an embedding_bag,
 * directly and through a lazy column cat [W | S]. The expected gradients
 * are the sums of each use's gradient alone, hand-worked sums of seed rows,
 * and finite differences; the PyTorch-written emb_tie_* cases in
 * tests/cases check the same against PyTorch (test_cases.c). */
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

TestSuite(tie, .init = setup, .fini = teardown);

/* One parameter read by an embedding and an embedding_bag: its gradient is
 * the sum of each use's gradient alone, for every sparse combination; the
 * kind is row-sparse only when both uses ask for it. */
Test(tie, embedding_and_bag_gradient_is_sum_of_uses)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){8, 3});
    yk_tensor_fill_normal(yk_param_value(W), 31, 0, 1);
    yk_tensor *eidx = TI(ctx, SHAPE(2, 2), IDX(7, 1, 1, 4));
    yk_tensor *bidx = TI(ctx, SHAPE(5), IDX(1, 1, 7, 0, 3));
    yk_tensor *offs = TI(ctx, SHAPE(2), IDX(0, 3));
    yk_tensor *es = yk_tensor_zeros(ctx, YK_F64, 3, (int64_t[]){2, 2, 3});
    yk_tensor *bs = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){2, 3});
    yk_tensor_fill_normal(es, 32, 0, 1);
    yk_tensor_fill_normal(bs, 33, 0, 1);
    for (int mode = 0; mode < 3; mode++)
        for (int combo = 0; combo < 4; combo++) {
            bool esparse = combo & 1, bsparse = (combo & 2) && mode != YK_BAG_MAX;
            yk_bag_opts o = opts_mode((yk_bag_mode)mode);
            o.sparse = bsparse;
            yk_tensor *alone[2];
            for (int use = 0; use < 3; use++) {
                yk_model_zero_grad(m);
                yk_graph *g = yk_graph_begin(ctx);
                yk_node *w = yk_param_node(g, W);
                yk_node *ys[2] = {
                    yk_embedding(g, yk_const(g, eidx), w, YK_NO_PADDING, false,
                                 esparse),
                    yk_embedding_bag(g, yk_const(g, bidx), w,
                                     yk_const(g, offs), NULL, &o)};
                const yk_tensor *seeds[2] = {es, bs};
                /* use 0: embedding alone, 1: bag alone, 2: both */
                int n = use == 2 ? 2 : 1;
                yk_node *const *nodes = use == 1 ? ys + 1 : ys;
                const yk_tensor *const *sd = use == 1 ? seeds + 1 : seeds;
                cr_assert_eq(yk_backward_seeded(g, n, nodes, sd), YK_OK, "%s",
                             yk_last_error(ctx));
                yk_graph_end(g);
                if (use < 2) {
                    alone[use] = dense_grad(ctx, W);
                    continue;
                }
                cr_assert_eq(yk_param_grad_kind(W), esparse && bsparse
                                 ? YK_GRAD_ROWS : YK_GRAD_DENSE);
                yk_tensor *both = dense_grad(ctx, W);
                double want[24];
                for (int k = 0; k < 24; k++)
                    want[k] = yk_tensor_get(alone[0], k) +
                              yk_tensor_get(alone[1], k);
                expect_close(both, want, 24, 1e-15, 1e-15);
                yk_tensor_free(both);
            }
            yk_tensor_free(alone[0]);
            yk_tensor_free(alone[1]);
        }
    yk_tensor_free(bs);
    yk_tensor_free(es);
    yk_tensor_free(offs);
    yk_tensor_free(bidx);
    yk_tensor_free(eidx);
}

/* The seed's extended EmbeddingBag: cat([W, S], 1) feeds a bag while W also
 * feeds an embedding. With V = 200000 the [V, D + D2] matrix would take
 * 38 MB; the graph must stay far below that, so it was never made. */
Test(tie, lazy_cat_never_materializes_the_concatenation)
{
    const int64_t V = 200000, D = 16, D2 = 8;
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){V, D});
    yk_param *S = yk_model_add(m, "S", YK_F64, 2, (int64_t[]){V, D2});
    cr_assert(W && S);
    yk_tensor_fill_normal(yk_param_value(W), 41, 0, 1);
    yk_tensor_fill_normal(yk_param_value(S), 42, 0, 1);
    const double *w = yk_tensor_data(yk_param_value(W));
    const double *s = yk_tensor_data(yk_param_value(S));
    yk_tensor *eidx = TI(ctx, SHAPE(2), IDX(7, V - 1));
    yk_tensor *bidx = TI(ctx, SHAPE(3), IDX(7, 5, V - 1));
    yk_tensor *offs = TI(ctx, SHAPE(2), IDX(0, 2));
    yk_tensor *es = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){2, D});
    yk_tensor *bs = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){2, D + D2});
    yk_tensor_fill_normal(es, 43, 0, 1);
    yk_tensor_fill_normal(bs, 44, 0, 1);
    const double *e = yk_tensor_data(es), *b = yk_tensor_data(bs);
    for (int sparse = 0; sparse < 2; sparse++) {
        yk_model_zero_grad(m);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *wn = yk_param_node(g, W);
        yk_node *parts[2] = {wn, yk_param_node(g, S)};
        yk_node *cat = yk_cat(g, 2, parts, 1);
        yk_bag_opts o = opts_mode(YK_BAG_MEAN);
        o.sparse = sparse;
        yk_node *ys[2] = {
            yk_embedding(g, yk_const(g, eidx), wn, YK_NO_PADDING, false,
                         sparse),
            yk_embedding_bag(g, yk_const(g, bidx), cat, yk_const(g, offs),
                             NULL, &o)};
        cr_assert(ys[0] && ys[1], "%s", yk_last_error(ctx));
        /* bag 0 = mean of cat rows 7 and 5: (W[7] + W[5]) / 2 | (S[7] +
         * S[5]) / 2; bag 1 = W[V-1] | S[V-1] */
        const yk_tensor *bv = yk_value(ys[1]);
        for (int64_t c = 0; c < D + D2; c++) {
            double r7 = c < D ? w[7 * D + c] : s[7 * D2 + c - D];
            double r5 = c < D ? w[5 * D + c] : s[5 * D2 + c - D];
            double rl = c < D ? w[(V - 1) * D + c] : s[(V - 1) * D2 + c - D];
            cr_assert_float_eq(yk_tensor_get(bv, c), (r7 + r5) / 2, 1e-15);
            cr_assert_float_eq(yk_tensor_get(bv, D + D2 + c), rl, 1e-15);
        }
        const yk_tensor *seeds[2] = {es, bs};
        cr_assert_eq(yk_backward_seeded(g, 2, ys, seeds), YK_OK, "%s",
                     yk_last_error(ctx));
        size_t full = (size_t)V * (D + D2) * sizeof(double);
        cr_log_info("graph: %zu bytes; [V, D + D2]: %zu", yk_graph_bytes(g), full);
        cr_assert_lt(yk_graph_bytes(g), full / 8, "graph holds %zu bytes; the "
                     "concatenation alone is %zu", yk_graph_bytes(g), full);
        yk_graph_end(g);
        cr_assert_eq(yk_param_grad_kind(W), sparse ? YK_GRAD_ROWS
                                                   : YK_GRAD_DENSE);
        cr_assert_eq(yk_param_grad_kind(S), sparse ? YK_GRAD_ROWS
                                                   : YK_GRAD_DENSE);
        /* W: row 7 gets the embedding's seed row 0 and half of bag 0's
         * first D columns; row 5 half of bag 0's; row V-1 the embedding's
         * seed row 1 and bag 1's. S: the last D2 columns the same way. */
        int64_t nr;
        const int64_t *rows;
        const yk_tensor *vals;
        if (sparse) {
            cr_assert_eq(yk_param_grad_rows(W, &nr, &rows, &vals), YK_OK);
            cr_assert_eq(nr, 3);
            cr_assert(rows[0] == 5 && rows[1] == 7 && rows[2] == V - 1);
        }
        yk_tensor *gw = dense_grad(ctx, W), *gs = dense_grad(ctx, S);
        const double *dw = yk_tensor_data(gw), *ds = yk_tensor_data(gs);
        for (int64_t c = 0; c < D; c++) {
            cr_assert_float_eq(dw[7 * D + c], e[c] + b[c] / 2, 1e-15);
            cr_assert_float_eq(dw[5 * D + c], b[c] / 2, 1e-15);
            cr_assert_float_eq(dw[(V - 1) * D + c], e[D + c] + b[D + D2 + c],
                               1e-15);
            cr_assert_eq(dw[6 * D + c], 0);
        }
        for (int64_t c = 0; c < D2; c++) {
            cr_assert_float_eq(ds[7 * D2 + c], b[D + c] / 2, 1e-15);
            cr_assert_float_eq(ds[5 * D2 + c], b[D + c] / 2, 1e-15);
            cr_assert_float_eq(ds[(V - 1) * D2 + c], b[2 * D + D2 + c], 1e-15);
            cr_assert_eq(ds[6 * D2 + c], 0);
        }
        yk_tensor_free(gw);
        yk_tensor_free(gs);
    }
    yk_tensor_free(bs);
    yk_tensor_free(es);
    yk_tensor_free(offs);
    yk_tensor_free(bidx);
    yk_tensor_free(eidx);
}

typedef struct cat_check {
    yk_param *w, *s;
    yk_tensor *eidx, *bidx, *offs;
    yk_bag_opts o;
} cat_check;

/* embedding(W) [2, D] and embedding_bag(cat([W, S], 1)) [2, D + D2], side
 * by side in one output (a column cat) so one gradcheck covers both uses. */
static yk_node *build_cat_tie(yk_graph *g, void *ud)
{
    cat_check *c = ud;
    yk_node *w = yk_param_node(g, c->w);
    yk_node *parts[2] = {w, yk_param_node(g, c->s)};
    yk_node *both[2] = {
        yk_embedding(g, yk_const(g, c->eidx), w, YK_NO_PADDING, false,
                     c->o.sparse),
        yk_embedding_bag(g, yk_const(g, c->bidx), yk_cat(g, 2, parts, 1),
                         yk_const(g, c->offs), NULL, &c->o)};
    return yk_cat(g, 2, both, 1);
}

Test(tie, lazy_cat_matches_finite_differences)
{
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){6, 2});
    yk_param *S = yk_model_add(m, "S", YK_F64, 2, (int64_t[]){6, 3});
    yk_tensor_fill_normal(yk_param_value(W), 51, 0, 1);
    yk_tensor_fill_normal(yk_param_value(S), 52, 0, 1);
    yk_tensor *eidx = TI(ctx, SHAPE(2), IDX(4, 4));
    yk_tensor *bidx = TI(ctx, SHAPE(6), IDX(4, 1, 0, 5, 2, 4));
    yk_tensor *offs = TI(ctx, SHAPE(2), IDX(0, 3));
    for (int mode = 0; mode < 3; mode++)
        for (int sparse = 0; sparse < 2; sparse++) {
            if (mode == YK_BAG_MAX && sparse)
                continue;
            cat_check c = {W, S, eidx, bidx, offs,
                           opts_mode((yk_bag_mode)mode)};
            c.o.sparse = sparse;
            c.o.padding_idx = 2;
            expect_gradcheck(m, build_cat_tie, &c);
        }
    yk_tensor_free(offs);
    yk_tensor_free(bidx);
    yk_tensor_free(eidx);
}
