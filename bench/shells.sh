#!/usr/bin/env bash
# What one `px true` costs each engine's shell, beside the same number of
# bare bash processes each answering `true; echo` over a pipe: the part of
# a px that pcl's wrapper adds to the shells' own work. One host, its
# engines on the local launcher, so no namespaces, ssh or root needed.
#  - CPU per engine per px of the shells and of the engine host (from
#    /proc/PID/task/*/schedstat), and px's wall time;
#  - CPU per command of the bare shells (getrusage of the reaped children).
# Usage: bench/shells.sh   (ENGINES=32 RUNS=200 to change the shape;
#        PCL=path/to/pcl to measure another build)
source "$(dirname "$0")/lib.sh"
ENGINES=${ENGINES:-32}
RUNS=${RUNS:-200}
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
export PCL_SESSION=bench
cat > "$BENCH_TMP/cluster.toml" <<EOF
name = "bench"
[[hosts]]
host = "localhost"
launcher = "local"
engines = $ENGINES
EOF
"$PCL" up "$BENCH_TMP/cluster.toml" >/dev/null
"$PCL" px true >/dev/null # first call: nothing cold left

host=$(pgrep -f "^$PCL engine --session bench " | head -1)
shells=$(pgrep -P "$host" -x bash)
cpu_us() { # CPU time of these processes' live threads, in microseconds
    for pid in "$@"; do cat "/proc/$pid/task/"*/schedstat; done 2>/dev/null |
        awk '{s += $1} END {printf "%d", s / 1000}'
}
read -r s0 h0 <<<"$(cpu_us $shells) $(cpu_us "$host")"
t0=$EPOCHREALTIME
for _ in $(seq "$RUNS"); do "$PCL" px true >/dev/null; done
t1=$EPOCHREALTIME
read -r s1 h1 <<<"$(cpu_us $shells) $(cpu_us "$host")"
per() { awk -v us="$1" -v n="$2" 'BEGIN {printf "%.0f", us / n}'; }

# The floor: as many bare shells, all told `true; echo` at once each
# round, as a px tells its engines, then reaped for their CPU time (less
# what as many shells cost to start and end).
floor_us=$(python3 - "$ENGINES" "$RUNS" <<'PY'
import os, resource, select, subprocess, sys
n, runs = int(sys.argv[1]), int(sys.argv[2])
def shells_answering(rounds):
    shells = [subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, bufsize=0) for _ in range(n)]
    for _ in range(rounds):
        for s in shells:
            os.write(s.stdin.fileno(), b"true; echo\n")
        for s in shells:
            select.select([s.stdout], [], [])
            os.read(s.stdout.fileno(), 64)
    for s in shells:
        s.stdin.close()
        s.wait()
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
started = shells_answering(0)  # what starting and ending them costs
print("%.0f" % ((shells_answering(runs) - 2 * started) * 1e6 / n / runs))
PY
)
shells_us=$(per $((s1 - s0)) $((RUNS * ENGINES)))
echo "$ENGINES local engines, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $RUNS one-shot px true"
echo "  px true, wall time               $(awk -v a="$t0" -v b="$t1" -v r="$RUNS" 'BEGIN {printf "%.2f", (b - a) * 1000 / r}') ms"
echo "  shells' CPU per engine per px    $shells_us us"
echo "  engine host's CPU per engine     $(per $((h1 - h0)) $((RUNS * ENGINES))) us"
echo "  bare bash CPU per command        $floor_us us   pcl's shells use $(ratio "$shells_us" "$floor_us")x that"
