//! Panics turned into messages: a target's or a pool task's panic is reported to whoever waits
//! for it (as Python sends back the exception), and printed only where Python prints it.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// Writes a line to stderr, ignoring failure: unlike `eprintln!`, never panics (a closed stderr
/// must not turn a child's clean exit, or a panic report, into an abort).
macro_rules! report_error {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use report_error;

thread_local! {
    /// Set on the thread running a process's target: how to name the process, so that its
    /// panic is printed after `Process <name>:`, as Python prints the traceback.
    static TARGET_OF: Cell<Option<fn() -> String>> = const { Cell::new(None) };
    /// Set while a pool task (or a manager call, or a callback) runs: its panic is returned to
    /// the caller, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// The backtrace of the last panic caught on this thread, when `RUST_BACKTRACE` (or
    /// `RUST_LIB_BACKTRACE`) asked for one.
    static LAST_TRACE: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether `LAST_TRACE` may hold a trace. `LAST_TRACE` needs a destructor, and a
    /// thread's first use of it registers one (an allocation): this flag, which needs none,
    /// keeps a forked child that never panics from paying for that (issue 19: every heap page
    /// a forked child touches is a copy-on-write fault).
    static HAS_TRACE: Cell<bool> = const { Cell::new(false) };
}

/// Forgets this thread's last caught backtrace, if any.
fn clear_trace() {
    if HAS_TRACE.with(|h| h.replace(false)) {
        LAST_TRACE.with(|t| t.take());
    }
}

/// A panic's payload as text.
pub(crate) fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// Runs `f`, catching a panic without printing it (a pool task's panic is its result).
pub(crate) fn catch_quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_hook();
    let was = QUIET.with(|q| q.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    outcome.map_err(|payload| message(payload.as_ref()))
}

/// A pool task: [`catch_quietly`], and the panic's backtrace, where one was captured, follows
/// the message (Python's remote traceback).
pub(crate) fn catch_task<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    clear_trace();
    catch_quietly(f).map_err(with_trace)
}

crate::sys::forked_child_code! {
    /// Runs a process's target, catching a panic, which is printed after `Process <name>:` (the
    /// name as `name` gives it when the panic happens). The message returned carries the panic's
    /// backtrace, where one was captured (Python's remote traceback).
    pub(crate) fn catch_in_target<R>(name: fn() -> String, f: impl FnOnce() -> R) -> Result<R, String> {
        install_hook();
        clear_trace();
        let was = TARGET_OF.with(|t| t.replace(Some(name)));
        let outcome = panic::catch_unwind(AssertUnwindSafe(f));
        TARGET_OF.with(|t| t.set(was));
        outcome.map_err(|payload| with_trace(message(payload.as_ref())))
    }
}

/// What separates a panic's message from its backtrace in `Error::Panicked`.
const TRACE_HEADING: &str = "\n\nRemote backtrace:\n";

/// `message`, followed by the backtrace of this thread's last caught panic if one was captured.
fn with_trace(message: String) -> String {
    let trace = HAS_TRACE
        .with(|h| h.replace(false))
        .then(|| LAST_TRACE.with(|t| t.take()))
        .flatten();
    match trace {
        Some(trace) => format!("{message}{TRACE_HEADING}{trace}"),
        None => message,
    }
}

/// Wraps the standard panic hook, once per process tree (a forked child inherits it): quiet
/// while [`catch_quietly`] runs, naming the process in a target.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let standard = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let caught = QUIET.with(|q| q.get()) || TARGET_OF.with(|t| t.get()).is_some();
            if caught {
                // Only when `RUST_BACKTRACE`/`RUST_LIB_BACKTRACE` ask for it (else it costs
                // nothing).
                let trace = Backtrace::capture();
                if trace.status() == BacktraceStatus::Captured {
                    LAST_TRACE.with(|t| *t.borrow_mut() = Some(trace.to_string()));
                    HAS_TRACE.with(|h| h.set(true));
                }
            }
            if QUIET.with(|q| q.get()) {
                return;
            }
            if let Some(name) = TARGET_OF.with(|t| t.get()) {
                let _ = writeln!(std::io::stderr(), "Process {}:", name());
            }
            standard(info);
        }));
    });
}
