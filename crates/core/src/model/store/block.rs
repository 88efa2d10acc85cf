//! A block of connections as a pass sees it: borrowed from memory, or decoded from the spill
//! on every core into a buffer that is used again by the next block.
//!
//! A spilled pass is a decode of every block. Measured on a 5 M-SYN flood (`perf`, 25 passes),
//! the time went to moving each ~400-byte decoded connection, to faulting in a fresh
//! megabytes-long buffer per block, and to the decode itself on one core. So the records of a
//! block are found by their length prefixes and decoded in parallel straight into place, and
//! the buffer of a dropped block goes back to a small pool instead of to the system.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::{codec, Deferred};
use crate::model::{ConnRecord, Connection};

/// Emptied block buffers kept for the next reads: a sequential pass holds one block and the
/// next, [`super::Connections::map_batched`] a few more.
const POOLED: usize = 3;

static POOL: Mutex<Vec<Vec<Connection>>> = Mutex::new(Vec::new());

/// The connections of one block: borrowed from memory, or decoded from the spill (its buffer
/// goes back to the pool when dropped).
#[derive(Debug)]
pub enum Block<'a> {
    /// In memory.
    Mem(&'a [Connection]),
    /// Decoded from the spill.
    Read(Decoded),
}

impl Deref for Block<'_> {
    type Target = [Connection];
    fn deref(&self) -> &[Connection] {
        match self {
            Block::Mem(s) => s,
            Block::Read(d) => d,
        }
    }
}

/// A block decoded from the spill, in a pooled buffer.
#[derive(Debug, Default)]
pub struct Decoded(Vec<Connection>);

impl Decoded {
    /// The connections, moved out (the buffer stays for the pool).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Connection> {
        self.0.drain(..)
    }

    /// The connections as an owned list (the buffer leaves the pool).
    pub fn into_vec(mut self) -> Vec<Connection> {
        std::mem::take(&mut self.0)
    }
}

impl Deref for Decoded {
    type Target = Vec<Connection>;
    fn deref(&self) -> &Vec<Connection> {
        &self.0
    }
}

impl DerefMut for Decoded {
    fn deref_mut(&mut self) -> &mut Vec<Connection> {
        &mut self.0
    }
}

impl Drop for Decoded {
    /// The buffer goes back to the pool with its connections in it: the next block is decoded
    /// over them, reusing what they own.
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 {
            return;
        }
        if let Ok(mut pool) = POOL.lock() {
            if pool.len() < POOLED {
                pool.push(v);
            }
        }
    }
}

/// A buffer of `count` connections to decode over: a pooled one when there is one (its
/// connections, whatever they were, are overwritten).
fn buffer(count: usize) -> Vec<Connection> {
    let pooled = POOL.lock().ok().and_then(|mut p| p.pop());
    let mut v = pooled.unwrap_or_default();
    v.truncate(count);
    if v.capacity() < count {
        v.reserve_exact(count - v.len());
        // Faulted 512 pages at once where the system allows.
        crate::engine::memory::prefer_huge_pages(&mut v);
    }
    v.resize_with(count, || Connection::new(0, ConnRecord::default()));
    v
}

/// The connections of one block's bytes, `count` of them, decoded on every core, each with
/// the `pending` changes applied.
pub fn decode(bytes: &[u8], count: usize, pending: &[Deferred]) -> std::io::Result<Decoded> {
    let damaged = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a spilled block does not read back",
        )
    };
    // Where each record starts: a walk over the length prefixes only.
    let mut starts = Vec::with_capacity(count);
    let mut at = 0usize;
    while at < bytes.len() {
        starts.push(at);
        let len = bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or_else(damaged)?;
        at += 4 + u32::from_le_bytes(len) as usize;
    }
    if at != bytes.len() {
        return Err(damaged());
    }
    let bad = AtomicBool::new(false);
    let mut out = Decoded(buffer(starts.len()));
    // Each record decoded over its slot, on every core.
    out.0
        .par_iter_mut()
        .zip(starts.par_iter())
        .for_each(
            |(c, &s)| match bytes.get(s..).and_then(|b| codec::decode_into(b, c)) {
                Some(_) => pending.iter().for_each(|f| f(c)),
                None => bad.store(true, Ordering::Relaxed),
            },
        );
    if bad.load(Ordering::Relaxed) {
        return Err(damaged());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(n: usize) -> Vec<Connection> {
        (0..n)
            .map(|i| {
                let rec = ConnRecord {
                    first_time: i as i64 * 1_000,
                    syn_count: i as u32,
                    ..ConnRecord::default()
                };
                Connection::new(i, rec)
            })
            .collect()
    }

    #[test]
    fn a_block_reads_back_in_order_and_reuses_its_buffer() {
        let all = conns(5_000);
        let bytes = super::super::spill::encode_block(&all).concat();
        let first = decode(&bytes, all.len(), &[]).expect("reads back");
        assert_eq!(first.len(), 5_000);
        for (a, b) in first.iter().zip(&all) {
            assert_eq!(
                (a.id, a.rec.first_time, a.rec.syn_count),
                (b.id, b.rec.first_time, b.rec.syn_count)
            );
        }
        drop(first);
        // The second read fills a pooled buffer: nothing the first left in it remains.
        let half = super::super::spill::encode_block(all.get(..2_500).unwrap_or_default()).concat();
        let again = decode(&half, 2_500, &[]).expect("reads back");
        assert_eq!(again.len(), 2_500);
        assert_eq!(again.last().map(|c| c.id), Some(2_499));
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let all = conns(300);
        let bytes = super::super::spill::encode_block(&all).concat();
        for cut in [1, 3, 4, 50, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                decode(bytes.get(..cut).unwrap_or_default(), 300, &[]).is_err(),
                "cut {cut}"
            );
        }
        let mut flipped = bytes.clone();
        if let Some(b) = flipped.get_mut(9) {
            *b ^= 0xff;
        }
        // A flipped byte either fails to decode or decodes to something else; never a panic.
        let _ = decode(&flipped, 300, &[]);
    }
}
