//! Application layer: what each connection carried, from the opening bytes of each direction.
//!
//! The tracker hands every payload segment of a connection to its [`AppState`] while the
//! connection is young. Each direction is reassembled in sequence order ([`reassembly`]), the
//! client's first bytes say which protocol it speaks, and the TLS ([`tls`]) or HTTP ([`http`])
//! parser walks the bytes, setting the connection's milestones (`tls_hello`, `tls`, `http`,
//! `ws`) at the capture time of the segment that completed each step. Once there is nothing
//! more to learn the state is dropped and only the compact [`AppFacts`] stay with the record,
//! so memory follows the connections still in their opening exchange. DNS over UDP ([`dns`]):
//! the table of names and answers that the detectors read.

pub mod dns;
pub mod http;
pub mod quic;
pub mod reassembly;
pub mod tls;

use crate::domain::{Nanos, OptNanos, Seq, Side};
use reassembly::Stream;
use tls::{TlsFacts, TlsParser};

/// The protocol a connection speaks, from the client's first bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Not known (no client payload seen).
    #[default]
    Unknown,
    /// TLS.
    Tls,
    /// HTTP/1.x in clear text.
    Http,
    /// HTTP/2 with prior knowledge (the connection preface in clear text).
    Http2,
    /// QUIC (over UDP).
    Quic,
    /// Something else.
    Other,
}

crate::domain::enum_names!(Protocol {
    Unknown => "unknown",
    Tls => "tls",
    Http => "http",
    Http2 => "http2",
    Quic => "quic",
    Other => "other",
});

/// What the application layer learned about one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppFacts {
    /// Protocol.
    pub protocol: Protocol,
    /// TLS facts, when TLS.
    pub tls: Option<TlsFacts>,
    /// The first HTTP request.
    pub request: Option<http::Request>,
    /// The first response's status code.
    pub status: Option<u16>,
    /// The client sent the HTTP/2 connection preface.
    pub h2_preface: bool,
    /// Holes in the opening bytes, per direction (client, server).
    pub gaps: [u32; 2],
    /// QUIC facts, when the connection is QUIC.
    pub quic: Option<Box<quic::QuicFacts>>,
}

/// The live application-layer state of one connection.
#[derive(Debug, Default)]
pub struct AppState {
    streams: [Stream; 2],
    protocol: Protocol,
    tls: TlsParser,
    request: Option<http::Request>,
    status: Option<u16>,
    h2_preface: bool,
    side_done: [bool; 2],
}

impl AppState {
    /// A connection whose initial sequence numbers (client, server) may be known.
    pub fn new(isn: [Option<Seq>; 2]) -> AppState {
        let mut s = AppState::default();
        for (stream, isn) in s.streams.iter_mut().zip(isn) {
            if let Some(isn) = isn {
                stream.set_base(isn.plus(1));
            }
        }
        s
    }

    /// True when there is nothing more to learn.
    pub fn is_done(&self) -> bool {
        self.side_done[0] && self.side_done[1]
    }

    /// One payload segment from `side`: `seq` is its first payload byte's sequence number.
    pub fn on_segment(
        &mut self,
        side: Side,
        seq: Seq,
        payload: &[u8],
        wire_len: u32,
        now: Nanos,
        ms: &mut Milestones,
    ) {
        let i = side.index();
        if self.side_done[i] {
            return;
        }
        let Some(stream) = self.streams.get_mut(i) else {
            return;
        };
        if !stream.push(seq, payload, wire_len) {
            return;
        }
        if self.protocol == Protocol::Unknown {
            self.protocol = match side {
                // A server that speaks first (SMTP, SSH banners): not TLS or HTTP.
                Side::Server => Protocol::Other,
                Side::Client => match classify(stream.bytes()) {
                    Some(p) => p,
                    None => return, // too few bytes to tell
                },
            };
        }
        match self.protocol {
            Protocol::Tls => self.tls_step(side, now, ms),
            Protocol::Http => self.http_step(side, now, ms),
            Protocol::Http2 => {
                self.h2_preface = true;
                self.side_done = [true, true];
            }
            Protocol::Other | Protocol::Unknown | Protocol::Quic => self.side_done = [true, true],
        }
        for (done, stream) in self.side_done.iter().zip(self.streams.iter_mut()) {
            if *done {
                stream.close();
            }
        }
    }

    fn tls_step(&mut self, side: Side, now: Nanos, ms: &mut Milestones) {
        let Some(stream) = self.streams.get_mut(side.index()) else {
            return;
        };
        let walk = self.tls.walk(side, stream.bytes(), now);
        stream.consume(walk.consumed);
        let f = &self.tls.facts;
        if let Some(t) = f.hello.get() {
            ms.tls_hello.set_first(t);
        }
        if let Some(t) = f.done.get() {
            ms.tls.set_first(t);
        }
        if self.tls.done() || stream.overflow {
            self.side_done = [true, true];
        }
    }

    fn http_step(&mut self, side: Side, now: Nanos, ms: &mut Milestones) {
        let i = side.index();
        let Some(stream) = self.streams.get_mut(i) else {
            return;
        };
        match side {
            Side::Client => match http::request(stream.bytes()) {
                http::Head::Done(r, _) => {
                    ms.http.set_first(now);
                    self.request = Some(r);
                    self.side_done[i] = true;
                }
                http::Head::Partial if !stream.overflow => {}
                _ => self.side_done[i] = true,
            },
            Side::Server => match http::response(stream.bytes()) {
                http::Head::Done(code, _) => {
                    let upgraded = self.request.as_ref().is_some_and(|r| r.ws_upgrade);
                    if code == 101 && upgraded {
                        ms.ws.set_first(now);
                    }
                    self.status = Some(code);
                    self.side_done[i] = true;
                }
                http::Head::Partial if !stream.overflow => {}
                _ => self.side_done[i] = true,
            },
        }
    }

    /// The facts to keep.
    pub fn finish(self) -> AppFacts {
        AppFacts {
            protocol: self.protocol,
            tls: (self.protocol == Protocol::Tls).then_some(self.tls.facts),
            request: self.request,
            status: self.status,
            h2_preface: self.h2_preface,
            gaps: [self.streams[0].holes(), self.streams[1].holes()],
            quic: None,
        }
    }
}

/// The protocol from the client's first bytes; `None` while too few bytes have arrived.
fn classify(b: &[u8]) -> Option<Protocol> {
    if b.len() < 3 {
        return None;
    }
    if tls::looks_like_tls(b) {
        return Some(Protocol::Tls);
    }
    let n = b.len().min(http::H2_PREFACE.len());
    if b.get(..n) == http::H2_PREFACE.get(..n) {
        return (n == http::H2_PREFACE.len()).then_some(Protocol::Http2);
    }
    if http::looks_like_request(b) {
        return Some(Protocol::Http);
    }
    // A method token still arriving ("GE"), else something else.
    let upper = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    if upper == b.len() && upper < 10 {
        return None;
    }
    Some(Protocol::Other)
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
