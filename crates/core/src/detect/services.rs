//! The `services[]` list: one entry per (service, server port), with its addresses, its
//! connection count, the server's observed idle timeout and how far its backends could be
//! identified; and the warning for a service whose backends cannot be told apart.

use std::collections::BTreeMap;

use super::summary::median;
use super::{Context, DetectConfig, Detector, Part, Visitor};
use crate::domain::{ms_between, Side};
use crate::error::Warning;
use crate::model::{Analysis, ClockRegime, Connection, Service};

/// Builds `services[]`.
pub struct Services;

impl Detector for Services {
    fn name(&self) -> &'static str {
        "services"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Names, Part::Backends]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::Services]
    }
    fn visitor(&self, _a: &Analysis, _cfg: &DetectConfig) -> Option<Box<dyn Visitor>> {
        Some(Box::new(Pass::default()))
    }
}

/// One service's facts, from any subset of its connections (subsets merge in any order:
/// every list is sorted before it is reported).
#[derive(Default)]
struct Acc {
    ips: Vec<std::net::IpAddr>,
    connections: usize,
    idle_closes: Vec<f64>,
    with_ts: usize,
    identified: usize,
    regimes: Vec<ClockRegime>,
}

impl Acc {
    /// Count one connection.
    fn add(&mut self, c: &Connection) {
        if !self.ips.contains(&c.rec.server.ip) {
            self.ips.push(c.rec.server.ip);
        }
        self.connections += 1;
        let regime = super::backend::regime(c);
        if regime != ClockRegime::NoTimestamps {
            self.with_ts += 1;
        }
        if regime == ClockRegime::Stable {
            self.identified += 1;
        }
        if !self.regimes.contains(&regime) {
            self.regimes.push(regime);
        }
        // The server closed first, after an exchange: its idle timeout.
        let server_closed = matches!(c.rec.end(), Some((_, Side::Server, false)));
        // A FIN within 100 ms of the last payload is an application close (a response
        // with `Connection: close`, a WebSocket close), not an idle timeout.
        if let (true, Some(idle)) = (server_closed, c.rec.server_fin_idle.get()) {
            if c.rec.bytes[1] > 0 && idle >= 100_000_000 {
                self.idle_closes.push(ms_between(0, idle));
            }
        }
    }

    fn merge(&mut self, o: Acc) {
        for ip in o.ips {
            if !self.ips.contains(&ip) {
                self.ips.push(ip);
            }
        }
        for r in o.regimes {
            if !self.regimes.contains(&r) {
                self.regimes.push(r);
            }
        }
        self.connections += o.connections;
        self.idle_closes.extend(o.idle_closes);
        self.with_ts += o.with_ts;
        self.identified += o.identified;
    }

    /// The service's entry, and the warning when none of its timestamped connections could
    /// be tied to a backend.
    fn service(mut self, name: &str, server_port: u16, file: &str) -> (Service, Option<Warning>) {
        // Spelled out once per service, not once per connection; in text order.
        let mut ips: Vec<String> = self.ips.iter().map(ToString::to_string).collect();
        ips.sort();
        self.idle_closes.sort_by(f64::total_cmp);
        self.regimes.sort();
        let warning = (self.with_ts >= 2 && self.identified == 0).then(|| Warning {
            kind: "backends_unidentifiable",
            packet: None,
            message: format!(
                "{file}: service {name} port {server_port}: no backend identifiable from TCP timestamps ({} connections with timestamps, none sharing a clock: offsets random per connection or per address pair)",
                self.with_ts
            ),
        });
        let service = Service {
            name: name.to_string(),
            server_ips: ips,
            server_port,
            connections: self.connections,
            server_idle_timeout_ms: median(&self.idle_closes),
            server_idle_closes: self.idle_closes.len(),
            backend_identified_share: (self.with_ts > 0)
                .then(|| self.identified as f64 / self.with_ts as f64),
            clock_regimes: self.regimes,
        };
        (service, warning)
    }
}

/// One entry per (service, server port), with its addresses and connection count.
pub fn services(a: &mut Analysis) {
    let mut pass = Pass::default();
    for block in a.connections.blocks() {
        pass.add(&block);
    }
    pass.finish_into(a);
}

/// The services' pass over the connections.
#[derive(Default)]
struct Pass {
    by: BTreeMap<(String, u16), Acc>,
}

impl Pass {
    /// Count one block's connections.
    fn add(&mut self, block: &[Connection]) {
        use rayon::prelude::*;
        type ByService<'a> = BTreeMap<(&'a str, u16), Acc>;
        // Folded on every core, keyed by the name's text (no shared count touched per
        // connection).
        let part: ByService<'_> = block
            .par_iter()
            .fold(ByService::new, |mut by, c| {
                by.entry((&*c.service, c.rec.server.port))
                    .or_default()
                    .add(c);
                by
            })
            .reduce(ByService::new, |mut x, y| {
                for (k, acc) in y {
                    x.entry(k).or_default().merge(acc);
                }
                x
            });
        for ((name, port), acc) in part {
            match self.by.get_mut(&(name.to_string(), port)) {
                Some(known) => known.merge(acc),
                None => {
                    self.by.insert((name.to_string(), port), acc);
                }
            }
        }
    }

    /// `services` and their warnings.
    fn finish_into(self, a: &mut Analysis) {
        let mut warnings = Vec::new();
        a.services = self
            .by
            .into_iter()
            .map(|((name, port), acc)| {
                let (service, warning) = acc.service(&name, port, &a.capture.file);
                warnings.extend(warning);
                service
            })
            .collect();
        a.warnings.extend(warnings);
    }
}

impl Visitor for Pass {
    fn visit(&mut self, _a: &Analysis, block: &[Connection]) {
        self.add(block);
    }
    fn finish(self: Box<Self>, a: &mut Analysis, _ctx: &mut Context<'_>) {
        self.finish_into(a);
    }
}
