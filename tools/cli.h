/*
 * cli.h -- the command-line helpers the C programs of tools/ and models/
 * share (their conventions: --help and --version on stdout, errors on
 * stderr, exit status 2 for a usage error).
 */
#ifndef YOKE_TOOLS_CLI_H
#define YOKE_TOOLS_CLI_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Prints "prog: what arg" (when not both empty) and where help is; 2. */
static inline int cli_usage_error(const char *prog, const char *what,
                                  const char *arg)
{
    if (*what || *arg)
        fprintf(stderr, "%s: %s%s\n", prog, what, arg);
    fprintf(stderr, "(%s --help tells more)\n", prog);
    return 2;
}

/* A whole number in [lo, hi], as the whole of s. */
static inline bool cli_parse_count(const char *s, uint64_t lo, uint64_t hi,
                                   uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

#endif /* YOKE_TOOLS_CLI_H */
