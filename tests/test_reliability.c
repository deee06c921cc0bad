/*
 * Reliability: allocation failure at every allocation of a training step of
 * the seed's extended model, of a checkpoint save and load with optimizer
 * state, and of a case evaluation; every truncation of a checkpoint with
 * optimizer state; a sweep of bad input over the public API (NULL handles,
 * bad sizes, mismatched dtypes and shapes, indices at the edges); numerics
 * at logits of +-1e4; the NaN/Inf check mode (once the library has it);
 * determinism across thread counts and runs. (The 500-step leak run is
 * tools/long_run, run by meson as the test "long_run".)
 *
 * Where the numbers come from: only the numerics section checks computed
 * values against expected numbers (worked by hand in its comments). The
 * other tests compare the library with itself where it must agree bit for
 * bit (a step that failed and was retried against one that never failed;
 * one thread against two; a save under a failing allocator against a save
 * without), or check contracts (statuses, messages, files left as they
 * were).
 *
 * The extended model is the seed's third snippet (models/seed_examples.c):
 * a shared [V, D] table read by an Embedding and, through the lazy column
 * concatenation [shared | extra] with a bag-only [V, D2] table, by a mean
 * EmbeddingBag; a loss (mse or cross-entropy) over both; Adam (dense
 * gradients) or SparseAdam (row-sparse).
 */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "case.h"

/* With RELIABILITY_VERBOSE set, the tests say how much they covered. */
__attribute__((format(printf, 1, 2)))
static void note(const char *fmt, ...)
{
    if (!getenv("RELIABILITY_VERBOSE"))
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ================================================================== *
 * The seed's extended model                                            *
 * ================================================================== */

typedef enum { LOSS_MSE, LOSS_CE } loss_kind;

typedef struct ext_config {
    const char *name;
    loss_kind loss;
    yk_optim_kind optim; /* YK_OPTIM_ADAM or YK_OPTIM_SPARSE_ADAM */
    int64_t V, D, D2;
} ext_config;

/* The seed's sizes (vocab 1000, dims 128 + 16) and small ones for the
 * allocation-failure loops, which rebuild the model once per allocation. */
#define SEED_SIZE 1000, 128, 16
#define SMALL_SIZE 12, 4, 3

static const ext_config alloc_configs[] = {
    {"mse+adam", LOSS_MSE, YK_OPTIM_ADAM, SMALL_SIZE},
    {"ce+adam", LOSS_CE, YK_OPTIM_ADAM, SMALL_SIZE},
    {"mse+sparse_adam", LOSS_MSE, YK_OPTIM_SPARSE_ADAM, SMALL_SIZE},
    {"ce+sparse_adam", LOSS_CE, YK_OPTIM_SPARSE_ADAM, SMALL_SIZE},
    /* at the seed's size the step's arena needs several chunks */
    {"ce+adam at seed size", LOSS_CE, YK_OPTIM_ADAM, SEED_SIZE},
    {"mse+sparse_adam at seed size", LOSS_MSE, YK_OPTIM_SPARSE_ADAM,
     SEED_SIZE},
};
#define N_ALLOC_CONFIGS (sizeof alloc_configs / sizeof *alloc_configs)

typedef struct ext_model {
    yk_ctx *ctx;
    ext_config cfg;
    yk_model *m;
    yk_param *shared, *extra;
    yk_embedding_layer emb;
    yk_bag_layer bag;
    yk_optim *opt;
    yk_tensor *seq, *bags, *offsets; /* [5, 10], [21], [0, 7, 7, 14]    */
    yk_tensor *t_seq, *t_bag;         /* targets: float (mse), i64 (ce) */
} ext_model;

static yk_tensor *randint_tensor(yk_ctx *ctx, uint64_t seed, int64_t hi,
                                 int ndim, const int64_t *shape)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_I64, ndim, shape);
    cr_assert(t, "%s", yk_last_error(ctx));
    cr_assert_eq(yk_tensor_fill_randint(t, seed, 0, hi), YK_OK);
    return t;
}

static yk_tensor *normal_tensor(yk_ctx *ctx, uint64_t seed, int ndim,
                                const int64_t *shape)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F32, ndim, shape);
    cr_assert(t, "%s", yk_last_error(ctx));
    cr_assert_eq(yk_tensor_fill_normal(t, seed, 0, 1), YK_OK);
    return t;
}

/* The model, its inputs and targets, and its optimizer, all made on ctx
 * (the allocation-failure tests arm the allocator only afterwards). With
 * sparse_adam both lookups ask for row-sparse gradients; with Adam and a
 * cross-entropy loss the Embedding's mean over each sequence goes through
 * an output projection tied to the shared table (y = h shared^T, a BLIS
 * matmul whose speed depends on the thread count), so shared gets a dense
 * gradient from three uses. */
static void ext_init(ext_model *e, yk_ctx *ctx, const ext_config *cfg,
                     uint64_t seed)
{
    memset(e, 0, sizeof *e);
    e->ctx = ctx;
    e->cfg = *cfg;
    int64_t V = cfg->V, D = cfg->D, D2 = cfg->D2;
    bool sparse = cfg->optim == YK_OPTIM_SPARSE_ADAM;
    e->m = yk_model_new(ctx);
    cr_assert(e->m);
    e->shared = yk_model_add(e->m, "shared_embedding_matrix", YK_F32, 2,
                             (int64_t[]){V, D});
    e->extra = yk_model_add(e->m, "separate_bag_embedding_matrix", YK_F32, 2,
                            (int64_t[]){V, D2});
    cr_assert(e->shared && e->extra, "%s", yk_last_error(ctx));
    cr_assert_eq(yk_tensor_fill_normal(yk_param_value(e->shared), seed + 10,
                                       0, 1), YK_OK);
    cr_assert_eq(yk_tensor_fill_normal(yk_param_value(e->extra), seed + 11,
                                       0, 1), YK_OK);
    cr_assert_eq(yk_embedding_layer_tied(&e->emb, e->shared), YK_OK);
    cr_assert_eq(yk_bag_layer_tied(&e->bag, e->shared, e->extra,
                                   YK_BAG_MEAN), YK_OK);
    e->emb.sparse = sparse;
    e->bag.opts.sparse = sparse;

    e->seq = randint_tensor(ctx, seed + 1, V, 2, (int64_t[]){5, 10});
    e->bags = randint_tensor(ctx, seed + 2, V, 1, (int64_t[]){21});
    /* four bags, the second one empty */
    e->offsets = TI(ctx, SHAPE(4), IDX(0, 7, 7, 14));
    if (cfg->loss == LOSS_MSE) {
        e->t_seq = normal_tensor(ctx, seed + 20, 3, (int64_t[]){5, 10, D});
        e->t_bag = normal_tensor(ctx, seed + 21, 2, (int64_t[]){4, D + D2});
    } else {
        /* dense: classes are rows of the vocabulary (output projection);
         * sparse: each looked-up vector's D entries are logits */
        e->t_seq = sparse
            ? randint_tensor(ctx, seed + 20, D, 1, (int64_t[]){50})
            : randint_tensor(ctx, seed + 20, V, 1, (int64_t[]){5});
        e->t_bag = randint_tensor(ctx, seed + 21, D + D2, 1, (int64_t[]){4});
    }
    yk_optim_opts oo = yk_optim_defaults(cfg->optim);
    oo.lr = 0.05;
    e->opt = yk_optim_new(ctx, cfg->optim, &oo);
    cr_assert(e->opt, "%s", yk_last_error(ctx));
    cr_assert_eq(yk_optim_add_model(e->opt, e->m), YK_OK);
}

static void ext_free(ext_model *e)
{
    yk_optim_free(e->opt);
    yk_model_free(e->m);
    yk_tensor *ts[] = {e->seq, e->bags, e->offsets, e->t_seq, e->t_bag};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        yk_tensor_free(ts[i]);
    memset(e, 0, sizeof *e);
}

static yk_node *ext_loss(yk_graph *g, ext_model *e)
{
    bool sparse = e->cfg.optim == YK_OPTIM_SPARSE_ADAM;
    yk_node *E = yk_embedding_layer_forward(g, &e->emb, yk_const(g, e->seq));
    yk_node *B = yk_bag_layer_forward(g, &e->bag, yk_const(g, e->bags),
                                      yk_const(g, e->offsets), NULL);
    yk_node *ts = yk_const(g, e->t_seq), *tb = yk_const(g, e->t_bag);
    if (e->cfg.loss == LOSS_MSE)
        return yk_add(g, yk_mse_loss(g, E, ts, YK_REDUCE_MEAN),
                      yk_mse_loss(g, B, tb, YK_REDUCE_MEAN));
    yk_node *logits;
    if (sparse) {
        logits = yk_reshape(g, E, 2, (int64_t[]){50, e->cfg.D});
    } else {
        yk_node *h = yk_mean(g, E, 1, (int[]){1}, false);     /* [5, D] */
        logits = yk_linear(g, h, yk_param_node(g, e->shared), NULL);
    }
    return yk_add(g, yk_cross_entropy(g, logits, ts, YK_REDUCE_MEAN),
                  yk_cross_entropy(g, B, tb, YK_REDUCE_SUM));
}

/* One training step: zero_grad, graph, forward, backward, end, optimizer
 * step. The first error's status (its message is on the context). */
static yk_status ext_step(ext_model *e)
{
    yk_model_zero_grad(e->m);
    yk_graph *g = yk_graph_begin(e->ctx);
    if (!g)
        return yk_last_status(e->ctx);
    yk_node *loss = ext_loss(g, e);
    yk_status s = loss ? yk_backward(g, loss) : yk_graph_status(g);
    yk_graph_end(g);
    return s == YK_OK ? yk_optim_step(e->opt) : s;
}

/* A growing byte buffer for snapshots. */
typedef struct bytes {
    unsigned char *b;
    size_t n, cap;
} bytes;

/* Appends len bytes of src, or len zero bytes when src is NULL. */
static void put(bytes *o, const void *src, size_t len)
{
    while (o->n + len > o->cap) {
        o->cap = o->cap ? 2 * o->cap : 4096;
        o->b = realloc(o->b, o->cap);
        cr_assert(o->b);
    }
    if (src)
        memcpy(o->b + o->n, src, len);
    else
        memset(o->b + o->n, 0, len);
    o->n += len;
}

/* Everything a step may change, as bytes: every parameter's values, and
 * for every parameter its optimizer step count and state tensors (zeros
 * while it has none: a state made at its initial value and not used is
 * no change). The caller frees the result. */
static unsigned char *ext_snapshot(ext_model *e, size_t *size)
{
    bytes o = {0};
    for (int i = 0; i < yk_model_count(e->m); i++) {
        yk_param *p = yk_model_at(e->m, i);
        const yk_tensor *v = yk_param_value(p);
        put(&o, yk_tensor_data(v), yk_tensor_nbytes(v));
        int64_t steps = yk_optim_step_count(e->opt, p);
        put(&o, &steps, sizeof steps);
        for (int k = 0; k < yk_optim_state_count(e->opt); k++) {
            yk_tensor *st = NULL;
            cr_assert_eq(yk_optim_state(e->opt, p,
                                        yk_optim_state_name(e->opt, k), &st),
                         YK_OK);
            put(&o, st ? yk_tensor_data(st) : NULL, yk_tensor_nbytes(v));
        }
    }
    *size = o.n;
    return o.b;
}

/* The parameters' values only. */
static unsigned char *params_snapshot(ext_model *e, size_t *size)
{
    bytes o = {0};
    for (int i = 0; i < yk_model_count(e->m); i++) {
        const yk_tensor *v = yk_param_value(yk_model_at(e->m, i));
        put(&o, yk_tensor_data(v), yk_tensor_nbytes(v));
    }
    *size = o.n;
    return o.b;
}

static void expect_same_snapshot(const unsigned char *a, size_t na,
                                 const unsigned char *b, size_t nb,
                                 const char *what)
{
    cr_assert_eq(na, nb, "%s: snapshot sizes differ", what);
    for (size_t i = 0; i < na; i++)
        cr_assert_eq(a[i], b[i], "%s: byte %zu of the model and optimizer "
                     "state differs", what, i);
}

/* ================================================================== *
 * Allocation failure: a step of the extended model                     *
 * ================================================================== */

/* The bytes a model reaches after warm_up good steps and one more, on the
 * system allocator: what every retried step must reproduce. */
static unsigned char *reference_after(const ext_config *cfg, int steps,
                                      size_t *size)
{
    yk_ctx *c = yk_ctx_new();
    ext_model e;
    ext_init(&e, c, cfg, 7);
    for (int i = 0; i < steps; i++)
        cr_assert_eq(ext_step(&e), YK_OK, "%s: %s", cfg->name,
                     yk_last_error(c));
    unsigned char *b = ext_snapshot(&e, size);
    ext_free(&e);
    yk_ctx_free(c);
    return b;
}

/*
 * For every n: a model that took warm_up good steps runs one more whose
 * n-th allocation fails. The step must fail with YK_ENOMEM and an "out of
 * memory" message, and leave the parameters, step counts and optimizer
 * state as they were; retried with the allocator healed it must give the
 * very bytes of a step that never failed (so nothing was half done); and
 * after freeing everything the allocator holds no byte.
 */
static void fail_every_allocation_of_a_step(const ext_config *cfg,
                                            int warm_up)
{
    size_t ref_size;
    unsigned char *ref = reference_after(cfg, warm_up + 1, &ref_size);
    long n;
    for (n = 1; n < 100000; n++) {
        counting_alloc a = {0};
        yk_ctx *c = yk_ctx_new_with_alloc(counting_hook, &a);
        cr_assert(c);
        ext_model e;
        ext_init(&e, c, cfg, 7);
        for (int i = 0; i < warm_up; i++)
            cr_assert_eq(ext_step(&e), YK_OK);
        size_t before_size, after_size, retry_size;
        unsigned char *before = ext_snapshot(&e, &before_size);
        a.fail_at = a.calls + n;
        yk_status s = ext_step(&e);
        bool failed = a.failed;
        if (failed) {
            cr_assert_eq(s, YK_ENOMEM, "%s, allocation %ld: %s (%s)",
                         cfg->name, n, yk_status_name(s), yk_last_error(c));
            cr_assert(strstr(yk_last_error(c), "out of memory"),
                      "%s, allocation %ld: message \"%s\"", cfg->name, n,
                      yk_last_error(c));
            unsigned char *after = ext_snapshot(&e, &after_size);
            expect_same_snapshot(before, before_size, after, after_size,
                                 "the failed step changed the model");
            free(after);
            a.fail_at = 0;
            cr_assert_eq(ext_step(&e), YK_OK, "%s, retry after allocation "
                         "%ld: %s", cfg->name, n, yk_last_error(c));
        } else {
            cr_assert_eq(s, YK_OK, "%s: %s", cfg->name, yk_last_error(c));
        }
        unsigned char *retry = ext_snapshot(&e, &retry_size);
        expect_same_snapshot(ref, ref_size, retry, retry_size,
                             "the retried step differs from a clean one");
        free(retry);
        free(before);
        ext_free(&e);
        yk_ctx_free(c);
        cr_assert_eq(a.live, 0, "%s, allocation %ld: %lld bytes leaked",
                     cfg->name, n, a.live);
        if (!failed)
            break; /* the step needs fewer than n allocations: all covered */
    }
    /* (a later step reuses the arena chunks of the step before, so it
     * allocates little: the graph itself and a few blocks) */
    cr_assert(n > (warm_up ? 1 : 3), "%s: only %ld allocations in a step",
              cfg->name, n);
    note("%s, step %d: %ld allocations failed in turn", cfg->name,
         warm_up + 1, n - 1);
    free(ref);
}

Test(alloc, every_allocation_of_a_first_step)
{
    /* The first step also makes the optimizer's state. */
    for (size_t i = 0; i < N_ALLOC_CONFIGS; i++)
        fail_every_allocation_of_a_step(&alloc_configs[i], 0);
}

Test(alloc, every_allocation_of_a_later_step)
{
    for (size_t i = 0; i < N_ALLOC_CONFIGS; i++)
        fail_every_allocation_of_a_step(&alloc_configs[i], 2);
}

/* ================================================================== *
 * Allocation failure: checkpoints with optimizer state                 *
 * ================================================================== */

static char tmp_dir[64];

static void make_tmp_dir(void)
{
    strcpy(tmp_dir, "/tmp/yoke-rel-XXXXXX");
    cr_assert(mkdtemp(tmp_dir), "mkdtemp: %s", strerror(errno));
}

static void remove_tmp_dir(void)
{
    DIR *h = opendir(tmp_dir);
    if (!h)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(h)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmp_dir, e->d_name);
            unlink(p);
        }
    closedir(h);
    rmdir(tmp_dir);
}

static void expect_file(const char *path, const unsigned char *want,
                        size_t n, const char *what)
{
    size_t got_n;
    unsigned char *got = slurp(path, &got_n);
    cr_assert(got_n == n && memcmp(got, want, n) == 0,
              "%s: %s changed (%zu bytes, was %zu)", what, path, got_n, n);
    free(got);
}

TestSuite(ckpt_alloc, .init = make_tmp_dir, .fini = remove_tmp_dir);

static const ext_config ckpt_config = {"mse+sparse_adam", LOSS_MSE,
                                       YK_OPTIM_SPARSE_ADAM, SMALL_SIZE};

/* An extended model on c after `steps` good steps from seed. */
static void trained(ext_model *e, yk_ctx *c, uint64_t seed, int steps)
{
    ext_init(e, c, &ckpt_config, seed);
    for (int i = 0; i < steps; i++)
        cr_assert_eq(ext_step(e), YK_OK, "%s", yk_last_error(c));
}

Test(ckpt_alloc, save_with_optimizer_state_over_an_old_file)
{
    /* The old file: another model's checkpoint. The new state: two steps
     * from another seed. A save whose n-th allocation fails must be a
     * clean YK_ENOMEM that leaves the old file byte for byte, no
     * temporary file, the model and optimizer untouched, and no byte
     * held; the save that succeeds must write what a save on the system
     * allocator writes. */
    const char *path = path_in(tmp_dir, "ckpt.safetensors");
    yk_ctx *c0 = yk_ctx_new();
    ext_model old, ref;
    trained(&old, c0, 1, 1);
    trained(&ref, c0, 2, 2);
    yk_save_opts so = {.step = 2, .config = "{\"run\": \"reliability\"}"};
    cr_assert_eq(yk_checkpoint_save(old.m, old.opt, path, &so), YK_OK);
    cr_assert_eq(yk_checkpoint_save(ref.m, ref.opt, path_in(tmp_dir, "ref"), &so),
                 YK_OK);
    size_t old_n, ref_n;
    unsigned char *old_bytes = slurp(path, &old_n);
    unsigned char *ref_bytes = slurp(path_in(tmp_dir, "ref"), &ref_n);
    unlink(path_in(tmp_dir, "ref"));
    long n;
    for (n = 1;; n++) {
        counting_alloc a = {0};
        yk_ctx *c = yk_ctx_new_with_alloc(counting_hook, &a);
        ext_model e;
        trained(&e, c, 2, 2);
        size_t before_n, after_n;
        unsigned char *before = ext_snapshot(&e, &before_n);
        long long base = a.live;
        a.fail_at = a.calls + n;
        yk_status s = yk_checkpoint_save(e.m, e.opt, path, &so);
        unsigned char *after = ext_snapshot(&e, &after_n);
        expect_same_snapshot(before, before_n, after, after_n,
                             "a save changed the model");
        cr_assert_eq(a.live, base, "allocation %ld: the save holds %lld "
                     "bytes", n, a.live - base);
        bool failed = a.failed;
        if (failed) {
            cr_assert_eq(s, YK_ENOMEM, "allocation %ld: %s", n,
                         yk_last_error(c));
            expect_error(c, YK_ENOMEM, "out of memory");
            expect_file(path, old_bytes, old_n, "a failed save");
            cr_assert_eq(entries_in(tmp_dir), 1, "allocation %ld: a temporary "
                         "file was left", n);
        } else {
            cr_assert_eq(s, YK_OK, "%s", yk_last_error(c));
            expect_file(path, ref_bytes, ref_n, "the save that succeeded");
        }
        free(before);
        free(after);
        ext_free(&e);
        yk_ctx_free(c);
        cr_assert_eq(a.live, 0, "allocation %ld: %lld bytes leaked", n,
                     a.live);
        if (!failed)
            break;
    }
    cr_assert(n > 3, "only %ld allocations", n - 1);
    note("checkpoint save: %ld allocations failed in turn", n - 1);
    free(old_bytes);
    free(ref_bytes);
    ext_free(&old);
    ext_free(&ref);
    yk_ctx_free(c0);
}

Test(ckpt_alloc, load_with_optimizer_state_into_a_trained_model)
{
    /* The file holds the state after two steps from seed 2; the model it
     * is loaded into has its own, after one step from seed 1 (so every
     * parameter, step count and state tensor differs). A load whose n-th
     * allocation fails: YK_ENOMEM, the parameters untouched and the file
     * too, no byte held; loading again with the allocator healed gives
     * exactly the state that was saved. */
    const char *path = path_in(tmp_dir, "ckpt.safetensors");
    yk_ctx *c0 = yk_ctx_new();
    ext_model saved;
    trained(&saved, c0, 2, 2);
    cr_assert_eq(yk_checkpoint_save(saved.m, saved.opt, path, NULL), YK_OK);
    size_t want_n, file_n;
    unsigned char *want = ext_snapshot(&saved, &want_n);
    unsigned char *file = slurp(path, &file_n);
    long n;
    for (n = 1;; n++) {
        counting_alloc a = {0};
        yk_ctx *c = yk_ctx_new_with_alloc(counting_hook, &a);
        ext_model e;
        trained(&e, c, 1, 1);
        size_t before_n, after_n;
        unsigned char *before = params_snapshot(&e, &before_n);
        long long base = a.live;
        a.fail_at = a.calls + n;
        yk_status s = yk_checkpoint_load(e.m, e.opt, path, NULL, NULL);
        bool failed = a.failed;
        if (failed) {
            cr_assert_eq(s, YK_ENOMEM, "allocation %ld: %s", n,
                         yk_last_error(c));
            expect_error(c, YK_ENOMEM, "out of memory");
            /* The documented exception: YK_ENOMEM while making the
             * optimizer's state may leave some of it loaded; the
             * parameters stay as they were. */
            unsigned char *after = params_snapshot(&e, &after_n);
            expect_same_snapshot(before, before_n, after, after_n,
                                 "a failed load changed a parameter");
            free(after);
            cr_assert_eq(a.live, base, "allocation %ld: %lld bytes held", n,
                         a.live - base);
            a.fail_at = 0;
            cr_assert_eq(yk_checkpoint_load(e.m, e.opt, path, NULL, NULL),
                         YK_OK, "%s", yk_last_error(c));
        } else {
            cr_assert_eq(s, YK_OK, "%s", yk_last_error(c));
        }
        unsigned char *loaded = ext_snapshot(&e, &after_n);
        expect_same_snapshot(want, want_n, loaded, after_n,
                             "the loaded state differs from the saved one");
        free(loaded);
        free(before);
        expect_file(path, file, file_n, "a load");
        ext_free(&e);
        yk_ctx_free(c);
        cr_assert_eq(a.live, 0, "allocation %ld: %lld bytes leaked", n,
                     a.live);
        if (!failed)
            break;
    }
    cr_assert(n > 3, "only %ld allocations", n - 1);
    note("checkpoint load: %ld allocations failed in turn", n - 1);
    free(want);
    free(file);
    ext_free(&saved);
    yk_ctx_free(c0);
}

/* ================================================================== *
 * Truncated checkpoints with optimizer state                           *
 * ================================================================== */

Test(ckpt_alloc, every_truncation_of_a_checkpoint_with_optimizer_state)
{
    /* tests/test_checkpoint.c cuts a weights-only file; this one holds
     * SparseAdam's state too (step counts, exp_avg, exp_avg_sq of both
     * tables). Every prefix must be YK_EFORMAT naming the file, and leave
     * the model and its optimizer's state exactly as they were. */
    yk_ctx *c = yk_ctx_new();
    ext_model saved, e;
    trained(&saved, c, 2, 2);
    trained(&e, c, 1, 1);
    cr_assert_eq(yk_checkpoint_save(saved.m, saved.opt, path_in(tmp_dir, "full"),
                                    &(yk_save_opts){.step = 2}), YK_OK);
    size_t size, before_n, after_n;
    unsigned char *b = slurp(path_in(tmp_dir, "full"), &size);
    unsigned char *before = ext_snapshot(&e, &before_n);
    const char *cut = path_in(tmp_dir, "cut");
    for (size_t n = 0; n < size; n++) {
        spit(cut, b, n);
        yk_status s = yk_checkpoint_load(e.m, e.opt, cut, NULL, NULL);
        cr_assert_eq(s, YK_EFORMAT, "%zu of %zu bytes: %s: %s", n, size,
                     yk_status_name(s), yk_last_error(c));
        expect_error(c, YK_EFORMAT, cut);
        unsigned char *after = ext_snapshot(&e, &after_n);
        expect_same_snapshot(before, before_n, after, after_n,
                             "a truncated file changed the model");
        free(after);
    }
    note("checkpoint with optimizer state: %zu truncations", size);
    cr_assert_eq(yk_checkpoint_load(e.m, e.opt, path_in(tmp_dir, "full"), NULL, NULL),
                 YK_OK, "%s", yk_last_error(c));
    free(b);
    free(before);
    ext_free(&saved);
    ext_free(&e);
    yk_ctx_free(c);
}

/* ================================================================== *
 * Allocation failure: a case evaluation                                *
 * ================================================================== */

/*
 * tools/case.h has no entry point that takes a context: a case evaluates
 * in the context cf_load made (cf_case.ctx, a public field). The test
 * points that field at a failing context for the session and puts it back
 * before cf_free; the case's own tensors stay in their context.
 */
static void eval_in(cf_case *c, yk_ctx *ctx, cf_result *r, bool *made)
{
    yk_ctx *own = c->ctx;
    c->ctx = ctx;
    cf_session s;
    char err[CF_MSG];
    *made = cf_session_init(&s, c, err, sizeof err);
    if (*made) {
        cf_run(&s, r);
        cf_session_free(&s);
    } else {
        memset(r, 0, sizeof *r);
        r->status = YK_ENOMEM;
        snprintf(r->message, sizeof r->message, "%s", err);
    }
    c->ctx = own;
}

static void expect_same_result(const cf_case *c, const cf_result *a,
                               const cf_result *b)
{
    for (int j = 0; j < c->n_nodes; j++)
        cr_assert(yk_tensor_nbytes(a->values[j]) ==
                  yk_tensor_nbytes(b->values[j]) &&
                  memcmp(yk_tensor_data(a->values[j]),
                         yk_tensor_data(b->values[j]),
                         yk_tensor_nbytes(a->values[j])) == 0,
                  "value of node %s differs", c->nodes[j].name);
    for (int i = 0; i < c->n_leaves; i++) {
        if (a->grads[i])
            cr_assert(memcmp(yk_tensor_data(a->grads[i]),
                             yk_tensor_data(b->grads[i]),
                             yk_tensor_nbytes(a->grads[i])) == 0,
                      "gradient of leaf %s differs", c->leaves[i].name);
        if (a->params && a->params[i])
            cr_assert(b->params && b->params[i] &&
                      memcmp(yk_tensor_data(a->params[i]),
                             yk_tensor_data(b->params[i]),
                             yk_tensor_nbytes(a->params[i])) == 0,
                      "trained leaf %s differs", c->leaves[i].name);
    }
}

/* For every n: the case run (cf_run) on a context whose n-th allocation
 * fails gives a clean YK_ENOMEM with an "out of memory" message and
 * leaks nothing; the run that succeeds gives the very bytes of a run on
 * the system allocator. */
static void fail_every_allocation_of_a_case(const char *path)
{
    char err[CF_MSG];
    cf_case *c = cf_load(path, err, sizeof err);
    cr_assert(c, "%s", err);
    yk_ctx *c0 = yk_ctx_new();
    cf_result ref;
    bool made;
    eval_in(c, c0, &ref, &made);
    cr_assert_eq(ref.status, YK_OK, "%s: %s", path, ref.message);
    long n;
    for (n = 1;; n++) {
        counting_alloc a = {0};
        yk_ctx *ctx = yk_ctx_new_with_alloc(counting_hook, &a);
        a.fail_at = a.calls + n;
        cf_result r;
        eval_in(c, ctx, &r, &made);
        bool failed = a.failed;
        if (failed) {
            cr_assert_eq(r.status, YK_ENOMEM, "%s, allocation %ld: %s: %s",
                         path, n, yk_status_name(r.status), r.message);
            cr_assert(strstr(r.message, "out of memory"),
                      "%s, allocation %ld: message \"%s\"", path, n,
                      r.message);
        } else {
            cr_assert_eq(r.status, YK_OK, "%s", r.message);
            expect_same_result(c, &ref, &r);
        }
        cf_result_free(c, &r);
        yk_ctx_free(ctx);
        cr_assert_eq(a.live, 0, "%s, allocation %ld: %lld bytes leaked",
                     path, n, a.live);
        if (!failed)
            break;
    }
    note("case %s: %ld allocations failed in turn", path, n - 1);
    cr_assert(n > 5, "only %ld allocations", n - 1);
    cf_result_free(c, &ref);
    yk_ctx_free(c0);
    cf_free(c);
}

Test(alloc, every_allocation_of_a_case_evaluation)
{
    /* The seed's three uses of one table in a case file (embedding, and
     * embedding_bag over cat([W, S], 1); f64), and a tied table trained
     * by SparseAdam for several steps with feeds. */
    fail_every_allocation_of_a_case("tests/cases/emb_tie_cat_bag_mean.json");
    fail_every_allocation_of_a_case(
        "tests/cases/optim_tied_sparse_adam_feeds.json");
}

/* ================================================================== *
 * Bad input sweep: every public function of lib/yoke*.h               *
 * ================================================================== */

/*
 * Each probe runs one call in a child process (fork), so a crash is a
 * finding, not the end of the test, and every call sees the same fixture.
 * The child checks what the call returned and the context's message and
 * writes any complaint to a pipe; the parent collects every finding and
 * the test fails at the end listing them all.
 *
 *   ERR(call, statuses, "a|b")   call returns a status in `statuses` (a
 *                                mask of ST(...)), the context has it
 *                                too, and the message contains a and b
 *   ERRN(call, statuses, "a|b")  the same for a call returning an object:
 *                                it must be NULL
 *   GERR(call, statuses, "a|b")  ERRN for an op: the graph failed too
 *   FAILS(call) / NULLS(call)    no context to carry a message: a status
 *                                other than YK_OK / a NULL result
 *   OK(call) / GOK(call)         a valid edge case: YK_OK / a node
 *   EQ(call, v)                  a scalar result equal to v
 *   SAFE(call)                   only: no crash, no sanitizer report
 *
 * yoke_mpi.h is left out: its functions need an MPI launch (tests/test_mpi
 * runs under mpirun).
 */
#define ST(s) (1u << (s))
#define ANY_ERR (~ST(YK_OK))

static int probe_fd = -1;        /* child: where complaints go */
static char findings[32768];     /* parent: all of them */
static int n_findings, n_probes;

__attribute__((format(printf, 1, 2)))
static void complain(const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && write(probe_fd, buf, strlen(buf)) < 0)
        _exit(3);
}

static void add_finding(const char *fmt, ...)
{
    size_t used = strlen(findings);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(findings + used, sizeof findings - used, fmt, ap);
    va_end(ap);
    n_findings++;
}

static void collect(pid_t pid, int fd, const char *call, int line)
{
    char buf[1024];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    n_probes++;
    if (WIFSIGNALED(status))
        add_finding("\n  line %d: CRASH (signal %d, %s): %s", line,
                    WTERMSIG(status), strsignal(WTERMSIG(status)), call);
    else if (WEXITSTATUS(status) != 0)
        add_finding("\n  line %d: exit %d (sanitizer report?): %s", line,
                    WEXITSTATUS(status), call);
    else if (n)
        add_finding("\n  line %d: %s: %s", line, call, buf);
}

#define PROBE(call, ...)                                                     \
    do {                                                                     \
        int fds_[2];                                                         \
        cr_assert_eq(pipe(fds_), 0);                                         \
        fflush(NULL);                                                        \
        pid_t pid_ = fork();                                                 \
        cr_assert(pid_ >= 0);                                                \
        if (pid_ == 0) {                                                     \
            close(fds_[0]);                                                  \
            probe_fd = fds_[1];                                              \
            yk_clear_error(ctx);                                             \
            __VA_ARGS__;                                                     \
            _exit(0);                                                        \
        }                                                                    \
        close(fds_[1]);                                                      \
        collect(pid_, fds_[0], #call, __LINE__);                             \
    } while (0)

/* Every '|'-separated part of parts occurs in msg. */
static bool mentions(const char *msg, const char *parts)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", parts);
    for (char *p = strtok(buf, "|"); p; p = strtok(NULL, "|"))
        if (!strstr(msg, p))
            return false;
    return true;
}

static yk_ctx *ctx; /* the sweep's context: messages are read from it */

static void check_message(yk_status got, unsigned allowed, const char *parts)
{
    if (!(allowed & ST(got))) {
        complain("status %s (message \"%s\")", yk_status_name(got),
                 yk_last_error(ctx));
        return;
    }
    if (yk_last_status(ctx) != got)
        complain("returned %s but the context says %s (\"%s\")",
                 yk_status_name(got), yk_status_name(yk_last_status(ctx)),
                 yk_last_error(ctx));
    else if (parts && !mentions(yk_last_error(ctx), parts))
        complain("message \"%s\" does not name \"%s\"", yk_last_error(ctx),
                 parts);
}

static void check_null(const void *got, unsigned allowed, const char *parts)
{
    if (got)
        complain("returned an object instead of NULL");
    else
        check_message(yk_last_status(ctx), allowed, parts);
}

#define ERR(call, allowed, parts) PROBE(call, check_message((call), (allowed), (parts)))
#define ERRN(call, allowed, parts) PROBE(call, check_null((call), (allowed), (parts)))
#define GERR(g, call, allowed, parts)                                        \
    PROBE(call, {                                                            \
        check_null((call), (allowed), (parts));                              \
        if (yk_graph_status(g) == YK_OK)                                     \
            complain("the graph did not fail");                              \
    })
#define FAILS(call)                                                          \
    PROBE(call, if ((call) == YK_OK) complain("returned YK_OK"))
#define NULLS(call)                                                          \
    PROBE(call, if ((call) != NULL) complain("returned an object"))
#define OK(call)                                                             \
    PROBE(call, {                                                            \
        yk_status s_ = (call);                                               \
        if (s_ != YK_OK)                                                     \
            complain("%s: %s", yk_status_name(s_), yk_last_error(ctx));      \
    })
#define GOK(call)                                                            \
    PROBE(call, if (!(call)) complain("NULL: %s", yk_last_error(ctx)))
#define EQ(call, v)                                                          \
    PROBE(call, {                                                            \
        double got_ = (double)(call), want_ = (double)(v);                   \
        if (!(got_ == want_ || (isnan(got_) && isnan(want_))))               \
            complain("gave %g, want %g", got_, want_);                       \
    })
#define SAFE(call) PROBE(call, (void)(call))
static void expect_no_findings(void)
{
    note("%d probes", n_probes);
    cr_assert(n_findings == 0, "%d of %d probes found problems:%s",
              n_findings, n_probes, findings);
}

/* The sweep's fixture: a model of W f64 [5, 3], W32 f32 [5, 3], X f64
 * [5, 2] and v f64 [3]; a graph g with their nodes and constants; a
 * second graph and a second context to mix up; an Adam over the model; a
 * saved checkpoint in a temporary folder. */
static yk_ctx *ctx2;
static yk_model *m, *m2;
static yk_param *W, *W32, *X, *v, *P2;
static yk_graph *g, *g2;
static yk_node *w, *w32, *x, *vn, *ix, *s0, *f64x, *f32x, *empty, *g2x;
static yk_tensor *t64, *t32, *ti, *tw, *t0, *te;
static yk_optim *o;
static FILE *devnull;
static const int64_t s23[] = {2, 3};
static yk_tensor *kept[64]; /* made by a test, freed by the teardown */
static int n_kept;

static yk_tensor *keep(yk_tensor *t)
{
    cr_assert(t && n_kept < 64);
    return kept[n_kept++] = t;
}

/* A constant node of g over i64 values (the tensor is kept). */
static yk_node *ci(yk_graph *gr, size_t ndim, const int64_t *shape,
                   const int64_t *vals)
{
    return yk_const(gr, keep(TI(ctx, ndim, shape, vals)));
}

static void sweep_setup(void)
{
    make_tmp_dir();
    ctx = yk_ctx_new();
    ctx2 = yk_ctx_new();
    m = yk_model_new(ctx);
    m2 = yk_model_new(ctx2);
    W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){5, 3});
    W32 = yk_model_add(m, "W32", YK_F32, 2, (int64_t[]){5, 3});
    X = yk_model_add(m, "X", YK_F64, 2, (int64_t[]){5, 2});
    v = yk_model_add(m, "v", YK_F64, 1, (int64_t[]){3});
    P2 = yk_model_add(m2, "P", YK_F64, 2, (int64_t[]){5, 3});
    cr_assert(W && W32 && X && v && P2);
    yk_tensor_fill_normal(yk_param_value(W), 1, 0, 1);
    yk_tensor_fill_normal(yk_param_value(W32), 2, 0, 1);
    t64 = yk_tensor_ones(ctx, YK_F64, 2, s23);
    t32 = yk_tensor_ones(ctx, YK_F32, 2, s23);
    ti = TI(ctx, SHAPE(2, 3), IDX(0, 1, 2, 3, 4, 0));
    tw = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){5, 3});
    t0 = yk_tensor_full(ctx, YK_F64, 0, NULL, 2.5);
    g = yk_graph_begin(ctx);
    g2 = yk_graph_begin(ctx);
    w = yk_param_node(g, W);
    w32 = yk_param_node(g, W32);
    x = yk_param_node(g, X);
    vn = yk_param_node(g, v);
    ix = yk_const(g, ti);
    s0 = yk_const(g, t0);
    f64x = yk_const(g, t64);
    f32x = yk_const(g, t32);
    te = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){0, 3});
    empty = yk_const(g, te);
    g2x = yk_const(g2, t64);
    cr_assert(w && w32 && x && vn && ix && s0 && f64x && f32x && empty && g2x);
    o = yk_optim_new(ctx, YK_OPTIM_ADAM, NULL);
    cr_assert(o && yk_optim_add_model(o, m) == YK_OK);
    cr_assert_eq(yk_checkpoint_save(m, o, path_in(tmp_dir, "ck"), NULL), YK_OK);
    devnull = fopen("/dev/null", "w");
}

static void sweep_teardown(void)
{
    if (devnull)
        fclose(devnull);
    yk_graph_end(g);
    yk_graph_end(g2);
    yk_tensor *ts[] = {t64, t32, ti, tw, t0, te};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        yk_tensor_free(ts[i]);
    while (n_kept > 0)
        yk_tensor_free(kept[--n_kept]);
    yk_optim_free(o);
    yk_model_free(m);
    yk_model_free(m2);
    yk_ctx_free(ctx);
    yk_ctx_free(ctx2);
    remove_tmp_dir();
}

TestSuite(sweep, .init = sweep_setup, .fini = sweep_teardown);

Test(sweep, context_and_tensors)
{
    const int64_t big[] = {INT64_MAX, 2}, huge[] = {INT64_C(1) << 40,
                                                  INT64_C(1) << 40};
    const int64_t neg[] = {2, -1}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    double data[6] = {0};

    /* context */
    NULLS(yk_ctx_new_with_alloc(NULL, NULL));
    SAFE(yk_ctx_free(NULL));
    EQ(yk_last_status(NULL), YK_EINVAL);
    SAFE(yk_last_error(NULL));
    SAFE(yk_clear_error(NULL));
    FAILS(yk_set_threads(NULL, 2));
    ERR(yk_set_threads(ctx, 0), ST(YK_EINVAL), "yk_set_threads|n = 0");
    ERR(yk_set_threads(ctx, -5), ST(YK_EINVAL), "yk_set_threads|-5");
    ERR(yk_set_threads(ctx, INT32_MIN), ST(YK_EINVAL), "yk_set_threads");
    EQ(yk_threads(NULL), 1);
    SAFE(yk_status_name((yk_status)99));
    SAFE(yk_status_name((yk_status)-1));
    EQ(yk_dtype_size((yk_dtype)7), 0);
    EQ(yk_dtype_size((yk_dtype)-1), 0);
    SAFE(yk_dtype_name((yk_dtype)-1));

    /* creators: NULL context, bad dtype, ndim, shape, sizes */
    NULLS(yk_tensor_zeros(NULL, YK_F32, 2, s23));
    /* yoke.h says YK_EINVAL for a bad dtype; the library says
     * YK_EDTYPE, which fits too (reported as a note) */
    ERRN(yk_tensor_zeros(ctx, (yk_dtype)9, 2, s23),
         ST(YK_EINVAL) | ST(YK_EDTYPE), "yk_tensor_zeros|dtype");
    ERRN(yk_tensor_zeros(ctx, (yk_dtype)-1, 2, s23),
         ST(YK_EINVAL) | ST(YK_EDTYPE), "yk_tensor_zeros|dtype");
    ERRN(yk_tensor_zeros(ctx, YK_F32, -1, s23), ST(YK_EINVAL) | ST(YK_ESHAPE),
         "yk_tensor_zeros|ndim");
    ERRN(yk_tensor_zeros(ctx, YK_F32, 9, nine), ST(YK_EINVAL) | ST(YK_ESHAPE),
         "yk_tensor_zeros|ndim");
    ERRN(yk_tensor_zeros(ctx, YK_F32, 2, NULL), ST(YK_EINVAL),
         "yk_tensor_zeros|shape");
    ERRN(yk_tensor_zeros(ctx, YK_F32, 2, neg), ST(YK_EINVAL) | ST(YK_ESHAPE),
         "yk_tensor_zeros|-1");
    ERRN(yk_tensor_zeros(ctx, YK_F64, 2, big),
         ST(YK_EINVAL) | ST(YK_ESHAPE) | ST(YK_ENOMEM), "yk_tensor_zeros");
    ERRN(yk_tensor_zeros(ctx, YK_F64, 2, huge),
         ST(YK_EINVAL) | ST(YK_ESHAPE) | ST(YK_ENOMEM), "yk_tensor_zeros");
    ERRN(yk_tensor_ones(ctx, YK_I64, 2, neg),
                     ST(YK_EINVAL) | ST(YK_ESHAPE), "yk_tensor_ones");
    ERRN(yk_tensor_full(ctx, YK_F32, 9, nine, 1), ST(YK_EINVAL) | ST(YK_ESHAPE),
         "yk_tensor_full");
    NULLS(yk_tensor_full(NULL, YK_F32, 2, s23, 1));
    ERRN(yk_tensor_from(ctx, YK_F64, 2, s23, NULL), ST(YK_EINVAL),
         "yk_tensor_from|data");
    ERRN(yk_tensor_from(ctx, YK_F64, 2, big, data),
         ST(YK_EINVAL) | ST(YK_ESHAPE) | ST(YK_ENOMEM), "yk_tensor_from");
    NULLS(yk_tensor_from(NULL, YK_F64, 2, s23, data));
    ERRN(yk_tensor_wrap(ctx, YK_F64, 2, s23, NULL), ST(YK_EINVAL),
         "yk_tensor_wrap|data");
    ERRN(yk_tensor_wrap(ctx, YK_F64, 2, huge, data),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "yk_tensor_wrap");
    NULLS(yk_tensor_wrap(NULL, YK_F64, 2, s23, data));
    NULLS(yk_tensor_clone(NULL));
    SAFE(yk_tensor_free(NULL));

    /* fills */
    FAILS(yk_tensor_fill_normal(NULL, 1, 0, 1));
    ERR(yk_tensor_fill_normal(ti, 1, 0, 1), ST(YK_EDTYPE),
        "yk_tensor_fill_normal|i64");
    ERR(yk_tensor_fill_normal(t64, 1, 0, -1), ST(YK_EINVAL),
        "yk_tensor_fill_normal|std");
    ERR(yk_tensor_fill_normal(t64, 1, 0, NAN), ST(YK_EINVAL),
        "yk_tensor_fill_normal|std");
    FAILS(yk_tensor_fill_uniform(NULL, 1, 0, 1));
    ERR(yk_tensor_fill_uniform(t64, 1, 1, 0), ST(YK_EINVAL),
        "yk_tensor_fill_uniform");
    ERR(yk_tensor_fill_uniform(t64, 1, NAN, 0), ST(YK_EINVAL),
        "yk_tensor_fill_uniform");
    ERR(yk_tensor_fill_uniform(ti, 1, 0, 1), ST(YK_EDTYPE),
        "yk_tensor_fill_uniform|i64");
    FAILS(yk_tensor_fill_randint(NULL, 1, 0, 5));
    ERR(yk_tensor_fill_randint(t64, 1, 0, 5), ST(YK_EDTYPE),
        "yk_tensor_fill_randint|f64");
    ERR(yk_tensor_fill_randint(ti, 1, 5, 5), ST(YK_EINVAL),
        "yk_tensor_fill_randint");
    ERR(yk_tensor_fill_randint(ti, 1, INT64_MAX, INT64_MIN), ST(YK_EINVAL),
        "yk_tensor_fill_randint");
    /* the widest range must not overflow (UBSan watches) */
    OK(yk_tensor_fill_randint(ti, 1, INT64_MIN, INT64_MAX));
    FAILS(yk_tensor_fill(NULL, 1));
    FAILS(yk_tensor_copy(NULL, t64));
    ERR(yk_tensor_copy(t64, NULL), ST(YK_EINVAL), "yk_tensor_copy|src");
    ERR(yk_tensor_copy(t64, t32), ST(YK_EDTYPE), "yk_tensor_copy");
    ERR(yk_tensor_copy(t64, tw), ST(YK_ESHAPE), "yk_tensor_copy");

    /* queries: NULL and out-of-range dims and indices */
    EQ(yk_tensor_ndim(NULL), -1);
    EQ(yk_tensor_dim(NULL, 0), -1);
    EQ(yk_tensor_dim(t64, 2), -1);
    EQ(yk_tensor_dim(t64, -3), -1);
    EQ(yk_tensor_dim(t64, INT32_MIN), -1);
    EQ(yk_tensor_dim(t64, INT32_MAX), -1);
    EQ(yk_tensor_dim(t0, 0), -1);
    NULLS(yk_tensor_shape(NULL));
    EQ(yk_tensor_numel(NULL), 0);
    EQ(yk_tensor_nbytes(NULL), 0);
    NULLS(yk_tensor_data(NULL));
    SAFE(yk_tensor_dtype(NULL));
    EQ(yk_tensor_get(NULL, 0), NAN);
    EQ(yk_tensor_get(t64, -1), NAN);
    EQ(yk_tensor_get(t64, 6), NAN);
    EQ(yk_tensor_get(t64, INT64_MAX), NAN);
    EQ(yk_tensor_get(t64, INT64_MIN), NAN);
    char buf[8];
    SAFE(yk_shape_format(NULL, buf, sizeof buf));
    SAFE(yk_shape_format(t64, NULL, 0));
    SAFE(yk_shape_format(t64, buf, 0));
    SAFE(yk_shape_format(t64, buf, 1));
    SAFE(yk_shape_format(t64, buf, 4)); /* "[2, 3]" cut short */
    FAILS(yk_tensor_print(NULL, t64));
    FAILS(yk_tensor_print(devnull, NULL));
    expect_no_findings();
}

Test(sweep, model_parameters_and_gradients)
{
    const int64_t neg[] = {2, -1}, huge[] = {INT64_C(1) << 40,
                                           INT64_C(1) << 40};
    int64_t nrows;
    const int64_t *rows;
    const yk_tensor *vals;

    NULLS(yk_model_new(NULL));
    SAFE(yk_model_free(NULL));
    NULLS(yk_model_ctx(NULL));
    NULLS(yk_model_add(NULL, "A", YK_F64, 2, s23));
    ERRN(yk_model_add(m, NULL, YK_F64, 2, s23), ST(YK_EINVAL),
         "yk_model_add|name");
    ERRN(yk_model_add(m, "", YK_F64, 2, s23), ST(YK_EINVAL),
         "yk_model_add|name");
    ERRN(yk_model_add(m, "W", YK_F64, 2, s23), ST(YK_EINVAL),
         "yk_model_add|\"W\"");
    ERRN(yk_model_add(m, "A", (yk_dtype)5, 2, s23),
         ST(YK_EINVAL) | ST(YK_EDTYPE), "yk_model_add|dtype");
    ERRN(yk_model_add(m, "A", YK_F64, -1, s23),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "yk_model_add|ndim");
    ERRN(yk_model_add(m, "A", YK_F64, 2, NULL), ST(YK_EINVAL),
         "yk_model_add|shape");
    ERRN(yk_model_add(m, "A", YK_F64, 2, neg),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "yk_model_add|-1");
    ERRN(yk_model_add(m, "A", YK_F64, 2, huge),
         ST(YK_EINVAL) | ST(YK_ESHAPE) | ST(YK_ENOMEM), "yk_model_add");
    NULLS(yk_model_find(NULL, "W"));
    NULLS(yk_model_find(m, NULL));
    NULLS(yk_model_find(m, "absent"));
    EQ(yk_model_count(NULL), 0);
    NULLS(yk_model_at(NULL, 0));
    NULLS(yk_model_at(m, -1));
    NULLS(yk_model_at(m, 4));
    NULLS(yk_model_at(m, INT32_MIN));
    SAFE(yk_model_zero_grad(NULL));

    NULLS(yk_param_name(NULL));
    NULLS(yk_param_model(NULL));
    NULLS(yk_param_value(NULL));
    EQ(yk_param_requires_grad(NULL), false);
    FAILS(yk_param_set_requires_grad(NULL, false));
    EQ(yk_param_same(NULL, NULL), false);
    EQ(yk_param_same(W, NULL), false);
    EQ(yk_param_same(W, W32), false);
    EQ(yk_param_grad_kind(NULL), YK_GRAD_NONE);
    NULLS(yk_param_grad(NULL));
    FAILS(yk_param_grad_rows(NULL, &nrows, &rows, &vals));
    ERR(yk_param_grad_rows(W, &nrows, &rows, &vals), ST(YK_ESTATE),
        "yk_param_grad_rows|\"W\"");
    ERR(yk_param_grad_rows(W, NULL, NULL, NULL),
                    ST(YK_EINVAL) | ST(YK_ESTATE), "yk_param_grad_rows");
    FAILS(yk_param_grad_to_dense(NULL, tw));
    ERR(yk_param_grad_to_dense(W, NULL), ST(YK_EINVAL),
                    "yk_param_grad_to_dense|out");
    ERR(yk_param_grad_to_dense(W, t64), ST(YK_ESHAPE),
        "yk_param_grad_to_dense|\"W\"");
    ERR(yk_param_grad_to_dense(W32, tw), ST(YK_EDTYPE),
        "yk_param_grad_to_dense|\"W32\"");
    expect_no_findings();
}

Test(sweep, graphs_leaves_and_backward)
{
    yk_node *two[2] = {w, w32};
    const yk_tensor *seeds[2] = {t64, t64};
    yk_node *loss = yk_sum(g, w, 0, NULL, false);
    cr_assert(loss);

    NULLS(yk_graph_begin(NULL));
    SAFE(yk_graph_end(NULL));
    EQ(yk_graph_status(NULL), YK_EINVAL);
    NULLS(yk_graph_ctx(NULL));
    SAFE(yk_graph_set_grad_enabled(NULL, false));
    EQ(yk_graph_bytes(NULL), 0);
    NULLS(yk_param_node(NULL, W));
    GERR(g, yk_param_node(g, NULL), ST(YK_EINVAL), "yk_param_node|NULL");
    GERR(g, yk_param_node(g, P2), ST(YK_EINVAL),
         "yk_param_node|\"P\"|another context");
    NULLS(yk_const(NULL, t64));
    GERR(g, yk_const(g, NULL), ST(YK_EINVAL), "yk_const|NULL");
    GERR(g, yk_detach(g, NULL), ST(YK_EINVAL), "yk_detach|NULL");
    GERR(g, yk_detach(g, g2x), ST(YK_EINVAL), "yk_detach|another graph");
    NULLS(yk_detach(NULL, w));

    NULLS(yk_value(NULL));
    SAFE(yk_node_dtype(NULL));
    EQ(yk_node_ndim(NULL), -1);
    EQ(yk_node_dim(NULL, 0), -1);
    EQ(yk_node_dim(w, 2), -1);
    EQ(yk_node_dim(w, -3), -1);
    EQ(yk_node_dim(w, INT32_MIN), -1);
    NULLS(yk_node_shape(NULL));
    EQ(yk_node_requires_grad(NULL), false);
    NULLS(yk_node_op_name(NULL));
    NULLS(yk_node_grad(NULL));
    NULLS(yk_node_grad(w)); /* no backward yet */

    EQ(yk_backward(NULL, loss), YK_EINVAL);
    ERR(yk_backward(g, NULL), ST(YK_EINVAL), "backward|loss");
    ERR(yk_backward(g, w), ST(YK_ESHAPE), "backward|[5, 3]");
    ERR(yk_backward(g, s0), ST(YK_EINVAL), "backward|const");
    ERR(yk_backward(g2, loss), ST(YK_EINVAL), "backward|another graph");
    EQ(yk_backward_seeded(NULL, 1, two, seeds), YK_EINVAL);
    ERR(yk_backward_seeded(g, 0, two, seeds), ST(YK_EINVAL), "backward|n = 0");
    ERR(yk_backward_seeded(g, -1, two, seeds), ST(YK_EINVAL), "backward|-1");
    ERR(yk_backward_seeded(g, 1, NULL, seeds), ST(YK_EINVAL), "backward");
    ERR(yk_backward_seeded(g, 1, two, NULL), ST(YK_EINVAL), "backward");
    ERR(yk_backward_seeded(g, 1, (yk_node *[]){NULL}, seeds), ST(YK_EINVAL),
        "backward|node 0");
    ERR(yk_backward_seeded(g, 1, two, (const yk_tensor *[]){NULL}),
        ST(YK_EINVAL), "backward|seed 0");
    ERR(yk_backward_seeded(g, 1, two, (const yk_tensor *[]){t32}),
        ST(YK_EDTYPE), "backward|seed 0|f32");
    ERR(yk_backward_seeded(g, 1, two, seeds), ST(YK_ESHAPE),
        "backward|seed 0|[2, 3]");
    ERR(yk_backward_seeded(g, 2, two, (const yk_tensor *[]){tw, t64}),
        ST(YK_EDTYPE) | ST(YK_ESHAPE), "backward|seed 1");
    /* a second backward on one graph */
    PROBE(yk_backward(g, loss) twice, {
        if (yk_backward(g, loss) != YK_OK)
            complain("first backward: %s", yk_last_error(ctx));
        check_message(yk_backward(g, loss), ST(YK_ESTATE), "backward|already");
    });
    expect_no_findings();
}

typedef yk_node *(*binary_op)(yk_graph *, yk_node *, yk_node *);

Test(sweep, ops)
{
    const binary_op bin[] = {yk_add, yk_sub, yk_mul, yk_div, yk_matmul};
    const char *bin_name[] = {"add", "sub", "mul", "div", "matmul"};
    for (int k = 0; k < 5; k++) {
        binary_op f = bin[k];
        const char *n = bin_name[k];
        NULLS(f(NULL, f64x, f64x));
        GERR(g, f(g, NULL, f64x), ST(YK_EINVAL), n);
        GERR(g, f(g, f64x, NULL), ST(YK_EINVAL), n);
        GERR(g, f(g, f64x, g2x), ST(YK_EINVAL), n);
        GERR(g, f(g, f64x, f32x), ST(YK_EDTYPE), n);
        GERR(g, f(g, ix, ix), ST(YK_EDTYPE), n);
        GERR(g, f(g, f64x, x), ST(YK_ESHAPE), n); /* [2,3] . [5,2] */
    }
    GERR(g, yk_matmul(g, s0, s0), ST(YK_ESHAPE) | ST(YK_EINVAL), "matmul");
    NULLS(yk_linear(NULL, f64x, w, NULL));
    GERR(g, yk_linear(g, NULL, w, NULL), ST(YK_EINVAL), "linear");
    GERR(g, yk_linear(g, f64x, NULL, NULL), ST(YK_EINVAL), "linear");
    GERR(g, yk_linear(g, f64x, x, NULL), ST(YK_ESHAPE), "linear");
    GERR(g, yk_linear(g, f64x, w, vn), ST(YK_ESHAPE), "linear|bias");
    GERR(g, yk_linear(g, f64x, w32, NULL), ST(YK_EDTYPE), "linear");

    /* reductions */
    NULLS(yk_sum(NULL, w, 0, NULL, false));
    GERR(g, yk_sum(g, NULL, 0, NULL, false), ST(YK_EINVAL), "sum");
    GERR(g, yk_sum(g, w, 1, (int[]){2}, false), ST(YK_EINVAL), "sum|2");
    GERR(g, yk_sum(g, w, 1, (int[]){-3}, false), ST(YK_EINVAL), "sum|-3");
    GERR(g, yk_sum(g, w, 1, (int[]){INT32_MIN}, false), ST(YK_EINVAL), "sum");
    GERR(g, yk_mean(g, w, 2, (int[]){1, -1}, false), ST(YK_EINVAL), "mean");
    GERR(g, yk_mean(g, w, 9, (int[]){0, 1, 0, 1, 0, 1, 0, 1, 0}, false),
         ST(YK_EINVAL), "mean");
    GERR(g, yk_sum(g, w, -1, (int[]){0}, false), ST(YK_EINVAL), "sum");
    GERR(g, yk_mean(g, ix, 0, NULL, false), ST(YK_EDTYPE), "mean|i64");
    GOK(yk_sum(g, s0, 0, NULL, false));
    GOK(yk_mean(g, empty, 1, (int[]){0}, true));

    /* shapes */
    NULLS(yk_reshape(NULL, w, 1, (int64_t[]){15}));
    GERR(g, yk_reshape(g, NULL, 1, (int64_t[]){15}), ST(YK_EINVAL), "reshape");
    GERR(g, yk_reshape(g, w, -1, (int64_t[]){15}),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "reshape|ndim");
    GERR(g, yk_reshape(g, w, 9, (int64_t[]){15, 1, 1, 1, 1, 1, 1, 1, 1}),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "reshape");
    GERR(g, yk_reshape(g, w, 2, NULL), ST(YK_EINVAL), "reshape|shape");
    GERR(g, yk_reshape(g, w, 2, (int64_t[]){-1, -1}),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "reshape|-1");
    GERR(g, yk_reshape(g, w, 2, (int64_t[]){-3, -5}),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "reshape|-");
    GERR(g, yk_reshape(g, w, 1, (int64_t[]){16}), ST(YK_ESHAPE), "reshape");
    GERR(g, yk_reshape(g, w, 2, (int64_t[]){INT64_MAX, INT64_MAX}),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "reshape");
    GERR(g, yk_reshape(g, empty, 2, (int64_t[]){0, -1}),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "reshape");
    NULLS(yk_narrow(NULL, w, 0, 0, 1));
    GERR(g, yk_narrow(g, NULL, 0, 0, 1), ST(YK_EINVAL), "narrow");
    GERR(g, yk_narrow(g, w, 2, 0, 1), ST(YK_EINVAL), "narrow|dim");
    GERR(g, yk_narrow(g, w, INT32_MIN, 0, 1), ST(YK_EINVAL), "narrow|dim");
    GERR(g, yk_narrow(g, w, 0, -6, 1), ST(YK_EINVAL), "narrow|start");
    GERR(g, yk_narrow(g, w, 0, 0, -1), ST(YK_EINVAL), "narrow|length");
    GERR(g, yk_narrow(g, w, 0, 4, 2), ST(YK_EINVAL), "narrow");
    GERR(g, yk_narrow(g, w, 0, INT64_MAX, INT64_MAX), ST(YK_EINVAL),
         "narrow");
    GERR(g, yk_narrow(g, w, 0, INT64_MIN, 1), ST(YK_EINVAL), "narrow");
    GERR(g, yk_narrow(g, w, 0, 1, INT64_MAX), ST(YK_EINVAL), "narrow");
    NULLS(yk_cat(NULL, 2, (yk_node *[]){w, w}, 0));
    GERR(g, yk_cat(g, 0, (yk_node *[]){w}, 0), ST(YK_EINVAL), "cat");
    GERR(g, yk_cat(g, -1, (yk_node *[]){w}, 0), ST(YK_EINVAL), "cat");
    GERR(g, yk_cat(g, 2, NULL, 0), ST(YK_EINVAL), "cat");
    GERR(g, yk_cat(g, 2, (yk_node *[]){w, NULL}, 0), ST(YK_EINVAL), "cat");
    GERR(g, yk_cat(g, 2, (yk_node *[]){w, x}, 0), ST(YK_ESHAPE), "cat");
    GERR(g, yk_cat(g, 2, (yk_node *[]){w, w32}, 0), ST(YK_EDTYPE), "cat");
    GERR(g, yk_cat(g, 2, (yk_node *[]){w, g2x}, 1), ST(YK_EINVAL), "cat");
    GERR(g, yk_cat(g, 2, (yk_node *[]){w, x}, 2), ST(YK_EINVAL), "cat|dim");
    GERR(g, yk_cat(g, 2, (yk_node *[]){w, x}, INT32_MIN), ST(YK_EINVAL),
         "cat|dim");
    GERR(g, yk_cat(g, 2, (yk_node *[]){s0, s0}, 0),
         ST(YK_EINVAL) | ST(YK_ESHAPE), "cat");

    /* elementwise, softmax, losses */
    yk_node *(*unary[])(yk_graph *, yk_node *) = {yk_relu, yk_tanh,
        yk_sigmoid, yk_exp, yk_log};
    for (int k = 0; k < 5; k++) {
        NULLS(unary[k](NULL, w));
        GERR(g, unary[k](g, NULL), ST(YK_EINVAL), "input");
        GERR(g, unary[k](g, ix), ST(YK_EDTYPE), "i64");
        GERR(g, unary[k](g, g2x), ST(YK_EINVAL), "another graph");
    }
    yk_node *(*sm[])(yk_graph *, yk_node *, int) = {yk_softmax,
                                                    yk_log_softmax};
    for (int k = 0; k < 2; k++) {
        NULLS(sm[k](NULL, w, 1));
        GERR(g, sm[k](g, NULL, 1), ST(YK_EINVAL), "softmax");
        GERR(g, sm[k](g, w, 2), ST(YK_EINVAL), "softmax|dim");
        GERR(g, sm[k](g, w, -3), ST(YK_EINVAL), "softmax|dim");
        GERR(g, sm[k](g, w, INT32_MIN), ST(YK_EINVAL), "softmax|dim");
        GERR(g, sm[k](g, ix, 1), ST(YK_EDTYPE), "softmax|i64");
    }
    yk_node *t2 = ci(g, SHAPE(2), IDX(0, 2));
    yk_node *edges[] = {ci(g, SHAPE(2), IDX(0, 3)),
                        ci(g, SHAPE(2), IDX(-1, 0)),
                        ci(g, SHAPE(2), IDX(0, INT64_MAX)),
                        ci(g, SHAPE(2), IDX(INT64_MIN, 0))};
    const char *edge_part[] = {"3", "-1", "9223372036854775807",
                               "-9223372036854775808"};
    NULLS(yk_cross_entropy(NULL, f64x, t2, YK_REDUCE_MEAN));
    GERR(g, yk_cross_entropy(g, NULL, t2, YK_REDUCE_MEAN), ST(YK_EINVAL),
         "cross_entropy");
    GERR(g, yk_cross_entropy(g, f64x, NULL, YK_REDUCE_MEAN), ST(YK_EINVAL),
         "cross_entropy");
    for (int k = 0; k < 4; k++)
        GERR(g, yk_cross_entropy(g, f64x, edges[k], YK_REDUCE_SUM),
             ST(YK_ERANGE), edge_part[k]);
    GOK(yk_cross_entropy(g, f64x, t2, YK_REDUCE_SUM)); /* 0 and C-1 */
    GERR(g, yk_cross_entropy(g, f64x, f64x, YK_REDUCE_MEAN), ST(YK_EDTYPE),
         "cross_entropy");
    GERR(g, yk_cross_entropy(g, f64x, ix, YK_REDUCE_MEAN), ST(YK_ESHAPE),
         "cross_entropy");
    GERR(g, yk_cross_entropy(g, vn, t2, YK_REDUCE_MEAN),
         ST(YK_ESHAPE) | ST(YK_EINVAL), "cross_entropy");
    GERR(g, yk_cross_entropy(g, f64x, t2, (yk_reduction)7), ST(YK_EINVAL),
         "cross_entropy|reduction");
    NULLS(yk_mse_loss(NULL, f64x, f64x, YK_REDUCE_MEAN));
    GERR(g, yk_mse_loss(g, f64x, NULL, YK_REDUCE_MEAN), ST(YK_EINVAL),
         "mse_loss");
    GERR(g, yk_mse_loss(g, f64x, w, YK_REDUCE_MEAN), ST(YK_ESHAPE),
         "mse_loss");
    GERR(g, yk_mse_loss(g, f64x, f32x, YK_REDUCE_MEAN), ST(YK_EDTYPE),
         "mse_loss");
    GERR(g, yk_mse_loss(g, f64x, f64x, (yk_reduction)-1), ST(YK_EINVAL),
         "mse_loss|reduction");
    expect_no_findings();
}

/* Index values at the edges of a table of V = 5 rows: the valid ones and
 * the invalid ones with the text their message must show. */
static const int64_t good_idx[] = {0, 4};
static const int64_t bad_idx[] = {5, -1, INT64_MAX, INT64_MIN};
static const char *const bad_idx_text[] = {"= 5", "= -1",
                                           "= 9223372036854775807",
                                           "= -9223372036854775808"};

Test(sweep, embedding_ops_at_the_edges)
{
    /* weights: W [5, 3], and the lazy column concatenation [W | X] */
    yk_node *wide = yk_cat(g, 2, (yk_node *[]){w, x}, 1);
    yk_node *weights[] = {w, wide};
    yk_bag_opts sum = yk_bag_defaults();
    sum.mode = YK_BAG_SUM;
    yk_node *off0 = ci(g, SHAPE(1), IDX(0));
    for (int k = 0; k < 2; k++) {
        yk_node *wt = weights[k];
        for (int i = 0; i < 2; i++) {
            yk_node *in = ci(g, SHAPE(1), &good_idx[i]);
            GOK(yk_embedding(g, in, wt, YK_NO_PADDING, false, false));
            GOK(yk_embedding_bag(g, in, wt, off0, NULL, NULL));
            GOK(yk_embedding_bag(g, in, wt, off0, NULL, &sum));
        }
        for (int i = 0; i < 4; i++) {
            yk_node *in = ci(g, SHAPE(2), ((int64_t[]){1, bad_idx[i]}));
            yk_node *in2 = ci(g, SHAPE(1, 2), ((int64_t[]){1, bad_idx[i]}));
            GERR(g, yk_embedding(g, in, wt, YK_NO_PADDING, false, true),
                 ST(YK_ERANGE), "embedding|input[1]");
            GERR(g, yk_embedding(g, in, wt, YK_NO_PADDING, false, true),
                 ST(YK_ERANGE), bad_idx_text[i]);
            GERR(g, yk_embedding_bag(g, in, wt, off0, NULL, NULL),
                 ST(YK_ERANGE), "embedding_bag|input[1]");
            GERR(g, yk_embedding_bag(g, in2, wt, NULL, NULL, &sum),
                 ST(YK_ERANGE), bad_idx_text[i]);
        }
    }
    /* padding_idx at the edges: [-V, V) or YK_NO_PADDING */
    const int64_t good_pad[] = {0, 4, -1, -5, YK_NO_PADDING};
    const int64_t bad_pad[] = {5, -6, INT64_MAX, INT64_MIN + 1};
    for (int i = 0; i < 5; i++) {
        yk_bag_opts po = yk_bag_defaults();
        po.padding_idx = good_pad[i];
        GOK(yk_embedding(g, ix, w, good_pad[i], true, false));
        GOK(yk_embedding_bag(g, ix, wide, NULL, NULL, &po));
    }
    for (int i = 0; i < 4; i++) {
        yk_bag_opts po = yk_bag_defaults();
        po.padding_idx = bad_pad[i];
        GERR(g, yk_embedding(g, ix, w, bad_pad[i], false, false),
             ST(YK_EINVAL), "embedding|padding_idx");
        GERR(g, yk_embedding_bag(g, ix, wide, NULL, NULL, &po),
             ST(YK_EINVAL), "embedding_bag|padding_idx");
    }
    /* offsets at the edges (input of 2 entries) */
    yk_node *in2 = ci(g, SHAPE(2), IDX(1, 2));
    const int64_t bad_off[][3] = {{1, 0, 0}, {0, -1, 0}, {0, 3, 0},
                                  {0, INT64_MAX, 0}, {INT64_MIN, 0, 0},
                                  {0, 2, 1}};
    const int n_off[] = {1, 2, 2, 2, 1, 3};
    for (int i = 0; i < 6; i++) {
        yk_node *off = ci(g, 1, (int64_t[]){n_off[i]}, bad_off[i]);
        GERR(g, yk_embedding_bag(g, in2, w, off, NULL, NULL),
             ST(YK_EOFFSETS), "embedding_bag|offsets");
    }
    yk_bag_opts last = yk_bag_defaults();
    last.include_last_offset = true;
    GERR(g, yk_embedding_bag(g, in2, w, off0, NULL, &last), ST(YK_EOFFSETS),
         "embedding_bag|include_last_offset");
    GERR(g, yk_embedding_bag(g, in2, w, NULL, NULL, NULL), ST(YK_EOFFSETS),
         "embedding_bag|offsets");
    GERR(g, yk_embedding_bag(g, ix, w, off0, NULL, NULL), ST(YK_EOFFSETS),
         "embedding_bag|offsets");
    GERR(g, yk_embedding_bag(g, in2, w, ci(g, SHAPE(1, 1), IDX(0)), NULL,
                             NULL), ST(YK_EOFFSETS), "embedding_bag|offsets");
    GERR(g, yk_embedding_bag(g, in2, w, f64x, NULL, NULL), ST(YK_EDTYPE),
         "embedding_bag|offsets");
    /* options and per_sample_weights */
    yk_bag_opts bad = yk_bag_defaults();
    bad.mode = (yk_bag_mode)7;
    GERR(g, yk_embedding_bag(g, ix, w, NULL, NULL, &bad), ST(YK_EINVAL),
         "embedding_bag|mode");
    bad = yk_bag_defaults();
    bad.mode = YK_BAG_MAX;
    bad.sparse = true;
    GERR(g, yk_embedding_bag(g, ix, w, NULL, NULL, &bad), ST(YK_EINVAL),
         "embedding_bag|sparse");
    GERR(g, yk_embedding_bag(g, ix, w, NULL, f64x, NULL), ST(YK_EINVAL),
         "embedding_bag|per_sample_weights");
    GERR(g, yk_embedding_bag(g, ix, w, NULL, f32x, &sum), ST(YK_EDTYPE),
         "embedding_bag|per_sample_weights");
    GERR(g, yk_embedding_bag(g, ix, w, NULL, vn, &sum), ST(YK_ESHAPE),
         "embedding_bag|per_sample_weights");
    /* weights and inputs of the wrong kind; NULLs */
    NULLS(yk_embedding(NULL, ix, w, YK_NO_PADDING, false, false));
    NULLS(yk_embedding_bag(NULL, ix, w, NULL, NULL, NULL));
    GERR(g, yk_embedding(g, NULL, w, YK_NO_PADDING, false, false),
         ST(YK_EINVAL), "embedding|input 0");
    GERR(g, yk_embedding(g, ix, NULL, YK_NO_PADDING, false, false),
         ST(YK_EINVAL), "embedding|input 1");
    GERR(g, yk_embedding_bag(g, NULL, w, NULL, NULL, NULL), ST(YK_EINVAL),
         "embedding_bag");
    GERR(g, yk_embedding_bag(g, ix, NULL, NULL, NULL, NULL), ST(YK_EINVAL),
         "embedding_bag");
    GERR(g, yk_embedding(g, f64x, w, YK_NO_PADDING, false, false),
         ST(YK_EDTYPE), "embedding|input|f64");
    GERR(g, yk_embedding(g, ix, vn, YK_NO_PADDING, false, false),
         ST(YK_ESHAPE), "embedding|weight");
    GERR(g, yk_embedding(g, ix, ix, YK_NO_PADDING, false, false),
         ST(YK_EDTYPE), "embedding|weight|i64");
    GERR(g, yk_embedding_bag(g, ix, g2x, NULL, NULL, NULL), ST(YK_EINVAL),
         "embedding_bag|another graph");
    yk_node *eight = ci(g, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1},
                        IDX(0));
    GERR(g, yk_embedding(g, eight, w, YK_NO_PADDING, false, false),
         ST(YK_ESHAPE), "embedding|8");

    /* renorm: out of place of any graph */
    yk_tensor *in = keep(TI(ctx, SHAPE(2), IDX(0, 4)));
    OK(yk_embedding_renorm(tw, in, 1, 2));
    FAILS(yk_embedding_renorm(NULL, in, 1, 2));
    ERR(yk_embedding_renorm(tw, NULL, 1, 2), ST(YK_EINVAL),
        "embedding_renorm|input");
    for (int i = 0; i < 4; i++)
        ERR(yk_embedding_renorm(tw, keep(TI(ctx, SHAPE(1), &bad_idx[i])), 1,
                                2), ST(YK_ERANGE), bad_idx_text[i]);
    ERR(yk_embedding_renorm(ti, in, 1, 2), ST(YK_EDTYPE),
        "embedding_renorm|weight");
    ERR(yk_embedding_renorm(t64, t64, 1, 2), ST(YK_EDTYPE),
        "embedding_renorm|input");
    ERR(yk_embedding_renorm(t0, in, 1, 2), ST(YK_ESHAPE),
        "embedding_renorm|weight");
    SAFE(yk_embedding_renorm(tw, in, -1, 2));
    SAFE(yk_embedding_renorm(tw, in, NAN, NAN));
    SAFE(yk_embedding_renorm(tw, in, 1, 0));
    SAFE(yk_embedding_renorm(tw, in, 1, -INFINITY));
    expect_no_findings();
}

Test(sweep, layers)
{
    yk_embedding_layer el, zero_el;
    yk_bag_layer bl, zero_bl;
    memset(&zero_el, 0, sizeof zero_el);
    memset(&zero_bl, 0, sizeof zero_bl);
    cr_assert_eq(yk_embedding_layer_tied(&el, W), YK_OK);
    cr_assert_eq(yk_bag_layer_tied(&bl, W, X, YK_BAG_SUM), YK_OK);
    yk_param *X4 = yk_model_add(m, "X4", YK_F64, 2, (int64_t[]){4, 2});
    cr_assert(X4);

    ERR(yk_embedding_layer_init(NULL, m, "E", YK_F32, 5, 3, 1), ST(YK_EINVAL),
        "yk_embedding_layer_init|layer");
    FAILS(yk_embedding_layer_init(&el, NULL, "E", YK_F32, 5, 3, 1));
    ERR(yk_embedding_layer_init(&el, m, NULL, YK_F32, 5, 3, 1), ST(YK_EINVAL),
        "name");
    ERR(yk_embedding_layer_init(&el, m, "E", YK_I64, 5, 3, 1),
        ST(YK_EDTYPE), "i64");
    ERR(yk_embedding_layer_init(&el, m, "E", YK_F32, -1, 3, 1),
        ST(YK_EINVAL) | ST(YK_ESHAPE), "-1");
    ERR(yk_embedding_layer_init(&el, m, "E", YK_F32, 5, -3, 1),
        ST(YK_EINVAL) | ST(YK_ESHAPE), "-3");
    ERR(yk_embedding_layer_init(&el, m, "E", YK_F32, INT64_MAX, INT64_MAX, 1),
        ST(YK_EINVAL) | ST(YK_ESHAPE) | ST(YK_ENOMEM), "9223372036854775807");
    ERR(yk_embedding_layer_tied(NULL, W), ST(YK_EINVAL),
        "yk_embedding_layer_tied|layer");
    FAILS(yk_embedding_layer_tied(&el, NULL));
    ERR(yk_embedding_layer_tied(&el, v), ST(YK_ESHAPE), "\"v\"");
    ERR(yk_embedding_layer_pretrained(&el, m, "E", NULL, false),
        ST(YK_EINVAL), "yk_embedding_layer_pretrained|values");
    ERR(yk_embedding_layer_pretrained(&el, m, "E", ti, false),
        ST(YK_EDTYPE) | ST(YK_EINVAL), "\"E\"|i64");
    ERR(yk_embedding_layer_pretrained(&el, m, "E", t0, false), ST(YK_ESHAPE),
        "yk_embedding_layer_pretrained");
    ERR(yk_embedding_layer_pretrained(NULL, m, "E", tw, false),
        ST(YK_EINVAL), "yk_embedding_layer_pretrained|layer");
    FAILS(yk_embedding_layer_pretrained(&el, NULL, "E", tw, false));
    FAILS(yk_embedding_layer_set_padding(NULL, 0));
    FAILS(yk_embedding_layer_set_padding(&zero_el, 0));
    OK(yk_embedding_layer_set_padding(&el, -5));
    OK(yk_embedding_layer_set_padding(&el, YK_NO_PADDING));
    ERR(yk_embedding_layer_set_padding(&el, 5), ST(YK_EINVAL),
        "padding_idx|5");
    ERR(yk_embedding_layer_set_padding(&el, -6), ST(YK_EINVAL),
        "padding_idx|-6");
    ERR(yk_embedding_layer_set_padding(&el, INT64_MAX), ST(YK_EINVAL),
        "padding_idx");
    NULLS(yk_embedding_layer_forward(NULL, &el, ix));
    GERR(g, yk_embedding_layer_forward(g, NULL, ix), ST(YK_EINVAL),
         "yk_embedding_layer_forward|layer");
    GERR(g, yk_embedding_layer_forward(g, &zero_el, ix), ST(YK_EINVAL),
         "yk_embedding_layer_forward");
    GERR(g, yk_embedding_layer_forward(g, &el, NULL), ST(YK_EINVAL),
         "embedding");
    el.padding_idx = 99; /* set behind the setter's back */
    GERR(g, yk_embedding_layer_forward(g, &el, ix), ST(YK_EINVAL),
         "padding_idx");

    ERR(yk_bag_layer_init(NULL, m, "B", YK_F32, 5, 3, YK_BAG_SUM, 1),
        ST(YK_EINVAL), "yk_bag_layer_init|layer");
    FAILS(yk_bag_layer_init(&bl, NULL, "B", YK_F32, 5, 3, YK_BAG_SUM, 1));
    ERR(yk_bag_layer_init(&bl, m, "B", YK_F32, 5, 3,
                                      (yk_bag_mode)9, 1), ST(YK_EINVAL),
                    "mode");
    ERR(yk_bag_layer_init(&bl, m, NULL, YK_F32, 5, 3, YK_BAG_SUM, 1),
        ST(YK_EINVAL), "name");
    ERR(yk_bag_layer_tied(NULL, W, NULL, YK_BAG_SUM), ST(YK_EINVAL),
        "yk_bag_layer_tied|layer");
    FAILS(yk_bag_layer_tied(&bl, NULL, X, YK_BAG_SUM));
    ERR(yk_bag_layer_tied(&bl, W, W32, YK_BAG_SUM), ST(YK_EDTYPE),
        "yk_bag_layer_tied|\"W32\"");
    ERR(yk_bag_layer_tied(&bl, W, X4, YK_BAG_SUM), ST(YK_ESHAPE),
        "yk_bag_layer_tied|\"X4\"");
    ERR(yk_bag_layer_tied(&bl, W, v, YK_BAG_SUM), ST(YK_ESHAPE),
        "yk_bag_layer_tied|\"v\"");
    ERR(yk_bag_layer_tied(&bl, W, X, (yk_bag_mode)-1),
                    ST(YK_EINVAL), "yk_bag_layer_tied|mode");
    ERR(yk_bag_layer_pretrained(&bl, m, "B", NULL, false, YK_BAG_SUM),
        ST(YK_EINVAL), "yk_bag_layer_pretrained|values");
    SAFE(yk_bag_layer_dim(NULL));
    EQ(yk_bag_layer_dim(&bl), 5);
    NULLS(yk_bag_layer_forward(NULL, &bl, ix, NULL, NULL));
    GERR(g, yk_bag_layer_forward(g, NULL, ix, NULL, NULL), ST(YK_EINVAL),
         "yk_bag_layer_forward|layer");
    GERR(g, yk_bag_layer_forward(g, &zero_bl, ix, NULL, NULL), ST(YK_EINVAL),
         "yk_bag_layer_forward");
    GERR(g, yk_bag_layer_forward(g, &bl, NULL, NULL, NULL), ST(YK_EINVAL),
         "yk_bag_layer_forward|input");
    GOK(yk_bag_layer_forward(g, &bl, ix, NULL, f64x));
    bl.opts.mode = YK_BAG_MEAN;
    GERR(g, yk_bag_layer_forward(g, &bl, ix, NULL, f64x), ST(YK_EINVAL),
         "per_sample_weights");
    expect_no_findings();
}

Test(sweep, optimizers)
{
    yk_optim_kind k;
    yk_optim_opts oo = yk_optim_defaults(YK_OPTIM_ADAM);
    yk_tensor *st = NULL;
    yk_param *none[1] = {NULL};
    yk_param *wp[1] = {W};

    SAFE(yk_optim_kind_name((yk_optim_kind)99));
    SAFE(yk_optim_kind_name((yk_optim_kind)-1));
    EQ(yk_optim_kind_from_name(NULL, &k), false);
    SAFE(yk_optim_kind_from_name("adam", NULL));
    EQ(yk_optim_kind_from_name("nope", &k), false);
    SAFE(yk_optim_defaults((yk_optim_kind)99));
    ERR(yk_optim_opts_set(ctx, YK_OPTIM_ADAM, NULL, "lr", 1), ST(YK_EINVAL),
        "yk_optim_opts_set|opts");
    ERR(yk_optim_opts_set(ctx, YK_OPTIM_ADAM, &oo, NULL, 1), ST(YK_EINVAL),
        "yk_optim_opts_set|name");
    ERR(yk_optim_opts_set(ctx, YK_OPTIM_ADAM, &oo, "momentum", 1),
        ST(YK_EINVAL), "adam|\"momentum\"");
    ERR(yk_optim_opts_set(ctx, (yk_optim_kind)99, &oo, "lr", 1),
        ST(YK_EINVAL), "99");
    FAILS(yk_optim_opts_set(NULL, YK_OPTIM_ADAM, &oo, "lr", 1));

    NULLS(yk_optim_new(NULL, YK_OPTIM_ADAM, NULL));
    ERRN(yk_optim_new(ctx, (yk_optim_kind)99, NULL), ST(YK_EINVAL), "99");
    ERRN(yk_optim_new(ctx, (yk_optim_kind)-1, NULL), ST(YK_EINVAL), "-1");
    const char *bad_name[] = {"lr", "lr", "beta1", "beta2", "eps",
                              "weight_decay"};
    for (int i = 0; i < 6; i++) {
        yk_optim_opts b = yk_optim_defaults(YK_OPTIM_ADAM);
        double *field[] = {&b.lr, &b.lr, &b.beta1, &b.beta2, &b.eps,
                           &b.weight_decay};
        *field[i] = i == 1 ? NAN : i == 2 || i == 3 ? 1.0 : -1.0;
        ERRN(yk_optim_new(ctx, YK_OPTIM_ADAM, &b), ST(YK_EINVAL),
             bad_name[i]);
    }
    ERRN(yk_optim_new(ctx, YK_OPTIM_SGD, NULL), ST(YK_EINVAL), "lr");
    SAFE(yk_optim_free(NULL));
    SAFE(yk_optim_kind_of(NULL));
    SAFE(yk_optim_options(NULL));
    FAILS(yk_optim_add(NULL, W));
    ERR(yk_optim_add(o, NULL), ST(YK_EINVAL), "yk_optim_add");
    ERR(yk_optim_add(o, W), ST(YK_EINVAL), "yk_optim_add|\"W\"");
    ERR(yk_optim_add(o, P2), ST(YK_EINVAL), "yk_optim_add|\"P\"");
    FAILS(yk_optim_add_model(NULL, m));
    ERR(yk_optim_add_model(o, NULL), ST(YK_EINVAL), "yk_optim_add_model");
    ERR(yk_optim_add_model(o, m2), ST(YK_EINVAL), "yk_optim_add_model");
    EQ(yk_optim_count(NULL), 0);
    NULLS(yk_optim_param_at(NULL, 0));
    NULLS(yk_optim_param_at(o, -1));
    NULLS(yk_optim_param_at(o, 4));
    NULLS(yk_optim_param_at(o, INT32_MIN));
    EQ(yk_optim_has(NULL, W), false);
    EQ(yk_optim_has(o, NULL), false);
    EQ(yk_optim_has(o, P2), false);
    FAILS(yk_optim_step(NULL));
    SAFE(yk_optim_lr(NULL));
    FAILS(yk_optim_set_lr(NULL, 1));
    ERR(yk_optim_set_lr(o, -1), ST(YK_EINVAL), "lr|-1");
    ERR(yk_optim_set_lr(o, NAN), ST(YK_EINVAL), "lr");

    FAILS(yk_optim_freeze_rows(NULL, W, 1, (int64_t[]){0}));
    ERR(yk_optim_freeze_rows(o, NULL, 1, (int64_t[]){0}), ST(YK_EINVAL),
        "yk_optim_freeze_rows");
    ERR(yk_optim_freeze_rows(o, P2, 1, (int64_t[]){0}), ST(YK_EINVAL),
        "yk_optim_freeze_rows|\"P\"");
    ERR(yk_optim_freeze_rows(o, W, -1, (int64_t[]){0}),
        ST(YK_EINVAL) | ST(YK_ERANGE), "yk_optim_freeze_rows|-1");
    ERR(yk_optim_freeze_rows(o, W, 2, NULL), ST(YK_EINVAL),
        "yk_optim_freeze_rows|rows");
    OK(yk_optim_freeze_rows(o, W, 0, NULL));
    for (int i = 0; i < 4; i++)
        ERR(yk_optim_freeze_rows(o, W, 2, ((int64_t[]){4, bad_idx[i]})),
            ST(YK_ERANGE), bad_idx_text[i] + 2);
    OK(yk_optim_freeze_rows(o, W, 2, (int64_t[]){0, 4}));
    ERR(yk_optim_freeze_row_range(o, W, -1, 2), ST(YK_ERANGE),
        "yk_optim_freeze_row_range");
    ERR(yk_optim_freeze_row_range(o, W, 3, 2), ST(YK_ERANGE),
        "yk_optim_freeze_row_range");
    ERR(yk_optim_freeze_row_range(o, W, 0, 6), ST(YK_ERANGE),
        "yk_optim_freeze_row_range");
    ERR(yk_optim_freeze_row_range(o, W, INT64_MIN, INT64_MAX), ST(YK_ERANGE),
        "yk_optim_freeze_row_range");
    OK(yk_optim_freeze_row_range(o, W, 5, 5));
    FAILS(yk_optim_unfreeze_rows(NULL, W));
    ERR(yk_optim_unfreeze_rows(o, NULL), ST(YK_EINVAL),
        "yk_optim_unfreeze_rows");
    EQ(yk_optim_row_frozen(NULL, W, 0), false);
    EQ(yk_optim_row_frozen(o, NULL, 0), false);
    EQ(yk_optim_row_frozen(o, W, -1), false);
    EQ(yk_optim_row_frozen(o, W, INT64_MAX), false);
    EQ(yk_optim_row_frozen(o, W, INT64_MIN), false);

    EQ(yk_optim_state_count(NULL), 0);
    NULLS(yk_optim_state_name(NULL, 0));
    NULLS(yk_optim_state_name(o, -1));
    NULLS(yk_optim_state_name(o, 2));
    EQ(yk_optim_step_count(NULL, W), -1);
    EQ(yk_optim_step_count(o, NULL), -1);
    EQ(yk_optim_step_count(o, P2), -1);
    FAILS(yk_optim_set_step_count(NULL, W, 1));
    ERR(yk_optim_set_step_count(o, W, -1), ST(YK_EINVAL),
        "yk_optim_set_step_count|-1");
    ERR(yk_optim_set_step_count(o, NULL, 1), ST(YK_EINVAL),
        "yk_optim_set_step_count");
    FAILS(yk_optim_state(NULL, W, "exp_avg", &st));
    ERR(yk_optim_state(o, NULL, "exp_avg", &st), ST(YK_EINVAL),
        "yk_optim_state");
    ERR(yk_optim_state(o, W, NULL, &st), ST(YK_EINVAL), "yk_optim_state");
    ERR(yk_optim_state(o, W, "sum", &st), ST(YK_EINVAL),
        "yk_optim_state|\"sum\"");
    ERR(yk_optim_state(o, W, "exp_avg", NULL), ST(YK_EINVAL),
                    "yk_optim_state");
    ERR(yk_optim_set_state(o, W, "exp_avg", NULL), ST(YK_EINVAL),
        "yk_optim_set_state");
    ERR(yk_optim_set_state(o, W, "exp_avg", t64), ST(YK_ESHAPE),
        "yk_optim_set_state|exp_avg");
    ERR(yk_optim_set_state(o, W32, "exp_avg", tw), ST(YK_EDTYPE),
        "yk_optim_set_state|exp_avg");
    ERR(yk_optim_set_state(o, W, "bogus", tw), ST(YK_EINVAL),
        "yk_optim_set_state|\"bogus\"");
    FAILS(yk_optim_set_state(NULL, W, "exp_avg", tw));

    /* clipping: NULL parameters, bad norms */
    FAILS(yk_clip_grad_norm(1, none, 1, 2, NULL));
    FAILS(yk_clip_grad_norm(1, NULL, 1, 2, NULL));
    FAILS(yk_clip_grad_norm(-1, wp, 1, 2, NULL));
    ERR(yk_clip_grad_norm(1, wp, -1, 2, NULL), ST(YK_EINVAL), "max_norm");
    ERR(yk_clip_grad_norm(1, wp, NAN, 2, NULL), ST(YK_EINVAL), "max_norm");
    ERR(yk_clip_grad_norm(1, wp, 1, 0, NULL), ST(YK_EINVAL), "norm_type");
    ERR(yk_clip_grad_norm(1, wp, 1, NAN, NULL), ST(YK_EINVAL), "norm_type");
    OK(yk_clip_grad_norm(0, NULL, 1, 2, NULL));
    FAILS(yk_optim_clip_grad_norm(NULL, 1, 2, NULL));
    ERR(yk_optim_clip_grad_norm(o, 1, -INFINITY, NULL), ST(YK_EINVAL),
        "norm_type");
    FAILS(yk_clip_grad_value(1, none, 1));
    FAILS(yk_clip_grad_value(1, NULL, 1));
    FAILS(yk_clip_grad_value(-1, wp, 1));
    ERR(yk_clip_grad_value(1, wp, -1), ST(YK_EINVAL), "clip_value");
    ERR(yk_clip_grad_value(1, wp, NAN), ST(YK_EINVAL), "clip_value");

    /* schedules at extreme steps: finite, no overflow (UBSan watches) */
    EQ(isfinite(yk_lr_step(0.1, INT64_MAX, 1, 0.5)), 1);
    EQ(yk_lr_step(0.1, INT64_MIN, INT64_MIN, 0.5), 0.1);
    EQ(isfinite(yk_lr_cosine(0.1, INT64_MAX, INT64_MAX, 0)), 1);
    EQ(yk_lr_cosine(0.1, INT64_MIN, INT64_MIN, 0), 0.1);
    EQ(yk_lr_warmup(0.1, INT64_MAX, INT64_MAX, 0), 0.1);
    EQ(yk_lr_warmup(0.1, INT64_MIN, INT64_MAX, 0), 0);
    EQ(yk_lr_warmup(0.1, 5, INT64_MIN, 0), 0.1);
    expect_no_findings();
}

static yk_node *build_nothing(yk_graph *gr, void *ud)
{
    (void)gr;
    (void)ud;
    return NULL;
}

static yk_node *build_sum_w(yk_graph *gr, void *ud)
{
    return yk_sum(gr, yk_param_node(gr, ud), 0, NULL, false);
}

Test(sweep, io_inspection_and_gradcheck)
{
    const char *ck = path_in(tmp_dir, "ck");
    const char *const words[] = {"the", "cat"};
    const char *const null_word[] = {"the", NULL};
    const char *const twice[] = {"the", "the"};
    yk_named_tensor extra[] = {{"e", t64}};
    yk_io no_write = *yk_io_posix();
    no_write.write = NULL;

    FAILS(yk_model_save(NULL, path_in(tmp_dir, "s"), NULL));
    ERR(yk_model_save(m, NULL, NULL), ST(YK_EINVAL), "yk_model_save|path");
    ERR(yk_model_save(m, path_in(tmp_dir, "s"), &(yk_save_opts){.n_extra = 1}),
        ST(YK_EINVAL), "yk_model_save|extra");
    ERR(yk_model_save(m, path_in(tmp_dir, "s"), &(yk_save_opts){.n_extra = -1,
                                                      .extra = extra}),
        ST(YK_EINVAL), "yk_model_save|n_extra");
    ERR(yk_model_save(m, path_in(tmp_dir, "s"), &(yk_save_opts){.io = &no_write}),
        ST(YK_EINVAL), "yk_model_save|io");
    ERR(yk_model_save(m, "/nonexistent-dir/x", NULL), ST(YK_EIO),
        "/nonexistent-dir/x");
    FAILS(yk_model_load(NULL, ck, NULL, NULL));
    ERR(yk_model_load(m, NULL, NULL, NULL), ST(YK_EINVAL),
        "yk_model_load|path");
    ERR(yk_model_load(m, ck, &(yk_load_opts){.n_extra = 1}, NULL),
        ST(YK_EINVAL), "yk_model_load|extra");
    ERR(yk_model_load(m, ck, &(yk_load_opts){.n_extra = -1}, NULL),
        ST(YK_EINVAL), "yk_model_load|n_extra");
    ERR(yk_model_load(m, "/nonexistent", NULL, NULL), ST(YK_EIO),
        "/nonexistent");
    ERR(yk_model_load(m, "/tmp", NULL, NULL), ST(YK_EIO), "/tmp");
    SAFE(yk_load_info_clear(NULL));
    FAILS(yk_checkpoint_save(NULL, o, path_in(tmp_dir, "s"), NULL));
    ERR(yk_checkpoint_save(m, o, NULL, NULL), ST(YK_EINVAL),
        "yk_checkpoint_save|path");
    FAILS(yk_checkpoint_load(NULL, o, ck, NULL, NULL));
    ERR(yk_checkpoint_load(m, o, NULL, NULL, NULL), ST(YK_EINVAL),
        "yk_checkpoint_load|path");

    yk_safetensors *f = yk_safetensors_open(ctx, ck);
    cr_assert(f, "%s", yk_last_error(ctx));
    NULLS(yk_safetensors_open(NULL, ck));
    ERRN(yk_safetensors_open(ctx, NULL), ST(YK_EINVAL),
         "yk_safetensors_open|path");
    ERRN(yk_safetensors_open(ctx, "/nonexistent"), ST(YK_EIO),
         "yk_safetensors_open|/nonexistent");
    ERRN(yk_safetensors_open(ctx, "/tmp"), ST(YK_EIO),
         "yk_safetensors_open|/tmp");
    ERRN(yk_safetensors_open(ctx, "/dev/null"), ST(YK_EIO) | ST(YK_EFORMAT),
         "yk_safetensors_open|/dev/null");
    SAFE(yk_safetensors_close(NULL));
    EQ(yk_safetensors_count(NULL), 0);
    EQ(yk_safetensors_find(NULL, "W"), -1);
    EQ(yk_safetensors_find(f, NULL), -1);
    NULLS(yk_safetensors_name(NULL, 0));
    NULLS(yk_safetensors_name(f, -1));
    NULLS(yk_safetensors_name(f, INT32_MAX));
    NULLS(yk_safetensors_dtype(NULL, 0));
    NULLS(yk_safetensors_dtype(f, INT32_MIN));
    EQ(yk_safetensors_ndim(NULL, 0), -1);
    EQ(yk_safetensors_ndim(f, -1), -1);
    NULLS(yk_safetensors_shape(NULL, 0));
    NULLS(yk_safetensors_shape(f, 99));
    NULLS(yk_safetensors_metadata(NULL, "step"));
    NULLS(yk_safetensors_metadata(f, NULL));
    FAILS(yk_safetensors_read(NULL, "W", tw));
    ERR(yk_safetensors_read(f, NULL, tw), ST(YK_EINVAL),
        "yk_safetensors_read|name");
    ERR(yk_safetensors_read(f, "W", NULL), ST(YK_EINVAL),
        "yk_safetensors_read|dst");
    ERR(yk_safetensors_read(f, "absent", tw), ST(YK_EINVAL),
        "yk_safetensors_read|\"absent\"");
    ERR(yk_safetensors_read(f, "W", t64), ST(YK_ESHAPE),
        "yk_safetensors_read|\"W\"");
    ERR(yk_safetensors_read(f, "W32", tw), ST(YK_EDTYPE),
        "yk_safetensors_read|\"W32\"");
    NULLS(yk_safetensors_get(NULL, "W"));
    ERRN(yk_safetensors_get(f, NULL), ST(YK_EINVAL), "yk_safetensors_get");
    ERRN(yk_safetensors_get(f, "absent"), ST(YK_EINVAL),
         "yk_safetensors_get|\"absent\"");

    const char *vec = "tests/data/tiny.vec";
    NULLS(yk_vec_load(NULL, vec, YK_F32, 2, words, NULL, NULL));
    ERRN(yk_vec_load(ctx, NULL, YK_F32, 2, words, NULL, NULL), ST(YK_EINVAL),
         "yk_vec_load|path");
    ERRN(yk_vec_load(ctx, vec, YK_F32, -1, words, NULL, NULL), ST(YK_EINVAL),
         "yk_vec_load|n_words");
    ERRN(yk_vec_load(ctx, vec, YK_F32, 2, NULL, NULL, NULL), ST(YK_EINVAL),
         "yk_vec_load|words");
    ERRN(yk_vec_load(ctx, vec, YK_F32, 2, null_word, NULL, NULL),
         ST(YK_EINVAL), "yk_vec_load|words[1]");
    ERRN(yk_vec_load(ctx, vec, YK_F32, 2, twice, NULL, NULL), ST(YK_EINVAL),
         "yk_vec_load|\"the\"");
    ERRN(yk_vec_load(ctx, vec, YK_I64, 2, words, NULL, NULL), ST(YK_EDTYPE),
         "yk_vec_load|i64");
    ERRN(yk_vec_load(ctx, vec, YK_F32, 2, words,
                     &(yk_vec_opts){.std = -1}, NULL), ST(YK_EINVAL),
         "yk_vec_load|std");
    ERRN(yk_vec_load(ctx, "/nonexistent", YK_F32, 2, words, NULL, NULL),
         ST(YK_EIO), "yk_vec_load|/nonexistent");
    FAILS(yk_param_load_vec(NULL, vec, words, NULL, NULL));
    ERR(yk_param_load_vec(W, NULL, words, NULL, NULL), ST(YK_EINVAL),
        "path");
    ERR(yk_param_load_vec(W, vec, NULL, NULL, NULL), ST(YK_EINVAL), "words");
    ERR(yk_param_load_vec(v, vec, words, NULL, NULL), ST(YK_ESHAPE), "\"v\"");
    FAILS(yk_param_load_safetensors(NULL, ck, "W", false));
    ERR(yk_param_load_safetensors(W, NULL, "W", false), ST(YK_EINVAL),
        "path");
    ERR(yk_param_load_safetensors(W, ck, NULL, false), ST(YK_EINVAL),
        "name");

    /* inspection */
    yk_node *y = yk_add(g, w, w);
    yk_tie_use use;
    char buf[16];
    EQ(yk_graph_node_count(NULL), 0);
    NULLS(yk_graph_node_at(NULL, 0));
    NULLS(yk_graph_node_at(g, -1));
    NULLS(yk_graph_node_at(g, INT64_MAX));
    NULLS(yk_graph_node_at(g, INT64_MIN));
    EQ(yk_node_id(NULL), -1);
    EQ(yk_node_n_inputs(NULL), 0);
    NULLS(yk_node_input(NULL, 0));
    NULLS(yk_node_input(y, -1));
    NULLS(yk_node_input(y, 2));
    NULLS(yk_node_input(y, INT32_MIN));
    SAFE(yk_node_input_name(NULL, 0, buf, sizeof buf));
    SAFE(yk_node_input_name(y, 0, NULL, 0));
    SAFE(yk_node_input_name(y, 0, buf, 0));
    SAFE(yk_node_input_name(y, 0, buf, 1));
    SAFE(yk_node_input_name(y, 99, buf, sizeof buf));
    NULLS(yk_node_param(NULL));
    EQ(yk_node_consumers(NULL, 0, NULL), -1);
    EQ(yk_node_consumers(w, 0, NULL), yk_node_consumers(w, 0, NULL));
    SAFE(yk_node_consumers(w, -1, NULL));
    FAILS(yk_graph_dump_dot(NULL, devnull));
    ERR(yk_graph_dump_dot(g, NULL), ST(YK_EINVAL), "yk_graph_dump_dot");
    NULLS(yk_graph_dump_json(NULL));
    SAFE(yk_string_free(NULL));
    FAILS(yk_graph_set_tie_report(NULL, true));
    EQ(yk_tie_count(NULL), 0);
    FAILS(yk_tie_at(NULL, 0, &use));
    ERR(yk_tie_at(g, 0, NULL), ST(YK_EINVAL), "yk_tie_at");
    ERR(yk_tie_at(g, -1, &use), ST(YK_ERANGE), "yk_tie_at|-1");
    ERR(yk_tie_at(g, INT64_MAX, &use), ST(YK_ERANGE), "yk_tie_at");
    ERR(yk_tie_at(g, INT64_MIN, &use), ST(YK_ERANGE), "yk_tie_at");
    FAILS(yk_tie_report_print(NULL, devnull));
    ERR(yk_tie_report_print(g, NULL), ST(YK_EINVAL), "yk_tie_report_print");

    /* gradient checking */
    yk_gradcheck_report rep;
    FAILS(yk_gradcheck(NULL, build_sum_w, W, NULL, &rep));
    ERR(yk_gradcheck(m, NULL, W, NULL, &rep), ST(YK_EINVAL), "yk_gradcheck");
    ERR(yk_gradcheck(m, build_sum_w, W, NULL, NULL), ST(YK_EINVAL),
        "yk_gradcheck");
    /* a build that returns NULL without failing the graph */
    ERR(yk_gradcheck(m, build_nothing, NULL, NULL, &rep),
                    ST(YK_EINVAL), "yk_gradcheck|NULL");
    ERR(yk_gradcheck(m, build_sum_w, W,
                                 &(yk_gradcheck_opts){.eps = -1}, &rep),
                    ST(YK_EINVAL), "yk_gradcheck|eps");
    ERR(yk_gradcheck(m, build_sum_w, W,
                                 &(yk_gradcheck_opts){.atol = NAN}, &rep),
                    ST(YK_EINVAL), "yk_gradcheck|atol");
    yk_safetensors_close(f);
    expect_no_findings();
}

/* ------------------------------------------ every op of the registry */

/*
 * Every registered op, through its registry build function (what the case
 * evaluator calls), with every combination of input kinds below and its
 * default attributes, then each attribute at edge values: a call must
 * either fail cleanly (the graph failed, the context has that status and
 * a message naming the op) or give a node with a value whose backward
 * runs. New ops are covered as soon as they are registered. One child
 * process per op; before each call it writes "@what" to the pipe, so a
 * crash is reported with the call that made it.
 */
enum { N_KINDS = 10 };
static const char *const kind_name[N_KINDS] = {
    "NULL", "f64[2,3]", "f32[2,3]", "i64[2,3]", "f64[]", "f64[0,3]",
    "i64[2]{-1,MAX}", "param W f64[5,3]", "cat[W|X] f64[5,5]", "i64[1]{0}"};

static yk_node *kind_node(yk_graph *gr, int k)
{
    switch (k) {
    case 1: return yk_const(gr, t64);
    case 2: return yk_const(gr, t32);
    case 3: return yk_const(gr, ti);
    case 4: return yk_const(gr, t0);
    case 5: return yk_const(gr, te);
    case 6: return yk_const(gr, kept[0]);
    case 7: return yk_param_node(gr, W);
    case 8: return yk_cat(gr, 2, (yk_node *[]){yk_param_node(gr, W),
                                               yk_param_node(gr, X)}, 1);
    case 9: return yk_const(gr, kept[1]);
    default: return NULL;
    }
}

/* The default of an attribute, or a plain value for a required one. */
static yk_attr_value attr_plain(const yk_attr_spec *sp)
{
    yk_attr_value a;
    memset(&a, 0, sizeof a);
    a.i = sp->def_int;
    a.s = sp->def_string;
    a.is_null = sp->nullable && !sp->required;
    if (sp->type == YK_ATTR_INT_LIST) {
        a.n = 1;
        a.list[0] = -1;
    }
    return a;
}

/* Edge value v (0, 1, ...) of an attribute; false when there are no more. */
static bool attr_edge(const yk_attr_spec *sp, int v, yk_attr_value *a)
{
    static const int64_t ints[] = {0, 1, -1, 2, -3, 5, INT64_MAX, INT64_MIN};
    static const char *const strs[] = {"sum", "mean", "max", "bogus", ""};
    *a = attr_plain(sp);
    a->is_null = false;
    switch (sp->type) {
    case YK_ATTR_INT:
        if (v < 8)
            a->i = ints[v];
        else if (v == 8 && sp->nullable)
            a->is_null = true;
        return v < 8 || (v == 8 && sp->nullable);
    case YK_ATTR_BOOL:
        a->i = v;
        return v < 3;
    case YK_ATTR_STRING:
        if (v < 5)
            a->s = strs[v];
        return v < 5;
    case YK_ATTR_INT_LIST:
    case YK_ATTR_DIMS:
        if (v >= 9)
            return false;
        a->n = v < 8 ? 1 : 2;
        a->list[0] = ints[v % 8];
        a->list[1] = 0;
        if (v == 8 && sp->type == YK_ATTR_DIMS)
            a->is_null = true;
        return true;
    }
    return false;
}

static void op_progress(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + 1, sizeof buf - 2, fmt, ap);
    va_end(ap);
    buf[0] = '@';
    strcat(buf, "\n");
    if (write(probe_fd, buf, strlen(buf)) < 0)
        _exit(3);
}

/* One call of op with input kinds kinds[0..n) and attributes a. */
static void op_call(const yk_op_def *op, const int *kinds, int n,
                    const yk_attr_value *a)
{
    yk_model_zero_grad(m);
    yk_graph *gr = yk_graph_begin(ctx);
    yk_node *in[8];
    for (int i = 0; i < n; i++)
        in[i] = kind_node(gr, kinds[i]);
    yk_clear_error(ctx);
    yk_node *y = op->build(gr, in, n, a);
    if (!y) {
        yk_status s = yk_graph_status(gr);
        if (s == YK_OK)
            complain("%s: NULL without failing the graph\n", op->name);
        else if (yk_last_status(ctx) != s ||
                 !strstr(yk_last_error(ctx), op->name))
            complain("%s: graph %s, context %s, message \"%s\" does not "
                     "name the op\n", op->name, yk_status_name(s),
                     yk_status_name(yk_last_status(ctx)), yk_last_error(ctx));
    } else if (!yk_value(y)) {
        complain("%s: a node without a value: %s\n", op->name,
                 yk_last_error(ctx));
    } else if (yk_node_requires_grad(y) && yk_node_dtype(y) != YK_I64) {
        yk_tensor *seed = yk_tensor_ones(ctx, yk_node_dtype(y),
                                         yk_node_ndim(y), yk_node_shape(y));
        const yk_tensor *sp = seed;
        yk_status s = yk_backward_seeded(gr, 1, &y, &sp);
        if (s != YK_OK)
            complain("%s: forward accepted, backward failed: %s\n", op->name,
                     yk_last_error(ctx));
        yk_tensor_free(seed);
    }
    yk_graph_end(gr);
}

static void sweep_op(const yk_op_def *op)
{
    yk_attr_value attrs[YK_OP_MAX_ATTRS];
    for (int j = 0; j < op->n_attrs; j++)
        attrs[j] = attr_plain(&op->attrs[j]);
    int n = op->variadic ? 3 : op->n_inputs, kinds[8], total = 1;
    for (int i = 0; i < n; i++)
        total *= N_KINDS;
    /* every combination of input kinds (a variadic op: lists of 0 to 3) */
    for (int c = 0; c < total; c++) {
        for (int i = 0, r = c; i < n; i++, r /= N_KINDS)
            kinds[i] = r % N_KINDS;
        for (int len = op->variadic ? 0 : n; len <= n; len++) {
            if (op->variadic && kinds[len] != 0 && len < n)
                continue; /* each list once */
            op_progress("%s(%s, %s, %s, %s) default attrs", op->name,
                        n > 0 ? kind_name[kinds[0]] : "",
                        n > 1 ? kind_name[kinds[1]] : "",
                        n > 2 ? kind_name[kinds[2]] : "",
                        n > 3 ? kind_name[kinds[3]] : "");
            op_call(op, kinds, len, attrs);
        }
    }
    /* each attribute at its edges, over a few input kinds */
    const int input_sets[][4] = {{7, 7, 3, 3}, {1, 1, 9, 1}, {3, 8, 9, 1},
                                 {5, 5, 5, 5}, {4, 4, 4, 4}, {8, 3, 9, 1}};
    for (int j = 0; j < op->n_attrs; j++) {
        yk_attr_value edge;
        for (int v = 0; attr_edge(&op->attrs[j], v, &edge); v++) {
            yk_attr_value a[YK_OP_MAX_ATTRS];
            memcpy(a, attrs, sizeof a);
            a[j] = edge;
            for (int s = 0; s < 6; s++) {
                int k[8];
                for (int i = 0; i < n; i++) {
                    k[i] = input_sets[s][i % 4];
                    if (op->index_inputs & (1u << i))
                        k[i] = i == 2 ? 9 : 3;
                }
                op_progress("%s attr %s edge %d, inputs set %d", op->name,
                            op->attrs[j].name, v, s);
                op_call(op, k, op->variadic ? 2 : n, a);
            }
        }
    }
}

Test(sweep, every_registered_op)
{
    keep(TI(ctx, SHAPE(2), IDX(-1, INT64_MAX)));  /* kept[0]: kind 6 */
    keep(TI(ctx, SHAPE(1), IDX(0)));              /* kept[1]: kind 9 */
    for (int k = 0; k < yk_op_count(); k++) {
        const yk_op_def *op = yk_op_at(k);
        if (!op->build)
            continue;
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            probe_fd = fds[1];
            sweep_op(op);
            _exit(0);
        }
        close(fds[1]);
        FILE *in = fdopen(fds[0], "r");
        char line[1024], last[1024] = "", complaints[2048] = "";
        long calls = 0;
        while (fgets(line, sizeof line, in)) {
            if (line[0] == '@') {
                snprintf(last, sizeof last, "%s", line + 1);
                calls++;
            } else if (strlen(complaints) + strlen(line) < sizeof complaints) {
                strcat(complaints, "    ");
                strcat(complaints, line);
            }
        }
        fclose(in);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        n_probes++;
        if (WIFSIGNALED(status) || WEXITSTATUS(status))
            add_finding("\n  op %s: CRASH (%s) at %s", op->name,
                        WIFSIGNALED(status) ? strsignal(WTERMSIG(status))
                                            : "exit status", last);
        if (complaints[0])
            add_finding("\n  op %s:\n%s", op->name, complaints);
        note("op %s: %ld calls", op->name, calls);
    }
    expect_no_findings();
}

/* ================================================================== *
 * Numerics at logits of +-1e4                                          *
 * ================================================================== */

/* tests/test_softmax.c and tests/test_loss.c check softmax and
 * log_softmax along the last dim of [2, 3] and cross_entropy with sum
 * reduction at +-1e4; these add a leading and a middle dim (strided
 * kernels) and the mean reduction. */

static double tol_of(yk_dtype dt) { return dt == YK_F32 ? 4e-3 : 1e-11; }

static yk_tensor *values_of(yk_ctx *c, yk_dtype dt, int ndim,
                            const int64_t *shape, const double *v)
{
    yk_tensor *t = yk_tensor_zeros(c, dt, ndim, shape);
    cr_assert(t);
    for (int64_t i = 0; i < yk_tensor_numel(t); i++) {
        if (dt == YK_F32)
            ((float *)yk_tensor_data(t))[i] = (float)v[i];
        else
            ((double *)yk_tensor_data(t))[i] = v[i];
    }
    return t;
}

static void expect_all_finite(const yk_tensor *t, const char *what)
{
    cr_assert(t, "%s: no tensor", what);
    for (int64_t i = 0; i < yk_tensor_numel(t); i++)
        cr_assert(isfinite(yk_tensor_get(t, i)), "%s[%lld] = %g", what,
                  (long long)i, yk_tensor_get(t, i));
}

Test(numerics, softmax_along_leading_and_middle_dims_at_1e4)
{
    /* [2, 2, 2] along dim 1: the pairs x[a, :, b] are
     *   (0,0) [1e4, -1e4] -> softmax [1, 0]     log [0, -2e4]
     *   (0,1) [-1e4, -1e4] -> [1/2, 1/2]        log [-ln 2, -ln 2]
     *   (1,0) [0, 1e4]     -> [0, 1]            log [-1e4, 0]
     *   (1,1) [1e4, 1e4]   -> [1/2, 1/2]        log [-ln 2, -ln 2]
     * (exp(-1e4) and exp(-2e4) underflow to 0). With a seed of ones the
     * log_softmax gradient is 1 - 2 softmax: [-1, 1], [0, 0], [1, -1],
     * [0, 0]. Along dim 0 of the same numbers the pairs are x[:, i, j]:
     * ([1e4, 0], [-1e4, 1e4], [-1e4, 1e4], [-1e4, 1e4]). */
    const double x[8] = {1e4, -1e4, -1e4, -1e4, 0, 1e4, 1e4, 1e4};
    const double ln2 = log(2);
    yk_ctx *c = yk_ctx_new();
    yk_model *mm = yk_model_new(c);
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *p = yk_model_add(mm, k ? "x32" : "x64", dt, 3,
                                   (int64_t[]){2, 2, 2});
        yk_tensor *xv = values_of(c, dt, 3, (int64_t[]){2, 2, 2}, x);
        yk_tensor_copy(yk_param_value(p), xv);
        yk_tensor *ones = yk_tensor_ones(c, dt, 3, (int64_t[]){2, 2, 2});
        yk_graph *gr = yk_graph_begin(c);
        yk_node *xn = yk_param_node(gr, p);
        yk_node *sm1 = yk_softmax(gr, xn, 1), *ls1 = yk_log_softmax(gr, xn, 1);
        yk_node *sm0 = yk_softmax(gr, xn, -3);
        yk_node *ls0 = yk_log_softmax(gr, xn, 0);
        cr_assert(sm1 && ls1 && sm0 && ls0, "%s", yk_last_error(c));
        double t = tol_of(dt);
        expect_close(yk_value(sm1), VALS(1, 0.5, 0, 0.5, 0, 0.5, 1, 0.5), 8,
                     t, t);
        expect_close(yk_value(ls1), VALS(0, -ln2, -2e4, -ln2, -1e4, -ln2, 0,
                                         -ln2), 8, t, t);
        expect_close(yk_value(sm0), VALS(1, 0, 0, 0, 0, 1, 1, 1), 8, t, t);
        expect_close(yk_value(ls0), VALS(0, -2e4, -2e4, -2e4, -1e4, 0, 0, 0),
                     8, t, t);
        const yk_tensor *seeds[] = {ones};
        cr_assert_eq(yk_backward_seeded(gr, 1, &ls1, seeds), YK_OK);
        expect_close(yk_param_grad(p), VALS(-1, 0, 1, 0, 1, 0, -1, 0), 8, t,
                     t);
        yk_graph_end(gr);
        yk_model_zero_grad(mm);
        /* softmax's gradient through the saturated pairs is finite */
        gr = yk_graph_begin(c);
        sm0 = yk_softmax(gr, yk_param_node(gr, p), 0);
        cr_assert_eq(yk_backward_seeded(gr, 1, &sm0, seeds), YK_OK);
        expect_all_finite(yk_param_grad(p), "softmax grad");
        yk_graph_end(gr);
        yk_model_zero_grad(mm);
        yk_tensor_free(xv);
        yk_tensor_free(ones);
    }
    yk_model_free(mm);
    yk_ctx_free(c);
}

Test(numerics, cross_entropy_mean_at_1e4)
{
    /* rows [1e4, -1e4, 0] target 1 and [0, 0, 1e4] target 2:
     * logsumexp = 1e4 in both (the others underflow), so the losses are
     * 1e4 - (-1e4) = 2e4 and 1e4 - 1e4 = 0: mean 1e4. The gradient is
     * (softmax - one-hot) / 2 = [1/2, -1/2, 0] and [0, 0, 0]. */
    yk_ctx *c = yk_ctx_new();
    yk_model *mm = yk_model_new(c);
    yk_tensor *target = TI(c, SHAPE(2), IDX(1, 2));
    for (int k = 0; k < 2; k++) {
        yk_dtype dt = k ? YK_F32 : YK_F64;
        yk_param *p = yk_model_add(mm, k ? "l32" : "l64", dt, 2,
                                   (int64_t[]){2, 3});
        yk_tensor *xv = values_of(c, dt, 2, (int64_t[]){2, 3},
                                  VALS(1e4, -1e4, 0, 0, 0, 1e4));
        yk_tensor_copy(yk_param_value(p), xv);
        yk_graph *gr = yk_graph_begin(c);
        yk_node *l = yk_cross_entropy(gr, yk_param_node(gr, p),
                                      yk_const(gr, target), YK_REDUCE_MEAN);
        cr_assert(l, "%s", yk_last_error(c));
        expect_close(yk_value(l), VALS(1e4), 1, 0, tol_of(dt));
        cr_assert_eq(yk_backward(gr, l), YK_OK, "%s", yk_last_error(c));
        expect_close(yk_param_grad(p), VALS(0.5, -0.5, 0, 0, 0, 0), 6,
                     tol_of(dt), tol_of(dt));
        yk_graph_end(gr);
        yk_tensor_free(xv);
    }
    yk_tensor_free(target);
    yk_model_free(mm);
    yk_ctx_free(c);
}

/* ================================================================== *
 * The NaN / Inf check mode (yk_graph_set_check_finite)                 *
 * ================================================================== */

/* A graph with the check on over x f64 [3] = values. */
typedef struct finite_case {
    yk_ctx *c;
    yk_model *mm;
    yk_param *p;
    yk_graph *g;
    yk_node *x;
} finite_case;

static void finite_begin(finite_case *f, const double *values, bool on)
{
    f->c = yk_ctx_new();
    f->mm = yk_model_new(f->c);
    f->p = param_with(f->mm, "x", YK_F64, SHAPE(3), values);
    f->g = yk_graph_begin(f->c);
    cr_assert_eq(yk_graph_set_check_finite(f->g, on), YK_OK);
    f->x = yk_param_node(f->g, f->p);
}

static void finite_end(finite_case *f)
{
    yk_graph_end(f->g);
    yk_model_free(f->mm);
    yk_ctx_free(f->c);
}

Test(check_finite, names_the_first_op_that_made_a_nan)
{
    /* log(-1) = NaN at element 1; mul and sum only pass it on */
    finite_case f;
    finite_begin(&f, VALS(1, -1, 2), true);
    yk_node *y = yk_log(f.g, f.x);
    cr_assert(y, "the op that made the NaN returns its node");
    yk_node *z = yk_mul(f.g, y, y);
    cr_assert_null(z, "the next op finds the graph failed");
    cr_assert_null(yk_sum(f.g, z, 0, NULL, false));
    cr_assert_eq(yk_graph_status(f.g), YK_EINVAL);
    expect_error(f.c, YK_EINVAL, "log");
    expect_error(f.c, YK_EINVAL, "NaN");
    expect_error(f.c, YK_EINVAL, "element 1");
    cr_assert_null(strstr(yk_last_error(f.c), "mul"));
    finite_end(&f);
}

Test(check_finite, infinities_and_their_sign)
{
    /* exp(1000) overflows f64 to +Inf at element 2; -1/0 is -Inf */
    finite_case f;
    finite_begin(&f, VALS(0, 1, 1000), true);
    yk_node *e = yk_exp(f.g, f.x);
    cr_assert_null(yk_value(e), "reading the value runs the check");
    expect_error(f.c, YK_EINVAL, "exp");
    expect_error(f.c, YK_EINVAL, "Inf at element 2");
    finite_end(&f);

    finite_begin(&f, VALS(-1, 0, 1), true);
    yk_tensor *zero = yk_tensor_zeros(f.c, YK_F64, 1, (int64_t[]){3});
    yk_node *d = yk_div(f.g, f.x, yk_const(f.g, zero));
    cr_assert(d);
    cr_assert_eq(yk_graph_status(f.g), YK_EINVAL,
                 "the status runs the check of the last op");
    expect_error(f.c, YK_EINVAL, "div");
    expect_error(f.c, YK_EINVAL, "-Inf at element 0");
    yk_tensor_free(zero);
    finite_end(&f);
}

Test(check_finite, backward_reports_it_and_changes_no_gradient)
{
    finite_case f;
    finite_begin(&f, VALS(1, -1, 2), true);
    yk_node *loss = yk_sum(f.g, yk_mul(f.g, f.x, f.x), 0, NULL, false);
    cr_assert(loss);
    yk_node *bad = yk_log(f.g, f.x); /* made after the loss, unused */
    (void)bad;
    cr_assert_eq(yk_backward(f.g, loss), YK_EINVAL);
    expect_error(f.c, YK_EINVAL, "log");
    cr_assert_eq(yk_param_grad_kind(f.p), YK_GRAD_NONE);
    finite_end(&f);
}

Test(check_finite, parameters_and_constants_are_checked_too)
{
    /* a NaN already in a parameter is the parameter's fault, not the
     * first op's that reads it */
    finite_case f;
    finite_begin(&f, VALS(1, NAN, 2), true);
    cr_assert_null(yk_tanh(f.g, f.x));
    expect_error(f.c, YK_EINVAL, "parameter \"x\"");
    expect_error(f.c, YK_EINVAL, "NaN at element 1");
    finite_end(&f);
}

Test(check_finite, values_stay_readable_after_another_error)
{
    /* the check adds no failure to a graph that failed for another
     * reason, and hides none of its values */
    finite_case f;
    finite_begin(&f, VALS(1, 4, 9), true);
    yk_node *y = yk_exp(f.g, f.x);
    cr_assert_null(yk_reshape(f.g, y, 1, (int64_t[]){4}));
    expect_error(f.c, YK_ESHAPE, "reshape");
    cr_assert(yk_value(y), "the value of a good node stays readable");
    cr_assert_eq(yk_graph_status(f.g), YK_ESHAPE);
    expect_error(f.c, YK_ESHAPE, "reshape");
    finite_end(&f);
}

Test(check_finite, off_by_default_and_silent_on_finite_graphs)
{
    finite_case f;
    finite_begin(&f, VALS(1, -1, 2), false);
    yk_node *y = yk_sum(f.g, yk_log(f.g, f.x), 0, NULL, false);
    cr_assert(y && isnan(yk_tensor_get(yk_value(y), 0)));
    cr_assert_eq(yk_graph_status(f.g), YK_OK);
    finite_end(&f);
    cr_assert_eq(yk_graph_set_check_finite(NULL, true), YK_EINVAL);

    /* the extended model's step gives the same bits with the check on */
    yk_ctx *c = yk_ctx_new();
    ext_model a, b;
    ext_config cfg = {"ce+adam", LOSS_CE, YK_OPTIM_ADAM, SMALL_SIZE};
    ext_init(&a, c, &cfg, 3);
    ext_init(&b, c, &cfg, 3);
    for (int k = 0; k < 2; k++) {
        ext_model *e = k ? &b : &a;
        yk_model_zero_grad(e->m);
        yk_graph *gr = yk_graph_begin(c);
        cr_assert_eq(yk_graph_set_check_finite(gr, k == 1), YK_OK);
        cr_assert_eq(yk_backward(gr, ext_loss(gr, e)), YK_OK, "%s",
                     yk_last_error(c));
        yk_graph_end(gr);
        cr_assert_eq(yk_optim_step(e->opt), YK_OK);
    }
    size_t na, nb;
    unsigned char *sa = ext_snapshot(&a, &na), *sb = ext_snapshot(&b, &nb);
    expect_same_snapshot(sa, na, sb, nb, "the check changed a number");
    free(sa);
    free(sb);
    ext_free(&a);
    ext_free(&b);
    yk_ctx_free(c);
}


/* ================================================================== *
 * Determinism                                                          *
 * ================================================================== */

static unsigned char *train_steps(const ext_config *cfg, int threads,
                                  int steps, size_t *size)
{
    yk_ctx *c = yk_ctx_new();
    cr_assert_eq(yk_set_threads(c, threads), YK_OK);
    ext_model e;
    ext_init(&e, c, cfg, 42);
    for (int i = 0; i < steps; i++)
        cr_assert_eq(ext_step(&e), YK_OK, "%s, step %d: %s", cfg->name, i,
                     yk_last_error(c));
    unsigned char *b = ext_snapshot(&e, size);
    ext_free(&e);
    yk_ctx_free(c);
    return b;
}

Test(determinism, same_bits_with_one_and_two_threads_and_across_runs)
{
    /* The seed's size, 100 steps: parameters, step counts and optimizer
     * state after them, bit for bit. ce+adam runs the output projection
     * through BLIS, whose work the thread count splits. */
    const ext_config cfgs[] = {
        {"ce+adam", LOSS_CE, YK_OPTIM_ADAM, SEED_SIZE},
        {"mse+sparse_adam", LOSS_MSE, YK_OPTIM_SPARSE_ADAM, SEED_SIZE},
    };
    for (int k = 0; k < 2; k++) {
        size_t n1, n2, n3;
        unsigned char *one = train_steps(&cfgs[k], 1, 100, &n1);
        unsigned char *two = train_steps(&cfgs[k], 2, 100, &n2);
        unsigned char *again = train_steps(&cfgs[k], 1, 100, &n3);
        expect_same_snapshot(one, n1, two, n2, "1 thread against 2");
        expect_same_snapshot(one, n1, again, n3, "two runs");
        free(one);
        free(two);
        free(again);
    }
}
