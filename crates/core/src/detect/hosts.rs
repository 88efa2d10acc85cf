//! Client hosts: one host often appears with an IPv4 and an IPv6 address. Addresses are tied
//! by the Ethernet source MAC (only when that MAC sends SYNs from at most one address per
//! family: a router's MAC in a server-side capture stands for many hosts), and by pairing: an
//! IPv4 and an IPv6 client address whose SYNs to one server port (or whose DNS answer and
//! SYN) fall within the race window of each other, when each is the other's only partner.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashSet};
use rayon::prelude::*;
use std::net::IpAddr;

use crate::app::dns::DnsTable;
use crate::domain::{Family, Nanos};
use crate::model::{Analysis, Connection, Connections, Host};

use super::{Context, Detector, Part};

/// Ties client addresses into hosts; sets `hosts` and each connection's `host`.
pub struct Hosts;

impl Detector for Hosts {
    fn name(&self) -> &'static str {
        "hosts"
    }
    fn reads(&self) -> &'static [Part] {
        &[Part::Dns]
    }
    fn writes(&self) -> &'static [Part] {
        &[Part::Hosts]
    }
    fn run(&self, a: &mut Analysis, ctx: &mut Context<'_>) {
        a.hosts = assign(&mut a.connections, ctx.dns(), ctx.cfg.race_window);
    }
}

/// Union-find over addresses (positions in [`AddrIndex`] order, 4 bytes each: a flood from
/// millions of sources has millions of them).
struct Union {
    parent: Vec<u32>,
}

impl Union {
    fn find(&mut self, x: usize) -> usize {
        let mut x = x as u32;
        while let Some(&p) = self.parent.get(x as usize) {
            if p == x {
                break;
            }
            let gp = self.parent.get(p as usize).copied().unwrap_or(p);
            if let Some(slot) = self.parent.get_mut(x as usize) {
                *slot = gp;
            }
            x = p;
        }
        x as usize
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            if let Some(slot) = self.parent.get_mut(ra.max(rb)) {
                *slot = ra.min(rb) as u32;
            }
        }
    }
}

/// A set of addresses in sorted order (IPv4 before IPv6, each numeric: the order of
/// `IpAddr`), found by binary search: 4 bytes per IPv4 address and no hash index (a flood
/// from millions of sources has millions of them; an index by hash cost 16 bytes more each,
/// and the list of `IpAddr`s 17).
#[derive(Default)]
struct AddrIndex {
    v4: Vec<u32>,
    v6: Vec<u128>,
}

/// The MAC of a connection whose SYN is in the capture.
fn syn_mac(c: &Connection) -> Option<[u8; 6]> {
    c.rec.client_mac.filter(|_| c.rec.handshake_seen)
}

/// The MACs that sent SYNs, per family (IPv4, IPv6), gathered in the address pass; a
/// family's set is given up past `most` MACs ([`MacSets::MOST`]: a flood's sources, each
/// with a MAC of its own), and its MACs are read in a pass of their own if they are needed.
struct MacSets {
    sets: [HashSet<[u8; 6]>; 2],
    given_up: [bool; 2],
    most: usize,
}

impl MacSets {
    const MOST: usize = 1 << 18;

    fn new(most: usize) -> MacSets {
        MacSets {
            sets: Default::default(),
            given_up: [false; 2],
            most,
        }
    }

    fn add(&mut self, block: &[Connection]) {
        for c in block {
            let Some(mac) = syn_mac(c) else { continue };
            let fam = usize::from(c.rec.client.ip.is_ipv6());
            if let (Some(set), Some(given_up @ false)) =
                (self.sets.get_mut(fam), self.given_up.get_mut(fam))
            {
                set.insert(mac);
                if set.len() > self.most {
                    *set = HashSet::default();
                    *given_up = true;
                }
            }
        }
    }
}

impl AddrIndex {
    /// The client addresses and the server addresses of `conns`, gathered on every core a
    /// block at a time.
    fn of(conns: &Connections, macs: &mut MacSets) -> (AddrIndex, AddrIndex) {
        type Sets = (HashSet<u32>, HashSet<u128>);
        let add = |sets: &mut Sets, ip: IpAddr| {
            match ip {
                IpAddr::V4(a) => sets.0.insert(u32::from(a)),
                IpAddr::V6(a) => sets.1.insert(u128::from(a)),
            };
        };
        // The smaller set into the larger.
        let join = |a: Sets, b: Sets| {
            let (mut big, small) = if a.0.len() + a.1.len() >= b.0.len() + b.1.len() {
                (a, b)
            } else {
                (b, a)
            };
            big.0.extend(small.0);
            big.1.extend(small.1);
            big
        };
        let both = |x: (Sets, Sets), y: (Sets, Sets)| (join(x.0, y.0), join(x.1, y.1));
        let mut all: (Sets, Sets) = Default::default();
        for block in conns.blocks() {
            let sets = block
                .par_iter()
                .fold(<(Sets, Sets)>::default, |mut sets, c| {
                    add(&mut sets.0, c.rec.client.ip);
                    add(&mut sets.1, c.rec.server.ip);
                    sets
                })
                .reduce(<(Sets, Sets)>::default, both);
            all = both(all, sets);
            macs.add(&block);
        }
        let sorted = |sets: Sets| {
            let mut v4: Vec<u32> = sets.0.into_iter().collect();
            let mut v6: Vec<u128> = sets.1.into_iter().collect();
            v4.par_sort_unstable();
            v6.par_sort_unstable();
            AddrIndex { v4, v6 }
        };
        (sorted(all.0), sorted(all.1))
    }

    /// How many addresses.
    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The address's position in sorted order.
    fn get(&self, ip: &IpAddr) -> Option<usize> {
        match ip {
            IpAddr::V4(a) => self.v4.binary_search(&u32::from(*a)).ok(),
            IpAddr::V6(a) => {
                let k = self.v6.binary_search(&u128::from(*a)).ok()?;
                Some(self.v4.len() + k)
            }
        }
    }

    /// The address at position `i`.
    fn addr(&self, i: usize) -> Option<IpAddr> {
        match i.checked_sub(self.v4.len()) {
            None => self.v4.get(i).map(|&a| IpAddr::from(std::net::Ipv4Addr::from(a))),
            Some(k) => self.v6.get(k).map(|&a| IpAddr::from(std::net::Ipv6Addr::from(a))),
        }
    }

    /// The family of the address at position `i`.
    fn family(&self, i: usize) -> Family {
        if i < self.v4.len() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }
}

/// A SYN for the ties by timing: (first SYN, server port, server, client address, the client
/// is IPv6), addresses by their positions in the indexes.
type Syn = (Nanos, u16, u32, u32, bool);

/// The addresses one MAC sent SYNs from, in one family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Senders {
    /// None yet.
    #[default]
    None,
    /// Exactly one.
    One(IpAddr),
    /// Two or more: not one host's.
    Many,
}

impl Senders {
    fn and(self, o: Senders) -> Senders {
        match (self, o) {
            (Senders::None, x) | (x, Senders::None) => x,
            (Senders::One(a), Senders::One(b)) if a == b => Senders::One(a),
            _ => Senders::Many,
        }
    }
}

/// Add what `s` says of `mac`'s senders in family `fam` (0 IPv4, 1 IPv6).
fn add_sender(m: &mut HashMap<[u8; 6], [Senders; 2]>, mac: [u8; 6], fam: usize, s: Senders) {
    if s == Senders::None {
        return;
    }
    if let Some(slot) = m.entry(mac).or_default().get_mut(fam) {
        *slot = slot.and(s);
    }
}

/// Assign every connection its client host; returns the hosts.
pub fn assign(conns: &mut Connections, dns: &DnsTable, window: Nanos) -> Vec<Host> {
    assign_with(conns, dns, window, MacSets::MOST)
}

/// [`assign`], the MAC sets given up past `most`.
fn assign_with(conns: &mut Connections, dns: &DnsTable, window: Nanos, most: usize) -> Vec<Host> {
    let mut macs = MacSets::new(most);
    let mut t = Ties::of(conns, &mut macs);
    let candidates = t.mac_candidates(conns, macs);
    // One pass for what both ties read: each candidate MAC's senders and the SYN list.
    let (senders, syns) = t.senders_and_syns(conns, &candidates);
    drop(candidates);
    t.by_mac(senders);
    t.by_timing(syns, dns, window);
    t.hosts(conns)
}

/// The client addresses and the ties found between them so far.
struct Ties {
    /// Every client address, sorted: an address is named by its position.
    index: AddrIndex,
    /// Every server address, sorted (the SYN list names servers by position).
    servers: AddrIndex,
    /// Addresses tied into one host.
    uf: Union,
    /// What tied each address.
    ties: BTreeMap<usize, BTreeSet<&'static str>>,
}

impl Ties {
    fn of(conns: &Connections, macs: &mut MacSets) -> Ties {
        // Every client address, in a stable order.
        let (index, servers) = AddrIndex::of(conns, macs);
        let uf = Union {
            parent: (0..index.len() as u32).collect(),
        };
        let ties = BTreeMap::new();
        Ties {
            index,
            servers,
            uf,
            ties,
        }
    }

    /// The MACs followed by the ties by MAC ([`Ties::by_mac`]): a MAC that sends SYNs from
    /// one address per family is one host. Per MAC and family only whether it sent from one
    /// address or more is kept (a router's MAC in a
    /// server-side capture sends from millions).
    ///
    /// Only a MAC that sent from both families can tie anything: the MACs of the family with
    /// fewer client addresses are listed first, and only those are followed (a flood's
    /// millions of sources are of one family, each with a MAC of its own: following every MAC
    /// held ~70 bytes per source).
    fn mac_candidates(&self, conns: &Connections, macs: MacSets) -> HashSet<[u8; 6]> {
        let index = &self.index;
        let fewer_v6 = index.v6.len() <= index.v4.len();
        let fam = usize::from(fewer_v6);
        let MacSets { sets, given_up, .. } = macs;
        let mut candidates: HashSet<[u8; 6]> = sets.into_iter().nth(fam).unwrap_or_default();
        if given_up.get(fam).copied().unwrap_or(true) {
            for block in conns.blocks() {
                let of_fam = block.iter().filter(|c| c.rec.client.ip.is_ipv6() == fewer_v6);
                candidates.extend(of_fam.filter_map(syn_mac));
            }
        }
        candidates
    }

    /// What the ties read of the connections, in one pass: the senders of each MAC of
    /// `candidates` ([`Ties::by_mac`]) and every SYN ([`Ties::by_timing`]).
    fn senders_and_syns(
        &self,
        conns: &Connections,
        candidates: &HashSet<[u8; 6]>,
    ) -> (HashMap<[u8; 6], [Senders; 2]>, Vec<Syn>) {
        let (index, servers) = (&self.index, &self.servers);
        let mut by_mac: HashMap<[u8; 6], [Senders; 2]> = HashMap::default();
        // Room for every connection at once (as `Connections::par_filter_map`): a list grown
        // by doubling held its old and new buffers together at each step.
        let mut syns: Vec<Syn> = Vec::with_capacity(conns.len());
        for block in conns.blocks() {
            syns.par_extend(block.par_iter().filter_map(|c| {
                let ip = c.rec.client.ip;
                Some((
                    c.rec.syn_time.get()?,
                    c.rec.server.port,
                    u32::try_from(servers.get(&c.rec.server.ip)?).ok()?,
                    u32::try_from(index.get(&ip)?).ok()?,
                    ip.is_ipv6(),
                ))
            }));
            if candidates.is_empty() {
                continue;
            }
            let part = block
                .par_iter()
                .fold(HashMap::default, |mut m, c| {
                    if let Some(mac) = syn_mac(c).filter(|m| candidates.contains(m)) {
                        let ip = c.rec.client.ip;
                        let fam = usize::from(Family::of(&ip) == Family::Ipv6);
                        add_sender(&mut m, mac, fam, Senders::One(ip));
                    }
                    m
                })
                .reduce(HashMap::default, |mut a, b| {
                    for (mac, [v4, v6]) in b {
                        add_sender(&mut a, mac, 0, v4);
                        add_sender(&mut a, mac, 1, v6);
                    }
                    a
                });
            for (mac, [v4, v6]) in part {
                add_sender(&mut by_mac, mac, 0, v4);
                add_sender(&mut by_mac, mac, 1, v6);
            }
        }
        syns.shrink_to_fit();
        (by_mac, syns)
    }

    /// Ties by MAC, from each candidate MAC's senders.
    fn by_mac(&mut self, by_mac: HashMap<[u8; 6], [Senders; 2]>) {
        let (index, uf, ties) = (&self.index, &mut self.uf, &mut self.ties);
        // Any order: the ties found do not depend on it (`ties` is sorted, and a union's root
        // is the smaller index).
        for [v4, v6] in by_mac.values() {
            if let (Senders::One(a), Senders::One(b)) = (v4, v6) {
                if let (Some(ia), Some(ib)) = (index.get(a), index.get(b)) {
                    uf.union(ia, ib);
                    ties.entry(ia).or_default().insert("mac");
                    ties.entry(ib).or_default().insert("mac");
                }
            }
        }
    }

    /// Pairing by timing, for addresses the MAC did not tie to the other family: an IPv4
    /// and an IPv6 address whose SYNs to one server port (or whose DNS answer and SYN) fall
    /// within the window, each the other's only partner.
    fn by_timing(&mut self, mut syns: Vec<Syn>, dns: &DnsTable, window: Nanos) {
        let (index, servers, uf, ties) = (&self.index, &self.servers, &mut self.uf, &mut self.ties);
        let mut tied = vec![false; index.len()];
        for &k in ties.keys() {
            if let Some(t) = tied.get_mut(k) {
                *t = true;
            }
        }
        let is_tied = |i: usize| tied.get(i).copied().unwrap_or(true);
        let mut partners: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let mut how: BTreeMap<(usize, usize), &'static str> = BTreeMap::new();
        // (first SYN, server port, server, client address, the client is IPv6): the family
        // last, so that the order is that of the first four, and the scan below compares
        // families without looking the address up (a flood's SYNs are millions of one
        // family, each with 64 neighbours to look at).
        // Addresses by position (server and client), 24 bytes a SYN: the order of positions is
        // that of the addresses.
        // Equal tuples are indistinguishable: an unstable sort on every core gives the same order.
        syns.par_sort_unstable();
        let mut note = |a: usize, b: usize, why: &'static str| {
            if a != b && !is_tied(a) && !is_tied(b) && index.family(a) != index.family(b) {
                partners.entry(a).or_default().insert(b);
                partners.entry(b).or_default().insert(a);
                how.entry((a.min(b), a.max(b))).or_insert(why);
            }
        };
        // Look at most this many SYNs ahead: with more clients than that in one window, pairing
        // is ambiguous anyway (and the scan stays linear on large captures).
        const LOOKAHEAD: usize = 64;
        for (i, &(t, port, _, a, v6)) in syns.iter().enumerate() {
            if is_tied(a as usize) {
                continue;
            }
            for &(t2, port2, _, b, v6b) in syns.iter().skip(i + 1).take(LOOKAHEAD) {
                if t2 - t > window {
                    break;
                }
                if port2 == port && v6b != v6 {
                    note(a as usize, b as usize, "race");
                }
            }
        }
        for ex in dns.clients() {
            let (Some(at), Some(a)) = (ex.answer_time.get(), index.get(&ex.client)) else {
                continue;
            };
            if is_tied(a) {
                continue;
            }
            let from = syns.partition_point(|s| s.0 < at);
            for &(t, _, server, b, _) in syns.iter().skip(from).take(LOOKAHEAD) {
                if t - at > window {
                    break;
                }
                let server = servers.addr(server as usize);
                if server.is_some_and(|ip| dns.addrs(ex).contains(&ip)) {
                    note(a, b as usize, "dns");
                }
            }
        }
        for (&a, ps) in &partners {
            if let Some(&b) = ps.iter().next() {
                let mutual = ps.len() == 1 && partners.get(&b).is_some_and(|q| q.len() == 1);
                if mutual && a < b {
                    uf.union(a, b);
                    let why = how.get(&(a, b)).copied().unwrap_or("race");
                    ties.entry(a).or_default().insert(why);
                    ties.entry(b).or_default().insert(why);
                }
            }
        }
    }

    /// Hosts in order of their smallest address; each connection points at its host.
    fn hosts(mut self, conns: &mut Connections) -> Vec<Host> {
        let (index, uf, ties) = (&self.index, &mut self.uf, &self.ties);
        let mut hosts: Vec<Host> = Vec::new();
        // Each address's host, 4 bytes an address.
        let mut host_of_addr = vec![0u32; index.len()];
        for i in 0..index.len() {
            let Some(addr) = index.addr(i) else { continue };
            // A union's root is the smaller of the two: each host's root is its smallest
            // address, met first in this walk.
            let root = uf.find(i);
            let h = if root == i {
                hosts.push(Host::default());
                hosts.len() - 1
            } else {
                host_of_addr.get(root).map_or(0, |&h| h as usize)
            };
            if let Some(host) = hosts.get_mut(h) {
                host.push_addr(addr);
                for t in ties.get(&i).into_iter().flatten() {
                    host.add_tie(t);
                }
            }
            if let Some(slot) = host_of_addr.get_mut(i) {
                *slot = u32::try_from(h).unwrap_or(u32::MAX);
            }
        }
        let Ties { index, uf, ties, .. } = self;
        drop((uf, ties));
        let by_addr = index.v4.len() * 8 + index.v6.len() * 20;
        let host_of = move |c: &Connection| {
            index
                .get(&c.rec.client.ip)
                .and_then(|i| host_of_addr.get(i).copied())
                .unwrap_or(0)
        };
        // Kept beside the spill rather than written into it: by address (its place in the
        // index and its host, 8 or 20 bytes) or, when there are nearly as many addresses as
        // connections (a flood), as each connection's host (4 bytes, one pass to list them).
        if by_addr <= conns.len() * 4 || !conns.spilled() {
            conns.update_deferred(move |c| c.host = host_of(c) as usize);
        } else {
            let of: Vec<u32> = conns.par_filter_map(|c| Some(host_of(c)));
            drop(host_of);
            conns.update_deferred(move |c| c.host = of.get(c.id).map_or(0, |&h| h as usize));
        }
        hosts
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::domain::Endpoint;
    use crate::model::store::SpillConfig;
    use crate::model::ConnRecord;

    /// A connection with its SYN seen, from `ip` with `mac`, `ms` milliseconds in.
    fn syn(ip: IpAddr, mac: u8, ms: i64) -> ConnRecord {
        let t = ms * 1_000_000;
        ConnRecord {
            client: Endpoint { ip, port: 40_000 },
            server: Endpoint {
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                port: 443,
            },
            client_mac: Some([2, 0, 0, 0, 0, mac]),
            handshake_seen: true,
            first_time: t,
            syn_time: crate::domain::OptNanos::some(t),
            ..ConnRecord::default()
        }
    }

    /// Five IPv4 sources, two IPv6 ones, and one host with MAC 1 in both families, spilled
    /// in blocks of 3.
    fn store() -> Connections {
        let mut s = Connections::new(SpillConfig {
            budget: 1,
            dir: std::env::temp_dir(),
            block: 3,
        });
        s.push(syn(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1, 0));
        s.push(syn(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), 1, 100_000));
        s.push(syn(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)), 9, 200_000));
        for i in 2..6u8 {
            s.push(syn(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 10 + i, 300_000 * i64::from(i)));
        }
        s
    }

    #[test]
    fn a_mac_in_both_families_ties_its_addresses_whether_or_not_its_set_was_given_up() {
        for most in [MacSets::MOST, 1] {
            let mut conns = store();
            assert!(conns.spilled());
            let hosts = assign_with(&mut conns, &DnsTable::default(), 1_000_000, most);
            // Seven addresses, two of them one host.
            assert_eq!(hosts.len(), 6, "most {most}");
            let tied: Vec<&Host> = hosts.iter().filter(|h| h.addrs().len() == 2).collect();
            assert_eq!(tied.len(), 1, "most {most}");
            assert!(tied.iter().all(|h| h.ties().contains(&"mac")), "most {most}");
            let mut of = Vec::new();
            conns.for_each(|c| of.push(c.host));
            assert_eq!(of.first(), of.get(1), "most {most}");
            assert_eq!(of.iter().collect::<BTreeSet<_>>().len(), 6, "most {most}");
        }
    }
}
