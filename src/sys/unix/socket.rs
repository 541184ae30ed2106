//! Sockets for `Listener` and `client`: Unix paths, Linux abstract names, TCP.

use super::*;
use crate::sys::time_left;

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

/// Connects to `address`, waiting until `deadline` at most (`None`: as long as the OS lets a
/// connect wait). A Unix socket's connect waits while the listener's backlog is full (Linux: for
/// ever, unless the listener accepts); with a deadline it is bounded by `SO_SNDTIMEO` on the new
/// socket (reset once connected). Past the deadline: `TimedOut`.
pub(crate) fn connect(address: &Address, deadline: Option<Instant>) -> io::Result<Stream> {
    let fd = match (address, deadline) {
        (Address::Unix(path), None) => OwnedFd::from(UnixStream::connect(path)?),
        (Address::Abstract(name), None) => {
            OwnedFd::from(UnixStream::connect_addr(&os::abstract_address(name)?)?)
        }
        (Address::Unix(path), Some(deadline)) => {
            use std::os::unix::ffi::OsStrExt;
            connect_unix_until(
                &unix_sockaddr(path.as_os_str().as_bytes(), false)?,
                deadline,
            )?
        }
        (Address::Abstract(name), Some(deadline)) => {
            // Refused here where the OS has no abstract names.
            os::abstract_address(name)?;
            connect_unix_until(&unix_sockaddr(name, true)?, deadline)?
        }
        (Address::Tcp(addr), deadline) => {
            let s = match deadline {
                None => std::net::TcpStream::connect(addr)?,
                Some(d) => std::net::TcpStream::connect_timeout(addr, time_left(d)?)?,
            };
            s.set_nodelay(true)?;
            OwnedFd::from(s)
        }
        (Address::Pipe(name), _) => return Err(no_pipes(name)),
    };
    Ok(Stream::from(fd))
}

/// A Unix socket address: a path, or (`abstract_name`) a name in Linux's abstract namespace.
fn unix_sockaddr(
    bytes: &[u8],
    abstract_name: bool,
) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: `sockaddr_un` is plain data, for which all zeroes is a valid value.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // An abstract name starts with a NUL; a path ends with one.
    let used = bytes.len() + 1;
    if used > address.sun_path.len() || (!abstract_name && bytes.contains(&0)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket address too long, or a path with a NUL byte",
        ));
    }
    let start = usize::from(abstract_name);
    for (to, from) in address.sun_path[start..].iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + used;
    Ok((address, len as libc::socklen_t))
}

/// Connects a new Unix stream socket to `address`, waiting for room in the listener's backlog
/// until `deadline` (`SO_SNDTIMEO`, which bounds a Unix socket's connect).
fn connect_unix_until(
    address: &(libc::sockaddr_un, libc::socklen_t),
    deadline: Instant,
) -> io::Result<OwnedFd> {
    // Close-on-exec from the start where the OS can (a spawn on another thread must not
    // inherit it).
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let kind = libc::SOCK_STREAM;
    // SAFETY: creates a socket; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, kind, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(&fd)?;
    loop {
        set_socket_timeout(fd.as_fd(), libc::SO_SNDTIMEO, Some(time_left(deadline)?))?;
        // SAFETY: `address` is a valid `sockaddr_un` of the given length, alive across the call.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&address.0 as *const libc::sockaddr_un).cast(),
                address.1,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        // The backlog stayed full for the time given (`TimedOut` at the loop's top if the
        // deadline has passed), or a signal came: the socket is still unconnected, so try
        // again with what is left.
        if !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ) {
            return Err(e);
        }
    }
    set_socket_timeout(fd.as_fd(), libc::SO_SNDTIMEO, None)?;
    Ok(fd)
}
