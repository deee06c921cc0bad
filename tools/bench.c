/*
 * bench -- yoke's benchmarks, one JSON line each, side by side with
 * tools/bench_torch.py (same names, shapes and JSON); tools/bench_compare.py
 * runs both and prints the table. See tools/BENCH.md for what each
 * benchmark does and the numbers measured.
 *
 *   bench [--threads N] [--filter SUBSTR] [--reps N] [--quick]
 *   bench --list            the benchmark names, one a line
 *   bench --serve           reads benchmark names from stdin, one a line,
 *                           runs each and prints its line (the driver's
 *                           mode: one process, benchmarks interleaved
 *                           with PyTorch's)
 *
 * Only the public API (yoke.h) is used; the plain gather loop is written
 * here in C as the reference for the machine's random-gather bandwidth.
 *
 * Timing: a monotonic clock around each repetition. The first warm-up run
 * sizes `inner`, the number of steps per repetition (so that a repetition of
 * a tiny op lasts a few ms); times are per step. Index sets are drawn
 * uniformly from a seeded generator and rotated between steps so that the
 * rows of one step are not in the cache from the step before.
 */
#include "yoke.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* ------------------------------------------------------------ sizes */

#define MAX_SETS 8

typedef struct sizes {
    int64_t V, D, B;            /* bag and embedding tables, bags        */
    int64_t D2;                 /* the extended bag's bag-only columns   */
    int64_t emb_rows, emb_cols; /* embedding input shape                 */
    int64_t seed_V, seed_D, seed_bags, seed_L;
    int64_t train_V, train_B, train_L, hidden, classes;
    int64_t mm_big;             /* the square product's n                */
    int chain_ops;              /* ops in the per-op overhead chain      */
    int64_t chain_n;            /* elements of each op                   */
    int nsets;                  /* index sets rotated between steps      */
    int warmup, reps;
    double target_ms;           /* a repetition lasts at least this      */
} sizes;

static sizes full_sizes(void)
{
    return (sizes){.V = 1000000, .D = 64, .B = 2048, .D2 = 16,
                   .emb_rows = 256, .emb_cols = 50,
                   .seed_V = 1000, .seed_D = 128, .seed_bags = 3, .seed_L = 7,
                   .train_V = 100000, .train_B = 512, .train_L = 20,
                   .hidden = 64, .classes = 10, .mm_big = 1024,
                   .chain_ops = 100, .chain_n = 4, .nsets = MAX_SETS,
                   .warmup = 2, .reps = 10, .target_ms = 20};
}

/* Tiny tables and batches, same bag lengths and widths: a smoke test. */
static sizes quick_sizes(void)
{
    sizes z = full_sizes();
    z.V = 1000;
    z.B = 16;
    z.emb_rows = 8;
    z.train_V = 1000;
    z.train_B = 16;
    z.mm_big = 64;
    z.nsets = 2;
    z.warmup = 1;
    z.reps = 3;
    z.target_ms = 1;
    return z;
}

/* ------------------------------------------------------- benchmarks */

typedef enum bench_kind {
    K_BAG_FWD,  /* embedding_bag forward, grad off                   */
    K_BAG_SGD,  /* embedding_bag forward + backward + SGD            */
    K_EXT_SGD,  /* [shared | extra] bag, forward + backward + SGD    */
    K_EMB_FWD,  /* embedding forward, grad off                       */
    K_EMB_SGD,  /* embedding forward + backward + SGD                */
    K_CHAIN,    /* 100 tiny adds, forward + backward (per op)        */
    K_SEED,     /* the seed's small bag, forward + backward          */
    K_TRAIN,    /* bag -> linear -> relu -> linear -> CE, optimizers */
    K_MATMUL,   /* yk_matmul forward                                 */
    K_GATHER,   /* the plain C gather loop                           */
    K_OPTIM     /* one optimizer step over a fixed row-sparse grad   */
} bench_kind;

enum { EXT_CAT, EXT_SPLIT };          /* natural cat / two bags, cat after */
enum { TRAIN_ADAM, TRAIN_SGD };
enum { MM_HIDDEN, MM_CLASSES, MM_BIG };
/* The gather's table is 64-byte aligned, as PyTorch's (a row of 64 floats
 * is 4 whole cache lines); THP: 2 MiB aligned and madvise(MADV_HUGEPAGE),
 * to show what transparent huge pages would buy. */
enum { GATHER_PLAIN, GATHER_PREFETCH, GATHER_THP };

typedef struct bench_def {
    const char *name;
    bench_kind kind;
    yk_bag_mode mode;
    int64_t L;      /* bag length (bag, ext, gather); optim: log10 V */
    bool sparse;    /* row-sparse gradient                        */
    int variant;    /* EXT_*, TRAIN_*, MM_*, GATHER_*, optim kind */
} bench_def;

#define SUM YK_BAG_SUM
#define MEAN YK_BAG_MEAN
#define MAX YK_BAG_MAX

/* No name may be a substring of another (bench_compare.py checks): the
 * driver and --filter select by substring. */
static const bench_def benches[] = {
    {"bag.fwd.sum.L20", K_BAG_FWD, SUM, 20, false, 0},
    {"bag.fwd.mean.L20", K_BAG_FWD, MEAN, 20, false, 0},
    {"bag.fwd.max.L20", K_BAG_FWD, MAX, 20, false, 0},
    {"bag.fwd.sum.L100", K_BAG_FWD, SUM, 100, false, 0},
    {"bag.fwd.mean.L100", K_BAG_FWD, MEAN, 100, false, 0},
    {"bag.fwd.max.L100", K_BAG_FWD, MAX, 100, false, 0},
    {"bag.sgd.sparse.sum.L20", K_BAG_SGD, SUM, 20, true, 0},
    {"bag.sgd.sparse.mean.L20", K_BAG_SGD, MEAN, 20, true, 0},
    {"bag.sgd.sparse.sum.L100", K_BAG_SGD, SUM, 100, true, 0},
    {"bag.sgd.sparse.mean.L100", K_BAG_SGD, MEAN, 100, true, 0},
    {"bag.sgd.dense.sum.L20", K_BAG_SGD, SUM, 20, false, 0},
    {"bag.sgd.dense.mean.L20", K_BAG_SGD, MEAN, 20, false, 0},
    {"bag.sgd.dense.max.L20", K_BAG_SGD, MAX, 20, false, 0},
    {"bag.sgd.dense.sum.L100", K_BAG_SGD, SUM, 100, false, 0},
    {"bag.sgd.dense.mean.L100", K_BAG_SGD, MEAN, 100, false, 0},
    {"bag.sgd.dense.max.L100", K_BAG_SGD, MAX, 100, false, 0},
    {"ext.cat.sgd.sparse.L20", K_EXT_SGD, MEAN, 20, true, EXT_CAT},
    {"ext.cat.sgd.dense.L20", K_EXT_SGD, MEAN, 20, false, EXT_CAT},
    {"ext.split.sgd.sparse.L20", K_EXT_SGD, MEAN, 20, true, EXT_SPLIT},
    {"emb.fwd", K_EMB_FWD, MEAN, 0, false, 0},
    {"emb.sgd.sparse", K_EMB_SGD, MEAN, 0, true, 0},
    {"emb.sgd.dense", K_EMB_SGD, MEAN, 0, false, 0},
    {"overhead.add_chain", K_CHAIN, MEAN, 0, false, 0},
    {"seed.bag_small.fwd_bwd", K_SEED, MEAN, 0, false, 0},
    {"train.sparse_adam+adam", K_TRAIN, MEAN, 20, true, TRAIN_ADAM},
    {"train.sgd", K_TRAIN, MEAN, 20, true, TRAIN_SGD},
    {"matmul.512x64x64", K_MATMUL, MEAN, 0, false, MM_HIDDEN},
    {"matmul.512x64x10", K_MATMUL, MEAN, 0, false, MM_CLASSES},
    {"matmul.1024x1024x1024", K_MATMUL, MEAN, 0, false, MM_BIG},
    {"gather.plain.L20", K_GATHER, SUM, 20, false, GATHER_PLAIN},
    {"gather.plain.L100", K_GATHER, SUM, 100, false, GATHER_PLAIN},
    {"gather.prefetch.L20", K_GATHER, SUM, 20, false, GATHER_PREFETCH},
    {"gather.prefetch.L100", K_GATHER, SUM, 100, false, GATHER_PREFETCH},
    {"gather.thp.L20", K_GATHER, SUM, 20, false, GATHER_THP},
    {"gather.thp.L100", K_GATHER, SUM, 100, false, GATHER_THP},
    /* A lazy step costs the rows in the gradient, not V: the same
     * gradient (the embedding benchmark's lookups) at V = 10^4 and 10^6.
     * adam is the exact (every row) path, for contrast. yoke only. */
    {"optim.sgd.V1e4", K_OPTIM, MEAN, 4, true, YK_OPTIM_SGD},
    {"optim.sgd.V1e6", K_OPTIM, MEAN, 6, true, YK_OPTIM_SGD},
    {"optim.adagrad.V1e4", K_OPTIM, MEAN, 4, true, YK_OPTIM_ADAGRAD},
    {"optim.adagrad.V1e6", K_OPTIM, MEAN, 6, true, YK_OPTIM_ADAGRAD},
    {"optim.sparse_adam.V1e4", K_OPTIM, MEAN, 4, true, YK_OPTIM_SPARSE_ADAM},
    {"optim.sparse_adam.V1e6", K_OPTIM, MEAN, 6, true, YK_OPTIM_SPARSE_ADAM},
    {"optim.rowwise_adagrad.V1e4", K_OPTIM, MEAN, 4, true,
     YK_OPTIM_ROWWISE_ADAGRAD},
    {"optim.rowwise_adagrad.V1e6", K_OPTIM, MEAN, 6, true,
     YK_OPTIM_ROWWISE_ADAGRAD},
    {"optim.adam.V1e4", K_OPTIM, MEAN, 4, true, YK_OPTIM_ADAM},
    {"optim.adam.V1e6", K_OPTIM, MEAN, 6, true, YK_OPTIM_ADAM},
};

#define N_BENCHES ((int)(sizeof benches / sizeof benches[0]))

static const char *mode_name(yk_bag_mode m)
{
    return m == YK_BAG_SUM ? "sum" : m == YK_BAG_MEAN ? "mean" : "max";
}

/* [M, K] x [K, N] of a matmul benchmark. */
static void matmul_shape(const bench_def *d, const sizes *z, int64_t mkn[3])
{
    if (d->variant == MM_BIG) {
        mkn[0] = mkn[1] = mkn[2] = z->mm_big;
        return;
    }
    mkn[0] = z->train_B;
    mkn[1] = z->D;
    mkn[2] = d->variant == MM_HIDDEN ? z->hidden : z->classes;
}

/* ------------------------------------------------------------ state */

typedef struct bench_state {
    int threads;
    yk_ctx *ctx;
    yk_model *m;
    yk_param *w, *extra;        /* the table; the bag-only columns       */
    yk_param *lin[4];           /* training: W1, b1, W2, b2              */
    yk_optim *opt, *opt_dense;  /* table (or everything); dense layers   */
    yk_tensor *idx[MAX_SETS];   /* index sets, rotated                   */
    yk_tensor *target[MAX_SETS];
    yk_tensor *offsets;         /* the seed example's bags               */
    yk_tensor *a, *b;           /* matmul operands                       */
    yk_tensor *table;           /* the plain gather's table (wraps mem)  */
    void *gather_mem;
    float *gather_out;
    int nsets;
    int64_t next;               /* steps run: picks the index set        */
} bench_state;

/* The status of a failed creation (NULL), else YK_OK. */
static yk_status made(const bench_state *s, const void *p)
{
    if (p)
        return YK_OK;
    yk_status st = yk_last_status(s->ctx);
    return st != YK_OK ? st : YK_ENOMEM;
}

/* A parameter of uniform(-bound, bound) values. */
static yk_param *param_uniform(bench_state *s, const char *name, int ndim,
                               const int64_t *shape, uint64_t seed,
                               double bound)
{
    yk_param *p = yk_model_add(s->m, name, YK_F32, ndim, shape);
    if (p && yk_tensor_fill_uniform(yk_param_value(p), seed, -bound, bound))
        return NULL;
    return p;
}

/* nsets i64 tensors of the given shape, uniform in [0, hi). */
static yk_status index_sets(bench_state *s, yk_tensor **sets, int ndim,
                            const int64_t *shape, int64_t hi, uint64_t seed)
{
    for (int k = 0; k < s->nsets; k++) {
        sets[k] = yk_tensor_zeros(s->ctx, YK_I64, ndim, shape);
        if (!sets[k])
            return made(s, NULL);
        yk_status st = yk_tensor_fill_randint(sets[k], seed + (uint64_t)k, 0,
                                              hi);
        if (st)
            return st;
    }
    return YK_OK;
}

/* An optimizer of kind over params[0..n), lr as given (NaN: default). */
static yk_optim *make_optim(bench_state *s, yk_optim_kind kind, double lr,
                            int n, yk_param *const *params)
{
    yk_optim_opts o = yk_optim_defaults(kind);
    if (!isnan(lr))
        o.lr = lr;
    yk_optim *opt = yk_optim_new(s->ctx, kind, &o);
    for (int i = 0; opt && i < n; i++)
        if (yk_optim_add(opt, params[i]) != YK_OK) {
            yk_optim_free(opt);
            return NULL;
        }
    return opt;
}

/* ------------------------------------------------------------ setup */

static yk_status setup_table(bench_state *s, int64_t V, int64_t D)
{
    s->w = param_uniform(s, "table", 2, (int64_t[]){V, D}, 1, 0.1);
    return made(s, s->w);
}

static yk_status setup_bag(bench_state *s, const bench_def *d,
                           const sizes *z)
{
    yk_status st = setup_table(s, z->V, z->D);
    if (!st)
        st = index_sets(s, s->idx, 2, (int64_t[]){z->B, d->L}, z->V, 100);
    if (!st && d->kind == K_EXT_SGD) {
        s->extra = param_uniform(s, "extra", 2, (int64_t[]){z->V, z->D2}, 2,
                                 0.1);
        st = made(s, s->extra);
    }
    if (!st && (d->kind == K_BAG_SGD || d->kind == K_EXT_SGD)) {
        yk_param *ps[2] = {s->w, s->extra};
        s->opt = make_optim(s, YK_OPTIM_SGD, 0.01, s->extra ? 2 : 1, ps);
        st = made(s, s->opt);
    }
    return st;
}

static yk_status setup_emb(bench_state *s, const bench_def *d,
                           const sizes *z)
{
    yk_status st = setup_table(s, z->V, z->D);
    if (!st)
        st = index_sets(s, s->idx, 2, (int64_t[]){z->emb_rows, z->emb_cols},
                        z->V, 100);
    if (!st && d->kind == K_EMB_SGD) {
        s->opt = make_optim(s, YK_OPTIM_SGD, 0.01, 1, &s->w);
        st = made(s, s->opt);
    }
    return st;
}

/* The table size of an optim benchmark: 10^L, at most the sizes' V. */
static int64_t optim_V(const bench_def *d, const sizes *z)
{
    int64_t V = 1;
    for (int64_t i = 0; i < d->L; i++)
        V *= 10;
    return V < z->V ? V : z->V;
}

/* The table, its optimizer, and one row-sparse gradient (the embedding
 * benchmark's lookups) that every step reuses: a step does not clear it. */
static yk_status setup_optim(bench_state *s, const bench_def *d,
                             const sizes *z)
{
    int64_t V = optim_V(d, z);
    yk_status st = setup_table(s, V, z->D);
    if (!st)
        st = index_sets(s, s->idx, 2, (int64_t[]){z->emb_rows, z->emb_cols},
                        V, 100);
    if (!st) {
        s->opt = make_optim(s, (yk_optim_kind)d->variant, 0.01, 1, &s->w);
        st = made(s, s->opt);
    }
    yk_graph *g = st ? NULL : yk_graph_begin(s->ctx);
    if (!st && !g)
        st = YK_ENOMEM;
    if (!st) {
        yk_node *y = yk_embedding(g, yk_const(g, s->idx[0]),
                                  yk_param_node(g, s->w), YK_NO_PADDING,
                                  false, true);
        st = yk_backward(g, yk_sum(g, y, 0, NULL, false));
        yk_graph_end(g);
    }
    return st;
}

static yk_status setup_chain(bench_state *s, const sizes *z)
{
    s->w = param_uniform(s, "x", 1, &z->chain_n, 1, 1.0);
    return made(s, s->w);
}

/* The seed: nn.EmbeddingBag(1000, 128) (mean), input 3 bags of 7 given
 * flat with offsets [0, 7, 14]. */
static yk_status setup_seed(bench_state *s, const sizes *z)
{
    yk_status st = setup_table(s, z->seed_V, z->seed_D);
    int64_t n = z->seed_bags * z->seed_L, off[16];
    for (int64_t b = 0; b < z->seed_bags && b < 16; b++)
        off[b] = b * z->seed_L;
    if (!st)
        st = index_sets(s, s->idx, 1, &n, z->seed_V, 100);
    if (!st) {
        s->offsets = yk_tensor_from(s->ctx, YK_I64, 1, &z->seed_bags, off);
        st = made(s, s->offsets);
    }
    return st;
}

/* EmbeddingBag(V, D, mean, sparse) -> Linear(D, hidden) -> ReLU ->
 * Linear(hidden, classes); weights as nn.Linear's init bounds. */
static yk_status setup_train(bench_state *s, const bench_def *d,
                             const sizes *z)
{
    yk_status st = setup_table(s, z->train_V, z->D);
    if (st)
        return st;
    double b1 = 1 / sqrt((double)z->D), b2 = 1 / sqrt((double)z->hidden);
    s->lin[0] = param_uniform(s, "W1", 2, (int64_t[]){z->hidden, z->D}, 3, b1);
    s->lin[1] = param_uniform(s, "b1", 1, &z->hidden, 4, b1);
    s->lin[2] = param_uniform(s, "W2", 2, (int64_t[]){z->classes, z->hidden},
                              5, b2);
    s->lin[3] = param_uniform(s, "b2", 1, &z->classes, 6, b2);
    for (int i = 0; i < 4 && !st; i++)
        st = made(s, s->lin[i]);
    if (!st)
        st = index_sets(s, s->idx, 2, (int64_t[]){z->train_B, z->train_L},
                        z->train_V, 100);
    if (!st)
        st = index_sets(s, s->target, 1, &z->train_B, z->classes, 200);
    if (st)
        return st;
    if (d->variant == TRAIN_ADAM) {
        s->opt = make_optim(s, YK_OPTIM_SPARSE_ADAM, NAN, 1, &s->w);
        s->opt_dense = make_optim(s, YK_OPTIM_ADAM, NAN, 4, s->lin);
        st = made(s, s->opt_dense);
    } else {
        yk_param *all[5] = {s->w, s->lin[0], s->lin[1], s->lin[2], s->lin[3]};
        s->opt = make_optim(s, YK_OPTIM_SGD, 0.01, 5, all);
    }
    return st ? st : made(s, s->opt);
}

static yk_status setup_matmul(bench_state *s, const bench_def *d,
                              const sizes *z)
{
    int64_t mkn[3];
    matmul_shape(d, z, mkn);
    s->a = yk_tensor_zeros(s->ctx, YK_F32, 2, (int64_t[]){mkn[0], mkn[1]});
    s->b = yk_tensor_zeros(s->ctx, YK_F32, 2, (int64_t[]){mkn[1], mkn[2]});
    if (!s->a || !s->b)
        return made(s, NULL);
    yk_status st = yk_tensor_fill_uniform(s->a, 1, -1, 1);
    return st ? st : yk_tensor_fill_uniform(s->b, 2, -1, 1);
}

static yk_status setup_gather(bench_state *s, const bench_def *d,
                              const sizes *z)
{
    size_t align = d->variant == GATHER_THP ? (size_t)2 << 20 : 64;
    size_t bytes = (size_t)(z->V * z->D) * sizeof(float);
    bytes = (bytes + align - 1) / align * align;
    s->gather_mem = aligned_alloc(align, bytes);
    s->gather_out = malloc((size_t)(z->B * z->D) * sizeof(float));
    if (!s->gather_mem || !s->gather_out)
        return YK_ENOMEM;
    if (d->variant == GATHER_THP)
        madvise(s->gather_mem, bytes, MADV_HUGEPAGE); /* a hint: may fail */
    s->table = yk_tensor_wrap(s->ctx, YK_F32, 2, (int64_t[]){z->V, z->D},
                              s->gather_mem);
    if (!s->table)
        return made(s, NULL);
    yk_status st = yk_tensor_fill_uniform(s->table, 1, -0.1, 0.1);
    return st ? st : index_sets(s, s->idx, 2, (int64_t[]){z->B, d->L}, z->V,
                                100);
}

static yk_status setup(bench_state *s, const bench_def *d, const sizes *z)
{
    s->ctx = yk_ctx_new();
    if (!s->ctx)
        return YK_ENOMEM;
    s->nsets = z->nsets;
    yk_status st = yk_set_threads(s->ctx, s->threads);
    s->m = st ? NULL : yk_model_new(s->ctx);
    if (!st)
        st = made(s, s->m);
    if (st)
        return st;
    switch (d->kind) {
    case K_BAG_FWD: case K_BAG_SGD: case K_EXT_SGD:
        return setup_bag(s, d, z);
    case K_EMB_FWD: case K_EMB_SGD:
        return setup_emb(s, d, z);
    case K_CHAIN:
        return setup_chain(s, z);
    case K_SEED:
        return setup_seed(s, z);
    case K_TRAIN:
        return setup_train(s, d, z);
    case K_MATMUL:
        return setup_matmul(s, d, z);
    case K_GATHER:
        return setup_gather(s, d, z);
    case K_OPTIM:
        return setup_optim(s, d, z);
    }
    return YK_EINVAL;
}

static void teardown(bench_state *s)
{
    yk_optim_free(s->opt);
    yk_optim_free(s->opt_dense);
    for (int k = 0; k < MAX_SETS; k++) {
        yk_tensor_free(s->idx[k]);
        yk_tensor_free(s->target[k]);
    }
    yk_tensor_free(s->offsets);
    yk_tensor_free(s->a);
    yk_tensor_free(s->b);
    yk_tensor_free(s->table);
    free(s->gather_out);
    free(s->gather_mem);
    yk_model_free(s->m);
    yk_ctx_free(s->ctx);
}

/* ------------------------------------------------------------ steps */

/* The index set of this step (rotated), and the step's number. */
static int64_t next_set(bench_state *s)
{
    return s->next++ % s->nsets;
}

static yk_node *bag_of(yk_graph *g, yk_node *idx, yk_node *w,
                       yk_bag_mode mode, bool sparse)
{
    yk_bag_opts o = yk_bag_defaults();
    o.mode = mode;
    o.sparse = sparse;
    return yk_embedding_bag(g, idx, w, NULL, NULL, &o);
}

/* The output of a bag, extended bag or embedding benchmark for set k. */
static yk_node *lookup_forward(yk_graph *g, bench_state *s,
                               const bench_def *d, int64_t k)
{
    yk_node *idx = yk_const(g, s->idx[k]);
    yk_node *w = yk_param_node(g, s->w);
    if (d->kind == K_EMB_FWD || d->kind == K_EMB_SGD)
        return yk_embedding(g, idx, w, YK_NO_PADDING, false, d->sparse);
    if (d->kind != K_EXT_SGD)
        return bag_of(g, idx, w, d->mode, d->sparse);
    yk_node *parts[2] = {w, yk_param_node(g, s->extra)};
    if (d->variant == EXT_CAT) /* the natural way: bag over [shared | extra] */
        return bag_of(g, idx, yk_cat(g, 2, parts, 1), d->mode, d->sparse);
    /* the hand-written way: two bags, their outputs concatenated */
    yk_node *outs[2] = {bag_of(g, idx, parts[0], d->mode, d->sparse),
                        bag_of(g, idx, parts[1], d->mode, d->sparse)};
    return yk_cat(g, 2, outs, 1);
}

/* Inference: grad off, so nothing is saved for backward. */
static yk_status step_forward(bench_state *s, const bench_def *d)
{
    yk_graph *g = yk_graph_begin(s->ctx);
    if (!g)
        return YK_ENOMEM;
    yk_graph_set_grad_enabled(g, false);
    yk_node *y = lookup_forward(g, s, d, next_set(s));
    yk_value(y); /* a lazy result is made here */
    yk_status st = yk_graph_status(g);
    yk_graph_end(g);
    return st;
}

static yk_status optim_steps(bench_state *s)
{
    yk_status st = yk_optim_step(s->opt);
    if (!st && s->opt_dense)
        st = yk_optim_step(s->opt_dense);
    return st;
}

/* zero_grad, forward, sum, backward, optimizer step. */
static yk_status step_sgd(bench_state *s, const bench_def *d)
{
    yk_model_zero_grad(s->m);
    yk_graph *g = yk_graph_begin(s->ctx);
    if (!g)
        return YK_ENOMEM;
    yk_node *y = lookup_forward(g, s, d, next_set(s));
    yk_status st = yk_backward(g, yk_sum(g, y, 0, NULL, false));
    yk_graph_end(g);
    return st ? st : optim_steps(s);
}

/* y = x; y = y + x, chain_ops times; backward from sum(y). */
static yk_status step_chain(bench_state *s, const sizes *z)
{
    yk_model_zero_grad(s->m);
    yk_graph *g = yk_graph_begin(s->ctx);
    if (!g)
        return YK_ENOMEM;
    yk_node *x = yk_param_node(g, s->w), *y = x;
    for (int i = 0; i < z->chain_ops; i++)
        y = yk_add(g, y, x);
    yk_status st = yk_backward(g, yk_sum(g, y, 0, NULL, false));
    yk_graph_end(g);
    return st;
}

/* The seed's bag forward and backward of sum(output), dense gradient. */
static yk_status step_seed(bench_state *s)
{
    yk_model_zero_grad(s->m);
    yk_graph *g = yk_graph_begin(s->ctx);
    if (!g)
        return YK_ENOMEM;
    yk_bag_opts o = yk_bag_defaults();
    yk_node *y = yk_embedding_bag(g, yk_const(g, s->idx[next_set(s)]),
                                  yk_param_node(g, s->w),
                                  yk_const(g, s->offsets), NULL, &o);
    yk_status st = yk_backward(g, yk_sum(g, y, 0, NULL, false));
    yk_graph_end(g);
    return st;
}

static yk_status step_train(bench_state *s)
{
    yk_model_zero_grad(s->m);
    yk_graph *g = yk_graph_begin(s->ctx);
    if (!g)
        return YK_ENOMEM;
    int64_t k = next_set(s);
    yk_node *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = yk_param_node(g, s->lin[i]);
    yk_node *e = bag_of(g, yk_const(g, s->idx[k]), yk_param_node(g, s->w),
                        YK_BAG_MEAN, true);
    yk_node *h = yk_relu(g, yk_linear(g, e, p[0], p[1]));
    yk_node *logits = yk_linear(g, h, p[2], p[3]);
    yk_node *loss = yk_cross_entropy(g, logits, yk_const(g, s->target[k]),
                                     YK_REDUCE_MEAN);
    yk_status st = yk_backward(g, loss);
    yk_graph_end(g);
    return st ? st : optim_steps(s);
}

static yk_status step_matmul(bench_state *s)
{
    yk_graph *g = yk_graph_begin(s->ctx);
    if (!g)
        return YK_ENOMEM;
    yk_value(yk_matmul(g, yk_const(g, s->a), yk_const(g, s->b)));
    yk_status st = yk_graph_status(g);
    yk_graph_end(g);
    return st;
}

/* How many lookups ahead the prefetching gather asks for a row. */
#define GATHER_AHEAD 8

/* out[b] = sum of the L rows of bag b: the plain loop, the reference for
 * the bag forward. Bags are split between threads. */
static void gather_bags(const float *restrict table, int64_t D,
                        const int64_t *restrict idx, int64_t B, int64_t L,
                        bool prefetch, int threads, float *restrict out)
{
    int64_t n = B * L;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (int64_t b = 0; b < B; b++) {
        float *o = out + b * D;
        memset(o, 0, (size_t)D * sizeof *o);
        for (int64_t i = b * L; i < (b + 1) * L; i++) {
            if (prefetch && i + GATHER_AHEAD < n) {
                const float *p = table + idx[i + GATHER_AHEAD] * D;
                for (int64_t c = 0; c < D; c += 16)
                    __builtin_prefetch(p + c);
                __builtin_prefetch(p + D - 1); /* a row's last line */
            }
            const float *r = table + idx[i] * D;
            for (int64_t c = 0; c < D; c++)
                o[c] += r[c];
        }
    }
}

static yk_status step_gather(bench_state *s, const bench_def *d)
{
    const yk_tensor *idx = s->idx[next_set(s)];
    gather_bags(yk_tensor_data(s->table), yk_tensor_dim(s->table, 1),
                yk_tensor_data(idx), yk_tensor_dim(idx, 0),
                yk_tensor_dim(idx, 1), d->variant != GATHER_PLAIN,
                s->threads, s->gather_out);
    return YK_OK;
}

static yk_status step(bench_state *s, const bench_def *d, const sizes *z)
{
    switch (d->kind) {
    case K_BAG_FWD: case K_EMB_FWD:
        return step_forward(s, d);
    case K_BAG_SGD: case K_EXT_SGD: case K_EMB_SGD:
        return step_sgd(s, d);
    case K_CHAIN:
        return step_chain(s, z);
    case K_SEED:
        return step_seed(s);
    case K_TRAIN:
        return step_train(s);
    case K_MATMUL:
        return step_matmul(s);
    case K_GATHER:
        return step_gather(s, d);
    case K_OPTIM:
        return yk_optim_step(s->opt);
    }
    return YK_EINVAL;
}

/* ----------------------------------------------------------- timing */

/* Milliseconds on clock c: CLOCK_MONOTONIC (wall), or
 * CLOCK_PROCESS_CPUTIME_ID (CPU time of all our threads). */
static double clock_ms(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

typedef struct timing {
    int reps, inner;
    double median, min, max; /* wall ms per step */
    double cpu_median;       /* process CPU ms per step */
} timing;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs inner steps; *ms gets the wall time per step, *cpu (if not NULL)
 * the process CPU time per step. */
static yk_status timed_steps(bench_state *s, const bench_def *d,
                             const sizes *z, int inner, double *ms,
                             double *cpu)
{
    double c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
    double t0 = clock_ms(CLOCK_MONOTONIC);
    for (int i = 0; i < inner; i++) {
        yk_status st = step(s, d, z);
        if (st)
            return st;
    }
    *ms = (clock_ms(CLOCK_MONOTONIC) - t0) / inner;
    if (cpu)
        *cpu = (clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0) / inner;
    return YK_OK;
}

/* The median of n sorted values. */
static double median_of(const double *v, int n)
{
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Two single warm-up runs (the second sizes inner), z->warmup - 1 more of
 * inner steps, then z->reps timed repetitions. */
static yk_status measure(bench_state *s, const bench_def *d, const sizes *z,
                         timing *t)
{
    double first, times[1000], cpu[1000];
    /* The first run is cold (page faults, lazy allocations); the second
     * sizes inner. */
    yk_status st = timed_steps(s, d, z, 1, &first, NULL);
    if (!st)
        st = timed_steps(s, d, z, 1, &first, NULL);
    if (st)
        return st;
    double want = ceil(z->target_ms / fmax(first, 1e-4));
    t->inner = (int)fmin(fmax(want, 1), 100000);
    for (int w = 1; w < z->warmup && !st; w++)
        st = timed_steps(s, d, z, t->inner, &first, NULL);
    t->reps = z->reps < 1000 ? z->reps : 1000;
    for (int r = 0; r < t->reps && !st; r++)
        st = timed_steps(s, d, z, t->inner, &times[r], &cpu[r]);
    if (st)
        return st;
    qsort(times, (size_t)t->reps, sizeof *times, cmp_double);
    qsort(cpu, (size_t)t->reps, sizeof *cpu, cmp_double);
    t->median = median_of(times, t->reps);
    t->min = times[0];
    t->max = times[t->reps - 1];
    t->cpu_median = median_of(cpu, t->reps);
    return YK_OK;
}

/* ------------------------------------------------------- peak memory */

/* Resets the kernel's peak-RSS mark (Linux >= 4.0), so that the peak read
 * after a benchmark is that benchmark's. False where it cannot. */
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* VmHWM of /proc/self/status in MiB, or -1. */
static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtod(line + 6, NULL);
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

/* ------------------------------------------------------------ output */

/* x to 6 significant digits (per-op times are microseconds). */
static double sig6(double x)
{
    char b[32];
    snprintf(b, sizeof b, "%.6g", x);
    return strtod(b, NULL);
}

/* Lookups of one step times the bytes of a looked-up row (0: none). */
static double bytes_gathered(const bench_def *d, const sizes *z)
{
    switch (d->kind) {
    case K_BAG_FWD: case K_BAG_SGD: case K_GATHER:
        return (double)(z->B * d->L * z->D) * 4;
    case K_EXT_SGD:
        return (double)(z->B * d->L * (z->D + z->D2)) * 4;
    case K_EMB_FWD: case K_EMB_SGD:
        return (double)(z->emb_rows * z->emb_cols * z->D) * 4;
    default:
        return 0;
    }
}

static void add_int(cJSON *o, const char *k, int64_t v)
{
    cJSON_AddNumberToObject(o, k, (double)v);
}

/* The shape fields: the same names as bench_torch.py writes. */
static void add_shape(cJSON *o, const bench_def *d, const sizes *z)
{
    int64_t mkn[3];
    switch (d->kind) {
    case K_BAG_FWD: case K_BAG_SGD: case K_EXT_SGD: case K_GATHER:
        add_int(o, "V", z->V);
        add_int(o, "D", z->D);
        if (d->kind == K_EXT_SGD)
            add_int(o, "D2", z->D2);
        add_int(o, "B", z->B);
        add_int(o, "L", d->L);
        cJSON_AddStringToObject(o, "mode", mode_name(d->mode));
        break;
    case K_EMB_FWD: case K_EMB_SGD:
        add_int(o, "V", z->V);
        add_int(o, "D", z->D);
        add_int(o, "rows", z->emb_rows);
        add_int(o, "cols", z->emb_cols);
        break;
    case K_CHAIN:
        add_int(o, "ops", z->chain_ops);
        add_int(o, "n", z->chain_n);
        break;
    case K_SEED:
        add_int(o, "V", z->seed_V);
        add_int(o, "D", z->seed_D);
        add_int(o, "B", z->seed_bags);
        add_int(o, "L", z->seed_L);
        cJSON_AddStringToObject(o, "mode", "mean");
        break;
    case K_TRAIN:
        add_int(o, "V", z->train_V);
        add_int(o, "D", z->D);
        add_int(o, "B", z->train_B);
        add_int(o, "L", z->train_L);
        add_int(o, "hidden", z->hidden);
        add_int(o, "classes", z->classes);
        break;
    case K_MATMUL:
        matmul_shape(d, z, mkn);
        add_int(o, "M", mkn[0]);
        add_int(o, "K", mkn[1]);
        add_int(o, "N", mkn[2]);
        break;
    case K_OPTIM:
        add_int(o, "V", optim_V(d, z));
        add_int(o, "D", z->D);
        add_int(o, "rows", z->emb_rows);
        add_int(o, "cols", z->emb_cols);
        cJSON_AddStringToObject(o, "optimizer",
                                yk_optim_kind_name((yk_optim_kind)d->variant));
        break;
    }
    if (d->kind == K_BAG_SGD || d->kind == K_EXT_SGD || d->kind == K_EMB_SGD)
        cJSON_AddBoolToObject(o, "sparse", d->sparse);
}

static void add_timing(cJSON *o, const bench_def *d, const sizes *z,
                       const timing *t)
{
    /* The chain reports per op; the step's time is kept too. */
    double per = d->kind == K_CHAIN ? z->chain_ops : 1;
    add_int(o, "reps", t->reps);
    add_int(o, "inner", t->inner);
    if (d->kind == K_CHAIN) {
        cJSON_AddBoolToObject(o, "per_op", true);
        cJSON_AddNumberToObject(o, "step_ms", sig6(t->median));
    }
    cJSON_AddNumberToObject(o, "median_ms", sig6(t->median / per));
    cJSON_AddNumberToObject(o, "min_ms", sig6(t->min / per));
    cJSON_AddNumberToObject(o, "max_ms", sig6(t->max / per));
    cJSON_AddNumberToObject(o, "cpu_ms", sig6(t->cpu_median / per));
    double bytes = bytes_gathered(d, z);
    if (bytes > 0)
        cJSON_AddNumberToObject(o, "gbps", sig6(bytes / (t->median * 1e6)));
    if (d->kind == K_MATMUL) {
        int64_t mkn[3];
        matmul_shape(d, z, mkn);
        double flops = 2.0 * (double)mkn[0] * (double)mkn[1] * (double)mkn[2];
        cJSON_AddNumberToObject(o, "gflops", sig6(flops / (t->median * 1e6)));
    }
}

/* Runs one benchmark and prints its line: timings, or an "error". */
static bool run_bench(const bench_def *d, const sizes *z, int threads)
{
    bench_state s = {.threads = threads};
    reset_peak_rss();
    timing t = {0};
    yk_status st = setup(&s, d, z);
    if (!st)
        st = measure(&s, d, z, &t);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "impl", "yoke");
    add_shape(o, d, z);
    add_int(o, "threads", threads);
    if (st) {
        const char *msg = s.ctx ? yk_last_error(s.ctx) : "";
        char err[640];
        snprintf(err, sizeof err, "%s: %s", yk_status_name(st), msg);
        cJSON_AddStringToObject(o, "error", err);
    } else {
        add_timing(o, d, z, &t);
    }
    cJSON_AddNumberToObject(o, "peak_rss_mb", sig6(peak_rss_mb()));
    teardown(&s);
    char *line = cJSON_PrintUnformatted(o);
    if (line)
        printf("%s\n", line);
    fflush(stdout);
    free(line);
    cJSON_Delete(o);
    return st == YK_OK;
}

/* -------------------------------------------------------------- main */

static const char usage[] =
"usage: bench [--threads N] [--filter SUBSTR] [--reps N] [--quick]\n"
"       bench --list | --serve | --help | --version\n"
"\n"
"Runs yoke's benchmarks and prints one JSON line each: name, impl, shape\n"
"fields, threads, reps, inner (steps a repetition), median_ms, min_ms,\n"
"max_ms (wall time per step; per op for overhead.add_chain), cpu_ms (median\n"
"process CPU time per step: all threads, so about T x wall at T threads;\n"
"at T=1 it is the time with other processes' time slices left out), gbps\n"
"(bytes of table rows looked up per second, where it applies), gflops\n"
"(matmul), peak_rss_mb\n"
"(peak resident memory during the benchmark), or \"error\".\n"
"tools/bench_torch.py runs the same benchmarks with PyTorch, and\n"
"tools/bench_compare.py runs both and prints a table (tools/BENCH.md).\n"
"\n"
"  --threads N     threads for yoke (yk_set_threads) and the gather loop\n"
"                  (default 1)\n"
"  --filter SUBSTR only the benchmarks whose name contains SUBSTR\n"
"  --reps N        timed repetitions (default 10; 3 with --quick)\n"
"  --quick         tiny sizes, for a smoke test of a few seconds\n"
"  --list          print the benchmark names and exit\n"
"  --serve         read benchmark names from stdin, one a line, and run\n"
"                  each (exact name) as it comes\n"
"  --help          this text\n"
"  --version       the version of yoke\n"
"\n"
"Exit status: 0 when every benchmark ran, 1 when one failed, 2 on a bad\n"
"option or a filter that matches nothing.\n";

typedef struct options {
    int threads, reps;
    const char *filter;
    bool quick, list, serve;
} options;

/* A positive integer option value, else -1. */
static int positive(const char *s)
{
    char *end;
    long v = s ? strtol(s, &end, 10) : -1;
    return s && *s && !*end && v >= 1 && v <= 100000 ? (int)v : -1;
}

/* 0 to run, 1 to exit 0 (help, version), 2 on a bad option. */
static int parse_options(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        } else if (strcmp(a, "--version") == 0) {
            printf("bench (yoke %s)\n", yk_version());
            return 1;
        } else if (strcmp(a, "--quick") == 0) {
            o->quick = true;
        } else if (strcmp(a, "--list") == 0) {
            o->list = true;
        } else if (strcmp(a, "--serve") == 0) {
            o->serve = true;
        } else if (strcmp(a, "--filter") == 0 && v) {
            o->filter = v;
            i++;
        } else if ((strcmp(a, "--threads") == 0 ||
                    strcmp(a, "--reps") == 0) && positive(v) > 0) {
            *(a[2] == 't' ? &o->threads : &o->reps) = positive(v);
            i++;
        } else {
            fprintf(stderr, "bench: bad option or value: %s%s%s\n%s", a,
                    v ? " " : "", v ? v : "", usage);
            return 2;
        }
    }
    return 0;
}

static const bench_def *find_bench(const char *name)
{
    for (int i = 0; i < N_BENCHES; i++)
        if (strcmp(benches[i].name, name) == 0)
            return &benches[i];
    return NULL;
}

/* --serve: one exact name a line; unknown names get an error line. */
static bool serve(const sizes *z, int threads)
{
    char line[256];
    bool ok = true;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!*line)
            continue;
        const bench_def *d = find_bench(line);
        if (d) {
            ok &= run_bench(d, z, threads);
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", line);
        cJSON_AddStringToObject(o, "impl", "yoke");
        cJSON_AddStringToObject(o, "error", "unknown benchmark");
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s ? s : "{}");
        fflush(stdout);
        free(s);
        cJSON_Delete(o);
        ok = false;
    }
    return ok;
}

int main(int argc, char **argv)
{
    options o = {.threads = 1};
    int r = parse_options(argc, argv, &o);
    if (r)
        return r == 1 ? 0 : 2;
    sizes z = o.quick ? quick_sizes() : full_sizes();
    if (o.reps)
        z.reps = o.reps;
    if (o.serve)
        return serve(&z, o.threads) ? 0 : 1;
    bool ok = true, any = false;
    for (int i = 0; i < N_BENCHES; i++) {
        if (o.filter && !strstr(benches[i].name, o.filter))
            continue;
        any = true;
        if (o.list)
            printf("%s\n", benches[i].name);
        else
            ok &= run_bench(&benches[i], &z, o.threads);
    }
    if (!any) {
        fprintf(stderr, "bench: no benchmark name contains \"%s\" (see "
                "--list)\n", o.filter);
        return 2;
    }
    return ok ? 0 : 1;
}
