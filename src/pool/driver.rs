//! The threads that carry out the supervisor's decisions over a backend: one reader per worker
//! (the only thread that reads its replies), and whichever thread has something to report
//! (a caller submitting, a reader that received replies) carrying out the [`Effects`].
//!
//! The supervisor is told what happened under the pool's lock; what it asks for is done after
//! the lock is let go. The waits here, and why each ends:
//! - a reader waits for replies in slices of at most [`LIVENESS_CHECK`], checking its worker
//!   is alive and its running task's time limit between them; a kill wakes it at once;
//! - writing orders: see `supervisor` (within credit, or streaming to an idle worker, with a
//!   liveness check);
//! - reaping: a worker that said goodbye, or was killed, or was found dead, ends; one that is
//!   not is killed after a grace period;
//! - `join` waits for the readers, each of which ends with its worker.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::{Backend, Worker};
use super::protocol::{Args, BYE, Code, Failure, NUDGE, Reply, Setup, split};
use super::result::{JobCore, Outcome, Payload};
use super::supervisor::{Effects, Incoming, Phase, Place, Supervisor};
use crate::error::{Error, Result};
use crate::log::{self, Level};

/// How often a waiting reader checks that its worker is alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// Replies a reader takes at once.
const REPLY_BATCH: usize = 64;
/// How long a worker that ends on its own (or was killed) may take before it is killed.
const GRACE: Duration = Duration::from_millis(500);

/// What the pool's threads and results share.
pub(crate) struct Shared {
    pub(crate) processes: usize,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) progress: bool,
    setup: Setup,
    backend: Backend,
    core: Mutex<Core>,
    /// `join` waits here for workers to end.
    changed: Condvar,
}

/// What the pool's lock guards.
struct Core {
    sup: Supervisor,
    /// Workers started and not yet found ended.
    workers: HashMap<u64, Arc<Worker>>,
    threads: Vec<JoinHandle<()>>,
}

use crate::sys::lock;

/// Whether a worker that has started `started` tasks (its count, wrapping) has started its
/// task `seq` (counted from 0).
fn has_started(started: u32, seq: u64) -> bool {
    started.wrapping_sub(seq as u32) as i32 > 0
}

/// Decodes replies (a nudge of our own only woke the reader: it is dropped).
fn incoming(messages: Vec<Vec<u8>>) -> Vec<Incoming> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let Ok((reply, payload)) = split::<Reply>(&m) else {
            out.push(Incoming::Garbled);
            continue;
        };
        let start = m.len() - payload.len();
        match reply.id {
            NUDGE => {}
            BYE => out.push(Incoming::Bye),
            id => out.push(Incoming::Reply {
                id,
                outcome: match reply.failure {
                    None => Ok(Payload { message: m, start }),
                    Some(f) => Err(f),
                },
            }),
        }
    }
    out
}

impl Shared {
    /// A pool over `backend`, its workers started.
    pub(crate) fn start(
        sup: Supervisor,
        backend: Backend,
        setup: Setup,
        processes: usize,
        task_timeout: Option<Duration>,
        progress: bool,
    ) -> Result<Arc<Shared>> {
        let shared = Arc::new(Shared {
            processes,
            task_timeout,
            progress,
            setup,
            backend,
            core: Mutex::new(Core {
                sup,
                workers: HashMap::new(),
                threads: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let fx = lock(&shared.core).sup.start_all();
        // The first workers: a failure to start one is the pool's failure.
        let mut starts = fx.starts.into_iter();
        while let Some(n) = starts.next() {
            if let Err(e) = shared.start_worker(n) {
                let mut core = lock(&shared.core);
                for n in std::iter::once(n).chain(starts) {
                    let _ = core.sup.start_failed(n, &e.to_string());
                }
                drop(core);
                shared.terminate();
                let _ = shared.join();
                return Err(e);
            }
        }
        Ok(shared)
    }

    pub(crate) fn phase(&self) -> Phase {
        lock(&self.core).sup.phase()
    }

    pub(crate) fn pool_size(&self) -> usize {
        lock(&self.core).sup.workers()
    }

    /// Starts worker `n` and its reader.
    fn start_worker(self: &Arc<Self>, n: u64) -> Result<()> {
        let worker = Arc::new(self.backend.start(n, &self.setup)?);
        let pid = worker
            .pid()
            .map_or_else(|| "-".to_owned(), |p| p.to_string());
        log::event!(Level::Debug, { worker = n, pid = pid }, "added pool worker {n} (pid {pid})");
        let mut core = lock(&self.core);
        core.workers.insert(n, worker.clone());
        let fx = core.sup.started(n, Instant::now());
        let shared = self.clone();
        let reader = std::thread::Builder::new()
            .name(format!("pool-worker-{n}"))
            .spawn(move || shared.read(n, worker));
        match reader {
            Ok(handle) => core.threads.push(handle),
            Err(e) => {
                drop(core);
                // Nobody would read it: end it here.
                if let Some(w) = lock(&self.core).workers.remove(&n) {
                    w.kill();
                    let exitcode = w.reap(GRACE);
                    let fx = lock(&self.core)
                        .sup
                        .ended(n, exitcode, w.started(), Instant::now());
                    self.execute(fx);
                }
                return Err(Error::io("starting a pool thread", e));
            }
        }
        drop(core);
        self.execute(fx);
        Ok(())
    }

    /// Carries out what the supervisor asked for, and what that leads to.
    fn execute(self: &Arc<Self>, mut fx: Effects) {
        while !fx.is_empty() {
            let mut next = Effects::default();
            let workers: Vec<(u64, Option<Arc<Worker>>)> = {
                let core = lock(&self.core);
                let ids = fx.kills.iter().chain(fx.revokes.iter().map(|(n, _)| n));
                let ids = ids.chain(fx.deliveries.iter().map(|d| &d.worker));
                ids.map(|n| (*n, core.workers.get(n).cloned())).collect()
            };
            let worker = |n: u64| {
                workers
                    .iter()
                    .find(|(m, _)| *m == n)
                    .and_then(|(_, w)| w.clone())
            };
            for n in fx.kills.drain(..) {
                if let Some(w) = worker(n) {
                    w.kill();
                }
            }
            for (n, seq) in fx.revokes.drain(..) {
                if let Some(w) = worker(n) {
                    w.revoke(seq);
                }
            }
            for d in fx.deliveries.drain(..) {
                // A write that failed because the worker died is no channel failure: its
                // reader reports the end, which fails the task it ran (`WorkerLost`) and
                // queues again those it had not started, the unwritten ones among them.
                let ok = worker(d.worker).is_some_and(|w| {
                    d.messages
                        .iter()
                        .all(|(head, args)| w.send_order(head.as_bytes(), args).is_ok())
                        || !w.alive()
                });
                next.append(lock(&self.core).sup.delivered(d.worker, ok, Instant::now()));
            }
            for n in fx.starts.drain(..) {
                if let Err(e) = self.start_worker(n) {
                    log::event!(Level::Error, {}, "Pool: cannot start a worker: {e}");
                    next.append(lock(&self.core).sup.start_failed(n, &e.to_string()));
                }
            }
            for (task, outcome) in fx.finished.drain(..) {
                tell_failure(task.id, &outcome);
                task.job.set(task.index, outcome);
            }
            fx = next;
        }
    }

    /// The reader of worker `n`: takes its replies, enforces its time limits, notices its end.
    fn read(self: Arc<Self>, n: u64, worker: Arc<Worker>) {
        loop {
            let deadline = lock(&self.core).sup.deadline(n);
            let slice = deadline.map_or(LIVENESS_CHECK, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(LIVENESS_CHECK)
            });
            match worker.recv(slice) {
                Ok(Some(first)) => {
                    let mut batch = vec![first];
                    batch.extend(worker.recv_ready(REPLY_BATCH));
                    let replies = incoming(batch);
                    let bye = replies.iter().any(|r| matches!(r, Incoming::Bye));
                    let (fx, over) = {
                        let mut core = lock(&self.core);
                        let fx = core.sup.replies(n, replies, Instant::now());
                        (fx, bye || core.sup.killed(n))
                    };
                    self.execute(fx);
                    if over {
                        break;
                    }
                }
                Ok(None) => {
                    if !worker.alive() {
                        break;
                    }
                    let fx = lock(&self.core).sup.expire(n, Instant::now());
                    self.execute(fx);
                    if lock(&self.core).sup.killed(n) {
                        break;
                    }
                }
                // The ring is broken: the worker died inside a message.
                Err(_) => break,
            }
        }
        // It is ending: it is no longer listed, then it is reaped, then what it sent before
        // it ended is read (nothing more can come).
        lock(&self.core).workers.remove(&n);
        let exitcode = worker.reap(GRACE);
        let never_started = worker.start_failure();
        let mut last = Vec::new();
        loop {
            let more = worker.recv_ready(REPLY_BATCH);
            if more.is_empty() {
                break;
            }
            last.extend(incoming(more));
        }
        log::event!(Level::Debug, { worker = n, exitcode = exitcode }, "pool worker {n} ended with exitcode {exitcode}");
        let fx = {
            let mut core = lock(&self.core);
            let mut fx = core.sup.replies(n, last, Instant::now());
            if let Some(why) = never_started {
                fx.append(core.sup.never_started(n, why));
            }
            fx.append(
                core.sup
                    .ended(n, exitcode, worker.started(), Instant::now()),
            );
            fx
        };
        self.execute(fx);
        self.changed.notify_all();
    }

    /// Queues tasks for `job` (indices from `first`) and hands them out.
    pub(crate) fn submit(
        self: &Arc<Self>,
        code: Code,
        chunks: impl IntoIterator<Item = impl Into<Args>>,
        job: &Arc<JobCore>,
        first: usize,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let timeout = timeout.or(self.task_timeout);
        let fx = lock(&self.core)
            .sup
            .submit(code, chunks, job, first, timeout, Instant::now())?;
        self.execute(fx);
        Ok(())
    }

    /// Drops `job`'s queued tasks.
    pub(crate) fn cancel_queued(self: &Arc<Self>, job: &Arc<JobCore>) {
        let fx = lock(&self.core).sup.cancel_queued(job);
        self.execute(fx);
    }

    /// Cancels `job`: see [`Supervisor::cancel`].
    pub(crate) fn cancel(self: &Arc<Self>, job: &Arc<JobCore>) {
        let fx = lock(&self.core).sup.cancel(job);
        self.execute(fx);
    }

    /// Whether `job`'s first task has started on a worker (see `AsyncResult::started`). A task
    /// sent to a worker that is ending counts as started.
    pub(crate) fn started(&self, job: &Arc<JobCore>) -> Option<bool> {
        let core = lock(&self.core);
        match core.sup.place(job) {
            Place::Queued => Some(false),
            Place::Sent { worker, seq, .. } => Some(
                core.workers
                    .get(&worker)
                    .is_none_or(|w| has_started(w.started(), seq)),
            ),
            Place::Gone => None,
        }
    }

    /// Cancels `job`'s first task only if no worker has started it: a queued one leaves the
    /// queue, one waiting in a worker's channel is revoked (the worker skips it). True if so;
    /// the job is then marked cancelled and its outcome is [`Error::Cancelled`], set before
    /// this returns.
    pub(crate) fn cancel_unstarted(self: &Arc<Self>, job: &Arc<JobCore>) -> bool {
        let mut core = lock(&self.core);
        match core.sup.place(job) {
            Place::Queued => {
                job.mark_cancelled();
                let fx = core.sup.unqueue(job);
                drop(core);
                self.execute(fx);
                true
            }
            Place::Sent { worker, seq, index } => {
                let revoked = core
                    .workers
                    .get(&worker)
                    .is_some_and(|w| w.revoke_unstarted(seq));
                if !revoked {
                    return false;
                }
                core.sup.revoked(worker, seq);
                job.mark_cancelled();
                drop(core);
                // The worker's own `Cancelled` reply comes later and finds the job done.
                job.set(index, Err(Failure::Cancelled));
                true
            }
            Place::Gone => false,
        }
    }

    pub(crate) fn close(self: &Arc<Self>) {
        let fx = lock(&self.core).sup.close(Instant::now());
        self.execute(fx);
    }

    pub(crate) fn terminate(self: &Arc<Self>) {
        let fx = lock(&self.core).sup.terminate();
        self.execute(fx);
    }

    /// Waits until every worker has ended and been reaped, and every reader has ended.
    pub(crate) fn join(&self) -> Result<()> {
        if lock(&self.core).sup.phase() == Phase::Running {
            return Err(Error::state("Pool is still running"));
        }
        // A reader may be starting a replacement right now (killed at once in a terminated
        // pool, with a reader of its own): wait until no worker and no reader is left.
        loop {
            let mut core = lock(&self.core);
            while !core.sup.all_ended() {
                core = self.changed.wait(core).unwrap_or_else(|e| e.into_inner());
            }
            let threads = std::mem::take(&mut core.threads);
            drop(core);
            if threads.is_empty() {
                return Ok(());
            }
            for t in threads {
                let _ = t.join();
            }
        }
    }

    /// The workers, in the order they started.
    #[cfg(test)]
    pub(crate) fn workers_for_tests(&self) -> Vec<Arc<Worker>> {
        let core = lock(&self.core);
        let mut all: Vec<(u64, Arc<Worker>)> =
            core.workers.iter().map(|(&n, w)| (n, w.clone())).collect();
        all.sort_by_key(|(n, _)| *n);
        all.into_iter().map(|(_, w)| w).collect()
    }

    /// The pids of the workers running now (a worker found dead is left out; one being reaped
    /// is not listed).
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        let core = lock(&self.core);
        let mut pids: Vec<(u64, u32)> = core
            .workers
            .iter()
            .filter(|(_, w)| w.alive())
            .filter_map(|(&n, w)| w.pid().map(|p| (n, p)))
            .collect();
        pids.sort_unstable();
        pids.into_iter().map(|(_, p)| p).collect()
    }
}

/// Tells how a task failed, where that is the pool's doing or a worker's loss (a task's own
/// error or panic is its caller's to report).
fn tell_failure(id: u64, outcome: &Outcome) {
    match outcome {
        Err(Failure::TimeLimit(limit)) => log::event!(
            Level::Warning,
            { task = id },
            "task {id} ran past its time limit of {limit:?}: its worker was killed and replaced"
        ),
        Err(Failure::WorkerLost(code)) => log::event!(
            Level::Warning,
            { task = id, exitcode = code },
            "task {id} failed: its worker was lost (exitcode {code})"
        ),
        Err(Failure::Cancelled) => log::event!(Level::Debug, { task = id }, "task {id} cancelled"),
        _ => {}
    }
}
