//! Receiving a message without blocking in the middle of it: the bytes are gathered into the
//! connection's read-ahead buffer with reads that return at once, and only a whole message is
//! parsed. Shared by the async receives (which wait on tokio's reactor between looks) and the
//! receives with a deadline (which wait on the stream with `poll`). A receive that gives up,
//! or is dropped, half way through a message leaves what it gathered in the buffer: the next
//! receive goes on from there, and the stream stays on its message boundaries.
//!
//! A large message offered for a straight copy between processes (see `bulk`) is declined
//! here: its sender then writes it into the stream, where it is gathered as any other.

use std::io;
use std::sync::TryLockError;
use std::time::{Duration, Instant};

use super::Connection;
use super::inbox::{Inbox, Link};
use crate::error::{Error, Result};
use crate::sys;

/// What one look at the stream found.
pub(super) enum Step<R> {
    /// A message (or why there is none).
    Done(Result<R>),
    /// Nothing more is there: wait for the stream.
    Wait,
    /// A blocking receive holds the read lock: retry later.
    Busy,
}

/// The longest pause between two looks while another thread's receive holds the read lock.
const BUSY_PAUSE: Duration = Duration::from_millis(20);

impl Connection {
    /// Gathers what the stream holds now, under the read lock if it is free; with a whole
    /// message (of at most `limit` bytes, and with `handles` its frame of handles) in the
    /// buffer, runs `take` on it (which then reads nothing from the stream, or only the end of
    /// file that is there).
    pub(super) fn gather<R>(
        &self,
        limit: u64,
        handles: bool,
        take: impl Fn(&mut Inbox, &Link<'_>) -> Result<R>,
    ) -> Result<Step<R>> {
        let link = Link {
            stream: self.stream(true)?,
            socket: self.socket,
            bulk: self.bulk.as_ref(),
        };
        let mut inbox = match self.reading.try_lock() {
            Ok(inbox) => inbox,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(Step::Busy),
        };
        let whole = loop {
            let Some(want) = inbox.missing(&link, limit, handles) else {
                break Ok(true);
            };
            match inbox.fill_now(&link, want) {
                // End of file: `take` reports it (before or inside a message).
                Ok(0) => break Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) => break Err(Error::io("reading a message", e)),
            }
        };
        let step = match whole {
            Ok(true) => {
                let result = take(&mut inbox, &link);
                inbox.shrink();
                Step::Done(self.settle(&inbox, result))
            }
            Ok(false) => Step::Wait,
            Err(e) => Step::Done(Err(e)),
        };
        self.settle(&inbox, Ok(()))?;
        Ok(step)
    }

    /// Receives one message as [`gather`](Self::gather) takes it, waiting for the stream
    /// until `deadline` (`None`: as long as it takes): [`Error::Timeout`] if no whole message
    /// is here by then (what arrived of one stays buffered).
    pub(super) fn receive_until<R>(
        &self,
        limit: u64,
        handles: bool,
        deadline: Option<Instant>,
        take: impl Fn(&mut Inbox, &Link<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut pause = Duration::from_millis(1);
        loop {
            let step = self.gather(limit, handles, &take)?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match step {
                Step::Done(result) => return result,
                _ if left == Some(Duration::ZERO) => return Err(Error::Timeout),
                // Another thread receives: look again when it may be done.
                Step::Busy => {
                    std::thread::sleep(left.map_or(pause, |l| pause.min(l)));
                    pause = (pause * 2).min(BUSY_PAUSE);
                }
                Step::Wait => {
                    // Readable: bytes, the end of file, or (the bulk path's) an offer to decline.
                    let stream = sys::stream_handle(self.stream(true)?);
                    if !sys::wait_readable(&[stream], left)
                        .map_err(|e| Error::io("waiting for a message", e))?[0]
                    {
                        return Err(Error::Timeout);
                    }
                }
            }
        }
    }
}
