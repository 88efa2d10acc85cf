//! How the model's values are spelled when serialised, in one place: the names of every enum
//! ([`enum_names!`]), capture times, and the type probe the report's tables use to learn a
//! row's full set of columns and their types from serde alone.
//!
//! **Times** are serialised as a newtype named [`TIME`] around the seconds since the epoch:
//! serde_json writes the bare number; the table flattener sees the name and adds an ISO-8601
//! twin column.
//!
//! **The probe.** A table's schema comes from serialising one default row while [`probing`]:
//! optional fields (serialised through [`opt`] or [`opt_ref`]) then write a default value of
//! their type instead of `null`, so every column shows up once, with its type, even when no
//! row of the capture has a value for it. Outside a probe these write exactly what serde's
//! `Option` does.

use std::cell::Cell;

use super::{epoch_seconds, Nanos};

/// The newtype name of a serialised capture time.
pub const TIME: &str = "racetrace::Time";

/// Serialise a capture time: the contract's seconds with microsecond precision.
pub fn ser_time<S: serde::Serializer>(t: &Nanos, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_newtype_struct(TIME, &epoch_seconds(*t))
}

/// Serialise an optional capture time (`null` when absent).
pub fn ser_opt_time<S: serde::Serializer>(t: &Option<Nanos>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&Time(*t)),
        None if is_probing() => s.serialize_some(&Time(0)),
        None => s.serialize_none(),
    }
}

/// A capture time that serialises as [`ser_time`] does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Time(pub Nanos);

impl serde::Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_time(&self.0, s)
    }
}

thread_local! {
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with optional values serialised as their type's default (see the module's docs).
pub fn probing<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            PROBING.with(|p| p.set(self.0));
        }
    }
    let _reset = Reset(PROBING.with(|p| p.replace(true)));
    f()
}

fn is_probing() -> bool {
    PROBING.with(Cell::get)
}

/// Serialise an optional value as serde's `Option` does, or its type's default while probing.
pub fn opt<T, S>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error>
where
    T: serde::Serialize + Default,
    S: serde::Serializer,
{
    match v {
        Some(v) => s.serialize_some(v),
        None if is_probing() => s.serialize_some(&T::default()),
        None => s.serialize_none(),
    }
}

/// [`opt`] for a borrowed value.
pub fn opt_ref<T, S>(v: &Option<&T>, s: S) -> Result<S::Ok, S::Error>
where
    T: serde::Serialize + Default,
    S: serde::Serializer,
{
    match v {
        Some(v) => s.serialize_some(v),
        None if is_probing() => s.serialize_some(&T::default()),
        None => s.serialize_none(),
    }
}

/// Names an enum's variants once: `as_str` (what every report spells), `ALL`, and a
/// `Serialize` that writes the name.
///
/// ```ignore
/// enum_names!(Family { Ipv4 => "ipv4", Ipv6 => "ipv6" });
/// ```
macro_rules! enum_names {
    ($t:ident { $($v:ident => $n:literal),+ $(,)? }) => {
        impl $t {
            /// The name every report spells (JSON, tables, terminal): defined here only.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $n),+
                }
            }
            /// Every variant.
            pub const ALL: &'static [$t] = &[$($t::$v),+];
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use enum_names;
