#!/usr/bin/env bash
# Relayed push on shaped links: every namespace host's link, and the
# daemon's own link to the bridge, limited to RATE (default 250mbit) with
# tc; a SIZE (default 64M) file pushed to 4, 8 and 16 hosts by pcl, by
# `pdcp -R ssh` and by `clush --copy`, each host writing its own copy into
# a tmpfs of its own (so no disk is measured). The physical limit is one
# copy's time on one link: 64 MiB / 250 Mbit/s = 2.15 s.
# Usage: sudo bench/relay.sh [HOSTS...]   (RUNS=N, default 3; RELAY=false
# for pcl's direct sends)
BENCH_PRIVATE_DIR=/dev/shm/pcl-bench-relay-$$
BENCH_PRIVATE_SIZE=1g
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-3}
RATE=${RATE:-250mbit}
SIZE=${SIZE:-64M}
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(4 8 16)
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
need_pkg pdcp pdsh
need_pkg clush clustershell
need_pkg tc iproute2
max=0
for n in "${COUNTS[@]}"; do [ "$n" -gt "$max" ] && max=$n; done
bench_hosts "$max"
bench_shape "$RATE"
export PDSH_SSH_ARGS="-F $BENCH_TMP/ssh_config -x -l%u %h"
export PDSH_RCMD_TYPE=ssh
export PCL_SESSION=bench
head -c "$SIZE" /dev/urandom > "$BENCH_TMP/f"
want=$(sha256sum < "$BENCH_TMP/f" | cut -d' ' -f1)
med_s() { median_ms "$@" | awk '{printf "%.2f", $1 / 1000}'; }
echo "push of $SIZE to N hosts, every link at $RATE (median of $RUNS), $(date -u +%F)"
printf '  %5s %9s %9s %9s %10s %10s\n' hosts pcl pdcp clush "vs pdcp" "vs clush"
for n in "${COUNTS[@]}"; do
    ips=("${BENCH_IPS[@]:0:$n}")
    hosts=$(IFS=,; echo "${ips[*]}")
    {
        echo "name = \"bench\""
        echo "[defaults]"
        echo "ssh_options = [\"-F\", \"$BENCH_TMP/ssh_config\"]"
        echo "engine_path = \"$PCL\""
        echo "workdir = \"$BENCH_PRIVATE_DIR\""
        echo "relay = ${RELAY:-true}"
        for ip in "${ips[@]}"; do echo "[[hosts]]"; echo "host = \"$ip\""; done
    } > "$BENCH_TMP/cluster$n.toml"
    "$PCL" up "$BENCH_TMP/cluster$n.toml" >/dev/null
    pdsh -w "$hosts" true # warm the ControlMasters
    pcl_s=$(med_s "$RUNS" "$PCL" push --file "$BENCH_TMP/f" f)
    got=$("$PCL" px --raw 'sha256sum < f | cut -d" " -f1' | sort | uniq -c | awk '{print $1, $2}')
    [ "$got" = "$n $want" ] || { echo "pcl's copies differ: $got" >&2; exit 1; }
    pdcp_s=$(med_s "$RUNS" pdcp -R ssh -w "$hosts" "$BENCH_TMP/f" "$BENCH_PRIVATE_DIR/p")
    clush_s=$(med_s "$RUNS" clush -o "-F $BENCH_TMP/ssh_config" \
        -O "scp_options=-O -F $BENCH_TMP/ssh_config" -w "$hosts" \
        --copy "$BENCH_TMP/f" --dest "$BENCH_PRIVATE_DIR/")
    got=$("$PCL" px --raw 'cat p | sha256sum | cut -d" " -f1; rm -f p' | sort | uniq -c | awk '{print $1, $2}')
    [ "$got" = "$n $want" ] || { echo "pdcp's copies differ: $got" >&2; exit 1; }
    "$PCL" down >/dev/null
    printf '  %5s %8ss %8ss %8ss %9sx %9sx\n' "$n" "$pcl_s" "$pdcp_s" "$clush_s" \
        "$(ratio "$pdcp_s" "$pcl_s")" "$(ratio "$clush_s" "$pcl_s")"
done
for ip in "${BENCH_IPS[@]}"; do ssh -F "$BENCH_TMP/ssh_config" -O exit "$ip" 2>/dev/null || true; done
