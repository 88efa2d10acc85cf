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

pub(super) fn clocks<DB: DrawingBackend>(a: &Analysis, root: &DrawingArea<DB, Shift>) -> Res<DB> {
    let title = Kind::TsClocks.title();
    let (points, hidden, all) = clock_points(a);
    if points.is_empty() {
        return nothing(root, title, "no server sent TCP timestamps");
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
    let mut chart = ChartBuilder::on(root)
        .caption(
            caption,
            ("sans-serif", 20).into_font().style(FontStyle::Bold),
        )
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
    let unknown: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.2.is_none())
        .map(|p| (p.0, p.1))
        .collect();
    if !unknown.is_empty() {
        chart
            .draw_series(
                unknown
                    .into_iter()
                    .map(|p| Circle::new(p, 3, GREY.filled())),
            )?
            .label("no backend identified")
            .legend(|(x, y)| Circle::new((x + 7, y), 4, GREY.filled()));
    }
    for (bi, b) in a.backends.iter().enumerate() {
        let color = PALETTE[bi % PALETTE.len()];
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.2 == Some(bi))
            .map(|p| (p.0, p.1))
            .collect();
        chart
            .draw_series(
                pts.into_iter()
                    .map(move |p| Circle::new(p, 4, color.filled())),
            )?
            .label(format!(
                "{} ({} Hz, {} connections)",
                b.id,
                b.clock_hz.unwrap_or(0.0),
                b.connections.len()
            ))
            .legend(move |(x, y)| Circle::new((x + 7, y), 4, color.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}
