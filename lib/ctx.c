/* ctx.c -- the context: allocator hook, threads, the last error. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

const char *yk_version(void) { return YOKE_VERSION_STRING; }

static void *system_alloc(void *ud, void *ptr, size_t old_size,
                          size_t new_size)
{
    (void)ud;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, new_size);
}

yk_ctx *yk_ctx_new(void) { return yk_ctx_new_with_alloc(system_alloc, NULL); }

yk_ctx *yk_ctx_new_with_alloc(yk_alloc_fn fn, void *ud)
{
    if (!fn)
        return NULL;
    yk_ctx *ctx = fn(ud, NULL, 0, sizeof *ctx);
    if (!ctx)
        return NULL;
    memset(ctx, 0, sizeof *ctx);
    ctx->alloc = fn;
    ctx->ud = ud;
    ctx->threads = 1;
    ctx->next_graph_id = 1;
    return ctx;
}

void yk_ctx_free(yk_ctx *ctx)
{
    if (ctx)
        ctx->alloc(ctx->ud, ctx, sizeof *ctx, 0);
}

void *yk__alloc(yk_ctx *ctx, size_t size)
{
    if (size == 0)
        size = 1;
    void *p = ctx->alloc(ctx->ud, NULL, 0, size);
    if (!p) {
        yk__error(ctx, YK_ENOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    memset(p, 0, size);
    return p;
}

void *yk__realloc(yk_ctx *ctx, void *p, size_t old_size, size_t new_size)
{
    void *q = ctx->alloc(ctx->ud, p, old_size, new_size ? new_size : 1);
    if (!q)
        yk__error(ctx, YK_ENOMEM, "out of memory allocating %zu bytes",
                  new_size);
    return q;
}

void yk__free(yk_ctx *ctx, void *p, size_t size)
{
    if (p)
        ctx->alloc(ctx->ud, p, size, 0);
}

char *yk__strdup(yk_ctx *ctx, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = yk__alloc(ctx, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

yk_status yk__verror(yk_ctx *ctx, yk_status code, const char *fmt, va_list ap)
{
    ctx->status = code;
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    return code;
}

yk_status yk__error(yk_ctx *ctx, yk_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yk__verror(ctx, code, fmt, ap);
    va_end(ap);
    return code;
}

yk_status yk_last_status(const yk_ctx *ctx)
{
    return ctx ? ctx->status : YK_EINVAL;
}

const char *yk_last_error(const yk_ctx *ctx)
{
    if (!ctx)
        return "no context (NULL)";
    return ctx->status == YK_OK ? "" : ctx->msg;
}

void yk_clear_error(yk_ctx *ctx)
{
    if (ctx) {
        ctx->status = YK_OK;
        ctx->msg[0] = '\0';
    }
}

yk_status yk_set_threads(yk_ctx *ctx, int n)
{
    if (!ctx)
        return YK_EINVAL;
    if (n < 1)
        return yk__error(ctx, YK_EINVAL,
                         "yk_set_threads: n = %d, must be at least 1", n);
    ctx->threads = n;
    return YK_OK;
}

int yk_threads(const yk_ctx *ctx) { return ctx ? ctx->threads : 1; }

/* About a quarter of a millisecond of work: below that, waking the other
 * threads costs more than it saves (the WordNet model's batches of 32 ran
 * 1.5x slower at 2 threads with a threshold of 65536). */
#define PARALLEL_MIN_WORK (1 << 18)

void yk__run_split(const yk_ctx *ctx, yk__range_kernel kernel,
                   const void *job, int64_t n, int64_t cost)
{
#ifdef _OPENMP
    int threads = ctx->threads;
    if (threads > 1 && n > 1 && n * cost >= PARALLEL_MIN_WORK) {
        if (threads > n)
            threads = (int)n;
#pragma omp parallel num_threads(threads)
        {
            int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            kernel(job, n * t / nt, n * (t + 1) / nt);
        }
        return;
    }
#else
    (void)ctx;
    (void)cost;
#endif
    kernel(job, 0, n);
}

const char *yk_status_name(yk_status s)
{
    switch (s) {
    case YK_OK: return "ok";
    case YK_EINVAL: return "invalid_argument";
    case YK_ERANGE: return "index_out_of_range";
    case YK_EOFFSETS: return "bad_offsets";
    case YK_ESHAPE: return "shape_mismatch";
    case YK_EDTYPE: return "dtype_mismatch";
    case YK_ENOMEM: return "out_of_memory";
    case YK_EIO: return "io_error";
    case YK_EFORMAT: return "bad_format";
    case YK_ESTATE: return "bad_state";
    case YK_ENOTIMPL: return "not_implemented";
    }
    return "unknown_status";
}
