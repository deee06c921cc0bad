/* arith.c -- STUB: not implemented yet. */
#include "../lib/engine.h"

yk_node *yk_add(yk_graph *g, yk_node *a, yk_node *b)
{
    (void)g;
    (void)a;
    (void)b;
    return g ? yk__fail(g, YK_ENOTIMPL, "add: not implemented yet") : NULL;
}

static yk_status backward_add(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_add = {.name = "add", .backward = backward_add};

yk_node *yk_sub(yk_graph *g, yk_node *a, yk_node *b)
{
    (void)g;
    (void)a;
    (void)b;
    return g ? yk__fail(g, YK_ENOTIMPL, "sub: not implemented yet") : NULL;
}

static yk_status backward_sub(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_sub = {.name = "sub", .backward = backward_sub};

yk_node *yk_mul(yk_graph *g, yk_node *a, yk_node *b)
{
    (void)g;
    (void)a;
    (void)b;
    return g ? yk__fail(g, YK_ENOTIMPL, "mul: not implemented yet") : NULL;
}

static yk_status backward_mul(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_mul = {.name = "mul", .backward = backward_mul};

yk_node *yk_div(yk_graph *g, yk_node *a, yk_node *b)
{
    (void)g;
    (void)a;
    (void)b;
    return g ? yk__fail(g, YK_ENOTIMPL, "div: not implemented yet") : NULL;
}

static yk_status backward_div(yk_graph *g, yk_node *y, const void *gy)
{
    (void)g; (void)y; (void)gy;
    return YK_ENOTIMPL;
}

const yk_op_def yk_op_div = {.name = "div", .backward = backward_div};
