//! The packets of one connection's life: the server's clock on it, a TLS handshake, a request
//! and its response, the client's close. Times are client times; each packet is written at the
//! time the capture point sees it (see [`super::Path`]).

use super::{Busy, Clock, Path, PROCESSING_MS, WRAP};
use crate::{tls, ConnId, Scenario};
use racetrace_core::domain::Side;

impl Busy {
    /// Put the server's clock on `conn`: what it stamps at server time, seen `lag` ms later.
    pub(super) fn stamp(
        &self,
        s: &mut Scenario,
        conn: ConnId,
        clock: &Clock,
        base_ms: f64,
        lag: f64,
    ) {
        let hz = clock.hz * (1.0 + clock.skew);
        let at_base = (f64::from(clock.offset) + hz * base_ms / 1000.0).rem_euclid(WRAP);
        s.conn_clock(conn, Side::Server, hz, at_base as u64 as u32);
        s.ts_lag(conn, Side::Server, lag);
    }

    /// A TLS 1.3 handshake from client time `t`; returns the client time it is done.
    pub(super) fn tls_handshake(
        &mut self,
        s: &mut Scenario,
        c: ConnId,
        p: Path,
        t: f64,
        name: &str,
    ) -> f64 {
        s.data(
            c,
            Side::Client,
            t + p.cf,
            &tls::client_hello(name, &["h2", "http/1.1"]),
        );
        let server = t + p.cf + p.sf + PROCESSING_MS;
        let mut flight = tls::server_hello(true);
        flight.extend(tls::app_data(800));
        s.data(c, Side::Server, server + p.sb, &flight);
        let back = server + p.sb + p.cb + 0.1;
        s.data(c, Side::Client, back + p.cf, &tls::app_data(53));
        back + 0.05
    }

    pub(super) fn request(&mut self, tls: bool, name: &str) -> Vec<u8> {
        if tls {
            tls::app_data(300)
        } else {
            format!(
                "GET /item/{} HTTP/1.1\r\nHost: {name}\r\n\r\n",
                self.rng.below(1000)
            )
            .into_bytes()
        }
    }

    /// One request and its response from client time `t`; returns when the client has it all.
    pub(super) fn exchange(
        &mut self,
        s: &mut Scenario,
        c: ConnId,
        p: Path,
        t: f64,
        tls: bool,
        name: &str,
    ) -> f64 {
        let req = self.request(tls, name);
        s.data(c, Side::Client, t + p.cf, &req);
        let mut at = t + p.cf + p.sf + PROCESSING_MS + p.sb;
        let mut left = self.cfg.response_bytes.max(1);
        let mut first = true;
        let mut segs = 0;
        while left > 0 {
            let n = left.min(self.cfg.segment.max(1));
            let body: Vec<u8> = if tls {
                tls::app_data(n.saturating_sub(5).max(1))
            } else if first {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    self.cfg.response_bytes
                );
                let mut b = head.into_bytes();
                b.resize(n.max(b.len()), b'x');
                b
            } else {
                vec![b'x'; n]
            };
            first = false;
            s.data(c, Side::Server, at, &body);
            segs += 1;
            if segs % 2 == 0 {
                s.ack(c, Side::Client, at + p.cb + 0.02 + p.cf);
            }
            at += 0.05;
            left -= n;
        }
        let done = at + p.cb;
        s.ack(c, Side::Client, done + 0.02 + p.cf);
        done + 0.05
    }
}

/// The client closes at client time `t`.
pub(super) fn close(s: &mut Scenario, c: ConnId, p: Path, t: f64) {
    s.fin(c, Side::Client, t + p.cf);
    let server = t + p.cf + p.sf + PROCESSING_MS;
    s.fin(c, Side::Server, server + p.sb);
    s.ack(c, Side::Client, server + p.sb + p.cb + 0.02 + p.cf);
}
