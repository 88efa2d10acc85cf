//! The listener's view: why each short-lived connection (no payload either way) came. To a
//! listener an also-ran looks like a client that crashed or a port scan; the capture can tell
//! them apart, in this order of evidence:
//!
//! 1. **also-ran**: a losing attempt of a race whose winner connected (the race ties the
//!    attempts to one client host by MAC, DNS or timing);
//! 2. **flood**: one of at least [`FLOOD_PER_S`] half-open attempts a second on its service,
//!    from at least [`FLOOD_SOURCES`] sources (seconds around the peak with a tenth of that
//!    rate count too);
//! 3. **scan**: one of a source's short-lived connections to at least [`SCAN_TARGETS`] ports of
//!    one host (port scan), or to one port of as many hosts (host scan);
//! 4. **health check**: one of at least [`CHECKS`] connect-and-close connections from one
//!    source to one service, evenly spaced (every gap within 20 % of the median) at least
//!    [`CHECK_MIN_INTERVAL_MS`] apart;
//! 5. **unexplained** otherwise.

use std::collections::BTreeMap;
use std::net::IpAddr;

use foldhash::{HashMap, HashMapExt, HashSet};

mod flood;

use super::{Context, DetectConfig, Detector, Part, Visitor};
use crate::domain::{ms_between, Nanos};
use crate::model::{Analysis, Connection, HealthCheck, Listener, Reason, Role, Scan};

/// Half-open attempts a second on one service that make a flood.
pub const FLOOD_PER_S: usize = 100;
/// Distinct sources a flood needs (fewer is one host's retries, not a flood).
pub const FLOOD_SOURCES: usize = 10;
/// Ports of one host, or hosts on one port, that make a scan.
pub const SCAN_TARGETS: usize = 10;
/// Connect-and-close connections that make a health check.
pub const CHECKS: usize = 3;
/// The shortest interval of a health check, ms (a client's pool of parallel connections,
/// opened milliseconds apart and closed unused, is not one).
pub const CHECK_MIN_INTERVAL_MS: f64 = 1000.0;

/// Classifies short-lived connections; sets `listeners`, `floods`, `scans` and
/// `health_checks`.
pub struct Listeners;

impl Detector for Listeners {
    fn name(&self) -> &'static str {
        "listeners"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Names, Part::Races]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::Listeners]
    }
    fn visitor(&self, a: &Analysis, _cfg: &DetectConfig) -> Option<Box<dyn Visitor>> {
        Some(Box::new(Pass::new(a, HELD_EARLY)))
    }
}

/// No payload either way.
fn short_lived(c: &Connection) -> bool {
    c.rec.bytes == [0, 0]
}

/// What the scans and health checks need of one short-lived connection that is neither an
/// also-ran nor a flood's: a few words instead of the whole connection (read from the spill a
/// block at a time).
#[derive(Clone, Debug)]
struct Brief {
    id: usize,
    /// When the attempt started (its first SYN, else its first packet).
    start: Nanos,
    client: IpAddr,
    server: IpAddr,
    port: u16,
    service: crate::model::Name,
    established: bool,
    synack: bool,
}

impl Brief {
    fn of(c: &Connection) -> Brief {
        Brief {
            id: c.id,
            start: start(c),
            client: c.rec.client.ip,
            server: c.rec.server.ip,
            port: c.rec.server.port,
            service: c.service.clone(),
            established: c.rec.established_time.is_some(),
            synack: c.rec.synack_time.is_some(),
        }
    }
}

/// Each connection's reason (`None`: not short-lived, or not yet classified).
type Reasons = Vec<Option<Reason>>;

/// The short-lived connections still to explain, in id order.
struct Short {
    conns: Vec<Brief>,
}

impl Short {
    fn get(&self, id: usize) -> Option<&Brief> {
        let k = self.conns.binary_search_by_key(&id, |c| c.id).ok()?;
        self.conns.get(k)
    }
}

/// Short-lived connections held from the first pass, at most: past it (a flood's millions of
/// half-open attempts) they are listed by a later pass instead, once the flood's are known.
const HELD_EARLY: usize = 1 << 18;

/// No payload either way, and the client never had the handshake completed.
fn half_open(c: &Connection) -> bool {
    !c.rec.established_time.is_some()
}

/// The listeners' first pass over the connections: also-rans; half-open attempts per service
/// and second; every connection counted and the rest of the short-lived held, while they are
/// few. Without a flood that pass is all: the held ones are what the scans and health checks
/// look at. With one (or past [`HELD_EARLY`] short-lived connections), the finish makes a
/// second pass for each busy episode's sources and a third that marks the flood's attempts
/// and holds the rest.
struct Pass {
    epoch: Nanos,
    held_early: usize,
    reasons: Reasons,
    seconds: flood::Seconds,
    counts: HashMap<(crate::model::Name, u16), Listener>,
    briefs: Option<Vec<Brief>>,
}

impl Pass {
    fn new(a: &Analysis, held_early: usize) -> Pass {
        Pass {
            epoch: a.epoch(),
            held_early,
            reasons: vec![None; a.connections.len()],
            seconds: flood::Seconds::default(),
            counts: HashMap::new(),
            briefs: Some(Vec::new()),
        }
    }

    fn add(&mut self, a: &Analysis, block: &[Connection]) {
        let won = |c: &Connection| {
            c.role == Role::AlsoRan
                && c.race
                    .and_then(|r| a.races.get(r))
                    .is_some_and(|r| r.winner.is_some())
        };
        for c in block {
            let l = self.counts.entry((c.service.clone(), c.rec.server.port)).or_default();
            l.connections += 1;
            if !short_lived(c) {
                continue;
            }
            l.short_lived += 1;
            if won(c) {
                mark(&mut self.reasons, c.id, Reason::AlsoRan);
                l.also_ran += 1;
                continue;
            }
            if half_open(c) {
                self.seconds.add(c, start(c), self.epoch);
            }
            if self.briefs.as_ref().is_some_and(|b| b.len() >= self.held_early) {
                self.briefs = None;
            }
            if let Some(b) = &mut self.briefs {
                b.push(Brief::of(c));
            }
        }
    }

    /// Floods, scans, health checks, each listener's counts and each connection's reason.
    fn finish_into(self, a: &mut Analysis) {
        let Pass {
            epoch,
            reasons,
            seconds,
            counts,
            briefs,
            ..
        } = self;
        finish(a, epoch, reasons, seconds, counts, briefs);
    }
}

impl Visitor for Pass {
    fn visit(&mut self, a: &Analysis, block: &[Connection]) {
        self.add(a, block);
    }
    fn finish(self: Box<Self>, a: &mut Analysis, _ctx: &mut Context<'_>) {
        self.finish_into(a);
    }
}

/// What follows the first pass: with a flood (or too many short-lived connections to hold
/// from it) a second pass for each busy episode's sources and a third that marks the flood's
/// attempts and holds the rest; then scans and health checks among what is held.
fn finish(
    a: &mut Analysis,
    epoch: Nanos,
    mut reasons: Reasons,
    seconds: flood::Seconds,
    mut counts: HashMap<(crate::model::Name, u16), Listener>,
    briefs: Option<Vec<Brief>>,
) {
    // Each busy episode's attempts and sources.
    let mut episodes = seconds.episodes(epoch);
    let briefs = match briefs.filter(|_| episodes.is_empty()) {
        Some(b) => b,
        None => {
            if !episodes.is_empty() {
                for block in a.connections.blocks() {
                    for c in block.iter().filter(|c| short_lived(c) && half_open(c)) {
                        if reasons.get(c.id).is_some_and(Option::is_none) {
                            episodes.add(c, start(c));
                        }
                    }
                }
            }
            // Floods marked, the rest held for scans and health checks (the counts of the
            // first pass stand).
            let mut briefs = Vec::new();
            for block in a.connections.blocks() {
                for c in block.iter().filter(|c| short_lived(c)) {
                    if reasons.get(c.id).copied().flatten() == Some(Reason::AlsoRan) {
                        continue;
                    }
                    if half_open(c) && episodes.is_flood(c, start(c)) {
                        mark(&mut reasons, c.id, Reason::Flood);
                        if let Some(l) = counts.get_mut(&(c.service.clone(), c.rec.server.port)) {
                            l.flood += 1;
                        }
                    } else {
                        briefs.push(Brief::of(c));
                    }
                }
            }
            briefs
        }
    };
    a.floods = episodes.floods();
    drop(episodes);
    let short = Short { conns: briefs };
    a.scans = scans(&short, &mut reasons);
    a.health_checks = health_checks(&short, &mut reasons);
    for c in &short.conns {
        let key = (c.service.clone(), c.port);
        let l = counts.entry(key).or_default();
        match reasons.get(c.id).copied().flatten().unwrap_or_default() {
            Reason::Scan => l.scan += 1,
            Reason::HealthCheck => l.health_check += 1,
            _ => l.unexplained += 1,
        }
    }
    drop(short);
    a.listeners = listeners(counts);
    // Kept beside the spill (a byte a connection) rather than written into it.
    a.connections.update_deferred(move |c| {
        let r = reasons.get(c.id).copied().flatten();
        c.reason = r.or(short_lived(c).then_some(Reason::Unexplained));
    });
}

/// Set a connection's reason.
fn mark(reasons: &mut Reasons, id: usize, r: Reason) {
    if let Some(slot) = reasons.get_mut(id) {
        *slot = Some(r);
    }
}

/// When the attempt started.
fn start(c: &Connection) -> Nanos {
    c.rec.syn_time.get().unwrap_or(c.rec.first_time)
}

/// Unclassified and short-lived.
fn open_question<'s: 'r, 'r>(
    short: &'s Short,
    reasons: &'r Reasons,
) -> impl Iterator<Item = &'s Brief> + 'r {
    short
        .conns
        .iter()
        .filter(move |c| reasons.get(c.id).is_some_and(Option::is_none))
}

fn scans(a: &Short, reasons: &mut Reasons) -> Vec<Scan> {
    // Per source: its unclassified short-lived connections.
    let mut by_source: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for c in open_question(a, reasons) {
        by_source.entry(c.client).or_default().push(c.id);
    }
    let mut out = Vec::new();
    for (source, ids) in by_source {
        let conns: Vec<&Brief> = ids.iter().filter_map(|&i| a.get(i)).collect();
        // Port scans: per host, the distinct ports.
        let mut ports: BTreeMap<IpAddr, Vec<&Brief>> = BTreeMap::new();
        for c in &conns {
            ports.entry(c.server).or_default().push(c);
        }
        for (host, cs) in ports {
            let distinct: HashSet<u16> = cs.iter().map(|c| c.port).collect();
            if distinct.len() >= SCAN_TARGETS {
                let open: HashSet<u16> = cs
                    .iter()
                    .filter(|c| c.synack)
                    .map(|c| c.port)
                    .collect();
                out.push(scan(source, "port", Some(host), None, distinct.len(), open.len(), &cs, reasons));
            }
        }
        // Host scans: per port, the distinct hosts (of what the port scans left).
        let mut hosts: BTreeMap<u16, Vec<&Brief>> = BTreeMap::new();
        for c in conns.iter().filter(|c| reasons.get(c.id).is_some_and(Option::is_none)) {
            hosts.entry(c.port).or_default().push(c);
        }
        for (port, cs) in hosts {
            let distinct: HashSet<IpAddr> = cs.iter().map(|c| c.server).collect();
            if distinct.len() >= SCAN_TARGETS {
                let open: HashSet<IpAddr> = cs
                    .iter()
                    .filter(|c| c.synack)
                    .map(|c| c.server)
                    .collect();
                out.push(scan(source, "host", None, Some(port), distinct.len(), open.len(), &cs, reasons));
            }
        }
    }
    out.sort_by_key(|s| s.start_time);
    out
}

/// One scan's entry; its connections are marked.
#[allow(clippy::too_many_arguments)]
fn scan(
    source: IpAddr,
    kind: &'static str,
    host: Option<IpAddr>,
    port: Option<u16>,
    targets: usize,
    open: usize,
    cs: &[&Brief],
    reasons: &mut Reasons,
) -> Scan {
    for c in cs {
        if let Some(r) = reasons.get_mut(c.id) {
            *r = Some(Reason::Scan);
        }
    }
    Scan {
        source: source.to_string(),
        kind,
        host: host.map(|h| h.to_string()),
        port,
        targets,
        attempts: cs.len(),
        open,
        start_time: cs.iter().map(|c| c.start).min().unwrap_or(0),
        end_time: cs.iter().map(|c| c.start).max().unwrap_or(0),
    }
}

fn health_checks(a: &Short, reasons: &mut Reasons) -> Vec<HealthCheck> {
    // Per (source, service, port): its connect-and-close connections, in time order.
    let mut groups: BTreeMap<(IpAddr, &str, u16), Vec<&Brief>> = BTreeMap::new();
    for c in open_question(a, reasons).filter(|c| c.established) {
        groups
            .entry((c.client, &*c.service, c.port))
            .or_default()
            .push(c);
    }
    let mut out = Vec::new();
    for ((source, service, port), mut cs) in groups {
        if cs.len() < CHECKS {
            continue;
        }
        cs.sort_by_key(|c| c.start);
        let mut gaps: Vec<f64> = cs.windows(2).map(|w| ms_between(w[0].start, w[1].start)).collect();
        gaps.sort_by(f64::total_cmp);
        let Some(median) = super::summary::median(&gaps) else {
            continue;
        };
        let even = median >= CHECK_MIN_INTERVAL_MS
            && gaps.iter().all(|g| (g - median).abs() <= 0.2 * median);
        if !even {
            continue;
        }
        for c in &cs {
            if let Some(r) = reasons.get_mut(c.id) {
                *r = Some(Reason::HealthCheck);
            }
        }
        out.push(HealthCheck {
            source: source.to_string(),
            service: service.to_string(),
            server_port: port,
            checks: cs.len(),
            interval_ms: median,
            start_time: cs.first().map_or(0, |c| c.start),
            end_time: cs.last().map_or(0, |c| c.start),
        });
    }
    out.sort_by_key(|h| h.start_time);
    out
}

/// The listeners with short-lived connections, by service and port.
fn listeners(counts: HashMap<(crate::model::Name, u16), Listener>) -> Vec<Listener> {
    let mut out: Vec<((crate::model::Name, u16), Listener)> = counts
        .into_iter()
        .filter(|(_, l)| l.short_lived > 0)
        .collect();
    out.sort_unstable_by(|x, y| (&*x.0 .0, x.0 .1).cmp(&(&*y.0 .0, y.0 .1)));
    out.into_iter()
        .map(|((service, port), l)| Listener {
            service: service.to_string(),
            server_port: port,
            ..l
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::domain::{Endpoint, OptNanos};
    use crate::model::store::{Connections, SpillConfig};
    use crate::model::ConnRecord;

    /// A connect-and-close (no payload) from `client` to `server`:`port`, `ms` in; answered
    /// when `open`.
    fn closed(client: u8, server: u8, port: u16, ms: i64, open: bool) -> ConnRecord {
        let t = ms * 1_000_000;
        ConnRecord {
            client: Endpoint {
                ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, client)),
                port: 40_000,
            },
            server: Endpoint {
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, server)),
                port,
            },
            handshake_seen: true,
            first_time: t,
            last_time: t + 2_000_000,
            syn_time: OptNanos::some(t),
            synack_time: if open { OptNanos::some(t + 1_000_000) } else { OptNanos::NONE },
            established_time: if open { OptNanos::some(t + 1_500_000) } else { OptNanos::NONE },
            ..ConnRecord::default()
        }
    }

    /// A port scan (12 ports of one server, 3 of them open), a health check (4 connections
    /// 5 s apart) and two that nothing explains, spilled in blocks of 4.
    fn analysis() -> Analysis {
        let mut s = Connections::new(SpillConfig {
            budget: 1,
            dir: std::env::temp_dir(),
            block: 4,
        });
        for k in 0..12u16 {
            s.push(closed(1, 1, 1_000 + k, i64::from(k), k < 3));
        }
        for k in 0..4 {
            s.push(closed(2, 2, 8_080, 100 + 5_000 * k, true));
        }
        s.push(closed(3, 3, 443, 30_000, true));
        s.push(closed(4, 3, 443, 31_000, false));
        Analysis {
            connections: s,
            ..Analysis::default()
        }
    }

    /// The detector's pass and finish, holding at most `held_early` short-lived connections
    /// from the first pass.
    fn detect_with(a: &mut Analysis, held_early: usize) {
        let mut pass = Pass::new(a, held_early);
        for block in a.connections.blocks() {
            pass.add(a, &block);
        }
        pass.finish_into(a);
    }

    /// Each connection's reason.
    fn reasons(a: &Analysis) -> Vec<Option<Reason>> {
        let mut v = Vec::new();
        a.connections.for_each(|c| v.push(c.reason));
        v
    }

    #[test]
    fn short_lived_ones_held_from_the_first_pass_or_listed_again_are_classified_alike() {
        let mut want = vec![Some(Reason::Scan); 12];
        want.extend([Some(Reason::HealthCheck); 4]);
        want.extend([Some(Reason::Unexplained); 2]);
        // All held in the first pass; none held (listed again by the third).
        for held in [HELD_EARLY, 0] {
            let mut a = analysis();
            detect_with(&mut a, held);
            assert_eq!(reasons(&a), want, "held early: {held}");
            assert_eq!(a.scans.len(), 1);
            assert_eq!(a.health_checks.len(), 1);
            assert!(a.floods.is_empty());
            let counts: Vec<_> = a
                .listeners
                .iter()
                .map(|l| (l.connections, l.short_lived, l.scan, l.health_check, l.unexplained))
                .collect();
            let total = counts.iter().fold((0, 0, 0, 0, 0), |t, c| {
                (t.0 + c.0, t.1 + c.1, t.2 + c.2, t.3 + c.3, t.4 + c.4)
            });
            assert_eq!(total, (18, 18, 12, 4, 2), "held early: {held}");
        }
    }
}
