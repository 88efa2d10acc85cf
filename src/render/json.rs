//! The JSON report: the contract in `spec/REPORT.md`, plus extra fields beside the
//! contract's (the contract allows siblings, never renames). Serialised straight to the
//! writer, element by element: no document-sized intermediate value is built.

use std::io::Write;

use serde::Serialize;

use crate::domain::{epoch_seconds, ms_between, Family, Nanos};
use crate::model::{Analysis, Cancel, Connection, Race, RaceDns, Sequence};
use crate::track::{ConnRecord, Vantage, VantageVotes};

pub use crate::domain::ser_time;

fn opt_time(t: Option<Nanos>) -> Option<f64> {
    t.map(epoch_seconds)
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct CaptureJson<'a> {
    file: &'a str,
    format: crate::read::Format,
    link_types: Vec<String>,
    packets: u64,
    bytes: u64,
    first_time: Option<f64>,
    last_time: Option<f64>,
    truncated: bool,
    // extras
    vantage: Vantage,
    vantage_votes: VantageVotes,
    compression: Option<&'static str>,
    decode: crate::decode::DecodeStats,
    peak_open_connections: usize,
}

#[derive(Serialize)]
struct HttpJson<'a> {
    method: &'a str,
    target: &'a str,
    host: Option<&'a str>,
    ws_upgrade: bool,
    authorization: bool,
    cookie: bool,
    status: Option<u16>,
}

/// The contract's `http` object: the first request (secrets as presence only) and the status.
fn http_json(c: &Connection) -> Option<HttpJson<'_>> {
    c.request().map(|q| HttpJson {
        method: &q.method,
        target: &q.target,
        host: q.host.as_deref(),
        ws_upgrade: q.ws_upgrade,
        authorization: q.authorization,
        cookie: q.cookie,
        status: c.rec.app.as_ref().and_then(|x| x.status),
    })
}

/// Extra `app` object: what the application layer saw (never a secret's value).
#[derive(Serialize)]
struct AppJson<'a> {
    protocol: crate::app::Protocol,
    tls_alpn: Option<&'a [String]>,
    tls_versions_offered: Option<&'a [&'static str]>,
    tls_version: Option<&'static str>,
    tls_hello_time: Option<f64>,
    tls_done_time: Option<f64>,
    tls_app_data_time: Option<f64>,
    tls_malformed: bool,
    http_request_time: Option<f64>,
    ws_time: Option<f64>,
    ws_key: bool,
    h2_preface: bool,
    gaps_client: u32,
    gaps_server: u32,
}

/// What a connection whose payload was neither TLS nor HTTP keeps (no box on the record).
const OTHER: crate::app::AppFacts = crate::app::AppFacts {
    protocol: crate::app::Protocol::Other,
    tls: None,
    request: None,
    status: None,
    h2_preface: false,
    gaps: [0, 0],
};

fn app_json(c: &Connection) -> Option<AppJson<'_>> {
    let app = match c.rec.app.as_deref() {
        Some(app) => app,
        None if c.rec.milestones.first_payload.is_some() => &OTHER,
        None => return None,
    };
    let tls = app.tls.as_ref();
    let m = &c.rec.milestones;
    Some(AppJson {
        protocol: app.protocol,
        tls_alpn: tls.map(|t| t.alpn.as_slice()),
        tls_versions_offered: tls.map(|t| t.offered_versions.as_slice()),
        tls_version: tls.and_then(|t| t.version),
        tls_hello_time: opt_time(tls.and_then(|t| t.hello.get())),
        tls_done_time: opt_time(tls.and_then(|t| t.done.get())),
        tls_app_data_time: opt_time(tls.and_then(|t| t.app_data.get())),
        tls_malformed: tls.is_some_and(|t| t.malformed),
        http_request_time: opt_time(m.http.get()),
        ws_time: opt_time(m.ws.get()),
        ws_key: app.request.as_ref().is_some_and(|r| r.ws_key),
        h2_preface: app.h2_preface,
        gaps_client: app.gaps[0],
        gaps_server: app.gaps[1],
    })
}

#[cfg(test)]
#[derive(Serialize)]
struct SynOptionsJson {
    mss: Option<u16>,
    wscale: Option<u8>,
    sack_permitted: bool,
    timestamps: bool,
}

/// The connection object as a serde struct: the oracle [`write_connection`] is tested against
/// (byte for byte, on every sample).
#[cfg(test)]
#[derive(Serialize)]
struct ConnectionJson<'a> {
    id: usize,
    first_record: u64,
    last_record: u64,
    family: Family,
    client_ip: Text<std::net::IpAddr>,
    client_port: u16,
    server_ip: Text<std::net::IpAddr>,
    server_port: u16,
    handshake_seen: bool,
    syn_time: Option<f64>,
    syn_count: u32,
    synack_time: Option<f64>,
    established_time: Option<f64>,
    end_time: Option<f64>,
    end_reason: &'static str,
    bytes_client: u64,
    bytes_server: u64,
    stage: crate::domain::Stage,
    server_tsval: Option<u32>,
    tls_sni: Option<&'a str>,
    http: Option<HttpJson<'a>>,
    service: &'a str,
    race: Option<usize>,
    role: crate::model::Role,
    backend: Option<&'a str>,
    // extras
    client: &'a str,
    service_source: crate::model::NameSource,
    nat64: bool,
    history: &'a str,
    conn_state: &'static str,
    wireshark_filter: Text<crate::track::conn::WiresharkFilter<'a>>,
    synack_count: u32,
    packets_client: u64,
    packets_server: u64,
    handshake_rtt_ms: Option<f64>,
    syn_options: [SynOptionsJson; 2],
    last_time: f64,
    app: Option<AppJson<'a>>,
}

/// A value serialised as a JSON string through its `Display` (no intermediate `String`).
#[cfg(test)]
struct Text<T>(T);

#[cfg(test)]
impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[cfg(test)]
fn connection_json<'a>(c: &'a Connection, a: &'a Analysis) -> ConnectionJson<'a> {
    let r = &c.rec;
    let opts = |i: usize| {
        let o = r.syn_options.get(i).copied().unwrap_or_default();
        SynOptionsJson {
            mss: o.mss,
            wscale: o.wscale,
            sack_permitted: o.sack_permitted,
            timestamps: o.timestamps,
        }
    };
    ConnectionJson {
        id: c.id,
        first_record: r.first_record,
        last_record: r.last_record,
        family: r.family(),
        client_ip: Text(r.client.ip),
        client_port: r.client.port,
        server_ip: Text(r.server.ip),
        server_port: r.server.port,
        handshake_seen: r.handshake_seen,
        syn_time: opt_time(r.syn_time.get()),
        syn_count: r.syn_count,
        synack_time: opt_time(r.synack_time.get()),
        established_time: opt_time(r.established_time.get()),
        end_time: opt_time(r.end().map(|e| e.0)),
        end_reason: r.end_reason(),
        bytes_client: r.bytes[0],
        bytes_server: r.bytes[1],
        stage: r.stage(),
        server_tsval: r.server_tsval,
        tls_sni: c.tls().and_then(|t| t.sni.as_deref()),
        http: http_json(c),
        service: &c.service,
        race: c.race,
        role: c.role,
        backend: c.backend.as_deref(),
        client: a.hosts.get(c.host).map_or("", |h| h.label()),
        service_source: c.service_source,
        nat64: c.nat64,
        history: r.history.as_str(),
        conn_state: r.conn_state(),
        wireshark_filter: Text(r.wireshark_filter()),
        synack_count: r.synack_count,
        packets_client: r.packets[0],
        packets_server: r.packets[1],
        handshake_rtt_ms: r.handshake_legs().map(|(x, y)| ms_between(0, x + y)),
        syn_options: [opts(0), opts(1)],
        last_time: epoch_seconds(r.last_time),
        app: app_json(c),
    }
}

#[derive(Serialize)]
struct RaceJson<'a> {
    id: usize,
    service: &'a str,
    client: &'a str,
    start_time: f64,
    attempts: &'a [usize],
    families: &'a [Family],
    first_family: Option<Family>,
    winner: Option<usize>,
    winner_family: Option<Family>,
    also_rans: &'a [usize],
    attempt_delays_ms: &'a [f64],
    also_ran_cancel: &'a [Cancel],
    duplicate_upgrade: bool,
    // extras
    rfc8305: &'a [String],
    dns: Option<&'a RaceDns>,
    duplicate_upgrade_inferred: bool,
    duplicate_request: Option<&'a crate::model::DuplicateRequest>,
    cancel_rules_broken: &'a [&'static str],
    late_cancels: usize,
    fetches_ambiguous: bool,
}

fn race_json<'a>(r: &'a Race, a: &Analysis) -> RaceJson<'a> {
    RaceJson {
        id: r.id,
        service: &r.service,
        client: &r.client,
        start_time: epoch_seconds(r.start_time),
        attempts: &r.attempts,
        families: &r.families,
        first_family: r.families.first().copied(),
        winner: r.winner,
        winner_family: r
            .winner
            .and_then(|w| a.connections.get(w))
            .map(|c| c.rec.family()),
        also_rans: &r.also_rans,
        attempt_delays_ms: &r.attempt_delays_ms,
        also_ran_cancel: &r.also_ran_cancel,
        duplicate_upgrade: r.duplicate_upgrade,
        rfc8305: &r.findings,
        dns: r.dns.as_ref(),
        duplicate_upgrade_inferred: r.duplicate_upgrade_inferred,
        duplicate_request: r.duplicate_request.as_deref(),
        cancel_rules_broken: &r.cancel_rules_broken,
        late_cancels: r.also_ran_cancel.iter().filter(|c| c.late).count(),
        fetches_ambiguous: r.fetches_ambiguous,
    }
}

/// A JSON object written member by member into a buffer. Keys are static identifiers and are
/// written as they are; integers, booleans, addresses and strings known to need no escaping
/// (codes, host labels, the Wireshark filter) are written directly; other values (floats,
/// enums, and text from the wire such as SNI, Host or ALPN, which serde_json escapes) go
/// through serde_json. The connections array is most of a large report; a derived `Serialize`
/// escapes every key of every object and formats addresses through `fmt`.
struct Obj<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> Obj<'b> {
    #[inline(always)]
    fn open(buf: &'b mut Vec<u8>) -> Obj<'b> {
        buf.push(b'{');
        Obj { buf, first: true }
    }

    #[inline(always)]
    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Any value, through serde_json.
    #[inline(always)]
    fn val<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) -> std::io::Result<()> {
        self.key(k);
        serde_json::to_writer(&mut *self.buf, v).map_err(std::io::Error::from)
    }

    /// A string known to hold no `"`, `\\` or control character (codes, host labels).
    #[inline(always)]
    fn text(&mut self, k: &str, v: &str) {
        self.key(k);
        push_text(self.buf, v);
    }

    /// An optional [`Obj::text`].
    #[inline(always)]
    fn opt_text(&mut self, k: &str, v: Option<&str>) {
        self.key(k);
        match v {
            Some(v) => push_text(self.buf, v),
            None => self.buf.extend_from_slice(b"null"),
        }
    }

    /// An address as a string; returns where its text stands in the buffer.
    #[inline(always)]
    fn ip(&mut self, k: &str, ip: &std::net::IpAddr) -> std::ops::Range<usize> {
        self.key(k);
        self.buf.push(b'"');
        let start = self.buf.len();
        crate::domain::push_ip(self.buf, ip);
        let end = self.buf.len();
        self.buf.push(b'"');
        start..end
    }

    #[inline(always)]
    fn uint<T: itoa::Integer>(&mut self, k: &str, v: T) {
        self.key(k);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    #[inline(always)]
    fn opt_uint<T: itoa::Integer>(&mut self, k: &str, v: Option<T>) {
        match v {
            Some(v) => self.uint(k, v),
            None => {
                self.key(k);
                self.buf.extend_from_slice(b"null");
            }
        }
    }

    /// An array whose elements `each` writes.
    #[inline(always)]
    fn list<T>(
        &mut self,
        k: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Vec<u8>, T) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.key(k);
        self.buf.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            each(self.buf, item)?;
        }
        self.buf.push(b']');
        Ok(())
    }

    /// An array of ids.
    fn uints(&mut self, k: &str, v: &[usize]) -> std::io::Result<()> {
        let mut n = itoa::Buffer::new();
        self.list(k, v, |buf, x| {
            buf.extend_from_slice(n.format(*x).as_bytes());
            Ok(())
        })
    }

    /// An array of address families.
    fn families(&mut self, k: &str, v: &[Family]) -> std::io::Result<()> {
        self.list(k, v, |buf, f| {
            push_text(buf, f.as_str());
            Ok(())
        })
    }

    #[inline(always)]
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// A capture time as the contract's seconds, or null.
    #[inline(always)]
    fn time(&mut self, k: &str, t: Option<Nanos>) -> std::io::Result<()> {
        self.val(k, &opt_time(t))
    }

    #[inline(always)]
    fn close(self) {
        self.buf.push(b'}');
    }
}

/// A string known to hold no `"`, `\\` or control character, quoted.
#[inline(always)]
fn push_text(buf: &mut Vec<u8>, v: &str) {
    buf.push(b'"');
    buf.extend_from_slice(v.as_bytes());
    buf.push(b'"');
}

/// The connection's Wireshark filter (the text of [`crate::track::conn::WiresharkFilter`]'s
/// `Display`; the serde oracle test holds the two equal), without the formatting machinery.
/// `addrs` says where the client's and the server's addresses already stand in `out` (the
/// object spells them a few members earlier): they are copied from there, not formatted again.
fn push_wireshark_filter(out: &mut Vec<u8>, r: &ConnRecord, addrs: [std::ops::Range<usize>; 2]) {
    let ip: &[u8] = match r.family() {
        Family::Ipv4 => b"ip.addr",
        Family::Ipv6 => b"ipv6.addr",
    };
    let [client, server] = addrs;
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(ip);
    out.extend_from_slice(b" == ");
    out.extend_from_within(client);
    out.extend_from_slice(b" && ");
    out.extend_from_slice(ip);
    out.extend_from_slice(b" == ");
    out.extend_from_within(server);
    out.extend_from_slice(b" && tcp.port == ");
    out.extend_from_slice(n.format(r.client.port).as_bytes());
    out.extend_from_slice(b" && tcp.port == ");
    out.extend_from_slice(n.format(r.server.port).as_bytes());
    out.extend_from_slice(b" && frame.number >= ");
    out.extend_from_slice(n.format(r.first_record).as_bytes());
    out.extend_from_slice(b" && frame.number <= ");
    out.extend_from_slice(n.format(r.last_record).as_bytes());
}

/// One `connections[]` object (the members of [`ConnectionJson`], in its order).
fn write_connection(buf: &mut Vec<u8>, c: &Connection, a: &Analysis) -> std::io::Result<()> {
    let r = &c.rec;
    let mut o = Obj::open(buf);
    o.uint("id", c.id);
    o.uint("first_record", r.first_record);
    o.uint("last_record", r.last_record);
    o.text("family", r.family().as_str());
    let client_ip = o.ip("client_ip", &r.client.ip);
    o.uint("client_port", r.client.port);
    let server_ip = o.ip("server_ip", &r.server.ip);
    o.uint("server_port", r.server.port);
    o.bool("handshake_seen", r.handshake_seen);
    o.time("syn_time", r.syn_time.get())?;
    o.uint("syn_count", r.syn_count);
    o.time("synack_time", r.synack_time.get())?;
    o.time("established_time", r.established_time.get())?;
    o.time("end_time", r.end().map(|e| e.0))?;
    o.text("end_reason", r.end_reason());
    o.uint("bytes_client", r.bytes[0]);
    o.uint("bytes_server", r.bytes[1]);
    o.text("stage", r.stage().as_str());
    o.opt_uint("server_tsval", r.server_tsval);
    o.val("tls_sni", &c.tls().and_then(|t| t.sni.as_deref()))?;
    o.val("http", &http_json(c))?;
    o.val("service", &*c.service)?;
    o.opt_uint("race", c.race);
    o.text("role", c.role.as_str());
    o.val("backend", &c.backend.as_deref())?;
    o.text("client", a.hosts.get(c.host).map_or("", |h| h.label()));
    o.text("service_source", c.service_source.as_str());
    o.bool("nat64", c.nat64);
    o.text("history", r.history.as_str());
    o.text("conn_state", r.conn_state());
    o.key("wireshark_filter");
    o.buf.push(b'"');
    push_wireshark_filter(o.buf, r, [client_ip, server_ip]);
    o.buf.push(b'"');
    o.uint("synack_count", r.synack_count);
    o.uint("packets_client", r.packets[0]);
    o.uint("packets_server", r.packets[1]);
    o.val(
        "handshake_rtt_ms",
        &r.handshake_legs().map(|(x, y)| ms_between(0, x + y)),
    )?;
    o.list("syn_options", r.syn_options, |buf, opt| {
        let mut s = Obj::open(buf);
        s.opt_uint("mss", opt.mss);
        s.opt_uint("wscale", opt.wscale);
        s.bool("sack_permitted", opt.sack_permitted);
        s.bool("timestamps", opt.timestamps);
        s.close();
        Ok(())
    })?;
    o.val("last_time", &epoch_seconds(r.last_time))?;
    o.key("app");
    match app_json(c) {
        None => o.buf.extend_from_slice(b"null"),
        Some(j) => {
            let mut p = Obj::open(o.buf);
            p.val("protocol", &j.protocol)?;
            p.val("tls_alpn", &j.tls_alpn)?;
            p.val("tls_versions_offered", &j.tls_versions_offered)?;
            p.val("tls_version", &j.tls_version)?;
            p.val("tls_hello_time", &j.tls_hello_time)?;
            p.val("tls_done_time", &j.tls_done_time)?;
            p.val("tls_app_data_time", &j.tls_app_data_time)?;
            p.bool("tls_malformed", j.tls_malformed);
            p.val("http_request_time", &j.http_request_time)?;
            p.val("ws_time", &j.ws_time)?;
            p.bool("ws_key", j.ws_key);
            p.bool("h2_preface", j.h2_preface);
            p.uint("gaps_client", j.gaps_client);
            p.uint("gaps_server", j.gaps_server);
            p.close();
        }
    }
    o.close();
    Ok(())
}

/// One `races[]` object (the members of [`RaceJson`], in its order; nested objects through
/// serde_json).
fn write_race(buf: &mut Vec<u8>, r: &Race, a: &Analysis) -> std::io::Result<()> {
    let j = race_json(r, a);
    let mut o = Obj::open(buf);
    o.uint("id", j.id);
    o.val("service", j.service)?;
    o.text("client", j.client);
    o.val("start_time", &j.start_time)?;
    o.uints("attempts", j.attempts)?;
    o.families("families", j.families)?;
    o.opt_text("first_family", j.first_family.map(Family::as_str));
    o.opt_uint("winner", j.winner);
    o.opt_text("winner_family", j.winner_family.map(Family::as_str));
    o.uints("also_rans", j.also_rans)?;
    o.val("attempt_delays_ms", j.attempt_delays_ms)?;
    o.list("also_ran_cancel", j.also_ran_cancel, |buf, c| {
        let mut p = Obj::open(buf);
        p.uint("id", c.id);
        p.text("stage", c.stage.as_str());
        p.val("after_winner_ms", &c.after_winner_ms)?;
        p.text("fate", c.fate.as_str());
        p.bool("late", c.late);
        p.close();
        Ok(())
    })?;
    o.bool("duplicate_upgrade", j.duplicate_upgrade);
    o.val("rfc8305", j.rfc8305)?;
    o.key("dns");
    match j.dns {
        None => o.buf.extend_from_slice(b"null"),
        Some(d) => {
            let mut p = Obj::open(o.buf);
            p.val("name", &*d.name)?;
            p.val("aaaa_query_time", &d.aaaa_query_time)?;
            p.val("aaaa_answer_time", &d.aaaa_answer_time)?;
            p.val("a_query_time", &d.a_query_time)?;
            p.val("a_answer_time", &d.a_answer_time)?;
            p.val("answer_to_first_syn_ms", &d.answer_to_first_syn_ms)?;
            p.close();
        }
    }
    o.bool("duplicate_upgrade_inferred", j.duplicate_upgrade_inferred);
    o.val("duplicate_request", &j.duplicate_request)?;
    o.val("cancel_rules_broken", j.cancel_rules_broken)?;
    o.uint("late_cancels", j.late_cancels);
    o.bool("fetches_ambiguous", j.fetches_ambiguous);
    o.close();
    Ok(())
}

#[derive(Serialize)]
struct HostJson<'a> {
    client: &'a str,
    addresses: Vec<String>,
    tied_by: Vec<&'static str>,
    attempt_delay: Option<&'a crate::model::DelayProfile>,
}

/// Items serialised per parallel task: big enough to amortise the task, small enough that
/// the buffers of one round stay a few MB.
const CHUNK: usize = 1024;

/// Write the analysis as one JSON document.
///
/// The document is streamed: the small sections are serialised straight to `out`, and the two
/// long arrays (connections, races) a round of chunks at a time, each chunk serialised on its
/// own rayon task into a buffer and written in order. Memory stays at a few chunks whatever
/// the capture's size, and the output is byte-identical whatever the thread count.
pub fn write<W: Write>(a: &Analysis, mut out: W) -> std::io::Result<()> {
    let capture = CaptureJson {
        file: &a.capture.file,
        format: a.capture.format,
        link_types: a.capture.link_types.iter().map(|l| l.name()).collect(),
        packets: a.capture.packets,
        bytes: a.capture.bytes,
        first_time: opt_time(a.capture.first_time),
        last_time: opt_time(a.capture.last_time),
        truncated: a.capture.truncated,
        vantage: a.vantage,
        vantage_votes: a.vantage_votes,
        compression: a.capture.compression,
        decode: a.decode,
        peak_open_connections: a.peak_open,
    };
    let tool = Tool {
        name: "racetrace",
        version: env!("CARGO_PKG_VERSION"),
    };
    let w = &mut out;
    w.write_all(b"{")?;
    field(w, "schema_version", &"1", true)?;
    field(w, "tool", &tool, false)?;
    field(w, "capture", &capture, false)?;
    field(w, "summary", &a.summary, false)?;
    w.write_all(b",\"connections\":")?;
    array(w, &a.connections, |c, buf| write_connection(buf, c, a))?;
    // The other lists of small items through serde, item by item, in the same parallel chunks.
    w.write_all(b",\"services\":")?;
    array(w, &a.services, serde_item)?;
    w.write_all(b",\"races\":")?;
    array(w, &a.races, |r, buf| write_race(buf, r, a))?;
    // Streamed: a backend lists all its connections and one host's sequence holds all of its
    // own, so one item alone can be megabytes, and a chunk of them in memory at once would
    // raise the peak (the 600 MB benchmark capture's 1,000 sequences are 24 MB, one chunk:
    // its peak rose 18-21 MB).
    field(w, "backends", &a.backends, false)?;
    w.write_all(b",\"sequences\":[")?;
    let mut buf = Vec::new();
    for (i, seq) in a.sequences.iter().enumerate() {
        buf.clear();
        if i > 0 {
            buf.push(b',');
        }
        write_sequence(&mut buf, seq)?;
        w.write_all(&buf)?;
    }
    w.write_all(b"]")?;
    w.write_all(b",\"stale_reuses\":")?;
    array(w, &a.stale_reuses, serde_item)?;
    w.write_all(b",\"warnings\":")?;
    array(w, &a.warnings, serde_item)?;
    w.write_all(b",\"clients\":")?;
    array(w, &a.hosts, |h, buf| {
        let client = HostJson {
            client: h.label(),
            addresses: h.addrs.iter().map(|x| x.to_string()).collect(),
            tied_by: h.ties.clone(),
            attempt_delay: h.delays.as_ref(),
        };
        serde_item(&client, buf)
    })?;
    w.write_all(b"}")
}

/// One item of a list, through serde (for [`array`]).
fn serde_item<T: Serialize>(item: &T, buf: &mut Vec<u8>) -> std::io::Result<()> {
    serde_json::to_writer(buf, item).map_err(std::io::Error::from)
}

/// `"name":value`, preceded by a comma unless it is the object's first member.
fn field<W: Write, T: Serialize + ?Sized>(
    w: &mut W,
    name: &str,
    value: &T,
    first: bool,
) -> std::io::Result<()> {
    if !first {
        w.write_all(b",")?;
    }
    serde_json::to_writer(&mut *w, name)?;
    w.write_all(b":")?;
    serde_json::to_writer(&mut *w, value)?;
    Ok(())
}

/// One `sequences[]` object (the members of [`Sequence`], in its order).
fn write_sequence(buf: &mut Vec<u8>, s: &Sequence) -> std::io::Result<()> {
    let mut o = Obj::open(buf);
    o.val("client", &*s.client)?;
    o.val("service", &*s.service)?;
    o.uints("connections", &s.connections)?;
    o.families("families", &s.families)?;
    o.uint("family_switches", s.family_switches);
    o.uint("backend_switches", s.backend_switches);
    o.list("backends", &s.backends, |buf, b| {
        serde_item(&b.as_deref(), buf)
    })?;
    o.list("switches", &s.switches, |buf, w| {
        let mut p = Obj::open(buf);
        p.uint("from", w.from);
        p.uint("to", w.to);
        p.val("gap_ms", &w.gap_ms)?;
        p.bool("family_switch", w.family_switch);
        p.val("backend_switch", &w.backend_switch)?;
        p.close();
        Ok(())
    })?;
    o.uint("family_and_backend_switches", s.family_and_backend_switches);
    o.val("strip", &s.strip)?;
    o.close();
    Ok(())
}

/// A JSON array of `items`, each written by `f` into a buffer, serialised in parallel chunks
/// and written in order. Rounds overlap: while one round's buffers are written out on this
/// thread, the next round is serialised on the rayon pool.
fn array<'a, W, T, F>(w: &mut W, items: &'a [T], f: F) -> std::io::Result<()>
where
    W: Write,
    T: Sync,
    F: Fn(&'a T, &mut Vec<u8>) -> std::io::Result<()> + Sync,
{
    use rayon::prelude::*;
    let chunks_per_round = 2 * rayon::current_num_threads().max(1);
    // Serialise round `r` (`part`) into `bufs`, one buffer per chunk; the buffers a short last
    // round leaves unused are emptied too.
    let render = |r: usize, part: &'a [T], bufs: &mut [Vec<u8>]| -> std::io::Result<()> {
        bufs.iter_mut().for_each(Vec::clear);
        part.par_chunks(CHUNK)
            .zip(bufs.par_iter_mut())
            .enumerate()
            .try_for_each(|(k, (chunk, slot))| {
                // Filled through a local handle: the buffers' headers sit side by side in
                // `bufs`, and a length written per member by two cores into one cache line
                // would bounce it between them (false sharing; it made two threads slower
                // than one).
                let mut buf = std::mem::take(slot);
                let filled = chunk.iter().enumerate().try_for_each(|(i, item)| {
                    if r + k + i > 0 {
                        buf.push(b',');
                    }
                    f(item, &mut buf)
                });
                *slot = buf;
                filled
            })
    };
    // Two sets of buffers, reused round after round (fresh buffers would cost a page fault
    // per 4 KiB of output): one being written, one being filled.
    let mut ready: Vec<Vec<u8>> = vec![Vec::new(); chunks_per_round];
    let mut filling: Vec<Vec<u8>> = vec![Vec::new(); chunks_per_round];
    w.write_all(b"[")?;
    for (r, part) in items.chunks(CHUNK * chunks_per_round).enumerate() {
        let mut rendered = Ok(());
        let mut written = Ok(());
        rayon::in_place_scope(|s| {
            s.spawn(|_| rendered = render(r, part, &mut filling));
            written = ready.iter().try_for_each(|b| w.write_all(b));
        });
        written?;
        rendered?;
        std::mem::swap(&mut ready, &mut filling);
    }
    ready.iter().try_for_each(|b| w.write_all(b))?;
    w.write_all(b"]")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the hand-written objects spell are serde's, for every variant (the samples
    /// need not hold them all: `cli` names come only from `--service`).
    #[test]
    fn enum_names_are_serdes() {
        use crate::domain::{Family, Stage};
        use crate::model::{Fate, NameSource, Role};
        fn serde_name<T: Serialize>(v: T) -> String {
            serde_json::to_string(&v)
                .unwrap_or_default()
                .trim_matches('"')
                .to_string()
        }
        for r in [Role::Winner, Role::AlsoRan, Role::Single] {
            assert_eq!(r.as_str(), serde_name(r));
        }
        for n in [
            NameSource::Address,
            NameSource::Dns,
            NameSource::Host,
            NameSource::Sni,
            NameSource::Cli,
        ] {
            assert_eq!(n.as_str(), serde_name(n));
        }
        for f in [Family::Ipv4, Family::Ipv6] {
            assert_eq!(f.as_str(), serde_name(f));
        }
        for f in [
            Fate::NeverAnswered,
            Fate::Refused,
            Fate::LateSynackReset,
            Fate::AbortedBeforeConnect,
            Fate::UnusedParallel,
            Fate::ClosedAfterConnect,
            Fate::LeftOpen,
        ] {
            assert_eq!(f.as_str(), serde_name(f));
        }
        for st in [
            Stage::Syn,
            Stage::Refused,
            Stage::Synack,
            Stage::Tcp,
            Stage::Data,
            Stage::TlsHello,
            Stage::Tls,
            Stage::Http,
            Stage::Ws,
        ] {
            assert_eq!(st.as_str(), serde_name(st));
        }
    }

    /// The hand-written connection, race and sequence objects equal the derived serde ones byte
    /// for byte, on every sample and real capture (TLS, HTTP, WebSocket, refused, mid-stream,
    /// IPv4 and IPv6, races with cancels, DNS timing and duplicate upgrades, backend switches).
    #[test]
    fn hand_written_objects_match_the_serde_oracle() {
        let files = crate::testdata::own_captures();
        // The writer's bytes against serde's for one object.
        fn same(fast: std::io::Result<Vec<u8>>, oracle: serde_json::Result<Vec<u8>>, what: &str) {
            let (fast, oracle) = (fast.unwrap_or_default(), oracle.unwrap_or_default());
            assert!(!fast.is_empty(), "{what}: nothing written");
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&oracle),
                "{what}"
            );
        }
        let (mut compared, mut races, mut sequences) = (0, 0, 0);
        for f in files.iter().filter_map(|f| f.to_str()) {
            let a = crate::analyze(&[f.to_string()], &crate::Options::default())
                .unwrap_or_else(|e| panic!("{f}: {e}"));
            for c in &a.connections {
                let mut fast = Vec::new();
                let fast = write_connection(&mut fast, c, &a).map(|()| fast);
                let oracle = serde_json::to_vec(&connection_json(c, &a));
                same(fast, oracle, &format!("{f}: connection {}", c.id));
                compared += 1;
            }
            for (k, seq) in a.sequences.iter().enumerate() {
                let mut fast = Vec::new();
                let fast = write_sequence(&mut fast, seq).map(|()| fast);
                same(fast, serde_json::to_vec(seq), &format!("{f}: sequence {k}"));
                sequences += 1;
            }
            for r in &a.races {
                let mut fast = Vec::new();
                let fast = write_race(&mut fast, r, &a).map(|()| fast);
                same(
                    fast,
                    serde_json::to_vec(&race_json(r, &a)),
                    &format!("{f}: race {}", r.id),
                );
                races += 1;
            }
        }
        assert!(compared > 100, "{compared} connections compared");
        assert!(races > 10, "{races} races compared");
        assert!(sequences > 10, "{sequences} sequences compared");
    }

    /// The chunked, double-buffered array writer gives serde's array for every length around
    /// its chunk and round boundaries (the last round short, full, or the array empty).
    #[test]
    fn chunked_arrays_equal_serde_arrays_at_every_boundary() {
        let round = CHUNK * 2 * rayon::current_num_threads().max(1);
        let lengths = [
            0,
            1,
            2,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            round - 1,
            round,
            round + 1,
        ];
        for n in lengths
            .into_iter()
            .chain([2 * round, 2 * round + CHUNK + 3])
        {
            let items: Vec<u64> = (0..n as u64).map(|i| i * 7919).collect();
            let mut out = Vec::new();
            let wrote = array(&mut out, &items, |x, buf| {
                buf.extend_from_slice(x.to_string().as_bytes());
                Ok(())
            });
            assert!(wrote.is_ok(), "{n} items: {wrote:?}");
            let oracle = serde_json::to_vec(&items).unwrap_or_default();
            assert_eq!(out, oracle, "{n} items");
        }
    }
}
