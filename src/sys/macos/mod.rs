//! macOS: kqueue sentinels (`EVFILT_PROC`/`NOTE_EXIT`), the executable's path, and the main
//! image from dyld. Type-checked and linted in CI (`aarch64-apple-darwin`, `x86_64-apple-darwin`);
//! not run, since no macOS runner is available.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

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
