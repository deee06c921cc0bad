/*
 * graph.c -- the step arena, nodes, and reverse-mode backward.
 *
 * Every node and activation of a step lives in the graph's arena and is
 * freed by yk_graph_end. Nodes are numbered in creation order, which is a
 * topological order, so backward walks them from the last to the first.
 * All gradient accumulation goes through yk__grad_dense / yk__grad_rows.
 */
#include "engine.h"

#include <math.h>
#include <string.h>

#define ARENA_CHUNK (1u << 20) /* 1 MiB; bigger requests get their own */
#define ALIGN 64

/* ---------------------------------------------------------------- arena */

static size_t chunk_header(void)
{
    return (sizeof(yk__arena_chunk) + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

/* The first ALIGN-aligned byte after the chunk's header. The allocator hook
 * only promises 16-byte alignment, so chunks are over-allocated by ALIGN. */
static char *chunk_start(yk__arena_chunk *c)
{
    uintptr_t p = (uintptr_t)c + chunk_header();
    return (char *)((p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
}

static size_t chunk_total(size_t size)
{
    return chunk_header() + size + ALIGN;
}

/* The size of a new chunk for a request of size bytes: ARENA_CHUNK, or a
 * big request rounded up to a multiple of 1/8 of its power of two, so a
 * step that needs a little more than the last one (one more distinct row)
 * still fits in the chunk the last one left. */
static size_t chunk_size_for(size_t size)
{
    if (size <= ARENA_CHUNK)
        return ARENA_CHUNK;
    size_t step = ARENA_CHUNK >> 3;
    while (step <= size >> 4)
        step <<= 1;
    return size + step - 1 < size ? size : (size + step - 1) / step * step;
}

/* The smallest spare chunk that holds want bytes and is not more than
 * twice that, of the same kind (an ordinary chunk for small requests, a
 * big block's own chunk for a big block), unlinked from the context's
 * list; NULL when there is none. */
static yk__arena_chunk *take_spare(yk_ctx *ctx, size_t want)
{
    yk__arena_chunk **best = NULL;
    for (yk__arena_chunk **pc = &ctx->spare; *pc; pc = &(*pc)->next) {
        size_t have = (*pc)->size;
        if (have >= want && have / 2 <= want &&
            (have > ARENA_CHUNK) == (want > ARENA_CHUNK) &&
            (!best || have < (*best)->size))
            best = pc;
    }
    if (!best)
        return NULL;
    yk__arena_chunk *c = *best;
    *best = c->next;
    return c;
}

static yk__arena_chunk *new_chunk(yk_graph *g, size_t size)
{
    size_t want = chunk_size_for(size);
    yk__arena_chunk *c = take_spare(g->ctx, want);
    if (!c)
        c = yk__chunk_new(g->ctx, want);
    if (!c) {
        yk__fail(g, YK_ENOMEM, "out of memory: the graph needs %zu more "
                 "bytes (it uses %zu)", size, g->bytes);
        return NULL;
    }
    c->used = 0;
    if (c->size > ARENA_CHUNK && g->chunks) {
        /* A big block gets a chunk of its own, kept under the current
         * chunk so that small requests go on filling that one. */
        c->next = g->chunks->next;
        g->chunks->next = c;
    } else {
        c->next = g->chunks;
        g->chunks = c;
    }
    return c;
}

void *yk__arena_alloc_raw(yk_graph *g, size_t size)
{
    size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    yk__arena_chunk *c = g->chunks;
    if (!c || c->size - c->used < size) {
        c = new_chunk(g, size);
        if (!c)
            return NULL;
    }
    void *p = chunk_start(c) + c->used;
    c->used += size;
    g->bytes += size;
    return p;
}

void *yk__arena_alloc(yk_graph *g, size_t size)
{
    void *p = yk__arena_alloc_raw(g, size);
    if (p)
        memset(p, 0, size);
    return p;
}

/* ------------------------------------------------ chunks that move */

yk__arena_chunk *yk__chunk_new(yk_ctx *ctx, size_t size)
{
    yk__arena_chunk *c = size <= SIZE_MAX - chunk_total(0)
                             ? ctx->alloc(ctx->ud, NULL, 0, chunk_total(size))
                             : NULL;
    if (!c) {
        yk__error(ctx, YK_ENOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void yk__chunk_free(yk_ctx *ctx, yk__arena_chunk *c)
{
    if (c)
        ctx->alloc(ctx->ud, c, chunk_total(c->size), 0);
}

void *yk__chunk_data(yk__arena_chunk *c) { return c ? chunk_start(c) : NULL; }

yk__arena_chunk *yk__arena_take_block(yk_graph *g, const void *block,
                                      size_t size)
{
    size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    for (yk__arena_chunk **pc = &g->chunks; *pc; pc = &(*pc)->next) {
        yk__arena_chunk *c = *pc;
        if (chunk_start(c) == block && c->used == size &&
            c->size > ARENA_CHUNK) {
            *pc = c->next;
            c->next = NULL;
            return c;
        }
    }
    return NULL;
}

static void keep_spare(yk_ctx *ctx, yk__arena_chunk *c)
{
    c->next = ctx->spare;
    ctx->spare = c;
}

bool yk__arena_offer(yk_ctx *ctx, yk__arena_chunk *c)
{
    if (c->size <= ARENA_CHUNK || ctx->live_models <= 0)
        return false;
    keep_spare(ctx, c);
    return true;
}

void yk__arena_release(yk_ctx *ctx)
{
    yk__arena_chunk *c = ctx->spare;
    while (c) {
        yk__arena_chunk *next = c->next;
        yk__chunk_free(ctx, c);
        c = next;
    }
    ctx->spare = NULL;
}

/* The graph's chunks become the context's spares while a model lives to
 * release them; spares this graph did not take are let go, so the cache
 * holds about one step's arena. (Handed back to malloc, a step's chunks
 * were trimmed off the heap and faulted in again next step: ~700 page
 * faults a step for the bag benchmark.) */
static void arena_free(yk_graph *g)
{
    yk_ctx *ctx = g->ctx;
    yk__arena_release(ctx);
    yk__arena_chunk *c = g->chunks;
    while (c) {
        yk__arena_chunk *next = c->next;
        if (ctx->live_models > 0)
            keep_spare(ctx, c);
        else
            yk__chunk_free(ctx, c);
        c = next;
    }
    g->chunks = NULL;
}

/* ---------------------------------------------------------- check_finite */

yk_status yk_graph_set_check_finite(yk_graph *g, bool on)
{
    if (!g)
        return YK_EINVAL;
    g->check_finite = on;
    return YK_OK;
}

/* The first element of t that is NaN or +-Inf, or -1 (also for i64 and
 * for a lazy node's unmade value: a cat of finite parts is finite). */
static int64_t first_non_finite(const yk_tensor *t)
{
    if (!t->data)
        return -1;
    if (t->dtype == YK_F32) {
        const float *v = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            if (!isfinite(v[i]))
                return i;
    } else if (t->dtype == YK_F64) {
        const double *v = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            if (!isfinite(v[i]))
                return i;
    }
    return -1;
}

static yk_status fail_non_finite(yk_graph *g, const yk_node *x, int64_t i)
{
    double v = yk_tensor_get(&x->value, i);
    const char *what = isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf";
    long long id = (long long)x->id, at = (long long)i;
    if (x->op)
        yk__fail(g, YK_EINVAL, "check_finite: op \"%s\" (node %lld) "
                 "produced %s at element %lld", x->op->name, id, what, at);
    else if (x->param)
        yk__fail(g, YK_EINVAL, "check_finite: parameter \"%s\" (node %lld) "
                 "holds %s at element %lld", x->param->name, id, what, at);
    else
        yk__fail(g, YK_EINVAL, "check_finite: the constant of node %lld "
                 "holds %s at element %lld", id, what, at);
    return g->status;
}

/* Checks the finished nodes [n_checked, upto) in creation order, so the
 * first non-finite value found is the first one made. An op computes its
 * output after making its node, so node k is finished once node k + 1 is
 * asked for, or once a value, backward or the status is asked for. */
static yk_status check_pending(yk_graph *g, int64_t upto)
{
    if (!g->check_finite)
        return YK_OK;
    if (g->status != YK_OK)
        return g->status;
    while (g->n_checked < upto) {
        const yk_node *x = g->nodes[g->n_checked++];
        int64_t i = first_non_finite(&x->value);
        if (i >= 0)
            return fail_non_finite(g, x, i);
    }
    return YK_OK;
}

/* ---------------------------------------------------------------- graph */

yk_graph *yk_graph_begin(yk_ctx *ctx)
{
    if (!ctx)
        return NULL;
    yk_graph *g = yk__alloc(ctx, sizeof *g);
    if (!g)
        return NULL;
    g->ctx = ctx;
    g->id = ctx->next_graph_id++;
    g->grad_enabled = true;
    return g;
}

void yk_graph_end(yk_graph *g)
{
    if (!g)
        return;
    yk_ctx *ctx = g->ctx;
    arena_free(g);
    yk__free(ctx, g->nodes, (size_t)g->nodes_cap * sizeof *g->nodes);
    yk__free(ctx, g, sizeof *g);
}

yk_status yk_graph_status(const yk_graph *g)
{
    if (!g)
        return YK_EINVAL;
    if (g->check_finite) /* finishes the check of the last op */
        check_pending((yk_graph *)g, g->n_nodes);
    return g->status;
}
yk_ctx *yk_graph_ctx(const yk_graph *g) { return g ? g->ctx : NULL; }
size_t yk_graph_bytes(const yk_graph *g) { return g ? g->bytes : 0; }

void yk_graph_set_grad_enabled(yk_graph *g, bool on)
{
    if (g)
        g->grad_enabled = on;
}

yk_node *yk__fail(yk_graph *g, yk_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yk__verror(g->ctx, code, fmt, ap);
    va_end(ap);
    if (g->status == YK_OK)
        g->status = code;
    return NULL;
}

bool yk__inputs_ok(yk_graph *g, const char *op, int n, yk_node *const *in)
{
    if (!g)
        return false;
    if (g->status != YK_OK)
        return false; /* sticky: the first error's message stays */
    for (int i = 0; i < n; i++) {
        if (!in || !in[i]) {
            yk__fail(g, YK_EINVAL, "%s: input %d is NULL", op, i);
            return false;
        }
        if (in[i]->g != g) {
            yk__fail(g, YK_EINVAL, "%s: input %d belongs to another graph",
                     op, i);
            return false;
        }
    }
    return true;
}

static yk_node *node_alloc(yk_graph *g, int n_inputs)
{
    if (check_pending(g, g->n_nodes) != YK_OK)
        return NULL;
    if (g->n_nodes == g->nodes_cap) {
        int64_t cap = g->nodes_cap ? 2 * g->nodes_cap : 64;
        yk_node **a = yk__realloc(g->ctx, g->nodes,
                                  (size_t)g->nodes_cap * sizeof *a,
                                  (size_t)cap * sizeof *a);
        if (!a)
            return yk__fail(g, YK_ENOMEM, "out of memory growing the graph "
                            "to %lld nodes", (long long)cap);
        g->nodes = a;
        g->nodes_cap = cap;
    }
    yk_node *x = yk__arena_alloc(g, sizeof *x);
    if (!x)
        return NULL;
    if (n_inputs > 0) {
        x->inputs = yk__arena_alloc(g, (size_t)n_inputs * sizeof *x->inputs);
        if (!x->inputs)
            return NULL;
    }
    x->g = g;
    x->n_inputs = n_inputs;
    x->id = g->n_nodes;
    g->nodes[g->n_nodes++] = x;
    return x;
}

static yk_node *op_node(yk_graph *g, const yk_op_def *op, int n,
                        yk_node *const *inputs, yk_dtype dt, int ndim,
                        const int64_t *shape, bool lazy)
{
    int64_t numel;
    if (yk__shape_check(g->ctx, op->name, dt, ndim, shape, &numel)) {
        if (g->status == YK_OK)
            g->status = g->ctx->status;
        return NULL;
    }
    yk_node *x = node_alloc(g, n);
    if (!x)
        return NULL;
    x->op = op;
    yk__tensor_init(&x->value, g->ctx, dt, ndim, shape, numel);
    x->value.storage = YK__ARENA;
    for (int i = 0; i < n; i++) {
        x->inputs[i] = inputs[i];
        if (inputs[i] && inputs[i]->requires_grad && g->grad_enabled)
            x->requires_grad = true;
    }
    x->lazy = lazy;
    if (!lazy) {
        x->value.data = yk__arena_alloc(g, yk_tensor_nbytes(&x->value));
        if (!x->value.data)
            return NULL;
    }
    return x;
}

yk_node *yk__node_new(yk_graph *g, const yk_op_def *op, int n,
                      yk_node *const *inputs, yk_dtype dt, int ndim,
                      const int64_t *shape)
{
    return op_node(g, op, n, inputs, dt, ndim, shape, false);
}

yk_node *yk__node_new_lazy(yk_graph *g, const yk_op_def *op, int n,
                           yk_node *const *inputs, yk_dtype dt, int ndim,
                           const int64_t *shape)
{
    return op_node(g, op, n, inputs, dt, ndim, shape, true);
}

void *yk__save(yk_node *n, size_t size)
{
    n->saved = yk__arena_alloc(n->g, size);
    return n->saved;
}

/* ---------------------------------------------------------------- leaves */

yk_node *yk_param_node(yk_graph *g, yk_param *p)
{
    if (!g || g->status != YK_OK)
        return NULL;
    if (!p)
        return yk__fail(g, YK_EINVAL, "yk_param_node: parameter is NULL");
    if (yk_model_ctx(p->model) != g->ctx)
        return yk__fail(g, YK_EINVAL, "yk_param_node: parameter \"%s\" "
                        "belongs to another context", p->name);
    /* Memoized: the same parameter is the same node, so all uses tie.
     * Parameters are few, so a scan of the parameter leaves is enough. */
    for (int i = 0; i < g->n_params; i++)
        if (g->param_nodes[i]->param == p)
            return g->param_nodes[i];
    if (g->n_params == g->params_cap) {
        int cap = g->params_cap ? 2 * g->params_cap : 16;
        yk_node **a = yk__arena_alloc(g, (size_t)cap * sizeof *a);
        if (!a)
            return NULL;
        if (g->n_params)
            memcpy(a, g->param_nodes, (size_t)g->n_params * sizeof *a);
        g->param_nodes = a;
        g->params_cap = cap;
    }
    yk_node *x = node_alloc(g, 0);
    if (!x)
        return NULL;
    g->param_nodes[g->n_params++] = x;
    x->leaf_kind = "param";
    x->param = p;
    x->value = p->value; /* shares the parameter's storage */
    x->value.storage = YK__ARENA;
    x->requires_grad = p->requires_grad && g->grad_enabled;
    return x;
}

yk_node *yk_const(yk_graph *g, const yk_tensor *t)
{
    if (!g || g->status != YK_OK)
        return NULL;
    if (!t)
        return yk__fail(g, YK_EINVAL, "yk_const: tensor is NULL");
    yk_node *x = node_alloc(g, 0);
    if (!x)
        return NULL;
    x->leaf_kind = "const";
    x->value = *t; /* borrowed until yk_graph_end */
    x->value.storage = YK__ARENA;
    return x;
}

yk_node *yk_detach(yk_graph *g, yk_node *x)
{
    if (!yk__inputs_ok(g, "yk_detach", 1, &x))
        return NULL;
    const yk_tensor *v = yk_value(x);
    return v ? yk_const(g, v) : NULL;
}

/* ---------------------------------------------------------------- values */

const yk_tensor *yk__in(yk_node *n, int i) { return yk_value(n->inputs[i]); }

const yk_tensor *yk_value(yk_node *x)
{
    if (!x)
        return NULL;
    /* (a graph that failed already keeps its values readable) */
    if (x->g->check_finite && x->g->status == YK_OK &&
        check_pending(x->g, x->id + 1) != YK_OK)
        return NULL;
    if (x->lazy && !x->value.data) {
        /* A lazy node's build makes the value when asked (see cat). */
        void *data = yk__arena_alloc(x->g, yk_tensor_nbytes(&x->value));
        if (!data)
            return NULL;
        const int64_t cols = x->value.ndim == 2 ? x->value.shape[1] : 0;
        size_t es = yk_dtype_size(x->value.dtype);
        for (int64_t r = 0; r < x->value.shape[0]; r++)
            yk__row(x, r, (char *)data + (size_t)(r * cols) * es);
        x->value.data = data;
    }
    return &x->value;
}

const void *yk__row(const yk_node *w, int64_t r, void *scratch)
{
    size_t es = yk_dtype_size(w->value.dtype);
    if (w->value.data)
        return (const char *)w->value.data + (size_t)(r * w->value.shape[1]) * es;
    /* A lazy column concatenation: gather the row from each part. */
    char *dst = scratch;
    for (int i = 0; i < w->n_inputs; i++) {
        const yk_node *part = w->inputs[i];
        size_t bytes = (size_t)part->value.shape[1] * es;
        const void *src = yk__row(part, r, dst);
        if (src != dst)
            memcpy(dst, src, bytes);
        dst += bytes;
    }
    return scratch;
}

yk_dtype yk_node_dtype(const yk_node *x) { return x ? x->value.dtype : YK_F32; }
int yk_node_ndim(const yk_node *x) { return x ? x->value.ndim : -1; }
const int64_t *yk_node_shape(const yk_node *x) { return x ? x->value.shape : NULL; }
bool yk_node_requires_grad(const yk_node *x) { return x && x->requires_grad; }

int64_t yk_node_dim(const yk_node *x, int i)
{
    return x ? yk_tensor_dim(&x->value, i) : -1;
}

const char *yk_node_op_name(const yk_node *x)
{
    if (!x)
        return NULL;
    return x->op ? x->op->name : x->leaf_kind;
}

/* ------------------------------------------------------------- gradients */

bool yk__needs_grad(const yk_node *n, int i)
{
    return n->inputs[i] && n->inputs[i]->requires_grad;
}

static void *grad_dense_of(yk_graph *g, yk_node *t)
{
    t->grad.touched = true;
    t->grad.want_dense = true;
    if (!t->grad.dense)
        t->grad.dense = yk__arena_alloc(g, yk_tensor_nbytes(&t->value));
    return t->grad.dense;
}

void *yk__grad_dense(yk_graph *g, yk_node *n, int i)
{
    if (!yk__needs_grad(n, i))
        return NULL;
    return grad_dense_of(g, n->inputs[i]);
}

void *yk__grad_rows_node(yk_graph *g, yk_node *t, int64_t count,
                         const int64_t *rows, bool sparse)
{
    yk__rowchunk *c = yk__arena_alloc(g, sizeof *c);
    if (!c)
        return NULL;
    int64_t rowlen = yk__rowlen(&t->value);
    c->n = count;
    c->rows = yk__arena_alloc(g, (size_t)count * sizeof *c->rows);
    c->values = yk__arena_alloc_raw(g, (size_t)(count * rowlen) *
                                           yk_dtype_size(t->value.dtype));
    if (!c->rows || !c->values)
        return NULL;
    if (count)
        memcpy(c->rows, rows, (size_t)count * sizeof *rows);
    c->sparse = sparse;
    c->next = t->grad.chunks;
    t->grad.chunks = c;
    t->grad.touched = true;
    return c->values;
}

void *yk__grad_rows(yk_graph *g, yk_node *n, int i, int64_t count,
                    const int64_t *rows, bool sparse)
{
    if (!yk__needs_grad(n, i))
        return NULL;
    return yk__grad_rows_node(g, n->inputs[i], count, rows, sparse);
}

void yk__scatter_rows(yk_dtype dt, void *dense, int64_t rowlen,
                      const yk__rowchunk *chunks)
{
    size_t rb = (size_t)rowlen * yk_dtype_size(dt);
    int64_t ahead = yk__prefetch_distance(rb);
    for (const yk__rowchunk *c = chunks; c; c = c->next)
        for (int64_t k = 0; k < c->n; k++) {
            if (k + ahead < c->n)
                yk__prefetch_write((char *)dense + (size_t)c->rows[k + ahead] *
                                   rb, rb);
            yk__add_into(dt, (char *)dense + (size_t)c->rows[k] * rb,
                         (const char *)c->values + (size_t)k * rb, rowlen);
        }
}

/* Merges a node's row chunks into its dense gradient (made if needed). */
static void *densify(yk_graph *g, yk_node *t)
{
    void *d = grad_dense_of(g, t);
    if (d && t->grad.chunks) {
        yk__scatter_rows(t->value.dtype, d, yk__rowlen(&t->value),
                         t->grad.chunks);
        t->grad.chunks = NULL;
    }
    return d;
}

/* Runs x's op backward with the gradient that reached x. */
static yk_status run_backward(yk_graph *g, yk_node *x)
{
    yk_status s;
    if (x->lazy && x->op->backward_rows && !x->grad.dense) {
        s = x->op->backward_rows(g, x, x->grad.chunks);
    } else {
        void *gout = densify(g, x);
        if (!gout)
            return g->status;
        s = x->op->backward(g, x, gout);
    }
    if (s == YK_OK && g->status != YK_OK)
        s = g->status;
    if (s != YK_OK && g->status == YK_OK)
        g->status = s;
    return s;
}

/* Runs one node's backward if a gradient reached it and an input needs one. */
static yk_status backward_node(yk_graph *g, yk_node *x)
{
    if (!x->op || !x->grad.touched)
        return YK_OK;
    bool any_input = false;
    for (int i = 0; i < x->n_inputs; i++)
        any_input |= yk__needs_grad(x, i);
    if (!any_input)
        return YK_OK;
    if (g->tie_report) /* debugging: each use of a parameter kept apart */
        return yk__backward_recording(g, x, run_backward);
    return run_backward(g, x);
}

/* Adds a parameter leaf's gradient of this step into the model. */
static yk_status store_param_grad(yk_graph *g, yk_node *x)
{
    if (!x->grad.touched)
        return YK_OK;
    yk_param *p = x->param;
    bool dense = x->grad.want_dense;
    for (const yk__rowchunk *c = x->grad.chunks; c; c = c->next)
        dense |= !c->sparse;
    yk_status s;
    if (dense) {
        /* Rows are scattered straight into the store's dense buffer: no
         * parameter-sized buffer is made in the arena. */
        s = yk__param_add_dense(p, x->grad.dense);
        if (s == YK_OK && x->grad.chunks)
            s = yk__param_add_rows(p, x->grad.chunks, g);
    } else {
        /* Row-sparse, even with no rows: "looked up, no row" still counts. */
        s = yk__param_add_rows(p, x->grad.chunks, g);
        if (s == YK_OK && p->grad_kind == YK_GRAD_NONE)
            p->grad_kind = YK_GRAD_ROWS;
    }
    if (s != YK_OK)
        return yk__error(g->ctx, s, "backward: out of memory adding the "
                         "gradient of parameter \"%s\"", p->name);
    return YK_OK;
}

static yk_status seed_node(yk_graph *g, yk_node *x, const yk_tensor *seed,
                           int k)
{
    if (!x || x->g != g)
        return yk__error(g->ctx, YK_EINVAL, "backward: node %d is NULL or "
                         "from another graph", k);
    if (!seed)
        return yk__error(g->ctx, YK_EINVAL, "backward: seed %d is NULL", k);
    if (seed->dtype != x->value.dtype)
        return yk__error(g->ctx, YK_EDTYPE, "backward: seed %d is %s but "
                         "node %d (%s) is %s", k, yk_dtype_name(seed->dtype),
                         k, yk_node_op_name(x), yk_dtype_name(x->value.dtype));
    if (!yk__same_shape(seed, &x->value)) {
        char a[96], b[96];
        return yk__error(g->ctx, YK_ESHAPE, "backward: seed %d has shape %s "
                         "but node %d (%s) has shape %s", k,
                         yk_shape_format(seed, a, sizeof a), k,
                         yk_node_op_name(x), yk_shape_format(&x->value, b,
                                                             sizeof b));
    }
    if (!x->requires_grad)
        return YK_OK;
    void *d = grad_dense_of(g, x);
    if (!d)
        return g->status;
    yk__add_into(seed->dtype, d, seed->data, x->value.numel);
    return YK_OK;
}

yk_status yk_backward_seeded(yk_graph *g, int n, yk_node *const *nodes,
                             const yk_tensor *const *seeds)
{
    if (!g)
        return YK_EINVAL;
    if (g->status != YK_OK)
        return g->status;
    if (g->backward_done)
        return yk__error(g->ctx, YK_ESTATE, "backward: this graph already ran "
                         "backward; begin a new graph for another pass");
    if (n < 1 || !nodes || !seeds)
        return yk__error(g->ctx, YK_EINVAL, "backward: needs at least one "
                         "node and seed (n = %d)", n);
    if (check_pending(g, g->n_nodes) != YK_OK)
        return g->status;
    bool any = false;
    for (int k = 0; k < n; k++) {
        yk_status s = seed_node(g, nodes[k], seeds[k], k);
        if (s != YK_OK) {
            /* Forget partial seeds: nothing ran yet. */
            for (int64_t i = 0; i < g->n_nodes; i++)
                memset(&g->nodes[i]->grad, 0, sizeof g->nodes[i]->grad);
            return s;
        }
        any |= nodes[k]->requires_grad;
    }
    g->backward_done = true;
    if (!any)
        return YK_OK;
    for (int64_t i = g->n_nodes - 1; i >= 0; i--) {
        yk_status s = backward_node(g, g->nodes[i]);
        if (s != YK_OK)
            return s;
    }
    for (int i = 0; i < g->n_params; i++) {
        yk_node *x = g->param_nodes[i];
        if (x->requires_grad) {
            yk_status s = store_param_grad(g, x);
            if (s != YK_OK)
                return s;
        }
    }
    return YK_OK;
}

yk_status yk_backward(yk_graph *g, yk_node *loss)
{
    if (!g)
        return YK_EINVAL;
    if (g->status != YK_OK)
        return g->status;
    if (!loss)
        return yk__error(g->ctx, YK_EINVAL, "backward: loss is NULL");
    if (loss->value.numel != 1) {
        char b[96];
        return yk__error(g->ctx, YK_ESHAPE, "backward: the loss must have one "
                         "element, but %s has shape %s (use "
                         "yk_backward_seeded for others)", yk_node_op_name(loss),
                         yk_shape_format(&loss->value, b, sizeof b));
    }
    if (!loss->requires_grad)
        return yk__error(g->ctx, YK_EINVAL, "backward: the loss (%s) does not "
                         "depend on any parameter that requires grad",
                         yk_node_op_name(loss));
    double one_d = 1.0;
    float one_f = 1.0f;
    yk_tensor seed = loss->value;
    seed.data = loss->value.dtype == YK_F32 ? (void *)&one_f : (void *)&one_d;
    const yk_tensor *sp = &seed;
    return yk_backward_seeded(g, 1, &loss, &sp);
}

const yk_tensor *yk_node_grad(yk_node *x)
{
    if (!x || !x->grad.touched)
        return NULL;
    if (!x->grad_view) {
        void *d = densify(x->g, x);
        if (!d)
            return NULL;
        yk_tensor *t = yk__arena_alloc(x->g, sizeof *t);
        if (!t)
            return NULL;
        *t = x->value;
        t->data = d;
        x->grad_view = t;
    }
    return x->grad_view;
}
