//! Which attempts are one fetch: the contract's race definition for overlapping fetches.
//!
//! A race is the attempts of one *fetch* (one connection request of a client: one lookup, one
//! connection kept at most). A client host's attempts to one server port, in SYN order, are
//! split into fetches by the evidence a capture has. An attempt can join an open fetch within
//! the race window of its last SYN, none of whose attempts was kept yet, and whose name does
//! not contradict it:
//! - **after a stale-reuse failure**: an attempt seen one client round trip (+ [`REACTION`])
//!   after a request of the host to this port failed on a reused connection is that request's
//!   retry, a fetch of its own;
//! - **to an address the fetch has not tried**: the fetch whose attempt was refused just
//!   before (the client moves on at once), else the **oldest** fetch (clients start their next
//!   address one attempt delay after the last, so with concurrent fetches the earlier one's
//!   comes first);
//! - **to an address it has tried**: a new fetch when the host was sent a DNS answer holding
//!   the address that no open fetch followed, seen where the client's reaction to it would be
//!   this SYN (a lookup of its own); otherwise a parallel job of the fetch that tried the
//!   address within [`PARALLEL_WITHIN`], else the backup job of the oldest fetch still waiting
//!   on the address with no backup job yet, else the newest fetch still waiting on it.
//!
//! Anything else starts a new fetch. "Just before" and "where the reaction would be" are in
//! capture time: the client's reaction to what the capture point saw is seen one round trip
//! between them later (the SYN-ACK → ACK leg, median over the host's handshakes), give or take
//! [`REACTION`]; of several attempts in that window, the one nearest that time is the reaction.

use std::net::IpAddr;

use super::super::DetectConfig;
use crate::app::dns::DnsTable;
use crate::domain::{Name, Nanos, OptNanos};
use crate::model::{Analysis, Connection, NameSource, PerAttempt};

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

/// A group that is a race: its first SYN, its members in SYN order, and whether the capture
/// could not tell one fetch from two (see [`Fetch::unexplained_repeat`]).
pub(super) type Grouped = (Nanos, PerAttempt<usize>, bool);

/// An attempt to group: (client host, server port, first SYN, connection id, the server
/// address's fingerprint), 32 bytes (one per SYN of the capture: a flood's millions; ids and
/// hosts past `u32::MAX` are not grouped).
type Attempt = (u32, u16, Nanos, u32, u64);

/// Where an attempt went: the server address and the transport (QUIC or TCP). A race reaches
/// two or more of these, so QUIC and TCP to one address make a race (HEv3).
type Endpoint = (IpAddr, bool);

/// The endpoint of `c`.
fn endpoint(c: &Connection) -> Endpoint {
    (c.rec.server.ip, c.rec.quic().is_some())
}

/// A server endpoint as 64 bits: an IPv4 address exactly (below 2^32), an IPv6 address hashed
/// (at or above 2^63, so the families never meet), bit 62 set for QUIC. Equal fingerprints in
/// a run mean one endpoint, and a run to one endpoint is never a race: it is skipped before
/// any of its connections is read (a flood's or a poller's runs, which past `--memory-limit`
/// would each be read back from the spill).
fn fingerprint((ip, quic): Endpoint) -> u64 {
    let transport = u64::from(quic) << 62;
    transport
        ^ match ip {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            IpAddr::V6(a) => {
                let v = u128::from(a);
            let h = ((v as u64) ^ ((v >> 64) as u64).rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h | (1 << 63)
        }
    }
}

/// A fetch being built.
struct Fetch<'a> {
    /// Its attempts, as indices in the run.
    members: PerAttempt<usize>,
    /// Its first member's SYN: the order of the races.
    first_syn: Nanos,
    last_syn: Nanos,
    /// The earliest time one member was established: later SYNs are not part of this fetch.
    kept_at: Option<Nanos>,
    /// The name of its first member that has one (borrowed: the fetches of both cores
    /// cloning one shared name would contend on its count).
    name: Option<&'a str>,
    /// A member joined as a repeat to an address already tried while no DNS in the capture
    /// could tell whether it was a second fetch.
    unexplained_repeat: bool,
    /// The DNS answer (capture time) its first attempt followed, if one: another fetch's
    /// repeat can only follow another answer.
    lookup: Option<Nanos>,
}

/// The fetches that are races (two or more addresses reached), each in SYN order, in order of
/// first SYN.
pub(super) fn group_attempts(a: &Analysis, dns: &DnsTable, cfg: &DetectConfig) -> Vec<Grouped> {
    group_attempts_with(a, dns, cfg, LISTED_EARLY)
}

/// Attempts listed in the pass that finds which hosts can race, at most (32 bytes each).
const LISTED_EARLY: usize = 1 << 21;

/// [`group_attempts`], listing at most `listed_early` attempts in its first pass.
fn group_attempts_with(
    a: &Analysis,
    dns: &DnsTable,
    cfg: &DetectConfig,
    listed_early: usize,
) -> Vec<Grouped> {
    use rayon::prelude::*;
    let conns = &a.connections;
    // Hosts whose attempts reach two or more endpoints: only theirs can race. 8 bytes a host,
    // so that a flood's millions of sources, each at one endpoint, are left out before their
    // attempts are kept (32 bytes a SYN). The attempts are listed in the same pass while they
    // are few (a busy capture's all are: one pass instead of two over a spill); past
    // `listed_early` a second pass lists those of the hosts that can race.
    const NONE: u64 = 1 << 61; // never a fingerprint: IPv4 is below 2^32 (or 2^62 with QUIC),
    const MANY: u64 = NONE | 1; // IPv6 at or above 2^63.
    let attempt = |c: &Connection| -> Option<Attempt> {
        Some((
            u32::try_from(c.host).ok()?,
            c.rec.server.port,
            c.rec.syn_time.get()?,
            u32::try_from(c.id).ok()?,
            fingerprint(endpoint(c)),
        ))
    };
    let mut reach = vec![NONE; a.hosts.len()];
    let mut early = Some(Vec::new());
    conns.for_each(|c| {
        if c.rec.syn_time.get().is_none() {
            return;
        }
        if let Some(slot) = reach.get_mut(c.host) {
            let fp = fingerprint(endpoint(c));
            *slot = match *slot {
                NONE => fp,
                x if x == fp => x,
                _ => MANY,
            };
        }
        if early.as_ref().is_some_and(|l: &Vec<Attempt>| l.len() >= listed_early) {
            early = None;
        }
        if let (Some(list), Some(x)) = (&mut early, attempt(c)) {
            list.push(x);
        }
    });
    let can_race = |x: &Attempt| reach.get(x.0 as usize) == Some(&MANY);
    // Attempts whose SYN is in the capture, by (host, server port), in SYN order: one flat
    // list sorted on every core, then each (host, port) run split on its own.
    let mut attempts: Vec<Attempt> = match early {
        Some(mut list) => {
            list.retain(can_race);
            list.shrink_to_fit();
            list
        }
        None => conns.par_filter_map(|c| {
            if reach.get(c.host) != Some(&MANY) {
                return None;
            }
            attempt(c)
        }),
    };
    // Connection ids are unique: the order is total, an unstable sort is deterministic.
    attempts.par_sort_unstable();
    // Runs to one address are never races: skipped before any of their connections is read.
    let runs: Vec<&[Attempt]> = attempts
        .chunk_by(|x, y| (x.0, x.1) == (y.0, y.1))
        .filter(|run| run.iter().any(|x| run.first().is_some_and(|f| f.4 != x.4)))
        .collect();
    // On a spilled capture the runs' connections are read a batch of runs at a time, in id
    // order.
    let mut groups: Vec<Grouped> = conns
        .map_projected(
            &runs,
            |run, ids| ids.extend(run.iter().map(|x| x.3 as usize)),
            Seen::of,
            |run, get| split_run(run, get, a, dns, cfg),
        )
        .into_iter()
        .flatten()
        .collect();
    // By first SYN, then first member (ids are unique: a total order).
    groups.par_sort_unstable_by_key(|(syn, m, _)| (*syn, m.first().copied()));
    groups
}

/// Looks an attempt up by connection id.
type Getter<'a> = dyn Fn(usize) -> Option<Seen> + Sync + 'a;

/// What splitting a run reads of an attempt's connection. On a spilled capture a batch of
/// runs' attempts is held at once: at this size (about 100 bytes, a whole connection is some
/// 700 with what it owns) a busy capture's runs fit in one batch, and the spill is read
/// once for them instead of once per batch.
#[derive(Clone, Debug)]
struct Seen {
    /// Address and transport.
    ep: Endpoint,
    /// Its name, when one better than the address is known.
    name: Option<Name>,
    syn: OptNanos,
    synack: OptNanos,
    /// The server's RST.
    server_rst: OptNanos,
    established: OptNanos,
    refused: bool,
    /// Its SYN-ACK → ACK leg.
    leg: Option<Nanos>,
    /// When its request on a reused connection failed (stale reuse).
    failure: Option<Nanos>,
}

impl Seen {
    fn of(c: &Connection) -> Seen {
        Seen {
            ep: endpoint(c),
            name: (c.service_source != NameSource::Address).then(|| c.service.clone()),
            syn: c.rec.syn_time,
            synack: c.rec.synack_time,
            server_rst: c.rec.rst[1],
            established: c.rec.established_time,
            refused: c.rec.milestones.refused.is_some(),
            leg: c.rec.handshake_legs().map(|l| l.1),
            failure: c
                .rec
                .stale
                .as_deref()
                .map(|s| s.failure_time.unwrap_or(s.request)),
        }
    }
}

/// One run split into its fetches.
fn split_run<'a>(
    run: &'a [Attempt],
    get: &Getter<'a>,
    a: &'a Analysis,
    dns: &'a DnsTable,
    cfg: &'a DetectConfig,
) -> Vec<Grouped> {
    let addrs = run
        .first()
        .and_then(|f| a.hosts.get(f.0 as usize))
        .map_or(&[][..], |h| h.addrs());
    Run::new(run, get, addrs, dns, cfg).split()
}

/// The server answered `c` (SYN-ACK or RST) at or before `t`.
fn answered_by(c: &Seen, t: Nanos) -> bool {
    let by = |x: OptNanos| x.get().is_some_and(|x| x <= t);
    by(c.synack) || by(c.server_rst)
}

/// One client host's attempts to one server port, being split into fetches.
struct Run<'a> {
    run: &'a [Attempt],
    /// The run's connections, in its order.
    conns: Vec<Seen>,
    host_addrs: &'a [IpAddr],
    dns: &'a DnsTable,
    cfg: &'a DetectConfig,
    /// The round trip between the capture point and this client (median SYN-ACK → ACK leg).
    leg: Nanos,
    /// How long after an event the client's reaction can still be seen: `leg` + [`REACTION`].
    reaction: Nanos,
    /// How soon after its lookup's answer a new fetch's first SYN can be seen (half the
    /// shortest leg, for jitter).
    earliest_reaction: Nanos,
    /// When the host's requests on reused connections to this port failed (stale reuse).
    failures: Vec<Nanos>,
}

/// The attempt being placed.
struct Here<'a> {
    /// Its index in the run.
    i: usize,
    t: Nanos,
    ip: IpAddr,
    /// Its endpoint (address and transport).
    ep: Endpoint,
    name: Option<&'a str>,
}

impl<'a> Run<'a> {
    fn new(
        run: &'a [Attempt],
        all: &Getter<'a>,
        host_addrs: &'a [IpAddr],
        dns: &'a DnsTable,
        cfg: &'a DetectConfig,
    ) -> Run<'a> {
        let conns: Vec<_> = run
            .iter()
            .filter_map(|&(_, _, _, id, _)| all(id as usize))
            .collect();
        let mut legs: Vec<Nanos> = conns.iter().filter_map(|c| c.leg).collect();
        legs.sort_unstable();
        let leg = legs.get(legs.len() / 2).copied().unwrap_or(0);
        let mut failures: Vec<Nanos> = conns.iter().filter_map(|c| c.failure).collect();
        failures.sort_unstable();
        Run {
            run,
            conns,
            host_addrs,
            dns,
            cfg,
            leg,
            reaction: leg + REACTION,
            earliest_reaction: legs.first().copied().unwrap_or(0) / 2,
            failures,
        }
    }

    /// The run's `i`th connection.
    fn at(&self, i: usize) -> Option<&Seen> {
        self.conns.get(i)
    }

    /// A fetch's members as connection ids.
    fn ids(&self, members: PerAttempt<usize>) -> PerAttempt<usize> {
        members
            .iter()
            .filter_map(|&i| self.run.get(i).map(|a| a.3 as usize))
            .collect()
    }

    /// Split the run into fetches and keep those that are races.
    fn split(&self) -> Vec<Grouped> {
        let mut groups: Vec<(Nanos, PerAttempt<usize>, bool)> = Vec::new();
        let mut open: Vec<Fetch<'_>> = Vec::new();
        for (i, &(_, _, t, _, _)) in self.run.iter().enumerate() {
            let Some(c) = self.at(i) else {
                continue;
            };
            let here = Here {
                i,
                t,
                ip: c.ep.0,
                ep: c.ep,
                name: c.name.as_deref(),
            };
            // Fetches whose last SYN is past the window can take no later attempt: close
            // them, so the search stays over the few still open.
            groups.extend(
                open.extract_if(.., |g| t - g.last_syn > self.cfg.race_window)
                    .map(|g| (g.first_syn, g.members, g.unexplained_repeat)),
            );
            let (at, unexplained) = self.place(&here, &open);
            let est = c.established.get();
            match at.and_then(|k| open.get_mut(k)) {
                Some(g) => {
                    g.members.push(i);
                    g.last_syn = t;
                    g.kept_at = match (g.kept_at, est) {
                        (Some(k), Some(e)) => Some(k.min(e)),
                        (k, e) => k.or(e),
                    };
                    if g.name.is_none() {
                        g.name = here.name;
                    }
                    g.unexplained_repeat |= unexplained;
                }
                None => {
                    let lookup = self.fresh_lookup(&here, &open, false);
                    open.push(Fetch {
                        members: smallvec::smallvec![i],
                        first_syn: t,
                        last_syn: t,
                        kept_at: est,
                        name: here.name,
                        unexplained_repeat: false,
                        lookup,
                    });
                }
            }
        }
        groups.extend(
            open.into_iter()
                .map(|g| (g.first_syn, g.members, g.unexplained_repeat)),
        );
        // A race reaches two or more endpoints (address, transport); a pool of connections to
        // one is not.
        groups.retain(|(_, m, _)| {
            let mut ips = m.iter().filter_map(|&i| self.at(i)).map(|c| c.ep);
            // A single attempt (most fetches) needs no look at its connection.
            m.len() >= 2 && ips.next().is_some_and(|first| ips.any(|ip| ip != first))
        });
        groups
            .into_iter()
            .map(|(t, m, u)| (t, self.ids(m), u))
            .collect()
    }

    /// The open fetch the attempt joins (`None`: a new fetch), and whether it joins as a
    /// repeat that no DNS in the capture explains.
    fn place(&self, h: &Here<'_>, open: &[Fetch<'_>]) -> (Option<usize>, bool) {
        let fresh: Vec<usize> = (0..open.len())
            .filter(|&k| {
                open.get(k).is_some_and(|g| {
                    self.fits(g, h, ORDER_SLACK) && self.tried(g, h.ep).next().is_none()
                })
            })
            .collect();
        // (A new address is not judged by a lookup: a fetch's A answer can come after its
        // first attempt, and two fetches' lookups tens of ms apart cannot be told apart by
        // it; tried on the busy captures, membership precision fell 0.998 -> 0.996.)
        let lookup = fresh
            .is_empty()
            .then(|| self.fresh_lookup(h, open, true))
            .flatten();
        if self.retry_of_failure(h) || lookup.is_some() {
            return (None, false);
        }
        if let Some(&oldest) = fresh.first() {
            let moved_on = fresh
                .iter()
                .rev()
                .find(|&&k| open.get(k).is_some_and(|g| self.refused_just_before(g, h)));
            return (Some(*moved_on.unwrap_or(&oldest)), false);
        }
        (
            self.repeat(h, open),
            !self.dns.answered_before(&h.ip, self.host_addrs, h.t),
        )
    }

    /// The fetch a repeat to an address already tried belongs to, if any.
    fn repeat(&self, h: &Here<'_>, open: &[Fetch<'_>]) -> Option<usize> {
        // Fetches waiting on the address: every attempt to it unanswered as far as the client
        // knew (an answer reaches it one leg after the capture point saw it).
        let pending: Vec<usize> = (0..open.len())
            .filter(|&k| {
                open.get(k).is_some_and(|g| {
                    self.fits(g, h, 0)
                        && self.tried(g, h.ep).next().is_some()
                        && self.tried(g, h.ep).all(|m| !answered_by(m, h.t - self.leg))
                })
            })
            .collect();
        let syns = |k: usize| {
            open.get(k)
                .into_iter()
                .flat_map(|g| self.tried(g, h.ep))
                .filter_map(|m| m.syn.get())
        };
        let parallel = |k: &&usize| syns(**k).any(|s| h.t - s <= PARALLEL_WITHIN);
        let no_backup_yet = |k: &&usize| {
            let first = syns(**k).min();
            !syns(**k).any(|s| first.is_some_and(|f| s - f > BACKUP_AFTER))
        };
        pending
            .iter()
            .rev()
            .find(parallel)
            .or_else(|| pending.iter().find(no_backup_yet))
            .or(pending.last())
            .copied()
    }

    /// The attempt can join `g`: within the race window of its last SYN, no later than
    /// `slack` after its kept attempt was established, no contradicting name.
    fn fits(&self, g: &Fetch<'_>, h: &Here<'_>, slack: Nanos) -> bool {
        h.t - g.last_syn <= self.cfg.race_window
            && g.kept_at.is_none_or(|k| h.t < k + slack)
            && (h.name.is_none() || g.name.is_none() || h.name == g.name)
    }

    /// `g`'s attempts to endpoint `ep`.
    fn tried<'g>(
        &'g self,
        g: &'g Fetch<'_>,
        ep: Endpoint,
    ) -> impl Iterator<Item = &'g Seen> + 'g {
        g.members
            .iter()
            .filter_map(|&m| self.at(m))
            .filter(move |m| m.ep == ep)
    }

    /// Of the attempts from `h` on seen within the reaction time of `event` and passing
    /// `also`, is `h` the one nearest the client's reaction (the event plus its leg)? Two
    /// fetches' attempts can fall close together; the one that answers the event comes one
    /// leg after it.
    fn nearest(&self, h: &Here<'_>, event: Nanos, also: &dyn Fn(&Seen) -> bool) -> bool {
        let off = |t: Nanos| (t - event - self.leg).abs();
        self.run
            .get(h.i + 1..)
            .unwrap_or(&[])
            .iter()
            .take_while(|a| a.2 <= event + self.reaction)
            .enumerate()
            .all(|(k, &(_, _, t2, _, _))| {
                self.at(h.i + 1 + k)
                    .is_none_or(|c2| !also(c2) || off(t2) >= off(h.t))
            })
    }

    /// A DNS answer holding the attempt's address that no open fetch followed, in the window
    /// where the attempt could be the client's reaction to it, latest first. `reacting`: only
    /// one whose nearest reaction is this attempt (does a repeat start a fetch?); without it,
    /// the latest (the answer a new fetch follows).
    fn fresh_lookup(&self, h: &Here<'_>, open: &[Fetch<'_>], reacting: bool) -> Option<Nanos> {
        let (from, to) = (h.t - self.reaction, h.t - self.earliest_reaction);
        self.dns
            .answers_between(&h.ip, self.host_addrs, from, to)
            .into_iter()
            .rev()
            .filter(|&q| open.iter().all(|g| g.lookup != Some(q)))
            .find(|&q| !reacting || self.nearest(h, q, &|c2| c2.ep == h.ep))
    }

    /// The attempt is the retry of a request that failed on a reused connection just before.
    fn retry_of_failure(&self, h: &Here<'_>) -> bool {
        let from = self.failures.partition_point(|&f| f < h.t - self.reaction);
        self.failures
            .get(from..)
            .unwrap_or(&[])
            .iter()
            .take_while(|&&f| f <= h.t)
            .any(|&f| self.nearest(h, f, &|_| true))
    }

    /// One of `g`'s attempts was refused just before `h`, which is the client moving on.
    fn refused_just_before(&self, g: &Fetch<'_>, h: &Here<'_>) -> bool {
        g.members
            .iter()
            .filter_map(|&m| self.at(m))
            .any(|m| {
                m.refused
                    && m.server_rst.get().is_some_and(|r| {
                        r <= h.t
                            && h.t - r <= self.reaction
                            && self.nearest(h, r, &|c2| c2.ep != m.ep)
                    })
            })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::domain::Endpoint;
    use crate::model::store::{Connections, SpillConfig};
    use crate::model::ConnRecord;

    /// An attempt from `client` to `server`:443 whose SYN is `ms` in, answered and kept
    /// when `kept`.
    fn attempt(client: IpAddr, server: IpAddr, ms: i64, kept: bool) -> ConnRecord {
        let t = ms * 1_000_000;
        let at = |dt: i64| if kept { OptNanos::some(t + dt) } else { OptNanos::NONE };
        ConnRecord {
            client: Endpoint {
                ip: client,
                port: 50_000,
            },
            server: Endpoint {
                ip: server,
                port: 443,
            },
            handshake_seen: true,
            first_time: t,
            last_time: t + 5_000_000,
            syn_time: OptNanos::some(t),
            synack_time: at(1_000_000),
            established_time: at(1_500_000),
            ..ConnRecord::default()
        }
    }

    /// Two clients that race two addresses of a service (the first unanswered, the second
    /// 250 ms later kept; a minute apart from each other), and a third whose two attempts go
    /// to one address (never a race), spilled in blocks of 2.
    fn analysis() -> Analysis {
        let v4 = |x: u8| IpAddr::V4(Ipv4Addr::new(192, 0, 2, x));
        let mut s = Connections::new(SpillConfig {
            budget: 1,
            dir: std::env::temp_dir(),
            block: 2,
        });
        s.push(attempt(v4(1), v4(11), 0, false));
        s.push(attempt(v4(1), v4(10), 250, true));
        s.push(attempt(v4(3), v4(10), 30_000, false));
        s.push(attempt(v4(3), v4(10), 30_100, true));
        s.push(attempt(v4(2), v4(11), 60_000, false));
        s.push(attempt(v4(2), v4(10), 60_250, true));
        let hosts = crate::detect::hosts::assign(&mut s, &DnsTable::default(), 2_000_000_000);
        Analysis {
            connections: s,
            hosts,
            ..Analysis::default()
        }
    }

    #[test]
    fn attempts_listed_in_the_first_pass_or_in_a_second_make_the_same_races() {
        let (a, dns, cfg) = (analysis(), DnsTable::default(), DetectConfig::default());
        let members = |g: &[Grouped]| -> Vec<Vec<usize>> {
            g.iter().map(|(_, m, _)| m.iter().copied().collect()).collect()
        };
        let early = group_attempts_with(&a, &dns, &cfg, LISTED_EARLY);
        assert_eq!(members(&early), vec![vec![0, 1], vec![4, 5]]);
        assert_eq!(early.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 60_000_000_000]);
        // Listed by the second pass (the first gives up at once), and past a cap of one.
        for cap in [0, 1] {
            let later = group_attempts_with(&a, &dns, &cfg, cap);
            assert_eq!(members(&later), members(&early), "cap {cap}");
        }
    }
}
