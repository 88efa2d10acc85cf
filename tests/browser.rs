//! The report pages in a real browser (headless Chromium, offline): they render, load
//! without a console message or a CSP violation, fit 1280 px without sideways scrolling, and
//! their race cards, ladders, sorting, filtering and chart details work when driven.
//! Without a browser these skip with a message; in CI (`CI=true`) that is a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// `analyze samples/ --out DIR` once per test binary run.
fn batch() -> &'static Path {
    static OUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    OUT.get_or_init(|| {
        let out = tempdir("browser-batch");
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

/// Headless Chromium with a fresh profile, offline, on `url` with `args`; `None` when no
/// browser is installed (skipped; a failure in CI).
fn chromium(url: &str, args: &[&str]) -> Option<std::process::Output> {
    let browser = program(
        &["chromium", "chromium-browser", "google-chrome"],
        "the report in a real browser (.ci/run installs chromium)",
    )?;
    let profile = tempdir("chromium-profile");
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    Some(o)
}

/// The page as headless Chromium has it after loading (scripts run).
fn browser_dom(page: &Path, fragment: &str) -> Option<String> {
    let o = chromium(
        &format!("file://{}{fragment}", page.display()),
        &["--dump-dom"],
    )?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(String::from_utf8(o.stdout).unwrap())
}

/// A screenshot of `page` at `w`×`h` px, checked: the size asked for, not blank, with text
/// and with the charts' colour.
fn screenshot(page: &Path, shot: &Path, (w, h): (u32, u32)) -> Option<()> {
    let o = chromium(
        &format!("file://{}", page.display()),
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={w},{h}"),
        ],
    )?;
    assert!(
        shot.is_file(),
        "no screenshot of {}: {}",
        page.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let img = image::open(shot).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (w, h), "{}", page.display());
    let total = (w * h) as usize;
    let count = |f: &dyn Fn(&[u8; 3]) -> bool| img.pixels().filter(|p| f(&p.0)).count();
    let white = count(&|p| p.iter().all(|&c| c > 245));
    let dark = count(&|p| p.iter().all(|&c| c < 100));
    // Saturated pixels: the charts' and ladders' colours (grey text and lines are not).
    let colour = count(&|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 100);
    let name = page.display();
    assert!(
        white < total * 97 / 100,
        "{name} is blank: {white} of {total} pixels white"
    );
    assert!(dark > 2000, "{name} has no text: {dark} dark pixels");
    assert!(colour > 1000, "{name} has no chart colour: {colour}");
    Some(())
}

/// Screenshots of the four reports the README shows (a WebSocket duplicate, a slow IPv6
/// path, three load-balanced backends, a stale reuse): 1280 px wide, each the page's first
/// 2,400 px, not blank, with text and chart colour. `reports/refresh.sh` writes the same
/// into `reports/screenshots/`.
#[test]
fn screenshots_of_the_sample_reports_are_not_blank() {
    let dir = tempdir("screenshots");
    for name in [
        "ws_duplicate",
        "he_curl_v6slow",
        "lb_three_stable_backends",
        "stale_reuse_curl",
    ] {
        let page = batch().join(name).join("report.html");
        if screenshot(&page, &dir.join(format!("{name}.png")), (1280, 2400)).is_none() {
            return;
        }
    }
}

/// The batch index and every sample's report page.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = vec![batch().join("index.html")];
    for e in std::fs::read_dir(batch()).unwrap() {
        let p = e.unwrap().path().join("report.html");
        if p.is_file() {
            pages.push(p);
        }
    }
    pages.sort();
    assert_eq!(pages.len(), 13, "{pages:?}");
    pages
}

/// Every page (each sample's report and the batch index) loads offline with no console
/// message at all: no script error, no CSP violation, nothing blocked. Chromium logs each
/// console message as `:CONSOLE:` on standard error.
#[test]
fn pages_load_without_a_console_message_or_csp_violation() {
    for page in pages() {
        let Some(o) = chromium(
            &format!("file://{}", page.display()),
            &["--enable-logging=stderr", "--v=0", "--dump-dom"],
        ) else {
            return;
        };
        let log = String::from_utf8_lossy(&o.stderr);
        let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(console.is_empty(), "{}: {console:#?}", page.display());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("</html>"),
            "{}",
            page.display()
        );
    }
}

/// A copy of `page` with the step `probe` (JavaScript that returns a JSON-able value) run
/// after the page's own script, its result left in `<pre id="probe">`; the copy drops the
/// CSP meta so the probe may run (the page itself is tested under its CSP above).
fn probe(page: &Path, probe: &str, width: u32) -> Option<serde_json::Value> {
    probe_at(page, "", probe, width)
}

/// [`probe`] with the page's address ending in `fragment` (its kept table state).
fn probe_at(page: &Path, fragment: &str, probe: &str, width: u32) -> Option<serde_json::Value> {
    let html = std::fs::read_to_string(page).unwrap();
    let start = html
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .unwrap();
    let end = start + html[start..].find('>').unwrap() + 1;
    let body = html.rfind("</body>").unwrap();
    let copy = format!(
        "{}{}<script>(function(){{var r;try{{r=(function(){{{probe}}})()}}catch(e){{r={{error:String(e)}}}}\
         var pre=document.createElement(\"pre\");pre.id=\"probe\";pre.textContent=JSON.stringify(r);\
         document.body.appendChild(pre)}})();</script>{}",
        &html[..start],
        &html[end..body],
        &html[body..]
    );
    // A folder of its own: tests run in parallel.
    let at = tempdir("probe").join("report.html");
    std::fs::write(&at, copy).unwrap();
    let o = chromium(
        &format!("file://{}{fragment}", at.display()),
        &[&format!("--window-size={width},900"), "--dump-dom"],
    )?;
    let _ = std::fs::remove_dir_all(at.parent().unwrap());
    let dom = String::from_utf8(o.stdout).unwrap();
    let from = dom.find("<pre id=\"probe\">").expect("the probe ran") + 16;
    let text = &dom[from..from + dom[from..].find("</pre>").unwrap()];
    let text = text
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    Some(serde_json::from_str(&text).unwrap())
}

/// At 1280 px no page (the index, each sample's report) scrolls sideways: the page is no wider than the window, and
/// no table, chart or ladder reaches past it.
#[test]
fn pages_fit_1280_px_without_sideways_scrolling() {
    let step = "var w=innerWidth,wide=[];\
        document.querySelectorAll(\"table,figure svg,svg.ladder,.tbl\").forEach(function(e){\
        var r=e.getBoundingClientRect();if(r.right>w+0.5)wide.push(e.tagName+\".\"+(e.className.baseVal||e.className)+\" \"+Math.round(r.right))});\
        return {inner:w,scroll:document.documentElement.scrollWidth,wide:wide}";
    // The measure can fail: a table made 2,000 px wide is caught.
    let page = batch().join("ws_duplicate/report.html");
    let widen = "document.querySelector(\"table\").style.minWidth=\"2000px\";";
    let Some(v) = probe(&page, &format!("{widen}{step}"), 1280) else {
        return;
    };
    // (Inside its scrolling box it widens no page: only the element check sees it.)
    let wide = v["wide"].as_array().unwrap();
    assert_eq!(wide.len(), 1, "{v}");
    assert!(
        wide[0].as_str().unwrap().starts_with("TABLE.sortable "),
        "{v}"
    );
    for page in pages() {
        let Some(v) = probe(&page, step, 1280) else {
            return;
        };
        assert_eq!(v["inner"], 1280, "{}: {v}", page.display());
        assert!(
            v["scroll"].as_u64().unwrap() <= 1280,
            "{}: {v}",
            page.display()
        );
        assert_eq!(v["wide"], serde_json::json!([]), "{}", page.display());
    }
}

/// Each chart item has its details: the page's script turns every bar's and point's SVG
/// `<title>` into a tooltip that shows on hover. ws_duplicate's timeline has a detail per
/// attempt (6), the also-ran's says where it was cancelled; he_curl_v6slow's five late
/// SYN-ACK resets are said to be that, and none is drawn as a cancel.
#[test]
fn chart_details_show_on_hover() {
    let step = "var out={};document.querySelectorAll(\"figure\").forEach(function(f){\
        var svg=f.querySelector(\"svg\"),tips=svg?svg.querySelectorAll(\".tips [data-tip]\"):[];\
        var name=(f.querySelector(\"figcaption a\")||{}).getAttribute?f.querySelector(\"figcaption a\").getAttribute(\"href\").replace(\".png\",\"\"):\"?\";\
        out[name]={tips:Array.prototype.map.call(tips,function(t){return t.getAttribute(\"data-tip\")}),\
        titles:svg?svg.querySelectorAll(\".tips title\").length:0}});\
        var t=document.querySelector(\"figure .tips [data-tip]\"),b=t.getBoundingClientRect();\
        t.dispatchEvent(new MouseEvent(\"mouseover\",{bubbles:true,clientX:b.left+2,clientY:b.top+2}));\
        var box=document.querySelector(\".charttip\");\
        out.shown={hidden:box.hidden,text:box.textContent,left:box.style.left};return out";
    let Some(v) = probe(&batch().join("ws_duplicate/report.html"), step, 1280) else {
        return;
    };
    let timeline: Vec<&str> = v["race_timeline"]["tips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(timeline.len(), 6, "{v}");
    assert_eq!(
        v["race_timeline"]["titles"], 0,
        "titles left as native tooltips"
    );
    assert!(
        timeline[0].starts_with("race 0 #0 v6 also-ran: "),
        "{}",
        timeline[0]
    );
    assert!(
        timeline[0].contains(" · WebSocket 101 +"),
        "{}",
        timeline[0]
    );
    assert!(timeline[0].contains(" · cancelled +"), "{}", timeline[0]);
    assert!(
        timeline[1].starts_with("race 0 #1 v4 winner: "),
        "{}",
        timeline[1]
    );
    assert!(!timeline[1].contains("cancelled"), "{}", timeline[1]);
    // The hovered item's details are shown, placed by the pointer.
    assert_eq!(v["shown"]["hidden"], false, "{v}");
    assert_eq!(v["shown"]["text"].as_str(), Some(timeline[0]));
    assert!(v["shown"]["left"].as_str().unwrap().ends_with("px"), "{v}");
    // Fates: one detail per bar (stage and fate), with the count.
    let fates = v["fates"]["tips"].as_array().unwrap();
    assert!(!fates.is_empty(), "{v}");
    assert!(
        fates
            .iter()
            .all(|t| t.as_str().unwrap().contains(" cancelled at ")),
        "{v}"
    );

    let Some(v) = probe(&batch().join("he_curl_v6slow/report.html"), step, 1280) else {
        return;
    };
    let tips: Vec<&str> = v["race_timeline"]["tips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tips.iter()
            .filter(|t| t.contains("reset the late SYN-ACK"))
            .count(),
        5,
        "{tips:#?}"
    );
    assert_eq!(
        tips.iter().filter(|t| t.contains("cancelled")).count(),
        0,
        "{tips:#?}"
    );
}

/// The part of `dom` from race card `id`'s root element to its end.
fn race_card(dom: &str, id: usize) -> &str {
    let at = dom
        .find(&format!("data-race=\"{id}\""))
        .unwrap_or_else(|| panic!("no card for race {id}"));
    let rest = &dom[at..];
    &rest[..rest.find("</details>").unwrap()]
}

/// Every race of ws_duplicate has a card with its ladder, open (each one sent a duplicate
/// WebSocket upgrade): both paths' upgrades and 101s drawn, the also-ran's FIN marked as the
/// cancel, times after the first SYN, and the verdicts in words with their RFCs.
#[test]
fn race_cards_draw_each_race_as_a_ladder_in_the_browser() {
    let Some(dom) = browser_dom(&batch().join("ws_duplicate/report.html"), "") else {
        return;
    };
    assert_eq!(dom.matches("data-race=\"").count(), 3);
    assert_eq!(dom.matches("<svg class=\"ladder\"").count(), 3);
    for (race, also_ran, winner) in [(0, 0, 1), (1, 2, 3), (2, 4, 5)] {
        let card = race_card(&dom, race);
        assert!(card.contains(" open=\"\""), "race {race} is closed");
        assert_eq!(
            card.matches("Upgrade: websocket").count(),
            2 * 2,
            "label and tooltip"
        );
        assert_eq!(card.matches(">101 Switching Protocols<").count(), 2);
        assert_eq!(card.matches("class=\"ev lose cancel\"").count(), 1);
        assert!(card.contains(">FIN (cancel)<"));
        assert!(card.contains(&format!(">SYN #{also_ran}<")));
        assert!(card.contains(&format!(">SYN #{winner}<")));
        assert!(card.contains(">+0.0 ms<"), "the first SYN is the origin");
        // The query string (it may carry keys) is not shown.
        assert!(!card.contains("round="));
        assert!(card.contains("The server opened two WebSocket sessions"));
        assert!(card.contains("RFC 8305 §6"));
        assert!(card.contains(&format!("Winner: attempt #{winner} to 198.18.0.2 (IPv4)")));
        assert!(card.contains("Wireshark display filter: <code>(ipv6.addr == fd18::1"));
    }
    // The findings link to the first race that shows them.
    assert!(dom.contains("<a href=\"#race-0\">See the evidence</a>"));
    // curl's also-rans were given up unseen (in SYN_SENT); the RST answers the late SYN-ACK
    // and is not drawn as the cancel. The resolver's answers come before the first SYN.
    let page = std::fs::read_to_string(batch().join("he_curl_v6slow/report.html")).unwrap();
    assert_eq!(page.matches(">RST (to the late SYN-ACK)<").count(), 5);
    assert!(!page.contains("(cancel)"));
    let card = race_card(&page, 0);
    assert!(card.contains(">AAAA answer<") && card.contains(">A answer<"));
    assert!(
        card.contains(">-0.6 ms<"),
        "the answers 0.6 ms before the first SYN"
    );
}

/// The part of `dom` holding page table `name`.
fn page_table<'d>(dom: &'d str, name: &str) -> &'d str {
    let at = dom
        .find(&format!("<div class=\"tbl\" id=\"{name}\">"))
        .unwrap_or_else(|| panic!("no table {name}"));
    let rest = &dom[at..];
    &rest[..rest.find("</table>").unwrap()]
}

/// Sorting and filtering run in the browser, driven by the state the page keeps in its
/// address: the races sorted by id, descending, and the connections filtered to IPv4.
#[test]
fn tables_sort_and_filter_in_the_browser() {
    let page = batch().join("ws_duplicate/report.html");
    let Some(dom) = browser_dom(&page, "#sort=races,0,desc&q=connections,ipv4") else {
        return;
    };
    let races = page_table(&dom, "races");
    assert!(
        races.contains("<th title=\"id\" class=\"desc\">id</th>"),
        "{races}"
    );
    let ids: Vec<&str> = races
        .split("<tr><td>")
        .skip(1)
        .map(|r| &r[..r.find("</td>").unwrap()])
        .collect();
    assert_eq!(ids, ["2", "1", "0"]);
    let conns = page_table(&dom, "connections");
    assert!(conns.contains("3 of 6 rows match"), "{conns}");
    assert_eq!(conns.matches("<tr hidden=\"\">").count(), 3);
    for row in conns.split("<tr>").skip(2) {
        assert!(row.contains("ipv4"), "an IPv6 row is shown: {row}");
    }
}

/// A table longer than a page shows 100 rows at a time: previous/next move through the
/// rows that match the filter, and the page kept in the address is restored on load.
#[test]
fn long_tables_show_a_hundred_rows_a_page() {
    use racetrace_synth::busy::{Busy, BusyConfig, Limit};
    let dir = tempdir("browser-pages");
    let capture = dir.join("busy.pcap");
    let mut pcap = Vec::new();
    Busy::new(BusyConfig::default())
        .write(Limit::Fetches(200), &mut pcap, &mut Vec::new())
        .unwrap();
    std::fs::write(&capture, &pcap).unwrap();
    let out = dir.join("out");
    let o = racetrace(&[
        "analyze",
        capture.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = out.join("busy/report.html");
    let json = std::fs::read_to_string(out.join("busy/analysis.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let n = report["connections"].as_array().unwrap().len();
    assert!(
        (201..=2000).contains(&n),
        "{n} connections: want three pages or more"
    );
    // What the connections table shows: the pager's words, and the ids of the rows shown.
    let look = "var t=document.querySelector('table[data-table=connections]'),\
        shown=Array.prototype.filter.call(t.tBodies[0].rows,function(r){return !r.hidden});\
        return {at:t.closest('.tbl').querySelector('.pager .at').textContent,\
        ids:shown.map(function(r){return Number(r.cells[0].textContent)})}";
    let next = "document.querySelector('#connections .pager button:last-child').click();";
    let Some(first) = probe(&page, look, 1280) else {
        return;
    };
    assert_eq!(first["at"], format!("rows 1–100 of {n}"));
    let ids: Vec<u64> = (0..100).collect();
    assert_eq!(first["ids"], serde_json::json!(ids));
    let second = probe(&page, &format!("{next}{look}"), 1280).unwrap();
    assert_eq!(second["at"], format!("rows 101–200 of {n}"));
    let ids: Vec<u64> = (100..200).collect();
    assert_eq!(second["ids"], serde_json::json!(ids));
    // The third page from the address, sorted by id descending: the ids below the top 200.
    let third = probe_at(
        &page,
        "#sort=connections,0,desc&p=connections,2",
        look,
        1280,
    )
    .unwrap();
    assert_eq!(third["at"], format!("rows 201–{} of {n}", n.min(300)));
    let ids: Vec<u64> = (0..n.min(300) - 200)
        .map(|k| (n - 201 - k) as u64)
        .collect();
    assert_eq!(third["ids"], serde_json::json!(ids));
}
