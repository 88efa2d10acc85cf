//! The test capture writer: describe traffic in a few lines (hosts, families, SYN/SYN-ACK/
//! RST/FIN/data at given times, TCP options and timestamp clocks, DNS) and get a real pcap or
//! pcapng file, with correct checksums, that any tool reads (tshark included).
//!
//! The integration tests, `samples/` and the benchmark generator are all built with it, so
//! every sample can be rebuilt. Times are milliseconds after the scenario's start.
//!
//! ```
//! use racetrace_synth::Scenario;
//! let mut s = Scenario::new();
//! s.same_host("198.18.0.1", "fd18::1");
//! let v6 = s.tcp("fd18::1", 40000, "fd18::2", 80);
//! s.syn(v6, 0.0);
//! let v4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 80);
//! s.handshake(v4, 200.0, 1.0);
//! let pcap = s.to_pcap();
//! assert!(pcap.len() > 24);
//! ```

pub mod busy;
mod dns;
mod file;
pub mod quic;
pub mod score;
pub mod tls;

pub use dns::HttpsRecord;

pub use file::{block, enhanced_packet, write_pcap, write_pcapng};

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::{PacketBuilder, TcpHeader, TcpOptionElement};

use racetrace_core::domain::{Nanos, Side};

/// Default start: 2026-11-01T00:00:00Z.
pub const DEFAULT_BASE: Nanos = 1_793_491_200 * 1_000_000_000;

/// A handle on a connection of the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnId(usize);

/// A TCP timestamp clock: TSval = offset + hz · t (wrapping at 2^32).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Ticks per second.
    pub hz: f64,
    /// TSval at the scenario's start.
    pub offset: u32,
}

impl Clock {
    fn at(&self, t_ms: f64) -> u32 {
        let ticks = (self.hz * t_ms / 1000.0).floor() as i64;
        self.offset.wrapping_add(ticks as u32)
    }
}

struct Conn {
    client: IpAddr,
    cport: u16,
    server: IpAddr,
    sport: u16,
    /// Next sequence number per side (client, server).
    next: [u32; 2],
    /// Highest sequence number received per side, for ACKs.
    acked: [u32; 2],
    /// Per side: how long before its capture time each segment's TSval was stamped (network
    /// delay jitter between the sender's clock and the capture point), ms.
    ts_lag_ms: [f64; 2],
    clocks: [Option<Clock>; 2],
}

/// A frame before encapsulation: time and the IP packet bytes, plus the MACs.
struct Pkt {
    time: Nanos,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ethertype: u16,
    ip: Vec<u8>,
}

/// Link-layer encapsulations the writer can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II.
    Ethernet,
    /// Ethernet II with one 802.1Q tag.
    Vlan,
    /// Linux cooked v1.
    LinuxSll,
    /// Linux cooked v2.
    LinuxSll2,
    /// Raw IP (LINKTYPE_RAW, 101).
    Raw,
    /// BSD loopback (little-endian family).
    Null,
}

impl Link {
    fn linktype(self) -> u32 {
        match self {
            Link::Ethernet | Link::Vlan => 1,
            Link::LinuxSll => 113,
            Link::LinuxSll2 => 276,
            Link::Raw => 101,
            Link::Null => 0,
        }
    }
}

/// A scenario: hosts, connections and packets, written as a capture.
pub struct Scenario {
    base: Nanos,
    conns: Vec<Conn>,
    pkts: Vec<Pkt>,
    macs: HashMap<IpAddr, [u8; 6]>,
    server_clocks: HashMap<IpAddr, Clock>,
    /// Send TCP timestamps on every segment (default true).
    pub timestamps: bool,
    /// Added to every DNS message id (and so to the query's source port): scenarios written
    /// into one capture give their exchanges distinct ids (default 0).
    pub dns_id_base: u16,
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The router/peer MAC used as the other end of every frame.
const PEER_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0xfe];

impl Scenario {
    /// An empty scenario starting at [`DEFAULT_BASE`].
    pub fn new() -> Scenario {
        Scenario {
            base: DEFAULT_BASE,
            conns: Vec::new(),
            pkts: Vec::new(),
            macs: HashMap::new(),
            server_clocks: HashMap::new(),
            timestamps: true,
            dns_id_base: 0,
        }
    }

    /// Start at another epoch time (nanoseconds).
    pub fn starting_at(mut self, base: Nanos) -> Scenario {
        self.base = base;
        self
    }

    /// The capture time of `t_ms`.
    pub fn time(&self, t_ms: f64) -> Nanos {
        self.base + (t_ms * 1e6).round() as i64
    }

    /// A host's MAC, derived from its address (FNV-1a), so that one address has one MAC in
    /// every scenario (the benchmark generator writes a capture from many scenarios).
    fn mac(&mut self, a: IpAddr) -> [u8; 6] {
        if let Some(m) = self.macs.get(&a) {
            return *m;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in a.to_string().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let [_, _, _, b1, b2, b3, b4, b5] = h.to_be_bytes();
        let m = [0x02, b1, b2, b3, b4, b5];
        self.macs.insert(a, m);
        m
    }

    /// Give two addresses (typically an IPv4 and an IPv6) one MAC: one dual-stack host.
    pub fn same_host(&mut self, a: &str, b: &str) {
        let m = self.mac(ip(a));
        self.macs.insert(ip(b), m);
    }

    /// Set the TCP timestamp clock of a server address (every connection to it).
    pub fn server_clock(&mut self, server: &str, hz: f64, offset: u32) {
        self.server_clocks.insert(ip(server), Clock { hz, offset });
    }

    /// Stamp one side's TSvals `lag_ms` before their capture time (jitter).
    pub fn ts_lag(&mut self, c: ConnId, side: Side, lag_ms: f64) {
        if let Some(slot) = self
            .conns
            .get_mut(c.0)
            .and_then(|conn| conn.ts_lag_ms.get_mut(side.index()))
        {
            *slot = lag_ms;
        }
    }

    /// Set one side's clock on one connection (per-connection offsets).
    pub fn conn_clock(&mut self, c: ConnId, side: Side, hz: f64, offset: u32) {
        if let Some(conn) = self.conns.get_mut(c.0) {
            if let Some(slot) = conn.clocks.get_mut(side.index()) {
                *slot = Some(Clock { hz, offset });
            }
        }
    }

    /// Declare a TCP connection.
    pub fn tcp(&mut self, client: &str, cport: u16, server: &str, sport: u16) -> ConnId {
        let n = self.conns.len() as u32;
        let (client, server) = (ip(client), ip(server));
        self.conns.push(Conn {
            client,
            cport,
            server,
            sport,
            next: [
                1_000_000u32.wrapping_add(n.wrapping_mul(7919)),
                5_000_000u32.wrapping_add(n.wrapping_mul(104_729)),
            ],
            acked: [0, 0],
            ts_lag_ms: [0.0, 0.0],
            clocks: [
                Some(Clock {
                    hz: 1000.0,
                    offset: 100_000u32.wrapping_add(n.wrapping_mul(13)),
                }),
                None,
            ],
        });
        ConnId(self.conns.len() - 1)
    }

    /// Set the next sequence number a side will send (to test wraparound).
    pub fn set_seq(&mut self, c: ConnId, side: Side, seq: u32) {
        if let Some(conn) = self.conns.get_mut(c.0) {
            if let Some(s) = conn.next.get_mut(side.index()) {
                *s = seq;
            }
        }
    }

    fn clock(&self, c: &Conn, side: Side) -> Option<Clock> {
        match side {
            Side::Client => c.clocks[0],
            Side::Server => c.clocks[1]
                .or_else(|| self.server_clocks.get(&c.server).copied())
                .or(Some(Clock {
                    hz: 1000.0,
                    offset: 7_000_000,
                })),
        }
    }

    /// Emit one segment. `flags`: S, A, F, R, P letters. Returns the sequence number used.
    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        c: ConnId,
        side: Side,
        t_ms: f64,
        flags: &str,
        seq: Option<u32>,
        payload: &[u8],
    ) -> u32 {
        let time = self.time(t_ms);
        let Some(conn) = self.conns.get(c.0) else {
            return 0;
        };
        let (i, o) = (side.index(), side.peer().index());
        let (src, sport, dst, dport) = match side {
            Side::Client => (conn.client, conn.cport, conn.server, conn.sport),
            Side::Server => (conn.server, conn.sport, conn.client, conn.cport),
        };
        let seq_used = seq.unwrap_or(conn.next[i]);
        let mut h = TcpHeader::new(sport, dport, seq_used, 64240);
        h.syn = flags.contains('S');
        h.fin = flags.contains('F');
        h.rst = flags.contains('R');
        h.psh = flags.contains('P');
        h.ack = flags.contains('A');
        if h.ack {
            h.acknowledgment_number = conn.acked[o];
        }
        let ts = if self.timestamps {
            let lag = conn.ts_lag_ms.get(i).copied().unwrap_or(0.0);
            self.clock(conn, side).map(|k| k.at(t_ms - lag))
        } else {
            None
        };
        let peer_ts = if self.timestamps && h.ack {
            self.clock(conn, side.peer()).map(|k| k.at(t_ms))
        } else {
            None
        };
        let mut opts: Vec<TcpOptionElement> = Vec::new();
        if h.syn {
            opts.push(TcpOptionElement::MaximumSegmentSize(1460));
            opts.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
        } else if ts.is_some() {
            opts.push(TcpOptionElement::Noop);
            opts.push(TcpOptionElement::Noop);
        }
        if let Some(v) = ts {
            opts.push(TcpOptionElement::Timestamp(
                v,
                if h.ack { peer_ts.unwrap_or(0) } else { 0 },
            ));
        }
        if h.syn {
            opts.push(TcpOptionElement::Noop);
            opts.push(TcpOptionElement::WindowScale(7));
        }
        let _ = h.set_options(&opts);
        // Sequence bookkeeping: SYN and FIN take one number, payload its length.
        let advance = payload.len() as u32 + u32::from(h.syn) + u32::from(h.fin);
        let end = seq_used.wrapping_add(advance);
        if let Some(conn) = self.conns.get_mut(c.0) {
            if seq.is_none() {
                conn.next[i] = end;
            }
            if end.wrapping_sub(conn.acked[i]) as i32 > 0 || conn.acked[i] == 0 {
                conn.acked[i] = end;
            }
        }
        let mut ipbytes = Vec::with_capacity(60 + payload.len());
        let res = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64)
                .tcp_header(h)
                .write(&mut ipbytes, payload),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64)
                .tcp_header(h)
                .write(&mut ipbytes, payload),
            _ => Ok(()),
        };
        if res.is_ok() {
            self.push_ip(time, src, dst, ipbytes);
        }
        seq_used
    }

    fn push_ip(&mut self, time: Nanos, src: IpAddr, dst: IpAddr, ip: Vec<u8>) {
        let ethertype = if src.is_ipv4() { 0x0800 } else { 0x86dd };
        let src_mac = if self.macs.contains_key(&src) || !self.server_clocks.contains_key(&src) {
            self.mac(src)
        } else {
            PEER_MAC
        };
        let dst_mac = self.macs.get(&dst).copied().unwrap_or(PEER_MAC);
        self.pkts.push(Pkt {
            time,
            src_mac,
            dst_mac,
            ethertype,
            ip,
        });
    }

    /// The client's SYN (call again for a retransmission: same sequence number).
    pub fn syn(&mut self, c: ConnId, t_ms: f64) -> &mut Self {
        let isn = self.conns.get(c.0).map(|k| k.next[0]);
        let already = self.conns.get(c.0).is_some_and(|k| k.acked[0] != 0);
        let seq = if already {
            isn.map(|s| s.wrapping_sub(1))
        } else {
            None
        };
        self.segment(c, Side::Client, t_ms, "S", seq, &[]);
        self
    }

    /// The server's SYN-ACK.
    pub fn synack(&mut self, c: ConnId, t_ms: f64) -> &mut Self {
        self.segment(c, Side::Server, t_ms, "SA", None, &[]);
        self
    }

    /// A pure ACK from `side` (from the client right after the SYN-ACK: the handshake's ACK).
    pub fn ack(&mut self, c: ConnId, side: Side, t_ms: f64) -> &mut Self {
        self.segment(c, side, t_ms, "A", None, &[]);
        self
    }

    /// SYN at `t_ms`, SYN-ACK after `rtt_ms`, ACK right after (seen from the client).
    pub fn handshake(&mut self, c: ConnId, t_ms: f64, rtt_ms: f64) -> &mut Self {
        self.syn(c, t_ms);
        self.synack(c, t_ms + rtt_ms);
        self.ack(c, Side::Client, t_ms + rtt_ms + 0.02)
    }

    /// Payload from `side`.
    pub fn data(&mut self, c: ConnId, side: Side, t_ms: f64, payload: &[u8]) -> &mut Self {
        self.segment(c, side, t_ms, "PA", None, payload);
        self
    }

    /// Payload at an explicit offset from the side's next sequence number (negative: a
    /// retransmission of bytes already sent; positive: a segment ahead of a gap). Does not
    /// advance the side's sequence number.
    pub fn data_at(
        &mut self,
        c: ConnId,
        side: Side,
        t_ms: f64,
        offset: i64,
        payload: &[u8],
    ) -> &mut Self {
        let next = self.conns.get(c.0).map_or(0, |k| k.next[side.index()]);
        let seq = (i64::from(next) + offset).rem_euclid(1 << 32) as u32;
        self.segment(c, side, t_ms, "PA", Some(seq), payload);
        self
    }

    /// Skip `n` sequence numbers on a side (bytes sent but not captured).
    pub fn skip(&mut self, c: ConnId, side: Side, n: u32) -> &mut Self {
        if let Some(k) = self.conns.get_mut(c.0) {
            if let Some(s) = k.next.get_mut(side.index()) {
                *s = s.wrapping_add(n);
            }
        }
        self
    }

    /// FIN (with ACK) from `side`.
    pub fn fin(&mut self, c: ConnId, side: Side, t_ms: f64) -> &mut Self {
        self.segment(c, side, t_ms, "FA", None, &[]);
        self
    }

    /// RST from `side` (with ACK when the connection got past the SYN).
    pub fn rst(&mut self, c: ConnId, side: Side, t_ms: f64) -> &mut Self {
        let established = self
            .conns
            .get(c.0)
            .is_some_and(|k| k.acked[side.peer().index()] != 0);
        self.segment(
            c,
            side,
            t_ms,
            if established { "RA" } else { "R" },
            None,
            &[],
        );
        self
    }

    /// One UDP datagram.
    pub fn udp(
        &mut self,
        t_ms: f64,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        payload: &[u8],
    ) {
        let mut ipbytes = Vec::new();
        let res = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64)
                .udp(sport, dport)
                .write(&mut ipbytes, payload),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64)
                .udp(sport, dport)
                .write(&mut ipbytes, payload),
            _ => Ok(()),
        };
        if res.is_ok() {
            let time = self.time(t_ms);
            self.push_ip(time, src, dst, ipbytes);
        }
    }

    /// The packets in time order (stable for equal times), encapsulated for `link`.
    pub fn frames(&self, link: Link) -> Vec<(Nanos, Vec<u8>)> {
        let mut order: Vec<usize> = (0..self.pkts.len()).collect();
        order.sort_by_key(|&i| self.pkts.get(i).map(|p| p.time));
        order
            .into_iter()
            .filter_map(|i| self.pkts.get(i))
            .map(|p| {
                let mut f = Vec::with_capacity(p.ip.len() + 20);
                let et = p.ethertype.to_be_bytes();
                match link {
                    Link::Ethernet => {
                        f.extend_from_slice(&p.dst_mac);
                        f.extend_from_slice(&p.src_mac);
                        f.extend_from_slice(&et);
                    }
                    Link::Vlan => {
                        f.extend_from_slice(&p.dst_mac);
                        f.extend_from_slice(&p.src_mac);
                        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
                        f.extend_from_slice(&et);
                    }
                    Link::LinuxSll => {
                        f.extend_from_slice(&[0, 0, 0, 1, 0, 6]);
                        f.extend_from_slice(&p.src_mac);
                        f.extend_from_slice(&[0, 0]);
                        f.extend_from_slice(&et);
                    }
                    Link::LinuxSll2 => {
                        f.extend_from_slice(&et);
                        f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
                        f.extend_from_slice(&p.src_mac);
                        f.extend_from_slice(&[0, 0]);
                    }
                    Link::Raw => {}
                    Link::Null => {
                        let fam: u32 = if p.ethertype == 0x0800 { 2 } else { 30 };
                        f.extend_from_slice(&fam.to_le_bytes());
                    }
                }
                f.extend_from_slice(&p.ip);
                (p.time, f)
            })
            .collect()
    }

    /// A classic pcap (microsecond timestamps, little-endian, Ethernet).
    pub fn to_pcap(&self) -> Vec<u8> {
        write_pcap(&self.frames(Link::Ethernet), Link::Ethernet, false, 262_144)
    }

    /// A pcapng file (one interface, Ethernet, `if_tsresol` 9: nanoseconds).
    pub fn to_pcapng(&self) -> Vec<u8> {
        write_pcapng(&self.frames(Link::Ethernet), Link::Ethernet, 9)
    }
}
