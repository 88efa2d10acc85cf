//! Service naming from the command line and DNS: a connection's `service` is the name given by
//! `--service`, else the TLS SNI, else the HTTP Host (without port, when not an address literal),
//! else the name its server address was a DNS answer for (valid from the answer's time), else
//! `"ADDRESS port"`. The race detector then gives all attempts of a race their best name.

use std::net::IpAddr;

use crate::app::dns::DnsTable;
use crate::model::{Analysis, Connection, Host, Interner, Name, NameSource};

use super::{Context, Detector, Part};

/// Names each connection's service.
pub struct Names;

impl Detector for Names {
    fn name(&self) -> &'static str {
        "names"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Dns, Part::Hosts]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::Names]
    }
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>) {
        assign(&mut a.connections, &a.hosts, ctx.dns(), &ctx.cfg.services);
    }
}

/// Where a connection's name comes from, found without touching the connection.
enum Found<'d> {
    /// The `--service` entry at this index.
    Cli(usize),
    /// The connection's own SNI or Host.
    App(String, NameSource),
    /// A DNS answer.
    Dns(&'d str),
    /// None: the server address and port.
    Address,
}

/// Name every connection: the sources looked up on every core (DNS lookups are most of the
/// work), then the names interned in connection order. In memory each connection is named in
/// place; spilled, the names are kept beside the spill ([`Column`]) instead of rewriting it.
pub fn assign(
    conns: &mut crate::model::Connections,
    hosts: &[Host],
    dns: &DnsTable,
    cli: &[(String, Vec<IpAddr>)],
) {
    let mut names = Interner::default();
    // "ADDRESS port" names, by address and port (formatted once each).
    let mut by_address: foldhash::HashMap<(IpAddr, u16), Name> = Default::default();
    if conns.spilled() {
        let mut column = Column::default();
        for block in conns.blocks() {
            let found = find(&block, hosts, dns, cli);
            for (c, (found, nat64)) in block.iter().zip(found) {
                let (name, source) = resolve(found, c, cli, &mut names, &mut by_address);
                column.push(c.id, &name, source, nat64);
            }
        }
        if column.names.len() <= Column::MOST {
            drop((names, by_address));
            let column = column.finish(conns.len());
            conns.update_deferred(move |c| column.apply(c));
            return;
        }
        // More distinct names than a column keeps (a scan of millions of addresses): written
        // into the spill instead.
        drop(column);
    }
    conns.update_blocks(|block| {
        let found = find(block, hosts, dns, cli);
        for (c, (found, nat64)) in block.iter_mut().zip(found) {
            c.nat64 = nat64;
            (c.service, c.service_source) = resolve(found, c, cli, &mut names, &mut by_address);
        }
    });
}

/// Each connection's name, source and NAT64 flag, kept beside the spill: the distinct names,
/// and per connection a number (`name << 4 | source << 1 | nat64`), as runs of equal numbers
/// (8 bytes a run: a flood's or a poller's neighbours share their name) or, when runs are
/// more than half the connections, 4 bytes a connection.
#[derive(Default)]
struct Column {
    names: Vec<Name>,
    /// A name's number, by its shared copy's address (the interner hands out one per text).
    number: foldhash::HashMap<usize, u32>,
    /// (first id, number) of each run of equal numbers, in id order.
    runs: Vec<(u32, u32)>,
    /// Per connection, once [`Column::finish`] found runs too many.
    dense: Vec<u32>,
}

impl Column {
    /// Distinct names a column keeps (the number has 28 bits for them).
    const MOST: usize = 1 << 20;

    fn push(&mut self, id: usize, name: &Name, source: NameSource, nat64: bool) {
        let next = self.names.len() as u32;
        let k = *self
            .number
            .entry(std::sync::Arc::as_ptr(name) as *const u8 as usize)
            .or_insert_with(|| {
                self.names.push(name.clone());
                next
            });
        let source = NameSource::ALL
            .iter()
            .position(|s| *s == source)
            .unwrap_or(0) as u32;
        let packed = k << 4 | source << 1 | u32::from(nat64);
        if self.runs.last().is_none_or(|r| r.1 != packed) {
            self.runs.push((id as u32, packed));
        }
    }

    /// Ready to apply to `n` connections: the address index dropped, the runs made a number
    /// per connection when that is smaller.
    fn finish(mut self, n: usize) -> Column {
        self.number = Default::default();
        if self.runs.len() * 2 > n {
            let mut dense = Vec::with_capacity(n);
            for (k, &(first, packed)) in self.runs.iter().enumerate() {
                let end = self.runs.get(k + 1).map_or(n, |r| r.0 as usize);
                dense.resize(end.max(first as usize), packed);
            }
            self.dense = dense;
            self.runs = Vec::new();
        }
        self.runs.shrink_to_fit();
        self
    }

    /// Set `c`'s name, source and NAT64 flag.
    fn apply(&self, c: &mut Connection) {
        let packed = if self.dense.is_empty() {
            let at = self.runs.partition_point(|r| r.0 as usize <= c.id);
            match at.checked_sub(1).and_then(|k| self.runs.get(k)) {
                Some(r) => r.1,
                None => return,
            }
        } else {
            match self.dense.get(c.id) {
                Some(&p) => p,
                None => return,
            }
        };
        if let Some(name) = self.names.get((packed >> 4) as usize) {
            if !std::sync::Arc::ptr_eq(&c.service, name) {
                c.service = name.clone();
            }
        }
        c.service_source = NameSource::ALL
            .get(((packed >> 1) & 7) as usize)
            .copied()
            .unwrap_or_default();
        c.nat64 = packed & 1 == 1;
    }
}

/// Where each connection's name comes from, on every core.
fn find<'d>(
    conns: &[Connection],
    hosts: &[Host],
    dns: &'d DnsTable,
    cli: &[(String, Vec<IpAddr>)],
) -> Vec<(Found<'d>, bool)> {
    use rayon::prelude::*;
    conns
        .par_iter()
        .map(|c| {
            let server = c.rec.server.ip;
            let nat64 = dns.is_nat64(&server);
            if let Some(i) = cli.iter().position(|(_, addrs)| addrs.contains(&server)) {
                return (Found::Cli(i), nat64);
            }
            if let Some((name, source)) = app_name(c) {
                return (Found::App(name, source), nat64);
            }
            let clients = hosts
                .get(c.host)
                .map(|h| h.addrs())
                .unwrap_or_default();
            let at = c.rec.syn_time.get().unwrap_or(c.rec.first_time);
            match dns.name_for(&server, clients, at) {
                Some(name) => (Found::Dns(name), nat64),
                None => (Found::Address, nat64),
            }
        })
        .collect()
}

/// The name and its source for `c`, from where it was found.
fn resolve(
    found: Found<'_>,
    c: &Connection,
    cli: &[(String, Vec<IpAddr>)],
    names: &mut Interner,
    by_address: &mut foldhash::HashMap<(IpAddr, u16), Name>,
) -> (Name, NameSource) {
    match found {
        Found::Cli(i) => {
            let name = cli.get(i).map_or("", |(n, _)| n.as_str());
            (names.get(name), NameSource::Cli)
        }
        Found::App(name, source) => (names.get(&name), source),
        Found::Dns(name) => (names.get(name), NameSource::Dns),
        Found::Address => {
            let key = (c.rec.server.ip, c.rec.server.port);
            let name = match by_address.get(&key) {
                Some(n) => n.clone(),
                None => {
                    let n = names.get(&c.address_service());
                    by_address.insert(key, n.clone());
                    n
                }
            };
            (name, NameSource::Address)
        }
    }
}

/// The name the connection's own payload gives: SNI, else Host.
fn app_name(c: &Connection) -> Option<(String, NameSource)> {
    if let Some(sni) = c.tls().and_then(|t| t.sni.clone()) {
        return Some((sni, NameSource::Sni));
    }
    let host = c.request()?.host.as_deref()?;
    let name = strip_port(host);
    (!name.is_empty() && name.parse::<IpAddr>().is_err())
        .then(|| (name.to_string(), NameSource::Host))
}

/// `name:port` → `name`; `[v6]:port` → `v6`.
fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConnRecord;

    /// The column gives every connection back its name, source and NAT64 flag, kept as runs
    /// when neighbours share them and as a number per connection when they do not.
    #[test]
    fn the_column_gives_back_each_connections_name() {
        let mut interner = Interner::default();
        let names = [interner.get("a.lab"), interner.get("b.lab")];
        let sources = [NameSource::Sni, NameSource::Dns, NameSource::Address];
        // Runs: 0..40 a.lab/sni, 40..41 b.lab/dns+nat64, 41..100 a.lab/address.
        let runs = |id: usize| -> (usize, usize, bool) {
            match id {
            0..40 => (0, 0, false),
            40 => (1, 1, true),
            _ => (0, 2, false),
            }
        };
        // Every connection different from its neighbour.
        let alternating = |id: usize| -> (usize, usize, bool) { (id % 2, id % 3, id.is_multiple_of(5)) };
        for (pattern, want_runs) in [(&runs as &dyn Fn(usize) -> (usize, usize, bool), true), (&alternating, false)] {
            let mut column = Column::default();
            for id in 0..100 {
                let (n, s, nat64) = pattern(id);
                column.push(id, &names[n], sources[s], nat64);
            }
            let column = column.finish(100);
            assert_eq!(column.dense.is_empty(), want_runs);
            assert_eq!(column.runs.len(), if want_runs { 3 } else { 0 });
            for id in 0..100 {
                let mut c = Connection::new(id, ConnRecord::default());
                column.apply(&mut c);
                let (n, s, nat64) = pattern(id);
                assert_eq!((&*c.service, c.service_source, c.nat64), (&*names[n], sources[s], nat64), "{id}");
            }
        }
    }
}
