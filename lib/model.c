/* model.c -- the parameter store: named parameters and their gradients. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

yk_model *yk_model_new(yk_ctx *ctx)
{
    if (!ctx)
        return NULL;
    yk_model *m = yk__alloc(ctx, sizeof *m);
    if (m) {
        m->ctx = ctx;
        ctx->live_models++; /* graphs keep arena chunks while a model lives */
    }
    return m;
}

yk_ctx *yk_model_ctx(const yk_model *m) { return m ? m->ctx : NULL; }

/* The dirty-row bitmap of p: one bit a row. */
static size_t bitmap_bytes(const yk_param *p)
{
    int64_t rows = p->value.ndim ? p->value.shape[0] : 0;
    return (size_t)((rows + 63) / 64) * sizeof(uint64_t);
}

static void grad_free(yk_param *p)
{
    yk_ctx *ctx = p->model->ctx;
    yk_tensor_free(p->grad);
    p->grad = NULL;
    yk__free(ctx, p->dirty_rows, (size_t)p->dirty_cap * sizeof(int64_t));
    yk__free(ctx, p->dirty_bits, bitmap_bytes(p));
    p->dirty_rows = NULL;
    p->dirty_bits = NULL;
    p->dirty_n = p->dirty_cap = 0;
    p->dirty_all = false;
    yk__free(ctx, p->rows, (size_t)p->rows_cap * sizeof(int64_t));
    yk__chunk_free(ctx, p->row_chunk);
    p->rows = NULL;
    p->row_chunk = NULL;
    p->row_values = NULL;
    p->nrows = p->rows_cap = 0;
    p->grad_kind = YK_GRAD_NONE;
}

static void param_free(yk_param *p)
{
    yk_ctx *ctx = p->model->ctx;
    grad_free(p);
    yk__free_aligned(ctx, p->value.data, yk_tensor_nbytes(&p->value));
    yk__free(ctx, p->name, strlen(p->name) + 1);
    yk__free(ctx, p, sizeof *p);
}

void yk_model_free(yk_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++)
        param_free(m->params[i]);
    yk__free(m->ctx, m->params, (size_t)m->cap * sizeof *m->params);
    yk_ctx *ctx = m->ctx;
    yk__free(ctx, m, sizeof *m);
    if (--ctx->live_models == 0)
        yk__arena_release(ctx);
}

yk_param *yk_model_add(yk_model *m, const char *name, yk_dtype dt, int ndim,
                       const int64_t *shape)
{
    if (!m)
        return NULL;
    yk_ctx *ctx = m->ctx;
    if (!name || !*name) {
        yk__error(ctx, YK_EINVAL, "yk_model_add: name is empty");
        return NULL;
    }
    if (yk_model_find(m, name)) {
        yk__error(ctx, YK_EINVAL, "yk_model_add: a parameter named \"%s\" "
                  "already exists", name);
        return NULL;
    }
    int64_t numel;
    if (yk__shape_check(ctx, "yk_model_add", dt, ndim, shape, &numel))
        return NULL;
    if (dt == YK_I64) {
        yk__error(ctx, YK_EDTYPE, "yk_model_add: parameter \"%s\" must be "
                  "f32 or f64, not i64", name);
        return NULL;
    }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 8;
        yk_param **a = yk__realloc(ctx, m->params,
                                   (size_t)m->cap * sizeof *a,
                                   (size_t)cap * sizeof *a);
        if (!a)
            return NULL;
        m->params = a;
        m->cap = cap;
    }
    yk_param *p = yk__alloc(ctx, sizeof *p);
    if (!p)
        return NULL;
    p->model = m;
    p->requires_grad = true;
    yk__tensor_init(&p->value, ctx, dt, ndim, shape, numel);
    p->value.storage = YK__ARENA; /* freed by param_free, never by users */
    p->name = yk__strdup(ctx, name);
    p->value.data = p->name ? yk__alloc_aligned(ctx, yk_tensor_nbytes(&p->value))
                            : NULL;
    if (!p->value.data) {
        yk__free(ctx, p->name, p->name ? strlen(p->name) + 1 : 0);
        yk__free(ctx, p, sizeof *p);
        return NULL;
    }
    m->params[m->n++] = p;
    return p;
}

yk_param *yk_model_find(const yk_model *m, const char *name)
{
    if (!m || !name)
        return NULL;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->params[i]->name, name) == 0)
            return m->params[i];
    return NULL;
}

int yk_model_count(const yk_model *m) { return m ? m->n : 0; }

yk_param *yk_model_at(const yk_model *m, int i)
{
    return m && i >= 0 && i < m->n ? m->params[i] : NULL;
}

/* ------------------------------------------------ dirty rows of grad */

/* Bytes of one row of p (of its value, gradient and row values). */
static size_t row_bytes(const yk_param *p)
{
    return (size_t)yk__rowlen(&p->value) * yk_dtype_size(p->value.dtype);
}

/* A capacity of 64 doubled until it holds need. */
static int64_t grown(int64_t cap, int64_t need)
{
    cap = cap ? cap : 64;
    while (cap < need)
        cap *= 2;
    return cap;
}

void yk__param_grad_written(yk_param *p)
{
    p->dirty_all = true;
}

/* Notes the rows of chunks as written, before they are. The list is kept
 * to a quarter of the table: past that the whole buffer counts as written
 * (zero_grad clears it all and an optimizer walks it all, one streamed
 * pass being cheaper than that many random rows). YK_ENOMEM leaves p as it
 * was. */
static yk_status mark_rows(yk_param *p, const yk__rowchunk *chunks)
{
    if (p->dirty_all || p->value.ndim == 0)
        return YK_OK;
    int64_t need = p->dirty_n, limit = p->value.shape[0] / 4;
    for (const yk__rowchunk *c = chunks; c; c = c->next)
        need += c->n;
    need = need > limit ? limit : need;
    yk_ctx *ctx = p->model->ctx;
    if (!p->dirty_bits) {
        p->dirty_bits = yk__alloc(ctx, bitmap_bytes(p));
        if (!p->dirty_bits)
            return YK_ENOMEM;
    }
    if (need > p->dirty_cap) {
        int64_t cap = grown(p->dirty_cap, need);
        cap = cap > limit ? limit : cap;
        int64_t *r = yk__realloc(ctx, p->dirty_rows,
                                 (size_t)p->dirty_cap * sizeof(int64_t),
                                 (size_t)cap * sizeof(int64_t));
        if (!r)
            return YK_ENOMEM;
        p->dirty_rows = r;
        p->dirty_cap = cap;
    }
    uint64_t *bits = p->dirty_bits;
    for (const yk__rowchunk *c = chunks; c; c = c->next)
        for (int64_t k = 0; k < c->n; k++) {
            int64_t r = c->rows[k];
            uint64_t bit = (uint64_t)1 << (r & 63);
            if (bits[r >> 6] & bit)
                continue;
            if (p->dirty_n == limit) { /* (the bits are cleared with all) */
                p->dirty_all = true;
                return YK_OK;
            }
            bits[r >> 6] |= bit;
            p->dirty_rows[p->dirty_n++] = r;
        }
    return YK_OK;
}

bool yk__param_grad_dirty_rows(yk_param *p, int64_t *n, const int64_t **rows)
{
    if (p->dirty_all || p->grad_kind != YK_GRAD_DENSE)
        return false;
    *n = p->dirty_n;
    *rows = p->dirty_rows;
    return true;
}

/* Zeroes what was written of the dense gradient since the last clear. */
static void clear_dense(yk_param *p)
{
    if (p->dirty_all) {
        memset(p->grad->data, 0, yk_tensor_nbytes(p->grad));
        if (p->dirty_bits)
            memset(p->dirty_bits, 0, bitmap_bytes(p));
    } else {
        size_t rb = row_bytes(p);
        char *g = p->grad->data;
        int64_t ahead = yk__prefetch_distance(rb);
        for (int64_t k = 0; k < p->dirty_n; k++) {
            if (k + ahead < p->dirty_n)
                yk__prefetch_write(g + (size_t)p->dirty_rows[k + ahead] * rb,
                                   rb);
            int64_t r = p->dirty_rows[k];
            memset(g + (size_t)r * rb, 0, rb);
            p->dirty_bits[r >> 6] &= ~((uint64_t)1 << (r & 63));
        }
    }
    p->dirty_all = false;
    p->dirty_n = 0;
}

void yk_model_zero_grad(yk_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++) {
        yk_param *p = m->params[i];
        if (p->grad_kind == YK_GRAD_DENSE) {
            /* Keep the buffer: zeroing is cheaper than reallocating. */
            clear_dense(p);
            p->grad_kind = YK_GRAD_NONE;
        } else {
            p->nrows = 0;
            p->grad_kind = YK_GRAD_NONE;
            /* A big values block goes to the spares, where the next step's
             * gradient rows are made (and taken back: adopt_values); a
             * small one stays for the next step. */
            if (p->row_chunk && yk__arena_offer(m->ctx, p->row_chunk)) {
                p->row_chunk = NULL;
                p->row_values = NULL;
            }
        }
    }
}

const char *yk_param_name(const yk_param *p) { return p ? p->name : NULL; }
yk_model *yk_param_model(const yk_param *p) { return p ? p->model : NULL; }
yk_tensor *yk_param_value(yk_param *p) { return p ? &p->value : NULL; }
bool yk_param_requires_grad(const yk_param *p) { return p && p->requires_grad; }

yk_status yk_param_set_requires_grad(yk_param *p, bool on)
{
    if (!p)
        return YK_EINVAL;
    p->requires_grad = on;
    if (!on)
        grad_free(p);
    return YK_OK;
}

bool yk_param_same(const yk_param *a, const yk_param *b)
{
    return a && b && a == b;
}

int64_t yk__rowlen(const yk_tensor *t)
{
    int64_t n = 1;
    for (int i = 1; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

/* ------------------------------------------------------- accumulation */

void yk__add_into(yk_dtype dt, void *dst, const void *src, int64_t n)
{
    if (dt == YK_F32) {
        float *d = dst;
        const float *s = src;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    } else {
        double *d = dst;
        const double *s = src;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    }
}

/* Makes the store's gradient dense (allocating the buffer once). */
static yk_status make_dense(yk_param *p)
{
    if (p->grad_kind == YK_GRAD_DENSE)
        return YK_OK;
    if (!p->grad) {
        p->grad = yk_tensor_zeros(p->model->ctx, p->value.dtype,
                                  p->value.ndim, p->value.shape);
        if (!p->grad)
            return YK_ENOMEM;
    }
    if (p->grad_kind == YK_GRAD_ROWS) {
        yk__rowchunk all = {.n = p->nrows, .rows = p->rows, .values = p->row_values};
        if (mark_rows(p, &all) != YK_OK)
            return YK_ENOMEM;
        yk__scatter_rows(p->value.dtype, p->grad->data,
                         yk__rowlen(&p->value), &all);
        p->nrows = 0;
    }
    p->grad_kind = YK_GRAD_DENSE;
    return YK_OK;
}

yk_status yk__param_add_dense(yk_param *p, const void *g)
{
    yk_status s = make_dense(p);
    if (s == YK_OK && g) {
        yk__add_into(p->value.dtype, p->grad->data, g, p->value.numel);
        p->dirty_all = true;
    }
    return s;
}

/* Room for need row indices, keeping those held. */
static yk_status reserve_indices(yk_param *p, int64_t need)
{
    if (need <= p->rows_cap)
        return YK_OK;
    yk_ctx *ctx = p->model->ctx;
    int64_t cap = grown(p->rows_cap, need);
    int64_t *rows = yk__alloc(ctx, (size_t)cap * 8);
    if (!rows)
        return YK_ENOMEM;
    if (p->nrows)
        memcpy(rows, p->rows, (size_t)p->nrows * 8);
    yk__free(ctx, p->rows, (size_t)p->rows_cap * 8);
    p->rows = rows;
    p->rows_cap = cap;
    return YK_OK;
}

/* Room for need value rows, keeping those held. */
static yk_status reserve_values(yk_param *p, int64_t need)
{
    size_t rb = row_bytes(p);
    int64_t have = p->row_chunk && rb ? (int64_t)(p->row_chunk->size / rb) : 0;
    if (rb == 0 || need <= have)
        return YK_OK;
    yk_ctx *ctx = p->model->ctx;
    yk__arena_chunk *c = yk__chunk_new(ctx, (size_t)grown(have, need) * rb);
    if (!c)
        return YK_ENOMEM;
    if (p->nrows)
        memcpy(yk__chunk_data(c), p->row_values, (size_t)p->nrows * rb);
    yk__chunk_free(ctx, p->row_chunk);
    p->row_chunk = c;
    p->row_values = yk__chunk_data(c);
    return YK_OK;
}

/* A store holding no row takes over the values of a lone chunk when they
 * fill a big arena block of their own, instead of copying them (see
 * yk__arena_take_block in engine.h); false: copy. The indices have room. */
static bool adopt_values(yk_param *p, const yk__rowchunk *c, yk_graph *g)
{
    if (!g || !c || p->nrows != 0 || c->next)
        return false;
    yk__arena_chunk *block =
        yk__arena_take_block(g, c->values, (size_t)c->n * row_bytes(p));
    if (!block)
        return false;
    yk__chunk_free(p->model->ctx, p->row_chunk);
    p->row_chunk = block;
    p->row_values = yk__chunk_data(block);
    memcpy(p->rows, c->rows, (size_t)c->n * 8);
    p->nrows = c->n;
    return true;
}

yk_status yk__param_add_rows(yk_param *p, const yk__rowchunk *chunks,
                             yk_graph *g)
{
    if (p->grad_kind == YK_GRAD_DENSE) {
        if (mark_rows(p, chunks) != YK_OK)
            return YK_ENOMEM;
        yk__scatter_rows(p->value.dtype, p->grad->data,
                         yk__rowlen(&p->value), chunks);
        return YK_OK;
    }
    int64_t total = p->nrows;
    for (const yk__rowchunk *c = chunks; c; c = c->next)
        total += c->n;
    /* (a failure leaves the rows held as they were) */
    if (reserve_indices(p, total) != YK_OK)
        return YK_ENOMEM;
    if (!adopt_values(p, chunks, g)) {
        if (reserve_values(p, total) != YK_OK)
            return YK_ENOMEM;
        size_t rb = row_bytes(p);
        for (const yk__rowchunk *c = chunks; c; c = c->next) {
            if (c->n == 0)
                continue;
            memcpy(p->rows + p->nrows, c->rows, (size_t)c->n * 8);
            if (rb)
                memcpy((char *)p->row_values + (size_t)p->nrows * rb,
                       c->values, (size_t)c->n * rb);
            p->nrows += c->n;
        }
    }
    p->grad_kind = YK_GRAD_ROWS;
    p->rows_coalesced = false;
    return YK_OK;
}

/* ------------------------------------------------------------ queries */

yk_grad_kind yk_param_grad_kind(const yk_param *p)
{
    return p ? p->grad_kind : YK_GRAD_NONE;
}

const yk_tensor *yk_param_grad(const yk_param *p)
{
    return p && p->grad_kind == YK_GRAD_DENSE ? p->grad : NULL;
}

static int cmp_row_index(const void *a, const void *b, void *rows)
{
    int64_t ra = ((const int64_t *)rows)[*(const int64_t *)a];
    int64_t rb = ((const int64_t *)rows)[*(const int64_t *)b];
    if (ra != rb)
        return ra < rb ? -1 : 1;
    /* Equal rows keep input order, so sums are the same on every run. */
    int64_t ia = *(const int64_t *)a, ib = *(const int64_t *)b;
    return ia < ib ? -1 : ia > ib;
}

static bool rows_ascending(const int64_t *rows, int64_t n)
{
    for (int64_t i = 1; i < n; i++)
        if (rows[i] <= rows[i - 1])
            return false;
    return true;
}

/* Sorts the rows (stable) and sums repeats, in place. Rows already
 * strictly ascending (one op's gradient: embedding and embedding_bag send
 * each distinct row once, in order) are left as they are. */
static yk_status coalesce(yk_param *p)
{
    if (p->rows_coalesced || rows_ascending(p->rows, p->nrows)) {
        p->rows_coalesced = true;
        return YK_OK;
    }
    yk_ctx *ctx = p->model->ctx;
    int64_t n = p->nrows, rowlen = yk__rowlen(&p->value);
    size_t es = yk_dtype_size(p->value.dtype), rb = (size_t)rowlen * es;
    int64_t *order = yk__alloc(ctx, (size_t)n * 8);
    int64_t *rows = yk__alloc(ctx, (size_t)n * 8);
    char *vals = yk__alloc(ctx, (size_t)n * rb);
    if (!order || !rows || !vals) {
        yk__free(ctx, order, (size_t)n * 8);
        yk__free(ctx, rows, (size_t)n * 8);
        yk__free(ctx, vals, (size_t)n * rb);
        return YK_ENOMEM;
    }
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, (size_t)n, sizeof *order, cmp_row_index, p->rows);
    int64_t m = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = order[k];
        const char *src = (const char *)p->row_values + (size_t)i * rb;
        if (m > 0 && rows[m - 1] == p->rows[i]) {
            yk__add_into(p->value.dtype, vals + (size_t)(m - 1) * rb, src, rowlen);
        } else {
            rows[m] = p->rows[i];
            memcpy(vals + (size_t)m * rb, src, rb);
            m++;
        }
    }
    memcpy(p->rows, rows, (size_t)m * 8);
    memcpy(p->row_values, vals, (size_t)m * rb);
    p->nrows = m;
    p->rows_coalesced = true;
    yk__free(ctx, order, (size_t)n * 8);
    yk__free(ctx, rows, (size_t)n * 8);
    yk__free(ctx, vals, (size_t)n * rb);
    return YK_OK;
}

yk_status yk_param_grad_rows(yk_param *p, int64_t *nrows, const int64_t **rows,
                             const yk_tensor **values)
{
    if (!p)
        return YK_EINVAL;
    if (!nrows || !rows || !values)
        return yk__error(p->model->ctx, YK_EINVAL, "yk_param_grad_rows: "
                         "nrows, rows and values must not be NULL");
    if (p->grad_kind != YK_GRAD_ROWS)
        return yk__error(p->model->ctx, YK_ESTATE, "yk_param_grad_rows: the "
                         "gradient of \"%s\" is not row-sparse", p->name);
    yk_status s = coalesce(p);
    if (s)
        return s;
    int64_t shape[YK_MAX_DIMS];
    shape[0] = p->nrows;
    for (int i = 1; i < p->value.ndim; i++)
        shape[i] = p->value.shape[i];
    yk__tensor_init(&p->rows_view, p->model->ctx, p->value.dtype,
                    p->value.ndim, shape, p->nrows * yk__rowlen(&p->value));
    p->rows_view.data = p->row_values;
    p->rows_view.storage = YK__ARENA;
    *nrows = p->nrows;
    *rows = p->rows;
    *values = &p->rows_view;
    return YK_OK;
}

yk_status yk_param_grad_to_dense(yk_param *p, yk_tensor *out)
{
    if (!p)
        return YK_EINVAL;
    yk_ctx *ctx = p->model->ctx;
    if (!out)
        return yk__error(ctx, YK_EINVAL, "yk_param_grad_to_dense: out is NULL");
    if (out->dtype != p->value.dtype)
        return yk__error(ctx, YK_EDTYPE, "yk_param_grad_to_dense: out is %s, "
                         "parameter \"%s\" is %s", yk_dtype_name(out->dtype),
                         p->name, yk_dtype_name(p->value.dtype));
    if (!yk__same_shape(out, &p->value))
        return yk__error(ctx, YK_ESHAPE, "yk_param_grad_to_dense: out's shape "
                         "differs from parameter \"%s\"", p->name);
    memset(out->data, 0, yk_tensor_nbytes(out));
    if (p->grad_kind == YK_GRAD_DENSE) {
        memcpy(out->data, p->grad->data, yk_tensor_nbytes(out));
    } else if (p->grad_kind == YK_GRAD_ROWS) {
        yk__rowchunk all = {.n = p->nrows, .rows = p->rows, .values = p->row_values};
        yk__scatter_rows(p->value.dtype, out->data, yk__rowlen(&p->value),
                         &all);
    }
    return YK_OK;
}
