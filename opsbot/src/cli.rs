//! The command line: `opsbot health|nodes|shards|restart|status|resume|abort|slowlog|bot`.
//!
//! Only argument definitions and glue: every operation is in the library
//! (`opsbot::ops`, `opsbot::slowlog`, `opsbot::telegram`). Errors are anyhow
//! with context here, at the binary edge.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use opsbot::audit::{AuditLog, AuditOutcome, AuditRecord};
use opsbot::config::{Config, Secrets};
use opsbot::format::{health_text, nodes_text, shards_text};
use opsbot::ops::Engine;
use opsbot::roll::{RollState, RollStatus, Target, describe_plan};
use opsbot::slowlog::chart::render_png;
use opsbot::slowlog::digest::{DigestFilter, parse_window};
use opsbot::slowlog::parse::SlowLogKind;
use opsbot::slowlog::report::{ReportFormat, render};
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
        /// Accept yellow where green is required.
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
    /// Slow-log report: fingerprints ranked by total time.
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

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("failed to encode json")?
    );
    Ok(())
}

/// Runs one subcommand; returns the exit code.
pub async fn run(args: Args, config: Config, secrets: Secrets) -> Result<i32> {
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    let audit = AuditLog::new(config.audit.path.clone());
    let engine = Engine::new(config, &secrets, shutdown.clone())
        .context("failed to set up the cluster client")?;
    let cluster_url = engine.config().cluster.url.clone();
    match args.command {
        CliCommand::Health { json } => {
            let health = engine
                .es()
                .health()
                .await
                .with_context(|| format!("failed to get health of {cluster_url}"))?;
            if json {
                print_json(&health)?;
            } else {
                println!("{}", health_text(&health));
            }
        }
        CliCommand::Nodes { json } => {
            let nodes = engine
                .es()
                .nodes()
                .await
                .with_context(|| format!("failed to list nodes of {cluster_url}"))?;
            if json {
                print_json(&nodes)?;
            } else {
                println!("{}", nodes_text(&nodes));
            }
        }
        CliCommand::Shards { index, json } => {
            let shards = engine
                .es()
                .shards(index.as_deref())
                .await
                .with_context(|| format!("failed to list shards of {cluster_url}"))?;
            if json {
                print_json(&shards)?;
            } else {
                println!("{}", shards_text(&shards, usize::MAX));
            }
        }
        CliCommand::Restart {
            target,
            allow_yellow,
            dry_run,
            force,
        } => {
            let target = Target::parse(&target);
            let label = format!("restart {target}");
            if dry_run {
                let plan = engine
                    .plan(&target)
                    .await
                    .context("failed to plan the restart")?;
                let settings = engine.config().restart.roll_settings(allow_yellow);
                println!("{}", describe_plan(&plan, &settings));
                return Ok(0);
            }
            let claimed = match engine.new_roll(&target, allow_yellow, force).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    cli_audit(&audit, label, AuditOutcome::Failed, Some(error.to_string()));
                    return Err(error).context("cannot start the restart");
                }
            };
            cli_audit(
                &audit,
                label.clone(),
                AuditOutcome::Confirmed,
                Some(claimed.state.id.clone()),
            );
            println!(
                "{}",
                describe_plan(&claimed.state.nodes, &claimed.state.settings)
            );
            let progress: Arc<opsbot::driver::ProgressSink> =
                Arc::new(|line: &str| println!("{line}"));
            let state = engine
                .run_roll(claimed, progress.as_ref(), &shutdown)
                .await
                .context("restart stopped")?;
            let outcome = if state.status == RollStatus::Done {
                AuditOutcome::Ok
            } else {
                AuditOutcome::Failed
            };
            cli_audit(&audit, label, outcome, Some(state.summary()));
            return roll_exit(&state);
        }
        CliCommand::Status { json } => {
            match engine.status().context("failed to read the roll state")? {
                Some(state) if json => print_json(&state)?,
                Some(state) => println!("{}", state.summary()),
                None => println!("no restart recorded"),
            }
        }
        CliCommand::Resume => {
            let claimed = match engine.resumable_roll() {
                Ok(claimed) => claimed,
                Err(error) => {
                    cli_audit(
                        &audit,
                        "resume".into(),
                        AuditOutcome::Failed,
                        Some(error.to_string()),
                    );
                    return Err(error).context("cannot resume");
                }
            };
            cli_audit(
                &audit,
                "resume".into(),
                AuditOutcome::Confirmed,
                Some(claimed.state.id.clone()),
            );
            let progress: Arc<opsbot::driver::ProgressSink> =
                Arc::new(|line: &str| println!("{line}"));
            let state = engine
                .run_roll(claimed, progress.as_ref(), &shutdown)
                .await
                .context("restart stopped")?;
            let outcome = if state.status == RollStatus::Done {
                AuditOutcome::Ok
            } else {
                AuditOutcome::Failed
            };
            cli_audit(&audit, "resume".into(), outcome, Some(state.summary()));
            return roll_exit(&state);
        }
        CliCommand::Abort => {
            let state = match engine.abort() {
                Ok(state) => state,
                Err(error) => {
                    cli_audit(
                        &audit,
                        "abort".into(),
                        AuditOutcome::Failed,
                        Some(error.to_string()),
                    );
                    return Err(error).context("cannot abort");
                }
            };
            cli_audit(
                &audit,
                "abort".into(),
                AuditOutcome::Ok,
                Some(state.id.clone()),
            );
            println!(
                "abort requested: roll {} stops before its next node",
                state.id
            );
        }
        CliCommand::Slowlog {
            files,
            window,
            since,
            until,
            index,
            kind,
            top,
            format,
            output,
            chart,
        } => {
            let since = match window {
                Some(text) => {
                    let Some(window) = parse_window(&text) else {
                        bail!("invalid --window {text:?}: use e.g. 15m, 1h, 7d");
                    };
                    Some(
                        Utc::now()
                            - chrono::Duration::from_std(window).context("window too large")?,
                    )
                }
                None => since,
            };
            let filter = DigestFilter {
                since,
                until,
                index_patterns: index,
                kinds: kind.into_iter().map(SlowLogKind::from).collect(),
            };
            let top = top.unwrap_or(engine.config().slowlog.top);
            let report = engine
                .slowlog_report(files, filter, top)
                .await
                .context("failed to build the slow-log report")?;
            for example in &report.malformed_examples {
                tracing::warn!(line = %example, "skipped malformed slow-log line");
            }
            let text = render(&report, format);
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("failed to write {}", path.display()))?,
                None => println!("{text}"),
            }
            if let Some(path) = chart {
                let png = render_png(&report, top).context("failed to draw the chart")?;
                std::fs::write(&path, png)
                    .with_context(|| format!("failed to write {}", path.display()))?;
            }
        }
        CliCommand::Bot => {
            let token = secrets.require_telegram_token()?.clone();
            let engine = Arc::new(engine);
            opsbot::telegram::run_bot(engine.clone(), &token, shutdown.clone())
                .await
                .context("telegram bot stopped")?;
            engine.wait_background().await;
        }
    }
    Ok(0)
}
