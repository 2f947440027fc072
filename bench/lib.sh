# Shared by the bench scripts: namespace hosts with sshd, peer tools, timing.
# Source it; call bench_hosts N to make N hosts (root and iproute2 needed).
# Everything made is removed on exit.

set -euo pipefail
[ -n "${EPOCHREALTIME:-}" ] || { echo "the bench needs bash 5 (for EPOCHREALTIME)" >&2; exit 1; }
BENCH_TMP=$(mktemp -d /tmp/pcl-bench.XXXXXX)
BENCH_NS=()
BENCH_BR=pclbr$$
PCL=${PCL:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/pcl}
export XDG_RUNTIME_DIR=$BENCH_TMP/run
mkdir -p "$XDG_RUNTIME_DIR"

# UDP datagrams in and out of every namespace host: QUIC packets, each a
# wakeup and an acknowledgement's worth of work at both ends.
datagrams() {
    for ns in "${BENCH_NS[@]}"; do
        ip netns exec "$ns" awk '/^Udp:/ {getline; print $2 + $5}' /proc/net/snmp
    done | awk '{s += $1} END {print s}'
}

bench_cleanup() {
    set +e
    PCL_SESSION=bench "$PCL" down >/dev/null 2>&1
    for ns in "${BENCH_NS[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9
        ip netns del "$ns"
    done
    ip link del "$BENCH_BR" 2>/dev/null
    [ -n "${BENCH_PRIVATE_DIR:-}" ] && rmdir "$BENCH_PRIVATE_DIR" 2>/dev/null
    [ -n "${IPP_PROFILE_DIR:-}" ] && "$BENCH_TMP/venv/bin/ipcluster" stop --profile-dir="$IPP_PROFILE_DIR" >/dev/null 2>&1
    rm -rf "$BENCH_TMP"
    if [ -n "${BENCH_CG:-}" ]; then
        # Whatever the bench started and is still there (ControlMasters).
        echo $$ > "$(dirname "$BENCH_CG")/cgroup.procs"
        xargs -r kill < "$BENCH_CG/cgroup.procs"
        for _ in $(seq 20); do rmdir "$BENCH_CG" 2>/dev/null && break; sleep 0.1; done
    fi
}
trap bench_cleanup EXIT

need_pkg() { # need_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null || {
        echo "installing $2" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    }
}

bench_hosts() { # bench_hosts N: sets BENCH_IPS and writes $BENCH_TMP/ssh_config
    # (BENCH_PRIVATE_DIR=DIR: a tmpfs of each host's own at DIR)
    local n=$1
    [ "$(id -u)" = 0 ] || { echo "bench needs root for network namespaces" >&2; exit 1; }
    need_pkg ip iproute2
    [ -x /usr/sbin/sshd ] || need_pkg sshd openssh-server
    mkdir -p /run/sshd
    ssh-keygen -q -t ed25519 -N '' -f "$BENCH_TMP/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$BENCH_TMP/user_key"
    cp "$BENCH_TMP/user_key.pub" "$BENCH_TMP/authorized_keys"
    cat > "$BENCH_TMP/sshd_config" <<CFG
Port 22
HostKey $BENCH_TMP/host_key
AuthorizedKeysFile $BENCH_TMP/authorized_keys
StrictModes no
UsePAM no
PidFile none
PermitRootLogin prohibit-password
MaxStartups 200
CFG
    cat > "$BENCH_TMP/ssh_config" <<CFG
Host *
  IdentityFile $BENCH_TMP/user_key
  IdentitiesOnly yes
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  LogLevel ERROR
  BatchMode yes
  ControlMaster auto
  ControlPath $BENCH_TMP/cm-%h
  ControlPersist 300
CFG
    bench_bridge $(( (n + 252) / 253 ))
    BENCH_IPS=()
    for i in $(seq 1 "$n"); do
        local ns=pclb$$-$i ip=${BENCH_NETS[$(( (i - 1) / 253 ))]}.$(( (i - 1) % 253 + 2 ))
        ip netns add "$ns"
        BENCH_NS+=("$ns")
        ip link add "pclv$$-$i" type veth peer name eth0 netns "$ns"
        ip link set "pclv$$-$i" master "$BENCH_BR" up
        ip -n "$ns" addr add "$ip/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        if [ -n "${BENCH_PRIVATE_DIR:-}" ]; then
            # Its own tmpfs at the same path on every host, as node-local
            # RAM disks: every tool writes a copy per host, none to disk.
            mkdir -p "$BENCH_PRIVATE_DIR"
            # With BENCH_PRIVATE_DISK=1 its disk/ is a directory of the
            # host's own on the (shared) disk, for durable writes.
            local disk=true
            if [ -n "${BENCH_PRIVATE_DISK:-}" ]; then
                mkdir -p "$BENCH_TMP/disk$i"
                disk="mkdir '$BENCH_PRIVATE_DIR/disk' && mount --bind '$BENCH_TMP/disk$i' '$BENCH_PRIVATE_DIR/disk'"
            fi
            ip netns exec "$ns" unshare -m --propagation private sh -c \
                "mount -t tmpfs -o size=${BENCH_PRIVATE_SIZE:-6g} tmpfs '$BENCH_PRIVATE_DIR' && $disk && exec /usr/sbin/sshd -f '$BENCH_TMP/sshd_config'"
        else
            ip netns exec "$ns" /usr/sbin/sshd -f "$BENCH_TMP/sshd_config"
        fi
        BENCH_IPS+=("$ip")
    done
    for ip in "${BENCH_IPS[@]}"; do
        for _ in $(seq 50); do
            ssh -F "$BENCH_TMP/ssh_config" "$ip" true 2>/dev/null && break
            sleep 0.1
        done
    done
}

bench_bridge() { # bench_bridge K: the bridge, with K free 10.231.Y.0/24 subnets (BENCH_NETS)
    # Chosen under the lock the namespace tests take, among subnets no
    # address or route uses yet, so benches and tests running at the same
    # time never share one.
    local lock used y
    exec {lock}>/tmp/pcl-test-netns.lock
    flock "$lock"
    used=$(ip -o -4 addr show; ip -4 route show table all)
    BENCH_NETS=()
    for k in $(seq 0 199); do
        y=$(( ($$ + k) % 200 + 20 ))
        grep -qF "10.231.$y." <<<"$used" || BENCH_NETS+=("10.231.$y")
        [ "${#BENCH_NETS[@]}" = "$1" ] && break
    done
    [ "${#BENCH_NETS[@]}" = "$1" ] || { echo "no $1 free 10.231.Y.0/24 subnets" >&2; exit 1; }
    ip link add "$BENCH_BR" type bridge
    for net in "${BENCH_NETS[@]}"; do
        ip addr add "$net.1/24" dev "$BENCH_BR"
    done
    ip link set "$BENCH_BR" up
    exec {lock}>&-
}

bench_shape() { # bench_shape RATE: every host's link both ways, and the
    # bridge's egress (what the root namespace sends out), at RATE with tbf
    local tbf=(root tbf rate "$1" burst 256kbit latency 100ms) i
    for i in $(seq 1 "${#BENCH_NS[@]}"); do
        tc qdisc add dev "pclv$$-$i" "${tbf[@]}"
        tc -n "${BENCH_NS[$((i - 1))]}" qdisc add dev eth0 "${tbf[@]}"
    done
    tc qdisc add dev "$BENCH_BR" "${tbf[@]}"
}

bench_cluster() { # bench_cluster ENGINES_PER_HOST > cluster.toml
    echo "name = \"bench\""
    echo "[defaults]"
    echo "engines = $1"
    echo "ssh_options = [\"-F\", \"$BENCH_TMP/ssh_config\"]"
    echo "engine_path = \"$PCL\""
    for ip in "${BENCH_IPS[@]}"; do
        echo "[[hosts]]"
        echo "host = \"$ip\""
    done
}

# CPU accounting: bench_cpu_start puts the bench (and so every process it
# starts: sshd in the namespaces, the engines, the daemon, the ssh
# ControlMasters, the tools) into a cpuacct cgroup of its own; cpu_ns
# reads the CPU time they have used, in ns.
bench_cpu_start() {
    BENCH_CG=/sys/fs/cgroup/cpuacct/pcl-bench-$$
    mkdir "$BENCH_CG"
    echo $$ > "$BENCH_CG/cgroup.procs"
}
cpu_ns() { cat "$BENCH_CG/cpuacct.usage"; }

median_ms() { # median_ms RUNS CMD...: median wall time of CMD in ms
    local runs=$1; shift
    local times=()
    for _ in $(seq "$runs"); do
        local t0 t1
        # Each run starts with nothing dirty in the page cache, so no run
        # pays for writing back the files of the one before.
        sync
        # bash's own clock: `$(date +%s%N)` would time the start of a
        # `date` process too, about a millisecond on a small VM.
        t0=${EPOCHREALTIME//[.,]/}
        "$@" >/dev/null 2>&1
        t1=${EPOCHREALTIME//[.,]/}
        times+=($((t1 - t0)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}

ipp_install() { # a venv with ipyparallel in the bench's temp dir; sets IPP_PROFILE_DIR
    python3 -m venv "$BENCH_TMP/venv"
    "$BENCH_TMP/venv/bin/pip" install -q ipyparallel >/dev/null
    IPP_PROFILE_DIR=$BENCH_TMP/ipp
}

ipp_start() { # ipp_start N: N local ipyparallel engines (stopped on exit)
    "$BENCH_TMP/venv/bin/ipcluster" start -n "$1" --daemonize --profile-dir="$IPP_PROFILE_DIR" >/dev/null 2>&1
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
