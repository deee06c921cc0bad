/*
 * case.h -- yoke-case/1 files (../shared/case-format.md): load, evaluate,
 * print, compare with their expected numbers, and check their gradients
 * against finite differences. Used by tools/gradcheck and tests/test_cases.
 *
 * The evaluator is generic: ops, input names and attributes come from the
 * op registry (yk_op_find), so a new op is usable from case files as soon
 * as it is registered.
 *
 *   cf_case     a parsed, validated case (leaves, nodes, seeds, expected)
 *   cf_session  a case bound to a context and a model: leaves with
 *               requires_grad are the model's parameters (their gradients
 *               are read from the parameter store, as users see them),
 *               other leaves are constants
 *   cf_result   one evaluation: every node's value, every requires_grad
 *               leaf's gradient, or the clean error of invalid input
 *
 * A case with an "optimizer" block is run for its steps by cf_run (feeds
 * -> evaluate -> backward -> every group's optimizer -> zero_grad).
 *
 * What is a malformed file (cf_load refuses it: exit 1) and what is an
 * invalid_argument evaluation (the error object) in an optimizer block:
 *   malformed: a block, group, params or feeds of the wrong JSON type or
 *     with unknown keys; "steps" not an integer >= 1; "feeds" not a list of
 *     exactly "steps" objects; a group leaf that is not a tensor, does not
 *     require grad, or is already in a group (this one or another); a fed
 *     name that is not a tensor or requires grad; a fed tensor of another
 *     dtype than its leaf; a known parameter of the wrong JSON type
 *     ("nesterov" and "amsgrad" are booleans, "betas" a list of two numbers,
 *     the others numbers); expected.params naming a leaf in no group.
 *   invalid_argument: an optimizer name that is not one of sgd, adam,
 *     adamw, adagrad, sparse_adam (or yoke's rowwise_adagrad); a parameter
 *     the optimizer does not have (whatever its value: torch's flags such
 *     as "maximize" or "foreach" are unknown here too); a value torch.optim
 *     refuses (negative lr, eps, weight_decay, ...; a beta outside [0, 1);
 *     nesterov without momentum or with dampening; sgd without lr); a
 *     sparse_adam leaf whose gradient is not row-sparse (case-format.md).
 *   A step's own error (a feed that makes it invalid) fails the whole case
 *   with that error, its message prefixed with the step.
 */
#ifndef YOKE_TOOLS_CASE_H
#define YOKE_TOOLS_CASE_H

#include <cjson/cJSON.h>

#include "yoke.h"

#define CF_MSG 512

typedef struct cf_leaf {
    const char *name;
    yk_tensor *value; /* owned */
    bool requires_grad;
} cf_leaf;

/* Symbols: leaf i is symbol i, node j is symbol n_leaves + j; -1 is an
 * absent optional input. */
typedef struct cf_node {
    const char *name;
    const yk_op_def *op;
    int n_in;
    int *in;
    yk_attr_value attrs[YK_OP_MAX_ATTRS];
} cf_node;

/* A tensor attached to a node or a leaf (seeds, expected values, grads). */
typedef struct cf_named {
    int index; /* node index (seeds, values) or leaf index (grads) */
    yk_tensor *t;
} cf_named;

/* One optimizer group: its leaves, trained by one optimizer. */
typedef struct cf_group {
    const char *optimizer; /* as written; checked when the case runs */
    int n_leaves;
    int *leaves;           /* leaf indices: requires_grad, one group each */
    const cJSON *params;   /* the "params" object, or NULL */
} cf_group;

/* What one step feeds: leaves without requires_grad and their tensors. */
typedef struct cf_feed {
    int n;
    cf_named *t; /* index: a leaf */
} cf_feed;

typedef struct cf_case {
    cJSON *root;        /* owns every string below */
    yk_ctx *ctx;        /* owns the tensors; sessions evaluate in it */
    const char *origin; /* file name, for messages (owned) */
    const char *name;
    int n_leaves, n_nodes, n_seeds, n_values, n_grads;
    cf_leaf *leaves;
    cf_node *nodes;
    cf_named *seeds, *values, *grads;
    const char *expected_error; /* category, or NULL */
    double rtol, atol;          /* < 0: the dtype's default */
    const cJSON *optimizer;     /* NULL when absent */
    int steps;                  /* 1 without an optimizer */
    int n_groups;
    cf_group *groups;
    cf_feed *feeds;             /* [steps], or NULL without feeds */
    int n_params;
    cf_named *params;           /* expected.params: leaf, value after the
                                   last step */
} cf_case;

/* Finds an op by name; tests pass their own to check the checker. */
typedef const yk_op_def *(*cf_op_lookup)(const char *name);

/*
 * Reads and validates a case file. NULL on a file that cannot be read or is
 * not a valid case; err then holds a message naming the file and the place.
 */
cf_case *cf_load(const char *path, char *err, size_t errlen);
/* The same from a parsed tree, which the case takes over (freed on error
 * too). lookup may be NULL (the registry). */
cf_case *cf_from_json(cJSON *root, const char *origin, cf_op_lookup lookup,
                      char *err, size_t errlen);
void cf_free(cf_case *c);

/* Why the case cannot be evaluated by this version of the tool, or NULL
 * (every valid case can be now; kept for callers that ask). */
const char *cf_unsupported(const cf_case *c);

/* Node or leaf index by name, -1 if none. */
int cf_node_index(const cf_case *c, const char *name);
int cf_leaf_index(const cf_case *c, const char *name);

/*
 * A case bound to a model. cf_run is the optimizer loop of case-format.md:
 * per step k, point inputs[i] of fed leaves at feeds[k]'s tensors
 * (cf_session_feed), cf_eval (which leaves the gradients in the model),
 * apply each group's optimizer, zero the gradients; it keeps the first
 * step's result and the trained parameters after the last.
 */
typedef struct cf_session {
    const cf_case *c;
    yk_ctx *ctx;
    yk_model *model;
    yk_param **params;          /* [n_leaves]: the leaf's parameter, or NULL */
    const yk_tensor **inputs;   /* [n_leaves]: a constant leaf's value (the
                                   last feed's tensor once fed) */
    yk_optim **optims;          /* [n_groups], made by cf_run */
} cf_session;

/* false (message in err) on OOM. */
bool cf_session_init(cf_session *s, const cf_case *c, char *err,
                     size_t errlen);
void cf_session_free(cf_session *s);
/* Points the leaves that step k (0-based) feeds at their fed tensors;
 * leaves it leaves out keep their values. No-op without feeds. */
void cf_session_feed(cf_session *s, int k);

typedef struct cf_result {
    yk_status status;      /* YK_OK, or the error of invalid input */
    char message[CF_MSG];  /* the error's message */
    yk_tensor **values;    /* [n_nodes], owned */
    yk_tensor **grads;     /* [n_leaves], NULL for leaves without grad */
    yk_tensor **params;    /* [n_leaves] after cf_run's last step: trained
                              leaves' values, NULL for the others; NULL
                              without an optimizer */
} cf_result;

/*
 * Evaluates every node, backpropagates seed_scale times the case's seeds
 * and reads every requires_grad leaf's gradient (zeros where none flows);
 * the gradients stay in the model until the next cf_eval. r->status is
 * YK_OK or the evaluation's error; the result is the caller's to free with
 * cf_result_free.
 */
void cf_eval(cf_session *s, double seed_scale, cf_result *r);
/*
 * Runs the case: without an optimizer, cf_eval with the seeds as given;
 * with one, makes every group's optimizer (an invalid one fails the run
 * with invalid_argument), then steps as described above. r holds the first
 * step's values and gradients and the trained leaves after the last step,
 * or the first error (of the optimizers or of any step).
 */
void cf_run(cf_session *s, cf_result *r);
/* L = sum_k sum(value_k * seed_k) at the parameters' current values, with
 * grad off (for finite differences). */
yk_status cf_loss(cf_session *s, double *loss);
void cf_result_free(const cf_case *c, cf_result *r);

/* Prints the result object of case-format.md ("Evaluating a case"). */
void cf_print_result(FILE *f, const cf_case *c, const cf_result *r);
/* JSON helpers shared with the tool's reports. */
void cf_print_string(FILE *f, const char *s);
void cf_print_number(FILE *f, double v, yk_dtype dt);
void cf_print_tensor(FILE *f, const yk_tensor *t);

/* Index i of a tensor of that shape as "[1, 2]". */
const char *cf_format_index(const yk_tensor *t, int64_t i, char *buf,
                            size_t size);

/* ------------------------------------------------------------- checks */

typedef struct cf_check_opts {
    double eps, atol, rtol; /* finite differences; 0 means the default */
    bool strict;  /* a non-differentiable point is a failure (generated
                     inputs must avoid them); otherwise its elements are
                     counted (fd_kinks) and not checked */
} cf_check_opts;

#define CF_MAX_FAILURES 8

typedef struct cf_worst {
    bool have;
    char leaf[64];
    char where[64]; /* "[1, 2]" */
    int64_t index;  /* flat */
    double analytic, numeric;
    double error; /* |analytic - numeric| */
    double ratio; /* error / (atol + rtol |numeric|): above 1 fails */
} cf_worst;

typedef struct cf_report {
    bool passed;
    int n_failures;    /* all of them; the first CF_MAX_FAILURES kept */
    char failures[CF_MAX_FAILURES][CF_MSG + 128];
    char error[CF_MSG + 32]; /* "category: message" if evaluation failed */
    int64_t values_compared, grads_compared, params_compared; /* elements
                                                        vs expected */
    int64_t fd_checked; /* elements checked by finite differences */
    int64_t fd_kinks;   /* not checked: at a non-differentiable point */
    int64_t fd_exempt;  /* not checked: embedding padding rows */
    cf_worst worst;
} cf_report;

/*
 * Checks a case: runs it (cf_run), compares with its expected values,
 * grads, params or error category (with its tolerance), checks every f64
 * requires_grad leaf's first-step gradient against central differences of
 * L, and checks that two backward passes agree and that a zero seed gives
 * zero gradients.
 */
void cf_check(const cf_case *c, const cf_check_opts *o, cf_report *r);

#endif
