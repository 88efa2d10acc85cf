//! Render stage: an [`Analysis`](crate::model::Analysis) → the JSON report (the public
//! contract) and the terminal's tables.

pub mod json;
pub mod table;
