/* linalg.c -- STUB: not implemented yet. */
#include "../lib/engine.h"

yk_node *yk_matmul(yk_graph *g, yk_node *a, yk_node *b)
{
    (void)g;
    (void)a;
    (void)b;
    return g ? yk__fail(g, YK_ENOTIMPL, "matmul: not implemented yet") : NULL;
}

static yk_status backward_matmul(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_matmul = {.name = "matmul", .backward = backward_matmul};

yk_node *yk_linear(yk_graph *g, yk_node *x, yk_node *w, yk_node *b)
{
    (void)g;
    (void)x;
    (void)w;
    (void)b;
    return g ? yk__fail(g, YK_ENOTIMPL, "linear: not implemented yet") : NULL;
}

static yk_status backward_linear(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_linear = {.name = "linear", .backward = backward_linear};
