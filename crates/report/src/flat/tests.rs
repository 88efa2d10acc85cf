//! The flattener on a row with every shape a table meets.

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
