//! Terminal manners: listings print the warnings about their own findings only, `--quiet`
//! drops the warning lines, no progress bar when standard error is not a terminal, and the
//! completions and manual page come from the clap definitions.

mod support;

use support::*;

fn stderr_of(args: &[&str]) -> String {
    let o = racetrace(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stderr).unwrap()
}

/// samples/ws_duplicate.pcap has one warning, about backends (its server's clock is random
/// per connection): `analyze` and `backends` print it, `races`, `stale` and `connections` not.
#[test]
fn listings_print_only_their_own_warnings() {
    let cap = root().join("samples/ws_duplicate.pcap");
    let cap = cap.to_str().unwrap();
    let backend_line = "1 × backends_unidentifiable";
    let analyze = stderr_of(&["analyze", cap, "--json", "/dev/null"]);
    assert_eq!(analyze.lines().count(), 1, "{analyze}");
    assert!(analyze.starts_with("racetrace: warning: "), "{analyze}");
    assert!(analyze.contains("no backend identifiable"), "{analyze}");
    assert!(
        !analyze.contains(backend_line),
        "one warning is printed as itself: {analyze}"
    );
    let backends = stderr_of(&["backends", cap]);
    assert_eq!(backends, analyze);
    for cmd in ["races", "stale", "connections"] {
        assert_eq!(stderr_of(&[cmd, cap]), "", "{cmd}");
    }
    assert_eq!(
        stderr_of(&["analyze", cap, "--json", "/dev/null", "--quiet"]),
        ""
    );
    assert_eq!(stderr_of(&["-q", "backends", cap]), "");
}

/// Standard error is a pipe here: no bar, no carriage returns or escape sequences, whatever
/// `--color auto` would do on a terminal; `--color always` colours the warning prefix.
#[test]
fn no_bar_and_no_colour_off_a_terminal() {
    let cap = root().join("samples/ws_duplicate.pcap");
    let cap = cap.to_str().unwrap();
    let plain = stderr_of(&["analyze", cap, "--json", "/dev/null"]);
    assert!(
        !plain.contains('\r') && !plain.contains('\x1b'),
        "{plain:?}"
    );
    let colour = stderr_of(&["analyze", cap, "--json", "/dev/null", "--color", "always"]);
    assert!(
        colour.starts_with("racetrace: \x1b[1;33mwarning:\x1b[0m "),
        "{colour:?}"
    );
    let never = stderr_of(&["--color", "never", "analyze", cap, "--json", "/dev/null"]);
    assert_eq!(never, plain);
}

/// A file that is not a capture: `racetrace: error: …` naming it, exit 2.
#[test]
fn errors_are_labelled() {
    let p = write_temp("cli", "notes.txt", b"not a capture at all\n");
    let o = racetrace(&["races", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.starts_with("racetrace: error: "), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
}

#[test]
fn completions_and_manual_page_come_from_the_parser() {
    let bash = racetrace(&["completions", "bash"]);
    assert!(bash.status.success());
    let bash = String::from_utf8(bash.stdout).unwrap();
    for word in ["_racetrace", "analyze", "--race-window-ms", "--color"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let man = racetrace(&["man"]);
    assert!(man.status.success());
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(
        man.starts_with(".ie") || man.contains(".TH racetrace"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains("analyze") && man.contains("completions"));
}

/// Every listing ends its last line, on a capture with findings and on one without.
#[test]
fn listings_end_their_lines() {
    for sample in [
        "ws_duplicate",
        "lb_three_stable_backends",
        "stale_reuse_curl",
    ] {
        let cap = root().join(format!("samples/{sample}.pcap"));
        let cap = cap.to_str().unwrap();
        for args in [
            vec!["races", cap],
            vec!["stale", cap],
            vec!["backends", cap],
            vec!["connections", cap],
            vec!["connections", cap, "--format", "json"],
            vec!["check", cap, "--fail-on", "duplicate-upgrade,stale-reuse"],
        ] {
            let o = racetrace(&args);
            assert!(o.status.code().is_some_and(|c| c <= 1), "{args:?}");
            if !o.stdout.is_empty() {
                assert_eq!(o.stdout.last(), Some(&b'\n'), "{args:?}");
            }
        }
    }
}

/// A report is whole or absent: `--json` into a folder that does not exist fails naming the
/// file and creates nothing; with `--out`, an output that cannot be put in place (a folder
/// already has its name) fails the run and leaves no partial or temporary file beside it.
#[test]
fn a_failed_write_leaves_no_partial_report() {
    let cap = root().join("samples/ws_duplicate.pcap");
    let cap = cap.to_str().unwrap();
    let dir = tempdir("atomic");
    let missing = dir.join("no/such/dir/analysis.json");
    let o = racetrace(&["analyze", cap, "--json", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no/such/dir/analysis.json"), "{err}");
    assert!(!dir.join("no").exists());

    let out = dir.join("out");
    std::fs::create_dir_all(out.join("ws_duplicate/analysis.json")).unwrap();
    let o = racetrace(&["analyze", cap, "--out", out.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let left: Vec<String> = std::fs::read_dir(out.join("ws_duplicate"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["analysis.json"],
        "only the folder in the way is there"
    );

    // The same run into a clean folder writes every file whole, and no temporary.
    let clean = dir.join("clean");
    let o = racetrace(&["analyze", cap, "--out", clean.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = std::fs::read_dir(clean.join("ws_duplicate"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert!(names.contains(&"analysis.json".to_string()), "{names:?}");
}
