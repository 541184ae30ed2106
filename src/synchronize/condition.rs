//! `Condition`: waiting for a notification while holding a `Lock` or `RLock`.

use super::*;

/// The lock under a [`Condition`]: Python accepts a `Lock` or an `RLock` (the default).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConditionLock {
    /// A plain lock.
    Lock(Lock),
    /// A re-entrant lock.
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(l: Lock) -> Self {
        ConditionLock::Lock(l)
    }
}

impl From<RLock> for ConditionLock {
    fn from(l: RLock) -> Self {
        ConditionLock::RLock(l)
    }
}

/// A condition variable shared between processes: Python's `multiprocessing.Condition`.
///
/// Acquire it (it delegates to its lock), check your state, `wait` until notified; `notify`
/// and `notify_all` require holding the lock too, as in Python.
///
/// ```standalone_crate
/// use multiprocess::{Condition, Process, Value};
///
/// /// Sets the flag under the condition's lock and wakes the waiter.
/// fn producer(cond: Condition, ready: Value<u32>) {
///     let _held = cond.guard().unwrap();
///     ready.set(1).unwrap();
///     cond.notify_all().unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let cond = Condition::new()?;
/// let ready = Value::new(0u32)?;
/// let mut p = Process::new(producer, (cond.clone(), ready.clone()));
/// {
///     let _held = cond.guard()?;
///     p.start()?;
///     // Waits (releasing the lock meanwhile) until the child has set the flag.
///     while ready.get()? == 0 {
///         cond.wait_timeout(std::time::Duration::from_secs(10))?;
///     }
/// }
/// p.join()?;
/// assert_eq!(ready.get()?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Condition {
    lock: ConditionLock,
    /// Words: a sequence number bumped by every notify, the number of sleepers.
    region: Arc<Region>,
}

impl Condition {
    /// A condition over a new [`RLock`] (Python's default).
    pub fn new() -> Result<Condition> {
        Self::with_lock(RLock::new()?)
    }

    /// A condition over `lock`.
    pub fn with_lock(lock: impl Into<ConditionLock>) -> Result<Condition> {
        Ok(Condition {
            lock: lock.into(),
            region: region(2)?,
        })
    }

    /// The underlying lock.
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Acquires the underlying lock (Python's `acquire(block, timeout)`).
    ///
    /// # Errors
    /// As the lock's.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        match &self.lock {
            ConditionLock::Lock(l) => l.acquire_with(block, timeout),
            ConditionLock::RLock(l) => l.acquire_with(block, timeout),
        }
    }

    super::acquire_forms!();

    /// Releases the underlying lock.
    pub fn release(&self) -> Result<()> {
        match &self.lock {
            ConditionLock::Lock(l) => l.release(),
            ConditionLock::RLock(l) => l.release(),
        }
    }

    /// Acquires the lock and releases it when the guard drops.
    pub fn guard(&self) -> Result<ConditionGuard<'_>> {
        self.acquire()?;
        Ok(ConditionGuard { condition: self })
    }

    fn check_owned(&self, what: &str) -> Result<()> {
        let mine = match &self.lock {
            ConditionLock::Lock(l) => l.held_by_me(),
            ConditionLock::RLock(l) => l.is_mine(),
        };
        if mine {
            Ok(())
        } else {
            Err(Error::state(format!(
                "must acquire() condition before using {what}()"
            )))
        }
    }

    fn words(&self) -> (&AtomicU32, &AtomicU32) {
        let w = self.region.words();
        (&w[0], &w[1])
    }

    /// Releases the lock, sleeps until notified, and re-acquires the lock (at its previous
    /// depth for an `RLock`): Python's `wait()`.
    ///
    /// # Errors
    /// [`Error::State`] ("must acquire() condition before using wait()") without the lock.
    pub fn wait(&self) -> Result<()> {
        self.wait_until(None).map(|_| ())
    }

    /// [`wait`](Self::wait) for at most `timeout` (Python's `wait(timeout)`): `Ok(false)` when
    /// the timeout passed.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Some(timeout))
    }

    fn wait_until(&self, timeout: Option<Duration>) -> Result<bool> {
        self.check_owned("wait")?;
        let (seq, sleepers) = self.words();
        let ticket = seq.load(Ordering::SeqCst);
        sleepers.fetch_add(1, Ordering::SeqCst);
        let depth = match &self.lock {
            ConditionLock::Lock(l) => l.release().map(|()| 0),
            ConditionLock::RLock(l) => l.release_all(),
        };
        let deadline = Deadline::after(timeout);
        let notified = depth.is_ok()
            && loop {
                if !sleep_on(&self.region, seq, ticket, deadline) {
                    break false;
                }
                if seq.load(Ordering::SeqCst) != ticket {
                    break true;
                }
            };
        sleepers.fetch_sub(1, Ordering::SeqCst);
        match (&self.lock, depth?) {
            (ConditionLock::Lock(l), _) => l.acquire()?,
            (ConditionLock::RLock(l), n) => l.acquire_restore(n)?,
        }
        Ok(notified)
    }

    /// Waits until `predicate()` is true (checked with the lock held) or `timeout` passes;
    /// returns the predicate's last value.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.passed() {
                return Ok(false);
            }
            self.wait_until(deadline.remaining())?;
        }
    }

    /// Wakes up to `n` waiters.
    ///
    /// # Errors
    /// [`Error::State`] without the lock.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.check_owned("notify")?;
        let (seq, sleepers) = self.words();
        seq.fetch_add(1, Ordering::SeqCst);
        if sleepers.load(Ordering::SeqCst) > 0 {
            self.region.wake(seq, n);
        }
        Ok(())
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

/// Holds a [`Condition`]'s lock until dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ConditionGuard<'a> {
    condition: &'a Condition,
}

impl ConditionGuard<'_> {
    /// [`Condition::wait`] while holding this guard.
    ///
    /// # Errors
    /// As [`Condition::wait`].
    pub fn wait(&self) -> Result<()> {
        self.condition.wait()
    }

    /// [`Condition::wait_timeout`] while holding this guard.
    ///
    /// # Errors
    /// As [`Condition::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.condition.wait_timeout(timeout)
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = self.condition.release();
    }
}
