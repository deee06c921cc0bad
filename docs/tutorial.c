/*
 * tutorial.c -- the program of docs/tutorial.md, compiled and run by the
 * test suite (meson test tutorial), so the tutorial cannot rot.
 *
 * A tied model: one table read by an Embedding (the current word), an
 * EmbeddingBag (the bag of context words) and the output projection (the
 * logits over the vocabulary). Trained a few steps with Adam, saved,
 * loaded into a fresh model, and gradient-checked.
 *
 *   tutorial [CHECKPOINT_PATH]     (default: tutorial.safetensors)
 *
 * Exits 0 when every step worked and the loss went down.
 */
#include <stdio.h>
#include <string.h>

#include "yoke.h"

/* Every yoke call reports errors the same way: a status (or NULL) and a
 * message on the context naming the function, the argument and the value. */
#define CHECK(ok)                                                            \
    do {                                                                     \
        if (!(ok)) {                                                         \
            fprintf(stderr, "tutorial: line %d: %s\n", __LINE__,             \
                    yk_last_error(ctx));                                     \
            return 1;                                                        \
        }                                                                    \
    } while (0)

enum { V = 20, D = 8, B = 6, CONTEXT = 3, STEPS = 30 };

/* One batch of examples: the current word, CONTEXT words around it (one
 * bag a row of a 2-D input) and the word to predict. */
typedef struct batch {
    yk_embedding_layer *emb;
    yk_bag_layer *bag;
    yk_tensor *current;  /* i64 [B]          */
    yk_tensor *context;  /* i64 [B, CONTEXT] */
    yk_tensor *target;   /* i64 [B]          */
} batch;

/* The loss of one batch: h = emb(current) + bag(context), logits = h W^T
 * with W the same table, cross-entropy against target. It is also the
 * build function yk_gradcheck calls (yk_build_fn). */
static yk_node *build_loss(yk_graph *g, void *ud)
{
    batch *b = ud;
    yk_node *word = yk_embedding_layer_forward(g, b->emb,
                                               yk_const(g, b->current));
    yk_node *around = yk_bag_layer_forward(g, b->bag,
                                           yk_const(g, b->context), NULL, NULL);
    yk_node *h = yk_add(g, word, around);          /* [B, D] */
    yk_node *W = yk_param_node(g, b->emb->weight); /* the same node again */
    yk_node *logits = yk_linear(g, h, W, NULL);    /* [B, V] */
    return yk_cross_entropy(g, logits, yk_const(g, b->target),
                            YK_REDUCE_MEAN);
}

/* A small deterministic task: predict (current + 3) mod V from the current
 * word and the CONTEXT words before it. */
static void make_data(batch *b, yk_ctx *ctx)
{
    int64_t cur[B], ctxw[B * CONTEXT], tgt[B];
    for (int i = 0; i < B; i++) {
        cur[i] = (5 * i + 2) % V;
        for (int k = 0; k < CONTEXT; k++)
            ctxw[i * CONTEXT + k] = (cur[i] + V - 1 - k) % V;
        tgt[i] = (cur[i] + 3) % V;
    }
    b->current = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){B}, cur);
    b->context = yk_tensor_from(ctx, YK_I64, 2, (int64_t[]){B, CONTEXT}, ctxw);
    b->target = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){B}, tgt);
}

/* One training step; returns the loss, or a negative number on error. */
static double train_step(yk_model *m, yk_optim *opt, batch *b, bool report)
{
    yk_ctx *ctx = yk_model_ctx(m);
    yk_model_zero_grad(m);
    yk_graph *g = yk_graph_begin(ctx);
    if (report)
        yk_graph_set_tie_report(g, true);      /* see the uses of the tie */
    yk_node *loss = build_loss(g, b);
    if (yk_backward(g, loss) != YK_OK) {       /* errors are sticky: one */
        yk_graph_end(g);                       /* check covers the forward */
        return -1;
    }
    double value = yk_tensor_get(yk_value(loss), 0);
    if (report)
        yk_tie_report_print(g, stdout);
    yk_graph_end(g);                           /* frees the whole step */
    if (yk_optim_step(opt) != YK_OK)           /* one Adam state for W */
        return -1;
    return value;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "tutorial.safetensors";

    yk_ctx *ctx = yk_ctx_new();
    yk_model *m = yk_model_new(ctx);
    yk_embedding_layer emb;
    yk_bag_layer bag;
    /* f64 so that the same model can be gradient-checked below; use
     * YK_F32 for speed. */
    CHECK(yk_embedding_layer_init(&emb, m, "table", YK_F64, V, D, 42) == YK_OK);
    CHECK(yk_bag_layer_tied(&bag, emb.weight, NULL, YK_BAG_MEAN) == YK_OK);
    CHECK(yk_param_same(emb.weight, bag.weight)); /* one parameter */

    batch b = {.emb = &emb, .bag = &bag};
    make_data(&b, ctx);
    CHECK(b.current && b.context && b.target);

    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_ADAM);
    o.lr = 0.05;
    yk_optim *opt = yk_optim_new(ctx, YK_OPTIM_ADAM, &o);
    CHECK(opt && yk_optim_add_model(opt, m) == YK_OK);

    double first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        last = train_step(m, opt, &b, step == 0);
        CHECK(last >= 0);
        if (step == 0)
            first = last;
        if (step % 10 == 0 || step == STEPS - 1)
            printf("step %2d  loss %.6f\n", step, last);
    }
    CHECK(last < first); /* it learned something */
    yk_optim_free(opt);  /* before the model it points into */

    yk_save_opts so = {.step = STEPS, .config = "{\"V\": 20, \"D\": 8}"};
    CHECK(yk_model_save(m, path, &so) == YK_OK);

    /* A fresh model with a parameter of the same name, dtype and shape. */
    yk_model *m2 = yk_model_new(ctx);
    CHECK(m2 && yk_model_add(m2, "table", YK_F64, 2, (int64_t[]){V, D}));
    yk_load_info info;
    CHECK(yk_model_load(m2, path, NULL, &info) == YK_OK);
    printf("loaded %d parameter(s) saved at step %lld\n", info.n_loaded,
           (long long)info.step);
    yk_load_info_clear(&info);
    const yk_tensor *w1 = yk_param_value(emb.weight);
    const yk_tensor *w2 = yk_param_value(yk_model_find(m2, "table"));
    CHECK(memcmp(yk_tensor_data(w1), yk_tensor_data(w2),
                 yk_tensor_nbytes(w1)) == 0);
    yk_model_free(m2);

    yk_gradcheck_report r;
    CHECK(yk_gradcheck(m, build_loss, &b, NULL, &r) == YK_OK);
    printf("gradcheck: %s (%lld elements)\n", r.passed ? "passed" : r.what,
           (long long)r.checked);
    CHECK(r.passed);

    yk_tensor_free(b.current);
    yk_tensor_free(b.context);
    yk_tensor_free(b.target);
    yk_model_free(m);
    yk_ctx_free(ctx);
    return 0;
}
