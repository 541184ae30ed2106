//! macOS: kqueue sentinels (`EVFILT_PROC`/`NOTE_EXIT`), the executable's path, and the main
//! image from dyld. Type-checked and linted in CI (`aarch64-apple-darwin`, `x86_64-apple-darwin`);
//! not run, since no macOS runner is available.

use std::ffi::c_void;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

/// Whether a child's sentinel can wait to be opened until someone waits: not with a kqueue,
/// whose `NOTE_EXIT` is not documented to fire for a process that has already ended.
pub(super) const SENTINEL_ON_DEMAND: bool = false;

/// A kqueue that becomes readable when child `pid` exits.
pub(super) fn open_sentinel(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: kqueue() returns a new descriptor or -1.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `kq` is a fresh descriptor we own.
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    // SAFETY: FD_CLOEXEC on our own descriptor.
    unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&kq),
            libc::F_SETFD,
            libc::FD_CLOEXEC,
        )
    };
    let ev = libc::kevent {
        ident: pid as libc::uintptr_t,
        filter: libc::EVFILT_PROC,
        flags: libc::EV_ADD | libc::EV_ONESHOT,
        fflags: libc::NOTE_EXIT,
        data: 0,
        udata: std::ptr::null_mut(),
    };
    // SAFETY: registers one event; no output events requested.
    let r = unsafe {
        libc::kevent(
            std::os::fd::AsRawFd::as_raw_fd(&kq),
            &ev,
            1,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(kq)
}

/// Makes descriptor `to` a close-on-exec copy of `from` (closing what `to` was): `dup2`, then
/// the flag (macOS has no `dup3`).
pub(super) fn dup_cloexec(from: std::os::fd::RawFd, to: std::os::fd::RawFd) {
    // SAFETY: dup2 and fcntl on two descriptor numbers the caller owns.
    unsafe {
        if libc::dup2(from, to) == to {
            libc::fcntl(to, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Not looked for: macOS has no `close_range`, so [`close_from`] would not use it.
pub(super) fn highest_open_fd() -> Option<std::os::fd::RawFd> {
    None
}

/// Always false: macOS has no `close_range` (its descriptors are closed one by one).
pub(super) fn close_from(_first: std::os::fd::RawFd) -> bool {
    false
}

/// Always "cannot tell, look at each child": macOS's `waitid` has been unreliable with
/// `WNOHANG` (CPython leaves `os.waitid` out there), and this path is not run in CI.
pub(super) fn ended_child() -> super::Ended {
    super::Ended::Unknown
}

/// The executable to re-run.
pub(super) fn exe_path() -> io::Result<PathBuf> {
    std::env::current_exe()
}

unsafe extern "C" {
    /// dyld's header of loaded image `index` (`<mach-o/dyld.h>`); index 0 is the main
    /// executable. Declared here because the `libc` crate deprecates its binding in favour of
    /// `mach2`, a dependency we do not need for one function.
    fn _dyld_get_image_header(index: u32) -> *const libc::c_void;
}

/// True if `addr` lies in the main executable's image: `dladdr` names the image containing it,
/// whose base must be dyld's image 0.
pub(super) fn in_main_image(addr: usize) -> bool {
    // SAFETY: Dl_info is plain old data (null pointers and zeros are valid).
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only writes into `info`.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0 {
        return false;
    }
    // SAFETY: image 0 always exists (the main executable); the call only reads dyld's list.
    let main = unsafe { _dyld_get_image_header(0) } as usize;
    main != 0 && info.dli_fbase as usize == main
}

/// The Mach-O UUID would go here; the layout fingerprint covers us until then.
pub(super) fn build_id() -> Option<Vec<u8>> {
    None
}

/// macOS has no abstract socket namespace.
pub(super) fn abstract_address(_name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// A new, empty shared-memory object with no name: `shm_open` under a random name, unlinked at
/// once (macOS has no `memfd_create`).
pub(super) fn anonymous_memory() -> io::Result<OwnedFd> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let name = format!("/mp-{:016x}\0", u64::from_le_bytes(random));
    // SAFETY: `name` is NUL-terminated; flags and mode are valid.
    let fd = unsafe {
        libc::shm_open(
            name.as_ptr().cast(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by shm_open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `name` is NUL-terminated.
    unsafe { libc::shm_unlink(name.as_ptr().cast()) };
    Ok(fd)
}

unsafe extern "C" {
    // libSystem's address wait (the mechanism under C++20 `atomic::wait`), shared flavour.
    fn __ulock_wait(operation: u32, addr: *mut c_void, value: u64, timeout_us: u32) -> i32;
    fn __ulock_wake(operation: u32, addr: *mut c_void, wake_value: u64) -> i32;
}

const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
const ULF_WAKE_ALL: u32 = 0x100;
const ULF_NO_ERRNO: u32 = 0x0100_0000;

/// Sleeps while `*word == expected`, at most `timeout`; `false` only when the timeout ran out.
pub(super) fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) -> bool {
    // 0 means forever; cap long waits (callers loop with their own deadline).
    let us = timeout.map_or(0, |d| d.as_micros().clamp(1, u32::MAX as u128) as u32);
    // SAFETY: `word` is a valid, aligned 4-byte atomic for the duration of the call.
    let r = unsafe {
        __ulock_wait(
            UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO,
            word.as_ptr().cast(),
            expected as u64,
            us,
        )
    };
    r != -libc::ETIMEDOUT
}

/// Wakes one (`n == 1`) or all processes sleeping in [`futex_wait`] on `word`.
pub(super) fn futex_wake(word: &std::sync::atomic::AtomicU32, n: u32) {
    let all = if n > 1 { ULF_WAKE_ALL } else { 0 };
    // SAFETY: the call only uses the address to find sleepers.
    unsafe {
        __ulock_wake(
            UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | all,
            word.as_ptr().cast(),
            0,
        )
    };
}

/// macOS has no `F_SETSIG`: a socket's events can only raise SIGIO, which a process may
/// handle or ignore; the caller watches with a thread instead.
pub(super) fn kill_on_readable(_fd: std::os::fd::RawFd, _on: bool) -> io::Result<bool> {
    Ok(false)
}

/// Whether process `pid` exists (a zombie counts as alive until reaped).
pub(super) fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// No transparent huge pages to ask for on macOS.
pub(super) fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}

/// macOS has no unprivileged way to copy memory between processes (`mach_vm_read` needs the
/// other task's port): large messages stay in the byte stream.
pub(super) const CROSS_PROCESS_COPY: bool = false;

/// Unsupported on macOS (see [`CROSS_PROCESS_COPY`]).
pub(super) fn copy_from_process(_pid: u32, _from: usize, _to: &mut [u8]) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Unsupported on macOS (see [`CROSS_PROCESS_COPY`]).
pub(super) fn copy_to_process(_pid: u32, _from: &[u8], _to: usize) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// macOS has no `TCP_QUICKACK`; its delayed acknowledgements are left as they are.
pub(super) fn tcp_ack_now(_fd: std::os::fd::RawFd) {}
