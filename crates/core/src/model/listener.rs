//! What a listener sees of the short-lived connections that reached it (no payload either
//! way: the SYN-only, the refused, the connected-and-closed), and why each one came: an
//! also-ran of a client's race, a SYN flood, a port or host scan, a health check, or
//! unexplained. Each reason has evidence the capture shows; none is guessed.

use crate::domain::ser::opt;
use crate::domain::{ser_time, Nanos};

/// Why a short-lived connection reached the listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A losing attempt of a race whose winner (the same client host, tied by MAC, DNS or the
    /// race's timing) connected.
    AlsoRan,
    /// Part of a SYN flood on its service.
    Flood,
    /// Part of a port or host scan from its source.
    Scan,
    /// A periodic connect-and-close from one source.
    HealthCheck,
    /// None of the above.
    #[default]
    Unexplained,
}

crate::domain::enum_names!(Reason {
    AlsoRan => "also_ran",
    Flood => "flood",
    Scan => "scan",
    HealthCheck => "health_check",
    Unexplained => "unexplained",
});

/// Per service (name and server port): its short-lived connections and why they came.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Listener {
    /// As in `services[].name`.
    pub service: String,
    /// Server port.
    pub server_port: u16,
    /// Connections to it.
    pub connections: usize,
    /// Of those, short-lived (no payload either way).
    pub short_lived: usize,
    /// Short-lived ones that were also-rans of a race with a winner.
    pub also_ran: usize,
    /// … part of a SYN flood.
    pub flood: usize,
    /// … part of a scan.
    pub scan: usize,
    /// … health checks.
    pub health_check: usize,
    /// … none of these.
    pub unexplained: usize,
}

/// A SYN flood: many sources' attempts to one service, unanswered, reset or never completed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Flood {
    /// The service.
    pub service: String,
    /// Server port.
    pub server_port: u16,
    /// First attempt's SYN.
    #[serde(serialize_with = "ser_time")]
    pub start_time: Nanos,
    /// Last attempt's SYN.
    #[serde(serialize_with = "ser_time")]
    pub end_time: Nanos,
    /// Half-open attempts in the flood.
    pub attempts: usize,
    /// Distinct source addresses.
    pub sources: usize,
    /// Attempts in the busiest second.
    pub peak_per_s: usize,
    /// Attempts answered by a SYN-ACK.
    pub answered: usize,
    /// Attempts the server reset.
    pub reset: usize,
}

/// A scan from one source: many ports of one host, or one port of many hosts.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Scan {
    /// The source address.
    pub source: String,
    /// `port` (many ports of one host) or `host` (one port of many hosts).
    pub kind: &'static str,
    /// The host scanned (port scans).
    #[serde(serialize_with = "opt")]
    pub host: Option<String>,
    /// The port scanned (host scans).
    #[serde(serialize_with = "opt")]
    pub port: Option<u16>,
    /// Distinct ports (port scans) or hosts (host scans) tried.
    pub targets: usize,
    /// Short-lived connections in the scan.
    pub attempts: usize,
    /// Targets that answered with a SYN-ACK (open).
    pub open: usize,
    /// First SYN.
    #[serde(serialize_with = "ser_time")]
    pub start_time: Nanos,
    /// Last SYN.
    #[serde(serialize_with = "ser_time")]
    pub end_time: Nanos,
}

/// Periodic connect-and-close from one source to one service.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HealthCheck {
    /// The source address.
    pub source: String,
    /// The service.
    pub service: String,
    /// Server port.
    pub server_port: u16,
    /// Checks seen.
    pub checks: usize,
    /// Median time between checks, ms.
    pub interval_ms: f64,
    /// First check.
    #[serde(serialize_with = "ser_time")]
    pub start_time: Nanos,
    /// Last check.
    #[serde(serialize_with = "ser_time")]
    pub end_time: Nanos,
}
