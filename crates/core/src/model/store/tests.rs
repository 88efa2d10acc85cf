//! The store spilled and in memory: the same connections through every reader and writer.

use std::net::{IpAddr, Ipv4Addr};

use super::{Connections, SpillConfig};
use crate::domain::Endpoint;
use crate::model::{ConnRecord, Reason};

/// `n` connections, spilled in blocks of 7 past a budget of almost nothing (or never).
fn store(n: usize, spill: bool) -> Connections {
    let cfg = SpillConfig {
        budget: if spill { 1 } else { usize::MAX },
        dir: std::env::temp_dir(),
        block: 7,
    };
    let mut s = Connections::new(cfg);
    for i in 0..n {
        s.push(ConnRecord {
            first_time: 1_000 * i as i64,
            client: Endpoint {
                ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32)),
                port: 1024,
            },
            syn_count: 1 + (i % 3) as u32,
            ..ConnRecord::default()
        });
    }
    s
}

/// Each connection's (id, reason, omitted, host) through `for_each`.
fn facts(s: &Connections) -> Vec<(usize, Option<Reason>, bool, usize)> {
    let mut v = Vec::new();
    s.for_each(|c| v.push((c.id, c.reason, c.omitted, c.host)));
    v
}

#[test]
fn deferred_changes_are_seen_by_every_reader_and_survive_every_writer() {
    for spill in [false, true] {
        let mut s = store(100, spill);
        assert_eq!(s.spilled(), spill);
        s.update_deferred(|c| {
            c.reason = (c.rec.syn_count == 3).then_some(Reason::Scan);
        });
        s.update_deferred(|c| c.omitted = c.reason.is_some() && c.id % 2 == 0);
        let expect = |id: usize| {
            let reason = (id % 3 == 2).then_some(Reason::Scan);
            (id, reason, reason.is_some() && id.is_multiple_of(2), 0)
        };
        let want: Vec<_> = (0..100).map(expect).collect();
        assert_eq!(facts(&s), want, "spilled: {spill}");
        // By id, through the block cache, and in batches.
        let c = s.get(41).expect("41 is there");
        assert_eq!((c.reason, c.omitted), (Some(Reason::Scan), false));
        let some = s.get_sorted(&[5, 50, 98]);
        let got: Vec<_> = some
            .iter()
            .map(|c| (c.id, c.reason, c.omitted, c.host))
            .collect();
        assert_eq!(got, vec![expect(5), expect(50), expect(98)]);
        // Projected in batches (the budget of almost nothing holds one item a batch).
        let items = [vec![98, 5], vec![50], vec![], vec![99, 0]];
        let projected = s.map_projected(
            &items,
            |ids, out| out.extend_from_slice(ids),
            |c| (c.id, c.reason, c.omitted),
            |ids, get| ids.iter().map(|&i| get(i)).collect::<Vec<_>>(),
        );
        let want_projected: Vec<Vec<_>> = items
            .iter()
            .map(|ids| {
                ids.iter()
                    .map(|&i| Some((i, expect(i).1, expect(i).2)))
                    .collect()
            })
            .collect();
        assert_eq!(projected, want_projected, "spilled: {spill}");
        assert_eq!(s.count(|c| c.omitted), 17);
        // A block rewritten for a few ids keeps the deferred changes (applied again: same).
        s.update_ids(&[3, 4], |c| c.host = 9);
        let mut want = want.clone();
        for w in want.iter_mut().filter(|w| w.0 == 3 || w.0 == 4) {
            w.3 = 9;
        }
        assert_eq!(facts(&s), want, "spilled: {spill}");
        // A whole rewrite writes them in.
        s.update(|c| c.host += 1);
        for w in want.iter_mut() {
            w.3 += 1;
        }
        assert_eq!(facts(&s), want, "spilled: {spill}");
        // Kept connections are renumbered with what the changes made of them.
        let map = s.retain(|c| c.reason.is_some());
        assert_eq!(map.iter().flatten().count(), 33);
        assert_eq!(s.len(), 33);
        let kept = facts(&s);
        assert!(kept.iter().all(|k| k.1 == Some(Reason::Scan)));
        assert_eq!(kept.iter().filter(|k| k.2).count(), 17);
        assert_eq!(kept.last().map(|k| k.0), Some(32));
    }
}
