//! Start methods and contexts: `get_context`, `set_start_method`, `get_start_method`,
//! `get_all_start_methods`, with Python's rules.
//!
//! The process-wide default is fixed the first time it is used (a process starts with it, or
//! [`get_start_method`] is asked); changing it afterwards needs `force`. A child inherits its
//! parent's start method as its own fixed default, so nested children are started the same way.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a child process is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute this program and run the target in the new process (every OS; the default).
    /// The target must be a function item, a closure that captures nothing, or a [`Run`](crate::Run) value;
    /// arguments travel serialised.
    Spawn,
    /// `fork()` the calling process (Unix). The child continues with a copy of the parent's
    /// memory and can run any `FnOnce() -> R + Send + 'static` closure; a target gets its
    /// arguments as they are (not encoded and decoded, as Python's fork does not pickle them).
    ///
    /// Forking a process that runs other threads is unsafe in general: a lock held by another
    /// thread at the moment of the fork stays locked forever in the child (including the
    /// allocator's). Use it from single-threaded programs, as CPython's docs also warn.
    ///
    /// A forked child's stdin is the null device, as in Python; for it, a process that forks
    /// keeps one close-on-exec descriptor of the null device from its first fork on.
    Fork,
    /// Ask this process's fork server (Unix), started on first use, to `fork` a child, which
    /// then bootstraps as a spawned one: the same targets, arguments and rules as
    /// [`Spawn`](StartMethod::Spawn), without re-executing the program, and safe from a program
    /// with threads (the server has none). See [`forkserver`](crate::forkserver).
    Forkserver,
}

impl StartMethod {
    /// Python's name for the method: `"spawn"`, `"fork"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
            StartMethod::Forkserver => "forkserver",
        }
    }

    /// Parses Python's name for a start method.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown or unavailable method.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "spawn" => Ok(StartMethod::Spawn),
            "fork" if cfg!(unix) => Ok(StartMethod::Fork),
            "forkserver" if cfg!(unix) => Ok(StartMethod::Forkserver),
            _ => Err(Error::InvalidArgument(format!(
                "cannot find context for {name:?}"
            ))),
        }
    }

    /// The class-name prefix of processes made through a context of this method
    /// (`SpawnProcess-1`, `ForkProcess-1`), as in Python; its pool workers drop the `Process`
    /// (`SpawnPoolWorker-1`).
    pub(crate) fn process_prefix(self) -> &'static str {
        match self {
            StartMethod::Spawn => "SpawnProcess",
            StartMethod::Fork => "ForkProcess",
            StartMethod::Forkserver => "ForkServerProcess",
        }
    }

    /// Whether a child of this method is a copy of this process (it has everything in memory:
    /// no handshake, and it leaves without running the C runtime's exit hooks twice).
    pub(crate) fn copies_memory(self) -> bool {
        self == StartMethod::Fork
    }
}

impl std::str::FromStr for StartMethod {
    type Err = Error;

    /// As [`StartMethod::from_name`].
    fn from_str(name: &str) -> Result<Self> {
        StartMethod::from_name(name)
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The start method used by processes made without a context, once fixed: 0 while unset, else
/// [`code`]. An atomic, not a lock: a child forked while another thread sets it finds a value,
/// never a lock held forever.
static DEFAULT: AtomicU8 = AtomicU8::new(0);

fn code(method: Option<StartMethod>) -> u8 {
    match method {
        None => 0,
        Some(StartMethod::Spawn) => 1,
        Some(StartMethod::Fork) => 2,
        Some(StartMethod::Forkserver) => 3,
    }
}

fn method(code: u8) -> Option<StartMethod> {
    match code {
        1 => Some(StartMethod::Spawn),
        2 => Some(StartMethod::Fork),
        3 => Some(StartMethod::Forkserver),
        _ => None,
    }
}

/// The method a fresh program uses when nothing was set: `spawn` on every OS (safe with threads,
/// and the only one Windows has).
const INITIAL_DEFAULT: StartMethod = StartMethod::Spawn;

/// A start method bound to the process factories, like Python's `multiprocessing.get_context(m)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// This context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }
}

/// `multiprocessing.get_context(method)`: a context for [`StartMethod::Spawn`], or
/// [`StartMethod::Fork`] and [`StartMethod::Forkserver`] (Unix). A name from a
/// configuration file parses with `"spawn".parse::<StartMethod>()`.
///
/// # Errors
/// [`Error::InvalidArgument`] (`cannot find context for 'fork'`) for a method this platform
/// does not have.
///
/// ```
/// use multiprocess::StartMethod;
/// let ctx = multiprocess::get_context(StartMethod::Spawn)?;
/// assert_eq!(ctx.start_method(), StartMethod::Spawn);
/// assert!("bogus".parse::<StartMethod>().is_err());
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub fn get_context(method: StartMethod) -> Result<Context> {
    Ok(Context {
        method: StartMethod::from_name(method.name())?,
    })
}

/// `multiprocessing.get_context()` without a method: a context for the process-wide default
/// (fixing it, as Python does).
pub fn default_context() -> Context {
    Context {
        method: default_method(),
    }
}

/// `multiprocessing.set_start_method(method)`: sets the process-wide default. Once the default
/// has been used (a process started with it, or [`get_start_method`] asked), changing it fails;
/// [`set_start_method_force`] is Python's `force=True`.
///
/// # Errors
/// [`Error::State`] (`context has already been set`), or [`Error::InvalidArgument`] for a
/// method this platform does not have.
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let new = code(Some(StartMethod::from_name(method.name())?));
    if DEFAULT
        .compare_exchange(0, new, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(Error::state("context has already been set"));
    }
    Ok(())
}

/// `multiprocessing.set_start_method(method, force=True)`: sets the process-wide default even
/// if it was used already; `None` resets it to unset.
///
/// # Errors
/// [`Error::InvalidArgument`] for a method this platform does not have.
pub fn set_start_method_force(method: Option<StartMethod>) -> Result<()> {
    let new = code(
        method
            .map(|m| StartMethod::from_name(m.name()))
            .transpose()?,
    );
    DEFAULT.store(new, Ordering::SeqCst);
    Ok(())
}

/// `multiprocessing.get_start_method()`: the default start method, fixing it if it was not
/// yet.
pub fn get_start_method() -> StartMethod {
    default_method()
}

/// `multiprocessing.get_start_method(allow_none=True)`: the default start method, or `None`
/// while unset (without fixing it).
pub fn get_start_method_allow_none() -> Option<StartMethod> {
    method(DEFAULT.load(Ordering::SeqCst))
}

/// `multiprocessing.get_all_start_methods()`: the methods this platform supports, the default
/// first.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    if cfg!(unix) {
        vec![
            StartMethod::Spawn,
            StartMethod::Fork,
            StartMethod::Forkserver,
        ]
    } else {
        vec![StartMethod::Spawn]
    }
}

/// The method a process started without a context uses (fixes the default).
pub(crate) fn default_method() -> StartMethod {
    let _ = DEFAULT.compare_exchange(
        0,
        code(Some(INITIAL_DEFAULT)),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    method(DEFAULT.load(Ordering::SeqCst)).unwrap_or(INITIAL_DEFAULT)
}

crate::sys::forked_child_code! {
    /// In a child: adopt the parent's method as the fixed default.
    pub(crate) fn inherit(method: StartMethod) {
        DEFAULT.store(code(Some(method)), Ordering::SeqCst);
    }
}
