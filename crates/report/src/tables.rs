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

/// The connections table, one frame per block of connections (decoded from the spill, past
/// `--memory-limit`), each handed to `each` and dropped: every frame has the columns and types
/// of the row type's probe, so the frames make one table, and a table of millions of
/// connections is never whole in memory. A capture without connections gives one empty frame.
pub fn connection_frames(
    a: &Analysis,
    mut each: impl FnMut(&DataFrame) -> PolarsResult<()>,
) -> PolarsResult<()> {
    let mut written = false;
    for block in a.connections.blocks() {
        let mut t = Table::of::<ConnectionRow>();
        for row in ConnectionRow::listed(a, &block) {
            t.push(&row);
        }
        if !t.is_empty() {
            each(&t.frame()?)?;
            written = true;
        }
    }
    if !written {
        each(&Table::of::<ConnectionRow>().frame()?)?;
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

/// Write the connections table as CSV a block at a time (whole or not at all).
pub fn write_connections_csv(a: &Analysis, path: &Path) -> PolarsResult<()> {
    let mut f = AtomicFile::create(path)?;
    let mut w = CsvWriter::new(&mut f)
        .include_header(true)
        .batched(&connections_schema()?)?;
    connection_frames(a, |df| w.write_batch(df))?;
    w.finish()?;
    drop(w);
    Ok(f.commit()?)
}

/// Write the connections table as Parquet, a row group per block (whole or not at all).
pub fn write_connections_parquet(a: &Analysis, path: &Path) -> PolarsResult<()> {
    let mut f = AtomicFile::create(path)?;
    let mut w = ParquetWriter::new(&mut f).batched(&connections_schema()?)?;
    connection_frames(a, |df| w.write_batch(df))?;
    w.finish()?;
    drop(w);
    Ok(f.commit()?)
}

/// The connections table, whole (tests and small captures; the report's files are written a
/// block at a time by [`write_connections_csv`] and [`write_connections_parquet`]).
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

/// The first `n` rows of table `name` (`races`, `stale_reuses`, `backends`, `sequences`,
/// `services_summary`, `connections`) and how many rows the whole table has: the page shows a
/// head and the files hold everything, so a capture of a million connections never builds
/// its whole table for the page.
pub fn head(a: &Analysis, name: &str, n: usize) -> PolarsResult<(DataFrame, usize)> {
    Ok(match name {
        "races" => {
            let rows = a.races.iter().take(n).map(RaceRow::in_analysis);
            (Table::build::<_, RaceRow>(rows).frame()?, a.races.len())
        }
        "stale_reuses" => (
            Table::build::<_, StaleReuse>(a.stale_reuses.iter().take(n)).frame()?,
            a.stale_reuses.len(),
        ),
        "backends" => (
            Table::build::<_, Backend>(a.backends.iter().take(n)).frame()?,
            a.backends.len(),
        ),
        "sequences" => (
            Table::build::<_, Sequence>(a.sequences.iter().take(n)).frame()?,
            a.sequences.len(),
        ),
        "connections" => {
            let mut t = Table::of::<ConnectionRow>();
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
