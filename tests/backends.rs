//! Backends from TCP timestamp clocks on captures from the test capture writer: accuracy
//! (pairwise precision and recall of backend labels), the regimes that must not invent
//! backends, and the sequences with their family and backend switches.

mod support;

use racetrace_core::domain::Side;
use racetrace_synth::Scenario;
use serde_json::Value;
use support::*;

const VIP4: &str = "198.51.100.10";
const VIP6: &str = "2001:db8::10";

/// One connection to a VIP whose server side runs `clock` (hz, offset); long connections
/// carry server data for 2 s so their own rate can be measured. Returns its start.
#[allow(clippy::too_many_arguments)]
fn connection(
    s: &mut Scenario,
    rng: &mut Rng,
    v6: bool,
    port: u16,
    t: f64,
    hz: f64,
    offset: u32,
    long: bool,
) {
    let (client, vip) = if v6 {
        ("2001:db8:1::1", VIP6)
    } else {
        ("198.51.100.1", VIP4)
    };
    let c = s.tcp(client, port, vip, 443);
    s.conn_clock(c, Side::Server, hz, offset);
    s.ts_lag(c, Side::Server, 0.2 + 3.0 * rng.unit()); // a few ms of jitter
    s.handshake(c, t, 1.0);
    s.data(c, Side::Client, t + 2.0, b"request");
    s.data(c, Side::Server, t + 3.0, b"response");
    if long {
        s.data(c, Side::Server, t + 2000.0, b"more");
    }
    let end = if long { t + 2100.0 } else { t + 50.0 };
    s.fin(c, Side::Client, end).fin(c, Side::Server, end + 0.5);
}

fn run(s: &Scenario, tag: &str, extra: &[&str]) -> Value {
    analyze_value(&write_temp(tag, "b.pcap", &s.to_pcap()), extra).0
}

/// Pairwise precision and recall of predicted labels against the truth.
fn pairwise(pred: &[Option<String>], truth: &[usize]) -> (f64, f64) {
    let (mut both, mut p, mut t) = (0.0, 0.0, 0.0);
    for i in 0..truth.len() {
        for j in i + 1..truth.len() {
            let same_pred = pred[i].is_some() && pred[i] == pred[j];
            let same_truth = truth[i] == truth[j];
            both += f64::from(u8::from(same_pred && same_truth));
            p += f64::from(u8::from(same_pred));
            t += f64::from(u8::from(same_truth));
        }
    }
    (both / p.max(1.0), both / t.max(1.0))
}

fn labels(r: &Value) -> Vec<Option<String>> {
    r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["backend"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn three_backends_behind_two_vips_are_told_apart() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // 1000 Hz wrapping 30 s into the capture; 250 Hz with 80 ppm skew; 100 Hz.
    let clocks = [
        (1000.0, u32::MAX - 30_000),
        (250.0 * (1.0 + 80e-6), 1_234_567_890),
        (100.0, 3_000_000_000),
    ];
    let mut s = Scenario::new();
    s.same_host("198.51.100.1", "2001:db8:1::1");
    let mut truth = Vec::new();
    for k in 0..60u16 {
        let b = (rng.next() % 3) as usize;
        let v6 = rng.next().is_multiple_of(2);
        let t = 2500.0 * f64::from(k) + 300.0 * rng.unit();
        let (hz, off) = clocks[b];
        connection(&mut s, &mut rng, v6, 40000 + k, t, hz, off, k % 2 == 0);
        truth.push(b);
    }
    let r = run(&s, "three", &["--service", &format!("app={VIP4},{VIP6}")]);
    let pred = labels(&r);
    let (precision, recall) = pairwise(&pred, &truth);
    eprintln!("three backends: pairwise precision {precision:.4}, recall {recall:.4}");
    assert!(precision >= 0.99, "precision {precision}");
    assert!(recall >= 0.99, "recall {recall}");
    let backends = r["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 3);
    let mut rates: Vec<f64> = backends
        .iter()
        .map(|b| b["clock_hz"].as_f64().unwrap())
        .collect();
    rates.sort_by(f64::total_cmp);
    assert_eq!(rates, vec![100.0, 250.0, 1000.0]);
    for b in backends {
        assert_eq!(b["server_ips"], serde_json::json!([VIP4, VIP6]));
        assert_eq!(b["services"], serde_json::json!(["app"]));
        if b["clock_hz"] == 250.0 {
            let skew = b["skew_ppm"].as_f64().unwrap();
            assert!((skew - 80.0).abs() < 15.0, "skew {skew}");
        }
    }
    // The sequence: every family switch counted, backend switches between known backends.
    assert_eq!(r["sequences"].as_array().unwrap().len(), 1);
    let seq = &r["sequences"][0];
    assert_eq!(seq["client"], "198.51.100.1,2001:db8:1::1");
    let fams: Vec<&str> = seq["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let expect_fs = fams.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(seq["family_switches"], expect_fs);
    let expect_bs = truth.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(seq["backend_switches"], expect_bs);
    assert_eq!(r["summary"]["backends"], 3);
    assert_eq!(r["summary"]["backend_switches"], expect_bs);
}

#[test]
fn random_offsets_per_connection_invent_no_backend() {
    let mut rng = Rng(42);
    let mut s = Scenario::new();
    for k in 0..40u16 {
        let off = rng.next() as u32;
        let t = 1500.0 * f64::from(k);
        connection(
            &mut s,
            &mut rng,
            k % 3 == 0,
            40000 + k,
            t,
            1000.0,
            off,
            k % 2 == 0,
        );
    }
    let r = run(&s, "random", &[]);
    assert_eq!(r["backends"], serde_json::json!([]));
    assert!(labels(&r).iter().all(Option::is_none));
    // Each service says so, with its regimes, and a warning names it.
    for svc in r["services"].as_array().unwrap() {
        assert_eq!(svc["backend_identified_share"], 0.0);
        assert!(svc["clock_regimes"]
            .as_array()
            .unwrap()
            .contains(&Value::from("unmatched")));
    }
    let w: Vec<&Value> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "backends_unidentifiable")
        .collect();
    assert_eq!(w.len(), 2);
}

/// One offset per (client address, server address) pair: the host's IPv4 and IPv6
/// connections form two backends (no sibling rule merges them).
#[test]
fn per_pair_offsets_form_one_backend_per_family() {
    let mut rng = Rng(7);
    let mut s = Scenario::new();
    for k in 0..20u16 {
        let v6 = k % 2 == 1;
        let off = if v6 { 111_111_111 } else { 3_333_333_333 };
        connection(
            &mut s,
            &mut rng,
            v6,
            40000 + k,
            1000.0 * f64::from(k),
            1000.0,
            off,
            false,
        );
    }
    let r = run(&s, "pair", &[]);
    let b = r["backends"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0]["connections"].as_array().unwrap().len(), 10);
    assert_eq!(b[1]["connections"].as_array().unwrap().len(), 10);
    assert_ne!(b[0]["server_ips"], b[1]["server_ips"]);
}

/// A TCP-terminating proxy on IPv4 (one clock for every IPv4 connection) and three
/// backends on IPv6: the proxy is its own backend.
#[test]
fn tcp_terminating_proxy_is_its_own_backend() {
    let mut rng = Rng(99);
    let mut s = Scenario::new();
    let v6clocks = [
        (1000.0, 5_000u32),
        (1000.0, 900_000_000),
        (250.0, 2_000_000_000),
    ];
    let mut truth = Vec::new();
    for k in 0..36u16 {
        let t = 1200.0 * f64::from(k);
        if k % 2 == 0 {
            connection(
                &mut s,
                &mut rng,
                false,
                40000 + k,
                t,
                1000.0,
                4_000_000_000,
                false,
            );
            truth.push(9);
        } else {
            let b = (k as usize / 2) % 3;
            let (hz, off) = v6clocks[b];
            connection(&mut s, &mut rng, true, 40000 + k, t, hz, off, false);
            truth.push(b);
        }
    }
    let r = run(&s, "proxy", &[]);
    let (precision, recall) = pairwise(&labels(&r), &truth);
    assert!(precision >= 0.99 && recall >= 0.99, "{precision} {recall}");
    let b = r["backends"].as_array().unwrap();
    assert_eq!(b.len(), 4);
    let proxy: Vec<&Value> = b
        .iter()
        .filter(|x| x["server_ips"] == serde_json::json!([VIP4]))
        .collect();
    assert_eq!(proxy.len(), 1);
    assert_eq!(proxy[0]["connections"].as_array().unwrap().len(), 18);
}

/// The DNAT load balancer with three backends of which one (be3) has a stable clock.
#[test]
fn real_dnat_load_balancer() {
    let path = captures().join("lb_backends.pcap");
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(captures().join("lb_backends.truth.json")).unwrap(),
    )
    .unwrap();
    let r = analyze_value(&path, &["--service", "vip=198.18.100.10,fd18:100::10"]).0;
    let b = r["backends"].as_array().unwrap();
    assert_eq!(b.len(), 1);
    let members: Vec<u64> = b[0]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let backend_of = |port: u64| {
        truth["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_port"] == port)
            .map(|c| c["backend"].as_str().unwrap().to_string())
            .unwrap()
    };
    let conns = r["connections"].as_array().unwrap();
    let be3: Vec<u64> = conns
        .iter()
        .filter(|c| backend_of(c["client_port"].as_u64().unwrap()) == "be3")
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(members, be3);
    assert_eq!(
        b[0]["server_ips"],
        serde_json::json!(["198.18.100.10", "fd18:100::10"])
    );
    assert_eq!(b[0]["clock_hz"], 1000.0);
    // be1 and be2 (random offsets per connection) stay unidentified.
    assert_eq!(conns.iter().filter(|c| c["backend"].is_null()).count(), 22);
    assert_eq!(r["summary"]["family_switches"], 13);
    assert_eq!(r["sequences"].as_array().unwrap().len(), 1);
}
