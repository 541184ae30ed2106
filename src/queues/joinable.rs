//! Python's `JoinableQueue`: a [`Queue`] that counts unfinished tasks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::synchronize::Deadline;

use super::Queue;
use super::ring::*;

/// A [`Queue`] that counts unfinished tasks: Python's `multiprocessing.JoinableQueue`. Every
/// `put` adds a task; consumers call [`task_done`](JoinableQueue::task_done) per item, and
/// [`join`](JoinableQueue::join) waits until every task is done.
///
/// ```standalone_crate
/// use multiprocess::{JoinableQueue, Process, Queue};
///
/// /// Doubles every number it gets until it gets 0, marking each one done.
/// fn worker(tasks: JoinableQueue<u32>, results: Queue<u32>) {
///     loop {
///         let n = tasks.get().unwrap();
///         if n != 0 {
///             results.put(&(n * 2)).unwrap();
///         }
///         tasks.task_done().unwrap();
///         if n == 0 {
///             break;
///         }
///     }
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let tasks = JoinableQueue::new()?;
/// let results = Queue::new()?;
/// let mut p = Process::new(worker, (tasks.clone(), results.clone()));
/// p.start()?;
/// for n in [1, 2, 3, 0] {
///     tasks.put(&n)?;
/// }
/// tasks.join()?; // every task is done
/// let mut doubled: Vec<u32> = (0..3).map(|_| results.get()).collect::<Result<_, _>>()?;
/// doubled.sort();
/// assert_eq!(doubled, [2, 4, 6]);
/// p.join()?;
/// # Ok(()) }
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<JoinableQueue qsize={} unfinished={}>",
            self.queue.ring.items(),
            self.queue.ring.word(UNFINISHED).load(Ordering::Relaxed)
        )
    }
}

impl<T: Serialize + DeserializeOwned + 'static> JoinableQueue<T> {
    /// An unbounded joinable queue.
    pub fn new() -> Result<Self> {
        Self::bounded(0)
    }

    /// A joinable queue of at most `maxsize` items (0 = unbounded).
    pub fn bounded(maxsize: u32) -> Result<Self> {
        Ok(JoinableQueue {
            queue: Queue::bounded(maxsize)?,
        })
    }

    fn unfinished(&self) -> &AtomicU32 {
        self.queue.ring.word(UNFINISHED)
    }

    put_forms! {
        /// Puts `value` and counts a task (see [`Queue::put`]).
        put;

        /// [`Queue::put_timeout`], counting a task when it succeeds.
        put_timeout(&self, value, block, timeout) {
            // Count first, so that a fast consumer's task_done never sees zero.
            self.unfinished().fetch_add(1, Ordering::SeqCst);
            let put = self.queue.put_timeout(value, block, timeout);
            if put.is_err() {
                self.task_done_unchecked();
            }
            put
        }

        /// Puts without waiting.
        put_nowait;
    }

    /// The queue's other operations: [`Queue::get`], [`Queue::qsize`], and so on.
    pub fn queue(&self) -> &Queue<T> {
        &self.queue
    }

    /// Takes the next item (see [`Queue::get`]).
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// Takes the next item with a timeout (see [`Queue::get_timeout`]).
    pub fn get_timeout(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        self.queue.get_timeout(block, timeout)
    }

    /// [`put`](JoinableQueue::put) as a future (cargo feature `tokio`): as
    /// [`Queue::put_async`], counting a task when the value is put. **Cancel safe**: dropped
    /// before the value is put, it has put nothing and counts no task.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let q = multiprocess::JoinableQueue::<u8>::new()?;
    /// q.put_async(&5).await?;
    /// assert_eq!(q.get_async().await?, 5);
    /// q.task_done()?;
    /// q.join()?; // nothing unfinished: returns at once
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Queue::put_async`].
    #[cfg(feature = "tokio")]
    pub async fn put_async<Q>(&self, value: &Q) -> Result<()>
    where
        T: std::borrow::Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        /// Uncounts the task unless the put succeeded (also when the future is dropped).
        struct Counted<'a, T>(&'a JoinableQueue<T>, bool);
        impl<T> Drop for Counted<'_, T> {
            fn drop(&mut self) {
                let ring = &self.0.queue.ring;
                if !self.1 && ring.word(UNFINISHED).fetch_sub(1, Ordering::SeqCst) == 1 {
                    ring.wake(UNFINISHED, JOINERS_ASLEEP);
                }
            }
        }
        // Count first, as `put` does, so that a fast consumer's task_done never sees zero.
        self.unfinished().fetch_add(1, Ordering::SeqCst);
        let mut counted = Counted(self, false);
        self.queue.put_async(value).await?;
        counted.1 = true;
        Ok(())
    }

    /// [`Queue::get_async`] (cargo feature `tokio`), cancel safety included.
    ///
    /// # Errors
    /// As [`Queue::get_async`].
    #[cfg(feature = "tokio")]
    pub async fn get_async(&self) -> Result<T> {
        self.queue.get_async().await
    }

    /// [`join`](JoinableQueue::join) as a future (cargo feature `tokio`; beyond Python):
    /// resolves once every task put has been marked done, waiting on the queue's wake-up
    /// channel (which `task_done` signals when the count reaches zero and an async waiter is
    /// counted; an event on Windows). **Cancel safe**: it only waits.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let q = multiprocess::JoinableQueue::<u8>::new()?;
    /// q.put(&1)?;
    /// let (joined, done) = tokio::join!(q.join_async(), async {
    ///     let x = q.get_async().await?;
    ///     q.task_done()?;
    ///     Ok::<u8, multiprocess::Error>(x)
    /// });
    /// joined?;
    /// assert_eq!(done?, 1);
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] outside a tokio runtime.
    #[cfg(feature = "tokio")]
    pub async fn join_async(&self) -> Result<()> {
        let ring = &self.queue.ring;
        super::aio::until(ring, &[JOINERS_ASLEEP], || {
            Ok((ring.word(UNFINISHED).load(Ordering::SeqCst) == 0).then_some(()))
        })
        .await
    }

    /// Marks one task done.
    ///
    /// # Errors
    /// [`Error::State`] ("task_done() called too many times") when no task is unfinished.
    pub fn task_done(&self) -> Result<()> {
        let unfinished = self.unfinished();
        let mut n = unfinished.load(Ordering::SeqCst);
        loop {
            if n == 0 {
                return Err(Error::state("task_done() called too many times"));
            }
            match unfinished.compare_exchange_weak(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        if n == 1 {
            self.queue.ring.wake(UNFINISHED, JOINERS_ASLEEP);
        }
        Ok(())
    }

    fn task_done_unchecked(&self) {
        if self.unfinished().fetch_sub(1, Ordering::SeqCst) == 1 {
            self.queue.ring.wake(UNFINISHED, JOINERS_ASLEEP);
        }
    }

    /// Waits until every task put has been marked done.
    pub fn join(&self) -> Result<()> {
        if self.join_until(None) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    /// [`join`](JoinableQueue::join) for at most `timeout`: `Ok(false)` if tasks remain.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.join_until(Some(timeout)))
    }

    fn join_until(&self, timeout: Option<Duration>) -> bool {
        let ring = &self.queue.ring;
        ring.wait_for(UNFINISHED, JOINERS_ASLEEP, Deadline::after(timeout), || {
            self.unfinished().load(Ordering::SeqCst) == 0
        })
    }

    /// Closes this handle (see [`Queue::close`]).
    pub fn close(&mut self) {
        self.queue.close()
    }
}
