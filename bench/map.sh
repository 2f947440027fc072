#!/usr/bin/env bash
# Load-balanced map throughput: `pcl map 'echo {}'` over 4 engines on 4
# namespace hosts, side by side with ipyparallel's load-balanced map of a
# trivial function on 4 local engines and GNU parallel -S over the same 4
# hosts (ssh ControlMaster warm), and the fork ceiling of 4 bare bash
# shells running a subshell per task. Prints tasks/s and ratios.
# Usage: sudo bench/map.sh   (ITEMS=10000, PAR_ITEMS=200, SKIP_IPP=1;
#        HOSTS=64 PER_HOST=4 for 256 engines on 64 hosts, the bare shells
#        as many)
source "$(dirname "$0")/lib.sh"
ITEMS=${ITEMS:-10000}
HOSTS=${HOSTS:-4}
PER_HOST=${PER_HOST:-1}
E=$((HOSTS * PER_HOST))
# GNU parallel pays an ssh session per task: fewer items, same rate.
PAR_ITEMS=${PAR_ITEMS:-200}
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
need_pkg parallel parallel
bench_hosts "$HOSTS"
bench_cluster "$PER_HOST" > "$BENCH_TMP/cluster.toml"
"$PCL" up "$BENCH_TMP/cluster.toml" >/dev/null
export PCL_SESSION=bench

rate() { # rate ITEMS CMD...: tasks per second of one run of CMD
    local n=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    "$@" >"$BENCH_TMP/out" 2>"$BENCH_TMP/err" || { cat "$BENCH_TMP/err" >&2; exit 1; }
    t1=$(date +%s%N)
    [ "$(wc -l <"$BENCH_TMP/out")" -ge "$n" ] || { echo "short output from $1" >&2; exit 1; }
    awk -v n="$n" -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", n / (ns / 1e9)}'
}

seq "$ITEMS" > "$BENCH_TMP/items"
seq "$PAR_ITEMS" > "$BENCH_TMP/par_items"
# CPU of the session's processes, by kind, in microseconds: the daemon
# and the engine hosts from their threads' schedstat (exact run time; the
# tick counts of /proc/PID/stat charge whole ticks to whoever holds the
# CPU then, which for processes that wake often for a few microseconds is
# far off), their shells from ticks, the only count that includes the
# subshells they reaped.
cpu_us() {
    local daemon hosts shells
    daemon=$(pgrep -f "session serve --session $PCL_SESSION" || true)
    hosts=$(pgrep -f "engine --session $PCL_SESSION( |\$)" || true)
    shells=$(for h in $hosts; do pgrep -P "$h" -x bash; done)
    run_us() { # run_us PID...: their threads' run time
        for pid in "$@"; do cat /proc/"$pid"/task/*/schedstat; done |
            awk '{s += $1} END {printf "%.0f", s / 1000}'
    }
    ticks_us() { # ticks_us PID...: utime, stime, cutime and cstime
        for pid in "$@"; do sed 's/.*) //' "/proc/$pid/stat"; done |
            awk -v hz="$(getconf CLK_TCK)" '{s += $12 + $13 + $14 + $15} END {printf "%.0f", s / hz * 1e6}'
    }
    echo "$(run_us $daemon) $(run_us $hosts) $(ticks_us $shells)"
}
# Times the daemon went to sleep and was woken: none means a packet was
# always waiting, so its cost is work per packet, not wakeups.
daemon_sleeps() {
    awk '/^voluntary_ctxt_switches:/ {print $2}' \
        "/proc/$(pgrep -f "session serve --session $PCL_SESSION" | head -1)/status"
}
"$PCL" map 'echo {}' 1 2 3 4 >/dev/null # warm
read -r d0 h0 s0 < <(cpu_us)
u0=$(datagrams)
w0=$(daemon_sleeps)
pcl_rate=$(rate "$ITEMS" "$PCL" map 'echo {}' --from "$BENCH_TMP/items")
w1=$(daemon_sleeps)
u1=$(datagrams)
read -r d1 h1 s1 < <(cpu_us)
echo "map of $ITEMS tiny tasks (echo {}), $E engines"
printf '  %-44s %8s tasks/s\n' "pcl map ($HOSTS namespace hosts x $PER_HOST)" "$pcl_rate"
per_task() { awk -v t="$1" -v n="$ITEMS" 'BEGIN {printf "%.1f", t / n}'; }
printf '    CPU per task: shells %s us, engine hosts %s us, daemon %s us\n' \
    "$(per_task $((s1 - s0)))" "$(per_task $((h1 - h0)))" "$(per_task $((d1 - d0)))"
printf '    UDP datagrams per task, all hosts in and out: %s\n' \
    "$(awk -v u=$((u1 - u0)) -v n="$ITEMS" 'BEGIN {printf "%.3f", u / n}')"
printf '    daemon sleeps per task: %s\n' \
    "$(awk -v w=$((w1 - w0)) -v n="$ITEMS" 'BEGIN {printf "%.3f", w / n}')"

# The ceiling for a subshell per task: as many bare bash processes as
# engines forking `( echo N )` lines, the same count in all.
subshells() {
    for _ in $(seq "$E"); do
        awk -v n=$((ITEMS / E)) 'BEGIN {for (i = 1; i <= n; i++) print "( echo " i " )"}' | bash &
    done
    wait
}
ceiling=$(rate "$((ITEMS / E * E))" subshells)
printf '  %-44s %8s tasks/s   pcl reaches %s%%\n' "bare bash, $E x ( echo N ) subshells" "$ceiling" \
    "$(awk -v a="$pcl_rate" -v b="$ceiling" 'BEGIN {printf "%.0f", 100 * a / b}')"

# The same shells running pcl's own batch loop, as src/engine/batch.rs
# writes it (here in batches of 40 items; per task a subshell with a
# SIGINT trap, two markers and a stop-file check), each stream drained
# through a pipe: what pcl would reach if its engine hosts and daemon
# cost nothing.
batch_script() { # batch_script N: the loop over `echo 1` .. `echo N`
    printf '%s\n' '__pcl_m=AAAA; __pcl_n=BBBB' \
        "__pcl_r() { for __pcl_c in \"\${__pcl_l[@]}\"; do [[ -e $BENCH_TMP/stop ]] && break; ( trap 'exit 130' INT; builtin eval \"\$__pcl_c\" ); __pcl_s=\$?; builtin printf '%s%s' \"\$__pcl_m\" \"\$__pcl_n\" >&2; builtin printf '%s%s%s %s\\n' \"\$__pcl_m\" \"\$__pcl_n\" \"\$__pcl_s\" \"\${EPOCHREALTIME-}\"; done; }"
    seq "$1" | awk '{printf "%s\047echo %d\047", (NR % 40 == 1 ? "__pcl_l=(" : " "), $1}
        NR % 40 == 0 {print "); __pcl_r </dev/null"}
        END {if (NR % 40) print "); __pcl_r </dev/null"}'
}
batch_script $((ITEMS / E)) > "$BENCH_TMP/batch.sh"
batch_loops() {
    for _ in $(seq "$E"); do
        { bash --noprofile --norc -c "set -m; . '$BENCH_TMP/batch.sh'" 2>&1 >&3 | cat >/dev/null; } 3>&1 | cat &
    done
    wait
}
loops=$(rate "$((ITEMS / E * E))" batch_loops)
printf '  %-44s %8s tasks/s   pcl reaches %s%%\n' "$E bash shells running pcl's batch loop" "$loops" \
    "$(awk -v a="$pcl_rate" -v b="$loops" 'BEGIN {printf "%.0f", 100 * a / b}')"

logins=$(printf '1/%s,' "${BENCH_IPS[@]}")
par() {
    parallel --will-cite -S "${logins%,}" --ssh "ssh -F $BENCH_TMP/ssh_config" \
        echo {} :::: "$BENCH_TMP/par_items"
}
for ip in "${BENCH_IPS[@]}"; do ssh -F "$BENCH_TMP/ssh_config" "$ip" true; done # warm
par_rate=$(rate "$PAR_ITEMS" par)
printf '  %-44s %8s tasks/s   pcl is %sx faster\n' \
    "GNU parallel -S, ControlMaster ($PAR_ITEMS items)" "$par_rate" "$(ratio "$pcl_rate" "$par_rate")"

if [ -z "${SKIP_IPP:-}" ]; then
    ipp_install
    ipp_start 4
    cat > "$BENCH_TMP/ipp_map.py" <<PY
import sys, time
import ipyparallel as ipp
rc = ipp.Client(profile_dir="$IPP_PROFILE_DIR")
rc.wait_for_engines(4, timeout=120)
view = rc.load_balanced_view()
def f(x):
    return x
view.map_sync(f, range(100))
n = int(sys.argv[1])
t = time.time()
out = view.map_sync(f, range(n))
dt = time.time() - t
assert len(out) == n
print("%.0f" % (n / dt))
rc.close()
PY
    ipp_rate=$("$BENCH_TMP/venv/bin/python" "$BENCH_TMP/ipp_map.py" "$ITEMS")
    printf '  %-44s %8s tasks/s   pcl is %sx faster\n' \
        "ipyparallel load-balanced map (4 local)" "$ipp_rate" "$(ratio "$pcl_rate" "$ipp_rate")"
fi
