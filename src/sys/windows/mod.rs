//! Windows: start children by re-executing the program with `CreateProcessW` and an explicit
//! handle list, wait on process handles and pipe events, end children with `TerminateProcess`.
//!
//! - **Spawn.** The child gets exactly three or four handles, named in a
//!   `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`: its end of the channel (whose value travels in the
//!   `MULTIPROCESS_CHILD` environment marker), the null device as stdin, and copies of our stdout
//!   and stderr. We never use broad inheritance. (Another thread that calls `CreateProcess` with
//!   broad inheritance at the same moment, as `std::process::Command` does, can still pick up the
//!   channel end during the few microseconds it is inheritable; that is the API's limit.)
//! - **Sentinels** are process handles: signalled when the process ends, whoever else holds its
//!   handles, and never confused by pid reuse.
//! - **Exit codes** come from `GetExitCodeProcess`, reduced to the low 8 bits as on Unix
//!   (`exit(n)` gives `n & 0xFF`). `terminate()` and `kill()` both call
//!   `TerminateProcess(h, 0x10000)` and report `-15` (`-SIGTERM`), exactly as CPython does on
//!   Windows (its `TERMINATE` constant). A crash status such as `0xC0000005` is reduced too
//!   (to 5): an `i32` exitcode cannot hold it beside the negative signal convention.
//! - **The channel** is an overlapped named pipe (see `pipe`), so it can be waited on together
//!   with process handles; a child sees its parent's death as end of file on it. That is how a
//!   daemonic child dies with a killed parent (the watcher thread of `bootstrap`, as on Linux);
//!   no Job object is used.
//! - **Exit hooks** go through the C runtime's `atexit`; with mingw's runtime they run both on
//!   return from `main` and on `ExitProcess` (`std::process::exit`), checked under Wine.
//! - **fork** does not exist.

#[cfg(feature = "tokio")]
mod aio;
mod handles;
mod image;
mod no_fork;
mod pipe;
mod pipe_listener;
mod region;
mod shm;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::ffi::OsStrExt;
pub(crate) use std::os::windows::io::OwnedHandle;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    DUPLICATE_SAME_ACCESS, DuplicateHandle, ERROR_ACCESS_DENIED, ERROR_INTERNAL_ERROR,
    GENERIC_READ, GENERIC_WRITE, HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE,
    SetHandleInformation, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, SetStdHandle,
};
use windows_sys::Win32::System::Threading::{
    CREATE_UNICODE_ENVIRONMENT, CreateProcessW, DeleteProcThreadAttributeList,
    EXTENDED_STARTUPINFO_PRESENT, GetCurrentProcess, GetExitCodeProcess,
    InitializeProcThreadAttributeList, LPPROC_THREAD_ATTRIBUTE_LIST,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION, STARTF_USESTDHANDLES, STARTUPINFOEXW,
    TerminateProcess, UpdateProcThreadAttribute, WaitForMultipleObjects, WaitForSingleObject,
};

#[cfg(feature = "tokio")]
pub(crate) use aio::*;
pub(crate) use handles::*;
pub(super) use image::{build_id, exe_path, in_main_image};
pub(crate) use no_fork::*;
pub(crate) use pipe::{Channel, channel_pair, write_all_vectored};
pub(crate) use pipe_listener::{SocketListener, connect, default_listener_address, listen};
pub(crate) use region::*;
#[allow(unused_imports)]
pub(crate) use shm::*;

/// A handle that [`wait_readable`] can wait on: a process (or any waitable kernel object), or a
/// channel, which is ready when it has bytes or end of file. (`pub` because the hidden
/// `Waitable::wait_handle` returns it; it is not reachable from outside the crate.)
#[derive(Clone, Copy, Debug)]
pub enum WaitHandle<'a> {
    /// A waitable kernel object, ready when signalled.
    Object(BorrowedHandle<'a>),
    /// A channel, ready when reading it would not block.
    Channel(&'a Channel),
    /// A socket of std's, ready when reading it (or accepting on it) would not block.
    Socket(std::os::windows::io::BorrowedSocket<'a>),
}

/// An owned waitable handle (a process sentinel).
pub(crate) type OwnedWaitHandle = OwnedHandle;

/// A socket as a waitable handle (see [`WaitSocket`](super::WaitSocket)). A socket is no
/// waitable kernel object (`WSAEventSelect` would make it non-blocking for good), so
/// [`wait_readable`] asks `WSAPoll` about it, every few milliseconds while it waits.
pub(crate) fn socket_wait_handle(
    socket: &impl std::os::windows::io::AsSocket,
) -> io::Result<WaitHandle<'_>> {
    Ok(WaitHandle::Socket(socket.as_socket()))
}

/// How long [`wait_readable`] waits between two looks at its sockets.
const SOCKET_POLL_MS: u32 = 5;

/// True if reading `socket` would not block (data, end of file, an error, or a connection to
/// accept), asked of `WSAPoll` without waiting.
fn socket_ready(socket: std::os::windows::io::BorrowedSocket<'_>) -> io::Result<bool> {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{POLLRDNORM, SOCKET_ERROR, WSAPOLLFD, WSAPoll};
    let mut fd = WSAPOLLFD {
        fd: socket.as_raw_socket() as usize,
        events: POLLRDNORM,
        revents: 0,
    };
    // SAFETY: one valid WSAPOLLFD for a socket the caller keeps open; zero timeout.
    let r = unsafe { WSAPoll(&mut fd, 1, 0) };
    if r == SOCKET_ERROR {
        return Err(io::Error::last_os_error());
    }
    Ok(r > 0 && fd.revents != 0)
}

/// Borrows an owned waitable handle.
pub(crate) fn borrow_handle(h: &OwnedHandle) -> WaitHandle<'_> {
    // SAFETY: the borrow lives no longer than `h`.
    WaitHandle::Object(unsafe { BorrowedHandle::borrow_raw(h.as_raw_handle()) })
}

/// The channel as a waitable handle.
pub(crate) fn channel_handle(channel: &Channel) -> WaitHandle<'_> {
    WaitHandle::Channel(channel)
}

/// Reads whatever bytes are available without blocking: `Ok(0)` is end of file, `WouldBlock`
/// means nothing is there yet.
pub(crate) fn read_available(channel: &Channel, buf: &mut [u8]) -> io::Result<usize> {
    channel.read_available(buf)
}

/// The environment variable that marks a spawned child; its value is the child's channel
/// handle. `init()` removes it, so the child's own children are not confused.
const CHILD_MARKER: &str = "MULTIPROCESS_CHILD";

/// Signal numbers, for the exit codes `terminate` and `kill` report (both end the process with
/// `TerminateProcess`, as in CPython).
pub(crate) const SIGTERM: i32 = 15;
/// See [`SIGTERM`].
pub(crate) const SIGKILL: i32 = 9;

/// The exit code `TerminateProcess` gives a child we terminate (CPython's `TERMINATE`).
const TERMINATE: u32 = 0x10000;

/// This process's id.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// Which child has ended: Windows cannot tell without looking at each child's handle.
pub(crate) fn ended_child() -> super::Ended {
    super::Ended::Unknown
}

/// A child process we started: its process handle (the sentinel) and, once ended, its exitcode.
#[derive(Debug)]
pub(crate) struct ProcHandle {
    pid: u32,
    process: Arc<OwnedHandle>,
    exitcode: Option<i32>,
}

impl ProcHandle {
    /// A child of a fork server: there is none on Windows.
    pub(crate) fn served(
        _pid: super::ServedPid,
        _status: OwnedHandle,
        _child_end: OwnedHandle,
    ) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the forkserver start method does not exist on Windows; use spawn",
        ))
    }

    /// Nothing is kept for a child that is over here (a fork server's child, on Unix, keeps
    /// its channel's end).
    pub(crate) fn let_go(&mut self) {}

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// A child of a fork server: never on Windows.
    pub(crate) fn is_served(&self) -> bool {
        false
    }

    /// The exitcode, once ended.
    pub(crate) fn exitcode(&self) -> Option<i32> {
        self.exitcode
    }

    /// The process handle, signalled when the child ends.
    pub(crate) fn sentinel(&mut self) -> io::Result<Arc<OwnedHandle>> {
        Ok(Arc::clone(&self.process))
    }

    /// The process handle (always open).
    pub(crate) fn sentinel_if_open(&self) -> Option<Arc<OwnedHandle>> {
        Some(Arc::clone(&self.process))
    }

    /// The exitcode if the child has ended: `-15` after `terminate`/`kill`, otherwise the low 8
    /// bits of its exit code.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<i32>> {
        if let Some(code) = self.exitcode {
            return Ok(Some(code));
        }
        let h = self.process.as_raw_handle();
        // SAFETY: a zero-timeout wait on our own process handle.
        match unsafe { WaitForSingleObject(h, 0) } {
            WAIT_OBJECT_0 => {}
            WAIT_TIMEOUT => return Ok(None),
            _ => return Err(io::Error::last_os_error()),
        }
        let mut raw = 0u32;
        // SAFETY: our process handle has PROCESS_QUERY_INFORMATION; `raw` is a valid out-pointer.
        if unsafe { GetExitCodeProcess(h, &mut raw) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let code = if raw == TERMINATE {
            -SIGTERM
        } else {
            (raw & 0xFF) as i32
        };
        self.exitcode = Some(code);
        Ok(Some(code))
    }

    /// Ends the child with `TerminateProcess` (for either signal, as CPython does) unless it has
    /// ended already.
    pub(crate) fn signal(&mut self, _signal: i32) -> io::Result<()> {
        if self.exitcode.is_some() {
            return Ok(());
        }
        let h = self.process.as_raw_handle();
        // SAFETY: our own process handle, opened with PROCESS_TERMINATE.
        if unsafe { TerminateProcess(h, TERMINATE) } == 0 {
            let e = io::Error::last_os_error();
            // Access is denied once the process has exited: then there is nothing to do.
            // SAFETY: a zero-timeout wait on our own process handle.
            let ended = unsafe { WaitForSingleObject(h, 0) } == WAIT_OBJECT_0;
            if !(ended && e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32)) {
                return Err(e);
            }
        }
        Ok(())
    }
}

pub(super) fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle that the caller hands over to us.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// The null device, opened for reading; `inherit` makes the handle inheritable.
fn open_null(inherit: bool) -> io::Result<OwnedHandle> {
    open_null_for(GENERIC_READ, inherit)
}

/// The null device opened for `access` (`GENERIC_READ` or `GENERIC_WRITE`).
fn open_null_for(access: u32, inherit: bool) -> io::Result<OwnedHandle> {
    let sa = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: std::ptr::null_mut(),
        bInheritHandle: i32::from(inherit),
    };
    let name: Vec<u16> = "NUL\0".encode_utf16().collect();
    // SAFETY: a NUL-terminated name and valid security attributes.
    owned(unsafe {
        CreateFileW(
            name.as_ptr(),
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            &sa,
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    })
}

/// An inheritable copy of one of our standard handles, or `None` if we have none.
fn inheritable_std(which: u32) -> io::Result<Option<OwnedHandle>> {
    // SAFETY: GetStdHandle has no preconditions.
    let h = unsafe { GetStdHandle(which) };
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Ok(None);
    }
    let mut dup: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicates a handle of this process into this process, inheritable.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            GetCurrentProcess(),
            &mut dup,
            0,
            1,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        // Not a real handle (a detached console, say): the child goes without.
        return Ok(None);
    }
    owned(dup).map(Some)
}

/// Appends `arg` to a command line, quoted as the C runtime's argument parser expects.
fn push_arg(cmd: &mut Vec<u16>, arg: &OsStr) {
    if !cmd.is_empty() {
        cmd.push(u16::from(b' '));
    }
    let wide: Vec<u16> = arg.encode_wide().collect();
    let plain = !wide.is_empty()
        && !wide
            .iter()
            .any(|&c| matches!(c, 0x20 | 0x09 | 0x0a | 0x0b | 0x22));
    if plain {
        cmd.extend_from_slice(&wide);
        return;
    }
    cmd.push(u16::from(b'"'));
    let mut backslashes = 0;
    for &c in &wide {
        if c == u16::from(b'\\') {
            backslashes += 1;
        } else {
            if c == u16::from(b'"') {
                // Backslashes before a quote are doubled, and the quote escaped.
                cmd.extend(std::iter::repeat_n(u16::from(b'\\'), backslashes + 1));
            }
            backslashes = 0;
        }
        cmd.push(c);
    }
    // Backslashes before the closing quote are doubled.
    cmd.extend(std::iter::repeat_n(u16::from(b'\\'), backslashes));
    cmd.push(u16::from(b'"'));
}

/// Our environment plus the child marker, as a `CREATE_UNICODE_ENVIRONMENT` block.
fn child_environment(marker: &str) -> Vec<u16> {
    let mut block = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k.to_string_lossy().eq_ignore_ascii_case(CHILD_MARKER) {
            continue;
        }
        block.extend(k.encode_wide());
        block.push(u16::from(b'='));
        block.extend(v.encode_wide());
        block.push(0);
    }
    block.extend(format!("{CHILD_MARKER}={marker}").encode_utf16());
    block.extend([0, 0]);
    block
}

/// A `PROC_THREAD_ATTRIBUTE_LIST` naming the only handles a child inherits.
struct HandleList {
    storage: Vec<usize>,
    handles: Vec<HANDLE>,
}

impl HandleList {
    fn new(handles: Vec<HANDLE>) -> io::Result<Box<HandleList>> {
        let mut size = 0usize;
        // SAFETY: the documented size query (null list); it "fails" with the size.
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
        let mut list = Box::new(HandleList {
            storage: vec![0usize; size.div_ceil(size_of::<usize>())],
            handles,
        });
        let attrs = list.attrs();
        // SAFETY: `storage` has at least `size` bytes, suitably aligned.
        if unsafe { InitializeProcThreadAttributeList(attrs, 1, 0, &mut size) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the handle array lives in the same box as the list, so it outlives it;
        // the list was initialised above.
        let ok = unsafe {
            UpdateProcThreadAttribute(
                attrs,
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                list.handles.as_ptr().cast(),
                list.handles.len() * size_of::<HANDLE>(),
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            // SAFETY: the list was initialised above.
            unsafe { DeleteProcThreadAttributeList(attrs) };
            list.storage.clear();
            return Err(e);
        }
        Ok(list)
    }

    fn attrs(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.storage.as_mut_ptr().cast()
    }
}

impl Drop for HandleList {
    fn drop(&mut self) {
        if !self.storage.is_empty() {
            // SAFETY: the list was initialised in `new` (storage is cleared otherwise).
            unsafe { DeleteProcThreadAttributeList(self.attrs()) };
        }
    }
}

/// Whether [`spawn`] can silence a child's stdout until it takes it back: not here (a test
/// binary's children print libtest's header).
pub(crate) const QUIET_SPAWN: bool = true;

/// A copy of this process's stdout, for a child started with [`spawn`]`(.., true)` to take
/// back with [`restore_stdout`].
pub(crate) fn stdout_handle() -> io::Result<OwnedHandle> {
    inheritable_std(STD_OUTPUT_HANDLE)?
        .ok_or_else(|| io::Error::other("this process has no standard output"))
}

/// Makes `handle` this process's stdout (after [`spawn`]`(.., true)`, the parent's stdout).
/// std looks the handle up for every write, so `print!` goes there from now on.
pub(crate) fn restore_stdout(handle: OwnedHandle) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::windows::io::IntoRawHandle;
    let _ = io::stdout().flush();
    // SAFETY: a valid handle of ours becomes the process's standard output; it is never closed
    // (given away with `into_raw_handle`), as a standard handle must stay open.
    if unsafe { SetStdHandle(STD_OUTPUT_HANDLE, handle.into_raw_handle()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts this executable again as a child, with `args` after `argv[0]`, the marker (the
/// channel's handle value) in its environment, the null device as stdin, and our stdout and
/// stderr. Only those handles are inherited.
pub(crate) fn spawn(args: &[OsString], channel: Channel, quiet: bool) -> io::Result<ProcHandle> {
    let exe = exe_path()?;
    let mut cmdline = Vec::new();
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| exe.clone().into_os_string());
    push_arg(&mut cmdline, &argv0);
    for a in args {
        push_arg(&mut cmdline, a);
    }
    cmdline.push(0);
    let exe_w: Vec<u16> = exe.as_os_str().encode_wide().chain(Some(0)).collect();

    let stdin = open_null(true)?;
    let stdout = if quiet {
        Some(open_null_for(GENERIC_WRITE, true)?)
    } else {
        inheritable_std(STD_OUTPUT_HANDLE)?
    };
    let stderr = inheritable_std(STD_ERROR_HANDLE)?;
    let theirs = channel.raw();
    let mut env = child_environment(&(theirs as usize).to_string());
    let mut handles = vec![theirs, stdin.as_raw_handle()];
    handles.extend(stdout.iter().chain(&stderr).map(AsRawHandle::as_raw_handle));
    let mut list = HandleList::new(handles)?;

    let mut info = STARTUPINFOEXW::default();
    info.StartupInfo.cb = size_of::<STARTUPINFOEXW>() as u32;
    info.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    info.StartupInfo.hStdInput = stdin.as_raw_handle();
    info.StartupInfo.hStdOutput = stdout
        .as_ref()
        .map_or(std::ptr::null_mut(), AsRawHandle::as_raw_handle);
    info.StartupInfo.hStdError = stderr
        .as_ref()
        .map_or(std::ptr::null_mut(), AsRawHandle::as_raw_handle);
    info.lpAttributeList = list.attrs();
    let mut pi = PROCESS_INFORMATION::default();

    // The channel end is inheritable only for the duration of the call.
    // SAFETY: sets a flag on our own valid handle.
    if unsafe { SetHandleInformation(theirs, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // Wine's `CreateProcess` has failed, rarely, with ERROR_INTERNAL_ERROR while many
    // processes started at once (once in CI's example tests, not reproduced in 12 runs of
    // them); no process exists after a failed call, so that error is tried twice more.
    let mut attempt = 0;
    let spawn_error = loop {
        let mut line = cmdline.clone();
        // SAFETY: every pointer refers to a live, NUL-terminated buffer or an initialised
        // structure that outlives the call; inheritance is limited by the handle list.
        let ok = unsafe {
            CreateProcessW(
                exe_w.as_ptr(),
                line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                1,
                EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT,
                env.as_mut_ptr().cast(),
                std::ptr::null(),
                &info.StartupInfo,
                &mut pi,
            )
        };
        if ok != 0 {
            break None;
        }
        let e = io::Error::last_os_error();
        attempt += 1;
        if e.raw_os_error() != Some(ERROR_INTERNAL_ERROR as i32) || attempt == 3 {
            break Some(e);
        }
        std::thread::sleep(Duration::from_millis(10 * attempt));
    };
    drop(list);
    // `channel`, `stdin`, `stdout`, `stderr` (our copies of the child's handles) close here.
    drop(channel);
    if let Some(e) = spawn_error {
        return Err(e);
    }
    // SAFETY: CreateProcessW succeeded: both handles are fresh and ours.
    let (process, thread) = unsafe {
        (
            OwnedHandle::from_raw_handle(pi.hProcess),
            OwnedHandle::from_raw_handle(pi.hThread),
        )
    };
    drop(thread);
    Ok(ProcHandle {
        pid: pi.dwProcessId,
        process: Arc::new(process),
        exitcode: None,
    })
}

/// Channels do not travel as plain handles on Windows (only the forkserver, which Windows has
/// not, would ask).
pub(crate) fn channel_into_handle(_channel: Channel) -> io::Result<OwnedHandle> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the forkserver start method does not exist on Windows; use spawn",
    ))
}

/// See [`channel_into_handle`].
pub(crate) fn channel_from_handle(handle: OwnedHandle) -> io::Result<Channel> {
    Channel::new(handle)
}

/// Windows' delayed acknowledgements are left as they are (no `TCP_QUICKACK`).
pub(crate) fn ack_now(_stream: &Stream) {}

/// Windows cannot end a process when a pipe turns readable: the caller watches with a thread.
pub(crate) fn kill_on_readable(_channel: &Channel, _on: bool) -> io::Result<bool> {
    Ok(false)
}

/// In a spawned child: removes the marker and returns the bootstrap channel, whose handle value
/// the marker holds, after making that handle non-inheritable (so processes this child starts,
/// with any API, do not get it). stdin is the null device already. `None` in a process that was
/// not spawned by us.
///
/// Call while the process is single-threaded (first thing in `main`): it edits the environment.
pub(crate) fn take_child_channel() -> io::Result<Option<Channel>> {
    let Some(marker) = std::env::var_os(CHILD_MARKER) else {
        return Ok(None);
    };
    // SAFETY: documented precondition: called at the top of `main`, before other threads exist.
    unsafe { std::env::remove_var(CHILD_MARKER) };
    let value: usize = marker
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{CHILD_MARKER} is not a handle value: {marker:?}"),
            )
        })?;
    let h = value as HANDLE;
    // Also validates the value: it fails on anything that is not an open handle.
    // SAFETY: clears a flag; an invalid value makes the call fail, nothing else.
    if unsafe { SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the parent handed this handle to us alone; from here we own it.
    Channel::new(unsafe { OwnedHandle::from_raw_handle(h) }).map(Some)
}

/// True when this process was spawned as a child and `init()` has not yet taken the marker.
pub(crate) fn child_marker_present() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

/// Makes the null device our standard input (Python does this in every child).
pub(crate) fn stdin_from_null() -> io::Result<()> {
    let null = open_null(false)?;
    // SAFETY: installs a valid handle, which we then leave open for the process's lifetime.
    if unsafe { SetStdHandle(STD_INPUT_HANDLE, null.as_raw_handle()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(null);
    Ok(())
}

/// Waits until at least one handle is ready (a channel with bytes or end of file, an object
/// signalled), or until the timeout (`None`: forever). Returns one flag per handle.
pub(crate) fn wait_readable(
    handles: &[WaitHandle<'_>],
    timeout: Option<Duration>,
) -> io::Result<super::Ready> {
    let deadline = timeout.and_then(super::deadline_after);
    loop {
        let mut ready = super::Ready::from_elem(false, handles.len());
        let mut objects: smallvec::SmallVec<[HANDLE; 8]> = smallvec::SmallVec::new();
        let mut sockets = false;
        for (i, h) in handles.iter().enumerate() {
            match h {
                WaitHandle::Object(o) => {
                    let raw = o.as_raw_handle();
                    // SAFETY: a zero-timeout wait on a handle the caller keeps open.
                    ready[i] = unsafe { WaitForSingleObject(raw, 0) } == WAIT_OBJECT_0;
                    objects.push(raw);
                }
                WaitHandle::Channel(c) => {
                    ready[i] = c.poll()?;
                    objects.push(c.event());
                }
                WaitHandle::Socket(sock) => {
                    ready[i] = socket_ready(*sock)?;
                    sockets = true;
                }
            }
        }
        if ready.iter().any(|&r| r) {
            return Ok(ready);
        }
        let ms = match deadline {
            None => INFINITE_MS,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(ready);
                }
                // Round up so that we never wake before the deadline.
                left.as_micros()
                    .div_ceil(1000)
                    .min(u128::from(INFINITE_MS - 1)) as u32
            }
        };
        // Sockets are asked again after a short wait.
        let ms = if sockets { ms.min(SOCKET_POLL_MS) } else { ms };
        // WaitForMultipleObjects refuses an array holding the same handle twice.
        objects.sort_unstable();
        objects.dedup();
        if objects.is_empty() {
            std::thread::sleep(Duration::from_millis(u64::from(ms)));
        } else if objects.len() <= MAX_WAIT_OBJECTS {
            wait_any(&objects, ms)?;
        } else {
            // More objects than one wait takes: look at each batch without blocking, then
            // sleep a little (CPython's `wait` also splits the list).
            let mut signalled = false;
            for batch in objects.chunks(MAX_WAIT_OBJECTS) {
                signalled |= wait_any(batch, 0)?;
            }
            if !signalled {
                std::thread::sleep(Duration::from_millis(u64::from(ms.min(5))));
            }
        }
        // Signalled or timed out: the flags are computed afresh at the top of the loop, which
        // also returns once the deadline has passed.
    }
}

pub(super) const INFINITE_MS: u32 = windows_sys::Win32::System::Threading::INFINITE;

/// The most handles one `WaitForMultipleObjects` call takes (`MAXIMUM_WAIT_OBJECTS`).
const MAX_WAIT_OBJECTS: usize = 64;

/// Waits up to `ms` until one of `objects` (at most 64, no duplicates) is signalled; true if
/// one was.
fn wait_any(objects: &[HANDLE], ms: u32) -> io::Result<bool> {
    // SAFETY: `objects` holds valid handles that the caller keeps open for the call.
    let r = unsafe { WaitForMultipleObjects(objects.len() as u32, objects.as_ptr(), 0, ms) };
    match r {
        WAIT_FAILED => Err(io::Error::last_os_error()),
        WAIT_TIMEOUT => Ok(false),
        _ => Ok(true),
    }
}

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
    fn _exit(code: i32) -> !;
}

/// Runs `f` when the process exits through the C runtime's `exit` (returning from `main`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: registering a plain `extern "C" fn` with the C runtime.
    unsafe { atexit(f) };
}

/// Ends the process at once with `code`: no exit handlers, no destructors.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: the C runtime's _exit never returns and has no preconditions.
    unsafe { _exit(code) }
}

/// Runs before `main` in every program that links this crate (a `.CRT$XCU` initialiser, which
/// the C runtime calls at startup). In a process spawned by us it arranges that, if `main` never
/// calls `init()`, the process fails at exit with a message naming the fix instead of exiting 0.
extern "C" fn check_spawned_child_at_load() {
    if child_marker_present() {
        at_exit(fail_if_init_never_ran);
    }
}

extern "C" fn fail_if_init_never_ran() {
    if !child_marker_present() {
        return; // init() took the marker: all is well.
    }
    let msg = format!("multiprocess: {}\n", crate::error::NO_INIT);
    let _ = io::Write::write_all(&mut io::stderr(), msg.as_bytes());
    exit_now(1);
}

#[used]
#[unsafe(link_section = ".CRT$XCU")]
static CHECK_SPAWNED_CHILD: extern "C" fn() = check_spawned_child_at_load;

/// The name of a signal number of the C runtime, as Python prints a negative exitcode in a
/// process's repr (`-SIGTERM`, which is what `terminate()` and `kill()` report here).
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        2 => "SIGINT",
        4 => "SIGILL",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        21 => "SIGBREAK",
        22 => "SIGABRT",
        _ => return None,
    })
}

/// A byte stream for a `Connection`: an overlapped named pipe (a duplex one even for a simplex
/// `Connection`, whose direction the `Connection` enforces).
pub(crate) type Stream = Channel;

/// Two connected streams.
pub(crate) fn stream_pair(_duplex: bool) -> io::Result<(Stream, Stream)> {
    channel_pair()
}

/// A stream as a waitable handle.
pub(crate) fn stream_handle(stream: &Stream) -> WaitHandle<'_> {
    channel_handle(stream)
}

/// A new owned handle to `stream`'s pipe.
pub(crate) fn stream_to_handle(stream: &Stream) -> io::Result<OwnedHandle> {
    stream.duplicate_handle()
}

/// A stream over a received handle.
pub(crate) fn stream_from_handle(handle: OwnedHandle) -> io::Result<Stream> {
    Channel::new(handle)
}

/// Large pages need a privilege on Windows: nothing to ask for.
pub(crate) fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}

/// The kernel handle behind a waitable handle (a channel's pipe).
pub(crate) fn kernel_handle(h: WaitHandle<'_>) -> BorrowedHandle<'_> {
    match h {
        WaitHandle::Object(o) => o,
        // SAFETY: the pipe handle lives as long as the channel it is borrowed from.
        WaitHandle::Channel(c) => unsafe { BorrowedHandle::borrow_raw(c.raw()) },
        // SAFETY: a socket is a kernel handle, and lives as long as the socket it is borrowed
        // from. (Only `wait()` makes this variant; no type gets handle traits from it.)
        WaitHandle::Socket(s) => unsafe {
            BorrowedHandle::borrow_raw(std::os::windows::io::AsRawSocket::as_raw_socket(&s) as _)
        },
    }
}

/// Gives a public type std's handle traits (`AsHandle`, `AsRawHandle`), as std's own files and
/// pipes have them, so that other code (a reactor, `WaitForMultipleObjects`) can use it.
/// `$handle` is a method of the type returning `Option<WaitHandle>` (`None` once closed:
/// `as_raw_handle` is then null, and `as_handle` panics, as using a closed handle is the
/// caller's bug). A `Connection`'s handle is an overlapped named pipe.
macro_rules! impl_os_handle {
    ($ty:ty, $handle:ident) => {
        /// Its kernel handle (Windows). Panics if it was closed.
        impl std::os::windows::io::AsHandle for $ty {
            fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
                match self.$handle() {
                    Some(h) => $crate::sys::kernel_handle(h),
                    None => panic!("{}: the handle is closed", stringify!($ty)),
                }
            }
        }

        /// Its kernel handle (Windows); null once closed.
        impl std::os::windows::io::AsRawHandle for $ty {
            fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
                self.$handle().map_or(std::ptr::null_mut(), |h| {
                    std::os::windows::io::AsRawHandle::as_raw_handle(&$crate::sys::kernel_handle(h))
                })
            }
        }
    };
}
pub(crate) use impl_os_handle;

/// An OS handle's number as Python's `fileno()` gives it (the handle's value).
pub(crate) fn handle_number(h: WaitHandle<'_>) -> i64 {
    kernel_handle(h).as_raw_handle() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::WaitSocket;
    use std::io::Write;

    #[test]
    fn channels_wait_read_and_see_end_of_file() {
        let (a, b) = channel_pair().unwrap();
        let mut buf = [0u8; 16];
        let e = read_available(&a, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let t = Instant::now();
        let timeout = Some(Duration::from_millis(100));
        assert_eq!(
            wait_readable(&[channel_handle(&a)], timeout)
                .unwrap()
                .as_slice(),
            [false]
        );
        assert!(t.elapsed() >= Duration::from_millis(100));
        (&b).write_all(b"hello").unwrap();
        assert_eq!(
            wait_readable(&[channel_handle(&a)], None)
                .unwrap()
                .as_slice(),
            [true]
        );
        assert_eq!(read_available(&a, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        // A clone writes to the same pipe; the peer's end closes only with its last handle.
        let c = b.try_clone().unwrap();
        drop(b);
        (&c).write_all(b"!").unwrap();
        assert_eq!(read_available(&a, &mut buf).ok(), Some(1));
        drop(c);
        let timeout = Some(Duration::from_secs(5));
        assert_eq!(
            wait_readable(&[channel_handle(&a)], timeout)
                .unwrap()
                .as_slice(),
            [true]
        );
        assert_eq!(read_available(&a, &mut buf).unwrap(), 0);
    }

    #[test]
    fn waits_on_sockets_with_wsapoll() {
        use std::net::{TcpListener, TcpStream};
        // Only the OS wait: the crate's `wait()` is tested in tests/connection.rs.
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let (a, _b) = channel_pair().unwrap();
        let handles = [channel_handle(&a), listener.socket_handle().unwrap()];
        let r = wait_readable(&handles, Some(Duration::from_millis(50))).unwrap();
        assert_eq!(r.as_slice(), [false, false]);
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let r = wait_readable(&handles, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(r.as_slice(), [false, true]);
        let (server, _) = listener.accept().unwrap();
        let t = Instant::now();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            client.write_all(b"x").unwrap();
            client
        });
        let only = [server.socket_handle().unwrap()];
        assert_eq!(
            wait_readable(&only, Some(Duration::from_secs(10)))
                .unwrap()
                .as_slice(),
            [true]
        );
        assert!(t.elapsed() >= Duration::from_millis(90));
        drop(writer.join().unwrap());
    }

    #[test]
    fn waits_on_more_than_64_handles() {
        let pairs: Vec<_> = (0..70).map(|_| channel_pair().unwrap()).collect();
        let handles: Vec<_> = pairs.iter().map(|(a, _)| channel_handle(a)).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                (&pairs[67].1).write_all(b"x").unwrap();
            });
            let ready = wait_readable(&handles, Some(Duration::from_secs(10))).unwrap();
            let which: Vec<usize> = (0..ready.len()).filter(|&i| ready[i]).collect();
            assert_eq!(which, [67]);
        });
    }
}
