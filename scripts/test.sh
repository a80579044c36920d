#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the local services, checks
# formatting and lints, runs every test (integration tests included: they
# fail, never skip, when a service is missing), checks the Ansible playbooks,
# and stops the services it started.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/services.sh up >/dev/null
trap 'scripts/services.sh down' EXIT
# shellcheck disable=SC1091
source .services/env

echo "== cargo test (unit + integration against the local services)"
cargo test --workspace --no-fail-fast -- --include-ignored
echo "== cargo fmt"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== playbooks"
if [ -x playbooks/tests/check.sh ]; then
  playbooks/tests/check.sh
fi
echo "== all checks passed"
