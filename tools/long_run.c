/*
 * long_run -- trains a small tied model for many steps, beginning and
 * ending a graph each step, and prints the process's resident memory (from
 * /proc/self/statm) and the bytes the library holds (counted by the
 * context's allocator hook) at intervals, so that a leak or a slow growth
 * shows as a trend.
 *
 *   long_run [--steps N] [--every K] [--warmup W] [--threads T] [--check]
 *   long_run --help | --version
 *
 * The model is the seed's extended one at a modest size: a shared [V, D]
 * table read by an Embedding (mean over each sequence, then an output
 * projection tied to the same table) and, through [shared | extra], by a
 * mean EmbeddingBag; cross-entropy on both; Adam. Each step draws new
 * indices into new tensors and frees them, as a data loader would.
 *
 * After the warm-up the bytes held between steps must not change: the
 * model, the optimizer's state and the context are all there is. --check
 * makes that the exit status (1 when they change, or when anything is
 * still held after everything is freed); tests run it for 500 steps under
 * AddressSanitizer, whose leak checker covers what the hook cannot see.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "yoke.h"

enum { V = 2000, D = 32, D2 = 8, SEQ_B = 8, SEQ_L = 12, BAGS = 8,
       BAG_ENTRIES = 40, CLASSES_BAG = D + D2 };

typedef struct counter {
    long long live, peak;
    long long calls;
} counter;

static void *counting_alloc(void *ud, void *ptr, size_t old_size,
                            size_t new_size)
{
    counter *c = ud;
    if (new_size == 0) {
        if (ptr)
            c->live -= (long long)old_size;
        free(ptr);
        return NULL;
    }
    void *q = realloc(ptr, new_size);
    if (q) {
        c->calls++;
        c->live += (long long)new_size - (ptr ? (long long)old_size : 0);
        if (c->live > c->peak)
            c->peak = c->live;
    }
    return q;
}

/* Resident set size in KiB, from the second field of /proc/self/statm. */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static yk_ctx *ctx;

static void die(const char *what)
{
    fprintf(stderr, "long_run: %s: %s\n", what, yk_last_error(ctx));
    exit(2);
}

typedef struct model {
    yk_model *m;
    yk_param *shared, *extra;
    yk_embedding_layer emb;
    yk_bag_layer bag;
    yk_optim *opt;
    yk_tensor *offsets;
} model;

static void model_init(model *s)
{
    s->m = yk_model_new(ctx);
    if (!s->m)
        die("model");
    s->shared = yk_model_add(s->m, "shared", YK_F32, 2, (int64_t[]){V, D});
    s->extra = yk_model_add(s->m, "extra", YK_F32, 2, (int64_t[]){V, D2});
    if (!s->shared || !s->extra ||
        yk_tensor_fill_normal(yk_param_value(s->shared), 1, 0, 0.1) ||
        yk_tensor_fill_normal(yk_param_value(s->extra), 2, 0, 0.1) ||
        yk_embedding_layer_tied(&s->emb, s->shared) ||
        yk_bag_layer_tied(&s->bag, s->shared, s->extra, YK_BAG_MEAN))
        die("parameters");
    yk_optim_opts o = yk_optim_defaults(YK_OPTIM_ADAM);
    o.lr = 1e-3;
    s->opt = yk_optim_new(ctx, YK_OPTIM_ADAM, &o);
    if (!s->opt || yk_optim_add_model(s->opt, s->m))
        die("optimizer");
    int64_t off[BAGS];
    for (int b = 0; b < BAGS; b++)
        off[b] = b * (BAG_ENTRIES / BAGS);
    s->offsets = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){BAGS}, off);
    if (!s->offsets)
        die("offsets");
}

static void model_free(model *s)
{
    yk_tensor_free(s->offsets);
    yk_optim_free(s->opt);
    yk_model_free(s->m);
}

static yk_tensor *draw(uint64_t seed, int64_t hi, int ndim,
                       const int64_t *shape)
{
    yk_tensor *t = yk_tensor_zeros(ctx, YK_I64, ndim, shape);
    if (!t || yk_tensor_fill_randint(t, seed, 0, hi))
        die("inputs");
    return t;
}

/* One step on fresh data; returns the loss. */
static double step(model *s, long k)
{
    uint64_t seed = 1000 + 10 * (uint64_t)k;
    yk_tensor *seq = draw(seed, V, 2, (int64_t[]){SEQ_B, SEQ_L});
    yk_tensor *next = draw(seed + 1, V, 1, (int64_t[]){SEQ_B});
    yk_tensor *bags = draw(seed + 2, V, 1, (int64_t[]){BAG_ENTRIES});
    yk_tensor *labels = draw(seed + 3, CLASSES_BAG, 1, (int64_t[]){BAGS});

    yk_model_zero_grad(s->m);
    yk_graph *g = yk_graph_begin(ctx);
    if (!g)
        die("graph");
    yk_node *e = yk_embedding_layer_forward(g, &s->emb, yk_const(g, seq));
    yk_node *h = yk_mean(g, e, 1, (int[]){1}, false);
    yk_node *logits = yk_linear(g, h, yk_param_node(g, s->shared), NULL);
    yk_node *b = yk_bag_layer_forward(g, &s->bag, yk_const(g, bags),
                                      yk_const(g, s->offsets), NULL);
    yk_node *loss = yk_add(g,
        yk_cross_entropy(g, logits, yk_const(g, next), YK_REDUCE_MEAN),
        yk_cross_entropy(g, b, yk_const(g, labels), YK_REDUCE_MEAN));
    if (yk_backward(g, loss) != YK_OK)
        die("backward");
    double L = yk_tensor_get(yk_value(loss), 0);
    yk_graph_end(g);
    if (yk_optim_step(s->opt) != YK_OK)
        die("optimizer step");
    yk_tensor_free(seq);
    yk_tensor_free(next);
    yk_tensor_free(bags);
    yk_tensor_free(labels);
    return L;
}

static const char usage[] =
"usage: long_run [--steps N] [--every K] [--warmup W] [--threads T] [--check]\n"
"       long_run --help | --version\n"
"Trains a small tied model (the seed's extended one) for many steps and\n"
"prints the resident memory and the bytes yoke holds at intervals, so that\n"
"a leak or a slow growth shows as a trend.\n"
"\n"
"  --steps N      training steps (default 20000)\n"
"  --every K      print a line every K steps (default 1000)\n"
"  --warmup W     steps before the bytes held must stay flat (default 100)\n"
"  --threads T    threads for yoke's kernels (yk_set_threads; default 1)\n"
"  --check        exit 1 when the bytes held between steps change after\n"
"                 the warm-up, or anything is held after freeing\n"
"  --help         this text\n"
"  --version      yoke's version\n"
"Exit status: 0 on success, 1 when --check fails, 2 on a usage error or\n"
"when yoke fails.\n";

static void usage_error(const char *what, const char *arg)
{
    if (*what || *arg)
        fprintf(stderr, "long_run: %s%s\n", what, arg);
    fprintf(stderr, "(long_run --help tells more)\n");
    exit(2);
}

/* The value after option argv[*i]: a whole number in [lo, hi]. */
static long arg_long(int argc, char **argv, int *i, long lo, long hi)
{
    if (*i + 1 >= argc)
        usage_error("missing number after ", argv[*i]);
    const char *opt = argv[*i], *s = argv[++*i];
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "long_run: %s %s: not a valid value\n", opt, s);
        usage_error("", "");
    }
    return v;
}

int main(int argc, char **argv)
{
    long steps = 20000, every = 1000, warmup = 100, threads = 1;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("long_run (yoke) %s\n", yk_version());
            return 0;
        } else if (!strcmp(argv[i], "--steps"))
            steps = arg_long(argc, argv, &i, 0, LONG_MAX);
        else if (!strcmp(argv[i], "--every"))
            every = arg_long(argc, argv, &i, 1, LONG_MAX);
        else if (!strcmp(argv[i], "--warmup"))
            warmup = arg_long(argc, argv, &i, 0, LONG_MAX);
        else if (!strcmp(argv[i], "--threads"))
            threads = arg_long(argc, argv, &i, 1, 1024);
        else if (!strcmp(argv[i], "--check"))
            check = true;
        else
            usage_error(argv[i][0] == '-' ? "unknown option "
                                          : "unexpected argument ", argv[i]);
    }
    if (every < 1)
        every = 1;
    if (warmup >= steps)
        warmup = steps > 0 ? steps - 1 : 0;

    counter c = {0};
    ctx = yk_ctx_new_with_alloc(counting_alloc, &c);
    if (!ctx || yk_set_threads(ctx, (int)threads) != YK_OK)
        die("context");
    model s;
    model_init(&s);
    printf("%8s %12s %14s %14s %10s\n", "step", "rss_kib", "live_bytes",
           "peak_bytes", "loss");
    long rss_warm = 0, rss_max = 0, rss_last = 0;
    long long live_warm = -1, live_min = -1, live_max = -1;
    for (long k = 1; k <= steps; k++) {
        double L = step(&s, k);
        long rss = rss_kib();
        if (k == warmup + 1 || (k > warmup && rss > rss_max))
            rss_max = rss;
        if (k == warmup + 1) {
            rss_warm = rss;
            live_warm = live_min = live_max = c.live;
        } else if (k > warmup) {
            live_min = c.live < live_min ? c.live : live_min;
            live_max = c.live > live_max ? c.live : live_max;
        }
        rss_last = rss;
        if (k % every == 0 || k == 1 || k == warmup + 1 || k == steps)
            printf("%8ld %12ld %14lld %14lld %10.5f\n", k, rss, c.live,
                   c.peak, L);
    }
    printf("after warm-up (step %ld): rss %ld KiB, library %lld bytes\n",
           warmup + 1, rss_warm, live_warm);
    printf("end (step %ld): rss %ld KiB (max %ld, %+ld KiB since warm-up), "
           "library %lld..%lld bytes between steps\n", steps, rss_last,
           rss_max, rss_last - rss_warm, live_min, live_max);
    model_free(&s);
    long long left = c.live;
    yk_ctx_free(ctx);
    bool flat = live_min == live_warm && live_max == live_warm;
    printf("library bytes between steps after warm-up: %s; held after "
           "freeing the model: %lld (the context's own block)\n",
           flat ? "flat" : "CHANGING", left);
    if (check && (!flat || c.live != 0)) {
        fprintf(stderr, "long_run: memory %s\n",
                !flat ? "held between steps changed after the warm-up"
                      : "still held after yk_ctx_free");
        return 1;
    }
    return 0;
}
