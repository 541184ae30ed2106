//! `Process` and the process-wide state around it: `active_children`, `cpu_count`, and the exit
//! policy (Python's `_exit_function`). This process's own identity lives in `current`.

#[cfg(feature = "tokio")]
mod aio;
pub(crate) mod child;
mod children;
mod current;
mod exit;
mod finalize;
pub(crate) mod handshake;
mod record;
mod repr;
mod sentinel;
pub(crate) mod start;

pub(crate) use child::on_parent_gone;
pub use children::active_children;
use children::{CHILDREN, forget_child, one_at_a_time, reap_finished};
pub(crate) use children::{ChildrenGuard, forget_inherited_children};
use current::COUNTER;
pub use current::{AuthKey, CurrentProcess, ParentProcess, current_process, parent_process};
pub(crate) use current::{Identity, ShortName, become_child, cut_parent_channel};
pub use finalize::Finalize;
pub(crate) use record::Shared;
use record::{Child, NOT_STARTED, State};
pub use sentinel::Sentinel;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{self, Context, StartMethod};
use crate::error::{Error, Result};
use crate::log::{self, Level};
use crate::registry::{Job, ResultType, Run, Target};
use crate::sys;
use crate::wire;
#[cfg(all(feature = "mpi", unix))]
pub(crate) use exit::initialised;
pub(crate) use exit::{ensure_exit_hook, exit_function, flush_stdio, mark_initialised, on_exit};
use handshake::Report;

pub(crate) use crate::sys::lock;

// ---------------------------------------------------------------------------------------------
// Process

/// A child process, as Python's `multiprocessing.Process`.
///
/// Construct it with a target and arguments ([`Process::new`]), a [`Run`] value
/// ([`Process::from_run`]) or, for the fork method, a closure ([`Process::from_closure`]); set
/// `name`, `daemon` and `authkey` with the builder methods; then [`start`](Process::start) it.
///
/// ```standalone_crate
/// fn square(x: u64) -> u64 { x * x }
///
/// multiprocess::init_test(); // `multiprocess::init()` as the first line of `main` in a program
/// let mut p = multiprocess::Process::new(square, (7,)).with_name("squarer");
/// p.start()?;
/// p.join()?;
/// assert_eq!(p.exitcode()?, Some(0));
/// assert_eq!(p.result::<u64>()?, 49);
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub struct Process {
    /// Its record: identity, state (the job until the start), what the child reported.
    shared: Arc<Shared>,
    context: Option<Context>,
}

const CLOSED: &str = "process object is closed";

impl Process {
    fn with_job(job: Job, result: ResultType, prefix: Option<&str>) -> Process {
        let count = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        // Read from this process's record without writing it (see `Shared::renamed`).
        let (mut ident, daemon) =
            current::with_me(|me| (me.ident.clone(), me.daemon.load(Ordering::Relaxed)));
        let (parent_name, authkey) = current::name_and_authkey();
        ident.push(count);
        let name = default_name(prefix.unwrap_or("Process"), &ident);
        let shared = Shared::new(
            Identity {
                name,
                ident,
                authkey,
                daemon,
                parent_pid: sys::pid(),
                parent_name,
            },
            result,
            Some(job),
        );
        Process {
            shared: Arc::new(shared),
            context: None,
        }
    }

    /// `Process(target=target, args=args)`: a process that calls `target` with the fields of
    /// the tuple `args` as its parameters (`(5,)` for one argument, `()` for none). A struct as
    /// the single parameter stands for Python's keyword arguments.
    ///
    /// The target must be a function item or a closure that captures nothing (the spawned child
    /// finds it in its own copy of the executable); arguments and the return value are serde
    /// types. A forked child gets the arguments as they are, as Python's fork does (nothing is
    /// encoded or decoded, the OS handles inside are the inherited ones); any other start
    /// method encodes them at `start()`. Its name is `Process-N`, N counting processes
    /// constructed in this process.
    ///
    /// # Panics
    /// As [`current_process`], if the OS random source fails when the main process's authkey is
    /// first made.
    pub fn new<F, A, R>(target: F, args: A) -> Process
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        crate::registry::no_capture!(F);
        let _ = target;
        Process::with_job(Job::target::<F, A, R>(args), ResultType::of::<R>(), None)
    }

    /// A process whose work is `obj.run()`: Python's "subclass `Process` and override `run`".
    pub fn from_run<T: Run>(obj: T) -> Process {
        Process::with_job(Job::run(obj), ResultType::of::<T::Output>(), None)
    }

    /// A process that runs a closure, which may capture anything `Send + 'static`. Only the fork
    /// start method can run it (a spawned child cannot receive captured state); starting it with
    /// another method is an error. See [`StartMethod::Fork`] for the caveat about threads.
    ///
    /// A closure whose body only panics has the never type `!`, which is not a serde type:
    /// write it as `|| -> () { panic!(..) }`.
    pub fn from_closure<F, R>(f: F) -> Process
    where
        F: FnOnce() -> R + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        Process::with_job(Job::closure(f), ResultType::of::<R>(), None)
    }

    /// Binds the process to a context's start method (`ctx.Process(...)` in Python); its default
    /// name becomes `SpawnProcess-N` or `ForkProcess-N`.
    pub fn with_context(mut self, ctx: Context) -> Process {
        let name = default_name(ctx.start_method().process_prefix(), &self.shared.ident);
        self.shared.set_name(name);
        self.context = Some(ctx);
        self
    }

    /// Sets the name (builder form of [`set_name`](Process::set_name)).
    pub fn with_name(self, name: impl Into<String>) -> Process {
        self.set_name(name);
        self
    }

    /// Sets the daemon flag before start (builder form; the default is the creator's flag).
    pub fn with_daemon(self, daemon: bool) -> Process {
        self.shared.daemon.store(daemon, Ordering::Relaxed);
        self
    }

    /// Sets the authentication key the child will have (builder form).
    pub fn with_authkey(self, key: impl Into<AuthKey>) -> Process {
        self.shared.set_authkey(key.into());
        self
    }

    /// The process's name (Python's `name` attribute; the same call as
    /// [`CurrentProcess::name`](crate::CurrentProcess::name)).
    pub fn name(&self) -> String {
        lock(&self.shared.name).to_string()
    }

    /// Renames the process. Allowed at any time, as in Python; a started child keeps the name it
    /// was given.
    pub fn set_name(&self, name: impl Into<String>) {
        self.shared.set_name(current::ShortName::new(&name.into()));
    }

    /// The daemon flag (Python's `daemon` attribute).
    pub fn daemon(&self) -> bool {
        self.shared.daemon.load(Ordering::Relaxed)
    }

    /// Sets the daemon flag.
    ///
    /// # Errors
    /// [`Error::State`] `process has already started` after [`start`](Process::start).
    pub fn set_daemon(&self, daemon: bool) -> Result<()> {
        if !matches!(*lock(&self.shared.state), State::Initial { .. }) {
            return Err(Error::state("process has already started"));
        }
        self.shared.daemon.store(daemon, Ordering::Relaxed);
        Ok(())
    }

    /// The authentication key the child has (or will have).
    pub fn authkey(&self) -> AuthKey {
        lock(&self.shared.authkey).clone()
    }

    /// Python's `_identity` of this process (`[3]` for `Process-3`).
    pub fn ident(&self) -> &[u64] {
        &self.shared.ident
    }

    /// Starts the child.
    ///
    /// Reaps finished children first (so `start` alone keeps zombies away), then starts this one
    /// with its context's method, or the default method.
    ///
    /// # Errors
    /// [`Error::State`] with Python's message when the process was started before, is closed,
    /// was created by another process, or when the calling process is daemonic;
    /// [`Error::InvalidArgument`] when the target cannot be started with the method (a closure
    /// without fork, a target outside the executable image); [`Error::Io`] when the OS refuses.
    pub fn start(&mut self) -> Result<()> {
        if sys::child_marker_present() {
            return Err(Error::state(crate::error::NO_INIT));
        }
        match *lock(&self.shared.state) {
            State::Closed => return Err(Error::state(CLOSED)),
            State::Started(_) | State::Initial { job: None, .. } => {
                return Err(Error::state("cannot start a process twice"));
            }
            State::Initial { .. } => {}
        }
        if self.shared.creator != sys::pid() {
            return Err(Error::state(
                "can only start a process object created by current process",
            ));
        }
        if current_process().daemon()
            && !(self.daemon() && DAEMONIC_WORKERS.load(Ordering::Relaxed))
        {
            return Err(Error::state(
                "daemonic processes are not allowed to have children",
            ));
        }
        ensure_exit_hook();
        reap_finished();
        let method = self
            .context
            .map_or_else(context::default_method, |c| c.start_method());
        // Between its fork and the next one's, a start allocates and frees as little as it
        // can (in a fan-out each heap page written there is copied, the children alive
        // holding it): the `Child` lives in the record and its inbox keeps small reports
        // inline, a forked child takes its copy of this record as its own
        // (`current_process()`), and the spent job (its values dropped now) is freed with the
        // `Child`, after the child's end. (The two `Arc`s of the handle and channel remain.)
        let mut job = match &mut *lock(&self.shared.state) {
            State::Initial { job } => job.take(),
            _ => None,
        };
        // Encoded before the children list is locked (a proxy's encoding may call its
        // manager); a forked child takes the values as they are.
        let image = match method {
            StartMethod::Fork => None,
            _ => job.as_ref().and_then(Job::image),
        };
        // Held across a fork so that the child reads the list consistent (it leaves it held
        // and makes a list of its own: see `forget_inherited_children`).
        let mut children = Some(lock(CHILDREN.get()));
        let started = start::start(method, &mut self.shared, &mut job, image, &mut children);
        let child = match started {
            Ok(child) => child,
            Err(e) => {
                // Not started: the job stays for another try.
                drop(children);
                if let State::Initial { job: j } = &mut *lock(&self.shared.state) {
                    *j = job;
                }
                return Err(e);
            }
        };
        let mut spent = job;
        if let Some(job) = spent.as_mut() {
            job.discard();
        }
        // A served child's pid comes from the fork server later (the start does not wait for
        // it); only our own children's pids are looked up here (`reap_finished`).
        let served = child.0.is_served();
        if !served {
            self.shared.pid.store(child.0.pid(), Ordering::Relaxed);
        }
        self.shared.served.store(served, Ordering::Relaxed);
        let channel = sys::channel_number(&child.1);
        *lock(&self.shared.state) = State::Started(Child::new(child.0, child.1, method, spent));
        self.shared.channel.store(channel, Ordering::Relaxed);
        if let Some(mut children) = children {
            children.push(Arc::clone(&self.shared));
        }
        if log::enabled(Level::Debug) {
            let name = lock(&self.shared.name).to_string();
            let pid = self.pid().unwrap_or(0);
            log::event!(Level::Debug, { name = name, pid = pid }, "started {name} (pid {pid}) by {}", method.name());
        }
        Ok(())
    }

    /// Runs the target in the calling process and returns its value (Python's `run()`, which a
    /// started child calls). A panic in the target propagates to the caller.
    ///
    /// # Errors
    /// [`Error::State`] after `start` (the target went to the child) or when `R` is not the
    /// target's return type; [`Error::Codec`] if the arguments do not round-trip.
    pub fn run<R: DeserializeOwned + 'static>(&mut self) -> Result<R> {
        self.shared.check_type::<R>()?;
        let taken = match &mut *lock(&self.shared.state) {
            State::Initial { job, .. } => job.take(),
            _ => None,
        };
        let bytes = match taken {
            None => {
                return Err(Error::state(
                    "the target was handed to the child at start()",
                ));
            }
            // Encoded and decoded, as a spawned child would get them (and kept for the next
            // `run` or `start`); a closure runs once.
            Some(mut job) => match job.image() {
                Some(image) => {
                    if let State::Initial { job: slot, .. } = &mut *lock(&self.shared.state) {
                        *slot = Some(job);
                    }
                    image.call()?
                }
                None => job.call()?,
            },
        };
        wire::decode(&bytes)
    }

    /// Waits for the child to end (Python's `join()`).
    ///
    /// # Errors
    /// [`Error::State`]: `can only join a started process`, `can only join a child process`,
    /// or `process object is closed`.
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// Waits for the child to end, at most `timeout` (Python's `join(timeout)`). Returns without
    /// error on timeout, as Python does: check [`exitcode`](Process::exitcode) or
    /// [`is_alive`](Process::is_alive).
    ///
    /// # Errors
    /// As [`join`](Process::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(Some(timeout))
    }

    fn join_until(&self, timeout: Option<Duration>) -> Result<()> {
        if self.shared.creator != sys::pid() {
            self.shared.check_open()?;
            return Err(Error::state("can only join a child process"));
        }
        self.shared.join(timeout)
    }

    /// True from `start` until the child has ended (reaping it then).
    ///
    /// # Errors
    /// [`Error::State`] when closed.
    pub fn is_alive(&self) -> Result<bool> {
        if self.shared.creator != sys::pid() {
            self.shared.check_open()?;
            return Err(Error::state("can only test a child process"));
        }
        match self.shared.poll_exit(Some(Duration::ZERO)) {
            Ok(code) => Ok(code.is_none()),
            Err(Error::State(m)) if m == NOT_STARTED => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `None` before start and while running; 0 after a normal return; 1 after a panic; `n & 0xFF`
    /// after `exit(n)`; `-N` when killed by signal N.
    ///
    /// # Errors
    /// [`Error::State`] when closed.
    pub fn exitcode(&self) -> Result<Option<i32>> {
        match self.shared.poll_exit(Some(Duration::ZERO)) {
            Err(Error::State(m)) if m == NOT_STARTED => Ok(None),
            other => other,
        }
    }

    /// The child's pid: `None` before start and after close. A child of the fork server
    /// (`forkserver` method) has it once the server has forked it, which this waits for (the
    /// start does not); `None` if the server could not fork it.
    pub fn pid(&self) -> Option<u32> {
        match &*lock(&self.shared.state) {
            State::Started(c) => Some(c.handle.pid()).filter(|&pid| pid != 0),
            _ => None,
        }
    }

    /// Sends SIGTERM (Python's `terminate()`); nothing once the child has been reaped.
    ///
    /// # Errors
    /// [`Error::State`] before start or after close.
    pub fn terminate(&self) -> Result<()> {
        self.shared.signal(sys::SIGTERM)
    }

    /// Sends SIGKILL (Python's `kill()`); nothing once the child has been reaped.
    ///
    /// # Errors
    /// [`Error::State`] before start or after close.
    pub fn kill(&self) -> Result<()> {
        self.shared.signal(sys::SIGKILL)
    }

    /// Releases the OS resources of a finished process. Later calls of `is_alive`, `join`,
    /// `terminate`, `exitcode`, `sentinel` fail with `process object is closed`; closing again
    /// does nothing; closing before start is allowed.
    ///
    /// # Errors
    /// [`Error::State`] while the child is still running.
    pub fn close(&self) -> Result<()> {
        let running = matches!(self.shared.poll_exit(Some(Duration::ZERO)), Ok(None));
        if running {
            return Err(Error::state(
                "Cannot close a process while it is still running. You should first call join() \
                 or terminate().",
            ));
        }
        let mut state = lock(&self.shared.state);
        self.shared.channel.store(-1, Ordering::Relaxed);
        *state = State::Closed;
        drop(state);
        forget_child(&self.shared);
        Ok(())
    }

    /// A handle that becomes ready when the child ends, for [`wait`](crate::wait) (Python's
    /// `sentinel`). On Linux it is a pidfd, so grandchildren never keep it open; it is opened
    /// by the first call (or the first wait), not at the start, so that siblings forked
    /// later do not inherit it.
    ///
    /// # Errors
    /// [`Error::State`] `process not started`, or when closed; [`Error::Io`] if it cannot be
    /// opened (out of descriptors).
    pub fn sentinel(&self) -> Result<Sentinel> {
        match &mut *lock(&self.shared.state) {
            State::Initial { .. } => Err(Error::state("process not started")),
            State::Closed => Err(Error::state(CLOSED)),
            State::Started(c) => c
                .handle
                .sentinel()
                .map(Sentinel)
                .map_err(|e| Error::io("opening a child's sentinel", e)),
        }
    }

    /// Waits for the child to end and returns the target's value (beyond Python).
    ///
    /// # Errors
    /// Why there is no value: [`Error::Panicked`] with the panic message, [`Error::Killed`] with
    /// the signal, [`Error::Exited`] with the code passed to `exit`, [`Error::Bootstrap`] when
    /// the child never ran the target (for instance its `main` lacks `init()`),
    /// [`Error::Codec`] when the value could not be encoded or decoded, [`Error::State`] when
    /// `R` is not the target's return type or the process was not started. A value of no
    /// bytes (`()`, or another zero-sized type) is not sent back: a child that started and
    /// exited with code 0 returned it, whether its target returned or called `exit(0)`.
    pub fn result<R: DeserializeOwned + 'static>(&self) -> Result<R> {
        self.result_within(None)
    }

    /// [`result`](Process::result) waiting at most `timeout` for the child to end.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the child is still running after `timeout` (it is left running);
    /// otherwise as [`result`](Process::result).
    pub fn result_timeout<R: DeserializeOwned + 'static>(&self, timeout: Duration) -> Result<R> {
        self.result_within(Some(timeout))
    }

    fn result_within<R: DeserializeOwned + 'static>(&self, timeout: Option<Duration>) -> Result<R> {
        self.shared.check_type::<R>()?;
        match self.join_until(timeout) {
            // Python has no `result()`: say what is wrong here, not in `join`'s words.
            Err(Error::State(m)) if m == NOT_STARTED => {
                return Err(Error::state(
                    "no result yet: the process was not started (call start() first)",
                ));
            }
            other => other?,
        }
        if timeout.is_some() && self.is_alive()? {
            return Err(Error::Timeout);
        }
        let state = lock(&self.shared.state);
        let State::Started(child) = &*state else {
            return Err(Error::state(CLOSED));
        };
        let code = child.handle.exitcode().unwrap_or(0);
        match &child.report {
            Some(Report::Returned(bytes)) => wire::decode(bytes).map_err(|e| {
                Error::Codec(format!(
                    "decoding the returned value ({}): {}",
                    std::any::type_name::<R>(),
                    match e {
                        Error::Codec(m) => m,
                        other => other.to_string(),
                    }
                ))
            }),
            Some(Report::Panicked(message)) => Err(Error::Panicked {
                message: message.clone(),
            }),
            Some(Report::Failed(m)) => Err(Error::Codec(m.clone())),
            Some(Report::Refused(m)) => Err(Error::Bootstrap(m.clone())),
            Some(Report::Started) | None if code < 0 => Err(Error::Killed { signal: -code }),
            // A value of no bytes is not sent (see `child::run_target`): a started child that
            // exited 0 returned it, if `R` is one; else it exited without returning.
            Some(Report::Started) | None if code == 0 && child.started => {
                wire::decode(&[]).map_err(|_| Error::Exited { exitcode: 0 })
            }
            Some(Report::Started) | None if child.started => Err(Error::Exited { exitcode: code }),
            Some(Report::Started) | None => Err(start::never_started("the child", code)),
        }
    }

    /// Why this child ended without running its target (its program lacks `init()`, runs
    /// another build, or got a garbled bootstrap), as the error naming the fix: for a helper
    /// (a manager's server, a pool's worker) gone silent, after waiting up to `wait` for its
    /// end. `None` while it runs, when it ran its target, or when it was killed.
    pub(crate) fn start_failure(&self, wait: Duration) -> Option<Error> {
        let _ = self.join_timeout(wait);
        let state = lock(&self.shared.state);
        let State::Started(child) = &*state else {
            return None;
        };
        let code = child.handle.exitcode().filter(|code| *code >= 0)?;
        match &child.report {
            Some(Report::Refused(m)) => Some(Error::Bootstrap(m.clone())),
            None if !child.started => Some(start::never_started(
                &format!("the {} process", lock(&self.shared.name)),
                code,
            )),
            _ => None,
        }
    }
}

/// A process's default name, as Python makes it: `prefix` and its ident (`Process-1:2:3`),
/// inline (a process's name is made at each start, and every allocation then is a page the
/// next fork shares: issue 19).
fn default_name(prefix: &str, ident: &[u64]) -> current::ShortName {
    use std::fmt::Write as _;
    let mut name = current::ShortName::new(prefix);
    let _ = name.write_char('-');
    for (i, n) in ident.iter().enumerate() {
        let _ = write!(name, "{}{n}", if i == 0 { "" } else { ":" });
    }
    name
}

/// Set in a manager's process, which is daemonic: it may start daemonic children (its pools'
/// workers). Python forbids a daemonic process children because it is ended without cleanup,
/// which would orphan them; ours die with their parent, so nothing is orphaned.
static DAEMONIC_WORKERS: AtomicBool = AtomicBool::new(false);

/// Lets this daemonic process start daemonic children (see [`DAEMONIC_WORKERS`]).
pub(crate) fn allow_daemonic_workers() {
    DAEMONIC_WORKERS.store(true, Ordering::Relaxed);
}

/// The number of CPUs this process may use: the affinity mask and cgroup CPU quota are honoured
/// (Python's `cpu_count()` ignores both; this is its `process_cpu_count()` of 3.13).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The constructors of a context's processes (here, with `Process`, so that `context` needs
/// nothing of `process`).
impl Context {
    /// `ctx.Process(target=f, args=args)`: a process started with this context's method.
    pub fn process<F, A, R>(&self, target: F, args: A) -> Process
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        crate::registry::no_capture!(F);
        let _ = target;
        self.bind(Job::target::<F, A, R>(args), ResultType::of::<R>())
    }

    /// A process that runs [`Run::run`] of `obj` (Python's subclass overriding `run`), started
    /// with this context's method.
    pub fn process_run<T: Run>(&self, obj: T) -> Process {
        self.bind(Job::run(obj), ResultType::of::<T::Output>())
    }

    /// A process that runs a closure; needs the fork method (see [`Process::from_closure`]).
    pub fn process_closure<F, R>(&self, f: F) -> Process
    where
        F: FnOnce() -> R + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.bind(Job::closure(f), ResultType::of::<R>())
    }

    /// A process of this context for `job`, named as its processes are (`ForkProcess-N`...)
    /// from the start: a name made and replaced is an allocation and a free between two
    /// forks, each a page the children alive share (issue 19).
    fn bind(&self, job: Job, result: ResultType) -> Process {
        let mut process =
            Process::with_job(job, result, Some(self.start_method().process_prefix()));
        process.context = Some(*self);
        process
    }
}
