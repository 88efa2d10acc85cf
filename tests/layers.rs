//! The module graph of the core crate has no cycles, and its stages depend on each other only
//! downwards, in the order the pipeline runs. Run it to see the graph:
//!
//! ```text
//! cargo test --test layers -- --nocapture
//! ```
//!
//! Each top-level module of `crates/core/src` (a file or a folder) is a node; an edge A → B is
//! a `crate::B` path written in A's code (comments left out). The crates themselves are
//! layered by Cargo: `racetrace-report` and `racetrace-synth` depend on the core, never the
//! other way, and the root package (the command line) on both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a module may use modules of its own or a lower layer only.
const LAYERS: &[&[&str]] = &[
    &["domain", "engine"],
    &["error"],
    &["read"],
    &["decode"],
    &["app"],
    &["model"],
    &["track"],
    &["detect"],
];

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if p.extension().is_some_and(|x| x == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The code of a file without its comments (line comments to the end of the line).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named by `crate::X` paths, `crate::{X, Y::…}` groups included.
fn targets(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item_start) = (0usize, true);
            for (j, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// Module → the modules it uses, for every top-level module of the crate whose sources are in
/// `dir` (relative to the repository).
fn graph(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap().filter_map(|e| e.ok()) {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let root_or_data = ["lib", "main", "mod", "testdata", "templates"].contains(&name.as_str());
        if root_or_data || !(p.is_dir() || p.extension().is_some_and(|x| x == "rs")) {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&p, &mut files);
        modules.insert(name, files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .map(|(name, files)| {
            let mut uses = BTreeSet::new();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap();
                // The command line's modules are `crate::cli::…` from the binary's root.
                let code = code(&text).replace("crate::cli::", "crate::");
                uses.extend(
                    targets(&code)
                        .into_iter()
                        .filter(|t| *t != name && names.contains(t)),
                );
            }
            (name, uses)
        })
        .collect()
}

/// A cycle through the graph, if there is one (depth-first search with colours).
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = path.iter().position(|p| *p == n).unwrap();
                let mut c: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_core_modules_form_layers_without_cycles() {
    let g = graph("crates/core/src");
    println!("core module graph (module -> the modules it uses):");
    for (m, uses) in &g {
        let list: Vec<&str> = uses.iter().map(|s| s.as_str()).collect();
        println!("  {m:<8} -> {}", list.join(", "));
    }
    assert_eq!(cycle(&g), None, "an import cycle");
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    for (m, uses) in &g {
        let lm = layer(m).unwrap_or_else(|| panic!("module {m} is in no layer of LAYERS"));
        for u in uses {
            let lu = layer(u).unwrap_or_else(|| panic!("module {u} is in no layer of LAYERS"));
            assert!(lu <= lm, "{m} (layer {lm}) uses {u}, a higher layer ({lu})");
        }
    }
    // Every stage of the pipeline is there (a renamed folder must be placed in LAYERS).
    for l in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(
            g.contains_key(*l),
            "LAYERS names {l}, which is not a module"
        );
    }
}

/// The other crates' modules have no cycles either (comments, doc links included, are left
/// out of the graph).
#[test]
fn the_report_and_command_line_modules_have_no_cycles() {
    for dir in ["crates/report/src", "crates/synth/src", "src/cli"] {
        let g = graph(dir);
        println!("{dir}:");
        for (m, uses) in &g {
            let list: Vec<&str> = uses.iter().map(|s| s.as_str()).collect();
            println!("  {m:<10} -> {}", list.join(", "));
        }
        assert!(g.len() >= 2, "{dir}: no modules found");
        assert_eq!(cycle(&g), None, "{dir}: an import cycle");
    }
}

#[test]
fn the_reader_finds_grouped_and_plain_paths() {
    let t = targets(&code(
        "use crate::{model::{A, B}, track};\nfn f() { crate::domain::x(); } // crate::render\n",
    ));
    let t: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
    assert_eq!(t, ["domain", "model", "track"]);
}
