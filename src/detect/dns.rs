//! DNS over UDP: which name each server address was an answer for, from when, and the query
//! and answer times of each exchange (RFC 8305 §3, Resolution Delay between AAAA and A).
//!
//! A/AAAA answers (after any CNAME chain) are mapped to the name the client asked for, valid
//! from the answer's capture time. AAAA answers in 64:ff9b::/96, or whose low 32 bits equal an
//! A answer for the same name, reveal a NAT64 prefix (RFC 6052, RFC 7050).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{Packet as DnsPacket, PacketFlag};

use crate::decode::{Packet, UdpView};
use crate::domain::Nanos;

/// DNS port.
const DNS_PORT: u16 = 53;
/// Record types.
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// Bound on kept exchanges (DNS is small, but a capture can be full of it).
const MAX_EXCHANGES: usize = 1_000_000;

/// One query and its answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The querying client.
    pub client: IpAddr,
    /// The name asked.
    pub name: String,
    /// Query type (1 = A, 28 = AAAA, …).
    pub qtype: u16,
    /// Query time.
    pub query_time: Option<Nanos>,
    /// Answer time.
    pub answer_time: Option<Nanos>,
    /// Addresses in the answer.
    pub addrs: Vec<IpAddr>,
}

/// What DNS traffic in the capture says.
#[derive(Debug, Default)]
pub struct DnsTable {
    /// Exchanges in order of query (or answer, when the query was not captured).
    pub exchanges: Vec<Exchange>,
    /// Address → (answer time, exchange index), in time order.
    by_addr: HashMap<IpAddr, Vec<(Nanos, usize)>>,
    /// (client, client port, id) → exchange index, for pairing answers with queries.
    pending: HashMap<(IpAddr, u16, u16), usize>,
    /// NAT64 prefixes learned (the high 96 bits).
    pub nat64_prefixes: Vec<u128>,
    /// Messages that did not parse.
    pub malformed: u64,
}

/// The well-known NAT64 prefix 64:ff9b::/96.
const WKP: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;

impl DnsTable {
    /// Observe one UDP datagram (anything not on port 53 is ignored).
    pub fn on_udp(&mut self, p: &Packet<'_>, u: &UdpView<'_>) {
        if u.src_port != DNS_PORT && u.dst_port != DNS_PORT {
            return;
        }
        let Ok(msg) = DnsPacket::parse(u.payload) else {
            self.malformed += 1;
            return;
        };
        let Some(q) = msg.questions.first() else {
            return;
        };
        let qtype = u16::from(q.qtype);
        let is_response = msg.has_flags(PacketFlag::RESPONSE);
        let (client, client_port) = if is_response {
            (p.dst, u.dst_port)
        } else {
            (p.src, u.src_port)
        };
        let key = (client, client_port, msg.id());
        if !is_response {
            if self.exchanges.len() < MAX_EXCHANGES {
                self.pending.insert(key, self.exchanges.len());
                self.exchanges.push(Exchange {
                    client,
                    name: normalize(&q.qname.to_string()),
                    qtype,
                    query_time: Some(p.time),
                    answer_time: None,
                    addrs: Vec::new(),
                });
            }
            return;
        }
        let addrs: Vec<IpAddr> = msg
            .answers
            .iter()
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(a.address))),
                RData::AAAA(a) => Some(IpAddr::V6(Ipv6Addr::from(a.address))),
                _ => None,
            })
            .collect();
        let idx = match self.pending.remove(&key) {
            Some(i) => i,
            None if self.exchanges.len() < MAX_EXCHANGES => {
                self.exchanges.push(Exchange {
                    client,
                    name: normalize(&q.qname.to_string()),
                    qtype,
                    query_time: None,
                    answer_time: None,
                    addrs: Vec::new(),
                });
                self.exchanges.len() - 1
            }
            None => return,
        };
        let Some(ex) = self.exchanges.get_mut(idx) else {
            return;
        };
        ex.answer_time = Some(p.time);
        ex.addrs = addrs.clone();
        for a in &addrs {
            self.by_addr.entry(*a).or_default().push((p.time, idx));
            if let IpAddr::V6(v6) = a {
                let bits = u128::from(*v6);
                if bits & !0xffff_ffff == WKP && !self.nat64_prefixes.contains(&WKP) {
                    self.nat64_prefixes.push(WKP);
                }
            }
        }
        if qtype == TYPE_AAAA || qtype == TYPE_A {
            self.learn_nat64(idx);
        }
    }

    /// RFC 7050-style prefix discovery: an AAAA answer whose low 32 bits are an A answer for
    /// the same name has its high 96 bits as a NAT64 prefix.
    fn learn_nat64(&mut self, idx: usize) {
        let Some(ex) = self.exchanges.get(idx) else {
            return;
        };
        let mine: Vec<IpAddr> = ex.addrs.clone();
        let name = ex.name.clone();
        let others: Vec<IpAddr> = self
            .exchanges
            .iter()
            .filter(|e| e.name == name && e.answer_time.is_some())
            .flat_map(|e| e.addrs.iter().copied())
            .collect();
        for a in mine.iter().chain(others.iter()) {
            let IpAddr::V6(v6) = a else { continue };
            let bits = u128::from(*v6);
            for b in mine.iter().chain(others.iter()) {
                if let IpAddr::V4(v4) = b {
                    let prefix = bits & !0xffff_ffff;
                    if bits & 0xffff_ffff == u128::from(u32::from(*v4))
                        && prefix != 0
                        && !self.nat64_prefixes.contains(&prefix)
                    {
                        self.nat64_prefixes.push(prefix);
                    }
                }
            }
        }
    }

    /// The name `addr` was an answer for at time `t` (the latest answer at or before `t`;
    /// answers to `client` preferred).
    pub fn name_for(&self, addr: &IpAddr, client: &[IpAddr], t: Nanos) -> Option<&str> {
        let list = self.by_addr.get(addr)?;
        let valid = list.iter().filter(|(at, _)| *at <= t);
        let pick = |own: bool| {
            valid.clone().rfind(|(_, i)| {
                self.exchanges
                    .get(*i)
                    .is_some_and(|e| client.contains(&e.client) == own)
            })
        };
        let (_, i) = pick(true).or_else(|| pick(false))?;
        self.exchanges.get(*i).map(|e| e.name.as_str())
    }

    /// The exchange for `name` of type `qtype` by one of `clients`, the latest whose answer
    /// (or query) came at or before `t`.
    pub fn exchange(
        &self,
        name: &str,
        qtype: u16,
        clients: &[IpAddr],
        t: Nanos,
    ) -> Option<&Exchange> {
        self.exchanges
            .iter()
            .filter(|e| e.name == name && e.qtype == qtype && clients.contains(&e.client))
            .rfind(|e| e.answer_time.or(e.query_time).is_some_and(|x| x <= t))
    }

    /// True when `addr` is NAT64-synthesised (well-known or learned prefix).
    pub fn is_nat64(&self, addr: &IpAddr) -> bool {
        match addr {
            IpAddr::V6(v6) => {
                let prefix = u128::from(*v6) & !0xffff_ffff;
                prefix == WKP || self.nat64_prefixes.contains(&prefix)
            }
            IpAddr::V4(_) => false,
        }
    }

    /// Clients that queried DNS (address → exchanges), for tying a host's addresses.
    pub fn clients(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.iter()
    }

    /// Record types A and AAAA, for callers.
    pub const A: u16 = TYPE_A;
    /// AAAA.
    pub const AAAA: u16 = TYPE_AAAA;
}

/// Names compare without the trailing dot and case-insensitively.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
