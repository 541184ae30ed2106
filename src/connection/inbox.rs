//! A connection's read-ahead buffer.
//!
//! One read takes whatever the stream holds (up to [`READ_AHEAD`] bytes), so a small message
//! costs one system call instead of two (header, then payload), and a burst of small messages
//! one call for many. OS handles that arrive on a Unix socket during such a read wait in
//! `arrived`, oldest first, until the frame that announces them is parsed: handles always
//! travel in a frame of their own right after the message that carries them
//! ([`sys::send_handles_on`]), so by the time that frame is read they are here.
//!
//! Payload bytes beyond what is buffered are read straight into their destination (still
//! through [`sys::recv_some`], so that no handle arriving there is lost).

use std::collections::VecDeque;
use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::sys;
use crate::wire;

/// How much one read asks for.
const READ_AHEAD: usize = 64 * 1024;

/// Bytes read from a stream and not yet returned, and handles that came with them.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    arrived: VecDeque<sys::OwnedHandle>,
}

impl Inbox {
    /// An inbox already holding `bytes` and `handles` (a connection that moved between
    /// processes with unread data).
    pub(crate) fn with(bytes: Vec<u8>, handles: Vec<sys::OwnedHandle>) -> Inbox {
        Inbox {
            end: bytes.len(),
            buf: bytes,
            start: 0,
            arrived: handles.into(),
        }
    }

    /// True if bytes are waiting (a message, or part of one, can be read without the OS).
    pub(crate) fn has_bytes(&self) -> bool {
        self.start < self.end
    }

    /// Takes everything buffered (to travel with the connection to another process).
    pub(crate) fn take(&mut self) -> (Vec<u8>, Vec<sys::OwnedHandle>) {
        let bytes = self.buf[self.start..self.end].to_vec();
        self.start = 0;
        self.end = 0;
        (bytes, self.arrived.drain(..).collect())
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads once from the stream after the buffered bytes; `Ok(0)` is end of file.
    fn fill(&mut self, stream: &sys::Stream, socket: bool) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.buf.len() - self.end < READ_AHEAD / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.end + READ_AHEAD / 2 {
            self.buf.resize(self.end + READ_AHEAD, 0);
        }
        let n = sys::recv_some(stream, socket, &mut self.buf[self.end..], &mut self.arrived)?;
        self.end += n;
        Ok(n)
    }

    /// Reads the next frame's header: its payload length (at most `limit`).
    fn header(&mut self, stream: &sys::Stream, socket: bool, limit: u64) -> Result<u64> {
        loop {
            if let Some((len, start)) = wire::parse_header(self.buffered(), limit)? {
                self.start += start;
                return Ok(len);
            }
            let had = self.has_bytes();
            if self
                .fill(stream, socket)
                .map_err(|e| Error::io("reading a message", e))?
                == 0
            {
                return Err(if had {
                    wire::eof_in_message()
                } else {
                    Error::Eof
                });
            }
        }
    }

    /// Fills `out` from the buffer, then straight from the stream; false on end of file first.
    fn read_exact(&mut self, stream: &sys::Stream, socket: bool, out: &mut [u8]) -> Result<bool> {
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        let mut filled = n;
        let mut source = Source {
            stream,
            socket,
            arrived: &mut self.arrived,
        };
        while filled < out.len() {
            match source.read(&mut out[filled..]) {
                Ok(0) => return Ok(false),
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading a message", e)),
            }
        }
        Ok(true)
    }

    /// Reads one whole frame (at most `limit` bytes). End of file before it is [`Error::Eof`];
    /// inside it, or a frame over `limit`, an I/O error.
    pub(crate) fn read_frame(
        &mut self,
        stream: &sys::Stream,
        socket: bool,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let len = self.header(stream, socket, limit)?;
        self.payload(stream, socket, len)
    }

    /// Reads a payload of `len` bytes into a new vector.
    fn payload(&mut self, stream: &sys::Stream, socket: bool, len: u64) -> Result<Vec<u8>> {
        let here = self.end - self.start;
        if len <= here as u64 {
            let len = len as usize;
            let out = self.buf[self.start..self.start + len].to_vec();
            self.start += len;
            return Ok(out);
        }
        // Memory is committed only as bytes arrive. A large frame gets its whole length
        // reserved at once where the OS lends address space (not memory), and huge pages where
        // it has them: no reallocation, and far fewer page faults.
        let mut out = Vec::new();
        if len >= 4 << 20 && out.try_reserve_exact(len as usize).is_ok() {
            sys::advise_huge_pages(out.as_mut_ptr(), out.capacity());
        } else {
            out.reserve(len.min(READ_AHEAD as u64) as usize);
        }
        out.extend_from_slice(self.buffered());
        self.start = self.end;
        let rest = len - here as u64;
        let source = Source {
            stream,
            socket,
            arrived: &mut self.arrived,
        };
        let got = source
            .take(rest)
            .read_to_end(&mut out)
            .map_err(|e| Error::io("reading a message", e))?;
        if (got as u64) < rest {
            return Err(wire::eof_in_message());
        }
        Ok(out)
    }

    /// Reads one frame into `buf` when it fits (returning its length); otherwise reads it whole
    /// and returns it as the error value, as Python's `BufferTooShort` does.
    pub(crate) fn read_frame_into(
        &mut self,
        stream: &sys::Stream,
        socket: bool,
        buf: &mut [u8],
    ) -> Result<std::result::Result<usize, Vec<u8>>> {
        let len = self.header(stream, socket, wire::DEFAULT_LIMIT)?;
        match usize::try_from(len) {
            Ok(n) if n <= buf.len() => {
                if !self.read_exact(stream, socket, &mut buf[..n])? {
                    return Err(wire::eof_in_message());
                }
                Ok(Ok(n))
            }
            _ => Ok(Err(self.payload(stream, socket, len)?)),
        }
    }

    /// Reads the frame that follows a message carrying `count` handles, and takes them.
    pub(crate) fn read_handles(
        &mut self,
        stream: &sys::Stream,
        socket: bool,
        count: usize,
    ) -> Result<Vec<sys::OwnedHandle>> {
        let frame = self.read_frame(stream, socket, sys::handles_frame_len(count))?;
        sys::claim_handles(&frame, count, &mut self.arrived)
            .map_err(|e| Error::io("receiving handles with a message", e))
    }
}

/// The stream as a reader that keeps the handles arriving with its bytes.
struct Source<'a> {
    stream: &'a sys::Stream,
    socket: bool,
    arrived: &'a mut VecDeque<sys::OwnedHandle>,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv_some(self.stream, self.socket, buf, self.arrived)
    }
}
