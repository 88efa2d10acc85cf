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

/// A capped table (the page's) shows a list's first items and how many it left out, a long
/// text cut at a character, and counts the text its cells hold.
#[test]
fn a_capped_table_cuts_lists_and_texts() {
    let long: &'static str = Box::leak("é".repeat(CAPPED_TEXT).into_boxed_str());
    let row = Row {
        id: 1,
        list: (0..10).collect(),
        items: (0..5).map(|a| Inner { a, b: None }).collect(),
        name: long,
        ..Row::default()
    };
    let mut t = Table::of::<Row>().capped(3);
    t.push(&row);
    assert_eq!(
        t.text_bytes(),
        "0;1;2;… +7".len() + "0;1;2;… +2".len() + ";;;… +2".len() + CAPPED_TEXT + '…'.len_utf8()
    );
    let df = t.frame().unwrap();
    let text = |c: &str| {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .unwrap()
            .to_string()
    };
    assert_eq!(text("list"), "0;1;2;… +7");
    assert_eq!(text("items.a"), "0;1;2;… +2");
    assert_eq!(text("items.b"), ";;;… +2");
    assert_eq!(text("name"), format!("{}…", "é".repeat(CAPPED_TEXT / 2)));
    // Uncapped, the same row keeps everything.
    let mut whole = Table::of::<Row>();
    whole.push(&row);
    let df = whole.frame().unwrap();
    let list = df
        .column("list")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert_eq!(list, "0;1;2;3;4;5;6;7;8;9");
}
