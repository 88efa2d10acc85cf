//! Words and numbers for people, shared by the page, the charts and the terminal: relative
//! times, tick values with units, and escaping. The machine outputs (JSON, CSV, Parquet) keep
//! their raw forms and never use these.

use racetrace_core::domain::{iso8601, Nanos};

/// A relative time for a person: `+0.0 ms`, `+253.1 ms`, `+12.40 s`, `-41.2 ms`.
pub fn rel_ms(ms: f64) -> String {
    let sign = if ms < 0.0 { "-" } else { "+" };
    let a = ms.abs();
    if a < 10_000.0 {
        format!("{sign}{a:.1} ms")
    } else if a < 600_000.0 {
        format!("{sign}{:.2} s", a / 1000.0)
    } else {
        format!("{sign}{:.1} min", a / 60_000.0)
    }
}

/// Escape text for SVG and HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick value for a person: no trailing `.0`, thousands as `k` past 10,000, and the unit
/// (`250 ms`, `1.5 s`, `12k`).
pub fn tick(v: f64, unit: &str) -> String {
    let sep = if unit.is_empty() { "" } else { " " };
    let a = v.abs();
    let n = if a >= 10_000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        let t = format!("{v:.3}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    format!("{n}{sep}{unit}")
}

/// The UTC date of `t` (`2026-11-01`): stated once above rows that then give [`clock`].
pub fn day(t: Nanos) -> String {
    let iso = iso8601(t);
    iso.get(..10).unwrap_or(&iso).to_string()
}

/// `t` as a time of day in UTC to the millisecond (`00:00:00.300`) when it falls on `day`,
/// the whole ISO 8601 form otherwise (a capture that crosses midnight).
pub fn clock(t: Nanos, day: &str) -> String {
    let iso = iso8601(t);
    match (iso.get(..10), iso.get(11..23)) {
        (Some(d), Some(time)) if d == day => time.to_string(),
        _ => iso,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_a_person_would() {
        assert_eq!(rel_ms(0.0), "+0.0 ms");
        assert_eq!(rel_ms(253.14), "+253.1 ms");
        assert_eq!(rel_ms(-41.26), "-41.3 ms");
        assert_eq!(rel_ms(12_400.0), "+12.40 s");
        assert_eq!(rel_ms(900_000.0), "+15.0 min");
    }

    #[test]
    fn times_of_day_under_one_date() {
        let t = 1_793_491_200_300_000_000; // 2026-11-01T00:00:00.300Z
        assert_eq!(day(t), "2026-11-01");
        assert_eq!(clock(t, "2026-11-01"), "00:00:00.300");
        let next = t + 86_400_000_000_000;
        assert_eq!(clock(next, "2026-11-01"), "2026-11-02T00:00:00.300000Z");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn ticks_read_without_float_noise_and_with_units() {
        assert_eq!(tick(400_000.0, ""), "400k");
        assert_eq!(tick(1000.0, "ms"), "1000 ms");
        assert_eq!(tick(250.0, "ms"), "250 ms");
        assert_eq!(tick(2.5, "s"), "2.5 s");
        assert_eq!(tick(0.125, "s"), "0.125 s");
        assert_eq!(tick(-0.5, "s"), "-0.5 s");
        assert_eq!(tick(12.26, "ms"), "12.3 ms");
    }
}
