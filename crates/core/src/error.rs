//! The one error type, and the warnings (counted diagnostics) that never abort an analysis.
//!
//! An [`Error`] means an input could not be read as a capture at all, or the command line was
//! wrong: exit code 2. Everything that goes wrong *inside* a readable capture (a truncated
//! record, an unknown link type, a damaged block) is a [`Warning`] that names the record, and
//! the analysis goes on with whatever is readable.

use std::path::PathBuf;

/// A failure that stops the analysis of one input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The input as given.
        file: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{file}: empty file, not a capture")]
    Empty {
        /// The input as given.
        file: String,
    },
    /// The file's first bytes are neither a pcap nor a pcapng header.
    #[error("{file}: not a pcap or pcapng capture ({detail})")]
    NotACapture {
        /// The input as given.
        file: String,
        /// What was found instead.
        detail: String,
    },
    /// Connections past `--memory-limit` could not be spilled to (or read back from) the
    /// temporary folder: no report is made from part of the capture.
    #[error("{file}: {detail} (set --temp-dir to a folder with room, or raise --memory-limit)")]
    Spill {
        /// The input as given.
        file: String,
        /// What failed, and where.
        detail: String,
    },
    /// An output could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The output path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The command line asked for something impossible.
    #[error("{0}")]
    Usage(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A problem inside a readable capture: counted, reported, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// A short machine-readable kind (`truncated`, `absurd_length`, `unknown_link_type`, …).
    pub kind: &'static str,
    /// The record (1-based packet number) it concerns, if one.
    pub packet: Option<u64>,
    /// A sentence for people, naming the file.
    pub message: String,
}

/// Collects warnings, folding repeats of one kind into a count so a capture with a million bad
/// packets yields a readable list.
#[derive(Debug, Default)]
pub struct Diagnostics {
    warnings: Vec<Warning>,
    repeats: Vec<(&'static str, u64)>,
}

impl Diagnostics {
    /// Keep at most this many warnings of one kind; later ones are only counted.
    const PER_KIND: usize = 5;

    /// Record a warning.
    pub fn warn(&mut self, kind: &'static str, packet: Option<u64>, message: String) {
        let seen = self.warnings.iter().filter(|w| w.kind == kind).count();
        if seen < Self::PER_KIND {
            self.warnings.push(Warning {
                kind,
                packet,
                message,
            });
        } else if let Some(r) = self.repeats.iter_mut().find(|r| r.0 == kind) {
            r.1 += 1;
        } else {
            self.repeats.push((kind, 1));
        }
    }

    /// All warnings, with one summary line per kind whose repeats were folded.
    pub fn into_warnings(mut self) -> Vec<Warning> {
        for (kind, n) in self.repeats {
            self.warnings.push(Warning {
                kind,
                packet: None,
                message: format!("{n} more warnings of kind {kind} not listed"),
            });
        }
        self.warnings
    }

    /// Warnings so far (for tests and the terminal).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }
}
