//! The spill file: blocks of encoded connections appended to an unlinked file, read back
//! (decoded on every core, one block ahead) with the deferred changes applied.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use super::{block, codec, prefetch, Decoded, Deferred};
use crate::model::Connection;

/// One block on disk.
#[derive(Clone, Copy, Debug)]
pub(super) struct Extent {
    pub(super) offset: u64,
    pub(super) len: usize,
    pub(super) count: usize,
}

/// The spill file and its blocks, in id order.
pub(super) struct Spill {
    pub(super) file: File,
    /// Bytes written so far (the next block's offset).
    pub(super) end: u64,
    pub(super) blocks: Vec<Extent>,
    /// Where it is, for messages.
    pub(super) path: PathBuf,
    /// Changes applied to each connection as it is read, in order.
    pub(super) pending: Vec<Deferred>,
    /// Connections decoded from it so far (for `--stats`: passes made over it).
    pub(super) read_back: Arc<AtomicU64>,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("path", &self.path)
            .field("end", &self.end)
            .field("blocks", &self.blocks.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Spill {
    pub(super) fn create(dir: &std::path::Path) -> std::io::Result<Spill> {
        use std::sync::atomic::AtomicUsize;
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".racetrace-spill-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Unlinked at once: the space goes back when the process ends, however it ends.
        std::fs::remove_file(&path)?;
        Ok(Spill {
            file,
            end: 0,
            blocks: Vec::new(),
            path,
            pending: Vec::new(),
            read_back: Arc::default(),
        })
    }

    pub(super) fn append(&mut self, conns: &[Connection]) -> std::io::Result<Extent> {
        let mut len = 0;
        for part in encode_block(conns) {
            (&self.file).write_all(&part)?;
            len += part.len();
        }
        let e = Extent {
            offset: self.end,
            len,
            count: conns.len(),
        };
        self.end += len as u64;
        Ok(e)
    }

    pub(super) fn read(&self, e: Extent) -> std::io::Result<Decoded> {
        read_at(&self.file, e, &self.pending, &self.read_back)
    }

    /// Every block in order: decoded one ahead on a thread of its own when there are several.
    pub(super) fn read_all(&self) -> Box<dyn Iterator<Item = std::io::Result<Decoded>> + '_> {
        if self.blocks.len() > 1 {
            if let Some(p) = prefetch::Prefetch::start(self) {
                return Box::new(p);
            }
        }
        Box::new(self.blocks.iter().map(|&e| self.read(e)))
    }
}

/// The block `e` of the spill `file`, decoded, with the `pending` changes applied.
pub(super) fn read_at(
    file: &File,
    e: Extent,
    pending: &[Deferred],
    read_back: &AtomicU64,
) -> std::io::Result<Decoded> {
    thread_local! {
        /// The last block's bytes, kept for the next read (each pass reads every block: a
        /// fresh buffer per read was a fresh zeroed allocation each time).
        static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BYTES.with_borrow_mut(|bytes| {
        bytes.resize(e.len, 0);
        file.read_exact_at(bytes, e.offset)?;
        read_back.fetch_add(e.count as u64, Ordering::Relaxed);
        block::decode(bytes, e.count, pending)
    })
}

/// Connections encoded by one core at a time when a block is written (a quarter of a block:
/// every core gets a share).
const ENCODED_TOGETHER: usize = 512;

/// The bytes of a block, in parts encoded on every core (written one after the other).
pub(super) fn encode_block(conns: &[Connection]) -> Vec<Vec<u8>> {
    conns
        .par_chunks(ENCODED_TOGETHER)
        .map(|chunk| {
            let mut bytes = Vec::with_capacity(chunk.len() * 128);
            for c in chunk {
                codec::encode(c, &mut bytes);
            }
            bytes
        })
        .collect()
}
