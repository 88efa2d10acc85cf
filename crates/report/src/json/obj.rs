//! The hand-written object writer behind the connections and races arrays, the bulk of a
//! large report.

use super::*;

/// A JSON object written member by member into a buffer. Keys are static identifiers and are
/// written as they are; integers, booleans, addresses and strings known to need no escaping
/// (codes, host labels, the Wireshark filter) are written directly; other values (floats,
/// enums, and text from the wire such as SNI, Host or ALPN, which serde_json escapes) go
/// through serde_json. The connections array is most of a large report; a derived `Serialize`
/// escapes every key of every object and formats addresses through `fmt`.
pub(super) struct Obj<'b> {
    pub(super) buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> Obj<'b> {
    #[inline(always)]
    pub(super) fn open(buf: &'b mut Vec<u8>) -> Obj<'b> {
        buf.push(b'{');
        Obj { buf, first: true }
    }

    #[inline(always)]
    pub(super) fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Any value, through serde_json.
    #[inline(always)]
    pub(super) fn val<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) -> std::io::Result<()> {
        self.key(k);
        serde_json::to_writer(&mut *self.buf, v).map_err(std::io::Error::from)
    }

    /// A string known to hold no `"`, `\\` or control character (codes, host labels).
    #[inline(always)]
    pub(super) fn text(&mut self, k: &str, v: &str) {
        self.key(k);
        push_text(self.buf, v);
    }

    /// An optional [`Obj::text`].
    #[inline(always)]
    pub(super) fn opt_text(&mut self, k: &str, v: Option<&str>) {
        self.key(k);
        match v {
            Some(v) => push_text(self.buf, v),
            None => self.buf.extend_from_slice(b"null"),
        }
    }

    /// An address as a string; returns where its text stands in the buffer.
    #[inline(always)]
    pub(super) fn ip(&mut self, k: &str, ip: &std::net::IpAddr) -> std::ops::Range<usize> {
        self.key(k);
        self.buf.push(b'"');
        let start = self.buf.len();
        racetrace_core::domain::push_ip(self.buf, ip);
        let end = self.buf.len();
        self.buf.push(b'"');
        start..end
    }

    #[inline(always)]
    pub(super) fn uint<T: itoa::Integer>(&mut self, k: &str, v: T) {
        self.key(k);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    #[inline(always)]
    pub(super) fn opt_uint<T: itoa::Integer>(&mut self, k: &str, v: Option<T>) {
        match v {
            Some(v) => self.uint(k, v),
            None => {
                self.key(k);
                self.buf.extend_from_slice(b"null");
            }
        }
    }

    /// An array whose elements `each` writes.
    #[inline(always)]
    pub(super) fn list<T>(
        &mut self,
        k: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Vec<u8>, T) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.key(k);
        self.buf.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            each(self.buf, item)?;
        }
        self.buf.push(b']');
        Ok(())
    }

    /// An array of ids.
    pub(super) fn uints(
        &mut self,
        k: &str,
        v: impl IntoIterator<Item = usize>,
    ) -> std::io::Result<()> {
        let mut n = itoa::Buffer::new();
        self.list(k, v, |buf, x| {
            buf.extend_from_slice(n.format(x).as_bytes());
            Ok(())
        })
    }

    /// An array of address families.
    pub(super) fn families(
        &mut self,
        k: &str,
        v: impl IntoIterator<Item = Family>,
    ) -> std::io::Result<()> {
        self.list(k, v, |buf, f| {
            push_text(buf, f.as_str());
            Ok(())
        })
    }

    #[inline(always)]
    pub(super) fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// A capture time as the contract's seconds, or null.
    #[inline(always)]
    pub(super) fn time(&mut self, k: &str, t: Option<Nanos>) -> std::io::Result<()> {
        self.val(k, &opt_time(t))
    }

    #[inline(always)]
    pub(super) fn close(self) {
        self.buf.push(b'}');
    }
}

/// A string known to hold no `"`, `\\` or control character, quoted.
#[inline(always)]
fn push_text(buf: &mut Vec<u8>, v: &str) {
    buf.push(b'"');
    buf.extend_from_slice(v.as_bytes());
    buf.push(b'"');
}

/// The connection's Wireshark filter (the text of [`racetrace_core::track::conn::WiresharkFilter`]'s
/// `Display`; the serde oracle test holds the two equal), without the formatting machinery.
/// `addrs` says where the client's and the server's addresses already stand in `out` (the
/// object spells them a few members earlier): they are copied from there, not formatted again.
pub(super) fn push_wireshark_filter(
    out: &mut Vec<u8>,
    r: &ConnRecord,
    addrs: [std::ops::Range<usize>; 2],
) {
    let ip: &[u8] = match r.family() {
        Family::Ipv4 => b"ip.addr",
        Family::Ipv6 => b"ipv6.addr",
    };
    let [client, server] = addrs;
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(ip);
    out.extend_from_slice(b" == ");
    out.extend_from_within(client);
    out.extend_from_slice(b" && ");
    out.extend_from_slice(ip);
    out.extend_from_slice(b" == ");
    out.extend_from_within(server);
    let port: &[u8] = if r.quic().is_some() {
        b" && udp.port == "
    } else {
        b" && tcp.port == "
    };
    out.extend_from_slice(port);
    out.extend_from_slice(n.format(r.client.port).as_bytes());
    out.extend_from_slice(port);
    out.extend_from_slice(n.format(r.server.port).as_bytes());
    out.extend_from_slice(b" && frame.number >= ");
    out.extend_from_slice(n.format(r.first_record).as_bytes());
    out.extend_from_slice(b" && frame.number <= ");
    out.extend_from_slice(n.format(r.last_record).as_bytes());
}
