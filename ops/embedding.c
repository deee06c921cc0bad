/*
 * embedding.c -- embedding and embedding_bag (sum, mean, max), forward and
 * backward side by side, and embedding_renorm (max_norm).
 *
 * Both ops read the weight row by row (as column blocks, each part of a
 * lazy column concatenation cat([shared, extra], 1) in place, the way
 * yk__row() defines its rows) and send its gradient only through
 * yk__grad_rows(), never as a dense [V, D] buffer: a lazy weight is never
 * materialized, and a large vocabulary costs no V-sized work per step.
 * The forward kernels keep a bag in registers, prefetch rows well ahead
 * (random rows of a big table are memory-latency bound) and split bags
 * over the context's threads; every output element is computed by one
 * thread in input order, so the bits do not depend on the thread count.
 *
 * Backward groups the lookups by weight row (a stable radix sort of the
 * entry positions), so each distinct row gets one gradient row, summed in
 * input order: the same bits on every run, no V-sized count array for
 * scale_grad_by_freq, and a compact row chunk for the engine.
 *
 * The semantics follow ../shared/case-format.md ("Semantics that are easy to
 * get wrong"): padding entries are skipped entirely in bags, the max's
 * gradient goes to the first entry holding it, scale_grad_by_freq divides by
 * the row's count over the whole input of the call, and every invalid
 * offsets form is rejected.
 */
#include "../lib/engine.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The normalized "no padding" row: never equal to a valid index. */
#define NO_ROW (-1)

/* --------------------------------------------------- small kernels */

/* Vectorizes a loop at -O2 as well (GCC's -O2 cost model leaves loops of
 * unknown length scalar); a no-op without OpenMP. */
#ifdef _OPENMP
#include <omp.h>
#define SIMD _Pragma("omp simd")
#else
#define SIMD
#endif

/*
 * A weight is read as column blocks: an ordinary weight is one block; a
 * lazy column concatenation (yk__row's "lazy cat": a row is its parts'
 * rows side by side) is one block per part that holds data, so a bag over
 * cat([shared, extra], 1) reads each part's rows in place, as two bags
 * would, and the [V, D1 + D2] matrix is never made.
 */
typedef struct col_block {
    const char *base; /* the part's data, [V, cols]            */
    int64_t cols;     /* its columns                            */
    int64_t col;      /* its first column in the weight's row   */
} col_block;

static int count_blocks(const yk_node *w)
{
    if (w->value.data)
        return 1;
    int n = 0;
    for (int i = 0; i < w->n_inputs; i++)
        n += count_blocks(w->inputs[i]);
    return n;
}

static int fill_blocks(const yk_node *w, int64_t col, col_block *out)
{
    if (w->value.data) {
        *out = (col_block){w->value.data, w->value.shape[1], col};
        return 1;
    }
    int n = 0;
    for (int i = 0; i < w->n_inputs; i++) {
        n += fill_blocks(w->inputs[i], col, out + n);
        col += w->inputs[i]->value.shape[1];
    }
    return n;
}

/* The weight's column blocks, in the arena; NULL (graph failed) on OOM. */
static col_block *weight_blocks(yk_graph *g, const yk_node *w, int *n)
{
    *n = count_blocks(w);
    col_block *b = yk__arena_alloc_raw(g, (size_t)*n * sizeof *b);
    if (b)
        fill_blocks(w, 0, b);
    return b;
}

/* y += c x over n elements. */
static inline void axpy_f32(int64_t n, float c, const float *restrict x,
                            float *restrict y)
{
    SIMD
    for (int64_t k = 0; k < n; k++)
        y[k] += c * x[k];
}

static inline void axpy_f64(int64_t n, double c, const double *restrict x,
                            double *restrict y)
{
    SIMD
    for (int64_t k = 0; k < n; k++)
        y[k] += c * x[k];
}

/* y /= c over n elements (scale_grad_by_freq's count). */
static inline void div_f32(int64_t n, float c, float *restrict y)
{
    SIMD
    for (int64_t k = 0; k < n; k++)
        y[k] /= c;
}

static inline void div_f64(int64_t n, double c, double *restrict y)
{
    SIMD
    for (int64_t k = 0; k < n; k++)
        y[k] /= c;
}

yk_bag_opts yk_bag_defaults(void)
{
    yk_bag_opts o = {YK_BAG_MEAN, false, YK_NO_PADDING, false, false};
    return o;
}

/* ------------------------------------------------------ shared checks */

/* The weight must be a float matrix [V, D]. Its value is not touched (a
 * lazy cat stays unmade): only its dtype and shape are read. */
static bool weight_ok(yk_graph *g, const char *op, const yk_node *w)
{
    const yk_tensor *t = &w->value;
    if (t->dtype == YK_I64) {
        yk__fail(g, YK_EDTYPE, "%s: weight is i64, needs f32 or f64", op);
        return false;
    }
    if (t->ndim != 2) {
        char b[96];
        yk__fail(g, YK_ESHAPE, "%s: weight must be 2-D [V, D], got shape %s",
                 op, yk_shape_format(t, b, sizeof b));
        return false;
    }
    return true;
}

/* Index tensors (input, offsets) are i64. */
static bool indices_ok(yk_graph *g, const char *op, const char *arg,
                       const yk_tensor *t)
{
    if (t->dtype != YK_I64) {
        yk__fail(g, YK_EDTYPE, "%s: %s is %s, needs i64 indices", op, arg,
                 yk_dtype_name(t->dtype));
        return false;
    }
    return true;
}

/* padding_idx in [-V, V) (negative counts from the end) or YK_NO_PADDING;
 * *row gets the row it names, or NO_ROW. */
static bool padding_ok(yk_graph *g, const char *op, int64_t padding_idx,
                       int64_t V, int64_t *row)
{
    *row = NO_ROW;
    if (padding_idx == YK_NO_PADDING)
        return true;
    if (padding_idx < -V || padding_idx >= V) {
        yk__fail(g, YK_EINVAL, "%s: padding_idx = %lld is out of range for a "
                 "weight with %lld rows (needs %lld <= padding_idx < %lld)",
                 op, (long long)padding_idx, (long long)V, (long long)-V,
                 (long long)V);
        return false;
    }
    *row = padding_idx < 0 ? padding_idx + V : padding_idx;
    return true;
}

/* "input[17]", "input[1, 2]" or "input" (0-d) for flat position i. */
static void format_position(const yk_tensor *t, int64_t i, char *buf,
                            size_t size)
{
    int64_t sub[YK_MAX_DIMS];
    for (int k = t->ndim - 1; k >= 0; k--) {
        sub[k] = t->shape[k] ? i % t->shape[k] : 0;
        i = t->shape[k] ? i / t->shape[k] : 0;
    }
    size_t n = (size_t)snprintf(buf, size, "input");
    for (int k = 0; k < t->ndim && n < size; k++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", k ? ", " : "[",
                              (long long)sub[k]);
    if (t->ndim > 0 && n < size)
        snprintf(buf + n, size - n, "]");
}

/* Every index in [0, V), else YK_ERANGE naming the first bad position. */
static bool range_ok(yk_graph *g, const char *op, const yk_tensor *input,
                     int64_t V)
{
    const int64_t *idx = input->data;
    /* One unsigned compare catches both sides; without an early exit the
     * common all-good pass vectorizes. The culprit is looked for after. */
    bool bad = false;
    for (int64_t i = 0; i < input->numel; i++)
        bad |= (uint64_t)idx[i] >= (uint64_t)V;
    for (int64_t i = 0; bad && i < input->numel; i++) {
        if (idx[i] < 0 || idx[i] >= V) {
            char pos[160];
            format_position(input, i, pos, sizeof pos);
            yk__fail(g, YK_ERANGE, "%s: %s = %lld is out of range for a "
                     "weight with %lld rows", op, pos, (long long)idx[i],
                     (long long)V);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------- grouping by row */

/*
 * Stable LSD radix sort of the items in perm[0..m) by key[item], keys in
 * [0, max_key]; tmp holds m items. Stability keeps equal rows in input
 * order, so gradient sums never depend on anything but the input. A few
 * items are sorted by insertion (also stable): a pass's 256 counters cost
 * more than that (11 % of the seed example's step).
 */
static void radix_sort_by_key(int64_t m, const int64_t *key, int64_t max_key,
                              int64_t *perm, int64_t *tmp)
{
    if (m <= 32) {
        for (int64_t i = 1; i < m; i++) {
            int64_t item = perm[i], j = i;
            for (; j > 0 && key[perm[j - 1]] > key[item]; j--)
                perm[j] = perm[j - 1];
            perm[j] = item;
        }
        return;
    }
    int64_t *src = perm, *dst = tmp;
    for (int shift = 0; shift < 64 && (max_key >> shift) > 0; shift += 8) {
        int64_t count[257] = {0};
        for (int64_t i = 0; i < m; i++)
            count[((key[src[i]] >> shift) & 255) + 1]++;
        for (int d = 0; d < 256; d++)
            count[d + 1] += count[d];
        for (int64_t i = 0; i < m; i++)
            dst[count[(key[src[i]] >> shift) & 255]++] = src[i];
        int64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != perm)
        memcpy(perm, src, (size_t)m * sizeof *perm);
}

/* The non-padding lookups of an op, grouped by weight row. */
typedef struct row_groups {
    int64_t n_rows;  /* distinct rows looked up                          */
    int64_t *rows;   /* [n_rows], ascending                              */
    int64_t *start;  /* [n_rows + 1]: group k is order[start[k]..start[k+1]) */
    int64_t *order;  /* positions in input, grouped, input order in a group */
} row_groups;

/* Groups positions 0..n of idx (values in [0, V)) by row, leaving out
 * positions whose row is `padding`. Arena memory; false on OOM. */
static bool group_by_row(yk_graph *g, const int64_t *idx, int64_t n,
                         int64_t padding, int64_t V, row_groups *rg)
{
    /* (not zeroed: each is written before it is read) */
    int64_t *order = yk__arena_alloc_raw(g, (size_t)n * sizeof *order);
    int64_t *tmp = yk__arena_alloc_raw(g, (size_t)n * sizeof *tmp);
    rg->rows = yk__arena_alloc_raw(g, (size_t)n * sizeof *rg->rows);
    rg->start = yk__arena_alloc_raw(g, (size_t)(n + 1) * sizeof *rg->start);
    if (!order || !tmp || !rg->rows || !rg->start)
        return false;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (idx[i] != padding)
            order[m++] = i;
    radix_sort_by_key(m, idx, V - 1, order, tmp);
    int64_t u = 0;
    for (int64_t k = 0; k < m; k++) {
        if (k == 0 || idx[order[k]] != idx[order[k - 1]]) {
            rg->rows[u] = idx[order[k]];
            rg->start[u++] = k;
        }
    }
    rg->start[u] = m;
    rg->n_rows = u;
    rg->order = order;
    return true;
}

/* ========================================================== embedding */

typedef struct emb_saved {
    int64_t padding; /* normalized padding row, or NO_ROW */
    bool scale_grad_by_freq;
    bool sparse;
} emb_saved;

/* One column block of an embedding's output rows. */
typedef struct emb_job {
    const int64_t *idx;
    int64_t n;        /* positions                   */
    col_block blk;
    char *out;        /* [n, D]                      */
    size_t out_rb;    /* bytes of an output row      */
    size_t es;        /* bytes of an element         */
} emb_job;

/* out[i] = weight[idx[i]] (this block's columns) for positions [lo, hi);
 * a padding row is output as is. */
static void gather_rows(const void *job, int64_t lo, int64_t hi)
{
    const emb_job *j = job;
    size_t rb = (size_t)j->blk.cols * j->es;
    int64_t ahead = yk__prefetch_distance(rb);
    char *out = j->out + (size_t)j->blk.col * j->es;
    for (int64_t i = lo; i < hi; i++) {
        if (i + ahead < j->n)
            yk__prefetch_read(j->blk.base + (size_t)j->idx[i + ahead] * rb, rb);
        memcpy(out + (size_t)i * j->out_rb,
               j->blk.base + (size_t)j->idx[i] * rb, rb);
    }
}

/* The output, one pass per column block of the weight; false on OOM. */
static bool embedding_forward(yk_graph *g, const yk_node *w,
                              const int64_t *idx, int64_t n, char *out)
{
    int n_blocks;
    col_block *blocks = weight_blocks(g, w, &n_blocks);
    if (!blocks)
        return false;
    size_t es = yk_dtype_size(w->value.dtype);
    emb_job j = {.idx = idx, .n = n, .out = out, .es = es,
                 .out_rb = (size_t)w->value.shape[1] * es};
    for (int k = 0; k < n_blocks; k++) {
        j.blk = blocks[k];
        yk__run_split(g->ctx, gather_rows, &j, n, j.blk.cols + 1);
    }
    return true;
}

yk_node *yk_embedding(yk_graph *g, yk_node *input, yk_node *weight,
                      int64_t padding_idx, bool scale_grad_by_freq,
                      bool sparse)
{
    yk_node *in[2] = {input, weight};
    if (!yk__inputs_ok(g, "embedding", 2, in))
        return NULL;
    if (!weight_ok(g, "embedding", weight))
        return NULL;
    const yk_tensor *idx = yk_value(input);
    if (!idx || !indices_ok(g, "embedding", "input", idx))
        return NULL;
    if (idx->ndim + 1 > YK_MAX_DIMS) {
        char b[160];
        return yk__fail(g, YK_ESHAPE, "embedding: input has shape %s (%d "
                        "dims); the output would have %d dims, more than %d",
                        yk_shape_format(idx, b, sizeof b), idx->ndim,
                        idx->ndim + 1, YK_MAX_DIMS);
    }
    int64_t V = weight->value.shape[0], D = weight->value.shape[1], pad;
    if (!padding_ok(g, "embedding", padding_idx, V, &pad) ||
        !range_ok(g, "embedding", idx, V))
        return NULL;
    int64_t shape[YK_MAX_DIMS];
    memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
    shape[idx->ndim] = D;
    yk_node *y = yk__node_new(g, &yk_op_embedding, 2, in,
                              weight->value.dtype, idx->ndim + 1, shape);
    emb_saved *s = y ? yk__save(y, sizeof *s) : NULL;
    if (!s)
        return NULL;
    s->padding = pad;
    s->scale_grad_by_freq = scale_grad_by_freq;
    s->sparse = sparse;
    if (!embedding_forward(g, weight, idx->data, idx->numel, yk__data(y)))
        return NULL;
    return y;
}

/* The weight gradient of rows [k0, k1) of the groups: one thread's share. */
typedef struct grad_job {
    const row_groups *rg;
    const void *saved;  /* emb_saved or bag_saved          */
    const void *psw;    /* per_sample_weights, or NULL      */
    const void *gy;
    int64_t D;
    void *dw;           /* [n_rows, D], to write in full    */
} grad_job;

/* dW[row] = sum of gy over the row's positions (divided by their count with
 * scale_grad_by_freq), one gradient row per distinct row. */
static void embedding_backward_f32(const void *job, int64_t k0, int64_t k1)
{
    const grad_job *jb = job;
    const row_groups *rg = jb->rg;
    const float *gy = jb->gy;
    bool scale = ((const emb_saved *)jb->saved)->scale_grad_by_freq;
    int64_t D = jb->D;
    for (int64_t k = k0; k < k1; k++) {
        float *d = (float *)jb->dw + k * D;
        memset(d, 0, (size_t)D * sizeof *d);
        for (int64_t j = rg->start[k]; j < rg->start[k + 1]; j++)
            axpy_f32(D, 1, gy + rg->order[j] * D, d);
        if (scale)
            div_f32(D, (float)(rg->start[k + 1] - rg->start[k]), d);
    }
}

static void embedding_backward_f64(const void *job, int64_t k0, int64_t k1)
{
    const grad_job *jb = job;
    const row_groups *rg = jb->rg;
    const double *gy = jb->gy;
    bool scale = ((const emb_saved *)jb->saved)->scale_grad_by_freq;
    int64_t D = jb->D;
    for (int64_t k = k0; k < k1; k++) {
        double *d = (double *)jb->dw + k * D;
        memset(d, 0, (size_t)D * sizeof *d);
        for (int64_t j = rg->start[k]; j < rg->start[k + 1]; j++)
            axpy_f64(D, 1, gy + rg->order[j] * D, d);
        if (scale)
            div_f64(D, (double)(rg->start[k + 1] - rg->start[k]), d);
    }
}

/* Splits the rows of a weight gradient over the threads: each row is
 * summed by one thread, in input order, so the bits do not depend on the
 * thread count. */
static void run_grad_rows(yk_graph *g, yk__range_kernel kernel,
                          const grad_job *jb, int64_t entries)
{
    int64_t per_row = jb->rg->n_rows ? entries / jb->rg->n_rows + 1 : 1;
    yk__run_split(g->ctx, kernel, jb, jb->rg->n_rows, per_row * (jb->D + 1));
}

static yk_status backward_embedding(yk_graph *g, yk_node *y, const void *gy)
{
    if (!yk__needs_grad(y, 1))
        return YK_OK;
    const emb_saved *s = y->saved;
    const yk_tensor *idx = &y->inputs[0]->value;
    const yk_tensor *w = &y->inputs[1]->value;
    int64_t D = w->shape[1];
    row_groups rg;
    if (!group_by_row(g, idx->data, idx->numel, s->padding, w->shape[0], &rg))
        return g->status;
    /* Called even with no rows: a lookup of only padding still counts as a
     * (sparse) use of the weight. */
    void *dw = yk__grad_rows(g, y, 1, rg.n_rows, rg.rows, s->sparse);
    if (!dw)
        return g->status;
    grad_job jb = {.rg = &rg, .saved = s, .gy = gy, .D = D, .dw = dw};
    run_grad_rows(g, w->dtype == YK_F32 ? embedding_backward_f32
                                        : embedding_backward_f64,
                  &jb, idx->numel);
    return YK_OK;
}

static yk_node *build_embedding(yk_graph *g, yk_node *const *in, int n,
                                const yk_attr_value *a)
{
    (void)n;
    int64_t padding = a[0].is_null ? YK_NO_PADDING : a[0].i;
    return yk_embedding(g, in[0], in[1], padding, a[1].i != 0, a[2].i != 0);
}

const yk_op_def yk_op_embedding = {
    .name = "embedding",
    .n_inputs = 2,
    .input_names = {"input", "weight"},
    .index_inputs = 1u << 0,
    .n_attrs = 3,
    .attrs = {
        {.name = "padding_idx", .type = YK_ATTR_INT, .nullable = true},
        {.name = "scale_grad_by_freq", .type = YK_ATTR_BOOL},
        {.name = "sparse", .type = YK_ATTR_BOOL},
    },
    .build = build_embedding,
    .backward = backward_embedding,
};

/* ====================================================== embedding_bag */

enum { BAG_INPUT, BAG_WEIGHT, BAG_OFFSETS, BAG_PSW, BAG_N_INPUTS };

/* Where the bags are: offsets into a 1-D input, or rows of length L. */
typedef struct bag_layout {
    int64_t n_bags;
    int64_t n;              /* entries in input                     */
    const int64_t *offsets; /* NULL for a 2-D input                 */
    int64_t n_offsets;
    int64_t row_len;        /* L, for a 2-D input                   */
} bag_layout;

/* Bag b is input[*lo .. *hi). */
static inline void bag_range(const bag_layout *l, int64_t b, int64_t *lo,
                             int64_t *hi)
{
    if (!l->offsets) {
        *lo = b * l->row_len;
        *hi = *lo + l->row_len;
    } else {
        *lo = l->offsets[b];
        *hi = b + 1 < l->n_offsets ? l->offsets[b + 1] : l->n;
    }
}

typedef struct bag_saved {
    yk_bag_mode mode;
    int64_t padding;    /* normalized padding row, or NO_ROW        */
    bool scale_grad_by_freq;
    bool sparse;
    int64_t *bag_of;    /* [n]: the bag of entry i, -1 for padding  */
    int64_t *size;      /* [n_bags]: non-padding entries (mean divisor) */
    int64_t *argmax;    /* [n_bags * D] (max): entry holding the max, -1 if empty */
} bag_saved;

static const char *mode_name(yk_bag_mode m)
{
    return m == YK_BAG_SUM ? "sum" : m == YK_BAG_MEAN ? "mean" : "max";
}

/* Offsets, per case-format.md: missing for 1-D input or given with 2-D
 * input, not 1-D, empty, offsets[0] != 0, decreasing, past the end of
 * input, or (include_last_offset) not ending at len(input): YK_EOFFSETS.
 * A non-i64 offsets tensor is YK_EDTYPE, as for every index tensor. */
static bool offsets_ok(yk_graph *g, const yk_tensor *input, yk_node *offsets,
                       bool include_last)
{
    char b[96];
    if (input->ndim == 2) {
        if (offsets)
            yk__fail(g, YK_EOFFSETS, "embedding_bag: offsets given with a "
                     "2-D input %s; a 2-D input is one bag a row and takes "
                     "no offsets", yk_shape_format(input, b, sizeof b));
        return !offsets;
    }
    if (!offsets) {
        yk__fail(g, YK_EOFFSETS, "embedding_bag: offsets are missing; a 1-D "
                 "input needs offsets (the start of each bag)");
        return false;
    }
    const yk_tensor *o = yk_value(offsets);
    if (!o || !indices_ok(g, "embedding_bag", "offsets", o))
        return false;
    if (o->ndim != 1) {
        yk__fail(g, YK_EOFFSETS, "embedding_bag: offsets must be 1-D, got "
                 "shape %s", yk_shape_format(o, b, sizeof b));
        return false;
    }
    const int64_t *off = o->data;
    int64_t k = o->numel, len = input->numel;
    if (k == 0) {
        yk__fail(g, YK_EOFFSETS, "embedding_bag: offsets are empty; they "
                 "need at least one entry (offsets[0] = 0)");
        return false;
    }
    if (off[0] != 0) {
        yk__fail(g, YK_EOFFSETS, "embedding_bag: offsets[0] = %lld, must be "
                 "0", (long long)off[0]);
        return false;
    }
    for (int64_t i = 1; i < k; i++)
        if (off[i] < off[i - 1]) {
            yk__fail(g, YK_EOFFSETS, "embedding_bag: offsets[%lld] = %lld is "
                     "less than offsets[%lld] = %lld; offsets must not "
                     "decrease", (long long)i, (long long)off[i],
                     (long long)(i - 1), (long long)off[i - 1]);
            return false;
        }
    if (off[k - 1] > len) {
        yk__fail(g, YK_EOFFSETS, "embedding_bag: offsets[%lld] = %lld is past "
                 "the end of input (length %lld)", (long long)(k - 1),
                 (long long)off[k - 1], (long long)len);
        return false;
    }
    if (include_last && off[k - 1] != len) {
        yk__fail(g, YK_EOFFSETS, "embedding_bag: with include_last_offset, "
                 "offsets[%lld] = %lld must equal the length of input (%lld)",
                 (long long)(k - 1), (long long)off[k - 1], (long long)len);
        return false;
    }
    return true;
}

/* Mode-dependent options: max takes neither scale_grad_by_freq nor sparse;
 * per_sample_weights need sum mode, weight's dtype and input's shape. */
static bool bag_options_ok(yk_graph *g, const yk_bag_opts *o,
                           const yk_tensor *input, yk_node *psw,
                           yk_dtype wdt)
{
    if (o->mode == YK_BAG_MAX && o->scale_grad_by_freq) {
        yk__fail(g, YK_EINVAL, "embedding_bag: scale_grad_by_freq is not "
                 "supported with mode max");
        return false;
    }
    if (o->mode == YK_BAG_MAX && o->sparse) {
        yk__fail(g, YK_EINVAL, "embedding_bag: sparse is not supported with "
                 "mode max");
        return false;
    }
    if (!psw)
        return true;
    if (o->mode != YK_BAG_SUM) {
        yk__fail(g, YK_EINVAL, "embedding_bag: per_sample_weights are only "
                 "supported with mode sum, not %s", mode_name(o->mode));
        return false;
    }
    const yk_tensor *p = yk_value(psw);
    if (!p)
        return false;
    if (p->dtype != wdt) {
        yk__fail(g, YK_EDTYPE, "embedding_bag: per_sample_weights are %s but "
                 "weight is %s", yk_dtype_name(p->dtype), yk_dtype_name(wdt));
        return false;
    }
    if (!yk__same_shape(p, input)) {
        char a[96], b[96];
        yk__fail(g, YK_ESHAPE, "embedding_bag: per_sample_weights have shape "
                 "%s but input has shape %s", yk_shape_format(p, a, sizeof a),
                 yk_shape_format(input, b, sizeof b));
        return false;
    }
    return true;
}

/* Checks everything but the indices' range; fills the layout. */
static bool bag_args_ok(yk_graph *g, yk_node *const *in, const yk_bag_opts *o,
                        bag_layout *l)
{
    if (o->mode != YK_BAG_SUM && o->mode != YK_BAG_MEAN &&
        o->mode != YK_BAG_MAX) {
        yk__fail(g, YK_EINVAL, "embedding_bag: mode = %d is not a bag mode "
                 "(YK_BAG_SUM, YK_BAG_MEAN or YK_BAG_MAX)", (int)o->mode);
        return false;
    }
    if (!weight_ok(g, "embedding_bag", in[BAG_WEIGHT]))
        return false;
    const yk_tensor *input = yk_value(in[BAG_INPUT]);
    if (!input || !indices_ok(g, "embedding_bag", "input", input))
        return false;
    if (input->ndim != 1 && input->ndim != 2) {
        char b[96];
        yk__fail(g, YK_ESHAPE, "embedding_bag: input must be 1-D (with "
                 "offsets) or 2-D (one bag a row), got shape %s",
                 yk_shape_format(input, b, sizeof b));
        return false;
    }
    if (!offsets_ok(g, input, in[BAG_OFFSETS], o->include_last_offset) ||
        !bag_options_ok(g, o, input, in[BAG_PSW],
                        in[BAG_WEIGHT]->value.dtype))
        return false;
    l->n = input->numel;
    if (input->ndim == 2) {
        l->n_bags = input->shape[0];
        l->row_len = input->shape[1];
        l->offsets = NULL;
    } else {
        const yk_tensor *off = &in[BAG_OFFSETS]->value;
        l->offsets = off->data;
        l->n_offsets = off->numel;
        l->n_bags = off->numel - (o->include_last_offset ? 1 : 0);
    }
    return true;
}

/* One pass of a bag kernel: the bags' lookups in one column block of the
 * weight, into the output columns of that block. */
typedef struct bag_job {
    const bag_layout *l;
    const int64_t *idx;
    int64_t pad;
    const void *psw;  /* per_sample_weights (sum), or NULL          */
    bool mean;
    col_block blk;
    void *out;        /* [n_bags, D]                                */
    int64_t D;
    int64_t *argmax;  /* [n_bags, D] (max, when backward needs it)  */
} bag_job;

/* Blocks up to this wide are accumulated in a local row (registers for
 * the specialized widths) rather than in the output row. */
#define LOCAL_COLS 128

/* Sum (or mean) of each bag's non-padding rows, psw[i] times row i when
 * given: each output element is 0 + row + row ... in entry order, then
 * divided by the count (mean of more than one row). always_inline lets
 * the dispatchers below specialize cols. */
static inline __attribute__((always_inline)) void
sum_bags_f32(const bag_job *j, int64_t b0, int64_t b1, int64_t cols)
{
    const float *w = (const float *)j->blk.base, *psw = j->psw;
    const int64_t *idx = j->idx;
    size_t rb = (size_t)cols * sizeof(float);
    int64_t ahead = yk__prefetch_distance(rb), n = j->l->n;
    float local[LOCAL_COLS];
    for (int64_t b = b0; b < b1; b++) {
        float *o = (float *)j->out + b * j->D + j->blk.col;
        float *acc = cols <= LOCAL_COLS ? local : o;
        int64_t lo, hi, count = 0;
        bag_range(j->l, b, &lo, &hi);
        for (int64_t d = 0; d < cols; d++)
            acc[d] = 0;
        for (int64_t i = lo; i < hi; i++) {
            if (i + ahead < n)
                yk__prefetch_read(w + idx[i + ahead] * cols, rb);
            if (idx[i] == j->pad)
                continue;
            const float *r = w + idx[i] * cols;
            if (psw)
                axpy_f32(cols, psw[i], r, acc);
            else
                SIMD for (int64_t d = 0; d < cols; d++)
                    acc[d] += r[d];
            count++;
        }
        float div = j->mean && count > 1 ? (float)count : 1.0f;
        for (int64_t d = 0; d < cols; d++)
            o[d] = acc[d] / div;
    }
}

static inline __attribute__((always_inline)) void
sum_bags_f64(const bag_job *j, int64_t b0, int64_t b1, int64_t cols)
{
    const double *w = (const double *)j->blk.base, *psw = j->psw;
    const int64_t *idx = j->idx;
    size_t rb = (size_t)cols * sizeof(double);
    int64_t ahead = yk__prefetch_distance(rb), n = j->l->n;
    double local[LOCAL_COLS];
    for (int64_t b = b0; b < b1; b++) {
        double *o = (double *)j->out + b * j->D + j->blk.col;
        double *acc = cols <= LOCAL_COLS ? local : o;
        int64_t lo, hi, count = 0;
        bag_range(j->l, b, &lo, &hi);
        for (int64_t d = 0; d < cols; d++)
            acc[d] = 0;
        for (int64_t i = lo; i < hi; i++) {
            if (i + ahead < n)
                yk__prefetch_read(w + idx[i + ahead] * cols, rb);
            if (idx[i] == j->pad)
                continue;
            const double *r = w + idx[i] * cols;
            if (psw)
                axpy_f64(cols, psw[i], r, acc);
            else
                SIMD for (int64_t d = 0; d < cols; d++)
                    acc[d] += r[d];
            count++;
        }
        double div = j->mean && count > 1 ? (double)count : 1.0;
        for (int64_t d = 0; d < cols; d++)
            o[d] = acc[d] / div;
    }
}

static inline void fill_i64(int64_t *a, int64_t n, int64_t v)
{
    for (int64_t k = 0; k < n; k++)
        a[k] = v;
}

/* o = max(o, r) columnwise; with arg, a strict > keeps the first entry
 * holding the max and records entry i where r wins. */
static inline void max_f32(int64_t n, const float *restrict r,
                           float *restrict o)
{
    SIMD
    for (int64_t k = 0; k < n; k++)
        o[k] = r[k] > o[k] ? r[k] : o[k];
}

static inline void max_f64(int64_t n, const double *restrict r,
                           double *restrict o)
{
    SIMD
    for (int64_t k = 0; k < n; k++)
        o[k] = r[k] > o[k] ? r[k] : o[k];
}

static inline void max_arg_f32(int64_t n, const float *restrict r,
                               float *restrict o, int64_t *restrict a,
                               int64_t i)
{
    SIMD
    for (int64_t k = 0; k < n; k++) {
        /* a mask, not a branch, so that the loop vectorizes */
        int64_t gt = -(int64_t)(r[k] > o[k]);
        o[k] = r[k] > o[k] ? r[k] : o[k];
        a[k] = (i & gt) | (a[k] & ~gt);
    }
}

static inline void max_arg_f64(int64_t n, const double *restrict r,
                               double *restrict o, int64_t *restrict a,
                               int64_t i)
{
    SIMD
    for (int64_t k = 0; k < n; k++) {
        /* a mask, not a branch, so that the loop vectorizes */
        int64_t gt = -(int64_t)(r[k] > o[k]);
        o[k] = r[k] > o[k] ? r[k] : o[k];
        a[k] = (i & gt) | (a[k] & ~gt);
    }
}

/* Columnwise max of each bag's non-padding rows. Strict > keeps the FIRST
 * entry holding the max in argmax (when kept); an empty bag stays zeros
 * with argmax -1. */
static inline __attribute__((always_inline)) void
max_bags_f32(const bag_job *j, int64_t b0, int64_t b1, int64_t cols)
{
    const float *w = (const float *)j->blk.base;
    const int64_t *idx = j->idx;
    size_t rb = (size_t)cols * sizeof(float);
    int64_t ahead = yk__prefetch_distance(rb), n = j->l->n;
    float local[LOCAL_COLS];
    for (int64_t b = b0; b < b1; b++) {
        float *o = (float *)j->out + b * j->D + j->blk.col;
        float *acc = cols <= LOCAL_COLS ? local : o;
        int64_t *a = j->argmax ? j->argmax + b * j->D + j->blk.col : NULL;
        int64_t lo, hi;
        bool first = true;
        bag_range(j->l, b, &lo, &hi);
        for (int64_t d = 0; d < cols; d++)
            acc[d] = 0;
        if (a)
            fill_i64(a, cols, -1);
        for (int64_t i = lo; i < hi; i++) {
            if (i + ahead < n)
                yk__prefetch_read(w + idx[i + ahead] * cols, rb);
            if (idx[i] == j->pad)
                continue;
            const float *r = w + idx[i] * cols;
            if (first) {
                for (int64_t d = 0; d < cols; d++)
                    acc[d] = r[d];
                if (a)
                    fill_i64(a, cols, i);
                first = false;
            } else if (a) {
                max_arg_f32(cols, r, acc, a, i);
            } else {
                max_f32(cols, r, acc);
            }
        }
        if (acc != o)
            memcpy(o, acc, rb);
    }
}

static inline __attribute__((always_inline)) void
max_bags_f64(const bag_job *j, int64_t b0, int64_t b1, int64_t cols)
{
    const double *w = (const double *)j->blk.base;
    const int64_t *idx = j->idx;
    size_t rb = (size_t)cols * sizeof(double);
    int64_t ahead = yk__prefetch_distance(rb), n = j->l->n;
    double local[LOCAL_COLS];
    for (int64_t b = b0; b < b1; b++) {
        double *o = (double *)j->out + b * j->D + j->blk.col;
        double *acc = cols <= LOCAL_COLS ? local : o;
        int64_t *a = j->argmax ? j->argmax + b * j->D + j->blk.col : NULL;
        int64_t lo, hi;
        bool first = true;
        bag_range(j->l, b, &lo, &hi);
        for (int64_t d = 0; d < cols; d++)
            acc[d] = 0;
        if (a)
            fill_i64(a, cols, -1);
        for (int64_t i = lo; i < hi; i++) {
            if (i + ahead < n)
                yk__prefetch_read(w + idx[i + ahead] * cols, rb);
            if (idx[i] == j->pad)
                continue;
            const double *r = w + idx[i] * cols;
            if (first) {
                for (int64_t d = 0; d < cols; d++)
                    acc[d] = r[d];
                if (a)
                    fill_i64(a, cols, i);
                first = false;
            } else if (a) {
                max_arg_f64(cols, r, acc, a, i);
            } else {
                max_f64(cols, r, acc);
            }
        }
        if (acc != o)
            memcpy(o, acc, rb);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/*
 * The sum (mean) of 64-float rows with AVX2 when the CPU has it, as
 * PyTorch's (caffe2's) kernel does it: the bag in eight registers and the
 * prefetches of the row ahead interleaved with this row's adds, which the
 * portable kernel leaves to the compiler (it hoists them into one block).
 * The same adds in the same order, so the same bits.
 */
__attribute__((target("avx2"))) static void
sum_bags_64_avx2(const bag_job *j, int64_t b0, int64_t b1)
{
    const float *w = (const float *)j->blk.base;
    const int64_t *idx = j->idx;
    int64_t ahead = yk__prefetch_distance(64 * sizeof(float)), n = j->l->n;
    for (int64_t b = b0; b < b1; b++) {
        __m256 a[8];
        for (int q = 0; q < 8; q++)
            a[q] = _mm256_setzero_ps();
        int64_t lo, hi, count = 0;
        bag_range(j->l, b, &lo, &hi);
        for (int64_t i = lo; i < hi; i++) {
            const char *next =
                (const char *)(w + idx[i + ahead < n ? i + ahead : n - 1] * 64);
            if (idx[i] == j->pad) {
                yk__prefetch_read(next, 64 * sizeof(float));
                continue;
            }
            const float *r = w + idx[i] * 64;
            for (int q = 0; q < 8; q++) {
                a[q] = _mm256_add_ps(a[q], _mm256_loadu_ps(r + 8 * q));
                if (q % 2 == 0) /* one 64-byte line every two loads */
                    _mm_prefetch(next + 32 * q, _MM_HINT_T0);
            }
            count++;
        }
        __m256 div = _mm256_set1_ps(j->mean && count > 1 ? (float)count : 1);
        float *o = (float *)j->out + b * j->D + j->blk.col;
        for (int q = 0; q < 8; q++)
            _mm256_storeu_ps(o + 8 * q, _mm256_div_ps(a[q], div));
    }
}

static bool have_avx2(void)
{
    return __builtin_cpu_supports("avx2"); /* (a read of a flag set at load) */
}
#else
static void sum_bags_64_avx2(const bag_job *j, int64_t b0, int64_t b1)
{
    (void)j, (void)b0, (void)b1;
}
static bool have_avx2(void) { return false; }
#endif

/* The range kernels: the common widths get their own instance, so the
 * row loops have a constant trip count and the bag stays in registers. */
static void sum_bags_f32_range(const void *job, int64_t b0, int64_t b1)
{
    const bag_job *j = job;
    if (j->blk.cols == 64 && !j->psw && have_avx2())
        sum_bags_64_avx2(j, b0, b1);
    else if (j->blk.cols == 64)
        sum_bags_f32(j, b0, b1, 64);
    else if (j->blk.cols == 16)
        sum_bags_f32(j, b0, b1, 16);
    else
        sum_bags_f32(j, b0, b1, j->blk.cols);
}

static void sum_bags_f64_range(const void *job, int64_t b0, int64_t b1)
{
    const bag_job *j = job;
    sum_bags_f64(j, b0, b1, j->blk.cols);
}

static void max_bags_f32_range(const void *job, int64_t b0, int64_t b1)
{
    const bag_job *j = job;
    if (j->blk.cols == 64)
        max_bags_f32(j, b0, b1, 64);
    else
        max_bags_f32(j, b0, b1, j->blk.cols);
}

static void max_bags_f64_range(const void *job, int64_t b0, int64_t b1)
{
    const bag_job *j = job;
    max_bags_f64(j, b0, b1, j->blk.cols);
}

/* For backward: the bag of every entry (-1 for padding) and each bag's
 * number of non-padding entries. */
static void fill_bag_index(const bag_layout *l, const int64_t *idx,
                           int64_t pad, int64_t *bag_of, int64_t *size)
{
    for (int64_t b = 0; b < l->n_bags; b++) {
        int64_t lo, hi;
        bag_range(l, b, &lo, &hi);
        for (int64_t i = lo; i < hi; i++) {
            bag_of[i] = idx[i] == pad ? -1 : b;
            size[b] += idx[i] != pad;
        }
    }
}

/* Saves what backward needs (only when the output needs a gradient). */
static bag_saved *bag_save(yk_node *y, const yk_bag_opts *o, int64_t pad,
                           const bag_layout *l, const int64_t *idx)
{
    bag_saved *s = yk__save(y, sizeof *s);
    if (!s)
        return NULL;
    s->mode = o->mode;
    s->padding = pad;
    s->scale_grad_by_freq = o->scale_grad_by_freq;
    s->sparse = o->sparse;
    if (!y->requires_grad)
        return s;
    /* bag_of and argmax are written in full (argmax by each column
     * block's pass); size is counted up from zero. */
    s->bag_of = yk__arena_alloc_raw(y->g, (size_t)l->n * sizeof *s->bag_of);
    s->size = yk__arena_alloc(y->g, (size_t)l->n_bags * sizeof *s->size);
    if (o->mode == YK_BAG_MAX)
        s->argmax = yk__arena_alloc_raw(y->g, (size_t)(l->n_bags *
                                        y->value.shape[1]) *
                                        sizeof *s->argmax);
    if (!s->bag_of || !s->size || (o->mode == YK_BAG_MAX && !s->argmax))
        return NULL;
    fill_bag_index(l, idx, pad, s->bag_of, s->size);
    return s;
}

/* The output, one pass per column block of the weight; false on OOM. */
static bool bag_forward(yk_graph *g, yk_node *y, const yk_node *w,
                        const int64_t *idx, const yk_node *psw,
                        const bag_layout *l, int64_t pad, const bag_saved *s)
{
    int n_blocks;
    col_block *blocks = weight_blocks(g, w, &n_blocks);
    if (!blocks)
        return false;
    bool f32 = w->value.dtype == YK_F32;
    yk__range_kernel kernel = s->mode == YK_BAG_MAX
        ? (f32 ? max_bags_f32_range : max_bags_f64_range)
        : (f32 ? sum_bags_f32_range : sum_bags_f64_range);
    bag_job j = {.l = l, .idx = idx, .pad = pad,
                 .psw = psw ? psw->value.data : NULL,
                 .mean = s->mode == YK_BAG_MEAN, .out = yk__data(y),
                 .D = w->value.shape[1], .argmax = s->argmax};
    int64_t per_bag = l->n_bags ? l->n / l->n_bags + 1 : 1;
    for (int k = 0; k < n_blocks; k++) {
        j.blk = blocks[k];
        yk__run_split(g->ctx, kernel, &j, l->n_bags,
                      per_bag * (j.blk.cols + 1));
    }
    return true;
}

yk_node *yk_embedding_bag(yk_graph *g, yk_node *input, yk_node *weight,
                          yk_node *offsets, yk_node *per_sample_weights,
                          const yk_bag_opts *opts)
{
    yk_node *in[BAG_N_INPUTS] = {input, weight, offsets, per_sample_weights};
    yk_node *given[BAG_N_INPUTS];
    int n_given = 0;
    for (int i = 0; i < BAG_N_INPUTS; i++)
        if (in[i] || i < BAG_OFFSETS) /* input and weight are required */
            given[n_given++] = in[i];
    if (!yk__inputs_ok(g, "embedding_bag", n_given, given))
        return NULL;
    yk_bag_opts o = opts ? *opts : yk_bag_defaults();
    bag_layout l = {0};
    int64_t V = weight->value.shape[0], pad;
    if (!bag_args_ok(g, in, &o, &l) ||
        !padding_ok(g, "embedding_bag", o.padding_idx, V, &pad) ||
        !range_ok(g, "embedding_bag", &input->value, V))
        return NULL;
    int64_t D = weight->value.shape[1];
    int64_t shape[2] = {l.n_bags, D};
    yk_node *y = yk__node_new(g, &yk_op_embedding_bag, BAG_N_INPUTS, in,
                              weight->value.dtype, 2, shape);
    bag_saved *s = y ? bag_save(y, &o, pad, &l, input->value.data) : NULL;
    if (!s || !bag_forward(g, y, weight, input->value.data,
                           per_sample_weights, &l, pad, s))
        return NULL;
    return y;
}

/* ------------------------------------------------ embedding_bag backward */

/* The entries of the row groups are in row order, so their bags (bag_of
 * of a random entry) and the bags' gradient rows are random reads: while
 * at entry j, ask for the bag of entry j + 16 and for the gradient row of
 * entry j + 8 (whose bag came in by now). end: the last entry to read. */
static inline void prefetch_bag_reads(const row_groups *rg, const bag_saved *s,
                                      const char *gy, size_t rb, int64_t j,
                                      int64_t end)
{
    if (j + 16 < end)
        __builtin_prefetch(&s->bag_of[rg->order[j + 16]]);
    if (j + 8 < end)
        yk__prefetch_read(gy + (size_t)s->bag_of[rg->order[j + 8]] * rb, rb);
}

/* Gradient of each distinct row for sum / mean: entry e of bag b adds
 * coef(e) gy[b] to its row, coef = psw[e] (sum with weights), 1 (sum) or
 * 1 / size[b] (mean); with scale_grad_by_freq the row's total is divided
 * by the row's count in the whole input. */
static inline __attribute__((always_inline)) void
bag_sum_backward_f32_cols(const grad_job *jb, int64_t k0, int64_t k1,
                          int64_t D)
{
    const row_groups *rg = jb->rg;
    const bag_saved *s = jb->saved;
    const float *psw = jb->psw, *gy = jb->gy;
    bool mean = s->mode == YK_BAG_MEAN;
    float local[LOCAL_COLS];
    size_t rb = (size_t)D * sizeof(float);
    for (int64_t k = k0; k < k1; k++) {
        /* The row's sum is made in a local row and stored once. It starts
         * at 0 + its first term (a group has at least one entry): the bits
         * of adding every term to zeros, without a pass that zeroes. */
        float *d = (float *)jb->dw + k * D, *acc = D <= LOCAL_COLS ? local : d;
        for (int64_t j = rg->start[k]; j < rg->start[k + 1]; j++) {
            prefetch_bag_reads(rg, s, (const char *)gy, rb, j, rg->start[k1]);
            int64_t e = rg->order[j], b = s->bag_of[e];
            float c = psw ? psw[e] : mean ? 1.0f / (float)s->size[b] : 1.0f;
            const float *g = gy + b * D;
            if (j > rg->start[k])
                axpy_f32(D, c, g, acc);
            else
                SIMD for (int64_t x = 0; x < D; x++)
                    acc[x] = 0.0f + c * g[x];
        }
        if (acc != d)
            memcpy(d, acc, (size_t)D * sizeof *d);
        if (s->scale_grad_by_freq)
            div_f32(D, (float)(rg->start[k + 1] - rg->start[k]), d);
    }
}

static void bag_sum_backward_f32(const void *job, int64_t k0, int64_t k1)
{
    const grad_job *jb = job;
    if (jb->D == 64)
        bag_sum_backward_f32_cols(jb, k0, k1, 64);
    else
        bag_sum_backward_f32_cols(jb, k0, k1, jb->D);
}

static void bag_sum_backward_f64(const void *job, int64_t k0, int64_t k1)
{
    const grad_job *jb = job;
    const row_groups *rg = jb->rg;
    const bag_saved *s = jb->saved;
    const double *psw = jb->psw, *gy = jb->gy;
    int64_t D = jb->D;
    bool mean = s->mode == YK_BAG_MEAN;
    for (int64_t k = k0; k < k1; k++) {
        double *d = (double *)jb->dw + k * D;
        memset(d, 0, (size_t)D * sizeof *d);
        for (int64_t j = rg->start[k]; j < rg->start[k + 1]; j++) {
            prefetch_bag_reads(rg, s, (const char *)gy, (size_t)D * sizeof *d,
                               j, rg->start[k1]);
            int64_t e = rg->order[j], b = s->bag_of[e];
            double c = psw ? psw[e] : mean ? 1.0 / (double)s->size[b] : 1.0;
            axpy_f64(D, c, gy + b * D, d);
        }
        if (s->scale_grad_by_freq)
            div_f64(D, (double)(rg->start[k + 1] - rg->start[k]), d);
    }
}

/* Max: gy[b, d] goes to column d of the row of the entry that held the max.
 * slot[e] is the gradient row of entry e's weight row. */
static void bag_max_backward_f32(const bag_saved *s, const int64_t *slot,
                                 const float *gy, int64_t n_bags, int64_t D,
                                 float *dw)
{
    for (int64_t b = 0; b < n_bags; b++)
        for (int64_t d = 0; d < D; d++) {
            int64_t e = s->argmax[b * D + d];
            if (e >= 0)
                dw[slot[e] * D + d] += gy[b * D + d];
        }
}

static void bag_max_backward_f64(const bag_saved *s, const int64_t *slot,
                                 const double *gy, int64_t n_bags, int64_t D,
                                 double *dw)
{
    for (int64_t b = 0; b < n_bags; b++)
        for (int64_t d = 0; d < D; d++) {
            int64_t e = s->argmax[b * D + d];
            if (e >= 0)
                dw[slot[e] * D + d] += gy[b * D + d];
        }
}

/* slot[e] = the group (gradient row) of entry e; padding entries keep 0
 * but are never read (they never hold a max). */
static int64_t *slots_of_entries(yk_graph *g, const row_groups *rg,
                                 int64_t n)
{
    int64_t *slot = yk__arena_alloc(g, (size_t)n * sizeof *slot);
    if (!slot)
        return NULL;
    for (int64_t k = 0; k < rg->n_rows; k++)
        for (int64_t j = rg->start[k]; j < rg->start[k + 1]; j++)
            slot[rg->order[j]] = k;
    return slot;
}

/* The weight's gradient: one row per distinct looked-up row (padding left
 * out), sent even when there is none. */
static yk_status bag_weight_backward(yk_graph *g, yk_node *y, const void *gy)
{
    const bag_saved *s = y->saved;
    const yk_tensor *idx = &y->inputs[BAG_INPUT]->value;
    const yk_tensor *w = &y->inputs[BAG_WEIGHT]->value;
    const yk_node *psw = y->inputs[BAG_PSW];
    int64_t D = w->shape[1], n_bags = y->value.shape[0];
    row_groups rg;
    if (!group_by_row(g, idx->data, idx->numel, s->padding, w->shape[0], &rg))
        return g->status;
    void *dw = yk__grad_rows(g, y, BAG_WEIGHT, rg.n_rows, rg.rows, s->sparse);
    if (!dw)
        return g->status;
    bool f32 = w->dtype == YK_F32;
    if (s->mode == YK_BAG_MAX) {
        int64_t *slot = slots_of_entries(g, &rg, idx->numel);
        if (!slot)
            return g->status;
        memset(dw, 0, (size_t)(rg.n_rows * D) * yk_dtype_size(w->dtype));
        if (f32)
            bag_max_backward_f32(s, slot, gy, n_bags, D, dw);
        else
            bag_max_backward_f64(s, slot, gy, n_bags, D, dw);
        return YK_OK;
    }
    grad_job jb = {.rg = &rg, .saved = s, .gy = gy, .D = D, .dw = dw,
                   .psw = psw ? psw->value.data : NULL};
    run_grad_rows(g, f32 ? bag_sum_backward_f32 : bag_sum_backward_f64, &jb,
                  idx->numel);
    return YK_OK;
}

/* d psw[e] = dot(weight[input[e]], gy[bag of e]); 0 for padding. Never
 * scaled by frequency. */
static void psw_backward_f32(const yk_node *w, const int64_t *idx,
                             const bag_saved *s, int64_t n, const float *gy,
                             float *scratch, float *dp)
{
    int64_t D = w->value.shape[1];
    for (int64_t e = 0; e < n; e++) {
        if (s->bag_of[e] < 0)
            continue;
        const float *r = yk__row(w, idx[e], scratch);
        const float *src = gy + s->bag_of[e] * D;
        float dot = 0;
        for (int64_t d = 0; d < D; d++)
            dot += r[d] * src[d];
        dp[e] += dot;
    }
}

static void psw_backward_f64(const yk_node *w, const int64_t *idx,
                             const bag_saved *s, int64_t n, const double *gy,
                             double *scratch, double *dp)
{
    int64_t D = w->value.shape[1];
    for (int64_t e = 0; e < n; e++) {
        if (s->bag_of[e] < 0)
            continue;
        const double *r = yk__row(w, idx[e], scratch);
        const double *src = gy + s->bag_of[e] * D;
        double dot = 0;
        for (int64_t d = 0; d < D; d++)
            dot += r[d] * src[d];
        dp[e] += dot;
    }
}

static yk_status bag_psw_backward(yk_graph *g, yk_node *y, const void *gy)
{
    const bag_saved *s = y->saved;
    const yk_node *w = y->inputs[BAG_WEIGHT];
    const yk_tensor *idx = &y->inputs[BAG_INPUT]->value;
    void *dp = yk__grad_dense(g, y, BAG_PSW);
    void *scratch = dp ? yk__arena_alloc(g, (size_t)w->value.shape[1] *
                                         yk_dtype_size(w->value.dtype))
                       : NULL;
    if (!scratch)
        return g->status;
    if (w->value.dtype == YK_F32)
        psw_backward_f32(w, idx->data, s, idx->numel, gy, scratch, dp);
    else
        psw_backward_f64(w, idx->data, s, idx->numel, gy, scratch, dp);
    return YK_OK;
}

static yk_status backward_embedding_bag(yk_graph *g, yk_node *y,
                                        const void *gy)
{
    yk_status st = YK_OK;
    if (yk__needs_grad(y, BAG_WEIGHT))
        st = bag_weight_backward(g, y, gy);
    if (st == YK_OK && yk__needs_grad(y, BAG_PSW))
        st = bag_psw_backward(g, y, gy);
    return st;
}

/* attrs: mode, include_last_offset, padding_idx, scale_grad_by_freq,
 * sparse (the order of yk_op_embedding_bag.attrs). */
static yk_node *build_embedding_bag(yk_graph *g, yk_node *const *in, int n,
                                    const yk_attr_value *a)
{
    (void)n;
    if (!g || g->status != YK_OK)
        return NULL;
    yk_bag_opts o = yk_bag_defaults();
    const char *mode = a[0].s ? a[0].s : "mean";
    if (strcmp(mode, "sum") == 0)
        o.mode = YK_BAG_SUM;
    else if (strcmp(mode, "mean") == 0)
        o.mode = YK_BAG_MEAN;
    else if (strcmp(mode, "max") == 0)
        o.mode = YK_BAG_MAX;
    else
        return yk__fail(g, YK_EINVAL, "embedding_bag: mode = \"%s\" is not "
                        "one of \"sum\", \"mean\", \"max\"", mode);
    o.include_last_offset = a[1].i != 0;
    o.padding_idx = a[2].is_null ? YK_NO_PADDING : a[2].i;
    o.scale_grad_by_freq = a[3].i != 0;
    o.sparse = a[4].i != 0;
    return yk_embedding_bag(g, in[BAG_INPUT], in[BAG_WEIGHT], in[BAG_OFFSETS],
                            in[BAG_PSW], &o);
}

const yk_op_def yk_op_embedding_bag = {
    .name = "embedding_bag",
    .n_inputs = BAG_N_INPUTS,
    .input_names = {"input", "weight", "offsets", "per_sample_weights"},
    .optional_inputs = 1u << BAG_OFFSETS | 1u << BAG_PSW,
    .index_inputs = 1u << BAG_INPUT | 1u << BAG_OFFSETS,
    .n_attrs = 5,
    .attrs = {
        {.name = "mode", .type = YK_ATTR_STRING, .def_string = "mean"},
        {.name = "include_last_offset", .type = YK_ATTR_BOOL},
        {.name = "padding_idx", .type = YK_ATTR_INT, .nullable = true},
        {.name = "scale_grad_by_freq", .type = YK_ATTR_BOOL},
        {.name = "sparse", .type = YK_ATTR_BOOL},
    },
    .build = build_embedding_bag,
    .backward = backward_embedding_bag,
};

/* ====================================================== embedding_renorm */

/* The norm_type-norm of n values (inf: the largest magnitude). */
static double row_norm_f32(const float *r, int64_t n, double p)
{
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs((double)r[i]);
        if (isinf(p))
            acc = a > acc ? a : acc;
        else
            acc += p == 1 ? a : p == 2 ? a * a : pow(a, p);
    }
    return isinf(p) || p == 1 ? acc : p == 2 ? sqrt(acc) : pow(acc, 1 / p);
}

static double row_norm_f64(const double *r, int64_t n, double p)
{
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs(r[i]);
        if (isinf(p))
            acc = a > acc ? a : acc;
        else
            acc += p == 1 ? a : p == 2 ? a * a : pow(a, p);
    }
    return isinf(p) || p == 1 ? acc : p == 2 ? sqrt(acc) : pow(acc, 1 / p);
}

/* Rescales row r of w if its norm exceeds max_norm. */
static void renorm_row(yk_tensor *w, int64_t r, double max_norm, double p)
{
    int64_t D = w->shape[1];
    if (w->dtype == YK_F32) {
        float *row = (float *)w->data + r * D;
        double norm = row_norm_f32(row, D, p);
        if (norm > max_norm) {
            double scale = max_norm / (norm + 1e-7);
            for (int64_t d = 0; d < D; d++)
                row[d] = (float)(row[d] * scale);
        }
    } else {
        double *row = (double *)w->data + r * D;
        double norm = row_norm_f64(row, D, p);
        if (norm > max_norm) {
            double scale = max_norm / (norm + 1e-7);
            for (int64_t d = 0; d < D; d++)
                row[d] *= scale;
        }
    }
}

static yk_status renorm_args_ok(yk_tensor *w, const yk_tensor *input,
                                double max_norm, double norm_type)
{
    yk_ctx *ctx = w->ctx;
    char b[96];
    if (w->dtype == YK_I64)
        return yk__error(ctx, YK_EDTYPE, "embedding_renorm: weight is i64, "
                         "needs f32 or f64");
    if (w->ndim != 2)
        return yk__error(ctx, YK_ESHAPE, "embedding_renorm: weight must be "
                         "2-D [V, D], got shape %s",
                         yk_shape_format(w, b, sizeof b));
    if (!input)
        return yk__error(ctx, YK_EINVAL, "embedding_renorm: input is NULL");
    if (input->dtype != YK_I64)
        return yk__error(ctx, YK_EDTYPE, "embedding_renorm: input is %s, "
                         "needs i64 indices", yk_dtype_name(input->dtype));
    if (!(max_norm >= 0))
        return yk__error(ctx, YK_EINVAL, "embedding_renorm: max_norm = %g, "
                         "must be >= 0", max_norm);
    if (!(norm_type > 0))
        return yk__error(ctx, YK_EINVAL, "embedding_renorm: norm_type = %g, "
                         "must be > 0", norm_type);
    const int64_t *idx = input->data;
    for (int64_t i = 0; i < input->numel; i++)
        if (idx[i] < 0 || idx[i] >= w->shape[0]) {
            char pos[160];
            format_position(input, i, pos, sizeof pos);
            return yk__error(ctx, YK_ERANGE, "embedding_renorm: %s = %lld is "
                             "out of range for a weight with %lld rows", pos,
                             (long long)idx[i], (long long)w->shape[0]);
        }
    return YK_OK;
}

yk_status yk_embedding_renorm(yk_tensor *weight, const yk_tensor *input,
                              double max_norm, double norm_type)
{
    if (!weight)
        return YK_EINVAL;
    yk_status s = renorm_args_ok(weight, input, max_norm, norm_type);
    if (s != YK_OK)
        return s;
    /* Each distinct row once, as PyTorch does (rescaling a row twice would
     * shrink it again by rounding). Sorting avoids a V-sized mark array. */
    int64_t n = input->numel;
    size_t bytes = (size_t)(n ? n : 1) * sizeof(int64_t);
    int64_t *order = yk__alloc(weight->ctx, bytes);
    int64_t *tmp = yk__alloc(weight->ctx, bytes);
    if (!order || !tmp) {
        yk__free(weight->ctx, order, bytes);
        yk__free(weight->ctx, tmp, bytes);
        return yk__error(weight->ctx, YK_ENOMEM, "embedding_renorm: out of "
                         "memory sorting %lld indices", (long long)n);
    }
    const int64_t *idx = input->data;
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    radix_sort_by_key(n, idx, weight->shape[0] - 1, order, tmp);
    for (int64_t k = 0; k < n; k++)
        if (k == 0 || idx[order[k]] != idx[order[k - 1]])
            renorm_row(weight, idx[order[k]], max_norm, norm_type);
    yk__free(weight->ctx, order, bytes);
    yk__free(weight->ctx, tmp, bytes);
    return YK_OK;
}
