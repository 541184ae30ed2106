//! Where a listener listens and a client connects: the names of the OS's endpoints, the same
//! on every platform (each platform binds those it has and refuses the others).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a [`Listener`](crate::connection::Listener) listens (Python's address and family, in one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Address {
    /// A Unix socket at this path (Python: a `str` address, `AF_UNIX`).
    Unix(PathBuf),
    /// A Linux abstract socket name, without the leading NUL (Python: a `str` starting with
    /// `'\0'`).
    Abstract(Vec<u8>),
    /// A TCP address (Python: a `(host, port)` tuple, `AF_INET`); port 0 picks a free one.
    Tcp(SocketAddr),
    /// A Windows named pipe, `\\.\pipe\name` (Python: a `str` starting with `\\.\pipe\`,
    /// `AF_PIPE`). Windows only: binding or connecting to one elsewhere is an [`Error::Io`](crate::Error::Io)
    /// (`InvalidInput`), as Python raises `ValueError` for `AF_PIPE` off Windows.
    ///
    /// Our pipes are byte pipes carrying the same length-prefixed frames as every other
    /// [`Connection`](crate::connection::Connection); CPython's Windows pipe connections frame by pipe messages instead, so a
    /// named-pipe `Listener` and `client` talk to each other, not to CPython's.
    Pipe(String),
}
