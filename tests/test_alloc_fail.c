/* Allocation failure injected at every allocation of a small training step:
 * each failure is a clean error, nothing leaks (the allocator's live byte
 * count returns to zero, and ASan's leak checker agrees), nothing crashes.
 * The sizes passed to the hook are checked too: a free must name the size
 * that was allocated. */
#include "check.h"

#include <stdlib.h>



/* One step: W read by three ops (one through a lazy column cat), seeded
 * backward twice over two graphs, gradient queries, zero_grad. Returns the
 * first error status, YK_OK when everything ran. */
static yk_status training_step(yk_ctx *ctx)
{
    yk_status s = YK_OK;
    yk_model *m = yk_model_new(ctx);
    yk_param *w = m ? yk_model_add(m, "W", YK_F64, 2, (int64_t[]){4, 3}) : NULL;
    yk_param *x = w ? yk_model_add(m, "X", YK_F64, 2, (int64_t[]){4, 2}) : NULL;
    yk_tensor *seed = yk_tensor_ones(ctx, YK_F64, 2, (int64_t[]){8, 5});
    yk_tensor *dense = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){4, 3});
    if (!x || !seed || !dense) {
        s = YK_ENOMEM;
        goto out;
    }
    yk_tensor_fill_normal(yk_param_value(w), 1, 0, 1);
    for (int step = 0; step < 2 && s == YK_OK; step++) {
        yk_graph *g = yk_graph_begin(ctx);
        if (!g) {
            s = YK_ENOMEM;
            break;
        }
        yk_node *wn = yk_param_node(g, w);
        yk_node *cols[2] = {yk_tanh(g, wn), yk_param_node(g, x)};
        yk_node *wide = yk_cat(g, 2, cols, 1);           /* [4, 5], lazy */
        yk_node *rows[2] = {yk_exp(g, wide), yk_sigmoid(g, wide)};
        yk_node *y = yk_cat(g, 2, rows, 0);              /* [8, 5] */
        const yk_tensor *sp = seed;
        s = y ? yk_backward_seeded(g, 1, &y, &sp) : yk_graph_status(g);
        cr_assert(s != YK_OK || yk_graph_status(g) == YK_OK);
        yk_graph_end(g);
    }
    if (s == YK_OK)
        s = yk_param_grad_to_dense(w, dense);
    yk_model_zero_grad(m);
out:
    yk_tensor_free(seed);
    yk_tensor_free(dense);
    yk_model_free(m);
    return s;
}

Test(alloc_fail, every_allocation_of_a_training_step)
{
    long n;
    for (n = 1; n < 10000; n++) {
        counting_alloc a = {.fail_at = n};
        yk_ctx *ctx = yk_ctx_new_with_alloc(counting_hook, &a);
        if (!ctx) {
            cr_assert_eq(a.live, 0);
            continue;
        }
        yk_status s = training_step(ctx);
        if (a.failed) {
            cr_assert_eq(s, YK_ENOMEM, "allocation %ld: status %s (%s)", n,
                         yk_status_name(s), yk_last_error(ctx));
            cr_assert(strstr(yk_last_error(ctx), "out of memory") != NULL,
                      "allocation %ld: message \"%s\"", n, yk_last_error(ctx));
        }
        yk_ctx_free(ctx);
        cr_assert_eq(a.live, 0, "allocation %ld failed: %lld bytes leaked", n,
                     a.live);
        if (!a.failed) {
            cr_assert_eq(s, YK_OK, "%s", yk_status_name(s));
            break; /* the step needs fewer than n allocations: all covered */
        }
    }
    cr_assert(n > 10 && n < 10000, "n = %ld", n);
}
