//! Golden-output tests of the workspace's binaries (issue 13): run a binary
//! as a user would, and compare its whole stdout and stderr with what it
//! must print, so noise (library log floods, escape codes, causes printed
//! twice) cannot come back unseen.
//!
//! Used by the golden tests of sync, recover, shardplan and opsbot.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// What a run printed, with temporary paths and ports replaced.
#[derive(Debug)]
pub struct Printed {
    /// The exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A local port nobody listens on: bound, then closed, so a connection is
/// refused at once (no time-out to wait for).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    listener.local_addr().expect("local address").port()
}

/// Runs `binary` with `args` in a fresh directory holding one file, `name`
/// with `contents` (the config under test).
pub fn run_with_file(
    binary: &str,
    name: &str,
    contents: &str,
    args: &[&str],
    port: u16,
) -> Printed {
    let directory = tempfile::tempdir().expect("temp dir");
    std::fs::write(directory.path().join(name), contents).expect("write the file");
    run(binary, args, directory.path(), port)
}

/// Runs `binary` with `args` in `directory`, without the caller's logging or
/// tool variables, and normalises `directory` to `TMP` and `port` (unless 0)
/// to `PORT`.
pub fn run(binary: &str, args: &[&str], directory: &Path, port: u16) -> Printed {
    let mut command = Command::new(binary);
    command.args(args).current_dir(directory);
    for (name, _) in std::env::vars() {
        if name == "RUST_LOG" || name.starts_with("ESYNC_") || name.starts_with("OPSBOT_") {
            command.env_remove(name);
        }
    }
    let output = command.output().expect("run the binary");
    let normalise = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains('\u{1b}'),
            "escape codes off a terminal: {text:?}"
        );
        let text = text.replace(&directory.display().to_string(), "TMP");
        match port {
            0 => text,
            port => text.replace(&port.to_string(), "PORT"),
        }
    };
    Printed {
        code: output.status.code(),
        stdout: normalise(&output.stdout),
        stderr: normalise(&output.stderr),
    }
}
