/* Runs models/seed_examples and asserts what it prints: the three shapes
 * PyTorch prints for the seed's snippets, and the evidence for each of the
 * seed's claims. (The numbers of the tie itself are checked against
 * PyTorch by tests/cases/seed_*.json in the cases test.) */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>

static char *run(const char *args)
{
    const char *exe = getenv("SEED_EXAMPLES");
    cr_assert(exe != NULL, "SEED_EXAMPLES is not set (meson sets it)");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", exe, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t n;
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    out[len] = '\0';
    int rc = pclose(p);
    cr_assert_eq(rc, 0, "%s exited with %d:\n%s", cmd, rc, out);
    return out;
}

static void expect_line(const char *out, const char *line)
{
    cr_assert(strstr(out, line) != NULL, "missing \"%s\" in:\n%s", line, out);
}

Test(models, seed_snippets_print_pytorchs_shapes)
{
    char *out = run("");
    expect_line(out, "Embedding output shape: [5, 10, 128]\n");
    expect_line(out, "EmbeddingBag output shape: [3, 128]\n");
    expect_line(out, "Extended EmbeddingBag output shape: [3, 144]\n");
    free(out);
}

Test(models, seed_claims_are_shown)
{
    char *out = run("all --seed 3");
    /* 1. one parameter, one storage, one optimizer state per parameter */
    expect_line(out, "embedding_bag_layer.weight: the same parameter");
    expect_line(out, "optimizer states: 2 (shared_embedding_matrix, "
                     "separate_bag_embedding_matrix)");
    expect_line(out, "largest change of a shared weight: 0.1000 (lr 0.1");
    /* 2. the tie's gradient is the sum of the uses' (f32 rounding only) */
    const char *k = strstr(out, "(grad(Embedding) + grad(EmbeddingBag))| = ");
    cr_assert(k != NULL, "%s", out);
    double diff = strtod(k + strlen("(grad(Embedding) + grad(EmbeddingBag))| = "),
                         NULL);
    cr_assert(diff < 1e-7, "sum of uses differs by %g", diff);
    /* 3. both parts of the extended bag train; the Embedding is untouched */
    expect_line(out, "Embedding output after changing every bag-only weight: "
                     "unchanged (bit for bit)");
    cr_assert(strstr(out, "|grad of separate_bag_embedding_matrix| = 0.000000") == NULL);
    /* 4. memory: no [1000, 144] copy, the graph stays far below it */
    k = strstr(out, "this step's whole graph used ");
    cr_assert(k != NULL);
    long bytes = strtol(k + strlen("this step's whole graph used "), NULL, 10);
    cr_assert(bytes > 0 && bytes < 1000 * 144 * 4, "graph used %ld bytes", bytes);
    free(out);
}

Test(models, several_layers_train_and_gradcheck)
{
    char *out = run("several");
    expect_line(out, "yk_gradcheck of all four layers over one matrix: passed");
    double first = 0, last = 0;
    const char *k = out;
    while ((k = strstr(k, ": loss ")) != NULL) {
        last = strtod(k + 7, NULL);
        if (first == 0)
            first = last;
        k += 7;
    }
    cr_assert(last < first, "loss went from %g to %g", first, last);
    free(out);
}

Test(models, bad_option_is_an_error)
{
    const char *exe = getenv("SEED_EXAMPLES");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --bogus >/dev/null 2>&1", exe);
    cr_assert_neq(system(cmd), 0);
}
