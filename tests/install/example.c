/*
 * example.c -- a program outside the yoke tree, built against an installed
 * yoke (pkg-config) or yoke as a meson subproject (tests/install/run.sh).
 * It uses only the public header: one table tied between an Embedding and
 * an EmbeddingBag, one backward with the tie report on.
 */
#include <stdio.h>
#include <string.h>

#include <yoke.h>

#define CHECK(ok)                                                            \
    do {                                                                     \
        if (!(ok)) {                                                         \
            fprintf(stderr, "example: line %d: %s\n", __LINE__,              \
                    ctx ? yk_last_error(ctx) : "no context");                \
            return 1;                                                        \
        }                                                                    \
    } while (0)

int main(void)
{
    yk_ctx *ctx = NULL;
    /* the header and the library must be the same version */
    CHECK(strcmp(yk_version(), YOKE_VERSION_STRING) == 0);
    ctx = yk_ctx_new();
    CHECK(ctx);
    yk_model *m = yk_model_new(ctx);
    CHECK(m);
    yk_embedding_layer emb;
    yk_bag_layer bag;
    CHECK(yk_embedding_layer_init(&emb, m, "table", YK_F32, 10, 4, 7) == YK_OK);
    CHECK(yk_bag_layer_tied(&bag, emb.weight, NULL, YK_BAG_MEAN) == YK_OK);
    CHECK(yk_param_same(emb.weight, bag.weight));

    int64_t seq_v[3] = {1, 2, 3}, bag_v[4] = {3, 4, 5, 6}, off_v[2] = {0, 2};
    yk_tensor *seq = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){3}, seq_v);
    yk_tensor *bags = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){4}, bag_v);
    yk_tensor *offs = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){2}, off_v);
    CHECK(seq && bags && offs);

    yk_graph *g = yk_graph_begin(ctx);
    CHECK(g && yk_graph_set_tie_report(g, true) == YK_OK);
    yk_node *e = yk_embedding_layer_forward(g, &emb, yk_const(g, seq));
    yk_node *b = yk_bag_layer_forward(g, &bag, yk_const(g, bags),
                                      yk_const(g, offs), NULL);
    yk_node *loss = yk_add(g, yk_sum(g, e, 0, NULL, false),
                           yk_sum(g, b, 0, NULL, false));
    CHECK(yk_backward(g, loss) == YK_OK);
    CHECK(yk_tie_count(g) == 2); /* the embedding and the bag */
    CHECK(yk_tie_report_print(g, stdout) == YK_OK);
    yk_graph_end(g);
    CHECK(yk_param_grad_kind(emb.weight) == YK_GRAD_DENSE);

    printf("yoke %s: ok\n", yk_version());
    yk_tensor_free(seq);
    yk_tensor_free(bags);
    yk_tensor_free(offs);
    yk_model_free(m);
    yk_ctx_free(ctx);
    return 0;
}
