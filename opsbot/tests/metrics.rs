//! Metrics recorded on the command path both front ends share
//! (`opsbot::execute`), by the chat handler for refused users, and served by
//! the `/metrics` endpoint. Over a fake operations engine: no services.

mod common;

use chrono::Utc;
use common::FakeOps;
use opsbot::audit::AuditLog;
use opsbot::bot::{BotHandler, Incoming, IncomingKind, Reply};
use opsbot::cluster::Target;
use opsbot::command::{Command, PlanRequest, PlanSetting, SlowlogRequest};
use opsbot::execute::{ExecSettings, Executor};
use opsbot::metrics::{OpsbotMetrics, encode};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::unbounded_channel;
use tokio_util::sync::CancellationToken;

const CHAT: i64 = -100;
const VIEWER: u64 = 1;
const OPERATOR: u64 = 2;
const STRANGER: u64 = 99;

fn registered() -> (Registry, OpsbotMetrics) {
    let mut registry = Registry::default();
    let metrics = OpsbotMetrics::register(&mut registry);
    (registry, metrics)
}

/// The value of one series (`name{labels}` exactly as encoded); 0 when it
/// was never recorded.
fn value(registry: &Registry, series: &str) -> f64 {
    let text = encode(registry).expect("encodes");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn commands(registry: &Registry, command: &str, outcome: &str) -> f64 {
    value(
        registry,
        &format!("opsbot_commands_total{{command=\"{command}\",outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test]
async fn executor_counts_every_command_by_outcome() {
    let (registry, metrics) = registered();
    let ops = Arc::new(FakeOps::default());
    let settings = ExecSettings {
        default_window: None,
        slowlog_top: 5,
        allow_yellow: false,
    };
    let executor = Executor::new(ops.clone(), settings).with_metrics(metrics);
    let now = Utc::now();

    executor
        .execute(Command::Health, now)
        .await
        .expect("health");
    executor
        .execute(Command::Health, now)
        .await
        .expect("health");
    ops.fail_health.store(true, Ordering::SeqCst);
    executor
        .execute(Command::Health, now)
        .await
        .expect_err("fails");
    let bad_plan = Command::Plan {
        request: PlanRequest::Settings(vec![PlanSetting {
            key: shardplan::OverrideKey::find("hot_nodes").expect("a key"),
            value: "many".into(),
        }]),
    };
    executor.execute(bad_plan, now).await.expect_err("refused");
    executor
        .execute(Command::Slowlog(SlowlogRequest::default()), now)
        .await
        .expect("slowlog");

    assert_eq!(commands(&registry, "health", "ok"), 2.0);
    assert_eq!(commands(&registry, "health", "failed"), 1.0);
    assert_eq!(commands(&registry, "plan", "refused"), 1.0);
    assert_eq!(commands(&registry, "slowlog", "ok"), 1.0);
    assert_eq!(value(&registry, "opsbot_slowlog_reports_total"), 1.0);
    // an unknown chat user never reaches the executor
    assert_eq!(
        value(
            &registry,
            "opsbot_refused_chat_users_total{reason=\"unlisted\"}"
        ),
        0.0
    );
}

fn text(chat_id: i64, user_id: u64, text: &str) -> Incoming {
    Incoming {
        chat_id,
        user_id,
        user_name: None,
        kind: IncomingKind::Text(text.to_string()),
    }
}

#[tokio::test]
async fn chat_commands_and_refused_users_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, metrics) = registered();
    let ops = Arc::new(FakeOps::default());
    let (sender, _notices) = unbounded_channel();
    let settings = common::handler_settings(CHAT, VIEWER, OPERATOR, Some("opsbot"));
    let handler = BotHandler::new(
        ops.clone(),
        settings,
        AuditLog::new(dir.path().join("audit.jsonl")),
        sender,
    )
    .with_metrics(metrics);
    let now = Utc::now();
    let token = || "tok".to_string();

    // an unlisted user, and a listed user in an unlisted chat: no reply,
    // counted as unauthorized and as refused chat users
    assert!(
        handler
            .handle(text(CHAT, STRANGER, "/health"), now, token)
            .await
            .is_empty()
    );
    assert!(
        handler
            .handle(text(-5, VIEWER, "/health"), now, token)
            .await
            .is_empty()
    );
    assert_eq!(commands(&registry, "health", "unauthorized"), 2.0);
    assert_eq!(
        value(
            &registry,
            "opsbot_refused_chat_users_total{reason=\"unlisted\"}"
        ),
        2.0
    );
    assert_eq!(commands(&registry, "health", "ok"), 0.0);

    // a viewer asking for a restart: refused for the role
    handler
        .handle(text(CHAT, VIEWER, "/restart all"), now, token)
        .await;
    assert_eq!(commands(&registry, "restart", "unauthorized"), 1.0);
    assert_eq!(
        value(
            &registry,
            "opsbot_refused_chat_users_total{reason=\"role\"}"
        ),
        1.0
    );

    // a listed viewer's command goes through the executor: ok
    handler
        .handle(text(CHAT, VIEWER, "/health"), now, token)
        .await;
    assert_eq!(commands(&registry, "health", "ok"), 1.0);

    // the plan shown before a confirmation is not a command; confirming is
    let replies = handler
        .handle(text(CHAT, OPERATOR, "/restart all"), now, token)
        .await;
    assert!(
        matches!(replies.as_slice(), [Reply::Confirm { .. }]),
        "{replies:?}"
    );
    assert_eq!(commands(&registry, "restart", "ok"), 0.0);
    let confirm = Incoming {
        chat_id: CHAT,
        user_id: OPERATOR,
        user_name: None,
        kind: IncomingKind::Button {
            callback_id: "cb".into(),
            data: "ok:tok".into(),
        },
    };
    handler.handle(confirm, now, token).await;
    assert_eq!(commands(&registry, "restart", "ok"), 1.0);
    assert_eq!(
        ops.started.lock().expect("lock").as_slice(),
        [(Target::All, false)]
    );
}

#[tokio::test]
async fn metrics_endpoint_serves_the_registry() {
    let (registry, metrics) = registered();
    metrics.command("health", opsbot::metrics::CommandOutcome::Ok);
    let shutdown = CancellationToken::new();
    let (address, task) = opsbot::metrics_http::serve(
        "127.0.0.1:0".parse().expect("address"),
        Arc::new(registry),
        shutdown.clone(),
    )
    .await
    .expect("binds");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("opsbot_commands_total{command=\"health\",outcome=\"ok\"} 1"),
        "{response}"
    );
    shutdown.cancel();
    task.await.expect("server stops");
}
