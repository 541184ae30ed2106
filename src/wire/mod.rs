//! The one wire format: serde values encoded with postcard, framed like CPython's
//! `multiprocessing.connection` (a 4-byte big-endian signed length, or `-1` followed by an 8-byte
//! big-endian length for payloads above `i32::MAX`), so raw byte messages interoperate with Python
//! byte for byte.
//!
//! Decoding never trusts an announced length: a frame larger than the reader's limit is an error,
//! and memory grows only as bytes actually arrive.

use std::cell::RefCell;
use std::io::{self, IoSlice, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Largest frame accepted by default (1 GiB).
pub(crate) const DEFAULT_LIMIT: u64 = 1 << 30;

/// Encodes a value with the crate's codec.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    // Room for a small value at once (a new vector grows from 8 bytes, then doubles: two or
    // three allocations for a value of 10 to 32 bytes).
    encode_into(value, Vec::with_capacity(32))
}

/// An encoding error: our own message where we raised it, else postcard's, naming the type.
fn encode_error<T: ?Sized>(e: postcard::Error) -> Error {
    match LAST_ERROR.with(|l| l.borrow_mut().take()) {
        Some(message) => Error::Codec(message),
        None => Error::Codec(format!(
            "cannot encode a value of type {}: {e}",
            std::any::type_name::<T>()
        )),
    }
}

/// Decodes a value written by [`encode`]; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(codec_error)?;
    if !rest.is_empty() {
        return Err(Error::Codec(format!(
            "{} unexpected trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// The length of a value's encoding, counted without writing it. A value that carries OS
/// handles fails here (see [`encode_with_flavor`]).
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize> {
    encode_with_flavor(value, postcard::ser_flavors::Size::default())
}

/// Encodes a value into a buffer of `capacity` bytes to start with (saves regrowing, and its
/// copies, when the size is roughly known).
pub(crate) fn encode_sized<T: Serialize + ?Sized>(value: &T, capacity: usize) -> Result<Vec<u8>> {
    encode_into(value, Vec::with_capacity(capacity))
}

/// Encodes a value at the end of `buf`: a buffer to reuse, or one with room inline for a
/// small value.
pub(crate) fn encode_into<T: Serialize + ?Sized, B: Extend<u8>>(value: &T, buf: B) -> Result<B> {
    postcard::to_extend(value, buf).map_err(encode_error::<T>)
}

thread_local! {
    /// Buffers given back after use ([`recycle`]), so that a long-running loop (a pool worker)
    /// does not allocate, and fault in, a fresh large buffer for every message.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Makes this thread's wire thread-locals ready (each registers its destructor at its first
/// use): called before a fork, so that the forked child, which runs a target on a copy of this
/// thread, allocates nothing for them (issue 19: each heap page a forked child touches is a
/// copy-on-write fault).
pub(crate) fn ready_thread_locals() {
    SPARE.with(|_| ());
    handles::ready_thread_locals();
}

/// An empty buffer, reusing one given back with [`recycle`] if there is one.
pub(crate) fn spare_buffer() -> Vec<u8> {
    let mut b = SPARE.take();
    b.clear();
    b
}

/// Keeps `buf` for the next [`spare_buffer`] of this thread (unless it is huge: a one-off giant
/// message should not stay allocated for the life of the thread).
pub(crate) fn recycle(buf: Vec<u8>) {
    if buf.capacity() <= 64 << 20 {
        SPARE.set(buf);
    }
}

/// A message decoded as a `Vec<u8>` with one copy, when `T` is `Vec<u8>` (`None` for another
/// `T`, or a message that is not a whole sequence of bytes): serde has no specialisation for
/// bytes and decodes a `Vec<u8>` element by element, a quarter of a 64-byte queue `put`/`get`
/// pair's time (W3, `perf`), where postcard's encoding of one is the same as of `Bytes` (the count,
/// then the bytes) and can be copied at once.
pub(crate) fn byte_vec<T: 'static>(message: &[u8]) -> Option<T> {
    let mut slot: Option<T> = None;
    let out = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Vec<u8>>>()?;
    let count = seq_len(message)?;
    // The count's own length: its bytes up to the first without the high bit.
    let used = message.iter().position(|b| b & 0x80 == 0)? + 1;
    let bytes = &message[used..];
    if count != bytes.len() {
        return None;
    }
    *out = Some(bytes.to_vec());
    slot
}

/// The length announced at the start of an encoded sequence (a LEB128 varint in postcard), or
/// `None` if the bytes do not start with one. Only a hint: decoding checks everything.
pub(crate) fn seq_len(bytes: &[u8]) -> Option<usize> {
    let mut n: usize = 0;
    for (i, &b) in bytes.iter().take(10).enumerate() {
        n |= ((b & 0x7f) as usize).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Decodes a sequence written by [`encode`] (a `Vec<T>` or slice) onto the end of `out`,
/// without an intermediate vector.
pub(crate) fn decode_append<T: DeserializeOwned>(bytes: &[u8], out: &mut Vec<T>) -> Result<()> {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};

    struct Append<'a, T>(&'a mut Vec<T>);

    impl<'de, T: serde::Deserialize<'de>> DeserializeSeed<'de> for Append<'_, T> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for Append<'_, T> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            if let Some(n) = seq.size_hint() {
                // A garbled length must not reserve gigabytes: at most one element per byte.
                self.0.reserve(n.min(1 << 20));
            }
            while let Some(x) = seq.next_element()? {
                self.0.push(x);
            }
            Ok(())
        }
    }

    let mut de = postcard::Deserializer::from_bytes(bytes);
    Append(out).deserialize(&mut de).map_err(codec_error)?;
    let rest = de.finalize().map_err(codec_error)?;
    if !rest.is_empty() {
        return Err(Error::Codec(format!(
            "{} unexpected trailing bytes",
            rest.len()
        )));
    }
    Ok(())
}

/// A byte buffer that serde encodes as one block of bytes (a length and a copy), where a plain
/// `Vec<u8>` goes byte by byte through serde's sequence machinery. Python's `bytes` in a
/// message: use it for raw payloads in [`Queue`](crate::Queue)s, `Connection::send` and pool
/// tasks (it is what the `serde_bytes` crate does, in a few lines).
///
/// ```
/// let b = multiprocess::Bytes::from(vec![1u8, 2, 3]);
/// assert_eq!(&b[..], &[1, 2, 3]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub Vec<u8>);

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.0
    }
}

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Bytes, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(Bytes(v))
            }
        }
        deserializer.deserialize_byte_buf(Visit)
    }
}

/// A codec error, with our own message where we raised it.
fn codec_error(e: postcard::Error) -> Error {
    match LAST_ERROR.with(|l| l.borrow_mut().take()) {
        Some(message) => Error::Codec(message),
        None => Error::from(e),
    }
}

mod frame;
mod handles;

pub(crate) use frame::*;
pub use handles::Handle;
pub(crate) use handles::*;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn sequence_lengths_are_read_from_the_prefix() {
        for n in [0usize, 1, 127, 128, 300, 1 << 20] {
            let v = vec![0u8; n];
            assert_eq!(seq_len(&encode(&v).unwrap()), Some(n));
        }
        assert_eq!(seq_len(&[0x80, 0x80]), None);
    }

    /// A negative length is reported as announced, not sign-extended.
    #[test]
    fn a_negative_length_is_reported_as_announced() {
        let e = parse_header(&(-2i32).to_be_bytes(), 100).expect_err("refused");
        assert!(e.to_string().contains("-2 bytes announced"), "{e}");
    }

    #[test]
    fn bytes_travel_as_one_block() {
        let b = super::Bytes((0..200u8).collect());
        let encoded = encode(&b).unwrap();
        assert_eq!(encoded.len(), 2 + 200, "a varint length, then the bytes");
        assert_eq!(&encoded[2..], &b[..]);
        assert_eq!(decode::<super::Bytes>(&encoded).unwrap(), b);
        // A Vec<u8> encoding (same wire bytes in postcard) decodes as Bytes too.
        let v: Vec<u8> = (0..200u8).collect();
        assert_eq!(decode::<super::Bytes>(&encode(&v).unwrap()).unwrap(), b);
    }

    #[test]
    fn frames_match_cpython_bytes() {
        let mut out = Vec::new();
        write_frame(&mut out, b"abc").unwrap();
        assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c']);
        out.clear();
        write_frame(&mut out, b"").unwrap();
        assert_eq!(out, [0, 0, 0, 0]);
        let (h, n) = header(1 << 31);
        assert_eq!(
            &h[..n],
            &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]
        );
        let (h, n) = header(i32::MAX as usize);
        assert_eq!(&h[..n], &[0x7f, 0xff, 0xff, 0xff]);
    }

    /// A writer that takes at most 3 bytes per call, vectored or not.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_still_frame_correctly() {
        for payload in [&b""[..], b"a", b"abcdefgh", &[7u8; 5000]] {
            let mut w = Trickle(Vec::new());
            write_frame(&mut w, payload).unwrap();
            let mut whole = Vec::new();
            write_frame(&mut whole, payload).unwrap();
            assert_eq!(w.0, whole);
            let mut fr = FrameReader::new(10_000);
            fr.feed(&w.0);
            assert_eq!(fr.next_frame().unwrap().unwrap(), payload);
        }
    }

    #[test]
    fn messages_carry_their_handle_count() {
        let (message, handles) = encode_message(&(1u8, "x")).unwrap();
        assert!(handles.is_empty());
        let (count, body) = split_message(&message).unwrap();
        assert_eq!(count, 0);
        assert_eq!(decode::<(u8, String)>(body).unwrap(), (1, "x".to_owned()));
        assert!(split_message(&[1, 2]).is_err());
    }

    /// Bytes `send` did not write are refused at once, naming `recv_bytes`; a pickle is named
    /// as one; a trailer claiming more handles than the value could refer to is refused.
    #[test]
    fn messages_not_written_by_send_are_refused() {
        for bytes in [&b"hello"[..], b"", &[0; 8], b"hello\x00\x00\x00\x00\xa7mpT"] {
            match split_message(bytes) {
                Err(Error::Codec(m)) => assert!(m.contains("recv_bytes"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        let pickle = b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00\x8c\x05hello\x94.";
        match split_message(pickle) {
            Err(Error::Codec(m)) => assert!(m.contains("pickle"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut lying = b"ab".to_vec();
        lying.extend_from_slice(&3u32.to_le_bytes());
        lying.extend_from_slice(&SEND_MARK);
        assert!(split_message(&lying).is_err());
    }

    #[test]
    fn frames_over_the_limit_or_negative_are_refused() {
        let mut out = Vec::new();
        write_frame(&mut out, &vec![7u8; 20_000]).unwrap();
        let mut fr = FrameReader::new(4);
        fr.feed(&out);
        assert!(
            fr.next_frame()
                .unwrap_err()
                .to_string()
                .contains("bad message length")
        );
        let mut fr = FrameReader::new(4);
        fr.feed(&[0xff, 0xff, 0xff, 0xfe]);
        assert!(fr.next_frame().is_err());
        // A lying 8-byte length is refused against the limit before anything is buffered.
        let mut fr = FrameReader::new(DEFAULT_LIMIT);
        fr.feed(&[0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        assert!(fr.next_frame().is_err());
    }

    #[test]
    fn incremental_reader_splits_and_joins() {
        let mut out = Vec::new();
        write_frame(&mut out, b"a").unwrap();
        write_frame(&mut out, b"").unwrap();
        write_frame(&mut out, b"cd").unwrap();
        let mut fr = FrameReader::new(16);
        let mut frames = Vec::new();
        for byte in &out {
            fr.feed(std::slice::from_ref(byte));
            while let Some(f) = fr.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![b"a".to_vec(), vec![], b"cd".to_vec()]);
        assert!(!fr.is_partial());
        fr.feed(&[0, 0, 1, 0]);
        assert!(fr.next_frame().is_err());
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub(crate) fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = (self.next() % (max as u64 + 1)) as usize;
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Random and corrupted streams never panic the decoders, never yield a frame over the
    /// limit, and a valid stream split anywhere decodes to the same frames.
    #[test]
    fn decoders_survive_garbage() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let limit = rng.next() % 4096;
            let mut stream = rng.bytes(64);
            if round % 2 == 0 {
                // Mostly-valid streams with a few flipped bytes.
                stream.clear();
                for _ in 0..rng.next() % 4 {
                    let payload = rng.bytes(300);
                    write_frame(&mut stream, &payload).unwrap();
                }
                for _ in 0..rng.next() % 3 {
                    if !stream.is_empty() {
                        let i = (rng.next() as usize) % stream.len();
                        stream[i] = rng.next() as u8;
                    }
                }
            }
            let mut fr = FrameReader::new(limit);
            let mut rest = &stream[..];
            'feed: while !rest.is_empty() {
                let n = 1 + (rng.next() as usize) % rest.len();
                fr.feed(&rest[..n]);
                rest = &rest[n..];
                loop {
                    match fr.next_frame() {
                        Ok(Some(frame)) => assert!(frame.len() as u64 <= limit),
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
        // A valid stream decodes identically however it is split.
        let frames: Vec<Vec<u8>> = (0..50).map(|_| rng.bytes(5000)).collect();
        let mut stream = Vec::new();
        for f in &frames {
            write_frame(&mut stream, f).unwrap();
        }
        for _ in 0..50 {
            let mut fr = FrameReader::new(DEFAULT_LIMIT);
            let mut got = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = 1 + (rng.next() as usize) % rest.len().min(7000);
                fr.feed(&rest[..n]);
                rest = &rest[n..];
                while let Some(f) = fr.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames);
        }
    }

    #[test]
    fn codec_round_trips_and_rejects_garbage() {
        let v = (5u64, String::from("child"), vec![1u8, 2]);
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), v);
        assert!(decode::<(u64, String)>(&[0xff, 0xff, 0xff]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode::<(u64, String, Vec<u8>)>(&long).is_err());
    }
}
