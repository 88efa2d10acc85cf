//! Sequences: per (client host, service), the connections the client kept (winners and
//! singles) in time order, with their families and backends, and the switches between
//! neighbours. A family switch that also switches backend is what breaks load-balancer
//! stickiness ("random logouts").

use crate::domain::{ms_between, Nanos};
use crate::model::{Analysis, Connection, Name, Role, Sequence, Switch};

/// One kept connection, as the sequences sort it: client host, service, start, id.
type Kept<'a> = (usize, &'a str, Nanos, usize);

/// Build the sequences (one per client and service with two or more kept connections), in
/// order of client host and service name.
pub fn detect(a: &mut Analysis) {
    use rayon::prelude::*;
    // Sorted on every core into groups, each in time order (what a map from (host, service)
    // to ids gave on one core, with a map entry and a name clone per connection).
    let mut kept: Vec<Kept<'_>> = a
        .connections
        .par_iter()
        .filter(|c| c.role != Role::AlsoRan)
        .map(|c| (c.host, &*c.service, start(c), c.id))
        .collect();
    kept.par_sort_unstable();
    let groups: Vec<&[Kept<'_>]> = kept
        .chunk_by(|x, y| (x.0, x.1) == (y.0, y.1))
        .filter(|g| g.len() >= 2)
        .collect();
    let sequences = groups.par_iter().filter_map(|g| sequence(a, g)).collect();
    a.sequences = sequences;
}

/// When a connection started: its first SYN, or its first packet.
fn start(c: &Connection) -> Nanos {
    c.rec.syn_time.get().unwrap_or(c.rec.first_time)
}

/// The sequence of one group of kept connections (one client host, one service, in time
/// order).
fn sequence(a: &Analysis, group: &[Kept<'_>]) -> Option<Sequence> {
    let &(host, ..) = group.first()?;
    let ids: Vec<usize> = group.iter().map(|k| k.3).collect();
    let conns: Vec<_> = ids.iter().filter_map(|&i| a.connections.get(i)).collect();
    let families: Vec<_> = conns.iter().map(|c| c.rec.family()).collect();
    let backends: Vec<Option<Name>> = conns.iter().map(|c| c.backend.clone()).collect();
    let switches: Vec<Switch> = conns
        .windows(2)
        .filter_map(|w| match w {
            [x, y] => Some(Switch {
                from: x.id,
                to: y.id,
                gap_ms: ms_between(start(x), start(y)),
                family_switch: x.rec.family() != y.rec.family(),
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
    let service = conns.first().map(|c| c.service.clone())?;
    Some(Sequence {
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
    })
}
