//! The page's findings: what went wrong first (each sentence with the rule it refers to and
//! a link to its evidence), then what the capture shows.

use super::Finding;
use racetrace_core::domain::{ms_between, Stage};
use racetrace_core::model::{Analysis, Race};

/// Plain-words findings, the worst first.
pub(super) fn findings(a: &Analysis, cancel_by: Stage) -> Vec<Finding> {
    let mut out = harms(a, cancel_by);
    out.extend(facts(a));
    if out.is_empty() {
        out.push(Finding {
            text: "No connection races, backend switches or stale reuses in this capture.".into(),
            bad: false,
            href: None,
        });
    }
    out
}

/// What went wrong: duplicate upgrades and requests, late cancels, stale reuses; each one
/// sentence with the rule it refers to, linked to its first piece of evidence.
fn harms(a: &Analysis, cancel_by: Stage) -> Vec<Finding> {
    let s = &a.summary;
    let mut out = Vec::new();
    let mut say = |text: String, href: Option<String>| {
        out.push(Finding {
            text,
            bad: true,
            href,
        });
    };
    let first = |f: &dyn Fn(&Race) -> bool| {
        a.races
            .iter()
            .find(|r| f(r))
            .map(|r| format!("#race-{}", r.id))
    };
    if s.duplicate_upgrades > 0 {
        let inferred = s.duplicate_upgrades_inferred;
        say(
            format!(
                "{} of {} races sent a WebSocket upgrade on both paths, so the server opened two sessions for one client (RFC 6455); RFC 8305 §6 says the loser should have been cancelled once the winner's TCP handshake completed{}.",
                s.duplicate_upgrades,
                s.races,
                if inferred > 0 {
                    format!(" ({inferred} inferred from TLS application data)")
                } else {
                    String::new()
                }
            ),
            first(&|r| r.duplicate_upgrade),
        );
    }
    let creds = s.duplicate_requests_with_credentials;
    if creds > 0 {
        say(
            format!("{creds} races sent a duplicate request carrying Authorization or a Cookie on the losing path: credentials went out twice and the server did the work twice (RFC 9110 §9.2.2)."),
            first(&|r| r.duplicate_request.as_deref().is_some_and(|d| d.authorization || d.cookie)),
        );
    }
    let late = s.late_cancels;
    if late > 0 {
        say(
            format!(
                "{late} also-rans were cancelled after the winner connected and beyond the {} stage (RFC 8305 §6; the Happy Eyeballs v3 draft allows waiting for TLS at most).",
                cancel_by.as_str()
            ),
            first(&|r| r.late_cancels() > 0),
        );
    }
    let hev3: Vec<&Race> = a.races.iter().filter(|r| !r.hev3.is_empty()).collect();
    if !hev3.is_empty() {
        let mut codes: Vec<(&str, usize)> = Vec::new();
        for code in hev3.iter().flat_map(|r| r.hev3.iter()) {
            match codes.iter_mut().find(|c| c.0 == code.as_str()) {
                Some(c) => c.1 += 1,
                None => codes.push((code.as_str(), 1)),
            }
        }
        let list: Vec<String> = codes
            .iter()
            .map(|(c, n)| format!("{} ({n})", c.replace('_', " ")))
            .collect();
        say(
            format!(
                "{} of {} races broke a Happy Eyeballs v3 rule (draft-ietf-happy-happyeyeballs-v3: QUIC and IPv6 first, a 50 ms Resolution Delay, attempt delays of 10 ms to 2 s): {}.",
                hev3.len(),
                s.races,
                list.join(", ")
            ),
            hev3.first().map(|r| format!("#race-{}", r.id)),
        );
    }
    if s.stale_reuses > 0 {
        let retried = s.stale_reuses_retried;
        let mut causes: Vec<(&str, usize)> = Vec::new();
        for e in &a.stale_reuses {
            match causes.iter_mut().find(|c| c.0 == e.cause.as_str()) {
                Some(c) => c.1 += 1,
                None => causes.push((e.cause.as_str(), 1)),
            }
        }
        let causes: Vec<String> = causes
            .iter()
            .map(|(c, n)| format!("{} {n}", c.replace('_', " ")))
            .collect();
        say(
            format!(
                "{} sent on a keep-alive connection the server had already given up ({}): {} failed, and {} retried on a new connection (RFC 9112 §9.3.1: a client must be ready to retry when the server closes an idle connection).",
                match s.stale_reuses {
                    1 => "1 request was".to_string(),
                    n => format!("{n} requests were"),
                },
                causes.join(", "),
                if s.stale_reuses == 1 { "it" } else { "each" },
                match retried {
                    1 => "1 was".to_string(),
                    n => format!("{n} were"),
                }
            ),
            Some("#stale-reuses".into()),
        );
    }
    out
}

/// What the capture shows of its services, races, clients and backends.
fn facts(a: &Analysis) -> Vec<Finding> {
    let s = &a.summary;
    let mut out = Vec::new();
    let mut say = |bad: bool, text: String| {
        out.push(Finding {
            text,
            bad,
            href: None,
        })
    };
    for f in &a.floods {
        say(
            true,
            format!(
                "SYN flood on {} (port {}): {} half-open attempts from {} sources over {:.1} s, up to {} a second; {} answered, {} reset.",
                f.service,
                f.server_port,
                f.attempts,
                f.sources,
                ms_between(f.start_time, f.end_time) / 1000.0,
                f.peak_per_s,
                f.answered,
                f.reset
            ),
        );
    }
    for sc in &a.scans {
        let target = match (&sc.host, sc.port) {
            (Some(h), _) => format!("{} ports of {h}", sc.targets),
            (None, Some(p)) => format!("port {p} of {} hosts", sc.targets),
            _ => format!("{} targets", sc.targets),
        };
        say(
            true,
            format!(
                "{} scanned {target} ({} connections, {} open).",
                sc.source, sc.attempts, sc.open
            ),
        );
    }
    for h in &a.health_checks {
        say(
            false,
            format!(
                "{} checks {} (port {}) every {:.0} ms: {} connect-and-close connections.",
                h.source, h.service, h.server_port, h.interval_ms, h.checks
            ),
        );
    }
    for l in a.listeners.iter().filter(|l| l.unexplained > 0) {
        say(
            false,
            format!(
                "{} (port {}) saw {} short-lived connections: {} also-rans, {} flood, {} scan, {} health checks, {} unexplained.",
                l.service, l.server_port, l.short_lived, l.also_ran, l.flood, l.scan, l.health_check, l.unexplained
            ),
        );
    }
    for svc in &a.services {
        if let Some(t) = svc.server_idle_timeout_ms {
            say(
                false,
                format!(
                    "{} (port {}) closes idle connections after {:.0} ms (median of {}).",
                    svc.name, svc.server_port, t, svc.server_idle_closes
                ),
            );
        }
    }
    if s.races > 0 {
        let (v6_first, v4_won) = (s.races_ipv6_first, s.races_ipv4_won);
        say(
            false,
            format!(
                "{} races with {} also-rans: IPv6 tried first in {}, IPv4 won {}; median first attempt delay {}.",
                s.races,
                s.also_rans,
                v6_first,
                v4_won,
                s.median_attempt_delay_ms
                    .map(|m| format!("{m:.1} ms"))
                    .unwrap_or_else(|| "n/a".into())
            ),
        );
    }
    for h in &a.hosts {
        if let Some(d) = h.delays() {
            let near = d
                .near_default_ms
                .map(|n| format!(" near {n} ms"))
                .unwrap_or_default();
            say(
                d.median_ms < 100.0 || d.max_ms > 2000.0,
                format!(
                    "Client {}: attempt delay {}{} ({:.1}–{:.1} ms over {} races).",
                    h.label(),
                    d.class.replace('_', " "),
                    near,
                    d.min_ms,
                    d.max_ms,
                    d.races
                ),
            );
        }
    }
    if !a.backends.is_empty() || s.family_switches > 0 {
        let unknown = s.timestamped_without_backend;
        say(
            s.backend_switches > 0,
            format!(
                "{} backends told apart by TCP timestamp clocks; {} family switches and {} backend switches in client sequences; {} connections with timestamps have no identifiable backend.",
                s.backends, s.family_switches, s.backend_switches, unknown
            ),
        );
    }
    out
}
