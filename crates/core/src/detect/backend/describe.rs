//! What the report says of each backend found: its services and addresses (one pass over the
//! members, in id order), its fitted rate and skew, offset and confidence.

use super::{offset_key, Found};
use crate::domain::Nanos;
use crate::model::{Analysis, Backend, ClockRegime};

/// What one pass over the backends' members sees of each backend: its services and server
/// addresses, and the samples of its fit members in the fit's order (seconds after the
/// epoch less the member's one-way delay, TSval).
#[derive(Default)]
pub(super) struct Seen {
    services: Vec<crate::model::Name>,
    addrs: Vec<std::net::IpAddr>,
    samples: Vec<(f64, u32)>,
}

/// [`Seen`] for every backend, in one pass over their members in id order: on a spilled
/// capture each block is read once, not once per member.
/// `member` is each member connection with its backend's index, in connection order; `ids`
/// the same connections alone.
pub(super) fn members_seen(
    a: &Analysis,
    epoch: Nanos,
    backends: &[Found],
    member: &[(u32, u32)],
    ids: &[usize],
) -> Vec<Seen> {
    let secs = |t: Nanos| (t - epoch) as f64 / 1e9;
    let mut fit: Vec<(usize, f64)> = backends.iter().flat_map(|f| f.fit.iter().copied()).collect();
    fit.sort_unstable_by_key(|f| f.0);
    let mut samples: std::collections::HashMap<usize, Vec<(f64, u32)>> =
        std::collections::HashMap::with_capacity(fit.len());
    let mut seen: Vec<Seen> = backends.iter().map(|_| Seen::default()).collect();
    a.connections.for_ids(ids, |i, c| {
        let Some(s) = member.get(i).and_then(|&(_, k)| seen.get_mut(k as usize)) else {
            return;
        };
        if !s.services.contains(&c.service) {
            s.services.push(c.service.clone());
        }
        if !s.addrs.contains(&c.rec.server.ip) {
            s.addrs.push(c.rec.server.ip);
        }
        if let Ok(j) = fit.binary_search_by_key(&c.id, |f| f.0) {
            let delay = fit.get(j).map_or(0.0, |f| f.1);
            let own = c.rec.ts_samples.iter();
            samples.insert(c.id, own.map(|s| (secs(s.time) - delay, s.tsval)).collect());
        }
    });
    for (f, s) in backends.iter().zip(&mut seen) {
        for (id, _) in &f.fit {
            s.samples.extend(samples.remove(id).unwrap_or_default());
        }
    }
    seen
}

/// The report's backend for one found clock: its services and addresses, fitted rate, skew,
/// offset and confidence.
pub(super) fn describe(id: String, found: Found, seen: Seen) -> Backend {
    let Found {
        ids,
        chance,
        rate,
        fit: _,
        span,
        rate_inferred,
    } = found;
    let Seen {
        services,
        addrs,
        samples,
    } = seen;
    let mut services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    let mut ips: Vec<String> = addrs.iter().map(|ip| ip.to_string()).collect();
    services.sort();
    ips.sort();
    let fitted = theil_sen(&samples);
    let skew_ppm = fitted
        .filter(|_| span >= 10.0)
        .map(|f| (f / rate - 1.0) * 1e6);
    // One minus the probability that the members agree by chance.
    let confidence = (1.0 - chance).clamp(0.0, 1.0);
    let first = samples.first().copied().unwrap_or((0.0, 0));
    Backend {
        id,
        services,
        server_ips: ips,
        clock_hz: Some(rate),
        connections: ids,
        confidence: (confidence * 1e4).floor() / 1e4,
        fitted_hz: fitted,
        skew_ppm,
        offset: offset_key(rate, first),
        rate_inferred,
        regime: ClockRegime::Stable,
    }
}

/// Theil–Sen slope (median of pairwise slopes) of TSval against time, over at most 64
/// samples spread over the set; TSvals are unwrapped against the earliest.
fn theil_sen(samples: &[(f64, u32)]) -> Option<f64> {
    let mut s: Vec<(f64, u32)> = samples.to_vec();
    s.sort_by(|x, y| x.0.total_cmp(&y.0));
    let step = s.len().div_ceil(64).max(1);
    let s: Vec<(f64, f64)> = match s.first() {
        Some(&(_, base)) => s
            .iter()
            .step_by(step)
            .map(|&(t, v)| (t, f64::from(v.wrapping_sub(base))))
            .collect(),
        None => return None,
    };
    let mut slopes = Vec::new();
    for (i, a) in s.iter().enumerate() {
        for b in s.iter().skip(i + 1) {
            let dt = b.0 - a.0;
            if dt > 0.5 {
                slopes.push((b.1 - a.1) / dt);
            }
        }
    }
    slopes.sort_by(f64::total_cmp);
    crate::detect::summary::median(&slopes)
}

