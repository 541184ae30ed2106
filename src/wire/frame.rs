//! Frames: a length header (CPython's: 4 bytes big-endian, or -1 and 8 bytes), then the
//! payload; reading them whole, or as bytes arrive.

use super::*;

/// The header for a payload of `len` bytes: 4 bytes, or 12 above `i32::MAX`.
pub(crate) fn header(len: usize) -> ([u8; 12], usize) {
    let mut h = [0u8; 12];
    if len > i32::MAX as usize {
        h[..4].copy_from_slice(&(-1i32).to_be_bytes());
        h[4..].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 12)
    } else {
        h[..4].copy_from_slice(&(len as i32).to_be_bytes());
        (h, 4)
    }
}

/// Writes one frame.
pub(crate) fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let (h, n) = header(payload.len());
    let head = &h[..n];
    // Header and payload in one vectored write (one syscall, no copy, no Nagle delay between
    // them, as CPython coalesces small frames); whatever a short write leaves goes after.
    let written = loop {
        match w.write_vectored(&[IoSlice::new(head), IoSlice::new(payload)]) {
            Ok(k) => break k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if written < head.len() {
        w.write_all(&head[written..])?;
        w.write_all(payload)
    } else {
        w.write_all(&payload[written - head.len()..])
    }
}

/// Incremental frame parser for non-blocking readers: feed it bytes, take whole frames out.
/// Its first [`FrameReader::INLINE`] bytes are kept inline: a child's reports (a few bytes
/// each, then the end of file) are read and parsed without an allocation (issue 19: each heap
/// page written between two forks is shared by the next one).
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: smallvec::SmallVec<[u8; FrameReader::INLINE]>,
    limit: u64,
}

impl FrameReader {
    /// How many bytes are kept inline.
    pub(crate) const INLINE: usize = 128;

    /// A parser accepting frames up to `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        FrameReader {
            buf: smallvec::SmallVec::new(),
            limit,
        }
    }

    /// Appends bytes that arrived.
    #[cfg(test)]
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads once from `read` straight into the buffer (no intermediate copy; the space offered
    /// is the room left inline, else 256 bytes doubling with what is buffered, up to 64 KiB).
    /// Returns what `read` returned.
    pub(crate) fn fill(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        // Most messages are a few bytes: start small, then double.
        let len = self.buf.len();
        let chunk = match Self::INLINE.saturating_sub(len) {
            0 => len.clamp(256, 64 * 1024),
            inline => inline,
        };
        self.buf.resize(len + chunk, 0);
        let got = read(&mut self.buf[len..]);
        self.buf.truncate(len + *got.as_ref().unwrap_or(&0));
        got
    }

    /// True when bytes of an unfinished frame are buffered.
    pub(crate) fn is_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Takes the next whole frame, if one is buffered.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        self.next_frame_with(<[u8]>::to_vec)
    }

    /// [`next_frame`](Self::next_frame), handing the payload to `f` where it lies instead of
    /// copying it out (a child's report is decoded without an allocation of its own).
    pub(crate) fn next_frame_with<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        let Some((len, start)) = parse_header(&self.buf, self.limit)? else {
            return Ok(None);
        };
        let end = start + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let value = f(&self.buf[start..end]);
        self.buf.drain(..end);
        Ok(Some(value))
    }
}

/// Parses the frame header at the start of `bytes`: `(payload length, header length)`, or
/// `None` while the header is incomplete. A negative or over-`limit` length is an error.
pub(crate) fn parse_header(bytes: &[u8], limit: u64) -> Result<Option<(u64, usize)>> {
    let Some(short) = bytes.first_chunk::<4>() else {
        return Ok(None);
    };
    let (len, start) = match i32::from_be_bytes(*short) {
        -1 => match bytes.get(4..12) {
            Some(long) => (u64::from_be_bytes(long.try_into().unwrap_or([0xff; 8])), 12),
            None => return Ok(None),
        },
        n if n < 0 => return Err(bad_length(n, limit)),
        n => (n as u64, 4),
    };
    if len > limit {
        return Err(bad_length(len, limit));
    }
    Ok(Some((len, start)))
}

pub(crate) fn eof_in_message() -> Error {
    Error::io(
        "reading a message",
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "got end of file during message",
        ),
    )
}

/// A frame header announcing `len` bytes (as announced: a negative length stays negative) over
/// the reader's limit.
pub(crate) fn bad_length(len: impl std::fmt::Display, limit: u64) -> Error {
    Error::io(
        "reading a message",
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad message length: {len} bytes announced, limit {limit}"),
        ),
    )
}
