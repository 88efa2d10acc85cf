//! Detect stage: the finished connection table (plus what the packet observers saw, such as
//! DNS) → hosts, service names, races, delay profiles, backends, sequences, stale reuses,
//! the listeners' short-lived connections (floods, scans, health checks), services and the
//! summary.
//!
//! Each detector is one file: a type implementing [`Detector`] that declares the [`Part`]s of
//! the analysis it reads and the ones it writes (its own output), and the logic behind it. It
//! reads what earlier detectors wrote only through what it declared (a test holds every
//! declared read to a write of an earlier detector, each part to one writer; [`Context::dns`]
//! checks its reader), and it never calls another detector. [`registry!`] lists them in the
//! order they run, one line each: adding a detector is its file and its line there. A detector
//! whose work is one pass over the connections and a finish offers it as a [`Visitor`]:
//! neighbours that do (sequences, stale reuses, listeners, services) share one read of the
//! connections, which on a spilled capture is a decode of every one.
//!
//! Detectors walk the connections in the order of their first record (the list's order). What
//! one needs of the whole capture first (a client's delay profile, host ties, backend clusters)
//! is a detector of its own that runs earlier and keeps state per distinct key (host, service,
//! clock), not per connection.

pub mod filter;
pub mod omit;

use std::net::IpAddr;

pub use crate::app::dns::DnsTable;

use crate::domain::{Nanos, Stage};
use crate::model::{Analysis, Connection};

/// The detectors, in the order they run: `module::Type`, one line each. Declares the modules
/// and builds [`registry`].
macro_rules! registry {
    ($($module:ident :: $detector:ident),+ $(,)?) => {
        $(pub mod $module;)+
        /// The detectors, in the order they run.
        pub fn registry() -> Vec<Box<dyn Detector>> {
            vec![$(Box::new($module::$detector)),+]
        }
    };
}

registry! {
    hosts::Hosts,
    names::Names,
    race::Races,
    delays::DelayProfiles,
    backend::Backends,
    sequence::Sequences,
    stale::Stale,
    listener::Listeners,
    services::Services,
    summary::Headline,
}

/// A part of the analysis a detector reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// DNS exchanges seen in the capture (from the tracker; freed after the last reader).
    Dns,
    /// `hosts` and each connection's `host`.
    Hosts,
    /// Each connection's `service`, `service_source` and `nat64`.
    Names,
    /// `races`, each attempt's `race` and `role`.
    Races,
    /// Each host's `delays`.
    DelayProfiles,
    /// `backends`, each connection's `backend`, and `timestamped`.
    Backends,
    /// `sequences`.
    Sequences,
    /// `stale_reuses`.
    StaleReuses,
    /// `listeners`, `floods`, `scans` and `health_checks`.
    Listeners,
    /// `services`.
    Services,
    /// `summary`.
    Summary,
}

impl Part {
    /// What the tracker hands on: every detector may read the connection records, and the
    /// DNS table when it declares it.
    pub const FROM_TRACKER: &'static [Part] = &[Part::Dns];
}

/// Detector settings.
#[derive(Clone, Debug)]
pub struct DetectConfig {
    /// Longest gap between successive attempts of one race (default 2 s: RFC 8305's maximum
    /// Connection Attempt Delay).
    pub race_window: Nanos,
    /// `--service NAME=ADDR,…`: names for addresses the capture cannot name.
    pub services: Vec<(String, Vec<IpAddr>)>,
    /// `--cancel-by`: an also-ran cancelled beyond this stage is a `late-cancel` finding.
    pub cancel_by: Stage,
    /// A retry after a stale reuse must start within this long after the failure.
    pub retry_window: Nanos,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            race_window: 2_000_000_000,
            services: Vec::new(),
            cancel_by: Stage::Tls,
            retry_window: 5_000_000_000,
        }
    }
}

/// What detectors read besides the analysis.
pub struct Context<'a> {
    /// DNS seen in the capture, until no later detector reads it.
    dns: Option<DnsTable>,
    /// The detector running now is the last one that reads DNS.
    last_dns_reader: bool,
    /// What the detector running now declared it reads.
    reads: &'static [Part],
    /// An empty table, read once `dns` is gone.
    none: DnsTable,
    /// Settings.
    pub cfg: &'a DetectConfig,
}

impl Context<'_> {
    /// DNS seen in the capture (empty after the last detector that reads [`Part::Dns`]).
    /// Panics in debug builds when the running detector did not declare it.
    pub fn dns(&self) -> &DnsTable {
        debug_assert!(
            self.reads.contains(&Part::Dns),
            "a detector read DNS without declaring Part::Dns"
        );
        self.dns.as_ref().unwrap_or(&self.none)
    }

    /// The running detector no longer needs DNS: the table is freed now, and its pages given
    /// back, if no later detector reads it (on a DNS-heavy capture it is a fifth of the
    /// report's memory, better gone before the detector builds its own results). Freed here,
    /// not on a background thread, which raced with the detector's own allocations and raised
    /// the peak.
    pub fn done_with_dns(&mut self) {
        if self.last_dns_reader && self.dns.take().is_some() {
            crate::engine::memory::give_back();
        }
    }
}

/// One detector: reads the parts of the analysis it declares, writes its own.
pub trait Detector {
    /// Short name (for `--stats` and diagnostics).
    fn name(&self) -> &'static str;
    /// The parts it reads, besides the connection records (which every detector may read).
    fn reads(&self) -> &'static [Part];
    /// The parts it writes: its output, written by no other detector.
    fn writes(&self) -> &'static [Part];
    /// Run over the analysis. A detector that offers a [`Visitor`] need not write it: by
    /// default it is its visitor over every block, then its finish.
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>) {
        if let Some(v) = self.visitor(a, ctx.cfg) {
            visit(a, ctx, v);
        }
    }
    /// Its work as one pass over the connections and a finish, when it is that (`None`: it
    /// needs [`Detector::run`]). Neighbours that offer one, none reading what an earlier of
    /// them writes, share one read of the connections: on a spilled capture each pass is a
    /// decode of every connection.
    fn visitor(&self, _a: &Analysis, _cfg: &DetectConfig) -> Option<Box<dyn Visitor>> {
        None
    }
}

/// A detector's pass over the connections ([`Detector::visitor`]).
pub trait Visitor {
    /// One block of connections, in id order; `a` as the earlier detectors left it.
    fn visit(&mut self, a: &Analysis, block: &[Connection]);
    /// After the last block: write what it found (it may read the connections again).
    fn finish(self: Box<Self>, a: &mut Analysis, ctx: &mut Context<'_>);
}

/// A visitor's pass over the connections, then its finish.
pub fn visit(a: &mut Analysis, ctx: &mut Context<'_>, mut v: Box<dyn Visitor>) {
    for block in a.connections.blocks() {
        v.visit(a, &block);
    }
    v.finish(a, ctx);
}

/// The parts a detector reads.
type Reads = &'static [Part];

pub use crate::model::Timed;

/// Run every detector; returns each one's name, wall-clock seconds and the process's CPU
/// seconds meanwhile (for `--stats`). The DNS table is dropped, and its pages given back, as
/// soon as no later detector reads it.
pub fn run(a: &mut Analysis, dns: DnsTable, cfg: &DetectConfig) -> Vec<Timed> {
    let detectors = registry();
    let last_reader = detectors
        .iter()
        .rposition(|d| d.reads().contains(&Part::Dns));
    let mut ctx = Context {
        dns: Some(dns),
        last_dns_reader: false,
        reads: &[],
        none: DnsTable::default(),
        cfg,
    };
    let mut timings = Vec::with_capacity(detectors.len());
    let mut i = 0;
    while let Some(d) = detectors.get(i) {
        let mut started = crate::engine::cpu::Started::now();
        let mut read_before = a.connections.read_back();
        // Neighbours that offer a visitor share one pass, up to the first that reads what an
        // earlier one of them writes.
        let mut group: Vec<(Box<dyn Visitor>, Reads)> = Vec::new();
        let mut written: Vec<Part> = Vec::new();
        for e in detectors.get(i..).unwrap_or_default() {
            if e.reads().iter().any(|p| written.contains(p)) {
                break;
            }
            let Some(v) = e.visitor(a, cfg) else { break };
            group.push((v, e.reads()));
            written.extend_from_slice(e.writes());
        }
        if group.is_empty() {
            ctx.last_dns_reader = Some(i) == last_reader;
            ctx.reads = d.reads();
            d.run(a, &mut ctx);
            detector_done(a, &mut ctx, &mut timings, d.name(), started, read_before);
            i += 1;
            continue;
        }
        for block in a.connections.blocks() {
            for (v, _) in &mut group {
                v.visit(a, &block);
            }
        }
        // Each one's finish in order; the shared pass is timed with the first.
        for (v, reads) in group {
            let name = detectors.get(i).map_or("?", |d| d.name());
            ctx.last_dns_reader = Some(i) == last_reader;
            ctx.reads = reads;
            v.finish(a, &mut ctx);
            detector_done(a, &mut ctx, &mut timings, name, started, read_before);
            started = crate::engine::cpu::Started::now();
            read_before = a.connections.read_back();
            i += 1;
        }
    }
    timings
}

/// A detector is done: the DNS table goes after its last reader, and the detector's time,
/// the peak memory and the connections it read back are noted.
fn detector_done(
    a: &Analysis,
    ctx: &mut Context<'_>,
    timings: &mut Vec<Timed>,
    name: &'static str,
    started: crate::engine::cpu::Started,
    read_before: u64,
) {
    // The DNS table goes after its last reader, and its pages with it. The detectors' own
    // working sets are left to the allocator, which reuses them: giving them back too cost
    // more in trimming and page faults than it saved (bench/HISTORY.md).
    ctx.done_with_dns();
    timings.push(Timed {
        name,
        spent: started.stop(),
        peak_rss: crate::engine::memory::peak_rss_bytes(),
        read_back: a.connections.read_back() - read_before,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part a detector reads was written by an earlier one (or comes from the tracker),
    /// and every part has exactly one writer.
    #[test]
    fn each_detector_reads_only_what_an_earlier_one_wrote() {
        let detectors = registry();
        let mut written: Vec<Part> = Part::FROM_TRACKER.to_vec();
        for d in &detectors {
            for r in d.reads() {
                assert!(
                    written.contains(r),
                    "{} reads {r:?}, which no earlier detector writes",
                    d.name()
                );
            }
            for w in d.writes() {
                assert!(!written.contains(w), "{w:?} has two writers ({})", d.name());
                written.push(*w);
            }
        }
        let names: std::collections::BTreeSet<_> = detectors.iter().map(|d| d.name()).collect();
        assert_eq!(names.len(), detectors.len(), "two detectors share a name");
        assert_eq!(written.len(), 11, "a part nobody writes: {written:?}");
    }
}
