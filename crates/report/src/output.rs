//! One capture's report folder (`DIR/<stem>/`): `analysis.json`, `report.html`, the charts
//! as PNG and SVG, and the tables as CSV and Parquet, each kind selectable with `--outputs`.

use std::fs;
use std::path::Path;

use crate::atomic::{self, AtomicFile};
use crate::{charts, html, json, tables};
use racetrace_core::domain::Stage;
use racetrace_core::error::Error;
use racetrace_core::model::Analysis;

/// Which outputs to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outputs {
    /// `report.html`.
    pub html: bool,
    /// Charts as PNG.
    pub png: bool,
    /// Charts as SVG.
    pub svg: bool,
    /// Tables as CSV.
    pub csv: bool,
    /// Tables as Parquet.
    pub parquet: bool,
    /// `analysis.json`.
    pub json: bool,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            html: true,
            png: true,
            svg: true,
            csv: true,
            parquet: true,
            json: true,
        }
    }
}

impl Outputs {
    /// Parse `html,png,svg,csv,parquet,json`.
    pub fn parse(list: &str) -> Result<Outputs, Error> {
        let mut o = Outputs {
            html: false,
            png: false,
            svg: false,
            csv: false,
            parquet: false,
            json: false,
        };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "html" => o.html = true,
                "png" => o.png = true,
                "svg" => o.svg = true,
                "csv" => o.csv = true,
                "parquet" => o.parquet = true,
                "json" => o.json = true,
                other => {
                    return Err(Error::Usage(format!(
                        "--outputs: unknown output {other:?} (html, png, svg, csv, parquet, json)"
                    )))
                }
            }
        }
        Ok(o)
    }
}

fn write_err(path: &Path, e: impl ToString) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The table files written per capture (without extension).
pub const TABLES: [&str; 10] = [
    "connections",
    "races",
    "backends",
    "sequences",
    "stale_reuses",
    "services_summary",
    "listeners",
    "floods",
    "scans",
    "health_checks",
];

/// Write one capture's folder.
pub fn write_folder(
    a: &Analysis,
    folder: &Path,
    o: Outputs,
    cancel_by: Stage,
) -> Result<(), Error> {
    fs::create_dir_all(folder).map_err(|e| write_err(folder, e))?;
    if o.json {
        let path = folder.join("analysis.json");
        let mut w = AtomicFile::create(&path).map_err(|e| write_err(&path, e))?;
        json::write(a, &mut w)
            .and_then(|_| w.commit())
            .map_err(|e| write_err(&path, e))?;
    }
    if o.csv || o.parquet {
        let path = folder.join("connections");
        let csv = o.csv.then(|| path.with_extension("csv"));
        let parquet = o.parquet.then(|| path.with_extension("parquet"));
        let shown = csv.as_deref().or(parquet.as_deref()).unwrap_or(&path);
        tables::write_connections(a, csv.as_deref(), parquet.as_deref())
            .map_err(|e| write_err(shown, e))?;
        // The findings tables a frame at a time (a busy capture has hundreds of thousands
        // of races); the services summary (one row per service) whole.
        for name in TABLES.iter().filter(|&&n| n != "connections") {
            let path = folder.join(name);
            let csv = o.csv.then(|| path.with_extension("csv"));
            let parquet = o.parquet.then(|| path.with_extension("parquet"));
            let shown = csv.as_deref().or(parquet.as_deref()).unwrap_or(&path);
            let done = tables::write_findings_table(a, name, csv.as_deref(), parquet.as_deref())
                .map_err(|e| write_err(shown, e))?;
            if done {
                continue;
            }
            let mut df = tables::service_summary(a).map_err(|e| write_err(&path, e))?;
            if let Some(p) = &csv {
                tables::write_csv(&mut df, p).map_err(|e| write_err(p, e))?;
            }
            if let Some(p) = &parquet {
                tables::write_parquet(&mut df, p).map_err(|e| write_err(p, e))?;
            }
        }
    }
    for kind in charts::KINDS {
        if o.png {
            let p = folder.join(format!("{}.png", kind.stem()));
            atomic::with_path(&p, |tmp| {
                charts::write_png(kind, a, tmp).map_err(std::io::Error::other)
            })
            .map_err(|e| write_err(&p, e))?;
        }
        if o.svg {
            let p = folder.join(format!("{}.svg", kind.stem()));
            let svg = charts::svg(kind, a).map_err(|e| write_err(&p, e))?;
            atomic::write(&p, svg).map_err(|e| write_err(&p, e))?;
        }
    }
    if o.html {
        let p = folder.join("report.html");
        let page = html::report(a, cancel_by).map_err(|e| write_err(&p, e))?;
        atomic::write(&p, page).map_err(|e| write_err(&p, e))?;
    }
    Ok(())
}

/// What the batch index keeps of one analysed capture: its analysis is dropped as soon as its
/// own outputs are written, so a batch's memory does not grow with the number of files.
pub struct IndexEntry {
    row: html::IndexRow,
    csv: [(&'static str, String); 9],
}

impl IndexEntry {
    /// The index row of the capture written under `stem`.
    pub fn new(stem: &Path, a: &Analysis) -> IndexEntry {
        let s = &a.summary;
        let name = stem.to_string_lossy().into_owned();
        let mut csv = tables::capture_row(a);
        if let Some(first) = csv.first_mut() {
            first.1 = name.clone();
        }
        IndexEntry {
            row: html::IndexRow {
                link: format!("{name}/report.html"),
                name,
                connections: s.connections,
                races: s.races,
                also_rans: s.also_rans,
                duplicate_upgrades: s.duplicate_upgrades,
                backends: s.backends,
                family_switches: s.family_switches,
                stale_reuses: s.stale_reuses,
                median: s
                    .median_attempt_delay_ms
                    .map(|m| format!("{m:.1}"))
                    .unwrap_or_default(),
            },
            csv,
        }
    }
}

/// `index.html` and `summary.csv` of a batch: one row per capture, and the files that failed.
pub fn write_index(dir: &Path, entries: &[IndexEntry], failed: &[String]) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let index_rows: Vec<&html::IndexRow> = entries.iter().map(|e| &e.row).collect();
    let p = dir.join("index.html");
    let page = html::index(&index_rows, failed).map_err(|e| write_err(&p, e))?;
    atomic::write(&p, page).map_err(|e| write_err(&p, e))?;

    let p = dir.join("summary.csv");
    let mut out = String::new();
    if let Some(e) = entries.first() {
        let header: Vec<&str> = e.csv.iter().map(|c| c.0).collect();
        out.push_str(&header.join(","));
        out.push('\n');
    }
    for e in entries {
        let cells: Vec<String> = e
            .csv
            .iter()
            .map(|c| crate::terminal::csv_field(&c.1))
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    atomic::write(&p, out).map_err(|e| write_err(&p, e))
}
