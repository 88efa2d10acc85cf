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

/// Union-find over addresses.
struct Union {
    parent: Vec<usize>,
}

impl Union {
    fn find(&mut self, mut x: usize) -> usize {
        while let Some(&p) = self.parent.get(x) {
            if p == x {
                break;
            }
            let gp = self.parent.get(p).copied().unwrap_or(p);
            if let Some(slot) = self.parent.get_mut(x) {
                *slot = gp;
            }
            x = p;
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            if let Some(slot) = self.parent.get_mut(ra.max(rb)) {
                *slot = ra.min(rb);
            }
        }
    }
}

/// The distinct values `f` gives for the connections, gathered on every core, a block at a
/// time.
fn distinct<T, F>(conns: &Connections, f: F) -> HashSet<T>
where
    T: Eq + std::hash::Hash + Send,
    F: Fn(&Connection) -> Option<T> + Sync,
{
    let mut all = HashSet::default();
    for block in conns.blocks() {
        let set = block
            .par_iter()
            .fold(HashSet::default, |mut set, c| {
                set.extend(f(c));
                set
            })
            .reduce(HashSet::default, |mut a, b| {
                a.extend(b);
                a
            });
        if all.is_empty() {
            all = set;
        } else {
            all.extend(set);
        }
    }
    all
}

/// Assign every connection its client host; returns the hosts.
pub fn assign(conns: &mut Connections, dns: &DnsTable, window: Nanos) -> Vec<Host> {
    let mut t = Ties::of(conns);
    t.by_mac(conns);
    t.by_timing(conns, dns, window);
    t.hosts(conns)
}

/// The client addresses and the ties found between them so far.
struct Ties {
    /// Every client address, sorted.
    addrs: Vec<IpAddr>,
    /// Address → index in `addrs`.
    index: HashMap<IpAddr, usize>,
    /// Addresses tied into one host.
    uf: Union,
    /// What tied each address.
    ties: BTreeMap<usize, BTreeSet<&'static str>>,
}

impl Ties {
    fn of(conns: &Connections) -> Ties {
        // Every client address, in a stable order: the distinct ones gathered on every core (a
        // few thousand among hundreds of thousands of connections), then sorted.
        let mut addrs: Vec<IpAddr> = distinct(conns, |c| Some(c.rec.client.ip))
            .into_iter()
            .collect();
        addrs.sort_unstable();
        let index: HashMap<IpAddr, usize> =
            addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        let uf = Union {
            parent: (0..addrs.len()).collect(),
        };
        let ties = BTreeMap::new();
        Ties {
            addrs,
            index,
            uf,
            ties,
        }
    }

    /// By MAC: a MAC that sends SYNs from one address per family is one host.
    fn by_mac(&mut self, conns: &Connections) {
        let (index, uf, ties) = (&self.index, &mut self.uf, &mut self.ties);
        let mut by_mac: BTreeMap<[u8; 6], [BTreeSet<IpAddr>; 2]> = BTreeMap::new();
        let senders = distinct(conns, |c| {
            c.rec
                .client_mac
                .filter(|_| c.rec.handshake_seen)
                .map(|mac| (mac, c.rec.client.ip))
        });
        for (mac, ip) in senders {
            let fam = usize::from(Family::of(&ip) == Family::Ipv6);
            if let Some(set) = by_mac.entry(mac).or_default().get_mut(fam) {
                set.insert(ip);
            }
        }
        for [v4, v6] in by_mac.values() {
            if let ([a], [b]) = (
                v4.iter().collect::<Vec<_>>().as_slice(),
                v6.iter().collect::<Vec<_>>().as_slice(),
            ) {
                if let (Some(&ia), Some(&ib)) = (index.get(*a), index.get(*b)) {
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
    fn by_timing(&mut self, conns: &Connections, dns: &DnsTable, window: Nanos) {
        let (addrs, index, uf, ties) = (&self.addrs, &self.index, &mut self.uf, &mut self.ties);
        let mut tied = vec![false; addrs.len()];
        for &k in ties.keys() {
            if let Some(t) = tied.get_mut(k) {
                *t = true;
            }
        }
        let is_tied = |i: usize| tied.get(i).copied().unwrap_or(true);
        let mut partners: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let mut how: BTreeMap<(usize, usize), &'static str> = BTreeMap::new();
        let mut syns: Vec<(Nanos, u16, IpAddr, usize)> = conns.par_filter_map(|c| {
            Some((
                c.rec.syn_time.get()?,
                c.rec.server.port,
                c.rec.server.ip,
                *index.get(&c.rec.client.ip)?,
            ))
        });
        // Equal tuples are indistinguishable: an unstable sort on every core gives the same order.
        syns.par_sort_unstable();
        let mut note = |a: usize, b: usize, why: &'static str| {
            if a != b && !is_tied(a) && !is_tied(b) {
                let (fa, fb) = (addrs.get(a).map(Family::of), addrs.get(b).map(Family::of));
                if fa != fb {
                    partners.entry(a).or_default().insert(b);
                    partners.entry(b).or_default().insert(a);
                    how.entry((a.min(b), a.max(b))).or_insert(why);
                }
            }
        };
        // Look at most this many SYNs ahead: with more clients than that in one window, pairing
        // is ambiguous anyway (and the scan stays linear on large captures).
        const LOOKAHEAD: usize = 64;
        for (i, &(t, port, _, a)) in syns.iter().enumerate() {
            if is_tied(a) {
                continue;
            }
            for &(t2, port2, _, b) in syns.iter().skip(i + 1).take(LOOKAHEAD) {
                if t2 - t > window {
                    break;
                }
                if port2 == port {
                    note(a, b, "race");
                }
            }
        }
        for ex in dns.clients() {
            let (Some(at), Some(&a)) = (ex.answer_time.get(), index.get(&ex.client)) else {
                continue;
            };
            if is_tied(a) {
                continue;
            }
            let from = syns.partition_point(|s| s.0 < at);
            for &(t, _, server, b) in syns.iter().skip(from).take(LOOKAHEAD) {
                if t - at > window {
                    break;
                }
                if dns.addrs(ex).contains(&server) {
                    note(a, b, "dns");
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
        let (addrs, index, uf, ties) = (&self.addrs, &self.index, &mut self.uf, &self.ties);
        let mut host_of_root: BTreeMap<usize, usize> = BTreeMap::new();
        let mut hosts: Vec<Host> = Vec::new();
        let mut host_of_addr = vec![0usize; addrs.len()];
        for (i, addr) in addrs.iter().enumerate() {
            let root = uf.find(i);
            let h = *host_of_root.entry(root).or_insert_with(|| {
                hosts.push(Host::default());
                hosts.len() - 1
            });
            if let Some(host) = hosts.get_mut(h) {
                host.addrs.push(*addr);
                for t in ties.get(&i).into_iter().flatten() {
                    if !host.ties.contains(t) {
                        host.ties.push(t);
                    }
                }
            }
            if let Some(slot) = host_of_addr.get_mut(i) {
                *slot = h;
            }
        }
        conns.update(|c| {
            c.host = index
                .get(&c.rec.client.ip)
                .and_then(|&i| host_of_addr.get(i).copied())
                .unwrap_or(0);
        });
        for h in &mut hosts {
            h.set_label();
        }
        hosts
    }
}
