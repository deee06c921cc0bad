/*
 * test_wordnet.c -- the WordNet loader and the model of models/wordnet.c.
 *
 * The program's functions are reached by including its source with
 * WORDNET_NO_MAIN (they are static). The fixture tests/data/wordnet/ is a
 * slice of Debian's wordnet-base 3.0 files, spread over each file (350
 * synsets, 41 labels, 38 in the test split), written with
 *
 *   for spec in "noun 547 150" "verb 172 80" "adj 227 80" "adv 90 40"; do
 *     set -- $spec
 *     (head -3 /usr/share/wordnet/data.$1
 *      grep -v '^  ' /usr/share/wordnet/data.$1 | awk -v k=$2 'NR % k == 1' |
 *      head -$3) > tests/data/wordnet/data.$1
 *   done
 *
 * so that CI needs neither the full data set nor the wordnet-base package.
 * Expected numbers are worked by hand from the lines quoted in comments,
 * come from published FNV-1a test vectors, or from finite differences
 * (yk_gradcheck).
 */
#define WORDNET_NO_MAIN
#include "../models/wordnet.c"

#include <criterion/criterion.h>
#include <ftw.h>
#include <sys/wait.h>

#include "check.h"

#define FIXTURE "tests/data/wordnet"

/* ------------------------------------------------------------- helpers */

/* Temporary folders of this test process, removed when it exits. */
static char temp_dirs[32][32];
static int n_temp_dirs;

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_temp_dirs(void)
{
    for (int i = 0; i < n_temp_dirs; i++)
        nftw(temp_dirs[i], remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary folder. */
static char *temp_dir(void)
{
    cr_assert(n_temp_dirs < 32, "too many temporary folders");
    char *dir = temp_dirs[n_temp_dirs];
    strcpy(dir, "/tmp/test_wordnet.XXXXXX");
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    if (n_temp_dirs++ == 0)
        atexit(remove_temp_dirs);
    return dir;
}

static void write_file(const char *dir, const char *name, const char *text,
                       size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    write_file(dir, name, text, strlen(text));
}

/* Loads text as one data file; returns whether it loaded, the error in d. */
static bool load_text(wn_data *d, const char *text, char *path, size_t size)
{
    char *dir = temp_dir();
    write_text(dir, "data.noun", text);
    snprintf(path, size, "%s/data.noun", dir);
    wn_init(d);
    return wn_load_file(d, path);
}

/* The error of loading text as a data file must name the file, the line
 * and `what`. */
static void expect_line_error(const char *text, int line, const char *what)
{
    wn_data d;
    char path[256], where[300];
    cr_assert(!load_text(&d, text, path, sizeof path), "loaded: %s", text);
    snprintf(where, sizeof where, "%s:%d: ", path, line);
    cr_assert(strncmp(d.error, where, strlen(where)) == 0,
              "error \"%s\" does not start with \"%s\"", d.error, where);
    cr_assert(strstr(d.error, what) != NULL,
              "error \"%s\" does not mention \"%s\"", d.error, what);
    wn_free(&d);
}

/* The token strings of a synset's lemma (part 0) or gloss (part 1),
 * space-separated, into buf. */
static const char *tokens_text(const wn_data *d, const wn_synset *s, int part,
                               char *buf, size_t size)
{
    int64_t start = part ? s->gloss_start : s->lemma_start;
    int32_t n = part ? s->n_gloss : s->n_lemma;
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t k = 0; k < n && used < size; k++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", k ? " " : "",
                                 d->words[d->tokens[start + k]]);
    return buf;
}

/* Lines of a fixture file that are synsets (not license lines), counted
 * independently of the loader. */
static int64_t count_synset_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL, "%s: %s", path, strerror(errno));
    char buf[1 << 16];
    int64_t n = 0;
    while (fgets(buf, sizeof buf, f))
        n += !(buf[0] == ' ' && buf[1] == ' ');
    fclose(f);
    return n;
}

/* ---------------------------------------------------------- tokenizer */

Test(wordnet_tokens, runs_of_letters_and_digits_lowercased)
{
    /* Hand-worked: underscores, hyphens, quotes and spaces separate; the
     * 's-style suffix stays on its word; a quote without letters after it
     * (`to') ends the token. */
    const char *text = "Earth's well-known `to' O'Clock 3D_models  x";
    const char *want[] = {"earth's", "well", "known", "to", "o'clock", "3d",
                          "models", "x"};
    size_t pos = 0, len = strlen(text);
    char tok[64];
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        cr_assert(wn_next_token(text, len, &pos, tok, sizeof tok) > 0);
        cr_assert_str_eq(tok, want[i]);
    }
    cr_assert_eq(wn_next_token(text, len, &pos, tok, sizeof tok), 0);
}

Test(wordnet_tokens, long_token_is_cut_to_the_buffer)
{
    size_t pos = 0;
    char tok[4];
    cr_assert_eq(wn_next_token("abcdefg", 7, &pos, tok, sizeof tok), 7);
    cr_assert_str_eq(tok, "abc");
    cr_assert_eq(pos, 7);
}

Test(wordnet_tokens, fasttext_hash_is_fnv1a_32)
{
    /* Published FNV-1a 32-bit test vectors. */
    cr_assert_eq(fasttext_hash(""), 0x811c9dc5u);
    cr_assert_eq(fasttext_hash("a"), 0xe40c292cu);
    cr_assert_eq(fasttext_hash("foobar"), 0xbf9cf968u);
}

/* ------------------------------------------------------------- loader */

Test(wordnet_loader, loads_every_synset_of_the_fixture)
{
    wn_data d;
    wn_init(&d);
    cr_assert(wn_load(&d, FIXTURE), "%s", d.error);
    int64_t want = 0;
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, FIXTURE "/%s", wn_file_names[i]);
        want += count_synset_lines(path);
    }
    cr_assert_eq(d.n_synsets, want, "%lld synsets, want %lld",
                 (long long)d.n_synsets, (long long)want);
    cr_assert_str_eq(d.error, "");
    wn_free(&d);
}

Test(wordnet_loader, first_noun_synset_by_hand)
{
    /* 00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ ... | that which
     * is perceived or known or inferred to have its own distinct existence
     * (living or nonliving) */
    wn_data d;
    wn_init(&d);
    cr_assert(wn_load(&d, FIXTURE), "%s", d.error);
    const wn_synset *s = &d.synsets[0];
    char buf[512];
    cr_assert_eq(s->offset, 1740);
    cr_assert_eq(s->label, 3);
    cr_assert_str_eq(wn_label_names[s->label], "noun.Tops");
    cr_assert_eq(s->pos, 'n');
    cr_assert_str_eq(tokens_text(&d, s, 0, buf, sizeof buf), "entity");
    cr_assert_str_eq(tokens_text(&d, s, 1, buf, sizeof buf),
                     "that which is perceived or known or inferred to have "
                     "its own distinct existence living or nonliving");
    cr_assert(wn_is_test(s)); /* 1740 is divisible by 10 */
    wn_free(&d);
}

Test(wordnet_loader, member_words_split_and_markers_dropped)
{
    /* Two member words: "Elder_Statesman" (an underscore) and "big(a)" (an
     * adjective marker); a verb frame between the pointers and the gloss. */
    wn_data d;
    char path[256], buf[256];
    cr_assert(load_text(&d, "00000011 18 n 02 Elder_Statesman 0 big(a) 1 "
                        "001 @ 00001740 n 0000 01 + 02 00 | old; \"wise\"\n",
                        path, sizeof path), "%s", d.error);
    cr_assert_eq(d.n_synsets, 1);
    cr_assert_str_eq(tokens_text(&d, &d.synsets[0], 0, buf, sizeof buf),
                     "elder statesman big");
    cr_assert_str_eq(tokens_text(&d, &d.synsets[0], 1, buf, sizeof buf),
                     "old wise");
    wn_free(&d);
}

Test(wordnet_loader, split_by_offset)
{
    /* Offsets 10 and 20 are test synsets, 11 is not. */
    wn_data d;
    char path[256];
    cr_assert(load_text(&d,
                        "00000010 03 n 01 a 0 000 | x\n"
                        "00000011 03 n 01 b 0 000 | y\n"
                        "00000020 03 n 01 c 0 000 | z\n",
                        path, sizeof path), "%s", d.error);
    cr_assert_eq(d.n_synsets, 3);
    cr_assert(wn_is_test(&d.synsets[0]));
    cr_assert(!wn_is_test(&d.synsets[1]));
    cr_assert(wn_is_test(&d.synsets[2]));
    wn_free(&d);
}

Test(wordnet_loader, license_and_blank_lines_are_skipped)
{
    wn_data d;
    char path[256];
    cr_assert(load_text(&d, "  1 license text 00000010 03 n\n\n"
                        "00000011 03 n 01 b 0 000 | y\r\n", path,
                        sizeof path), "%s", d.error);
    cr_assert_eq(d.n_synsets, 1);
    cr_assert_eq(d.synsets[0].offset, 11);
    wn_free(&d);
}

/* ------------------------------------------------------- loader errors */

Test(wordnet_loader_errors, missing_file_names_the_path)
{
    wn_data d;
    wn_init(&d);
    cr_assert(!wn_load(&d, "/nonexistent/wordnet"));
    cr_assert_str_eq(d.error, "/nonexistent/wordnet/data.noun: No such file "
                     "or directory");
    wn_free(&d);
}

Test(wordnet_loader_errors, missing_second_file_names_it)
{
    /* data.noun is there, data.verb is not. */
    char *dir = temp_dir();
    write_text(dir, "data.noun", "00000011 03 n 01 b 0 000 | y\n");
    wn_data d;
    wn_init(&d);
    cr_assert(!wn_load(&d, dir));
    cr_assert(strstr(d.error, "/data.verb: No such file or directory"),
              "%s", d.error);
    wn_free(&d);
}

Test(wordnet_loader_errors, malformed_lines_name_file_line_and_field)
{
    const char *good = "00000011 03 n 01 b 0 000 | y\n";
    char text[512];
    /* Line 2 of each: a good synset line first. */
#define BAD(line, what)                                                     \
    do {                                                                    \
        snprintf(text, sizeof text, "%s%s", good, line);                    \
        expect_line_error(text, 2, what);                                   \
    } while (0)
    BAD("0000x011 03 n 01 b 0 000 | y\n",
        "synset offset \"0000x011\" is not a decimal number");
    BAD("00000011 99 n 01 b 0 000 | y\n",
        "lexicographer file number 99 is not in 0..44");
    BAD("00000011 3 n 01 b 0 000 | y\n",
        "lexicographer file number \"3\" is not a two-digit decimal number");
    BAD("00000011 03 q 01 b 0 000 | y\n",
        "synset type \"q\" is not one of n, v, a, s, r");
    BAD("00000011 03 n zz b 0 000 | y\n",
        "word count \"zz\" is not a two-digit hexadecimal number");
    BAD("00000011 03 n 00 000 | y\n", "word count is 0");
    BAD("00000011 03 n 03 a 0 b 0\n", "the line ends after 2 of 3 member "
        "words");
    BAD("00000011 03 n 01 b 0 002 @ 00000010 n 0000 | y\n",
        "the line ends after 1 of 2 pointers");
    BAD("00000011 03 n 01 b 0 000 y\n", "no gloss: the '|' separator is "
        "missing");
    BAD("00000011\n", "the line ends before the lexicographer file number");
#undef BAD
}

Test(wordnet_loader_errors, nul_byte_is_malformed)
{
    const char text[] = "00000011 03 n 01 b 0 000 | y\n00000012 03 n 01 b "
                        "0 000 | \0y\n";
    char *dir = temp_dir();
    write_file(dir, "data.noun", text, sizeof text - 1);
    char path[256], where[300];
    snprintf(path, sizeof path, "%s/data.noun", dir);
    snprintf(where, sizeof where, "%s:2: the line contains a NUL byte", path);
    wn_data d;
    wn_init(&d);
    cr_assert(!wn_load_file(&d, path));
    cr_assert_str_eq(d.error, where);
    wn_free(&d);
}

Test(wordnet_loader_errors, file_without_synsets_is_refused)
{
    wn_data d;
    char path[256];
    cr_assert(!load_text(&d, "  1 only a license line\n", path, sizeof path));
    cr_assert(strstr(d.error, "no synset lines"), "%s", d.error);
    cr_assert(strstr(d.error, path), "%s", d.error);
    wn_free(&d);
}

/* ------------------------------------------------- vocabulary, examples */

/* Three synsets: train "dog barks", train "cat", test "dog meows". */
static void load_three(wn_data *d)
{
    char path[256];
    cr_assert(load_text(d,
                        "00000011 05 n 01 dog 0 000 | dog barks\n"
                        "00000012 05 n 01 cat 0 000 | cat\n"
                        "00000020 05 n 01 dog 0 000 | meows\n",
                        path, sizeof path), "%s", d->error);
}

Test(wordnet_examples, vocabulary_is_the_training_words_in_order)
{
    wn_data d;
    load_three(&d);
    vocab v = build_vocab(&d, 1);
    /* pad, unknown, dog, barks, cat: "meows" is only in the test split. */
    cr_assert_eq(v.size, 5);
    cr_assert_eq(v.of_word[wn_word_id(&d, "dog")], 2);
    cr_assert_eq(v.of_word[wn_word_id(&d, "barks")], 3);
    cr_assert_eq(v.of_word[wn_word_id(&d, "cat")], 4);
    cr_assert_eq(v.of_word[wn_word_id(&d, "meows")], UNK_ID);
    /* min_count 2: "dog" and "cat" (each a member word and a gloss word
     * of one training synset); "barks" occurs once. */
    vocab v2 = build_vocab(&d, 2);
    cr_assert_eq(v2.size, 4);
    cr_assert_eq(v2.of_word[wn_word_id(&d, "dog")], 2);
    cr_assert_eq(v2.of_word[wn_word_id(&d, "barks")], UNK_ID);
    cr_assert_eq(v2.of_word[wn_word_id(&d, "cat")], 3);
    free_vocab(&v);
    free_vocab(&v2);
    wn_free(&d);
}

Test(wordnet_examples, bag_is_member_words_then_bigram_buckets)
{
    wn_data d;
    load_three(&d);
    vocab v = build_vocab(&d, 1);
    wn_config c = default_config();
    c.buckets = 7;
    examples tr = build_examples(&d, &v, &c, false);
    examples te = build_examples(&d, &v, &c, true);
    cr_assert_eq(tr.n, 2);
    cr_assert_eq(te.n, 1);
    /* Synset 1, text "dog dog barks": member "dog" (id 2), then the
     * buckets of (dog, dog) and (dog, barks), after the V = 5 word rows.
     * h("dog") = FNV-1a; the bucket formula is fastText's. */
    uint32_t hd = fasttext_hash("dog"), hb = fasttext_hash("barks");
    uint64_t dd = (uint64_t)(int64_t)(int32_t)hd * 116049371u +
                  (uint64_t)(int64_t)(int32_t)hd;
    uint64_t db = (uint64_t)(int64_t)(int32_t)hd * 116049371u +
                  (uint64_t)(int64_t)(int32_t)hb;
    cr_assert_eq(tr.bag_len[0], 3);
    cr_assert_eq(tr.bag[0], 2);
    cr_assert_eq(tr.bag[1], 5 + (int64_t)(dd % 7));
    cr_assert_eq(tr.bag[2], 5 + (int64_t)(db % 7));
    cr_assert_eq(tr.gloss_len[0], 2);
    cr_assert_eq(tr.gloss[tr.gloss_start[0]], 2);
    cr_assert_eq(tr.gloss[tr.gloss_start[0] + 1], 3);
    cr_assert_eq(tr.label[0], 5);
    /* The test synset's gloss "meows" is unknown; its member word "dog"
     * is known; one bigram (dog, meows). */
    cr_assert_eq(te.gloss[te.gloss_start[0]], UNK_ID);
    cr_assert_eq(te.bag_len[0], 2);
    cr_assert_eq(te.bag[0], 2);
    free_examples(&tr);
    free_examples(&te);
    free_vocab(&v);
    wn_free(&d);
}

Test(wordnet_examples, batch_pads_both_sides_and_masks_by_length)
{
    /* Two examples, glosses of 2 and 1 tokens, K = 3: width L + K - 1 = 4,
     * one padding token on the left; the mask holds 1/len. */
    wn_data d;
    load_three(&d);
    vocab v = build_vocab(&d, 1);
    wn_config c = default_config();
    c.buckets = 0;
    examples tr = build_examples(&d, &v, &c, false);
    batch_buffers bb = alloc_buffers(&tr, 2, 3, YK_F64);
    int64_t idx[2] = {0, 1};
    batch b = make_batch(&bb, &tr, idx, 2);
    cr_assert_eq(b.L, 2);
    int64_t want_tokens[8] = {0, 2, 3, 0, /* "dog barks" */
                              0, 4, 0, 0}; /* "cat" */
    for (int i = 0; i < 8; i++)
        cr_assert_eq(b.tokens[i], want_tokens[i], "tokens[%d]", i);
    double want_mask[4] = {0.5, 0.5, 1, 0};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(((double *)b.mask)[i], want_mask[i], "mask[%d]", i);
    /* Bags without bigrams: the member words dog (2) and cat (4). */
    cr_assert_eq(b.n_bag, 2);
    cr_assert_eq(b.bag[0], 2);
    cr_assert_eq(b.bag[1], 4);
    cr_assert_eq(b.offsets[1], 1);
    free_buffers(&bb);
    free_examples(&tr);
    free_vocab(&v);
    wn_free(&d);
}

/* ------------------------------------------------ gradients (f64 model) */

/* A small f64 model and one batch of two synsets, for yk_gradcheck. */
typedef struct small {
    yk_ctx *ctx;
    wn_config c;
    wn_net net;
    int64_t tokens[2 * 6];
    double mask[2 * 4];
    int64_t bag[5], offsets[2], labels[2];
    batch b;
    bool full; /* check the logits (else the gloss encoder alone) */
} small;

static void small_init(small *s, bool untie)
{
    s->ctx = yk_ctx_new();
    s->c = default_config();
    s->c.dim = 3;
    s->c.extra_dim = 2;
    s->c.hidden = 4;
    s->c.kernel = 3;
    s->c.buckets = 4;
    s->c.init_std = 0.5;
    s->c.untie = untie;
    s->net = make_net(s->ctx, &s->c, 6, 5, YK_F64);
    /* L = 4: example 0 has 4 tokens, example 1 has 2 (then padding). */
    int64_t tokens[12] = {0, 2, 3, 4, 5, 0, 0, 5, 2, 0, 0, 0};
    double mask[8] = {0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0, 0};
    int64_t bag[5] = {2, 7, 9, 3, 6}, offsets[2] = {0, 3}, labels[2] = {1, 4};
    memcpy(s->tokens, tokens, sizeof tokens);
    memcpy(s->mask, mask, sizeof mask);
    memcpy(s->bag, bag, sizeof bag);
    memcpy(s->offsets, offsets, sizeof offsets);
    memcpy(s->labels, labels, sizeof labels);
    s->b = (batch){.B = 2, .L = 4, .tokens = s->tokens, .mask = s->mask,
                   .bag = s->bag, .offsets = s->offsets, .labels = s->labels,
                   .n_bag = 5};
}

static void small_free(small *s)
{
    yk_model_free(s->net.m);
    yk_ctx_free(s->ctx);
}

/* The batch tensors stay alive across the gradcheck's graphs. */
static batch_tensors small_tensors;

static yk_node *build_small(yk_graph *g, void *ud)
{
    small *s = ud;
    const batch_tensors *t = &small_tensors;
    if (s->full)
        return forward(g, &s->net, t, s->b.L);
    return encode_gloss(g, &s->net, yk_const(g, t->tokens),
                        yk_const(g, t->mask), s->b.L);
}

static void gradcheck_small(bool untie, bool full)
{
    small s;
    small_init(&s, untie);
    s.full = full;
    /* Row 0 is padding: it changes the output (the edge windows read it)
     * but by definition gets no gradient, so finite differences would
     * disagree there. The check runs without the padding index; padding
     * has its own tests below. */
    s.net.gloss_emb.padding_idx = YK_NO_PADDING;
    small_tensors = wrap_batch(s.ctx, &s.b, s.c.kernel, YK_F64);
    expect_gradcheck(s.net.m, build_small, &s);
    free_batch_tensors(&small_tensors);
    small_free(&s);
}

Test(wordnet_gradients, gloss_encoder)
{
    gradcheck_small(false, false);
}

Test(wordnet_gradients, whole_model_tied)
{
    gradcheck_small(false, true);
}

Test(wordnet_gradients, whole_model_untied)
{
    gradcheck_small(true, true);
}

Test(wordnet_gradients, encoder_ignores_padding)
{
    /* Changing a padding position's token must not change the output of
     * example 1 (positions past its 2 tokens are masked; its right
     * neighbour window reads padding row 0, which is zero). Here: replace
     * trailing padding of example 1 beyond the kernel's reach. */
    small s;
    small_init(&s, false);
    batch_tensors t = wrap_batch(s.ctx, &s.b, 3, YK_F64);
    yk_graph *g = yk_graph_begin(s.ctx);
    const yk_tensor *a = yk_value(encode_gloss(g, &s.net, yk_const(g, t.tokens),
                                               yk_const(g, t.mask), 4));
    cr_assert(a != NULL, "%s", yk_last_error(s.ctx));
    double before[4];
    for (int k = 0; k < 4; k++)
        before[k] = yk_tensor_get(a, 4 + k);
    yk_graph_end(g);
    s.tokens[6 + 5] = 4; /* example 1, position 5: only window 3 reads it */
    g = yk_graph_begin(s.ctx);
    a = yk_value(encode_gloss(g, &s.net, yk_const(g, t.tokens),
                              yk_const(g, t.mask), 4));
    expect_close(a, (double[]){yk_tensor_get(a, 0), yk_tensor_get(a, 1),
                               yk_tensor_get(a, 2), yk_tensor_get(a, 3),
                               before[0], before[1], before[2], before[3]},
                 8, 0, 1e-12);
    yk_graph_end(g);
    free_batch_tensors(&t);
    small_free(&s);
}

Test(wordnet_gradients, tied_gradient_is_row_sparse_and_shared)
{
    /* One backward: the shared table gets ONE row-sparse gradient with
     * rows from both paths (gloss token 4 only in the gloss; bag row 9, a
     * bigram bucket, only in the bag). */
    small s;
    small_init(&s, false);
    batch_tensors t = wrap_batch(s.ctx, &s.b, 3, YK_F64);
    yk_graph *g = yk_graph_begin(s.ctx);
    yk_node *loss = yk_cross_entropy(g, forward(g, &s.net, &t, 4),
                                     yk_const(g, t.labels), YK_REDUCE_MEAN);
    cr_assert_eq(yk_backward(g, loss), YK_OK, "%s", yk_last_error(s.ctx));
    yk_graph_end(g);
    cr_assert_eq(yk_param_grad_kind(s.net.shared), YK_GRAD_ROWS);
    int64_t nrows;
    const int64_t *rows;
    const yk_tensor *vals;
    cr_assert_eq(yk_param_grad_rows(s.net.shared, &nrows, &rows, &vals),
                 YK_OK);
    /* gloss rows 2, 3, 4, 5 (not padding 0); bag rows 2, 3, 6, 7, 9. */
    int64_t want[] = {2, 3, 4, 5, 6, 7, 9};
    cr_assert_eq(nrows, 7);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(rows[i], want[i], "row %d", i);
    free_batch_tensors(&t);
    small_free(&s);
}

/* ------------------------------------------------------------ training */

/* Mean loss of the fixture's training split under the net. */
static double train_loss(yk_ctx *ctx, const wn_net *n, const examples *e)
{
    batch_buffers bb = alloc_buffers(e, 64, n->K, n->dt);
    epoch_plan p = plan_epoch(e, 64, 64, NULL);
    eval_result r = evaluate(ctx, n, e, &bb, &p);
    free_plan(&p);
    free_buffers(&bb);
    return r.loss;
}

Test(wordnet_training, loss_decreases_on_the_fixture)
{
    wn_config c = default_config();
    c.data_dir = FIXTURE;
    c.dim = 16;
    c.extra_dim = 4;
    c.hidden = 16;
    c.buckets = 1000;
    c.batch = 16;
    c.lr = 0.01;
    c.cosine = false;
    c.huge_pages = false;
    dataset s = load_dataset(&c);
    cr_assert_eq(s.train.n + s.test.n, 350);
    yk_ctx *ctx = yk_ctx_new();
    wn_net n = make_net(ctx, &c, s.v.size, WN_NUM_LABELS, YK_F32);
    trainer t = make_trainer(ctx, &c, &n);
    t.total_steps = 40;
    double before = train_loss(ctx, &n, &s.train);
    /* Untrained: about log(45) = 3.81 (small random logits). */
    cr_assert(fabs(before - log(45.0)) < 0.2, "initial loss %g", before);
    batch_buffers bb = alloc_buffers(&s.train, c.batch, n.K, n.dt);
    rng r = {c.seed};
    epoch_plan p = plan_epoch(&s.train, c.batch, c.max_len, &r);
    for (int64_t k = 0; k < t.total_steps; k++) {
        int64_t b = k % p.n_batches;
        batch bt = make_batch(&bb, &s.train, p.order + p.starts[b],
                              plan_batch_size(&p, b));
        double l = train_step(&t, &bt);
        cr_assert(isfinite(l), "step %lld: loss %g", (long long)k, l);
    }
    double after = train_loss(ctx, &n, &s.train);
    cr_assert(after < 0.8 * before, "loss %g -> %g", before, after);
    free_plan(&p);
    free_buffers(&bb);
    free_trainer(&t);
    yk_model_free(n.m);
    yk_ctx_free(ctx);
    free_dataset(&s);
}

/* ------------------------------------------------- the program (CLI) */

/* Runs the wordnet program with args; its stdout+stderr into out. */
static int run_program(const char *args, char *out, size_t size)
{
    const char *exe = getenv("WORDNET");
    if (!exe)
        exe = "build/wordnet";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", exe, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL, "popen: %s", strerror(errno));
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "%s: did not exit", cmd);
    return WEXITSTATUS(status);
}

static const char *small_args = "--data " FIXTURE " --dim 8 --extra-dim 4 "
                                "--hidden 8 --buckets 500 --batch 16 "
                                "--no-huge-pages";

Test(wordnet_program, trains_saves_and_evaluates)
{
    char *dir = temp_dir();
    char args[1024], out[16384];
    snprintf(args, sizeof args, "%s --epochs 3 --csv %s/log.csv --save "
             "%s/model.safetensors", small_args, dir, dir);
    cr_assert_eq(run_program(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "epoch 3/3: train loss"), "%s", out);
    /* Not a terminal: plain progress lines, no carriage returns. */
    cr_assert(strchr(out, '\r') == NULL, "%s", out);
    /* The CSV: a header and one row per epoch; train loss decreases. */
    char path[256], line[512];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL);
    cr_assert(fgets(line, sizeof line, f));
    cr_assert(strncmp(line, "epoch,train_loss,test_loss,test_accuracy", 40)
              == 0, "%s", line);
    double loss[3], acc = 0;
    for (int e = 0; e < 3; e++) {
        int ep;
        cr_assert(fgets(line, sizeof line, f), "row %d", e);
        cr_assert_eq(sscanf(line, "%d,%lf,%*f,%lf", &ep, &loss[e], &acc), 3,
                     "%s", line);
        cr_assert_eq(ep, e + 1);
    }
    fclose(f);
    cr_assert(loss[2] < loss[0], "train loss %g -> %g", loss[0], loss[2]);
    /* --eval on the saved model gives the last epoch's test accuracy. */
    snprintf(args, sizeof args, "--data " FIXTURE " --eval "
             "%s/model.safetensors", dir);
    cr_assert_eq(run_program(args, out, sizeof out), 0, "%s", out);
    char want[64];
    snprintf(want, sizeof want, "test accuracy %.4f", acc);
    cr_assert(strstr(out, want), "want \"%s\" in: %s", want, out);
}

Test(wordnet_program, export_writes_fasttext_and_id_files)
{
    char *dir = temp_dir();
    char args[1024], out[4096], path[256], line[4096];
    snprintf(args, sizeof args, "--data " FIXTURE " --export %s", dir);
    cr_assert_eq(run_program(args, out, sizeof out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/train.txt", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL);
    /* The first training synset (00001740 is a test synset) is
     * "00130347 04 n 01 strikeout 0 ... | an out resulting from the batter
     * getting three strikes". */
    cr_assert(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert_str_eq(line, "__label__noun.act strikeout an out resulting "
                     "from the batter getting three strikes\n");
    snprintf(path, sizeof path, "%s/test.txt", dir);
    f = fopen(path, "r");
    cr_assert(f != NULL);
    cr_assert(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert_str_eq(line, "__label__noun.Tops entity that which is "
                     "perceived or known or inferred to have its own "
                     "distinct existence living or nonliving\n");
}

Test(wordnet_program, missing_data_is_a_clear_error)
{
    char out[4096];
    cr_assert_eq(run_program("--data /nonexistent", out, sizeof out), 1);
    cr_assert(strstr(out, "wordnet: /nonexistent/data.noun: No such file or "
                     "directory"), "%s", out);
}

Test(wordnet_program, malformed_data_names_file_and_line)
{
    char *dir = temp_dir();
    write_text(dir, "data.noun", "00000011 03 n 01 b 0 000 | y\n"
               "00000012 03 n 01 b 0 000 | y\n"
               "00000013 77 n 01 b 0 000 | y\n");
    char args[512], out[4096], want[512];
    snprintf(args, sizeof args, "--data %s", dir);
    cr_assert_eq(run_program(args, out, sizeof out), 1);
    snprintf(want, sizeof want, "wordnet: %s/data.noun:3: lexicographer file "
             "number 77 is not in 0..44", dir);
    cr_assert(strstr(out, want), "want \"%s\" in: %s", want, out);
}

Test(wordnet_program, options_are_checked)
{
    char out[8192];
    cr_assert_eq(run_program("--help", out, sizeof out), 0);
    cr_assert(strstr(out, "--untie"), "%s", out);
    cr_assert_eq(run_program("--version", out, sizeof out), 0);
    cr_assert(strstr(out, "wordnet (yoke "), "%s", out);
    cr_assert_eq(run_program("--epochs x", out, sizeof out), 1);
    cr_assert(strstr(out, "--epochs: \"x\" is not an integer"), "%s", out);
    cr_assert_eq(run_program("--kernel 4", out, sizeof out), 1);
    cr_assert(strstr(out, "--kernel: 4 is even"), "%s", out);
    cr_assert_eq(run_program("--frobnicate 1", out, sizeof out), 1);
    cr_assert(strstr(out, "unknown option \"--frobnicate\""), "%s", out);
    cr_assert_eq(run_program("--lr", out, sizeof out), 1);
    cr_assert(strstr(out, "--lr needs a value"), "%s", out);
}

Test(wordnet_program, eval_refuses_another_vocabulary)
{
    /* A model saved with --min-count 1, evaluated on data whose
     * vocabulary differs (a one-synset folder). */
    char *dir = temp_dir();
    char args[1024], out[8192];
    snprintf(args, sizeof args, "%s --epochs 1 --max-steps 1 --save "
             "%s/m.safetensors", small_args, dir);
    cr_assert_eq(run_program(args, out, sizeof out), 0, "%s", out);
    char *other = temp_dir();
    for (int i = 0; i < 4; i++)
        write_text(other, wn_file_names[i], "00000011 03 n 01 b 0 000 | y\n");
    snprintf(args, sizeof args, "--data %s --eval %s/m.safetensors", other,
             dir);
    cr_assert_eq(run_program(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "trained with a vocabulary of"), "%s", out);
}

/* ------------------------------------------- data parallel (MPI build) */

/* Trains wordnet_mpi (env WORDNET_MPI) on np ranks through tests/mpi_run.sh
 * (env MPI_RUN), f64, 2 epochs of 5 steps of batches of 15 (an uneven
 * split: 8 + 7 examples on 2 ranks); each epoch's train and test loss from
 * its CSV into loss[epoch][0..1], its test accuracy into loss[epoch][2]. */
static void train_on_ranks(int np, const char *dir, double loss[2][3])
{
    char cmd[2048], csv[256], out[16384], line[512];
    snprintf(csv, sizeof csv, "%s/np%d.csv", dir, np);
    snprintf(cmd, sizeof cmd, "%s %d %s %s --batch 15 --f64 --epochs 2 "
             "--max-steps 5 --threads 1 --csv %s 2>&1", getenv("MPI_RUN"),
             np, getenv("WORDNET_MPI"), small_args, csv);
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL, "popen: %s", strerror(errno));
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s:\n%s", cmd,
              out);
    if (np > 1)
        cr_assert(strstr(out, "data parallel: 2 MPI ranks"), "%s", out);
    FILE *f = fopen(csv, "r");
    cr_assert(f != NULL, "%s: %s", csv, strerror(errno));
    cr_assert(fgets(line, sizeof line, f));
    for (int e = 0; e < 2; e++) {
        int ep;
        cr_assert(fgets(line, sizeof line, f), "%s: row %d", csv, e);
        cr_assert_eq(sscanf(line, "%d,%lf,%lf,%lf", &ep, &loss[e][0],
                            &loss[e][1], &loss[e][2]), 4, "%s", line);
    }
    fclose(f);
}

/* The claim of docs/MPI.md: each rank's loss is its slice's summed loss
 * over the whole batch's size and the gradients are summed, so 2 ranks
 * take the very steps 1 rank takes, up to the order of f64 additions. */
Test(wordnet_mpi, two_ranks_train_as_one)
{
    if (!getenv("WORDNET_MPI") || !getenv("MPI_RUN"))
        cr_skip_test("WORDNET_MPI and MPI_RUN are not set (meson test "
                     "wordnet_mpi sets them)");
    char *dir = temp_dir();
    double one[2][3], two[2][3];
    train_on_ranks(1, dir, one);
    train_on_ranks(2, dir, two);
    /* It trained: the second epoch's loss is not the first's. */
    cr_assert(one[1][0] < one[0][0], "train loss %.12g -> %.12g", one[0][0],
              one[1][0]);
    for (int e = 0; e < 2; e++) {
        for (int k = 0; k < 2; k++)
            cr_assert(fabs(one[e][k] - two[e][k]) <= 1e-9 * fabs(one[e][k]),
                      "epoch %d, %s loss: 1 rank %.12g, 2 ranks %.12g",
                      e + 1, k ? "test" : "train", one[e][k], two[e][k]);
        cr_assert_eq(one[e][2], two[e][2], "epoch %d accuracy", e + 1);
    }
}
