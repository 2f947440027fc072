#!/usr/bin/env bash
# What one `px true` costs each engine's shell, beside the same number of
# bare bash processes each answering `true; echo` over a pipe: the part of
# a px that pcl's wrapper adds to the shells' own work. One host, its
# engines on the local launcher, so no namespaces, ssh or root needed.
#  - CPU per engine per px of the shells and of the engine host (from
#    /proc/PID/task/*/schedstat), and px's wall time;
#  - CPU per command of the bare shells, read the same way;
#  - with strace installed, the system calls of one shell per command and
#    of the engine host per px, and the daemon's writes to the CLI's
#    socket per px, over 20 more px (traced, so not timed); and the CLI's
#    reads of that socket in one more.
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
# round, as a px tells its engines, their CPU read the same way.
floor_us=$(python3 - "$ENGINES" "$RUNS" <<'PY'
import os, select, subprocess, sys
n, runs = int(sys.argv[1]), int(sys.argv[2])
shells = [subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, bufsize=0) for _ in range(n)]
def one_round():
    for s in shells:
        os.write(s.stdin.fileno(), b"true; echo\n")
    for s in shells:
        select.select([s.stdout], [], [])
        os.read(s.stdout.fileno(), 64)
def cpu_ns():
    return sum(int(open(f"/proc/{s.pid}/schedstat").read().split()[0]) for s in shells)
one_round()  # first call: nothing cold left
before = cpu_ns()
for _ in range(runs):
    one_round()
print("%.0f" % ((cpu_ns() - before) / 1000 / n / runs))
for s in shells:
    s.stdin.close()
    s.wait()
PY
)
syscalls=""
if command -v strace >/dev/null; then
    traced=20
    strace -c -o "$BENCH_TMP/shell.strace" -p "$(echo "$shells" | head -1)" 2>/dev/null &
    shell_trace=$!
    strace -c -f -o "$BENCH_TMP/host.strace" -p "$host" 2>/dev/null &
    host_trace=$!
    daemon=$(pgrep -f "^$PCL session serve --session bench$" | head -1)
    strace -c -f -o "$BENCH_TMP/daemon.strace" -p "$daemon" 2>/dev/null &
    daemon_trace=$!
    sleep 1 # all attached
    for _ in $(seq "$traced"); do "$PCL" px true >/dev/null; done
    kill -INT "$shell_trace" "$host_trace" "$daemon_trace"
    wait "$shell_trace" "$host_trace" "$daemon_trace" || true
    # The CLI's own, on one more px: its reads of the session socket.
    strace -c -f -o "$BENCH_TMP/cli.strace" "$PCL" px true >/dev/null
    calls() { awk -v name="$2" '$NF == name {print $4}' "$1"; }
    syscalls="  one shell's system calls per command  $(per "$(calls "$BENCH_TMP/shell.strace" total)" "$traced") ($(per "$(calls "$BENCH_TMP/shell.strace" read)" "$traced") reads)
  engine host's system calls per px     $(per "$(calls "$BENCH_TMP/host.strace" total)" "$traced")
  daemon's writes to the CLI per px     $(per "$(calls "$BENCH_TMP/daemon.strace" sendto)" "$traced")
  CLI's reads of its socket per px      $(per "$(calls "$BENCH_TMP/cli.strace" recvfrom)" 1)"
fi
shells_us=$(per $((s1 - s0)) $((RUNS * ENGINES)))
echo "$ENGINES local engines, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $RUNS one-shot px true"
echo "  px true, wall time               $(awk -v a="$t0" -v b="$t1" -v r="$RUNS" 'BEGIN {printf "%.2f", (b - a) * 1000 / r}') ms"
echo "  shells' CPU per engine per px    $shells_us us"
echo "  engine host's CPU per engine     $(per $((h1 - h0)) $((RUNS * ENGINES))) us"
echo "  bare bash CPU per command        $floor_us us   pcl's shells use $(ratio "$shells_us" "$floor_us")x that"
[ -z "$syscalls" ] || echo "$syscalls"
