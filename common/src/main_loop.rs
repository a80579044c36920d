//! The end of every binary's `main`: run the command on a runtime, print an
//! error once, map the outcome to an exit code.

use crate::error_chain;
use std::error::Error;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// Runs `command` on a multi-threaded runtime. An error is printed as
/// `<prefix>: <message, each cause once>` and exits 2. The runtime is shut
/// down with a time-out, so threads blocked in a client library (e.g.
/// librdkafka waiting for a broker that is gone) cannot keep the process
/// alive.
pub fn run_async<E>(prefix: &str, command: impl Future<Output = Result<ExitCode, E>>) -> ExitCode
where
    E: AsRef<dyn Error + Send + Sync + 'static>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{prefix}: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(command);
    runtime.shutdown_timeout(Duration::from_secs(1));
    exit_code(prefix, result)
}

/// The exit code of a command's result; an error is printed as in
/// [`run_async`].
pub fn exit_code<E>(prefix: &str, result: Result<ExitCode, E>) -> ExitCode
where
    E: AsRef<dyn Error + Send + Sync + 'static>,
{
    match result {
        Ok(code) => code,
        Err(error) => {
            let error: &(dyn Error + 'static) = error.as_ref();
            eprintln!("{prefix}: {}", error_chain::render(error));
            ExitCode::from(2)
        }
    }
}
