#!/usr/bin/env bash
# One-shot `pcl px true` on 4 engines on 4 namespace hosts, whole-process
# wall time, side by side with pdsh and clush (ssh ControlMaster warm) and
# ipyparallel's one-shot client. Prints medians and ratios.
# Usage: sudo bench/px.sh   (SKIP_IPP=1 to leave ipyparallel out)
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-30}
[ -x "$PCL" ] || cargo build --release --manifest-path "$(dirname "$0")/../Cargo.toml"
need_pkg pdsh pdsh
need_pkg clush clustershell
bench_hosts 4
bench_cluster 1 > "$BENCH_TMP/cluster.toml"
"$PCL" up "$BENCH_TMP/cluster.toml" >/dev/null
export PCL_SESSION=bench

hosts=$(IFS=,; echo "${BENCH_IPS[*]}")
export PDSH_SSH_ARGS="-F $BENCH_TMP/ssh_config -x -l%u %h"
export PDSH_RCMD_TYPE=ssh
pdsh -w "$hosts" true # warm the ControlMasters

pcl_ms=$(median_ms "$RUNS" "$PCL" px true)
pdsh_ms=$(median_ms "$RUNS" pdsh -R ssh -w "$hosts" true)
clush_ms=$(median_ms "$RUNS" clush -o "-F $BENCH_TMP/ssh_config" -w "$hosts" true)
echo "one-shot px true, 4 engines on 4 namespace hosts (median of $RUNS)"
printf '  %-28s %8s ms\n' "pcl px true" "$pcl_ms"
printf '  %-28s %8s ms   pcl is %sx faster\n' "pdsh -R ssh (ControlMaster)" "$pdsh_ms" "$(ratio "$pdsh_ms" "$pcl_ms")"
printf '  %-28s %8s ms   pcl is %sx faster\n' "clush (ControlMaster)" "$clush_ms" "$(ratio "$clush_ms" "$pcl_ms")"

if [ -z "${SKIP_IPP:-}" ]; then
    ipp_install
    ipp_start 4
    cat > "$BENCH_TMP/ipp_oneshot.py" <<PY
import ipyparallel as ipp
rc = ipp.Client(profile_dir="$IPP_PROFILE_DIR")
rc.wait_for_engines(4, timeout=120)
rc[:].execute("pass", block=True)
rc.close()
PY
    "$BENCH_TMP/venv/bin/python" "$BENCH_TMP/ipp_oneshot.py" # wait for engines
    ipp_ms=$(median_ms "$((RUNS / 3 + 1))" "$BENCH_TMP/venv/bin/python" "$BENCH_TMP/ipp_oneshot.py")
    printf '  %-28s %8s ms   pcl is %sx faster\n' "ipyparallel one-shot client" "$ipp_ms" "$(ratio "$ipp_ms" "$pcl_ms")"
fi
