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
pub mod history;
pub mod parallel;

use foldhash::HashMap;

pub use conn::{ConnRecord, ConnState, Milestones, StaleFacts, StaleFailure, TsSample};

use crate::decode::{Packet, TcpView};
use crate::domain::{ConnKey, Endpoint, Nanos};

/// Tracker settings.
#[derive(Clone, Copy, Debug)]
pub struct TrackConfig {
    /// A connection with no packet for this long is flushed (capture time).
    pub idle_timeout: Nanos,
    /// A closed connection (RST, or FIN both ways) stays this long for late packets.
    pub linger: Nanos,
    /// A client send after this much quiet (no payload either way) on a connection that
    /// already served a response is watched as a possible stale reuse.
    pub reuse_idle: Nanos,
    /// Records per chunk of a tracker's output (16,384 by default): the granularity at which
    /// the merge frees them. Tests set it small to cross many chunk boundaries.
    pub record_chunk: usize,
}

impl Default for TrackConfig {
    fn default() -> Self {
        TrackConfig {
            // Long enough for a keep-alive connection that an app left idle while suspended.
            idle_timeout: 600 * 1_000_000_000,
            // Late retransmissions, a final ACK, a 101 that crosses the client's RST.
            linger: 4 * 1_000_000_000,
            reuse_idle: 1_000_000_000,
            record_chunk: SLOT_CHUNK,
        }
    }
}

/// Where the capture was taken, inferred from handshake timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vantage {
    /// On the client: SYN → SYN-ACK carries the round trip, SYN-ACK → ACK is near zero.
    Client,
    /// On the server: the reverse.
    Server,
    /// Between the two: both legs take time.
    Middle,
    /// No complete handshake to judge by.
    #[default]
    Unknown,
}

/// Counts of connections whose handshake looked like each vantage point.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct VantageVotes {
    /// Handshakes seen from the client side.
    pub client: u64,
    /// Handshakes seen from the server side.
    pub server: u64,
    /// Handshakes seen from the middle.
    pub middle: u64,
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

/// Record slots in order of first packet, kept in fixed-size chunks: no doubling slack, no
/// reallocation copies, and each chunk is freed as soon as its records have been moved on.
#[derive(Debug, Default)]
struct Slots {
    chunks: Vec<Vec<Option<ConnRecord>>>,
    len: usize,
    /// Records per chunk.
    chunk: usize,
}

/// Records per chunk of [`Slots`] by default: 16,384 records are ~5.8 MB, above the size from
/// which the binary has the allocator map each allocation on its own
/// ([`crate::memory::tune_allocator`]), so a chunk goes back to the system as soon as the merge
/// has read it, and the merge holds at most one partly read chunk per shard beside the growing
/// connection list. Untouched pages of the last chunk cost nothing.
const SLOT_CHUNK: usize = 1 << 14;

/// The records of one tracker, in order of first packet, read in place: the record at the head
/// is looked at where it lies and moved out once, and each chunk is freed once read.
struct SlotRecords {
    chunks: std::vec::IntoIter<Vec<Option<ConnRecord>>>,
    current: std::vec::IntoIter<Option<ConnRecord>>,
}

impl SlotRecords {
    /// First record of the next record (empty slots and read chunks are skipped).
    fn head(&mut self) -> Option<u64> {
        loop {
            match self.current.as_slice().first() {
                Some(Some(r)) => return Some(r.first_record),
                Some(None) => {
                    self.current.next();
                }
                None => self.current = self.chunks.next()?.into_iter(),
            }
        }
    }
}

impl Slots {
    /// A new empty slot; returns its index.
    fn push(&mut self) -> usize {
        let chunk = self.chunk.max(1);
        if self.chunks.last().is_none_or(|c| c.len() >= chunk) {
            let mut fresh = Vec::with_capacity(chunk);
            crate::memory::prefer_huge_pages(&mut fresh);
            self.chunks.push(fresh);
        }
        if let Some(c) = self.chunks.last_mut() {
            c.push(None);
        }
        self.len += 1;
        self.len - 1
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Option<ConnRecord>> {
        let chunk = self.chunk.max(1);
        self.chunks.get_mut(i / chunk)?.get_mut(i % chunk)
    }

    fn into_records(self) -> SlotRecords {
        SlotRecords {
            chunks: self.chunks.into_iter(),
            current: Vec::new().into_iter(),
        }
    }
}

/// What the track stage hands on.
#[derive(Debug, Default)]
pub struct Tracked {
    /// One slot per attempt, in order of its first packet, filled when the connection leaves
    /// the table (so the records need no sort at the end).
    slots: Slots,
    /// Handshake-timing votes for the vantage point.
    pub vantage: VantageVotes,
    /// Most connections in the table at once (in memory; closed ones linger a few seconds).
    pub table_peak: usize,
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

/// The connection table.
#[derive(Debug, Default)]
pub struct Tracker {
    cfg: TrackConfig,
    table: HashMap<ConnKey, Open>,
    out: Tracked,
    now: Nanos,
    last_sweep: Nanos,
    since_sweep: usize,
}

/// The records of several trackers that saw disjoint connections, merged in order of first
/// record as they are read (see [`Tracked::merge`]).
pub struct Merged {
    parts: Vec<SlotRecords>,
    left: usize,
}

impl ExactSizeIterator for Merged {}

impl Iterator for Merged {
    type Item = ConnRecord;

    fn next(&mut self) -> Option<ConnRecord> {
        // The part whose head came first (the first part on a tie). The records are large:
        // looked at in place and moved once (a peeking adapter moved each several times).
        let mut first: Option<(u64, usize)> = None;
        for (k, part) in self.parts.iter_mut().enumerate() {
            if let Some(f) = part.head() {
                if first.is_none_or(|(b, _)| f < b) {
                    first = Some((f, k));
                }
            }
        }
        let (_, k) = first?;
        let rec = self.parts.get_mut(k)?.current.next().flatten()?;
        self.left = self.left.saturating_sub(1);
        Some(rec)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl Tracked {
    /// Connection attempts recorded.
    pub fn len(&self) -> usize {
        self.slots.len
    }

    /// No connection attempt was recorded.
    pub fn is_empty(&self) -> bool {
        self.slots.len == 0
    }

    /// Merge the output of several trackers that saw disjoint connections: the records in
    /// order of first record (streamed: each tracker's chunks are freed as they are read),
    /// votes added, the largest table peak.
    pub fn merge(parts: Vec<Tracked>) -> (Merged, VantageVotes, usize) {
        let mut vantage = VantageVotes::default();
        let mut table_peak = 0;
        let left = parts.iter().map(Tracked::len).sum();
        let parts = parts
            .into_iter()
            .map(|p| {
                vantage.add(&p.vantage);
                table_peak = table_peak.max(p.table_peak);
                p.slots.into_records()
            })
            .collect();
        (Merged { parts, left }, vantage, table_peak)
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
        self.table.len()
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
                        slot: self.out.slots.push(),
                        conn: ConnState::new(p, t),
                    };
                    let old = std::mem::replace(open, fresh);
                    Self::finish_one(&mut self.out, old);
                }
                &mut open.conn
            }
            None => {
                let slot = self.out.slots.push();
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
        self.maybe_sweep();
    }

    /// Flush closed-and-lingered and idle connections, at most once per second of capture time
    /// and only after as many packets as the table holds: amortised O(1) per packet.
    fn maybe_sweep(&mut self) {
        self.since_sweep += 1;
        if self.now - self.last_sweep < 1_000_000_000 || self.since_sweep < self.table.len() / 2 {
            return;
        }
        self.last_sweep = self.now;
        self.since_sweep = 0;
        let (now, cfg) = (self.now, self.cfg);
        let expired = self.table.extract_if(|_, open| {
            let quiet = now - open.conn.rec.last_time;
            quiet >= cfg.idle_timeout || (open.conn.is_closed() && quiet >= cfg.linger)
        });
        for (_, c) in expired {
            Self::finish_one(&mut self.out, c);
        }
    }

    fn finish_one(out: &mut Tracked, open: Open) {
        let rec = open.conn.into_record();
        out.vantage.vote(&rec);
        if let Some(slot) = out.slots.get_mut(open.slot) {
            *slot = Some(rec);
        }
    }

    /// Drain the table: every connection still open is reported too.
    pub fn finish(mut self) -> Tracked {
        for (_, c) in self.table.drain() {
            Self::finish_one(&mut self.out, c);
        }
        self.out
    }
}
