//! Sockets for `Listener` and `client`: Unix paths, Linux abstract names, TCP.

use super::*;

/// A listening socket for `Listener`.
#[derive(Debug)]
pub(crate) enum SocketListener {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

impl SocketListener {
    /// Accepts one connection: its stream and the peer's address as text.
    pub(crate) fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            SocketListener::Unix(l) => {
                let (s, peer) = l.accept()?;
                Ok((Stream::from(OwnedFd::from(s)), format!("{peer:?}")))
            }
            SocketListener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                // Frames are written whole; don't let Nagle hold small ones back.
                s.set_nodelay(true)?;
                Ok((Stream::from(OwnedFd::from(s)), peer.to_string()))
            }
        }
    }

    /// Accepts a client only if one is waiting (a zero-timeout `poll(2)` first, so the
    /// listening socket stays blocking for [`accept`](Self::accept)): `None` if none is. The
    /// caller keeps other accepts of this process out meanwhile (another process sharing the
    /// socket could still take the client in between, and this accept would then block until
    /// the next).
    pub(crate) fn accept_now(&self) -> io::Result<Option<(Stream, String)>> {
        if !wait_readable(&[self.handle()], Some(Duration::ZERO))?[0] {
            return Ok(None);
        }
        self.accept().map(Some)
    }

    /// Waits up to `timeout` for a client (the listening socket turns readable); then
    /// [`accept_now`](Self::accept_now) looks. `_pause` is the Windows TCP listener's interval
    /// between looks (it has no handle to wait on).
    pub(crate) fn wait_for_client(
        &self,
        timeout: Duration,
        _pause: &mut Duration,
    ) -> io::Result<()> {
        wait_readable(&[self.handle()], Some(timeout)).map(|_| ())
    }

    /// The listening socket, which is readable while a client waits.
    pub(crate) fn handle(&self) -> WaitHandle<'_> {
        match self {
            SocketListener::Unix(l) => l.as_fd(),
            SocketListener::Tcp(l) => l.as_fd(),
        }
    }

    /// The bound TCP address (to learn the port picked for port 0).
    pub(crate) fn local_tcp_address(&self) -> Option<std::net::SocketAddr> {
        match self {
            SocketListener::Tcp(l) => l.local_addr().ok(),
            SocketListener::Unix(_) => None,
        }
    }
}

/// Listens at `address`.
pub(crate) fn listen(address: &Address) -> io::Result<SocketListener> {
    Ok(match address {
        Address::Unix(path) => SocketListener::Unix(std::os::unix::net::UnixListener::bind(path)?),
        Address::Abstract(name) => SocketListener::Unix(
            std::os::unix::net::UnixListener::bind_addr(&os::abstract_address(name)?)?,
        ),
        Address::Tcp(addr) => SocketListener::Tcp(std::net::TcpListener::bind(addr)?),
        Address::Pipe(name) => return Err(no_pipes(name)),
    })
}

/// Named pipes are Windows only (Python raises `ValueError` for `AF_PIPE` elsewhere).
pub(super) fn no_pipes(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "named pipe addresses ({name:?}) exist only on Windows; use a Unix socket path or TCP"
        ),
    )
}

/// A fresh Unix socket path in the temporary directory, for `Listener::bind(None, ..)`.
pub(crate) fn default_listener_address() -> io::Result<Address> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Address::Unix(std::env::temp_dir().join(format!(
        "mp-{}-{:016x}.sock",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ))))
}

/// Connects to `address`.
pub(crate) fn connect(address: &Address) -> io::Result<Stream> {
    let fd = match address {
        Address::Unix(path) => OwnedFd::from(UnixStream::connect(path)?),
        Address::Abstract(name) => {
            OwnedFd::from(UnixStream::connect_addr(&os::abstract_address(name)?)?)
        }
        Address::Tcp(addr) => {
            let s = std::net::TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            OwnedFd::from(s)
        }
        Address::Pipe(name) => return Err(no_pipes(name)),
    };
    Ok(Stream::from(fd))
}
