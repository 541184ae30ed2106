//! The crate's one error type.

use std::io;

/// The fix for a child whose program never called `init()`, as the child says it.
pub(crate) const NO_INIT: &str = "this process was started by multiprocess, but its main() did \
     not call multiprocess::init() first (in a test: multiprocess::init_test() first in the \
     test). Add it as the first line, before anything else runs";

/// The same fix, as the parent says it of such a child (after "the program's main()").
pub(crate) const NO_INIT_IN_CHILD: &str = "did not call multiprocess::init() first (in a test: \
     multiprocess::init_test() first in the test), so the child ran the program instead of its \
     target. Add it as the first line of main, before anything else runs";

/// What went wrong. Python raises exceptions of several classes; each one maps to a variant here
/// (see the crate docs for the table).
///
/// An `Error` is `Serialize + Deserialize`, so a target may return [`Result<T>`](Result) and
/// use `?` on the crate's own calls; the parent gets the same variant with the same text
/// (Python pickles the exception a task raised). Every variant travels whole except the
/// `io::Error` inside [`Error::Io`], which travels as its kind, its OS error code and its
/// message: an OS error is rebuilt from its code (equal kind, code and text); any other comes
/// back as `io::Error::new(kind, message)` (equal kind and text; the error value it wrapped,
/// reachable through `io::Error::get_ref`, is not rebuilt).
///
/// ```standalone_crate
/// use multiprocess::{Error, Process, Result};
///
/// fn size(path: String) -> Result<u64> {
///     Ok(std::fs::metadata(path)?.len()) // `?` makes an io::Error an `Error::Io`
/// }
///
/// multiprocess::init_test(); // `multiprocess::init()` as the first line of `main` in a program
/// let mut p = Process::new(size, ("/no/such/file".to_string(),));
/// p.start()?;
/// let returned: Result<u64> = p.result()?;
/// let Err(Error::Io { source, .. }) = returned else { panic!("{returned:?}") };
/// assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed; `context` says which call, for what.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error (between processes: its kind, OS code and message; see [`Error`]).
        #[source]
        #[serde(with = "io_wire")]
        source: io::Error,
    },
    /// A value could not be encoded, or bytes from another process could not be decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// A bounded wait ran out (Python's `multiprocessing.TimeoutError`): the thing waited for
    /// goes on (a pool task, for `AsyncResult::get(timeout)`).
    #[error("timed out")]
    Timeout,
    /// A pool task ran longer than its own time limit (`TaskOptions::timeout`,
    /// `PoolBuilder::task_timeout`): its worker was killed and replaced (beyond Python).
    #[error("the task ran past its time limit of {limit:?}; its worker was killed")]
    TaskTimeout {
        /// The task's time limit.
        limit: std::time::Duration,
    },
    /// The peer closed its end before a whole message arrived (Python's `EOFError`).
    #[error("end of file")]
    Eof,
    /// Misuse of an object in its current state: Python's `AssertionError`/`ValueError` for
    /// starting twice, joining before start, using a closed process, and the like. The message is
    /// Python's.
    #[error("{0}")]
    State(String),
    /// An argument was invalid (Python's `ValueError`/`TypeError`), e.g. an unknown start method.
    #[error("{0}")]
    InvalidArgument(String),
    /// The target (or a pool task) panicked in the child; `message` is the panic payload,
    /// followed, when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) made the child capture one, by
    /// `"\n\nRemote backtrace:\n"` and the panic's backtrace (Python's remote traceback).
    #[error("the target panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The child ended with exit code `exitcode` (from `exit(n)`) before returning a value.
    #[error("the process exited with code {exitcode} before returning a value")]
    Exited {
        /// The process's exit code.
        exitcode: i32,
    },
    /// The child was killed by signal `signal` (its exitcode is `-signal`).
    #[error("the process was killed by signal {signal}")]
    Killed {
        /// The signal number.
        signal: i32,
    },
    /// The connection handshake failed (Python's `AuthenticationError`), with Python's text:
    /// `digest received was wrong`, `digest sent was rejected`, ...
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// `recv_bytes_into` got a message larger than the buffer; the whole message is here (it was
    /// consumed, as in Python's `BufferTooShort`).
    #[error("buffer too short for a message of {} bytes", .0.len())]
    BufferTooShort(Vec<u8>),
    /// The child could not start its target: it never reached `init()`, runs a different
    /// executable, or received a garbled bootstrap message. The message names the fix. A
    /// helper process that fails so (a manager's server, a pool's worker, the fork server)
    /// fails the call that needed it with this error.
    #[error("child bootstrap failed: {0}")]
    Bootstrap(String),
    /// A process died while holding a lock (or a semaphore slot). The lock was recovered and is
    /// free again; the data it protected may be half-updated. Beyond Python, which deadlocks.
    #[error("the owner of the lock (pid {pid}) died while holding it; the lock was recovered")]
    OwnerDied {
        /// The process that died.
        pid: u32,
    },
    /// A [`Barrier`](crate::Barrier) was aborted, reset, or timed out while this caller waited
    /// (Python's `threading.BrokenBarrierError`).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A queue is full (Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// A queue is empty (Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// The pool worker running this task died before returning (killed, crashed, or called
    /// `exit`); the worker was replaced. Python's pool hangs forever instead.
    #[error("the worker running this task died (exitcode {exitcode})")]
    WorkerLost {
        /// The worker's exit code (`-N` for signal N).
        exitcode: i32,
    },
    /// The task was cancelled, or its pool terminated, before it finished.
    #[error("the task was cancelled")]
    Cancelled,
    /// A call on an object held by a [`Manager`](crate::Manager) failed there: Python's
    /// exception name (`KeyError`, `IndexError`, `TypeError`...) and its message, as Python
    /// re-raises the remote exception.
    #[error("{kind}: {message}")]
    Remote {
        /// Python's exception name.
        kind: String,
        /// What went wrong.
        message: String,
    },
}

/// `Result<T, multiprocess::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with context.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::State`].
    pub(crate) fn state(msg: impl Into<String>) -> Self {
        Error::State(msg.into())
    }
}

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Self {
        Error::Codec(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io("I/O", e)
    }
}

/// An `io::Error` between processes: its kind (by name), its OS error code and its message.
mod io_wire {
    use std::io::{self, ErrorKind};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The kinds that travel by name; another comes back as `Other` (its message kept).
    pub(super) const KINDS: &[ErrorKind] = &[
        ErrorKind::NotFound,
        ErrorKind::PermissionDenied,
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionReset,
        ErrorKind::HostUnreachable,
        ErrorKind::NetworkUnreachable,
        ErrorKind::ConnectionAborted,
        ErrorKind::NotConnected,
        ErrorKind::AddrInUse,
        ErrorKind::AddrNotAvailable,
        ErrorKind::NetworkDown,
        ErrorKind::BrokenPipe,
        ErrorKind::AlreadyExists,
        ErrorKind::WouldBlock,
        ErrorKind::NotADirectory,
        ErrorKind::IsADirectory,
        ErrorKind::DirectoryNotEmpty,
        ErrorKind::ReadOnlyFilesystem,
        ErrorKind::StaleNetworkFileHandle,
        ErrorKind::InvalidInput,
        ErrorKind::InvalidData,
        ErrorKind::TimedOut,
        ErrorKind::WriteZero,
        ErrorKind::StorageFull,
        ErrorKind::NotSeekable,
        ErrorKind::QuotaExceeded,
        ErrorKind::FileTooLarge,
        ErrorKind::ResourceBusy,
        ErrorKind::ExecutableFileBusy,
        ErrorKind::Deadlock,
        ErrorKind::CrossesDevices,
        ErrorKind::TooManyLinks,
        ErrorKind::InvalidFilename,
        ErrorKind::ArgumentListTooLong,
        ErrorKind::Interrupted,
        ErrorKind::Unsupported,
        ErrorKind::UnexpectedEof,
        ErrorKind::OutOfMemory,
        ErrorKind::Other,
    ];

    #[derive(Serialize, Deserialize)]
    struct Wire {
        kind: String,
        os: Option<i32>,
        message: String,
    }

    pub(super) fn serialize<S: Serializer>(e: &io::Error, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            kind: format!("{:?}", e.kind()),
            os: e.raw_os_error(),
            message: e.to_string(),
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<io::Error, D::Error> {
        let wire = Wire::deserialize(d)?;
        if let Some(code) = wire.os {
            return Ok(io::Error::from_raw_os_error(code));
        }
        let kind = KINDS
            .iter()
            .copied()
            .find(|k| format!("{k:?}") == wire.kind)
            .unwrap_or(ErrorKind::Other);
        Ok(io::Error::new(kind, wire.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: &Error) -> Error {
        postcard::from_bytes(&postcard::to_allocvec(e).unwrap()).unwrap()
    }

    #[test]
    fn io_errors_keep_kind_code_and_text() {
        let os = Error::io("opening", io::Error::from_raw_os_error(2));
        let back = round_trip(&os);
        assert_eq!(back.to_string(), os.to_string());
        let Error::Io { context, source } = back else {
            panic!("{back:?}")
        };
        assert_eq!(context, "opening");
        assert_eq!(source.raw_os_error(), Some(2));
        assert_eq!(source.kind(), io::ErrorKind::NotFound);

        let custom = Error::io(
            "parsing",
            io::Error::new(io::ErrorKind::InvalidData, "bad byte"),
        );
        let back = round_trip(&custom);
        assert_eq!(back.to_string(), "parsing: bad byte");
        let Error::Io { source, .. } = back else {
            panic!("{back:?}")
        };
        assert_eq!(source.kind(), io::ErrorKind::InvalidData);
        assert_eq!(source.raw_os_error(), None);
    }

    #[test]
    fn every_kind_travels_by_name() {
        for &kind in io_wire::KINDS {
            let back = round_trip(&Error::io("x", io::Error::new(kind, "m")));
            let Error::Io { source, .. } = back else {
                panic!("{back:?}")
            };
            assert_eq!(source.kind(), kind);
        }
    }

    #[test]
    fn other_variants_travel_whole() {
        let errors = [
            Error::Timeout,
            Error::TaskTimeout {
                limit: std::time::Duration::from_millis(1500),
            },
            Error::Remote {
                kind: "KeyError".into(),
                message: "'x'".into(),
            },
            Error::BufferTooShort(vec![1, 2, 3]),
            Error::WorkerLost { exitcode: -9 },
        ];
        for e in &errors {
            let back = round_trip(e);
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
        }
    }
}
