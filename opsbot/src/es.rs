//! The Elasticsearch HTTP adapter: one struct, built from the `cluster:`
//! section, returning domain types. Written against the official REST API
//! (7.17, 8.x, 9.x): `_cluster/health`, `_cat/nodes`, `_cat/shards`,
//! `_cluster/settings`, `_flush`, `_search`. Raw endpoints go through
//! `Elasticsearch::send`.
//!
//! No policy here (retries, waiting, ordering are in `roll` and `driver`).

use crate::cluster::{AllocationSetting, ClusterHealth, ClusterNode, ShardRow};
use crate::config::{ClusterConfig, Secrets};
use chrono::{DateTime, Utc};
use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use esync_common::es::client::{EsClientSettings, EsSetupError, build_client};
use esync_common::es::credentials::CredentialSources;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The allocation setting the roll changes.
pub const ALLOCATION_SETTING: &str = "cluster.routing.allocation.enable";

/// An error talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// The client could not be built from the config.
    #[error("invalid cluster settings: {0}")]
    // shown in the message, so not also a `source` (each cause once)
    Setup(EsSetupError),
    /// Connection refused, time-out, TLS: the cluster could not be reached.
    #[error("cluster unreachable for {endpoint}: {message}")]
    Unreachable {
        /// The endpoint called.
        endpoint: String,
        /// The transport error.
        message: String,
    },
    /// The cluster answered with an error status.
    #[error("{endpoint} returned status {status}: {body}")]
    Status {
        /// The endpoint called.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from {endpoint}: {message}")]
    Decode {
        /// The endpoint called.
        endpoint: String,
        /// What did not fit.
        message: String,
    },
}

impl EsError {
    /// Whether the cluster could not be reached at all (expected while the
    /// node behind the URL restarts).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EsError::Unreachable { .. })
    }
}

#[derive(Deserialize)]
struct CatNode {
    name: String,
    #[serde(default)]
    ip: Option<String>,
    #[serde(rename = "node.role", default)]
    role: Option<String>,
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    uptime: Option<String>,
}

/// The cluster adapter.
#[derive(Debug, Clone)]
pub struct EsClient {
    client: Elasticsearch,
}

fn optional_setting(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(text)) => Some(text.clone()),
        _ => None,
    }
}

impl EsClient {
    /// Builds the client: `cluster.url` and `request_timeout`, credentials
    /// from `cluster.username` with `OPSBOT_ES_PASSWORD`, or
    /// `OPSBOT_ES_API_KEY`, or the URL (one only; see
    /// `esync_common::es::credentials`).
    pub fn new(config: &ClusterConfig, secrets: &Secrets) -> Result<EsClient, EsError> {
        let mut settings = EsClientSettings::new(vec![config.url.clone()], config.request_timeout);
        settings.credentials = CredentialSources {
            api_key: secrets.es_api_key.clone(),
            username: config.username.clone(),
            password: secrets.es_password.clone(),
        };
        Ok(EsClient {
            client: build_client(&settings).map_err(EsError::Setup)?,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<T, EsError> {
        let verb = match method {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        };
        let endpoint = format!("{verb} {path}");
        let response = match body {
            Some(body) => {
                self.client
                    .send(
                        method,
                        path,
                        HeaderMap::new(),
                        Some(query),
                        Some(JsonBody::new(body)),
                        None,
                    )
                    .await
            }
            None => {
                self.client
                    .send::<(), _>(method, path, HeaderMap::new(), Some(query), None, None)
                    .await
            }
        }
        .map_err(|error| EsError::Unreachable {
            endpoint: endpoint.clone(),
            message: error.to_string(),
        })?;
        let status = response.status_code();
        let text = response
            .text()
            .await
            .map_err(|error| EsError::Unreachable {
                endpoint: endpoint.clone(),
                message: error.to_string(),
            })?;
        if !status.is_success() {
            return Err(EsError::Status {
                endpoint,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        serde_json::from_str(&text).map_err(|error| EsError::Decode {
            endpoint,
            message: error.to_string(),
        })
    }

    /// `GET _cluster/health`.
    pub async fn health(&self) -> Result<ClusterHealth, EsError> {
        self.call(Method::Get, "/_cluster/health", &[], None).await
    }

    /// `GET _cat/nodes` with name, ip, roles, master flag and uptime in ms.
    pub async fn nodes(&self) -> Result<Vec<ClusterNode>, EsError> {
        let rows: Vec<CatNode> = self
            .call(
                Method::Get,
                "/_cat/nodes",
                &[
                    ("format", "json"),
                    ("h", "name,ip,node.role,master,uptime"),
                    ("time", "ms"),
                ],
                None,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| ClusterNode {
                name: row.name,
                ip: row.ip.unwrap_or_default(),
                roles: row.role.unwrap_or_default(),
                elected_master: row.master.as_deref() == Some("*"),
                uptime_ms: row
                    .uptime
                    .as_deref()
                    .and_then(|text| text.trim().parse().ok()),
            })
            .collect())
    }

    /// `GET _cat/shards[/{index}]`, sizes in bytes.
    pub async fn shards(&self, index: Option<&str>) -> Result<Vec<ShardRow>, EsError> {
        let path = match index {
            Some(index) => format!("/_cat/shards/{index}"),
            None => "/_cat/shards".to_string(),
        };
        self.call(
            Method::Get,
            &path,
            &[
                ("format", "json"),
                ("h", "index,shard,prirep,state,docs,store,node"),
                ("bytes", "b"),
            ],
            None,
        )
        .await
    }

    /// `GET _cluster/settings` → the allocation setting (persistent and transient).
    pub async fn allocation(&self) -> Result<AllocationSetting, EsError> {
        let settings: Value = self
            .call(
                Method::Get,
                "/_cluster/settings",
                &[("flat_settings", "true")],
                None,
            )
            .await?;
        Ok(AllocationSetting {
            persistent: optional_setting(
                settings
                    .pointer("/persistent")
                    .and_then(|s| s.get(ALLOCATION_SETTING)),
            ),
            transient: optional_setting(
                settings
                    .pointer("/transient")
                    .and_then(|s| s.get(ALLOCATION_SETTING)),
            ),
        })
    }

    /// Sets allocation to `primaries` (persistent; transient too when a
    /// transient value exists, because it would win).
    pub async fn disable_allocation(&self, saved: &AllocationSetting) -> Result<(), EsError> {
        let mut body = json!({ "persistent": { ALLOCATION_SETTING: "primaries" } });
        if saved.transient.is_some() {
            body["transient"] = json!({ ALLOCATION_SETTING: "primaries" });
        }
        self.put_settings(body).await
    }

    /// Puts the allocation setting back; an unset value is reset with `null`.
    pub async fn restore_allocation(&self, saved: &AllocationSetting) -> Result<(), EsError> {
        let mut body = json!({ "persistent": { ALLOCATION_SETTING: saved.persistent } });
        if saved.transient.is_some() {
            body["transient"] = json!({ ALLOCATION_SETTING: saved.transient });
        }
        self.put_settings(body).await
    }

    /// Sets an explicit persistent value (`null` resets); the rolling
    /// restart tests use it to start from a known setting.
    pub async fn set_allocation(&self, value: Option<&str>) -> Result<(), EsError> {
        self.put_settings(json!({ "persistent": { ALLOCATION_SETTING: value } }))
            .await
    }

    async fn put_settings(&self, body: Value) -> Result<(), EsError> {
        let _: Value = self
            .call(
                Method::Put,
                "/_cluster/settings",
                &[("flat_settings", "true")],
                Some(body),
            )
            .await?;
        Ok(())
    }

    /// `POST _flush`; shard failures in the answer count as a failure.
    /// Sent without a body: Elasticsearch answers 400 ("does not support
    /// having a body") to a body on an endpoint that takes none.
    pub async fn flush(&self) -> Result<(), EsError> {
        let answer: Value = self.call(Method::Post, "/_flush", &[], None).await?;
        let failed = answer
            .pointer("/_shards/failed")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if failed > 0 {
            return Err(EsError::Decode {
                endpoint: "POST /_flush".to_string(),
                message: format!("{failed} shard(s) failed to flush"),
            });
        }
        Ok(())
    }

    /// Documents of a slow-log index within a time window (newest first, at
    /// most `max_docs`), as raw `_source` values for `slowlog::parse`.
    pub async fn slowlog_documents(
        &self,
        index: &str,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        max_docs: usize,
    ) -> Result<Vec<Value>, EsError> {
        let mut range = serde_json::Map::new();
        if let Some(since) = since {
            range.insert("gte".into(), json!(since.to_rfc3339()));
        }
        if let Some(until) = until {
            range.insert("lt".into(), json!(until.to_rfc3339()));
        }
        let query = if range.is_empty() {
            json!({ "match_all": {} })
        } else {
            json!({ "range": { "@timestamp": range } })
        };
        let body = json!({
            "size": max_docs.min(10_000),
            "query": query,
            "sort": [{ "@timestamp": { "order": "desc", "unmapped_type": "date" } }],
        });
        let answer: Value = self
            .call(
                Method::Post,
                &format!("/{index}/_search"),
                &[("ignore_unavailable", "true")],
                Some(body),
            )
            .await?;
        let hits = answer
            .pointer("/hits/hits")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(hits
            .into_iter()
            .filter_map(|mut hit| hit.get_mut("_source").map(Value::take))
            .collect())
    }
}
