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

use super::bulk::{self, Bulk};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire;

/// How much one read asks for.
const READ_AHEAD: usize = 64 * 1024;

/// How far the buffer grows ahead of the bytes in it, toward a frame's known length.
const GROW_AHEAD: usize = 4 << 20;

/// A read from a stream into a buffer, with the handles that came along: `sys::recv_some`
/// (blocking) or `sys::recv_now`.
type Recv = fn(&sys::Stream, bool, &mut [u8], &mut VecDeque<sys::OwnedHandle>) -> io::Result<usize>;

/// What an inbox reads from: the stream, whether it is a socket (handles may arrive with its
/// bytes), and the pair's control for large messages, if it has one.
#[derive(Clone, Copy)]
pub(crate) struct Link<'a> {
    pub(crate) stream: &'a sys::Stream,
    pub(crate) socket: bool,
    pub(crate) bulk: Option<&'a Bulk>,
}

/// A frame's header: a payload in the stream, or an offer of one copied between processes.
enum Header {
    Inline(u64),
    Offer { len: u64, seq: u32 },
}

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
    fn fill(&mut self, link: &Link<'_>) -> io::Result<usize> {
        self.fill_with(link, 0, sys::recv_some)
    }

    /// Reads once with `recv` (blocking or not) after the buffered bytes, with room for `want`
    /// buffered bytes (see [`make_room`](Inbox::make_room)).
    fn fill_with(&mut self, link: &Link<'_>, want: usize, recv: Recv) -> io::Result<usize> {
        self.make_room(want);
        let n = recv(
            link.stream,
            link.socket,
            &mut self.buf[self.end..],
            &mut self.arrived,
        )?;
        self.end += n;
        Ok(n)
    }

    /// Room after the buffered bytes for at least half a read-ahead, and toward `want`
    /// buffered bytes in all (the whole of a frame whose length is known), at most
    /// [`GROW_AHEAD`] beyond what has arrived: a length a peer announces commits memory only
    /// as its bytes come.
    fn make_room(&mut self, want: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.buf.len() - self.end < READ_AHEAD / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let want = (self.start + want)
            .min(self.end + GROW_AHEAD)
            .max(self.end + READ_AHEAD / 2);
        if self.buf.len() < want {
            self.buf.resize(want.max(self.end + READ_AHEAD), 0);
        }
    }

    /// Reads the next frame's header: its payload length (at most `limit`). An offer over
    /// the limit is refused (the sender learns it, and the payload never enters the stream).
    fn header(&mut self, link: &Link<'_>, limit: u64) -> Result<Header> {
        loop {
            if let Some(bulk) = link.bulk
                && self.buffered().starts_with(&bulk::MARKER)
            {
                if let Some(offer) = self.buffered().get(..bulk::OFFER_LEN) {
                    let len = u64::from_be_bytes(offer[4..12].try_into().unwrap_or([0xff; 8]));
                    let seq = u32::from_be_bytes(offer[12..].try_into().unwrap_or([0; 4]));
                    self.start += bulk::OFFER_LEN;
                    if len > limit {
                        bulk.refuse(seq);
                        return Err(wire::bad_length(len, limit));
                    }
                    return Ok(Header::Offer { len, seq });
                }
            } else if let Some((len, start)) = wire::parse_header(self.buffered(), limit)? {
                self.start += start;
                return Ok(Header::Inline(len));
            }
            let had = self.has_bytes();
            if self
                .fill(link)
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
    fn read_exact(&mut self, link: &Link<'_>, out: &mut [u8]) -> Result<bool> {
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        let mut filled = n;
        let mut source = Source {
            link,
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
    pub(crate) fn read_frame(&mut self, link: &Link<'_>, limit: u64) -> Result<Vec<u8>> {
        match self.header(link, limit)? {
            Header::Inline(len) => self.payload(link, len),
            Header::Offer { len, seq } => {
                let mut out = large_buffer(len)?;
                self.take_offer(link, seq, &mut out)?;
                Ok(out)
            }
        }
    }

    /// Receives the payload of offer `seq` into `out` (its exact length).
    fn take_offer(&mut self, link: &Link<'_>, seq: u32, out: &mut [u8]) -> Result<()> {
        let Some(bulk) = link.bulk else {
            return Err(wire::eof_in_message());
        };
        bulk.receive(seq, out, |out| match self.read_exact(link, out)? {
            true => Ok(()),
            false => Err(wire::eof_in_message()),
        })
    }

    /// Reads a payload of `len` bytes into a new vector.
    fn payload(&mut self, link: &Link<'_>, len: u64) -> Result<Vec<u8>> {
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
            link,
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
        link: &Link<'_>,
        buf: &mut [u8],
    ) -> Result<std::result::Result<usize, Vec<u8>>> {
        match self.header(link, wire::DEFAULT_LIMIT)? {
            Header::Inline(len) => match usize::try_from(len) {
                Ok(n) if n <= buf.len() => {
                    if !self.read_exact(link, &mut buf[..n])? {
                        return Err(wire::eof_in_message());
                    }
                    Ok(Ok(n))
                }
                _ => Ok(Err(self.payload(link, len)?)),
            },
            Header::Offer { len, seq } => match usize::try_from(len) {
                Ok(n) if n <= buf.len() => {
                    self.take_offer(link, seq, &mut buf[..n])?;
                    Ok(Ok(n))
                }
                _ => {
                    let mut out = large_buffer(len)?;
                    self.take_offer(link, seq, &mut out)?;
                    Ok(Err(out))
                }
            },
        }
    }

    /// Reads one message sent with `Connection::send` (at most `limit` bytes) and the handles
    /// it announces.
    pub(crate) fn read_message(
        &mut self,
        link: &Link<'_>,
        limit: u64,
    ) -> Result<(Vec<u8>, Vec<sys::OwnedHandle>)> {
        let message = self.read_frame(link, limit)?;
        let handles = match wire::split_message(&message)?.0 {
            0 => Vec::new(),
            n => self.read_handles(link, n as usize)?,
        };
        Ok((message, handles))
    }

    /// Reads the frame that follows a message carrying `count` handles, and takes them.
    pub(crate) fn read_handles(
        &mut self,
        link: &Link<'_>,
        count: usize,
    ) -> Result<Vec<sys::OwnedHandle>> {
        let frame = self.read_frame(link, sys::handles_frame_len(count))?;
        sys::claim_handles(&frame, count, &mut self.arrived)
            .map_err(|e| Error::io("receiving handles with a message", e))
    }
}

/// A zero-filled buffer for a large offered payload: untouched pages (the OS lends zeroes),
/// huge pages where the OS has them.
fn large_buffer(len: u64) -> Result<Vec<u8>> {
    let mut out = usize::try_from(len)
        .ok()
        .and_then(sys::zeroed_buffer)
        .ok_or_else(|| {
            Error::io(
                "reading a message",
                io::Error::new(io::ErrorKind::OutOfMemory, "no memory for the message"),
            )
        })?;
    sys::advise_huge_pages(out.as_mut_ptr(), out.len());
    Ok(out)
}

/// The stream as a reader that keeps the handles arriving with its bytes.
struct Source<'a> {
    link: &'a Link<'a>,
    arrived: &'a mut VecDeque<sys::OwnedHandle>,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv_some(self.link.stream, self.link.socket, buf, self.arrived)
    }
}

/// Where the next frame lies in the buffered bytes, for a receive that must not block.
enum Extent {
    /// Whole: its payload's range in `buffered()`.
    Whole(std::ops::Range<usize>),
    /// Not all here: how many buffered bytes it needs in all, once its header is here.
    Partial(Option<usize>),
    /// A header the blocking parse refuses (it says why).
    Bad,
}

/// Receiving without blocking (the async receives, and the receives with a deadline): bytes
/// are gathered in the inbox until a whole message is here, then the blocking parse above takes
/// it without touching the stream. What was gathered stays in the inbox, so a receive dropped
/// half way, or out of time, loses nothing.
impl Inbox {
    /// Reads what the stream holds now (`WouldBlock` if nothing), with room for `want`
    /// buffered bytes; `Ok(0)` is end of file.
    pub(crate) fn fill_now(&mut self, link: &Link<'_>, want: usize) -> io::Result<usize> {
        self.fill_with(link, want, sys::recv_now)
    }

    /// Drops a large buffer once it is empty (a big message gathered whole leaves one).
    pub(crate) fn shrink(&mut self) {
        if !self.has_bytes() && self.buf.len() > 4 * READ_AHEAD {
            *self = Inbox {
                arrived: std::mem::take(&mut self.arrived),
                ..Inbox::default()
            };
        }
    }

    /// `None` if a whole message is buffered (a frame of at most `limit` bytes and, with
    /// `handles`, the frame of handles a message from `send` announces, with its handles), or
    /// if what is buffered is an error the blocking parse will report; else how many
    /// buffered bytes the message needs (0: not known yet). An offer of a large message copied
    /// between processes is declined: its payload then follows it in the stream.
    pub(crate) fn missing(&self, link: &Link<'_>, limit: u64, handles: bool) -> Option<usize> {
        let payload = match self.extent(link, 0, limit) {
            Extent::Whole(payload) => payload,
            Extent::Partial(need) => return Some(need.unwrap_or(0)),
            Extent::Bad => return None,
        };
        let count = match wire::split_message(&self.buffered()[payload.clone()]) {
            Ok((count, _)) if handles => count as usize,
            _ => return None,
        };
        if count == 0 {
            return None;
        }
        match self.extent(link, payload.end, sys::handles_frame_len(count)) {
            Extent::Partial(need) => Some(need.unwrap_or(0)),
            Extent::Whole(_) | Extent::Bad => None,
        }
    }

    /// The frame starting `at` bytes into the buffered ones.
    fn extent(&self, link: &Link<'_>, at: usize, limit: u64) -> Extent {
        let bytes = &self.buffered()[at..];
        let (len, start) = if let Some(bulk) = link.bulk
            && bytes.starts_with(&bulk::MARKER)
        {
            let Some(offer) = bytes.get(..bulk::OFFER_LEN) else {
                return Extent::Partial(None);
            };
            let len = u64::from_be_bytes(offer[4..12].try_into().unwrap_or([0xff; 8]));
            let seq = u32::from_be_bytes(offer[12..].try_into().unwrap_or([0; 4]));
            if len > limit {
                return Extent::Bad;
            }
            bulk.decline(seq);
            (len, bulk::OFFER_LEN)
        } else {
            match wire::parse_header(bytes, limit) {
                Ok(Some(found)) => found,
                Ok(None) => return Extent::Partial(None),
                Err(_) => return Extent::Bad,
            }
        };
        let Ok(end) = usize::try_from(start as u64 + len) else {
            return Extent::Bad;
        };
        if end <= bytes.len() {
            Extent::Whole(at + start..at + end)
        } else {
            Extent::Partial(Some(at + end))
        }
    }
}
