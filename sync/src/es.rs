//! Elasticsearch adapter: the `_bulk` endpoint and a few plain REST calls.
//!
//! Written against the documented REST API (works with Elasticsearch
//! 7.17/8.x/9.x and OpenSearch 2.x): plain `application/json` and
//! `application/x-ndjson`, no version-specific headers. Returns raw statuses
//! and bodies; what they mean is decided in [`crate::bulk`].

use crate::config::{ElasticsearchConfig, Secrets};
use bytes::Bytes;
use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use esync_common::es::client::{EsClientSettings, EsSetupError, build_client};
use esync_common::es::credentials::CredentialSources;
use serde_json::Value;
use std::time::Duration;

/// Errors talking to Elasticsearch.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// The client could not be built from the configuration.
    #[error("invalid elasticsearch settings: {0}")]
    // shown in the message, so not also a `source` (each cause once)
    Setup(EsSetupError),
    /// No HTTP response (connection refused, time-out, TLS failure).
    #[error("elasticsearch request {path} failed: {source}")]
    Transport {
        /// The request path.
        path: String,
        /// The client error.
        source: elasticsearch::Error,
    },
    /// An HTTP error status.
    #[error("elasticsearch answered {status} to {path}: {body}")]
    Status {
        /// The request path.
        path: String,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// A client for one cluster.
#[derive(Debug, Clone)]
pub struct EsClient {
    client: Elasticsearch,
}

/// A response: status and body bytes.
#[derive(Debug, Clone)]
pub struct EsResponse {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Bytes,
}

impl EsResponse {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl EsClient {
    /// Builds a client from the `elasticsearch` section and resolved secrets
    /// (credential order: see `esync_common::es::credentials`).
    pub fn new(config: &ElasticsearchConfig, secrets: &Secrets) -> Result<EsClient, EsError> {
        let settings = EsClientSettings {
            urls: config.urls.clone(),
            credentials: CredentialSources {
                api_key: secrets.es_api_key.clone(),
                username: config.username.clone(),
                password: secrets.es_password.clone(),
            },
            request_timeout: config.request_timeout,
            ca_cert: config.ca_cert.clone(),
            insecure_skip_verify: config.insecure_skip_verify,
        };
        Ok(EsClient {
            client: build_client(&settings).map_err(EsError::Setup)?,
        })
    }

    /// A client for one URL without credentials (tests and tools).
    pub fn from_url(url: &str, request_timeout: Duration) -> Result<EsClient, EsError> {
        let settings = EsClientSettings::new(vec![url.to_owned()], request_timeout);
        Ok(EsClient {
            client: build_client(&settings).map_err(EsError::Setup)?,
        })
    }

    /// Sends an NDJSON `_bulk` body; any HTTP status is returned, only
    /// transport failures are errors.
    pub async fn bulk(&self, body: Vec<u8>) -> Result<EsResponse, EsError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        self.send_raw(Method::Post, "/_bulk", headers, Some(body), None)
            .await
    }

    /// Sends a JSON request and returns the response whatever its status.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<EsResponse, EsError> {
        let body = body.map(|body| serde_json::to_vec(body).expect("JSON values serialise"));
        self.send_raw(method, path, HeaderMap::new(), body, None)
            .await
    }

    /// Like [`EsClient::request`], but a non-2xx status is an error.
    pub async fn request_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EsError> {
        let response = self.request(method, path, body).await?;
        if !(200..300).contains(&response.status) {
            return Err(EsError::Status {
                path: path.to_owned(),
                status: response.status,
                body: crate::id::truncate_for_message(&String::from_utf8_lossy(&response.body)),
            });
        }
        Ok(response.json())
    }

    /// `GET /` with a short time-out: is the cluster answering?
    pub async fn ping(&self, timeout: Duration) -> Result<(), EsError> {
        let response = self
            .send_raw(Method::Get, "/", HeaderMap::new(), None, Some(timeout))
            .await?;
        if response.status >= 300 {
            return Err(EsError::Status {
                path: "/".into(),
                status: response.status,
                body: String::new(),
            });
        }
        Ok(())
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<EsResponse, EsError> {
        let transport_error = |source| EsError::Transport {
            path: path.to_owned(),
            source,
        };
        let response = self
            .client
            .send::<Vec<u8>, ()>(method, path, headers, None, body, timeout)
            .await
            .map_err(transport_error)?;
        let status = response.status_code().as_u16();
        let body = response.bytes().await.map_err(|error| EsError::Transport {
            path: path.to_owned(),
            source: error,
        })?;
        Ok(EsResponse { status, body })
    }
}
