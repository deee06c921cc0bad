/*
 * dump_seed_graph -- the seed's three uses of one embedding table in one
 * training step, dumped as Graphviz DOT and JSON, with the tie report.
 *
 *   dump_seed_graph [--dot FILE] [--json FILE] [--seed N] [--threads N]
 *   dump_seed_graph --help | --version
 *
 * The model is models/seed_examples.c's: shared_embedding_matrix [1000,
 * 128] read by an Embedding and a mean EmbeddingBag, and an extended mean
 * EmbeddingBag over [shared | separate_bag_embedding_matrix [1000, 16]].
 * The loss is the sum of an MSE per use. The tie report (printed to stdout,
 * or to stderr when a dump goes to stdout) lists every op that used each
 * parameter and the norm of the gradient it sent. FILE "-" is stdout.
 * Render the DOT with tools/graph_svg.sh.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yoke.h"
#include "cli.h"

enum { embedding_dim = 128, vocab_size = 1000, additional_embedding_dim = 16 };

static yk_ctx *ctx;

static void die(const char *what)
{
    fprintf(stderr, "dump_seed_graph: %s: %s\n", what, yk_last_error(ctx));
    exit(1);
}

static yk_tensor *randint(uint64_t seed, int64_t n0, int64_t n1)
{
    int64_t shape[2] = {n0, n1};
    yk_tensor *t = yk_tensor_zeros(ctx, YK_I64, n1 ? 2 : 1, shape);
    if (!t || yk_tensor_fill_randint(t, seed, 0, vocab_size) != YK_OK)
        die("inputs");
    return t;
}

static yk_tensor *normal_like(yk_node *x, uint64_t seed)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_F32, yk_node_ndim(x),
                                   yk_node_shape(x));
    if (!t || yk_tensor_fill_normal(t, seed, 0, 1) != YK_OK)
        die("targets");
    return t;
}

typedef struct seed_step {
    yk_model *m;
    yk_embedding_layer emb;
    yk_bag_layer bag, ext;
    yk_tensor *seq, *bags, *offsets, *targets[3];
} seed_step;

static void make_model(seed_step *s, uint64_t seed)
{
    s->m = yk_model_new(ctx);
    if (!s->m)
        die("model");
    yk_param *shared = yk_model_add(s->m, "shared_embedding_matrix", YK_F32,
                                    2, (int64_t[]){vocab_size, embedding_dim});
    yk_param *separate = yk_model_add(s->m, "separate_bag_embedding_matrix",
                                      YK_F32, 2, (int64_t[]){
                                          vocab_size, additional_embedding_dim});
    if (!shared || !separate ||
        yk_tensor_fill_normal(yk_param_value(shared), seed + 10, 0, 1) ||
        yk_tensor_fill_normal(yk_param_value(separate), seed + 11, 0, 1) ||
        yk_embedding_layer_tied(&s->emb, shared) ||
        yk_bag_layer_tied(&s->bag, shared, NULL, YK_BAG_MEAN) ||
        yk_bag_layer_tied(&s->ext, shared, separate, YK_BAG_MEAN))
        die("model");
    s->seq = randint(seed + 1, 5, 10);
    s->bags = randint(seed + 2, 21, 0);
    s->offsets = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){3},
                                (int64_t[]){0, 7, 14});
    if (!s->offsets)
        die("offsets");
}

/* mse(use, target) for one use; the target is kept in *keep. */
static yk_node *mse_term(yk_graph *g, yk_node *use, uint64_t seed,
                         yk_tensor **keep)
{
    if (!use)
        return NULL;
    *keep = normal_like(use, seed);
    return yk_mse_loss(g, use, yk_const(g, *keep), YK_REDUCE_MEAN);
}

static yk_node *build_loss(yk_graph *g, seed_step *s, uint64_t seed)
{
    yk_node *e = yk_embedding_layer_forward(g, &s->emb, yk_const(g, s->seq));
    yk_node *b = yk_bag_layer_forward(g, &s->bag, yk_const(g, s->bags),
                                      yk_const(g, s->offsets), NULL);
    yk_node *x = yk_bag_layer_forward(g, &s->ext, yk_const(g, s->bags),
                                      yk_const(g, s->offsets), NULL);
    yk_node *l0 = mse_term(g, e, seed + 20, &s->targets[0]);
    yk_node *l1 = mse_term(g, b, seed + 21, &s->targets[1]);
    yk_node *l2 = mse_term(g, x, seed + 22, &s->targets[2]);
    return yk_add(g, yk_add(g, l0, l1), l2);
}

static void write_dot(const yk_graph *g, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f) {
        perror(path);
        exit(1);
    }
    if (yk_graph_dump_dot(g, f) != YK_OK)
        die(path);
    if (f != stdout && fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void write_json(const yk_graph *g, const char *path)
{
    char *s = yk_graph_dump_json(g);
    if (!s)
        die("json");
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f || fputs(s, f) < 0 || fputc('\n', f) < 0 ||
        (f != stdout && fclose(f) != 0)) {
        perror(path);
        exit(1);
    }
    yk_string_free(s);
}

static const char usage[] =
"usage: dump_seed_graph [--dot FILE] [--json FILE] [--seed N] [--threads N]\n"
"       dump_seed_graph --help | --version\n"
"Runs one training step of the seed's tied model (one table read by an\n"
"Embedding, a mean EmbeddingBag and an extended EmbeddingBag) with the tie\n"
"report on, prints the report and writes the step's graph.\n"
"\n"
"  --dot FILE     write the graph as Graphviz DOT (render it with\n"
"                 tools/graph_svg.sh)\n"
"  --json FILE    write the graph as JSON: ops, shapes, dtypes, parameters\n"
"  --seed N       seed of the parameters, inputs and targets (default 0)\n"
"  --threads N    threads for yoke's kernels (yk_set_threads; default 1)\n"
"  --help         this text\n"
"  --version      yoke's version\n"
"FILE - is stdout; the tie report then goes to stderr.\n"
"Exit status: 0 on success, 1 when the step or a write fails, 2 on a\n"
"usage error.\n";

typedef struct options {
    const char *dot, *json;
    uint64_t seed;
    int threads;
} options;

/* Options that take a value; 0, or the exit status of a usage error. */
static int parse_value(options *o, const char *opt, const char *val)
{
    uint64_t n;
    if (!val)
        return cli_usage_error("dump_seed_graph", "missing value after ", opt);
    if (!strcmp(opt, "--dot"))
        o->dot = val;
    else if (!strcmp(opt, "--json"))
        o->json = val;
    else if (!strcmp(opt, "--seed") && cli_parse_count(val, 0, UINT64_MAX, &n))
        o->seed = n;
    else if (!strcmp(opt, "--threads") && cli_parse_count(val, 1, 1024, &n))
        o->threads = (int)n;
    else {
        fprintf(stderr, "dump_seed_graph: %s %s: not a valid value\n", opt,
                val);
        return cli_usage_error("dump_seed_graph", "", "");
    }
    return 0;
}

/* 0 to go on, -1 to exit 0 (--help, --version), else the exit status. */
static int parse_args(int argc, char **argv, options *o)
{
    static const char *const with_value[] = {"--dot", "--json", "--seed",
                                             "--threads", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool takes_value = false;
        for (int k = 0; with_value[k]; k++)
            takes_value |= !strcmp(a, with_value[k]);
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (!strcmp(a, "--version")) {
            printf("dump_seed_graph (yoke) %s\n", yk_version());
            return -1;
        } else if (takes_value) {
            int st = parse_value(o, a, i + 1 < argc ? argv[i + 1] : NULL);
            if (st)
                return st;
            i++;
        } else {
            return cli_usage_error("dump_seed_graph", a[0] == '-' ? "unknown option "
                                           : "unexpected argument ", a);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o = {.threads = 1};
    int st = parse_args(argc, argv, &o);
    if (st)
        return st < 0 ? 0 : st;
    const char *dot = o.dot, *json = o.json;
    uint64_t seed = o.seed;
    ctx = yk_ctx_new();
    if (!ctx) {
        fprintf(stderr, "dump_seed_graph: out of memory\n");
        return 1;
    }
    if (yk_set_threads(ctx, o.threads) != YK_OK)
        die("--threads");
    seed_step s = {0};
    make_model(&s, seed);
    yk_graph *g = yk_graph_begin(ctx);
    if (!g || yk_graph_set_tie_report(g, true) != YK_OK)
        die("graph");
    if (yk_backward(g, build_loss(g, &s, seed)) != YK_OK)
        die("backward");
    if (dot)
        write_dot(g, dot);
    if (json)
        write_json(g, json);
    bool to_stdout = (dot && !strcmp(dot, "-")) || (json && !strcmp(json, "-"));
    if (yk_tie_report_print(g, to_stdout ? stderr : stdout) != YK_OK)
        die("tie report");
    yk_graph_end(g);
    yk_tensor *ts[] = {s.seq, s.bags, s.offsets, s.targets[0], s.targets[1],
                       s.targets[2]};
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++)
        yk_tensor_free(ts[k]);
    yk_model_free(s.m);
    yk_ctx_free(ctx);
    return 0;
}
