//! Real captures of real clients (tests/data/captures, made in network namespaces, with truth
//! files built from the clients' and servers' own logs): racetrace lists exactly the truth's
//! connections, agrees with tshark's dissection (committed in tests/data/tshark, made by
//! tests/data/tshark/make.sh), and finds the races the truth describes.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::*;

const CAPTURES: [&str; 7] = [
    "he_curl_v6blackhole",
    "he_curl_v6slow",
    "he_node_v6slow",
    "lb_backends",
    "stale_reuse_curl",
    "ws_cancel",
    "ws_duplicate",
];

type Tuple = (String, u16, String, u16);

fn truth(name: &str) -> Value {
    let p = captures().join(format!("{name}.truth.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn report(name: &str, extra: &[&str]) -> Report {
    analyze_json(&captures().join(format!("{name}.pcap")), extra)
}

fn tuple(c: &Conn) -> Tuple {
    (
        c.client_ip.clone(),
        c.client_port,
        c.server_ip.clone(),
        c.server_port,
    )
}

/// tshark's view of one TCP stream.
#[derive(Debug, Default)]
struct Stream {
    client: Option<(String, u16)>,
    syn: Option<f64>,
    synack: Option<f64>,
    end: Option<(f64, bool, bool)>, // time, sent by client, is RST
    first_frame: u64,
    last_frame: u64,
}

fn tshark_streams(name: &str) -> BTreeMap<Tuple, Stream> {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/tshark/{name}.csv",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut by_stream: BTreeMap<u64, (Tuple, Stream)> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (frame, t, stream) = (
            f[0].parse::<u64>().unwrap(),
            f[1].parse::<f64>().unwrap(),
            f[2].parse::<u64>().unwrap(),
        );
        let src = if f[3].is_empty() { f[4] } else { f[3] }.to_string();
        let dst = if f[6].is_empty() { f[7] } else { f[6] }.to_string();
        let (sport, dport): (u16, u16) = (f[5].parse().unwrap(), f[8].parse().unwrap());
        let (syn, ack, fin, rst) = (f[9] == "1", f[10] == "1", f[11] == "1", f[12] == "1");
        let e = by_stream.entry(stream).or_insert_with(|| {
            let client_is_src = (syn && !ack) || (!syn && sport >= dport);
            let tuple = if client_is_src {
                (src.clone(), sport, dst.clone(), dport)
            } else {
                (dst.clone(), dport, src.clone(), sport)
            };
            (
                tuple,
                Stream {
                    first_frame: frame,
                    ..Default::default()
                },
            )
        });
        let from_client = e.0 .0 == src && e.0 .1 == sport;
        let s = &mut e.1;
        s.last_frame = frame;
        if syn && !ack && s.syn.is_none() {
            s.syn = Some(t);
        }
        if syn && ack && s.synack.is_none() {
            s.synack = Some(t);
        }
        if (fin || rst) && s.end.is_none() {
            s.end = Some((t, from_client, rst));
        }
        s.client.get_or_insert((e.0 .0.clone(), e.0 .1));
    }
    by_stream.into_values().collect()
}

#[test]
fn connections_match_truth_and_tshark() {
    for name in CAPTURES {
        let r = report(name, &[]);
        let t = truth(name);
        let truth_tuples: BTreeSet<Tuple> = t["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["client_ip"].as_str().unwrap().to_string(),
                    c["client_port"].as_u64().unwrap() as u16,
                    c["server_ip"].as_str().unwrap().to_string(),
                    c["server_port"].as_u64().unwrap() as u16,
                )
            })
            .collect();
        let ours: BTreeSet<Tuple> = r.connections.iter().map(tuple).collect();
        assert_eq!(
            ours, truth_tuples,
            "{name}: connections differ from the truth"
        );
        assert_eq!(
            r.connections.len(),
            truth_tuples.len(),
            "{name}: duplicate records"
        );

        let shark = tshark_streams(name);
        assert_eq!(shark.len(), r.connections.len(), "{name}: tshark streams");
        for c in &r.connections {
            let s = shark
                .get(&tuple(c))
                .unwrap_or_else(|| panic!("{name}: {c:?} not in tshark"));
            let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-6,
                (None, None) => true,
                _ => false,
            };
            assert!(
                close(c.syn_time, s.syn),
                "{name} #{}: SYN {:?} vs tshark {:?}",
                c.id,
                c.syn_time,
                s.syn
            );
            assert!(
                close(c.synack_time, s.synack),
                "{name} #{}: SYN-ACK {:?} vs {:?}",
                c.id,
                c.synack_time,
                s.synack
            );
            let reason = match s.end {
                None => "open",
                Some((_, true, false)) => "fin_client",
                Some((_, false, false)) => "fin_server",
                Some((_, true, true)) => "rst_client",
                Some((_, false, true)) => "rst_server",
            };
            assert_eq!(c.end_reason, reason, "{name} #{}", c.id);
            assert!(
                close(c.end_time, s.end.map(|e| e.0)),
                "{name} #{}: end time",
                c.id
            );
            assert_eq!(
                (c.first_record, c.last_record),
                (s.first_frame, s.last_frame),
                "{name} #{}: records",
                c.id
            );
        }
        assert_eq!(
            r.capture.vantage, "client",
            "{name}: captured on the client"
        );
    }
}

#[test]
fn happy_eyeballs_races_match_truth() {
    for name in [
        "he_curl_v6blackhole",
        "he_curl_v6slow",
        "he_node_v6slow",
        "ws_duplicate",
        "ws_cancel",
    ] {
        let r = report(name, &[]);
        let t = truth(name);
        let h = &t["headline"];
        assert_eq!(
            r.summary.races as u64,
            h["races"].as_u64().unwrap(),
            "{name}: races"
        );
        assert_eq!(
            r.summary.also_rans as u64,
            h["also_rans"].as_u64().unwrap(),
            "{name}: also-rans"
        );
        // Roles by 4-tuple.
        for tc in t["connections"].as_array().unwrap() {
            let c = r
                .connections
                .iter()
                .find(|c| {
                    c.client_port == tc["client_port"].as_u64().unwrap() as u16
                        && c.client_ip == tc["client_ip"].as_str().unwrap()
                })
                .unwrap();
            let want = if tc["role"] == "winner" {
                "winner"
            } else {
                "also_ran"
            };
            assert_eq!(c.role, want, "{name}: {}:{}", c.client_ip, c.client_port);
            assert_eq!(
                c.client, "198.18.0.1,fd18::1",
                "{name}: client host ties both families"
            );
        }
        let shark = tshark_streams(name);
        for race in &r.races {
            assert_eq!(race.attempts.len(), 2);
            assert_eq!(race.first_family, "ipv6");
            // The attempt delay equals the SYN gap in the capture (tshark's times) within 1 µs.
            let syn = |id: usize| shark[&tuple(&r.connections[id])].syn.unwrap();
            let gap_ms = (syn(race.attempts[1]) - syn(race.attempts[0])) * 1000.0;
            assert!(
                (race.attempt_delays_ms[0] - gap_ms).abs() < 0.001,
                "{name}: {} vs {gap_ms}",
                race.attempt_delays_ms[0]
            );
        }
        if name.starts_with("he_") {
            for race in &r.races {
                assert_eq!(race.service, "www.he.lab", "{name}: named by DNS");
            }
        }
    }
}

#[test]
fn curl_attempt_delay_is_about_200ms_and_fates_are_right() {
    let r = report("he_curl_v6slow", &[]);
    assert_eq!(r.races.len(), 5);
    for race in &r.races {
        let d = race.attempt_delays_ms[0];
        assert!((200.0..202.5).contains(&d), "{d}");
        assert_eq!(race.winner_family.as_deref(), Some("ipv4"));
        assert_eq!(race.also_ran_cancel[0].fate, "late_synack_reset");
        assert_eq!(race.also_ran_cancel[0].stage, "synack");
    }
    let median = r.summary.median_attempt_delay_ms.unwrap();
    assert!((median - 200.5).abs() < 0.2, "{median}");

    let r = report("he_curl_v6blackhole", &[]);
    for race in &r.races {
        assert_eq!(race.also_ran_cancel[0].fate, "never_answered");
        assert_eq!(race.also_ran_cancel[0].stage, "syn");
        assert_eq!(race.also_ran_cancel[0].after_winner_ms, None);
    }
}
