/*
 * seed_examples -- the three PyTorch snippets of ../shared/seed/, line for
 * line in C, then what the text only claims, shown with numbers.
 *
 * Each PyTorch line is quoted in a comment above the yoke code that does the
 * same. Where PyTorch's code does not do what the text says (`_weight=`
 * makes a new Parameter per module; `nn.Parameter(torch.cat(...))` makes an
 * unrelated leaf), yoke does it by construction: one parameter, one node per
 * graph, one gradient, one optimizer state. See models/README.md.
 *
 *   seed_examples [all|embedding|bag|extended|several] [--seed N]
 *                 [--threads N]
 *   seed_examples --help | --version
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yoke.h"
#include "../tools/cli.h"

#define CHECK(call)                                                          \
    do {                                                                     \
        if ((call) != YK_OK) {                                               \
            fprintf(stderr, "seed_examples: %s\n", yk_last_error(ctx));      \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_PTR(p)                                                         \
    do {                                                                     \
        if (!(p)) {                                                          \
            fprintf(stderr, "seed_examples: %s\n", yk_last_error(ctx));      \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

static yk_ctx *ctx;
static uint64_t seed = 0;

/* embedding_dim = 128; vocab_size = 1000; additional_embedding_dim = 16 */
enum { embedding_dim = 128, vocab_size = 1000, additional_embedding_dim = 16 };

static void print_shape(const char *label, yk_node *x)
{
    char buf[64];
    printf("%s %s\n", label, yk_shape_format(yk_value(x), buf, sizeof buf));
}

/* torch.randint(0, hi, shape) */
static yk_tensor *randint(uint64_t s, int64_t hi, int ndim,
                          const int64_t *shape)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_I64, ndim, shape);
    CHECK_PTR(t);
    CHECK(yk_tensor_fill_randint(t, s, 0, hi));
    return t;
}

/* The data of the snippets, fixed by --seed. */
typedef struct inputs {
    yk_tensor *input_sequence; /* (5, 10) */
    yk_tensor *input_bags;     /* (3, 7), flattened: same data as (21) */
    yk_tensor *offsets;        /* [0, 7, 14] */
} inputs;

static inputs make_inputs(void)
{
    inputs in;
    /* input_sequence = torch.randint(0, vocab_size, (5, 10)) */
    in.input_sequence = randint(seed + 1, vocab_size, 2, (int64_t[]){5, 10});
    /* input_bags = torch.randint(0, vocab_size, (3, 7)); .flatten() */
    in.input_bags = randint(seed + 2, vocab_size, 1, (int64_t[]){21});
    /* offsets = torch.tensor([0, 7, 14]) */
    in.offsets = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){3},
                                (int64_t[]){0, 7, 14});
    CHECK_PTR(in.offsets);
    return in;
}

static void free_inputs(inputs *in)
{
    yk_tensor_free(in->input_sequence);
    yk_tensor_free(in->input_bags);
    yk_tensor_free(in->offsets);
}

/* The layers of the three snippets over one model. */
typedef struct seed_model {
    yk_model *m;
    yk_param *shared;                 /* shared_embedding_matrix          */
    yk_param *separate;               /* separate_bag_embedding_matrix    */
    yk_embedding_layer embedding_layer;
    yk_bag_layer embedding_bag_layer;
    yk_bag_layer embedding_bag_layer_extended;
} seed_model;

static seed_model make_model(void)
{
    seed_model s;
    s.m = yk_model_new(ctx);
    CHECK_PTR(s.m);
    /* shared_embedding_matrix =
     *     nn.Parameter(torch.randn(vocab_size, embedding_dim)) */
    s.shared = yk_model_add(s.m, "shared_embedding_matrix", YK_F32, 2,
                            (int64_t[]){vocab_size, embedding_dim});
    CHECK_PTR(s.shared);
    CHECK(yk_tensor_fill_normal(yk_param_value(s.shared), seed + 10, 0, 1));
    /* embedding_layer = nn.Embedding(vocab_size, embedding_dim,
     *                                _weight=shared_embedding_matrix) */
    CHECK(yk_embedding_layer_tied(&s.embedding_layer, s.shared));
    /* embedding_bag_layer = nn.EmbeddingBag(vocab_size, embedding_dim,
     *         _weight=shared_embedding_matrix, mode='mean') */
    CHECK(yk_bag_layer_tied(&s.embedding_bag_layer, s.shared, NULL,
                            YK_BAG_MEAN));
    /* separate_bag_embedding_matrix =
     *     nn.Parameter(torch.randn(vocab_size, additional_embedding_dim)) */
    s.separate = yk_model_add(s.m, "separate_bag_embedding_matrix", YK_F32, 2,
                              (int64_t[]){vocab_size, additional_embedding_dim});
    CHECK_PTR(s.separate);
    CHECK(yk_tensor_fill_normal(yk_param_value(s.separate), seed + 11, 0, 1));
    /* combined_embedding_matrix = nn.Parameter(torch.cat(
     *     [shared_embedding_matrix, separate_bag_embedding_matrix], dim=-1))
     * embedding_bag_layer_extended = nn.EmbeddingBag(vocab_size,
     *     embedding_dim + additional_embedding_dim,
     *     _weight=combined_embedding_matrix, mode='mean')
     * In yoke the concatenation stays a view of both parameters: */
    CHECK(yk_bag_layer_tied(&s.embedding_bag_layer_extended, s.shared,
                            s.separate, YK_BAG_MEAN));
    return s;
}

/* ---------------------------------------------------------- the snippets */

static void snippet_embedding(seed_model *s, inputs *in)
{
    printf("== snippet 1: nn.Embedding on the shared matrix\n");
    yk_graph *g = yk_graph_begin(ctx);
    /* output_embeddings = embedding_layer(input_sequence) */
    yk_node *output_embeddings = yk_embedding_layer_forward(
        g, &s->embedding_layer, yk_const(g, in->input_sequence));
    CHECK_PTR(output_embeddings);
    /* print("Embedding output shape:", output_embeddings.shape) */
    print_shape("Embedding output shape:", output_embeddings);
    yk_graph_end(g);
}

static void snippet_bag(seed_model *s, inputs *in)
{
    printf("== snippet 2: nn.EmbeddingBag (mean) on the same matrix\n");
    yk_graph *g = yk_graph_begin(ctx);
    /* output_bag_embeddings = embedding_bag_layer(input_bags.flatten(),
     *                                             offsets=offsets) */
    yk_node *output_bag_embeddings = yk_bag_layer_forward(
        g, &s->embedding_bag_layer, yk_const(g, in->input_bags),
        yk_const(g, in->offsets), NULL);
    CHECK_PTR(output_bag_embeddings);
    /* print("EmbeddingBag output shape:", output_bag_embeddings.shape) */
    print_shape("EmbeddingBag output shape:", output_bag_embeddings);
    yk_graph_end(g);
}

static void snippet_extended(seed_model *s, inputs *in)
{
    printf("== snippet 3: EmbeddingBag over [shared | 16 bag-only columns]\n");
    yk_graph *g = yk_graph_begin(ctx);
    /* output_bag_embeddings_extended = embedding_bag_layer_extended(
     *     input_bags.flatten(), offsets=offsets) */
    yk_node *out = yk_bag_layer_forward(g, &s->embedding_bag_layer_extended,
                                        yk_const(g, in->input_bags),
                                        yk_const(g, in->offsets), NULL);
    CHECK_PTR(out);
    /* print("Extended EmbeddingBag output shape:",
     *       output_bag_embeddings_extended.shape) */
    print_shape("Extended EmbeddingBag output shape:", out);
    yk_graph_end(g);
}

/* --------------------------------------------------- what the text claims */

/* A random f32 target shaped like x, for a loss over x. */
static yk_node *target_like(yk_graph *g, yk_node *x, uint64_t s,
                            yk_tensor **keep)
{
    *keep = yk_tensor_zeros(ctx, YK_F32, yk_node_ndim(x), yk_node_shape(x));
    CHECK_PTR(*keep);
    CHECK(yk_tensor_fill_normal(*keep, s, 0, 1));
    return yk_const(g, *keep);
}

enum { USE_EMBEDDING = 1, USE_BAG = 2, USE_EXTENDED = 4 };

/* One forward and backward with a loss over the chosen uses:
 * L = mse(embedding_layer(seq), T1) + mse(bag(bags), T2) [+ mse(ext, T3)].
 * Returns the loss; gradients land in the model; *graph_bytes gets what
 * the step's arena used. */
static double step(seed_model *s, inputs *in, int uses, size_t *graph_bytes)
{
    yk_graph *g = yk_graph_begin(ctx);
    CHECK_PTR(g);
    yk_tensor *t[3] = {NULL, NULL, NULL};
    yk_node *loss = NULL, *term;
    if (uses & USE_EMBEDDING) {
        yk_node *e = yk_embedding_layer_forward(
            g, &s->embedding_layer, yk_const(g, in->input_sequence));
        term = yk_mse_loss(g, e, target_like(g, e, seed + 20, &t[0]),
                           YK_REDUCE_MEAN);
        loss = term;
    }
    if (uses & USE_BAG) {
        yk_node *b = yk_bag_layer_forward(g, &s->embedding_bag_layer,
                                          yk_const(g, in->input_bags),
                                          yk_const(g, in->offsets), NULL);
        term = yk_mse_loss(g, b, target_like(g, b, seed + 21, &t[1]),
                           YK_REDUCE_MEAN);
        loss = loss ? yk_add(g, loss, term) : term;
    }
    if (uses & USE_EXTENDED) {
        yk_node *x = yk_bag_layer_forward(g, &s->embedding_bag_layer_extended,
                                          yk_const(g, in->input_bags),
                                          yk_const(g, in->offsets), NULL);
        term = yk_mse_loss(g, x, target_like(g, x, seed + 22, &t[2]),
                           YK_REDUCE_MEAN);
        loss = loss ? yk_add(g, loss, term) : term;
    }
    CHECK(yk_backward(g, loss));
    double L = yk_tensor_get(yk_value(loss), 0);
    if (graph_bytes)
        *graph_bytes = yk_graph_bytes(g);
    yk_graph_end(g);
    for (int i = 0; i < 3; i++)
        yk_tensor_free(t[i]);
    return L;
}

static yk_tensor *grad_copy(yk_param *p)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F32, 2, yk_tensor_shape(yk_param_value(p)));
    CHECK_PTR(t);
    CHECK(yk_param_grad_to_dense(p, t));
    return t;
}

static double norm(const yk_tensor *t)
{
    double s = 0;
    for (int64_t i = 0; i < yk_tensor_numel(t); i++)
        s += yk_tensor_get(t, i) * yk_tensor_get(t, i);
    return sqrt(s);
}

/* Claim: "the optimizer will update the shared parameters based on the loss
 * gradient from both" -- the gradient of the tie is the sum of the uses'. */
static void claim_gradients_add(seed_model *s, inputs *in)
{
    printf("== one parameter, two uses, gradients add\n");
    printf("embedding_layer.weight and embedding_bag_layer.weight: %s "
           "(one handle \"%s\", one storage at %p)\n",
           yk_param_same(s->embedding_layer.weight, s->embedding_bag_layer.weight)
               ? "the same parameter" : "DIFFERENT parameters",
           yk_param_name(s->embedding_layer.weight),
           yk_tensor_data(yk_param_value(s->embedding_bag_layer.weight)));
    yk_model_zero_grad(s->m);
    step(s, in, USE_EMBEDDING, NULL);
    yk_tensor *g_emb = grad_copy(s->shared);
    yk_model_zero_grad(s->m);
    step(s, in, USE_BAG, NULL);
    yk_tensor *g_bag = grad_copy(s->shared);
    yk_model_zero_grad(s->m);
    double L = step(s, in, USE_EMBEDDING | USE_BAG, NULL);
    yk_tensor *g_both = grad_copy(s->shared);
    double worst = 0;
    for (int64_t i = 0; i < yk_tensor_numel(g_both); i++) {
        double d = fabs(yk_tensor_get(g_both, i) -
                        (yk_tensor_get(g_emb, i) + yk_tensor_get(g_bag, i)));
        worst = d > worst ? d : worst;
    }
    printf("loss %.6f; |grad from Embedding| = %.6f, |grad from "
           "EmbeddingBag| = %.6f, |grad of the tie| = %.6f\n", L,
           norm(g_emb), norm(g_bag), norm(g_both));
    printf("max |grad(both) - (grad(Embedding) + grad(EmbeddingBag))| = %.3g\n",
           worst);
    yk_tensor_free(g_emb);
    yk_tensor_free(g_bag);
    yk_tensor_free(g_both);
    yk_model_zero_grad(s->m);
}

/* Claims of snippet 3: the extended bag trains both parts, and the bag-only
 * columns never change what the Embedding sees. Also the memory held. */
static void claim_extended(seed_model *s, inputs *in)
{
    printf("== [shared | bag-only] stays tied\n");
    size_t bytes = 0;
    yk_model_zero_grad(s->m);
    step(s, in, USE_EMBEDDING | USE_EXTENDED, &bytes);
    yk_tensor *g_shared = grad_copy(s->shared), *g_sep = grad_copy(s->separate);
    printf("|grad of shared_embedding_matrix| = %.6f (from the Embedding and "
           "the extended bag)\n|grad of separate_bag_embedding_matrix| = %.6f "
           "(from the extended bag only)\n", norm(g_shared), norm(g_sep));
    yk_tensor_free(g_shared);
    yk_tensor_free(g_sep);
    yk_model_zero_grad(s->m);

    /* Move every bag-only weight; the Embedding's output must not move. */
    yk_graph *g = yk_graph_begin(ctx);
    yk_tensor *before = yk_tensor_clone(yk_value(yk_embedding_layer_forward(
        g, &s->embedding_layer, yk_const(g, in->input_sequence))));
    yk_graph_end(g);
    yk_tensor *sep = yk_param_value(s->separate);
    yk_tensor *saved = yk_tensor_clone(sep);
    CHECK(yk_tensor_fill(sep, 100.0));
    g = yk_graph_begin(ctx);
    const yk_tensor *after = yk_value(yk_embedding_layer_forward(
        g, &s->embedding_layer, yk_const(g, in->input_sequence)));
    CHECK_PTR(after);
    CHECK_PTR(before);
    bool same = memcmp(yk_tensor_data(before), yk_tensor_data(after),
                       yk_tensor_nbytes(after)) == 0;
    printf("Embedding output after changing every bag-only weight: %s\n",
           same ? "unchanged (bit for bit)" : "CHANGED");
    yk_graph_end(g);
    CHECK(yk_tensor_copy(sep, saved));
    yk_tensor_free(saved);
    yk_tensor_free(before);

    size_t shared_b = yk_tensor_nbytes(yk_param_value(s->shared));
    size_t sep_b = yk_tensor_nbytes(yk_param_value(s->separate));
    printf("memory: one %d x %d matrix for the tie = %zu bytes, bag-only "
           "columns %zu bytes; a materialised [%d, %d] concatenation would be "
           "%zu bytes more -- this step's whole graph used %zu bytes\n",
           vocab_size, embedding_dim, shared_b, sep_b, vocab_size,
           embedding_dim + additional_embedding_dim,
           (size_t)vocab_size * (embedding_dim + additional_embedding_dim) * 4,
           bytes);
}

/* "the optimizer will update the shared parameters": one Adam state per
 * parameter, so a row read by both uses moves once per step. */
static void claim_one_optimizer_state(seed_model *s, inputs *in)
{
    printf("== one Adam step over all three uses\n");
    const double lr = 0.1;
    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_ADAM);
    o.lr = lr;
    yk_optim *adam = yk_optim_new(ctx, YK_OPTIM_ADAM, &o);
    CHECK_PTR(adam);
    CHECK(yk_optim_add_model(adam, s->m));
    yk_tensor *before = yk_tensor_clone(yk_param_value(s->shared));
    CHECK_PTR(before);
    yk_model_zero_grad(s->m);
    step(s, in, USE_EMBEDDING | USE_BAG | USE_EXTENDED, NULL);
    CHECK(yk_optim_step(adam));
    printf("optimizer states: %d (", yk_optim_count(adam));
    for (int i = 0; i < yk_optim_count(adam); i++)
        printf("%s%s", i ? ", " : "", yk_param_name(yk_optim_param_at(adam, i)));
    printf(")\n");
    /* The first Adam step moves each element by lr * g / (|g| + eps): at
     * most lr, however many uses the row has (PyTorch's _weight= route
     * moves a row used by both modules by up to 2 lr). */
    const float *a = yk_tensor_data(before);
    const float *b = yk_tensor_data(yk_param_value(s->shared));
    double moved = 0;
    for (int64_t i = 0; i < yk_tensor_numel(before); i++)
        moved = fmax(moved, fabs((double)b[i] - a[i]));
    printf("largest change of a shared weight: %.4f (lr %.1f: one state, "
           "one step)\n", moved, lr);
    yk_tensor_free(before);
    yk_optim_free(adam);
    yk_model_zero_grad(s->m);
}

/* ------------------------------------------- the "extensibility" program */

/* Several layers over one matrix: an Embedding, bags in sum, max and mean
 * mode, one with per_sample_weights, one extended with bag-only columns.
 * f64 and small, so that yk_gradcheck can check the whole graph. */
typedef struct several {
    yk_param *shared, *extra;
    yk_embedding_layer emb;
    yk_bag_layer sum, max, mean_ext;
    yk_tensor *seq, *bags, *offsets, *psw, *targets;
} several;

static yk_node *several_forward(yk_graph *g, void *ud)
{
    several *s = ud;
    yk_node *seq = yk_const(g, s->seq), *bags = yk_const(g, s->bags);
    yk_node *offs = yk_const(g, s->offsets);
    yk_node *e = yk_embedding_layer_forward(g, &s->emb, seq);      /* [4, 3, D] */
    yk_node *parts[4] = {
        yk_mean(g, e, 1, (int[]){1}, false),                       /* [4, D] */
        yk_bag_layer_forward(g, &s->sum, bags, offs, yk_const(g, s->psw)),
        yk_bag_layer_forward(g, &s->max, bags, offs, NULL),
        yk_bag_layer_forward(g, &s->mean_ext, bags, offs, NULL)};  /* [4, D+2] */
    return yk_cat(g, 4, parts, 1);                                 /* [4, 4D+2] */
}

static yk_node *several_loss(yk_graph *g, several *s)
{
    yk_node *h = several_forward(g, s);
    return yk_cross_entropy(g, h, yk_const(g, s->targets), YK_REDUCE_MEAN);
}

static void program_several(void)
{
    printf("== several layers over one matrix (extensibility)\n");
    enum { V = 12, D = 3 };
    yk_model *m = yk_model_new(ctx);
    CHECK_PTR(m);
    several s;
    s.shared = yk_model_add(m, "shared", YK_F64, 2, (int64_t[]){V, D});
    s.extra = yk_model_add(m, "extra", YK_F64, 2, (int64_t[]){V, 2});
    CHECK_PTR(s.extra);
    CHECK(yk_tensor_fill_normal(yk_param_value(s.shared), seed + 30, 0, 1));
    CHECK(yk_tensor_fill_normal(yk_param_value(s.extra), seed + 31, 0, 1));
    CHECK(yk_embedding_layer_tied(&s.emb, s.shared));
    CHECK(yk_bag_layer_tied(&s.sum, s.shared, NULL, YK_BAG_SUM));
    CHECK(yk_bag_layer_tied(&s.max, s.shared, NULL, YK_BAG_MAX));
    CHECK(yk_bag_layer_tied(&s.mean_ext, s.shared, s.extra, YK_BAG_MEAN));
    s.seq = randint(seed + 32, V, 2, (int64_t[]){4, 3});
    s.bags = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){8},
                            (int64_t[]){1, 5, 2, 7, 7, 9, 0, 11});
    s.offsets = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){4},
                               (int64_t[]){0, 2, 3, 6});
    s.psw = yk_tensor_zeros(ctx, YK_F64, 1, (int64_t[]){8});
    s.targets = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){4},
                               (int64_t[]){0, 3, 7, 11});
    CHECK_PTR(s.bags);
    CHECK_PTR(s.offsets);
    CHECK_PTR(s.psw);
    CHECK_PTR(s.targets);
    CHECK(yk_tensor_fill_uniform(s.psw, seed + 33, 0.5, 1.5));

    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_ADAM);
    o.lr = 0.05;
    yk_optim *adam = yk_optim_new(ctx, YK_OPTIM_ADAM, &o);
    CHECK_PTR(adam);
    CHECK(yk_optim_add_model(adam, m));
    for (int it = 0; it < 5; it++) {
        yk_model_zero_grad(m);
        yk_graph *g = yk_graph_begin(ctx);
        yk_node *loss = several_loss(g, &s);
        CHECK(yk_backward(g, loss));
        printf("step %d: loss %.6f\n", it, yk_tensor_get(yk_value(loss), 0));
        yk_graph_end(g);
        CHECK(yk_optim_step(adam));
    }
    yk_model_zero_grad(m);
    yk_gradcheck_report r;
    CHECK(yk_gradcheck(m, several_forward, &s, NULL, &r));
    printf("yk_gradcheck of all four layers over one matrix: %s (%lld "
           "elements; worst %s[%lld]: analytic %.8f, numeric %.8f)\n",
           r.passed ? "passed" : "FAILED", (long long)r.checked, r.param,
           (long long)r.index, r.analytic, r.numeric);
    yk_optim_free(adam);
    yk_tensor_free(s.seq);
    yk_tensor_free(s.bags);
    yk_tensor_free(s.offsets);
    yk_tensor_free(s.psw);
    yk_tensor_free(s.targets);
    yk_model_free(m);
    if (!r.passed)
        exit(1);
}

static const char usage[] =
"usage: seed_examples [all|embedding|bag|extended|several] [--seed N]\n"
"                     [--threads N]\n"
"       seed_examples --help | --version\n"
"The seed document's three PyTorch snippets in C, line for line, then what\n"
"its text claims, shown with numbers (models/README.md).\n"
"\n"
"  all         every snippet and claim (the default)\n"
"  embedding   the Embedding snippet     bag       the EmbeddingBag one\n"
"  extended    the extended bag one      several   four layers, one matrix\n"
"  --seed N    seed of the inputs and parameters (default 0)\n"
"  --threads N threads for yoke's kernels (yk_set_threads; default 1)\n"
"  --help      this text\n"
"  --version   yoke's version\n"
"Exit status: 0 on success, 1 when yoke fails or a check fails, 2 on a\n"
"usage error.\n";

static bool known_part(const char *what)
{
    static const char *const parts[] = {"all", "embedding", "bag",
                                        "extended", "several", NULL};
    for (int k = 0; parts[k]; k++)
        if (!strcmp(what, parts[k]))
            return true;
    return false;
}

typedef struct options {
    const char *what;
    int threads;
} options;

/* 0 to go on, -1 to exit 0 (--help, --version), else the exit status. */
static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        uint64_t n;
        bool num = !strcmp(a, "--seed") || !strcmp(a, "--threads");
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (!strcmp(a, "--version")) {
            printf("seed_examples (yoke) %s\n", yk_version());
            return -1;
        } else if (num && i + 1 >= argc) {
            return cli_usage_error("seed_examples", "missing number after ", a);
        } else if (num) {
            bool threads = !strcmp(a, "--threads");
            if (!cli_parse_count(argv[i + 1], threads ? 1 : 0,
                             threads ? 1024 : UINT64_MAX, &n)) {
                fprintf(stderr, "seed_examples: %s %s: not a valid value\n",
                        a, argv[i + 1]);
                return cli_usage_error("seed_examples", "", "");
            }
            if (threads)
                o->threads = (int)n;
            else
                seed = n;
            i++;
        } else if (a[0] == '-') {
            return cli_usage_error("seed_examples", "unknown option ", a);
        } else if (!known_part(a)) {
            return cli_usage_error("seed_examples", "no such part: ", a);
        } else {
            o->what = a;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o = {.what = "all", .threads = 1};
    int st = parse_args(argc, argv, &o);
    if (st)
        return st < 0 ? 0 : st;
    const char *what = o.what;
    ctx = yk_ctx_new();
    if (!ctx || yk_set_threads(ctx, o.threads) != YK_OK) {
        fprintf(stderr, "seed_examples: %s\n",
                ctx ? yk_last_error(ctx) : "out of memory");
        return 1;
    }
    seed_model s = make_model();
    inputs in = make_inputs();
    bool all = !strcmp(what, "all");
    if (all || !strcmp(what, "embedding"))
        snippet_embedding(&s, &in);
    if (all || !strcmp(what, "bag"))
        snippet_bag(&s, &in);
    if (all || !strcmp(what, "extended"))
        snippet_extended(&s, &in);
    if (all) {
        claim_gradients_add(&s, &in);
        claim_extended(&s, &in);
        claim_one_optimizer_state(&s, &in);
    }
    if (all || !strcmp(what, "several"))
        program_several();
    free_inputs(&in);
    yk_model_free(s.m);
    yk_ctx_free(ctx);
    return 0;
}
