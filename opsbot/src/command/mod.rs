//! Commands: what both front ends ask the engine for. The bot parses chat
//! text into a [`Command`] here ([`parse_command`]); the CLI builds the same
//! values from its arguments; both run them through `crate::execute`.
//!
//! Pure: text in, commands out; no async, no clock, no network.
//! - [`plan`]: the `/plan` keys (shardplan's table) and their checks;
//! - [`access`]: who may run what, and confirmations of cluster changes.

pub mod access;
pub mod plan;

pub use access::{AccessPolicy, ConfirmError, Confirmations, Decision, PendingConfirmation, Role};
pub use plan::{PlanRequest, PlanSetting, plan_error, plan_help, plan_input};

use crate::cluster::Target;
use crate::slowlog::digest::{GroupBy, parse_window};
use crate::slowlog::parse::SlowLogKind;
use chrono::{DateTime, Utc};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A command, parsed from chat text or built by the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/health`: cluster health.
    Health,
    /// `/nodes`: nodes with roles.
    Nodes,
    /// `/shards [index]`: shard table, optionally of one index (pattern).
    Shards {
        /// Index or pattern.
        index: Option<String>,
    },
    /// `/restart <node|all> [yellow] [dry]`: rolling restart.
    Restart {
        /// Node name or all.
        target: Target,
        /// Accept a settled yellow where green is required (no shard moving
        /// for `restart.settled_polls` polls; never stopping a node that holds
        /// the only started copy of a shard).
        allow_yellow: bool,
        /// Only show the plan.
        dry_run: bool,
        /// Replace an unfinished earlier roll (the CLI's `--force`; a chat
        /// cannot ask for it).
        force: bool,
    },
    /// `/restart_status`: progress of the current or last roll.
    RestartStatus,
    /// `/resume`: continue a stopped roll.
    Resume,
    /// `/abort`: stop a roll before its next node.
    Abort,
    /// `/slowlog [window] [index]`: slow-log digest.
    Slowlog(SlowlogRequest),
    /// `/plan key=value ...`: shard planning with `shardplan` (read-only).
    Plan {
        /// The usage text, or checked settings.
        request: PlanRequest,
    },
    /// `/help` or `/start`.
    Help,
}

impl Command {
    /// The command word, for logs and the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Health => "health",
            Command::Nodes => "nodes",
            Command::Shards { .. } => "shards",
            Command::Restart { .. } => "restart",
            Command::RestartStatus => "restart_status",
            Command::Resume => "resume",
            Command::Abort => "abort",
            Command::Slowlog { .. } => "slowlog",
            Command::Plan { .. } => "plan",
            Command::Help => "help",
        }
    }

    /// The least role that may run the command.
    pub fn required_role(&self) -> Role {
        match self {
            Command::Restart { dry_run: true, .. } => Role::Viewer,
            Command::Restart { .. } | Command::Resume | Command::Abort => Role::Operator,
            _ => Role::Viewer,
        }
    }

    /// Whether the command changes a cluster and so needs a confirmation.
    /// Abort only stops a roll between nodes, which is always safe.
    pub fn needs_confirmation(&self) -> bool {
        matches!(
            self,
            Command::Restart { dry_run: false, .. } | Command::Resume
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Shards { index: Some(index) } => write!(f, "/shards {index}"),
            Command::Restart {
                target,
                allow_yellow,
                dry_run,
                force,
            } => {
                write!(f, "/restart {target}")?;
                if *allow_yellow {
                    f.write_str(" yellow")?;
                }
                if *dry_run {
                    f.write_str(" dry")?;
                }
                if *force {
                    f.write_str(" --force")?;
                }
                Ok(())
            }
            Command::Slowlog(request) => {
                f.write_str("/slowlog")?;
                if let Some(window) = request.window {
                    write!(f, " {}", humantime::format_duration(window))?;
                }
                for index in &request.index {
                    write!(f, " {index}")?;
                }
                if request.by != GroupBy::default() {
                    write!(f, " by={}", request.by)?;
                }
                Ok(())
            }
            Command::Plan {
                request: PlanRequest::Settings(settings),
            } => {
                f.write_str("/plan")?;
                for setting in settings {
                    write!(f, " {setting}")?;
                }
                Ok(())
            }
            other => write!(f, "/{}", other.name()),
        }
    }
}

/// What a slow-log report covers. A chat gives a window and an index; the
/// command line may give any of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlowlogRequest {
    /// Only the last window back from now, e.g. `1h`. Without it and without
    /// `since`, the front end's default window (if any) applies.
    pub window: Option<Duration>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only indices matching one of these patterns (`*` wildcards).
    pub index: Vec<String>,
    /// Only these kinds (all when empty).
    pub kinds: Vec<SlowLogKind>,
    /// Slow-log files to read; default `slowlog.paths`, else `slowlog.index`.
    pub files: Vec<PathBuf>,
    /// Fingerprints shown; default `slowlog.top`.
    pub top: Option<usize>,
    /// Count requests (shard lines of one search grouped) or shard
    /// executions; default requests.
    pub by: GroupBy,
}

/// Why a text is not a command the bot runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Plain text, not starting with `/`.
    #[error("not a command")]
    NotACommand,
    /// A command addressed to another bot (`/cmd@otherbot`).
    #[error("command for another bot")]
    OtherBot,
    /// An unknown command word.
    #[error("unknown command /{0}, see /help")]
    Unknown(String),
    /// Wrong arguments; the usage line.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A `/plan` argument that is unknown, malformed or out of range; the
    /// message names the key and value.
    #[error("/plan: {0} (see /plan help)")]
    Plan(String),
}

/// Usage lines, also the `/help` text.
pub const HELP: &str = "\
/health - cluster health
/nodes - nodes, roles, elected master
/shards [index] - shards (of one index or pattern)
/restart <node|all> [yellow] [dry] - rolling restart (operator); yellow: also on a settled yellow; dry shows the plan
/restart_status - progress of the current or last restart
/resume - continue a stopped restart (operator)
/abort - stop the restart before its next node (operator)
/slowlog [window] [index] [by=shard] - slow queries by request (by=shard: per shard), e.g. /slowlog 1h logs-*
/plan hot=N ingest=SIZE [key=value ...] - primary shard count (shardplan); /plan help
/help - this text";

/// Parses a chat message. `bot_username` lets `/cmd@thisbot` through and
/// rejects `/cmd@otherbot` in groups.
pub fn parse_command(text: &str, bot_username: Option<&str>) -> Result<Command, CommandError> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix('/') else {
        return Err(CommandError::NotACommand);
    };
    let mut words = rest.split_whitespace();
    let head = words.next().unwrap_or("");
    let (word, addressee) = match head.split_once('@') {
        Some((word, name)) => (word, Some(name)),
        None => (head, None),
    };
    if let (Some(addressee), Some(ours)) = (addressee, bot_username)
        && !addressee.eq_ignore_ascii_case(ours)
    {
        return Err(CommandError::OtherBot);
    }
    let args: Vec<&str> = words.collect();
    let word = word.to_ascii_lowercase();
    let command = match word.as_str() {
        "health" => no_args(&args, Command::Health, "/health")?,
        "nodes" => no_args(&args, Command::Nodes, "/nodes")?,
        "shards" => match args.as_slice() {
            [] => Command::Shards { index: None },
            [index] => Command::Shards {
                index: Some(valid_index(index).ok_or(CommandError::Usage("/shards [index]"))?),
            },
            _ => return Err(CommandError::Usage("/shards [index]")),
        },
        "restart" => parse_restart(&args)?,
        "restart_status" | "status" => no_args(&args, Command::RestartStatus, "/restart_status")?,
        "resume" => no_args(&args, Command::Resume, "/resume")?,
        "abort" => no_args(&args, Command::Abort, "/abort")?,
        "slowlog" => parse_slowlog(&args)?,
        "plan" => Command::Plan {
            request: plan::parse_plan(&args)?,
        },
        "help" | "start" => Command::Help,
        other => return Err(CommandError::Unknown(other.chars().take(32).collect())),
    };
    Ok(command)
}

fn no_args(args: &[&str], command: Command, usage: &'static str) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Usage(usage))
    }
}

/// Index names and patterns: letters, digits and `-_.*,+` only, at most 255
/// characters (Elasticsearch's own limit), so nothing else reaches a URL.
fn valid_index(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 255
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | ',' | '+'));
    ok.then(|| text.to_string())
}

/// Node names: the same characters as index names without wildcards.
fn valid_node(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 255
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| text.to_string())
}

fn parse_restart(args: &[&str]) -> Result<Command, CommandError> {
    const USAGE: &str = "/restart <node|all> [yellow] [dry]";
    let Some((first, options)) = args.split_first() else {
        return Err(CommandError::Usage(USAGE));
    };
    let target = Target::parse(&valid_node(first).ok_or(CommandError::Usage(USAGE))?);
    let mut allow_yellow = false;
    let mut dry_run = false;
    for option in options {
        match *option {
            "yellow" | "--allow-yellow" => allow_yellow = true,
            "dry" | "--dry-run" => dry_run = true,
            _ => return Err(CommandError::Usage(USAGE)),
        }
    }
    Ok(Command::Restart {
        target,
        allow_yellow,
        dry_run,
        force: false,
    })
}

fn parse_slowlog(args: &[&str]) -> Result<Command, CommandError> {
    const USAGE: &str = "/slowlog [window] [index] [by=request|shard], e.g. /slowlog 1h logs-*";
    let mut by = GroupBy::default();
    let mut positional: Vec<&str> = Vec::with_capacity(args.len());
    for arg in args {
        match arg.strip_prefix("by=") {
            Some("request") => by = GroupBy::Request,
            Some("shard") => by = GroupBy::Shard,
            Some(_) => return Err(CommandError::Usage(USAGE)),
            None => positional.push(arg),
        }
    }
    let (window, index) = match positional.as_slice() {
        [] => (None, None),
        [one] => match parse_window(one) {
            Some(window) => (Some(window), None),
            None => (None, Some(*one)),
        },
        [window, index] => (
            Some(parse_window(window).ok_or(CommandError::Usage(USAGE))?),
            Some(*index),
        ),
        _ => return Err(CommandError::Usage(USAGE)),
    };
    let index = match index {
        Some(index) => Some(valid_index(index).ok_or(CommandError::Usage(USAGE))?),
        None => None,
    };
    Ok(Command::Slowlog(SlowlogRequest {
        window,
        index: index.into_iter().collect(),
        by,
        ..SlowlogRequest::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_key(name: &str) -> &'static shardplan::OverrideKey {
        shardplan::OverrideKey::find(name).expect("a key of the table")
    }

    #[test]
    fn parses_every_command() {
        let cases: Vec<(&str, Command)> = vec![
            ("/health", Command::Health),
            ("/nodes@opsbot", Command::Nodes),
            ("  /shards  ", Command::Shards { index: None }),
            (
                "/shards logs-*",
                Command::Shards {
                    index: Some("logs-*".into()),
                },
            ),
            (
                "/restart all",
                Command::Restart {
                    target: Target::All,
                    allow_yellow: false,
                    dry_run: false,
                    force: false,
                },
            ),
            (
                "/restart es-hot-1 yellow dry",
                Command::Restart {
                    target: Target::Node("es-hot-1".into()),
                    allow_yellow: true,
                    dry_run: true,
                    force: false,
                },
            ),
            ("/restart_status", Command::RestartStatus),
            ("/resume", Command::Resume),
            ("/ABORT", Command::Abort),
            (
                "/slowlog",
                Command::Slowlog(SlowlogRequest {
                    window: None,
                    index: Vec::new(),
                    ..SlowlogRequest::default()
                }),
            ),
            (
                "/slowlog 1h",
                Command::Slowlog(SlowlogRequest {
                    window: Some(Duration::from_secs(3600)),
                    index: Vec::new(),
                    ..SlowlogRequest::default()
                }),
            ),
            (
                "/slowlog orders",
                Command::Slowlog(SlowlogRequest {
                    window: None,
                    index: vec!["orders".into()],
                    ..SlowlogRequest::default()
                }),
            ),
            (
                "/slowlog 30m logs-*",
                Command::Slowlog(SlowlogRequest {
                    window: Some(Duration::from_secs(1800)),
                    index: vec!["logs-*".into()],
                    ..SlowlogRequest::default()
                }),
            ),
            (
                "/slowlog by=shard 1h",
                Command::Slowlog(SlowlogRequest {
                    window: Some(Duration::from_secs(3600)),
                    by: GroupBy::Shard,
                    ..SlowlogRequest::default()
                }),
            ),
            (
                "/slowlog orders by=request",
                Command::Slowlog(SlowlogRequest {
                    index: vec!["orders".into()],
                    by: GroupBy::Request,
                    ..SlowlogRequest::default()
                }),
            ),
            (
                "/plan",
                Command::Plan {
                    request: PlanRequest::Usage,
                },
            ),
            (
                "/plan hot=3 ingest=300gb",
                Command::Plan {
                    request: PlanRequest::Settings(vec![
                        PlanSetting {
                            key: plan_key("hot_nodes"),
                            value: "3".into(),
                        },
                        PlanSetting {
                            key: plan_key("daily_ingest"),
                            value: "300gb".into(),
                        },
                    ]),
                },
            ),
            ("/help", Command::Help),
            ("/start", Command::Help),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_command(text, Some("opsbot")),
                Ok(expected),
                "text {text}"
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_command("hello", None), Err(CommandError::NotACommand));
        assert_eq!(
            parse_command("/health@otherbot", Some("opsbot")),
            Err(CommandError::OtherBot)
        );
        assert_eq!(
            parse_command("/drop_index x", None),
            Err(CommandError::Unknown("drop_index".into()))
        );
        assert!(matches!(
            parse_command("/restart", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/restart a now", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/restart ../etc", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/restart a;rm", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/shards a/b", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/slowlog 1h x y", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/slowlog soon logs", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/slowlog by=node", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/health now", None),
            Err(CommandError::Usage(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "/restart all yellow",
            "/shards logs",
            "/slowlog 1h logs-*",
            "/slowlog 1h logs-* by=shard",
            "/abort",
        ] {
            let command = parse_command(text, None).expect("parses");
            assert_eq!(command.to_string(), text);
        }
    }
}
