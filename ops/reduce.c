/* reduce.c -- STUB: not implemented yet. */
#include "../lib/engine.h"

yk_node *yk_sum(yk_graph *g, yk_node *x, int ndims, const int *dims, bool keepdim)
{
    (void)g;
    (void)x;
    (void)ndims;
    (void)dims;
    (void)keepdim;
    return g ? yk__fail(g, YK_ENOTIMPL, "sum: not implemented yet") : NULL;
}

static yk_status backward_sum(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_sum = {.name = "sum", .backward = backward_sum};

yk_node *yk_mean(yk_graph *g, yk_node *x, int ndims, const int *dims, bool keepdim)
{
    (void)g;
    (void)x;
    (void)ndims;
    (void)dims;
    (void)keepdim;
    return g ? yk__fail(g, YK_ENOTIMPL, "mean: not implemented yet") : NULL;
}

static yk_status backward_mean(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_mean = {.name = "mean", .backward = backward_mean};
