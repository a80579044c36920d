//! The `esync` binary: parse arguments, load config, set up telemetry, run.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use esync::check::{Level, run_checks};
use esync::config::LoadedConfig;
use esync::daemon::{self, Services};
use esync::metrics::Metrics;
use esync_common::shutdown::cancel_on_signal;
use esync_common::telemetry::{self, LogDefaults, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Keeps Elasticsearch in step with a database, from changed ids in Kafka.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ESYNC_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sync daemon until SIGTERM or SIGINT.
    Run {
        /// Configuration file.
        #[arg(long, short, env = "ESYNC_CONFIG", default_value = "esync.yaml")]
        config: PathBuf,
    },
    /// Validate the configuration and test every connection and query.
    Check {
        /// Configuration file.
        #[arg(long, short, env = "ESYNC_CONFIG", default_value = "esync.yaml")]
        config: PathBuf,
    },
    /// Publish changed ids to Kafka (section publish:) until SIGTERM or SIGINT.
    Publish {
        /// Configuration file.
        #[arg(long, short, env = "ESYNC_CONFIG", default_value = "esync.yaml")]
        config: PathBuf,
        /// Relay the outbox table instead of polling timestamp columns.
        #[arg(long)]
        outbox: bool,
    },
    /// Inspect the dead-letter topic and replay dead-lettered ids.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Count dead letters by kind, reason and mapping, with samples and times.
    List {
        #[command(flatten)]
        selection: DlqSelection,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Re-publish dead-lettered ids to their mapping's first topic (rows are
    /// re-read, so a replay is harmless); undecodable messages are skipped.
    Replay {
        #[command(flatten)]
        selection: DlqSelection,
        /// Print what would be replayed, produce nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters a `dlq` command works on.
#[derive(Debug, clap::Args)]
struct DlqSelection {
    /// Configuration file.
    #[arg(long, short, env = "ESYNC_CONFIG", default_value = "esync.yaml")]
    config: PathBuf,
    /// Only letters with this esync.reason (e.g. unmatched_id).
    #[arg(long)]
    reason: Option<String>,
    /// Only letters of this mapping.
    #[arg(long)]
    mapping: Option<String>,
    /// Only letters dead-lettered since: a duration ago (2h, 30m) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// A table for people.
    Text,
    /// One JSON document.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, LogDefaults::INFO);
    esync_common::main_loop::run_async("esync", async {
        match cli.command {
            Command::Run { config } => run(config).await.map(|()| ExitCode::SUCCESS),
            Command::Check { config } => check(config).await,
            Command::Publish { config, outbox } => {
                publish(config, outbox).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Dlq { command } => dlq(command).await.map(|()| ExitCode::SUCCESS),
        }
    })
}

async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let loaded = LoadedConfig::from_file(&config_path)?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let services = Services::connect(&loaded, metrics)
        .await
        .context("cannot start")?;
    services
        .health()
        .await
        .map_err(|problems| anyhow::anyhow!("cannot start: {problems}"))?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let server = match loaded.config.metrics.listen {
        Some(address) => Some(
            esync::http::serve(
                address,
                Arc::new(registry),
                services.clone(),
                shutdown.clone(),
            )
            .await
            .with_context(|| format!("cannot serve metrics on {address}"))?,
        ),
        None => None,
    };
    let result = daemon::run(&loaded.config, services, shutdown.clone()).await;
    // after a failure too: the endpoint must not keep the process alive
    shutdown.cancel();
    if let Some(server) = server {
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
    Ok(result?)
}

async fn publish(config_path: PathBuf, outbox: bool) -> anyhow::Result<()> {
    let loaded = LoadedConfig::from_file(&config_path)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let mode = if outbox {
        esync::publish::Mode::Outbox
    } else {
        esync::publish::Mode::Poll
    };
    esync::publish::run(&loaded, mode, shutdown)
        .await
        .context("publish")
}

async fn check(config_path: PathBuf) -> anyhow::Result<ExitCode> {
    let loaded = LoadedConfig::from_file(&config_path)?;
    let findings = run_checks(&loaded).await;
    for finding in &findings {
        println!("{finding}");
    }
    let failures = findings
        .iter()
        .filter(|finding| finding.level == Level::Failure)
        .count();
    if failures > 0 {
        println!("{failures} check(s) failed");
        return Ok(ExitCode::from(1));
    }
    println!("all checks passed");
    Ok(ExitCode::SUCCESS)
}

async fn dlq(command: DlqCommand) -> anyhow::Result<()> {
    use esync::dlq_command;
    match command {
        DlqCommand::List { selection, format } => {
            let (loaded, filter) = dlq_selection(&selection)?;
            let summary = dlq_command::list(&loaded.config, filter).await?;
            match format {
                OutputFormat::Text => print!("{}", summary.to_table()),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            }
        }
        DlqCommand::Replay { selection, dry_run } => {
            let (loaded, filter) = dlq_selection(&selection)?;
            let plan = dlq_command::replay(&loaded.config, filter, dry_run).await?;
            if dry_run {
                for (topic, replays) in &plan.by_topic {
                    for replay in replays {
                        println!(
                            "would replay id {} of mapping {} to topic {topic}",
                            replay.id, replay.mapping
                        );
                    }
                }
            }
            print!("{}", plan.report(dry_run));
        }
    }
    Ok(())
}

fn dlq_selection(selection: &DlqSelection) -> anyhow::Result<(LoadedConfig, esync::dlq::Filter)> {
    let loaded = LoadedConfig::from_file(&selection.config)?;
    if let Some(mapping) = &selection.mapping
        && !loaded
            .config
            .mappings
            .iter()
            .any(|known| known.display_name() == mapping)
    {
        // still allowed: letters of a mapping since removed can be listed
        tracing::warn!(mapping, "no mapping of that name in the config");
    }
    let since = selection
        .since
        .as_deref()
        .map(|text| esync::dlq::parse_since(text, chrono::Utc::now()))
        .transpose()
        .map_err(|message| anyhow::anyhow!("--since: {message}"))?;
    let filter = esync::dlq::Filter {
        reason: selection.reason.clone(),
        mapping: selection.mapping.clone(),
        since,
    };
    Ok((loaded, filter))
}
