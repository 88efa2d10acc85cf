//! Terminal manners: the progress bars on standard error (a TTY only, not with `--quiet`),
//! colour (`--color auto|always|never`, `NO_COLOR`), and lines on standard error that do not
//! tear the bars.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use racetrace_core::read::Progress;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when standard error is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether to colour standard error.
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var("TERM").is_ok_and(|t| t != "dumb")
            }
        }
    }
}

/// The terminal settings of one run: colour, and the bars while they are drawn.
static TERM: OnceLock<Term> = OnceLock::new();

struct Term {
    color: bool,
    bars: Option<MultiProgress>,
}

/// Set the run's terminal settings once, before anything is printed: bars on a TTY unless
/// `quiet`.
pub fn init(color: ColorChoice, quiet: bool) {
    let bars = (!quiet && io::stderr().is_terminal())
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
    let _ = TERM.set(Term {
        color: color.enabled(),
        bars,
    });
}

/// Write a line to standard error, above the bars when they are drawn. A closed stderr
/// (`2>&1 | head`) must not end the run: `eprintln!` panics when the write fails, and the
/// release profile aborts on a panic before the report files are flushed; here the line is
/// dropped instead.
pub fn note(line: std::fmt::Arguments<'_>) {
    let write = || {
        let _ = writeln!(io::stderr(), "{line}");
    };
    match TERM.get().and_then(|t| t.bars.as_ref()) {
        Some(m) => m.suspend(write),
        None => write(),
    }
}

/// `text` in bold yellow (`warning: …`) when colour is on.
pub fn warning(text: &str) -> String {
    paint("1;33", text)
}

/// `text` in bold red (`error: …`) when colour is on.
pub fn error(text: &str) -> String {
    paint("1;31", text)
}

fn paint(sgr: &str, text: &str) -> String {
    if TERM.get().is_some_and(|t| t.color) {
        format!("\x1b[{sgr}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The bars of one command: one per capture being read, and one for the whole batch when it
/// holds more than one capture. Without a TTY (or with `--quiet`) nothing is drawn and no
/// bytes are counted.
pub struct Bars {
    total: Option<ProgressBar>,
    captures: u64,
}

impl Bars {
    /// Bars for these captures (each the files it merges).
    pub fn new(captures: &[(Vec<String>, std::path::PathBuf)]) -> Bars {
        let Some(multi) = TERM.get().and_then(|t| t.bars.as_ref()) else {
            return Bars {
                total: None,
                captures: 0,
            };
        };
        let n = captures.len() as u64;
        let total = (n > 1).then(|| {
            let bytes: u64 = captures.iter().map(|(f, _)| size_of(f).unwrap_or(0)).sum();
            let bar = multi.add(ProgressBar::new(bytes));
            bar.set_style(style(
                "{prefix:>9} [{bar:30.green/blue}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg} ETA {eta}",
            ));
            bar.set_prefix("batch");
            bar.set_message(format!("0/{n} captures"));
            bar
        });
        Bars { total, captures: n }
    }

    /// A bar for one capture and the [`Progress`] that moves it (and the batch's), or `None`
    /// when nothing is drawn.
    pub fn start(&self, inputs: &[String], label: &Path) -> Option<(ProgressBar, Progress)> {
        let multi = TERM.get().and_then(|t| t.bars.as_ref())?;
        let bar = match size_of(inputs) {
            Some(len) => multi.add(ProgressBar::new(len)),
            None => multi.add(ProgressBar::no_length()),
        };
        bar.set_style(style(
            "{prefix:>9} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {wide_msg}",
        ));
        bar.set_prefix("reading");
        bar.set_message(label.display().to_string());
        let (b, total) = (bar.clone(), self.total.clone());
        let progress = Progress(Arc::new(move |n| {
            b.inc(n);
            if let Some(t) = &total {
                t.inc(n);
            }
        }));
        Some((bar, progress))
    }

    /// One capture is done: its bar goes, the batch's counts it.
    pub fn done(&self, bar: Option<ProgressBar>, done: u64) {
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if let Some(t) = &self.total {
            t.set_message(format!("{done}/{} captures", self.captures));
        }
    }

    /// The batch is over: its bar goes too.
    pub fn finish(&self) {
        if let Some(t) = &self.total {
            t.finish_and_clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    let color = TERM.get().is_some_and(|t| t.color);
    // Colour codes in the template are dropped when colour is off.
    let t = if color {
        template.to_string()
    } else {
        strip_colors(template)
    };
    ProgressStyle::with_template(&t)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// `{bar:30.cyan/blue}` → `{bar:30}`.
fn strip_colors(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{bar:") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find('}').unwrap_or(tail.len() - 1);
        let inner = &tail[..end];
        out.push_str(inner.split('.').next().unwrap_or(inner));
        out.push('}');
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The bytes stored in these files (`None` for standard input or an unreadable file).
fn size_of(files: &[String]) -> Option<u64> {
    files
        .iter()
        .map(|f| {
            (f != "-")
                .then(|| std::fs::metadata(f).ok().map(|m| m.len()))
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_lose_their_colours() {
        assert_eq!(
            strip_colors("{prefix} [{bar:30.cyan/blue}] {bytes}"),
            "{prefix} [{bar:30}] {bytes}"
        );
        assert_eq!(strip_colors("{msg}"), "{msg}");
    }
}
