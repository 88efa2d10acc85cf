//! Stale connection reuse: a client sent on a keep-alive connection the server had already
//! given up, and it failed (RST, or silence until the client gave up).
//!
//! The tracker flags the failed send per connection (`ConnRecord::stale`): new client data
//! after an idle gap on a connection that had served a response, or after the server's FIN,
//! answered by the server's RST or by nothing. Here each one gets its cause and its retry:
//! - with the server's FIN in the capture, Δ = request time − FIN time corrected to the
//!   client's side (client vantage: as captured; server or middle: the FIN reaches the client
//!   one one-way delay later, half the SYN-ACK → ACK leg). Δ beyond one round trip: the client
//!   had the FIN and reused anyway (`reuse_bug`); within one: they crossed (`crossed`);
//! - no FIN captured before the failure: `fin_unseen`;
//! - the retry is the next connection from the same client host to the same service whose
//!   first SYN follows the failure within the retry window and that carried a request.

use super::DetectConfig;
use std::num::NonZeroU64;

use crate::domain::{ms_between, Nanos};
use crate::model::record::StaleFacts;
use crate::model::{Analysis, Connection, Name, StaleCause, StaleReuse};
use crate::track::Vantage;

use super::{Context, Detector, Part, Visitor};

/// Finds requests sent on connections the peer had given up; sets `stale_reuses`.
pub struct Stale;

impl Detector for Stale {
    fn name(&self) -> &'static str {
        "stale"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Hosts, Part::Names]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::StaleReuses]
    }
    fn visitor(&self, a: &Analysis, cfg: &DetectConfig) -> Option<Box<dyn Visitor>> {
        // With no stale-reuse facts, nothing to read: a visitor all the same, so that its
        // neighbours still share their pass.
        Some(match Pass::new(a, cfg) {
            Some(p) => Box::new(p),
            None => Box::new(Nothing),
        })
    }
}

/// The stale reuses' pass over the connections: the retry index, and each stale reuse's own
/// facts (they are findings: held as the findings are). Every stale reuse is found in
/// O(n log n) in connections and in stale reuses: each retry through the index, built once.
struct Pass {
    retries: RetryIndex,
    reused: Vec<Reused>,
    window: Nanos,
}

impl Pass {
    /// `None` when no connection carries stale-reuse facts (counted as the tracker handed the
    /// connections over: no pass when there is none).
    fn new(a: &Analysis, cfg: &DetectConfig) -> Option<Pass> {
        (a.connections.with_stale() > 0).then(|| Pass {
            retries: RetryIndex::default(),
            reused: Vec::new(),
            window: cfg.retry_window,
        })
    }

    fn add(&mut self, block: &[Connection]) {
        for r in block {
            self.retries.add(r);
            if let Some(s) = r.rec.stale.as_deref() {
                self.reused.push(Reused {
                    id: r.id,
                    host: r.host,
                    service: r.service.clone(),
                    legs: r.rec.handshake_legs(),
                    facts: s.clone(),
                });
            }
        }
    }

    fn finish_into(mut self, a: &mut Analysis) {
        for list in self.retries.by_key.values_mut() {
            list.sort_unstable_by_key(|c| (c.syn, c.id));
        }
        findings(a, &self.retries, self.reused, self.window);
    }
}

impl Visitor for Pass {
    fn visit(&mut self, _a: &Analysis, block: &[Connection]) {
        self.add(block);
    }
    fn finish(self: Box<Self>, a: &mut Analysis, _ctx: &mut Context<'_>) {
        self.finish_into(a);
    }
}

/// The visitor of a capture without stale-reuse facts: no stale reuses.
struct Nothing;

impl Visitor for Nothing {
    fn visit(&mut self, _a: &Analysis, _block: &[Connection]) {}
    fn finish(self: Box<Self>, a: &mut Analysis, _ctx: &mut Context<'_>) {
        a.stale_reuses = Vec::new();
    }
}

/// Each stale reuse's cause and retry.
fn findings(a: &mut Analysis, retries: &RetryIndex, reused: Vec<Reused>, window: Nanos) {
    // The capture's typical handshake, for connections whose own was not captured: computed
    // once, and only when one needs it.
    let typical = std::cell::OnceCell::new();
    let mut out = Vec::with_capacity(reused.len());
    for c in reused {
        let s = &c.facts;
        let legs = c.legs.or_else(|| *typical.get_or_init(|| typical_legs(a)));
        let rtt = legs.map(|(x, y)| x + y);
        let owd = match a.vantage {
            Vantage::Client => Some(0),
            _ => legs.map(|(_, back)| back / 2),
        };
        let delta = s.peer_fin.zip(owd).map(|(f, o)| s.request - (f + o));
        let cause = match (s.peer_fin, delta, rtt) {
            (None, _, _) => StaleCause::FinUnseen,
            (Some(_), Some(d), Some(r)) if d > r => StaleCause::ReuseBug,
            (Some(_), _, _) => StaleCause::Crossed,
        };
        let failed_at = s.failure_time.unwrap_or(s.request);
        let retry = retries.find(&c, s.request, failed_at, window);
        let request = s.request_line.as_ref();
        // Whether the retry repeated the request: by the hash of its request line, kept in
        // the index (reading the retries' requests back was a second pass over a spill).
        let retry_same_request = match (retry, request) {
            (Some(r), Some((m, t))) => r.request.map(|h| h == request_hash(m, t)),
            _ => None,
        };
        let retry = retry.map(|r| (r.syn, r.id));
        out.push(StaleReuse {
            connection: c.id,
            request_time: s.request,
            idle_ms: ms_between(0, s.idle),
            peer_closed: s.peer_fin.is_some(),
            failure: s.failure,
            retry: retry.map(|(_, id)| id),
            client: a.host_label(c.host),
            service: c.service,
            cause,
            fin_to_request_ms: delta.map(|d| ms_between(0, d)),
            rtt_ms: rtt.map(|r| ms_between(0, r)),
            time_to_failure_ms: s.failure_time.map(|f| ms_between(s.request, f)),
            retransmissions: s.retransmissions,
            request: request.map(|(m, t)| format!("{m} {t}")),
            retry_delay_ms: retry.map(|(syn, _)| ms_between(failed_at, syn)),
            retry_same_request,
        });
    }
    a.stale_reuses = out;
}

/// A request line's hash: two differ when their lines do, but with a chance of 2^-64.
fn request_hash(method: &str, target: &str) -> NonZeroU64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same line gives the same hash throughout the process.
    let mut h = std::hash::DefaultHasher::new();
    (method, target).hash(&mut h);
    NonZeroU64::new(h.finish()).unwrap_or(NonZeroU64::MIN)
}

/// A connection that could be a retry.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Its first SYN.
    syn: Nanos,
    id: usize,
    /// Its request line's hash ([`request_hash`]), if it carried a request.
    request: Option<NonZeroU64>,
}

/// The connections that could be a retry (they carried client data and their SYN was seen),
/// per (client host, service), in order of first SYN.
#[derive(Default)]
struct RetryIndex {
    by_key: foldhash::HashMap<(usize, Name), Vec<Candidate>>,
}

/// A stale reuse's connection, as the index's pass read it.
struct Reused {
    id: usize,
    host: usize,
    service: Name,
    /// Its own handshake's legs, when captured.
    legs: Option<(Nanos, Nanos)>,
    facts: StaleFacts,
}

impl RetryIndex {
    /// Index `r` if it could be a retry.
    fn add(&mut self, r: &Connection) {
        if let Some(t) = r.rec.syn_time.get().filter(|_| r.rec.bytes[0] > 0) {
            self.by_key
                .entry((r.host, r.service.clone()))
                .or_default()
                .push(Candidate {
                    syn: t,
                    id: r.id,
                    request: r.request().map(|q| request_hash(&q.method, &q.target)),
                });
        }
    }

    /// The next connection from the same host to the same service, opened after the request
    /// and within `window` after the failure, that carried client data, O(log n).
    fn find(
        &self,
        c: &Reused,
        request: Nanos,
        failed_at: Nanos,
        window: Nanos,
    ) -> Option<Candidate> {
        let list = self.by_key.get(&(c.host, c.service.clone()))?;
        let from = list.partition_point(|x| x.syn < request);
        list.get(from..)?
            .iter()
            .take_while(|x| x.syn - failed_at <= window)
            .find(|x| x.id != c.id)
            .copied()
    }
}

/// The median handshake (by round trip) in the capture, for connections whose own handshake
/// was not captured.
fn typical_legs(a: &Analysis) -> Option<(Nanos, Nanos)> {
    let mut legs: Vec<(Nanos, Nanos)> = a
        .connections
        .par_filter_map(|c| c.rec.handshake_legs());
    legs.sort_by_key(|(x, y)| x + y);
    legs.get(legs.len() / 2).copied()
}
