//! The operations endpoint: `/metrics` (Prometheus text format) and `/healthz`
//! (200 only when Kafka, the database and Elasticsearch all answer and no
//! index is blocked for the writer, see [`crate::writer::Writer::health_problem`]).

use crate::daemon::Services;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A readiness check: `Ok` when every dependency answers, otherwise what fails.
pub type HealthCheck = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: HealthCheck,
}

/// Serves the daemon's metrics, with `/healthz` checking Kafka, the database
/// and Elasticsearch.
pub async fn serve(
    address: SocketAddr,
    registry: Arc<Registry>,
    services: Services,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let (consumer, writer) = (Arc::downgrade(&services.consumer), services.writer.clone());
    drop(services);
    let health: HealthCheck = Arc::new(move || {
        let (consumer, writer) = (consumer.upgrade(), writer.clone());
        Box::pin(async move {
            match consumer {
                Some(consumer) => crate::daemon::check_health(&consumer, &writer).await,
                None => Err("stopping".to_owned()),
            }
        })
    });
    serve_with_health(address, registry, health, shutdown).await
}

/// Binds `address` and serves `/metrics` and `/healthz` (answered by `health`)
/// until `shutdown` fires.
pub async fn serve_with_health(
    address: SocketAddr,
    registry: Arc<Registry>,
    health: HealthCheck,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics and /healthz");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState { registry, health });
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(error = %error, "metrics endpoint stopped");
        }
    }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
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

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match (state.health)().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(problems) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {problems}\n"),
        ),
    }
}
