/*
 * gradcheck -- evaluates yoke-case/1 files (../shared/case-format.md) and
 * checks gradients against finite differences.
 *
 *   gradcheck --eval CASE.json       prints the case's result object
 *   gradcheck CASE.json...           checks cases against their expected
 *                                    numbers and finite differences
 *   gradcheck --all-ops              gradient-checks every registered op
 *                                    over generated inputs
 *
 * The evaluation and the checks live in tools/case.c; this file is the
 * command line, the reports and the generators of --all-ops (a table keyed
 * by op name: an op without a generator fails --all-ops).
 */
#include "case.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
"usage: gradcheck [OPTIONS] CASE.json...\n"
"       gradcheck --eval CASE.json\n"
"       gradcheck --all-ops [--op NAME]... [OPTIONS]\n"
"\n"
"Evaluates yoke-case/1 files (see case-format.md) through yoke's public\n"
"API and checks gradients against central finite differences.\n"
"\n"
"  --eval CASE.json  Evaluate one case and print its result object: every\n"
"                    node's value and every requires_grad leaf's gradient\n"
"                    (of the first step), with an \"optimizer\" block also\n"
"                    \"params\": every trained leaf after the last step;\n"
"                    or {\"name\", \"error\", \"message\"} for invalid input\n"
"                    (an invalid optimizer, or a step that fails).\n"
"                    Exit 0 when it evaluated or failed cleanly, 1 when the\n"
"                    file cannot be read or is not a valid case.\n"
"  CASE.json...      Check each case: values, gradients, trained params or\n"
"                    the error category against its \"expected\" (with its\n"
"                    tolerance, else rtol 1e-5 atol 1e-6 for f32, rtol\n"
"                    1e-10 atol 1e-12 for f64); every f64 requires_grad\n"
"                    leaf's first-step gradient against central\n"
"                    differences of\n"
"                    L = sum_k sum(value_k * seed_k); two backward passes\n"
"                    must agree bit for bit and a zero seed must give zero\n"
"                    gradients. Elements at a non-differentiable point\n"
"                    (relu at 0, a tie in max: the one-sided differences\n"
"                    disagree at two step sizes) and the padding_idx row\n"
"                    of an embedding's weight (no gradient by definition)\n"
"                    are counted but not checked by differences.\n"
"  --all-ops         Generate random f64 inputs over a spread of shapes and\n"
"                    attribute combinations for every op in the registry\n"
"                    and check them as above (non-differentiable points\n"
"                    are failures here). An op without a generator, or a\n"
"                    generator that never sets one of the op's attributes\n"
"                    or inputs, is a failure.\n"
"  --op NAME         With --all-ops: only this op (repeatable).\n"
"  --eps X           Finite-difference step (default 1e-6).\n"
"  --atol X          Absolute tolerance of the difference check (1e-5).\n"
"  --rtol X          Relative tolerance of the difference check (1e-3).\n"
"  --seed N          Seed of the generated inputs (default 1); the same\n"
"                    seed gives the same cases.\n"
"  --dump DIR        With --all-ops: write every generated case to DIR as\n"
"                    a case file (to rerun one with gradcheck FILE).\n"
"  --json            Print a machine-readable report instead of the\n"
"                    summary.\n"
"  --threads N       Threads for yoke's kernels and BLIS in every case's\n"
"                    context (yk_set_threads; default 1).\n"
"  -v, --verbose     Also list generated cases that passed.\n"
"  --help            This text.  --version  The library's version.\n"
"\n"
"Optimizer blocks (case-format.md, \"Optimizer steps\"): sgd, adam, adamw,\n"
"adagrad, sparse_adam and yoke's rowwise_adagrad, with torch.optim's\n"
"argument names. A group leaf that is not a requires_grad tensor or is in\n"
"two groups, a feed of a requires_grad tensor or of another dtype, and a\n"
"known argument of the wrong JSON type make the file invalid; an unknown\n"
"optimizer or argument, a value torch.optim refuses and sparse_adam on a\n"
"leaf without a row-sparse gradient are the case's invalid_argument.\n"
"\n"
"Exit status: 0 when everything passed, 1 when a check failed or a file is\n"
"not a valid case, 2 on a usage error.\n";

/* ================================================================ reports */

typedef struct runner {
    cf_check_opts opts;
    int threads;               /* --threads, for every case's context */
    uint64_t seed;
    bool json, verbose;
    const char *dump_dir;
    int passed, failed;
    cJSON *report;             /* --json: the whole report */
    cJSON *json_cases, *json_ops;
} runner;

static void print_worst(FILE *f, const cf_report *r)
{
    const cf_worst *w = &r->worst;
    if (w->have)
        fprintf(f, "; worst %s%s: analytic %.10g, numeric %.10g, error %.2g "
                "(%.2g of tolerance)", w->leaf, w->where, w->analytic,
                w->numeric, w->error, w->ratio);
}

static void print_human(const char *file, const char *name, const cf_report *r)
{
    printf("%s  %s", r->passed ? "PASS" : "FAIL", name);
    if (file)
        printf(" (%s)", file);
    bool compared = r->values_compared || r->grads_compared ||
                    r->params_compared || r->fd_checked || r->fd_kinks ||
                    r->fd_exempt;
    if (r->passed && r->error[0])
        printf(": failed as expected with %s", r->error);
    else if (compared || r->passed)
        printf(": %lld values and %lld gradient elements vs expected, %lld "
               "vs finite differences", (long long)r->values_compared,
               (long long)r->grads_compared, (long long)r->fd_checked);
    if (!r->error[0] && r->params_compared)
        printf(", %lld parameter elements after the optimizer steps vs "
               "expected", (long long)r->params_compared);
    if (r->fd_kinks || r->fd_exempt)
        printf(" (not checked: %lld at non-differentiable points, %lld "
               "exempt by contract)", (long long)r->fd_kinks,
               (long long)r->fd_exempt);
    print_worst(stdout, r);
    printf("\n");
    for (int i = 0; i < r->n_failures && i < CF_MAX_FAILURES; i++)
        printf("      %s\n", r->failures[i]);
    if (r->n_failures > CF_MAX_FAILURES)
        printf("      ... and %d more\n", r->n_failures - CF_MAX_FAILURES);
}

static cJSON *json_report(const char *file, const char *op, const char *name,
                          const cf_report *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "file", file ? cJSON_CreateString(file)
                                          : cJSON_CreateNull());
    if (op)
        cJSON_AddStringToObject(o, "op", op);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddBoolToObject(o, "passed", r->passed);
    cJSON *fl = cJSON_AddArrayToObject(o, "failures");
    for (int i = 0; i < r->n_failures && i < CF_MAX_FAILURES; i++)
        cJSON_AddItemToArray(fl, cJSON_CreateString(r->failures[i]));
    if (r->n_failures > CF_MAX_FAILURES) {
        char b[64];
        snprintf(b, sizeof b, "... and %d more",
                 r->n_failures - CF_MAX_FAILURES);
        cJSON_AddItemToArray(fl, cJSON_CreateString(b));
    }
    if (r->error[0])
        cJSON_AddStringToObject(o, "error", r->error);
    cJSON_AddNumberToObject(o, "values_compared", (double)r->values_compared);
    cJSON_AddNumberToObject(o, "grads_compared", (double)r->grads_compared);
    cJSON_AddNumberToObject(o, "params_compared",
                            (double)r->params_compared);
    cJSON_AddNumberToObject(o, "fd_checked", (double)r->fd_checked);
    cJSON_AddNumberToObject(o, "fd_kinks", (double)r->fd_kinks);
    cJSON_AddNumberToObject(o, "fd_exempt", (double)r->fd_exempt);
    if (r->worst.have) {
        cJSON *w = cJSON_AddObjectToObject(o, "worst");
        cJSON_AddStringToObject(w, "leaf", r->worst.leaf);
        cJSON_AddStringToObject(w, "index", r->worst.where);
        cJSON_AddNumberToObject(w, "flat_index", (double)r->worst.index);
        cJSON_AddNumberToObject(w, "analytic", r->worst.analytic);
        cJSON_AddNumberToObject(w, "numeric", r->worst.numeric);
        cJSON_AddNumberToObject(w, "error", r->worst.error);
        cJSON_AddNumberToObject(w, "tolerance_ratio", r->worst.ratio);
    }
    return o;
}

/* Counts a checked case and reports it. quiet: print only on failure. */
static void record(runner *R, const char *file, const char *op,
                   const char *name, const cf_report *r, bool quiet)
{
    if (r->passed)
        R->passed++;
    else
        R->failed++;
    if (R->json)
        cJSON_AddItemToArray(R->json_cases, json_report(file, op, name, r));
    else if (!r->passed || !quiet || R->verbose)
        print_human(file, name, r);
}

/* A file that is not a valid case is a failure of its own. */
static void record_invalid(runner *R, const char *file, const char *msg)
{
    cf_report r;
    memset(&r, 0, sizeof r);
    snprintf(r.failures[0], sizeof r.failures[0], "%s", msg);
    r.n_failures = 1;
    record(R, file, NULL, "(not a valid case)", &r, false);
}

/* ============================================================ case files */

/* Sets the case's context to run on n threads; frees the case and returns
 * NULL (why in err) when that fails. Passes NULL through. */
static cf_case *with_threads(cf_case *c, int n, char *err, size_t errlen)
{
    if (c && yk_set_threads(c->ctx, n) != YK_OK) {
        snprintf(err, errlen, "%s", yk_last_error(c->ctx));
        cf_free(c);
        return NULL;
    }
    return c;
}

static void check_file(runner *R, const char *path)
{
    char err[CF_MSG];
    cf_case *c = with_threads(cf_load(path, err, sizeof err), R->threads,
                              err, sizeof err);
    if (!c) {
        record_invalid(R, path, err);
        return;
    }
    cf_report r;
    cf_check(c, &R->opts, &r);
    record(R, path, NULL, c->name, &r, false);
    cf_free(c);
}

static int eval_file(const char *path, int threads)
{
    char err[CF_MSG];
    cf_case *c = with_threads(cf_load(path, err, sizeof err), threads, err,
                              sizeof err);
    if (!c) {
        fprintf(stderr, "gradcheck: %s\n", err);
        return 1;
    }
    cf_session s;
    if (!cf_session_init(&s, c, err, sizeof err)) {
        fprintf(stderr, "gradcheck: %s\n", err);
        cf_free(c);
        return 1;
    }
    cf_result r;
    cf_run(&s, &r);
    cf_print_result(stdout, c, &r);
    cf_result_free(c, &r);
    cf_session_free(&s);
    cf_free(c);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ============================================================ generators
 *
 * A generator writes cases as JSON (the same path as case files, so a
 * generated case can be dumped and rerun) through the small builder below:
 * gen_case, leaves, one or more nodes, gen_run. gen_run seeds the last
 * node with random numbers and checks the case with strict = true.
 */

typedef struct shp {
    int n;
    int64_t d[YK_MAX_DIMS];
} shp;

#define SHP(...)                                                             \
    ((shp){(int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),        \
           {__VA_ARGS__}})
static const shp SCALAR = {0, {0}};

/* "[2, 3]" in one of a few rotating buffers (for case names). */
static const char *shp_str(shp s)
{
    static char bufs[4][96];
    static int k;
    char *b = bufs[k++ % 4];
    size_t n = (size_t)snprintf(b, sizeof bufs[0], "[");
    for (int i = 0; i < s.n; i++)
        n += (size_t)snprintf(b + n, sizeof bufs[0] - n, "%s%lld",
                              i ? ", " : "", (long long)s.d[i]);
    snprintf(b + n, sizeof bufs[0] - n, "]");
    return b;
}

static int64_t numel(shp s)
{
    int64_t n = 1;
    for (int i = 0; i < s.n; i++)
        n *= s.d[i];
    return n;
}

typedef enum fill {
    NORMAL,   /* N(0, 1)                                          */
    AWAY0,    /* |x| in [0.25, 2], either sign: relu, denominators */
    POSITIVE, /* [0.5, 2]: log                                     */
    DISTINCT  /* distinct by >= 0.2: no ties in max               */
} fill;

typedef struct gen {
    runner *R;
    const yk_op_def *op;
    uint64_t rng;
    int n_cases, n_failed, n_dumped;
    bool seen_attr[YK_OP_MAX_ATTRS];
    bool seen_input[YK_OP_MAX_INPUTS];
    bool seen_absent[YK_OP_MAX_INPUTS];
} gen;

/* splitmix64: small, seedable, the same everywhere. */
static uint64_t next_u64(gen *G)
{
    uint64_t z = (G->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(gen *G) /* [0, 1) */
{
    return (double)(next_u64(G) >> 11) * 0x1.0p-53;
}

static double normal(gen *G)
{
    double u = uniform(G), v = uniform(G);
    return sqrt(-2 * log(1 - u)) * cos(6.283185307179586 * v);
}

static int64_t randint(gen *G, int64_t lo, int64_t hi) /* [lo, hi) */
{
    return lo + (int64_t)(next_u64(G) % (uint64_t)(hi - lo));
}

static cJSON *shape_json(shp s)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < s.n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)s.d[i]));
    return a;
}

static cJSON *tensor_json(const char *dtype, shp s, cJSON *data)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "dtype", dtype);
    cJSON_AddItemToObject(t, "shape", shape_json(s));
    cJSON_AddItemToObject(t, "data", data);
    return t;
}

static void fill_values(gen *G, fill f, double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double sign = next_u64(G) & 1 ? 1 : -1;
        switch (f) {
        case NORMAL: v[i] = normal(G); break;
        case AWAY0: v[i] = sign * (0.25 + 1.75 * uniform(G)); break;
        case POSITIVE: v[i] = 0.5 + 1.5 * uniform(G); break;
        case DISTINCT: v[i] = 0.3 * (double)i - 0.15 * (double)n +
                              0.1 * uniform(G); break;
        }
    }
    for (int64_t i = n - 1; f == DISTINCT && i > 0; i--) { /* shuffle */
        int64_t j = randint(G, 0, i + 1);
        double t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static cJSON *gen_case(gen *G, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static cJSON *gen_case(gen *G, const char *fmt, ...)
{
    char name[256];
    int n = snprintf(name, sizeof name, "%s: ", G->op->name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + n, sizeof name - (size_t)n, fmt, ap);
    va_end(ap);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "format", "yoke-case/1");
    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddObjectToObject(c, "tensors");
    cJSON_AddArrayToObject(c, "nodes");
    return c;
}

/* A random f64 leaf. */
static void leaf(gen *G, cJSON *c, const char *name, shp s, fill f, bool rg)
{
    int64_t n = numel(s);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (v)
        fill_values(G, f, v, n);
    cJSON *t = tensor_json("f64", s, v ? cJSON_CreateDoubleArray(v, (int)n)
                                       : cJSON_CreateArray());
    free(v);
    if (rg)
        cJSON_AddTrueToObject(t, "requires_grad");
    cJSON_AddItemToObject(cJSON_GetObjectItem(c, "tensors"), name, t);
}

/* An i64 leaf with the given numbers. */
static void ints(cJSON *c, const char *name, shp s, const int64_t *data)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < numel(s); i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)data[i]));
    cJSON_AddItemToObject(cJSON_GetObjectItem(c, "tensors"), name,
                          tensor_json("i64", s, a));
}

/* An i64 leaf of numbers drawn from [lo, hi). */
static void random_ints(gen *G, cJSON *c, const char *name, shp s,
                        int64_t lo, int64_t hi)
{
    int64_t v[64] = {0};
    for (int64_t i = 0; i < numel(s) && i < 64; i++)
        v[i] = randint(G, lo, hi);
    ints(c, name, s, v);
}

/* A node from JSON texts (inputs, and attrs or NULL); a bad text is a bug
 * of the generator, which the check then reports. */
static void node(cJSON *c, const char *name, const char *op,
                 const char *inputs, const char *attrs)
{
    cJSON *nd = cJSON_CreateObject();
    cJSON_AddStringToObject(nd, "name", name);
    cJSON_AddStringToObject(nd, "op", op);
    cJSON *in = cJSON_Parse(inputs);
    cJSON_AddItemToObject(nd, "inputs", in ? in : cJSON_CreateString(inputs));
    if (attrs) {
        cJSON *a = cJSON_Parse(attrs);
        cJSON_AddItemToObject(nd, "attrs", a ? a : cJSON_CreateString(attrs));
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(c, "nodes"), nd);
}

/* printf into one of a few rotating buffers (for node() arguments). */
static const char *F(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *F(const char *fmt, ...)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ % 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof bufs[0], fmt, ap);
    va_end(ap);
    return b;
}

/* Which of the op's attributes and inputs the case's nodes of that op name
 * (for the coverage check of --all-ops). */
static void note_coverage(gen *G, const cJSON *c)
{
    const yk_op_def *op = G->op;
    const cJSON *nodes = cJSON_GetObjectItem(c, "nodes");
    for (const cJSON *nd = nodes ? nodes->child : NULL; nd; nd = nd->next) {
        const cJSON *o = cJSON_GetObjectItem(nd, "op");
        if (!cJSON_IsString(o) || strcmp(o->valuestring, op->name) != 0)
            continue;
        const cJSON *in = cJSON_GetObjectItem(nd, "inputs");
        const cJSON *at = cJSON_GetObjectItem(nd, "attrs");
        for (int i = 0; i < op->n_inputs; i++) {
            const cJSON *e = cJSON_GetObjectItem(in, op->input_names[i]);
            if (e && !cJSON_IsNull(e))
                G->seen_input[i] = true;
            else
                G->seen_absent[i] = true;
        }
        for (int k = 0; k < op->n_attrs; k++)
            if (cJSON_GetObjectItem(at, op->attrs[k].name))
                G->seen_attr[k] = true;
    }
}

static void dump_case(gen *G, const cJSON *c)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s_%03d.json", G->R->dump_dir,
             G->op->name, G->n_dumped++);
    char *text = cJSON_Print(c);
    FILE *f = fopen(path, "w");
    if (!f || !text || fprintf(f, "%s\n", text) < 0)
        fprintf(stderr, "gradcheck: cannot write %s: %s\n", path,
                strerror(errno));
    if (f)
        fclose(f);
    free(text);
}

/* Seeds the case's last node with N(0, 1) numbers, learning its shape
 * from one evaluation. false (why in err) when the case does not load or
 * evaluate: a generator bug or an op that is missing. */
static bool add_seed(gen *G, cJSON *c, const char *name, char *err,
                     size_t errlen)
{
    cf_case *probe = with_threads(cf_from_json(cJSON_Duplicate(c, true), name,
                                               NULL, err, errlen),
                                  G->R->threads, err, errlen);
    if (!probe)
        return false;
    cf_session s;
    cf_result res = {.status = YK_OK};
    bool ok = cf_session_init(&s, probe, err, errlen);
    if (ok) {
        cf_eval(&s, 1.0, &res);
        cf_session_free(&s);
        ok = res.status == YK_OK;
        if (!ok)
            snprintf(err, errlen, "does not evaluate: %s: %s",
                     yk_status_name(res.status), res.message);
    }
    if (ok) {
        const yk_tensor *out = res.values[probe->n_nodes - 1];
        int64_t n = yk_tensor_numel(out);
        shp sh = {yk_tensor_ndim(out), {0}};
        memcpy(sh.d, yk_tensor_shape(out), sizeof(int64_t) * (size_t)sh.n);
        double *v = malloc((size_t)(n + 1) * sizeof *v);
        if (v)
            fill_values(G, NORMAL, v, n);
        cJSON *seeds = cJSON_AddObjectToObject(c, "seeds");
        cJSON_AddItemToObject(seeds, probe->nodes[probe->n_nodes - 1].name,
                              tensor_json("f64", sh, cJSON_CreateDoubleArray(
                                                         v, v ? (int)n : 0)));
        free(v);
    }
    cf_result_free(probe, &res);
    cf_free(probe);
    return ok;
}

/* Seeds the case, checks it with strict on (no kinks allowed), reports
 * it, and frees it. */
static void gen_run(gen *G, cJSON *c)
{
    char err[CF_MSG + 64];
    cf_report r;
    memset(&r, 0, sizeof r);
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    note_coverage(G, c);
    cf_case *k = add_seed(G, c, name, err, sizeof err)
                     ? with_threads(cf_from_json(cJSON_Duplicate(c, true),
                                                 name, NULL, err, sizeof err),
                                    G->R->threads, err, sizeof err)
                     : NULL;
    if (k) {
        cf_check_opts o = G->R->opts;
        o.strict = true;
        cf_check(k, &o, &r);
        cf_free(k);
    } else {
        snprintf(r.failures[0], sizeof r.failures[0], "%s", err);
        r.n_failures = 1;
    }
    if (G->R->dump_dir)
        dump_case(G, c);
    G->n_cases++;
    G->n_failed += !r.passed;
    record(G->R, NULL, G->op->name, name, &r, true);
    cJSON_Delete(c);
}

/* --------------------------------------------------------------- arith */

typedef struct shp_pair {
    shp a, b;
} shp_pair;

/* Broadcasting as PyTorch does it: equal shapes, trailing dims, size-1
 * stretching on both sides, 0-d, size 0. */
static void gen_arith(gen *G)
{
    const shp_pair pairs[] = {
        {SCALAR, SCALAR},       {SHP(3), SHP(3)},
        {SHP(2, 3), SHP(2, 3)}, {SHP(2, 3), SHP(3)},
        {SHP(3), SHP(2, 3)},    {SHP(2, 1), SHP(1, 3)},
        {SHP(4, 1, 3), SHP(2, 1)}, {SHP(2, 3), SCALAR},
        {SCALAR, SHP(2, 2)},    {SHP(2, 1, 3), SHP(2, 4, 1)},
        {SHP(0, 3), SHP(3)},
    };
    const char *op = G->op->name;
    fill denom = strcmp(op, "div") == 0 ? AWAY0 : NORMAL;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        cJSON *c = gen_case(G, "%s and %s", shp_str(pairs[i].a),
                            shp_str(pairs[i].b));
        leaf(G, c, "a", pairs[i].a, NORMAL, true);
        leaf(G, c, "b", pairs[i].b, denom, true);
        node(c, "y", op, "{\"input\": \"a\", \"other\": \"b\"}", NULL);
        gen_run(G, c);
    }
    cJSON *c = gen_case(G, "one leaf as both operands");
    leaf(G, c, "a", SHP(2, 3), denom, true);
    node(c, "y", op, "{\"input\": \"a\", \"other\": \"a\"}", NULL);
    gen_run(G, c);
    c = gen_case(G, "constant other");
    leaf(G, c, "a", SHP(2, 3), NORMAL, true);
    leaf(G, c, "b", SHP(3), denom, false);
    node(c, "y", op, "{\"input\": \"a\", \"other\": \"b\"}", NULL);
    gen_run(G, c);
    c = gen_case(G, "constant input");
    leaf(G, c, "a", SHP(2, 1), NORMAL, false);
    leaf(G, c, "b", SHP(2, 3), denom, true);
    node(c, "y", op, "{\"input\": \"a\", \"other\": \"b\"}", NULL);
    gen_run(G, c);
}

/* -------------------------------------------------------------- linalg */

static void gen_matmul(gen *G)
{
    const shp_pair pairs[] = {
        {SHP(3), SHP(3)},             {SHP(2, 3), SHP(3, 4)},
        {SHP(3), SHP(3, 2)},          {SHP(2, 3), SHP(3)},
        {SHP(2, 2, 3), SHP(3, 4)},    {SHP(3), SHP(2, 3, 2)},
        {SHP(2, 3, 4), SHP(2, 4, 2)}, {SHP(2, 1, 2, 3), SHP(3, 3, 2)},
        {SHP(2, 3), SHP(2, 3, 1)},    {SHP(2, 0), SHP(0, 3)},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        bool b_const = i % 3 == 2;
        cJSON *c = gen_case(G, "%s and %s%s", shp_str(pairs[i].a),
                            shp_str(pairs[i].b),
                            b_const ? ", constant other" : "");
        leaf(G, c, "a", pairs[i].a, NORMAL, true);
        leaf(G, c, "b", pairs[i].b, NORMAL, !b_const);
        node(c, "y", "matmul", "{\"input\": \"a\", \"other\": \"b\"}", NULL);
        gen_run(G, c);
    }
    cJSON *c = gen_case(G, "one leaf as both operands");
    leaf(G, c, "a", SHP(3, 3), NORMAL, true);
    node(c, "y", "matmul", "{\"input\": \"a\", \"other\": \"a\"}", NULL);
    gen_run(G, c);
}

static void gen_linear(gen *G)
{
    const shp xs[] = {SHP(3), SHP(2, 3), SHP(2, 2, 3), SHP(0, 3)};
    const char *bias[] = {"", ", \"bias\": null", ", \"bias\": \"b\""};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
        for (int k = 0; k < 3; k++) {
            cJSON *c = gen_case(G, "input %s, bias %s", shp_str(xs[i]),
                                k == 0 ? "left out" : k == 1 ? "null"
                                                             : "given");
            leaf(G, c, "x", xs[i], NORMAL, true);
            leaf(G, c, "W", SHP(4, 3), NORMAL, true);
            leaf(G, c, "b", SHP(4), NORMAL, true);
            node(c, "y", "linear",
                 F("{\"input\": \"x\", \"weight\": \"W\"%s}", bias[k]), NULL);
            gen_run(G, c);
        }
}

/* -------------------------------------------------------------- reduce */

static void reduce_case(gen *G, shp s, const char *dim, bool keepdim)
{
    cJSON *c = gen_case(G, "shape %s, dim %s, keepdim %d", shp_str(s), dim,
                        keepdim);
    leaf(G, c, "x", s, NORMAL, true);
    node(c, "y", G->op->name, "{\"input\": \"x\"}",
         F("{\"dim\": %s, \"keepdim\": %s}", dim, keepdim ? "true" : "false"));
    gen_run(G, c);
}

static void gen_reduce(gen *G)
{
    const shp shapes[] = {SCALAR, SHP(4), SHP(2, 3), SHP(2, 3, 4),
                          SHP(2, 0)};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        shp s = shapes[i];
        int nd = s.n ? s.n : 1; /* a 0-d tensor takes dim 0 and -1 */
        for (int keep = 0; keep < 2; keep++) {
            reduce_case(G, s, "null", keep);
            reduce_case(G, s, "[]", keep);
            for (int d = -nd; d < nd; d++)
                reduce_case(G, s, F("%d", d), keep);
            if (s.n >= 2) {
                reduce_case(G, s, "[0, -1]", keep);
                reduce_case(G, s, F("[%d, 0]", s.n - 1), keep);
            }
            if (s.n == 3)
                reduce_case(G, s, "[2, 0, 1]", keep);
        }
    }
    /* The only non-nullable-default path: attrs left out entirely. */
    cJSON *c = gen_case(G, "attributes left out");
    leaf(G, c, "x", SHP(2, 3), NORMAL, true);
    node(c, "y", G->op->name, "{\"input\": \"x\"}", NULL);
    gen_run(G, c);
}

/* --------------------------------------------------------------- shape */

static void gen_reshape(gen *G)
{
    const struct { shp in; const char *shape; } v[] = {
        {SHP(2, 3), "[3, 2]"},   {SHP(2, 3), "[6]"},
        {SHP(2, 3), "[-1]"},     {SHP(2, 3), "[1, -1, 2]"},
        {SHP(2, 3), "[2, 1, 3]"}, {SCALAR, "[1]"},
        {SHP(1), "[]"},          {SHP(2, 3, 4), "[4, -1]"},
        {SHP(0, 3), "[3, 0]"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cJSON *c = gen_case(G, "%s to %s", shp_str(v[i].in), v[i].shape);
        leaf(G, c, "x", v[i].in, NORMAL, true);
        node(c, "y", "reshape", "{\"input\": \"x\"}",
             F("{\"shape\": %s}", v[i].shape));
        gen_run(G, c);
    }
}

static void gen_narrow(gen *G)
{
    const struct { shp in; int dim, start, length; } v[] = {
        {SHP(5), 0, 1, 3},    {SHP(3, 4), 1, 1, 2}, {SHP(3, 4), -1, 2, 2},
        {SHP(3, 4), 0, 0, 3}, {SHP(3, 4), 0, 2, 0}, {SHP(2, 3, 4), 1, 1, 1},
        {SHP(2, 3, 4), -3, 1, 1},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cJSON *c = gen_case(G, "%s, dim %d, start %d, length %d",
                            shp_str(v[i].in),
                            v[i].dim, v[i].start, v[i].length);
        leaf(G, c, "x", v[i].in, NORMAL, true);
        node(c, "y", "narrow", "{\"input\": \"x\"}",
             F("{\"dim\": %d, \"start\": %d, \"length\": %d}", v[i].dim,
               v[i].start, v[i].length));
        gen_run(G, c);
    }
}

/* Eager cats along every dim, a constant part (its slice must not shift
 * the others'), and the lazy column cat read by embedding ops (its rows
 * go back to the parts as row gradients). */
static void gen_cat(gen *G)
{
    const struct { shp a, b; int dim; bool a_const; } v[] = {
        {SHP(2), SHP(3), 0, false},       {SHP(2, 3), SHP(1, 3), 0, false},
        {SHP(2, 3), SHP(2, 2), 1, false}, {SHP(2, 3), SHP(2, 2), -1, true},
        {SHP(2, 3), SHP(4, 3), -2, true}, {SHP(2, 1, 3), SHP(2, 2, 3), 1, false},
        {SHP(2, 0), SHP(2, 3), 1, false},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cJSON *c = gen_case(G, "%s and %s, dim %d%s", shp_str(v[i].a),
                            shp_str(v[i].b), v[i].dim,
                            v[i].a_const ? ", constant first part" : "");
        leaf(G, c, "a", v[i].a, NORMAL, !v[i].a_const);
        leaf(G, c, "b", v[i].b, NORMAL, true);
        node(c, "y", "cat", "{\"tensors\": [\"a\", \"b\"]}",
             F("{\"dim\": %d}", v[i].dim));
        gen_run(G, c);
    }
    cJSON *c = gen_case(G, "three parts, one leaf twice, default dim");
    leaf(G, c, "a", SHP(2, 2), NORMAL, true);
    leaf(G, c, "b", SHP(1, 2), NORMAL, true);
    node(c, "y", "cat", "{\"tensors\": [\"a\", \"b\", \"a\"]}", NULL);
    gen_run(G, c);
    c = gen_case(G, "one part");
    leaf(G, c, "a", SHP(2, 2), NORMAL, true);
    node(c, "y", "cat", "{\"tensors\": [\"a\"]}", "{\"dim\": 1}");
    gen_run(G, c);
    static const int64_t idx[] = {0, 4, 4, 1, 3, 0};
    static const int64_t offs[] = {0, 2, 2};
    for (int k = 0; k < 6; k++) {
        bool bag = k >= 2, sparse = k % 2, first_const = k >= 4;
        c = gen_case(G, "column cat read by %s, sparse %d%s",
                     bag ? "embedding_bag" : "embedding", sparse,
                     first_const ? ", constant first part" : "");
        leaf(G, c, "W", SHP(5, 3), NORMAL, !first_const);
        leaf(G, c, "S", SHP(5, 2), NORMAL, true);
        ints(c, "idx", SHP(6), idx);
        ints(c, "offs", SHP(3), offs);
        node(c, "C", "cat", "{\"tensors\": [\"W\", \"S\"]}", "{\"dim\": 1}");
        if (bag)
            node(c, "y", "embedding_bag", "{\"input\": \"idx\", \"weight\": "
                 "\"C\", \"offsets\": \"offs\"}",
                 F("{\"mode\": \"sum\", \"sparse\": %s}",
                   sparse ? "true" : "false"));
        else
            node(c, "y", "embedding", "{\"input\": \"idx\", \"weight\": "
                 "\"C\"}", F("{\"sparse\": %s}", sparse ? "true" : "false"));
        gen_run(G, c);
    }
}

/* --------------------------------------------------- unary and softmax */

static void gen_unary(gen *G)
{
    const char *op = G->op->name;
    fill f = strcmp(op, "relu") == 0  ? AWAY0 /* no kink at 0 */
           : strcmp(op, "log") == 0 ? POSITIVE
                                    : NORMAL;
    const shp shapes[] = {SCALAR, SHP(5), SHP(2, 3), SHP(0)};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        cJSON *c = gen_case(G, "shape %s", shp_str(shapes[i]));
        leaf(G, c, "x", shapes[i], f, true);
        node(c, "y", op, "{\"input\": \"x\"}", NULL);
        gen_run(G, c);
    }
}

static void gen_softmax(gen *G)
{
    const shp shapes[] = {SHP(5), SHP(2, 3), SHP(2, 3, 4), SHP(1, 1)};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int d = -shapes[i].n; d < shapes[i].n; d++) {
            cJSON *c = gen_case(G, "shape %s, dim %d", shp_str(shapes[i]), d);
            leaf(G, c, "x", shapes[i], NORMAL, true);
            node(c, "y", G->op->name, "{\"input\": \"x\"}",
                 F("{\"dim\": %d}", d));
            gen_run(G, c);
        }
}

/* ---------------------------------------------------------------- loss */

static void gen_cross_entropy(gen *G)
{
    const shp logits[] = {SHP(1, 3), SHP(4, 5), SHP(3, 2)};
    for (size_t i = 0; i < sizeof logits / sizeof logits[0]; i++)
        for (int r = 0; r < 3; r++) {
            const char *red = r == 0 ? NULL : r == 1 ? "mean" : "sum";
            cJSON *c = gen_case(G, "logits %s, reduction %s",
                                shp_str(logits[i]), red ? red : "left out");
            leaf(G, c, "x", logits[i], NORMAL, true);
            random_ints(G, c, "t", SHP(logits[i].d[0]), 0, logits[i].d[1]);
            node(c, "y", "cross_entropy", "{\"input\": \"x\", \"target\": "
                 "\"t\"}", red ? F("{\"reduction\": \"%s\"}", red) : NULL);
            gen_run(G, c);
        }
}

static void gen_mse_loss(gen *G)
{
    const shp shapes[] = {SCALAR, SHP(4), SHP(2, 3)};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int r = 0; r < 3; r++) {
            const char *red = r == 0 ? NULL : r == 1 ? "mean" : "sum";
            cJSON *c = gen_case(G, "shape %s, reduction %s, target %s",
                                shp_str(shapes[i]), red ? red : "left out",
                                r == 2 ? "constant" : "with grad");
            leaf(G, c, "x", shapes[i], NORMAL, true);
            leaf(G, c, "t", shapes[i], NORMAL, r != 2);
            node(c, "y", "mse_loss", "{\"input\": \"x\", \"target\": \"t\"}",
                 red ? F("{\"reduction\": \"%s\"}", red) : NULL);
            gen_run(G, c);
        }
}

/* ----------------------------------------------------------- embedding */

#define EMB_V 6

static void gen_embedding(gen *G)
{
    const shp inputs[] = {SCALAR, SHP(5), SHP(2, 3)};
    const char *pads[] = {"null", "2", "-1"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        for (int p = 0; p < 3; p++)
            for (int k = 0; k < 4; k++) {
                bool freq = k & 1, sparse = k & 2;
                cJSON *c = gen_case(G, "input %s, padding_idx %s, "
                                    "scale_grad_by_freq %d, sparse %d",
                                    shp_str(inputs[i]), pads[p], freq, sparse);
                leaf(G, c, "W", SHP(EMB_V, 3), NORMAL, true);
                /* Repeats (for the frequencies) and the padding row. */
                int64_t idx[6];
                for (int e = 0; e < 6; e++)
                    idx[e] = randint(G, 0, EMB_V);
                idx[1] = idx[0];
                if (p)
                    idx[inputs[i].n ? 2 : 0] = p == 1 ? 2 : EMB_V - 1;
                ints(c, "idx", inputs[i], idx);
                node(c, "y", "embedding", "{\"input\": \"idx\", \"weight\": "
                     "\"W\"}", F("{\"padding_idx\": %s, \"scale_grad_by_freq"
                                 "\": %s, \"sparse\": %s}", pads[p],
                                 freq ? "true" : "false",
                                 sparse ? "true" : "false"));
                gen_run(G, c);
            }
    cJSON *c = gen_case(G, "attributes left out");
    leaf(G, c, "W", SHP(EMB_V, 2), NORMAL, true);
    random_ints(G, c, "idx", SHP(4), 0, EMB_V);
    node(c, "y", "embedding", "{\"input\": \"idx\", \"weight\": \"W\"}", NULL);
    gen_run(G, c);
}

typedef enum bag_form { BAG_1D, BAG_1D_LAST, BAG_2D } bag_form;

/* Bag inputs with repeats, an empty bag, a bag of padding only (when
 * padding is 2) and padding entries among others. 1-D: 8 entries in bags
 * [0, 3) [3, 3) [3, 6) [6, 8); 2-D: 3 bags of 4. */
static void bag_inputs(gen *G, cJSON *c, bag_form form, bool padding)
{
    int64_t idx[12];
    for (int e = 0; e < 12; e++)
        idx[e] = randint(G, 0, EMB_V);
    idx[1] = idx[0]; /* a repeat within a bag */
    if (form == BAG_2D) {
        if (padding)
            idx[8] = idx[9] = idx[10] = idx[11] = 2;
        ints(c, "idx", SHP(3, 4), idx);
        return;
    }
    if (padding) {
        idx[6] = idx[7] = 2; /* the last bag is all padding */
        idx[4] = 2;
    }
    ints(c, "idx", SHP(8), idx);
    static const int64_t offs[] = {0, 3, 3, 6, 8};
    ints(c, "offs", SHP(form == BAG_1D_LAST ? 5 : 4), offs);
}

static void bag_case(gen *G, const char *mode, bag_form form, int pad,
                     bool freq, bool sparse, bool psw)
{
    const char *pads[] = {"null", "2", "-4"}; /* -4 is row 2 of 6 */
    const char *forms[] = {"1-D", "1-D include_last_offset", "2-D"};
    cJSON *c = gen_case(G, "mode %s, %s, padding_idx %s, scale_grad_by_freq "
                        "%d, sparse %d, per_sample_weights %d", mode,
                        forms[form], pads[pad], freq, sparse, psw);
    bool max = strcmp(mode, "max") == 0;
    leaf(G, c, "W", SHP(EMB_V, 3), max ? DISTINCT : NORMAL, true);
    bag_inputs(G, c, form, pad != 0);
    if (psw)
        leaf(G, c, "psw", form == BAG_2D ? SHP(3, 4) : SHP(8), NORMAL, true);
    node(c, "y", "embedding_bag",
         F("{\"input\": \"idx\", \"weight\": \"W\"%s%s}",
           form == BAG_2D ? "" : ", \"offsets\": \"offs\"",
           psw ? ", \"per_sample_weights\": \"psw\"" : ""),
         F("{\"mode\": \"%s\", \"include_last_offset\": %s, \"padding_idx\": "
           "%s, \"scale_grad_by_freq\": %s, \"sparse\": %s}", mode,
           form == BAG_1D_LAST ? "true" : "false", pads[pad],
           freq ? "true" : "false", sparse ? "true" : "false"));
    gen_run(G, c);
}

static void gen_embedding_bag(gen *G)
{
    const char *modes[] = {"sum", "mean", "max"};
    for (int m = 0; m < 3; m++)
        for (int form = BAG_1D; form <= BAG_2D; form++)
            for (int pad = 0; pad < 3; pad++)
                for (int k = 0; k < 8; k++) {
                    bool freq = k & 1, sparse = k & 2, psw = k & 4;
                    if ((m == 2 && (freq || sparse)) || (m != 0 && psw))
                        continue; /* invalid_argument: not gradients */
                    bag_case(G, modes[m], (bag_form)form, pad, freq, sparse,
                             psw);
                }
    for (int m = 0; m < 3; m++) {
        cJSON *c = gen_case(G, "mode %s, zero bags", modes[m]);
        leaf(G, c, "W", SHP(EMB_V, 3), NORMAL, true);
        ints(c, "idx", SHP(0), NULL);
        ints(c, "offs", SHP(1), (const int64_t[]){0});
        node(c, "y", "embedding_bag", "{\"input\": \"idx\", \"weight\": "
             "\"W\", \"offsets\": \"offs\"}",
             F("{\"mode\": \"%s\", \"include_last_offset\": true}",
               modes[m]));
        gen_run(G, c);
    }
    cJSON *c = gen_case(G, "attributes left out (mean), null optionals");
    leaf(G, c, "W", SHP(EMB_V, 3), NORMAL, true);
    bag_inputs(G, c, BAG_1D, false);
    node(c, "y", "embedding_bag", "{\"input\": \"idx\", \"weight\": \"W\", "
         "\"offsets\": \"offs\", \"per_sample_weights\": null}", NULL);
    gen_run(G, c);
}

/* ----------------------------------------------------- the table */

typedef struct generator {
    const char *op;
    void (*fn)(gen *G);
} generator;

static const generator generators[] = {
    {"add", gen_arith},         {"sub", gen_arith},
    {"mul", gen_arith},         {"div", gen_arith},
    {"matmul", gen_matmul},     {"linear", gen_linear},
    {"sum", gen_reduce},        {"mean", gen_reduce},
    {"reshape", gen_reshape},   {"narrow", gen_narrow},
    {"cat", gen_cat},           {"relu", gen_unary},
    {"tanh", gen_unary},        {"sigmoid", gen_unary},
    {"exp", gen_unary},         {"log", gen_unary},
    {"softmax", gen_softmax},   {"log_softmax", gen_softmax},
    {"cross_entropy", gen_cross_entropy},
    {"mse_loss", gen_mse_loss}, {"embedding", gen_embedding},
    {"embedding_bag", gen_embedding_bag},
};

static const generator *find_generator(const char *op)
{
    for (size_t i = 0; i < sizeof generators / sizeof generators[0]; i++)
        if (strcmp(generators[i].op, op) == 0)
            return &generators[i];
    return NULL;
}

/* =============================================================== all ops */

/* What the op's generator never exercised: an attribute never set, an
 * input never given, an optional input never left out. */
static void coverage(const gen *G, cf_report *r)
{
    const yk_op_def *op = G->op;
    char b[400] = "";
    size_t n = 0;
    for (int k = 0; k < op->n_attrs; k++)
        if (!G->seen_attr[k] && n < sizeof b)
            n += (size_t)snprintf(b + n, sizeof b - n, "; attribute \"%s\" "
                                  "is never set", op->attrs[k].name);
    for (int i = 0; i < op->n_inputs; i++) {
        if (!G->seen_input[i] && n < sizeof b)
            n += (size_t)snprintf(b + n, sizeof b - n, "; input \"%s\" is "
                                  "never given", op->input_names[i]);
        if ((op->optional_inputs >> i & 1u) && !G->seen_absent[i] &&
            n < sizeof b)
            n += (size_t)snprintf(b + n, sizeof b - n, "; optional input "
                                  "\"%s\" is never left out",
                                  op->input_names[i]);
    }
    r->passed = n == 0;
    r->n_failures = n != 0;
    if (n)
        snprintf(r->failures[0], sizeof r->failures[0], "the generator of "
                 "\"%s\" is incomplete: %s", op->name, b + 2);
}

static uint64_t op_seed(uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: --op keeps the cases */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h ^ (seed * 0x9E3779B97F4A7C15ull);
}

static void report_op(runner *R, const gen *G, const char *problem)
{
    bool ok = !problem && G->n_failed == 0;
    if (R->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", G->op->name);
        cJSON_AddBoolToObject(o, "passed", ok);
        cJSON_AddNumberToObject(o, "cases", G->n_cases);
        cJSON_AddNumberToObject(o, "failed", G->n_failed);
        if (problem)
            cJSON_AddStringToObject(o, "problem", problem);
        cJSON_AddItemToArray(R->json_ops, o);
        return;
    }
    printf("%s  op %s: %d generated cases", ok ? "PASS" : "FAIL",
           G->op->name, G->n_cases);
    if (G->n_failed)
        printf(", %d failed", G->n_failed);
    if (problem)
        printf("; %s", problem);
    printf("\n");
}

static void check_op(runner *R, const yk_op_def *op)
{
    gen G = {.R = R, .op = op, .rng = op_seed(R->seed, op->name)};
    const generator *gn = find_generator(op->name);
    cf_report r;
    memset(&r, 0, sizeof r);
    if (!gn) {
        snprintf(r.failures[0], sizeof r.failures[0], "op \"%s\" is in the "
                 "registry but tools/gradcheck.c has no generator for it",
                 op->name);
        r.n_failures = 1;
        record(R, NULL, op->name, op->name, &r, true);
        report_op(R, &G, "no generator");
        return;
    }
    gn->fn(&G);
    coverage(&G, &r);
    if (!r.passed) {
        char name[96];
        snprintf(name, sizeof name, "%s: coverage of attributes and inputs",
                 op->name);
        record(R, NULL, op->name, name, &r, true);
    }
    report_op(R, &G, r.passed ? NULL : "incomplete generator");
}

static void all_ops(runner *R, char **only, int n_only)
{
    for (int i = 0; i < yk_op_count(); i++) {
        const yk_op_def *op = yk_op_at(i);
        bool wanted = n_only == 0;
        for (int k = 0; k < n_only && !wanted; k++)
            wanted = strcmp(only[k], op->name) == 0;
        if (wanted)
            check_op(R, op);
    }
}

/* ================================================================== main */

static bool parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

/* A thread count: a whole number from 1 to 1024. */
static bool parse_threads(const char *s, int *out)
{
    uint64_t v;
    if (!parse_u64(s, &v) || v < 1 || v > 1024)
        return false;
    *out = (int)v;
    return true;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "gradcheck: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(gradcheck --help tells more)\n");
    return 2;
}

typedef struct args {
    const char *eval;
    bool all_ops;
    char **files, **ops;
    int n_files, n_ops;
} args;

/* Options that take a value. */
static int parse_value_option(runner *R, args *A, const char *opt,
                              const char *val)
{
    if (!val)
        return usage_error("%s needs a value", opt);
    bool ok = true;
    if (strcmp(opt, "--eps") == 0)
        ok = parse_double(val, &R->opts.eps);
    else if (strcmp(opt, "--atol") == 0)
        ok = parse_double(val, &R->opts.atol);
    else if (strcmp(opt, "--rtol") == 0)
        ok = parse_double(val, &R->opts.rtol);
    else if (strcmp(opt, "--seed") == 0)
        ok = parse_u64(val, &R->seed);
    else if (strcmp(opt, "--eval") == 0)
        A->eval = val;
    else if (strcmp(opt, "--dump") == 0)
        R->dump_dir = val;
    else if (strcmp(opt, "--threads") == 0)
        ok = parse_threads(val, &R->threads);
    else if (strcmp(opt, "--op") == 0) {
        if (!yk_op_find(val))
            return usage_error("--op %s: no such op in the registry", val);
        A->ops[A->n_ops++] = (char *)val;
    }
    if (!ok) {
        char what[256];
        snprintf(what, sizeof what, "%s %.200s", opt, val);
        return usage_error("%s: not a valid value", what);
    }
    return 0;
}

static bool takes_value(const char *opt)
{
    static const char *const with_value[] = {"--eps", "--atol", "--rtol",
                                             "--seed", "--eval", "--dump",
                                             "--op", "--threads", NULL};
    for (int i = 0; with_value[i]; i++)
        if (strcmp(opt, with_value[i]) == 0)
            return true;
    return false;
}

/* 0 to go on, else the exit status (also for --help and --version). */
static int parse_args(int argc, char **argv, runner *R, args *A)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return -1;
        } else if (strcmp(a, "--version") == 0) {
            printf("gradcheck (yoke) %s\n", yk_version());
            return -1;
        } else if (strcmp(a, "--all-ops") == 0) {
            A->all_ops = true;
        } else if (strcmp(a, "--json") == 0) {
            R->json = true;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            R->verbose = true;
        } else if (takes_value(a)) {
            int st = parse_value_option(R, A, a, i + 1 < argc ? argv[i + 1]
                                                              : NULL);
            if (st)
                return st;
            i++;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option %s", a);
        } else {
            A->files[A->n_files++] = argv[i];
        }
    }
    if (A->eval && (A->all_ops || A->n_files))
        return usage_error("%s", "--eval takes one case and nothing else");
    if (!A->eval && !A->all_ops && !A->n_files)
        return usage_error("%s", "nothing to do: give case files, --eval "
                           "CASE or --all-ops");
    if (A->n_ops && !A->all_ops)
        return usage_error("%s", "--op needs --all-ops");
    if (R->dump_dir && !A->all_ops)
        return usage_error("%s", "--dump needs --all-ops");
    return 0;
}

static int finish(runner *R)
{
    if (R->json) {
        cJSON_AddNumberToObject(R->report, "passed", R->passed);
        cJSON_AddNumberToObject(R->report, "failed", R->failed);
        char *text = cJSON_Print(R->report);
        if (text)
            printf("%s\n", text);
        free(text);
        cJSON_Delete(R->report);
    } else {
        printf("%d passed, %d failed\n", R->passed, R->failed);
    }
    return R->failed == 0 && fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    runner R = {.opts = {1e-6, 1e-5, 1e-3, false}, .seed = 1, .threads = 1};
    args A = {0};
    A.files = calloc((size_t)argc, sizeof *A.files);
    A.ops = calloc((size_t)argc, sizeof *A.ops);
    if (!A.files || !A.ops) {
        fprintf(stderr, "gradcheck: out of memory\n");
        return 1;
    }
    int st = parse_args(argc, argv, &R, &A);
    if (st == 0 && A.eval)
        st = eval_file(A.eval, R.threads);
    else if (st == 0) {
        if (R.dump_dir && mkdir(R.dump_dir, 0777) != 0 && errno != EEXIST)
            fprintf(stderr, "gradcheck: cannot make %s: %s\n", R.dump_dir,
                    strerror(errno));
        if (R.json) {
            R.report = cJSON_CreateObject();
            cJSON_AddStringToObject(R.report, "version", yk_version());
            cJSON_AddNumberToObject(R.report, "seed", (double)R.seed);
            cJSON_AddNumberToObject(R.report, "eps", R.opts.eps);
            cJSON_AddNumberToObject(R.report, "atol", R.opts.atol);
            cJSON_AddNumberToObject(R.report, "rtol", R.opts.rtol);
            R.json_cases = cJSON_AddArrayToObject(R.report, "cases");
            R.json_ops = cJSON_AddArrayToObject(R.report, "ops");
        }
        for (int i = 0; i < A.n_files; i++)
            check_file(&R, A.files[i]);
        if (A.all_ops)
            all_ops(&R, A.ops, A.n_ops);
        st = finish(&R);
    }
    free(A.files);
    free(A.ops);
    return st < 0 ? 0 : st;
}
