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
/// work), then the names interned in connection order.
pub fn assign(
    conns: &mut crate::model::Connections,
    hosts: &[Host],
    dns: &DnsTable,
    cli: &[(String, Vec<IpAddr>)],
) {
    let mut names = Interner::default();
    // "ADDRESS port" names, by address and port (formatted once each).
    let mut by_address: foldhash::HashMap<(IpAddr, u16), Name> = Default::default();
    conns.update_blocks(|block| name_block(block, hosts, dns, cli, &mut names, &mut by_address));
}

/// Name one block of connections.
fn name_block(
    conns: &mut [Connection],
    hosts: &[Host],
    dns: &DnsTable,
    cli: &[(String, Vec<IpAddr>)],
    names: &mut Interner,
    by_address: &mut foldhash::HashMap<(IpAddr, u16), Name>,
) {
    use rayon::prelude::*;
    let found: Vec<(Found<'_>, bool)> = conns
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
        .collect();
    for (c, (found, nat64)) in conns.iter_mut().zip(found) {
        c.nat64 = nat64;
        (c.service, c.service_source) = match found {
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
        };
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
