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

use super::{Context, Detector, Part};
use crate::domain::{ms_between, Nanos};
use crate::model::{Analysis, Connection, Flood, HealthCheck, Listener, Reason, Role, Scan};

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
    fn run(&self, a: &mut Analysis, _ctx: &mut Context<'_>) {
        detect(a);
    }
}

/// No payload either way.
fn short_lived(c: &Connection) -> bool {
    c.rec.bytes == [0, 0]
}

/// What the classification needs of one short-lived connection: a tenth of a connection's
/// size, so that a flood's millions are held as these (read from the spill a block at a
/// time) and never as whole connections.
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
    reset_by_server: bool,
}

impl Brief {
    fn of(c: &Connection) -> Brief {
        Brief {
            id: c.id,
            start: c.rec.syn_time.get().unwrap_or(c.rec.first_time),
            client: c.rec.client.ip,
            server: c.rec.server.ip,
            port: c.rec.server.port,
            service: c.service.clone(),
            established: c.rec.established_time.is_some(),
            synack: c.rec.synack_time.is_some(),
            reset_by_server: c.rec.rst[1].is_some(),
        }
    }
}

/// Each connection's reason (`None`: not short-lived, or not yet classified).
type Reasons = Vec<Option<Reason>>;

/// The short-lived connections, in id order.
struct Short {
    conns: Vec<Brief>,
    epoch: Nanos,
}

impl Short {
    fn get(&self, id: usize) -> Option<&Brief> {
        let k = self.conns.binary_search_by_key(&id, |c| c.id).ok()?;
        self.conns.get(k)
    }
}

/// Classify every short-lived connection and count them per listener.
pub fn detect(a: &mut Analysis) {
    let mut reasons: Reasons = vec![None; a.connections.len()];
    let mut briefs = Vec::new();
    for block in a.connections.blocks() {
        for c in block.iter().filter(|c| short_lived(c)) {
            let won = c
                .race
                .and_then(|r| a.races.get(r))
                .is_some_and(|r| r.winner.is_some());
            if c.role == Role::AlsoRan && won {
                if let Some(r) = reasons.get_mut(c.id) {
                    *r = Some(Reason::AlsoRan);
                }
            }
            briefs.push(Brief::of(c));
        }
    }
    let short = Short {
        conns: briefs,
        epoch: a.epoch(),
    };
    let floods = floods(&short, &mut reasons);
    let scans = scans(&short, &mut reasons);
    let health_checks = health_checks(&short, &mut reasons);
    drop(short);
    a.floods = floods;
    a.scans = scans;
    a.health_checks = health_checks;
    a.listeners = listeners(a, &reasons);
    a.connections.update(|c| {
        let r = reasons.get(c.id).copied().flatten();
        c.reason = r.or(short_lived(c).then_some(Reason::Unexplained));
    });
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

fn floods(a: &Short, reasons: &mut Reasons) -> Vec<Flood> {
    let epoch = a.epoch;
    let second = |c: &Brief| (c.start - epoch).div_euclid(1_000_000_000);
    let half_open = |c: &&Brief| !c.established;
    // Half-open attempts per service and second.
    let mut hist: HashMap<(&str, u16), BTreeMap<i64, usize>> = HashMap::new();
    for c in open_question(a, reasons).filter(half_open) {
        *hist
            .entry((&*c.service, c.port))
            .or_default()
            .entry(second(c))
            .or_default() += 1;
    }
    // Flood episodes: runs of seconds at the flood rate, widened by the seconds beside them
    // at a tenth of it.
    let mut episodes: HashMap<(&str, u16), Vec<(i64, i64)>> = HashMap::new();
    for (key, secs) in &hist {
        let busy = |n: usize| n >= FLOOD_PER_S / 10;
        let mut runs: Vec<(i64, i64, bool)> = Vec::new(); // (first, last, reaches the rate)
        for (&s, &n) in secs.iter().filter(|(_, &n)| busy(n)) {
            match runs.last_mut() {
                Some(r) if s == r.1 + 1 => {
                    r.1 = s;
                    r.2 |= n >= FLOOD_PER_S;
                }
                _ => runs.push((s, s, n >= FLOOD_PER_S)),
            }
        }
        let keep: Vec<(i64, i64)> = runs.into_iter().filter(|r| r.2).map(|r| (r.0, r.1)).collect();
        if !keep.is_empty() {
            episodes.insert(*key, keep);
        }
    }
    #[derive(Default)]
    struct Acc {
        members: Vec<usize>,
        sources: HashSet<IpAddr>,
        per_s: BTreeMap<i64, usize>,
    }
    let mut accs: BTreeMap<(&str, u16, i64), Acc> = BTreeMap::new();
    for c in open_question(a, reasons).filter(half_open) {
        let key = (&*c.service, c.port);
        let s = second(c);
        let Some(ep) = episodes.get(&key).and_then(|e| e.iter().find(|e| e.0 <= s && s <= e.1))
        else {
            continue;
        };
        let acc = accs.entry((key.0, key.1, ep.0)).or_default();
        acc.members.push(c.id);
        acc.sources.insert(c.client);
        *acc.per_s.entry(s).or_default() += 1;
    }
    let mut out = Vec::new();
    for ((service, port, _), acc) in accs {
        if acc.sources.len() < FLOOD_SOURCES {
            continue;
        }
        let members: Vec<&Brief> = acc.members.iter().filter_map(|&i| a.get(i)).collect();
        for c in &members {
            if let Some(r) = reasons.get_mut(c.id) {
                *r = Some(Reason::Flood);
            }
        }
        out.push(Flood {
            service: service.to_string(),
            server_port: port,
            start_time: members.iter().map(|c| c.start).min().unwrap_or(0),
            end_time: members.iter().map(|c| c.start).max().unwrap_or(0),
            attempts: members.len(),
            sources: acc.sources.len(),
            peak_per_s: acc.per_s.values().copied().max().unwrap_or(0),
            answered: members.iter().filter(|c| c.synack).count(),
            reset: members.iter().filter(|c| c.reset_by_server).count(),
        });
    }
    out.sort_by_key(|f| f.start_time);
    out
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

fn listeners(a: &Analysis, reasons: &Reasons) -> Vec<Listener> {
    let mut by: BTreeMap<(crate::model::Name, u16), Listener> = BTreeMap::new();
    for c in a.connections.iter() {
        let key = (c.service.clone(), c.rec.server.port);
        let l = by.entry(key).or_default();
        l.connections += 1;
        if !short_lived(&c) {
            continue;
        }
        l.short_lived += 1;
        match reasons.get(c.id).copied().flatten().unwrap_or_default() {
            Reason::AlsoRan => l.also_ran += 1,
            Reason::Flood => l.flood += 1,
            Reason::Scan => l.scan += 1,
            Reason::HealthCheck => l.health_check += 1,
            Reason::Unexplained => l.unexplained += 1,
        }
    }
    by.into_iter()
        .filter(|(_, l)| l.short_lived > 0)
        .map(|((service, port), l)| Listener {
            service: service.to_string(),
            server_port: port,
            ..l
        })
        .collect()
}
