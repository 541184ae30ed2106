//! Python's `multiprocessing.connection.Listener` and `Client`: connections by address (a Unix
//! socket path, a Linux abstract name or TCP on Unix; a named pipe on Windows), authenticated
//! with an `authkey` by CPython's challenge protocol, so either end can be a Python program
//! (over Unix sockets and TCP).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Connection, auth};
use crate::error::{Error, Result};
use crate::process::lock;
use crate::sys::{self, Address};

/// A socket (a named pipe on Windows) that accepts authenticated [`Connection`]s (Python's
/// `Listener`).
///
/// ```
/// use multiprocess::connection::{Listener, client};
/// // `None`: a fresh Unix socket path, or a fresh named pipe on Windows.
/// let listener = Listener::bind(None, Some(b"key"))?;
/// let address = listener.address().clone();
/// let t = std::thread::spawn(move || {
///     let conn = client(&address, Some(b"key")).unwrap();
///     conn.send(&"hello").unwrap();
/// });
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv::<String>()?, "hello");
/// t.join().unwrap();
/// # Ok::<(), multiprocess::Error>(())
/// ```
///
/// The client in another process, with the wrong key refused (Python's `AuthenticationError`):
///
/// ```standalone_crate
/// use multiprocess::connection::{Address, Listener, client};
/// use multiprocess::Process;
///
/// fn call(address: Address, key: Vec<u8>) -> bool {
///     match client(&address, Some(&key)) {
///         Ok(conn) => conn.send(&"from the child").is_ok(),
///         Err(_) => false,
///     }
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let listener = Listener::bind(None, Some(b"secret"))?;
/// let mut wrong = Process::new(call, (listener.address().clone(), b"guess".to_vec()));
/// wrong.start()?;
/// assert!(matches!(listener.accept(), Err(multiprocess::Error::Authentication(_))));
/// assert!(!wrong.result::<bool>()?);
/// let mut right = Process::new(call, (listener.address().clone(), b"secret".to_vec()));
/// right.start()?;
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv::<String>()?, "from the child");
/// assert!(right.result::<bool>()?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listener {
    socket: Option<sys::SocketListener>,
    address: Address,
    authkey: Option<Vec<u8>>,
    /// A socket file we created, removed on close.
    unlink: Option<PathBuf>,
    last_accepted: Mutex<Option<String>>,
    /// How long a client has to complete the handshake.
    handshake_timeout: Option<Duration>,
    /// Held while taking a client from the socket, so that an async accept's look at the
    /// socket and its accept are one step (see `accept_async`).
    accepting: Mutex<()>,
}

/// How long a client has, by default, to complete the handshake with a [`Listener`] (and a
/// listener with [`client`]): generous for any network, short enough that a silent peer does
/// not hold a listener for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

impl Listener {
    /// Listens at `address` (`None`: as Python's default, a fresh Unix socket in the temporary
    /// directory, or a fresh `\\.\pipe\multiprocess-<pid>-<random>` on Windows). With
    /// `authkey`, every accepted connection must pass the mutual challenge (`None` disables it,
    /// as Python's `authkey=None`).
    ///
    /// # Errors
    /// [`Error::Io`] if the address is in use or invalid, or of a family this platform lacks
    /// (a named pipe off Windows; a Unix path, abstract name or TCP on Windows).
    pub fn bind(address: Option<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let address = match address {
            Some(a) => a,
            None => sys::default_listener_address()
                .map_err(|e| Error::io("naming a listener address", e))?,
        };
        let socket = sys::listen(&address)
            .map_err(|e| Error::io(format!("binding a listener to {address:?}"), e))?;
        let address = match (&address, socket.local_tcp_address()) {
            (Address::Tcp(_), Some(actual)) => Address::Tcp(actual),
            _ => address,
        };
        let unlink = match &address {
            Address::Unix(p) => Some(p.clone()),
            _ => None,
        };
        Ok(Listener {
            socket: Some(socket),
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            unlink,
            last_accepted: Mutex::new(None),
            handshake_timeout: Some(HANDSHAKE_TIMEOUT),
            accepting: Mutex::new(()),
        })
    }

    /// The address clients connect to (with the actual port when bound to port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The peer address of the last accepted connection, as text (Python's `last_accepted`).
    pub fn last_accepted(&self) -> Option<String> {
        lock(&self.last_accepted).clone()
    }

    /// How long a client may take to complete the handshake ([`HANDSHAKE_TIMEOUT`] unless set
    /// here; `None`: as long as it takes, as in Python). Beyond Python: a client that connects
    /// and says nothing cannot hold [`accept`](Listener::accept) for longer.
    pub fn set_handshake_timeout(&mut self, timeout: Option<Duration>) {
        self.handshake_timeout = timeout;
    }

    /// Waits for a client, then runs the handshake (we challenge first, then answer), within
    /// the handshake timeout.
    ///
    /// # Errors
    /// [`Error::State`] `listener is closed`; [`Error::Authentication`] with Python's text when
    /// the client's key differs or it does not speak the protocol; [`Error::Timeout`] when it
    /// did not complete the handshake in time (its connection is closed: call `accept` again
    /// for the next client); [`Error::Io`].
    pub fn accept(&self) -> Result<Connection> {
        let conn = self.accept_unauthenticated()?;
        self.authenticate(&conn)?;
        Ok(conn)
    }

    /// [`accept`](Listener::accept) within `timeout` (beyond Python, whose `accept` waits as
    /// long as it takes): for a client, then for its handshake (bounded by the handshake
    /// timeout too).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::connection::{Listener, client};
    /// let listener = Listener::bind(None, Some(b"key"))?;
    /// assert!(matches!(
    ///     listener.accept_timeout(Duration::from_millis(20)),
    ///     Err(multiprocess::Error::Timeout)
    /// ));
    /// let address = listener.address().clone();
    /// let t = std::thread::spawn(move || client(&address, Some(b"key"))?.send(&"hello"));
    /// let conn = listener.accept_timeout(Duration::from_secs(30))?;
    /// assert_eq!(conn.recv::<String>()?, "hello");
    /// t.join().unwrap()?;
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] if no client came in time, or the one that came did not complete the
    /// handshake in time (its connection is closed); otherwise as
    /// [`accept`](Listener::accept).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        let deadline = sys::deadline_after(timeout);
        let conn = self.next_client_until(deadline)?;
        self.authenticate_within(&conn, deadline)?;
        Ok(conn)
    }

    /// The next client, before the handshake, waiting for one until `deadline` (`None`: as
    /// long as it takes). (Another
    /// process sharing the listening socket may take a client between our look and our
    /// accept; the accept then waits for the next client, as Python's would.)
    fn next_client_until(&self, deadline: Option<Instant>) -> Result<Connection> {
        let mut pause = Duration::from_millis(1);
        loop {
            let socket = self.socket()?;
            let got = self.accept_now(socket);
            // `Duration::MAX`: no deadline (the waits below take it as "for ever").
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            match got {
                Some(got) => {
                    let got = got.map_err(|e| Error::io("accepting a connection", e))?;
                    if let Some((stream, peer)) = got {
                        return Ok(self.accepted(stream, peer));
                    }
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    socket
                        .wait_for_client(left, &mut pause)
                        .map_err(|e| Error::io("waiting for a client", e))?;
                }
                // Another thread's accept holds the accept side: look again shortly.
                None if left.is_zero() => return Err(Error::Timeout),
                None => {
                    std::thread::sleep(pause.min(left));
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// The first half of [`accept`](Listener::accept): the next client, before the handshake
    /// (a server that handshakes on another thread, so that a slow client holds up nobody).
    pub(crate) fn accept_unauthenticated(&self) -> Result<Connection> {
        let socket = self.socket()?;
        let (stream, peer) = {
            let _accepting = lock(&self.accepting);
            socket.accept()
        }
        .map_err(|e| Error::io("accepting a connection", e))?;
        Ok(self.accepted(stream, peer))
    }

    /// The listening socket, while the listener is open.
    fn socket(&self) -> Result<&sys::SocketListener> {
        self.socket
            .as_ref()
            .ok_or_else(|| Error::state("listener is closed"))
    }

    /// A client just accepted from `peer`, as a connection (Python's `last_accepted` noted).
    fn accepted(&self, stream: sys::Stream, peer: String) -> Connection {
        *lock(&self.last_accepted) = Some(peer);
        Connection::new(stream, true, true)
    }

    /// [`accept`](Listener::accept) as a future (cargo feature `tokio`; beyond Python): waits
    /// for a client on tokio's reactor (the listening socket is readable while one waits; on
    /// Windows a named pipe's offer to clients is kept in flight and waited on, and a TCP
    /// listener, no handle to wait on there, is looked at every 1 to 20 ms), then runs the
    /// handshake with the async methods of [`Connection`], within the handshake timeout. No
    /// thread waits, and the runtime thread never blocks on a silent client. While a blocking
    /// [`accept`](Listener::accept) in another thread waits for a client, this one retries on
    /// a timer (1 to 20 ms), and the blocking one takes the next client.
    ///
    /// **Cancel safety**: dropped while it waits for a client, nothing is lost (the next
    /// client waits for the next accept). Dropped during the handshake, the client it had
    /// taken is disconnected (its handshake fails) and the listener goes on.
    ///
    /// ```
    /// use multiprocess::connection::{Listener, client};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let listener = Listener::bind(None, Some(b"key"))?;
    /// let address = listener.address().clone();
    /// let t = std::thread::spawn(move || {
    ///     let conn = client(&address, Some(b"key")).unwrap();
    ///     conn.send(&"hello").unwrap();
    /// });
    /// let conn = listener.accept_async().await?;
    /// assert_eq!(conn.recv_async::<String>().await?, "hello");
    /// t.join().unwrap();
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`accept`](Listener::accept); [`Error::Io`] outside a tokio runtime.
    #[cfg(feature = "tokio")]
    pub async fn accept_async(&self) -> Result<Connection> {
        let conn = self.next_client_async().await?;
        if let Some(key) = &self.authkey {
            let steps = async {
                auth::deliver_challenge_async(&conn, key).await?;
                auth::answer_challenge_async(&conn, key).await
            };
            match self.handshake_timeout {
                None => steps.await?,
                Some(t) => tokio::time::timeout(t, steps)
                    .await
                    .map_err(|_| Error::Timeout)??,
            }
            ack_handshake(&conn);
        }
        Ok(conn)
    }

    /// A client if one waits, under the accept lock; `None` if another accept holds it.
    fn accept_now(
        &self,
        socket: &sys::SocketListener,
    ) -> Option<std::io::Result<Option<(sys::Stream, String)>>> {
        let _accepting = match self.accepting.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(socket.accept_now())
    }

    /// The next client, before the handshake, waiting on the reactor.
    #[cfg(feature = "tokio")]
    async fn next_client_async(&self) -> Result<Connection> {
        let mut pause = Duration::from_millis(1);
        loop {
            let socket = self.socket()?;
            let Some(got) = self.accept_now(socket) else {
                // A blocking accept holds the accept side.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
                continue;
            };
            let got = got.map_err(|e| Error::io("accepting a connection", e))?;
            if let Some((stream, peer)) = got {
                return Ok(self.accepted(stream, peer));
            }
            sys::acceptable_async(socket, &mut pause)
                .await
                .map_err(|e| Error::io("waiting for a client", e))?;
        }
    }

    /// The second half of [`accept`](Listener::accept): the handshake with `conn`, if this
    /// listener has a key.
    pub(crate) fn authenticate(&self, conn: &Connection) -> Result<()> {
        self.authenticate_within(conn, None)
    }

    /// [`authenticate`](Self::authenticate) within the handshake timeout and by `deadline`,
    /// whichever comes first.
    fn authenticate_within(&self, conn: &Connection, deadline: Option<Instant>) -> Result<()> {
        let Some(key) = &self.authkey else {
            return Ok(());
        };
        let bound = self.handshake_timeout.and_then(sys::deadline_after);
        let deadline = match (bound, deadline) {
            (Some(b), Some(d)) => Some(b.min(d)),
            (b, d) => b.or(d),
        };
        auth::deliver_challenge(conn, key, deadline)?;
        auth::answer_challenge(conn, key, deadline)?;
        ack_handshake(conn);
        Ok(())
    }

    /// Stops listening and removes the socket file we created. Closing again does nothing.
    pub fn close(&mut self) {
        if self.socket.take().is_some() {
            if let Some(path) = self.unlink.take() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

/// Python's `Client(address, authkey=...)`: connects to a [`Listener`] (ours or Python's) and
/// runs the handshake (we answer first, then challenge) within [`HANDSHAKE_TIMEOUT`]. The
/// connect waits as Python's does: on a Unix socket whose listener's backlog is full, until
/// the listener accepts; on TCP, as long as the OS tries; on a named pipe whose instances are
/// all busy, 20 seconds. [`client_timeout`] bounds the whole.
///
/// # Errors
/// [`Error::Io`] if nothing listens there; [`Error::Authentication`] with Python's text when the
/// keys differ (`digest sent was rejected`); [`Error::Timeout`] if the listener did not
/// complete the handshake in time.
pub fn client(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
    let conn = connect(address, None)?;
    answer(&conn, authkey, sys::deadline_after(HANDSHAKE_TIMEOUT))?;
    Ok(conn)
}

/// [`client`] within `timeout`, the connect and the handshake together (beyond Python): a
/// listener that does not accept (its backlog full), a host that does not answer, or a peer
/// that stops half way through the handshake cannot hold it longer.
///
/// ```
/// use std::time::Duration;
/// use multiprocess::connection::{Listener, client_timeout};
/// let listener = Listener::bind(None, Some(b"key"))?;
/// let address = listener.address().clone();
/// let t = std::thread::spawn(move || {
///     client_timeout(&address, Some(b"key"), Duration::from_secs(30))?.send(&"hello")
/// });
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv::<String>()?, "hello");
/// t.join().unwrap()?;
/// # Ok::<(), multiprocess::Error>(())
/// ```
///
/// # Errors
/// [`Error::Timeout`] if the connection or its handshake was not complete in time; otherwise
/// as [`client`].
pub fn client_timeout(
    address: &Address,
    authkey: Option<&[u8]>,
    timeout: Duration,
) -> Result<Connection> {
    client_until(address, authkey, sys::deadline_after(timeout))
}

/// [`client_timeout`] by `deadline` (`None`: no limit at all, the handshake's included).
pub(crate) fn client_until(
    address: &Address,
    authkey: Option<&[u8]>,
    deadline: Option<Instant>,
) -> Result<Connection> {
    let conn = connect(address, deadline)?;
    answer(&conn, authkey, deadline)?;
    Ok(conn)
}

/// A connection to `address`, made by `deadline` (`None`: as long as the OS lets it wait).
fn connect(address: &Address, deadline: Option<Instant>) -> Result<Connection> {
    let stream = sys::connect(address, deadline).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut if deadline.is_some() => Error::Timeout,
        _ => Error::io(format!("connecting to {address:?}"), e),
    })?;
    Ok(Connection::new(stream, true, true))
}

/// A client's handshake with `authkey` (none without), its receives complete by `deadline`.
fn answer(conn: &Connection, authkey: Option<&[u8]>, deadline: Option<Instant>) -> Result<()> {
    if let Some(key) = authkey {
        auth::answer_challenge(conn, key, deadline)?;
        auth::deliver_challenge(conn, key, deadline)?;
        ack_handshake(conn);
    }
    Ok(())
}

/// After a handshake, whose last message was the peer's: acknowledges it now, or a peer with
/// Nagle's algorithm holds its first message until our delayed acknowledgement (CPython's
/// client: 44 ms per connection).
fn ack_handshake(conn: &Connection) {
    if let Ok(stream) = conn.raw_stream() {
        sys::ack_now(stream);
    }
}
