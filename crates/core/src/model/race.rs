//! Races: a fetch's attempts to several endpoints, the winner, and each also-ran's fate.

use super::Name;
use crate::domain::{Family, Nanos, Stage};

/// What an also-ran's fate was (why it lost, as the wire shows it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fate {
    /// SYNs never answered (black-holed path, or abandoned in SYN_SENT).
    #[default]
    NeverAnswered,
    /// The server refused with RST.
    Refused,
    /// The SYN-ACK arrived after the client had given up; its kernel answered with RST. The
    /// RST time is the SYN-ACK's arrival, not a decision of the client's.
    LateSynackReset,
    /// The client aborted (FIN/RST) before any SYN-ACK.
    AbortedBeforeConnect,
    /// Connected, carried nothing, closed by the client: an unused parallel connection.
    UnusedParallel,
    /// Connected and closed by the client after carrying payload.
    ClosedAfterConnect,
    /// Connected and never closed by the client within the capture.
    LeftOpen,
}

crate::domain::enum_names!(Fate {
    NeverAnswered => "never_answered",
    Refused => "refused",
    LateSynackReset => "late_synack_reset",
    AbortedBeforeConnect => "aborted_before_connect",
    UnusedParallel => "unused_parallel",
    ClosedAfterConnect => "closed_after_connect",
    LeftOpen => "left_open",
});

/// An also-ran's cancel: the contract's `also_ran_cancel[]` entry plus its fate.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Cancel {
    /// The also-ran's connection id.
    pub id: usize,
    /// Stage reached when the client gave it up (its first FIN/RST), or its final stage when
    /// the client never did.
    pub stage: Stage,
    /// Client FIN/RST time minus the winner's established time.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub after_winner_ms: Option<f64>,
    /// Extra: how it lost.
    pub fate: Fate,
    /// Extra: cancelled beyond `--cancel-by` after the winner connected (a `late-cancel`).
    pub late: bool,
}

/// Two or more attempts of one race sent an HTTP request.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DuplicateRequest {
    /// The attempts that sent a request.
    pub attempts: Vec<usize>,
    /// An also-ran's duplicate request carried Authorization.
    pub authorization: bool,
    /// An also-ran's duplicate request carried Cookie.
    pub cookie: bool,
}

/// DNS timing of a race (RFC 8305 §3: the Resolution Delay between AAAA and A answers).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RaceDns {
    /// The name asked.
    pub name: Name,
    /// AAAA query and answer times (seconds since the epoch).
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub aaaa_query_time: Option<f64>,
    /// AAAA answer time.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub aaaa_answer_time: Option<f64>,
    /// A query time.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub a_query_time: Option<f64>,
    /// A answer time.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub a_answer_time: Option<f64>,
    /// First SYN minus the first answer, in ms.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub answer_to_first_syn_ms: Option<f64>,
    /// HTTPS (type 65) query time.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub https_query_time: Option<f64>,
    /// HTTPS answer time.
    #[serde(serialize_with = "crate::domain::ser::opt")]
    pub https_answer_time: Option<f64>,
    /// The HTTPS answer's records (ALPN, port, hints, ECH presence, priority).
    pub https: Vec<crate::app::dns::SvcRecord>,
    /// The order the client sent its queries in: `https`, `aaaa`, `a`.
    pub query_order: Vec<&'static str>,
}

/// A race's per-attempt list: nearly every race has two attempts (one also-ran, one delay),
/// kept inline, so a race makes no small allocations of its own.
pub type PerAttempt<T> = smallvec::SmallVec<[T; 2]>;

/// One Happy Eyeballs race.
#[derive(Clone, Debug, Default)]
pub struct Race {
    /// Id.
    pub id: usize,
    /// The race's service (its best name).
    pub service: Name,
    /// The client host's addresses, sorted, joined with `,`.
    pub client: Name,
    /// The client host: its index in `hosts` (not in the report).
    pub host: usize,
    /// First SYN of the race.
    pub start_time: Nanos,
    /// Attempt ids in order of first SYN.
    pub attempts: PerAttempt<usize>,
    /// Family of each attempt.
    pub families: PerAttempt<Family>,
    /// Transport of each attempt: `"tcp"` or `"quic"`.
    pub transports: PerAttempt<&'static str>,
    /// The winner, when one attempt was kept.
    pub winner: Option<usize>,
    /// Also-ran ids.
    pub also_rans: PerAttempt<usize>,
    /// Gaps between the first SYNs to each new server address, in ms.
    pub attempt_delays_ms: PerAttempt<f64>,
    /// One entry per also-ran.
    pub also_ran_cancel: smallvec::SmallVec<[Cancel; 1]>,
    /// Two or more attempts sent a WebSocket upgrade.
    pub duplicate_upgrade: bool,
    /// Extra: the duplicate upgrade is inferred from TLS (two attempts completed TLS and sent
    /// application data) because the request itself is encrypted.
    pub duplicate_upgrade_inferred: bool,
    /// Extra: two or more attempts sent an HTTP request.
    pub duplicate_request: Option<Box<DuplicateRequest>>,
    /// Extra: two or more attempts carried application data and one joined the race as a
    /// repeat to an address already tried that no DNS in the capture explains: possibly two
    /// fetches the capture cannot tell apart (said, not merged silently).
    pub fetches_ambiguous: bool,
    /// Extra: the cancel rules this race broke (`rfc8305_s6`, `happy_eyeballs_v3`,
    /// `application_data`), mildest first.
    pub cancel_rules_broken: Vec<&'static str>,
    /// Extra: RFC 8305 findings, as short codes.
    pub findings: Vec<String>,
    /// Extra: DNS timing.
    pub dns: Option<RaceDns>,
    /// Extra: Happy Eyeballs v3 findings, as short codes (races with a QUIC attempt or an
    /// HTTPS lookup; see `detect/race/hev3.rs`).
    pub hev3: Vec<String>,
}

impl Race {
    /// The winner's family (from the race's own attempt list: no connection lookup).
    pub fn winner_family(&self) -> Option<Family> {
        let k = self
            .attempts
            .iter()
            .position(|&id| Some(id) == self.winner)?;
        self.families.get(k).copied()
    }

    /// Also-rans cancelled beyond `--cancel-by` after the winner connected (`late-cancel`
    /// findings): the one count every report, table and gate uses.
    pub fn late_cancels(&self) -> usize {
        self.also_ran_cancel.iter().filter(|c| c.late).count()
    }

    /// Whether attempt `id`'s first FIN or RST is the client's cancel: false for the winner,
    /// and for an also-ran whose reset answered a late SYN-ACK (its kernel's answer; the
    /// client gave up earlier, unseen on the wire).
    pub fn cancel_seen(&self, id: usize) -> bool {
        Some(id) != self.winner
            && !self
                .also_ran_cancel
                .iter()
                .any(|x| x.id == id && x.fate == Fate::LateSynackReset)
    }
}
