//! Elasticsearch answers that are not about one document (issue 9, items 3,
//! 6 and 8), against real PostgreSQL and MariaDB and the local Elasticsearch
//! API server:
//!
//! - a write-blocked index is retried (counted, `/healthz` failing), never
//!   dead-lettered, and every row arrives once the block is lifted;
//! - a hard delete of a document whose version is ahead of esync's clock
//!   still removes it;
//! - a `413 Request Entity Too Large` splits the request and dead-letters
//!   only the document that is too large alone.

use esync::config::LoadedConfig;
use esync::db::Database;
use esync::id::Id;
use esync::metrics::Metrics;
use esync::secret::Secret;
use esync::writer::{Mapping, Writer};
use esync_testkit::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ESYNC: &str = env!("CARGO_BIN_EXE_esync");
const CONVERGE: Duration = Duration::from_secs(90);

/// Sum of the counter lines `name{...}` whose labels contain `label` (0 when none), e.g.
/// `reason="index_blocked"`.
fn counter_with_label(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn set_write_block(index: &Index, blocked: bool) {
    let value = if blocked {
        serde_json::Value::Bool(true)
    } else {
        serde_json::Value::Null
    };
    index
        .es
        .request_ok(
            elasticsearch::http::Method::Put,
            &format!("/{}/_settings", index.name),
            Some(&serde_json::json!({"index.blocks.write": value})),
        )
        .await
        .expect("set index.blocks.write");
}

/// Issue 9 item 3: `index.blocks.write` (the same 403 `cluster_block_exception`
/// as the flood-stage `read_only_allow_delete` block) used to dead-letter
/// every document and move the offsets on.
async fn write_blocked_index_is_retried_until_the_block_is_lifted(db: Db) {
    let table = OrdersTable::create(db).await;
    let topic = Topic::create(&kafka(), "orders", 2).await;
    let dead_letters = Topic::create(&kafka(), "dlq", 1).await;
    let index = Index::new(&es());
    index.create().await;
    let (brokers, es_url) = (kafka(), es());
    let mut setup = DaemonSetup::new(&table, &topic.name, &brokers, &es_url, &index.name);
    setup.dead_letter_topic = Some(&dead_letters.name);
    let mut daemon = Daemon::start(ESYNC, &setup);
    daemon.wait_healthy(Duration::from_secs(30)).await;
    let ids: Vec<i64> = (1..=200).collect();
    table.insert(ids[..100].to_vec()).await;
    topic.send_ids(&ids[..100]).await;
    index
        .wait_equal(&table, &ids[..100], CONVERGE, &mut daemon)
        .await;

    set_write_block(&index, true).await;
    for id in (1..=100).step_by(4) {
        table.update(id, "while blocked").await;
    }
    for id in (2..=100).step_by(10) {
        table.hard_delete(id).await;
    }
    table.insert(101..=200).await;
    topic.send_ids(&ids).await;

    let healthz = format!("http://127.0.0.1:{}/healthz", daemon.metrics_port);
    let started = Instant::now();
    let (metrics, health) = loop {
        let metrics = daemon.metrics().await;
        let health = http_get(&healthz).await;
        if counter_with_label(&metrics, "esync_retries_total", "reason=\"index_blocked\"") >= 100.0
            && health.contains("blocked")
        {
            break (metrics, health);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no index_blocked retries or /healthz still passing; healthz: {health:?}\n{metrics}\n{}",
            daemon.log_tail(30)
        );
        daemon.assert_running();
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(!health.starts_with("ok"), "{health}");
    assert!(health.contains(&index.name), "names the index: {health}");
    assert_eq!(
        metric_sum(&metrics, "esync_dead_lettered_total"),
        0.0,
        "{metrics}"
    );
    assert!(
        daemon.log_tail(200).contains("write-blocked"),
        "tells the operator what to do:\n{}",
        daemon.log_tail(30)
    );

    set_write_block(&index, false).await;
    index.wait_equal(&table, &ids, CONVERGE, &mut daemon).await;
    daemon.wait_healthy(Duration::from_secs(30)).await;
    let letters = consume_dead_letters(&dead_letters.name).await;
    assert_eq!(letters, 0, "nothing may be dead-lettered");
    let metrics = daemon.metrics().await;
    assert_eq!(metric_sum(&metrics, "esync_dead_lettered_total"), 0.0);
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    table.drop_table().await;
}

/// Messages on the dead-letter topic (waits a few seconds for any).
async fn consume_dead_letters(topic: &str) -> usize {
    read_messages(&kafka(), topic, usize::MAX, Duration::from_secs(4))
        .await
        .len()
}

/// A writer for one `orders` mapping with timestamp versions and hard deletes.
async fn timestamp_writer(
    table: &OrdersTable,
    es_url: &str,
    index: &str,
    max_bulk_bytes: usize,
) -> Writer {
    timestamp_writer_with(
        table,
        es_url,
        index,
        max_bulk_bytes,
        Metrics::unregistered(),
    )
    .await
}

/// [`timestamp_writer`] counting into `metrics`.
async fn timestamp_writer_with(
    table: &OrdersTable,
    es_url: &str,
    index: &str,
    max_bulk_bytes: usize,
    metrics: Arc<Metrics>,
) -> Writer {
    let yaml = format!(
        r#"source: {{url: "{url}"}}
kafka: {{brokers: "{brokers}"}}
elasticsearch: {{urls: ["{es_url}"], request_timeout: 5s, max_bulk_bytes: {max_bulk_bytes}}}
mappings:
  - name: orders
    topics: [unused]
    table: {table}
    columns: [id, name, amount, version, updated_at]
    index: {index}
    version: {{column: updated_at, kind: timestamp}}
    delete: {{strategy: hard}}
retry: {{initial_backoff: 20ms, max_backoff: 200ms}}
"#,
        url = table.db.url(),
        brokers = kafka(),
        table = table.name,
    );
    let loaded = LoadedConfig::from_yaml(&yaml, &|_| None).expect("valid config");
    // the writer under test reads through its own pool
    let database = Database::connect(&Secret::new(table.db.url()), 4, Duration::from_secs(10))
        .await
        .expect("connect");
    let es =
        esync::es::EsClient::new(&loaded.config.elasticsearch, &loaded.secrets).expect("es client");
    let mappings = Arc::new(Mapping::all_from_config(&loaded.config, database.dialect()));
    Writer::new(
        database,
        es,
        mappings,
        loaded.config.retry,
        &loaded.config.elasticsearch,
        metrics,
    )
}

fn int_ids(ids: &[i64]) -> Vec<Vec<Id>> {
    vec![ids.iter().map(|id| Id::Int(*id)).collect()]
}

/// Issue 9 item 6: rows whose timestamp version is ahead of esync's clock (a
/// database clock running ahead, `DATETIME(0)` rounding up, a local-time
/// column) were indexed; their hard delete (version = now) got a 409 that
/// counted as done, leaving ghost documents for ever.
async fn hard_delete_of_a_document_ahead_of_the_clock_removes_it(db: Db) {
    let table = OrdersTable::create(db).await;
    let index = Index::new(&es());
    index.create().await;
    let writer = timestamp_writer(&table, &es(), &index.name, 10 * 1024 * 1024).await;
    let ids: Vec<i64> = (1..=50).collect();
    table.insert(ids.clone()).await;
    table
        .execute(&format!(
            "UPDATE {} SET updated_at = '2037-12-31 00:00:00' WHERE id <= 25",
            table.name
        ))
        .await;
    let never = CancellationToken::new();
    let report = writer.write_batch(&int_ids(&ids), &never).await.unwrap();
    assert_eq!(report.indexed, 50, "{report:?}");

    // 1..=10 are ahead of the clock, 26..=35 are not
    let deleted: Vec<i64> = (1..=10).chain(26..=35).collect();
    for id in &deleted {
        table.hard_delete(*id).await;
    }
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        writer.write_batch(&int_ids(&ids), &never),
    )
    .await
    .expect("the batch finishes")
    .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    let docs = index.documents(&ids).await.expect("documents");
    let ghosts: Vec<&i64> = deleted.iter().filter(|id| docs.contains_key(id)).collect();
    assert!(
        ghosts.is_empty(),
        "deleted rows still indexed: {ghosts:?} ({report:?})"
    );
    assert_eq!(docs.len(), 30);
    table.drop_table().await;
}

/// Issue 9 item 3, alias side: a write alias over two indexes without a
/// write index answers every item 400 `illegal_argument_exception` ("no
/// write index is defined for alias"), which used to be dead-lettered as a
/// bad document. It is retried (health failing) until the alias is fixed.
async fn alias_without_write_index_is_retried_until_fixed(db: Db) {
    let table = OrdersTable::create(db).await;
    let alias = Index::new(&es());
    let (first, second) = (Index::new(&es()), Index::new(&es()));
    first.create().await;
    second.create().await;
    let set_aliases = |actions: serde_json::Value| {
        let es = alias.es.clone();
        async move {
            es.request_ok(
                elasticsearch::http::Method::Post,
                "/_aliases",
                Some(&serde_json::json!({ "actions": actions })),
            )
            .await
            .expect("_aliases");
        }
    };
    set_aliases(serde_json::json!([
        {"add": {"index": first.name, "alias": alias.name}},
        {"add": {"index": second.name, "alias": alias.name}},
    ]))
    .await;
    let metrics = Metrics::unregistered();
    let writer =
        timestamp_writer_with(&table, &es(), &alias.name, 1024 * 1024, metrics.clone()).await;
    let ids: Vec<i64> = (1..=50).collect();
    table.insert(ids.clone()).await;
    let batch = {
        let writer = writer.clone();
        let ids = int_ids(&ids);
        tokio::spawn(async move { writer.write_batch(&ids, &CancellationToken::new()).await })
    };
    let started = Instant::now();
    let index_missing = || {
        metrics
            .retries
            .get_or_create(&esync::metrics::RetryLabel {
                stage: "elasticsearch",
                reason: "index_missing",
            })
            .get()
    };
    while index_missing() < 100 || writer.health_problem().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20) && !batch.is_finished(),
            "not retried as index_missing: {} retries, health {:?}, batch finished: {}",
            index_missing(),
            writer.health_problem(),
            batch.is_finished()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let problem = writer.health_problem().expect("unhealthy");
    assert!(problem.contains(&alias.name), "{problem}");

    set_aliases(serde_json::json!([
        {"add": {"index": first.name, "alias": alias.name, "is_write_index": true}},
    ]))
    .await;
    let report = tokio::time::timeout(Duration::from_secs(30), batch)
        .await
        .expect("the batch finishes once the alias has a write index")
        .expect("no panic")
        .expect("not abandoned");
    assert!(
        report.failed.is_empty(),
        "nothing dead-lettered: {report:?}"
    );
    assert_eq!(report.indexed, 50, "{report:?}");
    assert_eq!(first.documents(&ids).await.expect("documents").len(), 50);
    assert_eq!(writer.health_problem(), None);
    table.drop_table().await;
}

/// An Elasticsearch stand-in in front of the real one: answers `refuse`'s
/// status where it gives one (counted), forwards everything else.
async fn refusing_proxy<F>(target: &str, refuse: F) -> (String, Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(&str, &[u8]) -> Option<u16> + Clone + Send + Sync + 'static,
{
    use axum::body::Bytes;
    use axum::http::{StatusCode, Uri};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let upstream = esync::es::EsClient::from_url(target, Duration::from_secs(30)).expect("client");
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    let handler = move |method: axum::http::Method, uri: Uri, body: Bytes| {
        let upstream = upstream.clone();
        let counter = counter.clone();
        let refuse = refuse.clone();
        async move {
            if let Some(status) = refuse(uri.path(), &body) {
                counter.fetch_add(1, Ordering::Relaxed);
                let status = StatusCode::from_u16(status).expect("status");
                return (
                    status,
                    br#"{"error":{"type":"security_exception"}}"#.to_vec(),
                );
            }
            let response = if uri.path() == "/_bulk" {
                upstream.bulk(body.to_vec()).await
            } else {
                let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
                let method = match method.as_str() {
                    "GET" => elasticsearch::http::Method::Get,
                    "PUT" => elasticsearch::http::Method::Put,
                    "DELETE" => elasticsearch::http::Method::Delete,
                    _ => elasticsearch::http::Method::Post,
                };
                upstream.request(method, uri.path(), json.as_ref()).await
            };
            match response {
                Ok(response) => (
                    StatusCode::from_u16(response.status).expect("status"),
                    response.body.to_vec(),
                ),
                Err(error) => (StatusCode::BAD_GATEWAY, error.to_string().into_bytes()),
            }
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), refused)
}

/// [`refusing_proxy`] answering `413 Request Entity Too Large` to any
/// `_bulk` body above `limit` bytes (as `http.max_content_length` does).
async fn size_limited_proxy(
    target: &str,
    limit: usize,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    refusing_proxy(target, move |path, body| {
        (path == "/_bulk" && body.len() > limit).then_some(413)
    })
    .await
}

/// Issue 11: a user who may not read `<index>.next` (no
/// `view_index_metadata`): writes wait rather than skip the check (a
/// rebuild could miss them), counted and shown by `/healthz`, and go
/// through once the privilege is granted.
async fn refused_rebuild_announcement_holds_writes_until_granted(db: Db) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let table = OrdersTable::create(db).await;
    let index = Index::new(&es());
    index.create().await;
    let granted = Arc::new(AtomicBool::new(false));
    let privilege = granted.clone();
    let (proxy, refused) = refusing_proxy(&es(), move |path, _| {
        (path.starts_with("/_alias/") && !privilege.load(Ordering::Relaxed)).then_some(403)
    })
    .await;
    let metrics = Metrics::unregistered();
    let writer =
        timestamp_writer_with(&table, &proxy, &index.name, 1024 * 1024, metrics.clone()).await;
    let ids: Vec<i64> = (1..=20).collect();
    table.insert(ids.clone()).await;
    let write = {
        let writer = writer.clone();
        let ids: Vec<Id> = ids.iter().map(|id| Id::Int(*id)).collect();
        tokio::spawn(async move { writer.write_ids(0, &ids, &CancellationToken::new()).await })
    };
    let started = Instant::now();
    while !writer
        .health_problem()
        .is_some_and(|problem| problem.contains("unauthorized"))
    {
        assert!(
            started.elapsed() < CONVERGE,
            "health never showed the refusal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(index.count().await, 0, "nothing is written without knowing");
    granted.store(true, Ordering::Relaxed);
    let report = tokio::time::timeout(CONVERGE, write)
        .await
        .expect("writes go through once granted")
        .expect("task")
        .expect("not abandoned");
    assert_eq!(report.indexed, 20, "{report:?}");
    assert_eq!(writer.health_problem(), None);
    table.drop_table().await;
}

/// Issue 9 item 8: one document above the cluster's request limit made every
/// item of its request retryable for ever, stalling the worker.
async fn request_too_large_is_split_and_only_the_oversized_document_dead_lettered(db: Db) {
    let table = OrdersTable::create(db).await;
    let index = Index::new(&es());
    index.create().await;
    let limit = 4_000;
    let (proxy, refused) = size_limited_proxy(&es(), limit).await;
    let writer = timestamp_writer(&table, &proxy, &index.name, 1024 * 1024).await;
    let ids: Vec<i64> = (1..=100).collect();
    table.insert(ids.clone()).await;
    if db == Db::MariaDb {
        // the shared table has VARCHAR(200) names there
        table
            .execute(&format!(
                "ALTER TABLE {} MODIFY name TEXT NOT NULL",
                table.name
            ))
            .await;
    }
    let big = "x".repeat(limit + 100);
    table
        .execute(&format!(
            "UPDATE {} SET name = '{big}' WHERE id = 37",
            table.name
        ))
        .await;
    let never = CancellationToken::new();
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        writer.write_batch(&int_ids(&ids), &never),
    )
    .await
    .expect("a 413 must not stall the batch")
    .unwrap();
    assert!(
        refused.load(std::sync::atomic::Ordering::Relaxed) > 1,
        "the proxy refused requests"
    );
    assert_eq!(report.indexed, 99, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].id, Id::Int(37));
    assert_eq!(report.failed[0].reason_code, "document_too_large");
    let docs = index.documents(&ids).await.expect("documents");
    assert_eq!(docs.len(), 99);
    assert!(!docs.contains_key(&37));
    table.drop_table().await;
}

esync_testkit::per_database! {
    both {
        write_blocked_index_is_retried_until_the_block_is_lifted;
        hard_delete_of_a_document_ahead_of_the_clock_removes_it;
        alias_without_write_index_is_retried_until_fixed;
        request_too_large_is_split_and_only_the_oversized_document_dead_lettered;
        refused_rebuild_announcement_holds_writes_until_granted;
    }
}
