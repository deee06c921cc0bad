/*
 * checkpoint.c -- safetensors checkpoints: an atomic writer whose every
 * write goes through a yk_io hook, a reader that validates the whole file
 * before anything trusts it, and model save / load on top of both.
 *
 * The header's JSON tree is built and parsed with cJSON, which allocates
 * with malloc (its hooks are global, so they cannot follow a context's
 * allocator); everything else, the file's bytes included, goes through the
 * context. Every cJSON allocation failure is handled as YK_ENOMEM.
 */
#include "engine.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* safetensors stores little-endian data and we copy bytes as they are. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_IS_LITTLE_ENDIAN 0
#else
#define HOST_IS_LITTLE_ENDIAN 1
#endif

#define FORMAT_VERSION "1"
#define METADATA_KEY "__metadata__"
/* Integers in JSON are read as doubles: exact up to 2^53. */
#define MAX_JSON_INT 9007199254740992.0
/* One write(2) call moves at most this much (Linux stops near 2 GiB). */
#define MAX_WRITE_CHUNK ((size_t)1 << 30)

static const char *errno_text(int err, char *buf, size_t size)
{
    return strerror_r(err, buf, size); /* the GNU variant (_GNU_SOURCE) */
}

static yk_status big_endian_refused(yk_ctx *ctx, const char *fn)
{
    return yk__error(ctx, YK_ENOTIMPL, "%s: safetensors files on a "
                     "big-endian host are not supported yet", fn);
}

/* "[2, 3]" for any shape, into buf. */
static const char *dims_text(char *buf, size_t size, int ndim,
                             const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld",
                                i ? ", " : "", (long long)shape[i]);
    if (len < size)
        snprintf(buf + len, size - len, "]");
    return buf;
}

/* yk__alloc turns a request for 0 bytes into 1; these ask for and free
 * the same non-zero size, so an allocator that checks sizes agrees. */
static void *block_alloc(yk_ctx *ctx, size_t n)
{
    return yk__alloc(ctx, n ? n : 1);
}

static void block_free(yk_ctx *ctx, void *p, size_t n)
{
    yk__free(ctx, p, n ? n : 1);
}

/* ====================================================================
 * dtypes as safetensors spells them
 * ==================================================================== */

typedef struct st_dtype {
    const char *name;
    size_t size;
    int yk; /* yk_dtype, or -1 for those yoke has no type for */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, YK_F32},   {"F64", 8, YK_F64},     {"I64", 8, YK_I64},
    {"BOOL", 1, -1},      {"U8", 1, -1},          {"I8", 1, -1},
    {"F8_E5M2", 1, -1},   {"F8_E4M3", 1, -1},     {"I16", 2, -1},
    {"U16", 2, -1},       {"F16", 2, -1},         {"BF16", 2, -1},
    {"I32", 4, -1},       {"U32", 4, -1},         {"U64", 8, -1},
};

static const st_dtype *st_dtype_find(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (strcmp(st_dtypes[i].name, name) == 0)
            return &st_dtypes[i];
    return NULL;
}

static const char *st_dtype_of(yk_dtype dt)
{
    return dt == YK_F32 ? "F32" : dt == YK_F64 ? "F64" : "I64";
}

/* ====================================================================
 * The I/O hook: the real file system
 * ==================================================================== */

static int posix_open(void *ud, const char *path)
{
    (void)ud;
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
}

static ptrdiff_t posix_write(void *ud, int fd, const void *buf, size_t n)
{
    (void)ud;
    ssize_t w;
    do
        w = write(fd, buf, n);
    while (w < 0 && errno == EINTR);
    return w;
}

static int posix_fsync(void *ud, int fd)
{
    (void)ud;
    return fsync(fd);
}

static int posix_close(void *ud, int fd)
{
    (void)ud;
    return close(fd);
}

static int posix_rename(void *ud, const char *from, const char *to)
{
    (void)ud;
    return rename(from, to);
}

static int posix_unlink(void *ud, const char *path)
{
    (void)ud;
    return unlink(path);
}

static int posix_sync_dir(void *ud, const char *dir)
{
    (void)ud;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int err = errno;
    close(fd);
    /* Some file systems cannot sync a folder; there is nothing more to do. */
    if (r < 0 && (err == EINVAL || err == ENOTSUP))
        r = 0;
    errno = err;
    return r;
}

static const yk_io posix_io = {
    .ud = NULL,
    .open = posix_open,
    .write = posix_write,
    .fsync = posix_fsync,
    .close = posix_close,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .sync_dir = posix_sync_dir,
};

const yk_io *yk_io_posix(void) { return &posix_io; }

/* ====================================================================
 * Saving: the header
 * ==================================================================== */

static bool add_int(cJSON *array, uint64_t v)
{
    /* Raw text, not a cJSON number: cJSON would print 1e15 as "1e+15",
     * which strict readers refuse as an offset. */
    char text[24];
    snprintf(text, sizeof text, "%llu", (unsigned long long)v);
    cJSON *x = cJSON_CreateRaw(text);
    if (x && cJSON_AddItemToArray(array, x))
        return true;
    cJSON_Delete(x);
    return false;
}

static bool add_tensor_entry(cJSON *root, const char *name,
                             const yk_tensor *t, uint64_t begin)
{
    cJSON *e = cJSON_AddObjectToObject(root, name);
    if (!e || !cJSON_AddStringToObject(e, "dtype", st_dtype_of(t->dtype)))
        return false;
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    if (!shape)
        return false;
    for (int i = 0; i < t->ndim; i++)
        if (!add_int(shape, (uint64_t)t->shape[i]))
            return false;
    cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
    return off && add_int(off, begin) &&
           add_int(off, begin + yk_tensor_nbytes(t));
}

static bool add_metadata(cJSON *root, const yk_save_opts *o,
                         const char *optimizer)
{
    char step[24];
    snprintf(step, sizeof step, "%lld", (long long)o->step);
    cJSON *meta = cJSON_AddObjectToObject(root, METADATA_KEY);
    return meta &&
           cJSON_AddStringToObject(meta, "yoke_format_version",
                                   FORMAT_VERSION) &&
           cJSON_AddStringToObject(meta, "step", step) &&
           (!o->config || cJSON_AddStringToObject(meta, "config", o->config)) &&
           (!optimizer ||
            cJSON_AddStringToObject(meta, "optimizer", optimizer));
}

/* The tensors of one save, in file order. */
typedef struct save_list {
    yk_ctx *ctx;
    const char *fn;
    yk_named_tensor *items;
    int n, cap;
    char **owned;          /* names made here ("optim/W/exp_avg") */
    int n_owned;
    yk_tensor *steps;      /* 0-d i64 headers over step_values */
    int64_t *step_values;
    int n_steps, cap_steps;
    const char *optimizer; /* kind name for the metadata, or NULL */
} save_list;

/* The file's first bytes: the header length, the JSON, spaces up to a
 * multiple of 8 (as the reference writer pads). Context memory. */
static unsigned char *header_bytes(const save_list *l, const yk_save_opts *o,
                                   size_t *size)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root && add_metadata(root, o, l->optimizer);
    uint64_t offset = 0;
    for (int i = 0; ok && i < l->n; i++) {
        ok = add_tensor_entry(root, l->items[i].name, l->items[i].tensor,
                              offset);
        offset += yk_tensor_nbytes(l->items[i].tensor);
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) {
        yk__error(l->ctx, YK_ENOMEM, "%s: out of memory building the header",
                  l->fn);
        return NULL;
    }
    size_t len = strlen(json);
    size_t padded = (8 + len + 7) / 8 * 8 - 8;
    unsigned char *buf = yk__alloc(l->ctx, 8 + padded);
    if (buf) {
        for (int i = 0; i < 8; i++)
            buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        memcpy(buf + 8, json, len);
        memset(buf + 8 + len, ' ', padded - len);
        *size = 8 + padded;
    }
    cJSON_free(json);
    return buf;
}

/* ====================================================================
 * Saving: the tensors to write, checked
 * ==================================================================== */

static bool name_taken(const save_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return true;
    return false;
}

/* Appends (name, t) unless the name is already in the list. */
static yk_status list_add(save_list *l, const char *name, const yk_tensor *t)
{
    if (name_taken(l, name))
        return yk__error(l->ctx, YK_EINVAL, "%s: \"%s\" is the name of two "
                         "tensors (parameters, extras and optimizer state "
                         "share one namespace)", l->fn, name);
    l->items[l->n++] = (yk_named_tensor){name, t};
    return YK_OK;
}

static yk_status check_extra(const save_list *l, const yk_named_tensor *x,
                             int k)
{
    if (!x->name || !*x->name)
        return yk__error(l->ctx, YK_EINVAL, "%s: extra[%d] has %s name",
                         l->fn, k, x->name ? "an empty" : "a NULL");
    if (!x->tensor)
        return yk__error(l->ctx, YK_EINVAL, "%s: extra[%d] \"%s\" has a NULL "
                         "tensor", l->fn, k, x->name);
    return YK_OK;
}

/* "optim/<param>/<what>" in context memory, remembered for freeing. */
static const char *optim_name(save_list *l, const yk_param *p,
                              const char *what)
{
    size_t n = strlen(p->name) + strlen(what) + 8;
    char *s = yk__alloc(l->ctx, n);
    if (s) {
        snprintf(s, n, "optim/%s/%s", p->name, what);
        l->owned[l->n_owned++] = s;
    }
    return s;
}

/* p's step count as a 0-d i64 tensor of the list. */
static const yk_tensor *step_tensor(save_list *l, int64_t step)
{
    int k = l->n_steps++;
    l->step_values[k] = step;
    yk__tensor_init(&l->steps[k], l->ctx, YK_I64, 0, NULL, 1);
    l->steps[k].data = &l->step_values[k];
    l->steps[k].storage = YK__BORROWED;
    return &l->steps[k];
}

/* The state of p, if it has one: "optim/<p>/step" then each tensor. */
static yk_status add_optim_param(save_list *l, yk_optim *o, yk_param *p)
{
    int ns = yk_optim_state_count(o);
    yk_tensor *first = NULL;
    if (ns > 0)
        yk_optim_state(o, p, yk_optim_state_name(o, 0), &first);
    int64_t step = yk_optim_step_count(o, p);
    if (!first && step <= 0)
        return YK_OK; /* never stepped, or frozen: no state */
    const char *name = optim_name(l, p, "step");
    yk_status s = name ? list_add(l, name, step_tensor(l, step)) : YK_ENOMEM;
    for (int i = 0; i < ns && !s; i++) {
        yk_tensor *t = NULL;
        yk_optim_state(o, p, yk_optim_state_name(o, i), &t);
        if (!t)
            continue;
        name = optim_name(l, p, yk_optim_state_name(o, i));
        s = name ? list_add(l, name, t) : YK_ENOMEM;
    }
    return s;
}

static yk_status list_alloc(save_list *l, int n_items, int n_optim)
{
    l->cap = n_items;
    l->cap_steps = n_optim;
    l->items = block_alloc(l->ctx, (size_t)n_items * sizeof *l->items);
    l->owned = l->items ? block_alloc(l->ctx, (size_t)n_items *
                                                  sizeof *l->owned) : NULL;
    l->steps = l->owned ? block_alloc(l->ctx, (size_t)n_optim *
                                                  sizeof *l->steps) : NULL;
    l->step_values = l->steps ? block_alloc(l->ctx, (size_t)n_optim *
                                                        sizeof(int64_t))
                              : NULL;
    return l->step_values ? YK_OK : YK_ENOMEM;
}

static void list_free(save_list *l)
{
    for (int i = 0; i < l->n_owned; i++)
        yk__free(l->ctx, l->owned[i], strlen(l->owned[i]) + 1);
    if (l->items)
        block_free(l->ctx, l->items, (size_t)l->cap * sizeof *l->items);
    if (l->owned)
        block_free(l->ctx, l->owned, (size_t)l->cap * sizeof *l->owned);
    if (l->steps)
        block_free(l->ctx, l->steps, (size_t)l->cap_steps * sizeof *l->steps);
    if (l->step_values)
        block_free(l->ctx, l->step_values, (size_t)l->cap_steps *
                                               sizeof(int64_t));
}

/* Parameters in insertion order, the extras, then o's state (o may be
 * NULL), every name checked. */
static yk_status list_build(save_list *l, const yk_model *m, yk_optim *o,
                            const yk_save_opts *opts)
{
    int np = yk_model_count(m);
    int no = o ? yk_optim_count(o) : 0;
    int ns = o ? yk_optim_state_count(o) : 0;
    yk_status s = list_alloc(l, np + opts->n_extra + no * (ns + 1), no);
    for (int i = 0; i < np && !s; i++) {
        yk_param *p = yk_model_at(m, i);
        s = list_add(l, p->name, &p->value);
    }
    for (int k = 0; k < opts->n_extra && !s; k++) {
        s = check_extra(l, &opts->extra[k], k);
        if (!s)
            s = list_add(l, opts->extra[k].name, opts->extra[k].tensor);
    }
    for (int i = 0; i < no && !s; i++)
        s = add_optim_param(l, o, yk_optim_param_at(o, i));
    if (!s && name_taken(l, METADATA_KEY))
        s = yk__error(l->ctx, YK_EINVAL, "%s: \"" METADATA_KEY "\" is "
                      "reserved by safetensors and cannot name a tensor",
                      l->fn);
    l->optimizer = o ? yk_optim_kind_name(yk_optim_kind_of(o)) : NULL;
    return s;
}

/* ====================================================================
 * Saving: the atomic write
 * ==================================================================== */

typedef struct atomic_file {
    yk_ctx *ctx;
    const char *fn;
    const yk_io *io;
    const char *path; /* the target */
    char *tmp;        /* "<path>.tmp.<pid>.<n>" */
    char *dir;        /* the target's folder */
    int fd;
} atomic_file;

static yk_status save_failed(atomic_file *a, const char *what, int err)
{
    char text[128];
    return yk__error(a->ctx, YK_EIO, "%s: %s \"%s\" failed: %s (\"%s\" is "
                     "left as it was)", a->fn, what, a->tmp,
                     errno_text(err, text, sizeof text), a->path);
}

/* Closes and removes the temporary file after a failure. */
static void discard_temp(atomic_file *a)
{
    if (a->fd >= 0)
        a->io->close(a->io->ud, a->fd);
    a->fd = -1;
    a->io->unlink(a->io->ud, a->tmp);
}

static yk_status atomic_begin(atomic_file *a)
{
    static atomic_ulong counter;
    unsigned long k = atomic_fetch_add(&counter, 1);
    size_t n = strlen(a->path) + 64;
    a->tmp = yk__alloc(a->ctx, n);
    a->dir = a->tmp ? yk__alloc(a->ctx, strlen(a->path) + 2) : NULL;
    if (!a->dir)
        return YK_ENOMEM;
    snprintf(a->tmp, n, "%s.tmp.%ld.%lu", a->path, (long)getpid(), k);
    const char *slash = strrchr(a->path, '/');
    if (!slash)
        strcpy(a->dir, ".");
    else if (slash == a->path)
        strcpy(a->dir, "/");
    else
        memcpy(a->dir, a->path, (size_t)(slash - a->path));
    a->fd = a->io->open(a->io->ud, a->tmp);
    if (a->fd < 0)
        return save_failed(a, "creating", errno);
    return YK_OK;
}

static yk_status atomic_write(atomic_file *a, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n < MAX_WRITE_CHUNK ? n : MAX_WRITE_CHUNK;
        ptrdiff_t w = a->io->write(a->io->ud, a->fd, p, chunk);
        if (w <= 0) {
            /* A write that moves nothing would loop forever: an error. */
            int err = w < 0 ? errno : EIO;
            yk_status s = save_failed(a, "writing", err);
            discard_temp(a);
            return s;
        }
        p += w;
        n -= (size_t)w;
    }
    return YK_OK;
}

/* fsync, close, rename over the target, sync the folder. */
static yk_status atomic_commit(atomic_file *a)
{
    if (a->io->fsync(a->io->ud, a->fd) < 0) {
        yk_status s = save_failed(a, "flushing", errno);
        discard_temp(a);
        return s;
    }
    int fd = a->fd;
    a->fd = -1;
    if (a->io->close(a->io->ud, fd) < 0) {
        yk_status s = save_failed(a, "closing", errno);
        discard_temp(a);
        return s;
    }
    if (a->io->rename(a->io->ud, a->tmp, a->path) < 0) {
        yk_status s = save_failed(a, "renaming", errno);
        discard_temp(a);
        return s;
    }
    if (a->io->sync_dir(a->io->ud, a->dir) < 0) {
        char text[128];
        return yk__error(a->ctx, YK_EIO, "%s: syncing the folder \"%s\" "
                         "failed: %s (\"%s\" holds the new checkpoint but may "
                         "not survive a power loss)", a->fn, a->dir,
                         errno_text(errno, text, sizeof text), a->path);
    }
    return YK_OK;
}

static void atomic_end(atomic_file *a)
{
    size_t n = strlen(a->path);
    yk__free(a->ctx, a->tmp, n + 64);
    yk__free(a->ctx, a->dir, n + 2);
}

static yk_status write_checkpoint(const save_list *l, const yk_io *io,
                                  const char *path, const unsigned char *head,
                                  size_t head_size)
{
    atomic_file a = {.ctx = l->ctx, .fn = l->fn, .io = io, .path = path,
                     .fd = -1};
    yk_status s = atomic_begin(&a);
    if (!s)
        s = atomic_write(&a, head, head_size);
    for (int i = 0; i < l->n && !s; i++)
        s = atomic_write(&a, l->items[i].tensor->data,
                         yk_tensor_nbytes(l->items[i].tensor));
    if (!s)
        s = atomic_commit(&a);
    atomic_end(&a);
    return s;
}

static bool io_complete(const yk_io *io)
{
    return io->open && io->write && io->fsync && io->close && io->rename &&
           io->unlink && io->sync_dir;
}

static yk_status save_checkpoint(const char *fn, const yk_model *m,
                                 yk_optim *o, const char *path,
                                 const yk_save_opts *opts)
{
    yk_ctx *ctx = yk_model_ctx(m);
    if (!ctx)
        return YK_EINVAL;
    if (!HOST_IS_LITTLE_ENDIAN)
        return big_endian_refused(ctx, fn);
    if (!path || !*path)
        return yk__error(ctx, YK_EINVAL, "%s: path is %s", fn,
                         path ? "empty" : "NULL");
    yk_save_opts so = opts ? *opts : (yk_save_opts){0};
    if (so.n_extra < 0 || (so.n_extra > 0 && !so.extra))
        return yk__error(ctx, YK_EINVAL, "%s: n_extra = %d with extra %s", fn,
                         so.n_extra, so.extra ? "set" : "NULL");
    const yk_io *io = so.io ? so.io : yk_io_posix();
    if (!io_complete(io))
        return yk__error(ctx, YK_EINVAL, "%s: opts->io lacks a function", fn);
    save_list l = {.ctx = ctx, .fn = fn};
    size_t head_size = 0;
    unsigned char *head = NULL;
    yk_status s = list_build(&l, m, o, &so);
    if (!s) {
        head = header_bytes(&l, &so, &head_size);
        s = head ? write_checkpoint(&l, io, path, head, head_size)
                 : yk_last_status(ctx);
    }
    yk__free(ctx, head, head_size);
    list_free(&l);
    return s;
}

yk_status yk_model_save(const yk_model *m, const char *path,
                        const yk_save_opts *opts)
{
    return save_checkpoint("yk_model_save", m, NULL, path, opts);
}

yk_status yk_checkpoint_save(const yk_model *m, yk_optim *o, const char *path,
                             const yk_save_opts *opts)
{
    if (!o)
        return m ? yk__error(yk_model_ctx(m), YK_EINVAL, "yk_checkpoint_save: "
                             "the optimizer is NULL")
                 : YK_EINVAL;
    return save_checkpoint("yk_checkpoint_save", m, o, path, opts);
}

/* ====================================================================
 * Reading: the file into memory
 * ==================================================================== */

typedef struct st_tensor {
    const char *name;     /* a key of the JSON tree */
    const st_dtype *dtype;
    int ndim;
    int64_t shape[YK_MAX_DIMS];
    uint64_t begin, end;  /* in the data section */
} st_tensor;

struct yk_safetensors {
    yk_ctx *ctx;
    char *path;
    unsigned char *bytes; /* the whole file */
    size_t size;
    const unsigned char *data; /* the data section: bytes + 8 + N */
    uint64_t data_size;
    cJSON *root;
    const cJSON *meta;    /* "__metadata__", or NULL */
    st_tensor *t;         /* sorted by offsets */
    int n, cap;
};

static yk_status read_all(yk_safetensors *f, const char *fn, int fd)
{
    char text[128];
    struct stat st;
    if (fstat(fd, &st) < 0)
        return yk__error(f->ctx, YK_EIO, "%s: cannot stat \"%s\": %s", fn,
                         f->path, errno_text(errno, text, sizeof text));
    if (!S_ISREG(st.st_mode))
        return yk__error(f->ctx, YK_EIO, "%s: \"%s\" is not a regular file",
                         fn, f->path);
    f->size = (size_t)st.st_size;
    f->bytes = block_alloc(f->ctx, f->size);
    if (!f->bytes)
        return YK_ENOMEM;
    for (size_t got = 0; got < f->size;) {
        ssize_t r = read(fd, f->bytes + got, f->size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return yk__error(f->ctx, YK_EIO, "%s: reading \"%s\" failed: %s",
                             fn, f->path, r < 0 ? errno_text(errno, text,
                             sizeof text) : "the file shrank while read");
        got += (size_t)r;
    }
    return YK_OK;
}

static yk_status read_file(yk_safetensors *f, const char *fn)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        char text[128];
        return yk__error(f->ctx, YK_EIO, "%s: cannot open \"%s\": %s", fn,
                         f->path, errno_text(errno, text, sizeof text));
    }
    yk_status s = read_all(f, fn, fd);
    close(fd);
    return s;
}

/* ====================================================================
 * Reading: the header, validated
 * ==================================================================== */

static bool json_uint(const cJSON *x, uint64_t *v)
{
    if (!cJSON_IsNumber(x))
        return false;
    double d = x->valuedouble;
    if (!(d >= 0 && d <= MAX_JSON_INT) || d != (double)(uint64_t)d)
        return false;
    *v = (uint64_t)d;
    return true;
}

static yk_status bad_entry(yk_safetensors *f, const char *fn,
                           const char *name, const char *what)
{
    return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": tensor \"%s\": %s", fn,
                     f->path, name, what);
}

static yk_status parse_dtype(yk_safetensors *f, const char *fn,
                             const cJSON *e, st_tensor *t)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(d))
        return bad_entry(f, fn, t->name, "\"dtype\" is missing or not a "
                         "string");
    t->dtype = st_dtype_find(d->valuestring);
    if (!t->dtype)
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": tensor \"%s\": "
                         "dtype \"%.32s\" is not a safetensors dtype", fn,
                         f->path, t->name, d->valuestring);
    return YK_OK;
}

/* The shape, and its size in bytes (overflow-checked). */
static yk_status parse_shape(yk_safetensors *f, const char *fn,
                             const cJSON *e, st_tensor *t, uint64_t *bytes)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(s))
        return bad_entry(f, fn, t->name, "\"shape\" is missing or not an "
                         "array");
    int ndim = cJSON_GetArraySize(s);
    if (ndim > YK_MAX_DIMS)
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": tensor \"%s\" has "
                         "%d dims; yoke reads at most %d", fn, f->path,
                         t->name, ndim, YK_MAX_DIMS);
    uint64_t total = t->dtype->size;
    const cJSON *x = s->child;
    for (int i = 0; i < ndim; i++, x = x->next) {
        uint64_t d;
        if (!json_uint(x, &d))
            return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": tensor \"%s\": "
                             "shape[%d] is not a non-negative integer", fn,
                             f->path, t->name, i);
        if (d && total > UINT64_MAX / d)
            return bad_entry(f, fn, t->name, "the shape's size overflows");
        total *= d;
        t->shape[i] = (int64_t)d;
    }
    t->ndim = ndim;
    *bytes = total;
    return YK_OK;
}

static yk_status parse_offsets(yk_safetensors *f, const char *fn,
                               const cJSON *e, st_tensor *t, uint64_t bytes)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 2 ||
        !json_uint(o->child, &t->begin) || !json_uint(o->child->next, &t->end))
        return bad_entry(f, fn, t->name, "\"data_offsets\" is not two "
                         "non-negative integers");
    if (t->begin > t->end || t->end > f->data_size)
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": tensor \"%s\": "
                         "data_offsets [%llu, %llu] are not within the %llu "
                         "bytes of data", fn, f->path, t->name,
                         (unsigned long long)t->begin,
                         (unsigned long long)t->end,
                         (unsigned long long)f->data_size);
    if (t->end - t->begin != bytes) {
        char dims[160];
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": tensor \"%s\": "
                         "shape %s of %s needs %llu bytes but data_offsets "
                         "[%llu, %llu] hold %llu", fn, f->path, t->name,
                         dims_text(dims, sizeof dims, t->ndim, t->shape),
                         t->dtype->name, (unsigned long long)bytes,
                         (unsigned long long)t->begin,
                         (unsigned long long)t->end,
                         (unsigned long long)(t->end - t->begin));
    }
    return YK_OK;
}

static yk_status parse_entry(yk_safetensors *f, const char *fn,
                             const cJSON *e, st_tensor *t)
{
    t->name = e->string;
    if (!cJSON_IsObject(e))
        return bad_entry(f, fn, t->name, "the entry is not an object");
    uint64_t bytes = 0;
    yk_status s = parse_dtype(f, fn, e, t);
    if (!s)
        s = parse_shape(f, fn, e, t, &bytes);
    if (!s)
        s = parse_offsets(f, fn, e, t, bytes);
    return s;
}

static yk_status parse_metadata(yk_safetensors *f, const char *fn,
                                const cJSON *meta)
{
    if (f->meta)
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": \"" METADATA_KEY
                         "\" appears twice", fn, f->path);
    if (!cJSON_IsObject(meta))
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": \"" METADATA_KEY
                         "\" is not an object", fn, f->path);
    for (const cJSON *x = meta->child; x; x = x->next)
        if (!cJSON_IsString(x))
            return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": metadata "
                             "\"%s\" is not a string", fn, f->path, x->string);
    f->meta = meta;
    return YK_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int by_offsets(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static yk_status check_unique_names(yk_safetensors *f, const char *fn)
{
    qsort(f->t, (size_t)f->n, sizeof *f->t, by_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->t[i - 1].name, f->t[i].name) == 0)
            return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": tensor \"%s\" "
                             "appears twice in the header", fn, f->path,
                             f->t[i].name);
    return YK_OK;
}

/* The tensors must tile the data section: sorted by offset, each begins
 * where the previous ended and the last ends at the end of the file (as the
 * reference implementation requires). */
static yk_status check_tiling(yk_safetensors *f, const char *fn)
{
    qsort(f->t, (size_t)f->n, sizeof *f->t, by_offsets);
    uint64_t pos = 0;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        if (t->begin < pos)
            return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": tensors \"%s\" "
                             "[%llu, %llu] and \"%s\" [%llu, %llu] overlap",
                             fn, f->path, f->t[i - 1].name,
                             (unsigned long long)f->t[i - 1].begin,
                             (unsigned long long)f->t[i - 1].end, t->name,
                             (unsigned long long)t->begin,
                             (unsigned long long)t->end);
        if (t->begin > pos)
            return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": data bytes "
                             "[%llu, %llu) belong to no tensor (a gap before "
                             "\"%s\")", fn, f->path, (unsigned long long)pos,
                             (unsigned long long)t->begin, t->name);
        pos = t->end;
    }
    if (pos != f->data_size)
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": the tensors end at "
                         "data byte %llu but the file has %llu data bytes",
                         fn, f->path, (unsigned long long)pos,
                         (unsigned long long)f->data_size);
    return YK_OK;
}

static yk_status parse_entries(yk_safetensors *f, const char *fn)
{
    int n = 0;
    for (const cJSON *x = f->root->child; x; x = x->next)
        n += strcmp(x->string, METADATA_KEY) != 0;
    f->t = block_alloc(f->ctx, (size_t)n * sizeof *f->t);
    if (!f->t)
        return YK_ENOMEM;
    f->cap = n;
    yk_status s = YK_OK;
    for (const cJSON *x = f->root->child; x && !s; x = x->next) {
        if (strcmp(x->string, METADATA_KEY) == 0)
            s = parse_metadata(f, fn, x);
        else
            s = parse_entry(f, fn, x, &f->t[f->n++]);
    }
    if (!s)
        s = check_unique_names(f, fn);
    if (!s)
        s = check_tiling(f, fn);
    return s;
}

static bool json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static yk_status parse_header(yk_safetensors *f, const char *fn)
{
    if (f->size < 8)
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\" has %zu bytes, too "
                         "few for the 8-byte header length", fn, f->path,
                         f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | f->bytes[i];
    if (n == 0 || n > f->size - 8)
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": header length %llu "
                         "does not fit in the %zu bytes after it", fn,
                         f->path, (unsigned long long)n, f->size - 8);
    const char *json = (const char *)f->bytes + 8;
    const char *end = NULL;
    f->root = json[0] == '{'
                  ? cJSON_ParseWithLengthOpts(json, (size_t)n, &end, false)
                  : NULL;
    if (!f->root || !cJSON_IsObject(f->root))
        return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": the header is not "
                         "a JSON object (error near header byte %td)", fn,
                         f->path, end && end >= json ? end - json : 0);
    for (const char *p = end; p < json + n; p++)
        if (!json_space((unsigned char)*p))
            return yk__error(f->ctx, YK_EFORMAT, "%s: \"%s\": bytes after "
                             "the header's JSON object (at header byte %td)",
                             fn, f->path, p - json);
    f->data = f->bytes + 8 + n;
    f->data_size = f->size - 8 - n;
    return parse_entries(f, fn);
}

/* ====================================================================
 * Reading: the public reader
 * ==================================================================== */

static yk_safetensors *st_open(yk_ctx *ctx, const char *fn, const char *path)
{
    if (!ctx)
        return NULL;
    if (!HOST_IS_LITTLE_ENDIAN) {
        big_endian_refused(ctx, fn);
        return NULL;
    }
    if (!path) {
        yk__error(ctx, YK_EINVAL, "%s: path is NULL", fn);
        return NULL;
    }
    yk_safetensors *f = yk__alloc(ctx, sizeof *f);
    if (!f)
        return NULL;
    f->ctx = ctx;
    f->path = yk__strdup(ctx, path);
    yk_status s = f->path ? read_file(f, fn) : YK_ENOMEM;
    if (!s)
        s = parse_header(f, fn);
    if (s) {
        yk_safetensors_close(f);
        return NULL;
    }
    return f;
}

yk_safetensors *yk_safetensors_open(yk_ctx *ctx, const char *path)
{
    return st_open(ctx, "yk_safetensors_open", path);
}

void yk_safetensors_close(yk_safetensors *f)
{
    if (!f)
        return;
    yk_ctx *ctx = f->ctx;
    cJSON_Delete(f->root);
    if (f->t)
        block_free(ctx, f->t, (size_t)f->cap * sizeof *f->t);
    if (f->bytes)
        block_free(ctx, f->bytes, f->size);
    if (f->path)
        yk__free(ctx, f->path, strlen(f->path) + 1);
    yk__free(ctx, f, sizeof *f);
}

int yk_safetensors_count(const yk_safetensors *f) { return f ? f->n : 0; }

int yk_safetensors_find(const yk_safetensors *f, const char *name)
{
    for (int i = 0; f && name && i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return i;
    return -1;
}

static const st_tensor *st_at(const yk_safetensors *f, int i)
{
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const char *yk_safetensors_name(const yk_safetensors *f, int i)
{
    const st_tensor *t = st_at(f, i);
    return t ? t->name : NULL;
}

const char *yk_safetensors_dtype(const yk_safetensors *f, int i)
{
    const st_tensor *t = st_at(f, i);
    return t ? t->dtype->name : NULL;
}

int yk_safetensors_ndim(const yk_safetensors *f, int i)
{
    const st_tensor *t = st_at(f, i);
    return t ? t->ndim : -1;
}

const int64_t *yk_safetensors_shape(const yk_safetensors *f, int i)
{
    const st_tensor *t = st_at(f, i);
    return t ? t->shape : NULL;
}

const char *yk_safetensors_metadata(const yk_safetensors *f, const char *key)
{
    if (!f || !f->meta || !key)
        return NULL;
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(f->meta, key);
    return x ? x->valuestring : NULL;
}

static bool same_dims(const st_tensor *t, const yk_tensor *dst)
{
    if (t->ndim != dst->ndim)
        return false;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != dst->shape[i])
            return false;
    return true;
}

/* Can tensor t go into dst? dst_label names dst in messages, e.g.
 * "parameter \"W\"". */
static yk_status check_fit(const yk_safetensors *f, const char *fn,
                           const st_tensor *t, const yk_tensor *dst,
                           const char *dst_label)
{
    if (t->dtype->yk < 0)
        return yk__error(f->ctx, YK_EDTYPE, "%s: \"%s\": tensor \"%s\" is "
                         "%s, which yoke cannot read (F32, F64, I64)", fn,
                         f->path, t->name, t->dtype->name);
    if ((yk_dtype)t->dtype->yk != dst->dtype)
        return yk__error(f->ctx, YK_EDTYPE, "%s: %s is %s but tensor \"%s\" "
                         "of \"%s\" is %s", fn, dst_label,
                         yk_dtype_name(dst->dtype), t->name, f->path,
                         t->dtype->name);
    if (!same_dims(t, dst)) {
        char a[160], b[160];
        return yk__error(f->ctx, YK_ESHAPE, "%s: %s has shape %s but tensor "
                         "\"%s\" of \"%s\" has shape %s", fn, dst_label,
                         dims_text(a, sizeof a, dst->ndim, dst->shape),
                         t->name, f->path,
                         dims_text(b, sizeof b, t->ndim, t->shape));
    }
    return YK_OK;
}

static void copy_out(const yk_safetensors *f, const st_tensor *t,
                     yk_tensor *dst)
{
    if (t->end > t->begin)
        memcpy(dst->data, f->data + t->begin, (size_t)(t->end - t->begin));
}

static const st_tensor *find_named(yk_safetensors *f, const char *fn,
                                   const char *name)
{
    int i = yk_safetensors_find(f, name);
    if (i < 0)
        yk__error(f->ctx, YK_EINVAL, "%s: \"%s\" has no tensor named \"%s\"",
                  fn, f->path, name);
    return i < 0 ? NULL : &f->t[i];
}

yk_status yk_safetensors_read(yk_safetensors *f, const char *name,
                              yk_tensor *dst)
{
    if (!f)
        return YK_EINVAL;
    if (!name || !dst)
        return yk__error(f->ctx, YK_EINVAL, "yk_safetensors_read: %s is NULL",
                         name ? "dst" : "name");
    const st_tensor *t = find_named(f, "yk_safetensors_read", name);
    if (!t)
        return YK_EINVAL;
    yk_status s = check_fit(f, "yk_safetensors_read", t, dst, "dst");
    if (!s)
        copy_out(f, t, dst);
    return s;
}

yk_tensor *yk_safetensors_get(yk_safetensors *f, const char *name)
{
    if (!f)
        return NULL;
    if (!name) {
        yk__error(f->ctx, YK_EINVAL, "yk_safetensors_get: name is NULL");
        return NULL;
    }
    const st_tensor *t = find_named(f, "yk_safetensors_get", name);
    if (!t)
        return NULL;
    if (t->dtype->yk < 0) {
        yk__error(f->ctx, YK_EDTYPE, "yk_safetensors_get: \"%s\": tensor "
                  "\"%s\" is %s, which yoke cannot read (F32, F64, I64)",
                  f->path, t->name, t->dtype->name);
        return NULL;
    }
    yk_tensor *out = yk_tensor_zeros(f->ctx, (yk_dtype)t->dtype->yk, t->ndim,
                                     t->shape);
    if (out)
        copy_out(f, t, out);
    return out;
}

/* ====================================================================
 * Loading a model (and an optimizer's state)
 * ==================================================================== */

typedef enum target_kind {
    T_TENSOR, /* a parameter's value or a slot: copied into dst           */
    T_STATE,  /* an optimizer state tensor: yk_optim_set_state            */
    T_STEP,   /* an optimizer step count (0-d i64)                        */
    T_RESET   /* a parameter of the optimizer without state in the file   */
} target_kind;

/* One tensor the caller wants, and the file's tensor of its name. */
typedef struct load_target {
    target_kind kind;
    const char *name;
    char *owned;          /* the name, when made here ("optim/W/sum") */
    const char *what;     /* "parameter", "slot", "optimizer state"   */
    yk_tensor want;       /* the dtype and shape it must have (no data) */
    yk_tensor *dst;       /* T_TENSOR */
    yk_param *p;          /* T_STATE, T_STEP, T_RESET */
    const char *state;    /* T_STATE */
    const st_tensor *src; /* NULL when the file lacks it */
} load_target;

typedef struct load_plan {
    yk_ctx *ctx;
    const char *fn;
    yk_safetensors *f;
    yk_optim *o;
    load_target *targets;
    int n_targets, cap;
    bool *claimed;        /* per file tensor */
    const char **missing, **unexpected;
    int n_missing, n_unexpected, n_ignored;
} load_plan;

static yk_status check_slot(const load_plan *p, const yk_model *m,
                            const yk_tensor_slot *slots, int k)
{
    const yk_tensor_slot *x = &slots[k];
    if (!x->name || !*x->name)
        return yk__error(p->ctx, YK_EINVAL, "%s: extra[%d] has %s name",
                         p->fn, k, x->name ? "an empty" : "a NULL");
    if (!x->tensor)
        return yk__error(p->ctx, YK_EINVAL, "%s: extra[%d] \"%s\" has a NULL "
                         "tensor", p->fn, k, x->name);
    bool taken = yk_model_find(m, x->name) != NULL;
    for (int j = 0; j < k && !taken; j++)
        taken = strcmp(slots[j].name, x->name) == 0;
    if (taken)
        return yk__error(p->ctx, YK_EINVAL, "%s: extra[%d] \"%s\" is already "
                         "the name of a parameter or an earlier extra", p->fn,
                         k, x->name);
    return YK_OK;
}

static yk_status check_load_opts(const load_plan *p, const yk_model *m,
                                 const yk_load_opts *o)
{
    if (o->n_extra < 0 || (o->n_extra > 0 && !o->extra))
        return yk__error(p->ctx, YK_EINVAL, "%s: n_extra = %d with extra %s",
                         p->fn, o->n_extra, o->extra ? "set" : "NULL");
    for (int k = 0; k < o->n_extra; k++) {
        yk_status s = check_slot(p, m, o->extra, k);
        if (s)
            return s;
    }
    return YK_OK;
}

static yk_status plan_alloc(load_plan *p, int cap)
{
    int nf = p->f->n;
    p->cap = cap;
    p->targets = block_alloc(p->ctx, (size_t)cap * sizeof *p->targets);
    p->claimed = p->targets ? block_alloc(p->ctx, (size_t)nf) : NULL;
    p->missing = p->claimed ? block_alloc(p->ctx, (size_t)cap *
                                                      sizeof(char *)) : NULL;
    p->unexpected = p->missing ? block_alloc(p->ctx, (size_t)nf *
                                                         sizeof(char *))
                               : NULL;
    return p->unexpected ? YK_OK : YK_ENOMEM;
}

static void plan_free(load_plan *p)
{
    int nf = p->f ? p->f->n : 0;
    for (int i = 0; i < p->n_targets; i++)
        if (p->targets[i].owned)
            yk__free(p->ctx, p->targets[i].owned,
                     strlen(p->targets[i].owned) + 1);
    if (p->targets)
        block_free(p->ctx, p->targets, (size_t)p->cap * sizeof *p->targets);
    if (p->claimed)
        block_free(p->ctx, p->claimed, (size_t)nf);
    if (p->missing)
        block_free(p->ctx, p->missing, (size_t)p->cap * sizeof(char *));
    if (p->unexpected)
        block_free(p->ctx, p->unexpected, (size_t)nf * sizeof(char *));
    yk_safetensors_close(p->f);
}

/* Pairs target t (already filled in) with the file's tensor of its name,
 * or lists it as missing. */
static yk_status plan_pair(load_plan *p, load_target *t)
{
    p->n_targets++;
    int k = yk_safetensors_find(p->f, t->name);
    if (k < 0) {
        p->missing[p->n_missing++] = t->name;
        return YK_OK;
    }
    if (p->claimed[k])
        return yk__error(p->ctx, YK_EINVAL, "%s: \"%s\" is asked for twice "
                         "(a slot named like an optimizer state?)", p->fn,
                         t->name);
    t->src = &p->f->t[k];
    p->claimed[k] = true;
    return YK_OK;
}

static yk_status plan_tensor(load_plan *p, const char *name, yk_tensor *dst,
                             const char *what)
{
    load_target *t = &p->targets[p->n_targets];
    *t = (load_target){.kind = T_TENSOR, .name = name, .what = what,
                       .want = *dst, .dst = dst};
    return plan_pair(p, t);
}

/* A target "optim/<q>/<what>" of kind, its name made here. */
static load_target *optim_target(load_plan *p, target_kind kind, yk_param *q,
                                 const char *what)
{
    size_t n = strlen(q->name) + strlen(what) + 8;
    char *name = yk__alloc(p->ctx, n);
    if (!name)
        return NULL;
    snprintf(name, n, "optim/%s/%s", q->name, what);
    load_target *t = &p->targets[p->n_targets];
    *t = (load_target){.kind = kind, .name = name, .owned = name,
                       .what = "optimizer state", .p = q};
    return t;
}

/* q's step count and state tensors when the file has "optim/<q>/step";
 * otherwise a reset of q's state. */
static yk_status plan_optim_param(load_plan *p, yk_param *q)
{
    load_target *t = optim_target(p, T_STEP, q, "step");
    if (!t)
        return YK_ENOMEM;
    yk__tensor_init(&t->want, p->ctx, YK_I64, 0, NULL, 1);
    if (yk_safetensors_find(p->f, t->name) < 0) {
        t->kind = T_RESET; /* no state in the file: none after the load */
        p->n_targets++;
        return YK_OK;
    }
    yk_status s = plan_pair(p, t);
    bool per_row = yk_optim_kind_of(p->o) == YK_OPTIM_ROWWISE_ADAGRAD;
    int64_t rows = q->value.ndim == 0 ? 1 : q->value.shape[0];
    for (int i = 0; i < yk_optim_state_count(p->o) && !s; i++) {
        const char *state = yk_optim_state_name(p->o, i);
        t = optim_target(p, T_STATE, q, state);
        if (!t)
            return YK_ENOMEM;
        t->state = state;
        /* yoke_optim.h: rowwise_adagrad keeps [rows], the others p's
         * shape, all of p's dtype. */
        if (per_row)
            yk__tensor_init(&t->want, p->ctx, q->value.dtype, 1, &rows, rows);
        else
            t->want = q->value;
        s = plan_pair(p, t);
    }
    return s;
}

static void plan_unexpected(load_plan *p, const char *ignore_prefix)
{
    size_t plen = ignore_prefix ? strlen(ignore_prefix) : 0;
    for (int k = 0; k < p->f->n; k++) {
        const char *name = p->f->t[k].name;
        if (p->claimed[k])
            continue;
        if (plen && strncmp(name, ignore_prefix, plen) == 0)
            p->n_ignored++;
        else
            p->unexpected[p->n_unexpected++] = name;
    }
}

/* Pairs every parameter, slot and optimizer state with the file's tensor
 * of its name, and lists what is missing on either side. */
static yk_status plan_match(load_plan *p, yk_model *m, const yk_load_opts *o)
{
    int np = yk_model_count(m);
    int no = p->o ? yk_optim_count(p->o) : 0;
    int ns = p->o ? yk_optim_state_count(p->o) : 0;
    yk_status s = plan_alloc(p, np + o->n_extra + no * (ns + 1));
    for (int i = 0; i < np && !s; i++) {
        yk_param *q = yk_model_at(m, i);
        s = plan_tensor(p, q->name, &q->value, "parameter");
    }
    for (int k = 0; k < o->n_extra && !s; k++)
        s = plan_tensor(p, o->extra[k].name, o->extra[k].tensor, "slot");
    for (int i = 0; i < no && !s; i++)
        s = plan_optim_param(p, yk_optim_param_at(p->o, i));
    if (!s)
        plan_unexpected(p, o->ignore_prefix);
    return s;
}

/* "\"a\", \"b\", ... (3 more)" within size bytes. */
static void names_text(char *out, size_t size, const char *const *names,
                       int n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *sep = i ? ", " : "";
        if (len + strlen(names[i]) + 24 > size) {
            snprintf(out + len, size - len, "%s... (%d more)", sep, n - i);
            return;
        }
        len += (size_t)snprintf(out + len, size - len, "%s\"%s\"", sep,
                                names[i]);
    }
}

/* "missing 2 (\"a\", \"b\"); unexpected 1 (\"c\")" within size bytes. */
static void mismatch_text(char *out, size_t size, const load_plan *p)
{
    char miss[200] = "", unexp[200] = "";
    names_text(miss, sizeof miss, p->missing, p->n_missing);
    names_text(unexp, sizeof unexp, p->unexpected, p->n_unexpected);
    snprintf(out, size, "missing %d (%s); unexpected %d (%s)", p->n_missing,
             miss, p->n_unexpected, unexp);
}

static int64_t step_value(const load_plan *p, const st_tensor *src)
{
    int64_t v;
    memcpy(&v, p->f->data + src->begin, sizeof v);
    return v;
}

static yk_status check_target(const load_plan *p, const load_target *t)
{
    if (!t->src)
        return YK_OK;
    char label[200];
    snprintf(label, sizeof label, "%s \"%s\"", t->what, t->name);
    yk_status s = check_fit(p->f, p->fn, t->src, &t->want, label);
    if (!s && t->kind == T_STEP && step_value(p, t->src) < 0)
        s = yk__error(p->ctx, YK_EFORMAT, "%s: \"%s\": %s = %lld is negative",
                      p->fn, p->f->path, t->name,
                      (long long)step_value(p, t->src));
    return s;
}

static yk_status check_optimizer_kind(const load_plan *p)
{
    const char *kind = yk_safetensors_metadata(p->f, "optimizer");
    const char *mine = yk_optim_kind_name(yk_optim_kind_of(p->o));
    if (kind && strcmp(kind, mine) != 0)
        return yk__error(p->ctx, YK_EFORMAT, "%s: \"%s\" holds the state of "
                         "a \"%.32s\" optimizer, not \"%s\"", p->fn,
                         p->f->path, kind, mine);
    return YK_OK;
}

static yk_status check_targets(const load_plan *p, bool partial)
{
    /* Another kind's state would only show as a list of odd names. */
    if (p->o) {
        yk_status s = check_optimizer_kind(p);
        if (s)
            return s;
    }
    if (!partial && (p->n_missing || p->n_unexpected)) {
        char text[420];
        mismatch_text(text, sizeof text, p);
        return yk__error(p->ctx, YK_EFORMAT, "%s: \"%s\" does not match the "
                         "model: %s", p->fn, p->f->path, text);
    }
    for (int i = 0; i < p->n_targets; i++) {
        yk_status s = check_target(p, &p->targets[i]);
        if (s)
            return s;
    }
    return YK_OK;
}

static yk_status parse_step(const load_plan *p, int64_t *step)
{
    const char *v = yk_safetensors_metadata(p->f, "yoke_format_version");
    if (v && strcmp(v, FORMAT_VERSION) != 0)
        return yk__error(p->ctx, YK_EFORMAT, "%s: \"%s\" has "
                         "yoke_format_version \"%.32s\"; this yoke reads "
                         "\"" FORMAT_VERSION "\"", p->fn, p->f->path, v);
    const char *s = yk_safetensors_metadata(p->f, "step");
    *step = 0;
    if (!s)
        return YK_OK;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    bool digits = (s[0] >= '0' && s[0] <= '9') ||
                  (s[0] == '-' && s[1] >= '0' && s[1] <= '9');
    if (!digits || *end || errno == ERANGE)
        return yk__error(p->ctx, YK_EFORMAT, "%s: \"%s\": metadata step "
                         "\"%.32s\" is not a decimal integer", p->fn,
                         p->f->path, s);
    *step = x;
    return YK_OK;
}

static yk_status fill_info(const load_plan *p, int64_t step,
                           yk_load_info *info)
{
    const char *config = yk_safetensors_metadata(p->f, "config");
    memset(info, 0, sizeof *info);
    info->ctx_ = p->ctx;
    info->step = step;
    if (config) {
        info->config = yk__strdup(p->ctx, config);
        if (!info->config)
            return YK_ENOMEM;
        info->config_size_ = strlen(config) + 1;
    }
    for (int i = 0; i < p->n_targets; i++)
        info->n_loaded += p->targets[i].src != NULL;
    info->n_missing = p->n_missing;
    info->n_unexpected = p->n_unexpected;
    info->n_ignored = p->n_ignored;
    if (p->n_missing || p->n_unexpected)
        mismatch_text(info->report, sizeof info->report, p);
    return YK_OK;
}

/* Puts q's state back to its initial values and its step count to 0:
 * what a parameter that never stepped has (yoke_optim.h). */
static void reset_state(yk_optim *o, yk_param *q)
{
    double acc = yk_optim_options(o).initial_accumulator_value;
    for (int i = 0; i < yk_optim_state_count(o); i++) {
        const char *name = yk_optim_state_name(o, i);
        yk_tensor *t = NULL;
        yk_optim_state(o, q, name, &t);
        if (t)
            yk_tensor_fill(t, strcmp(name, "sum") == 0 ? acc : 0.0);
    }
    yk_optim_set_step_count(o, q, 0);
}

/* The optimizer first: making its state can run out of memory, and the
 * model must then stay untouched. */
static yk_status apply_optimizer(const load_plan *p)
{
    for (int i = 0; i < p->n_targets; i++) {
        const load_target *t = &p->targets[i];
        if (t->kind != T_STATE || !t->src)
            continue;
        yk_tensor view = t->want; /* the file's bytes, read by memcpy */
        view.data = (void *)(p->f->data + t->src->begin);
        yk_status s = yk_optim_set_state(p->o, t->p, t->state, &view);
        if (s)
            return s;
    }
    for (int i = 0; i < p->n_targets; i++) {
        const load_target *t = &p->targets[i];
        if (t->kind == T_RESET)
            reset_state(p->o, t->p);
        else if (t->kind == T_STEP && t->src)
            yk_optim_set_step_count(p->o, t->p, step_value(p, t->src));
    }
    return YK_OK;
}

static void apply_tensors(const load_plan *p)
{
    for (int i = 0; i < p->n_targets; i++)
        if (p->targets[i].kind == T_TENSOR && p->targets[i].src)
            copy_out(p->f, p->targets[i].src, p->targets[i].dst);
}

static yk_status load_checkpoint(const char *fn, yk_model *m, yk_optim *o,
                                 const char *path, const yk_load_opts *opts,
                                 yk_load_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    yk_ctx *ctx = yk_model_ctx(m);
    if (!ctx)
        return YK_EINVAL;
    yk_load_opts lo = opts ? *opts : (yk_load_opts){0};
    load_plan p = {.ctx = ctx, .fn = fn, .o = o};
    yk_status s = check_load_opts(&p, m, &lo);
    if (s)
        return s;
    p.f = st_open(ctx, fn, path);
    if (!p.f)
        return yk_last_status(ctx);
    int64_t step = 0;
    s = plan_match(&p, m, &lo);
    if (!s)
        s = check_targets(&p, lo.partial);
    if (!s)
        s = parse_step(&p, &step);
    if (!s && info)
        s = fill_info(&p, step, info);
    if (!s && o)
        s = apply_optimizer(&p);
    if (!s)
        apply_tensors(&p);
    else if (info)
        yk_load_info_clear(info);
    plan_free(&p);
    return s;
}

yk_status yk_model_load(yk_model *m, const char *path,
                        const yk_load_opts *opts, yk_load_info *info)
{
    return load_checkpoint("yk_model_load", m, NULL, path, opts, info);
}

yk_status yk_checkpoint_load(yk_model *m, yk_optim *o, const char *path,
                             const yk_load_opts *opts, yk_load_info *info)
{
    if (!o) {
        if (info)
            memset(info, 0, sizeof *info);
        return m ? yk__error(yk_model_ctx(m), YK_EINVAL, "yk_checkpoint_load: "
                             "the optimizer is NULL")
                 : YK_EINVAL;
    }
    return load_checkpoint("yk_checkpoint_load", m, o, path, opts, info);
}

void yk_load_info_clear(yk_load_info *info)
{
    if (!info)
        return;
    if (info->config)
        yk__free(info->ctx_, info->config, info->config_size_);
    memset(info, 0, sizeof *info);
}

/* ====================================================================
 * A pretrained matrix from a safetensors file
 * ==================================================================== */

yk_status yk_param_load_safetensors(yk_param *p, const char *path,
                                    const char *name, bool freeze)
{
    static const char fn[] = "yk_param_load_safetensors";
    if (!p)
        return YK_EINVAL;
    yk_ctx *ctx = p->model->ctx;
    if (!name)
        return yk__error(ctx, YK_EINVAL, "%s: name is NULL", fn);
    yk_safetensors *f = st_open(ctx, fn, path);
    if (!f)
        return yk_last_status(ctx);
    const st_tensor *t = find_named(f, fn, name);
    yk_status s = t ? YK_OK : YK_EINVAL;
    char label[200];
    snprintf(label, sizeof label, "parameter \"%s\"", p->name);
    if (!s)
        s = check_fit(f, fn, t, &p->value, label);
    if (!s) {
        copy_out(f, t, &p->value);
        if (freeze)
            yk_param_set_requires_grad(p, false);
    }
    yk_safetensors_close(f);
    return s;
}
