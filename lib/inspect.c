/*
 * inspect.c -- walking a graph, DOT and JSON dumps, and the tie report.
 *
 * Everything here only reads a graph, except the tie report's recording
 * hook (yk__backward_recording), which graph.c's backward calls for each
 * node when the report is on: it moves the gradients of the node's
 * parameter inputs aside, runs the node's backward, takes the norm of what
 * arrived, and merges it back so that the parameter's gradient ends as it
 * would have without the report.
 */
#include "engine.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* ================================================================ walking */

int64_t yk_graph_node_count(const yk_graph *g) { return g ? g->n_nodes : 0; }

yk_node *yk_graph_node_at(const yk_graph *g, int64_t i)
{
    if (!g || i < 0 || i >= g->n_nodes)
        return NULL;
    return g->nodes[i];
}

int64_t yk_node_id(const yk_node *x) { return x ? x->id : -1; }
int yk_node_n_inputs(const yk_node *x) { return x ? x->n_inputs : 0; }
yk_param *yk_node_param(const yk_node *x) { return x ? x->param : NULL; }

yk_node *yk_node_input(const yk_node *x, int i)
{
    if (!x || i < 0 || i >= x->n_inputs)
        return NULL;
    return x->inputs[i];
}

const char *yk_node_input_name(const yk_node *x, int i, char *buf,
                               size_t size)
{
    if (!buf || size == 0)
        return buf;
    buf[0] = '\0';
    if (!x || !x->op || i < 0 || i >= x->n_inputs)
        return buf;
    /* A variadic op has one argument, a list; its inputs are its items. */
    if (x->op->variadic)
        snprintf(buf, size, "%s[%d]", x->op->input_names[0], i);
    else if (i < x->op->n_inputs && x->op->input_names[i])
        snprintf(buf, size, "%s", x->op->input_names[i]);
    else
        snprintf(buf, size, "input%d", i);
    return buf;
}

static bool reads(const yk_node *y, const yk_node *x)
{
    for (int i = 0; i < y->n_inputs; i++)
        if (y->inputs[i] == x)
            return true;
    return false;
}

int64_t yk_node_consumers(const yk_node *x, int64_t max, yk_node **out)
{
    if (!x)
        return -1;
    const yk_graph *g = x->g;
    int64_t n = 0;
    /* Consumers are made after x: start the scan there. */
    for (int64_t k = x->id + 1; k < g->n_nodes; k++) {
        if (!reads(g->nodes[k], x))
            continue;
        if (out && n < max)
            out[n] = g->nodes[k];
        n++;
    }
    return n;
}

/* ============================================================ tie report */

yk_status yk_graph_set_tie_report(yk_graph *g, bool on)
{
    if (!g)
        return YK_EINVAL;
    if (g->backward_done)
        return yk__error(g->ctx, YK_ESTATE, "yk_graph_set_tie_report: "
                         "backward already ran on this graph; turn the "
                         "report on before yk_backward");
    g->tie_report = on;
    return YK_OK;
}

/* Input i of x gets a record of its own: a parameter leaf that needs a
 * gradient and is not an earlier input too (yk_mul(w, w) is one use). */
static bool is_param_use(const yk_node *x, int i)
{
    const yk_node *leaf = x->inputs[i];
    if (!leaf || !leaf->param || !leaf->requires_grad)
        return false;
    for (int j = 0; j < i; j++)
        if (x->inputs[j] == leaf)
            return false;
    return true;
}

static double sum_squares(yk_dtype dt, const void *v, int64_t n)
{
    double s = 0;
    if (dt == YK_F32)
        for (int64_t k = 0; k < n; k++)
            s += (double)((const float *)v)[k] * ((const float *)v)[k];
    else
        for (int64_t k = 0; k < n; k++)
            s += ((const double *)v)[k] * ((const double *)v)[k];
    return s;
}

/* The norm of the gradient that reached leaf in one backward: its dense
 * part plus its row chunks. Rows may repeat, so they are scattered into a
 * temporary parameter-sized buffer for an exact norm. False on OOM. */
static bool arrived_norm(yk_graph *g, const yk_node *leaf, double *norm)
{
    const yk_tensor *v = &leaf->value;
    const yk__grad *gr = &leaf->grad;
    if (!gr->chunks || v->numel == 0) {
        *norm = gr->dense ? sqrt(sum_squares(v->dtype, gr->dense, v->numel))
                          : 0.0;
        return true;
    }
    size_t bytes = yk_tensor_nbytes(v);
    void *tmp = yk__alloc(g->ctx, bytes);
    if (!tmp) {
        yk__fail(g, YK_ENOMEM, "tie report: out of memory for a %zu-byte "
                 "buffer to take the norm of parameter \"%s\"'s gradient",
                 bytes, leaf->param->name);
        return false;
    }
    if (gr->dense)
        memcpy(tmp, gr->dense, bytes);
    yk__scatter_rows(v->dtype, tmp, yk__rowlen(v), gr->chunks);
    *norm = sqrt(sum_squares(v->dtype, tmp, v->numel));
    yk__free(g->ctx, tmp, bytes);
    return true;
}

/* leaf's gradient += before: dense parts added (into before's buffer),
 * chunk lists joined with the new chunks first (the order an unrecorded
 * backward would have), flags OR-ed. */
static void merge_back(yk_node *leaf, const yk__grad *before)
{
    yk__grad *now = &leaf->grad;
    if (before->dense && now->dense)
        yk__add_into(leaf->value.dtype, before->dense, now->dense,
                 leaf->value.numel);
    if (before->dense)
        now->dense = before->dense;
    yk__rowchunk **tail = &now->chunks;
    while (*tail)
        tail = &(*tail)->next;
    *tail = before->chunks;
    now->touched |= before->touched;
    now->want_dense |= before->want_dense;
}

static yk__tie_use *new_record(yk_graph *g, yk_node *leaf, yk_node *x)
{
    double norm;
    if (!arrived_norm(g, leaf, &norm))
        return NULL;
    yk__tie_use *r = yk__arena_alloc(g, sizeof *r);
    if (!r)
        return NULL;
    r->leaf = leaf;
    r->consumer = x;
    r->norm = norm;
    return r;
}

yk_status yk__backward_recording(yk_graph *g, yk_node *x, yk__backward_fn run)
{
    bool any = false;
    for (int i = 0; i < x->n_inputs && !any; i++)
        any = is_param_use(x, i);
    if (!any)
        return run(g, x);
    yk__grad *before = yk__arena_alloc(g, (size_t)x->n_inputs * sizeof *before);
    if (!before)
        return g->status;
    for (int i = 0; i < x->n_inputs; i++) {
        if (is_param_use(x, i)) {
            before[i] = x->inputs[i]->grad;
            memset(&x->inputs[i]->grad, 0, sizeof x->inputs[i]->grad);
        }
    }
    yk_status s = run(g, x);
    /* x's records, in input order, go in front of the later nodes' ones:
     * backward walks ids downwards, so the list ends in id order. */
    yk__tie_use *first = NULL, **tail = &first;
    int64_t n = 0;
    for (int i = 0; i < x->n_inputs; i++) {
        if (!is_param_use(x, i))
            continue;
        yk_node *leaf = x->inputs[i];
        if (s == YK_OK && leaf->grad.touched) {
            yk__tie_use *r = new_record(g, leaf, x);
            if (r) {
                *tail = r;
                tail = &r->next;
                n++;
            } else {
                s = g->status;
            }
        }
        merge_back(leaf, &before[i]); /* always: leave the gradient whole */
    }
    *tail = g->ties;
    g->ties = first;
    g->n_ties += n;
    return s;
}

int64_t yk_tie_count(const yk_graph *g) { return g ? g->n_ties : 0; }

static const yk__tie_use *tie_record(const yk_graph *g, int64_t i)
{
    const yk__tie_use *r = g->ties;
    while (r && i-- > 0)
        r = r->next;
    return r;
}

yk_status yk_tie_at(const yk_graph *g, int64_t i, yk_tie_use *out)
{
    if (!g)
        return YK_EINVAL;
    if (!out)
        return yk__error(g->ctx, YK_EINVAL, "yk_tie_at: out is NULL");
    if (i < 0 || i >= g->n_ties)
        return yk__error(g->ctx, YK_ERANGE, "yk_tie_at: i = %lld is out of "
                         "range: the graph recorded %lld uses", (long long)i,
                         (long long)g->n_ties);
    const yk__tie_use *r = tie_record(g, i);
    out->param = r->leaf->param;
    out->param_name = r->leaf->param->name;
    out->consumer = r->consumer;
    out->node_id = r->consumer->id;
    out->op = yk_node_op_name(r->consumer);
    out->norm = r->norm;
    return YK_OK;
}

/* The record of leaf's use by x, or NULL. */
static const yk__tie_use *find_use(const yk_graph *g, const yk_node *leaf,
                                   const yk_node *x)
{
    for (const yk__tie_use *r = g->ties; r; r = r->next)
        if (r->leaf == leaf && r->consumer == x)
            return r;
    return NULL;
}

/* Ops that only rearrange their inputs: a use by one of them is reported
 * with the ops that read its result ("via"). */
static bool passes_through(const yk_node *x)
{
    return x->op == &yk_op_cat || x->op == &yk_op_reshape ||
           x->op == &yk_op_narrow;
}

/* ---------------------------------------------------------- writing */

/* fprintf that remembers a failure, so callers check once at the end. */
typedef struct writer {
    FILE *f;
    bool failed;
} writer;

__attribute__((format(printf, 2, 3)))
static void put(writer *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(w->f, fmt, ap) < 0)
        w->failed = true;
    va_end(ap);
}

static yk_status finish(const yk_graph *g, writer *w, const char *fn)
{
    if (fflush(w->f) != 0 || ferror(w->f))
        w->failed = true;
    if (w->failed)
        return yk__error(g->ctx, YK_EIO, "%s: writing to the file failed",
                         fn);
    return YK_OK;
}

static void print_use(const yk_graph *g, writer *w, const yk__tie_use *r)
{
    put(w, "    #%lld %s", (long long)r->consumer->id,
        yk_node_op_name(r->consumer));
    if (passes_through(r->consumer)) {
        const yk_node *x = r->consumer;
        for (int64_t k = x->id + 1; k < g->n_nodes; k++)
            if (reads(g->nodes[k], x))
                put(w, " via #%lld %s", (long long)k,
                    yk_node_op_name(g->nodes[k]));
    }
    put(w, "  |grad| = %.6g\n", r->norm);
}

static void print_param(const yk_graph *g, writer *w, const yk_node *leaf)
{
    int64_t n = 0;
    for (const yk__tie_use *r = g->ties; r; r = r->next)
        n += r->leaf == leaf;
    put(w, "  %s: %lld use%s%s\n", leaf->param->name, (long long)n,
        n == 1 ? "" : "s", leaf->requires_grad ? "" : " (no grad)");
    for (const yk__tie_use *r = g->ties; r; r = r->next)
        if (r->leaf == leaf)
            print_use(g, w, r);
}

yk_status yk_tie_report_print(const yk_graph *g, FILE *f)
{
    if (!g)
        return YK_EINVAL;
    if (!f)
        return yk__error(g->ctx, YK_EINVAL, "yk_tie_report_print: f is NULL");
    writer w = {f, false};
    if (!g->tie_report)
        put(&w, "tie report: nothing recorded (call yk_graph_set_tie_report"
            "(g, true) before yk_backward)\n");
    else if (!g->backward_done)
        put(&w, "tie report: nothing recorded (backward has not run)\n");
    else {
        put(&w, "tie report: %d parameter%s, %lld use%s\n", g->n_params,
            g->n_params == 1 ? "" : "s", (long long)g->n_ties,
            g->n_ties == 1 ? "" : "s");
        for (int i = 0; i < g->n_params; i++)
            print_param(g, &w, g->param_nodes[i]);
    }
    return finish(g, &w, "yk_tie_report_print");
}

/* ================================================================= DOT */

/* Writes s inside a DOT double-quoted string. */
static void put_escaped(writer *w, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            put(w, "\\%c", *s);
        else if (*s == '\n')
            put(w, "\\n");
        else
            put(w, "%c", *s);
    }
}

static void dot_node(writer *w, const yk_node *x)
{
    char shape[128];
    yk_shape_format(&x->value, shape, sizeof shape);
    put(w, "  n%lld [label=\"#%lld %s", (long long)x->id, (long long)x->id,
        yk_node_op_name(x));
    if (x->param) {
        put(w, "\\n");
        put_escaped(w, x->param->name);
    }
    put(w, "\\n%s %s%s\"", shape, yk_dtype_name(x->value.dtype),
        x->lazy ? " (lazy)" : "");
    if (x->param)
        put(w, ", shape=box, style=\"filled%s\", fillcolor=\"#ffe9a8\"",
            x->requires_grad ? "" : ",dashed");
    else if (x->leaf_kind)
        put(w, ", shape=box, style=filled, fillcolor=\"#eeeeee\"");
    else if (!x->requires_grad)
        put(w, ", style=dashed");
    put(w, "];\n");
}

static void dot_edges(const yk_graph *g, writer *w, const yk_node *x)
{
    for (int i = 0; i < x->n_inputs; i++) {
        const yk_node *in = x->inputs[i];
        if (!in)
            continue;
        char name[64];
        yk_node_input_name(x, i, name, sizeof name);
        put(w, "  n%lld -> n%lld [label=\"", (long long)in->id,
            (long long)x->id);
        put_escaped(w, name);
        const yk__tie_use *r = in->param ? find_use(g, in, x) : NULL;
        if (r)
            put(w, "\\n|grad| = %.4g", r->norm);
        put(w, in->param ? "\", color=\"#b35900\"];\n" : "\"];\n");
    }
}

yk_status yk_graph_dump_dot(const yk_graph *g, FILE *f)
{
    if (!g)
        return YK_EINVAL;
    if (!f)
        return yk__error(g->ctx, YK_EINVAL, "yk_graph_dump_dot: f is NULL");
    writer w = {f, false};
    put(&w, "digraph yoke {\n  rankdir=LR;\n  node [fontname=\"monospace\"];"
        "\n  edge [fontname=\"monospace\", fontsize=10];\n");
    for (int64_t i = 0; i < g->n_nodes; i++)
        dot_node(&w, g->nodes[i]);
    for (int64_t i = 0; i < g->n_nodes; i++)
        dot_edges(g, &w, g->nodes[i]);
    put(&w, "}\n");
    return finish(g, &w, "yk_graph_dump_dot");
}

/* ================================================================ JSON */

/* Strings handed out are allocated through the context with this header in
 * front, so that yk_string_free needs nothing but the string. */
typedef struct string_header {
    yk_ctx *ctx;
    size_t size;
} string_header;

static char *string_from(yk_ctx *ctx, const char *s)
{
    size_t size = sizeof(string_header) + strlen(s) + 1;
    string_header *h = yk__alloc(ctx, size);
    if (!h)
        return NULL;
    h->ctx = ctx;
    h->size = size;
    char *out = (char *)(h + 1);
    memcpy(out, s, strlen(s) + 1);
    return out;
}

void yk_string_free(char *s)
{
    if (!s)
        return;
    string_header *h = (string_header *)s - 1;
    yk__free(h->ctx, h, h->size);
}

static bool add_shape(cJSON *o, const yk_tensor *t)
{
    cJSON *a = cJSON_AddArrayToObject(o, "shape");
    if (!a)
        return false;
    for (int k = 0; k < t->ndim; k++) {
        cJSON *d = cJSON_CreateNumber((double)t->shape[k]);
        if (!d || !cJSON_AddItemToArray(a, d)) {
            cJSON_Delete(d);
            return false;
        }
    }
    return true;
}

static bool add_node_ref(cJSON *array, const yk_node *x)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(array, o)) {
        cJSON_Delete(o);
        return false;
    }
    return cJSON_AddNumberToObject(o, "node", (double)x->id) &&
           cJSON_AddStringToObject(o, "op", yk_node_op_name(x));
}

static bool add_input_ids(cJSON *o, const yk_node *x)
{
    cJSON *a = cJSON_AddArrayToObject(o, "inputs");
    if (!a)
        return false;
    for (int i = 0; i < x->n_inputs; i++) {
        cJSON *v = x->inputs[i] ? cJSON_CreateNumber((double)x->inputs[i]->id)
                                : cJSON_CreateNull();
        if (!v || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            return false;
        }
    }
    return true;
}

static bool json_node(cJSON *nodes, const yk_node *x)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(nodes, o)) {
        cJSON_Delete(o);
        return false;
    }
    return cJSON_AddNumberToObject(o, "id", (double)x->id) &&
           cJSON_AddStringToObject(o, "op", yk_node_op_name(x)) &&
           (x->param ? cJSON_AddStringToObject(o, "param", x->param->name)
                     : cJSON_AddNullToObject(o, "param")) &&
           cJSON_AddStringToObject(o, "dtype", yk_dtype_name(x->value.dtype)) &&
           add_shape(o, &x->value) &&
           cJSON_AddBoolToObject(o, "requires_grad", x->requires_grad) &&
           cJSON_AddBoolToObject(o, "lazy", x->lazy) &&
           add_input_ids(o, x);
}

static bool json_edges(cJSON *edges, const yk_node *x)
{
    for (int i = 0; i < x->n_inputs; i++) {
        if (!x->inputs[i])
            continue;
        char name[64];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(edges, o)) {
            cJSON_Delete(o);
            return false;
        }
        if (!cJSON_AddNumberToObject(o, "from", (double)x->inputs[i]->id) ||
            !cJSON_AddNumberToObject(o, "to", (double)x->id) ||
            !cJSON_AddStringToObject(o, "input",
                                     yk_node_input_name(x, i, name,
                                                        sizeof name)))
            return false;
    }
    return true;
}

static bool json_param(cJSON *params, const yk_node *leaf)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(params, o)) {
        cJSON_Delete(o);
        return false;
    }
    return cJSON_AddStringToObject(o, "name", leaf->param->name) &&
           cJSON_AddNumberToObject(o, "node", (double)leaf->id) &&
           cJSON_AddStringToObject(o, "dtype",
                                   yk_dtype_name(leaf->value.dtype)) &&
           add_shape(o, &leaf->value) &&
           cJSON_AddBoolToObject(o, "requires_grad", leaf->requires_grad);
}

static bool json_tie(const yk_graph *g, cJSON *ties, const yk__tie_use *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(ties, o)) {
        cJSON_Delete(o);
        return false;
    }
    cJSON *via;
    if (!cJSON_AddStringToObject(o, "param", r->leaf->param->name) ||
        !cJSON_AddNumberToObject(o, "node", (double)r->consumer->id) ||
        !cJSON_AddStringToObject(o, "op", yk_node_op_name(r->consumer)) ||
        !cJSON_AddNumberToObject(o, "norm", r->norm) ||
        !(via = cJSON_AddArrayToObject(o, "via")))
        return false;
    if (!passes_through(r->consumer))
        return true;
    for (int64_t k = r->consumer->id + 1; k < g->n_nodes; k++)
        if (reads(g->nodes[k], r->consumer) && !add_node_ref(via, g->nodes[k]))
            return false;
    return true;
}

static bool json_graph(const yk_graph *g, cJSON *root)
{
    cJSON *nodes, *edges, *params, *ties;
    if (!cJSON_AddStringToObject(root, "status", yk_status_name(g->status)) ||
        !cJSON_AddBoolToObject(root, "backward_done", g->backward_done) ||
        !(nodes = cJSON_AddArrayToObject(root, "nodes")) ||
        !(edges = cJSON_AddArrayToObject(root, "edges")) ||
        !(params = cJSON_AddArrayToObject(root, "params")) ||
        !(ties = cJSON_AddArrayToObject(root, "ties")))
        return false;
    for (int64_t i = 0; i < g->n_nodes; i++)
        if (!json_node(nodes, g->nodes[i]) || !json_edges(edges, g->nodes[i]))
            return false;
    for (int i = 0; i < g->n_params; i++)
        if (!json_param(params, g->param_nodes[i]))
            return false;
    for (const yk__tie_use *r = g->ties; r; r = r->next)
        if (!json_tie(g, ties, r))
            return false;
    return true;
}

char *yk_graph_dump_json(const yk_graph *g)
{
    if (!g)
        return NULL;
    /* cJSON allocates with its own (malloc) hooks; only the string handed
     * out goes through the context's allocator. */
    cJSON *root = cJSON_CreateObject();
    char *text = root && json_graph(g, root) ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        yk__error(g->ctx, YK_ENOMEM, "yk_graph_dump_json: out of memory "
                  "building the JSON of a graph of %lld nodes",
                  (long long)g->n_nodes);
        return NULL;
    }
    char *out = string_from(g->ctx, text);
    cJSON_free(text);
    return out;
}
