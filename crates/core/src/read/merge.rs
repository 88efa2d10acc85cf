//! `--merge`: several files (rotated captures) read as one capture, records interleaved in
//! time order by a k-way merge and renumbered 1, 2, … as mergecap would.

use super::{Batch, CaptureInfo, CaptureReader};
use crate::error::Diagnostics;

/// One input of the merge, with its current batch and cursor.
struct Input {
    reader: CaptureReader,
    batch: Batch,
    pos: usize,
    live: bool,
}

impl Input {
    fn ensure(&mut self) {
        if self.live && self.pos >= self.batch.len() {
            self.live = self.reader.fill(&mut self.batch);
            self.pos = 0;
        }
    }
}

/// Reads one or more captures as one stream.
pub struct MergedReader {
    inputs: Vec<Input>,
    next_record: u64,
}

impl MergedReader {
    /// Merge these readers (one reader passes its records through unchanged).
    pub fn new(readers: Vec<CaptureReader>) -> MergedReader {
        let inputs = readers
            .into_iter()
            .map(|reader| Input {
                reader,
                batch: Batch::default(),
                pos: 0,
                live: true,
            })
            .collect();
        MergedReader {
            inputs,
            next_record: 1,
        }
    }

    /// Fill `out` with the next frames in time order. Returns false at the end.
    pub fn fill(&mut self, out: &mut Batch) -> bool {
        if let [only] = self.inputs.as_mut_slice() {
            return only.reader.fill(out);
        }
        out.clear();
        while out.bytes.len() < Batch::TARGET_BYTES {
            let mut best: Option<(i64, usize)> = None;
            for (k, inp) in self.inputs.iter_mut().enumerate() {
                inp.ensure();
                if inp.live {
                    if let Some(t) = inp.batch.time(inp.pos) {
                        if best.is_none_or(|(bt, _)| t < bt) {
                            best = Some((t, k));
                        }
                    }
                }
            }
            let Some((_, k)) = best else { break };
            let Some(inp) = self.inputs.get_mut(k) else {
                break;
            };
            out.push_from(&inp.batch, inp.pos);
            out.set_record(out.len() - 1, self.next_record);
            self.next_record += 1;
            inp.pos += 1;
        }
        !out.is_empty()
    }

    /// The combined capture facts and warnings.
    pub fn finish(self) -> (CaptureInfo, Diagnostics) {
        let mut merged: Option<CaptureInfo> = None;
        let mut diag = Diagnostics::default();
        for inp in self.inputs {
            let (info, d) = inp.reader.finish();
            for w in d.into_warnings() {
                diag.warn(w.kind, w.packet, w.message);
            }
            merged = Some(match merged {
                None => info,
                Some(mut m) => {
                    m.file = format!("{}, {}", m.file, info.file);
                    for l in info.link_types {
                        if !m.link_types.contains(&l) {
                            m.link_types.push(l);
                        }
                    }
                    m.packets += info.packets;
                    m.bytes += info.bytes;
                    m.first_time = m.first_time.into_iter().chain(info.first_time).min();
                    m.last_time = m.last_time.into_iter().chain(info.last_time).max();
                    m.truncated |= info.truncated;
                    m
                }
            });
        }
        (
            merged.unwrap_or_else(|| CaptureInfo {
                file: String::new(),
                format: super::Format::Pcap,
                link_types: Vec::new(),
                packets: 0,
                bytes: 0,
                first_time: None,
                last_time: None,
                truncated: false,
                compression: None,
            }),
            diag,
        )
    }
}
