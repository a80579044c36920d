#!/usr/bin/env bash
# One real run of deploy_esync.yml's optional Prometheus rules tasks against
# localhost (connection: local, tag prometheus_rules): off by default; with
# esync_prometheus_rules_dir set it installs ops/prometheus/esync.rules.yml
# there unchanged, and a second run changes nothing.
#
# ansible-playbook is taken from ANSIBLE_PLAYBOOK or PATH.
set -euo pipefail

PLAYBOOK_BIN="${ANSIBLE_PLAYBOOK:-ansible-playbook}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/hosts.yml" <<'YAML'
esync:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
YAML

run() { # extra ansible-playbook arguments...
  (cd "$HERE" && "$PLAYBOOK_BIN" -i "$WORK/hosts.yml" deploy_esync.yml --tags prometheus_rules \
    -e ansible_become=false "$@")
}

run >"$WORK/off.log"
grep -q 'changed=0 .*skipped=2' "$WORK/off.log" || { cat "$WORK/off.log" >&2; echo "rules tasks ran while off" >&2; exit 1; }

run -e "esync_prometheus_rules_dir=$WORK/rules" -e esync_prometheus_service= >"$WORK/on.log"
cmp "$WORK/rules/esync.rules.yml" "$HERE/../ops/prometheus/esync.rules.yml" \
  || { cat "$WORK/on.log" >&2; echo "rules file not installed" >&2; exit 1; }

run -e "esync_prometheus_rules_dir=$WORK/rules" -e esync_prometheus_service= >"$WORK/again.log"
grep -q 'changed=0 ' "$WORK/again.log" || { cat "$WORK/again.log" >&2; echo "second run changed something" >&2; exit 1; }
echo "prometheus rules task: ok"
