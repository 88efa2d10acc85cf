//! TLS: the records of both directions, walked header by header, and the handshake messages
//! that say what a connection carried (tls-parser parses the ClientHello and ServerHello).
//!
//! Handshake completion:
//! - TLS 1.2 and older: each side sends ChangeCipherSpec and then its (encrypted) Finished as a
//!   handshake record; done when both have.
//! - TLS 1.3 (ServerHello's supported_versions says 0x0304): everything after the ServerHello
//!   is sent as application-data records, the client's Finished included. The handshake is
//!   done at the client's first application-data record after the server's flight, and
//!   application data is *sent* at a further client record after that.

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_record_with_header,
    parse_tls_server_hello_extensions, TlsClientHelloContents, TlsExtension, TlsMessage,
    TlsMessageHandshake, TlsRecordHeader, TlsRecordType, TlsVersion,
};

use crate::domain::{Nanos, OptNanos, Side};

/// Largest record body a peer may send (2^14 plus expansion for ciphertext).
const MAX_RECORD: usize = 16384 + 2048;

/// What TLS showed about a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// ClientHello server name.
    pub sni: Option<String>,
    /// ClientHello ALPN protocols, in the client's order.
    pub alpn: Vec<String>,
    /// Versions the client offered (supported_versions, else the ClientHello's version).
    pub offered_versions: Vec<&'static str>,
    /// The version the server chose.
    pub version: Option<&'static str>,
    /// ClientHello time.
    pub hello: OptNanos,
    /// Handshake complete.
    pub done: OptNanos,
    /// First client application data beyond the handshake.
    pub app_data: OptNanos,
    /// A record or handshake message could not be parsed.
    pub malformed: bool,
}

/// Name of a TLS protocol version.
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        v if v & 0x0f0f == 0x0a0a => "GREASE",
        _ => "unknown",
    }
}

/// True when `b` starts like a TLS handshake record (type 22, major version 3).
pub fn looks_like_tls(b: &[u8]) -> bool {
    matches!(b, [0x16, 0x03, minor, ..] if *minor <= 4)
}

/// The TLS state of one connection.
#[derive(Debug, Default)]
pub struct TlsParser {
    /// What was learned.
    pub facts: TlsFacts,
    server_hello: bool,
    tls13: bool,
    ccs: [bool; 2],
    finished: [OptNanos; 2],
}

/// Outcome of walking the bytes of one direction.
pub struct Walk {
    /// Bytes to drop from the stream (may reach past what it holds: a skipped record body).
    pub consumed: u64,
}

impl TlsParser {
    /// True when there is nothing more to learn.
    pub fn done(&self) -> bool {
        self.facts.app_data.is_some() || self.facts.malformed
    }

    /// Walk the complete records at the front of `b`, sent by `side`, seen at `now`.
    pub fn walk(&mut self, side: Side, b: &[u8], now: Nanos) -> Walk {
        let mut consumed = 0u64;
        let mut rest = b;
        while !self.done() {
            let Some(h) = rest.get(..5) else { break };
            let (kind, major, len) = (h[0], h[1], usize::from(u16::from_be_bytes([h[3], h[4]])));
            if !(20..=24).contains(&kind) || major != 3 || len > MAX_RECORD {
                self.facts.malformed = true;
                break;
            }
            let header = TlsRecordHeader {
                record_type: TlsRecordType(kind),
                version: TlsVersion(u16::from_be_bytes([h[1], h[2]])),
                len: len as u16,
            };
            let needs_body = kind == 22 && !self.ccs[side.index()];
            let total = 5 + len;
            if needs_body {
                let Some(body) = rest.get(5..total) else {
                    break;
                };
                self.handshake(side, &header, body, now);
            } else {
                self.opaque(side, kind, now);
            }
            consumed += total as u64;
            match rest.get(total..) {
                Some(r) => rest = r,
                None => break, // skipped body not arrived yet: the stream drops it on arrival
            }
        }
        Walk { consumed }
    }

    /// A plaintext handshake record.
    fn handshake(&mut self, side: Side, h: &TlsRecordHeader, body: &[u8], now: Nanos) {
        let Ok((_, msgs)) = parse_tls_record_with_header(body, h) else {
            // A handshake message spanning records, or garbage: only the ClientHello and
            // ServerHello matter and they fit in one record in practice.
            if !self.facts.hello.is_some() && side == Side::Client {
                self.facts.malformed = true;
            }
            return;
        };
        for m in msgs {
            match m {
                TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) => {
                    self.facts.hello.set_first(now);
                    read_client_hello(&ch, &mut self.facts);
                }
                TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)) => {
                    self.server_hello = true;
                    let mut v = sh.version.0;
                    if let Some(Ok((_, exts))) = sh.ext.map(parse_tls_server_hello_extensions) {
                        for e in exts {
                            if let TlsExtension::SupportedVersions(list) = e {
                                if let Some(x) = list.first() {
                                    v = x.0;
                                }
                            }
                        }
                    }
                    self.tls13 = v == 0x0304;
                    self.facts.version = Some(version_name(v));
                }
                _ => {}
            }
        }
    }

    /// A record whose body is not needed: ChangeCipherSpec, alerts, encrypted records.
    fn opaque(&mut self, side: Side, kind: u8, now: Nanos) {
        let i = side.index();
        match kind {
            20 if !self.tls13 => self.ccs[i] = true,
            // After ChangeCipherSpec, the first handshake record is the encrypted Finished.
            22 if self.ccs[i] => {
                self.finished[i].set_first(now);
                if let (Some(a), Some(b)) = (self.finished[0].get(), self.finished[1].get()) {
                    self.facts.done.set_first(a.max(b));
                }
            }
            23 if side == Side::Client => {
                if self.facts.done.is_some() {
                    self.facts.app_data.set_first(now);
                } else if self.tls13 && self.server_hello {
                    self.facts.done.set_first(now);
                }
            }
            _ => {}
        }
    }
}

/// The Encrypted Client Hello extension's type (draft-ietf-tls-esni).
const ECH: u16 = 0xfe0d;

/// Read a ClientHello's SNI, ALPN and offered versions into `facts`; true when it carries
/// the Encrypted Client Hello extension.
fn read_client_hello(ch: &TlsClientHelloContents<'_>, facts: &mut TlsFacts) -> bool {
    let mut offered = vec![ch.version.0];
    let mut ech = false;
    if let Some(Ok((_, exts))) = ch.ext.map(parse_tls_client_hello_extensions) {
        for e in exts {
            match e {
                TlsExtension::SNI(names) => {
                    facts.sni = names
                        .first()
                        .and_then(|(_, n)| std::str::from_utf8(n).ok())
                        .filter(|n| is_hostname(n))
                        .map(str::to_ascii_lowercase);
                }
                TlsExtension::ALPN(list) => {
                    facts.alpn = list
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect();
                }
                TlsExtension::SupportedVersions(v) => {
                    offered = v.iter().map(|x| x.0).collect();
                }
                TlsExtension::Unknown(t, _) if t.0 == ECH => ech = true,
                _ => {}
            }
        }
    }
    facts.offered_versions = offered
        .into_iter()
        .map(version_name)
        .filter(|n| *n != "GREASE")
        .collect();
    ech
}

/// A ClientHello handshake message on its own (its 4-byte header included, no record
/// layer: as QUIC's CRYPTO frames carry it), sent at `now`: its facts and whether it offers
/// Encrypted Client Hello. `None` when it does not parse as a ClientHello.
pub fn client_hello(msg: &[u8], now: Nanos) -> Option<(TlsFacts, bool)> {
    match tls_parser::parse_tls_message_handshake(msg).ok()?.1 {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) => {
            let mut facts = TlsFacts::default();
            facts.hello.set_first(now);
            let ech = read_client_hello(&ch, &mut facts);
            Some((facts, ech))
        }
        _ => None,
    }
}

/// A plausible DNS name (SNI values are attacker-controlled text); a `:port` suffix, which
/// some clients send (quic-go's interop runner: `server4:443`), is kept as sent.
fn is_hostname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':'))
}
