//! The `/metrics` endpoint (Prometheus text format) of `metrics.listen`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("failed to listen on metrics.listen {address}: {source}")]
pub struct MetricsServeError {
    /// The configured address.
    pub address: SocketAddr,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Binds `address` and serves `/metrics` from `registry` until `shutdown`;
/// returns the bound address (port 0 picks one) and the server task.
pub async fn serve(
    address: SocketAddr,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsServeError> {
    let error = |source| MetricsServeError { address, source };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    tracing::info!(address = %bound, "serving /metrics");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(error = %error, "metrics endpoint stopped");
        }
    });
    Ok((bound, task))
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    match crate::metrics::encode(&registry) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            error.to_string(),
        ),
    }
}
