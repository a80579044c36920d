#!/usr/bin/env bash
# Checks the playbooks: syntax, ansible-lint, real rolling restarts of a
# local Elasticsearch API server (and the health rules against a scripted
# one), and deploy_esync.yml's rules tasks. Needs the variables of
# scripts/services.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${ESYNC_TEST_ANSIBLE_BIN_DIR:?ESYNC_TEST_ANSIBLE_BIN_DIR is not set: run scripts/services.sh up and source .services/env}"
export PATH="$ESYNC_TEST_ANSIBLE_BIN_DIR:$PATH"
export ANSIBLE_LOCAL_TEMP="${TMPDIR:-/tmp}/ansible-local" ANSIBLE_REMOTE_TEMP="${TMPDIR:-/tmp}/ansible-remote"
cd "$HERE"
for playbook in rolling_restart.yml deploy_esync.yml slowlog_thresholds.yml; do
  ansible-playbook --syntax-check -i inventory/hosts.yml "$playbook"
done
ansible-lint --offline -q .
tests/local_rolling_restart.sh
tests/local_prometheus_rules.sh
echo "playbooks: ok"
