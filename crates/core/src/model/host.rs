//! Client hosts: one or more client addresses tied together, and a client's attempt-delay
//! profile.

use std::net::IpAddr;

use crate::model::Name;

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
