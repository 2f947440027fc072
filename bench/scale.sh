#!/usr/bin/env bash
# 256 engines: 64 namespace hosts x 4 engines.
#  - `pcl up` wall time (cold ssh: no ControlMaster), against
#    `ipcluster start -n 256 --daemonize` plus waiting for all 256 engines
#    (local engines: ipcluster's own launcher, no ssh at all);
#  - one-shot `pcl px true` latency, the whole process (target <= 50 ms),
#    beside ipyparallel's in-client `execute` on the same 256 engines;
#  - where a px's CPU goes, per engine: the daemon, the engine hosts,
#    their shells and the CLI (from /proc/PID/task/*/schedstat and bash's
#    `time`), the profile that shows whether any part grows with the size;
#  - how often the engine hosts were put to sleep and woken per px, and
#    the UDP datagrams per host per px; and what the session costs idle;
#  - the floor: as many bare bash processes, each answering one command
#    over a pipe (the shells' own work, no pcl), and px as a ratio to it;
#  - the floor for `up`: the same cold ssh logins, 32 at a time, each
#    starting its host's number of bare bash shells, and `up` as a ratio;
#  - `pcl down`, and peak RSS (VmHWM) of the daemon (target < 64 MiB) and
#    engine hosts.
# Usage: sudo bench/scale.sh   (SKIP_IPP=1 to leave ipyparallel out;
#        HOSTS=64 PER_HOST=4 RUNS=30 to change the shape; HOSTS=256 for
#        1,024 engines)
source "$(dirname "$0")/lib.sh"
HOSTS=${HOSTS:-64}
PER_HOST=${PER_HOST:-4}
RUNS=${RUNS:-30}
N=$((HOSTS * PER_HOST))
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
bench_hosts "$HOSTS"
# The same hosts, without the warm ControlMasters bench_hosts left behind:
# `pcl up` pays for every ssh connection, as on a fresh login.
grep -v '^  Control' "$BENCH_TMP/ssh_config" > "$BENCH_TMP/ssh_config_cold"
bench_cluster "$PER_HOST" | sed "s|$BENCH_TMP/ssh_config\"|$BENCH_TMP/ssh_config_cold\"|" \
    > "$BENCH_TMP/cluster.toml"
export PCL_SESSION=bench

ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
vm_hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

t0=$(ms_now)
"$PCL" up "$BENCH_TMP/cluster.toml" > "$BENCH_TMP/up.out"
t1=$(ms_now)
pcl_up_ms=$((t1 - t0))
engines=$(wc -l < "$BENCH_TMP/up.out")
[ "$engines" = "$N" ] || { echo "pcl up started $engines of $N engines" >&2; exit 1; }

"$PCL" px true >/dev/null # first call: nothing cold left
px_ms=$(median_ms "$RUNS" "$PCL" px true)
# Every engine's line, in engine order.
"$PCL" px 'echo $PCL_ENGINE_ID' > "$BENCH_TMP/ids.out"
seq 0 $((N - 1)) | sed 's/.*/[stdout:&] &/' | cmp -s - "$BENCH_TMP/ids.out" ||
    { echo "px did not print every engine's line in order" >&2; exit 1; }

daemon=$(pgrep -f "^$PCL session serve --session bench$" | head -1)
hosts=$(pgrep -f "^$PCL engine --session bench$")
shells=$(for h in $hosts; do pgrep -P "$h" -x bash; done)
cpu_us() { # CPU time of these processes' live threads, in microseconds
    for pid in "$@"; do cat "/proc/$pid/task/"*/schedstat; done 2>/dev/null |
        awk '{s += $1} END {printf "%d", s / 1000}'
}
# Times the engine hosts went to sleep (waiting in epoll) and were woken:
# on a machine this loaded, each wakeup costs far more than its system
# calls, so this counts what a px's packets and pipes cost them.
sleeps() {
    for pid in "$@"; do cat "/proc/$pid/status"; done 2>/dev/null |
        awk '/^voluntary_ctxt_switches:/ {s += $2} END {printf "%d", s}'
}
u0=$(datagrams)
w0=$(sleeps $hosts)
read -r d0 h0 s0 <<<"$(cpu_us $daemon) $(cpu_us $hosts) $(cpu_us $shells)"
cli_us=0
TIMEFORMAT='%3U %3S'
for _ in $(seq "$RUNS"); do
    t=$({ time "$PCL" px true >/dev/null 2>&1; } 2>&1)
    cli_us=$(awk -v c="$cli_us" -v t="$t" 'BEGIN {split(t, f, " "); printf "%d", c + (f[1] + f[2]) * 1e6}')
done
read -r d1 h1 s1 <<<"$(cpu_us $daemon) $(cpu_us $hosts) $(cpu_us $shells)"
w1=$(sleeps $hosts)
u1=$(datagrams)
per_engine() { awk -v us="$1" -v r="$RUNS" -v n="$N" 'BEGIN {printf "%.0f", us / r / n}'; }

# The floor: N bare shells, each told `true; echo` on its stdin pipe and
# read back one line, all at once, as a px does.
cat > "$BENCH_TMP/floor.py" <<'PY'
import os, select, statistics, subprocess, sys, time
n, runs = int(sys.argv[1]), int(sys.argv[2])
shells = [subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, bufsize=0) for _ in range(n)]
def one_round():
    for s in shells:
        os.write(s.stdin.fileno(), b"true; echo\n")
    poll = select.epoll()
    for s in shells:
        poll.register(s.stdout.fileno(), select.EPOLLIN)
    left = n
    while left:
        for fd, _ in poll.poll():
            os.read(fd, 64)
            poll.unregister(fd)
            left -= 1
    poll.close()
one_round()
times = []
for _ in range(runs):
    t = time.perf_counter()
    one_round()
    times.append((time.perf_counter() - t) * 1000)
print("%.2f" % statistics.median(times))
for s in shells:
    s.stdin.close()
    s.wait()
PY
ulimit -n "$(ulimit -Hn)"
floor_ms=$(python3 "$BENCH_TMP/floor.py" "$N" "$RUNS")
# What the session costs doing nothing: keep-alives and their
# acknowledgements, and the engine hosts' timers.
sleep 2
u2=$(datagrams)
read -r d2 h2 <<<"$(cpu_us $daemon) $(cpu_us $hosts)"
sleep 10
u3=$(datagrams)
read -r d3 h3 <<<"$(cpu_us $daemon) $(cpu_us $hosts)"
daemon_kib=$(vm_hwm_kib "$daemon")
engine_kib=()
for pid in $(pgrep -f "^$PCL engine --session bench$"); do
    engine_kib+=("$(vm_hwm_kib "$pid")")
done
engine_max=$(printf '%s\n' "${engine_kib[@]}" | sort -n | tail -1)
engine_mean=$(printf '%s\n' "${engine_kib[@]}" | awk '{s += $1} END {printf "%d", s / NR}')

t0=$(ms_now)
"$PCL" down >/dev/null
pcl_down_ms=$(( $(ms_now) - t0 ))

# The floor for `up`: the same cold ssh logins, 32 at a time (pcl's and
# pdsh's fanout), each starting as many bare bash shells on its host as it
# has engines: what any tool that logs in to every host and starts its
# shells there pays.
t0=$(ms_now)
printf '%s\n' "${BENCH_IPS[@]}" |
    xargs -P 32 -I{} ssh -n -F "$BENCH_TMP/ssh_config_cold" -o BatchMode=yes {} \
        "for i in \$(seq $PER_HOST); do bash --noprofile --norc -c true; done"
ssh_floor_ms=$(( $(ms_now) - t0 ))

per_ms() { awk -v ms="$1" -v n="$N" 'BEGIN {printf "%.0f", ms * 1000 / n}'; }
echo "$N engines ($HOSTS namespace hosts x $PER_HOST), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '  %-44s %8s ms   (%s us per engine)\n' "pcl up (cold ssh, until every engine is ready)" \
    "$pcl_up_ms" "$(per_ms "$pcl_up_ms")"
printf '  %-44s %8s ms   up is %sx the floor\n' "floor: $HOSTS cold ssh logins, 32 at a time" \
    "$ssh_floor_ms" "$(ratio "$pcl_up_ms" "$ssh_floor_ms")"
printf '  %-44s %8s ms   (%s us per engine; median of %s)\n' "pcl px true, one-shot process" "$px_ms" \
    "$(per_ms "$px_ms")" "$RUNS"
printf '  %-44s %8s ms   px is %sx the floor\n' "floor: $N bare bash answering over a pipe" "$floor_ms" \
    "$(ratio "$px_ms" "$floor_ms")"
printf '    px CPU per engine: daemon %s us, engine hosts %s us, shells %s us, CLI %s us\n' \
    "$(per_engine $((d1 - d0)))" "$(per_engine $((h1 - h0)))" "$(per_engine $((s1 - s0)))" \
    "$(per_engine "$cli_us")"
printf '    UDP datagrams per host per px, in and out: %s\n' \
    "$(awk -v u=$((u1 - u0)) -v r="$RUNS" -v h="$HOSTS" 'BEGIN {printf "%.2f", u / r / h}')"
printf '    engine host wakeups per host per px: %s\n' \
    "$(awk -v w=$((w1 - w0)) -v r="$RUNS" -v h="$HOSTS" 'BEGIN {printf "%.2f", w / r / h}')"
printf '    idle, over 10 s: %s datagrams/s; CPU: daemon %s ms/s, engine hosts %s ms/s\n' \
    "$(( (u3 - u2) / 10 ))" "$(( (d3 - d2) / 10000 ))" "$(( (h3 - h2) / 10000 ))"
printf '  %-44s %8s ms   (%s us per engine)\n' "pcl down" "$pcl_down_ms" "$(per_ms "$pcl_down_ms")"
printf '  %-44s %8s MiB  (target < 64 MiB)\n' "daemon peak RSS (VmHWM)" "$(mib "$daemon_kib")"
printf '  %-44s %8s MiB  (mean %s MiB over %s)\n' "engine host peak RSS, max" "$(mib "$engine_max")" \
    "$(mib "$engine_mean")" "${#engine_kib[@]}"

if [ -z "${SKIP_IPP:-}" ]; then
    ipp_install
    cat > "$BENCH_TMP/ipp_wait.py" <<PY
import time, statistics
import ipyparallel as ipp
rc = ipp.Client(profile_dir="$IPP_PROFILE_DIR", timeout=120)
deadline = time.time() + ${IPP_WAIT:-300}
while len(rc.ids) < $N and time.time() < deadline:
    time.sleep(0.1)
ready = int(time.time() * 1000)
view = rc[:]
view.execute("pass", block=True)
times = []
for _ in range($RUNS):
    t = time.perf_counter()
    view.execute("pass", block=True)
    times.append((time.perf_counter() - t) * 1000)
print(ready, len(rc.ids), "%.2f" % statistics.median(times), flush=True)
rc.close()
PY
    t0=$(ms_now)
    ipp_start "$N"
    # ipcluster needs a moment to write its connection files.
    for _ in $(seq 600); do
        [ -e "$IPP_PROFILE_DIR/security/ipcontroller-client.json" ] && break
        sleep 0.1
    done
    read -r ready_ms ipp_n ipp_exec_ms < <("$BENCH_TMP/venv/bin/python" "$BENCH_TMP/ipp_wait.py")
    ipp_up_ms=$((ready_ms - t0))
    if [ "$ipp_n" = "$N" ]; then
        printf '  %-44s %8s ms   pcl up is %sx faster\n' "ipcluster start -n $N + wait for engines" \
            "$ipp_up_ms" "$(ratio "$ipp_up_ms" "$pcl_up_ms")"
    else
        printf '  %-44s %8s ms   only %s of %s engines registered; gave up waiting\n' \
            "ipcluster start -n $N + wait for engines" "$ipp_up_ms" "$ipp_n" "$N"
    fi
    printf '  %-44s %8s ms   (in a warm client) pcl px one-shot is %sx faster\n' \
        "ipyparallel execute(\"pass\") on $ipp_n engines" "$ipp_exec_ms" "$(ratio "$ipp_exec_ms" "$px_ms")"
fi
