//! Async waits and reads and writes that never block (cargo feature `tokio`).
//!
//! A wait registers a duplicate of the descriptor with tokio's reactor (`AsyncFd`: epoll on
//! Linux, kqueue on macOS), so the caller's descriptor keeps its flags (it stays blocking for
//! the blocking methods), several tasks can wait on one descriptor at once, and nothing stays
//! registered after the wait: no thread waits anywhere. Reads and writes that must not block
//! use `MSG_DONTWAIT` on a socket; on a pipe, which has no such flag, they first ask `poll(2)`
//! with a zero timeout (a pipe read after `POLLIN` returns what is there at once; a pipe write
//! of at most `PIPE_BUF` bytes after `POLLOUT` fits).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::task::Poll;

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
        .map(|h| {
            let fd = h.try_clone_to_owned()?;
            // SAFETY: `fd` is an open descriptor the `AsyncFd` owns: it stays open, and names
            // the same description, until the `AsyncFd` is dropped.
            Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
        })
        .collect::<io::Result<Vec<AsyncFd<OwnedFd>>>>()?;
    poll_fn(|cx| {
        for fd in &registered {
            let ready = if interest.is_readable() {
                fd.poll_read_ready(cx)
            } else {
                fd.poll_write_ready(cx)
            };
            if let Poll::Ready(r) = ready {
                return Poll::Ready(r.map(|_| ()));
            }
        }
        Poll::Pending
    })
    .await
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
