//! Sequences: per (client host, service), the connections the client kept (winners and
//! singles) in time order, with their families and backends, and the switches between
//! neighbours. A family switch that also switches backend is what breaks load-balancer
//! stickiness ("random logouts").

use std::collections::{BTreeMap, HashMap};

use crate::domain::Stage;
use crate::model::{Analysis, Kept, Name, Role, Sequence};

use super::{Context, Detector, Part};

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
    fn run(&self, a: &mut Analysis, _ctx: &mut Context<'_>) {
        detect(a);
    }
}

/// Build the sequences (one per client and service with two or more kept connections).
/// What grows with the capture is one [`Kept`] (24 bytes) per kept connection: the lists the
/// contract shows per connection are derived from it when written.
pub fn detect(a: &mut Analysis) {
    // The backend's number in `backends` (`Bn` is `backends[n - 1]`).
    let number: HashMap<&str, u32> = a
        .backends
        .iter()
        .zip(1u32..)
        .map(|(b, n)| {
            debug_assert_eq!(b.id, format!("B{n}"));
            (b.id.as_str(), n)
        })
        .collect();
    let mut by: BTreeMap<(usize, Name), Vec<Kept>> = BTreeMap::new();
    // Kept connections: not an also-ran, and connected (an attempt never answered, a refusal
    // or a handshake never completed is nothing the client kept).
    a.connections.for_each(|c| {
        if c.role != Role::AlsoRan && c.rec.stage() >= Stage::Tcp {
            by.entry((c.host, c.service.clone())).or_default().push(Kept {
                id: c.id,
                start: c.rec.syn_time.get().unwrap_or(c.rec.first_time),
                family: c.rec.family(),
                backend: c.backend.as_deref().and_then(|b| number.get(b)).copied().unwrap_or(0),
            });
        }
    });
    let mut out = Vec::new();
    for ((host, service), mut kept) in by {
        if kept.len() < 2 {
            continue;
        }
        kept.sort_by_key(|k| (k.start, k.id));
        kept.shrink_to_fit();
        out.push(Sequence::new(a.host_label(host), service, kept));
    }
    a.sequences = out;
}
