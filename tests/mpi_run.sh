#!/bin/sh
# mpi_run.sh NP PROGRAM [ARGS...] -- runs PROGRAM on NP ranks of this
# machine, for the meson tests mpi_np1 / mpi_np2.
#
# - Open MPI needs --oversubscribe (more ranks than cores) and
#   --allow-run-as-root (CI containers run as root); other MPIs take neither.
# - Containers often forbid the cross-memory attach that Open MPI's shared
#   memory transport uses for large messages; copying through the shared
#   segment instead always works.
# - Under AddressSanitizer, Open MPI's own allocations (MPI_Init's, its
#   plugins') are reported as leaks at exit. They are suppressed by library;
#   yoke's allocations never come from inside MPI, so a leak of yoke's is
#   still reported. The slow unwinder is needed for the stacks to reach the
#   MPI library (it is built without frame pointers).
set -eu
np=$1
shift

supp=$(mktemp "${TMPDIR:-/tmp}/yoke_mpi_lsan.XXXXXX")
trap 'rm -f "$supp"' EXIT
cat > "$supp" <<'EOF'
leak:libmpi.so
leak:libopen-pal.so
leak:libopen-rte.so
leak:libpmix.so
leak:libhwloc.so
leak:libevent
leak:PMPI_Init_thread
leak:PMPI_Finalize
EOF
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$supp"
export ASAN_OPTIONS LSAN_OPTIONS

if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
    OMPI_MCA_btl_vader_single_copy_mechanism=none
    export OMPI_MCA_btl_vader_single_copy_mechanism
    mpirun -np "$np" --oversubscribe --allow-run-as-root "$@"
else
    mpirun -np "$np" "$@"
fi
