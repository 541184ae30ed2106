//! Python's `multiprocessing.connection`: [`pipe`] and [`Connection`], and [`wait`] on several
//! objects at once.
//!
//! Messages are framed exactly as CPython frames them (a 4-byte big-endian signed length, or
//! `-1` and an 8-byte length above 2 GiB), so [`Connection::send_bytes`] and
//! [`Connection::recv_bytes`] interoperate with Python byte for byte; [`Connection::send`] and
//! [`Connection::recv`] carry serde values in the crate's codec inside those frames.
//!
//! Each end reads ahead: one read takes whatever the stream holds, so a small message costs one
//! system call to receive, and a burst of them one call for many. [`Connection::poll`] and
//! [`wait`] count bytes already read as ready, and a `Connection` sent to another process takes
//! its unread bytes with it. OS handles inside a message sent with [`Connection::send`] follow
//! it as a frame of their own (on Unix its bytes carry the descriptors, `SCM_RIGHTS`).
//!
//! Between the two ends of one [`pipe`] (both ours, wherever they travel), a message of 1 MiB
//! or more does not go through the stream: the receiving process reads chunks of it straight
//! out of the sender's memory while the sender writes other chunks straight into the
//! receiver's buffer (`process_vm_readv`/`process_vm_writev`), one copy on two CPUs where the
//! stream makes two. This is Linux; elsewhere large messages use the stream (macOS has no
//! unprivileged equivalent; on Windows, `ReadProcessMemory`/`WriteProcessMemory` would do, but
//! cannot be tested under Wine, whose server aborts large cross-process copies). The stream
//! carries a small offer in the message's place, so order is kept. A receiver that is not
//! receiving within 2 ms, or may not read the sender's memory (another PID namespace, a
//! security policy), gets the message through the stream as before. Connections to a [`Listener`] or from [`client`] always frame
//! everything in the stream (their peer may be CPython). Measured: W4 in `BENCHMARKS.md`.
//!
//! ## Async (cargo feature `tokio`)
//!
//! `Connection::{recv_bytes,recv,send_bytes,send}_async` wait on tokio's reactor, never
//! blocking the runtime thread on the stream, which stays blocking for the blocking methods: a
//! receive gathers bytes into the read-ahead buffer with reads that return at once
//! (`MSG_DONTWAIT` on a socket, a read after a zero-timeout `poll` on a pipe) and takes the
//! message once whole, so a dropped receive loses nothing; a send writes what the stream takes
//! and waits for room. Messages are still received and sent whole: the read lock is held only
//! while reading what is there (while a blocking `recv` in another thread holds it, an async
//! receive retries on a timer, 1 to 20 ms, instead of blocking), and an async send holds the
//! write side across its awaits. An async send frames everything in the stream (no copy
//! between processes), and an async receive declines such a copy when offered. On Windows
//! the waits go through the OS thread pool and writes are overlapped. `Listener::accept_async`
//! waits for a client on the reactor and runs the handshake with these methods; `wait_async` is
//! the async [`wait`] (both with the `tokio` feature too). Each method's docs give its cancel
//! safety.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[cfg(feature = "tokio")]
mod aio;
mod auth;
mod bulk;
mod feed;
mod gather;
mod inbox;
mod listener;

pub use crate::sys::Address;
#[cfg(feature = "tokio")]
pub use aio::wait_async;
pub(crate) use listener::client_until;
pub use listener::{HANDSHAKE_TIMEOUT, Listener, client, client_timeout};

use crate::error::{Error, Result};
use crate::process::{ParentProcess, Sentinel, lock};
use crate::sys;
use crate::wire;
use bulk::Bulk;
use inbox::{Inbox, Link};

/// Something [`wait`] can wait on.
pub trait Waitable {
    /// The OS handle that becomes readable when the object is ready.
    #[doc(hidden)]
    fn wait_handle(&self) -> Result<sys::WaitHandle<'_>>;

    /// True if the object is ready without asking the OS (a connection holding bytes it has
    /// already read).
    #[doc(hidden)]
    fn ready_now(&self) -> bool {
        false
    }
}

impl Waitable for Sentinel {
    fn wait_handle(&self) -> Result<sys::WaitHandle<'_>> {
        Ok(self.handle())
    }
}

/// Sockets of std's (Python's `wait` takes sockets too): `TcpStream`, `TcpListener`,
/// `UdpSocket`, and on Unix `UnixStream`, `UnixListener`, `UnixDatagram`. A socket is ready
/// when reading it would not block: data or end of file, or a connection to accept. (On
/// Windows, where a socket is no waitable kernel object, [`wait`] asks `WSAPoll` about its
/// sockets every 5 ms while it waits.)
impl<S: sys::WaitSocket> Waitable for S {
    fn wait_handle(&self) -> Result<sys::WaitHandle<'_>> {
        self.socket_handle()
            .map_err(|e| Error::io("wait() on a socket", e))
    }
}

/// Ready when the parent has ended (Python's `parent_process().sentinel`).
impl Waitable for ParentProcess {
    fn wait_handle(&self) -> Result<sys::WaitHandle<'_>> {
        Ok(self.handle())
    }
}

/// `multiprocessing.connection.wait(object_list, timeout)`: waits until at least one object is
/// ready or `timeout` passes (`None`: no limit; zero: just look), and returns the indices of the
/// ready ones (empty on timeout). A [`Connection`] is ready when a message or end of file can
/// be read; a sentinel when its process has ended; a socket of std's (`TcpStream`,
/// `TcpListener`, `UnixStream`, ...) when reading it, or accepting on it, would not block.
///
/// # Errors
/// [`Error::Io`] if the OS wait fails; [`Error::State`] (`handle is closed`) for a closed
/// connection.
///
/// ```
/// use std::time::Duration;
/// let (a, b) = multiprocess::pipe()?;
/// assert!(multiprocess::wait(&[&a, &b], Some(Duration::ZERO))?.is_empty());
/// b.send(&"hello")?;
/// assert_eq!(multiprocess::wait(&[&a, &b], None)?, vec![0]);
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let handles = objects
        .iter()
        .map(|o| o.wait_handle())
        .collect::<Result<Vec<_>>>()?;
    let now: Vec<bool> = objects.iter().map(|o| o.ready_now()).collect();
    // Objects ready already: only look at the others, without waiting.
    let timeout = if now.contains(&true) {
        Some(Duration::ZERO)
    } else {
        timeout
    };
    let ready = sys::wait_readable(&handles, timeout).map_err(|e| Error::io("wait()", e))?;
    Ok(ready
        .iter()
        .zip(now)
        .enumerate()
        .filter(|(_, (r, n))| **r || *n)
        .map(|(i, _)| i)
        .collect())
}

/// `multiprocessing.Pipe()`: two connected [`Connection`]s that both send and receive (a
/// socket pair). [`pipe_one_way`] is Python's `Pipe(duplex=False)`.
///
/// # Errors
/// [`Error::Io`] if the OS cannot make the pair.
///
/// ```
/// let (parent_end, child_end) = multiprocess::pipe()?;
/// child_end.send(&(1u32, String::from("one")))?;
/// assert_eq!(parent_end.recv::<(u32, String)>()?, (1, "one".to_string()));
/// parent_end.send_bytes(b"raw")?;
/// assert_eq!(child_end.recv_bytes()?, b"raw");
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub fn pipe() -> Result<(Connection, Connection)> {
    pipe_with(true)
}

/// A one-way pipe (Python's `Pipe(duplex=False)`): the first end only receives, the second
/// only sends.
///
/// ```
/// let (reader, writer) = multiprocess::pipe_one_way()?;
/// writer.send(&7u8)?;
/// assert_eq!(reader.recv::<u8>()?, 7);
/// assert!(reader.send(&1u8).is_err());
/// # Ok::<(), multiprocess::Error>(())
/// ```
///
/// # Errors
/// As [`pipe`].
pub fn pipe_one_way() -> Result<(Connection, Connection)> {
    pipe_with(false)
}

fn pipe_with(duplex: bool) -> Result<(Connection, Connection)> {
    let (a, b) = sys::stream_pair(duplex).map_err(|e| Error::io("creating a pipe", e))?;
    let (mut a, mut b) = if duplex {
        (
            Connection::new(a, true, true),
            Connection::new(b, true, true),
        )
    } else {
        (
            Connection::new(a, true, false),
            Connection::new(b, false, true),
        )
    };
    if let Some((x, y)) = Bulk::pair() {
        a.bulk = Some(x);
        b.bulk = Some(y);
    }
    Ok((a, b))
}

/// One end of a [`pipe`] (Python's `multiprocessing.connection.Connection`).
///
/// `send*`, `recv*` and `poll` take `&self`: whole messages are sent and received under internal
/// locks, so a `Connection` can be shared between threads (in an `Arc`) without interleaving
/// frames. Closing takes `&mut self` ([`close`](Connection::close)), or happens on drop.
///
/// Its OS handle is there for other code to wait on (`AsFd`/`AsRawFd` on Unix,
/// `AsHandle`/`AsRawHandle` on Windows, and Python's [`fileno`](Connection::fileno)). A
/// `Connection` reads ahead, so a message it has already read is not announced by the handle:
/// ask [`poll`](Connection::poll)`(Some(Duration::ZERO))` before waiting on it. With the cargo
/// feature `tokio`, the `*_async` methods do this themselves (see the module docs).
///
/// Between processes: one end goes to the child as an argument, the parent keeps the other
/// (Python's `parent_conn, child_conn = Pipe()`).
///
/// ```standalone_crate
/// use multiprocess::{Connection, Process};
///
/// fn child(conn: Connection) {
///     let n: u64 = conn.recv().unwrap();
///     conn.send(&(n, n * n)).unwrap();
///     conn.send_bytes(b"bye").unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let (parent_end, child_end) = multiprocess::pipe()?;
/// let mut p = Process::new(child, (child_end,));
/// p.start()?;
/// parent_end.send(&12u64)?;
/// assert_eq!(parent_end.recv::<(u64, u64)>()?, (12, 144));
/// assert_eq!(parent_end.recv_bytes()?, b"bye");
/// p.join()?;
/// assert!(matches!(parent_end.recv_bytes(), Err(multiprocess::Error::Eof)));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Connection {
    stream: Option<sys::Stream>,
    /// Bytes read ahead, under the lock that makes receiving one message atomic.
    reading: Mutex<Inbox>,
    /// Whether `reading` holds bytes (for `poll` and `wait` without taking the lock).
    buffered: AtomicBool,
    /// The right to write one message: a blocking send holds it for the call, an async send
    /// across its awaits.
    writing: WriteLock,
    /// Set when a send was cut off mid-message (an async send dropped, a send's deadline
    /// passed): the stream is off a message boundary, so this end sends no more.
    send_broken: AtomicBool,
    /// Cleared when a too-long message leaves the stream off a message boundary.
    readable: AtomicBool,
    writable: bool,
    /// The stream is a socket (on Unix, handles may arrive with its bytes).
    socket: bool,
    /// Control shared with the other end of a [`pipe`]: large messages are copied straight
    /// between the two processes' memory (`bulk.rs`). `None` for a connection to a process
    /// that may not be ours (Listener/Client, a wrapped descriptor).
    bulk: Option<Bulk>,
}

const CLOSED: &str = "handle is closed";

sys::impl_os_handle!(Connection, os_handle);

impl Connection {
    /// In a child just forked (one thread) that must not keep this connection: closes its
    /// descriptors and forgets it, freeing none of its memory, which is its parent's (each page
    /// a forked child writes is a copy: issue 19).
    pub(crate) fn abandon(self) {
        if let Some(stream) = &self.stream {
            sys::close_abandoned(sys::stream_handle(stream));
        }
        if let Some(bulk) = &self.bulk {
            bulk.close_handles();
        }
        std::mem::forget(self);
    }

    pub(crate) fn new(stream: sys::Stream, readable: bool, writable: bool) -> Connection {
        Connection::with_inbox(stream, readable, writable, Inbox::default())
    }

    fn with_inbox(stream: sys::Stream, readable: bool, writable: bool, inbox: Inbox) -> Self {
        Connection {
            bulk: None,
            socket: sys::stream_carries_handles(&stream),
            stream: Some(stream),
            buffered: AtomicBool::new(inbox.has_bytes()),
            reading: Mutex::new(inbox),
            writing: WriteLock::default(),
            send_broken: AtomicBool::new(false),
            readable: AtomicBool::new(readable),
            writable,
        }
    }

    /// Runs `f` on the inbox, holding the read lock; a message over the limit leaves the
    /// stream off a message boundary, so this end then stops receiving.
    fn receive<R>(&self, f: impl FnOnce(&mut Inbox, &Link<'_>) -> Result<R>) -> Result<R> {
        let link = Link {
            stream: self.stream(true)?,
            socket: self.socket,
            bulk: self.bulk.as_ref(),
        };
        let mut inbox = lock(&self.reading);
        let result = f(&mut inbox, &link);
        self.settle(&inbox, result)
    }

    /// Records what a receive left: whether bytes wait, and whether the stream is still on a
    /// message boundary.
    fn settle<R>(&self, inbox: &Inbox, result: Result<R>) -> Result<R> {
        self.buffered.store(inbox.has_bytes(), Ordering::Relaxed);
        if let Err(Error::Io { source, .. }) = &result {
            if source.kind() == io::ErrorKind::InvalidData {
                self.readable.store(false, Ordering::Relaxed);
            }
        }
        result
    }

    /// True after [`close`](Connection::close).
    pub fn closed(&self) -> bool {
        self.stream.is_none()
    }

    /// True if this end can receive.
    pub fn readable(&self) -> bool {
        self.readable.load(Ordering::Relaxed)
    }

    /// True if this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Closes this end (the peer then sees end of file). Closing again does nothing; later
    /// operations fail with `handle is closed`.
    pub fn close(&mut self) {
        self.stream = None;
    }

    /// The stream itself, for setting its options (the listener's handshake deadline).
    pub(crate) fn raw_stream(&self) -> Result<&sys::Stream> {
        self.stream.as_ref().ok_or_else(|| Error::state(CLOSED))
    }

    /// Its OS handle, `None` once closed.
    fn os_handle(&self) -> Option<sys::WaitHandle<'_>> {
        self.stream.as_ref().map(sys::stream_handle)
    }

    /// The number of its OS handle (Python's `fileno()`): the descriptor on Unix, the pipe
    /// handle's value on Windows. See also the `AsFd`/`AsHandle` implementations.
    ///
    /// ```
    /// let (a, _b) = multiprocess::pipe()?;
    /// assert!(a.fileno()? >= 0);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::State`] if it is closed (Python's `OSError: handle is closed`).
    pub fn fileno(&self) -> Result<i64> {
        self.os_handle()
            .map(sys::handle_number)
            .ok_or_else(|| Error::state(CLOSED))
    }

    /// The stream, checking state and direction.
    fn stream(&self, reading: bool) -> Result<&sys::Stream> {
        let Some(stream) = self.stream.as_ref() else {
            return Err(Error::state(CLOSED));
        };
        if reading && !self.readable() {
            // A receive-only end that lost its message boundary is as good as closed (Python
            // closes it).
            return Err(Error::state(if self.writable {
                "connection is write-only"
            } else {
                CLOSED
            }));
        }
        if !reading && !self.writable {
            return Err(Error::state("connection is read-only"));
        }
        if !reading && self.send_broken.load(Ordering::Relaxed) {
            return Err(Error::state(
                "a send was cut off mid-message (an async send dropped, or a send's timeout \
                 passed, with part of its message written): this end cannot send any more",
            ));
        }
        Ok(stream)
    }

    /// Sends `value`, encoded with the crate's codec, as one message.
    ///
    /// # Errors
    /// [`Error::Codec`] if the value cannot be encoded (nothing is sent); [`Error::State`] if this
    /// end is closed or receive-only; [`Error::Io`] if the peer is gone.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let (message, handles) = wire::encode_message(value)?;
        let stream = self.stream(false)?;
        self.check_handles(&handles)?;
        let _w = self.writing.hold();
        if handles.is_empty() {
            return self.write_message(stream, &message);
        }
        if self.bulk.is_some() && message.len() >= bulk::THRESHOLD {
            self.write_message(stream, &message)?;
            sys::send_handles_on(stream, handles)
        } else {
            let (header, n) = wire::header(message.len());
            sys::send_with_handles(stream, [&header[..n], &message], handles)
        }
        .map_err(|e| Error::io("sending handles with a message", e))
    }

    /// [`send`](Connection::send) within `timeout` (beyond Python, whose `send` blocks while
    /// the peer does not read): the message is written as the stream takes it, waiting for
    /// room no longer than `timeout`. A message that fits the stream's free space goes at once,
    /// whole. A message larger than that which times out after part of it went leaves the
    /// stream off its message boundaries: this end then refuses to send ([`Error::State`]);
    /// receiving is unaffected. Never the cross-process copy of large messages that
    /// [`send_bytes`](Connection::send_bytes) takes to a [`pipe`]'s other end (which waits
    /// for the receiver): the message goes through the stream.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiprocess::pipe()?;
    /// a.send_timeout(&"hello", Duration::from_secs(10))?;
    /// assert_eq!(b.recv::<String>()?, "hello");
    /// // Nobody reads b: 64 MiB do not fit the stream, and the send gives up.
    /// let big = vec![0u8; 64 << 20];
    /// assert!(matches!(
    ///     a.send_bytes_timeout(&big, Duration::from_millis(50)),
    ///     Err(multiprocess::Error::Timeout)
    /// ));
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] if the stream did not take the whole message in time; otherwise as
    /// [`send`](Connection::send).
    pub fn send_timeout<T: Serialize + ?Sized>(&self, value: &T, timeout: Duration) -> Result<()> {
        let (message, handles) = wire::encode_message(value)?;
        self.send_until(&message, handles, sys::deadline_after(timeout))
    }

    /// [`send_bytes`](Connection::send_bytes) within `timeout`, as
    /// [`send_timeout`](Connection::send_timeout) sends (beyond Python).
    ///
    /// # Errors
    /// [`Error::Timeout`] if the stream did not take the whole message in time; otherwise as
    /// [`send_bytes`](Connection::send_bytes).
    pub fn send_bytes_timeout(&self, buf: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(buf, Vec::new(), sys::deadline_after(timeout))
    }

    /// Refuses OS handles in a message on a connection that cannot carry them.
    fn check_handles(&self, handles: &[sys::OwnedHandle]) -> Result<()> {
        if !handles.is_empty() && !self.socket {
            return Err(Error::Codec(
                "this Connection cannot carry a Connection (only duplex connections on Unix \
                 can); pass it as a Process argument instead"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Receives one message sent with [`send`](Connection::send) and decodes it.
    ///
    /// # Errors
    /// As [`recv_bytes`](Connection::recv_bytes), and [`Error::Codec`] if the message does not
    /// decode as `T`.
    pub fn recv<T: DeserializeOwned + 'static>(&self) -> Result<T> {
        let (message, handles) =
            self.receive(|inbox, link| inbox.read_message(link, wire::DEFAULT_LIMIT))?;
        wire::decode_message(&message, handles)
    }

    /// [`recv`](Connection::recv) within `timeout` (beyond Python, where `poll(timeout)` then
    /// `recv()` still blocks if the peer stops half way through a message): the whole message
    /// is gathered before it is decoded, so a peer that goes silent in the middle of one holds
    /// this call no longer than `timeout`. What arrived stays buffered for the next receive:
    /// nothing is lost, and the connection stays usable.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiprocess::pipe()?;
    /// assert!(matches!(
    ///     a.recv_timeout::<u32>(Duration::from_millis(10)),
    ///     Err(multiprocess::Error::Timeout)
    /// ));
    /// b.send(&7u32)?;
    /// assert_eq!(a.recv_timeout::<u32>(Duration::from_secs(10))?, 7);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] if no whole message came in time; otherwise as
    /// [`recv`](Connection::recv).
    pub fn recv_timeout<T: DeserializeOwned + 'static>(&self, timeout: Duration) -> Result<T> {
        let limit = wire::DEFAULT_LIMIT;
        let deadline = sys::deadline_after(timeout);
        let (message, handles) = self.receive_until(limit, true, deadline, |inbox, link| {
            inbox.read_message(link, limit)
        })?;
        wire::decode_message(&message, handles)
    }

    /// [`recv_bytes`](Connection::recv_bytes) within `timeout`, as
    /// [`recv_timeout`](Connection::recv_timeout) receives (beyond Python).
    ///
    /// # Errors
    /// [`Error::Timeout`] if no whole message came in time; otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_bytes_until(wire::DEFAULT_LIMIT, sys::deadline_after(timeout))
    }

    /// A message's bytes, of at most `limit`, whole by `deadline` (`None`: as long as it
    /// takes): [`recv_bytes_timeout`](Connection::recv_bytes_timeout), and a handshake's
    /// receives, bounded as a whole by one deadline.
    pub(super) fn recv_bytes_until(
        &self,
        limit: u64,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>> {
        self.receive_until(limit, false, deadline, |inbox, link| {
            inbox.read_frame(link, limit)
        })
    }

    /// Sends `buf` as one message (Python's `send_bytes(buf)`). A message of 1 MiB or more to
    /// the other end of a [`pipe`] is copied straight into the receiver (see the module docs):
    /// the call then returns once the receiver has it, as a send larger than the stream's
    /// buffer does.
    ///
    /// # Errors
    /// [`Error::State`] if this end is closed or receive-only; [`Error::Io`] if the peer is gone.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        let stream = self.stream(false)?;
        let _w = self.writing.hold();
        self.write_message(stream, buf)
    }

    /// Writes one message, holding the write lock: a large one between our own processes
    /// is copied straight into the receiver ([`Bulk`]), any other framed into the stream.
    fn write_message(&self, mut stream: &sys::Stream, message: &[u8]) -> Result<()> {
        match &self.bulk {
            Some(bulk) if message.len() >= bulk::THRESHOLD => bulk.send(stream, message),
            _ => wire::write_frame(&mut stream, message)
                .map_err(|e| Error::io("sending a message", e)),
        }
    }

    /// Python's `send_bytes(buf, offset, size)`: sends `buf[offset..offset + size]` (`size`
    /// defaulting to the rest), with Python's checks and messages.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`buffer length < offset`, `buffer length < offset + size`);
    /// otherwise as [`send_bytes`](Connection::send_bytes).
    pub fn send_bytes_range(&self, buf: &[u8], offset: usize, size: Option<usize>) -> Result<()> {
        if offset > buf.len() {
            return Err(Error::InvalidArgument("buffer length < offset".into()));
        }
        let size = size.unwrap_or(buf.len() - offset);
        if offset.checked_add(size).is_none_or(|end| end > buf.len()) {
            return Err(Error::InvalidArgument(
                "buffer length < offset + size".into(),
            ));
        }
        self.send_bytes(&buf[offset..offset + size])
    }

    /// Receives one message as bytes (Python's `recv_bytes()`).
    ///
    /// # Errors
    /// [`Error::Eof`] if the peer closed before a message; [`Error::Io`] for end of file inside
    /// a message (`got end of file during message`) or a message over the limit (see
    /// [`recv_bytes_max`](Self::recv_bytes_max): its payload was not read, so the stream is
    /// off a message boundary and this end can no longer receive; a receive-only end is closed);
    /// [`Error::State`] if this end is closed or send-only.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.receive(|inbox, link| inbox.read_frame(link, wire::DEFAULT_LIMIT))
    }

    /// [`recv_bytes`](Self::recv_bytes) refusing a message longer than `maxlength` (Python's
    /// `recv_bytes(maxlength)`): the message is then refused with `bad message length` and, as
    /// in Python, this end can no longer receive.
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_max(&self, maxlength: usize) -> Result<Vec<u8>> {
        self.receive(|inbox, link| inbox.read_frame(link, maxlength as u64))
    }

    /// Receives one message into `buf[offset..]`, returning its length.
    ///
    /// # Errors
    /// [`Error::BufferTooShort`] holding the whole message (which is consumed) if it does not
    /// fit; [`Error::InvalidArgument`] if `offset > buf.len()`; otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&self, buf: &mut [u8], offset: usize) -> Result<usize> {
        if offset > buf.len() {
            return Err(Error::InvalidArgument("offset out of bounds".into()));
        }
        let into = &mut buf[offset..];
        match self.receive(|inbox, link| inbox.read_frame_into(link, into))? {
            Ok(n) => Ok(n),
            Err(message) => Err(Error::BufferTooShort(message)),
        }
    }

    /// Whether a message (or end of file) can be read, waiting up to `timeout` (`None`: no
    /// limit; Python's default of 0 is `Some(Duration::ZERO)`). Never consumes anything.
    ///
    /// # Errors
    /// [`Error::State`] if this end is closed or send-only; [`Error::Io`] if the wait fails.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.poll_with(timeout, sys::wait_readable)
    }

    /// [`poll`](Connection::poll) for an answer expected within microseconds: it looks for a
    /// moment before it sleeps (see `sys::LOOK`).
    pub(crate) fn poll_soon(&self, timeout: Option<Duration>) -> Result<bool> {
        self.poll_with(timeout, sys::wait_readable_soon)
    }

    fn poll_with(
        &self,
        timeout: Option<Duration>,
        wait: fn(&[sys::WaitHandle<'_>], Option<Duration>) -> std::io::Result<sys::Ready>,
    ) -> Result<bool> {
        let stream = self.stream(true)?;
        if self.buffered.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let ready = wait(&[sys::stream_handle(stream)], timeout)
            .map_err(|e| Error::io("polling a connection", e))?;
        Ok(ready[0])
    }
}

/// The right to write one message. Unlike a `Mutex<()>`, its guard can be held by a future
/// across awaits (and sent between threads): it is a flag, and the mutex only guards the flag.
#[derive(Debug, Default)]
struct WriteLock {
    state: Mutex<WriteState>,
    free: Condvar,
}

#[derive(Debug, Default)]
struct WriteState {
    busy: bool,
    /// Blocking senders asleep on `free` (woken only if there are any: no system call on the
    /// uncontended path).
    waiting: u32,
}

impl WriteLock {
    /// Waits for the right, blocking the thread.
    fn hold(&self) -> WriteGuard<'_> {
        let mut state = lock(&self.state);
        while state.busy {
            state.waiting += 1;
            state = self.free.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
        state.busy = true;
        WriteGuard(self)
    }

    /// The right if nobody holds it.
    fn try_hold(&self) -> Option<WriteGuard<'_>> {
        let mut state = lock(&self.state);
        if state.busy {
            return None;
        }
        state.busy = true;
        Some(WriteGuard(self))
    }
}

/// Gives the right back on drop.
struct WriteGuard<'a>(&'a WriteLock);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.busy = false;
        if state.waiting > 0 {
            self.0.free.notify_one();
        }
    }
}

/// Waiting on a closed connection is an error (`handle is closed`), as in Python.
impl Waitable for Connection {
    fn wait_handle(&self) -> Result<sys::WaitHandle<'_>> {
        match &self.stream {
            Some(stream) => Ok(sys::stream_handle(stream)),
            None => Err(Error::state(CLOSED)),
        }
    }

    fn ready_now(&self) -> bool {
        self.stream.is_some() && self.buffered.load(Ordering::Relaxed)
    }
}

/// A `Connection` inside a Process's arguments, or inside a value sent with
/// [`Connection::send`] over a duplex connection (Unix), arrives as a working connection to the
/// same peer: its OS handle travels out of band, and the sender keeps its own. Bytes this end
/// has read ahead and not yet returned move with it (the sender's copy no longer has them).
/// Serialising one anywhere else is an error.
impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stream = self
            .stream
            .as_ref()
            .ok_or_else(|| crate::wire::custom_ser(CLOSED.to_string()))?;
        let handle =
            sys::stream_to_handle(stream).map_err(|e| crate::wire::custom_ser(e.to_string()))?;
        let index = wire::push_handle::<S::Error>("Connection", handle)?;
        // A thread receiving on this end right now keeps what it reads.
        let (bytes, handles) = match self.reading.try_lock() {
            Ok(mut inbox) => {
                self.buffered.store(false, Ordering::Relaxed);
                inbox.take()
            }
            Err(_) => Default::default(),
        };
        let handles = handles
            .into_iter()
            .map(|h| wire::push_handle::<S::Error>("Connection", h))
            .collect::<Result<Vec<u32>, _>>()?;
        let unread = wire::Bytes(bytes);
        let bulk = &self.bulk;
        (index, self.readable(), self.writable, unread, handles, bulk).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (index, readable, writable, unread, handles, bulk) =
            <(u32, bool, bool, wire::Bytes, Vec<u32>, Option<Bulk>)>::deserialize(deserializer)?;
        let handle = wire::take_handle::<D::Error>("Connection", index)?;
        let stream =
            sys::stream_from_handle(handle).map_err(|e| crate::wire::custom_de(e.to_string()))?;
        let handles = handles
            .into_iter()
            .map(|i| wire::take_handle::<D::Error>("Connection", i))
            .collect::<Result<Vec<_>, _>>()?;
        let inbox = Inbox::with(unread.0, handles);
        let mut connection = Connection::with_inbox(stream, readable, writable, inbox);
        connection.bulk = bulk;
        Ok(connection)
    }
}
