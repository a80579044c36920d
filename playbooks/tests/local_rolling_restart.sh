#!/usr/bin/env bash
# One real run of rolling_restart.yml against localhost (connection: local):
# starts a local Elasticsearch API server (noida-db, from
# ESYNC_TEST_NOIDA_BIN), restarts it through the playbook, and checks it came
# back with a new process and allocation restored to its previous value.
#
#   ESYNC_TEST_NOIDA_BIN=/abs/path/noida-db playbooks/tests/local_rolling_restart.sh
#
# ansible-playbook is taken from ANSIBLE_PLAYBOOK or PATH. Port 19320.
set -euo pipefail

: "${ESYNC_TEST_NOIDA_BIN:?ESYNC_TEST_NOIDA_BIN is not set: run scripts/services.sh up}"
PLAYBOOK_BIN="${ANSIBLE_PLAYBOOK:-ansible-playbook}"
PORT="${OPSBOT_PLAYBOOK_TEST_PORT:-19320}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
URL="http://127.0.0.1:${PORT}"

start_server() {
  setsid "$ESYNC_TEST_NOIDA_BIN" start --only elasticsearch --elasticsearch-port "$PORT" \
    --data-dir "$WORK/data" >>"$WORK/noida.log" 2>&1 </dev/null &
  echo $! >"$WORK/noida.pid"
  for _ in $(seq 1 300); do
    curl -sf "$URL/" >/dev/null && return 0
    sleep 0.1
  done
  echo "noida-db did not start on $PORT" >&2
  cat "$WORK/noida.log" >&2
  return 1
}

cleanup() {
  if [[ -f "$WORK/noida.pid" ]]; then
    kill -KILL -- "-$(cat "$WORK/noida.pid")" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/data"
start_server

cat >"$WORK/restart.sh" <<SCRIPT
#!/usr/bin/env bash
set -euo pipefail
kill -TERM -- "-\$(cat "$WORK/noida.pid")"
while curl -s "$URL/" >/dev/null; do sleep 0.1; done
setsid "$ESYNC_TEST_NOIDA_BIN" start --only elasticsearch --elasticsearch-port "$PORT" \
  --data-dir "$WORK/data" >>"$WORK/noida.log" 2>&1 </dev/null &
echo \$! >"$WORK/noida.pid"
SCRIPT

NODE="$(curl -sf "$URL/_cat/nodes?h=name" | tr -d '[:space:]')"
PID_BEFORE="$(cat "$WORK/noida.pid")"
curl -sf -XPUT -H 'content-type: application/json' "$URL/_cluster/settings" \
  -d '{"persistent":{"cluster.routing.allocation.enable":"all"}}' >/dev/null

cat >"$WORK/inventory.yml" <<INVENTORY
all:
  vars:
    es_api_url: "$URL"
    es_restart_method: command
    es_restart_command: "bash $WORK/restart.sh"
    es_poll_delay_seconds: 1
  children:
    elasticsearch:
      hosts:
        ${NODE}:
          ansible_connection: local
          ansible_python_interpreter: "{{ ansible_playbook_python }}"
INVENTORY

"$PLAYBOOK_BIN" -i "$WORK/inventory.yml" "$HERE/rolling_restart.yml"

PID_AFTER="$(cat "$WORK/noida.pid")"
ALLOCATION="$(curl -sf "$URL/_cluster/settings?flat_settings=true")"
STATUS="$(curl -sf "$URL/_cluster/health" | sed -e 's/.*"status":"\([a-z]*\)".*/\1/')"
[[ "$PID_BEFORE" != "$PID_AFTER" ]] || { echo "server was not restarted" >&2; exit 1; }
[[ "$ALLOCATION" == *'"cluster.routing.allocation.enable":"all"'* ]] || { echo "allocation not restored: $ALLOCATION" >&2; exit 1; }
[[ "$STATUS" == "green" ]] || { echo "cluster is $STATUS" >&2; exit 1; }
echo "rolling_restart.yml: node $NODE restarted (pid $PID_BEFORE -> $PID_AFTER), allocation restored, cluster green"

# Unset before: put back by resetting it (null), not left at primaries or "all".
curl -sf -XPUT -H 'content-type: application/json' "$URL/_cluster/settings" \
  -d '{"persistent":{"cluster.routing.allocation.enable":null}}' >/dev/null
"$PLAYBOOK_BIN" -i "$WORK/inventory.yml" "$HERE/rolling_restart.yml"
PID_UNSET="$(cat "$WORK/noida.pid")"
ALLOCATION="$(curl -sf "$URL/_cluster/settings?flat_settings=true")"
[[ "$PID_AFTER" != "$PID_UNSET" ]] || { echo "server was not restarted the second time" >&2; exit 1; }
[[ "$ALLOCATION" != *'cluster.routing.allocation.enable'* ]] || { echo "allocation was unset, now: $ALLOCATION" >&2; exit 1; }
echo "rolling_restart.yml: unset allocation reset to unset"

# A yellow cluster (a replica with nowhere to go) fails the health check:
# the node is not restarted and the operator's own setting is left alone.
curl -sf -XPUT -H 'content-type: application/json' "$URL/_cluster/settings" \
  -d '{"persistent":{"cluster.routing.allocation.enable":"none"}}' >/dev/null
curl -sf -XPUT -H 'content-type: application/json' "$URL/opsbot-yellow" \
  -d '{"settings":{"number_of_replicas":1}}' >/dev/null
if OUTPUT="$("$PLAYBOOK_BIN" -i "$WORK/inventory.yml" "$HERE/rolling_restart.yml" -e es_health_retries=1 2>&1)"; then
  echo "playbook succeeded on a yellow cluster" >&2; exit 1
fi
[[ "$OUTPUT" == *"stopped at node $NODE"*"allocation not changed"* ]] || { echo "no stop message: $OUTPUT" >&2; exit 1; }
[[ "$(cat "$WORK/noida.pid")" == "$PID_UNSET" ]] || { echo "node restarted on a yellow cluster" >&2; exit 1; }
ALLOCATION="$(curl -sf "$URL/_cluster/settings?flat_settings=true")"
[[ "$ALLOCATION" == *'"cluster.routing.allocation.enable":"none"'* ]] || { echo "setting changed by a failed run: $ALLOCATION" >&2; exit 1; }
echo "rolling_restart.yml: stopped on yellow, allocation left alone"
