//! A pool of worker processes: Python's `multiprocessing.Pool`, as a supervisor that never
//! hangs.
//!
//! Each worker is a daemonic process with two rings in shared memory to the parent (tasks in,
//! results out; see `queues`), served there by one reader thread. Tasks are handed out by
//! whichever thread has them (the caller submitting, or a reader that just received a result):
//! one to each idle worker first, then more to busy workers when all are busy. The worker
//! counts the tasks it starts in shared memory, so the parent knows exactly which task a worker
//! held. When a worker dies (killed, crashed, `exit(n)`), the task it was running fails with
//! [`Error::WorkerLost`] carrying its exit code, the tasks queued behind it go back to the
//! queue, and a new worker takes its place: Python's pool hangs forever instead (bpo-22393).
//! A task's panic is caught in the worker and returned as [`Error::Panicked`]; the worker goes
//! on.
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

mod chunk;
mod progress;
mod remote;
mod result;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use result::{AsyncResult, IMap};

use crate::context::{Context, StartMethod, get_context};
use crate::error::{Error, Result};
use crate::process::Process;
use crate::queues::Ring;
use crate::registry::{Target, call_target};
use crate::sys::Region;
use crate::sys::image;
use crate::wire;
pub(crate) use remote::{
    RemoteJob, RemoteOutcomes, decode_remote_chunks, decode_remote_one, remote_outcome,
};
use result::{Done, JobCore, Outcome, Payload, collect_chunks, decode_chunks, decode_one};
use worker::{Code, Failure, INIT, Link, Order, OrderHead, Reply, Setup, split, worker_main};

/// The most tasks a worker holds at once (one running, the rest waiting in its ring); a
/// worker gets more than one only when every worker is busy.
const DEPTH: usize = 32;
/// Each direction's ring per worker: messages up to this size are copied in whole; longer
/// ones stream through.
const RING_BYTES: usize = 8 << 20;
/// Replies a reader takes at once.
const REPLY_BATCH: usize = 64;
/// A map of at most this many chunks is decoded chunk by chunk as the chunks come (more
/// would mean a wake-up of the caller per small chunk).
const EAGER_CHUNKS: usize = 64;
/// How often a waiting reader checks that its worker is alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// How to build a [`Pool`]: Python's `Pool(processes, initializer, initargs, maxtasksperchild,
/// context)`, plus a default time limit per task.
#[derive(Debug, Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<std::result::Result<(Code, Vec<u8>), Error>>,
    maxtasksperchild: Option<u64>,
    context: Option<Context>,
    task_timeout: Option<Duration>,
    progress: bool,
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
            .and_then(|bytes| Code::of(call_target::<F, A, ()>).map(|code| (code, bytes)));
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

    /// Shows a progress bar on stderr (when it is a terminal) for every `map`, `starmap` and
    /// `imap` of this pool. Needs the cargo feature `progress`.
    #[cfg(feature = "progress")]
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
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
            progress: self.progress,
            state: Mutex::new(State::default()),
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
    args: Arc<Vec<u8>>,
    job: Arc<JobCore>,
    index: usize,
    timeout: Option<Duration>,
}

/// The parent's view of one worker.
struct Slot {
    process: Arc<Mutex<Process>>,
    link: Link,
    in_flight: VecDeque<Task>,
    /// Replies received (compared with the worker's count of tasks started).
    completed: u32,
    /// When the task at the head of `in_flight` started.
    head_since: Instant,
    sent: u64,
    /// Why we killed it, if we did.
    killed: Option<Failure>,
    /// Set when it has ended: a thread writing to it gives up.
    dead: Arc<AtomicBool>,
    /// A thread is writing tasks into its ring (outside the state lock): others leave it be.
    putting: bool,
    /// It was told to stop.
    stopping: bool,
}

/// One message for a worker: its header part and its payload (shared with the queued task).
type Message = (OrderHead, Arc<Vec<u8>>);

/// Messages for one worker, written in this order by the thread that planned them.
struct Delivery {
    n: u64,
    ring: Ring,
    dead: Arc<AtomicBool>,
    messages: Vec<Message>,
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
    progress: bool,
    state: Mutex<State>,
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

/// Runs `f` over one chunk of items and encodes the results (into a reused buffer).
fn run_chunk<I: DeserializeOwned, R: Serialize>(
    args: &[u8],
    f: impl FnMut(I) -> R,
) -> Result<Vec<u8>> {
    chunk::map_into(args, f, wire::spare_buffer())
}

/// One `map` chunk: `f(x)` for each `x`. (Decoding the items as one-field tuples for
/// [`call_star_chunk`] would be correct too, but measured 25% slower.)
fn call_chunk<F, X, R>(args: &[u8]) -> Result<Vec<u8>>
where
    F: Target<(X,), R>,
    X: DeserializeOwned,
    R: Serialize,
{
    let f = image::conjure::<F>();
    run_chunk(args, |x: X| f.call((x,)))
}

/// One `starmap` chunk: `f(*a)` for each tuple `a`.
fn call_star_chunk<F, A, R>(args: &[u8]) -> Result<Vec<u8>>
where
    F: Target<A, R>,
    A: DeserializeOwned,
    R: Serialize,
{
    let f = image::conjure::<F>();
    run_chunk(args, |a: A| f.call(a))
}

impl Shared {
    fn worker_name(&self, n: u64) -> String {
        let method = match self.context.start_method() {
            StartMethod::Fork => "Fork",
            StartMethod::Spawn => "Spawn",
            StartMethod::Forkserver => "ForkServer",
        };
        format!("{method}PoolWorker-{n}")
    }

    /// Starts one worker and its reader thread.
    fn start_worker(self: &Arc<Self>) -> Result<()> {
        let started =
            Region::new(4).map_err(|e| Error::io("creating a pool worker's shared memory", e))?;
        let link = Link {
            tasks: Ring::new(RING_BYTES, 0)?,
            replies: Ring::new(RING_BYTES, 0)?,
            started: Arc::new(started),
        };
        let n = {
            let mut st = lock(&self.state);
            st.next_worker += 1;
            st.next_worker
        };
        let mut process = self
            .context
            .process(worker_main, (link.clone(), self.setup.clone()))
            .daemon(true)
            .name(self.worker_name(n));
        process.start()?;
        let slot = Slot {
            process: Arc::new(Mutex::new(process)),
            link,
            in_flight: VecDeque::new(),
            completed: 0,
            head_since: Instant::now(),
            sent: 0,
            killed: None,
            dead: Arc::new(AtomicBool::new(false)),
            putting: false,
            stopping: false,
        };
        let mut st = lock(&self.state);
        if st.phase == Phase::Terminated || st.broken.is_some() {
            // The pool was terminated while this replacement started.
            let _ = lock(&slot.process).kill();
        }
        st.slots.insert(n, slot);
        let shared = self.clone();
        let reader = std::thread::Builder::new()
            .name(format!("pool-worker-{n}"))
            .spawn(move || shared.read_worker(n));
        match reader {
            Ok(handle) => st.threads.push(handle),
            Err(e) => {
                if let Some(slot) = st.slots.get(&n) {
                    let _ = lock(&slot.process).kill();
                }
                return Err(Error::io("starting a pool thread", e));
            }
        }
        drop(st);
        self.dispatch();
        Ok(())
    }

    /// Hands queued tasks to workers: one to each idle worker first, then more to each in turn
    /// while tasks remain (up to [`DEPTH`]); tells idle workers of a closed pool to stop. The
    /// messages are written outside the state lock, by this thread, in the planned order.
    fn dispatch(&self) {
        loop {
            let deliveries = {
                let mut st = lock(&self.state);
                self.plan(&mut st)
            };
            if deliveries.is_empty() {
                return;
            }
            for d in deliveries {
                let abandon = || d.dead.load(Ordering::SeqCst);
                'messages: for (header, args) in &d.messages {
                    loop {
                        let wait = crate::synchronize::Deadline::after(Some(LIVENESS_CHECK));
                        match d.ring.put_parts(&[header.as_bytes(), args], wait, &abandon) {
                            Ok(true) => break,
                            Ok(false) if !abandon() => continue,
                            // The worker is gone: its reader requeues what it held.
                            _ => break 'messages,
                        }
                    }
                }
                if let Some(slot) = lock(&self.state).slots.get_mut(&d.n) {
                    slot.putting = false;
                }
            }
        }
    }

    /// With the state lock held: assigns tasks (see [`Shared::dispatch`]).
    fn plan(&self, st: &mut State) -> Vec<Delivery> {
        if st.phase == Phase::Terminated || st.broken.is_some() {
            return Vec::new();
        }
        let mut ids: Vec<u64> = st.slots.keys().copied().collect();
        ids.sort_unstable();
        let mut planned: Vec<(u64, Vec<Message>)> = Vec::new();
        let maxtasks = self.setup.maxtasks;
        for pass in 0..2 {
            let mut progress = true;
            while progress && !st.pending.is_empty() {
                progress = false;
                for &n in &ids {
                    let Some(slot) = st.slots.get(&n) else {
                        continue;
                    };
                    let limit = if pass == 0 { 1 } else { DEPTH };
                    if slot.putting
                        || slot.stopping
                        || slot.dead.load(Ordering::SeqCst)
                        || slot.in_flight.len() >= limit
                        || maxtasks.is_some_and(|m| slot.sent >= m)
                    {
                        continue;
                    }
                    let Some(task) = next_pending(&mut st.pending) else {
                        break;
                    };
                    let header = match OrderHead::new(&Order::Task {
                        id: task.id,
                        code: task.code,
                    }) {
                        Ok(h) => h,
                        Err(e) => {
                            task.job.set(task.index, Err(Failure::Codec(e.to_string())));
                            continue;
                        }
                    };
                    let slot = st.slots.get_mut(&n).expect("present above");
                    if slot.in_flight.is_empty() {
                        slot.head_since = Instant::now();
                    }
                    slot.sent += 1;
                    let args = task.args.clone();
                    match planned.iter_mut().find(|(m, _)| *m == n) {
                        Some((_, messages)) => messages.push((header, args)),
                        None => planned.push((n, vec![(header, args)])),
                    }
                    slot.in_flight.push_back(task);
                    progress = true;
                }
                if pass == 0 {
                    break;
                }
            }
        }
        if st.phase == Phase::Closed && st.pending.is_empty() {
            for &n in &ids {
                let Some(slot) = st.slots.get_mut(&n) else {
                    continue;
                };
                if slot.in_flight.is_empty() && !slot.stopping && !slot.putting {
                    if let Ok(header) = OrderHead::new(&Order::Stop) {
                        slot.stopping = true;
                        let stop = (header, Arc::new(Vec::new()));
                        match planned.iter_mut().find(|(m, _)| *m == n) {
                            Some((_, messages)) => messages.push(stop),
                            None => planned.push((n, vec![stop])),
                        }
                    }
                }
            }
        }
        let mut deliveries = Vec::new();
        for (n, messages) in planned {
            if let Some(slot) = st.slots.get_mut(&n) {
                slot.putting = true;
                deliveries.push(Delivery {
                    n,
                    ring: slot.link.tasks.clone(),
                    dead: slot.dead.clone(),
                    messages,
                });
            }
        }
        deliveries
    }

    /// The reader of worker `n`: receives its results, enforces time limits, notices its end.
    fn read_worker(self: Arc<Self>, n: u64) {
        let (replies, process) = {
            let st = lock(&self.state);
            match st.slots.get(&n) {
                Some(s) => (s.link.replies.clone(), s.process.clone()),
                None => return,
            }
        };
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
            let slice = deadline.map_or(LIVENESS_CHECK, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(LIVENESS_CHECK)
            });
            match replies.get(crate::synchronize::Deadline::after(Some(slice))) {
                Ok(Some(m)) => {
                    // Take every reply already there (one lock of the ring), record them under
                    // one lock of the pool, then hand out work once.
                    let mut batch = vec![m];
                    if let Ok(more) = replies.get_many_with(
                        REPLY_BATCH,
                        crate::synchronize::Deadline::after(Some(Duration::ZERO)),
                        |m| m.into_owned(),
                    ) {
                        batch.extend(more);
                    }
                    if !self.deliver(n, batch) {
                        break;
                    }
                    if self.needs_work(n) {
                        self.dispatch();
                    }
                }
                Ok(None) => {
                    if !lock(&process).is_alive().unwrap_or(false) {
                        break;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let mut st = lock(&self.state);
                        if let Some(slot) = st.slots.get_mut(&n) {
                            slot.killed.get_or_insert(Failure::Timeout);
                        }
                        drop(st);
                        let _ = lock(&process).kill();
                    }
                }
                Err(_) => break,
            }
        }
        // Take what it sent before it ended.
        while let Ok(Some(m)) =
            replies.get(crate::synchronize::Deadline::after(Some(Duration::ZERO)))
        {
            if !self.deliver(n, vec![m]) {
                break;
            }
        }
        self.worker_ended(n, &process);
    }

    /// Whether worker `n` is running low on tasks while some wait (or the pool is closing, and
    /// idle workers are to be told to stop).
    fn needs_work(&self, n: u64) -> bool {
        let st = lock(&self.state);
        let low = st.slots.get(&n).is_none_or(|s| s.in_flight.len() < DEPTH);
        low && (!st.pending.is_empty() || st.phase == Phase::Closed)
    }

    /// Handles replies from worker `n`, in order; false if the worker is to be considered gone.
    fn deliver(&self, n: u64, messages: Vec<Vec<u8>>) -> bool {
        let mut done = Vec::with_capacity(messages.len());
        let mut alive = true;
        let mut st = lock(&self.state);
        for m in messages {
            let Ok((reply, payload)) = split::<Reply>(&m) else {
                alive = false;
                break;
            };
            let payload = payload.len();
            if reply.id == INIT {
                if let Some(failure) = reply.failure {
                    let why = failure.to_error();
                    self.break_pool(&mut st, format!("the pool's initializer failed: {why}"));
                    alive = false;
                    break;
                }
                continue;
            }
            let Some(slot) = st.slots.get_mut(&n) else {
                alive = false;
                break;
            };
            if slot.in_flight.front().map(|t| t.id) != Some(reply.id) {
                alive = false; // out of order: not our protocol
                break;
            }
            let task = slot.in_flight.pop_front().expect("checked above");
            slot.completed = slot.completed.wrapping_add(1);
            slot.head_since = Instant::now();
            let outcome: Outcome = match reply.failure {
                None => Ok(Payload {
                    start: m.len() - payload,
                    message: m,
                }),
                Some(f) => Err(f),
            };
            done.push((task, outcome));
        }
        drop(st);
        for (task, outcome) in done {
            task.job.set(task.index, outcome);
        }
        alive
    }

    /// Fails everything: the initializer does not work.
    fn break_pool(&self, st: &mut State, reason: String) {
        st.broken.get_or_insert(reason.clone());
        for task in st.pending.drain(..) {
            task.job
                .set(task.index, Err(Failure::Other(reason.clone())));
        }
    }

    /// Worker `n` ended: fail the task it was running (its start counter says whether it had
    /// started one), requeue the others, reap it, and start a replacement while there is work.
    fn worker_ended(self: &Arc<Self>, n: u64, process: &Mutex<Process>) {
        let exitcode = {
            // It is ending (or we found it dead); give it a moment to finish on its own, so
            // that its exit code is its own.
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
        slot.dead.store(true, Ordering::SeqCst);
        let started = slot.link.started.words()[0].load(Ordering::SeqCst);
        let running = started.wrapping_sub(slot.completed) > 0;
        let mut in_flight = std::mem::take(&mut slot.in_flight);
        if running {
            if let Some(head) = in_flight.pop_front() {
                let failure = match (&slot.killed, &st.broken) {
                    (Some(why), _) => why.clone(),
                    (None, Some(reason)) => Failure::Other(reason.clone()),
                    (None, None) => Failure::WorkerLost(exitcode),
                };
                head.job.set(head.index, Err(failure));
            }
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
        if replace {
            if let Err(e) = self.start_worker() {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "Pool: cannot start a worker: {e}");
                let mut st = lock(&self.state);
                if st.slots.is_empty() {
                    self.break_pool(&mut st, format!("cannot start a worker: {e}"));
                }
            }
        } else {
            self.dispatch();
        }
        self.changed.notify_all();
    }

    /// Queues tasks for `job` (indices from `first`) and hands them out.
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
                args: Arc::new(args),
                job: job.clone(),
                index: first + i,
                timeout,
            });
        }
        drop(st);
        self.dispatch();
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

/// The next queued task whose job was not cancelled (cancelled ones are failed on the way).
fn next_pending(pending: &mut VecDeque<Task>) -> Option<Task> {
    while let Some(task) = pending.pop_front() {
        if task.job.is_cancelled() {
            task.job.set(task.index, Err(Failure::Cancelled));
        } else {
            return Some(task);
        }
    }
    None
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
    fn into_done(self, decode: fn(&[&Outcome]) -> Result<R>) -> Option<Done> {
        if self.callback.is_none() && self.error_callback.is_none() {
            return None;
        }
        let (callback, error_callback) = (self.callback, self.error_callback);
        Some(Box::new(move |outcomes: &[&Outcome]| {
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

    fn result<R>(&self, job: Arc<JobCore>, decode: fn(&[&Outcome]) -> Result<R>) -> AsyncResult<R> {
        AsyncResult {
            job,
            pool: Arc::downgrade(&self.shared),
            decode,
            collect: None,
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
        let code = Code::of(call_chunk::<F, X, R>)?;
        self.map_like(code, items, chunksize, options)
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
        let code = Code::of(call_star_chunk::<F, A, R>)?;
        self.map_like(code, items, chunksize, TaskOptions::new())
    }

    /// Hands out a map's input in chunks. An input whose length is known up front (its size
    /// hint is exact, as for ranges and vectors) is encoded straight from the iterator; any
    /// other is collected first, as Python's `map` does with inputs that have no `len()`.
    fn map_like<X: Serialize, R: DeserializeOwned + 'static>(
        &self,
        code: Code,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
        options: TaskOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>> {
        let items = items.into_iter();
        match items.size_hint() {
            (low, Some(high)) if low == high => {
                self.map_chunks(code, items, low, chunksize, options)
            }
            _ => {
                let all: Vec<X> = items.collect();
                let n = all.len();
                self.map_chunks(code, all.into_iter(), n, chunksize, options)
            }
        }
    }

    fn map_chunks<X: Serialize, R: DeserializeOwned + 'static>(
        &self,
        code: Code,
        mut items: impl Iterator<Item = X>,
        len: usize,
        chunksize: Option<usize>,
        options: TaskOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>> {
        let chunksize = chunksize
            .unwrap_or_else(|| default_chunksize(len, self.shared.processes))
            .max(1);
        let count = len.div_ceil(chunksize);
        let timeout = options.timeout;
        let bar = self
            .shared
            .progress
            .then(|| progress::Bar::new(Some(len), chunksize));
        let job = JobCore::with_progress(Some(count), options.into_done(decode_chunks::<R>), bar);
        if count == 0 {
            job.set_total(0);
            return Ok(self.result(job, decode_chunks::<R>));
        }
        // Encode and hand out in batches, so that workers start while the rest is encoded.
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut first = 0;
        for i in 0..count {
            let n = chunksize.min(len - i * chunksize);
            let encoded = chunk::encode_into(&mut items, n, Vec::new())?;
            batch_bytes += encoded.len();
            batch.push(encoded);
            if batch_bytes >= 64 << 10 || batch.len() >= 256 || i + 1 == count {
                let n = batch.len();
                self.shared
                    .submit(code, std::mem::take(&mut batch), &job, first, timeout)?;
                first += n;
                batch_bytes = 0;
            }
        }
        let mut result = self.result(job, decode_chunks::<R>);
        if count <= EAGER_CHUNKS {
            result.collect = Some(collect_chunks::<R>);
        }
        Ok(result)
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
            let items: Vec<X> = input.by_ref().take(chunksize).collect();
            (!items.is_empty())
                .then(|| chunk::encode_into(&mut items.iter(), items.len(), Vec::new()))
        });
        Ok(IMap {
            pool: self.shared.clone(),
            job: JobCore::with_progress(
                None,
                None,
                self.shared
                    .progress
                    .then(|| progress::Bar::new(None, chunksize)),
            ),
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
        self.shared.dispatch();
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
    }

    /// Waits for the workers to exit (Python's `join`).
    ///
    /// # Errors
    /// [`Error::State`] ("Pool is still running") before `close` or `terminate`.
    pub fn join(&self) -> Result<()> {
        if lock(&self.shared.state).phase == Phase::Running {
            return Err(Error::state("Pool is still running"));
        }
        // A reader may be starting a replacement worker right now (it kills it at once in a
        // terminated pool, and registers it with a reader of its own): join until no worker
        // and no thread is left, so that every worker has been reaped when this returns.
        loop {
            let mut st = lock(&self.shared.state);
            while !st.slots.is_empty() {
                st = self
                    .shared
                    .changed
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner());
            }
            let threads = std::mem::take(&mut st.threads);
            drop(st);
            if threads.is_empty() {
                return Ok(());
            }
            for t in threads {
                let _ = t.join();
            }
        }
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

#[cfg(test)]
mod tests {
    use super::default_chunksize;

    /// PL02: Python's default chunk size, ceil(n / (4 × workers)): 100 items on 4 workers make
    /// 15 tasks of at most 7.
    #[test]
    fn default_chunks_are_pythons() {
        assert_eq!(default_chunksize(100, 4), 7);
        assert_eq!(100usize.div_ceil(default_chunksize(100, 4)), 15);
        assert_eq!(default_chunksize(10, 4), 1);
        assert_eq!(default_chunksize(1000, 8), 32);
        assert_eq!(default_chunksize(0, 4), 1);
    }
}
