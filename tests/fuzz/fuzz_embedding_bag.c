/*
 * fuzz_embedding_bag -- libFuzzer target for the argument validation (and
 * the numbers) of yk_embedding_bag and yk_embedding, through the public API.
 *
 * The input bytes are read as a list of choices (fuzz_util.h): a small
 * table (V <= 6 rows, D <= 4 columns, f32 or f64, sometimes the lazy column
 * concatenation [shared | extra] of the seed's extended bag, sometimes an
 * invalid weight), an input of 0 to 3 dims whose indices are mostly valid
 * and sometimes one of 0, V-1, V, -1, -V, -V-1, INT64_MAX, INT64_MIN,
 * offsets that are mostly well-formed and sometimes not, per_sample_weights,
 * and the options (mode, also invalid ones; include_last_offset;
 * padding_idx at the edges; scale_grad_by_freq; sparse; opts NULL).
 *
 * An independent model of case-format.md's rules (below) predicts whether
 * each call is valid and which error categories a refusal may have:
 *   - valid calls must succeed, with the output's shape and values of a
 *     plain double-precision reference, and backward must give the
 *     reference's gradients for the weight and per_sample_weights;
 *   - invalid calls must fail with one of the predicted categories and a
 *     message that starts with the op's name, leaving the graph failed.
 */
#include "fuzz_util.h"

#include <math.h>

enum { MAX_V = 6, MAX_D = 4, MAX_N = 64 };

/* ------------------------------------------------------------ the call */

typedef struct bag_call {
    yk_dtype dt;
    int64_t V, D, D1;        /* D1 < D: the weight is cat([V, D1], [V, D-D1]) */
    int weight_bad;          /* 0 ok, 1 i64 weight, 2 a 3-D weight */
    yk_dtype input_dt;
    int input_ndim;
    int64_t input_shape[3];
    int64_t n;               /* input numel */
    int64_t idx[MAX_N];
    bool has_offsets;
    yk_dtype offsets_dt;
    int offsets_ndim;        /* 0, 1 or 2 (2: [1, k]) */
    int64_t k;               /* offsets numel */
    int64_t off[8];
    bool has_psw, psw_same_shape;
    yk_dtype psw_dt;
    bool opts_null;
    yk_bag_opts o;
    uint64_t seed;
} bag_call;

static int64_t edge_index(fuzz_bytes *b, int64_t V)
{
    const int64_t edges[] = {0, V - 1, V, -1, -V, -V - 1, INT64_MAX,
                             INT64_MIN};
    uint8_t c = fb_u8(b);
    if (c < 208)
        return c % V;
    return edges[c % 8];
}

static int64_t edge_padding(fuzz_bytes *b, int64_t V)
{
    const int64_t edges[] = {0, V - 1, V, -1, -V, -V - 1, INT64_MAX,
                             INT64_MIN + 1};
    if (fb_below(b, 3) != 0)
        return YK_NO_PADDING;
    return edges[fb_below(b, 8)];
}

static void choose_offsets(fuzz_bytes *b, bag_call *c)
{
    uint8_t form = fb_u8(b);
    c->offsets_dt = form == 255 ? YK_F32 : YK_I64;
    c->offsets_ndim = form == 254 ? 0 : form == 253 ? 2 : 1;
    c->k = c->offsets_ndim == 0 ? 1 : fb_below(b, 7);
    if (form % 4 != 0) { /* well-formed: 0, non-decreasing, <= n */
        int64_t at = 0;
        for (int64_t i = 0; i < c->k; i++) {
            if (i > 0)
                at += fb_below(b, 3);
            c->off[i] = at > c->n ? c->n : at;
        }
        if (c->k > 0 && c->o.include_last_offset && fb_bool(b))
            c->off[c->k - 1] = c->n;
        return;
    }
    const int64_t edges[] = {0, 1, c->n, c->n + 1, -1, INT64_MAX, INT64_MIN,
                             2};
    for (int64_t i = 0; i < c->k; i++)
        c->off[i] = edges[fb_below(b, 8)];
}

static void choose(fuzz_bytes *b, bag_call *c)
{
    memset(c, 0, sizeof *c);
    c->dt = fb_bool(b) ? YK_F64 : YK_F32;
    c->V = 1 + fb_below(b, MAX_V);
    c->D = 1 + fb_below(b, MAX_D);
    unsigned w = fb_below(b, 16);
    c->D1 = (w >= 10 && c->D > 1) ? 1 + fb_below(b, (unsigned)c->D - 1)
                                  : c->D;
    c->weight_bad = w == 15 ? 1 + (int)fb_below(b, 2) : 0;
    c->input_dt = fb_below(b, 32) == 0 ? YK_F32 : YK_I64;
    const int ndims[] = {1, 1, 2, 2, 1, 2, 0, 3};
    c->input_ndim = ndims[fb_below(b, 8)];
    c->n = 1;
    for (int d = 0; d < c->input_ndim; d++) {
        c->input_shape[d] = fb_below(b, 5);
        c->n *= c->input_shape[d];
    }
    for (int64_t i = 0; i < c->n; i++)
        c->idx[i] = edge_index(b, c->V);
    unsigned mode = fb_below(b, 16);
    c->o.mode = mode < 5 ? YK_BAG_SUM : mode < 10 ? YK_BAG_MEAN
              : mode < 15 ? YK_BAG_MAX : (yk_bag_mode)(3 + fb_below(b, 2) * 1000);
    c->o.include_last_offset = fb_below(b, 3) == 0;
    c->o.padding_idx = edge_padding(b, c->V);
    c->o.scale_grad_by_freq = fb_below(b, 4) == 0;
    c->o.sparse = fb_below(b, 4) == 0;
    c->opts_null = fb_below(b, 32) == 0;
    if (c->opts_null)
        c->o = yk_bag_defaults();
    c->has_offsets = c->input_ndim == 2 ? fb_below(b, 8) == 0
                                        : fb_below(b, 8) != 0;
    if (c->has_offsets)
        choose_offsets(b, c);
    c->has_psw = fb_below(b, 3) == 0;
    c->psw_same_shape = fb_below(b, 8) != 0;
    c->psw_dt = fb_below(b, 16) == 0 ? (c->dt == YK_F32 ? YK_F64 : YK_F32)
                                     : c->dt;
    c->seed = fb_u8(b);
}

/* ------------------------------------------------- the rules, predicted */

enum { CAT_EINVAL = 1, CAT_ERANGE = 2, CAT_EOFFSETS = 4, CAT_ESHAPE = 8,
       CAT_EDTYPE = 16 };

static unsigned category_bit(yk_status s)
{
    switch (s) {
    case YK_EINVAL: return CAT_EINVAL;
    case YK_ERANGE: return CAT_ERANGE;
    case YK_EOFFSETS: return CAT_EOFFSETS;
    case YK_ESHAPE: return CAT_ESHAPE;
    case YK_EDTYPE: return CAT_EDTYPE;
    default: return 0;
    }
}

static bool padding_valid(int64_t p, int64_t V)
{
    return p == YK_NO_PADDING || (p >= -V && p < V);
}

static unsigned index_violations(const bag_call *c)
{
    for (int64_t i = 0; i < c->n; i++)
        if (c->idx[i] < 0 || c->idx[i] >= c->V)
            return CAT_ERANGE;
    return 0;
}

static unsigned weight_violations(const bag_call *c)
{
    return c->weight_bad == 1 ? CAT_EDTYPE : c->weight_bad == 2 ? CAT_ESHAPE
                                                                : 0;
}

/* Every rule of case-format.md an embedding_bag call breaks. */
static unsigned bag_violations(const bag_call *c)
{
    const yk_bag_opts *o = &c->o;
    unsigned v = weight_violations(c);
    if (o->mode != YK_BAG_SUM && o->mode != YK_BAG_MEAN &&
        o->mode != YK_BAG_MAX)
        v |= CAT_EINVAL;
    if (c->input_dt != YK_I64)
        v |= CAT_EDTYPE;
    if (c->input_ndim != 1 && c->input_ndim != 2)
        v |= CAT_ESHAPE;
    if (c->input_ndim == 2 && c->has_offsets)
        v |= CAT_EOFFSETS;
    if (c->input_ndim == 1) {
        if (!c->has_offsets)
            v |= CAT_EOFFSETS;
        else if (c->offsets_dt != YK_I64)
            v |= CAT_EDTYPE;
        else {
            bool ok = c->offsets_ndim == 1 && c->k >= 1 && c->off[0] == 0 &&
                      c->off[c->k - 1] <= c->n &&
                      (!o->include_last_offset || c->off[c->k - 1] == c->n);
            for (int64_t i = 1; ok && i < c->k; i++)
                ok = c->off[i] >= c->off[i - 1];
            if (!ok)
                v |= CAT_EOFFSETS;
        }
    }
    if (o->mode == YK_BAG_MAX && (o->scale_grad_by_freq || o->sparse))
        v |= CAT_EINVAL;
    if (c->has_psw) {
        if (o->mode != YK_BAG_SUM)
            v |= CAT_EINVAL;
        if (c->psw_dt != c->dt)
            v |= CAT_EDTYPE;
        if (!c->psw_same_shape)
            v |= CAT_ESHAPE;
    }
    if (!padding_valid(o->padding_idx, c->V))
        v |= CAT_EINVAL;
    if (c->input_dt == YK_I64)
        v |= index_violations(c);
    return v;
}

static unsigned embedding_violations(const bag_call *c)
{
    unsigned v = weight_violations(c);
    if (c->input_dt != YK_I64)
        v |= CAT_EDTYPE;
    if (!padding_valid(c->o.padding_idx, c->V))
        v |= CAT_EINVAL;
    if (c->input_dt == YK_I64)
        v |= index_violations(c);
    return v;
}

/* ------------------------------------------------------- the reference */

static int64_t padding_row(const bag_call *c)
{
    int64_t p = c->o.padding_idx;
    return p == YK_NO_PADDING ? -1 : p < 0 ? p + c->V : p;
}

/* Bag b is input[*lo, *hi). */
static int64_t bag_count(const bag_call *c)
{
    if (c->input_ndim == 2)
        return c->input_shape[0];
    return c->k - (c->o.include_last_offset ? 1 : 0);
}

static void bag_range(const bag_call *c, int64_t b, int64_t *lo, int64_t *hi)
{
    if (c->input_ndim == 2) {
        *lo = b * c->input_shape[1];
        *hi = *lo + c->input_shape[1];
    } else {
        *lo = c->off[b];
        *hi = b + 1 < c->k ? c->off[b + 1] : c->n;
    }
}

/* The forward output [B, D] and, for a seed gy, the weight's gradient
 * [V, D] and per_sample_weights' gradient [n], in double. */
typedef struct bag_ref {
    double out[MAX_N * MAX_D];
    double dw[MAX_V * MAX_D];
    double dpsw[MAX_N];
} bag_ref;

static void reference(const bag_call *c, const double *w, const double *psw,
                      const double *gy, bag_ref *r)
{
    memset(r, 0, sizeof *r);
    int64_t D = c->D, pad = padding_row(c), B = bag_count(c);
    int64_t count[MAX_V] = {0};
    for (int64_t i = 0; i < c->n; i++)
        count[c->idx[i]]++;
    for (int64_t b = 0; b < B; b++) {
        int64_t lo, hi, size = 0;
        bag_range(c, b, &lo, &hi);
        for (int64_t i = lo; i < hi; i++)
            size += c->idx[i] != pad;
        for (int64_t d = 0; d < D; d++) {
            double acc = 0;
            int64_t arg = -1;
            for (int64_t i = lo; i < hi; i++) {
                if (c->idx[i] == pad)
                    continue;
                double x = w[c->idx[i] * D + d];
                if (c->o.mode == YK_BAG_MAX) {
                    if (arg < 0 || x > acc) {
                        acc = x;
                        arg = i;
                    }
                    continue;
                }
                double coef = psw ? psw[i] : 1.0;
                if (c->o.mode == YK_BAG_MEAN)
                    coef /= (double)size;
                acc += coef * x;
                double g = coef * gy[b * D + d];
                if (c->o.scale_grad_by_freq)
                    g /= (double)count[c->idx[i]];
                r->dw[c->idx[i] * D + d] += g;
                if (psw)
                    r->dpsw[i] += x * gy[b * D + d];
            }
            if (arg >= 0)
                r->dw[c->idx[arg] * D + d] += gy[b * D + d];
            r->out[b * D + d] = acc;
        }
    }
}

/* ------------------------------------------------------------ checking */

static void expect_close(const char *what, int64_t i, double got, double want,
                         yk_dtype dt)
{
    double tol = dt == YK_F32 ? 1e-4 : 1e-10;
    if (!(fabs(got - want) <= tol * (1 + fabs(want))))
        fuzz_fail("%s[%lld] = %.17g, the reference gives %.17g", what,
                  (long long)i, got, want);
}

static void expect_refusal(yk_ctx *ctx, yk_graph *g, const char *op,
                           unsigned allowed)
{
    yk_status s = yk_last_status(ctx);
    if (!(category_bit(s) & allowed))
        fuzz_fail("%s refused a call with %s (%s); the rules allow 0x%x", op,
                  yk_status_name(s), yk_last_error(ctx), allowed);
    if (strncmp(yk_last_error(ctx), op, strlen(op)) != 0)
        fuzz_fail("%s: message \"%s\" does not name the op", op,
                  yk_last_error(ctx));
    if (yk_graph_status(g) != s)
        fuzz_fail("%s: the graph did not fail with %s", op,
                  yk_status_name(s));
}

typedef struct fixture {
    yk_ctx *ctx;
    yk_model *m;
    yk_param *shared, *extra, *psw;
    yk_tensor *input, *offsets, *w_bad;
    double w[MAX_V * MAX_D];   /* the weight's values, [V, D] */
    double pswv[MAX_N];
} fixture;

static yk_tensor *index_tensor(yk_ctx *ctx, yk_dtype dt, int ndim,
                               const int64_t *shape, const int64_t *v,
                               int64_t n)
{
    yk_tensor *t = yk_tensor_zeros(ctx, dt, ndim, shape);
    for (int64_t i = 0; t && i < n; i++) {
        if (dt == YK_I64)
            ((int64_t *)yk_tensor_data(t))[i] = v[i];
        else
            ((float *)yk_tensor_data(t))[i] = (float)v[i];
    }
    return t;
}

static bool fixture_init(fixture *f, const bag_call *c)
{
    memset(f, 0, sizeof *f);
    f->ctx = yk_ctx_new();
    f->m = f->ctx ? yk_model_new(f->ctx) : NULL;
    if (!f->m)
        return false;
    f->shared = yk_model_add(f->m, "shared", c->dt, 2,
                             (int64_t[]){c->V, c->D1});
    if (c->D1 < c->D)
        f->extra = yk_model_add(f->m, "extra", c->dt, 2,
                                (int64_t[]){c->V, c->D - c->D1});
    f->psw = yk_model_add(f->m, "psw", c->psw_dt,
                          c->psw_same_shape ? c->input_ndim : 1,
                          c->psw_same_shape ? c->input_shape
                                            : (int64_t[]){c->n + 1});
    if (!f->shared || (c->D1 < c->D && !f->extra) || !f->psw)
        return false;
    yk_tensor_fill_normal(yk_param_value(f->shared), c->seed, 0, 1);
    if (f->extra)
        yk_tensor_fill_normal(yk_param_value(f->extra), c->seed + 1, 0, 1);
    yk_tensor_fill_uniform(yk_param_value(f->psw), c->seed + 2, -2, 2);
    for (int64_t r = 0; r < c->V; r++)
        for (int64_t d = 0; d < c->D; d++)
            f->w[r * c->D + d] = d < c->D1
                ? yk_tensor_get(yk_param_value(f->shared), r * c->D1 + d)
                : yk_tensor_get(yk_param_value(f->extra),
                                r * (c->D - c->D1) + d - c->D1);
    for (int64_t i = 0; i < c->n && c->psw_same_shape; i++)
        f->pswv[i] = yk_tensor_get(yk_param_value(f->psw), i);
    f->input = index_tensor(f->ctx, c->input_dt, c->input_ndim,
                            c->input_shape, c->idx, c->n);
    int64_t oshape[2] = {c->offsets_ndim == 2 ? 1 : c->k, c->k};
    f->offsets = c->has_offsets
        ? index_tensor(f->ctx, c->offsets_dt, c->offsets_ndim,
                       c->offsets_ndim == 2 ? oshape : &c->k, c->off, c->k)
        : NULL;
    if (c->weight_bad == 1)
        f->w_bad = yk_tensor_zeros(f->ctx, YK_I64, 2,
                                   (int64_t[]){c->V, c->D});
    if (c->weight_bad == 2)
        f->w_bad = yk_tensor_zeros(f->ctx, c->dt, 3,
                                   (int64_t[]){c->V, c->D, 1});
    return f->input && (!c->has_offsets || f->offsets) &&
           (!c->weight_bad || f->w_bad);
}

static void fixture_free(fixture *f)
{
    yk_tensor_free(f->input);
    yk_tensor_free(f->offsets);
    yk_tensor_free(f->w_bad);
    yk_model_free(f->m);
    yk_ctx_free(f->ctx);
}

static yk_node *weight_node(yk_graph *g, fixture *f, const bag_call *c)
{
    if (c->weight_bad)
        return yk_const(g, f->w_bad);
    yk_node *s = yk_param_node(g, f->shared);
    if (!f->extra)
        return s;
    yk_node *parts[2] = {s, yk_param_node(g, f->extra)};
    return yk_cat(g, 2, parts, 1);
}

/* The gradient reaching column d of weight row r, through the cat. */
static double weight_grad(const bag_call *c, int64_t r, int64_t d,
                          yk_tensor *gs, yk_tensor *ge)
{
    if (d < c->D1)
        return yk_tensor_get(gs, r * c->D1 + d);
    return yk_tensor_get(ge, r * (c->D - c->D1) + d - c->D1);
}

static void check_backward(fixture *f, const bag_call *c, yk_graph *g,
                           yk_node *y, bool with_psw)
{
    yk_tensor *seed = yk_tensor_zeros(f->ctx, c->dt, 2, yk_node_shape(y));
    if (!seed)
        return;
    yk_tensor_fill_uniform(seed, c->seed + 3, -1, 1);
    const yk_tensor *sp = seed;
    if (yk_backward_seeded(g, 1, &y, &sp) != YK_OK)
        fuzz_fail("embedding_bag backward: %s", yk_last_error(f->ctx));
    double gy[MAX_N * MAX_D];
    for (int64_t i = 0; i < yk_tensor_numel(seed); i++)
        gy[i] = yk_tensor_get(seed, i);
    static bag_ref r;
    reference(c, f->w, with_psw ? f->pswv : NULL, gy, &r);
    yk_tensor *gs = yk_tensor_zeros(f->ctx, c->dt, 2,
                                    (int64_t[]){c->V, c->D1});
    yk_tensor *ge = f->extra ? yk_tensor_zeros(f->ctx, c->dt, 2,
                                   (int64_t[]){c->V, c->D - c->D1}) : NULL;
    if (gs && yk_param_grad_to_dense(f->shared, gs) == YK_OK &&
        (!f->extra || (ge && yk_param_grad_to_dense(f->extra, ge) == YK_OK)))
        for (int64_t k = 0; k < c->V * c->D; k++)
            expect_close("embedding_bag weight grad", k,
                         weight_grad(c, k / c->D, k % c->D, gs, ge),
                         r.dw[k], c->dt);
    if (with_psw) {
        yk_tensor *gp = yk_tensor_zeros(f->ctx, c->dt, c->input_ndim,
                                        c->input_shape);
        if (gp && yk_param_grad_to_dense(f->psw, gp) == YK_OK)
            for (int64_t i = 0; i < c->n; i++)
                expect_close("per_sample_weights grad", i,
                             yk_tensor_get(gp, i), r.dpsw[i], c->dt);
        yk_tensor_free(gp);
    }
    yk_tensor_free(gs);
    yk_tensor_free(ge);
    yk_tensor_free(seed);
}

static void fuzz_bag(fixture *f, const bag_call *c)
{
    yk_model_zero_grad(f->m);
    yk_graph *g = yk_graph_begin(f->ctx);
    if (!g)
        return;
    yk_node *w = weight_node(g, f, c);
    yk_node *in = yk_const(g, f->input);
    yk_node *off = f->offsets ? yk_const(g, f->offsets) : NULL;
    yk_node *psw = c->has_psw ? yk_param_node(g, f->psw) : NULL;
    if (!w || !in || (f->offsets && !off) || (c->has_psw && !psw)) {
        yk_graph_end(g);
        return;
    }
    unsigned v = bag_violations(c);
    yk_clear_error(f->ctx);
    yk_node *y = yk_embedding_bag(g, in, w, off, psw,
                                  c->opts_null ? NULL : &c->o);
    if (v && y)
        fuzz_fail("embedding_bag accepted a call that breaks the rules "
                  "(0x%x)", v);
    if (!v && !y)
        fuzz_fail("embedding_bag refused a valid call: %s: %s",
                  yk_status_name(yk_last_status(f->ctx)),
                  yk_last_error(f->ctx));
    if (!y) {
        expect_refusal(f->ctx, g, "embedding_bag", v);
        yk_graph_end(g);
        return;
    }
    int64_t B = bag_count(c);
    if (yk_node_ndim(y) != 2 || yk_node_dim(y, 0) != B ||
        yk_node_dim(y, 1) != c->D)
        fuzz_fail("embedding_bag: output shape wrong (want [%lld, %lld])",
                  (long long)B, (long long)c->D);
    static bag_ref r;
    double gy[MAX_N * MAX_D] = {0};
    reference(c, f->w, c->has_psw ? f->pswv : NULL, gy, &r);
    for (int64_t i = 0; i < B * c->D; i++)
        expect_close("embedding_bag output", i, yk_tensor_get(yk_value(y), i),
                     r.out[i], c->dt);
    check_backward(f, c, g, y, c->has_psw);
    yk_graph_end(g);
}

static void fuzz_embedding(fixture *f, const bag_call *c)
{
    yk_graph *g = yk_graph_begin(f->ctx);
    if (!g)
        return;
    yk_node *w = weight_node(g, f, c);
    yk_node *in = yk_const(g, f->input);
    if (!w || !in) {
        yk_graph_end(g);
        return;
    }
    unsigned v = embedding_violations(c);
    yk_clear_error(f->ctx);
    yk_node *y = yk_embedding(g, in, w, c->o.padding_idx,
                              c->o.scale_grad_by_freq, c->o.sparse);
    if (v && y)
        fuzz_fail("embedding accepted a call that breaks the rules (0x%x)",
                  v);
    if (!v && !y)
        fuzz_fail("embedding refused a valid call: %s",
                  yk_last_error(f->ctx));
    if (!y) {
        expect_refusal(f->ctx, g, "embedding", v);
    } else {
        const yk_tensor *out = yk_value(y);
        if (yk_tensor_ndim(out) != c->input_ndim + 1 ||
            yk_tensor_dim(out, -1) != c->D)
            fuzz_fail("embedding: output shape wrong");
        for (int64_t i = 0; i < c->n * c->D; i++)
            if (yk_tensor_get(out, i) != f->w[c->idx[i / c->D] * c->D +
                                              i % c->D])
                fuzz_fail("embedding: output[%lld] is not the weight's",
                          (long long)i);
    }
    yk_graph_end(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_bytes b = {data, size};
    bag_call c;
    choose(&b, &c);
    fixture f;
    if (fixture_init(&f, &c)) {
        fuzz_bag(&f, &c);
        fuzz_embedding(&f, &c);
    }
    fixture_free(&f);
    return 0;
}
