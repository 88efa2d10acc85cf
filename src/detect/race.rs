//! Happy Eyeballs races (RFC 8305): attempts by one client host to one server port that reach
//! two or more server addresses, each started within the race window of the previous one and
//! before the client kept an earlier attempt.
//!
//! Per race: attempts in SYN order, the winner (the attempt still open when the client has
//! closed the others; tie: the longest-lived), the Connection Attempt Delays (gaps between
//! first SYNs to each *new* address, so parallel connect jobs to one address do not read as
//! 3 ms delays), each also-ran's cancel stage and fate, and the RFC 8305 rules it broke.

use super::dns::DnsTable;
use super::{Context, DetectConfig};
use crate::domain::{epoch_seconds, ms_between, Family, Nanos, Stage};
use crate::model::{
    Analysis, Cancel, Connection, DuplicateRequest, Fate, Name, NameSource, PerAttempt, Race,
    RaceDns, Role,
};

/// An attempt group being built.
struct Group<'a> {
    members: PerAttempt<usize>,
    /// Its first member's SYN: the order of the races.
    first_syn: Nanos,
    last_syn: Nanos,
    /// The earliest time one member was established: later SYNs are not part of this race.
    kept_at: Option<Nanos>,
    /// The name of its first member that has one (borrowed: the groups of both cores cloning
    /// one shared name would contend on its count).
    name: Option<&'a str>,
    /// A member joined as a repeat to an address already tried while no DNS in the capture
    /// could tell whether it was a second fetch.
    unexplained_repeat: bool,
    /// The DNS answer (capture time) its first attempt followed, if one: another fetch's
    /// repeat can only follow another answer.
    lookup: Option<Nanos>,
}

/// A group that is a race: its first SYN, its members in SYN order, and whether the capture
/// could not tell one fetch from two (see [`Group::unexplained_repeat`]).
type Grouped = (Nanos, PerAttempt<usize>, bool);

/// Find the races and set `race`, `role` and `service` on their attempts.
pub fn detect(a: &mut Analysis, ctx: &mut Context<'_>) {
    use rayon::prelude::*;
    let groups = group_attempts(a, ctx.dns(), ctx.cfg);
    // What DNS says of each race, looked up first so that the DNS table is freed before the
    // races are built. Each race reads only its own attempts: all built in parallel.
    let looked_up: Vec<DnsFacts> = {
        let (a, dns): (&Analysis, &DnsTable) = (a, ctx.dns());
        groups.par_iter().map(|g| dns_facts(&g.1, a, dns)).collect()
    };
    ctx.done_with_dns();
    let races: Vec<Race> = {
        let a: &Analysis = a;
        let cancel_by = ctx.cfg.cancel_by;
        groups
            .par_iter()
            .zip(looked_up)
            .enumerate()
            .map(|(race_id, (g, facts))| build(race_id, g, a, facts, cancel_by))
            .collect()
    };
    for (race_id, race) in races.iter().enumerate() {
        for &id in &race.attempts {
            if let Some(c) = a.connections.get_mut(id) {
                c.race = Some(race_id);
                c.role = if Some(id) == race.winner {
                    Role::Winner
                } else {
                    Role::AlsoRan
                };
                c.service = race.service.clone();
            }
        }
    }
    // Moved, not pushed one by one: the races are a large part of the report's memory.
    a.races = races;
}

/// The attempt groups that are races, each in SYN order, the groups in order of first SYN.
fn group_attempts(a: &Analysis, dns: &DnsTable, cfg: &DetectConfig) -> Vec<Grouped> {
    use rayon::prelude::*;
    let conns = &a.connections;
    // Attempts whose SYN is in the capture, by (host, server port), in SYN order: one flat
    // list sorted on every core, then each (host, port) run grouped on its own.
    let mut attempts: Vec<Attempt> = conns
        .par_iter()
        .filter_map(|c| Some((c.host, c.rec.server.port, c.rec.syn_time.get()?, c.id)))
        .collect();
    // Connection ids are unique: the order is total, an unstable sort is deterministic.
    attempts.par_sort_unstable();
    let mut groups: Vec<Grouped> = attempts
        .par_chunk_by(|x, y| (x.0, x.1) == (y.0, y.1))
        .flat_map_iter(|run| {
            let addrs = run
                .first()
                .and_then(|f| a.hosts.get(f.0))
                .map_or(&[][..], |h| &h.addrs[..]);
            group_run(run, conns, addrs, dns, cfg)
        })
        .collect();
    // By first SYN, then first member (ids are unique: a total order).
    groups.par_sort_unstable_by_key(|(syn, m, _)| (*syn, m.first().copied()));
    groups
}

/// An attempt to group: (client host, server port, first SYN, connection id).
type Attempt = (usize, u16, Nanos, usize);

/// The server answered `c` (SYN-ACK or RST) at or before `t`.
fn answered_by(c: &Connection, t: Nanos) -> bool {
    let by = |x: crate::domain::OptNanos| x.get().is_some_and(|x| x <= t);
    by(c.rec.synack_time) || by(c.rec.rst[1])
}

/// How soon after an event at the capture point (a DNS answer, a refusal) the client's
/// reaction can be seen there, beyond the round trip between the capture point and the
/// client: RFC 8305's Resolution Delay.
const REACTION: Nanos = 50_000_000;

/// A repeat to an address this long after a fetch's first attempt to it is that fetch's
/// backup connect job (Chromium's comes at 250 ms); extra parallel jobs come within a few ms.
const BACKUP_AFTER: Nanos = 50_000_000;

/// A repeat this soon after a fetch's latest attempt to the address is that fetch's parallel
/// connect job (Chromium opens its extra jobs a few ms apart).
const PARALLEL_WITHIN: Nanos = 10_000_000;

/// Capture-time jitter between two connections' packets on one client link: an attempt to a
/// new address seen this soon after the fetch's kept attempt was established may still have
/// left the client before it (queueing reorders the two at the capture point).
const ORDER_SLACK: Nanos = 5_000_000;

/// The races among one client host's attempts to one server port, in SYN order, each with its
/// first SYN. Members are inline (no allocation for the single attempts that most groups are).
///
/// Fetches are told apart as the contract's race definition asks, by the evidence a capture
/// has. An attempt can join an open fetch within the race window of its last SYN, none of
/// whose attempts was kept yet, and whose name does not contradict it:
/// - **to an address the fetch has not tried**: the fetch whose attempt was refused just
///   before (the client moves on at once: within the client's round trip from the capture
///   point + [`REACTION`]), else the **oldest** fetch (clients start their next address one
///   attempt delay after the last, so with concurrent fetches the earlier one's comes first);
/// - **to an address it has tried** (a parallel or backup connect job): not when the host was
///   sent a DNS answer holding the address just before (within the same reaction time, and
///   after the newest fetch began): that is a new fetch's first attempt, after a lookup of its
///   own. Otherwise the oldest fetch whose attempts to the address are all still unanswered
///   and that has made no backup job to it yet, else the newest such fetch.
///
/// An attempt seen one client round trip (+ [`REACTION`]) after a request of the host to this
/// port failed on a reused connection (stale reuse) is that request's retry: a new fetch.
/// Anything else starts a new fetch.
fn group_run(
    run: &[Attempt],
    conns: &[Connection],
    host_addrs: &[std::net::IpAddr],
    dns: &DnsTable,
    cfg: &DetectConfig,
) -> Vec<Grouped> {
    let mut groups: Vec<Grouped> = Vec::new();
    let mut open: Vec<Group<'_>> = Vec::new();
    // The round trip between the capture point and this client (the SYN-ACK -> ACK leg),
    // median over its handshakes: how late its reactions are seen.
    let mut legs: Vec<Nanos> = run
        .iter()
        .filter_map(|&(_, _, _, id)| Some(conns.get(id)?.rec.handshake_legs()?.1))
        .collect();
    legs.sort_unstable();
    let leg = legs.get(legs.len() / 2).copied().unwrap_or(0);
    let reaction = leg + REACTION;
    // A new fetch's first SYN is seen at least about one such round trip after its lookup's
    // answer (half the shortest, for jitter).
    let earliest_reaction = legs.first().copied().unwrap_or(0) / 2;
    // Of the attempts from `i` on seen within `reaction` of `event` and passing `also`, is
    // `i` the one nearest the client's reaction time (the event plus its leg)? Two fetches'
    // attempts can fall close together; the one that answers the event comes one leg after.
    let nearest = |i: usize, event: Nanos, also: &dyn Fn(&Connection) -> bool| {
        let off = |t: Nanos| (t - event - leg).abs();
        let Some(&(_, _, t, _)) = run.get(i) else {
            return true;
        };
        run.get(i + 1..)
            .unwrap_or(&[])
            .iter()
            .take_while(|a| a.2 <= event + reaction)
            .all(|&(_, _, t2, id2)| {
                conns
                    .get(id2)
                    .is_none_or(|c2| !also(c2) || off(t2) >= off(t))
            })
    };
    // The answers holding the address of attempt `i` that it could be the reaction to (the
    // nearest such attempt), latest first, and that no open fetch already followed.
    // `reacting`: only an answer whose nearest reaction is this attempt (a repeat asking
    // whether it starts a fetch); without it, the latest (the answer a new fetch follows).
    let fresh_lookup = |i: usize, open: &[Group<'_>], reacting: bool| -> Option<Nanos> {
        let &(_, _, t, id) = run.get(i)?;
        let ip = conns.get(id)?.rec.server.ip;
        dns.answers_between(&ip, host_addrs, t - reaction, t - earliest_reaction)
            .into_iter()
            .rev()
            .filter(|&q| open.iter().all(|g| g.lookup != Some(q)))
            .find(|&q| !reacting || nearest(i, q, &|c2| c2.rec.server.ip == ip))
    };
    // When the host's requests on reused connections to this port failed (stale reuse): the
    // attempt that follows one is its retry, a fetch of its own.
    let mut failures: Vec<Nanos> = run
        .iter()
        .filter_map(|&(_, _, _, id)| {
            let s = conns.get(id)?.rec.stale.as_deref()?;
            Some(s.failure_time.unwrap_or(s.request))
        })
        .collect();
    failures.sort_unstable();
    let retry_of_failure = |i: usize, t: Nanos| {
        let from = failures.partition_point(|&f| f < t - reaction);
        failures
            .get(from..)
            .unwrap_or(&[])
            .iter()
            .take_while(|&&f| f <= t)
            .any(|&f| nearest(i, f, &|_| true))
    };
    for (i, &(_, _, t, id)) in run.iter().enumerate() {
        let Some(c) = conns.get(id) else { continue };
        let ip = c.rec.server.ip;
        let name = (c.service_source != NameSource::Address).then_some(&*c.service);
        // `slack`: how far past the fetch's kept attempt the SYN may be seen (see
        // ORDER_SLACK; only a new address: a repeat after the keep is a new fetch).
        let fits_with = |g: &Group, slack: Nanos| {
            t - g.last_syn <= cfg.race_window
                && g.kept_at.is_none_or(|k| t < k + slack)
                && (name.is_none() || g.name.is_none() || name == g.name)
        };
        let fits = |g: &Group| fits_with(g, 0);
        let to_ip = |g: &Group<'_>| {
            g.members
                .iter()
                .filter_map(|&m| conns.get(m))
                .filter(|m| m.rec.server.ip == ip)
                .collect::<smallvec::SmallVec<[&Connection; 2]>>()
        };
        let est = c.rec.established_time.get();
        // Groups whose last SYN is past the window can take no later attempt: close them, so
        // the search stays over the few groups still open.
        groups.extend(
            open.extract_if(.., |g| t - g.last_syn > cfg.race_window)
                .map(|g| (g.first_syn, g.members, g.unexplained_repeat)),
        );
        let fresh: Vec<usize> = (0..open.len())
            .filter(|&i| {
                open.get(i)
                    .is_some_and(|g| fits_with(g, ORDER_SLACK) && to_ip(g).is_empty())
            })
            .collect();
        let refused_just_before = |g: &usize| {
            open.get(*g).is_some_and(|g| {
                g.members.iter().filter_map(|&m| conns.get(m)).any(|m| {
                    m.rec.milestones.refused.is_some()
                        && m.rec.rst[1].get().is_some_and(|r| {
                            r <= t
                                && t - r <= reaction
                                && nearest(i, r, &|c2| c2.rec.server.ip != m.rec.server.ip)
                        })
                })
            })
        };
        // A fresh lookup: an answer holding the address, seen where the client's reaction to
        // it would be this SYN, that no open fetch followed: a new fetch's first attempt.
        // (A new address is not judged by a lookup: a fetch's A answer can come after its
        // first attempt, and two fetches' lookups tens of ms apart cannot be told apart by
        // it; tried on the busy captures, membership precision fell 0.998 -> 0.996.)
        let lookup = if fresh.is_empty() {
            fresh_lookup(i, &open, true)
        } else {
            None
        };
        let (at, unexplained) = if retry_of_failure(i, t) || lookup.is_some() {
            (None, false)
        } else if let Some(&first) = fresh.first() {
            let moved_on = fresh.iter().rev().find(|i| refused_just_before(i));
            (Some(*moved_on.unwrap_or(&first)), false)
        } else {
            let pending: Vec<usize> = (0..open.len())
                .filter(|&i| {
                    open.get(i).is_some_and(|g| {
                        let tried = to_ip(g);
                        // Unanswered as far as the client knew: an answer reaches it one
                        // leg after the capture point saw it.
                        fits(g)
                            && !tried.is_empty()
                            && tried.iter().all(|m| !answered_by(m, t - leg))
                    })
                })
                .collect();
            let no_backup_yet = |i: &&usize| {
                open.get(**i).is_some_and(|g| {
                    let tried = to_ip(g);
                    let first = tried.iter().filter_map(|m| m.rec.syn_time.get()).min();
                    !tried.iter().any(|m| {
                        m.rec
                            .syn_time
                            .get()
                            .zip(first)
                            .is_some_and(|(s, f)| s - f > BACKUP_AFTER)
                    })
                })
            };
            // A parallel job follows its fetch's own attempt to the address within a few ms.
            let parallel = |i: &&usize| {
                open.get(**i).is_some_and(|g| {
                    to_ip(g)
                        .iter()
                        .filter_map(|m| m.rec.syn_time.get())
                        .any(|s| t - s <= PARALLEL_WITHIN)
                })
            };
            let chosen = pending
                .iter()
                .rev()
                .find(parallel)
                .or_else(|| pending.iter().find(no_backup_yet))
                .or(pending.last())
                .copied();
            (chosen, !dns.answered_before(&ip, host_addrs, t))
        };
        match at.and_then(|i| open.get_mut(i)) {
            Some(g) => {
                g.members.push(id);
                g.last_syn = t;
                g.kept_at = match (g.kept_at, est) {
                    (Some(k), Some(e)) => Some(k.min(e)),
                    (k, e) => k.or(e),
                };
                if g.name.is_none() {
                    g.name = name;
                }
                g.unexplained_repeat |= unexplained;
            }
            None => {
                let lookup = fresh_lookup(i, &open, false);
                open.push(Group {
                    members: smallvec::smallvec![id],
                    first_syn: t,
                    last_syn: t,
                    kept_at: est,
                    name,
                    unexplained_repeat: false,
                    lookup,
                })
            }
        }
    }
    groups.extend(
        open.into_iter()
            .map(|g| (g.first_syn, g.members, g.unexplained_repeat)),
    );
    // A race reaches two or more addresses; a pool of connections to one address is not one.
    groups.retain(|(_, m, _)| {
        let mut ips = m
            .iter()
            .filter_map(|&i| conns.get(i))
            .map(|c| c.rec.server.ip);
        // A single attempt (most groups) needs no look at its connection.
        m.len() >= 2 && ips.next().is_some_and(|first| ips.any(|ip| ip != first))
    });
    groups
}

/// Implementations' fixed Connection Attempt Delays, ms: RFC 8305's minimum (100), curl (200),
/// RFC 8305's recommendation and Node (250), Chromium and Go (300).
const KNOWN_DELAYS_MS: [u32; 4] = [100, 200, 250, 300];

/// Per client host: is its attempt delay fixed near one value, or dynamic?
pub fn delay_profiles(a: &mut Analysis) {
    use rayon::prelude::*;
    // (client host, first attempt delay) of every race, sorted: each host's delays in order.
    let mut delays: Vec<(usize, f64)> = a
        .races
        .par_iter()
        .filter_map(|r| {
            let host = a.connections.get(*r.attempts.first()?)?.host;
            Some((host, *r.attempt_delays_ms.first()?))
        })
        .collect();
    delays.par_sort_unstable_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    for run in delays.chunk_by(|x, y| x.0 == y.0) {
        let h = run.first().map_or(0, |d| d.0);
        let v: Vec<f64> = run.iter().map(|d| d.1).collect();
        let (Some(&min), Some(&max), Some(median)) =
            (v.first(), v.last(), super::summary::median(&v))
        else {
            continue;
        };
        // Timer slack and scheduling add a few ms to a fixed delay; 10 ms or 5 %, whichever
        // is larger, separates that from a delay that follows measured RTTs.
        let tolerance = (0.05 * median).max(10.0);
        let class = if v.len() < 2 {
            "single_sample"
        } else if max - min <= tolerance {
            "fixed"
        } else {
            "dynamic"
        };
        let near = KNOWN_DELAYS_MS
            .into_iter()
            .find(|&k| (median - f64::from(k)).abs() <= 0.05 * f64::from(k));
        if let Some(host) = a.hosts.get_mut(h) {
            host.delays = Some(crate::model::DelayProfile {
                class,
                races: v.len(),
                min_ms: min,
                median_ms: median,
                max_ms: max,
                near_default_ms: near,
            });
        }
    }
}

/// What the DNS table says of one race.
struct DnsFacts {
    /// Its DNS timing.
    timing: Option<RaceDns>,
    /// An attempt went to a NAT64-synthesised address.
    nat64: bool,
}

fn dns_facts(members: &[usize], a: &Analysis, dns: &DnsTable) -> DnsFacts {
    let attempts: Vec<&Connection> = members
        .iter()
        .filter_map(|&i| a.connections.get(i))
        .collect();
    DnsFacts {
        timing: race_dns(
            &attempts,
            &best_name(&attempts),
            a,
            dns,
            start_time(&attempts),
        ),
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

fn build(id: usize, group: &Grouped, a: &Analysis, dns: DnsFacts, cancel_by: Stage) -> Race {
    let (_, members, unexplained_repeat) = group;
    let get = |i: usize| a.connections.get(i);
    let attempts: Vec<&Connection> = members.iter().filter_map(|&i| get(i)).collect();
    let start_time = start_time(&attempts);
    let service = best_name(&attempts);
    let client = a.host_label(attempts.first().map_or(0, |c| c.host));

    // Winner: among attempts that connected, the one the client closed last (never = last);
    // tie: the longest-lived.
    let winner = attempts
        .iter()
        .filter(|c| c.rec.established_time.is_some())
        .max_by_key(|c| {
            let close = c.rec.client_close().unwrap_or(Nanos::MAX);
            let life = c.rec.last_time - c.rec.syn_time.get().unwrap_or(c.rec.first_time);
            (close, life, std::cmp::Reverse(c.id))
        })
        .map(|c| c.id);
    let winner_est = winner
        .and_then(get)
        .and_then(|w| w.rec.established_time.get());

    // Attempt delays: between first SYNs to each new server address.
    let mut firsts: Vec<(std::net::IpAddr, Nanos)> = Vec::new();
    for c in &attempts {
        if let Some(t) = c.rec.syn_time.get() {
            if !firsts.iter().any(|(ip, _)| *ip == c.rec.server.ip) {
                firsts.push((c.rec.server.ip, t));
            }
        }
    }
    let attempt_delays_ms: PerAttempt<f64> = firsts
        .windows(2)
        .map(|w| match w {
            [(_, t0), (_, t1)] => ms_between(*t0, *t1),
            _ => 0.0,
        })
        .collect();

    let also_rans: PerAttempt<usize> = attempts
        .iter()
        .map(|c| c.id)
        .filter(|&i| Some(i) != winner)
        .collect();
    let also_ran_cancel: smallvec::SmallVec<[Cancel; 1]> = also_rans
        .iter()
        .filter_map(|&i| get(i))
        .map(|c| {
            let close = c.rec.client_close();
            let stage = close.map_or_else(|| c.rec.stage(), |t| c.rec.stage_at(t));
            let after_winner_ms = close.zip(winner_est).map(|(t, e)| ms_between(e, t));
            let kept_past_winner =
                winner_est.is_some() && after_winner_ms.is_none_or(|ms| ms > 0.0);
            Cancel {
                id: c.id,
                stage,
                after_winner_ms,
                fate: fate(c),
                late: kept_past_winner && stage > cancel_by,
            }
        })
        .collect();
    let cancel_rules_broken = cancel_rules(&also_ran_cancel, a);
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
        start_time,
        attempts: attempts.iter().map(|c| c.id).collect(),
        families,
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
        dns: dns.timing,
    }
}

/// Two or more attempts sent a WebSocket upgrade request; or, over TLS where the request is
/// not visible, two or more completed TLS and sent application data (inferred).
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
fn cancel_rules(cancels: &[Cancel], a: &Analysis) -> Vec<&'static str> {
    let mut worst = 0;
    for c in cancels {
        let kept = c.after_winner_ms.is_none_or(|ms| ms > 0.0) && c.stage >= Stage::Tcp;
        if !kept || matches!(c.fate, Fate::LateSynackReset | Fate::NeverAnswered) {
            continue;
        }
        let Some(conn) = a.connections.get(c.id) else {
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

fn race_dns(
    attempts: &[&Connection],
    service: &Name,
    a: &Analysis,
    dns: &DnsTable,
    start: Nanos,
) -> Option<RaceDns> {
    let host = a.hosts.get(attempts.first()?.host)?;
    let aaaa = dns.exchange(service, DnsTable::AAAA, &host.addrs, start);
    let a4 = dns.exchange(service, DnsTable::A, &host.addrs, start);
    if aaaa.is_none() && a4.is_none() {
        return None;
    }
    let first_answer = [aaaa, a4]
        .iter()
        .flatten()
        .filter_map(|e| e.answer_time.get())
        .min();
    Some(RaceDns {
        name: service.clone(),
        aaaa_query_time: aaaa.and_then(|e| e.query_time.get()).map(epoch_seconds),
        aaaa_answer_time: aaaa.and_then(|e| e.answer_time.get()).map(epoch_seconds),
        a_query_time: a4.and_then(|e| e.query_time.get()).map(epoch_seconds),
        a_answer_time: a4.and_then(|e| e.answer_time.get()).map(epoch_seconds),
        answer_to_first_syn_ms: first_answer.map(|t| ms_between(t, start)),
    })
}
