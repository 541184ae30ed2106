//! `Lock` and `RLock`: a word in shared memory holding the owner, recovered when the owner dies.

use super::*;

/// A non-recursive lock shared between processes: Python's `multiprocessing.Lock`.
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// let lock = multiprocess::Lock::new()?;
/// lock.acquire()?;
/// assert!(!lock.try_acquire()?); // held: a non-blocking attempt fails
/// lock.release()?;
/// {
///     let _held = lock.guard()?; // released at the end of the scope
/// }
/// assert!(lock.release().is_err()); // released too many times
/// # Ok(()) }
/// ```
///
/// Between processes: the children print one at a time (Python's "hello world" lock example).
///
/// ```standalone_crate
/// use multiprocess::{Lock, Process};
///
/// fn say(lock: Lock, i: u32) {
///     let _held = lock.guard().unwrap();
///     println!("hello world {i}");
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let lock = Lock::new()?;
/// let mut children: Vec<Process> = (0..3).map(|i| Process::new(say, (lock.clone(), i))).collect();
/// for p in &mut children {
///     p.start()?;
/// }
/// for p in &mut children {
///     p.join()?;
///     assert_eq!(p.exitcode()?, Some(0));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    /// Words: the lock word, and the thread (within the owning process) that acquired it
    /// (only so that [`Value`](crate::Value)'s accessors can refuse to wait on themselves).
    region: Arc<Region>,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Result<Lock> {
        Ok(Lock { region: region(2)? })
    }

    fn word(&self) -> &AtomicU32 {
        &self.region.words()[0]
    }

    fn holder(&self) -> &AtomicU32 {
        &self.region.words()[1]
    }

    /// Python's `acquire(block, timeout)`: with `block`, waits until the lock is free or
    /// `timeout` (`None`: forever) passes; without, returns at once. `Ok(true)` when acquired.
    /// The short forms are [`acquire`](Self::acquire), [`try_acquire`](Self::try_acquire) and
    /// [`acquire_timeout`](Self::acquire_timeout).
    ///
    /// # Errors
    /// [`Error::OwnerDied`] when the holder died holding it; the lock is free again.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let acquired = lock_word(&self.region, self.word(), block, timeout)?;
        if acquired {
            self.holder().store(thread_id(), Ordering::Relaxed);
        }
        Ok(acquired)
    }

    super::acquire_forms!();

    /// Releases the lock; any process may release it, as in Python.
    ///
    /// # Errors
    /// [`Error::State`] ("semaphore or lock released too many times") if it is not held.
    pub fn release(&self) -> Result<()> {
        self.holder().store(0, Ordering::Relaxed);
        unlock_word(&self.region, self.word())
    }

    /// Acquires the lock (waiting as long as it takes) and releases it when the guard drops:
    /// Python's `with lock:`.
    pub fn guard(&self) -> Result<LockGuard<'_>> {
        self.acquire()?;
        Ok(LockGuard { lock: self })
    }

    /// Whether the lock is held by some process.
    pub fn is_locked(&self) -> bool {
        self.word().load(Ordering::Relaxed) != 0
    }

    pub(super) fn held_by_me(&self) -> bool {
        owned_by_me(self.word())
    }

    /// [`guard`](Lock::guard) for an accessor that takes the lock implicitly (a
    /// [`Value`](crate::Value)'s `get`, `set`, `lock`): where the calling thread holds the lock
    /// already, it would wait for itself forever, so it fails with [`Error::State`] instead
    /// (Python's default lock there is an `RLock`, which lets the call through). `what` names
    /// the object for the message.
    pub(crate) fn guard_for(&self, what: &str) -> Result<LockGuard<'_>> {
        if !self.try_acquire()? {
            if self.held_by_me() && self.holder().load(Ordering::Relaxed) == thread_id() {
                return Err(Error::state(format!(
                    "this thread already holds the lock of this {what} (a guard from lock(), \
                     or get_lock()), so waiting for it would never end: read and write \
                     through the guard, or drop it first"
                )));
            }
            self.acquire()?;
        }
        Ok(LockGuard { lock: self })
    }
}

impl std::fmt::Debug for Lock {
    /// Python's repr: `<Lock(owner=None)>` or `<Lock(owner=SomeOtherProcess)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owner = match self.word().load(Ordering::Relaxed) & PID_MASK {
            0 => "None".to_string(),
            pid => format!("pid {pid}"),
        };
        write!(f, "<Lock(owner={owner})>")
    }
}

/// Holds a [`Lock`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

// ---------------------------------------------------------------------------------------------

/// A re-entrant lock shared between processes: Python's `multiprocessing.RLock`. The thread
/// that holds it may acquire it again; it is free after as many releases as acquires, and only
/// its owner may release it.
///
/// ```standalone_crate
/// use multiprocess::{Process, RLock};
///
/// fn nested(lock: RLock) -> bool {
///     let _outer = lock.guard().unwrap();
///     let _inner = lock.guard().unwrap(); // the holder may take it again
///     lock.is_mine()
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let lock = RLock::new()?;
/// let mut p = Process::new(nested, (lock.clone(),));
/// p.start()?;
/// p.join()?;
/// assert!(p.result::<bool>()?);
/// assert!(lock.try_acquire()?); // free again after the child's two releases
/// lock.release()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    /// Words: the lock word, the owning thread (within the owning process), the depth.
    region: Arc<Region>,
}

/// An id for the calling thread, unique within this process.
fn thread_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        static ID: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    pub fn new() -> Result<RLock> {
        Ok(RLock { region: region(3)? })
    }

    fn words(&self) -> (&AtomicU32, &AtomicU32, &AtomicU32) {
        let w = self.region.words();
        (&w[0], &w[1], &w[2])
    }

    /// Whether the calling thread holds the lock.
    pub fn is_mine(&self) -> bool {
        let (word, owner, _) = self.words();
        owned_by_me(word) && owner.load(Ordering::Relaxed) == thread_id()
    }

    /// Acquires the lock (again, if this thread holds it); see [`Lock::acquire_with`].
    ///
    /// # Errors
    /// [`Error::OwnerDied`] when the holder died holding it; the lock is free again.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let (word, owner, depth) = self.words();
        if self.is_mine() {
            depth.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        if !lock_word(&self.region, word, block, timeout)? {
            return Ok(false);
        }
        owner.store(thread_id(), Ordering::Relaxed);
        depth.store(1, Ordering::Relaxed);
        Ok(true)
    }

    super::acquire_forms!();

    /// Releases one level.
    ///
    /// # Errors
    /// [`Error::State`] ("cannot release un-acquired lock") unless this thread holds it.
    pub fn release(&self) -> Result<()> {
        if !self.is_mine() {
            return Err(Error::state("cannot release un-acquired lock"));
        }
        let (word, owner, depth) = self.words();
        if depth.fetch_sub(1, Ordering::Relaxed) == 1 {
            owner.store(0, Ordering::Relaxed);
            unlock_word(&self.region, word)?;
        }
        Ok(())
    }

    /// Acquires the lock and releases one level when the guard drops.
    pub fn guard(&self) -> Result<RLockGuard<'_>> {
        self.acquire()?;
        Ok(RLockGuard { lock: self })
    }

    /// Releases every level this thread holds, returning the depth (for `Condition::wait`).
    pub(super) fn release_all(&self) -> Result<u32> {
        if !self.is_mine() {
            return Err(Error::state("cannot release un-acquired lock"));
        }
        let (word, owner, depth) = self.words();
        let n = depth.swap(0, Ordering::Relaxed);
        owner.store(0, Ordering::Relaxed);
        unlock_word(&self.region, word)?;
        Ok(n)
    }

    /// Re-acquires after [`RLock::release_all`] at depth `n`.
    pub(super) fn acquire_restore(&self, n: u32) -> Result<()> {
        let recovered = self.acquire();
        let (_, _, depth) = self.words();
        depth.store(n, Ordering::Relaxed);
        recovered.map(|_| ())
    }
}

impl std::fmt::Debug for RLock {
    /// Python's repr: `<RLock(owner, count)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (word, _, depth) = self.words();
        match word.load(Ordering::Relaxed) & PID_MASK {
            0 => write!(f, "<RLock(None, 0)>"),
            pid => write!(f, "<RLock(pid {pid}, {})>", depth.load(Ordering::Relaxed)),
        }
    }
}

/// Holds one level of an [`RLock`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}
