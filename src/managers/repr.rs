//! Python's `repr()` of a serde value: how a [`NamespaceProxy`](super::NamespaceProxy) prints
//! its attributes (`Namespace(name='Bob')`) and how a `KeyError` names its key (`'missing'`).
//!
//! Strings and chars are quoted as Python quotes them, numbers and booleans written as Python
//! writes them (`1.0`, `1e+16`, `True`), `None`/`()` as `None`, sequences as lists, tuples as
//! tuples, maps as dicts, bytes as `b'...'`; a struct as `Name(field=value, ...)` and an enum
//! variant as its name (with its fields, if any), the way a Python class would show them.

use std::fmt::Write as _;

use serde::ser::{self, Serialize};

/// Python's `repr` of `value` (`<?>` for a value that cannot be serialized). A proxy inside
/// it is written as its type and its object's id (`DictProxy(3)`), without a call to its
/// manager.
pub(crate) fn repr<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Repr(String::new());
    let was = super::refs::IN_REPR.with(|f| f.replace(true));
    let written = value.serialize(&mut out);
    super::refs::IN_REPR.with(|f| f.set(was));
    match written {
        Ok(()) => out.0,
        Err(_) => "<?>".to_string(),
    }
}

/// Python's repr of a `str`: single quotes unless the text holds one and no double quote;
/// backslash escapes for the quote, `\\`, `\n`, `\r`, `\t` and other unprintable characters.
pub(crate) fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let n = c as u32;
                let _ = if n <= 0xff {
                    write!(out, "\\x{n:02x}")
                } else {
                    write!(out, "\\u{n:04x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's repr of a `bytes`.
fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::from("b");
    out.push(quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote as char);
    out
}

/// Python's repr of a `float`: the shortest digits that read back the same, positional for
/// exponents from -4 to 15 (always with a fractional part), else `1e+16` style.
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

/// The serializer writing Python's repr.
struct Repr(String);

/// Why a value has no repr (it never happens with serde's own types).
#[derive(Debug)]
struct NoRepr(String);

impl std::fmt::Display for NoRepr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoRepr {}

impl ser::Error for NoRepr {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        NoRepr(msg.to_string())
    }
}

type R = std::result::Result<(), NoRepr>;

/// What opening a compound value gives.
type Open<'a> = std::result::Result<Seq<'a>, NoRepr>;

/// A compound value being written: its closing text, and whether an item was written yet.
struct Seq<'a> {
    out: &'a mut Repr,
    close: &'static str,
    first: bool,
    /// A one-item tuple needs Python's trailing comma.
    tuple: bool,
    items: usize,
}

impl Seq<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.0.push_str(", ");
        }
        self.first = false;
        self.items += 1;
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.sep();
        value.serialize(&mut *self.out)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> R {
        self.sep();
        self.out.0.push_str(key);
        self.out.0.push('=');
        value.serialize(&mut *self.out)
    }

    fn finish(self) -> R {
        if self.tuple && self.items == 1 {
            self.out.0.push(',');
        }
        self.out.0.push_str(self.close);
        Ok(())
    }
}

impl<'a> Repr {
    fn open(&'a mut self, text: &str, close: &'static str, tuple: bool) -> Seq<'a> {
        self.0.push_str(text);
        Seq {
            out: self,
            close,
            first: true,
            tuple,
            items: 0,
        }
    }

    fn text(&mut self, s: impl AsRef<str>) -> R {
        self.0.push_str(s.as_ref());
        Ok(())
    }
}

/// The `Serializer` methods for integers, which Python writes as Rust does (a macro: trait
/// methods, one per type).
macro_rules! integers {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> R {
            self.text(v.to_string())
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut Repr {
    type Ok = ();
    type Error = NoRepr;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Seq<'a>;
    type SerializeStruct = Seq<'a>;
    type SerializeStructVariant = Seq<'a>;

    fn serialize_bool(self, v: bool) -> R {
        self.text(if v { "True" } else { "False" })
    }
    integers!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128
    );
    fn serialize_f32(self, v: f32) -> R {
        // The f32's own shortest digits, not those of its f64 widening.
        let shortest: f64 = v.to_string().parse().unwrap_or(f64::from(v));
        self.text(float_repr(shortest))
    }
    fn serialize_f64(self, v: f64) -> R {
        self.text(float_repr(v))
    }
    fn serialize_char(self, v: char) -> R {
        self.text(str_repr(v.encode_utf8(&mut [0; 4])))
    }
    fn serialize_str(self, v: &str) -> R {
        self.text(str_repr(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> R {
        self.text(bytes_repr(v))
    }
    fn serialize_none(self) -> R {
        self.text("None")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_unit(self) -> R {
        self.text("None")
    }
    fn serialize_unit_struct(self, name: &'static str) -> R {
        self.text(format!("{name}()"))
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> R {
        self.text(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &str, value: &T) -> R {
        self.0.push_str(name);
        self.0.push('(');
        value.serialize(&mut *self)?;
        self.text(")")
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> R {
        self.serialize_newtype_struct(variant, value)
    }
    fn serialize_seq(self, _: Option<usize>) -> Open<'a> {
        Ok(self.open("[", "]", false))
    }
    fn serialize_tuple(self, _: usize) -> Open<'a> {
        Ok(self.open("(", ")", true))
    }
    fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Open<'a> {
        Ok(self.open(&format!("{name}("), ")", false))
    }
    fn serialize_tuple_variant(self, _: &str, _: u32, variant: &'static str, _: usize) -> Open<'a> {
        Ok(self.open(&format!("{variant}("), ")", false))
    }
    fn serialize_map(self, _: Option<usize>) -> Open<'a> {
        Ok(self.open("{", "}", false))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Open<'a> {
        self.serialize_tuple_struct(name, len)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Open<'a> {
        self.serialize_tuple_variant(name, index, variant, len)
    }
}

macro_rules! items {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = NoRepr;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
                self.item(value)
            }
            fn end(self) -> R {
                self.finish()
            }
        }
    )*};
}

items!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Seq<'_> {
    type Ok = ();
    type Error = NoRepr;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        self.item(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.out.0.push_str(": ");
        value.serialize(&mut *self.out)
    }
    fn end(self) -> R {
        self.finish()
    }
}

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = NoRepr;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
                self.field(key, value)
            }
            fn end(self) -> R {
                self.finish()
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_python_writes_them() {
        assert_eq!(repr("Bob"), "'Bob'");
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("a\"b'c\n"), "'a\"b\\'c\\n'");
        assert_eq!(repr(&'x'), "'x'");
        assert_eq!(repr(&true), "True");
        assert_eq!(repr(&None::<u8>), "None");
        assert_eq!(repr(&Some(3u8)), "3");
        assert_eq!(repr(&-7i64), "-7");
        assert_eq!(repr(&vec![1, 2]), "[1, 2]");
        assert_eq!(repr(&(1,)), "(1,)");
        assert_eq!(repr(&(1, "a")), "(1, 'a')");
        assert_eq!(repr(&()), "None");
        let map: std::collections::BTreeMap<&str, u8> = [("a", 1), ("b", 2)].into();
        assert_eq!(repr(&map), "{'a': 1, 'b': 2}");
        assert_eq!(bytes_repr(b"a\x00'"), "b\"a\\x00'\"");
        assert_eq!(bytes_repr(b"ab"), "b'ab'");
        #[derive(serde::Serialize)]
        struct Point {
            x: i32,
            y: f64,
        }
        assert_eq!(repr(&Point { x: 1, y: 2.0 }), "Point(x=1, y=2.0)");
    }

    #[test]
    fn floats_as_python_writes_them() {
        for (x, py) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (123.456, "123.456"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
            (1e300, "1e+300"),
        ] {
            assert_eq!(float_repr(x), py, "{x}");
        }
        assert_eq!(repr(&0.1f32), "0.1");
    }
}
