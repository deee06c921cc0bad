/* embedding.c -- STUB: not implemented yet. */
#include "../lib/engine.h"

yk_bag_opts yk_bag_defaults(void)
{
    yk_bag_opts o = {YK_BAG_MEAN, false, YK_NO_PADDING, false, false};
    return o;
}

yk_node *yk_embedding(yk_graph *g, yk_node *input, yk_node *weight, int64_t padding_idx, bool scale_grad_by_freq, bool sparse)
{
    (void)g;
    (void)input;
    (void)weight;
    (void)padding_idx;
    (void)scale_grad_by_freq;
    (void)sparse;
    return g ? yk__fail(g, YK_ENOTIMPL, "embedding: not implemented yet") : NULL;
}

static yk_status backward_embedding(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_embedding = {.name = "embedding", .backward = backward_embedding};

yk_node *yk_embedding_bag(yk_graph *g, yk_node *input, yk_node *weight, yk_node *offsets, yk_node *per_sample_weights, const yk_bag_opts *opts)
{
    (void)g;
    (void)input;
    (void)weight;
    (void)offsets;
    (void)per_sample_weights;
    (void)opts;
    return g ? yk__fail(g, YK_ENOTIMPL, "embedding_bag: not implemented yet") : NULL;
}

static yk_status backward_embedding_bag(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_embedding_bag = {.name = "embedding_bag", .backward = backward_embedding_bag};
yk_status yk_embedding_renorm(yk_tensor *weight, const yk_tensor *input,
                              double max_norm, double norm_type)
{
    (void)input; (void)max_norm; (void)norm_type;
    return weight ? yk__error(weight->ctx, YK_ENOTIMPL, "yk_embedding_renorm: not implemented yet") : YK_EINVAL;
}
