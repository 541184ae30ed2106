//! A queue held by a manager.

use super::*;

/// A shared FIFO queue held by a [`Manager`] (Python's `manager.Queue()` and
/// `manager.JoinableQueue()`, proxies of `queue.Queue`): unbounded; a `get` waits in the
/// manager for an item; `task_done`/`join` count the items processed.
pub struct QueueProxy<T>(pub(super) Handle, pub(super) PhantomData<fn() -> T>);
proxy_impls!(QueueProxy<T>);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts `value` at the back.
    pub fn put(&self, value: &T) -> Result<()> {
        self.0.done(Op::QueuePut(encode(value)?))
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

    /// The number of items waiting (Python's `qsize()`).
    pub fn qsize(&self) -> Result<usize> {
        self.0.len()
    }

    /// True if no item is waiting.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Marks one item taken with `get` as processed (Python's `task_done()`).
    ///
    /// # Errors
    /// [`Error::Remote`] `ValueError` (`task_done() called too many times`).
    pub fn task_done(&self) -> Result<()> {
        self.0.done(Op::TaskDone)
    }

    /// Waits until every item put has been marked processed (Python's `join()`), up to
    /// `timeout` (`None`: no limit); true if they all were.
    pub fn join(&self, timeout: Option<Duration>) -> Result<bool> {
        self.0.flag(Op::Join(secs(timeout)))
    }
}
