//! The `esync-recover` binary: parse arguments, load the config, set up
//! telemetry, connect, call the engine, map the result to an exit code
//! (0 ok, 1 differences found by `verify`, 2 error, interrupted, or a `ctl`
//! that found no such run).

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use esync::config::LoadedConfig;
use esync_common::telemetry::{self, LogDefaults, LogFormat};
use esync_recover::connect::Connected;
use esync_recover::control::Command as CtlCommand;
use esync_recover::ctl::{RunLocation, operator_name};
use esync_recover::lease::{LeaseSettings, default_worker_id};
use esync_recover::plan::RangeRequest;
use esync_recover::progress::ProgressMode;
use esync_recover::run::{CheckpointPlace, RunOutcome, RunSettings, spawn_signal_handler};
use esync_recover::verify::{FixMode, OutputFormat, VerifySettings};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Backfill Elasticsearch from the database by id range, and verify the
/// index against the table.
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
    /// Re-index id ranges through the versioned writer, resumably.
    Run(Box<RunArgs>),
    /// Compare the table with the index range by range; exit 1 on differences.
    Verify(VerifyArgs),
    /// Change a running run: `rate N` (0 pauses), `rate unlimited`, `pause`,
    /// `resume`, or show it: `status`. Give the options the run was started
    /// with (--run-name, --checkpoint..., --coordinate ...).
    Ctl(CtlArgs),
}

#[derive(Debug, Args)]
struct RangeArgs {
    /// Configuration file (the daemon's `esync.yaml`).
    #[arg(long, short, env = "ESYNC_CONFIG", default_value = "esync.yaml")]
    config: PathBuf,
    /// Mapping to cover, by name; repeat for several (default: all).
    #[arg(long = "mapping", short = 'm')]
    mappings: Vec<String>,
    /// First id, inclusive (default: the table's smallest).
    #[arg(long)]
    from: Option<String>,
    /// Last id, inclusive (default: the table's largest).
    #[arg(long)]
    to: Option<String>,
    /// Ids per chunk for integer ids, rows per chunk for string ids.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
    /// Rows per keyset page and per `_bulk`/`_mget` request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    batch_size: u64,
    /// Chunks worked on at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    parallel: u64,
    /// Table whose id column is walked, for a mapping with a custom query.
    #[arg(long)]
    table: Option<String>,
}

impl RangeArgs {
    fn range_request(&self) -> RangeRequest {
        RangeRequest {
            mappings: self.mappings.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            chunk_size: self.chunk_size,
            table: self.table.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckpointStoreKind {
    /// A JSON file (`--checkpoint`).
    File,
    /// A table in the source database (`--checkpoint-table`).
    Db,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Coordinate {
    /// This process alone, with a checkpoint.
    None,
    /// Chunk leases in the source database, shared by many processes.
    Db,
}

/// Where a run keeps its state: `run` and `ctl` name a run the same way.
#[derive(Debug, Args)]
struct RunLocationArgs {
    /// Name of this recovery (checkpoint row, lease rows, control record).
    #[arg(long, default_value = "recover")]
    run_name: String,
    /// Where finished chunks are recorded.
    #[arg(long, value_enum, default_value_t = CheckpointStoreKind::File)]
    checkpoint_store: CheckpointStoreKind,
    /// Checkpoint file (default: `esync-recover-<run name>.json`).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Checkpoint table in the source database (`--checkpoint-store db`).
    #[arg(long, default_value = "esync_recover_checkpoints")]
    checkpoint_table: String,
    /// Share the run with other processes through leases in the database.
    #[arg(long, value_enum, default_value_t = Coordinate::None)]
    coordinate: Coordinate,
    /// Prefix of the lease tables (`<prefix>_runs`, `<prefix>_chunks`,
    /// `<prefix>_control`).
    #[arg(long, default_value = "esync_recover")]
    lease_table_prefix: String,
}

impl RunLocationArgs {
    fn location(&self) -> RunLocation {
        let checkpoint = match self.checkpoint_store {
            CheckpointStoreKind::File => {
                CheckpointPlace::File(self.checkpoint.clone().unwrap_or_else(|| {
                    PathBuf::from(format!("esync-recover-{}.json", self.run_name))
                }))
            }
            CheckpointStoreKind::Db => CheckpointPlace::Table(self.checkpoint_table.clone()),
        };
        RunLocation {
            run_name: self.run_name.clone(),
            checkpoint,
            lease_table_prefix: (self.coordinate == Coordinate::Db)
                .then(|| self.lease_table_prefix.clone()),
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    range: RangeArgs,
    #[command(flatten)]
    location: RunLocationArgs,
    /// Rows per second at most (default: unlimited, still adaptive); `ctl
    /// rate` changes it while the run runs.
    #[arg(long)]
    max_rate: Option<f64>,
    /// Mean keyset-query latency above which the rate is lowered.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    db_latency_threshold: Duration,
    /// Continue an unfinished run from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Start over, even when a checkpoint exists or the run finished.
    #[arg(long)]
    force: bool,
    /// Lease time-out: a worker silent this long loses its chunk.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    lease_timeout: Duration,
    /// This worker's name in the lease table (default: host:pid:random).
    #[arg(long)]
    worker_id: Option<String>,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Interval of JSON progress lines.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    progress_interval: Duration,
    /// Time in-flight pages get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Serve Prometheus `/metrics` (the writer's `esync_*` and the run's
    /// `esync_recover_*`) and `/healthz` on this address while the run runs
    /// (default: off).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// With `--metrics-listen`: keep serving the final values this long
    /// after the run ends, so Prometheus scrapes them; a signal ends it early.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    metrics_linger: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CtlCommandName {
    /// `rate N`: at most N rows/s and running; `rate 0` pauses; `rate unlimited`.
    Rate,
    /// Claim and write nothing until `resume` (leases are kept).
    Pause,
    /// Go on at the current limit.
    Resume,
    /// Show progress, limit and pause.
    Status,
}

#[derive(Debug, Args)]
struct CtlArgs {
    /// Configuration file (the daemon's `esync.yaml`), read when the run
    /// keeps its state in the database.
    #[arg(long, short, env = "ESYNC_CONFIG", default_value = "esync.yaml")]
    config: PathBuf,
    #[command(flatten)]
    location: RunLocationArgs,
    /// What to do.
    #[arg(value_enum)]
    command: CtlCommandName,
    /// For `rate`: rows per second (0 pauses) or `unlimited`.
    value: Option<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    range: RangeArgs,
    /// Re-index the differing ids through the versioned writer (extra
    /// documents are deleted with a versioned delete).
    #[arg(long, conflicts_with = "publish")]
    fix: bool,
    /// Produce the differing ids to this Kafka topic for the daemon instead.
    #[arg(long)]
    publish: Option<String>,
    /// Sample ids shown per kind of difference and range.
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Print clean ranges too.
    #[arg(long)]
    all_ranges: bool,
    /// Skip the `_refresh` of the index before comparing.
    #[arg(long)]
    no_refresh: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, LogDefaults::INFO);
    esync_common::main_loop::run_async("esync-recover", async {
        match cli.command {
            Command::Run(args) => run(*args).await,
            Command::Verify(args) => verify(args).await,
            Command::Ctl(args) => ctl(args).await,
        }
    })
}

async fn connect(range: &RangeArgs, registry: &mut Registry) -> anyhow::Result<Connected> {
    let loaded = LoadedConfig::from_file(&range.config)?;
    let connections = u32::try_from(range.parallel * 2 + 2).unwrap_or(u32::MAX);
    Connected::connect_with_registry(loaded, connections, registry).await
}

/// Serves `registry` on `address` until `shutdown` fires; `/healthz` is ok
/// while the process runs (the run itself retries its systems).
async fn serve_metrics(
    address: SocketAddr,
    registry: Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let health: esync::http::HealthCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    esync::http::serve_with_health(address, Arc::new(registry), health, shutdown)
        .await
        .with_context(|| format!("cannot serve metrics on {address}"))
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut registry = Registry::default();
    let connected = connect(&args.range, &mut registry).await?;
    let metrics_shutdown = CancellationToken::new();
    let metrics_server = match args.metrics_listen {
        Some(address) => Some(serve_metrics(address, registry, metrics_shutdown.clone()).await?),
        None => None,
    };
    let location = args.location.location();
    let coordinate = location
        .lease_table_prefix
        .clone()
        .map(|table_prefix| LeaseSettings {
            table_prefix,
            lease_timeout: args.lease_timeout,
            worker_id: args.worker_id.clone().unwrap_or_else(default_worker_id),
        });
    let run_name = location.run_name.clone();
    let settings = RunSettings {
        run_name: run_name.clone(),
        range: args.range.range_request(),
        batch_size: args.range.batch_size as usize,
        parallel: args.range.parallel as usize,
        max_rate: args.max_rate.filter(|rate| *rate > 0.0),
        db_latency_threshold: args.db_latency_threshold,
        checkpoint: location.checkpoint.clone(),
        resume: args.resume,
        force: args.force,
        coordinate,
        progress: args.progress,
        progress_interval: args.progress_interval,
        control: Some(location.control_place()),
    };
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    spawn_signal_handler(stop.clone(), abort.clone(), args.shutdown_grace)?;
    let outcome = esync_recover::run::run(connected, settings, stop.clone(), abort).await;
    if metrics_server.is_some() && !args.metrics_linger.is_zero() && !stop.is_cancelled() {
        tracing::info!(linger = ?args.metrics_linger, "run over; still serving /metrics");
        tokio::select! {
            _ = tokio::time::sleep(args.metrics_linger) => {}
            _ = stop.cancelled() => {}
        }
    }
    // the endpoint stops with the run, whatever its outcome
    metrics_shutdown.cancel();
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    let outcome = outcome.context("recovery failed")?;
    let json_progress = args.progress.resolve() == ProgressMode::Json;
    let (snapshot, outcome_name, code) = match outcome {
        RunOutcome::Finished(snapshot) => (snapshot, "finished", ExitCode::SUCCESS),
        RunOutcome::Interrupted(snapshot) => (snapshot, "interrupted", ExitCode::from(2)),
    };
    if json_progress {
        eprintln!("{}", snapshot.summary_json(&run_name, outcome_name));
    }
    println!("{}", snapshot.summary_text(&run_name, outcome_name));
    if outcome_name == "interrupted" {
        println!("continue with --resume (the same options)");
    }
    Ok(code)
}

async fn ctl(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let command_name = args
        .command
        .to_possible_value()
        .map(|value| value.get_name().to_owned());
    let command = CtlCommand::parse(
        command_name.as_deref().unwrap_or_default(),
        args.value.as_deref(),
    )?;
    let location = args.location.location();
    // only runs with their state in the database need it: ctl must work while
    // Elasticsearch is the trouble, so it never connects there
    let database = if location.needs_database() {
        let loaded = LoadedConfig::from_file(&args.config)?;
        let source = &loaded.config.source;
        Some(
            esync::db::Database::connect(&loaded.secrets.database_url, 1, source.connect_timeout)
                .await
                .context("cannot connect to the source database")?,
        )
    } else {
        None
    };
    let status = match command {
        CtlCommand::Status => esync_recover::ctl::status(&location, database.as_ref()).await?,
        CtlCommand::Apply(action) => {
            esync_recover::ctl::apply(&location, database.as_ref(), action, &operator_name())
                .await?
        }
    };
    println!("{}", status.to_text());
    Ok(ExitCode::SUCCESS)
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let connected = connect(&args.range, &mut Registry::default()).await?;
    let fix = match (&args.publish, args.fix) {
        (Some(topic), _) => FixMode::Publish(topic.clone()),
        (None, true) => FixMode::Reindex,
        (None, false) => FixMode::Report,
    };
    let settings = VerifySettings {
        range: args.range.range_request(),
        batch_size: args.range.batch_size as usize,
        parallel: args.range.parallel as usize,
        samples: args.samples,
        fix,
        format: args.format,
        all_ranges: args.all_ranges,
        refresh: !args.no_refresh,
    };
    let report = esync_recover::verify::verify(&connected, &settings, &mut std::io::stdout())
        .await
        .context("verify failed")?;
    Ok(if report.is_clean_after_fix() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
