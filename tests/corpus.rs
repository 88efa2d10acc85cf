//! Every capture of ../shared/corpus (the tcpdump project's test captures: many link types,
//! many deliberately malformed) is read without a panic: exit 0 with a valid report, or a
//! clear error (exit 2) that names the file.

mod support;

use support::*;

#[test]
fn every_corpus_file_reads_without_panic() {
    let dir = shared().join("corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e != "tsv" && e != "md"));
    files.sort();
    assert!(files.len() >= 800, "corpus has {} files", files.len());
    let (mut ok, mut errors) = (0, 0);
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
    eprintln!("corpus: {ok} analysed, {errors} refused with an error");
    assert!(ok > 700);
}
