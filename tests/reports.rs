//! Reports: the README's main command over `samples/` (batch, every output), read back and
//! compared with the JSON; charts; the CI gate; unreadable inputs in a batch; determinism
//! across thread counts; the page's Content-Security-Policy. The page in a real browser is
//! tests/browser.rs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use polars::prelude::*;
use serde_json::Value;
use support::*;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn sample_stems() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(samples())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "pcap")
                .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    v.sort();
    v
}

/// `analyze samples/ --out DIR` once per test binary run.
fn batch() -> &'static Path {
    static OUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    OUT.get_or_init(|| {
        let out = tempdir("reports-batch");
        let o = racetrace(&[
            "analyze",
            samples().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    })
}

fn json(stem: &str) -> Value {
    let text = std::fs::read_to_string(batch().join(stem).join("analysis.json")).unwrap();
    validate(&text);
    serde_json::from_str(&text).unwrap()
}

fn csv(path: &Path) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.into()))
        .unwrap()
        .finish()
        .unwrap()
}

fn parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .map(|ca| (0..ca.len()).map(|i| ca.get(i)).collect())
        .unwrap()
}

fn strs(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name)
        .unwrap()
        .str()
        .map(|ca| {
            (0..ca.len())
                .map(|i| ca.get(i).map(str::to_string))
                .collect()
        })
        .unwrap()
}

/// A column's cells as text (numbers and booleans printed, nulls `None`).
fn texts(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    let col = df.column(name).unwrap();
    let s = col.cast(&DataType::String).unwrap();
    let ca = s.str().unwrap();
    (0..ca.len())
        .map(|i| ca.get(i).map(str::to_string))
        .collect()
}

/// The JSON value at a dotted path as a table cell spells it: lists (at any level of the path)
/// joined with `;`, `null` or a missing member as no value.
fn json_text(v: &Value, path: &[&str]) -> Option<String> {
    match (v, path.split_first()) {
        (Value::Array(items), _) => Some(
            items
                .iter()
                .map(|x| json_text(x, path).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(";"),
        ),
        (Value::Null, _) => None,
        (_, Some((first, rest))) => json_text(v.get(*first)?, rest),
        (Value::String(s), None) => Some(s.clone()),
        (other, None) => Some(other.to_string()),
    }
}

/// Two cells say the same: equal text, or equal numbers item by item (`200` and `200.0`).
fn same_text(table: Option<&str>, json: Option<&str>) -> bool {
    match (table, json) {
        (None, None) => true,
        // CSV reads an empty text back as null.
        (None, Some("")) | (Some(""), None) => true,
        (Some(a), Some(b)) => {
            a == b || {
                let (x, y): (Vec<&str>, Vec<&str>) =
                    (a.split(';').collect(), b.split(';').collect());
                x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| {
                    p == q
                        || matches!((p.parse::<f64>(), q.parse::<f64>()), (Ok(m), Ok(n)) if m == n)
                })
            }
        }
        _ => false,
    }
}

#[test]
fn every_sample_gets_every_output_and_the_index_lists_them() {
    let stems = sample_stems();
    assert!(stems.len() >= 10);
    for stem in &stems {
        let dir = batch().join(stem);
        let mut files = vec!["analysis.json".to_string(), "report.html".into()];
        for t in racetrace_report::output::TABLES {
            files.push(format!("{t}.csv"));
            files.push(format!("{t}.parquet"));
        }
        for k in racetrace_report::charts::KINDS {
            files.push(format!("{}.png", k.stem()));
            files.push(format!("{}.svg", k.stem()));
        }
        for f in files {
            assert!(dir.join(&f).is_file(), "{stem}/{f} missing");
        }
        json(stem); // schema-valid
    }
    // minijinja escapes '/' in attributes; the browser reads it back as '/'.
    let index = std::fs::read_to_string(batch().join("index.html"))
        .unwrap()
        .replace("&#x2f;", "/");
    for stem in &stems {
        assert!(
            index.contains(&format!("href=\"{stem}/report.html\"")),
            "{stem} not in index"
        );
    }
    // A fleet view: seven counts per capture, each with its inline bar, and a filter box.
    assert_eq!(index.matches("<span class=\"bar").count(), 7 * stems.len());
    assert!(index.contains("<input type=\"search\" class=\"filter\""));
    let row = &index[index.find("href=\"ws_duplicate/report.html\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("<td class=\"num bad\" data-v=\"3\">"), "{row}");
    let summary = csv(&batch().join("summary.csv"));
    assert_eq!(summary.height(), stems.len());
    let dup = json("ws_duplicate");
    let row = strs(&summary, "capture")
        .iter()
        .position(|c| c.as_deref() == Some("ws_duplicate"))
        .unwrap();
    assert_eq!(
        f64s(&summary, "duplicate_upgrades")[row],
        dup["summary"]["duplicate_upgrades"].as_f64()
    );
}

#[test]
fn csv_and_parquet_read_back_equal_the_json() {
    for stem in [
        "ws_duplicate",
        "he_curl_v6slow",
        "lb_backends",
        "stale_reuse_curl",
    ] {
        let j = json(stem);
        let dir = batch().join(stem);
        // Every table is its JSON list flattened: every cell of every column equals the JSON
        // value at the column's dotted path (list items joined with `;`).
        for table in [
            "connections",
            "races",
            "backends",
            "sequences",
            "stale_reuses",
            "listeners",
            "floods",
            "scans",
            "health_checks",
        ] {
            let items = j[table].as_array().unwrap();
            for (kind, df) in [
                ("csv", csv(&dir.join(format!("{table}.csv")))),
                ("parquet", parquet(&dir.join(format!("{table}.parquet")))),
            ] {
                assert_eq!(df.height(), items.len(), "{stem} {table}.{kind}");
                let names: Vec<String> = df
                    .get_column_names()
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                for name in &names {
                    let cells = texts(&df, name);
                    if let Some(time) = name.strip_suffix("_iso") {
                        if names.iter().any(|n| n == time) {
                            // The twin spells the same instant as the seconds beside it.
                            for (i, c) in cells.iter().enumerate() {
                                let secs =
                                    items[i].pointer(&format!("/{}", time.replace('.', "/")));
                                assert_eq!(
                                    c.is_some(),
                                    secs.is_some_and(|v| !v.is_null()),
                                    "{stem} {table}.{kind} {name}"
                                );
                            }
                            continue;
                        }
                    }
                    let path: Vec<&str> = name.split('.').collect();
                    for (i, c) in cells.iter().enumerate() {
                        let want = json_text(&items[i], &path);
                        assert!(
                            same_text(c.as_deref(), want.as_deref()),
                            "{stem} {table}.{kind} row {i} column {name}: table {c:?}, JSON {want:?}"
                        );
                    }
                }
                // Every member of the JSON objects is a column (or, nested, a dotted one).
                for item in items {
                    for key in item.as_object().unwrap().keys() {
                        assert!(
                            names
                                .iter()
                                .any(|n| n == key || n.starts_with(&format!("{key}."))),
                            "{stem} {table}.{kind}: no column for {key}"
                        );
                    }
                }
            }
        }
        let svc = parquet(&dir.join("services_summary.parquet"));
        let races_per_service: f64 = f64s(&svc, "races").iter().flatten().sum();
        assert_eq!(races_per_service, j["summary"]["races"].as_f64().unwrap());
    }
    // Per-service summary computed with polars: curl's five races, median and p95.
    let svc = parquet(&batch().join("he_curl_v6slow/services_summary.parquet"));
    let j = json("he_curl_v6slow");
    let mut d: Vec<f64> = j["races"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attempt_delays_ms"][0].as_f64().unwrap())
        .collect();
    d.sort_by(f64::total_cmp);
    assert_eq!(f64s(&svc, "median_attempt_delay_ms")[0], Some(d[2]));
    assert_eq!(f64s(&svc, "also_ran_rate")[0], Some(0.5));
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    (
        u32::from_be_bytes(b[16..20].try_into().unwrap()),
        u32::from_be_bytes(b[20..24].try_into().unwrap()),
    )
}

#[test]
fn charts_are_png_and_svg_of_the_expected_size_with_text() {
    for stem in ["ws_duplicate", "lb_backends", "stale_reuse_curl"] {
        let a = racetrace_core::analyze(
            &[samples()
                .join(format!("{stem}.pcap"))
                .to_string_lossy()
                .into_owned()],
            &racetrace_core::Options::default(),
        )
        .unwrap();
        for k in racetrace_report::charts::KINDS {
            let png = batch().join(stem).join(format!("{}.png", k.stem()));
            assert_eq!(png_size(&png), k.size(&a), "{stem} {}", k.stem());
            // Text was drawn: the image has dark pixels (labels) on white.
            let img = image::open(&png).unwrap().to_luma8();
            let dark = img.pixels().filter(|p| p.0[0] < 80).count();
            assert!(dark > 500, "{stem} {}: {dark} dark pixels", k.stem());
            let svg = std::fs::read_to_string(batch().join(stem).join(format!("{}.svg", k.stem())))
                .unwrap();
            assert!(svg.starts_with("<svg"), "{stem} {}", k.stem());
            assert!(svg.contains("<text"), "{stem} {}", k.stem());
            assert!(svg.contains(k.title().split(' ').next().unwrap()));
        }
    }
    // Empty data says so.
    let svg = std::fs::read_to_string(batch().join("stale_reuse_curl/race_timeline.svg")).unwrap();
    assert!(svg.contains("Nothing to show"));
}

#[test]
fn report_page_is_self_contained_with_a_strict_csp() {
    use sha2::Digest;
    let page = std::fs::read_to_string(batch().join("ws_duplicate/report.html")).unwrap();
    let csp_start = page.find("Content-Security-Policy\" content=\"").unwrap();
    let csp = &page[csp_start..page[csp_start..].find("\">").unwrap() + csp_start];
    assert!(csp.contains("default-src 'none'"));
    assert!(!csp.contains("unsafe-eval"));
    // The one inline script is admitted by its hash.
    let s = page.rfind("<script>").unwrap() + "<script>".len();
    let e = page.rfind("</script>").unwrap();
    let digest = sha2::Sha256::digest(&page.as_bytes()[s..e]);
    let hash = racetrace_report::html::base64(&digest);
    assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
    // Nothing fetched: no src attributes, no url() but to a fragment of the page itself
    // (the ladders' arrowheads), no @import, only relative links.
    for bad in ["src=", "@import", "href=\"http", "href=\"//"] {
        assert!(!page.contains(bad), "page contains {bad}");
    }
    let urls: Vec<&str> = page.split("url(").skip(1).collect();
    assert_eq!(urls.len(), 3 * 15, "one arrow per event, 15 in each race");
    assert!(
        urls.iter().all(|u| u.starts_with("#ah-")),
        "url() outside the page"
    );
    // Headline first, then plain-words findings.
    assert!(page.find("duplicate upgrades").unwrap() < page.find("<h2>Findings").unwrap());
    assert!(page.contains("3 of 3 races sent a WebSocket upgrade on both paths"));
}

#[test]
fn check_exit_codes_and_junit() {
    let dir = tempdir("check");
    let junit = dir.join("j.xml");
    let dup = samples().join("ws_duplicate.pcap");
    let ok = samples().join("ws_cancel.pcap");
    let o = racetrace(&[
        "check",
        dup.to_str().unwrap(),
        ok.to_str().unwrap(),
        "--fail-on",
        "duplicate-upgrade,late-cancel",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("duplicate-upgrade:"))
            .count(),
        3
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("late-cancel:"))
            .count(),
        3
    );
    assert!(out.contains("race 0 (ws.he.lab, records 4–30)"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"4\" failures=\"2\" errors=\"0\""));
    assert_eq!(xml.matches("<testcase ").count(), 4);
    assert_eq!(xml.matches("<failure ").count(), 2);
    // Rules that hold: exit 0.
    let o = racetrace(&[
        "check",
        ok.to_str().unwrap(),
        "--fail-on",
        "duplicate-upgrade",
        "--max-attempt-delay-ms",
        "300",
    ]);
    assert_eq!(o.status.code(), Some(0));
    // A threshold: curl's 200 ms delays against a 150 ms limit; also-ran rate 0.5 > 0.4.
    let curl = samples().join("he_curl_v6slow.pcap");
    let o = racetrace(&[
        "check",
        curl.to_str().unwrap(),
        "--max-attempt-delay-ms",
        "150",
        "--max-also-ran-rate",
        "0.4",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("max-attempt-delay:"))
            .count(),
        5
    );
    assert!(out.contains("also-ran rate 0.500 (5 also-rans of 10 attempts) exceeds 0.4"));
    // An unreadable input wins: 2, and it is an error case in the JUnit file.
    let bad = write_temp("check-bad", "bad.pcap", b"this is not a capture at all");
    let o = racetrace(&[
        "check",
        dup.to_str().unwrap(),
        bad.to_str().unwrap(),
        "--fail-on",
        "duplicate-upgrade",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(std::fs::read_to_string(&junit)
        .unwrap()
        .contains("<error message="));
}

#[test]
fn a_bad_file_in_a_batch_does_not_stop_the_others() {
    let input = tempdir("batch-bad-in");
    std::fs::copy(samples().join("ws_cancel.pcap"), input.join("a.pcap")).unwrap();
    std::fs::write(input.join("b.pcap"), b"not a capture").unwrap();
    std::fs::copy(
        samples().join("stale_reuse_curl.pcap"),
        input.join("c.pcap"),
    )
    .unwrap();
    let out = tempdir("batch-bad-out");
    let o = racetrace(&[
        "analyze",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("b.pcap"));
    assert!(out.join("a/report.html").is_file());
    assert!(out.join("c/report.html").is_file());
    assert!(!out.join("b").exists());
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(index.contains("1 inputs could not be read"));
}

fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn output_is_identical_with_one_and_four_threads() {
    let mut trees = Vec::new();
    for threads in ["1", "4"] {
        let out = tempdir(&format!("threads-{threads}"));
        let o = Command::new(env!("CARGO_BIN_EXE_racetrace"))
            .env("RAYON_NUM_THREADS", threads)
            .args([
                "analyze",
                samples().to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--json",
                out.join("all.ndjson").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
        trees.push(tree(&out));
    }
    assert!(trees[0].len() > 100);
    assert_eq!(trees[0].len(), trees[1].len());
    for (x, y) in trees[0].iter().zip(&trees[1]) {
        assert_eq!(x.0, y.0);
        assert!(
            x.1 == y.1,
            "{} differs between 1 and 4 threads",
            x.0.display()
        );
    }
}

#[test]
fn outputs_and_filters_select_what_is_written() {
    let out = tempdir("outputs");
    let f = samples().join("ws_duplicate.pcap");
    let o = racetrace(&[
        "analyze",
        f.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--outputs",
        "json,csv",
        "--since",
        "2026-11-23T00:27:56Z",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = out.join("ws_duplicate");
    assert!(dir.join("analysis.json").is_file() && dir.join("races.csv").is_file());
    assert!(
        !dir.join("report.html").exists()
            && !dir.join("races.parquet").exists()
            && !dir.join("fates.png").exists()
    );
    let text = std::fs::read_to_string(dir.join("analysis.json")).unwrap();
    validate(&text);
    let j: Value = serde_json::from_str(&text).unwrap();
    // The first race (00:27:55) is filtered out; ids are renumbered consistently.
    assert_eq!(j["races"].as_array().unwrap().len(), 2);
    assert_eq!(j["connections"].as_array().unwrap().len(), 4);
    assert_eq!(j["races"][0]["attempts"], serde_json::json!([0, 1]));
    assert_eq!(j["summary"]["duplicate_upgrades"], 2);
    let o = racetrace(&[
        "analyze",
        f.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--outputs",
        "pdf",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

/// A capture big enough for several read batches and several JSON chunks per array: the
/// sharded tracker and the parallel JSON writer give byte-identical output on 1 and 3 threads,
/// and every connection is found once, in order.
#[test]
fn many_connections_identical_across_thread_counts() {
    use racetrace_core::domain::Side;
    use racetrace_synth::{write_pcap, Link, Scenario};
    let mut s = Scenario::new();
    let n = 5000;
    for k in 0..n {
        let (client, server) = if k % 2 == 0 {
            (format!("10.0.{}.{}", k / 250, k % 250 + 1), "192.0.2.80")
        } else {
            (format!("fd00::{:x}", k + 1), "2001:db8::80")
        };
        let c = s.tcp(&client, 40_000 + (k % 20_000) as u16, server, 443);
        let t = f64::from(k) * 0.4;
        s.handshake(c, t, 0.3);
        s.data(c, Side::Client, t + 0.5, &[0x41; 600]);
        s.data(c, Side::Server, t + 0.9, &[0x42; 1400]);
        s.fin(c, Side::Client, t + 1.2)
            .fin(c, Side::Server, t + 1.3)
            .ack(c, Side::Client, t + 1.4);
    }
    let pcap = write_temp(
        "many",
        "many.pcap",
        &write_pcap(&s.frames(Link::Ethernet), Link::Ethernet, false, 262_144),
    );
    assert!(
        std::fs::metadata(&pcap).unwrap().len() > 3 << 20,
        "spans several batches"
    );
    let mut docs = Vec::new();
    for threads in ["1", "3"] {
        let o = Command::new(env!("CARGO_BIN_EXE_racetrace"))
            .env("RAYON_NUM_THREADS", threads)
            .args(["analyze", pcap.to_str().unwrap(), "--json", "-"])
            .output()
            .unwrap();
        assert!(o.status.success());
        docs.push(o.stdout);
    }
    assert!(docs[0] == docs[1], "output differs between 1 and 3 threads");
    let v: Value = serde_json::from_slice(&docs[0]).unwrap();
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(conns.len(), n as usize);
    for (i, c) in conns.iter().enumerate() {
        assert_eq!(c["id"], i);
        assert_eq!(c["end_reason"], "fin_client");
        assert_eq!(c["bytes_client"], 600);
        assert_eq!(c["bytes_server"], 1400);
    }
    // Ids follow the first record: each connection's SYN is its first packet, 9 packets each.
    let firsts: Vec<u64> = conns
        .iter()
        .map(|c| c["first_record"].as_u64().unwrap())
        .collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(v["capture"]["peak_open_connections"], 4);
    validate(std::str::from_utf8(&docs[0]).unwrap());

    // The trackers' records in chunks of 7 (hundreds of chunk boundaries, each chunk freed as
    // the merge reads it) give the same document as the default chunks.
    let json = |chunk: usize| {
        let mut opts = racetrace_core::Options::default();
        opts.track.record_chunk = chunk;
        let a = racetrace_core::analyze(&[pcap.to_str().unwrap().to_string()], &opts).unwrap();
        let mut out = Vec::new();
        racetrace_report::json::write(&a, &mut out).unwrap();
        out
    };
    let small = json(7);
    assert!(small == json(racetrace_core::Options::default().track.record_chunk));
    assert_eq!(small.len() + 1, docs[0].len(), "the CLI adds a newline");
}

/// The records reach the connection list batch by batch while the capture is read, so the
/// trackers' chunks hold only what a connection still in a tracker's table holds back: with
/// none open for long, only the connections closed in the last seconds (their linger time)
/// wait for the end; with a
/// connection open from the first packet to the last, every later record waits for it and
/// is merged at the end, in order, across hundreds of chunk boundaries. The report is the
/// same whatever the chunk size.
#[test]
fn records_are_merged_while_reading_unless_an_open_connection_holds_them_back() {
    use racetrace_core::domain::Side;
    use racetrace_synth::{write_pcap, Link, Scenario};
    let n = 3000;
    // Short connections 20 ms apart (60 s of capture), each reset 50 ms after its SYN; with
    // `long`, a connection from the first packet to the last, kept from going idle.
    let capture = |long: bool| {
        let mut s = Scenario::new();
        let first = long.then(|| s.tcp("10.9.0.1", 50_000, "192.0.2.80", 443));
        if let Some(c) = first {
            s.handshake(c, 0.0, 10.0);
        }
        for k in 0..n {
            let c = s.tcp(
                &format!("10.1.{}.{}", k / 250, k % 250 + 1),
                40_000,
                "192.0.2.80",
                443,
            );
            let t = 1000.0 + f64::from(k) * 20.0;
            s.handshake(c, t, 10.0);
            s.rst(c, Side::Client, t + 50.0);
            if let Some(long) = first.filter(|_| k % 500 == 0) {
                s.data(long, Side::Client, t + 5.0, b"ping");
            }
        }
        if let Some(c) = first {
            let end = 1000.0 + f64::from(n) * 20.0 + 1000.0;
            s.fin(c, Side::Client, end)
                .fin(c, Side::Server, end + 10.0)
                .ack(c, Side::Client, end + 20.0);
        }
        let name = if long { "held.pcap" } else { "free.pcap" };
        write_temp(
            "held",
            name,
            &write_pcap(&s.frames(Link::Ethernet), Link::Ethernet, false, 262_144),
        )
    };
    // On two threads (two shards), whatever the machine: how many records wait for the end
    // depends on how often each shard sees a packet.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let run = |pcap: &std::path::Path, chunk: usize| {
        let mut opts = racetrace_core::Options::default();
        opts.track.record_chunk = chunk;
        pool.install(|| {
            let a = racetrace_core::analyze(&[pcap.to_str().unwrap().to_string()], &opts).unwrap();
            let mut out = Vec::new();
            racetrace_report::json::write(&a, &mut out).unwrap();
            (a, out)
        })
    };
    let in_order = |a: &racetrace_core::model::Analysis| {
        a.connections
            .to_vec()
            .windows(2)
            .all(|w| w[0].rec.first_record < w[1].rec.first_record)
            && a.connections.iter().enumerate().all(|(i, c)| c.id == i)
    };

    let free = capture(false);
    let (a, small) = run(&free, 7);
    assert_eq!(a.connections.len(), n as usize);
    assert!(in_order(&a));
    // Closed connections linger 4 s (200 of them at one every 20 ms), and each shard's sweep
    // that flushes them runs once a second of the capture time its own packets show, every
    // 40 ms or so on two shards: 200 to about 255 wait for the end (244 measured; 201 on one
    // shard, 500 on 64, whose sweeps come seconds apart).
    assert!(
        (200..=260).contains(&a.timings.merged_late),
        "{} of {n} connections merged after the last read",
        a.timings.merged_late
    );
    assert!(small == run(&free, racetrace_core::Options::default().track.record_chunk).1);

    let held = capture(true);
    let (a, small) = run(&held, 7);
    assert_eq!(a.connections.len(), n as usize + 1);
    assert_eq!(
        a.timings.merged_late,
        n as usize + 1,
        "all wait for the first"
    );
    let first = a.connections.get(0).unwrap();
    assert_eq!((first.id, first.rec.client.port), (0, 50_000));
    assert_eq!(first.rec.end_reason(), "fin_client");
    assert!(in_order(&a));
    assert!(small == run(&held, racetrace_core::Options::default().track.record_chunk).1);
    validate(std::str::from_utf8(&small).unwrap());
}

/// A closed standard error (a CI script's `2>&1 | head`) does not end the run: the warnings
/// and `--stats` lines are dropped, the report is still written whole and the exit code is
/// the analysis's. (`eprintln!` panicked on the failed write, and the release build aborted
/// before the JSON file was flushed.)
#[test]
fn a_closed_stderr_does_not_cut_the_report() {
    use std::process::Stdio;
    let sample = samples().join("he_curl_like_v6_slow.pcap");
    let out = tempdir("closed-stderr").join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_racetrace"))
        .args(["analyze", sample.to_str().unwrap(), "--stats", "--json"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let whole = racetrace(&["analyze", sample.to_str().unwrap(), "--json", "-"]);
    assert!(whole.status.success());
    let written = std::fs::read(&out).unwrap();
    assert!(
        written == whole.stdout,
        "the report differs from a run with stderr open"
    );
    validate(std::str::from_utf8(&written).unwrap());
}

/// `--stats` gives each stage's CPU time and the number of cores it kept busy (CPU over
/// wall-clock time), and each detector's cores, for one capture; for a batch, whose captures
/// are analysed at the same time and share the process's CPU time, it leaves them out.
#[test]
fn stats_give_each_stages_cpu_time_for_one_capture() {
    let one = samples().join("he_curl_like_v6_slow.pcap");
    let other = samples().join("he_chromium_like_v6_blackhole.pcap");
    let stats = |files: &[&Path]| {
        let mut args = vec!["analyze"];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        args.extend(["--json", "-", "--stats"]);
        let out = racetrace(&args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let stderr = stats(&[&one]);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("racetrace: stats: CPU time"))
        .unwrap_or_else(|| panic!("no CPU line in {stderr}"));
    // The reader thread, the workers and the main thread: no stage keeps more cores busy.
    let threads = std::thread::available_parallelism().unwrap().get() as f64 + 2.0;
    // "NAME SECONDS s (CORES cores)", comma-separated, after the line's label.
    let parse = |list: &str| -> Vec<(String, f64, f64)> {
        list.split(", ")
            .map(|s| {
                let w: Vec<&str> = s.split(' ').collect();
                assert_eq!((w.len(), w[2], w[4]), (5, "s", "cores)"), "{s}");
                let cores = w[3].strip_prefix('(').unwrap();
                (
                    w[0].to_string(),
                    w[1].parse().unwrap(),
                    cores.parse().unwrap(),
                )
            })
            .collect()
    };
    let stages = parse(line.split_once("): ").unwrap().1);
    let names: Vec<&str> = stages.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["read+decode+track", "detect", "render"], "{line}");
    for (name, cpu, cores) in &stages {
        assert!(
            *cpu >= 0.0 && (0.0..=threads).contains(cores),
            "{name}: {line}"
        );
    }
    // Reading spawns a thread and parses every record: never free.
    assert!(stages[0].1 > 0.0 && stages[0].2 > 0.0, "{line}");
    let detectors = stderr
        .lines()
        .find_map(|l| l.strip_prefix("racetrace: stats: detectors: "))
        .unwrap();
    let names: Vec<String> = parse(detectors).into_iter().map(|d| d.0).collect();
    // Every registered detector, in the order it runs.
    let registered: Vec<&str> = racetrace_core::detect::registry()
        .iter()
        .map(|d| d.name())
        .collect();
    assert_eq!(names, registered, "{stderr}");
    assert_eq!(names.len(), 10, "{stderr}");
    for (name, _, cores) in &parse(detectors) {
        assert!((0.0..=threads).contains(cores), "{name}: {stderr}");
    }
    // The peak after each detector, in the same order, never falling (a peak is a maximum).
    let peaks = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("racetrace: stats: peak resident memory after each detector: ")
        })
        .unwrap();
    let peaks: Vec<(&str, f64)> = peaks
        .split(", ")
        .map(|d| {
            let w: Vec<&str> = d.split(' ').collect();
            assert_eq!((w.len(), w[2]), (3, "MiB"), "{d}");
            (w[0], w[1].parse().unwrap())
        })
        .collect();
    assert_eq!(peaks.iter().map(|p| p.0).collect::<Vec<_>>(), registered);
    assert!(peaks.windows(2).all(|w| w[0].1 <= w[1].1), "{peaks:?}");
    assert!(peaks[0].1 > 0.0, "{peaks:?}");
    let batch = stats(&[&one, &other]);
    assert!(
        !batch.contains("CPU time") && !batch.contains("cores") && !batch.contains("each detector"),
        "{batch}"
    );
    assert_eq!(
        batch.matches("racetrace: stats: detectors:").count(),
        2,
        "{batch}"
    );
}

/// The terminal tables speak the report's words: attempts with their families, fates and
/// stages as the JSON spells them, counts in the singular when there is one, an unnamed
/// service's port once, and a sequence's strip with the backends' ids.
#[test]
fn terminal_tables_use_the_reports_words() {
    let text = |args: &[&str]| {
        let out = racetrace(args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let blackhole = samples().join("he_chromium_like_v6_blackhole.pcap");
    let races = text(&["races", blackhole.to_str().unwrap()]);
    let lines: Vec<&str> = races.lines().collect();
    let header = format!(
        "# {} — 1 race, 3 also-rans (times UTC, 2026-11-01)",
        blackhole.display()
    );
    assert_eq!(
        lines,
        [
            header.as_str(),
            "race   0 00:00:00.000 198.18.0.1,fd18::1 → fd18::2 443  \
             attempts #0 ipv6, #1 ipv6, #2 ipv6, #3 ipv4  delay 300.0 ms  winner #3 ipv4  \
             also-rans: #0 never_answered@syn, #1 never_answered@syn, #2 never_answered@syn",
            "summary: 4 connections, 1 race, 3 also-rans, median attempt delay 300.0 ms, \
             0 duplicate upgrades",
        ]
    );
    let slow = samples().join("he_curl_like_v6_slow.pcap");
    let races = text(&["races", slow.to_str().unwrap()]);
    assert!(
        races.contains("also-rans: #0 late_synack_reset@synack +299.6 ms\n"),
        "{races}"
    );

    let three = samples().join("lb_three_stable_backends.pcap");
    let backends = text(&["backends", three.to_str().unwrap()]);
    assert!(
        backends.contains(" — 3 backends, 4 family switches, 6 backend switches\n"),
        "{backends}"
    );
    assert!(
        backends.contains(
            "→ shop.example: 6B1 6B1 4B2 4B2 6B3 6B1 4B2 4B2 6B3 6B3 6B1 6B1  \
             (4 family switches, 6 backend switches, 4 both)\n"
        ),
        "{backends}"
    );
    assert!(
        backends.contains("service shop.example port 443: 100% of connections identified\n"),
        "{backends}"
    );
    let lb = samples().join("lb_backends.pcap");
    let backends = text(&["backends", lb.to_str().unwrap()]);
    assert!(backends.contains(" — 1 backend, "), "{backends}");
    assert!(
        backends.contains("\nservice 198.18.100.10 80: 27% of connections identified\n"),
        "{backends}"
    );
}
