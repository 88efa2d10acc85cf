//! What every chart has around its data: the title, a legend in a band of its own under the
//! title (never over a bar or a point), and hover details. The details are transparent
//! shapes with a `<title>` over each drawn item, added to the SVG only: a standalone SVG
//! shows them as the viewer's tooltip, and the report page's script as its own.

use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::*;

/// A legend entry's sample mark.
#[derive(Clone, Copy)]
pub(super) enum Swatch {
    /// A filled box (bars, backends).
    Box(RGBColor),
    /// A filled box with a black border (QUIC attempts).
    Outlined(RGBColor),
    /// A filled dot (points, milestones).
    Dot(RGBColor),
    /// An outlined dot (a shape whose fill says something else).
    Ring,
    /// An outlined triangle (likewise).
    Triangle,
    /// A line (thresholds).
    Line(RGBColor),
    /// A cross (the cancel).
    Cross(RGBColor),
}

/// One legend entry: its mark and its words.
pub(super) type Entry = (Swatch, String);

const LEGEND_FONT: u32 = 14;
const ROW: i32 = 22;

/// Draw `title` and the legend's `entries` on `root`, and return the area left for the
/// data. Entries are laid out left to right and wrap onto more rows as the width needs.
pub(super) fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[Entry],
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let below = root.titled(title, ("sans-serif", 22).into_font().style(FontStyle::Bold))?;
    if entries.is_empty() {
        return Ok(below);
    }
    let font = ("sans-serif", LEGEND_FONT).into_font();
    let text_style = font.color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let (w, _) = below.dim_in_pixel();
    let (left, right) = (24i32, w as i32 - 12);
    // Place each entry: (x, row), its width from the font's own metrics.
    let mut at = Vec::with_capacity(entries.len());
    let (mut x, mut row) = (left, 0i32);
    for (_, text) in entries {
        let tw = below
            .estimate_text_size(text, &text_style)
            .map_or(8 * text.len() as u32, |s| s.0) as i32;
        let need = 22 + tw;
        if x > left && x + need > right {
            x = left;
            row += 1;
        }
        at.push((x, row));
        x += need + 20;
    }
    let band = (row + 1) * ROW + 6;
    let (strip, rest) = below.split_vertically(band);
    for ((swatch, text), &(x, row)) in entries.iter().zip(&at) {
        let y = row * ROW + ROW / 2 + 2;
        let (cx, x0) = (x + 7, x);
        match *swatch {
            Swatch::Box(c) => {
                strip.draw(&Rectangle::new([(x0, y - 5), (x0 + 14, y + 5)], c.filled()))?
            }
            Swatch::Outlined(c) => {
                let corners = [(x0, y - 5), (x0 + 14, y + 5)];
                strip.draw(&Rectangle::new(corners, c.filled()))?;
                strip.draw(&Rectangle::new(corners, BLACK.stroke_width(2)))?
            }
            Swatch::Dot(c) => strip.draw(&Circle::new((cx, y), 5, c.filled()))?,
            Swatch::Ring => strip.draw(&Circle::new((cx, y), 6, BLACK.stroke_width(1)))?,
            Swatch::Triangle => {
                strip.draw(&TriangleMarker::new((cx, y), 7, BLACK.stroke_width(1)))?
            }
            Swatch::Line(c) => strip.draw(&PathElement::new(
                [(x0, y), (x0 + 16, y)],
                c.stroke_width(2),
            ))?,
            Swatch::Cross(c) => strip.draw(&Cross::new((cx, y), 5, c.stroke_width(2)))?,
        }
        strip.draw(&Text::new(text.clone(), (x + 20, y), text_style.clone()))?;
    }
    Ok(rest)
}

/// Height the legend band of `entries` takes at [`WIDTH`] (for a chart's size).
pub(super) fn legend_height(entries: usize) -> u32 {
    // About four entries fit on a row; a chart's size need not be exact, only enough.
    let rows = entries.div_ceil(4).max(1) as u32;
    rows * ROW as u32 + 6
}

/// A hover detail: a region of the chart, in pixels, and what it shows.
pub(super) struct Tip {
    /// Left, top, right, bottom in the chart's pixels.
    pub(super) rect: (i32, i32, i32, i32),
    /// The words shown on hover.
    pub(super) text: String,
}

/// Most hover regions in one chart: past this they are thinned evenly.
const MAX_TIPS: usize = 2000;

/// The tips as an SVG group: a transparent shape with a `<title>` over each item, to be
/// placed as the SVG's last child so it is on top.
pub(super) fn tips_svg(mut tips: Vec<Tip>) -> String {
    thin(&mut tips, MAX_TIPS);
    let mut out = String::from(r#"<g class="tips" fill="transparent">"#);
    for t in &tips {
        let (x0, y0, x1, y1) = t.rect;
        let (w, h) = ((x1 - x0).max(6), (y1 - y0).max(6));
        let (x, y) = (x0 - (w - (x1 - x0)) / 2, y0 - (h - (y1 - y0)) / 2);
        out.push_str(&format!(
            r#"<rect x="{x}" y="{y}" width="{w}" height="{h}"><title>{}</title></rect>"#,
            crate::human::esc(&t.text)
        ));
    }
    out.push_str("</g>");
    out
}

/// A tip over a point drawn at `p` (pixels), `r` pixels each way.
pub(super) fn point_tip(p: (i32, i32), r: i32, text: String) -> Tip {
    Tip {
        rect: (p.0 - r, p.1 - r, p.0 + r, p.1 + r),
        text,
    }
}

/// A tip over the box between two corners (pixels).
pub(super) fn box_tip(a: (i32, i32), b: (i32, i32), text: String) -> Tip {
    Tip {
        rect: (a.0.min(b.0), a.1.min(b.1), a.0.max(b.0), a.1.max(b.1)),
        text,
    }
}
