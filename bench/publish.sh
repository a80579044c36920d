#!/usr/bin/env bash
# esync publish throughput: ids/s the poller publishes from a table, against
# the broker's standalone produce rate measured in the same run with the same
# IdProducer, and the ratio. PostgreSQL and MariaDB, ROWS rows each (default
# 200000; about a minute in total on the 2-core dev machine).
#
#   bench/publish.sh            # 200k rows
#   ROWS=50000 bench/publish.sh
#
# Needs the local services (scripts/services.sh up). Uses the debug build in
# the shared target dir (incremental; no separate profile): the produce path
# is librdkafka's C code, built optimised either way. The measurement is
# bench/src/publish.rs (`bench-publish`), not a test: `cargo test` skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f .services/env ]] || scripts/services.sh up
# shellcheck disable=SC1091
source .services/env
cargo build --quiet -p esync --bin esync -p esync-bench --bin bench-publish
target/debug/bench-publish --esync target/debug/esync --rows "${ROWS:-200000}"
