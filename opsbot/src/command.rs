//! Chat commands: parsing, authorization and confirmations.
//!
//! Pure: text and ids in, decisions out; no async, no clock (`now` is passed
//! in), no network. The bot front end (`crate::bot`) and the CLI share these
//! definitions. Rules:
//! - only allow-listed chats *and* users are answered; anyone else gets no
//!   reply at all (not even "denied"), so the bot does not reveal itself;
//! - `viewer` may read (health, nodes, shards, status, slow logs, help);
//!   `operator` may also restart, resume and abort;
//! - anything that changes a cluster needs a confirmation by the same user in
//!   the same chat before it expires.

use crate::roll::Target;
use crate::slowlog::digest::parse_window;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

/// A parsed chat command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
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
        /// Accept yellow where green is required.
        allow_yellow: bool,
        /// Only show the plan.
        dry_run: bool,
    },
    /// `/restart_status`: progress of the current or last roll.
    RestartStatus,
    /// `/resume`: continue a stopped roll.
    Resume,
    /// `/abort`: stop a roll before its next node.
    Abort,
    /// `/slowlog [window] [index]`: slow-log digest.
    Slowlog {
        /// Time window back from now, e.g. `1h`.
        #[serde(with = "humantime_serde")]
        window: Option<Duration>,
        /// Index or pattern.
        index: Option<String>,
    },
    /// `/plan ...`: shard planning (not available in this build).
    Plan {
        /// Arguments as typed.
        args: String,
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
            } => {
                write!(f, "/restart {target}")?;
                if *allow_yellow {
                    f.write_str(" yellow")?;
                }
                if *dry_run {
                    f.write_str(" dry")?;
                }
                Ok(())
            }
            Command::Slowlog { window, index } => {
                f.write_str("/slowlog")?;
                if let Some(window) = window {
                    write!(f, " {}", humantime::format_duration(*window))?;
                }
                if let Some(index) = index {
                    write!(f, " {index}")?;
                }
                Ok(())
            }
            Command::Plan { args } if !args.is_empty() => write!(f, "/plan {args}"),
            other => write!(f, "/{}", other.name()),
        }
    }
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
}

/// Usage lines, also the `/help` text.
pub const HELP: &str = "\
/health - cluster health
/nodes - nodes, roles, elected master
/shards [index] - shards (of one index or pattern)
/restart <node|all> [yellow] [dry] - rolling restart (operator); dry shows the plan
/restart_status - progress of the current or last restart
/resume - continue a stopped restart (operator)
/abort - stop the restart before its next node (operator)
/slowlog [window] [index] - slow queries, e.g. /slowlog 1h logs-*
/plan ... - shard planning
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
            args: args.join(" "),
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
    })
}

fn parse_slowlog(args: &[&str]) -> Result<Command, CommandError> {
    const USAGE: &str = "/slowlog [window] [index], e.g. /slowlog 1h logs-*";
    let (window, index) = match args {
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
    Ok(Command::Slowlog { window, index })
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only commands.
    Viewer,
    /// Read-only commands and cluster changes.
    Operator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

/// The allow-list: chats the bot answers in, and users with their roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Chat ids (private chats have the user's id; groups are negative).
    pub chats: BTreeSet<i64>,
    /// User ids and roles.
    pub users: BTreeMap<u64, Role>,
}

/// The outcome of an authorization check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Unlisted chat or user: no reply at all.
    Ignore,
    /// Listed, but the role is too low: a short refusal.
    Forbidden(Role),
    /// Go ahead with this role.
    Allowed(Role),
}

impl AccessPolicy {
    /// The role of a user in a chat, when both are listed.
    pub fn role_of(&self, chat_id: i64, user_id: u64) -> Option<Role> {
        if !self.chats.contains(&chat_id) {
            return None;
        }
        self.users.get(&user_id).copied()
    }

    /// Decides whether a user may run a command in a chat.
    pub fn authorize(&self, chat_id: i64, user_id: u64, command: &Command) -> Decision {
        match self.role_of(chat_id, user_id) {
            None => Decision::Ignore,
            Some(role) if role >= command.required_role() => Decision::Allowed(role),
            Some(role) => Decision::Forbidden(role),
        }
    }
}

/// A change waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingConfirmation {
    /// The command to run once confirmed.
    pub command: Command,
    /// Chat it was asked in.
    pub chat_id: i64,
    /// User who asked; only they may confirm.
    pub user_id: u64,
    /// After this, confirming fails.
    pub expires_at: DateTime<Utc>,
}

/// Why a confirmation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// No such pending confirmation (already used, cancelled or never made).
    #[error("nothing to confirm")]
    Unknown,
    /// Too late.
    #[error("confirmation expired, run the command again")]
    Expired,
    /// Another user or chat pressed the button.
    #[error("only the user who asked can confirm")]
    WrongUser,
}

/// Pending confirmations by token.
#[derive(Debug, Default)]
pub struct Confirmations {
    pending: HashMap<String, PendingConfirmation>,
}

impl Confirmations {
    /// Registers a command under `token` (random, chosen by the caller) that
    /// expires `ttl` after `now`. Expired entries are dropped on the way.
    pub fn request(
        &mut self,
        token: String,
        command: Command,
        chat_id: i64,
        user_id: u64,
        now: DateTime<Utc>,
        ttl: Duration,
    ) {
        self.pending.retain(|_, pending| pending.expires_at > now);
        let ttl = ChronoDuration::from_std(ttl).unwrap_or(ChronoDuration::minutes(2));
        self.pending.insert(
            token,
            PendingConfirmation {
                command,
                chat_id,
                user_id,
                expires_at: now + ttl,
            },
        );
    }

    /// Takes the command for `token` if the same user confirms in time. A
    /// token is used at most once.
    pub fn confirm(
        &mut self,
        token: &str,
        chat_id: i64,
        user_id: u64,
        now: DateTime<Utc>,
    ) -> Result<Command, ConfirmError> {
        let pending = self.pending.get(token).ok_or(ConfirmError::Unknown)?;
        if pending.chat_id != chat_id || pending.user_id != user_id {
            return Err(ConfirmError::WrongUser);
        }
        let pending = self.pending.remove(token).ok_or(ConfirmError::Unknown)?;
        if now >= pending.expires_at {
            return Err(ConfirmError::Expired);
        }
        Ok(pending.command)
    }

    /// Drops a pending confirmation (the Cancel button); same rules as confirm.
    pub fn cancel(
        &mut self,
        token: &str,
        chat_id: i64,
        user_id: u64,
    ) -> Result<Command, ConfirmError> {
        let pending = self.pending.get(token).ok_or(ConfirmError::Unknown)?;
        if pending.chat_id != chat_id || pending.user_id != user_id {
            return Err(ConfirmError::WrongUser);
        }
        self.pending
            .remove(token)
            .map(|pending| pending.command)
            .ok_or(ConfirmError::Unknown)
    }

    /// Number of pending confirmations (for tests and status).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                },
            ),
            (
                "/restart es-hot-1 yellow dry",
                Command::Restart {
                    target: Target::Node("es-hot-1".into()),
                    allow_yellow: true,
                    dry_run: true,
                },
            ),
            ("/restart_status", Command::RestartStatus),
            ("/resume", Command::Resume),
            ("/ABORT", Command::Abort),
            (
                "/slowlog",
                Command::Slowlog {
                    window: None,
                    index: None,
                },
            ),
            (
                "/slowlog 1h",
                Command::Slowlog {
                    window: Some(Duration::from_secs(3600)),
                    index: None,
                },
            ),
            (
                "/slowlog orders",
                Command::Slowlog {
                    window: None,
                    index: Some("orders".into()),
                },
            ),
            (
                "/slowlog 30m logs-*",
                Command::Slowlog {
                    window: Some(Duration::from_secs(1800)),
                    index: Some("logs-*".into()),
                },
            ),
            (
                "/plan hot 3",
                Command::Plan {
                    args: "hot 3".into(),
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
            "/abort",
        ] {
            let command = parse_command(text, None).expect("parses");
            assert_eq!(command.to_string(), text);
        }
    }

    fn policy() -> AccessPolicy {
        AccessPolicy {
            chats: [100, -500].into_iter().collect(),
            users: [(1, Role::Viewer), (2, Role::Operator)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn unlisted_users_and_chats_get_nothing() {
        let restart = parse_command("/restart all", None).expect("parses");
        let health = Command::Health;
        let policy = policy();
        assert_eq!(
            policy.authorize(100, 99, &health),
            Decision::Ignore,
            "unlisted user"
        );
        assert_eq!(
            policy.authorize(7, 2, &health),
            Decision::Ignore,
            "unlisted chat"
        );
        assert_eq!(policy.authorize(7, 2, &restart), Decision::Ignore);
    }

    #[test]
    fn viewer_cannot_restart_but_operator_can() {
        let policy = policy();
        let restart = parse_command("/restart all", None).expect("parses");
        let dry = parse_command("/restart all dry", None).expect("parses");
        assert_eq!(
            policy.authorize(100, 1, &restart),
            Decision::Forbidden(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(100, 1, &Command::Abort),
            Decision::Forbidden(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(100, 1, &Command::Resume),
            Decision::Forbidden(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(100, 1, &dry),
            Decision::Allowed(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(100, 1, &Command::Health),
            Decision::Allowed(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(-500, 2, &restart),
            Decision::Allowed(Role::Operator)
        );
        assert!(restart.needs_confirmation());
        assert!(!dry.needs_confirmation());
        assert!(!Command::Abort.needs_confirmation());
    }

    #[test]
    fn confirmations_expire_and_belong_to_their_user() {
        let now = Utc::now();
        let ttl = Duration::from_secs(60);
        let mut confirmations = Confirmations::default();
        confirmations.request("t1".into(), Command::Resume, 100, 2, now, ttl);
        assert_eq!(
            confirmations.confirm("t1", 100, 1, now),
            Err(ConfirmError::WrongUser)
        );
        assert_eq!(
            confirmations.confirm("t1", 101, 2, now),
            Err(ConfirmError::WrongUser)
        );
        assert_eq!(
            confirmations.confirm("t1", 100, 2, now),
            Ok(Command::Resume)
        );
        assert_eq!(
            confirmations.confirm("t1", 100, 2, now),
            Err(ConfirmError::Unknown),
            "used once"
        );

        confirmations.request("t2".into(), Command::Resume, 100, 2, now, ttl);
        let late = now + ChronoDuration::seconds(61);
        assert_eq!(
            confirmations.confirm("t2", 100, 2, late),
            Err(ConfirmError::Expired)
        );

        confirmations.request("t3".into(), Command::Resume, 100, 2, now, ttl);
        assert_eq!(confirmations.cancel("t3", 100, 2), Ok(Command::Resume));
        assert!(confirmations.is_empty());

        confirmations.request("old".into(), Command::Resume, 100, 2, now, ttl);
        confirmations.request("new".into(), Command::Resume, 100, 2, late, ttl);
        assert_eq!(confirmations.len(), 1, "expired entries are dropped");
    }
}
