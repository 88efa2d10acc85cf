//! racetrace: finds and explains connection races in packet captures.
//!
//! One pipeline, one module per stage. A packet's whole path:
//!
//! ```text
//! read      file/stdin → (gzip|zstd) → pcap|pcapng blocks → Frame {record, time, link, bytes}
//!   │       (a reader thread fills Batches of frames ahead of the decoder)
//! decode    Frame → Packet {addresses, TCP header + typed options | UDP, payload}
//!   │       (per batch, runs of frames decoded on every core while the batch before is
//!   │       tracked: track::parallel)
//! track     TCP → connection table (4-tuple) → ConnRecord per attempt   UDP → DnsTable
//!   │       (one table per shard of 4-tuples, so each connection stays in order)
//!   │
//! detect    records → hosts → service names → races → … → summary      (model::Analysis)
//!   │
//! render    Analysis → JSON (the contract), terminal, tables, charts, HTML (racetrace-report)
//! ```
//!
//! [`analyze`] runs the first four stages over one capture (or several merged into one).
//! The renderers (JSON, terminal, tables, charts, HTML) are the `racetrace-report` crate's.

pub mod app;
pub mod decode;
pub mod detect;
pub mod domain;
pub mod engine;
pub mod error;
pub mod model;
pub mod read;
pub mod track;

#[cfg(test)]
mod testdata;

#[cfg(test)]
mod tests {
    use super::*;

    /// Analyses at once share the limit; an unlimited one stays unlimited.
    #[test]
    fn analyses_at_once_share_the_memory_limit() {
        let mut o = Options::default();
        assert_eq!(o.shared_by(4).spill.budget, usize::MAX);
        assert_eq!(o.shared_by(4).track.table_cap, usize::MAX);
        o.spill = model::store::SpillConfig::for_limit(1 << 30, std::env::temp_dir());
        o.track.table_cap = 139_810;
        let shared = o.shared_by(2);
        assert_eq!(shared.spill.budget, o.spill.budget / 2);
        assert_eq!(shared.track.table_cap, 69_905);
        assert_eq!(o.shared_by(0).spill.budget, o.spill.budget);
    }
}

use std::sync::mpsc;

use detect::DetectConfig;
use engine::{cpu, memory};
use error::Result;
use model::Analysis;
use read::{Batch, CaptureReader, MergedReader};
use track::parallel::{Output, Sharded};
use track::TrackConfig;

/// Settings for one analysis.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Connection tracking.
    pub track: TrackConfig,
    /// Detectors.
    pub detect: DetectConfig,
    /// What the report keeps (`--client`, `--only-service`, `--port`, `--since`, `--until`).
    pub filter: detect::filter::Filter,
    /// Which connections the report lists (`--connections`).
    pub keep: detect::omit::Keep,
    /// Where connections go past the memory budget (`--memory-limit`, `--temp-dir`).
    pub spill: model::store::SpillConfig,
    /// Told of the bytes read from the files (the command line's progress bar).
    pub progress: Option<read::Progress>,
    /// Benchmarks only: batches are read and handed back undecoded, to time the reader alone
    /// (the report is then empty).
    pub read_only: bool,
}

impl Options {
    /// The settings for each of `n` analyses running at once, so that together they keep to
    /// the memory limit one analysis was given (`--memory-limit` is the process's): the
    /// connections' budget and the connection table's cap are shared.
    pub fn shared_by(&self, n: usize) -> Options {
        let n = n.max(1);
        let mut o = self.clone();
        if o.spill.budget != usize::MAX {
            o.spill.budget /= n;
        }
        if o.track.table_cap != usize::MAX {
            o.track.table_cap = (o.track.table_cap / n).max(1);
        }
        o
    }
}

/// Analyse one capture, or several files merged into one capture in time order.
pub fn analyze(inputs: &[String], opts: &Options) -> Result<Analysis> {
    let readers = inputs
        .iter()
        .map(|n| CaptureReader::open_with(n, opts.progress.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let reader = MergedReader::new(readers);
    let started = cpu::Started::now();

    let mut sharded = Sharded::new(opts.track, rayon::current_num_threads(), opts.spill.clone());
    let reader = pump(reader, &mut sharded, inputs, opts.read_only)?;
    let (capture, diag) = reader.finish();
    let finish_started = std::time::Instant::now();
    let Output {
        connections,
        merged_late,
        vantage,
        table_peak,
        evicted,
        dns,
        stats,
        bad_quic,
    } = sharded.finish();
    // The reader's batches, the decoded runs and the trackers' tables are gone.
    memory::give_back();
    let read_track = started.stop();
    let finish = finish_started.elapsed().as_secs_f64();
    let detecting = cpu::Started::now();
    let rss_track = memory::peak_rss_bytes();
    let peak_open = track::concurrent(connections.blocks().flat_map(|b| {
        b.iter()
            .map(|c| (c.rec.first_record, c.rec.last_record))
            .collect::<Vec<_>>()
    }));
    // What the detectors fill starts empty.
    let mut analysis = Analysis {
        capture,
        decode: stats,
        vantage: vantage.verdict(),
        vantage_votes: vantage,
        peak_open,
        connections,
        warnings: diag.into_warnings(),
        ..Analysis::default()
    };
    let detectors = detect::run(&mut analysis, dns, &opts.detect);
    analysis.summary.evicted_early = evicted.total();
    if evicted.total() > 0 {
        analysis.warnings.push(error::Warning {
            kind: "table_full",
            packet: None,
            message: format!(
                "{}: the connection table was full (--memory-limit): {} connections left it early ({} unanswered attempts: SYNs or QUIC Initials; {} others; the quietest); each is still reported, and a late packet of one starts a new record",
                inputs.join(", "),
                evicted.total(),
                evicted.unanswered,
                evicted.other
            ),
        });
    }
    for (kind, (n, first)) in track::quic::BadQuic::ALL.into_iter().zip(bad_quic) {
        if n == 0 {
            continue;
        }
        let (code, what) = match kind {
            track::quic::BadQuic::Undecryptable => ("quic_initial_undecryptable", "shaped like a QUIC client Initial (a known version, 1200 bytes or more) did not open with the version's Initial keys, or had a damaged header"),
            track::quic::BadQuic::UnknownVersion => ("quic_unknown_version", "to UDP port 443 carried a QUIC long header of a version racetrace cannot read"),
            track::quic::BadQuic::Garbage443 => ("udp_443_not_quic", "to UDP port 443 were neither a QUIC connection's start nor part of one seen starting"),
        };
        analysis.warnings.push(error::Warning {
            kind: code,
            packet: first,
            message: format!(
                "{}: {n} UDP datagram{} {what}, the first at record {}; not counted as connections",
                inputs.join(", "),
                if n == 1 { "" } else { "s" },
                first.unwrap_or(0)
            ),
        });
    }
    detect::filter::apply(&mut analysis, &opts.filter);
    detect::omit::apply(&mut analysis, opts.keep);
    if let Some(detail) = analysis.connections.failure() {
        let file = inputs.join(", ");
        return Err(error::Error::Spill { file, detail });
    }
    analysis.timings = model::Timings {
        read_track,
        finish,
        merged_late,
        detect: detecting.stop(),
        detectors,
        table_peak,
        rss_track,
        rss_detect: memory::peak_rss_bytes(),
    };
    Ok(analysis)
}

/// Read on a second thread, a few batches ahead, while decode and track run on every core
/// (rayon), sharded by connection; batches go back to the reader to be reused. Returns the
/// reader once everything is read (`read_only`: batches are handed back undecoded).
fn pump(
    mut reader: MergedReader,
    sharded: &mut Sharded,
    inputs: &[String],
    read_only: bool,
) -> Result<MergedReader> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(4);
    let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
    let reader = std::thread::scope(|s| {
        let read = move || {
            loop {
                let mut batch = empty_rx.try_recv().unwrap_or_default();
                if !reader.fill(&mut batch) || full_tx.send(batch).is_err() {
                    break;
                }
            }
            reader
        };
        // Named, so that `top -H` and `perf` tell it from the workers.
        let spawned = std::thread::Builder::new()
            .name("racetrace-read".into())
            .spawn_scoped(s, read);
        let producer = match spawned {
            Ok(p) => p,
            Err(source) => {
                let file = inputs.join(", ");
                return Err(error::Error::Io { file, source });
            }
        };
        // The loop runs on a worker of the pool, so each batch's `rayon::join` is a worker's
        // own (its halves stolen by the other worker) instead of a job handed in from outside
        // the pool with this thread put to sleep until it is done.
        rayon::scope(|_| {
            for batch in full_rx {
                let done = if read_only {
                    Some(batch)
                } else {
                    sharded.feed(batch)
                };
                if let Some(b) = done {
                    let _ = empty_tx.send(b);
                }
            }
        });
        Ok(producer.join())
    });
    match reader? {
        Ok(r) => Ok(r),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
