//! [`Queue::get_async`] and [`Queue::put_async`] (cargo feature `tokio`), and the wake-up
//! channel they wait on.
//!
//! A blocking `get` or `put` sleeps on a shared word (a futex on Linux, `__ulock_wait` on
//! macOS, the region's semaphore on Windows): nothing a reactor can poll. So a queue also
//! holds a wake-up channel, an `eventfd` on Linux, a pipe on macOS, a manual-reset event on
//! Windows, that every process with the queue holds. An async waiter counts itself in the
//! ring's header ([`ASYNC_WAITERS`], and in both sides' sleeper counts, so that every wake of
//! either side reaches it), registers the channel with tokio's reactor, and looks at the ring
//! again before it waits. The side that wakes sleepers signals the channel too, only while an
//! async waiter is counted: the blocking fast path (no sleeper) is unchanged, and with no
//! async waiter a wake costs one more load. The channel is never drained: each signal is an
//! edge every registration sees.
//!
//! On Windows the event is waited on through the OS thread pool; a watcher unsets it after
//! each wake, before it looks again (see `sys::windows::aio` for why each wait there is also
//! bounded, at 250 ms).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ring::*;

use super::{Queue, closed};
use crate::error::{Error, Result};
use crate::synchronize::Deadline;
use crate::sys;

/// An async waiter counted in the ring's header while it lives (dropped: counted out, so a
/// cancelled wait leaves nothing behind in this process's count): in [`ASYNC_WAITERS`] and in
/// the sleeper counts of the wakes it must hear.
struct Counted<'a>(&'a Ring, &'static [usize]);

impl<'a> Counted<'a> {
    fn new(ring: &'a Ring, asleep: &'static [usize]) -> Counted<'a> {
        // The async count first: a side that sees this waiter in a sleeper count sees it here.
        ring.word(ASYNC_WAITERS).fetch_add(1, Ordering::SeqCst);
        for &word in asleep {
            ring.word(word).fetch_add(1, Ordering::SeqCst);
        }
        Counted(ring, asleep)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        for &word in self.1 {
            self.0.word(word).fetch_sub(1, Ordering::SeqCst);
        }
        self.0.word(ASYNC_WAITERS).fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wakes a `get` or `put` must hear: both sides', so that a lock released by either
/// reaches it too.
const BOTH_SIDES: &[usize] = &[CONSUMERS_ASLEEP, PRODUCERS_ASLEEP];

/// Runs `attempt` (which never sleeps: `None` when it must wait) until it gives a value,
/// waiting for the queue's wake-ups (those counted in `asleep`) in between.
pub(super) async fn until<R>(
    ring: &Ring,
    asleep: &'static [usize],
    mut attempt: impl FnMut() -> Result<Option<R>>,
) -> Result<R> {
    if let Some(r) = attempt()? {
        return Ok(r);
    }
    let _counted = Counted::new(ring, asleep);
    let watched = ring
        .shared
        .wakeup
        .as_ref()
        .map(|w| sys::borrow_handle(&w.watched));
    let mut watch = sys::Watch::new(watched).map_err(|e| Error::io("waiting on a queue", e))?;
    loop {
        // Counted and registered: a change after this look wakes the watch.
        if let Some(r) = attempt()? {
            return Ok(r);
        }
        watch
            .changed()
            .await
            .map_err(|e| Error::io("waiting on a queue", e))?;
    }
}

/// A deadline that has passed: the ring's operations then only look (after a spin of at most
/// 20 µs when the other side is mid-message).
fn now() -> Deadline {
    Deadline::after(Some(Duration::ZERO))
}

impl<T: Serialize + DeserializeOwned + 'static> Queue<T> {
    /// [`get`](Queue::get) as a future (cargo feature `tokio`; beyond Python): the next item,
    /// waiting on tokio's reactor while the queue is empty, never blocking the runtime thread
    /// on it. Bound it with `tokio::time::timeout`. Needs a tokio runtime with I/O and the
    /// timer enabled.
    ///
    /// An item already there is taken at once (no reactor involved). Otherwise the future
    /// waits on the queue's wake-up channel, which producers signal, only while async waiters
    /// are counted, when they publish (see the `queues` module docs; an event on Windows).
    /// While a blocking `get` in another
    /// thread or process holds the consumers' side (it holds it while it waits), this one
    /// takes the items after it. A message longer than the queue's capacity, streamed
    /// through the ring, is read with the runtime thread blocked until it is whole.
    ///
    /// **Cancel safe**: an item is taken only in the poll that returns it; dropped before,
    /// the future takes nothing.
    ///
    /// ```standalone_crate
    /// fn produce(q: multiprocess::Queue<String>) {
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    ///     q.put(&"from a child".to_string()).unwrap();
    /// }
    ///
    /// multiprocess::init_test(); // `multiprocess::init()` as the first line of `main`
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let q = multiprocess::Queue::<String>::new()?;
    /// let mut p = multiprocess::Process::new(produce, (q.clone(),));
    /// p.start()?;
    /// assert_eq!(rt.block_on(q.get_async())?, "from a child");
    /// p.join()?;
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`get`](Queue::get); [`Error::Io`] outside a tokio runtime.
    pub async fn get_async(&self) -> Result<T> {
        if self.closed {
            return Err(closed());
        }
        until(&self.ring, BOTH_SIDES, || {
            if self.ring.items() == 0 {
                return Ok(None);
            }
            self.ring.get_with(now(), |message| self.decode(&message))
        })
        .await?
    }

    /// [`put`](Queue::put) as a future (cargo feature `tokio`; beyond Python): puts `value`,
    /// waiting on tokio's reactor while the queue is full (its `maxsize` or its byte
    /// capacity), never blocking the runtime thread on it. Needs a tokio runtime with I/O and
    /// the timer enabled.
    ///
    /// A queue with room takes the value at the first poll, as `put` would. Otherwise the
    /// future waits on the queue's wake-up channel, which consumers signal as they free room
    /// (as for [`get_async`](Queue::get_async)); each try encodes the
    /// value again. A value longer than the queue's capacity is streamed through the ring
    /// with the runtime thread blocked until a reader has taken it.
    ///
    /// **Cancel safe**: the value is put only in the poll that returns `Ok`; dropped before,
    /// the future has put nothing.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let q = multiprocess::Queue::<u32>::bounded(1)?;
    /// q.put_async(&1).await?;
    /// // Full: the second put waits until the get below makes room.
    /// let (put, got) = tokio::join!(q.put_async(&2), async {
    ///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    ///     q.get_async().await
    /// });
    /// put?;
    /// assert_eq!(got?, 1);
    /// assert_eq!(q.get_async().await?, 2);
    /// // As `put`, it takes what the item type borrows as: a `&str` for a `Queue<String>`.
    /// let words = multiprocess::Queue::<String>::new()?;
    /// words.put_async("text").await?;
    /// assert_eq!(words.get_async().await?, "text");
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`put`](Queue::put); [`Error::Io`] outside a tokio runtime.
    pub async fn put_async<Q>(&self, value: &Q) -> Result<()>
    where
        T: std::borrow::Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        until(&self.ring, BOTH_SIDES, || {
            match self.put_timeout(value, false, None) {
                Ok(()) => Ok(Some(())),
                Err(Error::Full) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }
}
