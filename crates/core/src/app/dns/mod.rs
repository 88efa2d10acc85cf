//! DNS over UDP: which name each server address was an answer for, from when, and the query
//! and answer times of each exchange (RFC 8305 §3, Resolution Delay between AAAA and A).
//!
//! A/AAAA answers (after any CNAME chain) are mapped to the name the client asked for, valid
//! from the answer's capture time. HTTPS (type 65) and SVCB (type 64) answers keep their
//! service parameters (ALPN, port, address hints, ECH presence, priority): what a Happy
//! Eyeballs v3 client builds its candidates from. AAAA answers in 64:ff9b::/96, or whose low 32 bits equal an
//! A answer for the same name, reveal a NAT64 prefix (RFC 6052, RFC 7050).

use foldhash::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{Packet as DnsPacket, PacketFlag};

use crate::decode::{Packet, UdpView};
use crate::domain::{Nanos, OptNanos};

mod wire;

/// DNS port.
const DNS_PORT: u16 = 53;
/// Record types.
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// How far back `exchange` looks through one client's exchanges for a name and type.
const LOOKBACK: usize = 4096;
/// HTTPS and SVCB record types (RFC 9460).
pub const TYPE_HTTPS: u16 = 65;
/// SVCB record type.
pub const TYPE_SVCB: u16 = 64;
/// Bound on kept exchanges (DNS is small, but a capture can be full of it).
const MAX_EXCHANGES: usize = 1_000_000;

/// One query and its answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The querying client.
    pub client: IpAddr,
    /// The name asked (one shared copy per distinct name).
    pub name: crate::domain::Name,
    /// Query type (1 = A, 28 = AAAA, …).
    pub qtype: u16,
    /// Query time.
    pub query_time: OptNanos,
    /// Answer time.
    pub answer_time: OptNanos,
    /// Where its answer's addresses sit in the table's address list ([`DnsTable::addrs`]):
    /// one flat list, not a small allocation per exchange, which cost a `free` each when the
    /// table was dropped.
    addrs: std::ops::Range<u32>,
    /// An HTTPS or SVCB answer's records.
    pub svc: Option<Box<[SvcRecord]>>,
}

/// One HTTPS or SVCB record (RFC 9460): a service endpoint and its parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SvcRecord {
    /// SvcPriority: 0 is AliasMode, lower values preferred.
    pub priority: u16,
    /// TargetName (`.` for the owner name).
    pub target: String,
    /// `alpn`: the protocols offered (`h3`, `h2`, …).
    pub alpn: Vec<String>,
    /// `no-default-alpn`.
    pub no_default_alpn: bool,
    /// `port`.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub port: Option<u16>,
    /// `ipv4hint`.
    pub ipv4hint: Vec<Ipv4Addr>,
    /// `ipv6hint`.
    pub ipv6hint: Vec<Ipv6Addr>,
    /// An `ech` configuration is present (its value is not kept).
    pub ech: bool,
}

impl SvcRecord {
    /// The record of a parsed SVCB/HTTPS rdata.
    fn of(r: &simple_dns::rdata::SVCB<'_>) -> SvcRecord {
        use simple_dns::rdata::SVCParam;
        let mut out = SvcRecord {
            priority: r.priority,
            target: match r.target.to_string() {
                t if t.is_empty() => ".".to_string(),
                t => t,
            },
            ..SvcRecord::default()
        };
        for p in r.iter_params() {
            match p {
                SVCParam::Alpn(list) => {
                    out.alpn = list.iter().map(|c| c.to_string()).collect();
                }
                SVCParam::NoDefaultAlpn => out.no_default_alpn = true,
                SVCParam::Port(n) => out.port = Some(*n),
                SVCParam::Ipv4Hint(v) => {
                    out.ipv4hint = v.iter().map(|&a| Ipv4Addr::from(a)).collect()
                }
                SVCParam::Ipv6Hint(v) => {
                    out.ipv6hint = v.iter().map(|&a| Ipv6Addr::from(a)).collect()
                }
                SVCParam::Ech(_) => out.ech = true,
                _ => {}
            }
        }
        out
    }

    /// The record offers HTTP/3 (`h3` in its ALPN).
    pub fn offers_h3(&self) -> bool {
        self.alpn.iter().any(|a| a == "h3")
    }
}

/// What DNS traffic in the capture says.
#[derive(Debug, Default)]
pub struct DnsTable {
    /// Exchanges in order of query (or answer, when the query was not captured).
    pub exchanges: Vec<Exchange>,
    /// The answers' addresses, exchange after exchange in order of answer.
    answer_addrs: Vec<IpAddr>,
    /// Address → (answer time, exchange index), in time order.
    by_addr: HashMap<IpAddr, Vec<(Nanos, usize)>>,
    /// (address, client) → (answer time, exchange index), in time order: answers to one
    /// client found in O(log n) however many other clients asked for the same address.
    by_addr_client: HashMap<(IpAddr, IpAddr), Vec<(Nanos, usize)>>,
    /// (client, client port, id) → exchange index, for pairing answers with queries.
    pending: HashMap<(IpAddr, u16, u16), usize>,
    /// Client → its exchanges' indices, in order.
    by_client: HashMap<IpAddr, Vec<usize>>,
    /// Per name, the distinct A answers and the AAAA answers by their low 32 bits (prefix
    /// discovery in O(1) per new address).
    by_name: HashMap<crate::domain::Name, NameAnswers>,
    /// One copy of each name asked.
    names: crate::domain::Interner,
    /// NAT64 prefixes learned (the high 96 bits).
    pub nat64_prefixes: Vec<u128>,
    /// Messages that did not parse.
    pub malformed: u64,
}

/// Distinct answers for one name.
#[derive(Debug, Default)]
struct NameAnswers {
    v4: HashSet<u32>,
    /// Low 32 bits → high 96 bits of each AAAA answer.
    v6: HashMap<u32, Vec<u128>>,
}

/// The well-known NAT64 prefix 64:ff9b::/96.
const WKP: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;

/// The facts of one DNS message the table keeps, parsed on its own (so that parsing can run on
/// any thread and the table only records).
#[derive(Clone, Debug, PartialEq)]
pub struct DnsMessage {
    id: u16,
    response: bool,
    /// The first question's name, normalised (inline up to 24 bytes: most names make no
    /// allocation on the decoding thread and no `free` on the table's).
    name: compact_str::CompactString,
    qtype: u16,
    /// A and AAAA answers (after any CNAME chain); two inline.
    addrs: Answers,
    /// HTTPS or SVCB answers' records.
    svc: Option<Box<[SvcRecord]>>,
}

/// A message's A and AAAA answers: the common one or two (an A, or an AAAA and an A after a
/// CNAME) without an allocation.
type Answers = smallvec::SmallVec<[IpAddr; 2]>;

impl DnsMessage {
    /// Parse a UDP payload; `None` when it is a DNS message without a question. The common
    /// message is parsed in place (the `wire` module); anything else by simple-dns.
    pub fn parse(payload: &[u8]) -> Result<Option<DnsMessage>, Malformed> {
        match wire::parse(payload) {
            Some(m) => Ok(Some(m)),
            None => Self::parse_general(payload),
        }
    }

    /// Parse with simple-dns (every message it accepts).
    fn parse_general(payload: &[u8]) -> Result<Option<DnsMessage>, Malformed> {
        let msg = DnsPacket::parse(payload).map_err(|_| Malformed)?;
        let Some(q) = msg.questions.first() else {
            return Ok(None);
        };
        let response = msg.has_flags(PacketFlag::RESPONSE);
        let addrs = if response {
            msg.answers
                .iter()
                .filter_map(|rr| match &rr.rdata {
                    RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(a.address))),
                    RData::AAAA(a) => Some(IpAddr::V6(Ipv6Addr::from(a.address))),
                    _ => None,
                })
                .collect()
        } else {
            Answers::new()
        };
        let svc: Vec<SvcRecord> = if response {
            msg.answers
                .iter()
                .filter_map(|rr| match &rr.rdata {
                    RData::HTTPS(r) => Some(SvcRecord::of(&r.0)),
                    RData::SVCB(r) => Some(SvcRecord::of(r)),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Some(DnsMessage {
            id: msg.id(),
            response,
            name: normalize(&q.qname.to_string()).into(),
            qtype: u16::from(q.qtype),
            addrs,
            svc: (!svc.is_empty()).then(|| svc.into_boxed_slice()),
        }))
    }
}

/// Where and when a DNS message was seen: what the table keeps of its datagram.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// Capture time.
    pub time: Nanos,
    /// Source address and port.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl Seen {
    /// The datagram `u` carried by `p`.
    pub fn of(p: &Packet<'_>, u: &UdpView<'_>) -> Seen {
        Seen {
            time: p.time,
            src: p.src,
            dst: p.dst,
            src_port: u.src_port,
            dst_port: u.dst_port,
        }
    }
}

/// A datagram on the DNS port that does not parse as DNS.
#[derive(Clone, Copy, Debug)]
pub struct Malformed;

/// True when a UDP datagram is on the DNS port either way.
pub fn is_dns(u: &UdpView<'_>) -> bool {
    u.src_port == DNS_PORT || u.dst_port == DNS_PORT
}

impl DnsTable {
    /// Record one parsed DNS message (from [`DnsMessage::parse`]) seen as `seen`.
    pub fn on_message(&mut self, seen: Seen, parsed: Result<Option<DnsMessage>, Malformed>) {
        let msg = match parsed {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(Malformed) => {
                self.malformed += 1;
                return;
            }
        };
        let DnsMessage {
            id,
            response,
            name,
            qtype,
            addrs,
            svc,
        } = msg;
        let (client, client_port) = if response {
            (seen.dst, seen.dst_port)
        } else {
            (seen.src, seen.src_port)
        };
        let key = (client, client_port, id);
        if !response {
            if let Some(idx) = self.open_exchange(client, &name, qtype, OptNanos::some(seen.time)) {
                self.pending.insert(key, idx);
            }
            return;
        }
        // An answer whose query was not captured opens its own exchange.
        let idx = match self.pending.remove(&key) {
            Some(i) => i,
            None => match self.open_exchange(client, &name, qtype, OptNanos::NONE) {
                Some(i) => i,
                None => return,
            },
        };
        // An HTTPS/SVCB answer's address hints name the servers as A and AAAA answers do
        // (HEv3 clients may connect to them before those answers come).
        let mut addrs = addrs;
        for r in svc.iter().flat_map(|s| s.iter()) {
            addrs.extend(r.ipv4hint.iter().map(|&a| IpAddr::V4(a)));
            addrs.extend(r.ipv6hint.iter().map(|&a| IpAddr::V6(a)));
        }
        for a in &addrs {
            self.by_addr.entry(*a).or_default().push((seen.time, idx));
            self.by_addr_client
                .entry((*a, client))
                .or_default()
                .push((seen.time, idx));
            if let IpAddr::V6(v6) = a {
                let bits = u128::from(*v6);
                if bits & !0xffff_ffff == WKP && !self.nat64_prefixes.contains(&WKP) {
                    self.nat64_prefixes.push(WKP);
                }
            }
        }
        let Some(ex) = self.exchanges.get_mut(idx) else {
            return;
        };
        ex.answer_time = OptNanos::some(seen.time);
        if svc.is_some() {
            ex.svc = svc;
        }
        // Ranges are u32: an answer that would take the list past 2^32 addresses (thousands
        // of addresses in each of the MAX_EXCHANGES answers) keeps none.
        let start = self.answer_addrs.len();
        if let (Ok(from), Ok(to)) = (u32::try_from(start), u32::try_from(start + addrs.len())) {
            self.answer_addrs.extend_from_slice(&addrs);
            ex.addrs = from..to;
        }
        if qtype == TYPE_AAAA || qtype == TYPE_A {
            self.learn_nat64(idx);
        }
    }

    /// Start an exchange (in query order, indexed by client); `None` past the bound.
    fn open_exchange(
        &mut self,
        client: IpAddr,
        name: &str,
        qtype: u16,
        query_time: OptNanos,
    ) -> Option<usize> {
        if self.exchanges.len() >= MAX_EXCHANGES {
            return None;
        }
        let idx = self.exchanges.len();
        let name = self.names.get(name);
        self.by_client.entry(client).or_default().push(idx);
        self.exchanges.push(Exchange {
            client,
            name,
            qtype,
            query_time,
            answer_time: OptNanos::NONE,
            addrs: 0..0,
            svc: None,
        });
        Some(idx)
    }

    /// RFC 7050-style prefix discovery: an AAAA answer whose low 32 bits are an A answer for
    /// the same name has its high 96 bits as a NAT64 prefix.
    fn learn_nat64(&mut self, idx: usize) {
        let Some(ex) = self.exchanges.get(idx) else {
            return;
        };
        if !self.by_name.contains_key(&ex.name) {
            self.by_name.insert(ex.name.clone(), NameAnswers::default());
        }
        let Some(answers) = self.by_name.get_mut(&ex.name) else {
            return;
        };
        let mut found = Vec::new();
        for a in stored(&self.answer_addrs, &ex.addrs) {
            match a {
                IpAddr::V4(v4) => {
                    let low = u32::from(*v4);
                    if answers.v4.insert(low) {
                        found.extend(answers.v6.get(&low).into_iter().flatten().copied());
                    }
                }
                IpAddr::V6(v6) => {
                    let bits = u128::from(*v6);
                    let (low, prefix) = (bits as u32, bits & !0xffff_ffff);
                    let list = answers.v6.entry(low).or_default();
                    if !list.contains(&prefix) {
                        list.push(prefix);
                        if answers.v4.contains(&low) {
                            found.push(prefix);
                        }
                    }
                }
            }
        }
        for prefix in found {
            if prefix != 0 && !self.nat64_prefixes.contains(&prefix) {
                self.nat64_prefixes.push(prefix);
            }
        }
    }

    /// The name `addr` was an answer for at time `t` (the latest answer at or before `t`;
    /// answers to `client` preferred).
    pub fn name_for(&self, addr: &IpAddr, client: &[IpAddr], t: Nanos) -> Option<&str> {
        // Answers are in capture order: those at or before `t` are a prefix.
        let latest = |list: &[(Nanos, usize)]| {
            list.get(..list.partition_point(|(at, _)| *at <= t))
                .and_then(|valid| valid.last().copied())
        };
        let own = client
            .iter()
            .filter_map(|c| self.by_addr_client.get(&(*addr, *c)))
            .filter_map(|list| latest(list))
            .max_by_key(|(at, _)| *at);
        let (_, i) = own.or_else(|| latest(self.by_addr.get(addr)?))?;
        self.exchanges.get(i).map(|e| &*e.name)
    }

    /// The times at which one of `clients` was sent an answer holding `addr`, after `from`
    /// and at or before `to`, in time order (O(log n + answers in the range)).
    pub fn answers_between(
        &self,
        addr: &IpAddr,
        clients: &[IpAddr],
        from: Nanos,
        to: Nanos,
    ) -> Vec<Nanos> {
        let mut out: Vec<Nanos> = clients
            .iter()
            .filter_map(|c| self.by_addr_client.get(&(*addr, *c)))
            .flat_map(|list| {
                let i = list.partition_point(|(at, _)| *at <= from);
                list.get(i..)
                    .unwrap_or(&[])
                    .iter()
                    .map(|(at, _)| *at)
                    .take_while(move |at| *at <= to)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// One of `clients` was sent an answer holding `addr` at or before `t`.
    pub fn answered_before(&self, addr: &IpAddr, clients: &[IpAddr], t: Nanos) -> bool {
        clients
            .iter()
            .filter_map(|c| self.by_addr_client.get(&(*addr, *c)))
            .any(|list| list.first().is_some_and(|(at, _)| *at <= t))
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
        // Each client's exchanges are in query order: search back from the last one at or
        // before `t` for the latest of this name and type.
        let time = |e: &Exchange| e.answer_time.get().or(e.query_time.get());
        clients
            .iter()
            .filter_map(|c| self.by_client.get(c))
            .filter_map(|list| {
                let upto = list.partition_point(|&i| {
                    self.exchanges
                        .get(i)
                        .and_then(|e| e.query_time.get().or(e.answer_time.get()))
                        .is_some_and(|x| x <= t)
                });
                list.get(..upto)?
                    .iter()
                    .rev()
                    .take(LOOKBACK)
                    .filter_map(|&i| self.exchanges.get(i))
                    .find(|e| {
                        e.qtype == qtype && *e.name == *name && time(e).is_some_and(|x| x <= t)
                    })
            })
            .max_by_key(|e| time(e))
    }

    /// The addresses in `ex`'s answer (none before it was answered).
    pub fn addrs(&self, ex: &Exchange) -> &[IpAddr] {
        stored(&self.answer_addrs, &ex.addrs)
    }

    /// Give back the exchange and address lists' spare capacity once the capture has been
    /// read.
    pub fn shrink_to_fit(&mut self) {
        self.exchanges.shrink_to_fit();
        self.answer_addrs.shrink_to_fit();
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

/// The addresses `range` names in the table's address list.
fn stored<'t>(list: &'t [IpAddr], range: &std::ops::Range<u32>) -> &'t [IpAddr] {
    list.get(range.start as usize..range.end as usize)
        .unwrap_or_default()
}

/// Names compare without the trailing dot and case-insensitively.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
