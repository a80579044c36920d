//! The Elasticsearch adapter: plain REST calls through `Elasticsearch::send`.
//!
//! Only official endpoints that exist with the same shape in Elasticsearch
//! 7.17, 8.x, 9.x and OpenSearch 2.x. Responses come back as JSON values for
//! the pure code to interpret; this module holds no planning policy.
//! Credentials come from `ESYNC_ES_API_KEY`, or `ESYNC_ES_USERNAME` with
//! `ESYNC_ES_PASSWORD`, or the URL: one of them (the order every tool uses,
//! `esync_common::es::credentials`), and are never printed.

use std::time::Duration;

use anyhow::Context as _;
use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use esync_common::es::client::{EsClientSettings, build_client};
use esync_common::es::credentials::CredentialSources;
use esync_common::secret::Secret;
use serde_json::Value;

/// How much of an error body to show.
const ERROR_BODY_CHARS: usize = 500;

/// A connection to one cluster.
pub struct EsClient {
    client: Elasticsearch,
    timeout: Duration,
}

impl EsClient {
    /// Builds a client for `url` (no request is made yet).
    pub fn connect(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let variable = |name: &str| std::env::var(name).ok();
        let mut settings = EsClientSettings::new(vec![url.to_owned()], timeout);
        settings.credentials = CredentialSources {
            api_key: variable("ESYNC_ES_API_KEY").map(Secret::new),
            username: variable("ESYNC_ES_USERNAME"),
            password: variable("ESYNC_ES_PASSWORD").map(Secret::new),
        };
        let client = build_client(&settings).context("invalid cluster settings")?;
        Ok(Self { client, timeout })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<(Vec<u8>, &'static str)>,
    ) -> anyhow::Result<Value> {
        let mut headers = HeaderMap::new();
        let body = body.map(|(bytes, content_type)| {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            bytes
        });
        let response = self
            .client
            .send(method, path, headers, Some(query), body, Some(self.timeout))
            .await
            .with_context(|| format!("request {method:?} {path} failed"))?;
        let status = response.status_code();
        let text = response
            .text()
            .await
            .with_context(|| format!("failed to read the response of {method:?} {path}"))?;
        if !status.is_success() {
            let shown: String = text.chars().take(ERROR_BODY_CHARS).collect();
            anyhow::bail!("{method:?} {path} returned {status}: {shown}");
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method:?} {path} returned invalid JSON"))
    }

    /// `GET path?query`, JSON response.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.request(Method::Get, path, query, None).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let bytes = serde_json::to_vec(body)?;
        self.request(Method::Put, path, &[], Some((bytes, "application/json")))
            .await
    }

    /// `POST path` with a JSON body (or none).
    pub async fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let body = match body {
            Some(body) => Some((serde_json::to_vec(body)?, "application/json")),
            None => None,
        };
        self.request(Method::Post, path, &[], body).await
    }

    /// `POST path` with an NDJSON body (`_bulk`).
    pub async fn post_ndjson(&self, path: &str, body: String) -> anyhow::Result<Value> {
        self.request(
            Method::Post,
            path,
            &[],
            Some((body.into_bytes(), "application/x-ndjson")),
        )
        .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.request(Method::Delete, path, &[], None).await
    }
}
