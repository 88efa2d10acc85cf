//! Charts (plotters), each drawn once for any backend and written as PNG and SVG. Text is
//! drawn with a font embedded in the binary (Noto Sans through ab_glyph), so PNGs have
//! their labels on a bare machine. Every chart has a title, axis labels with units and a
//! legend; with nothing to show it says so in words instead of leaving a blank image.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use racetrace_core::domain::{Family, Nanos, Stage};
use racetrace_core::model::{Analysis, Role};

use crate::human::tick;
use thin::{switch_points, thin, Sampler};

mod clocks;
mod frame;
mod thin;
mod timeline;
use clocks::clocks;
use frame::{box_tip, frame, legend_height, point_tip, tips_svg, Entry, Swatch, Tip};
use timeline::{timeline, timeline_rows};

/// Chart width in pixels.
pub const WIDTH: u32 = 1000;
/// Races drawn in the timeline (the most interesting first).
pub const TIMELINE_RACES: usize = 12;
/// Most rows (client → service) in the attempt-delay and sequence charts: the busiest.
pub const CHART_ROWS: usize = 40;
/// Most points in one row of the attempt-delay chart, and in the clock chart in all (evenly
/// thinned beyond: a chart of a million points is a 600 MB SVG and says no more).
pub const CHART_POINTS: usize = 20_000;

const V6: RGBColor = RGBColor(31, 119, 180);
const V4: RGBColor = RGBColor(255, 127, 14);
const GREY: RGBColor = RGBColor(150, 150, 150);
const PALETTE: [RGBColor; 8] = [
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(31, 119, 180),
];

/// The charts, by file stem.
pub const KINDS: [Kind; 5] = [
    Kind::RaceTimeline,
    Kind::AttemptDelays,
    Kind::TsClocks,
    Kind::Sequences,
    Kind::Fates,
];

/// One chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Each race's attempts as bars from first SYN to end, with milestones.
    RaceTimeline,
    /// Attempt delays per client and service, with RFC 8305's lines.
    AttemptDelays,
    /// Server TSvals minus a reference clock, by backend.
    TsClocks,
    /// Each client's kept connections over time: family and backend.
    Sequences,
    /// Also-ran fates and cancel stages.
    Fates,
}

impl Kind {
    /// File stem.
    pub fn stem(self) -> &'static str {
        match self {
            Kind::RaceTimeline => "race_timeline",
            Kind::AttemptDelays => "attempt_delays",
            Kind::TsClocks => "ts_clocks",
            Kind::Sequences => "sequences",
            Kind::Fates => "fates",
        }
    }

    /// Title.
    pub fn title(self) -> &'static str {
        match self {
            Kind::RaceTimeline => "Race timeline (ms after each race's first SYN)",
            Kind::AttemptDelays => "Connection Attempt Delays per client and service",
            Kind::TsClocks => "Server TCP timestamp clocks (TSval minus reference clock)",
            Kind::Sequences => "Kept connections over time: family and backend",
            Kind::Fates => "Also-ran fates and cancel stages",
        }
    }

    /// Size in pixels for this analysis.
    pub fn size(self, a: &Analysis) -> (u32, u32) {
        let rows = match self {
            Kind::RaceTimeline => timeline_rows(a).len(),
            Kind::AttemptDelays => delay_rows(a).len(),
            Kind::Sequences => sequence_rows(a).len(),
            Kind::Fates => fate_rows(a).len(),
            // With no backend the chart is the words that say why.
            Kind::TsClocks if a.backends.is_empty() => return (WIDTH, 200),
            Kind::TsClocks => return (WIDTH, 460 + legend_height(a.backends.len() + 1)),
        };
        let legend = legend_height(match self {
            Kind::RaceTimeline => 7,
            Kind::AttemptDelays => 4,
            Kind::Sequences => 3 + a.backends.len(),
            _ => 2,
        });
        if rows == 0 {
            return (WIDTH, 130); // the words that say why there is nothing
        }
        (WIDTH, 150 + legend + 26 * rows.clamp(2, 60) as u32)
    }
}

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ =
            plotters::style::register_font("sans-serif", FontStyle::Normal, notosans::REGULAR_TTF);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, notosans::BOLD_TTF);
    });
}

/// Write one chart as PNG.
pub fn write_png(kind: Kind, a: &Analysis, path: &Path) -> Result<(), String> {
    fonts();
    let root = BitMapBackend::new(path, kind.size(a)).into_drawing_area();
    draw(kind, a, &root, &mut Vec::new()).map_err(|e| format!("{}: {e}", path.display()))?;
    root.present()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Draw one chart as SVG text, with a hover detail (a `<title>`) over each drawn item.
pub fn svg(kind: Kind, a: &Analysis) -> Result<String, String> {
    fonts();
    let mut out = String::new();
    let mut tips = Vec::new();
    {
        let root = SVGBackend::with_string(&mut out, kind.size(a)).into_drawing_area();
        draw(kind, a, &root, &mut tips).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    if !tips.is_empty() {
        if let Some(end) = out.rfind("</svg>") {
            out.insert_str(end, &tips_svg(tips));
        }
    }
    Ok(out)
}

/// A milestone drawn on the timeline: legend name, colour, and its time on a connection.
type Mark = (
    &'static str,
    RGBColor,
    fn(&racetrace_core::model::Connection) -> Option<Nanos>,
);

type Res<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(
    kind: Kind,
    a: &Analysis,
    root: &DrawingArea<DB, Shift>,
    tips: &mut Vec<Tip>,
) -> Res<DB> {
    root.fill(&WHITE)?;
    match kind {
        Kind::RaceTimeline => timeline(a, root, tips),
        Kind::AttemptDelays => delays(a, root, tips),
        Kind::TsClocks => clocks(a, root, tips),
        Kind::Sequences => sequences(a, root, tips),
        Kind::Fates => fates(a, root, tips),
    }
}

/// An empty chart that says why, in lines of at most 90 characters.
fn nothing<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, why: &str) -> Res<DB> {
    let area = root.titled(title, ("sans-serif", 22).into_font().style(FontStyle::Bold))?;
    let mut lines = vec![String::from("Nothing to show:")];
    for word in why.split(' ') {
        let last = lines.last_mut().filter(|l| l.len() + word.len() < 90);
        match last {
            Some(l) => {
                l.push(' ');
                l.push_str(word);
            }
            None => lines.push(word.to_string()),
        }
    }
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(
            line.clone(),
            (40, 40 + 26 * i as i32),
            ("sans-serif", 18).into_font().color(&GREY),
        ))?;
    }
    Ok(())
}

fn family_color(f: Family) -> RGBColor {
    match f {
        Family::Ipv6 => V6,
        Family::Ipv4 => V4,
    }
}

fn ms(from: Nanos, to: Nanos) -> f64 {
    (to - from) as f64 / 1e6
}

/// (client · service label, attempt delays of each race).
fn delay_rows(a: &Analysis) -> Vec<(String, Vec<f64>)> {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &a.races {
        if let Some(&d) = r.attempt_delays_ms.first() {
            by.entry(format!("{} → {}", r.client, r.service))
                .or_default()
                .push(d);
        }
    }
    let mut rows: Vec<(String, Vec<f64>)> = by.into_iter().collect();
    if rows.len() > CHART_ROWS {
        // The busiest rows, shown in name order.
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.len()));
        rows.truncate(CHART_ROWS);
        rows.sort_by(|x, y| x.0.cmp(&y.0));
    }
    for r in &mut rows {
        thin(&mut r.1, CHART_POINTS / CHART_ROWS);
    }
    rows
}

/// RFC 8305's Connection Attempt Delay bounds, as drawn on the attempt-delay chart.
const CAD_LINES: [(f64, &str, RGBColor); 3] = [
    (100.0, "RFC 8305 minimum 100 ms", RGBColor(214, 39, 40)),
    (250.0, "RFC 8305 recommended 250 ms", RGBColor(44, 160, 44)),
    (2000.0, "RFC 8305 maximum 2 s", RGBColor(148, 103, 189)),
];

fn delays<DB: DrawingBackend>(
    a: &Analysis,
    root: &DrawingArea<DB, Shift>,
    tips: &mut Vec<Tip>,
) -> Res<DB> {
    let rows = delay_rows(a);
    let keys: std::collections::BTreeSet<(&str, &str)> = a
        .races
        .iter()
        .filter(|r| !r.attempt_delays_ms.is_empty())
        .map(|r| (&*r.client, &*r.service))
        .collect();
    let caption = if keys.len() > rows.len() {
        format!(
            "{} ({} of {} clients and services: the most races)",
            Kind::AttemptDelays.title(),
            rows.len(),
            keys.len()
        )
    } else {
        Kind::AttemptDelays.title().to_string()
    };
    let title = caption.as_str();
    if rows.is_empty() {
        return nothing(root, title, "no race reached a second address");
    }
    let xmax = rows
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .fold(2100.0f64, f64::max)
        * 1.05;
    let n = rows.len();
    let mut entries: Vec<Entry> = CAD_LINES
        .iter()
        .map(|&(_, name, color)| (Swatch::Line(color), name.to_string()))
        .collect();
    entries.push((Swatch::Dot(V6), "one race".into()));
    let area = frame(root, title, &entries)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            rows.get(*i).map(|r| r.0.clone()).unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc("first Connection Attempt Delay of each race")
        .x_label_formatter(&|v| tick(*v, "ms"))
        .y_desc("client → service")
        .y_labels(n)
        .y_label_formatter(&label)
        .draw()?;
    for (x, _, color) in CAD_LINES {
        chart.draw_series(LineSeries::new(
            [(x, SegmentValue::Exact(0)), (x, SegmentValue::Exact(n))],
            color.stroke_width(2),
        ))?;
    }
    chart.draw_series(rows.iter().enumerate().flat_map(|(i, (_, v))| {
        v.iter()
            .map(move |&d| Circle::new((d, SegmentValue::CenterOf(i)), 5, V6.mix(0.7).filled()))
    }))?;
    for (i, (label, v)) in rows.iter().enumerate() {
        for &d in v {
            let p = chart.backend_coord(&(d, SegmentValue::CenterOf(i)));
            tips.push(point_tip(
                p,
                6,
                format!("{label}: a race's first attempt delay {}", tick(d, "ms")),
            ));
        }
    }
    Ok(())
}

/// The sequences the chart draws (at most [`CHART_ROWS`]: the most switches, then the most
/// connections), in the analysis' order.
fn sequence_rows(a: &Analysis) -> Vec<&racetrace_core::model::Sequence> {
    let mut rows: Vec<(usize, &racetrace_core::model::Sequence)> =
        a.sequences.iter().enumerate().collect();
    if rows.len() > CHART_ROWS {
        rows.sort_by_key(|(i, s)| {
            let switches = s.family_switches + s.backend_switches;
            (
                std::cmp::Reverse(switches),
                std::cmp::Reverse(s.kept.len()),
                *i,
            )
        });
        rows.truncate(CHART_ROWS);
        rows.sort_by_key(|r| r.0);
    }
    rows.into_iter().map(|r| r.1).collect()
}

fn sequences<DB: DrawingBackend>(
    a: &Analysis,
    root: &DrawingArea<DB, Shift>,
    tips: &mut Vec<Tip>,
) -> Res<DB> {
    let rows = sequence_rows(a);
    if rows.is_empty() {
        return nothing(
            root,
            Kind::Sequences.title(),
            "no client kept two connections to one service",
        );
    }
    let caption = if rows.len() < a.sequences.len() {
        format!(
            "{} ({} of {} sequences: the most switches)",
            Kind::Sequences.title(),
            rows.len(),
            a.sequences.len()
        )
    } else {
        Kind::Sequences.title().to_string()
    };
    // A row of a long capture holds tens of thousands of connections: each draws at most its
    // share of the chart's points, both sides of every switch kept.
    let drawn: Vec<Vec<racetrace_core::model::Kept>> = rows
        .iter()
        .map(|s| {
            let at = switch_points(&s.kept, CHART_POINTS / CHART_ROWS, |k| {
                (k.family, k.backend)
            });
            at.into_iter()
                .filter_map(|i| s.kept.get(i).copied())
                .collect()
        })
        .collect();
    let (shown, kept) = (
        drawn.iter().map(Vec::len).sum::<usize>(),
        rows.iter().map(|s| s.kept.len()).sum::<usize>(),
    );
    let caption = if shown < kept {
        format!("{caption}; {shown} of {kept} connections drawn, every switch among them")
    } else {
        caption
    };
    let title = caption.as_str();
    let epoch = a.epoch();
    // Each drawn connection's start, read in one pass in id order (a spilled list would
    // decode a block per lookup).
    let mut ids: Vec<usize> = drawn.iter().flatten().map(|k| k.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut starts: Vec<f64> = vec![f64::NAN; ids.len()];
    a.connections.for_ids(&ids, |k, c| {
        if let Some(slot) = starts.get_mut(k) {
            *slot = (c.rec.syn_time.get().unwrap_or(c.rec.first_time) - epoch) as f64 / 1e9;
        }
    });
    let start = |id: usize| {
        let k = ids.binary_search(&id).ok()?;
        starts.get(k).copied().filter(|x| !x.is_nan())
    };
    let xmax = drawn
        .iter()
        .flat_map(|ks| ks.iter().filter_map(|k| start(k.id)))
        .fold(1.0f64, f64::max)
        * 1.03;
    let n = rows.len();
    let mut entries: Vec<Entry> = vec![
        (Swatch::Ring, "IPv6 (circle)".into()),
        (Swatch::Triangle, "IPv4 (triangle)".into()),
    ];
    entries.extend(backend_entries(a));
    let area = frame(root, title, &entries)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => rows
            .get(*i)
            .map(|s| format!("{} → {}", s.client, s.service))
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc("connection start (since the first packet)")
        .x_label_formatter(&|v| tick(*v, "s"))
        .y_desc("client → service")
        .y_labels(n)
        .y_label_formatter(&label)
        .draw()?;
    // Backend `Bn` is `backends[n - 1]`, drawn in the palette's colour n - 1.
    let color_of = |n: u32| match n {
        0 => GREY,
        n => PALETTE[(n as usize - 1) % PALETTE.len()],
    };
    for (i, (seq, ks)) in rows.iter().zip(&drawn).enumerate() {
        for k in ks {
            let (c, fam) = (k.id, k.family);
            let Some(x) = start(c) else { continue };
            let p = (x, SegmentValue::CenterOf(i));
            let px = chart.backend_coord(&p);
            let color = color_of(k.backend).filled();
            match fam {
                Family::Ipv6 => chart.draw_series([Circle::new(p, 6, color)])?,
                Family::Ipv4 => chart.draw_series([TriangleMarker::new(p, 7, color)])?,
            };
            let backend = k
                .backend_name()
                .map_or("backend unknown".into(), |b| format!("backend {b}"));
            tips.push(point_tip(
                px,
                7,
                format!(
                    "#{c} {} → {} over IPv{} at {} · {backend}",
                    seq.client,
                    seq.service,
                    fam.digit(),
                    tick(x, "s")
                ),
            ));
        }
    }
    Ok(())
}

/// (cancel stage, fate, count), in stage order.
fn fate_rows(a: &Analysis) -> Vec<(Stage, &'static str, usize)> {
    let mut by: BTreeMap<(Stage, &'static str), usize> = BTreeMap::new();
    for r in &a.races {
        for c in &r.also_ran_cancel {
            *by.entry((c.stage, c.fate.as_str())).or_default() += 1;
        }
    }
    by.into_iter().map(|((s, f), n)| (s, f, n)).collect()
}

fn fates<DB: DrawingBackend>(
    a: &Analysis,
    root: &DrawingArea<DB, Shift>,
    tips: &mut Vec<Tip>,
) -> Res<DB> {
    let title = Kind::Fates.title();
    let rows = fate_rows(a);
    if rows.is_empty() {
        return nothing(root, title, "no also-rans in this capture");
    }
    let n = rows.len();
    let xmax = rows.iter().map(|r| r.2).max().unwrap_or(1) as f64 * 1.05 + 0.5;
    let harmful = RGBColor(214, 39, 40);
    let ok = RGBColor(44, 160, 44);
    let kinds = [
        (false, "cancelled by the TCP handshake or TLS", ok),
        (true, "cancelled after sending application data", harmful),
    ];
    let entries: Vec<Entry> = kinds
        .iter()
        .map(|&(_, name, c)| (Swatch::Box(c), name.to_string()))
        .collect();
    let area = frame(root, title, &entries)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(300)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => rows
            .get(*i)
            .map(|(s, f, _)| format!("cancelled at {} · {}", s.as_str(), f.replace('_', " ")))
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc("also-rans (count)")
        .x_label_formatter(&|v| tick(*v, ""))
        .y_desc("cancel stage · fate")
        .y_labels(n)
        .y_label_formatter(&label)
        .draw()?;
    for (i, &(stage, fate, n)) in rows.iter().enumerate() {
        let color = if stage >= Stage::Http { harmful } else { ok };
        let (x0, x1) = (
            (0.0, SegmentValue::Exact(i)),
            (n as f64, SegmentValue::Exact(i + 1)),
        );
        let (p0, p1) = (chart.backend_coord(&x0), chart.backend_coord(&x1));
        chart.draw_series([Rectangle::new([x0, x1], color.mix(0.8).filled())])?;
        tips.push(box_tip(
            p0,
            p1,
            format!(
                "{n} also-ran{} cancelled at {} · {}",
                if n == 1 { "" } else { "s" },
                stage.as_str(),
                fate.replace('_', " ")
            ),
        ));
    }
    Ok(())
}

/// The legend entries for the backends' colours, and the colour of none.
fn backend_entries(a: &Analysis) -> Vec<Entry> {
    let mut out: Vec<Entry> = a
        .backends
        .iter()
        .enumerate()
        .map(|(bi, b)| {
            (
                Swatch::Box(PALETTE[bi % PALETTE.len()]),
                format!("backend {}", b.id),
            )
        })
        .collect();
    out.push((Swatch::Box(GREY), "backend unknown".into()));
    out
}
