//! Command line: clap arguments → a validated [`Options`] and the command to
//! run. `main` maps [`run`]'s outcome to the exit code.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cpu::{Spent, Started};
use crate::domain::Stage;
use crate::error::Error;
use crate::model::Analysis;
use crate::render;
use crate::render::output::{write_folder, IndexEntry, Outputs};
use crate::Options;

mod term;
pub use term::ColorChoice;
use term::{note, Bars};

/// Explains connection races (Happy Eyeballs also-rans, duplicate WebSocket upgrades,
/// load-balancer backend switches, stale connection reuse) in pcap/pcapng captures.
#[derive(Debug, Parser)]
#[command(name = "racetrace", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// No progress bar and no warning lines on standard error (errors are still printed;
    /// every warning stays in the JSON report).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Colour on standard error: auto (a terminal, and `NO_COLOR` unset), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse captures and write the report (JSON on stdout with `--json -`).
    Analyze(AnalyzeArgs),
    /// List every TCP connection attempt.
    Connections(ConnectionsArgs),
    /// List the Happy Eyeballs races.
    Races(CommonArgs),
    /// List requests sent on connections the server had already given up (stale reuse).
    Stale(CommonArgs),
    /// List the backends told apart by TCP timestamp clocks, and each client's sequence.
    Backends(CommonArgs),
    /// CI gate: exit 1 when a rule is violated (one line per violation), 2 on unreadable input.
    Check(CheckArgs),
    /// Print a shell completion script (`racetrace completions bash > /etc/bash_completion.d/racetrace`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff: `racetrace man | man -l -`).
    Man,
}

/// Inputs and detector settings shared by every command.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Capture files (pcap, pcapng, gzip/zstd-compressed), directories, or `-` for stdin.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Analyse all inputs as one capture in time order (rotated capture files).
    #[arg(long)]
    pub merge: bool,
    /// Name a service: `--service www.example=198.51.100.7,2001:db8::7` (repeatable).
    #[arg(long = "service", value_name = "NAME=ADDR[,ADDR…]")]
    pub services: Vec<String>,
    /// Longest gap between successive attempts of one race, in ms.
    #[arg(long, default_value_t = 2000)]
    pub race_window_ms: u64,
    /// Flush a connection after this long without packets, in seconds.
    #[arg(long, default_value_t = 600)]
    pub idle_timeout_s: u64,
    /// An also-ran cancelled beyond this stage is a late cancel.
    #[arg(long, value_enum, default_value_t = CancelBy::Tls)]
    pub cancel_by: CancelBy,
    /// A client send after this much quiet on a connection that served a response is
    /// checked for stale reuse, in ms.
    #[arg(long, default_value_t = 1000)]
    pub reuse_idle_ms: u64,
    /// A retry after a stale reuse starts within this long after the failure, in seconds.
    #[arg(long, default_value_t = 5)]
    pub retry_window_s: u64,
    /// Report only this client (either of its addresses).
    #[arg(long, value_name = "ADDR")]
    pub client: Option<IpAddr>,
    /// Report only this service.
    #[arg(long, value_name = "NAME")]
    pub only_service: Option<String>,
    /// Report only this server port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Report only connections starting at or after this time (RFC 3339 or seconds since
    /// the epoch).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Report only connections starting at or before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `--cancel-by`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CancelBy {
    /// RFC 8305 §6: cancel once a TCP handshake completes.
    Tcp,
    /// Happy Eyeballs v3 draft: waiting for TLS is allowed.
    Tls,
}

/// `analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Inputs and settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Write the JSON report to this file (`-`: standard output, one document per line).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Write one folder of reports per capture under this directory, plus `index.html` and
    /// `summary.csv` for the batch.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Outputs written under `--out`: any of html,png,svg,csv,parquet,json.
    #[arg(long, default_value = "html,png,svg,csv,parquet,json")]
    pub outputs: String,
    /// Print one line per capture on stderr: packets, bytes, time taken and throughput,
    /// connections, and the most connections the tracker held at once.
    #[arg(long)]
    pub stats: bool,
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Inputs and settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Fail when also-rans per attempt (connections whose SYN was seen) exceed this.
    #[arg(long, value_name = "R")]
    pub max_also_ran_rate: Option<f64>,
    /// Fail when any attempt delay exceeds this many ms.
    #[arg(long, value_name = "N")]
    pub max_attempt_delay_ms: Option<f64>,
    /// Findings that fail the check.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub fail_on: Vec<crate::check::Rule>,
    /// Write JUnit XML here (one test case per capture and rule).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// `connections`.
#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    /// Inputs and settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format (default: table on a terminal, CSV otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// Output formats of listing commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// Comma-separated values.
    Csv,
    /// The JSON report.
    Json,
}

impl CommonArgs {
    /// Validated options.
    pub fn options(&self) -> Result<Options, Error> {
        let mut opts = Options {
            filter: crate::detect::filter::Filter {
                client: self.client,
                service: self.only_service.clone(),
                port: self.port,
                since: self.since.as_deref().map(parse_time).transpose()?,
                until: self.until.as_deref().map(parse_time).transpose()?,
            },
            ..Options::default()
        };
        opts.detect.race_window =
            i64::try_from(self.race_window_ms).unwrap_or(i64::MAX / 1_000_000) * 1_000_000;
        opts.track.idle_timeout =
            i64::try_from(self.idle_timeout_s).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000;
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000;
        opts.track.reuse_idle = ms(self.reuse_idle_ms);
        opts.detect.retry_window = ms(self.retry_window_s.saturating_mul(1000));
        opts.detect.cancel_by = match self.cancel_by {
            CancelBy::Tcp => Stage::Tcp,
            CancelBy::Tls => Stage::Tls,
        };
        for s in &self.services {
            let (name, addrs) = s.split_once('=').ok_or_else(|| {
                Error::Usage(format!("--service {s}: expected NAME=ADDR[,ADDR…]"))
            })?;
            let addrs = addrs
                .split(',')
                .map(|a| a.trim().parse::<IpAddr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Usage(format!("--service {s}: {e}")))?;
            opts.detect.services.push((name.to_string(), addrs));
        }
        Ok(opts)
    }

    /// The captures to analyse: each input (directories walked recursively, in name order)
    /// as its own capture, or all of them as one with `--merge`. Each capture carries the
    /// path relative to the directory it was found under, for output folders.
    pub fn captures(&self) -> Result<Vec<(Vec<String>, PathBuf)>, Error> {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for input in &self.inputs {
            let p = Path::new(input);
            if input != "-" && p.is_dir() {
                let mut found = Vec::new();
                walk(p, &mut found).map_err(|source| Error::Io {
                    file: input.clone(),
                    source,
                })?;
                found.sort();
                for f in found {
                    let rel = f.strip_prefix(p).unwrap_or(&f).to_path_buf();
                    files.push((f.to_string_lossy().into_owned(), rel));
                }
            } else {
                let rel = PathBuf::from(
                    p.file_name()
                        .map(|n| n.to_os_string())
                        .unwrap_or_else(|| "stdin".into()),
                );
                files.push((input.clone(), rel));
            }
        }
        if self.merge {
            let rel = files.first().map(|f| f.1.clone()).unwrap_or_default();
            return Ok(vec![(files.into_iter().map(|f| f.0).collect(), rel)]);
        }
        Ok(files.into_iter().map(|(f, rel)| (vec![f], rel)).collect())
    }
}

/// `--since`/`--until`: seconds since the epoch (`1795393700.5`) or an RFC 3339 UTC time
/// (`2026-11-23T00:28:20Z`, fractions allowed).
pub fn parse_time(s: &str) -> Result<crate::domain::Nanos, Error> {
    let bad = || {
        Error::Usage(format!(
            "time {s:?}: expected seconds since the epoch or YYYY-MM-DDTHH:MM:SS[.frac]Z"
        ))
    };
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9).round() as i64);
    }
    let t = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (&[y, mo, da], &[hh, mi, ss]) = (d.as_slice(), h.as_slice()) else {
        return Err(bad());
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac_ns = format!("{frac:0<9}")
        .get(..9)
        .and_then(|f| f.parse::<i64>().ok())
        .ok_or_else(bad)?;
    Ok(((days * 86_400 + hh * 3600 + mi * 60 + ss) * 1_000_000_000) + frac_ns)
}

/// Capture file name endings recognised when walking directories.
const CAPTURE_EXTENSIONS: [&str; 8] = [
    ".pcap",
    ".pcapng",
    ".cap",
    ".dmp",
    ".gz",
    ".zst",
    ".pcap.gz",
    ".pcapng.zst",
];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if CAPTURE_EXTENSIONS.iter().any(|e| name.ends_with(e)) {
                out.push(path);
            }
        }
    }
    Ok(())
}

/// The folder name for a capture: its relative path with every capture extension dropped
/// (`a/x.pcap.gz` → `a/x`).
pub fn stem(rel: &Path) -> PathBuf {
    let mut name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    loop {
        let lower = name.to_lowercase();
        match [".gz", ".zst", ".pcapng", ".pcap", ".cap", ".dmp"]
            .iter()
            .find(|e| lower.ends_with(*e))
        {
            Some(e) if name.len() > e.len() => name.truncate(name.len() - e.len()),
            _ => break,
        }
    }
    rel.with_file_name(name)
}

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
        Command::Races(common) => each(
            common,
            quiet,
            &mut outcome,
            |a| {
                let mut w = BufWriter::new(stdout.lock());
                render::terminal::races_table(a, &mut w)?;
                w.flush()
            },
            "races",
        ),
        Command::Backends(common) => each(
            common,
            quiet,
            &mut outcome,
            |a| {
                let mut w = BufWriter::new(stdout.lock());
                render::terminal::backends_table(a, &mut w)?;
                w.flush()
            },
            "backends",
        ),
        Command::Check(args) => check(args, &mut outcome),
        Command::Stale(common) => each(
            common,
            quiet,
            &mut outcome,
            |a| {
                let mut w = BufWriter::new(stdout.lock());
                render::terminal::stale_table(a, &mut w)?;
                w.flush()
            },
            "stale",
        ),
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
            (Some(bar), crate::analyze(inputs, &opts))
        }
        None => (None, crate::analyze(inputs, opts)),
    };
    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    bars.done(bar, n);
    result
}

/// One line per kind of warning on standard error (`render::terminal::warning_lines`), of the
/// kinds `command` concerns: a detector's warnings (the backends' "no backend identifiable")
/// only where that detector's findings are shown; the input's (damaged records, unknown link
/// types) everywhere. None with `--quiet`.
fn print_warnings(warnings: &[crate::error::Warning], command: &str, quiet: bool) {
    if quiet {
        return;
    }
    let shown: Vec<crate::error::Warning> = warnings
        .iter()
        .filter(|w| concerns(w.kind, command))
        .cloned()
        .collect();
    for line in crate::render::terminal::warning_lines(&shown) {
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
    let gate = crate::check::Gate {
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
                let cases = crate::check::check(&a, &gate);
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
        std::fs::write(path, crate::check::junit(&results, &unreadable)).map_err(|source| {
            Error::Write {
                path: path.clone(),
                source,
            }
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
    let each: Vec<String> = t
        .detectors
        .iter()
        .map(|d| match d.spent.cores().filter(|_| single) {
            Some(cores) => format!("{} {:.3} s ({cores:.2} cores)", d.name, d.spent.wall),
            None => format!("{} {:.3} s", d.name, d.spent.wall),
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
        mb(crate::memory::peak_rss_bytes())
    ));
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
    let mut json_out: Option<Box<dyn Write>> = match args.json.as_deref() {
        Some("-") => Some(Box::new(BufWriter::with_capacity(
            1 << 20,
            io::stdout().lock(),
        ))),
        Some(path) => Some(Box::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path).map_err(|source| Error::Write {
                path: path.into(),
                source,
            })?,
        ))),
        None => None,
    };
    let mut index: Vec<IndexEntry> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let bars = Bars::new(&captures);
    let done = std::sync::atomic::AtomicU64::new(0);
    // As many captures at a time as there are threads, each on its own rayon task (a capture
    // is analysed by one reader thread and the shared decoders); their outputs are written in
    // input order, so they do not depend on the thread count, and each analysis is dropped
    // once written: memory follows the captures in flight, not the batch.
    for group in captures.chunks(rayon::current_num_threads().max(1)) {
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
                    if let Some(w) = json_out.as_mut() {
                        let res = render::json::write(&a, &mut *w).and_then(|_| writeln!(w));
                        res.map_err(|source| Error::Write {
                            path: args.json.clone().unwrap_or_default().into(),
                            source,
                        })?;
                    }
                    if args.stats {
                        // The CPU time is the process's: with several captures analysed at
                        // once it would count the others too.
                        let single = captures.len() == 1;
                        print_stats(&a, started.stop().plus(folder), single);
                    }
                    index.push(IndexEntry::new(&stem, &a));
                    crate::memory::drop_in_background(a);
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
    if let Some(mut w) = json_out {
        w.flush().map_err(|source| Error::Write {
            path: "<json>".into(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_drop_every_capture_extension() {
        assert_eq!(stem(Path::new("a/x.pcap.gz")), PathBuf::from("a/x"));
        assert_eq!(stem(Path::new("y.pcapng")), PathBuf::from("y"));
        assert_eq!(stem(Path::new("z.PCAP.zst")), PathBuf::from("z"));
    }
}
