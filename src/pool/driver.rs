//! The threads that carry out the supervisor's decisions over a backend: the readers (the only
//! threads that read workers' replies: for workers that ring the pool's doorbell, which is
//! every worker on this machine, one a CPU, each for a share of them; for workers that are
//! polled, MPI ranks, one a worker), and whichever thread has something to report (a caller
//! submitting, a reader that received replies) carrying out the [`Effects`].
//!
//! A reader per CPU, not per worker: a pool of 256 workers spent a sixth of its CPU in its 256
//! readers, starting and ending them and waking each for its one worker's replies (issue 19,
//! W11); and not one for all: copying large replies out is most of a reader's work, which one
//! thread would do alone (W5c). A reader takes the replies of every worker of its share that
//! rang, under one acquisition of the pool's lock.
//!
//! The supervisor is told what happened under the pool's lock; what it asks for is done after
//! the lock is let go. The waits here, and why each ends:
//! - a reader sleeps until a worker rings (or, polled, its worker's next reply), the earliest
//!   time limit of a running task, the next liveness check ([`LIVENESS_CHECK`]), or, while a
//!   worker is ending, the next look at it (see [`Ending`]); a kill rings the killed worker's
//!   bell, so its reader looks at it at once;
//! - writing orders: see `supervisor` (within credit, or streaming to an idle worker, with a
//!   liveness check);
//! - reaping never waits: a worker that said goodbye, or was killed, or was found dead, is
//!   looked at after [`REAP_FIRST`], then at intervals that double up to [`REAP_POLL`], until
//!   it has ended; one that has not after [`GRACE`] is killed;
//! - `join` waits for the readers, each of which ends when it has no worker left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::{Backend, Worker};
use super::doorbell::Rung;
use super::protocol::{Args, BYE, Code, Failure, Reply, Setup, split};
use super::result::{JobCore, Outcome, Payload};
use super::supervisor::{Effects, Incoming, Phase, Place, Supervisor};
use crate::error::{Error, Result};
use crate::log::{self, Level};

/// How often a reader checks that its workers are alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// How soon a reader first looks whether a worker that is ending has ended: a worker's exit
/// after its goodbye takes about this long (a spawned worker's, measured: 0.1–0.3 ms).
const REAP_FIRST: Duration = Duration::from_micros(100);
/// The longest interval between a reader's looks at a worker that is ending.
const REAP_POLL: Duration = Duration::from_millis(1);
/// Replies a reader takes from one worker at once.
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
    /// A task with a time limit was submitted: the readers watch deadlines.
    timed: AtomicBool,
}

/// What the pool's lock guards.
struct Core {
    sup: Supervisor,
    /// Workers started and not yet found ended.
    workers: HashMap<u64, Arc<Worker>>,
    /// For each reader of the doorbell: the workers started and not yet taken by it, and
    /// whether it runs.
    readers: Vec<Readers>,
    threads: Vec<JoinHandle<()>>,
}

/// A reader of the doorbell, as the pool's lock holds it.
#[derive(Default)]
struct Readers {
    recruits: Vec<(u64, Arc<Worker>)>,
    running: bool,
}

/// A worker as its reader sees it.
struct Watched {
    n: u64,
    worker: Arc<Worker>,
    /// Replies taken while waiting for it (a polled worker), not yet handed on.
    early: Vec<Vec<u8>>,
    /// Look at it in the next round whether it rang or not (new, or its last batch was full).
    look: bool,
    /// Set once it is ending (it said goodbye, was killed, or was found dead).
    ending: Option<Ending>,
}

/// A worker that is ending, as its reader looks at it: soon after it began to end, then at
/// intervals that double (its time ending so far) up to [`REAP_POLL`]. A pool's `join` then
/// returns about when its last worker has exited (a 1 ms poll made it 1–2 ms later, for one
/// worker as for 256), and a worker slow to exit is looked at a few times, not every
/// millisecond.
#[derive(Clone, Copy)]
struct Ending {
    since: Instant,
    next_look: Instant,
}

impl Ending {
    fn new(now: Instant) -> Ending {
        Ending {
            since: now,
            next_look: now + REAP_FIRST,
        }
    }

    /// Whether to look now (then since when it has been ending, and the next look is set).
    fn look(&mut self, now: Instant) -> Option<Instant> {
        if now < self.next_look {
            return None;
        }
        let gap = now.saturating_duration_since(self.since);
        self.next_look = now + gap.clamp(REAP_FIRST, REAP_POLL);
        Some(self.since)
    }
}

impl Watched {
    fn new((n, worker): (u64, Arc<Worker>)) -> Watched {
        Watched {
            n,
            worker,
            early: Vec::new(),
            look: true,
            ending: None,
        }
    }
}

use crate::sys::lock;

/// Whether a worker that has started `started` tasks (its count, wrapping) has started its
/// task `seq` (counted from 0).
fn has_started(started: u32, seq: u64) -> bool {
    started.wrapping_sub(seq as u32) as i32 > 0
}

/// Decodes replies.
fn incoming(messages: Vec<Vec<u8>>) -> Vec<Incoming> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let Ok((reply, payload)) = split::<Reply>(&m) else {
            out.push(Incoming::Garbled);
            continue;
        };
        let start = m.len() - payload.len();
        match reply.id {
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
        let readers = backend.doorbell().map_or(0, |b| b.readers());
        let shared = Arc::new(Shared {
            processes,
            task_timeout,
            progress,
            setup,
            backend,
            core: Mutex::new(Core {
                sup,
                workers: HashMap::new(),
                readers: (0..readers).map(|_| Readers::default()).collect(),
                threads: Vec::new(),
            }),
            changed: Condvar::new(),
            timed: AtomicBool::new(task_timeout.is_some()),
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
                let _ = shared.join(None);
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

    /// Starts worker `n`, and a reader for it unless its reader of the doorbell runs (that
    /// takes the worker in its next round: the worker's first reply rings).
    fn start_worker(self: &Arc<Self>, n: u64) -> Result<()> {
        let worker = Arc::new(self.backend.start(n, &self.setup)?);
        if log::enabled(Level::Debug) {
            // (A fork-server worker's pid is waited for: only when it is logged.)
            let pid = worker
                .pid()
                .map_or_else(|| "-".to_owned(), |p| p.to_string());
            log::event!(Level::Debug, { worker = n, pid = pid }, "added pool worker {n} (pid {pid})");
        }
        let mut core = lock(&self.core);
        core.workers.insert(n, worker.clone());
        let fx = core.sup.started(n, Instant::now());
        let new_reader = match self.backend.doorbell().map(|b| b.reader_of(n)) {
            Some(r) => {
                let reader = &mut core.readers[r];
                reader.recruits.push((n, worker));
                (!reader.running).then(|| {
                    reader.running = true;
                    (format!("pool-reader-{r}"), Some(r), Vec::new())
                })
            }
            None => Some((
                format!("pool-worker-{n}"),
                None,
                vec![Watched::new((n, worker))],
            )),
        };
        if let Some((name, r, watched)) = new_reader {
            let shared = self.clone();
            let reader = std::thread::Builder::new()
                .name(name)
                .spawn(move || shared.read(r, watched));
            match reader {
                Ok(handle) => core.threads.push(handle),
                Err(e) => {
                    // Nobody would read them: end them here.
                    let orphans: Vec<u64> = match r {
                        Some(r) => {
                            core.readers[r].running = false;
                            core.readers[r].recruits.drain(..).map(|(n, _)| n).collect()
                        }
                        None => vec![n],
                    };
                    drop(core);
                    for n in orphans {
                        if let Some(w) = lock(&self.core).workers.remove(&n) {
                            w.kill();
                            let exitcode = w.reap_now();
                            let fx = lock(&self.core).sup.ended(
                                n,
                                exitcode,
                                w.started(),
                                Instant::now(),
                            );
                            self.execute(fx);
                        }
                    }
                    return Err(Error::io("starting a pool thread", e));
                }
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

    /// A reader: takes the replies of the workers it watches (`watched`, and for reader `r` of
    /// the doorbell its workers started later), enforces their time limits, notices their
    /// ends. Ends when it watches no worker.
    fn read(self: Arc<Self>, r: Option<usize>, mut watched: Vec<Watched>) {
        let bell = self.backend.doorbell().zip(r);
        let mut rung = Rung::default();
        let mut next_check = Instant::now() + LIVENESS_CHECK;
        loop {
            if watched.is_empty() && self.reader_may_end(r, &mut watched) {
                break;
            }
            // Wait for a reply, a deadline, the next liveness check or look at an ending worker.
            let now = Instant::now();
            let mut until = next_check;
            if let Some(look) = watched
                .iter()
                .filter_map(|w| w.ending)
                .map(|e| e.next_look)
                .min()
            {
                until = until.min(look);
            }
            if let Some(d) = self.earliest_deadline(&watched) {
                until = until.min(d);
            }
            let wait = until.saturating_duration_since(now);
            let look_now = watched.iter().any(|w| w.look);
            match bell {
                Some((bell, r)) => bell.take(r, &mut rung, !look_now, Some(wait)),
                None => wait_polled(&mut watched, if look_now { Duration::ZERO } else { wait }),
            }
            self.recruit(r, &mut watched);
            let now = Instant::now();
            self.take_replies(&mut watched, |w| bell.is_none() || rung.has(w.n), now);
            let check = now >= next_check;
            if check {
                next_check = now + LIVENESS_CHECK;
            }
            self.watch_ends(&mut watched, check, now);
        }
    }

    /// Takes the workers started since the last round (reader `r` of the doorbell).
    fn recruit(&self, r: Option<usize>, watched: &mut Vec<Watched>) {
        if let Some(r) = r {
            let mut core = lock(&self.core);
            watched.extend(core.readers[r].recruits.drain(..).map(Watched::new));
        }
    }

    /// Whether a reader with no worker left (`watched` empty) may end: reader `r` of the
    /// doorbell only when no worker of its share was started meanwhile, else it takes them
    /// into `watched` (one started later starts it again).
    fn reader_may_end(&self, r: Option<usize>, watched: &mut Vec<Watched>) -> bool {
        let Some(r) = r else {
            return true;
        };
        let mut core = lock(&self.core);
        let reader = &mut core.readers[r];
        if reader.recruits.is_empty() {
            reader.running = false;
            return true;
        }
        watched.extend(reader.recruits.drain(..).map(Watched::new));
        false
    }

    /// The earliest time limit of a task running on one of `watched`, if any task has one.
    fn earliest_deadline(&self, watched: &[Watched]) -> Option<Instant> {
        if !self.timed.load(Ordering::Relaxed) {
            return None;
        }
        let core = lock(&self.core);
        watched
            .iter()
            .filter(|w| w.ending.is_none())
            .filter_map(|w| core.sup.deadline(w.n))
            .min()
    }

    /// Takes the replies of the workers that rang (`rang`) or are to be looked at, and tells the
    /// supervisor under one acquisition of the lock; a worker that said goodbye, was killed, or
    /// whose ring broke (it died inside a message) starts ending.
    fn take_replies(
        self: &Arc<Self>,
        watched: &mut [Watched],
        rang: impl Fn(&Watched) -> bool,
        now: Instant,
    ) {
        let mut taken = Vec::new();
        for (i, w) in watched.iter_mut().enumerate() {
            if w.ending.is_some() || !(w.look || !w.early.is_empty() || rang(w)) {
                continue;
            }
            let mut batch = std::mem::take(&mut w.early);
            let broken = match w.worker.recv_ready(REPLY_BATCH) {
                Ok(more) => {
                    w.look = more.len() == REPLY_BATCH;
                    batch.extend(more);
                    false
                }
                Err(_) => {
                    w.look = false;
                    true
                }
            };
            taken.push((i, incoming(batch), broken));
        }
        if taken.is_empty() {
            return;
        }
        let mut fx = Effects::default();
        let mut core = lock(&self.core);
        for (i, replies, broken) in taken {
            let n = watched[i].n;
            let bye = replies.iter().any(|r| matches!(r, Incoming::Bye));
            if !replies.is_empty() {
                fx.append(core.sup.replies(n, replies, now));
            }
            if bye || broken || core.sup.killed(n) {
                watched[i].ending = Some(Ending::new(now));
                core.workers.remove(&n);
            }
        }
        drop(core);
        self.execute(fx);
    }

    /// Enforces time limits; with `check`, finds workers that died; ends the workers that are
    /// ending and have ended (or kills them past the grace period).
    fn watch_ends(self: &Arc<Self>, watched: &mut Vec<Watched>, check: bool, now: Instant) {
        if self.timed.load(Ordering::Relaxed) {
            let mut fx = Effects::default();
            let mut core = lock(&self.core);
            for w in watched.iter().filter(|w| w.ending.is_none()) {
                fx.append(core.sup.expire(w.n, now));
            }
            drop(core);
            // The kills ring the killed workers' bells: they are looked at in the next round.
            self.execute(fx);
        }
        if check {
            let dead: Vec<u64> = watched
                .iter_mut()
                .filter(|w| w.ending.is_none() && !w.worker.alive())
                .map(|w| {
                    w.ending = Some(Ending::new(now));
                    w.n
                })
                .collect();
            if !dead.is_empty() {
                let mut core = lock(&self.core);
                for n in dead {
                    core.workers.remove(&n);
                }
            }
        }
        let mut i = 0;
        while i < watched.len() {
            let w = &mut watched[i];
            let since = w.ending.as_mut().and_then(|e| e.look(now));
            let code = since.and_then(|since| {
                w.worker.ended().or_else(|| {
                    (now.saturating_duration_since(since) >= GRACE).then(|| w.worker.reap_now())
                })
            });
            match code {
                Some(code) => self.ended(watched.swap_remove(i), code),
                None => i += 1,
            }
        }
    }

    /// Worker `w` has ended with `exitcode` (it is no longer listed, and was reaped): what it
    /// sent before it ended is read (nothing more can come), and the supervisor told.
    fn ended(self: &Arc<Self>, mut w: Watched, exitcode: i32) {
        let n = w.n;
        let never_started = w.worker.start_failure();
        let mut last = incoming(std::mem::take(&mut w.early));
        while let Ok(more) = w.worker.recv_ready(REPLY_BATCH) {
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
                    .ended(n, exitcode, w.worker.started(), Instant::now()),
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
        if timeout.is_some() {
            self.timed.store(true, Ordering::Relaxed);
        }
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

    /// Waits until every worker has ended and been reaped, and every reader has ended, or
    /// until `deadline` (`None`: as long as it takes); `Ok(false)`: the deadline came first.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<bool> {
        if lock(&self.core).sup.phase() == Phase::Running {
            return Err(Error::state("Pool is still running"));
        }
        // A reader may be starting a replacement right now (killed at once in a terminated
        // pool, with a reader of its own): wait until no worker and no reader is left.
        loop {
            let mut core = lock(&self.core);
            while !core.sup.all_ended() {
                core = match deadline {
                    None => self.changed.wait(core).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Ok(false);
                        }
                        self.changed
                            .wait_timeout(core, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
            }
            let threads = std::mem::take(&mut core.threads);
            drop(core);
            if threads.is_empty() {
                return Ok(true);
            }
            // Not bounded by the deadline, and need not be: with no worker left or starting
            // (`all_ended`), each reader ends in the round that saw its last worker end, as
            // nothing is left to watch.
            for t in threads {
                let _ = t.join();
            }
        }
    }

    /// How many readers were started.
    #[cfg(test)]
    pub(crate) fn readers_for_tests(&self) -> usize {
        lock(&self.core).threads.len()
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

/// Waits up to `wait` for the next reply of the first polled worker that is not ending (a
/// polled reader has one worker), keeping it for the next round; sleeps if all are ending.
fn wait_polled(watched: &mut [Watched], wait: Duration) {
    let Some(w) = watched.iter_mut().find(|w| w.ending.is_none()) else {
        std::thread::sleep(wait);
        return;
    };
    match w.worker.recv(wait) {
        Ok(Some(reply)) => w.early.push(reply),
        Ok(None) => {}
        // Its next look finds the ring broken.
        Err(_) => w.look = true,
    }
}
