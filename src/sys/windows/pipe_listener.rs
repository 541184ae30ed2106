//! `Listener` and `client` on Windows, as CPython does them there: over named pipes
//! (`\\.\pipe\name`, Python's `AF_PIPE`) or TCP. The pipe listener keeps one unconnected
//! instance ready at all times, so that clients find the name while it waits in `accept`; each
//! accepted instance becomes a [`Channel`]. A TCP connection is an overlapped socket in a
//! `Channel`, read and written like a pipe.

use std::fmt;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::ERROR_IO_INCOMPLETE;
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_IO_PENDING, ERROR_OPERATION_ABORTED,
    ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, ERROR_SEM_TIMEOUT, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_FAILED,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, GetNamedPipeHandleStateW, PIPE_READMODE_BYTE,
    PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT, WaitNamedPipeW,
};
use windows_sys::Win32::System::Threading::{CreateEventW, WaitForSingleObject};

use super::pipe::open_client_end;
use super::{Channel, Stream};
use crate::sys::{Address, time_left};

/// Each direction's buffer quota of a listener's pipe instances.
const PIPE_BUFFER: u32 = 64 * 1024;
/// How long a client keeps retrying a pipe whose instances are all busy (CPython: 20 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The prefix every local named pipe's name starts with.
const PIPE_PREFIX: &str = r"\\.\pipe\";

/// A server for `Listener`: a named pipe (Python's `AF_PIPE`) or a TCP socket.
#[derive(Debug)]
pub(crate) enum SocketListener {
    /// Named-pipe instances.
    Pipe(PipeListener),
    /// A TCP listening socket; accepted connections are overlapped sockets in a [`Channel`].
    Tcp(std::net::TcpListener),
}

/// A named-pipe server.
pub(crate) struct PipeListener {
    /// The pipe's name, NUL-terminated UTF-16.
    name: Vec<u16>,
    /// The pipe's name as given.
    display: String,
    /// The instance the next client connects to (`None` only if making one failed).
    next: Mutex<Option<Waiting>>,
}

/// A pipe instance waiting for a client, with the offer an accept that waits with a limit (or
/// an async one) left in flight on it, if any (kept across looks, so that its event can be waited on).
struct Waiting {
    /// Declared first: dropped (cancelled and awaited) while the instance is still open.
    offer: Option<Offer>,
    instance: OwnedHandle,
}

/// A `ConnectNamedPipe` in flight: the kernel writes to `block` until it completes or is
/// cancelled and awaited (Drop). The event is shared with its waiters, who keep it open.
struct Offer {
    block: Box<OfferBlock>,
    /// Kept open for the kernel; waited on by accepts that wait for a client with a limit
    /// (`accept_timeout`, `accept_async`).
    event: std::sync::Arc<OwnedHandle>,
    /// The instance's handle (open while the offer lives: see [`Waiting`]).
    instance: usize,
}

struct OfferBlock(OVERLAPPED);

// SAFETY: the only pointer inside is the event handle, a process-wide value usable from any
// thread; the block is only touched under the listener's `next` lock.
unsafe impl Send for OfferBlock {}

impl Drop for Offer {
    fn drop(&mut self) {
        let instance = self.instance as HANDLE;
        let mut n = 0u32;
        // SAFETY: cancels our own operation on `block` and waits (bWait = TRUE) until the
        // kernel has let go of it, before it is freed; the instance is still open.
        unsafe {
            CancelIoEx(instance, &self.block.0);
            GetOverlappedResult(instance, &self.block.0, &mut n, 1);
        }
    }
}

impl Waiting {
    fn new(instance: OwnedHandle) -> Waiting {
        Waiting {
            offer: None,
            instance,
        }
    }

    /// Waits until a client has connected: through the offer in flight, if any.
    fn wait_for_client(mut self) -> io::Result<OwnedHandle> {
        while let Some(offer) = self.offer.take() {
            let mut n = 0u32;
            // SAFETY: waits (bWait = TRUE) for our own operation on the offer's block.
            let ok = unsafe {
                GetOverlappedResult(self.instance.as_raw_handle(), &offer.block.0, &mut n, 1)
            };
            // Completed: its Drop finds nothing to cancel and nothing to wait for.
            drop(offer);
            if ok != 0 {
                return Ok(self.instance);
            }
            match last_error() {
                ERROR_PIPE_CONNECTED => return Ok(self.instance),
                // The thread that made the offer ended: offer again below.
                ERROR_OPERATION_ABORTED => {}
                code => return Err(io::Error::from_raw_os_error(code as i32)),
            }
        }
        wait_for_client(&self.instance)?;
        let Waiting { offer: _, instance } = self;
        Ok(instance)
    }
}

impl fmt::Debug for PipeListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeListener")
            .field("name", &self.display)
            .finish_non_exhaustive()
    }
}

use super::super::lock;

fn last_error() -> u32 {
    // SAFETY: reads the calling thread's last-error value.
    unsafe { GetLastError() }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// The address families Windows lacks here.
fn unsupported(address: &Address) -> io::Error {
    let what = match address {
        Address::Unix(_) => "Unix socket paths",
        Address::Abstract(_) => "abstract socket names",
        Address::Tcp(_) | Address::Pipe(_) => "this address",
    };
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{what} are not supported by Listener and Client on Windows; use a named pipe \
             (Address::Pipe(r\"\\\\.\\pipe\\name\")) or a TCP address"
        ),
    )
}

/// The pipe name of `address`, checked to be a local named pipe.
fn pipe_name(address: &Address) -> io::Result<&str> {
    let Address::Pipe(name) = address else {
        return Err(unsupported(address));
    };
    let ok = name.len() > PIPE_PREFIX.len()
        && name[..PIPE_PREFIX.len()].eq_ignore_ascii_case(PIPE_PREFIX)
        && !name.contains('\0');
    if !ok {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a named pipe address must look like \\\\.\\pipe\\name, not {name:?}"),
        ));
    }
    Ok(name)
}

/// A new instance of the pipe `name`, waiting for a client. The first one of a listener must
/// create the name: if the name exists already, that is "address in use".
fn new_instance(name: &[u16], first: bool) -> io::Result<OwnedHandle> {
    let mut open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
    if first {
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    }
    // SAFETY: `name` is NUL-terminated UTF-16; default security, so not inheritable.
    let h = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            open_mode,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT,
            PIPE_UNLIMITED_INSTANCES,
            PIPE_BUFFER,
            PIPE_BUFFER,
            0,
            std::ptr::null(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        let code = last_error();
        if first && matches!(code, ERROR_ACCESS_DENIED | ERROR_PIPE_BUSY) {
            return Err(in_use());
        }
        return Err(io::Error::from_raw_os_error(code as i32));
    }
    // SAFETY: a fresh handle that we own.
    let h = unsafe { OwnedHandle::from_raw_handle(h) };
    if first && instances(&h)? > 1 {
        // Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE; the count catches it there.
        return Err(in_use());
    }
    Ok(h)
}

fn in_use() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "address in use: a pipe with this name exists already",
    )
}

/// How many instances of `pipe`'s name exist.
fn instances(pipe: &OwnedHandle) -> io::Result<u32> {
    let mut count = 0u32;
    // SAFETY: queries our own valid pipe handle; the other outputs are not asked for (null).
    let ok = unsafe {
        GetNamedPipeHandleStateW(
            pipe.as_raw_handle(),
            std::ptr::null_mut(),
            &mut count,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(count)
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

/// Waits until a client has connected to `instance` (one that already has counts).
fn wait_for_client(instance: &OwnedHandle) -> io::Result<()> {
    let event = new_event()?;
    let mut block = OVERLAPPED {
        hEvent: event.as_raw_handle(),
        ..Default::default()
    };
    // SAFETY: `block` and `event` outlive the operation: if it is pending, we wait for it to
    // complete below before returning.
    let ok = unsafe { ConnectNamedPipe(instance.as_raw_handle(), &mut block) };
    if ok != 0 {
        return Ok(());
    }
    match last_error() {
        // The client came between CreateNamedPipeW and now.
        ERROR_PIPE_CONNECTED => Ok(()),
        ERROR_IO_PENDING => {
            let mut n = 0u32;
            // SAFETY: waits (bWait = TRUE) for the operation started above on `block`.
            if unsafe { GetOverlappedResult(instance.as_raw_handle(), &block, &mut n, 1) } == 0 {
                let code = last_error();
                if code == ERROR_PIPE_CONNECTED {
                    return Ok(());
                }
                return Err(io::Error::from_raw_os_error(code as i32));
            }
            Ok(())
        }
        code => Err(io::Error::from_raw_os_error(code as i32)),
    }
}

impl SocketListener {
    /// Accepts one client: its stream and its address (a pipe's name for a pipe client).
    pub(crate) fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            SocketListener::Pipe(p) => p.accept(),
            SocketListener::Tcp(l) => {
                let (stream, peer) = l.accept()?;
                Ok((Channel::from_socket(stream)?, peer.to_string()))
            }
        }
    }

    /// Accepts a client only if one is waiting: `None` if none is (the caller keeps other
    /// accepts of this process out meanwhile). A TCP listener is made non-blocking for the
    /// call; a pipe instance is offered to clients and the offer withdrawn if none came.
    pub(crate) fn accept_now(&self) -> io::Result<Option<(Stream, String)>> {
        match self {
            SocketListener::Pipe(p) => p.accept_now(),
            SocketListener::Tcp(l) => {
                l.set_nonblocking(true)?;
                let got = l.accept();
                l.set_nonblocking(false)?;
                match got {
                    Ok((stream, peer)) => {
                        // An accepted socket inherits the listener's mode.
                        stream.set_nonblocking(false)?;
                        Ok(Some((Channel::from_socket(stream)?, peer.to_string())))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The event of a pipe listener's offer to clients in flight (see
    /// [`accept_now`](Self::accept_now)), signalled when a client connects; `None` for TCP or
    /// when no offer is in flight.
    pub(crate) fn offer_event(&self) -> Option<std::sync::Arc<OwnedHandle>> {
        match self {
            SocketListener::Pipe(p) => p.offer_event(),
            SocketListener::Tcp(_) => None,
        }
    }

    /// Waits up to `timeout` for a client, after [`accept_now`](Self::accept_now) found none:
    /// on the event of the pipe's offer in flight; a TCP listener, with no handle to wait on,
    /// sleeps `pause` (doubling it, up to 20 ms) before the next look.
    pub(crate) fn wait_for_client(
        &self,
        timeout: Duration,
        pause: &mut Duration,
    ) -> io::Result<()> {
        if let Some(event) = self.offer_event() {
            // Rounded up, so that the wait never ends before the timeout.
            let ms = timeout
                .as_micros()
                .div_ceil(1000)
                .min(u128::from(super::INFINITE_MS - 1)) as u32;
            // SAFETY: a live event handle (`event` keeps it open across the wait).
            if unsafe { WaitForSingleObject(event.as_raw_handle(), ms) } == WAIT_FAILED {
                return Err(io::Error::last_os_error());
            }
            return Ok(());
        }
        std::thread::sleep((*pause).min(timeout));
        *pause = (*pause * 2).min(Duration::from_millis(20));
        Ok(())
    }

    /// The bound TCP address (with the port the OS chose), for TCP listeners.
    pub(crate) fn local_tcp_address(&self) -> Option<std::net::SocketAddr> {
        match self {
            SocketListener::Pipe(_) => None,
            SocketListener::Tcp(l) => l.local_addr().ok(),
        }
    }
}

impl PipeListener {
    fn accept(&self) -> io::Result<(Stream, String)> {
        let mut next = lock(&self.next);
        // Make the following instance first, as CPython does: the name never goes missing
        // while we wait, and no other server can take it over.
        let waiting = match next.take() {
            Some(w) => w,
            None => Waiting::new(new_instance(&self.name, false)?),
        };
        *next = new_instance(&self.name, false).ok().map(Waiting::new);
        let instance = waiting.wait_for_client()?;
        Ok((Channel::new(instance)?, self.display.clone()))
    }
}

impl PipeListener {
    /// [`accept`](Self::accept) if a client has connected to the waiting instance, else
    /// `None`, with an offer to clients left in flight on the instance (its event is
    /// [`offer_event`](Self::offer_event)).
    fn accept_now(&self) -> io::Result<Option<(Stream, String)>> {
        let mut next = lock(&self.next);
        let mut waiting = match next.take() {
            Some(w) => w,
            None => Waiting::new(new_instance(&self.name, false)?),
        };
        if !waiting.offered_and_taken()? {
            *next = Some(waiting);
            return Ok(None);
        }
        *next = new_instance(&self.name, false).ok().map(Waiting::new);
        let Waiting { offer: _, instance } = waiting;
        Ok(Some((Channel::new(instance)?, self.display.clone())))
    }

    /// The event of the offer in flight (signalled when a client connects), if any.
    fn offer_event(&self) -> Option<std::sync::Arc<OwnedHandle>> {
        let next = lock(&self.next);
        next.as_ref()?.offer.as_ref().map(|o| o.event.clone())
    }
}

impl Waiting {
    /// Whether a client has connected: looks at the offer in flight, or makes one
    /// (`ConnectNamedPipe`, overlapped), which stays in flight if no client is there yet.
    fn offered_and_taken(&mut self) -> io::Result<bool> {
        let raw = self.instance.as_raw_handle();
        loop {
            if let Some(offer) = &self.offer {
                let mut n = 0u32;
                // SAFETY: looks (bWait = FALSE) at our own operation on the offer's block.
                let ok = unsafe { GetOverlappedResult(raw, &offer.block.0, &mut n, 0) };
                let code = if ok == 0 { last_error() } else { 0 };
                if code == ERROR_IO_INCOMPLETE {
                    return Ok(false);
                }
                // Completed: its Drop finds nothing to cancel and nothing to wait for.
                self.offer = None;
                match code {
                    0 | ERROR_PIPE_CONNECTED => return Ok(true),
                    // The thread that made the offer ended: offer again.
                    ERROR_OPERATION_ABORTED => continue,
                    code => return Err(io::Error::from_raw_os_error(code as i32)),
                }
            }
            let event = std::sync::Arc::new(new_event()?);
            let mut block = Box::new(OfferBlock(OVERLAPPED {
                hEvent: event.as_raw_handle(),
                ..Default::default()
            }));
            // SAFETY: `block` is a heap allocation the offer keeps in place until the
            // operation completes or is cancelled and awaited (Offer's Drop).
            let ok = unsafe { ConnectNamedPipe(raw, &mut block.0) };
            if ok != 0 {
                return Ok(true);
            }
            return match last_error() {
                ERROR_PIPE_CONNECTED => Ok(true),
                ERROR_IO_PENDING => {
                    self.offer = Some(Offer {
                        block,
                        event,
                        instance: raw as usize,
                    });
                    Ok(false)
                }
                code => Err(io::Error::from_raw_os_error(code as i32)),
            };
        }
    }
}

/// Listens at `address`: a named pipe or a TCP address.
pub(crate) fn listen(address: &Address) -> io::Result<SocketListener> {
    if let Address::Tcp(addr) = address {
        return Ok(SocketListener::Tcp(std::net::TcpListener::bind(addr)?));
    }
    let display = pipe_name(address)?.to_owned();
    let name = wide(&display);
    let first = new_instance(&name, true)?;
    Ok(SocketListener::Pipe(PipeListener {
        name,
        display,
        next: Mutex::new(Some(Waiting::new(first))),
    }))
}

/// Connects to `address`: a TCP address, or a named pipe (waiting while all its instances are
/// busy), until `deadline` (`None`: a TCP connect as long as the OS lets it wait; a pipe
/// [`CONNECT_TIMEOUT`], as Python's client). Past the deadline: `TimedOut`.
pub(crate) fn connect(address: &Address, deadline: Option<Instant>) -> io::Result<Stream> {
    if let Address::Tcp(addr) = address {
        return Channel::from_socket(match deadline {
            None => std::net::TcpStream::connect(addr)?,
            Some(d) => std::net::TcpStream::connect_timeout(addr, time_left(d)?)?,
        });
    }
    let name = wide(pipe_name(address)?);
    let deadline = deadline.unwrap_or_else(|| Instant::now() + CONNECT_TIMEOUT);
    loop {
        let code = match open_client_end(&name) {
            Ok(h) => return Channel::new(h),
            Err(e) => e.raw_os_error().unwrap_or(0) as u32,
        };
        if code == ERROR_FILE_NOT_FOUND {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no listener at this named pipe",
            ));
        }
        if code != ERROR_PIPE_BUSY {
            return Err(io::Error::from_raw_os_error(code as i32));
        }
        let left = time_left(deadline)?;
        let wait_ms = left.as_millis().clamp(1, 1000) as u32;
        // SAFETY: `name` is NUL-terminated UTF-16.
        if unsafe { WaitNamedPipeW(name.as_ptr(), wait_ms) } == 0 {
            let code = last_error();
            if !matches!(
                code,
                ERROR_SEM_TIMEOUT | ERROR_PIPE_BUSY | ERROR_FILE_NOT_FOUND
            ) {
                return Err(io::Error::from_raw_os_error(code as i32));
            }
        }
    }
}

/// A fresh pipe name for `Listener::bind(None, ..)`.
pub(crate) fn default_listener_address() -> io::Result<Address> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Address::Pipe(format!(
        r"{PIPE_PREFIX}multiprocess-{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    )))
}
