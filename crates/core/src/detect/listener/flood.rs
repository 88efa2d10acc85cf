//! SYN floods, found in passes over the connections (read from the spill a block at a time)
//! with state per service, second and episode, never per connection: a flood's millions of
//! attempts are counted, not held.
//!
//! 1. [`Seconds::add`]: half-open attempts per service and second;
//! 2. [`Seconds::episodes`]: runs of seconds at [`FLOOD_PER_S`], widened by the seconds beside
//!    them at a tenth of it;
//! 3. [`Episodes::add`]: each episode's attempts, distinct sources, busiest second and answers;
//! 4. [`Episodes::floods`]: the episodes with [`FLOOD_SOURCES`] sources or more, and
//!    [`Episodes::is_flood`] tells a connection's membership.

use std::collections::BTreeMap;
use std::net::IpAddr;

use foldhash::{HashMap, HashSet};

use super::{FLOOD_PER_S, FLOOD_SOURCES};
use crate::domain::Nanos;
use crate::model::{Connection, Flood, Name};

/// An attempt's second, counted from the capture's first packet.
fn second(start: Nanos, epoch: Nanos) -> i64 {
    (start - epoch).div_euclid(1_000_000_000)
}

/// Half-open attempts per service (name, port) and second.
#[derive(Default)]
pub(super) struct Seconds {
    by: HashMap<Name, HashMap<u16, BTreeMap<i64, usize>>>,
}

impl Seconds {
    /// Count one half-open attempt that started at `start`.
    pub(super) fn add(&mut self, c: &Connection, start: Nanos, epoch: Nanos) {
        let ports = match self.by.get_mut(&*c.service) {
            Some(p) => p,
            None => self.by.entry(c.service.clone()).or_default(),
        };
        *ports
            .entry(c.rec.server.port)
            .or_default()
            .entry(second(start, epoch))
            .or_default() += 1;
    }

    /// Flood episodes: runs of seconds at the flood rate, widened by the seconds beside them
    /// at a tenth of it.
    pub(super) fn episodes(self, epoch: Nanos) -> Episodes {
        let mut eps = Episodes {
            epoch,
            ..Episodes::default()
        };
        for (service, ports) in self.by {
            for (port, secs) in ports {
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
                for (first, last, _) in runs.into_iter().filter(|r| r.2) {
                    let at = eps.list.len();
                    eps.list.push(Episode {
                        service: service.clone(),
                        port,
                        first,
                        last,
                        acc: Acc::default(),
                    });
                    eps.of
                        .entry(service.clone())
                        .or_default()
                        .entry(port)
                        .or_default()
                        .push(at);
                }
            }
        }
        eps
    }
}

/// Distinct source addresses, exactly, IPv4 in 4 bytes (a flood from 16 M sources is
/// 16 M entries).
#[derive(Default)]
struct Sources {
    v4: HashSet<u32>,
    v6: HashSet<u128>,
}

impl Sources {
    fn insert(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.v4.insert(u32::from(a)),
            IpAddr::V6(a) => self.v6.insert(u128::from(a)),
        };
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// What one episode's attempts add up to.
#[derive(Default)]
struct Acc {
    attempts: usize,
    sources: Sources,
    per_s: BTreeMap<i64, usize>,
    start: Option<Nanos>,
    end: Option<Nanos>,
    answered: usize,
    reset: usize,
}

/// One run of busy seconds on a service.
struct Episode {
    service: Name,
    port: u16,
    first: i64,
    last: i64,
    acc: Acc,
}

/// The episodes of every service.
#[derive(Default)]
pub(super) struct Episodes {
    epoch: Nanos,
    list: Vec<Episode>,
    /// Per service and port, its episodes (indexes into `list`).
    of: HashMap<Name, HashMap<u16, Vec<usize>>>,
}

impl Episodes {
    /// No episode: no flood, and no pass to count their sources.
    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The episode a half-open attempt that started at `start` falls in.
    fn find(&self, c: &Connection, start: Nanos) -> Option<usize> {
        let s = second(start, self.epoch);
        let eps = self.of.get(&*c.service)?.get(&c.rec.server.port)?;
        eps.iter().copied().find(|&i| {
            self.list
                .get(i)
                .is_some_and(|e| e.first <= s && s <= e.last)
        })
    }

    /// Add a half-open attempt to its episode, if it falls in one.
    pub(super) fn add(&mut self, c: &Connection, start: Nanos) {
        let Some(e) = self.find(c, start).and_then(|i| self.list.get_mut(i)) else {
            return;
        };
        let acc = &mut e.acc;
        acc.attempts += 1;
        acc.sources.insert(c.rec.client.ip);
        *acc.per_s.entry(second(start, self.epoch)).or_default() += 1;
        acc.start = Some(acc.start.map_or(start, |s| s.min(start)));
        acc.end = Some(acc.end.map_or(start, |e| e.max(start)));
        acc.answered += usize::from(c.rec.synack_time.is_some());
        acc.reset += usize::from(c.rec.rst[1].is_some());
    }

    /// Whether a half-open attempt that started at `start` belongs to a flood (an episode
    /// with enough sources).
    pub(super) fn is_flood(&self, c: &Connection, start: Nanos) -> bool {
        self.find(c, start)
            .and_then(|i| self.list.get(i))
            .is_some_and(|e| e.acc.sources.len() >= FLOOD_SOURCES)
    }

    /// The floods, by start (episodes of one start in order of service, port and first
    /// second).
    pub(super) fn floods(&self) -> Vec<Flood> {
        let mut eps: Vec<&Episode> = self
            .list
            .iter()
            .filter(|e| e.acc.sources.len() >= FLOOD_SOURCES)
            .collect();
        eps.sort_by(|a, b| (&*a.service, a.port, a.first).cmp(&(&*b.service, b.port, b.first)));
        let mut out: Vec<Flood> = eps
            .into_iter()
            .map(|e| Flood {
                service: e.service.to_string(),
                server_port: e.port,
                start_time: e.acc.start.unwrap_or(0),
                end_time: e.acc.end.unwrap_or(0),
                attempts: e.acc.attempts,
                sources: e.acc.sources.len(),
                peak_per_s: e.acc.per_s.values().copied().max().unwrap_or(0),
                answered: e.acc.answered,
                reset: e.acc.reset,
            })
            .collect();
        out.sort_by_key(|f| f.start_time);
        out
    }
}
