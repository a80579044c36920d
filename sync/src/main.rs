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
    /// Manage each mapping's index: versioned indexes behind an alias,
    /// rebuilt without downtime (README "Index lifecycle").
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Create `<index>-v1` from the mapping's index_definition behind the
    /// alias `<index>` (write index); does nothing where the alias exists.
    Create(IndexSelection),
    /// Show per mapping the live index, the one being built, older ones.
    Status(IndexSelection),
    /// Build the next index from the current definition while the daemons
    /// write to both, backfill, verify, and swap the alias atomically.
    Rebuild {
        #[command(flatten)]
        target: OneMapping,
        /// Continue a rebuild that was interrupted.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        fill: FillArgs,
    },
    /// Point the alias back at the previous index, after repairing what
    /// changed since it was live.
    Rollback {
        #[command(flatten)]
        target: OneMapping,
        #[command(flatten)]
        fill: FillArgs,
    },
    /// Delete older indexes no alias points at, keeping the newest ones.
    Prune {
        #[command(flatten)]
        selection: IndexSelection,
        /// Older indexes to keep for rollbacks.
        #[arg(long, default_value_t = 1)]
        keep: usize,
    },
    /// Stop a rebuild: retract `<index>.next` and delete the index being built.
    Abort(OneMapping),
}

#[derive(Debug, clap::Args)]
struct IndexSelection {
    #[arg(long, short, env = "ESYNC_CONFIG", default_value = "esync.yaml")]
    config: PathBuf,
    /// Mapping, by name; repeat for several (default: every mapping with an index_definition).
    #[arg(long = "mapping", short = 'm')]
    mappings: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct OneMapping {
    #[arg(long, short, env = "ESYNC_CONFIG", default_value = "esync.yaml")]
    config: PathBuf,
    /// The mapping, by name.
    #[arg(long, short = 'm')]
    mapping: String,
}

#[derive(Debug, clap::Args)]
struct FillArgs {
    /// Rows per second at most (default: unlimited, still adaptive).
    #[arg(long)]
    max_rate: Option<f64>,
    /// Chunks worked on at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    parallel: u64,
    /// Rows per keyset page and per `_bulk` request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    batch_size: u64,
    /// Ids per chunk for integer ids, rows per chunk for string ids.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
    /// Directory of the backfill checkpoint (`esync-rebuild-<index>.json`).
    #[arg(long, default_value = ".")]
    checkpoint_dir: PathBuf,
    /// Table whose id column is walked, for a mapping with a custom query.
    #[arg(long)]
    table: Option<String>,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = esync::recover::progress::ProgressMode::Auto)]
    progress: esync::recover::progress::ProgressMode,
    /// Verification passes (each repairing what it finds) before giving up.
    #[arg(long, default_value_t = 3)]
    verify_passes: u32,
    /// Time in-flight pages get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
}

impl FillArgs {
    fn settings(&self) -> esync::lifecycle::commands::FillSettings {
        esync::lifecycle::commands::FillSettings {
            batch_size: self.batch_size as usize,
            chunk_size: self.chunk_size,
            parallel: self.parallel as usize,
            max_rate: self.max_rate.filter(|rate| *rate > 0.0),
            checkpoint_dir: self.checkpoint_dir.clone(),
            table: self.table.clone(),
            progress: self.progress,
            verify_passes: self.verify_passes,
        }
    }
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
            Command::Index { command } => index(command).await,
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

async fn index(command: IndexCommand) -> anyhow::Result<ExitCode> {
    use esync::lifecycle::commands::{self, RebuildOutcome};
    let out = &mut std::io::stdout();
    let signals = |grace| {
        let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
        esync::recover::run::spawn_signal_handler(stop.clone(), abort.clone(), grace)
            .map(|()| (stop, abort))
    };
    let outcome = match command {
        IndexCommand::Create(selection) => {
            let loaded = LoadedConfig::from_file(&selection.config)?;
            commands::create(&loaded, &selection.mappings, out).await?;
            return Ok(ExitCode::SUCCESS);
        }
        IndexCommand::Status(selection) => {
            let loaded = LoadedConfig::from_file(&selection.config)?;
            commands::status(&loaded, &selection.mappings, out).await?;
            return Ok(ExitCode::SUCCESS);
        }
        IndexCommand::Prune { selection, keep } => {
            let loaded = LoadedConfig::from_file(&selection.config)?;
            commands::prune(&loaded, &selection.mappings, keep, out).await?;
            return Ok(ExitCode::SUCCESS);
        }
        IndexCommand::Abort(target) => {
            let loaded = LoadedConfig::from_file(&target.config)?;
            commands::abort(&loaded, &target.mapping, out).await?;
            return Ok(ExitCode::SUCCESS);
        }
        IndexCommand::Rebuild {
            target,
            resume,
            fill,
        } => {
            let loaded = LoadedConfig::from_file(&target.config)?;
            let (stop, abort) = signals(fill.shutdown_grace)?;
            let settings = fill.settings();
            commands::rebuild(
                &loaded,
                &target.mapping,
                resume,
                &settings,
                &stop,
                &abort,
                out,
            )
            .await?
        }
        IndexCommand::Rollback { target, fill } => {
            let loaded = LoadedConfig::from_file(&target.config)?;
            let (stop, abort) = signals(fill.shutdown_grace)?;
            commands::rollback(
                &loaded,
                &target.mapping,
                &fill.settings(),
                &stop,
                &abort,
                out,
            )
            .await?
        }
    };
    Ok(match outcome {
        RebuildOutcome::Swapped { .. } => ExitCode::SUCCESS,
        RebuildOutcome::Interrupted => {
            println!(
                "interrupted; continue with `esync index rebuild --resume` (the same options)"
            );
            ExitCode::from(2)
        }
    })
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
