//! Report filters (`--client`, `--only-service`, `--port`, `--since`, `--until`): keep the
//! connections that match, the races whose first attempt matches (with all their attempts),
//! and whatever refers only to kept connections; then recount sequences and the summary.
//! Ids are renumbered in order, so every reference in the filtered report stays consistent.

use foldhash::HashSet;

use crate::domain::Nanos;
use crate::model::Analysis;

/// What to keep.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// A client address (either of the host's addresses matches).
    pub client: Option<std::net::IpAddr>,
    /// A service name.
    pub service: Option<String>,
    /// A server port.
    pub port: Option<u16>,
    /// First packet at or after.
    pub since: Option<Nanos>,
    /// First packet at or before.
    pub until: Option<Nanos>,
}

impl Filter {
    /// True when no filter is set.
    pub fn is_empty(&self) -> bool {
        self.client.is_none()
            && self.service.is_none()
            && self.port.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }
}

/// Apply the filter.
pub fn apply(a: &mut Analysis, f: &Filter) {
    if f.is_empty() {
        return;
    }
    let keep_conn = |c: &crate::model::Connection| {
        let t = c.rec.syn_time.get().unwrap_or(c.rec.first_time);
        f.client
            .is_none_or(|ip| a.hosts.get(c.host).is_some_and(|h| h.addrs().contains(&ip)))
            && f.service.as_ref().is_none_or(|s| *c.service == **s)
            && f.port.is_none_or(|p| c.rec.server.port == p)
            && f.since.is_none_or(|s| t >= s)
            && f.until.is_none_or(|u| t <= u)
    };
    let mut kept: HashSet<usize> = HashSet::default();
    a.connections.for_each(|c| {
        if keep_conn(c) {
            kept.insert(c.id);
        }
    });
    a.races
        .retain(|r| r.attempts.first().is_some_and(|i| kept.contains(i)));
    for r in &a.races {
        kept.extend(r.attempts.iter().copied());
    }
    // Renumbered so that ids stay positions (every stage looks connections up by id).
    let map = a.connections.retain(|c| kept.contains(&c.id));
    let m = |i: usize| map.get(i).copied().flatten();
    for (new, r) in a.races.iter_mut().enumerate() {
        r.id = new;
        r.attempts = r.attempts.iter().filter_map(|&i| m(i)).collect();
        r.also_rans = r.also_rans.iter().filter_map(|&i| m(i)).collect();
        r.winner = r.winner.and_then(m);
        for c in r.also_ran_cancel.iter_mut() {
            c.id = m(c.id).unwrap_or(c.id);
        }
        if let Some(d) = r.duplicate_request.as_mut() {
            d.attempts = d.attempts.iter().filter_map(|&i| m(i)).collect();
        }
        a.connections
            .update_ids(&r.attempts, |c| c.race = Some(new));
    }
    a.stale_reuses.retain(|e| m(e.connection).is_some());
    for e in a.stale_reuses.iter_mut() {
        e.connection = m(e.connection).unwrap_or(e.connection);
        e.retry = e.retry.and_then(m);
    }
    for b in a.backends.iter_mut() {
        b.connections = b.connections.iter().filter_map(|&i| m(i)).collect();
    }
    a.backends.retain(|b| !b.connections.is_empty());
    a.timestamped = a.connections.count(|c| !c.rec.ts_samples.is_empty());
    super::sequence::detect(a);
    a.warnings.retain(|w| w.kind != "backends_unidentifiable");
    super::services::services(a);
    super::summary::summarize(a);
}
