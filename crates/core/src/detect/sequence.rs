//! Sequences: per (client host, service), the connections the client kept (winners and
//! singles) in time order, with their families and backends, and the switches between
//! neighbours. A family switch that also switches backend is what breaks load-balancer
//! stickiness ("random logouts").

use std::collections::{BTreeMap, HashMap};

use crate::domain::Stage;
use crate::model::{Analysis, Connection, Kept, Name, Role, Sequence};

use super::{Context, DetectConfig, Detector, Part, Visitor};

/// Builds `sequences`.
pub struct Sequences;

impl Detector for Sequences {
    fn name(&self) -> &'static str {
        "sequences"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Hosts, Part::Names, Part::Races, Part::Backends]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::Sequences]
    }
    fn visitor(&self, a: &Analysis, _cfg: &DetectConfig) -> Option<Box<dyn Visitor>> {
        Some(Box::new(Pass::new(a)))
    }
}

/// Build the sequences (one per client and service with two or more kept connections).
/// What grows with the capture is one [`Kept`] (24 bytes) per kept connection: the lists the
/// contract shows per connection are derived from it when written.
pub fn detect(a: &mut Analysis) {
    let mut pass = Pass::new(a);
    for block in a.connections.blocks() {
        pass.add(&block);
    }
    pass.finish_into(a);
}

/// The sequences' pass over the connections.
struct Pass {
    /// The backend's number in `backends` (`Bn` is `backends[n - 1]`).
    number: HashMap<String, u32>,
    by: BTreeMap<(usize, Name), Vec<Kept>>,
}

impl Pass {
    fn new(a: &Analysis) -> Pass {
        let number = a
            .backends
            .iter()
            .zip(1u32..)
            .map(|(b, n)| {
                debug_assert_eq!(b.id, format!("B{n}"));
                (b.id.clone(), n)
            })
            .collect();
        Pass {
            number,
            by: BTreeMap::new(),
        }
    }

    /// Kept connections: not an also-ran, and connected (an attempt never answered, a
    /// refusal or a handshake never completed is nothing the client kept).
    fn add(&mut self, block: &[Connection]) {
        for c in block {
            if c.role != Role::AlsoRan && c.rec.stage() >= Stage::Tcp {
                let backend = c.backend.as_deref().and_then(|b| self.number.get(b));
                self.by.entry((c.host, c.service.clone())).or_default().push(Kept {
                    id: c.id,
                    start: c.rec.syn_time.get().unwrap_or(c.rec.first_time),
                    family: c.rec.family(),
                    backend: backend.copied().unwrap_or(0),
                });
            }
        }
    }

    /// `sequences`.
    fn finish_into(self, a: &mut Analysis) {
        let mut out = Vec::new();
        for ((host, service), mut kept) in self.by {
            if kept.len() < 2 {
                continue;
            }
            kept.sort_by_key(|k| (k.start, k.id));
            kept.shrink_to_fit();
            out.push(Sequence::new(a.host_label(host), service, kept));
        }
        a.sequences = out;
    }
}

impl Visitor for Pass {
    fn visit(&mut self, _a: &Analysis, block: &[Connection]) {
        self.add(block);
    }
    fn finish(self: Box<Self>, a: &mut Analysis, _ctx: &mut Context<'_>) {
        self.finish_into(a);
    }
}
