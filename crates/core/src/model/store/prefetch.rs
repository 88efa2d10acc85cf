//! The spilled blocks of a pass, each decoded while the pass works on the one before.
//!
//! A pass is a loop over blocks: decode a block (on every core), then hand it to the
//! detector, which often works on one core. Decoding the next block on a thread of its own
//! meanwhile keeps both cores busy through the detector's part too. At most three blocks are
//! decoded at once (the detector's, the channel's one and the one the reader holds until the
//! channel has room), about a megabyte each; the buffer pool keeps three.

use std::fs::File;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use super::spill::{read_at, Extent, Spill};
use super::{Decoded, Deferred};

/// The blocks of a spill in order, decoded one ahead.
pub struct Prefetch {
    rx: Option<Receiver<std::io::Result<Decoded>>>,
    worker: Option<JoinHandle<()>>,
}

impl Prefetch {
    /// Start decoding `spill`'s blocks. When a thread cannot be had (or the file cannot be
    /// opened twice), `None`: the caller reads the blocks itself.
    pub fn start(spill: &Spill) -> Option<Prefetch> {
        let file: File = spill.file.try_clone().ok()?;
        let extents: Vec<Extent> = spill.blocks.clone();
        let pending: Vec<Deferred> = spill.pending.clone();
        let read_back = spill.read_back.clone();
        let (tx, rx) = sync_channel(1);
        let worker = std::thread::Builder::new()
            .name("racetrace-spill-read".into())
            .spawn(move || {
                for e in extents {
                    let block = read_at(&file, e, &pending, &read_back);
                    let failed = block.is_err();
                    // The pass stopped early (it found what it wanted): nothing more to read.
                    if tx.send(block).is_err() || failed {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Prefetch {
            rx: Some(rx),
            worker: Some(worker),
        })
    }
}

impl Iterator for Prefetch {
    type Item = std::io::Result<Decoded>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // The worker's next send fails and it ends; at most the block it is decoding is lost.
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
