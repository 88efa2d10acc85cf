//! The headline `summary` counts.

use super::{Context, Detector, Part};
use crate::domain::Family;
use crate::model::{Analysis, Race, Summary};

/// Sets the headline `summary`.
pub struct Headline;

impl Detector for Headline {
    fn name(&self) -> &'static str {
        "summary"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Races, Part::Backends, Part::Sequences, Part::StaleReuses]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::Summary]
    }
    fn run(&self, a: &mut Analysis, _ctx: &mut Context<'_>) {
        summarize(a);
    }
}

/// Headline counts.
pub fn summarize(a: &mut Analysis) {
    let mut first_delays: Vec<f64> = a
        .races
        .iter()
        .filter_map(|r| r.attempt_delays_ms.first().copied())
        .collect();
    first_delays.sort_by(f64::total_cmp);
    // No pass over the connections: an attempt's role is also-ran exactly when its race lists
    // it among `also_rans`, and a backend's members are connections with timestamps, each in
    // one backend.
    let also_rans = a.races.iter().map(|r| r.also_rans.len()).sum();
    let members: usize = a.backends.iter().map(|b| b.connections.len()).sum();
    let timestamped_without_backend = a.timestamped.saturating_sub(members);
    a.summary = Summary {
        connections: a.connections.len(),
        races: a.races.len(),
        also_rans,
        duplicate_upgrades: a.races.iter().filter(|r| r.duplicate_upgrade).count(),
        family_switches: a.sequences.iter().map(|s| s.family_switches).sum(),
        backend_switches: a.sequences.iter().map(|s| s.backend_switches).sum(),
        backends: a.backends.len(),
        stale_reuses: a.stale_reuses.len(),
        median_attempt_delay_ms: median(&first_delays),
        duplicate_upgrades_inferred: a
            .races
            .iter()
            .filter(|r| r.duplicate_upgrade && r.duplicate_upgrade_inferred)
            .count(),
        duplicate_requests_with_credentials: a
            .races
            .iter()
            .filter_map(|r| r.duplicate_request.as_deref())
            .filter(|d| d.authorization || d.cookie)
            .count(),
        late_cancels: a.races.iter().map(Race::late_cancels).sum(),
        stale_reuses_retried: a.stale_reuses.iter().filter(|e| e.retry.is_some()).count(),
        races_ipv6_first: a
            .races
            .iter()
            .filter(|r| r.families.first() == Some(&Family::Ipv6))
            .count(),
        races_ipv4_won: a
            .races
            .iter()
            .filter(|r| r.winner_family() == Some(Family::Ipv4))
            .count(),
        timestamped_without_backend,
        // Set by `omit`, after the detectors.
        connections_omitted: 0,
        evicted_early: 0,
    };
}

/// Median of sorted values (mean of the middle two for an even count).
pub fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let mid = sorted.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(mid)
    } else {
        sorted.get(n / 2 - 1).map(|lo| (lo + mid) / 2.0)
    }
}
