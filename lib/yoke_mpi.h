/*
 * yoke_mpi.h -- data-parallel training and row-sharded embedding tables over
 * MPI. An optional part of yoke: built as libyoke_mpi when meson finds MPI
 * (option -Dmpi=auto|enabled|disabled); yoke.h does not include it. Include
 * it yourself and link libyoke_mpi, libyoke and MPI (pkg-config yoke_mpi).
 *
 * DATA PARALLEL. Every rank holds the whole model and a slice of the batch:
 *
 *     yk_mpi_init(&argc, &argv);
 *     yk_mpi *c = yk_mpi_new(ctx, MPI_COMM_WORLD);
 *     ...build the model and the optimizer on every rank...
 *     yk_mpi_broadcast_model(c, m);          // rank 0's values everywhere
 *     for (step...) {
 *         yk_model_zero_grad(m);
 *         ...forward and yk_backward on this rank's slice (yk_mpi_split)...
 *         yk_mpi_sync_grads(c, m, YK_MPI_AVERAGE); // same bits on every rank
 *         yk_optim_step(opt);                // same update on every rank
 *     }
 *     yk_mpi_free(c);
 *     yk_mpi_finalize();
 *
 * With a per-rank loss that is a mean over the rank's (equal-sized) slice,
 * YK_MPI_AVERAGE gives the gradient of the mean over the whole batch; with a
 * per-rank loss that is a sum divided by the GLOBAL batch size, use
 * YK_MPI_SUM. Optimizer states are never sent: every rank applies the same
 * update to the same parameters with the same gradient, so they stay equal
 * bit for bit (yk_mpi_check_replicas verifies it).
 *
 * ROW-SHARDED TABLES. A yk_sharded_table splits a [V, D] table (and its
 * bag-only columns [V, D2], and so their optimizer state) by rows: row r
 * lives on rank r % size, as local row r / size of a parameter in the
 * rank's model. A step gathers the rows the rank's batch needs:
 *
 *     yk_sharded_fetch(t, 2, (const yk_tensor *[]){seq, bags}); // collective
 *     g = yk_graph_begin(ctx);
 *     e = yk_sharded_embedding(g, t, seq, YK_NO_PADDING, false, true);
 *     b = yk_sharded_embedding_bag(g, t, true, bags, offsets, NULL, &opts);
 *     ...loss, yk_backward(g, loss), yk_graph_end(g)...
 *     yk_sharded_backward(t, YK_MPI_AVERAGE);   // rows' gradients to owners
 *     yk_mpi_sync_grads(c, m, YK_MPI_AVERAGE);  // the other parameters
 *     yk_optim_step(opt);                       // each rank: its own rows
 *
 * COLLECTIVES. Functions marked "collective" must be called by every rank of
 * the communicator, in the same order. They agree on failure: when one rank
 * fails a check (a bad index, a model that differs, out of memory), every
 * rank returns an error (the others with YK_ESTATE "rank k failed") instead
 * of waiting forever. An MPI call that fails is YK_EIO naming the call.
 */
#ifndef YOKE_MPI_H
#define YOKE_MPI_H

#include <mpi.h>

#include "yoke.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Start-up and the communicator
 * ====================================================================== */

/**
 * MPI_Init_thread with MPI_THREAD_FUNNELED (kernels may use threads; only
 * the calling thread talks MPI), unless MPI is already initialized.
 * YK_EIO if MPI cannot start (there is no context for a message).
 */
yk_status yk_mpi_init(int *argc, char ***argv);
/** MPI_Finalize, unless MPI is not initialized or already finalized. */
void yk_mpi_finalize(void);

typedef struct yk_mpi yk_mpi;

/**
 * A yoke communicator over a duplicate of comm (so yoke's messages never
 * mix with the caller's), errors returned rather than fatal. Collective.
 * NULL with YK_EINVAL (NULL ctx, MPI not initialized), YK_EIO or
 * YK_ENOMEM on ctx. Free it before MPI_Finalize.
 */
yk_mpi *yk_mpi_new(yk_ctx *ctx, MPI_Comm comm);
/** Frees the communicator (collective: MPI_Comm_free). NULL is a no-op.
 * Free its sharded tables first. */
void yk_mpi_free(yk_mpi *c);

int yk_mpi_rank(const yk_mpi *c);
int yk_mpi_size(const yk_mpi *c);
/** The duplicated communicator, for the caller's own messages. */
MPI_Comm yk_mpi_comm(const yk_mpi *c);

/**
 * This rank's slice [*start, *stop) of n items split in contiguous, nearly
 * equal parts (the first n % size ranks get one more). For data loading.
 */
void yk_mpi_split(const yk_mpi *c, int64_t n, int64_t *start, int64_t *stop);

/* ======================================================================
 * Data parallel
 * ====================================================================== */

/**
 * Copies rank 0's values of every parameter of m into the other ranks'
 * (sharded tables' parameters excepted). Collective. The models must have
 * the same parameters (names, dtypes, shapes, in the same order): else
 * YK_EINVAL on every rank, naming the first rank that differs.
 */
yk_status yk_mpi_broadcast_model(yk_mpi *c, yk_model *m);

typedef enum yk_mpi_reduce {
    YK_MPI_AVERAGE, /* the sum over ranks divided by the number of ranks */
    YK_MPI_SUM      /* the sum over ranks                                */
} yk_mpi_reduce;

/**
 * The gradient exchange, after backward and before the optimizer step.
 * Collective. For each parameter of m, in insertion order (sharded tables'
 * parameters excepted, frozen ones skipped):
 *   - dense on some rank: every rank's gradient made dense (rows scattered,
 *     none = zeros), summed in buckets (yk_mpi_set_bucket_bytes);
 *   - row-sparse on some rank and dense on none: the (rows, values) of all
 *     ranks are gathered and coalesced; the result is row-sparse;
 *   - no gradient anywhere: left without gradient (the optimizer skips it).
 * Sums run in rank order and each element is summed by one rank, so every
 * rank gets the same bits, whatever MPI's own algorithms. Then the sum is
 * divided by the size for YK_MPI_AVERAGE. Errors (on every rank): YK_EINVAL
 * if the models differ, YK_ESTATE if a parameter is frozen on some ranks
 * only, YK_ENOMEM, YK_EIO. On error the gradients are unspecified.
 */
yk_status yk_mpi_sync_grads(yk_mpi *c, yk_model *m, yk_mpi_reduce how);

/** Bucket size of the dense exchange in bytes (>= 64; default 4 MiB): a
 * bucket is packed, reduced and unpacked before the next is packed. */
yk_status yk_mpi_set_bucket_bytes(yk_mpi *c, size_t bytes);

/**
 * Sums values[0..n) over the ranks, in rank order, into values on every
 * rank (same bits everywhere). For losses and metrics. Collective.
 */
yk_status yk_mpi_allreduce_sum(yk_mpi *c, double *values, int n);

/**
 * Checks that every rank holds the same bits in every parameter of m
 * (sharded tables' parameters excepted) and, if opt is not NULL, in its
 * state and step count of each. Collective. YK_ESTATE naming the first
 * parameter (and state) that differs and a rank where it does.
 */
yk_status yk_mpi_check_replicas(yk_mpi *c, const yk_model *m,
                                yk_optim *opt);

/** What this rank has exchanged since the last reset. */
typedef struct yk_mpi_stats {
    uint64_t bytes_sent;     /* payload this rank sent to other ranks    */
    uint64_t bytes_received; /* payload it received from other ranks     */
    uint64_t collectives;    /* MPI collective calls made                */
} yk_mpi_stats;

/**
 * Counts are of the logical pattern, not of MPI's wires: an all-to-all
 * counts what goes to (comes from) each other rank; an all-gather counts
 * this rank's part once per other rank sent, and the others' parts
 * received; a broadcast counts the data once per other rank at the root,
 * once received elsewhere.
 */
yk_mpi_stats yk_mpi_get_stats(const yk_mpi *c);
void yk_mpi_reset_stats(yk_mpi *c);

/* ======================================================================
 * Row-sharded tables
 * ====================================================================== */

typedef struct yk_sharded_table yk_sharded_table;

/**
 * A [V, D] table split by rows over the ranks of c, with optional bag-only
 * columns [V, D2] (extra_name non-NULL, D2 >= 1) split the same way. Adds
 * to m (of c's context) the parameter `name` [local rows, D] and, with
 * extra columns, `extra_name` [local rows, D2], zero-filled: local row i
 * is global row rank + i * size. Collective: every rank must pass the same
 * names, dtype and sizes (YK_EINVAL otherwise, on every rank). dt f32 or
 * f64; V >= 1, D >= 1. NULL on error. The table borrows c and m: free it
 * before them (the parameters stay in m).
 */
yk_sharded_table *yk_sharded_table_new(yk_mpi *c, yk_model *m,
                                       const char *name,
                                       const char *extra_name, yk_dtype dt,
                                       int64_t V, int64_t D, int64_t D2);
void yk_sharded_table_free(yk_sharded_table *t);

/** Global rows V. */
int64_t yk_sharded_table_rows(const yk_sharded_table *t);
/** The local shard of the table (part 0) or of the extra columns (part 1;
 * NULL without extra columns). */
yk_param *yk_sharded_table_part(const yk_sharded_table *t, int part);
/** The rank owning global row r, and r's row in the owner's shard. */
int yk_sharded_table_owner(const yk_sharded_table *t, int64_t r);
int64_t yk_sharded_table_local_row(const yk_sharded_table *t, int64_t r);
/** The global row of local row i of this rank's shard. */
int64_t yk_sharded_table_global_row(const yk_sharded_table *t, int64_t i);

/**
 * Fills this rank's rows of part (0 or 1) with exactly the numbers that
 * yk_tensor_fill_normal(whole [V, cols], seed, mean, std) puts in them, so
 * a sharded table starts as the whole table would, without ever existing
 * whole. Not collective.
 */
yk_status yk_sharded_table_fill_normal(yk_sharded_table *t, int part,
                                       uint64_t seed, double mean,
                                       double std);
/** Copies this rank's rows of part from whole ([V, cols], same dtype),
 * e.g. pretrained vectors read on every rank. Not collective. */
yk_status yk_sharded_table_scatter(yk_sharded_table *t, int part,
                                   const yk_tensor *whole);

/**
 * Starts a step: gathers from their owners the rows (both parts) of every
 * index of inputs[0..n) (i64 tensors of any shape) into a local temporary
 * table. Collective (a rank with nothing to look up passes n = 0). An index
 * outside [0, V) is YK_ERANGE naming the input, element and value. The
 * rows stay fetched until the next fetch.
 */
yk_status yk_sharded_fetch(yk_sharded_table *t, int n,
                           const yk_tensor *const *inputs);

/**
 * yk_embedding over the table: same values, and after yk_sharded_backward
 * the same gradient in the owners' shards, as yk_embedding over the whole
 * table. input's indices must have been fetched (YK_EINVAL naming the
 * first that was not); padding_idx as yk_embedding's, in global rows.
 * input is borrowed until yk_graph_end.
 */
yk_node *yk_sharded_embedding(yk_graph *g, yk_sharded_table *t,
                              const yk_tensor *input, int64_t padding_idx,
                              bool scale_grad_by_freq, bool sparse);
/**
 * yk_embedding_bag over the table (with_extra: over [table | extra
 * columns], a lazy column concatenation as yk_bag_layer_forward's), every
 * mode and option as yk_embedding_bag's, padding_idx in global rows.
 * offsets may be NULL for 2-D input. input and offsets are borrowed until
 * yk_graph_end; per_sample_weights is an ordinary node (or NULL).
 */
yk_node *yk_sharded_embedding_bag(yk_graph *g, yk_sharded_table *t,
                                  bool with_extra, const yk_tensor *input,
                                  const yk_tensor *offsets,
                                  yk_node *per_sample_weights,
                                  const yk_bag_opts *opts);

/**
 * After yk_backward (before the optimizer step): sends the gradient of the
 * fetched rows to their owners, which add it (in rank order, divided by the
 * size for YK_MPI_AVERAGE) into their shards' gradients. A part's shard
 * gradient becomes dense when some rank's use of it was dense, row-sparse
 * otherwise, as a whole table's would; a part no rank used gets nothing.
 * Collective. YK_ESTATE if nothing was fetched.
 */
yk_status yk_sharded_backward(yk_sharded_table *t, yk_mpi_reduce how);

/* ======================================================================
 * Checkpoints of a sharded model
 * ====================================================================== */

/**
 * Saves m (and opt's state, if opt is not NULL) as one safetensors file per
 * rank plus an index, every file atomically (yoke_io.h). Collective.
 *   <prefix>.rank<k>-of-<n>.safetensors  rank k's shards of every sharded
 *                    table, under the parameter's name, rows in local order;
 *                    rank 0's file also holds every other parameter;
 *                    optimizer state as "optim/<param>/<state>" (sharded as
 *                    its parameter) and "optim/<param>/step" (0-d i64).
 *   <prefix>.index.json  written by rank 0 once every file is in place:
 *                    {"format": "yoke-sharded", "version": 1,
 *                     "world_size": n, "step": ..., "files": [...],
 *                     "tables": {"<param>": {"rows": V}, ...}}
 * opts: step, config (stored in the index and the files) and io; extra
 * tensors are not supported (YK_EINVAL). Errors on every rank as
 * yk_model_save's.
 */
yk_status yk_mpi_save(yk_mpi *c, const yk_model *m, yk_optim *opt,
                      const char *prefix, const yk_save_opts *opts);

/**
 * Loads a checkpoint saved by yk_mpi_save with any number of ranks into m
 * (and opt) on this communicator's ranks, re-sharding the tables' rows:
 * every rank reads the index, rank 0's file for the other parameters and
 * every file for its rows (one whole file in memory at a time). Strict: the
 * names, dtypes and shapes must match (YK_EFORMAT / YK_EDTYPE / YK_ESHAPE
 * naming the culprit). Nothing is changed unless every rank succeeds.
 * *step (may be NULL) gets the saved step. Collective.
 */
yk_status yk_mpi_load(yk_mpi *c, yk_model *m, yk_optim *opt,
                      const char *prefix, int64_t *step);

#ifdef __cplusplus
}
#endif

#endif /* YOKE_MPI_H */
