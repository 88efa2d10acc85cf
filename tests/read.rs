//! The read and decode stages on real-format captures: every container, byte order, time
//! resolution, compression and link type, and every way a file can be damaged.

mod support;

use std::io::Write;

use racetrace_core::domain::Side;
use racetrace_synth::{block, enhanced_packet, write_pcap, write_pcapng, Link, Scenario};
use support::*;

/// One connection: handshake, a request and response, FIN both ways (10 packets at most).
fn one_connection() -> Scenario {
    let mut s = Scenario::new();
    let c = s.tcp("198.18.0.1", 40000, "198.18.0.2", 80);
    s.handshake(c, 0.0, 10.0);
    s.data(c, Side::Client, 11.0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.data(c, Side::Server, 21.0, &[b'a'; 500]);
    s.fin(c, Side::Client, 30.0)
        .fin(c, Side::Server, 40.0)
        .ack(c, Side::Client, 40.1);
    s
}

fn check_one(r: &Report, s: &Scenario) {
    assert_eq!(r.connections.len(), 1, "{:?}", r.connections);
    let c = &r.connections[0];
    assert_eq!(c.syn_time, Some(secs(s, 0.0)));
    assert_eq!(c.synack_time, Some(secs(s, 10.0)));
    assert_eq!(c.bytes_client, 27);
    assert_eq!(c.bytes_server, 500);
    assert_eq!(c.end_reason, "fin_client");
    assert_eq!(c.conn_state, "SF");
    assert_eq!((c.first_record, c.last_record), (1, 8));
}

#[test]
fn pcap_microsecond_little_endian() {
    let s = one_connection();
    let r = analyze_json(&write_temp("us", "a.pcap", &s.to_pcap()), &[]);
    assert_eq!(r.capture.format, "pcap");
    assert_eq!(r.capture.link_types, vec!["ethernet"]);
    assert_eq!(r.capture.packets, 8);
    check_one(&r, &s);
}

#[test]
fn pcap_nanosecond_keeps_nanoseconds_for_durations() {
    let mut s = Scenario::new();
    let c = s.tcp("fd18::1", 40000, "fd18::2", 443);
    s.syn(c, 0.0).synack(c, 0.000_777);
    let bytes = write_pcap(&s.frames(Link::Ethernet), Link::Ethernet, true, 65535);
    let a = racetrace_core::analyze(
        &[write_temp("ns", "n.pcap", &bytes).to_string_lossy().into()],
        &Default::default(),
    )
    .unwrap();
    let first = a.connections.get(0).unwrap();
    let r = &first.rec;
    assert_eq!(
        r.synack_time.get().unwrap() - r.syn_time.get().unwrap(),
        777
    );
}

#[test]
fn pcap_big_endian() {
    let s = one_connection();
    let le = s.to_pcap();
    // Re-encode header and record headers big-endian.
    let mut be = Vec::new();
    let words = |b: &[u8]| -> Vec<u8> {
        b.chunks(4)
            .flat_map(|w| w.iter().rev().copied().collect::<Vec<_>>())
            .collect()
    };
    be.extend(words(&le[0..4]));
    be.extend(le[4..6].iter().rev());
    be.extend(le[6..8].iter().rev());
    be.extend(words(&le[8..24]));
    let mut at = 24;
    while at < le.len() {
        let cap = u32::from_le_bytes(le[at + 8..at + 12].try_into().unwrap()) as usize;
        be.extend(words(&le[at..at + 16]));
        be.extend_from_slice(&le[at + 16..at + 16 + cap]);
        at += 16 + cap;
    }
    let r = analyze_json(&write_temp("be", "b.pcap", &be), &[]);
    check_one(&r, &s);
}

#[test]
fn pcapng_nanosecond_resolution_and_tsoffset() {
    let s = one_connection();
    let r = analyze_json(&write_temp("ng", "a.pcapng", &s.to_pcapng()), &[]);
    assert_eq!(r.capture.format, "pcapng");
    check_one(&r, &s);

    // if_tsresol = 2^-10 (binary) with if_tsoffset = 100 s: times shift by exactly 100 s.
    let frames = s.frames(Link::Ethernet);
    let mut out = Vec::new();
    block(
        &mut out,
        0x0a0d_0d0a,
        &[
            0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    );
    let mut idb = vec![1, 0, 0, 0, 0, 0, 0, 0];
    idb.extend_from_slice(&[9, 0, 1, 0, 0x80 | 10, 0, 0, 0]);
    idb.extend_from_slice(&[14, 0, 8, 0]);
    idb.extend_from_slice(&100i64.to_le_bytes());
    idb.extend_from_slice(&[0, 0, 0, 0]);
    block(&mut out, 1, &idb);
    for (t, f) in &frames {
        let units = ((*t as i128 - 100_000_000_000) * 1024 / 1_000_000_000) as u64;
        enhanced_packet(&mut out, units, f);
    }
    let r = analyze_json(&write_temp("ng2", "b.pcapng", &out), &[]);
    let c = &r.connections[0];
    // 1/1024 s resolution: within one tick of the true time.
    assert!((c.syn_time.unwrap() - secs(&s, 0.0)).abs() < 1.0 / 1024.0);
    assert_eq!(r.capture.packets, 8);
}

#[test]
fn pcapng_unknown_and_obsolete_blocks() {
    let s = one_connection();
    let frames = s.frames(Link::Ethernet);
    let mut out = write_pcapng(&frames[..0], Link::Ethernet, 6);
    block(&mut out, 0x0bad_0bad, &[1, 2, 3, 4, 5, 6, 7, 8]); // unknown block: skipped
    for (t, f) in &frames {
        // Obsolete packet block (type 2): if_id u16, drops u16, ts high/low, caplen, len, data.
        let us = (*t / 1000) as u64;
        let mut b = vec![0, 0, 0, 0];
        b.extend_from_slice(&((us >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(us as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(f);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        block(&mut out, 2, &b);
    }
    let r = analyze_json(&write_temp("obs", "o.pcapng", &out), &[]);
    check_one(&r, &s);
    assert!(!r.capture.truncated);
}

#[test]
fn gzip_and_zstd_are_recognised_by_magic() {
    let s = one_connection();
    let raw = s.to_pcap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let r = analyze_json(&write_temp("gz", "a.pcap.gz", &gz.finish().unwrap()), &[]);
    check_one(&r, &s);
    let zst = zstd::encode_all(&raw[..], 3).unwrap();
    let r = analyze_json(&write_temp("zst", "a.bin", &zst), &[]);
    check_one(&r, &s);
}

#[test]
fn standard_input() {
    let s = one_connection();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_racetrace"))
        .args(["analyze", "-", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&s.to_pcapng())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    validate(&text);
    let r: Report = serde_json::from_str(&text).unwrap();
    check_one(&r, &s);
}

#[test]
fn link_types_all_find_the_connection() {
    let s = one_connection();
    for (link, name) in [
        (Link::Vlan, "ethernet"),
        (Link::LinuxSll, "linux_sll"),
        (Link::LinuxSll2, "linux_sll2"),
        (Link::Raw, "raw"),
        (Link::Null, "null"),
    ] {
        let bytes = write_pcap(&s.frames(link), link, false, 65535);
        let r = analyze_json(&write_temp("link", "l.pcap", &bytes), &[]);
        assert_eq!(r.capture.link_types, vec![name]);
        check_one(&r, &s);
    }
}

#[test]
fn fcs_bits_in_the_link_type_field_are_ignored() {
    let s = one_connection();
    let mut bytes = s.to_pcap();
    // FCS present (bit 28) with 4 bytes of FCS (bits 29-31 = 2): 0x3000_0001.
    bytes[20..24].copy_from_slice(&0x3000_0001u32.to_le_bytes());
    let r = analyze_json(&write_temp("fcs", "f.pcap", &bytes), &[]);
    assert_eq!(r.capture.link_types, vec!["ethernet"]);
    assert_eq!(r.connections.len(), 1);
}

#[test]
fn unknown_link_type_is_counted_with_one_warning() {
    let s = one_connection();
    let bytes = write_pcap(&s.frames(Link::Ethernet), Link::Ethernet, false, 65535);
    let mut bytes = bytes;
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes()); // LINKTYPE_USER0
    let r = analyze_json(&write_temp("unk", "u.pcap", &bytes), &[]);
    assert_eq!(r.connections.len(), 0);
    assert_eq!(r.capture.packets, 8);
    assert_eq!(r.capture.decode["unsupported_link"], 8);
    let w: Vec<_> = r
        .warnings
        .iter()
        .filter(|w| w.kind == "unknown_link_type")
        .collect();
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("147"));
}

#[test]
fn snaplen_cut_frames_still_yield_headers() {
    let s = one_connection();
    // 54 bytes: Ethernet + IPv4 + the fixed TCP header; options and payload cut.
    let bytes = write_pcap(&s.frames(Link::Ethernet), Link::Ethernet, false, 54);
    let r = analyze_json(&write_temp("snap", "s.pcap", &bytes), &[]);
    assert_eq!(r.connections.len(), 1);
    let c = &r.connections[0];
    // Payload lengths come from the IP header even though the bytes were not captured.
    assert_eq!((c.bytes_client, c.bytes_server), (27, 500));
    assert_eq!(c.server_tsval, None);
    assert_eq!(c.conn_state, "SF");
}

#[test]
fn empty_file_is_an_error_naming_it() {
    let p = write_temp("empty", "empty.pcap", b"");
    let out = racetrace(&["analyze", p.to_str().unwrap(), "--json", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty.pcap"));
}

#[test]
fn not_a_capture_is_exit_2_naming_the_file() {
    let p = write_temp(
        "text",
        "notes.txt",
        b"this is not a capture file at all, just text\n",
    );
    let out = racetrace(&["analyze", p.to_str().unwrap(), "--json", "-"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notes.txt") && err.contains("not a pcap"),
        "{err}"
    );
}

#[test]
fn truncated_inside_a_record_keeps_every_earlier_packet() {
    let s = one_connection();
    let bytes = s.to_pcap();
    let cut = &bytes[..bytes.len() - 10];
    let r = analyze_json(&write_temp("trunc", "t.pcap", cut), &[]);
    assert!(r.capture.truncated);
    assert_eq!(r.capture.packets, 7);
    let w = r.warnings.iter().find(|w| w.kind == "truncated").unwrap();
    assert_eq!(w.packet, Some(8));
    assert!(w.message.contains("t.pcap") && w.message.contains("record 8"));
    assert_eq!(r.connections.len(), 1);
}

#[test]
fn absurd_record_length_stops_with_a_warning() {
    let s = one_connection();
    let mut bytes = s.to_pcap();
    // Third record's caplen field.
    let mut at = 24;
    for _ in 0..2 {
        let cap = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + cap;
    }
    bytes[at + 8..at + 12].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let r = analyze_json(&write_temp("absurd", "a.pcap", &bytes), &[]);
    assert!(r.capture.truncated);
    assert_eq!(r.capture.packets, 2);
    let w = r
        .warnings
        .iter()
        .find(|w| w.kind == "absurd_length")
        .unwrap();
    assert_eq!(w.packet, Some(3));
}

#[test]
fn pcapng_damaged_block_is_skipped() {
    let s = one_connection();
    let frames = s.frames(Link::Ethernet);
    let mut out = write_pcapng(&frames[..3], Link::Ethernet, 6);
    // An enhanced packet block whose interface id is fine but whose captured length runs
    // past its own block: damaged.
    let mut bad = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&4000u32.to_le_bytes());
    bad.extend_from_slice(&4000u32.to_le_bytes());
    bad.extend_from_slice(&[0; 8]);
    block(&mut out, 6, &bad);
    let rest = write_pcapng(&frames[3..], Link::Ethernet, 6);
    // Skip the rest's section header and interface blocks (28 + 32 bytes).
    out.extend_from_slice(&rest[28 + 32..]);
    let r = analyze_json(&write_temp("dmg", "d.pcapng", &out), &[]);
    assert!(r.capture.truncated);
    assert_eq!(r.capture.packets, 8);
    assert!(r
        .warnings
        .iter()
        .any(|w| w.kind == "damaged_block" && w.packet == Some(4)));
    check_one(&r, &s);
}

#[test]
fn batch_with_one_bad_file_still_analyses_the_others() {
    let s = one_connection();
    let good = write_temp("batch", "good.pcap", &s.to_pcap());
    let bad = write_temp("batch", "bad.pcap", b"garbage garbage garbage garbage");
    let out = racetrace(&[
        "analyze",
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
        "--json",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<&str> = text.lines().collect();
    assert_eq!(docs.len(), 1);
    validate(docs[0]);
}

#[test]
fn merge_reads_rotated_files_as_one_capture_in_time_order() {
    let s = one_connection();
    let frames = s.frames(Link::Ethernet);
    let a = write_temp(
        "merge",
        "part1.pcap",
        &write_pcap(&frames[4..], Link::Ethernet, false, 65535),
    );
    let b = write_temp(
        "merge",
        "part0.pcap",
        &write_pcap(&frames[..4], Link::Ethernet, false, 65535),
    );
    let out = racetrace(&[
        "analyze",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--merge",
        "--json",
        "-",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    validate(text.trim());
    let r: Report = serde_json::from_str(text.trim()).unwrap();
    assert!(r.capture.file.contains("part1.pcap, ") && r.capture.file.contains("part0.pcap"));
    check_one(&r, &s);
}

#[test]
fn records_cut_by_buffer_ends_and_a_record_larger_than_the_buffer() {
    // 2,000 connections (~2.6 MB: the reader's 1.25 MiB buffer ends inside records several
    // times) and, in the middle, one 3 MB frame that no buffer holds until it grows.
    let mut s = Scenario::new();
    for i in 0..2000u32 {
        let client = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let c = s.tcp(&client, 40000, "198.18.200.1", 80);
        let t = f64::from(i) * 5.0;
        s.handshake(c, t, 1.0); // SYN at t, SYN-ACK 1 ms later
        s.data(
            c,
            Side::Client,
            t + 1.1,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        s.data(c, Side::Server, t + 2.0, &[b'a'; 1200]);
        s.fin(c, Side::Client, t + 3.0)
            .fin(c, Side::Server, t + 3.5)
            .ack(c, Side::Client, t + 3.6);
    }
    let mut frames = s.frames(Link::Ethernet);
    let n = frames.len();
    let mut big = vec![0u8; 3 << 20];
    big[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental EtherType
    let at = n / 2;
    let t = frames[at].0;
    frames.insert(at, (t, big));
    for (name, bytes) in [
        (
            "big.pcap",
            write_pcap(&frames, Link::Ethernet, false, 8 << 20),
        ),
        ("big.pcapng", write_pcapng(&frames, Link::Ethernet, 9)),
    ] {
        assert!(bytes.len() > 5 << 20);
        let r = analyze_json(&write_temp("bigrec", name, &bytes), &[]);
        assert!(!r.capture.truncated, "{name}: {:?}", r.warnings);
        assert_eq!(r.capture.packets, n as u64 + 1, "{name}");
        assert_eq!(r.capture.decode["not_ip"], 1, "{name}");
        assert_eq!(r.connections.len(), 2000, "{name}");
        assert!(r
            .connections
            .iter()
            .all(|c| c.bytes_server == 1200 && c.bytes_client == 27 && c.conn_state == "SF"));
        // Records after the big one are numbered on from it.
        let last = r.connections.last().unwrap();
        assert_eq!(last.last_record, n as u64 + 1, "{name}");
    }
}
