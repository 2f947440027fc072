#!/usr/bin/env bash
# Data movement on 4 namespace hosts (one engine each):
#  - push of a 256 MiB file vs `pdcp -R ssh` and `clush --copy`, every
#    tool writing a copy per host: into a tmpfs of each host's own (RAM,
#    so no disk is measured), and durably into a directory of each host's
#    own on the shared disk (pcl fsyncs; the peers' run ends with each
#    host's `sync FILE`, the same fsync).
#    Paired runs (pcl, pdcp, clush in turn), medians of wall time and of
#    CPU-seconds per GiB moved (every process of the tool, both ends);
#  - scatter then gather of a 1 GiB line file (MiB/s);
#  - peak RSS (VmHWM) of the daemon and the engine hosts (three of them
#    relays) while pushing a 4 GiB file.
# Usage: sudo bench/data.sh   (RUNS=N for the medians, default 5;
#   PARTS="push lines rss" for some of the three, default all)
BENCH_PRIVATE_DIR=/dev/shm/pcl-bench-data-$$
BENCH_PRIVATE_SIZE=2g
BENCH_PRIVATE_DISK=1
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-5}
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
need_pkg pdcp pdsh
need_pkg clush clustershell
bench_cpu_start
bench_hosts 4
bench_cluster 1 > "$BENCH_TMP/cluster.toml"
sed -i "/^\[defaults\]/a workdir = \"$BENCH_PRIVATE_DIR\"" "$BENCH_TMP/cluster.toml"
export PCL_SESSION=bench
"$PCL" up "$BENCH_TMP/cluster.toml" >/dev/null

hosts=$(IFS=,; echo "${BENCH_IPS[*]}")
export PDSH_SSH_ARGS="-F $BENCH_TMP/ssh_config -x -l%u %h"
export PDSH_RCMD_TYPE=ssh
pdsh -w "$hosts" true # warm the ControlMasters

med() { sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
med_s() { median_ms "$@" | awk '{printf "%.2f", $1 / 1000}'; }
mib() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.0f", b / 1048576 / s}'; }

head -c 256M /dev/urandom > "$BENCH_TMP/f256"
want=$(sha256sum < "$BENCH_TMP/f256" | cut -d' ' -f1)
moved_gib=1 # 256 MiB to 4 hosts
check() { # check FILE: every host has the pushed bytes in FILE (then not)
    local got
    got=$("$PCL" px --raw "sha256sum < '$1' | cut -d' ' -f1; rm -f '$1'" | sort | uniq -c | awk '{print $1, $2}')
    [ "$got" = "4 $want" ] || { echo "copies of $1 differ: $got" >&2; exit 1; }
}
# One run of each tool in turn, RUNS times, into DIR (a path below the
# workdir, or "" for the workdir); then the median wall time and CPU-s
# per GiB of each.
paired() { # paired DIR DURABLE: DURABLE=1 ends the peers' runs with an fsync
    local dir=${1:+$1/} d=$BENCH_PRIVATE_DIR${1:+/$1}
    local sync=true sync_clush=true
    if [ "$2" = 1 ]; then
        sync="pdsh -w '$hosts' sync '$d/pdcp256'"
        sync_clush="pdsh -w '$hosts' sync '$d/f256'"
    fi
    local pcl_cmd=("$PCL" push --file "$BENCH_TMP/f256" "${dir}pcl256")
    local pdcp_cmd=(sh -c "pdcp -R ssh -w '$hosts' '$BENCH_TMP/f256' '$d/pdcp256' && $sync")
    local clush_cmd=(sh -c "clush -o '-F $BENCH_TMP/ssh_config' -O 'scp_options=-O -F $BENCH_TMP/ssh_config' \
        -w '$hosts' --copy '$BENCH_TMP/f256' --dest '$d/' && $sync_clush")
    : > "$BENCH_TMP/times"
    for _ in $(seq "$RUNS"); do
        for tool in pcl pdcp clush; do
            local -n cmd=${tool}_cmd
            sync
            local t0 c0 t1 c1
            t0=$(date +%s%N); c0=$(cpu_ns)
            "${cmd[@]}" >/dev/null 2>&1
            t1=$(date +%s%N); c1=$(cpu_ns)
            echo "$tool $(( (t1 - t0) / 1000000 )) $(( (c1 - c0) / 1000000 ))" >> "$BENCH_TMP/times"
            case $tool in pcl) check "${dir}pcl256" ;; pdcp) check "${dir}pdcp256" ;; clush) check "${dir}f256" ;; esac
        done
    done
    for tool in pcl pdcp clush; do
        local wall cpu
        wall=$(awk -v t=$tool '$1 == t {print $2 / 1000}' "$BENCH_TMP/times" | med)
        cpu=$(awk -v t=$tool -v g=$moved_gib '$1 == t {print $3 / 1000 / g}' "$BENCH_TMP/times" | med)
        printf -v "${tool}_wall" %s "$wall"
        printf -v "${tool}_cpu" %s "$cpu"
    done
    printf '  %-26s %7s s  %5s MiB/s aggregate  %6s CPU-s/GiB\n' "pcl push --file" "$pcl_wall" "$(mib $((1024 << 20)) "$pcl_wall")" "$pcl_cpu"
    printf '  %-26s %7s s  pcl is %sx faster  %6s CPU-s/GiB\n' "pdcp -R ssh" "$pdcp_wall" "$(ratio "$pdcp_wall" "$pcl_wall")" "$pdcp_cpu"
    printf '  %-26s %7s s  pcl is %sx faster  %6s CPU-s/GiB\n' "clush --copy" "$clush_wall" "$(ratio "$clush_wall" "$pcl_wall")" "$clush_cpu"
}
if [[ " ${PARTS:-push lines rss} " == *" push "* ]]; then
    echo "push of a 256 MiB file to 4 namespace hosts, $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo " into a tmpfs per host (median of $RUNS paired runs)"
    paired "" 0
    echo " durably into a directory per host on the shared disk (median of $RUNS paired runs)"
    paired disk 1
fi

if [[ " ${PARTS:-push lines rss} " == *" lines "* ]]; then
    # `yes` ends with SIGPIPE when head has enough.
    { yes 'the quick brown fox jumps over the lazy dog, 0123456789 abcdefghij' || true; } \
        | head -c 1G > "$BENCH_TMP/lines"
    scatter_s=$(med_s "$RUNS" "$PCL" scatter --file part --from "$BENCH_TMP/lines")
    gather_s=$(med_s "$RUNS" sh -c "'$PCL' gather --file part > '$BENCH_TMP/back'")
    cmp -s "$BENCH_TMP/lines" "$BENCH_TMP/back" || { echo "gather differs from the input" >&2; exit 1; }
    both=$(awk -v a="$scatter_s" -v b="$gather_s" 'BEGIN {printf "%.2f", a + b}')
    echo "scatter then gather of a 1 GiB line file over 4 hosts (median of $RUNS)"
    printf '  %-26s %7s s  %5s MiB/s\n' "pcl scatter --file" "$scatter_s" "$(mib $((1024 << 20)) "$scatter_s")"
    printf '  %-26s %7s s  %5s MiB/s\n' "pcl gather --file" "$gather_s" "$(mib $((1024 << 20)) "$gather_s")"
    printf '  %-26s %7s s  %5s MiB/s (1 GiB there and back)\n' "scatter + gather" "$both" "$(mib $((1024 << 20)) "$both")"
    rm -f "$BENCH_TMP/lines" "$BENCH_TMP/back"
    "$PCL" px --raw 'rm -f part' >/dev/null
fi

if [[ " ${PARTS:-push lines rss} " == *" rss "* ]]; then
    # Fresh processes, so VmHWM covers this push only. The source is sparse:
    # reading it costs no disk; the copies go to the disk (4 GiB per host
    # would not fit in RAM), relayed along the chain.
    "$PCL" down >/dev/null
    "$PCL" up "$BENCH_TMP/cluster.toml" >/dev/null
    truncate -s 4G "$BENCH_TMP/f4g"
    t0=$(date +%s%N)
    "$PCL" push --file "$BENCH_TMP/f4g" disk/f4g
    t1=$(date +%s%N)
    hwm() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
    daemon=$(pgrep -f "session serve --session bench" | head -1)
    echo "peak RSS (VmHWM) while pushing a 4 GiB file to 4 hosts, relayed ($(ratio $(( (t1 - t0) / 1000000 )) 1000) s)"
    printf '  %-26s %7s MiB\n' "daemon" "$(hwm "$daemon")"
    for ns in "${BENCH_NS[@]}"; do
        for pid in $(ip netns pids "$ns"); do
            if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q ' engine --session '; then
                printf '  %-26s %7s MiB\n' "engine host ($ns)" "$(hwm "$pid")"
            fi
        done
    done
    rm -f "$BENCH_TMP/f4g" "$BENCH_TMP"/disk*/f4g
fi
# The ControlMasters would outlive the hosts by ControlPersist.
for ip in "${BENCH_IPS[@]}"; do ssh -F "$BENCH_TMP/ssh_config" -O exit "$ip" 2>/dev/null || true; done
