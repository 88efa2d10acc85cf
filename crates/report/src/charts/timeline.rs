//! The race timeline: one row per attempt of the races shown, bars per family from the
//! race's first SYN, and a marker per milestone (SYN-ACK, TLS, HTTP, 101, the cancel).

use super::*;

/// The races drawn: duplicate upgrades first, then late cancels, then the most attempts.
fn timeline_races(a: &Analysis) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..a.races.len()).collect();
    ids.sort_by_key(|&i| {
        let r = &a.races[i];
        (
            std::cmp::Reverse(r.duplicate_upgrade),
            std::cmp::Reverse(r.late_cancels()),
            std::cmp::Reverse(r.attempts.len()),
            r.id,
        )
    });
    ids.truncate(TIMELINE_RACES);
    ids.sort();
    ids
}

/// (race index, connection id) per row.
pub(super) fn timeline_rows(a: &Analysis) -> Vec<(usize, usize)> {
    timeline_races(a)
        .into_iter()
        .flat_map(|ri| {
            a.races
                .get(ri)
                .map(|r| r.attempts.iter().map(move |&c| (ri, c)).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect()
}

pub(super) fn timeline<DB: DrawingBackend>(a: &Analysis, root: &DrawingArea<DB, Shift>) -> Res<DB> {
    let title = Kind::RaceTimeline.title();
    let rows = timeline_rows(a);
    if rows.is_empty() {
        return nothing(root, title, "no races in this capture");
    }
    let span = |ri: usize, cid: usize| span(a, ri, cid);
    let xmax = rows
        .iter()
        .filter_map(|&(ri, c)| span(ri, c).map(|s| s.1))
        .fold(10.0f64, f64::max)
        * 1.3; // room on the right for the legend
    let n = rows.len();
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22).into_font().style(FontStyle::Bold))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(170)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => row_label(a, &rows, *i),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc("after the race's first SYN")
        .x_label_formatter(&|v| tick(*v, "ms"))
        .y_desc("attempt")
        .y_labels(n)
        .y_label_formatter(&label)
        .disable_y_mesh()
        .draw()?;
    for (fam, name) in [
        (Family::Ipv6, "IPv6 attempt"),
        (Family::Ipv4, "IPv4 attempt"),
    ] {
        let bars: Vec<Rectangle<(f64, SegmentValue<usize>)>> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, &(ri, cid))| {
                let c = a.connections.get(cid)?;
                if c.rec.family() != fam {
                    return None;
                }
                let (x0, x1) = span(ri, cid)?;
                let color = family_color(fam);
                let style = if c.role == Role::Winner {
                    color.filled()
                } else {
                    color.mix(0.35).filled()
                };
                Some(Rectangle::new(
                    [
                        (x0, SegmentValue::Exact(i)),
                        (x1.max(x0 + xmax / 400.0), SegmentValue::Exact(i + 1)),
                    ],
                    style,
                ))
            })
            .collect();
        let color = family_color(fam);
        chart
            .draw_series(bars)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    milestones(&mut chart, a, &rows)?;
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

/// Where the attempt of row (race `ri`, connection `cid`) runs, ms after the race's first SYN.
fn span(a: &Analysis, ri: usize, cid: usize) -> Option<(f64, f64)> {
    let r = a.races.get(ri)?;
    let c = a.connections.get(cid)?;
    let s = c.rec.syn_time.get()?;
    let end = c
        .rec
        .end()
        .map_or(c.rec.last_time, |e| e.0)
        .max(c.rec.last_time);
    Some((ms(r.start_time, s), ms(r.start_time, end)))
}

/// A row's label: `race 3 #7 v6 also-ran`.
fn row_label(a: &Analysis, rows: &[(usize, usize)], i: usize) -> String {
    rows.get(i)
        .and_then(|&(ri, cid)| {
            let c = a.connections.get(cid)?;
            let role = if c.role == Role::Winner {
                "winner"
            } else {
                "also-ran"
            };
            Some(format!(
                "race {} #{} v{} {}",
                a.races.get(ri)?.id,
                cid,
                c.rec.family().digit(),
                role
            ))
        })
        .unwrap_or_default()
}

/// A marker per milestone of each row: SYN-ACK, TLS done, HTTP request, 101, the cancel.
fn milestones<DB: DrawingBackend>(
    chart: &mut RowChart<'_, DB>,
    a: &Analysis,
    rows: &[(usize, usize)],
) -> Res<DB> {
    let marks: [Mark; 5] = [
        ("SYN-ACK", RGBColor(0, 0, 0), |c| c.rec.synack_time.get()),
        ("TLS done", RGBColor(44, 160, 44), |c| {
            c.rec.milestones.tls.get()
        }),
        ("HTTP request", RGBColor(148, 103, 189), |c| {
            c.rec.milestones.http.get()
        }),
        ("WebSocket 101", RGBColor(214, 39, 40), |c| {
            c.rec.milestones.ws.get()
        }),
        ("client cancel (FIN/RST)", RGBColor(90, 90, 90), |c| {
            if c.role == Role::AlsoRan {
                c.rec.client_close()
            } else {
                None
            }
        }),
    ];
    for (k, (name, color, at)) in marks.into_iter().enumerate() {
        let points: Vec<(f64, SegmentValue<usize>)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, &(ri, cid))| {
                let c = a.connections.get(cid)?;
                let t = at(&c)?;
                Some((
                    ms(a.races.get(ri)?.start_time, t),
                    SegmentValue::CenterOf(i),
                ))
            })
            .collect();
        if k == 4 {
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Cross::new(p, 6, color.stroke_width(2))),
                )?
                .label(name)
                .legend(move |(x, y)| Cross::new((x + 7, y), 5, color.stroke_width(2)));
        } else {
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 5, color.filled())),
                )?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 7, y), 5, color.filled()));
        }
    }
    Ok(())
}
