//! Every column type of PostgreSQL and MariaDB, re-read through the daemon's
//! own reader and turned into a document: the JSON each type becomes.

use esync::config::MappingConfig;
use esync::db::{Database, RowReader};
use esync::document::{BulkAction, DocumentSpec, plan_actions};
use esync::id::Id;
use esync::secret::Secret;
use esync_testkit::db::{Db, Pool};
use esync_testkit::env::{required_env, unique};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A pool for the test's own statements and the reader under test's pool.
async fn connect(db: Db) -> (Pool, Database) {
    let database = Database::connect(&Secret::new(db.url()), 1, Duration::from_secs(10))
        .await
        .expect("connect");
    (db.connect(1).await, database)
}

/// Creates the table, inserts row 1, re-reads it and returns its document.
async fn document_of(db: Db, columns: &str, values: &str, json_columns: &[&str]) -> Value {
    let (pool, database) = connect(db).await;
    let table = unique("types");
    pool.execute(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, version BIGINT NOT NULL, {columns})"
    ))
    .await;
    pool.execute(&format!("INSERT INTO {table} VALUES (1, 3, {values})"))
        .await;
    let mapping: MappingConfig = serde_yaml::from_str(&format!(
        "topics: [t]\ntable: {table}\nindex: i\nversion: {{column: version, kind: counter}}"
    ))
    .unwrap();
    let reader = RowReader::new(&mapping, database.dialect(), 100);
    let rows = reader
        .fetch(&database, &[Id::Int(1), Id::Int(2)])
        .await
        .expect("re-read");
    pool.execute(&format!("DROP TABLE {table}")).await;
    let spec = DocumentSpec {
        index: Arc::from("i"),
        id_column: "id".into(),
        id_type: esync::id::IdType::Integer,
        version_column: "version".into(),
        version_kind: esync::document::VersionKind::Counter,
        routing_column: None,
        delete: esync::document::DeleteStrategy::Hard,
        renames: Default::default(),
        exclude: ["id".to_owned(), "version".to_owned()].into(),
        json_columns: json_columns
            .iter()
            .map(|column| column.to_string())
            .collect(),
        lag_column: None,
    };
    let planned = plan_actions(&spec, &[Id::Int(1), Id::Int(2)], rows, 99);
    assert!(
        matches!(
            planned[1].action,
            Ok(BulkAction::Delete { version: 99, .. })
        ),
        "id 2 has no row: {planned:?}"
    );
    match &planned[0].action {
        Ok(BulkAction::Index {
            version: 3, source, ..
        }) => Value::Object(source.clone()),
        other => panic!("expected an index action with version 3, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn postgres_column_types() {
    required_env("ESYNC_TEST_PG");
    execute_enum_type().await;
    let document = document_of(
        Db::Postgres,
        "c_bool BOOLEAN, c_int2 SMALLINT, c_int4 INTEGER, c_int8 BIGINT, c_float4 REAL, c_float8 DOUBLE PRECISION, \
         c_numeric NUMERIC(12,4), c_text TEXT, c_varchar VARCHAR(20), c_char CHAR(3), c_uuid UUID, c_json JSON, c_jsonb JSONB, \
         c_timestamptz TIMESTAMPTZ, c_timestamp TIMESTAMP, c_date DATE, c_time TIME, c_bytea BYTEA, \
         c_int_array INTEGER[], c_text_array TEXT[], c_enum esync_test_mood, c_null TEXT",
        "true, -2, 40000, 9000000000, 1.5, 2.25, 12345.6789, 'héllo', 'v', 'ab', \
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}', '{\"b\": [1, null]}', \
         '2024-03-01 10:20:30.123456+02', '2024-03-01 08:20:30', '2024-02-29', '23:59:01.5', '\\x00ff', \
         '{1,NULL,3}', '{x,y}', 'happy', NULL",
        &[],
    )
    .await;
    let expected = json!({
        "c_bool": true, "c_int2": -2, "c_int4": 40000, "c_int8": 9000000000i64, "c_float4": 1.5, "c_float8": 2.25,
        "c_numeric": 12345.6789, "c_text": "héllo", "c_varchar": "v", "c_char": "ab ", "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "c_json": {"a": 1}, "c_jsonb": {"b": [1, null]}, "c_timestamptz": "2024-03-01T08:20:30.123456Z",
        "c_timestamp": "2024-03-01T08:20:30Z", "c_date": "2024-02-29", "c_time": "23:59:01.500", "c_bytea": "AP8=",
        "c_int_array": [1, null, 3], "c_text_array": ["x", "y"], "c_enum": "happy", "c_null": null,
    });
    assert_eq!(document, expected);
}

/// An unsupported type is never indexed as garbage: its row is refused with a hint.
#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn postgres_unsupported_type_is_refused_not_garbled() {
    let (pool, database) = connect(Db::Postgres).await;
    let table = unique("types");
    pool.execute(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, version BIGINT NOT NULL, c_interval INTERVAL)"
    ))
    .await;
    pool.execute(&format!("INSERT INTO {table} VALUES (1, 1, '1 day')"))
        .await;
    let mapping: MappingConfig = serde_yaml::from_str(&format!(
        "topics: [t]\ntable: {table}\nindex: i\nversion: {{column: version, kind: counter}}"
    ))
    .unwrap();
    let rows = RowReader::new(&mapping, database.dialect(), 100)
        .fetch(&database, &[Id::Int(1)])
        .await
        .expect("re-read");
    pool.execute(&format!("DROP TABLE {table}")).await;
    let reason = format!("{:?}", rows[0].get("c_interval"));
    assert!(
        reason.contains("Undecodable")
            && reason.contains("INTERVAL")
            && reason.contains("cast it to text"),
        "{reason}"
    );
}

/// A Postgres enum type for the test (created once, shared by runs).
async fn execute_enum_type() {
    Db::Postgres.connect(1).await.execute(
        "DO $$ BEGIN CREATE TYPE esync_test_mood AS ENUM ('sad', 'happy'); EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .await;
}

#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn mariadb_column_types() {
    required_env("ESYNC_TEST_MYSQL");
    let document = document_of(
        Db::MariaDb,
        "c_bool BOOLEAN, c_tinyint TINYINT, c_smallint SMALLINT, c_int INT, c_bigint BIGINT, c_ubigint BIGINT UNSIGNED, \
         c_float FLOAT, c_double DOUBLE, c_decimal DECIMAL(12,4), c_varchar VARCHAR(20), c_char CHAR(3), c_text TEXT, \
         c_json JSON, c_datetime DATETIME(6), c_timestamp TIMESTAMP(6) NULL, c_date DATE, c_time TIME, c_blob BLOB, \
         c_enum ENUM('sad','happy'), c_set SET('a','b'), c_year YEAR, c_null VARCHAR(5)",
        "true, -2, 300, 40000, 9000000000, 18446744073709551615, 1.5, 2.25, 12345.6789, 'héllo', 'ab', 'long text', \
         '{\"a\": [1, null]}', '2024-03-01 08:20:30.123456', '2024-03-01 08:20:30.5', '2024-02-29', '23:59:01', x'00ff', \
         'happy', 'a,b', 2024, NULL",
        &["c_json"],
    )
    .await;
    let expected = json!({
        "c_bool": true, "c_tinyint": -2, "c_smallint": 300, "c_int": 40000, "c_bigint": 9000000000i64,
        "c_ubigint": 18446744073709551615u64, "c_float": 1.5, "c_double": 2.25, "c_decimal": 12345.6789,
        "c_varchar": "héllo", "c_char": "ab", "c_text": "long text", "c_json": {"a": [1, null]},
        "c_datetime": "2024-03-01T08:20:30.123456Z", "c_timestamp": document["c_timestamp"].clone(),
        "c_date": "2024-02-29", "c_time": "23:59:01", "c_blob": "AP8=", "c_enum": "happy", "c_set": "a,b",
        "c_year": 2024, "c_null": null,
    });
    assert_eq!(document, expected);
    // TIMESTAMP is stored in the session time zone and read back as UTC
    let timestamp = document["c_timestamp"].as_str().expect("timestamp as text");
    assert!(
        timestamp.ends_with(":20:30.500Z") || timestamp.ends_with(":20:30.5Z"),
        "{timestamp}"
    );
}
