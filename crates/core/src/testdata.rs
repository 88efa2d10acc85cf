//! Where the unit tests find capture files: the repository's own (`samples/`,
//! `tests/data/captures/`) and the tcpdump project's corpus outside it (`RACETRACE_CORPUS`, else
//! `../shared/corpus` beside the clone). A missing corpus prints `skipped: …`; with `CI=true`
//! it fails the test instead. The integration tests' `tests/support` follows the same rule.

use std::path::{Path, PathBuf};

/// Capture files (`.pcap`, `.pcapng`) of the repository: the samples and the real captures.
pub fn own_captures() -> Vec<PathBuf> {
    let root = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in [root.join("samples"), root.join("tests/data/captures")] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        files.extend(
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng")),
        );
    }
    files.sort();
    files
}

/// Every file of the tcpdump corpus, or `None` (with a `skipped:` line) when it is not there.
pub fn corpus() -> Option<Vec<PathBuf>> {
    let dir = match std::env::var_os("RACETRACE_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        let msg = format!(
            "skipped: corpus captures not found (looked in {}; set RACETRACE_CORPUS)",
            dir.display()
        );
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "CI=true and {msg}");
        skip_line(&msg);
        return None;
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    Some(files)
}

/// The `skipped: …` line, written to the process's standard error itself: the test harness
/// captures `eprintln!` of passing tests, and a skip must show in `cargo test`'s output.
fn skip_line(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}
