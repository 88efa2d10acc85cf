//! Track stage: TCP segments → one [`ConnRecord`] per connection attempt.
//!
//! The table is keyed by the 4-tuple in canonical order. A SYN with a new initial sequence
//! number on a tuple whose connection ended (or never got past its own SYN) starts a new
//! record: port reuse. Closed connections linger briefly for late packets, idle ones are
//! flushed, and whatever is open at the end of the capture is drained and still reported, so
//! memory follows the connections open at one time, not the file's size.
//!
//! The tracker also infers the capture's vantage point from the handshakes it saw.

pub mod conn;
pub mod parallel;
pub mod quic;

use foldhash::HashMap;

pub use crate::app::Milestones;
pub use crate::model::record::{Vantage, VantageVotes};
pub use conn::{ConnRecord, ConnState, StaleFacts, StaleFailure, TsSample};

use crate::decode::{Packet, TcpView, UdpView};
use crate::domain::{ConnKey, Endpoint, Nanos};

/// Tracker settings.
#[derive(Clone, Copy, Debug)]
pub struct TrackConfig {
    /// A connection with no packet for this long is flushed (capture time).
    pub idle_timeout: Nanos,
    /// A closed connection (RST, or FIN both ways) stays this long for late packets.
    pub linger: Nanos,
    /// An attempt that never got an answer (client SYNs only: no SYN-ACK, no server packet,
    /// no client payload) is finished after this long without a packet: the clients' SYN
    /// retransmissions are over by then (Linux's default six give up 127 s after the first
    /// SYN; Windows 21 s, Apple's stacks about 75 s), so a SYN flood or a scan leaves the
    /// table in 135 s instead of the idle timeout.
    pub syn_timeout: Nanos,
    /// A QUIC connection with no datagram for this long has ended (capture time): its close
    /// is encrypted, so silence is the end an observer sees (30 s is a common
    /// max_idle_timeout).
    pub quic_idle: Nanos,
    /// A client send after this much quiet (no payload either way) on a connection that
    /// already served a response is watched as a possible stale reuse.
    pub reuse_idle: Nanos,
    /// Records per chunk of a tracker's output (16,384 by default): the granularity at which
    /// the merge frees them. Tests set it small to cross many chunk boundaries.
    pub record_chunk: usize,
    /// Most connections the trackers' tables hold together (unbounded by default;
    /// `--memory-limit` sets it, see [`TrackConfig::table_cap_for`]); each of `n` shards' trackers
    /// holds a `n`th. Past it the quietest attempts leave the
    /// table early, as finished records, each counted in [`Evictions`]: unanswered SYNs
    /// first (a flood's), then the quietest others. Nothing is dropped from the report.
    pub table_cap: usize,
}

impl TrackConfig {
    /// Bytes one connection costs in a tracker's table while it is open: its state (512
    /// bytes), its key and the hash table's slack, and its reserved output slot (344 bytes).
    pub const OPEN_COST: usize = 1536;

    /// The table cap for trackers sharing `bytes` of memory (at least 4,096 connections).
    pub fn table_cap_for(bytes: usize) -> usize {
        (bytes / Self::OPEN_COST).max(4096)
    }
}

/// Connections that left a full table before their time (see [`TrackConfig::table_cap`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Attempts never answered (client SYNs only).
    pub unanswered: u64,
    /// Others: answered or carrying data, quiet the longest.
    pub other: u64,
}

impl Evictions {
    /// Add another tracker's counts.
    pub fn add(&mut self, o: &Evictions) {
        self.unanswered += o.unanswered;
        self.other += o.other;
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.unanswered + self.other
    }
}

impl Default for TrackConfig {
    fn default() -> Self {
        TrackConfig {
            // Long enough for a keep-alive connection that an app left idle while suspended.
            idle_timeout: 600 * 1_000_000_000,
            // Late retransmissions, a final ACK, a 101 that crosses the client's RST.
            linger: 4 * 1_000_000_000,
            syn_timeout: 135 * 1_000_000_000,
            quic_idle: 30 * 1_000_000_000,
            reuse_idle: 1_000_000_000,
            record_chunk: SLOT_CHUNK,
            table_cap: usize::MAX,
        }
    }
}

impl VantageVotes {
    /// One leg must be this many times the other for the capture point to sit at one end:
    /// on the client, SYN → SYN-ACK carries the whole round trip while SYN-ACK → ACK is only
    /// the client's own turnaround (tens of µs), even on sub-millisecond paths.
    const END_RATIO: i64 = 3;
    /// Handshakes shorter than this (loopback) say nothing about where the capture was taken.
    const MIN_HANDSHAKE: Nanos = 20_000;

    /// Add another tracker's votes.
    pub fn add(&mut self, o: &VantageVotes) {
        self.client += o.client;
        self.server += o.server;
        self.middle += o.middle;
    }

    fn vote(&mut self, rec: &ConnRecord) {
        let Some((a, b)) = rec.handshake_legs() else {
            return;
        };
        if a + b < Self::MIN_HANDSHAKE {
            return;
        }
        if a >= Self::END_RATIO * b {
            self.client += 1;
        } else if b >= Self::END_RATIO * a {
            self.server += 1;
        } else {
            self.middle += 1;
        }
    }

    /// The majority verdict.
    pub fn verdict(&self) -> Vantage {
        let max = self.client.max(self.server).max(self.middle);
        if max == 0 {
            Vantage::Unknown
        } else if max == self.client {
            Vantage::Client
        } else if max == self.server {
            Vantage::Server
        } else {
            Vantage::Middle
        }
    }
}

/// One connection attempt's place in a tracker's output, reserved at its first packet (so the
/// slots are in order of first record), filled when the connection leaves the table, and
/// emptied when the merge moves the record on into the report.
// The slots are where the records live until the merge: boxing the large variant would cost
// an allocation per connection, and the small ones fit in its niche (the size test below).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Slot {
    /// Still in the table: its first record.
    Open(u64),
    /// Left the table: its record, waiting for the merge.
    Done(ConnRecord),
    /// Moved on.
    Moved,
}

/// Record slots in order of first packet, kept in fixed-size chunks: no doubling slack, no
/// reallocation copies. The merge moves records out from the front while the tracker adds
/// slots at the back, and each chunk is freed as soon as the merge has passed it, so the
/// chunks hold only the records between the oldest connection still open and the newest.
#[derive(Debug, Default)]
struct Slots {
    chunks: std::collections::VecDeque<Vec<Slot>>,
    /// Index of the first slot of the front chunk.
    base: usize,
    /// Slots reserved so far.
    len: usize,
    /// The next slot to move on: every earlier one has been.
    next: usize,
    /// Slots per chunk.
    chunk: usize,
}

/// Slots per chunk of [`Slots`] by default: 16,384 slots are ~5.8 MB, above the size from
/// which the binary has the allocator map each allocation on its own
/// ([`crate::engine::memory::tune_allocator`]), so a chunk goes back to the system as soon as the merge
/// has passed it. Untouched pages of the last chunk cost nothing.
const SLOT_CHUNK: usize = 1 << 14;

impl Slots {
    /// A new open slot for a connection whose first packet is `first_record`; returns its
    /// index.
    fn push(&mut self, first_record: u64) -> usize {
        let chunk = self.chunk.max(1);
        if self.chunks.back().is_none_or(|c| c.len() >= chunk) {
            let mut fresh = Vec::with_capacity(chunk);
            crate::engine::memory::prefer_huge_pages(&mut fresh);
            self.chunks.push_back(fresh);
        }
        if let Some(c) = self.chunks.back_mut() {
            c.push(Slot::Open(first_record));
        }
        self.len += 1;
        self.len - 1
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Slot> {
        let chunk = self.chunk.max(1);
        let at = i.checked_sub(self.base)?;
        self.chunks.get_mut(at / chunk)?.get_mut(at % chunk)
    }

    /// The next slot to move on, with its first record and whether its record is done.
    fn head(&self) -> Option<(u64, bool)> {
        let chunk = self.chunk.max(1);
        let at = self.next.checked_sub(self.base)?;
        match self.chunks.get(at / chunk)?.get(at % chunk)? {
            Slot::Open(first) => Some((*first, false)),
            Slot::Done(r) => Some((r.first_record, true)),
            Slot::Moved => None,
        }
    }

    /// Move the record at the head out (when it is done), freeing the front chunk once it
    /// has all been moved.
    fn take_head(&mut self) -> Option<ConnRecord> {
        let chunk = self.chunk.max(1);
        let next = self.next;
        let slot = self.get_mut(next)?;
        let rec = match std::mem::replace(slot, Slot::Moved) {
            Slot::Done(rec) => rec,
            other => {
                *slot = other;
                return None;
            }
        };
        self.next += 1;
        if self.next - self.base >= chunk {
            self.chunks.pop_front();
            self.base += chunk;
        }
        Some(rec)
    }
}

/// A tracker's output.
#[derive(Debug, Default)]
struct Tracked {
    /// One slot per attempt, in order of its first packet, filled when the connection leaves
    /// the table (so the records need no sort at the end).
    slots: Slots,
    /// Handshake-timing votes for the vantage point.
    vantage: VantageVotes,
    /// Most connections in the table at once (in memory; closed ones linger a few seconds).
    table_peak: usize,
    /// Connections that left a full table early.
    evicted: Evictions,
}

/// Most connections open at once, from `(first record, last record)` spans in order of first
/// record: each is open from its first record to its last.
pub fn concurrent(spans: impl IntoIterator<Item = (u64, u64)>) -> usize {
    use std::cmp::Reverse;
    let mut ends = std::collections::BinaryHeap::new();
    let mut peak = 0;
    for (first, last) in spans {
        while ends.peek().is_some_and(|&Reverse(end)| end < first) {
            ends.pop();
        }
        ends.push(Reverse(last));
        peak = peak.max(ends.len());
    }
    peak
}

/// A connection in the table and the slot its record will fill.
#[derive(Debug)]
struct Open {
    slot: usize,
    conn: ConnState,
}

/// A QUIC connection in the table and the slot its record will fill.
#[derive(Debug)]
struct QuicOpen {
    slot: usize,
    conn: Box<quic::QuicConn>,
}

/// The connection table. The shards' trackers sit side by side, each in a
/// [`crate::engine::CachePadded`] so that no two share a cache line.
#[derive(Debug, Default)]
pub struct Tracker {
    cfg: TrackConfig,
    table: HashMap<ConnKey, Open>,
    quic: HashMap<ConnKey, QuicOpen>,
    /// Datagrams that looked like QUIC but were not readable as a connection's start, per
    /// [`quic::BadQuic`] kind: how many, and the record of the first.
    bad_quic: [(u64, Option<u64>); 3],
    out: Tracked,
    now: Nanos,
    last_sweep: Nanos,
    since_sweep: usize,
}

/// Move on, in order of first record across `trackers` (which saw disjoint connections),
/// every record that has left its table and comes before every connection still in one
/// (open, or lingering after its close); `emit` takes each one. Called after each tracked
/// batch, so the records reach the report while the capture is read and each tracker's
/// chunks hold only what a connection still in a table holds back; after [`Tracker::drain`]
/// on every tracker, it moves them all.
pub fn merge_ready(
    trackers: &mut [crate::engine::CachePadded<Tracker>],
    mut emit: impl FnMut(ConnRecord),
) {
    loop {
        // The tracker whose next slot has the smallest first record (a record number belongs
        // to one tracker): if that slot is still open, nothing later may move yet.
        let mut first: Option<(u64, usize, bool)> = None;
        for (k, t) in trackers.iter().enumerate() {
            if let Some((f, done)) = t.out.slots.head() {
                if first.is_none_or(|(b, _, _)| f < b) {
                    first = Some((f, k, done));
                }
            }
        }
        let Some((_, k, true)) = first else { return };
        match trackers.get_mut(k).and_then(|t| t.out.slots.take_head()) {
            Some(rec) => emit(rec),
            None => return,
        }
    }
}

impl Tracker {
    /// A tracker with the given settings.
    pub fn new(cfg: TrackConfig) -> Tracker {
        let mut t = Tracker {
            cfg,
            ..Tracker::default()
        };
        t.out.slots.chunk = cfg.record_chunk;
        t
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.table.len() + self.quic.len()
    }

    /// Datagrams that looked like QUIC but were not readable as a connection's start, per
    /// [`quic::BadQuic`] kind: how many, and the record of the first.
    pub fn bad_quic(&self) -> [(u64, Option<u64>); 3] {
        self.bad_quic
    }

    /// Feed one UDP datagram (not DNS): QUIC when it belongs to a QUIC connection or starts
    /// one, else ignored.
    pub fn on_udp(&mut self, p: &Packet<'_>, u: &UdpView<'_>) {
        self.now = self.now.max(p.time);
        let src = Endpoint {
            ip: p.src,
            port: u.src_port,
        };
        let key = ConnKey::new(
            src,
            Endpoint {
                ip: p.dst,
                port: u.dst_port,
            },
        );
        if let Some(open) = self.quic.get_mut(&key) {
            let side = open.conn.side_of(src);
            if side == crate::domain::Side::Client && open.conn.is_new_attempt(u.payload) {
                if let quic::First::Quic(conn) = quic::QuicConn::start(p, u) {
                    let fresh = QuicOpen {
                        slot: self.out.slots.push(p.record),
                        conn,
                    };
                    let old = std::mem::replace(open, fresh);
                    Self::finish_quic(&mut self.out, old);
                    self.maybe_sweep();
                    return;
                }
            }
            open.conn.update(p, u, side, false);
        } else {
            match quic::QuicConn::start(p, u) {
                quic::First::Quic(conn) => {
                    let slot = self.out.slots.push(p.record);
                    self.quic.insert(key, QuicOpen { slot, conn });
                    self.out.table_peak = self.out.table_peak.max(self.open());
                    if self.open() > self.cfg.table_cap {
                        self.evict_quic();
                    }
                }
                quic::First::Bad(kind) => {
                    let slot = &mut self.bad_quic[kind.index()];
                    slot.0 += 1;
                    slot.1.get_or_insert(p.record);
                }
                quic::First::Other => return,
            }
        }
        self.maybe_sweep();
    }

    /// Feed one TCP segment.
    pub fn on_tcp(&mut self, p: &Packet<'_>, t: &TcpView<'_>) {
        self.now = self.now.max(p.time);
        let src = Endpoint {
            ip: p.src,
            port: t.src_port,
        };
        let key = ConnKey::new(
            src,
            Endpoint {
                ip: p.dst,
                port: t.dst_port,
            },
        );
        let conn = match self.table.get_mut(&key) {
            Some(open) => {
                let side = open.conn.side_of(src);
                if t.flags.is_syn() && open.conn.is_new_attempt(side, t.seq) {
                    let fresh = Open {
                        slot: self.out.slots.push(p.record),
                        conn: ConnState::new(p, t),
                    };
                    let old = std::mem::replace(open, fresh);
                    Self::finish_one(&mut self.out, old);
                }
                &mut open.conn
            }
            None => {
                let slot = self.out.slots.push(p.record);
                &mut self
                    .table
                    .entry(key)
                    .or_insert_with(|| Open {
                        slot,
                        conn: ConnState::new(p, t),
                    })
                    .conn
            }
        };
        let side = conn.side_of(src);
        conn.update(p, t, side, &self.cfg);
        self.out.table_peak = self.out.table_peak.max(self.table.len());
        if self.table.len() > self.cfg.table_cap {
            self.evict();
        }
        self.maybe_sweep();
    }

    /// Unanswered: the client's SYNs only (no SYN-ACK, nothing from the server, no payload).
    fn unanswered(r: &ConnRecord) -> bool {
        !r.synack_time.is_some() && r.packets[1] == 0 && r.bytes[0] == 0
    }

    /// The table is over its cap: the quietest quarter of it leaves, as finished records.
    /// Unanswered attempts go first (in a flood they are nearly all of it), then, if they are
    /// not enough, the quietest of the others. One pass over the table per quarter of the cap
    /// evicted: amortised O(1) per packet.
    fn evict(&mut self) {
        let cap = self.cfg.table_cap;
        let goal = cap - cap / 4;
        let mut excess = self.table.len().saturating_sub(goal);
        for unanswered_only in [true, false] {
            if excess == 0 {
                break;
            }
            let mut quiet: Vec<Nanos> = self
                .table
                .values()
                .map(|o| &o.conn.rec)
                .filter(|r| !unanswered_only || Self::unanswered(r))
                .map(|r| r.last_time)
                .collect();
            if quiet.is_empty() {
                continue;
            }
            let k = excess.min(quiet.len()) - 1;
            let (_, &mut cut, _) = quiet.select_nth_unstable(k);
            // Ties at the cut leave together: a few more than `excess` at most.
            let gone = self.table.extract_if(|_, o| {
                let r = &o.conn.rec;
                r.last_time <= cut && (!unanswered_only || Self::unanswered(r))
            });
            for (_, c) in gone {
                if Self::unanswered(&c.conn.rec) {
                    self.out.evicted.unanswered += 1;
                } else {
                    self.out.evicted.other += 1;
                }
                excess = excess.saturating_sub(1);
                Self::finish_one(&mut self.out, c);
            }
        }
    }

    /// The tables are over their cap on a new QUIC connection: the quietest quarter of the
    /// QUIC table leaves, as finished records counted in [`Evictions`] (an Initial flood's
    /// unanswered ones first, as they are the quietest), so QUIC cannot grow past the cap
    /// that bounds TCP. Amortised O(1) per new connection.
    fn evict_quic(&mut self) {
        let excess = (self.quic.len() / 4).max(1);
        let mut quiet: Vec<Nanos> = self.quic.values().map(|o| o.conn.rec.last_time).collect();
        let k = excess.min(quiet.len()).saturating_sub(1);
        let Some((_, &mut cut, _)) = (!quiet.is_empty()).then(|| quiet.select_nth_unstable(k))
        else {
            return;
        };
        let gone = self.quic.extract_if(|_, o| o.conn.rec.last_time <= cut);
        for (_, c) in gone {
            if c.conn.rec.synack_time.is_some() {
                self.out.evicted.other += 1;
            } else {
                self.out.evicted.unanswered += 1;
            }
            Self::finish_quic(&mut self.out, c);
        }
    }

    /// Flush closed-and-lingered and idle connections, at most once per second of capture time
    /// and only after as many packets as the table holds: amortised O(1) per packet.
    fn maybe_sweep(&mut self) {
        self.since_sweep += 1;
        if self.now - self.last_sweep < 1_000_000_000 || self.since_sweep < self.open() / 2 {
            return;
        }
        self.last_sweep = self.now;
        self.since_sweep = 0;
        let (now, cfg) = (self.now, self.cfg);
        let quiet_quic = self
            .quic
            .extract_if(|_, open| now - open.conn.rec.last_time >= cfg.quic_idle);
        for (_, c) in quiet_quic {
            Self::finish_quic(&mut self.out, c);
        }
        let expired = self.table.extract_if(|_, open| {
            let r = &open.conn.rec;
            let quiet = now - r.last_time;
            let unanswered = Self::unanswered(r);
            quiet >= cfg.idle_timeout
                || (open.conn.is_closed() && quiet >= cfg.linger)
                || (unanswered && quiet >= cfg.syn_timeout)
        });
        for (_, c) in expired {
            Self::finish_one(&mut self.out, c);
        }
    }

    fn finish_quic(out: &mut Tracked, open: QuicOpen) {
        if let Some(slot) = out.slots.get_mut(open.slot) {
            *slot = Slot::Done(open.conn.into_record());
        }
    }

    fn finish_one(out: &mut Tracked, open: Open) {
        let rec = open.conn.into_record();
        out.vantage.vote(&rec);
        if let Some(slot) = out.slots.get_mut(open.slot) {
            *slot = Slot::Done(rec);
        }
    }

    /// Drain the table at the end of the capture: every connection still open is reported
    /// too (the next [`merge_ready`] moves every record on).
    pub fn drain(&mut self) {
        for (_, c) in self.table.drain() {
            Self::finish_one(&mut self.out, c);
        }
        for (_, c) in self.quic.drain() {
            Self::finish_quic(&mut self.out, c);
        }
    }

    /// Handshake-timing votes for the vantage point.
    pub fn vantage(&self) -> &VantageVotes {
        &self.out.vantage
    }

    /// Most connections in the table at once.
    pub fn table_peak(&self) -> usize {
        self.out.table_peak
    }

    /// Connections that left a full table early.
    pub fn evicted(&self) -> Evictions {
        self.out.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot costs nothing beside its record: its open and moved states fit in the record's
    /// niche, so the chunks are as compact as the records.
    #[test]
    fn a_slot_is_the_size_of_its_record() {
        assert_eq!(
            std::mem::size_of::<Slot>(),
            std::mem::size_of::<ConnRecord>()
        );
    }
}
