//! The spill's record format: a [`Connection`] (its tracker record and what the detectors
//! wrote on it) as compact bytes, the core's own (no schema, no framing beyond a length: the
//! file is written and read back by one process). Integers are LEB128 varints, signed ones
//! zigzagged; every time but the first is a delta from the record's first packet.
//!
//! [`decode`] returns `None` on bytes it did not write (a damaged spill file), never panics.

use crate::app::http::Request;
use crate::app::quic::QuicFacts;
use crate::app::tls::TlsFacts;
use crate::app::{AppFacts, Milestones, Protocol};
use crate::domain::Nanos;
use crate::model::history::History;
use crate::model::record::{StaleFacts, StaleFailure, SynOptions, TsSample};
use crate::model::{ConnRecord, Connection, NameSource, Reason, Role};

mod wire;

use wire::{Get, Put};

/// TLS version names the parser gives (`app::tls::version_name`): the spill writes the name
/// and reads back the same static string.
const VERSIONS: &[&str] = &[
    "SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3", "GREASE", "unknown",
];

fn version(s: &str) -> &'static str {
    VERSIONS
        .iter()
        .find(|v| **v == s)
        .copied()
        .unwrap_or("unknown")
}

/// Append `c` to `out`, length-prefixed.
pub fn encode(c: &Connection, out: &mut Vec<u8>) {
    let start = out.len();
    // Room for the length, filled in below.
    out.extend_from_slice(&[0; 4]);
    let mut p = Put {
        out,
        base: c.rec.first_time,
    };
    p.i(c.rec.first_time);
    p.u(c.id as u64);
    record(&mut p, &c.rec);
    p.s(&c.service);
    p.e(&c.service_source, NameSource::ALL);
    p.b(c.nat64);
    p.opt(c.race, |p, r| p.u(r as u64));
    p.e(&c.role, Role::ALL);
    p.opt(c.backend.as_deref(), |p, b| p.s(b));
    p.u(c.host as u64);
    p.opt(c.reason, |p, r| p.e(&r, Reason::ALL));
    p.b(c.omitted);
    let len = (out.len() - start - 4) as u32;
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
}

/// Read one connection from the front of `bytes`; returns it and the bytes after it, or
/// `None` when the bytes are not a record [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Option<(Connection, &[u8])> {
    let mut c = Connection::new(0, ConnRecord::default());
    let rest = decode_into(bytes, &mut c)?;
    Some((c, rest))
}

/// Read one connection from the front of `bytes` over `c`, whatever it held, reusing what it
/// owns (its lists, strings and boxes: a spilled pass decodes every connection again, and
/// allocating each one's parts anew was half of that pass's time); returns the bytes after
/// it, or `None` (with `c` left part-written) when the bytes are not a record [`encode`]
/// wrote.
pub fn decode_into<'b>(bytes: &'b [u8], c: &mut Connection) -> Option<&'b [u8]> {
    let len: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let len = u32::from_le_bytes(len) as usize;
    let body = bytes.get(4..4 + len)?;
    let rest = bytes.get(4 + len..)?;
    let mut g = Get { b: body, base: 0 };
    let first = g.i()?;
    g.base = first;
    // Every field named (no `..`): a field added to the struct must be read here too.
    let Connection {
        id,
        rec,
        service,
        service_source,
        nat64,
        race,
        role,
        backend,
        host,
        reason,
        omitted,
    } = c;
    *id = g.usize()?;
    read_record(&mut g, first, rec)?;
    g.name_into(service)?;
    *service_source = g.e(NameSource::ALL)?;
    *nat64 = g.b()?;
    *race = g.opt(Get::usize)?;
    *role = g.e(Role::ALL)?;
    g.oname_into(backend)?;
    *host = g.usize()?;
    *reason = g.opt(|g| g.e(Reason::ALL))?;
    *omitted = g.b()?;
    g.b.is_empty().then_some(rest)
}

fn record(p: &mut Put<'_>, r: &ConnRecord) {
    p.u(r.first_record);
    p.u(r.last_record.wrapping_sub(r.first_record));
    p.ep(&r.client);
    p.ep(&r.server);
    p.opt(r.client_mac, |p, m| p.out.extend_from_slice(&m));
    p.b(r.handshake_seen);
    p.t(r.last_time);
    p.ot(r.syn_time);
    p.ot(r.last_syn_time);
    p.u(u64::from(r.syn_count));
    p.ot(r.synack_time);
    p.u(u64::from(r.synack_count));
    p.ot(r.established_time);
    for t in r.fin.iter().chain(&r.rst).chain(&r.last_payload) {
        p.ot(*t);
    }
    for n in r.bytes.iter().chain(&r.packets) {
        p.u(*n);
    }
    let m = &r.milestones;
    for t in [m.refused, m.first_payload, m.tls_hello, m.tls, m.http, m.ws] {
        p.ot(t);
    }
    p.opt(r.server_tsval, |p, v| p.u(u64::from(v)));
    p.u(r.ts_samples.len() as u64);
    for s in &r.ts_samples {
        p.t(s.time);
        p.u(u64::from(s.tsval));
    }
    for o in &r.syn_options {
        p.opt(o.mss, |p, v| p.u(u64::from(v)));
        p.opt(o.wscale, |p, v| p.u(u64::from(v)));
        p.b(o.sack_permitted);
        p.b(o.timestamps);
    }
    p.s(r.history.as_str());
    p.opt(r.app.as_deref(), app);
    p.opt(r.stale.as_deref(), stale);
    p.ot(r.server_fin_idle);
}

fn read_record(g: &mut Get<'_>, first: Nanos, r: &mut ConnRecord) -> Option<()> {
    let ConnRecord {
        first_record,
        last_record,
        client,
        server,
        client_mac,
        handshake_seen,
        first_time,
        last_time,
        syn_time,
        last_syn_time,
        syn_count,
        synack_time,
        synack_count,
        established_time,
        fin,
        rst,
        bytes,
        packets,
        last_payload,
        milestones,
        server_tsval,
        ts_samples,
        syn_options,
        history,
        app,
        stale,
        server_fin_idle,
    } = r;
    *first_record = g.u()?;
    *last_record = first_record.wrapping_add(g.u()?);
    *client = g.ep()?;
    *server = g.ep()?;
    *client_mac = g.opt(|g| g.take(6)?.try_into().ok())?;
    *handshake_seen = g.b()?;
    *first_time = first;
    *last_time = g.t()?;
    *syn_time = g.ot()?;
    *last_syn_time = g.ot()?;
    *syn_count = g.u32()?;
    *synack_time = g.ot()?;
    *synack_count = g.u32()?;
    *established_time = g.ot()?;
    for t in fin
        .iter_mut()
        .chain(rst.iter_mut())
        .chain(last_payload.iter_mut())
    {
        *t = g.ot()?;
    }
    for n in bytes.iter_mut().chain(packets.iter_mut()) {
        *n = g.u()?;
    }
    *milestones = Milestones {
        refused: g.ot()?,
        first_payload: g.ot()?,
        tls_hello: g.ot()?,
        tls: g.ot()?,
        http: g.ot()?,
        ws: g.ot()?,
    };
    *server_tsval = g.opt(Get::u32)?;
    let n = g.usize()?;
    ts_samples.clear();
    // A damaged length cannot make it allocate more than the bytes could hold.
    ts_samples.reserve(n.min(g.b.len()));
    for _ in 0..n {
        ts_samples.push(TsSample {
            time: g.t()?,
            tsval: g.u32()?,
        });
    }
    for o in syn_options.iter_mut() {
        *o = SynOptions {
            mss: g.opt(Get::u16)?,
            wscale: g.opt(|g| u8::try_from(g.u()?).ok())?,
            sack_permitted: g.b()?,
            timestamps: g.b()?,
        };
    }
    *history = History::from_letters(g.str()?);
    if g.b()? {
        read_app(
            g,
            app.get_or_insert_with(|| spare(|s| &mut s.app).unwrap_or_default()),
        )?;
    } else if let Some(old) = app.take() {
        keep_spare(|s| &mut s.app, old);
    }
    *stale = g.opt(read_stale)?.map(Box::new);
    *server_fin_idle = g.ot()?;
    Some(())
}

fn app(p: &mut Put<'_>, a: &AppFacts) {
    p.e(&a.protocol, Protocol::ALL);
    p.opt(a.tls.as_ref(), |p, t| {
        p.opt(t.sni.as_deref(), |p, s| p.s(s));
        p.u(t.alpn.len() as u64);
        for s in &t.alpn {
            p.s(s);
        }
        p.u(t.offered_versions.len() as u64);
        for s in &t.offered_versions {
            p.s(s);
        }
        p.opt(t.version, |p, s| p.s(s));
        p.ot(t.hello);
        p.ot(t.done);
        p.ot(t.app_data);
        p.b(t.malformed);
    });
    p.opt(a.request.as_ref(), |p, r| {
        p.s(&r.method);
        p.s(&r.target);
        p.opt(r.host.as_deref(), |p, s| p.s(s));
        for f in [r.ws_upgrade, r.authorization, r.cookie, r.ws_key] {
            p.b(f);
        }
    });
    p.opt(a.status, |p, s| p.u(u64::from(s)));
    p.b(a.h2_preface);
    p.u(u64::from(a.gaps[0]));
    p.u(u64::from(a.gaps[1]));
    p.opt(a.quic.as_deref(), quic);
}

fn bytes(p: &mut Put<'_>, b: &[u8]) {
    p.u(b.len() as u64);
    p.out.extend_from_slice(b);
}

fn quic(p: &mut Put<'_>, q: &QuicFacts) {
    p.u(u64::from(q.version));
    bytes(p, &q.original_dcid);
    bytes(p, &q.client_cid);
    bytes(p, &q.server_cid);
    p.u(q.negotiated_versions.len() as u64);
    for &v in &q.negotiated_versions {
        p.u(u64::from(v));
    }
    p.u(u64::from(q.initials[0]));
    p.u(u64::from(q.initials[1]));
    for f in [q.retry, q.zero_rtt, q.ech, q.unknown_version] {
        p.b(f);
    }
    p.ot(q.handshake);
    p.ot(q.data);
    p.u(u64::from(q.undecryptable));
}

fn read_bytes(g: &mut Get<'_>) -> Option<Vec<u8>> {
    let n = g.usize()?;
    g.take(n).map(<[u8]>::to_vec)
}

fn read_quic(g: &mut Get<'_>) -> Option<QuicFacts> {
    Some(QuicFacts {
        version: g.u32()?,
        original_dcid: read_bytes(g)?,
        client_cid: read_bytes(g)?,
        server_cid: read_bytes(g)?,
        negotiated_versions: list(g, Get::u32)?,
        initials: [g.u32()?, g.u32()?],
        retry: g.b()?,
        zero_rtt: g.b()?,
        ech: g.b()?,
        unknown_version: g.b()?,
        handshake: g.ot()?,
        data: g.ot()?,
        undecryptable: g.u32()?,
    })
}

fn list<'b, T>(g: &mut Get<'b>, f: impl Fn(&mut Get<'b>) -> Option<T>) -> Option<Vec<T>> {
    let n = g.usize()?;
    let mut v = Vec::with_capacity(n.min(g.b.len()));
    for _ in 0..n {
        v.push(f(g)?);
    }
    Some(v)
}

/// What decoded connections gave up (a connection read over one with TLS facts that has
/// none, say), kept on each thread for the next one that needs them: in a busy capture
/// neighbours alternate between TLS, plain HTTP and no payload at all, and dropping and
/// allocating these parts again was most of a spilled pass's remaining allocator time.
#[derive(Default)]
struct Spares {
    /// Boxed: the box itself is what the next connection's `app` takes back.
    #[allow(clippy::vec_box)]
    app: Vec<Box<AppFacts>>,
    tls: Vec<TlsFacts>,
    request: Vec<Request>,
}

/// Spares kept per kind and thread.
const SPARES: usize = 64;

thread_local! {
    static SPARE: std::cell::RefCell<Spares> = std::cell::RefCell::default();
}

/// A spare of the kind `kind` picks, if this thread has one.
fn spare<T>(kind: impl FnOnce(&mut Spares) -> &mut Vec<T>) -> Option<T> {
    SPARE.with_borrow_mut(|s| kind(s).pop())
}

/// Keep `v` as a spare of the kind `kind` picks (dropped when there are enough).
fn keep_spare<T>(kind: impl FnOnce(&mut Spares) -> &mut Vec<T>, v: T) {
    SPARE.with_borrow_mut(|s| {
        let list = kind(s);
        if list.len() < SPARES {
            list.push(v);
        }
    });
}

fn read_app(g: &mut Get<'_>, a: &mut AppFacts) -> Option<()> {
    let AppFacts {
        protocol,
        tls,
        request,
        status,
        h2_preface,
        gaps,
        quic,
    } = a;
    *protocol = g.e(Protocol::ALL)?;
    if g.b()? {
        read_tls(
            g,
            tls.get_or_insert_with(|| spare(|s| &mut s.tls).unwrap_or_default()),
        )?;
    } else if let Some(old) = tls.take() {
        keep_spare(|s| &mut s.tls, old);
    }
    if g.b()? {
        let r = request.get_or_insert_with(|| spare(|s| &mut s.request).unwrap_or_default());
        read_request(g, r)?;
    } else if let Some(old) = request.take() {
        keep_spare(|s| &mut s.request, old);
    }
    *status = g.opt(Get::u16)?;
    *h2_preface = g.b()?;
    *gaps = [g.u32()?, g.u32()?];
    *quic = g.opt(read_quic)?.map(Box::new);
    Some(())
}

fn read_tls(g: &mut Get<'_>, t: &mut TlsFacts) -> Option<()> {
    let TlsFacts {
        sni,
        alpn,
        offered_versions,
        version: v,
        hello,
        done,
        app_data,
        malformed,
    } = t;
    g.os_into(sni)?;
    let n = g.usize()?;
    alpn.truncate(n);
    for i in 0..n {
        match alpn.get_mut(i) {
            Some(s) => g.s_into(s)?,
            None => alpn.push(g.s()?),
        }
    }
    let n = g.usize()?;
    offered_versions.clear();
    offered_versions.reserve(n.min(g.b.len()));
    for _ in 0..n {
        offered_versions.push(version(g.str()?));
    }
    *v = g.opt(|g| g.str().map(version))?;
    *hello = g.ot()?;
    *done = g.ot()?;
    *app_data = g.ot()?;
    *malformed = g.b()?;
    Some(())
}

fn read_request(g: &mut Get<'_>, r: &mut Request) -> Option<()> {
    let Request {
        method,
        target,
        host,
        ws_upgrade,
        authorization,
        cookie,
        ws_key,
    } = r;
    g.s_into(method)?;
    g.s_into(target)?;
    g.os_into(host)?;
    *ws_upgrade = g.b()?;
    *authorization = g.b()?;
    *cookie = g.b()?;
    *ws_key = g.b()?;
    Some(())
}

fn stale(p: &mut Put<'_>, s: &StaleFacts) {
    p.t(s.request);
    p.i(s.idle);
    p.opt(s.peer_fin, |p, t| p.t(t));
    p.e(&s.failure, StaleFailure::ALL);
    p.opt(s.failure_time, |p, t| p.t(t));
    p.u(u64::from(s.retransmissions));
    p.opt(s.request_line.as_ref(), |p, (m, t)| {
        p.s(m);
        p.s(t);
    });
}

fn read_stale(g: &mut Get<'_>) -> Option<StaleFacts> {
    Some(StaleFacts {
        request: g.t()?,
        idle: g.i()?,
        peer_fin: g.opt(Get::t)?,
        failure: g.e(StaleFailure::ALL)?,
        failure_time: g.opt(Get::t)?,
        retransmissions: g.u32()?,
        request_line: g.opt(|g| Some((g.s()?, g.s()?)))?,
    })
}

#[cfg(test)]
mod tests;
