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
 * A session is the place where a multi-step optimizer loop will go (feeds
 * -> evaluate -> backward -> optimizer step); cases with an "optimizer"
 * block are refused for now (cf_unsupported).
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

/* Why the case cannot be evaluated by this version of the tool, or NULL. */
const char *cf_unsupported(const cf_case *c);

/* Node or leaf index by name, -1 if none. */
int cf_node_index(const cf_case *c, const char *name);
int cf_leaf_index(const cf_case *c, const char *name);

/*
 * The optimizer loop of case-format.md fits here: per step k, point
 * inputs[i] of fed leaves at feeds[k]'s tensors, cf_eval (which leaves the
 * gradients in the model), apply each group's optimizer to its parameters,
 * keep the first step's result, and print the parameters after the last.
 */
typedef struct cf_session {
    const cf_case *c;
    yk_ctx *ctx;
    yk_model *model;
    yk_param **params;          /* [n_leaves]: the leaf's parameter, or NULL */
    const yk_tensor **inputs;   /* [n_leaves]: a constant leaf's value */
} cf_session;

/* false (message in err) on OOM. */
bool cf_session_init(cf_session *s, const cf_case *c, char *err,
                     size_t errlen);
void cf_session_free(cf_session *s);

typedef struct cf_result {
    yk_status status;      /* YK_OK, or the error of invalid input */
    char message[CF_MSG];  /* the error's message */
    yk_tensor **values;    /* [n_nodes], owned */
    yk_tensor **grads;     /* [n_leaves], NULL for leaves without grad */
} cf_result;

/*
 * Evaluates every node, backpropagates seed_scale times the case's seeds
 * and reads every requires_grad leaf's gradient (zeros where none flows);
 * the gradients stay in the model until the next cf_eval. r->status is
 * YK_OK or the evaluation's error; the result is the caller's to free with
 * cf_result_free.
 */
void cf_eval(cf_session *s, double seed_scale, cf_result *r);
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
    int64_t values_compared, grads_compared; /* elements vs expected */
    int64_t fd_checked; /* elements checked by finite differences */
    int64_t fd_kinks;   /* not checked: at a non-differentiable point */
    int64_t fd_exempt;  /* not checked: embedding padding rows */
    cf_worst worst;
} cf_report;

/*
 * Checks a case: evaluates it, compares with its expected values, grads or
 * error category (with its tolerance), checks every f64 requires_grad
 * leaf's gradient against central differences of L, and checks that two
 * backward passes agree and that a zero seed gives zero gradients.
 */
void cf_check(const cf_case *c, const cf_check_opts *o, cf_report *r);

#endif
