//! How a chunk of a map travels (its items to the worker, its results back): either a postcard
//! sequence (any serde type) or, when every element is one primitive number of the same kind,
//! their fixed-width little-endian bytes back to back; then a tag byte saying which.
//!
//! The second form is a fast path, not a second format for the user to think about: which one
//! a chunk takes is decided by how its elements serialise (an element whose `Serialize` makes
//! exactly one `serialize_u64` call, say, directly or through newtype structs), never by its
//! type's name, and decoding gives what postcard would: an element's `Deserialize` that asks
//! for the same primitive gets the value as postcard would hand it over; one that asks for
//! anything else is given the element's postcard encoding to decode instead. Varints cost a
//! few nanoseconds per number at each of the four encodings and decodings of a map; copying
//! eight bytes costs a fraction of one.

use serde::Serialize;
use serde::de::{DeserializeOwned, Visitor};
use serde::ser::Impossible;

use crate::error::{Error, Result};
use crate::wire;

/// The tag of a chunk encoded as a postcard sequence.
const POSTCARD: u8 = 0;

/// One element that serialised as a single primitive number.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Prim {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
}

impl Prim {
    /// The chunk tag of elements of this kind.
    fn tag(self) -> u8 {
        match self {
            Prim::U8(_) => 1,
            Prim::U16(_) => 2,
            Prim::U32(_) => 3,
            Prim::U64(_) => 4,
            Prim::I8(_) => 5,
            Prim::I16(_) => 6,
            Prim::I32(_) => 7,
            Prim::I64(_) => 8,
            Prim::F32(_) => 9,
            Prim::F64(_) => 10,
        }
    }

    fn width(self) -> usize {
        match self {
            Prim::U8(_) | Prim::I8(_) => 1,
            Prim::U16(_) | Prim::I16(_) => 2,
            Prim::U32(_) | Prim::I32(_) | Prim::F32(_) => 4,
            Prim::U64(_) | Prim::I64(_) | Prim::F64(_) => 8,
        }
    }
}

/// A primitive serialises as the primitive it is (so its postcard encoding is the element's).
impl Serialize for Prim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match *self {
            Prim::U8(v) => s.serialize_u8(v),
            Prim::U16(v) => s.serialize_u16(v),
            Prim::U32(v) => s.serialize_u32(v),
            Prim::U64(v) => s.serialize_u64(v),
            Prim::I8(v) => s.serialize_i8(v),
            Prim::I16(v) => s.serialize_i16(v),
            Prim::I32(v) => s.serialize_i32(v),
            Prim::I64(v) => s.serialize_i64(v),
            Prim::F32(v) => s.serialize_f32(v),
            Prim::F64(v) => s.serialize_f64(v),
        }
    }
}

/// The probe's refusal: the element is not one primitive number.
#[derive(Debug)]
struct NotPlain;

impl std::fmt::Display for NotPlain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a plain number")
    }
}

impl std::error::Error for NotPlain {}

impl serde::ser::Error for NotPlain {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotPlain
    }
}

/// A serializer that accepts exactly one primitive number (through any newtype structs, which
/// postcard encodes as their content) and refuses everything else.
struct Probe;

macro_rules! probe_prims {
    ($($method:ident($ty:ty) => $variant:ident),* $(,)?) => {
        $(
            #[inline(always)]
            fn $method(self, v: $ty) -> std::result::Result<Prim, NotPlain> {
                Ok(Prim::$variant(v))
            }
        )*
    };
}

macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ok:ty),* $(,)?) => {
        $(
            fn $method(self, $(_: $arg),*) -> std::result::Result<$ok, NotPlain> {
                Err(NotPlain)
            }
        )*
    };
}

impl serde::Serializer for Probe {
    type Ok = Prim;
    type Error = NotPlain;
    type SerializeSeq = Impossible<Prim, NotPlain>;
    type SerializeTuple = Impossible<Prim, NotPlain>;
    type SerializeTupleStruct = Impossible<Prim, NotPlain>;
    type SerializeTupleVariant = Impossible<Prim, NotPlain>;
    type SerializeMap = Impossible<Prim, NotPlain>;
    type SerializeStruct = Impossible<Prim, NotPlain>;
    type SerializeStructVariant = Impossible<Prim, NotPlain>;

    probe_prims! {
        serialize_u8(u8) => U8,
        serialize_u16(u16) => U16,
        serialize_u32(u32) => U32,
        serialize_u64(u64) => U64,
        serialize_i8(i8) => I8,
        serialize_i16(i16) => I16,
        serialize_i32(i32) => I32,
        serialize_i64(i64) => I64,
        serialize_f32(f32) => F32,
        serialize_f64(f64) => F64,
    }

    refuse! {
        serialize_bool(bool) -> Prim,
        serialize_char(char) -> Prim,
        serialize_str(&str) -> Prim,
        serialize_bytes(&[u8]) -> Prim,
        serialize_none() -> Prim,
        serialize_unit() -> Prim,
        serialize_unit_struct(&'static str) -> Prim,
        serialize_unit_variant(&'static str, u32, &'static str) -> Prim,
        serialize_seq(Option<usize>) -> Self::SerializeSeq,
        serialize_tuple(usize) -> Self::SerializeTuple,
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct,
        serialize_tuple_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeTupleVariant,
        serialize_map(Option<usize>) -> Self::SerializeMap,
        serialize_struct(&'static str, usize) -> Self::SerializeStruct,
        serialize_struct_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeStructVariant,
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> std::result::Result<Prim, NotPlain> {
        Err(NotPlain)
    }

    #[inline(always)]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> std::result::Result<Prim, NotPlain> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> std::result::Result<Prim, NotPlain> {
        Err(NotPlain)
    }

    fn is_human_readable(&self) -> bool {
        false // as postcard
    }
}

/// The primitive `x` serialises as, if it is one.
#[inline(always)]
fn probe<X: Serialize + ?Sized>(x: &X) -> Option<Prim> {
    x.serialize(Probe).ok()
}

fn ended() -> Error {
    Error::Codec("the input ended before its announced length".into())
}

/// Encodes the next `n` items of `items` as one chunk, in `out` (a buffer to reuse: its
/// contents are dropped), without collecting them first.
pub(crate) fn encode_into<X: Serialize>(
    items: &mut impl Iterator<Item = X>,
    n: usize,
    mut out: Vec<u8>,
) -> Result<Vec<u8>> {
    out.clear();
    let Some(first) = items.next() else {
        return if n == 0 {
            out.extend_from_slice(&[0, POSTCARD]); // an empty sequence
            Ok(out)
        } else {
            Err(ended())
        };
    };
    let Some(p) = probe(&first) else {
        return encode_postcard(&mut std::iter::once(first).chain(items), n, out);
    };
    let tag = p.tag();
    // Room for all of them at once, written through a slice (a push per element reloads the
    // vector's length and capacity each time, as a byte store might have changed them).
    let width = p.width();
    out.resize(n * width + 1, 0);
    // One loop per kind, so that the kind is known inside it.
    macro_rules! fixed {
        ($($variant:ident),*) => {
            match p {
                $(Prim::$variant(v) => {
                    let body = &mut out[..n * width];
                    let mut slots = body.chunks_exact_mut(width);
                    if let Some(slot) = slots.next() {
                        slot.copy_from_slice(&v.to_le_bytes());
                    }
                    for (done, slot) in (1..n).zip(slots) {
                        let x = items.next().ok_or_else(ended)?;
                        match probe(&x) {
                            Some(Prim::$variant(v)) => slot.copy_from_slice(&v.to_le_bytes()),
                            // Mixed kinds, or a value of another shape: the whole chunk as
                            // postcard.
                            _ => {
                                out.truncate(done * width);
                                return transcode(out, tag, done, x, items, n);
                            }
                        }
                    }
                })*
            }
        };
    }
    fixed!(U8, U16, U32, U64, I8, I16, I32, I64, F32, F64);
    out[n * width] = tag;
    Ok(out)
}

/// Encodes `n` items as a postcard sequence, then the tag.
fn encode_postcard<X: Serialize>(
    items: &mut impl Iterator<Item = X>,
    n: usize,
    out: Vec<u8>,
) -> Result<Vec<u8>> {
    /// `n` items of an iterator, serialised as a sequence of known length.
    struct Seq<'a, I>(std::cell::RefCell<&'a mut I>, usize);

    impl<I: Iterator<Item = X>, X: Serialize> Serialize for Seq<'_, I> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut items = self.0.borrow_mut();
            let mut seq = s.serialize_seq(Some(self.1))?;
            for _ in 0..self.1 {
                match items.next() {
                    Some(x) => seq.serialize_element(&x)?,
                    None => return Err(crate::wire::custom_ser(ended().to_string())),
                }
            }
            seq.end()
        }
    }

    let seq = Seq(std::cell::RefCell::new(items), n);
    let mut out = if out.capacity() == 0 {
        wire::encode_sized(&seq, n * std::mem::size_of::<X>() + 16)?
    } else {
        wire::encode_into(&seq, out)?
    };
    out.push(POSTCARD);
    Ok(out)
}

/// Rewrites a fixed-width chunk whose first `done` elements (of kind `tag`) are in `fixed` as
/// postcard, then encodes `x` and the rest of its `n` items after them.
fn transcode<X: Serialize>(
    mut fixed: Vec<u8>,
    tag: u8,
    done: usize,
    x: X,
    rest: &mut impl Iterator<Item = X>,
    n: usize,
) -> Result<Vec<u8>> {
    // A sequence's length is a varint, as a u64's.
    let mut out = wire::encode_into(&(n as u64), Vec::with_capacity(fixed.len() + 16))?;
    fixed.push(tag);
    // Each element as its primitive type: postcard encodes it as the element's type did.
    fn append<P: Serialize + DeserializeOwned>(fixed: &[u8], mut out: Vec<u8>) -> Result<Vec<u8>> {
        for v in decode::<P>(fixed)? {
            out = wire::encode_into(&v, out)?;
        }
        Ok(out)
    }
    out = match tag {
        1 => append::<u8>(&fixed, out)?,
        2 => append::<u16>(&fixed, out)?,
        3 => append::<u32>(&fixed, out)?,
        4 => append::<u64>(&fixed, out)?,
        5 => append::<i8>(&fixed, out)?,
        6 => append::<i16>(&fixed, out)?,
        7 => append::<i32>(&fixed, out)?,
        8 => append::<i64>(&fixed, out)?,
        9 => append::<f32>(&fixed, out)?,
        10 => append::<f64>(&fixed, out)?,
        _ => return Err(malformed(fixed.len())),
    };
    debug_assert_eq!(count(&fixed), done);
    out = wire::encode_into(&x, out)?;
    for _ in done + 1..n {
        out = wire::encode_into(&rest.next().ok_or_else(ended)?, out)?;
    }
    out.push(POSTCARD);
    Ok(out)
}

/// The width of a fixed-width tag's elements.
fn width(tag: u8) -> Option<usize> {
    match tag {
        1 | 5 => Some(1),
        2 | 6 => Some(2),
        3 | 7 | 9 => Some(4),
        4 | 8 | 10 => Some(8),
        _ => None,
    }
}

fn malformed(len: usize) -> Error {
    Error::Codec(format!("a {len}-byte pool chunk is malformed"))
}

/// The number of elements a chunk holds (announced, for a postcard one: believed only up to
/// its size in bytes), to reserve room before decoding.
pub(crate) fn count(chunk: &[u8]) -> usize {
    match chunk.split_last() {
        Some((&POSTCARD, body)) => wire::seq_len(body).map_or(0, |n| n.min(body.len())),
        Some((&tag, body)) => width(tag).map_or(0, |w| body.len() / w),
        None => 0,
    }
}

/// Runs `$call` for the fixed-width kind whose tag is `$tag` (the tags of [`Prim::tag`]), with
/// the const `$w` its width in bytes and `$read` the closure that reads one value of it from
/// its little-endian bytes; `$other` for a tag of no such kind. One arm per kind, so that the
/// kind is known inside each.
macro_rules! on_fixed_tag {
    ($tag:expr, $other:expr, |$w:ident, $read:ident| $call:expr) => {
        on_fixed_tag!(@ $tag, $other, $w, $read, $call;
            1 => u8, U8; 2 => u16, U16; 3 => u32, U32; 4 => u64, U64; 5 => i8, I8;
            6 => i16, I16; 7 => i32, I32; 8 => i64, I64; 9 => f32, F32; 10 => f64, F64)
    };
    (@ $tag:expr, $other:expr, $w:ident, $read:ident, $call:expr;
        $($t:literal => $ty:ty, $variant:ident);*) => {
        match $tag {
            $($t => {
                const $w: usize = std::mem::size_of::<$ty>();
                let $read = |b: [u8; $w]| Prim::$variant(<$ty>::from_le_bytes(b));
                $call
            })*
            _ => $other,
        }
    };
}

/// Decodes a chunk onto the end of `out`.
pub(crate) fn decode_append<T: DeserializeOwned>(chunk: &[u8], out: &mut Vec<T>) -> Result<()> {
    match chunk.split_last() {
        Some((&POSTCARD, body)) => wire::decode_append(body, out),
        // One loop per kind, so that the kind is known inside it.
        Some((&tag, body)) => on_fixed_tag!(tag, Err(malformed(chunk.len())), |W, read| {
            decode_fixed::<T, W>(body, read, out)
        }),
        None => Err(malformed(0)),
    }
}

/// Applies `f` to each element of a chunk, encoding the results as a chunk in `out` (a buffer
/// to reuse). A fixed-width chunk goes from one buffer to the other in one pass, with no
/// vector of items or of results in between.
pub(crate) fn map_into<I: DeserializeOwned, R: Serialize>(
    chunk: &[u8],
    mut f: impl FnMut(I) -> R,
    out: Vec<u8>,
) -> Result<Vec<u8>> {
    match chunk.split_last() {
        Some((&tag, body)) if tag != POSTCARD => {
            on_fixed_tag!(tag, Err(malformed(chunk.len())), |W, read| {
                map_fixed::<I, R, W>(body, read, &mut f, out)
            })
        }
        _ => {
            let items: Vec<I> = decode(chunk)?;
            let results: Vec<R> = items.into_iter().map(f).collect();
            encode_into(&mut results.iter(), results.len(), out)
        }
    }
}

fn map_fixed<I: DeserializeOwned, R: Serialize, const W: usize>(
    body: &[u8],
    read: impl Fn([u8; W]) -> Prim,
    f: &mut impl FnMut(I) -> R,
    out: Vec<u8>,
) -> Result<Vec<u8>> {
    if !body.len().is_multiple_of(W) {
        return Err(malformed(body.len() + 1));
    }
    let mut failed = None;
    let mut items = body.chunks_exact(W).map_while(|b| {
        let mut a = [0u8; W];
        a.copy_from_slice(b);
        element::<I>(read(a)).map_err(|e| failed = Some(e)).ok()
    });
    // An element that does not decode ends the items early: its error, not the shortfall's.
    let encoded = encode_into(&mut (&mut items).map(f), body.len() / W, out);
    match failed {
        Some(e) => Err(e),
        None => encoded,
    }
}

/// Decodes a chunk.
pub(crate) fn decode<T: DeserializeOwned>(chunk: &[u8]) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(count(chunk));
    decode_append(chunk, &mut out)?;
    Ok(out)
}

#[inline]
fn decode_fixed<T: DeserializeOwned, const W: usize>(
    body: &[u8],
    read: impl Fn([u8; W]) -> Prim,
    out: &mut Vec<T>,
) -> Result<()> {
    if !body.len().is_multiple_of(W) {
        return Err(malformed(body.len() + 1));
    }
    out.reserve(body.len() / W);
    for b in body.chunks_exact(W) {
        let mut a = [0u8; W];
        a.copy_from_slice(b);
        out.push(element(read(a))?);
    }
    Ok(())
}

/// One element from its primitive: as postcard would decode it.
#[inline(always)]
fn element<T: DeserializeOwned>(p: Prim) -> Result<T> {
    match T::deserialize(Plain(p)) {
        Ok(v) => Ok(v),
        // It wants another shape: let postcard decode the element's postcard encoding.
        Err(PlainError::Mismatch) => wire::decode(&wire::encode(&p)?),
        Err(PlainError::Custom(m)) => Err(Error::Codec(m)),
    }
}

/// Why [`Plain`] gave no value.
#[derive(Debug)]
enum PlainError {
    /// The type asked for something other than the primitive held.
    Mismatch,
    /// The type's own error.
    Custom(String),
}

impl std::fmt::Display for PlainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlainError::Mismatch => f.write_str("not the primitive held"),
            PlainError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PlainError {}

impl serde::de::Error for PlainError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        PlainError::Custom(msg.to_string())
    }
}

/// A deserializer holding one primitive: hands it over when asked for exactly that primitive
/// (as postcard's `deserialize_u64` hands a u64 to `visit_u64`), or a newtype struct around
/// it; refuses anything else with [`PlainError::Mismatch`].
struct Plain(Prim);

macro_rules! plain_prims {
    ($($method:ident => $variant:ident, $visit:ident),* $(,)?) => {
        $(
            #[inline(always)]
            fn $method<V: Visitor<'de>>(self, visitor: V) -> std::result::Result<V::Value, PlainError> {
                match self.0 {
                    Prim::$variant(v) => visitor.$visit(v),
                    _ => Err(PlainError::Mismatch),
                }
            }
        )*
    };
}

macro_rules! mismatch {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $(_: $arg,)* _: V) -> std::result::Result<V::Value, PlainError> {
                Err(PlainError::Mismatch)
            }
        )*
    };
}

impl<'de> serde::Deserializer<'de> for Plain {
    type Error = PlainError;

    plain_prims! {
        deserialize_u8 => U8, visit_u8,
        deserialize_u16 => U16, visit_u16,
        deserialize_u32 => U32, visit_u32,
        deserialize_u64 => U64, visit_u64,
        deserialize_i8 => I8, visit_i8,
        deserialize_i16 => I16, visit_i16,
        deserialize_i32 => I32, visit_i32,
        deserialize_i64 => I64, visit_i64,
        deserialize_f32 => F32, visit_f32,
        deserialize_f64 => F64, visit_f64,
    }

    #[inline(always)]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> std::result::Result<V::Value, PlainError> {
        visitor.visit_newtype_struct(self)
    }

    mismatch! {
        deserialize_any(),
        deserialize_bool(),
        deserialize_char(),
        deserialize_str(),
        deserialize_string(),
        deserialize_bytes(),
        deserialize_byte_buf(),
        deserialize_option(),
        deserialize_unit(),
        deserialize_unit_struct(&'static str),
        deserialize_seq(),
        deserialize_tuple(usize),
        deserialize_tuple_struct(&'static str, usize),
        deserialize_map(),
        deserialize_struct(&'static str, &'static [&'static str]),
        deserialize_enum(&'static str, &'static [&'static str]),
        deserialize_identifier(),
        deserialize_ignored_any(),
    }

    fn is_human_readable(&self) -> bool {
        false // as postcard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    fn round_trip<T>(items: Vec<T>) -> (u8, Vec<T>)
    where
        T: Serialize + DeserializeOwned + Clone,
    {
        let n = items.len();
        let chunk = encode_into(&mut items.into_iter(), n, Vec::new()).expect("encodes");
        assert_eq!(count(&chunk), n, "announced count");
        (chunk[chunk.len() - 1], decode(&chunk).expect("decodes"))
    }

    #[test]
    fn numbers_travel_fixed_width() {
        let v: Vec<u64> = vec![0, 1, u64::MAX, 1 << 40];
        assert_eq!(round_trip(v.clone()), (4, v));
        let v: Vec<i32> = vec![i32::MIN, -1, 0, 7];
        assert_eq!(round_trip(v.clone()), (7, v));
        let v: Vec<f64> = vec![0.5, -1e300, f64::INFINITY];
        assert_eq!(round_trip(v.clone()), (10, v));
        let v: Vec<u8> = vec![1, 2, 255];
        assert_eq!(round_trip(v.clone()), (1, v));
        let v: Vec<usize> = vec![3, usize::MAX];
        assert_eq!(round_trip(v.clone()), (4, v));
        // NaN keeps its bits.
        let (_, back) = round_trip(vec![f32::NAN]);
        assert!(back[0].is_nan());
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Meters(u32);

    #[test]
    fn newtypes_of_numbers_travel_fixed_width() {
        let v = vec![Meters(1), Meters(u32::MAX)];
        assert_eq!(round_trip(v.clone()), (3, v));
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Dot,
        Line(u64),
    }

    #[test]
    fn other_shapes_and_mixed_kinds_travel_as_postcard() {
        let v = vec![(1u64, 2u64), (3, 4)];
        assert_eq!(round_trip(v.clone()), (POSTCARD, v));
        let v = vec!["a".to_string(), "bc".into()];
        assert_eq!(round_trip(v.clone()), (POSTCARD, v));
        let v = vec![Shape::Line(5), Shape::Dot];
        assert_eq!(round_trip(v.clone()), (POSTCARD, v));
        let v: Vec<Option<u64>> = vec![Some(1), None];
        assert_eq!(round_trip(v.clone()), (POSTCARD, v));
        let v: Vec<u64> = vec![];
        assert_eq!(round_trip(v.clone()), (POSTCARD, v));
    }

    /// Serialises as a u64 when small, as a string otherwise: a chunk can start fixed-width
    /// and have to become postcard part-way through.
    #[derive(Clone, Debug, PartialEq)]
    struct Either(u64);

    impl Serialize for Either {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            if self.0 < 100 {
                s.serialize_u64(self.0)
            } else {
                s.serialize_str(&self.0.to_string())
            }
        }
    }

    #[test]
    fn a_chunk_that_changes_shape_part_way_is_transcoded() {
        let items = vec![Either(1), Either(2), Either(300), Either(4)];
        let chunk = encode_into(&mut items.clone().into_iter(), 4, Vec::new()).expect("encodes");
        let expected = wire::encode(&items).expect("postcard");
        assert_eq!(chunk.split_last(), Some((&POSTCARD, &expected[..])));
        // Mixed numeric kinds too.
        #[derive(Clone, Serialize)]
        #[serde(untagged)]
        enum Num {
            A(u64),
            B(i64),
        }
        let mixed = vec![Num::A(1), Num::A(2), Num::B(-3)];
        let chunk = encode_into(&mut mixed.clone().into_iter(), 3, Vec::new()).expect("encodes");
        let expected = wire::encode(&mixed).expect("postcard");
        assert_eq!(chunk.split_last(), Some((&POSTCARD, &expected[..])));
    }

    /// Encoded as a u64, decoded by asking for a u32 (postcard accepts that for small values):
    /// the fixed-width path answers as postcard does.
    #[derive(Clone, Debug, PartialEq)]
    struct Narrow(u32);

    impl Serialize for Narrow {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_u64(self.0 as u64)
        }
    }

    impl<'de> Deserialize<'de> for Narrow {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            u32::deserialize(d).map(Narrow)
        }
    }

    #[test]
    fn a_type_asking_for_another_primitive_is_decoded_as_postcard_would() {
        let v = vec![Narrow(5), Narrow(u32::MAX)];
        assert_eq!(round_trip(v.clone()), (4, v));
        // Out of range for the type: an error, not a wrong value.
        let chunk = encode_into(&mut [u64::MAX].into_iter(), 1, Vec::new()).expect("encodes");
        assert!(decode::<Narrow>(&chunk).is_err());
        assert!(decode::<u32>(&chunk).is_err());
        assert!(decode::<String>(&chunk).is_err());
    }

    #[test]
    fn map_into_applies_the_function_on_either_form() {
        let items: Vec<u64> = (0..1000).collect();
        let chunk = encode_into(&mut items.iter(), 1000, Vec::new()).expect("encodes");
        let out = map_into(&chunk, |x: u64| x as f64 / 2.0, Vec::new()).expect("maps");
        let back: Vec<f64> = decode(&out).expect("decodes");
        assert_eq!(
            back,
            items.iter().map(|&x| x as f64 / 2.0).collect::<Vec<_>>()
        );
        // Results of another shape, from fixed-width items.
        let out = map_into(&chunk, |x: u64| x.to_string(), Vec::new()).expect("maps");
        assert_eq!(out.last(), Some(&POSTCARD));
        assert_eq!(decode::<String>(&out).expect("decodes")[999], "999");
        // Postcard items.
        let pairs = [(1u32, 2u32), (3, 4)];
        let chunk = encode_into(&mut pairs.iter(), 2, Vec::new()).expect("encodes");
        let out = map_into(&chunk, |(a, b): (u32, u32)| a + b, Vec::new()).expect("maps");
        assert_eq!(decode::<u32>(&out).expect("decodes"), [3, 7]);
        // An item its type refuses, part-way: that error, not a short chunk.
        let chunk = encode_into(&mut [1u64, u64::MAX, 3].into_iter(), 3, Vec::new()).expect("ok");
        match map_into(&chunk, |x: Narrow| x.0, Vec::new()) {
            Err(Error::Codec(m)) => assert!(!m.contains("ended"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn short_inputs_and_garbage_are_errors() {
        assert!(encode_into(&mut [1u64, 2].into_iter(), 3, Vec::new()).is_err());
        assert!(encode_into(&mut [(1u8, 2u8)].into_iter(), 2, Vec::new()).is_err());
        assert!(decode::<u64>(&[]).is_err());
        assert!(decode::<u64>(&[1, 2, 3, 4]).is_err()); // not a whole u64
        assert!(decode::<u64>(&[0, 99]).is_err()); // unknown tag
        assert_eq!(count(&[0xff, 0xff, 0xff, 0x7f, POSTCARD]), 4); // bounded by its bytes
    }
}
