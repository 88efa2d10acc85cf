//! One TCP connection attempt: the live state the tracker updates per packet ([`ConnState`])
//! and the compact record it leaves behind ([`ConnRecord`]) for the detectors and the report.

use crate::app::{http, AppFacts, AppState, Protocol};
use crate::decode::{Flags, Packet, TcpOptions, TcpView};
use crate::domain::{Endpoint, Family, Nanos, OptNanos, Seq, Side, Stage};
use crate::track::history::{conn_state, History, StateFacts};
use crate::track::TrackConfig;

/// Server TSval samples kept per connection (decimated to stay spread over its life).
pub const TS_SAMPLES: usize = 8;

/// One server TCP timestamp and when it was captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsSample {
    /// Capture time.
    pub time: Nanos,
    /// The server's TSval.
    pub tsval: u32,
}

/// What a record keeps of a SYN's (or SYN-ACK's) options: 8 bytes where the decoded options
/// are 20 (the SYN-ACK's TSval is kept apart, in `server_tsval`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// The timestamps option was present.
    pub timestamps: bool,
}

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

/// When a connection reached each stage beyond the TCP handshake. The tracker sets the TCP
/// ones; the application layer sets the rest.
#[derive(Clone, Copy, Debug, Default)]
pub struct Milestones {
    /// The server's RST answered the SYN before any SYN-ACK.
    pub refused: OptNanos,
    /// First payload byte in either direction.
    pub first_payload: OptNanos,
    /// TLS ClientHello sent.
    pub tls_hello: OptNanos,
    /// TLS handshake complete and application data sent.
    pub tls: OptNanos,
    /// Plain HTTP request sent.
    pub http: OptNanos,
    /// WebSocket upgrade answered 101.
    pub ws: OptNanos,
}

/// How a request on a reused connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleFailure {
    /// The server answered with RST.
    Rst,
    /// No answer: the client retransmitted and gave up (or the capture ended).
    NoResponse,
}

impl StaleFailure {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleFailure::Rst => "rst",
            StaleFailure::NoResponse => "no_response",
        }
    }
}

/// A client send on a connection that was idle or that the server had closed, which failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleFacts {
    /// When the client sent.
    pub request: Nanos,
    /// Quiet time (no payload either way) before the send.
    pub idle: Nanos,
    /// The server's FIN, when captured before the send.
    pub peer_fin: Option<Nanos>,
    /// How it failed.
    pub failure: StaleFailure,
    /// When the failure showed (server RST, or the client's give-up); `None` at capture end.
    pub failure_time: Option<Nanos>,
    /// Client retransmissions of the request.
    pub retransmissions: u32,
    /// Method and target of the request, when it was visible HTTP/1.x.
    pub request_line: Option<(String, String)>,
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

/// The compact per-connection facts kept for the report.
#[derive(Clone, Debug)]
pub struct ConnRecord {
    /// Record number of the first packet.
    pub first_record: u64,
    /// Record number of the last packet.
    pub last_record: u64,
    /// The client (sender of the first SYN, or guessed).
    pub client: Endpoint,
    /// The server.
    pub server: Endpoint,
    /// The client's link-layer address, when the link has one.
    pub client_mac: Option<[u8; 6]>,
    /// The first SYN is in the capture.
    pub handshake_seen: bool,
    /// First packet's time.
    pub first_time: Nanos,
    /// Last packet's time.
    pub last_time: Nanos,
    /// First SYN.
    pub syn_time: OptNanos,
    /// Last SYN before the SYN-ACK (for the handshake RTT).
    pub last_syn_time: OptNanos,
    /// SYNs sent (1 + retransmissions).
    pub syn_count: u32,
    /// First SYN-ACK.
    pub synack_time: OptNanos,
    /// SYN-ACKs sent.
    pub synack_count: u32,
    /// Client's ACK completing the handshake.
    pub established_time: OptNanos,
    /// First FIN from client, server.
    pub fin: [OptNanos; 2],
    /// First RST from client, server.
    pub rst: [OptNanos; 2],
    /// Payload bytes per side (client, server), retransmissions counted once.
    pub bytes: [u64; 2],
    /// Packets per side.
    pub packets: [u64; 2],
    /// Last payload per side.
    pub last_payload: [OptNanos; 2],
    /// Stages beyond the handshake.
    pub milestones: Milestones,
    /// TSval of the server's SYN-ACK.
    pub server_tsval: Option<u32>,
    /// Server TSvals with capture times (SYN-ACK first), at most [`TS_SAMPLES`] + 1.
    pub ts_samples: Vec<TsSample>,
    /// Options of the client's SYN and the server's SYN-ACK.
    pub syn_options: [SynOptions; 2],
    /// Zeek-style history.
    pub history: History,
    /// What the application layer learned (TLS, HTTP), when the connection carried payload.
    pub app: Option<Box<AppFacts>>,
    /// A failed request on a reused connection (stale reuse), at most one per connection.
    pub stale: Option<Box<StaleFacts>>,
    /// Time from the last payload (either way) to the server's first FIN: its idle timeout
    /// when it closed an idle connection.
    pub server_fin_idle: OptNanos,
}

impl ConnRecord {
    /// Address family.
    pub fn family(&self) -> Family {
        Family::of(&self.client.ip)
    }

    /// The first FIN or RST: time, sender, and whether it was a RST.
    pub fn end(&self) -> Option<(Nanos, Side, bool)> {
        let mut best: Option<(Nanos, Side, bool)> = None;
        for (side, i) in [(Side::Client, 0), (Side::Server, 1)] {
            for (t, is_rst) in [(self.fin[i], false), (self.rst[i], true)] {
                if let Some(t) = t.get() {
                    if best.is_none_or(|b| t < b.0) {
                        best = Some((t, side, is_rst));
                    }
                }
            }
        }
        best
    }

    /// The contract's `end_reason`.
    pub fn end_reason(&self) -> &'static str {
        match self.end() {
            None => "open",
            Some((_, Side::Client, false)) => "fin_client",
            Some((_, Side::Server, false)) => "fin_server",
            Some((_, Side::Client, true)) => "rst_client",
            Some((_, Side::Server, true)) => "rst_server",
        }
    }

    /// The client's first FIN or RST: when it gave the connection up.
    pub fn client_close(&self) -> Option<Nanos> {
        match (self.fin[0].get(), self.rst[0].get()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Furthest stage reached by time `t` (use `Nanos::MAX` for the whole connection).
    pub fn stage_at(&self, t: Nanos) -> Stage {
        let m = &self.milestones;
        if m.ws.by(t) {
            Stage::Ws
        } else if m.http.by(t) {
            Stage::Http
        } else if m.tls.by(t) {
            Stage::Tls
        } else if m.tls_hello.by(t) {
            Stage::TlsHello
        } else if m.first_payload.by(t) {
            Stage::Data
        } else if self.established_time.by(t)
            || (!self.handshake_seen && !self.synack_time.is_some() && self.first_time <= t)
        {
            Stage::Tcp
        } else if self.synack_time.by(t) {
            Stage::Synack
        } else if m.refused.by(t) {
            Stage::Refused
        } else {
            Stage::Syn
        }
    }

    /// Furthest stage reached.
    pub fn stage(&self) -> Stage {
        self.stage_at(Nanos::MAX)
    }

    /// Zeek's `conn_state`.
    pub fn conn_state(&self) -> &'static str {
        let first_rst = match (self.rst[0].get(), self.rst[1].get()) {
            (Some(c), Some(s)) => Some(if c <= s { Side::Client } else { Side::Server }),
            (Some(_), None) => Some(Side::Client),
            (None, Some(_)) => Some(Side::Server),
            (None, None) => None,
        };
        conn_state(StateFacts {
            syn: self.handshake_seen,
            synack: self.synack_time.is_some(),
            fin: [self.fin[0].is_some(), self.fin[1].is_some()],
            first_rst,
        })
    }

    /// Handshake legs: (SYN → SYN-ACK, SYN-ACK → ACK) in nanoseconds, when all three were seen
    /// and the SYN was not retransmitted after the SYN-ACK.
    pub fn handshake_legs(&self) -> Option<(Nanos, Nanos)> {
        let syn = self.last_syn_time.get()?;
        let synack = self.synack_time.get()?;
        let ack = self.established_time.get()?;
        (syn <= synack && synack <= ack).then_some((synack - syn, ack - synack))
    }

    /// A Wireshark display filter that selects exactly this connection's packets.
    pub fn wireshark_filter(&self) -> WiresharkFilter<'_> {
        WiresharkFilter(self)
    }
}

/// A Wireshark display filter selecting exactly one connection's packets (its `Display`
/// writes the filter text without allocating).
#[derive(Clone, Copy, Debug)]
pub struct WiresharkFilter<'a>(&'a ConnRecord);

impl std::fmt::Display for WiresharkFilter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.0;
        let ip = match r.family() {
            Family::Ipv4 => "ip.addr",
            Family::Ipv6 => "ipv6.addr",
        };
        write!(
            f,
            "{ip} == {} && {ip} == {} && tcp.port == {} && tcp.port == {} && frame.number >= {} && frame.number <= {}",
            r.client.ip, r.server.ip, r.client.port, r.server.port, r.first_record, r.last_record
        )
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

        if f.is_syn() && side == Side::Client {
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
        } else if f.is_synack() && side == Side::Server {
            rec.history.add(side, b'H');
            rec.synack_count += 1;
            if !rec.synack_time.is_some() {
                rec.synack_time = OptNanos::some(now);
                rec.server_tsval = t.options.timestamp.map(|ts| ts.0);
                rec.syn_options[1] = SynOptions::from(t.options);
                self.server_isn = Some(t.seq);
            }
        }

        if f.has(Flags::RST) {
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
        } else if f.has(Flags::ACK) && !f.has(Flags::SYN) {
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
            let rec = &mut self.rec;
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

        if side == Side::Server {
            if let Some((tsval, _)) = t.options.timestamp {
                self.ts_sample(TsSample { time: now, tsval });
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
