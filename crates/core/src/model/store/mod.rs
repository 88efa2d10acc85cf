//! Where the finished connections live, between the tracker and the renderers: in memory
//! while they fit in the budget, spilled to a temporary file beyond it.
//!
//! The tracker hands each connection over in order of its first record ([`Connections::push`]);
//! ids are positions in that order. While the connections' estimated size stays under
//! [`SpillConfig::budget`] they stay in memory. Past it, every full block of [`BLOCK`]
//! connections is written to an unlinked file in [`SpillConfig::dir`] in the spill's own
//! record format (`codec`) and leaves memory (`spill`). Readers get a block at a time,
//! decoded on every core into a pooled buffer (`block`) while a reader thread decodes the
//! next (`prefetch`). The file disappears with the process, whatever happens to it.
//!
//! Readers see the same connections either way: [`Connections::iter`] and
//! [`Connections::blocks`] in id order, [`Connections::get`] by id; writers change them
//! through [`Connections::update_deferred`] (every connection, applied as each is read: the
//! spill is not rewritten), [`Connections::update`] (every connection, rewritten) and
//! [`Connections::update_ids`] (a few). A spill that fails (disk full, a folder that cannot
//! be written) stops spilling and is reported by [`Connections::failure`]: the analysis ends
//! with that error instead of a report that lacks connections.

mod batch;
mod block;
pub mod codec;
mod prefetch;
mod spill;
#[cfg(test)]
mod tests;

pub use batch::Lookup;
pub use block::{Block, Decoded};

use spill::Spill;

/// A change every connection read from the spill gets as it is decoded
/// ([`Connections::update_deferred`]).
pub type Deferred = Arc<dyn Fn(&mut Connection) + Send + Sync>;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::model::{ConnRecord, Connection};

/// Connections per block of the spill: the unit read, decoded and rewritten at once. A pass
/// decodes a block and then works through it: at 2,048 connections (~0.5 MB of bytes, ~1 MB
/// decoded) both stay in a core's cache between the two, where 16,384 did not (10 GB busy
/// capture at 1G: detection 20.9 -> 15.1 s; 512 was slower again: bench/HISTORY.md).
pub const BLOCK: usize = 2_048;

/// Decoded blocks [`Connections::get`] keeps.
const CACHED_BLOCKS: usize = 4;

/// Where and when connections spill.
#[derive(Clone, Debug)]
pub struct SpillConfig {
    /// Estimated bytes of connections kept in memory before they spill.
    pub budget: usize,
    /// The folder of the spill file (the system's temporary folder by default).
    pub dir: PathBuf,
    /// Connections per block ([`BLOCK`]; tests make it small to spill small captures).
    pub block: usize,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            budget: usize::MAX,
            dir: std::env::temp_dir(),
            block: BLOCK,
        }
    }
}

impl SpillConfig {
    /// The connections' share of a whole process's memory limit: a fifth (the rest is the
    /// reader's batches, the trackers' tables, the DNS table and the detectors' and writers'
    /// working sets, which grow with the connections held in memory when they fit).
    pub fn for_limit(limit: usize, dir: PathBuf) -> SpillConfig {
        SpillConfig {
            budget: limit / 5,
            dir,
            block: BLOCK,
        }
    }
}

/// Estimated bytes a connection holds in memory: its struct and what it owns.
fn footprint(c: &Connection) -> usize {
    let app = c.rec.app.as_ref().map_or(0, |a| {
        let tls = a.tls.as_ref().map_or(0, |t| {
            t.sni.as_ref().map_or(0, String::capacity)
                + t.alpn.iter().map(|s| s.capacity() + 24).sum::<usize>()
                + t.offered_versions.capacity() * 16
        });
        let req = a.request.as_ref().map_or(0, |r| {
            r.method.capacity() + r.target.capacity() + r.host.as_ref().map_or(0, String::capacity)
        });
        std::mem::size_of::<crate::app::AppFacts>() + tls + req
    });
    let stale = c.rec.stale.as_ref().map_or(0, |_| {
        std::mem::size_of::<crate::model::record::StaleFacts>() + 32
    });
    std::mem::size_of::<Connection>() + c.rec.ts_samples.capacity() * 16 + app + stale
}

/// The finished connections, in id order: in memory, or spilled past the budget.
#[derive(Debug)]
pub struct Connections {
    /// The connections not spilled (all of them while the budget holds; beyond it, the
    /// block being filled).
    mem: Vec<Connection>,
    /// Estimated bytes of `mem`.
    mem_bytes: usize,
    /// The spill, once the budget was passed.
    spill: Option<Spill>,
    /// Connections in all.
    len: usize,
    /// The earliest first packet among them (kept as they come: no pass over the spill).
    first_time: Option<crate::domain::Nanos>,
    /// Connections in the spill file (the first ones).
    on_disk: usize,
    /// Connections that carry stale-reuse facts (counted as they come: a capture without any
    /// needs no pass to find that out).
    with_stale: usize,
    cfg: SpillConfig,
    /// The first I/O error of the spill (nothing spills after it).
    failure: Arc<Mutex<Option<String>>>,
    /// The last blocks [`Connections::get`] decoded, most recent last (at most
    /// [`CACHED_BLOCKS`]: a parallel walk in id order reads a few places at once).
    cached: Mutex<Vec<(usize, Arc<Vec<Connection>>)>>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections::new(SpillConfig::default())
    }
}

impl Clone for Connections {
    /// A copy in memory (tests, small analyses): a spilled store is read back whole.
    fn clone(&self) -> Self {
        Connections::from(self.to_vec())
    }
}

impl From<Vec<Connection>> for Connections {
    fn from(mem: Vec<Connection>) -> Self {
        Connections {
            len: mem.len(),
            first_time: mem.iter().map(|c| c.rec.first_time).min(),
            with_stale: mem.iter().filter(|c| c.rec.stale.is_some()).count(),
            mem,
            ..Connections::default()
        }
    }
}

impl Connections {
    /// An empty store.
    pub fn new(cfg: SpillConfig) -> Connections {
        Connections {
            mem: Vec::new(),
            mem_bytes: 0,
            spill: None,
            len: 0,
            first_time: None,
            on_disk: 0,
            with_stale: 0,
            cfg,
            failure: Arc::default(),
            cached: Mutex::new(Vec::new()),
        }
    }

    /// Connections in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No connection.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The earliest first packet among the connections (`None` when there is none).
    pub fn first_time(&self) -> Option<crate::domain::Nanos> {
        self.first_time
    }

    fn note_first_time(&mut self, c: &Connection) {
        let t = c.rec.first_time;
        self.first_time = Some(self.first_time.map_or(t, |f| f.min(t)));
    }

    /// Connections that carry stale-reuse facts (a request on a reused connection, from the
    /// tracker).
    pub fn with_stale(&self) -> usize {
        self.with_stale
    }

    /// Some connections live in the spill file.
    pub fn spilled(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| !s.blocks.is_empty())
    }

    /// The estimated bytes of connections kept in memory before they spill.
    pub fn budget(&self) -> usize {
        self.cfg.budget
    }

    /// Connections in the spill file.
    pub fn spilled_count(&self) -> usize {
        self.on_disk
    }

    /// Connections decoded from the spill so far (a pass over it reads every spilled one).
    pub fn read_back(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| {
            s.read_back.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Bytes written to the spill file (rewrites included).
    pub fn spill_bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.end)
    }

    /// Why the spill failed, if it did: the analysis must not be presented as complete.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn fail(&self, what: &str, e: &std::io::Error) {
        record_failure(&self.failure, &self.cfg.dir, what, e);
    }

    /// Add the next connection (its id is its position).
    pub fn push(&mut self, rec: ConnRecord) {
        let mut c = Connection::new(self.len, rec);
        for f in self.spill.iter().flat_map(|s| &s.pending) {
            f(&mut c);
        }
        self.len += 1;
        if self.mem.len() == self.mem.capacity() {
            // Doubling: above the allocator's mmap threshold a reallocation moves the
            // mapping, it copies nothing (see `prefer_huge_pages_growing`).
            let more = self.mem.capacity().max(1 << 14);
            self.mem.reserve(more);
            crate::engine::memory::prefer_huge_pages_growing(&mut self.mem);
        }
        self.mem_bytes += footprint(&c);
        self.note_first_time(&c);
        self.with_stale += usize::from(c.rec.stale.is_some());
        self.mem.push(c);
        // Once the connections have not fit, every full block goes (the capture is larger
        // than the budget: keeping its newest ones in memory would only raise the peak).
        let over = self.mem_bytes > self.cfg.budget
            || (self.spill.is_some() && self.mem.len() >= self.cfg.block.max(1));
        if over && self.failure().is_none() {
            self.spill_full_blocks();
        }
    }

    /// Move every full block of `mem` to the spill file.
    fn spill_full_blocks(&mut self) {
        if self.spill.is_none() {
            match Spill::create(&self.cfg.dir) {
                Ok(s) => self.spill = Some(s),
                Err(e) => return self.fail("creating the file", &e),
            }
        }
        let block = self.cfg.block.max(1);
        let full = self.mem.len() / block * block;
        if full == 0 {
            return;
        }
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        let mut written = 0;
        let mut error = None;
        for chunk in self.mem.get(..full).unwrap_or_default().chunks(block) {
            match spill.append(chunk) {
                Ok(e) => {
                    spill.blocks.push(e);
                    written += chunk.len();
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = error {
            self.fail("writing", &e);
        }
        self.mem.drain(..written);
        // The list that held the budget's worth goes back to the system.
        self.mem.shrink_to(self.cfg.block.max(1));
        self.on_disk += written;
        self.mem_bytes = self.mem.iter().map(footprint).sum();
    }

    /// The blocks in id order: borrowed from memory, or decoded from the spill.
    pub fn blocks(&self) -> impl Iterator<Item = Block<'_>> + '_ {
        let disk = self.spill.iter().flat_map(Spill::read_all).map(move |r| {
            Block::Read(r.unwrap_or_else(|err| {
                self.fail("reading", &err);
                Decoded::default()
            }))
        });
        disk.chain(self.mem.chunks(self.cfg.block.max(1)).map(Block::Mem))
    }

    /// `f` of every connection by reference, in id order: a spilled block is decoded once and
    /// nothing is moved out of it ([`Connections::iter`] moves each decoded connection, some
    /// 400 bytes, through its items: measured as the largest share of a spilled pass).
    pub fn for_each(&self, mut f: impl FnMut(&Connection)) {
        for block in self.blocks() {
            block.iter().for_each(&mut f);
        }
    }

    /// How many connections `pred` holds for, counted on every core.
    pub fn count(&self, pred: impl Fn(&Connection) -> bool + Sync + Send) -> usize {
        self.blocks()
            .map(|b| b.par_iter().filter(|c| pred(c)).count())
            .sum()
    }

    /// Every connection in id order (borrowed from memory, or decoded from the spill). Each
    /// decoded connection is moved out of its block: a pass that only reads should use
    /// [`Connections::for_each`].
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, Connection>> + '_ {
        self.blocks()
            .flat_map(|b| -> Box<dyn Iterator<Item = Cow<'_, Connection>>> {
                match b {
                    Block::Mem(s) => Box::new(s.iter().map(Cow::Borrowed)),
                    Block::Read(v) => Box::new(v.into_vec().into_iter().map(Cow::Owned)),
                }
            })
    }

    /// `f` of every connection, on every core, in id order (`None`s left out).
    pub fn par_filter_map<T: Send>(
        &self,
        f: impl Fn(&Connection) -> Option<T> + Sync + Send,
    ) -> Vec<T> {
        // Room for every connection at once: a list grown by doubling held its old and new
        // buffers together at each step (a 20 M-SYN flood's 24-byte SYN list peaked at three
        // times its size). The pages are touched only as they fill, and the rest is given
        // back at the end.
        let mut out = Vec::with_capacity(self.len());
        if let Some(s) = &self.spill {
            for block in s.read_all() {
                match block {
                    Ok(block) => out.par_extend(block.par_iter().filter_map(&f)),
                    Err(err) => self.fail("reading", &err),
                }
            }
        }
        out.par_extend(self.mem.par_iter().filter_map(&f));
        out.shrink_to_fit();
        out
    }

    /// The connection with id `id`.
    pub fn get(&self, id: usize) -> Option<Cow<'_, Connection>> {
        let spilled = self.on_disk;
        if id >= spilled {
            return self.mem.get(id - spilled).map(Cow::Borrowed);
        }
        let block = self.cfg.block.max(1);
        let (b, at) = (id / block, id % block);
        let mut cached = self.cached.lock().ok()?;
        let hit = match cached.iter().position(|(k, _)| *k == b) {
            Some(i) => cached.remove(i).1,
            None => {
                let spill = self.spill.as_ref()?;
                match spill.read(*spill.blocks.get(b)?) {
                    Ok(v) => Arc::new(v.into_vec()),
                    Err(e) => {
                        self.fail("reading", &e);
                        return None;
                    }
                }
            }
        };
        if cached.len() >= CACHED_BLOCKS {
            cached.remove(0);
        }
        cached.push((b, Arc::clone(&hit)));
        drop(cached);
        hit.get(at).cloned().map(Cow::Owned)
    }

    /// Every connection, copied into memory.
    pub fn to_vec(&self) -> Vec<Connection> {
        self.iter().map(Cow::into_owned).collect()
    }

    /// Change every connection with `f`, on every core.
    pub fn update(&mut self, f: impl Fn(&mut Connection) + Sync + Send) {
        self.update_blocks(|block| block.par_iter_mut().for_each(&f));
    }

    /// Change every connection with `f` without rewriting the spill: `f` is kept and applied
    /// to each spilled connection whenever it is read (on every core), until a rewrite
    /// writes it in. `f` must give the same result applied twice (it sets fields from
    /// others it does not change), and what it owns stays in memory: keep it to a few bytes
    /// a connection.
    pub fn update_deferred(&mut self, f: impl Fn(&mut Connection) + Send + Sync + 'static) {
        self.mem.par_iter_mut().for_each(&f);
        self.invalidate();
        if let Some(s) = self.spill.as_mut() {
            s.pending.push(Arc::new(f));
        }
    }

    /// Change the connections a block at a time, in id order (in memory: all of them at
    /// once), with `f`.
    pub fn update_blocks(&mut self, mut f: impl FnMut(&mut [Connection])) {
        self.rewrite(&mut f);
        f(&mut self.mem);
    }

    /// Change the connections `ids` (any order, repeats allowed) with `f`.
    pub fn update_ids(&mut self, ids: &[usize], mut f: impl FnMut(&mut Connection)) {
        let spilled = self.on_disk;
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let split = sorted.partition_point(|&i| i < spilled);
        let (disk, mem) = sorted.split_at(split);
        for &i in mem {
            if let Some(c) = self.mem.get_mut(i - spilled) {
                f(c);
            }
        }
        if disk.is_empty() {
            return;
        }
        let block = self.cfg.block.max(1);
        let mut by_block: Vec<(usize, Vec<usize>)> = Vec::new();
        for &i in disk {
            match by_block.last_mut() {
                Some((b, v)) if *b == i / block => v.push(i % block),
                _ => by_block.push((i / block, vec![i % block])),
            }
        }
        self.invalidate();
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        for (b, ats) in by_block {
            let Some(&e) = spill.blocks.get(b) else {
                continue;
            };
            let result = spill.read(e).and_then(|mut block| {
                for at in ats {
                    if let Some(c) = block.get_mut(at) {
                        f(c);
                    }
                }
                spill.append(&block)
            });
            match result {
                Ok(new) => {
                    if let Some(slot) = spill.blocks.get_mut(b) {
                        *slot = new;
                    }
                }
                Err(err) => {
                    return record_failure(&self.failure, &self.cfg.dir, "rewriting", &err);
                }
            }
        }
    }

    /// Keep the connections `keep` says yes to, renumbered in order (ids stay positions);
    /// returns the old id → new id map (`None`: dropped).
    pub fn retain(&mut self, keep: impl Fn(&Connection) -> bool) -> Vec<Option<usize>> {
        let mut map = vec![None; self.len];
        let mut kept = Connections::new(self.cfg.clone());
        for c in self.iter() {
            if keep(&c) {
                if let Some(slot) = map.get_mut(c.id) {
                    *slot = Some(kept.len);
                }
                let mut c = c.into_owned();
                c.id = kept.len;
                kept.len += 1;
                kept.mem_bytes += footprint(&c);
                kept.note_first_time(&c);
                kept.with_stale += usize::from(c.rec.stale.is_some());
                kept.mem.push(c);
                if kept.mem_bytes > kept.cfg.budget {
                    kept.spill_full_blocks();
                }
            }
        }
        if let Some(f) = self.failure() {
            if let Ok(mut k) = kept.failure.lock() {
                *k = Some(f);
            }
        }
        *self = kept;
        map
    }

    /// Rewrite every spilled block with `f`.
    fn rewrite(&mut self, mut f: impl FnMut(&mut [Connection])) {
        self.invalidate();
        let Some(old) = self.spill.take() else {
            return;
        };
        if old.blocks.is_empty() {
            self.spill = Some(old);
            return;
        }
        let result = Spill::create(&self.cfg.dir).and_then(|mut new| {
            for block in old.read_all() {
                let mut block = block?;
                f(&mut block[..]);
                let extent = new.append(&block)?;
                new.blocks.push(extent);
            }
            Ok(new)
        });
        match result {
            Ok(new) => self.spill = Some(new),
            Err(e) => {
                self.fail("rewriting", &e);
                self.spill = Some(old);
            }
        }
    }

    fn invalidate(&self) {
        if let Ok(mut c) = self.cached.lock() {
            c.clear();
        }
    }

    /// Where the spill file was created (for messages).
    pub fn spill_path(&self) -> Option<&std::path::Path> {
        self.spill.as_ref().map(|s| s.path.as_path())
    }
}

fn record_failure(
    failure: &Mutex<Option<String>>,
    dir: &std::path::Path,
    what: &str,
    e: &std::io::Error,
) {
    if let Ok(mut f) = failure.lock() {
        if f.is_none() {
            *f = Some(format!("spill to {} failed ({what}): {e}", dir.display()));
        }
    }
}
