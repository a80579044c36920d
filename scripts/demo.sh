#!/usr/bin/env bash
# Quick start: installs and starts the local services, builds esync, creates a
# demo table with data, runs the sync daemon and shows changes reaching the
# index. Leaves the services running (stop them with scripts/services.sh down).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/services.sh up >/dev/null
# shellcheck disable=SC1091
source .services/env
echo "building esync (the first build takes a few minutes)..."
cargo build --quiet -p esync --bin esync --example demo
target/debug/examples/demo target/debug/esync "$ROOT/.services/demo"
