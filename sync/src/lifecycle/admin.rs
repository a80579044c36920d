//! Elasticsearch calls of the index lifecycle: read a family, create an
//! index, change aliases atomically, delete indexes. Documented REST API only
//! (`GET /<pattern>`, `GET /_alias/<name>`, `HEAD /<index>`, `PUT /<index>`,
//! `POST /_aliases`, `PUT /<index>/_mapping`, `_cat/indices`).

use super::family::{IndexFamily, Live, UnexpectedResponse};
use crate::es::{EsClient, EsError};
use elasticsearch::http::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Why a lifecycle call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The cluster could not be asked, or refused.
    #[error(transparent)]
    Es(#[from] EsError),
    /// The answer was not what the REST API documents.
    #[error(transparent)]
    Unexpected(#[from] UnexpectedResponse),
}

/// Reads the alias, its versioned indexes and the one being built.
pub async fn fetch_family(es: &EsClient, alias: &str) -> Result<IndexFamily, AdminError> {
    let versioned = es
        .request_ok(Method::Get, &format!("/{alias}-v*"), None)
        .await?;
    let live = fetch_live(es, alias).await?;
    Ok(IndexFamily::from_responses(alias, live, &versioned)?)
}

async fn fetch_live(es: &EsClient, alias: &str) -> Result<Live, AdminError> {
    let response = es
        .request(Method::Get, &format!("/_alias/{alias}"), None)
        .await?;
    match response.status {
        200 => {
            let body = response.json();
            let object = body
                .as_object()
                .ok_or_else(|| UnexpectedResponse(format!("GET /_alias/{alias}: {body}")))?;
            let indexes: Vec<String> = object.keys().cloned().collect();
            let write_index = object
                .iter()
                .find(|(_, info)| info["aliases"][alias]["is_write_index"] == json!(true))
                .map(|(index, _)| index.clone());
            Ok(Live::Alias {
                indexes,
                write_index,
            })
        }
        404 => {
            let exists = es.request(Method::Head, &format!("/{alias}"), None).await?;
            Ok(if exists.status == 200 {
                Live::ConcreteIndex
            } else {
                Live::Missing
            })
        }
        status => Err(EsError::Status {
            path: format!("/_alias/{alias}"),
            status,
            body: String::from_utf8_lossy(&response.body).into_owned(),
        }
        .into()),
    }
}

/// Creates `index` with `body` (settings, mappings, aliases).
pub async fn create_index(es: &EsClient, index: &str, body: &Value) -> Result<(), AdminError> {
    es.request_ok(Method::Put, &format!("/{index}"), Some(body))
        .await?;
    Ok(())
}

/// Applies alias actions in one atomic `_aliases` call.
pub async fn update_aliases(es: &EsClient, actions: &Value) -> Result<(), AdminError> {
    es.request_ok(Method::Post, "/_aliases", Some(actions))
        .await?;
    Ok(())
}

/// Deletes `index`.
pub async fn delete_index(es: &EsClient, index: &str) -> Result<(), AdminError> {
    es.request_ok(Method::Delete, &format!("/{index}"), None)
        .await?;
    Ok(())
}

/// The mappings of `index` (an alias resolves to its indexes: the write
/// index's, or the first).
pub async fn fetch_mappings(es: &EsClient, index: &str) -> Result<Value, AdminError> {
    let body = es
        .request_ok(Method::Get, &format!("/{index}/_mapping"), None)
        .await?;
    body.as_object()
        .and_then(|indexes| indexes.values().next())
        .map(|info| info["mappings"].clone())
        .ok_or_else(|| UnexpectedResponse(format!("GET /{index}/_mapping: {body}")).into())
}

/// Merges `entries` into `_meta.esync` of `index`, keeping the rest of `_meta`.
pub async fn merge_meta(
    es: &EsClient,
    index: &str,
    entries: &[(&str, Value)],
) -> Result<(), AdminError> {
    let mappings = fetch_mappings(es, index).await?;
    let mut meta = mappings["_meta"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    if !meta["esync"].is_object() {
        meta["esync"] = json!({});
    }
    for (key, value) in entries {
        meta["esync"][*key] = value.clone();
    }
    es.request_ok(
        Method::Put,
        &format!("/{index}/_mapping"),
        Some(&json!({ "_meta": meta })),
    )
    .await?;
    Ok(())
}

/// Documents per versioned index of `alias`.
pub async fn doc_counts(es: &EsClient, alias: &str) -> Result<BTreeMap<String, u64>, AdminError> {
    let body = es
        .request_ok(
            Method::Get,
            &format!("/_cat/indices/{alias}-v*?format=json&h=index,docs.count"),
            None,
        )
        .await?;
    let rows = body
        .as_array()
        .ok_or_else(|| UnexpectedResponse(format!("_cat/indices: {body}")))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let index = row["index"].as_str()?.to_owned();
            let count = row["docs.count"].as_str()?.parse().ok()?;
            Some((index, count))
        })
        .collect())
}
