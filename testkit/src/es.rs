//! The Elasticsearch side: plain REST calls through the elasticsearch crate,
//! and a test index compared with an orders table by `_mget` of the ids used.

use crate::db::{Field, OrdersTable};
use crate::env::unique;
use crate::process::LoggedChild;
use elasticsearch::Elasticsearch;
pub use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An Elasticsearch REST client for one URL, without credentials.
#[derive(Clone)]
pub struct EsApi {
    client: Elasticsearch,
}

impl EsApi {
    pub fn new(url: &str, request_timeout: Duration) -> EsApi {
        let url = url::Url::parse(url).unwrap_or_else(|error| panic!("bad URL {url:?}: {error}"));
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(request_timeout)
            .disable_proxy()
            .build()
            .expect("elasticsearch transport");
        EsApi {
            client: Elasticsearch::new(transport),
        }
    }

    /// Any request: the status and the body as JSON (`null` when it is not).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let body = body.map(|body| body.to_string());
        let response = self
            .client
            .send::<String, ()>(method, path, HeaderMap::new(), None, body, None)
            .await
            .map_err(|error| format!("{path}: {error}"))?;
        let status = response.status_code().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("{path}: {error}"))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Like [`EsApi::request`], but a non-2xx status is an error.
    pub async fn request_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        match self.request(method, path, body).await? {
            (200..300, body) => Ok(body),
            (status, body) => Err(format!("{path}: status {status}: {body}")),
        }
    }

    /// Creates an index with one shard and no replica.
    pub async fn create_index(&self, name: &str) {
        let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
        self.request_ok(Method::Put, &format!("/{name}"), Some(&body))
            .await
            .unwrap_or_else(|error| panic!("create index {name}: {error}"));
    }
}

/// One sample of [`Index::count_samples`]: the count includes every write
/// acknowledged before `started`, and none acknowledged after `taken`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountSample {
    pub started: Instant,
    pub taken: Instant,
    pub count: u64,
}

/// A uniquely named test index.
pub struct Index {
    pub name: String,
    pub es: EsApi,
}

impl Index {
    /// A name on the server at `es_url`; [`Index::create`] creates it.
    pub fn new(es_url: &str) -> Index {
        Index::named(es_url, "idx")
    }

    /// [`Index::new`] with another name prefix.
    pub fn named(es_url: &str, prefix: &str) -> Index {
        Index {
            name: unique(prefix),
            es: EsApi::new(es_url, Duration::from_secs(30)),
        }
    }

    pub async fn create(&self) {
        self.es.create_index(&self.name).await;
    }

    /// Documents by id for `ids`: (version, source); absent ids are left out.
    pub async fn documents(&self, ids: &[i64]) -> Result<BTreeMap<i64, (i64, Value)>, String> {
        let mut found = BTreeMap::new();
        for chunk in ids.chunks(1000) {
            let body = json!({"ids": chunk.iter().map(ToString::to_string).collect::<Vec<_>>()});
            let response = self
                .es
                .request_ok(Method::Post, &format!("/{}/_mget", self.name), Some(&body))
                .await?;
            for doc in response["docs"].as_array().ok_or("no docs in _mget")? {
                if doc["found"] == json!(true) {
                    let id: i64 = doc["_id"]
                        .as_str()
                        .and_then(|id| id.parse().ok())
                        .ok_or("bad _id")?;
                    let version = doc["_version"].as_i64().unwrap_or(-1);
                    found.insert(id, (version, doc["_source"].clone()));
                }
            }
        }
        Ok(found)
    }

    /// Differences between the table and the index over `all_ids`, empty
    /// when equal: every live row indexed with its version and the fields
    /// its spec compares, nothing else indexed.
    pub async fn differences(&self, table: &OrdersTable, all_ids: &[i64]) -> Vec<String> {
        let rows = table.rows().await;
        let docs = match self.documents(all_ids).await {
            Ok(docs) => docs,
            Err(error) => return vec![format!("cannot read the index: {error}")],
        };
        let mut differences = Vec::new();
        for id in all_ids {
            let live = rows.get(id).filter(|row| !row.deleted);
            match (live, docs.get(id)) {
                (None, None) => {}
                (Some(row), None) => differences.push(format!(
                    "id {id}: row v{} missing from the index",
                    row.version
                )),
                (None, Some((version, _))) => differences.push(format!(
                    "id {id}: indexed v{version} but not live in the table"
                )),
                (Some(row), Some((version, source))) => {
                    let field_differs = |field: &Field| match field {
                        Field::Id => source["id"] != json!(row.id),
                        Field::Name => source["name"] != json!(row.name),
                        Field::Version => source["version"] != json!(row.version),
                        Field::Amount => {
                            let expected = row.amount_cents as f64 / 100.0;
                            let amount = source["amount"].as_f64().unwrap_or(f64::NAN);
                            (amount - expected).abs() > 1e-9
                        }
                    };
                    if *version != row.version || table.spec.compared.iter().any(field_differs) {
                        differences.push(format!(
                            "id {id}: index v{version} {source} != table {row:?}"
                        ));
                    }
                }
            }
        }
        differences
    }

    /// Fails unless the index equals the table over `all_ids`.
    pub async fn assert_equal(&self, table: &OrdersTable, all_ids: &[i64]) {
        let differences = self.differences(table, all_ids).await;
        assert!(
            differences.is_empty(),
            "index {} differs from table {}: {} difference(s), first: {:#?}",
            self.name,
            table.name,
            differences.len(),
            &differences[..differences.len().min(10)]
        );
    }

    /// Polls until the index equals the table or `timeout` passes; fails
    /// at once when `writer` (the daemon) exits.
    pub async fn wait_equal(
        &self,
        table: &OrdersTable,
        all_ids: &[i64],
        timeout: Duration,
        writer: &mut LoggedChild,
    ) {
        let started = Instant::now();
        loop {
            let differences = self.differences(table, all_ids).await;
            if differences.is_empty() {
                return;
            }
            if started.elapsed() > timeout {
                panic!(
                    "index {} did not converge to table {} within {timeout:?}: {} difference(s), first: {:#?}\n--- {} log ---\n{}",
                    self.name,
                    table.name,
                    differences.len(),
                    &differences[..differences.len().min(10)],
                    writer.name,
                    writer.log_tail(60)
                );
            }
            writer.assert_running();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// How many documents the index holds (after a refresh).
    pub async fn count(&self) -> u64 {
        let refresh = format!("/{}/_refresh", self.name);
        self.es
            .request_ok(Method::Post, &refresh, None)
            .await
            .expect("refresh");
        let response = self
            .es
            .request_ok(Method::Get, &format!("/{}/_count", self.name), None)
            .await
            .expect("_count");
        response["count"].as_u64().expect("a count")
    }

    /// The document count every `every` until `until`, the first sample at
    /// once. Shows whether writing stopped, and since when.
    pub async fn count_samples(&self, until: Instant, every: Duration) -> Vec<CountSample> {
        let mut samples = Vec::new();
        loop {
            let started = Instant::now();
            let count = self.count().await;
            samples.push(CountSample {
                started,
                taken: Instant::now(),
                count,
            });
            if Instant::now() >= until {
                return samples;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Indexes a document directly (planting differences).
    pub async fn put(&self, id: i64, version: u64, name: &str) {
        let path = format!(
            "/{}/_doc/{id}?version={version}&version_type=external_gte&refresh=true",
            self.name
        );
        let document = json!({"id": id, "name": name, "version": version});
        self.es
            .request_ok(Method::Put, &path, Some(&document))
            .await
            .expect("index a document");
    }

    /// Deletes a document directly (planting differences).
    pub async fn delete(&self, id: i64) {
        let path = format!("/{}/_doc/{id}?refresh=true", self.name);
        self.es
            .request_ok(Method::Delete, &path, None)
            .await
            .expect("delete a document");
    }

    pub async fn drop_index(&self) {
        let _ = self
            .es
            .request(Method::Delete, &format!("/{}", self.name), None)
            .await;
    }
}

/// A private Elasticsearch API server holding the index `orders` (2 shards,
/// 1 replica) whose replicas its one node cannot place: yellow, with nothing
/// initializing or relocating, and the node holds the only started copy of
/// every shard.
pub async fn private_yellow_server() -> crate::process::PrivateEs {
    let server = crate::process::PrivateEs::start().await;
    EsApi::new(&server.url(), Duration::from_secs(30))
        .request_ok(
            Method::Put,
            "/orders",
            Some(
                &serde_json::json!({"settings": {"number_of_shards": 2, "number_of_replicas": 1}}),
            ),
        )
        .await
        .expect("create index orders");
    server
}
