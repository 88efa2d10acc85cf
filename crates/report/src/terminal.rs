//! Terminal and CSV renderings of the connection table and the races, for people. The UTC
//! date is stated once in each table's header line and rows give times of day to the
//! millisecond; durations carry their units and are relative to the connection's first SYN.
//! The CSV keeps the machine forms.

use std::io::{self, Write};

use racetrace_core::domain::{ms_between, Nanos};
use racetrace_core::model::Analysis;

use crate::human::{clock, day, rel_ms};

fn rel(t: Option<Nanos>, base: Option<Nanos>) -> String {
    match (t, base) {
        (Some(t), Some(b)) => rel_ms(ms_between(b, t)),
        _ => "-".into(),
    }
}

/// `(times UTC, 2026-11-01)`: the date that the rows' times of day fall on.
fn dated(a: &Analysis) -> (String, String) {
    let d = day(a.epoch());
    (format!(" (times UTC, {d})"), d)
}

/// One line per connection, aligned for a terminal.
pub fn connections_table<W: Write>(a: &Analysis, mut w: W) -> io::Result<()> {
    let (note, d) = dated(a);
    writeln!(
        w,
        "# {} — {}, {}{note}",
        a.capture.file,
        count(a.capture.packets, "packet"),
        count(a.connections.len() as u64, "connection")
    )?;
    writeln!(
        w,
        "{:>4} {:>13} {:<42} {:<14} {:>5} {:>10} {:>10} {:<10} {:<9} {:>9} {:>9} {:<6} history",
        "id",
        "records",
        "client",
        "syn",
        "syns",
        "synack",
        "established",
        "end",
        "stage",
        "bytes c",
        "bytes s",
        "state"
    )?;
    for c in a.connections.iter().filter(|c| !c.omitted) {
        let r = &c.rec;
        let syn = r.syn_time.get();
        writeln!(
            w,
            "{:>4} {:>13} {:<42} {:<14} {:>5} {:>10} {:>10} {:<10} {:<9} {:>9} {:>9} {:<6} {}",
            c.id,
            format!("{}-{}", r.first_record, r.last_record),
            format!("{} → {}", r.client, r.server),
            syn.map(|t| clock(t, &d))
                .unwrap_or_else(|| format!("({})", clock(r.first_time, &d))),
            r.syn_count,
            rel(r.synack_time.get(), syn),
            rel(r.established_time.get(), syn),
            r.end_reason(),
            r.stage().as_str(),
            r.bytes[0],
            r.bytes[1],
            r.conn_state(),
            r.history.as_str()
        )?;
    }
    Ok(())
}

/// The connection table as CSV: the `connections` table of `--out` (the same columns, from
/// the same row type) with the capture's file name first.
pub fn connections_csv<W: Write>(a: &Analysis, w: W) -> io::Result<()> {
    use polars::prelude::{Column, CsvWriter, SerWriter};
    let mut df = crate::tables::connections(a).map_err(io::Error::other)?;
    let file = Column::new_scalar(
        "file".into(),
        polars::prelude::Scalar::from(polars::prelude::PlSmallStr::from(a.capture.file.as_str())),
        df.height(),
    );
    df.insert_column(0, file).map_err(io::Error::other)?;
    CsvWriter::new(w)
        .include_header(true)
        .finish(&mut df)
        .map_err(io::Error::other)
}

/// Quote a CSV field when it needs it.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One line per race, then a summary.
pub fn races_table<W: Write>(a: &Analysis, mut w: W) -> io::Result<()> {
    let (note, d) = dated(a);
    writeln!(
        w,
        "# {} — {}, {}{note}",
        a.capture.file,
        count(a.races.len() as u64, "race"),
        count(a.summary.also_rans as u64, "also-ran")
    )?;
    for r in &a.races {
        let attempts: Vec<String> = r
            .attempts
            .iter()
            .zip(&r.families)
            .zip(&r.transports)
            .map(|((id, f), t)| {
                let quic = if *t == "quic" { "/quic" } else { "" };
                format!("#{id} {}{quic}", f.as_str())
            })
            .collect();
        let delays: Vec<String> = r
            .attempt_delays_ms
            .iter()
            .map(|d| format!("{d:.1}"))
            .collect();
        let winner = match r.winner.and_then(|i| a.connections.get(i)) {
            Some(c) => format!("#{} ipv{}", c.id, c.rec.family().digit()),
            None => "none".into(),
        };
        let fates: Vec<String> = r
            .also_ran_cancel
            .iter()
            .map(|x| {
                let after = x
                    .after_winner_ms
                    .map(|m| format!(" {m:+.1} ms"))
                    .unwrap_or_default();
                let (fate, stage) = (x.fate.as_str(), x.stage.as_str());
                format!("#{} {fate}@{stage}{after}", x.id)
            })
            .collect();
        writeln!(
            w,
            "race {:>3} {} {} → {}  attempts {}  delay {} ms  winner {}  also-rans: {}{}{}{}",
            r.id,
            clock(r.start_time, &d),
            r.client,
            r.service,
            attempts.join(", "),
            if delays.is_empty() {
                "-".into()
            } else {
                delays.join("/")
            },
            winner,
            fates.join(", "),
            if r.duplicate_upgrade {
                "  DUPLICATE UPGRADE"
            } else {
                ""
            },
            if r.findings.is_empty() {
                String::new()
            } else {
                format!("  [{}]", r.findings.join(", "))
            },
            if r.hev3.is_empty() {
                String::new()
            } else {
                format!("  [HEv3: {}]", r.hev3.join(", "))
            }
        )?;
    }
    let med = a
        .summary
        .median_attempt_delay_ms
        .map(|m| format!("{m:.1} ms"))
        .unwrap_or_else(|| "-".into());
    writeln!(
        w,
        "summary: {}, {}, {}, median attempt delay {}, {}",
        count(a.summary.connections as u64, "connection"),
        count(a.summary.races as u64, "race"),
        count(a.summary.also_rans as u64, "also-ran"),
        med,
        count(a.summary.duplicate_upgrades as u64, "duplicate upgrade")
    )
}

/// One line per stale reuse, then the servers' observed idle timeouts.
pub fn stale_table<W: Write>(a: &Analysis, mut w: W) -> io::Result<()> {
    let (note, d) = dated(a);
    writeln!(
        w,
        "# {} — {}{note}",
        a.capture.file,
        count(a.stale_reuses.len() as u64, "stale reuse")
    )?;
    for e in &a.stale_reuses {
        let fin = match e.fin_to_request_ms {
            Some(d) => format!("server FIN {d:.1} ms before"),
            None => "server FIN not captured".into(),
        };
        let retry = match (e.retry, e.retry_delay_ms) {
            (Some(r), Some(d)) => format!(
                "retried on #{r} after {d:.1} ms{}",
                match e.retry_same_request {
                    Some(true) => " (same request)",
                    Some(false) => " (different request)",
                    None => "",
                }
            ),
            _ => "no retry".into(),
        };
        writeln!(
            w,
            "#{} {} {} → {}  {}  after {:.0} ms idle, {}; failed by {}{}  [{}]  {}",
            e.connection,
            clock(e.request_time, &d),
            e.client,
            e.service,
            e.request.as_deref().unwrap_or("(request not visible)"),
            e.idle_ms,
            fin,
            match e.failure {
                racetrace_core::track::StaleFailure::Rst => "RST",
                racetrace_core::track::StaleFailure::NoResponse => "no response",
            },
            e.time_to_failure_ms
                .map(|t| format!(" {t:.1} ms later"))
                .unwrap_or_default(),
            serde_json::to_value(e.cause)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            retry
        )?;
    }
    for s in &a.services {
        if let Some(t) = s.server_idle_timeout_ms {
            writeln!(
                w,
                "service {}: the server closed idle connections after {:.0} ms (median of {})",
                service_label(s),
                t,
                s.server_idle_closes
            )?;
        }
    }
    Ok(())
}

/// `n` and `word`, in the plural unless `n` is 1 (`1 race`, `2 races`, `2 family switches`).
fn count(n: u64, word: &str) -> String {
    let ending = match (n, word.ends_with("ch") || word.ends_with('s')) {
        (1, _) => "",
        (_, true) => "es",
        (_, false) => "s",
    };
    format!("{n} {word}{ending}")
}

/// A service as the tables name it: its name and port, the port once (an unnamed service is
/// already called `ADDRESS PORT`).
fn service_label(s: &racetrace_core::model::Service) -> String {
    let port = s.server_port.to_string();
    match s.name.strip_suffix(&port) {
        Some(address) if address.ends_with(' ') => s.name.clone(),
        _ => format!("{} port {port}", s.name),
    }
}

/// Per service the backends (rate, offset, skew, addresses, connections) and each client's
/// sequence as a strip (`6B1 6B1 4B2 6? 4B3`: family digit and backend, `?` unknown).
pub fn backends_table<W: Write>(a: &Analysis, mut w: W) -> io::Result<()> {
    writeln!(
        w,
        "# {} — {}, {}, {}",
        a.capture.file,
        count(a.summary.backends as u64, "backend"),
        count(a.summary.family_switches as u64, "family switch"),
        count(a.summary.backend_switches as u64, "backend switch")
    )?;
    for s in &a.services {
        let share = s
            .backend_identified_share
            .map(|x| format!("{:.0}% of connections identified", 100.0 * x))
            .unwrap_or_else(|| "no TCP timestamps".into());
        writeln!(w, "service {}: {}", service_label(s), share)?;
        for b in a.backends.iter().filter(|b| b.services.contains(&s.name)) {
            writeln!(
                w,
                "  {} {} Hz{}  offset {}  skew {}  via {}  {} connections  confidence {:.2}",
                b.id,
                b.clock_hz
                    .map(|h| format!("{h:.0}"))
                    .unwrap_or_else(|| "?".into()),
                if b.rate_inferred { " (inferred)" } else { "" },
                b.offset,
                b.skew_ppm
                    .map(|p| format!("{p:+.1} ppm"))
                    .unwrap_or_else(|| "-".into()),
                b.server_ips.join(","),
                b.connections.len(),
                b.confidence
            )?;
        }
    }
    for q in &a.sequences {
        writeln!(
            w,
            "sequence {} → {}: {}  ({} family switches, {} backend switches, {} both)",
            q.client,
            q.service,
            q.strip(),
            q.family_switches,
            q.backend_switches,
            q.family_and_backend_switches
        )?;
    }
    Ok(())
}

/// Examples written per kind of warning; the full list is in the JSON report.
const WARNING_EXAMPLES: usize = 3;

/// The warnings as the terminal shows them: one line per kind, in order of first appearance;
/// a kind seen once as it is, a repeated kind with its count and its first
/// `WARNING_EXAMPLES` messages (a busy capture has a warning per service, 23,000 lines).
pub fn warning_lines(warnings: &[racetrace_core::error::Warning]) -> Vec<String> {
    let mut kinds: Vec<(&str, Vec<&str>, usize)> = Vec::new();
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for w in warnings {
        let i = *at.entry(w.kind).or_insert_with(|| {
            kinds.push((w.kind, Vec::new(), 0));
            kinds.len() - 1
        });
        if let Some((_, examples, n)) = kinds.get_mut(i) {
            *n += 1;
            if examples.len() < WARNING_EXAMPLES {
                examples.push(&w.message);
            }
        }
    }
    kinds
        .into_iter()
        .map(|(kind, examples, n)| {
            if n == 1 {
                format!("racetrace: warning: {}", examples.join(""))
            } else {
                let more = n - examples.len();
                let tail = if more > 0 {
                    format!(" | … {more} more")
                } else {
                    String::new()
                };
                format!(
                    "racetrace: warning: {n} × {kind} (all in the JSON report): {}{tail}",
                    examples.join(" | ")
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_one_line_per_kind_with_count_and_examples() {
        let w = |kind, i: usize| racetrace_core::error::Warning {
            kind,
            packet: Some(i as u64),
            message: format!("{kind} at {i}"),
        };
        let mut all: Vec<_> = (0..23_000)
            .map(|i| w("backends_unidentifiable", i))
            .collect();
        all.insert(5, w("truncated", 99));
        all.push(w("dns_malformed", 1));
        all.push(w("dns_malformed", 2));
        let lines = warning_lines(&all);
        assert_eq!(
            lines,
            [
                "racetrace: warning: 23000 × backends_unidentifiable (all in the JSON report): \
                 backends_unidentifiable at 0 | backends_unidentifiable at 1 | \
                 backends_unidentifiable at 2 | … 22997 more",
                "racetrace: warning: truncated at 99",
                "racetrace: warning: 2 × dns_malformed (all in the JSON report): \
                 dns_malformed at 1 | dns_malformed at 2",
            ]
        );
    }
}
