#!/usr/bin/env bash
# Runs a test binary as rank 0 of `mpirun -n 2` with another build of it as rank 1 (the same
# binary without its GNU build id), for tests/mpi.rs's a_rank_of_another_build_is_refused.
# Used as cargo's runner: $1 is the test binary, the rest its arguments.
set -euo pipefail
binary=$1
shift
other=$(mktemp /tmp/multiprocess-other-build.XXXXXX)
trap 'rm -f "$other"' EXIT
objcopy --remove-section .note.gnu.build-id "$binary" "$other"
chmod +x "$other"
MULTIPROCESS_MPI_FOREIGN_TEST=1 timeout -s KILL 120 \
    mpirun --oversubscribe --allow-run-as-root -n 1 "$binary" "$@" : -n 1 "$other" "$@"
