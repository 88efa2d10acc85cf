//! Per client host, its Connection Attempt Delay behaviour over its races (RFC 8305 §5): fixed
//! near one value (curl's 200 ms, Node's 250 ms, Chromium's and Go's 300 ms) or dynamic (as
//! Safari's, derived from RTT history). A pass over the races whose state is one list of
//! (host, delay) pairs, sorted: its size follows the races, and what it keeps, the hosts.

use super::{Context, Detector, Part};
use crate::model::Analysis;

/// Sets each client host's `delays`.
pub struct DelayProfiles;

impl Detector for DelayProfiles {
    fn name(&self) -> &'static str {
        "delays"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Hosts, Part::Races]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::DelayProfiles]
    }
    fn run(&self, a: &mut Analysis, _ctx: &mut Context<'_>) {
        delay_profiles(a);
    }
}

/// Implementations' fixed Connection Attempt Delays, ms: RFC 8305's minimum (100), curl (200),
/// RFC 8305's recommendation and Node (250), Chromium and Go (300).
const KNOWN_DELAYS_MS: [u32; 4] = [100, 200, 250, 300];

/// Per client host: is its attempt delay fixed near one value, or dynamic?
pub fn delay_profiles(a: &mut Analysis) {
    use rayon::prelude::*;
    // (client host, first attempt delay) of every race, sorted: each host's delays in order
    // (the race keeps its host: no pass over the connections).
    let mut delays: Vec<(usize, f64)> = a
        .races
        .iter()
        .filter_map(|r| Some((r.host, *r.attempt_delays_ms.first()?)))
        .collect();
    delays.par_sort_unstable_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    for run in delays.chunk_by(|x, y| x.0 == y.0) {
        let h = run.first().map_or(0, |d| d.0);
        let v: Vec<f64> = run.iter().map(|d| d.1).collect();
        let (Some(&min), Some(&max), Some(median)) =
            (v.first(), v.last(), super::summary::median(&v))
        else {
            continue;
        };
        // Timer slack and scheduling add a few ms to a fixed delay; 10 ms or 5 %, whichever
        // is larger, separates that from a delay that follows measured RTTs.
        let tolerance = (0.05 * median).max(10.0);
        let class = if v.len() < 2 {
            "single_sample"
        } else if max - min <= tolerance {
            "fixed"
        } else {
            "dynamic"
        };
        let near = KNOWN_DELAYS_MS
            .into_iter()
            .find(|&k| (median - f64::from(k)).abs() <= 0.05 * f64::from(k));
        if let Some(host) = a.hosts.get_mut(h) {
            host.set_delays(crate::model::DelayProfile {
                class,
                races: v.len(),
                min_ms: min,
                median_ms: median,
                max_ms: max,
                near_default_ms: near,
            });
        }
    }
}

