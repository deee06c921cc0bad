/*
 * optim.c -- optimizers (torch.optim's SGD, Adam, AdamW, Adagrad,
 * SparseAdam, and row-wise Adagrad), gradient clipping, lr schedules.
 *
 * A step has two passes. prepare() decides, for every parameter, what to do
 * (skip, free the state, a dense update, a lazy or an exact row-sparse
 * update) and makes everything that can fail: the state tensors, the
 * coalesced gradient rows, a row of zeros. apply() then cannot fail, so an
 * error leaves every parameter and step count as it was.
 *
 * Updates run over spans of whole rows ("rows" are indices along dim 0), so
 * one walk serves a dense gradient (every unfrozen run of rows), a lazy
 * row-sparse one (the gradient's rows only) and an exact row-sparse one (the
 * gradient's rows, and rows of zeros between them). The f32 kernels compute
 * in float with float-rounded coefficients, in torch.optim's order of
 * operations, so that they round as PyTorch does.
 */
#include "engine.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_STATES 3

/* ============================================================ options */

enum {
    F_LR = 1u << 0,
    F_MOMENTUM = 1u << 1,
    F_DAMPENING = 1u << 2,
    F_NESTEROV = 1u << 3,
    F_BETA1 = 1u << 4,
    F_BETA2 = 1u << 5,
    F_EPS = 1u << 6,
    F_WD = 1u << 7,
    F_AMSGRAD = 1u << 8,
    F_LR_DECAY = 1u << 9,
    F_INIT_ACC = 1u << 10,
};

typedef struct opt_field {
    const char *name;
    unsigned bit;
    size_t offset;
    bool is_bool;
    bool nonneg; /* must be >= 0 (and not NaN) */
} opt_field;

#define FIELD(name, bit, is_bool, nonneg)                                    \
    {#name, bit, offsetof(yk_optim_opts, name), is_bool, nonneg}

static const opt_field fields[] = {
    FIELD(lr, F_LR, false, true),
    FIELD(momentum, F_MOMENTUM, false, true),
    FIELD(dampening, F_DAMPENING, false, false),
    FIELD(nesterov, F_NESTEROV, true, false),
    FIELD(beta1, F_BETA1, false, false),
    FIELD(beta2, F_BETA2, false, false),
    FIELD(eps, F_EPS, false, true),
    FIELD(weight_decay, F_WD, false, true),
    FIELD(amsgrad, F_AMSGRAD, true, false),
    FIELD(lr_decay, F_LR_DECAY, false, true),
    FIELD(initial_accumulator_value, F_INIT_ACC, false, true),
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

#define N_KINDS 6

static const char *const kind_names[N_KINDS] = {
    "sgd", "adam", "adamw", "adagrad", "sparse_adam", "rowwise_adagrad"};

/* The options each kind reads. */
static const unsigned kind_fields[N_KINDS] = {
    [YK_OPTIM_SGD] = F_LR | F_MOMENTUM | F_DAMPENING | F_NESTEROV | F_WD,
    [YK_OPTIM_ADAM] = F_LR | F_BETA1 | F_BETA2 | F_EPS | F_WD | F_AMSGRAD,
    [YK_OPTIM_ADAMW] = F_LR | F_BETA1 | F_BETA2 | F_EPS | F_WD | F_AMSGRAD,
    [YK_OPTIM_ADAGRAD] = F_LR | F_LR_DECAY | F_WD | F_INIT_ACC | F_EPS,
    [YK_OPTIM_SPARSE_ADAM] = F_LR | F_BETA1 | F_BETA2 | F_EPS,
    [YK_OPTIM_ROWWISE_ADAGRAD] = F_LR | F_LR_DECAY | F_INIT_ACC | F_EPS,
};

static bool kind_ok(yk_optim_kind k) { return (unsigned)k < N_KINDS; }

const char *yk_optim_kind_name(yk_optim_kind kind)
{
    return kind_ok(kind) ? kind_names[kind] : "?";
}

bool yk_optim_kind_from_name(const char *name, yk_optim_kind *out)
{
    for (int k = 0; name && k < N_KINDS; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            if (out)
                *out = (yk_optim_kind)k;
            return true;
        }
    }
    return false;
}

yk_optim_opts yk_optim_defaults(yk_optim_kind kind)
{
    yk_optim_opts o = {0};
    switch (kind) {
    case YK_OPTIM_SGD:
        o.lr = NAN; /* torch.optim.SGD has no default lr */
        break;
    case YK_OPTIM_ADAMW:
        o.weight_decay = 0.01;
        /* fall through */
    case YK_OPTIM_ADAM:
    case YK_OPTIM_SPARSE_ADAM:
        o.lr = 1e-3;
        o.beta1 = 0.9;
        o.beta2 = 0.999;
        o.eps = 1e-8;
        break;
    case YK_OPTIM_ADAGRAD:
    case YK_OPTIM_ROWWISE_ADAGRAD:
        o.lr = 1e-2;
        o.eps = 1e-10;
        break;
    }
    return o;
}

static double field_get(const yk_optim_opts *o, const opt_field *f)
{
    const char *base = (const char *)o + f->offset;
    return f->is_bool ? (double)*(const bool *)base : *(const double *)base;
}

yk_status yk_optim_opts_set(yk_ctx *ctx, yk_optim_kind kind,
                            yk_optim_opts *o, const char *name, double value)
{
    if (!ctx)
        return YK_EINVAL;
    if (!kind_ok(kind))
        return yk__error(ctx, YK_EINVAL, "yk_optim_opts_set: kind %d is not "
                         "an optimizer kind", (int)kind);
    if (!o || !name)
        return yk__error(ctx, YK_EINVAL, "yk_optim_opts_set: %s is NULL",
                         o ? "name" : "opts");
    for (int i = 0; i < N_FIELDS; i++) {
        const opt_field *f = &fields[i];
        if (strcmp(f->name, name) != 0 || !(kind_fields[kind] & f->bit))
            continue;
        char *base = (char *)o + f->offset;
        if (f->is_bool)
            *(bool *)base = value != 0;
        else
            *(double *)base = value;
        return YK_OK;
    }
    return yk__error(ctx, YK_EINVAL, "%s: unknown option \"%s\"",
                     kind_names[kind], name);
}

/* Checks opts for kind as torch.optim's constructors do, naming the
 * option and its value. */
static yk_status opts_check(yk_ctx *ctx, yk_optim_kind kind,
                            const yk_optim_opts *o)
{
    const char *kn = kind_names[kind];
    if (kind == YK_OPTIM_SGD && isnan(o->lr))
        return yk__error(ctx, YK_EINVAL, "sgd: lr is required (it has no "
                         "default), got lr = nan");
    for (int i = 0; i < N_FIELDS; i++) {
        const opt_field *f = &fields[i];
        double v = field_get(o, f);
        if (!(kind_fields[kind] & f->bit)) {
            if (v != 0)
                return yk__error(ctx, YK_EINVAL, "%s: %s = %g is not an "
                                 "option of %s (leave it 0)", kn, f->name, v,
                                 kn);
        } else if (f->nonneg && !(v >= 0)) {
            return yk__error(ctx, YK_EINVAL, "%s: %s = %g is invalid, it "
                             "must be >= 0", kn, f->name, v);
        }
    }
    if (kind_fields[kind] & F_BETA1) {
        if (!(o->beta1 >= 0 && o->beta1 < 1))
            return yk__error(ctx, YK_EINVAL, "%s: beta1 (betas[0]) = %g is "
                             "not in [0, 1)", kn, o->beta1);
        if (!(o->beta2 >= 0 && o->beta2 < 1))
            return yk__error(ctx, YK_EINVAL, "%s: beta2 (betas[1]) = %g is "
                             "not in [0, 1)", kn, o->beta2);
    }
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return yk__error(ctx, YK_EINVAL, "sgd: nesterov needs momentum > 0 "
                         "and dampening = 0, got momentum = %g, dampening = "
                         "%g", o->momentum, o->dampening);
    return YK_OK;
}

/* ======================================================= the optimizer */

/* What a step does with one parameter (decided by prepare()). */
typedef enum plan_mode {
    PLAN_SKIP,       /* no gradient: nothing changes                 */
    PLAN_FREE,       /* requires_grad off: drop the state            */
    PLAN_DENSE,      /* dense gradient, every unfrozen row           */
    PLAN_DENSE_ROWS, /* dense gradient, only the rows it was written at */
    PLAN_ROWS_LAZY,  /* the gradient's rows only                     */
    PLAN_ROWS_EXACT  /* every row, the missing ones with gradient 0  */
} plan_mode;

typedef struct entry {
    yk_param *p;
    int64_t step;                  /* t of the last step taken       */
    bool has_state;                /* state tensors made             */
    yk_tensor *state[MAX_STATES];  /* by o->state_names              */
    uint64_t *frozen;              /* bitmap of frozen rows, or NULL */
    /* this step's plan */
    plan_mode mode;
    int64_t nrows;
    const int64_t *rows;
    const void *values;
} entry;

struct yk_optim {
    yk_ctx *ctx;
    yk_optim_kind kind;
    yk_optim_opts opts;
    int n_states;
    const char *state_names[MAX_STATES];
    entry *entries;
    int n, cap;
    void *zero;        /* one row of zeros for exact row-sparse walks */
    size_t zero_bytes;
};

static int64_t param_rows(const yk_param *p)
{
    return p->value.ndim == 0 ? 1 : p->value.shape[0];
}

static size_t bitmap_bytes(const yk_param *p)
{
    return (size_t)((param_rows(p) + 63) / 64) * sizeof(uint64_t);
}

static bool is_frozen(const entry *e, int64_t r)
{
    return e->frozen && (e->frozen[r >> 6] >> (r & 63) & 1);
}

static void set_state_names(yk_optim *o)
{
    const char **nm = o->state_names;
    switch (o->kind) {
    case YK_OPTIM_SGD:
        if (o->opts.momentum != 0)
            nm[o->n_states++] = "momentum_buffer";
        break;
    case YK_OPTIM_ADAM:
    case YK_OPTIM_ADAMW:
    case YK_OPTIM_SPARSE_ADAM:
        nm[o->n_states++] = "exp_avg";
        nm[o->n_states++] = "exp_avg_sq";
        if (o->opts.amsgrad)
            nm[o->n_states++] = "max_exp_avg_sq";
        break;
    case YK_OPTIM_ADAGRAD:
    case YK_OPTIM_ROWWISE_ADAGRAD:
        nm[o->n_states++] = "sum";
        break;
    }
}

yk_optim *yk_optim_new(yk_ctx *ctx, yk_optim_kind kind,
                       const yk_optim_opts *opts)
{
    if (!ctx)
        return NULL;
    if (!kind_ok(kind)) {
        yk__error(ctx, YK_EINVAL, "yk_optim_new: kind %d is not an "
                  "optimizer kind", (int)kind);
        return NULL;
    }
    yk_optim_opts use = opts ? *opts : yk_optim_defaults(kind);
    if (opts_check(ctx, kind, &use))
        return NULL;
    yk_optim *o = yk__alloc(ctx, sizeof *o);
    if (!o)
        return NULL;
    o->ctx = ctx;
    o->kind = kind;
    o->opts = use;
    set_state_names(o);
    return o;
}

static void state_free(yk_optim *o, entry *e)
{
    for (int i = 0; i < o->n_states; i++) {
        yk_tensor_free(e->state[i]);
        e->state[i] = NULL;
    }
    e->has_state = false;
    e->step = 0;
}

void yk_optim_free(yk_optim *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++) {
        entry *e = &o->entries[i];
        state_free(o, e);
        yk__free(o->ctx, e->frozen, e->frozen ? bitmap_bytes(e->p) : 0);
    }
    yk__free(o->ctx, o->entries, (size_t)o->cap * sizeof *o->entries);
    yk__free(o->ctx, o->zero, o->zero_bytes);
    yk__free(o->ctx, o, sizeof *o);
}

yk_optim_kind yk_optim_kind_of(const yk_optim *o)
{
    return o ? o->kind : YK_OPTIM_SGD;
}

yk_optim_opts yk_optim_options(const yk_optim *o)
{
    yk_optim_opts none = {0};
    return o ? o->opts : none;
}

static entry *find_entry(const yk_optim *o, const yk_param *p)
{
    for (int i = 0; o && p && i < o->n; i++)
        if (o->entries[i].p == p)
            return &o->entries[i];
    return NULL;
}

bool yk_optim_has(const yk_optim *o, const yk_param *p)
{
    return find_entry(o, p) != NULL;
}

int yk_optim_count(const yk_optim *o) { return o ? o->n : 0; }

yk_param *yk_optim_param_at(const yk_optim *o, int i)
{
    return o && i >= 0 && i < o->n ? o->entries[i].p : NULL;
}

static yk_status reserve_entries(yk_optim *o, int need)
{
    if (need <= o->cap)
        return YK_OK;
    int cap = o->cap ? o->cap : 8;
    while (cap < need)
        cap *= 2;
    entry *a = yk__realloc(o->ctx, o->entries, (size_t)o->cap * sizeof *a,
                           (size_t)cap * sizeof *a);
    if (!a)
        return YK_ENOMEM;
    o->entries = a;
    o->cap = cap;
    return YK_OK;
}

/* Can p join o? (checks only; fn names the caller in the message) */
static yk_status param_addable(yk_optim *o, yk_param *p, const char *fn)
{
    if (!p)
        return yk__error(o->ctx, YK_EINVAL, "%s: parameter is NULL", fn);
    if (yk_model_ctx(p->model) != o->ctx)
        return yk__error(o->ctx, YK_EINVAL, "%s: parameter \"%s\" belongs to "
                         "a model of another context", fn, p->name);
    if (find_entry(o, p))
        return yk__error(o->ctx, YK_EINVAL, "%s: parameter \"%s\" is already "
                         "in this optimizer", fn, p->name);
    return YK_OK;
}

static void append_entry(yk_optim *o, yk_param *p)
{
    entry *e = &o->entries[o->n++];
    memset(e, 0, sizeof *e);
    e->p = p;
}

yk_status yk_optim_add(yk_optim *o, yk_param *p)
{
    if (!o)
        return YK_EINVAL;
    yk_status s = param_addable(o, p, "yk_optim_add");
    if (s == YK_OK)
        s = reserve_entries(o, o->n + 1);
    if (s == YK_OK)
        append_entry(o, p);
    return s;
}

yk_status yk_optim_add_model(yk_optim *o, yk_model *m)
{
    if (!o)
        return YK_EINVAL;
    if (!m)
        return yk__error(o->ctx, YK_EINVAL, "yk_optim_add_model: model is "
                         "NULL");
    if (yk_model_ctx(m) != o->ctx)
        return yk__error(o->ctx, YK_EINVAL, "yk_optim_add_model: the model "
                         "belongs to another context");
    int count = yk_model_count(m);
    for (int i = 0; i < count; i++) {
        yk_status s = param_addable(o, yk_model_at(m, i),
                                    "yk_optim_add_model");
        if (s)
            return s;
    }
    yk_status s = reserve_entries(o, o->n + count);
    if (s)
        return s;
    for (int i = 0; i < count; i++)
        append_entry(o, yk_model_at(m, i));
    return YK_OK;
}

double yk_optim_lr(const yk_optim *o) { return o ? o->opts.lr : NAN; }

yk_status yk_optim_set_lr(yk_optim *o, double lr)
{
    if (!o)
        return YK_EINVAL;
    if (!(lr >= 0))
        return yk__error(o->ctx, YK_EINVAL, "yk_optim_set_lr: lr = %g is "
                         "invalid, it must be >= 0", lr);
    o->opts.lr = lr;
    return YK_OK;
}

/* ============================================================== state */

/* The value state i starts at (and frozen rows keep). */
static double state_init_value(const yk_optim *o, int i)
{
    return strcmp(o->state_names[i], "sum") == 0
               ? o->opts.initial_accumulator_value : 0.0;
}

/* Row-wise Adagrad keeps one number a row; the others shadow p. */
static bool state_per_row(const yk_optim *o)
{
    return o->kind == YK_OPTIM_ROWWISE_ADAGRAD;
}

static yk_status state_make(yk_optim *o, entry *e)
{
    if (e->has_state)
        return YK_OK;
    const yk_tensor *v = &e->p->value;
    int64_t rows = param_rows(e->p);
    for (int i = 0; i < o->n_states; i++) {
        yk_tensor *t = state_per_row(o)
            ? yk_tensor_zeros(o->ctx, v->dtype, 1, &rows)
            : yk_tensor_zeros(o->ctx, v->dtype, v->ndim, v->shape);
        if (!t) {
            state_free(o, e);
            return YK_ENOMEM;
        }
        if (state_init_value(o, i) != 0)
            yk_tensor_fill(t, state_init_value(o, i));
        e->state[i] = t;
    }
    e->has_state = true;
    return YK_OK;
}

static int state_index(const yk_optim *o, const char *name)
{
    for (int i = 0; name && i < o->n_states; i++)
        if (strcmp(o->state_names[i], name) == 0)
            return i;
    return -1;
}

int yk_optim_state_count(const yk_optim *o) { return o ? o->n_states : 0; }

const char *yk_optim_state_name(const yk_optim *o, int i)
{
    return o && i >= 0 && i < o->n_states ? o->state_names[i] : NULL;
}

int64_t yk_optim_step_count(const yk_optim *o, const yk_param *p)
{
    const entry *e = find_entry(o, p);
    return e ? e->step : -1;
}

static entry *entry_or_error(yk_optim *o, const yk_param *p, const char *fn)
{
    entry *e = find_entry(o, p);
    if (!e)
        yk__error(o->ctx, YK_EINVAL, "%s: parameter \"%s\" is not in this "
                  "optimizer", fn, p ? p->name : "(NULL)");
    return e;
}

yk_status yk_optim_set_step_count(yk_optim *o, yk_param *p, int64_t step)
{
    if (!o)
        return YK_EINVAL;
    entry *e = entry_or_error(o, p, "yk_optim_set_step_count");
    if (!e)
        return YK_EINVAL;
    if (step < 0)
        return yk__error(o->ctx, YK_EINVAL, "yk_optim_set_step_count: step = "
                         "%lld for parameter \"%s\" is negative",
                         (long long)step, p->name);
    e->step = step;
    return YK_OK;
}

/* The entry and state index of (p, name), or an error naming them. */
static yk_status state_lookup(yk_optim *o, yk_param *p, const char *name,
                              const char *fn, entry **e, int *i)
{
    *e = entry_or_error(o, p, fn);
    if (!*e)
        return YK_EINVAL;
    *i = state_index(o, name);
    if (*i < 0)
        return yk__error(o->ctx, YK_EINVAL, "%s: %s keeps no state named "
                         "\"%s\"", fn, kind_names[o->kind],
                         name ? name : "(NULL)");
    return YK_OK;
}

yk_status yk_optim_state(yk_optim *o, yk_param *p, const char *name,
                         yk_tensor **out)
{
    if (!o)
        return YK_EINVAL;
    if (!out)
        return yk__error(o->ctx, YK_EINVAL, "yk_optim_state: out is NULL");
    *out = NULL;
    entry *e;
    int i;
    yk_status s = state_lookup(o, p, name, "yk_optim_state", &e, &i);
    if (s == YK_OK)
        *out = e->state[i];
    return s;
}

yk_status yk_optim_set_state(yk_optim *o, yk_param *p, const char *name,
                             const yk_tensor *src)
{
    if (!o)
        return YK_EINVAL;
    entry *e;
    int i;
    const char *fn = "yk_optim_set_state";
    yk_status s = state_lookup(o, p, name, fn, &e, &i);
    if (s)
        return s;
    if (!src)
        return yk__error(o->ctx, YK_EINVAL, "%s: src is NULL", fn);
    if (src->dtype != p->value.dtype)
        return yk__error(o->ctx, YK_EDTYPE, "%s: src is %s, state \"%s\" of "
                         "parameter \"%s\" is %s", fn,
                         yk_dtype_name(src->dtype), name, p->name,
                         yk_dtype_name(p->value.dtype));
    if ((s = state_make(o, e)))
        return s;
    if (!yk__same_shape(src, e->state[i])) {
        char a[160], b[160];
        return yk__error(o->ctx, YK_ESHAPE, "%s: src has shape %s, state "
                         "\"%s\" of parameter \"%s\" has shape %s", fn,
                         yk_shape_format(src, a, sizeof a), name, p->name,
                         yk_shape_format(e->state[i], b, sizeof b));
    }
    memcpy(e->state[i]->data, src->data, yk_tensor_nbytes(src));
    return YK_OK;
}

/* ======================================================= row freezing */

static void fill_elems(yk_dtype dt, void *data, int64_t off, int64_t n,
                       double value)
{
    if (dt == YK_F32) {
        float *d = (float *)data + off;
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)value;
    } else {
        double *d = (double *)data + off;
        for (int64_t i = 0; i < n; i++)
            d[i] = value;
    }
}

/* Marks row r frozen and puts its state back to the initial values. */
static void freeze_row(yk_optim *o, entry *e, int64_t r)
{
    e->frozen[r >> 6] |= (uint64_t)1 << (r & 63);
    if (!e->has_state)
        return;
    int64_t rl = state_per_row(o) ? 1 : yk__rowlen(&e->p->value);
    for (int i = 0; i < o->n_states; i++)
        fill_elems(e->p->value.dtype, e->state[i]->data, r * rl, rl,
                   state_init_value(o, i));
}

static yk_status bitmap_make(yk_optim *o, entry *e)
{
    if (bitmap_bytes(e->p) == 0)
        return YK_OK; /* no rows: nothing can be frozen */
    if (!e->frozen)
        e->frozen = yk__alloc(o->ctx, bitmap_bytes(e->p));
    return e->frozen ? YK_OK : YK_ENOMEM;
}

yk_status yk_optim_freeze_rows(yk_optim *o, yk_param *p, int64_t n,
                               const int64_t *rows)
{
    if (!o)
        return YK_EINVAL;
    const char *fn = "yk_optim_freeze_rows";
    entry *e = entry_or_error(o, p, fn);
    if (!e)
        return YK_EINVAL;
    if (n < 0 || (n > 0 && !rows))
        return yk__error(o->ctx, YK_EINVAL, "%s: n = %lld with rows %s", fn,
                         (long long)n, rows ? "given" : "NULL");
    int64_t V = param_rows(p);
    for (int64_t k = 0; k < n; k++)
        if (rows[k] < 0 || rows[k] >= V)
            return yk__error(o->ctx, YK_ERANGE, "%s: rows[%lld] = %lld is out "
                             "of range for parameter \"%s\" with %lld rows",
                             fn, (long long)k, (long long)rows[k], p->name,
                             (long long)V);
    yk_status s = bitmap_make(o, e);
    for (int64_t k = 0; s == YK_OK && k < n; k++)
        freeze_row(o, e, rows[k]);
    return s;
}

yk_status yk_optim_freeze_row_range(yk_optim *o, yk_param *p, int64_t start,
                                    int64_t stop)
{
    if (!o)
        return YK_EINVAL;
    const char *fn = "yk_optim_freeze_row_range";
    entry *e = entry_or_error(o, p, fn);
    if (!e)
        return YK_EINVAL;
    int64_t V = param_rows(p);
    if (start < 0 || start > stop || stop > V)
        return yk__error(o->ctx, YK_ERANGE, "%s: rows [%lld, %lld) are not "
                         "a range within parameter \"%s\" with %lld rows", fn,
                         (long long)start, (long long)stop, p->name,
                         (long long)V);
    yk_status s = bitmap_make(o, e);
    for (int64_t r = start; s == YK_OK && r < stop; r++)
        freeze_row(o, e, r);
    return s;
}

yk_status yk_optim_unfreeze_rows(yk_optim *o, yk_param *p)
{
    if (!o)
        return YK_EINVAL;
    entry *e = entry_or_error(o, p, "yk_optim_unfreeze_rows");
    if (!e)
        return YK_EINVAL;
    yk__free(o->ctx, e->frozen, e->frozen ? bitmap_bytes(p) : 0);
    e->frozen = NULL;
    return YK_OK;
}

bool yk_optim_row_frozen(const yk_optim *o, const yk_param *p, int64_t r)
{
    const entry *e = find_entry(o, p);
    return e && r >= 0 && r < param_rows(p) && is_frozen(e, r);
}

/* ============================================================ kernels
 *
 * Each kernel updates n contiguous elements (whole rows) of p from g. The
 * coefficients come precomputed in a hyper, once per parameter and step.
 */

typedef struct hyper {
    double lr, wd;
    /* sgd */
    double momentum, dampening;
    bool nesterov, first; /* first: b = g (t == 1) */
    /* adam family */
    double b1, b2, eps, step_size, bc2_sqrt, decay; /* decay: adamw's */
    bool amsgrad;
    /* adagrad family: lr / (1 + (t - 1) lr_decay) */
    double clr;
} hyper;

static hyper hyper_for(const yk_optim *o, int64_t t)
{
    const yk_optim_opts *op = &o->opts;
    hyper h = {.lr = op->lr, .wd = op->weight_decay, .momentum = op->momentum,
               .dampening = op->dampening, .nesterov = op->nesterov,
               .first = t == 1, .b1 = op->beta1, .b2 = op->beta2,
               .eps = op->eps, .amsgrad = op->amsgrad, .decay = 1.0};
    double bc1 = 1 - pow(op->beta1, (double)t);
    double bc2 = 1 - pow(op->beta2, (double)t);
    if (o->kind == YK_OPTIM_SPARSE_ADAM) {
        h.step_size = op->lr * sqrt(bc2) / bc1;
    } else {
        h.step_size = op->lr / bc1;
        h.bc2_sqrt = sqrt(bc2);
    }
    if (o->kind == YK_OPTIM_ADAMW) {
        h.decay = 1 - op->lr * op->weight_decay;
        h.wd = 0; /* decoupled: not added to the gradient */
    }
    h.clr = op->lr / (1 + (double)(t - 1) * op->lr_decay);
    return h;
}

/* --- sgd: b is NULL without momentum */

static void sgd_f32(int64_t n, float *restrict p, const float *restrict g,
                    float *restrict b, const hyper *h)
{
    const float wd = (float)h->wd, mom = (float)h->momentum;
    const float damp = (float)(1 - h->dampening), nlr = (float)-h->lr;
    for (int64_t i = 0; i < n; i++) {
        float d = h->wd != 0 ? g[i] + wd * p[i] : g[i];
        if (b) {
            b[i] = h->first ? d : b[i] * mom + damp * d;
            d = h->nesterov ? d + mom * b[i] : b[i];
        }
        p[i] = p[i] + nlr * d;
    }
}

static void sgd_f64(int64_t n, double *restrict p, const double *restrict g,
                    double *restrict b, const hyper *h)
{
    const double damp = 1 - h->dampening;
    for (int64_t i = 0; i < n; i++) {
        double d = h->wd != 0 ? g[i] + h->wd * p[i] : g[i];
        if (b) {
            b[i] = h->first ? d : b[i] * h->momentum + damp * d;
            d = h->nesterov ? d + h->momentum * b[i] : b[i];
        }
        p[i] = p[i] + -h->lr * d;
    }
}

/* --- adam and adamw: vmax is NULL without amsgrad */

static void adam_f32(int64_t n, float *restrict p, const float *restrict g,
                     float *restrict m, float *restrict v,
                     float *restrict vmax, const hyper *h)
{
    const float wd = (float)h->wd, decay = (float)h->decay;
    const float b1 = (float)h->b1, c1 = (float)(1 - h->b1);
    const float b2 = (float)h->b2, c2 = (float)(1 - h->b2);
    const float bc2s = (float)h->bc2_sqrt, eps = (float)h->eps;
    const float nss = (float)-h->step_size;
    for (int64_t i = 0; i < n; i++) {
        float gi = h->wd != 0 ? g[i] + wd * p[i] : g[i];
        if (h->decay != 1.0)
            p[i] = p[i] * decay;
        m[i] = m[i] * b1 + c1 * gi;
        v[i] = v[i] * b2 + c2 * gi * gi;
        float vv = v[i];
        if (vmax)
            vv = vmax[i] = fmaxf(vmax[i], v[i]);
        float denom = sqrtf(vv) / bc2s + eps;
        p[i] = p[i] + nss * (m[i] / denom);
    }
}

static void adam_f64(int64_t n, double *restrict p, const double *restrict g,
                     double *restrict m, double *restrict v,
                     double *restrict vmax, const hyper *h)
{
    const double c1 = 1 - h->b1, c2 = 1 - h->b2;
    for (int64_t i = 0; i < n; i++) {
        double gi = h->wd != 0 ? g[i] + h->wd * p[i] : g[i];
        if (h->decay != 1.0)
            p[i] = p[i] * h->decay;
        m[i] = m[i] * h->b1 + c1 * gi;
        v[i] = v[i] * h->b2 + c2 * gi * gi;
        double vv = v[i];
        if (vmax)
            vv = vmax[i] = fmax(vmax[i], v[i]);
        double denom = sqrt(vv) / h->bc2_sqrt + h->eps;
        p[i] = p[i] + -h->step_size * (m[i] / denom);
    }
}

/* --- adagrad */

static void adagrad_f32(int64_t n, float *restrict p, const float *restrict g,
                        float *restrict s, const hyper *h)
{
    const float wd = (float)h->wd, eps = (float)h->eps;
    const float nclr = (float)-h->clr;
    for (int64_t i = 0; i < n; i++) {
        float gi = h->wd != 0 ? g[i] + wd * p[i] : g[i];
        s[i] = s[i] + gi * gi;
        float std = sqrtf(s[i]) + eps;
        p[i] = p[i] + nclr * (gi / std);
    }
}

static void adagrad_f64(int64_t n, double *restrict p,
                        const double *restrict g, double *restrict s,
                        const hyper *h)
{
    for (int64_t i = 0; i < n; i++) {
        double gi = h->wd != 0 ? g[i] + h->wd * p[i] : g[i];
        s[i] = s[i] + gi * gi;
        double std = sqrt(s[i]) + h->eps;
        p[i] = p[i] + -h->clr * (gi / std);
    }
}

/* --- sparse_adam, as torch's: m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2),
 * p += -step_size * (m / (sqrt(v) + eps)) */

static void sparse_adam_f32(int64_t n, float *restrict p,
                            const float *restrict g, float *restrict m,
                            float *restrict v, const hyper *h)
{
    const float c1 = (float)(1 - h->b1), c2 = (float)(1 - h->b2);
    const float eps = (float)h->eps, nss = (float)-h->step_size;
    for (int64_t i = 0; i < n; i++) {
        m[i] = m[i] + (g[i] - m[i]) * c1;
        v[i] = v[i] + (g[i] * g[i] - v[i]) * c2;
        p[i] = p[i] + nss * (m[i] / (sqrtf(v[i]) + eps));
    }
}

static void sparse_adam_f64(int64_t n, double *restrict p,
                            const double *restrict g, double *restrict m,
                            double *restrict v, const hyper *h)
{
    const double c1 = 1 - h->b1, c2 = 1 - h->b2;
    for (int64_t i = 0; i < n; i++) {
        m[i] = m[i] + (g[i] - m[i]) * c1;
        v[i] = v[i] + (g[i] * g[i] - v[i]) * c2;
        p[i] = p[i] + -h->step_size * (m[i] / (sqrt(v[i]) + h->eps));
    }
}

/* --- row-wise adagrad: nrows rows of rl elements, one s per row. The mean
 * of squares is summed in double for both dtypes. */

static void rowwise_f32(int64_t nrows, int64_t rl, float *p, const float *g,
                        float *s, const hyper *h)
{
    const float eps = (float)h->eps, nclr = (float)-h->clr;
    for (int64_t r = 0; r < nrows; r++, p += rl, g += rl) {
        double sq = 0;
        for (int64_t j = 0; j < rl; j++)
            sq += (double)g[j] * g[j];
        s[r] = s[r] + (float)(rl ? sq / (double)rl : 0);
        float std = sqrtf(s[r]) + eps;
        for (int64_t j = 0; j < rl; j++)
            p[j] = p[j] + nclr * (g[j] / std);
    }
}

static void rowwise_f64(int64_t nrows, int64_t rl, double *p, const double *g,
                        double *s, const hyper *h)
{
    for (int64_t r = 0; r < nrows; r++, p += rl, g += rl) {
        double sq = 0;
        for (int64_t j = 0; j < rl; j++)
            sq += g[j] * g[j];
        s[r] = s[r] + (rl ? sq / (double)rl : 0);
        double std = sqrt(s[r]) + h->eps;
        for (int64_t j = 0; j < rl; j++)
            p[j] = p[j] + -h->clr * (g[j] / std);
    }
}

/* ============================================================== walks */

/* State i of e from element offset off (NULL when the kind keeps none). */
static void *state_at(const entry *e, int i, int64_t off, size_t es)
{
    if (!e->state[i])
        return NULL;
    return (char *)e->state[i]->data + (size_t)off * es;
}

/* Updates rows [row0, row0 + nrows) of e's parameter from g (nrows rows). */
static void apply_span(const yk_optim *o, const entry *e, const hyper *h,
                       int64_t row0, int64_t nrows, const void *g)
{
    const yk_tensor *v = &e->p->value;
    int64_t rl = yk__rowlen(v), off = row0 * rl, n = nrows * rl;
    size_t es = yk_dtype_size(v->dtype);
    void *p = (char *)v->data + (size_t)off * es;
    bool f32 = v->dtype == YK_F32;
    void *s0 = state_at(e, 0, off, es), *s1 = state_at(e, 1, off, es);
    void *s2 = state_at(e, 2, off, es);
    switch (o->kind) {
    case YK_OPTIM_SGD:
        f32 ? sgd_f32(n, p, g, s0, h) : sgd_f64(n, p, g, s0, h);
        break;
    case YK_OPTIM_ADAM:
    case YK_OPTIM_ADAMW:
        f32 ? adam_f32(n, p, g, s0, s1, s2, h)
            : adam_f64(n, p, g, s0, s1, s2, h);
        break;
    case YK_OPTIM_ADAGRAD:
        f32 ? adagrad_f32(n, p, g, s0, h) : adagrad_f64(n, p, g, s0, h);
        break;
    case YK_OPTIM_SPARSE_ADAM:
        f32 ? sparse_adam_f32(n, p, g, s0, s1, h)
            : sparse_adam_f64(n, p, g, s0, s1, h);
        break;
    case YK_OPTIM_ROWWISE_ADAGRAD: {
        void *s = state_at(e, 0, row0, es); /* one number a row */
        f32 ? rowwise_f32(nrows, rl, p, g, s, h)
            : rowwise_f64(nrows, rl, p, g, s, h);
        break;
    }
    }
}

/* Updates the unfrozen rows of [a, b) from g, which holds rows a..b-1, or
 * is NULL for a gradient of zeros (then row by row from o->zero). */
static void update_rows(const yk_optim *o, const entry *e, const hyper *h,
                        int64_t a, int64_t b, const char *g)
{
    size_t rb = (size_t)yk__rowlen(&e->p->value) *
                yk_dtype_size(e->p->value.dtype);
    int64_t r = a;
    while (r < b) {
        if (is_frozen(e, r)) {
            r++;
            continue;
        }
        int64_t start = r;
        while (r < b && !is_frozen(e, r))
            r++;
        if (g) {
            apply_span(o, e, h, start, r - start, g + (size_t)(start - a) * rb);
        } else {
            for (int64_t k = start; k < r; k++)
                apply_span(o, e, h, k, 1, o->zero);
        }
    }
}

/* Prefetches row r of e's parameter and state tensors (rb bytes a row; a
 * per-row state holds one element a row), and row r of a dense gradient:
 * the rows of a big table are random misses (see yk__prefetch_distance). */
static void prefetch_update_row(const yk_optim *o, const entry *e, int64_t r,
                                size_t rb)
{
    size_t es = yk_dtype_size(e->p->value.dtype);
    yk__prefetch_write((const char *)e->p->value.data + (size_t)r * rb, rb);
    for (int i = 0; i < o->n_states; i++)
        if (e->state[i]) {
            size_t srb = state_per_row(o) ? es : rb;
            yk__prefetch_write((const char *)e->state[i]->data +
                                   (size_t)r * srb, srb);
        }
    if (e->mode == PLAN_DENSE_ROWS)
        yk__prefetch_read((const char *)e->values + (size_t)r * rb, rb);
}

/* One update, for yk__run_split: every row's update reads and writes
 * that row only (of the parameter, its state and its gradient), so rows
 * can go to different threads and the bits stay those of one thread. */
typedef struct walk_job {
    const yk_optim *o;
    const entry *e;
    const hyper *h;
    size_t rb; /* bytes a row */
} walk_job;

/* The k-th rows [k0, k1) of the plan's rows e->rows, each once: a
 * row-sparse gradient's rows (sorted; its k-th value row) or the rows a
 * dense gradient was written at (in the order first written; its row r). */
static void walk_listed_rows(const void *job, int64_t k0, int64_t k1)
{
    const walk_job *w = job;
    const entry *e = w->e;
    bool dense = e->mode == PLAN_DENSE_ROWS;
    int64_t ahead = yk__prefetch_distance(w->rb);
    for (int64_t k = k0; k < k1; k++) {
        int64_t r = e->rows[k];
        if (k + ahead < k1)
            prefetch_update_row(w->o, e, e->rows[k + ahead], w->rb);
        update_rows(w->o, e, w->h, r, r + 1,
                    (const char *)e->values + (size_t)(dense ? r : k) * w->rb);
    }
}

/* Rows [r0, r1) of a dense gradient, every one. */
static void walk_all_rows(const void *job, int64_t r0, int64_t r1)
{
    const walk_job *w = job;
    update_rows(w->o, w->e, w->h, r0, r1,
                (const char *)w->e->values + (size_t)r0 * w->rb);
}

/* Every row, the plan's rows with their gradient rows and zeros between
 * them (a row-sparse gradient under an optimizer whose zero-gradient step
 * still moves a row). Kept on one thread: the exact path is the slow one
 * by nature, for contrast. */
static void walk_rows_exact(const yk_optim *o, const entry *e, const hyper *h,
                            size_t rb)
{
    int64_t next = 0; /* first row not yet walked */
    for (int64_t k = 0; k < e->nrows; k++) {
        int64_t r = e->rows[k];
        update_rows(o, e, h, next, r, NULL);
        update_rows(o, e, h, r, r + 1,
                    (const char *)e->values + (size_t)k * rb);
        next = r + 1;
    }
    update_rows(o, e, h, next, param_rows(e->p), NULL);
}

static void walk(const yk_optim *o, const entry *e, const hyper *h)
{
    size_t es = yk_dtype_size(e->p->value.dtype);
    int64_t rowlen = yk__rowlen(&e->p->value);
    walk_job w = {o, e, h, (size_t)rowlen * es};
    /* the numbers a row's update touches: its value, gradient and states */
    int64_t cost = rowlen * (2 + o->n_states);
    if (e->mode == PLAN_DENSE)
        yk__run_split(o->ctx, walk_all_rows, &w, param_rows(e->p), cost);
    else if (e->mode == PLAN_ROWS_EXACT)
        walk_rows_exact(o, e, h, w.rb);
    else
        yk__run_split(o->ctx, walk_listed_rows, &w, e->nrows, cost);
}

/* ============================================================== steps */

/* Does a row without gradient stay exactly as it is (state included)? */
static bool lazy_exact(const yk_optim *o)
{
    const yk_optim_opts *op = &o->opts;
    switch (o->kind) {
    case YK_OPTIM_SGD:
        return op->momentum == 0 && op->weight_decay == 0;
    case YK_OPTIM_ADAGRAD:
        return op->weight_decay == 0;
    case YK_OPTIM_SPARSE_ADAM:
    case YK_OPTIM_ROWWISE_ADAGRAD:
        return true;
    default:
        return false; /* adam's moments decay in every row */
    }
}

static yk_status zero_row_make(yk_optim *o, const yk_param *p)
{
    size_t need = (size_t)yk__rowlen(&p->value) *
                  yk_dtype_size(p->value.dtype);
    if (need <= o->zero_bytes)
        return YK_OK;
    void *z = yk__alloc(o->ctx, need);
    if (!z)
        return YK_ENOMEM;
    yk__free(o->ctx, o->zero, o->zero_bytes);
    o->zero = z;
    o->zero_bytes = need;
    return YK_OK;
}

/* Plans e's update and makes what it needs; changes no number. */
static yk_status prepare(yk_optim *o, entry *e)
{
    yk_param *p = e->p;
    e->mode = PLAN_SKIP;
    if (!p->requires_grad) {
        e->mode = PLAN_FREE;
        return YK_OK;
    }
    yk_status s = YK_OK;
    switch (yk_param_grad_kind(p)) {
    case YK_GRAD_NONE:
        return YK_OK;
    case YK_GRAD_DENSE:
        if (o->kind == YK_OPTIM_SPARSE_ADAM)
            return yk__error(o->ctx, YK_EINVAL, "sparse_adam: parameter "
                             "\"%s\" has a dense gradient; sparse_adam needs "
                             "a row-sparse one (every use an embedding or "
                             "embedding_bag with sparse = true)", p->name);
        /* A dense gradient of lookups is zero outside the rows looked
         * up: when a zero row changes nothing, only those are visited. */
        e->mode = lazy_exact(o) &&
                  yk__param_grad_dirty_rows(p, &e->nrows, &e->rows)
                      ? PLAN_DENSE_ROWS : PLAN_DENSE;
        e->values = p->grad->data;
        break;
    case YK_GRAD_ROWS: {
        const yk_tensor *vals;
        s = yk_param_grad_rows(p, &e->nrows, &e->rows, &vals);
        if (s)
            return yk__error(o->ctx, s, "yk_optim_step: out of memory "
                             "coalescing the gradient rows of \"%s\"",
                             p->name);
        e->values = vals->data;
        e->mode = lazy_exact(o) ? PLAN_ROWS_LAZY : PLAN_ROWS_EXACT;
        if (e->mode == PLAN_ROWS_EXACT)
            s = zero_row_make(o, p);
        break;
    }
    }
    if (s == YK_OK)
        s = state_make(o, e);
    if (s)
        e->mode = PLAN_SKIP;
    return s;
}

static void apply(yk_optim *o, entry *e)
{
    if (e->mode == PLAN_SKIP)
        return;
    if (e->mode == PLAN_FREE) {
        state_free(o, e);
        return;
    }
    e->step++;
    hyper h = hyper_for(o, e->step);
    walk(o, e, &h);
}

yk_status yk_optim_step(yk_optim *o)
{
    if (!o)
        return YK_EINVAL;
    for (int i = 0; i < o->n; i++) {
        yk_status s = prepare(o, &o->entries[i]);
        if (s) {
            for (int j = 0; j < o->n; j++)
                o->entries[j].mode = PLAN_SKIP;
            return s;
        }
    }
    for (int i = 0; i < o->n; i++)
        apply(o, &o->entries[i]);
    return YK_OK;
}

/* ========================================================== clipping */

/* The gradient of p as one flat buffer: dense, or the coalesced rows. */
static yk_status grad_buffer(yk_param *p, void **data, int64_t *n)
{
    *data = NULL;
    *n = 0;
    if (!p->requires_grad)
        return YK_OK;
    if (p->grad_kind == YK_GRAD_DENSE) {
        *data = p->grad->data;
        *n = p->grad->numel;
    } else if (p->grad_kind == YK_GRAD_ROWS) {
        int64_t nrows;
        const int64_t *rows;
        const yk_tensor *vals;
        yk_status s = yk_param_grad_rows(p, &nrows, &rows, &vals);
        if (s)
            return s;
        *data = vals->data;
        *n = vals->numel;
    }
    return YK_OK;
}

/* Sum of |x|^q (q finite) or max |x| (q infinite), in double. */
static double norm_part(yk_dtype dt, const void *data, int64_t n, double q)
{
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = fabs(dt == YK_F32 ? (double)((const float *)data)[i]
                                     : ((const double *)data)[i]);
        if (isinf(q))
            acc = x > acc || isnan(x) ? x : acc;
        else if (q == 2)
            acc += x * x;
        else
            acc += pow(x, q);
    }
    return acc;
}

static void scale_elems(yk_dtype dt, void *data, int64_t n, double c)
{
    if (dt == YK_F32) {
        float *d = data, cf = (float)c;
        for (int64_t i = 0; i < n; i++)
            d[i] *= cf;
    } else {
        double *d = data;
        for (int64_t i = 0; i < n; i++)
            d[i] *= c;
    }
}

typedef yk_param *(*param_source)(const void *src, int i);

static yk_param *from_array(const void *src, int i)
{
    return ((yk_param *const *)src)[i];
}

static yk_param *from_optim(const void *src, int i)
{
    return ((const yk_optim *)src)->entries[i].p;
}

static yk_status clip_norm(yk_ctx *ctx, int n, param_source at,
                           const void *src, double max_norm, double q,
                           double *total_norm)
{
    const char *fn = "yk_clip_grad_norm";
    if (!(max_norm >= 0))
        return yk__error(ctx, YK_EINVAL, "%s: max_norm = %g is invalid, it "
                         "must be >= 0", fn, max_norm);
    if (!(q > 0))
        return yk__error(ctx, YK_EINVAL, "%s: norm_type = %g is invalid, it "
                         "must be > 0 (or INFINITY)", fn, q);
    double acc = 0;
    for (int i = 0; i < n; i++) {
        yk_param *p = at(src, i);
        void *data;
        int64_t len;
        yk_status s = grad_buffer(p, &data, &len);
        if (s)
            return yk__error(ctx, s, "%s: out of memory coalescing the "
                             "gradient rows of \"%s\"", fn, p->name);
        double part = norm_part(p->value.dtype, data, len, q);
        acc = isinf(q) ? (part > acc || isnan(part) ? part : acc) : acc + part;
    }
    double total = isinf(q) ? acc : q == 2 ? sqrt(acc) : pow(acc, 1 / q);
    if (total_norm)
        *total_norm = total;
    double coef = max_norm / (total + 1e-6);
    if (!(coef < 1) && !isnan(coef))
        return YK_OK; /* torch multiplies by min(coef, 1): here by 1 */
    for (int i = 0; i < n; i++) {
        yk_param *p = at(src, i);
        void *data;
        int64_t len;
        grad_buffer(p, &data, &len); /* coalesced above: cannot fail */
        scale_elems(p->value.dtype, data, len, coef);
    }
    return YK_OK;
}

/* Every params[i] non-NULL; the context to report errors on. */
static yk_ctx *params_ctx(int n, yk_param *const *params, yk_status *s)
{
    *s = n < 0 ? YK_EINVAL : YK_OK; /* n = 0: nothing to clip */
    if (n <= 0)
        return NULL;
    yk_ctx *ctx = NULL;
    for (int i = 0; params && i < n && !ctx; i++)
        if (params[i])
            ctx = yk_model_ctx(params[i]->model);
    if (!ctx) {
        *s = YK_EINVAL;
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!params[i]) {
            *s = yk__error(ctx, YK_EINVAL, "yk_clip_grad: params[%d] is "
                           "NULL", i);
            return NULL;
        }
    return ctx;
}

yk_status yk_clip_grad_norm(int n, yk_param *const *params, double max_norm,
                            double norm_type, double *total_norm)
{
    if (total_norm)
        *total_norm = 0;
    yk_status s;
    yk_ctx *ctx = params_ctx(n, params, &s);
    if (!ctx)
        return s;
    return clip_norm(ctx, n, from_array, params, max_norm, norm_type,
                     total_norm);
}

yk_status yk_optim_clip_grad_norm(yk_optim *o, double max_norm,
                                  double norm_type, double *total_norm)
{
    if (total_norm)
        *total_norm = 0;
    if (!o)
        return YK_EINVAL;
    return clip_norm(o->ctx, o->n, from_optim, o, max_norm, norm_type,
                     total_norm);
}

static void clamp_elems(yk_dtype dt, void *data, int64_t n, double c)
{
    if (dt == YK_F32) {
        float *d = data, hi = (float)c;
        for (int64_t i = 0; i < n; i++)
            d[i] = d[i] > hi ? hi : d[i] < -hi ? -hi : d[i];
    } else {
        double *d = data;
        for (int64_t i = 0; i < n; i++)
            d[i] = d[i] > c ? c : d[i] < -c ? -c : d[i];
    }
}

yk_status yk_clip_grad_value(int n, yk_param *const *params,
                             double clip_value)
{
    yk_status s;
    yk_ctx *ctx = params_ctx(n, params, &s);
    if (!ctx)
        return s;
    if (!(clip_value >= 0))
        return yk__error(ctx, YK_EINVAL, "yk_clip_grad_value: clip_value = "
                         "%g is invalid, it must be >= 0", clip_value);
    /* Rows are coalesced first: clamping a sum is not summing clamps. */
    for (int i = 0; i < n; i++) {
        void *data;
        int64_t len;
        if ((s = grad_buffer(params[i], &data, &len)))
            return yk__error(ctx, s, "yk_clip_grad_value: out of memory "
                             "coalescing the gradient rows of \"%s\"",
                             params[i]->name);
        clamp_elems(params[i]->value.dtype, data, len, clip_value);
    }
    return YK_OK;
}

/* ========================================================= schedules */

double yk_lr_step(double lr, int64_t step, int64_t step_size, double gamma)
{
    if (step < 0)
        step = 0;
    if (step_size < 1)
        step_size = 1;
    return lr * pow(gamma, (double)(step / step_size));
}

double yk_lr_cosine(double lr, int64_t step, int64_t total, double min_lr)
{
    if (total < 1)
        total = 1;
    if (step < 0)
        step = 0;
    if (step > total)
        step = total;
    return min_lr + (lr - min_lr) * (1 + cos(M_PI * (double)step /
                                             (double)total)) / 2;
}

double yk_lr_warmup(double lr, int64_t step, int64_t warmup,
                    double start_factor)
{
    if (warmup <= 0)
        return lr;
    if (step < 0)
        step = 0;
    if (step > warmup)
        step = warmup;
    return lr * (start_factor +
                 (1 - start_factor) * (double)step / (double)warmup);
}
