//! Sequences: per (client host, service), the connections the client kept (winners and
//! singles) in time order, with their families and backends, and the switches between
//! neighbours. A family switch that also switches backend is what breaks load-balancer
//! stickiness ("random logouts").

use std::collections::BTreeMap;

use crate::domain::{ms_between, Stage};
use crate::model::{Analysis, Name, Role, Sequence, Switch};

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

/// What a sequence needs of one kept connection (read once, in the one pass over the
/// connections: looking each up again would read the spill a block per connection).
struct Kept {
    id: usize,
    start: crate::domain::Nanos,
    family: crate::domain::Family,
    backend: Option<Name>,
}

/// Build the sequences (one per client and service with two or more kept connections).
pub fn detect(a: &mut Analysis) {
    let mut by: BTreeMap<(usize, Name), Vec<Kept>> = BTreeMap::new();
    // Kept connections: not an also-ran, and connected (an attempt never answered, a refusal
    // or a handshake never completed is nothing the client kept).
    for c in a.connections.iter() {
        if c.role != Role::AlsoRan && c.rec.stage() >= Stage::Tcp {
            by.entry((c.host, c.service.clone())).or_default().push(Kept {
                id: c.id,
                start: c.rec.syn_time.get().unwrap_or(c.rec.first_time),
                family: c.rec.family(),
                backend: c.backend.clone(),
            });
        }
    }
    let mut out = Vec::new();
    for ((host, service), mut conns) in by {
        if conns.len() < 2 {
            continue;
        }
        conns.sort_by_key(|k| (k.start, k.id));
        let ids: Vec<usize> = conns.iter().map(|k| k.id).collect();
        let families: Vec<_> = conns.iter().map(|k| k.family).collect();
        let backends: Vec<Option<Name>> = conns.iter().map(|k| k.backend.clone()).collect();
        let switches: Vec<Switch> = conns
            .windows(2)
            .filter_map(|w| match w {
                [x, y] => Some(Switch {
                    from: x.id,
                    to: y.id,
                    gap_ms: ms_between(x.start, y.start),
                    family_switch: x.family != y.family,
                    backend_switch: x
                        .backend
                        .as_ref()
                        .zip(y.backend.as_ref())
                        .map(|(p, q)| p != q),
                }),
                _ => None,
            })
            .collect();
        // Backend switches: adjacent pairs among the connections with a known backend.
        let known: Vec<&Name> = backends.iter().flatten().collect();
        let backend_switches = known.windows(2).filter(|w| w[0] != w[1]).count();
        // "6B1 4B2 4?": family digit and backend id (or ?) per connection.
        let mut strip = String::with_capacity(4 * families.len());
        for (i, (f, b)) in families.iter().zip(&backends).enumerate() {
            if i > 0 {
                strip.push(' ');
            }
            strip.push(f.digit());
            strip.push_str(b.as_deref().unwrap_or("?"));
        }
        out.push(Sequence {
            client: a.host_label(host),
            service,
            connections: ids,
            families,
            family_switches: switches.iter().filter(|s| s.family_switch).count(),
            backend_switches,
            family_and_backend_switches: switches
                .iter()
                .filter(|s| s.family_switch && s.backend_switch == Some(true))
                .count(),
            backends,
            switches,
            strip,
        });
    }
    a.sequences = out;
}
