//! Backends from TCP timestamp clocks.
//!
//! A server stamps each segment with TSval = offset + rate · t (mod 2^32) when it sends it; the
//! capture sees the segment one one-way delay later. Connections served by one host whose
//! clock is stable across connections (older Linux, `tcp_timestamps=2`, BSD stacks, load
//! balancers and proxies that terminate TCP) line up on one such line, whatever VIP, service
//! or port reached it; hosts that draw a random offset per connection (Linux 4.10, FreeBSD,
//! Linux since 2026 with `tcp_timestamps=1`) do not, and are left unidentified rather than
//! given one backend each.
//!
//! 1. **When the server stamped**: each sample's capture time minus the one-way delay from
//!    the server to the capture point, half the connection's SYN → SYN-ACK leg as captured
//!    (the capture point's round trip to the server, whatever the vantage: the whole RTT at
//!    the client, a share of it at a gateway, nothing at the server). Without this, clients
//!    with their own round-trip times split one clock into one cluster per RTT (150 ticks at
//!    1000 Hz for a 300 ms client).
//! 2. **Rate** per connection, from its first and last server TSval when they are far enough
//!    apart (≥ 1 s and ≥ 20 ticks), snapped to the common rates (1000, 250, 100, 10, 2 Hz)
//!    within 10 %. Short connections have no rate of their own.
//! 3. **Clustering** over every connection of the capture in time order (one physical host
//!    shows through every VIP, service and port): a connection joins the cluster whose clock,
//!    extrapolated from its latest member, predicts the connection's first TSval within a
//!    tolerance of 2 ticks + 10 ms of jitter + 100 ppm of skew over the gap (wrapping
//!    arithmetic, so a TSval wraparound inside the capture is harmless). A connection with a
//!    measured rate only tries clusters of that rate; one without tries each candidate rate.
//!    Clusters are found through an index on their offset, so this is O(n log n).
//! 4. **Chance held down**: an unrelated clock agrees within the tolerance with probability
//!    (2·tolerance + 1) / 2^32 per cluster compared. A cluster that is still one connection
//!    leaves the index [`SINGLE_EXPIRY_S`] after it was seen, so the clusters a connection is
//!    compared with grow with the connection rate, not with the capture's length, and the
//!    chance that a random-offset connection is given a backend stays near
//!    rate × 600 s × 15 / 2^32 (2·10⁻⁴ at 100 new connections a second, 1000 Hz). Each
//!    backend's `confidence` is one minus the probability that its members agree by chance
//!    (the product over its joins of clusters compared × window / 2^32).
//! 5. **Honesty**: a backend needs two connections on one clock. Everything else stays
//!    `backend: null`.
//! 6. **Per backend** the fitted rate (Theil–Sen over its samples) and, over ≥ 10 s, the skew
//!    in ppm against the snapped rate.
//!
//! IPv4 and IPv6 siblings of one host share a stable clock and so land in one backend; hosts
//! with one offset per address pair form one backend per address pair (no sibling rule
//! merges them: their offsets say nothing about each other).

use crate::domain::Nanos;
use crate::model::{Analysis, ClockRegime};

use super::{Context, Detector, Part};

mod describe;
use describe::{describe, members_seen};

/// Infers backends from the servers' TCP timestamp clocks; sets `backends` and each
/// connection's `backend`.
pub struct Backends;

impl Detector for Backends {
    fn name(&self) -> &'static str {
        "backends"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Names]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::Backends]
    }
    fn run(&self, a: &mut Analysis, _ctx: &mut Context<'_>) {
        detect(a);
    }
}

/// Rates TCP stacks use, Hz.
pub const COMMON_RATES: [f64; 5] = [1000.0, 250.0, 100.0, 10.0, 2.0];
/// A cluster of one connection leaves the offset index this long (seconds) after it was
/// seen: the comparisons, and so the chance matches, grow with the connection rate, not with
/// the capture's length.
pub const SINGLE_EXPIRY_S: f64 = 600.0;
/// Member connections whose samples feed a backend's Theil–Sen fit.
const FIT_CONNECTIONS: usize = 256;
/// Jitter allowed between the server's stamp and the capture once corrected by the path delay
/// (the two handshake legs' asymmetry, queueing), seconds.
const JITTER_S: f64 = 0.010;
/// Largest crystal drift expected, ppm.
const MAX_SKEW_PPM: f64 = 100.0;
const WRAP: f64 = 4_294_967_296.0;

/// One connection's clock evidence (32 bytes; one per connection with timestamps).
#[derive(Clone, Copy, Debug)]
struct Evidence {
    /// When the server stamped the first sample, seconds since the analysis epoch: its
    /// capture time less the server-side one-way delay.
    t: f64,
    /// That one-way delay, seconds (subtracted from every sample of the connection).
    delay: f64,
    /// Lifetime covered by samples, seconds (single precision: it only weighs the fit's
    /// span and the skew's 10 s threshold).
    span: f32,
    /// The connection (ids past `u32::MAX`, 4 billion connections, give no evidence).
    id: u32,
    /// First sample's TSval.
    tsval: u32,
    /// Snapped rate, when measured: an index into [`COMMON_RATES`].
    rate: Option<u8>,
}

impl Evidence {
    /// First sample (seconds since the analysis epoch, TSval).
    fn first(&self) -> (f64, u32) {
        (self.t, self.tsval)
    }

    /// Snapped rate, when measured, Hz.
    fn rate(&self) -> Option<f64> {
        rate_at(self.rate?)
    }
}

/// A cluster that qualified as a backend: member connection ids, rate, the members (up to
/// [`FIT_CONNECTIONS`]) whose samples feed the fit, and whether the rate was inferred (no
/// member measured it).
struct Found {
    ids: Vec<usize>,
    /// Probability that its members agree by chance.
    chance: f64,
    rate: f64,
    /// The fit's members in time order: id and server-side one-way delay, seconds.
    fit: Vec<(usize, f64)>,
    /// Seconds from the members' first sample to their last.
    span: f64,
    rate_inferred: bool,
}

struct Cluster {
    rate: f64,
    /// The rate's index in the candidates.
    rate_index: usize,
    members: Vec<usize>,
    /// Probability that the members joined by chance (product over joins).
    chance: f64,
    /// The clock's reading at its latest member's first sample, on the cluster's smoothed
    /// line (fractional ticks: rounding it at every join would drift it by up to a tick each
    /// time): the anchor the next prediction starts from.
    anchor: (f64, f64),
    key: u32,
}

fn offset_key(rate: f64, (t, ts): (f64, u32)) -> u32 {
    (f64::from(ts) - rate * t).rem_euclid(WRAP) as u64 as u32
}

/// Ticks between the clock's prediction from `anchor` and `sample` (signed, wrap-aware).
pub fn residual(rate: f64, anchor: (f64, u32), sample: (f64, u32)) -> f64 {
    let predicted = f64::from(anchor.1) + rate * (sample.0 - anchor.0);
    let predicted = predicted.rem_euclid(WRAP) as u64 as u32;
    f64::from(sample.1.wrapping_sub(predicted) as i32)
}

/// [`residual`] from a fractional anchor: ticks from the prediction to `sample`, in
/// (-2^31, 2^31].
fn residual_from(rate: f64, anchor: (f64, f64), sample: (f64, u32)) -> f64 {
    let predicted = anchor.1 + rate * (sample.0 - anchor.0);
    let d = (f64::from(sample.1) - predicted).rem_euclid(WRAP);
    if d > WRAP / 2.0 {
        d - WRAP
    } else {
        d
    }
}

fn tolerance(rate: f64, dt: f64) -> f64 {
    2.0 + rate * JITTER_S + rate * dt.abs() * MAX_SKEW_PPM * 1e-6
}

/// Snap a fitted rate to a common one within 10 %.
pub fn snap(fitted: f64) -> Option<f64> {
    rate_at(snap_index(fitted)?)
}

/// The common rate at index `i` of [`COMMON_RATES`].
fn rate_at(i: u8) -> Option<f64> {
    COMMON_RATES.get(usize::from(i)).copied()
}

/// The index in [`COMMON_RATES`] of the rate `fitted` snaps to.
fn snap_index(fitted: f64) -> Option<u8> {
    let i = COMMON_RATES
        .iter()
        .position(|r| (fitted - r).abs() <= 0.10 * r)?;
    u8::try_from(i).ok()
}

/// Find the backends and set `backend` on their connections. What grows with the
/// connections: the evidence (32 bytes per connection with timestamps) and the clusters'
/// member lists while clustering, both freed before the members are listed (16 + 8 bytes per
/// member, once) for the backends' descriptions and the connections' `backend`.
pub fn detect(a: &mut Analysis) {
    let epoch = a.epoch();
    let mut backends = {
        let evidence = evidence(a, epoch);
        a.timestamped = evidence.len();
        let mut candidates: Vec<f64> = evidence.iter().filter_map(Evidence::rate).collect();
        candidates.sort_by(|x, y| y.total_cmp(x));
        candidates.dedup();
        if candidates.is_empty() {
            candidates = COMMON_RATES.to_vec();
        }
        let clusters = cluster(&evidence, &candidates);
        found(&evidence, &clusters)
    };
    backends.sort_by_key(|b| b.ids.first().copied());
    // Each connection is a member of one backend at most (the largest cluster holding it):
    // (connection, backend index) in connection order, and the ids alone for the passes.
    let mut member: Vec<(u32, u32)> = backends
        .iter()
        .zip(0u32..)
        .flat_map(|(f, k)| {
            f.ids
                .iter()
                .map(move |&id| (u32::try_from(id).unwrap_or(u32::MAX), k))
        })
        .collect();
    member.sort_unstable();
    member.dedup_by_key(|m| m.0);
    let ids: Vec<usize> = member.iter().map(|m| m.0 as usize).collect();
    let seen = members_seen(a, epoch, &backends, &member, &ids);
    drop(ids);
    a.backends = backends
        .into_iter()
        .zip(seen)
        .enumerate()
        .map(|(i, (f, seen))| describe(format!("B{}", i + 1), f, seen))
        .collect();
    let names: Vec<crate::model::Name> = a.backends.iter().map(|b| b.id.as_str().into()).collect();
    // Kept beside the spill rather than written into it: as a backend number per connection
    // (2 bytes each) when most connections are members, else as the members' list (8 bytes
    // each, searched).
    let n = a.connections.len();
    match u16::try_from(names.len()) {
        Ok(_) if 4 * member.len() >= n => {
            let mut of = vec![0u16; n];
            for &(id, k) in &member {
                if let Some(slot) = of.get_mut(id as usize) {
                    *slot = k as u16 + 1;
                }
            }
            drop(member);
            a.connections.update_deferred(move |c| {
                if let Some(&k) = of.get(c.id).filter(|&&k| k > 0) {
                    c.backend = names.get(usize::from(k) - 1).cloned();
                }
            });
        }
        _ => a.connections.update_deferred(move |c| {
            let id = u32::try_from(c.id).unwrap_or(u32::MAX);
            if let Ok(i) = member.binary_search_by_key(&id, |m| m.0) {
                let k = member.get(i).map_or(usize::MAX, |m| m.1 as usize);
                c.backend = names.get(k).cloned();
            }
        }),
    }
}

/// Each connection's evidence, in order of its server's first stamp (one list: a clock
/// belongs to a host, whatever port reached it). Times are seconds after `epoch`.
fn evidence(a: &Analysis, epoch: Nanos) -> Vec<Evidence> {
    use rayon::prelude::*;
    let secs = |t: Nanos| (t - epoch) as f64 / 1e9;
    let mut evidence: Vec<Evidence> = a.connections.par_filter_map(|c| {
            let s = &c.rec.ts_samples;
            let (first, last) = (s.first()?, s.last()?);
            // The SYN → SYN-ACK leg needs no ACK: an also-ran reset on its late SYN-ACK
            // has one too.
            let delay = match (c.rec.last_syn_time.get(), c.rec.synack_time.get()) {
                (Some(syn), Some(synack)) if syn <= synack => (synack - syn) as f64 / 2e9,
                _ => 0.0,
            };
            let t = secs(first.time) - delay;
            let span = secs(last.time) - secs(first.time);
            let ticks = f64::from(last.tsval.wrapping_sub(first.tsval));
            let rate = (span >= 1.0 && ticks >= 20.0)
                .then(|| snap_index(ticks / span))
                .flatten();
            Some(Evidence {
                t,
                delay,
                span: span as f32,
                id: u32::try_from(c.id).ok()?,
                tsval: first.tsval,
                rate,
            })
        });
    // Stable: connections with equal first samples stay in id order.
    evidence.par_sort_by(|x, y| x.t.total_cmp(&y.t));
    evidence
}

/// The backends the clusters make: each connection goes to the largest cluster holding it
/// (by evidence index), and a cluster left with two or more members is a backend.
fn found(ev: &[Evidence], clusters: &[Cluster]) -> Vec<Found> {
    // The best cluster of each evidence, by index (`NONE`: none yet): 4 bytes each.
    const NONE: u32 = u32::MAX;
    let mut best: Vec<u32> = vec![NONE; ev.len()];
    for (ci, cl) in clusters.iter().enumerate() {
        let Ok(ci) = u32::try_from(ci) else { break };
        for &m in &cl.members {
            if let Some(slot) = best.get_mut(m) {
                let larger = clusters
                    .get(*slot as usize)
                    .is_none_or(|b| b.members.len() < cl.members.len());
                if larger {
                    *slot = ci;
                }
            }
        }
    }
    let mut backends = Vec::new();
    for (ci, cl) in clusters.iter().enumerate() {
        let evs: Vec<&Evidence> = cl
            .members
            .iter()
            .copied()
            .filter(|&m| best.get(m).is_some_and(|&b| b as usize == ci))
            .filter_map(|m| ev.get(m))
            .collect();
        if evs.len() < 2 {
            continue;
        }
        // The fit needs samples spread over the backend's life, not all of them: at most
        // FIT_CONNECTIONS members, evenly spaced, the first always included.
        let step = evs.len().div_ceil(FIT_CONNECTIONS).max(1);
        let fit: Vec<(usize, f64)> = evs
            .iter()
            .step_by(step)
            .map(|e| (e.id as usize, e.delay))
            .collect();
        let first_seen = evs.iter().map(|e| e.t).fold(f64::NAN, f64::min);
        let last_seen = evs
            .iter()
            .map(|e| e.t + f64::from(e.span))
            .fold(f64::NAN, f64::max);
        let mut ids: Vec<usize> = evs.iter().map(|e| e.id as usize).collect();
        ids.sort_unstable();
        backends.push(Found {
            ids,
            chance: cl.chance,
            rate: cl.rate,
            fit,
            span: last_seen - first_seen,
            rate_inferred: evs.iter().all(|e| e.rate.is_none()),
        });
    }
    backends
}

/// Greedy clustering in time order through an offset index per rate. Clusters of one
/// connection leave the index [`SINGLE_EXPIRY_S`] after it; each join multiplies the cluster's
/// chance by the probability that one of the clusters compared agreed by chance.
fn cluster(ev: &[Evidence], candidates: &[f64]) -> Vec<Cluster> {
    let mut c = Clustering::new(candidates);
    for (i, e) in ev.iter().enumerate() {
        let first = e.first();
        c.expire(first.0);
        match c.best_match(e) {
            Some((ci, ri, compared)) => c.join(ci, ri, i, first, compared),
            None => c.open(i, e),
        }
    }
    c.clusters
}

/// The clustering's state: the clusters, and per candidate rate an index of them by offset key
/// with how many it holds.
struct Clustering<'c> {
    candidates: &'c [f64],
    clusters: Vec<Cluster>,
    index: Vec<KeyIndex>,
    live: Vec<usize>,
    /// Clusters created as one connection, in time order, until they expire or grow.
    singles: std::collections::VecDeque<(f64, usize)>,
    /// Scratch list of the clusters near a key.
    near: Vec<usize>,
}

impl<'c> Clustering<'c> {
    fn new(candidates: &'c [f64]) -> Self {
        Clustering {
            candidates,
            clusters: Vec::new(),
            index: candidates
                .iter()
                .map(|&rate| KeyIndex::new(tolerance(rate, 3600.0) as u32 + 1))
                .collect(),
            live: vec![0; candidates.len()],
            singles: std::collections::VecDeque::new(),
            near: Vec::new(),
        }
    }

    /// Clusters of one connection older than [`SINGLE_EXPIRY_S`] before `t` leave the index.
    fn expire(&mut self, t: f64) {
        while let Some(&(t0, ci)) = self.singles.front() {
            if t0 >= t - SINGLE_EXPIRY_S {
                break;
            }
            self.singles.pop_front();
            let Some(cl) = self.clusters.get(ci) else { continue };
            if cl.members.len() == 1 {
                let (ri, key) = (cl.rate_index, cl.key);
                if let Some(idx) = self.index.get_mut(ri) {
                    idx.remove(key, ci);
                }
                if let Some(n) = self.live.get_mut(ri) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    /// The largest cluster `e`'s first stamp fits (cluster, rate index), with the clusters
    /// compared, weighted by their window / 2^32 (the chance of a fit by accident).
    fn best_match(&mut self, e: &Evidence) -> Option<(usize, usize, f64)> {
        let first = e.first();
        let mut matched: Option<(usize, usize)> = None;
        let mut compared = 0.0;
        for (ri, &rate) in self.candidates.iter().enumerate() {
            if e.rate().is_some_and(|r| r != rate) {
                continue;
            }
            let key = offset_key(rate, first);
            let Some(idx) = self.index.get(ri) else { continue };
            compared += self.live.get(ri).copied().unwrap_or(0) as f64
                * (2.0 * tolerance(rate, SINGLE_EXPIRY_S) + 1.0)
                / WRAP;
            idx.near(key, &mut self.near);
            for &ci in &self.near {
                let Some(cl) = self.clusters.get(ci) else { continue };
                let tol = tolerance(rate, first.0 - cl.anchor.0);
                let ok = residual_from(rate, cl.anchor, first).abs() <= tol;
                let better = matched
                    .and_then(|(m, _)| self.clusters.get(m))
                    .is_none_or(|m| m.members.len() < cl.members.len());
                if ok && better {
                    matched = Some((ci, ri));
                }
            }
        }
        matched.map(|(ci, ri)| (ci, ri, compared))
    }

    /// Evidence `i` joins cluster `ci`, whose anchor moves to it.
    fn join(&mut self, ci: usize, ri: usize, i: usize, first: (f64, u32), compared: f64) {
        let Some(cl) = self.clusters.get_mut(ci) else {
            return;
        };
        cl.members.push(i);
        cl.chance *= compared.min(1.0);
        // The anchor moves to this connection's time on the cluster's smoothed line: its own
        // error weighs 1/n (n up to 4), so the next prediction is not off by the latest
        // member's jitter as well as the next one's.
        let predicted = cl.anchor.1 + cl.rate * (first.0 - cl.anchor.0);
        let weight = 1.0 / (cl.members.len().min(4) as f64);
        let smoothed = predicted + weight * residual_from(cl.rate, cl.anchor, first);
        cl.anchor = (first.0, smoothed.rem_euclid(WRAP));
        let old = cl.key;
        cl.key = offset_key(cl.rate, (cl.anchor.0, cl.anchor.1 as u64 as u32));
        let new = cl.key;
        if let Some(idx) = self.index.get_mut(ri) {
            idx.remove(old, ci);
            idx.insert(new, ci);
        }
    }

    /// Evidence `i` matched no cluster: a cluster of its own per rate it may have.
    fn open(&mut self, i: usize, e: &Evidence) {
        let first = e.first();
        for (ri, &rate) in self.candidates.iter().enumerate() {
            if e.rate().is_some_and(|r| r != rate) {
                continue;
            }
            let key = offset_key(rate, first);
            self.clusters.push(Cluster {
                rate,
                rate_index: ri,
                members: vec![i],
                chance: 1.0,
                anchor: (first.0, f64::from(first.1)),
                key,
            });
            let ci = self.clusters.len() - 1;
            if let Some(idx) = self.index.get_mut(ri) {
                idx.insert(key, ci);
            }
            if let Some(n) = self.live.get_mut(ri) {
                *n += 1;
            }
            self.singles.push_back((first.0, ci));
        }
    }
}

/// The clusters of one candidate rate by offset key: buckets of a power-of-two width at least
/// the widest tolerance `w`, so every key within `w` of a query lies in its bucket or one of
/// the two beside it. Three probes of a hash table per query, whatever the number of clusters
/// (a `BTreeMap` range walked a tree as deep as the log of that number, a cache miss a level
/// once the index outgrew the cache).
struct KeyIndex {
    w: u32,
    shift: u32,
    buckets: foldhash::HashMap<u32, Vec<(u32, usize)>>,
}

impl KeyIndex {
    fn new(w: u32) -> KeyIndex {
        let width = w.max(1).checked_next_power_of_two().unwrap_or(1 << 31);
        KeyIndex {
            w,
            shift: width.trailing_zeros(),
            buckets: foldhash::HashMap::default(),
        }
    }

    fn insert(&mut self, key: u32, ci: usize) {
        self.buckets
            .entry(key >> self.shift)
            .or_default()
            .push((key, ci));
    }

    fn remove(&mut self, key: u32, ci: usize) {
        let b = key >> self.shift;
        if let Some(v) = self.buckets.get_mut(&b) {
            v.retain(|&(_, x)| x != ci);
            if v.is_empty() {
                self.buckets.remove(&b);
            }
        }
    }

    /// Into `out`: the clusters whose key lies within `w` of `key` (wrapping at 2^32), in
    /// order of key from `key - w`, and in order of insertion for one key.
    fn near(&self, key: u32, out: &mut Vec<usize>) {
        out.clear();
        let lo = key.wrapping_sub(self.w);
        let span = 2 * u64::from(self.w);
        let mut hits: Vec<(u32, usize)> = Vec::new();
        let last = u32::MAX >> self.shift;
        let b = key >> self.shift;
        let probes = [
            b.checked_sub(1).unwrap_or(last),
            b,
            if b == last { 0 } else { b + 1 },
        ];
        for (k, &p) in probes.iter().enumerate() {
            if probes[..k].contains(&p) {
                continue;
            }
            if let Some(v) = self.buckets.get(&p) {
                hits.extend(
                    v.iter()
                        .filter(|&&(kk, _)| u64::from(kk.wrapping_sub(lo)) <= span)
                        .map(|&(kk, ci)| (kk.wrapping_sub(lo), ci)),
                );
            }
        }
        hits.sort_by_key(|&(d, _)| d);
        out.extend(hits.iter().map(|&(_, ci)| ci));
    }
}

/// The clock regime one connection shows (after [`detect`]).
pub fn regime(c: &crate::model::Connection) -> ClockRegime {
    let s = &c.rec.ts_samples;
    if c.backend.is_some() {
        return ClockRegime::Stable;
    }
    let (Some(first), Some(last)) = (s.first(), s.last()) else {
        return ClockRegime::NoTimestamps;
    };
    let span = (last.time - first.time) as f64 / 1e9;
    let ticks = f64::from(last.tsval.wrapping_sub(first.tsval));
    if span >= 1.0 && ticks >= 20.0 && snap(ticks / span).is_some() {
        ClockRegime::Unmatched
    } else {
        ClockRegime::Unresolved
    }
}
