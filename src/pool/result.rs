//! Results of pool jobs: [`AsyncResult`] (`apply_async`, `map_async`) and the `imap` iterators.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::Shared;
use super::chunk;
use super::progress::Bar;
use super::protocol::Failure;
use crate::error::{Error, Result};
use crate::wire;

/// The outcome of one task: its encoded value, or why there is none.
pub(crate) type Outcome = std::result::Result<Payload, Failure>;

/// A received message whose first `start` bytes (its header) are not part of the value: the
/// value is not copied out of the message.
#[derive(Clone, Debug)]
pub(crate) struct Payload {
    pub(crate) message: Vec<u8>,
    pub(crate) start: usize,
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.message[self.start..]
    }
}

/// Large reply buffers given back as their results are dropped, for the readers to fill
/// again: a stream of large results then reuses memory already faulted in (the allocator
/// would give it back to the OS between one result and the next, and each new one would cost
/// fresh zeroed pages: W5c's reader threads spent a third of their time there).
static SPARE_REPLIES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Buffers kept, at most.
const SPARE_REPLIES_KEPT: usize = 8;
/// Only buffers of this size or more are kept (smaller ones are cheap to allocate) ...
const SPARE_REPLY_MIN: usize = 64 << 10;
/// ... and none larger than this (a one-off giant result should not stay allocated).
const SPARE_REPLY_MAX: usize = 64 << 20;

/// A copy of a reply, in a buffer given back earlier if there is one. (`try_lock` only: never
/// waits, so a lock held by another thread at a fork cannot stop a forked child here.)
pub(crate) fn copy_reply(m: &[u8]) -> Vec<u8> {
    let spare = if m.len() >= SPARE_REPLY_MIN {
        SPARE_REPLIES.try_lock().ok().and_then(|mut s| s.pop())
    } else {
        None
    };
    let mut buf = spare.unwrap_or_default();
    buf.clear();
    buf.extend_from_slice(m);
    buf
}

#[cfg(all(feature = "mpi", unix))]
/// A buffer of `len` bytes for a reply to be received into, given back earlier if there is one
/// (its old bytes are overwritten; only bytes beyond its old length are zeroed first).
pub(crate) fn reply_buffer(len: usize) -> Vec<u8> {
    let spare = if len >= SPARE_REPLY_MIN {
        SPARE_REPLIES.try_lock().ok().and_then(|mut s| s.pop())
    } else {
        None
    };
    let mut buf = spare.unwrap_or_default();
    buf.resize(len, 0);
    buf
}

impl Drop for Payload {
    fn drop(&mut self) {
        let cap = self.message.capacity();
        if (SPARE_REPLY_MIN..=SPARE_REPLY_MAX).contains(&cap) {
            if let Ok(mut spare) = SPARE_REPLIES.try_lock() {
                if spare.len() < SPARE_REPLIES_KEPT {
                    spare.push(std::mem::take(&mut self.message));
                }
            }
        }
    }
}

/// What a job's callbacks get: every task's outcome, in submission order.
pub(crate) type Done = Box<dyn FnOnce(&[&Outcome]) + Send>;

/// The shared state of one job: a slot per task (a chunk, for map-like jobs).
pub(crate) struct JobCore {
    state: Mutex<JobState>,
    cond: Condvar,
    progress: Option<Bar>,
}

struct JobState {
    slots: Vec<Option<Outcome>>,
    filled: usize,
    /// The number of tasks, once all are submitted (imap learns it at the end of its input).
    total: Option<usize>,
    /// Task indices in completion order, not yet taken by `imap_unordered`.
    completed: VecDeque<usize>,
    on_done: Option<Done>,
    cancelled: bool,
    /// Every task has its outcome and the callbacks have run: what `wait` and `get` wait for
    /// (Python runs the callbacks before it wakes them, too).
    done: bool,
    /// Whether a waiter wants every result as it comes (imap), not just the last one.
    progressive: bool,
    /// Whether a `get` of a map decodes each chunk as it comes (see [`collect_chunks`]).
    eager: bool,
    /// Run once the job is done, after its waiters are woken (see [`JobCore::when_done`]).
    after: Vec<Box<dyn FnOnce() + Send>>,
    /// Futures awaiting the job (`future.rs`), woken with the waiters when it is done.
    wakers: Vec<Waker>,
}

use crate::sys::lock;

impl JobCore {
    pub(crate) fn new(total: Option<usize>, on_done: Option<Done>) -> Arc<JobCore> {
        Self::with_progress(total, on_done, None)
    }

    /// A job with a progress bar (see `PoolBuilder::progress`).
    pub(crate) fn with_progress(
        total: Option<usize>,
        on_done: Option<Done>,
        progress: Option<Bar>,
    ) -> Arc<JobCore> {
        Arc::new(JobCore {
            state: Mutex::new(JobState {
                slots: Vec::new(),
                filled: 0,
                total,
                completed: VecDeque::new(),
                on_done,
                cancelled: false,
                done: false,
                progressive: total.is_none(),
                eager: false,
                after: Vec::new(),
                wakers: Vec::new(),
            }),
            cond: Condvar::new(),
            progress,
        })
    }

    /// Records task `index`'s outcome (the first one wins); when the job is complete, runs
    /// the callbacks and then wakes the waiters. Called by the pool's threads; a panicking
    /// callback is reported and contained.
    pub(crate) fn set(&self, index: usize, outcome: Outcome) {
        let mut st = lock(&self.state);
        if st.total == Some(st.filled) {
            return; // complete: its outcomes may be lent to a callback right now
        }
        if st.slots.len() <= index {
            st.slots.resize_with(index + 1, || None);
        }
        if st.slots[index].is_some() {
            return;
        }
        st.slots[index] = Some(outcome);
        st.filled += 1;
        if st.progressive {
            st.completed.push_back(index); // for imap_unordered
        }
        let complete = st.total == Some(st.filled);
        let wake = st.progressive || st.eager;
        // A stream reading results as they come (imap's, `future.rs`) hears of each one.
        let wakers = if wake && !complete {
            std::mem::take(&mut st.wakers)
        } else {
            Vec::new()
        };
        drop(st);
        wakers.into_iter().for_each(Waker::wake);
        if let Some(bar) = &self.progress {
            bar.advance(index);
            if complete {
                bar.finish();
            }
        }
        if complete {
            self.complete();
        } else if wake {
            self.cond.notify_all();
        }
    }

    /// Declares the number of tasks (imap, at the end of its input).
    pub(crate) fn set_total(&self, total: usize) {
        if let Some(bar) = &self.progress {
            bar.finish();
        }
        let mut st = lock(&self.state);
        st.total = Some(total);
        let complete = st.filled == total;
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        wakers.into_iter().for_each(Waker::wake);
        if complete {
            self.complete();
        } else {
            self.cond.notify_all();
        }
    }

    /// The job is complete: runs its callbacks (without the lock, and without copying the
    /// outcomes: they are lent to the callback while nobody can read them yet), then marks it
    /// done and wakes the waiters.
    fn complete(&self) {
        let mut st = lock(&self.state);
        if st.done {
            return;
        }
        if let Some(callback) = st.on_done.take() {
            let slots = std::mem::take(&mut st.slots);
            drop(st);
            let outcomes: Vec<&Outcome> = slots.iter().flatten().collect();
            if let Err(message) = crate::panics::catch_quietly(|| callback(&outcomes)) {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "Pool: a result callback panicked: {message}"
                );
            }
            st = lock(&self.state);
            st.slots = slots;
        }
        st.done = true;
        let after = std::mem::take(&mut st.after);
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.cond.notify_all();
        wakers.into_iter().for_each(Waker::wake);
        for f in after {
            if let Err(message) = crate::panics::catch_quietly(f) {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "Pool: a done hook panicked: {message}");
            }
        }
    }

    /// Runs `f` once the job is done, on the thread that completes it, after its waiters are
    /// woken (so `f` may read the outcome); at once, on this thread, if it is done already.
    pub(crate) fn when_done(&self, f: Box<dyn FnOnce() + Send>) {
        let mut st = lock(&self.state);
        if !st.done {
            st.after.push(f);
            return;
        }
        drop(st);
        f();
    }

    /// Whether the job is done; if not, `waker` is woken when it is.
    pub(crate) fn poll_done(&self, waker: &Waker) -> bool {
        let mut st = lock(&self.state);
        if !st.done && !st.wakers.iter().any(|w| w.will_wake(waker)) {
            st.wakers.push(waker.clone());
        }
        st.done
    }

    /// Records the order in which tasks finish (and wakes waiters at each), for
    /// [`AsyncResult::next_finished`]; before any task is submitted.
    pub(crate) fn track_completion(&self) {
        lock(&self.state).progressive = true;
    }

    /// Marks the job cancelled: its tasks not yet run are not to run.
    pub(crate) fn mark_cancelled(&self) {
        lock(&self.state).cancelled = true;
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        lock(&self.state).cancelled
    }

    fn ready(st: &JobState) -> bool {
        st.done
    }

    /// Waits until `done(state)` or the deadline; the guard, and whether it happened.
    fn wait_until(
        &self,
        timeout: Option<Duration>,
        done: impl Fn(&JobState) -> bool,
    ) -> (MutexGuard<'_, JobState>, bool) {
        let deadline = timeout.and_then(crate::sys::deadline_after);
        let mut st = lock(&self.state);
        loop {
            if done(&st) {
                return (st, true);
            }
            match deadline {
                None => st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (st, false);
                    }
                    st = self
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

/// A `get` that waits and decodes in its own way (see [`collect_chunks`]).
pub(crate) type Collect<R> = fn(&JobCore, Option<Duration>) -> Result<R>;

/// The result of [`Pool::apply_async`](super::Pool::apply_async) or
/// [`Pool::map_async`](super::Pool::map_async): Python's `AsyncResult`.
///
/// ```standalone_crate
/// use std::time::Duration;
/// use multiprocess::{Error, Pool};
///
/// fn slow_square(x: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(200));
///     x * x
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let pool = Pool::new(2)?;
/// let one = pool.apply_async(slow_square, (7,))?;
/// let many = pool.map_async(slow_square, 1..=4)?;
/// assert!(matches!(one.get_timeout(Duration::from_millis(1)), Err(Error::Timeout)));
/// assert_eq!(one.get()?, 49); // waits; the task went on meanwhile
/// many.wait();
/// assert!(many.ready() && many.successful()?);
/// assert_eq!(many.get()?, [1, 4, 9, 16]);
/// # Ok(()) }
/// ```
pub struct AsyncResult<R> {
    pub(crate) job: Arc<JobCore>,
    pub(crate) pool: Weak<Shared>,
    pub(crate) decode: fn(&[&Outcome]) -> Result<R>,
    /// How `get` waits and decodes, when not all at the end (a map of a few large chunks).
    pub(crate) collect: Option<Collect<R>>,
    pub(crate) _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<AsyncResult ready={}>", self.ready())
    }
}

impl<R> AsyncResult<R> {
    /// Waits for the value, as long as it takes (Python's `get()`).
    ///
    /// # Errors
    /// The task's own error: [`Error::Panicked`], [`Error::WorkerLost`],
    /// [`Error::TaskTimeout`] (the task's own time limit), [`Error::Cancelled`],
    /// [`Error::Codec`].
    pub fn get(&self) -> Result<R> {
        self.get_until(None)
    }

    /// Waits for the value at most `timeout` (Python's `get(timeout)`).
    ///
    /// # Errors
    /// [`Error::Timeout`] if not ready in time (the job goes on; call again); otherwise as
    /// [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        self.get_until(Some(timeout))
    }

    pub(crate) fn get_until(&self, timeout: Option<Duration>) -> Result<R> {
        if let Some(collect) = self.collect {
            return collect(&self.job, timeout);
        }
        let (st, ready) = self.job.wait_until(timeout, JobCore::ready);
        if !ready {
            return Err(Error::Timeout);
        }
        let outcomes: Vec<&Outcome> = st.slots.iter().flatten().collect();
        (self.decode)(&outcomes)
    }

    /// Waits until ready (Python's `wait()`).
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits until ready or `timeout` passes (Python's `wait(timeout)`); true if ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(timeout))
    }

    pub(crate) fn wait_until(&self, timeout: Option<Duration>) -> bool {
        self.job.wait_until(timeout, JobCore::ready).1
    }

    /// The outcome of task `index`, waiting up to `timeout` for it (`None` if it did not come
    /// in time): for a client in another process reading a map chunk by chunk.
    pub(crate) fn outcome(&self, index: usize, timeout: Option<Duration>) -> Option<Outcome> {
        lock(&self.job.state).eager = true;
        // An index past the job's tasks never fills: answered at once.
        let filled = |st: &JobState| {
            st.slots.get(index).is_some_and(Option::is_some)
                || st.total.is_some_and(|total| index >= total)
        };
        let (st, ready) = self.job.wait_until(timeout, filled);
        if !ready {
            return None;
        }
        st.slots.get(index).cloned().flatten()
    }

    /// The outcome of the next task to finish not yet taken this way, waiting up to `timeout`
    /// for one: `Ok(None)` when every task's was taken, `Err(())` if none came in time. For a
    /// client in another process reading a map's chunks as they finish (`imap_unordered`);
    /// the job must record its completion order (see [`JobCore::track_completion`]).
    pub(crate) fn next_finished(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<Option<Outcome>, ()> {
        let all_taken = |st: &JobState| st.total == Some(st.filled) && st.completed.is_empty();
        let (mut st, ready) = self
            .job
            .wait_until(timeout, |st| !st.completed.is_empty() || all_taken(st));
        if !ready {
            return Err(());
        }
        Ok(st
            .completed
            .pop_front()
            .and_then(|i| st.slots.get(i).cloned().flatten()))
    }

    /// Whether the job has finished.
    pub fn ready(&self) -> bool {
        JobCore::ready(&lock(&self.job.state))
    }

    /// Whether the job finished without error.
    ///
    /// # Errors
    /// [`Error::State`] if it is not ready yet (Python's `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        let st = lock(&self.job.state);
        if !JobCore::ready(&st) {
            return Err(Error::state("result is not ready"));
        }
        Ok(st.slots.iter().flatten().all(|o| o.is_ok()))
    }

    /// Cancels the job (beyond Python): tasks still queued are dropped, and a worker running
    /// one of them is killed and replaced. Its outcome becomes [`Error::Cancelled`] (unless it
    /// finished first).
    pub fn cancel(&self) {
        self.job.mark_cancelled();
        if let Some(pool) = self.pool.upgrade() {
            pool.cancel(&self.job);
        }
    }
}

/// The executor's face of a one-task job (see `crate::executor`).
impl<R> AsyncResult<R> {
    /// Runs `f` once the job is done (at once if it is): see [`JobCore::when_done`].
    pub(crate) fn when_done(&self, f: Box<dyn FnOnce() + Send>) {
        self.job.when_done(f);
    }

    /// Whether its task has started on a worker: `Some(false)` while queued or waiting in a
    /// worker's channel, `Some(true)` once started, `None` once the pool no longer holds it.
    pub(crate) fn started(&self) -> Option<bool> {
        self.pool.upgrade().and_then(|pool| pool.started(&self.job))
    }

    /// Cancels its task only if it has not started: true if so (the job is then done, with
    /// [`Error::Cancelled`]).
    pub(crate) fn cancel_unstarted(&self) -> bool {
        self.pool
            .upgrade()
            .is_some_and(|pool| pool.cancel_unstarted(&self.job))
    }

    /// Whether [`cancel_unstarted`](Self::cancel_unstarted) (or [`cancel`](Self::cancel))
    /// cancelled it.
    pub(crate) fn was_cancelled(&self) -> bool {
        self.job.is_cancelled()
    }
}

/// Decodes the only outcome of an `apply` job.
pub(crate) fn decode_one<R: DeserializeOwned>(outcomes: &[&Outcome]) -> Result<R> {
    match outcomes.first() {
        Some(Ok(bytes)) => wire::decode(bytes),
        Some(Err(f)) => Err(f.to_error()),
        None => Err(Error::state("a pool job finished without a result")),
    }
}

/// Decodes and joins the chunks of a `map` job; the first failed chunk's error wins.
pub(crate) fn decode_chunks<R: DeserializeOwned>(outcomes: &[&Outcome]) -> Result<Vec<R>> {
    // Reserve the whole result once (each chunk announces its length), so that appending the
    // chunks never moves what is already decoded. An announcement is believed only up to the
    // chunk's size in bytes; decoding checks the rest.
    let announced: usize = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .map(|b| chunk::count(b))
        .sum();
    let mut all = Vec::with_capacity(announced);
    for &outcome in outcomes {
        match outcome {
            Ok(bytes) => chunk::decode_append(bytes, &mut all)?,
            Err(f) => return Err(f.to_error()),
        }
    }
    Ok(all)
}

/// [`AsyncResult::get`] of a map of a few large chunks: decodes each chunk, in order, as soon
/// as it is there, while the workers are still on the next ones (rather than all of them once
/// the last has come). As [`decode_chunks`]: the first failed chunk's error wins, and it is
/// reported once the whole job is ready.
pub(crate) fn collect_chunks<R: DeserializeOwned>(
    job: &JobCore,
    timeout: Option<Duration>,
) -> Result<Vec<R>> {
    let deadline = timeout.and_then(crate::sys::deadline_after);
    let mut all: Vec<R> = Vec::new();
    let mut next = 0;
    let mut failed = None;
    let mut st = lock(&job.state);
    loop {
        while failed.is_none() {
            match st.slots.get(next) {
                Some(Some(Ok(bytes))) => {
                    if next == 0 {
                        // Chunks are the size of the first, but for the last.
                        let chunks = st.total.unwrap_or(1).max(1);
                        all.reserve(chunk::count(bytes).saturating_mul(chunks));
                    }
                    if let Err(e) = chunk::decode_append(bytes, &mut all) {
                        failed = Some(e);
                    }
                    next += 1;
                }
                Some(Some(Err(f))) => failed = Some(f.to_error()),
                _ => break,
            }
        }
        if JobCore::ready(&st) {
            break;
        }
        st.eager = true;
        st = match deadline {
            None => job.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout);
                }
                job.cond
                    .wait_timeout(st, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

/// Produces the next encoded chunk of an `imap` input, or `None` at its end.
pub(crate) type Chunker<'a> = Box<dyn FnMut() -> Option<Result<Vec<u8>>> + 'a>;

/// The iterator of [`Pool::imap`](super::Pool::imap) and
/// [`Pool::imap_unordered`](super::Pool::imap_unordered): yields each result as a `Result`.
///
/// It reads its input lazily, keeping at most a bounded number of chunks in flight (twice the
/// number of workers), so an endless input iterator is fine.
///
/// ```standalone_crate
/// use std::time::Duration;
/// use multiprocess::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let pool = Pool::new(2)?;
/// // An endless input: the workers square ahead of the reader only a few chunks at a time.
/// let mut squares = pool.imap(square, 1u64..)?;
/// let first: Vec<u64> = squares.by_ref().take(4).collect::<multiprocess::Result<_>>()?;
/// assert_eq!(first, [1, 4, 9, 16]);
/// // Python's `it.next(timeout)`: `None` only at the end, else the result or a timeout error.
/// let fifth = squares.next_timeout(Duration::from_secs(60));
/// assert_eq!(fifth.transpose()?, Some(25));
/// drop(squares); // what was not read is given up
/// pool.close();
/// pool.join()?;
/// # Ok(()) }
/// ```
pub struct IMap<'a, R> {
    pub(crate) pool: Arc<Shared>,
    pub(crate) job: Arc<JobCore>,
    pub(crate) chunker: Chunker<'a>,
    pub(crate) code: super::protocol::Code,
    pub(crate) submitted: usize,
    pub(crate) taken: usize,
    pub(crate) lookahead: usize,
    pub(crate) input_done: bool,
    pub(crate) ordered: bool,
    pub(crate) buffer: VecDeque<Result<R>>,
    /// Why the input ended early, given after every result before it.
    pub(crate) input_error: Option<Error>,
}

impl<R> std::fmt::Debug for IMap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<IMap submitted={} taken={}>",
            self.submitted, self.taken
        )
    }
}

impl<R: DeserializeOwned> IMap<'_, R> {
    /// Submits chunks until the look-ahead is full or the input ends.
    fn top_up(&mut self) -> Result<()> {
        while !self.input_done && self.submitted - self.taken < self.lookahead {
            match (self.chunker)() {
                Some(Ok(chunk)) => {
                    self.pool
                        .submit(self.code, vec![chunk], &self.job, self.submitted, None)?;
                    self.submitted += 1;
                }
                // The input failed: it ends here, and the failure comes after the results
                // of the items before it (as Python's imap).
                Some(Err(e)) => {
                    self.input_error = Some(e);
                    self.input_done = true;
                    self.job.set_total(self.submitted);
                }
                None => {
                    self.input_done = true;
                    self.job.set_total(self.submitted);
                }
            }
        }
        Ok(())
    }

    /// The next result, waiting at most `timeout` (Python's `next(timeout)`; the iterator's
    /// `next` waits as long as it takes). `None` at the end; `Some(Err(Error::Timeout))` when
    /// nothing came in time (call again).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Some(timeout))
    }

    pub(crate) fn next_until(&mut self, timeout: Option<Duration>) -> Option<Result<R>> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Some(item);
            }
            if let Err(e) = self.top_up() {
                return Some(Err(e));
            }
            if self.input_done && self.taken == self.submitted {
                return self.input_error.take().map(Err);
            }
            let want = self.taken;
            let ordered = self.ordered;
            let (mut st, ready) = self.job.wait_until(timeout, |st| {
                if ordered {
                    st.slots.get(want).is_some_and(|s| s.is_some())
                } else {
                    !st.completed.is_empty()
                }
            });
            if !ready {
                return Some(Err(Error::Timeout));
            }
            let index = if ordered {
                want
            } else {
                st.completed.pop_front().unwrap_or(want)
            };
            let outcome = st.slots.get(index).cloned().flatten();
            drop(st);
            self.absorb(outcome);
        }
    }

    /// The next result if one is there (`Pending` with `waker` kept to be woken when one
    /// comes, or the input's end): [`next_timeout`](Self::next_timeout) without waiting, for
    /// the `Stream` (`future.rs`).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_next_result(&mut self, waker: &Waker) -> std::task::Poll<Option<Result<R>>> {
        use std::task::Poll;
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Poll::Ready(Some(item));
            }
            if let Err(e) = self.top_up() {
                return Poll::Ready(Some(Err(e)));
            }
            if self.input_done && self.taken == self.submitted {
                return Poll::Ready(self.input_error.take().map(Err));
            }
            let mut st = lock(&self.job.state);
            let index = if self.ordered {
                let want = self.taken;
                st.slots
                    .get(want)
                    .is_some_and(|s| s.is_some())
                    .then_some(want)
            } else {
                st.completed.pop_front()
            };
            let Some(index) = index else {
                if !st.wakers.iter().any(|w| w.will_wake(waker)) {
                    st.wakers.push(waker.clone());
                }
                return Poll::Pending;
            };
            let outcome = st.slots.get(index).cloned().flatten();
            drop(st);
            self.absorb(outcome);
        }
    }

    /// Takes one task's outcome: its values (or its error) join the buffer.
    fn absorb(&mut self, outcome: Option<Outcome>) {
        {
            self.taken += 1;
            match outcome {
                Some(Ok(bytes)) => match chunk::decode::<R>(&bytes) {
                    Ok(values) => self.buffer.extend(values.into_iter().map(Ok)),
                    Err(e) => self.buffer.push_back(Err(e)),
                },
                Some(Err(f)) => self.buffer.push_back(Err(f.to_error())),
                None => self
                    .buffer
                    .push_back(Err(Error::state("missing pool result"))),
            }
        }
    }
}

impl<R: DeserializeOwned> IMap<'_, R> {
    /// Submits the first chunks now, rather than at the first `next`.
    pub(crate) fn prime(&mut self) -> Result<()> {
        self.top_up()
    }
}

impl<R: DeserializeOwned> Iterator for IMap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }
}

impl<R> Drop for IMap<'_, R> {
    /// Cancels what is still queued: nobody will read it.
    fn drop(&mut self) {
        if !self.input_done || self.taken < self.submitted {
            self.job.mark_cancelled();
            self.pool.cancel_queued(&self.job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_of(items: &[u64]) -> Outcome {
        let message =
            super::chunk::encode_into(&mut items.iter(), items.len(), Vec::new()).expect("encodes");
        Ok(Payload { message, start: 0 })
    }

    /// A map's `get` decodes chunks as they come, in any order of arrival, and gives them in
    /// index order.
    #[test]
    fn chunks_are_collected_in_order_as_they_come() {
        let job = JobCore::new(Some(3), None);
        let setter = {
            let job = job.clone();
            std::thread::spawn(move || {
                for (i, items) in [(1, vec![3u64, 4]), (0, vec![1, 2]), (2, vec![5])] {
                    std::thread::sleep(Duration::from_millis(20));
                    job.set(i, chunk_of(&items));
                }
            })
        };
        let all: Vec<u64> = collect_chunks(&job, None).expect("collects");
        assert_eq!(all, [1, 2, 3, 4, 5]);
        setter.join().expect("setter");
        // Again, from the kept bytes.
        assert_eq!(collect_chunks::<u64>(&job, None).expect("again"), all);
    }

    /// The first failed chunk's error wins, once the whole job is ready; a timeout leaves the
    /// job going.
    #[test]
    fn a_failed_chunk_is_reported_when_the_job_is_ready() {
        let job = JobCore::new(Some(3), None);
        job.set(0, chunk_of(&[1]));
        job.set(2, Err(Failure::Panicked("second".into())));
        let early = collect_chunks::<u64>(&job, Some(Duration::from_millis(30)));
        assert!(matches!(early, Err(Error::Timeout)), "{early:?}");
        job.set(1, Err(Failure::Panicked("first".into())));
        match collect_chunks::<u64>(&job, Some(Duration::from_secs(5))) {
            Err(Error::Panicked { message }) => assert_eq!(message, "first"),
            other => panic!("{other:?}"),
        }
    }
}
