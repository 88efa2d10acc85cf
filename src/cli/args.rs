//! The command line as clap parses it, and its validation into [`Options`] and the list of
//! captures to analyse.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::term::ColorChoice;
use racetrace_core::detect::omit::Keep;
use racetrace_core::domain::Stage;
use racetrace_core::error::Error;
use racetrace_core::Options;

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
    /// Which connections the report lists: `auto` (all, unless floods and scans are most of
    /// the capture: those are left to floods[] and scans[]), `all`, `findings` (those the
    /// findings cite, and short-lived ones nothing explains) or `none` (only those findings
    /// cite). Every connection a race, sequence, backend or stale reuse cites stays.
    #[arg(long, value_enum, default_value = "auto")]
    pub connections: KeepArg,
    /// Memory for the whole run (e.g. `1G`, `512M`, `none`; the captures of a batch in
    /// flight share it): past a fifth of it, finished connections spill to a file in
    /// `--temp-dir` (deleted when racetrace exits) and are read back a block at a time; the
    /// connection table gets a fifth (past it the quietest attempts, unanswered SYNs first,
    /// are finished early and counted in `summary.evicted_early`). `none`: everything in
    /// memory (fastest, unbounded).
    #[arg(long, value_name = "SIZE", default_value = "1G")]
    pub memory_limit: String,
    /// Folder for the spill file (default: the system's temporary folder, `$TMPDIR`).
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Benchmarks only: read the capture and hand each batch back undecoded (times the
    /// reader alone; the report is empty).
    #[arg(long, hide = true)]
    pub bench_read_only: bool,
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
    pub fail_on: Vec<crate::cli::check::Rule>,
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

/// `--connections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeepArg {
    /// All, unless floods and scans are most of the capture.
    Auto,
    /// All.
    All,
    /// Those findings cite, and short-lived ones nothing explains.
    Findings,
    /// Only those findings cite.
    None,
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
            filter: racetrace_core::detect::filter::Filter {
                client: self.client,
                service: self.only_service.clone(),
                port: self.port,
                since: self.since.as_deref().map(parse_time).transpose()?,
                until: self.until.as_deref().map(parse_time).transpose()?,
            },
            read_only: self.bench_read_only,
            keep: match self.connections {
                KeepArg::Auto => Keep::Auto,
                KeepArg::All => Keep::All,
                KeepArg::Findings => Keep::Findings,
                KeepArg::None => Keep::None,
            },
            ..Options::default()
        };
        if let Some(limit) = parse_size(&self.memory_limit)? {
            let dir = self.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
            opts.spill = racetrace_core::model::store::SpillConfig::for_limit(limit, dir);
            // A fifth for the trackers' tables: past it the quietest attempts leave early.
            opts.track.table_cap = racetrace_core::track::TrackConfig::table_cap_for(limit / 5);
        }
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
pub fn parse_time(s: &str) -> Result<racetrace_core::domain::Nanos, Error> {
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

/// `--memory-limit`: bytes with an optional K, M, G or T suffix (powers of 1024), or `none`.
fn parse_size(s: &str) -> Result<Option<usize>, Error> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = || {
        Error::Usage(format!(
            "--memory-limit {s}: expected a size such as 1G, 512M or none"
        ))
    };
    let upper = t.to_ascii_uppercase();
    let digits = upper.trim_end_matches(['B', 'I']);
    let (num, shift) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 10),
        Some('M') => (&digits[..digits.len() - 1], 20),
        Some('G') => (&digits[..digits.len() - 1], 30),
        Some('T') => (&digits[..digits.len() - 1], 40),
        _ => (digits, 0),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(n.is_finite() && n > 0.0) {
        return Err(bad());
    }
    Ok(Some((n * (1u64 << shift) as f64) as usize))
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
