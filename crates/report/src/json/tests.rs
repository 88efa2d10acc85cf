//! The hand-written JSON writer against the row types' serde output (`crate::rows`, which
//! the tables are flattened from too), byte for byte on every capture of the repository.

use super::*;
use crate::rows::ConnectionRow;

/// The repository's captures: the samples and the real captures in tests/data.
fn own_captures() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<_> = ["samples", "tests/data/captures"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).expect("the repository's captures"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    files
}

/// The hand-written connection, race and sequence objects equal the derived serde ones byte
/// for byte, on every sample and real capture (TLS, HTTP, WebSocket, refused, mid-stream,
/// IPv4 and IPv6, races with cancels, DNS timing and duplicate upgrades, backend switches).
#[test]
fn hand_written_objects_match_the_serde_oracle() {
    let files = own_captures();
    // The writer's bytes against serde's for one object.
    fn same(fast: std::io::Result<Vec<u8>>, oracle: serde_json::Result<Vec<u8>>, what: &str) {
        let (fast, oracle) = (fast.unwrap_or_default(), oracle.unwrap_or_default());
        assert!(!fast.is_empty(), "{what}: nothing written");
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&oracle),
            "{what}"
        );
    }
    let (mut compared, mut races, mut sequences) = (0, 0, 0);
    for f in files.iter().filter_map(|f| f.to_str()) {
        let a = racetrace_core::analyze(&[f.to_string()], &racetrace_core::Options::default())
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        for c in a.connections.iter() {
            let c = &*c;
            let mut fast = Vec::new();
            let fast = write_connection(&mut fast, c, &a).map(|()| fast);
            let oracle = serde_json::to_vec(&ConnectionRow::of(
                c,
                a.hosts.get(c.host).map(|h| h.label()).unwrap_or_default(),
            ));
            same(fast, oracle, &format!("{f}: connection {}", c.id));
            compared += 1;
        }
        for (k, seq) in a.sequences.iter().enumerate() {
            let mut fast = Vec::new();
            let fast = write_sequence(&mut fast, seq).map(|()| fast);
            same(fast, serde_json::to_vec(seq), &format!("{f}: sequence {k}"));
            sequences += 1;
        }
        for r in &a.races {
            let mut fast = Vec::new();
            let fast = write_race(&mut fast, r).map(|()| fast);
            same(
                fast,
                serde_json::to_vec(&RaceRow::in_analysis(r)),
                &format!("{f}: race {}", r.id),
            );
            races += 1;
        }
    }
    assert!(compared > 100, "{compared} connections compared");
    assert!(races > 10, "{races} races compared");
    assert!(sequences > 10, "{sequences} sequences compared");
}

/// The chunked, double-buffered array writer gives serde's array for every length around
/// its chunk and round boundaries (the last round short, full, or the array empty).
#[test]
fn chunked_arrays_equal_serde_arrays_at_every_boundary() {
    let round = CHUNK * 2 * rayon::current_num_threads().max(1);
    let lengths = [
        0,
        1,
        2,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        round - 1,
        round,
        round + 1,
    ];
    for n in lengths
        .into_iter()
        .chain([2 * round, 2 * round + CHUNK + 3])
    {
        let items: Vec<u64> = (0..n as u64).map(|i| i * 7919).collect();
        let mut out = Vec::new();
        let wrote = array(&mut out, &items, |x, buf| {
            buf.extend_from_slice(x.to_string().as_bytes());
            Ok(())
        });
        assert!(wrote.is_ok(), "{n} items: {wrote:?}");
        let oracle = serde_json::to_vec(&items).unwrap_or_default();
        assert_eq!(out, oracle, "{n} items");
    }
}
