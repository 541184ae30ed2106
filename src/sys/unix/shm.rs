//! Unix: named shared-memory segments (`shm_open`, `ftruncate`, `mmap`, `shm_unlink`) and the
//! resource tracker that unlinks the segments a process tree leaves behind.
//!
//! **The resource tracker** (Python's `multiprocessing.resource_tracker`). One helper process per
//! process tree, started on the first tracked create/attach. It reads one-line messages from a
//! pipe — CPython's `REGISTER:/psm_xxxxxxxx:shared_memory` and `UNREGISTER:...` — whose write end
//! every process of the tree holds. When every holder is gone the pipe reports end of file, and
//! the tracker unlinks the segments still registered, with CPython's warning, and exits.
//!
//! - The write end is inheritable (not close-on-exec) and its identity travels in
//!   `MULTIPROCESS_RESOURCE_TRACKER` (`fd,dev,ino,pid`): forked children share the parent's
//!   tracker through memory, spawned children (and anything else the process starts) inherit
//!   the descriptor and find it through the variable, checked against the descriptor's
//!   device/inode so that a stale value is never trusted.
//! - The tracker is this executable again, started with a marker in its environment. A
//!   constructor that runs before `main` (an `.init_array` / `__mod_init_func` entry, like the
//!   spawned-child check in `unix/mod.rs`) sees the marker and runs the tracker instead of the
//!   program, so it neither depends on `main` calling `init()` nor runs any of the program. It
//!   confirms it started on its stdout; a process that does not is killed and reported.
//! - Each message is one `write` of at most 512 bytes (`PIPE_BUF`'s POSIX minimum), so messages
//!   from many processes never interleave.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::ptr::NonNull;
use std::sync::MutexGuard;
use std::time::Duration;

use crate::sys::ShmMapping;
use crate::sys::fork_lock::ForkLock;

/// The prefix of generated segment names (CPython's `/psm_`, without the slash).
pub(crate) const SHM_NAME_PREFIX: &str = "psm_";

/// What a mapping keeps open while it lives: nothing (the descriptor may close at once).
pub(crate) type ShmKeep = ();

/// Unmaps a mapping made by [`map_whole`].
///
/// # Safety
/// `ptr`/`len` must describe such a mapping (or an empty one), owned by the caller and no
/// longer borrowed.
pub(crate) unsafe fn shm_unmap(ptr: NonNull<u8>, len: usize) {
    if len > 0 {
        // SAFETY: the caller's promise.
        unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
    }
}

/// The POSIX object name: `/` + `name`. The caller has rejected NUL bytes.
fn os_name(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}")).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn shm_open(name: &CString, flags: i32) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is NUL-terminated; mode 0600 as CPython's `_mode`.
        let fd = unsafe { libc::shm_open(name.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
        if fd >= 0 {
            // SAFETY: a fresh descriptor we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Maps `len` bytes of `fd` shared, readable and writable.
fn map_whole(fd: &OwnedFd, len: usize) -> io::Result<ShmMapping> {
    if len == 0 {
        return Ok(ShmMapping::new(NonNull::dangling(), 0, ()));
    }
    // SAFETY: a fresh shared mapping of a descriptor we hold; the kernel picks the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(ShmMapping::new(ptr, len, ()))
}

/// Creates segment `name` (it must not exist) of `size` bytes, zero-filled, and maps it. On
/// failure after the segment was created it is unlinked again.
pub(crate) fn shm_create(name: &str, size: usize) -> io::Result<ShmMapping> {
    let c = os_name(name)?;
    let len = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))?;
    let fd = shm_open(&c, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR)?;
    let mapped = (|| {
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        map_whole(&fd, size)
    })();
    if mapped.is_err() {
        // SAFETY: unlinking the name we just created.
        unsafe { libc::shm_unlink(c.as_ptr()) };
    }
    mapped
}

/// Opens existing segment `name` and maps all of it (its size from `fstat`; macOS rounds it up to
/// whole pages).
pub(crate) fn shm_attach(name: &str) -> io::Result<ShmMapping> {
    let c = os_name(name)?;
    let fd = shm_open(&c, libc::O_RDWR)?;
    // SAFETY: fstat into a zeroed buffer, on a descriptor we own.
    let size = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) < 0 {
            return Err(io::Error::last_os_error());
        }
        st.st_size
    };
    let size = usize::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative segment size"))?;
    map_whole(&fd, size)
}

/// Removes the name `name` (mappings stay valid until unmapped).
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let c = os_name(name)?;
    // SAFETY: `c` is NUL-terminated.
    if unsafe { libc::shm_unlink(c.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Resource tracker: the client side

/// Where a process finds its tree's tracker: `fd,dev,ino,pid`.
const TRACKER_ENV: &str = "MULTIPROCESS_RESOURCE_TRACKER";
/// Marks the tracker process itself (seen before `main`).
const TRACKER_MARKER: &str = "MULTIPROCESS_RESOURCE_TRACKER_PROCESS";
/// What a tracker writes on its stdout once it runs.
const READY: &[u8] = b"resource_tracker ready\n";
/// How long a new tracker has to say it runs.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest message: a single `write` of at most this many bytes to a pipe is atomic.
const MAX_MESSAGE: usize = 512;

/// This process's tracker: the write end of its pipe and its pid.
struct Link {
    fd: OwnedFd,
    pid: u32,
    /// The pid of the process that started it (0: inherited through a spawn). A forked child
    /// shares its parent's tracker, as in CPython, but neither stops nor reaps it.
    started_by: u32,
}

impl Link {
    /// Whether this process started it (so reaps it, if it dies, and stops it at its exit).
    fn ours(&self) -> bool {
        self.started_by == super::current_pid()
    }

    /// What a spawned child finds in `MULTIPROCESS_RESOURCE_TRACKER`: `fd,dev,ino,pid`.
    fn describe(&self) -> Option<String> {
        let (dev, ino) = identity(self.fd.as_raw_fd())?;
        Some(format!("{},{dev},{ino},{}", self.fd.as_raw_fd(), self.pid))
    }
}

/// Runs `spawn` (a start of a child we spawn) with the tracker's descriptor inheritable and
/// the environment entry that names it (`None` if this process has no tracker), and makes the
/// descriptor close-on-exec again after. The tracker's lock is held meanwhile, so no other
/// start of ours overlaps; a program another thread starts with `std::process::Command` in
/// that window would hold the descriptor too (the tracker then outlives the tree until that
/// program ends: nothing is lost). A `pre_exec` hook would avoid that window but makes std
/// `fork` the parent instead of `posix_spawn`: W11's spawn `Pool` of 256 took 5× the spawn
/// floor with it.
pub(crate) fn with_tracker_inherited<R>(
    spawn: impl FnOnce(Option<(&'static str, String)>) -> R,
) -> R {
    let guard = link();
    let Some((fd, env)) = guard
        .as_ref()
        .and_then(|l| Some((l.fd.as_raw_fd(), l.describe()?)))
    else {
        return spawn(None);
    };
    // SAFETY: fcntl on a descriptor this process owns (the tracker's, kept open by `guard`).
    let inheritable = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } >= 0;
    let out = spawn(inheritable.then_some((TRACKER_ENV, env)));
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    drop(guard);
    out
}

/// In a child we spawned, first thing in `main`: takes the tracker its parent handed over (the
/// descriptor becomes close-on-exec again, so that programs this child starts otherwise do not
/// hold it).
pub(crate) fn adopt_tracker() {
    let mut guard = link();
    if guard.is_none() {
        *guard = inherited();
    }
}

/// This process's link to its tracker. A forked child takes its parent's on first use (it
/// shares the tracker, as in CPython), or, if a thread of the parent held it at the fork (in
/// the middle of starting the tracker, say), starts without one and connects as a program of
/// its own would. Nothing is held across a fork (issue 19: the lock's word, written around
/// each fork, was a page the parent copied).
static LINK: ForkLock<Option<Link>> = ForkLock::per_process(|| None, Option::take);

fn link() -> MutexGuard<'static, Option<Link>> {
    LINK.get().lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes sure this process has its tree's tracker (inherited, or started now). Called before
/// the fork server starts, so that the server and the children it forks share this process's
/// tracker instead of each starting one of its own (CPython's forkserver does the same).
pub(crate) fn ensure_tracker() -> io::Result<()> {
    let mut guard = link();
    if guard.is_none() {
        *guard = Some(connect()?);
    }
    Ok(())
}

/// Registers segment `name` with the tracker (starting it if this tree has none).
pub(crate) fn shm_track(name: &str) -> io::Result<()> {
    tell_tracker("REGISTER", name)
}

/// Unregisters segment `name` (after an explicit unlink).
pub(crate) fn shm_untrack(name: &str) -> io::Result<()> {
    tell_tracker("UNREGISTER", name)
}

/// The pid of this process's tracker and the descriptor it holds for it, if it has one (for
/// leak checks, which must not count them).
pub(crate) fn tracker_process() -> Option<(u32, i32)> {
    link().as_ref().map(|l| (l.pid, l.fd.as_raw_fd()))
}

fn tell_tracker(command: &str, name: &str) -> io::Result<()> {
    let message = format!("{command}:/{name}:shared_memory\n");
    if message.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "name too long for the resource tracker",
        ));
    }
    let mut guard = link();
    if guard.is_none() {
        *guard = Some(connect()?);
    }
    let current = guard.as_ref().expect("set above");
    match write_message(&current.fd, message.as_bytes()) {
        Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
            // The tracker died (Python relaunches it with the same warning).
            warn(
                "resource_tracker: process died unexpectedly, relaunching.  Some resources might leak.",
            );
            if let Some(old) = guard.take() {
                if old.ours() {
                    // SAFETY: reaping our own dead child (WNOHANG: never blocks).
                    unsafe { libc::waitpid(old.pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
                }
            }
            let fresh = launch()?;
            let r = write_message(&fresh.fd, message.as_bytes());
            *guard = Some(fresh);
            r
        }
        r => r,
    }
}

/// The tracker this process inherited, or a new one.
fn connect() -> io::Result<Link> {
    if std::env::var_os(TRACKER_MARKER).is_some() {
        // Only reachable if the constructor below was not linked into this executable: refuse
        // rather than start trackers recursively.
        return Err(io::Error::other(
            "this process was started as a resource tracker but runs the program instead",
        ));
    }
    match inherited() {
        Some(l) => Ok(l),
        None => launch(),
    }
}

/// The tracker named by `MULTIPROCESS_RESOURCE_TRACKER`, if its descriptor is really here.
fn inherited() -> Option<Link> {
    let value = std::env::var(TRACKER_ENV).ok()?;
    let mut parts = value.split(',').map(str::parse::<u64>);
    let (Some(Ok(fd)), Some(Ok(dev)), Some(Ok(ino)), Some(Ok(pid))) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let fd = RawFd::try_from(fd).ok()?;
    let pid = u32::try_from(pid).ok()?;
    if fd < 3 || identity(fd)? != (dev, ino) {
        return None;
    }
    // SAFETY: fcntl only queries a descriptor number.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || flags & libc::O_ACCMODE != libc::O_WRONLY {
        return None;
    }
    // SAFETY: the descriptor is open, is the tracker's pipe (device and inode match), and was
    // inherited for exactly this use; from now on this process owns it (for its lifetime), and
    // keeps it from programs it starts other than through `spawn`.
    let fd = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        OwnedFd::from_raw_fd(fd)
    };
    Some(Link {
        fd,
        pid,
        started_by: 0,
    })
}

/// (device, inode) of an open pipe descriptor.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat into a zeroed buffer; a closed descriptor makes it fail harmlessly.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) < 0 {
            return None;
        }
        st
    };
    ((st.st_mode & libc::S_IFMT) == libc::S_IFIFO).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// Starts a tracker: this executable again, with the marker, the pipe's read end as stdin and a
/// readiness pipe as stdout.
fn launch() -> io::Result<Link> {
    // Keep the constructor that turns the new process into a tracker in every executable that
    // can start one.
    std::hint::black_box(&super::CHECK_SPAWNED_CHILD);
    let (read, write) = io::pipe()?; // both close-on-exec: the tracker must not hold `write`
    let (mut ready_read, ready_write) = io::pipe()?;
    let mut cmd = Command::new(super::os::exe_path()?);
    cmd.env(TRACKER_MARKER, "1")
        .env_remove(TRACKER_ENV)
        .stdin(Stdio::from(OwnedFd::from(read)))
        .stdout(Stdio::from(OwnedFd::from(ready_write)))
        .stderr(Stdio::inherit());
    let child = cmd.spawn()?;
    drop(cmd); // our copies of the tracker's ends
    let pid = child.id();
    let fail = |why: String| {
        // SAFETY: killing and reaping the child we just started.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
        io::Error::other(format!(
            "the resource tracker (pid {pid}) did not start: {why}"
        ))
    };
    let mut got = Vec::new();
    while got.len() < READY.len() {
        let fd = std::os::fd::AsFd::as_fd(&ready_read);
        match super::wait_readable(&[fd], Some(START_TIMEOUT)) {
            Ok(r) if r[0] => {}
            Ok(_) => return Err(fail("no answer within 20 s".into())),
            Err(e) => return Err(fail(e.to_string())),
        }
        let mut buf = [0u8; 64];
        match ready_read.read(&mut buf) {
            Ok(0) => return Err(fail("it exited at once".into())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    if got != READY {
        return Err(fail(
            "it runs the program instead (is this a multiprocess program?)".into(),
        ));
    }
    // The write end stays close-on-exec: forked children keep it, spawned ones are handed it
    // by `spawn` (see `with_tracker_inherited`), and no other program holds it.
    identity(write.as_raw_fd()).ok_or_else(|| fail("fstat failed".into()))?;
    Ok(Link {
        fd: OwnedFd::from(write),
        pid,
        started_by: super::current_pid(),
    })
}

/// How long a program's exit waits for the tracker it started to clean up and end.
const STOP_WAIT: Duration = Duration::from_secs(2);

crate::sys::forked_child_code! {
    /// At the exit of a program that started its tracker (the last step of the exit policy, after
    /// its children are joined): lets go of the pipe and waits (at most [`STOP_WAIT`]) for the
    /// tracker to unlink what leaked and end, then reaps it, so that no tracker outlives its
    /// program. (A descendant still holding the pipe keeps it running: it then ends on its own
    /// when they do.) Does nothing in a process that did not start its tracker.
    pub(crate) fn stop_tracker() {
        // This process's link only (a forked child that never used its parent's makes none), and
        // `try_lock`: a lock held by a thread stopped in the middle must not stop the exit.
        let Some(Ok(mut guard)) = LINK.mine().map(|l| l.try_lock()) else {
            return;
        };
        // A forked child leaves its parent's tracker alone (and its descriptor to its exit).
        let Some(current) = guard.take_if(|l| l.ours()) else {
            return;
        };
        let pid = current.pid as libc::pid_t;
        drop(current);
        let deadline = std::time::Instant::now() + STOP_WAIT;
        loop {
            // SAFETY: reaping our own child without blocking.
            let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            if r != 0 || std::time::Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Writes one message with a single `write`, with SIGPIPE blocked on this thread so that a dead
/// tracker is an `EPIPE` error rather than the end of the process.
fn write_message(fd: &OwnedFd, message: &[u8]) -> io::Result<()> {
    // SAFETY: signal-set manipulation on local sets; pthread_sigmask affects only this thread and
    // the old mask is restored before returning.
    unsafe {
        let mut pipe_only: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe_only);
        libc::sigaddset(&mut pipe_only, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_only, &mut old);
        let result = loop {
            let n = libc::write(fd.as_raw_fd(), message.as_ptr().cast(), message.len());
            if n >= 0 {
                break if n as usize == message.len() {
                    Ok(())
                } else {
                    Err(io::Error::other("short write to the resource tracker"))
                };
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                break Err(e);
            }
        };
        if result.is_err() && libc::sigismember(&old, libc::SIGPIPE) == 0 {
            // Consume the SIGPIPE our write raised, if it is pending, before unblocking.
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            if libc::sigismember(&pending, libc::SIGPIPE) == 1 {
                let mut sig = 0;
                libc::sigwait(&pipe_only, &mut sig);
            }
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

fn warn(line: &str) {
    let text = format!("{line}\n");
    // SAFETY: write(2) of a live buffer to stderr; failure is ignored.
    unsafe { libc::write(2, text.as_ptr().cast(), text.len()) };
}

// ---------------------------------------------------------------------------------------------
// Resource tracker: the tracker process

/// The segments registered and not yet unregistered, fed with the raw bytes of the pipe.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pending: Vec<u8>,
    names: BTreeSet<Vec<u8>>,
}

impl Ledger {
    /// Takes in bytes read from the pipe; whole lines are applied, a partial one is kept.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.apply(&line[..end]);
        }
    }

    /// One message: `COMMAND:name:rtype`, where the name may itself contain `:`. Other
    /// resource types and malformed lines are ignored.
    fn apply(&mut self, line: &[u8]) {
        let Some(first) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let Some(last) = line.iter().rposition(|&b| b == b':') else {
            return;
        };
        if last <= first || &line[last + 1..] != b"shared_memory" {
            return;
        }
        let name = line[first + 1..last].to_vec();
        match &line[..first] {
            b"REGISTER" => {
                self.names.insert(name);
            }
            b"UNREGISTER" => {
                self.names.remove(&name);
            }
            _ => {}
        }
    }

    /// The names still registered (POSIX names, with the leading slash).
    pub(crate) fn leaked(&self) -> Vec<Vec<u8>> {
        self.names.iter().cloned().collect()
    }
}

/// Runs before `main` in every program linking this crate: in a process started as a tracker,
/// runs the tracker and exits without ever reaching `main`.
pub(super) fn tracker_at_load() {
    // SAFETY: getenv with a NUL-terminated name, before `main`, when nothing else runs.
    if unsafe { libc::getenv(c"MULTIPROCESS_RESOURCE_TRACKER_PROCESS".as_ptr()) }.is_null() {
        return;
    }
    serve()
}

/// The tracker: single-threaded, before `main`, using only plain system calls.
fn serve() -> ! {
    // SAFETY: process-wide setup of a process that runs nothing else: ignore SIGINT and SIGTERM
    // (as CPython's tracker does), close every inherited descriptor but 0-2, confirm start on
    // stdout, then point stdout at the null device.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        close_from(3);
        libc::write(1, READY.as_ptr().cast(), READY.len());
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    let mut ledger = Ledger::default();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: read into a live buffer from our stdin, the pipe.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            ledger.feed(&buf[..n as usize]);
        } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let leaked = ledger.leaked();
    if !leaked.is_empty() {
        warn(&format!(
            "resource_tracker: There appear to be {} leaked shared_memory objects to clean up at shutdown",
            leaked.len()
        ));
    }
    for name in leaked {
        let Ok(c) = CString::new(name.clone()) else {
            continue;
        };
        // SAFETY: `c` is NUL-terminated.
        if unsafe { libc::shm_unlink(c.as_ptr()) } < 0 {
            // One line per name that could not be unlinked, already gone included, as CPython's
            // tracker warns.
            let e = io::Error::last_os_error();
            warn(&format!(
                "resource_tracker: '{}': {e}",
                String::from_utf8_lossy(&name)
            ));
        }
    }
    super::exit_now(0)
}

/// Closes every descriptor from `low` up.
///
/// # Safety
/// Nothing in the process may use those descriptors afterwards.
unsafe fn close_from(low: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: close_range(low, ~0, 0) closes descriptors only; the caller vouches for their use.
    if unsafe { libc::syscall(libc::SYS_close_range, low as u32, u32::MAX, 0u32) } == 0 {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max <= 0 {
        1024
    } else {
        max.min(65536) as i32
    };
    for fd in low..max {
        // SAFETY: closing a descriptor number; unused numbers fail harmlessly.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    #[test]
    fn ledger_applies_whole_lines() {
        let mut l = Ledger::default();
        l.feed(b"REGISTER:/psm_1:shared_memory\nREGISTER:/a:b:shared_memory\nREGI");
        l.feed(b"STER:/psm_2:shared_memory\nUNREGISTER:/psm_1:shared_memory\n");
        l.feed(b"REGISTER:/x:semaphore\nGARBAGE\nREGISTER:/y:shared_mem");
        assert_eq!(l.leaked(), vec![b"/a:b".to_vec(), b"/psm_2".to_vec()]);
    }

    #[test]
    fn ledger_register_twice_unregister_once() {
        let mut l = Ledger::default();
        l.feed(b"REGISTER:/s:shared_memory\nREGISTER:/s:shared_memory\n");
        l.feed(b"UNREGISTER:/s:shared_memory\n");
        assert!(l.leaked().is_empty());
    }
}
