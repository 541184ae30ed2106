//! A child process seen from its parent: its pid, its sentinel (what becomes readable when it
//! ends) and its reaping, exactly once.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::os;

/// A child process we started and have not yet reaped. Its pid cannot be reused before we reap
/// it, so signalling it by pid under `&mut self` is race-free.
///
/// Or a child of our fork server (`served`): the server reaps it and writes its exit status (a
/// little-endian `i32` in Python's convention) on a pipe whose read end is the sentinel.
/// Signalling it by pid has the window Python's forkserver has: between the server reaping it
/// and us reading the status, its pid could in principle be reused.
#[derive(Debug)]
pub(crate) struct ProcHandle {
    /// The pid (0 for a served child: see `served`).
    pid: u32,
    sentinel: Sentinel,
    exitcode: Option<i32>,
    /// A child of our fork server: its pid, which the server sends after the fork.
    served: Option<crate::sys::ServedPid>,
    /// A served child's end of its channel (the child has its copy): kept until the child is
    /// joined (`let_go`) or this handle dropped, so that the child's exit is not the socket's
    /// last close. The kernel's collector of Unix sockets in flight runs at each last close of
    /// a Unix socket while any is in flight anywhere, and in a fork-server fan-out some always
    /// is (each request to the server carries a channel, and the bootstrap's handles: a
    /// queue's side channel): it ran 1.2 times a child, each a kworker woken (12 µs of the
    /// closing process and 9 µs of the kworker: 5.7% of the fan-out's CPU; issue 19, W11). A
    /// fan-out joins its children after their starts, when none is in flight. Keeping it
    /// keeps nothing else alive if the child dies before reading its bootstrap: its handles
    /// come through the server, not in the channel (a spawned child's come in the channel,
    /// which is why its end is not kept). Not kept where descriptors run short (past half
    /// this process's limit): one descriptor more a child running.
    child_end: Option<OwnedFd>,
}

/// A child's sentinel. Where the OS can watch a child that has ended but is not reaped
/// ([`os::SENTINEL_ON_DEMAND`]: a pidfd) it is opened when first asked for, by a wait: one
/// made at the start would be in every sibling forked after it, each of which copies it at
/// its fork and closes it at its exit (a fan-out's k-th child k of them), and a fan-out's
/// children mostly end before anyone waits (issue 19, W11).
#[derive(Debug)]
enum Sentinel {
    Open(Arc<OwnedFd>),
    /// Not opened yet, and where it goes if it is opened at the start: made before the fork
    /// (an allocation after it writes malloc's pages, which a child alive shares: a copy
    /// each, issue 19). Where it is opened on demand, none is made: most of a fan-out's
    /// children never need one, and the allocation would be one more page written between
    /// two forks.
    Later(Option<Place>),
}

/// Where a sentinel goes, made before it is opened.
pub(super) type Place = Arc<std::mem::MaybeUninit<OwnedFd>>;

impl ProcHandle {
    /// `place`: where the sentinel goes, made before a fork where it is opened at the start
    /// (see [`Sentinel::Later`]).
    pub(super) fn new(pid: u32, place: Option<Place>) -> io::Result<Self> {
        let mut handle = ProcHandle {
            pid,
            sentinel: Sentinel::Later(place),
            exitcode: None,
            served: None,
            child_end: None,
        };
        if !os::SENTINEL_ON_DEMAND {
            if let Err(e) = handle.sentinel() {
                // Without a sentinel we could never wait on it: kill and reap it now.
                // SAFETY: plain syscalls on a child we just created and have not reaped.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                    libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
                }
                return Err(e);
            }
        }
        Ok(handle)
    }

    /// A child of our fork server, whose pid comes as `pid` says and whose exit status will
    /// come on `status`, the read end of a [`status_pipe`](super::status_pipe); `child_end` is
    /// the child's end of its channel (see `ProcHandle::child_end`).
    pub(crate) fn served(
        pid: crate::sys::ServedPid,
        status: OwnedFd,
        child_end: OwnedFd,
    ) -> io::Result<Self> {
        Ok(ProcHandle {
            pid: 0,
            sentinel: Sentinel::Open(Arc::new(status)),
            exitcode: None,
            served: Some(pid),
            child_end: spare_descriptors(child_end.as_raw_fd()).then_some(child_end),
        })
    }

    /// Closes what the handle keeps for a child that is over (see `ProcHandle::child_end`):
    /// once it is joined.
    pub(crate) fn let_go(&mut self) {
        self.child_end = None;
    }

    /// A served child's exit status, if the server has sent it; 255 (as Python says) if the
    /// server ended without sending it. Read once (the caller keeps it): the pipe stays
    /// readable after, at its end of file, for whoever waits on the sentinel.
    fn served_status(&self) -> io::Result<Option<i32>> {
        // Always open: made with the handle (see `served`).
        let Sentinel::Open(status) = &self.sentinel else {
            return Ok(None);
        };
        let mut buf = [0u8; 4];
        loop {
            // SAFETY: a read into a 4-byte buffer of ours from a non-blocking pipe we own.
            let n = unsafe { libc::read(status.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(None),
                    _ => return Err(e),
                }
            }
            // The server writes the four bytes at once (less than `PIPE_BUF`: never split).
            return Ok(match n {
                4 => Some(i32::from_le_bytes(buf)),
                _ => Some(255),
            });
        }
    }

    /// The child's pid; for a served child, once the server has sent it (0 if it never will:
    /// the server ended or could not fork).
    pub(crate) fn pid(&self) -> u32 {
        match &self.served {
            Some(served) => served.get().unwrap_or(0),
            None => self.pid,
        }
    }

    /// A child of our fork server (not ours to wait for: [`ended_child`] says nothing of it).
    pub(crate) fn is_served(&self) -> bool {
        self.served.is_some()
    }

    /// The exitcode, once reaped.
    pub(crate) fn exitcode(&self) -> Option<i32> {
        self.exitcode
    }

    /// A handle that becomes readable when the child ends (a pidfd on Linux, a kqueue on macOS),
    /// shared so that it can be waited on without holding a lock on this handle. Opened here
    /// the first time where it is opened on demand (see [`Sentinel`]); for a child already
    /// reaped, whose pid may name another process by now, it is one that is ready at once.
    pub(crate) fn sentinel(&mut self) -> io::Result<Arc<OwnedFd>> {
        let place = match &mut self.sentinel {
            Sentinel::Open(sentinel) => return Ok(Arc::clone(sentinel)),
            Sentinel::Later(place) => place,
        };
        let fd = match self.exitcode {
            Some(_) => ended_sentinel()?,
            None => os::open_sentinel(self.pid)?,
        };
        let sentinel = match place.take() {
            Some(mut place) => match Arc::get_mut(&mut place) {
                Some(slot) => {
                    slot.write(fd);
                    // SAFETY: written just above.
                    unsafe { place.assume_init() }
                }
                // Never: the place is this handle's alone until filled.
                None => Arc::new(fd),
            },
            None => Arc::new(fd),
        };
        self.sentinel = Sentinel::Open(Arc::clone(&sentinel));
        Ok(sentinel)
    }

    /// The sentinel if it is open (see [`sentinel`](Self::sentinel)), without opening it.
    pub(crate) fn sentinel_if_open(&self) -> Option<Arc<OwnedFd>> {
        match &self.sentinel {
            Sentinel::Open(sentinel) => Some(Arc::clone(sentinel)),
            Sentinel::Later(_) => None,
        }
    }

    /// Reaps the child if it has ended: its exitcode in Python's convention (n, or -signal).
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<i32>> {
        if let Some(code) = self.exitcode {
            return Ok(Some(code));
        }
        if self.served.is_some() {
            self.exitcode = self.served_status()?;
            return Ok(self.exitcode);
        }
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own unreaped child, with a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if r == 0 {
                return Ok(None);
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            break;
        }
        let code = exitcode(status);
        self.exitcode = Some(code);
        Ok(Some(code))
    }

    /// Sends `signal` unless the child has been reaped already.
    pub(crate) fn signal(&mut self, signal: i32) -> io::Result<()> {
        if self.served.is_some() {
            self.try_wait()?;
        }
        if self.exitcode.is_some() {
            return Ok(());
        }
        let pid = self.pid();
        if pid == 0 {
            // A served child that was never forked: nothing to signal.
            return Ok(());
        }
        // SAFETY: the pid is our unreaped child (see the type's docs).
        if unsafe { libc::kill(pid as libc::pid_t, signal) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A `waitpid` status as Python's exitcode: n, or -signal.
pub(super) fn exitcode(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// Whether this process has descriptors to spare beyond `fd`: below half its soft limit
/// (read once).
fn spare_descriptors(fd: libc::c_int) -> bool {
    static HALF_LIMIT: std::sync::OnceLock<libc::rlim_t> = std::sync::OnceLock::new();
    let half = *HALF_LIMIT.get_or_init(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we pass.
        match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
            0 => limit.rlim_cur / 2,
            _ => 0,
        }
    });
    libc::rlim_t::try_from(fd).is_ok_and(|fd| fd < half)
}

/// A handle that is readable at once and stays so: the read end of a pipe whose write end is
/// closed (the sentinel of a child reaped before anyone asked for one).
fn ended_sentinel() -> io::Result<OwnedFd> {
    let (reader, _) = io::pipe()?;
    Ok(reader.into())
}
