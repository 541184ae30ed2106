//! What the library does, told as it happens: Python's `multiprocessing.util` logging
//! (`log_to_stderr`, `get_logger`) and [`tracing`] events.
//!
//! Every event goes two ways:
//! - to `tracing` (target `multiprocess`), with fields (`pid`, `name`, `exitcode`...), for an
//!   application that installs a subscriber; without one, nothing is printed and nothing is
//!   formatted;
//! - to stderr in Python's format, `[LEVEL/ProcessName] message`, once [`log_to_stderr`] (or
//!   [`Logger::set_level`]) asked for that level. Children inherit the level (spawned ones
//!   through their bootstrap, forked ones with the memory), as Python's do.
//!
//! ```
//! use multiprocess::log::{Level, get_logger, log_to_stderr};
//!
//! log_to_stderr(Some(Level::Info)); // prints e.g. "[INFO/Process-1] process exiting with exitcode 0"
//! assert_eq!(get_logger().level(), Some(Level::Info));
//! get_logger().set_level(None); // quiet again
//! ```
//!
//! | Python `multiprocessing` | `multiprocess` |
//! |---|---|
//! | `log_to_stderr(level)` | [`log_to_stderr`]`(Some(level))` |
//! | `get_logger()`, `logger.setLevel(level)` | [`get_logger`], [`Logger::set_level`] |
//! | `SUBDEBUG`, `DEBUG`, `INFO`, `SUBWARNING`, `WARNING`, `ERROR`, `CRITICAL` | [`Level`] |
//! | handlers, formatters, `logging` integration | a `tracing` subscriber of the application's choice |

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// A level of Python's `multiprocessing` logger, from the most detailed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Python's `SUBDEBUG` (5); `tracing`'s `TRACE`.
    SubDebug = 5,
    /// `DEBUG` (10).
    Debug = 10,
    /// `INFO` (20).
    Info = 20,
    /// Python's `SUBWARNING` (25); `tracing`'s `INFO`.
    SubWarning = 25,
    /// `WARNING` (30); `tracing`'s `WARN`.
    Warning = 30,
    /// `ERROR` (40).
    Error = 40,
    /// `CRITICAL` (50); `tracing`'s `ERROR`.
    Critical = 50,
}

impl Level {
    /// Python's name of the level, as its log lines print it.
    pub fn name(self) -> &'static str {
        match self {
            Level::SubDebug => "SUBDEBUG",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::SubWarning => "SUBWARNING",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// The level of Python's number (`None` for a number that is none of the levels).
    pub fn from_number(n: u8) -> Option<Level> {
        Some(match n {
            5 => Level::SubDebug,
            10 => Level::Debug,
            20 => Level::Info,
            25 => Level::SubWarning,
            30 => Level::Warning,
            40 => Level::Error,
            50 => Level::Critical,
            _ => return None,
        })
    }

    /// The `tracing` level an event of this level has.
    pub fn tracing(self) -> tracing::Level {
        match self {
            Level::SubDebug => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info | Level::SubWarning => tracing::Level::INFO,
            Level::Warning => tracing::Level::WARN,
            Level::Error | Level::Critical => tracing::Level::ERROR,
        }
    }
}

/// The stderr level (Python's number; 0: off).
static STDERR_LEVEL: AtomicU8 = AtomicU8::new(0);

/// Where log lines find this process's name (`process` owns it and says so at `init()`). A
/// function, not a copy under a lock here: a lock another thread held at a fork would stay
/// held in the child.
static PROCESS_NAME: OnceLock<fn() -> String> = OnceLock::new();

/// Python's `multiprocessing.log_to_stderr(level)`: from now on, events of `level` and above are
/// printed on stderr as `[LEVEL/ProcessName] message`, in this process and in the children it
/// starts after this call. `None` keeps the level set before, or `Warning` if none was (the
/// level Python's logger then has by default). Returns the logger.
pub fn log_to_stderr(level: Option<Level>) -> Logger {
    let logger = get_logger();
    logger.set_level(level.or(logger.level()).or(Some(Level::Warning)));
    logger
}

/// Python's `multiprocessing.get_logger()`: the library's logger.
pub fn get_logger() -> Logger {
    Logger(())
}

/// The library's logger (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct Logger(());

impl Logger {
    /// Prints events of `level` and above on stderr (`None`: none). Python's `setLevel`.
    pub fn set_level(&self, level: Option<Level>) {
        STDERR_LEVEL.store(level.map_or(0, |l| l as u8), Ordering::Relaxed);
    }

    /// The level set for stderr, if any.
    pub fn level(&self) -> Option<Level> {
        Level::from_number(STDERR_LEVEL.load(Ordering::Relaxed))
    }
}

/// The stderr level as a number, for a child's bootstrap (0: off).
pub(crate) fn inherited_level() -> u8 {
    STDERR_LEVEL.load(Ordering::Relaxed)
}

/// Takes the level a child's parent had.
pub(crate) fn inherit_level(n: u8) {
    STDERR_LEVEL.store(n, Ordering::Relaxed);
}

/// Tells where log lines find this process's name.
pub(crate) fn name_process_with(name: fn() -> String) {
    let _ = PROCESS_NAME.set(name);
}

/// Whether an event of `level` goes anywhere (so it need not be formatted otherwise).
pub(crate) fn enabled(level: Level) -> bool {
    let stderr = STDERR_LEVEL.load(Ordering::Relaxed);
    (stderr != 0 && level as u8 >= stderr)
        || tracing::level_filters::LevelFilter::current() >= level.tracing()
}

/// Prints `message` on stderr if `level` is asked for there.
pub(crate) fn to_stderr(level: Level, message: &str) {
    let stderr = STDERR_LEVEL.load(Ordering::Relaxed);
    if stderr == 0 || (level as u8) < stderr {
        return;
    }
    let name = PROCESS_NAME
        .get()
        .map_or_else(|| "MainProcess".to_owned(), |name| name());
    let line = format!("[{}/{}] {}\n", level.name(), name, message);
    // One write: lines of several processes do not interleave mid-line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Tells an event: `event!(Level::Info, { pid = p, name = n }, "started {}", n)`. The fields
/// go to `tracing` (displayed with `%`); the message to both `tracing` and stderr. Nothing is
/// formatted unless someone listens.
macro_rules! event {
    ($level:expr, { $($field:ident = $value:expr),* $(,)? }, $($fmt:tt)+) => {{
        let level: $crate::log::Level = $level;
        if $crate::log::enabled(level) {
            let message = format!($($fmt)+);
            $crate::log::to_stderr(level, &message);
            match level.tracing() {
                tracing::Level::TRACE => tracing::event!(target: "multiprocess", tracing::Level::TRACE, $($field = %$value,)* "{}", message),
                tracing::Level::DEBUG => tracing::event!(target: "multiprocess", tracing::Level::DEBUG, $($field = %$value,)* "{}", message),
                tracing::Level::INFO => tracing::event!(target: "multiprocess", tracing::Level::INFO, $($field = %$value,)* "{}", message),
                tracing::Level::WARN => tracing::event!(target: "multiprocess", tracing::Level::WARN, $($field = %$value,)* "{}", message),
                _ => tracing::event!(target: "multiprocess", tracing::Level::ERROR, $($field = %$value,)* "{}", message),
            }
        }
    }};
}
pub(crate) use event;
