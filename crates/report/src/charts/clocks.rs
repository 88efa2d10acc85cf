//! The servers' TCP timestamp clocks: each sample's TSval against a reference clock over
//! capture time, coloured by backend (at most [`CHART_POINTS`] samples, evenly thinned).

use std::collections::HashMap;

use super::*;

/// One clock sample drawn: seconds since the first packet, residual seconds, backend index.
type ClockPoint = (f64, f64, Option<usize>);

/// The samples the chart draws, and what it says of the others.
struct ClockPoints {
    /// At most [`CHART_POINTS`], in capture order.
    points: Vec<ClockPoint>,
    /// Samples of unidentified connections left out as off scale.
    hidden: usize,
    /// Samples on scale (drawn or thinned out).
    all: usize,
    /// Connections with server timestamps.
    with_ts: usize,
}

/// Per sample of every connection with timestamps: (seconds since the first packet, residual
/// seconds against the reference clock, backend index or None), read in one pass and thinned
/// as they come (a capture of 10 M connections has 30 M samples: collected, they held 1.3 GB
/// while the page was built). A second pass counts the off-scale samples only when the
/// unidentified ones were too many to keep.
fn clock_points(a: &Analysis) -> ClockPoints {
    let epoch = a.epoch();
    // Reference: the largest backend's clock, else 1000 Hz from the first sample.
    let reference = a
        .backends
        .iter()
        .max_by_key(|b| b.connections.len())
        .and_then(|b| {
            let c = a.connections.get(*b.connections.first()?)?;
            let s = c.rec.ts_samples.first()?;
            Some((b.clock_hz.unwrap_or(1000.0), s.time, s.tsval))
        })
        .or_else(|| {
            a.connections
                .iter()
                .find_map(|c| c.rec.ts_samples.first().map(|s| (1000.0, s.time, s.tsval)))
        });
    let mut out = ClockPoints {
        points: Vec::new(),
        hidden: 0,
        all: 0,
        with_ts: 0,
    };
    let Some((hz, t0, ts0)) = reference else {
        return out;
    };
    let index: HashMap<&str, usize> = a
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| (b.id.as_str(), i))
        .collect();
    let backend = |c: &racetrace_core::model::Connection| {
        c.backend.as_deref().and_then(|id| index.get(id).copied())
    };
    let point = |s: &racetrace_core::model::record::TsSample, b: Option<usize>| -> ClockPoint {
        let dt = (s.time - t0) as f64 / 1e9;
        let resid = racetrace_core::detect::backend::residual(hz, (0.0, ts0), (dt, s.tsval)) / hz;
        ((s.time - epoch) as f64 / 1e9, resid, b)
    };
    // Each kept with its place in the capture's order of samples.
    let mut known = Sampler::new(CHART_POINTS);
    let mut unknown = Sampler::new(CHART_POINTS);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut n = 0usize;
    a.connections.for_each(|c| {
        if c.rec.ts_samples.is_empty() {
            return;
        }
        out.with_ts += 1;
        let b = backend(c);
        for s in &c.rec.ts_samples {
            let p = point(s, b);
            if b.is_some() {
                lo = lo.min(p.1);
                hi = hi.max(p.1);
                known.push((n, p));
            } else {
                unknown.push((n, p));
            }
            n += 1;
        }
    });
    // Keep the unidentified points only within the identified clocks' range (random offsets
    // would spread over days and flatten every line).
    let range = (known.seen() > 0).then(|| {
        let pad = ((hi - lo) * 0.5).max(1.0);
        (lo - pad, hi + pad)
    });
    let on_scale = |p: &ClockPoint| range.is_none_or(|(l, h)| p.1 >= l && p.1 <= h);
    let unknown_seen = unknown.seen();
    let thinned = unknown.thinned();
    let mut unknown = unknown.into_vec();
    let before = unknown.len();
    unknown.retain(|(_, p)| on_scale(p));
    out.hidden = if thinned {
        let mut hidden = 0;
        a.connections.for_each(|c| {
            if backend(c).is_none() {
                let off = c
                    .rec
                    .ts_samples
                    .iter()
                    .filter(|s| !on_scale(&point(s, None)));
                hidden += off.count();
            }
        });
        hidden
    } else {
        before - unknown.len()
    };
    out.all = known.seen() + unknown_seen - out.hidden;
    // Both in capture order, merged.
    let mut both = known.into_vec();
    both.extend(unknown);
    both.sort_unstable_by_key(|(n, _)| *n);
    out.points = both.into_iter().map(|(_, p)| p).collect();
    thin(&mut out.points, CHART_POINTS);
    out
}

pub(super) fn clocks<DB: DrawingBackend>(
    a: &Analysis,
    root: &DrawingArea<DB, Shift>,
    tips: &mut Vec<Tip>,
) -> Res<DB> {
    let title = Kind::TsClocks.title();
    let ClockPoints {
        points,
        hidden,
        all,
        with_ts,
    } = clock_points(a);
    if points.is_empty() {
        return nothing(root, title, "no server sent TCP timestamps");
    }
    if a.backends.is_empty() {
        return nothing(
            root,
            title,
            &format!(
                "no backend identified. {with_ts} connection{} carried server TCP timestamps, \
                 but no two of them shared one server clock (TSval = offset + rate·t): each \
                 has its own offset, as servers that randomise it per connection give \
                 (RFC 7323 §5.4, Linux's default), so the timestamps cannot tell backends apart.",
                if with_ts == 1 { "" } else { "s" }
            ),
        );
    }
    let xmax = points.iter().map(|p| p.0).fold(1.0f64, f64::max) * 1.02;
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.1).max(0.05);
    let mut caption = title.to_string();
    if hidden > 0 {
        caption.push_str(&format!(
            "; {hidden} samples of unidentified connections off scale"
        ));
    }
    if all > points.len() {
        caption.push_str(&format!("; {} of {all} samples drawn", points.len()));
    }
    let name = |b: Option<usize>| match b.and_then(|i| a.backends.get(i)) {
        Some(b) => format!(
            "backend {} ({}, {} connections)",
            b.id,
            b.clock_hz
                .map_or("rate unknown".into(), |hz| tick(hz, "Hz")),
            b.connections.len()
        ),
        None => "no backend identified".into(),
    };
    let mut entries: Vec<Entry> = Vec::new();
    if points.iter().any(|p| p.2.is_none()) {
        entries.push((Swatch::Dot(GREY), name(None)));
    }
    for bi in 0..a.backends.len() {
        entries.push((Swatch::Dot(PALETTE[bi % PALETTE.len()]), name(Some(bi))));
    }
    let area = frame(root, &caption, &entries)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..xmax, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("capture time (since the first packet)")
        .x_label_formatter(&|v| tick(*v, "s"))
        .y_desc("TSval − reference clock")
        .y_label_formatter(&|v| tick(*v, "s"))
        .draw()?;
    // Unidentified samples first, so the backends' clocks are drawn over them.
    for known in [false, true] {
        let drawn = points.iter().filter(|p| p.2.is_some() == known);
        chart.draw_series(drawn.clone().map(|p| {
            let color = p.2.map_or(GREY, |bi| PALETTE[bi % PALETTE.len()]);
            Circle::new((p.0, p.1), if known { 4 } else { 3 }, color.filled())
        }))?;
        for p in drawn {
            tips.push(point_tip(
                chart.backend_coord(&(p.0, p.1)),
                4,
                format!(
                    "{} · at {} · TSval {} from the reference clock",
                    name(p.2),
                    tick(p.0, "s"),
                    tick(p.1, "s")
                ),
            ));
        }
    }
    Ok(())
}
