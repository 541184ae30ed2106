//! Starting children and being one: `init()`, the bootstrap handshake, running the target and
//! reporting how it ended, exit codes.
//!
//! Handshake (spawn): the parent starts the executable again with a marker in the environment
//! and a channel as the child's stdin, then sends two frames: the executable identity (8 bytes)
//! and a [`Bootstrap`]. The child's `init()` checks the identity, finds the trampoline, answers
//! [`Report::Started`], runs the target under `catch_unwind` and sends one final report. A forked
//! child skips the first two steps: it already has everything in memory.

use std::ffi::OsString;
use std::io::Write;
use std::panic;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::{self, StartMethod};
use crate::error::{Error, Result};
use crate::panics;
use crate::process::{self, ChildrenGuard, Identity, lock};
use crate::registry::Job;
use crate::sys::{self, image};
use crate::wire;

/// Writes a line to stderr, ignoring failure: unlike `eprintln!`, never panics (a closed stderr
/// must not turn a child's clean exit, or a panic report, into an abort).
macro_rules! report_error {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Bootstrap payloads up to this size are written by `start()` itself (they fit in the socket
/// buffer, so the write cannot block); larger ones by a helper thread.
const INLINE_BOOTSTRAP: usize = 64 * 1024;

/// Everything a spawned child needs besides the executable.
#[derive(Serialize, Deserialize)]
struct Bootstrap {
    offset: i64,
    seal: u64,
    args: Vec<u8>,
    name: String,
    ident: Vec<u64>,
    authkey: Vec<u8>,
    daemon: bool,
    parent_pid: u32,
    parent_name: String,
    method: StartMethod,
    reentry: Vec<OsString>,
    /// How many OS handles (inside `args`) follow the bootstrap, out of band.
    handles: u32,
}

/// What a child tells its parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The child accepted its bootstrap and is about to run the target.
    Started,
    /// The target returned this encoded value.
    Returned(Vec<u8>),
    /// The target panicked with this message.
    Panicked(String),
    /// The arguments or the value could not be (de)coded.
    Failed(String),
    /// The child refused its bootstrap (other executable, garbled message).
    Refused(String),
}

/// The arguments a spawned child is started with (after `argv[0]`): the parent's own arguments,
/// as Python restores `sys.argv`, or in a test binary the filter that reaches a test calling
/// [`init_test`]. A child passes on what it was given.
static REENTRY: Mutex<Option<Vec<OsString>>> = Mutex::new(None);

thread_local! {
    /// In a test binary: the arguments that reach the test running on this thread.
    static TEST_REENTRY: std::cell::RefCell<Option<Vec<OsString>>> =
        const { std::cell::RefCell::new(None) };
}

pub(crate) fn reentry_args() -> Vec<OsString> {
    TEST_REENTRY
        .with(|t| t.borrow().clone())
        .or_else(|| lock(&REENTRY).clone())
        .unwrap_or_else(|| std::env::args_os().skip(1).collect())
}

/// Call as the first line of `main` (the Rust form of `if __name__ == "__main__":`).
///
/// In a process started by this crate's spawn method it runs the child's target and exits, never
/// returning; anywhere else it returns at once. Code before it runs again in every spawned
/// child, so put nothing before it.
///
/// ```no_run
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() {
///     multiprocess::init();
///     // ... the program, which may start processes
/// }
/// ```
pub fn init() {
    INITIALISED.store(true, std::sync::atomic::Ordering::SeqCst);
    ensure_exit_hook();
    match sys::take_child_channel() {
        // Started by an MPI launcher: ranks other than 0 serve pool workers from here.
        #[cfg(all(feature = "mpi", unix))]
        Ok(None) => crate::pool::enter_mpi(),
        #[cfg(not(all(feature = "mpi", unix)))]
        Ok(None) => {}
        Ok(Some(channel)) => run_spawned(channel),
        Err(e) => {
            report_error!("multiprocess: cannot take the bootstrap channel: {e}");
            sys::exit_now(1);
        }
    }
}

/// Set by [`init`].
static INITIALISED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process called [`init`] (or [`init_test`]).
#[cfg(all(feature = "mpi", unix))]
pub(crate) fn initialised() -> bool {
    INITIALISED.load(std::sync::atomic::Ordering::SeqCst)
}

/// [`init`] for tests: call it as the first line of every `#[test]` that starts processes.
///
/// Test binaries have no `main` of ours, so a spawned child re-runs the test binary filtered to
/// the test that started it (`<test> --exact --include-ignored --nocapture --test-threads=1`), where this call
/// turns it into the child. It relies on libtest naming each test's thread after the test,
/// which it does for every thread count. (libtest prints `running 1 test` in each child before
/// the child takes over.)
///
/// ```text
/// #[test]
/// fn squares_in_a_child() {
///     multiprocess::init_test();
///     // ... start processes as in a program
/// }
/// ```
pub fn init_test() {
    if !sys::child_marker_present() {
        if let Some(name) = std::thread::current().name().filter(|n| *n != "main") {
            let args: Vec<OsString> = [
                name,
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ]
            .iter()
            .map(OsString::from)
            .collect();
            // Processes started from this test's thread re-enter through this test; those
            // started from other threads through the first test that registered.
            TEST_REENTRY.with(|t| *t.borrow_mut() = Some(args.clone()));
            lock(&REENTRY).get_or_insert(args);
        }
    }
    init();
}

/// Ends the calling process with `code` like `std::process::exit`, after Python's exit policy
/// (daemonic children terminated, all children joined). In a child the parent sees exitcode
/// `code & 0xFF`.
pub fn exit(code: i32) -> ! {
    // Run the policy here rather than trust the C runtime's exit hooks to (MSVC's may not run
    // them on ExitProcess); the hook finds nothing left to do.
    process::exit_function();
    flush_stdio();
    std::process::exit(code)
}

/// Registers the exit policy with the C runtime, once per process tree (a forked child inherits
/// the registration).
pub(crate) fn ensure_exit_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        sys::at_exit(exit_hook);
        // Installed before any fork, so forked children inherit it instead of installing it.
        panics::install_hook();
    });
}

extern "C" fn exit_hook() {
    let _ = panic::catch_unwind(process::exit_function);
    // The other ranks of an MPI job end with rank 0.
    #[cfg(all(feature = "mpi", unix))]
    let _ = panic::catch_unwind(crate::pool::finish_mpi);
    flush_stdio();
}

fn flush_stdio() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

// ---------------------------------------------------------------------------------------------
// Parent side

/// Starts a child for `job` that takes its bootstrap over a channel: spawned (the program run
/// again), or forked by the fork server (`method` [`StartMethod::Forkserver`]); returns its
/// handle and our end of its channel.
pub(crate) fn spawn(
    id: Identity,
    job: Option<&Job>,
    method: StartMethod,
) -> Result<(sys::ProcHandle, sys::Channel)> {
    let Some(Job::Image {
        trampoline,
        args,
        handles,
    }) = job
    else {
        return Err(Error::InvalidArgument(
            "a closure can only be started with the fork start method; with spawn, pass a \
             function item or a non-capturing closure (Process::new) or a Run value"
                .into(),
        ));
    };
    let args = args
        .as_ref()
        .map_err(|e| Error::Codec(format!("encoding the arguments: {e}")))?;
    let offset = image::code_offset(*trampoline)?;
    let reentry = reentry_args();
    let boot = Bootstrap {
        offset,
        seal: image::seal(offset),
        args: args.clone(),
        name: id.name,
        ident: id.ident,
        authkey: id.authkey,
        daemon: id.daemon,
        parent_pid: id.parent_pid,
        parent_name: id.parent_name,
        method,
        reentry: reentry.clone(),
        handles: handles.len() as u32,
    };
    let handles = process::clone_handles(handles)?;
    let payload = wire::encode(&boot)?;
    let mut message = Vec::new();
    wire::write_frame(&mut message, &image::identity().to_le_bytes())
        .and_then(|()| wire::write_frame(&mut message, &payload))
        .map_err(|e| Error::io("encoding the bootstrap", e))?;
    let (ours, theirs) = sys::channel_pair().map_err(|e| Error::io("creating a channel", e))?;
    let mut handle = match method {
        StartMethod::Forkserver => crate::forkserver::start_child(theirs)?,
        _ => sys::spawn(&reentry, theirs).map_err(|e| Error::io("spawning a child process", e))?,
    };
    let transfer = match sys::transfer_handles(&handle, handles) {
        Ok(t) => t,
        Err(e) => {
            // The child would wait for its handles forever.
            let _ = handle.signal(sys::SIGKILL);
            return Err(Error::io("passing handles to the child", e));
        }
    };
    // A child that dies before reading makes these writes fail; its exit code tells the story,
    // so the error is not start()'s to report.
    let inline = message.len() <= INLINE_BOOTSTRAP;
    let send = move |channel: &sys::Channel| {
        (&*channel).write_all(&message)?;
        sys::send_transfer(channel, transfer)
    };
    if inline {
        let _ = send(&ours);
    } else {
        let writer = ours
            .try_clone()
            .map_err(|e| Error::io("duplicating a channel", e))?;
        std::thread::Builder::new()
            .name("multiprocess-bootstrap".into())
            .spawn(move || send(&writer))
            .map_err(|e| Error::io("starting the bootstrap writer", e))?;
    }
    Ok((handle, ours))
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io("I/O", e)
    }
}

/// Forks a child for `job`; returns its handle and our end of its channel. `children` is the
/// locked children list, held across the fork so the child sees it in a consistent state.
pub(crate) fn fork(
    id: Identity,
    job: &mut Option<Job>,
    children: &mut Option<ChildrenGuard>,
) -> Result<(sys::ProcHandle, sys::Channel)> {
    let (ours, theirs) = sys::channel_pair().map_err(|e| Error::io("creating a channel", e))?;
    let mut ours = Some(ours);
    let mut theirs = Some(theirs);
    // The child's copies of our manager proxies need references of their own.
    let held = crate::managers::hold_for_child();
    // Held across the fork (after the children list), so the child finds them free and whole.
    let mut server = Some(crate::forkserver::hold());
    let mut tracker = Some(sys::hold_tracker());
    let forked = sys::fork(|| {
        let _ = tracker.take(); // let go in the child
        if let Some(server) = server.take() {
            server.forget_in_child();
        }
        crate::managers::adopt(&held);
        drop(ours.take());
        process::forget_inherited_children(children);
        let channel = Arc::new(theirs.take().expect("present until forked"));
        let job = job.take();
        run_child(id, channel, StartMethod::Fork, |channel| {
            let _ = sys::stdin_from_null();
            match job {
                Some(job) => run_target(channel, || job.call()),
                None => 1,
            }
        })
    });
    let _ = tracker.take(); // let go in the parent
    drop(server.take());
    let handle = match forked {
        Ok(handle) => handle,
        Err(e) => {
            crate::managers::give_back(held);
            return Err(Error::io("forking a child process", e));
        }
    };
    drop(held);
    drop(theirs);
    Ok((handle, ours.take().expect("kept by the parent")))
}

// ---------------------------------------------------------------------------------------------
// Child side

/// A child of the fork server: from here, as a spawned child. Never returns.
pub(crate) fn run_served(channel: sys::Channel) -> ! {
    run_spawned(channel)
}

/// The spawned child: checks the handshake, then runs the target. Never returns.
fn run_spawned(channel: sys::Channel) -> ! {
    let channel = Arc::new(channel);
    let accepted = (|| -> Result<(Bootstrap, image::Trampoline, Vec<sys::OwnedHandle>)> {
        let mut reader = &*channel;
        let theirs = wire::read_frame(&mut reader, 8)
            .map_err(|e| Error::Bootstrap(format!("reading the handshake: {e}")))?;
        let ours = image::identity().to_le_bytes();
        if theirs != ours {
            return Err(Error::Bootstrap(format!(
                "executable mismatch: the parent runs build {:02x?}, this child runs {:02x?}; \
                 parent and child must run the same build of the program",
                theirs, ours
            )));
        }
        let frame = wire::read_frame(&mut reader, wire::DEFAULT_LIMIT)
            .map_err(|e| Error::Bootstrap(format!("reading the bootstrap: {e}")))?;
        let boot: Bootstrap = wire::decode(&frame)
            .map_err(|e| Error::Bootstrap(format!("garbled bootstrap message: {e}")))?;
        let trampoline = image::trampoline_at(boot.offset, boot.seal)?;
        let handles = match boot.handles {
            0 => Vec::new(),
            n => sys::recv_handles(&channel, n as usize)
                .map_err(|e| Error::Bootstrap(format!("receiving {n} handles: {e}")))?,
        };
        Ok((boot, trampoline, handles))
    })();
    let (boot, trampoline, handles) = match accepted {
        Ok(x) => x,
        Err(e) => {
            report_error!("multiprocess: {e}");
            send(&channel, &Report::Refused(e.to_string()));
            sys::exit_now(1);
        }
    };
    *lock(&REENTRY) = Some(boot.reentry);
    let id = Identity {
        name: boot.name,
        ident: boot.ident,
        authkey: boot.authkey,
        daemon: boot.daemon,
        parent_pid: boot.parent_pid,
        parent_name: boot.parent_name,
    };
    let args = boot.args;
    run_child(id, channel, boot.method, move |channel| {
        run_target(channel, || {
            wire::with_handles(handles, || trampoline(&args))
        })
    })
}

/// Common to spawned and forked children: become the child, run `body`, apply the exit policy,
/// exit with the code `body` returns.
fn run_child(
    id: Identity,
    channel: Arc<sys::Channel>,
    method: StartMethod,
    body: impl FnOnce(&sys::Channel) -> i32,
) -> ! {
    let daemon = id.daemon;
    process::become_child(id, Arc::clone(&channel));
    context::inherit(method);
    if method != StartMethod::Fork {
        // A forked child needs no handshake: its parent knows it runs the target.
        send(&channel, &Report::Started);
    }
    if daemon {
        watch_parent(Arc::clone(&channel));
    }
    let code = body(&channel);
    process::exit_function();
    flush_stdio();
    match method {
        // A forked child shares the parent's C runtime state: leave without running exit
        // handlers twice (Python's os._exit).
        StartMethod::Fork => sys::exit_now(code),
        // The fork server's children come from a process that ran only `init()`: nothing of
        // its state is anybody else's.
        StartMethod::Spawn | StartMethod::Forkserver => std::process::exit(code),
    }
}

/// Runs the target, reports how it ended, and returns the exit code (0, or 1 after a panic).
fn run_target(channel: &sys::Channel, target: impl FnOnce() -> Result<Vec<u8>>) -> i32 {
    let outcome = panics::catch_in_target(|| process::current_process().name(), target);
    let (report, code) = match outcome {
        Ok(Ok(value)) => (Report::Returned(value), 0),
        Ok(Err(e)) => {
            report_error!("Process {}:\n{e}", process::current_process().name());
            let reason = match e {
                Error::Codec(m) => m,
                other => other.to_string(),
            };
            (Report::Failed(reason), 1)
        }
        Err(message) => (Report::Panicked(message), 1),
    };
    send(channel, &report);
    code
}

/// Sends a report to the parent; a parent that is gone cannot be told, so errors are ignored.
fn send(channel: &sys::Channel, report: &Report) {
    // Small reports are encoded on the stack: after a fork every heap page the child touches
    // is a copy-on-write fault.
    let mut small = [0u8; 256];
    if let Ok(payload) = postcard::to_slice(report, &mut small) {
        let _ = wire::write_frame(&mut &*channel, payload);
    } else if let Ok(bytes) = wire::encode(report) {
        let _ = wire::write_frame(&mut &*channel, &bytes);
    }
}

/// A daemonic child dies with its parent: a thread waits for the parent's end of the channel to
/// close (the parent sends nothing after the bootstrap) and ends the process.
fn watch_parent(channel: Arc<sys::Channel>) {
    let spawned = std::thread::Builder::new()
        .name("multiprocess-parent-watch".into())
        .spawn(move || {
            loop {
                match sys::wait_readable(&[sys::channel_handle(&channel)], None) {
                    Ok(ready) if ready[0] => sys::exit_now(1),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
    if let Err(e) = spawned {
        report_error!("multiprocess: cannot watch the parent: {e}");
    }
}
