//! The frames of an opened Initial packet (RFC 9000 §19): PADDING, PING, ACK, CRYPTO and
//! CONNECTION_CLOSE are all an Initial may carry. CRYPTO data is gathered by offset, since a
//! ClientHello is often split over several frames and packets that arrive out of order, and
//! read once its first handshake message is whole.

use super::wire::varint;

/// Most CRYPTO bytes gathered per connection: a ClientHello with post-quantum key shares is
/// under 3 KB; past this the stream is not a ClientHello worth waiting for.
const MAX_CRYPTO: u64 = 16 * 1024;

/// What one packet's frames said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// A CONNECTION_CLOSE frame: the sender closed the connection in the clear.
    pub close: bool,
    /// A frame that could not be read (the rest of the packet was skipped).
    pub malformed: bool,
}

/// The CRYPTO stream of one sender's Initial packets, gathered by offset.
#[derive(Clone, Debug, Default)]
pub struct CryptoStream {
    bytes: Vec<u8>,
    /// Received ranges, sorted and merged.
    have: Vec<(u64, u64)>,
}

impl CryptoStream {
    /// Add `data` at `offset` (overlaps and repeats are harmless).
    fn add(&mut self, offset: u64, data: &[u8]) -> bool {
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return false;
        };
        if end > MAX_CRYPTO {
            return false;
        }
        if self.bytes.len() < end as usize {
            self.bytes.resize(end as usize, 0);
        }
        self.bytes[offset as usize..end as usize].copy_from_slice(data);
        self.have.push((offset, end));
        self.have.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
        true
    }

    /// The bytes received without a hole from offset 0.
    pub fn contiguous(&self) -> &[u8] {
        match self.have.first() {
            Some(&(0, e)) => &self.bytes[..e as usize],
            _ => &[],
        }
    }

    /// The first handshake message, once whole: its type and the whole message (header
    /// included).
    pub fn first_message(&self) -> Option<(u8, &[u8])> {
        let b = self.contiguous();
        let h = b.get(..4)?;
        let len = 4 + (usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]));
        Some((h[0], b.get(..len)?))
    }

    /// Walk the frames of an opened packet, gathering its CRYPTO data.
    pub fn walk(&mut self, mut f: &[u8]) -> Walked {
        let mut out = Walked::default();
        let bad = |out: &mut Walked| {
            out.malformed = true;
            *out
        };
        while let Some((kind, l)) = varint(f) {
            f = &f[l..];
            match kind {
                // PADDING runs to the packet's end in a client Initial (~1,000 bytes): skip
                // the run at once, not a byte per frame.
                0x00 => f = &f[f.iter().take_while(|&&b| b == 0).count()..],
                0x01 => {} // PING
                0x02 | 0x03 => {
                    // ACK: largest, delay, range count, first range, then (gap, length) pairs.
                    let mut n = 0;
                    for k in 0..4 {
                        let Some((v, l)) = varint(f) else {
                            return bad(&mut out);
                        };
                        f = &f[l..];
                        if k == 2 {
                            n = v;
                        }
                    }
                    let extra = 2 * n + if kind == 0x03 { 3 } else { 0 };
                    for _ in 0..extra.min(f.len() as u64 + 1) {
                        let Some((_, l)) = varint(f) else {
                            return bad(&mut out);
                        };
                        f = &f[l..];
                    }
                }
                0x06 => {
                    let Some((offset, l)) = varint(f) else {
                        return bad(&mut out);
                    };
                    f = &f[l..];
                    let Some((len, l)) = varint(f) else {
                        return bad(&mut out);
                    };
                    f = &f[l..];
                    let Some(data) = usize::try_from(len).ok().and_then(|n| f.get(..n)) else {
                        return bad(&mut out);
                    };
                    if !self.add(offset, data) {
                        out.malformed = true;
                    }
                    f = &f[data.len()..];
                }
                0x1c | 0x1d => {
                    out.close = true;
                    // Error code, (frame type,) reason length, reason: nothing after it matters.
                    return out;
                }
                _ => return bad(&mut out),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_frames_out_of_order_make_one_message() {
        // A handshake message of type 1 and 6 body bytes, sent as two CRYPTO frames, the
        // second first, with PADDING, PING and an ACK around them.
        let msg = [1u8, 0, 0, 6, 10, 11, 12, 13, 14, 15];
        let mut s = CryptoStream::default();
        let mut later = vec![0x01, 0x06, 0x04, 0x06];
        later.extend(&msg[4..]);
        later.extend([0, 0, 0]);
        assert_eq!(s.walk(&later), Walked::default());
        assert_eq!(s.first_message(), None);
        let mut first = vec![0x02, 0x05, 0x00, 0x00, 0x05, 0x06, 0x00, 0x04];
        first.extend(&msg[..4]);
        assert_eq!(s.walk(&first), Walked::default());
        assert_eq!(s.first_message(), Some((1, &msg[..])));
    }

    #[test]
    fn close_and_garbage_frames() {
        let mut s = CryptoStream::default();
        assert!(s.walk(&[0x1c, 0x00, 0x00, 0x00]).close);
        assert!(s.walk(&[0x08, 1, 2, 3]).malformed);
        assert!(
            s.walk(&[0x06, 0x00, 0x10, 1]).malformed,
            "length past the packet"
        );
        // An offset past the cap is not gathered.
        assert!(s.walk(&[0x06, 0x80, 0x01, 0x00, 0x00, 0x01, 7]).malformed);
        // Every prefix of a frame list walks without a panic.
        let list = [
            0x03u8, 0x05, 0x00, 0x01, 0x01, 0x02, 0x03, 0x01, 0x02, 0x03, 0x06, 0x00, 0x02, 9, 9,
        ];
        for n in 0..list.len() {
            let _ = CryptoStream::default().walk(&list[..n]);
        }
    }
}
