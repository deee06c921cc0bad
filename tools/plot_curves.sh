#!/usr/bin/env bash
# plot_curves.sh -- plot the per-epoch CSV files of `wordnet --csv` to PNG
# with gnuplot: the loss curves (train dashed, test solid) in the left
# panel, the test accuracy in the right one, one colour per file.
#
#   tools/plot_curves.sh -o curves.png tied.csv untied.csv
#   tools/plot_curves.sh -o curves.png --label tied a.csv --label untied b.csv
#
# The CSV needs a header line naming at least epoch, train_loss, test_loss
# and test_accuracy (models/wordnet.c writes those and more); columns are
# found by name, so their order does not matter.
#
# Needs gnuplot (Debian: apt-get install gnuplot-nox); without it the script
# says so and exits with status 3. $GNUPLOT names another gnuplot binary.
set -euo pipefail

me=$(basename "$0")
here=$(cd "$(dirname "$0")/.." && pwd)
required_columns=(epoch train_loss test_loss test_accuracy)

usage() {
    cat <<EOF
usage: $me [-o OUT.png] [--title TEXT] [--size W,H] [--threads N]
       ${me//?/ } [--label NAME] FILE.csv [[--label NAME] FILE.csv]...
       $me --help | --version
Plots the per-epoch CSV files written by \`wordnet --csv FILE\` to one PNG:
loss per epoch (train dashed, test solid) on the left, test accuracy on the
right, one colour per file.

  FILE.csv       a CSV with a header naming epoch, train_loss, test_loss
                 and test_accuracy (other columns are ignored)
  --label NAME   the legend name of the next FILE (default: its file name
                 without .csv)
  -o, --output OUT.png
                 where to write the picture (default curves.png)
  --title TEXT   a title above both panels
  --size W,H     the picture's size in pixels (default 1000,400)
  --threads N    accepted for the tools' common conventions; plotting runs
                 no yoke code, so it changes nothing
  --help         this text
  --version      yoke's version (from lib/yoke.h)
Needs gnuplot: apt-get install gnuplot-nox (Debian/Ubuntu); \$GNUPLOT names
another binary. Exit status: 0 on success, 1 when a file cannot be read or
gnuplot fails, 2 on a usage error, 3 when gnuplot is not installed.
EOF
}

usage_error() {
    echo "$me: $*" >&2
    echo "($me --help tells more)" >&2
    exit 2
}

fail() {
    echo "$me: $*" >&2
    exit 1
}

version() {
    local v
    v=$(sed -n 's/^#define YOKE_VERSION_STRING "\(.*\)"/\1/p' \
            "$here/lib/yoke.h" 2>/dev/null) || true
    [[ -n $v ]] || fail "cannot read the version from $here/lib/yoke.h"
    echo "$me (yoke) $v"
}

# Column number (1-based) of name $2 in the CSV header line $1, or nothing.
column_of() {
    local IFS=, i=1 h
    for h in $1; do
        h=${h%$'\r'}
        [[ $h == "$2" ]] && { echo $i; return; }
        i=$((i + 1))
    done
}

# gnuplot string literal: single quotes, a quote doubled.
quote() { printf "'%s'" "${1//\'/\'\'}"; }

out=curves.png title= size=1000,400 next_label=
files=() labels=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --help|-h) usage; exit 0 ;;
        --version) version; exit 0 ;;
        -o|--output|--title|--size|--label|--threads)
            [[ $# -ge 2 ]] || usage_error "missing value after $1"
            case $1 in
                -o|--output) out=$2 ;;
                --title) title=$2 ;;
                --size) [[ $2 =~ ^[1-9][0-9]*,[1-9][0-9]*$ ]] ||
                            usage_error "--size $2: not W,H in pixels"
                        size=$2 ;;
                --label) next_label=$2 ;;
                --threads) [[ $2 =~ ^[1-9][0-9]*$ ]] ||
                               usage_error "--threads $2: not a valid value" ;;
            esac
            shift 2 ;;
        --) shift; files+=("$@"); for f in "$@"; do
                labels+=("$(basename "${f%.csv}")"); done; break ;;
        -?*) usage_error "unknown option $1" ;;
        *) files+=("$1")
           labels+=("${next_label:-$(basename "${1%.csv}")}")
           next_label=; shift ;;
    esac
done
[[ ${#files[@]} -gt 0 ]] || usage_error "no CSV file given"
[[ -z $next_label ]] || usage_error "--label $next_label: no FILE after it"
[[ $out == *.png ]] || usage_error "the output must end in .png: $out"

gnuplot=${GNUPLOT:-gnuplot}
if ! command -v "$gnuplot" >/dev/null 2>&1; then
    echo "$me: gnuplot is not installed ($gnuplot not found), so nothing" \
         "was plotted." >&2
    echo "  Install it with: apt-get install gnuplot-nox   (Debian/Ubuntu)" >&2
    echo "  or see http://www.gnuplot.info/, or set GNUPLOT to its path." >&2
    exit 3
fi

# Check every file and find its columns; build the two panels' plot lists.
loss_plots=() acc_plots=()
for k in "${!files[@]}"; do
    f=${files[k]}
    [[ -r $f ]] || fail "cannot read $f"
    header=$(head -n 1 "$f")
    declare -A col=()
    for name in "${required_columns[@]}"; do
        col[$name]=$(column_of "$header" "$name")
        [[ -n ${col[$name]} ]] ||
            fail "$f: no column \"$name\" in the header line (wordnet --csv" \
                 "writes ${required_columns[*]})"
    done
    [[ $(wc -l < "$f") -ge 2 ]] || fail "$f: no data rows after the header"
    c=$((k + 1)) file=$(quote "$f") label=${labels[k]}
    loss_plots+=("$file using ${col[epoch]}:${col[train_loss]} with linespoints dt 2 lc $c title $(quote "$label train")")
    loss_plots+=("$file using ${col[epoch]}:${col[test_loss]} with linespoints dt 1 lc $c title $(quote "$label test")")
    acc_plots+=("$file using ${col[epoch]}:${col[test_accuracy]} with linespoints lc $c title $(quote "$label")")
    unset col
done

join() { local IFS=$'\x1f'; local s="$*"; echo "${s//$'\x1f'/, }"; }

script=$(cat <<EOF
set terminal pngcairo size $size font ",10" noenhanced
set output $(quote "$out")
set datafile separator comma
set key autotitle columnheader
set grid
set xlabel "epoch"
set xtics 1
set multiplot layout 1,2 $( [[ -n $title ]] && echo "title $(quote "$title")" )
set title "loss (train dashed, test solid)"
set ylabel "cross-entropy"
set logscale y
set key bottom left
plot $(join "${loss_plots[@]}")
unset logscale y
set title "test accuracy"
set ylabel "accuracy"
set key bottom right
plot $(join "${acc_plots[@]}")
unset multiplot
EOF
)
printf '%s\n' "$script" | "$gnuplot" || fail "gnuplot failed on: ${files[*]}"
[[ -s $out ]] || fail "gnuplot wrote nothing to $out"
echo "$out"
