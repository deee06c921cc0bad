/*
 * yoke_optim.h -- optimizers, gradient clipping and learning-rate schedules
 * (included by yoke.h).
 *
 * An optimizer holds a set of parameters and ONE state per parameter,
 * whatever number of ops read it (weight tying is structural: the model
 * keeps one accumulated gradient per parameter, see yoke.h). The kinds and
 * their formulas are torch.optim's (SGD, Adam, AdamW, Adagrad, SparseAdam),
 * plus the row-wise Adagrad that large embedding tables use.
 *
 *     yk_optim_opts o = yk_optim_defaults(YK_OPTIM_ADAM);
 *     o.lr = 0.01;
 *     yk_optim *opt = yk_optim_new(ctx, YK_OPTIM_ADAM, &o);
 *     yk_optim_add_model(opt, m);            // or yk_optim_add(opt, W)
 *     for (step = 0; ...; step++) {
 *         yk_model_zero_grad(m);
 *         ...build a graph, yk_backward(g, loss), yk_graph_end(g)...
 *         yk_optim_set_lr(opt, yk_lr_cosine(0.01, step, total, 0.0));
 *         yk_optim_step(opt);
 *     }
 *     yk_optim_free(opt);                     // before the model
 *
 * ROW-SPARSE GRADIENTS. A parameter whose gradient is row-sparse
 * (yk_param_grad_kind() == YK_GRAD_ROWS) is updated in time proportional to
 * the rows in the gradient, not to the table size, when the update of a row
 * without gradient is "nothing": plain sgd (no momentum, no weight decay),
 * adagrad without weight decay, rowwise_adagrad and sparse_adam. Every
 * other combination (momentum, weight decay, adam, adamw) gives exactly the
 * numbers of the dense gradient, the missing rows counting as zeros, so it
 * touches every row. sparse_adam is lazy by definition (PyTorch's
 * SparseAdam) and needs a row-sparse gradient.
 *
 * SKIPPING. In a step, a parameter with no gradient (YK_GRAD_NONE) is
 * skipped as torch.optim skips a parameter whose .grad is None: no weight
 * decay, no state change, its step count does not advance. A parameter with
 * requires_grad off is skipped and its state freed (freezing). Rows frozen
 * with yk_optim_freeze_rows are never updated and their state stays at its
 * initial value.
 *
 * OWNERSHIP. The optimizer borrows its parameters: free it before their
 * model. It owns its state tensors; yk_optim_state hands out pointers into
 * it, valid until the state is freed (the optimizer freed, or the
 * parameter frozen).
 */
#ifndef YOKE_OPTIM_H
#define YOKE_OPTIM_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum yk_optim_kind {
    YK_OPTIM_SGD,             /* "sgd"             torch.optim.SGD        */
    YK_OPTIM_ADAM,            /* "adam"            torch.optim.Adam       */
    YK_OPTIM_ADAMW,           /* "adamw"           torch.optim.AdamW      */
    YK_OPTIM_ADAGRAD,         /* "adagrad"         torch.optim.Adagrad    */
    YK_OPTIM_SPARSE_ADAM,     /* "sparse_adam"     torch.optim.SparseAdam */
    YK_OPTIM_ROWWISE_ADAGRAD  /* "rowwise_adagrad" one accumulator a row  */
} yk_optim_kind;

/** "sgd", "adam", ... as case files name them ("?" for an invalid kind). */
const char *yk_optim_kind_name(yk_optim_kind kind);
/** The kind of that name: true and *out set, or false (no error is set). */
bool yk_optim_kind_from_name(const char *name, yk_optim_kind *out);

/*
 * Options. Each kind reads only its own fields; the others must stay 0
 * (false) -- yk_optim_new rejects a set foreign option, since it would
 * silently do nothing.
 *
 *   sgd:             lr (required: NaN in the defaults), momentum,
 *                    dampening, nesterov, weight_decay
 *   adam, adamw:     lr, beta1, beta2, eps, weight_decay, amsgrad
 *   adagrad:         lr, lr_decay, weight_decay, initial_accumulator_value,
 *                    eps
 *   sparse_adam:     lr, beta1, beta2, eps
 *   rowwise_adagrad: lr, lr_decay, initial_accumulator_value, eps
 *
 * Updates, for a parameter p with gradient g and t its own step count
 * (1, 2, ...), every state starting at 0:
 *   sgd      g += wd p; with momentum b = g at t = 1, else
 *            b = momentum b + (1 - dampening) g; g = nesterov ?
 *            g + momentum b : b; p -= lr g
 *   adam     g += wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *            amsgrad: vmax = max(vmax, v) replaces v;
 *            p -= lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   adamw    p *= 1 - lr wd, then adam without wd
 *   adagrad  g += wd p; s += g^2 (s starts at initial_accumulator_value);
 *            p -= lr/(1+(t-1) lr_decay) g / (sqrt(s) + eps)
 *   sparse_adam  rows r of the gradient only (zero-valued rows included):
 *            m_r, v_r as adam; p_r -= lr sqrt(1-b2^t)/(1-b1^t) m_r /
 *            (sqrt(v_r) + eps)
 *   rowwise_adagrad  one accumulator s_r a row: s_r += mean(g_r^2);
 *            p_r -= lr/(1+(t-1) lr_decay) g_r / (sqrt(s_r) + eps)
 */
typedef struct yk_optim_opts {
    double lr;
    double momentum, dampening; /* sgd                                   */
    bool nesterov;              /* sgd: needs momentum > 0, dampening 0  */
    double beta1, beta2;        /* adam, adamw, sparse_adam: in [0, 1)   */
    double eps;                 /* >= 0                                  */
    double weight_decay;        /* >= 0                                  */
    bool amsgrad;               /* adam, adamw                           */
    double lr_decay;            /* adagrad, rowwise_adagrad: >= 0        */
    double initial_accumulator_value; /* adagrad, rowwise_adagrad: >= 0  */
} yk_optim_opts;

/**
 * torch.optim's defaults for kind (all-zero options for an invalid kind).
 * sgd: lr NaN, i.e. "required"; adam: lr 1e-3, betas (0.9, 0.999), eps
 * 1e-8; adamw: as adam with weight_decay 0.01; adagrad: lr 1e-2, eps 1e-10;
 * sparse_adam: as adam; rowwise_adagrad: as adagrad. Others 0 / false.
 */
yk_optim_opts yk_optim_defaults(yk_optim_kind kind);

/**
 * Sets the option `name` of kind in *o, by torch.optim's name ("lr",
 * "momentum", "dampening", "nesterov", "weight_decay", "eps", "amsgrad",
 * "lr_decay", "initial_accumulator_value") or "beta1" / "beta2" for the two
 * entries of "betas". Booleans are 0 or 1. For the case evaluator: an
 * option the kind does not have is YK_EINVAL ("adam: unknown option
 * \"momentum\""); values are checked by yk_optim_new, not here.
 */
yk_status yk_optim_opts_set(yk_ctx *ctx, yk_optim_kind kind,
                            yk_optim_opts *o, const char *name, double value);

typedef struct yk_optim yk_optim;

/**
 * A new optimizer of kind with options *opts (NULL: the defaults), no
 * parameters. Invalid options are YK_EINVAL naming the option and value
 * (negative lr, eps, weight_decay, momentum, lr_decay or
 * initial_accumulator_value; a beta outside [0, 1); nesterov without
 * momentum or with dampening; sgd without lr; a foreign option set); an
 * invalid kind is YK_EINVAL; NULL on error. Free with yk_optim_free.
 */
yk_optim *yk_optim_new(yk_ctx *ctx, yk_optim_kind kind,
                       const yk_optim_opts *opts);
/** Frees the optimizer and all its state. NULL is a no-op. */
void yk_optim_free(yk_optim *o);

yk_optim_kind yk_optim_kind_of(const yk_optim *o);
/** The options in use (lr as last set by yk_optim_set_lr). */
yk_optim_opts yk_optim_options(const yk_optim *o);

/**
 * Adds parameter p (state made at its first step). YK_EINVAL if p is NULL,
 * already in o, or of a model of another context.
 */
yk_status yk_optim_add(yk_optim *o, yk_param *p);
/**
 * Adds every parameter of m, in insertion order (requires_grad off too:
 * they are skipped while frozen). All or nothing: YK_EINVAL, and nothing
 * added, if m is of another context or one of its parameters is already
 * in o.
 */
yk_status yk_optim_add_model(yk_optim *o, yk_model *m);
/** Number of parameters; yk_optim_param_at(o, i) walks them in order. */
int yk_optim_count(const yk_optim *o);
yk_param *yk_optim_param_at(const yk_optim *o, int i);
bool yk_optim_has(const yk_optim *o, const yk_param *p);

/**
 * One step: updates every parameter from its accumulated gradient in the
 * model (read, never changed; call yk_model_zero_grad between steps).
 * Skips as described at the top. Errors, with no parameter or step count
 * changed: YK_EINVAL for sparse_adam on a parameter with a dense gradient
 * (naming it), YK_ENOMEM.
 */
yk_status yk_optim_step(yk_optim *o);

/** The learning rate in use. */
double yk_optim_lr(const yk_optim *o);
/** Sets the learning rate for the next steps; negative or NaN: YK_EINVAL. */
yk_status yk_optim_set_lr(yk_optim *o, double lr);

/* ---------------------------------------------------------- row freezing */

/**
 * Freezes rows of p (a parameter of o; rows are indices along dim 0, a 0-d
 * parameter has one row): they are never updated, and their state is reset
 * to its initial value (0; initial_accumulator_value for adagrad's "sum")
 * and stays there. Rows may repeat. YK_EINVAL if p is not in o, YK_ERANGE
 * for a row outside [0, rows) (naming it; nothing frozen then), YK_ENOMEM.
 */
yk_status yk_optim_freeze_rows(yk_optim *o, yk_param *p, int64_t n,
                               const int64_t *rows);
/** Freezes rows [start, stop); 0 <= start <= stop <= rows else YK_ERANGE. */
yk_status yk_optim_freeze_row_range(yk_optim *o, yk_param *p, int64_t start,
                                    int64_t stop);
/** Unfreezes every row of p (YK_EINVAL if p is not in o). */
yk_status yk_optim_unfreeze_rows(yk_optim *o, yk_param *p);
/** Is row r of p frozen? (false when p is not in o or r is out of range) */
bool yk_optim_row_frozen(const yk_optim *o, const yk_param *p, int64_t r);

/* ------------------------------------------------- state (checkpoints) */

/**
 * Names of the state tensors o keeps for each parameter, as PyTorch names
 * them: sgd with momentum "momentum_buffer"; adam, adamw "exp_avg",
 * "exp_avg_sq" (+ "max_exp_avg_sq" with amsgrad); adagrad "sum" (shaped
 * like p); sparse_adam "exp_avg", "exp_avg_sq"; rowwise_adagrad "sum"
 * (shape [rows], one per row). Plain sgd keeps none (count 0).
 */
int yk_optim_state_count(const yk_optim *o);
const char *yk_optim_state_name(const yk_optim *o, int i);

/**
 * The number of steps p has taken (its t), 0 before its first step or
 * after its state was freed; -1 if p is not in o.
 */
int64_t yk_optim_step_count(const yk_optim *o, const yk_param *p);
/** Sets p's step count (>= 0) e.g. from a checkpoint. YK_EINVAL if p is
 * not in o or step < 0. */
yk_status yk_optim_set_step_count(yk_optim *o, yk_param *p, int64_t step);

/**
 * *out = p's state tensor `name`, owned by o (read and write it), or NULL
 * when p has no state yet (before its first step, or frozen). YK_EINVAL if
 * p is not in o or name is not one of yk_optim_state_name's (naming it).
 */
yk_status yk_optim_state(yk_optim *o, yk_param *p, const char *name,
                         yk_tensor **out);
/**
 * Copies src into p's state `name`, making p's state first (every tensor
 * at its initial value) if it has none. src must have the state's dtype
 * (p's) and shape: YK_EDTYPE / YK_ESHAPE. YK_EINVAL as yk_optim_state;
 * YK_ENOMEM.
 */
yk_status yk_optim_set_state(yk_optim *o, yk_param *p, const char *name,
                             const yk_tensor *src);

/* ---------------------------------------------------- gradient clipping */

/**
 * torch.nn.utils.clip_grad_norm_: the norm_type-norm (> 0, or INFINITY) of
 * all the gradients of params[0..n) together (dense and row-sparse;
 * parameters without gradient add nothing) goes into *total_norm (may be
 * NULL); if max_norm / (total + 1e-6) < 1 every gradient is multiplied by
 * it (a NaN or infinite total makes them NaN, as in PyTorch). NULL
 * parameters, max_norm < 0 or NaN, norm_type <= 0 or NaN: YK_EINVAL.
 * n == 0 is a no-op with total 0. YK_ENOMEM (coalescing rows).
 */
yk_status yk_clip_grad_norm(int n, yk_param *const *params, double max_norm,
                            double norm_type, double *total_norm);
/** yk_clip_grad_norm over the parameters of o. */
yk_status yk_optim_clip_grad_norm(yk_optim *o, double max_norm,
                                  double norm_type, double *total_norm);
/**
 * torch.nn.utils.clip_grad_value_: clamps every gradient element of
 * params[0..n) into [-clip_value, clip_value]; clip_value < 0 or NaN, or a
 * NULL parameter: YK_EINVAL.
 */
yk_status yk_clip_grad_value(int n, yk_param *const *params,
                             double clip_value);

/* ------------------------------------------------ learning-rate schedules
 *
 * Pure functions of the step (0, 1, ...): each takes the lr it modifies and
 * returns the lr to use, so schedules compose by nesting, e.g. warm-up into
 * a cosine decay:  yk_lr_warmup(yk_lr_cosine(lr0, step, T, 0), step, W, 0).
 * Steps below 0 count as 0.
 */

/** torch StepLR: lr * gamma^floor(step / step_size) (step_size < 1 counts
 * as 1). */
double yk_lr_step(double lr, int64_t step, int64_t step_size, double gamma);
/**
 * torch CosineAnnealingLR (closed form): min_lr + (lr - min_lr) *
 * (1 + cos(pi * step / total)) / 2 for step <= total, min_lr after (torch
 * would go back up); total < 1 counts as 1.
 */
double yk_lr_cosine(double lr, int64_t step, int64_t total, double min_lr);
/**
 * Linear warm-up (torch LinearLR with end_factor 1): lr * (start_factor +
 * (1 - start_factor) * min(step, warmup) / warmup); warmup <= 0: lr.
 */
double yk_lr_warmup(double lr, int64_t step, int64_t warmup,
                    double start_factor);

#ifdef __cplusplus
}
#endif

#endif /* YOKE_OPTIM_H */
