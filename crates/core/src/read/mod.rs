//! Read stage: pcap, pcapng and compressed inputs → [`Frame`]s, each with its record number
//! (1-based, as Wireshark numbers frames), capture time in nanoseconds and link type.
//!
//! Reading streams through a bounded buffer (the reader's own, its records parsed in place by
//! pcap-parser's block parsers): memory does not grow with the file. A damaged or truncated
//! capture yields a [`Warning`] naming the file and record, and every record before the damage
//! is still handed on. The reader's buffer itself becomes a [`Batch`] (frames are offsets into
//! it), so that the read runs on its own thread ahead of decoding without copying packet bytes.
//!
//! [`Warning`]: crate::error::Warning

mod capture;
mod merge;
mod source;

pub use capture::CaptureReader;
pub use merge::MergedReader;
pub use source::{open, Progress, Source};

use crate::domain::Nanos;

/// A link-layer header type (the low 16 bits of the pcap/pcapng link-type field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u16);

impl LinkType {
    /// BSD loopback: 4-byte address family in the writer's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II, with optional 802.1Q/802.1ad tags.
    pub const ETHERNET: LinkType = LinkType(1);
    /// PPP: optional HDLC address and control bytes, then the PPP protocol number.
    pub const PPP: LinkType = LinkType(9);
    /// Raw IP on OpenBSD (DLT_RAW = 12).
    pub const RAW_12: LinkType = LinkType(12);
    /// Raw IP on BSD/OS and others (DLT_RAW = 14).
    pub const RAW_14: LinkType = LinkType(14);
    /// Raw IP (LINKTYPE_RAW).
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// PPP in HDLC-like framing (RFC 1662).
    pub const PPP_HDLC: LinkType = LinkType(50);
    /// Linux cooked capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Apple PKTAP as macOS tcpdump writes it (DLT_USER2).
    pub const PKTAP_APPLE: LinkType = LinkType(149);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Apple PKTAP.
    pub const PKTAP: LinkType = LinkType(258);
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// The name the report uses (`ethernet`, `linux_sll`, `raw`, …; `linktype_N` otherwise).
    pub fn name(self) -> String {
        let known = match self {
            LinkType::NULL => "null",
            LinkType::ETHERNET => "ethernet",
            LinkType::PPP | LinkType::PPP_HDLC => "ppp",
            LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 => "raw",
            LinkType::LOOP => "loop",
            LinkType::LINUX_SLL => "linux_sll",
            LinkType::LINUX_SLL2 => "linux_sll2",
            LinkType::IPV4 => "ipv4",
            LinkType::IPV6 => "ipv6",
            LinkType::PKTAP | LinkType::PKTAP_APPLE => "pktap",
            LinkType(n) => return format!("linktype_{n}"),
        };
        known.to_string()
    }

    /// True when the decode stage knows how to find IP in this link type.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            LinkType::NULL
                | LinkType::ETHERNET
                | LinkType::PPP
                | LinkType::PPP_HDLC
                | LinkType::RAW
                | LinkType::RAW_12
                | LinkType::RAW_14
                | LinkType::LOOP
                | LinkType::LINUX_SLL
                | LinkType::LINUX_SLL2
                | LinkType::IPV4
                | LinkType::IPV6
                | LinkType::PKTAP
                | LinkType::PKTAP_APPLE
        )
    }
}

/// Capture file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap format.
    #[default]
    Pcap,
    /// pcapng.
    Pcapng,
}

crate::domain::enum_names!(Format {
    Pcap => "pcap",
    Pcapng => "pcapng",
});

/// One packet record, borrowed from a [`Batch`].
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// 1-based record number within the capture (as Wireshark numbers frames).
    pub record: u64,
    /// Capture time, nanoseconds since the epoch.
    pub time: Nanos,
    /// Link-layer type of the interface the packet was captured on.
    pub link: LinkType,
    /// Captured bytes (possibly cut by the snaplen).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
}

/// Where one frame's bytes sit in a batch.
#[derive(Clone, Copy, Debug)]
struct FrameIndex {
    record: u64,
    time: Nanos,
    link: LinkType,
    orig_len: u32,
    start: usize,
    end: usize,
}

/// A run of frames and the bytes they sit in: the capture reader's buffer, handed over whole
/// (or, when several files are merged, frames copied from each file's batch), so that reading
/// and decoding can run on different threads. Reused between fills to avoid allocation.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    frames: Vec<FrameIndex>,
}

impl Batch {
    /// Fill up to about this many bytes per batch.
    pub const TARGET_BYTES: usize = 1 << 20;

    /// Empty the batch for frames to be copied in ([`Batch::push_from`]); a new batch gets its
    /// full size at once (growing it by doubling would copy each batch's bytes about once more).
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
        self.bytes.reserve(Self::TARGET_BYTES + (64 << 10));
    }

    fn push(&mut self, record: u64, time: Nanos, link: LinkType, data: &[u8], orig_len: u32) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.frames.push(FrameIndex {
            record,
            time,
            link,
            orig_len,
            start,
            end: self.bytes.len(),
        });
    }

    /// Number of frames in the batch.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when the batch holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frame at `i`.
    pub fn get(&self, i: usize) -> Option<Frame<'_>> {
        let f = self.frames.get(i)?;
        Some(Frame {
            record: f.record,
            time: f.time,
            link: f.link,
            data: self.bytes.get(f.start..f.end)?,
            orig_len: f.orig_len,
        })
    }

    /// Ask the CPU to start loading frame `i`'s headers into its cache, so that decoding it
    /// later does not wait on memory: the reader thread wrote the batch, so its frames are in
    /// another core's cache or in RAM, and the first load of each frame's header was 90 % of
    /// the link-layer step's time ([`crate::engine::prefetch`]). A no-op for a missing frame.
    pub fn prefetch(&self, i: usize) {
        if let Some(f) = self.frames.get(i) {
            crate::engine::prefetch(self.bytes.get(f.start..).unwrap_or_default());
        }
    }

    /// The frames in order.
    pub fn iter(&self) -> impl Iterator<Item = Frame<'_>> {
        (0..self.frames.len()).filter_map(move |i| self.get(i))
    }

    /// Where `bytes`, a part of one of this batch's frames, sits in the batch (an empty range
    /// for an empty or foreign slice): with [`Batch::bytes_at`], a way to refer to frame bytes
    /// without borrowing the batch.
    pub fn locate(&self, bytes: &[u8]) -> std::ops::Range<usize> {
        span_in(&self.bytes, bytes)
            .filter(|r| !r.is_empty())
            .unwrap_or(0..0)
    }

    /// The bytes at `range` (from [`Batch::locate`]); empty when out of range.
    pub fn bytes_at(&self, range: std::ops::Range<usize>) -> &[u8] {
        self.bytes.get(range).unwrap_or_default()
    }

    /// Capture time of the frame at `i`.
    pub fn time(&self, i: usize) -> Option<Nanos> {
        self.frames.get(i).map(|f| f.time)
    }

    /// Renumber the frame at `i` (used when merging several files into one capture).
    pub fn set_record(&mut self, i: usize, record: u64) {
        if let Some(f) = self.frames.get_mut(i) {
            f.record = record;
        }
    }

    /// Append the frame at `i` of `other` to this batch.
    pub fn push_from(&mut self, other: &Batch, i: usize) {
        if let Some(f) = other.get(i) {
            self.push(f.record, f.time, f.link, f.data, f.orig_len);
        }
    }
}

/// Where `inner`, a part of `outer`, sits in it; `None` when it lies elsewhere.
fn span_in(outer: &[u8], inner: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

/// What the read stage learned about a capture (the contract's `capture` object).
#[derive(Clone, Debug, Default)]
pub struct CaptureInfo {
    /// The input as given (several joined with `, ` when merged).
    pub file: String,
    /// File format.
    pub format: Format,
    /// Link types seen, in order of first appearance.
    pub link_types: Vec<LinkType>,
    /// Packet records read.
    pub packets: u64,
    /// Input size in bytes (on disk; bytes read for standard input).
    pub bytes: u64,
    /// First record's time.
    pub first_time: Option<Nanos>,
    /// Last record's time.
    pub last_time: Option<Nanos>,
    /// The input ended inside a record, or a damaged record was skipped.
    pub truncated: bool,
    /// Compression recognised on the input.
    pub compression: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::span_in;

    #[test]
    fn span_in_finds_parts_and_refuses_foreign_slices() {
        let outer = [0u8; 64];
        assert_eq!(span_in(&outer, &outer[10..20]), Some(10..20));
        assert_eq!(span_in(&outer, &outer[64..]), Some(64..64));
        let other = [0u8; 8];
        let foreign = span_in(&outer, &other);
        // Another array lies before or after `outer`, never inside it.
        assert!(foreign.is_none(), "{foreign:?}");
    }
}
