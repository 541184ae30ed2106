//! A queue held by a manager.

use super::*;

/// A shared FIFO queue held by a [`Manager`] (Python's `manager.Queue(maxsize)` and
/// `manager.JoinableQueue(maxsize)`, proxies of `queue.Queue`): unbounded
/// ([`Manager::queue`]) or holding at most `maxsize` items ([`Manager::bounded_queue`]); a
/// `get` waits in the manager for an item, a `put` for room; `task_done`/`join` count the
/// items processed.
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// use std::time::Duration;
/// let manager = multiprocess::Manager::start()?;
/// let q = manager.bounded_queue::<u32>(2)?; // Python: manager.Queue(2)
/// q.put(&1)?;
/// q.put(&2)?;
/// assert!(q.full()?);
/// assert_eq!(q.maxsize()?, 2);
/// assert!(matches!(q.put_nowait(&3), Err(multiprocess::Error::Full)));
/// assert_eq!(q.get()?, 1);
/// q.put_timeout(&3, Some(Duration::from_secs(1)))?;
/// # Ok(()) }
/// ```
///
/// Across processes (the proxy is a `Process` argument; Python's `Queue()` from a `Manager`):
///
/// ```standalone_crate
/// use multiprocess::managers::QueueProxy;
/// use multiprocess::{Manager, Process};
///
/// /// Puts three words, then waits until the parent marked each one done.
/// fn producer(q: QueueProxy<String>) {
///     for word in ["spam", "ham", "eggs"] {
///         q.put(word).unwrap();
///     }
///     q.join().unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let q = manager.queue::<String>()?;
/// let mut p = Process::new(producer, (q.clone(),));
/// p.start()?;
/// let mut words = Vec::new();
/// for _ in 0..3 {
///     words.push(q.get()?);
///     q.task_done()?;
/// }
/// p.join()?;
/// assert_eq!(words, ["spam", "ham", "eggs"]);
/// assert_eq!(p.exitcode()?, Some(0));
/// # Ok(()) }
/// ```
pub struct QueueProxy<T>(pub(super) Handle, pub(super) PhantomData<fn() -> T>);
proxy_impls!(QueueProxy<T>);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts `value` at the back, waiting as long as the queue is full.
    pub fn put<Q>(&self, value: &Q) -> Result<()>
    where
        T: std::borrow::Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.0.done(Op::QueuePut(encode(value)?, None))
    }

    /// Puts `value` at the back, waiting up to `timeout` while the queue is full (`None`: no
    /// limit; zero: just look). Python's `put(value, True, timeout)`.
    ///
    /// # Errors
    /// [`Error::Full`] when no room came in time.
    pub fn put_timeout<Q>(&self, value: &Q, timeout: Option<Duration>) -> Result<()>
    where
        T: std::borrow::Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        match self.0.done(Op::QueuePut(encode(value)?, secs(timeout))) {
            Err(Error::Remote { kind, .. }) if kind == "Full" => Err(Error::Full),
            other => other,
        }
    }

    /// Puts `value` without waiting (Python's `put_nowait`).
    ///
    /// # Errors
    /// [`Error::Full`] if the queue is full.
    pub fn put_nowait<Q>(&self, value: &Q) -> Result<()>
    where
        T: std::borrow::Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.put_timeout(value, Some(Duration::ZERO))
    }

    /// Takes the front item, waiting as long as it takes.
    pub fn get(&self) -> Result<T> {
        self.0.value(Op::QueueGet(None))
    }

    /// Takes the front item, waiting up to `timeout` (`None`: no limit; zero: just look).
    ///
    /// # Errors
    /// [`Error::Empty`] when nothing came in time.
    pub fn get_timeout(&self, timeout: Option<Duration>) -> Result<T> {
        match self.0.value(Op::QueueGet(secs(timeout))) {
            Err(Error::Remote { kind, .. }) if kind == "Empty" => Err(Error::Empty),
            other => other,
        }
    }

    /// Takes the front item without waiting (Python's `get_nowait`).
    ///
    /// # Errors
    /// [`Error::Empty`] if there is none.
    pub fn get_nowait(&self) -> Result<T> {
        self.get_timeout(Some(Duration::ZERO))
    }

    /// The number of items waiting (Python's `qsize()`).
    pub fn qsize(&self) -> Result<usize> {
        self.0.len()
    }

    /// True if no item is waiting.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// True if the queue holds `maxsize` items (never for an unbounded one; Python's
    /// `full()`).
    pub fn full(&self) -> Result<bool> {
        self.0.flag(Op::Full)
    }

    /// The most items the queue holds (0: no limit; Python's `maxsize`).
    pub fn maxsize(&self) -> Result<u32> {
        self.0.len_of(Op::MaxSize).map(|n| n as u32)
    }

    /// Marks one item taken with `get` as processed (Python's `task_done()`).
    ///
    /// # Errors
    /// [`Error::Remote`] `ValueError` (`task_done() called too many times`).
    pub fn task_done(&self) -> Result<()> {
        self.0.done(Op::TaskDone)
    }

    /// Waits until every item put has been marked processed (Python's `join()`).
    ///
    /// # Errors
    /// As any proxy call: [`Error::Remote`], or the connection's errors.
    pub fn join(&self) -> Result<()> {
        self.0.flag(Op::Join(secs(None))).map(|_| ())
    }

    /// [`join`](Self::join) for at most `timeout`: true if every item was processed.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.0.flag(Op::Join(secs(Some(timeout))))
    }
}
