//! TCP and UDP headers over checked byte views: the fixed header is read from a fixed-size
//! array (so no accessor can go out of bounds), options are typed by etherparse's option
//! iterator over whatever option bytes were captured, and a snaplen that cuts the options or
//! the payload still yields the header.

use etherparse::{TcpOptionElement, TcpOptionsIterator};

use crate::domain::Seq;

/// TCP flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(pub u8);

impl Flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// True when every bit of `bits` is set.
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
    /// SYN without ACK: a connection request.
    pub fn is_syn(self) -> bool {
        self.has(Self::SYN) && !self.has(Self::ACK)
    }
    /// SYN with ACK: the answer to a connection request.
    pub fn is_synack(self) -> bool {
        self.has(Self::SYN | Self::ACK)
    }
}

/// The TCP options racetrace uses, typed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps: (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

/// A TCP segment header and its captured payload.
#[derive(Clone, Copy, Debug)]
pub struct TcpView<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: Seq,
    /// Acknowledgment number.
    pub ack: Seq,
    /// Flags.
    pub flags: Flags,
    /// Window (unscaled).
    pub window: u16,
    /// Typed options.
    pub options: TcpOptions,
    /// Payload bytes present in the capture (may be fewer than `payload_len`).
    pub payload: &'a [u8],
    /// Payload length on the wire, from the IP header's length field.
    pub payload_len: u32,
}

/// Parse a TCP header. `wire_len` is the segment length the IP header declares (header +
/// payload), used when the capture cut the payload.
pub fn parse_tcp(b: &[u8], wire_len: Option<usize>) -> Option<TcpView<'_>> {
    let h: &[u8; 20] = b.get(..20)?.try_into().ok()?;
    let header_len = usize::from(h[12] >> 4) * 4;
    if header_len < 20 {
        return None;
    }
    let options_bytes = b.get(20..header_len.min(b.len())).unwrap_or_default();
    let payload = b.get(header_len..).unwrap_or_default();
    let payload_len = match wire_len {
        Some(l) => l.saturating_sub(header_len).max(payload.len()),
        None => payload.len(),
    };
    Some(TcpView {
        src_port: u16::from_be_bytes([h[0], h[1]]),
        dst_port: u16::from_be_bytes([h[2], h[3]]),
        seq: Seq(u32::from_be_bytes([h[4], h[5], h[6], h[7]])),
        ack: Seq(u32::from_be_bytes([h[8], h[9], h[10], h[11]])),
        flags: Flags(h[13]),
        window: u16::from_be_bytes([h[14], h[15]]),
        options: parse_options(options_bytes),
        payload: payload
            .get(..payload_len.min(payload.len()))
            .unwrap_or_default(),
        payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
    })
}

fn parse_options(bytes: &[u8]) -> TcpOptions {
    // NOP, NOP, timestamps: the options of nearly every segment after the handshake (RFC 7323
    // appendix A), read without the general iterator.
    if let Ok(&[1, 1, 8, 10, v0, v1, v2, v3, e0, e1, e2, e3]) = <&[u8; 12]>::try_from(bytes) {
        return TcpOptions {
            timestamp: Some((
                u32::from_be_bytes([v0, v1, v2, v3]),
                u32::from_be_bytes([e0, e1, e2, e3]),
            )),
            ..TcpOptions::default()
        };
    }
    parse_options_general(bytes)
}

/// Every option the iterator can read, in order.
fn parse_options_general(bytes: &[u8]) -> TcpOptions {
    let mut o = TcpOptions::default();
    // The iterator stops at the first malformed or cut option; what came before is kept.
    for opt in TcpOptionsIterator::from_slice(bytes).map_while(Result::ok) {
        match opt {
            TcpOptionElement::MaximumSegmentSize(m) => o.mss = Some(m),
            TcpOptionElement::WindowScale(w) => o.wscale = Some(w),
            TcpOptionElement::SelectiveAcknowledgementPermitted => o.sack_permitted = true,
            TcpOptionElement::Timestamp(v, e) => o.timestamp = Some((v, e)),
            _ => {}
        }
    }
    o
}

/// A UDP datagram header and its captured payload.
#[derive(Clone, Copy, Debug)]
pub struct UdpView<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload present in the capture.
    pub payload: &'a [u8],
}

/// Parse a UDP header.
pub fn parse_udp(b: &[u8]) -> Option<UdpView<'_>> {
    let h: &[u8; 8] = b.get(..8)?.try_into().ok()?;
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let payload = b.get(8..).unwrap_or_default();
    // A length field below 8 (or jumbo 0) is ignored: take what was captured.
    let payload = if len >= 8 {
        payload
            .get(..(len - 8).min(payload.len()))
            .unwrap_or_default()
    } else {
        payload
    };
    Some(UdpView {
        src_port: u16::from_be_bytes([h[0], h[1]]),
        dst_port: u16::from_be_bytes([h[2], h[3]]),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN_WITH_OPTIONS: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, // ports 40000 → 80
        0x00, 0x00, 0x03, 0xe8, // seq 1000
        0x00, 0x00, 0x00, 0x00, // ack 0
        0xa0, 0x02, 0xfa, 0xf0, // data offset 10 words, SYN, window 64240
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, // TS 100, 0
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale 7
    ];

    #[test]
    fn syn_options_are_typed() {
        let t = parse_tcp(&SYN_WITH_OPTIONS, Some(40)).unwrap();
        assert_eq!((t.src_port, t.dst_port), (40000, 80));
        assert_eq!(t.seq, Seq(1000));
        assert!(t.flags.is_syn());
        assert_eq!(t.window, 64240);
        assert_eq!(
            t.options,
            TcpOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack_permitted: true,
                timestamp: Some((100, 0))
            }
        );
        assert_eq!(t.payload_len, 0);
    }

    #[test]
    fn cut_options_keep_the_header() {
        let t = parse_tcp(&SYN_WITH_OPTIONS[..26], Some(40)).unwrap();
        assert_eq!(t.options.mss, Some(1460));
        assert!(t.options.sack_permitted);
        assert_eq!(t.options.timestamp, None);
        assert!(parse_tcp(&SYN_WITH_OPTIONS[..19], None).is_none());
    }

    #[test]
    fn payload_length_comes_from_the_ip_header() {
        let mut seg = SYN_WITH_OPTIONS.to_vec();
        seg[13] = 0x18;
        seg.extend_from_slice(b"GET");
        let t = parse_tcp(&seg, Some(40 + 500)).unwrap();
        assert_eq!(t.payload, b"GET");
        assert_eq!(t.payload_len, 500);
    }

    #[test]
    fn bad_data_offset_is_rejected() {
        let mut seg = SYN_WITH_OPTIONS;
        seg[12] = 0x40;
        assert!(parse_tcp(&seg, None).is_none());
    }

    #[test]
    fn timestamp_layout_fast_path_matches_the_iterator() {
        let mut ts = vec![1, 1, 8, 10, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];
        let fast = parse_options(&ts);
        assert_eq!(fast, parse_options_general(&ts));
        assert_eq!(fast.timestamp, Some((0x1234_5678, 0x9abc_def0)));
        // Any other layout takes the general path.
        ts.swap(0, 2);
        assert_eq!(parse_options(&ts), parse_options_general(&ts));
        ts.truncate(11);
        assert_eq!(parse_options(&ts), parse_options_general(&ts));
    }
}
