//! Sending a message without blocking in the middle of it: the frame is written with writes
//! that return at once (`sys::send_now`: `MSG_DONTWAIT` on a socket, at most `PIPE_BUF` bytes
//! after `POLLOUT` on a pipe, an overlapped write on Windows), waiting for room between them.
//! Shared by the async sends (which wait on tokio's reactor) and the sends with a deadline
//! (which wait on the stream with `poll`), the counterpart of `gather` for receives.
//!
//! A message that fits the stream's free space goes in the first write, whole. A send that
//! gives up (its deadline) or is dropped (an async one) after part of its frame went into the
//! stream leaves the stream off its message boundaries: the peer would read garbage after it,
//! so this end then refuses to send (receiving is unaffected). Such a send never takes the
//! cross-process copy of large messages (`bulk`), which waits for the receiver to copy.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Connection, WriteGuard};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire;

/// Messages up to this long are framed in one buffer (one write); longer ones are written
/// header first, then straight from the caller's buffer.
const COALESCE: usize = 64 * 1024;

/// The longest pause between two looks while another thread's send holds the write side.
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// A send in progress: holds the write side, writes the frame (the header, with the message
/// when short; then the rest of the message) and the handles that go with it, and marks the
/// connection unable to send if it ends (dropped, or given up) with part of its frame written.
pub(super) struct Writing<'a> {
    connection: &'a Connection,
    _guard: WriteGuard<'a>,
    head: Vec<u8>,
    /// How much of `head` is written.
    written: usize,
    /// What is left of the message after `head`.
    rest: &'a [u8],
    /// Sent once the frame is written (a frame of their own, a few bytes).
    handles: Vec<sys::OwnedHandle>,
    /// Part of the frame is in the stream and the rest is not.
    cut: bool,
}

impl<'a> Writing<'a> {
    pub(super) fn new(
        connection: &'a Connection,
        guard: WriteGuard<'a>,
        message: &'a [u8],
        handles: Vec<sys::OwnedHandle>,
    ) -> Writing<'a> {
        let (header, n) = wire::header(message.len());
        let short = message.len() <= COALESCE;
        let mut head = Vec::with_capacity(n + if short { message.len() } else { 0 });
        head.extend_from_slice(&header[..n]);
        if short {
            head.extend_from_slice(message);
        }
        Writing {
            connection,
            _guard: guard,
            head,
            written: 0,
            rest: if short { &[] } else { message },
            handles,
            cut: false,
        }
    }

    /// Writes what the stream takes now: true once the whole message (and its handles) is
    /// written, which puts the stream on a message boundary again; false when the stream is
    /// full (wait for room, then call again).
    pub(super) fn push(&mut self, stream: &sys::Stream) -> Result<bool> {
        loop {
            let in_head = self.written < self.head.len();
            let bytes = if in_head {
                &self.head[self.written..]
            } else if !self.rest.is_empty() {
                self.rest
            } else {
                break;
            };
            match sys::send_now(stream, self.connection.socket, bytes) {
                Ok(0) => {
                    return Err(Error::io(
                        "sending a message",
                        io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(k) if in_head => self.written += k,
                Ok(k) => self.rest = &self.rest[k..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("sending a message", e)),
            }
            self.cut = true;
        }
        if !self.handles.is_empty() {
            if !sys::wait_writable(stream, Some(Duration::ZERO))
                .map_err(|e| Error::io("waiting to send a message", e))?
            {
                return Ok(false);
            }
            sys::send_handles_on(stream, std::mem::take(&mut self.handles))
                .map_err(|e| Error::io("sending handles with a message", e))?;
        }
        self.cut = false;
        Ok(true)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.cut {
            self.connection.send_broken.store(true, Ordering::Relaxed);
        }
    }
}

impl Connection {
    /// Writes one message (and the handles that go with it) by `deadline` (`None`: as long as
    /// it takes), never blocking past it: [`Error::Timeout`] if the stream did not take it all
    /// in time (see the module docs for what a cut message means).
    pub(super) fn send_until(
        &self,
        message: &[u8],
        handles: Vec<sys::OwnedHandle>,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let stream = self.stream(false)?;
        self.check_handles(&handles)?;
        let guard = self.hold_until(deadline)?;
        // Checked again under the right: a send cut while this one waited.
        self.stream(false)?;
        let mut writing = Writing::new(self, guard, message, handles);
        while !writing.push(stream)? {
            wait_writable(stream, deadline)?;
        }
        Ok(())
    }

    /// The write side by `deadline`: taken at once if free, else looked at again after 1 ms,
    /// doubling to 20 ms (a blocking send in another thread holds it until its message is
    /// written, which may be never if the peer stops reading).
    fn hold_until(&self, deadline: Option<Instant>) -> Result<WriteGuard<'_>> {
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(guard) = self.writing.try_hold() {
                return Ok(guard);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(Error::Timeout);
            }
            std::thread::sleep(left.map_or(pause, |l| pause.min(l)));
            pause = (pause * 2).min(BUSY_PAUSE);
        }
    }
}

/// Waits for room in `stream` until `deadline`: [`Error::Timeout`] once it has passed.
fn wait_writable(stream: &sys::Stream, deadline: Option<Instant>) -> Result<()> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left == Some(Duration::ZERO)
        || !sys::wait_writable(stream, left)
            .map_err(|e| Error::io("waiting to send a message", e))?
    {
        return Err(Error::Timeout);
    }
    Ok(())
}
