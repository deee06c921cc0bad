/* nn.c -- Embedding and EmbeddingBag layers over (possibly shared)
 * parameters. The layers only hold options and parameter handles; the
 * work is done by the ops in ops/embedding.c. */
#include "engine.h"

#include <string.h>

static yk_status check_out(void *l, yk_model *m, const char *fn)
{
    if (!l || !m)
        return m ? yk__error(yk_model_ctx(m), YK_EINVAL, "%s: layer is NULL",
                             fn)
                 : YK_EINVAL;
    return YK_OK;
}

/* A new [V, D] parameter drawn from N(0, 1), as nn.Embedding initialises. */
static yk_param *new_table(yk_model *m, const char *fn, const char *name,
                           yk_dtype dt, int64_t V, int64_t D, uint64_t seed)
{
    if (V < 0 || D < 0) {
        yk__error(yk_model_ctx(m), YK_EINVAL, "%s: V = %lld and D = %lld must "
                  "not be negative", fn, (long long)V, (long long)D);
        return NULL;
    }
    yk_param *p = yk_model_add(m, name, dt, 2, (int64_t[]){V, D});
    if (p && yk_tensor_fill_normal(yk_param_value(p), seed, 0.0, 1.0) != YK_OK)
        return NULL;
    return p;
}

static yk_param *pretrained_table(yk_model *m, const char *fn,
                                  const char *name, const yk_tensor *values,
                                  bool freeze)
{
    yk_ctx *ctx = yk_model_ctx(m);
    if (!values) {
        yk__error(ctx, YK_EINVAL, "%s: values is NULL", fn);
        return NULL;
    }
    if (values->ndim != 2) {
        yk__error(ctx, YK_ESHAPE, "%s: values must be 2-D [V, D], got %d-D",
                  fn, values->ndim);
        return NULL;
    }
    yk_param *p = yk_model_add(m, name, values->dtype, 2, values->shape);
    if (!p)
        return NULL;
    yk_tensor_copy(yk_param_value(p), values);
    yk_param_set_requires_grad(p, !freeze);
    return p;
}

static yk_status check_table(yk_ctx *ctx, const char *fn, const char *arg,
                             const yk_param *p)
{
    if (!p)
        return ctx ? yk__error(ctx, YK_EINVAL, "%s: %s is NULL", fn, arg)
                   : YK_EINVAL;
    if (p->value.ndim != 2)
        return yk__error(ctx, YK_ESHAPE, "%s: %s \"%s\" must be 2-D [V, D], "
                         "got %d-D", fn, arg, p->name, p->value.ndim);
    return YK_OK;
}

/* ------------------------------------------------------------ Embedding */

static void embedding_defaults(yk_embedding_layer *l, yk_param *w)
{
    memset(l, 0, sizeof *l);
    l->weight = w;
    l->padding_idx = YK_NO_PADDING;
    l->norm_type = 2.0;
}

yk_status yk_embedding_layer_init(yk_embedding_layer *l, yk_model *m,
                                  const char *name, yk_dtype dt, int64_t V,
                                  int64_t D, uint64_t seed)
{
    yk_status s = check_out(l, m, "yk_embedding_layer_init");
    if (s)
        return s;
    yk_param *w = new_table(m, "yk_embedding_layer_init", name, dt, V, D, seed);
    if (!w)
        return yk_last_status(yk_model_ctx(m));
    embedding_defaults(l, w);
    return YK_OK;
}

yk_status yk_embedding_layer_tied(yk_embedding_layer *l, yk_param *weight)
{
    yk_ctx *ctx = weight ? yk_model_ctx(weight->model) : NULL;
    yk_status s = check_table(ctx, "yk_embedding_layer_tied", "weight", weight);
    if (s)
        return s;
    if (!l)
        return yk__error(ctx, YK_EINVAL, "yk_embedding_layer_tied: layer is "
                         "NULL");
    embedding_defaults(l, weight);
    return YK_OK;
}

yk_status yk_embedding_layer_pretrained(yk_embedding_layer *l, yk_model *m,
                                        const char *name,
                                        const yk_tensor *values, bool freeze)
{
    yk_status s = check_out(l, m, "yk_embedding_layer_pretrained");
    if (s)
        return s;
    yk_param *w = pretrained_table(m, "yk_embedding_layer_pretrained", name,
                                   values, freeze);
    if (!w)
        return yk_last_status(yk_model_ctx(m));
    embedding_defaults(l, w);
    return YK_OK;
}

static yk_status zero_row(yk_param *w, const char *fn, int64_t padding_idx)
{
    yk_ctx *ctx = yk_model_ctx(w->model);
    int64_t V = w->value.shape[0], D = w->value.shape[1];
    if (padding_idx < -V || padding_idx >= V)
        return yk__error(ctx, YK_EINVAL, "%s: padding_idx = %lld is outside "
                         "[-%lld, %lld)", fn, (long long)padding_idx,
                         (long long)V, (long long)V);
    int64_t r = padding_idx < 0 ? padding_idx + V : padding_idx;
    size_t es = yk_dtype_size(w->value.dtype);
    memset((char *)w->value.data + (size_t)(r * D) * es, 0, (size_t)D * es);
    return YK_OK;
}

yk_status yk_embedding_layer_set_padding(yk_embedding_layer *l,
                                         int64_t padding_idx)
{
    if (!l || !l->weight)
        return YK_EINVAL;
    if (padding_idx == YK_NO_PADDING) { /* turns padding off */
        l->padding_idx = YK_NO_PADDING;
        return YK_OK;
    }
    yk_status s = zero_row(l->weight, "yk_embedding_layer_set_padding",
                           padding_idx);
    if (s == YK_OK)
        l->padding_idx = padding_idx;
    return s;
}

/* max_norm: renormalise the looked-up rows in place before the lookup. */
static bool renorm_first(yk_graph *g, yk_param *w, yk_node *input,
                         double max_norm, double norm_type)
{
    if (max_norm <= 0)
        return true;
    const yk_tensor *idx = yk_value(input);
    if (!idx)
        return false;
    yk_status s = yk_embedding_renorm(&w->value, idx, max_norm,
                                      norm_type > 0 ? norm_type : 2.0);
    if (s != YK_OK) {
        yk__fail(g, s, "%s", yk_last_error(g->ctx));
        return false;
    }
    return true;
}

yk_node *yk_embedding_layer_forward(yk_graph *g, const yk_embedding_layer *l,
                                    yk_node *input)
{
    if (!yk__inputs_ok(g, "yk_embedding_layer_forward", 1, &input))
        return NULL;
    if (!l || !l->weight)
        return yk__fail(g, YK_EINVAL, "yk_embedding_layer_forward: the layer "
                        "has no weight");
    if (!renorm_first(g, l->weight, input, l->max_norm, l->norm_type))
        return NULL;
    return yk_embedding(g, input, yk_param_node(g, l->weight), l->padding_idx,
                        l->scale_grad_by_freq, l->sparse);
}

/* --------------------------------------------------------- EmbeddingBag */

static void bag_defaults(yk_bag_layer *l, yk_param *w, yk_param *extra,
                         yk_bag_mode mode)
{
    memset(l, 0, sizeof *l);
    l->weight = w;
    l->extra = extra;
    l->opts = yk_bag_defaults();
    l->opts.mode = mode;
    l->norm_type = 2.0;
}

static yk_status check_mode(yk_ctx *ctx, const char *fn, yk_bag_mode mode)
{
    if (mode == YK_BAG_MEAN || mode == YK_BAG_SUM || mode == YK_BAG_MAX)
        return YK_OK;
    return yk__error(ctx, YK_EINVAL, "%s: mode %d is not YK_BAG_MEAN, "
                     "YK_BAG_SUM or YK_BAG_MAX", fn, (int)mode);
}

yk_status yk_bag_layer_init(yk_bag_layer *l, yk_model *m, const char *name,
                            yk_dtype dt, int64_t V, int64_t D,
                            yk_bag_mode mode, uint64_t seed)
{
    yk_status s = check_out(l, m, "yk_bag_layer_init");
    if (s == YK_OK)
        s = check_mode(yk_model_ctx(m), "yk_bag_layer_init", mode);
    if (s)
        return s;
    yk_param *w = new_table(m, "yk_bag_layer_init", name, dt, V, D, seed);
    if (!w)
        return yk_last_status(yk_model_ctx(m));
    bag_defaults(l, w, NULL, mode);
    return YK_OK;
}

yk_status yk_bag_layer_tied(yk_bag_layer *l, yk_param *weight,
                            yk_param *extra, yk_bag_mode mode)
{
    const char *fn = "yk_bag_layer_tied";
    yk_ctx *ctx = weight ? yk_model_ctx(weight->model) : NULL;
    yk_status s = check_table(ctx, fn, "weight", weight);
    if (s == YK_OK && extra)
        s = check_table(ctx, fn, "extra", extra);
    if (s == YK_OK)
        s = check_mode(ctx, fn, mode);
    if (s)
        return s;
    if (!l)
        return yk__error(ctx, YK_EINVAL, "%s: layer is NULL", fn);
    if (extra && extra->value.dtype != weight->value.dtype)
        return yk__error(ctx, YK_EDTYPE, "%s: extra \"%s\" is %s but weight "
                         "\"%s\" is %s", fn, extra->name,
                         yk_dtype_name(extra->value.dtype), weight->name,
                         yk_dtype_name(weight->value.dtype));
    if (extra && extra->value.shape[0] != weight->value.shape[0])
        return yk__error(ctx, YK_ESHAPE, "%s: extra \"%s\" has %lld rows but "
                         "weight \"%s\" has %lld", fn, extra->name,
                         (long long)extra->value.shape[0], weight->name,
                         (long long)weight->value.shape[0]);
    bag_defaults(l, weight, extra, mode);
    return YK_OK;
}

yk_status yk_bag_layer_pretrained(yk_bag_layer *l, yk_model *m,
                                  const char *name, const yk_tensor *values,
                                  bool freeze, yk_bag_mode mode)
{
    yk_status s = check_out(l, m, "yk_bag_layer_pretrained");
    if (s == YK_OK)
        s = check_mode(yk_model_ctx(m), "yk_bag_layer_pretrained", mode);
    if (s)
        return s;
    yk_param *w = pretrained_table(m, "yk_bag_layer_pretrained", name, values,
                                   freeze);
    if (!w)
        return yk_last_status(yk_model_ctx(m));
    bag_defaults(l, w, NULL, mode);
    return YK_OK;
}

int64_t yk_bag_layer_dim(const yk_bag_layer *l)
{
    if (!l || !l->weight)
        return -1;
    return l->weight->value.shape[1] +
           (l->extra ? l->extra->value.shape[1] : 0);
}

yk_node *yk_bag_layer_forward(yk_graph *g, const yk_bag_layer *l,
                              yk_node *input, yk_node *offsets,
                              yk_node *per_sample_weights)
{
    if (!yk__inputs_ok(g, "yk_bag_layer_forward", 1, &input))
        return NULL;
    if (!l || !l->weight)
        return yk__fail(g, YK_EINVAL, "yk_bag_layer_forward: the layer has "
                        "no weight");
    if (l->max_norm > 0 && l->extra)
        return yk__fail(g, YK_ENOTIMPL, "yk_bag_layer_forward: max_norm with "
                        "extra columns is not supported");
    if (!renorm_first(g, l->weight, input, l->max_norm, l->norm_type))
        return NULL;
    yk_node *w = yk_param_node(g, l->weight);
    if (l->extra) {
        /* [shared | extra]: lazy, never materialised by embedding_bag. */
        yk_node *parts[2] = {w, yk_param_node(g, l->extra)};
        w = yk_cat(g, 2, parts, 1);
    }
    return yk_embedding_bag(g, input, w, offsets, per_sample_weights,
                            &l->opts);
}
