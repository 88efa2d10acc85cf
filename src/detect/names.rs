//! Service naming from the command line and DNS: a connection's `service` is the name given by
//! `--service`, else the TLS SNI, else the HTTP Host (without port, when not an address literal),
//! else the name its server address was a DNS answer for (valid from the answer's time), else
//! `"ADDRESS port"`. The race detector then gives all attempts of a race their best name.

use std::net::IpAddr;

use super::dns::DnsTable;
use crate::model::{Connection, Host, Interner, Name, NameSource};

/// Name every connection.
pub fn assign(
    conns: &mut [Connection],
    hosts: &[Host],
    dns: &DnsTable,
    cli: &[(String, Vec<IpAddr>)],
) {
    let mut names = Interner::default();
    // "ADDRESS port" names, by address and port (formatted once each).
    let mut by_address: foldhash::HashMap<(IpAddr, u16), Name> = Default::default();
    for c in conns.iter_mut() {
        let server = c.rec.server.ip;
        c.nat64 = dns.is_nat64(&server);
        if let Some((name, _)) = cli.iter().find(|(_, addrs)| addrs.contains(&server)) {
            c.service = names.get(name);
            c.service_source = NameSource::Cli;
            continue;
        }
        if let Some(name) = app_name(c) {
            c.service = names.get(&name.0);
            c.service_source = name.1;
            continue;
        }
        let clients = hosts
            .get(c.host)
            .map(|h| h.addrs.as_slice())
            .unwrap_or_default();
        let at = c.rec.syn_time.get().unwrap_or(c.rec.first_time);
        if let Some(name) = dns.name_for(&server, clients, at) {
            c.service = names.get(name);
            c.service_source = NameSource::Dns;
        } else {
            let key = (server, c.rec.server.port);
            c.service = match by_address.get(&key) {
                Some(n) => n.clone(),
                None => {
                    let n = names.get(&c.address_service());
                    by_address.insert(key, n.clone());
                    n
                }
            };
            c.service_source = NameSource::Address;
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
