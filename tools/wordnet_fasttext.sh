#!/bin/bash
# wordnet_fasttext.sh -- the fastText baseline of models/WORDNET.md.
#
# Writes the split the C program trains on as fastText text files
# (`wordnet --export DIR`: DIR/train.txt and DIR/test.txt, one synset a line,
# "__label__noun.animal member words gloss tokens", the same tokens, split
# and labels), trains Debian's fastText on train.txt, and prints the test
# accuracy and the wall and CPU time of the training.
#
#   tools/wordnet_fasttext.sh [-w WORDNET] [-d DATA] [-o DIR] [-t THREADS]
#                             [-l LOCK] [-- FASTTEXT OPTIONS]
#   tools/wordnet_fasttext.sh --sweep [-w ...] [-o ...] [-t ...]
#
#   -w  the C program (default build/wordnet)
#   -d  WordNet dict folder (default /usr/share/wordnet)
#   -o  folder for the text files and the model (default /tmp/wordnet-fasttext)
#   -t, --threads N  threads (default 2)
#   -l  hold this lock file (flock) during each training, so that timed
#       runs on a shared machine do not overlap
#   --  fastText supervised options (default: -epoch 50 -lr 1.0
#       -wordNgrams 2 -dim 100)
#   --sweep  trains the grid of models/WORDNET.md, one line per setting
#
# Needs: apt-get install fasttext wordnet-base
set -euo pipefail

wordnet=build/wordnet
data=/usr/share/wordnet
out=/tmp/wordnet-fasttext
threads=2
sweep=0
lock=
options=(-epoch 50 -lr 1.0 -wordNgrams 2 -dim 100)

while [ $# -gt 0 ]; do
    case "$1" in
        -w) wordnet=$2; shift 2 ;;
        -d) data=$2; shift 2 ;;
        -o) out=$2; shift 2 ;;
        -t|--threads) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] ||
               { echo "wordnet_fasttext.sh: $1 needs a thread count >= 1" >&2; exit 2; }
           threads=$2; shift 2 ;;
        -l) lock=$2; shift 2 ;;
        --sweep) sweep=1; shift ;;
        --) shift; options=("$@"); break ;;
        -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --version) sed -n 's/^#define YOKE_VERSION_STRING "\(.*\)"/wordnet_fasttext.sh (yoke) \1/p' \
                       "$(dirname "$0")/../lib/yoke.h"; exit 0 ;;
        *) echo "wordnet_fasttext.sh: unknown argument '$1' (see --help)" >&2
           exit 2 ;;
    esac
done

command -v fasttext >/dev/null ||
    { echo "wordnet_fasttext.sh: fasttext not found (apt-get install fasttext)" >&2; exit 1; }

mkdir -p "$out"
if [ ! -s "$out/train.txt" ] || [ ! -s "$out/test.txt" ]; then
    "$wordnet" --data "$data" --export "$out" >/dev/null
fi
cut -d' ' -f1 "$out/test.txt" > "$out/test.labels"

# Trains with the given options; prints one line of results.
run() {
    local timing
    if [ -n "$lock" ]; then exec 9>>"$lock"; flock 9; fi # not timed
    TIMEFORMAT='%R %U %S'
    timing=$( { time fasttext supervised -input "$out/train.txt" \
                  -output "$out/model" -thread "$threads" -verbose 0 "$@" \
                  >/dev/null 2>&1; } 2>&1 )
    if [ -n "$lock" ]; then flock -u 9; exec 9>&-; fi
    fasttext predict "$out/model.bin" "$out/test.txt" > "$out/test.pred"
    paste -d' ' "$out/test.labels" "$out/test.pred" |
        awk -v opts="$*" -v t="$timing" -v th="$threads" '
            $1 == $2 { c++ }
            END { split(t, x, " ");
                  printf "fasttext %s -thread %d: test accuracy %.4f (%d synsets), " \
                         "train wall %.1f s, cpu %.1f s\n",
                         opts, th, c / NR, NR, x[1], x[2] + x[3] }'
    rm -f "$out/model.bin" "$out/model.vec" "$out/test.pred"
}

if [ "$sweep" = 1 ]; then
    # ~20 minutes on 2 cores: epochs at the issue's setting, then one
    # change at a time (bigrams off / trigrams, learning rate, dimension).
    for epochs in 10 25 50 100; do
        run -epoch "$epochs" -lr 1.0 -wordNgrams 2 -dim 100
    done
    run -epoch 25 -lr 1.0 -wordNgrams 1 -dim 100
    run -epoch 50 -lr 0.5 -wordNgrams 2 -dim 100
    run -epoch 50 -lr 1.0 -wordNgrams 2 -dim 50
    run -epoch 50 -lr 1.0 -wordNgrams 3 -dim 100
else
    run "${options[@]}"
fi
