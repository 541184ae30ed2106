//! The async forms of sending and receiving (cargo feature `tokio`).
//!
//! The stream stays blocking, for the blocking methods; the async ones never block on it.
//! A receive gathers bytes into the connection's read-ahead buffer with reads that return at
//! once (`MSG_DONTWAIT` on a socket, a read after a zero-timeout `poll` on a pipe; see
//! `gather`, which the receives with a deadline share), waiting between them on the reactor
//! (tokio's `AsyncFd` over a duplicate of the descriptor), and takes the message only once it
//! is whole. A send writes what the stream takes at once (see `feed`, which the sends with a
//! deadline share) and waits for room on the reactor the same way.
//!
//! **Locks.** The read lock is held only while reading what is there, never across an await.
//! While a blocking `recv` in another thread holds it (until a message arrives), an async
//! receive cannot tell whether the stream has news: it retries with a timer (1 ms, doubling
//! to 20 ms) rather than block the runtime thread; the blocking `recv` takes the next
//! message, the async one the one after. The write side is a flag: an async send holds it
//! across its awaits (other senders, blocking or async, wait for the message to be written
//! whole); an async send that finds it held retries with the same timer.
//!
//! **Large messages.** An async send always frames its message into the stream (never the
//! cross-process copy of `send_bytes`, which would block while the receiver copies); an async
//! receive declines such a copy when offered one, so the payload follows in the stream.
//!
//! **Windows**: a wait registers the pipe's pending-read event (or the process handle) with
//! the OS thread pool, reads take only what has arrived, and each write is an overlapped
//! `WriteFile` of a copy that the send awaits (see `sys::windows::aio`, also for a send
//! dropped while its write is in flight).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::feed::Writing;
use super::gather::Step;
use super::inbox::{Inbox, Link};
use super::{Connection, Waitable, wait};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire;

/// Sleeps for the retry after a lock held elsewhere: 1 ms, doubling to 20 ms.
async fn back_off(pause: &mut Duration) {
    tokio::time::sleep(*pause).await;
    *pause = (*pause * 2).min(Duration::from_millis(20));
}

/// [`wait`] as a future (cargo feature `tokio`; beyond Python): resolves with the indices of
/// the objects ready (connections with a message or end of file to read, sentinels of ended
/// processes), or an empty list once `timeout` passes (`None`: no limit). The objects' handles
/// are registered with tokio's reactor for the wait (on Windows with the OS thread pool's
/// shared wait threads; std sockets there are looked at every 1 to 20 ms); no thread waits. Needs a tokio runtime with I/O and the timer
/// enabled.
///
/// **Cancel safe**: it only looks; dropping it changes nothing.
///
/// ```standalone_crate
/// use std::time::Duration;
/// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
///
/// multiprocess::init_test(); // `multiprocess::init()` as the first line of `main`
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let (a, b) = multiprocess::pipe()?;
/// let mut p = multiprocess::Process::new(nap, (50,));
/// p.start()?;
/// let sentinel = p.sentinel()?;
/// rt.block_on(async {
///     // Nothing is ready yet: the timeout passes.
///     let none = multiprocess::wait_async(&[&a, &sentinel], Some(Duration::ZERO)).await?;
///     assert!(none.is_empty());
///     // The child ends: its sentinel is ready.
///     assert_eq!(multiprocess::wait_async(&[&a, &sentinel], None).await?, [1]);
///     b.send(&1u8)?;
///     assert_eq!(multiprocess::wait_async(&[&a, &sentinel], None).await?, [0, 1]);
///     Ok::<(), multiprocess::Error>(())
/// })?;
/// p.join()?;
/// # Ok::<(), multiprocess::Error>(())
/// ```
///
/// # Errors
/// As [`wait`]; [`Error::Io`] outside a tokio runtime.
pub async fn wait_async(
    objects: &[&(dyn Waitable + Sync)],
    timeout: Option<Duration>,
) -> Result<Vec<usize>> {
    let look = || {
        let plain: Vec<&dyn Waitable> = objects.iter().map(|&o| o as &dyn Waitable).collect();
        wait(&plain, Some(Duration::ZERO))
    };
    let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
    loop {
        let ready = look()?;
        if !ready.is_empty() || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(ready);
        }
        let handles = objects
            .iter()
            .map(|o| o.wait_handle())
            .collect::<Result<Vec<_>>>()?;
        let waiting = sys::readable_async(&handles);
        let waited = match deadline {
            None => waiting.await,
            Some(d) => match tokio::time::timeout_at(d, waiting).await {
                Ok(waited) => waited,
                Err(_) => return look(),
            },
        };
        waited.map_err(|e| Error::io("wait_async()", e))?;
    }
}

impl Connection {
    /// [`recv_bytes`](Connection::recv_bytes) as a future (cargo feature `tokio`; beyond
    /// Python): one whole message, waiting on tokio's reactor, never blocking the runtime
    /// thread on the stream. Bytes this end has read ahead count first (a message already
    /// read arrives without waiting). Needs a tokio runtime with I/O and the timer enabled.
    ///
    /// **Cancel safe**: dropped before it resolves, it loses nothing. Bytes of a message it
    /// had begun to gather stay in this end's buffer, and the next receive (async or
    /// blocking) returns that message whole.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (a, b) = multiprocess::pipe()?;
    /// a.send_bytes_async(b"ping").await?;
    /// assert_eq!(b.recv_bytes_async().await?, b"ping");
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`recv_bytes`](Connection::recv_bytes); [`Error::Io`] outside a tokio runtime.
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>> {
        self.recv_bytes_until_async(wire::DEFAULT_LIMIT).await
    }

    /// [`recv_bytes_async`](Connection::recv_bytes_async) refusing a message longer than
    /// `maxlength`, as [`recv_bytes_max`](Connection::recv_bytes_max).
    ///
    /// **Cancel safe**, as [`recv_bytes_async`](Connection::recv_bytes_async).
    ///
    /// # Errors
    /// As [`recv_bytes_max`](Connection::recv_bytes_max); [`Error::Io`] outside a tokio
    /// runtime.
    pub async fn recv_bytes_max_async(&self, maxlength: usize) -> Result<Vec<u8>> {
        self.recv_bytes_until_async(maxlength as u64).await
    }

    /// A message's bytes, of at most `limit`.
    pub(super) async fn recv_bytes_until_async(&self, limit: u64) -> Result<Vec<u8>> {
        self.receive_async(limit, false, |inbox, link| inbox.read_frame(link, limit))
            .await
    }

    /// [`recv`](Connection::recv) as a future (cargo feature `tokio`): one message sent with
    /// [`send`](Connection::send) or [`send_async`](Connection::send_async), decoded; OS
    /// handles inside it arrive with it. Otherwise as
    /// [`recv_bytes_async`](Connection::recv_bytes_async), cancel safety included.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (a, b) = multiprocess::pipe()?;
    /// a.send_async(&(1u8, "one")).await?;
    /// assert_eq!(b.recv_async::<(u8, String)>().await?, (1, "one".to_string()));
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`recv`](Connection::recv); [`Error::Io`] outside a tokio runtime.
    pub async fn recv_async<T: DeserializeOwned + 'static>(&self) -> Result<T> {
        let limit = wire::DEFAULT_LIMIT;
        let (message, handles) = self
            .receive_async(limit, true, |inbox, link| inbox.read_message(link, limit))
            .await?;
        wire::decode_message(&message, handles)
    }

    /// Gathers a whole message into the inbox without blocking, then runs `take` on it (which
    /// then reads nothing from the stream, or only the end of file that is there).
    async fn receive_async<R>(
        &self,
        limit: u64,
        handles: bool,
        take: impl Fn(&mut Inbox, &Link<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut pause = Duration::from_millis(1);
        loop {
            match self.gather(limit, handles, &take)? {
                Step::Done(result) => return result,
                Step::Busy => back_off(&mut pause).await,
                Step::Wait => sys::readable_async(&[sys::stream_handle(self.stream(true)?)])
                    .await
                    .map_err(|e| Error::io("waiting for a message", e))?,
            }
        }
    }

    /// [`send_bytes`](Connection::send_bytes) as a future (cargo feature `tokio`; beyond
    /// Python): writes the message as one frame, waiting on tokio's reactor while the stream
    /// is full (a message larger than the stream's buffer is written as the receiver reads).
    /// Messages from other senders on this end never interleave with it. Needs a tokio
    /// runtime with I/O and the timer enabled.
    ///
    /// **Cancel safety**: dropped before its first byte is written, nothing is sent. Dropped
    /// after, part of a frame is in the stream and the peer would read garbage after it: so
    /// this end then refuses to send ([`Error::State`], `a send was cut off mid-message`);
    /// receiving is unaffected. A message that fits the stream's free space is
    /// written by the future's first poll, so it is never cut.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (a, b) = multiprocess::pipe_one_way()?;
    /// b.send_bytes_async(&[7u8; 100]).await?;
    /// assert_eq!(a.recv_bytes_async().await?, vec![7u8; 100]);
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`send_bytes`](Connection::send_bytes); [`Error::Io`] outside a tokio runtime.
    pub async fn send_bytes_async(&self, buf: &[u8]) -> Result<()> {
        self.write_async(buf, Vec::new()).await
    }

    /// [`send`](Connection::send) as a future (cargo feature `tokio`): the value is encoded at
    /// the call (the future does not borrow it), then written as
    /// [`send_bytes_async`](Connection::send_bytes_async) writes, cancel safety included. OS
    /// handles inside it follow in a frame of their own (a few bytes, written once the
    /// stream has room).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (a, b) = multiprocess::pipe()?;
    /// a.send_async(&vec![1u32, 2, 3]).await?;
    /// assert_eq!(b.recv::<Vec<u32>>()?, [1, 2, 3]);
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`send`](Connection::send); [`Error::Io`] outside a tokio runtime.
    pub fn send_async<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        let encoded = wire::encode_message(value);
        async move {
            let (message, handles) = encoded?;
            self.write_async(&message, handles).await
        }
    }

    /// Writes one frame (and the handles that go with it) without blocking on the stream
    /// (`feed`), waiting for room on the reactor.
    async fn write_async(&self, message: &[u8], handles: Vec<sys::OwnedHandle>) -> Result<()> {
        let stream = self.stream(false)?;
        self.check_handles(&handles)?;
        let mut pause = Duration::from_millis(1);
        let guard = loop {
            match self.writing.try_hold() {
                Some(guard) => break guard,
                None => back_off(&mut pause).await,
            }
        };
        // Checked again under the right: a send cut while this one waited.
        self.stream(false)?;
        let mut writing = Writing::new(self, guard, message, handles);
        while !writing.push(stream)? {
            sys::writable_async(sys::stream_handle(stream))
                .await
                .map_err(|e| Error::io("waiting to send a message", e))?;
        }
        Ok(())
    }
}
