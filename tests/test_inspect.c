/*
 * test_inspect.c -- graph walking, the DOT and JSON dumps, the tie report.
 *
 * Dump contents are checked against the graph the test built by hand (ids
 * are creation order, names are the registry's argument names). Tie report
 * norms are checked against the norm of each use's gradient computed on
 * its own, in a separate graph with only that use; the gradient with the
 * report on is checked against the gradient with it off.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "check.h"

static yk_ctx *ctx;

static void setup(void) { ctx = yk_ctx_new(); }
static void teardown(void) { yk_ctx_free(ctx); }

TestSuite(inspect, .init = setup, .fini = teardown);

/* Everything yk_graph_dump_dot writes, as a string (caller frees). */
static char *dot_of(const yk_graph *g)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f != NULL);
    cr_assert_eq(yk_graph_dump_dot(g, f), YK_OK, "%s", yk_last_error(ctx));
    fclose(f);
    return buf;
}

static cJSON *json_of(const yk_graph *g)
{
    char *s = yk_graph_dump_json(g);
    cr_assert(s != NULL, "%s", yk_last_error(ctx));
    cJSON *j = cJSON_Parse(s);
    cr_assert(j != NULL, "not JSON: %s", s);
    yk_string_free(s);
    return j;
}

static void expect_contains(const char *text, const char *part)
{
    cr_assert(strstr(text, part) != NULL, "\"%s\" not in:\n%s", part, text);
}

static cJSON *field(const cJSON *o, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(v != NULL, "no \"%s\" in %s", key, cJSON_PrintUnformatted(o));
    return v;
}

static double num(const cJSON *o, const char *key)
{
    cJSON *v = field(o, key);
    cr_assert(cJSON_IsNumber(v), "\"%s\" is not a number", key);
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *key)
{
    cJSON *v = field(o, key);
    cr_assert(cJSON_IsString(v), "\"%s\" is not a string", key);
    return v->valuestring;
}

/* ------------------------------------------------------- a small graph */

/* #0 param W [3, 2] f64, #1 const idx [2] i64, #2 embedding(idx, W),
 * #3 sum(#2). Built by hand, so these ids and edges are what the dumps
 * must show. */
typedef struct small {
    yk_model *m;
    yk_param *W;
    yk_tensor *idx;
    yk_graph *g;
    yk_node *w, *i, *e, *s;
} small;

static small small_graph(void)
{
    small t;
    t.m = yk_model_new(ctx);
    t.W = param_with(t.m, "W", YK_F64, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6));
    t.idx = TI(ctx, SHAPE(2), IDX(2, 0));
    t.g = yk_graph_begin(ctx);
    t.w = yk_param_node(t.g, t.W);
    t.i = yk_const(t.g, t.idx);
    t.e = yk_embedding(t.g, t.i, t.w, YK_NO_PADDING, false, false);
    t.s = yk_sum(t.g, t.e, 0, NULL, false);
    cr_assert(t.s != NULL, "%s", yk_last_error(ctx));
    return t;
}

static void small_free(small *t)
{
    yk_graph_end(t->g);
    yk_tensor_free(t->idx);
    yk_model_free(t->m);
}

Test(inspect, walks_nodes_inputs_and_consumers)
{
    small t = small_graph();
    cr_assert_eq(yk_graph_node_count(t.g), 4);
    cr_assert_eq(yk_graph_node_at(t.g, 2), t.e);
    cr_assert_null(yk_graph_node_at(t.g, 4));
    cr_assert_null(yk_graph_node_at(t.g, -1));
    cr_assert_eq(yk_node_id(t.s), 3);
    cr_assert_eq(yk_node_n_inputs(t.e), 2);
    cr_assert_eq(yk_node_input(t.e, 0), t.i);
    cr_assert_eq(yk_node_input(t.e, 1), t.w);
    cr_assert_null(yk_node_input(t.e, 2));
    char name[32];
    cr_assert_str_eq(yk_node_input_name(t.e, 1, name, sizeof name), "weight");
    cr_assert_str_eq(yk_node_input_name(t.e, 2, name, sizeof name), "");
    cr_assert_eq(yk_node_param(t.w), t.W);
    cr_assert_null(yk_node_param(t.i));
    yk_node *out[2];
    cr_assert_eq(yk_node_consumers(t.w, 2, out), 1);
    cr_assert_eq(out[0], t.e);
    cr_assert_eq(yk_node_consumers(t.s, 2, out), 0);
    small_free(&t);
}

Test(inspect, walking_null_is_harmless)
{
    cr_assert_eq(yk_graph_node_count(NULL), 0);
    cr_assert_null(yk_graph_node_at(NULL, 0));
    cr_assert_eq(yk_node_id(NULL), -1);
    cr_assert_eq(yk_node_n_inputs(NULL), 0);
    cr_assert_null(yk_node_input(NULL, 0));
    cr_assert_null(yk_node_param(NULL));
    cr_assert_eq(yk_node_consumers(NULL, 0, NULL), -1);
    char name[8] = "x";
    cr_assert_str_eq(yk_node_input_name(NULL, 0, name, sizeof name), "");
}

Test(inspect, cat_inputs_are_named_as_list_items)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *A = param_with(m, "A", YK_F64, SHAPE(2, 1), VALS(1, 2));
    yk_param *B = param_with(m, "B", YK_F64, SHAPE(2, 1), VALS(3, 4));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *c = yk_cat(g, 2, (yk_node *[]){yk_param_node(g, A),
                                             yk_param_node(g, B)}, 1);
    cr_assert(c != NULL, "%s", yk_last_error(ctx));
    char name[32];
    cr_assert_str_eq(yk_node_input_name(c, 1, name, sizeof name),
                     "tensors[1]");
    yk_graph_end(g);
    yk_model_free(m);
}

/* ------------------------------------------------------------------ DOT */

Test(inspect, dot_shows_nodes_shapes_params_and_edges)
{
    small t = small_graph();
    char *dot = dot_of(t.g);
    expect_contains(dot, "digraph yoke {");
    expect_contains(dot, "n0 [label=\"#0 param\\nW\\n[3, 2] f64\", shape=box");
    expect_contains(dot, "n1 [label=\"#1 const\\n[2] i64\"");
    expect_contains(dot, "n2 [label=\"#2 embedding\\n[2, 2] f64\"];");
    expect_contains(dot, "n3 [label=\"#3 sum\\n[] f64\"];");
    expect_contains(dot, "n1 -> n2 [label=\"input\"];");
    expect_contains(dot, "n0 -> n2 [label=\"weight\", color=");
    expect_contains(dot, "n2 -> n3 [label=\"input\"];");
    cr_assert_eq(dot[strlen(dot) - 2], '}', "ends with }: %s", dot);
    free(dot);
    small_free(&t);
}

Test(inspect, dot_escapes_quotes_in_parameter_names)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *p = param_with(m, "a\"b\\c", YK_F32, SHAPE(1), VALS(1));
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert(yk_param_node(g, p) != NULL);
    char *dot = dot_of(g);
    expect_contains(dot, "#0 param\\na\\\"b\\\\c\\n[1] f32");
    free(dot);
    yk_graph_end(g);
    yk_model_free(m);
}

Test(inspect, dot_errors)
{
    small t = small_graph();
    cr_assert_eq(yk_graph_dump_dot(NULL, stdout), YK_EINVAL);
    cr_assert_eq(yk_graph_dump_dot(t.g, NULL), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "yk_graph_dump_dot: f is NULL");
    FILE *full = fopen("/dev/full", "w");
    if (full) { /* Linux: every write fails with ENOSPC */
        cr_assert_eq(yk_graph_dump_dot(t.g, full), YK_EIO);
        expect_error(ctx, YK_EIO, "yk_graph_dump_dot");
        fclose(full);
    }
    small_free(&t);
}

/* ----------------------------------------------------------------- JSON */

Test(inspect, json_has_nodes_edges_and_params)
{
    small t = small_graph();
    cJSON *j = json_of(t.g);
    cr_assert_str_eq(str(j, "status"), "ok");
    cr_assert(cJSON_IsFalse(field(j, "backward_done")));

    cJSON *nodes = field(j, "nodes");
    cr_assert_eq(cJSON_GetArraySize(nodes), 4);
    cJSON *n0 = cJSON_GetArrayItem(nodes, 0);
    cr_assert_eq(num(n0, "id"), 0);
    cr_assert_str_eq(str(n0, "op"), "param");
    cr_assert_str_eq(str(n0, "param"), "W");
    cr_assert_str_eq(str(n0, "dtype"), "f64");
    cJSON *shape = field(n0, "shape");
    cr_assert_eq(cJSON_GetArraySize(shape), 2);
    cr_assert_eq(cJSON_GetArrayItem(shape, 0)->valuedouble, 3);
    cr_assert_eq(cJSON_GetArrayItem(shape, 1)->valuedouble, 2);
    cr_assert(cJSON_IsTrue(field(n0, "requires_grad")));
    cr_assert_eq(cJSON_GetArraySize(field(n0, "inputs")), 0);

    cJSON *n1 = cJSON_GetArrayItem(nodes, 1);
    cr_assert_str_eq(str(n1, "op"), "const");
    cr_assert(cJSON_IsNull(field(n1, "param")));
    cr_assert_str_eq(str(n1, "dtype"), "i64");
    cr_assert(cJSON_IsFalse(field(n1, "requires_grad")));

    cJSON *n2 = cJSON_GetArrayItem(nodes, 2);
    cr_assert_str_eq(str(n2, "op"), "embedding");
    cJSON *in = field(n2, "inputs");
    cr_assert_eq(cJSON_GetArraySize(in), 2);
    cr_assert_eq(cJSON_GetArrayItem(in, 0)->valuedouble, 1);
    cr_assert_eq(cJSON_GetArrayItem(in, 1)->valuedouble, 0);
    cJSON *n3 = cJSON_GetArrayItem(nodes, 3);
    cr_assert_eq(cJSON_GetArraySize(field(n3, "shape")), 0); /* a scalar */

    /* edges: embedding's two inputs, then sum's one, in node order */
    cJSON *edges = field(j, "edges");
    cr_assert_eq(cJSON_GetArraySize(edges), 3);
    const double want[3][2] = {{1, 2}, {0, 2}, {2, 3}};
    const char *names[3] = {"input", "weight", "input"};
    for (int k = 0; k < 3; k++) {
        cJSON *e = cJSON_GetArrayItem(edges, k);
        cr_assert_eq(num(e, "from"), want[k][0], "edge %d", k);
        cr_assert_eq(num(e, "to"), want[k][1], "edge %d", k);
        cr_assert_str_eq(str(e, "input"), names[k], "edge %d", k);
    }

    cJSON *params = field(j, "params");
    cr_assert_eq(cJSON_GetArraySize(params), 1);
    cJSON *p0 = cJSON_GetArrayItem(params, 0);
    cr_assert_str_eq(str(p0, "name"), "W");
    cr_assert_eq(num(p0, "node"), 0);
    cr_assert_eq(cJSON_GetArraySize(field(j, "ties")), 0);
    cJSON_Delete(j);
    small_free(&t);
}

Test(inspect, json_skips_absent_optional_inputs)
{
    /* embedding_bag of a 2-D input has no offsets and no weights: slots 2
     * and 3 are null in "inputs" and have no edge. */
    yk_model *m = yk_model_new(ctx);
    yk_param *W = param_with(m, "W", YK_F64, SHAPE(3, 1), VALS(1, 2, 3));
    yk_tensor *idx = TI(ctx, SHAPE(1, 2), IDX(0, 2));
    yk_graph *g = yk_graph_begin(ctx);
    yk_bag_opts o = yk_bag_defaults();
    yk_node *b = yk_embedding_bag(g, yk_const(g, idx), yk_param_node(g, W),
                                  NULL, NULL, &o);
    cr_assert(b != NULL, "%s", yk_last_error(ctx));
    cJSON *j = json_of(g);
    cJSON *in = field(cJSON_GetArrayItem(field(j, "nodes"), 2), "inputs");
    cr_assert_eq(cJSON_GetArraySize(in), 4);
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(in, 2)));
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(in, 3)));
    cr_assert_eq(cJSON_GetArraySize(field(j, "edges")), 2);
    cJSON_Delete(j);
    yk_graph_end(g);
    yk_tensor_free(idx);
    yk_model_free(m);
}

Test(inspect, json_of_a_failed_graph_shows_the_nodes_made)
{
    small t = small_graph();
    yk_tensor *bad = TI(ctx, SHAPE(1), IDX(7)); /* W has 3 rows */
    cr_assert_null(yk_embedding(t.g, yk_const(t.g, bad), t.w, YK_NO_PADDING,
                                false, false));
    cJSON *j = json_of(t.g);
    cr_assert_str_eq(str(j, "status"), "index_out_of_range");
    cr_assert_eq(cJSON_GetArraySize(field(j, "nodes")), 5); /* + the const */
    cJSON_Delete(j);
    char *dot = dot_of(t.g);
    expect_contains(dot, "n4 [label=\"#4 const");
    free(dot);
    yk_tensor_free(bad);
    small_free(&t);
}

Test(inspect, json_of_null_is_null)
{
    cr_assert_null(yk_graph_dump_json(NULL));
    yk_string_free(NULL);
}

/* An allocator that counts live bytes and can be told to fail. */
typedef struct counting {
    long long live;
    size_t fail_size; /* fail allocations of exactly this size; 0: none */
    bool fail_all;
} counting;

static void *size_failing_alloc(void *ud, void *ptr, size_t old_size,
                                size_t new_size)
{
    counting *c = ud;
    if (new_size == 0) {
        c->live -= (long long)old_size;
        free(ptr);
        return NULL;
    }
    if (c->fail_all || new_size == c->fail_size)
        return NULL;
    void *q = realloc(ptr, new_size);
    if (q)
        c->live += (long long)new_size - (long long)old_size;
    return q;
}

Test(inspect, json_string_goes_through_the_context_allocator)
{
    counting c = {0};
    yk_ctx *cx = yk_ctx_new_with_alloc(size_failing_alloc, &c);
    yk_graph *g = yk_graph_begin(cx);
    yk_tensor *t = yk_tensor_ones(cx, YK_F32, 1, (int64_t[]){2});
    cr_assert(yk_const(g, t) != NULL);
    long long before = c.live;
    char *s = yk_graph_dump_json(g);
    cr_assert(s != NULL);
    cr_assert_gt(c.live, before + (long long)strlen(s));
    yk_string_free(s);
    cr_assert_eq(c.live, before);

    c.fail_all = true;
    cr_assert_null(yk_graph_dump_json(g));
    cr_assert_eq(yk_last_status(cx), YK_ENOMEM);
    c.fail_all = false;
    yk_graph_end(g);
    yk_tensor_free(t);
    yk_ctx_free(cx);
    cr_assert_eq(c.live, 0);
}

/* ----------------------------------------------------------- tie report */

/*
 * The seed's three uses of one table W [V, D] (f64), and bag-only columns
 * E [V, D2]:
 *   use 1  embedding(seq, W)
 *   use 2  embedding_bag(bags, W), mean
 *   use 3  embedding_bag(bags3, cat([W, E], 1)), sum  (W and E via the cat)
 * L = sum_k sum(use_k * S_k), S_k fixed random. sparse makes every use ask
 * for a row-sparse gradient.
 */
enum { V = 6, D = 3, D2 = 2 };
enum { USE_EMB = 1, USE_BAG = 2, USE_EXT = 4, USE_ALL = 7 };

typedef struct three {
    yk_model *m;
    yk_param *W, *E;
    yk_tensor *seq, *bags, *offs, *bags3, *offs3, *S[3];
} three;

static yk_tensor *random_f64(int ndim, const int64_t *shape, uint64_t seed)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F64, ndim, shape);
    cr_assert(t != NULL);
    cr_assert_eq(yk_tensor_fill_normal(t, seed, 0, 1), YK_OK);
    return t;
}

static three three_make(void)
{
    three t;
    t.m = yk_model_new(ctx);
    t.W = yk_model_add(t.m, "W", YK_F64, 2, (int64_t[]){V, D});
    t.E = yk_model_add(t.m, "E", YK_F64, 2, (int64_t[]){V, D2});
    cr_assert(t.W && t.E);
    yk_tensor_fill_normal(yk_param_value(t.W), 1, 0, 1);
    yk_tensor_fill_normal(yk_param_value(t.E), 2, 0, 1);
    /* row 2 repeats within and across uses: the norm must be exact */
    t.seq = TI(ctx, SHAPE(2, 2), IDX(0, 2, 2, 5));
    t.bags = TI(ctx, SHAPE(5), IDX(1, 2, 2, 3, 4));
    t.offs = TI(ctx, SHAPE(2), IDX(0, 2));
    t.bags3 = TI(ctx, SHAPE(5), IDX(2, 3, 0, 0, 1));
    t.offs3 = TI(ctx, SHAPE(2), IDX(0, 3));
    t.S[0] = random_f64(3, (int64_t[]){2, 2, D}, 10);
    t.S[1] = random_f64(2, (int64_t[]){2, D}, 11);
    t.S[2] = random_f64(2, (int64_t[]){2, D + D2}, 12);
    return t;
}

static void three_free(three *t)
{
    yk_tensor *ts[] = {t->seq, t->bags, t->offs, t->bags3, t->offs3,
                       t->S[0], t->S[1], t->S[2]};
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++)
        yk_tensor_free(ts[k]);
    yk_model_free(t->m);
}

static yk_node *weighted_sum(yk_graph *g, yk_node *x, const yk_tensor *s)
{
    return yk_sum(g, yk_mul(g, x, yk_const(g, s)), 0, NULL, false);
}

static yk_node *plus(yk_graph *g, yk_node *acc, yk_node *term)
{
    return acc ? yk_add(g, acc, term) : term;
}

/* Builds the chosen uses into g and returns L. */
static yk_node *three_loss(yk_graph *g, three *t, int uses, bool sparse)
{
    yk_node *w = yk_param_node(g, t->W), *L = NULL;
    if (uses & USE_EMB) {
        yk_node *e = yk_embedding(g, yk_const(g, t->seq), w, YK_NO_PADDING,
                                  false, sparse);
        L = plus(g, L, weighted_sum(g, e, t->S[0]));
    }
    yk_bag_opts o = yk_bag_defaults();
    o.sparse = sparse;
    if (uses & USE_BAG) {
        yk_node *b = yk_embedding_bag(g, yk_const(g, t->bags), w,
                                      yk_const(g, t->offs), NULL, &o);
        L = plus(g, L, weighted_sum(g, b, t->S[1]));
    }
    if (uses & USE_EXT) {
        o.mode = YK_BAG_SUM;
        yk_node *wc = yk_cat(g, 2, (yk_node *[]){w, yk_param_node(g, t->E)},
                             1);
        yk_node *x = yk_embedding_bag(g, yk_const(g, t->bags3), wc,
                                      yk_const(g, t->offs3), NULL, &o);
        L = plus(g, L, weighted_sum(g, x, t->S[2]));
    }
    cr_assert(L != NULL, "%s", yk_last_error(ctx));
    return L;
}

static double grad_norm(yk_param *p)
{
    yk_tensor *d = yk_tensor_zeros(ctx, YK_F64, 2, yk_tensor_shape(
                                       yk_param_value(p)));
    cr_assert_eq(yk_param_grad_to_dense(p, d), YK_OK);
    double s = 0;
    for (int64_t k = 0; k < yk_tensor_numel(d); k++)
        s += yk_tensor_get(d, k) * yk_tensor_get(d, k);
    yk_tensor_free(d);
    return sqrt(s);
}

static yk_tensor *grad_copy(yk_param *p)
{
    yk_tensor *d = yk_tensor_zeros(ctx, YK_F64, 2, yk_tensor_shape(
                                       yk_param_value(p)));
    cr_assert_eq(yk_param_grad_to_dense(p, d), YK_OK);
    return d;
}

/* The norm of p's gradient from the chosen uses alone, in a graph of its
 * own. */
static double separate_norm(three *t, int uses, yk_param *p, bool sparse)
{
    yk_model_zero_grad(t->m);
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_eq(yk_backward(g, three_loss(g, t, uses, sparse)), YK_OK, "%s",
                 yk_last_error(ctx));
    yk_graph_end(g);
    return grad_norm(p);
}

static void expect_use(const yk_graph *g, int64_t i, const char *param,
                       const char *op, double norm)
{
    yk_tie_use u;
    cr_assert_eq(yk_tie_at(g, i, &u), YK_OK, "%s", yk_last_error(ctx));
    cr_assert_str_eq(u.param_name, param, "use %lld", (long long)i);
    cr_assert_str_eq(u.op, op, "use %lld", (long long)i);
    cr_assert_eq(u.node_id, yk_node_id(u.consumer));
    cr_assert_str_eq(yk_param_name(u.param), param);
    cr_assert_gt(norm, 0);
    cr_assert(fabs(u.norm - norm) <= 1e-12 * norm,
              "use %lld (%s by %s): norm %.17g, separately %.17g",
              (long long)i, param, op, u.norm, norm);
}

static void three_uses_are_reported(bool sparse)
{
    three t = three_make();
    double n_emb = separate_norm(&t, USE_EMB, t.W, sparse);
    double n_bag = separate_norm(&t, USE_BAG, t.W, sparse);
    double n_ext_w = separate_norm(&t, USE_EXT, t.W, sparse);
    double n_ext_e = separate_norm(&t, USE_EXT, t.E, sparse);

    /* all three uses, without the report: the reference gradient */
    yk_model_zero_grad(t.m);
    yk_graph *g0 = yk_graph_begin(ctx);
    cr_assert_eq(yk_backward(g0, three_loss(g0, &t, USE_ALL, sparse)), YK_OK);
    cr_assert_eq(yk_tie_count(g0), 0);
    yk_graph_end(g0);
    yk_grad_kind kind = yk_param_grad_kind(t.W);
    yk_tensor *gw = grad_copy(t.W), *ge = grad_copy(t.E);

    yk_model_zero_grad(t.m);
    yk_graph *g = yk_graph_begin(ctx);
    cr_assert_eq(yk_graph_set_tie_report(g, true), YK_OK);
    cr_assert_eq(yk_backward(g, three_loss(g, &t, USE_ALL, sparse)), YK_OK,
                 "%s", yk_last_error(ctx));
    /* W: embedding, embedding_bag, cat (then E through the same cat) */
    cr_assert_eq(yk_tie_count(g), 4);
    expect_use(g, 0, "W", "embedding", n_emb);
    expect_use(g, 1, "W", "embedding_bag", n_bag);
    expect_use(g, 2, "W", "cat", n_ext_w);
    expect_use(g, 3, "E", "cat", n_ext_e);
    yk_tie_use u;
    yk_tie_at(g, 2, &u);
    yk_node *via[2];
    cr_assert_eq(yk_node_consumers(u.consumer, 2, via), 1);
    cr_assert_str_eq(yk_node_op_name(via[0]), "embedding_bag");

    /* The recorded step's gradient is the unrecorded one, bit for bit:
     * row chunks are merged back in the order backward made them. */
    cr_assert_eq(yk_param_grad_kind(t.W), kind);
    yk_tensor *gw2 = grad_copy(t.W), *ge2 = grad_copy(t.E);
    cr_assert_eq(memcmp(yk_tensor_data(gw), yk_tensor_data(gw2),
                        yk_tensor_nbytes(gw)), 0, "W's gradient changed");
    cr_assert_eq(memcmp(yk_tensor_data(ge), yk_tensor_data(ge2),
                        yk_tensor_nbytes(ge)), 0, "E's gradient changed");
    yk_tensor *ts[] = {gw, ge, gw2, ge2};
    for (int k = 0; k < 4; k++)
        yk_tensor_free(ts[k]);
    yk_graph_end(g);
    three_free(&t);
}

Test(inspect, tie_report_three_uses_dense_gradient)
{
    three_uses_are_reported(false);
}

Test(inspect, tie_report_three_uses_sparse_gradient)
{
    three_uses_are_reported(true);
}

Test(inspect, tie_report_in_dumps_and_print)
{
    three t = three_make();
    yk_graph *g = yk_graph_begin(ctx);
    yk_graph_set_tie_report(g, true);
    cr_assert_eq(yk_backward(g, three_loss(g, &t, USE_ALL, false)), YK_OK);
    yk_tie_use cat_use, bag_use;
    yk_tie_at(g, 2, &cat_use);
    yk_tie_at(g, 1, &bag_use);
    yk_node *ext;
    yk_node_consumers(cat_use.consumer, 1, &ext);

    cJSON *j = json_of(g);
    cr_assert(cJSON_IsTrue(field(j, "backward_done")));
    cJSON *ties = field(j, "ties");
    cr_assert_eq(cJSON_GetArraySize(ties), 4);
    cJSON *t2 = cJSON_GetArrayItem(ties, 2);
    cr_assert_str_eq(str(t2, "param"), "W");
    cr_assert_str_eq(str(t2, "op"), "cat");
    cr_assert_eq(num(t2, "node"), (double)cat_use.node_id);
    cr_assert_eq(num(t2, "norm"), cat_use.norm); /* %.17g round-trips */
    cJSON *via = field(t2, "via");
    cr_assert_eq(cJSON_GetArraySize(via), 1);
    cr_assert_eq(num(cJSON_GetArrayItem(via, 0), "node"),
                 (double)yk_node_id(ext));
    cr_assert_eq(cJSON_GetArraySize(field(cJSON_GetArrayItem(ties, 0), "via")),
                 0);
    /* the cat of parameters is lazy: its [V, D + D2] value was never made */
    cJSON *cat_node = cJSON_GetArrayItem(field(j, "nodes"),
                                         (int)cat_use.node_id);
    cr_assert_str_eq(str(cat_node, "op"), "cat");
    cr_assert(cJSON_IsTrue(field(cat_node, "lazy")));
    cJSON_Delete(j);

    char *dot = dot_of(g);
    char edge[128];
    snprintf(edge, sizeof edge, "-> n%lld [label=\"weight\\n|grad| = %.4g\"",
             (long long)bag_use.node_id, bag_use.norm);
    expect_contains(dot, edge);
    free(dot);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(yk_tie_report_print(g, f), YK_OK);
    fclose(f);
    expect_contains(buf, "tie report: 2 parameters, 4 uses");
    expect_contains(buf, "  W: 3 uses\n");
    expect_contains(buf, "  E: 1 use\n");
    char line[128];
    snprintf(line, sizeof line, "#%lld cat via #%lld embedding_bag",
             (long long)cat_use.node_id, (long long)yk_node_id(ext));
    expect_contains(buf, line);
    free(buf);
    yk_graph_end(g);
    three_free(&t);
}

/* A table tied to an output projection: a row use (embedding) and a dense
 * use (linear). */
static yk_node *proj_loss(yk_graph *g, yk_param *W, const yk_tensor *seq,
                          const yk_tensor *h, const yk_tensor *S, int uses)
{
    yk_node *w = yk_param_node(g, W), *L = NULL;
    if (uses & 1) {
        yk_node *e = yk_embedding(g, yk_const(g, seq), w, YK_NO_PADDING,
                                  false, false);
        L = yk_sum(g, yk_mul(g, e, e), 0, NULL, false);
    }
    if (uses & 2) {
        yk_node *logits = yk_linear(g, yk_const(g, h), w, NULL); /* [2, V] */
        L = plus(g, L, weighted_sum(g, logits, S));
    }
    return L;
}

Test(inspect, tie_report_row_and_dense_uses)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){V, D});
    yk_tensor_fill_normal(yk_param_value(W), 3, 0, 1);
    yk_tensor *seq = TI(ctx, SHAPE(3), IDX(1, 1, 4));
    yk_tensor *h = random_f64(2, (int64_t[]){2, D}, 4);
    yk_tensor *S = random_f64(2, (int64_t[]){2, V}, 5);
    double n[2];
    for (int k = 0; k < 2; k++) {
        yk_model_zero_grad(m);
        yk_graph *g = yk_graph_begin(ctx);
        cr_assert_eq(yk_backward(g, proj_loss(g, W, seq, h, S, 1 << k)),
                     YK_OK, "%s", yk_last_error(ctx));
        yk_graph_end(g);
        n[k] = grad_norm(W);
    }
    yk_model_zero_grad(m);
    yk_graph *g0 = yk_graph_begin(ctx);
    cr_assert_eq(yk_backward(g0, proj_loss(g0, W, seq, h, S, 3)), YK_OK);
    yk_graph_end(g0);
    yk_tensor *ref = grad_copy(W);

    yk_model_zero_grad(m);
    yk_graph *g = yk_graph_begin(ctx);
    yk_graph_set_tie_report(g, true);
    cr_assert_eq(yk_backward(g, proj_loss(g, W, seq, h, S, 3)), YK_OK);
    cr_assert_eq(yk_tie_count(g), 2);
    expect_use(g, 0, "W", "embedding", n[0]);
    expect_use(g, 1, "W", "linear", n[1]);
    /* dense parts are summed in another order: equal up to rounding */
    yk_tensor *got = grad_copy(W);
    expect_close(got, (const double *)yk_tensor_data(ref), V * D, 1e-14,
                 1e-14);
    yk_tensor_free(got);
    yk_tensor_free(ref);
    yk_graph_end(g);
    yk_tensor_free(seq);
    yk_tensor_free(h);
    yk_tensor_free(S);
    yk_model_free(m);
}

Test(inspect, tie_report_one_op_reading_a_parameter_twice_is_one_use)
{
    /* L = sum(w * w): dL/dw = 2w, so the one use's norm is 2 |w|; hand
     * worked for w = (3, 4): |w| = 5, norm 10. */
    yk_model *m = yk_model_new(ctx);
    yk_param *w = param_with(m, "w", YK_F64, SHAPE(2), VALS(3, 4));
    yk_graph *g = yk_graph_begin(ctx);
    yk_graph_set_tie_report(g, true);
    yk_node *x = yk_param_node(g, w);
    cr_assert_eq(yk_backward(g, yk_sum(g, yk_mul(g, x, x), 0, NULL, false)),
                 YK_OK);
    cr_assert_eq(yk_tie_count(g), 1);
    expect_use(g, 0, "w", "mul", 10.0);
    EXPECT_VALUES(yk_param_grad(w), SHAPE(2), VALS(6, 8), 0);
    yk_graph_end(g);
    yk_model_free(m);
}

Test(inspect, tie_report_names_what_reads_a_narrowed_parameter)
{
    /* L = sum(narrow(W, 0, 0, 1)): the use is the narrow, via the sum; its
     * gradient is ones on row 0 of W [2, 3], norm sqrt(3) (hand worked). */
    yk_model *m = yk_model_new(ctx);
    yk_param *W = param_with(m, "W", YK_F64, SHAPE(2, 3),
                             VALS(1, 2, 3, 4, 5, 6));
    yk_graph *g = yk_graph_begin(ctx);
    yk_graph_set_tie_report(g, true);
    yk_node *row = yk_narrow(g, yk_param_node(g, W), 0, 0, 1);
    cr_assert_eq(yk_backward(g, yk_sum(g, row, 0, NULL, false)), YK_OK,
                 "%s", yk_last_error(ctx));
    cr_assert_eq(yk_tie_count(g), 1);
    expect_use(g, 0, "W", "narrow", sqrt(3.0));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    yk_tie_report_print(g, f);
    fclose(f);
    expect_contains(buf, "#1 narrow via #2 sum");
    free(buf);
    yk_graph_end(g);
    yk_model_free(m);
}

Test(inspect, tie_report_skips_frozen_parameters)
{
    /* L = sum(a * b) with b frozen: only a has a use (gradient b = (3, 4),
     * norm 5, hand worked). */
    yk_model *m = yk_model_new(ctx);
    yk_param *a = param_with(m, "a", YK_F64, SHAPE(2), VALS(1, 2));
    yk_param *b = param_with(m, "b", YK_F64, SHAPE(2), VALS(3, 4));
    yk_param_set_requires_grad(b, false);
    yk_graph *g = yk_graph_begin(ctx);
    yk_graph_set_tie_report(g, true);
    yk_node *y = yk_mul(g, yk_param_node(g, a), yk_param_node(g, b));
    cr_assert_eq(yk_backward(g, yk_sum(g, y, 0, NULL, false)), YK_OK);
    cr_assert_eq(yk_tie_count(g), 1);
    expect_use(g, 0, "a", "mul", 5.0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    yk_tie_report_print(g, f);
    fclose(f);
    expect_contains(buf, "  b: 0 uses (no grad)\n");
    free(buf);
    yk_graph_end(g);
    yk_model_free(m);
}

Test(inspect, tie_report_errors)
{
    small t = small_graph();
    cr_assert_eq(yk_graph_set_tie_report(NULL, true), YK_EINVAL);
    cr_assert_eq(yk_tie_count(NULL), 0);
    yk_tie_use u;
    cr_assert_eq(yk_tie_at(NULL, 0, &u), YK_EINVAL);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    yk_tie_report_print(t.g, f); /* report off */
    fflush(f);
    expect_contains(buf, "nothing recorded (call yk_graph_set_tie_report");
    yk_graph_set_tie_report(t.g, true);
    rewind(f);
    yk_tie_report_print(t.g, f);
    fclose(f);
    expect_contains(buf, "nothing recorded (backward has not run)");
    free(buf);

    cr_assert_eq(yk_backward(t.g, t.s), YK_OK);
    cr_assert_eq(yk_graph_set_tie_report(t.g, false), YK_ESTATE);
    expect_error(ctx, YK_ESTATE, "yk_graph_set_tie_report: backward already");
    cr_assert_eq(yk_tie_count(t.g), 1);
    cr_assert_eq(yk_tie_at(t.g, 1, &u), YK_ERANGE);
    expect_error(ctx, YK_ERANGE, "yk_tie_at: i = 1 is out of range");
    cr_assert_eq(yk_tie_at(t.g, -1, &u), YK_ERANGE);
    expect_error(ctx, YK_ERANGE, "i = -1");
    cr_assert_eq(yk_tie_at(t.g, 0, NULL), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "yk_tie_at: out is NULL");
    cr_assert_eq(yk_tie_report_print(NULL, stdout), YK_EINVAL);
    cr_assert_eq(yk_tie_report_print(t.g, NULL), YK_EINVAL);
    expect_error(ctx, YK_EINVAL, "yk_tie_report_print: f is NULL");
    small_free(&t);
}

Test(inspect, tie_report_out_of_memory_names_the_parameter)
{
    /* The norm of a row use needs a buffer the size of the parameter
     * (3 x 2 f64 = 48 bytes); nothing else in backward asks for exactly
     * that, so failing that size fails only the report's buffer. */
    counting c = {0};
    yk_ctx *cx = yk_ctx_new_with_alloc(size_failing_alloc, &c);
    yk_model *m = yk_model_new(cx);
    yk_param *W = yk_model_add(m, "table", YK_F64, 2, (int64_t[]){3, 2});
    yk_tensor *idx = yk_tensor_from(cx, YK_I64, 1, (int64_t[]){2},
                                    (int64_t[]){2, 0});
    yk_graph *g = yk_graph_begin(cx);
    yk_graph_set_tie_report(g, true);
    yk_node *e = yk_embedding(g, yk_const(g, idx), yk_param_node(g, W),
                              YK_NO_PADDING, false, false);
    yk_node *L = yk_sum(g, e, 0, NULL, false);
    cr_assert(L != NULL);
    c.fail_size = 48;
    cr_assert_eq(yk_backward(g, L), YK_ENOMEM);
    cr_assert_eq(yk_last_status(cx), YK_ENOMEM);
    cr_assert(strstr(yk_last_error(cx), "\"table\"") != NULL, "%s",
              yk_last_error(cx));
    c.fail_size = 0;
    yk_graph_end(g);
    yk_tensor_free(idx);
    yk_model_free(m);
    yk_ctx_free(cx);
    cr_assert_eq(c.live, 0, "leaked %lld bytes", c.live);
}
