//! Happy Eyeballs races (RFC 8305): attempts by one client host to one server port that reach
//! two or more server addresses, each started within the race window of the previous one and
//! before the client kept an earlier attempt.
//!
//! Per race: attempts in SYN order, the winner (the attempt still open when the client has
//! closed the others; tie: the longest-lived), the Connection Attempt Delays (gaps between
//! first SYNs to each *new* address, so parallel connect jobs to one address do not read as
//! 3 ms delays), each also-ran's cancel stage and fate, and the RFC 8305 rules it broke.
//! Which attempts are one fetch (concurrent fetches kept apart) is `fetch`'s (`race/fetch.rs`).

mod fetch;
mod hev3;

use rayon::prelude::*;

use super::Context;
use crate::app::dns::{DnsTable, Exchange};
use crate::domain::{epoch_seconds, ms_between, Family, Nanos, Stage};
use crate::model::store::Lookup;
use crate::model::{
    Analysis, Cancel, Connection, DuplicateRequest, Fate, Name, PerAttempt, Race, RaceDns, Role,
};
use fetch::{group_attempts, Grouped};

use super::{Detector, Part};

/// Finds the races; sets `races` and each attempt's `race` and `role` (and its `service`, the
/// race's best name).
pub struct Races;

impl Detector for Races {
    fn name(&self) -> &'static str {
        "races"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Dns, Part::Hosts, Part::Names]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::Races]
    }
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>) {
        detect(a, ctx);
    }
}

/// Find the races and set `race`, `role` and `service` on their attempts.
pub fn detect(a: &mut Analysis, ctx: &mut Context<'_>) {
    let groups = group_attempts(a, ctx.dns(), ctx.cfg);
    let cancel_by = ctx.cfg.cancel_by;
    let numbered: Vec<usize> = (0..groups.len()).collect();
    let ids_of = |&k: &usize, ids: &mut Vec<usize>| {
        ids.extend(groups.get(k).map_or(&[][..], |g| &g.1[..]));
    };
    // Each race reads only its own attempts: all built in parallel (on a spilled capture, a
    // batch of races at a time, their attempts read in id order).
    let races: Vec<Race> = if a.connections.spilled() {
        // One read of the spill for what DNS says of each race and for the race itself: the
        // DNS table lives until the races are built.
        let (a, dns): (&Analysis, &DnsTable) = (a, ctx.dns());
        let races = a.connections.map_batched(&numbered, ids_of, |&k, held| {
            let g = groups.get(k)?;
            let facts = dns_facts(&g.1, a, dns, held);
            Some(build(k, g, a, &facts, cancel_by, held))
        });
        races.into_iter().flatten().collect()
    } else {
        // In memory, what DNS says of each race is looked up first, so that the DNS table is
        // freed before the races are built.
        let looked_up: Vec<DnsFacts> = {
            let (a, dns): (&Analysis, &DnsTable) = (a, ctx.dns());
            a.connections.map_batched(&groups, members_of, |g, held| {
                dns_facts(&g.1, a, dns, held)
            })
        };
        ctx.done_with_dns();
        let a: &Analysis = a;
        let races = a.connections.map_batched(&numbered, ids_of, |&k, held| {
            let (g, facts) = (groups.get(k), looked_up.get(k));
            Some(build(k, g?, a, facts?, cancel_by, held))
        });
        races.into_iter().flatten().collect()
    };
    ctx.done_with_dns();
    // Each attempt's race, role and name, kept in 16 bytes an attempt (and a name a race)
    // and applied as each connection is read: on a spilled capture the races' attempts are
    // in nearly every block, and rewriting them all cost a whole pass of encoding.
    let mut marks: Vec<(usize, u32, bool)> = races
        .iter()
        .enumerate()
        .flat_map(|(k, r)| {
            let (k, winner) = (u32::try_from(k).unwrap_or(u32::MAX), r.winner);
            r.attempts.iter().map(move |&id| (id, k, Some(id) == winner))
        })
        .collect();
    marks.par_sort_unstable();
    let names: Vec<(usize, Name)> = races.iter().map(|r| (r.id, r.service.clone())).collect();
    a.connections.update_deferred(move |c| {
        let Ok(k) = marks.binary_search_by_key(&c.id, |m| m.0) else {
            return;
        };
        let Some(&(_, race, winner)) = marks.get(k) else {
            return;
        };
        let Some((id, service)) = names.get(race as usize) else {
            return;
        };
        c.race = Some(*id);
        c.role = if winner { Role::Winner } else { Role::AlsoRan };
        c.service = service.clone();
    });
    // Moved, not pushed one by one: the races are a large part of the report's memory.
    a.races = races;
}

/// What the DNS table says of one race.
struct DnsFacts {
    /// Its DNS timing.
    timing: Option<RaceDns>,
    /// Its Happy Eyeballs v3 findings (they need the lookup's exchanges).
    hev3: Vec<String>,
    /// An attempt went to a NAT64-synthesised address.
    nat64: bool,
}

/// A race's attempts, for [`crate::model::store::Connections::map_batched`].
fn members_of(g: &Grouped, ids: &mut Vec<usize>) {
    ids.extend_from_slice(&g.1);
}

fn dns_facts(members: &[usize], a: &Analysis, dns: &DnsTable, held: &Lookup<'_>) -> DnsFacts {
    let attempts: Vec<&Connection> = members.iter().filter_map(|&i| held.get(i)).collect();
    let (service, start) = (best_name(&attempts), start_time(&attempts));
    let addrs = attempts
        .first()
        .and_then(|c| a.hosts.get(c.host))
        .map_or(&[][..], |h| h.addrs());
    let lookup = |qtype| dns.exchange(&service, qtype, addrs, start);
    let ex = [
        lookup(DnsTable::AAAA),
        lookup(DnsTable::A),
        lookup(crate::app::dns::TYPE_HTTPS),
    ];
    // An AAAA answer that came after the race began (the Resolution Delay's case) is found
    // by the race's last attempt.
    let last = attempts.iter().filter_map(|c| c.rec.syn_time.get()).max();
    let aaaa = ex[0].or_else(|| dns.exchange(&service, DnsTable::AAAA, addrs, last?));
    let hev3 = hev3::findings(
        &attempts,
        &attempt_delays(&attempts),
        &hev3::Lookup {
            aaaa: aaaa.map(|e| {
                (
                    e.query_time.get(),
                    e.answer_time.get(),
                    !dns.addrs(e).is_empty(),
                )
            }),
            a_answer: ex[1].and_then(|e| e.answer_time.get()),
            https: ex[2].and_then(|e| e.svc.as_deref()),
        },
    );
    DnsFacts {
        timing: race_dns(&service, ex, start),
        hev3,
        nat64: attempts.iter().any(|c| dns.is_nat64(&c.rec.server.ip)),
    }
}

/// The race's first SYN.
fn start_time(attempts: &[&Connection]) -> Nanos {
    attempts
        .first()
        .and_then(|c| c.rec.syn_time.get())
        .unwrap_or(0)
}

/// The best name any attempt has.
fn best_name(attempts: &[&Connection]) -> Name {
    let best = attempts
        .iter()
        .max_by_key(|c| (c.service_source, std::cmp::Reverse(c.id)));
    best.map(|c| c.service.clone()).unwrap_or_default()
}

fn build(
    id: usize,
    group: &Grouped,
    a: &Analysis,
    dns: &DnsFacts,
    cancel_by: Stage,
    held: &Lookup<'_>,
) -> Race {
    let (_, members, unexplained_repeat) = group;
    let attempts: Vec<&Connection> = members.iter().filter_map(|&i| held.get(i)).collect();
    let get = |i: usize| attempts.iter().find(|c| c.id == i).copied();
    let start_time = start_time(&attempts);
    let service = best_name(&attempts);
    let host = attempts.first().map_or(0, |c| c.host);
    let client = a.host_label(host);

    let winner = winner(&attempts);
    let winner_est = winner
        .and_then(get)
        .and_then(|w| w.rec.established_time.get());

    let attempt_delays_ms = attempt_delays(&attempts);

    let also_rans: PerAttempt<usize> = attempts
        .iter()
        .map(|c| c.id)
        .filter(|&i| Some(i) != winner)
        .collect();
    let also_ran_cancel: smallvec::SmallVec<[Cancel; 1]> = also_rans
        .iter()
        .filter_map(|&i| get(i))
        .map(|c| cancel(c, winner_est, cancel_by))
        .collect();
    let cancel_rules_broken = cancel_rules(&also_ran_cancel, held);
    let (duplicate_upgrade, duplicate_upgrade_inferred) = duplicate_upgrade(&attempts);
    let duplicate_request = duplicate_request(&attempts, winner);
    // A fetch keeps one connection: two that carried application data, joined by a repeat
    // that no DNS in the capture explains, may be two fetches the capture cannot tell apart.
    let used = attempts
        .iter()
        .filter(|c| c.request().is_some() || c.tls().is_some_and(|t| t.app_data.is_some()))
        .count();
    let fetches_ambiguous = *unexplained_repeat && used >= 2;

    let families: PerAttempt<Family> = attempts.iter().map(|c| c.rec.family()).collect();
    let findings = rfc8305_findings(&attempt_delays_ms, &also_ran_cancel, &families, dns.nat64);

    Race {
        id,
        service,
        client,
        host,
        start_time,
        attempts: attempts.iter().map(|c| c.id).collect(),
        families,
        transports: attempts.iter().map(|c| c.rec.transport()).collect(),
        winner,
        also_rans,
        attempt_delays_ms,
        also_ran_cancel,
        duplicate_upgrade,
        duplicate_upgrade_inferred,
        duplicate_request,
        fetches_ambiguous,
        cancel_rules_broken,
        findings,
        dns: dns.timing.clone(),
        hev3: dns.hev3.clone(),
    }
}

/// Two or more attempts sent a WebSocket upgrade request; or, over TLS where the request is
/// not visible, two or more completed TLS and sent application data (inferred).
/// The winner: among attempts that connected, the one the client closed last (never = last);
/// tie: the longest-lived.
fn winner(attempts: &[&Connection]) -> Option<usize> {
    attempts
        .iter()
        .filter(|c| c.rec.established_time.is_some())
        .max_by_key(|c| {
            let close = c.rec.client_close().unwrap_or(Nanos::MAX);
            let life = c.rec.last_time - c.rec.syn_time.get().unwrap_or(c.rec.first_time);
            (close, life, std::cmp::Reverse(c.id))
        })
        .map(|c| c.id)
}

/// Attempt delays: between first SYNs (or QUIC Initials) to each new endpoint (server
/// address and transport).
fn attempt_delays(attempts: &[&Connection]) -> PerAttempt<f64> {
    let mut firsts: Vec<((std::net::IpAddr, bool), Nanos)> = Vec::new();
    for c in attempts {
        if let Some(t) = c.rec.syn_time.get() {
            let ep = (c.rec.server.ip, c.rec.quic().is_some());
            if !firsts.iter().any(|(x, _)| *x == ep) {
                firsts.push((ep, t));
            }
        }
    }
    firsts
        .windows(2)
        .map(|w| match w {
            [(_, t0), (_, t1)] => ms_between(*t0, *t1),
            _ => 0.0,
        })
        .collect()
}

/// An also-ran's cancel: the stage it had reached when the client gave it up, how long after
/// the winner connected, its fate, and whether that was beyond `cancel_by` (late).
fn cancel(c: &Connection, winner_est: Option<Nanos>, cancel_by: Stage) -> Cancel {
    let close = c.rec.client_close();
    let stage = close.map_or_else(|| c.rec.stage(), |t| c.rec.stage_at(t));
    let after_winner_ms = close.zip(winner_est).map(|(t, e)| ms_between(e, t));
    let kept_past_winner = winner_est.is_some() && after_winner_ms.is_none_or(|ms| ms > 0.0);
    Cancel {
        id: c.id,
        stage,
        after_winner_ms,
        fate: fate(c),
        late: kept_past_winner && stage > cancel_by,
    }
}

fn duplicate_upgrade(attempts: &[&Connection]) -> (bool, bool) {
    let upgrades = attempts
        .iter()
        .filter(|c| c.request().is_some_and(|r| r.ws_upgrade))
        .count();
    if upgrades >= 2 {
        return (true, false);
    }
    let tls_data = attempts
        .iter()
        .filter(|c| c.tls().is_some_and(|t| t.app_data.is_some()))
        .count();
    if tls_data >= 2 {
        return (true, true);
    }
    (false, false)
}

/// Two or more attempts sent an HTTP request; credentials on the also-rans' copies.
fn duplicate_request(
    attempts: &[&Connection],
    winner: Option<usize>,
) -> Option<Box<DuplicateRequest>> {
    let with: Vec<&&Connection> = attempts.iter().filter(|c| c.request().is_some()).collect();
    if with.len() < 2 {
        return None;
    }
    let losers = || {
        with.iter()
            .filter(|c| Some(c.id) != winner)
            .filter_map(|c| c.request())
    };
    Some(Box::new(DuplicateRequest {
        attempts: with.iter().map(|c| c.id).collect(),
        authorization: losers().any(|r| r.authorization),
        cookie: losers().any(|r| r.cookie),
    }))
}

/// Which cancel rules the race broke, judging each also-ran the client kept past the winner's
/// TCP handshake: RFC 8305 §6 (cancel once one TCP handshake completes), the Happy Eyeballs
/// v3 draft (may wait for TLS, no further), and the harmful case: the also-ran sent
/// application data (a request, an upgrade, TLS application data).
fn cancel_rules(cancels: &[Cancel], held: &Lookup<'_>) -> Vec<&'static str> {
    let mut worst = 0;
    for c in cancels {
        let kept = c.after_winner_ms.is_none_or(|ms| ms > 0.0) && c.stage >= Stage::Tcp;
        if !kept || matches!(c.fate, Fate::LateSynackReset | Fate::NeverAnswered) {
            continue;
        }
        let Some(conn) = held.get(c.id) else {
            continue;
        };
        let close = conn.rec.client_close().unwrap_or(Nanos::MAX);
        let sent_data = c.stage >= Stage::Http
            || conn.tls().is_some_and(|t| t.app_data.by(close))
            || (c.stage == Stage::Data && conn.rec.bytes[0] > 0);
        // Without application data the also-ran at most waited for TLS (v3 allows that).
        let level = if sent_data { 3 } else { 1 };
        worst = worst.max(level);
    }
    ["rfc8305_s6", "happy_eyeballs_v3", "application_data"]
        .into_iter()
        .take(worst)
        .collect()
}

/// How an also-ran lost, as the wire shows it.
fn fate(c: &Connection) -> Fate {
    let r = &c.rec;
    let close = r.client_close();
    if r.milestones.refused.is_some() {
        return Fate::Refused;
    }
    match (r.synack_time.get(), r.established_time.get()) {
        (None, _) if close.is_some() => Fate::AbortedBeforeConnect,
        (None, _) => Fate::NeverAnswered,
        // QUIC: the server answered and the handshake never completed; the client went quiet
        // (its close, if any, is encrypted) before connecting.
        (Some(_), None) if r.quic().is_some() => Fate::AbortedBeforeConnect,
        (Some(sa), None) => match close {
            Some(t) if t < sa => Fate::AbortedBeforeConnect,
            _ => Fate::LateSynackReset,
        },
        (Some(_), Some(_)) => match close {
            None => Fate::LeftOpen,
            Some(_) if r.bytes == [0, 0] => Fate::UnusedParallel,
            Some(_) => Fate::ClosedAfterConnect,
        },
    }
}

/// RFC 8305 rules, as short codes (extra field `rfc8305`).
fn rfc8305_findings(
    delays: &[f64],
    cancels: &[Cancel],
    families: &[Family],
    nat64: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for d in delays {
        // §5: a Connection Attempt Delay MUST NOT be below 10 ms; the recommended minimum is
        // 100 ms and the recommended maximum 2 s.
        let code = if *d < 10.0 {
            "attempt_delay_below_10ms_must"
        } else if *d < 100.0 {
            "attempt_delay_below_100ms"
        } else if *d > 2000.0 {
            "attempt_delay_above_2s"
        } else {
            continue;
        };
        if !out.iter().any(|o| o == code) {
            out.push(code.to_string());
        }
    }
    // §6: once one attempt's TCP handshake completes, the others SHOULD be cancelled. A late
    // SYN-ACK reset by the kernel is not the client keeping an attempt alive.
    for c in cancels {
        if c.after_winner_ms.is_some_and(|ms| ms > 0.0)
            && !matches!(c.fate, Fate::LateSynackReset | Fate::NeverAnswered)
        {
            out.push(format!(
                "also_ran_kept_past_winner_handshake:{}",
                c.stage.as_str()
            ));
        }
    }
    // §4: prefer IPv6 first when both families are available.
    let both = families.contains(&Family::Ipv6) && families.contains(&Family::Ipv4);
    let first = families.first().copied();
    if both && first == Some(Family::Ipv4) {
        out.push("first_family_not_ipv6".to_string());
    }
    if nat64 {
        out.push("nat64_synthesised_ipv6".to_string());
    }
    out
}

/// The race's lookup: the AAAA, A and HTTPS exchanges of its name before its first attempt,
/// when any was seen.
fn race_dns(service: &Name, ex: [Option<&Exchange>; 3], start: Nanos) -> Option<RaceDns> {
    let [aaaa, a4, https] = ex;
    if ex.iter().all(Option::is_none) {
        return None;
    }
    let first_answer = [aaaa, a4]
        .iter()
        .flatten()
        .filter_map(|e| e.answer_time.get())
        .min();
    let secs = |e: Option<&Exchange>, answer: bool| {
        e.and_then(|e| {
            if answer {
                e.answer_time.get()
            } else {
                e.query_time.get()
            }
        })
        .map(epoch_seconds)
    };
    // The order the client sent its queries in (`https`, `aaaa`, `a`).
    let mut order: Vec<(Nanos, &'static str)> = [(https, "https"), (aaaa, "aaaa"), (a4, "a")]
        .into_iter()
        .filter_map(|(e, n)| Some((e?.query_time.get()?, n)))
        .collect();
    order.sort();
    Some(RaceDns {
        name: service.clone(),
        aaaa_query_time: secs(aaaa, false),
        aaaa_answer_time: secs(aaaa, true),
        a_query_time: secs(a4, false),
        a_answer_time: secs(a4, true),
        answer_to_first_syn_ms: first_answer.map(|t| ms_between(t, start)),
        https_query_time: secs(https, false),
        https_answer_time: secs(https, true),
        https: https
            .and_then(|e| e.svc.as_deref())
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        query_order: order.into_iter().map(|(_, n)| n).collect(),
    })
}
