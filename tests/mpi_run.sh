#!/bin/sh
# mpi_run.sh NP PROGRAM [ARGS...] -- runs PROGRAM on NP ranks of this
# machine. Open MPI needs --oversubscribe (more ranks than cores) and
# --allow-run-as-root (CI containers run as root); other MPIs take neither.
np=$1
shift
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
    exec mpirun -np "$np" --oversubscribe --allow-run-as-root "$@"
fi
exec mpirun -np "$np" "$@"
