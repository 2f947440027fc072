#!/usr/bin/env bash
# Data movement on 4 namespace hosts (one engine each, a workdir each):
#  - push of a 256 MiB file vs `pdcp -R ssh` and `clush --copy` (ratios);
#  - scatter then gather of a 1 GiB line file (MiB/s);
#  - peak RSS (VmHWM) of the daemon and the engine hosts while pushing a
#    4 GiB file.
# Usage: sudo bench/data.sh   (RUNS=N for the medians, default 3)
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-3}
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
need_pkg pdcp pdsh
need_pkg clush clustershell
bench_hosts 4
bench_cluster 1 > "$BENCH_TMP/cluster.toml"
# Namespaces share one file system: a workdir per host keeps copies apart.
awk -v tmp="$BENCH_TMP" '{print} /^host = / {printf "workdir = \"%s/w%d\"\n", tmp, n++}' \
    "$BENCH_TMP/cluster.toml" > "$BENCH_TMP/cluster4.toml"
export PCL_SESSION=bench
"$PCL" up "$BENCH_TMP/cluster4.toml" >/dev/null

hosts=$(IFS=,; echo "${BENCH_IPS[*]}")
export PDSH_SSH_ARGS="-F $BENCH_TMP/ssh_config -x -l%u %h"
export PDSH_RCMD_TYPE=ssh
pdsh -w "$hosts" true # warm the ControlMasters
mkdir -p "$BENCH_TMP/dst"

med_s() { median_ms "$@" | awk '{printf "%.2f", $1 / 1000}'; }
mib() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.0f", b / 1048576 / s}'; }

head -c 256M /dev/urandom > "$BENCH_TMP/f256"
pcl_s=$(med_s "$RUNS" "$PCL" push --file "$BENCH_TMP/f256" f256)
pdcp_s=$(med_s "$RUNS" pdcp -R ssh -w "$hosts" "$BENCH_TMP/f256" "$BENCH_TMP/dst/f256")
# clush gives scp none of the -o options: `-O`, the legacy scp protocol
# (the bench sshd has no sftp subsystem), and the ssh config go in here.
rm -f "$BENCH_TMP/dst/f256"
clush_s=$(med_s "$RUNS" clush -o "-F $BENCH_TMP/ssh_config" \
    -O "scp_options=-O -F $BENCH_TMP/ssh_config" -w "$hosts" \
    --copy "$BENCH_TMP/f256" --dest "$BENCH_TMP/dst/")
cmp -s "$BENCH_TMP/f256" "$BENCH_TMP/dst/f256" || { echo "clush --copy failed" >&2; exit 1; }
# Correctness, once: every host has the same bytes.
want=$(sha256sum < "$BENCH_TMP/f256" | cut -d' ' -f1)
got=$("$PCL" px --raw 'sha256sum < f256 | cut -d" " -f1' | sort -u)
[ "$got" = "$want" ] || { echo "pushed file differs: $got" >&2; exit 1; }
echo "push of a 256 MiB file to 4 namespace hosts (median of $RUNS)"
printf '  %-26s %7s s  %5s MiB/s aggregate\n' "pcl push --file" "$pcl_s" "$(mib $((1024 << 20)) "$pcl_s")"
printf '  %-26s %7s s  pcl is %sx faster\n' "pdcp -R ssh" "$pdcp_s" "$(ratio "$pdcp_s" "$pcl_s")"
printf '  %-26s %7s s  pcl is %sx faster\n' "clush --copy" "$clush_s" "$(ratio "$clush_s" "$pcl_s")"
rm -f "$BENCH_TMP/dst/f256" "$BENCH_TMP"/w*/f256

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
rm -f "$BENCH_TMP/lines" "$BENCH_TMP/back" "$BENCH_TMP"/w*/part

# Fresh processes, so VmHWM covers this push only. The source is sparse:
# reading it costs no disk.
"$PCL" down >/dev/null
"$PCL" up "$BENCH_TMP/cluster4.toml" >/dev/null
truncate -s 4G "$BENCH_TMP/f4g"
t0=$(date +%s%N)
"$PCL" push --file "$BENCH_TMP/f4g" f4g
t1=$(date +%s%N)
hwm() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
daemon=$(pgrep -f "session serve --session bench" | head -1)
echo "peak RSS (VmHWM) while pushing a 4 GiB file to 4 hosts ($(ratio $(( (t1 - t0) / 1000000 )) 1000) s)"
printf '  %-26s %7s MiB\n' "daemon" "$(hwm "$daemon")"
for ns in "${BENCH_NS[@]}"; do
    for pid in $(ip netns pids "$ns"); do
        if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q ' engine --session '; then
            printf '  %-26s %7s MiB\n' "engine host ($ns)" "$(hwm "$pid")"
        fi
    done
done
rm -f "$BENCH_TMP/f4g" "$BENCH_TMP"/w*/f4g
# The ControlMasters would outlive the hosts by ControlPersist.
for ip in "${BENCH_IPS[@]}"; do ssh -F "$BENCH_TMP/ssh_config" -O exit "$ip" 2>/dev/null || true; done
