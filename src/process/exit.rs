//! The end of a process: Python's exit policy (daemonic children terminated, every child
//! joined), then what features registered for it; the C runtime's exit hook that runs it; and
//! whether `init()` was called.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CHILDREN, lock};
use crate::log::{self, Level};
use crate::sys;

crate::sys::forked_child_code! {
    /// Python's `_exit_function`: the finalizers of priority 0 and more, then terminate daemonic
    /// children and join every child, then the remaining finalizers with a priority. Runs when the
    /// program exits (through `exit` or by returning from `main`) and at the end of every child.
    pub(crate) fn exit_function() {
        log::event!(Level::Debug, {}, "process shutting down");
        super::finalize::run_finalizers(Some(0));
        // A forked child that started none has no list of its own (nor makes one: an allocation,
        // pages of its parent's written).
        if let Some(list) = CHILDREN.mine() {
            // Copied out: the joins take the list's lock.
            let children = lock(list).clone();
            end_children(&children);
        }
        super::finalize::run_finalizers(None);
        // Then what features asked for (each once, even if this runs twice). The list is locked
        // only for a push: one still locked after a few tries was copied locked by a fork (its
        // holder is not in this process), and waiting would hang the exit.
        // Copied out and the list emptied in place: a forked child frees nothing of its parent's
        // (each heap page it writes is a copy, issue 19).
        let mut hooks: Hooks = [None; MAX_HOOKS];
        let mut take = |list: &mut Hooks| hooks = std::mem::replace(list, [None; MAX_HOOKS]);
        for _ in 0..10 {
            match EXIT_HOOKS.try_lock() {
                Ok(mut list) => {
                    take(&mut list);
                    break;
                }
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    take(&mut p.into_inner());
                    break;
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        for hook in hooks.iter().rev().flatten() {
            hook();
        }
        // Last: the resource tracker this process started, now that nothing here uses it.
        sys::stop_tracker();
    }
}

/// The exit policy's part for the children: terminate the daemonic ones, join them all. Out of
/// [`exit_function`]'s section: a forked child that started none never runs it.
#[inline(never)]
fn end_children(children: &[Arc<super::Shared>]) {
    for c in children {
        if c.daemon.load(Ordering::Relaxed) && matches!(c.poll_exit(Some(Duration::ZERO)), Ok(None))
        {
            let name = lock(&c.name).to_string();
            log::event!(
                Level::Info,
                { name = name },
                "calling terminate() for daemon {name}"
            );
            let _ = c.signal(sys::SIGTERM);
        }
    }
    for c in children {
        if matches!(c.poll_exit(Some(Duration::ZERO)), Ok(None)) {
            let name = lock(&c.name).to_string();
            log::event!(
                Level::Info,
                { name = name },
                "calling join() for process {name}"
            );
        }
        let _ = c.join(None);
    }
}

/// Registers the exit policy with the C runtime, once per process tree (a forked child inherits
/// the registration).
pub(crate) fn ensure_exit_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sys::at_exit(exit_hook);
        // Installed before any fork, so forked children inherit it instead of installing it.
        crate::panics::install_hook();
    });
}

extern "C" fn exit_hook() {
    let _ = std::panic::catch_unwind(exit_function);
    flush_stdio();
}

crate::sys::forked_child_code! {
    /// Flushes stdout, whose buffer a forked child's `_exit` would lose (as Python flushes
    /// `sys.stdout` at a child's end). Not stderr: std's is unbuffered, and its flush would only
    /// take its lock (a page of std's statics written, in a forked child a fault: issue 19).
    pub(crate) fn flush_stdio() {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
}

/// Set by `init()`.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Notes that this process called `init()` (or `init_test()`).
pub(crate) fn mark_initialised() {
    INITIALISED.store(true, Ordering::SeqCst);
    log::name_process_with(|| super::current_process().name());
}

/// Whether this process called `init()` (or `init_test()`).
#[cfg(all(feature = "mpi", unix))]
pub(crate) fn initialised() -> bool {
    INITIALISED.load(Ordering::SeqCst)
}

crate::sys::forked_child_data! {
    /// What features do at this process's exit, after its children are joined (Python's
    /// `util.Finalize` with an exit priority): managers give back this process's references to
    /// their objects, a fork server ends with the process that started it. A feature registers its
    /// hook once, on first use; they run in the reverse order of registration. A forked child
    /// inherits the list (and runs them for what it holds of its own).
    ///
    /// Slots rather than a `Vec`, a forked child empties it in place (it frees nothing of its
    /// parent's); with the other statics a forked child writes (see `sys::forked_child_data`).
    static EXIT_HOOKS: Mutex<Hooks> = Mutex::new([None; MAX_HOOKS]);
}

/// Hooks in the order registered; the crate registers three (managers, MPI, fork server).
type Hooks = [Option<fn()>; MAX_HOOKS];
const MAX_HOOKS: usize = 8;

/// Registers `hook` to run at this process's exit (see [`EXIT_HOOKS`]); call it once per hook
/// (a `Once` in the caller).
pub(crate) fn on_exit(hook: fn()) {
    let mut hooks = lock(&EXIT_HOOKS);
    let Some(slot) = hooks.iter_mut().find(|h| h.is_none()) else {
        unreachable!("more than {MAX_HOOKS} exit hooks registered: raise MAX_HOOKS");
    };
    *slot = Some(hook);
}
