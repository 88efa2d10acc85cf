//! The block loop over pcap-parser: turns legacy pcap records and pcapng packet blocks
//! (enhanced, simple, obsolete) into frames with per-interface link type and time, and turns
//! every way a file can be damaged into a warning with a record number.

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

use super::{open, Batch, CaptureInfo, Format, LinkType};
use crate::domain::Nanos;
use crate::error::{Diagnostics, Error, Result};

/// Initial size of the reader's buffer.
const BUFFER_BYTES: usize = 1 << 20;
/// The buffer may grow to hold one large record, up to this size. A record claiming more is
/// damaged (libpcap itself refuses records over 256 KiB for most link types).
const MAX_RECORD_BYTES: usize = 64 << 20;
/// A legacy pcap record longer than this and than the file's snaplen is taken as damaged.
const MAX_LEGACY_CAPLEN: u32 = 256 * 1024;
/// pcapng block type of the obsolete Packet Block (pcapng draft, appendix).
const OBSOLETE_PACKET_BLOCK: u32 = 2;

/// One pcapng interface: its link type and how its timestamps are scaled.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_sec: i64,
}

/// Streams one capture's records.
pub struct CaptureReader {
    inner: Box<dyn PcapReaderIterator + Send>,
    st: State,
}

/// Everything the reader knows besides pcap-parser's buffer (kept apart so a block borrowed
/// from the buffer can be handled while the state is updated).
struct State {
    info: CaptureInfo,
    diag: Diagnostics,
    /// Legacy pcap: link type, nanosecond timestamps, snaplen.
    legacy: Option<(LinkType, bool, u32)>,
    /// pcapng: the current section's interfaces and byte order.
    interfaces: Vec<Interface>,
    big_endian: bool,
    last_time: Nanos,
    done: bool,
}

impl CaptureReader {
    /// Open and recognise a capture (`-` reads standard input).
    pub fn open(name: &str) -> Result<CaptureReader> {
        let src = open(name)?;
        let inner = pcap_parser::create_reader(BUFFER_BYTES, src.reader).map_err(|e| match e {
            PcapError::Eof => Error::Empty {
                file: name.to_string(),
            },
            PcapError::HeaderNotRecognized => Error::NotACapture {
                file: name.to_string(),
                detail: "unknown magic number".into(),
            },
            PcapError::Incomplete(_) | PcapError::UnexpectedEof => Error::NotACapture {
                file: name.to_string(),
                detail: "too short for a capture header".into(),
            },
            PcapError::ReadError => Error::Io {
                file: name.to_string(),
                source: std::io::Error::other("read error (damaged compressed stream?)"),
            },
            other => Error::NotACapture {
                file: name.to_string(),
                detail: other.to_string(),
            },
        })?;
        let info = CaptureInfo {
            file: name.to_string(),
            format: Format::Pcap,
            link_types: Vec::new(),
            packets: 0,
            bytes: src.size.unwrap_or(0),
            first_time: None,
            last_time: None,
            truncated: false,
            compression: src.compression,
        };
        Ok(CaptureReader {
            inner,
            st: State {
                info,
                diag: Diagnostics::default(),
                legacy: None,
                interfaces: Vec::new(),
                big_endian: false,
                last_time: 0,
                done: false,
            },
        })
    }

    /// What has been learned so far; complete once [`CaptureReader::fill`] returned false.
    pub fn info(&self) -> &CaptureInfo {
        &self.st.info
    }

    /// Hand over the capture facts and the warnings.
    pub fn finish(self) -> (CaptureInfo, Diagnostics) {
        let mut info = self.st.info;
        if info.bytes == 0 {
            info.bytes = self.inner.consumed() as u64;
        }
        (info, self.st.diag)
    }

    /// Fill `batch` with the next frames (about [`Batch::TARGET_BYTES`]). Returns false when
    /// the capture is exhausted and the batch is empty.
    pub fn fill(&mut self, batch: &mut Batch) -> bool {
        batch.clear();
        while !self.st.done && batch.bytes.len() < Batch::TARGET_BYTES {
            self.step(batch);
        }
        !batch.is_empty()
    }

    /// Read one block (or handle one error) and copy a packet into `batch` if it was one.
    fn step(&mut self, batch: &mut Batch) {
        let record = self.st.info.packets + 1;
        let error = match self.inner.next() {
            Ok((offset, block)) => {
                if let Some((time, link, data, orig_len)) = self.st.block(block, record) {
                    batch.push(record, time, link, data, orig_len);
                    self.st.note_frame(time, link);
                }
                self.inner.consume(offset);
                return;
            }
            Err(e) => e.to_owned_vec(),
        };
        match error {
            PcapError::Eof => self.st.done = true,
            // pcapng: the parser wants more bytes than the block's own length holds (a packet
            // length running past its block). The block is damaged, not the file: skip it.
            PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::BufferTooSmall
                if self.whole_ng_block_buffered() =>
            {
                self.skip_damaged_block(record, "a length field runs past its block");
            }
            PcapError::Incomplete(_) => self.refill(record),
            PcapError::UnexpectedEof => {
                let left = self.inner.data().len();
                self.st.stop_damaged(
                    "truncated",
                    record,
                    &format!("the file ends inside record {record} ({left} bytes of it present)"),
                );
            }
            PcapError::BufferTooSmall => {
                let need = self.claimed_record_len();
                if need <= MAX_RECORD_BYTES && self.inner.grow(need.max(BUFFER_BYTES) * 2) {
                    self.refill(record);
                } else {
                    self.st.stop_damaged(
                        "absurd_length",
                        record,
                        &format!(
                            "record {record} claims {need} bytes; the file is damaged from here on"
                        ),
                    );
                }
            }
            PcapError::ReadError => self.st.stop_damaged(
                "read_error",
                record,
                "read failed (damaged compressed stream?)",
            ),
            e => self.skip_damaged_block(record, &e.to_string()),
        }
    }

    fn refill(&mut self, record: u64) {
        if let Err(e) = self.inner.refill().map_err(|e| e.to_string()) {
            self.st
                .stop_damaged("read_error", record, &format!("read failed: {e}"));
        }
    }

    /// The length the record at the head of the buffer claims, from its header: a legacy
    /// record's captured length plus its 16-byte header, or a pcapng block's total length.
    fn claimed_record_len(&self) -> usize {
        let data = self.inner.data();
        let legacy = self.st.legacy.is_some();
        let at = if legacy { 8 } else { 4 };
        let Some(b) = data
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        else {
            return usize::MAX;
        };
        let word = if self.st.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        };
        (word as usize).saturating_add(if legacy { 16 } else { 0 })
    }

    /// True when the buffer holds a whole pcapng block by its total-length field.
    fn whole_ng_block_buffered(&self) -> bool {
        let len = self.claimed_record_len();
        self.st.legacy.is_none()
            && len >= 12
            && len.is_multiple_of(4)
            && len <= self.inner.data().len()
    }

    /// pcapng: skip a block that does not parse, using its length field when that is sane.
    fn skip_damaged_block(&mut self, record: u64, detail: &str) {
        if self.whole_ng_block_buffered() {
            let len = self.claimed_record_len();
            {
                let file = &self.st.info.file;
                let msg = format!(
                    "{file}: a damaged block before record {record} was skipped ({detail})"
                );
                self.st.diag.warn("damaged_block", Some(record), msg);
                self.st.info.truncated = true;
                self.inner.consume(len);
                return;
            }
        }
        self.st.stop_damaged(
            "damaged_block",
            record,
            &format!(
                "record {record} cannot be parsed ({detail}); the rest of the file is skipped"
            ),
        );
    }
}

impl State {
    /// Handle one block; returns the packet it carries, if any.
    fn block<'b>(
        &mut self,
        block: PcapBlockOwned<'b>,
        record: u64,
    ) -> Option<(Nanos, LinkType, &'b [u8], u32)> {
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                let link = LinkType((h.network.0 as u32 & 0xffff) as u16);
                self.legacy = Some((link, h.is_nanosecond_precision(), h.snaplen));
                self.big_endian = h.is_bigendian();
                self.info.format = Format::Pcap;
                None
            }
            PcapBlockOwned::Legacy(b) => {
                let (link, nanos, snaplen) = self.legacy.unwrap_or((LinkType::ETHERNET, false, 0));
                if b.caplen > MAX_LEGACY_CAPLEN && b.caplen > snaplen {
                    let msg = format!(
                        "record {record} claims {} captured bytes (snaplen {snaplen}); \
                         the file is damaged from here on",
                        b.caplen
                    );
                    self.stop_damaged("absurd_length", record, &msg);
                    return None;
                }
                let frac = i64::from(b.ts_usec) * if nanos { 1 } else { 1_000 };
                let time = i64::from(b.ts_sec) * 1_000_000_000 + frac;
                Some((time, link, b.data, b.origlen))
            }
            PcapBlockOwned::NG(block) => self.ng_block(block, record),
        }
    }

    /// Handle one pcapng block.
    fn ng_block<'b>(
        &mut self,
        block: Block<'b>,
        record: u64,
    ) -> Option<(Nanos, LinkType, &'b [u8], u32)> {
        self.info.format = Format::Pcapng;
        match block {
            Block::SectionHeader(shb) => {
                self.big_endian = shb.big_endian();
                self.interfaces.clear();
                None
            }
            Block::InterfaceDescription(idb) => {
                let units_per_sec = match ts_units_per_sec(idb.if_tsresol) {
                    Some(u) => u,
                    _ => {
                        let msg = format!(
                            "{}: interface {} has an invalid if_tsresol ({}); assuming microseconds",
                            self.info.file,
                            self.interfaces.len(),
                            idb.if_tsresol
                        );
                        self.diag.warn("bad_tsresol", None, msg);
                        1_000_000
                    }
                };
                self.interfaces.push(Interface {
                    link: LinkType((idb.linktype.0 as u32 & 0xffff) as u16),
                    units_per_sec,
                    offset_sec: idb.ts_offset(),
                });
                None
            }
            Block::EnhancedPacket(epb) => {
                let iface = self.interface(epb.if_id, record)?;
                Some((
                    iface.time(epb.ts_high, epb.ts_low),
                    iface.link,
                    epb.data,
                    epb.origlen,
                ))
            }
            Block::SimplePacket(spb) => {
                // A simple packet block has no timestamp: it inherits the previous packet's.
                let iface = self.interface(0, record)?;
                Some((self.last_time, iface.link, spb.data, spb.origlen))
            }
            Block::Unknown(ub) if ub.block_type == OBSOLETE_PACKET_BLOCK => {
                self.obsolete_packet(ub.data, record)
            }
            _ => None,
        }
    }

    /// The obsolete Packet Block: interface id (16 bits), drops (16), timestamp high and low,
    /// captured and original length, then the data.
    fn obsolete_packet<'b>(
        &mut self,
        body: &'b [u8],
        record: u64,
    ) -> Option<(Nanos, LinkType, &'b [u8], u32)> {
        let be = self.big_endian;
        let u32_at = |o: usize| -> Option<u32> {
            let b: [u8; 4] = body.get(o..o + 4)?.try_into().ok()?;
            Some(if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            })
        };
        let parsed = (|| {
            let b: [u8; 2] = body.get(0..2)?.try_into().ok()?;
            let if_id = if be {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            };
            let (high, low, caplen, origlen) = (u32_at(4)?, u32_at(8)?, u32_at(12)?, u32_at(16)?);
            let data = body.get(20..20usize.checked_add(caplen as usize)?)?;
            Some((if_id, high, low, data, origlen))
        })();
        let Some((if_id, high, low, data, origlen)) = parsed else {
            let msg = format!(
                "{}: record {record}: damaged obsolete packet block skipped",
                self.info.file
            );
            self.diag.warn("damaged_block", Some(record), msg);
            self.info.truncated = true;
            return None;
        };
        let iface = self.interface(u32::from(if_id), record)?;
        Some((iface.time(high, low), iface.link, data, origlen))
    }

    fn interface(&mut self, if_id: u32, record: u64) -> Option<Interface> {
        let found = self.interfaces.get(if_id as usize).copied();
        if found.is_none() {
            let msg = format!(
                "{}: record {record} names interface {if_id}, which no interface block described; skipped",
                self.info.file
            );
            self.diag.warn("unknown_interface", Some(record), msg);
        }
        found
    }

    fn note_frame(&mut self, time: Nanos, link: LinkType) {
        self.info.packets += 1;
        self.last_time = time;
        self.info.first_time.get_or_insert(time);
        self.info.last_time = Some(time);
        if self.info.link_types.contains(&link) {
            return;
        }
        self.info.link_types.push(link);
        if !link.is_supported() {
            let msg = format!(
                "{}: link type {} ({}) is not decoded; its packets are counted and skipped",
                self.info.file,
                link.0,
                link.name()
            );
            self.diag
                .warn("unknown_link_type", Some(self.info.packets), msg);
        }
    }

    fn stop_damaged(&mut self, kind: &'static str, record: u64, what: &str) {
        self.diag
            .warn(kind, Some(record), format!("{}: {what}", self.info.file));
        self.info.truncated = true;
        self.done = true;
    }
}

impl Interface {
    /// Capture time of a pcapng timestamp, in nanoseconds (wide arithmetic: no overflow).
    fn time(&self, high: u32, low: u32) -> Nanos {
        let units = (u128::from(high) << 32) | u128::from(low);
        let per = u128::from(self.units_per_sec);
        let secs = units / per;
        let frac_ns = (units % per) * 1_000_000_000 / per;
        let ns = secs as i128 * 1_000_000_000
            + frac_ns as i128
            + i128::from(self.offset_sec) * 1_000_000_000;
        ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// Units per second of an `if_tsresol` value: 10^n, or 2^n when the high bit is set.
/// (pcap-parser 0.17 rejects every binary resolution because it tests the value with the high
/// bit still set; this is the pcapng spec's reading.)
fn ts_units_per_sec(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}
