//! The race timeline: one row per attempt of the races shown, bars per family from the
//! race's first SYN, and a marker per milestone (SYN-ACK, TLS, HTTP, 101, the cancel).

use super::*;
use crate::human::rel_ms;

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

/// The milestones marked on each attempt: legend name, colour, and its time.
const MARKS: [Mark; 4] = [
    ("SYN-ACK / server Initial", RGBColor(0, 0, 0), |c| {
        c.rec.synack_time.get()
    }),
    ("TLS / QUIC handshake done", RGBColor(44, 160, 44), |c| {
        c.rec.milestones.tls.get()
    }),
    ("HTTP request", RGBColor(148, 103, 189), |c| {
        c.rec.milestones.http.get()
    }),
    ("WebSocket 101", RGBColor(214, 39, 40), |c| {
        c.rec.milestones.ws.get()
    }),
];
/// The cross on an also-ran where the client cancelled it.
const CANCEL: RGBColor = RGBColor(90, 90, 90);

pub(super) fn timeline<DB: DrawingBackend>(
    a: &Analysis,
    root: &DrawingArea<DB, Shift>,
    tips: &mut Vec<Tip>,
) -> Res<DB> {
    let title = Kind::RaceTimeline.title();
    let rows = timeline_rows(a);
    if rows.is_empty() {
        return nothing(root, title, "no races in this capture");
    }
    let mut entries: Vec<Entry> = vec![
        (Swatch::Box(V6), "IPv6 attempt (pale: also-ran)".into()),
        (Swatch::Box(V4), "IPv4 attempt".into()),
    ];
    if rows.iter().any(|&(ri, _)| {
        a.races
            .get(ri)
            .is_some_and(|r| r.transports.contains(&"quic"))
    }) {
        entries.push((Swatch::Outlined(GREY), "QUIC attempt (outlined)".into()));
    }
    entries.extend(MARKS.iter().map(|m| (Swatch::Dot(m.1), m.0.to_string())));
    entries.push((Swatch::Cross(CANCEL), "client cancel (FIN/RST)".into()));
    let area = frame(root, title, &entries)?;
    // One pass over the drawn attempts (a spilled list decodes a block per lookup).
    let mut ids: Vec<usize> = rows.iter().map(|r| r.1).collect();
    ids.sort_unstable();
    ids.dedup();
    let conns = a.connections.get_sorted(&ids);
    let conn = |cid: usize| ids.binary_search(&cid).ok().and_then(|k| conns.get(k));
    let spans: Vec<Option<(f64, f64)>> = rows
        .iter()
        .map(|&(ri, cid)| span(a.races.get(ri)?, conn(cid)?))
        .collect();
    let xmax = spans.iter().flatten().map(|s| s.1).fold(10.0f64, f64::max) * 1.03;
    let n = rows.len();
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(170)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())?;
    let labels: Vec<String> = rows
        .iter()
        .map(|&(ri, cid)| match (a.races.get(ri), conn(cid)) {
            (Some(r), Some(c)) => row_label(r, c),
            _ => String::new(),
        })
        .collect();
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            labels.get(*i).cloned().unwrap_or_default()
        }
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
    for (i, &(ri, cid)) in rows.iter().enumerate() {
        let (Some(r), Some(c), Some((x0, x1))) = (a.races.get(ri), conn(cid), spans[i]) else {
            continue;
        };
        let color = family_color(c.rec.family());
        let style = if c.role == Role::Winner {
            color.filled()
        } else {
            color.mix(0.35).filled()
        };
        let (c0, c1) = (
            (x0, SegmentValue::Exact(i)),
            (x1.max(x0 + xmax / 400.0), SegmentValue::Exact(i + 1)),
        );
        let (p0, p1) = (chart.backend_coord(&c0), chart.backend_coord(&c1));
        if c.rec.quic().is_some() {
            let border = [c0.clone(), c1.clone()];
            chart.draw_series([Rectangle::new([c0, c1], style)])?;
            chart.draw_series([Rectangle::new(border, BLACK.stroke_width(2))])?;
        } else {
            chart.draw_series([Rectangle::new([c0, c1], style)])?;
        }
        let mut text = format!("{}: {} → {}", labels[i], c.rec.client, c.rec.server);
        let at = |t: Nanos| rel_ms(ms(r.start_time, t));
        for (name, color, time) in MARKS {
            if let Some(t) = time(c) {
                let p = (ms(r.start_time, t), SegmentValue::CenterOf(i));
                chart.draw_series([Circle::new(p, 5, color.filled())])?;
                text.push_str(&format!(" · {name} {}", at(t)));
            }
        }
        if let Some(t) = c.rec.client_close() {
            if r.cancel_seen(cid) {
                let p = (ms(r.start_time, t), SegmentValue::CenterOf(i));
                chart.draw_series([Cross::new(p, 6, CANCEL.stroke_width(2))])?;
                text.push_str(&format!(" · cancelled {}", at(t)));
            } else if c.role != Role::Winner {
                text.push_str(&format!(" · reset the late SYN-ACK {}", at(t)));
            }
        }
        tips.push(box_tip(p0, p1, text));
    }
    Ok(())
}

/// Where an attempt runs, ms after its race's first SYN.
fn span(
    r: &racetrace_core::model::Race,
    c: &racetrace_core::model::Connection,
) -> Option<(f64, f64)> {
    let s = c.rec.syn_time.get()?;
    let end = c
        .rec
        .end()
        .map_or(c.rec.last_time, |e| e.0)
        .max(c.rec.last_time);
    Some((ms(r.start_time, s), ms(r.start_time, end)))
}

/// A row's label: `race 3 #7 v6 also-ran`, `race 4 #9 v6 QUIC winner`.
fn row_label(r: &racetrace_core::model::Race, c: &racetrace_core::model::Connection) -> String {
    let role = if c.role == Role::Winner {
        "winner"
    } else {
        "also-ran"
    };
    let quic = if c.rec.quic().is_some() { " QUIC" } else { "" };
    format!(
        "race {} #{} v{}{quic} {role}",
        r.id,
        c.id,
        c.rec.family().digit()
    )
}
