#!/usr/bin/env bash
# tests/fuzz/run.sh -- builds the libFuzzer targets of tests/fuzz/ with clang
# (AddressSanitizer, UndefinedBehaviorSanitizer, LeakSanitizer) and runs each
# for a bounded time; fails on any crash, leak, timeout or sanitizer report.
#
#   tests/fuzz/run.sh SECONDS [TARGET...]   fuzz each target SECONDS seconds
#   tests/fuzz/run.sh --replay [TARGET...]  run the seed corpus and the
#                                           committed crashers once each
#   tests/fuzz/run.sh --build               only build
#   tests/fuzz/run.sh --make-corpus         rewrite the generated seeds
#
# TARGET is case, safetensors, vec or embedding_bag (default: all four).
# Environment: BUILD (default build-fuzz), CC (default clang), RUNS_LOG
# (append "target runs seconds" lines there). The committed seed corpus in
# tests/fuzz/corpus/TARGET is copied to $BUILD/corpus/TARGET, which the run
# grows; the committed one stays small. A crashing input is kept in
# $BUILD/artifacts/TARGET/: commit it under tests/fuzz/crashers/TARGET/ with
# a note in tests/fuzz/crashers/README.md, and it is replayed by --replay.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=${BUILD:-build-fuzz}
CC=${CC:-clang}
ALL_TARGETS=(case safetensors vec embedding_bag)

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

mode=fuzz
seconds=0
case "${1:-}" in
    --replay) mode=replay; shift ;;
    --build) mode=build; shift ;;
    --make-corpus) mode=corpus; shift ;;
    ''|-h|--help) usage ;;
    *) [[ "$1" =~ ^[0-9]+$ ]] || usage; seconds=$1; shift ;;
esac
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
    [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "run.sh: no target $t" >&2; exit 2; }
done

# ------------------------------------------------------------------ build
# The library is compiled from source with coverage instrumentation
# (fuzzer-no-link) and the sanitizers; each target links it with libFuzzer.
# Without -fopenmp: kernels run on one thread, which is what a fuzzer wants.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -Ilib -Itools $SAN"
LIBS="-lblis -lcjson -lm"
mkdir -p "$BUILD/obj"

# Rebuilds an object when its source or any header is newer.
newest_header=$(ls -t lib/*.h tools/*.h tests/fuzz/*.h ops/ops.def | head -n 1)
compile() { # source object extra-flags
    if [ ! -f "$2" ] || [ "$1" -nt "$2" ] || [ "$newest_header" -nt "$2" ] ||
       [ "$0" -nt "$2" ]; then
        echo "  CC $1"
        $CC $CFLAGS $3 -c "$1" -o "$2"
    fi
}

lib_objs=()
for src in lib/*.c ops/*.c; do
    [ "$src" = lib/mpi.c ] && continue # libyoke_mpi, not libyoke
    obj="$BUILD/obj/$(echo "$src" | tr / _).o"
    compile "$src" "$obj" "-fsanitize=fuzzer-no-link"
    lib_objs+=("$obj")
done
compile tools/case.c "$BUILD/obj/tools_case.c.o" "-fsanitize=fuzzer-no-link"

for t in "${targets[@]}"; do
    obj="$BUILD/obj/fuzz_$t.o"
    compile "tests/fuzz/fuzz_$t.c" "$obj" "-fsanitize=fuzzer-no-link -Wall -Wextra -Werror"
    extra=()
    [ "$t" = case ] && extra=("$BUILD/obj/tools_case.c.o")
    if [ ! -x "$BUILD/fuzz_$t" ] || [ -n "$(find "$BUILD/obj" -newer "$BUILD/fuzz_$t" -name '*.o' | head -n 1)" ]; then
        echo "  LINK fuzz_$t"
        $CC $SAN -fsanitize=fuzzer "$obj" "${extra[@]}" "${lib_objs[@]}" \
            $LIBS -o "$BUILD/fuzz_$t"
    fi
done
[ "$mode" = build ] && exit 0
if [ "$mode" = corpus ]; then
    $CC $CFLAGS tests/fuzz/make_corpus.c "${lib_objs[@]}" $LIBS \
        -fsanitize=fuzzer-no-link -o "$BUILD/make_corpus"
    mkdir -p tests/fuzz/corpus/safetensors tests/fuzz/corpus/embedding_bag
    "$BUILD/make_corpus"
    exit 0
fi

# -------------------------------------------------------------------- run
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Kernels and BLIS on one thread: reproducible and cheap.
export OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1

failed=0
summary=()
for t in "${targets[@]}"; do
    exe="$BUILD/fuzz_$t"
    log="$BUILD/fuzz_$t.log"
    flags=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024
           -print_final_stats=1)
    [ -f "tests/fuzz/$t.dict" ] && flags+=("-dict=tests/fuzz/$t.dict")
    if [ "$mode" = replay ]; then
        inputs=(tests/fuzz/corpus/"$t"/*)
        [ -d "tests/fuzz/crashers/$t" ] && inputs+=(tests/fuzz/crashers/"$t"/*)
        echo "== $t: replaying ${#inputs[@]} inputs"
        if "$exe" "${flags[@]}" "${inputs[@]}" >"$log" 2>&1; then
            summary+=("$t: ${#inputs[@]} inputs replayed, ok")
        else
            summary+=("$t: FAILED replaying (see $log)")
            failed=1
        fi
        continue
    fi
    corpus="$BUILD/corpus/$t"
    artifacts="$BUILD/artifacts/$t/"
    mkdir -p "$corpus" "$artifacts"
    cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    echo "== $t: fuzzing for $seconds s"
    status=0
    "$exe" "${flags[@]}" -max_total_time="$seconds" \
        -artifact_prefix="$artifacts" "$corpus" >"$log" 2>&1 || status=$?
    # "stat::number_of_executed_units: N" (print_final_stats), else the
    # last "#N" status line.
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 || true)
    files=$(ls "$corpus" | wc -l)
    [ -n "${RUNS_LOG:-}" ] && echo "$t ${runs:-0} $seconds" >>"$RUNS_LOG"
    if [ $status -ne 0 ] ||
       grep -qE "ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:|broken promise|deadly signal" "$log"; then
        failed=1
        summary+=("$t: FAILED after ${runs:-?} executions (exit $status); input in $artifacts, log $log")
        grep -E "ERROR:|runtime error:|broken promise|SUMMARY:|Test unit written" "$log" | head -n 8 >&2 || true
    else
        summary+=("$t: ${runs:-?} executions in $seconds s, $cov, corpus $files files, no findings")
    fi
done

echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
exit $failed
