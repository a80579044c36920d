//! The bot's command handling without a network: authorization, roles,
//! confirmations, replies and the audit log, over a fake operations engine.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::FakeOps;
use opsbot::audit::{AuditLog, AuditOutcome};
use opsbot::bot::{BotHandler, Incoming, IncomingKind, Notice, Reply};
use opsbot::cluster::{HealthStatus, ShardRow, Target, plan_order};
use opsbot::roll::{Action, Next, Observation, RollSettings, RollState};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const CHAT: i64 = -100;
const VIEWER: u64 = 1;
const OPERATOR: u64 = 2;
const STRANGER: u64 = 99;

struct Fixture {
    handler: BotHandler<FakeOps>,
    ops: Arc<FakeOps>,
    notices: UnboundedReceiver<Notice>,
    audit: AuditLog,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ops = Arc::new(FakeOps::default());
    let (sender, notices) = unbounded_channel();
    let settings = common::handler_settings(CHAT, VIEWER, OPERATOR, Some("opsbot"));
    let audit_path = dir.path().join("audit.jsonl");
    let handler = BotHandler::new(ops.clone(), settings, AuditLog::new(&audit_path), sender);
    Fixture {
        handler,
        ops,
        notices,
        audit: AuditLog::new(&audit_path),
        _dir: dir,
    }
}

fn text(chat_id: i64, user_id: u64, text: &str) -> Incoming {
    Incoming {
        chat_id,
        user_id,
        user_name: Some(format!("user{user_id}")),
        kind: IncomingKind::Text(text.to_string()),
    }
}

fn button(chat_id: i64, user_id: u64, data: &str) -> Incoming {
    Incoming {
        chat_id,
        user_id,
        user_name: None,
        kind: IncomingKind::Button {
            callback_id: "cb-1".into(),
            data: data.to_string(),
        },
    }
}

fn token() -> String {
    "tok123".to_string()
}

fn only_text(replies: &[Reply]) -> &str {
    match replies {
        [Reply::Text(text)] => text,
        other => panic!("expected one text reply, got {other:?}"),
    }
}

#[tokio::test]
async fn unlisted_user_or_chat_gets_nothing_and_is_audited() {
    let fixture = fixture();
    let now = Utc::now();
    for incoming in [
        text(CHAT, STRANGER, "/health"),
        text(CHAT, STRANGER, "/restart all"),
        text(CHAT, STRANGER, "/nonsense"),
        text(12345, OPERATOR, "/health"),
        button(CHAT, STRANGER, "ok:tok123"),
    ] {
        assert!(
            fixture
                .handler
                .handle(incoming, now, token)
                .await
                .is_empty()
        );
    }
    let records = fixture.audit.read_all().expect("audit");
    assert_eq!(records.len(), 5);
    assert!(
        records
            .iter()
            .all(|record| record.outcome == AuditOutcome::Ignored)
    );
    assert!(fixture.ops.started.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn viewer_reads_but_cannot_restart() {
    let fixture = fixture();
    let now = Utc::now();
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/health"), now, token)
        .await;
    assert!(only_text(&replies).starts_with("cluster test: green"));
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/restart all"), now, token)
        .await;
    assert_eq!(
        only_text(&replies),
        "restart needs the operator role; you are viewer"
    );
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/abort"), now, token)
        .await;
    assert_eq!(
        only_text(&replies),
        "abort needs the operator role; you are viewer"
    );
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/restart all dry"), now, token)
        .await;
    assert!(
        only_text(&replies).contains("1. es-data-1 on 10.0.0.2"),
        "{replies:?}"
    );
    assert!(fixture.ops.started.lock().expect("lock").is_empty());
    let outcomes: Vec<AuditOutcome> = fixture
        .audit
        .read_all()
        .expect("audit")
        .iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            AuditOutcome::Ok,
            AuditOutcome::Forbidden,
            AuditOutcome::Forbidden,
            AuditOutcome::Ok
        ]
    );
}

#[tokio::test]
async fn restart_needs_confirmation_by_the_same_operator_in_time() {
    let mut fixture = fixture();
    let now = Utc::now();
    let replies = fixture
        .handler
        .handle(text(CHAT, OPERATOR, "/restart all yellow"), now, token)
        .await;
    let [
        Reply::Confirm {
            text: question,
            token: confirm_token,
        },
    ] = replies.as_slice()
    else {
        panic!("expected a confirmation, got {replies:?}");
    };
    assert_eq!(confirm_token, "tok123");
    assert!(
        question.contains("rolling restart of 2 node(s)")
            && question.contains("green or settled yellow"),
        "{question}"
    );
    assert!(
        question.contains("2. es-master-1"),
        "elected master last: {question}"
    );
    assert!(
        fixture.ops.started.lock().expect("lock").is_empty(),
        "nothing before confirmation"
    );

    // Another listed user cannot confirm it.
    let replies = fixture
        .handler
        .handle(button(CHAT, VIEWER, "ok:tok123"), now, token)
        .await;
    assert!(
        matches!(&replies[..], [Reply::ButtonAnswer { text, .. }] if text.contains("only the user who asked"))
    );

    let replies = fixture
        .handler
        .handle(button(CHAT, OPERATOR, "ok:tok123"), now, token)
        .await;
    assert!(
        matches!(&replies[0], Reply::ButtonAnswer { text, .. } if text == "confirmed"),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[1], Reply::Text(text) if text.contains("started: 2 node(s)")),
        "{replies:?}"
    );
    assert_eq!(
        *fixture.ops.started.lock().expect("lock"),
        [(Target::All, true)]
    );
    let mut notices = Vec::new();
    while let Ok(notice) = fixture.notices.try_recv() {
        assert_eq!(notice.chat_id, CHAT);
        notices.push(notice.text);
    }
    assert_eq!(notices.len(), 4, "{notices:?}");
    assert_eq!(notices[0], "restarting node es-data-1 on 10.0.0.2 (1 of 2)");
    assert_eq!(
        notices[1],
        "node es-data-1 restarted, cluster healthy (1 of 2 done)"
    );
    assert_eq!(
        notices[2],
        "restarting node es-master-1 on 10.0.0.1 (2 of 2)"
    );
    assert!(
        notices[3].ends_with("done: 2 of 2 nodes restarted"),
        "{notices:?}"
    );

    // Used once.
    let replies = fixture
        .handler
        .handle(button(CHAT, OPERATOR, "ok:tok123"), now, token)
        .await;
    assert!(
        matches!(&replies[..], [Reply::ButtonAnswer { text, .. }] if text == "nothing to confirm")
    );

    // Expired.
    fixture
        .handler
        .handle(text(CHAT, OPERATOR, "/resume"), now, || {
            "tok456".to_string()
        })
        .await;
    let late = now + ChronoDuration::seconds(61);
    let replies = fixture
        .handler
        .handle(button(CHAT, OPERATOR, "ok:tok456"), late, token)
        .await;
    assert!(
        matches!(&replies[..], [Reply::ButtonAnswer { text, .. }] if text.contains("expired")),
        "{replies:?}"
    );

    // Cancelled.
    fixture
        .handler
        .handle(text(CHAT, OPERATOR, "/restart es-data-1"), now, || {
            "tok789".to_string()
        })
        .await;
    let replies = fixture
        .handler
        .handle(button(CHAT, OPERATOR, "no:tok789"), now, token)
        .await;
    assert!(matches!(&replies[1], Reply::Text(text) if text == "/restart es-data-1 cancelled"));
    assert_eq!(fixture.ops.started.lock().expect("lock").len(), 1);

    let outcomes: Vec<AuditOutcome> = fixture
        .audit
        .read_all()
        .expect("audit")
        .iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            AuditOutcome::ConfirmationRequested,
            AuditOutcome::ConfirmationRefused,
            AuditOutcome::Confirmed,
            AuditOutcome::Ok,
            AuditOutcome::ConfirmationRefused,
            AuditOutcome::ConfirmationRequested,
            AuditOutcome::ConfirmationRefused,
            AuditOutcome::ConfirmationRequested,
            AuditOutcome::Cancelled,
        ]
    );
    let records = fixture.audit.read_all().expect("audit");
    assert_eq!(records[3].command, "/restart all yellow");
    assert_eq!(records[3].user_id, Some(OPERATOR));
    assert_eq!(records[3].role.as_deref(), Some("operator"));
}

fn shard(index: &str, number: &str, prirep: &str, state: &str, node: Option<&str>) -> ShardRow {
    ShardRow {
        index: index.into(),
        shard: number.into(),
        prirep: prirep.into(),
        state: state.into(),
        docs: None,
        store: None,
        node: node.map(str::to_string),
    }
}

/// Issue 12 item 4: a roll that waits says in the chat what it waits for,
/// and `/restart_status` shows it.
#[tokio::test]
async fn restart_progress_and_status_say_what_the_roll_waits_for() {
    let mut fixture = fixture();
    let now = Utc::now();
    let moving = vec![
        shard("logs", "0", "p", "STARTED", Some("es-data-1")),
        shard("logs", "0", "r", "INITIALIZING", Some("es-data-2")),
        shard("logs", "1", "p", "STARTED", Some("es-data-3")),
        shard("logs", "1", "r", "INITIALIZING", Some("es-data-2")),
        shard("logs", "2", "p", "STARTED", Some("es-data-3")),
        shard("logs", "2", "r", "INITIALIZING", Some("es-data-2")),
    ];
    // The replica of logs[0] failed to recover: es-data-1 holds the only copy.
    let quiet = {
        let mut rows = moving.clone();
        rows[1] = shard("logs", "0", "r", "UNASSIGNED", None);
        rows[3] = shard("logs", "1", "r", "STARTED", Some("es-data-2"));
        rows[5] = shard("logs", "2", "r", "STARTED", Some("es-data-2"));
        rows
    };
    *fixture.ops.health_script.lock().expect("lock") = [
        (HealthStatus::Yellow, moving.clone()),
        (HealthStatus::Yellow, quiet.clone()),
        (HealthStatus::Yellow, quiet.clone()),
        (HealthStatus::Yellow, quiet.clone()),
    ]
    .into_iter()
    .collect();
    fixture
        .handler
        .handle(text(CHAT, OPERATOR, "/restart all yellow"), now, token)
        .await;
    fixture
        .handler
        .handle(button(CHAT, OPERATOR, "ok:tok123"), now, token)
        .await;
    let mut notices = Vec::new();
    while let Ok(notice) = fixture.notices.try_recv() {
        notices.push(notice.text);
    }
    assert_eq!(
        notices[..4],
        [
            "waiting (es-data-1, check health): cluster is yellow: 3 shards initializing on es-data-2",
            "waiting (es-data-1, check health): cluster is yellow, settling: no shard initializing or relocating for 1 of 3 polls (1 shard unassigned)",
            "waiting (es-data-1, check health): es-data-1 holds the only started copy of logs[0]",
            "restarting node es-data-1 on 10.0.0.2 (1 of 2)",
        ],
        "{notices:?}"
    );

    // A roll waiting right now: the status says for what.
    let mut waiting = RollState::new(
        plan_order(&common::nodes(), &Target::All, |node| node.ip.clone()).expect("plan"),
        RollSettings {
            allow_yellow: true,
            ..RollSettings::default()
        },
        now,
    );
    assert_eq!(waiting.poll(now), Next::Do(Action::CheckHealth));
    waiting.observe(Observation::Health(HealthStatus::Yellow), now);
    assert_eq!(waiting.poll(now), Next::Do(Action::ListShards));
    waiting.observe(Observation::Shards(moving), now);
    *fixture.ops.state.lock().expect("lock") = Some(waiting.clone());
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/restart_status"), now, token)
        .await;
    assert_eq!(
        only_text(&replies),
        format!(
            "roll {} running: node es-data-1 (1 of 2), step 'check health', waiting: cluster is yellow: 3 shards initializing on es-data-2",
            waiting.id
        )
    );
}

#[tokio::test]
async fn status_abort_and_errors_stay_short() {
    let fixture = fixture();
    let now = Utc::now();
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/restart_status"), now, token)
        .await;
    assert_eq!(only_text(&replies), "no restart recorded");
    let replies = fixture
        .handler
        .handle(text(CHAT, OPERATOR, "/abort"), now, token)
        .await;
    assert_eq!(only_text(&replies), "no restart recorded");

    fixture.ops.fail_health.store(true, Ordering::SeqCst);
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/health"), now, token)
        .await;
    let reply = only_text(&replies);
    assert_eq!(
        reply,
        "the cluster returned an error (details in the opsbot log)"
    );
    assert!(!reply.contains("secret") && !reply.contains("10.9.9.9"));
    let records = fixture.audit.read_all().expect("audit");
    let last = records.last().expect("record");
    assert_eq!(last.outcome, AuditOutcome::Failed);
    assert!(!last.detail.clone().unwrap_or_default().contains("secret"));

    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/restart"), now, token)
        .await;
    assert!(only_text(&replies).starts_with("usage: /restart <node|all>"));
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/frobnicate"), now, token)
        .await;
    assert_eq!(
        only_text(&replies),
        "unknown command /frobnicate, see /help"
    );
    assert!(
        fixture
            .handler
            .handle(text(CHAT, VIEWER, "just chatting"), now, token)
            .await
            .is_empty()
    );
    assert!(
        fixture
            .handler
            .handle(text(CHAT, VIEWER, "/health@otherbot"), now, token)
            .await
            .is_empty()
    );
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/help@opsbot"), now, token)
        .await;
    assert!(only_text(&replies).contains("/slowlog [window] [index]"));
}

#[tokio::test]
async fn slowlog_answers_with_text_chart_and_file() {
    let fixture = fixture();
    let now = Utc::now();
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/slowlog 1h orders-*"), now, token)
        .await;
    {
        let filters = fixture.ops.slowlog_filters.lock().expect("lock");
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].since, Some(now - ChronoDuration::hours(1)));
        assert_eq!(filters[0].until, None);
        assert_eq!(filters[0].index_patterns, ["orders-*"]);
    }
    assert_eq!(replies.len(), 3, "{replies:?}");
    let Reply::Text(summary) = &replies[0] else {
        panic!("text first")
    };
    assert!(
        summary.starts_with("slow log by request: 4 requests (4 shard executions), 3 fingerprints"),
        "{summary}"
    );
    assert!(matches!(&replies[1], Reply::Photo { bytes, .. } if bytes.starts_with(b"\x89PNG")));
    assert!(
        matches!(&replies[2], Reply::File { name, bytes, .. } if name == "slowlog.md" && bytes.starts_with(b"# Slow-log report"))
    );
    // Counting by shard is asked for in the chat as on the command line.
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/slowlog 1h by=shard"), now, token)
        .await;
    let Reply::Text(summary) = &replies[0] else {
        panic!("text first")
    };
    assert!(
        summary.starts_with("slow log by shard: 4 shard executions (4 requests)"),
        "{summary}"
    );
    // The index filter reaches the digest: nothing matches here.
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/slowlog metrics-*"), Utc::now(), token)
        .await;
    assert!(
        only_text(&replies).contains("no slow queries"),
        "{replies:?}"
    );
}

#[tokio::test]
async fn plan_answers_readme_example_with_rules_findings_and_file() {
    let fixture = fixture();
    let now = Utc::now();
    // shardplan/README.md, worked example 1 (hot/warm, daily indexes).
    let replies = fixture
        .handler
        .handle(
            text(
                CHAT,
                VIEWER,
                "/plan hot=3 warm=4 warm_disk=8tb ingest=300gb docs=600000000 hot_days=7 warm_days=30 replicas=1",
            ),
            now,
            token,
        )
        .await;
    let [Reply::Text(summary), Reply::File { name, bytes, .. }] = replies.as_slice() else {
        panic!("expected a text and a file, got {replies:?}");
    };
    assert!(
        summary.starts_with("logs-*: 12 primaries per index, 1 replica(s); shards of 25gb"),
        "{summary}"
    );
    for line in [
        "- hot-multiple 3: ",
        "- growth 6: ",
        "- tier-lcm 12: ",
        "- shard-size 12: ",
        "- warning disk-after-node-loss: ",
    ] {
        assert!(summary.contains(line), "{line} missing in\n{summary}");
    }
    assert!(summary.chars().count() < 4096, "fits one message");
    assert_eq!(name, "shardplan-logs.txt");
    let full = String::from_utf8(bytes.clone()).expect("utf-8");
    assert!(full.contains("primaries per index   12"), "{full}");

    // Example 3: the LCM explosion, with suggested node counts.
    let replies = fixture
        .handler
        .handle(
            text(
                CHAT,
                VIEWER,
                "/plan hot=7 warm=5 warm_disk=8tb ingest=300gb hot_days=7 warm_days=30",
            ),
            now,
            token,
        )
        .await;
    let Some(Reply::Text(summary)) = replies.first() else {
        panic!("expected a text, got {replies:?}");
    };
    assert!(summary.contains(": 70 primaries per index"), "{summary}");
    assert!(summary.contains("lcm-explosion"), "{summary}");
    assert!(
        summary.contains("- hot 7 / warm 4 / cold 0: 28 primaries of 10.7gb"),
        "{summary}"
    );

    let records = fixture.audit.read_all().expect("audit");
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].command,
        "/plan hot_nodes=3 warm_nodes=4 warm_disk=8tb daily_ingest=300gb daily_docs=600000000 hot_days=7 warm_days=30 replicas=1"
    );
    assert!(
        records
            .iter()
            .all(|record| record.outcome == AuditOutcome::Ok)
    );
}

#[tokio::test]
async fn plan_usage_and_bad_input_get_short_replies() {
    let fixture = fixture();
    let now = Utc::now();
    for usage in ["/plan", "/plan help"] {
        let replies = fixture
            .handler
            .handle(text(CHAT, VIEWER, usage), now, token)
            .await;
        assert!(
            only_text(&replies).starts_with("/plan key=value"),
            "{usage}"
        );
    }
    let replies = fixture
        .handler
        .handle(
            text(CHAT, VIEWER, "/plan hot=3 ingest=300gb hots=4"),
            now,
            token,
        )
        .await;
    assert_eq!(
        only_text(&replies),
        "/plan: unknown key \"hots\" (see /plan help)"
    );
    let replies = fixture
        .handler
        .handle(text(CHAT, VIEWER, "/plan hot=3 ingest=lots"), now, token)
        .await;
    assert_eq!(
        only_text(&replies),
        "/plan: bad value daily_ingest=\"lots\": expected a size with a unit such as 500gb (see /plan help)"
    );
    // Absurd but well-formed numbers: a short answer, never a panic.
    let replies = fixture
        .handler
        .handle(
            text(
                CHAT,
                VIEWER,
                "/plan hot=4294967295 warm=4294967294 cold=4294967293 ingest=16000pb max_shard=1b hot_days=4294967295 warm_days=4294967295 cold_days=4294967295 replicas=4294967295 growth=4294967295",
            ),
            now,
            token,
        )
        .await;
    let Some(Reply::Text(answer)) = replies.first() else {
        panic!("expected a text, got {replies:?}");
    };
    assert!(answer.len() < 4096, "{answer}");
    let records = fixture.audit.read_all().expect("audit");
    let outcomes: Vec<_> = records.iter().map(|record| record.outcome).collect();
    assert_eq!(
        outcomes[..4],
        [
            AuditOutcome::Ok,
            AuditOutcome::Ok,
            AuditOutcome::Rejected,
            AuditOutcome::Rejected
        ]
    );
    assert_eq!(
        records[2].detail.as_deref(),
        Some("/plan: unknown key \"hots\" (see /plan help)")
    );
}
