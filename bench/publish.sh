#!/usr/bin/env bash
# esync publish, per database (PostgreSQL and MariaDB):
# - the poller: ids/s it publishes from a table of ROWS rows (default 200000),
#   against the broker's standalone produce rate measured in the same run
#   with the same IdProducer, and the ratio;
# - the outbox relay (esync publish --outbox): its own CPU seconds per
#   50,000 rows for a backlog and for rows written while it runs, with the
#   ratio to the target of 1 CPU second, and its idle CPU per second.
# About three minutes in total on the 2-core dev machine.
#
#   bench/publish.sh                    # debug build of esync
#   PROFILE=release bench/publish.sh    # release build (what users run)
#   ROWS=50000 bench/publish.sh
#
# Needs the local services: the ESYNC_TEST_* variables when set, else this
# checkout's (scripts/services.sh up). Uses the debug build in
# the shared target dir by default (incremental): the produce path is
# librdkafka's C code, built optimised either way, but the relay's per-batch
# Rust code is not; its CPU is 2-3x lower in a release build. The
# measurement is bench/src/publish.rs (`bench-publish`), not a test: `cargo
# test` skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
# services already described by the environment (another checkout's
# .services/env sourced) are used as they are
if [[ -z "${ESYNC_TEST_KAFKA:-}" ]]; then
  [[ -f .services/env ]] || scripts/services.sh up
  # shellcheck disable=SC1091
  source .services/env
fi
profile="${PROFILE:-debug}"
case "$profile" in
debug) cargo build --quiet -p esync --bin esync ;;
release) cargo build --quiet --release -p esync --bin esync ;;
*) echo "PROFILE must be debug or release, not $profile" >&2; exit 2 ;;
esac
cargo build --quiet -p esync-bench --bin bench-publish
target/debug/bench-publish --esync "target/$profile/esync" --rows "${ROWS:-200000}"
