/*
 * mpi.c -- data-parallel training and row-sharded tables over MPI
 * (libyoke_mpi; see yoke_mpi.h).
 *
 * Determinism. Every sum over ranks runs in rank order and each element is
 * summed by exactly one rank, which then hands the result to the others: the
 * dense exchange is an all-to-all reduce-scatter (rank q sums segment q of a
 * bucket, over ranks 0, 1, ...) followed by an all-gather; the row-sparse
 * exchange gathers every rank's rows and every rank merges them the same
 * way. So every rank holds the same bits, whatever algorithms MPI uses.
 *
 * Agreement. A collective that one rank leaves early makes the others wait
 * forever, so every function first checks its arguments and prepares its
 * buffers, then all ranks agree on the outcome (one tiny allreduce) before
 * any data moves.
 *
 * Gradients are written back through the parameter store's internal
 * interface (lib/engine.h): yk__param_add_dense / yk__param_add_rows.
 */
#include "engine.h"
#include "yoke_mpi.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ scratch */

/* A growable buffer kept across calls, so steady-state steps allocate
 * nothing. The contents are not kept when it grows. */
typedef struct scratch {
    void *p;
    size_t cap;
} scratch;

static void *scratch_get(yk_ctx *ctx, scratch *s, size_t need)
{
    if (s->p && need <= s->cap)
        return s->p;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : 2 * cap;
    void *p = yk__alloc(ctx, cap);
    if (!p)
        return NULL;
    yk__free(ctx, s->p, s->cap);
    s->p = p;
    s->cap = cap;
    return p;
}

static void scratch_free(yk_ctx *ctx, scratch *s)
{
    yk__free(ctx, s->p, s->cap);
    s->p = NULL;
    s->cap = 0;
}

/* ------------------------------------------------------- communicator */

enum { N_SCRATCH = 6, N_COUNTS = 4 };
enum { SEND_COUNT, RECV_COUNT, SEND_DISPL, RECV_DISPL };

struct yk_mpi {
    yk_ctx *ctx;
    MPI_Comm comm;
    int rank, size;
    size_t bucket_bytes;
    yk_mpi_stats stats;
    int *counts[N_COUNTS];     /* size ints each, for the v-collectives */
    scratch scr[N_SCRATCH];    /* see the users of each                 */
    yk_sharded_table **tables; /* registered, for the exchanges to skip */
    int n_tables, cap_tables;
};

/* Scratch slots: who uses which (never two live pointers into one). */
enum { SCR_KINDS, SCR_SEND, SCR_RECV, SCR_MERGE, SCR_AUX, SCR_AUX2 };

struct yk_sharded_table {
    yk_mpi *c;
    yk_model *m;
    yk_dtype dt;
    int64_t V;
    int nparts;             /* 1, or 2 with extra columns              */
    int64_t cols[2];
    yk_param *shard[2];     /* this rank's rows, in m                  */
    MPI_Datatype part_type[2]; /* one row of a part, as bytes          */
    MPI_Datatype fetch_type;   /* one row of both parts together       */
    /* the rows fetched for this step */
    yk_model *tmp;          /* private model of the temporary tables   */
    yk_param *rows[2];      /* [cap, cols]: row j is global uniq[j]    */
    int64_t cap;
    int64_t *uniq;          /* sorted, unique global rows fetched      */
    int64_t n_uniq, uniq_cap;
    bool fetched;
    scratch scr[6];
};

/* Table scratch slots. */
enum { TS_IDS, TS_PERM, TS_REQ, TS_REPLY, TS_GOT, TS_CHUNKS, N_TS };

yk_status yk_mpi_init(int *argc, char ***argv)
{
    int inited = 0, provided = 0;
    if (MPI_Initialized(&inited) != MPI_SUCCESS)
        return YK_EIO;
    if (inited)
        return YK_OK;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) !=
        MPI_SUCCESS)
        return YK_EIO;
    return YK_OK;
}

void yk_mpi_finalize(void)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized)
        MPI_Finalize();
}

static yk_status mpi_failed(yk_mpi *c, const char *fn, const char *call,
                            int rc)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "error %d", rc);
    return yk__error(c->ctx, YK_EIO, "%s: %s failed: %s", fn, call, text);
}

static void free_counts(yk_mpi *c)
{
    for (int i = 0; i < N_COUNTS; i++)
        yk__free(c->ctx, c->counts[i], (size_t)c->size * sizeof(int));
}

yk_mpi *yk_mpi_new(yk_ctx *ctx, MPI_Comm comm)
{
    if (!ctx)
        return NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        yk__error(ctx, YK_EINVAL, "yk_mpi_new: MPI is not initialized (call "
                  "yk_mpi_init first)");
        return NULL;
    }
    yk_mpi *c = yk__alloc(ctx, sizeof *c);
    if (!c)
        return NULL;
    c->ctx = ctx;
    c->bucket_bytes = (size_t)4 << 20;
    int rc = MPI_Comm_dup(comm, &c->comm);
    if (rc != MPI_SUCCESS) {
        mpi_failed(c, "yk_mpi_new", "MPI_Comm_dup", rc);
        yk__free(ctx, c, sizeof *c);
        return NULL;
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    for (int i = 0; i < N_COUNTS; i++) {
        c->counts[i] = yk__alloc(ctx, (size_t)c->size * sizeof(int));
        if (!c->counts[i]) {
            free_counts(c);
            MPI_Comm_free(&c->comm);
            yk__free(ctx, c, sizeof *c);
            return NULL;
        }
    }
    return c;
}

void yk_mpi_free(yk_mpi *c)
{
    if (!c)
        return;
    yk_ctx *ctx = c->ctx;
    for (int i = 0; i < N_SCRATCH; i++)
        scratch_free(ctx, &c->scr[i]);
    free_counts(c);
    yk__free(ctx, c->tables, (size_t)c->cap_tables * sizeof *c->tables);
    MPI_Comm_free(&c->comm);
    yk__free(ctx, c, sizeof *c);
}

int yk_mpi_rank(const yk_mpi *c) { return c ? c->rank : -1; }
int yk_mpi_size(const yk_mpi *c) { return c ? c->size : 0; }
MPI_Comm yk_mpi_comm(const yk_mpi *c) { return c ? c->comm : MPI_COMM_NULL; }

void yk_mpi_split(const yk_mpi *c, int64_t n, int64_t *start, int64_t *stop)
{
    int64_t P = c ? c->size : 1, r = c ? c->rank : 0;
    if (n < 0)
        n = 0;
    int64_t base = n / P, extra = n % P;
    int64_t s = r * base + (r < extra ? r : extra);
    if (start)
        *start = s;
    if (stop)
        *stop = s + base + (r < extra ? 1 : 0);
}

yk_status yk_mpi_set_bucket_bytes(yk_mpi *c, size_t bytes)
{
    if (!c)
        return YK_EINVAL;
    if (bytes < 64)
        return yk__error(c->ctx, YK_EINVAL, "yk_mpi_set_bucket_bytes: bytes "
                         "= %zu is below 64", bytes);
    c->bucket_bytes = bytes;
    return YK_OK;
}

yk_mpi_stats yk_mpi_get_stats(const yk_mpi *c)
{
    yk_mpi_stats s = {0, 0, 0};
    return c ? c->stats : s;
}

void yk_mpi_reset_stats(yk_mpi *c)
{
    if (c)
        memset(&c->stats, 0, sizeof c->stats);
}

/* A parameter of a sharded table: each rank holds different rows, so the
 * replicated-model exchanges skip it. */
static bool is_local(const yk_mpi *c, const yk_param *p)
{
    for (int i = 0; i < c->n_tables; i++)
        for (int k = 0; k < c->tables[i]->nparts; k++)
            if (c->tables[i]->shard[k] == p)
                return true;
    return false;
}

/* -------------------------------------------------------- collectives */

static bool fits_int(int64_t n) { return n >= 0 && n <= INT_MAX; }

/* Every rank learns whether any failed: the lowest-ranked worst status
 * wins. A rank that failed keeps its own message. */
static yk_status agree(yk_mpi *c, const char *fn, yk_status local)
{
    struct { int status, rank; } in = {(int)local, c->rank}, out;
    int rc = MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, c->comm);
    c->stats.collectives++;
    if (rc != MPI_SUCCESS)
        return mpi_failed(c, fn, "MPI_Allreduce", rc);
    if (out.status == YK_OK)
        return YK_OK;
    if (local != YK_OK)
        return local;
    return yk__error(c->ctx, YK_ESTATE, "%s: rank %d failed (%s)", fn,
                     out.rank, yk_status_name((yk_status)out.status));
}

/* As agree, and checks that every rank passed the same fingerprint fp of
 * what `what` describes: YK_EINVAL naming the first rank that differs. */
static yk_status agree_same(yk_mpi *c, const char *fn, yk_status local,
                            uint64_t fp, const char *what)
{
    uint64_t *all = scratch_get(c->ctx, &c->scr[SCR_AUX2],
                                (size_t)c->size * sizeof *all);
    yk_status s = agree(c, fn, local ? local : all ? YK_OK : YK_ENOMEM);
    if (s)
        return s;
    int rc = MPI_Allgather(&fp, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T,
                           c->comm);
    c->stats.collectives++;
    c->stats.bytes_sent += 8 * (uint64_t)(c->size - 1);
    c->stats.bytes_received += 8 * (uint64_t)(c->size - 1);
    if (rc != MPI_SUCCESS)
        return mpi_failed(c, fn, "MPI_Allgather", rc);
    for (int r = 1; r < c->size; r++)
        if (all[r] != all[0])
            return yk__error(c->ctx, YK_EINVAL, "%s: rank %d has different "
                             "%s than rank 0", fn, r, what);
    return YK_OK;
}

/* Displacements as prefix sums of counts. */
static void prefix_displs(const int *counts, int *displs, int n)
{
    int d = 0;
    for (int i = 0; i < n; i++) {
        displs[i] = d;
        d += counts[i];
    }
}

static uint64_t others_total(const yk_mpi *c, const int *counts)
{
    uint64_t n = 0;
    for (int r = 0; r < c->size; r++)
        if (r != c->rank)
            n += (uint64_t)counts[r];
    return n;
}

/* Gathers `count` elements of every rank into recv (counts[r] of rank r at
 * the prefix-sum displacement); counts[] must be known everywhere. */
static yk_status allgatherv(yk_mpi *c, const char *fn, const void *send,
                            int count, void *recv, const int *counts,
                            MPI_Datatype type, size_t tsize)
{
    int *displs = c->counts[RECV_DISPL];
    prefix_displs(counts, displs, c->size);
    int rc = MPI_Allgatherv(send, count, type, recv, counts, displs, type,
                            c->comm);
    c->stats.collectives++;
    c->stats.bytes_sent += (uint64_t)count * tsize * (uint64_t)(c->size - 1);
    c->stats.bytes_received += others_total(c, counts) * tsize;
    return rc == MPI_SUCCESS ? YK_OK : mpi_failed(c, fn, "MPI_Allgatherv", rc);
}

/* Sends scounts[r] elements to each rank r (in rank order from send) and
 * receives rcounts[r] from each into recv, both packed by rank. */
static yk_status alltoallv(yk_mpi *c, const char *fn, const void *send,
                           const int *scounts, void *recv, const int *rcounts,
                           MPI_Datatype type, size_t tsize)
{
    int *sd = c->counts[SEND_DISPL], *rd = c->counts[RECV_DISPL];
    prefix_displs(scounts, sd, c->size);
    prefix_displs(rcounts, rd, c->size);
    int rc = MPI_Alltoallv(send, scounts, sd, type, recv, rcounts, rd, type,
                           c->comm);
    c->stats.collectives++;
    c->stats.bytes_sent += others_total(c, scounts) * tsize;
    c->stats.bytes_received += others_total(c, rcounts) * tsize;
    return rc == MPI_SUCCESS ? YK_OK : mpi_failed(c, fn, "MPI_Alltoallv", rc);
}

/* Each rank learns how many elements every other rank will send it. */
static yk_status alltoall_counts(yk_mpi *c, const char *fn,
                                 const int *scounts, int *rcounts)
{
    int rc = MPI_Alltoall(scounts, 1, MPI_INT, rcounts, 1, MPI_INT, c->comm);
    c->stats.collectives++;
    c->stats.bytes_sent += sizeof(int) * (uint64_t)(c->size - 1);
    c->stats.bytes_received += sizeof(int) * (uint64_t)(c->size - 1);
    return rc == MPI_SUCCESS ? YK_OK : mpi_failed(c, fn, "MPI_Alltoall", rc);
}

static MPI_Datatype float_type(yk_dtype dt)
{
    return dt == YK_F32 ? MPI_FLOAT : MPI_DOUBLE;
}

yk_status yk_mpi_allreduce_sum(yk_mpi *c, double *values, int n)
{
    const char *fn = "yk_mpi_allreduce_sum";
    if (!c)
        return YK_EINVAL;
    yk_status local = YK_OK;
    if (n < 0 || (n > 0 && !values))
        local = yk__error(c->ctx, YK_EINVAL, "%s: n = %d with values %s", fn,
                          n, values ? "given" : "NULL");
    double *all = local ? NULL
                        : scratch_get(c->ctx, &c->scr[SCR_RECV],
                                      (size_t)c->size * (size_t)(n ? n : 1) *
                                          sizeof *all);
    if (!local && !all)
        local = YK_ENOMEM;
    yk_status s = agree_same(c, fn, local, (uint64_t)n, "n");
    if (s)
        return s;
    int *counts = c->counts[RECV_COUNT];
    for (int r = 0; r < c->size; r++)
        counts[r] = n;
    s = allgatherv(c, fn, values, n, all, counts, MPI_DOUBLE, 8);
    if (s)
        return s;
    for (int i = 0; i < n; i++) {
        double acc = all[i];
        for (int r = 1; r < c->size; r++)
            acc += all[(size_t)r * (size_t)n + (size_t)i];
        values[i] = acc;
    }
    return YK_OK;
}

/* ------------------------------------------------------- fingerprints */

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * UINT64_C(0x100000001b3);
    return h;
}

#define FNV_START UINT64_C(0xcbf29ce484222325)

/* Names, dtypes and shapes of the replicated parameters, in order. */
static uint64_t model_fingerprint(const yk_mpi *c, const yk_model *m)
{
    uint64_t h = FNV_START;
    for (int i = 0; m && i < m->n; i++) {
        const yk_param *p = m->params[i];
        if (is_local(c, p))
            continue;
        h = fnv(h, p->name, strlen(p->name) + 1);
        h = fnv(h, &p->value.dtype, sizeof p->value.dtype);
        h = fnv(h, &p->value.ndim, sizeof p->value.ndim);
        h = fnv(h, p->value.shape, (size_t)p->value.ndim * sizeof(int64_t));
    }
    return h;
}

/* A model argument: non-NULL and of c's context. */
static yk_status check_model(yk_mpi *c, const char *fn, const yk_model *m)
{
    if (!m)
        return yk__error(c->ctx, YK_EINVAL, "%s: m is NULL", fn);
    if (m->ctx != c->ctx)
        return yk__error(c->ctx, YK_EINVAL, "%s: the model belongs to "
                         "another context than the communicator", fn);
    return YK_OK;
}

/* ---------------------------------------------------------- broadcast */

static yk_status bcast_param(yk_mpi *c, const char *fn, yk_param *p)
{
    size_t es = yk_dtype_size(p->value.dtype);
    char *data = p->value.data;
    const int64_t chunk = INT_MAX / 2;
    for (int64_t off = 0; off < p->value.numel; off += chunk) {
        int64_t n = p->value.numel - off < chunk ? p->value.numel - off
                                                 : chunk;
        int rc = MPI_Bcast(data + (size_t)off * es, (int)n,
                           float_type(p->value.dtype), 0, c->comm);
        c->stats.collectives++;
        if (c->rank == 0)
            c->stats.bytes_sent += (uint64_t)n * es * (uint64_t)(c->size - 1);
        else
            c->stats.bytes_received += (uint64_t)n * es;
        if (rc != MPI_SUCCESS)
            return mpi_failed(c, fn, "MPI_Bcast", rc);
    }
    return YK_OK;
}

yk_status yk_mpi_broadcast_model(yk_mpi *c, yk_model *m)
{
    const char *fn = "yk_mpi_broadcast_model";
    if (!c)
        return YK_EINVAL;
    yk_status s = agree_same(c, fn, check_model(c, fn, m),
                             model_fingerprint(c, m),
                             "parameters (names, dtypes, shapes or order)");
    for (int i = 0; s == YK_OK && i < m->n; i++)
        if (!is_local(c, m->params[i]))
            s = bcast_param(c, fn, m->params[i]);
    return s;
}

/* ------------------------------------------------- gradient exchange */

/* A parameter's gradient state as the exchange sees it. */
enum { K_NONE, K_DENSE, K_ROWS, K_FROZEN, K_SKIP };

static signed char local_kind(const yk_mpi *c, const yk_param *p)
{
    if (is_local(c, p))
        return K_SKIP;
    if (!p->requires_grad)
        return K_FROZEN;
    return p->grad_kind == YK_GRAD_DENSE  ? K_DENSE
           : p->grad_kind == YK_GRAD_ROWS ? K_ROWS
                                          : K_NONE;
}

/* The kind every rank will have: dense if any is dense, else rows if any
 * has rows. all[r * n + i] is rank r's kind of parameter i. */
static yk_status decide_kinds(yk_mpi *c, const char *fn, const yk_model *m,
                              const signed char *all, signed char *out)
{
    int n = m->n;
    for (int i = 0; i < n; i++) {
        signed char k = all[i];
        for (int r = 1; r < c->size; r++) {
            signed char kr = all[(size_t)r * (size_t)n + (size_t)i];
            if ((kr == K_FROZEN) != (all[i] == K_FROZEN))
                return yk__error(c->ctx, YK_ESTATE, "%s: parameter \"%s\" is "
                                 "frozen on rank %d but not on rank %d", fn,
                                 m->params[i]->name, kr == K_FROZEN ? r : 0,
                                 kr == K_FROZEN ? 0 : r);
            if (kr == K_DENSE || (kr == K_ROWS && k == K_NONE))
                k = kr;
        }
        out[i] = k;
    }
    return YK_OK;
}

/* Makes the local gradient of every parameter match its agreed kind:
 * dense buffers exist, rows are coalesced. */
static yk_status prepare_grads(yk_model *m, const signed char *kinds)
{
    for (int i = 0; i < m->n; i++) {
        yk_param *p = m->params[i];
        yk_status s = YK_OK;
        if (kinds[i] == K_DENSE) {
            s = yk__param_add_dense(p, NULL);
            yk__param_grad_written(p); /* the exchange writes all of it */
        } else if (kinds[i] == K_ROWS && p->grad_kind == YK_GRAD_ROWS) {
            int64_t nr;
            const int64_t *rows;
            const yk_tensor *vals;
            s = yk_param_grad_rows(p, &nr, &rows, &vals);
        }
        if (s)
            return s;
    }
    return YK_OK;
}

/* Copies elements [start, start + len) of the stream made of the dense
 * gradients of dtype dt (model order) between the parameters and buf. */
static void stream_copy(yk_model *m, const signed char *kinds, yk_dtype dt,
                        int64_t start, int64_t len, char *buf, bool pack)
{
    size_t es = yk_dtype_size(dt);
    int64_t pos = 0;
    for (int i = 0; i < m->n && len > 0; i++) {
        yk_param *p = m->params[i];
        if (kinds[i] != K_DENSE || p->value.dtype != dt)
            continue;
        int64_t n = p->value.numel;
        if (start < pos + n) {
            int64_t off = start - pos;
            int64_t k = n - off < len ? n - off : len;
            char *g = (char *)p->grad->data + (size_t)off * es;
            if (pack)
                memcpy(buf, g, (size_t)k * es);
            else
                memcpy(g, buf, (size_t)k * es);
            buf += (size_t)k * es;
            start += k;
            len -= k;
        }
        pos += n;
    }
}

/* r holds P segments of len elements, one from each rank in rank order:
 * segment 0 becomes their sum, added in rank order (then divided). */
static void sum_segments_f32(float *r, int64_t len, int P, bool average)
{
    for (int q = 1; q < P; q++) {
        const float *src = r + (size_t)q * (size_t)len;
        for (int64_t j = 0; j < len; j++)
            r[j] += src[j];
    }
    if (average)
        for (int64_t j = 0; j < len; j++)
            r[j] /= (float)P;
}

static void sum_segments_f64(double *r, int64_t len, int P, bool average)
{
    for (int q = 1; q < P; q++) {
        const double *src = r + (size_t)q * (size_t)len;
        for (int64_t j = 0; j < len; j++)
            r[j] += src[j];
    }
    if (average)
        for (int64_t j = 0; j < len; j++)
            r[j] /= (double)P;
}

/* Reduces buf[0..len) over the ranks in place, the same bits everywhere:
 * segment q of the bucket goes to rank q, which sums it over the ranks in
 * rank order; then every rank gathers every summed segment. */
static yk_status reduce_bucket(yk_mpi *c, const char *fn, void *buf,
                               int64_t len, yk_dtype dt, yk_mpi_reduce how,
                               void *recv)
{
    int P = c->size;
    int64_t seg = (len + P - 1) / P;
    int *segc = c->counts[SEND_COUNT], *mine = c->counts[RECV_COUNT];
    for (int q = 0; q < P; q++) {
        int64_t lo = (int64_t)q * seg < len ? (int64_t)q * seg : len;
        int64_t hi = (int64_t)(q + 1) * seg < len ? (int64_t)(q + 1) * seg
                                                  : len;
        segc[q] = (int)(hi - lo);
    }
    for (int q = 0; q < P; q++)
        mine[q] = segc[c->rank];
    size_t es = yk_dtype_size(dt);
    yk_status s = alltoallv(c, fn, buf, segc, recv, mine, float_type(dt), es);
    if (s)
        return s;
    if (dt == YK_F32)
        sum_segments_f32(recv, mine[0], P, how == YK_MPI_AVERAGE);
    else
        sum_segments_f64(recv, mine[0], P, how == YK_MPI_AVERAGE);
    return allgatherv(c, fn, recv, mine[0], buf, segc, float_type(dt), es);
}

/* Elements of dtype dt in a bucket of the dense exchange (at least one
 * per rank). */
static int64_t bucket_elems(const yk_mpi *c, yk_dtype dt)
{
    int64_t bucket = (int64_t)(c->bucket_bytes / yk_dtype_size(dt));
    if (bucket > INT_MAX / 2)
        bucket = INT_MAX / 2;
    return bucket < c->size ? c->size : bucket;
}

/* The dense exchange's two buffers: a bucket, and one segment of it from
 * every rank (reserved before the ranks agree to go on). */
static yk_status reserve_buckets(yk_mpi *c)
{
    size_t send = 0, recv = 0;
    for (yk_dtype dt = YK_F32; dt <= YK_F64; dt++) {
        size_t es = yk_dtype_size(dt);
        int64_t bucket = bucket_elems(c, dt);
        int64_t seg = (bucket + c->size - 1) / c->size;
        send = send > (size_t)bucket * es ? send : (size_t)bucket * es;
        recv = recv > (size_t)(seg * c->size) * es ? recv
                                                   : (size_t)(seg * c->size) * es;
    }
    return scratch_get(c->ctx, &c->scr[SCR_SEND], send) &&
                   scratch_get(c->ctx, &c->scr[SCR_RECV], recv)
               ? YK_OK
               : YK_ENOMEM;
}

static yk_status dense_exchange(yk_mpi *c, const char *fn, yk_model *m,
                                const signed char *kinds, yk_dtype dt,
                                yk_mpi_reduce how)
{
    int64_t total = 0;
    for (int i = 0; i < m->n; i++)
        if (kinds[i] == K_DENSE && m->params[i]->value.dtype == dt)
            total += m->params[i]->value.numel;
    int64_t bucket = bucket_elems(c, dt);
    char *buf = c->scr[SCR_SEND].p; /* reserve_buckets made them */
    void *recv = c->scr[SCR_RECV].p;
    yk_status s = YK_OK;
    for (int64_t start = 0; s == YK_OK && start < total; start += bucket) {
        int64_t len = total - start < bucket ? total - start : bucket;
        stream_copy(m, kinds, dt, start, len, buf, true);
        s = reduce_bucket(c, fn, buf, len, dt, how, recv);
        if (s == YK_OK)
            stream_copy(m, kinds, dt, start, len, buf, false);
    }
    return s;
}

/* Row-sparse exchange: the packed message of a rank is, for each row-sparse
 * parameter in model order, its n row ids then its n rows of values padded
 * to 8 bytes, in 8-byte words. */
static int64_t rows_words(int64_t n, size_t rowbytes)
{
    return n + (int64_t)(((size_t)n * rowbytes + 7) / 8);
}

static size_t row_bytes(const yk_param *p)
{
    return (size_t)yk__rowlen(&p->value) * yk_dtype_size(p->value.dtype);
}

static void scale_values(yk_dtype dt, void *v, int64_t n, double divisor)
{
    if (dt == YK_F32) {
        float *d = v;
        for (int64_t i = 0; i < n; i++)
            d[i] /= (float)divisor;
    } else {
        double *d = v;
        for (int64_t i = 0; i < n; i++)
            d[i] /= divisor;
    }
}

/* One rank's rows of one parameter, inside the gathered message. */
typedef struct rank_rows {
    int64_t n, pos;
    const int64_t *rows;
    const char *vals;
    const uint64_t *next; /* the rank's next parameter in the message */
} rank_rows;

/* Merges P sorted, unique row lists, summing equal rows in rank order, into
 * out_rows / out_vals. Returns the number of rows. */
static int64_t merge_rows(rank_rows *in, int P, const yk_param *p,
                          int64_t *out_rows, char *out_vals)
{
    size_t rb = row_bytes(p);
    int64_t rowlen = yk__rowlen(&p->value), m = 0;
    for (;;) {
        int64_t best = INT64_MAX;
        for (int q = 0; q < P; q++)
            if (in[q].pos < in[q].n && in[q].rows[in[q].pos] < best)
                best = in[q].rows[in[q].pos];
        if (best == INT64_MAX)
            return m;
        char *dst = out_vals + (size_t)m * rb;
        bool first = true;
        for (int q = 0; q < P; q++) {
            if (in[q].pos >= in[q].n || in[q].rows[in[q].pos] != best)
                continue;
            const char *src = in[q].vals + (size_t)in[q].pos * rb;
            if (first)
                memcpy(dst, src, rb);
            else
                yk__add_into(p->value.dtype, dst, src, rowlen);
            first = false;
            in[q].pos++;
        }
        out_rows[m++] = best;
    }
}

/* Replaces p's gradient by the coalesced rows (rows, vals). */
static yk_status set_grad_rows(yk_param *p, int64_t n, int64_t *rows,
                               void *vals)
{
    p->nrows = 0;
    p->grad_kind = YK_GRAD_NONE;
    yk__rowchunk all = {.n = n, .sparse = true, .rows = rows, .values = vals};
    yk_status s = yk__param_add_rows(p, &all, NULL);
    p->rows_coalesced = true;
    return s;
}

/* The local rows of parameter p for the exchange (none if it has none). */
static void local_rows(yk_param *p, int64_t *n, const int64_t **rows,
                       const void **vals)
{
    *n = 0;
    *rows = NULL;
    *vals = NULL;
    if (p->grad_kind == YK_GRAD_ROWS) { /* coalesced by prepare_grads */
        *n = p->nrows;
        *rows = p->rows;
        *vals = p->row_values;
    }
}

/* Merges the ranks' rows of p (in[q] for rank q) and stores them. */
static yk_status merge_param(yk_mpi *c, yk_param *p, rank_rows *in,
                             yk_mpi_reduce how)
{
    int64_t total = 0;
    for (int q = 0; q < c->size; q++)
        total += in[q].n;
    size_t rb = row_bytes(p);
    char *out = scratch_get(c->ctx, &c->scr[SCR_MERGE],
                            (size_t)total * (8 + rb) + 8);
    if (!out)
        return YK_ENOMEM;
    int64_t *orows = (int64_t *)out;
    char *ovals = out + (size_t)total * 8;
    int64_t m = merge_rows(in, c->size, p, orows, ovals);
    if (how == YK_MPI_AVERAGE)
        scale_values(p->value.dtype, ovals, m * yk__rowlen(&p->value),
                     c->size);
    return set_grad_rows(p, m, orows, ovals);
}

static int count_rows_params(const yk_model *m, const signed char *kinds)
{
    int ns = 0;
    for (int i = 0; i < m->n; i++)
        ns += kinds[i] == K_ROWS;
    return ns;
}

/* The row counts of every rank and the per-rank cursors of the merge
 * (reserved before the ranks agree to go on). */
static yk_status reserve_rows_counts(yk_mpi *c, int ns)
{
    return scratch_get(c->ctx, &c->scr[SCR_AUX2],
                       (size_t)ns * 8 * (size_t)(c->size + 1)) &&
                   scratch_get(c->ctx, &c->scr[SCR_AUX],
                               (size_t)c->size * sizeof(rank_rows))
               ? YK_OK
               : YK_ENOMEM;
}

/* Every rank's message size in words (words[q]) from the row counts of
 * every rank (all_n[q * ns + k]); *total their sum. */
static yk_status rows_message_sizes(yk_mpi *c, const char *fn,
                                    const yk_model *m,
                                    const signed char *kinds, int ns,
                                    const int64_t *all_n, int *words,
                                    int64_t *total)
{
    *total = 0;
    for (int q = 0; q < c->size; q++) {
        int64_t w = 0;
        for (int i = 0, k = 0; i < m->n; i++)
            if (kinds[i] == K_ROWS)
                w += rows_words(all_n[(size_t)q * ns + k++],
                                row_bytes(m->params[i]));
        if (!fits_int(w) || !fits_int(*total + w))
            return yk__error(c->ctx, YK_ENOTIMPL, "%s: the row-sparse "
                             "gradients (%lld words from rank %d) exceed one "
                             "message", fn, (long long)w, q);
        words[q] = (int)w;
        *total += w;
    }
    return YK_OK;
}

/* This rank's message: each row-sparse parameter's ids, then values. */
static void pack_rows(yk_model *m, const signed char *kinds, uint64_t *w)
{
    for (int i = 0; i < m->n; i++) {
        if (kinds[i] != K_ROWS)
            continue;
        int64_t n;
        const int64_t *rows;
        const void *vals;
        local_rows(m->params[i], &n, &rows, &vals);
        if (n) {
            memcpy(w, rows, (size_t)n * 8);
            memcpy(w + n, vals, (size_t)n * row_bytes(m->params[i]));
        }
        w += rows_words(n, row_bytes(m->params[i]));
    }
}

/* Walks every rank's message parameter by parameter, merging each. */
static yk_status merge_all(yk_mpi *c, yk_model *m, const signed char *kinds,
                           int ns, const int64_t *all_n, const int *words,
                           const uint64_t *recv, yk_mpi_reduce how)
{
    rank_rows *in = c->scr[SCR_AUX].p; /* reserve_rows_counts made it */
    for (int q = 0, off = 0; q < c->size; off += words[q], q++)
        in[q].next = recv + off;
    yk_status local = YK_OK;
    for (int i = 0, k = 0; i < m->n; i++) {
        if (kinds[i] != K_ROWS)
            continue;
        yk_param *p = m->params[i];
        for (int q = 0; q < c->size; q++) {
            in[q].n = all_n[(size_t)q * ns + k];
            in[q].pos = 0;
            in[q].rows = (const int64_t *)in[q].next;
            in[q].vals = (const char *)(in[q].next + in[q].n);
            in[q].next += rows_words(in[q].n, row_bytes(p));
        }
        k++;
        yk_status e = merge_param(c, p, in, how);
        local = local ? local : e; /* agreed by the caller */
    }
    return local;
}

static yk_status rows_exchange(yk_mpi *c, const char *fn, yk_model *m,
                               const signed char *kinds, yk_mpi_reduce how)
{
    int ns = count_rows_params(m, kinds);
    if (ns == 0)
        return YK_OK;
    int64_t *mine = c->scr[SCR_AUX2].p, *all_n = mine + ns;
    for (int i = 0, k = 0; i < m->n; i++) {
        const int64_t *rows;
        const void *vals;
        if (kinds[i] == K_ROWS)
            local_rows(m->params[i], &mine[k++], &rows, &vals);
    }
    int *cnt = c->counts[RECV_COUNT], *words = c->counts[SEND_COUNT];
    for (int q = 0; q < c->size; q++)
        cnt[q] = ns;
    int64_t total;
    yk_status s = allgatherv(c, fn, mine, ns, all_n, cnt, MPI_INT64_T, 8);
    if (!s) /* every rank computes the same sizes: they fail alike */
        s = rows_message_sizes(c, fn, m, kinds, ns, all_n, words, &total);
    if (s)
        return s;
    uint64_t *send = scratch_get(c->ctx, &c->scr[SCR_SEND],
                                 (size_t)words[c->rank] * 8);
    uint64_t *recv = send ? scratch_get(c->ctx, &c->scr[SCR_RECV],
                                        (size_t)total * 8)
                          : NULL;
    if ((s = agree(c, fn, recv ? YK_OK : YK_ENOMEM)))
        return s;
    pack_rows(m, kinds, send);
    if ((s = allgatherv(c, fn, send, words[c->rank], recv, words,
                        MPI_UINT64_T, 8)))
        return s;
    return merge_all(c, m, kinds, ns, all_n, words, recv, how);
}

yk_status yk_mpi_sync_grads(yk_mpi *c, yk_model *m, yk_mpi_reduce how)
{
    const char *fn = "yk_mpi_sync_grads";
    if (!c)
        return YK_EINVAL;
    yk_status local = check_model(c, fn, m);
    if (!local && how != YK_MPI_AVERAGE && how != YK_MPI_SUM)
        local = yk__error(c->ctx, YK_EINVAL, "%s: how = %d is neither "
                          "YK_MPI_AVERAGE nor YK_MPI_SUM", fn, (int)how);
    if (!local && c->size > 1 &&
        !scratch_get(c->ctx, &c->scr[SCR_KINDS],
                     (size_t)m->n * (size_t)(c->size + 2) + 1))
        local = YK_ENOMEM;
    yk_status s = agree_same(c, fn, local, model_fingerprint(c, m),
                             "parameters (names, dtypes, shapes or order)");
    if (s || c->size == 1)
        return s; /* one rank: the sum is the gradient, the average too */
    int n = m->n, P = c->size;
    signed char *all = c->scr[SCR_KINDS].p; /* reserved above */
    signed char *mine = all + (size_t)n * P, *kinds = mine + n;
    for (int i = 0; i < n; i++)
        mine[i] = local_kind(c, m->params[i]);
    int *cnt = c->counts[RECV_COUNT];
    for (int q = 0; q < P; q++)
        cnt[q] = n;
    if ((s = allgatherv(c, fn, mine, n, all, cnt, MPI_SIGNED_CHAR, 1)))
        return s;
    /* Every rank sees the same kinds, so they all fail alike here. */
    if ((s = decide_kinds(c, fn, m, all, kinds)))
        return s;
    local = prepare_grads(m, kinds);
    if (!local)
        local = reserve_buckets(c);
    if (!local)
        local = reserve_rows_counts(c, count_rows_params(m, kinds));
    if ((s = agree(c, fn, local)))
        return s;
    s = dense_exchange(c, fn, m, kinds, YK_F32, how);
    if (!s)
        s = dense_exchange(c, fn, m, kinds, YK_F64, how);
    if (!s)
        s = rows_exchange(c, fn, m, kinds, how);
    return agree(c, fn, s);
}

/* ----------------------------------------------------- replica check */

static uint64_t tensor_hash(uint64_t h, const yk_tensor *t)
{
    return t ? fnv(h, t->data, yk_tensor_nbytes(t)) : h;
}

/* Hash of p's optimizer step count and state tensors in opt. */
static uint64_t state_hash(yk_optim *opt, yk_param *p)
{
    uint64_t h = FNV_START;
    if (!opt || !yk_optim_has(opt, p))
        return h;
    int64_t t = yk_optim_step_count(opt, p);
    h = fnv(h, &t, sizeof t);
    for (int k = 0; k < yk_optim_state_count(opt); k++) {
        yk_tensor *st = NULL;
        if (yk_optim_state(opt, p, yk_optim_state_name(opt, k), &st) == YK_OK)
            h = tensor_hash(h, st);
    }
    return h;
}

yk_status yk_mpi_check_replicas(yk_mpi *c, const yk_model *m, yk_optim *opt)
{
    const char *fn = "yk_mpi_check_replicas";
    if (!c)
        return YK_EINVAL;
    yk_status s = agree_same(c, fn, check_model(c, fn, m),
                             model_fingerprint(c, m),
                             "parameters (names, dtypes, shapes or order)");
    if (s)
        return s;
    int n = m->n, P = c->size;
    uint64_t *mine = scratch_get(c->ctx, &c->scr[SCR_SEND],
                                 (size_t)n * 16 + 8);
    uint64_t *all = mine ? scratch_get(c->ctx, &c->scr[SCR_RECV],
                                       (size_t)n * 16 * (size_t)P + 8)
                         : NULL;
    if ((s = agree(c, fn, all ? YK_OK : YK_ENOMEM)))
        return s;
    for (int i = 0; i < n; i++) {
        yk_param *p = m->params[i];
        bool skip = is_local(c, p);
        mine[2 * i] = skip ? 0 : tensor_hash(FNV_START, &p->value);
        mine[2 * i + 1] = skip ? 0 : state_hash(opt, p);
    }
    int *cnt = c->counts[RECV_COUNT];
    for (int q = 0; q < P; q++)
        cnt[q] = 2 * n;
    if ((s = allgatherv(c, fn, mine, 2 * n, all, cnt, MPI_UINT64_T, 8)))
        return s;
    for (int i = 0; i < n; i++)
        for (int q = 1; q < P; q++)
            for (int k = 0; k < 2; k++)
                if (all[(size_t)q * 2 * n + 2 * i + k] != all[2 * i + k])
                    return yk__error(c->ctx, YK_ESTATE, "%s: the %s of "
                                     "parameter \"%s\" differs between rank "
                                     "0 and rank %d", fn,
                                     k ? "optimizer state" : "value",
                                     m->params[i]->name, q);
    return YK_OK;
}

/* ---------------------------------------------------- sharded tables */

/* Rows of rank `rank`'s shard: rows rank, rank + P, ... below V. */
static int64_t shard_rows(int64_t V, int rank, int P)
{
    return rank < V ? (V - rank + P - 1) / P : 0;
}

static uint64_t table_fingerprint(const char *name, const char *extra,
                                  yk_dtype dt, int64_t V, int64_t D,
                                  int64_t D2)
{
    uint64_t h = fnv(FNV_START, name, name ? strlen(name) + 1 : 0);
    h = fnv(h, extra ? extra : "", extra ? strlen(extra) + 1 : 1);
    int64_t v[4] = {(int64_t)dt, V, D, D2};
    return fnv(h, v, sizeof v);
}

static yk_status check_table_args(yk_mpi *c, const char *fn, yk_model *m,
                                  const char *name, const char *extra,
                                  yk_dtype dt, int64_t V, int64_t D,
                                  int64_t D2)
{
    yk_ctx *ctx = c->ctx;
    yk_status s = check_model(c, fn, m);
    if (s)
        return s;
    if (!name || !*name)
        return yk__error(ctx, YK_EINVAL, "%s: name is empty", fn);
    if (extra && (!*extra || !strcmp(extra, name)))
        return yk__error(ctx, YK_EINVAL, "%s: extra_name \"%s\" is empty or "
                         "the table's name", fn, extra);
    if (dt != YK_F32 && dt != YK_F64)
        return yk__error(ctx, YK_EDTYPE, "%s: dtype %s, needs f32 or f64", fn,
                         yk_dtype_name(dt));
    if (V < 1 || D < 1)
        return yk__error(ctx, YK_EINVAL, "%s: V = %lld and D = %lld must be "
                         ">= 1", fn, (long long)V, (long long)D);
    if (extra ? D2 < 1 : D2 != 0)
        return yk__error(ctx, YK_EINVAL, "%s: D2 = %lld %s", fn,
                         (long long)D2, extra ? "must be >= 1 with extra "
                         "columns" : "without extra_name (must be 0)");
    const char *taken = yk_model_find(m, name) ? name
                        : extra && yk_model_find(m, extra) ? extra : NULL;
    if (taken)
        return yk__error(ctx, YK_EINVAL, "%s: the model already has a "
                         "parameter named \"%s\"", fn, taken);
    return YK_OK;
}

static yk_status register_table(yk_mpi *c, yk_sharded_table *t)
{
    if (c->n_tables == c->cap_tables) {
        int cap = c->cap_tables ? 2 * c->cap_tables : 4;
        yk_sharded_table **a = yk__realloc(c->ctx, c->tables,
                                           (size_t)c->cap_tables * sizeof *a,
                                           (size_t)cap * sizeof *a);
        if (!a)
            return YK_ENOMEM;
        c->tables = a;
        c->cap_tables = cap;
    }
    c->tables[c->n_tables++] = t;
    return YK_OK;
}

static void unregister_table(yk_mpi *c, yk_sharded_table *t)
{
    for (int i = 0; i < c->n_tables; i++)
        if (c->tables[i] == t) {
            c->tables[i] = c->tables[--c->n_tables];
            return;
        }
}

static yk_status make_types(yk_sharded_table *t)
{
    size_t es = yk_dtype_size(t->dt);
    int ok = MPI_SUCCESS;
    for (int k = 0; k < t->nparts; k++) {
        ok |= MPI_Type_contiguous((int)((size_t)t->cols[k] * es), MPI_BYTE,
                                  &t->part_type[k]);
        ok |= MPI_Type_commit(&t->part_type[k]);
    }
    ok |= MPI_Type_contiguous((int)((size_t)(t->cols[0] + t->cols[1]) * es),
                              MPI_BYTE, &t->fetch_type);
    ok |= MPI_Type_commit(&t->fetch_type);
    return ok == MPI_SUCCESS ? YK_OK
                             : mpi_failed(t->c, "yk_sharded_table_new",
                                          "MPI_Type_contiguous", ok);
}

/* The shards' parameters, added to m. */
static yk_status add_shards(yk_sharded_table *t, const char *name,
                            const char *extra)
{
    yk_mpi *c = t->c;
    int64_t shape[2] = {shard_rows(t->V, c->rank, c->size), t->cols[0]};
    t->shard[0] = yk_model_add(t->m, name, t->dt, 2, shape);
    if (!t->shard[0])
        return yk_last_status(c->ctx);
    if (extra) {
        shape[1] = t->cols[1];
        t->shard[1] = yk_model_add(t->m, extra, t->dt, 2, shape);
        if (!t->shard[1])
            return yk_last_status(c->ctx);
    }
    return YK_OK;
}

yk_sharded_table *yk_sharded_table_new(yk_mpi *c, yk_model *m,
                                       const char *name,
                                       const char *extra_name, yk_dtype dt,
                                       int64_t V, int64_t D, int64_t D2)
{
    const char *fn = "yk_sharded_table_new";
    if (!c)
        return NULL;
    yk_status local = check_table_args(c, fn, m, name, extra_name, dt, V, D,
                                       D2);
    yk_sharded_table *t = local ? NULL : yk__alloc(c->ctx, sizeof *t);
    if (!local && !t)
        local = YK_ENOMEM;
    if (agree_same(c, fn, local, table_fingerprint(name, extra_name, dt, V,
                                                   D, D2),
                   "table arguments (names, dtype or sizes)")) {
        yk__free(c->ctx, t, sizeof *t);
        return NULL;
    }
    *t = (yk_sharded_table){.c = c, .m = m, .dt = dt, .V = V,
                            .nparts = extra_name ? 2 : 1,
                            .cols = {D, extra_name ? D2 : 0}};
    local = add_shards(t, name, extra_name);
    if (!local)
        local = make_types(t);
    if (!local)
        local = register_table(c, t);
    if (agree(c, fn, local)) {
        yk_sharded_table_free(t); /* the parameters stay in m */
        return NULL;
    }
    return t;
}

void yk_sharded_table_free(yk_sharded_table *t)
{
    if (!t)
        return;
    yk_ctx *ctx = t->c->ctx;
    unregister_table(t->c, t);
    for (int k = 0; k < t->nparts; k++)
        if (t->part_type[k] != MPI_DATATYPE_NULL && t->part_type[k])
            MPI_Type_free(&t->part_type[k]);
    if (t->fetch_type != MPI_DATATYPE_NULL && t->fetch_type)
        MPI_Type_free(&t->fetch_type);
    yk_model_free(t->tmp);
    yk__free(ctx, t->uniq, (size_t)t->uniq_cap * 8);
    for (int i = 0; i < N_TS; i++)
        scratch_free(ctx, &t->scr[i]);
    yk__free(ctx, t, sizeof *t);
}

int64_t yk_sharded_table_rows(const yk_sharded_table *t)
{
    return t ? t->V : 0;
}

yk_param *yk_sharded_table_part(const yk_sharded_table *t, int part)
{
    return t && part >= 0 && part < t->nparts ? t->shard[part] : NULL;
}

int yk_sharded_table_owner(const yk_sharded_table *t, int64_t r)
{
    return t && r >= 0 && r < t->V ? (int)(r % t->c->size) : -1;
}

int64_t yk_sharded_table_local_row(const yk_sharded_table *t, int64_t r)
{
    return t && r >= 0 && r < t->V ? r / t->c->size : -1;
}

int64_t yk_sharded_table_global_row(const yk_sharded_table *t, int64_t i)
{
    if (!t || i < 0 || i >= shard_rows(t->V, t->c->rank, t->c->size))
        return -1;
    return t->c->rank + i * t->c->size;
}

static yk_status check_part(const yk_sharded_table *t, const char *fn,
                            int part)
{
    if (part < 0 || part >= t->nparts)
        return yk__error(t->c->ctx, YK_EINVAL, "%s: part = %d, the table "
                         "has %d part(s)", fn, part, t->nparts);
    return YK_OK;
}

/* Uniform in (0, 1) as lib/tensor.c draws it for element counters. */
static double uniform01(uint64_t seed, uint64_t counter)
{
    return ((double)(yk__random_u64(seed, counter) >> 11) + 0.5) *
           (1.0 / 9007199254740992.0);
}

yk_status yk_sharded_table_fill_normal(yk_sharded_table *t, int part,
                                       uint64_t seed, double mean,
                                       double std)
{
    const char *fn = "yk_sharded_table_fill_normal";
    if (!t)
        return YK_EINVAL;
    yk_status s = check_part(t, fn, part);
    if (s)
        return s;
    if (!(std >= 0))
        return yk__error(t->c->ctx, YK_EINVAL, "%s: std = %g must be >= 0",
                         fn, std);
    /* Box-Muller on the counters of global element (r, j), as
     * yk_tensor_fill_normal does over the whole [V, cols] table. */
    const double two_pi = 6.283185307179586476925286766559;
    yk_tensor *w = &t->shard[part]->value;
    int64_t cols = t->cols[part];
    for (int64_t i = 0; i < w->shape[0]; i++) {
        uint64_t base = (uint64_t)yk_sharded_table_global_row(t, i) *
                        (uint64_t)cols;
        for (int64_t j = 0; j < cols; j++) {
            uint64_t e = base + (uint64_t)j;
            double z = sqrt(-2.0 * log(uniform01(seed, 2 * e))) *
                       cos(two_pi * uniform01(seed, 2 * e + 1));
            double v = mean + std * z;
            if (t->dt == YK_F32)
                ((float *)w->data)[i * cols + j] = (float)v;
            else
                ((double *)w->data)[i * cols + j] = v;
        }
    }
    return YK_OK;
}

yk_status yk_sharded_table_scatter(yk_sharded_table *t, int part,
                                   const yk_tensor *whole)
{
    const char *fn = "yk_sharded_table_scatter";
    if (!t)
        return YK_EINVAL;
    yk_status s = check_part(t, fn, part);
    if (s)
        return s;
    yk_ctx *ctx = t->c->ctx;
    if (!whole)
        return yk__error(ctx, YK_EINVAL, "%s: whole is NULL", fn);
    if (whole->dtype != t->dt)
        return yk__error(ctx, YK_EDTYPE, "%s: whole is %s, the table %s", fn,
                         yk_dtype_name(whole->dtype), yk_dtype_name(t->dt));
    if (whole->ndim != 2 || whole->shape[0] != t->V ||
        whole->shape[1] != t->cols[part])
        return yk__error(ctx, YK_ESHAPE, "%s: whole must be [%lld, %lld]",
                         fn, (long long)t->V, (long long)t->cols[part]);
    yk_tensor *w = &t->shard[part]->value;
    size_t rb = (size_t)t->cols[part] * yk_dtype_size(t->dt);
    for (int64_t i = 0; i < w->shape[0]; i++)
        memcpy((char *)w->data + (size_t)i * rb,
               (const char *)whole->data +
                   (size_t)yk_sharded_table_global_row(t, i) * rb,
               rb);
    return YK_OK;
}

/* --------------------------------------------------------------- fetch */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static yk_status reserve_uniq(yk_sharded_table *t, int64_t n)
{
    if (n <= t->uniq_cap)
        return YK_OK;
    int64_t *u = yk__alloc(t->c->ctx, (size_t)n * 8);
    if (!u)
        return YK_ENOMEM;
    yk__free(t->c->ctx, t->uniq, (size_t)t->uniq_cap * 8);
    t->uniq = u;
    t->uniq_cap = n;
    return YK_OK;
}

static yk_status check_inputs(yk_sharded_table *t, const char *fn, int n,
                              const yk_tensor *const *inputs, int64_t *total)
{
    yk_ctx *ctx = t->c->ctx;
    if (n < 0 || (n > 0 && !inputs))
        return yk__error(ctx, YK_EINVAL, "%s: n = %d with inputs %s", fn, n,
                         inputs ? "given" : "NULL");
    *total = 0;
    for (int k = 0; k < n; k++) {
        const yk_tensor *x = inputs[k];
        if (!x)
            return yk__error(ctx, YK_EINVAL, "%s: inputs[%d] is NULL", fn, k);
        if (x->dtype != YK_I64)
            return yk__error(ctx, YK_EDTYPE, "%s: inputs[%d] is %s, needs "
                             "i64", fn, k, yk_dtype_name(x->dtype));
        const int64_t *v = x->data;
        for (int64_t i = 0; i < x->numel; i++)
            if (v[i] < 0 || v[i] >= t->V)
                return yk__error(ctx, YK_ERANGE, "%s: inputs[%d][%lld] = "
                                 "%lld is out of range for a table of %lld "
                                 "rows", fn, k, (long long)i,
                                 (long long)v[i], (long long)t->V);
        *total += x->numel;
    }
    return YK_OK;
}

/* The sorted unique rows of all inputs into t->uniq. */
static yk_status collect_ids(yk_sharded_table *t, const char *fn, int n,
                             const yk_tensor *const *inputs)
{
    int64_t total = 0;
    yk_status s = check_inputs(t, fn, n, inputs, &total);
    if (!s)
        s = reserve_uniq(t, total);
    if (s)
        return s;
    int64_t m = 0;
    for (int k = 0; k < n; k++) {
        memcpy(t->uniq + m, inputs[k]->data, (size_t)inputs[k]->numel * 8);
        m += inputs[k]->numel;
    }
    qsort(t->uniq, (size_t)m, 8, cmp_i64);
    int64_t u = 0;
    for (int64_t i = 0; i < m; i++)
        if (u == 0 || t->uniq[u - 1] != t->uniq[i])
            t->uniq[u++] = t->uniq[i];
    t->n_uniq = u;
    return YK_OK;
}

/* The temporary tables hold at least need rows (kept across steps). */
static yk_status ensure_capacity(yk_sharded_table *t, int64_t need)
{
    if (t->tmp && need <= t->cap)
        return YK_OK;
    int64_t cap = t->cap ? t->cap : 64;
    while (cap < need)
        cap *= 2;
    yk_model *tmp = yk_model_new(t->c->ctx);
    yk_param *rows[2] = {NULL, NULL};
    static const char *names[2] = {"rows", "extra_rows"};
    for (int k = 0; tmp && k < t->nparts; k++) {
        rows[k] = yk_model_add(tmp, names[k], t->dt, 2,
                               (int64_t[]){cap, t->cols[k]});
        if (!rows[k]) {
            yk_model_free(tmp);
            tmp = NULL;
        }
    }
    if (!tmp)
        return yk_last_status(t->c->ctx);
    yk_model_free(t->tmp);
    t->tmp = tmp;
    t->cap = cap;
    t->rows[0] = rows[0];
    t->rows[1] = rows[1];
    return YK_OK;
}

/* Orders the fetched rows by owner: ids[k] is sent to its owner, perm[k]
 * is its index in t->uniq; counts[o] rows go to rank o. */
static void order_by_owner(const yk_sharded_table *t, int64_t n,
                           const int64_t *rows, int64_t *ids, int64_t *perm,
                           int *counts, int *cursor)
{
    int P = t->c->size;
    memset(counts, 0, (size_t)P * sizeof *counts);
    for (int64_t j = 0; j < n; j++)
        counts[rows[j] % P]++;
    prefix_displs(counts, cursor, P);
    for (int64_t j = 0; j < n; j++) {
        int k = cursor[rows[j] % P]++;
        ids[k] = rows[j];
        perm[k] = j;
    }
}

/* Copies local rows of both parts for the requested global rows. */
static void pack_fetch_reply(const yk_sharded_table *t, int64_t n,
                             const int64_t *req, char *reply)
{
    size_t es = yk_dtype_size(t->dt);
    for (int64_t k = 0; k < n; k++) {
        int64_t lr = req[k] / t->c->size;
        for (int p = 0; p < t->nparts; p++) {
            size_t rb = (size_t)t->cols[p] * es;
            memcpy(reply, (const char *)t->shard[p]->value.data +
                              (size_t)lr * rb, rb);
            reply += rb;
        }
    }
}

static void place_fetched(yk_sharded_table *t, int64_t n, const int64_t *perm,
                          const char *got)
{
    size_t es = yk_dtype_size(t->dt);
    for (int64_t k = 0; k < n; k++)
        for (int p = 0; p < t->nparts; p++) {
            size_t rb = (size_t)t->cols[p] * es;
            memcpy((char *)t->rows[p]->value.data + (size_t)perm[k] * rb,
                   got, rb);
            got += rb;
        }
}

static int64_t sum_counts(const int *counts, int n)
{
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        s += counts[i];
    return s;
}

/* Requests t->uniq from the owners and fills the temporary tables. */
static yk_status fetch_rows(yk_sharded_table *t, const char *fn)
{
    yk_mpi *c = t->c;
    yk_ctx *ctx = c->ctx;
    int *scount = c->counts[SEND_COUNT], *rcount = c->counts[RECV_COUNT];
    int64_t n = t->n_uniq;
    size_t rb = (size_t)(t->cols[0] + t->cols[1]) * yk_dtype_size(t->dt);
    int64_t *ids = t->scr[TS_IDS].p, *perm = t->scr[TS_PERM].p;
    yk_status s;
    order_by_owner(t, n, t->uniq, ids, perm, scount, c->counts[SEND_DISPL]);
    if ((s = alltoall_counts(c, fn, scount, rcount)))
        return s;
    int64_t nreq = sum_counts(rcount, c->size);
    int64_t *req = scratch_get(ctx, &t->scr[TS_REQ], (size_t)nreq * 8);
    char *reply = req ? scratch_get(ctx, &t->scr[TS_REPLY], (size_t)nreq * rb)
                      : NULL;
    char *got = reply ? scratch_get(ctx, &t->scr[TS_GOT], (size_t)n * rb)
                      : NULL;
    if ((s = agree(c, fn, got ? YK_OK : YK_ENOMEM)))
        return s;
    if ((s = alltoallv(c, fn, ids, scount, req, rcount, MPI_INT64_T, 8)))
        return s;
    pack_fetch_reply(t, nreq, req, reply);
    if ((s = alltoallv(c, fn, reply, rcount, got, scount, t->fetch_type, rb)))
        return s;
    place_fetched(t, n, perm, got);
    return YK_OK;
}

yk_status yk_sharded_fetch(yk_sharded_table *t, int n,
                           const yk_tensor *const *inputs)
{
    const char *fn = "yk_sharded_fetch";
    if (!t)
        return YK_EINVAL;
    t->fetched = false;
    yk_status local = collect_ids(t, fn, n, inputs);
    if (!local)
        local = ensure_capacity(t, t->n_uniq > 0 ? t->n_uniq : 1);
    if (!local && (!scratch_get(t->c->ctx, &t->scr[TS_IDS],
                                (size_t)t->n_uniq * 8) ||
                   !scratch_get(t->c->ctx, &t->scr[TS_PERM],
                                (size_t)t->n_uniq * 8)))
        local = YK_ENOMEM;
    if (!local) {
        yk_model_zero_grad(t->tmp);
        for (int k = 0; k < t->nparts; k++)
            yk_param_set_requires_grad(t->rows[k],
                                       t->shard[k]->requires_grad);
    }
    yk_status s = agree(t->c, fn, local);
    if (!s)
        s = fetch_rows(t, fn);
    t->fetched = s == YK_OK;
    return s;
}

/* ------------------------------------------------------------- lookups */

/* input with every global row replaced by its row in the temporary
 * tables, as a tensor in g's arena. */
static const yk_tensor *remap_input(yk_graph *g, yk_sharded_table *t,
                                    const char *fn, const yk_tensor *input)
{
    if (!input)
        return yk__fail(g, YK_EINVAL, "%s: input is NULL", fn), NULL;
    if (input->dtype != YK_I64)
        return yk__fail(g, YK_EDTYPE, "%s: input is %s, needs i64", fn,
                        yk_dtype_name(input->dtype)), NULL;
    if (!t->fetched)
        return yk__fail(g, YK_ESTATE, "%s: no rows are fetched (call "
                        "yk_sharded_fetch before the lookups)", fn), NULL;
    yk_tensor *out = yk__arena_alloc(g, sizeof *out);
    int64_t *d = out ? yk__arena_alloc(g, (size_t)(input->numel ? input->numel
                                                                : 1) * 8)
                     : NULL;
    if (!d)
        return NULL;
    yk__tensor_init(out, yk_graph_ctx(g), YK_I64, input->ndim, input->shape,
                    input->numel);
    out->data = d;
    out->storage = YK__ARENA;
    const int64_t *v = input->data;
    for (int64_t i = 0; i < input->numel; i++) {
        const int64_t *hit = v[i] >= 0 && v[i] < t->V
            ? bsearch(&v[i], t->uniq, (size_t)t->n_uniq, 8, cmp_i64) : NULL;
        if (!hit)
            return yk__fail(g, v[i] < 0 || v[i] >= t->V ? YK_ERANGE
                                                        : YK_EINVAL,
                            "%s: input[%lld] = %lld %s", fn, (long long)i,
                            (long long)v[i], v[i] < 0 || v[i] >= t->V
                                ? "is out of range for the table"
                                : "was not fetched by yk_sharded_fetch"),
                   NULL;
        d[i] = hit - t->uniq;
    }
    return out;
}

/* A global padding_idx as a row of the temporary tables (YK_NO_PADDING
 * when this step fetched no such row: nothing looks it up). -2 - V (never a
 * valid row) when it is out of [-V, V), after failing g. */
static int64_t remap_padding(yk_graph *g, const yk_sharded_table *t,
                             const char *fn, int64_t pad)
{
    if (pad == YK_NO_PADDING)
        return YK_NO_PADDING;
    if (pad < -t->V || pad >= t->V) {
        yk__fail(g, YK_EINVAL, "%s: padding_idx = %lld is out of [-%lld, "
                 "%lld)", fn, (long long)pad, (long long)t->V,
                 (long long)t->V);
        return INT64_MIN + 1;
    }
    if (pad < 0)
        pad += t->V;
    const int64_t *hit = bsearch(&pad, t->uniq, (size_t)t->n_uniq, 8,
                                 cmp_i64);
    return hit ? hit - t->uniq : YK_NO_PADDING;
}

yk_node *yk_sharded_embedding(yk_graph *g, yk_sharded_table *t,
                              const yk_tensor *input, int64_t padding_idx,
                              bool scale_grad_by_freq, bool sparse)
{
    const char *fn = "yk_sharded_embedding";
    if (!g || yk_graph_status(g) != YK_OK)
        return NULL;
    if (!t)
        return yk__fail(g, YK_EINVAL, "%s: t is NULL", fn);
    const yk_tensor *idx = remap_input(g, t, fn, input);
    int64_t pad = idx ? remap_padding(g, t, fn, padding_idx) : 0;
    if (!idx || yk_graph_status(g) != YK_OK)
        return NULL;
    return yk_embedding(g, yk_const(g, idx), yk_param_node(g, t->rows[0]),
                        pad, scale_grad_by_freq, sparse);
}

yk_node *yk_sharded_embedding_bag(yk_graph *g, yk_sharded_table *t,
                                  bool with_extra, const yk_tensor *input,
                                  const yk_tensor *offsets,
                                  yk_node *per_sample_weights,
                                  const yk_bag_opts *opts)
{
    const char *fn = "yk_sharded_embedding_bag";
    if (!g || yk_graph_status(g) != YK_OK)
        return NULL;
    if (!t)
        return yk__fail(g, YK_EINVAL, "%s: t is NULL", fn);
    if (with_extra && t->nparts < 2)
        return yk__fail(g, YK_EINVAL, "%s: with_extra is true but the table "
                        "has no extra columns", fn);
    yk_bag_opts o = opts ? *opts : yk_bag_defaults();
    const yk_tensor *idx = remap_input(g, t, fn, input);
    o.padding_idx = idx ? remap_padding(g, t, fn, o.padding_idx) : 0;
    if (!idx || yk_graph_status(g) != YK_OK)
        return NULL;
    yk_node *w = yk_param_node(g, t->rows[0]);
    if (with_extra) {
        yk_node *parts[2] = {w, yk_param_node(g, t->rows[1])};
        w = yk_cat(g, 2, parts, 1); /* lazy, as yk_bag_layer_forward's */
    }
    return yk_embedding_bag(g, yk_const(g, idx), w,
                            offsets ? yk_const(g, offsets) : NULL,
                            per_sample_weights, &o);
}

/* ------------------------------------------------------------ backward */

/* Each part's use in this step (used by some rank, dense on some) and the
 * outcome so far, agreed by one allreduce (MAX of every field). */
typedef struct part_use {
    int status, failed_rank_plus_1, used[2], dense[2];
} part_use;

/* The buffers of push_part for either part, reserved before agreeing. */
static yk_status reserve_push(yk_sharded_table *t)
{
    yk_ctx *ctx = t->c->ctx;
    size_t n = (size_t)t->n_uniq;
    size_t rb = (size_t)(t->cols[0] > t->cols[1] ? t->cols[0] : t->cols[1]) *
                yk_dtype_size(t->dt);
    return scratch_get(ctx, &t->scr[TS_REQ], n * 8) &&
                   scratch_get(ctx, &t->scr[TS_IDS], n * 8) &&
                   scratch_get(ctx, &t->scr[TS_PERM], n * 8) &&
                   scratch_get(ctx, &t->scr[TS_REPLY], n * rb) &&
                   scratch_get(ctx, &t->scr[TS_CHUNKS],
                               (size_t)t->c->size * sizeof(yk__rowchunk))
               ? YK_OK
               : YK_ENOMEM;
}

static yk_status local_use(yk_sharded_table *t, part_use *u)
{
    memset(u, 0, sizeof *u);
    for (int p = 0; p < t->nparts; p++) {
        yk_param *tp = t->rows[p];
        u->used[p] = tp->grad_kind != YK_GRAD_NONE;
        u->dense[p] = tp->grad_kind == YK_GRAD_DENSE;
        if (tp->grad_kind == YK_GRAD_ROWS) {
            int64_t n;
            const int64_t *rows;
            const yk_tensor *vals;
            yk_status s = yk_param_grad_rows(tp, &n, &rows, &vals);
            if (s)
                return s;
        }
    }
    return reserve_push(t);
}

static yk_status agree_use(yk_sharded_table *t, const char *fn,
                           yk_status local, part_use *u)
{
    part_use all;
    u->status = (int)local;
    u->failed_rank_plus_1 = local ? t->c->rank + 1 : 0;
    int rc = MPI_Allreduce(u, &all, 6, MPI_INT, MPI_MAX, t->c->comm);
    t->c->stats.collectives++;
    if (rc != MPI_SUCCESS)
        return mpi_failed(t->c, fn, "MPI_Allreduce", rc);
    *u = all;
    if (local || all.status == YK_OK)
        return local;
    return yk__error(t->c->ctx, YK_ESTATE, "%s: rank %d failed (%s)", fn,
                     all.failed_rank_plus_1 - 1,
                     yk_status_name((yk_status)all.status));
}

/* The gradient rows of temporary part p: global ids (into ids) and a
 * pointer to their values (n rows of the part). */
static void temp_grad_rows(yk_sharded_table *t, int p, int64_t *n,
                           int64_t *ids, const char **vals)
{
    yk_param *tp = t->rows[p];
    if (tp->grad_kind == YK_GRAD_DENSE) {
        *n = t->n_uniq; /* rows beyond n_uniq were never looked up */
        memcpy(ids, t->uniq, (size_t)*n * 8);
        *vals = tp->grad->data;
    } else if (tp->grad_kind == YK_GRAD_ROWS) { /* coalesced by local_use */
        *n = tp->nrows;
        for (int64_t k = 0; k < *n; k++)
            ids[k] = t->uniq[tp->rows[k]];
        *vals = tp->row_values;
    } else {
        *n = 0;
        *vals = NULL;
    }
}

/* The received rows, one chunk per source rank in rank order, in local
 * rows of the shard, divided by the size for an average. */
static yk__rowchunk *owner_chunks(yk_sharded_table *t, int p, int64_t *req,
                                  char *got, const int *rcount,
                                  yk_mpi_reduce how)
{
    yk_mpi *c = t->c;
    yk__rowchunk *ch = scratch_get(c->ctx, &t->scr[TS_CHUNKS],
                                   (size_t)c->size * sizeof *ch);
    if (!ch)
        return NULL;
    int64_t total = sum_counts(rcount, c->size);
    for (int64_t k = 0; k < total; k++)
        req[k] /= c->size;
    if (how == YK_MPI_AVERAGE)
        scale_values(t->dt, got, total * t->cols[p], c->size);
    size_t rb = (size_t)t->cols[p] * yk_dtype_size(t->dt);
    int64_t off = 0;
    for (int q = 0; q < c->size; q++) {
        ch[q] = (yk__rowchunk){.n = rcount[q], .sparse = true,
                               .rows = req + off,
                               .values = got + (size_t)off * rb,
                               .next = q + 1 < c->size ? &ch[q + 1] : NULL};
        off += rcount[q];
    }
    return ch;
}

/* Sends part p's gradient rows to their owners and adds what this rank
 * owns into its shard's gradient. */
static yk_status push_part(yk_sharded_table *t, const char *fn, int p,
                           bool dense, yk_mpi_reduce how)
{
    yk_mpi *c = t->c;
    yk_ctx *ctx = c->ctx;
    size_t rb = (size_t)t->cols[p] * yk_dtype_size(t->dt);
    int *scount = c->counts[SEND_COUNT], *rcount = c->counts[RECV_COUNT];
    int64_t n; /* reserve_push made the buffers for n_uniq rows */
    int64_t *gids = t->scr[TS_REQ].p, *ids = t->scr[TS_IDS].p;
    int64_t *perm = t->scr[TS_PERM].p;
    char *send = t->scr[TS_REPLY].p;
    yk_status s;
    const char *vals;
    temp_grad_rows(t, p, &n, gids, &vals);
    order_by_owner(t, n, gids, ids, perm, scount, c->counts[SEND_DISPL]);
    for (int64_t k = 0; k < n; k++)
        memcpy(send + (size_t)k * rb, vals + (size_t)perm[k] * rb, rb);
    if ((s = alltoall_counts(c, fn, scount, rcount)))
        return s;
    int64_t nrecv = sum_counts(rcount, c->size);
    int64_t *req = scratch_get(ctx, &t->scr[TS_REQ], (size_t)nrecv * 8);
    char *got = req ? scratch_get(ctx, &t->scr[TS_GOT], (size_t)nrecv * rb)
                    : NULL;
    if ((s = agree(c, fn, got ? YK_OK : YK_ENOMEM)))
        return s;
    if ((s = alltoallv(c, fn, ids, scount, req, rcount, MPI_INT64_T, 8)) ||
        (s = alltoallv(c, fn, send, scount, got, rcount, t->part_type[p], rb)))
        return s;
    yk_param *shard = t->shard[p];
    if (!shard->requires_grad)
        return YK_OK;
    yk__rowchunk *ch = owner_chunks(t, p, req, got, rcount, how);
    if (!ch)
        return YK_ENOMEM;
    if (dense && (s = yk__param_add_dense(shard, NULL)))
        return s;
    return yk__param_add_rows(shard, ch, NULL);
}

yk_status yk_sharded_backward(yk_sharded_table *t, yk_mpi_reduce how)
{
    const char *fn = "yk_sharded_backward";
    if (!t)
        return YK_EINVAL;
    yk_ctx *ctx = t->c->ctx;
    part_use u = {0};
    yk_status local = YK_OK;
    if (how != YK_MPI_AVERAGE && how != YK_MPI_SUM)
        local = yk__error(ctx, YK_EINVAL, "%s: how = %d is neither "
                          "YK_MPI_AVERAGE nor YK_MPI_SUM", fn, (int)how);
    else if (!t->fetched)
        local = yk__error(ctx, YK_ESTATE, "%s: no rows are fetched, or "
                          "their gradient was already sent (call "
                          "yk_sharded_fetch each step)", fn);
    else
        local = local_use(t, &u);
    yk_status s = agree_use(t, fn, local, &u);
    for (int p = 0; !s && p < t->nparts; p++)
        if (u.used[p])
            s = push_part(t, fn, p, u.dense[p], how);
    t->fetched = false;
    return agree(t->c, fn, s);
}

/* --------------------------------------------------------- checkpoints */

#define INDEX_FORMAT "yoke-sharded"
#define STATE_MAX 4 /* state tensors of one parameter (adam amsgrad: 3) */

/* A formatted string in exactly strlen + 1 bytes (free with free_str),
 * or NULL (ENOMEM). */
static char *str_printf(yk_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *str_printf(yk_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = len >= 0 ? yk__alloc(ctx, (size_t)len + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)len + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

static void free_str(yk_ctx *ctx, char *s)
{
    if (s)
        yk__free(ctx, s, strlen(s) + 1);
}

/* "<prefix>.rank<k>-of-<n>.safetensors", or NULL (ENOMEM). */
static char *shard_path(yk_ctx *ctx, const char *prefix, int k, int n)
{
    return str_printf(ctx, "%s.rank%d-of-%d.safetensors", prefix, k, n);
}

/* "optim/<param>/<what>" */
static char *state_key(yk_ctx *ctx, const char *param, const char *what)
{
    return str_printf(ctx, "optim/%s/%s", param, what);
}

/* The tensors one rank saves: names it allocated, 0-d step tensors. */
typedef struct save_list {
    yk_named_tensor *items;
    bool *owned; /* items[i].name and .tensor were made here */
    int n, cap;
} save_list;

static yk_status save_list_add(yk_ctx *ctx, save_list *l, const char *name,
                               const yk_tensor *t, bool owned)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        yk_named_tensor *a = yk__realloc(ctx, l->items,
                                         (size_t)l->cap * sizeof *a,
                                         (size_t)cap * sizeof *a);
        if (!a)
            return YK_ENOMEM;
        l->items = a;
        bool *o = yk__realloc(ctx, l->owned, (size_t)l->cap, (size_t)cap);
        if (!o)
            return YK_ENOMEM;
        l->owned = o;
        l->cap = cap;
    }
    l->items[l->n] = (yk_named_tensor){name, t};
    l->owned[l->n++] = owned;
    return YK_OK;
}

static void save_list_free(yk_ctx *ctx, save_list *l)
{
    for (int i = 0; i < l->n; i++)
        if (l->owned[i]) {
            free_str(ctx, (char *)l->items[i].name);
            yk_tensor_free((yk_tensor *)l->items[i].tensor);
        }
    yk__free(ctx, l->items, (size_t)l->cap * sizeof *l->items);
    yk__free(ctx, l->owned, (size_t)l->cap);
}

/* Adds an owned tensor under an owned name, freeing both on failure. */
static yk_status save_owned(yk_ctx *ctx, save_list *l, char *name,
                            yk_tensor *t)
{
    yk_status s = name && t ? save_list_add(ctx, l, name, t, true)
                            : YK_ENOMEM;
    if (s) {
        free_str(ctx, name);
        yk_tensor_free(t);
    }
    return s;
}

/* p's optimizer state ("optim/<p>/<state>", copies) and step count. */
static yk_status save_state(yk_ctx *ctx, save_list *l, yk_optim *opt,
                            yk_param *p)
{
    if (!opt || !yk_optim_has(opt, p) || yk_optim_step_count(opt, p) <= 0)
        return YK_OK;
    int64_t step = yk_optim_step_count(opt, p);
    yk_status s = save_owned(ctx, l, state_key(ctx, p->name, "step"),
                             yk_tensor_from(ctx, YK_I64, 0, NULL, &step));
    for (int k = 0; !s && k < yk_optim_state_count(opt); k++) {
        const char *name = yk_optim_state_name(opt, k);
        yk_tensor *st = NULL;
        if (yk_optim_state(opt, p, name, &st) || !st)
            continue;
        s = save_owned(ctx, l, state_key(ctx, p->name, name),
                       yk_tensor_clone(st));
    }
    return s;
}

/* What rank `rank` saves: its shards, and on rank 0 every other
 * parameter, each with its optimizer state. */
static yk_status build_save_list(yk_mpi *c, const yk_model *m, yk_optim *opt,
                                 save_list *l)
{
    for (int i = 0; i < m->n; i++) {
        yk_param *p = m->params[i];
        if (!is_local(c, p) && c->rank != 0)
            continue;
        yk_status s = save_list_add(c->ctx, l, p->name, &p->value, false);
        if (!s)
            s = save_state(c->ctx, l, opt, p);
        if (s)
            return s;
    }
    return YK_OK;
}

static yk_status save_rank_file(yk_mpi *c, const char *fn, const yk_model *m,
                                yk_optim *opt, const char *prefix,
                                const yk_save_opts *opts)
{
    yk_ctx *ctx = c->ctx;
    if (opts && opts->n_extra)
        return yk__error(ctx, YK_EINVAL, "%s: extra tensors (n_extra = %d) "
                         "are not supported in a sharded checkpoint", fn,
                         opts->n_extra);
    save_list l = {0};
    yk_model *empty = yk_model_new(ctx);
    char *path = shard_path(ctx, prefix, c->rank, c->size);
    yk_status s = empty && path ? build_save_list(c, m, opt, &l) : YK_ENOMEM;
    if (!s) {
        yk_save_opts so = opts ? *opts : (yk_save_opts){0};
        so.n_extra = l.n;
        so.extra = l.items;
        s = yk_model_save(empty, path, &so);
    }
    save_list_free(ctx, &l);
    free_str(ctx, path);
    yk_model_free(empty);
    return s;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The index's JSON text (cJSON's malloc), or NULL. */
static char *index_json(yk_mpi *c, const char *prefix,
                        const yk_save_opts *opts)
{
    cJSON *root = cJSON_CreateObject(), *files = cJSON_CreateArray();
    cJSON *tables = cJSON_CreateObject();
    bool ok = root && files && tables;
    if (ok) {
        cJSON_AddItemToObject(root, "files", files);
        cJSON_AddItemToObject(root, "tables", tables);
    } else {
        cJSON_Delete(files);
        cJSON_Delete(tables);
    }
    ok = ok && cJSON_AddStringToObject(root, "format", INDEX_FORMAT) &&
         cJSON_AddNumberToObject(root, "version", 1) &&
         cJSON_AddNumberToObject(root, "world_size", c->size) &&
         cJSON_AddNumberToObject(root, "step",
                                 opts ? (double)opts->step : 0.0);
    if (ok && opts && opts->config)
        ok = cJSON_AddStringToObject(root, "config", opts->config) != NULL;
    for (int k = 0; ok && k < c->size; k++) {
        char *path = shard_path(c->ctx, base_name(prefix), k, c->size);
        cJSON *name = path ? cJSON_CreateString(path) : NULL;
        free_str(c->ctx, path);
        ok = name && cJSON_AddItemToArray(files, name);
    }
    for (int i = 0; ok && i < c->n_tables; i++)
        for (int p = 0; ok && p < c->tables[i]->nparts; p++) {
            cJSON *entry = cJSON_AddObjectToObject(
                tables, c->tables[i]->shard[p]->name);
            ok = entry && cJSON_AddNumberToObject(entry, "rows",
                                                  (double)c->tables[i]->V);
        }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return text;
}

static yk_status io_failed(yk_ctx *ctx, const char *fn, const char *path,
                           const char *what)
{
    char buf[128];
    const char *err = strerror_r(errno, buf, sizeof buf);
    return yk__error(ctx, YK_EIO, "%s: %s \"%s\": %s", fn, what, path, err);
}

static yk_status write_all(const yk_io *io, int fd, const char *data,
                           size_t len)
{
    while (len > 0) {
        ptrdiff_t w = io->write(io->ud, fd, data, len);
        if (w <= 0)
            return YK_EIO;
        data += w;
        len -= (size_t)w;
    }
    return YK_OK;
}

/* Writes text to path atomically through io: a temporary file in the same
 * folder, fsync'ed, renamed over path, the folder fsync'ed. */
static yk_status write_atomic(yk_ctx *ctx, const char *fn, const yk_io *io,
                              const char *path, const char *text)
{
    char *tmp = str_printf(ctx, "%s.tmp.%ld", path, (long)getpid());
    char *dir = yk__strdup(ctx, path);
    yk_status s = tmp && dir ? YK_OK : YK_ENOMEM;
    int fd = -1;
    if (!s) {
        char *slash = strrchr(dir, '/');
        if (slash)
            slash[slash == dir ? 1 : 0] = '\0';
        else
            strcpy(dir, ".");
        fd = io->open(io->ud, tmp);
        if (fd < 0)
            s = io_failed(ctx, fn, tmp, "cannot create");
    }
    if (!s && (write_all(io, fd, text, strlen(text)) ||
               io->fsync(io->ud, fd) < 0))
        s = io_failed(ctx, fn, tmp, "cannot write");
    if (fd >= 0 && io->close(io->ud, fd) < 0 && !s)
        s = io_failed(ctx, fn, tmp, "cannot close");
    if (!s && io->rename(io->ud, tmp, path) < 0)
        s = io_failed(ctx, fn, path, "cannot rename onto");
    if (fd >= 0 && s)
        io->unlink(io->ud, tmp);
    if (!s && io->sync_dir(io->ud, dir) < 0)
        s = io_failed(ctx, fn, dir, "cannot sync the folder of");
    free_str(ctx, tmp);
    free_str(ctx, dir);
    return s;
}

static yk_status save_index(yk_mpi *c, const char *fn, const char *prefix,
                            const yk_save_opts *opts)
{
    char *text = index_json(c, prefix, opts);
    char *path = text ? str_printf(c->ctx, "%s.index.json", prefix) : NULL;
    yk_status s = path ? YK_OK : yk__error(c->ctx, YK_ENOMEM, "%s: out of "
                                           "memory writing the index", fn);
    if (!s) {
        const yk_io *io = opts && opts->io ? opts->io : yk_io_posix();
        s = write_atomic(c->ctx, fn, io, path, text);
    }
    free_str(c->ctx, path);
    cJSON_free(text);
    return s;
}

yk_status yk_mpi_save(yk_mpi *c, const yk_model *m, yk_optim *opt,
                      const char *prefix, const yk_save_opts *opts)
{
    const char *fn = "yk_mpi_save";
    if (!c)
        return YK_EINVAL;
    yk_status local = check_model(c, fn, m);
    if (!local && (!prefix || !*prefix))
        local = yk__error(c->ctx, YK_EINVAL, "%s: prefix is empty", fn);
    if (!local)
        local = save_rank_file(c, fn, m, opt, prefix, opts);
    yk_status s = agree(c, fn, local);
    /* The index is the commit point: written once every file is there. */
    if (!s && c->rank == 0)
        local = save_index(c, fn, prefix, opts);
    return s ? s : agree(c, fn, local);
}

/* ------------------------------------------------------------- loading */

typedef struct ckpt_index {
    cJSON *root;
    int world;
    const cJSON *files, *tables;
    int64_t step;
} ckpt_index;

/* One parameter to load: its staged value and optimizer state, copied into
 * place only when every rank has read everything. */
typedef struct load_item {
    yk_param *p;
    int64_t V; /* global rows when p is a shard here, else 0 */
    yk_tensor *value;
    yk_tensor *state[STATE_MAX];
    bool has_step;
    int64_t step;
} load_item;

static char *read_text(yk_ctx *ctx, const char *fn, const char *path,
                       size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        io_failed(ctx, fn, path, "cannot open");
        return NULL;
    }
    char *text = NULL;
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (len >= 0 && fseek(f, 0, SEEK_SET) == 0)
        text = yk__alloc(ctx, (size_t)len + 1);
    if (text && fread(text, 1, (size_t)len, f) != (size_t)len) {
        yk__free(ctx, text, (size_t)len + 1);
        text = NULL;
        io_failed(ctx, fn, path, "cannot read");
    } else if (!text && len < 0) {
        io_failed(ctx, fn, path, "cannot read");
    }
    fclose(f);
    *size = (size_t)len + 1;
    return text;
}

static bool json_int(const cJSON *x, int64_t lo, int64_t *out)
{
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) ||
        x->valuedouble < (double)lo || x->valuedouble > 9007199254740992.0)
        return false;
    *out = (int64_t)x->valuedouble;
    return true;
}

static yk_status parse_index(yk_ctx *ctx, const char *fn, const char *path,
                             const char *text, ckpt_index *ix)
{
    ix->root = cJSON_Parse(text);
    if (!ix->root || !cJSON_IsObject(ix->root))
        return yk__error(ctx, YK_EFORMAT, "%s: %s is not a JSON object", fn,
                         path);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(ix->root, "format");
    int64_t version = 0, world = 0, step = 0;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, INDEX_FORMAT))
        return yk__error(ctx, YK_EFORMAT, "%s: %s: \"format\" is not \"%s\"",
                         fn, path, INDEX_FORMAT);
    if (!json_int(cJSON_GetObjectItemCaseSensitive(ix->root, "version"), 1,
                  &version) || version != 1)
        return yk__error(ctx, YK_EFORMAT, "%s: %s: \"version\" is not 1", fn,
                         path);
    if (!json_int(cJSON_GetObjectItemCaseSensitive(ix->root, "world_size"),
                  1, &world) || world > INT_MAX)
        return yk__error(ctx, YK_EFORMAT, "%s: %s: \"world_size\" is not an "
                         "integer >= 1", fn, path);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(ix->root, "step");
    if (st && !json_int(st, INT64_MIN / 2, &step))
        return yk__error(ctx, YK_EFORMAT, "%s: %s: \"step\" is not an "
                         "integer", fn, path);
    ix->world = (int)world;
    ix->step = step;
    ix->files = cJSON_GetObjectItemCaseSensitive(ix->root, "files");
    if (!cJSON_IsArray(ix->files) ||
        cJSON_GetArraySize(ix->files) != ix->world)
        return yk__error(ctx, YK_EFORMAT, "%s: %s: \"files\" is not a list of "
                         "%d names", fn, path, ix->world);
    for (int k = 0; k < ix->world; k++) {
        const cJSON *f = cJSON_GetArrayItem(ix->files, k);
        if (!cJSON_IsString(f) || strchr(f->valuestring, '/'))
            return yk__error(ctx, YK_EFORMAT, "%s: %s: files[%d] is not a "
                             "file name", fn, path, k);
    }
    ix->tables = cJSON_GetObjectItemCaseSensitive(ix->root, "tables");
    if (!cJSON_IsObject(ix->tables))
        return yk__error(ctx, YK_EFORMAT, "%s: %s: \"tables\" is not an "
                         "object", fn, path);
    return YK_OK;
}

/* Rows of table `name` in the index, 0 when it is not a table there, -1
 * when its entry is malformed. */
static int64_t index_rows(const ckpt_index *ix, const char *name)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(ix->tables, name);
    int64_t rows;
    if (!e)
        return 0;
    return json_int(cJSON_GetObjectItemCaseSensitive(e, "rows"), 1, &rows)
               ? rows : -1;
}

static int64_t table_rows_of(const yk_mpi *c, const yk_param *p)
{
    for (int i = 0; i < c->n_tables; i++)
        for (int k = 0; k < c->tables[i]->nparts; k++)
            if (c->tables[i]->shard[k] == p)
                return c->tables[i]->V;
    return 0;
}

static yk_status plan_load(yk_mpi *c, const char *fn, yk_model *m,
                           const ckpt_index *ix, const char *ipath,
                           load_item *items)
{
    for (int i = 0; i < m->n; i++) {
        yk_param *p = m->params[i];
        int64_t V = table_rows_of(c, p), rows = index_rows(ix, p->name);
        items[i].p = p;
        items[i].V = V;
        if (rows != V)
            return yk__error(c->ctx, YK_EFORMAT, "%s: parameter \"%s\" is "
                             "%s here, and %s%lld%s in %s", fn, p->name,
                             V ? "a sharded table" : "not sharded",
                             rows > 0 ? "a table of " : "",
                             (long long)(rows > 0 ? rows : 0),
                             rows > 0 ? " rows" : " rows (not sharded)",
                             ipath);
        items[i].value = yk_tensor_zeros(c->ctx, p->value.dtype,
                                         p->value.ndim, p->value.shape);
        if (!items[i].value)
            return YK_ENOMEM;
    }
    return YK_OK;
}

static void free_items(load_item *items, int n)
{
    for (int i = 0; items && i < n; i++) {
        yk_tensor_free(items[i].value);
        for (int k = 0; k < STATE_MAX; k++)
            yk_tensor_free(items[i].state[k]);
    }
}

/* Copies into dest (this rank's rows) the rows of tensor `name` of file k,
 * saved by rank k of n_old: local row i there is global row k + i n_old. */
static yk_status read_rows(yk_mpi *c, const char *fn, yk_safetensors *f,
                           const char *path, const char *name,
                           yk_tensor *dest, int k, int n_old, int64_t V)
{
    yk_ctx *ctx = c->ctx;
    int i = yk_safetensors_find(f, name);
    if (i < 0)
        return yk__error(ctx, YK_EFORMAT, "%s: %s has no tensor \"%s\"", fn,
                         path, name);
    const int64_t *sh = yk_safetensors_shape(f, i);
    int64_t rows = shard_rows(V, k, n_old);
    bool fits = yk_safetensors_ndim(f, i) == dest->ndim && sh[0] == rows;
    for (int d = 1; fits && d < dest->ndim; d++)
        fits = sh[d] == dest->shape[d];
    if (!fits)
        return yk__error(ctx, YK_ESHAPE, "%s: tensor \"%s\" of %s does not "
                         "hold %lld rows of a [%lld, ...] table shard shaped "
                         "like its parameter", fn, name, path,
                         (long long)rows, (long long)V);
    yk_tensor *src = yk_safetensors_get(f, name);
    if (!src)
        return yk_last_status(ctx);
    yk_status s = YK_OK;
    if (src->dtype != dest->dtype) {
        s = yk__error(ctx, YK_EDTYPE, "%s: tensor \"%s\" of %s is %s, "
                      "expected %s", fn, name, path,
                      yk_dtype_name(src->dtype), yk_dtype_name(dest->dtype));
    } else {
        size_t rb = (size_t)yk__rowlen(dest) * yk_dtype_size(dest->dtype);
        for (int64_t r = k, j = 0; j < rows; r += n_old, j++)
            if (r % c->size == c->rank)
                memcpy((char *)dest->data + (size_t)(r / c->size) * rb,
                       (const char *)src->data + (size_t)j * rb, rb);
    }
    yk_tensor_free(src);
    return s;
}

/* Reads a whole tensor (a replicated parameter's) into dest. */
static yk_status read_whole(yk_ctx *ctx, const char *fn, yk_safetensors *f,
                            const char *path, const char *name,
                            yk_tensor *dest)
{
    if (yk_safetensors_find(f, name) < 0)
        return yk__error(ctx, YK_EFORMAT, "%s: %s has no tensor \"%s\"", fn,
                         path, name);
    return yk_safetensors_read(f, name, dest);
}

/* A new tensor for the state `key` of an item, shaped like the file's
 * (with this rank's rows for a shard). */
static yk_tensor *state_staging(yk_mpi *c, yk_safetensors *f, int i,
                                const load_item *it)
{
    int64_t shape[YK_MAX_DIMS];
    int nd = yk_safetensors_ndim(f, i);
    const char *dt = yk_safetensors_dtype(f, i);
    if (nd < 1 && it->V)
        return NULL;
    memcpy(shape, yk_safetensors_shape(f, i), (size_t)nd * 8);
    if (it->V)
        shape[0] = shard_rows(it->V, c->rank, c->size);
    yk_dtype t = !strcmp(dt, "F32") ? YK_F32 : YK_F64;
    return yk_tensor_zeros(c->ctx, t, nd, shape);
}

static yk_status load_item_state(yk_mpi *c, const char *fn,
                                 yk_safetensors *f, const char *path, int k,
                                 int n_old, load_item *it, yk_optim *opt)
{
    yk_ctx *ctx = c->ctx;
    yk_status s = YK_OK;
    for (int j = 0; !s && j < yk_optim_state_count(opt) && j < STATE_MAX;
         j++) {
        char *key = state_key(ctx, it->p->name, yk_optim_state_name(opt, j));
        int i = key ? yk_safetensors_find(f, key) : -1;
        if (!key)
            s = YK_ENOMEM;
        else if (i < 0 && it->state[j])
            s = yk__error(ctx, YK_EFORMAT, "%s: %s has no tensor \"%s\"", fn,
                          path, key);
        else if (i >= 0) {
            if (!it->state[j] && !(it->state[j] = state_staging(c, f, i, it)))
                s = yk__error(ctx, YK_EFORMAT, "%s: tensor \"%s\" of %s "
                              "cannot be a state", fn, key, path);
            else if (it->V)
                s = read_rows(c, fn, f, path, key, it->state[j], k, n_old,
                              it->V);
            else
                s = yk_safetensors_read(f, key, it->state[j]);
        }
        free_str(ctx, key);
    }
    char *key = s ? NULL : state_key(ctx, it->p->name, "step");
    int i = key ? yk_safetensors_find(f, key) : -1;
    if (i >= 0 && !it->has_step) {
        yk_tensor *st = yk_safetensors_get(f, key);
        if (!st || st->dtype != YK_I64 || st->numel != 1)
            s = yk__error(ctx, YK_EFORMAT, "%s: \"%s\" of %s is not one i64",
                          fn, key, path);
        else
            it->step = ((const int64_t *)st->data)[0];
        it->has_step = !s;
        yk_tensor_free(st);
    }
    free_str(ctx, key);
    return s;
}

/* Every tensor of file k must be something this load asked for. */
static yk_status check_unexpected(yk_mpi *c, const char *fn,
                                  yk_safetensors *f, const char *path, int k,
                                  yk_model *m, yk_optim *opt)
{
    for (int i = 0; i < yk_safetensors_count(f); i++) {
        const char *name = yk_safetensors_name(f, i);
        if (!strncmp(name, "optim/", 6)) {
            if (!opt)
                continue;
            const char *slash = strrchr(name, '/');
            char param[256];
            size_t len = (size_t)(slash - name - 6);
            if (len < sizeof param) {
                memcpy(param, name + 6, len);
                param[len] = '\0';
                yk_param *p = yk_model_find(m, param);
                if (p && yk_optim_has(opt, p))
                    continue;
            }
        } else {
            yk_param *p = yk_model_find(m, name);
            if (p && (k == 0 || is_local(c, p)))
                continue;
        }
        return yk__error(c->ctx, YK_EFORMAT, "%s: unexpected tensor \"%s\" "
                         "in %s", fn, name, path);
    }
    return YK_OK;
}

static int gcd(int a, int b)
{
    while (b) {
        int r = a % b;
        a = b;
        b = r;
    }
    return a;
}

/* Does file k of n_old hold rows of this rank? Its rows are r = k mod
 * n_old, this rank's r = rank mod size: both hold for some r exactly when
 * k = rank mod gcd(n_old, size) (Chinese remainders). With the same number
 * of ranks, only file `rank`. */
static bool file_has_my_rows(const yk_mpi *c, int k, int n_old)
{
    int g = gcd(n_old, c->size);
    return k % g == c->rank % g;
}

static yk_status load_file(yk_mpi *c, const char *fn, const char *path,
                           int k, int n_old, yk_model *m, load_item *items,
                           yk_optim *opt)
{
    yk_safetensors *f = yk_safetensors_open(c->ctx, path);
    if (!f)
        return yk_last_status(c->ctx);
    yk_status s = check_unexpected(c, fn, f, path, k, m, opt);
    bool mine = file_has_my_rows(c, k, n_old);
    for (int i = 0; !s && i < m->n; i++) {
        load_item *it = &items[i];
        bool use = it->V ? mine : k == 0;
        if (use && it->V)
            s = read_rows(c, fn, f, path, it->p->name, it->value, k, n_old,
                          it->V);
        else if (use)
            s = read_whole(c->ctx, fn, f, path, it->p->name, it->value);
        if (!s && use && opt && yk_optim_has(opt, it->p))
            s = load_item_state(c, fn, f, path, k, n_old, it, opt);
    }
    yk_safetensors_close(f);
    return s;
}

/* The path of file k: the index's name, in the folder of prefix. */
static char *file_path(yk_ctx *ctx, const char *prefix, const char *name)
{
    const char *base = base_name(prefix);
    size_t dirlen = (size_t)(base - prefix);
    size_t size = dirlen + strlen(name) + 1;
    char *path = yk__alloc(ctx, size);
    if (path) {
        memcpy(path, prefix, dirlen);
        strcpy(path + dirlen, name);
    }
    return path;
}

static yk_status read_all_files(yk_mpi *c, const char *fn, const char *prefix,
                                const ckpt_index *ix, yk_model *m,
                                load_item *items, yk_optim *opt)
{
    yk_status s = YK_OK;
    for (int k = 0; !s && k < ix->world; k++) {
        if (k != 0 && !file_has_my_rows(c, k, ix->world))
            continue; /* file 0 holds the replicated parameters */
        const cJSON *name = cJSON_GetArrayItem(ix->files, k);
        char *path = file_path(c->ctx, prefix, name->valuestring);
        s = path ? load_file(c, fn, path, k, ix->world, m, items, opt)
                 : YK_ENOMEM;
        free_str(c->ctx, path);
    }
    return s;
}

/* The staged optimizer states must fit their parameters before anything
 * is copied: p's shape, or [rows] for rowwise_adagrad. */
static yk_status check_states(yk_mpi *c, const char *fn, load_item *items,
                              int n, yk_optim *opt)
{
    bool rowwise = yk_optim_kind_of(opt) == YK_OPTIM_ROWWISE_ADAGRAD;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < STATE_MAX; j++) {
            const yk_tensor *st = items[i].state[j];
            const yk_tensor *pv = &items[i].p->value;
            if (!st)
                continue;
            bool fits = st->dtype == pv->dtype &&
                        (rowwise ? st->ndim == 1 && pv->ndim >= 1 &&
                                       st->shape[0] == pv->shape[0]
                                 : yk__same_shape(st, pv));
            if (!fits)
                return yk__error(c->ctx, YK_ESHAPE, "%s: the saved state "
                                 "\"%s\" of parameter \"%s\" does not fit "
                                 "it", fn, yk_optim_state_name(opt, j),
                                 items[i].p->name);
        }
    return YK_OK;
}

static yk_status commit_items(load_item *items, int n, yk_optim *opt)
{
    for (int i = 0; i < n; i++) {
        yk_param *p = items[i].p;
        memcpy(p->value.data, items[i].value->data,
               yk_tensor_nbytes(&p->value));
        for (int j = 0; opt && j < STATE_MAX; j++) {
            if (!items[i].state[j])
                continue;
            yk_status s = yk_optim_set_state(opt, p,
                                             yk_optim_state_name(opt, j),
                                             items[i].state[j]);
            if (s)
                return s;
        }
        if (opt && items[i].has_step) {
            yk_status s = yk_optim_set_step_count(opt, p, items[i].step);
            if (s)
                return s;
        }
    }
    return YK_OK;
}

static yk_status load_staged(yk_mpi *c, const char *fn, yk_model *m,
                             yk_optim *opt, const char *prefix,
                             const ckpt_index *ix, const char *ipath,
                             load_item *items)
{
    yk_status s = plan_load(c, fn, m, ix, ipath, items);
    if (!s)
        s = read_all_files(c, fn, prefix, ix, m, items, opt);
    if (!s && opt)
        s = check_states(c, fn, items, m->n, opt);
    return s;
}

yk_status yk_mpi_load(yk_mpi *c, yk_model *m, yk_optim *opt,
                      const char *prefix, int64_t *step)
{
    const char *fn = "yk_mpi_load";
    if (!c)
        return YK_EINVAL;
    yk_ctx *ctx = c->ctx;
    yk_status local = check_model(c, fn, m);
    if (!local && (!prefix || !*prefix))
        local = yk__error(ctx, YK_EINVAL, "%s: prefix is empty", fn);
    ckpt_index ix = {0};
    char *ipath = NULL, *text = NULL;
    size_t text_size = 0;
    load_item *items = NULL;
    size_t items_size = m ? (size_t)(m->n ? m->n : 1) * sizeof *items : 0;
    if (!local && !(ipath = str_printf(ctx, "%s.index.json", prefix)))
        local = YK_ENOMEM;
    if (!local) {
        text = read_text(ctx, fn, ipath, &text_size);
        local = text ? parse_index(ctx, fn, ipath, text, &ix)
                     : yk_last_status(ctx);
    }
    if (!local && !(items = yk__alloc(ctx, items_size)))
        local = YK_ENOMEM;
    if (!local)
        local = load_staged(c, fn, m, opt, prefix, &ix, ipath, items);
    yk_status s = agree(c, fn, local);
    if (!s)
        s = agree(c, fn, commit_items(items, m->n, opt));
    if (!s && step)
        *step = ix.step;
    free_items(items, m ? m->n : 0);
    yk__free(ctx, items, items_size);
    yk__free(ctx, text, text_size);
    free_str(ctx, ipath);
    cJSON_Delete(ix.root);
    return s;
}
