//! Application layer on captures from the test capture writer: what each attempt carried
//! (TLS, HTTP, WebSocket), cancel stages, duplicate upgrades and requests, secrets.

mod support;

use racetrace_core::domain::Side;
use racetrace_synth::{tls, Scenario};
use serde_json::Value;
use support::*;

const UPGRADE: &[u8] = b"GET /chat?room=7&token=tok-SECRET-1 HTTP/1.1\r\nHost: ws.example:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5LVNFQ1JFVC0y\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer auth-SECRET-3\r\nCookie: sid=cookie-SECRET-4\r\n\r\n";
const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: YWNjZXB0LVNFQ1JFVC01\r\n\r\n";
const SECRETS: [&str; 5] = [
    "tok-SECRET-1",
    "a2V5LVNFQ1JFVC0y",
    "auth-SECRET-3",
    "cookie-SECRET-4",
    "YWNjZXB0LVNFQ1JFVC01",
];

fn dual() -> Scenario {
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    s
}

fn run(s: &Scenario, tag: &str) -> Value {
    analyze_value(&write_temp(tag, "a.pcap", &s.to_pcap()), &[]).0
}

fn conn(r: &Value, id: usize) -> &Value {
    &r["connections"][id]
}

/// IPv6 slow (SYN-ACK after 300 ms), IPv4 fallback at 250 ms; both send the upgrade; the
/// loser (v6) closes after sending it, and its 101 arrives after the close.
fn ws_race(loser_upgrades: bool) -> Scenario {
    let mut s = dual();
    let v6 = s.tcp("fd18::1", 50000, "fd18::2", 8080);
    let v4 = s.tcp("198.18.0.1", 50001, "198.18.0.2", 8080);
    s.syn(v6, 0.0);
    s.syn(v4, 250.0);
    s.synack(v4, 251.0).ack(v4, Side::Client, 251.05);
    s.synack(v6, 300.0).ack(v6, Side::Client, 300.05);
    s.data(v4, Side::Client, 252.0, UPGRADE);
    if loser_upgrades {
        s.data(v6, Side::Client, 300.1, UPGRADE);
    }
    s.data(v4, Side::Server, 253.0, SWITCHING);
    s.fin(v6, Side::Client, 310.0);
    if loser_upgrades {
        s.data(v6, Side::Server, 312.0, SWITCHING);
    }
    s.fin(v6, Side::Server, 313.0);
    s.fin(v4, Side::Client, 2000.0)
        .fin(v4, Side::Server, 2001.0);
    s
}

#[test]
fn both_paths_upgrade_is_a_duplicate_and_secrets_stay_out() {
    let s = ws_race(true);
    let path = write_temp("wsdup", "a.pcap", &s.to_pcap());
    let (r, text) = analyze_value(&path, &[]);
    assert_eq!(r["races"].as_array().unwrap().len(), 1);
    let race = &r["races"][0];
    assert_eq!(race["winner"], 1);
    assert_eq!(race["duplicate_upgrade"], true);
    assert_eq!(race["duplicate_upgrade_inferred"], false);
    assert_eq!(race["also_ran_cancel"][0]["stage"], "http");
    assert_eq!(race["also_ran_cancel"][0]["late"], true);
    assert!(
        (race["also_ran_cancel"][0]["after_winner_ms"]
            .as_f64()
            .unwrap()
            - 58.95)
            .abs()
            < 1e-6
    );
    assert_eq!(
        race["cancel_rules_broken"],
        serde_json::json!(["rfc8305_s6", "happy_eyeballs_v3", "application_data"])
    );
    assert_eq!(
        race["duplicate_request"]["attempts"],
        serde_json::json!([0, 1])
    );
    assert_eq!(race["duplicate_request"]["authorization"], true);
    assert_eq!(race["duplicate_request"]["cookie"], true);
    assert_eq!(r["summary"]["duplicate_upgrades"], 1);
    // The loser's own stage goes on to ws: its 101 arrived after the client's FIN.
    assert_eq!(conn(&r, 0)["stage"], "ws");
    assert_eq!(conn(&r, 1)["stage"], "ws");
    let http = &conn(&r, 0)["http"];
    assert_eq!(http["method"], "GET");
    assert_eq!(http["target"], "/chat?room=7&token=REDACTED");
    assert_eq!(http["host"], "ws.example:8080");
    assert_eq!(http["ws_upgrade"], true);
    assert_eq!(http["authorization"], true);
    assert_eq!(http["cookie"], true);
    assert_eq!(http["status"], 101);
    assert_eq!(conn(&r, 0)["service"], "ws.example");
    assert_eq!(conn(&r, 0)["service_source"], "host");
    assert!((conn(&r, 1)["app"]["ws_time"].as_f64().unwrap() - secs(&s, 253.0)).abs() < 1e-6);

    // No secret value anywhere: JSON, terminal tables, CSV.
    let p = path.to_str().unwrap();
    let mut all = text.clone();
    for args in [
        vec!["races", p],
        vec!["connections", p, "--format", "csv"],
        vec!["connections", p, "--format", "table"],
    ] {
        let out = racetrace(&args);
        assert!(out.status.success());
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    for secret in SECRETS {
        assert!(!all.contains(secret), "{secret} leaked");
    }
}

#[test]
fn loser_cancelled_after_tcp_connect_is_no_duplicate() {
    let s = ws_race(false);
    let r = run(&s, "wsok");
    let race = &r["races"][0];
    assert_eq!(race["duplicate_upgrade"], false);
    assert_eq!(race["duplicate_request"], Value::Null);
    assert_eq!(race["also_ran_cancel"][0]["stage"], "tcp");
    // Cancelled 59 ms after the winner connected, at stage tcp: breaks RFC 8305 §6 only, and
    // is within both --cancel-by limits.
    assert_eq!(race["also_ran_cancel"][0]["late"], false);
    assert_eq!(
        race["cancel_rules_broken"],
        serde_json::json!(["rfc8305_s6"])
    );
    assert_eq!(conn(&r, 0)["stage"], "tcp");
    let strict = analyze_value(
        &write_temp("wsok2", "a.pcap", &s.to_pcap()),
        &["--cancel-by", "tcp"],
    )
    .0;
    assert_eq!(strict["races"][0]["also_ran_cancel"][0]["late"], false);
}

/// wss: both attempts complete TLS 1.3 and send application data: inferred duplicate.
#[test]
fn wss_both_complete_tls_and_send_data_is_an_inferred_duplicate() {
    let (mut s, v6, v4) = wss_race("wss.example", 50000, 300);
    s.rst(v6, Side::Client, 270.0);
    s.fin(v4, Side::Client, 3000.0);
    let path = write_temp("wss", "a.pcap", &s.to_pcap());
    let r = analyze_value(&path, &[]).0;
    let strict = analyze_value(&path, &["--cancel-by", "tcp"]).0;
    assert_eq!(strict["races"][0]["also_ran_cancel"][0]["late"], true);
    let race = &r["races"][0];
    assert_eq!(race["winner"], 1);
    assert_eq!(race["duplicate_upgrade"], true);
    assert_eq!(race["duplicate_upgrade_inferred"], true);
    assert_eq!(race["also_ran_cancel"][0]["stage"], "tls");
    assert_eq!(race["also_ran_cancel"][0]["late"], false);
    assert_eq!(
        race["cancel_rules_broken"],
        serde_json::json!(["rfc8305_s6", "happy_eyeballs_v3", "application_data"])
    );
    for id in [0, 1] {
        let c = conn(&r, id);
        assert_eq!(c["tls_sni"], "wss.example");
        assert_eq!(c["service"], "wss.example");
        assert_eq!(c["stage"], "tls");
        assert_eq!(c["app"]["tls_version"], "TLS 1.3");
        assert_eq!(c["app"]["tls_alpn"], serde_json::json!(["http/1.1"]));
        assert_eq!(
            c["app"]["tls_versions_offered"],
            serde_json::json!(["TLS 1.3", "TLS 1.2"])
        );
    }
    let c0 = conn(&r, 0);
    assert!((c0["app"]["tls_hello_time"].as_f64().unwrap() - secs(&s, 261.0)).abs() < 1e-6);
    assert!((c0["app"]["tls_done_time"].as_f64().unwrap() - secs(&s, 263.0)).abs() < 1e-6);
    assert!((c0["app"]["tls_app_data_time"].as_f64().unwrap() - secs(&s, 264.0)).abs() < 1e-6);
}

/// TLS 1.2: done when both sides sent ChangeCipherSpec and their Finished.
#[test]
fn tls12_handshake_completion() {
    let mut s = Scenario::new();
    let c = s.tcp("198.18.0.1", 40000, "198.18.0.2", 443);
    s.handshake(c, 0.0, 1.0);
    s.data(c, Side::Client, 2.0, &tls::client_hello("h.example", &[]));
    s.data(c, Side::Server, 3.0, &tls::server_hello(false));
    let mut cf = tls::change_cipher_spec();
    cf.extend(tls::encrypted_handshake(40));
    s.data(c, Side::Client, 4.0, &cf);
    s.data(c, Side::Server, 5.0, &cf);
    s.data(c, Side::Client, 6.0, &tls::app_data(100));
    let r = run(&s, "tls12");
    let c = conn(&r, 0);
    assert_eq!(c["stage"], "tls");
    assert_eq!(c["app"]["tls_version"], "TLS 1.2");
    assert!((c["app"]["tls_done_time"].as_f64().unwrap() - secs(&s, 5.0)).abs() < 1e-6);
    assert!((c["app"]["tls_app_data_time"].as_f64().unwrap() - secs(&s, 6.0)).abs() < 1e-6);
}

/// A ClientHello split over two segments that arrive in reverse order.
#[test]
fn client_hello_split_and_out_of_order() {
    let mut s = Scenario::new();
    let c = s.tcp("198.18.0.1", 40000, "198.18.0.2", 443);
    s.handshake(c, 0.0, 1.0);
    let hello = tls::client_hello("split.example", &["h2"]);
    let (a, b) = hello.split_at(60);
    s.data_at(c, Side::Client, 2.0, a.len() as i64, b);
    s.data(c, Side::Client, 3.0, a);
    s.skip(c, Side::Client, b.len() as u32);
    let r = run(&s, "split");
    let c = conn(&r, 0);
    assert_eq!(c["tls_sni"], "split.example");
    assert_eq!(c["stage"], "tls_hello");
    assert_eq!(c["bytes_client"], hello.len());
    // The hello is complete when the first segment fills the hole.
    assert!((c["app"]["tls_hello_time"].as_f64().unwrap() - secs(&s, 3.0)).abs() < 1e-6);
    assert_eq!(c["app"]["gaps_client"], 0);
}

/// A retransmitted request is counted once and parsed once.
#[test]
fn retransmitted_request() {
    let mut s = Scenario::new();
    let c = s.tcp("198.18.0.1", 40000, "198.18.0.2", 80);
    s.handshake(c, 0.0, 1.0);
    let req: &[u8] = b"POST /api HTTP/1.1\r\nHost: api.example\r\nContent-Length: 0\r\n\r\n";
    s.data(c, Side::Client, 2.0, req);
    s.data_at(c, Side::Client, 202.0, -(req.len() as i64), req);
    s.data(c, Side::Server, 203.0, b"HTTP/1.1 204 No Content\r\n\r\n");
    let r = run(&s, "retx");
    let c = conn(&r, 0);
    assert_eq!(c["bytes_client"], req.len());
    assert_eq!(c["stage"], "http");
    assert_eq!(c["http"]["method"], "POST");
    assert_eq!(c["http"]["status"], 204);
    assert_eq!(c["service"], "api.example");
    assert!((c["app"]["http_request_time"].as_f64().unwrap() - secs(&s, 2.0)).abs() < 1e-6);
}

/// Malformed TLS records and HTTP-looking garbage: no panic, stage `data`.
#[test]
fn malformed_tls_and_garbage() {
    let mut s = Scenario::new();
    let bad_tls = s.tcp("198.18.0.1", 40000, "198.18.0.2", 443);
    s.handshake(bad_tls, 0.0, 1.0);
    // A handshake record whose body is not a handshake message.
    s.data(
        bad_tls,
        Side::Client,
        2.0,
        &[0x16, 3, 1, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    let garbage = s.tcp("198.18.0.1", 40001, "198.18.0.2", 80);
    s.handshake(garbage, 0.0, 1.0);
    s.data(
        garbage,
        Side::Client,
        2.0,
        b"GET \x00\x01\x02 nonsense\r\n\r\n",
    );
    let other = s.tcp("198.18.0.1", 40002, "198.18.0.2", 22);
    s.handshake(other, 0.0, 1.0);
    s.data(other, Side::Server, 2.0, b"SSH-2.0-OpenSSH_9.6\r\n");
    let r = run(&s, "garbage");
    for id in 0..3 {
        assert_eq!(conn(&r, id)["stage"], "data", "connection {id}");
        assert_eq!(conn(&r, id)["http"], Value::Null);
        assert_eq!(conn(&r, id)["tls_sni"], Value::Null);
    }
    assert_eq!(conn(&r, 0)["app"]["tls_malformed"], true);
    assert_eq!(conn(&r, 2)["app"]["protocol"], "other");
    assert_eq!(conn(&r, 2)["app"]["tls_version"], Value::Null);
}

/// The real WebSocket racer: both paths upgrade (ws_duplicate), or the loser is cancelled at
/// its late SYN-ACK (ws_cancel).
#[test]
fn real_websocket_racers() {
    let dup = analyze_value(&captures().join("ws_duplicate.pcap"), &[]).0;
    assert_eq!(dup["summary"]["duplicate_upgrades"], 3);
    for race in dup["races"].as_array().unwrap() {
        assert_eq!(race["duplicate_upgrade"], true);
        let cancel = &race["also_ran_cancel"][0];
        assert_eq!(cancel["stage"], "http");
        let loser = &dup["connections"][cancel["id"].as_u64().unwrap() as usize];
        assert_eq!(loser["stage"], "ws");
        assert_eq!(loser["http"]["status"], 101);
    }
    let ok = analyze_value(&captures().join("ws_cancel.pcap"), &[]).0;
    assert_eq!(ok["summary"]["duplicate_upgrades"], 0);
    for race in ok["races"].as_array().unwrap() {
        assert_eq!(race["duplicate_upgrade"], false);
        assert_eq!(race["also_ran_cancel"][0]["stage"], "synack");
        assert_eq!(race["cancel_rules_broken"], serde_json::json!([]));
    }
}
