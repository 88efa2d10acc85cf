//! Tables as polars DataFrames, written as CSV and Parquet: `connections`, `races`,
//! `backends`, `sequences` and `stale_reuses`, one row per object of the JSON report's list of
//! the same name, flattened from the same serde row type ([`crate::rows`], [`crate::flat`]):
//! nested members as dotted columns (`http.method`), lists joined with `;`, and every capture
//! time with an ISO-8601 twin (`syn_time_iso`). `services_summary` is the JSON's `services[]`
//! with per-service aggregates computed by polars' lazy group-by.

use std::path::Path;

use polars::prelude::*;

use racetrace_core::model::{
    Analysis, Backend, Flood, HealthCheck, Listener, Scan, Sequence, Service, StaleReuse,
};

use crate::atomic::AtomicFile;
use crate::flat::Table;
use crate::rows::{ConnectionRow, RaceRow};

macro_rules! frame {
    ($($name:expr => $v:expr),+ $(,)?) => {
        DataFrame::new_infer_height(vec![$(Series::new($name.into(), $v).into()),+])
    };
}

/// The connections table, a frame of [`FRAME_ROWS`] rows at a time (read a block at a time,
/// decoded from the spill past `--memory-limit`), each handed to `each` and dropped: every
/// frame has the columns and types of the row type's probe, so the frames make one table,
/// and a table of millions of connections is never whole in memory. A capture without
/// connections gives one empty frame.
pub fn connection_frames(
    a: &Analysis,
    mut each: impl FnMut(&DataFrame) -> PolarsResult<()>,
) -> PolarsResult<()> {
    let mut written = false;
    let mut t = Table::of::<ConnectionRow>();
    for block in a.connections.blocks() {
        for row in ConnectionRow::listed(a, &block) {
            t.push(&row);
            if t.len() >= FRAME_ROWS {
                each(&t.frame()?)?;
                written = true;
                t = Table::of::<ConnectionRow>();
            }
        }
    }
    if !t.is_empty() || !written {
        each(&t.frame()?)?;
    }
    Ok(())
}

/// The connections table's columns and types.
fn connections_schema() -> PolarsResult<Schema> {
    Ok(Table::of::<ConnectionRow>()
        .frame()?
        .schema()
        .as_ref()
        .clone())
}

/// Write the connections table as CSV to `csv` and as Parquet to `parquet` (a row group per
/// frame), each frame built once for both, a frame at a time (whole or not at all): on a
/// spilled capture, one read of the spill.
pub fn write_connections(
    a: &Analysis,
    csv: Option<&Path>,
    parquet: Option<&Path>,
) -> PolarsResult<()> {
    write_frames(&connections_schema()?, csv, parquet, |each| {
        connection_frames(a, each)
    })
}

/// Write the frames `fill` hands to its writer as one CSV file at `csv` and one Parquet file
/// at `parquet`, both with `schema`'s columns, each whole or not at all.
fn write_frames(
    schema: &Schema,
    csv: Option<&Path>,
    parquet: Option<&Path>,
    fill: impl FnOnce(&mut dyn FnMut(&DataFrame) -> PolarsResult<()>) -> PolarsResult<()>,
) -> PolarsResult<()> {
    let mut csv_file = csv.map(AtomicFile::create).transpose()?;
    let mut pq_file = parquet.map(AtomicFile::create).transpose()?;
    {
        let mut csv_w = match csv_file.as_mut() {
            Some(f) => Some(CsvWriter::new(f).include_header(true).batched(schema)?),
            None => None,
        };
        let mut pq_w = match pq_file.as_mut() {
            Some(f) => Some(ParquetWriter::new(f).batched(schema)?),
            None => None,
        };
        fill(&mut |df: &DataFrame| {
            if let Some(w) = csv_w.as_mut() {
                w.write_batch(df)?;
            }
            if let Some(w) = pq_w.as_mut() {
                w.write_batch(df)?;
            }
            Ok(())
        })?;
        if let Some(w) = csv_w.as_mut() {
            w.finish()?;
        }
        if let Some(w) = pq_w.as_mut() {
            w.finish()?;
        }
    }
    if let Some(f) = csv_file {
        f.commit()?;
    }
    if let Some(f) = pq_file {
        f.commit()?;
    }
    Ok(())
}

/// The connections table, whole (tests and small captures; the report's files are written a
/// block at a time by [`write_connections`]).
pub fn connections(a: &Analysis) -> PolarsResult<DataFrame> {
    // A block at a time (decoded from the spill, past `--memory-limit`).
    let mut t = Table::of::<ConnectionRow>();
    for block in a.connections.blocks() {
        for row in ConnectionRow::listed(a, &block) {
            t.push(&row);
        }
    }
    t.frame()
}

/// Rows a findings table's frame holds on its way to a file: built whole, a table of 243,167
/// races held ~430 MB of cells while it was written (`--out` on the 10 GB busy capture
/// peaked past 1 GiB).
const FRAME_ROWS: usize = 16_384;

/// Text a findings table's frame holds at most (past its first row): a sequence's cells list
/// every connection of its client and service, so 16,384 sequences of 10 M short connections
/// held ~1.5 GB of text while they were written.
const FRAME_TEXT: usize = 8 << 20;

/// Write `rows` (with `P`'s columns) as CSV to `csv` and as Parquet to `parquet`, each a
/// frame of [`FRAME_ROWS`] rows at a time (whole or not at all).
fn write_rows<'r, R, P>(
    rows: impl IntoIterator<Item = R>,
    csv: Option<&Path>,
    parquet: Option<&Path>,
) -> PolarsResult<()>
where
    R: serde::Serialize + 'r,
    P: crate::rows::Probe + serde::Serialize,
{
    write_rows_by::<R, P>(rows, csv, parquet, FRAME_ROWS, FRAME_TEXT)
}

/// [`write_rows`], a frame written once it has `frame_rows` rows or `frame_text` bytes of text.
fn write_rows_by<'r, R, P>(
    rows: impl IntoIterator<Item = R>,
    csv: Option<&Path>,
    parquet: Option<&Path>,
    frame_rows: usize,
    frame_text: usize,
) -> PolarsResult<()>
where
    R: serde::Serialize + 'r,
    P: crate::rows::Probe + serde::Serialize,
{
    let schema = Table::of::<P>().frame()?.schema().as_ref().clone();
    write_frames(&schema, csv, parquet, |each| {
        let mut t = Table::of::<P>();
        let mut written = false;
        for r in rows {
            t.push(&r);
            if t.len() >= frame_rows || t.text_bytes() >= frame_text {
                each(&std::mem::replace(&mut t, Table::of::<P>()).frame()?)?;
                written = true;
            }
        }
        if !t.is_empty() || !written {
            each(&t.frame()?)?;
        }
        Ok(())
    })
}

/// Write findings table `name` (any of the output tables but `connections` and
/// `services_summary`) as CSV to `csv` and as Parquet to `parquet`, a frame at a time; `false`
/// when `name` is not one of them.
pub fn write_findings_table(
    a: &Analysis,
    name: &str,
    csv: Option<&Path>,
    parquet: Option<&Path>,
) -> PolarsResult<bool> {
    match name {
        "races" => {
            write_rows::<_, RaceRow>(a.races.iter().map(RaceRow::in_analysis), csv, parquet)?
        }
        "backends" => write_rows::<_, Backend>(&a.backends, csv, parquet)?,
        "sequences" => write_rows::<_, Sequence>(&a.sequences, csv, parquet)?,
        "stale_reuses" => write_rows::<_, StaleReuse>(&a.stale_reuses, csv, parquet)?,
        "listeners" => write_rows::<_, Listener>(&a.listeners, csv, parquet)?,
        "floods" => write_rows::<_, Flood>(&a.floods, csv, parquet)?,
        "scans" => write_rows::<_, Scan>(&a.scans, csv, parquet)?,
        "health_checks" => write_rows::<_, HealthCheck>(&a.health_checks, csv, parquet)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// The first `n` rows of table `name` (`races`, `stale_reuses`, `backends`, `sequences`,
/// `services_summary`, `connections`) and how many rows the whole table has: the page shows a
/// head and the files hold everything, so a capture of a million connections never builds
/// its whole table for the page; a row's lists show their first [`HEAD_ITEMS`] items.
pub fn head(a: &Analysis, name: &str, n: usize) -> PolarsResult<(DataFrame, usize)> {
    Ok(match name {
        "races" => {
            let rows = a.races.iter().take(n).map(RaceRow::in_analysis);
            (head_table::<_, RaceRow>(rows).frame()?, a.races.len())
        }
        "stale_reuses" => (
            head_table::<_, StaleReuse>(a.stale_reuses.iter().take(n)).frame()?,
            a.stale_reuses.len(),
        ),
        "backends" => (
            head_table::<_, Backend>(a.backends.iter().take(n)).frame()?,
            a.backends.len(),
        ),
        "sequences" => (
            head_table::<_, Sequence>(a.sequences.iter().take(n)).frame()?,
            a.sequences.len(),
        ),
        "connections" => {
            let mut t = Table::of::<ConnectionRow>().capped(HEAD_ITEMS);
            for block in a.connections.blocks() {
                for row in ConnectionRow::listed(a, &block).take(n - t.len().min(n)) {
                    t.push(&row);
                }
                if t.len() >= n {
                    break;
                }
            }
            let listed = a.connections.len() - a.summary.connections_omitted;
            (t.frame()?, listed)
        }
        _ => {
            let df = service_summary(a)?;
            let all = df.height();
            (df.head(Some(n)), all)
        }
    })
}

/// Items of a list a [`head`] row shows (a sequence lists every connection of its client and
/// service: the page's 2,000 sequences of a 10 M-connection capture held ~1 GB of lists).
pub const HEAD_ITEMS: usize = 32;

/// A [`head`] table: `rows` with `P`'s columns, each list cut to [`HEAD_ITEMS`].
fn head_table<'r, R, P>(rows: impl IntoIterator<Item = R>) -> Table
where
    R: serde::Serialize + 'r,
    P: crate::rows::Probe + serde::Serialize,
{
    Table::of::<P>().capped(HEAD_ITEMS).with_rows(rows)
}

/// The races table.
pub fn races(a: &Analysis) -> PolarsResult<DataFrame> {
    let rows = a.races.iter().map(RaceRow::in_analysis);
    Table::build::<_, RaceRow>(rows).frame()
}

/// The backends table.
pub fn backends(a: &Analysis) -> PolarsResult<DataFrame> {
    Table::build::<_, Backend>(&a.backends).frame()
}

/// The sequences table.
pub fn sequences(a: &Analysis) -> PolarsResult<DataFrame> {
    Table::build::<_, Sequence>(&a.sequences).frame()
}

/// The stale-reuse table.
pub fn stale_reuses(a: &Analysis) -> PolarsResult<DataFrame> {
    Table::build::<_, StaleReuse>(&a.stale_reuses).frame()
}

/// The listeners table: per service, its short-lived connections by reason.
pub fn listeners(a: &Analysis) -> PolarsResult<DataFrame> {
    Table::build::<_, Listener>(&a.listeners).frame()
}

/// The floods table.
pub fn floods(a: &Analysis) -> PolarsResult<DataFrame> {
    Table::build::<_, Flood>(&a.floods).frame()
}

/// The scans table.
pub fn scans(a: &Analysis) -> PolarsResult<DataFrame> {
    Table::build::<_, Scan>(&a.scans).frame()
}

/// The health-checks table.
pub fn health_checks(a: &Analysis) -> PolarsResult<DataFrame> {
    Table::build::<_, HealthCheck>(&a.health_checks).frame()
}

/// The JSON's `services[]`, one row per service and server port, with per-service aggregates
/// computed by polars: races, attempts, also-rans and the also-ran rate (also-rans over
/// attempts), median and p95 first attempt delay, the winners' IPv6 share, duplicate upgrades,
/// late cancels, family and backend switches, and stale reuses.
pub fn service_summary(a: &Analysis) -> PolarsResult<DataFrame> {
    let r = &a.races;
    let winner_family = |x: &racetrace_core::model::Race| x.winner_family().map(|f| f.as_str());
    // The facts of each race the aggregates need (not an output table).
    let per_race = frame![
        "name" => r.iter().map(|x| &*x.service).collect::<Vec<_>>(),
        "n_attempts" => r.iter().map(|x| x.attempts.len() as u32).collect::<Vec<_>>(),
        "n_also_rans" => r.iter().map(|x| x.also_rans.len() as u32).collect::<Vec<_>>(),
        "first_attempt_delay_ms" => r.iter().map(|x| x.attempt_delays_ms.first().copied()).collect::<Vec<_>>(),
        "winner_family" => r.iter().map(winner_family).collect::<Vec<_>>(),
        "duplicate_upgrade" => r.iter().map(|x| x.duplicate_upgrade).collect::<Vec<_>>(),
        "late_cancels" => r.iter().map(|x| x.late_cancels() as u32).collect::<Vec<_>>(),
    ]?
    .lazy()
    .group_by([col("name")])
    .agg([
        col("n_attempts").count().alias("races"),
        col("n_attempts").sum().alias("attempts"),
        col("n_also_rans").sum().alias("also_rans"),
        col("first_attempt_delay_ms")
            .median()
            .alias("median_attempt_delay_ms"),
        col("first_attempt_delay_ms")
            .quantile(lit(0.95), QuantileMethod::Linear)
            .alias("p95_attempt_delay_ms"),
        col("winner_family")
            .eq(lit("ipv6"))
            .cast(DataType::Float64)
            .mean()
            .alias("winner_ipv6_share"),
        col("duplicate_upgrade")
            .cast(DataType::UInt32)
            .sum()
            .alias("duplicate_upgrades"),
        col("late_cancels").sum().alias("late_cancels"),
    ]);
    let s = &a.sequences;
    let seqs = frame![
        "name" => s.iter().map(|x| &*x.service).collect::<Vec<_>>(),
        "family_switches" => s.iter().map(|x| x.family_switches as u32).collect::<Vec<_>>(),
        "backend_switches" => s.iter().map(|x| x.backend_switches as u32).collect::<Vec<_>>(),
    ]?
    .lazy()
    .group_by([col("name")])
    .agg([col("family_switches").sum(), col("backend_switches").sum()]);
    let stale = frame![
        "name" => a.stale_reuses.iter().map(|x| &*x.service).collect::<Vec<_>>(),
    ]?
    .lazy()
    .group_by([col("name")])
    .agg([len().cast(DataType::UInt32).alias("stale_reuses")]);
    let key = || [col("name")];
    let left = || JoinArgs::new(JoinType::Left);
    Table::build::<_, Service>(&a.services)
        .frame()?
        .lazy()
        .join(per_race, key(), key(), left())
        .join(seqs, key(), key(), left())
        .join(stale, key(), key(), left())
        .with_columns([
            col("stale_reuses").fill_null(lit(0u32)),
            (col("also_rans").cast(DataType::Float64) / col("attempts").cast(DataType::Float64))
                .alias("also_ran_rate"),
        ])
        .sort(["name", "server_port"], SortMultipleOptions::default())
        .collect()
}

/// Write a frame as CSV (whole or not at all: [`crate::atomic`]).
pub fn write_csv(df: &mut DataFrame, path: &Path) -> PolarsResult<()> {
    let mut f = AtomicFile::create(path)?;
    CsvWriter::new(&mut f).include_header(true).finish(df)?;
    Ok(f.commit()?)
}

/// Write a frame as Parquet (whole or not at all).
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> PolarsResult<()> {
    let mut f = AtomicFile::create(path)?;
    ParquetWriter::new(&mut f).finish(df)?;
    Ok(f.commit()?)
}

/// Per-capture totals for a batch's `summary.csv`.
pub fn capture_row(a: &Analysis) -> [(&'static str, String); 9] {
    let s = &a.summary;
    [
        ("capture", a.capture.file.clone()),
        ("connections", s.connections.to_string()),
        ("races", s.races.to_string()),
        ("also_rans", s.also_rans.to_string()),
        ("duplicate_upgrades", s.duplicate_upgrades.to_string()),
        ("backends", s.backends.to_string()),
        ("family_switches", s.family_switches.to_string()),
        ("stale_reuses", s.stale_reuses.to_string()),
        (
            "median_attempt_delay_ms",
            s.median_attempt_delay_ms
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A findings table written a frame at a time, even a row a frame, is the table written
    /// whole: the same CSV, the same Parquet rows.
    #[test]
    fn a_table_written_in_frames_is_the_whole_table() {
        let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
        let paths: Vec<String> = ["he_curl_v6slow.pcap", "he_refused_then_pool.pcap"]
            .iter()
            .map(|f| samples.join(f).to_string_lossy().into_owned())
            .collect();
        let a = racetrace_core::analyze(&paths, &racetrace_core::Options::default())
            .expect("the samples read");
        assert!(a.races.len() >= 2, "{} races", a.races.len());
        let dir = std::env::temp_dir().join(format!("racetrace-frames-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (whole_csv, whole_pq) = (dir.join("whole.csv"), dir.join("whole.parquet"));
        let mut df = races(&a).expect("frame");
        write_csv(&mut df, &whole_csv).expect("csv");
        write_parquet(&mut df, &whole_pq).expect("parquet");
        // By rows, and by text: a byte of text ends every frame at its first row.
        for (frame_rows, frame_text) in [
            (1, FRAME_TEXT),
            (2, FRAME_TEXT),
            (FRAME_ROWS, FRAME_TEXT),
            (FRAME_ROWS, 1),
        ] {
            let (csv, pq) = (dir.join("framed.csv"), dir.join("framed.parquet"));
            let rows = a.races.iter().map(RaceRow::in_analysis);
            write_rows_by::<_, RaceRow>(rows, Some(&csv), Some(&pq), frame_rows, frame_text)
                .expect("written");
            let read = |p: &Path| std::fs::read(p).expect("read");
            assert_eq!(
                read(&csv),
                read(&whole_csv),
                "{frame_rows} rows, {frame_text} B a frame"
            );
            let frame = |p: &Path| {
                ParquetReader::new(std::fs::File::open(p).expect("open"))
                    .finish()
                    .expect("parquet reads")
            };
            assert!(
                frame(&pq).equals_missing(&frame(&whole_pq)),
                "{frame_rows} rows, {frame_text} B a frame"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The connections table's frames gather whole frames across the store's blocks (one
    /// Parquet row group each), whatever the block size; no connections is one empty frame.
    #[test]
    fn connection_frames_gather_rows_across_blocks() {
        use racetrace_core::model::{ConnRecord, Connection, Connections};
        let n = FRAME_ROWS + 5;
        let conns: Vec<Connection> = (0..n)
            .map(|i| {
                let rec = ConnRecord {
                    first_time: i as i64 * 1_000,
                    ..ConnRecord::default()
                };
                Connection::new(i, rec)
            })
            .collect();
        let a = Analysis {
            connections: Connections::from(conns),
            ..Analysis::default()
        };
        let mut heights = Vec::new();
        connection_frames(&a, |df| {
            heights.push(df.height());
            Ok(())
        })
        .expect("frames");
        assert_eq!(heights, [FRAME_ROWS, 5]);
        let mut heights = Vec::new();
        connection_frames(&Analysis::default(), |df| {
            heights.push(df.height());
            Ok(())
        })
        .expect("frames");
        assert_eq!(heights, [0]);
    }
}
