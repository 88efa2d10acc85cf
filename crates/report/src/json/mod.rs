//! The JSON report: the contract in `spec/REPORT.md`, plus extra fields beside the
//! contract's (the contract allows siblings, never renames). Serialised straight to the
//! writer, element by element: no document-sized intermediate value is built.

use std::io::Write;

use serde::Serialize;

use racetrace_core::domain::{epoch_seconds, ms_between, Family, Nanos};
use racetrace_core::model::{Analysis, Connection, Host, Race, Sequence};
use racetrace_core::track::{ConnRecord, Vantage, VantageVotes};

pub use racetrace_core::domain::ser_time;

mod obj;
#[cfg(test)]
mod tests;

use obj::{push_wireshark_filter, Obj};

use crate::rows::{AppRow, HttpRow, QuicRow, RaceRow};

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
    format: racetrace_core::read::Format,
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
    decode: racetrace_core::decode::DecodeStats,
    peak_open_connections: usize,
}

/// One `connections[]` object (the members of [`ConnectionRow`], in its order).
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
    o.val("http", &HttpRow::of(c))?;
    o.val("service", &*c.service)?;
    o.opt_uint("race", c.race);
    o.text("role", c.role.as_str());
    o.val("backend", &c.backend.as_deref())?;
    o.text(
        "client",
        &a.hosts.get(c.host).map(|h| h.label()).unwrap_or_default(),
    );
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
    match AppRow::of(c) {
        None => o.buf.extend_from_slice(b"null"),
        Some(j) => {
            let mut p = Obj::open(o.buf);
            p.val("protocol", &j.protocol)?;
            p.val("tls_alpn", &j.tls_alpn)?;
            p.val("tls_versions_offered", &j.tls_versions_offered)?;
            p.val("tls_version", &j.tls_version)?;
            p.time("tls_hello_time", j.tls_hello_time)?;
            p.time("tls_done_time", j.tls_done_time)?;
            p.time("tls_app_data_time", j.tls_app_data_time)?;
            p.bool("tls_malformed", j.tls_malformed);
            p.time("http_request_time", j.http_request_time)?;
            p.time("ws_time", j.ws_time)?;
            p.bool("ws_key", j.ws_key);
            p.bool("h2_preface", j.h2_preface);
            p.uint("gaps_client", j.gaps_client);
            p.uint("gaps_server", j.gaps_server);
            p.close();
        }
    }
    o.text("transport", r.transport());
    o.val("quic", &QuicRow::of(c))?;
    o.close();
    Ok(())
}

/// One `races[]` object (the members of [`RaceRow`], in its order; nested objects through
/// serde_json).
fn write_race(buf: &mut Vec<u8>, r: &Race) -> std::io::Result<()> {
    let j = RaceRow::in_analysis(r);
    let mut o = Obj::open(buf);
    o.uint("id", j.id);
    o.val("service", j.service)?;
    o.text("client", j.client);
    o.time("start_time", Some(j.start_time))?;
    o.uints("attempts", j.attempts.iter().copied())?;
    o.families("families", j.families.iter().copied())?;
    o.val("transports", j.transports)?;
    o.opt_text("first_family", j.first_family.map(Family::as_str));
    o.opt_uint("winner", j.winner);
    o.opt_text("winner_family", j.winner_family.map(Family::as_str));
    o.uints("also_rans", j.also_rans.iter().copied())?;
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
            p.val("https_query_time", &d.https_query_time)?;
            p.val("https_answer_time", &d.https_answer_time)?;
            p.val("https", &d.https)?;
            p.val("query_order", &d.query_order)?;
            p.close();
        }
    }
    o.bool("duplicate_upgrade_inferred", j.duplicate_upgrade_inferred);
    o.val("duplicate_request", &j.duplicate_request)?;
    o.val("cancel_rules_broken", j.cancel_rules_broken)?;
    o.uint("late_cancels", j.late_cancels);
    o.bool("fetches_ambiguous", j.fetches_ambiguous);
    o.val("hev3", j.hev3)?;
    o.close();
    Ok(())
}

#[derive(Serialize)]
struct HostJson<'a> {
    client: std::borrow::Cow<'a, str>,
    addresses: Vec<String>,
    tied_by: Vec<&'static str>,
    attempt_delay: Option<&'a racetrace_core::model::DelayProfile>,
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
    // A block at a time (decoded from the spill, past `--memory-limit`). `--connections`
    // may have left some out: the listed ones keep their ids.
    w.write_all(b"[")?;
    let mut m = Members::new();
    for block in a.connections.blocks() {
        if a.summary.connections_omitted == 0 {
            m.add(w, &block, &|c, buf| write_connection(buf, c, a))?;
        } else {
            let listed: Vec<&Connection> = block.iter().filter(|c| !c.omitted).collect();
            m.add(w, &listed, &|c, buf| write_connection(buf, c, a))?;
        }
    }
    m.finish(w)?;
    w.write_all(b"]")?;
    // The other lists of small items through serde, item by item, in the same parallel chunks.
    w.write_all(b",\"services\":")?;
    array(w, &a.services, serde_item)?;
    w.write_all(b",\"races\":")?;
    array(w, &a.races, |r, buf| write_race(buf, r))?;
    // Streamed: a backend lists all its connections and one host's sequence holds all of its
    // own, so one item alone can be megabytes, and a chunk of them in memory at once would
    // raise the peak (measured: bench/HISTORY.md).
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
    // The hosts of listed connections (all of them unless `--connections` left some out).
    let listed: Vec<&Host> = a.hosts.iter().filter(|h| !h.omitted).collect();
    array(w, &listed, |h, buf| {
        let client = HostJson {
            client: h.label(),
            addresses: h.addrs().iter().map(|x| x.to_string()).collect(),
            tied_by: h.ties().to_vec(),
            attempt_delay: h.delays(),
        };
        serde_item(&client, buf)
    })?;
    // Extras: what the listeners saw of their short-lived connections.
    w.write_all(b",\"listeners\":")?;
    array(w, &a.listeners, serde_item)?;
    w.write_all(b",\"floods\":")?;
    array(w, &a.floods, serde_item)?;
    w.write_all(b",\"scans\":")?;
    array(w, &a.scans, serde_item)?;
    w.write_all(b",\"health_checks\":")?;
    array(w, &a.health_checks, serde_item)?;
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
    o.uints("connections", s.connections())?;
    o.families("families", s.families())?;
    o.uint("family_switches", s.family_switches);
    o.uint("backend_switches", s.backend_switches);
    o.list("backends", &s.kept, |buf, k| {
        match k.backend {
            0 => buf.extend_from_slice(b"null"),
            n => {
                buf.extend_from_slice(b"\"B");
                buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                buf.push(b'"');
            }
        }
        Ok(())
    })?;
    o.list("switches", s.switches(), |buf, w| {
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
    o.val("strip", &s.strip())?;
    o.close();
    Ok(())
}

/// A JSON array of `items`, each written by `f` into a buffer, serialised in parallel chunks
/// and written in order. Rounds overlap: while one round's buffers are written out on this
/// thread, the next round is serialised on the rayon pool.
fn array<W, T, F>(w: &mut W, items: &[T], f: F) -> std::io::Result<()>
where
    W: Write,
    T: Sync,
    F: Fn(&T, &mut Vec<u8>) -> std::io::Result<()> + Sync,
{
    w.write_all(b"[")?;
    let mut m = Members::new();
    m.add(w, items, &f)?;
    m.finish(w)?;
    w.write_all(b"]")
}

/// The members of one JSON array, added a slice at a time (the connections come a block of
/// the spill at a time), serialised in parallel rounds of chunks, one buffer per chunk. The
/// last round of a slice is written while the next slice's first round is serialised: with
/// the spill's small blocks, writing each block's last round before going on took the
/// overlap away.
struct Members {
    /// Buffers serialised and not yet written.
    ready: Vec<Vec<u8>>,
    /// Buffers being serialised (two sets, reused round after round: fresh buffers would cost
    /// a page fault per 4 KiB of output).
    filling: Vec<Vec<u8>>,
    /// Members serialised so far (every member but the first takes a comma).
    count: usize,
}

impl Members {
    fn new() -> Members {
        let chunks_per_round = 2 * rayon::current_num_threads().max(1);
        Members {
            ready: vec![Vec::new(); chunks_per_round],
            filling: vec![Vec::new(); chunks_per_round],
            count: 0,
        }
    }

    /// Serialise `items` after the members before, writing what is ready as it goes.
    fn add<W, T, F>(&mut self, w: &mut W, items: &[T], f: &F) -> std::io::Result<()>
    where
        W: Write,
        T: Sync,
        F: Fn(&T, &mut Vec<u8>) -> std::io::Result<()> + Sync,
    {
        use rayon::prelude::*;
        let per_round = self.filling.len().max(1);
        // A slice shorter than a round of whole chunks (a block) is shared out all the same.
        let chunk = CHUNK.min(items.len().div_ceil(per_round)).max(1);
        for part in items.chunks(chunk * per_round) {
            let base = self.count;
            let (ready, filling) = (&mut self.ready, &mut self.filling);
            let render = |bufs: &mut [Vec<u8>]| -> std::io::Result<()> {
                bufs.iter_mut().for_each(Vec::clear);
                part.par_chunks(chunk)
                    .zip(bufs.par_iter_mut())
                    .enumerate()
                    .try_for_each(|(k, (members, slot))| {
                        // Filled through a local handle: the buffers' headers sit side by
                        // side, and a length written per member by two cores into one cache
                        // line would bounce it between them (false sharing; it made two
                        // threads slower than one).
                        let mut buf = std::mem::take(slot);
                        let at = base + k * chunk;
                        let filled = members.iter().enumerate().try_for_each(|(i, item)| {
                            if at + i > 0 {
                                buf.push(b',');
                            }
                            f(item, &mut buf)
                        });
                        *slot = buf;
                        filled
                    })
            };
            let mut rendered = Ok(());
            let mut written = Ok(());
            rayon::in_place_scope(|s| {
                s.spawn(|_| rendered = render(filling));
                written = ready.iter().try_for_each(|b| w.write_all(b));
            });
            written?;
            rendered?;
            std::mem::swap(ready, filling);
            self.count += part.len();
        }
        Ok(())
    }

    /// Write what is left.
    fn finish<W: Write>(self, w: &mut W) -> std::io::Result<()> {
        self.ready.iter().try_for_each(|b| w.write_all(b))
    }
}
