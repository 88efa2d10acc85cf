//! Scores a JSON report against a busy capture's truth ([`super::busy::TruthConn`]): pairwise
//! precision and recall of backends and of race membership, role accuracy, family switches,
//! false duplicate upgrades and stale reuses. Used by the busy-capture test and by
//! `bench/score`.

use std::collections::HashMap;

use serde_json::Value;

use super::busy::TruthConn;

/// Pair counts of one clustering against the truth.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pairs {
    /// Pairs in one predicted cluster and one true cluster.
    pub both: u64,
    /// Pairs in one predicted cluster.
    pub predicted: u64,
    /// Pairs in one true cluster.
    pub actual: u64,
}

impl Pairs {
    /// Share of predicted pairs that are true (1 when nothing was predicted).
    pub fn precision(&self) -> f64 {
        if self.predicted == 0 {
            1.0
        } else {
            self.both as f64 / self.predicted as f64
        }
    }

    /// Share of true pairs that were predicted (1 when there are none).
    pub fn recall(&self) -> f64 {
        if self.actual == 0 {
            1.0
        } else {
            self.both as f64 / self.actual as f64
        }
    }

    /// Count pairs from (predicted, actual) labels; `None` is in no cluster.
    fn of<'a>(labels: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Pairs {
        let mut cells: HashMap<(&str, &str), u64> = HashMap::new();
        let mut pred: HashMap<&str, u64> = HashMap::new();
        let mut act: HashMap<&str, u64> = HashMap::new();
        for (p, a) in labels {
            if let Some(p) = p {
                *pred.entry(p).or_default() += 1;
            }
            if let Some(a) = a {
                *act.entry(a).or_default() += 1;
            }
            if let (Some(p), Some(a)) = (p, a) {
                *cells.entry((p, a)).or_default() += 1;
            }
        }
        let pairs = |m: &mut dyn Iterator<Item = u64>| m.map(|n| n * n.saturating_sub(1) / 2).sum();
        Pairs {
            both: pairs(&mut cells.values().copied()),
            predicted: pairs(&mut pred.values().copied()),
            actual: pairs(&mut act.values().copied()),
        }
    }
}

/// How a report compares with the truth.
#[derive(Clone, Debug, Default)]
pub struct Score {
    /// Connections in the truth.
    pub truth_connections: usize,
    /// Report connections matched to a truth connection by 4-tuple.
    pub matched: usize,
    /// Backends: pairs over connections with a server TSval whose clock is not random per
    /// connection and shows on two or more connections (precision over every labelled pair).
    pub backends: Pairs,
    /// Backends reported.
    pub backends_reported: usize,
    /// Clocks shown on two or more connections (the backends to find).
    pub clocks: usize,
    /// Connections of random-offset clocks, and how many of them were given a backend.
    pub random: (usize, usize),
    /// Races: pairs of attempts in one race.
    pub races: Pairs,
    /// Races reported, and in the truth.
    pub race_count: (usize, usize),
    /// Connections whose role is the truth's, of those matched.
    pub roles_right: usize,
    /// Family switches reported, and in the truth.
    pub family_switches: (u64, u64),
    /// Duplicate upgrades reported (the busy generator makes none).
    pub duplicate_upgrades: usize,
    /// Stale reuses reported, of them on a truly stale connection, and in the truth.
    pub stale: (usize, usize, usize),
}

impl Score {
    /// Role accuracy.
    pub fn role_accuracy(&self) -> f64 {
        if self.matched == 0 {
            1.0
        } else {
            self.roles_right as f64 / self.matched as f64
        }
    }

    /// Share of random-offset connections given a backend.
    pub fn random_labelled(&self) -> f64 {
        if self.random.0 == 0 {
            0.0
        } else {
            self.random.1 as f64 / self.random.0 as f64
        }
    }

    /// Family switches reported against the truth, relative error.
    pub fn family_switch_error(&self) -> f64 {
        let (got, want) = self.family_switches;
        if want == 0 {
            got as f64
        } else {
            (got as f64 - want as f64).abs() / want as f64
        }
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "connections: {} in the truth, {} matched",
            self.truth_connections, self.matched
        )?;
        writeln!(
            f,
            "backends: {} reported for {} clocks; pairwise precision {:.4}, recall {:.4}; random-offset connections labelled {} of {} ({:.2} %)",
            self.backends_reported,
            self.clocks,
            self.backends.precision(),
            self.backends.recall(),
            self.random.1,
            self.random.0,
            100.0 * self.random_labelled()
        )?;
        writeln!(
            f,
            "races: {} reported, {} in the truth; membership precision {:.4}, recall {:.4}; role accuracy {:.4}",
            self.race_count.0,
            self.race_count.1,
            self.races.precision(),
            self.races.recall(),
            self.role_accuracy()
        )?;
        writeln!(
            f,
            "family switches: {} reported, {} in the truth ({:.2} % off); duplicate upgrades: {} (truth 0)",
            self.family_switches.0,
            self.family_switches.1,
            100.0 * self.family_switch_error(),
            self.duplicate_upgrades
        )?;
        write!(
            f,
            "stale reuses: {} reported, {} on stale connections, {} in the truth",
            self.stale.0, self.stale.1, self.stale.2
        )
    }
}

/// Compare `report` (one analysis document) with `truth`.
pub fn score(report: &Value, truth: &[TruthConn]) -> Score {
    let key = |ip: &str, cp: u64, sip: &str, sp: u64| format!("{ip} {cp} {sip} {sp}");
    let by_tuple: HashMap<String, usize> = truth
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                key(
                    &t.client,
                    u64::from(t.client_port),
                    &t.server,
                    u64::from(t.server_port),
                ),
                i,
            )
        })
        .collect();
    let empty = Vec::new();
    let conns = report["connections"].as_array().unwrap_or(&empty);
    // (report connection, truth index)
    let mut matched: Vec<(&Value, &TruthConn)> = Vec::new();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    for c in conns {
        let k = key(
            c["client_ip"].as_str().unwrap_or(""),
            c["client_port"].as_u64().unwrap_or(0),
            c["server_ip"].as_str().unwrap_or(""),
            c["server_port"].as_u64().unwrap_or(0),
        );
        if let Some(t) = by_tuple.get(&k).and_then(|&i| truth.get(i)) {
            if let Some(id) = c["id"].as_u64() {
                by_id.insert(id, matched.len());
            }
            matched.push((c, t));
        }
    }
    let mut s = Score {
        truth_connections: truth.len(),
        matched: matched.len(),
        ..Score::default()
    };

    score_backends(&mut s, report, &matched);
    score_races(&mut s, report, &matched, truth);
    // Family switches: the truth's kept connections per (host, service) in SYN order.
    let mut kept: HashMap<(&str, &str), Vec<(f64, u8)>> = HashMap::new();
    for t in truth.iter().filter(|t| t.role != "also_ran") {
        kept.entry((&t.host, &t.service))
            .or_default()
            .push((t.syn_ms, t.family));
    }
    let want: u64 = kept
        .values_mut()
        .map(|v| {
            v.sort_by(|x, y| x.0.total_cmp(&y.0));
            v.windows(2).filter(|w| w[0].1 != w[1].1).count() as u64
        })
        .sum();
    s.family_switches = (
        report["summary"]["family_switches"].as_u64().unwrap_or(0),
        want,
    );
    s.duplicate_upgrades = report["races"].as_array().map_or(0, |r| {
        r.iter().filter(|r| r["duplicate_upgrade"] == true).count()
    });
    let stale = report["stale_reuses"].as_array().unwrap_or(&empty);
    s.stale = (
        stale.len(),
        stale
            .iter()
            .filter(|r| {
                r["connection"]
                    .as_u64()
                    .and_then(|id| by_id.get(&id))
                    .and_then(|&i| matched.get(i))
                    .is_some_and(|(_, t)| t.stale)
            })
            .count(),
        truth.iter().filter(|t| t.stale).count(),
    );
    s
}

/// Backends: clocks seen on two or more connections with timestamps.
fn score_backends(s: &mut Score, report: &Value, matched: &[(&Value, &TruthConn)]) {
    let with_ts: Vec<&(&Value, &TruthConn)> = matched
        .iter()
        .filter(|(c, _)| !c["server_tsval"].is_null())
        .collect();
    let mut clock_count: HashMap<&str, usize> = HashMap::new();
    for (_, t) in &with_ts {
        if !t.random_clock {
            *clock_count.entry(&t.clock).or_default() += 1;
        }
    }
    s.clocks = clock_count.values().filter(|&&n| n >= 2).count();
    s.backends = Pairs::of(with_ts.iter().map(|(c, t)| {
        let counted = !t.random_clock && clock_count.get(t.clock.as_str()).is_some_and(|&n| n >= 2);
        (c["backend"].as_str(), counted.then_some(t.clock.as_str()))
    }));
    // Pairs of labelled connections whose clocks differ, among all labelled ones (random
    // ones included), count against precision.
    let all = Pairs::of(
        with_ts
            .iter()
            .map(|(c, t)| (c["backend"].as_str(), Some(t.clock.as_str()))),
    );
    s.backends.predicted = all.predicted;
    s.backends.both = s.backends.both.min(all.both);
    s.backends_reported = report["backends"].as_array().map_or(0, Vec::len);
    let random: Vec<_> = with_ts.iter().filter(|(_, t)| t.random_clock).collect();
    s.random = (
        random.len(),
        random
            .iter()
            .filter(|(c, _)| !c["backend"].is_null())
            .count(),
    );
}

/// Races: membership pairs over attempts whose SYN is in the capture, and roles.
fn score_races(
    s: &mut Score,
    report: &Value,
    matched: &[(&Value, &TruthConn)],
    truth: &[TruthConn],
) {
    let race_label = |v: &Value| v.as_u64().map(|r| r.to_string());
    let labels: Vec<(Option<String>, Option<String>)> = matched
        .iter()
        .filter(|(c, _)| c["handshake_seen"].as_bool() == Some(true))
        .map(|(c, t)| (race_label(&c["race"]), t.race.map(|r| r.to_string())))
        .collect();
    s.races = Pairs::of(labels.iter().map(|(p, a)| (p.as_deref(), a.as_deref())));
    s.race_count = (report["races"].as_array().map_or(0, Vec::len), {
        let mut r: Vec<u64> = truth.iter().filter_map(|t| t.race).collect();
        r.sort_unstable();
        r.dedup();
        r.len()
    });
    s.roles_right = matched
        .iter()
        .filter(|(c, t)| c["role"].as_str() == Some(t.role.as_str()))
        .count();
    s.matched = matched.len();
}

/// Read a truth file (one JSON object per line).
pub fn read_truth(text: &str) -> Vec<TruthConn> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
