//! Async waits and reads and writes that never block (cargo feature `tokio`).
//!
//! A wait registers the descriptor with tokio's reactor (`AsyncFd`: epoll on Linux, kqueue on
//! macOS) for the wait's duration: its flags are untouched (it stays blocking for the blocking
//! methods), nothing stays registered after the wait, and no thread waits anywhere. A
//! descriptor registered already (several tasks waiting on one) is registered through a
//! duplicate. The reads and writes that must not block are `fds`' `recv_now` and `send_now`
//! (shared with the blocking receives and sends that have a deadline).

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::WaitHandle;

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
            // `fd`, or inside a `Watch<'a>`, which cannot outlive the borrow `'a`).
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

    /// Readable since the last call: the readiness is taken (the next call waits for a new
    /// event).
    fn poll_and_clear(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Registered::Borrowed(fd) => fd.poll_read_ready(cx).map_ok(|mut g| g.clear_ready()),
            Registered::Duplicate(fd) => fd.poll_read_ready(cx).map_ok(|mut g| g.clear_ready()),
        }
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

/// A wake-up channel for async waits on shared words (a queue's), as (the end to signal, the
/// end to watch): an `eventfd` on Linux (both ends are one counter), a pipe on macOS. Both are
/// non-blocking and close-on-exec. Nobody drains it: every signal is an edge that each
/// registration of the watched end sees (tokio registers edge-triggered), and a watcher that
/// registers later than a signal looks at the shared words after registering.
///
/// # Errors
/// If the OS is out of descriptors.
pub(crate) fn wakeup_pair() -> io::Result<(super::OwnedHandle, super::OwnedHandle)> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: eventfd creates a new descriptor; no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nobody else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let watched = fd.try_clone()?;
        Ok((fd, watched))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two new descriptors into `fds`.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe {
            use std::os::fd::FromRawFd;
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        for fd in [&read, &write] {
            // SAFETY: fcntl on descriptors we own.
            let ok = unsafe {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) >= 0
                    && libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) >= 0
            };
            if !ok {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((write, read))
    }
}

/// Signals a [`wakeup_pair`]: every watcher's registration becomes ready. Never blocks; a
/// failure is ignored (the watchers' timer-free waits then rely on the next signal).
pub(crate) fn wakeup_signal(signal: &super::OwnedHandle, _watched: &super::OwnedHandle) {
    #[cfg(target_os = "linux")]
    {
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write from a live buffer to an eventfd we hold.
        unsafe { libc::write(signal.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
    #[cfg(not(target_os = "linux"))]
    {
        let byte = 1u8;
        // SAFETY: a 1-byte write from a live buffer to a pipe we hold.
        let r = unsafe { libc::write(signal.as_raw_fd(), (&raw const byte).cast(), 1) };
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
            // The pipe is full of past signals: empty it, then signal (a new edge for all).
            let mut sink = [0u8; 4096];
            // SAFETY: reads into a live buffer of its length from a pipe we hold.
            while unsafe { libc::read(_watched.as_raw_fd(), sink.as_mut_ptr().cast(), 4096) } > 0 {}
            // SAFETY: as above.
            unsafe { libc::write(signal.as_raw_fd(), (&raw const byte).cast(), 1) };
        }
    }
}

/// Waits for signals of a [`wakeup_pair`] (its watched end registered with tokio's reactor
/// for the `Watch`'s life), or, without one, for the next look on a timer (1 ms, doubling to
/// 20 ms).
pub(crate) struct Watch<'a> {
    registered: Option<Registered>,
    pause: std::time::Duration,
    _fd: std::marker::PhantomData<BorrowedFd<'a>>,
}

impl<'a> Watch<'a> {
    /// Registers `watched` (`None`: the timer).
    ///
    /// # Errors
    /// As [`readable_async`].
    pub(crate) fn new(watched: Option<WaitHandle<'a>>) -> io::Result<Watch<'a>> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "an async wait needs a tokio runtime with I/O and the timer enabled",
            ));
        }
        Ok(Watch {
            registered: watched
                .map(|fd| Registered::new(fd, Interest::READABLE))
                .transpose()?,
            pause: std::time::Duration::from_millis(1),
            _fd: std::marker::PhantomData,
        })
    }

    /// Waits for a signal since the last call (or since the registration, for the first).
    ///
    /// # Errors
    /// If the reactor fails.
    pub(crate) async fn changed(&mut self) -> io::Result<()> {
        match &self.registered {
            Some(registered) => poll_fn(|cx| registered.poll_and_clear(cx)).await,
            None => {
                tokio::time::sleep(self.pause).await;
                self.pause = (self.pause * 2).min(std::time::Duration::from_millis(20));
                Ok(())
            }
        }
    }
}
