//! Link layers → the network-layer bytes they carry, with the sender's MAC address where the
//! link has one. Each function takes the frame's bytes and returns [`NetBytes`] or the reason
//! it could not find IP.

use super::Skip;
use crate::read::LinkType;

/// EtherTypes the decoder follows.
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// ARPHRD_ETHER: a cooked header's address is an Ethernet MAC.
const ARPHRD_ETHER: u16 = 1;

/// The network-layer part of a frame.
#[derive(Debug)]
pub struct NetBytes<'a> {
    /// The sender's link-layer address, when the link has a 6-byte one.
    pub src_mac: Option<[u8; 6]>,
    /// Bytes starting at the IP header.
    pub ip: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn mac(b: &[u8], at: usize) -> Option<[u8; 6]> {
    b.get(at..at + 6)?.try_into().ok()
}

/// Find the IP header inside a frame of link type `link`.
pub fn network<'a>(link: LinkType, data: &'a [u8]) -> Result<NetBytes<'a>, Skip> {
    match link {
        LinkType::ETHERNET => ethernet(data),
        LinkType::LINUX_SLL => cooked(data, 14, 16, 2, 4, 6),
        LinkType::LINUX_SLL2 => cooked(data, 0, 20, 8, 11, 12),
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 | LinkType::IPV4 | LinkType::IPV6 => {
            Ok(NetBytes {
                src_mac: None,
                ip: data,
            })
        }
        // BSD loopback (either byte order) and OpenBSD loop: a 4-byte address family. The IP
        // version nibble says the rest, whatever the family's byte order.
        LinkType::NULL | LinkType::LOOP => Ok(NetBytes {
            src_mac: None,
            ip: data.get(4..).ok_or(Skip::Malformed)?,
        }),
        LinkType::PKTAP | LinkType::PKTAP_APPLE => pktap(data),
        LinkType::PPP | LinkType::PPP_HDLC => ppp(data),
        _ => Err(Skip::UnsupportedLink),
    }
}

/// PPP (RFC 1661): the HDLC address and control bytes `ff 03` when present, then the
/// protocol, 2 bytes (or 1 when compressed, RFC 1661 §6.5: an odd first byte).
fn ppp(data: &[u8]) -> Result<NetBytes<'_>, Skip> {
    let rest = match data {
        [0xff, 0x03, rest @ ..] => rest,
        rest => rest,
    };
    let (proto, at) = match rest {
        [b, ..] if b & 1 == 1 => (u16::from(*b), 1),
        _ => (be16(rest, 0).ok_or(Skip::Malformed)?, 2),
    };
    match proto {
        0x0021 | 0x0057 => Ok(NetBytes {
            src_mac: None,
            ip: rest.get(at..).ok_or(Skip::Malformed)?,
        }),
        _ => Err(Skip::NotIp),
    }
}

/// Ethernet II with any number (up to 4) of 802.1Q / 802.1ad tags.
fn ethernet(data: &[u8]) -> Result<NetBytes<'_>, Skip> {
    let src_mac = mac(data, 6);
    let mut ethertype = be16(data, 12).ok_or(Skip::Malformed)?;
    let mut at = 14;
    for _ in 0..4 {
        if !matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            break;
        }
        ethertype = be16(data, at + 2).ok_or(Skip::Malformed)?;
        at += 4;
    }
    ip_ethertype(ethertype, data.get(at..).ok_or(Skip::Malformed)?, src_mac)
}

/// Linux cooked capture, v1 (`proto_at` 14, header 16) or v2 (`proto_at` 0, header 20).
fn cooked(
    data: &[u8],
    proto_at: usize,
    header_len: usize,
    hatype_at: usize,
    addr_len_at: usize,
    addr_at: usize,
) -> Result<NetBytes<'_>, Skip> {
    let proto = be16(data, proto_at).ok_or(Skip::Malformed)?;
    let hatype = be16(data, hatype_at).ok_or(Skip::Malformed)?;
    // v1 stores the address length in 16 bits, v2 in 8: the low byte is the one that matters.
    let addr_len = data
        .get(addr_len_at + usize::from(addr_len_at == 4))
        .copied()
        .unwrap_or(0);
    let src_mac = if hatype == ARPHRD_ETHER && addr_len == 6 {
        mac(data, addr_at)
    } else {
        None
    };
    ip_ethertype(
        proto,
        data.get(header_len..).ok_or(Skip::Malformed)?,
        src_mac,
    )
}

fn ip_ethertype(ethertype: u16, ip: &[u8], src_mac: Option<[u8; 6]>) -> Result<NetBytes<'_>, Skip> {
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(NetBytes { src_mac, ip }),
        _ => Err(Skip::NotIp),
    }
}

/// Apple PKTAP: a header (its length in the first 32-bit word, the inner DLT in the third,
/// in the writer's byte order, little-endian on every Mac) before a frame of the inner type.
fn pktap(data: &[u8]) -> Result<NetBytes<'_>, Skip> {
    let word = |at: usize| -> Option<(u32, u32)> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some((u32::from_le_bytes(b), u32::from_be_bytes(b)))
    };
    let (len_le, len_be) = word(0).ok_or(Skip::Malformed)?;
    let (dlt_le, dlt_be) = word(8).ok_or(Skip::Malformed)?;
    let plausible = |len: u32| (12..=4096).contains(&len) && (len as usize) <= data.len();
    let (len, dlt) = if plausible(len_le) {
        (len_le, dlt_le)
    } else if plausible(len_be) {
        (len_be, dlt_be)
    } else {
        return Err(Skip::Malformed);
    };
    let inner = LinkType((dlt & 0xffff) as u16);
    if matches!(inner, LinkType::PKTAP | LinkType::PKTAP_APPLE) {
        return Err(Skip::Malformed);
    }
    network(inner, data.get(len as usize..).ok_or(Skip::Malformed)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_tags_are_skipped() {
        let mut f = vec![0u8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 20]);
        let n = network(LinkType::ETHERNET, &f).unwrap();
        assert_eq!(n.src_mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(n.ip, &[0x45, 0, 0, 20]);
    }

    #[test]
    fn sll2_finds_ip_and_mac() {
        let mut f = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 2, 0, 0, 0, 0, 9, 0, 0,
        ];
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        let n = network(LinkType::LINUX_SLL2, &f).unwrap();
        assert_eq!(n.src_mac, Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(n.ip, &[0x60, 0, 0, 0]);
    }

    #[test]
    fn sll1_non_ip_is_skipped() {
        let f = [0u8, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x06, 0, 0];
        assert!(matches!(network(LinkType::LINUX_SLL, &f), Err(Skip::NotIp)));
    }

    #[test]
    fn pktap_names_inner_link() {
        let mut f = vec![0u8; 108];
        f[0] = 108; // header length, little-endian
        f[8] = 1; // inner DLT: Ethernet
        f.extend_from_slice(&[0; 12]);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        let n = network(LinkType::PKTAP_APPLE, &f).unwrap();
        assert_eq!(n.ip, &[0x60, 0, 0, 0]);
        assert!(network(LinkType::PKTAP, &f[..50]).is_err());
    }

    #[test]
    fn short_frames_do_not_panic() {
        for link in [0u16, 1, 101, 108, 113, 149, 258, 276] {
            for n in 0..24 {
                let _ = network(LinkType(link), &vec![0x81u8; n]);
            }
        }
    }
}
