//! The CI gate: rules over each capture's analysis. A violated rule is one line naming the
//! capture, the race or connection, its record numbers, what and how much; `racetrace check`
//! exits 1 when any rule is violated (2 still wins for unreadable input), and can write JUnit
//! XML with one test case per capture and rule.

use std::fmt::Write as _;

use racetrace_core::model::Analysis;

/// Rules `--fail-on` can turn on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rule {
    /// A race sent the WebSocket upgrade on two or more attempts.
    DuplicateUpgrade,
    /// An also-ran was cancelled beyond `--cancel-by` after the winner connected.
    LateCancel,
    /// A request was sent on a connection the server had given up.
    StaleReuse,
    /// Successive kept connections of a client landed on different backends.
    BackendSwitch,
    /// A race broke a Happy Eyeballs v3 rule (`races[].hev3`: Resolution Delay, attempt
    /// delay bounds, family order and interleaving, QUIC and the advertised ALPN).
    #[value(name = "hev3-violation")]
    Hev3Violation,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::DuplicateUpgrade => "duplicate-upgrade",
            Rule::LateCancel => "late-cancel",
            Rule::StaleReuse => "stale-reuse",
            Rule::BackendSwitch => "backend-switch",
            Rule::Hev3Violation => "hev3-violation",
        }
    }
}

/// The thresholds and rules to check.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    /// Most also-rans per attempt (connections whose SYN was seen).
    pub max_also_ran_rate: Option<f64>,
    /// Largest attempt delay allowed, ms.
    pub max_attempt_delay_ms: Option<f64>,
    /// Findings that fail the check.
    pub fail_on: Vec<Rule>,
}

/// One rule's result on one capture.
#[derive(Clone, Debug)]
pub struct Case {
    /// Rule name.
    pub rule: &'static str,
    /// One line per violation (empty: passed).
    pub violations: Vec<String>,
}

fn records(a: &Analysis, ids: &[usize]) -> String {
    let (lo, hi) = ids
        .iter()
        .filter_map(|&i| a.connections.get(i))
        .fold((u64::MAX, 0), |(lo, hi), c| {
            (lo.min(c.rec.first_record), hi.max(c.rec.last_record))
        });
    if lo > hi {
        String::new()
    } else {
        format!("records {lo}–{hi}")
    }
}

/// Check one capture.
pub fn check(a: &Analysis, gate: &Gate) -> Vec<Case> {
    let mut cases = Vec::new();
    if let Some(max) = gate.max_also_ran_rate {
        cases.push(Case {
            rule: "max-also-ran-rate",
            violations: also_ran_rate(a, max),
        });
    }
    if let Some(max) = gate.max_attempt_delay_ms {
        cases.push(Case {
            rule: "max-attempt-delay",
            violations: attempt_delays(a, max),
        });
    }
    for &rule in &gate.fail_on {
        cases.push(Case {
            rule: rule.name(),
            violations: violations(a, rule),
        });
    }
    cases
}

/// The also-ran rate over `max`: also-rans over attempts whose SYN was seen.
fn also_ran_rate(a: &Analysis, max: f64) -> Vec<String> {
    let file = &a.capture.file;
    let attempts = a
        .connections
        .iter()
        .filter(|c| c.rec.handshake_seen)
        .count();
    let rate = if attempts == 0 {
        0.0
    } else {
        a.summary.also_rans as f64 / attempts as f64
    };
    let mut v = Vec::new();
    if rate > max {
        v.push(format!(
            "{file}: also-ran rate {rate:.3} ({} also-rans of {attempts} attempts) exceeds {max}",
            a.summary.also_rans
        ));
    }
    v
}

/// Every attempt delay over `max` ms.
fn attempt_delays(a: &Analysis, max: f64) -> Vec<String> {
    let file = &a.capture.file;
    a.races
        .iter()
        .flat_map(|r| {
            r.attempt_delays_ms
                .iter()
                .filter(move |&&d| d > max)
                .map(move |d| {
                    format!(
                        "{file}: race {} ({}, {}): attempt delay {d:.1} ms exceeds {max} ms",
                        r.id,
                        r.service,
                        records(a, &r.attempts)
                    )
                })
        })
        .collect()
}

/// One line per violation of `rule`.
fn violations(a: &Analysis, rule: Rule) -> Vec<String> {
    let file = &a.capture.file;
    match rule {
        Rule::DuplicateUpgrade => a
            .races
            .iter()
            .filter(|r| r.duplicate_upgrade)
            .map(|r| {
                format!(
                    "{file}: race {} ({}, {}): duplicate WebSocket upgrade on attempts {}{}",
                    r.id,
                    r.service,
                    records(a, &r.attempts),
                    r.attempts
                        .iter()
                        .map(|i| format!("#{i}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if r.duplicate_upgrade_inferred {
                        " (inferred from TLS application data)"
                    } else {
                        ""
                    }
                )
            })
            .collect(),
        Rule::LateCancel => a
            .races
            .iter()
            .flat_map(|r| {
                r.also_ran_cancel.iter().filter(|c| c.late).map(move |c| {
                    format!(
                        "{file}: race {} ({}): also-ran #{} ({}) cancelled at stage {} {} ms after the winner connected",
                        r.id,
                        r.service,
                        c.id,
                        records(a, &[c.id]),
                        c.stage.as_str(),
                        c.after_winner_ms
                            .map(|m| format!("{m:.1}"))
                            .unwrap_or_else(|| "(never)".into())
                    )
                })
            })
            .collect(),
        Rule::Hev3Violation => a
            .races
            .iter()
            .filter(|r| !r.hev3.is_empty())
            .map(|r| {
                format!(
                    "{file}: race {} ({}, {}): Happy Eyeballs v3: {}",
                    r.id,
                    r.service,
                    records(a, &r.attempts),
                    r.hev3.join(", ")
                )
            })
            .collect(),
        Rule::StaleReuse => a
            .stale_reuses
            .iter()
            .map(|e| {
                format!(
                    "{file}: connection #{} ({}, {}): request after {:.0} ms idle failed by {} ({})",
                    e.connection,
                    e.service,
                    records(a, &[e.connection]),
                    e.idle_ms,
                    e.failure.as_str(),
                    e.cause.as_str()
                )
            })
            .collect(),
        Rule::BackendSwitch => a
            .sequences
            .iter()
            .filter(|s| s.backend_switches > 0)
            .map(|s| {
                format!(
                    "{file}: client {} → {} ({}): {} backend switches over {} connections: {}",
                    s.client,
                    s.service,
                    records(a, &s.connections().collect::<Vec<_>>()),
                    s.backend_switches,
                    s.kept.len(),
                    s.strip()
                )
            })
            .collect(),
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per capture and rule; unreadable captures are errors.
pub fn junit(results: &[(String, Vec<Case>)], unreadable: &[(String, String)]) -> String {
    let tests: usize = results.iter().map(|r| r.1.len()).sum::<usize>() + unreadable.len();
    let failures: usize = results
        .iter()
        .flat_map(|r| r.1.iter())
        .filter(|c| !c.violations.is_empty())
        .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"racetrace check\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{}\">",
        unreadable.len()
    );
    for (capture, cases) in results {
        let f = cases.iter().filter(|c| !c.violations.is_empty()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\">",
            xml(capture),
            cases.len()
        );
        for c in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(capture),
                c.rule
            );
            if c.violations.is_empty() {
                out.push_str("/>\n");
            } else {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{} violations\">{}</failure>\n    </testcase>",
                    c.violations.len(),
                    xml(&c.violations.join("\n"))
                );
            }
        }
        out.push_str("  </testsuite>\n");
    }
    for (capture, err) in unreadable {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{0}\" tests=\"1\" failures=\"0\" errors=\"1\">\n    <testcase classname=\"{0}\" name=\"read\">\n      <error message=\"{1}\"/>\n    </testcase>\n  </testsuite>",
            xml(capture),
            xml(err)
        );
    }
    out.push_str("</testsuites>\n");
    out
}
