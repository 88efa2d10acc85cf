//! The listener's view: short-lived connections (no payload either way) told apart by why they
//! came. One capture holds, at one listener, a SYN flood, a port scan, a health check, a client
//! that connected and reset at once, and real racing clients whose also-rans reach it.

mod support;

use racetrace_core::domain::Side;
use racetrace_synth::Scenario;
use serde_json::Value;
use support::*;

const LISTENER: &str = "192.0.2.80";

fn mixed() -> Scenario {
    let mut s = mixed_races();
    // A SYN flood: 400 SYNs from 200 sources in 2 s, none answered.
    for i in 0..400u32 {
        let src = format!("10.1.{}.{}", i % 200 / 100, i % 100 + 1);
        let c = s.tcp(&src, 50000 + (i / 200) as u16, LISTENER, 80);
        s.syn(c, 10_000.0 + f64::from(i) * 5.0);
    }
    // A port scan: SYNs to ports 1-30, refused by RST but for 22 and 25, which answer and are
    // reset by the scanner.
    for p in 1..=30u16 {
        let c = s.tcp("203.0.113.9", 60000 + p, LISTENER, p);
        let t = 20_000.0 + f64::from(p) * 10.0;
        s.syn(c, t);
        if p == 22 || p == 25 {
            s.synack(c, t + 1.0);
            s.rst(c, Side::Client, t + 1.5);
        } else {
            s.rst(c, Side::Server, t + 1.0);
        }
    }
    // A health check: connect and close every 5 s, six times.
    for k in 0..6u16 {
        let c = s.tcp("198.51.100.7", 33000 + k, LISTENER, 80);
        let t = 30_000.0 + f64::from(k) * 5000.0;
        s.handshake(c, t, 2.0);
        s.fin(c, Side::Client, t + 3.0);
        s.fin(c, Side::Server, t + 4.0);
    }
    // A client that connects and resets at once: nothing explains it.
    let c = s.tcp("198.51.100.20", 34000, LISTENER, 80);
    s.handshake(c, 40_000.0, 2.0);
    s.rst(c, Side::Client, 40_003.0);
    s
}

fn listener<'a>(j: &'a Value, service: &str, port: u64) -> &'a Value {
    j["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["service"] == service && l["server_port"] == port)
        .unwrap_or_else(|| panic!("no listener {service} {port}: {}", j["listeners"]))
}

#[test]
fn floods_scans_health_checks_and_also_rans_are_told_apart() {
    let path = write_temp("listeners", "mixed.pcap", &mixed().to_pcap());
    let (j, _) = analyze_value(&path, &[]);
    assert_eq!(j["summary"]["races"], 2, "{}", j["races"]);

    let l = listener(&j, &format!("{LISTENER} 80"), 80);
    assert_eq!(
        [
            &l["connections"],
            &l["short_lived"],
            &l["flood"],
            &l["scan"],
            &l["health_check"],
            &l["also_ran"],
            &l["unexplained"]
        ],
        [407, 407, 400, 0, 6, 0, 1],
        "{l}"
    );
    let racer = listener(&j, "www.example", 80);
    assert_eq!(
        [
            &racer["connections"],
            &racer["short_lived"],
            &racer["also_ran"],
            &racer["unexplained"]
        ],
        [4, 2, 2, 0],
        "{racer}"
    );
    // The scan's thirty ports are thirty services, one scan connection each.
    for p in 1..=30u64 {
        let l = listener(&j, &format!("{LISTENER} {p}"), p);
        assert_eq!([&l["short_lived"], &l["scan"]], [1, 1], "{l}");
    }

    let floods = j["floods"].as_array().unwrap();
    assert_eq!(floods.len(), 1, "{floods:?}");
    let f = &floods[0];
    assert_eq!(f["service"], format!("{LISTENER} 80"));
    assert_eq!(
        [
            &f["attempts"],
            &f["sources"],
            &f["peak_per_s"],
            &f["answered"],
            &f["reset"]
        ],
        [400, 200, 200, 0, 0]
    );
    let span = f["end_time"].as_f64().unwrap() - f["start_time"].as_f64().unwrap();
    assert!((span - 1.995).abs() < 1e-6, "{f}");

    let scans = j["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 1, "{scans:?}");
    let sc = &scans[0];
    assert_eq!(
        [&sc["source"], &sc["kind"], &sc["host"], &sc["port"]],
        [
            &Value::from("203.0.113.9"),
            &"port".into(),
            &LISTENER.into(),
            &Value::Null
        ]
    );
    assert_eq!([&sc["targets"], &sc["attempts"], &sc["open"]], [30, 30, 2]);

    let checks = j["health_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    let h = &checks[0];
    assert_eq!(
        [&h["source"], &h["service"]],
        ["198.51.100.7", &format!("{LISTENER} 80")]
    );
    assert_eq!([&h["checks"], &h["interval_ms"]], [6.0, 5000.0]);
}

/// Below the thresholds nothing is called a flood, a scan or a health check: nine ports of one
/// host, a burst of 99 SYNs in a second from nine sources, and a pool of four connections
/// opened 1 ms apart and closed unused stay unexplained.
#[test]
fn below_the_thresholds_nothing_is_a_flood_or_a_scan() {
    let mut s = Scenario::new();
    for p in 1..=9u16 {
        let c = s.tcp("203.0.113.9", 60000 + p, LISTENER, p);
        s.syn(c, f64::from(p) * 10.0);
        s.rst(c, Side::Server, f64::from(p) * 10.0 + 1.0);
    }
    for i in 0..99u32 {
        let src = format!("10.1.0.{}", i % 9 + 1);
        let c = s.tcp(&src, 50000 + i as u16, LISTENER, 80);
        s.syn(c, 2000.0 + f64::from(i) * 5.0);
    }
    for k in 0..4u16 {
        let c = s.tcp("198.51.100.7", 33000 + k, LISTENER, 443);
        let t = 5000.0 + f64::from(k);
        s.handshake(c, t, 2.0);
        s.fin(c, Side::Client, t + 3.0);
        s.fin(c, Side::Server, t + 4.0);
    }
    let path = write_temp("listeners", "quiet.pcap", &s.to_pcap());
    let (j, _) = analyze_value(&path, &[]);
    assert_eq!(j["floods"].as_array().unwrap().len(), 0, "{}", j["floods"]);
    assert_eq!(j["scans"].as_array().unwrap().len(), 0, "{}", j["scans"]);
    let l = listener(&j, &format!("{LISTENER} 80"), 80);
    assert_eq!([&l["short_lived"], &l["unexplained"]], [99, 99]);
    assert_eq!(j["health_checks"].as_array().unwrap().len(), 0);
    let pool = listener(&j, &format!("{LISTENER} 443"), 443);
    assert_eq!([&pool["short_lived"], &pool["unexplained"]], [4, 4]);
}

/// A capture a flood dominates: 12,000 half-open attempts from 6,000 sources in 60 s beside
/// two races. By default the flood's connections are left to `floods[]` (counted in
/// `connections_omitted`, with one warning line); the races' attempts stay listed, with their
/// ids. `--connections all` lists everything; `none` only what the findings cite.
#[test]
fn a_flood_is_summarised_not_listed() {
    let mut s = mixed_races();
    for i in 0..12_000u32 {
        let src = format!(
            "10.{}.{}.{}",
            1 + i % 6000 / 62_500,
            i % 6000 / 250,
            i % 250 + 1
        );
        let c = s.tcp(&src, 50000 + (i / 6000) as u16, LISTENER, 80);
        s.syn(c, 10_000.0 + f64::from(i) * 5.0);
    }
    let path = write_temp("listeners", "flooded.pcap", &s.to_pcap());
    let ids = |j: &Value| -> Vec<u64> {
        j["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect()
    };
    let out = racetrace(&["analyze", path.to_str().unwrap(), "--json", "-"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("summarised in floods[] and scans[]"),
        "{stderr}"
    );
    let (j, _) = analyze_value(&path, &[]);
    assert_eq!(j["summary"]["connections"], 12_004);
    assert_eq!(j["summary"]["connections_omitted"], 12_000);
    assert_eq!(j["floods"][0]["attempts"], 12_000);
    let listed = ids(&j);
    assert_eq!(listed.len(), 4);
    for r in j["races"].as_array().unwrap() {
        for a in r["attempts"].as_array().unwrap() {
            assert!(
                listed.contains(&a.as_u64().unwrap()),
                "race attempt {a} not listed"
            );
        }
    }
    // `clients[]` holds the hosts of the listed connections: the racing clients, none of the
    // flood's 6,000 sources.
    // The distinct `client` members of a list of the report, sorted.
    let labels = |list: &Value| -> Vec<String> {
        let mut v: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let clients = |j: &Value| labels(&j["clients"]);
    let racing = labels(&j["connections"]);
    assert_eq!(clients(&j), racing);
    let (all, _) = analyze_value(&path, &["--connections", "all"]);
    assert_eq!(all["summary"]["connections_omitted"], 0);
    assert_eq!(ids(&all).len(), 12_004);
    assert_eq!(clients(&all).len(), racing.len() + 6000);
    // `none`: the races' four attempts, and nothing else.
    let (none, _) = analyze_value(&path, &["--connections", "none"]);
    assert_eq!(ids(&none), listed);
}

/// The two races of [`mixed`], alone.
fn mixed_races() -> Scenario {
    let mut s = Scenario::new();
    s.same_host("198.18.0.5", "fd00::5");
    for (k, t) in [(0u16, 0.0), (1, 3000.0)] {
        let v6 = s.tcp("fd00::5", 41000 + k, "2001:db8::80", 80);
        let v4 = s.tcp("198.18.0.5", 42000 + k, LISTENER, 80);
        s.syn(v6, t);
        s.handshake(v4, t + 250.0, 10.0);
        s.data(
            v4,
            Side::Client,
            t + 261.0,
            b"GET / HTTP/1.1\r\nHost: www.example\r\n\r\n",
        );
        s.data(
            v4,
            Side::Server,
            t + 270.0,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        s.synack(v6, t + 400.0);
        s.rst(v6, Side::Client, t + 400.5);
        s.fin(v4, Side::Client, t + 500.0);
        s.fin(v4, Side::Server, t + 510.0);
    }
    s
}
