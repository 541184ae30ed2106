//! The only place with OS-specific code. Public modules call the platform-neutral surface
//! re-exported here; each submodule implements it for one family of systems:
//!
//! - [`address`] (every OS): the names of endpoints (`connection::Address`), platform-neutral.
//! - [`fork_lock`] (every OS): a lock a forked child can start afresh.
//! - `mapping` (every OS): a shared-memory segment mapped here (each platform makes it).
//! - [`image`] (every OS): code addresses that mean the same thing in every process running this
//!   executable, and the executable's identity.
//! - `unix`: spawn by re-executing the program, fork, process handles, waits, signals.
//! - `linux` / `macos`: what differs between Unixes (process sentinels, the main image, build ids).
//! - `windows`: spawn with `CreateProcessW` and an explicit handle list, process handles as
//!   sentinels, overlapped named pipes as channels, the main module from the loader.
//! - `stub`: every other target (mio's `sys/shell`): the same names, and every operation fails
//!   at run time with an `io::Error` of kind `Unsupported` naming the supported systems (the
//!   public calls return it as `Error::Io`).
//!
//! # What a platform provides
//!
//! `unix`, `windows` and `stub` each define every name below, with the same signatures; the
//! crate uses nothing else of theirs (`pub(crate) use unix::*` / `windows::*` / `stub::*`
//! re-export exactly these, and helpers stay private). A new platform implements this list; an
//! operation it cannot do returns an `io::Error` of kind `Unsupported` that says so (as Windows
//! does for `fork`). `stub/mod.rs` is the shortest statement of the list with its signatures:
//! start a new platform from a copy of it.
//!
//! Which one is built: `unix` with `linux` or `macos`, `windows`, or else `stub`. Building with
//! `MULTIPROCESS_STUB_PLATFORM=1` in the environment (`build.rs` turns on the cfg
//! `multiprocess_stub_platform`) takes the stub on any target, so that `cargo check` on Linux
//! proves it still provides every name (.ci/run also type-checks a real other target,
//! `x86_64-unknown-freebsd`).
//!
//! - **Processes.** `ProcHandle` (a child: pid, wait with or without a deadline, signal,
//!   sentinel, opened on first use where the OS can watch a child that has ended, and
//!   `sentinel_if_open`; `served`/`is_served` for a fork server's child), `spawn` (this executable again, with a
//!   channel; with `QUIET_SPAWN`, its stdout silenced until it calls `restore_stdout` with
//!   what `stdout_handle` gave), `fork` (Unix; `fork_unwatched` and `Reaper` for the fork
//!   server, which reaps on `SIGCHLD` and tells each exit status through a `status_pipe` with
//!   `write_status`), `pid`, `current_pid`, `process_alive`,
//!   `exit_now`, `at_exit`, `signal_name`, `SIGTERM`, `SIGKILL`, `stdin_from_null`, `prepare_null`,
//!   `ended_child` (which child ended, if the OS can say: [`Ended`]).
//! - **A child's start.** `Channel` (with `try_clone`, and `Read`/`Write` on `&Channel`) and
//!   `channel_pair`, `channel_handle`, `channel_into_handle`/`channel_from_handle`,
//!   `take_child_channel`, `child_marker_present`, `close_abandoned`, `read_available`,
//!   `channel_number`/`release_inherited` (a forked child lets go of its copies of the
//!   parent's channels); the handles
//!   a child gets at its start: `Transfer`, `transfer_handles` (`HANDLES_NEED_CHILD`: before
//!   the child exists, or only after), `send_transfer`, `recv_handles`.
//! - **Connections.** `Stream`, `stream_pair`, `stream_handle`,
//!   `stream_to_handle`/`stream_from_handle`, `ack_now`, `recv_some`; handles
//!   with a message: `stream_carries_handles`, `send_with_handles` (message and handles in one
//!   go), `send_handles_on`, `claim_handles`,
//!   `handles_frame_len`; listeners: `SocketListener`, `listen`, `connect` (with a deadline:
//!   `time_left`),
//!   `default_listener_address`.
//! - **Waiting.** `OwnedHandle` (with `try_clone`), `WaitHandle`/`OwnedWaitHandle`,
//!   `borrow_handle`, `socket_wait_handle` (std's sockets, for `WaitSocket`), `handle_number`
//!   (Python's `fileno()`), `impl_os_handle!` (std's handle traits for a public type),
//!   `wait_readable` (any of several handles, with a deadline; `wait_readable_soon`, defined
//!   here for every platform, looks for [`LOOK`] first); with
//!   the `tokio` feature `readable_async`, `writable_async`, `recv_now`, `send_now`,
//!   `acceptable_async` and `SocketListener::accept_now` (a listener's async accept), and a
//!   queue's wake-up channel: `wakeup_pair`, `wakeup_signal`, `Watch`.
//! - **Shared memory.** `Region` (anonymous shared words that processes wait and wake on),
//!   named segments (`shm_create`, `shm_attach`, `shm_unlink`, `SHM_NAME_PREFIX`, `ShmKeep`,
//!   `shm_unmap`) and their resource tracker (`ensure_tracker`, `tracker_process`,
//!   `stop_tracker`, `shm_track`, `shm_untrack`; Unix also `with_tracker_inherited`,
//!   `adopt_tracker`: only children we spawn share it); the OS handles a queue's values carry
//!   (`HANDLES_PER_DATAGRAM`, `handle_channel`, `send_handles_datagram`,
//!   `recv_handles_datagram`).
//! - **Memory and copies.** `advise_huge_pages`, `copy_to_process`,
//!   `copy_from_process`, `CROSS_PROCESS_COPY`.
//! - From `linux`/`macos` (through `os`): the executable's path, its image and build id, process
//!   sentinels and liveness. What `image` asks of every platform's `os`: `in_main_image`,
//!   `build_id`.

/// What the OS says of this process's children that have ended and wait to be reaped
/// (`ended_child`). Only Linux names them; elsewhere it is always `Unknown`.
#[cfg_attr(
    any(not(target_os = "linux"), multiprocess_stub_platform),
    allow(dead_code)
)]
pub(crate) enum Ended {
    /// None has (the fork server's children are not ours: see `ProcHandle::is_served`).
    None,
    /// This one has (there may be more).
    Pid(u32),
    /// The OS cannot tell without looking at each child.
    Unknown,
}

/// Puts the function it wraps in a section of its own with the others a forked child runs from
/// its fork to its exit, on Linux (elsewhere it is left where the compiler puts it). A forked
/// child maps its parent's code as it runs it, a page fault for each 64 KiB window of code
/// (and 16 pages mapped, unmapped again at its exit): spread over the crate's code, the path
/// cost a child five windows of ours, together one (two when the section, some 24 KiB, happens
/// to cross a window's edge; issue 19, W1). A section's name is an `unsafe` attribute, which
/// the crate allows only under `sys`: hence this wrapper, which allows it on the function (a
/// `tests/structure.rs` test keeps `unsafe` blocks out of the bodies it wraps outside `sys`).
macro_rules! forked_child_code {
    ($($item:tt)*) => {
        $crate::sys::in_section!("multiprocess_forked_child", $($item)*);
    };
}
pub(crate) use forked_child_code;

/// As [`forked_child_code`] for the statics a forked child writes (its process id, identity,
/// exit hooks): together in a section of their own on Linux, one page copied in the child
/// rather than one per page the linker spread them over.
macro_rules! forked_child_data {
    ($($item:tt)*) => {
        $crate::sys::in_section!("multiprocess_forked_child_data", $($item)*);
    };
}
pub(crate) use forked_child_data;

/// The item in the section `$name` on Linux (see [`forked_child_code`]).
macro_rules! in_section {
    ($name:literal, $($item:tt)*) => {
        #[allow(unsafe_code)]
        #[cfg_attr(
            all(target_os = "linux", not(multiprocess_stub_platform)),
            unsafe(link_section = $name)
        )]
        $($item)*
    };
}
pub(crate) use in_section;

pub(crate) mod address;
pub(crate) mod fork_lock;
pub(crate) mod image;
mod mapping;
#[cfg(all(feature = "mpi", unix))]
pub(crate) mod mpi;

pub use address::Address;
pub(crate) use mapping::ShmMapping;

// `--cfg multiprocess_stub_platform` selects the stub on any target (see the docs above).
#[cfg(all(
    any(target_os = "linux", target_os = "macos"),
    not(multiprocess_stub_platform)
))]
mod unix;
#[cfg(all(
    any(target_os = "linux", target_os = "macos"),
    not(multiprocess_stub_platform)
))]
pub(crate) use unix::*;

#[cfg(all(target_os = "linux", not(multiprocess_stub_platform)))]
mod linux;
#[cfg(all(target_os = "linux", not(multiprocess_stub_platform)))]
use linux as os;

#[cfg(all(target_os = "macos", not(multiprocess_stub_platform)))]
mod macos;
#[cfg(all(target_os = "macos", not(multiprocess_stub_platform)))]
use macos as os;

#[cfg(all(windows, not(multiprocess_stub_platform)))]
mod windows;
#[cfg(all(windows, not(multiprocess_stub_platform)))]
use windows as os;
#[cfg(all(windows, not(multiprocess_stub_platform)))]
pub(crate) use windows::*;

#[cfg(any(
    multiprocess_stub_platform,
    not(any(target_os = "linux", target_os = "macos", windows))
))]
mod stub;
#[cfg(any(
    multiprocess_stub_platform,
    not(any(target_os = "linux", target_os = "macos", windows))
))]
use stub as os;
#[cfg(any(
    multiprocess_stub_platform,
    not(any(target_os = "linux", target_os = "macos", windows))
))]
pub(crate) use stub::*;

/// The pid of a fork server's child, which the server sends once it has forked: a start does
/// not wait for it (a fan-out's starts follow each other instead of each waiting for the
/// server's fork, issue 19). `cell` holds 0 until it comes and [`ServedPid::NEVER`] if it
/// never will; `wait` returns once it holds either (the fork server reads its replies, in the
/// order of the requests: it answers each right after its fork, or has ended).
#[derive(Debug)]
// (Read by the Unix `ProcHandle` only: elsewhere there is no fork server.)
#[cfg_attr(
    not(all(
        any(target_os = "linux", target_os = "macos"),
        not(multiprocess_stub_platform)
    )),
    allow(dead_code)
)]
pub(crate) struct ServedPid {
    pub(crate) cell: std::sync::Arc<std::sync::atomic::AtomicU32>,
    pub(crate) wait: fn(&std::sync::atomic::AtomicU32),
}

impl ServedPid {
    /// What `cell` holds when the server will never send the pid (it ended, or could not fork).
    pub(crate) const NEVER: u32 = u32::MAX;

    /// The pid, once the server has sent it (waiting for it if need be); `None` if it never
    /// will.
    #[cfg_attr(
        not(all(
            any(target_os = "linux", target_os = "macos"),
            not(multiprocess_stub_platform)
        )),
        allow(dead_code)
    )]
    pub(crate) fn get(&self) -> Option<u32> {
        use std::sync::atomic::Ordering;
        if self.cell.load(Ordering::Acquire) == 0 {
            (self.wait)(&self.cell);
        }
        match self.cell.load(Ordering::Acquire) {
            0 | Self::NEVER => None,
            pid => Some(pid),
        }
    }
}

/// How long a waiter that expects its peer within microseconds (a child's report or exit, the
/// fork server's reply or next request) keeps looking, yielding the CPU between looks, before
/// it sleeps until woken. Sleeping and being woken costs more than that in a VM (a halted
/// virtual CPU to wake), and yielding lets a peer that shares the CPU run at once. Issue 19,
/// alternated runs: W1 fork start + join 242 → 220 µs (the join's look), forkserver 277 → 205
/// µs and its W11 fan-out 61.0 → 50.5 ms (the fork server's and its client's looks).
pub(crate) const LOOK: std::time::Duration = std::time::Duration::from_micros(100);

/// Which of the handles a wait was given are ready, one flag per handle: on the stack for a
/// few (a join waits on two; every allocation between two forks is a heap page the next fork
/// shares, issue 19).
pub(crate) type Ready = smallvec::SmallVec<[bool; 8]>;

/// A yield that took longer than this gave the CPU to another task: the peer, most likely,
/// which then shares our CPU (a yield that finds nobody waiting returns in a microsecond or
/// two).
const YIELDED: std::time::Duration = std::time::Duration::from_micros(15);

/// [`wait_readable`], after looking for up to [`LOOK`] (never past `timeout`), yielding the CPU
/// between looks. A yield that gave the CPU away ends the looks after one more: the peer runs on
/// our CPU, and looking again would take the CPU back from it (a child exiting here was
/// handed back and forth), where sleeping lets it finish. Issue 19, W1 fork start + join over
/// raw fork, 10 alternated runs each: 35.5 → 30.4 µs pinned to one CPU, 16.6 → 12.2 µs
/// unpinned (where always sleeping instead cost 47.3).
pub(crate) fn wait_readable_soon(
    handles: &[WaitHandle<'_>],
    timeout: Option<std::time::Duration>,
) -> std::io::Result<Ready> {
    let start = std::time::Instant::now();
    let mut gave_away = false;
    loop {
        let ready = wait_readable(handles, Some(std::time::Duration::ZERO))?;
        let waited = start.elapsed();
        if ready.contains(&true) || timeout.is_some_and(|t| waited >= t) {
            return Ok(ready);
        }
        if waited >= LOOK || gave_away {
            break;
        }
        std::thread::yield_now();
        gave_away = start.elapsed() - waited >= YIELDED;
    }
    wait_readable(handles, timeout.map(|t| t.saturating_sub(start.elapsed())))
}

/// A socket of std's that `wait()` can wait on: ready when reading would not block (data, end
/// of file, or for a listener a connection to accept); each platform's `socket_wait_handle`
/// says how. (`pub` because the crate's blanket `Waitable` impl names it; it is not reachable
/// from outside the crate.)
pub trait WaitSocket {
    /// The socket as a waitable handle.
    fn socket_handle(&self) -> std::io::Result<WaitHandle<'_>>;
}

/// Implements [`WaitSocket`] for std's socket types.
macro_rules! wait_socket {
    ($($ty:ty),*) => {$(
        impl WaitSocket for $ty {
            fn socket_handle(&self) -> std::io::Result<WaitHandle<'_>> {
                socket_wait_handle(self)
            }
        }
    )*};
}
wait_socket!(
    std::net::TcpStream,
    std::net::TcpListener,
    std::net::UdpSocket
);
#[cfg(all(
    any(target_os = "linux", target_os = "macos"),
    not(multiprocess_stub_platform)
))]
wait_socket!(
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixListener,
    std::os::unix::net::UnixDatagram
);

/// A shared region seen as 32-bit atomic words, and how it travels inside messages.
impl Region {
    /// The region as atomic words (its length rounded down to whole words).
    pub(crate) fn words(&self) -> &[std::sync::atomic::AtomicU32] {
        // SAFETY: `base()` is page-aligned and `len()` bytes stay mapped while `self` lives; an
        // `AtomicU32` has no invalid bit patterns, and through this view the memory is only
        // accessed atomically (another process can only change it atomically or through
        // caller-synchronised copies).
        unsafe {
            std::slice::from_raw_parts(
                self.base() as *const std::sync::atomic::AtomicU32,
                self.len() / 4,
            )
        }
    }
}

/// The instant `timeout` from now; `None` (no deadline: wait as long as it takes) when that
/// lies beyond what the clock can represent, as for `Duration::MAX`, a caller's way of saying
/// "for ever". Every timeout a caller gives becomes a deadline here, never by `Instant +
/// Duration`, which panics on overflow.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(timeout)
}

/// What is left until `deadline` (a connect's), as a timeout; `TimedOut` if nothing is.
#[cfg_attr(
    any(
        not(any(target_os = "linux", target_os = "macos", windows)),
        multiprocess_stub_platform
    ),
    allow(dead_code)
)]
pub(crate) fn time_left(deadline: std::time::Instant) -> std::io::Result<std::time::Duration> {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the deadline to connect passed",
        ));
    }
    Ok(left)
}

/// Locks a mutex, ignoring poisoning: the library's invariants hold between statements, and a
/// panic elsewhere (a user's callback) must not make every later call fail. The one helper the
/// whole crate uses.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A zero-filled buffer of `len` bytes, or `None` if memory runs out. Unlike `vec![0; len]`
/// it does not abort on failure, and unlike reserving then resizing it writes nothing: large
/// buffers come as fresh pages the OS zeroes when first touched.
pub(crate) fn zeroed_buffer(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` was allocated by the global allocator with `layout` (align 1, `len` bytes,
    // which is what a `Vec<u8>` of capacity `len` uses), and all `len` bytes are initialised
    // (zero).
    Some(unsafe { Vec::from_raw_parts(ptr, len, len) })
}
