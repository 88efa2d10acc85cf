//! Stale connection reuse on captures from the test capture writer: a request on a keep-alive
//! connection the server had given up, its failure, cause and retry; and what is not stale.

mod support;

use racetrace_core::domain::Side;
use racetrace_synth::{tls, ConnId, Scenario};
use serde_json::Value;
use support::*;

const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: www.example\r\n\r\n";
const GET_B: &[u8] = b"GET /b HTTP/1.1\r\nHost: www.example\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn run(s: &Scenario, tag: &str) -> Value {
    analyze_value(&write_temp(tag, "s.pcap", &s.to_pcap()), &[]).0
}

/// A keep-alive connection that served /a at 10 ms.
fn served(s: &mut Scenario, port: u16) -> ConnId {
    let c = s.tcp("198.18.0.1", port, "198.18.0.2", 80);
    s.handshake(c, 0.0, 1.0);
    s.data(c, Side::Client, 10.0, GET_A);
    s.data(c, Side::Server, 11.0, OK);
    c
}

fn retry(s: &mut Scenario, t: f64) -> ConnId {
    let c = s.tcp("198.18.0.1", 41000, "198.18.0.2", 80);
    s.handshake(c, t, 1.0);
    s.data(c, Side::Client, t + 1.5, GET_B);
    s.data(c, Side::Server, t + 2.5, OK);
    s.fin(c, Side::Client, t + 10.0)
        .fin(c, Side::Server, t + 10.5);
    c
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn lost_fin_then_request_reset_and_retried() {
    let mut s = Scenario::new();
    let c = served(&mut s, 40000);
    // The server closed at 2011 ms but its FIN was lost: not in the capture.
    s.data(c, Side::Client, 5011.0, GET_B);
    s.rst(c, Side::Server, 5011.5);
    retry(&mut s, 5012.0);
    let r = run(&s, "lostfin");
    assert_eq!(r["summary"]["stale_reuses"], 1);
    let e = &r["stale_reuses"][0];
    assert_eq!(e["connection"], 0);
    assert!(close(e["request_time"].as_f64().unwrap(), secs(&s, 5011.0)));
    assert!(close(e["idle_ms"].as_f64().unwrap(), 5000.0));
    assert_eq!(e["peer_closed"], false);
    assert_eq!(e["failure"], "rst");
    assert_eq!(e["retry"], 1);
    assert_eq!(e["cause"], "fin_unseen");
    assert!(close(e["time_to_failure_ms"].as_f64().unwrap(), 0.5));
    assert!(close(e["retry_delay_ms"].as_f64().unwrap(), 0.5));
    assert_eq!(e["request"], "GET /b");
    assert_eq!(e["retry_same_request"], true);
}

/// Whether a retry repeated the failed request: a different request is `false`, a retry that
/// sent client data but no request (here TLS) is `null`, each beside one that repeated it.
#[test]
fn a_retry_with_another_request_or_none_is_not_the_same_request() {
    let client_hello = tls::client_hello("www.example", &["http/1.1"]);
    for (other, want) in [
        (GET_A, Value::Bool(false)),
        (&client_hello[..], Value::Null),
    ] {
        let mut s = Scenario::new();
        let c = served(&mut s, 40000);
        s.data(c, Side::Client, 5011.0, GET_B);
        s.rst(c, Side::Server, 5011.5);
        let r = s.tcp("198.18.0.1", 41000, "198.18.0.2", 80);
        s.handshake(r, 5012.0, 1.0);
        s.data(r, Side::Client, 5013.5, other);
        // A second stale reuse, later, whose retry repeats its request (ids in order of
        // first packet: the retries are 2 and 3).
        let d = served(&mut s, 40001);
        s.data(d, Side::Client, 9011.0, GET_B);
        s.rst(d, Side::Server, 9011.5);
        retry(&mut s, 9012.0);
        let j = run(&s, "samereq");
        assert_eq!(j["summary"]["stale_reuses"], 2);
        let e = &j["stale_reuses"];
        assert_eq!(
            (e[0]["retry"].clone(), e[1]["retry"].clone()),
            (2.into(), 3.into())
        );
        assert_eq!(e[0]["retry_same_request"], want);
        assert_eq!(e[1]["retry_same_request"], true);
    }
}

#[test]
fn fin_seen_long_before_request_is_a_reuse_bug_and_crossing_is_not() {
    let mut s = Scenario::new();
    let bug = served(&mut s, 40000);
    s.fin(bug, Side::Server, 2011.0);
    s.data(bug, Side::Client, 5011.0, GET_B);
    s.rst(bug, Side::Server, 5011.5);
    let crossed = served(&mut s, 40001);
    s.fin(crossed, Side::Server, 7000.0);
    s.data(crossed, Side::Client, 7000.2, GET_B);
    s.rst(crossed, Side::Server, 7001.0);
    let r = run(&s, "finseen");
    let ev = r["stale_reuses"].as_array().unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["connection"], 0);
    assert_eq!(ev[0]["peer_closed"], true);
    assert_eq!(ev[0]["cause"], "reuse_bug");
    assert!(close(ev[0]["fin_to_request_ms"].as_f64().unwrap(), 3000.0));
    assert_eq!(ev[0]["retry"], Value::Null);
    assert_eq!(ev[1]["connection"], 1);
    assert_eq!(ev[1]["cause"], "crossed");
    assert!(close(ev[1]["fin_to_request_ms"].as_f64().unwrap(), 0.2));
    // The server's idle timeout, from the connection it closed after an exchange.
    let svc = &r["services"][0];
    assert!(close(
        svc["server_idle_timeout_ms"].as_f64().unwrap(),
        (2000.0 + 6989.0) / 2.0
    ));
    assert_eq!(svc["server_idle_closes"], 2);
}

#[test]
fn request_into_silence_retransmitted_then_given_up() {
    let mut s = Scenario::new();
    let c = served(&mut s, 40000);
    s.data(c, Side::Client, 3011.0, GET_B);
    s.data_at(c, Side::Client, 3211.0, -(GET_B.len() as i64), GET_B);
    s.data_at(c, Side::Client, 3611.0, -(GET_B.len() as i64), GET_B);
    s.rst(c, Side::Client, 4411.0);
    let r = run(&s, "silence");
    let e = &r["stale_reuses"][0];
    assert_eq!(r["stale_reuses"].as_array().unwrap().len(), 1);
    assert_eq!(e["failure"], "no_response");
    assert_eq!(e["retransmissions"], 2);
    assert!(close(e["time_to_failure_ms"].as_f64().unwrap(), 1400.0));
    assert_eq!(e["cause"], "fin_unseen");
    assert_eq!(e["retry"], Value::Null);
}

#[test]
fn capture_ending_during_retransmissions_is_no_response() {
    let mut s = Scenario::new();
    let c = served(&mut s, 40000);
    s.data(c, Side::Client, 3011.0, GET_B);
    s.data_at(c, Side::Client, 3211.0, -(GET_B.len() as i64), GET_B);
    let r = run(&s, "capend");
    let e = &r["stale_reuses"][0];
    assert_eq!(e["failure"], "no_response");
    assert_eq!(e["time_to_failure_ms"], Value::Null);
}

#[test]
fn not_stale() {
    let mut s = Scenario::new();
    // A normal request and response after an idle gap.
    let idle_ok = served(&mut s, 40000);
    s.data(idle_ok, Side::Client, 5011.0, GET_B);
    s.data(idle_ok, Side::Server, 5012.0, OK);
    // A server RST after the client's own FIN.
    let after_fin = served(&mut s, 40001);
    s.fin(after_fin, Side::Client, 5011.0);
    s.rst(after_fin, Side::Server, 5011.5);
    // A reset in the middle of a response.
    let mid = served(&mut s, 40002);
    s.data(mid, Side::Client, 5011.0, GET_B);
    s.data(
        mid,
        Side::Server,
        5012.0,
        b"HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\npartial",
    );
    s.rst(mid, Side::Server, 5013.0);
    // A request without an idle gap, reset at once (a server error, not a stale connection).
    let busy = served(&mut s, 40003);
    s.data(busy, Side::Client, 300.0, GET_B);
    s.rst(busy, Side::Server, 300.5);
    let r = run(&s, "notstale");
    assert_eq!(r["summary"]["stale_reuses"], 0);
    assert_eq!(r["stale_reuses"], serde_json::json!([]));
}

/// HTTP/2 over TLS: only sizes are visible; a client record after 3 s idle, answered by RST.
#[test]
fn http2_over_tls_detected_from_sizes() {
    let mut s = Scenario::new();
    let c = s.tcp("198.18.0.1", 40000, "198.18.0.2", 443);
    s.handshake(c, 0.0, 1.0);
    s.data(
        c,
        Side::Client,
        2.0,
        &tls::client_hello("h2.example", &["h2"]),
    );
    let mut flight = tls::server_hello(true);
    flight.extend(tls::app_data(800));
    s.data(c, Side::Server, 3.0, &flight);
    s.data(c, Side::Client, 4.0, &tls::app_data(53));
    s.data(c, Side::Client, 5.0, &tls::app_data(120));
    s.data(c, Side::Server, 6.0, &tls::app_data(400));
    s.data(c, Side::Client, 3006.0, &tls::app_data(90));
    s.rst(c, Side::Server, 3006.4);
    let r = run(&s, "h2");
    let e = &r["stale_reuses"][0];
    assert_eq!(r["stale_reuses"].as_array().unwrap().len(), 1);
    assert!(close(e["idle_ms"].as_f64().unwrap(), 3000.0));
    assert_eq!(e["request"], Value::Null);
    assert_eq!(e["failure"], "rst");
    assert_eq!(e["service"], "h2.example");
}

/// curl on a keep-alive connection whose server FIN was dropped: one stale reuse, FIN unseen,
/// retried on a new connection with the same request.
#[test]
fn real_curl_stale_reuse() {
    let r = analyze_value(&captures().join("stale_reuse_curl.pcap"), &[]).0;
    let ev = r["stale_reuses"].as_array().unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["connection"], 0);
    assert_eq!(ev[0]["cause"], "fin_unseen");
    assert_eq!(ev[0]["failure"], "rst");
    assert_eq!(ev[0]["retry"], 1);
    assert_eq!(ev[0]["request"], "GET /b");
    assert_eq!(ev[0]["retry_same_request"], true);
    // Truth (the server's own log): RST sent at 1795393705.40156; the capture on the client
    // sees it a fraction of a millisecond later, 0.588 ms after the request.
    let rst = r["connections"][0]["end_time"].as_f64().unwrap();
    assert!((rst - 1795393705.40156).abs() < 1e-3);
    assert!((ev[0]["time_to_failure_ms"].as_f64().unwrap() - 0.588).abs() < 1e-9);
    assert!((ev[0]["idle_ms"].as_f64().unwrap() - 4996.33).abs() < 1e-9);
}

/// python-requests does not retry a failed request on its own: no retry connection, and a
/// connection opened later than the retry window is not one.
#[test]
fn no_retry_within_the_window() {
    let mut s = Scenario::new();
    let c = served(&mut s, 40000);
    s.data(c, Side::Client, 5011.0, GET_B);
    s.rst(c, Side::Server, 5011.5);
    retry(&mut s, 10_600.0);
    let r = run(&s, "noretry");
    assert_eq!(r["stale_reuses"].as_array().unwrap().len(), 1);
    assert_eq!(r["stale_reuses"][0]["retry"], Value::Null);
    let wide = analyze_value(
        &write_temp("noretry2", "s.pcap", &s.to_pcap()),
        &["--retry-window-s", "6"],
    )
    .0;
    assert_eq!(wide["stale_reuses"][0]["retry"], 1);
}
