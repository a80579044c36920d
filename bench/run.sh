#!/usr/bin/env bash
# Runs the benchmarks against the local services and prints numbers and ratios.
#   bench/run.sh [bench-sync options, e.g. --ids 200000 --workers 4]
# Takes a few minutes: release builds, then 200k ids through each stage.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/services.sh up >/dev/null
# shellcheck disable=SC1091
source .services/env
cargo build --release --quiet -p esync --bin esync -p esync-bench --bin bench-sync
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%FT%TZ)"
target/release/bench-sync --esync target/release/esync "$@"
