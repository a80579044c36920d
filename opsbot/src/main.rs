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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("opsbot: failed to start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let config = cli::load_config(args.config.as_ref())?;
        cli::run(args, config, Secrets::from_env()).await
    });
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(2)),
        Err(error) => {
            eprintln!("opsbot: {}", opsbot::error_chain::render(error.as_ref()));
            ExitCode::from(2)
        }
    }
}
