#!/usr/bin/env bash
# Run every test. Installs what the tests need first (an OpenSSH server for
# the SSH launcher tests, iproute2 for the network-namespace hosts, Slurm
# and munge for the Slurm launcher tests, which start their own daemons,
# and the peer tools pcl is compared with: ClusterShell, pdsh's dshbak,
# GNU parallel), so it works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ip >/dev/null || need+=(iproute2)
command -v ps >/dev/null || need+=(procps)
command -v useradd >/dev/null || need+=(passwd)
command -v setpriv >/dev/null || need+=(util-linux)
command -v hostname >/dev/null || need+=(hostname)
[ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v srun >/dev/null || need+=(slurm-wlm)
[ -x /usr/sbin/munged ] || need+=(munge)
command -v nodeset >/dev/null || need+=(clustershell)
command -v dshbak >/dev/null || need+=(pdsh)
command -v parallel >/dev/null || need+=(parallel)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing test dependencies: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
