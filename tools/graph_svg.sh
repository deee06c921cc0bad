#!/bin/sh
# graph_svg.sh -- render a yoke graph to SVG with Graphviz.
#
#   tools/graph_svg.sh GRAPH.dot OUT.svg   render a DOT file written by
#                                          yk_graph_dump_dot
#   tools/graph_svg.sh --seed OUT.svg      the seed's tied three-use step:
#                                          runs dump_seed_graph ($YOKE_BUILD,
#                                          else the newest build*/) and keeps
#                                          OUT.dot and OUT.json beside OUT.svg
#
# Needs Graphviz's `dot` (apt-get install graphviz). Without it the script
# says so and exits with status 3; with --seed the .dot and .json files are
# still written, so they can be rendered elsewhere.
set -eu

usage() {
    echo "usage: $0 GRAPH.dot OUT.svg | $0 --seed OUT.svg" >&2
    exit 2
}

[ $# -eq 2 ] || usage
case "$2" in *.svg) ;; *) echo "$0: OUT must end in .svg: $2" >&2; exit 2 ;; esac
out=$2

if [ "$1" = "--seed" ]; then
    here=$(cd "$(dirname "$0")/.." && pwd)
    if [ -n "${YOKE_BUILD:-}" ]; then
        exe=$YOKE_BUILD/dump_seed_graph
        [ -x "$exe" ] || exe=
    else # the most recently built one
        exe=$(ls -t "$here"/build*/dump_seed_graph 2>/dev/null | head -n 1)
    fi
    if [ -z "$exe" ]; then
        echo "$0: dump_seed_graph not found: build yoke first (meson setup" \
             "build && ninja -C build) or set YOKE_BUILD" >&2
        exit 1
    fi
    in=${out%.svg}.dot
    "$exe" --dot "$in" --json "${out%.svg}.json"
else
    in=$1
    [ -r "$in" ] || { echo "$0: cannot read $in" >&2; exit 1; }
fi

if ! command -v dot >/dev/null 2>&1; then
    echo "$0: Graphviz's dot is not installed, so $in was not rendered." >&2
    echo "  Install it with: apt-get install graphviz   (Debian/Ubuntu)" >&2
    echo "  or see https://graphviz.org/download/, then run:" >&2
    echo "  dot -Tsvg $in -o $out" >&2
    exit 3
fi
dot -Tsvg "$in" -o "$out"
echo "$out"
