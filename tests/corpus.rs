//! Every capture of the tcpdump project's test corpus (outside the repository: `RACETRACE_CORPUS`
//! or ../shared/corpus; skipped with a line when absent, required in CI; many link types,
//! many deliberately malformed) is read without a panic: exit 0 with a valid report, or a
//! clear error (exit 2) that names the file.

mod support;

use std::path::{Path, PathBuf};

use support::*;

#[test]
fn every_corpus_file_reads_without_panic() {
    let Some(dir) = outside("corpus") else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e != "tsv" && e != "md"));
    files.sort();
    assert!(files.len() >= 800, "corpus has {} files", files.len());
    let (ok, errors, _) = read_all(&files);
    eprintln!("corpus: {ok} analysed, {errors} refused with an error");
    assert!(ok > 700);
}

/// Damaged copies of the samples and of the corpus's pcapng files (bytes changed, runs of
/// bytes cut out or put in, files cut short), made by a fixed-seed generator: every one is read
/// without a panic, like the corpus itself. Both outcomes must occur, or the damage tested
/// nothing: reports (of what could be read, with warnings) and refusals.
#[test]
fn damaged_captures_read_without_panic() {
    let mut sources: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
            .collect();
    // The project's own real captures, and the corpus's pcapng files when it is there.
    sources.extend(
        std::fs::read_dir(captures())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap")),
    );
    if let Some(corpus) = outside("corpus") {
        sources.extend(
            std::fs::read_dir(&corpus)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "pcapng")),
        );
    }
    // By file name, so the damage done to each does not depend on where the clone sits.
    sources.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    assert!(sources.len() >= 19, "{} sources", sources.len());
    let dir = tempdir("damaged");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut files = Vec::new();
    for (k, src) in sources.iter().enumerate() {
        let bytes = std::fs::read(src).unwrap();
        for m in 0..6 {
            let path = dir.join(format!("damaged-{k}-{m}.pcap"));
            std::fs::write(&path, damage(&bytes, &mut rng)).unwrap();
            files.push(path);
        }
    }
    let (ok, errors, warnings) = read_all(&files);
    eprintln!("damaged: {ok} analysed ({warnings} warnings), {errors} refused with an error");
    assert!(
        ok > 0 && errors > 0 && warnings > 0,
        "{ok} analysed ({warnings} warnings), {errors} refused"
    );
}

/// 1 to 20 changes: a byte set, up to 64 bytes cut out, or up to 64 random bytes put in; then,
/// one time in five, the file cut short.
fn damage(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = bytes.to_vec();
    for _ in 0..1 + rng.below(20) {
        if d.is_empty() {
            break;
        }
        let at = rng.below(d.len());
        match rng.below(10) {
            0..=5 => d[at] = rng.next() as u8,
            6 | 7 => {
                let end = (at + 1 + rng.below(64)).min(d.len());
                d.drain(at..end);
            }
            _ => {
                let run: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                d.splice(at..at, run);
            }
        }
    }
    if rng.below(5) == 0 {
        d.truncate(rng.below(d.len() + 1));
    }
    d
}

/// Analyse `files` in batches of 100 through the binary: no panic, exit 0 or 2, every report
/// valid against the schema, every error naming its file, one outcome per file. Returns the
/// counts of reports, of errors and of warnings.
fn read_all(files: &[PathBuf]) -> (usize, usize, usize) {
    let (mut ok, mut errors, mut warnings) = (0, 0, 0);
    // One process per chunk of files keeps the run short; a panic anywhere fails the chunk.
    for chunk in files.chunks(100) {
        let mut args: Vec<&str> = vec!["analyze", "--json", "-"];
        args.extend(chunk.iter().map(|p| p.to_str().unwrap()));
        let out = racetrace(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "panic: {stderr}");
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)),
            "exit {:?}: {stderr}",
            out.status
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        for doc in stdout.lines() {
            validate(doc);
            ok += 1;
        }
        warnings += stderr.lines().filter(|l| l.contains("warning:")).count();
        for line in stderr.lines().filter(|l| !l.contains("warning:")) {
            assert!(
                chunk
                    .iter()
                    .any(|p| line.contains(p.file_name().unwrap().to_str().unwrap())),
                "error names no file: {line}"
            );
            errors += 1;
        }
        assert_eq!(
            stdout.lines().count() + stderr.lines().filter(|l| !l.contains("warning:")).count(),
            chunk.len()
        );
    }
    (ok, errors, warnings)
}
