#!/usr/bin/env bash
# Real runs of rolling_restart.yml against localhost (connection: local):
# starts a local Elasticsearch API server (noida-db, from
# ESYNC_TEST_NOIDA_BIN), restarts it through the playbook, and checks it came
# back with a new process and allocation restored to its previous value;
# then the health rules: yellow refused unless allowed, a settled yellow
# accepted only after es_settled_polls quiet polls, and a node holding the
# only started copy of a shard (every shard of a yellow one-node cluster)
# never restarted.
#
#   ESYNC_TEST_NOIDA_BIN=/abs/path/noida-db playbooks/tests/local_rolling_restart.sh
#
# Shard moves cannot be made on one noida-db node: a scripted API server
# (python3) answers health polls with moves between quiet ones, to show each
# move starts the count of quiet polls again.
#
# ansible-playbook is taken from ANSIBLE_PLAYBOOK or PATH. Ports 19320 and
# 19321.
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
  for pidfile in "$WORK/noida.pid" "$WORK/scripted.pid"; do
    if [[ -f "$pidfile" ]]; then
      kill -KILL -- "-$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
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
# --add-replica: the node comes back to a yellow cluster (a replica it cannot place).
if [[ "\${1:-}" == --add-replica ]]; then
  until curl -sf "$URL/" >/dev/null; do sleep 0.1; done
  curl -sf -XPUT -H 'content-type: application/json' "$URL/opsbot-yellow/_settings" \
    -d '{"index":{"number_of_replicas":1}}' >/dev/null
fi
SCRIPT

# The item lines a polling task printed: one per health poll.
polls_of() {
  awk -v task="TASK [$1]" 'index($0, "TASK [") == 1 { inside = index($0, task) == 1; next }
    inside && /\(item=/' <<<"$2"
}
BEFORE_TASK="Wait for an acceptable cluster health before touching the node"
AFTER_TASK="Wait for the cluster to be healthy again"

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

OUTPUT="$("$PLAYBOOK_BIN" -i "$WORK/inventory.yml" "$HERE/rolling_restart.yml" 2>&1)" || { echo "$OUTPUT" >&2; exit 1; }

PID_AFTER="$(cat "$WORK/noida.pid")"
ALLOCATION="$(curl -sf "$URL/_cluster/settings?flat_settings=true")"
STATUS="$(curl -sf "$URL/_cluster/health" | sed -e 's/.*"status":"\([a-z]*\)".*/\1/')"
[[ "$PID_BEFORE" != "$PID_AFTER" ]] || { echo "server was not restarted" >&2; exit 1; }
[[ "$ALLOCATION" == *'"cluster.routing.allocation.enable":"all"'* ]] || { echo "allocation not restored: $ALLOCATION" >&2; exit 1; }
[[ "$STATUS" == "green" ]] || { echo "cluster is $STATUS" >&2; exit 1; }
# Green is accepted at once, before and after the node.
[[ "$(polls_of "$BEFORE_TASK" "$OUTPUT" | wc -l)" == 1 && "$(polls_of "$AFTER_TASK" "$OUTPUT" | wc -l)" == 1 ]] \
  || { echo "green not accepted at the first poll: $OUTPUT" >&2; exit 1; }
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
  -d '{"settings":{"number_of_shards":2,"number_of_replicas":1}}' >/dev/null
if OUTPUT="$("$PLAYBOOK_BIN" -i "$WORK/inventory.yml" "$HERE/rolling_restart.yml" -e es_health_retries=1 2>&1)"; then
  echo "playbook succeeded on a yellow cluster" >&2; exit 1
fi
[[ "$OUTPUT" == *"cluster not green after 2 polls; last: yellow, 0 initializing, 0 relocating, 2 unassigned"* ]] \
  || { echo "no health refusal: $OUTPUT" >&2; exit 1; }
[[ "$OUTPUT" == *"stopped at node $NODE, task 'Require an acceptable cluster health before touching the node'; allocation not changed"* ]] \
  || { echo "no stop message: $OUTPUT" >&2; exit 1; }
[[ "$(cat "$WORK/noida.pid")" == "$PID_UNSET" ]] || { echo "node restarted on a yellow cluster" >&2; exit 1; }
ALLOCATION="$(curl -sf "$URL/_cluster/settings?flat_settings=true")"
[[ "$ALLOCATION" == *'"cluster.routing.allocation.enable":"none"'* ]] || { echo "setting changed by a failed run: $ALLOCATION" >&2; exit 1; }
echo "rolling_restart.yml: stopped on yellow, allocation left alone"

# Yellow allowed: it settles (nothing initializing or relocating) for
# es_settled_polls polls, then the node is still not restarted, since it holds
# the only started copy of every opsbot-yellow shard. archive's shards have a
# single copy by design (no replicas) and are not counted.
curl -sf -XPUT -H 'content-type: application/json' "$URL/archive" \
  -d '{"settings":{"number_of_shards":2,"number_of_replicas":0}}' >/dev/null
if OUTPUT="$("$PLAYBOOK_BIN" -i "$WORK/inventory.yml" "$HERE/rolling_restart.yml" \
  -e es_allow_yellow=true -e es_settled_polls=3 -e es_health_retries=10 2>&1)"; then
  echo "playbook restarted the only started copies of a yellow cluster" >&2; exit 1
fi
POLLS="$(polls_of "$BEFORE_TASK" "$OUTPUT")"
[[ "$(wc -l <<<"$POLLS")" == 3 && "$(grep -c 'item=yellow, 0 initializing, 0 relocating' <<<"$POLLS")" == 3 ]] \
  || { echo "yellow not accepted after exactly 3 quiet polls: $OUTPUT" >&2; exit 1; }
[[ "$OUTPUT" == *"node $NODE holds the only started copy of opsbot-yellow[0] and 1 more: restarting it would turn the cluster red"* ]] \
  || { echo "no only-started-copy refusal: $OUTPUT" >&2; exit 1; }
[[ "$OUTPUT" == *"stopped at node $NODE, task 'Require that the node holds no shard's only started copy'; allocation not changed"* ]] \
  || { echo "no stop message: $OUTPUT" >&2; exit 1; }
[[ "$(cat "$WORK/noida.pid")" == "$PID_UNSET" ]] || { echo "node holding the only started copies restarted" >&2; exit 1; }
ALLOCATION="$(curl -sf "$URL/_cluster/settings?flat_settings=true")"
[[ "$ALLOCATION" == *'"cluster.routing.allocation.enable":"none"'* ]] || { echo "setting changed by a refused run: $ALLOCATION" >&2; exit 1; }
echo "rolling_restart.yml: yellow settled after 3 polls, node holding the only started copies not restarted"

# Green before the node, yellow after it (the restart adds a replica the one
# node cannot place): with yellow allowed the roll ends once the yellow has
# settled for es_settled_polls polls.
curl -sf -XPUT -H 'content-type: application/json' "$URL/_cluster/settings" \
  -d '{"persistent":{"cluster.routing.allocation.enable":"all"}}' >/dev/null
curl -sf -XPUT -H 'content-type: application/json' "$URL/opsbot-yellow/_settings" \
  -d '{"index":{"number_of_replicas":0}}' >/dev/null
OUTPUT="$("$PLAYBOOK_BIN" -i "$WORK/inventory.yml" "$HERE/rolling_restart.yml" \
  -e es_allow_yellow=true -e es_settled_polls=3 -e "es_restart_command='bash $WORK/restart.sh --add-replica'" 2>&1)" \
  || { echo "$OUTPUT" >&2; exit 1; }
POLLS="$(polls_of "$AFTER_TASK" "$OUTPUT")"
[[ "$(wc -l <<<"$POLLS")" == 3 && "$(grep -c 'item=yellow, 0 initializing, 0 relocating' <<<"$POLLS")" == 3 ]] \
  || { echo "yellow after the node not accepted after exactly 3 quiet polls: $OUTPUT" >&2; exit 1; }
PID_YELLOW="$(cat "$WORK/noida.pid")"
ALLOCATION="$(curl -sf "$URL/_cluster/settings?flat_settings=true")"
STATUS="$(curl -sf "$URL/_cluster/health" | sed -e 's/.*"status":"\([a-z]*\)".*/\1/')"
[[ "$PID_UNSET" != "$PID_YELLOW" ]] || { echo "server was not restarted" >&2; exit 1; }
[[ "$ALLOCATION" == *'"cluster.routing.allocation.enable":"all"'* ]] || { echo "allocation not restored: $ALLOCATION" >&2; exit 1; }
[[ "$STATUS" == "yellow" ]] || { echo "cluster is $STATUS, expected yellow" >&2; exit 1; }
echo "rolling_restart.yml: yellow after the node accepted after 3 settled polls"

# Moves start the count again: quiet, 1 initializing, quiet, 1 relocating,
# then quiet for good is accepted at poll 7 with es_settled_polls=3 (at poll
# 5 if moves were not counted, at poll 1 if yellow were accepted at once).
# The shard table then names the node's only started copies: a relocating
# copy counts on its source node, shards are ordered by number (logs[2]
# before logs[10]) and archive[0], a single copy by design, does not count.
SCRIPTED_PORT=$((PORT + 1))
SCRIPTED_URL="http://127.0.0.1:${SCRIPTED_PORT}"
cat >"$WORK/scripted_es.py" <<'SCRIPTED'
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def yellow(initializing=0, relocating=0):
    return {"status": "yellow", "initializing_shards": initializing,
            "relocating_shards": relocating, "unassigned_shards": 2}


HEALTH = [yellow(), yellow(initializing=1), yellow(), yellow(relocating=1), yellow()]
ANSWERS = {
    "/_cat/nodes": [{"name": "scripted-1", "node.role": "dm", "master": "*"}],
    "/_cat/shards": [
        {"index": "archive", "shard": "0", "prirep": "p", "state": "STARTED", "node": "scripted-1"},
        {"index": "logs", "shard": "1", "prirep": "p", "state": "STARTED", "node": "scripted-2"},
        {"index": "logs", "shard": "1", "prirep": "r", "state": "STARTED", "node": "scripted-1"},
        {"index": "logs", "shard": "10", "prirep": "p", "state": "STARTED", "node": "scripted-1"},
        {"index": "logs", "shard": "10", "prirep": "r", "state": "UNASSIGNED", "node": None},
        {"index": "logs", "shard": "2", "prirep": "p", "state": "RELOCATING",
         "node": "scripted-1 -> 127.0.0.2 x1 scripted-2"},
        {"index": "logs", "shard": "2", "prirep": "r", "state": "UNASSIGNED", "node": None},
    ],
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/_cluster/health":
            answer = HEALTH.pop(0) if len(HEALTH) > 1 else HEALTH[0]
        elif path in ANSWERS:
            answer = ANSWERS[path]
        else:
            self.send_error(404)
            return
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
SCRIPTED
setsid python3 "$WORK/scripted_es.py" "$SCRIPTED_PORT" >>"$WORK/scripted.log" 2>&1 </dev/null &
echo $! >"$WORK/scripted.pid"
disown  # killed by cleanup, without the shell reporting it
for _ in $(seq 1 100); do
  curl -sf "$SCRIPTED_URL/_cat/nodes" >/dev/null && break
  sleep 0.1
done
cat >"$WORK/scripted_inventory.yml" <<INVENTORY
all:
  vars:
    es_api_url: "$SCRIPTED_URL"
    es_restart_method: command
    es_restart_command: "touch $WORK/scripted-restarted"
    es_poll_delay_seconds: 0
  children:
    elasticsearch:
      hosts:
        scripted-1:
          ansible_connection: local
          ansible_python_interpreter: "{{ ansible_playbook_python }}"
INVENTORY
if OUTPUT="$("$PLAYBOOK_BIN" -i "$WORK/scripted_inventory.yml" "$HERE/rolling_restart.yml" \
  -e es_allow_yellow=true -e es_settled_polls=3 -e es_health_retries=20 2>&1)"; then
  echo "playbook restarted the only started copies on the scripted server" >&2; exit 1
fi
POLLS="$(polls_of "$BEFORE_TASK" "$OUTPUT")"
[[ "$(wc -l <<<"$POLLS")" == 7 ]] || { echo "scripted yellow not accepted at poll 7: $OUTPUT" >&2; exit 1; }
[[ "$OUTPUT" == *"node scripted-1 holds the only started copy of logs[2] and 1 more: restarting it would turn the cluster red"* ]] \
  || { echo "wrong only-started-copy refusal: $OUTPUT" >&2; exit 1; }
[[ ! -e "$WORK/scripted-restarted" ]] || { echo "scripted node restarted" >&2; exit 1; }
echo "rolling_restart.yml: shard moves restart the count of quiet polls, only started copies found as opsbot does"
