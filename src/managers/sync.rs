//! Proxies of synchronisation objects: lock, re-entrant lock, semaphore, event, barrier,
//! condition.

use super::*;

pub(super) fn secs(timeout: Option<Duration>) -> Option<f64> {
    timeout.map(|t| t.as_secs_f64())
}

/// A lock held by a [`Manager`] (Python's `manager.Lock()`, a proxy of `threading.Lock`): any
/// process may release it, as with `threading.Lock`.
///
/// **When its holder goes.** The manager sees a holder go when the holder's connection closes;
/// what tells the two ends apart is whether the holder's process ran its exit hooks first:
/// - The holder's process exits normally (returns from `main`, calls [`crate::exit`], or is a
///   child whose target returned or panicked): its exit hooks (or the drop of its last proxy)
///   tell the manager, and the lock **stays held**, as in Python. Any process may still
///   `release` it.
/// - The holder's process dies without its exit hooks (killed, `SIGKILL`/`TerminateProcess`,
///   an abort, a `fork`ed child ending with `_exit` before its hooks): the lock is
///   **released**. Beyond Python, whose lock stays held for ever.
/// - The holder's process drops its last proxy of the lock (its connections then close in
///   order): the lock stays held, as in Python.
///
/// The same holds for [`RLockProxy`] and [`ConditionProxy`], except that a lock kept after its
/// holder's normal exit can never be released (only its holder may release those), as in
/// Python.
///
/// The manager's other synchronisation proxies ([`RLockProxy`], [`SemaphoreProxy`],
/// [`EventProxy`], [`ConditionProxy`], [`BarrierProxy`]) travel and are used the same way.
///
/// ```standalone_crate
/// use multiprocess::managers::{EventProxy, LockProxy};
/// use multiprocess::{Manager, Process};
///
/// fn worker(lock: LockProxy, started: EventProxy) -> bool {
///     started.set().unwrap();
///     lock.acquire().unwrap(); // waits until the parent releases it
///     lock.release().is_ok()
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let (lock, started) = (manager.lock()?, manager.event()?);
/// lock.acquire()?;
/// let mut p = Process::new(worker, (lock.clone(), started.clone()));
/// p.start()?;
/// started.wait()?;
/// assert!(lock.locked()?); // still ours: the child waits
/// lock.release()?;
/// assert!(p.result::<bool>()?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockProxy(pub(super) Handle);

impl LockProxy {
    /// Takes the lock: with `block`, waits up to `timeout` (`None`: no limit); without, tries
    /// once. True if taken (Python's `acquire(block, timeout)`).
    ///
    /// # Errors
    /// As any proxy call: [`Error::Remote`], or the connection's errors.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.0.acquire(block, timeout)
    }

    crate::synchronize::acquire_forms!();

    /// Releases the lock.
    ///
    /// # Errors
    /// [`Error::Remote`] `RuntimeError` (`release unlocked lock`) if it is not held.
    pub fn release(&self) -> Result<()> {
        self.0.done(Op::Release)
    }

    /// Whether the lock is held.
    pub fn locked(&self) -> Result<bool> {
        self.0.flag(Op::Locked)
    }
}

/// An event held by a [`Manager`] (Python's `manager.Event()`). Example: a child sets one in
/// [`LockProxy`]'s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventProxy(pub(super) Handle);

impl EventProxy {
    /// Sets the event, waking every waiter.
    pub fn set(&self) -> Result<()> {
        self.0.done(Op::Set)
    }

    /// Clears the event.
    pub fn clear(&self) -> Result<()> {
        self.0.done(Op::Clear)
    }

    /// Whether the event is set.
    pub fn is_set(&self) -> Result<bool> {
        self.0.flag(Op::Locked)
    }

    /// Waits until the event is set.
    ///
    /// # Errors
    /// As any proxy call: [`Error::Remote`], or the connection's errors.
    pub fn wait(&self) -> Result<()> {
        self.0.flag(Op::Wait(None)).map(|_| ())
    }

    /// Waits until the event is set, at most `timeout`; true if it is.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.0.flag(Op::Wait(secs(Some(timeout))))
    }
}

/// A re-entrant lock held by a [`Manager`] (Python's `manager.RLock()`): acquired again by the
/// thread that holds it (through this proxy or a clone), released as many times. A holder
/// whose process dies releases it; one whose process exits normally keeps it held for ever, as
/// Python's does (see [`LockProxy`] for how the two are told apart).
///
/// ```standalone_crate
/// use multiprocess::managers::RLockProxy;
/// use multiprocess::{Manager, Process};
///
/// /// Another process cannot take a lock this one holds, however many times it holds it.
/// fn try_take(r: RLockProxy) -> bool {
///     r.try_acquire().unwrap()
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let r = manager.rlock()?;
/// r.acquire()?;
/// r.acquire()?; // again: re-entrant for its holder
/// let mut p = Process::new(try_take, (r.clone(),));
/// p.start()?;
/// assert!(!p.result::<bool>()?);
/// r.release()?;
/// r.release()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RLockProxy(pub(super) Handle);

impl RLockProxy {
    /// Takes the lock (again, if this thread holds it): with `block`, waits up to `timeout`
    /// (`None`: no limit); without, tries once. True if taken.
    ///
    /// # Errors
    /// As any proxy call: [`Error::Remote`], or the connection's errors.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.0.acquire(block, timeout)
    }

    crate::synchronize::acquire_forms!();

    /// Releases one level.
    ///
    /// # Errors
    /// [`Error::Remote`] `RuntimeError` (`cannot release un-acquired lock`) unless this thread
    /// holds it.
    pub fn release(&self) -> Result<()> {
        self.0.done(Op::Release)
    }
}

/// A semaphore held by a [`Manager`] (Python's `manager.Semaphore()` and
/// `manager.BoundedSemaphore()`).
///
/// ```standalone_crate
/// use multiprocess::managers::SemaphoreProxy;
/// use multiprocess::{Manager, Process};
///
/// /// Takes a slot if one is free at once, and gives it back.
/// fn use_a_slot(s: SemaphoreProxy) -> bool {
///     let took = s.try_acquire().unwrap();
///     if took {
///         s.release().unwrap();
///     }
///     took
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let s = manager.semaphore(2)?; // Python: manager.Semaphore(2)
/// s.acquire()?;
/// let mut p = Process::new(use_a_slot, (s.clone(),));
/// p.start()?;
/// assert!(p.result::<bool>()?); // one of the two slots was free
/// s.acquire()?; // both taken now
/// let mut q = Process::new(use_a_slot, (s.clone(),));
/// q.start()?;
/// assert!(!q.result::<bool>()?);
/// assert_eq!(s.get_value()?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SemaphoreProxy(pub(super) Handle);

impl SemaphoreProxy {
    /// Takes one unit: with `block`, waits up to `timeout` (`None`: no limit); without, tries
    /// once. True if taken.
    ///
    /// # Errors
    /// As any proxy call: [`Error::Remote`], or the connection's errors.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.0.acquire(block, timeout)
    }

    crate::synchronize::acquire_forms!();

    /// Gives one unit back.
    ///
    /// # Errors
    /// [`Error::Remote`] `ValueError` (`Semaphore released too many times`) above a bounded
    /// semaphore's initial value.
    pub fn release(&self) -> Result<()> {
        self.0.done(Op::Release)
    }

    /// The counter's value now (Python's `get_value()`).
    pub fn get_value(&self) -> Result<u32> {
        self.0.len().map(|n| n as u32)
    }
}

/// A barrier held by a [`Manager`] (Python's `manager.Barrier(parties)`). Beyond Python, a
/// waiting party whose process dies breaks the barrier for the others instead of leaving them
/// waiting for ever.
///
/// ```standalone_crate
/// use multiprocess::managers::BarrierProxy;
/// use multiprocess::{Manager, Process};
///
/// fn meet(b: BarrierProxy) -> u32 {
///     b.wait().unwrap()
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let b = manager.barrier(3)?; // Python: manager.Barrier(3)
/// assert_eq!(b.parties()?, 3);
/// let mut children: Vec<Process> = (0..2).map(|_| Process::new(meet, (b.clone(),))).collect();
/// for p in &mut children {
///     p.start()?;
/// }
/// let mut places = vec![b.wait()?]; // the third party: all three go on together
/// for p in &mut children {
///     places.push(p.result::<u32>()?);
/// }
/// places.sort();
/// assert_eq!(places, [0, 1, 2]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BarrierProxy(pub(super) Handle);

impl BarrierProxy {
    /// Waits until all parties have called `wait`; returns this party's arrival index (0 for
    /// the first), as Python's.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken (a timeout, `abort`,
    /// `reset`, or a party that died).
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(None)
    }

    /// [`wait`](Self::wait) for at most `timeout` (a timeout breaks the barrier).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(Some(timeout))
    }

    fn wait_until(&self, timeout: Option<Duration>) -> Result<u32> {
        match self.0.call(Op::BarrierWait(secs(timeout))) {
            Ok(Reply::Len(i)) => Ok(i as u32),
            Ok(other) => Err(unexpected(other)),
            Err(Error::Remote { kind, .. }) if kind == "BrokenBarrierError" => {
                Err(Error::BrokenBarrier)
            }
            Err(e) => Err(e),
        }
    }

    /// Breaks the barrier: every waiter, and every later `wait`, gets
    /// [`Error::BrokenBarrier`] until [`reset`](BarrierProxy::reset).
    pub fn abort(&self) -> Result<()> {
        self.0.done(Op::Abort)
    }

    /// Returns the barrier to its first state; parties waiting now get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) -> Result<()> {
        self.0.done(Op::Reset)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        self.0.flag(Op::Locked)
    }

    /// How many parties wait now (Python's `n_waiting`).
    pub fn n_waiting(&self) -> Result<u32> {
        self.0.len().map(|n| n as u32)
    }

    /// How many parties must call [`wait`](BarrierProxy::wait) for it to pass (Python's
    /// `parties`).
    pub fn parties(&self) -> Result<u32> {
        self.0.len_of(Op::Parties).map(|n| n as u32)
    }
}

/// A condition variable held by a [`Manager`] (Python's `manager.Condition()`), over its own
/// re-entrant lock, which belongs to the thread that acquired it (through this proxy or a
/// clone).
///
/// ```standalone_crate
/// use multiprocess::managers::{ConditionProxy, ValueProxy};
/// use multiprocess::{Manager, Process};
///
/// /// Waits under the condition until the parent says go, then reads the value.
/// fn consumer(c: ConditionProxy, ready: ValueProxy<bool>, data: ValueProxy<u32>) -> u32 {
///     c.acquire().unwrap();
///     while !ready.get().unwrap() {
///         c.wait().unwrap();
///     }
///     let v = data.get().unwrap();
///     c.release().unwrap();
///     v
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let (c, ready, data) = (manager.condition()?, manager.value(&false)?, manager.value(&0u32)?);
/// let mut p = Process::new(consumer, (c.clone(), ready.clone(), data.clone()));
/// p.start()?;
/// c.acquire()?;
/// data.set(&7)?;
/// ready.set(&true)?;
/// c.notify_all()?;
/// c.release()?;
/// assert_eq!(p.result::<u32>()?, 7);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConditionProxy(pub(super) Handle);

impl ConditionProxy {
    /// Takes the lock (again, if this thread holds it): with `block`, waits up to
    /// `timeout`; without, tries once. True if taken.
    ///
    /// # Errors
    /// As any proxy call: [`Error::Remote`], or the connection's errors.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.0.acquire(block, timeout)
    }

    crate::synchronize::acquire_forms!();

    /// Releases one level of the lock.
    ///
    /// # Errors
    /// [`Error::Remote`] `RuntimeError` unless this thread holds it.
    pub fn release(&self) -> Result<()> {
        self.0.done(Op::Release)
    }

    /// Releases the lock, waits to be notified, takes the lock back (Python's `wait()`).
    ///
    /// # Errors
    /// [`Error::Remote`] `RuntimeError` unless this thread holds the lock.
    pub fn wait(&self) -> Result<()> {
        self.0.flag(Op::Wait(None)).map(|_| ())
    }

    /// [`wait`](Self::wait) for at most `timeout`; true if notified (Python's
    /// `wait(timeout)`).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.0.flag(Op::Wait(secs(Some(timeout))))
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`); the lock must be held.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.0.done(Op::Notify(Some(n)))
    }

    /// Wakes every waiter (Python's `notify_all()`); the lock must be held.
    pub fn notify_all(&self) -> Result<()> {
        self.0.done(Op::Notify(None))
    }
}
