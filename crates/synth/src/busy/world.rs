//! The world a busy capture is drawn from: clients, services and the servers' clocks.

use super::{Busy, BusyConfig, CapturePoint, Rng, Totals, WRAP};
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Profile {
    Curl,
    Node,
    Chromium,
    Dynamic,
}

pub(super) struct Client {
    pub(super) v4: String,
    pub(super) v6: String,
    pub(super) rtt4: f64,
    pub(super) rtt6: f64,
    /// Share of the path between the client and the capture point (0 at the client).
    pub(super) near: f64,
    pub(super) profile: Profile,
    /// How likely its IPv6 path is to fail or lag.
    pub(super) v6_trouble: f64,
    pub(super) favourites: [usize; 3],
    pub(super) next_port: u16,
}

#[derive(Clone, Debug)]
pub(super) enum Pool {
    Stable(Vec<usize>),
    PerConn,
    PerPair,
    Proxy,
}

pub(super) struct Service {
    pub(super) name: String,
    pub(super) v4: String,
    pub(super) v6: Option<String>,
    pub(super) port: u16,
    pub(super) pool: Pool,
    pub(super) idle_timeout_ms: f64,
}

#[derive(Clone, Debug)]
pub(super) struct Clock {
    pub(super) hz: f64,
    pub(super) skew: f64,
    pub(super) offset: u32,
    pub(super) label: String,
}

impl Busy {
    /// A world built from `cfg.seed`.
    pub fn new(cfg: BusyConfig) -> Busy {
        let mut rng = Rng::new(cfg.seed);
        let clients = (0..cfg.clients.max(1))
            .map(|i| client(&mut rng, &cfg, i))
            .collect();
        let clocks: Vec<Clock> = (0..cfg.backends.max(1))
            .map(|k| {
                let hz = [1000.0, 250.0, 100.0][rng.below(3)];
                // The first backend's TSval wraps a minute into the capture.
                let offset = if k == 0 {
                    (WRAP - hz * 60.0) as u32
                } else {
                    rng.next_u64() as u32
                };
                Clock {
                    hz,
                    skew: rng.range(-100e-6, 100e-6),
                    offset,
                    label: format!("B{}", k + 1),
                }
            })
            .collect();
        let proxy = Clock {
            hz: 1000.0,
            skew: rng.range(-100e-6, 100e-6),
            offset: rng.next_u64() as u32,
            label: "X".into(),
        };
        let services = (0..cfg.services.max(1))
            .map(|k| service(&mut rng, &cfg, clocks.len(), k))
            .collect();
        let pair_secret = rng.next_u64();
        Busy {
            cfg,
            rng,
            clients,
            services,
            clocks,
            proxy,
            pair_secret,
            frames: BinaryHeap::new(),
            serial: 0,
            pending: Vec::new(),
            totals: Totals::default(),
            fetch_id: 0,
        }
    }
}

/// Client `i`: its addresses, round trips, profile, IPv6 trouble and favourite services.
fn client(rng: &mut Rng, cfg: &BusyConfig, i: usize) -> Client {
    let rtt4 = (1.0f64.ln() + rng.unit() * (300.0f64.ln() - 1.0f64.ln())).exp();
    let rtt6 = (rtt4 + rng.range(-100.0, 100.0)).clamp(1.0, 400.0);
    let profile = match rng.below(10) {
        0..=2 => Profile::Curl,
        3..=4 => Profile::Node,
        5..=7 => Profile::Chromium,
        _ => Profile::Dynamic,
    };
    let near = match cfg.capture_point {
        CapturePoint::Client => 0.0,
        CapturePoint::Middle => rng.range(0.05, 0.6),
    };
    let services = cfg.services.max(1);
    Client {
        v4: format!("10.{}.{}.{}", 1 + i / 62_500, (i / 250) % 250, i % 250 + 1),
        v6: format!("fd00:1::{:x}", i + 1),
        rtt4,
        rtt6,
        near,
        profile,
        v6_trouble: if rng.chance(0.5) { 0.7 } else { 0.15 },
        favourites: [
            rng.below(services),
            rng.below(services),
            rng.below(services),
        ],
        next_port: 20_000 + rng.below(5000) as u16,
    }
}

/// Service `k`: its addresses, port, idle timeout and the pool of backends behind it.
fn service(rng: &mut Rng, cfg: &BusyConfig, clocks: usize, k: usize) -> Service {
    let pool = match k % 10 {
        3 => Pool::PerConn,
        6 => Pool::PerPair,
        9 => Pool::Proxy,
        _ => {
            let n = 1 + rng.below(3);
            let mut p: Vec<usize> = Vec::new();
            while p.len() < n.min(clocks) {
                let b = rng.below(clocks);
                if !p.contains(&b) {
                    p.push(b);
                }
            }
            Pool::Stable(p)
        }
    };
    Service {
        name: format!("svc{k}.busy.example"),
        v4: format!("198.18.{}.{}", k / 250, k % 250 + 1),
        v6: (!rng.chance(cfg.v4_only_share)).then(|| format!("2001:db8:{k:x}::1")),
        port: if rng.chance(0.7) { 443 } else { 80 },
        pool,
        idle_timeout_ms: [5000.0, 15_000.0, 30_000.0][rng.below(3)],
    }
}
