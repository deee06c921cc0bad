/*
 * wordnet_data.c -- the WordNet 3.0 loader (see wordnet_data.h).
 *
 * Each data file is read line by line; the license lines at the top start
 * with two spaces and are skipped. Every field up to the gloss is checked
 * (numbers where numbers belong, as many member words and pointers as the
 * counts say, the '|' before the gloss), so a damaged or foreign file
 * fails with its name, the line number and the field instead of loading
 * garbage.
 */
#include "wordnet_data.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const wn_label_names[WN_NUM_LABELS] = {
    "adj.all",          "adj.pert",          "adv.all",
    "noun.Tops",        "noun.act",          "noun.animal",
    "noun.artifact",    "noun.attribute",    "noun.body",
    "noun.cognition",   "noun.communication", "noun.event",
    "noun.feeling",     "noun.food",         "noun.group",
    "noun.location",    "noun.motive",       "noun.object",
    "noun.person",      "noun.phenomenon",   "noun.plant",
    "noun.possession",  "noun.process",      "noun.quantity",
    "noun.relation",    "noun.shape",        "noun.state",
    "noun.substance",   "noun.time",         "verb.body",
    "verb.change",      "verb.cognition",    "verb.communication",
    "verb.competition", "verb.consumption",  "verb.contact",
    "verb.creation",    "verb.emotion",      "verb.motion",
    "verb.perception",  "verb.possession",   "verb.social",
    "verb.stative",     "verb.weather",      "adj.ppl",
};

const char *const wn_file_names[4] = {"data.noun", "data.verb", "data.adj",
                                      "data.adv"};

/* Tokens longer than this are cut (WordNet's longest is far shorter). */
#define MAX_TOKEN 64

void wn_init(wn_data *d)
{
    memset(d, 0, sizeof *d);
}

void wn_free(wn_data *d)
{
    for (int64_t i = 0; i < d->n_words; i++)
        free(d->words[i]);
    free(d->words);
    free(d->synsets);
    free(d->tokens);
    free(d->slots);
    wn_init(d);
}

static bool set_error(wn_data *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool set_error(wn_data *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
    return false;
}

/* Makes room for one more element in *items (capacity doubling). */
static bool grow(wn_data *d, void **items, int64_t n, int64_t *cap,
                 size_t size)
{
    if (n < *cap)
        return true;
    int64_t want = *cap ? *cap * 2 : 1024;
    void *p = realloc(*items, (size_t)want * size);
    if (!p)
        return set_error(d, "out of memory (%lld items of %zu bytes)",
                         (long long)want, size);
    *items = p;
    *cap = want;
    return true;
}

/* ------------------------------------------------------------ tokens */

static bool is_token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

size_t wn_next_token(const char *text, size_t len, size_t *pos, char *out,
                     size_t outsize)
{
    size_t i = *pos;
    while (i < len && !is_token_char(text[i]))
        i++;
    size_t start = i;
    while (i < len && is_token_char(text[i]))
        i++;
    /* The 's-style suffix: an apostrophe followed by letters. */
    if (i > start && i + 1 < len && text[i] == '\'' && is_letter(text[i + 1])) {
        i++;
        while (i < len && is_letter(text[i]))
            i++;
    }
    *pos = i;
    size_t n = i - start, kept = 0;
    for (; kept < n && kept + 1 < outsize; kept++)
        out[kept] = (char)tolower((unsigned char)text[start + kept]);
    if (outsize)
        out[kept] = '\0';
    return n;
}

static uint64_t hash_string(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The slot of word in the intern table: its entry, or the empty slot
 * where it would go. n_slots is a power of two. */
static int64_t find_slot(const wn_data *d, const char *word)
{
    uint64_t mask = (uint64_t)d->n_slots - 1;
    for (uint64_t h = hash_string(word) & mask;; h = (h + 1) & mask) {
        int64_t e = d->slots[h];
        if (e == 0 || strcmp(d->words[e - 1], word) == 0)
            return (int64_t)h;
    }
}

int64_t wn_word_id(const wn_data *d, const char *word)
{
    if (!d->n_slots)
        return -1;
    return d->slots[find_slot(d, word)] - 1;
}

/* Doubles the intern table, keeping it under half full. */
static bool rehash(wn_data *d)
{
    int64_t n = d->n_slots ? d->n_slots * 2 : 1 << 16;
    int64_t *old = d->slots, old_n = d->n_slots;
    d->slots = calloc((size_t)n, sizeof *d->slots);
    if (!d->slots) {
        d->slots = old;
        return set_error(d, "out of memory (a word table of %lld slots)",
                         (long long)n);
    }
    d->n_slots = n;
    for (int64_t i = 0; i < old_n; i++)
        if (old[i])
            d->slots[find_slot(d, d->words[old[i] - 1])] = old[i];
    free(old);
    return true;
}

/* The id of word, interned on first sight; -1 on OOM. */
static int64_t intern(wn_data *d, const char *word)
{
    if (2 * (d->n_words + 1) > d->n_slots && !rehash(d))
        return -1;
    int64_t slot = find_slot(d, word);
    if (d->slots[slot])
        return d->slots[slot] - 1;
    if (!grow(d, (void **)&d->words, d->n_words, &d->words_cap,
              sizeof *d->words))
        return -1;
    char *copy = strdup(word);
    if (!copy)
        return set_error(d, "out of memory (a word)"), -1;
    d->words[d->n_words] = copy;
    d->slots[slot] = ++d->n_words;
    return d->n_words - 1;
}

/* Appends the tokens of text[0..len) to d->tokens; counts them in *n. */
static bool add_tokens(wn_data *d, const char *text, size_t len, int32_t *n)
{
    char tok[MAX_TOKEN];
    size_t pos = 0;
    while (wn_next_token(text, len, &pos, tok, sizeof tok) > 0) {
        int64_t id = intern(d, tok);
        if (id < 0 || !grow(d, (void **)&d->tokens, d->n_tokens,
                            &d->tokens_cap, sizeof *d->tokens))
            return false;
        d->tokens[d->n_tokens++] = (int32_t)id;
        (*n)++;
    }
    return true;
}

/* -------------------------------------------------------------- lines */

/* One line being parsed: its text, a cursor and where it came from. */
typedef struct line {
    wn_data *d;
    const char *path;
    long long number;
    const char *s;
    size_t len, pos;
} line;

static bool line_error(line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool line_error(line *l, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return set_error(l->d, "%s:%lld: %s", l->path, l->number, what);
}

/* The next space-separated field: false at the end of the line. */
static bool next_field(line *l, const char **f, int *n)
{
    while (l->pos < l->len && l->s[l->pos] == ' ')
        l->pos++;
    size_t start = l->pos;
    while (l->pos < l->len && l->s[l->pos] != ' ')
        l->pos++;
    *f = l->s + start;
    *n = (int)(l->pos - start);
    return *n > 0;
}

/* Parses f[0..n) as a number in base 10 or 16 with exactly `digits` digits
 * (any count when digits is 0). */
static bool parse_number(const char *f, int n, int base, int digits,
                         long long *out)
{
    if (n == 0 || n > 18 || (digits && n != digits))
        return false;
    long long v = 0;
    for (int i = 0; i < n; i++) {
        int c = (unsigned char)f[i], x;
        if (c >= '0' && c <= '9')
            x = c - '0';
        else if (base == 16 && c >= 'a' && c <= 'f')
            x = c - 'a' + 10;
        else if (base == 16 && c >= 'A' && c <= 'F')
            x = c - 'A' + 10;
        else
            return false;
        v = v * base + x;
    }
    *out = v;
    return true;
}

/* A field that must be a number: its value, or a message naming it. */
static bool number_field(line *l, const char *what, int base, int digits,
                         long long *out)
{
    const char *f;
    int n;
    if (!next_field(l, &f, &n))
        return line_error(l, "the line ends before the %s", what);
    if (!parse_number(f, n, base, digits, out))
        return line_error(l, "%s \"%.*s\" is not a %s%s number", what,
                          n > 40 ? 40 : n, f,
                          digits == 2 ? "two-digit " : digits == 3
                                                            ? "three-digit "
                                                            : "",
                          base == 16 ? "hexadecimal" : "decimal");
    return true;
}

/* A member word: "word" or "word(a)"; the marker is dropped. */
static bool add_member_word(line *l, const char *f, int n, int32_t *count)
{
    if (n > 0 && f[n - 1] == ')') {
        const char *open = memchr(f, '(', (size_t)n);
        if (open)
            n = (int)(open - f);
    }
    return add_tokens(l->d, f, (size_t)n, count);
}

static bool parse_words(line *l, wn_synset *s)
{
    long long w_cnt, lex_id;
    if (!number_field(l, "word count", 16, 2, &w_cnt))
        return false;
    if (w_cnt == 0)
        return line_error(l, "word count is 0: a synset has at least one "
                          "member word");
    s->lemma_start = l->d->n_tokens;
    for (long long i = 0; i < w_cnt; i++) {
        const char *f;
        int n;
        if (!next_field(l, &f, &n))
            return line_error(l, "the line ends after %lld of %lld member "
                              "words", i, w_cnt);
        if (!add_member_word(l, f, n, &s->n_lemma))
            return false;
        if (!number_field(l, "lex_id", 16, 1, &lex_id))
            return false;
    }
    return true;
}

/* Skips the pointers: p_cnt groups of symbol, offset, pos, source/target. */
static bool skip_pointers(line *l)
{
    long long p_cnt;
    if (!number_field(l, "pointer count", 10, 3, &p_cnt))
        return false;
    for (long long i = 0; i < p_cnt; i++)
        for (int k = 0; k < 4; k++) {
            const char *f;
            int n;
            if (!next_field(l, &f, &n) || (n == 1 && f[0] == '|'))
                return line_error(l, "the line ends after %lld of %lld "
                                  "pointers", i, p_cnt);
        }
    return true;
}

/* The gloss: after the '|' that follows the pointers (and verb frames). */
static bool parse_gloss(line *l, wn_synset *s)
{
    const char *bar = memchr(l->s + l->pos, '|', l->len - l->pos);
    if (!bar)
        return line_error(l, "no gloss: the '|' separator is missing");
    size_t start = (size_t)(bar + 1 - l->s);
    s->gloss_start = l->d->n_tokens;
    return add_tokens(l->d, l->s + start, l->len - start, &s->n_gloss);
}

static bool parse_header(line *l, wn_synset *s)
{
    long long offset, lex;
    if (!number_field(l, "synset offset", 10, 0, &offset))
        return false;
    if (!number_field(l, "lexicographer file number", 10, 2, &lex))
        return false;
    if (lex >= WN_NUM_LABELS)
        return line_error(l, "lexicographer file number %lld is not in "
                          "0..%d", lex, WN_NUM_LABELS - 1);
    const char *f;
    int n;
    if (!next_field(l, &f, &n))
        return line_error(l, "the line ends before the synset type");
    if (n != 1 || !strchr("nvasr", f[0]))
        return line_error(l, "synset type \"%.*s\" is not one of n, v, a, "
                          "s, r", n > 40 ? 40 : n, f);
    s->offset = offset;
    s->label = (int)lex;
    s->pos = f[0];
    return true;
}

static bool parse_line(line *l)
{
    wn_data *d = l->d;
    if (strlen(l->s) != l->len)
        return line_error(l, "the line contains a NUL byte");
    wn_synset s = {0};
    int64_t tokens_before = d->n_tokens;
    if (!parse_header(l, &s) || !parse_words(l, &s) || !skip_pointers(l) ||
        !parse_gloss(l, &s)) {
        d->n_tokens = tokens_before;
        return false;
    }
    if (!grow(d, (void **)&d->synsets, d->n_synsets, &d->synsets_cap,
              sizeof *d->synsets))
        return false;
    d->synsets[d->n_synsets++] = s;
    return true;
}

/* License lines start with two spaces; blank lines carry nothing. */
static bool skipped_line(const char *s, size_t len)
{
    return len == 0 || (len >= 2 && s[0] == ' ' && s[1] == ' ');
}

static bool load_stream(wn_data *d, FILE *f, const char *path)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    line l = {.d = d, .path = path};
    bool ok = true;
    while (ok && (got = getline(&buf, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        l.number++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        buf[len] = '\0';
        if (skipped_line(buf, len))
            continue;
        l.s = buf;
        l.len = len;
        l.pos = 0;
        ok = parse_line(&l);
    }
    if (ok && ferror(f))
        ok = set_error(d, "%s: read error after line %lld: %s", path,
                       l.number, strerror(errno));
    free(buf);
    return ok;
}

bool wn_load_file(wn_data *d, const char *path)
{
    d->error[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return set_error(d, "%s: %s", path, strerror(errno));
    int64_t before = d->n_synsets;
    bool ok = load_stream(d, f, path);
    fclose(f);
    if (ok && d->n_synsets == before)
        return set_error(d, "%s: no synset lines (is it a WordNet data "
                         "file?)", path);
    return ok;
}

bool wn_load(wn_data *d, const char *dir)
{
    for (int i = 0; i < 4; i++) {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/%s", dir, wn_file_names[i]);
        if (n < 0 || (size_t)n >= sizeof path)
            return set_error(d, "%s: the folder name is too long", dir);
        if (!wn_load_file(d, path))
            return false;
    }
    return true;
}
