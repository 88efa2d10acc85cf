//! Detect stage: the finished connection table (plus what the packet observers saw, such as
//! DNS) → hosts, service names, races, and later backends, sequences and stale reuses.
//!
//! Each detector implements [`Detector`] and reads and annotates the shared [`Analysis`];
//! none calls another. They run in the order of [`registry`], so that each one finds what it
//! builds on (races need hosts and names; sequences need races and backends).

pub mod backend;

pub mod filter;
pub mod hosts;
pub mod names;
pub mod race;
pub mod sequence;
pub mod stale;
pub mod summary;

use std::net::IpAddr;

pub use crate::app::dns::DnsTable;

use crate::domain::{Nanos, Stage};
use crate::model::Analysis;

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
    /// An empty table, read once `dns` is gone.
    none: DnsTable,
    /// Settings.
    pub cfg: &'a DetectConfig,
}

impl Context<'_> {
    /// DNS seen in the capture (empty after the last detector that declares
    /// [`Detector::reads_dns`]).
    pub fn dns(&self) -> &DnsTable {
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

/// One detector: reads the analysis, adds its findings.
pub trait Detector {
    /// Short name (for diagnostics).
    fn name(&self) -> &'static str;
    /// Run over the analysis.
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>);
    /// Reads [`Context::dns`] (the DNS table is freed after the last detector that does, or
    /// as soon as that one calls [`Context::done_with_dns`]).
    fn reads_dns(&self) -> bool {
        false
    }
}

struct Hosts;
impl Detector for Hosts {
    fn name(&self) -> &'static str {
        "hosts"
    }
    fn reads_dns(&self) -> bool {
        true
    }
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>) {
        a.hosts = hosts::assign(&mut a.connections, ctx.dns(), ctx.cfg.race_window);
    }
}

struct Names;
impl Detector for Names {
    fn name(&self) -> &'static str {
        "names"
    }
    fn reads_dns(&self) -> bool {
        true
    }
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>) {
        names::assign(&mut a.connections, &a.hosts, ctx.dns(), &ctx.cfg.services);
    }
}

struct Races;
impl Detector for Races {
    fn name(&self) -> &'static str {
        "races"
    }
    fn reads_dns(&self) -> bool {
        true
    }
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>) {
        race::detect(a, ctx);
        race::delay_profiles(a);
    }
}

struct Backends;
impl Detector for Backends {
    fn name(&self) -> &'static str {
        "backends"
    }
    fn run(&self, a: &mut Analysis, _ctx: &mut Context<'_>) {
        backend::detect(a);
        sequence::detect(a);
    }
}

struct Stale;
impl Detector for Stale {
    fn name(&self) -> &'static str {
        "stale"
    }
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>) {
        stale::detect(a, ctx.cfg);
    }
}

struct Summary;
impl Detector for Summary {
    fn name(&self) -> &'static str {
        "summary"
    }
    fn run(&self, a: &mut Analysis, _ctx: &mut Context<'_>) {
        summary::services(a);
        summary::summarize(a);
    }
}

pub use crate::model::Timed;

/// The detectors, in the order they run.
pub fn registry() -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(Hosts),
        Box::new(Names),
        Box::new(Races),
        Box::new(Backends),
        Box::new(Stale),
        Box::new(Summary),
    ]
}

/// Run every detector; returns each one's name, wall-clock seconds and the process's CPU
/// seconds meanwhile (for `--stats`). The DNS table is dropped, and its pages given back, as
/// soon as no later detector reads it.
pub fn run(a: &mut Analysis, dns: DnsTable, cfg: &DetectConfig) -> Vec<Timed> {
    let detectors = registry();
    let last_reader = detectors.iter().rposition(|d| d.reads_dns());
    let mut ctx = Context {
        dns: Some(dns),
        last_dns_reader: false,
        none: DnsTable::default(),
        cfg,
    };
    let mut timings = Vec::with_capacity(detectors.len());
    for (i, d) in detectors.iter().enumerate() {
        let started = crate::engine::cpu::Started::now();
        ctx.last_dns_reader = Some(i) == last_reader;
        d.run(a, &mut ctx);
        // The DNS table goes after its last reader, and its pages with it. The detectors' own
        // working sets are left to the allocator, which reuses them: giving them back too
        // cost more in trimming and page faults than it saved (bench/HISTORY.md).
        ctx.done_with_dns();
        timings.push(Timed {
            name: d.name(),
            spent: started.stop(),
        });
    }
    timings
}
