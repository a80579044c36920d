-- esync outbox for MySQL 8 / MariaDB 10.6+ (both needed for SKIP LOCKED).
--
-- Install once per database:   mysql shop < sync/sql/mysql/outbox.sql
-- then add the triggers to each table (outbox_triggers.sql).
--
-- `esync publish --outbox` claims pending rows (READ COMMITTED, so no gap
-- locks stall the writers) with
--   ... WHERE relayed_at IS NULL ... ORDER BY seq LIMIT n FOR UPDATE SKIP LOCKED
-- produces row_id to the topic of every mapping fed by table_name, and after
-- Kafka acknowledged them deletes the rows (after_relay: delete) or sets
-- relayed_at (after_relay: mark). Applications may insert rows themselves:
--   INSERT INTO esync_outbox (table_name, row_id) VALUES ('orders', '42');

CREATE TABLE IF NOT EXISTS esync_outbox (
    seq        BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    table_name VARCHAR(255) NOT NULL,
    row_id     VARCHAR(255) NOT NULL,
    changed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    relayed_at TIMESTAMP(6) NULL DEFAULT NULL,
    KEY esync_outbox_pending (relayed_at, seq)
) ENGINE = InnoDB;
