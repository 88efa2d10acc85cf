//! One TCP connection attempt: the live state the tracker updates per packet ([`ConnState`])
//! and the compact record it leaves behind ([`ConnRecord`]) for the detectors and the report.

use crate::app::{http, AppState, Milestones, Protocol};
use crate::decode::{Flags, Packet, TcpOptions, TcpView};
use crate::domain::{Endpoint, Nanos, OptNanos, Seq, Side};
use crate::model::history::History;
pub use crate::model::record::{
    ConnRecord, StaleFacts, StaleFailure, SynOptions, TsSample, WiresharkFilter, TS_SAMPLES,
};
use crate::track::TrackConfig;

impl From<TcpOptions> for SynOptions {
    fn from(o: TcpOptions) -> SynOptions {
        SynOptions {
            mss: o.mss,
            wscale: o.wscale,
            sack_permitted: o.sack_permitted,
            timestamps: o.timestamp.is_some(),
        }
    }
}

/// A client send after idle or after the server's FIN, waiting for its answer.
#[derive(Clone, Debug)]
struct ReuseWatch {
    request: Nanos,
    idle: Nanos,
    peer_fin: Option<Nanos>,
    retransmissions: u32,
    request_line: Option<(String, String)>,
}

impl ReuseWatch {
    fn fail(self, failure: StaleFailure, at: Option<Nanos>) -> Box<StaleFacts> {
        Box::new(StaleFacts {
            request: self.request,
            idle: self.idle,
            peer_fin: self.peer_fin,
            failure,
            failure_time: at,
            retransmissions: self.retransmissions,
            request_line: self.request_line,
        })
    }
}

/// Sequence-space bookkeeping for one direction.
#[derive(Clone, Copy, Debug, Default)]
struct Direction {
    /// Highest sequence number covered by payload so far (`None` before the first segment).
    high: Option<Seq>,
}

/// A connection in the tracker's table.
#[derive(Debug)]
pub struct ConnState {
    /// What will be reported.
    pub rec: ConnRecord,
    dirs: [Direction; 2],
    client_isn: Option<Seq>,
    server_isn: Option<Seq>,
    /// Latest server TSval, kept apart so the decimated samples always end at the last one.
    latest_ts: Option<TsSample>,
    ts_min_gap: Nanos,
    /// Application-layer parsing while the connection is young; `app_done` once finished.
    app: Option<Box<AppState>>,
    app_done: bool,
    /// A send after idle or after the server's FIN, not answered yet.
    watch: Option<ReuseWatch>,
}

impl ConnState {
    /// Start a connection at its first packet. The client is the SYN's sender, else the
    /// SYN-ACK's receiver, else the side with the higher port (the contract's guess).
    pub fn new(p: &Packet<'_>, t: &TcpView<'_>) -> ConnState {
        let src = Endpoint {
            ip: p.src,
            port: t.src_port,
        };
        let dst = Endpoint {
            ip: p.dst,
            port: t.dst_port,
        };
        let src_is_client = if t.flags.is_syn() {
            true
        } else if t.flags.is_synack() {
            false
        } else {
            t.src_port >= t.dst_port
        };
        let (client, server) = if src_is_client {
            (src, dst)
        } else {
            (dst, src)
        };
        let mut history = History::default();
        if !t.flags.is_syn() {
            history.flip();
        }
        ConnState {
            rec: ConnRecord {
                first_record: p.record,
                last_record: p.record,
                client,
                server,
                client_mac: None,
                handshake_seen: t.flags.is_syn(),
                first_time: p.time,
                last_time: p.time,
                syn_time: OptNanos::NONE,
                last_syn_time: OptNanos::NONE,
                syn_count: 0,
                synack_time: OptNanos::NONE,
                synack_count: 0,
                established_time: OptNanos::NONE,
                fin: [OptNanos::NONE; 2],
                rst: [OptNanos::NONE; 2],
                bytes: [0; 2],
                packets: [0; 2],
                last_payload: [OptNanos::NONE; 2],
                milestones: Milestones::default(),
                server_tsval: None,
                ts_samples: Vec::new(),
                syn_options: [SynOptions::default(); 2],
                history,
                app: None,
                stale: None,
                server_fin_idle: OptNanos::NONE,
            },
            dirs: [Direction::default(); 2],
            client_isn: None,
            server_isn: None,
            latest_ts: None,
            ts_min_gap: 0,
            app: None,
            app_done: false,
            watch: None,
        }
    }

    /// Which side sent a packet from `src`.
    pub fn side_of(&self, src: Endpoint) -> Side {
        if src == self.rec.client {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// True once the connection is over: a RST, or a FIN from each side.
    pub fn is_closed(&self) -> bool {
        let r = &self.rec;
        r.rst[0].is_some() || r.rst[1].is_some() || (r.fin[0].is_some() && r.fin[1].is_some())
    }

    /// True when a SYN from `side` with sequence number `seq` starts a new connection on this
    /// tuple rather than retransmitting this one's SYN.
    pub fn is_new_attempt(&self, side: Side, seq: Seq) -> bool {
        match (side, self.client_isn) {
            (Side::Client, Some(isn)) => isn != seq || self.is_closed(),
            // A SYN on a connection first seen mid-stream, or from the other side: new.
            _ => true,
        }
    }

    /// Update with one segment sent by `side`.
    pub fn update(&mut self, p: &Packet<'_>, t: &TcpView<'_>, side: Side, cfg: &TrackConfig) {
        let i = side.index();
        let now = p.time;
        let rec = &mut self.rec;
        rec.last_record = p.record;
        rec.last_time = rec.last_time.max(now);
        rec.packets[i] += 1;
        if side == Side::Client && rec.client_mac.is_none() {
            rec.client_mac = p.src_mac;
        }
        let f = t.flags;

        if f.is_syn() || f.is_synack() {
            self.on_syn(t, side, now);
        }
        if f.has(Flags::RST) {
            self.on_rst(side, now);
        } else if f.has(Flags::ACK) && !f.has(Flags::SYN) {
            let rec = &mut self.rec;
            if side == Side::Client
                && !rec.established_time.is_some()
                && self.server_isn.is_some_and(|isn| t.ack == isn.plus(1))
            {
                rec.established_time = OptNanos::some(now);
            }
            if t.payload_len == 0 && !f.has(Flags::FIN) {
                rec.history.add(side, b'A');
            }
        }
        if t.payload_len > 0 {
            self.payload(side, t, now, cfg);
        }

        if f.has(Flags::FIN) {
            self.on_fin(side, now);
        }

        if side == Side::Server {
            if let Some((tsval, _)) = t.options.timestamp {
                self.ts_sample(TsSample { time: now, tsval });
            }
        }
    }

    /// A client SYN or a server SYN-ACK: times, counts, options, the initial sequence numbers.
    #[inline]
    fn on_syn(&mut self, t: &TcpView<'_>, side: Side, now: Nanos) {
        let rec = &mut self.rec;
        if t.flags.is_syn() && side == Side::Client {
            rec.history.add(side, b'S');
            rec.syn_time.set_first(now);
            if !rec.synack_time.is_some() {
                rec.last_syn_time = OptNanos::some(now);
            }
            rec.syn_count += 1;
            self.client_isn.get_or_insert(t.seq);
            if rec.syn_options[0] == SynOptions::default() {
                rec.syn_options[0] = SynOptions::from(t.options);
            }
        } else if t.flags.is_synack() && side == Side::Server {
            rec.history.add(side, b'H');
            rec.synack_count += 1;
            if !rec.synack_time.is_some() {
                rec.synack_time = OptNanos::some(now);
                rec.server_tsval = t.options.timestamp.map(|ts| ts.0);
                rec.syn_options[1] = SynOptions::from(t.options);
                self.server_isn = Some(t.seq);
            }
        }
    }

    /// A RST: it ends a watched stale reuse, and a server's before any SYN-ACK is a refusal.
    #[inline]
    fn on_rst(&mut self, side: Side, now: Nanos) {
        let (i, rec) = (side.index(), &mut self.rec);
        rec.history.add(side, b'R');
        if let Some(w) = self.watch.take() {
            match side {
                Side::Server => rec.stale = Some(w.fail(StaleFailure::Rst, Some(now))),
                Side::Client if w.retransmissions > 0 => {
                    rec.stale = Some(w.fail(StaleFailure::NoResponse, Some(now)))
                }
                Side::Client => {}
            }
        }
        rec.rst[i].set_first(now);
        if side == Side::Server && rec.handshake_seen && !rec.synack_time.is_some() {
            rec.milestones.refused.set_first(now);
        }
    }

    /// A FIN: the server's idle time before it, and the end of a watched stale reuse.
    #[inline]
    fn on_fin(&mut self, side: Side, now: Nanos) {
        let (i, rec) = (side.index(), &mut self.rec);
        rec.history.add(side, b'F');
        if side == Side::Server && !rec.fin[1].is_some() {
            let last = rec.last_payload[0].get().max(rec.last_payload[1].get());
            if let Some(from) = last.or(rec.established_time.get()) {
                rec.server_fin_idle = OptNanos::some(now - from);
            }
        }
        rec.fin[i].set_first(now);
        if side == Side::Client {
            if let Some(w) = self.watch.take() {
                if w.retransmissions > 0 {
                    rec.stale = Some(w.fail(StaleFailure::NoResponse, Some(now)));
                }
            }
        }
    }

    /// Count payload once per sequence range; mark retransmissions; feed the application
    /// layer; watch sends on idle or half-closed connections.
    fn payload(&mut self, side: Side, t: &TcpView<'_>, now: Nanos, cfg: &TrackConfig) {
        let i = side.index();
        // Payload starts after the SYN's sequence number when the SYN was seen.
        let start = if t.flags.has(Flags::SYN) {
            t.seq.plus(1)
        } else {
            t.seq
        };
        let end = start.plus(t.payload_len);
        let isn = match side {
            Side::Client => self.client_isn,
            Side::Server => self.server_isn,
        };
        let Some(dir) = self.dirs.get_mut(i) else {
            return;
        };
        let high = *dir
            .high
            .get_or_insert_with(|| isn.map_or(start, |s| s.plus(1)));
        let fresh = end.after(high);
        let rec = &mut self.rec;
        let quiet_since = rec.last_payload[0].get().max(rec.last_payload[1].get());
        if fresh {
            rec.bytes[i] += end.diff(high) as u64;
            dir.high = Some(end);
            rec.history.add(side, b'D');
        } else {
            rec.history.add(side, b'T');
        }

        // Stale reuse: new client data after an idle gap on a connection that already served
        // a response, or after the server's FIN; then the server's answer decides.
        match (side, fresh, self.watch.is_some()) {
            (Side::Client, true, false) if rec.stale.is_none() => {
                let peer_fin = rec.fin[1].get().filter(|&f| f <= now);
                let idle = quiet_since.map(|q| now - q);
                let idle_reuse = rec.bytes[1] > 0 && idle.is_some_and(|d| d >= cfg.reuse_idle);
                if peer_fin.is_some() || idle_reuse {
                    self.watch = Some(ReuseWatch {
                        request: now,
                        idle: idle.unwrap_or(0),
                        peer_fin,
                        retransmissions: 0,
                        request_line: http::request_line(t.payload),
                    });
                }
            }
            (Side::Client, false, true) => {
                if let Some(w) = self.watch.as_mut() {
                    w.retransmissions += 1;
                }
            }
            (Side::Server, true, true) => self.watch = None, // answered: not stale
            _ => {}
        }

        rec.milestones.first_payload.set_first(now);
        rec.last_payload[i] = OptNanos::some(now);

        if !self.app_done {
            let app = self
                .app
                .get_or_insert_with(|| Box::new(AppState::new([self.client_isn, self.server_isn])));
            app.on_segment(
                side,
                start,
                t.payload,
                t.payload_len,
                now,
                &mut rec.milestones,
            );
            if app.is_done() {
                self.finish_app();
            }
        }
    }

    fn finish_app(&mut self) {
        if let Some(app) = self.app.take() {
            let facts = app.finish();
            // Nothing learned about a protocol racetrace does not parse: keep no box.
            let empty = matches!(facts.protocol, Protocol::Other | Protocol::Unknown)
                && facts.gaps == [0, 0];
            if !empty {
                self.rec.app = Some(Box::new(facts));
            }
        }
        self.app_done = true;
    }

    /// Keep the SYN-ACK's TSval, then samples at least `ts_min_gap` apart, halving the set
    /// (and doubling the gap) when it fills: the samples stay spread over the connection.
    fn ts_sample(&mut self, s: TsSample) {
        let samples = &mut self.rec.ts_samples;
        let due = samples
            .last()
            .is_none_or(|last| s.time - last.time >= self.ts_min_gap);
        if due {
            if samples.len() == TS_SAMPLES {
                let mut k = 0;
                samples.retain(|_| {
                    k += 1;
                    k % 2 == 1
                });
                self.ts_min_gap = (self.ts_min_gap * 2).max(1_000_000);
            }
            samples.push(s);
            self.latest_ts = None;
        } else {
            self.latest_ts = Some(s);
        }
    }

    /// Finish: the record to report.
    pub fn into_record(mut self) -> ConnRecord {
        self.finish_app();
        if let Some(w) = self.watch.take() {
            if w.retransmissions > 0 {
                self.rec.stale = Some(w.fail(StaleFailure::NoResponse, None));
            }
        }
        if let Some(s) = self.latest_ts {
            self.rec.ts_samples.push(s);
        }
        self.rec.ts_samples.shrink_to_fit();
        self.rec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record kept per connection stays compact (figure quoted in the README).
    #[test]
    fn record_is_compact() {
        let size = std::mem::size_of::<ConnRecord>();
        assert!(size <= 344, "ConnRecord is {size} bytes");
    }
}
