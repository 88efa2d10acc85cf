//! One row type per output table, defined once with serde: the JSON report's objects (the
//! contract's shape, `spec/REPORT.md`) and, flattened by `flat`, the CSV and Parquet
//! tables and the terminal's CSV. Backends, sequences, stale reuses and services are the
//! model's own types ([`Backend`](racetrace_core::model::Backend),
//! [`Sequence`](racetrace_core::model::Sequence), …); connections and races have a row here
//! because their objects gather facts from several places.
//!
//! Optional fields go through [`opt`]/[`opt_ref`] and times through [`ser_opt_time`], so a
//! table's schema comes from its [`Probe`] row (see [`racetrace_core::domain::ser`]).
//!
//! The JSON writer spells connection and race objects member by member for speed
//! (`json`); a test holds its bytes equal to these rows' serde output on every capture
//! of the repository.

use serde::Serialize;

use racetrace_core::app::quic::{hex, QuicStage};
use racetrace_core::app::{AppFacts, Protocol};
use racetrace_core::domain::ser::{opt, opt_ref};
use racetrace_core::domain::{ms_between, ser_opt_time, ser_time, Family, Nanos, Stage};
use racetrace_core::model::{
    Analysis, Cancel, ConnRecord, Connection, DuplicateRequest, NameSource, Race, RaceDns, Role,
};
use racetrace_core::track::conn::WiresharkFilter;

/// A row type with a probe: a value whose serialisation (while probing) shows every column.
pub trait Probe {
    /// The row the table's schema is read from.
    fn probe() -> Self;
}

/// A value serialised as a JSON string through its `Display` (no intermediate `String`).
#[derive(Clone, Copy, Debug)]
pub struct Text<T>(pub T);

impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// The contract's `http` object: the first request (secrets as presence only) and the status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpRow<'a> {
    /// Method.
    pub method: &'a str,
    /// Request target.
    pub target: &'a str,
    /// Host header.
    #[serde(serialize_with = "opt")]
    pub host: Option<&'a str>,
    /// A WebSocket upgrade.
    pub ws_upgrade: bool,
    /// Authorization was sent (never its value).
    pub authorization: bool,
    /// Cookie was sent (never its value).
    pub cookie: bool,
    /// The response status.
    #[serde(serialize_with = "opt")]
    pub status: Option<u16>,
}

impl<'a> HttpRow<'a> {
    /// The connection's `http` object, when a request was seen.
    pub fn of(c: &'a Connection) -> Option<HttpRow<'a>> {
        c.request().map(|q| HttpRow {
            method: &q.method,
            target: &q.target,
            host: q.host.as_deref(),
            ws_upgrade: q.ws_upgrade,
            authorization: q.authorization,
            cookie: q.cookie,
            status: c.rec.app.as_ref().and_then(|x| x.status),
        })
    }
}

/// Extra `app` object: what the application layer saw (never a secret's value).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AppRow<'a> {
    /// Protocol.
    pub protocol: Protocol,
    /// ALPN offered.
    #[serde(serialize_with = "opt")]
    pub tls_alpn: Option<&'a [String]>,
    /// TLS versions offered.
    #[serde(serialize_with = "opt")]
    pub tls_versions_offered: Option<&'a [&'static str]>,
    /// TLS version chosen.
    #[serde(serialize_with = "opt")]
    pub tls_version: Option<&'static str>,
    /// ClientHello time.
    #[serde(serialize_with = "ser_opt_time")]
    pub tls_hello_time: Option<Nanos>,
    /// Handshake done.
    #[serde(serialize_with = "ser_opt_time")]
    pub tls_done_time: Option<Nanos>,
    /// First application data.
    #[serde(serialize_with = "ser_opt_time")]
    pub tls_app_data_time: Option<Nanos>,
    /// The TLS bytes did not parse.
    pub tls_malformed: bool,
    /// HTTP request time.
    #[serde(serialize_with = "ser_opt_time")]
    pub http_request_time: Option<Nanos>,
    /// WebSocket 101 time.
    #[serde(serialize_with = "ser_opt_time")]
    pub ws_time: Option<Nanos>,
    /// The upgrade carried Sec-WebSocket-Key (presence only).
    pub ws_key: bool,
    /// The HTTP/2 preface in clear text.
    pub h2_preface: bool,
    /// Reassembly gaps, client side.
    pub gaps_client: u32,
    /// Reassembly gaps, server side.
    pub gaps_server: u32,
}

/// What a connection whose payload was neither TLS nor HTTP keeps (no box on the record).
const OTHER: AppFacts = AppFacts {
    protocol: Protocol::Other,
    tls: None,
    request: None,
    status: None,
    h2_preface: false,
    gaps: [0, 0],
    quic: None,
};

impl<'a> AppRow<'a> {
    /// The connection's `app` object, when it carried payload.
    pub fn of(c: &'a Connection) -> Option<AppRow<'a>> {
        let app = match c.rec.app.as_deref() {
            Some(app) => app,
            None if c.rec.milestones.first_payload.is_some() => &OTHER,
            None => return None,
        };
        let tls = app.tls.as_ref();
        let m = &c.rec.milestones;
        Some(AppRow {
            protocol: app.protocol,
            tls_alpn: tls.map(|t| t.alpn.as_slice()),
            tls_versions_offered: tls.map(|t| t.offered_versions.as_slice()),
            tls_version: tls.and_then(|t| t.version),
            tls_hello_time: tls.and_then(|t| t.hello.get()),
            tls_done_time: tls.and_then(|t| t.done.get()),
            tls_app_data_time: tls.and_then(|t| t.app_data.get()),
            tls_malformed: tls.is_some_and(|t| t.malformed),
            http_request_time: m.http.get(),
            ws_time: m.ws.get(),
            ws_key: app.request.as_ref().is_some_and(|r| r.ws_key),
            h2_preface: app.h2_preface,
            gaps_client: app.gaps[0],
            gaps_server: app.gaps[1],
        })
    }
}

/// Extra `quic` object of a QUIC connection (`null` for TCP): what its Initials and packet
/// headers showed. Its `stage` is QUIC's own; the connection's `stage` maps it to the nearest
/// TCP-shaped name (`initial_sent` → `syn`, `server_initial` → `synack`, `handshake` →
/// `tls`, `data` → `data`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct QuicRow<'a> {
    /// Version: `1`, `2`, `draft-29`, or the number in hex.
    pub version: String,
    /// The client's first Destination Connection ID, hex.
    pub original_dcid: String,
    /// The client's Source Connection ID, hex.
    pub client_cid: String,
    /// The server's Source Connection ID, hex.
    pub server_cid: String,
    /// QUIC stage reached.
    pub stage: QuicStage,
    /// The server sent a Retry.
    pub retry: bool,
    /// Versions a Version Negotiation packet offered (hex).
    pub negotiated_versions: Vec<String>,
    /// ALPN the ClientHello offered.
    #[serde(serialize_with = "opt")]
    pub alpn: Option<&'a [String]>,
    /// The ClientHello offered Encrypted Client Hello.
    pub ech: bool,
    /// The client sent 0-RTT packets.
    pub zero_rtt: bool,
    /// Client Initial packets.
    pub initials_client: u32,
    /// Server Initial packets.
    pub initials_server: u32,
    /// Handshake complete (the client's first 1-RTT packet).
    #[serde(serialize_with = "ser_opt_time")]
    pub handshake_time: Option<Nanos>,
    /// Application data both ways.
    #[serde(serialize_with = "ser_opt_time")]
    pub data_time: Option<Nanos>,
    /// How it ended: `close_client` or `close_server` (a CONNECTION_CLOSE in an Initial, in
    /// the clear) or `idle` (no datagram for the idle timeout, or the capture's end).
    pub end: &'static str,
    /// Client Initials that did not open, or whose ClientHello did not parse.
    pub undecryptable_initials: u32,
    /// A version racetrace cannot read.
    pub unknown_version: bool,
}

impl<'a> QuicRow<'a> {
    /// The connection's `quic` object, when it is QUIC.
    pub fn of(c: &'a Connection) -> Option<QuicRow<'a>> {
        let q = c.rec.quic()?;
        Some(QuicRow {
            version: q.version_name(),
            original_dcid: hex(&q.original_dcid),
            client_cid: hex(&q.client_cid),
            server_cid: hex(&q.server_cid),
            stage: q.stage_at(c.rec.synack_time, Nanos::MAX),
            retry: q.retry,
            negotiated_versions: q
                .negotiated_versions
                .iter()
                .map(|v| format!("0x{v:08x}"))
                .collect(),
            alpn: c.tls().map(|t| t.alpn.as_slice()),
            ech: q.ech,
            zero_rtt: q.zero_rtt,
            initials_client: q.initials[0],
            initials_server: q.initials[1],
            handshake_time: q.handshake.get(),
            data_time: q.data.get(),
            end: match c.rec.end() {
                Some((_, racetrace_core::domain::Side::Client, _)) => "close_client",
                Some((_, racetrace_core::domain::Side::Server, _)) => "close_server",
                None => "idle",
            },
            undecryptable_initials: q.undecryptable,
            unknown_version: q.unknown_version,
        })
    }
}

/// One SYN's options (client's, then server's).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SynOptionsRow {
    /// MSS.
    #[serde(serialize_with = "opt")]
    pub mss: Option<u16>,
    /// Window scale.
    #[serde(serialize_with = "opt")]
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps present.
    pub timestamps: bool,
}

/// One `connections[]` object and one row of the connections table.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionRow<'a> {
    /// Id.
    pub id: usize,
    /// First record.
    pub first_record: u64,
    /// Last record.
    pub last_record: u64,
    /// Family.
    pub family: Family,
    /// Client address.
    pub client_ip: Text<std::net::IpAddr>,
    /// Client port.
    pub client_port: u16,
    /// Server address.
    pub server_ip: Text<std::net::IpAddr>,
    /// Server port.
    pub server_port: u16,
    /// The handshake's SYN was seen.
    pub handshake_seen: bool,
    /// First SYN.
    #[serde(serialize_with = "ser_opt_time")]
    pub syn_time: Option<Nanos>,
    /// SYNs sent.
    pub syn_count: u32,
    /// First SYN-ACK.
    #[serde(serialize_with = "ser_opt_time")]
    pub synack_time: Option<Nanos>,
    /// Handshake's ACK.
    #[serde(serialize_with = "ser_opt_time")]
    pub established_time: Option<Nanos>,
    /// End.
    #[serde(serialize_with = "ser_opt_time")]
    pub end_time: Option<Nanos>,
    /// How it ended.
    pub end_reason: &'static str,
    /// Client payload bytes.
    pub bytes_client: u64,
    /// Server payload bytes.
    pub bytes_server: u64,
    /// Stage reached.
    pub stage: Stage,
    /// The server's first TSval.
    #[serde(serialize_with = "opt")]
    pub server_tsval: Option<u32>,
    /// TLS SNI.
    #[serde(serialize_with = "opt")]
    pub tls_sni: Option<&'a str>,
    /// The first HTTP request.
    #[serde(serialize_with = "opt")]
    pub http: Option<HttpRow<'a>>,
    /// Service.
    pub service: &'a str,
    /// Race id.
    #[serde(serialize_with = "opt")]
    pub race: Option<usize>,
    /// Role.
    pub role: Role,
    /// Backend id.
    #[serde(serialize_with = "opt")]
    pub backend: Option<&'a str>,
    /// Extra: client host.
    pub client: std::borrow::Cow<'a, str>,
    /// Extra: where the service name came from.
    pub service_source: NameSource,
    /// Extra: NAT64 server address.
    pub nat64: bool,
    /// Extra: Zeek history.
    pub history: &'a str,
    /// Extra: Zeek conn_state.
    pub conn_state: &'static str,
    /// Extra: Wireshark display filter.
    pub wireshark_filter: Text<WiresharkFilter<'a>>,
    /// Extra: SYN-ACKs.
    pub synack_count: u32,
    /// Extra: client packets.
    pub packets_client: u64,
    /// Extra: server packets.
    pub packets_server: u64,
    /// Extra: SYN → ACK, ms.
    #[serde(serialize_with = "opt")]
    pub handshake_rtt_ms: Option<f64>,
    /// Extra: the client's and the server's SYN options.
    pub syn_options: [SynOptionsRow; 2],
    /// Extra: last packet.
    #[serde(serialize_with = "ser_time")]
    pub last_time: Nanos,
    /// Extra: the application layer.
    #[serde(serialize_with = "opt")]
    pub app: Option<AppRow<'a>>,
    /// `"tcp"` or `"quic"`.
    pub transport: &'static str,
    /// Extra: QUIC facts (`null` for TCP).
    #[serde(serialize_with = "opt")]
    pub quic: Option<QuicRow<'a>>,
}

impl<'a> ConnectionRow<'a> {
    /// The row of connection `c` (`client`: its host's label).
    pub fn of(c: &'a Connection, client: std::borrow::Cow<'a, str>) -> ConnectionRow<'a> {
        let r = &c.rec;
        let opts = |i: usize| {
            let o = r.syn_options.get(i).copied().unwrap_or_default();
            SynOptionsRow {
                mss: o.mss,
                wscale: o.wscale,
                sack_permitted: o.sack_permitted,
                timestamps: o.timestamps,
            }
        };
        ConnectionRow {
            id: c.id,
            first_record: r.first_record,
            last_record: r.last_record,
            family: r.family(),
            client_ip: Text(r.client.ip),
            client_port: r.client.port,
            server_ip: Text(r.server.ip),
            server_port: r.server.port,
            handshake_seen: r.handshake_seen,
            syn_time: r.syn_time.get(),
            syn_count: r.syn_count,
            synack_time: r.synack_time.get(),
            established_time: r.established_time.get(),
            end_time: r.end().map(|e| e.0),
            end_reason: r.end_reason(),
            bytes_client: r.bytes[0],
            bytes_server: r.bytes[1],
            stage: r.stage(),
            server_tsval: r.server_tsval,
            tls_sni: c.tls().and_then(|t| t.sni.as_deref()),
            http: HttpRow::of(c),
            service: &c.service,
            race: c.race,
            role: c.role,
            backend: c.backend.as_deref(),
            client,
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
            last_time: r.last_time,
            app: AppRow::of(c),
            transport: r.transport(),
            quic: QuicRow::of(c),
        }
    }

    /// The row of every connection of `block` the report lists, in order.
    pub fn listed(
        a: &'a Analysis,
        block: &'a [Connection],
    ) -> impl Iterator<Item = ConnectionRow<'a>> + 'a {
        block.iter().filter(|c| !c.omitted).map(move |c| {
            ConnectionRow::of(
                c,
                a.hosts.get(c.host).map(|h| h.label()).unwrap_or_default(),
            )
        })
    }
}

/// A connection record with nothing in it, for the connections table's probe.
static EMPTY: std::sync::LazyLock<Connection> =
    std::sync::LazyLock::new(|| Connection::new(0, ConnRecord::default()));

impl Probe for ConnectionRow<'static> {
    fn probe() -> Self {
        ConnectionRow::of(&EMPTY, "".into())
    }
}

/// One `races[]` object and one row of the races table.
#[derive(Clone, Debug, Serialize)]
pub struct RaceRow<'a> {
    /// Id.
    pub id: usize,
    /// Service.
    pub service: &'a str,
    /// Client host.
    pub client: &'a str,
    /// First SYN.
    #[serde(serialize_with = "ser_time")]
    pub start_time: Nanos,
    /// Attempt ids.
    pub attempts: &'a [usize],
    /// Their families.
    pub families: &'a [Family],
    /// Extra: their transports (`tcp`, `quic`).
    pub transports: &'a [&'static str],
    /// Extra: the first attempt's family.
    #[serde(serialize_with = "opt")]
    pub first_family: Option<Family>,
    /// Winner.
    #[serde(serialize_with = "opt")]
    pub winner: Option<usize>,
    /// Extra: the winner's family.
    #[serde(serialize_with = "opt")]
    pub winner_family: Option<Family>,
    /// Also-rans.
    pub also_rans: &'a [usize],
    /// Connection Attempt Delays, ms.
    pub attempt_delays_ms: &'a [f64],
    /// Each also-ran's cancel.
    pub also_ran_cancel: &'a [Cancel],
    /// A duplicate WebSocket upgrade.
    pub duplicate_upgrade: bool,
    /// Extra: RFC 8305 findings.
    pub rfc8305: &'a [String],
    /// Extra: DNS timing.
    #[serde(serialize_with = "opt_ref")]
    pub dns: Option<&'a RaceDns>,
    /// Extra: the duplicate upgrade is inferred from TLS.
    pub duplicate_upgrade_inferred: bool,
    /// Extra: two or more attempts sent a request.
    #[serde(serialize_with = "opt_ref")]
    pub duplicate_request: Option<&'a DuplicateRequest>,
    /// Extra: cancel rules broken.
    pub cancel_rules_broken: &'a [&'static str],
    /// Extra: late cancels.
    pub late_cancels: usize,
    /// Extra: possibly two fetches.
    pub fetches_ambiguous: bool,
    /// Extra: Happy Eyeballs v3 findings.
    pub hev3: &'a [String],
}

impl<'a> RaceRow<'a> {
    /// The row of race `r` (`winner_family`: its winner's family).
    pub fn of(r: &'a Race, winner_family: Option<Family>) -> RaceRow<'a> {
        RaceRow {
            id: r.id,
            service: &r.service,
            client: &r.client,
            start_time: r.start_time,
            attempts: &r.attempts,
            families: &r.families,
            transports: &r.transports,
            first_family: r.families.first().copied(),
            winner: r.winner,
            winner_family,
            also_rans: &r.also_rans,
            attempt_delays_ms: &r.attempt_delays_ms,
            also_ran_cancel: &r.also_ran_cancel,
            duplicate_upgrade: r.duplicate_upgrade,
            rfc8305: &r.findings,
            dns: r.dns.as_ref(),
            duplicate_upgrade_inferred: r.duplicate_upgrade_inferred,
            duplicate_request: r.duplicate_request.as_deref(),
            cancel_rules_broken: &r.cancel_rules_broken,
            late_cancels: r.late_cancels(),
            fetches_ambiguous: r.fetches_ambiguous,
            hev3: &r.hev3,
        }
    }

    /// The row of race `r`.
    pub fn in_analysis(r: &'a Race) -> RaceRow<'a> {
        RaceRow::of(r, r.winner_family())
    }
}

/// An empty race, for the races table's probe.
static NO_RACE: std::sync::LazyLock<Race> = std::sync::LazyLock::new(Race::default);

/// One cancel, so that the probe shows the cancel list's member columns.
static ONE_CANCEL: [Cancel; 1] = [Cancel {
    id: 0,
    stage: Stage::Syn,
    after_winner_ms: None,
    fate: racetrace_core::model::Fate::NeverAnswered,
    late: false,
}];

/// The probe's DNS object, with one HTTPS record: its members are the table's columns.
static ONE_HTTPS: std::sync::LazyLock<RaceDns> = std::sync::LazyLock::new(|| RaceDns {
    https: vec![racetrace_core::app::dns::SvcRecord::default()],
    ..RaceDns::default()
});

impl Probe for RaceRow<'static> {
    fn probe() -> Self {
        RaceRow {
            also_ran_cancel: &ONE_CANCEL,
            dns: Some(&ONE_HTTPS),
            ..RaceRow::of(&NO_RACE, None)
        }
    }
}

/// The model's own row types probe with their default value.
macro_rules! default_probe {
    ($($t:ty),+) => {
        $(impl Probe for $t {
            fn probe() -> Self {
                <$t>::default()
            }
        })+
    };
}

default_probe!(
    racetrace_core::model::Backend,
    racetrace_core::model::StaleReuse,
    racetrace_core::model::Service,
    racetrace_core::model::Listener,
    racetrace_core::model::Flood,
    racetrace_core::model::Scan,
    racetrace_core::model::HealthCheck
);

impl Probe for racetrace_core::model::Sequence {
    /// With two connections (one switch), so that the probe shows the switch list's member
    /// columns.
    fn probe() -> Self {
        racetrace_core::model::Sequence {
            kept: vec![racetrace_core::model::Kept::default(); 2],
            ..Default::default()
        }
    }
}
