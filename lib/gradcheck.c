/* gradcheck.c -- finite-difference checking of analytic gradients. */
#include "engine.h"

#include <math.h>
#include <string.h>

typedef struct check {
    yk_model *m;
    yk_build_fn build;
    void *ud;
    yk_tensor *seed; /* S, shaped like the output */
} check;

static bool checked_param(yk_param *p)
{
    return p->requires_grad && p->value.dtype == YK_F64;
}

/* Builds the graph and returns L = sum(out * S) (NAN on error). */
static yk_status eval_loss(check *c, double *loss)
{
    yk_ctx *ctx = yk_model_ctx(c->m);
    yk_graph *g = yk_graph_begin(ctx);
    if (!g)
        return YK_ENOMEM;
    yk_graph_set_grad_enabled(g, false);
    yk_node *out = c->build(g, c->ud);
    const yk_tensor *v = out ? yk_value(out) : NULL;
    yk_status s = v ? YK_OK : (yk_graph_status(g) ? yk_graph_status(g)
                                                  : yk_last_status(ctx));
    if (!v && s == YK_OK)
        s = yk__error(ctx, YK_EINVAL, "gradcheck: the build function "
                      "returned NULL");
    if (v) {
        double L = 0;
        for (int64_t i = 0; i < v->numel; i++)
            L += yk_tensor_get(v, i) * yk_tensor_get(c->seed, i);
        *loss = L;
    }
    yk_graph_end(g);
    return s;
}

/* Runs one backward with seed scale * S; fills grads[k] for each checked
 * parameter k (dense copies the caller frees). */
static yk_status eval_grads(check *c, double scale, yk_tensor **grads)
{
    yk_ctx *ctx = yk_model_ctx(c->m);
    yk_model_zero_grad(c->m);
    yk_graph *g = yk_graph_begin(ctx);
    if (!g)
        return YK_ENOMEM;
    yk_node *out = c->build(g, c->ud);
    yk_status s = out ? YK_OK : yk_graph_status(g);
    if (out && yk_node_requires_grad(out)) {
        yk_tensor *seed = yk_tensor_clone(c->seed);
        s = seed ? YK_OK : YK_ENOMEM;
        for (int64_t i = 0; seed && i < seed->numel; i++)
            ((double *)seed->data)[i] *= scale;
        const yk_tensor *sp = seed;
        if (s == YK_OK)
            s = yk_backward_seeded(g, 1, &out, &sp);
        yk_tensor_free(seed);
    } else if (!out && s == YK_OK) {
        s = yk__error(ctx, YK_EINVAL, "gradcheck: the build function "
                      "returned NULL");
    }
    yk_graph_end(g);
    for (int k = 0, j = 0; s == YK_OK && k < yk_model_count(c->m); k++) {
        yk_param *p = yk_model_at(c->m, k);
        if (!checked_param(p))
            continue;
        grads[j] = yk_tensor_zeros(ctx, YK_F64, p->value.ndim, p->value.shape);
        s = grads[j] ? yk_param_grad_to_dense(p, grads[j]) : YK_ENOMEM;
        j++;
    }
    yk_model_zero_grad(c->m);
    return s;
}

static void free_grads(yk_tensor **grads, int n)
{
    for (int k = 0; k < n; k++) {
        yk_tensor_free(grads[k]);
        grads[k] = NULL;
    }
}

static void fail(yk_gradcheck_report *r, const char *what, const char *param)
{
    if (r->passed) {
        r->passed = false;
        snprintf(r->what, sizeof r->what, "%s (parameter \"%s\")", what, param);
    }
}

/* Compares the analytic gradient with central differences, element by
 * element, and keeps the worst element in the report. */
static yk_status compare_numeric(check *c, const yk_gradcheck_opts *o,
                                 yk_tensor **grads, yk_gradcheck_report *r)
{
    bool have_worst = false;
    for (int k = 0, j = 0; k < yk_model_count(c->m); k++) {
        yk_param *p = yk_model_at(c->m, k);
        if (!checked_param(p))
            continue;
        double *v = p->value.data;
        const double *an = grads[j++]->data;
        for (int64_t i = 0; i < p->value.numel; i++) {
            double saved = v[i], lp, lm;
            v[i] = saved + o->eps;
            yk_status s = eval_loss(c, &lp);
            v[i] = saved - o->eps;
            if (s == YK_OK)
                s = eval_loss(c, &lm);
            v[i] = saved;
            if (s != YK_OK)
                return s;
            double num = (lp - lm) / (2 * o->eps);
            /* > 1 fails; the largest ratio names the worst element */
            double err = fabs(an[i] - num) / (o->atol + o->rtol * fabs(num));
            if (isnan(an[i]) || isnan(num))
                err = INFINITY;
            r->checked++;
            if (!have_worst || err > r->error) {
                have_worst = true;
                snprintf(r->param, sizeof r->param, "%s", p->name);
                r->index = i;
                r->analytic = an[i];
                r->numeric = num;
                r->error = err;
            }
            if (err > 1)
                fail(r, "analytic gradient differs from finite differences",
                     p->name);
        }
    }
    return YK_OK;
}

static void compare_runs(check *c, yk_tensor **a, yk_tensor **b,
                         yk_tensor **zero, yk_gradcheck_report *r)
{
    for (int k = 0, j = 0; k < yk_model_count(c->m); k++) {
        yk_param *p = yk_model_at(c->m, k);
        if (!checked_param(p))
            continue;
        if (memcmp(a[j]->data, b[j]->data, yk_tensor_nbytes(a[j])) != 0)
            fail(r, "two backward passes gave different gradients", p->name);
        for (int64_t i = 0; i < zero[j]->numel; i++)
            if (((const double *)zero[j]->data)[i] != 0) {
                fail(r, "a zero seed gave a non-zero gradient", p->name);
                break;
            }
        j++;
    }
}

/* An option: 0 keeps the default, a positive finite value replaces it. */
static yk_status take_opt(yk_ctx *ctx, const char *name, double value,
                          double *out)
{
    if (value == 0)
        return YK_OK;
    if (!(value > 0 && isfinite(value)))
        return yk__error(ctx, YK_EINVAL, "yk_gradcheck: %s = %g is invalid, "
                         "it must be > 0 (or 0 for the default)", name, value);
    *out = value;
    return YK_OK;
}

yk_status yk_gradcheck(yk_model *m, yk_build_fn build, void *ud,
                       const yk_gradcheck_opts *opts,
                       yk_gradcheck_report *report)
{
    if (!m || !build || !report)
        return m ? yk__error(yk_model_ctx(m), YK_EINVAL, "yk_gradcheck: "
                             "build or report is NULL")
                 : YK_EINVAL;
    yk_ctx *ctx = yk_model_ctx(m);
    yk_gradcheck_opts o = {1e-6, 1e-5, 1e-3, 0};
    if (opts) {
        yk_status s = YK_OK;
        o.seed = opts->seed;
        if (s == YK_OK) s = take_opt(ctx, "eps", opts->eps, &o.eps);
        if (s == YK_OK) s = take_opt(ctx, "atol", opts->atol, &o.atol);
        if (s == YK_OK) s = take_opt(ctx, "rtol", opts->rtol, &o.rtol);
        if (s)
            return s;
    }
    memset(report, 0, sizeof *report);
    report->passed = true;

    /* One forward to learn the output's shape and make S. */
    check c = {m, build, ud, NULL};
    yk_graph *g = yk_graph_begin(ctx);
    if (!g)
        return YK_ENOMEM;
    yk_node *out = build(g, ud);
    const yk_tensor *v = out ? yk_value(out) : NULL;
    if (v)
        c.seed = yk_tensor_zeros(ctx, YK_F64, v->ndim, v->shape);
    yk_status s = v ? (c.seed ? YK_OK : YK_ENOMEM) : yk_graph_status(g);
    if (s == YK_OK && v && v->dtype != YK_F64)
        s = yk__error(ctx, YK_EDTYPE, "yk_gradcheck: the output is %s; "
                      "check in f64", yk_dtype_name(v->dtype));
    yk_graph_end(g);
    if (s == YK_OK && !v)
        s = yk__error(ctx, YK_EINVAL, "yk_gradcheck: build returned NULL");
    if (s != YK_OK) {
        yk_tensor_free(c.seed);
        return s;
    }
    yk_tensor_fill_normal(c.seed, o.seed + 1, 0.0, 1.0);

    int n = 0;
    for (int k = 0; k < yk_model_count(m); k++)
        n += checked_param(yk_model_at(m, k));
    size_t bytes = (size_t)(n ? n : 1) * sizeof(yk_tensor *);
    yk_tensor **a = yk__alloc(ctx, bytes), **b = yk__alloc(ctx, bytes),
              **z = yk__alloc(ctx, bytes);
    s = a && b && z ? YK_OK : YK_ENOMEM;
    if (s == YK_OK)
        s = eval_grads(&c, 1.0, a);
    if (s == YK_OK)
        s = eval_grads(&c, 1.0, b);
    if (s == YK_OK)
        s = eval_grads(&c, 0.0, z);
    if (s == YK_OK) {
        compare_runs(&c, a, b, z, report);
        s = compare_numeric(&c, &o, a, report);
    }
    if (a) free_grads(a, n);
    if (b) free_grads(b, n);
    if (z) free_grads(z, n);
    yk__free(ctx, a, bytes);
    yk__free(ctx, b, bytes);
    yk__free(ctx, z, bytes);
    yk_tensor_free(c.seed);
    return s;
}
