//! The analysis: what the detectors produce and the renderers write. Field names follow the
//! report contract (`spec/REPORT.md`); the JSON renderer maps each type to its
//! contract object, adding documented extra fields beside the contract's.

use crate::decode::DecodeStats;
use crate::domain::Nanos;
use crate::error::Warning;
use crate::read::CaptureInfo;
pub mod history;
mod host;
pub mod listener;
pub mod race;
pub mod record;
mod sequence;
pub mod store;

pub use host::{DelayProfile, Host};
pub use listener::{Flood, HealthCheck, Listener, Reason, Scan};
pub use race::{Cancel, DuplicateRequest, Fate, PerAttempt, Race, RaceDns};
pub use record::{ConnRecord, Vantage, VantageVotes};
pub use sequence::{Kept, Sequence, Switch};
pub use store::Connections;

pub use crate::domain::{Interner, Name};

/// A connection's part in a race.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// The attempt the client kept.
    Winner,
    /// A losing attempt.
    AlsoRan,
    /// Not part of a race.
    #[default]
    Single,
}

crate::domain::enum_names!(Role {
    Winner => "winner",
    AlsoRan => "also_ran",
    Single => "single",
});

/// Where a service name came from, best last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NameSource {
    /// No name: `"ADDRESS port"`.
    #[default]
    Address,
    /// A DNS answer in the capture.
    Dns,
    /// The HTTP Host header.
    Host,
    /// The TLS SNI.
    Sni,
    /// `--service NAME=ADDR…` on the command line.
    Cli,
}

crate::domain::enum_names!(NameSource {
    Address => "address",
    Dns => "dns",
    Host => "host",
    Sni => "sni",
    Cli => "cli",
});

/// One TCP connection attempt with everything the detectors learned about it.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Id, unique in the document (index in order of first packet).
    pub id: usize,
    /// What the tracker recorded.
    pub rec: ConnRecord,
    /// The service this connection is for.
    pub service: Name,
    /// Where `service` came from.
    pub service_source: NameSource,
    /// The server address is NAT64-synthesised IPv6.
    pub nat64: bool,
    /// The race this attempt belongs to.
    pub race: Option<usize>,
    /// Winner, also-ran or single.
    pub role: Role,
    /// The inferred backend (its id, shared with every connection it served).
    pub backend: Option<Name>,
    /// The client host (index into [`Analysis::hosts`]).
    pub host: usize,
    /// Why a short-lived connection (no payload either way) came (see [`Reason`]); `None`
    /// for the others.
    pub reason: Option<Reason>,
    /// Left out of the report's connection list (`--connections`); every finding's
    /// connections stay.
    pub omitted: bool,
}

impl Connection {
    /// A connection with only what the tracker recorded (the detectors fill the rest).
    pub fn new(id: usize, rec: ConnRecord) -> Connection {
        Connection {
            id,
            rec,
            service: Name::default(),
            service_source: NameSource::Address,
            nat64: false,
            race: None,
            role: Role::Single,
            backend: None,
            host: 0,
            reason: None,
            omitted: false,
        }
    }

    /// `"ADDRESS port"`: the service name when nothing better is known.
    pub fn address_service(&self) -> String {
        format!("{} {}", self.rec.server.ip, self.rec.server.port)
    }

    /// The first HTTP request, when one was seen.
    pub fn request(&self) -> Option<&crate::app::http::Request> {
        self.rec.app.as_ref()?.request.as_ref()
    }

    /// TLS facts, when the connection spoke TLS.
    pub fn tls(&self) -> Option<&crate::app::tls::TlsFacts> {
        self.rec.app.as_ref()?.tls.as_ref()
    }
}

/// How a server's TCP timestamp clock behaves across connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClockRegime {
    /// One clock across connections: the backend can be identified.
    Stable,
    /// A measured rate but an offset matching no other connection: a random offset per
    /// connection (or per address pair seen once).
    Unmatched,
    /// Too short to measure and matching no other connection.
    Unresolved,
    /// No TCP timestamps from the server.
    #[default]
    NoTimestamps,
}

crate::domain::enum_names!(ClockRegime {
    Stable => "stable",
    Unmatched => "unmatched",
    Unresolved => "unresolved",
    NoTimestamps => "no_timestamps",
});

/// An inferred backend server (a TCP timestamp clock).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Backend {
    /// `"B1"`, `"B2"`, …
    pub id: String,
    /// Services it served.
    pub services: Vec<String>,
    /// Addresses through which it was reached.
    pub server_ips: Vec<String>,
    /// Clock rate in Hz (snapped to a common rate).
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub clock_hz: Option<f64>,
    /// Connection ids.
    pub connections: Vec<usize>,
    /// Confidence, 0 … 1.
    pub confidence: f64,
    /// Extra: rate fitted over all its samples (Theil–Sen), Hz.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub fitted_hz: Option<f64>,
    /// Extra: skew against `clock_hz`, ppm (over ≥ 10 s of samples).
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub skew_ppm: Option<f64>,
    /// Extra: TSval the clock shows at the capture's first packet (mod 2^32).
    pub offset: u32,
    /// Extra: no member lasted long enough to measure the rate; it is the common rate the
    /// members line up on.
    pub rate_inferred: bool,
    /// Extra: the clock regime (always `stable` for a backend).
    pub regime: ClockRegime,
}

/// Why a stale reuse happened, as far as the capture can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StaleCause {
    /// The client had the server's FIN for longer than a round trip and still sent: a bug.
    ReuseBug,
    /// The request and the server's FIN crossed on the wire (within one round trip).
    Crossed,
    /// No FIN from the server in the capture: lost FIN, middlebox state loss, suspended app.
    #[default]
    FinUnseen,
}

crate::domain::enum_names!(StaleCause {
    ReuseBug => "reuse_bug",
    Crossed => "crossed",
    FinUnseen => "fin_unseen",
});

/// A request sent on a connection the peer had given up.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StaleReuse {
    /// Connection id.
    pub connection: usize,
    /// When the client sent on the dead connection.
    #[serde(serialize_with = "crate::domain::ser_time")]
    pub request_time: Nanos,
    /// Quiet time before that send, ms.
    pub idle_ms: f64,
    /// The server's FIN was in the capture before the send.
    pub peer_closed: bool,
    /// `"rst"` or `"no_response"`.
    pub failure: record::StaleFailure,
    /// The connection the client retried on.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub retry: Option<usize>,
    /// Extra: client host.
    pub client: Name,
    /// Extra: service.
    pub service: Name,
    /// Extra: reuse bug, crossing, or FIN unseen.
    pub cause: StaleCause,
    /// Extra: request time minus the server's FIN time corrected to the client's side, ms.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub fin_to_request_ms: Option<f64>,
    /// Extra: the round trip the cause was judged against, ms.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub rtt_ms: Option<f64>,
    /// Extra: request to failure (server RST, or the client's give-up), ms.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub time_to_failure_ms: Option<f64>,
    /// Extra: client retransmissions of the request.
    pub retransmissions: u32,
    /// Extra: method and target of the stale request, when visible.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub request: Option<String>,
    /// Extra: failure (or request) to the retry connection's first SYN, ms.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub retry_delay_ms: Option<f64>,
    /// Extra: the retry's first request has the same method and target (null when either is
    /// not visible).
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub retry_same_request: Option<bool>,
}

/// One service: a name (or address) on a server port.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Service {
    /// As in `connections[].service`.
    pub name: String,
    /// Server addresses.
    pub server_ips: Vec<String>,
    /// Server port.
    pub server_port: u16,
    /// Connections to it.
    pub connections: usize,
    /// Extra: the server's observed idle timeout (median time from the last payload to its FIN
    /// on connections it closed), ms.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub server_idle_timeout_ms: Option<f64>,
    /// Extra: connections the server closed that way.
    pub server_idle_closes: usize,
    /// Extra: share of its connections with an identified backend (null without any with
    /// TCP timestamps).
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub backend_identified_share: Option<f64>,
    /// Extra: clock regimes seen among its connections.
    pub clock_regimes: Vec<ClockRegime>,
}

/// Headline counts.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Connections.
    pub connections: usize,
    /// Races.
    pub races: usize,
    /// Also-rans.
    pub also_rans: usize,
    /// Races with duplicate upgrades.
    pub duplicate_upgrades: usize,
    /// Family switches over all sequences.
    pub family_switches: usize,
    /// Backend switches over all sequences.
    pub backend_switches: usize,
    /// Backends.
    pub backends: usize,
    /// Stale reuses.
    pub stale_reuses: usize,
    /// Median over races of each race's first attempt delay.
    pub median_attempt_delay_ms: Option<f64>,
    /// Extra: of `duplicate_upgrades`, those inferred from TLS application data.
    pub duplicate_upgrades_inferred: usize,
    /// Extra: races whose duplicate request carried Authorization or Cookie.
    pub duplicate_requests_with_credentials: usize,
    /// Extra: also-rans cancelled beyond `--cancel-by` after the winner connected.
    pub late_cancels: usize,
    /// Extra: stale reuses the client retried on a new connection.
    pub stale_reuses_retried: usize,
    /// Extra: races whose first attempt was IPv6.
    pub races_ipv6_first: usize,
    /// Extra: races won by IPv4.
    pub races_ipv4_won: usize,
    /// Extra: connections with server TCP timestamps and no identified backend.
    pub timestamped_without_backend: usize,
    /// Extra: connections left out of `connections[]` (`--connections`; `connections` counts
    /// them all).
    pub connections_omitted: usize,
    /// Extra: connections that left a full tracker table before their time (`--memory-limit`
    /// caps the table; the quietest attempts, unanswered SYNs first, are finished early).
    pub evicted_early: u64,
}

impl Analysis {
    /// The label of client host `host` (empty when there is no such host).
    pub fn host_label(&self, host: usize) -> Name {
        self.hosts
            .get(host)
            .map_or_else(Name::default, |h| h.label().as_ref().into())
    }

    /// The first packet's time among the connections (charts and clocks count from it).
    pub fn epoch(&self) -> Nanos {
        self.connections.first_time().unwrap_or(0)
    }
}

/// Everything learned from one capture.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    /// Read-stage facts.
    pub capture: CaptureInfo,
    /// Decode-stage counts.
    pub decode: DecodeStats,
    /// Inferred vantage point.
    pub vantage: Vantage,
    /// The votes behind it.
    pub vantage_votes: VantageVotes,
    /// Most connections open at once: with packets both at or before and at or after one
    /// record (from the records, so independent of how the tracker was sharded).
    pub peak_open: usize,
    /// Connections, by id (in memory, or spilled past `--memory-limit`).
    pub connections: Connections,
    /// Client hosts.
    pub hosts: Vec<Host>,
    /// Services.
    pub services: Vec<Service>,
    /// Races.
    pub races: Vec<Race>,
    /// Backends.
    pub backends: Vec<Backend>,
    /// Connections that carried server TCP timestamps (counted by the backends detector
    /// while it reads their clocks; not in the report, the summary counts those left without
    /// a backend from it).
    pub timestamped: usize,
    /// Sequences.
    pub sequences: Vec<Sequence>,
    /// Stale reuses.
    pub stale_reuses: Vec<StaleReuse>,
    /// What each listener saw of its short-lived connections.
    pub listeners: Vec<Listener>,
    /// SYN floods.
    pub floods: Vec<Flood>,
    /// Port and host scans.
    pub scans: Vec<Scan>,
    /// Health checks.
    pub health_checks: Vec<HealthCheck>,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// Headline counts.
    pub summary: Summary,
    /// Wall-clock time each stage took and the tracker's peak (for `--stats`; not in the report).
    pub timings: Timings,
}

/// Wall-clock seconds spent per pipeline stage of one analysis.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    /// Read, decode and track (they run as one streaming pass), the merge included; the CPU
    /// time is the whole process's (in a batch, other captures analysed at the same time
    /// count too).
    pub read_track: crate::engine::cpu::Spent,
    /// Of `read_track`, after the last packet was read: the last batch tracked, the trackers
    /// drained, the records still held back merged into the connection list (on one core)
    /// and the freed pages given back.
    pub finish: f64,
    /// Connections merged into the list after the last read (see
    /// `track::parallel::Output::merged_late`).
    pub merged_late: usize,
    /// The detectors and the report filter.
    pub detect: crate::engine::cpu::Spent,
    /// Each detector by name.
    pub detectors: Vec<Timed>,
    /// Most connections held in the tracker's tables at once (sampled per batch): what the
    /// tracker's memory follows.
    pub table_peak: usize,
    /// The process's peak resident memory after read+decode+track, bytes (Linux).
    pub rss_track: Option<u64>,
    /// The same after the detectors.
    pub rss_detect: Option<u64>,
}

/// What one detector took (see `detect::run`).
#[derive(Clone, Debug)]
pub struct Timed {
    /// The detector's name.
    pub name: &'static str,
    /// Its wall-clock time and the process's CPU time meanwhile.
    pub spent: crate::engine::cpu::Spent,
    /// The process's peak resident memory once it was done (bytes, where the system tells):
    /// the first detector whose figure rises past the track stage's is the one that set it.
    pub peak_rss: Option<u64>,
    /// Connections it read back from the spill (a multiple of the connections spilled is the
    /// number of passes it made over the spill; 0 when nothing spilled).
    pub read_back: u64,
}
