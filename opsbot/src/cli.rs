//! The command line: `opsbot health|nodes|shards|restart|status|resume|abort|slowlog|bot`.
//!
//! Only argument definitions and glue: the arguments become the same
//! [`Command`] values the bot parses and run through the same path
//! (`opsbot::execute`); this module renders the outcome for a shell (text
//! or JSON on stdout) and drives a roll in the foreground. Errors are anyhow
//! with context here, at the binary edge.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use esync_common::shutdown::cancel_on_signal;
use esync_common::telemetry::LogFormat;
use opsbot::audit::{AuditLog, AuditOutcome, AuditRecord};
use opsbot::cluster::Target;
use opsbot::command::{Command, SlowlogRequest};
use opsbot::config::{Config, Secrets};
use opsbot::execute::{ExecSettings, Executor, Outcome, PendingRoll};
use opsbot::format::{describe_plan, health_text, nodes_text, shards_text};
use opsbot::metrics::OpsbotMetrics;
use opsbot::ops::{ClaimedRoll, Engine, Operations};
use opsbot::roll::{RollState, RollStatus};
use opsbot::slowlog::chart::render_png;
use opsbot::slowlog::digest::{GroupBy, parse_window};
use opsbot::slowlog::parse::SlowLogKind;
use opsbot::slowlog::report::{ReportFormat, render};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Operations for Elasticsearch clusters: rolling restarts, slow-log reports
/// and cluster status, from the shell or a Telegram chat.
#[derive(Debug, Parser)]
#[command(name = "opsbot", version)]
pub struct Args {
    /// YAML config file (see README for every field and its default).
    #[arg(long, short, global = true, env = "OPSBOT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "OPSBOT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Cluster health.
    Health {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Nodes, roles, elected master, uptime.
    Nodes {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shards, of one index or pattern or all.
    Shards {
        /// Index or pattern.
        index: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rolling restart of one node or all, data nodes first, elected master last.
    Restart {
        /// Node name, or `all`.
        target: String,
        /// Accept a settled yellow where green is required (no shard moving
        /// for `restart.settled_polls` polls; never stopping a node that holds
        /// the only started copy of a shard).
        #[arg(long)]
        allow_yellow: bool,
        /// Print the plan and exit.
        #[arg(long)]
        dry_run: bool,
        /// Start even though an earlier roll is unfinished (its state is
        /// replaced); never while another process drives a roll.
        #[arg(long)]
        force: bool,
    },
    /// Progress of the current or last roll.
    Status {
        /// Print the whole state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Continue a failed or aborted roll with the node where it stopped, or
    /// one left running by an opsbot that died (allocation is put back).
    Resume,
    /// Stop the running roll before its next node.
    Abort,
    /// Slow-log report: fingerprints ranked by total time, by request or by shard.
    Slowlog {
        /// Slow-log files (plain or .gz); default `slowlog.paths`, else `slowlog.index`.
        files: Vec<PathBuf>,
        /// Only the last window, e.g. `1h`, `7d`.
        #[arg(long, conflicts_with = "since")]
        window: Option<String>,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// Only indices matching this pattern (`*` wildcards); repeatable.
        #[arg(long)]
        index: Vec<String>,
        /// Only this kind; repeatable.
        #[arg(long, value_enum)]
        kind: Vec<KindArg>,
        /// Fingerprints shown (default `slowlog.top`).
        #[arg(long)]
        top: Option<usize>,
        /// Count requests (the shard lines of one search grouped; a
        /// request's time is its slowest shard's) or shard executions.
        #[arg(long, value_enum, default_value = "request")]
        by: GroupBy,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Write the report here instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also write the PNG chart here.
        #[arg(long)]
        chart: Option<PathBuf>,
    },
    /// Run the Telegram bot (token from OPSBOT_TELEGRAM_TOKEN).
    Bot,
}

/// Slow-log kinds on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// Search, query phase.
    Query,
    /// Search, fetch phase.
    Fetch,
    /// Indexing.
    Index,
}

impl From<KindArg> for SlowLogKind {
    fn from(kind: KindArg) -> SlowLogKind {
        match kind {
            KindArg::Query => SlowLogKind::Query,
            KindArg::Fetch => SlowLogKind::Fetch,
            KindArg::Index => SlowLogKind::Index,
        }
    }
}

/// Loads and validates the config (defaults when no file is given).
pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    let config = match path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.validate()?;
    Ok(config)
}

/// Exit code of a finished roll: 0 done, 1 aborted; a failure is an error.
fn roll_exit(state: &RollState) -> Result<i32> {
    match state.status {
        RollStatus::Done => Ok(0),
        RollStatus::Aborted => Ok(1),
        _ => bail!("{}", state.summary()),
    }
}

fn cli_audit(audit: &AuditLog, command: String, outcome: AuditOutcome, detail: Option<String>) {
    audit.record(&AuditRecord {
        at: Utc::now(),
        via: "cli".to_string(),
        chat_id: None,
        user_id: None,
        user: std::env::var("USER").ok(),
        role: None,
        command,
        outcome,
        detail,
    });
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("failed to encode json")?
    );
    Ok(())
}

/// How the shell wants an answer, beside the command itself.
#[derive(Debug, Default)]
struct Rendering {
    /// JSON instead of text.
    json: bool,
    /// Slow-log report format.
    format: Option<ReportFormat>,
    /// Write the slow-log report here instead of stdout.
    output: Option<PathBuf>,
    /// Also write the slow-log chart here.
    chart: Option<PathBuf>,
}

/// The command a subcommand asks for, and how to render its outcome.
fn command_of(command: CliCommand) -> Result<(Command, Rendering)> {
    let json = |json| Rendering {
        json,
        ..Rendering::default()
    };
    Ok(match command {
        CliCommand::Health { json: as_json } => (Command::Health, json(as_json)),
        CliCommand::Nodes { json: as_json } => (Command::Nodes, json(as_json)),
        CliCommand::Shards {
            index,
            json: as_json,
        } => (Command::Shards { index }, json(as_json)),
        CliCommand::Restart {
            target,
            allow_yellow,
            dry_run,
            force,
        } => (
            Command::Restart {
                target: Target::parse(&target),
                allow_yellow,
                dry_run,
                force,
            },
            Rendering::default(),
        ),
        CliCommand::Status { json: as_json } => (Command::RestartStatus, json(as_json)),
        CliCommand::Resume => (Command::Resume, Rendering::default()),
        CliCommand::Abort => (Command::Abort, Rendering::default()),
        CliCommand::Slowlog {
            files,
            window,
            since,
            until,
            index,
            kind,
            top,
            by,
            format,
            output,
            chart,
        } => {
            let window = match window {
                Some(text) => {
                    let Some(window) = parse_window(&text) else {
                        bail!("invalid --window {text:?}: use e.g. 15m, 1h, 7d");
                    };
                    chrono::Duration::from_std(window).context("window too large")?;
                    Some(window)
                }
                None => None,
            };
            let request = SlowlogRequest {
                window,
                since,
                until,
                index,
                kinds: kind.into_iter().map(SlowLogKind::from).collect(),
                files,
                top,
                by,
            };
            let rendering = Rendering {
                format: Some(format),
                output,
                chart,
                ..Rendering::default()
            };
            (Command::Slowlog(request), rendering)
        }
        // `run` starts the bot before it asks for a command.
        CliCommand::Bot => bail!("the bot is not a command"),
    })
}

/// What failed, for the error message of a command.
fn failure_context(command: &Command, cluster_url: &str) -> String {
    match command {
        Command::Health => format!("failed to get health of {cluster_url}"),
        Command::Nodes => format!("failed to list nodes of {cluster_url}"),
        Command::Shards { .. } => format!("failed to list shards of {cluster_url}"),
        Command::Restart { dry_run: true, .. } => "failed to plan the restart".to_string(),
        Command::Restart { .. } => "cannot start the restart".to_string(),
        Command::RestartStatus => "failed to read the roll state".to_string(),
        Command::Resume => "cannot resume".to_string(),
        Command::Abort => "cannot abort".to_string(),
        Command::Slowlog(_) => "failed to build the slow-log report".to_string(),
        Command::Plan { .. } | Command::Help => format!("{command} failed"),
    }
}

/// The audit label of a command that changes a cluster (the CLI audits
/// only those): `restart all`, `resume`, `abort`.
fn audit_label(command: &Command) -> Option<String> {
    match command {
        Command::Restart {
            target,
            dry_run: false,
            ..
        } => Some(format!("restart {target}")),
        Command::Resume | Command::Abort => Some(command.name().to_string()),
        _ => None,
    }
}

/// Runs one subcommand; returns the exit code.
pub async fn run(args: Args, config: Config, secrets: Secrets) -> Result<i32> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let audit = AuditLog::new(config.audit.path.clone());
    let cluster_url = config.cluster.url.clone();
    let settings = ExecSettings {
        // Without --window or --since, the whole log.
        default_window: None,
        slowlog_top: config.slowlog.top,
        allow_yellow: config.restart.allow_yellow,
    };
    let metrics_listen = config.metrics.listen;
    let mut registry = Registry::default();
    let metrics = OpsbotMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    let engine = Arc::new(
        Engine::new(config, &secrets, shutdown.clone())
            .context("failed to set up the cluster client")?
            .with_metrics(metrics.clone()),
    );
    if let CliCommand::Bot = args.command {
        let token = secrets.require_telegram_token()?.clone();
        if let Some(address) = metrics_listen {
            opsbot::metrics_http::serve(address, registry.clone(), shutdown.clone()).await?;
        }
        opsbot::telegram::run_bot(engine.clone(), &token, shutdown.clone())
            .await
            .context("telegram bot stopped")?;
        engine.wait_background().await;
        return Ok(0);
    }
    let (command, rendering) = command_of(args.command)?;
    let label = audit_label(&command);
    let context = failure_context(&command, &cluster_url);
    let executor = Executor::new(engine, settings).with_metrics(metrics);
    let outcome = match executor.execute(command, Utc::now()).await {
        Ok(outcome) => outcome,
        Err(error) => {
            if let Some(label) = label {
                cli_audit(&audit, label, AuditOutcome::Failed, Some(error.to_string()));
            }
            return Err(error).context(context);
        }
    };
    match outcome {
        Outcome::Roll(pending) => {
            let label = label.unwrap_or_default();
            serve_roll_metrics(metrics_listen, registry, &shutdown).await;
            return run_roll(&executor, pending, &audit, label, &shutdown).await;
        }
        Outcome::AbortRequested(state) => {
            cli_audit(
                &audit,
                label.unwrap_or_default(),
                AuditOutcome::Ok,
                Some(state.id.clone()),
            );
            println!(
                "abort requested: roll {} stops before its next node",
                state.id
            );
        }
        other => print_outcome(other, rendering)?,
    }
    Ok(0)
}

/// Serves `/metrics` while a roll runs in the foreground, when
/// `metrics.listen` is set. The roll matters more than its metrics: an
/// address in use (a bot on the same host) is a warning, not an error.
async fn serve_roll_metrics(
    listen: Option<SocketAddr>,
    registry: Arc<Registry>,
    shutdown: &CancellationToken,
) {
    let Some(address) = listen else {
        return;
    };
    if let Err(error) = opsbot::metrics_http::serve(address, registry, shutdown.child_token()).await
    {
        tracing::warn!(error = %error, "roll runs without a metrics endpoint");
    }
}

/// Drives a claimed roll in the foreground, progress on stdout, audited
/// before and after.
async fn run_roll(
    executor: &Executor<Engine>,
    pending: PendingRoll<ClaimedRoll>,
    audit: &AuditLog,
    label: String,
    shutdown: &CancellationToken,
) -> Result<i32> {
    cli_audit(
        audit,
        label.clone(),
        AuditOutcome::Confirmed,
        Some(pending.state().id.clone()),
    );
    if !pending.resumed {
        let state = pending.state();
        println!(
            "{}",
            describe_plan(&state.nodes, state.settings.allow_yellow)
        );
    }
    let progress = |line: &str| println!("{line}");
    let state = executor
        .ops()
        .run_roll(pending.claim, &progress, shutdown)
        .await
        .context("restart stopped")?;
    let outcome = if state.status == RollStatus::Done {
        AuditOutcome::Ok
    } else {
        AuditOutcome::Failed
    };
    cli_audit(audit, label, outcome, Some(state.summary()));
    roll_exit(&state)
}

/// Prints an outcome for a shell.
fn print_outcome(outcome: Outcome<ClaimedRoll>, rendering: Rendering) -> Result<()> {
    match outcome {
        Outcome::Health(health) if rendering.json => print_json(&health)?,
        Outcome::Health(health) => println!("{}", health_text(&health)),
        Outcome::Nodes(nodes) if rendering.json => print_json(&nodes)?,
        Outcome::Nodes(nodes) => println!("{}", nodes_text(&nodes)),
        Outcome::Shards(shards) if rendering.json => print_json(&shards)?,
        Outcome::Shards(shards) => println!("{}", shards_text(&shards, usize::MAX)),
        Outcome::RestartPlan {
            nodes,
            allow_yellow,
        } => {
            println!("{}", describe_plan(&nodes, allow_yellow))
        }
        Outcome::Status(Some(state)) if rendering.json => print_json(&state)?,
        Outcome::Status(Some(state)) => println!("{}", state.summary()),
        Outcome::Status(None) => println!("no restart recorded"),
        Outcome::Slowlog { report, top } => {
            for example in &report.malformed_examples {
                tracing::warn!(line = %example, "skipped malformed slow-log line");
            }
            let text = render(&report, rendering.format.unwrap_or(ReportFormat::Text));
            match rendering.output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("failed to write {}", path.display()))?,
                None => println!("{text}"),
            }
            if let Some(path) = rendering.chart {
                let png = render_png(&report, top).context("failed to draw the chart")?;
                std::fs::write(&path, png)
                    .with_context(|| format!("failed to write {}", path.display()))?;
            }
        }
        // The CLI builds none of these; a roll and an abort are handled by
        // `run`.
        Outcome::Help
        | Outcome::PlanUsage
        | Outcome::Plan { .. }
        | Outcome::Roll(_)
        | Outcome::AbortRequested(_) => {}
    }
    Ok(())
}
