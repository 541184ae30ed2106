//! Python's `SimpleQueue`: a [`Queue`] without its extras.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Queue;
use crate::error::Result;

/// A simpler queue: Python's `multiprocessing.SimpleQueue` (`put`, `get`, `empty`, `close`),
/// unbounded, on the same shared ring as [`Queue`].
///
/// ```standalone_crate
/// use multiprocess::{Process, SimpleQueue};
///
/// fn greet(q: SimpleQueue<String>) {
///     q.put("hello from the child").unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let q = SimpleQueue::new()?;
/// let mut p = Process::new(greet, (q.clone(),));
/// p.start()?;
/// assert_eq!(q.get()?, "hello from the child");
/// p.join()?;
/// assert!(q.empty());
/// # Ok(()) }
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<SimpleQueue qsize={}>", self.queue.ring.items())
    }
}

impl<T: Serialize + DeserializeOwned + 'static> SimpleQueue<T> {
    /// A new, empty queue.
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue {
            queue: Queue::new()?,
        })
    }

    /// Puts `value` (see [`Queue::put`]).
    pub fn put<Q>(&self, value: &Q) -> Result<()>
    where
        T: std::borrow::Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.queue.put(value)
    }

    /// [`put`](SimpleQueue::put), waiting no longer than `timeout` (`None`: for ever) while the
    /// queue's memory is full (its consumers not taking items), which Python's SimpleQueue
    /// cannot: its `put` blocks while the pipe is full.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiprocess::SimpleQueue::<u32>::new()?;
    /// q.put_timeout(&1, Some(Duration::from_secs(1)))?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Full`](crate::Error::Full) when no room came in time; as
    /// [`Queue::put`].
    pub fn put_timeout<Q>(&self, value: &Q, timeout: Option<Duration>) -> Result<()>
    where
        T: std::borrow::Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.queue.put_timeout(value, true, timeout)
    }

    /// Takes the next item, waiting as long as it takes.
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// [`Queue::put_async`] (cargo feature `tokio`), cancel safety included.
    ///
    /// # Errors
    /// As [`Queue::put_async`].
    #[cfg(feature = "tokio")]
    pub async fn put_async<Q>(&self, value: &Q) -> Result<()>
    where
        T: std::borrow::Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.queue.put_async(value).await
    }

    /// [`Queue::get_async`] (cargo feature `tokio`), cancel safety included.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let q = multiprocess::SimpleQueue::<u8>::new()?;
    /// q.put_async(&5).await?;
    /// assert_eq!(q.get_async().await?, 5);
    /// # Ok::<(), multiprocess::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Queue::get_async`].
    #[cfg(feature = "tokio")]
    pub async fn get_async(&self) -> Result<T> {
        self.queue.get_async().await
    }

    /// [`get`](SimpleQueue::get) with a timeout, which Python's SimpleQueue lacks.
    pub fn get_timeout(&self, timeout: Option<Duration>) -> Result<T> {
        self.queue.get_timeout(true, timeout)
    }

    /// Whether the queue holds no item.
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes this handle (idempotent).
    pub fn close(&mut self) {
        self.queue.close()
    }
}
