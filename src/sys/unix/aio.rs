//! Async waits and reads and writes that never block (cargo feature `tokio`).
//!
//! A wait registers the descriptor with tokio's reactor (`AsyncFd`: epoll on Linux, kqueue on
//! macOS) for the wait's duration: its flags are untouched (it stays blocking for the blocking
//! methods), nothing stays registered after the wait, and no thread waits anywhere. A
//! descriptor registered already (several tasks waiting on one) is registered through a
//! duplicate. Reads and writes that must not block
//! use `MSG_DONTWAIT` on a socket; on a pipe, which has no such flag, they first ask `poll(2)`
//! with a zero timeout (a pipe read after `POLLIN` returns what is there at once; a pipe write
//! of at most `PIPE_BUF` bytes after `POLLOUT` fits).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{Stream, WaitHandle, fds};

/// Waits until one of `handles` is readable (bytes, end of file, a process's exit).
///
/// # Errors
/// Outside a tokio runtime, or if the reactor refuses a descriptor.
pub(crate) async fn readable_async(handles: &[WaitHandle<'_>]) -> io::Result<()> {
    wait_async(handles, Interest::READABLE).await
}

/// Waits until `handle` can take bytes (or its peer is gone, which the write then reports).
///
/// # Errors
/// As [`readable_async`].
pub(crate) async fn writable_async(handle: WaitHandle<'_>) -> io::Result<()> {
    wait_async(&[handle], Interest::WRITABLE).await
}

async fn wait_async(handles: &[WaitHandle<'_>], interest: Interest) -> io::Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "an async wait needs a tokio runtime with I/O enabled",
        ));
    }
    let registered = handles
        .iter()
        .map(|h| Registered::new(*h, interest))
        .collect::<io::Result<Vec<Registered>>>()?;
    poll_fn(|cx| {
        for fd in &registered {
            if let Poll::Ready(r) = fd.poll(cx, interest) {
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    })
    .await
}

/// A descriptor registered with the reactor for one wait: the caller's own (no `dup`, the
/// common case), or a duplicate when the descriptor is registered already (another task
/// waiting on it, or the application's own `AsyncFd`: epoll refuses a descriptor twice).
enum Registered {
    Borrowed(AsyncFd<Raw>),
    Duplicate(AsyncFd<OwnedFd>),
}

/// A borrowed descriptor's number, for an `AsyncFd` that lives within the borrow.
struct Raw(RawFd);

impl AsRawFd for Raw {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Registered {
    /// Registers `fd`, which the caller keeps open (borrowed) for as long as the result lives:
    /// `wait_async` drops it before returning.
    fn new(fd: BorrowedFd<'_>, interest: Interest) -> io::Result<Registered> {
        // kqueue (macOS) takes a second registration of a descriptor as a change to the first,
        // and one waiter's deregistration would end the other's: there, always a duplicate.
        if cfg!(target_os = "linux") {
            // SAFETY: `fd` is open and names the same description for the borrow's life, and
            // the `AsyncFd` is dropped within it (it lives inside `wait_async`, which borrows
            // `fd`).
            match unsafe { AsyncFd::register_with_interest(Raw(fd.as_raw_fd()), interest) } {
                Ok(registered) => return Ok(Registered::Borrowed(registered)),
                Err(e) => {
                    let (_, cause) = e.into_parts();
                    if cause.raw_os_error() != Some(libc::EEXIST) {
                        return Err(cause);
                    }
                }
            }
        }
        let copy = fd.try_clone_to_owned()?;
        // SAFETY: `copy` is an open descriptor the `AsyncFd` owns: it stays open, and names the
        // same description, until the `AsyncFd` is dropped.
        Ok(Registered::Duplicate(unsafe {
            AsyncFd::register_with_interest(copy, interest)
        }?))
    }

    fn poll(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        let readable = interest.is_readable();
        match self {
            Registered::Borrowed(fd) if readable => fd.poll_read_ready(cx).map_ok(|_| ()),
            Registered::Borrowed(fd) => fd.poll_write_ready(cx).map_ok(|_| ()),
            Registered::Duplicate(fd) if readable => fd.poll_read_ready(cx).map_ok(|_| ()),
            Registered::Duplicate(fd) => fd.poll_write_ready(cx).map_ok(|_| ()),
        }
    }
}

/// Whether `fd` has any of `events` now (a zero-timeout `poll(2)`).
fn ready_now(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r >= 0 {
            return Ok(r > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// As [`recv_some`](super::recv_some), but `WouldBlock` instead of waiting when nothing has
/// arrived.
pub(crate) fn recv_now(
    stream: &Stream,
    socket: bool,
    buf: &mut [u8],
    arrived: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    loop {
        let got = if socket {
            fds::recv_with_fds(stream.as_fd(), buf, arrived, libc::MSG_DONTWAIT)
        } else if ready_now(stream.as_fd(), libc::POLLIN)? {
            (&*stream).read(buf)
        } else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        match got {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Writes what the stream takes now of `buf` (at least one byte), or `WouldBlock`.
pub(crate) fn send_now(stream: &Stream, socket: bool, buf: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    const NO_SIGNAL: i32 = libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    const NO_SIGNAL: i32 = 0;
    loop {
        let sent = if socket {
            // SAFETY: a send from a live buffer of the given length on a socket we hold.
            let r = unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | NO_SIGNAL,
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as usize)
            }
        } else if ready_now(stream.as_fd(), libc::POLLOUT)? {
            (&*stream).write(&buf[..buf.len().min(libc::PIPE_BUF)])
        } else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        match sent {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Waits until a client waits at `listener` (its socket is readable). `_pause` is the
/// Windows timer's.
///
/// # Errors
/// As [`readable_async`].
pub(crate) async fn acceptable_async(
    listener: &super::SocketListener,
    _pause: &mut std::time::Duration,
) -> io::Result<()> {
    readable_async(&[listener.handle()]).await
}
