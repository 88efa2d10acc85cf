//! The analysis: what the detectors produce and the renderers write. Field names follow the
//! report contract (`spec/REPORT.md`); the JSON renderer maps each type to its
//! contract object, adding documented extra fields beside the contract's.

use std::net::IpAddr;

use crate::decode::DecodeStats;
use crate::domain::{Family, Nanos};
use crate::error::Warning;
use crate::read::CaptureInfo;
pub mod history;
pub mod listener;
pub mod race;
pub mod record;
pub mod store;

pub use listener::{Flood, HealthCheck, Listener, Reason, Scan};
pub use race::{Cancel, DuplicateRequest, Fate, PerAttempt, Race, RaceDns};
pub use record::{ConnRecord, Vantage, VantageVotes};
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

/// One step between successive kept connections of a sequence.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Switch {
    /// Earlier connection.
    pub from: usize,
    /// Later connection.
    pub to: usize,
    /// Time between their first packets, ms.
    pub gap_ms: f64,
    /// The family changed.
    pub family_switch: bool,
    /// The backend changed (null when either is unknown).
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub backend_switch: Option<bool>,
}

/// One kept connection of a [`Sequence`]: 24 bytes, since a sequence holds every connection
/// its client kept, so this is what grows with a long capture. Its family digit, backend name,
/// switches and strip entry are derived from it when written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// The connection.
    pub id: usize,
    /// Its first SYN (or first packet).
    pub start: Nanos,
    /// Its backend's number `n` (the backend `Bn`, `backends[n - 1]`), 0 when unknown.
    pub backend: u32,
    /// Its family.
    pub family: Family,
}

impl Kept {
    /// The backend's name (`B1`, `B2`, …), `None` when unknown.
    pub fn backend_name(&self) -> Option<String> {
        (self.backend > 0).then(|| format!("B{}", self.backend))
    }
}

/// Successive kept connections of one client to one service. The contract's per-connection
/// lists (`connections`, `families`, `backends`, `switches`, `strip`) are derived from
/// [`Sequence::kept`] by the methods of the same names, and serialised in the contract's order.
#[derive(Clone, Debug, Default)]
pub struct Sequence {
    /// Client host.
    pub client: Name,
    /// Service.
    pub service: Name,
    /// Kept connections in time order.
    pub kept: Vec<Kept>,
    /// Adjacent pairs whose family differs.
    pub family_switches: usize,
    /// Adjacent pairs with known, different backends.
    pub backend_switches: usize,
    /// Extra: family switches that also switched backend.
    pub family_and_backend_switches: usize,
}

impl Sequence {
    /// A sequence of `kept` (in time order), with its switch counts.
    pub fn new(client: Name, service: Name, kept: Vec<Kept>) -> Sequence {
        let mut s = Sequence {
            client,
            service,
            kept,
            ..Sequence::default()
        };
        s.family_switches = s.switches().filter(|w| w.family_switch).count();
        // Backend switches: adjacent pairs among the connections with a known backend.
        let known: Vec<u32> = s
            .kept
            .iter()
            .map(|k| k.backend)
            .filter(|&b| b > 0)
            .collect();
        s.backend_switches = known.windows(2).filter(|w| w[0] != w[1]).count();
        s.family_and_backend_switches = s
            .switches()
            .filter(|w| w.family_switch && w.backend_switch == Some(true))
            .count();
        s
    }

    /// Kept connection ids in time order.
    pub fn connections(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.kept.iter().map(|k| k.id)
    }

    /// Their families.
    pub fn families(&self) -> impl ExactSizeIterator<Item = Family> + '_ {
        self.kept.iter().map(|k| k.family)
    }

    /// Extra: backend of each connection (`None` when unknown).
    pub fn backends(&self) -> impl ExactSizeIterator<Item = Option<String>> + '_ {
        self.kept.iter().map(Kept::backend_name)
    }

    /// Extra: each adjacent pair.
    pub fn switches(&self) -> impl Iterator<Item = Switch> + '_ {
        self.kept.windows(2).filter_map(|w| match w {
            [x, y] => Some(Switch {
                from: x.id,
                to: y.id,
                gap_ms: crate::domain::ms_between(x.start, y.start),
                family_switch: x.family != y.family,
                backend_switch: (x.backend > 0 && y.backend > 0).then_some(x.backend != y.backend),
            }),
            _ => None,
        })
    }

    /// Extra: the strip, one entry per connection: the family's digit and the backend's id,
    /// or `?` when unknown, e.g. `6B1 6B1 4B2 6B1 4?`.
    pub fn strip(&self) -> String {
        use std::fmt::Write;
        let mut strip = String::with_capacity(4 * self.kept.len());
        for (i, k) in self.kept.iter().enumerate() {
            if i > 0 {
                strip.push(' ');
            }
            strip.push(k.family.digit());
            match k.backend {
                0 => strip.push('?'),
                n => {
                    let _ = write!(strip, "B{n}");
                }
            }
        }
        strip
    }
}

/// The contract's `sequences[]` object: the members in the order they always had.
impl serde::Serialize for Sequence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// A list derived on the fly.
        struct Seq<F>(F);
        impl<I: Iterator<Item = T>, T: serde::Serialize, F: Fn() -> I> serde::Serialize for Seq<F> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq((self.0)())
            }
        }
        let mut o = s.serialize_struct("Sequence", 10)?;
        o.serialize_field("client", &self.client)?;
        o.serialize_field("service", &self.service)?;
        o.serialize_field("connections", &Seq(|| self.connections()))?;
        o.serialize_field("families", &Seq(|| self.families()))?;
        o.serialize_field("family_switches", &self.family_switches)?;
        o.serialize_field("backend_switches", &self.backend_switches)?;
        o.serialize_field("backends", &Seq(|| self.backends()))?;
        o.serialize_field("switches", &Seq(|| self.switches()))?;
        o.serialize_field(
            "family_and_backend_switches",
            &self.family_and_backend_switches,
        )?;
        o.serialize_field("strip", &self.strip())?;
        o.end()
    }
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

/// A client's Connection Attempt Delay behaviour over its races (RFC 8305 §5).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DelayProfile {
    /// `fixed` (every race's first delay near one value, as curl's 200 ms, Node's 250 ms,
    /// Chromium's and Go's 300 ms), `dynamic` (varies, as Safari's 50 ms–2 s derived from
    /// RTT history), or `single_sample` (one race: the class cannot be told).
    pub class: &'static str,
    /// Races measured (first attempt delay of each).
    pub races: usize,
    /// Smallest, median and largest first delay, ms.
    pub min_ms: f64,
    /// Median.
    pub median_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// The common default the median sits on (within 5 %), when there is one.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub near_default_ms: Option<u32>,
}

/// A client host: its addresses (one per family or more) and how they were tied together.
/// There is one per distinct client address that nothing tied to another (a flood's millions
/// of sources each have one), so such a host is its address alone: 24 bytes, nothing on the
/// heap. A host with more (two addresses, ties, a delay profile) keeps them boxed.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// Its addresses and the rest.
    inner: HostInner,
    /// Every connection of the host is left out of the report's list (`--connections`): the
    /// host is left out of `clients[]` too.
    pub omitted: bool,
}

#[derive(Clone, Debug, Default)]
enum HostInner {
    /// Not yet given an address.
    #[default]
    None,
    /// One address, nothing else.
    One(IpAddr),
    /// Anything more.
    More(Box<HostMore>),
}

/// A host's addresses, ties and delay profile, once it has more than one address.
#[derive(Clone, Debug, Default)]
struct HostMore {
    addrs: Vec<IpAddr>,
    ties: Vec<&'static str>,
    delays: Option<DelayProfile>,
    /// The label, made when first asked for.
    label: std::sync::OnceLock<Name>,
}

impl Host {
    /// Its addresses, in the order they were added (sorted).
    pub fn addrs(&self) -> &[IpAddr] {
        match &self.inner {
            HostInner::None => &[],
            HostInner::One(a) => std::slice::from_ref(a),
            HostInner::More(m) => &m.addrs,
        }
    }

    /// How its addresses were tied (`mac`, `dns`, `race`), in the order first found.
    pub fn ties(&self) -> &[&'static str] {
        match &self.inner {
            HostInner::More(m) => &m.ties,
            _ => &[],
        }
    }

    /// Its attempt-delay class, when it raced.
    pub fn delays(&self) -> Option<&DelayProfile> {
        match &self.inner {
            HostInner::More(m) => m.delays.as_ref(),
            _ => None,
        }
    }

    /// The boxed form, made on first need (always `Some`).
    fn more(&mut self) -> Option<&mut HostMore> {
        if !matches!(self.inner, HostInner::More(_)) {
            let addrs = self.addrs().to_vec();
            self.inner = HostInner::More(Box::new(HostMore {
                addrs,
                ..HostMore::default()
            }));
        }
        match &mut self.inner {
            HostInner::More(m) => Some(m),
            _ => None,
        }
    }

    /// Add an address.
    pub fn push_addr(&mut self, addr: IpAddr) {
        if matches!(self.inner, HostInner::None) {
            self.inner = HostInner::One(addr);
        } else if let Some(m) = self.more() {
            m.addrs.push(addr);
            m.label = std::sync::OnceLock::new();
        }
    }

    /// Add what tied an address (once each).
    pub fn add_tie(&mut self, tie: &'static str) {
        if let Some(m) = self.more() {
            if !m.ties.contains(&tie) {
                m.ties.push(tie);
            }
        }
    }

    /// Set its attempt-delay class.
    pub fn set_delays(&mut self, d: DelayProfile) {
        if let Some(m) = self.more() {
            m.delays = Some(d);
        }
    }

    /// The contract's `client` text: addresses sorted as text, joined with `,`.
    pub fn label(&self) -> std::borrow::Cow<'_, str> {
        match &self.inner {
            HostInner::None => std::borrow::Cow::Borrowed(""),
            HostInner::One(a) => std::borrow::Cow::Owned(a.to_string()),
            HostInner::More(m) => std::borrow::Cow::Borrowed(m.label.get_or_init(|| {
                let mut v: Vec<String> = m.addrs.iter().map(|a| a.to_string()).collect();
                v.sort();
                v.join(",").into()
            })),
        }
    }
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
}
