//! The common DNS message, parsed in place: one A or AAAA question with a plain name, answers
//! that are A, AAAA or CNAME records of class IN, and at most an EDNS OPT record. That is
//! nearly every query and answer a client's resolver exchanges, and parsing it allocates
//! nothing unless the name is longer than 24 bytes or there are more than two addresses
//! (simple-dns builds every record and name).
//!
//! Anything else (a compressed or unusual question name, another class or opcode, authority
//! records, an OPT that does not parse, bytes past the last record) gets `None`: the caller
//! hands the message to simple-dns, which decides. On what this path takes it gives what
//! simple-dns gives; the tests check both on generated messages and on every DNS datagram of
//! the corpus and the shared captures.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{DnsMessage, TYPE_A, TYPE_AAAA};

const TYPE_CNAME: u16 = 5;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// Longest name on the wire (RFC 1035 §3.1).
const MAX_NAME: usize = 255;
/// Compression pointers followed before a name is given up on.
const MAX_HOPS: usize = 16;

/// Big-endian u16 at `at`.
fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    let b = p.get(at..)?.first_chunk::<2>()?;
    Some(u16::from_be_bytes(*b))
}

/// Parse `p` when it is a common message; `None` sends it to the general parser.
pub(super) fn parse(p: &[u8]) -> Option<DnsMessage> {
    let id = u16_at(p, 0)?;
    let flags = u16_at(p, 2)?;
    let (qd, an, ns, ar) = (u16_at(p, 4)?, u16_at(p, 6)?, u16_at(p, 8)?, u16_at(p, 10)?);
    // One standard query (opcode 0, reserved bit clear), no authority section, at most one
    // additional record (OPT).
    if qd != 1 || flags & 0x7840 != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let response = flags & 0x8000 != 0;
    if !response && an != 0 {
        return None;
    }
    let (name, mut pos) = question_name(p, 12)?;
    // A and AAAA questions only (simple-dns judges the other types, some of which it rejects).
    let qtype = u16_at(p, pos)?;
    if !(qtype == TYPE_A || qtype == TYPE_AAAA) || u16_at(p, pos + 2)? != CLASS_IN {
        return None;
    }
    pos += 4;
    let mut addrs = super::Answers::new();
    for i in 0..an + ar {
        let name_at = pos;
        pos = skip_name(p, pos)?;
        let rtype = u16_at(p, pos)?;
        let class = u16_at(p, pos + 2)?;
        let len = usize::from(u16_at(p, pos + 8)?);
        let start = pos + 10;
        let rdata = p.get(start..start + len)?;
        pos = start + len;
        if i < an {
            if class != CLASS_IN {
                return None;
            }
            match (rtype, rdata.len()) {
                (TYPE_A, 4) => {
                    let b = rdata.first_chunk::<4>()?;
                    addrs.push(IpAddr::V4(Ipv4Addr::from(*b)));
                }
                (TYPE_AAAA, 16) => {
                    let b = rdata.first_chunk::<16>()?;
                    addrs.push(IpAddr::V6(Ipv6Addr::from(*b)));
                }
                (TYPE_CNAME, _) => {
                    if skip_name(p, start)? != pos {
                        return None;
                    }
                }
                _ => return None,
            }
        } else if rtype != TYPE_OPT || p.get(name_at) != Some(&0) || !opt_ok(rdata) {
            return None;
        }
    }
    if pos != p.len() {
        return None;
    }
    Some(DnsMessage {
        id,
        response,
        name,
        qtype,
        addrs,
        svc: None,
    })
}

/// The question's name: plain labels of letters, digits, `-` and `_` only (lower-cased, joined
/// with `.`), and where it ends. Compression or any other byte: `None`. The text is gathered
/// on the stack and made a string once, not a character at a time.
fn question_name(p: &[u8], mut pos: usize) -> Option<(compact_str::CompactString, usize)> {
    // The text is never longer than the wire form (each label's length byte becomes a dot).
    let mut text = [0u8; MAX_NAME];
    let mut len = 0;
    let mut wire = 1;
    loop {
        let n = usize::from(*p.get(pos)?);
        pos += 1;
        if n == 0 {
            let name = std::str::from_utf8(text.get(..len)?).ok()?;
            return Some((name.into(), pos));
        }
        if n > 63 {
            return None;
        }
        let label = p.get(pos..pos + n)?;
        wire += n + 1;
        if wire > MAX_NAME
            || !label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if len > 0 {
            *text.get_mut(len)? = b'.';
            len += 1;
        }
        for (to, from) in text.get_mut(len..len + n)?.iter_mut().zip(label) {
            *to = from.to_ascii_lowercase();
        }
        len += n;
        pos += n;
    }
}

/// Check the name at `pos` (labels, compression pointers pointing back to valid names) and
/// return where it ends in place.
fn skip_name(p: &[u8], pos: usize) -> Option<usize> {
    let mut at = pos;
    let mut end = None;
    let mut wire = 1;
    for _ in 0..MAX_HOPS {
        loop {
            let len = *p.get(at)?;
            match len {
                0 => return Some(end.unwrap_or(at + 1)),
                1..=63 => {
                    let len = usize::from(len);
                    p.get(at + 1..at + 1 + len)?;
                    wire += len + 1;
                    if wire > MAX_NAME {
                        return None;
                    }
                    at += 1 + len;
                }
                0xC0..=0xFF => {
                    let target = usize::from(u16_at(p, at)? & 0x3FFF);
                    // Pointers go back, to an earlier part of the message.
                    if target >= at {
                        return None;
                    }
                    end.get_or_insert(at + 2);
                    at = target;
                    break;
                }
                _ => return None,
            }
        }
    }
    None
}

/// EDNS options: (code, length, data) items filling the record exactly.
fn opt_ok(mut rdata: &[u8]) -> bool {
    while !rdata.is_empty() {
        let Some(len) = u16_at(rdata, 2) else {
            return false;
        };
        let Some(rest) = rdata.get(4 + usize::from(len)..) else {
            return false;
        };
        rdata = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::{RData, A, AAAA, CNAME, OPT};
    use simple_dns::{Name, Packet, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

    /// The property: this path either declines or gives exactly what simple-dns gives.
    fn agrees(p: &[u8]) -> bool {
        match parse(p) {
            None => true,
            Some(fast) => DnsMessage::parse_general(p).is_ok_and(|g| g.as_ref() == Some(&fast)),
        }
    }

    fn name(s: &str) -> Name<'_> {
        Name::new_unchecked(s)
    }

    /// A query and a reply for `qname`, the reply with a CNAME then A and AAAA answers.
    fn exchange(qname: &str, edns: bool, compressed: bool) -> [Vec<u8>; 2] {
        let q = Question::new(
            name(qname),
            QTYPE::TYPE(TYPE::AAAA),
            QCLASS::CLASS(CLASS::IN),
            false,
        );
        let mut query = Packet::new_query(0x1234);
        query.questions.push(q.clone());
        let mut reply = Packet::new_reply(0x1234);
        reply.questions.push(q);
        reply.answers.push(ResourceRecord::new(
            name(qname),
            CLASS::IN,
            60,
            RData::CNAME(CNAME(name("edge.example.net"))),
        ));
        reply.answers.push(ResourceRecord::new(
            name("edge.example.net"),
            CLASS::IN,
            60,
            RData::A(A {
                address: 0xC633_6401,
            }),
        ));
        reply.answers.push(ResourceRecord::new(
            name("edge.example.net"),
            CLASS::IN,
            60,
            RData::AAAA(AAAA {
                address: 0x2001_0db8_0000_0000_0000_0000_0000_0001,
            }),
        ));
        if edns {
            for p in [&mut query, &mut reply] {
                *p.opt_mut() = Some(OPT {
                    opt_codes: Vec::new(),
                    udp_packet_size: 1232,
                    version: 0,
                });
            }
        }
        let build = |p: &Packet<'_>| {
            if compressed {
                p.build_bytes_vec_compressed()
            } else {
                p.build_bytes_vec()
            }
            .unwrap_or_default()
        };
        [build(&query), build(&reply)]
    }

    #[test]
    fn takes_the_common_messages_and_matches_simple_dns() {
        for edns in [false, true] {
            for compressed in [false, true] {
                let [query, reply] = exchange("Svc0.Example.COM", edns, compressed);
                let q = parse(&query);
                let r = parse(&reply);
                assert!(
                    q.is_some() && r.is_some(),
                    "edns {edns} compressed {compressed}"
                );
                assert!(agrees(&query) && agrees(&reply));
                let r = r.unwrap_or_else(|| unreachable!());
                assert_eq!(r.name, "svc0.example.com");
                assert_eq!(r.qtype, TYPE_AAAA);
                assert!(r.response);
                assert_eq!(
                    r.addrs.as_slice(),
                    [
                        "198.51.100.1"
                            .parse::<IpAddr>()
                            .unwrap_or(IpAddr::V4(0.into())),
                        "2001:db8::1"
                            .parse::<IpAddr>()
                            .unwrap_or(IpAddr::V4(0.into())),
                    ]
                );
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_know_and_simple_dns_decides() {
        // A name with a space in a label: simple-dns's text for it is its own.
        let [query, _] = exchange("a b.example", false, false);
        assert!(parse(&query).is_none());
        // The reserved header bit: simple-dns rejects the message.
        let [mut query, _] = exchange("x.example", false, false);
        if let Some(b) = query.get_mut(3) {
            *b |= 0x40;
        }
        assert!(parse(&query).is_none());
        assert!(DnsMessage::parse_general(&query).is_err());
        // Trailing bytes.
        let [mut reply, _] = exchange("x.example", false, true);
        reply.push(0);
        assert!(parse(&reply).is_none());
    }

    /// Every cut and every single-byte change of the common messages: declined or identical.
    #[test]
    fn every_cut_and_byte_change_agrees_with_simple_dns() {
        let mut checked = 0;
        for edns in [false, true] {
            for compressed in [false, true] {
                for msg in exchange("www.example.com", edns, compressed) {
                    for cut in 0..msg.len() {
                        assert!(agrees(msg.get(..cut).unwrap_or_default()), "cut at {cut}");
                    }
                    for at in 0..msg.len() {
                        for v in 0..=255u8 {
                            let mut m = msg.clone();
                            if let Some(b) = m.get_mut(at) {
                                *b = v;
                            }
                            assert!(agrees(&m), "byte {at} = {v}: {m:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
    }

    /// Every UDP datagram on port 53 of the samples, the real captures and the tcpdump corpus.
    #[test]
    fn real_dns_datagrams_agree_with_simple_dns() {
        use crate::decode::{decode, L4};
        use crate::read::{Batch, CaptureReader};
        let mut files = crate::testdata::own_captures();
        let corpus = crate::testdata::corpus();
        let with_corpus = corpus.is_some();
        files.extend(corpus.unwrap_or_default());
        let (mut seen, mut taken) = (0, 0);
        for f in files.iter().filter_map(|f| f.to_str()) {
            let Ok(mut reader) = CaptureReader::open(f) else {
                continue;
            };
            let mut batch = Batch::default();
            while reader.fill(&mut batch) {
                for frame in (0..batch.len()).filter_map(|i| batch.get(i)) {
                    let Ok(p) = decode(&frame) else { continue };
                    let L4::Udp(u) = p.l4 else { continue };
                    if super::super::is_dns(&u) {
                        seen += 1;
                        taken += usize::from(parse(u.payload).is_some());
                        assert!(agrees(u.payload), "{f}: record {}", frame.record);
                    }
                }
            }
        }
        // The repository's captures hold 140 DNS datagrams, all well-formed; the corpus adds 91
        // of many types, malformed ones among them (59 taken).
        let expected = if with_corpus { (231, 199) } else { (140, 140) };
        assert_eq!((seen, taken), expected, "DNS datagrams seen and taken");
    }
}
