//! The flattener as a serde `Serializer`: leaves become cells at the current path, structs
//! extend the path, lists are joined, and a [`TIME`] newtype becomes seconds and their twin.

use serde::ser::{self, Serialize};

use racetrace_core::domain::ser::TIME;

use super::{Cell, Flattener, Mode};

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
        // Past the table's cap an item is only counted (`Table::capped`).
        let over = self
            .lists
            .last()
            .is_some_and(|l| l.item >= self.table.list_cap);
        let r = if over {
            Ok(())
        } else {
            v.serialize(&mut **self)
        };
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
