//! Decode stage: a [`Frame`] → a borrowed [`Packet`] view (addresses, TCP or UDP header with
//! typed options, payload), or the reason it was skipped.
//!
//! The link layer is peeled by [`link`], IP (with IPv4 options and IPv6 extension headers) is
//! sliced laxly by etherparse so that frames cut by the snaplen still yield their headers, and
//! TCP/UDP are read by [`tcp`]. Nothing here allocates or keeps state: the view borrows the
//! frame, and the tracker copies out the few facts it keeps.

pub mod link;
pub mod tcp;

use std::net::IpAddr;

use etherparse::{IpNumber, Ipv6ExtensionSlice, LaxIpSlice};

use crate::domain::Nanos;
use crate::read::Frame;
pub use tcp::{Flags, TcpOptions, TcpView, UdpView};

/// Why a frame yielded no packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The link type is not one racetrace decodes.
    UnsupportedLink,
    /// The frame carries something other than IPv4/IPv6 (ARP, STP, …).
    NotIp,
    /// IP carrying neither TCP nor UDP.
    NotTcpUdp,
    /// A non-first IP fragment (no transport header in it).
    Fragment,
    /// Headers too short or inconsistent.
    Malformed,
}

/// Counts of what the decode stage saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeStats {
    /// TCP segments decoded.
    pub tcp: u64,
    /// UDP datagrams decoded.
    pub udp: u64,
    /// Frames of link types racetrace does not decode.
    pub unsupported_link: u64,
    /// Frames that carry no IP.
    pub not_ip: u64,
    /// IP packets that carry neither TCP nor UDP.
    pub other_ip: u64,
    /// Non-first IP fragments, counted and skipped.
    pub fragments: u64,
    /// Frames whose headers could not be read.
    pub malformed: u64,
}

impl DecodeStats {
    /// Count one decode outcome.
    pub fn count(&mut self, outcome: &Result<Packet<'_>, Skip>) {
        match outcome {
            Ok(p) => match p.l4 {
                L4::Tcp(_) => self.tcp += 1,
                L4::Udp(_) => self.udp += 1,
            },
            Err(Skip::UnsupportedLink) => self.unsupported_link += 1,
            Err(Skip::NotIp) => self.not_ip += 1,
            Err(Skip::NotTcpUdp) => self.other_ip += 1,
            Err(Skip::Fragment) => self.fragments += 1,
            Err(Skip::Malformed) => self.malformed += 1,
        }
    }

    /// Add another shard's counts.
    pub fn add(&mut self, o: &DecodeStats) {
        self.tcp += o.tcp;
        self.udp += o.udp;
        self.unsupported_link += o.unsupported_link;
        self.not_ip += o.not_ip;
        self.other_ip += o.other_ip;
        self.fragments += o.fragments;
        self.malformed += o.malformed;
    }
}

/// Transport layer of a decoded packet.
#[derive(Clone, Copy, Debug)]
pub enum L4<'a> {
    /// A TCP segment.
    Tcp(TcpView<'a>),
    /// A UDP datagram.
    Udp(UdpView<'a>),
}

/// A decoded packet, borrowing the frame's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Record number (1-based).
    pub record: u64,
    /// Capture time.
    pub time: Nanos,
    /// Sender's link-layer address, when the link has one.
    pub src_mac: Option<[u8; 6]>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TCP or UDP.
    pub l4: L4<'a>,
}

impl<'a> Packet<'a> {
    /// The view without its payload bytes, and those bytes: the view can then outlive the
    /// frame it was decoded from (the tracker re-attaches the payload with [`Packet::attach`]).
    pub fn detach(self) -> (Packet<'static>, &'a [u8]) {
        let (l4, payload) = match self.l4 {
            L4::Tcp(t) => (
                L4::Tcp(TcpView {
                    src_port: t.src_port,
                    dst_port: t.dst_port,
                    seq: t.seq,
                    ack: t.ack,
                    flags: t.flags,
                    window: t.window,
                    options: t.options,
                    payload: &[],
                    payload_len: t.payload_len,
                }),
                t.payload,
            ),
            L4::Udp(u) => (
                L4::Udp(UdpView {
                    src_port: u.src_port,
                    dst_port: u.dst_port,
                    payload: &[],
                }),
                u.payload,
            ),
        };
        let packet = Packet {
            record: self.record,
            time: self.time,
            src_mac: self.src_mac,
            src: self.src,
            dst: self.dst,
            l4,
        };
        (packet, payload)
    }

    /// The view with `payload` as its payload bytes (undoes [`Packet::detach`]).
    pub fn attach<'b>(self, payload: &'b [u8]) -> Packet<'b>
    where
        'a: 'b,
    {
        let mut p: Packet<'b> = self;
        match &mut p.l4 {
            L4::Tcp(t) => t.payload = payload,
            L4::Udp(u) => u.payload = payload,
        }
        p
    }
}

/// Decode one frame.
pub fn decode<'a>(frame: &Frame<'a>) -> Result<Packet<'a>, Skip> {
    let net = link::network(frame.link, frame.data)?;
    let (ip, _ext_err) = LaxIpSlice::from_slice(net.ip).map_err(|_| Skip::Malformed)?;
    let payload = ip.payload();
    let (wire_len, first_fragment) = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            if h.fragments_offset().value() != 0 {
                return Err(Skip::Fragment);
            }
            let declared = usize::from(h.total_len()).checked_sub(usize::from(h.ihl()) * 4);
            (declared.filter(|_| !h.more_fragments()), h.more_fragments())
        }
        LaxIpSlice::Ipv6(v6) => {
            if payload.fragmented && !first_v6_fragment(v6.extensions()) {
                return Err(Skip::Fragment);
            }
            let declared = usize::from(v6.header().payload_length())
                .checked_sub(v6.extensions().slice().len())
                .filter(|&n| n > 0);
            (declared.filter(|_| !payload.fragmented), payload.fragmented)
        }
    };
    // A lax slice takes the captured length when the header's length runs past it; the wire
    // length is what the header declares (TSO captures declare 0: then the captured length).
    let wire_len = if payload.incomplete {
        wire_len
    } else {
        Some(payload.payload.len())
    };
    let wire_len = if first_fragment { None } else { wire_len };
    let l4 = match payload.ip_number {
        IpNumber::TCP => L4::Tcp(tcp::parse_tcp(payload.payload, wire_len).ok_or(Skip::Malformed)?),
        IpNumber::UDP => L4::Udp(tcp::parse_udp(payload.payload).ok_or(Skip::Malformed)?),
        _ => return Err(Skip::NotTcpUdp),
    };
    Ok(Packet {
        record: frame.record,
        time: frame.time,
        src_mac: net.src_mac,
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        l4,
    })
}

/// True when an IPv6 packet's fragment header has offset 0 (the transport header is inside).
fn first_v6_fragment(exts: &etherparse::Ipv6ExtensionsSlice<'_>) -> bool {
    exts.clone().into_iter().any(|e| match e {
        Ipv6ExtensionSlice::Fragment(f) => f.fragment_offset().value() == 0,
        _ => false,
    })
}
