//! The race cards: one per race (the most telling first), each with its verdicts in words,
//! its ladder ([`super::ladder`]) and a Wireshark display filter.

use serde::Serialize;

use super::{ladder, Finding};
use crate::human::rel_ms;
use racetrace_core::domain::{iso8601, ms_between, Stage};
use racetrace_core::model::{Analysis, Connection, Fate, Race};

/// Most race cards on the page (the most telling first); every race is in the races table
/// and `races.csv`.
pub(super) const MAX_CARDS: usize = 200;
/// Cards open when the page loads.
const OPEN_CARDS: usize = 3;

#[derive(Serialize)]
pub(super) struct RaceCard {
    id: usize,
    open: bool,
    title: String,
    when: String,
    verdicts: Vec<Finding>,
    ladder: Option<String>,
    filter: String,
}

/// How telling a race is: harm first (duplicate upgrades, duplicate requests with
/// credentials, late cancels, broken cancel rules), then RFC 8305 findings.
fn telling(r: &Race) -> u32 {
    let creds = r
        .duplicate_request
        .as_deref()
        .is_some_and(|d| d.authorization || d.cookie);
    u32::from(r.duplicate_upgrade) * 16
        + u32::from(creds) * 8
        + u32::from(r.late_cancels() > 0) * 4
        + u32::from(!r.cancel_rules_broken.is_empty()) * 2
        + u32::from(!r.findings.is_empty() || !r.hev3.is_empty())
}

/// One Happy Eyeballs v3 finding in a sentence, with why it matters.
fn hev3_sentence(code: &str) -> String {
    let text = match code {
        "resolution_delay_not_honoured" => "Did not wait the 50 ms Resolution Delay for the AAAA answer before trying IPv4 (HEv3 draft): IPv6 lost before it could start.",
        "attempt_delay_below_10ms" => "A Connection Attempt Delay under 10 ms (HEv3 draft: never under 10 ms): the attempts are a burst, not a race.",
        "attempt_delay_below_100ms" => "A Connection Attempt Delay under the recommended 100 ms (HEv3 draft): more connections than the path needs.",
        "attempt_delay_above_2s" => "A Connection Attempt Delay over 2 s (HEv3 draft: at most 2 s): a dead path held the fetch up.",
        "ipv4_first" => "Tried IPv4 first although the AAAA answer had come (HEv3 draft: IPv6 first).",
        "families_not_interleaved" => "Tried two addresses of one family before the other (HEv3 draft: families interleaved).",
        "quic_not_tried" => "The HTTPS record offered h3 but no QUIC attempt was made (HEv3 draft: QUIC first when advertised).",
        "quic_not_advertised" => "Tried QUIC though the HTTPS record's ALPN did not offer h3 (HEv3 draft: attempts follow the advertised protocols).",
        "tcp_before_quic" => "Started TCP before QUIC although the HTTPS record offered h3 (HEv3 draft: QUIC preferred).",
        "svcb_priority_not_followed" => "The first attempt used a protocol the highest-priority HTTPS record did not offer (HEv3 draft, RFC 9460: candidates in SvcPriority order).",
        other => return format!("Happy Eyeballs v3: {}.", other.replace('_', " ")),
    };
    text.to_string()
}

/// The race cards: up to [`MAX_CARDS`], the most telling first, then in time order.
pub(super) fn race_cards(a: &Analysis, cancel_by: Stage) -> (Vec<RaceCard>, usize) {
    let mut order: Vec<&Race> = a.races.iter().collect();
    order.sort_by_key(|r| (std::cmp::Reverse(telling(r)), r.start_time, r.id));
    order.truncate(MAX_CARDS);
    let shown = order.len();
    let any_telling = order.first().is_some_and(|r| telling(r) > 0);
    let mut cards = a.connections.map_batched(
        &order,
        |r, ids| ids.extend(r.attempts.iter().copied()),
        |r, held| {
            let attempts: Vec<&Connection> =
                r.attempts.iter().filter_map(|&i| held.get(i)).collect();
            race_card(r, &attempts, cancel_by)
        },
    );
    for (k, c) in cards.iter_mut().enumerate() {
        let r = order.get(k);
        c.open = k < OPEN_CARDS && (r.is_some_and(|r| telling(r) > 0) || (!any_telling && k == 0));
    }
    (cards, a.races.len().saturating_sub(shown))
}

fn fate_words(f: Fate) -> &'static str {
    match f {
        Fate::NeverAnswered => "its SYNs were never answered",
        Fate::Refused => "the server refused it (RST)",
        Fate::LateSynackReset => "its SYN-ACK came after the client had given up, and was reset",
        Fate::AbortedBeforeConnect => "the client gave it up before any SYN-ACK",
        Fate::UnusedParallel => "it connected, carried nothing, and the client closed it",
        Fate::ClosedAfterConnect => "it connected, carried data, and the client closed it",
        Fate::LeftOpen => "it connected and the client never closed it in the capture",
    }
}

fn describe_attempt(c: &Connection) -> String {
    format!(
        "#{} to {} ({})",
        c.id,
        c.rec.server.ip,
        c.rec.family().as_str().replace("ipv", "IPv")
    )
}

fn race_card(r: &Race, attempts: &[&Connection], cancel_by: Stage) -> RaceCard {
    let mut v: Vec<Finding> = Vec::new();
    let mut say = |bad: bool, text: String| {
        v.push(Finding {
            text,
            bad,
            href: None,
        })
    };
    let by_id = |id: usize| attempts.iter().find(|c| c.id == id).copied();
    let winner = r.winner.and_then(by_id);
    match winner {
        Some(w) => {
            let at = w
                .rec
                .established_time
                .get()
                .map(|t| {
                    format!(
                        ", connected {} after the first SYN",
                        rel_ms(ms_between(r.start_time, t))
                    )
                })
                .unwrap_or_default();
            say(
                false,
                format!("Winner: attempt {}{at}.", describe_attempt(w)),
            );
        }
        None => say(
            false,
            "No attempt was kept: the client closed every one.".into(),
        ),
    }
    for (k, d) in r.attempt_delays_ms.iter().enumerate() {
        let bad = *d < 100.0 || *d > 2000.0;
        say(
            bad,
            format!(
                "Connection Attempt Delay {}: {d:.1} ms (RFC 8305 §5: 250 ms recommended, at least 100 ms, at most 2 s).",
                k + 1
            ),
        );
    }
    for c in &r.also_ran_cancel {
        let who = by_id(c.id).map_or_else(|| format!("#{}", c.id), describe_attempt);
        let after = c
            .after_winner_ms
            .map(|ms| format!(", {} after the winner connected", rel_ms(ms)))
            .unwrap_or_default();
        let late = if c.late {
            format!(" — a late cancel (beyond the {} stage)", cancel_by.as_str())
        } else {
            String::new()
        };
        say(
            c.late,
            format!(
                "Also-ran {who}: {}; given up at the {} stage{after}{late}.",
                fate_words(c.fate),
                c.stage.as_str()
            ),
        );
    }
    for rule in &r.cancel_rules_broken {
        let text = match *rule {
            "rfc8305_s6" => "Broke RFC 8305 §6: an also-ran was kept after the winner's TCP handshake completed, when it should have been cancelled.",
            "happy_eyeballs_v3" => "Kept beyond the TLS handshake too, which the Happy Eyeballs v3 draft does not allow either.",
            "application_data" => "The also-ran sent application data: the server did work for a connection the client then dropped.",
            other => other,
        };
        say(true, text.to_string());
    }
    let creds = |a: bool, c: bool| match (a, c) {
        (true, true) => "; the duplicates carried Authorization and a Cookie",
        (true, false) => "; the duplicates carried Authorization",
        (false, true) => "; the duplicates carried a Cookie",
        (false, false) => "",
    };
    let (auth, cookie) = r
        .duplicate_request
        .as_deref()
        .map_or((false, false), |d| (d.authorization, d.cookie));
    if r.duplicate_upgrade {
        let how = if r.duplicate_upgrade_inferred {
            " (inferred: both paths finished TLS and sent application data)"
        } else {
            ""
        };
        say(
            true,
            format!(
                "The server opened two WebSocket sessions: both paths sent the upgrade (RFC 6455){how}{}.",
                creds(auth, cookie)
            ),
        );
    } else if r.duplicate_request.is_some() {
        say(
            true,
            format!(
                "Two attempts sent an HTTP request: the server handled it twice (RFC 9110 §9.2.2: only idempotent requests may be repeated){}.",
                creds(auth, cookie)
            ),
        );
    }
    if !r.findings.is_empty() {
        say(
            true,
            format!(
                "RFC 8305 findings: {}.",
                r.findings.join(", ").replace('_', " ")
            ),
        );
    }
    for code in &r.hev3 {
        say(true, hev3_sentence(code));
    }
    if let Some(d) = &r.dns {
        if let Some(ms) = d.answer_to_first_syn_ms {
            say(
                false,
                format!(
                    "DNS: first SYN {ms:.1} ms after the answer for {} (RFC 8305 §3: a 50 ms Resolution Delay for the AAAA answer).",
                    d.name
                ),
            );
        }
    }
    if r.fetches_ambiguous {
        say(
            false,
            "Two fetches may be merged here: a repeat to an address already tried that no DNS answer in the capture explains.".into(),
        );
    }
    let filter = attempts
        .iter()
        .map(|c| format!("({})", c.rec.wireshark_filter()))
        .collect::<Vec<_>>()
        .join(" || ");
    let families: Vec<&str> = r.families.iter().map(|f| f.as_str()).collect();
    RaceCard {
        id: r.id,
        open: false,
        title: format!(
            "Race {} · {} · {} · {} attempts ({})",
            r.id,
            r.service,
            r.client,
            r.attempts.len(),
            families.join(", ").replace("ipv", "IPv")
        ),
        when: iso8601(r.start_time),
        verdicts: v,
        ladder: ladder::svg(r, attempts),
        filter,
    }
}
