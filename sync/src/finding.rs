//! One result line of `esync check` and its severity: the type every check
//! section (the engine's in [`crate::check`], publish's in
//! [`crate::publish::check`]) returns, kept in a leaf so the sections need
//! not import each other. Pure; no checking happens here.

/// One result line of `esync check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Ok, warning or failure.
    pub level: Level,
    /// What was checked and what was found.
    pub message: String,
}

/// Severity of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Works.
    Ok,
    /// Works, but probably not as intended.
    Warning,
    /// Will not work.
    Failure,
}

impl Finding {
    /// A finding of `level` saying `message`.
    pub fn new(level: Level, message: impl Into<String>) -> Finding {
        Finding {
            level,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = match self.level {
            Level::Ok => "ok  ",
            Level::Warning => "warn",
            Level::Failure => "FAIL",
        };
        write!(formatter, "[{mark}] {}", self.message)
    }
}
