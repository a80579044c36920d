//! Restart actions: how one node is restarted. A shell command template
//! (`{host}`, `{node}`), systemd over ssh, or an Ansible playbook limited to
//! the host.
//!
//! [`RestartAction::command_line`] is pure (it builds the argv and checks the
//! names); [`RestartAction::run`] starts the process with a time-out. The
//! action's output goes to the log, never to a chat.

use crate::config::RestartActionConfig;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// A restart action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// A node or host name with characters that do not belong in a command.
    #[error("refusing to restart {0:?}: not a plain host or node name")]
    UnsafeName(String),
    /// The program could not be started.
    #[error("failed to start restart action {program}: {message}")]
    Spawn {
        /// Program name.
        program: String,
        /// The OS error.
        message: String,
    },
    /// The action ran and failed.
    #[error("restart action exited with {status}")]
    Exit {
        /// Exit status as text.
        status: String,
    },
    /// The action took too long and was killed.
    #[error("restart action timed out after {0:?}")]
    TimedOut(Duration),
}

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Program.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
}

/// How nodes are restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartAction {
    config: RestartActionConfig,
}

/// Host and node names are substituted into commands: letters, digits and
/// `.-_:` only (`:` for IPv6), so no shell meta-character gets through.
fn check_name(name: &str) -> Result<&str, ActionError> {
    let plain = !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if plain {
        Ok(name)
    } else {
        Err(ActionError::UnsafeName(name.to_string()))
    }
}

/// Sends SIGKILL to a process group with kill(1) (no unsafe code here).
async fn kill_process_group(pgid: u32) {
    let result = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(error) = result {
        tracing::warn!(error = %error, pgid, "failed to kill the restart action's process group");
    }
}

impl RestartAction {
    /// An action from its config.
    pub fn new(config: RestartActionConfig) -> RestartAction {
        RestartAction { config }
    }

    /// The command that restarts `node` on `host`.
    pub fn command_line(&self, node: &str, host: &str) -> Result<CommandLine, ActionError> {
        let node = check_name(node)?;
        let host = check_name(host)?;
        Ok(match &self.config {
            RestartActionConfig::Shell { command } => CommandLine {
                program: "sh".to_string(),
                args: vec![
                    "-c".to_string(),
                    command.replace("{host}", host).replace("{node}", node),
                ],
            },
            RestartActionConfig::Systemd {
                unit,
                ssh_user,
                ssh_options,
            } => {
                let mut args = ssh_options.clone();
                args.push(match ssh_user {
                    Some(user) => format!("{user}@{host}"),
                    None => host.to_string(),
                });
                args.extend(["sudo", "systemctl", "restart"].map(String::from));
                args.push(unit.clone());
                CommandLine {
                    program: "ssh".to_string(),
                    args,
                }
            }
            RestartActionConfig::Ansible {
                playbook,
                inventory,
                extra_args,
            } => {
                let mut args = vec![
                    playbook.display().to_string(),
                    "-i".to_string(),
                    inventory.display().to_string(),
                    "--limit".to_string(),
                    host.to_string(),
                    // opsbot already does the API steps around the restart;
                    // the playbook's own ones would save "primaries" as the
                    // previous value and then wait for green under it.
                    "-e".to_string(),
                    "es_restart_only=true".to_string(),
                ];
                args.extend(extra_args.iter().cloned());
                CommandLine {
                    program: "ansible-playbook".to_string(),
                    args,
                }
            }
        })
    }

    /// Runs the action and waits for it, at most `timeout`. `OPSBOT_NODE` and
    /// `OPSBOT_HOST` are set for the process too.
    pub async fn run(&self, node: &str, host: &str, timeout: Duration) -> Result<(), ActionError> {
        let line = self.command_line(node, host)?;
        tracing::info!(node, host, program = %line.program, "running restart action");
        let mut child = Command::new(&line.program)
            .args(&line.args)
            .env("OPSBOT_NODE", node)
            .env("OPSBOT_HOST", host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a time-out kills what it started
            // too (ssh, ansible-playbook under `sh -c`), not only the shell.
            .process_group(0)
            .spawn()
            .map_err(|error| ActionError::Spawn {
                program: line.program.clone(),
                message: error.to_string(),
            })?;
        // Read stderr on the side: a command that starts a service in the
        // background may leave the pipe open long after it exits, so only
        // the exit of the command itself is awaited.
        let stderr_reader = child.stderr.take().map(|mut stderr| {
            tokio::spawn(async move {
                let mut collected = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(read) = stderr.read(&mut chunk).await {
                    if read == 0 || collected.len() > 16_384 {
                        break;
                    }
                    collected.extend_from_slice(&chunk[..read]);
                }
                String::from_utf8_lossy(&collected).into_owned()
            })
        });
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(error)) => {
                return Err(ActionError::Spawn {
                    program: line.program,
                    message: error.to_string(),
                });
            }
            Err(_) => {
                if let Some(pid) = child.id() {
                    kill_process_group(pid).await;
                }
                if let Err(error) = child.kill().await {
                    tracing::warn!(error = %error, node, "failed to kill timed-out restart action");
                }
                return Err(ActionError::TimedOut(timeout));
            }
        };
        let stderr_text = match stderr_reader {
            Some(reader) => tokio::time::timeout(Duration::from_millis(500), reader)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        if status.success() {
            tracing::info!(node, host, "restart action finished");
            Ok(())
        } else {
            let tail: String = stderr_text
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            tracing::warn!(node, host, status = %status, stderr = %tail, "restart action failed");
            Err(ActionError::Exit {
                status: status.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn command_lines_of_each_kind() {
        let shell = RestartAction::new(RestartActionConfig::Shell {
            command: "ssh {host} restart-es --name {node}".into(),
        });
        assert_eq!(
            shell.command_line("es-1", "10.0.0.1").expect("ok").args,
            ["-c", "ssh 10.0.0.1 restart-es --name es-1"]
        );
        let systemd = RestartAction::new(RestartActionConfig::Systemd {
            unit: "elasticsearch".into(),
            ssh_user: Some("ops".into()),
            ssh_options: vec!["-o".into(), "BatchMode=yes".into()],
        });
        let line = systemd.command_line("es-1", "es1.internal").expect("ok");
        assert_eq!(line.program, "ssh");
        assert_eq!(
            line.args,
            [
                "-o",
                "BatchMode=yes",
                "ops@es1.internal",
                "sudo",
                "systemctl",
                "restart",
                "elasticsearch"
            ]
        );
        let ansible = RestartAction::new(RestartActionConfig::Ansible {
            playbook: PathBuf::from("playbooks/rolling_restart.yml"),
            inventory: PathBuf::from("inv.yml"),
            extra_args: vec!["-e".into(), "x=1".into()],
        });
        let line = ansible.command_line("es-1", "es1").expect("ok");
        assert_eq!(line.program, "ansible-playbook");
        assert_eq!(
            line.args,
            [
                "playbooks/rolling_restart.yml",
                "-i",
                "inv.yml",
                "--limit",
                "es1",
                "-e",
                "es_restart_only=true",
                "-e",
                "x=1"
            ]
        );
    }

    #[test]
    fn unsafe_names_are_refused() {
        let shell = RestartAction::new(RestartActionConfig::Shell {
            command: "echo {host}".into(),
        });
        for bad in ["a;rm -rf /", "$(id)", "a b", "", "-oProxyCommand=x", "a`b`"] {
            assert!(
                matches!(
                    shell.command_line("node", bad),
                    Err(ActionError::UnsafeName(_))
                ),
                "{bad}"
            );
        }
        assert!(shell.command_line("node", "fe80::1").is_ok());
    }

    #[tokio::test]
    async fn runs_with_exit_status_and_time_out() {
        let ok = RestartAction::new(RestartActionConfig::Shell {
            command: "test \"$OPSBOT_NODE\" = {node}".into(),
        });
        ok.run("n1", "h1", Duration::from_secs(5))
            .await
            .expect("succeeds");
        let failing = RestartAction::new(RestartActionConfig::Shell {
            command: "echo boom >&2; exit 3".into(),
        });
        let error = failing
            .run("n1", "h1", Duration::from_secs(5))
            .await
            .expect_err("fails");
        assert!(matches!(error, ActionError::Exit { .. }), "{error}");
        // A time-out kills the children of the shell too: the grandchild
        // `sleep` would otherwise write its marker after the roll moved on.
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("still-running");
        let slow = RestartAction::new(RestartActionConfig::Shell {
            command: format!("(sleep 1; touch {}) & wait", marker.display()),
        });
        let error = slow
            .run("n1", "h1", Duration::from_millis(200))
            .await
            .expect_err("times out");
        assert_eq!(error, ActionError::TimedOut(Duration::from_millis(200)));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the whole process group was killed");
    }
}
