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
use serde::ser::{self, Serialize};

use racetrace_core::domain::iso8601;
use racetrace_core::domain::ser::{probing, TIME};

use crate::rows::Probe;

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
#[derive(Debug, Default)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<Values>,
    index: HashMap<String, usize>,
    rows: usize,
    /// The column after the last one written: rows write their columns in order, so the next
    /// one is nearly always here.
    cursor: usize,
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
        let mut t = Table::of::<P>();
        for r in rows {
            t.push(&r);
        }
        t
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

    fn finish(mut self, sep: char) -> Vec<(String, String)> {
        let n = self.item;
        for (_, text, count) in &mut self.texts {
            while *count < n {
                if *count > 0 {
                    text.push(sep);
                }
                *count += 1;
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
        let texts = list.finish(sep);
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

/// Why a row could not be flattened (a shape tables do not have, such as a map).
#[derive(Debug)]
pub struct FlatError(String);

impl std::fmt::Display for FlatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlatError {}

impl ser::Error for FlatError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        FlatError(msg.to_string())
    }
}

type Res = Result<(), FlatError>;

impl<'a, 't> ser::Serializer for &'a mut Flattener<'t> {
    type Ok = ();
    type Error = FlatError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), FlatError>;
    type SerializeMap = ser::Impossible<(), FlatError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), FlatError>;

    fn serialize_bool(self, v: bool) -> Res {
        self.leaf(Cell::Bool(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Res {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Res {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Res {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Res {
        self.leaf(Cell::I64(v));
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Res {
        self.serialize_u32(u32::from(v))
    }
    fn serialize_u16(self, v: u16) -> Res {
        self.serialize_u32(u32::from(v))
    }
    fn serialize_u32(self, v: u32) -> Res {
        self.leaf(Cell::U32(v));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Res {
        self.leaf(Cell::U64(v));
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Res {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Res {
        self.leaf(Cell::F64(v));
        Ok(())
    }
    fn serialize_char(self, v: char) -> Res {
        self.leaf(Cell::Str(v.to_string()));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Res {
        self.leaf(Cell::Str(v.to_string()));
        Ok(())
    }
    fn collect_str<T: ?Sized + std::fmt::Display>(self, v: &T) -> Res {
        self.leaf(Cell::Str(v.to_string()));
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Res {
        self.leaf(Cell::Str(String::from_utf8_lossy(v).into_owned()));
        Ok(())
    }
    fn serialize_none(self) -> Res {
        // An empty cell; inside a list, an empty item.
        if !self.lists.is_empty() && self.mode == Mode::Value {
            self.leaf(Cell::Str(String::new()));
        }
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Res {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Res {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Res {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _name: &'static str, _i: u32, variant: &'static str) -> Res {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, name: &'static str, v: &T) -> Res {
        if name != TIME {
            return v.serialize(self);
        }
        let mut secs = Seconds(None);
        v.serialize(&mut secs)?;
        match secs.0 {
            Some(s) => self.time(s),
            None => v.serialize(self)?,
        }
        Ok(())
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        _v: &T,
    ) -> Res {
        Err(ser::Error::custom(format!(
            "enum variant {variant} with data in a table"
        )))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, FlatError> {
        self.open_list();
        Ok(self)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self, FlatError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Self, FlatError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, FlatError> {
        Err(ser::Error::custom(format!(
            "enum variant {variant} with data in a table"
        )))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, FlatError> {
        Err(ser::Error::custom("a map in a table row"))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, FlatError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, FlatError> {
        Err(ser::Error::custom(format!(
            "enum variant {variant} with data in a table"
        )))
    }
}

impl ser::SerializeStruct for &mut Flattener<'_> {
    type Ok = ();
    type Error = FlatError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, v: &T) -> Res {
        let len = self.enter(key);
        let r = v.serialize(&mut **self);
        self.path.truncate(len);
        r
    }
    fn end(self) -> Res {
        Ok(())
    }
}

impl ser::SerializeSeq for &mut Flattener<'_> {
    type Ok = ();
    type Error = FlatError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Res {
        let r = v.serialize(&mut **self);
        if let Some(l) = self.lists.last_mut() {
            l.item += 1;
        }
        r
    }
    fn end(self) -> Res {
        self.close_list();
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Flattener<'_> {
    type Ok = ();
    type Error = FlatError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Res {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Res {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for &mut Flattener<'_> {
    type Ok = ();
    type Error = FlatError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Res {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Res {
        ser::SerializeSeq::end(self)
    }
}

/// Reads the seconds out of a serialised time (an `f64`; anything else is not a time).
struct Seconds(Option<f64>);

macro_rules! not_seconds {
    ($($f:ident: $t:ty),+) => {
        $(fn $f(self, _v: $t) -> Res { Ok(()) })+
    };
}

impl ser::Serializer for &mut Seconds {
    type Ok = ();
    type Error = FlatError;
    type SerializeSeq = ser::Impossible<(), FlatError>;
    type SerializeTuple = ser::Impossible<(), FlatError>;
    type SerializeTupleStruct = ser::Impossible<(), FlatError>;
    type SerializeTupleVariant = ser::Impossible<(), FlatError>;
    type SerializeMap = ser::Impossible<(), FlatError>;
    type SerializeStruct = ser::Impossible<(), FlatError>;
    type SerializeStructVariant = ser::Impossible<(), FlatError>;

    fn serialize_f64(self, v: f64) -> Res {
        self.0 = Some(v);
        Ok(())
    }
    not_seconds!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f32: f32, serialize_char: char, serialize_str: &str,
        serialize_bytes: &[u8]);
    fn serialize_none(self) -> Res {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Res {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Res {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Res {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Res {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> Res {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Res {
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, FlatError> {
        Err(ser::Error::custom("not a time"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, FlatError> {
        Err(ser::Error::custom("not a time"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, FlatError> {
        Err(ser::Error::custom("not a time"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, FlatError> {
        Err(ser::Error::custom("not a time"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, FlatError> {
        Err(ser::Error::custom("not a time"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, FlatError> {
        Err(ser::Error::custom("not a time"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, FlatError> {
        Err(ser::Error::custom("not a time"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::SerWriter;

    #[derive(serde::Serialize, Default)]
    struct Inner {
        a: u16,
        #[serde(serialize_with = "racetrace_core::domain::ser::opt")]
        b: Option<f64>,
    }

    #[derive(serde::Serialize, Default)]
    struct Row {
        id: u64,
        #[serde(serialize_with = "racetrace_core::domain::ser_opt_time")]
        t: Option<i64>,
        #[serde(serialize_with = "racetrace_core::domain::ser::opt")]
        inner: Option<Inner>,
        list: Vec<u32>,
        items: Vec<Inner>,
        name: &'static str,
    }

    impl Probe for Row {
        fn probe() -> Self {
            Row {
                items: vec![Inner::default()],
                ..Row::default()
            }
        }
    }

    /// Dotted members, joined lists (a missing item member an empty item), the time's twin,
    /// nulls where a row has nothing, and the probe's types when no row has a value.
    #[test]
    fn rows_flatten_into_the_probes_columns() {
        let rows = [
            Row {
                id: 1,
                t: Some(1_700_000_000_123_456_000),
                inner: Some(Inner { a: 7, b: Some(0.5) }),
                list: vec![3, 4],
                items: vec![Inner { a: 1, b: None }, Inner { a: 2, b: Some(2.5) }],
                name: "x",
            },
            Row {
                id: 2,
                ..Row::default()
            },
        ];
        let t = Table::build::<_, Row>(rows.iter());
        assert_eq!(
            t.names(),
            ["id", "t", "t_iso", "inner.a", "inner.b", "list", "items.a", "items.b", "name"]
        );
        let mut df = t.frame().unwrap();
        assert_eq!(
            df.column("inner.b").unwrap().dtype(),
            &polars::prelude::DataType::Float64
        );
        let mut csv = Vec::new();
        polars::prelude::CsvWriter::new(&mut csv)
            .finish(&mut df)
            .unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "id,t,t_iso,inner.a,inner.b,list,items.a,items.b,name\n\
             1,1700000000.123456,2023-11-14T22:13:20.123456Z,7,0.5,3;4,1;2,;2.5,x\n\
             2,,,,,\"\",\"\",\"\",\"\"\n"
        );
        let empty = Table::build::<Row, Row>([]).frame().unwrap();
        assert_eq!(empty.width(), 9);
        assert_eq!(empty.height(), 0);
    }
}
