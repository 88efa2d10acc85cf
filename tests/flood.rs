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
