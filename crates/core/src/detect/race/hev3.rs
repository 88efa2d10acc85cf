//! Happy Eyeballs v3 (draft-ietf-happy-happyeyeballs-v3) checks of one race, for clients that
//! race QUIC or look up HTTPS records: the ones the draft's algorithm governs. A TCP-only race
//! with no HTTPS lookup keeps RFC 8305's checks alone.
//!
//! The draft: HTTPS/SVCB, AAAA and A queries sent together; once an A answer arrives first,
//! wait up to the Resolution Delay (50 ms) for AAAA; candidates grouped by ALPN in the
//! records' SvcPriority order (QUIC first when they advertise `h3`), then sorted with families
//! interleaved, IPv6 first; a Connection Attempt Delay of 250 ms by default, 100 ms
//! recommended minimum, never under 10 ms, at most 2 s.

use crate::app::dns::SvcRecord;
use crate::domain::{Family, Nanos};
use crate::model::Connection;

/// The draft's Resolution Delay.
const RESOLUTION_DELAY: Nanos = 50_000_000;

/// What the race's lookup showed, for the checks.
#[derive(Debug, Default)]
pub(in crate::detect) struct Lookup<'a> {
    /// AAAA query and answer (and whether the answer held an address).
    pub aaaa: Option<(Option<Nanos>, Option<Nanos>, bool)>,
    /// A answer.
    pub a_answer: Option<Nanos>,
    /// The HTTPS answer's records, when one was seen.
    pub https: Option<&'a [SvcRecord]>,
}

/// The race's HEv3 findings as short codes, in a fixed order; empty when the race is not one
/// the draft governs (no QUIC attempt and no HTTPS answer).
pub(in crate::detect) fn findings(attempts: &[&Connection], delays: &[f64], dns: &Lookup<'_>) -> Vec<String> {
    let any_quic = attempts.iter().any(|c| c.rec.quic().is_some());
    if !any_quic && dns.https.is_none() {
        return Vec::new();
    }
    let mut out: Vec<&'static str> = Vec::new();
    let first_of = |want: &dyn Fn(&Connection) -> bool| {
        attempts
            .iter()
            .filter(|c| want(c))
            .filter_map(|c| c.rec.syn_time.get())
            .min()
    };
    // Resolution Delay: an IPv4 attempt before the AAAA answer, less than 50 ms after the A.
    if let (Some((Some(_), aaaa_answer, _)), Some(a_answer)) = (dns.aaaa, dns.a_answer) {
        if let Some(t4) = first_of(&|c| c.rec.family() == Family::Ipv4) {
            let before_aaaa = aaaa_answer.is_none_or(|x| t4 < x);
            if before_aaaa && t4 >= a_answer && t4 - a_answer < RESOLUTION_DELAY {
                out.push("resolution_delay_not_honoured");
            }
        }
    }
    // Connection Attempt Delay bounds.
    for d in delays {
        let code = if *d < 10.0 {
            "attempt_delay_below_10ms"
        } else if *d < 100.0 {
            "attempt_delay_below_100ms"
        } else if *d > 2000.0 {
            "attempt_delay_above_2s"
        } else {
            continue;
        };
        if !out.contains(&code) {
            out.push(code);
        }
    }
    // IPv6 first when it was available when the race began: its AAAA answer had come (with an
    // address); with no AAAA exchange in the capture, when the race tried IPv6 at all. (An
    // IPv4 attempt before the AAAA answer is the Resolution Delay's matter, above.)
    let start = attempts.iter().filter_map(|c| c.rec.syn_time.get()).min();
    let v6_available = match dns.aaaa {
        Some((_, t, any)) => any && t.zip(start).is_some_and(|(t, s)| t <= s),
        None => attempts.iter().any(|c| c.rec.family() == Family::Ipv6),
    };
    if attempts.first().is_some_and(|c| c.rec.family() == Family::Ipv4) && v6_available {
        out.push("ipv4_first");
    }
    // Families interleaved: the second address tried is of the other family when both are.
    let mut addrs: Vec<Family> = Vec::new();
    let mut seen: Vec<std::net::IpAddr> = Vec::new();
    for c in attempts {
        if !seen.contains(&c.rec.server.ip) {
            seen.push(c.rec.server.ip);
            addrs.push(c.rec.family());
        }
    }
    if addrs.len() >= 3
        && addrs.contains(&Family::Ipv6)
        && addrs.contains(&Family::Ipv4)
        && addrs.first() == addrs.get(1)
    {
        out.push("families_not_interleaved");
    }
    // QUIC and the advertised ALPN, in the records' priority order (ServiceMode records,
    // priority above 0, lowest first: the candidates' first group).
    if let Some(records) = dns.https {
        let h3 = records.iter().any(SvcRecord::offers_h3);
        let advertised = records.iter().any(|r| !r.alpn.is_empty());
        if h3 && !any_quic {
            out.push("quic_not_tried");
        }
        if any_quic && advertised && !h3 {
            out.push("quic_not_advertised");
        }
        let mut service: Vec<&SvcRecord> = records.iter().filter(|r| r.priority > 0).collect();
        service.sort_by_key(|r| r.priority);
        let best = service.first().map(|r| r.priority);
        let top: Vec<&&SvcRecord> = service.iter().filter(|r| Some(r.priority) == best).collect();
        let top_h3 = top.iter().any(|r| r.offers_h3());
        // TCP serves the top group when one of its records offers a TCP protocol, or does not
        // forbid the default (http/1.1).
        let top_tcp = top
            .iter()
            .any(|r| !r.no_default_alpn || r.alpn.iter().any(|a| a != "h3" && !a.starts_with("h3-")));
        let tcp = first_of(&|c| c.rec.quic().is_none());
        let q = first_of(&|c| c.rec.quic().is_some());
        if top_h3 && tcp.zip(q).is_some_and(|(t, q)| t < q) {
            out.push("tcp_before_quic");
        }
        // The first attempt's transport is not one the highest-priority records offer.
        let first_quic = attempts.first().map(|c| c.rec.quic().is_some());
        if !top.is_empty()
            && first_quic.is_some_and(|fq| if fq { !top_h3 } else { !top_tcp })
        {
            out.push("svcb_priority_not_followed");
        }
    }
    out.into_iter().map(str::to_string).collect()
}
