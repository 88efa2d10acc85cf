//! QUIC packets for test captures, protected as real endpoints protect them: client and
//! server Initials sealed with the version's Initial keys (AES-128-GCM, header protection;
//! RFC 9001 §5), so racetrace must open them to see a connection; short-header (1-RTT)
//! packets whose payload is opaque, as an observer sees them.

use std::net::IpAddr;

use racetrace_core::app::quic::keys::{Keys, Sender};
use racetrace_core::app::quic::wire::Version;
use racetrace_core::domain::Side;
use ring::aead::{self, quic, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::Scenario;

/// One QUIC connection being written: its endpoints, version and connection IDs, and the
/// next packet number of each side.
#[derive(Clone, Debug)]
pub struct QuicFlow {
    /// Client address and port.
    pub client: (IpAddr, u16),
    /// Server address and port.
    pub server: (IpAddr, u16),
    /// Version number (1, or 0x6b3343cf for version 2).
    pub version: u32,
    /// The client's first Destination Connection ID (the Initial keys' input).
    pub dcid: Vec<u8>,
    /// The client's Source Connection ID.
    pub scid: Vec<u8>,
    /// The server's connection ID.
    pub server_cid: Vec<u8>,
    pn: [u64; 2],
}

impl QuicFlow {
    /// A version-1 flow from `client` to `server` whose connection IDs derive from `seed`.
    pub fn new(client: (&str, u16), server: (&str, u16), seed: u8) -> QuicFlow {
        let ip = |s: &str| s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        QuicFlow {
            client: (ip(client.0), client.1),
            server: (ip(server.0), server.1),
            version: 1,
            dcid: (0..8)
                .map(|k| seed.wrapping_mul(31).wrapping_add(k))
                .collect(),
            scid: vec![0xc1, seed, 0x01, 0x02],
            server_cid: vec![0x5e, seed, 0x0a, 0x0b, 0x0c],
            pn: [0, 0],
        }
    }

    fn next_pn(&mut self, side: Side) -> u64 {
        let pn = &mut self.pn[side.index()];
        *pn += 1;
        *pn - 1
    }
}

fn varint2(v: usize) -> [u8; 2] {
    (0x4000 | v as u16).to_be_bytes()
}

/// A long-header Initial from `sender`, its `frames` padded to `min` bytes of datagram,
/// protected with `keys`.
fn initial(f: &QuicFlow, sender: Side, pn: u64, frames: &[u8], min: usize) -> Vec<u8> {
    let version = Version::of(f.version).unwrap_or(racetrace_core::app::quic::wire::V1);
    let (dcid, scid) = match sender {
        Side::Client => (&f.dcid, &f.scid),
        Side::Server => (&f.scid, &f.server_cid),
    };
    let who = match sender {
        Side::Client => Sender::Client,
        Side::Server => Sender::Server,
    };
    let Some(keys) = Keys::initial(&version, &f.dcid, who) else {
        return Vec::new();
    };
    let (key, iv, hp) = keys.raw;
    let mut header = vec![0xc0 | (version.types[0] << 4) | 0x03];
    header.extend_from_slice(&f.version.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(scid.len() as u8);
    header.extend_from_slice(scid);
    header.push(0); // no token
                    // Length (2-byte varint) + 4-byte packet number + frames + 16-byte tag = the datagram.
    let fixed = header.len() + 2 + 4 + 16;
    let mut payload = frames.to_vec();
    if fixed + payload.len() < min {
        payload.resize(min - fixed, 0); // PADDING
    }
    header.extend_from_slice(&varint2(4 + payload.len() + 16));
    let pn_offset = header.len();
    header.extend_from_slice(&(pn as u32).to_be_bytes());
    let mut nonce = iv;
    for (k, x) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + k] ^= x;
    }
    let Ok(unbound) = UnboundKey::new(&aead::AES_128_GCM, &key) else {
        return Vec::new();
    };
    let sealer = LessSafeKey::new(unbound);
    let Ok(tag) = sealer.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&header),
        &mut payload,
    ) else {
        return Vec::new();
    };
    let mut packet = header;
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(tag.as_ref());
    let Ok(hpk) = quic::HeaderProtectionKey::new(&quic::AES_128, &hp) else {
        return Vec::new();
    };
    let Ok(mask) = hpk.new_mask(&packet[pn_offset + 4..pn_offset + 20]) else {
        return Vec::new();
    };
    packet[0] ^= mask[0] & 0x0f;
    for k in 0..4 {
        packet[pn_offset + k] ^= mask[1 + k];
    }
    packet
}

/// A CRYPTO frame at offset 0.
fn crypto(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06, 0x00];
    f.extend_from_slice(&varint2(data.len()));
    f.extend_from_slice(data);
    f
}

impl Scenario {
    fn quic_datagram(&mut self, f: &QuicFlow, from: Side, t_ms: f64, d: &[u8]) {
        let (src, dst) = match from {
            Side::Client => (f.client, f.server),
            Side::Server => (f.server, f.client),
        };
        self.udp(t_ms, src.0, src.1, dst.0, dst.1, d);
    }

    /// The client's Initial carrying a ClientHello for `sni` offering `alpn` (and the
    /// Encrypted Client Hello extension with `ech`), padded to 1200 bytes. Sent again, it is
    /// the client's retransmission.
    pub fn quic_initial(
        &mut self,
        f: &mut QuicFlow,
        t_ms: f64,
        sni: &str,
        alpn: &[&str],
        ech: bool,
    ) -> &mut Self {
        let hello = crate::tls::client_hello_message(sni, alpn, ech);
        let pn = f.next_pn(Side::Client);
        let d = initial(f, Side::Client, pn, &crypto(&hello), 1200);
        self.quic_datagram(f, Side::Client, t_ms, &d);
        self
    }

    /// The server's Initial (an ACK and its ServerHello) coalesced with a Handshake packet.
    pub fn quic_server_initial(&mut self, f: &mut QuicFlow, t_ms: f64) -> &mut Self {
        let hello = crate::tls::server_hello(true);
        let mut frames = vec![0x02, 0x00, 0x00, 0x00, 0x00]; // ACK of packet 0
        frames.extend(crypto(&hello[5..]));
        let pn = f.next_pn(Side::Server);
        let mut d = initial(f, Side::Server, pn, &frames, 0);
        // A Handshake packet (opaque to an observer) after it in the same datagram.
        let mut hs = vec![0xe0 | 0x03];
        hs.extend_from_slice(&f.version.to_be_bytes());
        hs.push(f.scid.len() as u8);
        hs.extend_from_slice(&f.scid);
        hs.push(f.server_cid.len() as u8);
        hs.extend_from_slice(&f.server_cid);
        hs.extend_from_slice(&varint2(4 + 200));
        hs.extend_from_slice(&[0x5a; 204]);
        d.extend_from_slice(&hs);
        self.quic_datagram(f, Side::Server, t_ms, &d);
        self
    }

    /// A short-header (1-RTT) packet from `side`: the client's first is the handshake done.
    pub fn quic_short(&mut self, f: &mut QuicFlow, side: Side, t_ms: f64, len: usize) -> &mut Self {
        let dcid = match side {
            Side::Client => f.server_cid.clone(),
            Side::Server => f.scid.clone(),
        };
        let pn = f.next_pn(side);
        let mut d = vec![0x41];
        d.extend_from_slice(&dcid);
        d.extend_from_slice(&(pn as u16).to_be_bytes());
        d.extend(std::iter::repeat_n(0xa7, len.max(20)));
        self.quic_datagram(f, side, t_ms, &d);
        self
    }

    /// A client Initial carrying CONNECTION_CLOSE: the client gives the attempt up in the
    /// clear (before the handshake is done).
    pub fn quic_close(&mut self, f: &mut QuicFlow, t_ms: f64) -> &mut Self {
        let pn = f.next_pn(Side::Client);
        let d = initial(f, Side::Client, pn, &[0x1c, 0x00, 0x00, 0x00], 1200);
        self.quic_datagram(f, Side::Client, t_ms, &d);
        self
    }

    /// The server's Initial carrying CONNECTION_CLOSE (error 0x0a, PROTOCOL_VIOLATION): it
    /// refuses the connection in the clear.
    pub fn quic_server_close(&mut self, f: &mut QuicFlow, t_ms: f64) -> &mut Self {
        let pn = f.next_pn(Side::Server);
        let d = initial(f, Side::Server, pn, &[0x1c, 0x0a, 0x00, 0x00], 0);
        self.quic_datagram(f, Side::Server, t_ms, &d);
        self
    }

    /// A whole QUIC connection that completes: Initial at `t_ms`, the server's answer one
    /// `rtt_ms` later, the handshake done and data both ways after it.
    pub fn quic_connect(
        &mut self,
        f: &mut QuicFlow,
        t_ms: f64,
        rtt_ms: f64,
        sni: &str,
    ) -> &mut Self {
        self.quic_initial(f, t_ms, sni, &["h3"], false);
        self.quic_server_initial(f, t_ms + rtt_ms);
        self.quic_short(f, Side::Client, t_ms + rtt_ms + 0.2, 40);
        self.quic_short(f, Side::Server, t_ms + 1.5 * rtt_ms + 0.2, 60);
        self.quic_short(f, Side::Client, t_ms + 1.5 * rtt_ms + 0.5, 40);
        self
    }
}
