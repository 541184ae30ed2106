//! Python's `multiprocessing.util.Finalize`: callbacks that run once, when called or at this
//! process's exit by priority.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::sys;

/// A registered callback.
struct Entry {
    /// The exit priority (`None`: not run at exit).
    priority: Option<i32>,
    /// The process that registered it: a forked child inherits the registry but runs none of
    /// its parent's (Python clears the registry in a new child).
    pid: u32,
    callback: Box<dyn FnOnce() + Send>,
}

/// Every active finalizer, by registration number.
static REGISTRY: Mutex<BTreeMap<u64, Entry>> = Mutex::new(BTreeMap::new());

/// Registration numbers: among finalizers of one priority, the later runs first (Python's).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The pid of the process that last registered a finalizer: in a process whose pid this is
/// not (a forked child that registered none), no entry is its own, and the exit runs none
/// without looking (issue 19: the look was a window of code faulted into every forked child).
static REGISTERED_BY: AtomicU32 = AtomicU32::new(0);

/// Python's `multiprocessing.util.Finalize(None, callback, exitpriority=...)`: a callback run at
/// most once, when [`call`](Finalize::call)ed or, if it has an exit priority, at this process's
/// exit.
///
/// At exit (returning from `main`, [`exit`](crate::exit), or a child's target returning), the
/// finalizers with a priority of 0 or more run first, highest priority first (and among equal
/// priorities the later registered first); then daemonic children are terminated and all
/// children joined; then the finalizers with a negative priority run, in the same order.
/// Finalizers without a priority never run at exit: Rust has no weak references to arbitrary
/// objects, so where Python ties the callback to an object's collection, keep the `Finalize`
/// in the object and call it from its `Drop`. A child (spawned or forked) starts with no
/// finalizers: a forked child does not run its parent's. A process that is killed, or ends
/// with [`std::process::abort`], runs none.
///
/// Dropping a `Finalize` does not cancel it; clones name the same finalizer.
///
/// ```
/// use multiprocess::util::Finalize;
/// let f = Finalize::new(|| println!("cleaning up"), Some(10));
/// assert!(f.still_active());
/// assert!(f.call()); // runs it now ...
/// assert!(!f.still_active());
/// assert!(!f.call()); // ... and only once
/// let g = Finalize::new(|| println!("never"), None);
/// g.cancel();
/// assert!(!g.still_active());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finalize {
    key: u64,
    priority: Option<i32>,
}

impl Finalize {
    /// Registers `callback` with an exit priority (`None`: it runs only when called).
    pub fn new(callback: impl FnOnce() + Send + 'static, exitpriority: Option<i32>) -> Finalize {
        super::ensure_exit_hook();
        let key = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = sys::current_pid();
        REGISTERED_BY.store(pid, Ordering::Release);
        let entry = Entry {
            priority: exitpriority,
            pid,
            callback: Box::new(callback),
        };
        super::lock(&REGISTRY).insert(key, entry);
        Finalize {
            key,
            priority: exitpriority,
        }
    }

    /// Runs the callback if it has not run nor been cancelled (Python's `__call__`); true if it
    /// ran now. It is unregistered first, so it never runs twice.
    pub fn call(&self) -> bool {
        let entry = super::lock(&REGISTRY).remove(&self.key);
        match entry {
            Some(e) if e.pid == sys::current_pid() => {
                (e.callback)();
                true
            }
            _ => false,
        }
    }

    /// Unregisters the callback without running it (Python's `cancel`).
    pub fn cancel(&self) {
        super::lock(&REGISTRY).remove(&self.key);
    }

    /// True while the callback has neither run nor been cancelled (Python's `still_active`).
    pub fn still_active(&self) -> bool {
        super::lock(&REGISTRY)
            .get(&self.key)
            .is_some_and(|e| e.pid == sys::current_pid())
    }

    /// The exit priority it was registered with.
    pub fn exitpriority(&self) -> Option<i32> {
        self.priority
    }
}

crate::sys::forked_child_code! {
    /// Python's `_run_finalizers(minpriority)`: runs this process's finalizers whose priority is at
    /// least `min` (`None`: every one with a priority), highest first, later first among equals.
    /// Each is taken out of the registry before it runs, so a callback may register or cancel
    /// others; those it registers with a high enough priority run too.
    #[inline]
    pub(crate) fn run_finalizers(min: Option<i32>) {
        let me = sys::current_pid();
        if REGISTERED_BY.load(Ordering::Acquire) == me {
            run_registered(min, me);
        }
    }
}

#[inline(never)]
fn run_registered(min: Option<i32>, me: u32) {
    loop {
        // Locked with a few tries: one still locked was copied locked by a fork (its holder
        // is not in this process), and waiting would hang the exit.
        let mut guard = None;
        for _ in 0..10 {
            match REGISTRY.try_lock() {
                Ok(g) => {
                    guard = Some(g);
                    break;
                }
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    guard = Some(p.into_inner());
                    break;
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let Some(mut registry) = guard else { return };
        let next = registry
            .iter()
            .filter(|(_, e)| e.pid == me)
            .filter_map(|(k, e)| e.priority.map(|p| (p, *k)))
            .filter(|(p, _)| min.is_none_or(|m| *p >= m))
            .max();
        let Some((_, key)) = next else { return };
        let Some(entry) = registry.remove(&key) else {
            return;
        };
        drop(registry);
        // A panicking finalizer must not stop the others (Python logs and goes on).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(entry.callback));
    }
}
