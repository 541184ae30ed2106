//! Async waits (cargo feature `tokio`), Windows: a fallback for this first slice.
//!
//! A named pipe's readiness is not a handle the OS can wait on without an overlapped read in
//! flight, so an async wait here looks with a zero-timeout [`wait_readable`] and, while nothing
//! is ready, sleeps on tokio's timer between looks (1 ms, doubling to 20 ms): no thread waits,
//! at the price of up to 20 ms of latency. Reads take only what has arrived
//! ([`Channel::read_available`](super::Channel)); writes are the blocking writes (a pipe that
//! is full blocks the runtime thread until the reader takes bytes). A wait registered with the
//! OS thread pool (`RegisterWaitForSingleObject`) for process handles, and overlapped I/O
//! driven by the reactor for pipes, are the planned replacements.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::time::Duration;

use super::{OwnedHandle, Stream, WaitHandle, wait_readable};

/// Waits until one of `handles` is ready (bytes, end of file, a process's exit).
///
/// # Errors
/// Outside a tokio runtime (with its timer enabled), or if the OS wait fails.
pub(crate) async fn readable_async(handles: &[WaitHandle<'_>]) -> io::Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "an async wait needs a tokio runtime with its timer enabled",
        ));
    }
    let mut pause = Duration::from_millis(1);
    loop {
        if wait_readable(handles, Some(Duration::ZERO))?.contains(&true) {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Windows: a listener's readiness is no handle to wait on without an offer in flight, so
/// this sleeps `pause` on tokio's timer (doubling it, up to 20 ms) between looks.
///
/// # Errors
/// Outside a tokio runtime.
pub(crate) async fn acceptable_async(
    _listener: &super::SocketListener,
    pause: &mut Duration,
) -> io::Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "an async wait needs a tokio runtime with its timer enabled",
        ));
    }
    tokio::time::sleep(*pause).await;
    *pause = (*pause * 2).min(Duration::from_millis(20));
    Ok(())
}

/// Writes block on Windows (see the module docs): always "writable".
pub(crate) async fn writable_async(_handle: WaitHandle<'_>) -> io::Result<()> {
    Ok(())
}

/// What has arrived, up to `buf.len()` bytes; `WouldBlock` if nothing has; `Ok(0)` at end
/// of file.
pub(crate) fn recv_now(
    stream: &Stream,
    _socket: bool,
    buf: &mut [u8],
    _arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<usize> {
    stream.read_available(buf)
}

/// A blocking write (see the module docs).
pub(crate) fn send_now(stream: &Stream, _socket: bool, buf: &[u8]) -> io::Result<usize> {
    (&*stream).write(buf)
}

/// No wake-up channel on Windows in this version: async waits on shared words look between
/// timer sleeps ([`Watch`] without a handle).
///
/// # Errors
/// Always (`Unsupported`).
pub(crate) fn wakeup_pair() -> io::Result<(OwnedHandle, OwnedHandle)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no async wake-up channel on Windows",
    ))
}

/// Nothing to signal (see [`wakeup_pair`]).
pub(crate) fn wakeup_signal(_signal: &OwnedHandle, _watched: &OwnedHandle) {}

/// Waits for the next look: sleeps on tokio's timer, 1 ms doubling to 20 ms (Windows has no
/// wake-up channel in this version, see [`wakeup_pair`]).
pub(crate) struct Watch<'a> {
    pause: Duration,
    _handle: std::marker::PhantomData<WaitHandle<'a>>,
}

impl<'a> Watch<'a> {
    /// A timer watch (`_watched` is always `None` here).
    ///
    /// # Errors
    /// Outside a tokio runtime.
    pub(crate) fn new(_watched: Option<WaitHandle<'a>>) -> io::Result<Watch<'a>> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "an async wait needs a tokio runtime with its timer enabled",
            ));
        }
        Ok(Watch {
            pause: Duration::from_millis(1),
            _handle: std::marker::PhantomData,
        })
    }

    /// Sleeps until the next look.
    ///
    /// # Errors
    /// Never.
    pub(crate) async fn changed(&mut self) -> io::Result<()> {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(20));
        Ok(())
    }
}
