/*
 * yoke_check.h -- gradient checking of your own graphs (included by yoke.h).
 *
 * yk_gradcheck compares the analytic gradient of every f64 parameter of a
 * model that requires grad against central finite differences, as
 * torch.autograd.gradcheck does. Your build function makes the graph from
 * the model's parameters and returns its output node (any shape); the
 * checked scalar is L = sum(output * S) for a fixed random S.
 */
#ifndef YOKE_CHECK_H
#define YOKE_CHECK_H

#ifdef __cplusplus
extern "C" {
#endif

/** Builds the checked graph in g and returns its output (NULL on error). */
typedef yk_node *(*yk_build_fn)(yk_graph *g, void *ud);

typedef struct yk_gradcheck_opts {
    double eps;    /* finite-difference step; 0 means 1e-6 */
    double atol;   /* 0 means 1e-5                          */
    double rtol;   /* 0 means 1e-3                          */
    uint64_t seed; /* for S                                 */
} yk_gradcheck_opts;

typedef struct yk_gradcheck_report {
    bool passed;
    int64_t checked;     /* number of elements compared            */
    char param[64];      /* worst element: parameter name ...       */
    int64_t index;       /* ... flat index in it ...                */
    double analytic;     /* ... analytic and numeric derivatives ... */
    double numeric;
    double error;        /* ... |a - n| / (atol + rtol |n|), > 1 fails */
    char what[160];      /* what failed, "" when passed             */
} yk_gradcheck_report;

/**
 * Checks every f64 requires_grad parameter of m. Also checks that two
 * backward passes give identical gradients and that a zero seed gives zero
 * gradients. Returns YK_OK when the check ran (see report->passed), or the
 * error of a failed build. opts may be NULL. Leaves m's gradients cleared
 * and its values as they were.
 */
yk_status yk_gradcheck(yk_model *m, yk_build_fn build, void *ud,
                       const yk_gradcheck_opts *opts,
                       yk_gradcheck_report *report);

#ifdef __cplusplus
}
#endif

#endif /* YOKE_CHECK_H */
