//! One race as a ladder (sequence) diagram, the way Wireshark's flow graph shows a connection:
//! the client's lifeline on one side, one lifeline per server address (IPv6 first, then IPv4)
//! on the other, the resolver's on the far side when the capture holds the race's DNS, and one
//! arrow per event (SYN, SYN-ACK, ACK, refusal, ClientHello, TLS done, HTTP request or upgrade,
//! 101, FIN and RST, the cancel marked) in time order, one row each, with its time in ms after
//! the race's first SYN in the left margin. Rows are evenly spaced, not to scale: a race's
//! events span microseconds to minutes, and every one must stay readable.
//!
//! The SVG is inline, styled by the page's classes (no script, nothing fetched); every text is
//! escaped. Request targets are shown without their query string, which may carry keys.

use std::fmt::Write as _;
use std::net::IpAddr;

use racetrace_core::domain::{ms_between, Nanos};
use racetrace_core::model::{Connection, Race};

use crate::human::{esc, rel_ms};

/// Most event rows drawn in one ladder (the rest are counted under it).
pub const MAX_ROWS: usize = 48;

const ROW: f64 = 22.0;
const HEAD: f64 = 46.0;
const WIDTH: f64 = 760.0;
const GUTTER: f64 = 78.0;
/// Arrow classes and their colours (the page's CSS colours the lines and labels alike).
const CLASSES: [(&str, &str); 4] = [
    ("win", "#2e7d32"),
    ("lose", "#ef6c00"),
    ("dns", "#1565c0"),
    ("cancel", "#c62828"),
];

/// Who sends or receives an arrow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lane {
    Dns,
    Client,
    Server(usize),
}

/// One arrow.
#[derive(Clone, Debug)]
struct Event {
    t: Nanos,
    from: Lane,
    to: Lane,
    label: String,
    /// CSS class: `win`, `lose` or `dns`.
    class: &'static str,
    /// The client's cancel of an also-ran.
    cancel: bool,
}

/// The request line as shown: method and path, without the query string.
fn request_label(c: &Connection) -> Option<String> {
    let q = c.request()?;
    let path = q.target.split(['?', '#']).next().unwrap_or("");
    let upgrade = if q.ws_upgrade {
        " Upgrade: websocket"
    } else {
        ""
    };
    let creds = match (q.authorization, q.cookie) {
        (true, true) => " (Authorization, Cookie)",
        (true, false) => " (Authorization)",
        (false, true) => " (Cookie)",
        (false, false) => "",
    };
    let mut shown: String = path.chars().take(40).collect();
    if shown.len() < path.len() {
        shown.push('…');
    }
    Some(format!("{} {shown}{upgrade}{creds}", q.method))
}

/// The ladder of race `r` whose attempts are `attempts` (in the race's order); `None` when no
/// attempt has a time to draw.
pub fn svg(r: &Race, attempts: &[&Connection]) -> Option<String> {
    // Server lanes: each distinct address, IPv6 first, in order of first SYN.
    let mut servers: Vec<IpAddr> = Vec::new();
    for v6 in [true, false] {
        for c in attempts {
            let ip = c.rec.server.ip;
            if ip.is_ipv6() == v6 && !servers.contains(&ip) {
                servers.push(ip);
            }
        }
    }
    let lane_of = |c: &Connection| {
        Lane::Server(
            servers
                .iter()
                .position(|&ip| ip == c.rec.server.ip)
                .unwrap_or(0),
        )
    };
    let mut events: Vec<Event> = Vec::new();
    if let Some(d) = &r.dns {
        let to_ns = |s: f64| (s * 1e9).round() as Nanos;
        // The HTTPS answer's ALPN, when it offered any (`HTTPS answer: h3,h2`).
        let alpn: Vec<&str> = d
            .https
            .iter()
            .flat_map(|r| r.alpn.iter().map(String::as_str))
            .collect();
        let https = if alpn.is_empty() {
            "HTTPS".to_string()
        } else {
            format!("HTTPS ({})", alpn.join(","))
        };
        for (q, a, kind) in [
            (d.https_query_time, d.https_answer_time, https.as_str()),
            (d.aaaa_query_time, d.aaaa_answer_time, "AAAA"),
            (d.a_query_time, d.a_answer_time, "A"),
        ] {
            if let Some(q) = q {
                events.push(Event {
                    t: to_ns(q),
                    from: Lane::Client,
                    to: Lane::Dns,
                    label: format!("{}? {}", kind.split(' ').next().unwrap_or(kind), d.name),
                    class: "dns",
                    cancel: false,
                });
            }
            if let Some(a) = a {
                events.push(Event {
                    t: to_ns(a),
                    from: Lane::Dns,
                    to: Lane::Client,
                    label: format!("{kind} answer"),
                    class: "dns",
                    cancel: false,
                });
            }
        }
    }
    for c in attempts {
        let lane = lane_of(c);
        let won = Some(c.id) == r.winner;
        let class = if won { "win" } else { "lose" };
        let rec = &c.rec;
        let mut add = |t: Option<Nanos>, up: bool, label: String, cancel: bool| {
            if let Some(t) = t {
                let (from, to) = if up {
                    (Lane::Client, lane)
                } else {
                    (lane, Lane::Client)
                };
                events.push(Event {
                    t,
                    from,
                    to,
                    label,
                    class,
                    cancel,
                });
            }
        };
        if let Some(q) = rec.quic() {
            // QUIC: the Initials (the ClientHello rides in them), the server's Initial, the
            // handshake done (the client's first 1-RTT packet), application data both ways.
            let sni = c.tls().and_then(|t| t.sni.as_deref()).unwrap_or("");
            let n = if rec.syn_count > 1 {
                format!(" (×{})", rec.syn_count)
            } else {
                String::new()
            };
            let what = if sni.is_empty() {
                format!("QUIC Initial #{}{n}", c.id)
            } else {
                format!("QUIC Initial #{}{n}, SNI {sni}", c.id)
            };
            add(rec.syn_time.get(), true, what, false);
            let retry = if q.retry { " (after a Retry)" } else { "" };
            add(
                rec.synack_time.get(),
                false,
                format!("server Initial{retry}"),
                false,
            );
            add(
                q.handshake.get(),
                true,
                "handshake done (1-RTT)".into(),
                false,
            );
            add(q.data.get(), false, "1-RTT data both ways".into(), false);
        } else {
            let syns = if rec.syn_count > 1 {
                format!("SYN #{} (×{})", c.id, rec.syn_count)
            } else {
                format!("SYN #{}", c.id)
            };
            add(rec.syn_time.get(), true, syns, false);
            add(
                rec.milestones.refused.get(),
                false,
                "RST (refused)".into(),
                false,
            );
            add(rec.synack_time.get(), false, "SYN-ACK".into(), false);
            add(rec.established_time.get(), true, "ACK".into(), false);
            add(
                rec.milestones.tls_hello.get(),
                true,
                "ClientHello".into(),
                false,
            );
            add(
                rec.milestones.tls.get(),
                true,
                "TLS done, app data".into(),
                false,
            );
        }
        add(
            rec.milestones.http.get(),
            true,
            request_label(c).unwrap_or_else(|| "HTTP request".into()),
            false,
        );
        add(
            rec.milestones.ws.get(),
            false,
            "101 Switching Protocols".into(),
            false,
        );
        // The client's first FIN or RST (QUIC: a CONNECTION_CLOSE in the clear): an
        // also-ran's is the cancel.
        let (fin, rst) = (rec.fin[0].get(), rec.rst[0].get());
        let fin_word = if rec.quic().is_some() {
            "CONNECTION_CLOSE"
        } else {
            "FIN"
        };
        let close = match (fin, rst) {
            (Some(f), Some(x)) if x < f => Some((x, "RST")),
            (Some(f), _) => Some((f, fin_word)),
            (None, Some(x)) => Some((x, "RST")),
            (None, None) => None,
        };
        // A late SYN-ACK's reset is the client's kernel answering it, not a decision: the
        // client gave up earlier, unseen.
        if let Some((t, what)) = close {
            let (label, cancel) = if won {
                (what.to_string(), false)
            } else if r.cancel_seen(c.id) {
                (format!("{what} (cancel)"), true)
            } else {
                (format!("{what} (to the late SYN-ACK)"), false)
            };
            add(Some(t), true, label, cancel);
        }
        let later = close.map(|(t, _)| t);
        if let Some(x) = rst.filter(|&x| Some(x) != later) {
            add(Some(x), true, "RST".into(), false);
        }
        if let Some(f) = fin.filter(|&f| Some(f) != later) {
            add(Some(f), true, fin_word.into(), false);
        }
        add(rec.fin[1].get(), false, fin_word.into(), false);
        if rec.rst[1] != rec.milestones.refused {
            add(rec.rst[1].get(), false, "RST".into(), false);
        }
    }
    if events.iter().all(|e| e.class == "dns") {
        return None;
    }
    events.sort_by_key(|e| e.t);
    let hidden = events.len().saturating_sub(MAX_ROWS);
    events.truncate(MAX_ROWS);
    let has_dns = events.iter().any(|e| e.class == "dns");
    let x_dns = GUTTER + 40.0;
    let x_client = if has_dns {
        GUTTER + 170.0
    } else {
        GUTTER + 60.0
    };
    let right = WIDTH - 70.0;
    let span = right - (x_client + 230.0);
    let x_server = |k: usize| {
        if servers.len() <= 1 {
            right
        } else {
            x_client + 230.0 + span * k as f64 / (servers.len() - 1) as f64
        }
    };
    let x = |l: Lane| match l {
        Lane::Dns => x_dns,
        Lane::Client => x_client,
        Lane::Server(k) => x_server(k),
    };
    let rows = events.len() as f64 + if hidden > 0 { 1.0 } else { 0.0 };
    let height = HEAD + rows * ROW + 14.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="ladder" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="Ladder diagram of race {}">"#,
        r.id
    );
    // One arrowhead per colour (ids carry the race: one page holds many ladders).
    s.push_str("<defs>");
    for (class, fill) in CLASSES {
        let _ = write!(
            s,
            r#"<marker id="ah-{}-{class}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="{fill}"/></marker>"#,
            r.id
        );
    }
    s.push_str("</defs>");
    // Lifelines and their heads.
    let mut lane = |xpos: f64, top: &str, sub: &str| {
        let _ = write!(
            s,
            r#"<line class="life" x1="{xpos}" y1="{}" x2="{xpos}" y2="{height}"/><text class="lane" x="{xpos}" y="16" text-anchor="middle">{}</text><text class="lane sub" x="{xpos}" y="31" text-anchor="middle">{}</text>"#,
            HEAD - 8.0,
            esc(top),
            esc(sub)
        );
    };
    if has_dns {
        lane(x_dns, "DNS", "resolver");
    }
    lane(x_client, "client", &r.client);
    for (k, ip) in servers.iter().enumerate() {
        let fam = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
        lane(x_server(k), &format!("server ({fam})"), &ip.to_string());
    }
    let start = r.start_time;
    for (i, e) in events.iter().enumerate() {
        let y = HEAD + (i as f64 + 0.7) * ROW;
        let (x1, x2) = (x(e.from), x(e.to));
        let mid = (x1 + x2) / 2.0;
        let cancel = if e.cancel { " cancel" } else { "" };
        let head = if e.cancel { "cancel" } else { e.class };
        let _ = write!(
            s,
            r#"<g class="ev {}{cancel}"><title>{} · {}</title><text class="t" x="{}" y="{}" text-anchor="end">{}</text><line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" marker-end="url(#ah-{}-{head})"/><text class="l" x="{mid}" y="{}" text-anchor="middle">{}</text></g>"#,
            e.class,
            esc(&e.label),
            esc(&rel_ms(ms_between(start, e.t))),
            GUTTER - 6.0,
            y + 4.0,
            esc(&rel_ms(ms_between(start, e.t))),
            r.id,
            y - 4.0,
            esc(&e.label)
        );
    }
    if hidden > 0 {
        let y = HEAD + (events.len() as f64 + 0.7) * ROW;
        let _ = write!(
            s,
            r#"<text class="more" x="{x_client}" y="{y}">… {hidden} later events not drawn</text>"#
        );
    }
    s.push_str("</svg>");
    Some(s)
}
