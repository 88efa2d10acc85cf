//! Service naming from the command line and DNS: a connection's `service` is the name given by
//! `--service`, else the name its server address was a DNS answer for (valid from the answer's
//! time), else `"ADDRESS port"`. The application layer refines it later with SNI and Host, and
//! the race detector gives all attempts of a race their best name.

use std::net::IpAddr;

use super::dns::DnsTable;
use crate::model::{Connection, Host, NameSource};

/// Name every connection.
pub fn assign(
    conns: &mut [Connection],
    hosts: &[Host],
    dns: &DnsTable,
    cli: &[(String, Vec<IpAddr>)],
) {
    for c in conns.iter_mut() {
        let server = c.rec.server.ip;
        c.nat64 = dns.is_nat64(&server);
        if let Some((name, _)) = cli.iter().find(|(_, addrs)| addrs.contains(&server)) {
            c.service = name.clone();
            c.service_source = NameSource::Cli;
            continue;
        }
        let clients = hosts
            .get(c.host)
            .map(|h| h.addrs.as_slice())
            .unwrap_or_default();
        let at = c.rec.syn_time.get().unwrap_or(c.rec.first_time);
        if let Some(name) = dns.name_for(&server, clients, at) {
            c.service = name.to_string();
            c.service_source = NameSource::Dns;
        } else {
            c.service = c.address_service();
            c.service_source = NameSource::Address;
        }
    }
}
