//! The hand-written JSON writer against its serde oracle: derived `Serialize` structs that
//! spell each object as the contract does, compared byte for byte on every capture of the
//! repository.

use super::*;

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

/// The names the hand-written objects spell are serde's, for every variant (the samples
/// need not hold them all: `cli` names come only from `--service`).
#[test]
fn enum_names_are_serdes() {
    use racetrace_core::domain::{Family, Stage};
    use racetrace_core::model::{Fate, NameSource, Role};
    fn serde_name<T: Serialize>(v: T) -> String {
        serde_json::to_string(&v)
            .unwrap_or_default()
            .trim_matches('"')
            .to_string()
    }
    for r in [Role::Winner, Role::AlsoRan, Role::Single] {
        assert_eq!(r.as_str(), serde_name(r));
    }
    for n in [
        NameSource::Address,
        NameSource::Dns,
        NameSource::Host,
        NameSource::Sni,
        NameSource::Cli,
    ] {
        assert_eq!(n.as_str(), serde_name(n));
    }
    for f in [Family::Ipv4, Family::Ipv6] {
        assert_eq!(f.as_str(), serde_name(f));
    }
    for f in [
        Fate::NeverAnswered,
        Fate::Refused,
        Fate::LateSynackReset,
        Fate::AbortedBeforeConnect,
        Fate::UnusedParallel,
        Fate::ClosedAfterConnect,
        Fate::LeftOpen,
    ] {
        assert_eq!(f.as_str(), serde_name(f));
    }
    for st in [
        Stage::Syn,
        Stage::Refused,
        Stage::Synack,
        Stage::Tcp,
        Stage::Data,
        Stage::TlsHello,
        Stage::Tls,
        Stage::Http,
        Stage::Ws,
    ] {
        assert_eq!(st.as_str(), serde_name(st));
    }
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
        for c in &a.connections {
            let mut fast = Vec::new();
            let fast = write_connection(&mut fast, c, &a).map(|()| fast);
            let oracle = serde_json::to_vec(&connection_json(c, &a));
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
            let fast = write_race(&mut fast, r, &a).map(|()| fast);
            same(
                fast,
                serde_json::to_vec(&race_json(r, &a)),
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

#[derive(Serialize)]
struct SynOptionsJson {
    mss: Option<u16>,
    wscale: Option<u8>,
    sack_permitted: bool,
    timestamps: bool,
}

/// The connection object as a serde struct: the oracle [`write_connection`] is tested against
/// (byte for byte, on every sample).
#[derive(Serialize)]
struct ConnectionJson<'a> {
    id: usize,
    first_record: u64,
    last_record: u64,
    family: Family,
    client_ip: Text<std::net::IpAddr>,
    client_port: u16,
    server_ip: Text<std::net::IpAddr>,
    server_port: u16,
    handshake_seen: bool,
    syn_time: Option<f64>,
    syn_count: u32,
    synack_time: Option<f64>,
    established_time: Option<f64>,
    end_time: Option<f64>,
    end_reason: &'static str,
    bytes_client: u64,
    bytes_server: u64,
    stage: racetrace_core::domain::Stage,
    server_tsval: Option<u32>,
    tls_sni: Option<&'a str>,
    http: Option<HttpJson<'a>>,
    service: &'a str,
    race: Option<usize>,
    role: racetrace_core::model::Role,
    backend: Option<&'a str>,
    // extras
    client: &'a str,
    service_source: racetrace_core::model::NameSource,
    nat64: bool,
    history: &'a str,
    conn_state: &'static str,
    wireshark_filter: Text<racetrace_core::track::conn::WiresharkFilter<'a>>,
    synack_count: u32,
    packets_client: u64,
    packets_server: u64,
    handshake_rtt_ms: Option<f64>,
    syn_options: [SynOptionsJson; 2],
    last_time: f64,
    app: Option<AppJson<'a>>,
}

/// A value serialised as a JSON string through its `Display` (no intermediate `String`).
struct Text<T>(T);

impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

fn connection_json<'a>(c: &'a Connection, a: &'a Analysis) -> ConnectionJson<'a> {
    let r = &c.rec;
    let opts = |i: usize| {
        let o = r.syn_options.get(i).copied().unwrap_or_default();
        SynOptionsJson {
            mss: o.mss,
            wscale: o.wscale,
            sack_permitted: o.sack_permitted,
            timestamps: o.timestamps,
        }
    };
    ConnectionJson {
        id: c.id,
        first_record: r.first_record,
        last_record: r.last_record,
        family: r.family(),
        client_ip: Text(r.client.ip),
        client_port: r.client.port,
        server_ip: Text(r.server.ip),
        server_port: r.server.port,
        handshake_seen: r.handshake_seen,
        syn_time: opt_time(r.syn_time.get()),
        syn_count: r.syn_count,
        synack_time: opt_time(r.synack_time.get()),
        established_time: opt_time(r.established_time.get()),
        end_time: opt_time(r.end().map(|e| e.0)),
        end_reason: r.end_reason(),
        bytes_client: r.bytes[0],
        bytes_server: r.bytes[1],
        stage: r.stage(),
        server_tsval: r.server_tsval,
        tls_sni: c.tls().and_then(|t| t.sni.as_deref()),
        http: http_json(c),
        service: &c.service,
        race: c.race,
        role: c.role,
        backend: c.backend.as_deref(),
        client: a.hosts.get(c.host).map_or("", |h| h.label()),
        service_source: c.service_source,
        nat64: c.nat64,
        history: r.history.as_str(),
        conn_state: r.conn_state(),
        wireshark_filter: Text(r.wireshark_filter()),
        synack_count: r.synack_count,
        packets_client: r.packets[0],
        packets_server: r.packets[1],
        handshake_rtt_ms: r.handshake_legs().map(|(x, y)| ms_between(0, x + y)),
        syn_options: [opts(0), opts(1)],
        last_time: epoch_seconds(r.last_time),
        app: app_json(c),
    }
}
