-- Writes the outbox on INSERT, UPDATE and DELETE of one table (PostgreSQL).
-- Needs outbox.sql first. Replace __TABLE__ and __ID_COLUMN__, e.g.
--   sed -e s/__TABLE__/orders/g -e s/__ID_COLUMN__/id/g sync/sql/postgres/outbox_trigger.sql | psql "$DATABASE_URL"
-- The outbox's table_name is the table's name without schema (TG_TABLE_NAME).

DROP TRIGGER IF EXISTS esync_outbox ON __TABLE__;
CREATE TRIGGER esync_outbox
    AFTER INSERT OR UPDATE OR DELETE ON __TABLE__
    FOR EACH ROW EXECUTE FUNCTION esync_outbox_capture('__ID_COLUMN__');
