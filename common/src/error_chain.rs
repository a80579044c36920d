//! How every binary of the workspace prints an error: the message, then each
//! cause once.
//!
//! The workspace's convention (as in sqlx and rdkafka) is that an error's
//! Display is complete on its own, naming its cause, because most errors are
//! printed alone (`%error` in logs, a line of `esync check`, a dead letter's
//! reason). Such an error often also returns that cause from `source()`, so
//! printing the chain with anyhow's `{:#}` says it twice
//! (`cannot read config file x: No such file...: No such file...`).
//! [`render`] walks the chain and leaves out a cause the text already holds.
//!
//! Pure; every binary of the workspace prints its errors with it.

use std::error::Error;

/// `error` and its causes, joined by `: `, each cause once.
pub fn render(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::render;
    use std::fmt;

    /// An error whose Display embeds its source and also exposes it.
    #[derive(Debug)]
    struct Embedding(std::io::Error);

    impl fmt::Display for Embedding {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(formatter, "cannot read config file /x.yaml: {}", self.0)
        }
    }

    impl std::error::Error for Embedding {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// An error that names only its own layer.
    #[derive(Debug)]
    struct Layer(Embedding);

    impl fmt::Display for Layer {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("cannot start")
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            render(&Embedding(missing())),
            "cannot read config file /x.yaml: entity not found"
        );
        assert_eq!(
            render(&Layer(Embedding(missing()))),
            "cannot start: cannot read config file /x.yaml: entity not found"
        );
    }
}
