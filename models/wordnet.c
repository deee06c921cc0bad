/*
 * wordnet -- classify WordNet 3.0 synsets into their 45 lexicographer files
 * (noun.animal, verb.motion, ...) from their gloss and member words, with
 * one embedding matrix tied between a sequence encoder and a bag.
 *
 *   gloss tokens --Embedding(shared)--> [B, L+K-1, D]
 *       --1-D convolution over positions (K shifted narrows, cat, linear)
 *       --relu--> [B, L, H] --mean over the gloss's positions--> [B, H]
 *   member words + hashed word bigrams --EmbeddingBag(mean) over
 *       [shared | extra]--> [B, D + D2]
 *   cat --> linear --> cross-entropy over the 45 labels
 *
 * The shared matrix has V word rows and `buckets` rows for hashed bigrams
 * (fastText's layout): the gloss encoder reads word rows, the bag reads
 * both. Both lookups ask for row-sparse gradients, so the shared matrix and
 * the bag-only columns are trained by lazy sparse Adam; the dense layers by
 * Adam. --untie gives the gloss encoder its own [V, D] matrix.
 *
 * Split: synsets whose offset is divisible by 10 are the test set. The
 * vocabulary is the training split's tokens (ids 0 padding, 1 unknown).
 * Everything is built on the public API (yoke.h) only.
 *
 * Run `wordnet --help` for the options; models/WORDNET.md has the results.
 *
 * Built with -DWORDNET_MPI (meson's wordnet_mpi, when MPI is found) the
 * same program trains data parallel under `mpirun -np N`: every rank
 * builds the same model and epoch plan, takes its yk_mpi_split slice of
 * each batch, and the gradients are summed over the ranks before the
 * optimizers step (docs/MPI.md). Run alone it is the one-process program.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "wordnet_data.h"
#include "yoke.h"
#ifdef WORDNET_MPI
#include "yoke_mpi.h"
#endif

#define PAD_ID 0
#define UNK_ID 1
#define FIRST_WORD_ID 2

/* ================================================================ errors */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                     noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wordnet: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Exits with the context's message when a yoke call fails. */
static void check(yk_ctx *ctx, yk_status s, const char *what)
{
    if (s != YK_OK)
        die("%s: %s", what, yk_last_error(ctx));
}

static void *check_ptr(yk_ctx *ctx, void *p, const char *what)
{
    if (!p)
        die("%s: %s", what, ctx ? yk_last_error(ctx) : "out of memory");
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_seconds(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}

/* CPU time of the whole process (all threads): on a busy machine it says
 * what the work cost when wall time also counts the waiting. */
static double cpu_seconds(void)
{
    return clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

/* ================================================================= ranks */

/*
 * The processes training together: one without MPI (rank 0 of 1, every
 * function below a no-op), or the ranks of MPI_COMM_WORLD. Every rank
 * runs the whole program on the same data and seed; only rank 0 prints
 * (the others' stdout goes to /dev/null), writes --csv and --save.
 */
typedef struct ranks {
    int rank, size;
#ifdef WORDNET_MPI
    yk_mpi *comm;
#endif
} ranks;

static ranks world = {.rank = 0, .size = 1};

/* Before anything else: MPI start-up, and rank 0 alone on stdout. */
static void ranks_init(int *argc, char ***argv)
{
#ifdef WORDNET_MPI
    if (yk_mpi_init(argc, argv) != YK_OK)
        die("MPI could not start");
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    if (world.rank != 0 && !freopen("/dev/null", "w", stdout))
        die("rank %d: /dev/null: %s", world.rank, strerror(errno));
#else
    (void)argc;
    (void)argv;
#endif
}

/* The yoke communicator, once the context exists. */
static void ranks_connect(yk_ctx *ctx)
{
#ifdef WORDNET_MPI
    world.comm = check_ptr(ctx, yk_mpi_new(ctx, MPI_COMM_WORLD), "MPI");
#else
    (void)ctx;
#endif
}

static void ranks_end(void)
{
#ifdef WORDNET_MPI
    yk_mpi_free(world.comm);
    world.comm = NULL;
    yk_mpi_finalize();
#endif
}

/* This rank's slice [*start, *stop) of n items (all of them alone). */
static void ranks_split(int64_t n, int64_t *start, int64_t *stop)
{
    *start = 0;
    *stop = n;
#ifdef WORDNET_MPI
    if (world.comm)
        yk_mpi_split(world.comm, n, start, stop);
#endif
}

/* values[0..n) summed over the ranks, the same bits on every rank. */
static void ranks_sum(yk_ctx *ctx, double *values, int n)
{
#ifdef WORDNET_MPI
    if (world.comm && world.size > 1)
        check(ctx, yk_mpi_allreduce_sum(world.comm, values, n), "MPI sum");
#else
    (void)ctx;
    (void)values;
    (void)n;
#endif
}

/* Rank 0's parameters everywhere (equal already: same seed; made sure). */
static void ranks_broadcast(yk_ctx *ctx, yk_model *m)
{
#ifdef WORDNET_MPI
    if (world.comm && world.size > 1)
        check(ctx, yk_mpi_broadcast_model(world.comm, m), "MPI broadcast");
#else
    (void)ctx;
    (void)m;
#endif
}

/* After backward: every rank's gradients summed (the loss of each rank is
 * already divided by the whole batch's size). Row-sparse stays so. */
static void ranks_sync_grads(yk_ctx *ctx, yk_model *m)
{
#ifdef WORDNET_MPI
    if (world.comm && world.size > 1)
        check(ctx, yk_mpi_sync_grads(world.comm, m, YK_MPI_SUM),
              "MPI gradient exchange");
#else
    (void)ctx;
    (void)m;
#endif
}

/* Bytes this rank sent and received and the collectives it made since the
 * last call (zeros without MPI). */
typedef struct exchange {
    double sent, received, collectives;
} exchange;

static exchange ranks_exchange_since_last(void)
{
    exchange x = {0};
#ifdef WORDNET_MPI
    if (world.comm) {
        yk_mpi_stats st = yk_mpi_get_stats(world.comm);
        x = (exchange){(double)st.bytes_sent, (double)st.bytes_received,
                       (double)st.collectives};
        yk_mpi_reset_stats(world.comm);
    }
#endif
    return x;
}

/* ================================================================ options */

typedef struct wn_config {
    const char *data_dir;
    int epochs;
    int64_t dim;       /* D: shared embedding columns              */
    int64_t extra_dim; /* D2: bag-only columns                     */
    int64_t hidden;    /* H: convolution channels                  */
    int64_t kernel;    /* K: convolution width (odd)               */
    int64_t buckets;   /* hashed bigram rows (0: no bigrams)       */
    int64_t max_len;   /* gloss tokens kept                        */
    int64_t min_count; /* training occurrences to enter the vocab  */
    int64_t batch;
    double lr;
    double init_std;   /* embedding rows ~ N(0, init_std^2)        */
    bool cosine;       /* cosine learning-rate decay over training */
    int threads;
    bool untie;
    bool profile;      /* time the phases of a step                */
    bool huge_pages;   /* transparent huge pages for the tables    */
    bool f64;          /* parameters in f64 (else f32)             */
    uint64_t seed;
    int64_t max_steps; /* per epoch; 0: all                        */
    const char *csv_path, *save_path, *eval_path, *export_dir;
} wn_config;

static wn_config default_config(void)
{
    return (wn_config){
        .data_dir = "/usr/share/wordnet",
        .epochs = 2,
        .dim = 64,
        .extra_dim = 16,
        .hidden = 64,
        .kernel = 3,
        .buckets = 200000,
        .max_len = 64,
        .min_count = 1,
        .batch = 32,
        .lr = 0.01,
        .init_std = 0.1,
        .cosine = true,
        .threads = 1,
        .huge_pages = true,
        .seed = 1,
    };
}

static void usage(FILE *f)
{
    wn_config d = default_config();
    fprintf(f,
        "usage: wordnet [options]\n"
        "Trains a tied Embedding + EmbeddingBag classifier of WordNet synsets\n"
        "into their 45 lexicographer files; prints train loss, test accuracy\n"
        "and examples/s per epoch.\n\n"
        "  --data DIR        WordNet dict folder with data.noun, data.verb,\n"
        "                    data.adj, data.adv (default %s)\n"
        "  --epochs N        training epochs (default %d)\n"
        "  --dim D           shared embedding columns (default %lld)\n"
        "  --extra-dim D2    bag-only columns (default %lld)\n"
        "  --hidden H        convolution channels (default %lld)\n"
        "  --kernel K        convolution width, odd (default %lld)\n"
        "  --buckets N       hashed word-bigram rows, 0 for none (default %lld)\n"
        "  --max-len N       gloss tokens kept (default %lld)\n"
        "  --min-count N     training occurrences for the vocabulary "
        "(default %lld)\n"
        "  --batch N         examples per step (default %lld)\n"
        "  --lr X            Adam learning rate (default %g)\n"
        "  --constant-lr     no cosine decay of the learning rate\n"
        "  --init-std X      embedding init N(0, X^2) (default %g)\n"
        "  --threads N       threads (default %d)\n"
        "  --untie           separate matrices for the gloss and the bag\n"
        "  --seed N          seed of initialisation and shuffling (default "
        "%llu)\n"
        "  --max-steps N     stop each epoch after N steps (for smoke tests)\n"
        "  --profile         print the wall and CPU ms per step of each phase\n"
        "  --no-huge-pages   do not ask for transparent huge pages for the\n"
        "                    tables and their Adam state\n"
        "  --f64             parameters in f64 (default f32)\n"
        "  --csv FILE        write loss and accuracy per epoch to FILE\n"
        "  --save FILE       save the trained model (safetensors)\n"
        "  --eval FILE       evaluate a saved model on the test split, no "
        "training\n"
        "  --export DIR      write the split as fastText text (train.txt,\n"
        "                    test.txt) and as ids (train.ids, test.ids,\n"
        "                    meta.txt) for tools/, then exit\n"
        "  --help, --version\n",
        d.data_dir, d.epochs, (long long)d.dim, (long long)d.extra_dim,
        (long long)d.hidden, (long long)d.kernel, (long long)d.buckets,
        (long long)d.max_len, (long long)d.min_count, (long long)d.batch,
        d.lr, d.init_std, d.threads, (unsigned long long)d.seed);
#ifdef WORDNET_MPI
    fputs("Data parallel: mpirun -np N wordnet_mpi [options]; --batch is the\n"
          "whole batch, split over the ranks (--threads per rank).\n", f);
#endif
}

static int64_t parse_int(const char *opt, const char *s, int64_t lo,
                         int64_t hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("%s: \"%s\" is not an integer in [%lld, %lld]", opt, s,
            (long long)lo, (long long)hi);
    return v;
}

static double parse_double(const char *opt, const char *s, double lo)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || !isfinite(v))
        die("%s: \"%s\" is not a number >= %g", opt, s, lo);
    return v;
}

/* The value of option argv[*i], which must have one. */
static const char *option_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        die("%s needs a value (see --help)", argv[*i]);
    return argv[++*i];
}

static bool parse_flag(wn_config *c, const char *a)
{
    if (strcmp(a, "--untie") == 0)
        c->untie = true;
    else if (strcmp(a, "--constant-lr") == 0)
        c->cosine = false;
    else if (strcmp(a, "--profile") == 0)
        c->profile = true;
    else if (strcmp(a, "--no-huge-pages") == 0)
        c->huge_pages = false;
    else if (strcmp(a, "--f64") == 0)
        c->f64 = true;
    else
        return false;
    return true;
}

static bool parse_string_option(wn_config *c, const char *a, const char *v)
{
    const char **dst = strcmp(a, "--data") == 0     ? &c->data_dir
                       : strcmp(a, "--csv") == 0    ? &c->csv_path
                       : strcmp(a, "--save") == 0   ? &c->save_path
                       : strcmp(a, "--eval") == 0   ? &c->eval_path
                       : strcmp(a, "--export") == 0 ? &c->export_dir
                                                    : NULL;
    if (dst)
        *dst = v;
    return dst != NULL;
}

static bool parse_number_option(wn_config *c, const char *a, const char *v)
{
    const int64_t big = (int64_t)1 << 40;
    if (strcmp(a, "--epochs") == 0)
        c->epochs = (int)parse_int(a, v, 0, 1000000);
    else if (strcmp(a, "--dim") == 0)
        c->dim = parse_int(a, v, 1, 1 << 16);
    else if (strcmp(a, "--extra-dim") == 0)
        c->extra_dim = parse_int(a, v, 0, 1 << 16);
    else if (strcmp(a, "--hidden") == 0)
        c->hidden = parse_int(a, v, 1, 1 << 16);
    else if (strcmp(a, "--kernel") == 0)
        c->kernel = parse_int(a, v, 1, 63);
    else if (strcmp(a, "--buckets") == 0)
        c->buckets = parse_int(a, v, 0, big);
    else if (strcmp(a, "--max-len") == 0)
        c->max_len = parse_int(a, v, 1, 1 << 20);
    else if (strcmp(a, "--min-count") == 0)
        c->min_count = parse_int(a, v, 1, big);
    else if (strcmp(a, "--batch") == 0)
        c->batch = parse_int(a, v, 1, 1 << 20);
    else if (strcmp(a, "--lr") == 0)
        c->lr = parse_double(a, v, 0);
    else if (strcmp(a, "--init-std") == 0)
        c->init_std = parse_double(a, v, 0);
    else if (strcmp(a, "--threads") == 0)
        c->threads = (int)parse_int(a, v, 1, 1024);
    else if (strcmp(a, "--seed") == 0)
        c->seed = (uint64_t)parse_int(a, v, 0, INT64_MAX);
    else if (strcmp(a, "--max-steps") == 0)
        c->max_steps = parse_int(a, v, 0, big);
    else
        return false;
    return true;
}

static wn_config parse_args(int argc, char **argv)
{
    wn_config c = default_config();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--version") == 0) {
            printf("wordnet (yoke %s)\n", yk_version());
            exit(0);
        }
        if (parse_flag(&c, a))
            continue;
        if (strncmp(a, "--", 2) != 0)
            die("unexpected argument \"%s\" (see --help)", a);
        const char *v = option_value(argc, argv, &i);
        if (!parse_string_option(&c, a, v) && !parse_number_option(&c, a, v))
            die("unknown option \"%s\" (see --help)", a);
    }
    if (c.kernel % 2 == 0)
        die("--kernel: %lld is even; the convolution needs an odd width",
            (long long)c.kernel);
    return c;
}

/* ============================================================ vocabulary */

typedef struct vocab {
    int64_t size;     /* V: PAD_ID, UNK_ID, then the training words   */
    int64_t *of_word; /* loader word id -> vocabulary id (UNK_ID)     */
    uint32_t *hash;   /* loader word id -> fastText's hash of it      */
} vocab;

/* fastText's word hash (FNV-1a, 32 bits, signed chars as fastText). */
static uint32_t fasttext_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (uint32_t)(int8_t)*s;
        h *= 16777619u;
    }
    return h;
}

/* Counts every token of the training split. */
static int64_t *train_counts(const wn_data *d)
{
    int64_t *count = xcalloc((size_t)d->n_words, sizeof *count);
    for (int64_t i = 0; i < d->n_synsets; i++) {
        const wn_synset *s = &d->synsets[i];
        if (wn_is_test(s))
            continue;
        for (int32_t k = 0; k < s->n_lemma; k++)
            count[d->tokens[s->lemma_start + k]]++;
        for (int32_t k = 0; k < s->n_gloss; k++)
            count[d->tokens[s->gloss_start + k]]++;
    }
    return count;
}

/* Words seen min_count times in training, in order of first appearance. */
static vocab build_vocab(const wn_data *d, int64_t min_count)
{
    vocab v = {.size = FIRST_WORD_ID};
    int64_t *count = train_counts(d);
    v.of_word = xcalloc((size_t)d->n_words, sizeof *v.of_word);
    v.hash = xcalloc((size_t)d->n_words, sizeof *v.hash);
    for (int64_t w = 0; w < d->n_words; w++) {
        v.of_word[w] = count[w] >= min_count ? v.size++ : UNK_ID;
        v.hash[w] = fasttext_hash(d->words[w]);
    }
    free(count);
    return v;
}

static void free_vocab(vocab *v)
{
    free(v->of_word);
    free(v->hash);
}

/* ============================================================== examples */

/* One split, as the model reads it: per example a label, its gloss as
 * vocabulary ids and its bag as rows of the shared matrix. */
typedef struct examples {
    int64_t n;
    int64_t *label;
    int64_t *gloss_start, *bag_start; /* into gloss / bag               */
    int32_t *gloss_len, *bag_len;
    int64_t *gloss, *bag;
    int64_t n_gloss, n_bag;
} examples;

static void alloc_examples(examples *e, int64_t n, int64_t n_gloss,
                           int64_t n_bag)
{
    e->label = xcalloc((size_t)n, sizeof *e->label);
    e->gloss_start = xcalloc((size_t)n, sizeof *e->gloss_start);
    e->bag_start = xcalloc((size_t)n, sizeof *e->bag_start);
    e->gloss_len = xcalloc((size_t)n, sizeof *e->gloss_len);
    e->bag_len = xcalloc((size_t)n, sizeof *e->bag_len);
    e->gloss = xcalloc((size_t)n_gloss, sizeof *e->gloss);
    e->bag = xcalloc((size_t)n_bag, sizeof *e->bag);
}

static void free_examples(examples *e)
{
    free(e->label);
    free(e->gloss_start);
    free(e->bag_start);
    free(e->gloss_len);
    free(e->bag_len);
    free(e->gloss);
    free(e->bag);
    memset(e, 0, sizeof *e);
}

/* fastText's bigram bucket: h = h1 * 116049371 + h2 (64 bits), mod. */
static int64_t bigram_bucket(uint32_t h1, uint32_t h2, int64_t buckets)
{
    uint64_t h = (uint64_t)(int64_t)(int32_t)h1;
    h = h * 116049371u + (uint64_t)(int64_t)(int32_t)h2;
    return (int64_t)(h % (uint64_t)buckets);
}

/* Token k of a synset's text: its member words, then its gloss. */
static int32_t text_token(const wn_data *d, const wn_synset *s, int32_t k)
{
    return d->tokens[k < s->n_lemma ? s->lemma_start + k
                                    : s->gloss_start + k - s->n_lemma];
}

/* Appends one synset's bag: its in-vocabulary member words, then the
 * bigram buckets of its whole text (member words, then gloss), as
 * fastText reads a line. Returns the bag's length. */
static int32_t fill_bag(const wn_data *d, const vocab *v, const wn_synset *s,
                        int64_t buckets, int64_t *out)
{
    int32_t n = 0;
    for (int32_t k = 0; k < s->n_lemma; k++) {
        int64_t id = v->of_word[d->tokens[s->lemma_start + k]];
        if (id != UNK_ID)
            out[n++] = id;
    }
    if (buckets == 0)
        return n;
    int32_t len = s->n_lemma + s->n_gloss;
    for (int32_t k = 0; k + 1 < len; k++) {
        int32_t a = text_token(d, s, k), b = text_token(d, s, k + 1);
        out[n++] = v->size + bigram_bucket(v->hash[a], v->hash[b], buckets);
    }
    return n;
}

/* The examples of one split (test or train), as the model reads them. */
static examples build_examples(const wn_data *d, const vocab *v,
                               const wn_config *c, bool test)
{
    examples e = {0};
    int64_t n = 0, n_gloss = 0, n_bag = 0;
    for (int64_t i = 0; i < d->n_synsets; i++) {
        const wn_synset *s = &d->synsets[i];
        if (wn_is_test(s) != test)
            continue;
        n++;
        n_gloss += s->n_gloss < c->max_len ? s->n_gloss : c->max_len;
        n_bag += s->n_lemma + s->n_lemma + s->n_gloss;
    }
    alloc_examples(&e, n, n_gloss, n_bag);
    for (int64_t i = 0; i < d->n_synsets; i++) {
        const wn_synset *s = &d->synsets[i];
        if (wn_is_test(s) != test)
            continue;
        int64_t j = e.n++;
        e.label[j] = s->label;
        e.gloss_start[j] = e.n_gloss;
        e.gloss_len[j] = (int32_t)(s->n_gloss < c->max_len ? s->n_gloss
                                                           : c->max_len);
        for (int32_t k = 0; k < e.gloss_len[j]; k++)
            e.gloss[e.n_gloss++] = v->of_word[d->tokens[s->gloss_start + k]];
        e.bag_start[j] = e.n_bag;
        e.bag_len[j] = fill_bag(d, v, s, c->buckets, e.bag + e.n_bag);
        e.n_bag += e.bag_len[j];
    }
    return e;
}

/* ================================================================ export */

static FILE *open_out(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        die("%s: %s", path, strerror(errno));
    return f;
}

static void close_out(FILE *f, const char *dir, const char *name)
{
    if (ferror(f) | fclose(f))
        die("%s/%s: write error: %s", dir, name, strerror(errno));
}

/* "__label__noun.animal member words gloss tokens": fastText's input. */
static void export_text(const wn_data *d, const char *dir, bool test)
{
    const char *name = test ? "test.txt" : "train.txt";
    FILE *f = open_out(dir, name);
    for (int64_t i = 0; i < d->n_synsets; i++) {
        const wn_synset *s = &d->synsets[i];
        if (wn_is_test(s) != test)
            continue;
        fprintf(f, "__label__%s", wn_label_names[s->label]);
        for (int32_t k = 0; k < s->n_lemma; k++)
            fprintf(f, " %s", d->words[d->tokens[s->lemma_start + k]]);
        for (int32_t k = 0; k < s->n_gloss; k++)
            fprintf(f, " %s", d->words[d->tokens[s->gloss_start + k]]);
        fputc('\n', f);
    }
    close_out(f, dir, name);
}

/* "label<TAB>gloss ids<TAB>bag rows": exactly the model's input. */
static void export_ids(const examples *e, const char *dir, const char *name)
{
    FILE *f = open_out(dir, name);
    for (int64_t j = 0; j < e->n; j++) {
        fprintf(f, "%lld\t", (long long)e->label[j]);
        for (int32_t k = 0; k < e->gloss_len[j]; k++)
            fprintf(f, "%s%lld", k ? " " : "",
                    (long long)e->gloss[e->gloss_start[j] + k]);
        fputc('\t', f);
        for (int32_t k = 0; k < e->bag_len[j]; k++)
            fprintf(f, "%s%lld", k ? " " : "",
                    (long long)e->bag[e->bag_start[j] + k]);
        fputc('\n', f);
    }
    close_out(f, dir, name);
}

static void export_split(const wn_data *d, const vocab *v,
                         const examples *train, const examples *test,
                         const wn_config *c)
{
    const char *dir = c->export_dir;
    export_text(d, dir, false);
    export_text(d, dir, true);
    export_ids(train, dir, "train.ids");
    export_ids(test, dir, "test.ids");
    FILE *f = open_out(dir, "meta.txt");
    fprintf(f, "vocab %lld\nbuckets %lld\nclasses %d\nmax_len %lld\n"
            "min_count %lld\ntrain %lld\ntest %lld\n", (long long)v->size,
            (long long)c->buckets, WN_NUM_LABELS, (long long)c->max_len,
            (long long)c->min_count, (long long)train->n, (long long)test->n);
    close_out(f, dir, "meta.txt");
    printf("wrote %s/{train,test}.txt, {train,test}.ids, meta.txt: %lld "
           "train, %lld test synsets, vocabulary %lld\n", dir,
           (long long)train->n, (long long)test->n, (long long)v->size);
}

/* ================================================================= model */

typedef struct wn_net {
    yk_dtype dt;
    int64_t V, rows, D, D2, H, K, C;
    yk_model *m;
    yk_param *shared;     /* [rows, D]: words, then bigram buckets        */
    yk_param *gloss_own;  /* [V, D] with --untie, else NULL               */
    yk_param *extra;      /* [rows, D2] bag-only columns, or NULL          */
    yk_param *conv_w, *conv_b; /* [H, K D], [H]                           */
    yk_param *out_w, *out_b;   /* [C, H + D + D2], [C]                     */
    yk_embedding_layer gloss_emb;
    yk_bag_layer bag;
} wn_net;

static yk_param *add_param(yk_model *m, const char *name, yk_dtype dt,
                           int ndim, int64_t d0, int64_t d1)
{
    yk_ctx *ctx = yk_model_ctx(m);
    return check_ptr(ctx, yk_model_add(m, name, dt, ndim, (int64_t[]){d0, d1}),
                     name);
}

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn.Linear initialises. */
static void init_linear(yk_ctx *ctx, yk_param *p, int64_t fan_in,
                        uint64_t seed)
{
    double b = 1.0 / sqrt((double)fan_in);
    check(ctx, yk_tensor_fill_uniform(yk_param_value(p), seed, -b, b),
          yk_param_name(p));
}

static void init_table(yk_ctx *ctx, yk_param *p, double std, uint64_t seed)
{
    check(ctx, yk_tensor_fill_normal(yk_param_value(p), seed, 0, std),
          yk_param_name(p));
}

static void add_tables(wn_net *n, const wn_config *c, yk_ctx *ctx)
{
    n->shared = add_param(n->m, "embedding", n->dt, 2, n->rows, n->D);
    init_table(ctx, n->shared, c->init_std, c->seed * 16 + 1);
    yk_param *gloss_table = n->shared;
    if (c->untie) {
        n->gloss_own = add_param(n->m, "gloss_embedding", n->dt, 2, n->V,
                                 n->D);
        init_table(ctx, n->gloss_own, c->init_std, c->seed * 16 + 2);
        gloss_table = n->gloss_own;
    }
    if (n->D2 > 0) {
        n->extra = add_param(n->m, "bag_extra", n->dt, 2, n->rows, n->D2);
        init_table(ctx, n->extra, c->init_std, c->seed * 16 + 3);
    }
    check(ctx, yk_embedding_layer_tied(&n->gloss_emb, gloss_table), "gloss");
    /* Padding reads as zeros and is never trained (the unknown word's row
     * is zeroed in make_net). */
    check(ctx, yk_embedding_layer_set_padding(&n->gloss_emb, PAD_ID),
          "gloss padding");
    n->gloss_emb.sparse = true;
    check(ctx, yk_bag_layer_tied(&n->bag, n->shared, n->extra, YK_BAG_MEAN),
          "bag");
    n->bag.opts.sparse = true;
}

static void add_dense(wn_net *n, const wn_config *c, yk_ctx *ctx)
{
    int64_t conv_in = n->K * n->D, feat = n->H + n->D + n->D2;
    n->conv_w = add_param(n->m, "conv_weight", n->dt, 2, n->H, conv_in);
    n->conv_b = add_param(n->m, "conv_bias", n->dt, 1, n->H, 0);
    n->out_w = add_param(n->m, "out_weight", n->dt, 2, n->C, feat);
    n->out_b = add_param(n->m, "out_bias", n->dt, 1, n->C, 0);
    init_linear(ctx, n->conv_w, conv_in, c->seed * 16 + 4);
    init_linear(ctx, n->conv_b, conv_in, c->seed * 16 + 5);
    init_linear(ctx, n->out_w, feat, c->seed * 16 + 6);
    init_linear(ctx, n->out_b, feat, c->seed * 16 + 7);
}

static void zero_row(yk_tensor *t, int64_t r)
{
    int64_t cols = yk_tensor_dim(t, 1);
    size_t size = yk_dtype_size(yk_tensor_dtype(t));
    memset((char *)yk_tensor_data(t) + (size_t)(r * cols) * size, 0,
           (size_t)cols * size);
}

static wn_net make_net(yk_ctx *ctx, const wn_config *c, int64_t V, int64_t C,
                       yk_dtype dt)
{
    wn_net n = {.dt = dt, .V = V, .rows = V + c->buckets, .D = c->dim,
                .D2 = c->extra_dim, .H = c->hidden, .K = c->kernel, .C = C};
    n.m = check_ptr(ctx, yk_model_new(ctx), "model");
    add_tables(&n, c, ctx);
    add_dense(&n, c, ctx);
    /* The unknown word's gloss row starts at zero: it gets no training
     * signal when min_count is 1, and zeros mean "nothing" to the conv. */
    zero_row(yk_param_value(n.gloss_emb.weight), UNK_ID);
    return n;
}

/* ================================================================ batches */

/* The tensors of one step: views over buffers sized for the largest
 * batch, made anew per step (yk_tensor_wrap borrows them). */
typedef struct batch {
    int64_t B, L;       /* examples, longest gloss (>= 1)               */
    int64_t *tokens;    /* [B, L + K - 1], padded both sides           */
    void *mask;         /* [B, L, 1]: 1/len on a gloss's positions     */
    int64_t *bag, *offsets, *labels;
    int64_t n_bag;
    int64_t whole;      /* the whole batch over all ranks (0: B)        */
} batch;

typedef struct batch_buffers {
    int64_t max_B, max_L, max_bag, K;
    yk_dtype dt;
    int64_t *tokens, *bag, *offsets, *labels;
    void *mask;
} batch_buffers;

static batch_buffers alloc_buffers(const examples *e, int64_t max_B,
                                   int64_t K, yk_dtype dt)
{
    batch_buffers b = {.max_B = max_B, .K = K, .dt = dt, .max_L = 1};
    int64_t max_bag = 0;
    for (int64_t j = 0; j < e->n; j++) {
        if (e->gloss_len[j] > b.max_L)
            b.max_L = e->gloss_len[j];
        if (e->bag_len[j] > max_bag)
            max_bag = e->bag_len[j];
    }
    b.max_bag = max_bag * max_B;
    b.tokens = xcalloc((size_t)(max_B * (b.max_L + K - 1)), sizeof(int64_t));
    b.mask = xcalloc((size_t)(max_B * b.max_L), yk_dtype_size(dt));
    b.bag = xcalloc((size_t)b.max_bag, sizeof(int64_t));
    b.offsets = xcalloc((size_t)max_B, sizeof(int64_t));
    b.labels = xcalloc((size_t)max_B, sizeof(int64_t));
    return b;
}

static void free_buffers(batch_buffers *b)
{
    free(b->tokens);
    free(b->mask);
    free(b->bag);
    free(b->offsets);
    free(b->labels);
}

static void set_mask(batch_buffers *bb, int64_t i, double v)
{
    if (bb->dt == YK_F32)
        ((float *)bb->mask)[i] = (float)v;
    else
        ((double *)bb->mask)[i] = v;
}

/* Fills the batch of examples idx[0..B) of e. */
static batch make_batch(batch_buffers *bb, const examples *e,
                        const int64_t *idx, int64_t B)
{
    batch b = {.B = B, .L = 1, .tokens = bb->tokens, .mask = bb->mask,
               .bag = bb->bag, .offsets = bb->offsets, .labels = bb->labels};
    for (int64_t i = 0; i < B; i++)
        if (e->gloss_len[idx[i]] > b.L)
            b.L = e->gloss_len[idx[i]];
    int64_t width = b.L + bb->K - 1, left = (bb->K - 1) / 2;
    memset(b.tokens, 0, (size_t)(B * width) * sizeof *b.tokens);
    for (int64_t i = 0; i < B; i++) {
        int64_t j = idx[i], len = e->gloss_len[j];
        memcpy(b.tokens + i * width + left, e->gloss + e->gloss_start[j],
               (size_t)len * sizeof *b.tokens);
        for (int64_t t = 0; t < b.L; t++)
            set_mask(bb, i * b.L + t, t < len ? 1.0 / (double)len : 0.0);
        b.offsets[i] = b.n_bag;
        memcpy(b.bag + b.n_bag, e->bag + e->bag_start[j],
               (size_t)e->bag_len[j] * sizeof *b.bag);
        b.n_bag += e->bag_len[j];
        b.labels[i] = e->label[j];
    }
    return b;
}

/* The tensors of a batch, borrowed by a graph until it ends. */
typedef struct batch_tensors {
    yk_tensor *tokens, *mask, *bag, *offsets, *labels;
} batch_tensors;

static batch_tensors wrap_batch(yk_ctx *ctx, const batch *b, int64_t K,
                                yk_dtype dt)
{
    batch_tensors t;
    t.tokens = yk_tensor_wrap(ctx, YK_I64, 2, (int64_t[]){b->B, b->L + K - 1},
                              b->tokens);
    t.mask = yk_tensor_wrap(ctx, dt, 3, (int64_t[]){b->B, b->L, 1}, b->mask);
    t.bag = yk_tensor_wrap(ctx, YK_I64, 1, (int64_t[]){b->n_bag}, b->bag);
    t.offsets = yk_tensor_wrap(ctx, YK_I64, 1, (int64_t[]){b->B}, b->offsets);
    t.labels = yk_tensor_wrap(ctx, YK_I64, 1, (int64_t[]){b->B}, b->labels);
    if (!t.tokens || !t.mask || !t.bag || !t.offsets || !t.labels)
        die("batch: %s", yk_last_error(ctx));
    return t;
}

static void free_batch_tensors(batch_tensors *t)
{
    yk_tensor_free(t->tokens);
    yk_tensor_free(t->mask);
    yk_tensor_free(t->bag);
    yk_tensor_free(t->offsets);
    yk_tensor_free(t->labels);
}

/* =============================================================== forward */

/*
 * The gloss encoder: Embedding, then a width-K convolution over positions
 * written as K shifted narrows of the padded sequence concatenated along
 * features (one gemm for all windows), relu, and the mean over each
 * gloss's own positions (mask holds 1/len there, 0 on padding).
 *   tokens [B, L + K - 1] -> [B, H]
 */
static yk_node *encode_gloss(yk_graph *g, const wn_net *n, yk_node *tokens,
                             yk_node *mask, int64_t L)
{
    yk_node *e = yk_embedding_layer_forward(g, &n->gloss_emb, tokens);
    yk_node *windows[64];
    for (int64_t k = 0; k < n->K; k++)
        windows[k] = yk_narrow(g, e, 1, k, L);
    yk_node *x = n->K == 1 ? windows[0] : yk_cat(g, (int)n->K, windows, 2);
    yk_node *h = yk_relu(g, yk_linear(g, x, yk_param_node(g, n->conv_w),
                                      yk_param_node(g, n->conv_b)));
    int dims[1] = {1};
    return yk_sum(g, yk_mul(g, h, mask), 1, dims, false);
}

/* The logits [B, C] of a batch. */
static yk_node *forward(yk_graph *g, const wn_net *n, const batch_tensors *t,
                        int64_t L)
{
    yk_node *gloss = encode_gloss(g, n, yk_const(g, t->tokens),
                                  yk_const(g, t->mask), L);
    yk_node *bag = yk_bag_layer_forward(g, &n->bag, yk_const(g, t->bag),
                                        yk_const(g, t->offsets), NULL);
    yk_node *parts[2] = {gloss, bag};
    yk_node *feat = yk_cat(g, 2, parts, 1);
    return yk_linear(g, feat, yk_param_node(g, n->out_w),
                     yk_param_node(g, n->out_b));
}

/* ========================================================== epoch order */

/* splitmix64: a small, seedable generator for shuffling. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void shuffle(int64_t *a, int64_t n, rng *r)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(r) % (uint64_t)(i + 1));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Batches of one pass: order[starts[b] .. + B) is batch b. */
typedef struct epoch_plan {
    int64_t n, B, n_batches;
    int64_t *order, *starts;
} epoch_plan;

/* Sorts a[0..n) by gloss length, stably (counting sort). */
static void sort_by_length(const examples *e, int64_t *a, int64_t n,
                           int64_t max_len, int64_t *tmp, int64_t *count)
{
    memset(count, 0, (size_t)(max_len + 2) * sizeof *count);
    for (int64_t i = 0; i < n; i++)
        count[e->gloss_len[a[i]] + 1]++;
    for (int64_t l = 0; l <= max_len; l++)
        count[l + 1] += count[l];
    for (int64_t i = 0; i < n; i++)
        tmp[count[e->gloss_len[a[i]]]++] = a[i];
    memcpy(a, tmp, (size_t)n * sizeof *a);
}

/*
 * The batches of an epoch. Shuffled: examples shuffled, then sorted by
 * gloss length within chunks of 64 batches (so a batch pads little), then
 * the batches shuffled. Not shuffled (evaluation): sorted by length.
 */
static epoch_plan plan_epoch(const examples *e, int64_t B, int64_t max_len,
                             rng *r)
{
    epoch_plan p = {.n = e->n, .B = B, .n_batches = (e->n + B - 1) / B};
    p.order = xcalloc((size_t)e->n, sizeof *p.order);
    p.starts = xcalloc((size_t)p.n_batches, sizeof *p.starts);
    for (int64_t i = 0; i < e->n; i++)
        p.order[i] = i;
    int64_t *tmp = xcalloc((size_t)e->n, sizeof *tmp);
    int64_t *count = xcalloc((size_t)max_len + 2, sizeof *count);
    int64_t chunk = r ? 64 * B : e->n;
    if (r)
        shuffle(p.order, e->n, r);
    for (int64_t s = 0; s < e->n; s += chunk)
        sort_by_length(e, p.order + s, e->n - s < chunk ? e->n - s : chunk,
                       max_len, tmp, count);
    for (int64_t b = 0; b < p.n_batches; b++)
        p.starts[b] = b * B;
    if (r)
        shuffle(p.starts, p.n_batches, r);
    free(tmp);
    free(count);
    return p;
}

static void free_plan(epoch_plan *p)
{
    free(p->order);
    free(p->starts);
}

static int64_t plan_batch_size(const epoch_plan *p, int64_t b)
{
    int64_t left = p->n - p->starts[b];
    return left < p->B ? left : p->B;
}

/* ============================================================= training */

enum { PHASE_BATCH, PHASE_FORWARD, PHASE_BACKWARD, PHASE_EXCHANGE,
       PHASE_SPARSE, PHASE_DENSE, PHASES };

static const char *const phase_names[PHASES] = {
    "batch", "forward", "backward", "exchange", "sparse_adam", "adam"};

typedef struct trainer {
    yk_ctx *ctx;
    const wn_config *c;
    wn_net *net;
    yk_optim *sparse; /* sparse_adam: the embedding tables */
    yk_optim *dense;  /* adam: convolution and output layer */
    int64_t step, total_steps;
    /* --profile: wall and CPU seconds per phase since the epoch began */
    double wall[PHASES], cpu[PHASES];
    double mark_wall, mark_cpu;
} trainer;

static yk_optim *new_adam(yk_ctx *ctx, yk_optim_kind kind, double lr)
{
    yk_optim_opts o = yk_optim_defaults(kind);
    o.lr = lr;
    return check_ptr(ctx, yk_optim_new(ctx, kind, &o), "optimizer");
}

static trainer make_trainer(yk_ctx *ctx, const wn_config *c, wn_net *n)
{
    trainer t = {.ctx = ctx, .c = c, .net = n};
    t.sparse = new_adam(ctx, YK_OPTIM_SPARSE_ADAM, c->lr);
    t.dense = new_adam(ctx, YK_OPTIM_ADAM, c->lr);
    check(ctx, yk_optim_add(t.sparse, n->shared), "optimizer");
    if (n->gloss_own)
        check(ctx, yk_optim_add(t.sparse, n->gloss_own), "optimizer");
    if (n->extra)
        check(ctx, yk_optim_add(t.sparse, n->extra), "optimizer");
    yk_param *dense[4] = {n->conv_w, n->conv_b, n->out_w, n->out_b};
    for (int i = 0; i < 4; i++)
        check(ctx, yk_optim_add(t.dense, dense[i]), "optimizer");
    return t;
}

/*
 * The embedding tables and their Adam moments are hundreds of MB read at
 * random rows: with 4 KiB pages nearly every row costs a TLB miss (a
 * two-level walk in a VM). Asking the kernel for transparent huge pages
 * on them (MADV_HUGEPAGE, and MADV_COLLAPSE for pages already touched)
 * saves that; where the kernel says no, nothing changes.
 */
static void prefer_huge_pages(void *p, size_t n)
{
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(huge - 1);
    if (b <= a)
        return;
#ifdef MADV_HUGEPAGE
    madvise((void *)a, b - a, MADV_HUGEPAGE);
#endif
#if defined(__linux__) && !defined(MADV_COLLAPSE)
#define MADV_COLLAPSE 25 /* Linux 6.1; glibc 2.36's headers lack it */
#endif
#ifdef MADV_COLLAPSE
    madvise((void *)a, b - a, MADV_COLLAPSE); /* EINVAL on older kernels */
#endif
}

static void tensor_huge_pages(yk_tensor *t)
{
    if (t)
        prefer_huge_pages(yk_tensor_data(t), yk_tensor_nbytes(t));
}

/* After the first step, when sparse_adam has made its state. */
static void tables_huge_pages(trainer *t)
{
    for (int i = 0; i < yk_optim_count(t->sparse); i++) {
        yk_param *p = yk_optim_param_at(t->sparse, i);
        tensor_huge_pages(yk_param_value(p));
        for (int k = 0; k < yk_optim_state_count(t->sparse); k++) {
            yk_tensor *st = NULL;
            yk_optim_state(t->sparse, p, yk_optim_state_name(t->sparse, k),
                           &st);
            tensor_huge_pages(st);
        }
    }
}

static void free_trainer(trainer *t)
{
    yk_optim_free(t->sparse);
    yk_optim_free(t->dense);
}

/* --profile: charges the time since the last mark to phase p. */
static void phase_end(trainer *t, int p)
{
    if (!t->c->profile)
        return;
    double w = now_seconds(), c = cpu_seconds();
    t->wall[p] += w - t->mark_wall;
    t->cpu[p] += c - t->mark_cpu;
    t->mark_wall = w;
    t->mark_cpu = c;
}

static void phase_start(trainer *t)
{
    if (t->c->profile) {
        t->mark_wall = now_seconds();
        t->mark_cpu = cpu_seconds();
    }
}

static void print_profile(trainer *t, int64_t steps)
{
    if (!t->c->profile || steps == 0)
        return;
    printf("profile, ms per step (wall / cpu):");
    for (int p = 0; p < PHASES; p++) {
        printf(" %s %.3f / %.3f%s", phase_names[p], 1e3 * t->wall[p] /
               (double)steps, 1e3 * t->cpu[p] / (double)steps,
               p + 1 < PHASES ? "," : "\n");
        t->wall[p] = t->cpu[p] = 0;
    }
}

/*
 * Forward and backward of this rank's slice b of a batch of `whole`
 * examples: the cross-entropy summed over the slice, times 1 / whole (the
 * backward's seed), so that the ranks' gradients add up to the gradient of
 * the whole batch's mean loss. Its value (this slice's share of the mean).
 */
static double slice_gradients(trainer *t, const batch *b, int64_t whole)
{
    yk_ctx *ctx = t->ctx;
    wn_net *n = t->net;
    batch_tensors bt = wrap_batch(ctx, b, n->K, n->dt);
    yk_tensor *seed = check_ptr(ctx, yk_tensor_full(ctx, n->dt, 0, NULL,
                                                    1.0 / (double)whole),
                                "loss scale");
    phase_end(t, PHASE_BATCH);
    yk_graph *g = check_ptr(ctx, yk_graph_begin(ctx), "graph");
    yk_node *logits = forward(g, n, &bt, b->L);
    yk_node *loss = yk_cross_entropy(g, logits, yk_const(g, bt.labels),
                                     YK_REDUCE_SUM);
    double value = loss && yk_value(loss)
                       ? yk_tensor_get(yk_value(loss), 0) / (double)whole
                       : NAN;
    phase_end(t, PHASE_FORWARD);
    check(ctx, loss ? yk_backward_seeded(g, 1, &loss,
                                         (const yk_tensor *const *)&seed)
                    : yk_graph_status(g), "step");
    yk_graph_end(g);
    yk_tensor_free(seed);
    free_batch_tensors(&bt);
    return value;
}

/* One step on a batch (this rank's slice of it): forward, backward, the
 * ranks' gradient sum, both optimizers. The whole batch's mean loss. The
 * batch's making is charged to PHASE_BATCH by the caller's mark. */
static double train_step(trainer *t, const batch *b)
{
    yk_ctx *ctx = t->ctx;
    wn_net *n = t->net;
    int64_t whole = b->whole ? b->whole : b->B;
    yk_model_zero_grad(n->m);
    /* A rank whose slice is empty (batch smaller than the ranks) still
     * takes part in the exchange, with no gradient. */
    double value = b->B > 0 ? slice_gradients(t, b, whole) : 0.0;
    phase_end(t, PHASE_BACKWARD);
    ranks_sync_grads(ctx, n->m);
    ranks_sum(ctx, &value, 1);
    phase_end(t, PHASE_EXCHANGE);
    double lr = t->c->cosine ? yk_lr_cosine(t->c->lr, t->step, t->total_steps,
                                            0.0)
                             : t->c->lr;
    check(ctx, yk_optim_set_lr(t->sparse, lr), "lr");
    check(ctx, yk_optim_set_lr(t->dense, lr), "lr");
    check(ctx, yk_optim_step(t->sparse), "sparse_adam step");
    phase_end(t, PHASE_SPARSE);
    check(ctx, yk_optim_step(t->dense), "adam step");
    phase_end(t, PHASE_DENSE);
    if (t->step == 0 && t->c->huge_pages) {
        tables_huge_pages(t); /* once, ~0.5 s: not a phase of the step */
        phase_start(t);
    }
    t->step++;
    return value;
}

/* ============================================================ evaluation */

typedef struct eval_result {
    double loss, accuracy;
    int64_t n;
} eval_result;

static int64_t argmax_row(const yk_tensor *t, int64_t row, int64_t C)
{
    int64_t best = 0;
    for (int64_t k = 1; k < C; k++)
        if (yk_tensor_get(t, row * C + k) > yk_tensor_get(t, row * C + best))
            best = k;
    return best;
}

/* Accuracy and mean loss over e, in batches of bb->max_B, no gradients.
 * Ranks take every size-th batch and sum their counts. */
static eval_result evaluate(yk_ctx *ctx, const wn_net *n, const examples *e,
                            batch_buffers *bb, const epoch_plan *p)
{
    eval_result r = {.n = e->n};
    double correct = 0;
    for (int64_t k = world.rank; k < p->n_batches; k += world.size) {
        int64_t B = plan_batch_size(p, k);
        batch b = make_batch(bb, e, p->order + p->starts[k], B);
        batch_tensors bt = wrap_batch(ctx, &b, n->K, n->dt);
        yk_graph *g = check_ptr(ctx, yk_graph_begin(ctx), "graph");
        yk_graph_set_grad_enabled(g, false);
        yk_node *logits = forward(g, n, &bt, b.L);
        yk_node *loss = yk_cross_entropy(g, logits, yk_const(g, bt.labels),
                                         YK_REDUCE_SUM);
        const yk_tensor *lv = loss ? yk_value(loss) : NULL;
        const yk_tensor *z = lv ? yk_value(logits) : NULL;
        check(ctx, z ? YK_OK : yk_graph_status(g), "evaluation");
        r.loss += yk_tensor_get(lv, 0);
        for (int64_t i = 0; i < B; i++)
            correct += argmax_row(z, i, n->C) == b.labels[i];
        yk_graph_end(g);
        free_batch_tensors(&bt);
    }
    double sums[2] = {r.loss, correct};
    ranks_sum(ctx, sums, 2);
    r.loss = sums[0] / (double)(e->n ? e->n : 1);
    r.accuracy = sums[1] / (double)(e->n ? e->n : 1);
    return r;
}

/* ============================================================== progress */

typedef struct progress {
    bool tty;          /* one updating line; else plain log lines  */
    double t0, last;   /* start of the epoch, last print           */
    int64_t steps;     /* steps of this epoch                      */
    int next_quarter;  /* plain logs: next quarter of the epoch    */
} progress;

static void format_duration(char *buf, size_t size, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

/* After step `done` of the epoch: the running loss, speed and time left
 * (this epoch and the epochs after it, at the current speed). */
static void progress_update(progress *p, int epoch, int epochs, int64_t done,
                            int64_t examples, double loss_sum)
{
    double now = now_seconds(), dt = now - p->t0;
    bool last = done == p->steps;
    int quarter = (int)(4 * done / (p->steps ? p->steps : 1));
    if (p->tty ? (now - p->last < 0.25 && !last)
               : (quarter < p->next_quarter || last))
        return;
    p->last = now;
    double rate = dt > 0 ? (double)examples / dt : 0;
    double left = dt / (double)done *
                  ((double)(p->steps - done) +
                   (double)p->steps * (epochs - epoch));
    char eta[32];
    format_duration(eta, sizeof eta, left);
    if (p->tty) {
        printf("\repoch %d/%d  step %lld/%lld  loss %.4f  %.0f examples/s  "
               "%s left\033[K", epoch, epochs, (long long)done,
               (long long)p->steps, loss_sum / (double)done, rate, eta);
    } else {
        printf("  epoch %d/%d step %lld/%lld: loss %.4f, %.0f examples/s, "
               "%s left\n", epoch, epochs, (long long)done,
               (long long)p->steps, loss_sum / (double)done, rate, eta);
        p->next_quarter = quarter + 1;
    }
    fflush(stdout);
}

/* One updating line on a terminal. Under MPI, plain lines: mpirun hands
 * the ranks a pseudo-terminal whatever its own output is. */
static bool stdout_is_terminal(void)
{
#ifdef WORDNET_MPI
    return false;
#else
    return isatty(STDOUT_FILENO);
#endif
}

static void progress_done(const progress *p)
{
    if (p->tty)
        printf("\r\033[K");
}

/* =================================================================== csv */

static FILE *open_csv(const char *path)
{
    if (!path)
        return NULL;
    FILE *f = fopen(path, "w");
    if (!f)
        die("%s: %s", path, strerror(errno));
    fprintf(f, "epoch,train_loss,test_loss,test_accuracy,examples_per_s,"
            "epoch_seconds,train_cpu_seconds,elapsed_seconds\n");
    return f;
}

static void close_csv(FILE *f, const char *path)
{
    if (f && (ferror(f) | fclose(f)))
        die("%s: write error: %s", path, strerror(errno));
}

/* ================================================================ memory */

static int64_t param_bytes(const yk_model *m)
{
    int64_t bytes = 0;
    for (int i = 0; i < yk_model_count(m); i++)
        bytes += (int64_t)yk_tensor_nbytes(yk_param_value(yk_model_at(m, i)));
    return bytes;
}

static double peak_rss_mb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / 1024.0; /* Linux: KiB */
}

static void print_model(const wn_net *n, const wn_config *c)
{
    int64_t count = 0;
    for (int i = 0; i < yk_model_count(n->m); i++)
        count += yk_tensor_numel(yk_param_value(yk_model_at(n->m, i)));
    double mb = (double)param_bytes(n->m) / 1e6;
    printf("model: %s, vocabulary %lld + %lld bigram buckets, dim %lld + "
           "%lld extra, conv %lld x %lld; %.2f M parameters (%.1f MB), Adam "
           "state %.1f MB\n", c->untie ? "untied" : "tied", (long long)n->V,
           (long long)c->buckets, (long long)n->D, (long long)n->D2,
           (long long)n->K, (long long)n->H, (double)count / 1e6, mb, 2 * mb);
}

/* ========================================================== checkpoints */

/* The options a checkpoint's shapes depend on, as JSON metadata. */
static void config_json(char *buf, size_t size, const wn_config *c,
                        int64_t V)
{
    snprintf(buf, size, "{\"dim\": %lld, \"extra_dim\": %lld, \"hidden\": "
             "%lld, \"kernel\": %lld, \"buckets\": %lld, \"max_len\": %lld, "
             "\"min_count\": %lld, \"untie\": %d, \"vocab\": %lld, "
             "\"f64\": %d}",
             (long long)c->dim, (long long)c->extra_dim, (long long)c->hidden,
             (long long)c->kernel, (long long)c->buckets,
             (long long)c->max_len, (long long)c->min_count, c->untie ? 1 : 0,
             (long long)V, c->f64 ? 1 : 0);
}

/* The integer of "key" in a config_json string; dies when absent. */
static int64_t config_int(const char *json, const char *key, const char *path)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    const char *p = strstr(json, pattern);
    char *end;
    long long v = p ? strtoll(p + strlen(pattern), &end, 10) : 0;
    if (!p || end == p + strlen(pattern))
        die("%s: the checkpoint's config has no integer \"%s\" (was it "
            "saved by wordnet?)", path, key);
    return v;
}

/* Takes the shape options of c from the checkpoint at path; the vocabulary
 * size it was trained with comes back for a check after the data load. */
static int64_t config_from_checkpoint(yk_ctx *ctx, wn_config *c,
                                      const char *path)
{
    yk_safetensors *f = check_ptr(ctx, yk_safetensors_open(ctx, path),
                                  "--eval");
    const char *json = yk_safetensors_metadata(f, "config");
    if (!json)
        die("%s: no \"config\" metadata (was it saved by wordnet?)", path);
    c->dim = config_int(json, "dim", path);
    c->extra_dim = config_int(json, "extra_dim", path);
    c->hidden = config_int(json, "hidden", path);
    c->kernel = config_int(json, "kernel", path);
    c->buckets = config_int(json, "buckets", path);
    c->max_len = config_int(json, "max_len", path);
    c->min_count = config_int(json, "min_count", path);
    c->untie = config_int(json, "untie", path) != 0;
    /* Older checkpoints have no "f64": they are f32. */
    c->f64 = strstr(json, "\"f64\": ") && config_int(json, "f64", path);
    int64_t V = config_int(json, "vocab", path);
    yk_safetensors_close(f);
    return V;
}

static void save_model(yk_ctx *ctx, const wn_net *n, const wn_config *c,
                       int64_t steps)
{
    char json[512];
    config_json(json, sizeof json, c, n->V);
    yk_save_opts o = {.step = steps, .config = json};
    check(ctx, yk_model_save(n->m, c->save_path, &o), "--save");
    printf("saved %s (%.1f MB)\n", c->save_path,
           (double)param_bytes(n->m) / 1e6);
}

/* ========================================================= the program */

typedef struct dataset {
    wn_data data;
    vocab v;
    examples train, test;
} dataset;

static dataset load_dataset(const wn_config *c)
{
    dataset s;
    double t0 = now_seconds();
    wn_init(&s.data);
    if (!wn_load(&s.data, c->data_dir))
        die("%s", s.data.error);
    s.v = build_vocab(&s.data, c->min_count);
    s.train = build_examples(&s.data, &s.v, c, false);
    s.test = build_examples(&s.data, &s.v, c, true);
    printf("data: %lld synsets from %s (%lld train, %lld test), vocabulary "
           "%lld, %.1f s\n", (long long)s.data.n_synsets, c->data_dir,
           (long long)s.train.n, (long long)s.test.n, (long long)s.v.size,
           now_seconds() - t0);
    return s;
}

static void free_dataset(dataset *s)
{
    free_examples(&s->train);
    free_examples(&s->test);
    free_vocab(&s->v);
    wn_free(&s->data);
}

/* Evaluation: the test split, batches of this many examples. */
#define EVAL_BATCH 512

typedef struct epoch_stats {
    double loss, seconds, cpu, rate;
    exchange per_step; /* this rank's MPI traffic per training step */
} epoch_stats;

static epoch_stats train_epoch(trainer *t, const dataset *s,
                               batch_buffers *bb, rng *r, int epoch)
{
    const wn_config *c = t->c;
    epoch_plan p = plan_epoch(&s->train, c->batch, c->max_len, r);
    int64_t steps = p.n_batches;
    if (c->max_steps && c->max_steps < steps)
        steps = c->max_steps;
    progress pr = {.tty = stdout_is_terminal(), .t0 = now_seconds(),
                   .steps = steps, .next_quarter = 1};
    double loss_sum = 0, cpu0 = cpu_seconds();
    int64_t examples = 0;
    ranks_exchange_since_last();
    phase_start(t);
    for (int64_t k = 0; k < steps; k++) {
        int64_t B = plan_batch_size(&p, k), first, stop;
        ranks_split(B, &first, &stop);
        batch b = make_batch(bb, &s->train, p.order + p.starts[k] + first,
                             stop - first);
        b.whole = B;
        loss_sum += train_step(t, &b);
        examples += B;
        progress_update(&pr, epoch, c->epochs, k + 1, examples, loss_sum);
        phase_end(t, PHASE_BATCH);
    }
    progress_done(&pr);
    print_profile(t, steps);
    free_plan(&p);
    epoch_stats st = {.loss = loss_sum / (double)(steps ? steps : 1),
                      .seconds = now_seconds() - pr.t0,
                      .cpu = cpu_seconds() - cpu0};
    st.rate = st.seconds > 0 ? (double)examples / st.seconds : 0;
    exchange x = ranks_exchange_since_last();
    double per = (double)(steps ? steps : 1);
    st.per_step = (exchange){x.sent / per, x.received / per,
                             x.collectives / per};
    return st;
}

static void train(yk_ctx *ctx, const wn_config *c, wn_net *n,
                  const dataset *s)
{
    trainer t = make_trainer(ctx, c, n);
    int64_t per_epoch = (s->train.n + c->batch - 1) / c->batch;
    if (c->max_steps && c->max_steps < per_epoch)
        per_epoch = c->max_steps;
    t.total_steps = per_epoch * c->epochs;
    batch_buffers train_bb = alloc_buffers(&s->train, c->batch, n->K, n->dt);
    batch_buffers test_bb = alloc_buffers(&s->test, EVAL_BATCH, n->K, n->dt);
    epoch_plan test_plan = plan_epoch(&s->test, EVAL_BATCH, c->max_len, NULL);
    FILE *csv = world.rank == 0 ? open_csv(c->csv_path) : NULL;
    rng r = {c->seed};
    double t0 = now_seconds();
    for (int e = 1; e <= c->epochs; e++) {
        epoch_stats st = train_epoch(&t, s, &train_bb, &r, e);
        double te = now_seconds();
        eval_result ev = evaluate(ctx, n, &s->test, &test_bb, &test_plan);
        double eval_s = now_seconds() - te;
        printf("epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy "
               "%.4f, %.0f examples/s (%.1f s train, cpu %.1f s; %.1f s "
               "eval; %.1f s total)\n", e, c->epochs, st.loss, ev.loss,
               ev.accuracy, st.rate, st.seconds, st.cpu, eval_s,
               now_seconds() - t0);
        if (world.size > 1)
            printf("  %d ranks, per step rank 0 sent %.1f KB, received %.1f "
                   "KB in %.1f collectives\n", world.size,
                   st.per_step.sent / 1e3, st.per_step.received / 1e3,
                   st.per_step.collectives);
        fflush(stdout);
        if (csv) {
            fprintf(csv, "%d,%.12g,%.12g,%.6f,%.1f,%.3f,%.3f,%.3f\n", e,
                    st.loss, ev.loss, ev.accuracy, st.rate,
                    st.seconds + eval_s, st.cpu, now_seconds() - t0);
            fflush(csv);
        }
    }
    close_csv(csv, c->csv_path);
    if (c->save_path && world.rank == 0)
        save_model(ctx, n, c, t.step);
    free_plan(&test_plan);
    free_buffers(&train_bb);
    free_buffers(&test_bb);
    free_trainer(&t);
}

static void eval_checkpoint(yk_ctx *ctx, const wn_config *c, wn_net *n,
                            const dataset *s)
{
    yk_load_info info;
    check(ctx, yk_model_load(n->m, c->eval_path, NULL, &info), "--eval");
    batch_buffers bb = alloc_buffers(&s->test, EVAL_BATCH, n->K, n->dt);
    epoch_plan p = plan_epoch(&s->test, EVAL_BATCH, c->max_len, NULL);
    double t0 = now_seconds();
    eval_result ev = evaluate(ctx, n, &s->test, &bb, &p);
    printf("%s (step %lld): test loss %.4f, test accuracy %.4f on %lld "
           "synsets, %.1f s\n", c->eval_path, (long long)info.step, ev.loss,
           ev.accuracy, (long long)ev.n, now_seconds() - t0);
    yk_load_info_clear(&info);
    free_plan(&p);
    free_buffers(&bb);
}

int wordnet_main(int argc, char **argv);

int wordnet_main(int argc, char **argv)
{
    ranks_init(&argc, &argv);
    wn_config c = parse_args(argc, argv);
    yk_ctx *ctx = check_ptr(NULL, yk_ctx_new(), "context");
    ranks_connect(ctx);
    check(ctx, yk_set_threads(ctx, c.threads), "--threads");
    int64_t saved_V = c.eval_path ? config_from_checkpoint(ctx, &c,
                                                           c.eval_path)
                                  : 0;
    dataset s = load_dataset(&c);
    if (c.export_dir) {
        if (world.rank == 0)
            export_split(&s.data, &s.v, &s.train, &s.test, &c);
    } else {
        if (c.eval_path && saved_V != s.v.size)
            die("%s: trained with a vocabulary of %lld words, but %s gives "
                "%lld (another WordNet, or another --min-count?)",
                c.eval_path, (long long)saved_V, c.data_dir,
                (long long)s.v.size);
        wn_net n = make_net(ctx, &c, s.v.size, WN_NUM_LABELS,
                            c.f64 ? YK_F64 : YK_F32);
        print_model(&n, &c);
        if (world.size > 1)
            printf("data parallel: %d MPI ranks of %d threads, each a slice "
                   "of every batch of %lld\n", world.size, c.threads,
                   (long long)c.batch);
        ranks_broadcast(ctx, n.m);
        if (c.eval_path)
            eval_checkpoint(ctx, &c, &n, &s);
        else
            train(ctx, &c, &n, &s);
        printf("peak memory (RSS): %.1f MB\n", peak_rss_mb());
        yk_model_free(n.m);
    }
    free_dataset(&s);
    ranks_end();
    yk_ctx_free(ctx);
    return 0;
}

#ifndef WORDNET_NO_MAIN
int main(int argc, char **argv)
{
    return wordnet_main(argc, argv);
}
#endif
