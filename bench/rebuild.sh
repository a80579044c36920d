#!/usr/bin/env bash
# esync index rebuild against esync-recover run on the same table: rows/s of
# each, and the ratio. The rebuild is timed whole (create, the 5 s wait for
# writers to learn of the announcement, backfill, one verification pass,
# swap) and its backfill alone (the recover engine's own summary).
#
#   bench/rebuild.sh               # 200k rows, release build
#   ROWS=50000 PROFILE=dev bench/rebuild.sh
#
# Needs the local services (scripts/services.sh up); PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f .services/env ]] || scripts/services.sh up
# shellcheck disable=SC1091
source .services/env
PROFILE="${PROFILE:-release}"
ROWS="${ROWS:-200000}"
cargo build --profile "$PROFILE" --quiet -p esync --bin esync -p esync-recover --bin esync-recover
bin="target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")"
suffix="$(date +%s%N | tail -c 7)"
table="bench_rebuild_$suffix"
alias="bench-rebuild-$suffix"
plain="bench-recover-$suffix"
work="$(mktemp -d)"
definition='{"settings": {"number_of_shards": 1}, "mappings": {"properties": {"name": {"type": "keyword"}}}}'
cleanup() {
  psql "$ESYNC_TEST_PG" -q -c "DROP TABLE IF EXISTS $table" >/dev/null
  curl -s -XDELETE "$ESYNC_TEST_ES/$alias-v*,$plain" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

psql "$ESYNC_TEST_PG" -q -c "CREATE TABLE $table (id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount NUMERIC(12,2) NOT NULL, version BIGINT NOT NULL)"
psql "$ESYNC_TEST_PG" -q -c "INSERT INTO $table SELECT n, 'order ' || n, n % 1000, 1 FROM generate_series(1, $ROWS) AS n"
echo "$definition" >"$work/definition.json"
config() { # index, extra mapping line
  cat <<YAML
source: {url: "$ESYNC_TEST_PG", max_connections: 8}
kafka: {brokers: "$ESYNC_TEST_KAFKA"}
elasticsearch: {urls: ["$ESYNC_TEST_ES"], request_timeout: 60s}
metrics: {listen: null}
mappings:
  - name: orders
    topics: [bench.rebuild.$suffix]
    table: $table
    index: $1
    version: {column: version, kind: counter}
$2
YAML
}
config "$plain" "" >"$work/recover.yaml"
config "$alias" "    index_definition: {file: definition.json}" >"$work/rebuild.yaml"
curl -s -XPUT "$ESYNC_TEST_ES/$plain" -H 'Content-Type: application/json' -d "$definition" >/dev/null

seconds() { date +%s.%N; }
echo "machine: $(nproc) cores; $ROWS rows; profile $PROFILE; $(date -u +%FT%TZ)"
start="$(seconds)"
"$bin/esync-recover" run --config "$work/recover.yaml" --progress none \
  --checkpoint "$work/recover.json" --parallel 2 >"$work/recover.out"
recover_s="$(echo "$(seconds) - $start" | bc)"
"$bin/esync" index create --config "$work/rebuild.yaml" >/dev/null
start="$(seconds)"
"$bin/esync" index rebuild --config "$work/rebuild.yaml" --mapping orders --progress none \
  --checkpoint-dir "$work" --parallel 2 --verify-passes 1 >"$work/rebuild.out"
rebuild_s="$(echo "$(seconds) - $start" | bc)"
grep -q "swapped" "$work/rebuild.out" || { cat "$work/rebuild.out"; exit 1; }
backfill_rate="$(grep -o '[0-9]* rows/s' "$work/rebuild.out" | head -1 | cut -d' ' -f1)"
recover_rate="$(echo "$ROWS / $recover_s" | bc)"
rebuild_rate="$(echo "$ROWS / $rebuild_s" | bc)"
printf 'esync-recover run:       %6.1f s  %7d rows/s\n' "$recover_s" "$recover_rate"
printf 'esync index rebuild:     %6.1f s  %7d rows/s (whole: 5 s announcement wait, backfill, verify, swap)\n' "$rebuild_s" "$rebuild_rate"
printf '  of which the backfill:           %7d rows/s\n' "$backfill_rate"
printf 'ratio rebuild/recover:   whole %.2f, backfill %.2f\n' \
  "$(echo "$rebuild_rate / $recover_rate" | bc -l)" "$(echo "$backfill_rate / $recover_rate" | bc -l)"
