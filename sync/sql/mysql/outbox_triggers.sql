-- Writes the outbox on INSERT, UPDATE and DELETE of one table (MySQL/MariaDB).
-- Needs outbox.sql first. Replace __TABLE__ and __ID_COLUMN__, e.g.
--   sed -e s/__TABLE__/orders/g -e s/__ID_COLUMN__/id/g sync/sql/mysql/outbox_triggers.sql | mysql shop
-- Each trigger is one statement, so no DELIMITER is needed. An UPDATE that
-- changes the id records both the old and the new id.

DROP TRIGGER IF EXISTS __TABLE___esync_outbox_insert;
DROP TRIGGER IF EXISTS __TABLE___esync_outbox_update;
DROP TRIGGER IF EXISTS __TABLE___esync_outbox_delete;

CREATE TRIGGER __TABLE___esync_outbox_insert AFTER INSERT ON __TABLE__ FOR EACH ROW
    INSERT INTO esync_outbox (table_name, row_id) VALUES ('__TABLE__', NEW.__ID_COLUMN__);

CREATE TRIGGER __TABLE___esync_outbox_update AFTER UPDATE ON __TABLE__ FOR EACH ROW
    INSERT INTO esync_outbox (table_name, row_id)
    SELECT '__TABLE__', NEW.__ID_COLUMN__
    UNION ALL
    SELECT '__TABLE__', OLD.__ID_COLUMN__ FROM DUAL WHERE NOT (OLD.__ID_COLUMN__ <=> NEW.__ID_COLUMN__);

CREATE TRIGGER __TABLE___esync_outbox_delete AFTER DELETE ON __TABLE__ FOR EACH ROW
    INSERT INTO esync_outbox (table_name, row_id) VALUES ('__TABLE__', OLD.__ID_COLUMN__);
