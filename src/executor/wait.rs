//! Waiting for many futures: Python's `concurrent.futures.wait` and `as_completed`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::future::{AnyFuture, Waiter};
use crate::error::{Error, Result};

/// When [`wait`] returns: Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReturnWhen {
    /// When any future finishes or is cancelled.
    FirstCompleted,
    /// When any future finishes with an error (a cancelled one does not count); if none
    /// does, when all are done.
    FirstException,
    /// When all are done (Python's default).
    #[default]
    AllCompleted,
}

/// The futures, each once (Python takes a set), in their first order.
fn unique<'a, F: AnyFuture + ?Sized>(fs: impl IntoIterator<Item = &'a F>) -> Vec<&'a F> {
    let mut seen = HashSet::new();
    fs.into_iter().filter(|f| seen.insert(f.key())).collect()
}

/// Waits until `return_when` holds or `timeout` passes (`None`: as long as it takes), and
/// returns the futures `(done, not_done)`, each in the order given (Python's `wait`, whose
/// named tuple `DoneAndNotDoneFutures` this is). A timeout is no error: the futures not done
/// are in `not_done`. A future given twice is counted once. Futures of different result
/// types go together as `&dyn AnyFuture` (see [`AnyFuture`]).
///
/// ```standalone_crate
/// use std::time::Duration;
/// use multiprocess::executor::{ProcessPoolExecutor, ReturnWhen, wait};
///
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
/// let executor = ProcessPoolExecutor::new(2)?;
/// let futures = vec![executor.submit(nap, (10,))?, executor.submit(nap, (1500,))?];
/// let (done, not_done) = wait(&futures, None, ReturnWhen::FirstCompleted);
/// assert_eq!(done.len(), 1);
/// assert_eq!(done[0].result()?, 10);
/// assert_eq!(not_done.len(), 1);
/// let (done, not_done) = wait(&futures, None, ReturnWhen::AllCompleted);
/// assert_eq!((done.len(), not_done.len()), (2, 0));
/// # Ok(()) }
/// ```
pub fn wait<'a, F: AnyFuture + ?Sized>(
    fs: impl IntoIterator<Item = &'a F>,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> (Vec<&'a F>, Vec<&'a F>) {
    let deadline = timeout.and_then(crate::sys::deadline_after);
    let fs = unique(fs);
    let waiter = Arc::new(Waiter::default());
    for (i, f) in fs.iter().enumerate() {
        f.watch(&waiter, i);
    }
    let all = fs.len();
    waiter.wait_until(
        deadline,
        |finished| {
            finished.len() == all
                || match return_when {
                    ReturnWhen::FirstCompleted => !finished.is_empty(),
                    ReturnWhen::FirstException => finished.iter().any(|&i| fs[i].failed()),
                    ReturnWhen::AllCompleted => false,
                }
        },
        |_| (),
    );
    for f in &fs {
        f.unwatch(&waiter);
    }
    fs.into_iter().partition(|f| f.done())
}

/// Yields the futures as they finish (or are cancelled), those already done first (Python's
/// `as_completed`). With a `timeout`, measured from this call: once it passes with futures
/// left, yields `Err(`[`Error::Timeout`]`)` and ends. A future given twice is yielded once.
///
/// ```standalone_crate
/// use std::time::Duration;
/// use multiprocess::executor::{ProcessPoolExecutor, as_completed};
///
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
/// let executor = ProcessPoolExecutor::new(3)?;
/// let futures: Vec<_> = [1500, 10, 700]
///     .into_iter()
///     .map(|ms| executor.submit(nap, (ms,)))
///     .collect::<Result<_, _>>()?;
/// let mut order = Vec::new();
/// for future in as_completed(&futures, Some(Duration::from_secs(60))) {
///     order.push(future?.result()?);
/// }
/// assert_eq!(order, [10, 700, 1500]);
/// # Ok(()) }
/// ```
pub fn as_completed<'a, F: AnyFuture + ?Sized>(
    fs: impl IntoIterator<Item = &'a F>,
    timeout: Option<Duration>,
) -> AsCompleted<'a, F> {
    let deadline = timeout.and_then(crate::sys::deadline_after);
    let fs = unique(fs);
    let waiter = Arc::new(Waiter::default());
    for (i, f) in fs.iter().enumerate() {
        f.watch(&waiter, i);
    }
    AsCompleted {
        fs,
        waiter,
        deadline,
        yielded: 0,
        over: false,
    }
}

/// The iterator of [`as_completed`]: each future as it finishes, or the timeout's error.
pub struct AsCompleted<'a, F: AnyFuture + ?Sized> {
    fs: Vec<&'a F>,
    waiter: Arc<Waiter>,
    deadline: Option<Instant>,
    yielded: usize,
    over: bool,
}

impl<F: AnyFuture + ?Sized> std::fmt::Debug for AsCompleted<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<AsCompleted yielded={} of={}>",
            self.yielded,
            self.fs.len()
        )
    }
}

impl<'a, F: AnyFuture + ?Sized> Iterator for AsCompleted<'a, F> {
    type Item = Result<&'a F>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.over || self.yielded == self.fs.len() {
            return None;
        }
        let (next, _) = self.waiter.wait_until(
            self.deadline,
            |finished| !finished.is_empty(),
            |finished| finished.pop_front(),
        );
        match next {
            Some(i) => {
                self.yielded += 1;
                Some(Ok(self.fs[i]))
            }
            None => {
                self.over = true;
                Some(Err(Error::Timeout))
            }
        }
    }
}

impl<F: AnyFuture + ?Sized> Drop for AsCompleted<'_, F> {
    fn drop(&mut self) {
        for f in &self.fs {
            f.unwatch(&self.waiter);
        }
    }
}
