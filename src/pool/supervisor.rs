//! The pool's decisions, and nothing else: which worker gets which task, what a reply, a death,
//! a time limit, a cancel, `close` or `terminate` does to every task. No OS call and no wait
//! happens here: the driver (`driver.rs`) reports what happened, under the pool's lock, and
//! carries out the [`Effects`] returned, outside it. So every schedule can be played against
//! it in a test, deterministically.
//!
//! **The flow-control invariant.** A worker is never sent more than its task channel holds:
//! the supervisor counts the bytes of the orders each worker has not answered yet
//! ([`cost`] each) and sends another only while they fit the channel's capacity. A worker
//! releases a task's bytes when it has sent its reply, so a write of the parent never waits
//! for a worker. The one exception is an order larger than the whole channel: it goes only to
//! an idle worker (nothing unanswered), which is reading its channel and nothing else, so it
//! drains while the parent streams it. Replies have reader threads (one per CPU, each for a
//! share of the workers: see `driver`) that do nothing but read (and hand out work within
//! credit, or stream an order to an idle worker, which drains it), so a worker's reply path
//! always drains too. Hence no cycle of waits: parent writes wait on nothing (or on an idle
//! worker, or on a worker's very next step, which releases the task just answered), workers
//! wait on their reader.
//!
//! **Every task ends exactly once**: with its value or error (a reply), `WorkerLost` (its
//! worker died while running it), `TaskTimeout` (past its time limit: the worker is killed),
//! or `Cancelled` (cancelled, or the pool terminated). A task a dead worker had not started
//! goes back to the front of the queue.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{Args, Code, Failure, INIT, Order, OrderHead};
use super::result::{JobCore, Outcome};
use crate::error::{Error, Result};

/// The bytes an order with `len` bytes of arguments may take in a worker's channel: its
/// header (at most 40 bytes), the channel's own framing and padding (at most 11).
pub(crate) fn cost(len: usize) -> usize {
    len + 64
}

/// Revocation marks a worker keeps: more than the most tasks it ever holds.
pub(crate) const REVOKE_SLOTS: usize = 64;

/// What the supervisor is told at the start.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Workers the pool keeps.
    pub(crate) processes: usize,
    /// Tasks a worker runs before it leaves (`maxtasksperchild`).
    pub(crate) maxtasks: Option<u64>,
    /// Bytes each worker's task channel holds.
    pub(crate) channel_bytes: usize,
    /// The most tasks a worker holds at once (one running, the rest waiting in its channel);
    /// a worker gets more than one only when every worker is busy.
    pub(crate) depth: usize,
    /// How many times a task whose worker was lost while running it runs again before it
    /// fails with `WorkerLost` (0 for local workers: a task that kills its worker would
    /// kill the next; 1 for MPI ranks, whose hosts may fail under any task).
    pub(crate) retries: u32,
}

/// The pool's life: Python's RUN, CLOSE, TERMINATE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    #[default]
    Running,
    Closed,
    Terminated,
}

/// One task: a chunk of work for one worker, and where its outcome goes.
pub(crate) struct Task {
    pub(crate) id: u64,
    pub(crate) code: Code,
    pub(crate) args: Args,
    pub(crate) job: Arc<JobCore>,
    pub(crate) index: usize,
    pub(crate) timeout: Option<Duration>,
    /// The times it was running on a worker that was lost.
    pub(crate) lost: u32,
}

/// A task sent to a worker.
struct Assigned {
    task: Task,
    /// Its place among the tasks sent to this worker (0, 1, ...).
    seq: u64,
    cost: usize,
    revoked: bool,
}

/// What the supervisor knows of one worker.
struct WorkerState {
    /// Tasks sent and not answered, in order; the first may be running.
    in_flight: VecDeque<Assigned>,
    /// The sum of their costs.
    outstanding: usize,
    /// Tasks sent so far.
    sent: u64,
    /// Replies received so far.
    completed: u64,
    /// Since when the first task of `in_flight` may have been running.
    head_since: Instant,
    /// Why we killed it, if we did: what its running task ends with, or `None` when the task
    /// is lost with it (its task channel broke: it died, or nothing can reach it any more).
    killed: Option<Option<Failure>>,
    /// Someone is writing orders to it; it gets no others until [`Supervisor::delivered`].
    writing: bool,
    /// It was told to stop, or said it leaves: no more orders.
    leaving: bool,
}

/// An order as it is written: its header, and the task's arguments (shared with the task).
pub(crate) type Message = (OrderHead, Args);

/// Orders for one worker, to be written in this order.
pub(crate) struct Delivery {
    pub(crate) worker: u64,
    pub(crate) messages: Vec<Message>,
}

/// What a worker said, as the driver decoded it.
pub(crate) enum Incoming {
    /// The outcome of task `id` (or of the initializer, for [`INIT`]).
    Reply { id: u64, outcome: Outcome },
    /// It leaves on its own (told to stop, or at `maxtasksperchild`).
    Bye,
    /// Not our protocol.
    Garbled,
}

/// What the driver is to do, outside the pool's lock, in this order: kill, revoke, deliver,
/// start, then finish (set the outcomes, which runs callbacks).
#[derive(Default)]
#[must_use]
pub(crate) struct Effects {
    pub(crate) kills: Vec<u64>,
    /// (worker, seq): the worker is to skip that task if it has not started it.
    pub(crate) revokes: Vec<(u64, u64)>,
    pub(crate) deliveries: Vec<Delivery>,
    /// Workers to start (their ids are reserved): report [`Supervisor::started`] or
    /// [`Supervisor::start_failed`] for each.
    pub(crate) starts: Vec<u64>,
    pub(crate) finished: Vec<(Task, Outcome)>,
}

impl Effects {
    pub(crate) fn is_empty(&self) -> bool {
        self.kills.is_empty()
            && self.revokes.is_empty()
            && self.deliveries.is_empty()
            && self.starts.is_empty()
            && self.finished.is_empty()
    }

    pub(crate) fn append(&mut self, mut other: Effects) {
        self.kills.append(&mut other.kills);
        self.revokes.append(&mut other.revokes);
        self.deliveries.append(&mut other.deliveries);
        self.starts.append(&mut other.starts);
        self.finished.append(&mut other.finished);
    }

    fn finish(&mut self, task: Task, failure: Failure) {
        self.finished.push((task, Err(failure)));
    }
}

/// Where a job's task is (see [`Supervisor::place`]).
pub(crate) enum Place {
    /// In the pool's queue.
    Queued,
    /// Sent to worker `worker` as its `seq`-th task (which may have started); task `index` of
    /// its job.
    Sent { worker: u64, seq: u64, index: usize },
    /// Neither: finished (or finishing), revoked, or never submitted.
    Gone,
}

/// The pool's decisions (see the module docs).
pub(crate) struct Supervisor {
    config: Config,
    phase: Phase,
    pending: VecDeque<Task>,
    workers: BTreeMap<u64, WorkerState>,
    /// Workers being started.
    starting: usize,
    next_task: u64,
    next_worker: u64,
    /// The initializer failed (or no worker can start): the pool runs no task; each fails
    /// with this.
    broken: Option<Failure>,
    /// A worker of this pool has taken its bootstrap and said how its start went: the
    /// program can start workers, so one that ends before its bootstrap was killed.
    any_started: bool,
}

impl Supervisor {
    pub(crate) fn new(config: Config) -> Supervisor {
        Supervisor {
            config,
            phase: Phase::Running,
            pending: VecDeque::new(),
            workers: BTreeMap::new(),
            starting: 0,
            next_task: 0,
            next_worker: 0,
            broken: None,
            any_started: false,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Workers known (started, not yet ended).
    pub(crate) fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Whether no worker is left or starting (what `join` waits for).
    pub(crate) fn all_ended(&self) -> bool {
        self.workers.is_empty() && self.starting == 0
    }

    /// The pool's first workers.
    pub(crate) fn start_all(&mut self) -> Effects {
        let mut fx = Effects::default();
        while self.workers.len() + self.starting < self.config.processes {
            fx.starts.push(self.reserve());
        }
        fx
    }

    fn reserve(&mut self) -> u64 {
        self.next_worker += 1;
        self.starting += 1;
        self.next_worker
    }

    /// Worker `n` started.
    pub(crate) fn started(&mut self, n: u64, now: Instant) -> Effects {
        self.starting = self.starting.saturating_sub(1);
        let mut fx = Effects::default();
        let mut w = WorkerState {
            in_flight: VecDeque::new(),
            outstanding: 0,
            sent: 0,
            completed: 0,
            head_since: now,
            killed: None,
            writing: false,
            leaving: false,
        };
        if self.phase == Phase::Terminated {
            // Terminated while it started.
            w.killed = Some(Some(Failure::Cancelled));
            fx.kills.push(n);
        }
        self.workers.insert(n, w);
        self.dispatch(now, &mut fx);
        fx
    }

    /// Worker `n` could not start. With no worker left, the pool is broken.
    pub(crate) fn start_failed(&mut self, _n: u64, why: &str) -> Effects {
        self.starting = self.starting.saturating_sub(1);
        let mut fx = Effects::default();
        if self.workers.is_empty() && self.starting == 0 {
            let why = Failure::Other(format!("cannot start a worker: {why}"));
            self.break_pool(why, &mut fx);
        }
        fx
    }

    /// Worker `n` ended without ever taking its bootstrap (`why` names the fix: its program
    /// lacks `init()`): no replacement would either, so the pool is broken. Report its end
    /// with [`ended`](Supervisor::ended) next.
    /// (Only if no worker of this pool ever started: where some did, the program has its
    /// `init()`, and this one was ended from outside before it got that far — on Windows a
    /// killed process's exit code is not negative, so its code alone cannot tell.)
    pub(crate) fn never_started(&mut self, _n: u64, why: Error) -> Effects {
        let mut fx = Effects::default();
        if !self.any_started {
            self.break_pool(Failure::from_error(why), &mut fx);
        }
        fx
    }

    /// Queues tasks for `job`, `args[i]` being task `first + i`, and hands them out.
    ///
    /// # Errors
    /// [`Error::State`] once the pool is closed, terminated or broken ([`Error::Bootstrap`]
    /// when broken because a worker could not start).
    pub(crate) fn submit(
        &mut self,
        code: Code,
        args: impl IntoIterator<Item = impl Into<Args>>,
        job: &Arc<JobCore>,
        first: usize,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Effects> {
        if self.phase != Phase::Running {
            return Err(Error::state("Pool not running"));
        }
        if let Some(reason) = &self.broken {
            return Err(reason.to_error());
        }
        for (i, args) in args.into_iter().enumerate() {
            self.next_task += 1;
            self.pending.push_back(Task {
                id: self.next_task,
                code,
                args: args.into(),
                job: job.clone(),
                index: first + i,
                timeout,
                lost: 0,
            });
        }
        let mut fx = Effects::default();
        self.dispatch(now, &mut fx);
        Ok(fx)
    }

    /// What worker `n` said, in order.
    pub(crate) fn replies(
        &mut self,
        n: u64,
        incoming: impl IntoIterator<Item = Incoming>,
        now: Instant,
    ) -> Effects {
        let mut fx = Effects::default();
        for message in incoming {
            let Some(w) = self.workers.get_mut(&n) else {
                break;
            };
            match message {
                Incoming::Bye => w.leaving = true,
                Incoming::Reply { id: INIT, outcome } => {
                    self.any_started = true;
                    if let Err(failure) = outcome {
                        // A worker that refused to start (another build, on an MPI rank) says
                        // so with `Other`; the initializer's own failures are the others.
                        let why = Failure::Other(match &failure {
                            Failure::Other(m) => format!("a pool worker could not start: {m}"),
                            f => format!("the pool's initializer failed: {}", f.to_error()),
                        });
                        self.break_pool(why, &mut fx);
                    }
                }
                Incoming::Reply { id, outcome }
                    if w.in_flight.front().is_some_and(|a| a.task.id == id) =>
                {
                    let Some(a) = w.in_flight.pop_front() else {
                        break;
                    };
                    w.completed += 1;
                    w.outstanding -= a.cost;
                    w.head_since = now;
                    fx.finished.push((a.task, outcome));
                }
                // Out of order, or not our protocol: the worker cannot be trusted.
                Incoming::Reply { .. } | Incoming::Garbled => {
                    w.killed.get_or_insert(Some(Failure::Other(
                        "a pool worker sent a malformed reply and was killed".into(),
                    )));
                    fx.kills.push(n);
                    break;
                }
            }
        }
        self.dispatch(now, &mut fx);
        fx
    }

    /// The orders of a [`Delivery`] to worker `n` were written (`ok`), or could not be (the
    /// worker is then killed: its reader reports its end).
    pub(crate) fn delivered(&mut self, n: u64, ok: bool, now: Instant) -> Effects {
        let mut fx = Effects::default();
        if let Some(w) = self.workers.get_mut(&n) {
            w.writing = false;
            if !ok && w.killed.is_none() {
                // Its task is lost with it (`WorkerLost`, or tried again), as when it dies: a
                // worker killed by someone else while we wrote ends here first.
                w.killed = Some(None);
                fx.kills.push(n);
            }
        }
        self.dispatch(now, &mut fx);
        fx
    }

    /// When worker `n`'s running task reaches its time limit, if it has one.
    pub(crate) fn deadline(&self, n: u64) -> Option<Instant> {
        let w = self.workers.get(&n)?;
        if w.killed.is_some() {
            return None;
        }
        let limit = w.in_flight.front()?.task.timeout?;
        Some(w.head_since + limit)
    }

    /// Whether we killed worker `n` (its reader then waits for its end).
    pub(crate) fn killed(&self, n: u64) -> bool {
        self.workers.get(&n).is_some_and(|w| w.killed.is_some())
    }

    /// The time is `now`: worker `n`'s task past its limit gets its worker killed.
    pub(crate) fn expire(&mut self, n: u64, now: Instant) -> Effects {
        let mut fx = Effects::default();
        if self.deadline(n).is_some_and(|d| now >= d) {
            if let Some(w) = self.workers.get_mut(&n) {
                let limit = w.in_flight.front().and_then(|a| a.task.timeout);
                w.killed = Some(Some(Failure::TimeLimit(limit.unwrap_or_default())));
                fx.kills.push(n);
            }
        }
        fx
    }

    /// Worker `n` ended with `exitcode`, having started `started` tasks (its own count). The
    /// task it was running fails, the ones it had not started go back to the queue, and a
    /// replacement starts while there is work.
    pub(crate) fn ended(&mut self, n: u64, exitcode: i32, started: u32, now: Instant) -> Effects {
        let mut fx = Effects::default();
        let Some(mut w) = self.workers.remove(&n) else {
            return fx;
        };
        // The worker's count wraps at 2^32; it is never more than the depth ahead of ours.
        let mut retry = None;
        if started.wrapping_sub(w.completed as u32) > 0 {
            if let Some(head) = w.in_flight.pop_front() {
                let failure = w
                    .killed
                    .clone()
                    .flatten()
                    .or_else(|| head.task.job.is_cancelled().then_some(Failure::Cancelled))
                    .or_else(|| self.broken.clone());
                match failure {
                    Some(f) => fx.finish(head.task, f),
                    // Lost with its worker: again, at the front, if it may.
                    None if head.task.lost < self.config.retries
                        && self.phase != Phase::Terminated =>
                    {
                        let mut task = head.task;
                        task.lost += 1;
                        retry = Some(task);
                    }
                    None => fx.finish(head.task, Failure::WorkerLost(exitcode)),
                }
            }
        }
        // Tasks it had not started go back to the front of the queue, in order.
        while let Some(a) = w.in_flight.pop_back() {
            let task = a.task;
            if self.phase == Phase::Terminated || task.job.is_cancelled() {
                fx.finish(task, Failure::Cancelled);
            } else if let Some(reason) = &self.broken {
                fx.finish(task, reason.clone());
            } else {
                self.pending.push_front(task);
            }
        }
        if let Some(task) = retry {
            self.pending.push_front(task);
        }
        let wanted = match self.phase {
            Phase::Running => true,
            Phase::Closed => !self.pending.is_empty(),
            Phase::Terminated => false,
        };
        if wanted
            && self.broken.is_none()
            && self.workers.len() + self.starting < self.config.processes
        {
            fx.starts.push(self.reserve());
        }
        self.dispatch(now, &mut fx);
        fx
    }

    /// Drops `job`'s queued tasks (they end `Cancelled`).
    pub(crate) fn cancel_queued(&mut self, job: &Arc<JobCore>) -> Effects {
        let mut fx = Effects::default();
        let pending = std::mem::take(&mut self.pending);
        for task in pending {
            if Arc::ptr_eq(&task.job, job) {
                fx.finish(task, Failure::Cancelled);
            } else {
                self.pending.push_back(task);
            }
        }
        fx
    }

    /// Where `job`'s first task is (for the executor's `running` and `cancel`).
    pub(crate) fn place(&self, job: &Arc<JobCore>) -> Place {
        if self.pending.iter().any(|t| Arc::ptr_eq(&t.job, job)) {
            return Place::Queued;
        }
        for (&n, w) in &self.workers {
            if let Some(a) = w.in_flight.iter().find(|a| Arc::ptr_eq(&a.task.job, job)) {
                if a.revoked {
                    break;
                }
                return Place::Sent {
                    worker: n,
                    seq: a.seq,
                    index: a.task.index,
                };
            }
        }
        Place::Gone
    }

    /// Takes `job`'s first queued task out of the queue (it ends `Cancelled`): one task's
    /// move, where [`Self::cancel_queued`] moves the whole queue.
    pub(crate) fn unqueue(&mut self, job: &Arc<JobCore>) -> Effects {
        let mut fx = Effects::default();
        let at = self.pending.iter().position(|t| Arc::ptr_eq(&t.job, job));
        if let Some(task) = at.and_then(|i| self.pending.remove(i)) {
            fx.finish(task, Failure::Cancelled);
        }
        fx
    }

    /// Task `seq` of worker `n` was revoked (and will be skipped) outside [`Self::cancel`].
    pub(crate) fn revoked(&mut self, n: u64, seq: u64) {
        if let Some(w) = self.workers.get_mut(&n) {
            for a in w.in_flight.iter_mut().filter(|a| a.seq == seq) {
                a.revoked = true;
            }
        }
    }

    /// Cancels `job` (already marked cancelled): queued tasks end now; a worker skips those
    /// waiting in its channel; a worker running one is killed.
    pub(crate) fn cancel(&mut self, job: &Arc<JobCore>) -> Effects {
        let mut fx = self.cancel_queued(job);
        for (&n, w) in self.workers.iter_mut() {
            for (i, a) in w.in_flight.iter_mut().enumerate() {
                if !Arc::ptr_eq(&a.task.job, job) {
                    continue;
                }
                if i == 0 {
                    if w.killed.is_none() {
                        w.killed = Some(Some(Failure::Cancelled));
                        fx.kills.push(n);
                    }
                } else if !a.revoked {
                    a.revoked = true;
                    fx.revokes.push((n, a.seq));
                }
            }
        }
        fx
    }

    /// Python's `close`: no more work; workers stop once the queue is done.
    pub(crate) fn close(&mut self, now: Instant) -> Effects {
        if self.phase == Phase::Running {
            self.phase = Phase::Closed;
        }
        let mut fx = Effects::default();
        self.dispatch(now, &mut fx);
        fx
    }

    /// Python's `terminate`: every worker is killed, every unfinished task ends `Cancelled`.
    pub(crate) fn terminate(&mut self) -> Effects {
        self.phase = Phase::Terminated;
        let mut fx = Effects::default();
        for task in self.pending.drain(..) {
            fx.finish(task, Failure::Cancelled);
        }
        for (&n, w) in self.workers.iter_mut() {
            if w.killed.is_none() {
                w.killed = Some(Some(Failure::Cancelled));
                fx.kills.push(n);
            }
        }
        fx
    }

    /// Fails everything queued: the pool cannot run tasks.
    fn break_pool(&mut self, reason: Failure, fx: &mut Effects) {
        let reason = self.broken.get_or_insert(reason).clone();
        for task in self.pending.drain(..) {
            fx.finish(task, reason.clone());
        }
    }

    /// The next queued task whose job was not cancelled (cancelled ones end on the way).
    fn next_pending(&mut self, fx: &mut Effects) -> Option<&Task> {
        while let Some(task) = self.pending.front() {
            if !task.job.is_cancelled() {
                break;
            }
            let task = self.pending.pop_front()?;
            fx.finish(task, Failure::Cancelled);
        }
        self.pending.front()
    }

    /// Hands queued tasks out: one to each idle worker first, then more to each in turn (up
    /// to the depth) while they fit its channel (see the module docs); tells idle workers of a
    /// closed pool to stop.
    fn dispatch(&mut self, now: Instant, fx: &mut Effects) {
        if self.phase == Phase::Terminated {
            return;
        }
        let mut planned: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        // (Without a task to hand out, no look at each worker: a pool's close ends its
        // workers one event at a time.)
        if self.broken.is_none() && self.next_pending(fx).is_some() {
            let ids: Vec<u64> = self.workers.keys().copied().collect();
            for pass in 0..2 {
                let limit = if pass == 0 { 1 } else { self.config.depth };
                loop {
                    let mut progress = false;
                    for &n in &ids {
                        let Some(need) = self.next_pending(fx).map(|t| cost(t.args.len())) else {
                            break;
                        };
                        let Some(w) = self.workers.get(&n) else {
                            continue;
                        };
                        let fits = w.outstanding + need <= self.config.channel_bytes
                            || w.in_flight.is_empty();
                        if w.writing
                            || w.leaving
                            || w.killed.is_some()
                            || w.in_flight.len() >= limit
                            || self.config.maxtasks.is_some_and(|m| w.sent >= m)
                            || !fits
                        {
                            continue;
                        }
                        let Some(task) = self.pending.pop_front() else {
                            break;
                        };
                        let head = match OrderHead::new(&Order::Task {
                            id: task.id,
                            code: task.code,
                        }) {
                            Ok(h) => h,
                            Err(e) => {
                                fx.finish(task, Failure::Codec(e.to_string()));
                                continue;
                            }
                        };
                        let Some(w) = self.workers.get_mut(&n) else {
                            continue;
                        };
                        if w.in_flight.is_empty() {
                            w.head_since = now;
                        }
                        planned
                            .entry(n)
                            .or_default()
                            .push((head, task.args.clone()));
                        w.in_flight.push_back(Assigned {
                            seq: w.sent,
                            cost: need,
                            revoked: false,
                            task,
                        });
                        w.sent += 1;
                        w.outstanding += need;
                        progress = true;
                    }
                    if !progress || pass == 0 {
                        break;
                    }
                }
            }
        }
        // Idle workers are told to stop once the pool is closed (before that, no look at each).
        if self.phase == Phase::Closed && self.pending.is_empty() {
            for (&n, w) in self.workers.iter_mut() {
                let idle = w.in_flight.is_empty() && !w.writing && !w.leaving && w.killed.is_none();
                if idle && let Ok(stop) = OrderHead::new(&Order::Stop) {
                    w.leaving = true;
                    planned
                        .entry(n)
                        .or_default()
                        .push((stop, Vec::new().into()));
                }
            }
        }
        for (n, messages) in planned {
            if let Some(w) = self.workers.get_mut(&n) {
                w.writing = true;
                fx.deliveries.push(Delivery {
                    worker: n,
                    messages,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
