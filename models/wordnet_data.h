/*
 * wordnet_data.h -- WordNet 3.0 synsets for lexicographer-file
 * classification (the loader of models/wordnet.c).
 *
 * A synset line of data.noun / data.verb / data.adj / data.adv reads
 *
 *   offset lex_filenum ss_type w_cnt word lex_id ... p_cnt ptr... | gloss
 *
 * (wndb(5WN)). The loader keeps, per synset: its byte offset (the split
 * key: offset % 10 == 0 is the test set), its lexicographer file number
 * (the label, 0..44: noun.animal, verb.motion, ...), the tokens of its
 * member words and the tokens of its gloss (definition and examples).
 * Tokens are interned: every distinct token string gets one id, in order
 * of first appearance, and a synset stores ids.
 *
 * Tokenization: lowercase; a token is a run of [a-z0-9], optionally
 * followed by an apostrophe and a run of letters ("earth's", "don't"); any
 * other character separates tokens (so the underscores and hyphens of
 * lemmas split words). A member word's adjective marker ("(a)", "(p)",
 * "(ip)") is dropped.
 *
 * The loader never prints: errors come back as a message naming the file
 * and, for a malformed line, the line number and the field.
 */
#ifndef WORDNET_DATA_H
#define WORDNET_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WN_NUM_LABELS 45

/** The 45 lexicographer file names, by number (lexnames(5WN)). */
extern const char *const wn_label_names[WN_NUM_LABELS];

typedef struct wn_synset {
    int64_t offset;      /* byte offset in its data file                  */
    int label;           /* lexicographer file number, 0..44              */
    char pos;            /* ss_type: 'n', 'v', 'a', 's' or 'r'            */
    int64_t lemma_start; /* member-word tokens: ids tokens[start..+n)     */
    int32_t n_lemma;
    int64_t gloss_start; /* gloss tokens                                  */
    int32_t n_gloss;
} wn_synset;

typedef struct wn_data {
    wn_synset *synsets;   /* in file order, files in the order loaded      */
    int64_t n_synsets, synsets_cap;
    int32_t *tokens;      /* token ids of every synset, back to back       */
    int64_t n_tokens, tokens_cap;
    char **words;         /* the string of each token id                   */
    int64_t n_words, words_cap;
    int64_t *slots;       /* intern table: token id + 1, 0 = empty         */
    int64_t n_slots;
    char error[512];      /* the last error, "" if none                    */
} wn_data;

/** The four data files, in the order wn_load reads them. */
extern const char *const wn_file_names[4];

/** An empty data set (zeroes *d). */
void wn_init(wn_data *d);
/** Frees everything d holds and zeroes it. */
void wn_free(wn_data *d);

/**
 * Loads dir/data.noun, data.verb, data.adj and data.adv, appending to d.
 * Returns true, or false with d->error set ("<path>: <strerror>" for a file
 * that cannot be read, "<path>:<line>: <what>" for a malformed line); d
 * then holds what was loaded before the error (free it with wn_free).
 */
bool wn_load(wn_data *d, const char *dir);
/** Loads one data file (the same rules), appending to d. */
bool wn_load_file(wn_data *d, const char *path);

/** Is synset s in the test split (its offset divisible by 10)? */
static inline bool wn_is_test(const wn_synset *s)
{
    return s->offset % 10 == 0;
}

/**
 * The next token of text[0..len) at or after *pos: returns its length
 * (0 when there is none left) and writes it lowercased, NUL-terminated,
 * into out (at most outsize - 1 bytes kept; longer tokens are cut);
 * *pos moves past it.
 */
size_t wn_next_token(const char *text, size_t len, size_t *pos, char *out,
                     size_t outsize);

/** The id of a token string, or -1 when the data has none such. */
int64_t wn_word_id(const wn_data *d, const char *word);

#endif /* WORDNET_DATA_H */
