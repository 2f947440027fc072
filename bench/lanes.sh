#!/usr/bin/env bash
# Bulk lanes: is TLS 1.3 over TCP worth carrying bulk bytes beside QUIC?
# 256 MiB from the root namespace to one namespace host (unshaped veth,
# a RAM-backed workdir): `pcl push --file` (one QUIC stream, rustls) against
# one TLS 1.3 stream on kernel TCP (Python's ssl, that is OpenSSL, 1 MiB
# writes, an ECDSA P-256 certificate pinned by the client), written into
# the same tmpfs. Wall time and CPU-seconds of every process of each (both
# ends), median of RUNS.
# Usage: sudo bench/lanes.sh   (RUNS=N, default 5)
BENCH_PRIVATE_DIR=/dev/shm/pcl-bench-lanes-$$
BENCH_PRIVATE_SIZE=1g
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-5}
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
need_pkg openssl openssl
need_pkg python3 python3
bench_cpu_start
bench_hosts 1
ip=${BENCH_IPS[0]} ns=${BENCH_NS[0]}
bench_cluster 1 > "$BENCH_TMP/cluster.toml"
sed -i "/^\[defaults\]/a workdir = \"$BENCH_PRIVATE_DIR\"" "$BENCH_TMP/cluster.toml"
export PCL_SESSION=bench
"$PCL" up "$BENCH_TMP/cluster.toml" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=pcl-bench -keyout "$BENCH_TMP/key.pem" -out "$BENCH_TMP/cert.pem" 2>/dev/null
head -c 256M /dev/urandom > "$BENCH_TMP/f256"
med() { sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
cat > "$BENCH_TMP/tls.py" <<'PY'
import socket, ssl, sys
role, addr, path, cert = sys.argv[1:5]
host, port = addr.rsplit(":", 1)
if role == "serve":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, sys.argv[5])
    listener = socket.create_server((host, int(port)))
    print("listening", flush=True)
    conn, _ = listener.accept()
    with ctx.wrap_socket(conn, server_side=True) as tls, open(path, "wb") as out:
        buf = memoryview(bytearray(1 << 20))
        while n := tls.recv_into(buf):
            out.write(buf[:n])
        tls.unwrap()  # the sender waits for this close_notify
else:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(cert)  # the one certificate trusted: pinned
    with socket.create_connection((host, int(port))) as raw, ctx.wrap_socket(raw) as tls, open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            tls.sendall(chunk)
        tls.unwrap()
PY
tls_once() { # the receiver writes into the host's tmpfs, as the engine does
    local t0 c0 t1 c1
    ip netns exec "$ns" python3 "$BENCH_TMP/tls.py" serve "$ip:4433" \
        "$BENCH_PRIVATE_DIR/tls256" "$BENCH_TMP/cert.pem" "$BENCH_TMP/key.pem" > "$BENCH_TMP/listening" &
    local server=$!
    until [ -s "$BENCH_TMP/listening" ]; do sleep 0.05; done
    rm "$BENCH_TMP/listening"
    t0=$(date +%s%N); c0=$(cpu_ns)
    python3 "$BENCH_TMP/tls.py" send "$ip:4433" "$BENCH_TMP/f256" "$BENCH_TMP/cert.pem"
    wait "$server"
    t1=$(date +%s%N); c1=$(cpu_ns)
    cmp -s "$BENCH_TMP/f256" "$BENCH_PRIVATE_DIR/tls256" 2>/dev/null ||
        ip netns exec "$ns" cmp -s "$BENCH_TMP/f256" "$BENCH_PRIVATE_DIR/tls256" ||
        { echo "the TLS copy differs" >&2; exit 1; }
    echo "tls $(( (t1 - t0) / 1000000 )) $(( (c1 - c0) / 1000000 ))"
}
quic_once() {
    local t0 c0 t1 c1
    t0=$(date +%s%N); c0=$(cpu_ns)
    "$PCL" push --file "$BENCH_TMP/f256" f256 >/dev/null
    t1=$(date +%s%N); c1=$(cpu_ns)
    echo "quic $(( (t1 - t0) / 1000000 )) $(( (c1 - c0) / 1000000 ))"
}
: > "$BENCH_TMP/times"
for _ in $(seq "$RUNS"); do
    quic_once >> "$BENCH_TMP/times"
    tls_once >> "$BENCH_TMP/times"
done
echo "256 MiB to one namespace host, $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg) (median of $RUNS paired runs)"
for lane in quic tls; do
    wall=$(awk -v l=$lane '$1 == l {print $2 / 1000}' "$BENCH_TMP/times" | med)
    cpu=$(awk -v l=$lane '$1 == l {print $3 / 1000}' "$BENCH_TMP/times" | med)
    printf '  %-34s %6s s  %6s CPU-s (%s CPU-s/GiB)\n' \
        "$([ $lane = quic ] && echo "QUIC stream (pcl push --file)" || echo "TLS 1.3 over TCP (Python ssl)")" \
        "$wall" "$cpu" "$(awk -v c="$cpu" 'BEGIN {printf "%.1f", c * 4}')"
done
