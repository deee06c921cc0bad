/* softmax.c -- STUB: not implemented yet. */
#include "../lib/engine.h"

yk_node *yk_softmax(yk_graph *g, yk_node *x, int dim)
{
    (void)g;
    (void)x;
    (void)dim;
    return g ? yk__fail(g, YK_ENOTIMPL, "softmax: not implemented yet") : NULL;
}

static yk_status backward_softmax(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_softmax = {.name = "softmax", .backward = backward_softmax};

yk_node *yk_log_softmax(yk_graph *g, yk_node *x, int dim)
{
    (void)g;
    (void)x;
    (void)dim;
    return g ? yk__fail(g, YK_ENOTIMPL, "log_softmax: not implemented yet") : NULL;
}

static yk_status backward_log_softmax(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_log_softmax = {.name = "log_softmax", .backward = backward_log_softmax};
