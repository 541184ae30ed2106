//! Manager calls between processes of one machine over shared memory (issue 19, W8).
//!
//! A client that reached its manager through a local socket (a Unix socket, named or abstract)
//! makes two rings — the queues' ring, with its spin-then-sleep waits — and hands them to the
//! manager over that socket once, right after the handshake. From then on that connection's
//! requests go into one ring and the replies come back in the other; the socket stays open as
//! the liveness channel: each side waits on its ring in slices and looks at the socket between
//! them, and a socket that turns readable (end of file) is a peer that is gone. A manager
//! killed while a client waits therefore fails the call with the socket's own error, and a
//! client killed mid-call is forgotten as on the socket path.
//!
//! A message is encoded straight into the ring's free space (no buffer, no copy, no trailer:
//! nothing in a ring carries OS handles). One that carries OS handles, or is longer than half
//! a ring and does not fit the space free when it is sent, goes on the socket: its sender
//! first puts an empty message in the ring (which tells the receiver to read the socket), then
//! sends it there. So rings never stream, and a message is published whole or not at all.
//!
//! Rings belong to one connection, which belongs to one thread of one process (the client's
//! table of connections is per process: a forked child opens its own). Their memory is
//! anonymous (a memfd on Linux, an unlinked object on macOS): nothing named is left behind, and
//! each side's mapping goes with its connection.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connection::{Address, Connection};
use crate::error::{Error, Result};
use crate::queues::{Ring, RingPair};
use crate::synchronize::Deadline;
use crate::wire;

/// Bytes of each ring.
const RING_BYTES: usize = 64 << 10;
/// The longest message put in a ring (longer ones go on the socket).
const WHOLE: usize = RING_BYTES / 2;
/// How long a side waits on its ring, at most, before it looks at the socket.
const CHECK: Duration = Duration::from_millis(100);
/// The first such wait of a call is short, so that a peer already gone is noticed at once.
const FIRST_CHECK: Duration = Duration::from_millis(2);

/// A connection's two rings, in one region: requests (client → manager) and replies.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Rings(RingPair);

impl std::fmt::Debug for Rings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rings")
    }
}

impl Rings {
    pub(super) fn new() -> Result<Rings> {
        RingPair::new(RING_BYTES, 0).map(Rings)
    }

    /// Closes the rings' descriptor once they have travelled (their memory stays mapped): a
    /// connection then holds one descriptor on each side, its socket, as without rings.
    pub(super) fn close_handles(&mut self) {
        self.0.close_handles();
    }

    /// Whether a client of a manager at `address` offers it rings: a local socket, on Unix
    /// (elsewhere, and over TCP, calls stay on the socket).
    pub(super) fn usable(address: &Address) -> bool {
        cfg!(unix) && matches!(address, Address::Unix(_) | Address::Abstract(_))
    }

    /// The client's end, over its connection `conn`.
    pub(super) fn client<'a>(&'a self, conn: &'a Connection) -> End<'a> {
        End {
            out: &self.0.first,
            input: &self.0.second,
            conn,
        }
    }

    /// The manager's end, over the client's connection `conn`.
    pub(super) fn server<'a>(&'a self, conn: &'a Connection) -> End<'a> {
        End {
            out: &self.0.second,
            input: &self.0.first,
            conn,
        }
    }
}

/// One side of a connection with rings: the ring it writes, the one it reads, the socket.
pub(super) struct End<'a> {
    out: &'a Ring,
    input: &'a Ring,
    conn: &'a Connection,
}

/// What the ring held: a value, or the word that the next one is on the socket.
enum Got<T> {
    Value(Result<T>),
    OnSocket,
}

impl End<'_> {
    /// Sends one message: in the ring, or on the socket (announced in the ring first); by
    /// `deadline` if there is one ([`Error::Timeout`] then).
    pub(super) fn send<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Option<Instant>,
    ) -> Result<()> {
        // The ring holds at most the message before, taken or being taken: there is room.
        if self.out.put_encoded(&[], value)? {
            return Ok(());
        }
        // It carries OS handles, does not encode (the error comes from here), or the peer is
        // slow to take the message before.
        let (message, handles) = wire::encode_with_handles_into(value, wire::spare_buffer())?;
        if handles.is_empty() && message.len() <= WHOLE {
            let put = self.put(&message, deadline);
            wire::recycle(message);
            return put;
        }
        drop(handles);
        self.put(&[], deadline)?;
        match deadline {
            None => self.conn.send(value),
            Some(d) => self
                .conn
                .send_timeout(value, d.saturating_duration_since(Instant::now())),
        }
    }

    /// Puts one message in the ring (it holds at most the one before, already taken or being
    /// taken, so this waits only if the peer is slow), looking between waits whether the peer
    /// is gone, until `deadline` if there is one.
    fn put(&self, message: &[u8], deadline: Option<Instant>) -> Result<()> {
        // Without a wait first (without reading the clock): there is room, but for a peer
        // that is slow to take the message before.
        if self
            .out
            .put(message, Deadline::after(Some(Duration::ZERO)))?
        {
            return Ok(());
        }
        loop {
            if self
                .out
                .put(message, Deadline::after(Some(slice(CHECK, deadline)?)))?
            {
                return Ok(());
            }
            if self.conn.poll(Some(Duration::ZERO))? {
                return Err(Error::Eof);
            }
        }
    }

    /// Receives the next message, from the ring or the socket, by `deadline` if there is one
    /// ([`Error::Timeout`] then). A socket that turns readable while the ring is empty is a
    /// peer that hung up (or one that breaks the protocol): its error, or its message, is
    /// what the socket gives.
    pub(super) fn recv<T: DeserializeOwned + 'static>(
        &self,
        deadline: Option<Instant>,
    ) -> Result<T> {
        // A message seen is taken without a wait (without reading the clock).
        let mut wait = match self.look_for_a_message() {
            true => Duration::ZERO,
            false => slice(FIRST_CHECK, deadline)?,
        };
        loop {
            if let Some(got) = self.take::<T>(wait)? {
                return self.open(got, deadline);
            }
            if self.conn.poll(Some(Duration::ZERO))? {
                // What the peer put before it went is still taken first.
                return match self.take::<T>(Duration::ZERO)? {
                    Some(got) => self.open(got, deadline),
                    None => self.conn.recv(),
                };
            }
            wait = slice(CHECK, deadline)?;
        }
    }

    /// Looks for the peer's next message for up to [`SPIN`](super::protocol::SPIN), after
    /// each pause, yielding the CPU between rounds of looks (the peer may run on this one),
    /// before the ring's own wait (which spins less, then sleeps): a call answered by a
    /// manager that is awake costs a few µs, a side asleep and woken from another CPU tens of
    /// µs.
    fn look_for_a_message(&self) -> bool {
        crate::queues::spin_for(super::protocol::SPIN, || self.input.next_published())
    }

    fn take<T: DeserializeOwned + 'static>(&self, wait: Duration) -> Result<Option<Got<T>>> {
        self.input
            .get_with(Deadline::after(Some(wait)), |bytes: Cow<'_, [u8]>| {
                if bytes.is_empty() {
                    return Got::OnSocket;
                }
                // (A value that refers to OS handles fails here: none travel in a ring.)
                Got::Value(wire::decode(&bytes))
            })
    }

    fn open<T: DeserializeOwned + 'static>(
        &self,
        got: Got<T>,
        deadline: Option<Instant>,
    ) -> Result<T> {
        match (got, deadline) {
            (Got::Value(value), _) => value,
            (Got::OnSocket, None) => self.conn.recv(),
            (Got::OnSocket, Some(d)) => self
                .conn
                .recv_timeout(d.saturating_duration_since(Instant::now())),
        }
    }
}

/// The next wait of a loop that looks at the socket between waits: `check`, or what is left
/// until `deadline` if less; [`Error::Timeout`] once it has passed.
fn slice(check: Duration, deadline: Option<Instant>) -> Result<Duration> {
    match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
        None => Ok(check),
        Some(Duration::ZERO) => Err(Error::Timeout),
        Some(left) => Ok(left.min(check)),
    }
}
