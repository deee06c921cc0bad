/* tie_demo -- placeholder main demo: one parameter read by two ops. */
#include <stdio.h>
#include "yoke.h"

int main(void)
{
    yk_ctx *ctx = yk_ctx_new();
    yk_model *m = yk_model_new(ctx);
    int64_t shape[2] = {2, 3};
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, shape);
    yk_tensor_fill_normal(yk_param_value(W), 1, 0, 1);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *w = yk_param_node(g, W);
    yk_node *parts[2] = {yk_tanh(g, w), yk_exp(g, yk_param_node(g, W))};
    yk_node *y = yk_cat(g, 2, parts, 0);
    yk_tensor *seed = yk_tensor_ones(ctx, YK_F64, 2, (int64_t[]){4, 3});
    const yk_tensor *sp = seed;
    if (!y || yk_backward_seeded(g, 1, &y, &sp) != YK_OK) {
        fprintf(stderr, "tie_demo: %s\n", yk_last_error(ctx));
        return 1;
    }
    printf("W:\n");
    yk_tensor_print(stdout, yk_param_value(W));
    printf("gradient of W (tanh use + exp use):\n");
    yk_tensor_print(stdout, yk_param_grad(W));
    yk_graph_end(g);
    yk_tensor_free(seed);
    yk_model_free(m);
    yk_ctx_free(ctx);
    return 0;
}
