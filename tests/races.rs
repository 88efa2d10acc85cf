//! Race detection on captures from the test capture writer, one client behaviour per test,
//! with exact assertions on attempts, winners, delays, cancel stages and fates.

mod support;

use racetrace_core::domain::Side;
use racetrace_synth::Scenario;
use support::*;

fn run(s: &Scenario, tag: &str) -> Report {
    analyze_json(&write_temp(tag, "r.pcap", &s.to_pcap()), &[])
}

fn dual() -> Scenario {
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    s
}

#[test]
fn curl_like_keeps_racing_and_the_late_synack_is_reset() {
    let mut s = dual();
    s.dns(
        "198.18.0.1",
        "198.18.0.53",
        0.0,
        1.0,
        "www.example",
        28,
        &["fd18::2"],
    );
    s.dns(
        "198.18.0.1",
        "198.18.0.53",
        0.1,
        1.2,
        "www.example",
        1,
        &["198.18.0.2"],
    );
    let v6 = s.tcp("fd18::1", 40000, "fd18::2", 443);
    s.syn(v6, 2.0);
    let v4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 443);
    s.handshake(v4, 202.0, 5.0);
    s.synack(v6, 502.0).rst(v6, Side::Client, 502.05);
    s.data(v4, Side::Client, 208.0, b"hello")
        .fin(v4, Side::Client, 900.0);
    let r = run(&s, "curl");
    assert_eq!(r.races.len(), 1);
    let race = &r.races[0];
    assert_eq!(race.attempts, vec![0, 1]);
    assert_eq!(race.families, vec!["ipv6", "ipv4"]);
    assert_eq!(race.winner, Some(1));
    assert_eq!(race.also_rans, vec![0]);
    assert!((race.attempt_delays_ms[0] - 200.0).abs() < 0.001);
    assert_eq!(race.service, "www.example");
    assert_eq!(race.client, "198.18.0.1,fd18::1");
    let c = &race.also_ran_cancel[0];
    assert_eq!(
        (c.id, c.stage.as_str(), c.fate.as_str()),
        (0, "synack", "late_synack_reset")
    );
    // RST at 502.05 ms, winner established at 207.02 ms.
    assert!((c.after_winner_ms.unwrap() - 295.03).abs() < 0.001);
    assert_eq!(r.connections[0].role, "also_ran");
    assert_eq!(r.connections[1].role, "winner");
    assert_eq!(r.connections[0].service, "www.example");
    assert_eq!(r.summary.median_attempt_delay_ms, Some(200.0));
    // DNS timing, looked up before the race is built (the table is freed first): queries at
    // 0 and 0.1 ms, answers at 1.0 and 1.2 ms, first SYN at 2.0 ms.
    let dns = race.dns.as_ref().expect("race DNS timing");
    assert_eq!(dns.name, "www.example");
    let before_syn_ms = |t: Option<f64>| ((race.start_time - t.unwrap()) * 1e3 * 1e3).round() / 1e3;
    assert_eq!(before_syn_ms(dns.aaaa_query_time), 2.0);
    assert_eq!(before_syn_ms(dns.aaaa_answer_time), 1.0);
    assert_eq!(before_syn_ms(dns.a_query_time), 1.9);
    assert_eq!(before_syn_ms(dns.a_answer_time), 0.8);
    assert_eq!(dns.answer_to_first_syn_ms, Some(1.0));
    assert!(race.rfc8305.iter().all(|f| f != "nat64_synthesised_ipv6"));
}

#[test]
fn nat64_synthesised_ipv6_attempt_is_a_finding() {
    // The IPv6 attempt goes to 64:ff9b::/96 (RFC 6052's well-known prefix), as answered by DNS.
    let mut s = dual();
    s.dns(
        "198.18.0.1",
        "198.18.0.53",
        0.0,
        1.0,
        "v4only.example",
        28,
        &["64:ff9b::c612:2"],
    );
    let v6 = s.tcp("fd18::1", 40000, "64:ff9b::c612:2", 443);
    s.syn(v6, 2.0);
    let v4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 443);
    s.handshake(v4, 252.0, 5.0);
    s.rst(v6, Side::Client, 260.0);
    let r = run(&s, "nat64");
    assert_eq!(r.races.len(), 1);
    let race = &r.races[0];
    assert_eq!(race.attempts, vec![0, 1]);
    assert!(
        race.rfc8305.iter().any(|f| f == "nat64_synthesised_ipv6"),
        "{:?}",
        race.rfc8305
    );
    let dns = race.dns.as_ref().expect("race DNS timing");
    assert_eq!(dns.name, "v4only.example");
    assert!(dns.a_query_time.is_none());
}

#[test]
fn node_like_aborts_at_250ms() {
    let mut s = dual();
    let v6 = s.tcp("fd18::1", 40000, "fd18::2", 80);
    s.syn(v6, 0.0);
    let v4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 80);
    s.handshake(v4, 251.5, 1.0);
    s.synack(v6, 500.0).rst(v6, Side::Client, 500.02);
    let r = run(&s, "node");
    let race = &r.races[0];
    assert!((race.attempt_delays_ms[0] - 251.5).abs() < 0.001);
    assert_eq!(race.winner, Some(1));
    assert_eq!(race.also_ran_cancel[0].fate, "late_synack_reset");
}

#[test]
fn ipv6_black_holed_with_syn_retransmissions() {
    let mut s = dual();
    let v6 = s.tcp("fd18::1", 40000, "fd18::2", 80);
    s.syn(v6, 0.0).syn(v6, 1000.0).syn(v6, 3000.0);
    let v4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 80);
    s.handshake(v4, 300.0, 1.0);
    let r = run(&s, "bh");
    assert_eq!(r.connections[0].syn_count, 3);
    assert_eq!(r.connections[0].stage, "syn");
    let race = &r.races[0];
    assert_eq!(race.winner, Some(1));
    assert_eq!(race.also_ran_cancel[0].fate, "never_answered");
    assert_eq!(race.also_ran_cancel[0].after_winner_ms, None);
}

#[test]
fn ipv6_refused_with_rst() {
    let mut s = dual();
    let v6 = s.tcp("fd18::1", 40000, "fd18::2", 80);
    s.syn(v6, 0.0).rst(v6, Side::Server, 0.5);
    let v4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 80);
    s.handshake(v4, 1.0, 1.0);
    let r = run(&s, "refused");
    assert_eq!(r.connections[0].stage, "refused");
    assert_eq!(r.connections[0].conn_state, "REJ");
    let race = &r.races[0];
    assert_eq!(race.also_ran_cancel[0].fate, "refused");
    assert!((race.attempt_delays_ms[0] - 1.0).abs() < 0.001);
    assert!(race
        .rfc8305
        .contains(&"attempt_delay_below_10ms_must".to_string()));
}

#[test]
fn three_addresses_interleaved() {
    let mut s = dual();
    let a = s.tcp("fd18::1", 40000, "fd18::2", 443);
    s.syn(a, 0.0);
    let b = s.tcp("198.18.0.1", 40001, "198.18.0.2", 443);
    s.syn(b, 250.0);
    let c = s.tcp("fd18::1", 40002, "fd18::3", 443);
    s.handshake(c, 500.0, 2.0);
    let r = run(&s, "three");
    let race = &r.races[0];
    assert_eq!(race.attempts, vec![0, 1, 2]);
    assert_eq!(race.families, vec!["ipv6", "ipv4", "ipv6"]);
    assert_eq!(race.attempt_delays_ms.len(), 2);
    assert!(
        (race.attempt_delays_ms[0] - 250.0).abs() < 0.001
            && (race.attempt_delays_ms[1] - 250.0).abs() < 0.001
    );
    assert_eq!(race.winner, Some(2));
    assert_eq!(race.also_rans, vec![0, 1]);
}

#[test]
fn chromium_like_parallel_jobs_and_backup_attempt() {
    let mut s = dual();
    // Two IPv6 connect jobs 3 ms apart, a backup IPv6 attempt at 250 ms, IPv4 at 300 ms wins.
    let a = s.tcp("fd18::1", 40000, "fd18::2", 443);
    s.syn(a, 0.0);
    let b = s.tcp("fd18::1", 40001, "fd18::2", 443);
    s.syn(b, 3.0);
    let c = s.tcp("fd18::1", 40002, "fd18::2", 443);
    s.syn(c, 250.0);
    let d = s.tcp("198.18.0.1", 40003, "198.18.0.2", 443);
    s.handshake(d, 300.0, 2.0);
    // Opened after the winner was kept: not part of the race.
    let e = s.tcp("198.18.0.1", 40004, "198.18.0.2", 443);
    s.handshake(e, 400.0, 2.0);
    let r = run(&s, "chromium");
    assert_eq!(r.races.len(), 1);
    let race = &r.races[0];
    assert_eq!(race.attempts, vec![0, 1, 2, 3]);
    assert_eq!(race.attempt_delays_ms, vec![300.0]);
    assert_eq!(race.winner, Some(3));
    assert_eq!(r.connections[4].role, "single");
    assert_eq!(r.connections[4].race, None);
}

#[test]
fn no_race_when_ipv6_connects_at_once() {
    let mut s = dual();
    let a = s.tcp("fd18::1", 40000, "fd18::2", 443);
    s.handshake(a, 0.0, 5.0);
    let b = s.tcp("198.18.0.1", 40001, "198.18.0.2", 443);
    s.handshake(b, 50.0, 5.0);
    let r = run(&s, "norace");
    assert_eq!(r.races.len(), 0);
    assert!(r.connections.iter().all(|c| c.role == "single"));
}

#[test]
fn a_pool_to_one_address_is_not_a_race() {
    let mut s = dual();
    for i in 0..6 {
        let c = s.tcp("198.18.0.1", 40000 + i, "198.18.0.2", 443);
        s.handshake(c, f64::from(i) * 2.0, 30.0);
    }
    let r = run(&s, "pool");
    assert_eq!(r.races.len(), 0);
    assert_eq!(r.summary.connections, 6);
}

#[test]
fn two_clients_interleaved() {
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    s.same_host("198.18.0.11", "fd18::11");
    let a6 = s.tcp("fd18::1", 40000, "fd18::2", 80);
    s.syn(a6, 0.0);
    let b6 = s.tcp("fd18::11", 50000, "fd18::2", 80);
    s.syn(b6, 10.0);
    let a4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 80);
    s.handshake(a4, 200.0, 1.0);
    let b4 = s.tcp("198.18.0.11", 50001, "198.18.0.2", 80);
    s.handshake(b4, 310.0, 1.0);
    let r = run(&s, "two");
    assert_eq!(r.races.len(), 2);
    assert_eq!(r.races[0].client, "198.18.0.1,fd18::1");
    assert_eq!(r.races[0].attempts, vec![0, 2]);
    assert!((r.races[0].attempt_delays_ms[0] - 200.0).abs() < 0.001);
    assert_eq!(r.races[1].client, "198.18.0.11,fd18::11");
    assert_eq!(r.races[1].attempts, vec![1, 3]);
    assert!((r.races[1].attempt_delays_ms[0] - 300.0).abs() < 0.001);
}

#[test]
fn capture_starting_after_the_first_syn() {
    let mut s = dual();
    let v6 = s.tcp("fd18::1", 40000, "fd18::2", 80);
    s.syn(v6, 0.0);
    let v4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 80);
    s.handshake(v4, 200.0, 1.0);
    s.synack(v6, 500.0).rst(v6, Side::Client, 500.01);
    let frames = s.frames(racetrace_synth::Link::Ethernet);
    let bytes =
        racetrace_synth::write_pcap(&frames[1..], racetrace_synth::Link::Ethernet, false, 65535);
    let r = analyze_json(&write_temp("late", "l.pcap", &bytes), &[]);
    assert_eq!(
        r.races.len(),
        0,
        "an attempt whose SYN is not in the capture takes no part"
    );
    let v6c = r.connections.iter().find(|c| c.family == "ipv6").unwrap();
    assert!(!v6c.handshake_seen);
    assert_eq!(v6c.client_ip, "fd18::1");
}

#[test]
fn service_option_names_what_the_capture_cannot() {
    let mut s = dual();
    let v6 = s.tcp("fd18::1", 40000, "fd18::2", 80);
    s.syn(v6, 0.0);
    let v4 = s.tcp("198.18.0.1", 40001, "198.18.0.2", 80);
    s.handshake(v4, 200.0, 1.0);
    let p = write_temp("svc", "s.pcap", &s.to_pcap());
    let r = analyze_json(&p, &[]);
    assert_eq!(r.races[0].service, "fd18::2 80");
    let r = analyze_json(&p, &["--service", "api.example=198.18.0.2,fd18::2"]);
    assert_eq!(r.races[0].service, "api.example");
    assert!(r.connections.iter().all(|c| c.service == "api.example"));
}

/// Per client, the attempt-delay class: fixed near a known default (Chromium's 300 ms) or
/// dynamic (Safari-like, from RTT history).
#[test]
fn attempt_delay_class_per_client() {
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    s.same_host("198.18.0.9", "fd18::9");
    let rounds = [(300.4, 51.0), (300.9, 420.0), (301.2, 1250.0)];
    for (k, (fixed, dynamic)) in rounds.iter().enumerate() {
        let t0 = 10_000.0 * k as f64;
        for (client, delay, port) in [("1", *fixed, 40000), ("9", *dynamic, 42000)] {
            let p = port + 2 * k as u16;
            let v6 = s.tcp(&format!("fd18::{client}"), p, "fd18::2", 443);
            s.syn(v6, t0);
            let v4 = s.tcp(&format!("198.18.0.{client}"), p + 1, "198.18.0.2", 443);
            s.handshake(v4, t0 + delay, 1.0);
            s.rst(v6, Side::Client, t0 + delay + 2.0);
            s.data(v4, Side::Client, t0 + delay + 3.0, b"x");
        }
    }
    let path = write_temp("delayclass", "r.pcap", &s.to_pcap());
    let (r, _) = analyze_value(&path, &[]);
    assert_eq!(r["races"].as_array().unwrap().len(), 6);
    let clients = r["clients"].as_array().unwrap();
    let by = |label: &str| {
        clients
            .iter()
            .find(|c| c["client"] == label)
            .map(|c| c["attempt_delay"].clone())
            .unwrap()
    };
    let fixed = by("198.18.0.1,fd18::1");
    assert_eq!(fixed["class"], "fixed");
    assert_eq!(fixed["races"], 3);
    assert_eq!(fixed["near_default_ms"], 300);
    assert!((fixed["median_ms"].as_f64().unwrap() - 300.9).abs() < 1e-9);
    let dynamic = by("198.18.0.9,fd18::9");
    assert_eq!(dynamic["class"], "dynamic");
    assert!((dynamic["min_ms"].as_f64().unwrap() - 51.0).abs() < 1e-9);
    assert!((dynamic["max_ms"].as_f64().unwrap() - 1250.0).abs() < 1e-9);
    assert_eq!(dynamic["near_default_ms"], serde_json::Value::Null);
}

/// Real clients: curl's fixed 200 ms and Node's fixed 250 ms.
#[test]
fn real_clients_have_fixed_attempt_delays() {
    for (file, near) in [("he_curl_v6slow", 200), ("he_node_v6slow", 250)] {
        let path = captures().join(format!("{file}.pcap"));
        let (r, _) = analyze_value(&path, &[]);
        let d = &r["clients"][0]["attempt_delay"];
        assert_eq!(d["class"], "fixed", "{file}");
        assert_eq!(d["races"], 5, "{file}");
        assert_eq!(d["near_default_ms"], near, "{file}");
    }
}
