/*
 * yoke_nn.h -- layers like torch.nn.Embedding and torch.nn.EmbeddingBag
 * (included by yoke.h).
 *
 * A layer is a small plain struct: its options and the parameter(s) it
 * reads. It owns nothing; the parameters live in a yk_model. Tying is
 * giving two layers the same yk_param (yk_param_same() says so), and the
 * extended bag reads [shared | extra] through a lazy column concatenation,
 * so gradients reach both parameters and the [V, D + D2] matrix is never
 * built.
 *
 *     yk_embedding_layer emb;                          // owns a new V x D
 *     yk_embedding_layer_init(&emb, m, "shared", YK_F32, V, D, seed);
 *     yk_bag_layer bag;                                // tied to it
 *     yk_bag_layer_tied(&bag, emb.weight, NULL, YK_BAG_MEAN);
 *     yk_bag_layer ext;                                // [shared | extra]
 *     yk_param *extra = yk_model_add(m, "extra", YK_F32, 2, (int64_t[]){V, 16});
 *     yk_bag_layer_tied(&ext, emb.weight, extra, YK_BAG_MEAN);
 */
#ifndef YOKE_NN_H
#define YOKE_NN_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct yk_embedding_layer {
    yk_param *weight;        /* [V, D], in some model                   */
    int64_t padding_idx;     /* YK_NO_PADDING, or in [-V, V)             */
    bool scale_grad_by_freq;
    bool sparse;             /* row-sparse gradient                      */
    double max_norm;         /* 0: none; else rows renormalised first    */
    double norm_type;        /* p of the max_norm's p-norm (2 if 0)       */
} yk_embedding_layer;

/**
 * A layer owning a new parameter `name` of shape [V, D] in m, initialised
 * N(0, 1) from seed as nn.Embedding does. Options start at PyTorch's
 * defaults; set padding_idx afterwards with yk_embedding_layer_set_padding
 * (which zeroes that row, as PyTorch does at construction).
 */
yk_status yk_embedding_layer_init(yk_embedding_layer *l, yk_model *m,
                                  const char *name, yk_dtype dt, int64_t V,
                                  int64_t D, uint64_t seed);
/** A layer over an existing 2-D parameter: the tie. Nothing is copied. */
yk_status yk_embedding_layer_tied(yk_embedding_layer *l, yk_param *weight);
/**
 * nn.Embedding.from_pretrained: a new parameter `name` holding a copy of
 * values ([V, D] float); freeze turns its requires_grad off.
 */
yk_status yk_embedding_layer_pretrained(yk_embedding_layer *l, yk_model *m,
                                        const char *name,
                                        const yk_tensor *values, bool freeze);
/** Sets padding_idx and zeroes that row of the weight; YK_NO_PADDING turns
 * padding off (no row changes). YK_EINVAL for an index outside [-V, V). */
yk_status yk_embedding_layer_set_padding(yk_embedding_layer *l,
                                         int64_t padding_idx);
/**
 * The lookup: input (i64 node of any shape) -> input.shape + (D,). With
 * max_norm, the rows looked up are first renormalised in place (no
 * gradient through the renorm, as in PyTorch).
 */
yk_node *yk_embedding_layer_forward(yk_graph *g, const yk_embedding_layer *l,
                                    yk_node *input);

typedef struct yk_bag_layer {
    yk_param *weight;   /* [V, D], possibly shared with an Embedding     */
    yk_param *extra;    /* [V, D2] bag-only columns, or NULL              */
    yk_bag_opts opts;   /* mode, include_last_offset, padding_idx, ...    */
    double max_norm;    /* 0: none                                        */
    double norm_type;
} yk_bag_layer;

/** A bag layer owning a new [V, D] parameter, N(0, 1) from seed. */
yk_status yk_bag_layer_init(yk_bag_layer *l, yk_model *m, const char *name,
                            yk_dtype dt, int64_t V, int64_t D,
                            yk_bag_mode mode, uint64_t seed);
/**
 * A bag layer over an existing parameter (the tie), optionally extended
 * with bag-only columns `extra` ([V, D2], same dtype, same V): its output
 * has D + D2 columns, gradients reach both, and extra never touches any
 * other layer reading weight.
 */
yk_status yk_bag_layer_tied(yk_bag_layer *l, yk_param *weight,
                            yk_param *extra, yk_bag_mode mode);
/** As nn.EmbeddingBag.from_pretrained. */
yk_status yk_bag_layer_pretrained(yk_bag_layer *l, yk_model *m,
                                  const char *name, const yk_tensor *values,
                                  bool freeze, yk_bag_mode mode);
/** Output columns: D, or D + D2 with extra columns. */
int64_t yk_bag_layer_dim(const yk_bag_layer *l);
/**
 * The bagged lookup: input and offsets as yk_embedding_bag (offsets NULL
 * for 2-D input), per_sample_weights or NULL.
 */
yk_node *yk_bag_layer_forward(yk_graph *g, const yk_bag_layer *l,
                              yk_node *input, yk_node *offsets,
                              yk_node *per_sample_weights);

#ifdef __cplusplus
}
#endif

#endif /* YOKE_NN_H */
