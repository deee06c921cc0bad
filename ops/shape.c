/* shape.c -- STUB: not implemented yet. */
#include "../lib/engine.h"

yk_node *yk_reshape(yk_graph *g, yk_node *x, int ndim, const int64_t *shape)
{
    (void)g;
    (void)x;
    (void)ndim;
    (void)shape;
    return g ? yk__fail(g, YK_ENOTIMPL, "reshape: not implemented yet") : NULL;
}

static yk_status backward_reshape(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_reshape = {.name = "reshape", .backward = backward_reshape};

yk_node *yk_narrow(yk_graph *g, yk_node *x, int dim, int64_t start, int64_t length)
{
    (void)g;
    (void)x;
    (void)dim;
    (void)start;
    (void)length;
    return g ? yk__fail(g, YK_ENOTIMPL, "narrow: not implemented yet") : NULL;
}

static yk_status backward_narrow(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_narrow = {.name = "narrow", .backward = backward_narrow};
