//! What the report's connection list leaves out (`--connections`). A flood or a scan is
//! millions of one-packet connections that its `floods[]` or `scans[]` entry already
//! summarises; a CI job may want only the connections its findings cite. Whatever the choice,
//! every connection that a race, sequence, backend or stale reuse refers to stays, ids stay
//! those of the whole analysis, and `summary.connections_omitted` says how many were left out.

use crate::error::Warning;
use crate::model::{Analysis, Reason};

/// Which connections the report lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// Every connection, unless floods and scans are most of the capture (at least half of
    /// its connections, and [`AUTO_MIN`] or more): those are then left to their summaries,
    /// with a warning saying so.
    #[default]
    Auto,
    /// Every connection.
    All,
    /// The connections findings cite, and the short-lived ones nothing explains or that are
    /// health checks.
    Findings,
    /// Only the connections findings cite.
    None,
}

/// Flood and scan connections from which `auto` summarises them.
pub const AUTO_MIN: usize = 10_000;

/// Mark what the report leaves out.
pub fn apply(a: &mut Analysis, keep: Keep) {
    let cited = cited(a);
    let swamped = a
        .connections
        .count(|c| matches!(c.reason, Some(Reason::Flood | Reason::Scan)));
    let auto_summarises = swamped >= AUTO_MIN && 2 * swamped >= a.connections.len();
    let omitted = std::sync::atomic::AtomicUsize::new(0);
    a.connections.update(|c| {
        let cited = cited.get(c.id).copied().unwrap_or(true);
        let leave = !cited
            && match keep {
                Keep::All => false,
                Keep::Auto => {
                    auto_summarises && matches!(c.reason, Some(Reason::Flood | Reason::Scan))
                }
                Keep::Findings => {
                    !matches!(c.reason, Some(Reason::Unexplained | Reason::HealthCheck))
                }
                Keep::None => true,
            };
        c.omitted = leave;
        if leave {
            omitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let omitted = omitted.into_inner();
    a.summary.connections_omitted = omitted;
    // A host is left out of `clients[]` when none of its connections is listed.
    let mut listed = vec![omitted == 0; a.hosts.len()];
    if omitted > 0 {
        for block in a.connections.blocks() {
            for c in block.iter().filter(|c| !c.omitted) {
                if let Some(l) = listed.get_mut(c.host) {
                    *l = true;
                }
            }
        }
    }
    for (h, listed) in a.hosts.iter_mut().zip(listed) {
        h.omitted = !listed;
    }
    if keep == Keep::Auto && omitted > 0 {
        a.warnings.push(Warning {
            kind: "connections_summarised",
            packet: None,
            message: format!(
                "{}: {omitted} of {} connections belong to floods and scans: they are summarised in floods[] and scans[], not listed (--connections all lists them)",
                a.capture.file,
                a.connections.len()
            ),
        });
    }
}

/// Per connection: a race, sequence, backend or stale reuse refers to it.
fn cited(a: &Analysis) -> Vec<bool> {
    let mut cited = vec![false; a.connections.len()];
    let mut cite = |id: usize| {
        if let Some(c) = cited.get_mut(id) {
            *c = true;
        }
    };
    for r in &a.races {
        r.attempts.iter().copied().for_each(&mut cite);
    }
    for s in &a.sequences {
        s.connections().for_each(&mut cite);
    }
    for b in &a.backends {
        b.connections.iter().copied().for_each(&mut cite);
    }
    for e in &a.stale_reuses {
        cite(e.connection);
        e.retry.into_iter().for_each(&mut cite);
    }
    cited
}
