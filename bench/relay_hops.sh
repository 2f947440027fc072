#!/usr/bin/env bash
# Where a relayed push's time goes, on the shaped links of bench/relay.sh:
# when each hop's first MiB and last byte went by (the byte counter of
# the veth into each host, sampled every 20 ms), the CPU-seconds of the
# daemon and of each engine host, and the queue (tbf backlog) on the
# second host's link out.
# Usage: sudo bench/relay_hops.sh HOSTS   (RATE, SIZE as for relay.sh)
BENCH_PRIVATE_DIR=/dev/shm/pcl-bench-hops-$$
BENCH_PRIVATE_SIZE=1g
source "$(dirname "$0")/lib.sh"
RATE=${RATE:-250mbit}
SIZE=${SIZE:-64M}
n=${1:?usage: bench/relay_hops.sh HOSTS}
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
need_pkg tc iproute2
bench_hosts "$n"
bench_shape "$RATE"
export PCL_SESSION=bench
head -c "$SIZE" /dev/urandom > "$BENCH_TMP/f"
bench_cluster 1 > "$BENCH_TMP/cluster.toml"
sed -i "/^\[defaults\]/a workdir = \"$BENCH_PRIVATE_DIR\"" "$BENCH_TMP/cluster.toml"
"$PCL" up "$BENCH_TMP/cluster.toml" >/dev/null
pcl_cpu() { # PID TICKS ROLE, for every pcl process
    local p f
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$PCL" ] || continue
        read -r -a f < "$p/stat" 2>/dev/null || continue
        echo "${p#/proc/} $((f[13] + f[14])) $(tr '\0' ' ' < "$p/cmdline" | cut -d' ' -f2)"
    done
}
pcl_cpu > "$BENCH_TMP/cpu0"
sync
( while :; do
    line=$(date +%s%N)
    for i in $(seq 1 "$n"); do read -r b < "/sys/class/net/pclv$$-$i/statistics/tx_bytes"; line="$line $b"; done
    echo "$line"; sleep 0.02
done ) > "$BENCH_TMP/bytes" &
bytes=$!
( while :; do tc -n "${BENCH_NS[1]}" -s qdisc show dev eth0 | awk '/backlog/ {print $2}'; sleep 0.05; done ) > "$BENCH_TMP/backlog" &
backlog=$!
sleep 0.1
t0=$(date +%s%N)
"$PCL" push --file "$BENCH_TMP/f" f >/dev/null
t1=$(date +%s%N)
sleep 0.05
kill "$bytes" "$backlog"
pcl_cpu > "$BENCH_TMP/cpu1"
echo "push of $SIZE to $n hosts at $RATE: $(( (t1 - t0) / 1000000 )) ms, $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg)"
awk 'NR == FNR {a[$1] = $2; next} ($1 in a) {d = $2 - a[$1]; all += d; printf "  %-8s pid %-7s %5.2f CPU-s\n", $3, $1, d / 100}
    END {printf "  all pcl processes %.2f CPU-s\n", all / 100}' "$BENCH_TMP/cpu0" "$BENCH_TMP/cpu1"
sed 's/b$//; s/K$/000/; s/M$/000000/' "$BENCH_TMP/backlog" | sort -n |
    awk '{a[NR] = $1} END {printf "  host 2 link out, tbf backlog: median %d, p90 %d, max %d bytes\n", a[int((NR + 1) / 2)], a[int(NR * 0.9)], a[NR]}'
size=$(stat -c %s "$BENCH_TMP/f")
awk -v t0="$t0" -v n="$n" -v size="$size" '
    NR == 1 {for (i = 1; i <= n; i++) b0[i] = $(i + 1)}
    {for (i = 1; i <= n; i++) {d = $(i + 1) - b0[i]; if (!(i in first) && d > 1048576) first[i] = $1; if (!(i in last) && d >= size) last[i] = $1}}
    END {for (i = 1; i <= n; i++) printf "  hop %2d: first MiB at %.2f s, whole file at %.2f s\n", i, (first[i] - t0) / 1e9, (last[i] - t0) / 1e9}' "$BENCH_TMP/bytes"
"$PCL" down >/dev/null
