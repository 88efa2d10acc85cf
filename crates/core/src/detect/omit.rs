//! What the report's connection list leaves out (`--connections`). A flood or a scan is
//! millions of one-packet connections that its `floods[]` or `scans[]` entry already
//! summarises; a CI job may want only the connections its findings cite. Whatever the choice,
//! every connection that a race, sequence, backend or stale reuse refers to stays, ids stay
//! those of the whole analysis, and `summary.connections_omitted` says how many were left out.

use crate::error::Warning;
use crate::model::{Analysis, Connection, Reason};

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
    let leaves = move |c: &Connection| {
        let cited = cited.get(c.id).copied().unwrap_or(true);
        !cited
            && match keep {
                Keep::All => false,
                Keep::Auto => {
                    auto_summarises && matches!(c.reason, Some(Reason::Flood | Reason::Scan))
                }
                Keep::Findings => {
                    !matches!(c.reason, Some(Reason::Unexplained | Reason::HealthCheck))
                }
                Keep::None => true,
            }
    };
    // Nothing leaves: every connection is listed already (`omitted` starts false).
    let none_leave = keep == Keep::All || (keep == Keep::Auto && !auto_summarises);
    let mut listed = vec![true; a.hosts.len()];
    let mut omitted = 0;
    if !none_leave {
        // Kept beside the spill (a byte a connection) rather than written into it; one pass
        // counts what it leaves out, and which hosts keep a listed connection.
        a.connections
            .update_deferred(move |c: &mut Connection| c.omitted = leaves(c));
        listed.fill(false);
        a.connections.for_each(|c| {
            if c.omitted {
                omitted += 1;
            } else if let Some(l) = listed.get_mut(c.host) {
                *l = true;
            }
        });
        if omitted == 0 {
            listed.fill(true);
        }
    }
    a.summary.connections_omitted = omitted;
    // A host is left out of `clients[]` when none of its connections is listed.
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
