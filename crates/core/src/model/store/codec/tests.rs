//! The record format against every sample and real capture's connections.

use super::*;

/// Every connection of every sample and real capture reads back as it was written, field
/// for field, fresh and over the connection read before it (whatever that one owned:
/// TLS, HTTP, QUIC or stale facts, names), and every cut of a record is refused rather
/// than misread.
#[test]
fn every_connection_reads_back_as_written() {
    let mut checked = 0;
    let mut reused = Connection::new(0, ConnRecord::default());
    for path in crate::testdata::own_captures() {
        let path = path.to_string_lossy().into_owned();
        let Ok(a) = crate::analyze(std::slice::from_ref(&path), &crate::Options::default()) else {
            continue;
        };
        for c in a.connections.iter() {
            let mut buf = Vec::new();
            encode(&c, &mut buf);
            let (back, rest) = decode(&buf).expect("decodes");
            assert!(rest.is_empty());
            assert_eq!(format!("{back:?}"), format!("{:?}", *c), "{path}");
            let previous = format!("{reused:?}");
            assert_eq!(decode_into(&buf, &mut reused), Some(&[][..]));
            assert_eq!(
                format!("{reused:?}"),
                format!("{:?}", *c),
                "{path}: read over {previous}"
            );
            for cut in 0..buf.len() {
                assert!(decode(buf.get(..cut).unwrap_or_default()).is_none());
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} connections checked");
}

/// A QUIC connection's facts (connection IDs, versions offered, times, flags) and its
/// ClientHello read back as written, and no cut of its bytes decodes.
#[test]
fn a_quic_connection_reads_back_as_written() {
    use crate::app::quic::QuicFacts;
    use crate::domain::OptNanos;
    let t0 = 1_793_491_200_000_000_000;
    let rec = ConnRecord {
        first_record: 5,
        last_record: 90,
        handshake_seen: true,
        first_time: t0,
        last_time: t0 + 40_000_000,
        syn_time: OptNanos::some(t0),
        syn_count: 2,
        synack_time: OptNanos::some(t0 + 20_000_000),
        established_time: OptNanos::some(t0 + 20_200_000),
        app: Some(Box::new(AppFacts {
            protocol: Protocol::Quic,
            tls: Some(TlsFacts {
                sni: Some("www.he.lab".into()),
                alpn: vec!["h3".into()],
                offered_versions: vec!["TLS 1.3"],
                hello: OptNanos::some(t0),
                ..TlsFacts::default()
            }),
            quic: Some(Box::new(QuicFacts {
                version: 0x6b33_43cf,
                original_dcid: vec![0x83, 0x94, 0xc8, 0xf0],
                client_cid: vec![],
                server_cid: vec![
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                ],
                retry: true,
                negotiated_versions: vec![1, 0x6b33_43cf],
                initials: [3, 1],
                zero_rtt: true,
                ech: true,
                handshake: OptNanos::some(t0 + 20_200_000),
                data: OptNanos::NONE,
                undecryptable: 1,
                unknown_version: false,
            })),
            ..AppFacts::default()
        })),
        ..ConnRecord::default()
    };
    let c = Connection::new(7, rec);
    let mut buf = Vec::new();
    encode(&c, &mut buf);
    let (back, rest) = decode(&buf).expect("decodes");
    assert!(rest.is_empty());
    assert_eq!(format!("{back:?}"), format!("{c:?}"));
    for cut in 0..buf.len() {
        assert!(decode(&buf[..cut]).is_none());
    }
}
