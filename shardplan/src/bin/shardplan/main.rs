//! The `shardplan` binary: parse arguments, set up logging, run one command,
//! map the result to an exit code (0 ok, 1 findings with `--strict`, 2 error).
//!
//! All planning logic lives in the `shardplan` library; the command modules
//! here only read files, talk to Elasticsearch and print.

mod check;
mod cli;
mod es;
mod measure;
mod output;
mod planning;

use std::process::ExitCode;

use clap::Parser;
use esync_common::telemetry::{self, LogDefaults};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // stdout carries the report: logs go to stderr, `info` for shardplan
    // and `warn` for everything else unless `RUST_LOG` says otherwise
    telemetry::init(
        cli.log_format,
        LogDefaults {
            filter: "warn,shardplan=info",
            show_target: false,
        },
    );
    esync_common::main_loop::exit_code("shardplan: error", run(cli).map(Outcome::exit_code))
}

/// What a command found.
pub enum Outcome {
    /// Nothing to report, or findings without `--strict`.
    Clean,
    /// Findings of warning or critical severity with `--strict`.
    Findings,
}

impl Outcome {
    fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Clean => ExitCode::SUCCESS,
            Outcome::Findings => ExitCode::from(1),
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Plan(args) => planning::plan(&args),
        Command::Template(args) => planning::template(&args),
        Command::Ilm(args) => planning::ilm(&args),
        Command::Simulate(args) => planning::simulate(&args),
        Command::Check(args) => check::run(&args),
        Command::Measure(args) => measure::run(&args),
    }
}
