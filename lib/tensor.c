/* tensor.c -- dense row-major tensors: creation, random fill, printing. */
#include "engine.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

const char *yk_dtype_name(yk_dtype dt)
{
    switch (dt) {
    case YK_F32: return "f32";
    case YK_F64: return "f64";
    case YK_I64: return "i64";
    }
    return "?";
}

size_t yk_dtype_size(yk_dtype dt)
{
    switch (dt) {
    case YK_F32: return 4;
    case YK_F64: return 8;
    case YK_I64: return 8;
    }
    return 0;
}

int yk__norm_dim(int dim, int ndim)
{
    if (dim < -ndim || dim >= ndim)
        return -1;
    return dim < 0 ? dim + ndim : dim;
}

/* Anything over 2^40 elements is an absurd shape here, and keeping numel
 * well below 2^63 / 8 means byte counts never overflow. */
#define MAX_NUMEL (INT64_C(1) << 40)

yk_status yk__shape_check(yk_ctx *ctx, const char *fn, yk_dtype dt, int ndim,
                          const int64_t *shape, int64_t *numel)
{
    if (yk_dtype_size(dt) == 0)
        return yk__error(ctx, YK_EDTYPE, "%s: dtype %d is not f32, f64 or i64",
                         fn, (int)dt);
    if (ndim < 0 || ndim > YK_MAX_DIMS)
        return yk__error(ctx, YK_EINVAL, "%s: ndim = %d, must be in [0, %d]",
                         fn, ndim, YK_MAX_DIMS);
    if (ndim > 0 && !shape)
        return yk__error(ctx, YK_EINVAL, "%s: shape is NULL", fn);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return yk__error(ctx, YK_ESHAPE,
                             "%s: shape[%d] = %lld is negative", fn, i,
                             (long long)shape[i]);
        if (shape[i] > 0 && n > MAX_NUMEL / shape[i])
            return yk__error(ctx, YK_ESHAPE,
                             "%s: shape[%d] = %lld makes more than 2^40 "
                             "elements", fn, i, (long long)shape[i]);
        n *= shape[i];
    }
    *numel = n;
    return YK_OK;
}

void yk__tensor_init(yk_tensor *t, yk_ctx *ctx, yk_dtype dt, int ndim,
                     const int64_t *shape, int64_t numel)
{
    memset(t, 0, sizeof *t);
    t->ctx = ctx;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->numel = numel;
}

bool yk__same_shape(const yk_tensor *a, const yk_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

/* ------------------------------------------------- aligned storage */

/*
 * Tensor and parameter data start on a cache line (64 bytes), so a
 * 256-byte embedding row spans 4 lines, not 5; blocks of 2 MiB or more
 * start on a 2 MiB boundary and ask for transparent huge pages, because a
 * random row of a big table otherwise costs a TLB miss. The hook only
 * promises 16-byte alignment, so the block is over-allocated and the
 * hook's own pointer is kept just before the aligned one. The hook sees
 * the same size on allocation and free, so its accounting stays exact.
 */
#define HUGE_ALIGN ((size_t)2 << 20)
#define LINE_ALIGN ((size_t)64)

static size_t alignment_for(size_t size)
{
    return size >= HUGE_ALIGN ? HUGE_ALIGN : LINE_ALIGN;
}

static size_t aligned_total(size_t size)
{
    return size + alignment_for(size) + sizeof(void *);
}

void *yk__alloc_aligned(yk_ctx *ctx, size_t size)
{
    if (size == 0)
        size = 1;
    size_t align = alignment_for(size);
    if (size > SIZE_MAX - align - sizeof(void *)) {
        yk__error(ctx, YK_ENOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    char *base = ctx->alloc(ctx->ud, NULL, 0, aligned_total(size));
    if (!base) {
        yk__error(ctx, YK_ENOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    uintptr_t at = ((uintptr_t)base + sizeof(void *) + align - 1) &
                   ~(uintptr_t)(align - 1);
    void *p = (void *)at;
    memcpy((char *)p - sizeof(void *), &base, sizeof base);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    /* Before the first touch, so the zeroing below faults in huge pages.
     * Only advice: failure changes nothing but speed. */
    if (align == HUGE_ALIGN)
        madvise(p, size & ~(HUGE_ALIGN - 1), MADV_HUGEPAGE);
#endif
    memset(p, 0, size);
    return p;
}

void yk__free_aligned(yk_ctx *ctx, void *p, size_t size)
{
    if (!p)
        return;
    if (size == 0)
        size = 1;
    void *base;
    memcpy(&base, (char *)p - sizeof(void *), sizeof base);
    ctx->alloc(ctx->ud, base, aligned_total(size), 0);
}

static yk_tensor *tensor_new(yk_ctx *ctx, const char *fn, yk_dtype dt,
                             int ndim, const int64_t *shape, bool alloc_data)
{
    if (!ctx)
        return NULL;
    int64_t numel;
    if (yk__shape_check(ctx, fn, dt, ndim, shape, &numel) != YK_OK)
        return NULL;
    yk_tensor *t = yk__alloc(ctx, sizeof *t);
    if (!t)
        return NULL;
    yk__tensor_init(t, ctx, dt, ndim, shape, numel);
    t->storage = YK__OWNED;
    if (alloc_data) {
        t->data = yk__alloc_aligned(ctx, (size_t)numel * yk_dtype_size(dt));
        if (!t->data) {
            yk__free(ctx, t, sizeof *t);
            return NULL;
        }
    }
    return t;
}

yk_tensor *yk_tensor_zeros(yk_ctx *ctx, yk_dtype dt, int ndim,
                           const int64_t *shape)
{
    return tensor_new(ctx, "yk_tensor_zeros", dt, ndim, shape, true);
}

/* full under the name of the public function the caller called, so an
 * error message names what the user wrote. */
static yk_tensor *full_named(yk_ctx *ctx, const char *fn, yk_dtype dt,
                             int ndim, const int64_t *shape, double value)
{
    yk_tensor *t = tensor_new(ctx, fn, dt, ndim, shape, true);
    if (t)
        yk_tensor_fill(t, value);
    return t;
}

yk_tensor *yk_tensor_full(yk_ctx *ctx, yk_dtype dt, int ndim,
                          const int64_t *shape, double value)
{
    return full_named(ctx, "yk_tensor_full", dt, ndim, shape, value);
}

yk_tensor *yk_tensor_ones(yk_ctx *ctx, yk_dtype dt, int ndim,
                          const int64_t *shape)
{
    return full_named(ctx, "yk_tensor_ones", dt, ndim, shape, 1.0);
}

yk_tensor *yk_tensor_from(yk_ctx *ctx, yk_dtype dt, int ndim,
                          const int64_t *shape, const void *data)
{
    yk_tensor *t = tensor_new(ctx, "yk_tensor_from", dt, ndim, shape, true);
    if (!t)
        return NULL;
    if (t->numel > 0 && !data) {
        yk__error(ctx, YK_EINVAL, "yk_tensor_from: data is NULL for %lld "
                  "elements", (long long)t->numel);
        yk_tensor_free(t);
        return NULL;
    }
    if (t->numel > 0)
        memcpy(t->data, data, yk_tensor_nbytes(t));
    return t;
}

yk_tensor *yk_tensor_wrap(yk_ctx *ctx, yk_dtype dt, int ndim,
                          const int64_t *shape, void *data)
{
    yk_tensor *t = tensor_new(ctx, "yk_tensor_wrap", dt, ndim, shape, false);
    if (!t)
        return NULL;
    if (t->numel > 0 && !data) {
        yk__error(ctx, YK_EINVAL, "yk_tensor_wrap: data is NULL for %lld "
                  "elements", (long long)t->numel);
        yk_tensor_free(t);
        return NULL;
    }
    t->data = data;
    t->storage = YK__BORROWED;
    return t;
}

yk_tensor *yk_tensor_clone(const yk_tensor *t)
{
    if (!t)
        return NULL;
    return yk_tensor_from(t->ctx, t->dtype, t->ndim, t->shape, t->data);
}

void yk_tensor_free(yk_tensor *t)
{
    if (!t)
        return;
    if (t->storage == YK__OWNED)
        yk__free_aligned(t->ctx, t->data, yk_tensor_nbytes(t));
    if (t->storage != YK__ARENA)
        yk__free(t->ctx, t, sizeof *t);
}

yk_dtype yk_tensor_dtype(const yk_tensor *t) { return t ? t->dtype : YK_F32; }
int yk_tensor_ndim(const yk_tensor *t) { return t ? t->ndim : -1; }
const int64_t *yk_tensor_shape(const yk_tensor *t) { return t ? t->shape : NULL; }
int64_t yk_tensor_numel(const yk_tensor *t) { return t ? t->numel : 0; }
void *yk_tensor_data(const yk_tensor *t) { return t ? t->data : NULL; }

int64_t yk_tensor_dim(const yk_tensor *t, int i)
{
    if (!t)
        return -1;
    int d = yk__norm_dim(i, t->ndim);
    return d < 0 ? -1 : t->shape[d];
}

size_t yk_tensor_nbytes(const yk_tensor *t)
{
    return t ? (size_t)t->numel * yk_dtype_size(t->dtype) : 0;
}

double yk_tensor_get(const yk_tensor *t, int64_t i)
{
    if (!t || i < 0 || i >= t->numel)
        return NAN;
    switch (t->dtype) {
    case YK_F32: return ((const float *)t->data)[i];
    case YK_F64: return ((const double *)t->data)[i];
    case YK_I64: return (double)((const int64_t *)t->data)[i];
    }
    return NAN;
}

static void set_element(yk_tensor *t, int64_t i, double v)
{
    switch (t->dtype) {
    case YK_F32: ((float *)t->data)[i] = (float)v; break;
    case YK_F64: ((double *)t->data)[i] = v; break;
    case YK_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
    }
}

yk_status yk_tensor_fill(yk_tensor *t, double value)
{
    if (!t)
        return YK_EINVAL;
    for (int64_t i = 0; i < t->numel; i++)
        set_element(t, i, value);
    return YK_OK;
}

yk_status yk_tensor_copy(yk_tensor *dst, const yk_tensor *src)
{
    if (!dst || !src)
        return dst ? yk__error(dst->ctx, YK_EINVAL, "yk_tensor_copy: src is NULL")
                   : YK_EINVAL;
    if (dst->dtype != src->dtype)
        return yk__error(dst->ctx, YK_EDTYPE,
                         "yk_tensor_copy: dst is %s but src is %s",
                         yk_dtype_name(dst->dtype), yk_dtype_name(src->dtype));
    if (dst->numel != src->numel)
        return yk__error(dst->ctx, YK_ESHAPE,
                         "yk_tensor_copy: dst has %lld elements but src %lld",
                         (long long)dst->numel, (long long)src->numel);
    if (dst->numel)
        memmove(dst->data, src->data, yk_tensor_nbytes(dst));
    return YK_OK;
}

/* ---------------------------------------------------------------- random */

/* A counter-based generator: the SplitMix64 finalizer applied twice to
 * (seed, counter). Element i of a fill depends only on (seed, i). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t yk__random_u64(uint64_t seed, uint64_t counter)
{
    return mix64(mix64(seed + UINT64_C(0x9e3779b97f4a7c15)) ^
                 (counter * UINT64_C(0xd1b54a32d192ed03)));
}

/* Uniform in (0, 1): 53 random bits, never exactly 0 (log() below). */
static double uniform01(uint64_t seed, uint64_t counter)
{
    return ((double)(yk__random_u64(seed, counter) >> 11) + 0.5) *
           (1.0 / 9007199254740992.0);
}

static yk_status check_float(yk_tensor *t, const char *fn)
{
    if (!t)
        return YK_EINVAL;
    if (t->dtype == YK_I64)
        return yk__error(t->ctx, YK_EDTYPE, "%s: tensor is i64, needs f32 "
                         "or f64", fn);
    return YK_OK;
}

yk_status yk_tensor_fill_normal(yk_tensor *t, uint64_t seed, double mean,
                                double std)
{
    yk_status s = check_float(t, "yk_tensor_fill_normal");
    if (s)
        return s;
    if (!(std >= 0))
        return yk__error(t->ctx, YK_EINVAL, "yk_tensor_fill_normal: std = %g "
                         "must be >= 0", std);
    const double two_pi = 6.283185307179586476925286766559;
    for (int64_t i = 0; i < t->numel; i++) {
        /* Box-Muller on two counters of element i. */
        double u1 = uniform01(seed, 2 * (uint64_t)i);
        double u2 = uniform01(seed, 2 * (uint64_t)i + 1);
        double z = sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
        set_element(t, i, mean + std * z);
    }
    return YK_OK;
}

yk_status yk_tensor_fill_uniform(yk_tensor *t, uint64_t seed, double lo,
                                 double hi)
{
    yk_status s = check_float(t, "yk_tensor_fill_uniform");
    if (s)
        return s;
    if (!(lo <= hi))
        return yk__error(t->ctx, YK_EINVAL, "yk_tensor_fill_uniform: lo = %g "
                         "is above hi = %g", lo, hi);
    for (int64_t i = 0; i < t->numel; i++)
        set_element(t, i, lo + (hi - lo) * uniform01(seed, (uint64_t)i));
    return YK_OK;
}

yk_status yk_tensor_fill_randint(yk_tensor *t, uint64_t seed, int64_t lo,
                                 int64_t hi)
{
    if (!t)
        return YK_EINVAL;
    if (t->dtype != YK_I64)
        return yk__error(t->ctx, YK_EDTYPE, "yk_tensor_fill_randint: tensor is "
                         "%s, needs i64", yk_dtype_name(t->dtype));
    if (lo >= hi)
        return yk__error(t->ctx, YK_EINVAL, "yk_tensor_fill_randint: lo = %lld "
                         "must be below hi = %lld", (long long)lo,
                         (long long)hi);
    uint64_t range = (uint64_t)hi - (uint64_t)lo;
    int64_t *d = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        /* Multiply-shift maps 64 random bits onto [0, range) with a bias
         * below range / 2^64, far below anything a test could see. */
        uint64_t r = yk__random_u64(seed, (uint64_t)i);
        uint64_t k = (uint64_t)(((unsigned __int128)r * range) >> 64);
        d[i] = (int64_t)((uint64_t)lo + k);
    }
    return YK_OK;
}

/* -------------------------------------------------------------- printing */

const char *yk_shape_format(const yk_tensor *t, char *buf, size_t size)
{
    if (!buf || size == 0)
        return "";
    if (!t) {
        snprintf(buf, size, "(null)");
        return buf;
    }
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? ", " : "",
                              (long long)t->shape[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
    return buf;
}

/* Prints dims from dim on, of the block starting at flat index base. Long
 * dims show their first and last 3 entries, as PyTorch does past 1000
 * elements. */
static void print_block(FILE *f, const yk_tensor *t, int dim, int64_t base,
                        int64_t stride, bool elide, int indent)
{
    if (dim == t->ndim) {
        double v = yk_tensor_get(t, base);
        if (t->dtype == YK_I64)
            fprintf(f, "%lld", (long long)v);
        else
            fprintf(f, "%.4f", v);
        return;
    }
    int64_t n = t->shape[dim], inner = stride / (n ? n : 1);
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (elide && n > 6 && i == 3) {
            fprintf(f, "...");
            i = n - 3;
            fputs(dim + 1 == t->ndim ? ", " : ",\n", f);
            if (dim + 1 < t->ndim)
                fprintf(f, "%*s", indent + dim + 1, "");
        }
        print_block(f, t, dim + 1, base + i * inner, inner, elide, indent);
        if (i + 1 < n) {
            fputs(dim + 1 == t->ndim ? ", " : ",\n", f);
            if (dim + 1 < t->ndim)
                fprintf(f, "%*s", indent + dim + 1, "");
        }
    }
    fputc(']', f);
}

yk_status yk_tensor_print(FILE *f, const yk_tensor *t)
{
    if (!f || !t)
        return YK_EINVAL;
    fputs("tensor(", f);
    print_block(f, t, 0, 0, t->numel, t->numel > 1000, 7);
    if (t->dtype != YK_F32)
        fprintf(f, ", dtype=%s", t->dtype == YK_F64 ? "torch.float64"
                                                    : "torch.int64");
    fputs(")\n", f);
    return YK_OK;
}
