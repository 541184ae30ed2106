//! The parent–child channel on Windows: one duplex named pipe opened for overlapped I/O at both
//! ends (as CPython's `multiprocessing` does). A read is kept pending on the pipe while someone
//! waits, so that its event can be waited on together with process handles, and whatever it
//! brought in is handed out without blocking.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use windows_sys::Win32::Foundation::{
    DUPLICATE_SAME_ACCESS, DuplicateHandle, ERROR_BROKEN_PIPE, ERROR_HANDLE_EOF,
    ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_OPERATION_ABORTED,
    ERROR_PIPE_CONNECTED, ERROR_PIPE_NOT_CONNECTED, GENERIC_READ, GENERIC_WRITE, GetLastError,
    HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, OPEN_EXISTING,
    PIPE_ACCESS_DUPLEX, ReadFile, WriteFile,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS,
    PIPE_TYPE_BYTE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, INFINITE, WaitForSingleObject,
};

/// Bytes asked for by one read, and the pipe's buffer quota in each direction (a bootstrap of
/// up to 64 KiB is written without waiting for the child).
const CHUNK: usize = 64 * 1024;
const PIPE_BUFFER: u32 = 128 * 1024;

/// The byte stream between a parent and one child: bootstrap down, reports up. Reads and
/// writes take `&Channel`, like `&UnixStream`; several threads may use it at once.
pub struct Channel {
    /// The pipe (or socket) handle; a socket is closed with `closesocket` on drop.
    pipe: std::mem::ManuallyDrop<OwnedHandle>,
    /// A TCP socket rather than a pipe: a zero-byte read is the peer's end, and the handle
    /// cannot be passed to another process with `DuplicateHandle`.
    socket: bool,
    /// Manual-reset event of the pending read; signalled when it completes.
    read_event: OwnedHandle,
    read: Mutex<ReadSide>,
    /// The write side: its event and the async write in flight, if any.
    write: Mutex<WriteSide>,
}

/// An OVERLAPPED block that the kernel may write to while a read is pending.
struct PendingBlock(OVERLAPPED);

// SAFETY: the only pointer inside is the event handle, a process-wide value usable from any
// thread; the block is only touched under the `read` mutex.
unsafe impl Send for PendingBlock {}

/// One write at a time, under the `write` lock: a blocking one (started and waited for at
/// once) or an async send's, which stays in flight ([`Flight`]) while the send waits for it.
struct WriteSide {
    /// Manual-reset event of the write under way.
    event: OwnedHandle,
    /// An async send's write the kernel has not finished (see [`Channel::write_now`]).
    flight: Option<Flight>,
    /// A dropped async send left bytes of its write in the pipe: no message boundary is known
    /// any more, so every later write fails.
    cut: bool,
}

/// An overlapped write in flight: the kernel reads `bytes` (a copy of the sender's) and
/// writes to `block` until it completes or is cancelled and awaited.
struct Flight {
    block: Box<PendingBlock>,
    /// Kept alive for the kernel; read by `write_now`.
    bytes: Vec<u8>,
}

/// The most one write that must not block copies and hands to the kernel: a frame of up to
/// 64 KiB plus its header goes in one write.
const WRITE_CHUNK: usize = CHUNK + 1024;

struct ReadSide {
    /// Boxed so its address stays fixed while the kernel holds it.
    block: Box<PendingBlock>,
    buf: Box<[u8]>,
    /// A read is in flight: `block` and `buf` belong to the kernel until it completes.
    pending: bool,
    /// Bytes of `buf` that arrived and were not yet handed out.
    start: usize,
    end: usize,
    /// The other end is closed.
    eof: bool,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("pipe", &self.pipe.as_raw_handle())
            .finish_non_exhaustive()
    }
}

use super::super::lock;

fn last_error() -> u32 {
    // SAFETY: reads the calling thread's last-error value.
    unsafe { GetLastError() }
}

/// A new manual-reset, unsignalled, non-inheritable event.
fn new_event() -> io::Result<OwnedHandle> {
    // SAFETY: no security attributes (not inheritable), no name.
    let h = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle that we own.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// True for the errors a reset or aborted TCP connection reports to `ReadFile`
/// (ERROR_NETNAME_DELETED, WSAECONNRESET, WSAECONNABORTED).
fn is_reset(code: u32) -> bool {
    matches!(code, 64 | 10053 | 10054)
}

/// True for the errors that mean "the other end is gone".
fn is_eof(code: u32) -> bool {
    matches!(
        code,
        ERROR_BROKEN_PIPE | ERROR_PIPE_NOT_CONNECTED | ERROR_HANDLE_EOF | ERROR_NO_DATA
    )
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// A connected pair of channel ends, neither inheritable: a named pipe with a fresh random
/// name, one instance only, local clients only.
/// Opens the client end of the named pipe `name` (NUL-terminated UTF-16) for overlapped I/O,
/// not inheritable. The error carries the OS code (e.g. ERROR_PIPE_BUSY).
pub(super) fn open_client_end(name: &[u16]) -> io::Result<OwnedHandle> {
    // SAFETY: `name` is NUL-terminated UTF-16; default security, so not inheritable.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle that we own.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

pub(crate) fn channel_pair() -> io::Result<(Channel, Channel)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    let name = wide(&format!(
        r"\\.\pipe\multiprocess-{}-{}-{:016x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u64::from_le_bytes(nonce)
    ));
    // SAFETY: `name` is NUL-terminated UTF-16; default security; not inheritable.
    let server = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            PIPE_BUFFER,
            PIPE_BUFFER,
            0,
            std::ptr::null(),
        )
    };
    if server == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle that we own.
    let server = unsafe { OwnedHandle::from_raw_handle(server) };
    let client = open_client_end(&name)?;
    // The client is connected already; ConnectNamedPipe confirms it without waiting.
    let event = new_event()?;
    let mut block = OVERLAPPED {
        hEvent: event.as_raw_handle(),
        ..Default::default()
    };
    // SAFETY: `block` outlives the call: if it were pending we cancel and wait below.
    let ok = unsafe { ConnectNamedPipe(server.as_raw_handle(), &mut block) };
    if ok == 0 {
        match last_error() {
            ERROR_PIPE_CONNECTED => {}
            ERROR_IO_PENDING => {
                let mut n = 0;
                // SAFETY: cancels and waits for our own pending operation on `block`.
                unsafe {
                    CancelIoEx(server.as_raw_handle(), &block);
                    GetOverlappedResult(server.as_raw_handle(), &block, &mut n, 1);
                }
                return Err(io::Error::other("the channel's pipe did not connect"));
            }
            code => return Err(io::Error::from_raw_os_error(code as i32)),
        }
    }
    Ok((Channel::new(server)?, Channel::new(client)?))
}

impl Channel {
    /// Wraps one end of a pipe. Overlapped handles get non-blocking waits; a synchronous handle
    /// (a plain anonymous pipe) still reads and writes, but waiting on it blocks in the read.
    pub(crate) fn new(pipe: OwnedHandle) -> io::Result<Channel> {
        Self::wrap(pipe, false)
    }

    /// Wraps a connected TCP socket (std creates them overlapped), read and written with the
    /// same overlapped `ReadFile`/`WriteFile` as a pipe.
    pub(crate) fn from_socket(stream: std::net::TcpStream) -> io::Result<Channel> {
        use std::os::windows::io::{IntoRawSocket, OwnedSocket};
        let _ = stream.set_nodelay(true);
        let raw = OwnedSocket::from(stream).into_raw_socket();
        // SAFETY: a socket handle is a kernel handle; ownership moves here and it is closed
        // with `closesocket` in Drop.
        Self::wrap(
            unsafe { OwnedHandle::from_raw_handle(raw as usize as HANDLE) },
            true,
        )
    }

    fn wrap(pipe: OwnedHandle, socket: bool) -> io::Result<Channel> {
        let read_event = new_event()?;
        let write_event = new_event()?;
        let block = Box::new(PendingBlock(OVERLAPPED {
            hEvent: read_event.as_raw_handle(),
            ..Default::default()
        }));
        Ok(Channel {
            pipe: std::mem::ManuallyDrop::new(pipe),
            socket,
            read_event,
            read: Mutex::new(ReadSide {
                block,
                buf: vec![0u8; CHUNK].into_boxed_slice(),
                pending: false,
                start: 0,
                end: 0,
                eof: false,
            }),
            write: Mutex::new(WriteSide {
                event: write_event,
                flight: None,
                cut: false,
            }),
        })
    }

    pub(crate) fn raw(&self) -> RawHandle {
        self.pipe.as_raw_handle()
    }

    /// The event a waiter waits on while a read is pending.
    pub(crate) fn event(&self) -> HANDLE {
        self.read_event.as_raw_handle()
    }

    /// A second channel on the same pipe (used to write from another thread).
    pub(crate) fn try_clone(&self) -> io::Result<Channel> {
        Channel::new(self.duplicate_handle()?)
    }

    /// A new handle to the same pipe, owned by the caller (not inheritable). Not for sockets.
    pub(crate) fn duplicate_handle(&self) -> io::Result<OwnedHandle> {
        if self.socket {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a TCP connection cannot be passed to another process on Windows",
            ));
        }
        let mut dup: HANDLE = std::ptr::null_mut();
        // SAFETY: duplicates our own valid handle within this process, not inheritable.
        let ok = unsafe {
            DuplicateHandle(
                GetCurrentProcess(),
                self.pipe.as_raw_handle(),
                GetCurrentProcess(),
                &mut dup,
                0,
                0,
                DUPLICATE_SAME_ACCESS,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh handle that we own.
        Ok(unsafe { OwnedHandle::from_raw_handle(dup) })
    }

    /// True when bytes or end of file can be handed out now; otherwise makes sure a read is
    /// pending, so that [`event`](Channel::event) will be signalled when that changes.
    pub(crate) fn poll(&self) -> io::Result<bool> {
        let mut side = lock(&self.read);
        self.advance(&mut side)?;
        Ok(side.start < side.end || side.eof)
    }

    /// Moves the read side forward without blocking: collects a completed read, or starts one
    /// when nothing is buffered.
    fn advance(&self, side: &mut ReadSide) -> io::Result<()> {
        loop {
            if side.start < side.end || side.eof {
                return Ok(());
            }
            if side.pending {
                let mut n = 0u32;
                // SAFETY: the block belongs to a read we started on this pipe; bWait = FALSE.
                let ok = unsafe { GetOverlappedResult(self.raw(), &side.block.0, &mut n, 0) };
                if ok == 0 {
                    match last_error() {
                        ERROR_IO_INCOMPLETE => return Ok(()),
                        // The thread that started the read ended: start another.
                        ERROR_OPERATION_ABORTED => side.pending = false,
                        code if is_eof(code) || (self.socket && is_reset(code)) => {
                            side.pending = false;
                            side.eof = true;
                        }
                        code => {
                            side.pending = false;
                            return Err(io::Error::from_raw_os_error(code as i32));
                        }
                    }
                    continue;
                }
                side.pending = false;
                side.start = 0;
                side.end = n as usize;
                if n == 0 && self.socket {
                    side.eof = true; // a socket's zero-byte read: the peer closed
                }
                continue;
            }
            let mut n = 0u32;
            let len = side.buf.len() as u32;
            let buf = side.buf.as_mut_ptr();
            let block: *mut OVERLAPPED = &mut side.block.0;
            // SAFETY: `buf` and `block` are heap allocations owned by this channel that stay
            // in place until the read completes or is cancelled and awaited (see Drop).
            let ok = unsafe { ReadFile(self.raw(), buf, len, &mut n, block) };
            if ok != 0 {
                side.start = 0;
                side.end = n as usize;
                if n == 0 {
                    if self.socket {
                        side.eof = true; // the peer closed
                        return Ok(());
                    }
                    // A zero-byte read is not end of file for a byte pipe: nothing came.
                    continue;
                }
                return Ok(());
            }
            match last_error() {
                ERROR_IO_PENDING => {
                    side.pending = true;
                    return Ok(());
                }
                ERROR_OPERATION_ABORTED => continue,
                code if is_eof(code) || (self.socket && is_reset(code)) => side.eof = true,
                code => return Err(io::Error::from_raw_os_error(code as i32)),
            }
        }
    }

    /// Copies buffered bytes out: `Ok(0)` at end of file.
    fn take(side: &mut ReadSide, out: &mut [u8]) -> usize {
        let n = (side.end - side.start).min(out.len());
        out[..n].copy_from_slice(&side.buf[side.start..side.start + n]);
        side.start += n;
        n
    }

    /// Reads what is available without blocking: `Ok(0)` is end of file, `WouldBlock` means
    /// nothing is there yet.
    pub(crate) fn read_available(&self, out: &mut [u8]) -> io::Result<usize> {
        let mut side = lock(&self.read);
        self.advance(&mut side)?;
        if side.start < side.end {
            return Ok(Self::take(&mut side, out));
        }
        if side.eof {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn read_blocking(&self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.read_available(out) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            // SAFETY: waits on our own event handle.
            unsafe { WaitForSingleObject(self.event(), INFINITE) };
        }
    }

    fn write_blocking(&self, data: &[u8]) -> io::Result<usize> {
        let mut side = lock(&self.write);
        self.settle_flight(&mut side)?;
        let len = data.len().min(u32::MAX as usize) as u32;
        let mut block = OVERLAPPED {
            hEvent: side.event.as_raw_handle(),
            ..Default::default()
        };
        let mut n = 0u32;
        // SAFETY: `data` and `block` live until the write has completed: we wait for it below
        // before returning, holding the lock on the event.
        let ok = unsafe { WriteFile(self.raw(), data.as_ptr(), len, &mut n, &mut block) };
        if ok == 0 && last_error() != ERROR_IO_PENDING {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: waits for the write started above (bWait = TRUE).
        if unsafe { GetOverlappedResult(self.raw(), &block, &mut n, 1) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Before a write that is not the in-flight one's continuation: a write left in flight by
    /// a dropped async send, or a send whose deadline passed, is cancelled and awaited. If none of its bytes went into the pipe,
    /// nothing happened; if some did, the stream is off its message boundaries and this end
    /// refuses to write from then on.
    fn settle_flight(&self, side: &mut WriteSide) -> io::Result<()> {
        if let Some(flight) = side.flight.take() {
            let mut n = 0u32;
            // SAFETY: cancels our own write on `flight.block` and waits (bWait = TRUE) until
            // the kernel has let go of the block and the bytes, which live until then.
            unsafe {
                CancelIoEx(self.raw(), &flight.block.0);
                GetOverlappedResult(self.raw(), &flight.block.0, &mut n, 1);
            }
            side.cut |= n > 0;
        }
        if side.cut {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "a send was cut off mid-message (an async send dropped, or a send's timeout \
                 passed): its bytes are in the pipe, so this end cannot send any more",
            ));
        }
        Ok(())
    }

    /// Writes without blocking (a step of an async send or a send with a deadline): `Ok(n)` once the first `n` bytes of
    /// `data` are in the pipe, `WouldBlock` while a write of them is in flight (wait on
    /// [`write_event`](Channel::write_event), then call again with the same bytes). A call with
    /// other bytes than the flight's is a new send after a dropped one: see `settle_flight`.
    pub(crate) fn write_now(&self, data: &[u8]) -> io::Result<usize> {
        let mut side = lock(&self.write);
        let continued = side.flight.as_ref().map(|f| data.starts_with(&f.bytes));
        if continued == Some(false) {
            self.settle_flight(&mut side)?;
        }
        if let Some(flight) = &side.flight {
            let mut n = 0u32;
            // SAFETY: the block belongs to our write in flight; bWait = FALSE.
            let ok = unsafe { GetOverlappedResult(self.raw(), &flight.block.0, &mut n, 0) };
            let code = if ok == 0 { last_error() } else { 0 };
            if code == ERROR_IO_INCOMPLETE {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            side.flight = None;
            match code {
                0 => return Ok(n as usize),
                // The thread that started the write ended (Windows cancels a thread's I/O
                // then): what went through counts, the rest is written again below.
                ERROR_OPERATION_ABORTED if n > 0 => return Ok(n as usize),
                ERROR_OPERATION_ABORTED => {}
                code => return Err(io::Error::from_raw_os_error(code as i32)),
            }
        }
        // Refuses if cut (nothing is in flight here).
        self.settle_flight(&mut side)?;
        if data.is_empty() {
            return Ok(0);
        }
        let bytes = data[..data.len().min(WRITE_CHUNK)].to_vec();
        let mut block = Box::new(PendingBlock(OVERLAPPED {
            hEvent: side.event.as_raw_handle(),
            ..Default::default()
        }));
        let mut n = 0u32;
        // SAFETY: `bytes` and `block` are heap allocations that stay in place, owned by the
        // flight, until the write completes or is cancelled and awaited (`settle_flight`, Drop).
        let ok = unsafe {
            WriteFile(
                self.raw(),
                bytes.as_ptr(),
                bytes.len() as u32,
                &mut n,
                &mut block.0,
            )
        };
        if ok != 0 {
            return Ok(n as usize);
        }
        match last_error() {
            ERROR_IO_PENDING => {
                side.flight = Some(Flight { block, bytes });
                Err(io::ErrorKind::WouldBlock.into())
            }
            code => Err(io::Error::from_raw_os_error(code as i32)),
        }
    }

    /// The write side's event: signalled when the write in flight completes.
    pub(crate) fn write_event(&self) -> HANDLE {
        lock(&self.write).event.as_raw_handle()
    }

    /// True while a write that must not block (an async send's, a send's with a deadline) is
    /// in flight.
    pub(crate) fn write_in_flight(&self) -> bool {
        lock(&self.write).flight.is_some()
    }
}

impl Read for &Channel {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_blocking(out)
    }
}

/// Writes all of `parts` on `channel`, in order (up to [`JOINED_WRITE`] bytes of them joined
/// into one `WriteFile`, see the channel's `write_vectored`).
pub(crate) fn write_all_vectored(channel: &Channel, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut bufs = &mut slices[..];
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match (&*channel).write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Up to this many bytes, the buffers of a vectored write are joined into one `WriteFile`.
const JOINED_WRITE: usize = 64 * 1024;

impl Write for &Channel {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_blocking(data)
    }

    /// A frame's header and a payload of up to [`JOINED_WRITE`] bytes in one `WriteFile`
    /// (a copy), as on Unix they go in one `writev` and as CPython's `send_bytes` joins them
    /// below 16 KiB. Written apart, a receiver could wake on the header alone, and a peer that
    /// ends then (one that only waited for a word) failed the second write: the sender saw
    /// `Pipe closed` for a message its peer had been told of (seen under Wine, on a loaded
    /// machine). A larger write sends its first buffer, as std's default does.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total <= JOINED_WRITE {
            // A small message (a report, a word) is joined on the stack.
            let mut small = [0u8; 256];
            let mut large = Vec::new();
            let joined: &mut [u8] = if total <= small.len() {
                &mut small[..total]
            } else {
                large.resize(total, 0);
                &mut large
            };
            let mut at = 0;
            for b in bufs {
                joined[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
            return self.write_blocking(joined);
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.write_blocking(first)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let writes = self.write.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = writes.flight.take() {
            let mut n = 0;
            // SAFETY: cancels the write left in flight by a dropped async send and waits until
            // the kernel has let go of its block and bytes, before they are freed.
            unsafe {
                CancelIoEx(self.pipe.as_raw_handle(), &flight.block.0);
                GetOverlappedResult(self.pipe.as_raw_handle(), &flight.block.0, &mut n, 1);
            }
        }
        let side = self.read.get_mut().unwrap_or_else(|e| e.into_inner());
        if side.pending {
            let mut n = 0;
            // SAFETY: cancels our pending read and waits until the kernel has let go of the
            // block and the buffer, before they are freed.
            unsafe {
                CancelIoEx(self.pipe.as_raw_handle(), &side.block.0);
                GetOverlappedResult(self.pipe.as_raw_handle(), &side.block.0, &mut n, 1);
            }
        }
        // SAFETY: dropped exactly once, here.
        let handle = unsafe { std::mem::ManuallyDrop::take(&mut self.pipe) };
        if self.socket {
            use std::os::windows::io::{FromRawSocket, IntoRawHandle, OwnedSocket};
            // SAFETY: this handle is the socket `from_socket` took over; closesocket it.
            drop(unsafe { OwnedSocket::from_raw_socket(handle.into_raw_handle() as usize as u64) });
        } else {
            drop(handle);
        }
    }
}
