//! Domain newtypes shared by every stage: capture time, address family, connection sides,
//! endpoints in canonical order, and wrapping TCP sequence numbers.
//!
//! Time is always capture time as integer nanoseconds since the Unix epoch ([`Nanos`]); the
//! wall clock is never read.

use std::fmt;
use std::net::IpAddr;

/// Capture time in nanoseconds since the Unix epoch.
pub type Nanos = i64;

/// Nanoseconds per millisecond, for duration conversions.
pub const NS_PER_MS: f64 = 1_000_000.0;

/// Milliseconds between two capture times (`later - earlier`), exact from integer nanoseconds.
pub fn ms_between(earlier: Nanos, later: Nanos) -> f64 {
    (later - earlier) as f64 / NS_PER_MS
}

/// Seconds since the epoch as the contract writes times: microsecond precision.
pub fn epoch_seconds(t: Nanos) -> f64 {
    // Round to the microsecond first, so the float prints as e.g. 1699000000.123456.
    let us = t.div_euclid(1_000) + i64::from(t.rem_euclid(1_000) >= 500);
    us as f64 / 1e6
}

pub mod ser;

pub(crate) use ser::enum_names;
pub use ser::{ser_opt_time, ser_time, Time};

/// A service name or a client host's label: reference-counted, so the many connections, races
/// and sequences that carry one share a single copy.
pub type Name = std::sync::Arc<str>;

/// One shared copy of each distinct [`Name`].
#[derive(Debug, Default)]
pub struct Interner(foldhash::HashSet<Name>);

impl Interner {
    /// The shared copy of `text`, made on first sight.
    pub fn get(&mut self, text: &str) -> Name {
        if let Some(n) = self.0.get(text) {
            return n.clone();
        }
        let n = Name::from(text);
        self.0.insert(n.clone());
        n
    }
}

/// ISO-8601 UTC text of a capture time, microsecond precision (for human-facing outputs).
pub fn iso8601(t: Nanos) -> String {
    let secs = t.div_euclid(1_000_000_000);
    let micros = t.rem_euclid(1_000_000_000) / 1_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// IP address family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    #[default]
    Ipv4,
    /// IPv6.
    Ipv6,
}

crate::domain::enum_names!(Family {
    Ipv4 => "ipv4",
    Ipv6 => "ipv6",
});

impl Family {
    /// The family of an address (IPv4-mapped IPv6 counts as IPv6: that is what the wire carried).
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
    /// One digit, `4` or `6`, for compact strips such as `6B1 4B2`.
    pub fn digit(self) -> char {
        match self {
            Family::Ipv4 => '4',
            Family::Ipv6 => '6',
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of a TCP connection sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that sent the first SYN (or the guessed client).
    Client,
    /// The other side.
    Server,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
    /// Index 0 for the client, 1 for the server, for per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// One end of a TCP connection or UDP flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
}

impl Default for Endpoint {
    /// `0.0.0.0:0` (an empty record's endpoints).
    fn default() -> Self {
        Endpoint {
            ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: 0,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// A connection's 4-tuple in canonical order (lower endpoint first), so both directions of a
/// connection map to the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    lo: Endpoint,
    hi: Endpoint,
}

impl ConnKey {
    /// The key of the flow between `a` and `b`, whichever sent the packet.
    pub fn new(a: Endpoint, b: Endpoint) -> ConnKey {
        if a <= b {
            ConnKey { lo: a, hi: b }
        } else {
            ConnKey { lo: b, hi: a }
        }
    }
}

/// A TCP sequence number with wrapping (RFC 1982 serial-number) comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// `self + n`, wrapping at 2^32.
    pub fn plus(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }
    /// Signed distance `self - other` (positive when `self` is later).
    pub fn diff(self, other: Seq) -> i64 {
        i64::from(self.0.wrapping_sub(other.0) as i32)
    }
    /// True when `self` comes after `other` in sequence space.
    pub fn after(self, other: Seq) -> bool {
        self.diff(other) > 0
    }
}

/// An optional capture time in 8 bytes (`i64::MIN` stands for "none"), so that the many times
/// of a connection record stay compact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OptNanos(i64);

impl Default for OptNanos {
    fn default() -> Self {
        OptNanos::NONE
    }
}

impl OptNanos {
    /// No time.
    pub const NONE: OptNanos = OptNanos(i64::MIN);
    /// A time.
    pub fn some(t: Nanos) -> OptNanos {
        OptNanos(t.max(i64::MIN + 1))
    }
    /// The time, if any.
    pub fn get(self) -> Option<Nanos> {
        (self.0 != i64::MIN).then_some(self.0)
    }
    /// True when a time is set.
    pub fn is_some(self) -> bool {
        self.0 != i64::MIN
    }
    /// Set the time unless one is set already (first occurrence wins).
    pub fn set_first(&mut self, t: Nanos) {
        if !self.is_some() {
            *self = OptNanos::some(t);
        }
    }
    /// True when a time is set and it is at or before `t`.
    pub fn by(self, t: Nanos) -> bool {
        self.get().is_some_and(|x| x <= t)
    }
}

/// How far a connection got, in the contract's vocabulary (`connections[].stage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// SYN sent, no SYN-ACK.
    #[default]
    Syn,
    /// SYN answered by the server's RST.
    Refused,
    /// SYN-ACK received, handshake never completed.
    Synack,
    /// Established, no payload.
    Tcp,
    /// Payload that is neither TLS nor HTTP.
    Data,
    /// TLS ClientHello sent.
    TlsHello,
    /// TLS handshake done, application data flowed.
    Tls,
    /// A plain HTTP request sent.
    Http,
    /// WebSocket upgrade answered 101.
    Ws,
}

crate::domain::enum_names!(Stage {
    Syn => "syn",
    Refused => "refused",
    Synack => "synack",
    Tcp => "tcp",
    Data => "data",
    TlsHello => "tls_hello",
    Tls => "tls",
    Http => "http",
    Ws => "ws",
});

/// Append `ip` as text exactly as its `Display` writes it (IPv6 per RFC 5952: lower-case hex,
/// the longest run of two or more zero groups as `::`, IPv4-mapped in dotted form), without the
/// formatting machinery: the JSON writer prints four addresses per connection.
pub fn push_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_ipv4(out, v4.octets()),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                out.extend_from_slice(b"::ffff:");
                return push_ipv4(out, v4.octets());
            }
            let seg = v6.segments();
            // The longest run of zero groups (the first of equal runs).
            let (mut best, mut best_len, mut start, mut len) = (0, 0, 0, 0);
            for (i, &g) in seg.iter().enumerate() {
                if g == 0 {
                    if len == 0 {
                        start = i;
                    }
                    len += 1;
                    if len > best_len {
                        (best, best_len) = (start, len);
                    }
                } else {
                    len = 0;
                }
            }
            let groups = |out: &mut Vec<u8>, part: &[u16]| {
                for (k, &g) in part.iter().enumerate() {
                    if k > 0 {
                        out.push(b':');
                    }
                    push_hex(out, g);
                }
            };
            if best_len > 1 {
                groups(out, seg.get(..best).unwrap_or_default());
                out.extend_from_slice(b"::");
                groups(out, seg.get(best + best_len..).unwrap_or_default());
            } else {
                groups(out, &seg);
            }
        }
    }
}

fn push_ipv4(out: &mut Vec<u8>, o: [u8; 4]) {
    for (k, b) in o.into_iter().enumerate() {
        if k > 0 {
            out.push(b'.');
        }
        if b >= 100 {
            out.push(b'0' + b / 100);
        }
        if b >= 10 {
            out.push(b'0' + b / 10 % 10);
        }
        out.push(b'0' + b % 10);
    }
}

/// A group in lower-case hex without leading zeros.
fn push_hex(out: &mut Vec<u8>, g: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12, 8, 4, 0] {
        let d = usize::from((g >> shift) & 0xf);
        if d != 0 || started || shift == 0 {
            started = true;
            out.push(HEX.get(d).copied().unwrap_or(b'0'));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_wraps() {
        assert!(Seq(5).after(Seq(u32::MAX - 3)));
        assert_eq!(Seq(5).diff(Seq(u32::MAX - 3)), 9);
        assert_eq!(Seq(u32::MAX).plus(2), Seq(1));
    }

    #[test]
    fn iso_and_epoch() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            iso8601(1_699_000_000_123_456_789),
            "2023-11-03T08:26:40.123456Z"
        );
        assert_eq!(
            epoch_seconds(1_699_000_000_123_456_789),
            1_699_000_000.123457
        );
        assert_eq!(ms_between(1_000_000, 201_600_000), 200.6);
    }

    #[test]
    fn key_is_symmetric() {
        let a = Endpoint {
            ip: "198.18.0.1".parse().unwrap(),
            port: 40000,
        };
        let b = Endpoint {
            ip: "198.18.0.2".parse().unwrap(),
            port: 80,
        };
        assert_eq!(ConnKey::new(a, b), ConnKey::new(b, a));
    }

    /// `push_ip` writes what `Display` writes: structured zero patterns and pseudo-random
    /// addresses, IPv4-mapped and IPv4-compatible ones.
    #[test]
    fn push_ip_matches_display() {
        let mut addrs: Vec<IpAddr> = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for pattern in 0u32..256 {
            for fill in [1u16, 0xa, 0x100, 0xffff, 0x0db8] {
                let mut seg = [0u16; 8];
                for (i, s) in seg.iter_mut().enumerate() {
                    if pattern & (1 << i) != 0 {
                        *s = fill.wrapping_add(i as u16);
                    }
                }
                addrs.push(IpAddr::V6(std::net::Ipv6Addr::from(seg)));
            }
        }
        for _ in 0..5000 {
            let r = u128::from(next()) << 64 | u128::from(next());
            addrs.push(IpAddr::V6(std::net::Ipv6Addr::from(r)));
            addrs.push(IpAddr::V6(std::net::Ipv6Addr::from(r & 0xffff_ffff)));
            addrs.push(IpAddr::V6(std::net::Ipv6Addr::from(
                (0xffff_u128 << 32) | (r & 0xffff_ffff),
            )));
            addrs.push(IpAddr::V4(std::net::Ipv4Addr::from(next() as u32)));
        }
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "::",
            "::1",
            "64:ff9b::192.0.2.33",
        ] {
            addrs.push(s.parse().unwrap());
        }
        for ip in addrs {
            let mut out = Vec::new();
            push_ip(&mut out, &ip);
            assert_eq!(String::from_utf8_lossy(&out), ip.to_string());
        }
    }
}
