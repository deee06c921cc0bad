#!/bin/sh
# run.sh -- yoke consumed like any C library (meson test 'install').
#
#   tests/install/run.sh BUILD_DIR SOURCE_DIR VERSION [SANITIZE]
#
# 1. Installs BUILD_DIR (already built) into a temporary staging root
#    (meson install --destdir), as a distribution package would.
# 2. Checks the version: meson's VERSION, YOKE_VERSION_STRING in the
#    installed yoke.h, and pkg-config --modversion agree; the shared library
#    has the soname libyoke.so.<major> and the file of that name exists.
# 3. Builds example.c out of tree with
#        cc example.c $(pkg-config --cflags --libs yoke)
#    (PKG_CONFIG_PATH at the staged .pc, PKG_CONFIG_SYSROOT_DIR at the
#    staging root) and runs it; then links it statically against libyoke.a
#    with pkg-config --static (Requires.private / Libs.private) and runs it.
# 4. Builds example.c as a meson project whose subprojects/yoke is a symlink
#    to SOURCE_DIR (dependency('yoke', fallback : 'yoke'), fallback forced)
#    and runs it.
# SANITIZE is the build's b_sanitize ("none" or e.g. "address,undefined"):
# the example is compiled with the same -fsanitize flags.
set -eu

[ $# -ge 3 ] || { echo "usage: $0 BUILD_DIR SOURCE_DIR VERSION [SANITIZE]" >&2; exit 2; }
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
version=$3
sanitize=${4:-none}
here=$src/tests/install
tmp=$(mktemp -d "${TMPDIR:-/tmp}/yoke-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

fail() { echo "install: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

cflags_san=
if [ "$sanitize" != none ] && [ -n "$sanitize" ]; then
    cflags_san="-fsanitize=$sanitize"
fi

step "meson install --destdir $tmp/root"
meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "meson install"; }
pc=$(find "$tmp/root" -name yoke.pc | head -n 1)
[ -n "$pc" ] || fail "no yoke.pc installed"
header=$(find "$tmp/root" -name yoke.h | head -n 1)
[ -n "$header" ] || fail "no yoke.h installed"
for h in yoke_check.h yoke_optim.h yoke_io.h yoke_nn.h yoke_inspect.h; do
    [ -f "$(dirname "$header")/$h" ] || fail "$h is not installed beside yoke.h"
done
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
libdir=$tmp/root$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable=libdir yoke)

step "version $version"
hv=$(sed -n 's/^#define YOKE_VERSION_STRING "\(.*\)"$/\1/p' "$header")
[ "$hv" = "$version" ] || fail "yoke.h says $hv, meson says $version"
pv=$(pkg-config --modversion yoke)
[ "$pv" = "$version" ] || fail "yoke.pc says $pv, meson says $version"
major=${version%%.*}
so=$(readelf -d "$libdir/libyoke.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$so" = "libyoke.so.$major" ] || fail "soname is '$so', want libyoke.so.$major"
[ -e "$libdir/$so" ] || fail "$so is not installed in $libdir"
echo "soname $so"

step "cc example.c \$(pkg-config --cflags --libs yoke)"
# shellcheck disable=SC2046 # pkg-config's output is meant to be split
cc -std=c11 -Wall -Wextra -Werror $cflags_san "$here/example.c" -o "$tmp/example_shared" \
    $(pkg-config --cflags --libs yoke)
readelf -d "$tmp/example_shared" | grep -q "NEEDED.*\[$so\]" ||
    fail "example_shared does not link $so"
LD_LIBRARY_PATH="$libdir" "$tmp/example_shared" >"$tmp/out.txt" ||
    { cat "$tmp/out.txt"; fail "example_shared failed"; }
grep -q "yoke $version: ok" "$tmp/out.txt" || fail "example_shared said: $(cat "$tmp/out.txt")"

step "static: libyoke.a with pkg-config --static"
# -l:libyoke.a picks the archive over the shared library; everything else
# comes from the .pc's Requires.private and Libs.private.
libs=$(pkg-config --static --libs yoke | sed 's/-lyoke\b/-l:libyoke.a/')
# shellcheck disable=SC2086
cc -std=c11 $cflags_san "$here/example.c" -o "$tmp/example_static" \
    $(pkg-config --cflags yoke) $libs
if readelf -d "$tmp/example_static" | grep -q "NEEDED.*libyoke"; then
    fail "example_static still needs libyoke.so"
fi
"$tmp/example_static" >"$tmp/out.txt" ||
    { cat "$tmp/out.txt"; fail "example_static failed"; }
grep -q "yoke $version: ok" "$tmp/out.txt" || fail "example_static said: $(cat "$tmp/out.txt")"

step "meson subproject: dependency('yoke', fallback : 'yoke')"
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
proj=$tmp/consumer
mkdir -p "$proj/subprojects"
cp "$here/consumer/meson.build" "$here/example.c" "$proj/"
ln -s "$src" "$proj/subprojects/yoke"
meson setup "$tmp/consumer-build" "$proj" --force-fallback-for=yoke \
    -Dyoke:tests=disabled -Db_sanitize="$sanitize" -Db_lundef=false \
    >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; fail "meson setup of the consumer"; }
# Only what the example needs: yoke's library, not its tools.
ninja -C "$tmp/consumer-build" example >"$tmp/ninja.log" 2>&1 ||
    { cat "$tmp/ninja.log" >&2; fail "building the consumer"; }
"$tmp/consumer-build/example" >"$tmp/out.txt" ||
    { cat "$tmp/out.txt"; fail "the subproject example failed"; }
grep -q "yoke $version: ok" "$tmp/out.txt" || fail "subproject example said: $(cat "$tmp/out.txt")"

echo "install: ok"
