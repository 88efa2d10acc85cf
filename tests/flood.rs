//! Floods and scans: unanswered SYNs leave the tracker's table once the client's
//! retransmissions are over (`TrackConfig::syn_timeout`, 135 s), not after the 600 s idle
//! timeout, and every attempt is still reported.

mod support;

use racetrace_synth::Scenario;
use support::*;

/// 3,000 attempts from distinct sources to one server port, one every 200 ms (600 s in all),
/// each SYN retransmitted after 1 s and 3 s, none answered.
#[test]
fn unanswered_syns_leave_the_table_after_the_retransmissions() {
    let mut s = Scenario::new();
    let n = 3000;
    for i in 0..n {
        let client = format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256);
        let c = s.tcp(&client, 40000, "192.0.2.80", 80);
        let t = f64::from(i) * 200.0;
        s.syn(c, t).syn(c, t + 1000.0).syn(c, t + 3000.0);
    }
    let path = write_temp("flood", "flood.pcap", &s.to_pcap());
    let a = racetrace_core::analyze(
        &[path.to_str().unwrap().to_string()],
        &racetrace_core::Options::default(),
    )
    .unwrap();
    assert_eq!(a.connections.len(), n as usize);
    assert!(a
        .connections
        .iter()
        .all(|c| c.rec.syn_count == 3 && !c.rec.synack_time.is_some() && c.rec.packets == [3, 0]));
    // An attempt stays until 135 s after its last SYN (3 s after its first), and the sweep
    // runs once per second of capture time and after as many packets as half the table
    // holds (15 packets a second, so up to ~24 s late at ~700 entries): at most
    // (138 + 1 + 24) s × 5 attempts a second = 815 in the table. With the 600 s idle timeout
    // alone it held all 3,000.
    assert!(
        a.timings.table_peak >= 690 && a.timings.table_peak <= 815,
        "table peak {}",
        a.timings.table_peak
    );
}

/// A flood past the table's cap (`TrackConfig::table_cap`, set by `--memory-limit`): 20,000
/// SYNs from distinct sources in 2 s, none answered, beside a Happy Eyeballs race whose IPv4
/// attempt wins after the IPv6 one is black-holed. The table never holds more than its cap
/// (one over it, the moment before the quietest quarter leaves); every SYN is still a
/// connection of the report, the count of those finished early is in the summary and a
/// warning, and the race is found whole.
#[test]
fn a_flood_past_the_table_cap_is_evicted_and_still_reported() {
    let mut s = Scenario::new();
    let n = 20_000usize;
    support::syn_flood(&mut s, n, 0.1);
    let (c4, c6) = ("198.51.100.7", "2001:db8:7::7");
    s.same_host(c4, c6);
    let v6 = s.tcp(c6, 50000, "2001:db8::80", 443);
    s.syn(v6, 1000.0);
    let v4 = s.tcp(c4, 50001, "192.0.2.81", 443);
    s.handshake(v4, 1250.0, 1.0);
    s.data(
        v4,
        racetrace_core::domain::Side::Client,
        1252.0,
        &[0x17; 200],
    );
    s.rst(v6, racetrace_core::domain::Side::Client, 1251.5);
    let path = write_temp("flood-cap", "flood.pcap", &s.to_pcap());
    let run = |cap: usize| {
        let mut opts = racetrace_core::Options::default();
        opts.track.table_cap = cap;
        racetrace_core::analyze(&[path.to_str().unwrap().to_string()], &opts).unwrap()
    };
    let free = run(usize::MAX);
    assert_eq!(free.summary.evicted_early, 0);
    assert!(
        free.timings.table_peak > 9_000,
        "{}",
        free.timings.table_peak
    );

    let threads = rayon::current_num_threads();
    let a = run(4096);
    // Each of the `threads` shards' tables holds a share of the cap, and at most one over
    // it (the moment before its quietest quarter leaves); the peak is their sum.
    let per_shard = (4096 / threads).max(1);
    let peak = a.timings.table_peak;
    assert!(peak <= threads * (per_shard + 1), "table peak {peak}");
    assert_eq!(a.connections.len(), n + 2);
    assert_eq!(a.connections.len(), free.connections.len());
    // Every flood SYN but the last few thousand left early (the rest at the end of input).
    let evicted = a.summary.evicted_early as usize;
    assert!(evicted >= n - 4096 && evicted < n, "{evicted} evicted");
    assert!(a.warnings.iter().any(|w| w.kind == "table_full"));
    assert!(!free.warnings.iter().any(|w| w.kind == "table_full"));
    assert_eq!(a.races.len(), 1);
    let r = &a.races[0];
    let (w, l) = (
        a.connections.get(r.winner.unwrap()).unwrap(),
        a.connections.get(r.also_rans[0]).unwrap(),
    );
    assert_eq!(w.rec.client.port, 50001);
    assert_eq!(l.rec.client.port, 50000);
    assert_eq!(r.attempt_delays_ms.as_slice(), &[250.0]);
}
