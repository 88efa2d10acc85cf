//! Reading many connections by id without a block decoded per lookup: in id order, a batch
//! at a time ([`Connections::map_batched`], [`Connections::get_sorted`],
//! [`Connections::for_ids`]), reading only the blocks that hold a wanted id.

use rayon::prelude::*;

use super::{Block, Connections};
use crate::model::{ConnRecord, Connection};

/// Finds connections by id inside [`Connections::map_batched`].
#[derive(Clone, Copy, Debug)]
pub enum Lookup<'c> {
    /// Every connection, in memory (the id is the position).
    All(&'c [Connection]),
    /// One batch read from the spill: its ids (sorted) and their connections, in that order.
    Batch(&'c [usize], &'c [Connection]),
}

impl<'c> Lookup<'c> {
    /// The connection with id `id`, if the batch holds it.
    pub fn get(&self, id: usize) -> Option<&'c Connection> {
        match *self {
            Lookup::All(all) => all.get(id),
            Lookup::Batch(ids, held) => held.get(ids.binary_search(&id).ok()?),
        }
    }
}

/// The end of the batch of `items` that starts at `from`: as many items as name at most
/// `most` ids between them (at least one item); `ids` is left holding those ids, sorted,
/// without repeats.
fn next_batch<G>(
    items: &[G],
    from: usize,
    most: usize,
    ids_of: &impl Fn(&G, &mut Vec<usize>),
    ids: &mut Vec<usize>,
) -> usize {
    ids.clear();
    let mut to = from;
    while let Some(g) = items.get(to) {
        let before = ids.len();
        ids_of(g, ids);
        if to > from && ids.len() > most {
            ids.truncate(before);
            break;
        }
        to += 1;
    }
    ids.sort_unstable();
    ids.dedup();
    to
}

impl Connections {
    /// `f(item, lookup)` for every item, on every core, in the items' order; `lookup` finds
    /// the connections `ids_of(item)` names. In memory that is every connection. Spilled,
    /// the items go in batches whose connections the budget holds (at least one item), and
    /// each batch's connections are read in one pass over the spill, in id order: a random
    /// [`Connections::get`] per id would decode a whole block each time.
    pub fn map_batched<G: Sync, T: Send>(
        &self,
        items: &[G],
        ids_of: impl Fn(&G, &mut Vec<usize>) + Sync,
        f: impl Fn(&G, &Lookup<'_>) -> T + Sync + Send,
    ) -> Vec<T> {
        if self.on_disk == 0 {
            let all = Lookup::All(&self.mem);
            return items.par_iter().map(|g| f(g, &all)).collect();
        }
        let most = self.cfg.budget / (2 * std::mem::size_of::<Connection>());
        let mut out = Vec::with_capacity(items.len());
        let mut from = 0;
        let mut ids = Vec::new();
        while from < items.len() {
            let to = next_batch(items, from, most, &ids_of, &mut ids);
            let held = self.get_sorted(&ids);
            let batch = Lookup::Batch(&ids, &held);
            let items = items.get(from..to).unwrap_or_default();
            out.par_extend(items.par_iter().map(|g| f(g, &batch)));
            from = to;
        }
        out
    }

    /// `f(item, get)` for every item, on every core, in the items' order, where `get(id)` is
    /// `project` of the connection `id` for the ids `ids_of(item)` names. Like
    /// [`Connections::map_batched`], but a batch holds only each connection's projection:
    /// when `P` is a few of a connection's fields, a batch holds many times more of them
    /// within the budget, and the spill is read that many times less. Nothing is moved out
    /// of the decoded blocks (their buffers are decoded over again).
    pub fn map_projected<G: Sync, P: Send + Sync + Clone, T: Send>(
        &self,
        items: &[G],
        ids_of: impl Fn(&G, &mut Vec<usize>) + Sync,
        project: impl Fn(&Connection) -> P + Sync + Send,
        f: impl Fn(&G, &(dyn Fn(usize) -> Option<P> + Sync)) -> T + Sync + Send,
    ) -> Vec<T> {
        if self.on_disk == 0 {
            let get = |id: usize| self.mem.get(id).map(&project);
            return items.par_iter().map(|g| f(g, &get)).collect();
        }
        // A held projection is its id and its slot, nothing beside (the connections'
        // budget is theirs while the batch is held: the connections themselves are spilled).
        // Twice that, as for whole connections, made the busy capture's runs two batches and
        // read the spill twice (10 GB at 1G: 2.0 -> 1.0 passes).
        let most = self.cfg.budget / (std::mem::size_of::<(usize, Option<P>)>());
        let mut out = Vec::with_capacity(items.len());
        let mut from = 0;
        let mut ids = Vec::new();
        let mut held: Vec<Option<P>> = Vec::new();
        while from < items.len() {
            let to = next_batch(items, from, most, &ids_of, &mut ids);
            held.clear();
            // One slot per id, in the ids' order, projected on every core.
            self.blocks_of(&ids, |wanted, base, block| {
                held.par_extend(
                    wanted
                        .par_iter()
                        .map(|&i| block.get(i - base).map(&project)),
                );
            });
            let get = |id: usize| held.get(ids.binary_search(&id).ok()?)?.clone();
            let items = items.get(from..to).unwrap_or_default();
            out.par_extend(items.par_iter().map(|g| f(g, &get)));
            from = to;
        }
        out
    }

    /// The connections `ids` (sorted, no repeats), in that order: each block that holds one
    /// is read once (a random [`Connections::get`] per id would decode a whole block each
    /// time), and what it read is moved out, not copied.
    pub fn get_sorted(&self, ids: &[usize]) -> Vec<Connection> {
        let mut out = Vec::with_capacity(ids.len());
        self.blocks_of(ids, |wanted, base, block| match block {
            Block::Mem(held) => {
                out.extend(wanted.iter().filter_map(|&i| held.get(i - base)).cloned());
            }
            Block::Read(mut held) => {
                // Only the wanted ones are moved out; the rest stay in the buffer for the
                // next block to be decoded over.
                out.extend(wanted.iter().filter_map(|&i| {
                    let slot = held.get_mut(i - base)?;
                    Some(std::mem::replace(
                        slot,
                        Connection::new(0, ConnRecord::default()),
                    ))
                }));
            }
        });
        out
    }

    /// `f(k, connection)` for each `ids[k]` (sorted, no repeats), in that order, without
    /// copying: each block that holds one is read once.
    pub fn for_ids(&self, ids: &[usize], mut f: impl FnMut(usize, &Connection)) {
        let mut k = 0;
        self.blocks_of(ids, |wanted, base, block| {
            for (j, &i) in wanted.iter().enumerate() {
                if let Some(c) = block.get(i - base) {
                    f(k + j, c);
                }
            }
            k += wanted.len();
        });
    }

    /// `f(wanted, base, block)` for each block (or the in-memory rest, as one) that holds
    /// some of `ids` (sorted, no repeats): the ids it holds, its first id, its connections.
    /// Only those blocks are read.
    fn blocks_of(&self, ids: &[usize], mut f: impl FnMut(&[usize], usize, Block<'_>)) {
        let block = self.cfg.block.max(1);
        let mut rest = ids;
        while let Some(&first) = rest.first() {
            if first >= self.on_disk {
                f(rest, self.on_disk, Block::Mem(&self.mem));
                return;
            }
            let b = first / block;
            let base = b * block;
            let n = rest.partition_point(|&i| i < base + block && i < self.on_disk);
            let (wanted, later) = rest.split_at(n.max(1));
            match self
                .spill
                .as_ref()
                .and_then(|s| Some(s.read(*s.blocks.get(b)?)))
            {
                Some(Ok(held)) => f(wanted, base, Block::Read(held)),
                Some(Err(e)) => self.fail("reading", &e),
                None => {}
            }
            rest = later;
        }
    }
}
