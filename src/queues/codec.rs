//! Encoding into the ring and decoding out of it: postcard flavors that write straight into
//! its free space, the scratch buffer of `put`, and a fast decoder for byte sequences.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::sys::{self};
use crate::wire;

use super::ring::*;

/// Where [`Ring::put_value`] encodes: the free bytes `at..end` of a ring, in one stretch. (The
/// queues' hot path keeps this writer of its own: [`RingWriter`] limited to one stretch made a
/// 64-byte `put`/`get` 10-25% slower on one CPU and up to 2x slower across CPUs in W3, measured
/// old against new binary, interleaved.) Also the stretch a [`RingWriter`] is writing.
///
/// Whoever makes one owns `at..end`: free space of the ring that only the holder of the
/// producers' lock writes (see `Ring::encode_at` and [`RingWriter::new`]).
pub(super) struct Stretch {
    pub(super) at: *mut u8,
    pub(super) end: *mut u8,
}

impl Stretch {
    /// The bytes left.
    #[inline(always)]
    fn room(&self) -> usize {
        self.end as usize - self.at as usize
    }

    /// Writes `byte` if it fits; false if the stretch is full.
    #[inline(always)]
    fn push(&mut self, byte: u8) -> bool {
        if self.at == self.end {
            return false;
        }
        // SAFETY: `at < end`, inside the stretch this writer owns (see the type's docs).
        unsafe {
            self.at.write(byte);
            self.at = self.at.add(1);
        }
        true
    }

    /// Copies `bytes` if they fit; false (nothing written) if they do not.
    #[inline(always)]
    fn copy(&mut self, bytes: &[u8]) -> bool {
        if self.room() < bytes.len() {
            return false;
        }
        // SAFETY: `bytes.len()` bytes fit between `at` and `end`, inside the stretch this
        // writer owns (see the type's docs); `bytes` is the serializer's own data, not ring
        // memory.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.at, bytes.len());
            self.at = self.at.add(bytes.len());
        }
        true
    }
}

impl postcard::ser_flavors::Flavor for Stretch {
    /// Where the encoding ended.
    type Output = *mut u8;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        match self.push(byte) {
            true => Ok(()),
            false => Err(postcard::Error::SerializeBufferFull),
        }
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        match self.copy(bytes) {
            true => Ok(()),
            false => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn finalize(self) -> postcard::Result<*mut u8> {
        Ok(self.at)
    }
}

/// Where [`Ring::put_encoded`] encodes (a message of any size the free space holds, as a pool
/// worker's large reply): free bytes of a ring, in at most two stretches (the second at the
/// ring's start, when the free space wraps around its end). Each byte is a pointer compare and
/// store; only the end of a stretch takes a branch out of line.
pub(super) struct RingWriter {
    /// The stretch being written.
    pub(super) cur: Stretch,
    /// Where it began, and the bytes written before it.
    pub(super) begin: *mut u8,
    pub(super) before: usize,
    /// The next stretch (the ring's start) and its length; 0 once taken.
    pub(super) next: *mut u8,
    pub(super) next_len: usize,
}

impl RingWriter {
    /// A writer of `limit` bytes of `ring`'s data from `start` (an offset that may pass the
    /// ring's end: the bytes wrap). The caller owns those bytes: free space that only the
    /// holder of the producers' lock writes, `limit` at most the ring's capacity.
    pub(super) fn new(ring: &Ring, start: usize, limit: usize) -> RingWriter {
        let cap = ring.capacity() as usize;
        let start = start & (cap - 1);
        let first = limit.min(cap - start);
        // SAFETY: `start < cap` and `start + first <= cap`: both pointers lie in (or one past
        // the end of) the ring's data.
        let (at, end) = unsafe { (ring.data().add(start), ring.data().add(start + first)) };
        RingWriter {
            cur: Stretch { at, end },
            begin: at,
            before: 0,
            next: ring.data(),
            next_len: limit - first,
        }
    }

    /// Moves on to the next stretch; an error if there is none.
    #[cold]
    pub(super) fn next_stretch(&mut self) -> postcard::Result<()> {
        if self.next_len == 0 {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.before += self.cur.end as usize - self.begin as usize;
        self.begin = self.next;
        // SAFETY: the second stretch is `next_len` bytes from the ring's start (see `new`).
        self.cur = Stretch {
            at: self.next,
            end: unsafe { self.next.add(self.next_len) },
        };
        self.next_len = 0;
        Ok(())
    }

    #[cold]
    pub(super) fn extend_across(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        let (first, rest) = bytes.split_at(self.cur.room().min(bytes.len()));
        if rest.len() > self.next_len {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.cur.copy(first);
        self.next_stretch()?;
        self.cur.copy(rest);
        Ok(())
    }
}

impl postcard::ser_flavors::Flavor for RingWriter {
    /// The bytes written.
    type Output = usize;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if !self.cur.push(byte) {
            self.next_stretch()?;
            self.cur.push(byte); // the next stretch is not empty (`next_stretch`)
        }
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if !self.cur.copy(bytes) {
            return self.extend_across(bytes);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.before + (self.cur.at as usize - self.begin as usize))
    }
}

/// Why a value carrying OS handles was refused.
pub(super) fn no_handles() -> Error {
    Error::Codec(
        "values carrying OS handles (a Connection, Lock, Queue or shared value) travel through \
         a queue only with put/get on Unix; here pass them as Process arguments or over a \
         Connection"
            .into(),
    )
}

/// Encodes a value that must not carry OS handles (`put_many`).
pub(super) fn encode_into<T: Serialize>(value: &T, buf: Vec<u8>) -> Result<Vec<u8>> {
    let (bytes, handles) = wire::encode_with_handles_into(value, buf)?;
    if !handles.is_empty() {
        return Err(no_handles());
    }
    Ok(bytes)
}

thread_local! {
    /// A buffer reused by every `put` of this thread: encoding allocates nothing once it has
    /// grown to the size of the messages.
    pub(super) static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Encodes `value` into this thread's scratch buffer and runs `f` on the bytes and the OS
/// handles found inside.
pub(super) fn with_encoded<T: Serialize + ?Sized, R>(
    value: &T,
    f: impl FnOnce(&[u8], Vec<sys::OwnedHandle>) -> Result<R>,
) -> Result<R> {
    let mut buf = SCRATCH.take();
    buf.clear();
    wire::encode_with_handles_into(value, buf).and_then(|(bytes, handles)| {
        let out = f(&bytes, handles);
        SCRATCH.set(bytes);
        out
    })
}

/// A decoder for exactly one shape of message: a sequence of bytes (`Vec<u8>`, the
/// counterpart of Python's `bytes`, and any other type that deserializes from a sequence of
/// `u8`s), in the crate's encoding (postcard: the count as a varint, then the bytes).
///
/// serde decodes a `Vec<u8>` element by element, and postcard's general decoder spends about
/// 17 instructions per byte on that; this one yields each byte with almost nothing around it.
/// Whatever else the value asks for (another type at the top or inside the sequence, a count
/// that does not match the message's length, elements left unread) fails with [`NotByteSeq`]
/// before any side effect, and the caller then decodes the message with the crate's codec,
/// which gives the same value or reports the error. So the result never differs from
/// `wire::decode`'s.
pub(super) struct ByteSeq<'a>(pub(super) &'a [u8]);

/// Why [`ByteSeq`] gave up (not an error: the crate's codec then decodes the message).
#[derive(Debug)]
pub(super) struct NotByteSeq;

impl std::fmt::Display for NotByteSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a sequence of bytes")
    }
}

impl std::error::Error for NotByteSeq {}

impl serde::de::Error for NotByteSeq {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotByteSeq
    }
}

impl<'de> serde::Deserializer<'de> for ByteSeq<'_> {
    type Error = NotByteSeq;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, NotByteSeq> {
        Err(NotByteSeq)
    }

    fn deserialize_seq<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, NotByteSeq> {
        // The count: a LEB128 varint of at most 10 bytes (a u64), as postcard writes a usize.
        let mut count: u64 = 0;
        let mut used = 0;
        loop {
            let &byte = self.0.get(used).ok_or(NotByteSeq)?;
            if used == 9 && byte > 1 {
                return Err(NotByteSeq);
            }
            count |= u64::from(byte & 0x7f) << (7 * used);
            used += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if used == 10 {
                return Err(NotByteSeq);
            }
        }
        let bytes = &self.0[used..];
        if count != bytes.len() as u64 {
            return Err(NotByteSeq);
        }
        let mut elements = Elements(bytes.iter());
        let value = visitor.visit_seq(&mut elements)?;
        if elements.0.len() != 0 {
            return Err(NotByteSeq);
        }
        Ok(value)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, NotByteSeq> {
        // postcard encodes a newtype as its content.
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The elements of a [`ByteSeq`].
pub(super) struct Elements<'a>(std::slice::Iter<'a, u8>);

impl<'de> serde::de::SeqAccess<'de> for Elements<'_> {
    type Error = NotByteSeq;

    #[inline]
    fn next_element_seed<S: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, NotByteSeq> {
        match self.0.next() {
            Some(&byte) => seed.deserialize(Byte(byte)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// One element of a [`ByteSeq`]: a `u8`, and nothing else.
pub(super) struct Byte(u8);

impl<'de> serde::Deserializer<'de> for Byte {
    type Error = NotByteSeq;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, NotByteSeq> {
        Err(NotByteSeq)
    }

    #[inline]
    fn deserialize_u8<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, NotByteSeq> {
        visitor.visit_u8(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}
