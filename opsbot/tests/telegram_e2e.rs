//! The Telegram layer end to end: teloxide talks to a local HTTP server (in
//! this test) that speaks the Bot API methods opsbot uses: getMe,
//! getUpdates, sendMessage, sendDocument, sendPhoto, answerCallbackQuery.
//! teloxide sends PascalCase method names (`/bot<token>/GetMe`).

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::routing::post;
use common::FakeOps;
use opsbot::audit::AuditLog;
use opsbot::bot::BotHandler;
use opsbot::config::Secret;
use opsbot::telegram::{ServeOptions, make_bot, serve};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::unbounded_channel;
use tokio_util::sync::CancellationToken;

const CHAT: i64 = -4242;
const VIEWER: u64 = 11;
const OPERATOR: u64 = 22;
const STRANGER: u64 = 33;
const TOKEN: &str = "123456:TEST-TOKEN";

#[derive(Default)]
struct FakeTelegram {
    calls: Mutex<Vec<(String, String)>>,
    updates: Mutex<VecDeque<Value>>,
    next_update_id: Mutex<u64>,
}

impl FakeTelegram {
    fn push_update(&self, body: Value) {
        let mut id = self.next_update_id.lock().expect("lock");
        *id += 1;
        let mut update = body;
        update["update_id"] = json!(*id);
        self.updates.lock().expect("lock").push_back(update);
    }

    fn push_text(&self, user_id: u64, text: &str) {
        self.push_update(json!({
            "message": {
                "message_id": 1, "date": 1_700_000_000,
                "chat": {"id": CHAT, "type": "group", "title": "ops"},
                "from": {"id": user_id, "is_bot": false, "first_name": "U", "username": format!("user{user_id}")},
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": text.split(' ').next().unwrap_or("").len()}]
            }
        }));
    }

    fn push_button(&self, user_id: u64, data: &str) {
        self.push_update(json!({
            "callback_query": {
                "id": "cb-77",
                "from": {"id": user_id, "is_bot": false, "first_name": "U"},
                "chat_instance": "ci-1",
                "data": data,
                "message": message_result("confirm?")
            }
        }));
    }

    fn calls_of(&self, method: &str) -> Vec<String> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(method))
            .map(|(_, body)| body.clone())
            .collect()
    }
}

fn message_result(text: &str) -> Value {
    json!({
        "message_id": 500, "date": 1_700_000_001,
        "chat": {"id": CHAT, "type": "group", "title": "ops"},
        "from": {"id": 999, "is_bot": true, "first_name": "opsbot", "username": "opsbot_test"},
        "text": text
    })
}

async fn bot_api(
    State(state): State<Arc<FakeTelegram>>,
    Path(path): Path<String>,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    let (prefix, method) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
    assert_eq!(prefix, format!("bot{TOKEN}"), "token in the path");
    let body_text = String::from_utf8_lossy(&body).into_owned();
    state
        .calls
        .lock()
        .expect("lock")
        .push((method.to_string(), body_text));
    let result = match method.to_ascii_lowercase().as_str() {
        "getme" => json!({
            "id": 999, "is_bot": true, "first_name": "opsbot", "username": "opsbot_test",
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false
        }),
        "getupdates" => {
            let pending: Vec<Value> = state.updates.lock().expect("lock").drain(..).collect();
            if pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Value::Array(pending)
        }
        "sendmessage" | "senddocument" | "sendphoto" => message_result("ok"),
        "answercallbackquery" => json!(true),
        other => panic!("unexpected Bot API method {other}"),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"ok": true, "result": result}).to_string(),
    )
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bot_answers_confirms_and_reports_over_the_bot_api() {
    let fake = Arc::new(FakeTelegram::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/{*path}", post(bot_api))
        .with_state(fake.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.jsonl");
    let ops = Arc::new(FakeOps::default());
    let (notices_sender, notices) = unbounded_channel();
    let settings = common::handler_settings(CHAT, VIEWER, OPERATOR, None);
    let handler = BotHandler::new(
        ops.clone(),
        settings,
        AuditLog::new(&audit_path),
        notices_sender,
    );
    let bot = make_bot(&Secret::new(TOKEN), Some(&format!("http://{address}/"))).expect("bot");
    let options = ServeOptions {
        poll_timeout: Duration::from_secs(1),
        max_message_chars: 400,
    };
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(serve(
        bot,
        TOKEN.to_string(),
        handler,
        notices,
        options,
        shutdown.clone(),
    ));

    fake.push_text(VIEWER, "/health@opsbot_test");
    fake.push_text(STRANGER, "/health");
    fake.push_text(OPERATOR, "/restart all");
    wait_for("the confirmation question", || {
        fake.calls_of("SendMessage")
            .iter()
            .any(|body| body.contains("ok:"))
    })
    .await;
    let question: Value = fake
        .calls_of("SendMessage")
        .iter()
        .find(|body| body.contains("ok:"))
        .and_then(|body| serde_json::from_str(body).ok())
        .expect("json body");
    let confirm_data = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .expect("button data")
        .to_string();
    assert_eq!(
        question["reply_markup"]["inline_keyboard"][0][1]["text"],
        "Cancel"
    );
    assert!(
        ops.started.lock().expect("lock").is_empty(),
        "nothing before confirmation"
    );

    fake.push_button(OPERATOR, &confirm_data);
    wait_for("progress notices", || {
        fake.calls_of("SendMessage").len() >= 7
    })
    .await;
    fake.push_text(VIEWER, "/slowlog 2h");
    wait_for("the slow-log chart and files", || {
        fake.calls_of("SendPhoto").len() == 1 && fake.calls_of("SendDocument").len() == 2
    })
    .await;
    shutdown.cancel();
    serving.await.expect("join").expect("serve ends cleanly");
    server.abort();

    let get_me = fake.calls_of("GetMe");
    assert_eq!(get_me.len(), 1);
    assert_eq!(
        fake.calls.lock().expect("lock")[0].0,
        "GetMe",
        "PascalCase, getMe first"
    );
    let answers = fake.calls_of("AnswerCallbackQuery");
    assert_eq!(answers.len(), 1);
    assert!(
        answers[0].contains("cb-77") && answers[0].contains("confirmed"),
        "{answers:?}"
    );

    let texts: Vec<String> = fake
        .calls_of("SendMessage")
        .iter()
        .map(|body| {
            serde_json::from_str::<Value>(body).expect("json")["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.starts_with("cluster test: green"))
            .count(),
        1,
        "stranger got nothing: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("started: 2 node(s)")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t == "restarting node es-data-1 on 10.0.0.2 (1 of 2)"),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t == "node es-data-1 restarted, cluster healthy (1 of 2 done)"),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.ends_with("done: 2 of 2 nodes restarted")),
        "{texts:?}"
    );
    assert_eq!(texts.len(), 7, "{texts:?}");
    assert!(
        texts.iter().all(|t| !t.contains(TOKEN)),
        "the token never reaches a chat"
    );

    // The long slow-log text went as a file, with the Markdown report.
    let documents = fake.calls_of("SendDocument");
    assert!(
        documents
            .iter()
            .any(|body| body.contains("filename=\"reply.txt\"")),
        "long text as file"
    );
    assert!(
        documents
            .iter()
            .any(|body| body.contains("filename=\"slowlog.md\""))
    );
    assert!(fake.calls_of("SendPhoto")[0].contains("filename=\"chart.png\""));

    let audit = AuditLog::new(&audit_path).read_all().expect("audit");
    assert_eq!(audit.len(), 6, "{audit:?}");
    assert!(audit.iter().all(|record| record.via == "telegram"));
}
