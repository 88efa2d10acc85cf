//! `samples/` is built by the test capture writer, so every sample can be rebuilt:
//! `RACETRACE_WRITE_SAMPLES=1 cargo test --test samples` rewrites them; otherwise this test
//! checks that the committed files are exactly what the writer produces, and that each shows
//! its finding.

mod support;

use racetrace_core::domain::Side;
use racetrace_synth::Scenario;
use support::*;

fn curl_like_v6_slow() -> Scenario {
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    for (i, t0) in [0.0, 1500.0, 3000.0].into_iter().enumerate() {
        let i = i as u16;
        s.dns(
            "198.18.0.1",
            "198.18.0.53",
            t0,
            t0 + 0.8,
            "www.example",
            28,
            &["fd18::2"],
        );
        s.dns(
            "198.18.0.1",
            "198.18.0.53",
            t0 + 0.1,
            t0 + 0.9,
            "www.example",
            1,
            &["198.18.0.2"],
        );
        let v6 = s.tcp("fd18::1", 41000 + i, "fd18::2", 80);
        s.syn(v6, t0 + 1.0);
        let v4 = s.tcp("198.18.0.1", 51000 + i, "198.18.0.2", 80);
        s.handshake(v4, t0 + 201.0, 0.4);
        s.data(
            v4,
            Side::Client,
            t0 + 201.5,
            b"GET / HTTP/1.1\r\nHost: www.example\r\n\r\n",
        );
        s.data(
            v4,
            Side::Server,
            t0 + 202.0,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        s.synack(v6, t0 + 501.0).rst(v6, Side::Client, t0 + 501.02);
        s.fin(v4, Side::Client, t0 + 203.0)
            .fin(v4, Side::Server, t0 + 203.3)
            .ack(v4, Side::Client, t0 + 203.4);
    }
    s
}

fn chromium_like_v6_blackhole() -> Scenario {
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    let a = s.tcp("fd18::1", 42000, "fd18::2", 443);
    s.syn(a, 0.0).syn(a, 1000.0);
    let b = s.tcp("fd18::1", 42001, "fd18::2", 443);
    s.syn(b, 3.0).syn(b, 1003.0);
    let c = s.tcp("fd18::1", 42002, "fd18::2", 443);
    s.syn(c, 250.0);
    let d = s.tcp("198.18.0.1", 52003, "198.18.0.2", 443);
    s.handshake(d, 300.0, 1.0);
    s.data(d, Side::Client, 301.5, &[0x16, 3, 1, 0, 4, 1, 0, 0, 0]);
    s
}

fn refused_and_pool() -> Scenario {
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    let v6 = s.tcp("fd18::1", 43000, "fd18::2", 8080);
    s.syn(v6, 0.0).rst(v6, Side::Server, 0.3);
    let v4 = s.tcp("198.18.0.1", 53000, "198.18.0.2", 8080);
    s.handshake(v4, 2.0, 0.3);
    for i in 0..4u16 {
        let p = s.tcp("198.18.0.1", 53100 + i, "198.18.0.2", 8080);
        s.handshake(p, 5000.0 + f64::from(i), 0.3);
        s.fin(p, Side::Client, 6000.0 + f64::from(i))
            .fin(p, Side::Server, 6000.5 + f64::from(i));
    }
    s
}

/// A load balancer behind one IPv4 and one IPv6 address with three backends whose TCP
/// timestamp clocks are stable (1000, 250 and 100 Hz); the client alternates families and
/// lands on a different backend each time it switches.
fn lb_three_stable_backends() -> Scenario {
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    let clocks = [
        (1000.0, 4_000_000_000u32),
        (250.0, 1_234_567),
        (100.0, 77_000_000),
    ];
    let plan = [0, 0, 1, 1, 2, 0, 1, 1, 2, 2, 0, 0];
    for (k, &b) in plan.iter().enumerate() {
        let v6 = b != 1;
        let (client, vip) = if v6 {
            ("fd18::1", "fd18:100::10")
        } else {
            ("198.18.0.1", "198.18.100.10")
        };
        let c = s.tcp(client, 44000 + k as u16, vip, 443);
        let (hz, off) = clocks[b];
        s.conn_clock(c, Side::Server, hz, off);
        let t = 1000.0 * k as f64;
        s.handshake(c, t, 1.0);
        s.data(
            c,
            Side::Client,
            t + 2.0,
            &racetrace_synth::tls::client_hello("shop.example", &["http/1.1"]),
        );
        s.data(
            c,
            Side::Server,
            t + 3.0,
            &racetrace_synth::tls::server_hello(true),
        );
        s.fin(c, Side::Client, t + 300.0)
            .fin(c, Side::Server, t + 300.5);
    }
    s
}

/// wss: both attempts complete TLS 1.3 and send application data: a duplicate upgrade
/// inferred from sizes (the request itself is encrypted).
fn wss_inferred_duplicate() -> Scenario {
    use racetrace_synth::tls;
    let (mut s, v6, v4) = wss_race("ws.example", 45000, 320);
    for (c, t) in [(v4, 252.0), (v6, 261.0)] {
        s.data(c, Side::Server, t + 4.0, &tls::app_data(180));
    }
    s.fin(v6, Side::Client, 280.0).fin(v6, Side::Server, 280.5);
    s.fin(v4, Side::Client, 3000.0)
        .fin(v4, Side::Server, 3000.5);
    s
}

/// A sample: its file name and the scenario that builds it.
type Sample = (&'static str, fn() -> Scenario);

const SAMPLES: [Sample; 5] = [
    ("lb_three_stable_backends.pcap", lb_three_stable_backends),
    ("wss_inferred_duplicate.pcap", wss_inferred_duplicate),
    ("he_curl_like_v6_slow.pcap", curl_like_v6_slow),
    (
        "he_chromium_like_v6_blackhole.pcap",
        chromium_like_v6_blackhole,
    ),
    ("he_refused_then_pool.pcap", refused_and_pool),
];

fn samples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

#[test]
fn committed_samples_are_what_the_writer_builds() {
    for (name, build) in SAMPLES {
        let bytes = build().to_pcap();
        let path = samples_dir().join(name);
        if std::env::var_os("RACETRACE_WRITE_SAMPLES").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: rebuild with RACETRACE_WRITE_SAMPLES=1"
        );
    }
}

#[test]
fn every_sample_shows_its_finding() {
    let r = analyze_json(&samples_dir().join("he_curl_like_v6_slow.pcap"), &[]);
    assert_eq!((r.summary.races, r.summary.also_rans), (3, 3));
    assert_eq!(r.summary.median_attempt_delay_ms, Some(200.0));
    assert!(r
        .races
        .iter()
        .all(|x| x.service == "www.example" && x.winner_family.as_deref() == Some("ipv4")));

    let r = analyze_json(
        &samples_dir().join("he_chromium_like_v6_blackhole.pcap"),
        &[],
    );
    assert_eq!(r.races.len(), 1);
    assert_eq!(r.races[0].attempts, vec![0, 1, 2, 3]);
    assert_eq!(r.races[0].attempt_delays_ms, vec![300.0]);

    let (r, _) = analyze_value(
        &samples_dir().join("lb_three_stable_backends.pcap"),
        &["--service", "shop=198.18.100.10,fd18:100::10"],
    );
    assert_eq!(r["summary"]["backends"], 3);
    assert_eq!(r["summary"]["family_switches"], 4);
    assert_eq!(r["summary"]["backend_switches"], 6);
    assert_eq!(
        r["sequences"][0]["strip"],
        "6B1 6B1 4B2 4B2 6B3 6B1 4B2 4B2 6B3 6B3 6B1 6B1"
    );
    let (r, _) = analyze_value(&samples_dir().join("wss_inferred_duplicate.pcap"), &[]);
    assert_eq!(r["races"][0]["duplicate_upgrade"], true);
    assert_eq!(r["races"][0]["duplicate_upgrade_inferred"], true);
    assert_eq!(r["races"][0]["also_ran_cancel"][0]["stage"], "tls");

    let r = analyze_json(&samples_dir().join("he_refused_then_pool.pcap"), &[]);
    assert_eq!(r.races.len(), 1);
    assert_eq!(r.races[0].also_ran_cancel[0].fate, "refused");
    assert_eq!(
        r.connections.iter().filter(|c| c.role == "single").count(),
        4
    );
}
