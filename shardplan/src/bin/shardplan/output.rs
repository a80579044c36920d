//! Printing reports: tables for people, JSON or YAML for tools, and chart
//! files. A closed stdout (`shardplan plan | head`) is not an error.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::Format;

/// Writes `text` to stdout; a broken pipe ends quietly.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("failed to write to stdout"),
    }
}

/// Prints `value` in `format`, using `table` for the table format.
pub fn print_report<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let text = match format {
        Format::Table => table(),
        Format::Json => {
            let mut json = serde_json::to_string_pretty(value)
                .context("failed to encode the report as JSON")?;
            json.push('\n');
            json
        }
        Format::Yaml => {
            serde_yaml::to_string(value).context("failed to encode the report as YAML")?
        }
    };
    emit(&text)
}

/// Writes an SVG chart to `path` (which must end in `.svg`).
pub fn write_chart(path: &Path, svg: &str) -> anyhow::Result<()> {
    let is_svg = path
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| extension.eq_ignore_ascii_case("svg"));
    if !is_svg {
        anyhow::bail!(
            "unsupported chart file {}: only .svg charts are written",
            path.display()
        );
    }
    std::fs::write(path, svg).with_context(|| format!("failed to write chart {}", path.display()))
}
