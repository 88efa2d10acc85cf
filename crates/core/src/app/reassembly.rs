//! The opening bytes of one TCP direction, put back in sequence order.
//!
//! Segments may arrive out of order, be retransmitted or overlap; the stream keeps only the
//! contiguous bytes a parser has not consumed yet (at most [`WINDOW`]), a few early segments
//! waiting for a hole to fill, and nothing past [`HORIZON`] bytes into the stream. A parser
//! may also skip ahead (an encrypted record's body it does not need): bytes before the skip
//! point are dropped as they arrive. Overlapping data: the first copy wins, as most stacks do.

use crate::domain::Seq;

/// Most contiguous, unconsumed bytes kept per direction.
pub const WINDOW: usize = 16 * 1024;
/// Bytes past this offset in the stream are not looked at.
pub const HORIZON: u64 = 256 * 1024;
/// Early (out-of-order) segments held per direction while waiting for a hole to fill.
const MAX_PENDING: usize = 16;

/// One direction's opening bytes.
#[derive(Debug, Default)]
pub struct Stream {
    /// Sequence number of stream offset 0 (the SYN's sequence number + 1, or the first
    /// segment's when the SYN was not captured).
    base: Option<Seq>,
    /// Stream offset of `buf[0]`.
    start: u64,
    /// Contiguous bytes from `start`.
    buf: Vec<u8>,
    /// Segments beyond a hole: (stream offset, bytes).
    pending: Vec<(u64, Vec<u8>)>,
    /// Holes given up on (segments dropped because too many were waiting, or captured
    /// payload shorter than the segment).
    pub gaps: u32,
    /// The window filled before the parser could use it.
    pub overflow: bool,
}

impl Stream {
    /// Set offset 0 when the initial sequence number is known (before the first segment).
    pub fn set_base(&mut self, isn_plus_one: Seq) {
        if self.base.is_none() {
            self.base = Some(isn_plus_one);
        }
    }

    /// Add one segment's captured payload starting at sequence number `seq`; `wire_len` is its
    /// length on the wire (a snaplen may have cut `data`). Returns true when new contiguous
    /// bytes became available.
    pub fn push(&mut self, seq: Seq, data: &[u8], wire_len: u32) -> bool {
        let base = *self.base.get_or_insert(seq);
        let off = seq.diff(base);
        if off < 0 {
            // Before offset 0: only the part from 0 on is new.
            let cut = usize::try_from(-off).unwrap_or(usize::MAX);
            return match data.get(cut..) {
                Some(rest) if !rest.is_empty() => {
                    self.push(base, rest, wire_len.saturating_sub(cut as u32))
                }
                _ => false,
            };
        }
        let off = off as u64;
        if (data.len() as u64) < u64::from(wire_len) {
            // The capture cut this segment: the missing tail is a hole.
            self.gaps += 1;
        }
        self.insert(off, data)
    }

    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    fn insert(&mut self, off: u64, data: &[u8]) -> bool {
        if data.is_empty() || off >= HORIZON {
            return false;
        }
        let end = self.end();
        if off > end {
            if self.pending.len() < MAX_PENDING {
                self.pending.push((off, data.to_vec()));
            } else {
                self.gaps += 1;
            }
            return false;
        }
        let skip = usize::try_from(end - off).unwrap_or(usize::MAX);
        let Some(fresh) = data.get(skip..).filter(|f| !f.is_empty()) else {
            return false;
        };
        let room = WINDOW.saturating_sub(self.buf.len());
        if fresh.len() > room {
            self.overflow = true;
        }
        self.buf.extend_from_slice(&fresh[..fresh.len().min(room)]);
        self.drain_pending();
        true
    }

    /// Move waiting segments that now touch the contiguous end into the buffer.
    fn drain_pending(&mut self) {
        loop {
            let end = self.end();
            let Some(i) = self.pending.iter().position(|(o, _)| *o <= end) else {
                return;
            };
            let (off, data) = self.pending.swap_remove(i);
            if off + data.len() as u64 > end {
                let skip = usize::try_from(end - off).unwrap_or(usize::MAX);
                let room = WINDOW.saturating_sub(self.buf.len());
                if let Some(fresh) = data.get(skip..) {
                    if fresh.len() > room {
                        self.overflow = true;
                    }
                    self.buf.extend_from_slice(&fresh[..fresh.len().min(room)]);
                }
            }
        }
    }

    /// The contiguous bytes not consumed yet.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Drop `n` bytes from the front; `n` may reach past the bytes held (a skipped record
    /// body), in which case later bytes before that point are dropped as they arrive.
    pub fn consume(&mut self, n: u64) {
        let held = self.buf.len() as u64;
        if n >= held {
            self.buf.clear();
            self.start += n;
            self.pending
                .retain(|(o, d)| o + d.len() as u64 > self.start);
            for (o, d) in self.pending.iter_mut() {
                if *o < self.start {
                    let cut = usize::try_from(self.start - *o).unwrap_or(usize::MAX);
                    d.drain(..cut.min(d.len()));
                    *o = self.start;
                }
            }
            self.drain_pending();
        } else {
            self.buf.drain(..n as usize);
            self.start += n;
        }
    }

    /// Free everything: the parser is done with this direction.
    pub fn close(&mut self) {
        if !self.pending.is_empty() {
            self.gaps += 1;
        }
        self.buf = Vec::new();
        self.pending = Vec::new();
    }

    /// Holes still open (segments waiting behind a missing one) count as one gap.
    pub fn holes(&self) -> u32 {
        self.gaps + u32::from(!self.pending.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_retransmitted_and_overlapping_segments() {
        let mut s = Stream::default();
        s.set_base(Seq(1000));
        assert!(!s.push(Seq(1005), b"56789", 5)); // early: waits for the hole
        assert!(s.push(Seq(1000), b"0123", 4));
        assert_eq!(s.bytes(), b"0123");
        assert!(s.push(Seq(1002), b"234", 3)); // overlaps, fills the hole
        assert_eq!(s.bytes(), b"0123456789");
        assert!(!s.push(Seq(1000), b"XXXX", 4)); // retransmission: first copy wins
        assert_eq!(s.bytes(), b"0123456789");
        assert_eq!(s.holes(), 0);
    }

    #[test]
    fn sequence_wraparound_and_skip_ahead() {
        let mut s = Stream::default();
        s.set_base(Seq(u32::MAX - 1));
        assert!(s.push(Seq(u32::MAX - 1), b"ab", 2));
        assert!(s.push(Seq(0), b"cd", 2));
        assert_eq!(s.bytes(), b"abcd");
        s.consume(6); // skip past "ef", not yet arrived
        assert!(s.push(Seq(2), b"efgh", 4));
        assert_eq!(s.bytes(), b"gh");
    }

    #[test]
    fn snaplen_cut_is_a_gap_and_window_is_bounded() {
        let mut s = Stream::default();
        s.set_base(Seq(0));
        s.push(Seq(0), b"abc", 1400);
        assert_eq!(s.holes(), 1);
        let big = vec![7u8; WINDOW * 2];
        let mut t = Stream::default();
        t.push(Seq(5), &big, big.len() as u32);
        assert_eq!(t.bytes().len(), WINDOW);
        assert!(t.overflow);
    }
}
