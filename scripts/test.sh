#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the local services, checks
# formatting and lints, runs every test (integration tests included: they
# fail, never skip, when a service is missing), checks and unit-tests the
# Prometheus alerting rules and parses the dashboard's queries (promtool),
# checks the Ansible playbooks, and stops the services it started.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/services.sh up >/dev/null
trap 'scripts/services.sh down' EXIT
# shellcheck disable=SC1091
source .services/env

echo "== cargo test (unit + integration against the local services)"
TEST_LOG="$(mktemp)"
trap 'rm -f "$TEST_LOG"; scripts/services.sh down' EXIT
set +e
cargo test --workspace --no-fail-fast -- --include-ignored 2>&1 | tee "$TEST_LOG"
test_status=${PIPESTATUS[0]}
set -e
# one closing line for the whole workspace (cargo prints one per test binary)
summary="$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { printf "%d passed, %d failed", p, f }' "$TEST_LOG")"
if [ "$test_status" -ne 0 ]; then
  echo "tests: $summary"
  exit "$test_status"
fi
echo "== layering (scripts/check_layers.py)"
python3 scripts/check_layers.py
echo "== alerting rules and dashboard queries (promtool)"
scripts/install_promtool.sh
promtool check rules ops/prometheus/esync.rules.yml
promtool test rules ops/prometheus/esync.rules.test.yml
scripts/check_dashboard_queries.py ops/grafana/esync.json
echo "== cargo fmt"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== playbooks"
if [ -x playbooks/tests/check.sh ]; then
  playbooks/tests/check.sh
fi
echo "== all checks passed"
echo "tests: $summary"
