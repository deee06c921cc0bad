/*
 * engine.h -- the library's internal interface, shared by lib/ and ops/.
 *
 * An op file needs only this header. The pattern of every op:
 *
 *   forward (the public function yk_foo):
 *     if (!yk__inputs_ok(g, n, inputs)) return NULL;   // sticky errors
 *     ...check arguments, return yk__fail(g, YK_E..., "foo: ...") on error
 *     yk_node *out = yk__node_new(g, &yk_op_foo, n, inputs, dtype, ndim, shape);
 *     ...compute into yk__data(out), save what backward needs (yk__save)
 *
 *   backward (yk_op_foo.backward): grad_out is the dense gradient of the
 *   output. For each input i with yk__needs_grad(node, i), ask the engine for
 *   a buffer: yk__grad_dense (zeroed on first use: ADD into it) or
 *   yk__grad_rows (row-sparse: this use's rows only, to WRITE in full).
 *   A backward never stores gradients itself: accumulation and merging
 *   live in graph.c.
 */
#ifndef YOKE_ENGINE_H
#define YOKE_ENGINE_H

#include "yoke.h"

#include <stdarg.h>

/* ---------------------------------------------------------------- ctx */

struct yk__arena_chunk;

struct yk_ctx {
    yk_alloc_fn alloc;
    void *ud;
    int threads;
    uint64_t next_graph_id;
    yk_status status;
    char msg[512];
    /* The arena chunks of the last ended graph, and the gradient-row
     * blocks zero_grad let go of (yk__arena_offer), kept for the next
     * graph (graph.c) so that a training loop does not map, fault in and
     * unmap its step's memory every step. Kept only while a model is
     * alive (live_models, counted by model.c): the last yk_model_free
     * releases them (yk__arena_release), so nothing is held once the user
     * has freed what they made. */
    struct yk__arena_chunk *spare;
    int live_models;
};

/* Allocation through the context's hook. yk__alloc zeroes the block. */
void *yk__alloc(yk_ctx *ctx, size_t size);
void *yk__realloc(yk_ctx *ctx, void *p, size_t old_size, size_t new_size);
void yk__free(yk_ctx *ctx, void *p, size_t size);
/* Zeroed tensor / parameter storage, 64-byte aligned (2 MiB aligned, with
 * transparent huge pages asked for, from 2 MiB on); freed with
 * yk__free_aligned and the same size. Sets YK_ENOMEM on ctx on failure. */
void *yk__alloc_aligned(yk_ctx *ctx, size_t size);
void yk__free_aligned(yk_ctx *ctx, void *p, size_t size);
char *yk__strdup(yk_ctx *ctx, const char *s);

/* Runs kernel(job, lo, hi) over [0, n) items, split in contiguous ranges
 * over the context's threads when the work (n x cost, about the numbers
 * touched) is big enough to pay for waking them. Each item is computed by
 * one thread alone, so results do not depend on the thread count. */
typedef void (*yk__range_kernel)(const void *job, int64_t lo, int64_t hi);
void yk__run_split(const yk_ctx *ctx, yk__range_kernel kernel,
                   const void *job, int64_t n, int64_t cost);

/*
 * Rows looked up in a big table are random: each costs a memory (and often
 * a TLB) miss of several hundred ns, which one row's few operations cannot
 * hide. Loops over such rows prefetch every cache line of the row
 * yk__prefetch_distance(row bytes) rows ahead (about 4 KiB, 8 to 16 rows),
 * so that many misses are in flight at once.
 */
static inline int64_t yk__prefetch_distance(size_t row_bytes)
{
    int64_t d = (int64_t)(4096 / (row_bytes ? row_bytes : 1));
    return d < 8 ? 8 : d > 16 ? 16 : d;
}

/* Prefetches every cache line of the bytes at p, to read or to write. */
static inline void yk__prefetch_read(const void *p, size_t bytes)
{
    const char *c = p;
    for (const char *l = (const char *)((uintptr_t)c & ~(uintptr_t)63);
         l < c + bytes; l += 64)
        __builtin_prefetch(l, 0);
}

static inline void yk__prefetch_write(const void *p, size_t bytes)
{
    const char *c = p;
    for (const char *l = (const char *)((uintptr_t)c & ~(uintptr_t)63);
         l < c + bytes; l += 64)
        __builtin_prefetch(l, 1);
}

/* Records an error on ctx and returns code. printf-style message. */
yk_status yk__error(yk_ctx *ctx, yk_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
yk_status yk__verror(yk_ctx *ctx, yk_status code, const char *fmt,
                     va_list ap);

/* ------------------------------------------------------------- tensor */

enum yk__storage { YK__OWNED, YK__BORROWED, YK__ARENA };

struct yk_tensor {
    yk_ctx *ctx;
    yk_dtype dtype;
    int ndim;
    int64_t shape[YK_MAX_DIMS];
    int64_t numel;
    void *data;
    enum yk__storage storage;
};

/* Checks dtype/ndim/shape and computes numel (overflow-safe). */
yk_status yk__shape_check(yk_ctx *ctx, const char *fn, yk_dtype dt, int ndim,
                          const int64_t *shape, int64_t *numel);
/* Fills the header of t (no data). */
void yk__tensor_init(yk_tensor *t, yk_ctx *ctx, yk_dtype dt, int ndim,
                     const int64_t *shape, int64_t numel);
bool yk__same_shape(const yk_tensor *a, const yk_tensor *b);
/* 64-bit uniform random number for (seed, counter). */
uint64_t yk__random_u64(uint64_t seed, uint64_t counter);
/* Normalizes dim for a tensor of ndim dims; -1 on out of range. */
int yk__norm_dim(int dim, int ndim);

/* -------------------------------------------------------------- model */

/* A list of row-sparse gradient chunks: chunk k holds n row ids and
 * n x rowlen values. Rows may repeat; they are summed when coalesced. */
typedef struct yk__rowchunk {
    int64_t n;
    bool sparse;    /* the use asked for a row-sparse gradient */
    int64_t *rows;
    void *values;
    struct yk__rowchunk *next;
} yk__rowchunk;

struct yk_model {
    yk_ctx *ctx;
    yk_param **params; /* insertion order */
    int n, cap;
};

struct yk_param {
    yk_model *model;
    char *name;
    yk_tensor value;
    bool requires_grad;
    /* accumulated gradient (model allocator, lives across steps) */
    yk_grad_kind grad_kind;
    yk_tensor *grad;           /* dense gradient, when kind is DENSE     */
    /* The rows of grad that may be non-zero, so that zero_grad clears only
     * those (a lookup into a big table touches a few of its rows): all of
     * them (dirty_all), or the dirty_n distinct rows in dirty_rows, in the
     * order first written, each with its bit set in dirty_bits (one bit a
     * row, so that a repeat is known without a sort). Whoever writes grad
     * other than through yk__param_add_* calls yk__param_grad_written. */
    bool dirty_all;
    int64_t *dirty_rows, dirty_n, dirty_cap;
    uint64_t *dirty_bits;
    int64_t nrows, rows_cap;   /* row-sparse gradient, when kind is ROWS */
    int64_t *rows;             /* rows_cap of them                       */
    struct yk__arena_chunk *row_chunk; /* the values' block (see below)  */
    void *row_values;          /* its data, or NULL                      */
    bool rows_coalesced;
    yk_tensor rows_view;       /* [nrows, rowlen] view on row_values     */
};

/* Adds a graph's gradient of p into the store (graph.c calls them).
 * add_dense makes the store dense and adds g (g may be NULL: just make it
 * dense); add_rows scatters into a dense store or appends rows. */
yk_status yk__param_add_dense(yk_param *p, const void *g);
/* g: the graph the chunks belong to, whose big value blocks the store may
 * take over instead of copying; NULL: always copy. */
yk_status yk__param_add_rows(yk_param *p, const yk__rowchunk *chunks,
                             yk_graph *g);
/* Records that every row of p's dense gradient may have been written. */
void yk__param_grad_written(yk_param *p);
/* The rows of p's dense gradient that may be non-zero, each once (an
 * optimizer whose update of a zero row is nothing visits only them); false
 * when they are not known (every row may be). */
bool yk__param_grad_dirty_rows(yk_param *p, int64_t *n, const int64_t **rows);
/* dst[i] += src[i] for n elements of a float dtype: the one loop through
 * which the library adds gradients. */
void yk__add_into(yk_dtype dt, void *dst, const void *src, int64_t n);
/* Elements per row of a parameter (product of dims after the first). */
int64_t yk__rowlen(const yk_tensor *t);

/* ------------------------------------------------------------- graph */

typedef struct yk__arena_chunk {
    struct yk__arena_chunk *next;
    size_t size, used;
} yk__arena_chunk;

/*
 * A big block of gradient rows moves between the step arena and a
 * parameter's row store instead of being copied: the backward makes the
 * rows in an arena block of their own (yk__grad_rows), the parameter takes
 * that block over (yk__arena_take_block), and zero_grad offers it back to
 * the context's spares (yk__arena_offer), where the next step's arena
 * finds it. One block serves every step; nothing is copied.
 */
yk__arena_chunk *yk__chunk_new(yk_ctx *ctx, size_t size); /* not zeroed */
void yk__chunk_free(yk_ctx *ctx, yk__arena_chunk *c);      /* NULL: no-op */
void *yk__chunk_data(yk__arena_chunk *c);                  /* 64-aligned  */
/* The arena chunk that holds exactly the size-byte block at block (a big
 * block has a chunk of its own), unlinked from g; NULL if there is none. */
yk__arena_chunk *yk__arena_take_block(yk_graph *g, const void *block,
                                      size_t size);
/* Puts c among ctx's spares if it is big and a model lives (who releases
 * the spares); false: the caller keeps it. */
bool yk__arena_offer(yk_ctx *ctx, yk__arena_chunk *c);

/* The gradient of a node during backward: a dense part, row chunks, or
 * both (merged before use). */
typedef struct yk__grad {
    void *dense;
    yk__rowchunk *chunks;
    bool touched;    /* some backward sent a gradient (even 0 rows)   */
    bool want_dense; /* some use asked for a dense buffer (yk__grad_dense) */
} yk__grad;

struct yk_node {
    const yk_op_def *op;  /* NULL for leaves */
    const char *leaf_kind; /* "param" or "const" for leaves */
    yk_graph *g;
    int64_t id;           /* creation order: a topological order */
    yk_tensor value;      /* value.data is NULL while a lazy node is unmade */
    int n_inputs;
    yk_node **inputs;
    bool requires_grad;
    bool lazy;            /* value computed on first yk_value()  */
    yk_param *param;      /* for parameter leaves                */
    void *saved;          /* op-specific, in the arena           */
    yk__grad grad;
    yk_tensor *grad_view; /* dense gradient handed to users      */
};

struct yk_graph {
    yk_ctx *ctx;
    uint64_t id;
    yk__arena_chunk *chunks;
    size_t bytes;
    yk_status status;
    bool grad_enabled;
    bool backward_done;
    bool check_finite;    /* yk_graph_set_check_finite              */
    int64_t n_checked;    /* nodes [0, n_checked) were checked      */
    yk_node **nodes;      /* every node, in id order */
    int64_t n_nodes, nodes_cap;
    yk_node **param_nodes; /* the parameter leaves, for the memo */
    int n_params, params_cap;
    bool tie_report;      /* keep each use's gradient of a parameter apart */
    struct yk__tie_use *ties; /* the records, in consumer id order */
    int64_t n_ties;
};

/* Arena memory, zeroed, 64-byte aligned; NULL (and a sticky YK_ENOMEM)
 * on failure. */
void *yk__arena_alloc(yk_graph *g, size_t size);
/* The same, not zeroed: for buffers the caller writes in full. */
void *yk__arena_alloc_raw(yk_graph *g, size_t size);
/* Frees the context's spare arena chunks (model.c, at the last model). */
void yk__arena_release(yk_ctx *ctx);

/* Records err on the graph (sticky) and the context; returns NULL. */
yk_node *yk__fail(yk_graph *g, yk_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* False when the graph already failed or an input is NULL (then the
 * graph fails with the first error, or YK_EINVAL for a NULL input).
 * Also checks that every input belongs to g. */
bool yk__inputs_ok(yk_graph *g, const char *op, int n, yk_node *const *in);

/* A new op node with an allocated (zeroed) value of that dtype and shape,
 * inputs copied; requires_grad when grad is on and an input needs it. */
yk_node *yk__node_new(yk_graph *g, const yk_op_def *op, int n,
                      yk_node *const *inputs, yk_dtype dt, int ndim,
                      const int64_t *shape);
/* As yk__node_new, but the value stays unmade until yk_value() (lazy). */
yk_node *yk__node_new_lazy(yk_graph *g, const yk_op_def *op, int n,
                           yk_node *const *inputs, yk_dtype dt, int ndim,
                           const int64_t *shape);
/* Saved state for backward, zeroed, in the arena. */
void *yk__save(yk_node *n, size_t size);

/* The input's value, made if lazy; NULL (graph failed) on OOM. */
const yk_tensor *yk__in(yk_node *n, int i);
static inline void *yk__data(yk_node *n) { return n->value.data; }

/* Row r of a 2-D node, lazy or not: a pointer into its value, or the row
 * gathered into scratch (rowlen elements) when the node is a lazy cat. */
const void *yk__row(const yk_node *w, int64_t r, void *scratch);

/* During backward: does input i need a gradient? */
bool yk__needs_grad(const yk_node *n, int i);
/* The dense gradient buffer of input i to add into (zeroed on first use),
 * or NULL when it needs none or memory ran out (check g->status). */
void *yk__grad_dense(yk_graph *g, yk_node *n, int i);
/* A buffer of count x rowlen values for this use's gradient of
 * rows[0..count) of input i (rows copied, may repeat; count may be 0:
 * "looked up but no row"). It is NOT zeroed: the backward writes every
 * element (a big table's gradient rows are megabytes a step, and zeroing
 * them first was a pass over memory of its own). sparse says whether the
 * use asked for a row-sparse gradient: a parameter's gradient is
 * row-sparse only if every use did. */
void *yk__grad_rows(yk_graph *g, yk_node *n, int i, int64_t count,
                    const int64_t *rows, bool sparse);
/* Same, for a node directly (used by cat's row backward). */
void *yk__grad_rows_node(yk_graph *g, yk_node *target, int64_t count,
                         const int64_t *rows, bool sparse);

/* Scatters chunks into dense (rowlen values per row), adding. */
void yk__scatter_rows(yk_dtype dt, void *dense, int64_t rowlen,
                      const yk__rowchunk *chunks);

/* ---------------------------------------------------------- tie report */

/* One use of a parameter in a backward run with the tie report on
 * (yk_graph_set_tie_report): the node whose backward sent the gradient and
 * the norm of what it sent. In the graph arena. */
typedef struct yk__tie_use {
    yk_node *leaf;       /* the parameter's leaf                   */
    yk_node *consumer;   /* the op node that read it               */
    double norm;         /* Frobenius norm of this use's gradient  */
    struct yk__tie_use *next;
} yk__tie_use;

/* Runs one node's backward (graph.c's run_backward) with the gradient of
 * each parameter input moved aside, records the norm of what arrived, and
 * merges it back (lib/inspect.c). graph.c calls it when g->tie_report. */
typedef yk_status (*yk__backward_fn)(yk_graph *g, yk_node *x);
yk_status yk__backward_recording(yk_graph *g, yk_node *x, yk__backward_fn run);

/* ------------------------------------------------------------ registry */

/* One extern per op, named yk_op_<name>, generated from ops/ops.def. */
#define YK_OP(name) extern const yk_op_def yk_op_##name;
#include "../ops/ops.def"
#undef YK_OP

#endif /* YOKE_ENGINE_H */
