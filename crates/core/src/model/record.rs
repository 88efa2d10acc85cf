//! The record the tracker keeps of each connection (`ConnRecord`, Zeek's `Conn::Info` in
//! spirit) and the facts it carries: what the detectors read and the renderers write. The
//! tracker (`track/`) fills it in; its logic lives there, its shape here.

use crate::app::{AppFacts, Milestones};
use crate::domain::{Endpoint, Family, Nanos, OptNanos, Side, Stage};
use crate::model::history::{conn_state, History, StateFacts};

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

/// How a request on a reused connection failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StaleFailure {
    /// The server answered with RST.
    Rst,
    /// No answer: the client retransmitted and gave up (or the capture ended).
    #[default]
    NoResponse,
}

crate::domain::enum_names!(StaleFailure {
    Rst => "rst",
    NoResponse => "no_response",
});

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

/// The compact per-connection facts kept for the report.
#[derive(Clone, Debug, Default)]
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
        if let Some(q) = self.quic() {
            // QUIC's stages take the nearest TCP-shaped name (the contract's mapping).
            use crate::app::quic::QuicStage;
            return match q.stage_at(self.synack_time, t) {
                QuicStage::InitialSent => Stage::Syn,
                QuicStage::ServerInitial => Stage::Synack,
                QuicStage::Handshake => Stage::Tls,
                QuicStage::Data => Stage::Data,
            };
        }
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
        if self.quic().is_some() {
            return None; // QUIC's "established" is the handshake's end, not an ACK's
        }
        let syn = self.last_syn_time.get()?;
        let synack = self.synack_time.get()?;
        let ack = self.established_time.get()?;
        (syn <= synack && synack <= ack).then_some((synack - syn, ack - synack))
    }

    /// The QUIC facts, when the connection is QUIC.
    pub fn quic(&self) -> Option<&crate::app::quic::QuicFacts> {
        self.app.as_ref()?.quic.as_deref()
    }

    /// The transport: `"tcp"` or `"quic"`.
    pub fn transport(&self) -> &'static str {
        if self.quic().is_some() {
            "quic"
        } else {
            "tcp"
        }
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
        let port = if r.quic().is_some() {
            "udp.port"
        } else {
            "tcp.port"
        };
        write!(
            f,
            "{ip} == {} && {ip} == {} && {port} == {} && {port} == {} && frame.number >= {} && frame.number <= {}",
            r.client.ip, r.server.ip, r.client.port, r.server.port, r.first_record, r.last_record
        )
    }
}

/// Where the capture was taken, inferred from handshake timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

crate::domain::enum_names!(Vantage {
    Client => "client",
    Server => "server",
    Middle => "middle",
    Unknown => "unknown",
});

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
