//! Connections past the memory budget spill to a temporary file and are read back a block at a
//! time (`model::store`): the report is the same, byte for byte, as when everything stays in
//! memory, on every sample, every real capture and a busy capture of 5,000 fetches; a spill
//! that cannot be written fails the analysis with a message naming the folder, and leaves no
//! report.

mod support;

use std::path::{Path, PathBuf};

use racetrace_core::model::store::SpillConfig;
use racetrace_core::Options;
use racetrace_synth::busy::{Busy, BusyConfig, Limit};
use support::{racetrace, root, tempdir};

/// The JSON report of `path`, with the connections kept in memory or spilled after every
/// `block` connections (budget 0); and whether it spilled.
fn report(path: &Path, spill: Option<(usize, &Path)>) -> (Vec<u8>, bool) {
    let mut opts = Options::default();
    if let Some((block, dir)) = spill {
        opts.spill = SpillConfig {
            budget: 0,
            dir: dir.to_path_buf(),
            block,
        };
    }
    let a = racetrace_core::analyze(&[path.to_string_lossy().into_owned()], &opts).unwrap();
    let mut out = Vec::new();
    racetrace_report::json::write(&a, &mut out).unwrap();
    (out, a.connections.spilled())
}

/// The volatile members (timings, memory peaks) differ between any two runs: blank them.
fn stable(json: &[u8]) -> String {
    let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
    if let Some(o) = v.as_object_mut() {
        o.remove("timings");
        o.remove("tool");
    }
    serde_json::to_string(&v).unwrap()
}

fn captures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [root().join("samples"), root().join("tests/data/captures")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn spilled_reports_equal_in_memory_ones_on_every_sample_and_real_capture() {
    let dir = tempdir("spill");
    let mut spilled = 0;
    for path in captures() {
        let (mem, _) = report(&path, None);
        // Blocks of 1, 2 and 7: every connection alone, pairs split across blocks, and a
        // partial block left in memory.
        for block in [1, 2, 7] {
            let (disk, did) = report(&path, Some((block, &dir)));
            assert_eq!(stable(&disk), stable(&mem), "{path:?}, blocks of {block}");
            spilled += usize::from(did);
        }
    }
    assert!(spilled >= 30, "only {spilled} runs spilled");
    // The spill files are unlinked as soon as they are made.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn a_spilled_busy_capture_reports_the_same_as_in_memory() {
    let dir = tempdir("spill-busy");
    let path = dir.join("busy.pcap");
    let (mut pcap, mut truth) = (Vec::new(), Vec::new());
    let cfg = BusyConfig {
        seed: 5,
        ..BusyConfig::default()
    };
    let totals = Busy::new(cfg)
        .write(Limit::Fetches(5_000), &mut pcap, &mut truth)
        .unwrap();
    std::fs::write(&path, &pcap).unwrap();
    let (mem, _) = report(&path, None);
    let (disk, did) = report(&path, Some((512, &dir)));
    assert!(did);
    assert!(totals.connections > 5_000);
    assert_eq!(stable(&disk), stable(&mem));
}

/// The spill folder cannot be written (here it is a file: root, which CI may be, bypasses
/// permission bits): the run fails naming the folder and the option, and writes no report of it.
#[test]
fn a_spill_that_cannot_be_written_fails_without_a_report() {
    let dir = tempdir("spill-fail");
    let not_a_dir = dir.join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let json = dir.join("out.json");
    let sample = root().join("samples/he_curl_v6slow.pcap");
    let out = racetrace(&[
        "analyze",
        sample.to_str().unwrap(),
        "--memory-limit",
        "1",
        "--temp-dir",
        not_a_dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("spill to") && err.contains(not_a_dir.to_str().unwrap()),
        "{err}"
    );
    assert!(err.contains("--temp-dir"), "{err}");
    // Batch mode: the other captures' reports (none here) are still written, this one's is
    // not; with no capture's report to hold, the JSON file is not left at all.
    assert!(!json.exists());
}

/// A capture of `n` unanswered SYNs from distinct sources (a flood), enough connections to
/// fill several spill blocks at a tiny memory limit.
fn flood_capture(n: usize) -> PathBuf {
    let mut s = racetrace_synth::Scenario::new();
    support::syn_flood(&mut s, n, 0.1);
    support::write_temp("spill-full", "flood.pcap", &s.to_pcap())
}

/// Runs `racetrace analyze` on `capture` through `sh -c PREFIX exec racetrace …`, spilling
/// every connection (`--memory-limit 1`) into `spill`, with `--json` and `--out` in `out`.
/// Asserts the run fails (exit 2) with a message naming the spill folder and `reason`, and
/// leaves no JSON report and no report folder for the capture: only the batch index, which
/// lists the capture as failed.
fn assert_spill_fails(
    shell: &[&str],
    prefix: &str,
    capture: &Path,
    spill: &Path,
    out: &Path,
    reason: &str,
) {
    let bin = env!("CARGO_BIN_EXE_racetrace");
    let json = out.join("report.json");
    let folder = out.join("reports");
    let script = format!(
        "{prefix} exec '{bin}' analyze '{}' --memory-limit 1 --temp-dir '{}' --json '{}' --out '{}'",
        capture.display(),
        spill.display(),
        json.display(),
        folder.display()
    );
    let run = std::process::Command::new(shell[0])
        .args(&shell[1..])
        .arg(&script)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{script}: {err}");
    assert!(
        err.contains(&format!(
            "spill to {} failed (writing): {reason}",
            spill.display()
        )),
        "{err}"
    );
    assert!(err.contains("--temp-dir"), "{err}");
    assert!(!json.exists(), "no JSON report is left: {err}");
    let mut left: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["index.html", "summary.csv"], "only the batch index");
    let index = std::fs::read_to_string(folder.join("index.html")).unwrap();
    assert!(index.contains("No space left") || index.contains("File too large"));
    // No temporary is left beside the outputs, and the spill file is gone.
    let stray: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// The disk fills while spilling: a 64 KiB tmpfs as the spill folder, mounted in a mount
/// namespace of the test's own (`unshare`, user and mount namespaces, removed with the
/// process). Where user namespaces are not allowed, this says `skipped` (the file-size limit
/// below fails the same writes on any machine).
#[test]
fn a_full_disk_fails_the_spill_without_a_report() {
    let capture = flood_capture(40_000);
    let dir = tempdir("spill-tmpfs");
    let (mnt, out) = (dir.join("mnt"), dir.join("out"));
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let probe = std::process::Command::new("unshare")
        .args(["-rm", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: unshare -rm (user and mount namespaces) is not allowed here");
        return;
    }
    let mount = format!("mount -t tmpfs -o size=64k tmpfs '{}' &&", mnt.display());
    assert_spill_fails(
        &["unshare", "-rm", "sh", "-c"],
        &mount,
        &capture,
        &mnt,
        &out,
        "No space left on device",
    );
}

/// The same with the file-size limit (`ulimit -f`, SIGXFSZ ignored so the write fails with
/// EFBIG instead of killing the process): needs no privilege at all.
#[test]
fn a_spill_past_the_file_size_limit_fails_without_a_report() {
    let capture = flood_capture(40_000);
    let dir = tempdir("spill-fsize");
    let (spill, out) = (dir.join("spill"), dir.join("out"));
    std::fs::create_dir_all(&spill).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    assert_spill_fails(
        &["sh", "-c"],
        "ulimit -f 64; trap '' XFSZ;",
        &capture,
        &spill,
        &out,
        "File too large",
    );
}

/// Sequences, stale reuses, listeners and services read the spill once between them (their
/// passes are shared: `detect::Visitor`), the pass counted with the first of them; with stale
/// reuses in the capture and without.
#[test]
fn neighbouring_detectors_share_one_pass_over_the_spill() {
    let dir = tempdir("spill-shared");
    for (sample, stale) in [
        ("stale_reuse_curl.pcap", true),
        ("he_curl_v6slow.pcap", false),
    ] {
        let path = root().join("samples").join(sample);
        let opts = Options {
            spill: SpillConfig {
                budget: 0,
                dir: dir.clone(),
                block: 1,
            },
            ..Options::default()
        };
        let a = racetrace_core::analyze(&[path.to_string_lossy().into_owned()], &opts).unwrap();
        let on_disk = a.connections.spilled_count() as u64;
        assert!(on_disk > 0);
        assert_eq!(a.connections.with_stale() > 0, stale, "{sample}");
        let passes: Vec<(&str, u64)> = a
            .timings
            .detectors
            .iter()
            .map(|d| (d.name, d.read_back / on_disk))
            .collect();
        let shared = [
            ("sequences", 1),
            ("stale", 0),
            ("listeners", 0),
            ("services", 0),
        ];
        for (name, want) in shared {
            assert!(
                passes.contains(&(name, want)),
                "{sample}: {name}: {passes:?}"
            );
        }
    }
}
