//! The `opsbot` binary: parse arguments, load config, set up logging, run the
//! subcommand, map the result to an exit code (0 ok, 1 roll aborted, 2 error).

mod cli;

use clap::Parser;
use esync_common::telemetry::{self, LogDefaults};
use opsbot::config::Secrets;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    telemetry::init(args.log_format, LogDefaults::INFO);
    esync_common::main_loop::run_async("opsbot", async {
        let config = cli::load_config(args.config.as_ref())?;
        let code = cli::run(args, config, Secrets::from_env()).await?;
        anyhow::Ok(ExitCode::from(u8::try_from(code).unwrap_or(2)))
    })
}
