/*
 * test_mpi -- libyoke_mpi under mpirun (any number of ranks; the meson
 * tests run 1 and 2). A plain program: Criterion's forking runner and MPI
 * do not mix. Every rank runs every check; rank 0 prints the total as
 * "N passed, N failed" and every rank exits non-zero on a failure.
 *
 *   mpirun -np 2 ./test_mpi [--verbose] the tests (--verbose prints the
 *                                      measured differences)
 *   mpirun -np 2 ./test_mpi --bench [B [STEPS [V]]]   scaling figures
 *                                      (docs/MPI.md; B 512, 20 steps, V 1000)
 *
 * Where the numbers come from: hand-worked sums (each rank's gradient is
 * made known -- rank + 1, ones per lookup -- so the exchanged result is a
 * sum worked out in the comment), the same model trained on one rank with
 * the whole batch (the equivalence tests: data parallel and sharded must
 * reproduce it), and the same lookups over a whole table (the sharded
 * tests). None of the expected values goes through lib/mpi.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "yoke_mpi.h"

static yk_ctx *ctx;
static yk_mpi *comm;
static int rank, nranks;
static int n_pass, n_fail;
static bool verbose; /* --verbose: print the measured differences */

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) {                                                          \
            n_pass++;                                                        \
        } else {                                                             \
            n_fail++;                                                        \
            fprintf(stderr, "[rank %d] %s:%d: FAILED (%s): ", rank,          \
                    __FILE__, __LINE__, #cond);                              \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, " [last error: %s]\n", yk_last_error(ctx));      \
        }                                                                    \
    } while (0)

#define OK(call) CHECK((call) == YK_OK, "%s", #call)

/* The status is code and the message names every culprit given. */
static void expect_error_at(int line, yk_status got, yk_status code,
                            const char *const *parts)
{
    const char *msg = yk_last_error(ctx);
    bool ok = got == code;
    for (int i = 0; ok && parts[i]; i++)
        ok = strstr(msg, parts[i]) != NULL;
    if (ok) {
        n_pass++;
        return;
    }
    n_fail++;
    fprintf(stderr, "[rank %d] line %d: expected %s naming", rank, line,
            yk_status_name(code));
    for (int i = 0; parts[i]; i++)
        fprintf(stderr, " \"%s\"", parts[i]);
    fprintf(stderr, ", got %s: %s\n", yk_status_name(got), msg);
}

#define EXPECT_ERROR(got, code, ...)                                         \
    expect_error_at(__LINE__, (got), (code),                                 \
                    (const char *const[]){__VA_ARGS__, NULL})

/* --------------------------------------------------------------- helpers */

static yk_tensor *randn(yk_dtype dt, int ndim, const int64_t *shape,
                        uint64_t seed)
{
    yk_tensor *t = yk_tensor_zeros(ctx, dt, ndim, shape);
    if (t)
        yk_tensor_fill_normal(t, seed, 0, 1);
    return t;
}

static yk_tensor *randint(int ndim, const int64_t *shape, uint64_t seed,
                          int64_t hi)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_I64, ndim, shape);
    if (t)
        yk_tensor_fill_randint(t, seed, 0, hi);
    return t;
}

/* max |a - b| / max(1, |b|) over the elements (INFINITY if they differ in
 * size). */
static double rel_diff(const yk_tensor *a, const yk_tensor *b)
{
    if (!a || !b || yk_tensor_numel(a) != yk_tensor_numel(b))
        return INFINITY;
    double worst = 0;
    for (int64_t i = 0; i < yk_tensor_numel(a); i++) {
        double x = yk_tensor_get(a, i), y = yk_tensor_get(b, i);
        double d = fabs(x - y) / fmax(1.0, fabs(y));
        if (!(d <= worst))
            worst = d;
    }
    return worst;
}

static yk_tensor *grad_dense(yk_param *p)
{
    yk_tensor *t = yk_tensor_zeros(ctx, yk_tensor_dtype(yk_param_value(p)),
                                   yk_tensor_ndim(yk_param_value(p)),
                                   yk_tensor_shape(yk_param_value(p)));
    if (t)
        yk_param_grad_to_dense(p, t);
    return t;
}

/* Row r of a 2-D tensor as a new [1, cols] view copy. */
static double row_rel_diff(const yk_tensor *a, int64_t ra, const yk_tensor *b,
                           int64_t rb)
{
    int64_t cols = yk_tensor_dim(a, 1);
    double worst = 0;
    for (int64_t j = 0; j < cols; j++) {
        double x = yk_tensor_get(a, ra * cols + j);
        double y = yk_tensor_get(b, rb * cols + j);
        double d = fabs(x - y) / fmax(1.0, fabs(y));
        if (!(d <= worst))
            worst = d;
    }
    return worst;
}

static bool same_bits_everywhere(const void *data, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)data)[i]) * UINT64_C(0x100000001b3);
    uint64_t lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

/* loss = sum(x * c): the gradient of x is c. */
static void backward_weighted(yk_param *p, const yk_tensor *c)
{
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *loss = yk_sum(g, yk_mul(g, yk_param_node(g, p), yk_const(g, c)),
                           0, NULL, false);
    OK(yk_backward(g, loss));
    yk_graph_end(g);
}

/* ------------------------------------------------------------ start-up */

static void test_basics(void)
{
    int r, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    CHECK(yk_mpi_rank(comm) == r && yk_mpi_size(comm) == n, "rank %d/%d",
          yk_mpi_rank(comm), yk_mpi_size(comm));
    CHECK(yk_mpi_new(NULL, MPI_COMM_WORLD) == NULL, "NULL ctx");
    EXPECT_ERROR(yk_mpi_set_bucket_bytes(comm, 8), YK_EINVAL,
                 "yk_mpi_set_bucket_bytes", "8");
    /* 7 items: one rank takes 0..7; two ranks 0..4 and 4..7 (the first
     * rank gets the remainder). */
    int64_t a, b;
    yk_mpi_split(comm, 7, &a, &b);
    if (nranks == 1)
        CHECK(a == 0 && b == 7, "split [%lld, %lld)", (long long)a,
              (long long)b);
    if (nranks == 2)
        CHECK(a == (rank ? 4 : 0) && b == (rank ? 7 : 4), "split [%lld, "
              "%lld)", (long long)a, (long long)b);
    /* allreduce_sum: sum of rank + 1 over the ranks = n (n + 1) / 2. */
    double v[2] = {rank + 1.0, 0.5};
    OK(yk_mpi_allreduce_sum(comm, v, 2));
    CHECK(v[0] == nranks * (nranks + 1) / 2.0 && v[1] == 0.5 * nranks,
          "allreduce %g %g", v[0], v[1]);
    if (nranks > 1) /* counts that differ: refused everywhere */
        EXPECT_ERROR(yk_mpi_allreduce_sum(comm, v, rank == 1 ? 1 : 2),
                     YK_EINVAL, "yk_mpi_allreduce_sum", "rank 1", "n");
    EXPECT_ERROR(yk_mpi_allreduce_sum(comm, NULL, 2), YK_EINVAL,
                 "yk_mpi_allreduce_sum", "n = 2", "NULL");
}

/* ----------------------------------------------------------- broadcast */

static void test_broadcast(void)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){3, 4});
    yk_param *b = yk_model_add(m, "b", YK_F32, 1, (int64_t[]){5});
    yk_tensor_fill_normal(yk_param_value(W), 100 + rank, 0, 1);
    yk_tensor_fill_normal(yk_param_value(b), 200 + rank, 0, 1);
    yk_tensor *w0 = randn(YK_F64, 2, (int64_t[]){3, 4}, 100);
    yk_tensor *b0 = randn(YK_F32, 1, (int64_t[]){5}, 200);
    yk_mpi_reset_stats(comm);
    OK(yk_mpi_broadcast_model(comm, m));
    CHECK(!memcmp(yk_tensor_data(w0), yk_tensor_data(yk_param_value(W)),
                  96), "W is rank 0's");
    CHECK(!memcmp(yk_tensor_data(b0), yk_tensor_data(yk_param_value(b)),
                  20), "b is rank 0's");
    /* 96 + 20 bytes of parameters go to (or come from) the other ranks. */
    yk_mpi_stats st = yk_mpi_get_stats(comm);
    if (nranks > 1)
        CHECK(rank == 0 ? st.bytes_sent >= 116u * (nranks - 1)
                        : st.bytes_received >= 116u,
              "stats %llu %llu", (unsigned long long)st.bytes_sent,
              (unsigned long long)st.bytes_received);
    OK(yk_mpi_check_replicas(comm, m, NULL));
    yk_tensor_free(w0);
    yk_tensor_free(b0);

    /* A model that differs on rank 1: every rank fails, naming rank 1. */
    if (nranks > 1) {
        if (rank == 1)
            yk_model_add(m, "extra", YK_F64, 1, (int64_t[]){2});
        EXPECT_ERROR(yk_mpi_broadcast_model(comm, m), YK_EINVAL,
                     "yk_mpi_broadcast_model", "rank 1");
        EXPECT_ERROR(yk_mpi_sync_grads(comm, m, YK_MPI_SUM), YK_EINVAL,
                     "yk_mpi_sync_grads", "rank 1");
    }
    /* A NULL model on one rank: that rank says so, the others name it. */
    yk_status s = yk_mpi_broadcast_model(comm, rank == 0 ? NULL : m);
    if (rank == 0)
        EXPECT_ERROR(s, YK_EINVAL, "yk_mpi_broadcast_model", "m is NULL");
    else
        EXPECT_ERROR(s, YK_ESTATE, "rank 0 failed");
    yk_model_free(m);
}

/* ------------------------------------------------------ dense exchange */

static void test_sync_dense(void)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *W = yk_model_add(m, "W", YK_F64, 2, (int64_t[]){5, 10});
    yk_param *b = yk_model_add(m, "b", YK_F32, 1, (int64_t[]){7});
    yk_param *unused = yk_model_add(m, "unused", YK_F64, 1, (int64_t[]){3});
    /* 64-byte buckets: W's 50 doubles span 7 buckets. */
    OK(yk_mpi_set_bucket_bytes(comm, 64));
    for (int pass = 0; pass < 2; pass++) {
        yk_mpi_reduce how = pass ? YK_MPI_SUM : YK_MPI_AVERAGE;
        yk_model_zero_grad(m);
        /* Rank r's gradient of element i is (r + 1)(i + 1). Summed over
         * ranks: (i + 1) n (n + 1) / 2; averaged: (i + 1)(n + 1) / 2. */
        yk_tensor *cw = yk_tensor_zeros(ctx, YK_F64, 2, (int64_t[]){5, 10});
        yk_tensor *cb = yk_tensor_zeros(ctx, YK_F32, 1, (int64_t[]){7});
        for (int i = 0; i < 50; i++)
            ((double *)yk_tensor_data(cw))[i] = (rank + 1.0) * (i + 1);
        for (int i = 0; i < 7; i++)
            ((float *)yk_tensor_data(cb))[i] = (float)((rank + 1) * (i + 1));
        backward_weighted(W, cw);
        backward_weighted(b, cb);
        OK(yk_mpi_sync_grads(comm, m, how));
        double f = pass ? nranks * (nranks + 1) / 2.0 : (nranks + 1) / 2.0;
        const yk_tensor *gw = yk_param_grad(W), *gb = yk_param_grad(b);
        CHECK(gw && gb, "dense gradients");
        for (int i = 0; gw && i < 50; i++)
            CHECK(yk_tensor_get(gw, i) == (i + 1) * f, "W[%d] = %g, want %g",
                  i, yk_tensor_get(gw, i), (i + 1) * f);
        for (int i = 0; gb && i < 7; i++)
            CHECK(yk_tensor_get(gb, i) == (float)((i + 1) * f),
                  "b[%d] = %g", i, yk_tensor_get(gb, i));
        CHECK(yk_param_grad_kind(unused) == YK_GRAD_NONE, "unused stays");
        yk_tensor_free(cw);
        yk_tensor_free(cb);
    }
    /* The same bits on every rank, and the sum in rank order: random f32
     * gradients whose sum rounds; each rank redoes the sum itself. */
    yk_model_zero_grad(m);
    yk_tensor *mine = randn(YK_F32, 1, (int64_t[]){7}, 300 + rank);
    backward_weighted(b, mine);
    OK(yk_mpi_sync_grads(comm, m, YK_MPI_SUM));
    float want[7] = {0};
    for (int q = 0; q < nranks; q++) {
        yk_tensor *t = randn(YK_F32, 1, (int64_t[]){7}, 300 + q);
        for (int i = 0; i < 7; i++)
            want[i] = q ? want[i] + ((float *)yk_tensor_data(t))[i]
                        : ((float *)yk_tensor_data(t))[i];
        yk_tensor_free(t);
    }
    CHECK(yk_param_grad(b) &&
              !memcmp(yk_tensor_data(yk_param_grad(b)), want, sizeof want),
          "rank-order f32 sum, bit for bit");
    CHECK(same_bits_everywhere(yk_tensor_data(yk_param_grad(b)), 28),
          "same bits on every rank");
    yk_tensor_free(mine);
    OK(yk_mpi_set_bucket_bytes(comm, (size_t)4 << 20));
    EXPECT_ERROR(yk_mpi_sync_grads(comm, m, (yk_mpi_reduce)7), YK_EINVAL,
                 "yk_mpi_sync_grads", "how = 7");
    /* Frozen on rank 1 only: every rank refuses, naming W. */
    if (nranks > 1) {
        if (rank == 1)
            yk_param_set_requires_grad(W, false);
        EXPECT_ERROR(yk_mpi_sync_grads(comm, m, YK_MPI_SUM), YK_ESTATE,
                     "\"W\"", "frozen");
    }
    yk_model_free(m);
}

/* -------------------------------------------------- row-sparse exchange */

/* Looks up rows idx[0..n) of p with a sparse embedding; loss = sum. Each
 * lookup adds a row of ones to the gradient. */
static void lookup_ones(yk_param *p, int n, const int64_t *idx, bool sparse)
{
    yk_tensor *in = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){n}, idx);
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *e = yk_embedding(g, yk_const(g, in), yk_param_node(g, p),
                              YK_NO_PADDING, false, sparse);
    OK(yk_backward(g, yk_sum(g, e, 0, NULL, false)));
    yk_graph_end(g);
    yk_tensor_free(in);
}

static void test_sync_rows(void)
{
    yk_model *m = yk_model_new(ctx);
    yk_param *E = yk_model_add(m, "E", YK_F64, 2, (int64_t[]){6, 2});
    yk_param *F = yk_model_add(m, "F", YK_F32, 2, (int64_t[]){4, 3});
    yk_param *G = yk_model_add(m, "G", YK_F64, 2, (int64_t[]){4, 2});
    /* Rank r looks up E rows {r % 6, 5}: row k gets one per rank with
     * r % 6 == k, and row 5 one more per rank. */
    int64_t idx[2] = {rank % 6, 5};
    lookup_ones(E, 2, idx, true);
    /* F: rank 0 dense, the others sparse -> dense everywhere, each rank's
     * row 1 of ones added: n at row 1. */
    lookup_ones(F, 1, (int64_t[]){1}, rank != 0);
    /* G: only rank 0 has a gradient (row 3): rows {3} everywhere. */
    if (rank == 0)
        lookup_ones(G, 1, (int64_t[]){3}, true);
    OK(yk_mpi_sync_grads(comm, m, YK_MPI_AVERAGE));

    double count[6] = {0};
    for (int q = 0; q < nranks; q++) {
        count[q % 6] += 1;
        count[5] += 1;
    }
    CHECK(yk_param_grad_kind(E) == YK_GRAD_ROWS, "E stays row-sparse");
    int64_t nr;
    const int64_t *rows;
    const yk_tensor *vals;
    OK(yk_param_grad_rows(E, &nr, &rows, &vals));
    int64_t k = 0;
    for (int r = 0; r < 6; r++) {
        if (count[r] == 0)
            continue;
        CHECK(k < nr && rows[k] == r, "row %d present", r);
        for (int j = 0; k < nr && j < 2; j++)
            CHECK(yk_tensor_get(vals, 2 * k + j) == count[r] / nranks,
                  "E row %d = %g, want %g", r, yk_tensor_get(vals, 2 * k + j),
                  count[r] / nranks);
        k++;
    }
    CHECK(k == nr, "%lld rows, want %lld", (long long)nr, (long long)k);

    CHECK(yk_param_grad_kind(F) == YK_GRAD_DENSE, "F dense everywhere");
    for (int i = 0; i < 12; i++)
        CHECK(yk_tensor_get(yk_param_grad(F), i) == (i / 3 == 1 ? 1.0 : 0.0),
              "F[%d] = %g", i, yk_tensor_get(yk_param_grad(F), i));

    CHECK(yk_param_grad_kind(G) == YK_GRAD_ROWS, "G rows everywhere");
    OK(yk_param_grad_rows(G, &nr, &rows, &vals));
    CHECK(nr == 1 && rows[0] == 3 &&
              yk_tensor_get(vals, 0) == 1.0 / nranks,
          "G row 3 = 1 / n");
    yk_model_free(m);
}

/* ---------------------------------------- the seed's extended model */

enum { L_SEQ = 10, BAG = 7 };

typedef struct seed_dims {
    int64_t V, D, D2, B;
    yk_dtype dt; /* YK_F64 in the tests (f32 is enum 0: always set it) */
} seed_dims;

typedef struct seed_model {
    yk_model *m;
    yk_param *W, *S; /* shared [V, D], bag-only [V, D2] */
    yk_optim *opt;
    yk_sharded_table *t;
} seed_model;

static seed_model seed_model_new(seed_dims d, yk_mpi *sharded_on)
{
    seed_model s = {.m = yk_model_new(ctx)};
    if (sharded_on) {
        s.t = yk_sharded_table_new(sharded_on, s.m, "W", "S", d.dt, d.V,
                                   d.D, d.D2);
        CHECK(s.t != NULL, "sharded table");
        s.W = yk_sharded_table_part(s.t, 0);
        s.S = yk_sharded_table_part(s.t, 1);
        OK(yk_sharded_table_fill_normal(s.t, 0, 10, 0, 1));
        OK(yk_sharded_table_fill_normal(s.t, 1, 11, 0, 1));
    } else {
        s.W = yk_model_add(s.m, "W", d.dt, 2, (int64_t[]){d.V, d.D});
        s.S = yk_model_add(s.m, "S", d.dt, 2, (int64_t[]){d.V, d.D2});
        yk_tensor_fill_normal(yk_param_value(s.W), 10, 0, 1);
        yk_tensor_fill_normal(yk_param_value(s.S), 11, 0, 1);
    }
    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_ADAM);
    o.lr = 0.01;
    s.opt = yk_optim_new(ctx, YK_OPTIM_ADAM, &o);
    CHECK(s.opt != NULL, "adam");
    OK(yk_optim_add_model(s.opt, s.m));
    return s;
}

static void seed_model_free(seed_model *s)
{
    yk_optim_free(s->opt);
    yk_sharded_table_free(s->t);
    yk_model_free(s->m);
}

/* The data of one step for examples [b0, b1) of a global batch of B:
 * sequences [n, 10], bags of 7 (flat) with offsets, targets. */
typedef struct seed_batch {
    yk_tensor *seq, *bags, *offsets, *t_seq, *t_bag;
} seed_batch;

static yk_tensor *rows_of(const yk_tensor *t, int64_t b0, int64_t b1)
{
    int64_t shape[YK_MAX_DIMS];
    int nd = yk_tensor_ndim(t);
    memcpy(shape, yk_tensor_shape(t), (size_t)nd * 8);
    int64_t rowlen = yk_tensor_numel(t) / shape[0];
    shape[0] = b1 - b0;
    size_t es = yk_dtype_size(yk_tensor_dtype(t));
    return yk_tensor_from(ctx, yk_tensor_dtype(t), nd, shape,
                          (char *)yk_tensor_data(t) +
                              (size_t)(b0 * rowlen) * es);
}

static seed_batch seed_batch_make(seed_dims d, int step, int64_t b0,
                                  int64_t b1)
{
    yk_tensor *seq = randint(2, (int64_t[]){d.B, L_SEQ}, 1000 + step, d.V);
    yk_tensor *bags = randint(2, (int64_t[]){d.B, BAG}, 2000 + step, d.V);
    yk_tensor *ts = randn(d.dt, 3, (int64_t[]){d.B, L_SEQ, d.D},
                          3000 + step);
    yk_tensor *tb = randn(d.dt, 2, (int64_t[]){d.B, d.D + d.D2},
                          4000 + step);
    seed_batch b = {rows_of(seq, b0, b1), rows_of(bags, b0, b1), NULL,
                    rows_of(ts, b0, b1), rows_of(tb, b0, b1)};
    int64_t n = b1 - b0;
    int64_t flat = n * BAG;
    OK(yk_tensor_fill(b.offsets = yk_tensor_zeros(ctx, YK_I64, 1, &n), 0));
    for (int64_t i = 0; i < n; i++)
        ((int64_t *)yk_tensor_data(b.offsets))[i] = i * BAG;
    /* the bags as one flat input with offsets, as the seed passes them */
    yk_tensor *fb = yk_tensor_from(ctx, YK_I64, 1, &flat,
                                   yk_tensor_data(b.bags));
    yk_tensor_free(b.bags);
    b.bags = fb;
    yk_tensor_free(seq);
    yk_tensor_free(bags);
    yk_tensor_free(ts);
    yk_tensor_free(tb);
    return b;
}

static void seed_batch_free(seed_batch *b)
{
    yk_tensor_free(b->seq);
    yk_tensor_free(b->bags);
    yk_tensor_free(b->offsets);
    yk_tensor_free(b->t_seq);
    yk_tensor_free(b->t_bag);
}

typedef enum loss_kind {
    LOSS_MEAN,        /* mean over the rank's slice; average the grads */
    LOSS_SUM_GLOBAL   /* sum / global batch; sum the grads             */
} loss_kind;

/* The loss of the seed's extended model on batch b given the embedding
 * (e) and extended bag (x) outputs. */
static yk_node *seed_loss(yk_graph *g, yk_node *e, yk_node *x,
                          const seed_batch *b, loss_kind lk, int64_t B,
                          yk_tensor **scale)
{
    if (lk == LOSS_MEAN)
        return yk_add(g, yk_mse_loss(g, e, yk_const(g, b->t_seq),
                                     YK_REDUCE_MEAN),
                      yk_mse_loss(g, x, yk_const(g, b->t_bag),
                                  YK_REDUCE_MEAN));
    /* sum-reduced terms over the whole batch's mean denominators */
    *scale = yk_tensor_full(ctx, yk_tensor_dtype(b->t_seq), 0, NULL,
                            1.0 / (double)B);
    yk_node *se = yk_mse_loss(g, e, yk_const(g, b->t_seq), YK_REDUCE_SUM);
    yk_node *sx = yk_mse_loss(g, x, yk_const(g, b->t_bag), YK_REDUCE_SUM);
    return yk_mul(g, yk_add(g, se, sx), yk_const(g, *scale));
}

/* One forward and backward of the whole-table model on b. */
static void seed_backward(seed_model *s, const seed_batch *b, bool e_sparse,
                          bool bag_sparse, loss_kind lk, int64_t B)
{
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *w = yk_param_node(g, s->W);
    yk_node *e = yk_embedding(g, yk_const(g, b->seq), w, YK_NO_PADDING,
                              false, e_sparse);
    yk_node *parts[2] = {w, yk_param_node(g, s->S)};
    yk_bag_opts o = yk_bag_defaults();
    o.sparse = bag_sparse;
    yk_node *x = yk_embedding_bag(g, yk_const(g, b->bags),
                                  yk_cat(g, 2, parts, 1),
                                  yk_const(g, b->offsets), NULL, &o);
    yk_tensor *scale = NULL;
    OK(yk_backward(g, seed_loss(g, e, x, b, lk, B, &scale)));
    yk_graph_end(g);
    yk_tensor_free(scale);
}

/* Seconds spent in the exchanges (fetch, sharded backward, sync), for the
 * bench. */
static double exchange_seconds;

/* The same over the sharded table. */
static void seed_backward_sharded(seed_model *s, const seed_batch *b,
                                  bool e_sparse, bool bag_sparse, loss_kind lk,
                                  int64_t B)
{
    const yk_tensor *ins[2] = {b->seq, b->bags};
    double t0 = MPI_Wtime();
    OK(yk_sharded_fetch(s->t, 2, ins));
    exchange_seconds += MPI_Wtime() - t0;
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *e = yk_sharded_embedding(g, s->t, b->seq, YK_NO_PADDING, false,
                                      e_sparse);
    yk_bag_opts o = yk_bag_defaults();
    o.sparse = bag_sparse;
    yk_node *x = yk_sharded_embedding_bag(g, s->t, true, b->bags, b->offsets,
                                          NULL, &o);
    yk_tensor *scale = NULL;
    OK(yk_backward(g, seed_loss(g, e, x, b, lk, B, &scale)));
    yk_graph_end(g);
    yk_tensor_free(scale);
    t0 = MPI_Wtime();
    OK(yk_sharded_backward(s->t, lk == LOSS_MEAN ? YK_MPI_AVERAGE
                                                 : YK_MPI_SUM));
    exchange_seconds += MPI_Wtime() - t0;
}

typedef struct grad_mode {
    const char *name;
    bool e_sparse, bag_sparse;
    yk_grad_kind w_kind, s_kind;
} grad_mode;

static const grad_mode modes[] = {
    {"all sparse", true, true, YK_GRAD_ROWS, YK_GRAD_ROWS},
    {"dense embedding, sparse bag", false, true, YK_GRAD_DENSE, YK_GRAD_ROWS},
    {"all dense", false, false, YK_GRAD_DENSE, YK_GRAD_DENSE},
};

/* 20 Adam steps: n ranks with a slice of the batch each against one rank
 * with the whole batch (computed here, on every rank, with no MPI). */
static void test_data_parallel_equivalence(const grad_mode *mode,
                                           loss_kind lk)
{
    seed_dims d = {.V = 1000, .D = 128, .D2 = 16, .B = 8, .dt = YK_F64};
    if (lk == LOSS_MEAN && d.B % nranks) {
        printf("[rank %d] skipped: mean losses need %lld %% ranks == 0\n",
               rank, (long long)d.B);
        return;
    }
    seed_model dp = seed_model_new(d, NULL), ref = seed_model_new(d, NULL);
    /* Rank 0's start everywhere (here they start equal anyway). */
    OK(yk_mpi_broadcast_model(comm, dp.m));
    int64_t b0, b1;
    yk_mpi_split(comm, d.B, &b0, &b1);
    bool kinds_ok = true;
    for (int step = 0; step < 20; step++) {
        seed_batch mine = seed_batch_make(d, step, b0, b1);
        seed_batch all = seed_batch_make(d, step, 0, d.B);
        yk_model_zero_grad(dp.m);
        seed_backward(&dp, &mine, mode->e_sparse, mode->bag_sparse, lk, d.B);
        OK(yk_mpi_sync_grads(comm, dp.m, lk == LOSS_MEAN ? YK_MPI_AVERAGE
                                                          : YK_MPI_SUM));
        kinds_ok &= yk_param_grad_kind(dp.W) == mode->w_kind &&
                    yk_param_grad_kind(dp.S) == mode->s_kind;
        OK(yk_optim_step(dp.opt));
        yk_model_zero_grad(ref.m);
        seed_backward(&ref, &all, mode->e_sparse, mode->bag_sparse, lk, d.B);
        OK(yk_optim_step(ref.opt));
        seed_batch_free(&mine);
        seed_batch_free(&all);
    }
    CHECK(kinds_ok, "%s: gradient kinds", mode->name);
    double dw = rel_diff(yk_param_value(dp.W), yk_param_value(ref.W));
    double ds = rel_diff(yk_param_value(dp.S), yk_param_value(ref.S));
    CHECK(dw <= 1e-12 && ds <= 1e-12, "%s, %s: W differs by %.3g, S by "
          "%.3g (relative)", mode->name, lk == LOSS_MEAN ? "mean" : "sum",
          dw, ds);
    if (verbose && rank == 0)
        printf("data parallel, %s, %s losses: after 20 steps W differs by "
               "%.3g, S by %.3g (relative)\n", mode->name,
               lk == LOSS_MEAN ? "mean" : "sum", dw, ds);
    /* Optimizer states equal on every rank without ever being sent. */
    OK(yk_mpi_check_replicas(comm, dp.m, dp.opt));
    seed_model_free(&dp);
    seed_model_free(&ref);
}

static void test_check_replicas(void)
{
    seed_dims d = {.V = 50, .D = 4, .D2 = 2, .B = 4, .dt = YK_F64};
    seed_model s = seed_model_new(d, NULL);
    OK(yk_mpi_check_replicas(comm, s.m, s.opt));
    if (nranks > 1) {
        if (rank == 1)
            ((double *)yk_tensor_data(yk_param_value(s.S)))[3] += 1e-9;
        EXPECT_ERROR(yk_mpi_check_replicas(comm, s.m, s.opt), YK_ESTATE,
                     "value of parameter \"S\"", "rank 1");
    }
    seed_model_free(&s);
}

/* ------------------------------------------------------ sharded tables */

enum { TV = 37, TD = 4, TD2 = 3 };

/* One lookup configuration over a [37, 4] table with 3 extra columns. */
typedef struct lookup_case {
    const char *name;
    bool bag, with_extra, psw;
    yk_bag_mode mode;
    int64_t padding;
    bool sgbf, sparse, last_offset, two_d;
} lookup_case;

static const lookup_case cases[] = {
    {"embedding", false, false, false, 0, YK_NO_PADDING, false, false, false,
     false},
    {"embedding sparse", false, false, false, 0, YK_NO_PADDING, false, true,
     false, false},
    {"embedding padding 3, by freq", false, false, false, 0, 3, true, false,
     false, false},
    {"embedding padding -2, sparse", false, false, false, 0, -2, false, true,
     false, false},
    {"bag mean", true, false, false, YK_BAG_MEAN, YK_NO_PADDING, false, false,
     false, false},
    {"bag mean extra sparse", true, true, false, YK_BAG_MEAN, YK_NO_PADDING,
     false, true, false, false},
    {"bag sum extra psw", true, true, true, YK_BAG_SUM, YK_NO_PADDING, false,
     false, false, false},
    {"bag sum padding 5 by freq sparse", true, false, false, YK_BAG_SUM, 5,
     true, true, false, false},
    {"bag max extra", true, true, false, YK_BAG_MAX, YK_NO_PADDING, false,
     false, false, false},
    {"bag max include_last_offset", true, false, false, YK_BAG_MAX,
     YK_NO_PADDING, false, false, true, false},
    {"bag mean 2-D padding 5", true, true, false, YK_BAG_MEAN, 5, false,
     false, false, true},
};

/* Rank q's inputs of a case: (3, 5) indices for the embedding; for a bag,
 * 12 indices in bags [0, 4), [4, 4) (empty), [4, 9), [9, 12) -- or a
 * (4, 3) input without offsets. Some indices are forced to 3 and 5 so
 * that the padding rows are looked up. */
typedef struct lookup_data {
    yk_tensor *input, *offsets, *psw, *seed;
} lookup_data;

static lookup_data lookup_data_make(const lookup_case *lc, int q)
{
    lookup_data ld = {0};
    if (!lc->bag) {
        ld.input = randint(2, (int64_t[]){3, 5}, 50 + q, TV);
    } else if (lc->two_d) {
        ld.input = randint(2, (int64_t[]){4, 3}, 60 + q, TV);
    } else {
        ld.input = randint(1, (int64_t[]){12}, 60 + q, TV);
        int64_t off[5] = {0, 4, 4, 9, 12};
        ld.offsets = yk_tensor_from(ctx, YK_I64, 1,
                                    (int64_t[]){lc->last_offset ? 5 : 4},
                                    off);
    }
    int64_t *v = yk_tensor_data(ld.input);
    v[1] = 3;
    v[2] = 5;
    v[7] = 35; /* row 35 is -2 */
    if (lc->psw)
        ld.psw = randn(YK_F64, 1, (int64_t[]){12}, 70 + q);
    int64_t out_rows = !lc->bag ? 15 : 4;
    int64_t cols = TD + (lc->with_extra ? TD2 : 0);
    ld.seed = lc->bag ? randn(YK_F64, 2, (int64_t[]){out_rows, cols}, 80 + q)
                      : randn(YK_F64, 3, (int64_t[]){3, 5, cols}, 80 + q);
    return ld;
}

static void lookup_data_free(lookup_data *ld)
{
    yk_tensor_free(ld->input);
    yk_tensor_free(ld->offsets);
    yk_tensor_free(ld->psw);
    yk_tensor_free(ld->seed);
}

static yk_bag_opts bag_opts(const lookup_case *lc)
{
    yk_bag_opts o = yk_bag_defaults();
    o.mode = lc->mode;
    o.padding_idx = lc->padding;
    o.scale_grad_by_freq = lc->sgbf;
    o.sparse = lc->sparse;
    o.include_last_offset = lc->last_offset;
    return o;
}

/* The lookup over the whole table (W, S) in g. */
static yk_node *whole_lookup(yk_graph *g, const lookup_case *lc, yk_param *W,
                             yk_param *S, const lookup_data *ld,
                             yk_node **psw)
{
    yk_node *w = yk_param_node(g, W);
    if (!lc->bag)
        return yk_embedding(g, yk_const(g, ld->input), w, lc->padding,
                            lc->sgbf, lc->sparse);
    if (lc->with_extra) {
        yk_node *parts[2] = {w, yk_param_node(g, S)};
        w = yk_cat(g, 2, parts, 1);
    }
    yk_bag_opts o = bag_opts(lc);
    *psw = NULL;
    if (ld->psw) {
        yk_model *pm = yk_param_model(W);
        yk_param *pp = yk_model_find(pm, "psw");
        yk_tensor_copy(yk_param_value(pp), ld->psw);
        *psw = yk_param_node(g, pp);
    }
    return yk_embedding_bag(g, yk_const(g, ld->input), w,
                            ld->offsets ? yk_const(g, ld->offsets) : NULL,
                            *psw, &o);
}

/* Compares this rank's shard of part p's gradient with rows of the whole
 * table's gradient (ref, of the sum of every rank's loss). */
static void compare_shard_grad(const lookup_case *lc, yk_sharded_table *t,
                               int p, yk_param *ref)
{
    yk_param *shard = yk_sharded_table_part(t, p);
    yk_grad_kind want = yk_param_grad_kind(ref);
    CHECK(yk_param_grad_kind(shard) == want, "%s part %d: kind %d, want %d",
          lc->name, p, yk_param_grad_kind(shard), want);
    yk_tensor *gs = grad_dense(shard), *gr = grad_dense(ref);
    double worst = 0;
    for (int64_t i = 0; i < yk_tensor_dim(gs, 0); i++)
        worst = fmax(worst, row_rel_diff(gs, i, gr,
                                         yk_sharded_table_global_row(t, i)));
    CHECK(worst <= 1e-13, "%s part %d: gradient differs by %.3g", lc->name,
          p, worst);
    if (want == YK_GRAD_ROWS) { /* the same rows, zero-valued ones too */
        int64_t ns, nr;
        const int64_t *rs, *rr;
        const yk_tensor *vs, *vr;
        OK(yk_param_grad_rows(shard, &ns, &rs, &vs));
        OK(yk_param_grad_rows(ref, &nr, &rr, &vr));
        int64_t k = 0;
        bool same = true;
        for (int64_t i = 0; i < nr; i++) {
            if (yk_sharded_table_owner(t, rr[i]) != rank)
                continue;
            same &= k < ns && yk_sharded_table_global_row(t, rs[k]) == rr[i];
            k++;
        }
        CHECK(same && k == ns, "%s part %d: row sets", lc->name, p);
    }
    yk_tensor_free(gs);
    yk_tensor_free(gr);
}

static void test_sharded_case(const lookup_case *lc)
{
    yk_model *ms = yk_model_new(ctx), *mw = yk_model_new(ctx);
    yk_sharded_table *t = yk_sharded_table_new(comm, ms, "W", "S", YK_F64,
                                               TV, TD, TD2);
    CHECK(t != NULL, "table");
    OK(yk_sharded_table_fill_normal(t, 0, 5, 0, 1));
    OK(yk_sharded_table_fill_normal(t, 1, 6, 0, 1));
    yk_param *W = yk_model_add(mw, "W", YK_F64, 2, (int64_t[]){TV, TD});
    yk_param *S = yk_model_add(mw, "S", YK_F64, 2, (int64_t[]){TV, TD2});
    yk_model_add(mw, "psw", YK_F64, 1, (int64_t[]){12});
    yk_tensor_fill_normal(yk_param_value(W), 5, 0, 1);
    yk_tensor_fill_normal(yk_param_value(S), 6, 0, 1);

    /* Sharded: this rank's lookup, seeded backward, rows to owners. */
    lookup_data mine = lookup_data_make(lc, rank);
    OK(yk_sharded_fetch(t, 1, (const yk_tensor *[]){mine.input}));
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *psw = mine.psw ? yk_const(g, mine.psw) : NULL;
    yk_model *pm = yk_model_new(ctx);
    if (mine.psw) { /* a per_sample_weights that wants its gradient */
        yk_param *pp = yk_model_add(pm, "psw", YK_F64, 1, (int64_t[]){12});
        yk_tensor_copy(yk_param_value(pp), mine.psw);
        psw = yk_param_node(g, pp);
    }
    yk_bag_opts o = bag_opts(lc);
    yk_node *out = lc->bag
        ? yk_sharded_embedding_bag(g, t, lc->with_extra, mine.input,
                                   mine.offsets, psw, &o)
        : yk_sharded_embedding(g, t, mine.input, lc->padding, lc->sgbf,
                               lc->sparse);
    CHECK(out != NULL, "%s: sharded lookup", lc->name);
    OK(yk_backward_seeded(g, 1, (yk_node *[]){out},
                          (const yk_tensor *[]){mine.seed}));
    /* The whole table, this rank's input: the same values (the same rows
     * read in the same order: the same bits). */
    yk_graph *gw = yk_graph_begin(ctx);
    yk_node *wpsw;
    yk_node *wout = whole_lookup(gw, lc, W, S, &mine, &wpsw);
    CHECK(yk_value(out) && yk_value(wout) &&
              rel_diff(yk_value(out), yk_value(wout)) == 0,
          "%s: values", lc->name);
    OK(yk_backward_seeded(gw, 1, (yk_node *[]){wout},
                          (const yk_tensor *[]){mine.seed}));
    if (psw)
        CHECK(rel_diff(yk_node_grad(psw), yk_node_grad(wpsw)) <= 1e-14,
              "%s: per_sample_weights gradient", lc->name);
    yk_graph_end(gw);
    yk_graph_end(g);
    OK(yk_sharded_backward(t, YK_MPI_SUM));

    /* Reference gradient: every rank's lookup over the whole table. */
    yk_model_zero_grad(mw);
    for (int q = 0; q < nranks; q++) {
        lookup_data theirs = lookup_data_make(lc, q);
        gw = yk_graph_begin(ctx);
        wout = whole_lookup(gw, lc, W, S, &theirs, &wpsw);
        OK(yk_backward_seeded(gw, 1, (yk_node *[]){wout},
                              (const yk_tensor *[]){theirs.seed}));
        yk_graph_end(gw);
        lookup_data_free(&theirs);
    }
    compare_shard_grad(lc, t, 0, W);
    if (lc->with_extra)
        compare_shard_grad(lc, t, 1, S);
    else
        CHECK(yk_param_grad_kind(yk_sharded_table_part(t, 1)) ==
                  YK_GRAD_NONE, "%s: extra columns untouched", lc->name);
    lookup_data_free(&mine);
    yk_model_free(pm);
    yk_sharded_table_free(t);
    yk_model_free(ms);
    yk_model_free(mw);
}

static void test_sharded_layout(void)
{
    yk_model *m = yk_model_new(ctx);
    yk_sharded_table *t = yk_sharded_table_new(comm, m, "W", NULL, YK_F32,
                                               TV, TD, 0);
    /* 37 rows over n ranks: rank r holds r, r + n, ... */
    int64_t rows = 0;
    for (int64_t r = rank; r < TV; r += nranks)
        rows++;
    CHECK(yk_tensor_dim(yk_param_value(yk_sharded_table_part(t, 0)), 0) ==
              rows, "local rows");
    CHECK(yk_sharded_table_part(t, 1) == NULL, "no extra part");
    CHECK(yk_sharded_table_owner(t, 36) == 36 % nranks &&
              yk_sharded_table_local_row(t, 36) == 36 / nranks &&
              yk_sharded_table_global_row(t, 1) == rank + nranks &&
              yk_sharded_table_owner(t, 37) == -1,
          "row mapping");
    /* The shard of a seeded fill is the whole table's rows, bit for bit. */
    OK(yk_sharded_table_fill_normal(t, 0, 9, 0.5, 2));
    yk_tensor *whole = yk_tensor_zeros(ctx, YK_F32, 2, (int64_t[]){TV, TD});
    yk_tensor_fill_normal(whole, 9, 0.5, 2);
    yk_tensor *shard = yk_param_value(yk_sharded_table_part(t, 0));
    bool same = true;
    for (int64_t i = 0; i < rows; i++)
        same &= !memcmp((float *)yk_tensor_data(shard) + i * TD,
                        (float *)yk_tensor_data(whole) + (rank + i * nranks) * TD,
                        TD * sizeof(float));
    CHECK(same, "fill_normal of a shard = rows of the whole fill");
    /* scatter copies the same rows out of a whole table */
    yk_tensor_fill(shard, 0);
    OK(yk_sharded_table_scatter(t, 0, whole));
    same = true;
    for (int64_t i = 0; i < rows; i++)
        same &= !memcmp((float *)yk_tensor_data(shard) + i * TD,
                        (float *)yk_tensor_data(whole) + (rank + i * nranks) * TD,
                        TD * sizeof(float));
    CHECK(same, "scatter");
    EXPECT_ERROR(yk_sharded_table_scatter(t, 1, whole), YK_EINVAL,
                 "yk_sharded_table_scatter", "part = 1");
    EXPECT_ERROR(yk_sharded_table_fill_normal(t, 0, 1, 0, -1), YK_EINVAL,
                 "yk_sharded_table_fill_normal", "std = -1");
    yk_tensor *wrong = yk_tensor_zeros(ctx, YK_F32, 2, (int64_t[]){TV, 5});
    EXPECT_ERROR(yk_sharded_table_scatter(t, 0, wrong), YK_ESHAPE,
                 "yk_sharded_table_scatter", "[37, 4]");
    yk_tensor_free(wrong);
    yk_tensor_free(whole);
    yk_sharded_table_free(t);
    yk_model_free(m);
}

static void test_sharded_errors(void)
{
    yk_model *m = yk_model_new(ctx);
    yk_sharded_table *t = yk_sharded_table_new(comm, m, "W", NULL, YK_F64,
                                               TV, TD, 0);
    /* Arguments every rank gets wrong alike. */
    CHECK(yk_sharded_table_new(comm, m, "W", NULL, YK_F64, TV, TD, 0) ==
              NULL, "duplicate name");
    EXPECT_ERROR(yk_last_status(ctx), YK_EINVAL, "yk_sharded_table_new",
                 "\"W\"");
    CHECK(yk_sharded_table_new(comm, m, "X", NULL, YK_I64, TV, TD, 0) ==
              NULL, "i64 table");
    EXPECT_ERROR(yk_last_status(ctx), YK_EDTYPE, "yk_sharded_table_new",
                 "i64");
    CHECK(yk_sharded_table_new(comm, m, "X", NULL, YK_F64, 0, TD, 0) == NULL,
          "V = 0");
    EXPECT_ERROR(yk_last_status(ctx), YK_EINVAL, "V = 0");
    CHECK(yk_sharded_table_new(comm, m, "X", NULL, YK_F64, TV, TD, 2) ==
              NULL, "D2 without extra");
    EXPECT_ERROR(yk_last_status(ctx), YK_EINVAL, "D2 = 2");
    if (nranks > 1) { /* rank 1 asks for another size: all refuse */
        CHECK(yk_sharded_table_new(comm, m, "X", NULL, YK_F64,
                                   rank == 1 ? TV + 1 : TV, TD, 0) == NULL,
              "sizes differ");
        EXPECT_ERROR(yk_last_status(ctx), YK_EINVAL, "yk_sharded_table_new",
                     "rank 1");
    }
    /* Lookups before any fetch; backward without a fetch. */
    yk_tensor *in = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){3},
                                   (int64_t[]){1, 2, 3});
    yk_graph *g = yk_graph_begin(ctx);
    CHECK(!yk_sharded_embedding(g, t, in, YK_NO_PADDING, false, false),
          "no fetch");
    EXPECT_ERROR(yk_graph_status(g), YK_ESTATE, "yk_sharded_embedding",
                 "yk_sharded_fetch");
    yk_graph_end(g);
    EXPECT_ERROR(yk_sharded_backward(t, YK_MPI_SUM), YK_ESTATE,
                 "yk_sharded_backward", "fetch");

    /* An out-of-range index on rank 0: it names it, the others name
     * rank 0; nobody hangs. */
    yk_tensor *bad = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){3},
                                    (int64_t[]){1, rank == 0 ? 99 : 2, 3});
    yk_status s = yk_sharded_fetch(t, 1, (const yk_tensor *[]){bad});
    if (rank == 0)
        EXPECT_ERROR(s, YK_ERANGE, "yk_sharded_fetch", "inputs[0][1] = 99",
                     "37 rows");
    else
        EXPECT_ERROR(s, YK_ESTATE, "yk_sharded_fetch", "rank 0 failed");
    yk_tensor *f32 = yk_tensor_zeros(ctx, YK_F32, 1, (int64_t[]){2});
    EXPECT_ERROR(yk_sharded_fetch(t, 1, (const yk_tensor *[]){f32}),
                 YK_EDTYPE, "inputs[0] is f32");
    yk_tensor_free(f32);

    /* Fetched {1, 2, 3}: 4 was not; padding_idx out of range; extra
     * columns the table does not have. */
    OK(yk_sharded_fetch(t, 1, (const yk_tensor *[]){in}));
    yk_tensor *other = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){2},
                                      (int64_t[]){3, 4});
    g = yk_graph_begin(ctx);
    CHECK(!yk_sharded_embedding(g, t, other, YK_NO_PADDING, false, false),
          "unfetched");
    EXPECT_ERROR(yk_graph_status(g), YK_EINVAL, "input[1] = 4",
                 "not fetched");
    yk_graph_end(g);
    g = yk_graph_begin(ctx);
    CHECK(!yk_sharded_embedding(g, t, in, 37, false, false), "padding");
    EXPECT_ERROR(yk_graph_status(g), YK_EINVAL, "padding_idx = 37");
    yk_graph_end(g);
    g = yk_graph_begin(ctx);
    CHECK(!yk_sharded_embedding_bag(g, t, true, in, NULL, NULL, NULL),
          "with_extra");
    EXPECT_ERROR(yk_graph_status(g), YK_EINVAL, "yk_sharded_embedding_bag",
                 "with_extra");
    yk_graph_end(g);
    /* A step, then a second backward of the same fetch is refused. */
    g = yk_graph_begin(ctx);
    yk_node *e = yk_sharded_embedding(g, t, in, YK_NO_PADDING, false, true);
    OK(yk_backward(g, yk_sum(g, e, 0, NULL, false)));
    yk_graph_end(g);
    OK(yk_sharded_backward(t, YK_MPI_SUM));
    EXPECT_ERROR(yk_sharded_backward(t, YK_MPI_SUM), YK_ESTATE,
                 "already sent");
    EXPECT_ERROR(yk_sharded_backward(NULL, YK_MPI_SUM), YK_EINVAL, "");
    yk_tensor_free(in);
    yk_tensor_free(other);
    yk_tensor_free(bad);
    yk_sharded_table_free(t);
    yk_model_free(m);
}

/* 10 Adam steps of the seed's extended model with its table sharded and
 * the batch split, against one rank with the whole table and batch. */
static void test_sharded_equivalence(const grad_mode *mode, loss_kind lk)
{
    seed_dims d = {.V = 200, .D = 16, .D2 = 4, .B = 6, .dt = YK_F64};
    if (lk == LOSS_MEAN && d.B % nranks) {
        printf("[rank %d] skipped: mean losses need %lld %% ranks == 0\n",
               rank, (long long)d.B);
        return;
    }
    seed_model sh = seed_model_new(d, comm), ref = seed_model_new(d, NULL);
    int64_t b0, b1;
    yk_mpi_split(comm, d.B, &b0, &b1);
    for (int step = 0; step < 10; step++) {
        seed_batch mine = seed_batch_make(d, step, b0, b1);
        seed_batch all = seed_batch_make(d, step, 0, d.B);
        yk_model_zero_grad(sh.m);
        seed_backward_sharded(&sh, &mine, mode->e_sparse, mode->bag_sparse,
                              lk, d.B);
        OK(yk_mpi_sync_grads(comm, sh.m, YK_MPI_SUM)); /* nothing else */
        OK(yk_optim_step(sh.opt));
        yk_model_zero_grad(ref.m);
        seed_backward(&ref, &all, mode->e_sparse, mode->bag_sparse, lk, d.B);
        OK(yk_optim_step(ref.opt));
        seed_batch_free(&mine);
        seed_batch_free(&all);
    }
    double worst = 0;
    for (int p = 0; p < 2; p++) {
        yk_tensor *s = yk_param_value(yk_sharded_table_part(sh.t, p));
        yk_tensor *r = yk_param_value(p ? ref.S : ref.W);
        for (int64_t i = 0; i < yk_tensor_dim(s, 0); i++)
            worst = fmax(worst, row_rel_diff(
                                    s, i, r,
                                    yk_sharded_table_global_row(sh.t, i)));
    }
    CHECK(worst <= 1e-12, "sharded %s, %s: rows differ by %.3g", mode->name,
          lk == LOSS_MEAN ? "mean" : "sum", worst);
    if (verbose && rank == 0)
        printf("sharded, %s, %s losses: after 10 steps rows differ by %.3g "
               "(relative)\n", mode->name, lk == LOSS_MEAN ? "mean" : "sum",
               worst);
    seed_model_free(&sh);
    seed_model_free(&ref);
}

/* ---------------------------------------------------------- checkpoints */

static char tmpdir[256];

/* A sharded seed model over communicator `on` plus a replicated "b", Adam,
 * two steps taken so that every parameter has optimizer state. */
static seed_model ckpt_model(yk_mpi *on, bool train)
{
    seed_dims d = {.V = TV, .D = TD, .D2 = TD2, .B = 4, .dt = YK_F64};
    seed_model s = {.m = yk_model_new(ctx)};
    s.t = yk_sharded_table_new(on, s.m, "W", "S", YK_F64, d.V, d.D, d.D2);
    s.W = yk_sharded_table_part(s.t, 0);
    s.S = yk_sharded_table_part(s.t, 1);
    yk_param *b = yk_model_add(s.m, "b", YK_F64, 1, (int64_t[]){3});
    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_ADAM);
    s.opt = yk_optim_new(ctx, YK_OPTIM_ADAM, &o);
    OK(yk_optim_add_model(s.opt, s.m));
    if (!train)
        return s;
    OK(yk_sharded_table_fill_normal(s.t, 0, 20, 0, 1));
    OK(yk_sharded_table_fill_normal(s.t, 1, 21, 0, 1));
    yk_tensor_fill_normal(yk_param_value(b), 22, 0, 1);
    int64_t b0, b1;
    yk_mpi_split(on, d.B, &b0, &b1);
    yk_tensor *c = randn(YK_F64, 1, (int64_t[]){3}, 23);
    for (int step = 0; step < 2; step++) {
        seed_batch mine = seed_batch_make(d, step, b0, b1);
        yk_model_zero_grad(s.m);
        seed_backward_sharded(&s, &mine, true, true, LOSS_SUM_GLOBAL, d.B);
        backward_weighted(b, c);
        OK(yk_mpi_sync_grads(on, s.m, YK_MPI_AVERAGE));
        OK(yk_optim_step(s.opt));
        seed_batch_free(&mine);
    }
    yk_tensor_free(c);
    return s;
}

/* Row i of a's parameter (or state) equals row r of b's, bit for bit. */
static bool rows_equal(const yk_tensor *a, int64_t i, const yk_tensor *b,
                       int64_t r)
{
    if (!a || !b)
        return false;
    size_t rb = yk_tensor_nbytes(a) / (size_t)yk_tensor_dim(a, 0);
    return !memcmp((char *)yk_tensor_data(a) + (size_t)i * rb,
                   (char *)yk_tensor_data(b) + (size_t)r * rb, rb);
}

static yk_tensor *state_of(yk_optim *opt, yk_param *p, const char *name)
{
    yk_tensor *st = NULL;
    yk_optim_state(opt, p, name, &st);
    return st;
}

/* Every row this rank holds in a's table equals the same global row of
 * b's (which holds it: the same layout, or the whole table on one rank),
 * values and Adam state; the replicated b and the step counts too. */
static void compare_models(const char *what, seed_model *a, seed_model *b)
{
    static const char *states[2] = {"exp_avg", "exp_avg_sq"};
    bool same = true;
    for (int p = 0; p < 2; p++) {
        yk_param *pa = yk_sharded_table_part(a->t, p);
        yk_param *pb = yk_sharded_table_part(b->t, p);
        for (int64_t i = 0; i < yk_tensor_dim(yk_param_value(pa), 0); i++) {
            int64_t r = yk_sharded_table_global_row(a->t, i);
            int64_t j = yk_sharded_table_local_row(b->t, r);
            same &= j >= 0; /* b holds row r: same layout, or whole */
            if (j < 0)
                continue;
            same &= rows_equal(yk_param_value(pa), i, yk_param_value(pb), j);
            for (int k = 0; k < 2; k++)
                same &= rows_equal(state_of(a->opt, pa, states[k]), i,
                                   state_of(b->opt, pb, states[k]), j);
        }
        same &= yk_optim_step_count(a->opt, pa) == 2 &&
                yk_optim_step_count(b->opt, pb) == 2;
    }
    yk_param *ba = yk_model_find(a->m, "b"), *bb = yk_model_find(b->m, "b");
    same &= !memcmp(yk_tensor_data(yk_param_value(ba)),
                    yk_tensor_data(yk_param_value(bb)), 24);
    same &= rows_equal(state_of(a->opt, ba, "exp_avg_sq"), 0,
                       state_of(b->opt, bb, "exp_avg_sq"), 0) &&
            rows_equal(state_of(a->opt, ba, "exp_avg_sq"), 2,
                       state_of(b->opt, bb, "exp_avg_sq"), 2);
    same &= yk_optim_step_count(b->opt, bb) == 2;
    CHECK(same, "%s: the loaded rows, states and steps", what);
}

static char *path_in_tmp(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void test_checkpoints(void)
{
    yk_mpi *self = yk_mpi_new(ctx, MPI_COMM_SELF);
    seed_model trained = ckpt_model(comm, true);
    OK(yk_mpi_save(comm, trained.m, trained.opt, path_in_tmp("ck"),
                   &(yk_save_opts){.step = 42, .config = "{\"x\": 1}"}));
    char name[64];
    snprintf(name, sizeof name, "ck.rank%d-of-%d.safetensors", rank, nranks);
    CHECK(access(path_in_tmp(name), R_OK) == 0, "rank file %s", name);
    CHECK(access(path_in_tmp("ck.index.json"), R_OK) == 0, "index");

    /* n ranks -> n ranks */
    seed_model same = ckpt_model(comm, false);
    int64_t step = 0;
    OK(yk_mpi_load(comm, same.m, same.opt, path_in_tmp("ck"), &step));
    CHECK(step == 42, "step %lld", (long long)step);
    compare_models("n -> n", &trained, &same);

    /* n ranks -> 1 rank: every process loads the whole table alone. */
    seed_model one = ckpt_model(self, false);
    OK(yk_mpi_load(self, one.m, one.opt, path_in_tmp("ck"), NULL));
    compare_models("n -> 1", &trained, &one);
    yk_tensor *w1 = yk_param_value(one.W);
    CHECK(same_bits_everywhere(yk_tensor_data(w1), yk_tensor_nbytes(w1)),
          "every process loaded the same whole table");

    /* 1 rank -> n ranks: rank 0 saves the whole table, all load it. */
    if (rank == 0)
        OK(yk_mpi_save(self, one.m, one.opt, path_in_tmp("one"), NULL));
    MPI_Barrier(MPI_COMM_WORLD);
    seed_model back = ckpt_model(comm, false);
    OK(yk_mpi_load(comm, back.m, back.opt, path_in_tmp("one"), &step));
    CHECK(step == 0, "no step saved: 0");
    compare_models("1 -> n", &back, &one);

    /* Errors, on every rank alike. */
    EXPECT_ERROR(yk_mpi_load(comm, back.m, back.opt, path_in_tmp("none"),
                             NULL),
                 YK_EIO, "yk_mpi_load", "none.index.json");
    yk_model *plain = yk_model_new(ctx); /* "W" not sharded here */
    yk_model_add(plain, "W", YK_F64, 2, (int64_t[]){TV, TD});
    EXPECT_ERROR(yk_mpi_load(comm, plain, NULL, path_in_tmp("ck"), NULL),
                 YK_EFORMAT, "\"W\"", "not sharded here");
    yk_model_free(plain);
    yk_model *fewer = yk_model_new(ctx); /* no "b": unexpected in file 0 */
    yk_sharded_table *ft = yk_sharded_table_new(comm, fewer, "W", "S",
                                                YK_F64, TV, TD, TD2);
    /* (every rank reads file 0, so every rank finds it) */
    EXPECT_ERROR(yk_mpi_load(comm, fewer, NULL, path_in_tmp("ck"), NULL),
                 YK_EFORMAT, "unexpected tensor \"b\"", "rank0-of-");
    yk_sharded_table_free(ft);
    yk_model_free(fewer);
    EXPECT_ERROR(yk_mpi_save(comm, trained.m, NULL, path_in_tmp("x"),
                             &(yk_save_opts){.n_extra = 1}),
                 YK_EINVAL, "yk_mpi_save", "n_extra = 1");

    seed_model_free(&trained);
    seed_model_free(&same);
    seed_model_free(&back);
    seed_model_free(&one);
    yk_mpi_free(self);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        for (int k = 0; k < nranks; k++) {
            snprintf(name, sizeof name, "ck.rank%d-of-%d.safetensors", k,
                     nranks);
            unlink(path_in_tmp(name));
        }
        unlink(path_in_tmp("ck.index.json"));
        unlink(path_in_tmp("one.rank0-of-1.safetensors"));
        unlink(path_in_tmp("one.index.json"));
        rmdir(tmpdir);
    }
}

/* ---------------------------------------------------------------- bench */

typedef enum bench_kind { B_DENSE, B_SPARSE, B_SHARDED } bench_kind;

static void bench_one(bench_kind kind, int64_t B, int steps, int64_t V)
{
    static const char *names[3] = {"data parallel, dense grads",
                                   "data parallel, sparse grads",
                                   "row-sharded table, sparse"};
    seed_dims d = {.V = V, .D = 128, .D2 = 16, .B = B, .dt = YK_F32};
    seed_model s = seed_model_new(d, kind == B_SHARDED ? comm : NULL);
    bool sparse = kind != B_DENSE;
    int64_t b0, b1;
    yk_mpi_split(comm, d.B, &b0, &b1);
    enum { N_BATCHES = 4 }; /* made before the clock starts, then reused */
    seed_batch mine[N_BATCHES];
    for (int i = 0; i < N_BATCHES; i++)
        mine[i] = seed_batch_make(d, i, b0, b1);
    double t0 = 0;
    for (int step = -3; step < steps; step++) { /* 3 warm-up steps */
        if (step == 0) {
            MPI_Barrier(MPI_COMM_WORLD);
            yk_mpi_reset_stats(comm);
            t0 = MPI_Wtime();
            exchange_seconds = 0;
        }
        const seed_batch *b = &mine[(step + 3) % N_BATCHES];
        yk_model_zero_grad(s.m);
        if (kind == B_SHARDED)
            seed_backward_sharded(&s, b, sparse, sparse, LOSS_SUM_GLOBAL, d.B);
        else
            seed_backward(&s, b, sparse, sparse, LOSS_SUM_GLOBAL, d.B);
        double t1 = MPI_Wtime();
        OK(yk_mpi_sync_grads(comm, s.m, YK_MPI_SUM));
        exchange_seconds += MPI_Wtime() - t1;
        OK(yk_optim_step(s.opt));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    double dt = MPI_Wtime() - t0;
    uint64_t sent = yk_mpi_get_stats(comm).bytes_sent, total_sent = 0;
    uint64_t calls = yk_mpi_get_stats(comm).collectives;
    MPI_Allreduce(&sent, &total_sent, 1, MPI_UINT64_T, MPI_SUM,
                  MPI_COMM_WORLD);
    if (rank == 0)
        printf("%-28s V %7lld ranks %d batch %5lld %9.1f examples/s %7.2f "
               "ms/step (exchange %6.2f) %9.0f bytes sent/step/rank, %.0f "
               "collectives/step\n",
               names[kind], (long long)V, nranks, (long long)B,
               (double)B * steps / dt, 1e3 * dt / steps,
               1e3 * exchange_seconds / steps,
               (double)total_sent / steps / nranks, (double)calls / steps);
    for (int i = 0; i < N_BATCHES; i++)
        seed_batch_free(&mine[i]);
    seed_model_free(&s);
}

/* The seed's extended model (f32, V 1000, D 128 + 16) with Adam, a global
 * batch of B examples (a sequence of 10 and a bag of 7 each) split over
 * the ranks; the wall time of `steps` steps after 3 warm-up steps. */
static void bench(int64_t B, int steps, int64_t V)
{
    bench_one(B_DENSE, B, steps, V);
    bench_one(B_SPARSE, B, steps, V);
    bench_one(B_SHARDED, B, steps, V);
}

/* ----------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    if (yk_mpi_init(&argc, &argv) != YK_OK) {
        fprintf(stderr, "test_mpi: MPI did not start\n");
        return 1;
    }
    ctx = yk_ctx_new();
    comm = yk_mpi_new(ctx, MPI_COMM_WORLD);
    if (!comm) {
        fprintf(stderr, "test_mpi: %s\n", yk_last_error(ctx));
        return 1;
    }
    rank = yk_mpi_rank(comm);
    nranks = yk_mpi_size(comm);
    bool do_bench = argc > 1 && !strcmp(argv[1], "--bench");
    verbose = argc > 1 && !strcmp(argv[1], "--verbose");
    if (do_bench) {
        int64_t B = argc > 2 ? atoll(argv[2]) : 512;
        int steps = argc > 3 ? atoi(argv[3]) : 20;
        int64_t V = argc > 4 ? atoll(argv[4]) : 1000;
        bench(B, steps, V);
    } else {
        if (rank == 0) {
            snprintf(tmpdir, sizeof tmpdir, "/tmp/test_mpi.XXXXXX");
            if (!mkdtemp(tmpdir))
                tmpdir[0] = '\0';
        }
        MPI_Bcast(tmpdir, sizeof tmpdir, MPI_CHAR, 0, MPI_COMM_WORLD);
        test_basics();
        test_broadcast();
        test_sync_dense();
        test_sync_rows();
        test_check_replicas();
        for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
            test_data_parallel_equivalence(&modes[i], LOSS_MEAN);
            test_data_parallel_equivalence(&modes[i], LOSS_SUM_GLOBAL);
        }
        test_sharded_layout();
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            test_sharded_case(&cases[i]);
        test_sharded_errors();
        for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
            test_sharded_equivalence(&modes[i], LOSS_MEAN);
            test_sharded_equivalence(&modes[i], LOSS_SUM_GLOBAL);
        }
        test_checkpoints();
    }
    int counts[2] = {n_pass, n_fail};
    MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && !do_bench)
        printf("%d passed, %d failed\n", counts[0], counts[1]);
    yk_mpi_free(comm);
    yk_ctx_free(ctx);
    yk_mpi_finalize();
    return counts[1] ? 1 : 0;
}
