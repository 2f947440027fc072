#!/usr/bin/env bash
# Fuzz the frame decoder for a bounded time (default 60 s):
#   bench/fuzz.sh [SECONDS]
# Needs cargo-fuzz (installed here if missing); the stable toolchain is
# allowed nightly flags for this run only.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run frames -- -max_total_time="${1:-60}" -rss_limit_mb=1024
