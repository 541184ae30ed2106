//! The fork server's view of its children: it forks them without a sentinel each, is woken by
//! `SIGCHLD` (whose handler writes a byte on a pipe the server polls), and reaps whichever have
//! ended with `waitpid(-1)`. A sentinel per child made the server open and close a descriptor
//! per child, poll all of them at every request and ask each whether it had ended: with 256
//! children at once, more of the server's time than its forks (issue 19).
//!
//! The descriptor the server keeps for each child (where its exit status goes) is moved above
//! every other descriptor of the server's ([`Reaper::keep_high`]), so that a new child closes
//! its siblings' in one `close_range` instead of one `close` each (a fan-out of 256 made up to
//! 256 × 255 / 2 of them; strace of one counted 26,935 `close` calls in all, 4,404 and 258
//! `close_range` after).

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The pipe's write end while a [`Reaper`] exists (-1 otherwise): what the handler writes on.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// Set by the handler when it wrote a byte, cleared by [`Reaper::reap`] after it drained the
/// pipe and before it reaps: at most one byte is ever in the pipe, so the handler's `write`
/// never fails (and never changes `errno` under the code it interrupted). Cleared before the
/// drain, a byte written between the two would be drained with the flag left set, and no
/// signal after would write again: the server slept with its children unreaped (seen once in
/// `many_served_children_end_at_once`).
static PENDING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_child_signal(_signal: libc::c_int) {
    if PENDING.swap(true, Ordering::Relaxed) {
        return;
    }
    let fd = WAKE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; one byte from a static on our own pipe.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Wakes its owner when a child of this process ends, and reaps the children that have.
/// One per process (the fork server's).
pub(crate) struct Reaper {
    read: OwnedFd,
    write: OwnedFd,
    /// Where the descriptors [`keep_high`](Self::keep_high) moves begin: above every
    /// descriptor open when the reaper was installed, with room for the few the server opens
    /// for a while (a request's channel, a new status pair), which take the lowest free
    /// numbers. `None` where descriptors cannot be closed by range.
    high: Option<RawFd>,
}

impl Reaper {
    /// Opens the pipe and installs the `SIGCHLD` handler.
    pub(crate) fn install() -> io::Result<Reaper> {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into a two-element array of ours.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: two fresh descriptors we own from here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            // SAFETY: fcntl on descriptors we own.
            let r = unsafe {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC)
                    | libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK)
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        WAKE.store(write.as_raw_fd(), Ordering::Relaxed);
        set_handler(on_child_signal as *const () as libc::sighandler_t)?;
        let high = super::os::highest_open_fd().map(|fd| fd + HIGH_MARGIN);
        Ok(Reaper { read, write, high })
    }

    /// Moves `fd`, which the server keeps while a child runs, above its other descriptors
    /// (see the module's docs); as it was if it cannot be moved.
    pub(crate) fn keep_high(&self, fd: OwnedFd) -> OwnedFd {
        let Some(high) = self.high else {
            return fd;
        };
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor of ours from one we own.
        let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, high) };
        if moved < 0 {
            return fd;
        }
        // SAFETY: `moved` is a fresh descriptor nobody else owns; `fd` (the old number) is
        // dropped, closing it.
        unsafe { OwnedFd::from_raw_fd(moved) }
    }

    /// Whether `fd` is one [`keep_high`](Self::keep_high) moved (a child whose
    /// [`release_in_child`](Self::release_in_child) returned true has it closed already).
    pub(crate) fn kept_high(&self, fd: BorrowedFd<'_>) -> bool {
        self.high.is_some_and(|high| fd.as_raw_fd() >= high)
    }

    /// What to poll: readable once a child has ended since the last [`reap`](Self::reap).
    pub(crate) fn handle(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Reaps every child that has ended, calling `each` with its pid and exit code in Python's
    /// convention (n, or -signal). For when [`handle`](Self::handle) was readable: it empties
    /// the pipe and then lets the handler write again, both before the first `waitpid`, so that
    /// an end after the last `waitpid` wakes the next wait.
    pub(crate) fn reap(&self, mut each: impl FnMut(u32, i32)) {
        let mut sink = [0u8; 8];
        // SAFETY: a non-blocking read into a buffer of ours, from our own pipe.
        while unsafe { libc::read(self.read.as_raw_fd(), sink.as_mut_ptr().cast(), 8) } > 0 {}
        PENDING.store(false, Ordering::SeqCst);
        let mut status = 0;
        loop {
            // SAFETY: waitpid with a valid out-pointer; every child of this process is ours.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                each(pid as u32, super::child::exitcode(status));
            } else if pid == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    /// In a child just forked: puts `SIGCHLD` back to its default and closes the pipe and
    /// every descriptor [`keep_high`](Self::keep_high) moved, without touching the parent's
    /// memory; returns whether it closed the latter (not if one of `keep`, which the child
    /// goes on using, is among them, or where the system cannot close by range).
    pub(crate) fn release_in_child<'a>(
        &self,
        mut keep: impl Iterator<Item = BorrowedFd<'a>>,
    ) -> bool {
        let _ = set_handler(libc::SIG_DFL);
        for fd in [&self.read, &self.write] {
            super::close_abandoned(fd.as_fd());
        }
        match self.high {
            Some(high) if keep.all(|fd| fd.as_raw_fd() < high) => super::os::close_from(high),
            _ => false,
        }
    }
}

/// Writes a served child's exit `code` on its status pipe (see `status_pipe`), then closes it:
/// four bytes, which an empty pipe takes at once and whole.
pub(crate) fn write_status(status: OwnedFd, code: i32) {
    let _ = std::fs::File::from(status).write_all(&code.to_le_bytes());
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = set_handler(libc::SIG_DFL);
        WAKE.store(-1, Ordering::Relaxed);
    }
}

/// How far above the highest descriptor open at the reaper's start [`Reaper::keep_high`]
/// puts the kept ones: the server opens a few at a time besides them (a request's channel, a
/// status pair, the bootstrap's handles: a few queues' or connections'), and they take the
/// lowest free numbers, so they stay below. (A child whose handles reach the kept ones closes
/// its siblings' one by one: see [`Reaper::release_in_child`].)
const HIGH_MARGIN: RawFd = 16;

/// Sets `SIGCHLD`'s disposition (a handler's address, or `SIG_DFL`). Interrupted system calls
/// restart; stopped children do not count.
fn set_handler(handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid starting point; we fill in its handler, flags and
    // an empty mask before passing it to the kernel.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
    // SAFETY: sigemptyset on our own mask; sigaction with a valid action and no old one.
    let r = unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut())
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
