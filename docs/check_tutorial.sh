#!/bin/sh
# check_tutorial.sh -- meson test 'tutorial': runs the tutorial's program
# and checks that every ```c block of tutorial.md is, verbatim, a piece of
# tutorial.c, so that the page and the program that runs cannot drift.
#
#   docs/check_tutorial.sh TUTORIAL_EXE CHECKPOINT_PATH TUTORIAL_MD TUTORIAL_C
set -eu
[ $# -eq 4 ] || { echo "usage: $0 EXE CHECKPOINT MD C" >&2; exit 2; }
exe=$1 ckpt=$2 md=$3 c=$4

awk '
    FNR == NR { prog = prog $0 "\n"; next }      # the first file: tutorial.c
    /^```c$/ { inside = 1; block = ""; n++; start = FNR; next }
    /^```$/ && inside {
        inside = 0
        if (index(prog, block) == 0) {
            printf "tutorial.md line %d: block %d is not in tutorial.c:\n%s",
                   start, n, block
            bad = 1
        }
        next
    }
    inside { block = block $0 "\n" }
    END {
        if (n == 0) { print "tutorial.md has no ```c block"; bad = 1 }
        exit bad
    }' "$c" "$md"

rm -f "$ckpt"
"$exe" "$ckpt"
[ -s "$ckpt" ] || { echo "no checkpoint written at $ckpt" >&2; exit 1; }
rm -f "$ckpt"
