/*
 * yoke_io.h -- checkpoints (safetensors) and pretrained vectors (included by
 * yoke.h).
 *
 * CHECKPOINTS are safetensors files, so any safetensors reader (Python's
 * safetensors, or the numpy script tools/read_checkpoint.py) opens them:
 *
 *   8 bytes      N, the header length, little-endian unsigned
 *   N bytes      a JSON object: per tensor {"dtype": "F32" | "F64" | "I64",
 *                "shape": [...], "data_offsets": [begin, end]}, and
 *                "__metadata__" with string values only: "yoke_format_version"
 *                ("1"), "step" (decimal), if given "config", and with an
 *                optimizer "optimizer" (its kind). Padded with spaces so
 *                that the data starts at a multiple of 8.
 *   the rest     the raw little-endian data; offsets count from its start.
 *
 * A model is saved parameter by parameter, by name, in insertion order. A
 * tied parameter is one yk_param, so it is stored once. Extra named tensors
 * may go in the same file; yk_checkpoint_save / yk_checkpoint_load use them
 * for an optimizer's state ("optim/W/exp_avg", "optim/W/step", ...).
 *
 *     yk_save_opts so = {.step = 1000, .config = "{\"lr\": 0.01}"};
 *     if (yk_model_save(m, "model.safetensors", &so) != YK_OK) ...
 *
 *     yk_load_info info;
 *     if (yk_model_load(m, "model.safetensors", NULL, &info) != YK_OK)
 *         fprintf(stderr, "%s\n", yk_last_error(ctx));
 *     // info.step == 1000, info.config is the string saved
 *     yk_load_info_clear(&info);
 *
 * Saving is atomic: the file is written under a temporary name in the same
 * folder, flushed and fsync'ed, renamed over the target, and the folder is
 * fsync'ed. Whatever fails, the previous file under the target name is left
 * as it was. Every write goes through a yk_io hook that a test can replace.
 *
 * Loading validates the whole file (header, dtypes, shapes, offsets) and its
 * fit to the model (names, dtypes, shapes) before it copies anything: a
 * failed load leaves the model untouched. A truncated or corrupted file is
 * YK_EFORMAT, never a crash.
 *
 * PRETRAINED VECTORS come from word2vec / fastText .vec text files or from a
 * tensor of a safetensors file; see the last section.
 */
#ifndef YOKE_IO_H
#define YOKE_IO_H

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * The I/O hook: every write of a save goes through it
 * ====================================================================== */

/**
 * POSIX-like file operations. Each returns what the POSIX call returns: a
 * descriptor or 0 on success, -1 with errno set on failure. A test wraps
 * yk_io_posix() to fail the n-th call (see tests/test_checkpoint.c).
 */
typedef struct yk_io {
    void *ud; /* passed to every function */
    /* open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666) */
    int (*open)(void *ud, const char *path);
    /* write(2): bytes written (possibly fewer than n) or -1 */
    ptrdiff_t (*write)(void *ud, int fd, const void *buf, size_t n);
    int (*fsync)(void *ud, int fd);
    int (*close)(void *ud, int fd);
    int (*rename)(void *ud, const char *from, const char *to);
    int (*unlink)(void *ud, const char *path);
    /* opens the folder dir, fsyncs it (so a rename in it is durable) and
     * closes it */
    int (*sync_dir)(void *ud, const char *dir);
} yk_io;

/** The real file system (retrying write on EINTR). Static; never NULL. */
const yk_io *yk_io_posix(void);

/* ======================================================================
 * Saving and loading a model
 * ====================================================================== */

/** A tensor to save under a name (the tensor is only read). */
typedef struct yk_named_tensor {
    const char *name;
    const yk_tensor *tensor;
} yk_named_tensor;

/** A destination to load a named tensor into (dtype and shape must match). */
typedef struct yk_tensor_slot {
    const char *name;
    yk_tensor *tensor;
} yk_tensor_slot;

/** Options of yk_model_save. All zeros (or NULL) is a valid default. */
typedef struct yk_save_opts {
    int64_t step;               /* stored as metadata "step"               */
    const char *config;         /* stored as metadata "config"; NULL: none  */
    int n_extra;                /* extra tensors saved after the model's    */
    const yk_named_tensor *extra;
    const yk_io *io;            /* NULL: yk_io_posix()                      */
} yk_save_opts;

/**
 * Saves every parameter of m (name, dtype, shape, values, in insertion
 * order), then opts->extra, to path as safetensors, atomically (see the top
 * of this file). The temporary file is "<path>.tmp.<pid>.<n>"; a process
 * killed mid-save leaves it behind (never under the target name).
 *
 * Errors: YK_EINVAL for a NULL m or path, an extra with a NULL or empty
 * name or NULL tensor, a name given twice (parameters and extras share one
 * namespace), the reserved name "__metadata__", or an io lacking a
 * function. YK_EIO naming the path, the step that
 * failed and strerror(errno) when the hook fails; then the previous file is
 * untouched and the temporary file removed, except when only the final
 * folder sync fails: the new file is then in place but maybe not durable.
 * YK_ENOMEM.
 */
yk_status yk_model_save(const yk_model *m, const char *path,
                        const yk_save_opts *opts);

/** Options of yk_model_load. All zeros (or NULL) is the strict default. */
typedef struct yk_load_opts {
    /* false (strict): every parameter and extra slot must be in the file and
     * every tensor of the file must be one of them. true: load those that
     * are, and count (and list in the report) the rest. */
    bool partial;
    /* Tensors of the file that nothing asks for and whose names start with
     * this are skipped without complaint (e.g. "optim/" to load only the
     * weights of a training checkpoint). NULL: none. */
    const char *ignore_prefix;
    int n_extra;                /* extra tensors to load besides the model */
    const yk_tensor_slot *extra;
} yk_load_opts;

/** What a successful load found. Free it with yk_load_info_clear. */
typedef struct yk_load_info {
    int64_t step;       /* metadata "step"; 0 when the file has none       */
    char *config;       /* metadata "config" (a copy) or NULL              */
    int n_loaded;       /* tensors copied from the file (parameters,      */
                        /* slots, optimizer state and step counts)        */
    int n_missing;      /* partial: tensors asked for, not in the file     */
    int n_unexpected;   /* partial: tensors of the file nothing asked for  */
    int n_ignored;      /* tensors skipped by ignore_prefix                */
    char report[512];   /* "missing: a, b; unexpected: c", or ""           */
    /* private */
    yk_ctx *ctx_;
    size_t config_size_;
} yk_load_info;

/**
 * Loads path into m's parameters (and opts->extra), by name. Everything is
 * checked before anything is copied, so on error m and the slots are
 * untouched. info may be NULL; on success it holds the step and config.
 *
 * Errors (the message names the file and the culprit):
 *   YK_EINVAL   NULL m or path; a slot with a NULL/empty name, NULL tensor,
 *               or a name that is also a parameter's or another slot's.
 *   YK_EIO      the file cannot be opened or read.
 *   YK_EFORMAT  not a valid safetensors file (see yk_safetensors_open); a
 *               yoke_format_version other than "1" or a step that is not a
 *               decimal integer; strict mode: names that do not match, the
 *               message listing the missing and the unexpected ones.
 *   YK_EDTYPE   a tensor's dtype differs from its parameter's or slot's.
 *   YK_ESHAPE   a tensor's shape differs from its parameter's or slot's.
 *   YK_ENOMEM
 */
yk_status yk_model_load(yk_model *m, const char *path,
                        const yk_load_opts *opts, yk_load_info *info);

/** Frees info->config and zeroes info. NULL is a no-op. */
void yk_load_info_clear(yk_load_info *info);

/* ======================================================================
 * A model with its optimizer's state (resuming training)
 * ====================================================================== */

/**
 * yk_model_save, plus o's state: for each parameter of o that has stepped
 * or has state, "optim/<param>/step" (its step count, 0-d I64) and
 * "optim/<param>/<state>" for each state tensor (yk_optim_state_name:
 * "exp_avg", "exp_avg_sq", "sum", "momentum_buffer", ...), after the model
 * and the extras; metadata "optimizer" is yk_optim_kind_name(o's kind).
 * Errors as yk_model_save; a NULL o or an optimizer name already taken by
 * a parameter or an extra is YK_EINVAL.
 */
yk_status yk_checkpoint_save(const yk_model *m, yk_optim *o, const char *path,
                             const yk_save_opts *opts);

/**
 * yk_model_load, plus o's state, validated with everything else before
 * anything changes. A parameter of o with "optim/<param>/step" in the file
 * gets its step count and every state tensor from it (the state is made if
 * it had none). A parameter of o without it gets its state put back to the
 * initial values and step 0, as if it never stepped (the file says it had
 * no state). Strict mode: every "optim/" tensor must belong to a parameter
 * of o. Errors as yk_model_load, and YK_EFORMAT when the metadata names
 * another optimizer kind, or a step count is negative; YK_EDTYPE /
 * YK_ESHAPE naming the state tensor (states have the parameter's dtype,
 * and its shape, or [rows] for rowwise_adagrad). Only YK_ENOMEM while
 * making o's state can leave some of o's state loaded (the model then
 * stays untouched). Parameters are matched by name: o's parameters should
 * have distinct names.
 */
yk_status yk_checkpoint_load(yk_model *m, yk_optim *o, const char *path,
                             const yk_load_opts *opts, yk_load_info *info);

/* ======================================================================
 * Reading any safetensors file
 * ====================================================================== */

typedef struct yk_safetensors yk_safetensors;

/**
 * Reads and validates the whole file: header length within the file, the
 * header a JSON object, every tensor entry with a known safetensors dtype,
 * a shape of at most YK_MAX_DIMS non-negative integers whose byte size
 * equals its data_offsets' length, the offsets covering the data exactly
 * (in bounds, no overlap, no gap, no trailing bytes), names unique,
 * "__metadata__" an object of strings. Tensors of dtypes yoke has no type
 * for (F16, BF16, I32, ...) are accepted here and refused when read.
 *
 * Returns the file (free with yk_safetensors_close), or NULL with YK_EIO
 * (cannot open or read path), YK_EFORMAT (what is wrong, where) or
 * YK_ENOMEM on ctx. The file is held in memory until closed.
 */
yk_safetensors *yk_safetensors_open(yk_ctx *ctx, const char *path);
/** Frees the file. NULL is a no-op. */
void yk_safetensors_close(yk_safetensors *f);

/** Number of tensors; index i in [0, count) walks them in data order. */
int yk_safetensors_count(const yk_safetensors *f);
/** Index of the tensor of that name, or -1 (no error is set). */
int yk_safetensors_find(const yk_safetensors *f, const char *name);
/** Name, dtype as safetensors spells it ("F32"), ndim, shape of tensor i;
 * NULL / -1 for an index out of range. */
const char *yk_safetensors_name(const yk_safetensors *f, int i);
const char *yk_safetensors_dtype(const yk_safetensors *f, int i);
int yk_safetensors_ndim(const yk_safetensors *f, int i);
const int64_t *yk_safetensors_shape(const yk_safetensors *f, int i);
/** The metadata value of key, or NULL when absent. */
const char *yk_safetensors_metadata(const yk_safetensors *f, const char *key);

/**
 * Copies tensor `name` into dst, whose dtype and shape must be the file's.
 * YK_EINVAL: no such tensor (or NULL arguments); YK_EDTYPE: a different
 * dtype, or one yoke cannot read; YK_ESHAPE: a different shape.
 */
yk_status yk_safetensors_read(yk_safetensors *f, const char *name,
                              yk_tensor *dst);
/** Tensor `name` as a new tensor (free with yk_tensor_free), or NULL with
 * YK_EINVAL / YK_EDTYPE as yk_safetensors_read, or YK_ENOMEM. */
yk_tensor *yk_safetensors_get(yk_safetensors *f, const char *name);

/* ======================================================================
 * Pretrained vectors
 * ====================================================================== */

/**
 * .vec text files (word2vec text format, as fastText writes them):
 *
 *   line 1         "count dim": two integers, count >= 0 and
 *                  1 <= dim <= 2^20 (a larger dim is taken as corruption)
 *   each line      "word v1 ... vdim": a word (no spaces), then exactly dim
 *                  decimal numbers, separated by spaces or tabs
 *
 * Trailing spaces, "\r\n" line ends and blank lines are accepted. Every
 * line is checked, whether or not its word is in the vocabulary; these are
 * YK_EFORMAT with the file name and the line number:
 *   - a header that is not two such integers;
 *   - a line with more or fewer than dim values;
 *   - a value that is not a finite number in the dtype's range (strtod in
 *     the "C" locale must read the whole token; nan, inf and 1e999 fail);
 *   - more or fewer vector lines than the header's count;
 *   - a word of the vocabulary that appears twice (the message gives both
 *     lines). Repeats of words outside the vocabulary are not checked.
 *   - a line containing a NUL byte.
 */
typedef struct yk_vec_opts {
    uint64_t seed;  /* rows of words absent from the file: rows of a  */
    double mean;    /* yk_tensor_fill_normal(matrix, seed, mean, std)  */
    double std;     /* of the whole matrix (nn.Embedding's N(0, 1))    */
    bool freeze;    /* yk_param_load_*: requires_grad off afterwards   */
} yk_vec_opts;

/** seed 0, mean 0, std 1, freeze false. */
yk_vec_opts yk_vec_defaults(void);

typedef struct yk_vec_info {
    int64_t file_words; /* vectors in the file (the header's count)     */
    int64_t dim;        /* the header's dim                             */
    int64_t found;      /* vocabulary rows filled from the file         */
    int64_t unknown;    /* vocabulary rows initialised randomly         */
} yk_vec_info;

/**
 * A new [n_words, dim] tensor of dtype dt (f32 or f64): row i is the file's
 * vector of words[i], or random (see yk_vec_opts) when the file has none.
 * The vocabulary words[0..n_words) must be non-NULL and distinct. opts and
 * info may be NULL. Errors: YK_EINVAL (NULL ctx, path or words, a NULL or
 * repeated word, std < 0, n_words < 0), YK_EDTYPE (dt not a float type),
 * YK_EIO (cannot open or read path), YK_EFORMAT (see above), YK_ENOMEM.
 */
yk_tensor *yk_vec_load(yk_ctx *ctx, const char *path, yk_dtype dt,
                       int64_t n_words, const char *const *words,
                       const yk_vec_opts *opts, yk_vec_info *info);

/**
 * Fills parameter p ([V, D]) from a .vec file as yk_vec_load with
 * n_words = V, then turns requires_grad off if opts->freeze
 * (from_pretrained). YK_ESHAPE when p is not 2-D or the file's dim is not
 * D. On error p is untouched.
 */
yk_status yk_param_load_vec(yk_param *p, const char *path,
                            const char *const *words, const yk_vec_opts *opts,
                            yk_vec_info *info);

/**
 * Fills parameter p from tensor `name` of a safetensors file (same dtype
 * and shape), then turns requires_grad off if freeze. Errors as
 * yk_safetensors_open and yk_safetensors_read; on error p is untouched.
 */
yk_status yk_param_load_safetensors(yk_param *p, const char *path,
                                    const char *name, bool freeze);

#ifdef __cplusplus
}
#endif

#endif /* YOKE_IO_H */
