//! Decode and track on every core, keeping each connection's packets in capture order.
//!
//! Per batch of frames from the reader, two steps, each parallel in itself and run at the same
//! time as the other's work on the neighbouring batch (batch k+1 is decoded while batch k is
//! tracked, so neither waits for the slower half of the other):
//!
//! 1. **Decode**: the batch is cut into runs of frames, each decoded on its own rayon task into
//!    TCP segments tagged with their shard (packet views whose payload is a range of the
//!    batch, so they can wait for the next step) and parsed DNS messages.
//! 2. **Track**: each shard owns a [`Tracker`] for the connections whose 4-tuple hashes to it
//!    (the hash is symmetric, so both directions land in one shard) and walks the decoded runs
//!    in order, taking its own packets. DNS messages are recorded in the [`DnsTable`] on a
//!    task of their own beside the shards.
//!
//! A connection is only ever touched by one shard, in capture order, so the result is the same
//! as one tracker's whatever the number of shards. After each batch the shards' finished
//! records are merged by first record straight into the report's connection list, as far as
//! the oldest connection still open allows (see [`super::merge_ready`]).

use rayon::prelude::*;

use super::{merge_ready, Evictions, TrackConfig, Tracker, VantageVotes};
use crate::app::dns::DnsTable;
use crate::app::dns::{is_dns, DnsMessage, Malformed, Seen};
use crate::decode::{decode, DecodeStats, Packet, L4};
use crate::engine::CachePadded;
use crate::model::store::SpillConfig;
use crate::model::Connections;
use crate::read::Batch;

/// Frames decoded per task.
const RUN: usize = 2048;

/// How many frames ahead of the one being decoded the next frame's headers are prefetched.
const PREFETCH: usize = 8;

/// A datagram on the DNS port, its message parsed in the decode step.
type DnsItem = (Seen, Result<Option<DnsMessage>, Malformed>);

/// A decoded TCP segment held apart from its batch: the packet view without its payload, and
/// where the payload sits in the batch.
type Segment = (Packet<'static>, std::ops::Range<usize>);

/// One run of decoded frames: TCP segments split by shard, DNS datagrams, counts. Emptied
/// once tracked and refilled by a later batch, so the decode step allocates (and the system
/// maps fresh pages) only while the buffers grow to a batch's size. Held in a
/// [`CachePadded`], like the trackers: neighbouring runs are decoded on different cores, each
/// updating its counts and its DNS list's length per frame (the shard lists' headers sit in an
/// allocation of their own, which the padding does not cover).
#[derive(Default)]
struct Run {
    tcp: Vec<Vec<Segment>>,
    dns: Vec<DnsItem>,
    stats: DecodeStats,
}

/// A batch decoded and waiting to be tracked.
struct Decoded {
    batch: Batch,
    runs: Vec<CachePadded<Run>>,
}

/// The decode and track stages over `n` shards.
pub struct Sharded {
    trackers: Vec<CachePadded<Tracker>>,
    dns: DnsTable,
    stats: DecodeStats,
    table_peak: usize,
    /// The last batch fed, decoded; tracked while the next one is decoded.
    pending: Option<Decoded>,
    /// Emptied runs of a batch already tracked, for the next batch to decode into.
    spare: Vec<CachePadded<Run>>,
    /// The report's connections, in order of first record: the records merged so far.
    connections: Connections,
}

/// What the decode and track stages hand on.
pub struct Output {
    /// The connections, in order of first record (ids are positions).
    pub connections: Connections,
    /// How many of them were merged after the last read: those still in a tracker's table at
    /// the end (open, or lingering after their close) and those held back behind one; the
    /// others were merged batch by batch while the capture was read.
    pub merged_late: usize,
    /// Handshake-timing votes for the vantage point.
    pub vantage: VantageVotes,
    /// Most connections in the trackers' tables at once.
    pub table_peak: usize,
    /// Connections that left a full table early ([`TrackConfig::table_cap`]).
    pub evicted: Evictions,
    /// DNS exchanges.
    pub dns: DnsTable,
    /// Decode counts.
    pub stats: DecodeStats,
    /// Datagrams that looked like QUIC but were not readable as a connection's start, per
    /// [`super::quic::BadQuic`] kind: how many, and the first's record.
    pub bad_quic: [(u64, Option<u64>); 3],
}

/// The shard of a packet: a direction-symmetric hash of its addresses and ports (TCP and
/// UDP alike, so a QUIC flow's datagrams stay on one shard and in order).
fn shard_of(p: &Packet<'_>, n: usize) -> usize {
    let ports = match &p.l4 {
        L4::Tcp(t) => t.src_port ^ t.dst_port,
        L4::Udp(u) => u.src_port ^ u.dst_port,
    };
    let low = |ip: &std::net::IpAddr| -> u32 {
        match ip {
            std::net::IpAddr::V4(a) => u32::from(*a),
            std::net::IpAddr::V6(a) => (u128::from(*a) as u32) ^ ((u128::from(*a) >> 64) as u32),
        }
    };
    // XOR is symmetric in source and destination; the multiply spreads the bits.
    let h = (low(&p.src) ^ low(&p.dst) ^ u32::from(ports)).wrapping_mul(0x9e37_79b1);
    (h >> 16) as usize % n.max(1)
}

/// Decode every frame of `batch`, in runs on every core, into `runs` (emptied runs of an
/// earlier batch, or none).
fn decode_batch(batch: &Batch, n: usize, mut runs: Vec<CachePadded<Run>>) -> Vec<CachePadded<Run>> {
    runs.resize_with(batch.len().div_ceil(RUN), CachePadded::default);
    runs.par_iter_mut()
        .enumerate()
        .for_each(|(r, run)| decode_run(batch, r * RUN..batch.len().min((r + 1) * RUN), n, run));
    runs
}

/// Decode frames `range` of `batch` into the empty `run`.
fn decode_run(batch: &Batch, range: std::ops::Range<usize>, n: usize, run: &mut Run) {
    let n = n.max(1);
    if run.tcp.len() != n {
        let per_shard = range.len() / n + 16;
        run.tcp = (0..n).map(|_| Vec::with_capacity(per_shard)).collect();
    }
    for i in range {
        batch.prefetch(i + PREFETCH);
        let Some(frame) = batch.get(i) else { continue };
        let outcome = decode(&frame);
        run.stats.count(&outcome);
        match outcome {
            Ok(p) => match p.l4 {
                L4::Udp(u) if is_dns(&u) => run
                    .dns
                    .push((Seen::of(&p, &u), DnsMessage::parse(u.payload))),
                // TCP, and UDP that may be QUIC (the tracker decides: a client Initial that
                // opens), go to the shard of their flow.
                _ => {
                    if let Some(shard) = run.tcp.get_mut(shard_of(&p, n)) {
                        let (view, payload) = p.detach();
                        shard.push((view, batch.locate(payload)));
                    }
                }
            },
            Err(_) => continue,
        }
    }
}

impl Sharded {
    /// `n` shards (at least one) with the given tracker settings.
    pub fn new(mut cfg: TrackConfig, n: usize, spill: SpillConfig) -> Sharded {
        cfg.table_cap = (cfg.table_cap / n.max(1)).max(1);
        Sharded {
            trackers: (0..n.max(1))
                .map(|_| CachePadded(Tracker::new(cfg)))
                .collect(),
            dns: DnsTable::default(),
            stats: DecodeStats::default(),
            table_peak: 0,
            pending: None,
            spare: Vec::new(),
            connections: Connections::new(spill),
        }
    }

    /// Decode `batch` while tracking the batch fed before it; returns that one, done with,
    /// for reuse.
    pub fn feed(&mut self, batch: Batch) -> Option<Batch> {
        let n = self.trackers.len();
        let mut pending = self.pending.take();
        let spare = std::mem::take(&mut self.spare);
        let (runs, ()) = rayon::join(
            || decode_batch(&batch, n, spare),
            || {
                if let Some(d) = &mut pending {
                    self.track(d);
                }
            },
        );
        self.pending = Some(Decoded { batch, runs });
        pending.map(|d| {
            self.spare = d.runs;
            d.batch
        })
    }

    /// Track one decoded batch: DNS beside the shards, each shard its own segments in order.
    /// The runs are left empty for reuse.
    fn track(&mut self, d: &mut Decoded) {
        let mut tcp = Vec::with_capacity(d.runs.len());
        let mut dns = Vec::with_capacity(d.runs.len());
        for run in d.runs.iter_mut().map(|r| &mut r.0) {
            self.stats.add(&std::mem::take(&mut run.stats));
            tcp.push(&mut run.tcp);
            dns.push(&mut run.dns);
        }
        let (table, batch) = (&mut self.dns, &d.batch);
        rayon::join(
            || {
                for items in dns {
                    for (seen, msg) in items.drain(..) {
                        table.on_message(seen, msg);
                    }
                }
            },
            || {
                let tcp = &tcp;
                self.trackers
                    .par_iter_mut()
                    .enumerate()
                    .for_each(|(k, tracker)| {
                        let mine = tcp.iter().filter_map(|shards| shards.get(k)).flatten();
                        for (view, payload) in mine {
                            let p = view.attach(batch.bytes_at(payload.clone()));
                            match &p.l4 {
                                L4::Tcp(t) => tracker.on_tcp(&p, t),
                                L4::Udp(u) => tracker.on_udp(&p, u),
                            }
                        }
                    })
            },
        );
        for shards in tcp {
            shards.iter_mut().for_each(Vec::clear);
        }
        // Sampled once per batch (the shards' tables are not in step within one).
        let open: usize = self.trackers.iter().map(|t| t.open()).sum();
        self.table_peak = self.table_peak.max(open);
        self.merge();
    }

    /// Move every record that is ready into the connection list (on this core, while the other
    /// decodes the next batch): written once into memory it stays in, and the shards' chunks
    /// freed as the merge passes them.
    fn merge(&mut self) {
        let list = &mut self.connections;
        merge_ready(&mut self.trackers, |rec| list.push(rec));
    }

    /// Track the last batch, drain every shard and merge the rest of their records.
    pub fn finish(mut self) -> Output {
        if let Some(mut d) = self.pending.take() {
            self.track(&mut d);
        }
        self.dns.shrink_to_fit();
        let merged_early = self.connections.len();
        self.trackers.iter_mut().for_each(|t| t.drain());
        self.merge();
        let mut vantage = VantageVotes::default();
        for t in &self.trackers {
            vantage.add(t.vantage());
        }
        let table_peak = self.trackers.iter().map(|t| t.table_peak()).max();
        let mut evicted = Evictions::default();
        let mut bad_quic = [(0, None::<u64>); 3];
        for t in &self.trackers {
            evicted.add(&t.evicted());
            for (sum, (n, first)) in bad_quic.iter_mut().zip(t.bad_quic()) {
                sum.0 += n;
                sum.1 = sum.1.into_iter().chain(first).min();
            }
        }
        Output {
            evicted,
            merged_late: self.connections.len() - merged_early,
            connections: self.connections,
            vantage,
            table_peak: table_peak.unwrap_or(0).max(self.table_peak),
            dns: self.dns,
            stats: self.stats,
            bad_quic,
        }
    }
}
