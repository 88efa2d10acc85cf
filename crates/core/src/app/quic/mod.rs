//! QUIC over UDP, on any port: what proves a flow is QUIC is a client Initial that opens with
//! its version's Initial keys (RFC 9001 §5.2, RFC 9369 §3.3.1), not the port number.
//!
//! - [`wire`]: long headers, connection IDs, coalesced packets, Version Negotiation and Retry;
//! - [`keys`]: the Initial keys, header protection, the AEAD (ring);
//! - [`frames`]: the frames of an opened Initial, CRYPTO data gathered by offset;
//! - here: [`ClientInitials`], which opens a client's Initials one by one and reads the
//!   ClientHello (SNI, ALPN, offered versions, ECH) once its CRYPTO data is whole, and
//!   [`QuicFacts`], what a QUIC connection's record keeps.
//!
//! Everything after the Initials is encrypted with keys an observer does not have: the
//! handshake's completion is inferred from the first short-header (1-RTT) packet of the
//! client, application data from short-header packets both ways, and the end from silence.

pub mod frames;
pub mod keys;
pub mod wire;

use crate::app::tls::TlsFacts;
use crate::domain::{Nanos, OptNanos};
use frames::CryptoStream;
use keys::{Keys, Sender};
use wire::{Kind, Long, Version};

/// How far a QUIC connection got, as the wire shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum QuicStage {
    /// The client's Initial was sent, unanswered.
    #[default]
    InitialSent,
    /// The server's Initial (or Handshake) came back.
    ServerInitial,
    /// The handshake completed: the client sent a 1-RTT (short-header) packet.
    Handshake,
    /// Application data both ways: 1-RTT packets from each side after the handshake.
    Data,
}

crate::domain::enum_names!(QuicStage {
    InitialSent => "initial_sent",
    ServerInitial => "server_initial",
    Handshake => "handshake",
    Data => "data",
});

/// What a QUIC connection's record keeps beside the TCP-shaped fields (the first client
/// Initial is its `syn_time`, the server's first Initial its `synack_time`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuicFacts {
    /// The version of the client's first Initial.
    pub version: u32,
    /// The client's first Destination Connection ID (the Initial keys' input).
    pub original_dcid: Vec<u8>,
    /// The client's Source Connection ID.
    pub client_cid: Vec<u8>,
    /// The server's Source Connection ID (from its Initial, or its Retry).
    pub server_cid: Vec<u8>,
    /// The server sent a Retry.
    pub retry: bool,
    /// The versions a Version Negotiation packet offered (empty: none seen).
    pub negotiated_versions: Vec<u32>,
    /// Initial packets per side (client, server), coalesced ones counted.
    pub initials: [u32; 2],
    /// The client sent 0-RTT packets.
    pub zero_rtt: bool,
    /// The ClientHello carried an Encrypted Client Hello extension.
    pub ech: bool,
    /// Handshake complete: the client's first short-header packet.
    pub handshake: OptNanos,
    /// Application data both ways: the later of each side's first short-header packet after
    /// the handshake.
    pub data: OptNanos,
    /// A client Initial did not open with its version's keys, or its ClientHello could not be
    /// read: a damaged or non-standard Initial (counted, never a failure).
    pub undecryptable: u32,
    /// A version racetrace cannot read (the Initials stay opaque).
    pub unknown_version: bool,
}

impl QuicFacts {
    /// The version's name: `1`, `2`, `draft-29`, or its number in hex.
    pub fn version_name(&self) -> String {
        match Version::of(self.version) {
            Some(v) => v.name.to_string(),
            None => format!("0x{:08x}", self.version),
        }
    }

    /// The furthest stage by time `t`, given the server's first answer `answered`.
    pub fn stage_at(&self, answered: OptNanos, t: Nanos) -> QuicStage {
        if self.data.by(t) {
            QuicStage::Data
        } else if self.handshake.by(t) {
            QuicStage::Handshake
        } else if answered.by(t) {
            QuicStage::ServerInitial
        } else {
            QuicStage::InitialSent
        }
    }
}

/// A connection ID as lower-case hex (the report's form).
pub fn hex(cid: &[u8]) -> String {
    cid.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client's Initials of one connection: keys from the first DCID (replaced after a Retry,
/// RFC 9001 §5.2), the largest packet number opened, and the CRYPTO stream until the
/// ClientHello is read.
#[derive(Debug)]
pub struct ClientInitials {
    version: Version,
    keys: Keys,
    largest: Option<u64>,
    crypto: CryptoStream,
    /// The ClientHello has been read (or cannot be): stop gathering CRYPTO data.
    hello_done: bool,
}

/// What opening one client Initial gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// It opened.
    pub ok: bool,
    /// It carried a CONNECTION_CLOSE: the client gave up in the clear.
    pub close: bool,
    /// The ClientHello became whole with this packet: its facts, and whether it offered ECH.
    pub hello: Option<(TlsFacts, bool)>,
}

impl ClientInitials {
    /// The state for a connection whose first client Initial is `p`, when its version is one
    /// racetrace reads and `p` opens with the keys of its DCID; that first packet's result.
    pub fn first(p: &Long<'_>, now: Nanos) -> Option<(ClientInitials, Opened)> {
        let version = Version::of(p.version)?;
        if p.kind != Kind::Initial {
            return None;
        }
        let keys = Keys::initial(&version, p.dcid, Sender::Client)?;
        let mut s = ClientInitials {
            version,
            keys,
            largest: None,
            crypto: CryptoStream::default(),
            hello_done: false,
        };
        let opened = s.open(p, now);
        opened.ok.then_some((s, opened))
    }

    /// After a Retry the client's next Initial uses the Retry's SCID as its DCID, and the
    /// Initial keys are derived from that.
    pub fn rekey(&mut self, dcid: &[u8]) {
        if let Some(k) = Keys::initial(&self.version, dcid, Sender::Client) {
            self.keys = k;
            self.largest = None;
        }
    }

    /// Open a later client Initial of this connection.
    pub fn open(&mut self, p: &Long<'_>, now: Nanos) -> Opened {
        let mut out = Opened::default();
        let Some((pn, frames)) = self.keys.open(p, self.largest) else {
            return out;
        };
        out.ok = true;
        self.largest = Some(self.largest.map_or(pn, |l| l.max(pn)));
        let walked = self.crypto.walk(&frames);
        out.close = walked.close;
        if !self.hello_done {
            if let Some((kind, msg)) = self.crypto.first_message() {
                self.hello_done = true;
                out.hello = (kind == 1)
                    .then(|| crate::app::tls::client_hello(msg, now))
                    .flatten();
            }
        }
        out
    }

    /// The ClientHello is read, or cannot be.
    pub fn hello_done(&self) -> bool {
        self.hello_done
    }
}

/// The server's Initials of one connection, opened only to see a CONNECTION_CLOSE sent in
/// the clear (a server refusing the connection: a version, ALPN or address-validation error).
#[derive(Debug)]
pub struct ServerInitials {
    keys: Keys,
    largest: Option<u64>,
}

impl ServerInitials {
    /// The server's Initial keys in version `version` for the client's DCID `dcid` (after a
    /// Retry, the Retry's SCID).
    pub fn new(version: u32, dcid: &[u8]) -> Option<ServerInitials> {
        let keys = Keys::initial(&Version::of(version)?, dcid, Sender::Server)?;
        Some(ServerInitials {
            keys,
            largest: None,
        })
    }

    /// Whether server Initial `p` opens and carries a CONNECTION_CLOSE.
    pub fn closes(&mut self, p: &Long<'_>) -> bool {
        let Some((pn, frames)) = self.keys.open(p, self.largest) else {
            return false;
        };
        self.largest = Some(self.largest.map_or(pn, |l| l.max(pn)));
        CryptoStream::default().walk(&frames).close
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9001 Appendix A.2's client Initial: it opens and its ClientHello names
    /// example.com, offers ALPN `alpn` and TLS 1.3, and no ECH.
    #[test]
    fn the_rfc_client_initial_gives_its_client_hello() {
        let text: String = include_str!("testdata/rfc9001-a2-client-initial.hex")
            .split_whitespace()
            .collect();
        let packet: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        let p = wire::long(&packet).unwrap();
        let (s, opened) = ClientInitials::first(&p, 7).unwrap();
        assert!(s.hello_done());
        let (tls, ech) = opened.hello.unwrap();
        assert_eq!(tls.sni.as_deref(), Some("example.com"));
        assert_eq!(tls.alpn, ["alpn"]);
        assert_eq!(tls.offered_versions, ["TLS 1.3"]);
        assert_eq!(tls.hello.get(), Some(7));
        assert!(!ech);
        assert!(!opened.close);
        // Under version 2's keys the same bytes do not open.
        let mut v2 = packet.clone();
        v2[1..5].copy_from_slice(&wire::V2.number.to_be_bytes());
        assert!(ClientInitials::first(&wire::long(&v2).unwrap(), 7).is_none());
    }

    /// A fixed-seed generator for the damage tests (xorshift).
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Damaged Initials, frames and ClientHellos never panic: the RFC's packet with bytes
    /// changed, cut or cut short (the header parse, header protection and the AEAD see them),
    /// random frame lists (the frame walk), and the RFC's ClientHello damaged after it opened
    /// (the CRYPTO gathering and the TLS parser: what an AEAD would never let through, but a
    /// forged packet could carry).
    #[test]
    fn damaged_initials_frames_and_hellos_never_panic() {
        let text: String = include_str!("testdata/rfc9001-a2-client-initial.hex")
            .split_whitespace()
            .collect();
        let packet: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        let p = wire::long(&packet).unwrap();
        let keys = Keys::initial(&wire::V1, p.dcid, Sender::Client).unwrap();
        let frames = keys.open(&p, None).unwrap().1;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..3000 {
            let mut d = packet.clone();
            for _ in 0..1 + next(&mut state) % 8 {
                let at = (next(&mut state) as usize) % d.len();
                match next(&mut state) % 3 {
                    0 => d[at] = next(&mut state) as u8,
                    1 => {
                        d.truncate(at.max(1));
                    }
                    _ => {
                        d.drain(at..(at + 1 + (next(&mut state) as usize) % 32).min(d.len()));
                    }
                }
                if d.is_empty() {
                    break;
                }
            }
            if let Ok(p) = wire::long(&d) {
                let _ = ClientInitials::first(&p, 0);
            }
            // The opened frames, damaged: the walk and the ClientHello parser.
            let mut f = frames.clone();
            let at = (next(&mut state) as usize) % 260;
            f[at] = next(&mut state) as u8;
            let mut crypto = CryptoStream::default();
            let _ = crypto.walk(&f);
            if let Some((1, msg)) = crypto.first_message() {
                let _ = crate::app::tls::client_hello(msg, 0);
            }
            let random: Vec<u8> = (0..next(&mut state) % 64)
                .map(|_| next(&mut state) as u8)
                .collect();
            let _ = CryptoStream::default().walk(&random);
        }
    }
}
