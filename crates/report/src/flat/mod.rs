//! Rows → columns. A serde serializer that flattens each row of a table (a [`crate::rows`]
//! type, or a model type) into named, typed columns, so that the one `Serialize` definition
//! that writes a JSON object also writes its table:
//!
//! - a nested object's members become dotted columns (`http.method`);
//! - a list becomes one text column, its items joined with `;` (a list of objects, one column
//!   per member: `also_ran_cancel.stage` = `tls;tcp`);
//! - a capture time ([`racetrace_core::domain::ser::TIME`]) is the seconds and an ISO-8601
//!   twin (`syn_time`, `syn_time_iso`);
//! - `null` and absent nested objects are empty cells.
//!
//! The columns, their order and their types come from the row type's [`Probe`], serialised
//! once while probing: a table has the same schema whatever the capture holds, an empty one
//! included.

use std::collections::HashMap;

use polars::prelude::{Column, DataFrame, NamedFrom, PolarsResult, Series};
use serde::ser::Serialize;

use racetrace_core::domain::iso8601;
use racetrace_core::domain::ser::probing;

use crate::rows::Probe;

/// Bytes of a text a [`Table::capped`] table shows.
pub const CAPPED_TEXT: usize = 400;

/// One column's values.
#[derive(Debug)]
enum Values {
    Bool(Vec<Option<bool>>),
    U32(Vec<Option<u32>>),
    U64(Vec<Option<u64>>),
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
}

/// One value of a row.
#[derive(Debug)]
enum Cell {
    Bool(bool),
    U32(u32),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Bool(v) => v.to_string(),
            Cell::U32(v) => v.to_string(),
            Cell::U64(v) => v.to_string(),
            Cell::I64(v) => v.to_string(),
            Cell::F64(v) => v.to_string(),
            Cell::Str(v) => v.clone(),
        }
    }

    fn empty_column(&self) -> Values {
        match self {
            Cell::Bool(_) => Values::Bool(Vec::new()),
            Cell::U32(_) => Values::U32(Vec::new()),
            Cell::U64(_) => Values::U64(Vec::new()),
            Cell::I64(_) => Values::I64(Vec::new()),
            Cell::F64(_) => Values::F64(Vec::new()),
            Cell::Str(_) => Values::Str(Vec::new()),
        }
    }
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::U32(v) => v.len(),
            Values::U64(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }

    fn pad(&mut self, n: usize) {
        match self {
            Values::Bool(v) => v.resize(n, None),
            Values::U32(v) => v.resize(n, None),
            Values::U64(v) => v.resize(n, None),
            Values::I64(v) => v.resize(n, None),
            Values::F64(v) => v.resize(n, None),
            Values::Str(v) => v.resize(n, None),
        }
    }

    /// Add a value, converted to the column's type (the probe and the rows serialise the same
    /// fields, so a conversion is only ever a widening).
    fn push(&mut self, c: Cell) {
        match (self, c) {
            (Values::Bool(v), Cell::Bool(x)) => v.push(Some(x)),
            (Values::U32(v), Cell::U32(x)) => v.push(Some(x)),
            (Values::U64(v), Cell::U64(x)) => v.push(Some(x)),
            (Values::U64(v), Cell::U32(x)) => v.push(Some(u64::from(x))),
            (Values::I64(v), Cell::I64(x)) => v.push(Some(x)),
            (Values::F64(v), Cell::F64(x)) => v.push(Some(x)),
            (Values::Str(v), Cell::Str(x)) => v.push(Some(x)),
            (Values::Str(v), c) => v.push(Some(c.text())),
            (col, c) => {
                debug_assert!(false, "a {c:?} in a column of another type");
                let n = col.len();
                col.pad(n + 1);
            }
        }
    }

    fn series(self, name: &str) -> Series {
        let name = name.into();
        match self {
            Values::Bool(v) => Series::new(name, v),
            Values::U32(v) => Series::new(name, v),
            Values::U64(v) => Series::new(name, v),
            Values::I64(v) => Series::new(name, v),
            Values::F64(v) => Series::new(name, v),
            Values::Str(v) => Series::new(name, v),
        }
    }
}

/// A table being filled row by row.
#[derive(Debug)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<Values>,
    index: HashMap<String, usize>,
    rows: usize,
    /// Bytes of text in the cells (a list's cell holds all its items: one sequence of a
    /// client's thousands of connections is megabytes).
    text_bytes: usize,
    /// Items a list's cell shows ([`Table::capped`]; unlimited otherwise).
    list_cap: usize,
    /// The column after the last one written: rows write their columns in order, so the next
    /// one is nearly always here.
    cursor: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            names: Vec::new(),
            columns: Vec::new(),
            index: HashMap::new(),
            rows: 0,
            text_bytes: 0,
            list_cap: usize::MAX,
            cursor: 0,
        }
    }
}

impl Table {
    /// An empty table with the columns of row type `R` (from its probe).
    pub fn of<R: Probe + Serialize>() -> Table {
        let mut t = Table::default();
        probing(|| {
            let mut f = Flattener::new(&mut t, Mode::Schema);
            let _ = R::probe().serialize(&mut f);
        });
        t
    }

    /// The table of `rows`, with `R`'s columns.
    pub fn build<'r, R, P>(rows: impl IntoIterator<Item = R>) -> Table
    where
        R: Serialize + 'r,
        P: Probe + Serialize,
    {
        Table::of::<P>().with_rows(rows)
    }

    /// This table with `rows` added.
    pub fn with_rows<R: Serialize>(mut self, rows: impl IntoIterator<Item = R>) -> Table {
        for r in rows {
            self.push(&r);
        }
        self
    }

    /// This table showing at most `items` items of each list, then `… +N` for the N left
    /// out, and at most [`CAPPED_TEXT`] bytes of a text, then `…` (the page's tables: a
    /// sequence lists every connection of its client, tens of thousands on a long capture; the
    /// files hold the whole lists).
    pub fn capped(mut self, items: usize) -> Table {
        self.list_cap = items;
        self
    }

    /// Add one row.
    pub fn push<R: Serialize>(&mut self, row: &R) {
        self.cursor = 0;
        let mut f = Flattener::new(self, Mode::Value);
        if let Err(e) = row.serialize(&mut f) {
            debug_assert!(false, "a row did not flatten: {e}");
        }
        self.rows += 1;
    }

    /// The column names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The rows added.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Bytes of text held in the cells so far.
    pub fn text_bytes(&self) -> usize {
        self.text_bytes
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The table as a polars frame.
    pub fn frame(self) -> PolarsResult<DataFrame> {
        let rows = self.rows;
        let columns: Vec<Column> = self
            .names
            .iter()
            .zip(self.columns)
            .map(|(n, mut v)| {
                v.pad(rows);
                v.series(n).into()
            })
            .collect();
        DataFrame::new(rows, columns)
    }

    fn register(&mut self, path: &str, kind: &Cell) {
        if !self.index.contains_key(path) {
            self.index.insert(path.to_string(), self.names.len());
            self.names.push(path.to_string());
            self.columns.push(kind.empty_column());
        }
    }

    /// An empty list: `path`'s column, or the columns of its members (`path.…`), empty text.
    fn put_empty(&mut self, path: &str) {
        if self.index.contains_key(path) {
            return self.put(path, Cell::Str(String::new()));
        }
        let prefix = format!("{path}.");
        let under: Vec<String> = self
            .names
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .cloned()
            .collect();
        for n in under {
            self.put(&n, Cell::Str(String::new()));
        }
    }

    fn put(&mut self, path: &str, c: Cell) {
        let at = match self.names.get(self.cursor) {
            Some(n) if n == path => Some(self.cursor),
            _ => self.index.get(path).copied(),
        };
        let at = match at {
            Some(i) => i,
            None => {
                debug_assert!(false, "column {path} is not in the row type's probe");
                self.register(path, &c);
                self.names.len() - 1
            }
        };
        if let Some(col) = self.columns.get_mut(at) {
            col.pad(self.rows);
            if col.len() == self.rows {
                if let Cell::Str(s) = &c {
                    self.text_bytes += s.len();
                }
                col.push(c);
            }
        }
        self.cursor = at + 1;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Learning the columns from a probe.
    Schema,
    /// Filling a row.
    Value,
}

/// A list being joined: one text per column path under it, and how many items each holds.
#[derive(Default)]
struct Joined {
    item: usize,
    texts: Vec<(String, String, usize)>,
}

impl Joined {
    fn add(&mut self, path: &str, v: &str, sep: char) {
        let k = self.item;
        let i = match self.texts.iter().position(|t| t.0 == path) {
            Some(i) => i,
            None => {
                self.texts.push((path.to_string(), String::new(), 0));
                self.texts.len() - 1
            }
        };
        if let Some((_, text, count)) = self.texts.get_mut(i) {
            while *count < k {
                if *count > 0 {
                    text.push(sep);
                }
                *count += 1;
            }
            if *count > 0 {
                text.push(sep);
            }
            text.push_str(v);
            *count = k + 1;
        }
    }

    fn finish(mut self, sep: char, cap: usize) -> Vec<(String, String)> {
        let n = self.item.min(cap);
        for (_, text, count) in &mut self.texts {
            while *count < n {
                if *count > 0 {
                    text.push(sep);
                }
                *count += 1;
            }
            if self.item > n {
                if n > 0 {
                    text.push(sep);
                }
                text.push_str(&format!("… +{}", self.item - n));
            }
        }
        self.texts.into_iter().map(|(p, t, _)| (p, t)).collect()
    }
}

/// The serializer: walks one row, keeping the path of the member it is in.
struct Flattener<'t> {
    table: &'t mut Table,
    mode: Mode,
    path: String,
    lists: Vec<Joined>,
}

impl<'t> Flattener<'t> {
    fn new(table: &'t mut Table, mode: Mode) -> Flattener<'t> {
        Flattener {
            table,
            mode,
            path: String::new(),
            lists: Vec::new(),
        }
    }

    fn sep(&self) -> char {
        if self.lists.len() > 1 {
            ','
        } else {
            ';'
        }
    }

    fn leaf(&mut self, c: Cell) {
        let sep = self.sep();
        if let Some(list) = self.lists.last_mut() {
            match self.mode {
                Mode::Schema => list.add(&self.path, "", sep),
                Mode::Value => list.add(&self.path, &c.text(), sep),
            }
            return;
        }
        let path = std::mem::take(&mut self.path);
        let c = match c {
            Cell::Str(mut s) if self.table.list_cap < usize::MAX && s.len() > CAPPED_TEXT => {
                let mut end = CAPPED_TEXT;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push('…');
                Cell::Str(s)
            }
            c => c,
        };
        match self.mode {
            Mode::Schema => self.table.register(&path, &c),
            Mode::Value => self.table.put(&path, c),
        }
        self.path = path;
    }

    fn time(&mut self, secs: f64) {
        if !self.lists.is_empty() {
            return self.leaf(Cell::F64(secs));
        }
        self.leaf(Cell::F64(secs));
        // The seconds are microsecond-exact (`epoch_seconds`): the twin spells the same time.
        let nanos = (secs * 1e6).round() as i64 * 1_000;
        let len = self.path.len();
        self.path.push_str("_iso");
        self.leaf(Cell::Str(iso8601(nanos)));
        self.path.truncate(len);
    }

    fn enter(&mut self, key: &str) -> usize {
        let len = self.path.len();
        if len > 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        len
    }

    fn open_list(&mut self) {
        self.lists.push(Joined::default());
    }

    fn close_list(&mut self) {
        let sep = self.sep();
        let Some(list) = self.lists.pop() else { return };
        let texts = list.finish(sep, self.table.list_cap);
        let path = std::mem::take(&mut self.path);
        if texts.is_empty() {
            match (self.mode, self.lists.is_empty()) {
                // The probe's empty list: a list of scalars, one column.
                (Mode::Schema, _) | (Mode::Value, false) => {
                    self.path.clone_from(&path);
                    self.leaf(Cell::Str(String::new()));
                }
                // An empty list: its column, or each of its members' columns, empty.
                (Mode::Value, true) => self.table.put_empty(&path),
            }
        }
        for (p, t) in texts {
            self.path = p;
            self.leaf(Cell::Str(t));
        }
        self.path = path;
    }
}

mod serializer;
#[cfg(test)]
mod tests;

pub use serializer::FlatError;
