//! Sequences: successive kept connections of one client to one service, compact (one
//! 24-byte [`Kept`] per connection) with the contract's lists derived when written.

use crate::domain::{Family, Nanos};
use crate::model::Name;

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
