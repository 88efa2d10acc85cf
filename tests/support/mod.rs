//! Shared helpers for the integration tests: temporary captures, running the real binary,
//! typed views of the JSON report, and schema validation against the contract in spec/.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory for one test, under the target directory's scratch space
/// (Cargo's `CARGO_TARGET_TMPDIR`), so that test runs leave nothing in the system's `/tmp`.
pub fn tempdir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("racetrace-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write bytes to a temporary file and return its path.
pub fn write_temp(tag: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let p = tempdir(tag).join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A small deterministic generator (xorshift64), so generated scenarios and damaged captures
/// are the same on every run and a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in [0, 1), in steps of one millionth.
    pub fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }

    /// A number in [0, n) (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Run the racetrace binary.
pub fn racetrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_racetrace"))
        .args(args)
        .output()
        .unwrap()
}

/// `analyze FILE --json -` through the real binary, parsed into the typed view.
pub fn analyze_json(path: &Path, extra: &[&str]) -> Report {
    serde_json::from_str(&analyze_value(path, extra).1).unwrap()
}

/// `analyze FILE --json -`: the schema-valid document as a JSON value, and its raw text.
pub fn analyze_value(path: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let p = path.to_str().unwrap();
    let mut args = vec!["analyze", p, "--json", "-"];
    args.extend_from_slice(extra);
    let out = racetrace(&args);
    assert!(
        out.status.success(),
        "racetrace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    validate(&text);
    (serde_json::from_str(&text).unwrap(), text)
}

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's own real captures with their truth files (`tests/data/captures`).
pub fn captures() -> PathBuf {
    root().join("tests/data/captures")
}

/// The report contract (`spec/`: REPORT.md and analysis.schema.json).
pub fn spec() -> PathBuf {
    root().join("spec")
}

/// Whether a missing outside file or program fails the run: in CI (`CI=true`) it does.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A third-party data set kept outside the repository (`corpus` for the tcpdump project's
/// captures, `quic` for the Zeek project's QUIC captures): under `RACETRACE_CORPUS` when set,
/// else `../shared/corpus` and `../shared/captures/quic` beside the clone. When it is not
/// there, prints `skipped: …` and returns `None`; in CI it fails instead.
pub fn outside(what: &str) -> Option<PathBuf> {
    let beside = root().join("..").join("shared");
    let candidates: Vec<PathBuf> = match std::env::var_os("RACETRACE_CORPUS") {
        Some(dir) => {
            let d = PathBuf::from(dir);
            vec![d.join(what), d]
        }
        None => match what {
            "quic" => vec![beside.join("captures/quic")],
            _ => vec![beside.join(what)],
        },
    };
    let found = candidates.iter().find(|d| {
        d.is_dir()
            && std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some())
            && (what != "corpus" || d.join("MANIFEST.tsv").is_file())
            && (what != "quic" || d.join("README.md").is_file())
    });
    match found {
        Some(d) => Some(d.clone()),
        None => {
            let msg = format!(
                "skipped: {what} captures not found (looked in {}; set RACETRACE_CORPUS)",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            assert!(!required(), "CI=true and {msg}");
            skip_line(&msg);
            None
        }
    }
}

/// An outside program (`chromium`, `tshark`) on the PATH, by any of `names`. When none is
/// there, prints `skipped: …` and returns `None`; in CI it fails instead.
pub fn program(names: &[&str], why: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        if std::env::split_paths(&path).any(|d| d.join(name).is_file()) {
            return Some((*name).to_string());
        }
    }
    let msg = format!("skipped: {why}: none of {names:?} is installed");
    assert!(!required(), "CI=true and {msg}");
    skip_line(&msg);
    None
}

/// Validate one JSON document against the contract's schema (spec/analysis.schema.json),
/// and against every earlier schema kept in `spec/history/` (the contract is extended, never
/// broken: a consumer still validating with an older one accepts every report).
pub fn validate(doc: &str) {
    let mut schemas = vec![spec().join("analysis.schema.json")];
    let mut history: Vec<_> = std::fs::read_dir(spec().join("history"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    history.sort();
    schemas.extend(history);
    for path in schemas {
        validate_with(&path, doc);
    }
}

/// Validate one JSON document against the schema at `path`.
pub fn validate_with(path: &Path, doc: &str) {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let value: serde_json::Value = serde_json::from_str(doc).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "schema violations of {}: {errors:#?}",
        path.display()
    );
}

/// The report, typed (the fields the tests assert on).
#[derive(Debug, Deserialize)]
pub struct Report {
    pub capture: Capture,
    pub summary: Summary,
    pub connections: Vec<Conn>,
    pub races: Vec<Race>,
    pub warnings: Vec<Warning>,
    pub services: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Capture {
    pub file: String,
    pub format: String,
    pub link_types: Vec<String>,
    pub packets: u64,
    pub first_time: Option<f64>,
    pub last_time: Option<f64>,
    pub truncated: bool,
    pub vantage: String,
    pub decode: serde_json::Value,
}

#[derive(Debug, Deserialize)]
pub struct Summary {
    pub connections: usize,
    pub races: usize,
    pub also_rans: usize,
    pub median_attempt_delay_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct Conn {
    pub id: usize,
    pub first_record: u64,
    pub last_record: u64,
    pub family: String,
    pub client_ip: String,
    pub client_port: u16,
    pub server_ip: String,
    pub server_port: u16,
    pub handshake_seen: bool,
    pub syn_time: Option<f64>,
    pub syn_count: u32,
    pub synack_time: Option<f64>,
    pub established_time: Option<f64>,
    pub end_time: Option<f64>,
    pub end_reason: String,
    pub bytes_client: u64,
    pub bytes_server: u64,
    pub stage: String,
    pub server_tsval: Option<u32>,
    pub service: String,
    pub race: Option<usize>,
    pub role: String,
    pub client: String,
    pub history: String,
    pub conn_state: String,
    pub wireshark_filter: String,
}

#[derive(Debug, Deserialize)]
pub struct Race {
    pub id: usize,
    pub service: String,
    pub client: String,
    pub start_time: f64,
    pub attempts: Vec<usize>,
    pub families: Vec<String>,
    pub first_family: String,
    pub winner: Option<usize>,
    pub winner_family: Option<String>,
    pub also_rans: Vec<usize>,
    pub attempt_delays_ms: Vec<f64>,
    pub also_ran_cancel: Vec<Cancel>,
    pub rfc8305: Vec<String>,
    pub dns: Option<RaceDns>,
}

/// A race's DNS timing (times in seconds since the epoch).
#[derive(Debug, Deserialize)]
pub struct RaceDns {
    pub name: String,
    pub aaaa_query_time: Option<f64>,
    pub aaaa_answer_time: Option<f64>,
    pub a_query_time: Option<f64>,
    pub a_answer_time: Option<f64>,
    pub answer_to_first_syn_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct Cancel {
    pub id: usize,
    pub stage: String,
    pub after_winner_ms: Option<f64>,
    pub fate: String,
}

#[derive(Debug, Deserialize)]
pub struct Warning {
    pub kind: String,
    pub packet: Option<u64>,
    pub message: String,
}

/// Seconds-since-epoch of a scenario time, as the report writes it.
pub fn secs(s: &racetrace_synth::Scenario, t_ms: f64) -> f64 {
    racetrace_core::domain::epoch_seconds(s.time(t_ms))
}

/// A wss race: IPv6 attempt at 0 ms (SYN-ACK at 260 ms), IPv4 at 250 ms (connected at once);
/// both complete a TLS 1.3 handshake for `sni` and send one encrypted record of `request_len`
/// bytes. The caller adds what follows (closes, replies). Returns (scenario, IPv6, IPv4).
pub fn wss_race(
    sni: &str,
    port: u16,
    request_len: usize,
) -> (
    racetrace_synth::Scenario,
    racetrace_synth::ConnId,
    racetrace_synth::ConnId,
) {
    use racetrace_core::domain::Side;
    use racetrace_synth::{tls, Scenario};
    let mut s = Scenario::new();
    s.same_host("198.18.0.1", "fd18::1");
    let v6 = s.tcp("fd18::1", port, "fd18::2", 443);
    let v4 = s.tcp("198.18.0.1", port + 1, "198.18.0.2", 443);
    s.syn(v6, 0.0).syn(v4, 250.0);
    s.synack(v4, 251.0).ack(v4, Side::Client, 251.05);
    s.synack(v6, 260.0).ack(v6, Side::Client, 260.05);
    for (c, t) in [(v4, 252.0), (v6, 261.0)] {
        s.data(c, Side::Client, t, &tls::client_hello(sni, &["http/1.1"]));
        let mut flight = tls::server_hello(true);
        flight.extend(tls::change_cipher_spec());
        flight.extend(tls::app_data(900));
        s.data(c, Side::Server, t + 1.0, &flight);
        let mut fin = tls::change_cipher_spec();
        fin.extend(tls::app_data(53)); // the client's Finished
        s.data(c, Side::Client, t + 2.0, &fin);
        s.data(c, Side::Client, t + 3.0, &tls::app_data(request_len)); // the upgrade, encrypted
    }
    (s, v6, v4)
}

/// The `skipped: …` line, written to the process's standard error itself: the test harness
/// captures `eprintln!` of passing tests, and a skip must show in `cargo test`'s output.
fn skip_line(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// A SYN flood into `s`: `n` unanswered SYNs to 192.0.2.80:80, one every `every_ms`, each
/// from its own source address in 10.0.0.0/8 (distinct up to 16.7 M).
pub fn syn_flood(s: &mut racetrace_synth::Scenario, n: usize, every_ms: f64) {
    for i in 0..n {
        let client = format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256);
        let c = s.tcp(&client, 40000, "192.0.2.80", 80);
        s.syn(c, i as f64 * every_ms);
    }
}
