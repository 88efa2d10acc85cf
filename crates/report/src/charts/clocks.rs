//! The servers' TCP timestamp clocks: each sample's TSval against a reference clock over
//! capture time, coloured by backend (at most [`CHART_POINTS`] samples, evenly thinned).

use super::*;

/// One clock sample drawn: seconds since the first packet, residual seconds, backend index.
type ClockPoint = (f64, f64, Option<usize>);

/// Per connection with timestamps: (seconds since the first packet, residual seconds
/// against the reference clock, backend index or None).
fn clock_points(a: &Analysis) -> (Vec<ClockPoint>, usize, usize) {
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
    let Some((hz, t0, ts0)) = reference else {
        return (Vec::new(), 0, 0);
    };
    let mut out = Vec::new();
    let mut hidden = 0;
    for c in a.connections.iter() {
        let b = c
            .backend
            .as_ref()
            .and_then(|id| a.backends.iter().position(|x| *x.id == **id));
        for s in &c.rec.ts_samples {
            let dt = (s.time - t0) as f64 / 1e9;
            let resid =
                racetrace_core::detect::backend::residual(hz, (0.0, ts0), (dt, s.tsval)) / hz;
            out.push(((s.time - epoch) as f64 / 1e9, resid, b));
        }
    }
    // Keep the unidentified points only within the identified clocks' range (random offsets
    // would spread over days and flatten every line).
    let known: Vec<f64> = out.iter().filter(|p| p.2.is_some()).map(|p| p.1).collect();
    if let (Some(lo), Some(hi)) = (
        known.iter().copied().reduce(f64::min),
        known.iter().copied().reduce(f64::max),
    ) {
        let pad = ((hi - lo) * 0.5).max(1.0);
        let before = out.len();
        out.retain(|p| p.2.is_some() || (p.1 >= lo - pad && p.1 <= hi + pad));
        hidden = before - out.len();
    }
    let all = out.len();
    thin(&mut out, CHART_POINTS);
    (out, hidden, all)
}

pub(super) fn clocks<DB: DrawingBackend>(
    a: &Analysis,
    root: &DrawingArea<DB, Shift>,
    tips: &mut Vec<Tip>,
) -> Res<DB> {
    let title = Kind::TsClocks.title();
    let (points, hidden, all) = clock_points(a);
    if points.is_empty() {
        return nothing(root, title, "no server sent TCP timestamps");
    }
    if a.backends.is_empty() {
        let with_ts = a
            .connections
            .iter()
            .filter(|c| !c.rec.ts_samples.is_empty())
            .count();
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
