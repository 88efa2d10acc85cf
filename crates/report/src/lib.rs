//! Render stage: an [`Analysis`](racetrace_core::model::Analysis) → the JSON report (the public
//! contract), the terminal's tables, the CSV/Parquet tables (polars), the charts (plotters)
//! and the single-file HTML report; [`output`] writes one capture's folder.

pub mod atomic;
pub mod charts;
pub mod flat;
pub mod html;
pub mod human;
pub mod json;
pub mod output;
pub mod rows;
pub mod tables;
pub mod terminal;
