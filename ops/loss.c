/* loss.c -- STUB: not implemented yet. */
#include "../lib/engine.h"

yk_node *yk_cross_entropy(yk_graph *g, yk_node *logits, yk_node *target, yk_reduction red)
{
    (void)g;
    (void)logits;
    (void)target;
    (void)red;
    return g ? yk__fail(g, YK_ENOTIMPL, "cross_entropy: not implemented yet") : NULL;
}

static yk_status backward_cross_entropy(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_cross_entropy = {.name = "cross_entropy", .backward = backward_cross_entropy};

yk_node *yk_mse_loss(yk_graph *g, yk_node *input, yk_node *target, yk_reduction red)
{
    (void)g;
    (void)input;
    (void)target;
    (void)red;
    return g ? yk__fail(g, YK_ENOTIMPL, "mse_loss: not implemented yet") : NULL;
}

static yk_status backward_mse_loss(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_mse_loss = {.name = "mse_loss", .backward = backward_mse_loss};
