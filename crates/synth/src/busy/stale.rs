//! A stale reuse on a fetch's kept connection, and the retry on a new one.

use super::packets::close;
use super::{Busy, Ends, TruthConn, Winner, PROCESSING_MS};
use crate::Scenario;
use racetrace_core::domain::Side;

impl Busy {
    /// The server gave up `w` after its idle timeout (its FIN as captured at `server_fin`);
    /// the client's next request is answered by RST, and it retries on a new connection.
    pub(super) fn stale_reuse(
        &mut self,
        s: &mut Scenario,
        e: &Ends<'_>,
        w: &Winner,
        server_fin: f64,
        truth: &mut Vec<TruthConn>,
    ) {
        let tls = e.sport == 443;
        // The server gave up after its idle timeout; its FIN was lost (half the time) or
        // ignored; the client's next request is answered by RST.
        let lost = self.rng.chance(0.5);
        if !lost {
            s.fin(w.conn, Side::Server, server_fin);
            s.ack(
                w.conn,
                Side::Client,
                server_fin + w.path.cb + 0.1 + w.path.cf,
            );
        }
        let req = server_fin + self.rng.range(200.0, 20_000.0);
        let payload = self.request(tls, e.name);
        s.data(w.conn, Side::Client, req + w.path.cf, &payload);
        let rst = req + w.path.cf + w.path.sf + w.path.sb + PROCESSING_MS;
        s.rst(w.conn, Side::Server, rst);
        if let Some(tc) = truth.get_mut(w.truth) {
            tc.stale = true;
        }
        self.totals.stale += 1;
        // The retry: a new connection on the same family, its own fetch.
        let retry_start = rst + w.path.cb + self.rng.range(0.5, 30.0);
        self.fetch_id += 1;
        self.totals.fetches += 1;
        let path = self.path(e.client, w.v6, 0.0);
        let (conn, t) = self.open(s, e, w.v6, retry_start, path, self.fetch_id);
        truth.push(t);
        s.syn(conn, retry_start + path.cf);
        s.synack(
            conn,
            retry_start + path.cf + path.sf + path.sb + PROCESSING_MS,
        );
        let est = retry_start + path.rtt() + 0.02;
        s.ack(conn, Side::Client, est + path.cf);
        let mut t = est + 0.1;
        if tls {
            t = self.tls_handshake(s, conn, path, t, e.name);
        }
        t = self.exchange(s, conn, path, t, tls, e.name);
        let at = t + self.rng.range(5.0, 300.0);
        close(s, conn, path, at);
    }
}
