//! QUIC's invariant and version-specific headers (RFC 8999, RFC 9000 §17, RFC 9369 §3), read
//! over borrowed bytes without allocation: variable-length integers, long headers (Initial,
//! 0-RTT, Handshake, Retry, Version Negotiation) and where each packet of a datagram ends,
//! so coalesced packets are walked one by one. Nothing here decrypts (see `keys`).

/// A QUIC version racetrace can read the Initial packets of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// The version number on the wire.
    pub number: u32,
    /// Its name in the report (`1`, `2`, `draft-29`).
    pub name: &'static str,
    /// The Initial salt (RFC 9001 §5.2, RFC 9369 §3.3.1).
    pub salt: [u8; 20],
    /// The HKDF labels of the packet protection key, IV and header protection key.
    pub labels: [&'static [u8]; 3],
    /// The long-header type bits of Initial, 0-RTT, Handshake and Retry, in that order.
    pub types: [u8; 4],
}

const V1_SALT: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const V2_SALT: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
const DRAFT_SALT: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];
const V1_LABELS: [&[u8]; 3] = [b"quic key", b"quic iv", b"quic hp"];

/// QUIC version 1 (RFC 9000).
pub const V1: Version = Version {
    number: 1,
    name: "1",
    salt: V1_SALT,
    labels: V1_LABELS,
    types: [0, 1, 2, 3],
};

/// QUIC version 2 (RFC 9369): its own salt and labels, and the long-header types rotated.
pub const V2: Version = Version {
    number: 0x6b33_43cf,
    name: "2",
    salt: V2_SALT,
    labels: [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
    types: [1, 2, 3, 0],
};

impl Version {
    /// The version of number `n`, when its Initials can be read: 1, 2, and the IETF drafts
    /// 29 to 32 that deployed clients still offered (they share one salt).
    pub fn of(n: u32) -> Option<Version> {
        match n {
            1 => Some(V1),
            0x6b33_43cf => Some(V2),
            0xff00_001d..=0xff00_0020 => Some(Version {
                number: n,
                name: ["draft-29", "draft-30", "draft-31", "draft-32"][(n - 0xff00_001d) as usize],
                salt: DRAFT_SALT,
                labels: V1_LABELS,
                types: [0, 1, 2, 3],
            }),
            _ => None,
        }
    }

    /// The packet kind of long-header first byte `b`.
    pub fn kind(&self, b: u8) -> Kind {
        let t = (b >> 4) & 0x03;
        match self.types.iter().position(|&x| x == t) {
            Some(0) => Kind::Initial,
            Some(1) => Kind::ZeroRtt,
            Some(2) => Kind::Handshake,
            _ => Kind::Retry,
        }
    }
}

/// A long-header packet's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Initial: the ClientHello and ServerHello, protected with keys anyone can derive.
    Initial,
    /// 0-RTT application data.
    ZeroRtt,
    /// Handshake: the rest of the TLS handshake.
    Handshake,
    /// Retry: the server asks the client to prove its address.
    Retry,
    /// Version Negotiation (version 0): the versions the server supports.
    VersionNegotiation,
    /// A version racetrace cannot read.
    Unknown,
}

/// A QUIC variable-length integer at the front of `b` (RFC 9000 §16): its value and length.
pub fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    Some((v, len))
}

/// A long-header packet, borrowed from its datagram.
#[derive(Clone, Copy, Debug)]
pub struct Long<'a> {
    /// The whole packet (the datagram's next packet starts after it).
    pub bytes: &'a [u8],
    /// The version number.
    pub version: u32,
    /// Its kind.
    pub kind: Kind,
    /// Destination connection ID.
    pub dcid: &'a [u8],
    /// Source connection ID.
    pub scid: &'a [u8],
    /// An Initial's token (empty otherwise; a Retry's token is not kept).
    pub token: &'a [u8],
    /// Where the (protected) packet number starts, for Initial, 0-RTT and Handshake.
    pub pn_offset: usize,
    /// Version Negotiation: the versions offered, as the bytes that list them.
    pub versions: &'a [u8],
}

/// Why a datagram is not a readable long-header packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// A short header (the first bit is 0).
    Short,
    /// Fewer bytes than the header says.
    Truncated,
    /// A connection ID over 20 bytes in a known version, or a length past the datagram.
    Length,
}

/// Read the long-header packet at the front of `d`.
pub fn long(d: &[u8]) -> Result<Long<'_>, Bad> {
    let first = *d.first().ok_or(Bad::Truncated)?;
    if first & 0x80 == 0 {
        return Err(Bad::Short);
    }
    let version = u32::from_be_bytes(
        d.get(1..5)
            .ok_or(Bad::Truncated)?
            .try_into()
            .unwrap_or([0; 4]),
    );
    let mut at = 5;
    let cid = |at: &mut usize| -> Result<&[u8], Bad> {
        let n = usize::from(*d.get(*at).ok_or(Bad::Truncated)?);
        let c = d.get(*at + 1..*at + 1 + n).ok_or(Bad::Truncated)?;
        *at += 1 + n;
        Ok(c)
    };
    let dcid = cid(&mut at)?;
    let scid = cid(&mut at)?;
    let mut p = Long {
        bytes: d,
        version,
        kind: Kind::Unknown,
        dcid,
        scid,
        token: &[],
        pn_offset: 0,
        versions: &[],
    };
    if version == 0 {
        p.kind = Kind::VersionNegotiation;
        p.versions = &d[at..];
        return Ok(p);
    }
    let Some(v) = Version::of(version) else {
        return Ok(p); // the rest of an unknown version's header is unknown
    };
    if dcid.len() > 20 || scid.len() > 20 {
        return Err(Bad::Length);
    }
    p.kind = v.kind(first);
    if p.kind == Kind::Retry {
        return Ok(p); // the token and integrity tag run to the datagram's end
    }
    if p.kind == Kind::Initial {
        let (n, l) = varint(&d[at..]).ok_or(Bad::Truncated)?;
        at += l;
        let end = at
            .checked_add(usize::try_from(n).map_err(|_| Bad::Length)?)
            .ok_or(Bad::Length)?;
        p.token = d.get(at..end).ok_or(Bad::Truncated)?;
        at = end;
    }
    let (len, l) = varint(&d[at..]).ok_or(Bad::Truncated)?;
    at += l;
    let end = usize::try_from(len)
        .ok()
        .and_then(|n| at.checked_add(n))
        .ok_or(Bad::Length)?;
    // A packet needs at least 4 packet-number-or-payload bytes and the 16-byte sample.
    if end > d.len() || len < 20 {
        return Err(Bad::Length);
    }
    p.bytes = &d[..end];
    p.pn_offset = at;
    Ok(p)
}

/// The versions a Version Negotiation packet lists.
pub fn versions(list: &[u8]) -> impl Iterator<Item = u32> + '_ {
    list.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_rfc_9000_appendix_a_1_gives_them() {
        assert_eq!(
            varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(varint(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        assert_eq!(varint(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(varint(&[0x25]), Some((37, 1)));
        assert_eq!(varint(&[0x40, 0x25]), Some((37, 2)));
        assert_eq!(varint(&[0x7b]), None);
    }

    #[test]
    fn damaged_headers_are_errors_not_panics() {
        assert_eq!(long(&[]).unwrap_err(), Bad::Truncated);
        assert_eq!(long(&[0x40, 1, 2]).unwrap_err(), Bad::Short);
        assert_eq!(long(&[0xc0, 0, 0, 0, 1, 30]).unwrap_err(), Bad::Truncated);
        // A 21-byte connection ID in version 1.
        let mut d = vec![0xc0, 0, 0, 0, 1, 21];
        d.extend([0u8; 21]);
        d.extend([0u8; 40]);
        assert_eq!(long(&d).unwrap_err(), Bad::Length);
        // A length past the datagram.
        let d = [0xc0, 0, 0, 0, 1, 0, 0, 0, 0x44, 0x9e, 0, 0, 0, 0];
        assert_eq!(long(&d).unwrap_err(), Bad::Length);
        // Every prefix of a good header is an error, never a panic.
        let mut good = vec![0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x40, 24];
        good.extend([0u8; 24]);
        assert!(long(&good).is_ok());
        for n in 0..good.len() {
            assert!(long(&good[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn version_2_rotates_the_long_header_types() {
        assert_eq!(V2.kind(0xd0), Kind::Initial);
        assert_eq!(V2.kind(0xc0), Kind::Retry);
        assert_eq!(V1.kind(0xc0), Kind::Initial);
        assert_eq!(V1.kind(0xe0), Kind::Handshake);
        assert_eq!(Version::of(0xff00_001d).map(|v| v.name), Some("draft-29"));
        assert_eq!(Version::of(0x0a0a_0a0a), None);
    }
}
