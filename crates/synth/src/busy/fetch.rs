//! One fetch: the lookup, the Happy Eyeballs plan and its attempts, each attempt's packets,
//! and the winner's life (requests, follow-up fetches, the close, an idle timeout or a stale
//! reuse). The phases draw from the generator's random stream in this order, so a seed gives
//! the same capture.

use std::cmp::Reverse;

use super::packets::close;
use super::world::Profile;
use super::{
    Arrival, Attempt, Busy, Ends, Outcome, Path, TruthConn, Winner, PROCESSING_MS, RESOLVER,
};
use crate::{ConnId, Link, Scenario, DEFAULT_BASE};
use racetrace_core::domain::{Nanos, Side};

/// What the attempts of a fetch came to.
struct Raced {
    attempts: Vec<Attempt>,
    truth: Vec<TruthConn>,
}

impl Busy {
    /// One fetch (and what follows on its connection: keep-alive requests, a stale reuse and
    /// its retry) as a scenario starting at the arrival; returns the truth of its connections.
    pub(super) fn fetch(&mut self, arr: &Arrival) -> Vec<TruthConn> {
        self.fetch_id += 1;
        self.totals.fetches += 1;
        let fetch = self.fetch_id;
        let base = DEFAULT_BASE + (arr.t_ms * 1e6) as Nanos;
        let mut s = Scenario::new().starting_at(base);
        s.dns_id_base = self.rng.next_u64() as u16;
        let (Some(cl), Some(sv)) = (self.clients.get(arr.client), self.services.get(arr.service))
        else {
            return Vec::new();
        };
        let (c4, c6) = (cl.v4.clone(), cl.v6.clone());
        let (profile, trouble, rtt4) = (cl.profile, cl.v6_trouble, cl.rtt4);
        let (name, s4, s6, sport, pool, idle_timeout) = (
            sv.name.clone(),
            sv.v4.clone(),
            sv.v6.clone(),
            sv.port,
            sv.pool.clone(),
            sv.idle_timeout_ms,
        );
        s.same_host(&c4, &c6);
        let host = format!("C{}", arr.client + 1);
        let t0 = self.lookup(&mut s, arr, &c4, &name, &s4, s6.as_deref());
        let (plan, v6_state) = self.plan(profile, rtt4, trouble, s6.is_some(), t0);
        let ends = Ends {
            client: arr.client,
            c4: &c4,
            c6: &c6,
            s4: &s4,
            s6: s6.as_deref().unwrap_or_default(),
            sport,
            host: &host,
            name: &name,
            pool: &pool,
            base_ms: arr.t_ms,
        };
        let Raced {
            attempts,
            mut truth,
        } = self.attempts(&mut s, &ends, &plan, v6_state, fetch);
        // The winner: the first established.
        let won = attempts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a.outcome {
                Outcome::Ok(e) => Some((i, e)),
                _ => None,
            })
            .min_by(|x, y| x.1.total_cmp(&y.1));
        let Some((wi, west)) = won else {
            return truth;
        };
        // One address per family: two families are two addresses.
        let both = attempts.iter().any(|a| a.v6) && attempts.iter().any(|a| !a.v6);
        if both {
            self.totals.races += 1;
            for (i, a) in attempts.iter().enumerate() {
                if let Some(t) = truth.get_mut(a.truth) {
                    t.race = Some(fetch);
                    t.role = if i == wi { "winner" } else { "also_ran" }.into();
                }
            }
        }
        attempt_packets(&mut s, &attempts, wi, west + 0.2);
        let Some(w) = attempts.get(wi) else {
            return truth;
        };
        let winner = Winner {
            conn: w.conn,
            path: w.path,
            v6: w.v6,
            truth: w.truth,
        };
        self.winner_life(&mut s, &ends, arr, &winner, west, idle_timeout, &mut truth);
        self.totals.connections += truth.len() as u64;
        for (time, frame) in s.frames(Link::Ethernet) {
            self.serial += 1;
            self.frames.push(Reverse((time, self.serial, frame)));
        }
        truth
    }

    /// The lookup, when the fetch makes one: AAAA and A back to back; the resolver sits by the
    /// capture point. Returns when the client has its answers (0 without a lookup).
    fn lookup(
        &mut self,
        s: &mut Scenario,
        arr: &Arrival,
        c4: &str,
        name: &str,
        s4: &str,
        s6: Option<&str>,
    ) -> f64 {
        if !arr.dns {
            return 0.0;
        }
        // Query captured one client-side leg after it is sent, answered by the resolver
        // 1-6 ms later, received one leg after that.
        let p = self.path(arr.client, false, 0.0);
        let resolve = 1.0 + self.rng.range(0.0, 5.0);
        let aaaa: Vec<&str> = s6.into_iter().collect();
        s.dns(c4, RESOLVER, p.cf, p.cf + resolve, name, 28, &aaaa);
        s.dns(
            c4,
            RESOLVER,
            p.cf + 0.05,
            p.cf + 0.05 + resolve,
            name,
            1,
            &[s4],
        );
        p.cf + 0.05 + resolve + p.cb + self.rng.range(0.1, 1.0)
    }

    /// The addresses in Happy Eyeballs order with each one's start (IPv6 first, the backup
    /// and parallel jobs of Chromium's profile), and the IPv6 path's state this time (0 fine,
    /// 1 slow, 2 black-holed, 3 refused).
    fn plan(
        &mut self,
        profile: Profile,
        rtt4: f64,
        trouble: f64,
        has_v6: bool,
        t0: f64,
    ) -> (Vec<(bool, f64)>, usize) {
        let dual = has_v6 && self.cfg.races;
        let delay = match profile {
            Profile::Curl => 200.0,
            Profile::Node => 250.0,
            Profile::Chromium => 300.0,
            Profile::Dynamic => (2.0 * rtt4 + 50.0).clamp(100.0, 2000.0),
        };
        let v6_state = if !dual {
            0
        } else if self.rng.chance(trouble) {
            1 + self.rng.below(3)
        } else {
            0
        };
        let mut plan: Vec<(bool, f64)> = Vec::new(); // (v6, client start time)
        match (has_v6, dual) {
            (true, true) => {
                plan.push((true, t0));
                if profile == Profile::Chromium {
                    if self.rng.chance(0.3) {
                        plan.push((true, t0 + 3.0));
                    }
                    plan.push((true, t0 + 250.0)); // the backup job, if still unconnected
                }
                plan.push((false, t0 + delay));
            }
            (true, false) if !self.cfg.races => plan.push((true, t0)),
            _ => plan.push((false, t0)),
        }
        (plan, v6_state)
    }

    /// The attempts the plan starts before one connects (a refusal moves the next new address
    /// forward, RFC 8305 §5), opened in the scenario.
    fn attempts(
        &mut self,
        s: &mut Scenario,
        ends: &Ends<'_>,
        plan: &[(bool, f64)],
        v6_state: usize,
        fetch: u64,
    ) -> Raced {
        let mut truth: Vec<TruthConn> = Vec::new();
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut connected: Option<f64> = None;
        let mut refused_at: Option<f64> = None;
        for (i, &(v6, mut start)) in plan.iter().enumerate() {
            if let (Some(r), false) = (refused_at, v6) {
                start = start.min(r + 0.1);
            }
            if connected.is_some_and(|c| c <= start) {
                continue;
            }
            // After a refusal of the first address the client moves on: no more IPv6 jobs.
            if i > 0 && v6 && refused_at.is_some() {
                continue;
            }
            let slow = if v6 && v6_state == 1 {
                self.rng.range(400.0, 1500.0)
            } else {
                0.0
            };
            let path = self.path(ends.client, v6, slow);
            let outcome = match (v6, v6_state) {
                (true, 2) => Outcome::Blackhole,
                (true, 3) => Outcome::Refused(start + path.rtt()),
                _ => Outcome::Ok(start + path.rtt() + 0.02),
            };
            if let Outcome::Refused(r) = outcome {
                refused_at = Some(refused_at.map_or(r, |x: f64| x.min(r)));
            }
            if let Outcome::Ok(e) = outcome {
                connected = Some(connected.map_or(e, |c: f64| c.min(e)));
            }
            let (conn, t) = self.open(s, ends, v6, start, path, fetch);
            truth.push(t);
            attempts.push(Attempt {
                conn,
                v6,
                start,
                path,
                outcome,
                truth: truth.len() - 1,
            });
        }
        Raced { attempts, truth }
    }

    /// The winner's life: TLS, its requests, the follow-up fetches it schedules, then a stale
    /// reuse, the server's idle timeout or the client's close.
    #[allow(clippy::too_many_arguments)]
    fn winner_life(
        &mut self,
        s: &mut Scenario,
        ends: &Ends<'_>,
        arr: &Arrival,
        w: &Winner,
        west: f64,
        idle_timeout: f64,
        truth: &mut Vec<TruthConn>,
    ) {
        let (wconn, wpath) = (w.conn, w.path);
        let tls = ends.sport == 443;
        let mut t = west + 0.1;
        if tls {
            t = self.tls_handshake(s, wconn, wpath, t, ends.name);
        }
        let requests = if self.rng.chance(0.25) {
            2 + self.rng.below(3)
        } else {
            1
        };
        let keep_alive = requests > 1 || self.rng.chance(0.1);
        for r in 0..requests {
            t = self.exchange(s, wconn, wpath, t, tls, ends.name);
            if r + 1 < requests {
                t += self.rng.range(500.0, 0.8 * idle_timeout);
            }
        }
        self.follow_ups(arr, west);
        let stale = keep_alive && self.cfg.stale && self.rng.chance(0.6);
        // The server's idle-timeout FIN, as captured.
        let server_fin = t + idle_timeout;
        if stale {
            self.stale_reuse(s, ends, w, server_fin, truth);
        } else if keep_alive && self.rng.chance(0.5) {
            // The server's idle timeout closes it, the client answers.
            s.fin(wconn, Side::Server, server_fin);
            let t = server_fin + wpath.cb + wpath.cf + 0.2;
            s.fin(wconn, Side::Client, t);
            s.ack(wconn, Side::Server, t + wpath.sf + wpath.sb + PROCESSING_MS);
        } else {
            let at = t + self.rng.range(5.0, 500.0);
            close(s, wconn, wpath, at);
        }
    }

    /// Follow-ups of a first fetch: a concurrent fetch (its own lookup) or one back to back.
    fn follow_ups(&mut self, arr: &Arrival, west: f64) {
        if !self.cfg.races || arr.follow_up {
            return;
        }
        if self.rng.chance(0.07) {
            let at = arr.t_ms + self.rng.range(20.0, 400.0);
            self.pending.push(Arrival {
                t_ms: at,
                client: arr.client,
                service: arr.service,
                dns: true,
                follow_up: true,
            });
        } else if self.rng.chance(0.05) {
            let at = arr.t_ms + west + self.rng.range(20.0, 1500.0);
            let dns = self.rng.chance(0.5);
            self.pending.push(Arrival {
                t_ms: at,
                client: arr.client,
                service: arr.service,
                dns,
                follow_up: true,
            });
        }
    }
}

/// Each attempt's packets: SYN retransmissions into a black hole, a refusal, or a handshake
/// (an also-ran that connected is closed unused; one answered after the client gave up is
/// reset by its kernel).
fn attempt_packets(s: &mut Scenario, attempts: &[Attempt], wi: usize, cancel: f64) {
    for (i, a) in attempts.iter().enumerate() {
        let p: Path = a.path;
        let conn: ConnId = a.conn;
        let syn_cap = a.start + p.cf;
        s.syn(conn, syn_cap);
        match a.outcome {
            Outcome::Blackhole => {
                let mut rto = 1000.0;
                let mut at = a.start + rto;
                while at < cancel {
                    s.syn(conn, at + p.cf);
                    rto *= 2.0;
                    at = a.start + rto * 2.0 - 1000.0;
                }
            }
            Outcome::Refused(_) => {
                s.rst(conn, Side::Server, syn_cap + p.sf + p.sb + PROCESSING_MS);
            }
            Outcome::Ok(est) => {
                let synack_cap = syn_cap + p.sf + p.sb + PROCESSING_MS;
                s.synack(conn, synack_cap);
                if i == wi || est <= cancel {
                    s.ack(conn, Side::Client, est + p.cf);
                    if i != wi {
                        // Connected too, unused: the client closes it.
                        let t = cancel + 0.5;
                        s.fin(conn, Side::Client, t + p.cf);
                        s.fin(conn, Side::Server, t + p.cf + p.sf + p.sb + PROCESSING_MS);
                        s.ack(conn, Side::Client, t + p.rtt() + p.cf + 0.02);
                    }
                } else {
                    // Given up before its SYN-ACK came: the kernel resets it.
                    s.rst(conn, Side::Client, est + p.cf);
                }
            }
        }
    }
}
