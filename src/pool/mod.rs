//! A pool of worker processes: Python's `multiprocessing.Pool`, as a supervisor that never
//! hangs.
//!
//! Each worker is a daemonic process with its own duplex pipe to the parent, served by two
//! threads there: a *feeder* that hands it tasks from the pool's queue (at most two at a time,
//! so it never idles between tasks) and a *reader* that receives its results. The parent thus
//! knows which task every worker holds. When a worker dies (killed, crashed, `exit(n)`), the
//! task it was running fails with [`Error::WorkerLost`] carrying its exit code, the task queued
//! behind it goes back to the queue, and a new worker takes its place: Python's pool hangs
//! forever instead (bpo-22393). A task's panic is caught in the worker and returned as
//! [`Error::Panicked`]; the worker goes on.
//!
//! Beyond Python: a per-task time limit (the worker is killed and replaced, the task gets
//! [`Error::Timeout`]), cancelling a queued or running task ([`AsyncResult::cancel`]), `imap`
//! with bounded look-ahead, callbacks that cannot hurt the pool.
//!
//! Tasks are function items (or non-capturing closures) with serde arguments and results, found
//! in the worker like a [`Process`] target; with the fork start method too.
//!
//! ```standalone_crate
//! use multiprocess::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> multiprocess::Result<()> {
//! multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..10u64, None)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! assert_eq!(pool.apply(square, (7,))?, 49);
//! let pending = pool.apply_async(square, (8,))?;
//! assert_eq!(pending.get(None)?, 64);
//! pool.close();
//! pool.join()?;
//! # Ok(()) }
//! ```

mod result;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use result::{AsyncResult, IMap};

use crate::connection::{Connection, Waitable, pipe, wait};
use crate::context::{Context, StartMethod, get_context};
use crate::error::{Error, Result};
use crate::process::Process;
use crate::registry::Target;
use crate::sys::image::{self, Trampoline};
use crate::wire;
use result::{Done, JobCore, Outcome, decode_chunks, decode_one};
use worker::{Code, Failure, INIT, Order, Reply, Setup, message, split, worker_main};

/// Tasks sent to a worker ahead of its results.
const PREFETCH: usize = 2;

/// How to build a [`Pool`]: Python's `Pool(processes, initializer, initargs, maxtasksperchild,
/// context)`, plus a default time limit per task.
#[derive(Debug, Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<std::result::Result<(Code, Vec<u8>), Error>>,
    maxtasksperchild: Option<u64>,
    context: Option<Context>,
    task_timeout: Option<Duration>,
}

impl PoolBuilder {
    /// The number of workers (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs once, with `args`, before its first task. If it panics, the
    /// pool is broken: every task fails with that message (Python restarts such workers in an
    /// endless loop).
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Target<A, ()>,
        A: Serialize + DeserializeOwned + 'static,
    {
        let _ = f;
        let init = encode_args(&args)
            .and_then(|bytes| Code::of(image_trampoline::<F, A, ()>()).map(|code| (code, bytes)));
        self.initializer = Some(init);
        self
    }

    /// Workers exit after this many tasks and are replaced (Python's `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasksperchild = Some(n);
        self
    }

    /// The start method of the workers (default: the global one).
    pub fn context(mut self, ctx: Context) -> Self {
        self.context = Some(ctx);
        self
    }

    /// A time limit for every task (beyond Python): a worker still running a task after it is
    /// killed and replaced, and the task fails with [`Error::Timeout`].
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 processes or `maxtasksperchild` 0 (Python's texts);
    /// the error of a worker that could not start (those already started are stopped).
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes < 1 {
            return Err(Error::InvalidArgument(
                "Number of processes must be at least 1".into(),
            ));
        }
        if self.maxtasksperchild == Some(0) {
            return Err(Error::InvalidArgument(
                "maxtasksperchild must be a positive int or None".into(),
            ));
        }
        let initializer = self.initializer.transpose()?;
        let method = match self.context {
            Some(c) => c.start_method(),
            None => crate::get_start_method(false).unwrap_or(StartMethod::Spawn),
        };
        let context = get_context(method.name())?;
        let shared = Arc::new(Shared {
            processes,
            setup: Setup {
                initializer,
                maxtasks: self.maxtasksperchild,
            },
            context,
            task_timeout: self.task_timeout,
            state: Mutex::new(State::default()),
            feed: Condvar::new(),
            changed: Condvar::new(),
        });
        let pool = Pool { shared };
        for _ in 0..processes {
            if let Err(e) = pool.shared.start_worker() {
                pool.terminate();
                let _ = pool.join();
                return Err(e);
            }
        }
        Ok(pool)
    }
}

/// The pool's life: Python's RUN, CLOSE, TERMINATE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Running,
    Closed,
    Terminated,
}

/// One task: a chunk of work for one worker.
struct Task {
    id: u64,
    code: Code,
    args: Vec<u8>,
    job: Arc<JobCore>,
    index: usize,
    timeout: Option<Duration>,
}

/// The parent's view of one worker.
struct Slot {
    process: Arc<Mutex<Process>>,
    conn: Arc<Connection>,
    in_flight: VecDeque<Task>,
    /// When the task at the head of `in_flight` started.
    head_since: Instant,
    sent: u64,
    /// Why we killed it, if we did.
    killed: Option<Failure>,
    dead: bool,
}

#[derive(Default)]
struct State {
    phase: Phase,
    pending: VecDeque<Task>,
    slots: HashMap<u64, Slot>,
    next_task: u64,
    next_worker: u64,
    /// The initializer's failure: the pool cannot run tasks.
    broken: Option<String>,
    threads: Vec<JoinHandle<()>>,
}

/// What the pool's threads and results share.
pub(crate) struct Shared {
    processes: usize,
    setup: Setup,
    context: Context,
    task_timeout: Option<Duration>,
    state: Mutex<State>,
    /// Feeders wait here for tasks.
    feed: Condvar,
    /// `join` waits here for workers to end.
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn encode_args<A: Serialize + ?Sized>(args: &A) -> Result<Vec<u8>> {
    let (bytes, handles) = wire::encode_with_handles(args)?;
    if !handles.is_empty() {
        return Err(Error::Codec(
            "pool task arguments cannot carry OS handles (a Connection, Lock or Queue); pass \
             those to Process arguments instead"
                .into(),
        ));
    }
    Ok(bytes)
}

/// The trampoline calling target `F` with arguments `A` (one task of `apply`).
fn image_trampoline<F, A, R>() -> Trampoline
where
    F: Target<A, R>,
    A: DeserializeOwned,
    R: Serialize,
{
    call_target::<F, A, R>
}

fn call_target<F, A, R>(args: &[u8]) -> Result<Vec<u8>>
where
    F: Target<A, R>,
    A: DeserializeOwned,
    R: Serialize,
{
    let args: A = wire::decode(args)?;
    wire::encode(&image::conjure::<F>().call(args))
}

/// One `map` chunk: `f(x)` for each `x`.
fn call_chunk<F, X, R>(args: &[u8]) -> Result<Vec<u8>>
where
    F: Target<(X,), R>,
    X: DeserializeOwned,
    R: Serialize,
{
    let f = image::conjure::<F>();
    let items: Vec<X> = wire::decode(args)?;
    let out: Vec<R> = items.into_iter().map(|x| f.call((x,))).collect();
    wire::encode(&out)
}

/// One `starmap` chunk: `f(*a)` for each tuple `a`.
fn call_star_chunk<F, A, R>(args: &[u8]) -> Result<Vec<u8>>
where
    F: Target<A, R>,
    A: DeserializeOwned,
    R: Serialize,
{
    let f = image::conjure::<F>();
    let items: Vec<A> = wire::decode(args)?;
    let out: Vec<R> = items.into_iter().map(|a| f.call(a)).collect();
    wire::encode(&out)
}

impl Shared {
    fn worker_name(&self, n: u64) -> String {
        let method = match self.context.start_method() {
            StartMethod::Fork => "Fork",
            StartMethod::Spawn => "Spawn",
        };
        format!("{method}PoolWorker-{n}")
    }

    /// Starts one worker and its two threads.
    fn start_worker(self: &Arc<Self>) -> Result<()> {
        let (ours, theirs) = pipe(true)?;
        let n = {
            let mut st = lock(&self.state);
            st.next_worker += 1;
            st.next_worker
        };
        let mut process = self
            .context
            .process(worker_main, (theirs, self.setup.clone()))
            .daemon(true)
            .name(self.worker_name(n));
        process.start()?;
        let slot = Slot {
            process: Arc::new(Mutex::new(process)),
            conn: Arc::new(ours),
            in_flight: VecDeque::new(),
            head_since: Instant::now(),
            sent: 0,
            killed: None,
            dead: false,
        };
        let mut st = lock(&self.state);
        if st.phase == Phase::Terminated || st.broken.is_some() {
            // The pool was terminated while this replacement started.
            let _ = lock(&slot.process).kill();
        }
        st.slots.insert(n, slot);
        let feeder = {
            let shared = self.clone();
            std::thread::Builder::new()
                .name(format!("pool-feeder-{n}"))
                .spawn(move || shared.feed_worker(n))
        };
        let reader = {
            let shared = self.clone();
            std::thread::Builder::new()
                .name(format!("pool-reader-{n}"))
                .spawn(move || shared.read_worker(n))
        };
        for t in [feeder, reader] {
            match t {
                Ok(handle) => st.threads.push(handle),
                Err(e) => {
                    if let Some(slot) = st.slots.get(&n) {
                        let _ = lock(&slot.process).kill();
                    }
                    return Err(Error::io("starting a pool thread", e));
                }
            }
        }
        Ok(())
    }

    /// The feeder of worker `n`: hands it tasks, then the order to stop when the pool closes.
    fn feed_worker(self: Arc<Self>, n: u64) {
        loop {
            let mut st = lock(&self.state);
            let (order, args, conn) = loop {
                let phase = st.phase;
                let broken = st.broken.is_some();
                let maxtasks = self.setup.maxtasks;
                let Some(slot) = st.slots.get(&n) else {
                    return;
                };
                if slot.dead || phase == Phase::Terminated || broken {
                    return;
                }
                if maxtasks.is_some_and(|m| slot.sent >= m) {
                    return; // it exits by itself after its last task
                }
                // A second task waits in the worker only when no other worker is idle for it.
                let idle = st.slots.values().filter(|s| s.in_flight.is_empty()).count();
                let take = slot.in_flight.is_empty()
                    || (slot.in_flight.len() < PREFETCH && st.pending.len() > idle);
                if take {
                    if let Some(task) = st.pending.pop_front() {
                        if task.job.is_cancelled() {
                            task.job.set(task.index, Err(Failure::Cancelled));
                            continue;
                        }
                        let slot = st.slots.get_mut(&n).expect("checked above");
                        if slot.in_flight.is_empty() {
                            slot.head_since = Instant::now();
                        }
                        slot.sent += 1;
                        let order = Order::Task {
                            id: task.id,
                            code: task.code,
                        };
                        let args = task.args.clone();
                        slot.in_flight.push_back(task);
                        break (Some(order), args, slot.conn.clone());
                    }
                }
                let slot = st.slots.get(&n).expect("checked above");
                if phase == Phase::Closed && st.pending.is_empty() && slot.in_flight.is_empty() {
                    break (None, Vec::new(), slot.conn.clone());
                }
                st = self.feed.wait(st).unwrap_or_else(|e| e.into_inner());
            };
            drop(st);
            let m = match &order {
                Some(order) => message(order, &args),
                None => message(&Order::Stop, &[]),
            };
            // A failed send means the worker is gone: its reader handles that.
            if m.and_then(|m| conn.send_bytes(&m)).is_err() || order.is_none() {
                return;
            }
        }
    }

    /// The reader of worker `n`: receives its results, enforces time limits, and handles its
    /// end (replacing it while there is work).
    fn read_worker(self: Arc<Self>, n: u64) {
        let (conn, process) = {
            let st = lock(&self.state);
            match st.slots.get(&n) {
                Some(s) => (s.conn.clone(), s.process.clone()),
                None => return,
            }
        };
        let sentinel = lock(&process).sentinel().ok();
        loop {
            // The head task's deadline, if it has a time limit.
            let deadline = {
                let st = lock(&self.state);
                st.slots.get(&n).and_then(|s| {
                    s.in_flight
                        .front()
                        .and_then(|t| t.timeout)
                        .map(|t| s.head_since + t)
                })
            };
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let mut objects: Vec<&dyn Waitable> = vec![&*conn];
            if let Some(s) = &sentinel {
                objects.push(s);
            }
            let ready = match wait(&objects, timeout) {
                Ok(r) => r,
                Err(_) => break,
            };
            if ready.is_empty() {
                // The head task ran out of time.
                let mut st = lock(&self.state);
                if let Some(slot) = st.slots.get_mut(&n) {
                    slot.killed.get_or_insert(Failure::Timeout);
                }
                drop(st);
                let _ = lock(&process).kill();
                continue;
            }
            if ready.contains(&0) {
                match conn.recv_bytes(None) {
                    Ok(m) => {
                        if !self.deliver(n, &m) {
                            break;
                        }
                        continue;
                    }
                    Err(_) => break,
                }
            }
            // The sentinel: take what the worker sent before it ended, then handle its end.
            while conn.poll(Some(Duration::ZERO)).unwrap_or(false) {
                match conn.recv_bytes(None) {
                    Ok(m) if self.deliver(n, &m) => {}
                    _ => break,
                }
            }
            break;
        }
        self.worker_ended(n, &process);
    }

    /// Handles one message from worker `n`; false if the worker is to be considered gone.
    fn deliver(&self, n: u64, m: &[u8]) -> bool {
        let Ok((reply, payload)) = split::<Reply>(m) else {
            return false;
        };
        let mut st = lock(&self.state);
        if reply.id == INIT {
            if let Some(failure) = reply.failure {
                let why = failure.to_error();
                self.break_pool(&mut st, format!("the pool's initializer failed: {why}"));
                return false;
            }
            return true;
        }
        let Some(slot) = st.slots.get_mut(&n) else {
            return false;
        };
        if slot.in_flight.front().map(|t| t.id) != Some(reply.id) {
            return false; // out of order: not our protocol
        }
        let task = slot.in_flight.pop_front().expect("checked above");
        slot.head_since = Instant::now();
        drop(st);
        self.feed.notify_all();
        let outcome: Outcome = match reply.failure {
            None => Ok(payload.to_vec()),
            Some(f) => Err(f),
        };
        task.job.set(task.index, outcome);
        true
    }

    /// Fails everything: the initializer does not work.
    fn break_pool(&self, st: &mut State, reason: String) {
        st.broken.get_or_insert(reason.clone());
        for task in st.pending.drain(..) {
            task.job
                .set(task.index, Err(Failure::Other(reason.clone())));
        }
        self.feed.notify_all();
    }

    /// Worker `n` ended: fail the task it was running, requeue the ones behind it, reap it, and
    /// start a replacement while there is work.
    fn worker_ended(self: &Arc<Self>, n: u64, process: &Mutex<Process>) {
        let exitcode = {
            // It is ending (end of file, or its sentinel); give it a moment to finish on its
            // own, so that its exit code is its own.
            let process = lock(process);
            let _ = process.join(Some(Duration::from_millis(500)));
            let _ = process.kill();
            let _ = process.join(None);
            process.exitcode().ok().flatten().unwrap_or(-1)
        };
        let mut st = lock(&self.state);
        let Some(mut slot) = st.slots.remove(&n) else {
            return;
        };
        slot.dead = true;
        let mut in_flight = std::mem::take(&mut slot.in_flight);
        if let Some(head) = in_flight.pop_front() {
            let failure = match (&slot.killed, &st.broken) {
                (Some(why), _) => why.clone(),
                (None, Some(reason)) => Failure::Other(reason.clone()),
                (None, None) => Failure::WorkerLost(exitcode),
            };
            head.job.set(head.index, Err(failure));
        }
        // Tasks it had not started go back to the front of the queue, in order.
        while let Some(task) = in_flight.pop_back() {
            if st.phase == Phase::Terminated || task.job.is_cancelled() {
                task.job.set(task.index, Err(Failure::Cancelled));
            } else if let Some(reason) = &st.broken {
                task.job
                    .set(task.index, Err(Failure::Other(reason.clone())));
            } else {
                st.pending.push_front(task);
            }
        }
        let replace = st.broken.is_none()
            && match st.phase {
                Phase::Running => true,
                Phase::Closed => !st.pending.is_empty(),
                Phase::Terminated => false,
            }
            && st.slots.len() < self.processes;
        drop(st);
        self.feed.notify_all();
        if replace {
            if let Err(e) = self.start_worker() {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "Pool: cannot start a worker: {e}");
                let mut st = lock(&self.state);
                if st.slots.is_empty() {
                    self.break_pool(&mut st, format!("cannot start a worker: {e}"));
                }
            }
        }
        self.changed.notify_all();
    }

    /// Queues tasks for `job` (indices from `first`).
    fn submit(
        &self,
        code: Code,
        chunks: Vec<Vec<u8>>,
        job: &Arc<JobCore>,
        first: usize,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let mut st = lock(&self.state);
        if st.phase != Phase::Running {
            return Err(Error::state("Pool not running"));
        }
        if let Some(reason) = &st.broken {
            return Err(Error::state(reason.clone()));
        }
        let timeout = timeout.or(self.task_timeout);
        for (i, args) in chunks.into_iter().enumerate() {
            st.next_task += 1;
            let id = st.next_task;
            st.pending.push_back(Task {
                id,
                code,
                args,
                job: job.clone(),
                index: first + i,
                timeout,
            });
        }
        drop(st);
        self.feed.notify_all();
        Ok(())
    }

    /// Drops `job`'s queued tasks.
    fn cancel_queued(&self, job: &Arc<JobCore>) {
        let mut st = lock(&self.state);
        let pending = std::mem::take(&mut st.pending);
        for task in pending {
            if Arc::ptr_eq(&task.job, job) {
                task.job.set(task.index, Err(Failure::Cancelled));
            } else {
                st.pending.push_back(task);
            }
        }
    }

    /// Drops `job`'s queued tasks and kills the workers running its tasks.
    pub(crate) fn cancel(&self, job: &Arc<JobCore>) {
        self.cancel_queued(job);
        let mut st = lock(&self.state);
        for slot in st.slots.values_mut() {
            if slot
                .in_flight
                .front()
                .is_some_and(|t| Arc::ptr_eq(&t.job, job))
            {
                slot.killed.get_or_insert(Failure::Cancelled);
                let _ = lock(&slot.process).kill();
            }
        }
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`. See the [module docs](self).
///
/// Dropping a pool terminates it, like Python's `with Pool() as p:` block.
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = lock(&self.shared.state);
        let state = match st.phase {
            Phase::Running => "RUN",
            Phase::Closed => "CLOSE",
            Phase::Terminated => "TERMINATE",
        };
        write!(
            f,
            "<multiprocess.pool.Pool state={state} pool_size={}>",
            st.slots.len()
        )
    }
}

/// Options of one submission: callbacks and a time limit.
pub struct TaskOptions<R> {
    timeout: Option<Duration>,
    callback: Option<Box<dyn FnOnce(R) + Send>>,
    error_callback: Option<Box<dyn FnOnce(Error) + Send>>,
}

impl<R> Default for TaskOptions<R> {
    fn default() -> Self {
        TaskOptions {
            timeout: None,
            callback: None,
            error_callback: None,
        }
    }
}

impl<R> std::fmt::Debug for TaskOptions<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskOptions")
            .field("timeout", &self.timeout)
            .field("callback", &self.callback.is_some())
            .field("error_callback", &self.error_callback.is_some())
            .finish()
    }
}

impl<R> TaskOptions<R> {
    /// No callbacks, the pool's time limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A time limit for each task of this submission (overrides the pool's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Called with the value once the job succeeds, on a pool thread (Python's `callback`).
    /// A panic in it is reported on stderr and contained.
    pub fn callback(mut self, f: impl FnOnce(R) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Called with the error once the job fails (Python's `error_callback`).
    pub fn error_callback(mut self, f: impl FnOnce(Error) + Send + 'static) -> Self {
        self.error_callback = Some(Box::new(f));
        self
    }
}

impl<R: 'static> TaskOptions<R> {
    /// The job's completion hook: decodes the outcomes and calls exactly one callback.
    fn into_done(self, decode: fn(&[Outcome]) -> Result<R>) -> Option<Done> {
        if self.callback.is_none() && self.error_callback.is_none() {
            return None;
        }
        let (callback, error_callback) = (self.callback, self.error_callback);
        Some(Box::new(move |outcomes: &[Outcome]| {
            match decode(outcomes) {
                Ok(v) => {
                    if let Some(cb) = callback {
                        cb(v)
                    }
                }
                Err(e) => {
                    if let Some(cb) = error_callback {
                        cb(e)
                    }
                }
            }
        }))
    }
}

/// Python's default `map` chunk size: ceil(n / (4 × workers)).
fn default_chunksize(n: usize, workers: usize) -> usize {
    n.div_ceil(4 * workers).max(1)
}

impl Pool {
    /// A pool of `processes` workers (Python's `Pool(processes)`); see [`Pool::builder`] for
    /// the other options.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Python's other `Pool` arguments.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    fn result<R>(&self, job: Arc<JobCore>, decode: fn(&[Outcome]) -> Result<R>) -> AsyncResult<R> {
        AsyncResult {
            job,
            pool: Arc::downgrade(&self.shared),
            decode,
            _r: PhantomData,
        }
    }

    /// Calls `f(args...)` in a worker and waits for the value (Python's `apply`).
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, args)?.get(None)
    }

    /// Starts `f(args...)` in a worker (Python's `apply_async`).
    ///
    /// # Errors
    /// [`Error::Codec`] if the arguments cannot be encoded; [`Error::State`] ("Pool not
    /// running") after `close`/`terminate`.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async_with(f, args, TaskOptions::new())
    }

    /// [`apply_async`](Pool::apply_async) with callbacks and a time limit.
    pub fn apply_async_with<F, A, R>(
        &self,
        _f: F,
        args: A,
        options: TaskOptions<R>,
    ) -> Result<AsyncResult<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let bytes = encode_args(&args)?;
        let code = Code::of(call_target::<F, A, R>)?;
        let timeout = options.timeout;
        let job = JobCore::new(Some(1), options.into_done(decode_one::<R>));
        self.shared.submit(code, vec![bytes], &job, 0, timeout)?;
        Ok(self.result(job, decode_one::<R>))
    }

    /// `f(x)` for every item, in order, waiting for all (Python's `map`). `chunksize` `None`
    /// is Python's default, ceil(n / (4 × workers)).
    pub fn map<F, X, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, items, chunksize)?.get(None)
    }

    /// Starts a [`map`](Pool::map) (Python's `map_async`).
    pub fn map_async<F, X, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async_with(f, items, chunksize, TaskOptions::new())
    }

    /// [`map_async`](Pool::map_async) with callbacks (called once, with the whole list) and a
    /// time limit per chunk.
    pub fn map_async_with<F, X, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
        options: TaskOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<X> = items.into_iter().collect();
        let code = Code::of(call_chunk::<F, X, R>)?;
        self.map_like(code, &items, chunksize, options)
    }

    /// `f(*args)` for every tuple, in order (Python's `starmap`).
    pub fn starmap<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.starmap_async(f, items, chunksize)?.get(None)
    }

    /// Starts a [`starmap`](Pool::starmap) (Python's `starmap_async`).
    pub fn starmap_async<F, A, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let code = Code::of(call_star_chunk::<F, A, R>)?;
        self.map_like(code, &items, chunksize, TaskOptions::new())
    }

    fn map_like<X: Serialize, R: DeserializeOwned + 'static>(
        &self,
        code: Code,
        items: &[X],
        chunksize: Option<usize>,
        options: TaskOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>> {
        let chunksize = chunksize
            .unwrap_or_else(|| default_chunksize(items.len(), self.shared.processes))
            .max(1);
        let chunks = items
            .chunks(chunksize)
            .map(encode_args)
            .collect::<Result<Vec<_>>>()?;
        let timeout = options.timeout;
        let job = JobCore::new(Some(chunks.len()), options.into_done(decode_chunks::<R>));
        if chunks.is_empty() {
            job.set_total(0);
        } else {
            self.shared.submit(code, chunks, &job, 0, timeout)?;
        }
        Ok(self.result(job, decode_chunks::<R>))
    }

    /// `f(x)` for every item, yielded in input order as they complete (Python's `imap`). The
    /// input is read lazily with bounded look-ahead. `chunksize` items travel per task.
    pub fn imap<'a, F, X, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = X> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.imap_impl(f, items, chunksize, true)
    }

    /// Like [`imap`](Pool::imap), yielding results in completion order (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<'a, F, X, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = X> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.imap_impl(f, items, chunksize, false)
    }

    fn imap_impl<'a, F, X, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = X> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMap<'a, R>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        if lock(&self.shared.state).phase != Phase::Running {
            return Err(Error::state("Pool not running"));
        }
        let chunksize = chunksize.max(1);
        let mut input = items.into_iter();
        let chunker = Box::new(move || {
            let chunk: Vec<X> = input.by_ref().take(chunksize).collect();
            (!chunk.is_empty()).then(|| encode_args(&chunk))
        });
        Ok(IMap {
            pool: self.shared.clone(),
            job: JobCore::new(None, None),
            chunker,
            code: Code::of(call_chunk::<F, X, R>)?,
            submitted: 0,
            taken: 0,
            lookahead: 2 * self.shared.processes,
            input_done: false,
            ordered,
            buffer: VecDeque::new(),
        })
    }

    /// Stops accepting work; the workers exit once the queued work is done (Python's
    /// `close`).
    pub fn close(&self) {
        let mut st = lock(&self.shared.state);
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
        }
        drop(st);
        self.shared.feed.notify_all();
    }

    /// Kills the workers now; unfinished tasks fail with [`Error::Cancelled`] (Python's
    /// `terminate`, whose pending results never become ready).
    pub fn terminate(&self) {
        let mut st = lock(&self.shared.state);
        st.phase = Phase::Terminated;
        for task in st.pending.drain(..) {
            task.job.set(task.index, Err(Failure::Cancelled));
        }
        for slot in st.slots.values_mut() {
            slot.killed.get_or_insert(Failure::Cancelled);
            let _ = lock(&slot.process).kill();
        }
        drop(st);
        self.shared.feed.notify_all();
    }

    /// Waits for the workers to exit (Python's `join`).
    ///
    /// # Errors
    /// [`Error::State`] ("Pool is still running") before `close` or `terminate`.
    pub fn join(&self) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if st.phase == Phase::Running {
            return Err(Error::state("Pool is still running"));
        }
        while !st.slots.is_empty() {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
        let threads = std::mem::take(&mut st.threads);
        drop(st);
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }

    /// The workers' pids (for tests and monitoring).
    pub fn worker_pids(&self) -> Vec<u32> {
        let st = lock(&self.shared.state);
        st.slots
            .values()
            .filter_map(|s| lock(&s.process).pid())
            .collect()
    }
}

impl Drop for Pool {
    /// Terminates the pool and waits for its workers, like leaving Python's `with Pool()`.
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join();
    }
}
