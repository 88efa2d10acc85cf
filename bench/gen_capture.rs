//! Writes a large synthetic capture for the benchmark (`bench/run.sh`), chunk by chunk with the
//! test capture writer, so memory stays small whatever the size.
//!
//! `gen_capture OUT.pcap --bytes N`: dual-stack Happy Eyeballs traffic until the file reaches N
//! bytes: per fetch a DNS AAAA and A exchange, an IPv6 attempt, and in 70 % of fetches a slow
//! IPv6 path (IPv4 starts 250 ms later and wins; the late IPv6 SYN-ACK is reset); the winner
//! carries a small request and a response of full-size segments, then both sides close.
//! Every segment has TCP timestamps; 1000 dual-stack clients, 20 dual-stack servers, each with
//! one timestamp clock for both its addresses (20 backends).
//!
//! `--segment B` sets the response segments' payload size (default 1448, full size); with
//! `--segment 120` the capture is mostly small packets (about 120 bytes per record on average),
//! like the 600 MB / 5.2 M-packet reference.
//!
//! `gen_capture OUT.pcap --busy [--fetches N | --bytes N | --packets N] [--seed S] [--clients N] …`: a busy
//! capture (thousands of clients, hundreds of services, concurrent fetches, stale reuses) and
//! its per-connection truth in `OUT.truth.jsonl` (`racetrace_synth::busy`); `score` compares a
//! report with it.
//!
//! `gen_capture OUT.pcap --short N`: N short connections (handshake, one small exchange,
//! teardown), about 64 open at any time: the stream for the tracker's flat-memory check.
//!
//! `gen_capture OUT.pcap --quic N`: N QUIC connections of 100 datagrams each (Initials sealed
//! with real keys, then 1,200-byte 1-RTT packets, mostly from the server); `--tcp-like-quic N`
//! the same number of TCP connections of 100 packets each (the QUIC throughput benchmark,
//! `bench/quic.sh`, compares the two).
//!
//! `gen_capture OUT.pcap --flood N`: a SYN flood of N SYNs, none answered, from distinct
//! sources (16.7 M addresses of 10.0.0.0/8, then new source ports) to one server port, at
//! 100,000 SYNs a second (the 5 M SYNs in 50 s), beside one race every 2 s of a
//! dual-stack client that the flood must not hide.

use std::io::{BufWriter, Write};

use racetrace_core::domain::Side;
use racetrace_synth::{write_pcap, Link, Scenario, DEFAULT_BASE};

const CHUNK_MS: f64 = 2000.0;

fn client(i: usize) -> (String, String) {
    let c = i % 1000;
    (
        format!("10.{}.{}.{}", 1 + c / 65536, (c / 256) % 256, c % 256),
        format!("fd00:1::{:x}", c + 1),
    )
}

fn server(i: usize) -> (String, String) {
    let s = i % 20;
    (
        format!("198.51.100.{}", s + 1),
        format!("2001:db8::{:x}", s + 1),
    )
}

/// One chunk of Happy Eyeballs fetches starting at `base`.
fn fetches(base: i64, first: usize, n: usize, segment: usize) -> Scenario {
    let mut s = Scenario::new().starting_at(base);
    // Each server keeps one TCP timestamp clock across chunks (its IPv4 and IPv6 addresses
    // share it): 20 backends for the backend detector, at 1000, 250 and 100 Hz.
    let since_start = (base - DEFAULT_BASE) as f64 / 1e9;
    for k in 0..20 {
        let (s4, s6) = server(k);
        let hz = [1000.0, 250.0, 100.0][k % 3];
        let offset = (k as f64 * 123_456_789.0 + hz * since_start).rem_euclid(4_294_967_296.0);
        s.server_clock(&s4, hz, offset as u32);
        s.server_clock(&s6, hz, offset as u32);
    }
    let response = vec![0x5au8; segment];
    for k in 0..n {
        let g = first + k;
        let (c4, c6) = client(g);
        let (s4, s6) = server(g);
        s.same_host(&c4, &c6);
        let t = CHUNK_MS * 0.7 * k as f64 / n as f64;
        let name = format!("svc{}.example", g % 20);
        s.dns(&c4, "198.51.100.53", t, t + 0.6, &name, 28, &[&s6]);
        s.dns(&c4, "198.51.100.53", t + 0.05, t + 0.7, &name, 1, &[&s4]);
        let port = 10_000 + (g % 50_000) as u16;
        let v6 = s.tcp(&c6, port, &s6, 443);
        let slow = g % 10 < 7;
        let winner = if slow {
            s.syn(v6, t + 1.0);
            let v4 = s.tcp(&c4, port, &s4, 443);
            s.handshake(v4, t + 251.0, 1.0);
            s.synack(v6, t + 320.0).rst(v6, Side::Client, t + 320.02);
            (v4, t + 253.0)
        } else {
            s.handshake(v6, t + 1.0, 1.0);
            (v6, t + 3.0)
        };
        let (c, t1) = winner;
        s.data(c, Side::Client, t1, &[0x17; 300]);
        for j in 0..6 {
            s.data(c, Side::Server, t1 + 1.0 + 0.1 * f64::from(j), &response);
            if j % 2 == 1 {
                s.ack(c, Side::Client, t1 + 1.05 + 0.1 * f64::from(j));
            }
        }
        s.fin(c, Side::Client, t1 + 5.0)
            .fin(c, Side::Server, t1 + 5.2)
            .ack(c, Side::Client, t1 + 5.3);
    }
    s
}

/// One chunk of short connections.
fn short(base: i64, first: usize, n: usize) -> Scenario {
    let mut s = Scenario::new().starting_at(base);
    for k in 0..n {
        let g = first + k;
        let (c4, _) = client(g);
        let (s4, _) = server(g);
        let c = s.tcp(&c4, 10_000 + (g % 50_000) as u16, &s4, 80);
        let t = CHUNK_MS * k as f64 / n as f64;
        s.handshake(c, t, 0.5);
        s.data(c, Side::Client, t + 1.0, b"ping");
        s.data(c, Side::Server, t + 1.5, b"pong");
        s.fin(c, Side::Client, t + 2.0)
            .fin(c, Side::Server, t + 2.2)
            .ack(c, Side::Client, t + 2.3);
    }
    s
}

/// Packets per connection of `--quic` and `--tcp-like-quic`.
const BULK_PACKETS: usize = 100;

/// One chunk of QUIC connections carrying data: each a client Initial, the server's Initial,
/// the client's first 1-RTT packet, then 1-RTT packets of 1,200 bytes from the server (a
/// small client one every tenth, as TCP's ACKs): [`BULK_PACKETS`] datagrams.
fn quic_bulk(base: i64, first: usize, n: usize) -> Scenario {
    use racetrace_synth::quic::QuicFlow;
    let mut s = Scenario::new().starting_at(base);
    for k in 0..n {
        let g = first + k;
        let (c4, _) = client(g);
        let (s4, _) = server(g);
        let t = CHUNK_MS * 0.8 * k as f64 / n as f64;
        let mut f = QuicFlow::new(
            (c4.as_str(), 10_000 + (g % 50_000) as u16),
            (s4.as_str(), 443),
            g as u8,
        );
        s.quic_initial(&mut f, t, "bulk.example", &["h3"], false);
        s.quic_server_initial(&mut f, t + 1.0);
        s.quic_short(&mut f, Side::Client, t + 1.2, 60);
        // Every tenth a small client packet (its ACKs), as the TCP counterpart's ACKs.
        for j in 3..BULK_PACKETS {
            let (side, len) = if j % 10 == 0 {
                (Side::Client, 20)
            } else {
                (Side::Server, 1200)
            };
            s.quic_short(&mut f, side, t + 1.3 + 0.01 * j as f64, len);
        }
    }
    s
}

/// The TCP counterpart of [`quic_bulk`]: each connection a handshake, the client's
/// ClientHello, 1,200-byte segments from the server (a client ACK every tenth) and the close:
/// [`BULK_PACKETS`] packets.
fn tcp_bulk(base: i64, first: usize, n: usize) -> Scenario {
    let mut s = Scenario::new().starting_at(base);
    let segment = vec![0x5au8; 1200];
    let hello = racetrace_synth::tls::client_hello("bulk.example", &["h2"]);
    for k in 0..n {
        let g = first + k;
        let (c4, _) = client(g);
        let (s4, _) = server(g);
        let t = CHUNK_MS * 0.8 * k as f64 / n as f64;
        let c = s.tcp(&c4, 10_000 + (g % 50_000) as u16, &s4, 443);
        s.handshake(c, t, 1.0);
        // The client's ClientHello first, as the QUIC connections' Initial carries one.
        s.data(c, Side::Client, t + 1.2, &hello);
        for j in 4..BULK_PACKETS - 3 {
            if j % 10 == 0 {
                s.ack(c, Side::Client, t + 1.3 + 0.01 * j as f64);
            } else {
                s.data(c, Side::Server, t + 1.3 + 0.01 * j as f64, &segment);
            }
        }
        s.fin(c, Side::Client, t + 3.0)
            .fin(c, Side::Server, t + 3.1)
            .ack(c, Side::Client, t + 3.2);
    }
    s
}

/// SYNs per 2 s chunk of `--flood`: 100,000 a second.
const FLOOD_CHUNK: usize = 200_000;

/// One chunk of a SYN flood: `n` SYNs from sources `first..`, and one Happy Eyeballs race.
fn flood(base: i64, first: usize, n: usize) -> Scenario {
    let mut s = Scenario::new().starting_at(base);
    for k in 0..n {
        let g = first + k;
        let a = g % (1 << 24);
        let src = format!("10.{}.{}.{}", a >> 16, (a >> 8) & 255, a & 255);
        let port = 1024 + ((g >> 24) % 60_000) as u16;
        let c = s.tcp(&src, port, "203.0.113.80", 80);
        s.syn(c, CHUNK_MS * k as f64 / n as f64);
    }
    let (c4, c6) = ("192.0.2.7", "2001:db8:7::7");
    s.same_host(c4, c6);
    let port = 40_000 + (first / FLOOD_CHUNK % 20_000) as u16;
    let v6 = s.tcp(c6, port, "2001:db8::80", 443);
    s.syn(v6, 10.0);
    let v4 = s.tcp(c4, port, "203.0.113.81", 443);
    s.handshake(v4, 260.0, 1.0);
    s.data(v4, Side::Client, 262.0, &[0x17; 200]);
    s.data(v4, Side::Server, 263.0, &[0x17; 900]);
    s.rst(v6, Side::Client, 262.5);
    s.fin(v4, Side::Client, 400.0)
        .fin(v4, Side::Server, 400.5)
        .ack(v4, Side::Client, 401.0);
    s
}

/// `--busy`: a busy capture with its truth beside it (`OUT.truth.jsonl`), see
/// `racetrace_synth::busy`.
fn busy(out: &str, args: &[String]) -> std::io::Result<()> {
    use racetrace_synth::busy::{Busy, BusyConfig, CapturePoint, Limit};
    let mut cfg = BusyConfig::default();
    let mut limit = Limit::Fetches(3500);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        match a.as_str() {
            "--fetches" => limit = Limit::Fetches(num() as u64),
            "--bytes" => limit = Limit::Bytes(num() as u64),
            "--packets" => limit = Limit::Packets(num() as u64),
            "--seed" => cfg.seed = num() as u64,
            "--clients" => cfg.clients = num() as usize,
            "--services" => cfg.services = num() as usize,
            "--backends" => cfg.backends = num() as usize,
            "--rate" => cfg.fetches_per_s = num(),
            "--response" => cfg.response_bytes = num() as usize,
            "--segment" => cfg.segment = num() as usize,
            "--client-side" => cfg.capture_point = CapturePoint::Client,
            "--no-races" => cfg.races = false,
            "--no-stale" => cfg.stale = false,
            other => {
                eprintln!("gen_capture --busy: unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    let truth_path = format!("{}.truth.jsonl", out.trim_end_matches(".pcap"));
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut t = BufWriter::with_capacity(1 << 20, std::fs::File::create(&truth_path)?);
    let totals = Busy::new(cfg).write(limit, &mut w, &mut t)?;
    w.flush()?;
    t.flush()?;
    eprintln!(
        "{out}: {} bytes, {} packets, {:.0} s; {} fetches, {} connections, {} races, {} stale reuses; truth in {truth_path}",
        totals.bytes, totals.packets, totals.seconds, totals.fetches, totals.connections, totals.races, totals.stale
    );
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(out), Some("--busy")) = (args.get(1), args.get(2).map(String::as_str)) {
        return busy(out, args.get(3..).unwrap_or(&[]));
    }
    let usage = "usage: gen_capture OUT.pcap (--bytes N [--segment B] | --short N | --flood N | --quic N | --tcp-like-quic N)";
    let (Some(out), Some(mode), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let n: u64 = n.parse().unwrap_or(0);
    let segment: usize = match (args.get(4).map(String::as_str), args.get(5)) {
        (Some("--segment"), Some(b)) => b.parse().unwrap_or(1448).clamp(1, 1448),
        _ => 1448,
    };
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut written = 0u64;
    let mut first = 0usize;
    let mut chunk = 0i64;
    let counted = matches!(
        mode.as_str(),
        "--short" | "--flood" | "--quic" | "--tcp-like-quic"
    );
    let per_chunk = match mode.as_str() {
        "--short" => 64_000,
        "--flood" => FLOOD_CHUNK,
        _ => 500,
    };
    loop {
        let base = DEFAULT_BASE + chunk * (CHUNK_MS as i64) * 1_000_000;
        let take = if counted {
            let left = n.saturating_sub(first as u64) as usize;
            if left == 0 {
                break;
            }
            left.min(per_chunk)
        } else {
            if written >= n {
                break;
            }
            per_chunk
        };
        let s = match mode.as_str() {
            "--short" => short(base, first, take),
            "--flood" => flood(base, first, take),
            "--quic" => quic_bulk(base, first, take),
            "--tcp-like-quic" => tcp_bulk(base, first, take),
            _ => fetches(base, first, take, segment),
        };
        let bytes = write_pcap(&s.frames(Link::Ethernet), Link::Ethernet, false, 262_144);
        // The file header once, then only records.
        let body = if chunk == 0 { &bytes[..] } else { &bytes[24..] };
        w.write_all(body)?;
        written += body.len() as u64;
        first += take;
        chunk += 1;
    }
    w.flush()?;
    eprintln!("{out}: {written} bytes, {first} fetches/connections");
    Ok(())
}
