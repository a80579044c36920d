-- esync outbox for PostgreSQL (9.5+ for SKIP LOCKED; 11+ for EXECUTE FUNCTION).
--
-- Install once per database:   psql "$DATABASE_URL" -f sync/sql/postgres/outbox.sql
-- then add the trigger to each table (outbox_trigger.sql).
--
-- `esync publish --outbox` claims pending rows with
--   ... WHERE relayed_at IS NULL ... ORDER BY seq LIMIT n FOR UPDATE SKIP LOCKED
-- produces row_id to the topic of every mapping fed by table_name, and after
-- Kafka acknowledged them deletes the rows (after_relay: delete) or sets
-- relayed_at (after_relay: mark). Applications may insert rows themselves:
--   INSERT INTO esync_outbox (table_name, row_id) VALUES ('orders', '42');

CREATE TABLE IF NOT EXISTS esync_outbox (
    seq        BIGSERIAL   PRIMARY KEY,
    table_name TEXT        NOT NULL,
    row_id     TEXT        NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    relayed_at TIMESTAMPTZ
);

-- Pending rows in relay order; stays small when relayed rows are deleted.
CREATE INDEX IF NOT EXISTS esync_outbox_pending ON esync_outbox (seq) WHERE relayed_at IS NULL;

-- Row trigger function: one outbox row per changed row. The id column is the
-- trigger's first argument (default 'id'). An UPDATE that changes the id
-- records both the old and the new id, so the old document gets deleted.
CREATE OR REPLACE FUNCTION esync_outbox_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    id_column text := COALESCE(TG_ARGV[0], 'id');
    new_id    text;
    old_id    text;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_id := to_jsonb(NEW) ->> id_column;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_id := to_jsonb(OLD) ->> id_column;
    END IF;
    IF new_id IS NOT NULL THEN
        INSERT INTO esync_outbox (table_name, row_id) VALUES (TG_TABLE_NAME, new_id);
    END IF;
    IF old_id IS NOT NULL AND old_id IS DISTINCT FROM new_id THEN
        INSERT INTO esync_outbox (table_name, row_id) VALUES (TG_TABLE_NAME, old_id);
    END IF;
    RETURN NULL;
END
$$;
