//! Command line: clap arguments (`args.rs`) → a validated [`Options`] and the command to
//! run; the terminal's bars, colours and warning lines (`term.rs`). `main` maps [`run`]'s
//! outcome to the exit code.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use racetrace_core::engine::cpu::{Spent, Started};
use racetrace_core::error::Error;
use racetrace_core::model::Analysis;
use racetrace_core::Options;
use racetrace_report as render;
use racetrace_report::output::{write_folder, IndexEntry, Outputs};

mod args;
pub mod check;
mod term;
pub use args::*;
use term::{note, Bars};

/// How a run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Some input could not be read, or the command line was wrong.
    pub error: bool,
    /// `check` found a rule violated.
    pub violation: bool,
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Outcome {
    term::init(cli.color, cli.quiet);
    let mut outcome = Outcome::default();
    let stdout = io::stdout();
    let quiet = cli.quiet;
    let result = match &cli.command {
        Command::Analyze(args) => analyze(args, quiet, &mut outcome),
        Command::Connections(args) => each(
            &args.common,
            quiet,
            &mut outcome,
            |a| {
                let tty = stdout.is_terminal();
                let mut w = BufWriter::new(stdout.lock());
                match args
                    .format
                    .unwrap_or(if tty { Format::Table } else { Format::Csv })
                {
                    Format::Table => render::terminal::connections_table(a, &mut w)?,
                    Format::Csv => render::terminal::connections_csv(a, &mut w)?,
                    Format::Json => {
                        render::json::write(a, &mut w)?;
                        writeln!(w)?;
                    }
                }
                w.flush()
            },
            "connections",
        ),
        Command::Races(common) => listing(common, "races", quiet, &mut outcome, |a, w| {
            render::terminal::races_table(a, w)
        }),
        Command::Backends(common) => listing(common, "backends", quiet, &mut outcome, |a, w| {
            render::terminal::backends_table(a, w)
        }),
        Command::Check(args) => check(args, &mut outcome),
        Command::Stale(common) => listing(common, "stale", quiet, &mut outcome, |a, w| {
            render::terminal::stale_table(a, w)
        }),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut w = BufWriter::new(stdout.lock());
            clap_complete::generate(*shell, &mut Cli::command(), "racetrace", &mut w);
            written(w.flush())
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut w = BufWriter::new(stdout.lock());
            let res = clap_mangen::Man::new(Cli::command()).render(&mut w);
            written(res.and_then(|_| w.flush()))
        }
    };
    if let Err(e) = result {
        fail(&e);
        outcome.error = true;
    }
    outcome
}

/// A listing command: each capture's table on standard output.
fn listing(
    common: &CommonArgs,
    command: &str,
    quiet: bool,
    outcome: &mut Outcome,
    table: impl Fn(&Analysis, &mut dyn Write) -> io::Result<()>,
) -> Result<(), Error> {
    each(
        common,
        quiet,
        outcome,
        |a| {
            let mut w = BufWriter::new(io::stdout().lock());
            table(a, &mut w)?;
            w.flush()
        },
        command,
    )
}

/// A write to standard output: a closed pipe (`| head`) is not an error.
fn written(res: io::Result<()>) -> Result<(), Error> {
    match res {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::Write {
            path: "<stdout>".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// An error on standard error: `racetrace: error: …`.
fn fail(e: &Error) {
    note(format_args!("racetrace: {} {e}", term::error("error:")));
}

/// Analyse one capture with its progress bar (drawn only on a TTY, without `--quiet`).
fn analyze_one(
    inputs: &[String],
    rel: &Path,
    opts: &Options,
    bars: &Bars,
    done: &std::sync::atomic::AtomicU64,
) -> Result<Analysis, Error> {
    let started = bars.start(inputs, rel);
    let (bar, result) = match started {
        Some((bar, progress)) => {
            let opts = Options {
                progress: Some(progress),
                ..opts.clone()
            };
            (Some(bar), racetrace_core::analyze(inputs, &opts))
        }
        None => (None, racetrace_core::analyze(inputs, opts)),
    };
    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    bars.done(bar, n);
    result
}

/// One line per kind of warning on standard error (`render::terminal::warning_lines`), of the
/// kinds `command` concerns: a detector's warnings (the backends' "no backend identifiable")
/// only where that detector's findings are shown; the input's (damaged records, unknown link
/// types) everywhere. None with `--quiet`.
fn print_warnings(warnings: &[racetrace_core::error::Warning], command: &str, quiet: bool) {
    if quiet {
        return;
    }
    let shown: Vec<racetrace_core::error::Warning> = warnings
        .iter()
        .filter(|w| concerns(w.kind, command))
        .cloned()
        .collect();
    for line in racetrace_report::terminal::warning_lines(&shown) {
        let line = line.replacen(
            "racetrace: warning:",
            &format!("racetrace: {}", term::warning("warning:")),
            1,
        );
        note(format_args!("{line}"));
    }
}

/// Whether a warning of `kind` concerns the output of `command`.
fn concerns(kind: &str, command: &str) -> bool {
    match kind {
        "backends_unidentifiable" => matches!(command, "analyze" | "backends" | "check"),
        _ => true,
    }
}

/// Analyse each capture and hand it to `show`; an unreadable input is reported and the
/// others still run.
fn each(
    common: &CommonArgs,
    quiet: bool,
    outcome: &mut Outcome,
    mut show: impl FnMut(&Analysis) -> io::Result<()>,
    command: &str,
) -> Result<(), Error> {
    let opts = common.options()?;
    let captures = common.captures()?;
    let bars = Bars::new(&captures);
    let done = std::sync::atomic::AtomicU64::new(0);
    for (inputs, rel) in &captures {
        match analyze_one(inputs, rel, &opts, &bars, &done) {
            Ok(a) => {
                print_warnings(&a.warnings, command, quiet);
                if let Err(e) = show(&a) {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(Error::Write {
                        path: "<stdout>".into(),
                        source: e,
                    });
                }
            }
            Err(e) => {
                fail(&e);
                outcome.error = true;
            }
        }
    }
    bars.finish();
    Ok(())
}

fn check(args: &CheckArgs, outcome: &mut Outcome) -> Result<(), Error> {
    let gate = crate::cli::check::Gate {
        max_also_ran_rate: args.max_also_ran_rate,
        max_attempt_delay_ms: args.max_attempt_delay_ms,
        fail_on: args.fail_on.clone(),
    };
    let opts = args.common.options()?;
    let mut results = Vec::new();
    let mut unreadable = Vec::new();
    let captures = args.common.captures()?;
    let bars = Bars::new(&captures);
    let done = std::sync::atomic::AtomicU64::new(0);
    for (inputs, rel) in &captures {
        match analyze_one(inputs, rel, &opts, &bars, &done) {
            Ok(a) => {
                let cases = crate::cli::check::check(&a, &gate);
                for c in &cases {
                    for v in &c.violations {
                        // A closed stdout (`| head`) ends the listing, not the run.
                        let _ = writeln!(io::stdout(), "{}: {v}", c.rule);
                        outcome.violation = true;
                    }
                }
                results.push((a.capture.file.clone(), cases));
            }
            Err(e) => {
                fail(&e);
                unreadable.push((inputs.join(", "), e.to_string()));
                outcome.error = true;
            }
        }
    }
    bars.finish();
    if let Some(path) = &args.junit {
        racetrace_report::atomic::write(path, crate::cli::check::junit(&results, &unreadable))
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
    }
    Ok(())
}

/// The `--stats` lines: sizes, the time of each stage and the throughput of the whole, each
/// detector's time, the peaks of memory, and (`single`: one capture analysed, so that the
/// process's CPU time is this capture's) the CPU time of each stage and the cores each stage
/// and detector kept busy.
fn print_stats(a: &Analysis, render: Spent, single: bool) {
    let t = &a.timings;
    let secs = t.read_track.wall + t.detect.wall + render.wall;
    note(format_args!(
        "racetrace: stats: {}: {} packets, {} bytes in {:.3} s ({:.1} MB/s; read+decode+track {:.3} s (after the last read {:.3} s, merging {} connections), detect {:.3} s, render {:.3} s), {} connections, peak {} open ({} in the tracker's tables)",
        a.capture.file,
        a.capture.packets,
        a.capture.bytes,
        secs,
        a.capture.bytes as f64 / secs / 1e6,
        t.read_track.wall,
        t.finish,
        t.merged_late,
        t.detect.wall,
        render.wall,
        a.connections.len(),
        a.peak_open,
        t.table_peak
    ));
    // Passes over the spill: what a detector read back, in spilled connections.
    let on_disk = a.connections.spilled_count().max(1) as f64;
    let each: Vec<String> = t
        .detectors
        .iter()
        .map(|d| {
            let passes = match d.read_back {
                0 => String::new(),
                n => format!(", {:.1} passes", n as f64 / on_disk),
            };
            match d.spent.cores().filter(|_| single) {
                Some(cores) => {
                    format!(
                        "{} {:.3} s ({cores:.2} cores{passes})",
                        d.name, d.spent.wall
                    )
                }
                None if passes.is_empty() => format!("{} {:.3} s", d.name, d.spent.wall),
                None => format!("{} {:.3} s ({})", d.name, d.spent.wall, &passes[2..]),
            }
        })
        .collect();
    note(format_args!(
        "racetrace: stats: detectors: {}",
        each.join(", ")
    ));
    let mb = |b: Option<u64>| {
        b.map_or("?".to_string(), |b| {
            format!("{:.0} MiB", b as f64 / 1_048_576.0)
        })
    };
    note(format_args!(
        "racetrace: stats: peak resident memory of the process: after track {}, after detect {}, after render {}",
        mb(t.rss_track),
        mb(t.rss_detect),
        mb(racetrace_core::engine::memory::peak_rss_bytes())
    ));
    if single {
        let each: Vec<String> = t
            .detectors
            .iter()
            .map(|d| format!("{} {}", d.name, mb(d.peak_rss)))
            .collect();
        note(format_args!(
            "racetrace: stats: peak resident memory after each detector: {}",
            each.join(", ")
        ));
    }
    if a.connections.spilled() {
        note(format_args!(
            "racetrace: stats: spilled connections to {}: {:.0} MiB written",
            a.connections
                .spill_path()
                .and_then(|p| p.parent())
                .map_or("?".into(), |p| p.display().to_string()),
            a.connections.spill_bytes() as f64 / 1_048_576.0
        ));
    }
    let stages = [
        ("read+decode+track", t.read_track),
        ("detect", t.detect),
        ("render", render),
    ];
    let each: Option<Vec<String>> = stages
        .iter()
        .map(|&(name, spent)| {
            let (cpu, cores) = (spent.cpu?, spent.cores()?);
            Some(format!("{name} {cpu:.3} s ({cores:.2} cores)"))
        })
        .collect();
    if let (true, Some(each)) = (single, each) {
        note(format_args!(
            "racetrace: stats: CPU time (user and system, every thread): {}",
            each.join(", ")
        ));
    }
}

/// Where `--json` writes: standard output for `-`, or a file that appears whole once every
/// capture is written (an error on the way leaves no partial report).
enum JsonOut {
    Stdout(BufWriter<io::StdoutLock<'static>>),
    File(racetrace_report::atomic::AtomicFile),
}

impl JsonOut {
    fn open(json: Option<&str>) -> Result<Option<JsonOut>, Error> {
        Ok(match json {
            Some("-") => Some(JsonOut::Stdout(BufWriter::with_capacity(
                1 << 20,
                io::stdout().lock(),
            ))),
            Some(path) => Some(JsonOut::File(
                racetrace_report::atomic::AtomicFile::create(Path::new(path)).map_err(
                    |source| Error::Write {
                        path: path.into(),
                        source,
                    },
                )?,
            )),
            None => None,
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            JsonOut::Stdout(w) => w,
            JsonOut::File(f) => f,
        }
    }

    /// Flush standard output, or rename the file into place.
    fn finish(self) -> io::Result<()> {
        match self {
            JsonOut::Stdout(mut w) => w.flush(),
            JsonOut::File(f) => f.commit(),
        }
    }
}

fn analyze(args: &AnalyzeArgs, quiet: bool, outcome: &mut Outcome) -> Result<(), Error> {
    use rayon::prelude::*;
    let opts = args.common.options()?;
    let outputs = Outputs::parse(&args.outputs)?;
    if args.json.is_none() && args.out.is_none() {
        return Err(Error::Usage(
            "analyze: give --json FILE|- or --out DIR".into(),
        ));
    }
    let captures = args.common.captures()?;
    let mut json_out = JsonOut::open(args.json.as_deref())?;
    let mut index: Vec<IndexEntry> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut written = 0usize;
    let bars = Bars::new(&captures);
    let done = std::sync::atomic::AtomicU64::new(0);
    // As many captures at a time as there are threads, each on its own rayon task (a capture
    // is analysed by one reader thread and the shared decoders); their outputs are written in
    // input order, so they do not depend on the thread count, and each analysis is dropped
    // once written: memory follows the captures in flight, not the batch.
    let at_once = rayon::current_num_threads().max(1);
    // The memory limit is the process's: the captures in flight share it.
    let opts = opts.shared_by(at_once.min(captures.len()));
    for group in captures.chunks(at_once) {
        let results: Vec<Result<(PathBuf, Analysis, Spent), Error>> = group
            .par_iter()
            .map(|(inputs, rel)| {
                let a = analyze_one(inputs, rel, &opts, &bars, &done)?;
                let stem = stem(rel);
                let started = Started::now();
                if let Some(dir) = &args.out {
                    write_folder(&a, &dir.join(&stem), outputs, opts.detect.cancel_by)?;
                }
                Ok((stem, a, started.stop()))
            })
            .collect();
        for r in results {
            match r {
                Ok((stem, a, folder)) => {
                    print_warnings(&a.warnings, "analyze", quiet);
                    let started = Started::now();
                    if let Some(w) = json_out.as_mut().map(JsonOut::writer) {
                        let res = render::json::write(&a, &mut *w).and_then(|_| writeln!(w));
                        res.map_err(|source| Error::Write {
                            path: args.json.clone().unwrap_or_default().into(),
                            source,
                        })?;
                        written += 1;
                    }
                    if args.stats {
                        // The CPU time is the process's: with several captures analysed at
                        // once it would count the others too.
                        let single = captures.len() == 1;
                        print_stats(&a, started.stop().plus(folder), single);
                    }
                    index.push(IndexEntry::new(&stem, &a));
                    racetrace_core::engine::memory::drop_in_background(a);
                }
                Err(e) => {
                    fail(&e);
                    failed.push(e.to_string());
                    outcome.error = true;
                }
            }
        }
    }
    bars.finish();
    if let Some(dir) = &args.out {
        render::output::write_index(dir, &index, &failed)?;
    }
    // A file with no capture's report in it would pass for an empty report: when every
    // capture failed, none is left (its temporary is removed).
    if let Some(w) = json_out.filter(|w| written > 0 || matches!(w, JsonOut::Stdout(_))) {
        w.finish().map_err(|source| Error::Write {
            path: args.json.clone().unwrap_or_default().into(),
            source,
        })?;
    }
    Ok(())
}
