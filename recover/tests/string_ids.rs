//! Issue 9, item 2: string ids with leading or trailing spaces or tabs are
//! backfilled and verified exactly, byte for byte, on PostgreSQL and MariaDB:
//! every row ends indexed under its own id and `verify` finds nothing.

use esync_testkit::prelude::*;
use esync_testkit::recover::Setup;
use serde_json::json;

const RECOVER: &str = env!("CARGO_BIN_EXE_esync-recover");

async fn whitespace_ids_are_backfilled_and_verified_exactly(db: Db, skus: &[&str]) {
    // OrdersTable gives a connection to the test database; its own table is unused
    let table = OrdersTable::create_with(db, OrdersSpec::RECOVER).await;
    let items = unique("rec_ws_items");
    table
        .execute(&format!(
            "CREATE TABLE {items} (sku VARCHAR(40) PRIMARY KEY, title VARCHAR(40) NOT NULL, version BIGINT NOT NULL)"
        ))
        .await;
    for (position, sku) in skus.iter().enumerate() {
        let literal = sku.replace('\t', "' || chr(9) || '");
        let literal = match db {
            Db::Postgres => format!("'{literal}'"),
            Db::MariaDb => format!("CONCAT('{}')", sku.replace('\t', "', CHAR(9), '")),
        };
        table
            .execute(&format!(
                "INSERT INTO {items} VALUES ({literal}, 'item {position}', {})",
                position + 1
            ))
            .await;
    }
    let index = Index::named(&es(), "rec_idx");
    index.create().await;
    let mapping = format!(
        "    table: {items}\n    id: {{column: sku, type: string}}\n    index: {}\n    version: {{column: version, kind: counter}}\n",
        index.name
    );
    let setup = Setup::custom(RECOVER, &db.url(), &mapping);
    let checkpoint = setup.checkpoint().to_string_lossy().into_owned();
    setup
        .run(&["run", "--chunk-size", "2", "--checkpoint", &checkpoint])
        .expect_code(0);

    let response = index
        .es
        .request_ok(
            elasticsearch::http::Method::Post,
            &format!("/{}/_mget", index.name),
            Some(&json!({ "ids": skus })),
        )
        .await
        .expect("_mget");
    let docs = response["docs"].as_array().expect("docs");
    for (position, (doc, sku)) in docs.iter().zip(skus).enumerate() {
        assert_eq!(doc["found"], json!(true), "{sku:?} is not indexed: {doc}");
        assert_eq!(doc["_version"], json!(position + 1), "{sku:?}: {doc}");
        assert_eq!(doc["_source"]["sku"], json!(sku), "{sku:?}: {doc}");
    }
    index
        .es
        .request_ok(
            elasticsearch::http::Method::Post,
            &format!("/{}/_refresh", index.name),
            None,
        )
        .await
        .expect("refresh");
    let count = index
        .es
        .request_ok(
            elasticsearch::http::Method::Get,
            &format!("/{}/_count", index.name),
            None,
        )
        .await
        .expect("count");
    assert_eq!(
        count["count"],
        json!(skus.len()),
        "no document under a trimmed id"
    );

    let verified = setup.run(&["verify", "--chunk-size", "2"]);
    verified.expect_code(0);
    table.execute(&format!("DROP TABLE {items}")).await;
    index.drop_index().await;
    table.drop_table().await;
}

esync_testkit::per_database! {
    postgres {
        whitespace_string_ids_are_exact => async |db| {
            let skus = [" a", "a ", "\ta\t", "a", "b\t"];
            super::whitespace_ids_are_backfilled_and_verified_exactly(db, &skus).await
        };
    }
    mariadb {
        whitespace_string_ids_are_exact => async |db| {
            // MariaDB's PAD SPACE collations make "a" and "a " one key, so
            // each trailing space form appears once
            let skus = [" a", "b ", "\tc\t", "d", "e\t"];
            super::whitespace_ids_are_backfilled_and_verified_exactly(db, &skus).await
        };
    }
}
