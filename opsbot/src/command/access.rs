//! Who may run which command, and confirmations of cluster changes.
//!
//! Pure: ids and commands in, decisions out; `now` is passed in. Rules:
//! - only allow-listed chats *and* users are answered; anyone else gets no
//!   reply at all (not even "denied"), so the bot does not reveal itself;
//! - `viewer` may read (health, nodes, shards, status, slow logs, plans,
//!   help); `operator` may also restart, resume and abort;
//! - anything that changes a cluster needs a confirmation by the same user in
//!   the same chat before it expires.

use super::Command;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

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
    use crate::command::parse_command;

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
