//! The record format's primitives: varints, zigzagged times relative to the record's first
//! packet, strings, addresses and shared names, written by [`Put`] and read back by [`Get`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::domain::{Endpoint, Name, Nanos, OptNanos};

/// Appends a record's bytes.
pub(super) struct Put<'a> {
    pub(super) out: &'a mut Vec<u8>,
    /// The record's first packet time (times are written as deltas from it).
    pub(super) base: Nanos,
}

impl Put<'_> {
    #[inline]
    pub(super) fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
    #[inline]
    pub(super) fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }
    #[inline]
    pub(super) fn b(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }
    #[inline]
    pub(super) fn t(&mut self, t: Nanos) {
        self.i(t.wrapping_sub(self.base));
    }
    #[inline]
    pub(super) fn ot(&mut self, t: OptNanos) {
        match t.get() {
            Some(t) => {
                self.b(true);
                self.t(t);
            }
            None => self.b(false),
        }
    }
    #[inline]
    pub(super) fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        self.b(v.is_some());
        if let Some(v) = v {
            f(self, v);
        }
    }
    #[inline]
    pub(super) fn s(&mut self, s: &str) {
        self.u(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }
    #[inline]
    pub(super) fn ip(&mut self, ip: &IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.out.push(4);
                self.out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.out.push(6);
                self.out.extend_from_slice(&a.octets());
            }
        }
    }
    #[inline]
    pub(super) fn ep(&mut self, e: &Endpoint) {
        self.ip(&e.ip);
        self.u(u64::from(e.port));
    }
    /// A variant of an enum, as its index in `all`.
    #[inline]
    pub(super) fn e<T: PartialEq>(&mut self, v: &T, all: &[T]) {
        let i = all.iter().position(|x| x == v).unwrap_or(0);
        self.out.push(i as u8);
    }
}

/// Reads a record's bytes back.
pub(super) struct Get<'a> {
    pub(super) b: &'a [u8],
    pub(super) base: Nanos,
}

impl<'a> Get<'a> {
    #[inline]
    pub(super) fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.b.split_first()?;
        self.b = rest;
        Some(first)
    }
    #[inline]
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }
    #[inline]
    pub(super) fn u(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    #[inline]
    pub(super) fn i(&mut self) -> Option<i64> {
        let z = self.u()?;
        Some(((z >> 1) as i64) ^ -((z & 1) as i64))
    }
    #[inline]
    pub(super) fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u()?).ok()
    }
    #[inline]
    pub(super) fn u16(&mut self) -> Option<u16> {
        u16::try_from(self.u()?).ok()
    }
    #[inline]
    pub(super) fn usize(&mut self) -> Option<usize> {
        usize::try_from(self.u()?).ok()
    }
    #[inline]
    pub(super) fn b(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    #[inline]
    pub(super) fn t(&mut self) -> Option<Nanos> {
        Some(self.base.wrapping_add(self.i()?))
    }
    #[inline]
    pub(super) fn ot(&mut self) -> Option<OptNanos> {
        Some(if self.b()? {
            OptNanos::some(self.t()?)
        } else {
            OptNanos::NONE
        })
    }
    #[inline]
    pub(super) fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        Some(if self.b()? { Some(f(self)?) } else { None })
    }
    #[inline]
    pub(super) fn s(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }
    /// A string, borrowed from the bytes.
    #[inline]
    pub(super) fn str(&mut self) -> Option<&'a str> {
        let n = self.usize()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
    /// A string into `dst`, reusing its allocation.
    #[inline]
    pub(super) fn s_into(&mut self, dst: &mut String) -> Option<()> {
        let s = self.str()?;
        dst.clear();
        dst.push_str(s);
        Some(())
    }
    /// An optional string into `dst`, reusing its allocation when it holds one.
    #[inline]
    pub(super) fn os_into(&mut self, dst: &mut Option<String>) -> Option<()> {
        if !self.b()? {
            *dst = None;
            return Some(());
        }
        match dst {
            Some(d) => self.s_into(d),
            None => {
                *dst = Some(self.s()?);
                Some(())
            }
        }
    }
    /// A name into `dst`: kept when it is the same name (a block's connections mostly
    /// repeat their predecessor's service), else shared with the names decoded before it on
    /// this thread (a service or backend name repeats over thousands of connections: one
    /// allocation each, not one per connection).
    #[inline]
    pub(super) fn name_into(&mut self, dst: &mut Name) -> Option<()> {
        let s = self.str()?;
        if **dst != *s {
            *dst = intern(s);
        }
        Some(())
    }
    /// An optional name into `dst` (as [`Get::name_into`]).
    #[inline]
    pub(super) fn oname_into(&mut self, dst: &mut Option<Name>) -> Option<()> {
        if !self.b()? {
            *dst = None;
            return Some(());
        }
        match dst {
            Some(d) => self.name_into(d),
            None => {
                *dst = Some(intern(self.str()?));
                Some(())
            }
        }
    }
    #[inline]
    pub(super) fn ip(&mut self) -> Option<IpAddr> {
        Some(match self.byte()? {
            4 => {
                let o: [u8; 4] = self.take(4)?.try_into().ok()?;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let o: [u8; 16] = self.take(16)?.try_into().ok()?;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return None,
        })
    }
    #[inline]
    pub(super) fn ep(&mut self) -> Option<Endpoint> {
        Some(Endpoint {
            ip: self.ip()?,
            port: self.u16()?,
        })
    }
    #[inline]
    pub(super) fn e<T: Copy>(&mut self, all: &[T]) -> Option<T> {
        all.get(usize::from(self.byte()?)).copied()
    }
}

/// `s` as a name shared with the names decoded before it on this thread.
fn intern(s: &str) -> Name {
    thread_local! {
        static NAMES: std::cell::RefCell<foldhash::HashSet<Name>> = std::cell::RefCell::default();
    }
    /// Distinct names kept (a scan can make millions of services).
    const KEPT: usize = 4_096;
    NAMES.with_borrow_mut(|names| {
        if let Some(n) = names.get(s) {
            return n.clone();
        }
        if names.len() >= KEPT {
            names.clear();
        }
        let n: Name = s.into();
        names.insert(n.clone());
        n
    })
}
