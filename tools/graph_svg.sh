#!/bin/sh
# graph_svg.sh -- render a yoke graph to SVG with Graphviz.
#
#   tools/graph_svg.sh GRAPH.dot OUT.svg   render a DOT file written by
#                                          yk_graph_dump_dot
#   tools/graph_svg.sh --seed OUT.svg      the seed's tied three-use step:
#                                          runs dump_seed_graph ($YOKE_BUILD,
#                                          else the newest build*/) and keeps
#                                          OUT.dot and OUT.json beside OUT.svg
#   tools/graph_svg.sh --help | --version
#
# Needs Graphviz's `dot` (apt-get install graphviz). Without it the script
# says so and exits with status 3; with --seed the .dot and .json files are
# still written, so they can be rendered elsewhere.
set -eu

me=$(basename "$0")
here=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    cat <<EOF
usage: $me [--threads N] GRAPH.dot OUT.svg
       $me [--threads N] --seed OUT.svg
       $me --help | --version
Renders a graph dumped by yk_graph_dump_dot to SVG with Graphviz's dot.

  GRAPH.dot OUT.svg  render that DOT file
  --seed OUT.svg     run dump_seed_graph (the seed's tied three-use step;
                     from \$YOKE_BUILD, else the newest build*/ of this
                     tree) and render its graph; OUT.dot and OUT.json are
                     kept beside OUT.svg
  --threads N        threads for dump_seed_graph (with --seed; rendering a
                     DOT file runs no yoke code and ignores it)
  --help             this text
  --version          yoke's version (from lib/yoke.h)
Needs Graphviz (apt-get install graphviz). Exit status: 0 on success, 1 on
a failure, 2 on a usage error, 3 when Graphviz is not installed.
EOF
}

usage_error() {
    echo "$me: $*" >&2
    echo "($me --help tells more)" >&2
    exit 2
}

version() {
    v=$(sed -n 's/^#define YOKE_VERSION_STRING "\(.*\)"/\1/p' \
            "$here/lib/yoke.h" 2>/dev/null)
    [ -n "$v" ] || { echo "$me: cannot read the version from $here/lib/yoke.h" >&2
                     exit 1; }
    echo "$me (yoke) $v"
}

threads=1 seed=no
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h) usage; exit 0 ;;
        --version) version; exit 0 ;;
        --threads)
            [ $# -ge 2 ] || usage_error "missing number after --threads"
            case "$2" in ''|*[!0-9]*|0*) usage_error "--threads $2: not a valid value" ;; esac
            threads=$2; shift 2 ;;
        --seed) seed=yes; shift ;;
        --) shift; break ;;
        -?*) usage_error "unknown option $1" ;;
        *) break ;;
    esac
done

if [ $seed = yes ]; then
    [ $# -eq 1 ] || usage_error "--seed takes one argument, OUT.svg"
else
    [ $# -eq 2 ] || usage_error "give GRAPH.dot OUT.svg, or --seed OUT.svg"
fi
eval "out=\${$#}"
case "$out" in *.svg) ;; *) usage_error "OUT must end in .svg: $out" ;; esac

if [ $seed = yes ]; then
    if [ -n "${YOKE_BUILD:-}" ]; then
        exe=$YOKE_BUILD/dump_seed_graph
        [ -x "$exe" ] || exe=
    else # the most recently built one
        exe=$(ls -t "$here"/build*/dump_seed_graph 2>/dev/null | head -n 1)
    fi
    if [ -z "$exe" ]; then
        echo "$me: dump_seed_graph not found: build yoke first (meson setup" \
             "build && ninja -C build) or set YOKE_BUILD" >&2
        exit 1
    fi
    in=${out%.svg}.dot
    "$exe" --threads "$threads" --dot "$in" --json "${out%.svg}.json"
else
    in=$1
    [ -r "$in" ] || { echo "$me: cannot read $in" >&2; exit 1; }
fi

if ! command -v dot >/dev/null 2>&1; then
    echo "$me: Graphviz's dot is not installed, so $in was not rendered." >&2
    echo "  Install it with: apt-get install graphviz   (Debian/Ubuntu)" >&2
    echo "  or see https://graphviz.org/download/, then run:" >&2
    echo "  dot -Tsvg $in -o $out" >&2
    exit 3
fi
dot -Tsvg "$in" -o "$out"
echo "$out"
