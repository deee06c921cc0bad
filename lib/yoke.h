/*
 * yoke.h -- a small autograd framework in C for embedding models.
 *
 * OVERVIEW
 *
 *   yk_ctx      the context: allocator hook, thread count, the last error.
 *   yk_tensor   a dense row-major array (f32, f64 or i64), up to 8 dims.
 *   yk_model    the PARAMETER STORE: named parameters, their accumulated
 *               gradients. Lives across training steps.
 *   yk_graph    the STEP ARENA: the nodes and activations of one forward and
 *               backward pass, all freed at once by yk_graph_end().
 *   yk_node     a value in a graph: a parameter, a constant, or an op result.
 *
 * Weight tying is structural: within one graph, yk_param_node() returns the
 * same node every time it is asked for the same parameter, so every op that
 * reads the parameter adds its gradient into one accumulator, and the model
 * (and any optimizer) holds one gradient and one state per parameter.
 *
 * A TRAINING STEP (error checks shortened; see README.md for the full loop)
 *
 *     yk_ctx *ctx = yk_ctx_new();
 *     yk_model *m = yk_model_new(ctx);
 *     int64_t wshape[2] = {1000, 128};
 *     yk_param *W = yk_model_add(m, "W", YK_F32, 2, wshape);
 *     yk_tensor_fill_normal(yk_param_value(W), 42, 0.0, 1.0);
 *
 *     yk_graph *g = yk_graph_begin(ctx);
 *     yk_node *w   = yk_param_node(g, W);
 *     yk_node *seq = yk_embedding(g, yk_const(g, tokens), w,
 *                                 YK_NO_PADDING, false, false);
 *     yk_bag_opts o = yk_bag_defaults();             // mode mean
 *     yk_node *bag = yk_embedding_bag(g, yk_const(g, flat), w,
 *                                     yk_const(g, offsets), NULL, &o);
 *     yk_node *loss = yk_add(g, yk_sum(g, seq, 0, NULL, false),
 *                               yk_sum(g, bag, 0, NULL, false));
 *     if (yk_backward(g, loss) != YK_OK)            // errors are sticky:
 *         fprintf(stderr, "%s\n", yk_last_error(ctx)); // one check suffices
 *     yk_graph_end(g);                              // frees the whole step
 *     // yk_param_grad(W) now holds the sum of both uses' gradients.
 *
 * ERRORS
 *
 *   Functions return a yk_status, or NULL for a created object. The context
 *   keeps a message naming the function, the argument and the value
 *   (yk_last_error). In a graph errors are sticky: an op given a NULL input,
 *   or called after an earlier op failed, returns NULL without touching the
 *   message, so a forward pass can be checked once at the end. The library
 *   never prints, aborts or exits because of anything a caller passes in.
 *
 * OWNERSHIP
 *
 *   Every *_new / yk_tensor_* creator returns an object the caller frees with
 *   the matching *_free (all accept NULL). yk_tensor_wrap borrows the caller's
 *   buffer and never frees it. Nodes and the tensors they return belong to
 *   their graph and die with yk_graph_end.
 */
#ifndef YOKE_H
#define YOKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define YOKE_VERSION_MAJOR 0
#define YOKE_VERSION_MINOR 1
#define YOKE_VERSION_PATCH 0
#define YOKE_VERSION_STRING "0.1.0"

/** The version of the library actually linked (may differ from the header). */
const char *yk_version(void);

/* ======================================================================
 * Status codes and the context
 * ====================================================================== */

typedef enum yk_status {
    YK_OK = 0,
    YK_EINVAL,   /* an argument is invalid            ("invalid_argument")   */
    YK_ERANGE,   /* an index is out of range          ("index_out_of_range") */
    YK_EOFFSETS, /* embedding_bag offsets are invalid ("bad_offsets")        */
    YK_ESHAPE,   /* shapes do not fit                 ("shape_mismatch")     */
    YK_EDTYPE,   /* dtypes do not fit                 ("dtype_mismatch")     */
    YK_ENOMEM,   /* an allocation failed              ("out_of_memory")      */
    YK_EIO,      /* reading or writing a file failed  ("io_error")           */
    YK_EFORMAT,  /* a file is malformed               ("bad_format")         */
    YK_ESTATE,   /* a call out of order, e.g. backward twice ("bad_state")   */
    YK_ENOTIMPL  /* not implemented in this version   ("not_implemented")    */
} yk_status;

/** The category name of a status, as case files spell it (see above). */
const char *yk_status_name(yk_status s);

typedef struct yk_ctx yk_ctx;

/**
 * Allocator hook, as Lua's: new_size == 0 frees ptr (returns NULL);
 * otherwise (re)allocates ptr from old_size to new_size bytes and returns
 * the block, or NULL on failure (ptr then stays valid). Blocks must be
 * aligned to at least 16 bytes.
 */
typedef void *(*yk_alloc_fn)(void *ud, void *ptr, size_t old_size,
                             size_t new_size);

/** A context with the system allocator and one thread. NULL on OOM. */
yk_ctx *yk_ctx_new(void);
/** A context whose every allocation goes through fn(ud, ...). */
yk_ctx *yk_ctx_new_with_alloc(yk_alloc_fn fn, void *ud);
/** Frees the context. Free every model, tensor and graph of it first. */
void yk_ctx_free(yk_ctx *ctx);

/** Status of the last failed call on this context (YK_OK if none). */
yk_status yk_last_status(const yk_ctx *ctx);
/** Message of the last failed call ("" if none). Valid until the next call. */
const char *yk_last_error(const yk_ctx *ctx);
/** Forgets the last error. */
void yk_clear_error(yk_ctx *ctx);

/** Threads for kernels and BLIS (>= 1; YK_EINVAL otherwise). */
yk_status yk_set_threads(yk_ctx *ctx, int n);
int yk_threads(const yk_ctx *ctx);

/* ======================================================================
 * Tensors
 * ====================================================================== */

#define YK_MAX_DIMS 8

typedef enum yk_dtype { YK_F32, YK_F64, YK_I64 } yk_dtype;

/** "f32", "f64", "i64" (or "?" for an invalid value). */
const char *yk_dtype_name(yk_dtype dt);
/** Bytes per element (0 for an invalid dtype). */
size_t yk_dtype_size(yk_dtype dt);

typedef struct yk_tensor yk_tensor;

/*
 * Creators. ndim is 0..YK_MAX_DIMS (0 = a scalar with one element); every
 * shape[i] >= 0 (0 makes an empty tensor). An unknown dtype is YK_EDTYPE,
 * a bad ndim or shape YK_EINVAL / YK_ESHAPE, set on the context, and NULL. The caller frees the result
 * with yk_tensor_free.
 */
yk_tensor *yk_tensor_zeros(yk_ctx *ctx, yk_dtype dt, int ndim,
                           const int64_t *shape);
yk_tensor *yk_tensor_ones(yk_ctx *ctx, yk_dtype dt, int ndim,
                          const int64_t *shape);
yk_tensor *yk_tensor_full(yk_ctx *ctx, yk_dtype dt, int ndim,
                          const int64_t *shape, double value);
/** Copies numel elements of dtype dt from data (data may be NULL if empty). */
yk_tensor *yk_tensor_from(yk_ctx *ctx, yk_dtype dt, int ndim,
                          const int64_t *shape, const void *data);
/** Borrows data: the tensor reads and writes it but never frees it. */
yk_tensor *yk_tensor_wrap(yk_ctx *ctx, yk_dtype dt, int ndim,
                          const int64_t *shape, void *data);
/** A new owned copy of t (same dtype and shape). */
yk_tensor *yk_tensor_clone(const yk_tensor *t);
/** Frees the tensor (not a wrapped buffer). NULL is a no-op. */
void yk_tensor_free(yk_tensor *t);

/*
 * Seeded random fill from a counter-based generator: element i depends only
 * on (seed, i), so the numbers are the same on every machine and thread
 * count. Float tensors only (YK_EDTYPE otherwise); std >= 0, lo <= hi.
 */
yk_status yk_tensor_fill_normal(yk_tensor *t, uint64_t seed, double mean,
                                double std);
yk_status yk_tensor_fill_uniform(yk_tensor *t, uint64_t seed, double lo,
                                 double hi);
/** Integers drawn uniformly from [lo, hi) (torch.randint); i64 tensors only
 * (YK_EDTYPE otherwise), lo < hi (YK_EINVAL otherwise). Counter-based. */
yk_status yk_tensor_fill_randint(yk_tensor *t, uint64_t seed, int64_t lo,
                                 int64_t hi);
/** Sets every element to value (converted to the tensor's dtype). */
yk_status yk_tensor_fill(yk_tensor *t, double value);
/** Copies src into dst: same dtype and numel, else YK_EDTYPE / YK_ESHAPE. */
yk_status yk_tensor_copy(yk_tensor *dst, const yk_tensor *src);

yk_dtype yk_tensor_dtype(const yk_tensor *t);
int yk_tensor_ndim(const yk_tensor *t);
/** Size of dim i; negative i counts from the end. -1 if i is out of range. */
int64_t yk_tensor_dim(const yk_tensor *t, int i);
const int64_t *yk_tensor_shape(const yk_tensor *t);
int64_t yk_tensor_numel(const yk_tensor *t);
size_t yk_tensor_nbytes(const yk_tensor *t);
/** The elements, row-major, of yk_tensor_dtype(). */
void *yk_tensor_data(const yk_tensor *t);
/** Element at flat index i as a double (NaN if i is out of range). */
double yk_tensor_get(const yk_tensor *t, int64_t i);

/** Writes the shape as PyTorch prints a size, "[5, 10, 128]", into buf. */
const char *yk_shape_format(const yk_tensor *t, char *buf, size_t size);
/** Prints t to f the way PyTorch prints a tensor (long dims elided). */
yk_status yk_tensor_print(FILE *f, const yk_tensor *t);

/* ======================================================================
 * The model: a parameter store
 * ====================================================================== */

typedef struct yk_model yk_model;
typedef struct yk_param yk_param;

yk_model *yk_model_new(yk_ctx *ctx);
/** Frees the model, its parameters and their gradients. NULL is a no-op. */
void yk_model_free(yk_model *m);
yk_ctx *yk_model_ctx(const yk_model *m);

/**
 * Adds a parameter of zeros with requires_grad on. The name must be
 * non-empty and unique in the model (YK_EINVAL). The model owns it.
 */
yk_param *yk_model_add(yk_model *m, const char *name, yk_dtype dt, int ndim,
                       const int64_t *shape);
/** The parameter of that name, or NULL (no error is set). */
yk_param *yk_model_find(const yk_model *m, const char *name);
/** Number of parameters; yk_model_at(m, i) walks them in insertion order. */
int yk_model_count(const yk_model *m);
yk_param *yk_model_at(const yk_model *m, int i);
/** Clears every parameter's accumulated gradient. */
void yk_model_zero_grad(yk_model *m);

const char *yk_param_name(const yk_param *p);
yk_model *yk_param_model(const yk_param *p);
/** The parameter's storage: read and write it freely between steps. */
yk_tensor *yk_param_value(yk_param *p);
bool yk_param_requires_grad(const yk_param *p);
/** Turning it off frees the parameter's gradient buffer (freezing). */
yk_status yk_param_set_requires_grad(yk_param *p, bool on);
/**
 * True when a and b are the same parameter: one handle, one storage, one
 * gradient. This is the seed's "print both weights to check that they are
 * the same tensor" tip, answered by the API.
 */
bool yk_param_same(const yk_param *a, const yk_param *b);

/*
 * Accumulated gradient. Backward adds into it; yk_model_zero_grad clears it.
 * It is row-sparse when every use of the parameter in the step asked for a
 * sparse gradient (embedding and embedding_bag with sparse = true, directly
 * or through a column concatenation), dense otherwise.
 */
typedef enum yk_grad_kind {
    YK_GRAD_NONE,  /* no gradient reached the parameter since zero_grad */
    YK_GRAD_DENSE, /* a tensor shaped like the parameter                 */
    YK_GRAD_ROWS   /* row ids and one row of values per id               */
} yk_grad_kind;

yk_grad_kind yk_param_grad_kind(const yk_param *p);
/** The dense gradient, or NULL when the kind is not YK_GRAD_DENSE. */
const yk_tensor *yk_param_grad(const yk_param *p);
/**
 * The row-sparse gradient, coalesced (row ids sorted, unique, repeated rows
 * summed): *nrows ids in *rows and a [nrows, rowlen] tensor in *values, valid
 * until the next backward or zero_grad. YK_ESTATE if the kind is not ROWS.
 */
yk_status yk_param_grad_rows(yk_param *p, int64_t *nrows, const int64_t **rows,
                             const yk_tensor **values);
/**
 * Writes the gradient, whatever its kind, densely into out (same dtype and
 * shape as the parameter); zeros for YK_GRAD_NONE.
 */
yk_status yk_param_grad_to_dense(yk_param *p, yk_tensor *out);

/* ======================================================================
 * Graphs and nodes
 * ====================================================================== */

typedef struct yk_graph yk_graph;
typedef struct yk_node yk_node;

/** Begins a step. The arena grows as needed; NULL only on OOM. */
yk_graph *yk_graph_begin(yk_ctx *ctx);
/** Frees every node and activation of the step. NULL is a no-op. */
void yk_graph_end(yk_graph *g);
/** YK_OK, or the first error of this graph (errors are sticky). */
yk_status yk_graph_status(const yk_graph *g);
yk_ctx *yk_graph_ctx(const yk_graph *g);
/**
 * With grad off, nodes made afterwards record nothing for backward (no-grad
 * mode, like torch.no_grad()). Nodes made before keep their flag.
 */
void yk_graph_set_grad_enabled(yk_graph *g, bool on);
/**
 * Check mode, for debugging: with it on, every value of g -- op outputs,
 * parameters and constants -- is checked for NaN and Inf, and the first
 * one found fails the graph with YK_EINVAL and a message naming it:
 *   check_finite: op "log" (node 3) produced NaN at element 1
 *   check_finite: parameter "W" (node 0) holds Inf at element 7
 * An op's output is checked when the next node is made, when a value is
 * read (yk_value), at backward and at yk_graph_status: the op that made
 * the NaN returns its node, and the graph fails at the next of these.
 * Nodes made before the call are checked too. Off by default (it reads
 * every value once more). YK_EINVAL for NULL g.
 */
yk_status yk_graph_set_check_finite(yk_graph *g, bool on);
/** Bytes of nodes, activations and gradients this graph has allocated so
 * far (the arena's chunks round this up to whole MiB). */
size_t yk_graph_bytes(const yk_graph *g);

/**
 * The node of a parameter in this graph. Memoized: the same parameter gives
 * the same node every time, so every use adds into one gradient.
 */
yk_node *yk_param_node(yk_graph *g, yk_param *p);
/** A constant leaf over t, which is borrowed until yk_graph_end. */
yk_node *yk_const(yk_graph *g, const yk_tensor *t);
/** The same value as x, cut from the graph: no gradient flows through it. */
yk_node *yk_detach(yk_graph *g, yk_node *x);

/** The node's value (computed on first use for lazy nodes); NULL on error. */
const yk_tensor *yk_value(yk_node *x);
yk_dtype yk_node_dtype(const yk_node *x);
int yk_node_ndim(const yk_node *x);
/** Size of dim i (negative counts from the end); -1 if out of range. */
int64_t yk_node_dim(const yk_node *x, int i);
const int64_t *yk_node_shape(const yk_node *x);
bool yk_node_requires_grad(const yk_node *x);
/** Name of the op that made the node ("param", "const", "add", ...). */
const char *yk_node_op_name(const yk_node *x);

/**
 * Backpropagates from a loss with one element (seed 1) and adds every
 * parameter's gradient into the model. One backward per graph: a second
 * call is YK_ESTATE (no silent double counting). A loss that does not
 * require grad is YK_EINVAL.
 */
yk_status yk_backward(yk_graph *g, yk_node *loss);
/**
 * Backpropagates L = sum_k sum(value(nodes[k]) * seeds[k]): seeds[k] is the
 * gradient flowing into nodes[k] and must match its dtype and shape.
 */
yk_status yk_backward_seeded(yk_graph *g, int n, yk_node *const *nodes,
                             const yk_tensor *const *seeds);
/**
 * The gradient reaching node x in the last backward, dense, or NULL when
 * none reached it.
 */
const yk_tensor *yk_node_grad(yk_node *x);

/* ======================================================================
 * Ops. Each returns a new node, or NULL on error (message on the context).
 * Float operands of one op share a dtype (f32 or f64); indices are i64.
 * Dims may be negative and count from the end.
 * ====================================================================== */

/* Elementwise with PyTorch broadcasting. */
yk_node *yk_add(yk_graph *g, yk_node *a, yk_node *b);
yk_node *yk_sub(yk_graph *g, yk_node *a, yk_node *b);
yk_node *yk_mul(yk_graph *g, yk_node *a, yk_node *b);
yk_node *yk_div(yk_graph *g, yk_node *a, yk_node *b);

/** torch.matmul for 2-D and batched (>= 3-D, batch dims broadcast) operands. */
yk_node *yk_matmul(yk_graph *g, yk_node *a, yk_node *b);
/** y = x W^T + b: x (..., in), W (out, in), b (out) or NULL. */
yk_node *yk_linear(yk_graph *g, yk_node *x, yk_node *w, yk_node *b);

/**
 * Sum / mean over ndims dims (ndims == 0 or dims == NULL: over all dims).
 * Repeated or out-of-range dims are YK_EINVAL.
 */
yk_node *yk_sum(yk_graph *g, yk_node *x, int ndims, const int *dims,
                bool keepdim);
yk_node *yk_mean(yk_graph *g, yk_node *x, int ndims, const int *dims,
                 bool keepdim);

/** Same elements, new shape; one entry may be -1. */
yk_node *yk_reshape(yk_graph *g, yk_node *x, int ndim, const int64_t *shape);
/** x's elements start..start+length-1 along dim. */
yk_node *yk_narrow(yk_graph *g, yk_node *x, int dim, int64_t start,
                   int64_t length);
/**
 * Concatenation along dim. A column concatenation of 2-D tensors is lazy:
 * embedding and embedding_bag read rows from the parts and send gradient
 * rows back to them, so the [V, D1 + D2] matrix is never allocated unless
 * something else asks for its value.
 */
yk_node *yk_cat(yk_graph *g, int n, yk_node *const *xs, int dim);

yk_node *yk_relu(yk_graph *g, yk_node *x); /* gradient 0 at 0 */
yk_node *yk_tanh(yk_graph *g, yk_node *x);
yk_node *yk_sigmoid(yk_graph *g, yk_node *x);
yk_node *yk_exp(yk_graph *g, yk_node *x);
yk_node *yk_log(yk_graph *g, yk_node *x);

/** Numerically stable softmax / log_softmax along dim. */
yk_node *yk_softmax(yk_graph *g, yk_node *x, int dim);
yk_node *yk_log_softmax(yk_graph *g, yk_node *x, int dim);

typedef enum yk_reduction { YK_REDUCE_MEAN, YK_REDUCE_SUM } yk_reduction;
/** logits (N, C), target i64 (N) with every value in [0, C) (YK_ERANGE). */
yk_node *yk_cross_entropy(yk_graph *g, yk_node *logits, yk_node *target,
                          yk_reduction red);
/** target has input's shape (YK_ESHAPE otherwise). */
yk_node *yk_mse_loss(yk_graph *g, yk_node *input, yk_node *target,
                     yk_reduction red);

/** "No padding index" for embedding and embedding_bag. */
#define YK_NO_PADDING INT64_MIN

/**
 * torch.nn.functional.embedding: input i64 of any shape (0-d too), weight
 * [V, D]; output input.shape + (D,). padding_idx in [-V, V) or YK_NO_PADDING:
 * that row is looked up as is but gets no gradient. scale_grad_by_freq
 * divides row r's gradient by r's count in input. sparse asks for a
 * row-sparse gradient (same numbers).
 */
yk_node *yk_embedding(yk_graph *g, yk_node *input, yk_node *weight,
                      int64_t padding_idx, bool scale_grad_by_freq,
                      bool sparse);

typedef enum yk_bag_mode { YK_BAG_MEAN, YK_BAG_SUM, YK_BAG_MAX } yk_bag_mode;

typedef struct yk_bag_opts {
    yk_bag_mode mode;         /* YK_BAG_MEAN, as PyTorch's default      */
    bool include_last_offset; /* offsets[-1] closes the last bag        */
    int64_t padding_idx;      /* YK_NO_PADDING or in [-V, V)            */
    bool scale_grad_by_freq;  /* not with YK_BAG_MAX                    */
    bool sparse;              /* row-sparse gradient; not with MAX      */
} yk_bag_opts;

/** Mean mode, no padding, nothing else: PyTorch's defaults. */
yk_bag_opts yk_bag_defaults(void);

/**
 * torch.nn.functional.embedding_bag: input i64 1-D with offsets (i64 1-D),
 * or 2-D [B, L] (one bag a row) with offsets NULL. per_sample_weights (sum
 * mode only) has input's shape and weight's dtype, or is NULL. Output
 * [B, D]; empty bags give zeros. Invalid offsets are YK_EOFFSETS; see
 * README.md for every rule.
 */
yk_node *yk_embedding_bag(yk_graph *g, yk_node *input, yk_node *weight,
                          yk_node *offsets, yk_node *per_sample_weights,
                          const yk_bag_opts *opts);

/**
 * max_norm, as nn.Embedding has it: rescales, in place and outside any
 * graph (no gradient flows through it), every row of weight [V, D] that
 * input (i64, any shape) looks up and whose norm_type-norm exceeds max_norm,
 * to norm max_norm (PyTorch's embedding_renorm_: scale max_norm / (norm +
 * 1e-7)). Call it before the lookup. Out-of-range indices are YK_ERANGE.
 */
yk_status yk_embedding_renorm(yk_tensor *weight, const yk_tensor *input,
                              double max_norm, double norm_type);

/* ======================================================================
 * The op registry: every op, its argument and attribute names, as case
 * files name them. Generated from ops/ops.def; read-only.
 * ====================================================================== */

typedef enum yk_attr_type {
    YK_ATTR_INT,      /* an integer                                   */
    YK_ATTR_BOOL,     /* true / false                                 */
    YK_ATTR_STRING,   /* one of a few names (mode, reduction)         */
    YK_ATTR_INT_LIST, /* a list of integers (shape)                   */
    YK_ATTR_DIMS      /* null, an integer, or a list of integers      */
} yk_attr_type;

typedef struct yk_attr_spec {
    const char *name;
    yk_attr_type type;
    bool nullable;    /* null is a valid value                        */
    bool required;    /* no default: a case must give it              */
    int64_t def_int;  /* default of INT / BOOL                        */
    const char *def_string; /* default of STRING                      */
} yk_attr_spec;

typedef struct yk_attr_value {
    bool is_null;
    int64_t i;                  /* INT, BOOL                          */
    const char *s;              /* STRING                             */
    int n;                      /* INT_LIST, DIMS: number of entries  */
    int64_t list[YK_MAX_DIMS];  /* INT_LIST, DIMS                     */
} yk_attr_value;

#define YK_OP_MAX_INPUTS 4
#define YK_OP_MAX_ATTRS 6

typedef struct yk_op_def {
    const char *name;
    int n_inputs;
    const char *input_names[YK_OP_MAX_INPUTS];
    unsigned optional_inputs; /* bit i: input i may be absent (NULL)    */
    unsigned index_inputs;    /* bit i: input i is i64, never has grad  */
    bool variadic;            /* one input, a list of tensors (cat)     */
    int n_attrs;
    yk_attr_spec attrs[YK_OP_MAX_ATTRS];
    /* Calls the public op function: inputs in input_names order (for a
     * variadic op, n_in nodes of the list), attrs in attrs order. */
    yk_node *(*build)(yk_graph *g, yk_node *const *in, int n_in,
                      const yk_attr_value *attrs);
    /* Backward (internal; see lib/engine.h). */
    yk_status (*backward)(yk_graph *g, yk_node *node, const void *grad_out);
    /* Optional: backward from a row-sparse output gradient (lazy cat). */
    yk_status (*backward_rows)(yk_graph *g, yk_node *node, const void *rows);
} yk_op_def;

/** Number of registered ops; yk_op_at(i) for i in [0, count). */
int yk_op_count(void);
const yk_op_def *yk_op_at(int i);
/** The op of that name, or NULL. */
const yk_op_def *yk_op_find(const char *name);

#ifdef __cplusplus
}
#endif

#include "yoke_check.h"
#include "yoke_optim.h"
#include "yoke_io.h"
#include "yoke_nn.h"
#include "yoke_inspect.h"

#endif /* YOKE_H */
