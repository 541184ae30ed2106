//! Unix: start children by re-executing the program (`posix_spawn` through `std::process`) or by
//! `fork`, wait on them with a pollable sentinel, signal them, and reap them exactly once.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Address, os};

#[cfg(feature = "tokio")]
mod aio;
mod child;
mod fds;
mod reaper;
mod region;
mod shm;
mod socket;
#[cfg(feature = "tokio")]
pub(crate) use aio::*;
pub(crate) use child::ProcHandle;
pub(crate) use fds::*;
pub(crate) use reaper::{Reaper, write_status};
pub(crate) use region::*;
#[allow(unused_imports)]
pub(crate) use shm::*;
pub(crate) use socket::*;

/// The byte stream between a parent and one child: bootstrap down, reports up.
pub(crate) type Channel = UnixStream;

/// A handle that `poll` can wait on.
pub(crate) type WaitHandle<'a> = BorrowedFd<'a>;

/// An owned waitable handle (a process sentinel).
pub(crate) type OwnedWaitHandle = OwnedFd;

/// A socket as a handle `poll` waits on: its descriptor (see [`WaitSocket`](super::WaitSocket)).
pub(crate) fn socket_wait_handle(socket: &impl AsFd) -> io::Result<WaitHandle<'_>> {
    Ok(socket.as_fd())
}

/// Borrows an owned waitable handle.
pub(crate) fn borrow_handle(h: &OwnedFd) -> BorrowedFd<'_> {
    h.as_fd()
}

/// Writes all of `parts` on `channel`, in order, with `writev` straight from libc: a forked
/// child's report goes this way, and std's socket code would be one more window of code for
/// the child to fault in (issue 19). Short writes and interruptions are resumed.
pub(crate) fn write_all_vectored(channel: &Channel, parts: &[&[u8]]) -> io::Result<()> {
    write_rest(channel_handle(channel), parts, 0)
}

/// Writes what follows the first `done` bytes of `parts` on `fd` (see [`write_all_vectored`]).
fn write_rest(fd: BorrowedFd<'_>, parts: &[&[u8]], mut done: usize) -> io::Result<()> {
    /// The most parts one call takes (a frame's header, a prefix, a value).
    const MOST: usize = 4;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    while done < total {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MOST];
        let (mut k, mut before) = (0, 0);
        for part in parts {
            let from = done.saturating_sub(before).min(part.len());
            before += part.len();
            if from < part.len() && k < MOST {
                let rest = &part[from..];
                iov[k] = libc::iovec {
                    iov_base: rest.as_ptr().cast_mut().cast(),
                    iov_len: rest.len(),
                };
                k += 1;
            }
        }
        // SAFETY: the first `k` iovecs each point into a live slice of `parts`, for its
        // length; writev only reads them.
        let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), k as libc::c_int) };
        match n {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            1.. => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Reads whatever bytes are available without blocking: `Ok(0)` is end of file, `WouldBlock`
/// means nothing is there yet.
pub(crate) fn read_available(channel: &Channel, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: recv into a valid buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                channel.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The environment variable that marks a spawned child. `init()` removes it, so the child's own
/// children are not confused.
const CHILD_MARKER: &str = "MULTIPROCESS_CHILD";

/// Signal numbers used by `terminate` and `kill`.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
/// See [`SIGTERM`].
pub(crate) const SIGKILL: i32 = libc::SIGKILL;

/// A connected pair of channel ends, both close-on-exec.
pub(crate) fn channel_pair() -> io::Result<(Channel, Channel)> {
    UnixStream::pair()
}

/// A one-way pipe for a fork server's child's exit status: (read end, write end), both
/// close-on-exec, the read end non-blocking (its reader only looks). A pipe, not a socket:
/// while a Unix socket is in flight (sent with `SCM_RIGHTS`, not yet received), closing any
/// Unix socket queues the kernel's collector of sockets in flight, a worker's wake-up and run
/// each time (issue 19, W11 forkserver).
pub(crate) fn status_pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    let (read, write) = io::pipe()?;
    let read = OwnedFd::from(read);
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    if unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((read, OwnedFd::from(write)))
}

/// A channel end as a plain handle (to travel in a message).
pub(crate) fn channel_into_handle(channel: Channel) -> io::Result<OwnedHandle> {
    Ok(OwnedFd::from(channel))
}

/// A channel end from a handle made by [`channel_into_handle`].
pub(crate) fn channel_from_handle(handle: OwnedHandle) -> io::Result<Channel> {
    Ok(UnixStream::from(handle))
}

/// This process's id (cached: see [`current_pid`]).
pub(crate) fn pid() -> u32 {
    current_pid()
}

crate::sys::forked_child_data! {
    /// The cache of [`current_pid`] (0: empty).
    static PID: AtomicUsize = AtomicUsize::new(0);
}

crate::sys::forked_child_code! {
    /// The child handler of every `fork` (ours or anyone's): clears the cache.
    extern "C" fn forget_pid() {
        PID.store(0, Ordering::Relaxed);
    }
}

crate::sys::forked_child_code! {
    /// This process's id, cached (glibc no longer caches `getpid`); the cache is cleared in the
    /// child of every `fork`, ours or anyone's.
    pub(crate) fn current_pid() -> u32 {
        match PID.load(Ordering::Relaxed) {
            0 => {
                static AT_FORK: std::sync::Once = std::sync::Once::new();
                // SAFETY: registering a child handler that only stores to an atomic.
                AT_FORK.call_once(|| unsafe {
                    libc::pthread_atfork(None, None, Some(forget_pid));
                });
                // Straight to libc (what std's `process::id` calls): a forked child asks at its
                // end, and libc's `getpid` sits in the window of code its `fork` already mapped.
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() } as u32;
                PID.store(pid as usize, Ordering::Relaxed);
                pid
            }
            pid => pid as u32,
        }
    }
}

/// Which child of this process has ended and waits to be reaped, if the OS can say (the fork
/// server's children are not ours: see [`ProcHandle::is_served`]).
pub(crate) fn ended_child() -> super::Ended {
    os::ended_child()
}

/// Whether [`spawn`] can start a child with its stdout on the null device, for the child to
/// take its real stdout back with [`restore_stdout`] (a test binary's child: libtest's header
/// is not ours to print).
pub(crate) const QUIET_SPAWN: bool = true;

/// Starts this executable again as a child, with `args` after `argv[0]`, the marker in its
/// environment and `channel` as its stdin. stderr is inherited, and stdout too unless `quiet`
/// (then it is the null device until the child calls [`restore_stdout`]).
pub(crate) fn spawn(args: &[OsString], channel: Channel, quiet: bool) -> io::Result<ProcHandle> {
    let mut cmd = Command::new(os::exe_path()?);
    if let Some(argv0) = std::env::args_os().next() {
        cmd.arg0(argv0);
    }
    if quiet {
        cmd.stdout(Stdio::null());
    }
    // The resource tracker, to this child only (see `shm::with_tracker_inherited`), started
    // first if this process has none yet, so that a whole tree of processes shares one, as
    // CPython's spawn does (if it cannot start, the child starts its own when it needs one).
    let _ = shm::ensure_tracker();
    let child = shm::with_tracker_inherited(|tracker| {
        match tracker {
            Some((key, value)) => cmd.env(key, value),
            None => cmd.env_remove("MULTIPROCESS_RESOURCE_TRACKER"),
        };
        cmd.args(args)
            .env(CHILD_MARKER, "1")
            .stdin(Stdio::from(OwnedFd::from(channel)))
            .spawn()
    })?;
    // `std::process::Child` neither waits nor kills on drop; from here `ProcHandle` owns it.
    ProcHandle::new(child.id(), None)
}

/// Forks; the child runs `child` (which should end the process; if it returns, the child exits
/// with 127) and the parent gets a handle.
///
/// Forking a process that has other threads is unsafe in general (locks held by those threads
/// stay locked in the child); the fork start method documents this.
pub(crate) fn fork(child: impl FnOnce()) -> io::Result<ProcHandle> {
    // What std's stdout holds would be written twice (std's stderr holds nothing).
    let _ = io::stdout().flush();
    // Where the sentinel is opened at the start, its place is made before the fork: an
    // allocation after it writes malloc's pages, which the child shares (each a copy: issue
    // 19).
    let slot = (!os::SENTINEL_ON_DEMAND).then(Arc::new_uninit);
    ProcHandle::new(fork_unwatched(child)?, slot)
}

crate::sys::forked_child_code! {
    /// Forks as [`fork`] does, without flushing std's stdout first and without a sentinel: the
    /// fork server's way (it prints nothing, and reaps with a [`Reaper`]). Returns the pid.
    // Not inlined: the child resumes here, in the section, not in its caller.
    #[inline(never)]
    pub(crate) fn fork_unwatched(child: impl FnOnce()) -> io::Result<u32> {
        // SAFETY: fork has no memory-safety preconditions by itself; the child only runs `child`,
        // which ends with `_exit`, so it never returns into the parent's stack frames.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            child();
            // `child` is meant to end the process; never return into the parent's frames.
            exit_now(127);
        }
        Ok(pid as u32)
    }
}

/// In a spawned child: removes the marker and returns the bootstrap channel (our stdin), after
/// moving it to a close-on-exec descriptor and reopening stdin on the null device. `None` in a
/// process that was not spawned by us.
///
/// Call while the process is single-threaded (first thing in `main`): it edits the environment.
pub(crate) fn take_child_channel() -> io::Result<Option<Channel>> {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return Ok(None);
    }
    // SAFETY: documented precondition: called at the top of `main`, before other threads exist.
    unsafe { std::env::remove_var(CHILD_MARKER) };
    // SAFETY: fcntl on fd 0, which the parent set up as our channel.
    let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let channel = unsafe { OwnedFd::from_raw_fd(fd) };
    stdin_from_null()?;
    shm::adopt_tracker();
    Ok(Some(UnixStream::from(channel)))
}

/// True when this process was spawned as a child and `init()` has not yet taken the marker.
/// Once gone it stays gone (only a parent puts it in its child's environment), which is
/// remembered: every `start` asks, and reading the environment takes std's lock, a page of
/// statics written between two forks (issue 19).
pub(crate) fn child_marker_present() -> bool {
    static GONE: AtomicBool = AtomicBool::new(false);
    if GONE.load(Ordering::Relaxed) {
        return false;
    }
    let present = std::env::var_os(CHILD_MARKER).is_some();
    GONE.store(!present, Ordering::Relaxed);
    present
}

/// Sets a socket's `SO_RCVTIMEO` or `SO_SNDTIMEO` (`option`) to `timeout` (`None`: no bound):
/// a blocking read, write or (Unix sockets) connect that waits longer fails with `WouldBlock`.
pub(super) fn set_socket_timeout(
    fd: BorrowedFd<'_>,
    option: libc::c_int,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let t = timeout.unwrap_or_default();
    let tv = libc::timeval {
        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
        // A bound that would round to zero (no bound) is a microsecond.
        tv_usec: if timeout.is_some() && t < Duration::from_micros(1) {
            1
        } else {
            t.subsec_micros() as libc::suseconds_t
        },
    };
    // SAFETY: sets an option of our own socket from a timeval that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Acknowledges at once what `stream` (a TCP socket) has received (see `tcp_ack_now`): after
/// a handshake, so that a peer holding its next message for that acknowledgement (Nagle's
/// algorithm; CPython's clients do not set `TCP_NODELAY`) does not wait for a delayed one.
pub(crate) fn ack_now(stream: &Stream) {
    os::tcp_ack_now(stream.as_raw_fd());
}

/// Has the OS end this process with SIGKILL as soon as `channel` turns readable (its peer
/// wrote to it or closed it), or with `on` false stops that. True once armed; false where the
/// OS cannot do it (the caller then watches with a thread). While armed, a write on `channel`
/// that does not fit in its buffer must not be made (see `os::kill_on_readable`).
pub(crate) fn kill_on_readable(channel: &Channel, on: bool) -> io::Result<bool> {
    os::kill_on_readable(channel.as_raw_fd(), on)
}

crate::sys::forked_child_code! {
    /// Reopens stdin on the null device (Python does this in every child).
    ///
    /// Straight to libc rather than through `std::fs::File::open`: a forked child runs this, and
    /// each 64 KiB window of code a forked child runs costs it a page fault (issue 19). A forked
    /// child finds the descriptor [`prepare_null`] left it and only `dup2`s it (no path lookup).
    pub(crate) fn stdin_from_null() -> io::Result<()> {
        let kept = NULL.load(Ordering::Relaxed);
        // SAFETY: dup2 of a descriptor `prepare_null` checked just before the fork onto fd 0.
        if kept >= 0 && unsafe { libc::dup2(kept, 0) } == 0 {
            return Ok(());
        }
        // SAFETY: open with a NUL-terminated static path and plain flags.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: dup2 of the descriptor just opened onto fd 0.
        let failed = (unsafe { libc::dup2(fd, 0) } < 0).then(io::Error::last_os_error);
        // SAFETY: `fd` is ours (opened above) and nothing else refers to it.
        unsafe { libc::close(fd) };
        failed.map_or(Ok(()), Err)
    }
}

/// A descriptor of the null device this process keeps (close-on-exec) for the stdin of the
/// children it forks; -1 until the first fork.
static NULL: AtomicI32 = AtomicI32::new(-1);

/// Before a fork whose child will call [`stdin_from_null`] (the fork start method's; not the
/// fork server's, whose children hold only what a spawned child holds): makes sure [`NULL`] is an open descriptor of the null device (opening it the
/// first time, and again if something closed it and the number now names another file), so
/// that the child's [`stdin_from_null`] is one `dup2`.
pub(crate) fn prepare_null() {
    let kept = NULL.load(Ordering::Relaxed);
    if kept >= 0 && is_null_device(kept) {
        return;
    }
    // SAFETY: open with a NUL-terminated static path and plain flags.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd >= 0
        && NULL
            .compare_exchange(kept, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        // Another thread kept one first.
        // SAFETY: `fd` was opened above and is known to nobody else.
        unsafe { libc::close(fd) };
    }
}

/// Whether descriptor `fd` is open on the null device (a character device, 1:3 on Linux; its
/// numbers are compared with those of a fresh `stat` of `/dev/null` on other systems).
fn is_null_device(fd: i32) -> bool {
    // SAFETY: fstat/stat into zeroed stat buffers of ours.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFCHR {
            return false;
        }
        static RDEV: std::sync::OnceLock<Option<libc::dev_t>> = std::sync::OnceLock::new();
        let null = RDEV.get_or_init(|| {
            let mut n: libc::stat = std::mem::zeroed();
            (libc::stat(c"/dev/null".as_ptr(), &mut n) == 0).then_some(n.st_rdev)
        });
        *null == Some(st.st_rdev)
    }
}

/// A duplicate of this process's stdout, to give a child started with [`spawn`]`(.., true)`.
pub(crate) fn stdout_handle() -> io::Result<OwnedFd> {
    io::stdout().as_fd().try_clone_to_owned()
}

/// Makes `handle` this process's stdout (after [`spawn`]`(.., true)`, the parent's stdout).
pub(crate) fn restore_stdout(handle: OwnedFd) -> io::Result<()> {
    let _ = io::stdout().flush();
    // SAFETY: dup2 of a valid descriptor (we own it) onto fd 1.
    if unsafe { libc::dup2(handle.as_raw_fd(), 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until at least one handle is readable (data, end of file, or process exit), or until
/// the timeout (`None`: forever). Returns one flag per handle.
pub(crate) fn wait_readable(
    handles: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<super::Ready> {
    wait_for(handles, libc::POLLIN, timeout)
}

/// Waits until `stream` can take bytes (or its peer is gone, which the write then reports),
/// or until the timeout (`None`: forever); false if the timeout passed.
pub(crate) fn wait_writable(stream: &Stream, timeout: Option<Duration>) -> io::Result<bool> {
    Ok(wait_for(&[stream.as_fd()], libc::POLLOUT, timeout)?[0])
}

/// `poll(2)` for `events` on `handles` until one has news or the timeout passes.
fn wait_for(
    handles: &[BorrowedFd<'_>],
    events: libc::c_short,
    timeout: Option<Duration>,
) -> io::Result<super::Ready> {
    let deadline = timeout.and_then(super::deadline_after);
    let mut fds: smallvec::SmallVec<[libc::pollfd; 8]> = handles
        .iter()
        .map(|h| libc::pollfd {
            fd: h.as_raw_fd(),
            events,
            revents: 0,
        })
        .collect();
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that we never wake before the deadline.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 && deadline.is_some_and(|d| Instant::now() < d) {
            continue;
        }
        return Ok(fds.iter().map(|p| p.revents != 0).collect());
    }
}

/// Runs `f` when the process exits through `exit` or by returning from `main`.
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: registering a plain `extern "C" fn` with the C runtime.
    unsafe { libc::atexit(f) };
}

crate::sys::forked_child_code! {
    /// Ends the process at once with `code`: no exit handlers, no destructors (after `fork`).
    pub(crate) fn exit_now(code: i32) -> ! {
        // SAFETY: _exit never returns and has no preconditions.
        unsafe { libc::_exit(code) }
    }
}

/// The channel as a waitable handle. From its number, which std inlines: its `as_fd` for a
/// socket is a function in std's code, a window of it a forked child would fault in to
/// report (issue 19).
pub(crate) fn channel_handle(channel: &Channel) -> BorrowedFd<'_> {
    // SAFETY: the descriptor is `channel`'s, open while the borrow of `channel` lasts.
    unsafe { BorrowedFd::borrow_raw(channel.as_raw_fd()) }
}

/// The number of `channel`'s descriptor: what a child we fork lets go of with
/// [`release_inherited`].
pub(crate) fn channel_number(channel: &Channel) -> i32 {
    channel.as_raw_fd()
}

crate::sys::forked_child_code! {
    /// In a child just forked (one thread): closes the descriptor `handle` borrows from an object
    /// of the parent's that this child abandons (forgets: never uses nor drops it), so that the
    /// object's memory stays unwritten (each page a forked child writes is a copy: issue 19).
    pub(crate) fn close_abandoned(handle: WaitHandle<'_>) {
        // SAFETY: the caller's promise: nothing uses or closes this descriptor after this.
        unsafe { libc::close(handle.as_raw_fd()) };
    }
}

crate::sys::forked_child_code! {
    /// In a child just forked: lets go of its copy of descriptor `number` (-1: none), which an
    /// object of the parent's owns and this child never drops, by putting the null device kept
    /// for forks in its place (see [`prepare_null`]): the number stays taken, so that the object
    /// closing it later closes nothing else. Nothing if no null device is kept.
    pub(crate) fn release_inherited(number: i32) {
        let kept = NULL.load(Ordering::Relaxed);
        if number >= 0 && kept >= 0 && number != kept {
            os::dup_cloexec(kept, number);
        }
    }
}

/// Runs before `main` in every program that links this crate (an ELF `.init_array` or Mach-O
/// `__mod_init_func` entry). In a process spawned by us it arranges that, if `main` never calls
/// `init()`, the process fails at exit with a message naming the fix instead of exiting 0.
extern "C" fn check_spawned_child_at_load() {
    // A resource tracker started by `shm` runs from here and never returns.
    shm::tracker_at_load();
    // SAFETY: getenv with a NUL-terminated name, before `main`, when nothing else runs.
    if unsafe { libc::getenv(c"MULTIPROCESS_CHILD".as_ptr()) }.is_null() {
        return;
    }
    // SAFETY: registering a plain `extern "C" fn`.
    unsafe { libc::atexit(fail_if_init_never_ran) };
}

extern "C" fn fail_if_init_never_ran() {
    if !child_marker_present() {
        return; // init() took the marker: all is well.
    }
    let msg = format!("multiprocess: {}\n", crate::error::NO_INIT);
    let _ = io::stderr().write_all(msg.as_bytes());
    exit_now(1);
}

#[used]
#[cfg_attr(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    unsafe(link_section = ".init_array")
)]
#[cfg_attr(
    target_vendor = "apple",
    unsafe(link_section = "__DATA,__mod_init_func")
)]
static CHECK_SPAWNED_CHILD: extern "C" fn() = check_spawned_child_at_load;

/// The name of a signal, as Python prints it in a process's repr (`-SIGKILL`).
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGBUS => "SIGBUS",
        _ => return None,
    })
}

/// A byte stream for a `Connection`: a socket (duplex) or a pipe end (simplex), read and
/// written with `read(2)`/`write(2)`.
pub(crate) type Stream = std::fs::File;

/// Two connected streams: a socketpair when `duplex`, else a pipe as `(read end, write end)`.
/// Both close-on-exec.
/// Asks for 4 MiB socket buffers (the kernel caps the request at its `wmem_max`/`rmem_max`):
/// large messages then cross in a few steps instead of a wake-up per 200 KiB. Best effort.
fn enlarge_buffers(fd: BorrowedFd<'_>) {
    let size: libc::c_int = 4 << 20;
    for option in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a valid socket and a pointer to a live c_int of the given
        // length.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

pub(crate) fn stream_pair(duplex: bool) -> io::Result<(Stream, Stream)> {
    if duplex {
        let (a, b) = UnixStream::pair()?;
        for end in [&a, &b] {
            enlarge_buffers(end.as_fd());
        }
        Ok((
            Stream::from(OwnedFd::from(a)),
            Stream::from(OwnedFd::from(b)),
        ))
    } else {
        let (r, w) = io::pipe()?;
        Ok((
            Stream::from(OwnedFd::from(r)),
            Stream::from(OwnedFd::from(w)),
        ))
    }
}

/// A stream as a waitable handle.
pub(crate) fn stream_handle(stream: &Stream) -> BorrowedFd<'_> {
    stream.as_fd()
}

/// Wraps a connected socket or pipe descriptor as a duplex [`Connection`](crate::Connection)
/// (Python's `Connection(fd)`), e.g. to talk to a CPython process with `send_bytes`/`recv_bytes`.
impl From<OwnedFd> for crate::Connection {
    fn from(fd: OwnedFd) -> Self {
        crate::Connection::new(Stream::from(fd), true, true)
    }
}

/// An owned OS handle that can travel to another process inside a message.
pub(crate) type OwnedHandle = OwnedFd;

/// A new owned handle to `stream`'s descriptor (a `dup`).
pub(crate) fn stream_to_handle(stream: &Stream) -> io::Result<OwnedHandle> {
    stream.try_clone().map(OwnedFd::from)
}

/// A stream over a received handle.
pub(crate) fn stream_from_handle(handle: OwnedHandle) -> io::Result<Stream> {
    Ok(Stream::from(handle))
}

/// Asks the OS to back a large fresh buffer with huge pages where it can (best effort).
pub(crate) fn advise_huge_pages(ptr: *mut u8, len: usize) {
    os::advise_huge_pages(ptr, len)
}

/// Gives a public type std's descriptor traits (`AsFd`, `AsRawFd`), as std's own files, sockets
/// and pipes have them, so that any reactor (mio, tokio's `AsyncFd`) or `poll(2)` can wait on
/// it. `$handle` is a method of the type returning `Option<WaitHandle>` (`None` once closed:
/// `as_raw_fd` is then -1, and `as_fd` panics, as using a closed descriptor is the caller's
/// bug).
macro_rules! impl_os_handle {
    ($ty:ty, $handle:ident) => {
        /// Its descriptor (Unix): readable when it is ready. Panics if it was closed.
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                match self.$handle() {
                    Some(fd) => fd,
                    None => panic!("{}: the handle is closed", stringify!($ty)),
                }
            }
        }

        /// Its descriptor number (Unix); -1 once closed.
        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.$handle()
                    .map_or(-1, |fd| std::os::fd::AsRawFd::as_raw_fd(&fd))
            }
        }
    };
}
pub(crate) use impl_os_handle;

/// An OS handle's number as Python's `fileno()` gives it.
pub(crate) fn handle_number(h: WaitHandle<'_>) -> i64 {
    i64::from(h.as_raw_fd())
}
