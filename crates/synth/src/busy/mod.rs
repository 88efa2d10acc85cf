//! Busy captures with per-connection truth: the shape of a gateway's or a load balancer's
//! capture (thousands of clients, hundreds of services, many findings), seeded, from a few MB
//! to several GB, written as it is generated so memory follows the fetches in flight.
//!
//! The model is physical, not fitted to a detector:
//! - **Clients** each have a round-trip time (1–300 ms, log-uniform), an IPv6 path that is
//!   slower or faster by up to ±100 ms, a few ms of jitter on every crossing, and a Happy
//!   Eyeballs profile: curl (200 ms), Node (250 ms), Chromium (300 ms, with an extra connect
//!   job and a backup job to the first address), or a delay that follows the measured RTT.
//! - **Capture point**: at the clients (every client packet seen as sent), or in the middle (a
//!   gateway some way along each client's path).
//! - **Servers' clocks**: a server stamps TSval = offset + rate·(1 + skew)·t at the moment it
//!   sends; the capture sees the segment one one-way delay later. Physical backends (100, 250
//!   or 1000 Hz, skew within ±100 ppm, random 32-bit offsets, one of them wrapping during the
//!   capture) serve many services, VIPs and ports through a load balancer that picks one per
//!   connection; one backend draws a random offset per connection, one an offset per address
//!   pair, and one TCP-terminating proxy shows its own clock for every service behind it.
//! - **Fetches**: each with its own DNS lookup (AAAA and A back to back) unless it reuses a
//!   cached answer; IPv6 paths that work, are slow, are black-holed (SYN retransmissions) or
//!   refuse; concurrent fetches of one client to one service (two tabs), fetches back to back
//!   inside the race window, long-lived keep-alive connections, and stale reuses (the server's
//!   idle-timeout FIN lost or ignored, the request answered by RST, a retry).
//!
//! Every connection's truth is one JSON line ([`TruthConn`]): its fetch, race, role, the clock
//! the capture shows, and whether it was reused stale.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};

mod config;
mod fetch;
mod packets;
mod stale;
mod world;

pub use config::{BusyConfig, CapturePoint, Limit, Rng, Totals, TruthConn};

use super::{ConnId, Link, Scenario, DEFAULT_BASE};

use racetrace_core::domain::Nanos;
use world::{Client, Clock, Pool, Service};

/// One-way delays of one connection, ms: client → capture, capture → client, capture →
/// server, server → capture.
#[derive(Clone, Copy, Debug)]
struct Path {
    cf: f64,
    cb: f64,
    sf: f64,
    sb: f64,
}

impl Path {
    /// Client send → client receives the server's immediate answer.
    fn rtt(&self) -> f64 {
        self.cf + self.sf + self.sb + self.cb + PROCESSING_MS
    }
}

/// Server turnaround, ms.
const PROCESSING_MS: f64 = 0.05;
const WRAP: f64 = 4_294_967_296.0;
/// The resolver every client asks.
const RESOLVER: &str = "10.255.0.53";

/// Both ends of a fetch's connections.
struct Ends<'a> {
    client: usize,
    c4: &'a str,
    c6: &'a str,
    s4: &'a str,
    s6: &'a str,
    sport: u16,
    host: &'a str,
    name: &'a str,
    pool: &'a Pool,
    /// The scenario's start, ms after the capture's.
    base_ms: f64,
}

/// A fetch's kept connection.
struct Winner {
    conn: ConnId,
    path: Path,
    v6: bool,
    /// Its index in the fetch's truth.
    truth: usize,
}

/// A fetch waiting for its start.
#[derive(Clone, Debug)]
struct Arrival {
    t_ms: f64,
    client: usize,
    service: usize,
    dns: bool,
    /// A follow-up (concurrent or back to back), not a new arrival.
    follow_up: bool,
}

/// One connection attempt of a fetch, in client time.
struct Attempt {
    conn: ConnId,
    v6: bool,
    start: f64,
    path: Path,
    outcome: Outcome,
    truth: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Answered; established (client time).
    Ok(f64),
    Blackhole,
    /// Refused (client learns at this client time).
    Refused(f64),
}

/// The generator: the world (clients, services, clocks) and the frames waiting to be written.
pub struct Busy {
    cfg: BusyConfig,
    rng: Rng,
    clients: Vec<Client>,
    services: Vec<Service>,
    clocks: Vec<Clock>,
    proxy: Clock,
    pair_secret: u64,
    frames: BinaryHeap<Reverse<(Nanos, u64, Vec<u8>)>>,
    serial: u64,
    pending: Vec<Arrival>,
    totals: Totals,
    fetch_id: u64,
}

impl Busy {
    /// Write the capture (classic pcap, microseconds, Ethernet) to `pcap` and one JSON line per
    /// connection to `truth`, until `limit`.
    pub fn write(
        mut self,
        limit: Limit,
        pcap: &mut impl Write,
        truth: &mut impl Write,
    ) -> io::Result<Totals> {
        pcap.write_all(&super::write_pcap(&[], Link::Ethernet, false, 262_144))?;
        self.totals.bytes = 24;
        let mut arrivals = 0u64;
        let mut next_arrival = 0.0f64;
        loop {
            let done = match limit {
                Limit::Fetches(n) => arrivals >= n,
                Limit::Bytes(n) => self.totals.bytes >= n,
                Limit::Packets(n) => self.totals.packets >= n,
            };
            // The earliest fetch to start: a new arrival or a scheduled follow-up.
            let follow = self
                .pending
                .iter()
                .enumerate()
                .min_by(|x, y| x.1.t_ms.total_cmp(&y.1.t_ms))
                .map(|(i, a)| (i, a.t_ms));
            let arrival = match follow {
                Some((i, t)) if t <= next_arrival || done => self.pending.swap_remove(i),
                _ if done => break,
                _ => {
                    let client = self.rng.below(self.clients.len());
                    let service = match self.clients.get(client) {
                        Some(c) if self.rng.chance(0.8) => {
                            c.favourites.get(self.rng.below(3)).copied().unwrap_or(0)
                        }
                        _ => self.rng.below(self.services.len()),
                    };
                    let a = Arrival {
                        t_ms: next_arrival,
                        client,
                        service,
                        dns: true,
                        follow_up: false,
                    };
                    arrivals += 1;
                    next_arrival += -(1.0 - self.rng.unit()).ln() * 1000.0 / self.cfg.fetches_per_s;
                    a
                }
            };
            // Nothing later can start before this fetch: what is older is final.
            self.flush(DEFAULT_BASE + (arrival.t_ms * 1e6) as Nanos, pcap)?;
            for t in self.fetch(&arrival) {
                serde_json::to_writer(&mut *truth, &t)?;
                truth.write_all(b"\n")?;
            }
        }
        self.flush(Nanos::MAX, pcap)?;
        Ok(self.totals)
    }

    /// Write every frame captured before `until`.
    fn flush(&mut self, until: Nanos, pcap: &mut impl Write) -> io::Result<()> {
        while self.frames.peek().is_some_and(|f| f.0 .0 < until) {
            let Some(Reverse((t, _, frame))) = self.frames.pop() else {
                break;
            };
            let secs = t.div_euclid(1_000_000_000);
            let usec = t.rem_euclid(1_000_000_000) / 1000;
            let len = frame.len() as u32;
            let mut head = [0u8; 16];
            head[0..4].copy_from_slice(&(secs as u32).to_le_bytes());
            head[4..8].copy_from_slice(&(usec as u32).to_le_bytes());
            head[8..12].copy_from_slice(&len.to_le_bytes());
            head[12..16].copy_from_slice(&len.to_le_bytes());
            pcap.write_all(&head)?;
            pcap.write_all(&frame)?;
            self.totals.bytes += 16 + u64::from(len);
            self.totals.packets += 1;
            self.totals.seconds = self.totals.seconds.max((t - DEFAULT_BASE) as f64 / 1e9);
        }
        Ok(())
    }

    fn jitter(&mut self) -> f64 {
        self.rng.range(0.0, 3.0)
    }

    /// A path for one connection of `client` on one family, with its jitter; `slow` adds a
    /// lagging stretch on the server's side.
    fn path(&mut self, client: usize, v6: bool, slow: f64) -> Path {
        // The stretch between the client and the capture point is one link for both
        // families; the IPv6 path's difference lies beyond it.
        let (rtt, rtt4, near) = self.clients.get(client).map_or((10.0, 10.0, 0.0), |c| {
            (if v6 { c.rtt6 } else { c.rtt4 }, c.rtt4, c.near)
        });
        let near_ms = rtt4 / 2.0 * near;
        let (cf, cb) = if near > 0.0 {
            (near_ms + self.jitter(), near_ms + self.jitter())
        } else {
            (0.0, 0.0)
        };
        let far = (rtt / 2.0 - near_ms).max(0.5);
        Path {
            cf,
            cb,
            sf: far + self.jitter() + slow / 2.0,
            sb: far + self.jitter() + slow / 2.0,
        }
    }

    fn port(&mut self, client: usize) -> u16 {
        let Some(c) = self.clients.get_mut(client) else {
            return 40_000;
        };
        let p = c.next_port;
        c.next_port = if p >= 64_999 { 20_000 } else { p + 1 };
        p
    }

    /// The clock the server side of a new connection shows, and its label.
    fn server_clock(&mut self, pool: &Pool, client: &str, server: &str) -> (Clock, bool) {
        match pool {
            Pool::Stable(p) => {
                let b = p.get(self.rng.below(p.len())).copied().unwrap_or(0);
                let c = self
                    .clocks
                    .get(b)
                    .cloned()
                    .unwrap_or_else(|| self.proxy.clone());
                (c, false)
            }
            Pool::Proxy => (self.proxy.clone(), false),
            Pool::PerConn => {
                self.serial += 1;
                let c = Clock {
                    hz: 1000.0,
                    skew: 0.0,
                    offset: self.rng.next_u64() as u32,
                    label: format!("R{}", self.serial),
                };
                (c, true)
            }
            Pool::PerPair => {
                let mut h: u64 = self.pair_secret;
                for b in client.bytes().chain(server.bytes()) {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
                let c = Clock {
                    hz: 1000.0,
                    skew: 0.0,
                    offset: (h >> 16) as u32,
                    label: format!("P:{client}>{server}"),
                };
                (c, false)
            }
        }
    }

    /// A new connection on one family, started at client time `start`, with the server's
    /// clock on it, and its truth.
    fn open(
        &mut self,
        s: &mut Scenario,
        e: &Ends<'_>,
        v6: bool,
        start: f64,
        path: Path,
        fetch: u64,
    ) -> (ConnId, TruthConn) {
        let (caddr, saddr) = if v6 { (e.c6, e.s6) } else { (e.c4, e.s4) };
        let port = self.port(e.client);
        let conn = s.tcp(caddr, port, saddr, e.sport);
        let (clock, random_clock) = self.server_clock(e.pool, caddr, saddr);
        self.stamp(s, conn, &clock, e.base_ms, path.sb);
        let truth = TruthConn {
            client: caddr.to_string(),
            client_port: port,
            server: saddr.to_string(),
            server_port: e.sport,
            host: e.host.to_string(),
            service: e.name.to_string(),
            fetch,
            race: None,
            role: "single".into(),
            clock: clock.label,
            random_clock,
            stale: false,
            family: if v6 { 6 } else { 4 },
            syn_ms: e.base_ms + start + path.cf,
        };
        (conn, truth)
    }
}
