//! Reading slow-log files into a [`Digest`]: plain or gzip (detected by its
//! magic bytes), several files at once, line by line without loading a whole
//! file. Invalid UTF-8 is replaced, not fatal.
//!
//! This module does file I/O only; parsing and aggregation are in the pure
//! modules next to it.

use super::digest::Digest;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A slow-log file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("failed to read slow log {path}")]
pub struct SourceError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Adds every line of `path` to `digest`.
pub fn read_file(path: &Path, digest: &mut Digest) -> Result<(), SourceError> {
    let wrap = |source| SourceError {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::with_capacity(1 << 20, File::open(path).map_err(wrap)?);
    let is_gzip = file.fill_buf().map_err(wrap)?.starts_with(&[0x1f, 0x8b]);
    if is_gzip {
        let decoder = BufReader::with_capacity(1 << 20, MultiGzDecoder::new(file));
        read_lines(decoder, path, digest).map_err(wrap)
    } else {
        read_lines(file, path, digest).map_err(wrap)
    }
}

/// Adds every line of every file, in order.
pub fn read_files(paths: &[PathBuf], digest: &mut Digest) -> Result<(), SourceError> {
    for path in paths {
        read_file(path, digest)?;
    }
    Ok(())
}

/// Adds every line of a reader (used for files and stdin).
pub fn read_lines<R: Read>(
    reader: BufReader<R>,
    name: &Path,
    digest: &mut Digest,
) -> std::io::Result<()> {
    let mut reader = reader;
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut line_number: u64 = 0;
    loop {
        buffer.clear();
        let read = reader.read_until(b'\n', &mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        line_number += 1;
        let origin = || format!("{}:{line_number}", name.display());
        // Invalid UTF-8 is replaced rather than dropped: the rest of the
        // line may still be a usable entry.
        let line = String::from_utf8_lossy(&buffer);
        digest.add_line(&line, &origin);
    }
}
