#!/usr/bin/env bash
# cli.sh -- the command-line conventions of the programs in tools/ and
# models/ (issue 11): every program
#   - prints its usage to stdout and exits 0 on --help,
#   - prints yoke's version (lib/yoke.h's YOKE_VERSION_STRING) to stdout and
#     exits 0 on --version,
#   - on an unknown option or a bad --threads value exits non-zero with a
#     message on stderr and nothing on stdout,
#   - runs with --threads 1 (a short run of each, chosen to be cheap);
# and tools/plot_curves.sh plots a tiny hand-written CSV to a PNG (checked
# by its magic bytes) when gnuplot is installed, and names gnuplot-nox when
# it is not.
#
#   tests/cli.sh SOURCE_ROOT PROGRAM...
#
# PROGRAMs are the built executables (meson passes their full paths); the
# shell tools are found under SOURCE_ROOT/tools. Prints one line per check
# and exits 1 when any failed.
set -u

if [[ $# -lt 1 || ! -r $1/lib/yoke.h ]]; then
    echo "usage: tests/cli.sh SOURCE_ROOT PROGRAM..." >&2
    exit 2
fi
src=$1
shift
version=$(sed -n 's/^#define YOKE_VERSION_STRING "\(.*\)"/\1/p' \
              "$src/lib/yoke.h")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0 checks=0

fail() { echo "FAIL  $*"; failures=$((failures + 1)); }
ok() { echo "ok    $*"; }

# Runs a command with stdout, stderr and status in $tmp/out, $tmp/err, $rc.
run() {
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    checks=$((checks + 1))
}

# What the last run printed, for a failure's line.
printed() {
    echo "(status $rc; stdout: $(head -c 300 "$tmp/out" | tr '\n' '|');" \
         "stderr: $(head -c 300 "$tmp/err" | tr '\n' '|'))"
}

expect_success() { # LABEL: status 0, something on stdout, nothing on stderr
    if [[ $rc -eq 0 && -s $tmp/out && ! -s $tmp/err ]]; then ok "$1"
    else fail "$1: expected status 0, stdout, empty stderr $(printed)"; fi
}

expect_usage_error() { # LABEL: non-zero, nothing on stdout, a message on stderr
    if [[ $rc -ne 0 && ! -s $tmp/out && -s $tmp/err ]]; then ok "$1"
    else fail "$1: expected a non-zero status, empty stdout, a message on" \
              "stderr $(printed)"; fi
}

# The conventions every program shares; CMD is the program (and, for a
# script, its interpreter).
check_conventions() {
    local name=$1
    shift
    run "$@" --help
    expect_success "$name --help"
    run "$@" --version
    if [[ $rc -eq 0 && ! -s $tmp/err ]] && grep -qF "$version" "$tmp/out"
    then ok "$name --version prints $version"
    else fail "$name --version: expected status 0 and \"$version\" on" \
              "stdout $(printed)"; fi
    run "$@" --no-such-option
    expect_usage_error "$name --no-such-option"
    run "$@" --threads 0
    expect_usage_error "$name --threads 0"
    run "$@" --threads nine
    expect_usage_error "$name --threads nine"
}

# A short run of each program with --threads 1: it must succeed.
check_threads_run() {
    local name=$1 exe=$2
    case $name in
        gradcheck) run "$exe" --threads 1 --all-ops --op add ;;
        bench) run "$exe" --threads 1 --list ;;
        seed_examples) run "$exe" --threads 1 embedding ;;
        dump_seed_graph) run "$exe" --threads 1 --json "$tmp/graph.json" ;;
        long_run) run "$exe" --threads 1 --steps 3 --every 1 --warmup 1 \
                      --check ;;
        wordnet) run "$exe" --threads 1 --data "$src/tests/data/wordnet" \
                     --dim 8 --extra-dim 4 --hidden 8 --buckets 0 \
                     --epochs 1 --max-steps 2 --no-huge-pages \
                     --csv "$tmp/wordnet.csv" ;;
        *) fail "$name: no --threads 1 run known for it (add one here)"
           return ;;
    esac
    if [[ $rc -eq 0 ]]; then ok "$name --threads 1 runs"
    else fail "$name --threads 1: expected status 0 $(printed)"; fi
}

declare -A built=()
for exe in "$@"; do
    name=$(basename "$exe")
    built[$name]=$exe
    check_conventions "$name" "$exe"
    check_threads_run "$name" "$exe"
done

# ------------------------------------------------------------ shell tools
graph_svg=$src/tools/graph_svg.sh
plot=$src/tools/plot_curves.sh
check_conventions graph_svg.sh bash "$graph_svg"
check_conventions plot_curves.sh bash "$plot"

if [[ -n ${built[dump_seed_graph]:-} ]]; then
    YOKE_BUILD=$(dirname "${built[dump_seed_graph]}") \
        run bash "$graph_svg" --threads 1 --seed "$tmp/seed.svg"
    if command -v dot >/dev/null 2>&1; then
        if [[ $rc -eq 0 ]] && grep -q "<svg" "$tmp/seed.svg"; then
            ok "graph_svg.sh --threads 1 --seed renders an SVG"
        else fail "graph_svg.sh --seed: expected an SVG $(printed)"; fi
    elif [[ $rc -eq 3 && -s $tmp/seed.dot ]] &&
         grep -q "apt-get install graphviz" "$tmp/err"; then
        ok "graph_svg.sh --seed without Graphviz: names the package, keeps" \
           "the DOT file"
    else fail "graph_svg.sh --seed without Graphviz $(printed)"; fi
fi

# ------------------------------------------------------------- the plots
# Two tiny runs by hand, in wordnet --csv's format (columns by name, so the
# second file's order differs on purpose).
cat >"$tmp/tied.csv" <<'EOF'
epoch,train_loss,test_loss,test_accuracy,examples_per_s,epoch_seconds,train_cpu_seconds,elapsed_seconds
1,1.2,0.85,0.76,10000.0,10.0,20.0,10.0
2,0.09,1.01,0.77,11000.0,9.0,18.0,19.0
3,0.003,1.06,0.78,12000.0,8.5,17.0,27.5
EOF
cat >"$tmp/untied.csv" <<'EOF'
epoch,test_accuracy,test_loss,train_loss
1,0.75,0.86,1.3
2,0.76,1.02,0.1
3,0.77,1.07,0.004
EOF
printf 'epoch,train_loss\n1,0.5\n' >"$tmp/bad.csv"

is_png() { # the 8 magic bytes of PNG: 89 50 4e 47 0d 0a 1a 0a
    [[ $(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n') == \
       89504e470d0a1a0a ]]
}

if command -v gnuplot >/dev/null 2>&1; then
    run bash "$plot" --threads 1 -o "$tmp/curves.png" --title "cli test" \
        --label tied "$tmp/tied.csv" --label untied "$tmp/untied.csv"
    if [[ $rc -eq 0 && -s $tmp/curves.png ]] && is_png "$tmp/curves.png"; then
        ok "plot_curves.sh writes a PNG of two hand-written CSV files"
    else fail "plot_curves.sh: expected a PNG $(printed)"; fi
    if [[ -s $tmp/wordnet.csv ]]; then
        run bash "$plot" -o "$tmp/wordnet.png" "$tmp/wordnet.csv"
        if [[ $rc -eq 0 ]] && is_png "$tmp/wordnet.png"; then
            ok "plot_curves.sh plots what wordnet --csv wrote"
        else fail "plot_curves.sh on wordnet's CSV $(printed)"; fi
    fi
    run bash "$plot" -o "$tmp/bad.png" "$tmp/bad.csv"
    if [[ $rc -ne 0 && ! -e $tmp/bad.png ]] &&
       grep -q 'no column "test_loss"' "$tmp/err"; then
        ok "plot_curves.sh names the column a CSV lacks"
    else fail "plot_curves.sh on a CSV without test_loss $(printed)"; fi
else
    echo "skip  plotting itself: gnuplot is not installed"
fi
# Without gnuplot (here: GNUPLOT names no program) the tool says how to get
# it and plots nothing.
GNUPLOT=$tmp/no-gnuplot-here run bash "$plot" -o "$tmp/none.png" \
    "$tmp/tied.csv"
if [[ $rc -ne 0 && ! -s $tmp/out && ! -e $tmp/none.png ]] &&
   grep -q "apt-get install gnuplot-nox" "$tmp/err"; then
    ok "plot_curves.sh without gnuplot names gnuplot-nox"
else fail "plot_curves.sh without gnuplot $(printed)"; fi

echo "$((checks - failures)) of $checks checks passed"
[[ $failures -eq 0 ]]
