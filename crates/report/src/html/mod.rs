//! The single-file HTML report and the batch index, from minijinja templates (autoescaped).
//!
//! Everything is inline: CSS, the charts as SVG, and a small sorting script that the page's
//! Content-Security-Policy admits by its SHA-256 hash. Nothing is fetched from anywhere, so
//! the page opens offline and from a CI artifact store.

pub use base64_engine::encode as base64;
use minijinja::{context, Environment};
use polars::prelude::{AnyValue, DataFrame};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::charts;
use crate::tables;
use racetrace_core::domain::{iso8601, ms_between, Stage};
use racetrace_core::model::{Analysis, Connection, Fate, Race};

mod ladder;

/// The page's one script: sort any `table.sortable` by clicking a header (numbers, with
/// their units, numerically), filter a table's rows with its search box, and keep both in the
/// page's address (`#sort=races,3,desc&q=connections,ipv4`), so that a sorted, filtered view
/// can be linked to and is restored on load.
const SCRIPT: &str = r##"(function(){"use strict";
function rows(t){return Array.prototype.slice.call(t.tBodies[0].rows)}
function val(r,i){var c=r.cells[i];if(!c)return"";var v=c.getAttribute("data-v");return v===null?c.textContent.trim():v}
function num(p){var n=Number(p.replace(/\s*(ms|s|%|MiB|B)$/,""));return p===""||isNaN(n)?null:n}
function sortBy(t,i,asc){var hs=t.tHead.rows[0].cells;Array.prototype.forEach.call(hs,function(h){h.classList.remove("asc","desc")});if(!hs[i])return;hs[i].classList.add(asc?"asc":"desc");var b=t.tBodies[0];rows(t).sort(function(x,y){var p=val(x,i),q=val(y,i),m=num(p),n=num(q),c=(m!==null&&n!==null)?m-n:p.localeCompare(q);return asc?c:-c}).forEach(function(r){b.appendChild(r)})}
function filter(t,q){q=q.toLowerCase();var n=0,all=rows(t);all.forEach(function(r){var show=!q||r.textContent.toLowerCase().indexOf(q)>=0;r.hidden=!show;if(show)n++});var box=t.closest(".tbl"),c=box&&box.querySelector(".count");if(c)c.textContent=q?n+" of "+all.length+" rows match":all.length+" rows"}
var state=new URLSearchParams(location.hash.slice(1));
function save(){var h=state.toString();history.replaceState(null,"",h?"#"+h:location.pathname)}
function put(key,name,v){var keep=state.getAll(key).filter(function(x){return x.split(",")[0]!==name});state.delete(key);keep.forEach(function(x){state.append(key,x)});if(v!==null)state.append(key,name+","+v);save()}
document.querySelectorAll("table.sortable").forEach(function(t){var name=t.getAttribute("data-table")||"";
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){th.addEventListener("click",function(){var asc=!th.classList.contains("asc");sortBy(t,i,asc);put("sort",name,i+","+(asc?"asc":"desc"))})});
var box=t.closest(".tbl"),inp=box&&box.querySelector("input.filter");if(inp){inp.addEventListener("input",function(){filter(t,inp.value);put("q",name,inp.value?inp.value:null)})}
state.getAll("sort").forEach(function(x){var p=x.split(",");if(p[0]===name)sortBy(t,Number(p[1]),p[2]!=="desc")});
state.getAll("q").forEach(function(x){var k=x.indexOf(",");if(x.slice(0,k)===name&&inp){inp.value=x.slice(k+1);filter(t,inp.value)}})})})();"##;

/// Most rows of each table in the page (the CSV and Parquet tables have all).
pub const MAX_ROWS: usize = 2000;

/// The Content-Security-Policy of every page: nothing from anywhere, inline styles (the
/// charts' SVG uses style attributes), images only as data URLs, and exactly one script.
pub fn csp() -> String {
    let hash = base64(&Sha256::digest(SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'"
    )
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    // Templates are compiled into the binary; a broken one fails the tests, not a user.
    let _ = env.add_template("report.html", include_str!("../templates/report.html"));
    let _ = env.add_template("index.html", include_str!("../templates/index.html"));
    env
}

#[derive(Serialize)]
struct Card {
    value: String,
    label: &'static str,
    class: &'static str,
}

#[derive(Serialize)]
struct Finding {
    text: String,
    bad: bool,
    /// Where its evidence is on the page (a race card).
    href: Option<String>,
}

#[derive(Serialize)]
struct Table {
    title: &'static str,
    /// Its name in the page's address and element ids (`races`, `stale-reuses`).
    slug: String,
    /// Its CSV and Parquet files' stem.
    file: &'static str,
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
    /// Rows in the whole table (the page shows at most [`MAX_ROWS`]).
    total: usize,
}

#[derive(Serialize)]
struct Chart {
    stem: &'static str,
    title: &'static str,
    svg: String,
}

/// One table cell: its text, the value it sorts by when that differs, and a tooltip.
#[derive(Serialize)]
struct Cell {
    text: String,
    v: Option<String>,
    title: Option<String>,
}

fn plain(v: AnyValue<'_>) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Float64(f) => format!("{f}"),
        other => other.to_string(),
    }
}

/// A cell of column `name` for a person: capture times (`*_time`, epoch seconds) as seconds
/// after the capture's first packet `start` (the ISO 8601 time in the tooltip, the epoch for
/// sorting), durations (`*_ms`) with their unit.
fn cell(name: &str, v: AnyValue<'_>, start: Option<f64>) -> Cell {
    let text = |text: String| Cell {
        text,
        v: None,
        title: None,
    };
    match (v, start) {
        (AnyValue::Float64(t), Some(s)) if name.ends_with("_time") => Cell {
            text: format!("+{:.6} s", t - s),
            v: Some(format!("{t}")),
            title: Some(iso8601((t * 1e9).round() as i64)),
        },
        (AnyValue::Float64(ms), _) if name.ends_with("_ms") => text(format!("{ms:.1} ms")),
        (other, _) => text(plain(other)),
    }
}

/// A column's header: capture times say what they count from.
fn heading(name: &str) -> String {
    if name.ends_with("_time") {
        format!("{name} (s after start)")
    } else {
        name.to_string()
    }
}

/// A page table of `df`'s first [`MAX_ROWS`] rows of `total`; `file` is the table's CSV and
/// Parquet name; `start` the capture's first packet (epoch seconds).
fn table(
    title: &'static str,
    file: &'static str,
    df: &DataFrame,
    total: usize,
    start: Option<f64>,
) -> Table {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let rows = (0..df.height().min(MAX_ROWS))
        .map(|i| {
            df.columns()
                .iter()
                .zip(&names)
                .map(|(c, name)| match c.get(i) {
                    Ok(v) => cell(name, v, start),
                    Err(_) => cell(name, AnyValue::Null, start),
                })
                .collect()
        })
        .collect();
    Table {
        title,
        slug: title.to_lowercase().replace(' ', "-"),
        file,
        header: names.iter().map(|n| heading(n)).collect(),
        rows,
        total,
    }
}

/// Plain-words findings, the worst first.
fn findings(a: &Analysis, cancel_by: Stage) -> Vec<Finding> {
    let mut out = harms(a, cancel_by);
    out.extend(facts(a));
    if out.is_empty() {
        out.push(Finding {
            text: "No connection races, backend switches or stale reuses in this capture.".into(),
            bad: false,
            href: None,
        });
    }
    out
}

/// What went wrong: duplicate upgrades and requests, late cancels, stale reuses; each one
/// sentence with the rule it refers to, linked to its first piece of evidence.
fn harms(a: &Analysis, cancel_by: Stage) -> Vec<Finding> {
    let s = &a.summary;
    let mut out = Vec::new();
    let mut say = |text: String, href: Option<String>| {
        out.push(Finding {
            text,
            bad: true,
            href,
        });
    };
    let first = |f: &dyn Fn(&Race) -> bool| {
        a.races
            .iter()
            .find(|r| f(r))
            .map(|r| format!("#race-{}", r.id))
    };
    if s.duplicate_upgrades > 0 {
        let inferred = s.duplicate_upgrades_inferred;
        say(
            format!(
                "{} of {} races sent a WebSocket upgrade on both paths, so the server opened two sessions for one client (RFC 6455); RFC 8305 §6 says the loser should have been cancelled once the winner's TCP handshake completed{}.",
                s.duplicate_upgrades,
                s.races,
                if inferred > 0 {
                    format!(" ({inferred} inferred from TLS application data)")
                } else {
                    String::new()
                }
            ),
            first(&|r| r.duplicate_upgrade),
        );
    }
    let creds = s.duplicate_requests_with_credentials;
    if creds > 0 {
        say(
            format!("{creds} races sent a duplicate request carrying Authorization or a Cookie on the losing path: credentials went out twice and the server did the work twice (RFC 9110 §9.2.2)."),
            first(&|r| r.duplicate_request.as_deref().is_some_and(|d| d.authorization || d.cookie)),
        );
    }
    let late = s.late_cancels;
    if late > 0 {
        say(
            format!(
                "{late} also-rans were cancelled after the winner connected and beyond the {} stage (RFC 8305 §6; the Happy Eyeballs v3 draft allows waiting for TLS at most).",
                cancel_by.as_str()
            ),
            first(&|r| r.late_cancels() > 0),
        );
    }
    if s.stale_reuses > 0 {
        let retried = s.stale_reuses_retried;
        let mut causes: Vec<(&str, usize)> = Vec::new();
        for e in &a.stale_reuses {
            match causes.iter_mut().find(|c| c.0 == e.cause.as_str()) {
                Some(c) => c.1 += 1,
                None => causes.push((e.cause.as_str(), 1)),
            }
        }
        let causes: Vec<String> = causes
            .iter()
            .map(|(c, n)| format!("{} {n}", c.replace('_', " ")))
            .collect();
        say(
            format!(
                "{} requests were sent on keep-alive connections the server had already given up ({}): each failed, and {} were retried on a new connection (RFC 9112 §9.3.1: a client must be ready to retry when the server closes an idle connection).",
                s.stale_reuses,
                causes.join(", "),
                retried
            ),
            Some("#stale-reuses".into()),
        );
    }
    out
}

/// What the capture shows of its services, races, clients and backends.
fn facts(a: &Analysis) -> Vec<Finding> {
    let s = &a.summary;
    let mut out = Vec::new();
    let mut say = |bad: bool, text: String| {
        out.push(Finding {
            text,
            bad,
            href: None,
        })
    };
    for f in &a.floods {
        say(
            true,
            format!(
                "SYN flood on {} (port {}): {} half-open attempts from {} sources over {:.1} s, up to {} a second; {} answered, {} reset.",
                f.service,
                f.server_port,
                f.attempts,
                f.sources,
                ms_between(f.start_time, f.end_time) / 1000.0,
                f.peak_per_s,
                f.answered,
                f.reset
            ),
        );
    }
    for sc in &a.scans {
        let target = match (&sc.host, sc.port) {
            (Some(h), _) => format!("{} ports of {h}", sc.targets),
            (None, Some(p)) => format!("port {p} of {} hosts", sc.targets),
            _ => format!("{} targets", sc.targets),
        };
        say(
            true,
            format!(
                "{} scanned {target} ({} connections, {} open).",
                sc.source, sc.attempts, sc.open
            ),
        );
    }
    for h in &a.health_checks {
        say(
            false,
            format!(
                "{} checks {} (port {}) every {:.0} ms: {} connect-and-close connections.",
                h.source, h.service, h.server_port, h.interval_ms, h.checks
            ),
        );
    }
    for l in a.listeners.iter().filter(|l| l.unexplained > 0) {
        say(
            false,
            format!(
                "{} (port {}) saw {} short-lived connections: {} also-rans, {} flood, {} scan, {} health checks, {} unexplained.",
                l.service, l.server_port, l.short_lived, l.also_ran, l.flood, l.scan, l.health_check, l.unexplained
            ),
        );
    }
    for svc in &a.services {
        if let Some(t) = svc.server_idle_timeout_ms {
            say(
                false,
                format!(
                    "{} (port {}) closes idle connections after {:.0} ms (median of {}).",
                    svc.name, svc.server_port, t, svc.server_idle_closes
                ),
            );
        }
    }
    if s.races > 0 {
        let (v6_first, v4_won) = (s.races_ipv6_first, s.races_ipv4_won);
        say(
            false,
            format!(
                "{} races with {} also-rans: IPv6 tried first in {}, IPv4 won {}; median first attempt delay {}.",
                s.races,
                s.also_rans,
                v6_first,
                v4_won,
                s.median_attempt_delay_ms
                    .map(|m| format!("{m:.1} ms"))
                    .unwrap_or_else(|| "n/a".into())
            ),
        );
    }
    for h in &a.hosts {
        if let Some(d) = &h.delays {
            let near = d
                .near_default_ms
                .map(|n| format!(" near {n} ms"))
                .unwrap_or_default();
            say(
                d.median_ms < 100.0 || d.max_ms > 2000.0,
                format!(
                    "Client {}: attempt delay {}{} ({:.1}–{:.1} ms over {} races).",
                    h.label(),
                    d.class.replace('_', " "),
                    near,
                    d.min_ms,
                    d.max_ms,
                    d.races
                ),
            );
        }
    }
    if !a.backends.is_empty() || s.family_switches > 0 {
        let unknown = s.timestamped_without_backend;
        say(
            s.backend_switches > 0,
            format!(
                "{} backends told apart by TCP timestamp clocks; {} family switches and {} backend switches in client sequences; {} connections with timestamps have no identifiable backend.",
                s.backends, s.family_switches, s.backend_switches, unknown
            ),
        );
    }
    out
}

/// The report page for one capture; charts are inlined as SVG.
pub fn report(a: &Analysis, cancel_by: Stage) -> Result<String, String> {
    let charts = charts::KINDS
        .iter()
        .map(|&k| {
            Ok(Chart {
                stem: k.stem(),
                title: k.title(),
                svg: charts::svg(k, a)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let tables = html_tables(a).map_err(|e| e.to_string())?;
    let (races, not_carded) = race_cards(a, cancel_by);
    let c = &a.capture;
    let ctx = context! {
        csp => csp(),
        script => SCRIPT,
        version => env!("CARGO_PKG_VERSION"),
        capture => context! {
            file => c.file.clone(),
            format => format!("{:?}", c.format).to_lowercase(),
            link_types => c.link_types.iter().map(|l| l.name()).collect::<Vec<_>>().join(", "),
            packets => c.packets,
            first => c.first_time.map(iso8601).unwrap_or_default(),
            last => c.last_time.map(iso8601).unwrap_or_default(),
            truncated => c.truncated,
            vantage => format!("{:?}", a.vantage).to_lowercase(),
        },
        cards => cards(&a.summary),
        findings => findings(a, cancel_by),
        races => races,
        races_not_carded => not_carded,
        max_cards => MAX_CARDS,
        charts => charts,
        tables => tables,
        warnings => a.warnings.iter().map(|w| w.message.clone()).collect::<Vec<_>>(),
    };
    env()
        .get_template("report.html")
        .and_then(|t| t.render(ctx))
        .map_err(|e| e.to_string())
}

/// Most race cards on the page (the most telling first); every race is in the races table
/// and `races.csv`.
pub const MAX_CARDS: usize = 200;
/// Cards open when the page loads.
const OPEN_CARDS: usize = 3;

#[derive(Serialize)]
struct RaceCard {
    id: usize,
    open: bool,
    title: String,
    when: String,
    verdicts: Vec<Finding>,
    ladder: Option<String>,
    filter: String,
}

/// How telling a race is: harm first (duplicate upgrades, duplicate requests with
/// credentials, late cancels, broken cancel rules), then RFC 8305 findings.
fn telling(r: &Race) -> u32 {
    let creds = r
        .duplicate_request
        .as_deref()
        .is_some_and(|d| d.authorization || d.cookie);
    u32::from(r.duplicate_upgrade) * 16
        + u32::from(creds) * 8
        + u32::from(r.late_cancels() > 0) * 4
        + u32::from(!r.cancel_rules_broken.is_empty()) * 2
        + u32::from(!r.findings.is_empty())
}

/// The race cards: up to [`MAX_CARDS`], the most telling first, then in time order.
fn race_cards(a: &Analysis, cancel_by: Stage) -> (Vec<RaceCard>, usize) {
    let mut order: Vec<&Race> = a.races.iter().collect();
    order.sort_by_key(|r| (std::cmp::Reverse(telling(r)), r.start_time, r.id));
    order.truncate(MAX_CARDS);
    let shown = order.len();
    let any_telling = order.first().is_some_and(|r| telling(r) > 0);
    let cards = a.connections.map_batched(
        &order,
        |r, ids| {
            let mut mine: Vec<usize> = r.attempts.to_vec();
            mine.sort_unstable();
            ids.extend(mine);
        },
        |r, held| {
            let attempts: Vec<&Connection> =
                r.attempts.iter().filter_map(|&i| held.get(i)).collect();
            race_card(r, &attempts, cancel_by)
        },
    );
    let mut cards = cards;
    for (k, c) in cards.iter_mut().enumerate() {
        let r = order.get(k);
        c.open = k < OPEN_CARDS && (r.is_some_and(|r| telling(r) > 0) || (!any_telling && k == 0));
    }
    (cards, a.races.len().saturating_sub(shown))
}

fn fate_words(f: Fate) -> &'static str {
    match f {
        Fate::NeverAnswered => "its SYNs were never answered",
        Fate::Refused => "the server refused it (RST)",
        Fate::LateSynackReset => "its SYN-ACK came after the client had given up, and was reset",
        Fate::AbortedBeforeConnect => "the client gave it up before any SYN-ACK",
        Fate::UnusedParallel => "it connected, carried nothing, and the client closed it",
        Fate::ClosedAfterConnect => "it connected, carried data, and the client closed it",
        Fate::LeftOpen => "it connected and the client never closed it in the capture",
    }
}

fn describe_attempt(c: &Connection) -> String {
    format!(
        "#{} to {} ({})",
        c.id,
        c.rec.server.ip,
        c.rec.family().as_str().replace("ipv", "IPv")
    )
}

fn race_card(r: &Race, attempts: &[&Connection], cancel_by: Stage) -> RaceCard {
    let mut v: Vec<Finding> = Vec::new();
    let mut say = |bad: bool, text: String| {
        v.push(Finding {
            text,
            bad,
            href: None,
        })
    };
    let by_id = |id: usize| attempts.iter().find(|c| c.id == id).copied();
    let winner = r.winner.and_then(by_id);
    match winner {
        Some(w) => {
            let at = w
                .rec
                .established_time
                .get()
                .map(|t| {
                    format!(
                        ", connected {} after the first SYN",
                        ladder::rel_ms(ms_between(r.start_time, t))
                    )
                })
                .unwrap_or_default();
            say(
                false,
                format!("Winner: attempt {}{at}.", describe_attempt(w)),
            );
        }
        None => say(
            false,
            "No attempt was kept: the client closed every one.".into(),
        ),
    }
    for (k, d) in r.attempt_delays_ms.iter().enumerate() {
        let bad = *d < 100.0 || *d > 2000.0;
        say(
            bad,
            format!(
                "Connection Attempt Delay {}: {d:.1} ms (RFC 8305 §5: 250 ms recommended, at least 100 ms, at most 2 s).",
                k + 1
            ),
        );
    }
    for c in &r.also_ran_cancel {
        let who = by_id(c.id).map_or_else(|| format!("#{}", c.id), describe_attempt);
        let after = c
            .after_winner_ms
            .map(|ms| format!(", {} after the winner connected", ladder::rel_ms(ms)))
            .unwrap_or_default();
        let late = if c.late {
            format!(" — a late cancel (beyond the {} stage)", cancel_by.as_str())
        } else {
            String::new()
        };
        say(
            c.late,
            format!(
                "Also-ran {who}: {}; given up at the {} stage{after}{late}.",
                fate_words(c.fate),
                c.stage.as_str()
            ),
        );
    }
    for rule in &r.cancel_rules_broken {
        let text = match *rule {
            "rfc8305_s6" => "Broke RFC 8305 §6: an also-ran was kept after the winner's TCP handshake completed, when it should have been cancelled.",
            "happy_eyeballs_v3" => "Kept beyond the TLS handshake too, which the Happy Eyeballs v3 draft does not allow either.",
            "application_data" => "The also-ran sent application data: the server did work for a connection the client then dropped.",
            other => other,
        };
        say(true, text.to_string());
    }
    let creds = |a: bool, c: bool| match (a, c) {
        (true, true) => "; the duplicates carried Authorization and a Cookie",
        (true, false) => "; the duplicates carried Authorization",
        (false, true) => "; the duplicates carried a Cookie",
        (false, false) => "",
    };
    let (auth, cookie) = r
        .duplicate_request
        .as_deref()
        .map_or((false, false), |d| (d.authorization, d.cookie));
    if r.duplicate_upgrade {
        let how = if r.duplicate_upgrade_inferred {
            " (inferred: both paths finished TLS and sent application data)"
        } else {
            ""
        };
        say(
            true,
            format!(
                "The server opened two WebSocket sessions: both paths sent the upgrade (RFC 6455){how}{}.",
                creds(auth, cookie)
            ),
        );
    } else if r.duplicate_request.is_some() {
        say(
            true,
            format!(
                "Two attempts sent an HTTP request: the server handled it twice (RFC 9110 §9.2.2: only idempotent requests may be repeated){}.",
                creds(auth, cookie)
            ),
        );
    }
    if !r.findings.is_empty() {
        say(
            true,
            format!(
                "RFC 8305 findings: {}.",
                r.findings.join(", ").replace('_', " ")
            ),
        );
    }
    if let Some(d) = &r.dns {
        if let Some(ms) = d.answer_to_first_syn_ms {
            say(
                false,
                format!(
                    "DNS: first SYN {ms:.1} ms after the answer for {} (RFC 8305 §3: a 50 ms Resolution Delay for the AAAA answer).",
                    d.name
                ),
            );
        }
    }
    if r.fetches_ambiguous {
        say(
            false,
            "Two fetches may be merged here: a repeat to an address already tried that no DNS answer in the capture explains.".into(),
        );
    }
    let filter = attempts
        .iter()
        .map(|c| format!("({})", c.rec.wireshark_filter()))
        .collect::<Vec<_>>()
        .join(" || ");
    let families: Vec<&str> = r.families.iter().map(|f| f.as_str()).collect();
    RaceCard {
        id: r.id,
        open: false,
        title: format!(
            "Race {} · {} · {} · {} attempts ({})",
            r.id,
            r.service,
            r.client,
            r.attempts.len(),
            families.join(", ").replace("ipv", "IPv")
        ),
        when: iso8601(r.start_time),
        verdicts: v,
        ladder: ladder::svg(r, attempts),
        filter,
    }
}

/// The headline cards.
fn cards(s: &racetrace_core::model::Summary) -> Vec<Card> {
    let card = |value: String, label, bad: bool| Card {
        value,
        label,
        class: if bad { "bad" } else { "" },
    };
    vec![
        card(s.connections.to_string(), "connections", false),
        card(s.races.to_string(), "races", false),
        card(s.also_rans.to_string(), "also-rans", false),
        card(
            s.median_attempt_delay_ms
                .map(|m| format!("{m:.1} ms"))
                .unwrap_or_else(|| "–".into()),
            "median attempt delay",
            false,
        ),
        card(
            s.duplicate_upgrades.to_string(),
            "duplicate upgrades",
            s.duplicate_upgrades > 0,
        ),
        card(s.backends.to_string(), "backends", false),
        card(s.family_switches.to_string(), "family switches", false),
        card(
            s.backend_switches.to_string(),
            "backend switches",
            s.backend_switches > 0,
        ),
        card(
            s.stale_reuses.to_string(),
            "stale reuses",
            s.stale_reuses > 0,
        ),
    ]
}

/// The page's tables, each with its main columns.
fn html_tables(a: &Analysis) -> polars::prelude::PolarsResult<Vec<Table>> {
    let start = a
        .capture
        .first_time
        .map(racetrace_core::domain::epoch_seconds);
    [
        ("Races", "races", RACE_COLUMNS),
        ("Stale reuses", "stale_reuses", STALE_COLUMNS),
        ("Backends", "backends", BACKEND_COLUMNS),
        ("Sequences", "sequences", SEQUENCE_COLUMNS),
        ("Per-service summary", "services_summary", SERVICE_COLUMNS),
        ("Connections", "connections", CONNECTION_COLUMNS),
    ]
    .into_iter()
    .map(|(title, file, cols)| {
        let (df, total) = tables::head(a, file, MAX_ROWS)?;
        let df = df.select(cols.iter().copied())?;
        Ok(table(title, file, &df, total, start))
    })
    .collect()
}

// The HTML shows each table's main columns; the CSV and Parquet files hold them all.
const CONNECTION_COLUMNS: &[&str] = &[
    "id",
    "client",
    "server_ip",
    "server_port",
    "family",
    "syn_time",
    "stage",
    "end_reason",
    "role",
    "race",
    "service",
    "backend",
    "tls_sni",
    "http.method",
    "http.target",
    "http.status",
    "bytes_client",
    "bytes_server",
];
const RACE_COLUMNS: &[&str] = &[
    "id",
    "service",
    "client",
    "start_time",
    "attempts",
    "families",
    "winner",
    "winner_family",
    "also_rans",
    "attempt_delays_ms",
    "also_ran_cancel.stage",
    "also_ran_cancel.fate",
    "also_ran_cancel.after_winner_ms",
    "late_cancels",
    "duplicate_upgrade",
    "cancel_rules_broken",
    "rfc8305",
];
const STALE_COLUMNS: &[&str] = &[
    "connection",
    "client",
    "service",
    "request_time",
    "request",
    "idle_ms",
    "peer_closed",
    "failure",
    "cause",
    "fin_to_request_ms",
    "time_to_failure_ms",
    "retransmissions",
    "retry",
    "retry_delay_ms",
    "retry_same_request",
];
const BACKEND_COLUMNS: &[&str] = &[
    "id",
    "services",
    "server_ips",
    "clock_hz",
    "connections",
    "confidence",
    "fitted_hz",
    "skew_ppm",
    "offset",
    "rate_inferred",
];
const SEQUENCE_COLUMNS: &[&str] = &[
    "client",
    "service",
    "connections",
    "families",
    "backends",
    "family_switches",
    "backend_switches",
    "family_and_backend_switches",
    "strip",
];
const SERVICE_COLUMNS: &[&str] = &[
    "name",
    "server_port",
    "connections",
    "races",
    "attempts",
    "also_rans",
    "also_ran_rate",
    "median_attempt_delay_ms",
    "p95_attempt_delay_ms",
    "winner_ipv6_share",
    "duplicate_upgrades",
    "late_cancels",
    "family_switches",
    "backend_switches",
    "stale_reuses",
];

/// One row of the batch index.
#[derive(Clone, Debug, Serialize)]
pub struct IndexRow {
    /// Capture name (relative path).
    pub name: String,
    /// Link to its report.
    pub link: String,
    /// Counts.
    pub connections: usize,
    /// Races.
    pub races: usize,
    /// Also-rans.
    pub also_rans: usize,
    /// Duplicate upgrades.
    pub duplicate_upgrades: usize,
    /// Backends.
    pub backends: usize,
    /// Family switches.
    pub family_switches: usize,
    /// Stale reuses.
    pub stale_reuses: usize,
    /// Median attempt delay, formatted.
    pub median: String,
}

/// The batch index page: a fleet view, one row per capture with its key counts as inline
/// bars (against the column's largest), totals, sorting, a filter box and links to each report.
pub fn index(rows: &[&IndexRow], failed: &[String]) -> Result<String, String> {
    let sum = |f: fn(&IndexRow) -> usize| rows.iter().map(|r| f(r)).sum::<usize>();
    // Each column's largest value: the rows' inline bars are drawn against it.
    let most = |f: fn(&IndexRow) -> usize| rows.iter().map(|r| f(r)).max().unwrap_or(0);
    let ctx = context! {
        csp => csp(),
        script => SCRIPT,
        count => rows.len(),
        rows => rows,
        failed => failed,
        max => context! {
            connections => most(|r| r.connections),
            races => most(|r| r.races),
            also_rans => most(|r| r.also_rans),
            duplicate_upgrades => most(|r| r.duplicate_upgrades),
            backends => most(|r| r.backends),
            family_switches => most(|r| r.family_switches),
            stale_reuses => most(|r| r.stale_reuses),
        },
        totals => context! {
            connections => sum(|r| r.connections),
            races => sum(|r| r.races),
            also_rans => sum(|r| r.also_rans),
            duplicate_upgrades => sum(|r| r.duplicate_upgrades),
            backends => sum(|r| r.backends),
            family_switches => sum(|r| r.family_switches),
            stale_reuses => sum(|r| r.stale_reuses),
        },
    };
    env()
        .get_template("index.html")
        .and_then(|t| t.render(ctx))
        .map_err(|e| e.to_string())
}

/// Standard base64 (RFC 4648), for the CSP hash.
mod base64_engine {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Encode bytes.
    pub fn encode(b: &[u8]) -> String {
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &x)| acc | u32::from(x) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        /// RFC 4648 §10 test vectors.
        #[test]
        fn rfc4648_vectors() {
            for (i, o) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(super::encode(i.as_bytes()), o);
            }
        }
    }
}
