/*
 * fuzz_util.h -- helpers shared by the libFuzzer targets of tests/fuzz/.
 *
 * The loaders under test read files by path, so a target puts its input in
 * an anonymous in-memory file (memfd) and passes "/proc/self/fd/N": no disk
 * traffic, nothing left behind. A target that finds the library breaking a
 * promise it can check (a failed load that changed the model, an accepted
 * call that should have been refused) calls fuzz_fail(), which prints why
 * and traps, so libFuzzer saves the input as a crash.
 */
#ifndef YOKE_FUZZ_UTIL_H
#define YOKE_FUZZ_UTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "yoke.h"

__attribute__((noreturn, format(printf, 1, 2)))
static inline void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz: broken promise: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    __builtin_trap();
}

/* An in-memory file holding data; *path gets its name. -1 on failure (the
 * target then skips the input: that is the machine's fault, not yoke's). */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path,
                        size_t path_size)
{
    int fd = memfd_create("yoke-fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    snprintf(path, path_size, "/proc/self/fd/%d", fd);
    return fd;
}

/* A failed call must leave a message that names the function or op. */
static inline void fuzz_expect_message(yk_ctx *ctx, const char *who)
{
    const char *msg = yk_last_error(ctx);
    if (yk_last_status(ctx) == YK_OK || !msg || !*msg)
        fuzz_fail("%s failed without a status or message", who);
}

/* Reads the fuzzer's bytes as a stream of small choices; past the end every
 * read gives 0, so any input is a valid program of choices. */
typedef struct fuzz_bytes {
    const uint8_t *p;
    size_t n;
} fuzz_bytes;

static inline uint8_t fb_u8(fuzz_bytes *b)
{
    if (!b->n)
        return 0;
    b->n--;
    return *b->p++;
}

/* A number in [0, n) (n >= 1). */
static inline unsigned fb_below(fuzz_bytes *b, unsigned n)
{
    return n ? fb_u8(b) % n : 0;
}

static inline bool fb_bool(fuzz_bytes *b) { return fb_u8(b) & 1; }

static inline int64_t fb_i64(fuzz_bytes *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | fb_u8(b);
    return (int64_t)v;
}

#endif
