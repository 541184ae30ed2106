#!/usr/bin/env bash
# A Pool over MPI ranks on three fake hosts (issue 15): network namespaces h1, h2, h3 on a bridge
# in namespace sw (10.77.0.1-3/24, no route anywhere else), each process of a host in its own
# UTS namespace so that its hostname is the host's. mpirun runs on h1 (rank 0) and starts the
# ranks on h2 and h3 through a stand-in for ssh (see ../shared/design/distributed.md §1, §10).
#   1. the example's map is served by ranks on both other hosts;
#   2. h3 killed mid-map (kill -9 of every process in it): the map completes on h2;
#   3. h3's link set down mid-map (a silent host): the map completes on h2.
# Every run is under a hard timeout; the namespaces go at the end whatever happens.
# Usage: .ci/mpi-hosts.sh target/debug/examples/cluster_map   (as root)
set -euo pipefail
exe=$(realpath "$1")
dir=$(mktemp -d)
hosts=(h1 h2 h3)

teardown() {
    for h in "${hosts[@]}"; do
        for pid in $(ip netns pids "$h" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for n in "${hosts[@]}" sw; do ip netns del "$n" 2>/dev/null || true; done
}
trap 'teardown; rm -rf "$dir"' EXIT
teardown

ip netns add sw
ip netns exec sw ip link add br0 type bridge
ip netns exec sw ip link set br0 up
for i in 1 2 3; do
    ip netns add "h$i"
    ip link add "h$i-eth0" type veth peer name "sw-h$i"
    ip link set "h$i-eth0" netns "h$i"
    ip link set "sw-h$i" netns sw
    ip netns exec sw ip link set "sw-h$i" master br0
    ip netns exec sw ip link set "sw-h$i" up
    ip netns exec "h$i" ip link set lo up
    ip netns exec "h$i" ip link set "h$i-eth0" name eth0
    ip netns exec "h$i" ip addr add "10.77.0.$i/24" dev eth0
    ip netns exec "h$i" ip link set eth0 up
done

# mpirun's stand-in for ssh: `nsrsh [options] HOST command...` runs the command "on" HOST.
cat >"$dir/nsrsh" <<'AGENT'
#!/bin/sh
while [ "${1#-}" != "$1" ]; do shift; done
host=$1; shift
ns=h${host##*.}
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; exec $*"
AGENT
chmod +x "$dir/nsrsh"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=2\n10.77.0.3 slots=2\n' >"$dir/hostfile"

# Runs the example from h1 with mpirun's arguments and the example's; its output in $dir/out.
run() {
    local limit=$1; shift
    local n=$1 ms=$2; shift 2
    ip netns exec h1 unshare --uts sh -c "hostname h1; exec timeout -s KILL $limit \
        mpirun --allow-run-as-root --hostfile $dir/hostfile --mca plm_rsh_agent $dir/nsrsh \
        --mca btl self,vader,tcp --mca btl_tcp_if_include 10.77.0.0/24 \
        --mca oob_tcp_if_include 10.77.0.0/24 $* -n 5 $exe $n $ms" >"$dir/out" 2>"$dir/err"
}

check() { # the map's results were right, and which hosts served
    if ! grep -q "squares, all right" "$dir/out"; then
        echo "the map did not complete:"; cat "$dir/out" "$dir/err"; exit 1
    fi
    grep -E "served|took" "$dir/out"
}

echo "-- 1. a map over ranks on h2 and h3"
run 120 1000 0
check
grep -q "^h2 rank" "$dir/out" && grep -q "^h3 rank" "$dir/out" \
    || { echo "not served by both other hosts"; exit 1; }

# With a host lost, Open MPI 4.1's mpirun would wait for the lost host's daemon forever, even
# after MPI_Abort, whatever its MCA parameters (distributed.md §2.4; the README's cluster section
# lists what was tried). So rank 0, having delivered everything, ends mpirun itself (SIGINT twice:
# mpirun's "forcibly terminate"), which then exits with status 1. What is checked: the map
# completes with every result right, rank 0 says why it ends the job, mpirun exits within 30 s of
# the map's end with status 1, and no process of the job is left on h1 or h2 5 s later.
for failure in killed silent; do
    echo "-- 2/3. h3 $failure mid-map"
    run 120 800 20 --mca orte_enable_recovery 1 &
    launcher=$!
    sleep 2
    rank0_running() {
        ip netns pids h1 | xargs -r -n1 sh -c 'readlink /proc/$0/exe' 2>/dev/null | grep -qx "$exe"
    }
    rank0_running || { echo "rank 0 is not found running on h1 (the check below could not fail)"; exit 1; }
    if [ "$failure" = killed ]; then
        for pid in $(ip netns pids h3); do kill -9 "$pid" 2>/dev/null || true; done
    else
        ip netns exec h3 ip link set eth0 down
    fi
    waited=0
    until grep -q "squares, all right" "$dir/out" 2>/dev/null; do
        sleep 1; waited=$((waited + 1))
        [ "$waited" -lt 60 ] || { echo "the map did not complete in 60 s"; cat "$dir/out" "$dir/err"; exit 1; }
    done
    check
    map_end=$SECONDS
    for _ in $(seq 30); do kill -0 "$launcher" 2>/dev/null || break; sleep 1; done
    if kill -0 "$launcher" 2>/dev/null; then
        echo "mpirun did not exit within 30 s of the map's end"; cat "$dir/err"; exit 1
    fi
    status=0
    wait "$launcher" || status=$?
    [ "$status" -eq 1 ] || { echo "mpirun's exit status is $status, not 1"; cat "$dir/err"; exit 1; }
    grep -q "were lost; ending the job" "$dir/err" \
        || { echo "rank 0 did not say why it ended the job"; cat "$dir/err"; exit 1; }
    echo "   mpirun exited with status 1, $((SECONDS - map_end)) s after the map's end (whole seconds)"
    sleep 5
    left=$(ip netns pids h1; ip netns pids h2)
    [ -z "$left" ] || { echo "left running after mpirun: $left"; ps -o pid=,args= -p "$(echo $left | tr ' ' ,)"; exit 1; }
    echo "   no process of the job left on h1 or h2"
    ip netns exec h3 ip link set eth0 up 2>/dev/null || true
    for pid in $(ip netns pids h2) $(ip netns pids h3); do kill -9 "$pid" 2>/dev/null || true; done
done
