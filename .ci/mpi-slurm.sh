#!/usr/bin/env bash
# The MPI pool (cargo feature `mpi`, issue 15) under Slurm, on this one machine: a one-node
# cluster (munged, slurmctld, slurmd started directly, no systemd) with a generated slurm.conf
# in a temp dir (see ../shared/design/distributed.md §3, §10). Each run is under a hard limit:
#   a. SPMD, direct launch: `srun --mpi=pmix -n 3` runs every test of tests/mpi.rs (rank 0 runs
#      them, ranks 1-2 serve its pools); pool_over_mpi_ranks must pass;
#   b. a worker rank killed mid-map (a_rank_killed_mid_map):
#      b1. under `salloc -n 3 mpirun -n 3 --mca orte_enable_recovery 1`: must pass;
#      b2. under `srun -K0 --no-kill --mpi=pmix -n 3`: Slurm 22.05's PMIx plugin kills the
#          whole step when a task dies (its PMIx error handler calls slurm_kill_job_step), so
#          the test cannot pass there. That outcome is reported, not failed; any other failure
#          fails the run, and a pass is reported as news;
#   c. spawn mode inside an allocation: `salloc -n 3 mpirun -n 1`, pool_over_spawned_ranks
#      must pass. (A spawned rank killed is run by .ci/run, without Slurm.)
# A test passes when rank 0's output (told apart by `srun -l` / `mpirun --tag-output`) says so
# and the test did not skip its checks; no process of a run may outlive it by 10 s.
# Slurm and munge are installed (Debian packages) if missing. Everything started here is
# stopped at the end whatever happens and the temp dir removed; a process left behind fails
# the run.
#
# Usage (as root):  .ci/mpi-slurm.sh <test-binary>
#   <test-binary>: tests/mpi.rs compiled by `cargo test --features mpi --test mpi --no-run`, e.g.
#   .ci/mpi-slurm.sh "$(cargo test --features mpi --test mpi --no-run --message-format=json \
#       | jq -r 'select(.target.name == "mpi" and .profile.test) | .executable')"
#   (or the path cargo prints as "Executable tests/mpi.rs (target/debug/deps/mpi-…)").
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <test-binary of tests/mpi.rs>" >&2; exit 2; }
exe=$(realpath "$1")
[ -x "$exe" ] || { echo "not an executable: $exe" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: runs as root (it starts munged, slurmctld, slurmd)" >&2; exit 2; }
started_at=$SECONDS
stage_at=$SECONDS
stage() { # a stage header, with the time the previous stage took
    echo "== slurm: $* (previous stage: $((SECONDS - stage_at)) s, total $((SECONDS - started_at)) s)"
    stage_at=$SECONDS
}
daemons=(slurmctld slurmscriptd slurmd slurmstepd)
running() { # "pid command" of the named processes (exact names) that run (zombies aside)
    local n pid
    for n in "$@"; do
        for pid in $(pgrep -x "$n"); do
            grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null || ps -o pid=,args= -p "$pid"
        done
    done
    return 0
}

# --- 1. Slurm and munge ----------------------------------------------------------------------
stage "install Slurm and munge if missing"
if ! command -v srun >/dev/null 2>&1 || [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmd ] \
    || [ ! -x /usr/sbin/munged ]; then
    slurm_packages=(slurmctld slurmd slurm-client munge)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${slurm_packages[@]}" >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${slurm_packages[@]}" >/dev/null; }
    echo "installed ${slurm_packages[*]} in $((SECONDS - stage_at)) s"
fi
command -v mpirun >/dev/null || { echo "no mpirun: Open MPI is installed by .ci/run" >&2; exit 1; }

# Daemons of another cluster here would take the same ports: refuse to start.
if [ -n "$(running "${daemons[@]}")" ]; then
    echo "Slurm daemons already run here; this script starts its own cluster:" >&2
    running "${daemons[@]}" >&2
    exit 1
fi

dir=$(mktemp -d /tmp/multiprocess-slurm.XXXXXX)
# Every process started here (daemons, launchers, ranks, steps) has this in its environment,
# and the teardown ends those and only those (other jobs may run mpirun on this machine).
mark=MULTIPROCESS_SLURM_CI=$dir
ours() { # pids of the processes marked so (zombies aside)
    local p
    for p in /proc/[0-9]*; do
        grep -qzxF "$mark" "$p/environ" 2>/dev/null \
            && ! grep -q '^State:.*Z' "$p/status" 2>/dev/null && echo "${p#/proc/}"
    done
    return 0
}
started_munged=no
teardown() {
    local rc=$? leftover f pid
    set +e
    echo "== slurm: teardown (exit status so far $rc, total $((SECONDS - started_at)) s)"
    if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        scancel --quiet --user=root
        for _ in $(seq 10); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    for f in slurmd slurmctld; do
        [ -f "$dir/$f.pid" ] && kill "$(cat "$dir/$f.pid")" 2>/dev/null
    done
    for _ in $(seq 20); do [ -z "$(running slurmctld slurmscriptd slurmd)" ] && break; sleep 0.5; done
    if [ "$started_munged" = yes ] && [ -f /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null
    fi
    for _ in $(seq 20); do [ -z "$(ours)" ] && break; sleep 0.5; done
    # What is still there (steps, launchers, ranks, daemons that did not end when asked).
    for pid in $(ours); do
        echo "killing $(ps -o pid=,args= -p "$pid" 2>/dev/null)"
        kill -9 "$pid" 2>/dev/null
    done
    sleep 0.5
    leftover=$(for pid in $(ours); do ps -o pid=,args= -p "$pid"; done
        running "${daemons[@]}"; [ "$started_munged" = no ] || running munged)
    rm -rf "$dir"
    if [ -n "$leftover" ]; then
        echo "left behind:" >&2
        echo "$leftover" >&2
        rc=1
    fi
    echo "== slurm: done in $((SECONDS - started_at)) s, exit status $rc"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 2. munged, slurmctld, slurmd ------------------------------------------------------------
stage "start munged, slurmctld, slurmd"
if [ ! -s /etc/munge/munge.key ]; then # the Debian package makes one; make it if it is gone
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else create-munge-key -f; fi
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 700 /etc/munge
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
if [ -z "$(running munged)" ]; then
    runuser -u munge -- env "$mark" /usr/sbin/munged
    started_munged=yes
fi
munge -n | unmunge >/dev/null || { echo "munge does not work" >&2; exit 1; }

node=$(hostname -s)
mkdir -p "$dir/state" "$dir/spool"
export SLURM_CONF=$dir/slurm.conf # always: without it Slurm looks for a "configless" DNS record
cat >"$SLURM_CONF" <<EOF
ClusterName=multiprocess-ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=ci Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
srun --version
srun --mpi=list 2>&1 | grep -qw pmix || { echo "Slurm has no PMIx plugin:" >&2; srun --mpi=list >&2; exit 1; }
env "$mark" slurmctld -f "$SLURM_CONF"
env "$mark" slurmd -f "$SLURM_CONF" -N "$node"
state=
for _ in $(seq 60); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
done
if [ "$state" != idle ]; then
    echo "node $node not idle after 30 s (sinfo: '$state')" >&2
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2
    exit 1
fi
sinfo

# --- the runs --------------------------------------------------------------------------------
failed=()
# Rank 0's standard output, out of a launcher's labelled output (stdin to stdout):
# `srun -l` puts "0: " before each whole line of task 0; `mpirun --tag-output` puts
# "[1,0]<stdout>:" before each piece rank 0 writes, even in the middle of a line (a newline
# belongs to the piece before it). The pieces of [1,0]<stdout> are put together again.
rank0_of_srun() { sed -n 's/^0: //p'; }
rank0_of_mpirun() {
    perl -ne 'chomp; my $cur;
        for my $x (split /(\[\d+,\d+\]<std(?:out|err|diag)>:)/) {
            if ($x =~ /^\[\d+,\d+\]<std(?:out|err|diag)>:$/) { $cur = $x; next }
            $s .= $x if defined $cur && $cur eq "[1,0]<stdout>:";
        }
        $s .= "\n" if defined $cur && $cur eq "[1,0]<stdout>:";
        END { print $s }'
}
# run NAME LIMIT LAUNCHER COMMAND...: runs COMMAND under `timeout -s KILL LIMIT`, its output
# in $dir/NAME.out (printed) and rank 0's (rank0_of_LAUNCHER) in $dir/NAME.rank0; the exit
# status in $rc.
run() {
    local name=$1 limit=$2 launcher=$3 t0=$SECONDS
    shift 3
    echo "\$ $*"
    rc=0
    env "$mark" timeout -s KILL "$limit" "$@" >"$dir/$name.out" 2>&1 || rc=$?
    cat "$dir/$name.out"
    "rank0_of_$launcher" <"$dir/$name.out" >"$dir/$name.rank0"
    echo "-- $name: exit status $rc after $((SECONDS - t0)) s (limit $limit s)"
    if [ "$rc" -eq 137 ] && grep -q "^test result: " "$dir/$name.rank0"; then
        echo "-- $name: rank 0 ended its tests, but the launcher was still running at the limit" >&2
    fi
    # A launcher killed at the limit leaves its job allocated: every job is cancelled (the
    # cluster is this script's own). Nothing of the run may outlive it (ranks, launchers,
    # steps): given 10 s to end.
    scancel --quiet --user=root || true
    local left
    for _ in $(seq 20); do
        left=$(for pid in $(ours); do ps -o pid=,comm=,args= -p "$pid"; done \
            | awk '$2 !~ /^(slurmctld|slurmscriptd|slurmd|munged)$/')
        [ -z "$left" ] && break
        sleep 0.5
    done
    if [ -n "$left" ]; then
        echo "-- $name: processes outlived the run by 10 s (killed):" >&2
        echo "$left" >&2
        awk '{ print $1 }' <<<"$left" | xargs -r kill -9 2>/dev/null || true
        failed+=("$name-outlived")
    fi
}
# passed NAME TEST [LINE]: rank 0 ran TEST, which passed, did not skip its checks (the output
# it captured, shown by --show-output, does not say so), and printed LINE (a fixed string) if
# given.
passed() {
    local out=$dir/$1.rank0 test=$2 line=${3:-}
    grep -qx "test $test \.\.\. ok" "$out" \
        && grep -q "^test result: ok\. [1-9][0-9]* passed; 0 failed" "$out" \
        && ! grep -A1 -Fx -- "---- $test stdout ----" "$out" | grep -q "nothing checked\|runs only" \
        && { [ -z "$line" ] || grep -qF "$line" "$out"; }
}
check() { # check NAME TEST [LINE]: as passed, and a failure is counted
    if passed "$@"; then
        echo "-- $1: $2 passed"
    else
        echo "-- $1: $2 did NOT pass (rank 0's lines: $dir/$1.rank0)" >&2
        cat "$dir/$1.rank0" >&2
        failed+=("$1")
    fi
}
# Test arguments: rank 0's captured output shown, to see that no test skipped its checks.
targs=(--color never --show-output)
# srun labels each line with its task number (-l); mpirun with [job,rank] (--tag-output).
mpirun=(mpirun --allow-run-as-root --tag-output)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# tests/mpi.rs's my_rank reads OMPI_COMM_WORLD_RANK (mpirun) or PMI_RANK, which srun
# --mpi=pmix does not set (it sets PMIX_RANK): each rank is given PMI_RANK=$PMIX_RANK.
ranked=(sh -c 'export PMI_RANK=${PMI_RANK:-${OMPI_COMM_WORLD_RANK:-$PMIX_RANK}}; exec "$0" "$@"')

stage "a. every test under srun -O --mpi=pmix -n 3 (rank 0 runs them, ranks 1-2 serve)"
run spmd 90 srun srun -l -O --mpi=pmix -n 3 "${ranked[@]}" "$exe" --test-threads=1 "${targs[@]}"
check spmd pool_over_mpi_ranks
[ "$rc" -eq 0 ] || { echo "-- spmd: srun's exit status is $rc" >&2; failed+=(spmd-exit); }

stage "b1. a worker rank killed mid-map: salloc -O -n 3 mpirun -n 3 --mca orte_enable_recovery 1"
MULTIPROCESS_MPI_KILL_TEST=1 run kill-mpirun 45 mpirun \
    salloc -O -n 3 "${mpirun[@]}" -n 3 --mca orte_enable_recovery 1 \
    "$exe" --exact a_rank_killed_mid_map "${targs[@]}"
check kill-mpirun a_rank_killed_mid_map "with rank pid"

stage "b2. a worker rank killed mid-map: srun -O -K0 --no-kill --mpi=pmix -n 3"
MULTIPROCESS_MPI_KILL_TEST=1 run kill-srun 30 srun \
    srun -l -O -K0 --no-kill --mpi=pmix -n 3 "$exe" --exact a_rank_killed_mid_map "${targs[@]}"
if passed kill-srun a_rank_killed_mid_map "with rank pid"; then
    echo "-- kill-srun: a_rank_killed_mid_map passed (srun exit status $rc): the step survived the dead task"
elif grep -q "_errhandler: .*Error handler invoked" "$dir/kill-srun.out" \
    && grep -q "STEP [0-9.]* ON .* CANCELLED" "$dir/kill-srun.out"; then
    echo "-- kill-srun: known limitation: when the task died, Slurm's PMIx plugin cancelled the" \
        "whole step (srun exit status $rc); not counted as a failure"
else
    echo "-- kill-srun: a_rank_killed_mid_map did NOT pass, and not for the known reason" >&2
    failed+=(kill-srun)
fi

stage "c. spawn mode: salloc -O -n 3 mpirun -n 1 (the pool spawns 2 ranks)"
MULTIPROCESS_MPI_SPAWN_TEST=1 run spawn 60 mpirun \
    salloc -O -n 3 "${mpirun[@]}" -n 1 --mca orte_enable_recovery 1 \
    "$exe" --exact pool_over_spawned_ranks "${targs[@]}"
check spawn pool_over_spawned_ranks "spawn mode checked in"

stage "summary"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
echo "every check passed"
