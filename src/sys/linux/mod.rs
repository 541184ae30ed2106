//! Linux: pidfd sentinels, `/proc/self/exe`, and the main image from `dl_iterate_phdr`.

use std::ffi::c_void;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Whether a child's sentinel can wait to be opened until someone waits: a pidfd can be made
/// for a child that has ended, until it is reaped (its pid stays its own until then).
pub(super) const SENTINEL_ON_DEMAND: bool = true;

/// A pidfd for our child `pid`: readable once the child has ended, whoever holds its other
/// descriptors, and never confused by pid reuse (Linux 5.3+).
pub(super) fn open_sentinel(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the pidfd_open syscall takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a fresh descriptor (close-on-exec by default) that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Makes descriptor `to` a close-on-exec copy of `from` (closing what `to` was), in one call.
pub(super) fn dup_cloexec(from: RawFd, to: RawFd) {
    // SAFETY: dup3 takes two descriptor numbers and a flag; the caller owns both numbers.
    unsafe { libc::dup3(from, to, libc::O_CLOEXEC) };
}

/// The highest descriptor number open in this process (`/proc/self/fd`); `None` if it cannot
/// be read.
pub(super) fn highest_open_fd() -> Option<RawFd> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The listing's own descriptor is among them: it is closed, and below the result or the
    // result itself, so counting it only raises the number.
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .max()
}

/// Closes every descriptor numbered `first` and up in one call (`close_range`, Linux 5.9+);
/// false if the kernel has no such call.
pub(super) fn close_from(first: RawFd) -> bool {
    // SAFETY: close_range takes two descriptor numbers and flags; the caller owns every
    // descriptor in the range (and uses none of them after).
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) == 0
    }
}

/// Which child of this process has ended and waits to be reaped, as the kernel names one
/// (`waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)`: it finds a zombie without reaping it).
/// `Unknown` when there is no child at all (`ECHILD`: who reaped ours is for the caller's scan
/// to find out) and on any other error.
pub(super) fn ended_child() -> super::Ended {
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value (plain integers and padding).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`, a valid out-pointer; with WNOWAIT it leaves
        // any child it finds waitable, so nobody else's wait loses its status.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return super::Ended::Unknown;
        }
        // With WNOHANG and no waitable child, waitid returns 0 and leaves `si_pid` zero.
        // SAFETY: `info` was zeroed, then filled in (or not) by waitid: reading it is defined.
        let pid = unsafe { info.si_pid() };
        return match u32::try_from(pid) {
            Ok(0) => super::Ended::None,
            Ok(pid) => super::Ended::Pid(pid),
            Err(_) => super::Ended::Unknown,
        };
    }
}

/// The executable to re-run: the running image itself, even if its file was replaced on disk.
pub(super) fn exe_path() -> io::Result<PathBuf> {
    Ok(PathBuf::from("/proc/self/exe"))
}

/// The main program's loaded segments and its GNU build id, read once.
struct MainImage {
    segments: Vec<(usize, usize)>,
    build_id: Option<Vec<u8>>,
}

fn main_image() -> &'static MainImage {
    static IMAGE: OnceLock<MainImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut image = MainImage {
            segments: Vec::new(),
            build_id: None,
        };
        // SAFETY: the callback only reads the structures the loader hands it, for the duration
        // of the call, and writes into `image` through the pointer we pass.
        unsafe {
            libc::dl_iterate_phdr(Some(visit), (&raw mut image).cast::<c_void>());
        }
        image
    })
}

/// `dl_iterate_phdr` callback: records the first object (the main program) and stops.
unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> i32 {
    // SAFETY: `data` is the `MainImage` passed above; `info` is valid during the callback.
    let (image, info) = unsafe { (&mut *data.cast::<MainImage>(), &*info) };
    let base = info.dlpi_addr as usize;
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        let start = base + ph.p_vaddr as usize;
        match ph.p_type {
            libc::PT_LOAD => image.segments.push((start, start + ph.p_memsz as usize)),
            libc::PT_NOTE if image.build_id.is_none() => {
                // SAFETY: a PT_NOTE segment of a loaded object is mapped for p_memsz bytes.
                let notes =
                    unsafe { std::slice::from_raw_parts(start as *const u8, ph.p_memsz as usize) };
                image.build_id = gnu_build_id(notes);
            }
            _ => {}
        }
    }
    1 // stop after the main program
}

/// Finds the NT_GNU_BUILD_ID note in a PT_NOTE segment.
fn gnu_build_id(mut notes: &[u8]) -> Option<Vec<u8>> {
    let word = |b: &[u8], i: usize| -> Option<usize> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name_end = 12 + namesz.div_ceil(4) * 4;
        let desc_end = name_end + descsz.div_ceil(4) * 4;
        if kind == 3 && notes.get(12..12 + namesz)? == b"GNU\0" {
            return notes.get(name_end..name_end + descsz).map(<[u8]>::to_vec);
        }
        notes = notes.get(desc_end..)?;
    }
    None
}

/// True if `addr` lies in a loaded segment of the main program (not of a shared library).
pub(super) fn in_main_image(addr: usize) -> bool {
    main_image()
        .segments
        .iter()
        .any(|&(lo, hi)| (lo..hi).contains(&addr))
}

/// The linker's build id of the main program, if it has one.
pub(super) fn build_id() -> Option<Vec<u8>> {
    main_image().build_id.clone()
}

/// A socket address in the abstract namespace.
pub(super) fn abstract_address(name: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

/// A new, empty, close-on-exec shared-memory file with no name (`memfd_create`).
pub(super) fn anonymous_memory() -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"multiprocess".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sleeps while `*word == expected`, at most `timeout` (forever with `None`). Returns `false`
/// only when the timeout ran out; a wake-up, a changed word or a signal return `true` (callers
/// re-check their condition in a loop). Works across processes: the futex is not private.
pub(super) fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) -> bool {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 4-byte atomic for the duration of the call; FUTEX_WAIT
    // only reads it. `ts_ptr` is null or points to a live timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        )
    };
    !(r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes up to `n` processes sleeping in [`futex_wait`] on `word`.
pub(super) fn futex_wake(word: &std::sync::atomic::AtomicU32, n: u32) {
    // SAFETY: FUTEX_WAKE does not access memory through the pointer beyond identifying it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n.min(i32::MAX as u32) as i32,
        );
    }
}

/// Arms (or, with `on` false, disarms) the kernel to end this process with SIGKILL as soon as
/// the socket `fd` has an event for a reader: data, or its peer's end closed. `F_SETOWN` names
/// this process, `F_SETSIG` the signal, `O_ASYNC` turns it on. The socket also signals when
/// room to write appears after a write had to wait, so a caller disarms it before a write that
/// may not fit in the socket's buffer. Returns true once armed.
pub(super) fn kill_on_readable(fd: RawFd, on: bool) -> io::Result<bool> {
    // `asm-generic/fcntl.h` (the `libc` crate does not export it), the same on every
    // architecture Rust builds for.
    const F_SETSIG: libc::c_int = 10;
    // SAFETY: fcntl on a descriptor the caller owns, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if on
            && (libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) < 0
                || libc::fcntl(fd, F_SETSIG, libc::SIGKILL) < 0)
        {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::O_ASYNC
        } else {
            flags & !libc::O_ASYNC
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(on)
}

/// Whether process `pid` is running: it exists and is not a zombie waiting to be reaped.
pub(super) fn process_alive(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which ends with the last ')'.
        Ok(stat) => match stat.iter().rposition(|&b| b == b')') {
            Some(i) => !matches!(stat.get(i + 2), Some(b'Z' | b'X')),
            None => true,
        },
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Linux copies memory between processes with `process_vm_readv`/`process_vm_writev`.
pub(super) const CROSS_PROCESS_COPY: bool = true;

/// One cross-memory-attach call that moves `len` bytes between `local` (ours) and `remote`
/// (process `pid`'s); `Ok(k)` is how many it moved (a short count means the remote range ended
/// in an unmapped page).
fn process_vm(
    pid: u32,
    local: *mut u8,
    remote: usize,
    len: usize,
    write: bool,
) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: local.cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: remote as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes memory of ours that the caller lends for the call (readable for
    // a write, writable for a read); the kernel checks the remote range in the other process
    // and fails with EFAULT rather than touching anything outside it.
    let n = unsafe {
        if write {
            libc::process_vm_writev(pid as libc::pid_t, &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0)
        }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Moves `len` bytes, retrying short counts; a call that moves nothing is an error.
fn process_vm_all(
    pid: u32,
    local: *mut u8,
    remote: usize,
    len: usize,
    write: bool,
) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        match process_vm(
            pid,
            local.wrapping_add(done),
            remote + done,
            len - done,
            write,
        ) {
            Ok(0) => return Err(io::Error::from_raw_os_error(libc::EFAULT)),
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies `to.len()` bytes at address `from` in process `pid` into `to`.
pub(super) fn copy_from_process(pid: u32, from: usize, to: &mut [u8]) -> io::Result<()> {
    process_vm_all(pid, to.as_mut_ptr(), from, to.len(), false)
}

/// Copies `from` to address `to` in process `pid`.
pub(super) fn copy_to_process(pid: u32, from: &[u8], to: usize) -> io::Result<()> {
    // The kernel only reads `from` for a write (the pointer is not written through).
    process_vm_all(pid, from.as_ptr().cast_mut(), to, from.len(), true)
}

/// Asks for transparent huge pages on the 2 MiB-aligned part of a fresh buffer (best effort):
/// a large message then faults in 512 times less often.
pub(super) fn advise_huge_pages(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: the range lies inside the caller's live allocation; MADV_HUGEPAGE changes
        // only how the kernel backs it, never its contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// Sends at once the acknowledgement the kernel is holding back for the TCP socket `fd`
/// (`TCP_QUICKACK`), if any; nothing for other sockets. A peer whose Nagle algorithm waits for
/// that acknowledgement before sending its next small segment then sends it at once, instead
/// of after the delayed-acknowledgement timer (40 ms on Linux).
pub(super) fn tcp_ack_now(fd: std::os::fd::RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: sets an option of our own socket from an int that lives across the call; on a
    // socket that is not TCP it fails harmlessly.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
