//! The bot's command handling, independent of Telegram: an [`Incoming`]
//! message or button press in, a list of [`Reply`] values out. The Telegram
//! layer (`crate::telegram`) only converts updates and sends replies, so this
//! is tested without a network, with a fake [`Operations`]. Commands run
//! through the same path as the CLI's (`crate::execute`); this module adds
//! authorization, confirmations, the audit and the chat rendering.
//!
//! Every command is written to the audit log. Unlisted chats and users get no
//! reply. Replies are short and never contain error details: those go to the
//! log.

use crate::audit::{AuditLog, AuditOutcome, AuditRecord};
use crate::command::{
    AccessPolicy, Command, CommandError, ConfirmError, Confirmations, Decision, HELP, Role,
    parse_command, plan_help,
};
use crate::driver::ProgressSink;
use crate::execute::{ExecError, ExecSettings, Executor, Outcome, PendingRoll};
use crate::format::{describe_plan, health_text, humanize_ms, nodes_text, shards_text};
use crate::metrics::{OpsbotMetrics, RefusedReason};
use crate::ops::{Operations, OpsError};
use crate::roll::RollSettings;
use crate::slowlog::chart::render_png;
use crate::slowlog::report::{render_markdown, render_text};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tracing::Instrument;

/// A message or button press from a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Chat id.
    pub chat_id: i64,
    /// Sender's user id.
    pub user_id: u64,
    /// Sender's user name, for the audit log.
    pub user_name: Option<String>,
    /// Text or button.
    pub kind: IncomingKind,
}

/// What arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingKind {
    /// A text message.
    Text(String),
    /// An inline button was pressed.
    Button {
        /// Id to answer the press with.
        callback_id: String,
        /// The button's data (`ok:<token>` or `no:<token>`).
        data: String,
    },
}

/// Something to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A text message (sent as a file when too long for one message).
    Text(String),
    /// A file.
    File {
        /// File name.
        name: String,
        /// Content.
        bytes: Vec<u8>,
        /// Caption.
        caption: String,
    },
    /// A picture.
    Photo {
        /// PNG bytes.
        bytes: Vec<u8>,
        /// Caption.
        caption: String,
    },
    /// A question with Confirm/Cancel buttons carrying the token.
    Confirm {
        /// The question.
        text: String,
        /// Token for the buttons (`ok:<token>`, `no:<token>`).
        token: String,
    },
    /// The answer to a button press (a small toast in the client).
    ButtonAnswer {
        /// The press being answered.
        callback_id: String,
        /// Short text.
        text: String,
    },
}

/// A progress line for a chat, sent while a roll runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Chat to post in.
    pub chat_id: i64,
    /// The line.
    pub text: String,
}

/// Settings of the handler.
#[derive(Debug, Clone)]
pub struct HandlerSettings {
    /// Who may do what.
    pub policy: AccessPolicy,
    /// How long confirmation buttons stay valid.
    pub confirm_ttl: Duration,
    /// Window of `/slowlog` without one.
    pub default_window: Duration,
    /// Fingerprints shown by `/slowlog`.
    pub slowlog_top: usize,
    /// Roll settings, for the plan shown before a restart.
    pub roll_settings: RollSettings,
    /// The bot's user name, to accept `/cmd@name`.
    pub bot_username: Option<String>,
}

/// The command handler.
pub struct BotHandler<O: Operations> {
    executor: Executor<O>,
    settings: HandlerSettings,
    confirmations: Mutex<Confirmations>,
    audit: AuditLog,
    notices: UnboundedSender<Notice>,
    metrics: OpsbotMetrics,
}

struct Audit<'a> {
    incoming: &'a Incoming,
    role: Option<Role>,
    command: String,
}

impl<O: Operations> BotHandler<O> {
    /// A handler over `ops`; progress of rolls is sent to `notices`.
    pub fn new(
        ops: Arc<O>,
        settings: HandlerSettings,
        audit: AuditLog,
        notices: UnboundedSender<Notice>,
    ) -> Self {
        let exec_settings = ExecSettings {
            default_window: Some(settings.default_window),
            slowlog_top: settings.slowlog_top,
            allow_yellow: settings.roll_settings.allow_yellow,
        };
        BotHandler {
            executor: Executor::new(ops, exec_settings),
            settings,
            confirmations: Mutex::new(Confirmations::default()),
            audit,
            notices,
            metrics: OpsbotMetrics::default(),
        }
    }

    /// Counts commands and refused chat users in `metrics`.
    pub fn with_metrics(mut self, metrics: OpsbotMetrics) -> Self {
        self.executor = self.executor.with_metrics(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// Sets the bot's user name (known after `getMe`).
    pub fn set_bot_username(&mut self, name: Option<String>) {
        self.settings.bot_username = name;
    }

    fn record(&self, audit: &Audit<'_>, outcome: AuditOutcome, detail: Option<String>) {
        self.audit.record(&AuditRecord {
            at: Utc::now(),
            via: "telegram".to_string(),
            chat_id: Some(audit.incoming.chat_id),
            user_id: Some(audit.incoming.user_id),
            user: audit.incoming.user_name.clone(),
            role: audit.role.map(|role| role.to_string()),
            command: audit.command.clone(),
            outcome,
            detail,
        });
    }

    /// Handles one message or button press at time `now`; `new_token` makes
    /// the random token of a confirmation.
    pub async fn handle(
        &self,
        incoming: Incoming,
        now: DateTime<Utc>,
        new_token: impl FnOnce() -> String,
    ) -> Vec<Reply> {
        let span = tracing::info_span!(
            "command",
            chat_id = incoming.chat_id,
            user_id = incoming.user_id
        );
        async {
            match &incoming.kind {
                IncomingKind::Text(text) => self.handle_text(&incoming, text, now, new_token).await,
                IncomingKind::Button { callback_id, data } => {
                    self.handle_button(&incoming, callback_id, data, now).await
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn handle_text(
        &self,
        incoming: &Incoming,
        text: &str,
        now: DateTime<Utc>,
        new_token: impl FnOnce() -> String,
    ) -> Vec<Reply> {
        let role = self
            .settings
            .policy
            .role_of(incoming.chat_id, incoming.user_id);
        let command = match parse_command(text, self.settings.bot_username.as_deref()) {
            Ok(command) => command,
            Err(CommandError::NotACommand | CommandError::OtherBot) => return Vec::new(),
            Err(error) => {
                let audit = Audit {
                    incoming,
                    role,
                    command: text.chars().take(64).collect(),
                };
                if role.is_none() {
                    self.metrics.refused("invalid", RefusedReason::Unlisted);
                    self.record(&audit, AuditOutcome::Ignored, None);
                    return Vec::new();
                }
                self.metrics
                    .command("invalid", crate::metrics::CommandOutcome::Refused);
                self.record(&audit, AuditOutcome::Rejected, Some(error.to_string()));
                return vec![Reply::Text(error.to_string())];
            }
        };
        let audit = Audit {
            incoming,
            role,
            command: command.to_string(),
        };
        match self
            .settings
            .policy
            .authorize(incoming.chat_id, incoming.user_id, &command)
        {
            Decision::Ignore => {
                tracing::warn!(
                    command = command.name(),
                    "message from an unlisted chat or user ignored"
                );
                self.metrics
                    .refused(command.name(), RefusedReason::Unlisted);
                self.record(&audit, AuditOutcome::Ignored, None);
                Vec::new()
            }
            Decision::Forbidden(role) => {
                self.metrics.refused(command.name(), RefusedReason::Role);
                self.record(&audit, AuditOutcome::Forbidden, None);
                vec![Reply::Text(format!(
                    "{} needs the operator role; you are {role}",
                    command.name()
                ))]
            }
            Decision::Allowed(_) if command.needs_confirmation() => {
                self.ask_confirmation(&audit, command, now, new_token).await
            }
            Decision::Allowed(_) => self.execute(&audit, command, now).await,
        }
    }

    async fn ask_confirmation(
        &self,
        audit: &Audit<'_>,
        command: Command,
        now: DateTime<Utc>,
        new_token: impl FnOnce() -> String,
    ) -> Vec<Reply> {
        // The question shows what would run: the plan (a dry run of the same
        // command) or the roll that would continue.
        let preview = match &command {
            Command::Restart {
                target,
                allow_yellow,
                force,
                ..
            } => Some(Command::Restart {
                target: target.clone(),
                allow_yellow: *allow_yellow,
                dry_run: true,
                force: *force,
            }),
            Command::Resume => Some(Command::RestartStatus),
            _ => None,
        };
        let question = match preview {
            None => command.to_string(),
            Some(preview) => match self.executor.preview(preview, now).await {
                Ok(Outcome::RestartPlan {
                    nodes,
                    allow_yellow,
                }) => describe_plan(&nodes, allow_yellow),
                Ok(Outcome::Status(Some(state))) => format!("resume? {}", state.summary()),
                Ok(Outcome::Status(None)) => return self.failed(audit, &OpsError::NoRoll),
                Ok(_) => command.to_string(),
                Err(ExecError::Failed(error)) => return self.failed(audit, &error),
                Err(ExecError::Rejected(message)) => return vec![Reply::Text(message)],
            },
        };
        let token = new_token();
        let ttl = self.settings.confirm_ttl;
        match self.confirmations.lock() {
            Ok(mut confirmations) => confirmations.request(
                token.clone(),
                command,
                audit.incoming.chat_id,
                audit.incoming.user_id,
                now,
                ttl,
            ),
            Err(_) => {
                return self.failed(
                    audit,
                    &OpsError::Internal("confirmation lock poisoned".into()),
                );
            }
        }
        self.record(audit, AuditOutcome::ConfirmationRequested, None);
        vec![Reply::Confirm {
            text: format!(
                "{question}\n\nconfirm within {}",
                humanize_ms(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            ),
            token,
        }]
    }

    async fn handle_button(
        &self,
        incoming: &Incoming,
        callback_id: &str,
        data: &str,
        now: DateTime<Utc>,
    ) -> Vec<Reply> {
        let role = self
            .settings
            .policy
            .role_of(incoming.chat_id, incoming.user_id);
        let answer = |text: &str| Reply::ButtonAnswer {
            callback_id: callback_id.to_string(),
            text: text.to_string(),
        };
        let (confirm, token) = match data.split_once(':') {
            Some(("ok", token)) => (true, token),
            Some(("no", token)) => (false, token),
            _ => return Vec::new(),
        };
        let mut audit = Audit {
            incoming,
            role,
            command: format!("button {}", if confirm { "confirm" } else { "cancel" }),
        };
        if role.is_none() {
            self.metrics.refused("button", RefusedReason::Unlisted);
            self.record(&audit, AuditOutcome::Ignored, None);
            return Vec::new();
        }
        let result = match self.confirmations.lock() {
            Ok(mut confirmations) if confirm => {
                confirmations.confirm(token, incoming.chat_id, incoming.user_id, now)
            }
            Ok(mut confirmations) => {
                confirmations.cancel(token, incoming.chat_id, incoming.user_id)
            }
            Err(_) => Err(ConfirmError::Unknown),
        };
        let command = match result {
            Ok(command) => command,
            Err(error) => {
                self.record(
                    &audit,
                    AuditOutcome::ConfirmationRefused,
                    Some(error.to_string()),
                );
                return vec![answer(&error.to_string())];
            }
        };
        audit.command = command.to_string();
        if !confirm {
            self.record(&audit, AuditOutcome::Cancelled, None);
            return vec![
                answer("cancelled"),
                Reply::Text(format!("{command} cancelled")),
            ];
        }
        // The role may have changed since the question was asked.
        if let Decision::Forbidden(_) | Decision::Ignore =
            self.settings
                .policy
                .authorize(incoming.chat_id, incoming.user_id, &command)
        {
            self.metrics.refused(command.name(), RefusedReason::Role);
            self.record(&audit, AuditOutcome::Forbidden, None);
            return vec![answer("not allowed")];
        }
        self.record(&audit, AuditOutcome::Confirmed, None);
        let mut replies = vec![answer("confirmed")];
        replies.extend(self.execute(&audit, command, now).await);
        replies
    }

    fn failed(&self, audit: &Audit<'_>, error: &OpsError) -> Vec<Reply> {
        tracing::error!(error = %error, command = %audit.command, "command failed");
        self.record(audit, AuditOutcome::Failed, Some(error.chat_message()));
        vec![Reply::Text(error.chat_message())]
    }

    fn progress_sink(&self, chat_id: i64) -> Arc<ProgressSink> {
        let notices = self.notices.clone();
        Arc::new(move |line: &str| {
            if notices
                .send(Notice {
                    chat_id,
                    text: line.to_string(),
                })
                .is_err()
            {
                tracing::warn!("progress notice dropped: telegram layer stopped");
            }
        })
    }

    async fn execute(&self, audit: &Audit<'_>, command: Command, now: DateTime<Utc>) -> Vec<Reply> {
        let replies = match self.executor.execute(command, now).await {
            Ok(outcome) => match self.replies(outcome, audit.incoming.chat_id) {
                Ok(replies) => replies,
                Err(error) => return self.failed(audit, &error),
            },
            Err(ExecError::Rejected(message)) => {
                // Bad input, not a failure: a short reply naming the key.
                self.record(audit, AuditOutcome::Rejected, Some(message.clone()));
                return vec![Reply::Text(message)];
            }
            Err(ExecError::Failed(error)) => return self.failed(audit, &error),
        };
        self.record(audit, AuditOutcome::Ok, None);
        replies
    }

    /// Drives a claimed roll in the background, its progress posted to the
    /// chat; the reply says it started.
    fn spawn(&self, pending: PendingRoll<O::Claim>, chat_id: i64) -> Result<String, OpsError> {
        let state = pending.state().clone();
        self.executor
            .ops()
            .spawn_roll(pending.claim, self.progress_sink(chat_id))?;
        Ok(if pending.resumed {
            format!(
                "restart {} resumed at node {}",
                state.id,
                state
                    .current_node()
                    .map(|node| node.name.as_str())
                    .unwrap_or("-")
            )
        } else {
            format!(
                "restart {} started: {} node(s); progress follows here",
                state.id,
                state.nodes.len()
            )
        })
    }

    /// The chat rendering of an outcome; a claimed roll is driven in the
    /// background.
    fn replies(&self, outcome: Outcome<O::Claim>, chat_id: i64) -> Result<Vec<Reply>, OpsError> {
        Ok(match outcome {
            Outcome::Help => vec![Reply::Text(HELP.to_string())],
            Outcome::PlanUsage => vec![Reply::Text(plan_help())],
            Outcome::Plan { input, plan } => vec![
                Reply::Text(plan_summary(&plan)),
                Reply::File {
                    name: format!("shardplan-{}.txt", plan.name),
                    bytes: shardplan::report::render_plan(&input, &plan).into_bytes(),
                    caption: "full plan: tier loads, disk and findings".to_string(),
                },
            ],
            Outcome::Health(health) => vec![Reply::Text(health_text(&health))],
            Outcome::Nodes(nodes) => vec![Reply::Text(nodes_text(&nodes))],
            Outcome::Shards(rows) => vec![Reply::Text(shards_text(&rows, 200))],
            Outcome::RestartPlan {
                nodes,
                allow_yellow,
            } => {
                vec![Reply::Text(describe_plan(&nodes, allow_yellow))]
            }
            Outcome::Roll(pending) => vec![Reply::Text(self.spawn(pending, chat_id)?)],
            Outcome::Status(state) => vec![Reply::Text(
                state
                    .map(|state| state.summary())
                    .unwrap_or_else(|| "no restart recorded".to_string()),
            )],
            Outcome::AbortRequested(state) => vec![Reply::Text(format!(
                "abort requested: restart {} stops before its next node",
                state.id
            ))],
            Outcome::Slowlog { report, top } => {
                let mut replies = vec![Reply::Text(render_text(&report, 160))];
                if report.reported > 0 {
                    match render_png(&report, top) {
                        Ok(bytes) => replies.push(Reply::Photo {
                            bytes,
                            caption: "top fingerprints and latency distribution".to_string(),
                        }),
                        Err(error) => tracing::error!(error = %error, "slow-log chart failed"),
                    }
                    replies.push(Reply::File {
                        name: "slowlog.md".to_string(),
                        bytes: render_markdown(&report).into_bytes(),
                        caption: "full report".to_string(),
                    });
                }
                replies
            }
        })
    }
}

/// The chat text of a plan: one line per rule, finding and suggestion.
fn plan_summary(plan: &shardplan::Plan) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{}-*: {} primaries per index, {} replica(s); shards of {}",
        plan.name, plan.primaries, plan.replicas, plan.shard_size
    );
    if let Some(docs) = plan.docs_per_shard {
        let _ = write!(out, ", {docs} docs");
    }
    if let Some(target) = plan.shrink_to {
        let _ = write!(out, "; shrink to {target} in warm");
    }
    out.push_str("\nrules:");
    for step in &plan.rules {
        let name = serde_json::to_value(step.rule)
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = write!(out, "\n- {name} {}: {}", step.value, step.reason);
    }
    for load in &plan.tiers {
        let _ = write!(
            out,
            "\n{} x{}: {} shards/node, disk {:.1}%",
            load.tier,
            load.nodes,
            load.shards_per_node,
            load.disk_fraction * 100.0
        );
    }
    if plan.findings.is_empty() {
        out.push_str("\nno findings");
    } else {
        out.push_str("\nfindings:");
        for finding in &plan.findings {
            let _ = write!(
                out,
                "\n- {} {}: {}",
                finding.severity, finding.code, finding.message
            );
        }
    }
    if !plan.suggestions.is_empty() {
        out.push_str("\nnode counts without the LCM explosion:");
        for suggestion in &plan.suggestions {
            let _ = write!(
                out,
                "\n- hot {} / warm {} / cold {}: {} primaries of {}",
                suggestion.hot_nodes,
                suggestion.warm_nodes,
                suggestion.cold_nodes,
                suggestion.primaries,
                suggestion.shard_size
            );
        }
    }
    out
}
