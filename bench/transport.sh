#!/usr/bin/env bash
# The two paths of the session's traffic, side by side on the same 4
# namespace hosts (one engine each, a RAM-backed workdir each, so that the
# disk measures nobody): `transport = "quic"` (UDP straight to the host)
# against `transport = "ssh"` (QUIC's datagrams over the ssh channel, as
# for a host behind a bastion). Relaying is off in both, so that each
# path carries every copy itself.
#  - push of a 256 MiB file to the 4 hosts (median of RUNS);
#  - one-shot `pcl px true` latency (median of RUNS x 10).
# Usage: sudo bench/transport.sh   (RUNS=N, default 5)
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-5}
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
bench_hosts 4
SHM=$(mktemp -d /dev/shm/pcl-bench.XXXXXX)
trap 'rm -rf "$SHM"; bench_cleanup' EXIT
export PCL_SESSION=bench
head -c 256M /dev/urandom > "$SHM/f256"
want=$(sha256sum < "$SHM/f256" | cut -d' ' -f1)
med_s() { median_ms "$@" | awk '{printf "%.2f", $1 / 1000}'; }

declare -A push_s px_ms
for transport in quic ssh; do
    bench_cluster 1 | awk -v shm="$SHM" -v t="$transport" \
        '{print} /^host = / {printf "workdir = \"%s/w%d\"\ntransport = \"%s\"\nrelay = false\n", shm, n++, t}' \
        > "$BENCH_TMP/cluster-$transport.toml"
    "$PCL" up "$BENCH_TMP/cluster-$transport.toml" >/dev/null
    route=$("$PCL" status --json | grep -o '"transport":"[a-z]*"' | sort -u)
    [ "$route" = "\"transport\":\"$transport\"" ] || { echo "wrong route: $route" >&2; exit 1; }
    "$PCL" px true >/dev/null
    px_ms[$transport]=$(median_ms $((RUNS * 10)) "$PCL" px true)
    push_s[$transport]=$(med_s "$RUNS" "$PCL" push --file "$SHM/f256" f256)
    got=$("$PCL" px --raw 'sha256sum < f256 | cut -d" " -f1' | sort -u)
    [ "$got" = "$want" ] || { echo "pushed file differs over $transport: $got" >&2; exit 1; }
    "$PCL" px 'rm -f f256' >/dev/null
    "$PCL" down >/dev/null
done

mib() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.0f", b / 1048576 / s}'; }
echo "the session's two paths, 4 namespace hosts, $(nproc) cores (median of $RUNS)"
printf '  %-34s %8s %8s\n' "" "quic" "ssh"
printf '  %-34s %6s s %6s s   (ssh/quic %sx)\n' "push --file 256 MiB to 4 hosts" \
    "${push_s[quic]}" "${push_s[ssh]}" "$(ratio "${push_s[ssh]}" "${push_s[quic]}")"
printf '  %-34s %4s MiB/s %4s MiB/s aggregate\n' "" \
    "$(mib $((1024 << 20)) "${push_s[quic]}")" "$(mib $((1024 << 20)) "${push_s[ssh]}")"
printf '  %-34s %5s ms %5s ms   (ssh/quic %sx)\n' "pcl px true, one-shot" \
    "${px_ms[quic]}" "${px_ms[ssh]}" "$(ratio "${px_ms[ssh]}" "${px_ms[quic]}")"
