/*
 * vectors.c -- pretrained word vectors from word2vec / fastText .vec text
 * files into an embedding matrix ordered by a yoke vocabulary (row i is the
 * vector of words[i]). The rules a file must follow are in yoke_io.h.
 *
 * The file is streamed (a .vec file can be several GiB): one line buffer
 * that grows to the longest line, one scratch row, the vocabulary's hash
 * table, and the result matrix. Numbers are read with strtod_l in the "C"
 * locale, so a program that set LC_NUMERIC to a decimal-comma locale still
 * reads "0.25" as a quarter.
 */
#include "engine.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* No real embedding has a million dims; a header claiming more is taken as
 * corrupt rather than as a request for a huge scratch row. */
#define MAX_DIM (INT64_C(1) << 20)
#define FIRST_BUFFER 65536

yk_vec_opts yk_vec_defaults(void)
{
    return (yk_vec_opts){.seed = 0, .mean = 0.0, .std = 1.0, .freeze = false};
}

/* ====================================================================
 * Lines
 * ==================================================================== */

typedef struct line_reader {
    yk_ctx *ctx;
    const char *fn, *path;
    FILE *f;
    char *buf;
    size_t cap;
    size_t start, end; /* unread bytes: buf[start, end) */
    bool eof;
    int64_t lineno;    /* of the line last returned */
} line_reader;

static yk_status read_more(line_reader *r)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end + 1 >= r->cap) { /* keep one byte for a final NUL */
        char *b = yk__realloc(r->ctx, r->buf, r->cap, 2 * r->cap);
        if (!b)
            return YK_ENOMEM;
        r->buf = b;
        r->cap *= 2;
    }
    size_t got = fread(r->buf + r->end, 1, r->cap - 1 - r->end, r->f);
    if (got == 0 && ferror(r->f))
        return yk__error(r->ctx, YK_EIO, "%s: reading \"%s\" failed after "
                         "line %lld", r->fn, r->path, (long long)r->lineno);
    r->eof = got == 0;
    r->end += got;
    return YK_OK;
}

/* The next line, NUL-terminated, without its "\n" or "\r\n"; *line is
 * NULL at the end of the file. */
static yk_status next_line(line_reader *r, char **line, size_t *len)
{
    size_t scanned = 0; /* bytes of the current line known to hold no \n */
    for (;;) {
        char *from = r->buf + r->start + scanned;
        char *nl = memchr(from, '\n', r->end - r->start - scanned);
        if (nl || (r->eof && r->start < r->end)) {
            char *stop = nl ? nl : r->buf + r->end;
            *stop = '\0';
            *line = r->buf + r->start;
            *len = (size_t)(stop - *line);
            if (*len && (*line)[*len - 1] == '\r')
                (*line)[--*len] = '\0';
            r->start = nl ? (size_t)(nl + 1 - r->buf) : r->end;
            r->lineno++;
            return YK_OK;
        }
        if (r->eof) {
            *line = NULL;
            return YK_OK;
        }
        scanned = r->end - r->start;
        yk_status s = read_more(r);
        if (s)
            return s;
    }
}

/* Splits off the next token separated by spaces or tabs; NULL at the end. */
static char *next_token(char **p)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s) {
        *p = s;
        return NULL;
    }
    char *e = s;
    while (*e && *e != ' ' && *e != '\t')
        e++;
    if (*e)
        *e++ = '\0';
    *p = e;
    return s;
}

/* ====================================================================
 * The vocabulary: word -> row, open addressing
 * ==================================================================== */

typedef struct vocab_map {
    const char *const *words;
    int64_t *slots; /* row ids, -1 for empty */
    size_t cap;     /* a power of two, at least twice the words */
} vocab_map;

static uint64_t hash_word(const char *w)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
    for (; *w; w++)
        h = (h ^ (unsigned char)*w) * UINT64_C(1099511628211);
    return h;
}

/* The slot holding word, or the empty slot where it would go. */
static size_t vocab_slot(const vocab_map *v, const char *word)
{
    size_t i = (size_t)hash_word(word) & (v->cap - 1);
    while (v->slots[i] >= 0 && strcmp(v->words[v->slots[i]], word) != 0)
        i = (i + 1) & (v->cap - 1);
    return i;
}

static int64_t vocab_row(const vocab_map *v, const char *word)
{
    return v->slots[vocab_slot(v, word)];
}

static yk_status vocab_build(yk_ctx *ctx, const char *fn, vocab_map *v,
                             const char *const *words, int64_t n)
{
    v->words = words;
    v->cap = 16;
    while (v->cap < 2 * (size_t)n)
        v->cap *= 2;
    v->slots = yk__alloc(ctx, v->cap * sizeof *v->slots);
    if (!v->slots)
        return YK_ENOMEM;
    memset(v->slots, 0xff, v->cap * sizeof *v->slots); /* all -1 */
    for (int64_t i = 0; i < n; i++) {
        if (!words[i])
            return yk__error(ctx, YK_EINVAL, "%s: words[%lld] is NULL", fn,
                             (long long)i);
        size_t k = vocab_slot(v, words[i]);
        if (v->slots[k] >= 0)
            return yk__error(ctx, YK_EINVAL, "%s: words[%lld] = \"%.64s\" "
                             "repeats words[%lld]", fn, (long long)i,
                             words[i], (long long)v->slots[k]);
        v->slots[k] = i;
    }
    return YK_OK;
}

/* ====================================================================
 * Reading a .vec file
 * ==================================================================== */

typedef struct vec_job {
    yk_ctx *ctx;
    const char *fn, *path;
    yk_dtype dt;
    int64_t n_words;
    int64_t want_dim;       /* -1: any; else the file's dim must be this */
    const char *want_label; /* names the parameter when want_dim >= 0 */
    yk_vec_opts opts;
    line_reader r;
    locale_t c_locale;
    vocab_map vocab;
    int64_t *first_line;    /* per row: the line that filled it, or 0 */
    void *scratch;          /* one row for words outside the vocabulary */
    int64_t count, dim;     /* the header */
    yk_tensor *out;
    int64_t found;
} vec_job;

static yk_status bad_line(vec_job *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static yk_status bad_line(vec_job *j, const char *fmt, ...)
{
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return yk__error(j->ctx, YK_EFORMAT, "%s: \"%s\" line %lld: %s", j->fn,
                     j->path, (long long)j->r.lineno, what);
}

/* A decimal integer token in [lo, hi], or false. */
static bool parse_int(const char *tok, int64_t lo, int64_t hi, int64_t *v)
{
    if (!tok || *tok < '0' || *tok > '9')
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(tok, &end, 10);
    if (*end || errno == ERANGE || x < lo || x > hi)
        return false;
    *v = x;
    return true;
}

static yk_status parse_header(vec_job *j)
{
    char *line;
    size_t len;
    yk_status s = next_line(&j->r, &line, &len);
    if (s)
        return s;
    if (!line) {
        j->r.lineno = 1;
        return bad_line(j, "the file is empty; it must begin with a "
                        "\"count dim\" header");
    }
    char shown[64]; /* the line as it was: tokens get cut in place */
    snprintf(shown, sizeof shown, "%s", line);
    char *p = line;
    char *a = next_token(&p), *b = next_token(&p), *c = next_token(&p);
    if (c || !parse_int(a, 0, INT64_MAX, &j->count) ||
        !parse_int(b, 1, MAX_DIM, &j->dim))
        return bad_line(j, "the header \"%s\" is not \"count dim\" (count "
                        ">= 0, 1 <= dim <= %lld)", shown, (long long)MAX_DIM);
    if (j->want_dim >= 0 && j->dim != j->want_dim)
        return yk__error(j->ctx, YK_ESHAPE, "%s: %s has %lld columns but "
                         "\"%s\" holds vectors of dim %lld", j->fn,
                         j->want_label, (long long)j->want_dim, j->path,
                         (long long)j->dim);
    return YK_OK;
}

/* Parses tok into element k of row (of the job's dtype). */
static bool parse_value(vec_job *j, const char *tok, void *row, int64_t k)
{
    char *end;
    double v;
    if (j->dt == YK_F32) {
        float x = strtof_l(tok, &end, j->c_locale);
        ((float *)row)[k] = x;
        v = x;
    } else {
        v = strtod_l(tok, &end, j->c_locale);
        ((double *)row)[k] = v;
    }
    /* Overflow gives inf, caught here; underflow to 0 or a denormal is
     * the nearest value and is kept. */
    return end != tok && !*end && isfinite(v);
}

static yk_status parse_values(vec_job *j, char *p, const char *word,
                              void *row)
{
    int64_t k = 0;
    for (char *tok; (tok = next_token(&p)); k++) {
        if (k == j->dim)
            return bad_line(j, "\"%.64s\" has more than %lld values (the "
                            "header's dim)", word, (long long)j->dim);
        if (!parse_value(j, tok, row, k))
            return bad_line(j, "value %lld of \"%.64s\", \"%.40s\", is not a "
                            "finite %s number", (long long)k + 1, word, tok,
                            yk_dtype_name(j->dt));
    }
    if (k < j->dim)
        return bad_line(j, "\"%.64s\" has %lld values but the header's dim is "
                        "%lld", word, (long long)k, (long long)j->dim);
    return YK_OK;
}

static yk_status parse_vector(vec_job *j, char *line, size_t len,
                              int64_t vectors)
{
    if (strlen(line) != len)
        return bad_line(j, "the line contains a NUL byte");
    if (vectors > j->count)
        return bad_line(j, "more vectors than the header's count %lld",
                        (long long)j->count);
    char *p = line;
    const char *word = next_token(&p);
    int64_t row = vocab_row(&j->vocab, word);
    if (row >= 0 && j->first_line[row])
        return bad_line(j, "\"%.64s\" already has a vector (line %lld)",
                        word, (long long)j->first_line[row]);
    size_t es = yk_dtype_size(j->dt);
    void *dst = row >= 0 ? (char *)j->out->data + (size_t)(row * j->dim) * es
                         : j->scratch;
    yk_status s = parse_values(j, p, word, dst);
    if (!s && row >= 0) {
        j->first_line[row] = j->r.lineno;
        j->found++;
    }
    return s;
}

static bool blank(const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    return !*line;
}

static yk_status parse_vectors(vec_job *j)
{
    int64_t vectors = 0;
    for (;;) {
        char *line;
        size_t len;
        yk_status s = next_line(&j->r, &line, &len);
        if (s)
            return s;
        if (!line)
            break;
        if (len == strlen(line) && blank(line))
            continue;
        s = parse_vector(j, line, len, ++vectors);
        if (s)
            return s;
    }
    if (vectors < j->count)
        return bad_line(j, "the file ends after %lld vectors but the header's "
                        "count is %lld", (long long)vectors,
                        (long long)j->count);
    return YK_OK;
}

/* Every buffer of the job, the result matrix filled with the random init. */
static yk_status job_alloc(vec_job *j)
{
    size_t es = yk_dtype_size(j->dt);
    j->first_line = yk__alloc(j->ctx, (size_t)(j->n_words ? j->n_words : 1) *
                                          sizeof(int64_t));
    j->scratch = j->first_line ? yk__alloc(j->ctx, (size_t)j->dim * es) : NULL;
    if (!j->scratch)
        return YK_ENOMEM;
    j->out = yk_tensor_zeros(j->ctx, j->dt, 2,
                             (int64_t[]){j->n_words, j->dim});
    if (!j->out)
        return yk_last_status(j->ctx);
    return yk_tensor_fill_normal(j->out, j->opts.seed, j->opts.mean,
                                 j->opts.std);
}

static void job_free(vec_job *j)
{
    yk_ctx *ctx = j->ctx;
    size_t es = yk_dtype_size(j->dt);
    yk__free(ctx, j->vocab.slots, j->vocab.cap * sizeof(int64_t));
    yk__free(ctx, j->first_line, (size_t)(j->n_words ? j->n_words : 1) *
                                     sizeof(int64_t));
    yk__free(ctx, j->scratch, (size_t)j->dim * es);
    yk__free(ctx, j->r.buf, j->r.cap);
    if (j->r.f)
        fclose(j->r.f);
    if (j->c_locale)
        freelocale(j->c_locale);
}

static yk_status job_open(vec_job *j)
{
    j->r = (line_reader){.ctx = j->ctx, .fn = j->fn, .path = j->path};
    j->r.f = fopen(j->path, "rb");
    if (!j->r.f) {
        char text[128];
        return yk__error(j->ctx, YK_EIO, "%s: cannot open \"%s\": %s", j->fn,
                         j->path, strerror_r(errno, text, sizeof text));
    }
    j->r.buf = yk__alloc(j->ctx, FIRST_BUFFER);
    if (!j->r.buf)
        return YK_ENOMEM;
    j->r.cap = FIRST_BUFFER;
    j->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!j->c_locale)
        return yk__error(j->ctx, YK_ENOMEM, "%s: cannot make the \"C\" "
                         "locale", j->fn);
    return YK_OK;
}

static yk_status check_job(vec_job *j, const char *const *words)
{
    if (!j->path)
        return yk__error(j->ctx, YK_EINVAL, "%s: path is NULL", j->fn);
    if (j->dt != YK_F32 && j->dt != YK_F64)
        return yk__error(j->ctx, YK_EDTYPE, "%s: dtype %s is not f32 or f64",
                         j->fn, yk_dtype_name(j->dt));
    if (j->n_words < 0 || (j->n_words > 0 && !words))
        return yk__error(j->ctx, YK_EINVAL, "%s: n_words = %lld with words "
                         "%s", j->fn, (long long)j->n_words,
                         words ? "set" : "NULL");
    if (!(j->opts.std >= 0) || !isfinite(j->opts.std) ||
        !isfinite(j->opts.mean))
        return yk__error(j->ctx, YK_EINVAL, "%s: opts mean = %g, std = %g; "
                         "std must be finite and >= 0", j->fn, j->opts.mean,
                         j->opts.std);
    return YK_OK;
}

/* Runs a whole load; on success j->out is the caller's. */
static yk_status vec_run(vec_job *j, const char *const *words)
{
    yk_status s = check_job(j, words);
    if (!s)
        s = vocab_build(j->ctx, j->fn, &j->vocab, words, j->n_words);
    if (!s)
        s = job_open(j);
    if (!s)
        s = parse_header(j);
    if (!s)
        s = job_alloc(j);
    if (!s)
        s = parse_vectors(j);
    job_free(j);
    if (s) {
        yk_tensor_free(j->out);
        j->out = NULL;
    }
    return s;
}

static void fill_vec_info(const vec_job *j, yk_vec_info *info)
{
    if (!info)
        return;
    info->file_words = j->count;
    info->dim = j->dim;
    info->found = j->found;
    info->unknown = j->n_words - j->found;
}

yk_tensor *yk_vec_load(yk_ctx *ctx, const char *path, yk_dtype dt,
                       int64_t n_words, const char *const *words,
                       const yk_vec_opts *opts, yk_vec_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (!ctx)
        return NULL;
    vec_job j = {.ctx = ctx, .fn = "yk_vec_load", .path = path, .dt = dt,
                 .n_words = n_words, .want_dim = -1,
                 .opts = opts ? *opts : yk_vec_defaults()};
    if (vec_run(&j, words))
        return NULL;
    fill_vec_info(&j, info);
    return j.out;
}

yk_status yk_param_load_vec(yk_param *p, const char *path,
                            const char *const *words, const yk_vec_opts *opts,
                            yk_vec_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (!p)
        return YK_EINVAL;
    yk_ctx *ctx = p->model->ctx;
    static const char fn[] = "yk_param_load_vec";
    if (p->value.ndim != 2)
        return yk__error(ctx, YK_ESHAPE, "%s: parameter \"%s\" must be 2-D "
                         "[V, D], got %d-D", fn, p->name, p->value.ndim);
    char label[160];
    snprintf(label, sizeof label, "parameter \"%s\"", p->name);
    vec_job j = {.ctx = ctx, .fn = fn, .path = path, .dt = p->value.dtype,
                 .n_words = p->value.shape[0], .want_dim = p->value.shape[1],
                 .want_label = label,
                 .opts = opts ? *opts : yk_vec_defaults()};
    yk_status s = vec_run(&j, words);
    if (s)
        return s;
    yk_tensor_copy(&p->value, j.out); /* same dtype and shape: cannot fail */
    yk_tensor_free(j.out);
    if (j.opts.freeze)
        yk_param_set_requires_grad(p, false);
    fill_vec_info(&j, info);
    return YK_OK;
}
