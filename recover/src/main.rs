//! The `esync-recover` binary: parse arguments, load the config, set up
//! telemetry, connect, call the engine, map the result to an exit code
//! (0 ok, 1 differences found by `verify`, 2 error or interrupted).

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use esync::config::LoadedConfig;
use esync_common::telemetry::{self, LogDefaults, LogFormat};
use esync_recover::connect::Connected;
use esync_recover::lease::{LeaseSettings, default_worker_id};
use esync_recover::plan::RangeRequest;
use esync_recover::progress::ProgressMode;
use esync_recover::run::{CheckpointPlace, RunOutcome, RunSettings, spawn_signal_handler};
use esync_recover::verify::{FixMode, OutputFormat, VerifySettings};
use std::path::PathBuf;
use std::process::ExitCode;
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
    Run(RunArgs),
    /// Compare the table with the index range by range; exit 1 on differences.
    Verify(VerifyArgs),
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

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    range: RangeArgs,
    /// Name of this recovery (checkpoint row, lease rows).
    #[arg(long, default_value = "recover")]
    run_name: String,
    /// Rows per second at most (default: unlimited, still adaptive).
    #[arg(long)]
    max_rate: Option<f64>,
    /// Mean keyset-query latency above which the rate is lowered.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    db_latency_threshold: Duration,
    /// Where finished chunks are recorded.
    #[arg(long, value_enum, default_value_t = CheckpointStoreKind::File)]
    checkpoint_store: CheckpointStoreKind,
    /// Checkpoint file (default: `esync-recover-<run name>.json`).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Checkpoint table in the source database (`--checkpoint-store db`).
    #[arg(long, default_value = "esync_recover_checkpoints")]
    checkpoint_table: String,
    /// Continue an unfinished run from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Start over, even when a checkpoint exists or the run finished.
    #[arg(long)]
    force: bool,
    /// Share the run with other processes through leases in the database.
    #[arg(long, value_enum, default_value_t = Coordinate::None)]
    coordinate: Coordinate,
    /// Lease time-out: a worker silent this long loses its chunk.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    lease_timeout: Duration,
    /// Prefix of the lease tables (`<prefix>_runs`, `<prefix>_chunks`).
    #[arg(long, default_value = "esync_recover")]
    lease_table_prefix: String,
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
            Command::Run(args) => run(args).await,
            Command::Verify(args) => verify(args).await,
        }
    })
}

async fn connect(range: &RangeArgs) -> anyhow::Result<Connected> {
    let loaded = LoadedConfig::from_file(&range.config)?;
    let connections = u32::try_from(range.parallel * 2 + 2).unwrap_or(u32::MAX);
    Connected::connect(loaded, connections).await
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let connected = connect(&args.range).await?;
    let checkpoint = match args.checkpoint_store {
        CheckpointStoreKind::File => CheckpointPlace::File(
            args.checkpoint
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("esync-recover-{}.json", args.run_name))),
        ),
        CheckpointStoreKind::Db => CheckpointPlace::Table(args.checkpoint_table.clone()),
    };
    let coordinate = (args.coordinate == Coordinate::Db).then(|| LeaseSettings {
        table_prefix: args.lease_table_prefix.clone(),
        lease_timeout: args.lease_timeout,
        worker_id: args.worker_id.clone().unwrap_or_else(default_worker_id),
    });
    let settings = RunSettings {
        run_name: args.run_name.clone(),
        range: args.range.range_request(),
        batch_size: args.range.batch_size as usize,
        parallel: args.range.parallel as usize,
        max_rate: args.max_rate.filter(|rate| *rate > 0.0),
        db_latency_threshold: args.db_latency_threshold,
        checkpoint,
        resume: args.resume,
        force: args.force,
        coordinate,
        progress: args.progress,
        progress_interval: args.progress_interval,
    };
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    spawn_signal_handler(stop.clone(), abort.clone(), args.shutdown_grace)?;
    let outcome = esync_recover::run::run(connected, settings, stop, abort)
        .await
        .context("recovery failed")?;
    let json_progress = args.progress.resolve() == ProgressMode::Json;
    let (snapshot, outcome_name, code) = match outcome {
        RunOutcome::Finished(snapshot) => (snapshot, "finished", ExitCode::SUCCESS),
        RunOutcome::Interrupted(snapshot) => (snapshot, "interrupted", ExitCode::from(2)),
    };
    if json_progress {
        eprintln!("{}", snapshot.summary_json(&args.run_name, outcome_name));
    }
    println!("{}", snapshot.summary_text(&args.run_name, outcome_name));
    if outcome_name == "interrupted" {
        println!("continue with --resume (the same options)");
    }
    Ok(code)
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let connected = connect(&args.range).await?;
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
