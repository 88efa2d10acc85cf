//! QUIC connections in a shard's table, fed one UDP datagram at a time.
//!
//! A flow becomes a QUIC connection at a client Initial that opens with its version's Initial
//! keys (on any port). Its record is TCP-shaped so that races, sequences and every output
//! treat both transports alike: the first client Initial is its `syn_time` (client Initial
//! datagrams before the server's answer are its `syn_count`), the server's first Initial or
//! Handshake packet its `synack_time`, the client's first short-header packet (the handshake
//! done) its `established_time` and `tls` milestone. The QUIC facts proper
//! ([`QuicFacts`]) sit in the record's application facts. A client Initial with a Destination
//! Connection ID the connection has not used, on the same addresses and ports, starts a new
//! connection (the key is the client address, client port and original DCID).

use crate::app::quic::wire::{self, Kind};
use crate::app::quic::{ClientInitials, QuicFacts, ServerInitials};
use crate::app::{AppFacts, Protocol};
use crate::decode::{Packet, UdpView};
use crate::domain::{Endpoint, Nanos, OptNanos, Side};
use crate::model::ConnRecord;

/// Smallest UDP payload of a datagram carrying a client Initial (RFC 9000 §14.1).
pub const MIN_CLIENT_INITIAL: usize = 1200;

/// One QUIC connection being tracked.
#[derive(Debug)]
pub struct QuicConn {
    /// The record being filled.
    pub rec: ConnRecord,
    facts: QuicFacts,
    initials: Option<ClientInitials>,
    /// The server's Initial keys, derived at its first Initial (for a close in the clear).
    server_initials: Option<ServerInitials>,
    /// The connection's DCIDs in client Initials: the original one, then a Retry's SCID.
    dcids: Vec<Vec<u8>>,
    /// Client short-header packets, and the server's first after the handshake.
    client_shorts: u32,
    server_after: OptNanos,
}

/// What an unknown flow's datagram is.
pub enum First {
    /// A client Initial that opened: a new connection.
    Quic(Box<QuicConn>),
    /// Not the start of a QUIC connection, but worth a warning (counted, not tracked).
    Bad(BadQuic),
    /// Anything else (not QUIC, or not the start of a connection).
    Other,
}

/// A datagram that looked like QUIC and was not readable as the start of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadQuic {
    /// Shaped like a client Initial of a known version (long header, Initial, padded to 1200
    /// bytes) that did not open, or whose header was damaged (bogus lengths, truncated).
    Undecryptable,
    /// A long header with a version racetrace cannot read, to or from UDP port 443.
    UnknownVersion,
    /// Neither a long header nor a known flow's, to UDP port 443 (where QUIC is expected).
    Garbage443,
}

impl BadQuic {
    /// All kinds, in the order the warnings list them.
    pub const ALL: [BadQuic; 3] = [
        BadQuic::Undecryptable,
        BadQuic::UnknownVersion,
        BadQuic::Garbage443,
    ];

    /// Index in [`BadQuic::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl QuicConn {
    /// What the first datagram `u` seen on a flow is.
    pub fn start(p: &Packet<'_>, u: &UdpView<'_>) -> First {
        let d = u.payload;
        // Shaped like a client Initial: long header with the fixed bit, a version racetrace
        // reads, the Initial type, padded to the minimum size.
        let shaped = d.len() >= MIN_CLIENT_INITIAL
            && d[0] & 0xc0 == 0xc0
            && d.get(1..5)
                .and_then(|v| wire::Version::of(u32::from_be_bytes([v[0], v[1], v[2], v[3]])))
                .is_some_and(|v| v.kind(d[0]) == Kind::Initial);
        let to_443 = u.dst_port == 443;
        let not_opened = if shaped {
            First::Bad(BadQuic::Undecryptable)
        } else {
            First::Other
        };
        let first = match wire::long(d) {
            Ok(first) => first,
            // A short header to 443 on a flow never seen starting: a connection whose
            // Initials the capture missed, or garbage; either way nothing to track.
            Err(wire::Bad::Short) if to_443 && d.first().is_some_and(|b| b & 0x40 == 0) => {
                return First::Bad(BadQuic::Garbage443)
            }
            Err(_) => return not_opened,
        };
        if first.kind == Kind::Unknown && to_443 {
            return First::Bad(BadQuic::UnknownVersion);
        }
        if first.kind != Kind::Initial {
            return First::Other;
        }
        let Some((initials, opened)) = ClientInitials::first(&first, p.time) else {
            return not_opened;
        };
        let client = Endpoint {
            ip: p.src,
            port: u.src_port,
        };
        let server = Endpoint {
            ip: p.dst,
            port: u.dst_port,
        };
        let mut c = QuicConn {
            rec: ConnRecord {
                first_record: p.record,
                last_record: p.record,
                client,
                server,
                client_mac: p.src_mac,
                handshake_seen: true,
                first_time: p.time,
                last_time: p.time,
                ..ConnRecord::default()
            },
            facts: QuicFacts {
                version: first.version,
                original_dcid: first.dcid.to_vec(),
                client_cid: first.scid.to_vec(),
                ..QuicFacts::default()
            },
            initials: None,
            server_initials: None,
            dcids: vec![first.dcid.to_vec()],
            client_shorts: 0,
            server_after: OptNanos::NONE,
        };
        c.rec.app = Some(Box::new(AppFacts {
            protocol: Protocol::Quic,
            ..AppFacts::default()
        }));
        c.apply_opened(opened, p.time);
        c.initials = Some(initials);
        c.update(p, u, Side::Client, true);
        First::Quic(Box::new(c))
    }

    /// The side that sent a datagram from `src`.
    pub fn side_of(&self, src: Endpoint) -> Side {
        if src == self.rec.client {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// True when client datagram `d` starts a new connection on these addresses and ports:
    /// an Initial whose DCID this connection never used (a new original DCID, RFC 9000 §7.2).
    pub fn is_new_attempt(&self, d: &[u8]) -> bool {
        match wire::long(d) {
            Ok(p) if p.kind == Kind::Initial => {
                !self.dcids.iter().any(|c| c == p.dcid) && p.dcid != self.facts.server_cid
            }
            _ => false,
        }
    }

    fn apply_opened(&mut self, o: crate::app::quic::Opened, now: Nanos) {
        if !o.ok {
            self.facts.undecryptable += 1;
            return;
        }
        if o.close {
            self.rec.fin[0].set_first(now);
        }
        if let Some((tls, ech)) = o.hello {
            self.rec.milestones.tls_hello.set_first(now);
            self.facts.ech = ech;
            if let Some(app) = self.rec.app.as_mut() {
                app.tls = Some(tls);
            }
        }
    }

    /// One datagram from `side` (`first`: the one that started the connection, already
    /// opened).
    pub fn update(&mut self, p: &Packet<'_>, u: &UdpView<'_>, side: Side, first: bool) {
        let now = p.time;
        let i = side.index();
        let r = &mut self.rec;
        r.last_time = r.last_time.max(now);
        r.last_record = r.last_record.max(p.record);
        r.packets[i] += 1;
        r.bytes[i] += u.payload.len() as u64;
        let mut d = u.payload;
        let mut initial = false;
        while !d.is_empty() {
            if d[0] & 0x80 == 0 {
                self.short_header(side, now);
                break;
            }
            let Ok(pkt) = wire::long(d) else { break };
            match (pkt.kind, side) {
                (Kind::Initial, Side::Client) => {
                    initial = true;
                    self.facts.initials[0] += 1;
                    if !first && self.client_shorts == 0 {
                        if let Some(s) = self.initials.as_mut() {
                            let o = s.open(&pkt, now);
                            self.apply_opened(o, now);
                        }
                    }
                }
                (Kind::Initial, Side::Server) => {
                    self.facts.initials[1] += 1;
                    self.answered(&pkt, now);
                    initial = true;
                    if self.server_initials.is_none() {
                        let dcid = self.dcids.last().map_or(&[][..], |d| &d[..]);
                        self.server_initials = ServerInitials::new(self.facts.version, dcid);
                    }
                    if self.client_shorts == 0
                        && self
                            .server_initials
                            .as_mut()
                            .is_some_and(|k| k.closes(&pkt))
                    {
                        // The server refused the connection in the clear.
                        self.rec.fin[1].set_first(now);
                        self.rec.milestones.refused.set_first(now);
                    }
                }
                (Kind::Handshake, Side::Server) => self.answered(&pkt, now),
                (Kind::ZeroRtt, Side::Client) => self.facts.zero_rtt = true,
                (Kind::Retry, Side::Server) => {
                    self.facts.retry = true;
                    self.facts.server_cid = pkt.scid.to_vec();
                    self.dcids.push(pkt.scid.to_vec());
                    if let Some(s) = self.initials.as_mut() {
                        s.rekey(pkt.scid);
                    }
                }
                (Kind::VersionNegotiation, Side::Server) => {
                    self.facts.negotiated_versions = wire::versions(pkt.versions).collect();
                }
                (Kind::Unknown, _) => {
                    self.facts.unknown_version = true;
                    break;
                }
                _ => {}
            }
            d = match pkt.kind {
                Kind::Retry | Kind::VersionNegotiation | Kind::Unknown => &[],
                _ => &d[pkt.bytes.len()..],
            };
        }
        let r = &mut self.rec;
        if initial {
            match side {
                Side::Client if r.synack_time.get().is_none() => {
                    r.syn_time.set_first(now);
                    r.last_syn_time = OptNanos::some(now);
                    r.syn_count += 1;
                }
                Side::Server => r.synack_count += 1,
                Side::Client => {}
            }
        }
    }

    /// The server's Initial or Handshake packet: the connection was answered.
    fn answered(&mut self, p: &wire::Long<'_>, now: Nanos) {
        self.rec.synack_time.set_first(now);
        // The server's first Initial names its connection ID (after a Retry, a new one).
        if self.facts.initials[1] <= 1 || self.facts.server_cid.is_empty() {
            self.facts.server_cid = p.scid.to_vec();
        }
    }

    /// A short-header (1-RTT) packet: the client's first is the handshake done; data both
    /// ways once the client has sent a second one and the server one after the handshake.
    fn short_header(&mut self, side: Side, now: Nanos) {
        match side {
            Side::Client => {
                self.client_shorts += 1;
                if self.client_shorts == 1 {
                    let r = &mut self.rec;
                    self.facts.handshake.set_first(now);
                    r.established_time.set_first(now);
                    r.milestones.tls.set_first(now);
                    r.milestones.first_payload.set_first(now);
                }
            }
            Side::Server => {
                if self.facts.handshake.get().is_some_and(|h| now > h) {
                    self.server_after.set_first(now);
                }
            }
        }
        if !self.facts.data.is_some() && self.client_shorts >= 2 && self.server_after.is_some() {
            self.facts.data.set_first(now);
        }
    }

    /// The finished record, its QUIC facts in place.
    pub fn into_record(mut self) -> ConnRecord {
        if let Some(app) = self.rec.app.as_mut() {
            app.quic = Some(Box::new(self.facts));
        }
        self.rec
    }
}
